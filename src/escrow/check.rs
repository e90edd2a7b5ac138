//! The escrow invariants (docs/ledger.md, invariants 4 and 5), part of `audit::check`.

use rusqlite::Connection;

use crate::error::Result;
use crate::ledger::PLATFORM;
use crate::ledger::check::PROBLEMS_MAX;
use crate::store::seq_ids::Space;

pub fn invariants(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    held_matches_open_escrows(conn, problems)?;
    one_closing_movement(conn, problems)?;
    closing_legs_reach_the_parties(conn, problems)?;
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
         SELECT coalesce(e.id, souk_escrow_id(e.seq)), e.state FROM escrows AS e
         LEFT JOIN legs AS l ON l.escrow_id = coalesce(e.id, souk_escrow_id(e.seq))
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

/// Invariant 5, who is paid: a closing's `escrow_release` legs go out of the
/// buyer and in to the seller or, for an order's escrow only, the platform
/// (user 0, the fee); its `escrow_refund` legs go in to the buyer; in each
/// movement the release `in` legs sum to its `out` legs. Replay (invariant
/// 2) cannot see money credited to the wrong user when that user's balance
/// was moved with it.
fn closing_legs_reach_the_parties(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!(
        "SELECT n.escrow_id, e.state, n.movement_id, n.user_id, n.kind, n.direction
         FROM entries AS n JOIN escrows AS e ON e.seq = {escrow_seq}
         WHERE n.escrow_id IS NOT NULL AND n.kind IN ('escrow_release', 'escrow_refund')
           AND NOT ((n.kind = 'escrow_release' AND n.direction = 'out' AND n.user_id = e.buyer)
                 OR (n.kind = 'escrow_release' AND n.direction = 'in'
                     AND (n.user_id = e.seller OR (e.order_id IS NOT NULL AND n.user_id = {PLATFORM})))
                 OR (n.kind = 'escrow_refund' AND n.direction = 'in' AND n.user_id = e.buyer))
         LIMIT {PROBLEMS_MAX}",
        escrow_seq = Space::Escrow.seq_shown_as("n.escrow_id")
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, state, movement, user, kind, direction): (i64, String, i64, i64, String, String) = (
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        );
        problems.push(format!(
            "escrow {id} ({state}): movement {movement} has an {kind} {direction} leg of user {user}, \
             who is not the party it must go to"
        ));
    }
    let sql = format!(
        "SELECT escrow_id, movement_id,
                sum(CASE WHEN direction = 'in' THEN amount ELSE 0 END),
                sum(CASE WHEN direction = 'out' THEN amount ELSE 0 END)
         FROM entries WHERE escrow_id IS NOT NULL AND kind = 'escrow_release'
         GROUP BY escrow_id, movement_id
         HAVING sum(CASE WHEN direction = 'in' THEN amount ELSE 0 END)
             != sum(CASE WHEN direction = 'out' THEN amount ELSE 0 END)
         LIMIT {PROBLEMS_MAX}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, movement, paid_in, paid_out): (i64, i64, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        problems.push(format!(
            "escrow {id}: movement {movement} releases {paid_out} out but {paid_in} in"
        ));
    }
    Ok(())
}
