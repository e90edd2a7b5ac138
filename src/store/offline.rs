//! One-shot database work for the command line, safe next to a running
//! server: a read-only connection (`souk check`) and an online copy
//! (`souk backup`).

use std::path::Path;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use super::pragmas;
use crate::error::{Error, Result};

/// A `query_only` connection to an existing database (never creates one).
pub fn open_reader(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::internal(format!(
            "no database at {}",
            path.display()
        )));
    }
    let mut conn = Connection::open_with_flags(path, pragmas::reader_flags())?;
    pragmas::init_reader(&mut conn)?;
    Ok(conn)
}

/// Copies the live database to `dest` in one step: a single read snapshot
/// (WAL), so writers go on while it runs and the copy is consistent.
pub fn backup(source: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(Error::internal(format!(
            "{} exists; refusing to overwrite it",
            dest.display()
        )));
    }
    let from = open_reader(source)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let mut to = Connection::open_with_flags(dest, flags)?;
    {
        let copy = Backup::new(&from, &mut to)?;
        // -1: every page in one step, inside one read transaction.
        copy.step(-1)?;
    }
    // The copy is a self-contained database in rollback-journal mode; the
    // integrity check proves it opens and reads back whole.
    let verdict: String = to.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(Error::internal(format!(
            "backup failed its integrity check: {verdict}"
        )));
    }
    Ok(())
}
