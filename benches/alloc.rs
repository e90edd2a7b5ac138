//! Allocations per request: souk runs in this process under a counting
//! global allocator, and a client that allocates nothing per request (its
//! requests built once, its responses read into one fixed buffer) sends the
//! same request many times over one keep-alive connection. What the
//! counter grew by, divided by the requests, is the server's allocations
//! per request (background threads add a little noise: the monitor's tick,
//! the checkpointer).
//!
//! `cargo bench --bench alloc` (or `cargo test --bench alloc`, a shorter
//! run that checks the same numbers are sane). The access log is on, as it
//! is by default, so its line counts; the log goes to /dev/null.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use souk::config::Config;
use souk::util::TempDir;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only
// counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests per row in a full run, and in the smoke run.
const REQUESTS_FULL: u64 = 20_000;
const REQUESTS_SMOKE: u64 = 500;
/// The client's one receive buffer: every answer here is far smaller.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// What a transfer's sender holds (1 BTC in satoshi): far more than a run moves.
const SENDER_BALANCE: i64 = 100_000_000;
/// Above this, something allocates per request that should not: the smoke
/// run fails (a regression check, not a measurement).
const SANE_ALLOCATIONS_PER_REQUEST: f64 = 200.0;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let requests = if full { REQUESTS_FULL } else { REQUESTS_SMOKE };
    // The access log is on by default: its lines go to /dev/null, not the
    // terminal (the table goes to stdout).
    silence_stderr();
    souk::logs::init(souk::config::LogFormat::Text);
    let dir = TempDir::new();
    let db = dir.path.join("alloc.db");
    let mut config = Config::for_path(&db, "127.0.0.1:0".parse().expect("an address"))
        .expect("the default configuration");
    config.workers = 2;
    let running = souk::app::start(config).expect("starting souk");
    let (sender, receiver) = seed(&db);
    let rows = [
        ("GET /healthz", get("/healthz", None)),
        (
            "GET /api/v1/wallet (cached, signed in)",
            get("/api/v1/wallet", Some(&sender.token)),
        ),
        (
            "GET /api/v1/users/{id} (cached, signed in)",
            get(
                &format!("/api/v1/users/{}", receiver.id),
                Some(&sender.token),
            ),
        ),
        (
            "POST /api/v1/transfers (durable, 1 sat)",
            transfer(&sender.token, receiver.id),
        ),
    ];
    println!(
        "\n## Allocations per request (server in process, one keep-alive connection, {requests} requests per row)\n"
    );
    println!("| request | allocations / request | bytes allocated / request |");
    println!("|---|---:|---:|");
    let mut sane = true;
    for (name, request) in rows {
        let (allocations, bytes) = measure(running.addr, &request, requests);
        println!("| {name} | {allocations:.1} | {bytes:.0} |");
        sane &= allocations < SANE_ALLOCATIONS_PER_REQUEST;
    }
    running.shutdown();
    souk::logs::flush();
    assert!(
        sane,
        "a row allocates more than {SANE_ALLOCATIONS_PER_REQUEST} times per request"
    );
}

/// Sends `request` `n` times (after a warm-up that fills the caches) and
/// returns the allocations and bytes per request.
fn measure(addr: SocketAddr, request: &[u8], n: u64) -> (f64, f64) {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut buf = vec![0u8; RESPONSE_BYTES_MAX];
    for _ in 0..(n / 10).max(10) {
        exchange(&mut stream, request, &mut buf);
    }
    // Let the warm-up's background work (commits, log writes) settle.
    std::thread::sleep(Duration::from_millis(50));
    let (a0, b0) = counters();
    for _ in 0..n {
        exchange(&mut stream, request, &mut buf);
    }
    let (a1, b1) = counters();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    )
}

/// One request and its whole answer, which must be a 2xx; no allocation.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) {
    stream.write_all(request).expect("sending");
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("reading");
        assert!(n > 0, "the server closed the connection");
        filled += n;
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(head)) = response.parse(&buf[..filled]) else {
            continue;
        };
        let status = response.code.unwrap_or(0);
        assert!((200..300).contains(&status), "status {status}");
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .expect("a Content-Length");
        if filled >= head + length {
            assert_eq!(filled, head + length, "one answer per request");
            return;
        }
    }
}

fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}\r\n").into_bytes()
}

fn transfer(token: &str, to: i64) -> Vec<u8> {
    let body = format!(r#"{{"to":"{to}","currency":"btc","amount":"0.00000001"}}"#);
    format!(
        "POST /api/v1/transfers HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Member {
    id: i64,
    token: String,
}

/// Two users with sessions, the first with a balance, written straight
/// into the running server's database (argon2 for a login would be slow
/// and is not what is measured).
fn seed(db: &std::path::Path) -> (Member, Member) {
    let conn = rusqlite::Connection::open(db).expect("opening the database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("a busy timeout");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let member = |id: i64, name: &str, balance: i64| {
        conn.execute(
            "INSERT INTO users (id, username, password_hash, role, status, created_at)
             VALUES (?1, ?2, '$argon2id$v=19$m=19456,t=2,p=1$never$used', 'user', 'active', ?3)",
            rusqlite::params![id, name, now],
        )
        .expect("inserting a user");
        let (token, hash) = souk::accounts::sessions::new_token().expect("a session token");
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![hash.as_slice(), id, now, now + 86_400],
        )
        .expect("inserting a session");
        conn.execute(
            "INSERT INTO accounts (user_id, currency, available) VALUES (?1, 'btc', ?2)",
            rusqlite::params![id, balance],
        )
        .expect("inserting an account");
        Member { id, token }
    };
    (
        member(1_000_001, "alloc-sender", SENDER_BALANCE),
        member(1_000_002, "alloc-receiver", 0),
    )
}

/// Points stderr at /dev/null.
fn silence_stderr() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 on two open descriptors; stderr is replaced, not closed.
    unsafe {
        libc::dup2(null.as_raw_fd(), 2);
    }
}
