//! Ids of ledger entries, orders and escrows: a keyed permutation of the
//! row's insertion number (`seq`).
//!
//! Ids must not be sequential and must reveal nothing (docs/api.md). Random ids
//! need a unique index, and inserting random keys into it dirties a random
//! page per row: at group-commit rates the entries' index alone cost about a
//! third of the writer's time (benches/app.rs, storage ceiling), and the
//! orders' and escrows' two more random pages per order. Instead a row's id
//! is `seq` enciphered under a secret key kept in the database's `meta`
//! table, one key per id space (`Space`): distinct rows get distinct ids,
//! ids look random to anyone without the key, and an id leads back to its
//! row through the primary key, with no index to maintain. Each space has its
//! own key, so an entry, an order and an escrow with the same `seq` show
//! unrelated ids.
//!
//! The cipher is Blowfish (RustCrypto), a 64-bit block cipher; ids live in
//! 1..=i64::MAX, so encryption walks the cipher's cycle until it lands there
//! again ("cycle walking", Black & Rogaway 2002), which keeps it a
//! permutation of that range. Two steps are expected, each ~100 ns.

use blowfish::Blowfish;
use blowfish::cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension};

/// Bytes of the secret key.
pub const KEY_BYTES: usize = 16;

/// A kind of row whose ids are derived from its `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Ledger entries (migration 5).
    Entry,
    /// Orders (migration 11).
    Order,
    /// Escrows (migration 11).
    Escrow,
}

impl Space {
    pub const ALL: [Space; 3] = [Space::Entry, Space::Order, Space::Escrow];

    /// Where its key is stored, hex-encoded, in the `meta` table.
    pub fn meta_key(self) -> &'static str {
        match self {
            Space::Entry => "entry_id_key",
            Space::Order => "order_id_key",
            Space::Escrow => "escrow_id_key",
        }
    }

    /// The table whose rows it numbers.
    fn table(self) -> &'static str {
        match self {
            Space::Entry => "entries",
            Space::Order => "orders",
            Space::Escrow => "escrows",
        }
    }

    /// A statement selecting `columns` of the row shown as `id` (an SQL
    /// expression, usually a parameter) that also meets `also` (a
    /// condition, `1` for none): the derived reading first (`id` enciphers
    /// the seq of a row that stores no id), then a row from before the
    /// derived ids, which stores its own. Each arm reads the primary key or
    /// the stored ids' partial index, never a scan.
    pub fn row_shown_as(self, columns: &str, id: &str, also: &str) -> String {
        let (table, (_, seq_of)) = (self.table(), self.functions());
        format!(
            "SELECT {columns} FROM {table} WHERE seq = {seq_of}({id}) AND id IS NULL AND {also}
             UNION ALL
             SELECT {columns} FROM {table} WHERE id = {id} AND {also}
             LIMIT 1"
        )
    }

    /// An SQL expression: the seq of the row shown as `id` (an SQL
    /// expression), NULL when there is none, looked up as `row_shown_as`
    /// does: for joins by shown id (`souk check`).
    pub fn seq_shown_as(self, id: &str) -> String {
        let (table, (_, seq_of)) = (self.table(), self.functions());
        format!(
            "coalesce((SELECT x.seq FROM {table} AS x WHERE x.seq = {seq_of}({id}) AND x.id IS NULL),
                      (SELECT x.seq FROM {table} AS x WHERE x.id = {id}))"
        )
    }

    /// The SQL functions seq → id and id → seq.
    fn functions(self) -> (&'static str, &'static str) {
        match self {
            Space::Entry => ("souk_entry_id", "souk_entry_seq"),
            Space::Order => ("souk_order_id", "souk_order_seq"),
            Space::Escrow => ("souk_escrow_id", "souk_escrow_seq"),
        }
    }
}

/// Enciphers sequence numbers into ids and back (one space, one key).
#[derive(Clone)]
pub struct SeqIds {
    cipher: Blowfish,
}

impl std::fmt::Debug for SeqIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeqIds(…)")
    }
}

/// The range ids and sequence numbers live in: 1..=i64::MAX.
fn in_range(value: u64) -> bool {
    value != 0 && value <= i64::MAX as u64
}

impl SeqIds {
    pub fn new(key: &[u8; KEY_BYTES]) -> SeqIds {
        // Blowfish takes keys of 4 to 56 bytes; 16 always fits.
        let cipher = Blowfish::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        SeqIds { cipher }
    }

    /// The key from its hex form in `meta`; `None` when it is malformed.
    pub fn from_hex(hex: &str) -> Option<SeqIds> {
        let mut key = [0u8; KEY_BYTES];
        if hex.len() != KEY_BYTES * 2 || !hex.is_ascii() {
            return None;
        }
        for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(SeqIds::new(&key))
    }

    /// The id of the row with this `seq`; `None` outside 1..=i64::MAX.
    pub fn id_of(&self, seq: i64) -> Option<i64> {
        self.walk(seq, |cipher, block| cipher.encrypt_block(block))
    }

    /// The `seq` an id stands for; `None` outside 1..=i64::MAX. Every id in
    /// range maps to some `seq`: whether that row exists (and is the
    /// caller's) is for the database to say.
    pub fn seq_of(&self, id: i64) -> Option<i64> {
        self.walk(id, |cipher, block| cipher.decrypt_block(block))
    }

