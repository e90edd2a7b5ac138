//! The writer thread: the only connection that writes, and group commit.
//!
//! Jobs wait in a bounded queue. The writer takes what is queued (up to
//! `COMMIT_BATCH_MAX`), runs the jobs in one `BEGIN IMMEDIATE` transaction (a
//! failing job's writes are undone alone: see `commit_batch`), commits once
//! with `synchronous=FULL`, and only then tells each job's caller its result.
//! A full queue answers `Unavailable` at once.

use std::cell::RefCell;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::Connection;

use super::breaker::{self, Admission, Breaker, Path};
use crate::error::{Error, Result};
use crate::heartbeat::Heartbeat;
use crate::histogram::Histogram;
use crate::limits::{
    COMMIT_BATCH_MAX, COMMIT_LINGER_US, COMMIT_WEIGHT_MAX, SERVICE_STACK_BYTES, WRITE_QUEUE_MAX,
    WRITER_IDLE_BEAT_MS,
};

/// The write connection as a job sees it, inside the batch's transaction
/// (and its own savepoint only when the batch is retried, see
/// `commit_batch`). Only the writer thread can make one, so no write can
/// happen outside the writer.
pub struct WriteTx<'c> {
    conn: &'c Connection,
    touched: &'c RefCell<Vec<Touched>>,
}

/// A key a write changed, for cache invalidation after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// A user's profile (name, role, status, last login).
    User(i64),
    /// A user's balances.
    Balance(i64),
    /// One session, by token hash.
    Session([u8; 32]),
    /// Every session of a user.
    SessionsOf(i64),
    /// One listing, by id.
    Listing(i64),
    /// Something a search matches, filters or orders on changed (a
    /// listing's title, description, price, tags or state): cached search
    /// pages are all dropped. Stock changes (orders) are not this: a page
    /// shows quantities from the listing cache, which `Listing` refreshes.
    Searchable,
}

impl WriteTx<'_> {
    /// Records that this job changed `key`; caches drop it after the commit,
    /// before the job's caller hears back.
    pub fn touch(&self, key: Touched) {
        self.touched.borrow_mut().push(key);
    }
}

/// Called after each commit (or failed commit) with the writer's connection
/// (no transaction open: it reads what is committed) and every key touched.
pub type OnCommit = Arc<dyn Fn(&Connection, &[Touched]) + Send + Sync>;

impl Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// A job with its result type erased, as it waits in the queue.
trait QueuedJob: Send {
    /// Runs the work and keeps its result for `finish`. A job may run twice
    /// (see `commit_batch`): the second run's result is the one kept.
    fn run(&mut self, tx: &WriteTx<'_>) -> Ran;
    /// How the last run went; `None` before any.
    fn last_run(&self) -> Option<Ran>;
    /// Tells the caller the kept result, or the commit's error.
    fn finish(self: Box<Self>, commit: Result<()>);
    /// Answers the caller without running (writer stopped, queue full).
    fn fail(self: Box<Self>, error: Error);
}

/// How a run went.
struct Ran {
    ok: bool,
    /// It failed through the store's fault (disk full, I/O), not its own.
    store_fault: Option<String>,
}

struct Job<T, W, D> {
    work: W,
    done: D,
    result: Option<Result<T>>,
}

impl<T, W, D> QueuedJob for Job<T, W, D>
where
    T: Send + 'static,
    W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    D: FnOnce(Result<T>) + Send + 'static,
{
    fn run(&mut self, tx: &WriteTx<'_>) -> Ran {
        let work = &self.work;
        let result = catch_unwind(AssertUnwindSafe(|| work(tx))).unwrap_or_else(|_| {
            log::error!("a write job panicked; its writes are rolled back");
            Err(Error::internal("write job panicked"))
        });
        self.result = Some(result);
        self.last_run()
            .unwrap_or_else(|| unreachable!("the result was just stored"))
    }

    fn last_run(&self) -> Option<Ran> {
        self.result.as_ref().map(|result| Ran {
            ok: result.is_ok(),
            store_fault: match result {
                Err(e) if breaker::is_store_fault(e) => Some(e.to_string()),
                _ => None,
            },
        })
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(Error::internal("write job never ran")));
        (self.done)(commit.and(result));
    }

    fn fail(self: Box<Self>, error: Error) {
        (self.done)(Err(error));
    }
}

