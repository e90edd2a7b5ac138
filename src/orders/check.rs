//! The order invariants (docs/ledger.md, invariants 9 and 10), part of
//! `audit::check`: every order agrees with its escrow, a finished order's
//! closing movement paid the platform exactly the fee rule, and no
//! listing's stock is negative.

use rusqlite::Connection;

use super::fee_of;
use crate::error::Result;
use crate::ledger::check::PROBLEMS_MAX;
use crate::store::seq_ids::Space;

pub fn invariants(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    order_matches_escrow(conn, problems)?;
    fee_rule(conn, problems)?;
    escrow_has_its_order(conn, problems)?;
    stock_not_negative(conn, problems)?;
    Ok(())
}

/// Invariant 9, states and amounts: an order's escrow is its own, of its
/// amount, between its parties, in the state that goes with the order's
/// (paid/shipped ↔ held, disputed ↔ disputed, completed ↔ released,
/// cancelled ↔ refunded — with exactly its amount, by invariant 5 —,
/// resolved ↔ resolved).
fn order_matches_escrow(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    // Orders and escrows are joined by shown id through the primary key
    // (`seq_ids::Space::seq_shown_as`): no index on the links, no scan of escrows.
    let sql = format!(
        "SELECT coalesce(o.id, souk_order_id(o.seq)), o.state, coalesce(e.state, 'missing')
         FROM orders AS o
         LEFT JOIN escrows AS e ON e.seq = {escrow_seq}
         WHERE e.seq IS NULL OR e.order_id IS NOT coalesce(o.id, souk_order_id(o.seq))
            OR e.amount != o.amount
            OR e.buyer != o.buyer OR e.seller != o.seller OR e.currency != o.currency
            OR NOT ((o.state IN ('paid', 'shipped') AND e.state = 'held')
                 OR (o.state = 'disputed' AND e.state = 'disputed')
                 OR (o.state = 'completed' AND e.state = 'released')
                 OR (o.state = 'cancelled' AND e.state = 'refunded')
                 OR (o.state = 'resolved' AND e.state = 'resolved'))
         LIMIT {PROBLEMS_MAX}",
        escrow_seq = Space::Escrow.seq_shown_as("o.escrow")
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, state, escrow): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        problems.push(format!(
            "order {id} ({state}): its escrow ({escrow}) does not match it"
        ));
    }
    Ok(())
}

/// Invariant 9, the fee: the platform's `in` legs on an order's escrow sum
/// to the order's fee, which is the fee rule of the amount (completed) or of
/// the seller's part (resolved); an unfinished or cancelled order shows the
/// fee of its amount and paid none.
fn fee_rule(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "WITH paid AS (
             SELECT escrow_id, sum(amount) AS fee FROM entries
             WHERE user_id = 0 AND kind = 'escrow_release' AND direction = 'in'
             GROUP BY escrow_id)
         SELECT coalesce(o.id, souk_order_id(o.seq)), o.state, o.amount, o.fee_bps, o.fee,
                e.to_seller, coalesce(p.fee, 0)
         FROM orders AS o JOIN escrows AS e ON e.seq = {escrow_seq}
         LEFT JOIN paid AS p ON p.escrow_id = o.escrow",
        escrow_seq = Space::Escrow.seq_shown_as("o.escrow")
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, state): (i64, String) = (row.get(0)?, row.get(1)?);
        let (amount, fee_bps, fee): (i64, i64, i64) = (row.get(2)?, row.get(3)?, row.get(4)?);
        let (to_seller, paid): (Option<i64>, i64) = (row.get(5)?, row.get(6)?);
        // The fee shown, and what the platform must have received.
        let (rule, owed) = match state.as_str() {
            "completed" => (Some(fee_of(amount, fee_bps)), fee),
            "resolved" => (to_seller.map(|base| fee_of(base, fee_bps)), fee),
            _ => (Some(fee_of(amount, fee_bps)), 0),
        };
        let ok = rule == Some(fee) && paid == owed;
        if !ok {
            problems.push(format!(
                "order {id} ({state}): fee {fee} at {fee_bps} bps, the platform got {paid}"
            ));
            if problems.len() >= PROBLEMS_MAX {
                break;
            }
        }
    }
    Ok(())
}

