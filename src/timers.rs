//! The timers: a thread that releases held escrows whose release time has
//! passed and moves orders whose ship or confirm time has passed (cancelled
//! and refunded, or completed: `orders::expire`, the same move as the
//! parties' actions), in bounded batches, through the writer. Its state is
//! the database, so it picks up after a restart; it stops on shutdown. The
//! same thread does the other timed housekeeping: purging idempotency keys
//! past their keep time and expired sessions. An order whose move fails
//! (not a lost race) waits, doubling each time, before it is tried again
//! (`Retries`), and the orders due after it go on meanwhile.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

use crate::error::Result;
use crate::store::writer::Weight;
use crate::store::{Store, WriteTx};

/// Escrows released, and orders moved, per sweep at most; the rest wait for
/// the next one (500 ms later).
pub const SWEEP_BATCH_MAX: usize = 256;
/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Time between housekeeping rounds, and rows each removes at most.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);
pub const HOUSEKEEPING_ROWS_MAX: usize = 10_000;
/// First wait before an order whose timer failed is tried again; each
/// further failure doubles it, up to RETRY_WAIT_MAX.
pub const RETRY_WAIT_MIN: Duration = Duration::from_secs(1);
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(600);
/// Failing orders remembered at once. A sweep reads up to this many extra
/// rows to page past them, so it bounds that cost too; beyond it a failing
/// order is tried at every sweep again, as if never remembered (logged).
pub const RETRIES_MAX: usize = 4096;