    fn walk(&self, start: i64, step: impl Fn(&Blowfish, &mut Block<Blowfish>)) -> Option<i64> {
        let start = u64::try_from(start).ok().filter(|v| in_range(*v))?;
        let mut value = start;
        // The cycle through `start` comes back to the range at the latest at
        // `start` itself, so this ends; in practice after ~2 steps.
        loop {
            let mut block = Block::<Blowfish>::from(value.to_be_bytes());
            step(&self.cipher, &mut block);
            value = u64::from_be_bytes(block.into());
            if in_range(value) {
                return i64::try_from(value).ok();
            }
        }
    }
}

/// A fresh random key, hex-encoded for `meta`.
pub fn new_key_hex() -> crate::error::Result<String> {
    let key = crate::ids::random_bytes::<KEY_BYTES>()?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SQL functions of every space: `souk_entry_id(seq)` and
/// `souk_entry_seq(id)` (the ledger's entries), `souk_order_id` /
/// `souk_order_seq` and `souk_escrow_id` / `souk_escrow_seq`, each keyed
/// with this database's secret for its space. A space whose key the
/// database lacks (not migrated) gets no functions: a query that needs them
/// fails, nothing else does.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    // A database older than migration 1 has no meta table: no key either.
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(());
    }
    for space in Space::ALL {
        register_space(conn, space)?;
    }
    Ok(())
}

fn register_space(conn: &Connection, space: Space) -> rusqlite::Result<()> {
    let meta_key = space.meta_key();
    let hex: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [meta_key], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(hex) = hex else { return Ok(()) };
    let ids = SeqIds::from_hex(&hex).ok_or_else(|| {
        rusqlite::Error::UserFunctionError(format!("meta {meta_key} is malformed").into())
    })?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let (to_id, to_seq) = space.functions();
    let forward = ids.clone();
    conn.create_scalar_function(to_id, 1, flags, move |ctx| {
        Ok(ctx
            .get::<Option<i64>>(0)?
            .and_then(|seq| forward.id_of(seq)))
    })?;
    conn.create_scalar_function(to_seq, 1, flags, move |ctx| {
        Ok(ctx.get::<Option<i64>>(0)?.and_then(|id| ids.seq_of(id)))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ids() -> SeqIds {
        SeqIds::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()
    }

    #[test]
    fn ids_round_trip_and_stay_in_range() {
        let ids = ids();
        let samples = (1..=20_000i64)
            .chain([i64::MAX, i64::MAX - 1, 1 << 62, (1 << 32) + 7])
            .collect::<Vec<_>>();
        let mut seen = HashSet::new();
        for seq in samples {
            let id = ids.id_of(seq).unwrap();
            assert!(id >= 1, "id {id} of seq {seq} is out of range");
            assert_eq!(ids.seq_of(id), Some(seq), "seq {seq} does not come back");
            assert!(seen.insert(id), "two seqs gave id {id}");
        }
    }

    #[test]
    fn ids_are_not_sequential() {
        let ids = ids();
        let consecutive = (1..1000i64)
            .filter(|seq| ids.id_of(*seq + 1).unwrap() == ids.id_of(*seq).unwrap() + 1)
            .count();
        assert_eq!(consecutive, 0);
        // Ids spread over the whole range: about half have bit 62 set.
        let high = (1..=1000i64)
            .filter(|seq| ids.id_of(*seq).unwrap() >= 1 << 62)
            .count();
        assert!((400..=600).contains(&high), "{high} of 1000 ids above 2^62");
    }

    #[test]
    fn other_keys_give_other_ids() {
        let other = SeqIds::from_hex("ffeeddccbbaa99887766554433221100").unwrap();
        let same = (1..=100i64)
            .filter(|seq| other.id_of(*seq) == ids().id_of(*seq))
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn each_space_has_its_own_key_and_functions() {
        let names: HashSet<&str> = Space::ALL.iter().map(|s| s.meta_key()).collect();
        assert_eq!(names.len(), Space::ALL.len());
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        conn.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            [Space::Order.meta_key(), "000102030405060708090a0b0c0d0e0f"],
        )
        .unwrap();
        register(&conn).unwrap();
        // Only the space with a key has its functions, and they are its key's.
        let id: i64 = conn
            .query_row("SELECT souk_order_id(5)", [], |row| row.get(0))
            .unwrap();
        assert_eq!(Some(id), ids().id_of(5));
        let back: i64 = conn
            .query_row("SELECT souk_order_seq(?1)", [id], |row| row.get(0))
            .unwrap();
        assert_eq!(back, 5);
        for missing in ["souk_entry_id(5)", "souk_escrow_seq(5)"] {
            let err = conn
                .query_row(&format!("SELECT {missing}"), [], |row| row.get::<_, i64>(0))
                .unwrap_err();
            assert!(err.to_string().contains("no such function"), "{err}");
        }
        // A malformed key is refused, naming it.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, 'zz')",
            [Space::Escrow.meta_key()],
        )
        .unwrap();
        let err = register(&conn).unwrap_err().to_string();
        assert!(err.contains("escrow_id_key"), "{err}");
    }

    #[test]
    fn out_of_range_and_malformed_input_is_refused() {
        let ids = ids();
        for bad in [0, -1, i64::MIN] {
            assert_eq!(ids.id_of(bad), None);
            assert_eq!(ids.seq_of(bad), None);
        }
        for hex in [
            "",
            "00",
            "zz0102030405060708090a0b0c0d0e0f",
            "é0102030405060708090a0b0c0d0e0",
        ] {
            assert!(SeqIds::from_hex(hex).is_none(), "{hex:?} accepted");
        }
        assert_eq!(new_key_hex().unwrap().len(), KEY_BYTES * 2);
        assert!(SeqIds::from_hex(&new_key_hex().unwrap()).is_some());
    }
}
