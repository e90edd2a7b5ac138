//! Copies the WAL back into the database file from a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! threshold: the writer thread writes every changed page to the database
//! file and fsyncs it while a whole batch of callers waits. Here a separate
//! connection runs a PASSIVE checkpoint every `CHECKPOINT_INTERVAL_MS`
//! (PASSIVE never waits for the writer or readers: it copies what it can).
//! The writer keeps a far higher automatic threshold
//! (`WAL_WRITER_CHECKPOINT_PAGES`) as the bound should this thread fall
//! behind or fail.

use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use rusqlite::Connection;

use super::pragmas;
use crate::error::{Error, Result};
use crate::limits::{CHECKPOINT_INTERVAL_MS, SERVICE_STACK_BYTES};

pub struct Checkpointer {
    stop: Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = pragmas::open_checkpointer(path)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".into())
            .stack_size(SERVICE_STACK_BYTES)
            .spawn(move || {
                let interval = Duration::from_millis(CHECKPOINT_INTERVAL_MS);
                let mut failing = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match checkpoint(&conn) {
                        Ok(()) if failing => {
                            log::info!("WAL checkpoints work again");
                            failing = false;
                        }
                        Ok(()) => {}
                        // Logged once per run of failures; the writer's own
                        // threshold keeps the WAL bounded meanwhile.
                        Err(e) if !failing => {
                            log::warn!("WAL checkpoint failed: {e}");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| Error::internal_from("starting the checkpoint thread", e))?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread (after its current checkpoint). Idempotent.
    pub fn stop(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = self.stop.try_send(());
            let _ = handle.join();
        }
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    // (busy, WAL frames, frames checkpointed): partial progress is normal.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::util::TempDir;

    #[test]
    fn the_wal_reaches_the_database_file_without_the_writer_checkpointing() {
        let dir = TempDir::new();
        let path = dir.path.join("c.db");
        let store = crate::store::test_store(path.clone());
        store
            .writer
            .write(|tx| Ok(tx.execute_batch("CREATE TABLE blob (b BLOB NOT NULL)")?))
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        // ~2 MB: far below the writer's own threshold (40 MB of WAL).
        for _ in 0..20 {
            store
                .writer
                .write(|tx| {
                    tx.execute("INSERT INTO blob (b) VALUES (zeroblob(100000))", [])?;
                    Ok(())
                })
                .unwrap();
        }
        // The blobs first fill the pages migrations freed (rebuilt tables
        // leave ~30 KB free): the file grows by a little less than 2 MB.
        let wanted = before + 1_800_000;
        let deadline = Instant::now() + Duration::from_secs(5);
        let grown = loop {
            let size = std::fs::metadata(&path).unwrap().len();
            if size >= wanted || Instant::now() > deadline {
                break size;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        store.shutdown();
        assert!(
            grown >= wanted,
            "the database file stayed at {grown} bytes (from {before})"
        );
    }
}
