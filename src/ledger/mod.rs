//! The double-entry ledger: balances per user and currency, append-only
//! entries, deposits, withdrawals, transfers and batches. Only this module
//! writes balances, and only from write jobs (`WriteTx`). Every movement
//! writes its entries and its balance changes in the same job, so the
//! invariants of docs/ledger.md hold after every commit (`audit::check`
//! verifies them).

pub mod check;
pub mod idempotency;
pub mod money;

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::ids;
use crate::store::seq_ids::Space;
use crate::store::{Touched, WriteTx};
use money::{Amount, Currency, MinorText, format_minor};

/// One entry per enabled currency, in code order. A short vector rather
/// than a map: the balances cache holds one per user, and a `BTreeMap` node
/// reserves room for 11 entries (~0.5 KB for two currencies against ~0.15 KB).
pub type Balances = Vec<Balance>;

/// A user's money in one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub currency: String,
    pub available: i64,
    pub held: i64,
}

/// The platform's user id: its accounts hold the fees orders pay (schema
/// migration 7). No client can name it: ids they send are 1..=i64::MAX.
pub const PLATFORM: i64 = 0;

/// Items in one batch transfer (docs/api.md).
pub const BATCH_ITEMS_MAX: usize = 1000;
/// Longest memo, in characters (docs/api.md).
pub const MEMO_CHARS_MAX: usize = 280;
/// Longest deposit/withdrawal reference (a txid is 64 hex characters).
pub const REFERENCE_CHARS_MAX: usize = 128;

/// A deposit or withdrawal reference: 1..=REFERENCE_CHARS_MAX visible ASCII
/// characters (a txid, a bank reference).
pub fn check_reference(reference: &str) -> Result<()> {
    let ok = (1..=REFERENCE_CHARS_MAX).contains(&reference.len())
        && reference.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(Error::invalid_field(
            "reference",
            format!("reference must be 1-{REFERENCE_CHARS_MAX} visible ASCII characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deposit,
    Withdrawal,
    Transfer,
    EscrowHold,
    EscrowRelease,
    EscrowRefund,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
            Kind::Transfer => "transfer",
            Kind::EscrowHold => "escrow_hold",
            Kind::EscrowRelease => "escrow_release",
            Kind::EscrowRefund => "escrow_refund",
        }
    }

    pub const ALL: [Kind; 6] = [
        Kind::Deposit,
        Kind::Withdrawal,
        Kind::Transfer,
        Kind::EscrowHold,
        Kind::EscrowRelease,
        Kind::EscrowRefund,
    ];
}

/// Which way an entry moves money for its user: into (`in`) or out of
/// (`out`) their balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    pub const ALL: [Direction; 2] = [Direction::In, Direction::Out];
}

crate::util::stored_as_text!(Kind, "entry kind");
crate::util::stored_as_text!(Direction, "entry direction");

/// One user's side of a movement, as stored.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Insertion order; never shown.
    pub seq: i64,
    pub id: i64,
    pub movement_id: i64,
    pub user_id: i64,
    pub kind: Kind,
    pub direction: Direction,
    pub currency: String,
    pub amount: i64,
    pub counterparty: Option<i64>,
    pub escrow_id: Option<i64>,
    pub memo: Option<String>,
    pub reference: Option<String>,
    pub created_at: i64,
}

/// An entry as clients see it (docs/api.md).
#[derive(Serialize)]
pub struct EntryView {
    pub id: String,
    pub kind: &'static str,
    pub currency: String,
    pub amount: String,
    pub direction: &'static str,
    pub counterparty: Option<String>,
    pub escrow_id: Option<String>,
    pub memo: Option<String>,
    pub reference: Option<String>,
    pub created_at: String,
}

impl Entry {
    pub fn view(&self, currencies: &Currencies) -> EntryView {
        EntryView {
            id: self.id.to_string(),
            kind: self.kind.as_str(),
            currency: self.currency.clone(),
            amount: format_minor(
                i128::from(self.amount),
                decimals_of(currencies, &self.currency),
            ),
            direction: self.direction.as_str(),
            counterparty: self.counterparty.map(|id| id.to_string()),
            escrow_id: self.escrow_id.map(|id| id.to_string()),
            memo: self.memo.clone(),
            reference: self.reference.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
        }
    }
}

