//! What reads across the money domains on one snapshot: the invariant check
//! of docs/ledger.md (`souk check`, `GET /admin/check`) and the wallet
//! statistics (`stats`). It stands above `ledger`, `escrow` and `orders` so
//! that none of them reaches into the others' tables.

pub mod stats;

use rusqlite::Connection;

pub use crate::ledger::check::PROBLEMS_MAX;

use crate::error::Result;

/// Every problem found, at most `PROBLEMS_MAX`; empty when all invariants
/// hold. One read transaction: every part sees the same snapshot.
pub fn check(conn: &Connection) -> Result<Vec<String>> {
    conn.execute_batch("BEGIN")?;
    let result = check_in_snapshot(conn);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn check_in_snapshot(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    crate::ledger::check::invariants(conn, &mut problems)?;
    crate::escrow::check::invariants(conn, &mut problems)?;
    crate::orders::check::invariants(conn, &mut problems)?;
    problems.truncate(PROBLEMS_MAX);
    Ok(problems)
}
