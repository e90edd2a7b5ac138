//! Operator changes to accounts from the command line (`souk user passwd |
//! set-role | suspend | reactivate | unlock`), made beside a running server
//! through the database alone, and how that server takes them in.
//!
//! Each change commits, in its own transaction, a bump of the `meta` row
//! `operator_generation`. A running server reads that one row at most once
//! per `OPERATOR_CHECK_INTERVAL` (`Follower::sync`, called by every
//! authenticated request and every login; one of them is elected to read);
//! when the number moved it drops every cached profile and session and
//! clears the login lockouts the change asked to lift (`meta` rows
//! `operator_unlock:NAME`, holding the generation that asked). The command
//! waits `OPERATOR_SETTLE` after its commit before it reports success, so
//! no suspended user, ended session or old role is served from a cache
//! after the command returned; when checks stop succeeding, requests read
//! through the caches instead of trusting them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::guard::LoginGuard;
use super::{Role, Status, User, Username, sessions, users};
use crate::cache::Caches;
use crate::error::{Error, Result};
use crate::ledger::PLATFORM;
use crate::store::{Readers, WriteTx};

/// The `meta` row counting operator changes.
pub const GENERATION_KEY: &str = "operator_generation";
/// `meta` rows `operator_unlock:NAME` = the generation that unlocked NAME:
/// at most one per user (each unlock overwrites its row), read only when
/// the generation moved.
const UNLOCK_PREFIX: &str = "operator_unlock:";

