//! The pool of read-only connections. WAL lets them read a consistent snapshot
//! while the writer commits, so reads never wait for writes. Every read runs
//! under a deadline (QUERY_TIMEOUT) enforced by SQLite's progress handler.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use scheduled_thread_pool::ScheduledThreadPool;

use super::breaker::{self, Breaker, Path as Side};
use super::pragmas;
use crate::error::Result;
use crate::limits::QUERY_PROGRESS_STEPS;
use std::sync::Arc;

/// How long a read waits for a free connection before it answers 503.
const READER_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    /// When the read running on this thread must stop. The progress handler
    /// runs on the thread that steps the statement, so a thread-local is
    /// exactly the read's own deadline.
    static READ_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

#[derive(Clone)]
pub struct Readers {
    pool: Pool<SqliteConnectionManager>,
    query_timeout: Duration,
    breaker: Arc<Breaker>,
}

impl Readers {
    pub(super) fn open(
        path: &Path,
        size: u32,
        query_timeout: Duration,
        breaker: Arc<Breaker>,
    ) -> Result<Readers> {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(pragmas::reader_flags())
            .with_init(|conn| {
                pragmas::init_reader(conn)?;
                conn.progress_handler(QUERY_PROGRESS_STEPS, Some(past_deadline))
            });
        // Opening and reaping connections is rare background work: one
        // helper thread (r2d2 starts three by default).
        let helper = ScheduledThreadPool::builder()
            .num_threads(1)
            .thread_name_pattern("db-readers-open")
            .build();
        let pool = Pool::builder()
            .thread_pool(Arc::new(helper))
            .max_size(size)
            .min_idle(Some(size))
            .connection_timeout(READER_WAIT)
            .test_on_check_out(false)
            .build(manager)?;
        Ok(Readers {
            pool,
            query_timeout,
            breaker,
        })
    }

    /// Runs `f` on a read-only connection within QUERY_TIMEOUT. A query past
    /// its deadline is interrupted and the read fails with `Unavailable`.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        READ_DEADLINE.with(|d| d.set(Some(Instant::now() + self.query_timeout)));
        let result = f(&conn);
        READ_DEADLINE.with(|d| d.set(None));
        match &result {
            Err(e) if breaker::is_store_fault(e) => {
                self.breaker.failure(Side::Read, &e.to_string())
            }
            _ => self.breaker.success(Side::Read),
        }
        result
    }

    /// Connections handed out right now, and the pool size.
    pub fn in_use(&self) -> InUse {
        let state = self.pool.state();
        InUse {
            in_use: state.connections - state.idle_connections,
            size: self.pool.max_size(),
        }
    }
}

/// The reader pool's occupancy (`Readers::in_use`).
#[derive(Debug, Clone, Copy)]
pub struct InUse {
    /// Connections handed out right now.
    pub in_use: u32,
    /// The pool's size: the most that can be handed out.
    pub size: u32,
}

fn past_deadline() -> bool {
    READ_DEADLINE.with(|d| d.get().is_some_and(|deadline| Instant::now() >= deadline))
}
