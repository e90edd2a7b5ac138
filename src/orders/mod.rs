//! Orders: a buyer buys `quantity` of one listing, paying into an escrow
//! that belongs to the order. The state machine is one table (`MOVES`:
//! from, action, who, to) that `act` reads for every move, the timers
//! included; each move is one write job whose conditional state UPDATE and
//! money (the order's escrow, through `escrow`) commit together.

pub mod check;
pub mod fees;
pub mod messages;
pub mod reviews;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::escrow::{self, EscrowState, NewEscrow, Owner, Split};
use crate::ledger::money::{self, Amount, format_minor};
use crate::listings::{self, Listing, ListingState};
use crate::store::seq_ids::Space;
use crate::store::{Touched, WriteTx};

/// Most items one order buys: a shop's largest sensible order, and it keeps
/// `unit_price × quantity` checks cheap.
pub const QUANTITY_MAX: i64 = 1000;
/// Longest memo a buyer adds to an order, in characters.
pub const MEMO_CHARS_MAX: usize = 500;
/// Longest tracking text (a carrier and its tracking number, or a link).
pub const TRACKING_CHARS_MAX: usize = 200;
/// Longest dispute reason, in characters.
pub const REASON_CHARS_MAX: usize = 2000;
/// Basis points in a whole: the fee is `floor(base × fee_bps / BPS)`.
pub const BPS: i128 = 10_000;

/// Where an order is in its life (docs/api.md, Orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Paid,
    Shipped,
    Completed,
    Cancelled,
    Disputed,
    Resolved,
}

impl OrderState {
    pub const ALL: [OrderState; 6] = [
        OrderState::Paid,
        OrderState::Shipped,
        OrderState::Completed,
        OrderState::Cancelled,
        OrderState::Disputed,
        OrderState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Paid => "paid",
            OrderState::Shipped => "shipped",
            OrderState::Completed => "completed",
            OrderState::Cancelled => "cancelled",
            OrderState::Disputed => "disputed",
            OrderState::Resolved => "resolved",
        }
    }
}

crate::util::stored_as_text!(OrderState, "order state");

/// What moves an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ship,
    Cancel,
    Confirm,
    Dispute,
    Resolve,
    /// A timer: SOUK_ORDER_SHIP_WITHIN or SOUK_ORDER_CONFIRM_WITHIN passed.
    Timeout,
}

/// Who moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Buyer,
    Seller,
    Admin,
    /// souk itself (the timers).
    Souk,
}

/// Every allowed move: (from, action, who, to). Anything else is refused:
/// 403 when no row lets the caller's role take the action at all, 409
/// `invalid_state` when one does but not from the order's state.
pub const MOVES: [(OrderState, Action, Actor, OrderState); 12] = {
    use Action::*;
    use Actor::*;
    use OrderState::*;
    [
        (Paid, Ship, Seller, Shipped),
        (Paid, Cancel, Buyer, Cancelled),
        (Paid, Cancel, Seller, Cancelled),
        (Shipped, Cancel, Seller, Cancelled),
        (Shipped, Confirm, Buyer, Completed),
        (Paid, Dispute, Buyer, Disputed),
        (Paid, Dispute, Seller, Disputed),
        (Shipped, Dispute, Buyer, Disputed),
        (Shipped, Dispute, Seller, Disputed),
        (Disputed, Resolve, Admin, Resolved),
        (Paid, Timeout, Souk, Cancelled),
        (Shipped, Timeout, Souk, Completed),
    ]
};

#[derive(Debug, Clone)]
pub struct Order {
    /// Placement order, the paging key; never shown.
    pub seq: i64,
    pub id: i64,
    pub listing: i64,
    pub title: String,
    pub buyer: i64,
    pub seller: i64,
    pub currency: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub amount: i64,
    pub fee_bps: i64,
    pub fee: i64,
    pub state: OrderState,
    pub memo: Option<String>,
    pub tracking: Option<String>,
    pub dispute_reason: Option<String>,
    pub escrow: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub ship_by: i64,
    pub confirm_by: Option<i64>,
}

