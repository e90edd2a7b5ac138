//! The timers: a thread that releases held escrows whose release time has
//! passed and moves orders whose ship or confirm time has passed (cancelled
//! and refunded, or completed: `orders::expire`, the same move as the
//! parties' actions), in bounded batches, through the writer. Its state is
//! the database, so it picks up after a restart; it stops on shutdown. The
//! same thread does the other timed housekeeping: purging idempotency keys
//! past their keep time and expired sessions.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::store::Store;

/// Escrows released, and orders moved, per sweep at most; the rest wait for
/// the next one (500 ms later).
pub const SWEEP_BATCH_MAX: usize = 256;
/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Time between housekeeping rounds, and rows each removes at most.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);
pub const HOUSEKEEPING_ROWS_MAX: usize = 10_000;

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
    loop {
        match stopped.recv_timeout(SWEEP_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {
                sweep(store);
                sweep_orders(store);
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
    let due = match store
        .readers
        .read(|conn| crate::escrow::due(conn, now, SWEEP_BATCH_MAX))
    {
        Ok(due) => due,
        Err(e) => {
            log::warn!("escrow sweep could not read due escrows: {e}");
            return;
        }
    };
    // Submitted all at once so they share commits; answers are awaited after.
    let (done_tx, done_rx) = crossbeam_channel::bounded(due.len().max(1));
    for &id in &due {
        let done_tx = done_tx.clone();
        store.writer.submit(
            move |tx| crate::escrow::release(tx, id, now),
            move |result| {
                let _ = done_tx.send((id, result.map(|_| ())));
            },
        );
    }
    drop(done_tx);
    for (id, result) in done_rx.iter() {
        match result {
            Ok(()) => log::info!("escrow {id} released automatically"),
            Err(crate::error::Error::Conflict { .. }) => {}
            Err(e) => log::warn!("automatic release of escrow {id} failed: {e}"),
        }
    }
}

/// Moves the orders whose timer passed; one moved meanwhile by a party
/// loses its race with `invalid_state`, which is expected and ignored.
fn sweep_orders(store: &Store) {
    let now = crate::clock::unix_seconds();
    let due = match store
        .readers
        .read(|conn| crate::orders::due(conn, now, SWEEP_BATCH_MAX))
    {
        Ok(due) => due,
        Err(e) => {
            log::warn!("order sweep could not read due orders: {e}");
            return;
        }
    };
    let (done_tx, done_rx) = crossbeam_channel::bounded(due.len().max(1));
    for &id in &due {
        let done_tx = done_tx.clone();
        store.writer.submit(
            move |tx| crate::orders::expire(tx, id, now),
            move |result| {
                let _ = done_tx.send((id, result.map(|order| order.state)));
            },
        );
    }
    drop(done_tx);
    for (id, result) in done_rx.iter() {
        match result {
            Ok(state) => log::info!("order {id} {} by its timer", state.as_str()),
            Err(crate::error::Error::Conflict { .. }) => {}
            Err(e) => log::warn!("timer of order {id} failed: {e}"),
        }
    }
}
