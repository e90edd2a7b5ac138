//! User queries (on a reader) and user writes (run by the writer).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Rating;
use super::{Role, Status, User, Username};
use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::PLATFORM;
use crate::store::{Touched, WriteTx};

/// Qualified, so that queries joining other tables (`json_each` has an `id`
/// too) can use them as they are. The last two are the rating summary
/// (orders::reviews), one key lookup each.
pub(super) const COLUMNS: &str =
    "users.id, users.username, users.display_name, users.role, users.status,
    users.created_at, users.last_login_at,
    (SELECT count FROM rating_totals WHERE user_id = users.id),
    (SELECT total FROM rating_totals WHERE user_id = users.id)";

/// Most ids one `GET /users?ids=` answers (docs/api.md).
pub const BULK_IDS_MAX: usize = 100;
/// Most updates in one `POST /admin/users/bulk-update` (docs/api.md).
pub const BULK_UPDATES_MAX: usize = 1000;

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    from_row_at(row, 0)
}

/// A user read from COLUMNS starting at column `at`.
fn from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(at)?,
        username: row.get(at + 1)?,
        display_name: row.get(at + 2)?,
        role: Role::from_db(&row.get::<_, String>(at + 3)?),
        status: Status::from_db(&row.get::<_, String>(at + 4)?),
        created_at: row.get(at + 5)?,
        last_login_at: row.get(at + 6)?,
        rating: Rating {
            count: row.get::<_, Option<i64>>(at + 7)?.unwrap_or(0),
            total: row.get::<_, Option<i64>>(at + 8)?.unwrap_or(0),
        },
    })
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// The user and their password hash, for a login.
pub fn by_username_with_hash(
    conn: &Connection,
    username: &Username,
) -> Result<Option<(User, String)>> {
    let sql = format!("SELECT password_hash, {COLUMNS} FROM users WHERE username = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([username.as_str()], |row| {
            Ok((from_row_at(row, 1)?, row.get(0)?))
        })
        .optional()?)
}

pub fn password_hash(conn: &Connection, id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?)
}

/// Users with these ids in the order asked, unknown ids left out: one query,
/// the ids bound as one JSON array.
pub fn by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<User>> {
    let list = serde_json::to_string(ids).map_err(|e| Error::internal_from("encoding ids", e))?;
    let sql = format!(
        "SELECT {COLUMNS} FROM json_each(?1) AS asked JOIN users ON users.id = asked.value ORDER BY asked.key"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([list], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<User>>>()?)
}

/// Usernames starting with `prefix`, after `after`, in username order: a
/// range scan of the unique username index.
pub fn search(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<User>> {
    // Usernames hold only [a-z0-9_], all below U+007F, so every name with the
    // prefix sorts before `prefix || U+007F`.
    let upper = format!("{prefix}\u{7f}");
    let lower = after.filter(|a| *a >= prefix).unwrap_or(prefix);
    let strict = after.is_some_and(|a| a >= prefix);
    let op = if strict { ">" } else { ">=" };
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE username {op} ?1 AND username < ?2 ORDER BY username LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![lower, upper, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<User>>>()?)
}

/// Inserts a user; `username_taken` when the name is in use.
pub fn insert(
    conn: &WriteTx<'_>,
    username: &Username,
    display_name: Option<&str>,
    password_hash: &str,
    role: Role,
    now: i64,
) -> Result<User> {
    let taken: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1)")?
        .query_row([username.as_str()], |row| row.get(0))?;
    if taken {
        return Err(Error::Conflict {
            code: "username_taken",
            message: format!("username `{}` is taken", username.as_str()),
        });
    }
    let id = ids::random_id()?;
    conn.prepare_cached(
        "INSERT INTO users (id, username, display_name, password_hash, role, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
    )?
    .execute(params![
        id,
        username.as_str(),
        display_name,
        password_hash,
        role.as_str(),
        now
    ])?;
    Ok(User {
        id,
        username: username.as_str().to_owned(),
        display_name: display_name.map(str::to_owned),
        role,
        status: Status::Active,
        created_at: now,
        last_login_at: None,
        rating: Rating::default(),
    })
}

/// Changes an admin may make to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub role: Option<Role>,
    pub status: Option<Status>,
    pub display_name: Option<String>,
}

/// Applies `changes` to user `id`; suspending ends their sessions at once.
/// `NotFound` when there is no such user.
pub fn update(conn: &WriteTx<'_>, id: i64, changes: &Changes) -> Result<User> {
    let updated = conn
        .prepare_cached(
            "UPDATE users SET role = coalesce(?2, role), status = coalesce(?3, status),
                              display_name = coalesce(?4, display_name)
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            changes.role.map(Role::as_str),
            changes.status.map(Status::as_str),
            changes.display_name.as_deref()
        ])?;
    if updated == 0 {
        return Err(Error::NotFound);
    }
    conn.touch(Touched::User(id));
    if changes.status == Some(Status::Suspended) {
        super::sessions::end_all(conn, id, None)?;
    }
    by_id(conn, id)?.ok_or(Error::NotFound)
}

pub fn set_password_hash(conn: &WriteTx<'_>, id: i64, password_hash: &str) -> Result<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id, password_hash])?;
    Ok(())
}

/// Replaces the password hash only if it is still `verified_hash` (the one
/// the current password was checked against): false when another change
/// committed in between.
pub fn replace_password_hash(
    conn: &WriteTx<'_>,
    id: i64,
    verified_hash: &str,
    password_hash: &str,
) -> Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2")?
        .execute(params![id, verified_hash, password_hash])?;
    Ok(changed == 1)
}

#[derive(Debug, Clone, Serialize)]
pub struct UserStats {
    pub total: i64,
    pub active_24h: i64,
    pub active_7d: i64,
    pub new_24h: i64,
    pub new_7d: i64,
    pub suspended: i64,
    pub admins: i64,
    pub as_of: String,
}

/// Every figure in one pass over the table.
pub fn stats(conn: &Connection, now: i64) -> Result<UserStats> {
    let day = now - 86_400;
    let week = now - 7 * 86_400;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT count(*),
                coalesce(sum(last_login_at >= ?1), 0), coalesce(sum(last_login_at >= ?2), 0),
                coalesce(sum(created_at >= ?1), 0), coalesce(sum(created_at >= ?2), 0),
                coalesce(sum(status = 'suspended'), 0), coalesce(sum(role = 'admin'), 0)
         FROM users WHERE id != {PLATFORM}" // the platform is no person
        ))?
        .query_row([day, week], |row| {
            Ok(UserStats {
                total: row.get(0)?,
                active_24h: row.get(1)?,
                active_7d: row.get(2)?,
                new_24h: row.get(3)?,
                new_7d: row.get(4)?,
                suspended: row.get(5)?,
                admins: row.get(6)?,
                as_of: crate::clock::rfc3339(now),
            })
        })?)
}

/// The users who logged in most recently (for cache warming).
pub fn most_recently_active(conn: &Connection, limit: usize) -> Result<Vec<User>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE last_login_at IS NOT NULL ORDER BY last_login_at DESC LIMIT ?1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<User>>>()?)
}