/// An order as clients see it: money as decimal strings, ids as strings,
/// times RFC 3339, null when absent.
#[derive(Serialize)]
pub struct OrderView {
    pub id: String,
    pub listing: String,
    pub title: String,
    pub buyer: String,
    pub seller: String,
    pub currency: String,
    pub unit_price: String,
    pub quantity: i64,
    pub amount: String,
    pub fee: String,
    pub state: &'static str,
    pub memo: Option<String>,
    pub tracking: Option<String>,
    pub dispute_reason: Option<String>,
    pub escrow: String,
    pub created_at: String,
    pub updated_at: String,
    pub ship_by: String,
    pub confirm_by: Option<String>,
}

impl Order {
    pub fn view(&self, currencies: &Currencies) -> OrderView {
        let decimals = crate::ledger::decimals_of(currencies, &self.currency);
        let money = |minor: i64| format_minor(i128::from(minor), decimals);
        OrderView {
            id: self.id.to_string(),
            listing: self.listing.to_string(),
            title: self.title.clone(),
            buyer: self.buyer.to_string(),
            seller: self.seller.to_string(),
            currency: self.currency.clone(),
            unit_price: money(self.unit_price),
            quantity: self.quantity,
            amount: money(self.amount),
            fee: money(self.fee),
            state: self.state.as_str(),
            memo: self.memo.clone(),
            tracking: self.tracking.clone(),
            dispute_reason: self.dispute_reason.clone(),
            escrow: self.escrow.to_string(),
            created_at: crate::clock::rfc3339(self.created_at),
            updated_at: crate::clock::rfc3339(self.updated_at),
            ship_by: crate::clock::rfc3339(self.ship_by),
            confirm_by: self.confirm_by.map(crate::clock::rfc3339),
        }
    }

    pub fn is_party(&self, user_id: i64) -> bool {
        self.buyer == user_id || self.seller == user_id
    }

    /// The roles `user_id` has on this order (an admin may also be a party).
    fn actors(&self, user_id: i64, admin: bool) -> Vec<Actor> {
        let mut actors = Vec::with_capacity(3);
        if self.buyer == user_id {
            actors.push(Actor::Buyer);
        }
        if self.seller == user_id {
            actors.push(Actor::Seller);
        }
        if admin {
            actors.push(Actor::Admin);
        }
        actors
    }
}

/// `floor(base × fee_bps / 10000)`, in i128 so that no product overflows;
/// the result is at most `base`.
pub fn fee_of(base: i64, fee_bps: i64) -> i64 {
    let fee = i128::from(base) * i128::from(fee_bps) / BPS;
    i64::try_from(fee).unwrap_or(base)
}

// ---- parsing ---------------------------------------------------------------

/// Optional text of at most `max` characters, no control characters other
/// than newline and tab; `field` names it in errors.
pub fn parse_text(field: &str, text: String, max: usize) -> Result<String> {
    if text.chars().count() > max {
        return Err(Error::invalid_field(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(Error::invalid_field(
            field,
            format!("{field} must not contain control characters other than newline and tab"),
        ));
    }
    Ok(text)
}

/// An order's quantity: a whole JSON number 1..=QUANTITY_MAX.
pub fn parse_quantity(quantity: &serde_json::Number) -> Result<i64> {
    let whole = quantity.as_i64().or_else(|| {
        quantity
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)
    });
    match whole {
        Some(n) if (1..=QUANTITY_MAX).contains(&n) => Ok(n),
        _ => Err(Error::invalid_field(
            "quantity",
            format!("quantity must be a whole number 1-{QUANTITY_MAX}"),
        )),
    }
}

// ---- reading ---------------------------------------------------------------

/// An order's columns; its id is stored for orders older than migration 11,
/// derived from `seq` for the others (see `store::seq_ids`).
const COLUMNS: &str = "coalesce(id, souk_order_id(seq)), listing, title, buyer, seller, currency, \
                       unit_price, quantity, amount, fee_bps, fee, state, memo, tracking, \
                       dispute_reason, escrow, created_at, updated_at, ship_by, confirm_by, seq";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: row.get(0)?,
        listing: row.get(1)?,
        title: row.get(2)?,
        buyer: row.get(3)?,
        seller: row.get(4)?,
        currency: row.get(5)?,
        unit_price: row.get(6)?,
        quantity: row.get(7)?,
        amount: row.get(8)?,
        fee_bps: row.get(9)?,
        fee: row.get(10)?,
        state: row.get(11)?,
        memo: row.get(12)?,
        tracking: row.get(13)?,
        dispute_reason: row.get(14)?,
        escrow: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        ship_by: row.get(18)?,
        confirm_by: row.get(19)?,
        seq: row.get(20)?,
    })
}

