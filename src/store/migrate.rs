//! Forward-only migrations from the top-level `schema.sql`, versioned with
//! `PRAGMA user_version`. A database newer than this binary is refused; an
//! upgrade is one transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::open::APPLICATION_ID;
use super::seq_ids::{Space, new_key_hex};
use crate::error::{Error, Result};

const SCHEMA: &str = include_str!("../../schema.sql");
const MARKER: &str = "\n-- migration ";

/// The steps of `schema.sql`, in order: step `i` takes the database to
/// version `i + 1`.
fn steps() -> Vec<String> {
    // Splitting drops the marker; it is put back so each step is valid SQL
    // that still names itself.
    SCHEMA
        .split(MARKER)
        .skip(1)
        .map(|step| format!("{}{step}", MARKER.trim_start()))
        .collect()
}

/// The version this binary migrates to.
pub const SCHEMA_VERSION: u32 = {
    // Counted at compile time so a test can compare it with `steps()`.
    let bytes = SCHEMA.as_bytes();
    let marker = MARKER.as_bytes();
    let mut count = 0u32;
    let mut i = 0;
    while i + marker.len() <= bytes.len() {
        let mut j = 0;
        while j < marker.len() && bytes[i + j] == marker[j] {
            j += 1;
        }
        if j == marker.len() {
            count += 1;
        }
        i += 1;
    }
    count
};

/// Applies every step the database lacks, all of them in one transaction
/// together with the version bump, the id keys and the application id:
/// an upgrade is all or nothing, so a failing step leaves the schema and
/// `user_version` as they were. Returns the resulting version.
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    if up_to_date(conn)? {
        return Ok(SCHEMA_VERSION);
    }
    // A step that rebuilds a table other tables reference (migration 11)
    // drops the old one: with foreign keys on, that DROP would count every
    // reference to it as broken. SQLite's procedure for such changes turns
    // them off outside the transaction and runs foreign_key_check before
    // committing; the setting is restored whatever happens.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let upgraded = upgrade(conn);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    upgraded
}

fn upgrade(conn: &mut Connection) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have migrated.
    let current = schema_version(&tx)?;
    let steps = steps();
    for (index, step) in steps.iter().enumerate().skip(current as usize) {
        tx.execute_batch(step).map_err(|e| {
            Error::Setup(format!(
                "upgrading the database from schema version {current} to {SCHEMA_VERSION} \
                 failed at {} ({}); nothing was changed",
                step.lines()
                    .next()
                    .unwrap_or("a migration")
                    .trim_start_matches("-- "),
                brief(&e)
            ))
        })?;
        log::debug!("migration {} applied", index + 1);
    }
    foreign_keys_hold(&tx)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    // The secrets behind entry, order and escrow ids (store::seq_ids), each
    // made once per database.
    for space in Space::ALL {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            [space.meta_key(), &new_key_hex()?],
        )?;
    }
    tx.commit()?;
    if current < SCHEMA_VERSION {
        log::info!("database migrated from schema version {current} to {SCHEMA_VERSION}");
    }
    Ok(SCHEMA_VERSION)
}

/// Every foreign key still points at a row (the steps ran with them off).
fn foreign_keys_hold(conn: &Connection) -> Result<()> {
    let broken: Option<(String, Option<i64>, String)> = conn
        .query_row("PRAGMA foreign_key_check", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    match broken {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(Error::Setup(format!(
            "upgrading the database to schema version {SCHEMA_VERSION} would leave a row \
             (rowid {}) of {table} pointing at a missing row of {parent}; nothing was changed",
            rowid.map_or_else(|| "none".to_owned(), |id| id.to_string())
        ))),
    }
}

fn schema_version(conn: &Connection) -> Result<u32> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Error::Setup(format!(
            "database schema version {current} is newer than this souk ({SCHEMA_VERSION}); use a newer souk"
        )));
    }
    Ok(current)
}

/// Nothing to do: the last version, the application id and every id key are there.
fn up_to_date(conn: &Connection) -> Result<bool> {
    if schema_version(conn)? < SCHEMA_VERSION {
        return Ok(false);
    }
    let application_id: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    for space in Space::ALL {
        let has_key: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE key = ?1)",
            [space.meta_key()],
            |row| row.get(0),
        )?;
        if !has_key {
            return Ok(false);
        }
    }
    Ok(application_id == APPLICATION_ID)
}