/// Decimal places of a stored currency; one disabled since keeps its
/// history readable with 0 places rather than failing.
pub fn decimals_of(currencies: &Currencies, code: &str) -> u32 {
    currencies
        .0
        .iter()
        .find(|c| c.code == code)
        .map_or(0, |c| c.decimals)
}

/// An entry's columns; its id is stored for entries older than migration 5,
/// derived from `seq` for the others (see `store::seq_ids`).
const ENTRY_COLUMNS: &str = "coalesce(id, souk_entry_id(seq)), movement_id, user_id, kind, direction, currency, amount, counterparty, escrow_id, memo, reference, created_at, seq";

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: row.get(12)?,
        id: row.get(0)?,
        movement_id: row.get(1)?,
        user_id: row.get(2)?,
        kind: row.get(3)?,
        direction: row.get(4)?,
        currency: row.get(5)?,
        amount: row.get(6)?,
        counterparty: row.get(7)?,
        escrow_id: row.get(8)?,
        memo: row.get(9)?,
        reference: row.get(10)?,
        created_at: row.get(11)?,
    })
}

/// What a new entry records; the database gives it its `seq`, hence its id.
pub struct NewEntry<'a> {
    pub movement_id: i64,
    pub user_id: i64,
    pub kind: Kind,
    pub direction: Direction,
    pub currency: &'a str,
    pub amount: Amount,
    pub counterparty: Option<i64>,
    pub escrow_id: Option<i64>,
    pub memo: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub created_at: i64,
}

/// Appends an entry; returns its `seq` (its id is `souk_entry_id(seq)`).
/// No RETURNING clause: it costs an ephemeral table per row.
pub fn insert_entry(tx: &WriteTx<'_>, new: &NewEntry<'_>) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO entries (movement_id, user_id, kind, direction, currency, amount,
                              counterparty, escrow_id, memo, reference, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        new.movement_id,
        new.user_id,
        new.kind,
        new.direction,
        new.currency,
        new.amount.minor(),
        new.counterparty,
        new.escrow_id,
        new.memo,
        new.reference,
        new.created_at
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The entry with this `seq`, as stored.
fn entry_at(conn: &Connection, seq: i64) -> Result<Entry> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE seq = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([seq], entry_from_row)?)
}

pub fn insufficient_funds(currency: &str) -> Error {
    Error::Conflict {
        code: "insufficient_funds",
        message: format!("available {currency} balance is too low"),
    }
}

/// Takes `amount` from the user's available balance, or `insufficient_funds`:
/// the check and the change are one statement.
pub fn debit_available(tx: &WriteTx<'_>, user_id: i64, currency: &str, amount: i64) -> Result<()> {
    tx.touch(Touched::Balance(user_id));
    let changed = tx
        .prepare_cached(
            "UPDATE accounts SET available = available - ?3
             WHERE user_id = ?1 AND currency = ?2 AND available >= ?3",
        )?
        .execute(params![user_id, currency, amount])?;
    if changed == 0 {
        return Err(insufficient_funds(currency));
    }
    Ok(())
}

/// Adds `amount` to the user's available balance. It cannot overflow while
/// the totals invariant holds (every balance <= deposited - withdrawn); the
/// guard in the statement turns a broken invariant into an error, not a wrap.
pub fn credit_available(tx: &WriteTx<'_>, user_id: i64, currency: &str, amount: i64) -> Result<()> {
    tx.touch(Touched::Balance(user_id));
    let changed = tx
        .prepare_cached(
            "INSERT INTO accounts (user_id, currency, available) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, currency) DO UPDATE SET available = available + excluded.available
             WHERE available <= 9223372036854775807 - excluded.available",
        )?
        .execute(params![user_id, currency, amount])?;
    if changed == 0 {
        return Err(Error::internal(format!(
            "balance of user {user_id} in {currency} would overflow"
        )));
    }
    Ok(())
}