/// The order shown as `id` (`seq_ids::Space::row_shown_as`).
pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Order>> {
    let sql = Space::Order.row_shown_as(COLUMNS, "?1", "1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// The order with this `seq`.
fn at_seq(conn: &Connection, seq: i64) -> Result<Option<Order>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE seq = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([seq], from_row)
        .optional()?)
}

/// Whose orders a page shows: a user's (as buyer, seller or either), or
/// every order (the admin queue).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Buyer(i64),
    Seller(i64),
    Either(i64),
    All,
}

/// A page of orders in `scope`, newest first, after the order `after` (one
/// in the scope, else `UnknownCursor`). A party's orders are read through
/// its (party, state, seq) index, one keyset page per state (the one asked
/// for, or all six) and per role, merged: never a sort of all of a user's
/// orders, and no (party, seq) index for every placement to write.
pub fn page(
    conn: &Connection,
    scope: Scope,
    state: Option<OrderState>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Order>> {
    let (who, user) = match scope {
        Scope::Buyer(user) => ("buyer = ?1", user),
        Scope::Seller(user) => ("seller = ?1", user),
        Scope::Either(user) => ("(buyer = ?1 OR seller = ?1)", user),
        Scope::All => ("?1 IS NOT NULL", 0),
    };
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached(&Space::Order.row_shown_as("seq", "?2", who))?
            .query_row([user, id], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let roles = match scope {
        Scope::Either(user) => vec![Scope::Buyer(user), Scope::Seller(user)],
        one => vec![one],
    };
    let states: Vec<Option<OrderState>> = match (scope, state) {
        (_, Some(state)) => vec![Some(state)],
        (Scope::All, None) => vec![None],
        (_, None) => OrderState::ALL.into_iter().map(Some).collect(),
    };
    let mut merged = Vec::new();
    for role in roles {
        for &state in &states {
            merged.extend(page_before(conn, role, state, before_seq, limit)?);
        }
    }
    merged.sort_unstable_by_key(|o| std::cmp::Reverse(o.seq));
    merged.truncate(limit);
    Ok(merged)
}

/// One keyset page of a single-index scope.
fn page_before(
    conn: &Connection,
    scope: Scope,
    state: Option<OrderState>,
    before_seq: i64,
    limit: usize,
) -> Result<Vec<Order>> {
    let (sql, user) = page_sql(scope, state.is_some())?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            user,
            state.map(OrderState::as_str),
            before_seq,
            limit as i64
        ],
        from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<Order>>>()?)
}

/// The statement of one keyset page and the user it binds as ?1 (then the
/// state, or NULL, as ?2, the seq bound as ?3 and the limit as ?4). The
/// index is named: without statistics the planner would take (state, seq)
/// for a user's orders in one state and scan every order in it. A party's
/// page is always of one state (`page` asks each in turn) and reads
/// (buyer|seller, state, seq): only the orders in that state, newest first.
fn page_sql(scope: Scope, in_state: bool) -> Result<(String, i64)> {
    let (from, user) = match (scope, in_state) {
        (Scope::Buyer(user), true) => (
            "orders INDEXED BY orders_buyer_state_seq WHERE buyer = ?1",
            user,
        ),
        (Scope::Seller(user), true) => (
            "orders INDEXED BY orders_seller_state_seq WHERE seller = ?1",
            user,
        ),
        (Scope::All, true) => ("orders INDEXED BY orders_state_seq WHERE ?1 IS NOT NULL", 0),
        (Scope::All, false) => ("orders WHERE ?1 IS NOT NULL", 0),
        (Scope::Buyer(_) | Scope::Seller(_), false) => {
            return Err(Error::internal(
                "a party's page is read one state at a time",
            ));
        }
        (Scope::Either(_), _) => return Err(Error::internal("two indexes: use page")),
    };
    let state = if in_state { "state = ?2" } else { "?2 IS NULL" };
    Ok((
        format!("SELECT {COLUMNS} FROM {from} AND {state} AND seq < ?3 ORDER BY seq DESC LIMIT ?4"),
        user,
    ))
}

