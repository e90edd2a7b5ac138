//! The test harness: a running server with a fresh database per test
//! (`spawn_app`), test-only routes, and a raw HTTP/1.1 client that reads
//! exactly one response at a time. Every client read has a timeout, so a
//! server bug fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use souk::api::{self, Params, respond};
use souk::app::{App, Running};
use souk::config::Config;
use souk::http::{Method, Reply, Request};
pub use souk::util::TempDir;

/// The longest a client waits for any one answer from the server.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a graceful shutdown may take in a test: well under the
/// server's 30 s grace period, so waiting for it is a failure.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A server serving `api::routes()` plus the test routes, on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    running: Option<Running>,
    // Dropped after `running` is shut down (fields drop after `Drop::drop`).
    _dir: TempDir,
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Like `spawn_app`, letting the test change the configuration first.
pub fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    quiet_deliberate_panics();
    let dir = TempDir::new();
    let mut config = Config::for_path(
        dir.path.join("souk.db"),
        "127.0.0.1:0".parse().expect("a socket address"),
    )
    .expect("the default configuration");
    // Small but not tiny: pipelining and the connection cap need no more.
    config.workers = 4;
    tweak(&mut config);
    let running = souk::app::start_with_routes(config, test_routes()).expect("starting the app");
    TestApp {
        addr: running.addr,
        running: Some(running),
        _dir: dir,
    }
}

impl TestApp {
    /// A new keep-alive connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `GET path` on a connection of its own.
    pub fn get(&self, path: &str) -> HttpResponse {
        let mut client = self.connect();
        client.send(get(path).as_bytes());
        client.read_response()
    }

    /// `POST /test/echo` with `body` and a JSON content type.
    pub fn post_echo(&self, body: &[u8]) -> HttpResponse {
        self.post_echo_as(Some("application/json"), body)
    }

    pub fn post_echo_as(&self, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
        let mut client = self.connect();
        client.send(&post("/test/echo", content_type, body));
        client.read_response()
    }

    /// Starts a graceful shutdown on another thread; the receiver gets how
    /// long it took once it is done.
    pub fn begin_shutdown(&mut self) -> mpsc::Receiver<Duration> {
        let running = self.running.take().expect("the app is running");
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            running.shutdown();
            let _ = done_tx.send(started.elapsed());
        });
        done_rx
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
        }
    }
}

// ---- test-only routes ------------------------------------------------------

fn test_routes() -> api::Router {
    api::routes()
        .route(Method::Get, "/test/panic", panic_handler, "/test/panic")
        .route(
            Method::Get,
            "/test/panic-later",
            panic_later_handler,
            "/test/panic-later",
        )
        .route(Method::Post, "/test/echo", echo_handler, "/test/echo")
        .route(Method::Get, "/test/seq/{n}", seq_handler, "/test/seq/{n}")
        .route(
            Method::Get,
            "/test/gate/{key}",
            gate_handler,
            "/test/gate/{key}",
        )
        .route(
            Method::Get,
            "/test/hold-writer/{key}",
            hold_writer_handler,
            "/test/hold-writer/{key}",
        )
        .route(Method::Get, "/test/big", big_handler, "/test/big")
}

/// The body `/test/echo` accepts, with the decoding rules of every API body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    name: String,
    count: u32,
    note: Option<String>,
}

/// What `/test/panic` panics with.
const DELIBERATE_PANIC: &str = "test handler panicked on purpose";

/// The default panic hook prints (and, with RUST_BACKTRACE set, symbolizes a
/// backtrace: seconds of a loaded machine's time, on the server's worker)
/// for every deliberate panic; it is kept for every other panic.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE_PANIC) {
                default_hook(info);
            }
        }));
    });
}

fn panic_handler(_app: &App, _request: &Request, _params: &Params) -> souk::error::Result<Reply> {
    std::panic::panic_any(DELIBERATE_PANIC);
}

/// Defers its answer, then panics while starting the deferred work.
fn panic_later_handler(
    _app: &App,
    _request: &Request,
    _params: &Params,
) -> souk::error::Result<Reply> {
    Ok(Reply::Later(Box::new(|_responder| {
        std::panic::panic_any(DELIBERATE_PANIC)
    })))
}

