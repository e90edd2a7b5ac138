//! The SQLite store (docs/durability.md): one database file in WAL mode, read through a
//! pool of read-only connections, written only by the writer thread with
//! group commit. Nothing outside this module opens a connection.

pub mod breaker;
mod checkpointer;
mod migrate;
mod offline;
pub mod open;
mod pragmas;
mod readers;
pub mod seq_ids;
mod serve_lock;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use migrate::{SCHEMA_VERSION, migrate};
pub use offline::{BackupTarget, backup, open_reader};
pub use open::Preflight;
pub use readers::Readers;
pub use serve_lock::ServeLock;
pub use writer::{OnCommit, Touched, WriteStats, WriteTx, Writer};

use crate::error::Result;
use breaker::Breaker;
use checkpointer::Checkpointer;

/// Store settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub readers: u32,
    pub query_timeout: std::time::Duration,
    /// Consecutive store failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before a probe write.
    pub breaker_cooldown: std::time::Duration,
}

/// Handles to the database: clone freely, all clones share one writer.
#[derive(Clone)]
pub struct Store {
    pub readers: Readers,
    pub writer: Writer,
    pub breaker: Arc<Breaker>,
    checkpointer: Arc<Checkpointer>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating and migrating) the database, starts the writer thread
    /// and fills the reader pool.
    /// `on_commit` hears of every key each commit touched (caches).
    pub fn open(config: &StoreConfig, on_commit: OnCommit) -> Result<Store> {
        Store::start(config, on_commit, open_and_migrate(&config.path)?)
    }

    /// Opens the database for a one-shot `souk user` command, beside a
    /// server that may be another souk version: it is never migrated. A
    /// database at another schema version is refused ("run `souk migrate`
    /// with the server stopped"); a new or empty file is made only when
    /// `may_create` (`souk user create`).
    pub fn open_current(
        config: &StoreConfig,
        on_commit: OnCommit,
        may_create: bool,
    ) -> Result<Store> {
        Store::start(config, on_commit, open_current(&config.path, may_create)?)
    }

    fn start(
        config: &StoreConfig,
        on_commit: OnCommit,
        conn: rusqlite::Connection,
    ) -> Result<Store> {
        seq_ids::register(&conn)?;
        let breaker = Arc::new(Breaker::new(
            config.breaker_threshold,
            config.breaker_cooldown,
        ));
        let writer = Writer::start(conn, on_commit, Arc::clone(&breaker))?;
        let checkpointer = Arc::new(Checkpointer::start(&config.path)?);
        let readers = Readers::open(
            &config.path,
            config.readers,
            config.query_timeout,
            Arc::clone(&breaker),
        )?;
        Ok(Store {
            readers,
            writer,
            breaker,
            checkpointer,
            path: config.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets queued writes commit, then stops the writer and checkpointer threads.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        self.checkpointer.stop();
    }
}

/// The readiness probe's read (`GET /readyz`): a reader answers.
pub fn probe_read(conn: &rusqlite::Connection) -> Result<()> {
    Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)
}

/// The readiness probe's write: the `meta` row `ready_probe` set to `now`,
/// so that a commit goes through the writer.
pub fn probe_write(tx: &WriteTx<'_>, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('ready_probe', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([now.to_string()])?;
    Ok(())
}

/// Opens the database for a one-shot command (`souk migrate`): writer
/// pragmas, migrations, no threads. It takes the server's lock (without
/// waiting), so it refuses to upgrade a database a server is using, and no
/// server starts on it meanwhile.
pub fn migrate_file(path: &Path) -> Result<u32> {
    let found = open::for_writing(path)?;
    let _lock = ServeLock::acquire_to_migrate(&found.absolute)?;
    migrate_found(&found)?;
    Ok(SCHEMA_VERSION)
}

/// The write connection of a `souk user` command: the database must be at
/// this binary's schema version (a new or empty one is made and migrated
/// only when `may_create`).
fn open_current(path: &Path, may_create: bool) -> Result<rusqlite::Connection> {
    let found = open::for_writing(path)?;
    if found.version == 0 && may_create {
        return migrate_found(&found);
    }
    if found.version != SCHEMA_VERSION {
        return Err(crate::error::Error::Setup(format!(
            "the database {} has schema version {}, not this souk's {SCHEMA_VERSION}: \
             run `souk migrate` with the server stopped, then try again",
            found.absolute.display(),
            found.version
        )));
    }
    let conn = pragmas::open_writer(&found.absolute)?;
    log::debug!("database {} opened", found.absolute.display());
    Ok(conn)
}

/// The write connection, after the file passed `open::for_writing` (so a
/// refused file is left untouched), was migrated, and only then put in WAL
/// mode (so a failed upgrade leaves the journal mode alone too).
fn open_and_migrate(path: &Path) -> Result<rusqlite::Connection> {
    migrate_found(&open::for_writing(path)?)
}

fn migrate_found(found: &Preflight) -> Result<rusqlite::Connection> {
    let mut conn = pragmas::open_writer(&found.absolute)?;
    migrate(&mut conn).map_err(|e| match e {
        crate::error::Error::Setup(message) => {
            crate::error::Error::Setup(format!("{}: {message}", found.absolute.display()))
        }
        other => other,
    })?;
    pragmas::enable_wal(&conn)?;
    log::debug!("database {} opened", found.absolute.display());
    Ok(conn)
}

/// A store on a fresh file in `dir` with no caches behind it: for unit
/// tests of what runs on a store (one reader, short waits).
#[cfg(test)]
pub(crate) fn test_store(path: std::path::PathBuf) -> Store {
    let config = StoreConfig {
        path,
        readers: 1,
        query_timeout: std::time::Duration::from_secs(1),
        breaker_threshold: 5,
        breaker_cooldown: std::time::Duration::from_secs(5),
    };
    Store::open(
        &config,
        Arc::new(|_: &rusqlite::Connection, _: &[Touched]| {}),
    )
    .expect("opening a test store")
}
