//! One client connection: its socket, its receive buffer, request framing
//! (docs/http.md), and its send buffer. A `Conn` is owned by exactly one place at
//! a time: its worker's parked set or inbox, that worker, or a pending
//! `Responder`.
//!
//! Sockets are non-blocking. An answer is written as far as the socket takes
//! it; the rest waits in `out` while the connection is parked until its
//! socket is writable, so no worker ever blocks on one client's socket. While an
//! answer is unsent no further request is parsed (pipelined requests wait in
//! the kernel's buffers, not ours), and a whole answer must be out within the
//! read timeout.
//!
//! The transport is plain TCP or TLS (`tls::TlsSession`, driven through
//! rustls's non-blocking calls). Plain connections read into and write from
//! our buffers directly; only TLS goes through rustls's buffers.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;

use super::request::{Headers, Method, Request, RequestId};
use super::response::Response;
use super::server::{Home, Shared};
use super::tls::TlsSession;
use crate::limits::{
    BODY_DOUBLING_FROM_BYTES, IDLE_BUFFER_BYTES_MAX, LINGER_MS, READ_CHUNK_BYTES,
    REQUEST_HEAD_BYTES_MAX, REQUEST_HEADERS_MAX, REQUEST_TARGET_BYTES_MAX,
};

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) key: usize,
    pub(crate) peer: SocketAddr,
    /// `None`: plain HTTP.
    tls: Option<Box<TlsSession>>,
    /// Registered with its event loop's poll (so it must be deregistered).
    pub(crate) registered: bool,
    /// The socket may have input (an edge-triggered event said so, or the
    /// last read filled what it asked for): read before waiting.
    pub(crate) readable: bool,
    buf: Vec<u8>,
    /// Bytes of `buf` before this offset are consumed.
    start: usize,
    /// When the first byte of the request being received arrived.
    request_started: Option<Instant>,
    /// When the connection was accepted or last answered.
    last_activity: Instant,
    served: u64,
    /// The client address of the request being received, once its head is
    /// in (`None` otherwise): for logs, which name the client rather than
    /// the proxy in front of it.
    client: Option<IpAddr>,
    continue_sent: bool,
    /// Bytes of the in-flight body budget this connection holds for the body
    /// it is receiving (0 when none is being received in parts): the buffer
    /// capacity past the first read chunk.
    body_reserved: usize,
    /// Bytes still to be read before the request being received is whole
    /// (0 when unknown): reads never ask for more, so a reserved body buffer
    /// is never reallocated.
    body_missing: usize,
    /// Answer bytes not yet taken by the socket, from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// When the answer in `out` must be wholly written (SOUK_READ_TIMEOUT
    /// after it was queued): a deadline for the response, not per `write`.
    write_deadline: Option<Instant>,
    /// Close once `out` is written.
    close_after_write: bool,
    /// The answer is out and our side is shut: unread input is read and
    /// thrown away until the peer closes or `LINGER_MS` passes, so a client
    /// still sending a refused body reads our answer instead of a reset.
    lingering_until: Option<Instant>,
    shared: Arc<Shared>,
    /// The event loop that owns this connection.
    pub(crate) home: Arc<Home>,
}

/// What framing the current request has, once its head is in.
pub(crate) struct Framing {
    pub keep_alive: bool,
    pub http10: bool,
    pub head_only: bool,
}

impl Framing {
    /// A refusal: answered, then the connection closes.
    pub(crate) const REJECT: Framing = Framing {
        keep_alive: false,
        http10: false,
        head_only: false,
    };
}

pub(crate) enum Step {
    Request(Request, Framing),
    /// Not a whole request yet and nothing to read now: park until readable.
    NeedMore,
    /// The request is refused at the HTTP level; answer and close.
    Reject(Response, Refused),
    /// The peer closed or the socket failed.
    Closed,
}

/// What is known of a refused request, for the access log.
pub(crate) struct Refused {
    /// `None`: its head could not be read.
    pub method: Option<Method>,
    pub client: Option<IpAddr>,
    pub request_id: RequestId,
}

