//! Request bodies into typed structs: `application/json` only (415), UTF-8,
//! unknown fields and duplicate keys rejected (types derive `Deserialize`
//! with `deny_unknown_fields`; serde's derive refuses a repeated field).

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::http::Request;

/// Decodes the body of `request` as a `T`.
pub fn body<T: DeserializeOwned>(request: &Request) -> Result<T> {
    // Absent, unreadable (not UTF-8) and repeated all fail the same way:
    // none of them says "this is JSON".
    let content_type = request
        .header("content-type")
        .map_err(|_| Error::UnsupportedMediaType)?
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(Error::UnsupportedMediaType);
    }
    if request.body.is_empty() {
        return Err(Error::InvalidJson("a JSON body is required".into()));
    }
    // serde's derived structs also accept a JSON array of the fields in
    // order; every body of this API is an object, so anything else is refused.
    if request.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidJson("the body must be a JSON object".into()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&request.body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." && !inner.to_string().starts_with("unknown field") {
            Error::invalid_field(&path, strip_position(&inner.to_string()))
        } else {
            Error::InvalidJson(strip_position(&inner.to_string()))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Error::InvalidJson(strip_position(&e.to_string())))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 7"; positions in a one-line body
/// help little and clutter the message, so they are cut.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
