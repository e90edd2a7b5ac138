//! The platform's fees: what orders paid to the platform account (user 0,
//! `ledger::PLATFORM`), what was taken out, and taking it out. Fee money is
//! ordinary ledger money, so a fee withdrawal is `ledger::withdraw` for
//! user 0 (kind `withdrawal`, counted in `currency_totals.withdrawn`).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::ledger::money::format_minor;
use crate::ledger::{self, Applied, Entry, External, PLATFORM};
use crate::store::WriteTx;

/// One currency's fees in minor units: the platform's available balance and
/// what was ever withdrawn; collected = balance + withdrawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fees {
    pub balance: i64,
    pub withdrawn: i64,
}

/// Fees per enabled currency (zeros where none), read in one transaction.
pub fn summary(conn: &Connection, currencies: &Currencies) -> Result<BTreeMap<String, Fees>> {
    conn.execute_batch("BEGIN")?;
    let result = summary_in_snapshot(conn, currencies);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn summary_in_snapshot(
    conn: &Connection,
    currencies: &Currencies,
) -> Result<BTreeMap<String, Fees>> {
    let mut balance =
        conn.prepare_cached("SELECT available FROM accounts WHERE user_id = ?1 AND currency = ?2")?;
    let mut withdrawn = conn.prepare_cached(&withdrawn_sql())?;
    let mut out = BTreeMap::new();
    for spec in &currencies.0 {
        let fees = Fees {
            balance: balance
                .query_row(params![PLATFORM, spec.code], |row| row.get(0))
                .optional()?
                .unwrap_or(0),
            withdrawn: withdrawn.query_row([&spec.code], |row| row.get(0))?,
        };
        out.insert(spec.code.clone(), fees);
    }
    Ok(out)
}

/// The platform's withdrawn fees in currency ?1. User 0 is written in the
/// SQL, not bound: only then can SQLite use the partial index
/// `entries_platform` (`WHERE user_id = 0`).
fn withdrawn_sql() -> String {
    format!(
        "SELECT coalesce(sum(amount), 0) FROM entries
         WHERE user_id = {PLATFORM} AND currency = ?1 AND kind = 'withdrawal'"
    )
}

/// `{CUR: {balance, collected, withdrawn}}` as decimal strings.
pub fn summary_json(fees: &BTreeMap<String, Fees>, currencies: &Currencies) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = fees
        .iter()
        .map(|(code, f)| {
            let decimals = ledger::decimals_of(currencies, code);
            let money = |minor: i128| format_minor(minor, decimals);
            let collected = i128::from(f.balance) + i128::from(f.withdrawn);
            let value = serde_json::json!({
                "balance": money(i128::from(f.balance)),
                "collected": money(collected),
                "withdrawn": money(i128::from(f.withdrawn)),
            });
            (code.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map)
}

fn duplicate(reference: &str) -> Error {
    Error::Conflict {
        code: "duplicate_reference",
        message: format!("a withdrawal with reference `{reference}` exists in this currency"),
    }
}

/// Takes `amount` of fees out to the outside world. The reference is unique
/// per currency among all withdrawals, users' and fees' alike (one unique
/// index): any earlier withdrawal with it is 409 `duplicate_reference`.
pub fn withdraw(tx: &WriteTx<'_>, ext: &External<'_>) -> Result<Entry> {
    if ext.user_id != PLATFORM {
        return Err(Error::internal("a fee withdrawal is the platform's"));
    }
    match ledger::withdraw(tx, ext) {
        Ok(Applied::New(entry)) => Ok(entry),
        Ok(Applied::Replayed(_)) | Err(Error::IdempotencyMismatch) => Err(duplicate(ext.reference)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawn_fees_are_read_through_the_platform_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", withdrawn_sql()),
                ["btc"],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING INDEX entries_platform"), "{plan}");
    }
}
