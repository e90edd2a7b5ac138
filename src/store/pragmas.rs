//! Every pragma and open flag in one place.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::Result;
use crate::limits::WAL_WRITER_CHECKPOINT_PAGES;

/// How long a connection waits for a lock held by another process (a
/// `souk backup` or `souk user create` next to a running server).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The only connection that writes (in WAL mode once `enable_wal` ran), with
/// `synchronous=FULL` so that a commit is on disk before anyone is told it
/// happened (docs/durability.md).
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| super::open::sqlite(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // cache_spill OFF: a group commit's dirty pages stay in memory until
    // its COMMIT instead of being written to the WAL mid-transaction when
    // they outgrow the 2 MiB page cache (60 orders dirty ~900 pages: the
    // spills cost ~20 % of the writer's CPU per order). What that holds is
    // bounded by one commit's COMMIT_BATCH_MAX / COMMIT_WEIGHT_MAX, and
    // pages past the cache's size are freed once the commit makes them
    // clean.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_spill = OFF;",
    )?;
    // Checkpoints are the checkpointer thread's job; this is the backstop.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_WRITER_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Puts the database in WAL mode (it stays so), once it is migrated: a
/// refused or failed upgrade leaves a file's journal mode as it was.
pub(super) fn enable_wal(conn: &Connection) -> Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(crate::error::Error::internal(format!(
            "database refused WAL mode (got {mode})"
        )));
    }
    Ok(())
}

/// The checkpointer's connection: it only copies the WAL into the database
/// file, with `synchronous=FULL` so the copy is on disk before the WAL is
/// reused.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

/// A reader's page cache, KiB (SQLite's default is 2 MiB per connection).
/// In WAL mode a reader drops its whole page cache at the first read after
/// any commit, so under writes it never holds more than one read's pages;
/// a bigger cache only helps long read-only stretches (search), whose pages
/// the OS's file cache holds anyway. With MAX_DB_CONNECTIONS readers, this
/// is the bulk of the memory the store can hold.
const READER_CACHE_KIB: u32 = 1024;

/// A reader: `query_only`, so no write can go around the writer.
pub(super) fn init_reader(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{READER_CACHE_KIB};"
    ))?;
    conn.set_prepared_statement_cache_capacity(128);
    super::seq_ids::register(conn)
}

pub(super) fn reader_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_a_smaller_page_cache_than_sqlites_default() {
        let mut conn = Connection::open_in_memory().unwrap();
        init_reader(&mut conn).unwrap();
        let cache: i64 = conn
            .query_row("PRAGMA cache_size", [], |row| row.get(0))
            .unwrap();
        assert_eq!(cache, -i64::from(READER_CACHE_KIB), "negative: KiB");
        let default: i64 = Connection::open_in_memory()
            .unwrap()
            .query_row("PRAGMA cache_size", [], |row| row.get(0))
            .unwrap();
        assert!(-default > i64::from(READER_CACHE_KIB), "{default}");
    }
}
