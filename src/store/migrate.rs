//! Forward-only migrations from the top-level `schema.sql`, versioned with
//! `PRAGMA user_version`. A database newer than this binary is refused.

use rusqlite::{Connection, TransactionBehavior};

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

/// Applies every step the database lacks, each in its own transaction
/// together with its version bump. Returns the resulting version.
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Error::internal(format!(
            "database schema version {current} is newer than this souk ({SCHEMA_VERSION}); use a newer souk"
        )));
    }
    for (index, step) in steps().iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("database migrated to version {version}");
    }
    Ok(SCHEMA_VERSION)
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
