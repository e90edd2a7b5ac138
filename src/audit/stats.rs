//! Wallet statistics per currency (`GET /admin/stats/wallets`, docs/api.md).
//! Sums are exact: balances are bounded by the currency totals, and the
//! 24-hour volume is summed in i128. Every figure of one answer comes from
//! one read transaction, so they always agree with each other.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::config::Currencies;
use crate::error::Result;
use crate::ledger::PLATFORM;
use crate::ledger::money::format_minor;

#[derive(Default, Clone)]
struct Figures {
    total_available: i128,
    total_held: i128,
    deposited: i128,
    withdrawn: i128,
    accounts: i64,
    transfers_24h: i64,
    volume_24h: i128,
    open_escrows: i64,
}

/// The statistics of every enabled currency, read on one snapshot: with a
/// snapshot per query, a deposit committed between the balance query and
/// the totals query showed as deposited but in no balance.
pub fn wallet_stats(conn: &Connection, currencies: &Currencies, now: i64) -> Result<Value> {
    // BEGIN DEFERRED: the snapshot is taken by the first SELECT and kept by
    // every later one. Nothing is written, so it ends with a rollback, also
    // on the error path (the drop), and the pooled connection never keeps
    // an old snapshot.
    let snapshot = conn.unchecked_transaction()?;
    let figures = read_figures(&snapshot, currencies, now)?;
    snapshot.rollback()?;
    Ok(render(figures, currencies, now))
}

fn read_figures(
    conn: &Connection,
    currencies: &Currencies,
    now: i64,
) -> Result<BTreeMap<String, Figures>> {
    let mut figures: BTreeMap<String, Figures> = currencies
        .0
        .iter()
        .map(|c| (c.code.clone(), Figures::default()))
        .collect();
    // The platform (user 0) is no user: its fee balances are in the totals
    // but it is not counted in `accounts`.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT currency, available, held, (user_id != {PLATFORM} AND (available > 0 OR held > 0))
         FROM accounts"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Some(f) = figures.get_mut(&row.get::<_, String>(0)?) {
            f.total_available += i128::from(row.get::<_, i64>(1)?);
            f.total_held += i128::from(row.get::<_, i64>(2)?);
            f.accounts += row.get::<_, i64>(3)?;
        }
    }
    let mut stmt =
        conn.prepare_cached("SELECT currency, deposited, withdrawn FROM currency_totals")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Some(f) = figures.get_mut(&row.get::<_, String>(0)?) {
            f.deposited = i128::from(row.get::<_, i64>(1)?);
            f.withdrawn = i128::from(row.get::<_, i64>(2)?);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT currency, amount FROM entries WHERE kind = 'transfer' AND direction = 'out' AND created_at >= ?1",
    )?;
    let mut rows = stmt.query([now - 86_400])?;
    while let Some(row) = rows.next()? {
        if let Some(f) = figures.get_mut(&row.get::<_, String>(0)?) {
            f.transfers_24h += 1;
            f.volume_24h += i128::from(row.get::<_, i64>(1)?);
        }
    }
    for (currency, open) in crate::escrow::open_counts(conn)? {
        if let Some(f) = figures.get_mut(&currency) {
            f.open_escrows = open;
        }
    }
    Ok(figures)
}

fn render(figures: BTreeMap<String, Figures>, currencies: &Currencies, now: i64) -> Value {
    let map: serde_json::Map<String, Value> = figures
        .into_iter()
        .map(|(code, f)| {
            let d = crate::ledger::decimals_of(currencies, &code);
            let value = json!({
                "total_available": format_minor(f.total_available, d),
                "total_held": format_minor(f.total_held, d),
                "deposited": format_minor(f.deposited, d),
                "withdrawn": format_minor(f.withdrawn, d),
                "accounts": f.accounts,
                "transfers_24h": f.transfers_24h,
                "volume_24h": format_minor(f.volume_24h, d),
                "open_escrows": f.open_escrows,
            });
            (code, value)
        })
        .collect();
    json!({"currencies": map, "as_of": crate::clock::rfc3339(now)})
}
