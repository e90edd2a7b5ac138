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
    /// The service cannot take this now: full queue, timeout, disk full (503).
    Unavailable {
        reason: String,
        retry_after_s: u64,
    },
    /// A bug or an unexpected failure: logged in full, opaque to the client.
    Internal(String),
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
        Error::Internal(cause.to_string())
    }
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
            Error::Internal(cause) => write!(f, "internal: {cause}"),
            Error::Setup(message) => f.write_str(message),
            Error::AtIndex { index, error } => write!(f, "item {index}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// Database failures: the ones that mean "not now" become `Unavailable`,
/// the rest are bugs and become `Internal`.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::OperationInterrupted) => Error::unavailable("database query timed out"),
            Some(ErrorCode::DiskFull) => Error::unavailable("database disk is full"),
            Some(ErrorCode::OperationAborted) => {
                Error::unavailable("database write transaction was rolled back")
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Error::unavailable("database is busy")
            }
            Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
                Error::unavailable("database i/o error")
            }
            _ => Error::internal(format!("database: {e}")),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Error {
        log::warn!("no database reader free: {e}");
        Error::unavailable("no database connection free")
    }
}
