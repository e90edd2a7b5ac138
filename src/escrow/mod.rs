//! Escrow for orders: a buyer's funds held until they go to the seller or
//! back. States `held` → `released` | `refunded` | `disputed`, `disputed` →
//! `resolved`. Every transition is one write job whose first statement is a
//! conditional state change, so of two racing actions exactly one wins, and
//! whose ledger entries share one movement id (the closing movement).

pub mod check;
pub mod sweeper;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::money::{Amount, Currency, format_minor};
use crate::ledger::{self, Kind, NewEntry};
use crate::store::WriteTx;

/// Default and longest time before an undisputed escrow releases itself.
pub const RELEASE_AFTER_DEFAULT_S: i64 = 14 * 86_400;
pub const RELEASE_AFTER_MAX_S: i64 = 90 * 86_400;

#[derive(Debug, Clone)]
pub struct Escrow {
    pub id: i64,
    pub buyer: i64,
    pub seller: i64,
    pub currency: String,
    pub amount: i64,
    pub state: String,
    pub memo: Option<String>,
    pub created_at: i64,
    pub release_at: i64,
    pub to_seller: Option<i64>,
    pub to_buyer: Option<i64>,
}

#[derive(Serialize)]
pub struct EscrowView {
    pub id: String,
    pub buyer: String,
    pub seller: String,
    pub currency: String,
    pub amount: String,
    pub state: String,
    pub memo: Option<String>,
    pub created_at: String,
    pub release_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<serde_json::Value>,
}

impl Escrow {
    pub fn view(&self, currencies: &crate::config::Currencies) -> EscrowView {
        let d = ledger::decimals_of(currencies, &self.currency);
        let money = |minor: i64| format_minor(i128::from(minor), d);
        EscrowView {
            id: self.id.to_string(),
            buyer: self.buyer.to_string(),
            seller: self.seller.to_string(),
            currency: self.currency.clone(),
            amount: money(self.amount),
            state: self.state.clone(),
            memo: self.memo.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
            release_at: crate::clock::rfc3339(self.release_at),
            resolution: match (self.to_seller, self.to_buyer) {
                (Some(s), Some(b)) => {
                    Some(serde_json::json!({"to_seller": money(s), "to_buyer": money(b)}))
                }
                _ => None,
            },
        }
    }

    pub fn is_party(&self, user_id: i64) -> bool {
        self.buyer == user_id || self.seller == user_id
    }
}