/// Moves `amount` between the available and held parts of one account.
pub fn move_to_held(tx: &WriteTx<'_>, user_id: i64, currency: &str, amount: i64) -> Result<()> {
    tx.touch(Touched::Balance(user_id));
    let changed = tx
        .prepare_cached(
            "UPDATE accounts SET available = available - ?3, held = held + ?3
             WHERE user_id = ?1 AND currency = ?2 AND available >= ?3",
        )?
        .execute(params![user_id, currency, amount])?;
    if changed == 0 {
        return Err(insufficient_funds(currency));
    }
    Ok(())
}

/// Takes `amount` from held (escrow release or refund). Failing means the
/// held funds are not there: a broken invariant, so an internal error.
pub fn debit_held(tx: &WriteTx<'_>, user_id: i64, currency: &str, amount: i64) -> Result<()> {
    tx.touch(Touched::Balance(user_id));
    let changed = tx
        .prepare_cached(
            "UPDATE accounts SET held = held - ?3 WHERE user_id = ?1 AND currency = ?2 AND held >= ?3",
        )?
        .execute(params![user_id, currency, amount])?;
    if changed == 0 {
        return Err(Error::internal(format!(
            "held {currency} of user {user_id} is short of {amount}"
        )));
    }
    Ok(())
}

/// (available, held) per enabled currency, zeros when never used.
pub fn balances(conn: &Connection, user_id: i64, currencies: &Currencies) -> Result<Balances> {
    let mut out = zero_balances(currencies.0.iter().map(|c| c.code.as_str()));
    let mut stmt =
        conn.prepare_cached("SELECT currency, available, held FROM accounts WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |row| {
        Ok(Balance {
            currency: row.get(0)?,
            available: row.get(1)?,
            held: row.get(2)?,
        })
    })?;
    for row in rows {
        let found = row?;
        if let Some(slot) = out.iter_mut().find(|b| b.currency == found.currency) {
            *slot = found;
        }
    }
    Ok(out)
}

/// Zero balances in `codes`, each code once (a client may name one twice),
/// in code order, as a map would hold them.
fn zero_balances<'a>(codes: impl Iterator<Item = &'a str>) -> Balances {
    let mut out: Balances = codes
        .map(|code| Balance {
            currency: code.to_owned(),
            available: 0,
            held: 0,
        })
        .collect();
    out.sort_unstable_by(|a, b| a.currency.cmp(&b.currency));
    out.dedup_by(|a, b| a.currency == b.currency);
    out.shrink_to_fit();
    out
}

/// Balances as the API shows them: `{CUR: {available, held}}`, serialized
/// straight from the map (no JSON value tree in between).
pub fn balances_json<'a>(balances: &'a Balances, currencies: &'a Currencies) -> BalancesView<'a> {
    BalancesView {
        balances,
        currencies,
    }
}

pub struct BalancesView<'a> {
    balances: &'a Balances,
    currencies: &'a Currencies,
}

impl serde::Serialize for BalancesView<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;

        #[derive(serde::Serialize)]
        struct Pair {
            available: MinorText,
            held: MinorText,
        }
        let mut map = serializer.serialize_map(Some(self.balances.len()))?;
        for balance in self.balances {
            let decimals = decimals_of(self.currencies, &balance.currency);
            let text = |minor: i64| MinorText {
                minor: i128::from(minor),
                decimals,
            };
            let pair = Pair {
                available: text(balance.available),
                held: text(balance.held),
            };
            map.serialize_entry(&balance.currency, &pair)?;
        }
        map.end()
    }
}