// ---- placing ---------------------------------------------------------------

/// What a buyer asks for.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub buyer: i64,
    pub listing: i64,
    pub quantity: i64,
    pub memo: Option<String>,
}

/// The settings an order is placed under.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub fee_bps: u32,
    pub ship_within_s: i64,
}

/// The currency `code` of an order or its listing (`whole` names which):
/// one disabled since is a state that thing is in (409 `invalid_state`), not
/// a bad field of the request.
pub fn enabled_currency(
    currencies: &Currencies,
    whole: &str,
    code: &str,
) -> Result<money::Currency> {
    money::currency(currencies, "currency", code).map_err(|_| {
        conflict(
            "invalid_state",
            format!("the {whole}'s currency {code} is not enabled"),
        )
    })
}

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::Conflict {
        code,
        message: message.into(),
    }
}

/// Places an order in one job: checks the listing (400 for the buyer's own
/// or an amount that overflows, then 409 when not active), reserves the
/// stock with a conditional UPDATE (409 `out_of_stock`), and holds the
/// amount in the order's escrow (409 `insufficient_funds`).
pub fn place(
    tx: &WriteTx<'_>,
    currencies: &Currencies,
    new: &NewOrder,
    terms: Terms,
    now: i64,
) -> Result<Order> {
    let listing = listings::by_id(tx, new.listing)?.ok_or(Error::NotFound)?;
    let amount = orderable(&listing, new)?;
    reserve(tx, &listing, new.quantity)?;
    let currency = enabled_currency(currencies, "listing", &listing.currency)?;
    let (seq, id) = next_seq_and_id(tx)?;
    let hold = NewEscrow {
        buyer: new.buyer,
        seller: listing.seller,
        currency,
        amount,
        memo: None,
        release_after_s: 0,
    };
    let escrow = escrow::create_for_order(tx, &hold, id, now)?;
    let fee_bps = i64::from(terms.fee_bps);
    let order = Order {
        seq,
        id,
        listing: listing.id,
        title: listing.title,
        buyer: new.buyer,
        seller: listing.seller,
        currency: listing.currency,
        unit_price: listing.price,
        quantity: new.quantity,
        amount: amount.minor(),
        fee_bps,
        fee: fee_of(amount.minor(), fee_bps),
        state: OrderState::Paid,
        memo: new.memo.clone(),
        tracking: None,
        dispute_reason: None,
        escrow: escrow.id,
        created_at: now,
        updated_at: now,
        ship_by: now.saturating_add(terms.ship_within_s),
        confirm_by: None,
    };
    insert(tx, &order)?;
    Ok(order)
}

/// The seq the next order gets, and its id. Orders are never deleted and
/// only the writer inserts them, so it is one past the last (the rightmost
/// leaf of the primary key, a page the commit writes anyway): the id is
/// known before the row exists, for its escrow to name it.
fn next_seq_and_id(tx: &WriteTx<'_>) -> Result<(i64, i64)> {
    let (seq, id): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT next, souk_order_id(next) FROM (SELECT coalesce(max(seq), 0) + 1 AS next FROM orders)",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let id = id.ok_or_else(|| Error::internal(format!("order seq {seq} has no id")))?;
    Ok((seq, id))
}

/// What `new` costs, if the listing may be ordered by its buyer: 400 for
/// the buyer's own listing or an amount that overflows, 409 when the
/// listing is not active.
fn orderable(listing: &Listing, new: &NewOrder) -> Result<Amount> {
    if listing.seller == new.buyer {
        return Err(Error::invalid_field(
            "listing",
            "cannot order from your own listing",
        ));
    }
    let amount = listing
        .price
        .checked_mul(new.quantity)
        .and_then(Amount::from_minor)
        .ok_or_else(|| {
            Error::invalid_field("quantity", "price × quantity is more than souk can hold")
        })?;
    if listing.state != ListingState::Active {
        return Err(conflict(
            "invalid_state",
            format!(
                "listing is {}; only an active one can be ordered",
                listing.state.as_str()
            ),
        ));
    }
    Ok(amount)
}

