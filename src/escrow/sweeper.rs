//! Automatic release: a thread that releases held escrows whose release time
//! has passed, in bounded batches, through the writer. Its state is the
//! database, so it picks up after a restart; it stops on shutdown.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::store::Store;

/// Escrows released per sweep at most; the rest wait for the next one.
pub const SWEEP_BATCH_MAX: usize = 256;
/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

pub struct Sweeper {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Sweeper {
    pub fn start(store: Store) -> std::io::Result<Sweeper> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("escrow-sweeper".into())
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
    loop {
        match stopped.recv_timeout(SWEEP_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => sweep(store),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Releases what is due; an escrow disputed or released meanwhile loses its
/// race with `invalid_state`, which is expected and ignored.
fn sweep(store: &Store) {
    let now = crate::clock::unix_seconds();
    let due = match store
        .readers
        .read(|conn| super::due(conn, now, SWEEP_BATCH_MAX))
    {
        Ok(due) => due,
        Err(e) => {
            log::warn!("escrow sweep could not read due escrows: {e}");
            return;
        }
    };
    for id in due {
        match store.writer.write(move |tx| super::release(tx, id, now)) {
            Ok(_) => log::info!("escrow {id} released automatically"),
            Err(crate::error::Error::Conflict { .. }) => {}
            Err(e) => log::warn!("automatic release of escrow {id} failed: {e}"),
        }
    }
}
