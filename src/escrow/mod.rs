//! Escrow for orders: a buyer's funds held until they go to the seller or
//! back. States `held` → `released` | `refunded` | `disputed`, `disputed` →
//! `resolved`. Every transition is one write job whose first statement is a
//! conditional state change, so of two racing actions exactly one wins, and
//! whose ledger entries share one movement id (the closing movement).

pub mod check;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::money::{Amount, Currency, format_minor};
use crate::ledger::{self, Direction, Kind, NewEntry};
use crate::store::WriteTx;
use crate::store::seq_ids::Space;

/// Default and longest time before an undisputed escrow releases itself.
pub const RELEASE_AFTER_DEFAULT_S: i64 = 14 * 86_400;
pub const RELEASE_AFTER_MAX_S: i64 = 90 * 86_400;

/// Where an escrow is in its life; stored as `as_str`'s text, which the
/// schema's CHECK limits to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowState {
    Held,
    Released,
    Refunded,
    Disputed,
    Resolved,
}

impl EscrowState {
    pub const ALL: [EscrowState; 5] = [
        EscrowState::Held,
        EscrowState::Released,
        EscrowState::Refunded,
        EscrowState::Disputed,
        EscrowState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EscrowState::Held => "held",
            EscrowState::Released => "released",
            EscrowState::Refunded => "refunded",
            EscrowState::Disputed => "disputed",
            EscrowState::Resolved => "resolved",
        }
    }

    /// Whether the escrow's funds have left it (its closing movement ran).
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            EscrowState::Released | EscrowState::Refunded | EscrowState::Resolved
        )
    }
}

crate::util::stored_as_text!(EscrowState, "escrow state");

#[derive(Debug, Clone)]
pub struct Escrow {
    /// Creation order; never shown.
    pub seq: i64,
    /// The shown id: stored for escrows older than migration 11, else
    /// `souk_escrow_id(seq)` (store::seq_ids).
    pub id: i64,
    pub buyer: i64,
    pub seller: i64,
    pub currency: String,
    pub amount: i64,
    pub state: EscrowState,
    pub memo: Option<String>,
    pub created_at: i64,
    /// None exactly for an order's escrow: it moves only through its order.
    pub release_at: Option<i64>,
    pub to_seller: Option<i64>,
    pub to_buyer: Option<i64>,
    /// The order this escrow pays for, if any.
    pub order_id: Option<i64>,
}

#[derive(Serialize)]
pub struct EscrowView {
    pub id: String,
    pub buyer: String,
    pub seller: String,
    pub currency: String,
    pub amount: String,
    pub state: &'static str,
    pub memo: Option<String>,
    pub created_at: String,
    pub release_at: Option<String>,
    pub order: Option<String>,
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
            state: self.state.as_str(),
            memo: self.memo.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
            release_at: self.release_at.map(crate::clock::rfc3339),
            order: self.order_id.map(|id| id.to_string()),
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

/// An escrow's columns; its id is stored for escrows older than migration
/// 12, derived from `seq` for the others (see `store::seq_ids`).
const COLUMNS: &str = "coalesce(id, souk_escrow_id(seq)), buyer, seller, currency, amount, state, \
                       memo, created_at, release_at, to_seller, to_buyer, order_id, seq";

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
        order_id: row.get(11)?,
        seq: row.get(12)?,
    })
}

/// The escrow shown as `id` (`seq_ids::Space::row_shown_as`).
pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Escrow>> {
    let sql = Space::Escrow.row_shown_as(COLUMNS, "?1", "1");
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

/// Which escrows a list shows: those paying for an order, or the plain ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Plain,
    Order,
}