const COLUMNS: &str =
    "id, buyer, seller, currency, amount, state, memo, created_at, release_at, to_seller, to_buyer";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Escrow> {
    Ok(Escrow {
        id: row.get(0)?,
        buyer: row.get(1)?,
        seller: row.get(2)?,
        currency: row.get(3)?,
        amount: row.get(4)?,
        state: row.get(5)?,
        memo: row.get(6)?,
        created_at: row.get(7)?,
        release_at: row.get(8)?,
        to_seller: row.get(9)?,
        to_buyer: row.get(10)?,
    })
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Escrow>> {
    let sql = format!("SELECT {COLUMNS} FROM escrows WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// Which of a user's escrows a list shows.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Buyer,
    Seller,
    Either,
}

/// A page of the user's escrows, newest first, after the escrow `after`.
pub fn page(
    conn: &Connection,
    user_id: i64,
    role: Role,
    state: Option<&str>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Escrow>> {
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached(
                "SELECT seq FROM escrows WHERE id = ?1 AND (buyer = ?2 OR seller = ?2)",
            )?
            .query_row([id, user_id], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let who = match role {
        Role::Buyer => "buyer = ?1",
        Role::Seller => "seller = ?1",
        Role::Either => "(buyer = ?1 OR seller = ?1)",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM escrows WHERE {who} AND (?2 IS NULL OR state = ?2) AND seq < ?3
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user_id, state, before_seq, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<Escrow>>>()?)
}

/// Open (held or disputed) escrows per currency.
pub fn open_counts(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT currency, count(*) FROM escrows WHERE state IN ('held', 'disputed') GROUP BY currency",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub struct NewEscrow {
    pub buyer: i64,
    pub seller: i64,
    pub currency: Currency,
    pub amount: Amount,
    pub memo: Option<String>,
    pub release_after_s: i64,
}

/// Holds the buyer's funds: available → held, one `escrow_hold` entry.
pub fn create(tx: &WriteTx<'_>, new: &NewEscrow, now: i64) -> Result<Escrow> {
    let seller_exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")?
        .query_row([new.seller], |row| row.get(0))?;
    if !seller_exists {
        return Err(Error::NotFound);
    }
    let code = new.currency.code.as_str();
    ledger::move_to_held(tx, new.buyer, code, new.amount.minor())?;
    let id = ids::random_id()?;
    let release_at = now.saturating_add(new.release_after_s);
    tx.prepare_cached(
        "INSERT INTO escrows (id, buyer, seller, currency, amount, state, memo, created_at, release_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'held', ?6, ?7, ?8)",
    )?
    .execute(params![id, new.buyer, new.seller, code, new.amount.minor(), new.memo, now, release_at])?;
    let escrow = Escrow {
        id,
        buyer: new.buyer,
        seller: new.seller,
        currency: code.to_owned(),
        amount: new.amount.minor(),
        state: "held".into(),
        memo: new.memo.clone(),
        created_at: now,
        release_at,
        to_seller: None,
        to_buyer: None,
    };
    let hold = entry(
        &escrow,
        ids::random_id()?,
        Kind::EscrowHold,
        escrow.buyer,
        "out",
        escrow.seller,
        new.amount,
        now,
    );
    ledger::insert_entry(tx, &hold)?;
    Ok(escrow)
}

#[allow(clippy::too_many_arguments)]
fn entry<'a>(
    escrow: &'a Escrow,
    movement_id: i64,
    kind: Kind,
    user_id: i64,
    direction: &'static str,
    counterparty: i64,
    amount: Amount,
    now: i64,
) -> NewEntry<'a> {
    NewEntry {
        movement_id,
        user_id,
        kind,
        direction,
        currency: &escrow.currency,
        amount,
        counterparty: Some(counterparty),
        escrow_id: Some(escrow.id),
        memo: None,
        reference: None,
        created_at: now,
    }
}

/// Moves the escrow from `from` to `to`; `invalid_state` when it is not in
/// `from` (another action won, or the transition is not allowed).
fn transition(tx: &WriteTx<'_>, id: i64, from: &str, to: &str, now: i64) -> Result<Escrow> {
    let changed = tx
        .prepare_cached(
            "UPDATE escrows SET state = ?3, closed_at = ?4 WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![id, from, to, now])?;
    let escrow = by_id(tx, id)?.ok_or(Error::NotFound)?;
    if changed == 0 {
        return Err(Error::Conflict {
            code: "invalid_state",
            message: format!("escrow is {}; this needs it {from}", escrow.state),
        });
    }
    Ok(escrow)
}

/// Where a part of the held funds goes.
#[derive(Clone, Copy)]
enum To {
    /// Release: out of the buyer's held, into the seller's available (one
    /// leg each).
    Seller,
    /// Refund: from the buyer's held back to their available (one leg).
    Buyer,
}

/// Moves `part` of the escrow's held funds and records its legs under
/// `movement_id` (the closing movement).
fn pay(
    tx: &WriteTx<'_>,
    escrow: &Escrow,
    movement_id: i64,
    part: Amount,
    now: i64,
    to: To,
) -> Result<()> {
    let (buyer, seller) = (escrow.buyer, escrow.seller);
    let (kind, recipient, legs): (Kind, i64, &[(i64, &'static str, i64)]) = match to {
        To::Seller => (
            Kind::EscrowRelease,
            seller,
            &[(buyer, "out", seller), (seller, "in", buyer)],
        ),
        To::Buyer => (Kind::EscrowRefund, buyer, &[(buyer, "in", seller)]),
    };
    ledger::debit_held(tx, buyer, &escrow.currency, part.minor())?;
    ledger::credit_available(tx, recipient, &escrow.currency, part.minor())?;
    for &(user, direction, counterparty) in legs {
        let leg = entry(
            escrow,
            movement_id,
            kind,
            user,
            direction,
            counterparty,
            part,
            now,
        );
        ledger::insert_entry(tx, &leg)?;
    }
    Ok(())
}

fn whole(escrow: &Escrow) -> Result<Amount> {
    Amount::from_minor(escrow.amount)
        .ok_or_else(|| Error::internal(format!("escrow {} has no amount", escrow.id)))
}

pub fn release(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Escrow> {
    let escrow = transition(tx, id, "held", "released", now)?;
    pay(
        tx,
        &escrow,
        ids::random_id()?,
        whole(&escrow)?,
        now,
        To::Seller,
    )?;
    Ok(escrow)
}

pub fn refund(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Escrow> {
    let escrow = transition(tx, id, "held", "refunded", now)?;
    pay(
        tx,
        &escrow,
        ids::random_id()?,
        whole(&escrow)?,
        now,
        To::Buyer,
    )?;
    Ok(escrow)
}

pub fn dispute(tx: &WriteTx<'_>, id: i64, _now: i64) -> Result<Escrow> {
    let changed = tx
        .prepare_cached("UPDATE escrows SET state = 'disputed' WHERE id = ?1 AND state = 'held'")?
        .execute([id])?;
    let escrow = by_id(tx, id)?.ok_or(Error::NotFound)?;
    if changed == 0 {
        return Err(Error::Conflict {
            code: "invalid_state",
            message: format!(
                "escrow is {}; only a held escrow can be disputed",
                escrow.state
            ),
        });
    }
    Ok(escrow)
}

/// Splits a disputed escrow: both parts move in this one job, and must sum
/// exactly to the amount.
pub fn resolve(
    tx: &WriteTx<'_>,
    id: i64,
    to_seller: i64,
    to_buyer: i64,
    now: i64,
) -> Result<Escrow> {
    let current = by_id(tx, id)?.ok_or(Error::NotFound)?;
    if to_seller.checked_add(to_buyer) != Some(current.amount) {
        return Err(Error::invalid_field(
            "to_seller",
            "to_seller and to_buyer must sum exactly to the escrow amount",
        ));
    }
    let mut escrow = transition(tx, id, "disputed", "resolved", now)?;
    tx.prepare_cached("UPDATE escrows SET to_seller = ?2, to_buyer = ?3 WHERE id = ?1")?
        .execute(params![id, to_seller, to_buyer])?;
    escrow.to_seller = Some(to_seller);
    escrow.to_buyer = Some(to_buyer);
    let movement_id = ids::random_id()?;
    if let Some(part) = Amount::from_minor(to_seller) {
        pay(tx, &escrow, movement_id, part, now, To::Seller)?;
    }
    if let Some(part) = Amount::from_minor(to_buyer) {
        pay(tx, &escrow, movement_id, part, now, To::Buyer)?;
    }
    Ok(escrow)
}

/// Held escrows whose release time has passed, oldest due first. Times are
/// whole seconds, so "passed" means `release_at < now`: never early, at most
/// a second late.
pub fn due(conn: &Connection, now: i64, limit: usize) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM escrows WHERE state = 'held' AND release_at < ?1 ORDER BY release_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}
