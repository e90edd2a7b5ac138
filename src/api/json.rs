//! Request bodies into typed structs: `application/json` only (415), UTF-8,
//! unknown fields and duplicate keys rejected with 400 `invalid_field`
//! naming them (types derive `Deserialize` with `deny_unknown_fields`;
//! serde's derive refuses a repeated field).
//! Batch items are decoded one by one (`items`), so that every error an
//! item causes names its index.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::http::Request;

/// The items of a batch as they came: each is checked to be JSON by the
/// body's decoding, and decoded into its type by `items`.
pub type RawItems = Vec<Box<RawValue>>;

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
    decode_object(&request.body, "the body")
}

/// Decodes every item of a batch as a `T`; an item's error carries its
/// index, its `field` named within the item (`amount`, not
/// `transfers[1].amount`).
pub fn items<T: DeserializeOwned>(raw: &[Box<RawValue>]) -> Result<Vec<T>> {
    raw.iter()
        .enumerate()
        .map(|(index, item)| {
            decode_object(item.get().as_bytes(), "each item").map_err(|e| e.at_index(index))
        })
        .collect()
}

/// One JSON object (`what` names it in the error) as a `T`.
fn decode_object<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    // serde's derived structs also accept a JSON array of the fields in
    // order; every body and item of this API is an object, so anything else
    // is refused.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidJson(format!("{what} must be a JSON object")));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde names an unknown or repeated field only in its message; the
        // path is then that field's, so it goes into `field` like any other
        // field at fault. Errors at the top (`.`) or in the JSON syntax are
        // the body's.
        if inner.is_data() && path != "." {
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