/// The operator generation in the database (0 before any change).
pub fn generation(conn: &Connection) -> Result<i64> {
    let value: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([GENERATION_KEY], |row| row.get(0))
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Counts one operator change, in the change's own transaction.
fn bump(tx: &WriteTx<'_>) -> Result<i64> {
    let next = generation(tx)?
        .checked_add(1)
        .ok_or_else(|| Error::internal("operator generation overflows"))?;
    set_meta(tx, GENERATION_KEY, &next.to_string())?;
    Ok(next)
}

fn set_meta(tx: &WriteTx<'_>, key: &str, value: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

fn user_named(conn: &Connection, username: &Username) -> Result<User> {
    users::by_username_with_hash(conn, username)?
        .map(|(user, _)| user)
        .ok_or_else(|| Error::Setup(format!("no user named `{}`", username.as_str())))
}

/// Sets a user's password hash and ends all their sessions.
pub fn set_password(tx: &WriteTx<'_>, username: &Username, password_hash: &str) -> Result<User> {
    let user = user_named(tx, username)?;
    users::set_password_hash(tx, user.id, password_hash)?;
    sessions::end_all(tx, user.id, None)?;
    bump(tx)?;
    Ok(user)
}

/// Changes a user's role or status (suspending ends their sessions).
pub fn change(tx: &WriteTx<'_>, username: &Username, changes: &users::Changes) -> Result<User> {
    let user = user_named(tx, username)?;
    let user = users::update(tx, user.id, changes)?;
    bump(tx)?;
    Ok(user)
}

pub fn set_role(tx: &WriteTx<'_>, username: &Username, role: Role) -> Result<User> {
    let changes = users::Changes {
        role: Some(role),
        ..users::Changes::default()
    };
    change(tx, username, &changes)
}

pub fn set_status(tx: &WriteTx<'_>, username: &Username, status: Status) -> Result<User> {
    let changes = users::Changes {
        status: Some(status),
        ..users::Changes::default()
    };
    change(tx, username, &changes)
}

/// Asks the running server to lift a login lockout of `username`.
pub fn unlock(tx: &WriteTx<'_>, username: &Username) -> Result<User> {
    let user = user_named(tx, username)?;
    let generation = bump(tx)?;
    let key = format!("{UNLOCK_PREFIX}{}", username.as_str());
    set_meta(tx, &key, &generation.to_string())?;
    Ok(user)
}

/// Usernames unlocked by a generation after `seen`.
fn unlocked_since(conn: &Connection, seen: i64) -> Result<Vec<String>> {
    // Every username sorts below `prefix || U+007F` (usernames are ASCII).
    let mut stmt =
        conn.prepare_cached("SELECT key, value FROM meta WHERE key > ?1 AND key < ?2")?;
    let rows = stmt.query_map(
        params![UNLOCK_PREFIX, format!("{UNLOCK_PREFIX}\u{7f}")],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )?;
    let mut names = Vec::new();
    for row in rows {
        let (key, value) = row?;
        if value.parse::<i64>().is_ok_and(|g| g > seen) {
            names.push(key[UNLOCK_PREFIX.len()..].to_owned());
        }
    }
    Ok(names)
}

/// Every user but the platform account, in username order (`souk user list`).
pub fn list(conn: &Connection, mut each: impl FnMut(&User)) -> Result<()> {
    let sql = format!(
        "SELECT {} FROM users WHERE id != {PLATFORM} ORDER BY username",
        users::COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        each(&users::from_row(row)?);
    }
    Ok(())
}

/// How often at most the server reads the operator generation. One
/// primary-key read per interval, by one request, instead of one per
/// authenticated request: cached traffic neither checks out a reader nor
/// waits for one. 50 ms is far below any human's reaction to a command
/// (and `souk user` commands wait it out, see `OPERATOR_SETTLE`), yet
/// makes the read negligible at any request rate.
pub const OPERATOR_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How old the last successful check may be for a request to trust the
/// caches without one of its own: a few intervals, so a check that is in
/// flight on another request (or a late one) does not send everyone to the
/// database, while a follower whose reads keep failing stops trusting the
/// caches (requests then read through them: `Freshness::ReadThrough`).
pub const OPERATOR_STALE_AFTER: Duration = Duration::from_millis(150);
/// How long a `souk user` command waits after its commit before it reports
/// success: longer than `OPERATOR_STALE_AFTER`, so any request after the
/// command returned either checks itself or trusts a check that started
/// after the commit (and so saw it).
pub const OPERATOR_SETTLE: Duration = Duration::from_millis(200);
const _: () = assert!(OPERATOR_CHECK_INTERVAL.as_millis() < OPERATOR_STALE_AFTER.as_millis());
const _: () = assert!(OPERATOR_STALE_AFTER.as_millis() < OPERATOR_SETTLE.as_millis());

/// Whether a request may trust the caches for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A check that started less than `OPERATOR_STALE_AFTER` ago succeeded.
    Trusted,
    /// No recent successful check: read sessions and users from the
    /// database, not from the caches.
    ReadThrough,
}

/// Who checks when: times in microseconds since the follower started.
/// `attempted` elects one checker per interval (compare-and-swap);
/// `succeeded` is the start of the last check that completed, recorded
/// only after its caches were cleared.
struct Gate {
    attempted: AtomicU64,
    succeeded: AtomicU64,
}

impl Gate {
    fn new(now_us: u64) -> Gate {
        Gate {
            attempted: AtomicU64::new(now_us),
            succeeded: AtomicU64::new(now_us),
        }
    }

    /// True for exactly one caller once `OPERATOR_CHECK_INTERVAL` has
    /// passed since the last attempt.
    fn elect(&self, now_us: u64) -> bool {
        let last = self.attempted.load(Ordering::Acquire);
        now_us.saturating_sub(last) >= micros(OPERATOR_CHECK_INTERVAL)
            && self
                .attempted
                .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// A check that started at `started_us` completed.
    fn record_success(&self, started_us: u64) {
        self.succeeded.fetch_max(started_us, Ordering::AcqRel);
    }

    fn freshness(&self, now_us: u64) -> Freshness {
        let last = self.succeeded.load(Ordering::Acquire);
        if now_us.saturating_sub(last) < micros(OPERATOR_STALE_AFTER) {
            Freshness::Trusted
        } else {
            Freshness::ReadThrough
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The server's side: the last generation it has taken in, and when it
/// last looked.
pub struct Follower {
    seen: AtomicI64,
    started: Instant,
    gate: Gate,
}

impl Follower {
    /// Starts from the database's generation: caches start empty, and
    /// lockouts are not in the database.
    pub fn start(readers: &Readers) -> Result<Follower> {
        let started = Instant::now();
        Ok(Follower {
            seen: AtomicI64::new(readers.read(generation)?),
            started,
            gate: Gate::new(0),
        })
    }

    fn now_us(&self) -> u64 {
        micros(self.started.elapsed())
    }

    /// Takes in operator changes, reading the generation at most once per
    /// `OPERATOR_CHECK_INTERVAL` (by the one request elected to), and says
    /// whether the caches may be trusted: not when no check succeeded for
    /// `OPERATOR_STALE_AFTER` (reads failing, or a check stuck).
    pub fn sync(&self, readers: &Readers, caches: &Caches, guard: &LoginGuard) -> Freshness {
        let now_us = self.now_us();
        if self.gate.elect(now_us) {
            match self.check(readers, caches, guard) {
                Ok(()) => self.gate.record_success(now_us),
                Err(e) => log::warn!("reading the operator generation failed: {e}"),
            }
        }
        self.gate.freshness(now_us)
    }

    /// Reads the generation; when it moved, drops every cached profile and
    /// session and lifts the lockouts asked for.
    fn check(&self, readers: &Readers, caches: &Caches, guard: &LoginGuard) -> Result<()> {
        let seen = self.seen.load(Ordering::Acquire);
        let now = readers.read(generation)?;
        if now == seen {
            return Ok(());
        }
        let unlocked = readers.read(|conn| unlocked_since(conn, seen))?;
        // Before `seen` moves and the check counts as a success: a request
        // that trusts it finds the caches already cleared (and their
        // generations moved, so no load that read older rows stores them).
        caches.profiles.clear();
        caches.sessions.clear();
        for name in &unlocked {
            guard.unlock(name);
        }
        self.seen.fetch_max(now, Ordering::AcqRel);
        log::info!(
            "operator changes {}..={now} taken in: cached users and sessions dropped{}",
            seen + 1,
            if unlocked.is_empty() {
                String::new()
            } else {
                format!(", unlocked {}", unlocked.join(", "))
            }
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: u64 = OPERATOR_CHECK_INTERVAL.as_micros() as u64;
    const STALE: u64 = OPERATOR_STALE_AFTER.as_micros() as u64;

    #[test]
    fn one_caller_per_interval_checks_and_stale_checks_are_not_trusted() {
        let gate = Gate::new(0);
        assert!(!gate.elect(INTERVAL - 1), "too soon");
        assert!(gate.elect(INTERVAL));
        assert!(!gate.elect(INTERVAL), "already elected");
        assert!(!gate.elect(2 * INTERVAL - 1));
        assert_eq!(gate.freshness(STALE - 1), Freshness::Trusted);
        // The checks keep failing: nothing is recorded, trust runs out.
        assert_eq!(gate.freshness(STALE), Freshness::ReadThrough);
        assert!(gate.elect(STALE));
        gate.record_success(STALE);
        assert_eq!(gate.freshness(STALE + 1), Freshness::Trusted);
        // A slower, older check finishing late does not move it back.
        gate.record_success(INTERVAL);
        assert_eq!(gate.freshness(2 * STALE - 1), Freshness::Trusted);
    }

    #[test]
    fn racing_callers_elect_exactly_one() {
        let gate = std::sync::Arc::new(Gate::new(0));
        let elected: usize = (0..8)
            .map(|_| {
                let gate = std::sync::Arc::clone(&gate);
                std::thread::spawn(move || gate.elect(INTERVAL) as usize)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(elected, 1);
    }
}
