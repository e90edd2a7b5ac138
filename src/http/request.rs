//! A parsed request as handlers see it: method, path, query, headers, body.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use crate::limits::REQUEST_ID_BYTES_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path as sent, without the query; not percent-decoded.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    /// Header names lowercased; values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The TCP peer (a proxy, when there is one).
    pub peer: SocketAddr,
    /// The address the request counts as coming from: the peer, or the one
    /// a trusted proxy forwarded (docs/http.md). Per-address limits and logs
    /// use this, never `peer`.
    pub client: IpAddr,
    /// `X-Request-Id`: the client's, or generated; echoed on the answer.
    pub request_id: RequestId,
    /// The signed-in caller's id, once `api::auth` has found one: for the
    /// access log.
    pub user_id: OnceLock<i64>,
}

/// A request's id (docs/http.md): the client's `X-Request-Id` when it sent
/// exactly one of 1..=REQUEST_ID_BYTES_MAX visible ASCII characters, else
/// 16 random hex digits. Inline, so no request allocates for it.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; REQUEST_ID_BYTES_MAX],
    len: u8,
}

const _: () = assert!(REQUEST_ID_BYTES_MAX <= u8::MAX as usize);

impl RequestId {
    /// From the values of the request's X-Request-Id headers.
    pub fn from_values<'h>(mut values: impl Iterator<Item = &'h [u8]>) -> RequestId {
        match (values.next(), values.next()) {
            (Some(value), None) if is_sane(value) => {
                let mut bytes = [0u8; REQUEST_ID_BYTES_MAX];
                bytes[..value.len()].copy_from_slice(value);
                RequestId {
                    bytes,
                    len: value.len() as u8,
                }
            }
            _ => RequestId::generate(),
        }
    }

    /// A new id: 16 hex digits.
    pub fn generate() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = crate::ids::request_id_bits();
        let mut bytes = [0u8; REQUEST_ID_BYTES_MAX];
        for (i, byte) in bytes.iter_mut().take(16).enumerate() {
            *byte = HEX[((bits >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId { bytes, len: 16 }
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(value: &[u8]) -> bool {
    (1..=REQUEST_ID_BYTES_MAX).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

/// Why a header that was sent cannot be read as one text value. Kept apart
/// from "absent" on purpose: a caller that saw both as `None` once ignored a
/// non-UTF-8 Idempotency-Key and moved money twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// The value holds bytes that are not UTF-8 (HTTP's obs-text).
    NotUtf8,
    /// The header came more than once; which one counts would be a guess.
    Repeated,
}

impl Request {
    /// The one header of that (lowercase) name: `Ok(None)` only when it was
    /// not sent, `Err` when it was sent but is not one UTF-8 value.
    pub fn header(&self, name: &str) -> Result<Option<&str>, BadHeader> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice());
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(BadHeader::Repeated);
        }
        std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| BadHeader::NotUtf8)
    }

    /// Every header of that (lowercase) name.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The value of one `?name=value` query parameter, still percent-encoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}