/// Every escrow that names an order is that order's escrow.
fn escrow_has_its_order(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!(
        "SELECT coalesce(e.id, souk_escrow_id(e.seq)), e.order_id FROM escrows AS e
         WHERE e.order_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.seq = {order_seq}
                         AND o.escrow = coalesce(e.id, souk_escrow_id(e.seq)))
         LIMIT {PROBLEMS_MAX}",
        order_seq = Space::Order.seq_shown_as("e.order_id")
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (escrow, order): (i64, i64) = (row.get(0)?, row.get(1)?);
        problems.push(format!(
            "escrow {escrow} names order {order}, which is not paid by it"
        ));
    }
    Ok(())
}

/// Invariant 10: no listing's quantity is negative.
fn stock_not_negative(conn: &Connection, problems: &mut Vec<String>) -> Result<()> {
    let sql = format!("SELECT id, quantity FROM listings WHERE quantity < 0 LIMIT {PROBLEMS_MAX}");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, quantity): (i64, i64) = (row.get(0)?, row.get(1)?);
        problems.push(format!("listing {id}: quantity {quantity} is negative"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order and its escrow, derived ids both, plus an older pair with
    /// stored ids: the link checks pass, and see a link broken either way.
    #[test]
    fn the_link_checks_follow_shown_ids_both_ways() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        crate::store::seq_ids::register(&conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at)
             VALUES (7, 'buyer', 'x', 0), (8, 'seller', 'x', 0);
             INSERT INTO listings (id, seller, title, description, currency, price, quantity, tags,
                                   state, created_at, updated_at)
             VALUES (50, 8, 'lamp', 'a lamp', 'btc', 10, 5, '[]', 'active', 0, 0);
             INSERT INTO escrows (seq, id, buyer, seller, currency, amount, state, created_at, order_id)
             VALUES (1, 6000, 7, 8, 'btc', 10, 'held', 1, 7000),
                    (2, NULL, 7, 8, 'btc', 10, 'held', 1, souk_order_id(2));
             INSERT INTO orders (seq, id, listing, buyer, seller, title, currency, unit_price, quantity,
                                 amount, fee_bps, fee, state, escrow, created_at, updated_at, ship_by)
             VALUES (1, 7000, 50, 7, 8, 'lamp', 'btc', 10, 1, 10, 0, 0, 'paid', 6000, 1, 2, 3),
                    (2, NULL, 50, 7, 8, 'lamp', 'btc', 10, 1, 10, 0, 0, 'paid', souk_escrow_id(2), 1, 2, 3);",
        )
        .unwrap();
        let problems = |conn: &Connection| -> Vec<String> {
            let mut problems = Vec::new();
            order_matches_escrow(conn, &mut problems).unwrap();
            escrow_has_its_order(conn, &mut problems).unwrap();
            problems
        };
        assert_eq!(problems(&conn), Vec::<String>::new());
        let (order, escrow): (i64, i64) = conn
            .query_row("SELECT souk_order_id(2), souk_escrow_id(2)", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        // The new escrow names the older order: both ends see it.
        conn.execute("UPDATE escrows SET order_id = 7000 WHERE seq = 2", [])
            .unwrap();
        let found = problems(&conn);
        assert!(
            found.iter().any(|p| p.contains(&format!("order {order} "))),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains(&format!("escrow {escrow} names order 7000"))),
            "{found:?}"
        );
        conn.execute(
            "UPDATE escrows SET order_id = souk_order_id(2) WHERE seq = 2",
            [],
        )
        .unwrap();
        assert_eq!(problems(&conn), Vec::<String>::new());
        // The older order names the new escrow, and the older escrow is
        // nobody's.
        conn.execute("UPDATE orders SET escrow = ?1 WHERE seq = 1", [escrow])
            .unwrap();
        let found = problems(&conn);
        assert!(found.iter().any(|p| p.contains("order 7000 ")), "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.contains("escrow 6000 names order 7000")),
            "{found:?}"
        );
        // An escrow id that stands for no row is missing.
        conn.execute("UPDATE orders SET escrow = -1 WHERE seq = 1", [])
            .unwrap();
        let found = problems(&conn);
        assert!(
            found
                .iter()
                .any(|p| p.contains("order 7000 (paid): its escrow (missing)")),
            "{found:?}"
        );
    }
}
