//! One client connection: its socket, its receive buffer, request framing
//! (SPEC §7) and response writing. A `Conn` is owned by exactly one place at a
//! time: the poller's parked set, a worker, or a pending `Responder`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::request::{Method, Request};
use super::response::Response;
use super::server::Shared;
use crate::limits::{
    IDLE_BUFFER_BYTES_MAX, READ_CHUNK_BYTES, REQUEST_HEAD_BYTES_MAX, REQUEST_HEADERS_MAX,
    REQUEST_TARGET_BYTES_MAX,
};

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) key: usize,
    pub(crate) peer: SocketAddr,
    /// Registered with the poller at least once (so it must be deleted there).
    pub(crate) registered: bool,
    /// The poller saw data: one `read` will not block.
    pub(crate) readable: bool,
    buf: Vec<u8>,
    /// Bytes of `buf` before this offset are consumed.
    start: usize,
    /// When the first byte of the request being received arrived.
    request_started: Option<Instant>,
    /// When the connection was accepted or last answered.
    last_activity: Instant,
    served: u64,
    continue_sent: bool,
    shared: Arc<Shared>,
}

/// What framing the current request has, once its head is in.
pub(crate) struct Framing {
    pub keep_alive: bool,
    pub http10: bool,
    pub head_only: bool,
}

pub(crate) enum Step {
    Request(Request, Framing),
    /// Not a whole request yet and nothing to read now: park until readable.
    NeedMore,
    /// The request is refused at the HTTP level; answer and close.
    Reject(Response),
    /// The peer closed or the socket failed.
    Closed,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        key: usize,
        peer: SocketAddr,
        shared: Arc<Shared>,
    ) -> Conn {
        shared.open_connections.fetch_add(1, Ordering::SeqCst);
        Conn {
            stream,
            key,
            peer,
            registered: false,
            readable: false,
            buf: Vec::new(),
            start: 0,
            request_started: None,
            last_activity: Instant::now(),
            served: 0,
            continue_sent: false,
            shared,
        }
    }

    /// When this connection is cut off if nothing more arrives: the read
    /// timeout while a request is partly in (or none has come yet), the idle
    /// timeout between requests.
    pub(crate) fn deadline(&self) -> Instant {
        let limits = &self.shared.limits;
        match self.request_started {
            Some(started) => started + limits.read_timeout,
            None if self.served == 0 => self.last_activity + limits.read_timeout,
            None => self.last_activity + limits.idle_timeout,
        }
    }

    /// Parses the next request from the buffer, reading once if the poller
    /// said the socket is readable.
    pub(crate) fn next_request(&mut self) -> Step {
        loop {
            match self.try_parse() {
                Ok(Some(step)) => return step,
                Ok(None) => {}
                Err(response) => return Step::Reject(response),
            }
            if !self.readable {
                return Step::NeedMore;
            }
            self.readable = false;
            match self.read_once() {
                Ok(0) => return Step::Closed,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Step::NeedMore;
                }
                Err(_) => return Step::Closed,
            }
        }
    }

    fn read_once(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old_len = self.buf.len();
        self.buf.resize(old_len + READ_CHUNK_BYTES, 0);
        let result = self.stream.read(&mut self.buf[old_len..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old_len + n);
        if n > 0 && self.request_started.is_none() {
            self.request_started = Some(Instant::now());
        }
        result
    }

    /// `Ok(None)`: more bytes are needed. `Err`: refuse the request.
    fn try_parse(&mut self) -> Result<Option<Step>, Response> {
        let pending = &self.buf[self.start..];
        if pending.is_empty() {
            return Ok(None);
        }
        let mut header_slots = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
        let mut parsed = httparse::Request::new(&mut header_slots);
        let head_len = match parsed.parse(pending) {
            Ok(httparse::Status::Complete(n)) if n > REQUEST_HEAD_BYTES_MAX => {
                return Err(head_too_large());
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                let line_end = pending.iter().position(|&b| b == b'\n');
                if line_end.is_none_or(|end| end > REQUEST_TARGET_BYTES_MAX + 32)
                    && pending.len() > REQUEST_TARGET_BYTES_MAX + 32
                {
                    return Err(target_too_long());
                }
                if pending.len() > REQUEST_HEAD_BYTES_MAX {
                    return Err(head_too_large());
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(head_too_large()),
            Err(_) => {
                return Err(Response::error(
                    400,
                    "bad_request",
                    "malformed request head",
                ));
            }
        };
        let target = parsed.path.unwrap_or("/");
        if target.len() > REQUEST_TARGET_BYTES_MAX {
            return Err(target_too_long());
        }
        let target = origin_form(target);
        let head = Head::from_parsed(&parsed, self.shared.limits.max_body_bytes)?;
        let body_len = head.content_length as usize;
        let available = pending.len() - head_len;
        if available < body_len {
            // HTTP/1.0 clients know no 100 Continue (RFC 9110 §10.1.1).
            if head.expect_continue && !head.http10 && !self.continue_sent {
                self.continue_sent = true;
                // Best effort: a client that stops reading is cut off by the
                // write timeout on the next real response.
                let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            return Ok(None);
        }
        let body = pending[head_len..head_len + body_len].to_vec();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let headers = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let framing = Framing {
            keep_alive: head.keep_alive && !self.shared.shutting_down.load(Ordering::Relaxed),
            http10: head.http10,
            head_only: head.method == Method::Head,
        };
        let request = Request {
            method: head.method,
            path,
            query,
            headers,
            body,
            peer: self.peer,
        };
        self.start += head_len + body_len;
        self.continue_sent = false;
        self.request_started = (self.start < self.buf.len()).then(Instant::now);
        Ok(Some(Step::Request(request, framing)))
    }

    /// Writes one response; `false` when the connection must now close.
    pub(crate) fn respond(&mut self, response: &Response, framing: &Framing) -> bool {
        let mut out = Vec::with_capacity(response.body.len() + 160);
        // A shutdown that began while this request ran closes the connection
        // after it: say so.
        let close = !framing.keep_alive || self.shared.shutting_down.load(Ordering::SeqCst);
        response.write_to(&mut out, framing.head_only, close, framing.http10 && !close);
        let written = self.stream.write_all(&out).is_ok();
        self.served += 1;
        self.last_activity = Instant::now();
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > IDLE_BUFFER_BYTES_MAX {
                self.buf.shrink_to(IDLE_BUFFER_BYTES_MAX);
            }
        }
        written && !close
    }

    /// Answers a refused request and leaves the connection to be closed.
    pub(crate) fn reject(&mut self, response: &Response) {
        let framing = Framing {
            keep_alive: false,
            http10: false,
            head_only: false,
        };
        self.respond(response, &framing);
    }

    pub(crate) fn has_buffered_bytes(&self) -> bool {
        self.start < self.buf.len()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.registered {
            let _ = self.shared.poller.delete(&self.stream);
        }
        self.shared.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Head {
    method: Method,
    content_length: u64,
    keep_alive: bool,
    http10: bool,
    expect_continue: bool,
}

impl Head {
    /// Applies the framing rules of SPEC §7 to a parsed head.
    fn from_parsed(
        parsed: &httparse::Request<'_, '_>,
        max_body_bytes: u64,
    ) -> Result<Head, Response> {
        let http10 = parsed.version == Some(0);
        let mut content_length: Option<u64> = None;
        let mut connection_close = false;
        let mut connection_keep_alive = false;
        let mut expect_continue = false;
        for header in parsed.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Response::error(
                    411,
                    "length_required",
                    "Transfer-Encoding is not accepted; send Content-Length",
                ));
            } else if name.eq_ignore_ascii_case("content-length") {
                if content_length.is_some() {
                    return Err(Response::error(
                        400,
                        "bad_request",
                        "repeated Content-Length",
                    ));
                }
                content_length = Some(parse_content_length(header.value, max_body_bytes)?);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    connection_close |= token.eq_ignore_ascii_case(b"close");
                    connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = header
                    .value
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"100-continue");
            }
        }
        let keep_alive = if http10 {
            connection_keep_alive && !connection_close
        } else {
            !connection_close
        };
        Ok(Head {
            method: Method::parse(parsed.method.unwrap_or("")),
            content_length: content_length.unwrap_or(0),
            keep_alive,
            http10,
            expect_continue,
        })
    }
}