fn echo_handler(_app: &App, request: &Request, _params: &Params) -> souk::error::Result<Reply> {
    let echo: Echo = api::json::body(request)?;
    Ok(Reply::Now(respond::json(200, &echo)))
}

/// Four MiB of answer to a request of a few bytes; built once, so that a
/// loaded machine spends its time writing it, not making it.
fn big_handler(_app: &App, _request: &Request, _params: &Params) -> souk::error::Result<Reply> {
    static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let big = "b".repeat(4 << 20);
        serde_json::to_vec(&json!({ "big": big })).expect("serializing a string")
    });
    Ok(Reply::Now(souk::http::Response::json_bytes(
        200,
        BIG.clone(),
    )))
}

/// Answers the path parameter back, so pipelined answers can be told apart.
fn seq_handler(_app: &App, _request: &Request, params: &Params) -> souk::error::Result<Reply> {
    let n = params.get("n")?.to_owned();
    Ok(Reply::Now(respond::json(200, &json!({ "n": n }))))
}

/// `GET /test/gate/{key}` waits, inside its handler, until the test opens
/// the gate of that key: a request held in flight for exactly as long as a
/// test needs. Keys are the tests' own, so parallel tests do not meet.
pub mod gate {
    use std::collections::HashMap;
    use std::sync::{Condvar, Mutex, MutexGuard};

    use super::CLIENT_TIMEOUT;

    #[derive(Default)]
    struct State {
        entered: bool,
        open: bool,
        /// SQL the held write job runs once the gate opens.
        then_sql: Option<String>,
    }

    static GATES: Mutex<Option<HashMap<String, State>>> = Mutex::new(None);
    static CHANGED: Condvar = Condvar::new();

