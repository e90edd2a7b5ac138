//! Sessions: 32-byte tokens from the OS CSPRNG, handed out base64url and
//! stored only as their SHA-256. Lookups go through the sessions cache
//! (`api::auth::caller`); a revoked token stops working at once because its
//! write job touches `Touched::Session`, which drops the cached entry before
//! the revocation is acknowledged, and an expired one because the caller
//! checks `expires_at` on every request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{Touched, WriteTx};

pub const TOKEN_BYTES: usize = 32;
/// Length of a token in base64url without padding.
pub const TOKEN_CHARS: usize = 43;

pub type TokenHash = [u8; 32];

/// A new token: what the client gets, and what is stored.
pub fn new_token() -> Result<(String, TokenHash)> {
    let bytes: [u8; TOKEN_BYTES] = crate::ids::random_bytes()?;
    Ok((URL_SAFE_NO_PAD.encode(bytes), hash(&bytes)))
}

fn hash(token: &[u8]) -> TokenHash {
    Sha256::digest(token).into()
}

/// The stored form of a token as a client sends it; `None` when it cannot
/// be one of ours (wrong length or alphabet).
pub fn hash_presented(token: &str) -> Option<TokenHash> {
    if token.len() != TOKEN_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    (bytes.len() == TOKEN_BYTES).then(|| hash(&bytes))
}

/// Whose a session is and until when (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct SessionEntry {
    pub user_id: i64,
    pub expires_at: i64,
}

/// The stored session with this token hash, live or not.
pub fn lookup(conn: &Connection, token: &TokenHash) -> Result<Option<SessionEntry>> {
    Ok(conn
        .prepare_cached("SELECT user_id, expires_at FROM sessions WHERE token_hash = ?1")?
        .query_row([token.as_slice()], |row| {
            Ok(SessionEntry {
                user_id: row.get(0)?,
                expires_at: row.get(1)?,
            })
        })
        .optional()?)
}

/// Starts a session for `user_id` and records the login, if the user is
/// still active with the password hash the login verified (`verified_hash`):
/// a password change (`PATCH /users/me`, `souk user passwd`) or a suspension
/// that committed while the password was being checked leaves the login
/// without a session, answered like a wrong password. Expired sessions of
/// that user are removed on the way, so the table does not grow with logins.
pub fn create(
    conn: &WriteTx<'_>,
    user_id: i64,
    verified_hash: &str,
    token: &TokenHash,
    now: i64,
    ttl_s: i64,
) -> Result<i64> {
    let expires_at = now
        .checked_add(ttl_s)
        .ok_or_else(|| Error::internal("session expiry overflows"))?;
    // The check and the insert are one statement in the login's own write
    // job, so no change can commit between them.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
             SELECT ?1, id, ?3, ?4 FROM users
             WHERE id = ?2 AND password_hash = ?5 AND status = 'active'",
        )?
        .execute(params![
            token.as_slice(),
            user_id,
            now,
            expires_at,
            verified_hash
        ])?;
    if inserted == 0 {
        return Err(Error::InvalidCredentials);
    }
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND expires_at <= ?2")?
        .execute(params![user_id, now])?;
    conn.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")?
        .execute(params![user_id, now])?;
    conn.touch(Touched::User(user_id));
    Ok(expires_at)
}

pub fn end(conn: &WriteTx<'_>, token: &TokenHash) -> Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
        .execute([token.as_slice()])?;
    conn.touch(Touched::Session(*token));
    Ok(())
}

/// Ends every session of the user, except `keep` when given.
pub fn end_all(conn: &WriteTx<'_>, user_id: i64, keep: Option<&TokenHash>) -> Result<()> {
    let keep: &[u8] = keep.map_or(&[], |k| k.as_slice());
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2")?
        .execute(params![user_id, keep])?;
    conn.touch(Touched::SessionsOf(user_id));
    Ok(())
}

/// Removes up to `limit` sessions that expired before `now` (housekeeping;
/// an expired session is refused on lookup whether or not it was purged).
/// Whether `purge_expired` would find anything.
pub fn any_expired(conn: &Connection, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE expires_at <= ?1)")?
        .query_row([now], |row| row.get(0))?)
}

pub fn purge_expired(conn: &WriteTx<'_>, now: i64, limit: usize) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM sessions WHERE token_hash IN
               (SELECT token_hash FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![now, limit as i64])?)
}
