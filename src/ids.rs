//! Random identifiers and secrets from the operating system's CSPRNG.

use crate::error::{Error, Result};

/// A random id in 1..=i64::MAX: not sequential, reveals nothing (docs/api.md).
pub fn random_id() -> Result<i64> {
    loop {
        let raw =
            getrandom::u64().map_err(|e| Error::internal(format!("os random source: {e}")))?;
        let id = (raw >> 1) as i64;
        if id != 0 {
            return Ok(id);
        }
    }
}

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("os random source: {e}")))?;
    Ok(bytes)
}

/// Parses an id as clients send it: decimal digits, 1..=i64::MAX.
pub fn parse_id(field: &str, text: &str) -> Result<i64> {
    let valid = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            Error::invalid_field(field, format!("`{}` is not an id", truncate(text, 40)))
        })
}

/// At most `chars` characters of `text`, for echoing input in messages.
pub fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
