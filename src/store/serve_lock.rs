//! One server per database file: `souk serve` holds an exclusive advisory
//! lock (flock) on the database file for its whole life, so a second server
//! on the same file refuses to start instead of serving from caches that the
//! first one's writes never invalidate. `souk check`, `backup` and `user
//! create` take no such lock and keep working beside a running server.
//!
//! flock locks are separate from the POSIX record locks SQLite uses, so the
//! two never interfere on a local file system. The descriptor must stay open
//! until every SQLite connection of the process is closed: closing any
//! descriptor of the file would drop SQLite's own POSIX locks with it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held for the server's life; dropping it (after the store is shut down)
/// lets the next server start.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    pub path: PathBuf,
}

impl ServeLock {
    /// Opens (creating if missing) the database file and locks it, or says
    /// which file another souk holds.
    pub fn acquire(path: &Path) -> Result<ServeLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::Setup(format!("cannot open the database {}: {e}", path.display())))?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        match file.try_lock() {
            Ok(()) => Ok(ServeLock {
                _file: file,
                path: shown,
            }),
            Err(TryLockError::WouldBlock) => Err(Error::Setup(format!(
                "the database {} is in use by another souk server; \
                 only one `souk serve` may run on a database file",
                shown.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::Setup(format!(
                "cannot lock the database {}: {e}",
                shown.display()
            ))),
        }
    }
}
