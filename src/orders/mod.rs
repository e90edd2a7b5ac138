//! Orders (placeholder in this branch: the order module proper is built
//! beside it; only the party lookup that reviews and messages need is here).

pub mod messages;
pub mod reviews;

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;

/// Who an order is between, and where it is.
pub struct Parties {
    pub buyer: i64,
    pub seller: i64,
    pub state: String,
}

pub fn parties(conn: &Connection, id: i64) -> Result<Option<Parties>> {
    Ok(conn
        .prepare_cached("SELECT buyer, seller, state FROM orders WHERE id = ?1")?
        .query_row([id], |row| {
            Ok(Parties {
                buyer: row.get(0)?,
                seller: row.get(1)?,
                state: row.get(2)?,
            })
        })
        .optional()?)
}