enum Message {
    /// A job and its weight (the rows it writes, roughly).
    Job(Box<dyn QueuedJob>, usize),
    Stop,
}

/// Counters the monitor reads; written only by the writer thread.
#[derive(Default)]
pub struct WriteStats {
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
    pub failed_jobs: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Batches run again with a savepoint per job because a job failed
    /// after writing (see `commit_batch`).
    pub savepoint_retries: AtomicU64,
    pub rejected_full: AtomicU64,
    pub last_batch_size: AtomicU64,
    pub max_batch_size: AtomicU64,
    /// Committed batches by size: bucket `i` counts sizes in (2^(i-1), 2^i].
    pub batch_sizes: [AtomicU64; BATCH_BUCKETS],
    /// Time from BEGIN to the end of COMMIT (the fsync included).
    pub commit_latency: Histogram,
}

/// Buckets of the batch-size histogram: 1, 2, 4, … up to COMMIT_BATCH_MAX.
pub const BATCH_BUCKETS: usize = COMMIT_BATCH_MAX.ilog2() as usize + 1;

impl WriteStats {
    fn record_commit(&self, size: u64, elapsed: std::time::Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(size, Ordering::Relaxed);
        self.last_batch_size.store(size, Ordering::Relaxed);
        self.max_batch_size.fetch_max(size, Ordering::Relaxed);
        let bucket = (size.max(1).next_power_of_two().ilog2() as usize).min(BATCH_BUCKETS - 1);
        self.batch_sizes[bucket].fetch_add(1, Ordering::Relaxed);
        self.commit_latency
            .record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }
}

/// How much of a commit a job takes, about the rows it writes: a commit
/// takes at most `COMMIT_WEIGHT_MAX`, so a few large jobs (a batch of
/// transfers weighs one per transfer) cannot make one commit, and
/// everyone's wait, huge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(usize);

impl Weight {
    /// An ordinary job: a row or a few.
    pub const ONE: Weight = Weight(1);

    /// A job doing the work of `jobs` ordinary ones (at least one).
    pub fn of(jobs: usize) -> Weight {
        Weight(jobs.max(1))
    }
}