/// Takes `quantity` from the listing's stock with one conditional UPDATE
/// (409 `out_of_stock` when there is not that much).
fn reserve(tx: &WriteTx<'_>, listing: &Listing, quantity: i64) -> Result<()> {
    let reserved = tx
        .prepare_cached(
            "UPDATE listings SET quantity = quantity - ?2
             WHERE id = ?1 AND state = 'active' AND quantity >= ?2",
        )?
        .execute(params![listing.id, quantity])?;
    if reserved == 0 {
        return Err(conflict(
            "out_of_stock",
            format!("listing has {} in stock", listing.quantity),
        ));
    }
    tx.touch(Touched::Listing(listing.id));
    Ok(())
}

/// Stores a new order at its `seq`, with no id stored (it is derived).
fn insert(tx: &WriteTx<'_>, o: &Order) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO orders (seq, listing, buyer, seller, title, currency, unit_price, quantity,
                             amount, fee_bps, fee, state, memo, escrow, created_at, updated_at,
                             ship_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16)",
    )?
    .execute(params![
        o.seq,
        o.listing,
        o.buyer,
        o.seller,
        o.title,
        o.currency,
        o.unit_price,
        o.quantity,
        o.amount,
        o.fee_bps,
        o.fee,
        o.state.as_str(),
        o.memo,
        o.escrow,
        o.created_at,
        o.ship_by
    ])?;
    Ok(())
}

// ---- moving ----------------------------------------------------------------

/// Who asks for a move: a signed-in user (with whether they are an admin),
/// or souk's timers.
#[derive(Debug, Clone, Copy)]
pub enum Mover {
    User { id: i64, admin: bool },
    Souk,
}

/// What a move carries besides its action.
#[derive(Debug, Clone)]
pub enum Input {
    None,
    Ship {
        tracking: Option<String>,
        confirm_within_s: i64,
    },
    Dispute {
        reason: String,
    },
    Resolve {
        to_seller: i64,
        to_buyer: i64,
    },
}

/// The move `action` by `mover` from the order's state, per `MOVES`: 404
/// for a user who is neither a party nor an admin, 403 for a role that may
/// never take this action, 409 `invalid_state` for one that may, but not
/// from this state.
fn allowed(order: &Order, action: Action, mover: Mover) -> Result<OrderState> {
    let actors = match mover {
        Mover::User { id, admin } => order.actors(id, admin),
        Mover::Souk => vec![Actor::Souk],
    };
    if actors.is_empty() {
        return Err(Error::NotFound);
    }
    let mut may = MOVES
        .iter()
        .filter(|(_, a, who, _)| *a == action && actors.contains(who))
        .peekable();
    if may.peek().is_none() {
        return Err(Error::Forbidden);
    }
    may.find(|(from, ..)| *from == order.state)
        .map(|(.., to)| *to)
        .ok_or_else(|| {
            conflict(
                "invalid_state",
                format!(
                    "order is {}; this move is not allowed from it",
                    order.state.as_str()
                ),
            )
        })
}

/// Takes one move on order `id` in one job: authorizes it against the row
/// read in this transaction, changes the state with a conditional UPDATE,
/// and moves the money of the order's escrow in step.
pub fn act(
    tx: &WriteTx<'_>,
    id: i64,
    action: Action,
    input: &Input,
    mover: Mover,
    now: i64,
) -> Result<Order> {
    let order = by_id(tx, id)?.ok_or(Error::NotFound)?;
    let to = allowed(&order, action, mover)?;
    if let (Mover::User { .. }, Some(passed)) = (mover, deadline_passed(&order, now)) {
        return Err(conflict(
            "invalid_state",
            format!(
                "the order's {passed} deadline passed; its timer {} it",
                if order.state == OrderState::Paid {
                    "cancels"
                } else {
                    "completes"
                }
            ),
        ));
    }
    if let Input::Resolve {
        to_seller,
        to_buyer,
    } = input
    {
        let escrow = escrow::by_id(tx, order.escrow)?.ok_or(Error::NotFound)?;
        escrow::check_parts(&escrow, *to_seller, *to_buyer)?;
    }
    let changed = tx
        .prepare_cached(
            "UPDATE orders SET state = ?3, updated_at = ?4 WHERE seq = ?1 AND state = ?2",
        )?
        .execute(params![order.seq, order.state.as_str(), to.as_str(), now])?;
    if changed == 0 {
        return Err(conflict("invalid_state", "the order moved meanwhile"));
    }
    effects(tx, &order, to, input, now)?;
    at_seq(tx, order.seq)?.ok_or(Error::NotFound)
}

