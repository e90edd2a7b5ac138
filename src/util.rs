//! Small helpers that several modules share and no one module owns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// For an enum stored as its `as_str` text (a type with `as_str(self) ->
/// &'static str` and `ALL`, every value): `named`, the value a text names,
/// `parse`, the same for a client's text, and `ToSql`/`FromSql`. Reading a text that names none of them fails the
/// read (the schema's CHECK constraints keep stored values to the names).
macro_rules! stored_as_text {
    ($type:ty, $what:literal) => {
        impl $type {
            /// The value whose `as_str` is `text`.
            pub fn named(text: &str) -> Option<$type> {
                <$type>::ALL.into_iter().find(|v| v.as_str() == text)
            }

            /// As a client sends it (a `state` filter, a PATCH): 400 naming
            /// `field` and every name when `text` is none of them.
            pub fn parse(field: &str, text: &str) -> crate::error::Result<$type> {
                <$type>::named(text).ok_or_else(|| {
                    let names = <$type>::ALL.map(<$type>::as_str);
                    crate::error::Error::invalid_field(
                        field,
                        format!("{field} must be {}", crate::util::one_of(&names)),
                    )
                })
            }
        }

        impl rusqlite::types::ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $type {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<$type> {
                let text = value.as_str()?;
                <$type>::named(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!(concat!($what, " `{}`"), text).into(),
                    )
                })
            }
        }
    };
}

pub(crate) use stored_as_text;

/// `a, b or c`: names as a message lists the choices.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first @ .., last] => format!("{} or {last}", first.join(", ")),
    }
}

/// `Mutex::lock` that takes the data even if a thread panicked while
/// holding it. Every mutex of the process guards data that each holder
/// leaves valid between its steps (maps, counters, byte buffers), and a
/// request that panicked must not make every later request that needs the
/// same lock panic too.
pub trait LockUnpoisoned<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands memory that is free inside the allocator back to the system
/// (glibc's `malloc_trim`: free pages in every arena, not only at the top).
/// For after a one-off burst at start (the cache warm), not for request
/// paths: it walks every arena under its lock.
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases pages the allocator holds free; it
    // takes each arena's lock itself and touches no memory still in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A directory for one test, unique in the process and removed on drop (the
/// unit tests' and the API tests' alike; no extra crate). Test code only:
/// `new` panics when the directory cannot be made.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    #[allow(clippy::new_without_default)]
    pub fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "souk-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::escrow::EscrowState;
    use crate::ledger::{Direction, Kind};

    #[test]
    fn a_client_text_that_names_no_state_is_refused_naming_every_state() {
        use crate::listings::ListingState;
        use crate::orders::OrderState;
        assert_eq!(
            EscrowState::parse("state", "held").ok(),
            Some(EscrowState::Held)
        );
        let message = |e: crate::error::Error| e.to_string();
        let refused = message(EscrowState::parse("state", "gone").unwrap_err());
        assert!(
            refused.contains("state must be held, released, refunded, disputed or resolved"),
            "{refused}"
        );
        let refused = message(OrderState::parse("state", "gone").unwrap_err());
        assert!(
            refused.contains(
                "state must be paid, shipped, completed, cancelled, disputed or resolved"
            ),
            "{refused}"
        );
        let refused = message(ListingState::parse("state", "gone").unwrap_err());
        assert!(
            refused.contains("state must be active, paused or closed"),
            "{refused}"
        );
        assert_eq!(super::one_of(&["a"]), "a");
    }

    #[test]
    fn an_enum_stored_as_text_reads_back_as_itself_and_refuses_unknown_text() {
        let conn = Connection::open_in_memory().unwrap();
        let echo = |state: EscrowState| -> (String, EscrowState) {
            conn.query_row("SELECT ?1, ?1", [state], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap()
        };
        for state in EscrowState::ALL {
            assert_eq!(echo(state), (state.as_str().to_owned(), state));
        }
        for kind in Kind::ALL {
            let back: Kind = conn
                .query_row("SELECT ?1", [kind], |row| row.get(0))
                .unwrap();
            assert_eq!(back, kind);
        }
        let unknown = conn.query_row("SELECT 'sideways'", [], |row| row.get::<_, Direction>(0));
        let message = unknown.unwrap_err().to_string();
        assert!(message.contains("entry direction `sideways`"), "{message}");
    }
}