/// A page of the user's entries, newest first, after the entry `after`.
pub fn entries_page(
    conn: &Connection,
    user_id: i64,
    currency: Option<&str>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Entry>> {
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            // The id enciphers the seq; or an older entry stores its id.
            .prepare_cached(&Space::Entry.row_shown_as("seq", "?1", "user_id = ?2"))?
            .query_row([id, user_id], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let codes = match currency {
        Some(code) => vec![code.to_owned()],
        None => currencies_of(conn, user_id)?,
    };
    // Newest first per currency from (user_id, currency, seq), merged.
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries
         WHERE user_id = ?1 AND currency = ?2 AND seq < ?3
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut page = Vec::new();
    for code in &codes {
        let rows = stmt.query_map(
            params![user_id, code, before_seq, limit as i64],
            entry_from_row,
        )?;
        for row in rows {
            page.push(row?);
        }
    }
    page.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.seq));
    page.truncate(limit);
    Ok(page)
}

/// The currencies a user has entries in, by skipping through the
/// (user_id, currency, seq) index: one seek per currency.
fn currencies_of(conn: &Connection, user_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE seen (code) AS (
             SELECT min(currency) FROM entries WHERE user_id = ?1
             UNION ALL
             SELECT (SELECT min(currency) FROM entries WHERE user_id = ?1 AND currency > seen.code)
             FROM seen WHERE seen.code IS NOT NULL
         )
         SELECT code FROM seen WHERE code IS NOT NULL",
    )?;
    let codes = stmt.query_map([user_id], |row| row.get(0))?;
    Ok(codes.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Deposit or withdrawal from or to the outside world.
pub struct External<'a> {
    pub user_id: i64,
    pub currency: &'a Currency,
    pub amount: Amount,
    pub reference: &'a str,
    pub now: i64,
}

/// What a movement with a reference did: applied now, or found applied before.
pub enum Applied<T> {
    New(T),
    Replayed(T),
}

/// The entry already recorded under this reference, if any; `422` when it
/// records a different request.
fn prior_by_reference(tx: &WriteTx<'_>, kind: Kind, ext: &External<'_>) -> Result<Option<Entry>> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE kind = ?1 AND currency = ?2 AND reference = ?3"
    );
    let prior = tx
        .prepare_cached(&sql)?
        .query_row(
            params![kind.as_str(), ext.currency.code, ext.reference],
            entry_from_row,
        )
        .optional()?;
    match prior {
        Some(entry) if entry.user_id == ext.user_id && entry.amount == ext.amount.minor() => {
            Ok(Some(entry))
        }
        Some(_) => Err(Error::IdempotencyMismatch),
        None => Ok(None),
    }
}

