//! CORS for browser front ends on other origins (docs/http.md, "CORS"):
//! only origins listed in SOUK_CORS_ORIGINS, compared exactly, get CORS
//! headers; the allowed origin is echoed, never `*`. A preflight (`OPTIONS`
//! with `Origin` and `Access-Control-Request-Method`) from an allowed origin
//! is answered 204 with the methods and headers the API uses. The API
//! authenticates with a bearer token, not cookies, so credentials mode is
//! never allowed.

use crate::http::{Headers, Method, Request, Response};
use crate::limits::{CORS_ORIGINS_MAX, CORS_PREFLIGHT_MAX_AGE_S};

/// Methods some API route takes (HEAD with every GET).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE";
/// Request headers the API reads.
pub const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, X-Request-Id";
/// Response headers a front end may read besides the CORS-safelisted ones.
pub const EXPOSED_HEADERS: &str = "Retry-After, Idempotent-Replayed, X-Request-Id";

/// The origins allowed to call the API from a browser (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

impl CorsOrigins {
    /// Parses `https://app.example.com, http://localhost:3000`: each entry a
    /// scheme (http or https), a host and an optional port, nothing more,
    /// as browsers send it in `Origin`.
    pub fn parse(text: &str) -> Result<CorsOrigins, String> {
        let mut origins: Vec<String> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let origin = item.to_ascii_lowercase();
            if !is_origin(&origin) {
                return Err(format!(
                    "`{item}` is not an origin: write scheme://host[:port] \
                     (e.g. https://app.example.com), without a path or `*`"
                ));
            }
            if let Some(without) = without_default_port(&origin) {
                return Err(format!(
                    "`{item}` names its scheme's default port, which browsers leave out \
                     of Origin, so it would never match: write {without}"
                ));
            }
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        if origins.len() > CORS_ORIGINS_MAX {
            return Err(format!("at most {CORS_ORIGINS_MAX} origins"));
        }
        Ok(CorsOrigins(origins))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The request's `Origin` (from its headers, names lowercased) when it
    /// is one of ours; a repeated or non-UTF-8 `Origin` is none of ours.
    pub fn allowed<'r>(&self, headers: &'r Headers) -> Option<&'r str> {
        if self.0.is_empty() {
            return None;
        }
        let mut values = headers.named("origin");
        let origin = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let origin = std::str::from_utf8(origin).ok()?;
        self.0.iter().any(|o| o == origin).then_some(origin)
    }
}

/// `http(s)://host[:port]`: a host of letters, digits, `-` and `.`, or an
/// IPv6 literal in brackets; a port of digits.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" || rest.is_empty() {
        return false;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((inner, after)) => {
                if inner.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => (None, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (None, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(rest), None),
        },
    };
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    });
    let port_ok =
        port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok());
    host_ok && port_ok
}

/// The origin without its port when that port is the scheme's default (443
/// for https, 80 for http), which a browser's `Origin` never carries.
fn without_default_port(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let host_end = match rest.rfind(']') {
        Some(bracket) => bracket + 1,
        None => rest.find(':')?,
    };
    let port: u16 = rest[host_end..].strip_prefix(':')?.parse().ok()?;
    let default = if scheme == "https" { 443 } else { 80 };
    (port == default).then(|| format!("{scheme}://{}", &rest[..host_end]))
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub fn is_preflight(request: &Request) -> bool {
    request.method == Method::Options
        && request
            .headers
            .named("access-control-request-method")
            .next()
            .is_some()
}

/// The answer to a preflight from the allowed `origin`.
pub fn preflight(origin: &str) -> Response {
    Response::new(204)
        .with_header("access-control-allow-origin", origin.to_owned())
        .with_header("access-control-allow-methods", ALLOWED_METHODS)
        .with_header("access-control-allow-headers", ALLOWED_HEADERS)
        .with_header(
            "access-control-max-age",
            CORS_PREFLIGHT_MAX_AGE_S.to_string(),
        )
        .with_header(
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
}

/// Adds the headers of an actual (not preflight) request's answer: the
/// origin when allowed, and `Vary: Origin` either way (the answer depends
/// on it whenever CORS is configured).
pub fn decorate(response: Response, origin: Option<&str>) -> Response {
    let response = response.with_header("vary", "Origin");
    match origin {
        Some(origin) => response
            .with_header("access-control-allow-origin", origin.to_owned())
            .with_header("access-control-expose-headers", EXPOSED_HEADERS),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_exactly() {
        let origins =
            CorsOrigins::parse("https://App.example.com, http://localhost:3000,http://[::1]:8080")
                .unwrap();
        assert_eq!(
            origins.0,
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]
        );
        assert!(CorsOrigins::parse("").unwrap().is_empty());
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://",
            "https://host:",
            "https://host:port",
            "https://user@host",
            "http://[::1",
            "http://[zz]",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn default_ports_are_refused_with_a_hint() {
        // Browsers leave a scheme's default port out of `Origin`, so such an
        // entry would never match.
        for (bad, hint) in [
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://[::1]:80", "http://[::1]"),
            ("https://App.example.com:0443", "https://app.example.com"),
        ] {
            let error = CorsOrigins::parse(bad).expect_err(bad);
            assert!(error.contains("default port"), "{bad}: {error}");
            assert!(error.ends_with(&format!("write {hint}")), "{bad}: {error}");
        }
        // Other ports, and the other scheme's default, are ports like any.
        let origins =
            CorsOrigins::parse("https://app.example.com:80, http://localhost:443").unwrap();
        assert_eq!(origins.0.len(), 2);
    }
}
