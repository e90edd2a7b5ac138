//! The one error type of the domain. Variants are the cases callers branch on;
//! anything unexpected is `Internal` and keeps its cause for the log. Mapping
//! to HTTP status codes happens in one place only: `api::respond`.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The body is not JSON of the expected shape (400 `invalid_json`).
    InvalidJson(String),
    /// One input field is wrong (400 `invalid_field`).
    InvalidField {
        field: String,
        message: String,
    },
    /// A body that is not `application/json` (415).
    UnsupportedMediaType,
    /// No, malformed, expired or revoked credentials (401).
    Unauthenticated,
    /// Wrong username or password (401).
    InvalidCredentials,
    Forbidden,
    /// An `after` cursor that names no item of the caller's list (404
    /// `not_found`, field `after`): well formed, but nothing to page from.
    UnknownCursor,
    /// The caller is signed in but a password it gave to confirm a change
    /// is wrong (403 `forbidden`, naming the field). Not 401: the session
    /// itself is fine.
    WrongPassword {
        field: &'static str,
    },
    NotFound,
    /// A state conflict a client can act on (409): `code` is one docs/api.md lists.
    Conflict {
        code: &'static str,
        message: String,
    },
    /// Same idempotency key, different request (422).
    IdempotencyMismatch,
    /// Too many failed logins for one username (429).
    LockedOut {
        retry_after_s: u64,
    },
    /// Too many attempts from one client (429).
    RateLimited {
        retry_after_s: u64,
    },
    /// The service cannot take this now: a full queue, the writer stopped,
    /// the circuit breaker open (503).
    Unavailable {
        reason: String,
        retry_after_s: u64,
    },
    /// The store failed in a way that means "not now": a query timeout, disk
    /// full, busy, an I/O error (503 `unavailable` like `Unavailable`, retry
    /// after 1 s). The only errors the circuit breaker counts as the store's.
    Store {
        reason: &'static str,
        source: rusqlite::Error,
    },
    /// A bug or an unexpected failure: logged in full (with its cause, when
    /// there is one), opaque to the client.
    Internal {
        message: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The operator's setup stops a start (a setting, a database file held
    /// by another server); never raised by a request.
    Setup(String),
    /// The error of one item of a batch, with the item's position.
    AtIndex {
        index: usize,
        error: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `Retry-After` of a `Store` error, seconds: these faults (a busy
/// database, a query past its timeout) usually pass within a second.
pub const STORE_RETRY_AFTER_S: u64 = 1;

impl Error {
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Error {
        Error::InvalidField {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Error {
        Error::Unavailable {
            reason: reason.into(),
            retry_after_s: 1,
        }
    }

    /// This error, as the error of item `index` of a batch.
    pub fn at_index(self, index: usize) -> Error {
        Error::AtIndex {
            index,
            error: Box::new(self),
        }
    }

    pub fn internal(cause: impl fmt::Display) -> Error {
        Error::Internal {
            message: cause.to_string(),
            source: None,
        }
    }

    /// An internal error while doing `what`, caused by `source`.
    pub fn internal_from(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Internal {
            message: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// An error and its causes, `: `-separated, for a log line. A cause whose
/// text the line already holds (some errors print their source in their own
/// message, as `Internal` does) is not repeated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidJson(message) => write!(f, "invalid json: {message}"),
            Error::InvalidField { field, message } => write!(f, "{field}: {message}"),
            Error::UnsupportedMediaType => f.write_str("body must be application/json"),
            Error::Unauthenticated => f.write_str("authentication required"),
            Error::InvalidCredentials => f.write_str("invalid username or password"),
            Error::Forbidden => f.write_str("you are not allowed to do this"),
            Error::WrongPassword { field } => write!(f, "{field} is wrong"),
            Error::UnknownCursor => f.write_str("after is not a cursor from this list"),
            Error::NotFound => f.write_str("no such resource"),
            Error::Conflict { message, .. } => f.write_str(message),
            Error::IdempotencyMismatch => {
                f.write_str("idempotency key reused with a different request")
            }
            Error::LockedOut { retry_after_s } => write!(f, "locked out for {retry_after_s} s"),
            Error::RateLimited { retry_after_s } => write!(f, "rate limited for {retry_after_s} s"),
            Error::Unavailable { reason, .. } => write!(f, "unavailable: {reason}"),
            Error::Store { reason, .. } => write!(f, "unavailable: {reason}"),
            // With its causes: every log line that shows it shows them.
            Error::Internal {
                message,
                source: None,
            } => write!(f, "internal: {message}"),
            Error::Internal {
                message,
                source: Some(source),
            } => write!(f, "internal: {message}: {}", chain(source.as_ref())),
            Error::Setup(message) => f.write_str(message),
            Error::AtIndex { index, error } => write!(f, "item {index}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store { source, .. } => Some(source),
            Error::Internal {
                source: Some(source),
                ..
            } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Database failures: the ones that mean "not now" become `Store` (503),
/// the rest are bugs and become `Internal`; both keep the rusqlite error.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode;
        let reason = match e.sqlite_error_code() {
            Some(ErrorCode::OperationInterrupted) => "database query timed out",
            Some(ErrorCode::DiskFull) => "database disk is full",
            Some(ErrorCode::OperationAborted) => "database write transaction was rolled back",
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "database is busy",
            Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => "database i/o error",
            _ => return Error::internal_from("database", e),
        };
        Error::Store { reason, source: e }
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Error {
        log::warn!("no database reader free: {e}");
        Error::unavailable("no database connection free")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_shows_its_cause_once_and_keeps_it_as_its_source() {
        let cause = rusqlite::Error::InvalidColumnName("nope".into());
        let e = Error::from(cause);
        assert!(
            matches!(
                e,
                Error::Internal {
                    source: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        let shown = e.to_string();
        assert!(shown.starts_with("internal: database: "), "{shown}");
        assert_eq!(shown.matches("nope").count(), 1, "{shown}");
        assert_eq!(chain(&e), shown);
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn a_store_fault_reads_as_before_with_its_cause_as_source() {
        let full = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL);
        let e = Error::from(rusqlite::Error::SqliteFailure(full, None));
        assert_eq!(e.to_string(), "unavailable: database disk is full");
        assert!(std::error::Error::source(&e).is_some());
    }
}
