//! Reviews: once the order is finished (`completed` or `resolved`), its
//! buyer and its seller may each rate the other once. Each user's summary
//! (count and sum of ratings) is kept in `rating_totals` by a trigger in the
//! review's own transaction (schema.sql, migration 7), so a profile reads it
//! with one key lookup.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::OrderState;
use crate::accounts::Rating;
use crate::error::{Error, Result};
use crate::ids;
use crate::store::{Touched, WriteTx};

/// Longest comment, in characters.
pub const COMMENT_CHARS_MAX: usize = 2000;
/// Ratings are whole stars.
pub const RATING_MIN: i64 = 1;
pub const RATING_MAX: i64 = 5;

#[derive(Debug, Clone)]
pub struct Review {
    pub id: i64,
    pub order_id: i64,
    pub author: i64,
    pub subject: i64,
    pub rating: i64,
    pub comment: Option<String>,
    pub created_at: i64,
}

#[derive(Serialize)]
pub struct ReviewView {
    pub id: String,
    pub order: String,
    pub author: String,
    pub subject: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub created_at: String,
}

impl Review {
    pub fn view(&self) -> ReviewView {
        ReviewView {
            id: self.id.to_string(),
            order: self.order_id.to_string(),
            author: self.author.to_string(),
            subject: self.subject.to_string(),
            rating: self.rating,
            comment: self.comment.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
        }
    }
}

/// The rating score as a client sends it: an integer 1..=5.
pub fn parse_rating(value: &serde_json::Number) -> Result<i64> {
    // A whole float (`5.0`) is that number, as for an order's quantity.
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (-1e15..=1e15).contains(f))
                .map(|f| f as i64)
        })
        .filter(|r| (RATING_MIN..=RATING_MAX).contains(r))
        .ok_or_else(|| {
            Error::invalid_field(
                "rating",
                format!("rating must be a whole number {RATING_MIN}-{RATING_MAX}"),
            )
        })
}

/// A comment of at most COMMENT_CHARS_MAX characters.
pub fn parse_comment(text: String) -> Result<String> {
    // No control characters but line breaks and tabs (as a memo).
    super::parse_text("comment", text, COMMENT_CHARS_MAX)
}

const COLUMNS: &str = "id, order_id, author, subject, rating, comment, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Review> {
    Ok(Review {
        id: row.get(0)?,
        order_id: row.get(1)?,
        author: row.get(2)?,
        subject: row.get(3)?,
        rating: row.get(4)?,
        comment: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub struct NewReview {
    pub order_id: i64,
    pub author: i64,
    /// Whether the author is an admin: an admin who is not a party sees the
    /// order, so is refused (403) rather than told it does not exist (404).
    pub author_is_admin: bool,
    pub rating: i64,
    pub comment: Option<String>,
}

/// Records a review of the order's other party by `author`.
pub fn create(tx: &WriteTx<'_>, new: &NewReview, now: i64) -> Result<Review> {
    let order = super::by_id(tx, new.order_id)?.ok_or(Error::NotFound)?;
    let subject = if new.author == order.buyer {
        order.seller
    } else if new.author == order.seller {
        order.buyer
    } else if new.author_is_admin {
        return Err(Error::Forbidden);
    } else {
        return Err(Error::NotFound);
    };
    if !matches!(order.state, OrderState::Completed | OrderState::Resolved) {
        return Err(Error::Conflict {
            code: "invalid_state",
            message: format!(
                "order is {}; it can be reviewed once completed or resolved",
                order.state.as_str()
            ),
        });
    }
    let id = ids::random_id()?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO reviews (id, order_id, author, subject, rating, comment, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (order_id, author) DO NOTHING",
        )?
        .execute(params![
            id,
            new.order_id,
            new.author,
            subject,
            new.rating,
            new.comment,
            now
        ])?;
    if inserted == 0 {
        return Err(Error::Conflict {
            code: "already_reviewed",
            message: "you have already reviewed this order".into(),
        });
    }
    // The subject's profile carries the rating summary.
    tx.touch(Touched::User(subject));
    Ok(Review {
        id,
        order_id: new.order_id,
        author: new.author,
        subject,
        rating: new.rating,
        comment: new.comment.clone(),
        created_at: now,
    })
}

/// A page of the reviews of `subject`, newest first, after the review `after`.
pub fn page(
    conn: &Connection,
    subject: i64,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Review>> {
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached("SELECT seq FROM reviews WHERE id = ?1 AND subject = ?2")?
            .query_row([id, subject], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM reviews WHERE subject = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![subject, before_seq, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<Review>>>()?)
}

/// The user's rating summary; zeros when never rated.
pub fn rating_of(conn: &Connection, user_id: i64) -> Result<Rating> {
    Ok(conn
        .prepare_cached("SELECT count, total FROM rating_totals WHERE user_id = ?1")?
        .query_row([user_id], |row| {
            Ok(Rating {
                count: row.get(0)?,
                total: row.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}
