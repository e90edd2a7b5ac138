//! The circuit breaker around the store. Consecutive failures that are not
//! the caller's fault open it after a threshold: a read or a write job that
//! failed with `Error::Store` (disk full, I/O errors, a database that cannot
//! be opened, query timeouts, busy), a failed or slow commit, a write queue
//! that stays full. Other errors, 503s included, do not count. While open, writes fail
//! at once with 503 and `Retry-After` (nothing is attempted, so nothing is
//! half-applied); reads are still tried. After the cool-down one write is let
//! through as a probe (half-open): its success closes the breaker, its
//! failure opens it again.
//!
//! Write and read failures are counted apart, so reads that still work do
//! not hide a disk that refuses every write.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::util::LockUnpoisoned;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// Serialized as `as_str`'s text (the store figures' `circuit.state`).
impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Which path an outcome came from.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    Write,
    Read,
}

struct Inner {
    state: State,
    write_failures: u32,
    read_failures: u32,
    /// While open: when the next probe may go.
    open_until: Option<Instant>,
    /// Half-open: a probe write is running.
    probing: bool,
    reason: String,
}

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    /// `State::code`, readable without the lock (metrics, alerts).
    state: AtomicU8,
    pub opened_total: AtomicU64,
}

/// What a write may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Normal,
    /// The one write let through while half-open; its outcome decides.
    Probe,
}

/// A snapshot for `/readyz`, metrics and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub state: State,
    pub reason: String,
    pub consecutive_write_failures: u32,
    pub consecutive_read_failures: u32,
    pub opened_total: u64,
    pub retry_after_s: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                state: State::Closed,
                write_failures: 0,
                read_failures: 0,
                open_until: None,
                probing: false,
                reason: String::new(),
            }),
            state: AtomicU8::new(State::Closed.code()),
            opened_total: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }

    fn set(&self, inner: &mut Inner, state: State) {
        if inner.state != state {
            log::warn!(
                "store circuit breaker {} -> {} ({})",
                inner.state.as_str(),
                state.as_str(),
                inner.reason
            );
        }
        inner.state = state;
        self.state.store(state.code(), Ordering::Relaxed);
    }

    /// May a write run now? While open (or while a probe runs), no: 503.
    pub fn admit_write(&self) -> Result<Admission> {
        let mut inner = self.inner.lock_unpoisoned();
        let now = Instant::now();
        match inner.state {
            State::Closed => Ok(Admission::Normal),
            State::Open if inner.open_until.is_some_and(|until| now < until) => {
                Err(open_error(&inner, now))
            }
            State::Open => {
                self.set(&mut inner, State::HalfOpen);
                inner.probing = true;
                Ok(Admission::Probe)
            }
            State::HalfOpen if inner.probing => Err(open_error(&inner, now)),
            State::HalfOpen => {
                inner.probing = true;
                Ok(Admission::Probe)
            }
        }
    }

    /// The store worked for this path.
    pub fn success(&self, path: Path) {
        let mut inner = self.inner.lock_unpoisoned();
        match path {
            Path::Write => {
                inner.write_failures = 0;
                if inner.state == State::HalfOpen {
                    inner.probing = false;
                    inner.reason = "a probe write succeeded".into();
                    self.set(&mut inner, State::Closed);
                }
            }
            Path::Read => inner.read_failures = 0,
        }
    }

    /// The store failed for this path, not through the caller's fault.
    pub fn failure(&self, path: Path, reason: &str) {
        let mut inner = self.inner.lock_unpoisoned();
        let count = match path {
            Path::Write => {
                inner.write_failures = inner.write_failures.saturating_add(1);
                inner.write_failures
            }
            Path::Read => {
                inner.read_failures = inner.read_failures.saturating_add(1);
                inner.read_failures
            }
        };
        let reopen = inner.state == State::HalfOpen && matches!(path, Path::Write);
        if reopen || (inner.state == State::Closed && count >= self.threshold) {
            inner.reason = reason.to_owned();
            inner.probing = false;
            inner.open_until = Some(Instant::now() + self.cooldown);
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            self.set(&mut inner, State::Open);
        }
    }

    /// A probe that never reached the database (say the queue was full)
    /// leaves the breaker half-open for the next write to try.
    pub fn probe_abandoned(&self) {
        self.inner.lock_unpoisoned().probing = false;
    }

    pub fn status(&self) -> Status {
        let inner = self.inner.lock_unpoisoned();
        let now = Instant::now();
        Status {
            state: inner.state,
            reason: inner.reason.clone(),
            consecutive_write_failures: inner.write_failures,
            consecutive_read_failures: inner.read_failures,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            retry_after_s: retry_after(&inner, now),
        }
    }
}

fn retry_after(inner: &Inner, now: Instant) -> u64 {
    let left = inner
        .open_until
        .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

fn open_error(inner: &Inner, now: Instant) -> Error {
    Error::Unavailable {
        reason: format!("the store is failing ({}); writes are paused", inner.reason),
        retry_after_s: retry_after(inner, now),
    }
}

/// Whether an error is the store's fault (counts toward opening): only
/// `Error::Store`, never another 503 (a full queue, the breaker itself).
pub fn is_store_fault(error: &Error) -> bool {
    matches!(error, Error::Store { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_errors_count_as_store_faults() {
        let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
        let busy = Error::from(rusqlite::Error::SqliteFailure(busy, None));
        assert!(is_store_fault(&busy), "{busy:?}");
        assert!(!is_store_fault(&Error::unavailable("write queue is full")));
        assert!(!is_store_fault(&Error::internal("a bug")));
    }

    #[test]
    fn opens_after_the_threshold_fails_fast_half_opens_and_closes_on_success() {
        let breaker = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            breaker.failure(Path::Write, "disk full");
        }
        assert_eq!(
            breaker.admit_write().unwrap(),
            Admission::Normal,
            "below the threshold"
        );
        breaker.failure(Path::Write, "disk full");
        assert_eq!(breaker.state(), State::Open);
        let started = Instant::now();
        assert!(matches!(
            breaker.admit_write(),
            Err(Error::Unavailable { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(5), "fails fast");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.admit_write().unwrap(), Admission::Probe);
        assert!(breaker.admit_write().is_err(), "one probe at a time");
        breaker.success(Path::Write);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.status().opened_total, 1);
    }

    #[test]
    fn a_failed_probe_reopens_and_reads_do_not_hide_write_failures() {
        let breaker = Breaker::new(2, Duration::from_millis(20));
        breaker.failure(Path::Write, "io");
        breaker.success(Path::Read);
        breaker.failure(Path::Write, "io");
        assert_eq!(
            breaker.state(),
            State::Open,
            "a good read between did not reset the writes"
        );
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(breaker.admit_write().unwrap(), Admission::Probe);
        breaker.failure(Path::Write, "io");
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.status().opened_total, 2);
    }
}
