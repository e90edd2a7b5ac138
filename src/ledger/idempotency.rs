//! Idempotency keys (docs/api.md, docs/ledger.md): per caller, a fingerprint of the parsed
//! request, the stored response replayed on a repeat, 422 when the key comes
//! back with another request, 409 while the first is still running. The key
//! is stored by the same write job as the movement it guards.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::util::LockUnpoisoned;

/// Longest key (docs/api.md).
pub const KEY_CHARS_MAX: usize = 255;
/// How long keys are kept at least (24 h, docs/api.md); purged after twice that.
pub const KEEP_SECONDS: i64 = 48 * 3600;

pub type Fingerprint = [u8; 32];

/// The name errors about the key give as their `field`.
pub const KEY_FIELD: &str = "Idempotency-Key";

/// A key that was sent: 1–255 visible ASCII characters, or 400.
pub fn parse_key(key: &str) -> Result<String> {
    let ok = (1..=KEY_CHARS_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(invalid_key());
    }
    Ok(key.to_owned())
}

/// The answer to any key that is not 1–255 visible ASCII characters.
pub fn invalid_key() -> Error {
    Error::invalid_field(
        KEY_FIELD,
        format!("{KEY_FIELD} must be 1-{KEY_CHARS_MAX} visible ASCII characters"),
    )
}

/// SHA-256 of the route and the request as parsed (so formatting, key order
/// or `"0.5"` versus `"0.50"` do not make two requests differ).
pub fn fingerprint(route: &str, canonical: &serde_json::Value) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0u8]);
    hasher.update(canonical.to_string().as_bytes());
    hasher.finalize().into()
}

/// A response stored under a key.
pub struct Stored {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The stored response for (user, key) if the fingerprint matches; 422 if it
/// does not; `None` if the key is new.
pub fn lookup(
    conn: &Connection,
    user_id: i64,
    key: &str,
    fingerprint: &Fingerprint,
) -> Result<Option<Stored>> {
    let row = conn
        .prepare_cached(
            "SELECT fingerprint, status, body FROM idempotency WHERE user_id = ?1 AND key = ?2",
        )?
        .query_row(params![user_id, key], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, u16>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })
        .optional()?;
    match row {
        None => Ok(None),
        Some((stored, status, body)) if stored.as_slice() == fingerprint.as_slice() => {
            Ok(Some(Stored { status, body }))
        }
        Some(_) => Err(Error::IdempotencyMismatch),
    }
}

pub fn store(
    conn: &Connection,
    user_id: i64,
    key: &str,
    fingerprint: &Fingerprint,
    response: &Stored,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency (user_id, key, fingerprint, status, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user_id,
        key,
        fingerprint.as_slice(),
        response.status,
        response.body,
        now
    ])?;
    Ok(())
}

/// Removes keys older than `KEEP_SECONDS`, at most `limit` at a time.
/// Whether `purge` would find anything.
pub fn purgeable(conn: &Connection, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM idempotency WHERE created_at < ?1)")?
        .query_row([now - KEEP_SECONDS], |row| row.get(0))?)
}

pub fn purge(conn: &Connection, now: i64, limit: usize) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE (user_id, key) IN
               (SELECT user_id, key FROM idempotency WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![now - KEEP_SECONDS, limit as i64])?)
}

/// Keys whose first request is still running, in this process. Bounded by
/// the number of requests in flight (at most one per connection).
#[derive(Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<(i64, String)>>>);

/// Holds a key as in flight until dropped.
pub struct InFlightGuard {
    set: InFlight,
    entry: (i64, String),
}

impl InFlight {
    /// Marks (user, key) as running; 409 `idempotency_in_progress` if it is.
    pub fn begin(&self, user_id: i64, key: &str) -> Result<InFlightGuard> {
        let entry = (user_id, key.to_owned());
        let mut set = self.0.lock_unpoisoned();
        if !set.insert(entry.clone()) {
            return Err(Error::Conflict {
                code: "idempotency_in_progress",
                message: "a request with this Idempotency-Key is still running".into(),
            });
        }
        Ok(InFlightGuard {
            set: self.clone(),
            entry,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.0.lock_unpoisoned().remove(&self.entry);
    }
}
