//! Messages about one order, between its buyer, its seller and admins,
//! read oldest first. They never change the order. Sending is limited per
//! user by a sliding window (`SendLimit`): at most MESSAGES_PER_WINDOW in
//! any MESSAGE_WINDOW.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Order;
use crate::error::{Error, Result};
use crate::ids;
use crate::store::WriteTx;
use crate::util::LockUnpoisoned;

/// Longest message body, in characters.
pub const BODY_CHARS_MAX: usize = 4000;
/// Messages one user may send in any MESSAGE_WINDOW: a conversation's
/// pace, far below what would flood a reader or the database.
pub const MESSAGES_PER_WINDOW: usize = 60;
pub const MESSAGE_WINDOW: Duration = Duration::from_secs(60);
/// Senders whose recent sends are remembered at once (each at most
/// MESSAGES_PER_WINDOW instants, ~1 KB): the least recently active is
/// forgotten first, so the limit is exact while fewer users than this
/// send within one window.
pub const SENDERS_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub order_id: i64,
    pub author: i64,
    pub body: String,
    pub created_at: i64,
}

#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub order: String,
    pub author: String,
    pub body: String,
    pub created_at: String,
}

impl Message {
    pub fn view(&self) -> MessageView {
        MessageView {
            id: self.id.to_string(),
            order: self.order_id.to_string(),
            author: self.author.to_string(),
            body: self.body.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
        }
    }
}

/// A body of 1..=BODY_CHARS_MAX characters, without control characters
/// other than line breaks and tabs (as a memo).
pub fn parse_body(text: String) -> Result<String> {
    if text.is_empty() {
        return Err(Error::invalid_field(
            "body",
            format!("body must be 1-{BODY_CHARS_MAX} characters, got 0"),
        ));
    }
    super::parse_text("body", text, BODY_CHARS_MAX)
}

/// The order `id` if `user` may read and write its messages: a party or an
/// admin; anyone else is told it does not exist.
pub fn conversation(conn: &Connection, order_id: i64, user: i64, is_admin: bool) -> Result<Order> {
    super::by_id(conn, order_id)?
        .filter(|o| is_admin || o.is_party(user))
        .ok_or(Error::NotFound)
}

pub fn post(tx: &WriteTx<'_>, order_id: i64, author: i64, body: &str, now: i64) -> Result<Message> {
    let id = ids::random_id()?;
    tx.prepare_cached(
        "INSERT INTO order_messages (id, order_id, author, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, order_id, author, body, now])?;
    Ok(Message {
        id,
        order_id,
        author,
        body: body.to_owned(),
        created_at: now,
    })
}

const COLUMNS: &str = "id, order_id, author, body, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get(0)?,
        order_id: row.get(1)?,
        author: row.get(2)?,
        body: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// A page of the order's messages, oldest first, after the message `after`.
pub fn page(
    conn: &Connection,
    order_id: i64,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Message>> {
    let after_seq: i64 = match after {
        None => 0,
        Some(id) => conn
            .prepare_cached("SELECT seq FROM order_messages WHERE id = ?1 AND order_id = ?2")?
            .query_row([id, order_id], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM order_messages WHERE order_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![order_id, after_seq, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<Message>>>()?)
}

/// The sliding-window limit on sends per user: a send is allowed when the
/// user sent fewer than `per_window` in the `window` before it. Each user's
/// recent send instants are kept, oldest first, and dropped as they age out.
pub struct SendLimit {
    senders: Mutex<LruCache<i64, VecDeque<Instant>>>,
    per_window: usize,
    window: Duration,
}

impl SendLimit {
    pub fn new(per_window: usize, window: Duration) -> SendLimit {
        SendLimit {
            senders: Mutex::new(LruCache::sparse(
                NonZeroUsize::new(SENDERS_MAX).unwrap_or(NonZeroUsize::MIN),
            )),
            per_window,
            window,
        }
    }

    /// Counts one send by `user` now, or `RateLimited` with the wait until
    /// the oldest send in the window ages out. The instant counted is
    /// returned for `release`.
    pub fn count(&self, user: i64) -> Result<Instant> {
        self.count_at(user, Instant::now())
    }

    /// Gives back the slot `count` took at `at` for a send that was not
    /// stored (the write failed): a refused message is not counted. Only
    /// that instant is removed (one of equal ones, which are the same slot),
    /// so concurrent sends by the same user keep theirs.
    pub fn release(&self, user: i64, at: Instant) {
        let mut senders = self.senders.lock_unpoisoned();
        if let Some(sent) = senders.peek_mut(&user)
            && let Some(i) = sent.iter().rposition(|&t| t == at)
        {
            sent.remove(i);
        }
    }

    fn count_at(&self, user: i64, now: Instant) -> Result<Instant> {
        let mut senders = self.senders.lock_unpoisoned();
        let sent = senders.get_or_insert_mut(user, VecDeque::new);
        while sent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.window)
        {
            sent.pop_front();
        }
        if sent.len() >= self.per_window {
            let oldest = sent.front().copied().unwrap_or(now);
            let left = (oldest + self.window).saturating_duration_since(now);
            return Err(Error::RateLimited {
                retry_after_s: left.as_secs() + u64::from(left.subsec_nanos() > 0),
            });
        }
        sent.push_back(now);
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let limit = SendLimit::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for s in [0, 10, 20] {
            assert!(limit.count_at(7, at(s)).is_ok());
        }
        // Three in the last 60 s: refused until the first ages out.
        match limit.count_at(7, at(59)) {
            Err(Error::RateLimited { retry_after_s }) => assert_eq!(retry_after_s, 1),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(limit.count_at(8, at(59)).is_ok(), "other users are apart");
        assert!(limit.count_at(7, at(60)).is_ok(), "the send at 0 aged out");
        assert!(
            limit.count_at(7, at(61)).is_err(),
            "10, 20, 60 are in the window"
        );
        assert!(limit.count_at(7, at(70)).is_ok());
    }

    #[test]
    fn a_released_slot_is_given_back_and_only_that_one() {
        let limit = SendLimit::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let first = limit.count_at(7, at(0)).unwrap();
        let second = limit.count_at(7, at(1)).unwrap();
        assert!(limit.count_at(7, at(2)).is_err());
        limit.release(7, second);
        assert!(limit.count_at(7, at(2)).is_ok(), "the slot came back");
        assert!(limit.count_at(7, at(3)).is_err(), "the one at 0 is kept");
        limit.release(8, first);
        limit.release(7, at(30));
        assert!(
            limit.count_at(7, at(4)).is_err(),
            "unknown slots change nothing"
        );
        limit.release(7, first);
        assert!(limit.count_at(7, at(5)).is_ok());
    }
}
