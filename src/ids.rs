//! Random identifiers and secrets from the operating system's CSPRNG.

use crate::error::{Error, Result};

/// A random id in 1..=i64::MAX: not sequential, reveals nothing (docs/api.md).
pub fn random_id() -> Result<i64> {
    loop {
        let raw = getrandom::u64().map_err(|e| Error::internal_from("os random source", e))?;
        let id = (raw >> 1) as i64;
        if id != 0 {
            return Ok(id);
        }
    }
}

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal_from("os random source", e))?;
    Ok(bytes)
}

/// 64 random bits for a request id (`http::RequestId`): not a secret, so
/// from a per-thread generator (SplitMix64) seeded once from the OS, not a
/// system call per request.
pub fn request_id_bits() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    fn seed() -> u64 {
        let fallback = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        random_bytes::<8>().map_or(fallback, u64::from_ne_bytes)
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
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
