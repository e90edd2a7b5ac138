//! The ledger's own invariants of docs/ledger.md (1, 2, 3, 6, 7), part of
//! `audit::check`, which runs them on one snapshot with the escrows' and the
//! orders'.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::error::Result;

/// The most problems one check reports (each part's queries stop there too),
/// so that a badly broken database still gives a readable answer.
pub const PROBLEMS_MAX: usize = 100;

/// How each kind of entry moves the available and held parts of the account
/// it belongs to, as SQL over `kind` and `direction`. The ledger's write
/// functions and this replay must agree; the tests hold them together.
const AVAILABLE_EFFECT: &str = "CASE
    WHEN direction = 'in' AND kind IN ('deposit', 'transfer', 'escrow_release', 'escrow_refund') THEN amount
    WHEN direction = 'out' AND kind IN ('withdrawal', 'transfer', 'escrow_hold') THEN -amount
    ELSE 0 END";
const HELD_EFFECT: &str = "CASE
    WHEN kind = 'escrow_hold' THEN amount
    WHEN kind = 'escrow_release' AND direction = 'out' THEN -amount
    WHEN kind = 'escrow_refund' THEN -amount
    ELSE 0 END";

/// Adds the ledger's problems to `problems`.
pub fn invariants(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    conservation(conn, problems)?;
    replay(conn, problems)?;
    non_negative(conn, problems)?;
    double_entry(conn, problems)?;
    append_only(conn, problems)
}

/// Invariants 1 and 7, per currency: Σ available + Σ held over every
/// account — the platform's fee accounts (user 0) included — = Σ deposits −
/// Σ withdrawals (fee withdrawals included), the
/// latter both as recorded in `currency_totals` and as replayed from entries.
/// Sums are taken in i128 so that even a broken database cannot overflow them.
fn conservation(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let mut sums: BTreeMap<String, [i128; 3]> = BTreeMap::new();
    let mut add = |sql: &str, slot: usize| -> Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let entry = sums.entry(row.get(0)?).or_default();
            entry[slot] += i128::from(row.get::<_, i64>(1)?);
        }
        Ok(())
    };
    add("SELECT currency, available FROM accounts", 0)?;
    add("SELECT currency, held FROM accounts", 0)?;
    add(
        "SELECT currency, deposited - withdrawn FROM currency_totals",
        1,
    )?;
    add(
        "SELECT currency, amount FROM entries WHERE kind = 'deposit'",
        2,
    )?;
    add(
        "SELECT currency, -amount FROM entries WHERE kind = 'withdrawal'",
        2,
    )?;
    for (currency, [balances, totals, replayed]) in sums {
        if balances != totals || totals != replayed {
            problems.push(format!(
                "{currency}: balances sum to {balances} but deposits - withdrawals are {totals} (totals) / {replayed} (entries)"
            ));
        }
    }
    Ok(())
}

/// Invariant 2: every account equals the replay of its entries (and no entries means
/// a zero account).
fn replay(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!(
        "WITH replayed AS (
             SELECT user_id, currency, sum({AVAILABLE_EFFECT}) AS available, sum({HELD_EFFECT}) AS held
             FROM entries GROUP BY user_id, currency)
         SELECT r.user_id, r.currency, r.available, r.held,
                coalesce(a.available, 0), coalesce(a.held, 0)
         FROM replayed AS r LEFT JOIN accounts AS a ON a.user_id = r.user_id AND a.currency = r.currency
         WHERE r.available != coalesce(a.available, 0) OR r.held != coalesce(a.held, 0)
         UNION ALL
         SELECT a.user_id, a.currency, 0, 0, a.available, a.held FROM accounts AS a
         WHERE (a.available != 0 OR a.held != 0)
           AND NOT EXISTS (SELECT 1 FROM entries AS e WHERE e.user_id = a.user_id AND e.currency = a.currency)
         LIMIT {limit}",
        limit = PROBLEMS_MAX
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (user, currency): (i64, String) = (row.get(0)?, row.get(1)?);
        let (ra, rh, aa, ah): (i64, i64, i64, i64) =
            (row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
        problems.push(format!(
            "user {user} {currency}: account has available {aa} held {ah}, entries replay to {ra} / {rh}"
        ));
    }
    Ok(())
}

/// Invariant 3: no available or held amount is negative.
fn non_negative(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT user_id, currency, available, held FROM accounts WHERE available < 0 OR held < 0 LIMIT {PROBLEMS_MAX}"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (user, currency, a, h): (i64, String, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        problems.push(format!(
            "user {user} {currency}: negative balance (available {a}, held {h})"
        ));
    }
    Ok(())
}

/// Every transfer is two legs, one out and one in, of one amount, between
/// two different users who name each other.
fn double_entry(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT movement_id FROM entries WHERE kind = 'transfer' GROUP BY movement_id
         HAVING count(*) != 2 OR sum(direction = 'in') != 1 OR min(amount) != max(amount)
             OR min(currency) != max(currency) OR min(user_id) = max(user_id)
             OR min(counterparty) != min(user_id) OR max(counterparty) != max(user_id)
         LIMIT {PROBLEMS_MAX}"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let movement: i64 = row.get(0)?;
        problems.push(format!(
            "transfer {movement}: its entries are not one out and one matching in"
        ));
    }
    Ok(())
}

/// Invariant 6: entries are never changed or deleted: the triggers that refuse it exist.
fn append_only(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let guards: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
         AND name IN ('entries_never_change', 'entries_never_vanish')",
        [],
        |row| row.get(0),
    )?;
    if guards != 2 {
        problems.push("entries table lacks its append-only triggers".into());
    }
    Ok(())
}