/// The handle callers use to submit writes. Clones share one writer thread.
#[derive(Clone)]
pub struct Writer {
    queue: Sender<Message>,
    pub stats: Arc<WriteStats>,
    /// Stamped by the writer thread between batches and, while idle, every
    /// WRITER_IDLE_BEAT_MS (the systemd watchdog reads it).
    pub heartbeat: Arc<Heartbeat>,
    pub breaker: Arc<Breaker>,
    /// When (ms since `epoch`) the queue was first found full in the current
    /// run of refusals; 0 while it takes jobs.
    full_since_ms: Arc<AtomicU64>,
    epoch: Instant,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// A commit slower than this counts as a store failure for the breaker.
pub const COMMIT_SLOW: std::time::Duration = std::time::Duration::from_secs(2);
/// A queue refusing writes for longer than this counts as a store failure.
pub const QUEUE_FULL_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

/// What the writer thread works with besides its connection.
struct Context {
    stats: Arc<WriteStats>,
    heartbeat: Arc<Heartbeat>,
    on_commit: OnCommit,
    breaker: Arc<Breaker>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        on_commit: OnCommit,
        breaker: Arc<Breaker>,
    ) -> Result<Writer> {
        let (queue, jobs) = crossbeam_channel::bounded(WRITE_QUEUE_MAX);
        let stats = Arc::new(WriteStats::default());
        let heartbeat = Arc::new(Heartbeat::default());
        let context = Context {
            stats: Arc::clone(&stats),
            heartbeat: Arc::clone(&heartbeat),
            on_commit,
            breaker: Arc::clone(&breaker),
        };
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .stack_size(SERVICE_STACK_BYTES * 4)
            .spawn(move || writer_loop(&conn, &jobs, &context))
            .map_err(|e| Error::internal_from("starting the writer thread", e))?;
        Ok(Writer {
            queue,
            stats,
            heartbeat,
            breaker,
            full_since_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues `work`, worth `weight` (see `Weight`); `done` is called with
    /// its result after the commit that made it durable (or with the error
    /// that prevented it). `done` runs on the writer thread: keep it short
    /// (hand the result to another thread). `work` may run twice in one
    /// commit (when another job of its batch fails after writing, see
    /// `commit_batch`): it must do nothing but database work, and only the
    /// last run's result counts.
    pub fn submit<T, W, D>(&self, weight: Weight, work: W, done: D)
    where
        T: Send + 'static,
        W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
        D: FnOnce(Result<T>) + Send + 'static,
    {
        let job: Box<dyn QueuedJob> = Box::new(Job {
            work,
            done,
            result: None,
        });
        // While the breaker is open nothing is attempted: fail fast.
        let admission = match self.breaker.admit_write() {
            Ok(admission) => admission,
            Err(e) => return job.fail(e),
        };
        match self.queue.try_send(Message::Job(job, weight.0)) {
            Ok(()) => self.full_since_ms.store(0, Ordering::Relaxed),
            Err(TrySendError::Full(Message::Job(job, _))) => {
                self.stats.rejected_full.fetch_add(1, Ordering::Relaxed);
                self.note_queue_full();
                if admission == Admission::Probe {
                    self.breaker.probe_abandoned();
                }
                job.fail(Error::unavailable("write queue is full"));
            }
            Err(TrySendError::Disconnected(Message::Job(job, _))) => {
                job.fail(Error::unavailable("the writer has stopped"));
            }
            Err(_) => {}
        }
    }

    /// A full queue sheds load with 503 at once; one that stays full past
    /// `QUEUE_FULL_FAILURE` means the writer cannot keep up: a store failure.
    fn note_queue_full(&self) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let since = match self.full_since_ms.compare_exchange(
            0,
            now_ms,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now_ms,
            Err(since) => since,
        };
        if now_ms.saturating_sub(since) > QUEUE_FULL_FAILURE.as_millis() as u64 {
            self.full_since_ms.store(now_ms, Ordering::Relaxed);
            self.breaker
                .failure(Path::Write, "the write queue stayed full");
        }
    }

    /// Queues `work` and blocks until it is committed.
    pub fn write<T: Send + 'static>(
        &self,
        work: impl Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(Weight::ONE, work, move |result| {
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(Error::unavailable("the writer has stopped")))
    }

    /// Jobs waiting right now.
    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Commits what is queued, then stops the thread. Idempotent.
    pub fn shutdown(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // Blocking send: the stop waits its turn behind queued jobs.
            let _ = self.queue.send(Message::Stop);
            let _ = handle.join();
        }
    }
}

fn writer_loop(conn: &Connection, queue: &Receiver<Message>, context: &Context) {
    let mut batch: Vec<Box<dyn QueuedJob>> = Vec::with_capacity(COMMIT_BATCH_MAX);
    let mut intake = Intake {
        queue,
        weight: 0,
        carried: None,
        stopping: false,
    };
    while !intake.stopping || intake.carried.is_some() {
        context.heartbeat.beat();
        intake.weight = 0;
        let first = match intake.carried.take() {
            Some(job) => Some(job),
            None => match next_message(queue, &context.heartbeat) {
                Some(Message::Job(job, w)) => Some((job, w)),
                Some(Message::Stop) | None => {
                    intake.stopping = true;
                    None
                }
            },
        };
        if let Some((job, w)) = first {
            batch.push(job);
            intake.weight += w;
        }
        intake.top_up(&mut batch);
        if !batch.is_empty() {
            commit_batch(conn, &mut batch, context, &mut intake);
        }
    }
    // Anything queued after the stop is answered, not silently dropped.
    while let Ok(message) = queue.try_recv() {
        if let Message::Job(job, _) = message {
            job.fail(Error::unavailable("the server is shutting down"));
        }
    }
}

/// Where a batch's jobs come from: the queue, within the batch's bounds.
struct Intake<'a> {
    queue: &'a Receiver<Message>,
    /// Of the batch being gathered.
    weight: usize,
    /// A job that would have made the last batch too heavy opens the next.
    carried: Option<(Box<dyn QueuedJob>, usize)>,
    stopping: bool,
}

