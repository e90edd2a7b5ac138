//! One server per database file: `souk serve` holds an exclusive advisory
//! lock (flock) for its whole life, so a second server on the same file
//! refuses to start instead of serving from caches that the first one's
//! writes never invalidate. `souk migrate` takes it too (without waiting),
//! so no schema is upgraded under a running server. `souk check`, `backup`
//! and the `user` commands take no such lock and keep working beside a
//! running server.
//!
//! The lock is taken on a file of its own beside the database
//! (`souk.db.lock`), never on the database file: closing any descriptor of
//! the database would drop the POSIX locks SQLite holds on it in this
//! process. The lock file holds no data and is never deleted (deleting a
//! lock file races with the next server taking it).

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held for the server's life; dropping it (or the process ending) lets the
/// next server start.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

impl ServeLock {
    /// Locks the database at `db` for this process, or says which file
    /// another souk holds.
    pub fn acquire(db: &Path) -> Result<ServeLock> {
        ServeLock::lock(db, "only one `souk serve` may run on a database file")
    }

    /// The same lock for `souk migrate`, which must not upgrade a database
    /// under a running server (nor let one start while it does).
    pub fn acquire_to_migrate(db: &Path) -> Result<ServeLock> {
        ServeLock::lock(db, "stop the server before `souk migrate`")
    }

    fn lock(db: &Path, held_hint: &str) -> Result<ServeLock> {
        let database = canonical(db);
        let mut name = OsString::from(database.as_os_str());
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                Error::Setup(format!(
                    "cannot open the lock file {} beside the database: {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(Error::Setup(format!(
                "the database {} is in use by another souk server (it holds {}); \
                 {held_hint}",
                database.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::Setup(format!(
                "cannot lock {} for the database {}: {e}",
                path.display(),
                database.display()
            ))),
        }
    }
}

/// The database's absolute path with symlinks resolved, so two spellings of
/// one file share one lock; for a file not created yet, its directory's.
fn canonical(db: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(db) {
        return path;
    }
    let dir = match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), db.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => db.to_owned(),
    }
}
