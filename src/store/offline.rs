//! One-shot database work for the command line, safe next to a running
//! server: a read-only connection (`souk check`, `souk user list`) and an
//! online copy (`souk backup`). Neither writes to the database file, so both
//! work on a file the user may only read, or on read-only media.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use super::open::{self, Reading};
use super::pragmas;
use crate::error::{Error, Result};

/// A `query_only` connection to an existing souk database that never writes
/// to it. Where the user may write the file and its directory it opens
/// read-write (so its close removes the -wal and -shm files it made);
/// otherwise `mode=ro`, and where that cannot work (no -shm can be made:
/// read-only media, a directory the user may not write) and no WAL holds
/// data, `immutable`.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let absolute = open::for_reading(path)?;
    let how = Reading::best_for(&absolute);
    let mut conn = match open::open_for_reading(&absolute, how) {
        Ok(conn) => conn,
        Err(first) if how == Reading::ReadOnly => {
            if wal_holds_data(&absolute) {
                return Err(Error::Setup(format!(
                    "cannot read the database {} read-only: its write-ahead log \
                     holds commits, and no -shm file can be made beside it to read them \
                     ({first}); copy the database with its -wal file to a writable directory",
                    absolute.display()
                )));
            }
            log::debug!("reading {} as immutable: {first}", absolute.display());
            open::open_for_reading(&absolute, Reading::Immutable)?
        }
        Err(e) => return Err(e),
    };
    open::souk_version(&conn, &absolute)?;
    pragmas::init_reader(&mut conn).map_err(|e| open::sqlite(&absolute, e))?;
    Ok(conn)
}

/// A non-empty `-wal` file beside the database: commits not yet in the
/// database file itself.
fn wal_holds_data(absolute: &Path) -> bool {
    let mut wal = absolute.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).is_ok_and(|meta| meta.len() > 0)
}

/// Where `souk backup` writes.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A new file; an existing one is never overwritten.
    File(PathBuf),
    /// Standard output (`souk backup -`), through a temporary file that is
    /// removed afterwards.
    Stdout,
}

/// Copies the live database in one step: a single read snapshot (WAL), so
/// writers go on while it runs and the copy is consistent. The copy is a
/// self-contained database in rollback-journal mode (no -wal, -shm needed to
/// read it), integrity-checked before this returns.
pub fn backup(source: &Path, target: &BackupTarget) -> Result<()> {
    if let BackupTarget::File(dest) = target
        && std::fs::symlink_metadata(dest).is_ok()
    {
        return Err(exists(dest));
    }
    let from = open_reader(source)?;
    match target {
        BackupTarget::File(dest) => {
            let dest = std::path::absolute(dest).unwrap_or_else(|_| dest.clone());
            create_new(&dest)?;
            copy_to(&from, &dest).inspect_err(|_| {
                let _ = std::fs::remove_file(&dest);
            })
        }
        BackupTarget::Stdout => {
            let temporary = temporary_file()?;
            let streamed = copy_to(&from, &temporary).and_then(|()| stream(&temporary));
            let _ = std::fs::remove_file(&temporary);
            streamed
        }
    }
}

/// Creates `dest` empty, failing if anything is there: `create_new` makes
/// the no-overwrite rule atomic.
fn create_new(dest: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => exists(dest),
            _ => Error::Setup(format!("cannot create the backup {}: {e}", dest.display())),
        })
}

fn exists(dest: &Path) -> Error {
    let dest = std::path::absolute(dest).unwrap_or_else(|_| dest.to_owned());
    Error::Setup(format!(
        "the backup target {} exists; souk backup never overwrites a file",
        dest.display()
    ))
}

/// A new file in the temporary directory, for `souk backup -`.
fn temporary_file() -> Result<PathBuf> {
    let random: u64 = u64::from_le_bytes(crate::ids::random_bytes()?);
    let path = std::env::temp_dir().join(format!(
        "souk-backup-{}-{random:016x}.db",
        std::process::id()
    ));
    create_new(&path)?;
    Ok(path)
}

fn copy_to(from: &Connection, dest: &Path) -> Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut to = Connection::open_with_flags(dest, flags).map_err(|e| open::sqlite(dest, e))?;
    {
        let copy = Backup::new(from, &mut to)?;
        // -1: every page in one step, inside one read transaction.
        copy.step(-1)?;
    }
    // The pages copied say "WAL" in their header when the source is; the
    // copy is made a plain rollback-journal file so read-only media can hold it.
    let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::internal(format!(
            "the backup kept journal mode {mode}"
        )));
    }
    let verdict: String = to.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(Error::internal(format!(
            "backup failed its integrity check: {verdict}"
        )));
    }
    Ok(())
}

/// Writes the finished copy to standard output.
fn stream(copy: &Path) -> Result<()> {
    let mut file = std::fs::File::open(copy).map_err(Error::internal)?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut file, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::Setup(format!("writing the backup to standard output: {e}")))?;
    Ok(())
}
