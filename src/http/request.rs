//! A parsed request as handlers see it: method, path, query, headers, body.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
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
    /// The request target in origin form (`/path?query`), as sent; not
    /// percent-decoded. One string for both parts (`path`, `query`).
    pub target: String,
    /// Where the path ends in `target` (at its `?`, or its end).
    pub path_end: usize,
    /// Header names lowercased; values as sent.
    pub headers: Headers,
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

/// A request's headers in one buffer: names lowercased, values as sent,
/// in the order they came. Two allocations however many headers there
/// are (a `String` and a `Vec` per header cost 4-6 per typical request).
#[derive(Debug, Default)]
pub struct Headers {
    bytes: Vec<u8>,
    /// (name end, value end) in `bytes`, each header's name starting where
    /// the previous value ended.
    ends: Vec<(u32, u32)>,
}

impl Headers {
    /// Copies parsed headers, lowercasing their names.
    pub(crate) fn from_parsed(parsed: &[httparse::Header<'_>]) -> Headers {
        let size = parsed.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut headers = Headers {
            bytes: Vec::with_capacity(size),
            ends: Vec::with_capacity(parsed.len()),
        };
        for header in parsed {
            headers.push(header.name, header.value);
        }
        headers
    }

    /// Adds a header (its name is lowercased). A head is at most
    /// REQUEST_HEAD_BYTES_MAX, far below `u32`.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.bytes
            .extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        let name_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len() as u32));
    }

    /// (lowercase name, value) of every header, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &[u8])> + '_ {
        self.spans().map(|(name, value)| {
            // Names are httparse tokens: ASCII.
            let name = std::str::from_utf8(&self.bytes[name]).unwrap_or("");
            (name, &self.bytes[value])
        })
    }

    /// Every value of the header named `name` (lowercase), in order.
    pub fn named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl DoubleEndedIterator<Item = &'a [u8]> + use<'a, 'n> {
        self.spans()
            .filter(move |(n, _)| &self.bytes[n.clone()] == name.as_bytes())
            .map(|(_, value)| &self.bytes[value])
    }

    /// The byte ranges of each header's name and value.
    fn spans(&self) -> impl DoubleEndedIterator<Item = (Range<usize>, Range<usize>)> + '_ {
        self.ends
            .iter()
            .enumerate()
            .map(|(i, &(name_end, value_end))| {
                let start = match i {
                    0 => 0,
                    _ => self.ends[i - 1].1 as usize,
                };
                let (name_end, value_end) = (name_end as usize, value_end as usize);
                (start..name_end, name_end..value_end)
            })
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl Request {
    /// The path as sent, without the query; not percent-decoded.
    pub fn path(&self) -> &str {
        &self.target[..self.path_end]
    }

    /// The raw query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_end + 1..)
    }

    /// The one header of that (lowercase) name: `Ok(None)` only when it was
    /// not sent, `Err` when it was sent but is not one UTF-8 value.
    pub fn header(&self, name: &str) -> Result<Option<&str>, BadHeader> {
        let mut values = self.headers.named(name);
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
        self.headers.named(name)
    }

    /// The value of one `?name=value` query parameter, still percent-encoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn headers_keep_their_order_and_values_and_lowercase_only_names() {
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut slots);
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nAuthorization: Bearer AbC\r\nx-forwarded-for: 2.2.2.2\r\nEmpty:\r\n\r\n";
        assert!(parsed.parse(head).unwrap().is_complete());
        let headers = Headers::from_parsed(parsed.headers);
        let all: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(
            all,
            [
                ("host", &b"a"[..]),
                ("x-forwarded-for", b"1.1.1.1"),
                ("authorization", b"Bearer AbC"),
                ("x-forwarded-for", b"2.2.2.2"),
                ("empty", b""),
            ]
        );
        let forwarded: Vec<&[u8]> = headers.named("x-forwarded-for").rev().collect();
        assert_eq!(forwarded, [&b"2.2.2.2"[..], b"1.1.1.1"]);
        assert_eq!(headers.named("empty").collect::<Vec<_>>(), [&b""[..]]);
        assert_eq!(headers.named("origin").count(), 0);
        assert!(!headers.is_empty() && Headers::default().is_empty());
    }
}
