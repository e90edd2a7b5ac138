//! Wallet statistics per currency (SPEC §4 `GET /admin/stats/wallets`).
//! Sums are exact: balances are bounded by the currency totals, and the
//! 24-hour volume is summed in i128.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::money::format_minor;
use crate::config::Currencies;
use crate::error::Result;

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

pub fn wallet_stats(conn: &Connection, currencies: &Currencies, now: i64) -> Result<Value> {
    let mut figures: BTreeMap<String, Figures> = currencies
        .0
        .iter()
        .map(|c| (c.code.clone(), Figures::default()))
        .collect();
    let mut stmt = conn.prepare_cached(
        "SELECT currency, available, held, (available > 0 OR held > 0) FROM accounts",
    )?;
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
    let map: serde_json::Map<String, Value> = figures
        .into_iter()
        .map(|(code, f)| {
            let d = super::decimals_of(currencies, &code);
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
    Ok(json!({"currencies": map, "as_of": crate::clock::rfc3339(now)}))
}