/// SQLite's own message, without the SQL text a syntax error quotes whole.
fn brief(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order() {
        let steps = steps();
        assert_eq!(steps.len() as u32, SCHEMA_VERSION);
        for (index, step) in steps.iter().enumerate() {
            assert!(
                step.starts_with(&format!("-- migration {}:", index + 1)),
                "step {} is misnumbered",
                index + 1
            );
        }
    }

    /// An in-memory database at `version`, foreign keys on.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for step in &steps()[..version] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn
    }

    #[test]
    fn migration_5_keeps_older_entry_ids_and_derives_the_new_ones() {
        let mut conn = at_version(4);
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (7, 'old', 'x', 0);
             INSERT INTO entries (id, movement_id, user_id, kind, direction, currency, amount, reference, created_at)
             VALUES (123456789, 1, 7, 'deposit', 'in', 'btc', 1, 'a', 1),
                    (987654321, 2, 7, 'deposit', 'in', 'btc', 2, 'b', 2);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        super::super::seq_ids::register(&conn).unwrap();
        let new_id: i64 = conn
            .query_row(
                "INSERT INTO entries (movement_id, user_id, kind, direction, currency, amount, reference, created_at)
                 VALUES (3, 7, 'deposit', 'in', 'xmr', 5, 'c', 3) RETURNING souk_entry_id(seq)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(new_id > 3, "derived id {new_id}");
        let page = |after: Option<i64>| -> Vec<i64> {
            crate::ledger::entries_page(&conn, 7, None, after, 10)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(page(None), [new_id, 987654321, 123456789]);
        assert_eq!(page(Some(new_id)), [987654321, 123456789]);
        assert_eq!(page(Some(987654321)), [123456789]);
        assert!(crate::ledger::entries_page(&conn, 8, None, Some(new_id), 10).is_err());
        // Still append-only, stored ids still unique.
        assert!(conn.execute("DELETE FROM entries", []).is_err());
        assert!(conn.execute("UPDATE entries SET amount = 9", []).is_err());
        assert!(
            conn.execute(
                "INSERT INTO entries (id, movement_id, user_id, kind, direction, currency, amount, created_at)
                 VALUES (123456789, 4, 7, 'transfer', 'in', 'btc', 1, 4)",
                [],
            )
            .is_err()
        );
    }

    #[test]
    fn migration_11_keeps_orders_and_escrows_and_their_links_without_the_link_indexes() {
        let mut conn = at_version(10);
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at)
             VALUES (7, 'buyer', 'x', 0), (8, 'seller', 'x', 0);
             INSERT INTO listings (id, seller, title, description, currency, price, quantity, tags,
                                   state, created_at, updated_at)
             VALUES (50, 8, 'lamp', 'a lamp', 'btc', 10, 1, '[]', 'active', 0, 0);
             INSERT INTO escrows (id, buyer, seller, currency, amount, state, created_at, order_id)
             VALUES (60, 7, 8, 'btc', 10, 'released', 1, 70);
             INSERT INTO escrows (id, buyer, seller, currency, amount, state, created_at, release_at)
             VALUES (61, 7, 8, 'btc', 5, 'held', 1, 99);
             INSERT INTO orders (id, listing, buyer, seller, title, currency, unit_price, quantity,
                                 amount, fee_bps, fee, state, escrow, created_at, updated_at, ship_by)
             VALUES (70, 50, 7, 8, 'lamp', 'btc', 10, 1, 10, 0, 0, 'completed', 60, 1, 2, 3);
             INSERT INTO reviews (id, order_id, author, subject, rating, created_at)
             VALUES (80, 70, 7, 8, 5, 4);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let link: (i64, i64, i64) = conn
            .query_row(
                "SELECT o.id, e.id, e.order_id FROM orders AS o JOIN escrows AS e ON e.id = o.escrow",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(link, (70, 60, 70));
        let plain: i64 = conn
            .query_row("SELECT release_at FROM escrows WHERE id = 61", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(plain, 99);
        // Foreign keys are enforced again, and still point where they did.
        let enforced: bool = conn
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert!(enforced);
        assert!(
            conn.execute("DELETE FROM users WHERE id = 7", []).is_err(),
            "the order still references its buyer"
        );
        // The link columns, entries.escrow_id and (party, seq) of orders carry
        // no index any more; nor do the ids, but for the partial indexes of
        // the older rows.
        let indexed: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index'
                 AND (tbl_name IN ('orders', 'escrows') AND name LIKE 'sqlite_autoindex%'
                      OR name IN ('entries_escrow', 'orders_buyer_seq', 'orders_seller_seq'))",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(indexed.is_empty(), "{indexed:?}");
    }

    #[test]
    fn migration_11_keeps_older_order_and_escrow_ids_and_derives_the_new_ones() {
        let mut conn = at_version(10);
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at)
             VALUES (7, 'buyer', 'x', 0), (8, 'seller', 'x', 0);
             INSERT INTO listings (id, seller, title, description, currency, price, quantity, tags,
                                   state, created_at, updated_at)
             VALUES (50, 8, 'lamp', 'a lamp', 'btc', 10, 5, '[]', 'active', 0, 0);
             INSERT INTO escrows (id, buyer, seller, currency, amount, state, created_at, order_id)
             VALUES (6000, 7, 8, 'btc', 10, 'released', 1, 7000);
             INSERT INTO orders (id, listing, buyer, seller, title, currency, unit_price, quantity,
                                 amount, fee_bps, fee, state, escrow, created_at, updated_at, ship_by)
             VALUES (7000, 50, 7, 8, 'lamp', 'btc', 10, 1, 10, 0, 0, 'completed', 6000, 1, 2, 3);
             INSERT INTO reviews (id, order_id, author, subject, rating, created_at)
             VALUES (80, 7000, 7, 8, 5, 4);
             INSERT INTO order_messages (id, order_id, author, body, created_at)
             VALUES (90, 7000, 8, 'sent', 4);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        super::super::seq_ids::register(&conn).unwrap();
        // The older rows keep their ids, links, review, message and totals.
        let order = crate::orders::by_id(&conn, 7000).unwrap().unwrap();
        assert_eq!((order.id, order.escrow), (7000, 6000));
        let escrow = crate::escrow::by_id(&conn, 6000).unwrap().unwrap();
        assert_eq!((escrow.id, escrow.order_id), (6000, Some(7000)));
        let kept: (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT order_id FROM reviews WHERE id = 80),
                        (SELECT order_id FROM order_messages WHERE id = 90),
                        (SELECT total FROM rating_totals WHERE user_id = 8)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, (7000, 7000, 5));
        // A new order and its escrow store no id: theirs are derived.
        let next: i64 = conn
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM orders", [], |row| {
                row.get(0)
            })
            .unwrap();
        let order_id: i64 = conn
            .query_row("SELECT souk_order_id(?1)", [next], |row| row.get(0))
            .unwrap();
        let escrow_seq: i64 = conn
            .query_row(
                "INSERT INTO escrows (buyer, seller, currency, amount, state, created_at, order_id)
                 VALUES (7, 8, 'btc', 20, 'held', 5, ?1) RETURNING seq",
                [order_id],
                |row| row.get(0),
            )
            .unwrap();
        let escrow_id: i64 = conn
            .query_row("SELECT souk_escrow_id(?1)", [escrow_seq], |row| row.get(0))
            .unwrap();
        conn.execute(
            "INSERT INTO orders (seq, listing, buyer, seller, title, currency, unit_price, quantity,
                                 amount, fee_bps, fee, state, escrow, created_at, updated_at, ship_by)
             VALUES (?1, 50, 7, 8, 'lamp', 'btc', 10, 2, 20, 0, 0, 'paid', ?2, 5, 5, 9)",
            [next, escrow_id],
        )
        .unwrap();
        let order = crate::orders::by_id(&conn, order_id).unwrap().unwrap();
        assert_eq!(
            (order.seq, order.id, order.escrow),
            (next, order_id, escrow_id)
        );
        let escrow = crate::escrow::by_id(&conn, escrow_id).unwrap().unwrap();
        assert_eq!((escrow.seq, escrow.order_id), (escrow_seq, Some(order_id)));
        let stored: (Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT (SELECT id FROM orders WHERE seq = ?1), (SELECT id FROM escrows WHERE seq = ?2)",
                [next, escrow_seq],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(stored, (None, None));
        // Both kinds of id are page cursors.
        let orders = |after: Option<i64>| -> Vec<i64> {
            crate::orders::page(&conn, crate::orders::Scope::Buyer(7), None, after, 10)
                .unwrap()
                .iter()
                .map(|o| o.id)
                .collect()
        };
        assert_eq!(orders(None), [order_id, 7000]);
        assert_eq!(orders(Some(order_id)), [7000]);
        assert!(orders(Some(7000)).is_empty());
        let escrows = |after: Option<i64>| -> Vec<i64> {
            crate::escrow::page(&conn, None, None, None, after, 10)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(escrows(None), [escrow_id, 6000]);
        assert_eq!(escrows(Some(escrow_id)), [6000]);
        assert!(escrows(Some(6000)).is_empty());
        // The check finds every order and escrow matching: no problems.
        let mut problems = Vec::new();
        crate::orders::check::invariants(&conn, &mut problems).unwrap();
        assert!(
            !problems
                .iter()
                .any(|p| p.contains("does not match") || p.contains("not paid by")),
            "{problems:?}"
        );
        // The three id spaces give unrelated ids for the same seq.
        let ids: (i64, i64, i64) = conn
            .query_row(
                "SELECT souk_entry_id(1), souk_order_id(1), souk_escrow_id(1)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert!(
            ids.0 != ids.1 && ids.1 != ids.2 && ids.0 != ids.2,
            "{ids:?}"
        );
        // Stored ids stay unique.
        assert!(
            conn.execute(
                "INSERT INTO escrows (id, buyer, seller, currency, amount, state, created_at, release_at)
                 VALUES (6000, 7, 8, 'btc', 1, 'held', 6, 7)",
                [],
            )
            .is_err()
        );
    }

    #[test]
    fn a_failing_step_undoes_the_whole_upgrade() {
        let mut conn = at_version(1);
        // Steps 2 and 3 run, then 4 meets a table it wants to create.
        conn.execute_batch("CREATE TABLE escrows (note TEXT)")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("migration 4"), "{err}");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('users', 'accounts')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "steps 2 and 3 were undone");
    }

    #[test]
    fn migrating_twice_is_a_no_op_and_newer_databases_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this souk"), "{err}");
    }
}