/// One Content-Length of plain digits, at most `max_body_bytes`.
fn parse_content_length(value: &[u8], max_body_bytes: u64) -> Result<u64, Response> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Response::error(
            400,
            "bad_request",
            "Content-Length must be plain digits",
        ));
    }
    let too_large = || {
        Response::error(
            413,
            "payload_too_large",
            &format!("request body is larger than {max_body_bytes} bytes"),
        )
    };
    // Digits only, so the only parse failure left is overflow: surely too large.
    let length: u64 = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(too_large)?;
    if length > max_body_bytes {
        return Err(too_large());
    }
    Ok(length)
}

/// The path-and-query of a request target: the absolute form
/// (`http://host/path?q`, RFC 9112 §3.2.2) is reduced to its origin form.
fn origin_form(target: &str) -> &str {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    match rest {
        Some(rest) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    }
}

fn head_too_large() -> Response {
    Response::error(
        431,
        "headers_too_large",
        &format!(
            "request head is larger than {REQUEST_HEAD_BYTES_MAX} bytes or has more than {REQUEST_HEADERS_MAX} headers"
        ),
    )
}

fn target_too_long() -> Response {
    Response::error(
        414,
        "uri_too_long",
        &format!("request target is longer than {REQUEST_TARGET_BYTES_MAX} bytes"),
    )
}
