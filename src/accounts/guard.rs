//! The login guard: lockout per username after MAX_LOGIN_ATTEMPTS consecutive
//! failures (of a login or of `PATCH /users/me`'s current password), and
//! per-address limits on attempts per minute (logins and password checks;
//! registrations). Counters live in bounded in-process LRU maps.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::util::LockUnpoisoned;

/// Usernames with failures remembered at once; the least recently failed go first.
pub const LOCKOUT_ENTRIES_MAX: usize = 100_000;
/// Client addresses with a window remembered at once, per limit.
pub const RATE_ENTRIES_MAX: usize = 100_000;
const RATE_WINDOW: Duration = Duration::from_secs(60);

struct Failures {
    count: u32,
    /// Attempts whose password check is still running: counted against the
    /// limit too, so parallel guesses cannot slip past it.
    pending: u32,
    locked_until: Option<Instant>,
}

struct Window {
    started: Instant,
    attempts: u32,
}

pub struct LoginGuard {
    failures: Mutex<LruCache<String, Failures>>,
    logins: AddressLimit,
    max_attempts: u32,
    lockout: Duration,
}

/// At most `per_minute` attempts from one client address in each
/// one-minute window; the address is what a script cannot multiply cheaply.
pub struct AddressLimit {
    windows: Mutex<LruCache<IpAddr, Window>>,
    per_minute: u32,
    /// What is counted ("login", "registration"), for the log.
    what: &'static str,
}

fn retry_after(until: Instant, now: Instant) -> u64 {
    // Rounded up: a client that waits this long is let in.
    let left = until.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// The maps below are `LruCache::sparse`: they grow with their entries; a
/// map reserved whole at start would hold 2 MiB of address space each and
/// write 128 KiB of it, for lockouts and limits that are mostly empty.
fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl AddressLimit {
    pub fn new(what: &'static str, per_minute: u32) -> AddressLimit {
        AddressLimit {
            windows: Mutex::new(LruCache::sparse(capacity(RATE_ENTRIES_MAX))),
            per_minute,
            what,
        }
    }

    /// Counts one attempt from `addr`; `RateLimited` past the limit.
    pub fn count(&self, addr: IpAddr) -> Result<()> {
        let now = Instant::now();
        let mut windows = self.windows.lock_unpoisoned();
        let window = windows.get_or_insert_mut(addr, || Window {
            started: now,
            attempts: 0,
        });
        if now.duration_since(window.started) >= RATE_WINDOW {
            *window = Window {
                started: now,
                attempts: 0,
            };
        }
        window.attempts = window.attempts.saturating_add(1);
        if window.attempts > self.per_minute {
            log::warn!("{} rate limit reached for client {addr}", self.what);
            return Err(Error::RateLimited {
                retry_after_s: retry_after(window.started + RATE_WINDOW, now),
            });
        }
        Ok(())
    }
}

impl LoginGuard {
    pub fn new(max_attempts: u32, lockout: Duration, attempts_per_minute: u32) -> LoginGuard {
        LoginGuard {
            failures: Mutex::new(LruCache::sparse(capacity(LOCKOUT_ENTRIES_MAX))),
            logins: AddressLimit::new("login", attempts_per_minute),
            max_attempts,
            lockout,
        }
    }

    /// Counts one password check from `addr` (a login, or a current
    /// password on `PATCH /users/me`); `RateLimited` past the limit.
    pub fn count_attempt(&self, addr: IpAddr) -> Result<()> {
        self.logins.count(addr)
    }

    /// Starts a login attempt for `username` from `client` (named in the
    /// log lines of failures and lockouts): `LockedOut` while it is
    /// locked (even for the right password) or while the attempts already
    /// running would reach the limit. The attempt ends with the returned
    /// guard's `failed` or `succeeded` (or its drop, counting neither).
    pub fn begin(self: &Arc<Self>, username: &str, client: IpAddr) -> Result<Attempt> {
        let now = Instant::now();
        let mut failures = self.failures.lock_unpoisoned();
        let entry = failures.get_or_insert_mut(username.to_owned(), || Failures {
            count: 0,
            pending: 0,
            locked_until: None,
        });
        if let Some(until) = entry.locked_until {
            if until > now {
                log::info!("login for `{username}` from {client} refused: locked out");
                return Err(Error::LockedOut {
                    retry_after_s: retry_after(until, now),
                });
            }
            // The lock has run out: the count starts again.
            entry.count = 0;
            entry.locked_until = None;
        }
        if entry.count.saturating_add(entry.pending) >= self.max_attempts {
            return Err(Error::LockedOut { retry_after_s: 1 });
        }
        entry.pending += 1;
        Ok(Attempt {
            guard: Arc::clone(self),
            username: username.to_owned(),
            client,
            open: true,
        })
    }

    /// Lifts a lockout of `username` and forgets its failures (`souk user
    /// unlock`); attempts still running keep their places.
    pub fn unlock(&self, username: &str) {
        let mut failures = self.failures.lock_unpoisoned();
        let Some(entry) = failures.get_mut(username) else {
            return;
        };
        entry.count = 0;
        entry.locked_until = None;
        if entry.pending == 0 {
            failures.pop(username);
        }
        log::info!("`{username}` unlocked by the operator");
    }

    /// How long `username` stays locked out, if it is.
    pub fn locked_for(&self, username: &str) -> Option<Duration> {
        let failures = self.failures.lock_unpoisoned();
        let until = failures.peek(username)?.locked_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn end(&self, username: &str, client: IpAddr, outcome: Outcome) {
        let mut failures = self.failures.lock_unpoisoned();
        let Some(entry) = failures.get_mut(username) else {
            return;
        };
        entry.pending = entry.pending.saturating_sub(1);
        match outcome {
            Outcome::RightPassword => entry.count = 0,
            Outcome::WrongPassword => {
                entry.count = entry.count.saturating_add(1);
                log::info!(
                    "failed login for `{username}` from {client} ({} in a row)",
                    entry.count
                );
                if entry.count >= self.max_attempts {
                    entry.locked_until = Some(Instant::now() + self.lockout);
                    log::warn!(
                        "`{username}` locked out for {} s after {} failed logins, the last from {client}",
                        self.lockout.as_secs(),
                        entry.count
                    );
                }
            }
            Outcome::NoVerdict => {}
        }
        if entry.count == 0 && entry.pending == 0 && entry.locked_until.is_none() {
            failures.pop(username);
        }
    }
}

/// How a login attempt ended, for `LoginGuard::end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Counts toward the lockout.
    WrongPassword,
    /// Starts the count again.
    RightPassword,
    /// Ended without a check (say the hash queue was full): counts neither
    /// way, but no longer holds a place.
    NoVerdict,
}

/// One login attempt in progress (see `LoginGuard::begin`).
pub struct Attempt {
    guard: Arc<LoginGuard>,
    username: String,
    client: IpAddr,
    open: bool,
}

impl Attempt {
    /// A wrong password: counts toward the lockout.
    pub fn failed(mut self) {
        self.open = false;
        self.guard
            .end(&self.username, self.client, Outcome::WrongPassword);
    }

    /// The right password: the count starts again.
    pub fn succeeded(mut self) {
        self.open = false;
        self.guard
            .end(&self.username, self.client, Outcome::RightPassword);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // Ended without a verdict (say the hash queue was full): it counts
        // neither way, but no longer holds a place.
        if self.open {
            self.guard
                .end(&self.username, self.client, Outcome::NoVerdict);
        }
    }
}
