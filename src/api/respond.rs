//! Rendering: JSON bodies, and the one mapping from `Error` to an HTTP status
//! and the error shape of docs/api.md.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{Error, STORE_RETRY_AFTER_S};
use crate::http::Response;

/// `{"<name>": value}`, serialized straight from `value` (`json!` would
/// build a JSON value tree of it first).
pub fn wrapped<T: Serialize>(status: u16, name: &'static str, value: &T) -> Response {
    struct One<'a, T> {
        name: &'static str,
        value: &'a T,
    }
    impl<T: Serialize> Serialize for One<'_, T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(self.name, self.value)?;
            map.end()
        }
    }
    json(status, &One { name, value })
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::json_bytes(status, bytes),
        Err(e) => error(Error::internal_from("serializing a response", e)),
    }
}

/// A page served from the binary, with the headers every HTML answer
/// carries: a Content-Security-Policy that allows only the page's own inline
/// scripts (by hash) and same-origin requests, no framing, no sniffing.
pub struct HtmlPage {
    body: &'static str,
    csp: String,
}

impl HtmlPage {
    /// The policy allows scripts and styles from this origin only (the
    /// console's `/admin/console.js` and `.css`), plus any inline
    /// `<script>` of `body`, each by its hash, computed here once.
    pub fn new(body: &'static str) -> HtmlPage {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let mut script_sources = String::new();
        let mut rest = body;
        while let Some(open) = rest.find("<script>") {
            let after = &rest[open + "<script>".len()..];
            let Some(close) = after.find("</script>") else {
                break;
            };
            let digest = Sha256::digest(&after.as_bytes()[..close]);
            let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
            script_sources.push_str(&format!(" 'sha256-{encoded}'"));
            rest = &after[close..];
        }
        let csp = format!(
            "default-src 'none'; script-src 'self'{script_sources}; style-src 'self'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        );
        HtmlPage { body, csp }
    }

    pub fn response(&self) -> Response {
        let mut response = Response::new(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_header("content-security-policy", self.csp.clone())
            .with_header("x-frame-options", "DENY")
            .with_header("x-content-type-options", "nosniff");
        response.body = self.body.as_bytes().to_vec();
        response
    }
}

/// The only place an error becomes a status code.
pub fn error(e: Error) -> Response {
    let (e, index) = match e {
        Error::AtIndex { index, error } => (*error, Some(index)),
        other => (other, None),
    };
    let (status, code) = status_and_code(&e);
    let message = match &e {
        Error::Internal { .. } | Error::Setup(_) => {
            // Logged here only, once; an internal error's text holds its
            // whole cause chain.
            let line = e.to_string();
            let causes = line.strip_prefix("internal: ").unwrap_or(&line);
            log::error!("internal error: {causes}");
            "internal error".to_owned()
        }
        Error::InvalidField { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let mut body = Map::new();
    body.insert("code".into(), json!(code));
    body.insert("message".into(), json!(message));
    if let Some(field) = field_of(&e) {
        body.insert("field".into(), json!(field));
    }
    if let Some(index) = index {
        body.insert("index".into(), json!(index));
    }
    let response = Response::json(status, &json!({ "error": Value::Object(body) }));
    match e {
        Error::LockedOut { retry_after_s }
        | Error::RateLimited { retry_after_s }
        | Error::Unavailable { retry_after_s, .. } => {
            response.with_header("retry-after", retry_after_s.to_string())
        }
        Error::Store { .. } => response.with_header("retry-after", STORE_RETRY_AFTER_S.to_string()),
        _ => response,
    }
}

/// The one input field an error is about, when there is one.
fn field_of(e: &Error) -> Option<&str> {
    match e {
        Error::InvalidField { field, .. } => Some(field),
        Error::WrongPassword { field } => Some(field),
        Error::UnknownCursor => Some("after"),
        _ => None,
    }
}

fn status_and_code(e: &Error) -> (u16, &'static str) {
    match e {
        Error::InvalidJson(_) => (400, "invalid_json"),
        Error::InvalidField { .. } => (400, "invalid_field"),
        Error::UnsupportedMediaType => (415, "unsupported_media_type"),
        Error::Unauthenticated => (401, "unauthenticated"),
        Error::InvalidCredentials => (401, "invalid_credentials"),
        Error::Forbidden | Error::WrongPassword { .. } => (403, "forbidden"),
        Error::NotFound | Error::UnknownCursor => (404, "not_found"),
        Error::Conflict { code, .. } => (409, code),
        Error::IdempotencyMismatch => (422, "idempotency_mismatch"),
        Error::LockedOut { .. } => (429, "locked_out"),
        Error::RateLimited { .. } => (429, "rate_limited"),
        Error::Unavailable { .. } | Error::Store { .. } => (503, "unavailable"),
        Error::Internal { .. } | Error::Setup(_) => (500, "internal"),
        Error::AtIndex { error, .. } => status_and_code(error),
    }
}