impl Intake<'_> {
    /// Adds what is queued to `batch`, up to COMMIT_BATCH_MAX jobs and
    /// COMMIT_WEIGHT_MAX; `true` when it added any.
    fn top_up(&mut self, batch: &mut Vec<Box<dyn QueuedJob>>) -> bool {
        let before = batch.len();
        while !self.stopping
            && self.carried.is_none()
            && batch.len() < COMMIT_BATCH_MAX
            && self.weight < COMMIT_WEIGHT_MAX
        {
            match self.queue.try_recv() {
                Ok(Message::Job(job, w)) if self.weight + w > COMMIT_WEIGHT_MAX => {
                    self.carried = Some((job, w));
                }
                Ok(Message::Job(job, w)) => {
                    batch.push(job);
                    self.weight += w;
                }
                Ok(Message::Stop) => self.stopping = true,
                Err(_) => break,
            }
        }
        batch.len() > before
    }

    /// Waits until `until` for one more job (within the batch's bounds);
    /// `true` when one joined.
    fn wait_for_one(&mut self, batch: &mut Vec<Box<dyn QueuedJob>>, until: Instant) -> bool {
        let Some(wait) = until.checked_duration_since(Instant::now()) else {
            return false;
        };
        if self.stopping || self.carried.is_some() || batch.len() >= COMMIT_BATCH_MAX {
            return false;
        }
        match self.queue.recv_timeout(wait) {
            Ok(Message::Job(job, w)) if self.weight + w > COMMIT_WEIGHT_MAX => {
                self.carried = Some((job, w));
                false
            }
            Ok(Message::Job(job, w)) => {
                batch.push(job);
                self.weight += w;
                true
            }
            Ok(Message::Stop) => {
                self.stopping = true;
                false
            }
            Err(_) => false,
        }
    }
}

