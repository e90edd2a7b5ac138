//! A parsed request as handlers see it: method, path, query, headers, body.

use std::net::{IpAddr, SocketAddr};

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