/// The statement of `page`: ?1 the user (or NULL), ?2 the state, ?3 the
/// seq to start below, ?4 the limit. The state and origin conditions are
/// written only when asked for, so that with a state the planner can walk
/// `escrows_state_seq` (an `?2 IS NULL OR state = ?2` would not use it).
fn page_sql(party: Option<Role>, in_state: bool, origin: Option<Origin>) -> String {
    let who = match party {
        None => "?1 IS NULL",
        Some(Role::Buyer) => "buyer = ?1",
        Some(Role::Seller) => "seller = ?1",
        Some(Role::Either) => "(buyer = ?1 OR seller = ?1)",
    };
    let state = if in_state { " AND state = ?2" } else { "" };
    // order_id has no index (migration 11): the origin filters the rows the
    // party's or the state's index walks.
    let origin = match origin {
        None => "",
        Some(Origin::Plain) => " AND order_id IS NULL",
        Some(Origin::Order) => " AND order_id IS NOT NULL",
    };
    format!(
        "SELECT {COLUMNS} FROM escrows WHERE {who}{state}{origin} AND seq < ?3
         ORDER BY seq DESC LIMIT ?4"
    )
}

/// A page of escrows, newest first, after the escrow `after` (one in the
/// page's scope, else `UnknownCursor`): a user's in `role` with
/// `Some((user, role))`, everyone's (the admin list) with `None`; only
/// those in `state` and of `origin` when given.
pub fn page(
    conn: &Connection,
    party: Option<(i64, Role)>,
    state: Option<EscrowState>,
    origin: Option<Origin>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Escrow>> {
    let user_id = party.map(|(id, _)| id);
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached(&Space::Escrow.row_shown_as(
                "seq",
                "?1",
                "(?2 IS NULL OR buyer = ?2 OR seller = ?2)",
            ))?
            .query_row(params![id, user_id], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let sql = page_sql(party.map(|(_, role)| role), state.is_some(), origin);
    let mut stmt = conn.prepare_cached(&sql)?;
    // Unused numbered parameters are allowed: SQLite counts up to ?4.
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
    let release_at = now.saturating_add(new.release_after_s);
    hold(tx, new, Some(release_at), None, now)
}

/// Holds the buyer's funds for order `order_id` (its shown id): like `create`, but the
/// escrow has no release time (it moves only through its order). The
/// caller (`orders::place`) knows the seller exists: it is the listing's.
pub fn create_for_order(
    tx: &WriteTx<'_>,
    new: &NewEscrow,
    order_id: i64,
    now: i64,
) -> Result<Escrow> {
    hold(tx, new, None, Some(order_id), now)
}

fn hold(
    tx: &WriteTx<'_>,
    new: &NewEscrow,
    release_at: Option<i64>,
    order_id: Option<i64>,
    now: i64,
) -> Result<Escrow> {
    let code = new.currency.code.as_str();
    ledger::move_to_held(tx, new.buyer, code, new.amount.minor())?;
    // No id stored: it is derived from the seq the row gets.
    let (seq, id): (i64, Option<i64>) = tx
        .prepare_cached(
            "INSERT INTO escrows (buyer, seller, currency, amount, state, memo, created_at,
                                  release_at, order_id)
             VALUES (?1, ?2, ?3, ?4, 'held', ?5, ?6, ?7, ?8)
             RETURNING seq, souk_escrow_id(seq)",
        )?
        .query_row(
            params![
                new.buyer,
                new.seller,
                code,
                new.amount.minor(),
                new.memo,
                now,
                release_at,
                order_id
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    let id = id.ok_or_else(|| Error::internal(format!("escrow seq {seq} has no id")))?;
    let escrow = Escrow {
        seq,
        id,
        buyer: new.buyer,
        seller: new.seller,
        currency: code.to_owned(),
        amount: new.amount.minor(),
        state: EscrowState::Held,
        memo: new.memo.clone(),
        created_at: now,
        release_at,
        to_seller: None,
        to_buyer: None,
        order_id,
    };
    let hold = entry(
        &escrow,
        ids::random_id()?,
        Kind::EscrowHold,
        escrow.buyer,
        Direction::Out,
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
    direction: Direction,
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

/// Who moves an escrow: its own routes (and the automatic release) move
/// only plain escrows; an order moves only its own escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Plain,
    Order(i64),
}

impl Owner {
    fn order_id(self) -> Option<i64> {
        match self {
            Owner::Plain => None,
            Owner::Order(id) => Some(id),
        }
    }
}

/// Moves the escrow from `from` to `to`; `invalid_state` when it is not in
/// `from` (another action won, or the transition is not allowed) or when
/// `owner` may not move it (an order's escrow through the escrow routes).
pub fn transition(
    tx: &WriteTx<'_>,
    id: i64,
    owner: Owner,
    from: EscrowState,
    to: EscrowState,
    now: i64,
) -> Result<Escrow> {
    let closed_at = to.is_closed().then_some(now);
    // Read in this job, on the only writing connection: the row as it is.
    let mut escrow = by_id(tx, id)?.ok_or(Error::NotFound)?;
    let changed = tx
        .prepare_cached(
            "UPDATE escrows SET state = ?3, closed_at = ?4
             WHERE seq = ?1 AND state = ?2 AND order_id IS ?5",
        )?
        .execute(params![escrow.seq, from, to, closed_at, owner.order_id()])?;
    if changed == 0 {
        let message = match escrow.order_id {
            Some(order) if owner == Owner::Plain => {
                format!("escrow belongs to order {order}; it moves only through the order")
            }
            _ => format!(
                "escrow is {}; this needs it {}",
                escrow.state.as_str(),
                from.as_str()
            ),
        };
        return Err(Error::Conflict {
            code: "invalid_state",
            message,
        });
    }
    escrow.state = to;
    Ok(escrow)
}

/// How a closing movement splits the held funds: the seller's part, the
/// platform's fee, the buyer's part back. They sum to the escrow's amount.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub to_seller: i64,
    pub fee: i64,
    pub to_buyer: i64,
}

/// The closing movement: takes the whole amount out of the buyer's held and
/// pays each non-zero part, every leg under one movement id. Seller and fee
/// parts are `escrow_release` legs (buyer out, recipient in; the fee's
/// recipient is the platform, `ledger::PLATFORM`); the buyer's part is one
/// `escrow_refund` leg.
pub fn close(tx: &WriteTx<'_>, escrow: &Escrow, split: Split, now: i64) -> Result<()> {
    let total = split
        .to_seller
        .checked_add(split.fee)
        .and_then(|sum| sum.checked_add(split.to_buyer));
    if total != Some(escrow.amount) || split.to_seller < 0 || split.fee < 0 || split.to_buyer < 0 {
        return Err(Error::internal(format!(
            "escrow {}: split {split:?} does not sum to {}",
            escrow.id, escrow.amount
        )));
    }
    let (buyer, currency) = (escrow.buyer, escrow.currency.as_str());
    ledger::debit_held(tx, buyer, currency, escrow.amount)?;
    let movement_id = ids::random_id()?;
    for (recipient, minor) in [
        (escrow.seller, split.to_seller),
        (ledger::PLATFORM, split.fee),
    ] {
        let Some(part) = Amount::from_minor(minor) else {
            continue;
        };
        ledger::credit_available(tx, recipient, currency, minor)?;
        for (user, direction, counterparty) in [
            (buyer, Direction::Out, recipient),
            (recipient, Direction::In, buyer),
        ] {
            let leg = entry(
                escrow,
                movement_id,
                Kind::EscrowRelease,
                user,
                direction,
                counterparty,
                part,
                now,
            );
            ledger::insert_entry(tx, &leg)?;
        }
    }
    if let Some(part) = Amount::from_minor(split.to_buyer) {
        ledger::credit_available(tx, buyer, currency, split.to_buyer)?;
        let leg = entry(
            escrow,
            movement_id,
            Kind::EscrowRefund,
            buyer,
            Direction::In,
            escrow.seller,
            part,
            now,
        );
        ledger::insert_entry(tx, &leg)?;
    }
    Ok(())
}

/// Everything to the seller, no fee (a plain escrow's release).
fn to_seller(escrow: &Escrow) -> Split {
    Split {
        to_seller: escrow.amount,
        fee: 0,
        to_buyer: 0,
    }
}

/// Everything back to the buyer.
pub fn to_buyer(escrow: &Escrow) -> Split {
    Split {
        to_seller: 0,
        fee: 0,
        to_buyer: escrow.amount,
    }
}

pub fn release(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Escrow> {
    let escrow = transition(
        tx,
        id,
        Owner::Plain,
        EscrowState::Held,
        EscrowState::Released,
        now,
    )?;
    close(tx, &escrow, to_seller(&escrow), now)?;
    Ok(escrow)
}

pub fn refund(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Escrow> {
    let escrow = transition(
        tx,
        id,
        Owner::Plain,
        EscrowState::Held,
        EscrowState::Refunded,
        now,
    )?;
    close(tx, &escrow, to_buyer(&escrow), now)?;
    Ok(escrow)
}

pub fn dispute(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Escrow> {
    transition(
        tx,
        id,
        Owner::Plain,
        EscrowState::Held,
        EscrowState::Disputed,
        now,
    )
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
    check_parts(&current, to_seller, to_buyer)?;
    let escrow = resolved(tx, id, Owner::Plain, to_seller, to_buyer, now)?;
    let split = Split {
        to_seller,
        fee: 0,
        to_buyer,
    };
    close(tx, &escrow, split, now)?;
    Ok(escrow)
}

/// 400 unless a resolution's two parts sum exactly to the escrow's amount.
pub fn check_parts(escrow: &Escrow, to_seller: i64, to_buyer: i64) -> Result<()> {
    if to_seller.checked_add(to_buyer) != Some(escrow.amount) {
        return Err(Error::invalid_field(
            "to_seller",
            "to_seller and to_buyer must sum exactly to the amount",
        ));
    }
    Ok(())
}

/// disputed → resolved, storing the two parts (before any fee).
pub fn resolved(
    tx: &WriteTx<'_>,
    id: i64,
    owner: Owner,
    to_seller: i64,
    to_buyer: i64,
    now: i64,
) -> Result<Escrow> {
    let mut escrow = transition(
        tx,
        id,
        owner,
        EscrowState::Disputed,
        EscrowState::Resolved,
        now,
    )?;
    tx.prepare_cached("UPDATE escrows SET to_seller = ?2, to_buyer = ?3 WHERE seq = ?1")?
        .execute(params![escrow.seq, to_seller, to_buyer])?;
    escrow.to_seller = Some(to_seller);
    escrow.to_buyer = Some(to_buyer);
    Ok(escrow)
}

/// Held escrows whose release time has passed, oldest due first. Times are
/// whole seconds, so "passed" means `release_at < now`: never early, at most
/// a second late. An order's escrow has no release time, so it is never due.
pub fn due(conn: &Connection, now: i64, limit: usize) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(id, souk_escrow_id(seq)) FROM escrows
         WHERE state = 'held' AND release_at IS NOT NULL AND release_at < ?1
         ORDER BY release_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin's disputes queue (`state=disputed`, plain or not) walks
    /// `escrows_state_seq` in order instead of the whole table.
    #[test]
    fn a_state_page_reads_the_state_index_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        crate::store::seq_ids::register(&conn).unwrap();
        for origin in [None, Some(Origin::Plain), Some(Origin::Order)] {
            let sql = page_sql(None, true, origin);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan = stmt
                .query_map(params![None::<i64>, "disputed", 9, 10], |row| {
                    row.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .join("; ");
            assert!(
                plan.contains("USING INDEX escrows_state_seq (state=? AND seq<?)"),
                "{origin:?}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{origin:?}: {plan}");
        }
    }
}