/// Waits for the next message, beating while idle; `None` once every
/// `Writer` is gone.
fn next_message(queue: &Receiver<Message>, heartbeat: &Heartbeat) -> Option<Message> {
    let idle_beat = Duration::from_millis(WRITER_IDLE_BEAT_MS);
    loop {
        match queue.recv_timeout(idle_beat) {
            Ok(message) => return Some(message),
            Err(RecvTimeoutError::Timeout) => heartbeat.beat(),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// One transaction for the whole batch.
///
/// Jobs first run one after another without savepoints: a job that fails
/// before writing anything (a refused transfer: the debit changed no row)
/// leaves nothing to undo. Only when a job fails *after* writing does the
/// batch go the slow way: roll everything back and run every job again, each
/// in its own savepoint, so that job's writes vanish alone. Savepoints cost
/// a quarter of the writer's time per transfer (benches/app.rs storage
/// ceiling), and most batches never need one.
///
/// Jobs that arrive while the batch runs join it (`Intake::top_up`) until
/// the queue is empty or the batch full, and only then does it commit:
/// under load the callers answered by the last commit are back before this
/// one, and a commit's fsync serves all of them rather than every other
/// commit serving half.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn QueuedJob>>,
    context: &Context,
    intake: &mut Intake<'_>,
) {
    let Context {
        stats,
        on_commit,
        breaker,
        ..
    } = context;
    let started = Instant::now();
    let touched = RefCell::new(Vec::new());
    let tx = WriteTx {
        conn,
        touched: &touched,
    };
    let ran = run_batch(&tx, batch, stats, intake, started);
    let committed = ran.and_then(|_| run_cached(conn, "COMMIT"));
    let fault = tally(conn, batch, stats, &committed, started);
    match &fault {
        Some(reason) => breaker.failure(Path::Write, reason),
        None => breaker.success(Path::Write),
    }
    // Caches forget what changed before anyone can read it back; after a
    // failed commit too (dropping a fresh entry costs only a reload).
    on_commit(conn, &touched.borrow());
    // Only now, after the commit (or its failure), does any caller hear back.
    for job in batch.drain(..) {
        job.finish(match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(clone_error(e)),
        });
    }
}

/// Begins the transaction and runs the batch in it, taking in the jobs that
/// join it (see `commit_batch`); runs it all again with a savepoint per job
/// if one left partial writes. `Err`: nothing of it may be committed.
fn run_batch(
    tx: &WriteTx<'_>,
    batch: &mut Vec<Box<dyn QueuedJob>>,
    stats: &WriteStats,
    intake: &mut Intake<'_>,
    started: Instant,
) -> rusqlite::Result<bool> {
    let mut ran = begin(tx).and_then(|()| run_plain(tx, batch));
    // As many callers as the last commit served are likely on their way
    // back: wait a little for them (COMMIT_LINGER_US at most) rather than
    // make them wait for a whole commit more.
    let expected = usize::try_from(stats.last_batch_size.load(Ordering::Relaxed)).unwrap_or(0);
    let linger_until = started + Duration::from_micros(COMMIT_LINGER_US);
    while let Ok(true) = ran {
        let from = batch.len();
        let joined = intake.top_up(batch)
            || (batch.len() < expected && intake.wait_for_one(batch, linger_until));
        if !joined {
            break;
        }
        ran = run_plain(tx, &mut batch[from..]);
    }
    if let Ok(false) = ran {
        // A job left partial writes: start over with a savepoint per job.
        // (Strict ROLLBACK: the transaction is known to be open here.)
        stats.savepoint_retries.fetch_add(1, Ordering::Relaxed);
        ran = run_cached(tx, "ROLLBACK")
            .and_then(|()| begin(tx))
            .and_then(|()| run_in_savepoints(tx, batch));
    }
    ran
}

/// Counts the batch's failed jobs and its commit (rolling a failed one
/// back); the store fault the breaker should hear of, if any: a job's, the
/// commit's, or a commit slower than COMMIT_SLOW.
fn tally(
    conn: &Connection,
    batch: &[Box<dyn QueuedJob>],
    stats: &WriteStats,
    committed: &rusqlite::Result<()>,
    started: Instant,
) -> Option<String> {
    let mut fault: Option<String> = None;
    // Each job counts once, by its last run.
    for ran in batch.iter().filter_map(|job| job.last_run()) {
        if !ran.ok {
            stats.failed_jobs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = ran.store_fault {
            fault = Some(reason);
        }
    }
    let size = batch.len() as u64;
    if let Err(e) = committed {
        log::error!("commit of {size} write jobs failed: {e}");
        stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        let _ = rollback(conn);
        fault = Some(format!("commit failed: {e}"));
    } else {
        let took = started.elapsed();
        stats.record_commit(size, took);
        // A writer that falls this far behind is failing its callers even
        // though nothing errored: it counts toward opening the breaker.
        if took > COMMIT_SLOW && fault.is_none() {
            fault = Some(format!("a commit took {} ms", took.as_millis()));
        }
    }
    fault
}

fn begin(conn: &Connection) -> rusqlite::Result<()> {
    run_cached(conn, "BEGIN IMMEDIATE")
}

fn rollback(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    run_cached(conn, "ROLLBACK")
}

/// Runs every job without savepoints. `Ok(false)` as soon as one fails after
/// changing rows (the transaction then holds its partial writes), or fails
/// through the store (disk full, I/O): then the savepoint path decides, as
/// it always did. `Err` when SQLite itself ended the transaction.
fn run_plain(tx: &WriteTx<'_>, batch: &mut [Box<dyn QueuedJob>]) -> rusqlite::Result<bool> {
    for job in batch.iter_mut() {
        let changes = tx.total_changes();
        let ran = job.run(tx);
        still_in_transaction(tx)?;
        if !ran.ok && (tx.total_changes() != changes || ran.store_fault.is_some()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// SQLite rolls the whole transaction back by itself after some errors
/// (disk full, I/O error, interrupt). Any statement after that would run in
/// autocommit mode, outside the batch: so the batch stops and fails.
fn still_in_transaction(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("SQLite rolled the write transaction back".into()),
        ));
    }
    Ok(())
}

/// Runs every job in its own savepoint: released when the job succeeded,
/// rolled back when it failed. `Err` when a savepoint itself failed, which
/// leaves the transaction in an unknown state: nothing of it is committed.
fn run_in_savepoints(tx: &WriteTx<'_>, batch: &mut [Box<dyn QueuedJob>]) -> rusqlite::Result<bool> {
    for job in batch.iter_mut() {
        run_cached(tx, "SAVEPOINT job")?;
        let ok = job.run(tx).ok;
        still_in_transaction(tx)?;
        if ok {
            run_cached(tx, "RELEASE job")?;
        } else {
            run_cached(tx, "ROLLBACK TO job")?;
            run_cached(tx, "RELEASE job")?;
        }
    }
    Ok(true)
}

/// Runs a statement without parameters from the statement cache (savepoints
/// run twice per job: parsing them each time showed in profiles).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// rusqlite errors are not `Clone`; every caller of a failed commit gets an
/// equivalent one.
fn clone_error(e: &rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            Error::from(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => Error::internal(format!("database: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;
    use std::sync::atomic::AtomicUsize;

    fn temp_writer() -> (TempDir, Writer) {
        let dir = TempDir::new();
        let path = dir.path.join("w.db");
        let mut conn = super::super::pragmas::open_writer(&path).unwrap();
        super::super::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))",
        )
        .unwrap();
        (
            dir,
            Writer::start(
                conn,
                Arc::new(|_: &Connection, _: &[Touched]| {}),
                Arc::new(Breaker::new(5, std::time::Duration::from_secs(5))),
            )
            .unwrap(),
        )
    }

    /// Keeps the writer busy in a job until `open`, so that jobs submitted
    /// meanwhile queue up and share the next commit.
    fn hold(writer: &Writer) -> Gate {
        let (gate, held) = crossbeam_channel::bounded::<()>(0);
        writer.submit(
            Weight::ONE,
            move |_tx| {
                // A rerun (after `open`) finds the gate gone and passes.
                let _ = held.recv_timeout(std::time::Duration::from_secs(5));
                Ok(())
            },
            |_: Result<()>| {},
        );
        Gate(gate)
    }

    /// Submits `work`, noting on `results` whether it succeeded (in the
    /// order the jobs finish).
    fn submit_noting<T: Send + 'static>(
        writer: &Writer,
        results: &Arc<Mutex<Vec<bool>>>,
        work: impl Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    ) {
        let results = Arc::clone(results);
        writer.submit(Weight::ONE, work, move |r: Result<T>| {
            results.lock().unwrap().push(r.is_ok())
        });
    }

    struct Gate(crossbeam_channel::Sender<()>);

    impl Gate {
        fn open(self) {
            let _ = self.0.send(());
        }
    }

    fn count(writer: &Writer) -> i64 {
        writer
            .write(|tx| Ok(tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap()
    }

    #[test]
    fn many_threads_writing_at_once_all_commit() {
        let (_dir, writer) = temp_writer();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        writer
                            .write(move |tx| {
                                tx.execute("INSERT INTO t (id, v) VALUES (?1, 1)", [t * 1000 + i])?;
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count(&writer), 1600);
        assert!(writer.stats.commits.load(Ordering::Relaxed) <= 1601);
        writer.shutdown();
    }

    #[test]
    fn a_failing_job_rolls_back_alone() {
        let (_dir, writer) = temp_writer();
        // Queue three jobs behind a slow one so they share one commit.
        let gate = hold(&writer);
        let results = Arc::new(Mutex::new(Vec::new()));
        for (id, v) in [(1, 5), (2, -1), (3, 7)] {
            submit_noting(&writer, &results, move |tx| {
                tx.execute("INSERT INTO t (id, v) VALUES (?1, 0)", [id])?;
                tx.execute("UPDATE t SET v = ?2 WHERE id = ?1", [id, v])?;
                Ok(id)
            });
        }
        gate.open();
        assert_eq!(count(&writer), 2, "the job with v = -1 left nothing behind");
        let ids: Vec<i64> = writer
            .write(|tx| {
                let mut stmt = tx.prepare("SELECT id FROM t ORDER BY id")?;
                let rows = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(*results.lock().unwrap(), vec![true, false, true]);
        assert!(writer.stats.max_batch_size.load(Ordering::Relaxed) >= 3);
        assert_eq!(writer.stats.savepoint_retries.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats.failed_jobs.load(Ordering::Relaxed), 1);
        writer.shutdown();
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_commits_nothing_of_its_batch() {
        let (_dir, writer) = temp_writer();
        let gate = hold(&writer);
        let results = Arc::new(Mutex::new(Vec::new()));
        // 1 writes; 2 is interrupted mid-statement (SQLite then rolls the
        // whole transaction back, as after disk full or an I/O error);
        // 3 would write; 4 would write and fail.
        for id in 1..=4i64 {
            submit_noting(&writer, &results, move |tx| {
                if id == 2 {
                    tx.progress_handler(1, Some(|| true))?;
                    let interrupted = tx.execute("INSERT INTO t (id, v) VALUES (2, 0)", []);
                    assert!(interrupted.is_err(), "the statement ran to the end");
                    tx.progress_handler(0, None::<fn() -> bool>)?;
                    interrupted?;
                } else {
                    tx.execute("INSERT INTO t (id, v) VALUES (?1, 0)", [id])?;
                }
                if id == 4 {
                    return Err(Error::invalid_field("v", "refused after writing"));
                }
                Ok(id)
            });
        }
        gate.open();
        assert_eq!(count(&writer), 0, "nothing of the batch may be committed");
        assert_eq!(*results.lock().unwrap(), vec![false; 4]);
        writer.shutdown();
    }

    #[test]
    fn a_job_refused_before_writing_needs_no_second_run() {
        let (_dir, writer) = temp_writer();
        let gate = hold(&writer);
        let runs = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new(Vec::new()));
        for (id, v) in [(1, 5), (2, -1), (3, 7)] {
            let runs = Arc::clone(&runs);
            submit_noting(&writer, &results, move |tx| {
                runs.fetch_add(1, Ordering::Relaxed);
                // Refused by a statement that changes no row.
                if v < 0 {
                    let changed = tx.execute("UPDATE t SET v = 1 WHERE id = -1", [])?;
                    assert_eq!(changed, 0);
                    return Err(Error::invalid_field("v", "negative"));
                }
                tx.execute("INSERT INTO t (id, v) VALUES (?1, ?2)", [id, v])?;
                Ok(id)
            });
        }
        gate.open();
        assert_eq!(count(&writer), 2);
        assert_eq!(*results.lock().unwrap(), vec![true, false, true]);
        assert_eq!(runs.load(Ordering::Relaxed), 3, "every job ran once");
        assert_eq!(writer.stats.savepoint_retries.load(Ordering::Relaxed), 0);
        writer.shutdown();
    }

    #[test]
    fn no_job_is_answered_before_its_commit() {
        let (dir, writer) = temp_writer();
        let path = dir.path.join("w.db");
        let seen_uncommitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                let path = path.clone();
                let seen = Arc::clone(&seen_uncommitted);
                std::thread::spawn(move || {
                    // An independent connection sees only committed data.
                    let reader = Connection::open(&path).unwrap();
                    for i in 0..50 {
                        let id = t * 1000 + i;
                        writer
                            .write(move |tx| {
                                tx.execute("INSERT INTO t (id, v) VALUES (?1, 1)", [id])?;
                                Ok(())
                            })
                            .unwrap();
                        let n: i64 = reader
                            .query_row("SELECT count(*) FROM t WHERE id = ?1", [id], |r| r.get(0))
                            .unwrap();
                        if n != 1 {
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(seen_uncommitted.load(Ordering::Relaxed), 0);
        writer.shutdown();
    }

    #[test]
    fn heavy_jobs_are_spread_over_commits_by_weight() {
        let (_dir, writer) = temp_writer();
        let gate = hold(&writer);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for _ in 0..3 {
            let done_tx = done_tx.clone();
            writer.submit(
                Weight::of(3000),
                |_tx| Ok(()),
                move |r: Result<()>| {
                    let _ = done_tx.send(r.is_ok());
                },
            );
        }
        let light = 20;
        for _ in 0..light {
            let done_tx = done_tx.clone();
            writer.submit(
                Weight::ONE,
                |_tx| Ok(()),
                move |r: Result<()>| {
                    let _ = done_tx.send(r.is_ok());
                },
            );
        }
        let before = writer.stats.commits.load(Ordering::Relaxed);
        gate.open();
        let answers: Vec<bool> = (0..3 + light).map(|_| done_rx.recv().unwrap()).collect();
        assert!(answers.iter().all(|ok| *ok));
        let commits = writer.stats.commits.load(Ordering::Relaxed) - before;
        // No two 3000-weight jobs fit one commit (4096): at least three
        // commits, where job count alone would have allowed one.
        assert!(
            commits >= 3,
            "heavy jobs shared a commit: {commits} commits"
        );
        writer.shutdown();
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_writer_goes_on() {
        let (_dir, writer) = temp_writer();
        let r: Result<()> = writer.write(|_tx| panic!("boom"));
        assert!(matches!(r, Err(Error::Internal { .. })));
        writer
            .write(|tx| Ok(tx.execute("INSERT INTO t (id, v) VALUES (1, 1)", [])?))
            .unwrap();
        assert_eq!(count(&writer), 1);
        writer.shutdown();
        let after: Result<()> = writer.write(|_tx| Ok(()));
        assert!(matches!(after, Err(Error::Unavailable { .. })));
    }
}