fn require_user(tx: &WriteTx<'_>, user_id: i64) -> Result<()> {
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")?
        .query_row([user_id], |row| row.get(0))?;
    if !exists {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Credits a user from outside; the reference (e.g. a txid) makes it safe to repeat.
pub fn deposit(tx: &WriteTx<'_>, ext: &External<'_>) -> Result<Applied<Entry>> {
    if let Some(entry) = prior_by_reference(tx, Kind::Deposit, ext)? {
        return Ok(Applied::Replayed(entry));
    }
    require_user(tx, ext.user_id)?;
    let code = ext.currency.code.as_str();
    let changed = tx
        .prepare_cached(
            "INSERT INTO currency_totals (currency, deposited) VALUES (?1, ?2)
             ON CONFLICT (currency) DO UPDATE SET deposited = deposited + excluded.deposited
             WHERE deposited <= 9223372036854775807 - excluded.deposited",
        )?
        .execute(params![code, ext.amount.minor()])?;
    if changed == 0 {
        // Depends on what was deposited before, not on the request: 409.
        return Err(Error::Conflict {
            code: "limit_exceeded",
            message: format!("total {code} deposits would exceed the largest amount souk can hold"),
        });
    }
    credit_available(tx, ext.user_id, code, ext.amount.minor())?;
    external_entry(tx, Kind::Deposit, Direction::In, ext).map(Applied::New)
}

/// Debits a user to outside; `insufficient_funds` when available is short.
pub fn withdraw(tx: &WriteTx<'_>, ext: &External<'_>) -> Result<Applied<Entry>> {
    if let Some(entry) = prior_by_reference(tx, Kind::Withdrawal, ext)? {
        return Ok(Applied::Replayed(entry));
    }
    require_user(tx, ext.user_id)?;
    let code = ext.currency.code.as_str();
    debit_available(tx, ext.user_id, code, ext.amount.minor())?;
    tx.prepare_cached("UPDATE currency_totals SET withdrawn = withdrawn + ?2 WHERE currency = ?1")?
        .execute(params![code, ext.amount.minor()])?;
    external_entry(tx, Kind::Withdrawal, Direction::Out, ext).map(Applied::New)
}

fn external_entry(
    tx: &WriteTx<'_>,
    kind: Kind,
    direction: Direction,
    ext: &External<'_>,
) -> Result<Entry> {
    let movement_id = ids::random_id()?;
    let seq = insert_entry(
        tx,
        &NewEntry {
            movement_id,
            user_id: ext.user_id,
            kind,
            direction,
            currency: &ext.currency.code,
            amount: ext.amount,
            counterparty: None,
            escrow_id: None,
            memo: None,
            reference: Some(ext.reference),
            created_at: ext.now,
        },
    )?;
    entry_at(tx, seq)
}

/// One transfer as asked: to whom, what, how much.
#[derive(Debug, Clone)]
pub struct TransferItem {
    pub to: i64,
    pub currency: Currency,
    pub amount: Amount,
    pub memo: Option<String>,
}

/// A transfer as done.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: i64,
    pub from: i64,
    pub to: i64,
    pub currency: Currency,
    pub amount: Amount,
    pub memo: Option<String>,
    pub created_at: i64,
}

#[derive(Serialize)]
pub struct TransferView {
    pub id: String,
    pub from: String,
    pub to: String,
    pub currency: String,
    pub amount: String,
    pub memo: Option<String>,
    pub created_at: String,
}

impl Transfer {
    pub fn view(&self) -> TransferView {
        TransferView {
            id: self.id.to_string(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            currency: self.currency.code.clone(),
            amount: format_minor(i128::from(self.amount.minor()), self.currency.decimals),
            memo: self.memo.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
        }
    }
}

/// Moves funds between users, all items or none: per currency one debit of
/// the sum (checked against available in the same statement), per recipient
/// one credit, and two entries per item. An error names the item at fault.
pub fn transfer_batch(
    tx: &WriteTx<'_>,
    from: i64,
    items: &[TransferItem],
    now: i64,
) -> Result<Vec<Transfer>> {
    require_recipients(tx, from, items)?;
    let mut debits: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
    let mut credits: HashMap<(i64, &str), i64> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let code = item.currency.code.as_str();
        let slot = debits.entry(code).or_insert((0, index));
        // A sum past i64::MAX can never be covered by a balance.
        slot.0 = slot
            .0
            .checked_add(item.amount.minor())
            .ok_or_else(|| insufficient_funds(code).at_index(index))?;
        let credit = credits.entry((item.to, code)).or_insert(0);
        *credit = credit
            .checked_add(item.amount.minor())
            .ok_or_else(|| insufficient_funds(code).at_index(index))?;
    }
    for (code, (total, _)) in &debits {
        match debit_available(tx, from, code, *total) {
            Ok(()) => {}
            // Name the first item the balance cannot cover; any other
            // error (the store's) goes up as it is.
            Err(Error::Conflict { .. }) => {
                return Err(
                    insufficient_funds(code).at_index(first_unaffordable(tx, from, code, items)?)
                );
            }
            Err(e) => return Err(e),
        }
    }
    for ((to, code), amount) in &credits {
        credit_available(tx, *to, code, *amount)?;
    }
    items
        .iter()
        .map(|item| record_transfer(tx, from, item, now))
        .collect()
}

pub fn transfer(tx: &WriteTx<'_>, from: i64, item: &TransferItem, now: i64) -> Result<Transfer> {
    if item.to == from {
        return Err(to_self());
    }
    require_user(tx, item.to)?;
    debit_available(tx, from, &item.currency.code, item.amount.minor())?;
    credit_available(tx, item.to, &item.currency.code, item.amount.minor())?;
    record_transfer(tx, from, item, now)
}

fn to_self() -> Error {
    Error::invalid_field("to", "cannot transfer to yourself")
}

/// Every recipient of a batch exists and is not the sender (one query for
/// all); an error names the item, even in a batch of one.
fn require_recipients(tx: &WriteTx<'_>, from: i64, items: &[TransferItem]) -> Result<()> {
    if let Some(index) = items.iter().position(|item| item.to == from) {
        return Err(to_self().at_index(index));
    }
    let ids: Vec<i64> = items.iter().map(|i| i.to).collect();
    let list = serde_json::to_string(&ids).map_err(|e| Error::internal_from("encoding ids", e))?;
    let mut stmt =
        tx.prepare_cached("SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?1))")?;
    let found: std::collections::HashSet<i64> = stmt
        .query_map([list], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    match items.iter().position(|item| !found.contains(&item.to)) {
        Some(index) => Err(Error::NotFound.at_index(index)),
        None => Ok(()),
    }
}

/// The index of the first item of `code` that the sender cannot afford.
fn first_unaffordable(
    tx: &WriteTx<'_>,
    from: i64,
    code: &str,
    items: &[TransferItem],
) -> Result<usize> {
    let available: i64 = tx
        .prepare_cached("SELECT available FROM accounts WHERE user_id = ?1 AND currency = ?2")?
        .query_row(params![from, code], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let mut running: i64 = 0;
    for (index, item) in items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.currency.code == code)
    {
        running = running.saturating_add(item.amount.minor());
        if running > available {
            return Ok(index);
        }
    }
    Ok(0)
}

fn record_transfer(tx: &WriteTx<'_>, from: i64, item: &TransferItem, now: i64) -> Result<Transfer> {
    let id = ids::random_id()?;
    for (user_id, direction, counterparty) in [
        (from, Direction::Out, item.to),
        (item.to, Direction::In, from),
    ] {
        insert_entry(
            tx,
            &NewEntry {
                movement_id: id,
                user_id,
                kind: Kind::Transfer,
                direction,
                currency: &item.currency.code,
                amount: item.amount,
                counterparty: Some(counterparty),
                escrow_id: None,
                memo: item.memo.as_deref(),
                reference: None,
                created_at: now,
            },
        )?;
    }
    Ok(Transfer {
        id,
        from,
        to: item.to,
        currency: item.currency.clone(),
        amount: item.amount,
        memo: item.memo.clone(),
        created_at: now,
    })
}

/// Balances of the asked users that exist, for the asked currencies (zeros
/// where never used): one query, the ids bound as one JSON array.
pub fn balances_of_users(
    conn: &Connection,
    user_ids: &[i64],
    codes: &[String],
) -> Result<BTreeMap<i64, Balances>> {
    let ids =
        serde_json::to_string(user_ids).map_err(|e| Error::internal_from("encoding ids", e))?;
    let currencies =
        serde_json::to_string(codes).map_err(|e| Error::internal_from("encoding currencies", e))?;
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, a.currency, a.available, a.held
         FROM users AS u
         LEFT JOIN accounts AS a ON a.user_id = u.id AND a.currency IN (SELECT value FROM json_each(?2))
         WHERE u.id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut out: BTreeMap<i64, Balances> = BTreeMap::new();
    let mut rows = stmt.query(params![ids, currencies])?;
    while let Some(row) = rows.next()? {
        let user = out
            .entry(row.get(0)?)
            .or_insert_with(|| zero_balances(codes.iter().map(String::as_str)));
        if let Some(currency) = row.get::<_, Option<String>>(1)?
            && let Some(slot) = user.iter_mut().find(|b| b.currency == currency)
        {
            (slot.available, slot.held) = (row.get(2)?, row.get(3)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_balances_name_each_currency_once_in_code_order() {
        let zeros = zero_balances(["xmr", "btc", "xmr"].into_iter());
        let codes: Vec<_> = zeros.iter().map(|b| b.currency.as_str()).collect();
        assert_eq!(codes, ["btc", "xmr"]);
        assert!(zeros.iter().all(|b| (b.available, b.held) == (0, 0)));
    }
}