/// What a move does besides the state: the details it records, the order's
/// escrow, and the stock.
fn effects(tx: &WriteTx<'_>, order: &Order, to: OrderState, input: &Input, now: i64) -> Result<()> {
    let owner = Owner::Order(order.id);
    match (to, input) {
        (
            OrderState::Shipped,
            Input::Ship {
                tracking,
                confirm_within_s,
            },
        ) => {
            tx.prepare_cached("UPDATE orders SET tracking = ?2, confirm_by = ?3 WHERE seq = ?1")?
                .execute(params![
                    order.seq,
                    tracking,
                    now.saturating_add(*confirm_within_s)
                ])?;
        }
        (OrderState::Disputed, Input::Dispute { reason }) => {
            tx.prepare_cached("UPDATE orders SET dispute_reason = ?2 WHERE seq = ?1")?
                .execute(params![order.seq, reason])?;
            escrow::transition(
                tx,
                order.escrow,
                owner,
                EscrowState::Held,
                EscrowState::Disputed,
                now,
            )?;
        }
        (OrderState::Cancelled, _) => cancelled(tx, order, now)?,
        (OrderState::Completed, _) => completed(tx, order, now)?,
        (
            OrderState::Resolved,
            Input::Resolve {
                to_seller,
                to_buyer,
            },
        ) => resolved(tx, order, *to_seller, *to_buyer, now)?,
        (to, _) => {
            return Err(Error::internal(format!(
                "order {}: no effects for a move to {} with {input:?}",
                order.id,
                to.as_str()
            )));
        }
    }
    Ok(())
}

/// A cancellation refunds the buyer exactly the amount; an order cancelled
/// before it shipped puts its quantity back in stock.
fn cancelled(tx: &WriteTx<'_>, order: &Order, now: i64) -> Result<()> {
    let escrow = escrow::transition(
        tx,
        order.escrow,
        Owner::Order(order.id),
        EscrowState::Held,
        EscrowState::Refunded,
        now,
    )?;
    escrow::close(tx, &escrow, escrow::to_buyer(&escrow), now)?;
    if order.state == OrderState::Paid {
        tx.prepare_cached("UPDATE listings SET quantity = quantity + ?2 WHERE id = ?1")?
            .execute(params![order.listing, order.quantity])?;
        tx.touch(Touched::Listing(order.listing));
    }
    Ok(())
}

/// A completion pays the seller the amount less the fee fixed at placement,
/// and the platform the fee, in one movement.
fn completed(tx: &WriteTx<'_>, order: &Order, now: i64) -> Result<()> {
    let escrow = escrow::transition(
        tx,
        order.escrow,
        Owner::Order(order.id),
        EscrowState::Held,
        EscrowState::Released,
        now,
    )?;
    let split = Split {
        to_seller: order.amount - order.fee,
        fee: order.fee,
        to_buyer: 0,
    };
    escrow::close(tx, &escrow, split, now)
}

/// A resolution takes the fee from the seller's part only, and records it
/// as the order's fee.
fn resolved(
    tx: &WriteTx<'_>,
    order: &Order,
    to_seller: i64,
    to_buyer: i64,
    now: i64,
) -> Result<()> {
    let owner = Owner::Order(order.id);
    let escrow = escrow::resolved(tx, order.escrow, owner, to_seller, to_buyer, now)?;
    let fee = fee_of(to_seller, order.fee_bps);
    tx.prepare_cached("UPDATE orders SET fee = ?2 WHERE seq = ?1")?
        .execute(params![order.seq, fee])?;
    let split = Split {
        to_seller: to_seller - fee,
        fee,
        to_buyer,
    };
    escrow::close(tx, &escrow, split, now)
}