pub struct Sweeper {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Sweeper {
    pub fn start(store: Store) -> std::io::Result<Sweeper> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("timers".into())
            .stack_size(crate::limits::SERVICE_STACK_BYTES * 2)
            .spawn(move || run(&store, &stopped))?;
        Ok(Sweeper { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(store: &Store, stopped: &Receiver<()>) {
    let mut next_housekeeping = std::time::Instant::now();
    let mut retries = Retries::default();
    loop {
        match stopped.recv_timeout(SWEEP_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {
                sweep(store);
                sweep_orders(store, &mut retries, Instant::now());
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if std::time::Instant::now() >= next_housekeeping {
            next_housekeeping += HOUSEKEEPING_INTERVAL;
            housekeeping(store);
        }
    }
}

fn housekeeping(store: &Store) {
    let now = crate::clock::unix_seconds();
    // Most rounds find nothing: a read says so, and no empty write job
    // queues (and commits) behind the clients' own.
    let due = store.readers.read(|conn| {
        Ok(crate::ledger::idempotency::purgeable(conn, now)?
            || crate::accounts::sessions::any_expired(conn, now)?)
    });
    match due {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return log::warn!("housekeeping could not read: {e}"),
    }
    let purged = store.writer.write(move |tx| {
        let keys = crate::ledger::idempotency::purge(tx, now, HOUSEKEEPING_ROWS_MAX)?;
        let sessions = crate::accounts::sessions::purge_expired(tx, now, HOUSEKEEPING_ROWS_MAX)?;
        Ok((keys, sessions))
    });
    match purged {
        Ok((0, 0)) => {}
        Ok((keys, sessions)) => log::info!(
            "housekeeping removed {keys} idempotency keys and {sessions} expired sessions"
        ),
        Err(e) => log::warn!("housekeeping failed: {e}"),
    }
}

/// Releases what is due; an escrow disputed or released meanwhile loses its
/// race with `invalid_state`, which is expected and ignored.
fn sweep(store: &Store) {
    let now = crate::clock::unix_seconds();
    let due = read_due(store, "escrow", |conn| {
        crate::escrow::due(conn, now, SWEEP_BATCH_MAX)
    });
    for (id, result) in submit_all(store, &due, now, crate::escrow::release).iter() {
        match result {
            Ok(_) => log::info!("escrow {id} released automatically"),
            Err(crate::error::Error::Conflict { .. }) => {}
            Err(e) => log::warn!("automatic release of escrow {id} failed: {e}"),
        }
    }
}

/// The ids of the `what`s that `read` finds due; none when the read fails
/// (logged), for the next sweep to try again.
fn read_due(
    store: &Store,
    what: &str,
    read: impl FnOnce(&Connection) -> Result<Vec<i64>>,
) -> Vec<i64> {
    store.readers.read(read).unwrap_or_else(|e| {
        log::warn!("{what} sweep could not read due {what}s: {e}");
        Vec::new()
    })
}

/// What a timer does to one due row: `(tx, id, now)`, the same function as
/// the user's action.
type TimedMove<T> = fn(&WriteTx<'_>, i64, i64) -> Result<T>;

/// Submits `timed_move` of every id in `due` at once, so they share
/// commits; the answers come on the returned channel, one an id, which
/// closes after the last.
fn submit_all<T: Send + 'static>(
    store: &Store,
    due: &[i64],
    now: i64,
    timed_move: TimedMove<T>,
) -> Receiver<(i64, Result<T>)> {
    let (done_tx, done_rx) = crossbeam_channel::bounded(due.len().max(1));
    for &id in due {
        let done_tx = done_tx.clone();
        store.writer.submit(
            Weight::ONE,
            move |tx| timed_move(tx, id, now),
            move |result| {
                let _ = done_tx.send((id, result));
            },
        );
    }
    done_rx
}

/// Orders whose timer failed: when each may be tried again and how many
/// times it failed in a row. At most RETRIES_MAX.
#[derive(Default)]
struct Retries {
    failed: HashMap<i64, (Instant, u32)>,
}

impl Retries {
    /// Whether order `id` waits for its retry at `now`.
    fn waiting(&self, id: i64, now: Instant) -> bool {
        self.failed
            .get(&id)
            .is_some_and(|&(retry_at, _)| now < retry_at)
    }

    /// Records a failure of order `id` at `now`; the wait until its retry,
    /// or `None` when the map is full and it is not remembered.
    fn failed(&mut self, id: i64, now: Instant) -> Option<(Duration, u32)> {
        if self.failed.len() >= RETRIES_MAX && !self.failed.contains_key(&id) {
            // Forget those whose retry is due before refusing a new one.
            self.failed.retain(|_, &mut (retry_at, _)| now < retry_at);
            if self.failed.len() >= RETRIES_MAX {
                return None;
            }
        }
        let entry = self.failed.entry(id).or_insert((now, 0));
        entry.1 = entry.1.saturating_add(1);
        let wait = RETRY_WAIT_MIN
            .saturating_mul(1u32 << (entry.1 - 1).min(16))
            .min(RETRY_WAIT_MAX);
        entry.0 = now + wait;
        Some((wait, entry.1))
    }

    /// Order `id` moved, or was moved by a party: nothing to retry.
    fn settled(&mut self, id: i64) {
        self.failed.remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.failed.len()
    }
}

/// Moves the orders whose timer passed; one moved meanwhile by a party
/// loses its race with `invalid_state`, which is expected and ignored. One
/// whose move fails otherwise is skipped until its retry (`Retries`),
/// logged once per failure, so it neither holds back the orders due after
/// it nor floods the log.
fn sweep_orders(store: &Store, retries: &mut Retries, at: Instant) {
    let now = crate::clock::unix_seconds();
    let due = read_due(store, "order", |conn| {
        crate::orders::due(conn, now, SWEEP_BATCH_MAX, &|id| retries.waiting(id, at))
    });
    for (id, result) in submit_all(store, &due, now, crate::orders::expire).iter() {
        match result {
            Ok(order) => {
                retries.settled(id);
                log::info!("order {id} {} by its timer", order.state.as_str());
            }
            Err(crate::error::Error::Conflict { .. }) => retries.settled(id),
            Err(e) => match retries.failed(id, at) {
                Some((wait, times)) => log::warn!(
                    "timer of order {id} failed ({times} in a row), next try in {}s: {e}",
                    wait.as_secs()
                ),
                None => log::warn!(
                    "timer of order {id} failed, retried next sweep ({RETRIES_MAX} failing orders remembered already): {e}"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;
    use std::sync::atomic::Ordering;

    fn count(store: &Store, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        store
            .readers
            .read(|conn| Ok(conn.query_row(&sql, [], |row| row.get(0))?))
            .unwrap()
    }

    #[test]
    fn housekeeping_purges_what_expired_and_writes_nothing_when_nothing_did() {
        let dir = TempDir::new();
        let store = crate::store::test_store(dir.path.join("h.db"));
        let now = crate::clock::unix_seconds();
        store
            .writer
            .write(move |tx| {
                tx.execute_batch(&format!(
                    "INSERT INTO users (id, username, password_hash, role, status, created_at)
                       VALUES (1, 'a', 'x', 'user', 'active', {now});
                     INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
                       VALUES (x'01', 1, {now}, {now} - 1), (x'02', 1, {now}, {now} + 3600);
                     INSERT INTO idempotency (user_id, key, fingerprint, status, body, created_at)
                       VALUES (1, 'old', x'00', 201, x'', 0), (1, 'new', x'00', 201, x'', {now});"
                ))?;
                Ok(())
            })
            .unwrap();
        housekeeping(&store);
        assert_eq!(count(&store, "sessions"), 1, "the expired session went");
        assert_eq!(count(&store, "idempotency"), 1, "the old key went");
        let commits = store.writer.stats.commits.load(Ordering::SeqCst);
        housekeeping(&store);
        assert_eq!(
            store.writer.stats.commits.load(Ordering::SeqCst),
            commits,
            "nothing to purge: no write"
        );
        store.shutdown();
    }

    #[test]
    fn a_failing_order_waits_longer_each_time_and_the_map_is_bounded() {
        let mut retries = Retries::default();
        let t0 = Instant::now();
        assert_eq!(retries.failed(7, t0), Some((RETRY_WAIT_MIN, 1)));
        assert!(retries.waiting(7, t0 + RETRY_WAIT_MIN / 2));
        assert!(!retries.waiting(7, t0 + RETRY_WAIT_MIN));
        assert!(!retries.waiting(8, t0));
        let t1 = t0 + RETRY_WAIT_MIN;
        assert_eq!(retries.failed(7, t1), Some((RETRY_WAIT_MIN * 2, 2)));
        assert!(retries.waiting(7, t1 + RETRY_WAIT_MIN));
        let mut at = t1;
        for _ in 0..40 {
            at += RETRY_WAIT_MAX;
            let (wait, _) = retries.failed(7, at).unwrap();
            assert!(wait <= RETRY_WAIT_MAX);
        }
        assert_eq!(retries.failed(7, at).unwrap().0, RETRY_WAIT_MAX);
        retries.settled(7);
        assert!(!retries.waiting(7, at));
        for id in 0..RETRIES_MAX as i64 {
            assert!(retries.failed(id, at).is_some());
        }
        assert_eq!(retries.failed(-1, at), None, "full");
        assert_eq!(retries.len(), RETRIES_MAX);
        // Once their retries are due they make room.
        assert!(retries.failed(-1, at + RETRY_WAIT_MIN).is_some());
        assert_eq!(retries.len(), 1);
    }
}
