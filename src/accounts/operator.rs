//! Operator changes to accounts from the command line (`souk user passwd |
//! set-role | suspend | reactivate | unlock`), made beside a running server
//! through the database alone, and how that server takes them in.
//!
//! Each change commits, in its own transaction, a bump of the `meta` row
//! `operator_generation`. A running server reads that one row before it
//! trusts its caches for authorization (`Follower::sync`, called by every
//! authenticated request and every login); when the number moved it drops
//! every cached profile and session and clears the login lockouts the
//! change asked to lift (`meta` rows `operator_unlock:NAME`, holding the
//! generation that asked). So no suspended user, ended session or old role
//! is served from a cache after the command returned.

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use super::guard::LoginGuard;
use super::{Role, Status, User, Username, sessions, users};
use crate::cache::Caches;
use crate::error::{Error, Result};
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
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![GENERATION_KEY, next.to_string()])?;
    Ok(next)
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
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![
        format!("{UNLOCK_PREFIX}{}", username.as_str()),
        generation.to_string()
    ])?;
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
        "SELECT {} FROM users WHERE id != 0 ORDER BY username",
        users::COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        each(&users::from_row(row)?);
    }
    Ok(())
}

/// The server's side: the last generation it has taken in.
pub struct Follower {
    seen: AtomicI64,
}

impl Follower {
    /// Starts from the database's generation: caches start empty, and
    /// lockouts are not in the database.
    pub fn start(readers: &Readers) -> Result<Follower> {
        Ok(Follower {
            seen: AtomicI64::new(readers.read(generation)?),
        })
    }

    /// Takes in operator changes committed since the last call: one
    /// primary-key read when there are none.
    pub fn sync(&self, readers: &Readers, caches: &Caches, guard: &LoginGuard) -> Result<()> {
        let seen = self.seen.load(Ordering::Acquire);
        let now = readers.read(generation)?;
        if now == seen {
            return Ok(());
        }
        let unlocked = readers.read(|conn| unlocked_since(conn, seen))?;
        // Before `seen` moves: a request that sees the new number finds the
        // caches already cleared (and the epochs bumped, so no load that read
        // older rows stores them).
        caches.profiles.invalidate_where(|_, _| true);
        caches.sessions.invalidate_where(|_, _| true);
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