    fn gates() -> MutexGuard<'static, Option<HashMap<String, State>>> {
        GATES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by the handler: marks the key entered, waits until it is open
    /// (at most twice the client timeout, so a broken test cannot hang).
    pub(super) fn pass(key: &str) {
        let mut guard = gates();
        guard
            .get_or_insert_with(HashMap::new)
            .entry(key.to_owned())
            .or_default()
            .entered = true;
        CHANGED.notify_all();
        let (guard, _) = CHANGED
            .wait_timeout_while(guard, CLIENT_TIMEOUT * 2, |g| {
                !g.as_ref().and_then(|m| m.get(key)).is_some_and(|s| s.open)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(guard);
    }

    /// Waits until a request is inside the handler for `key`.
    pub fn wait_entered(key: &str) {
        let (guard, timeout) = CHANGED
            .wait_timeout_while(gates(), CLIENT_TIMEOUT, |g| {
                !g.as_ref()
                    .and_then(|m| m.get(key))
                    .is_some_and(|s| s.entered)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(guard);
        assert!(!timeout.timed_out(), "no request entered gate {key}");
    }

    /// Opens the gate of a `/test/hold-writer/{key}` job, which then runs
    /// `sql` in its transaction before it commits.
    pub fn open_then(key: &str, sql: &str) {
        let mut guard = gates();
        let state = guard
            .get_or_insert_with(HashMap::new)
            .entry(key.to_owned())
            .or_default();
        state.then_sql = Some(sql.to_owned());
        state.open = true;
        CHANGED.notify_all();
    }

    /// The SQL given to `open_then` for `key`, if any.
    pub(super) fn then_sql(key: &str) -> Option<String> {
        gates()
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(|s| s.then_sql.clone())
    }

    pub fn open(key: &str) {
        gates()
            .get_or_insert_with(HashMap::new)
            .entry(key.to_owned())
            .or_default()
            .open = true;
        CHANGED.notify_all();
    }
}

fn gate_handler(_app: &App, _request: &Request, params: &Params) -> souk::error::Result<Reply> {
    let key = params.get("key")?.to_owned();
    gate::pass(&key);
    Ok(Reply::Now(respond::json(200, &json!({ "gate": key }))))
}

/// `GET /test/hold-writer/{key}` submits a write job that waits at gate
/// `key` inside the writer's transaction, so every later write job queues
/// behind it (`souk_write_queue_depth` counts them); once the gate opens it
/// runs the SQL given to `gate::open_then`, if any, and answers after the
/// commit.
fn hold_writer_handler(
    app: &App,
    _request: &Request,
    params: &Params,
) -> souk::error::Result<Reply> {
    let key = params.get("key")?.to_owned();
    let writer = app.store.writer.clone();
    Ok(Reply::Later(Box::new(move |responder| {
        let job = move |tx: &souk::store::WriteTx<'_>| {
            gate::pass(&key);
            if let Some(sql) = gate::then_sql(&key) {
                tx.execute_batch(&sql)?;
            }
            Ok(())
        };
        writer.submit(souk::store::writer::Weight::ONE, job, move |result| {
            responder.send(match result {
                Ok(()) => respond::json(200, &json!({})),
                Err(e) => respond::error(e),
            })
        });
    })))
}

// ---- raw requests ----------------------------------------------------------

/// `GET path` as HTTP/1.1, keep-alive.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// `HEAD path` as HTTP/1.1, keep-alive.
pub fn head(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// A `POST` with a correct Content-Length and an optional Content-Type.
pub fn post(path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    if let Some(content_type) = content_type {
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

// ---- the client ------------------------------------------------------------

/// One response as read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The one header of that name (case-insensitive); panics when repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let mut found = self.headers.iter().filter(|(n, _)| *n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(
            found.next().is_none(),
            "header {name} is repeated: {self:?}"
        );
        first
    }

    /// The body as text (lossy), for assertion messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `STATUS BODY`, for assertion messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.status, self.body_text())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Checks the error shape of docs/api.md and returns the error object.
    pub fn error(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        let object = body.as_object().expect("the body is an object");
        assert_eq!(object.len(), 1, "only `error` at the top: {body}");
        let error = body["error"].clone();
        assert!(error["code"].is_string(), "error.code: {body}");
        assert!(error["message"].is_string(), "error.message: {body}");
        let code = error["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "error.code is snake_case: {body}"
        );
        for key in error.as_object().expect("error is an object").keys() {
            assert!(
                ["code", "message", "field", "index"].contains(&key.as_str()),
                "unexpected key {key} in {body}"
            );
        }
        error
    }

    /// Asserts the status and the error code, returns the error object.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let error = self.error();
        assert_eq!(error["code"], code, "{self:?}");
        error
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw connection that reads one response at a time; bytes of later
/// (pipelined) responses stay buffered for the next read.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connecting");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("setting a read timeout");
        stream
            .set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("setting a write timeout");
        stream.set_nodelay(true).expect("setting nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending to the server");
    }

    /// Sends, but tolerates a server that already closed (its answer may
    /// still be waiting to be read).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one response with its body; panics on timeout or bad framing.
    pub fn read_response(&mut self) -> HttpResponse {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// Reads the response to a HEAD request: a head, never a body.
    pub fn read_head_response(&mut self) -> HttpResponse {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("reading a HEAD response: {e}"))
    }

    /// Reads one response, or `None` when the server closed the connection
    /// between two responses (a cut in the middle of one still panics).
    pub fn read_response_or_close(&mut self) -> Option<HttpResponse> {
        match self.try_read_response(false) {
            Ok(response) => Some(response),
            Err(e)
                if self.buf.is_empty()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
            {
                None
            }
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    pub fn try_read_response(&mut self, head_only: bool) -> io::Result<HttpResponse> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec())
            .map_err(|_| bad_data("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        if parts.next() != Some("HTTP/1.1") {
            return Err(bad_data(&format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(&format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad_data(&format!("bad header line {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        self.buf.drain(..head_end);
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status < 200 || status == 204 {
            return Ok(response);
        }
        let length: usize = response
            .header("content-length")
            .ok_or_else(|| bad_data(&format!("no content-length: {response:?}")))?
            .parse()
            .map_err(|_| bad_data("content-length is not a number"))?;
        while self.buf.len() < length {
            self.fill()?;
        }
        response.body = self.buf.drain(..length).collect();
        Ok(response)
    }

    /// Reads once more into the buffer; EOF is an error here.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed with {} bytes of a response: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                ),
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Asserts the server closes this connection within `CLIENT_TIMEOUT`
    /// without sending anything more; returns how long that took.
    pub fn expect_closed(&mut self) -> Duration {
        let started = Instant::now();
        assert!(
            self.buf.is_empty(),
            "unread bytes before the close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => started.elapsed(),
            Ok(n) => panic!(
                "expected a close, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => started.elapsed(),
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad_data(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// Retries `attempt` until it returns `Some` or `CLIENT_TIMEOUT` passes.
pub fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
