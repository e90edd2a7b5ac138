//! The escrow invariants (docs/ledger.md, invariants 4 and 5), part of `ledger::check`.

use rusqlite::Connection;

use crate::error::Result;
use crate::ledger::check::PROBLEMS_MAX;

pub fn invariants(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    held_matches_open_escrows(conn, problems)?;
    one_closing_movement(conn, problems)?;
    Ok(())
}

/// Invariant 4: each account's held equals the sum of its open (held or disputed) escrows.
fn held_matches_open_escrows(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!(
        "WITH open AS (
             SELECT buyer AS user_id, currency, sum(amount) AS held FROM escrows
             WHERE state IN ('held', 'disputed') GROUP BY buyer, currency)
         SELECT a.user_id, a.currency, a.held, coalesce(o.held, 0) FROM accounts AS a
         LEFT JOIN open AS o ON o.user_id = a.user_id AND o.currency = a.currency
         WHERE a.held != coalesce(o.held, 0)
         UNION ALL
         SELECT o.user_id, o.currency, 0, o.held FROM open AS o
         WHERE NOT EXISTS (SELECT 1 FROM accounts AS a WHERE a.user_id = o.user_id AND a.currency = o.currency)
         LIMIT {PROBLEMS_MAX}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (user, currency, held, open): (i64, String, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        problems.push(format!(
            "user {user} {currency}: held is {held} but open escrows total {open}"
        ));
    }
    Ok(())
}

/// Invariant 5: every escrow has one hold; a final one exactly one closing movement of
/// the right kind moving exactly its amount (a resolution: both parts, one
/// movement, parts summing to the amount); an open one none.
fn one_closing_movement(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!(
        "WITH legs AS (
             SELECT escrow_id,
                    sum(kind = 'escrow_hold') AS holds,
                    sum(CASE WHEN kind = 'escrow_hold' THEN amount ELSE 0 END) AS held,
                    count(DISTINCT CASE WHEN kind != 'escrow_hold' THEN movement_id END) AS closings,
                    sum(CASE WHEN kind = 'escrow_release' AND direction = 'out' THEN amount ELSE 0 END) AS released,
                    sum(CASE WHEN kind = 'escrow_refund' THEN amount ELSE 0 END) AS refunded
             FROM entries WHERE escrow_id IS NOT NULL GROUP BY escrow_id)
         SELECT e.id, e.state FROM escrows AS e LEFT JOIN legs AS l ON l.escrow_id = e.id
         WHERE coalesce(l.holds, 0) != 1 OR l.held != e.amount
            OR (e.state IN ('held', 'disputed') AND l.closings != 0)
            OR (e.state = 'released' AND (l.closings != 1 OR l.released != e.amount OR l.refunded != 0))
            OR (e.state = 'refunded' AND (l.closings != 1 OR l.refunded != e.amount OR l.released != 0))
            OR (e.state = 'resolved' AND (l.closings != 1 OR l.released != e.to_seller OR l.refunded != e.to_buyer
                                          OR e.to_seller + e.to_buyer != e.amount))
         LIMIT {PROBLEMS_MAX}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, state): (i64, String) = (row.get(0)?, row.get(1)?);
        problems.push(format!(
            "escrow {id} ({state}): its entries do not match one hold and its closing"
        ));
    }
    Ok(())
}