/// How far `Conn::flush` got.
pub(crate) enum Flushed {
    /// Nothing left to write; the connection goes on.
    Done,
    /// The socket is full: park until it is writable.
    Blocked,
    /// Everything is written and the connection is to close (or is lingering).
    Closing,
    /// The socket failed or the peer went away: drop the connection.
    Failed,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        key: usize,
        peer: SocketAddr,
        tls: Option<Box<TlsSession>>,
        shared: Arc<Shared>,
        home: Arc<Home>,
    ) -> Conn {
        shared.open_connections.fetch_add(1, Ordering::SeqCst);
        home.connections.fetch_add(1, Ordering::Relaxed);
        Conn {
            stream,
            key,
            peer,
            tls,
            registered: false,
            readable: false,
            buf: Vec::new(),
            start: 0,
            request_started: None,
            last_activity: Instant::now(),
            served: 0,
            client: None,
            continue_sent: false,
            body_reserved: 0,
            body_missing: 0,
            out: Vec::new(),
            out_sent: 0,
            write_deadline: None,
            close_after_write: false,
            lingering_until: None,
            shared,
            home,
        }
    }

    /// Hands this connection to another event loop: it leaves its old
    /// loop's poll (the new one registers it when it parks it).
    pub(crate) fn move_to(&mut self, home: &Arc<Home>) {
        if Arc::ptr_eq(&self.home, home) {
            return;
        }
        if self.registered {
            let fd = self.stream.as_raw_fd();
            let _ = self.home.registry.deregister(&mut SourceFd(&fd));
            self.registered = false;
        }
        self.home.connections.fetch_sub(1, Ordering::Relaxed);
        home.connections.fetch_add(1, Ordering::Relaxed);
        self.home = Arc::clone(home);
    }

    /// When this connection is cut off: the response deadline while an
    /// answer is being written, the end of lingering, the read timeout while
    /// a request is partly in (or none has come yet), the idle timeout
    /// between requests.
    pub(crate) fn deadline(&self) -> Instant {
        if let Some(deadline) = self.write_deadline {
            return deadline;
        }
        if let Some(until) = self.lingering_until {
            return until;
        }
        let limits = &self.shared.limits;
        match self.request_started {
            Some(started) => started + limits.read_timeout,
            None if self.served == 0 => self.last_activity + limits.read_timeout,
            None => self.last_activity + limits.idle_timeout,
        }
    }

    /// An answer (or TLS handshake data) is waiting for the socket: park
    /// for writability.
    pub(crate) fn wants_write(&self) -> bool {
        self.out_sent < self.out.len() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// A read would find something: an event said so (or a read filled
    /// its buffer), or TLS holds decrypted bytes or the peer's
    /// close_notify, which epoll cannot see (their bytes were read already).
    fn can_read(&mut self) -> bool {
        self.readable || self.tls.as_mut().is_some_and(|tls| tls.has_input())
    }

    /// Parses the next request from the buffer, reading once if the socket
    /// may have input.
    pub(crate) fn next_request(&mut self) -> Step {
        loop {
            match self.try_parse() {
                Ok(Some(step)) => return step,
                Ok(None) => {}
                Err(response) => {
                    let (response, refused) = self.refusal(response);
                    return Step::Reject(response, refused);
                }
            }
            // A 100 Continue must reach the client before its body can come.
            if self.wants_write() || !self.can_read() {
                return Step::NeedMore;
            }
            self.readable = false;
            match self.read_once() {
                Ok(0) => return Step::Closed,
                Ok(_) => {}
                Err(e) if is_transient(&e) => return Step::NeedMore,
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
        let want = match self.body_missing {
            // A new request: most fit the idle buffer, which is then neither
            // regrown nor zero-filled past it (a full read reads again).
            0 if old_len == 0 => IDLE_BUFFER_BYTES_MAX,
            0 => READ_CHUNK_BYTES,
            missing => missing.min(READ_CHUNK_BYTES),
        };
        self.buf.resize(old_len + want, 0);
        let into = &mut self.buf[old_len..];
        let result = match &mut self.tls {
            None => self.stream.read(into),
            Some(tls) => tls.read(&mut self.stream, into),
        };
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old_len + n);
        // A full read may have left bytes in the socket: read again before
        // waiting (readiness is edge-triggered: it will not be told again).
        self.readable |= n == want || self.tls.as_ref().is_some_and(|tls| tls.socket_unread());
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
            Ok(httparse::Status::Partial) => return partial_head(pending),
            Err(httparse::Error::TooManyHeaders) => return Err(head_too_large()),
            Err(_) => return Err(bad_request("malformed request head")),
        };
        let target = parsed.path.unwrap_or("/");
        if target.len() > REQUEST_TARGET_BYTES_MAX {
            return Err(target_too_long());
        }
        let head = Head::from_parsed(&parsed, self.shared.limits.max_body_bytes)?;
        let target = request_target(target, head.method)?;
        let body_len = usize::try_from(head.content_length)
            .map_err(|_| bad_request("Content-Length is too large"))?;
        let available = pending.len() - head_len;
        if available < body_len {
            if self.client.is_none() {
                let forwarded = parsed
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                    .map(|h| h.value);
                let client = self.client_for(forwarded);
                self.client = Some(client);
            }
            self.await_body(&head, head_len + body_len, body_len - available)?;
            return Ok(None);
        }
        let pending = &self.buf[self.start..];
        let body = pending[head_len..head_len + body_len].to_vec();
        let target = target.into_owned();
        let path_end = target.find('?').unwrap_or(target.len());
        let headers = Headers::from_parsed(parsed.headers);
        // Worked out when the head arrived, if the body came in parts.
        let client = match self.client.take() {
            Some(client) => client,
            None => self.client_for(headers.named("x-forwarded-for")),
        };
        let framing = Framing {
            keep_alive: head.keep_alive && !self.shared.shutting_down.load(Ordering::Relaxed),
            http10: head.http10,
            head_only: head.method == Method::Head,
        };
        let request_id = RequestId::from_values(headers.named("x-request-id"));
        let request = Request {
            method: head.method,
            target,
            path_end,
            headers,
            body,
            peer: self.peer,
            client,
            request_id,
            user_id: OnceLock::new(),
        };
        self.consumed(head_len + body_len);
        Ok(Some(Step::Request(request, framing)))
    }

    /// The head is whole but the body is not: makes room for it
    /// (`reserve_body`, `whole` bytes of head and body, `missing` of them
    /// still to come) and queues a 100 Continue if the client waits for one.
    fn await_body(&mut self, head: &Head, whole: usize, missing: usize) -> Result<(), Response> {
        self.reserve_body(whole, missing)?;
        // HTTP/1.0 clients know no 100 Continue (RFC 9110 §10.1.1).
        if head.expect_continue && !head.http10 && !self.continue_sent {
            self.continue_sent = true;
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.write_deadline = Some(Instant::now() + self.shared.limits.read_timeout);
        }
        Ok(())
    }

    /// A request of `len` bytes (head and body) was taken from the buffer:
    /// the connection is ready for the next one, whose clock starts now if
    /// some of it is already here.
    fn consumed(&mut self, len: usize) {
        self.start += len;
        self.continue_sent = false;
        self.body_missing = 0;
        self.release_body();
        self.request_started = (self.start < self.buf.len()).then(Instant::now);
    }

    /// Makes room in the buffer for the next read of a body that is still
    /// arriving (`whole` bytes of head and body in all), paying for every
    /// byte of capacity beyond the first read chunk out of the in-flight
    /// body budget. Capacity grows with what actually arrives (by the chunk
    /// while small, then doubling, never past `whole`), so a client holds
    /// budget for bytes it sent, not for the length it announced. A full
    /// budget refuses the body with 503.
    fn reserve_body(&mut self, whole: usize, missing: usize) -> Result<(), Response> {
        self.body_missing = missing;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let next_len = self.buf.len() + missing.min(READ_CHUNK_BYTES);
        let capacity = self.buf.capacity();
        if next_len <= capacity {
            return Ok(());
        }
        let target = if capacity < BODY_DOUBLING_FROM_BYTES {
            next_len
        } else {
            next_len.max(capacity.saturating_mul(2)).min(whole)
        };
        // The first read chunk is every connection's and is not charged.
        let charge = target.saturating_sub(self.body_reserved + READ_CHUNK_BYTES);
        let budget = &self.shared.inflight_body_bytes;
        let limit = self.shared.limits.max_inflight_body_bytes;
        let taken = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
            held.checked_add(charge).filter(|&total| total <= limit)
        });
        if taken.is_err() {
            return Err(Response::error(
                503,
                "unavailable",
                "too many request bodies are being received; try again shortly",
            )
            .with_header("retry-after", "1"));
        }
        self.body_reserved += charge;
        self.buf.reserve_exact(target - self.buf.len());
        Ok(())
    }

    fn release_body(&mut self) {
        if self.body_reserved > 0 {
            self.shared
                .inflight_body_bytes
                .fetch_sub(self.body_reserved, Ordering::SeqCst);
            self.body_reserved = 0;
        }
    }

    /// Queues one answer to the request `request_id` behind anything
    /// unsent. The caller then flushes.
    pub(crate) fn queue(&mut self, response: &Response, framing: &Framing, request_id: &RequestId) {
        // A shutdown that began while this request ran closes the connection
        // after it: say so.
        let close = !framing.keep_alive || self.shared.shutting_down.load(Ordering::SeqCst);
        response.write_to(&mut self.out, framing, close, request_id);
        self.close_after_write |= close;
        self.served += 1;
        self.last_activity = Instant::now();
        self.write_deadline = Some(self.last_activity + self.shared.limits.read_timeout);
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > IDLE_BUFFER_BYTES_MAX {
                self.buf.shrink_to(IDLE_BUFFER_BYTES_MAX);
            }
        }
    }

    /// The address a request counts as coming from: the peer, or what a
    /// trusted proxy forwarded in these X-Forwarded-For values
    /// (`proxy::TrustedProxies`).
    fn client_for<'h>(&self, forwarded: impl DoubleEndedIterator<Item = &'h [u8]>) -> IpAddr {
        let proxies = &self.shared.trusted_proxies;
        if proxies.is_empty() {
            return self.peer.ip().to_canonical();
        }
        proxies.client_address(self.peer.ip(), forwarded)
    }

    /// Who this connection is, for logs: the peer, and the client of the
    /// request being received when a trusted proxy forwarded another one.
    pub(crate) fn who(&self) -> String {
        match self.client {
            Some(client) if client != self.peer.ip().to_canonical() => {
                format!("{client} (via {})", self.peer)
            }
            _ => self.peer.to_string(),
        }
    }

    /// A refusal of the HTTP layer, with its `X-Request-Id`. When the
    /// request's head is whole (only its length, framing, target or body
    /// were refused) the service decorates the answer like its own (CORS),
    /// the request's id is the client's when sane, and its method and
    /// client are noted for the log; a head that is incomplete, too large
    /// to parse or malformed names no origin, method or client.
    fn refusal(&mut self, response: Response) -> (Response, Refused) {
        let mut header_slots = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
        let mut parsed = httparse::Request::new(&mut header_slots);
        if !matches!(
            parsed.parse(&self.buf[self.start..]),
            Ok(httparse::Status::Complete(_))
        ) {
            let request_id = RequestId::generate();
            let refused = Refused {
                method: None,
                client: None,
                request_id,
            };
            return (response, refused);
        }
        let headers = Headers::from_parsed(parsed.headers);
        let client = self.client_for(headers.named("x-forwarded-for"));
        self.client = Some(client);
        let request_id = RequestId::from_values(headers.named("x-request-id"));
        let refused = Refused {
            method: parsed.method.map(Method::parse),
            client: Some(client),
            request_id,
        };
        let response = self.shared.service.decorate(&headers, response);
        (response, refused)
    }

    /// Writes what the socket takes of the queued answer (and, with TLS,
    /// of the session's own records), without blocking.
    pub(crate) fn flush(&mut self) -> Flushed {
        loop {
            match self.write_step() {
                Ok(true) => {}
                Ok(false) => {
                    // A closing TLS connection says so before its FIN.
                    let notify = self.close_after_write
                        && self.tls.as_mut().is_some_and(|tls| tls.close_notify());
                    if !notify {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(_) => return Flushed::Failed,
            }
        }
        self.out.clear();
        self.out_sent = 0;
        if self.out.capacity() > IDLE_BUFFER_BYTES_MAX {
            self.out.shrink_to(IDLE_BUFFER_BYTES_MAX);
        }
        self.write_deadline = None;
        if !self.close_after_write {
            return Flushed::Done;
        }
        if self.lingering_until.is_none() {
            self.release_body();
            self.buf = Vec::new();
            self.start = 0;
            // Shutting our side sends FIN after the answer; the peer's unread
            // input is drained by `linger` rather than reset by close().
            if self.stream.shutdown(Shutdown::Write).is_err() {
                return Flushed::Failed;
            }
            self.lingering_until = Some(Instant::now() + Duration::from_millis(LINGER_MS));
        }
        Flushed::Closing
    }

    /// Writes once: `Ok(true)` when something went out (or into rustls),
    /// `Ok(false)` when nothing is left to write.
    fn write_step(&mut self) -> io::Result<bool> {
        let unsent = &self.out[self.out_sent..];
        let taken = match &mut self.tls {
            None if unsent.is_empty() => return Ok(false),
            None => match self.stream.write(unsent)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => n,
            },
            Some(tls) => match tls.write_step(&mut self.stream, unsent)? {
                None => return Ok(false),
                Some(n) => n,
            },
        };
        self.out_sent += taken;
        Ok(true)
    }

    /// Reads and discards input while lingering; `true` while the peer has
    /// not closed yet (park again for readability).
    pub(crate) fn linger(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
            if self
                .lingering_until
                .is_none_or(|until| Instant::now() >= until)
            {
                return false;
            }
        }
    }

    /// Answers a refused request; the connection closes after it.
    pub(crate) fn reject(&mut self, response: &Response, request_id: &RequestId) {
        self.queue(response, &Framing::REJECT, request_id);
    }

    /// Between requests with nothing to send: drops the receive and send
    /// buffers (the next read allocates again).
    pub(crate) fn release_idle_buffers(&mut self) {
        let idle = self.start == self.buf.len()
            && self.request_started.is_none()
            && self.body_reserved == 0
            && self.out_sent == self.out.len()
            && self.lingering_until.is_none();
        if idle {
            self.buf = Vec::new();
            self.start = 0;
            self.out = Vec::new();
            self.out_sent = 0;
        }
    }

    pub(crate) fn has_buffered_bytes(&mut self) -> bool {
        self.start < self.buf.len() || self.tls.as_mut().is_some_and(|tls| tls.has_plaintext())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.release_body();
        if self.registered {
            let fd = self.stream.as_raw_fd();
            let _ = self.home.registry.deregister(&mut SourceFd(&fd));
        }
        self.home.connections.fetch_sub(1, Ordering::Relaxed);
        self.shared.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

struct Head {
    method: Method,
    content_length: u64,
    keep_alive: bool,
    http10: bool,
    expect_continue: bool,
}

impl Head {
    /// Applies the framing rules of docs/http.md and the Host rules of RFC 9112
    /// §3.2 to a parsed head.
    fn from_parsed(
        parsed: &httparse::Request<'_, '_>,
        max_body_bytes: u64,
    ) -> Result<Head, Response> {
        let http10 = parsed.version == Some(0);
        let mut content_length: Option<u64> = None;
        let mut connection_close = false;
        let mut connection_keep_alive = false;
        let mut expect_continue = false;
        let mut hosts = 0usize;
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
                    return Err(bad_request("repeated Content-Length"));
                }
                content_length = Some(parse_content_length(header.value, max_body_bytes)?);
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                if hosts > 1 {
                    return Err(bad_request("more than one Host header"));
                }
                if !is_valid_host(header.value) {
                    return Err(bad_request("the Host header is not a valid host[:port]"));
                }
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
        // HTTP/1.0 predates Host; every HTTP/1.1 request must carry one.
        if hosts == 0 && !http10 {
            return Err(bad_request("an HTTP/1.1 request needs a Host header"));
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
        return Err(bad_request("Content-Length must be plain digits"));
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

/// A Host value per RFC 9110 §7.2: `uri-host [ ":" port ]`, where uri-host
/// is an IP literal in brackets or a reg-name / IPv4 address and port is
/// digits (RFC 3986 §3.2.2–3.2.3). Empty is allowed (a target without an
/// authority).
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = split_host_port(value);
    let host_ok = match host.strip_prefix(b"[") {
        Some(literal) => literal.strip_suffix(b"]").is_some_and(|inner| {
            !inner.is_empty() && inner.iter().all(|&b| is_host_char(b) || b == b':')
        }),
        None => host.iter().all(|&b| is_host_char(b)),
    };
    let port_ok = port.is_none_or(|digits| digits.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// `host` and the digits after its `:`, if any (a colon inside an IP
/// literal's brackets is not a port separator).
fn split_host_port(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    let search_from = match value.first() {
        Some(b'[') => value.iter().position(|&b| b == b']').unwrap_or(value.len()),
        _ => 0,
    };
    match value[search_from..].iter().position(|&b| b == b':') {
        Some(at) => (
            &value[..search_from + at],
            Some(&value[search_from + at + 1..]),
        ),
        None => (value, None),
    }
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §2): what a reg-name, an
/// IPv4 address or an IPvFuture literal is made of.
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// A head not yet whole: refused when its request line or the head already
/// runs past its bound, else more bytes are needed.
fn partial_head(pending: &[u8]) -> Result<Option<Step>, Response> {
    let line_end = pending.iter().position(|&b| b == b'\n');
    if line_end.is_none_or(|end| end > REQUEST_TARGET_BYTES_MAX + 32)
        && pending.len() > REQUEST_TARGET_BYTES_MAX + 32
    {
        return Err(target_too_long());
    }
    if pending.len() > REQUEST_HEAD_BYTES_MAX {
        return Err(head_too_large());
    }
    Ok(None)
}

/// The path-and-query of a request target (RFC 9112 §3.2): origin form
/// (`/path?q`) as it is; absolute form (`http://host/path?q`) reduced to its
/// origin form; `*` only for OPTIONS. Anything else (authority form, a bare
/// `healthz`) is refused.
fn request_target(target: &str, method: Method) -> Result<Cow<'_, str>, Response> {
    if target.starts_with('/') || (target == "*" && method == Method::Options) {
        return Ok(Cow::Borrowed(target));
    }
    let scheme_end = target.find("://").unwrap_or(0);
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad_request(
            "the request target must be an absolute path (/...) or an absolute URI",
        ));
    }
    let rest = &target[scheme_end + 3..];
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..path_at];
    // An http(s) URI needs a non-empty host (RFC 9110 §4.2.1); no userinfo.
    let host_empty = split_host_port(authority.as_bytes()).0.is_empty();
    if host_empty || authority.contains('@') || !is_valid_host(authority.as_bytes()) {
        return Err(bad_request("the request target has an invalid authority"));
    }
    Ok(match &rest[path_at..] {
        path if path.starts_with('/') => Cow::Borrowed(path),
        // `http://host` and `http://host?q` name the path "/".
        query => Cow::Owned(format!("/{query}")),
    })
}

fn bad_request(message: &str) -> Response {
    Response::error(400, "bad_request", message)
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