/// Orders whose timer has passed, oldest due first, at most `limit`, leaving
/// out those `skip` names (orders whose timer failed and waits for a retry:
/// they are paged past, so they never hold back the orders due after them):
/// paid ones past `ship_by` and shipped ones past `confirm_by`, each read
/// through its partial index (named: see `page_before`). Times are whole
/// seconds, so "passed" means `< now`: never early. Rows read are at most
/// `limit` plus the skipped ones, per index.
pub fn due(
    conn: &Connection,
    now: i64,
    limit: usize,
    skip: &dyn Fn(i64) -> bool,
) -> Result<Vec<i64>> {
    let mut due: Vec<(i64, i64)> = Vec::with_capacity(limit.saturating_mul(2));
    for sql in [
        "SELECT ship_by, coalesce(id, souk_order_id(seq)) FROM orders INDEXED BY orders_ship_due
         WHERE state = 'paid' AND ship_by < ?1 ORDER BY ship_by",
        "SELECT confirm_by, coalesce(id, souk_order_id(seq)) FROM orders INDEXED BY orders_confirm_due
         WHERE state = 'shipped' AND confirm_by < ?1 ORDER BY confirm_by",
    ] {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![now])?;
        let mut taken = 0;
        while taken < limit {
            let Some(row) = rows.next()? else { break };
            let (at, id): (i64, i64) = (row.get(0)?, row.get(1)?);
            if !skip(id) {
                due.push((at, id));
                taken += 1;
            }
        }
    }
    due.sort_unstable();
    due.truncate(limit);
    Ok(due.into_iter().map(|(_, id)| id).collect())
}

/// Which deadline of the order has passed at `now`, if one has: a paid
/// order's ship time or a shipped order's confirm time. From then on only
/// its timer moves it, even before the timer has fired: a party's move is
/// 409, so the outcome never depends on whether the sweep came first.
fn deadline_passed(order: &Order, now: i64) -> Option<&'static str> {
    match order.state {
        OrderState::Paid if order.ship_by < now => Some("ship"),
        OrderState::Shipped if order.confirm_by.is_some_and(|t| t < now) => Some("confirm"),
        _ => None,
    }
}

/// A timer's move: what the action would do, by souk.
pub fn expire(tx: &WriteTx<'_>, id: i64, now: i64) -> Result<Order> {
    let order = by_id(tx, id)?.ok_or(Error::NotFound)?;
    if deadline_passed(&order, now).is_none() {
        return Err(conflict(
            "invalid_state",
            "the order's timer has not passed",
        ));
    }
    act(tx, id, Action::Timeout, &Input::None, Mover::Souk, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_floored_and_never_overflows() {
        assert_eq!(fee_of(999, 250), 24);
        assert_eq!(fee_of(401, 250), 10);
        assert_eq!(fee_of(39, 250), 0);
        assert_eq!(fee_of(1_000, 0), 0);
        assert_eq!(fee_of(i64::MAX, 5000), i64::MAX / 2);
        assert_eq!(fee_of(i64::MAX, 10_000), i64::MAX);
    }

    /// One row per (from, action, who): a move never depends on which row
    /// is read first.
    #[test]
    fn the_moves_table_has_one_row_per_state_action_and_actor() {
        for (i, a) in MOVES.iter().enumerate() {
            for b in &MOVES[i + 1..] {
                assert!(
                    (a.0, a.1, a.2) != (b.0, b.1, b.2),
                    "{a:?} and {b:?} start the same move"
                );
            }
        }
        let finals = [
            OrderState::Completed,
            OrderState::Cancelled,
            OrderState::Resolved,
        ];
        assert!(MOVES.iter().all(|(from, ..)| !finals.contains(from)));
    }

    /// Each page reads its index in order: no temporary b-tree for the
    /// ORDER BY, and with a state the (party, state, seq) index bounds both
    /// the party and the state.
    #[test]
    fn every_page_reads_its_index_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        crate::store::seq_ids::register(&conn).unwrap();
        let plan = |scope: Scope, in_state: bool| -> String {
            let (sql, _) = page_sql(scope, in_state).unwrap();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params![1, "paid", 9, 10], |row| row.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        for (scope, in_state, wanted) in [
            (
                Scope::Buyer(1),
                true,
                "USING INDEX orders_buyer_state_seq (buyer=? AND state=? AND seq<?)",
            ),
            (
                Scope::Seller(1),
                true,
                "USING INDEX orders_seller_state_seq (seller=? AND state=? AND seq<?)",
            ),
            (
                Scope::All,
                true,
                "USING INDEX orders_state_seq (state=? AND seq<?)",
            ),
        ] {
            let plan = plan(scope, in_state);
            assert!(plan.contains(wanted), "{scope:?} {in_state}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE"),
                "{scope:?} {in_state}: {plan}"
            );
        }
    }
}
