//! HTTP benchmark: the release `souk` binary against a bare tiny_http 0.12
//! hello-world (the ceiling, SPEC §7), driven by the same keep-alive client.
//!
//! `cargo bench --bench http` runs the full plan (10 s per row);
//! `cargo bench --bench http -- --quick` runs 2 s rows. Run without `--bench`
//! (as `cargo test --all-targets` does) it is a smoke test of a few seconds.
//!
//! What it measures, all on loopback with a fixed number of client threads and
//! a fixed duration:
//! - cold start: spawn → `listening on` line → first 200 from `GET /healthz`,
//!   and the server's idle RSS a moment later;
//! - closed-loop throughput and latency (p50/p99/p99.9 from a log-linear
//!   histogram) of N keep-alive connections, one client thread each;
//! - the server's peak RSS during each row (VmHWM after resetting it through
//!   `/proc/PID/clear_refs`, and VmRSS sampled during the row);
//! - one row with many idle keep-alive connections parked next to busy ones;
//! - graceful stop: SIGTERM, then exit status 0.
//!
//! The client runs in this process and shares the machine's cores with the
//! server, so absolute numbers are a lower bound; the souk/tiny_http ratio is
//! the number to watch. New rows: add a `Scenario` (its request bytes are a
//! function of client thread and request number) and put it in `plan`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Bounds of the client.

/// Connect timeout of one attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client thread keeps trying to open its connection before the run.
const CONNECT_SETUP: Duration = Duration::from_secs(10);
/// Read and write timeout of every client socket.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed request before the thread reconnects.
const ERROR_PAUSE: Duration = Duration::from_millis(1);
/// Longest response head the client accepts.
const RESPONSE_HEAD_MAX: usize = 64 * 1024;
/// Longest response body the client accepts.
const RESPONSE_BODY_MAX: usize = 16 * 1024 * 1024;
/// Stack of a client thread (buffers and histogram live on the heap).
const CLIENT_STACK: usize = 128 * 1024;
/// How often the server's VmRSS is sampled during a row.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How long cold start may take before the bench gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Gap between two `/healthz` probes during cold start.
const PROBE_EVERY: Duration = Duration::from_micros(500);
/// How long a SIGTERM'd server may take to exit (its own grace is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// Connection cap given to the server: room for the idle row.
const SERVER_MAX_CONNECTIONS: usize = 4096;
/// Busy clients of the idle row.
const IDLE_ROW_BUSY: usize = 64;
/// File descriptors the bench keeps for itself beyond its sockets.
const FD_MARGIN: usize = 64;

// ---------------------------------------------------------------------------
// Modes.

struct Mode {
    name: &'static str,
    warmup: Duration,
    duration: Duration,
    conns: &'static [usize],
    idle: usize,
    cold_starts: usize,
}

const FULL: Mode = Mode {
    name: "full",
    warmup: Duration::from_secs(2),
    duration: Duration::from_secs(10),
    conns: &[1, 64, 512],
    idle: 1000,
    cold_starts: 5,
};

const QUICK: Mode = Mode {
    name: "quick",
    warmup: Duration::from_millis(500),
    duration: Duration::from_secs(2),
    conns: &[1, 64, 512],
    idle: 1000,
    cold_starts: 3,
};

/// Without `--bench` (`cargo test --all-targets`): prove the bench still runs.
const SMOKE: Mode = Mode {
    name: "smoke (run with `cargo bench` for numbers)",
    warmup: Duration::from_millis(100),
    duration: Duration::from_millis(300),
    conns: &[1, 8],
    idle: 50,
    cold_starts: 1,
};

// ---------------------------------------------------------------------------
// Scenarios and the plan.

/// One kind of request. `request(thread, i)` gives the bytes of request number
/// `i` of client thread `thread` (a whole HTTP/1.1 request, keep-alive).
struct Scenario {
    name: &'static str,
    request: fn(usize, u64) -> Vec<u8>,
    expect_status: u16,
}

fn healthz_request(_thread: usize, _i: u64) -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()
}

const HEALTHZ: Scenario = Scenario {
    name: "GET /healthz",
    request: healthz_request,
    expect_status: 200,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Souk,
    TinyHttp,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Souk => "souk",
            Target::TinyHttp => "tiny_http",
        }
    }
}

/// One line of the table.
struct Row {
    scenario: &'static Scenario,
    target: Target,
    /// Client threads, one keep-alive connection each, sending back to back.
    busy: usize,
    /// Connections opened first, used for one request each, then left idle.
    idle: usize,
}

fn plan(mode: &Mode, idle: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for target in [Target::Souk, Target::TinyHttp] {
        for &busy in mode.conns {
            rows.push(Row {
                scenario: &HEALTHZ,
                target,
                busy,
                idle: 0,
            });
        }
    }
    if idle > 0 {
        rows.push(Row {
            scenario: &HEALTHZ,
            target: Target::Souk,
            busy: IDLE_ROW_BUSY.min(*mode.conns.last().unwrap_or(&1)),
            idle,
        });
    }
    rows
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear, 128 sub-buckets per power of two (< 0.8 %
// relative error), in nanoseconds, up to ~275 s (longer values are clamped).

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const MAX_SHIFT: u32 = 30;
const BUCKETS: usize = (MAX_SHIFT as usize + 2) * SUB as usize;

struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        let value = value.min(((2 * SUB) << MAX_SHIFT) - 1);
        if value < 2 * SUB {
            return value as usize;
        }
        let shift = 63 - value.leading_zeros() - SUB_BITS;
        ((shift as u64 + 1) * SUB + ((value >> shift) - SUB)) as usize
    }

    /// The middle of the values that fall in bucket `index`.
    fn value_at(index: usize) -> u64 {
        let index = index as u64;
        if index < 2 * SUB {
            return index;
        }
        let shift = index / SUB - 1;
        let mantissa = index % SUB + SUB;
        let low = mantissa << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in nanoseconds.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::value_at(index).min(self.max));
            }
        }
        Some(self.max)
    }
}

// ---------------------------------------------------------------------------
// The client: one keep-alive connection, one request at a time.

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    close: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Connects, retrying until `deadline` (a full accept backlog drops SYNs).
    fn connect_until(addr: SocketAddr, deadline: Instant) -> Result<Client, String> {
        loop {
            match Client::connect(addr) {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => return Err(error_kind(&e)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Sends one request and reads its final (non-1xx) response.
    fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
        self.stream
            .write_all(request)
            .map_err(|e| format!("write: {}", error_kind(&e)))?;
        loop {
            let answer = self.read_response()?;
            if answer.status >= 200 {
                return Ok(answer);
            }
        }
    }

    fn read_response(&mut self) -> Result<Answer, String> {
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            if self.buf.len() > RESPONSE_HEAD_MAX {
                return Err("response head too large".into());
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| "response head is not UTF-8".to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| "malformed status line".to_string())?;
        let mut content_length: Option<usize> = None;
        let mut close = version == "HTTP/1.0";
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .parse()
                        .map_err(|_| "bad content-length".to_string())?,
                );
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let bodyless = status < 200 || status == 204 || status == 304;
        let body_len = match content_length {
            Some(n) if n <= RESPONSE_BODY_MAX => n,
            Some(_) => return Err("response body too large".into()),
            None if bodyless => 0,
            None => return Err("response without content-length".into()),
        };
        let total = head_end + body_len;
        while self.buf.len() < total {
            self.fill()?;
        }
        self.buf.drain(..total);
        Ok(Answer { status, close })
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("closed by server".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("read: {}", error_kind(&e))),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn error_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// The load generator.

/// What one `drive` measured.
struct Stats {
    /// Responses with the expected status that completed inside the window.
    ok: u64,
    /// Responses with the expected status, warm-up included.
    answered: u64,
    /// Failed exchanges and unexpected statuses, warm-up included, by kind.
    errors: BTreeMap<String, u64>,
    latency: Histogram,
    window: Duration,
    /// CPU time of the client threads, from their start to their end.
    client_cpu: Duration,
}

impl Stats {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    fn ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q).map(|ns| ns as f64 / 1e6)
    }
}

struct ThreadStats {
    ok: u64,
    answered: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram,
    cpu_ns: u64,
}

/// Runs `conns` client threads, each with its own keep-alive connection,
/// sending `scenario` requests back to back: `warmup` unmeasured, then
/// `duration` measured. Responses count when they complete inside the window.
fn drive(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    duration: Duration,
    scenario: &Scenario,
) -> Stats {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut handles = Vec::with_capacity(conns);
    for thread in 0..conns {
        let barrier = Arc::clone(&barrier);
        let request = scenario.request;
        let expect = scenario.expect_status;
        let handle = std::thread::Builder::new()
            .name(format!("client-{thread}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || client_loop(addr, thread, &barrier, warmup, duration, request, expect))
            .expect("spawning a client thread");
        handles.push(handle);
    }
    barrier.wait();
    let mut stats = Stats {
        ok: 0,
        answered: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new(),
        window: duration,
        client_cpu: Duration::ZERO,
    };
    for handle in handles {
        let one = handle.join().expect("a client thread panicked");
        stats.ok += one.ok;
        stats.answered += one.answered;
        stats.client_cpu += Duration::from_nanos(one.cpu_ns);
        stats.latency.merge(&one.latency);
        for (kind, n) in one.errors {
            *stats.errors.entry(kind).or_default() += n;
        }
    }
    stats
}

fn note(stats: &mut ThreadStats, kind: String) {
    *stats.errors.entry(kind).or_default() += 1;
}

fn client_loop(
    addr: SocketAddr,
    thread: usize,
    barrier: &Barrier,
    warmup: Duration,
    duration: Duration,
    request: fn(usize, u64) -> Vec<u8>,
    expect: u16,
) -> ThreadStats {
    let mut stats = ThreadStats {
        ok: 0,
        answered: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new(),
        cpu_ns: 0,
    };
    let mut client = match Client::connect_until(addr, Instant::now() + CONNECT_SETUP) {
        Ok(client) => Some(client),
        Err(e) => {
            note(&mut stats, format!("connect: {e}"));
            None
        }
    };
    barrier.wait();
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut i = 0u64;
    while Instant::now() < end {
        let conn = match client.as_mut() {
            Some(conn) => conn,
            None => match Client::connect(addr) {
                Ok(conn) => client.insert(conn),
                Err(e) => {
                    note(&mut stats, format!("connect: {}", error_kind(&e)));
                    std::thread::sleep(ERROR_PAUSE);
                    continue;
                }
            },
        };
        let bytes = request(thread, i);
        i += 1;
        let started = Instant::now();
        let result = conn.exchange(&bytes);
        let done = Instant::now();
        if done > end {
            break;
        }
        match result {
            Ok(answer) => {
                if answer.status != expect {
                    note(&mut stats, format!("status {}", answer.status));
                } else {
                    stats.answered += 1;
                    if done >= measure_from {
                        stats.ok += 1;
                        stats.latency.record((done - started).as_nanos() as u64);
                    }
                }
                if answer.close {
                    client = None;
                }
            }
            Err(e) => {
                note(&mut stats, e);
                client = None;
                std::thread::sleep(ERROR_PAUSE);
            }
        }
    }
    stats.cpu_ns = thread_cpu_ns().unwrap_or(0);
    stats
}

// ---------------------------------------------------------------------------
// /proc readings.

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM…), in kB.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, field)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn status_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// user + system CPU time of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of the calling thread so far, in nanoseconds (first field of
/// schedstat: precise, unlike the clock ticks of `stat`).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The soft limit on open files of this process.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(usize::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Peak RSS of a process over a stretch of time: VmHWM after a reset through
/// clear_refs, and VmRSS sampled in the meantime (the larger wins).
struct RssWatch {
    pid: u32,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        // "5" resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0).
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .stack_size(CLIENT_STACK)
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                            peak.fetch_max(kb, Ordering::Relaxed);
                        }
                        std::thread::sleep(RSS_SAMPLE_EVERY);
                    }
                })
                .expect("spawning the RSS sampler")
        };
        RssWatch {
            pid,
            hwm_reset,
            stop,
            peak,
            sampler,
        }
    }

    /// Peak RSS in kB.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.join();
        let sampled = self.peak.load(Ordering::Relaxed);
        let hwm = if self.hwm_reset {
            proc_status_kb(self.pid, "VmHWM").unwrap_or(0)
        } else {
            0
        };
        sampled.max(hwm)
    }
}

// ---------------------------------------------------------------------------
// The souk process.

struct Souk {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

struct ColdStart {
    to_listening: Duration,
    to_ready: Duration,
}

/// Lines of the server's log kept for the report (warnings, errors, the tail).
const LOG_LINES_KEPT: usize = 200;

impl Souk {
    /// Spawns the server on a fresh database and waits for its first 200.
    fn start(bin: &Path, run: usize) -> Result<(Souk, ColdStart), String> {
        let dir = std::env::temp_dir().join(format!("souk-bench-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .env("SOUK_ADDR", "127.0.0.1:0")
            .env("SOUK_DB", dir.join("souk.db"))
            .env("SOUK_MAX_CONNECTIONS", SERVER_MAX_CONNECTIONS.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("souk-stderr".into())
                .spawn(move || {
                    let mut addr_tx = Some(addr_tx);
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if let Some(rest) = line.split("listening on http://").nth(1)
                            && let Ok(addr) = rest.trim().parse::<SocketAddr>()
                            && let Some(tx) = addr_tx.take()
                        {
                            let _ = tx.send(addr);
                        }
                        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                        if log.len() >= LOG_LINES_KEPT {
                            log.remove(0);
                        }
                        log.push(line);
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        let mut souk = Souk {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            log,
        };
        let deadline = spawned + START_TIMEOUT;
        loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    souk.addr = addr;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = souk.child.try_wait() {
                        return Err(format!(
                            "souk exited at start ({status}):\n{}",
                            souk.log_tail(20)
                        ));
                    }
                }
                Err(_) => {
                    let _ = souk.child.kill();
                    return Err(format!(
                        "souk never said `listening on`:\n{}",
                        souk.log_tail(20)
                    ));
                }
            }
        }
        let to_listening = spawned.elapsed();
        loop {
            if probe_healthz(souk.addr) == Some(200) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = souk.child.kill();
                return Err("souk never answered 200 on /healthz".into());
            }
            std::thread::sleep(PROBE_EVERY);
        }
        let to_ready = spawned.elapsed();
        Ok((
            souk,
            ColdStart {
                to_listening,
                to_ready,
            },
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at WARN or ERROR.
    fn complaints(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .cloned()
            .collect()
    }

    /// SIGTERM, then waits for the exit. Returns the status and how long it took.
    /// The exit status, once the process has ended (reaping it).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(mut self) -> Result<(ExitStatus, Duration), String> {
        if let Some(status) = self.exited() {
            return Err(format!("souk had already exited ({status}) before SIGTERM"));
        }
        let asked = Instant::now();
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !kill.success() {
            return Err(format!("kill -TERM {} failed: {kill}", self.pid()));
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Ok((status, asked.elapsed())),
                Ok(None) if asked.elapsed() < STOP_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break Err(format!(
                        "souk still running {STOP_TIMEOUT:?} after SIGTERM; killed"
                    ));
                }
                Err(e) => break Err(format!("waiting for souk: {e}")),
            }
        }
    }
}

/// A server left running by an early return or a panic is killed; its
/// database directory goes either way.
impl Drop for Souk {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `GET /healthz` on a fresh connection; the status, if any.
fn probe_healthz(addr: SocketAddr) -> Option<u16> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let mut client = Client {
        stream,
        buf: Vec::new(),
    };
    client
        .exchange(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()
        .map(|a| a.status)
}

// ---------------------------------------------------------------------------
// The ceiling: tiny_http 0.12 hello-world, in this process.

struct Tiny {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    handlers: Vec<JoinHandle<()>>,
}

impl Tiny {
    /// `handlers` threads answer requests, as many as souk has workers.
    fn start(handlers: usize) -> Tiny {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("tiny_http binds"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("tiny_http listens on TCP");
        let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
            .expect("a valid header");
        let handlers = (0..handlers)
            .map(|index| {
                let server = Arc::clone(&server);
                let header = header.clone();
                std::thread::Builder::new()
                    .name(format!("tiny-{index}"))
                    .spawn(move || {
                        while let Ok(request) = server.recv() {
                            let response = tiny_http::Response::from_string(r#"{"status":"ok"}"#)
                                .with_header(header.clone());
                            let _ = request.respond(response);
                        }
                    })
                    .expect("spawning a tiny_http handler")
            })
            .collect();
        Tiny {
            server,
            addr,
            handlers,
        }
    }

    fn stop(self) {
        for _ in &self.handlers {
            self.server.unblock();
        }
        for handler in self.handlers {
            let _ = handler.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Running the plan.

struct RowResult {
    label: String,
    conns: String,
    target: Target,
    busy: usize,
    stats: Stats,
    /// Server peak RSS, kB (souk only: tiny_http shares this process).
    peak_rss_kb: Option<u64>,
    /// Server CPU time over the row, seconds. For tiny_http: this process's
    /// CPU time less the client threads'.
    server_cpu_s: Option<f64>,
    /// Wall time the CPU times were taken over.
    span: Duration,
    /// Requests answered over that span (warm-up included).
    answered: u64,
    /// Idle connections that no longer answered after the row.
    idle_lost: Option<usize>,
}

struct Env<'a> {
    mode: &'a Mode,
    souk: &'a mut Souk,
    tiny: Option<Tiny>,
    workers: usize,
    ticks_per_s: u64,
}

fn run_row(env: &mut Env<'_>, row: &Row) -> RowResult {
    let addr = match row.target {
        Target::Souk => env.souk.addr,
        Target::TinyHttp => {
            let workers = env.workers;
            env.tiny.get_or_insert_with(|| Tiny::start(workers)).addr
        }
    };
    eprintln!(
        "  {} {} on {}: {} busy{} …",
        row.target.label(),
        row.scenario.name,
        addr,
        row.busy,
        if row.idle > 0 {
            format!(" + {} idle", row.idle)
        } else {
            String::new()
        }
    );
    let souk_pid = (row.target == Target::Souk).then(|| env.souk.pid());
    let watch = souk_pid.map(RssWatch::start);
    let mut idle = Vec::with_capacity(row.idle);
    let mut idle_failed = 0usize;
    // One deadline for all of them: a dead or stuck server cannot hold the row
    // for a timeout per connection.
    let idle_deadline = Instant::now() + CONNECT_SETUP;
    for i in 0..row.idle {
        if Instant::now() >= idle_deadline {
            idle_failed += row.idle - i;
            break;
        }
        let opened = Client::connect_until(addr, idle_deadline).and_then(|mut c| {
            let answer = c.exchange(&(row.scenario.request)(usize::MAX, i as u64))?;
            (answer.status == row.scenario.expect_status && !answer.close)
                .then_some(c)
                .ok_or_else(|| format!("status {}", answer.status))
        });
        match opened {
            Ok(client) => idle.push(client),
            Err(_) => idle_failed += 1,
        }
    }
    let server_pid = souk_pid.unwrap_or_else(std::process::id);
    let span_start = Instant::now();
    let cpu_before = proc_cpu_ticks(server_pid);
    let stats = drive(
        addr,
        row.busy,
        env.mode.warmup,
        env.mode.duration,
        row.scenario,
    );
    let cpu_after = proc_cpu_ticks(server_pid);
    let span = span_start.elapsed();
    let idle_lost = (row.idle > 0).then(|| {
        let mut still = 0;
        let deadline = Instant::now() + CONNECT_SETUP;
        for (i, client) in idle.iter_mut().enumerate() {
            if Instant::now() >= deadline {
                break;
            }
            let answer = client.exchange(&(row.scenario.request)(usize::MAX, i as u64));
            still += usize::from(answer.is_ok_and(|a| a.status == row.scenario.expect_status));
        }
        idle_failed + (idle.len() - still)
    });
    drop(idle);
    let peak_rss_kb = watch.map(RssWatch::finish);
    let server_cpu_s = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => {
            let process = b.saturating_sub(a) as f64 / env.ticks_per_s as f64;
            Some(match row.target {
                Target::Souk => process,
                Target::TinyHttp => (process - stats.client_cpu.as_secs_f64()).max(0.0),
            })
        }
        _ => None,
    };
    let answered = stats.answered;
    RowResult {
        label: format!("{} {}", row.target.label(), row.scenario.name),
        conns: if row.idle > 0 {
            format!("{} + {} idle", row.busy, row.idle)
        } else {
            row.busy.to_string()
        },
        target: row.target,
        busy: row.busy,
        stats,
        peak_rss_kb,
        server_cpu_s,
        span,
        answered,
        idle_lost,
    }
}

// ---------------------------------------------------------------------------
// Reporting.

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = status_field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{nproc} CPUs ({model}), MemTotal {:.1} GiB, Linux {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |ms| format!("{ms:.3}"))
}

fn fmt_mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a (in-process)".into(),
        |kb| format!("{:.1}", kb as f64 / 1024.0),
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn print_report(
    mode: &Mode,
    results: &[RowResult],
    cold: &[ColdStart],
    idle_rss_kb: Option<u64>,
    idle_threads: Option<u64>,
    notes: &[String],
) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## HTTP benchmark ({} mode: {:?} warm-up + {:?} measured per row)\n",
        mode.name, mode.warmup, mode.duration
    );
    let _ = writeln!(
        out,
        "| scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | server peak RSS MB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.label,
            r.conns,
            r.stats.rate(),
            fmt_ms(r.stats.ms(0.50)),
            fmt_ms(r.stats.ms(0.99)),
            fmt_ms(r.stats.ms(0.999)),
            r.stats.error_count(),
            fmt_mb(r.peak_rss_kb),
        );
    }
    let cold_ready: Vec<Duration> = cold.iter().map(|c| c.to_ready).collect();
    let cold_listen: Vec<Duration> = cold.iter().map(|c| c.to_listening).collect();
    let min = cold_ready.iter().min().copied().unwrap_or_default();
    let max = cold_ready.iter().max().copied().unwrap_or_default();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- cold start (spawn → first 200 on /healthz, fresh database): {:.1} ms median of {} (min {:.1}, max {:.1}); `listening on` logged at {:.1} ms",
        median(cold_ready).as_secs_f64() * 1e3,
        cold.len(),
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        median(cold_listen).as_secs_f64() * 1e3,
    );
    let _ = writeln!(
        out,
        "- idle RSS (500 ms after the first 200): {} MB, {} threads",
        idle_rss_kb.map_or_else(|| "?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
        idle_threads.map_or_else(|| "?".into(), |n| n.to_string()),
    );
    let _ = writeln!(out, "- machine: {}", machine());

    // souk / tiny_http at the same connection counts.
    let pairs: Vec<(&RowResult, &RowResult)> = results
        .iter()
        .filter(|r| r.target == Target::Souk && r.idle_lost.is_none())
        .filter_map(|s| {
            results
                .iter()
                .find(|t| t.target == Target::TinyHttp && t.busy == s.busy && t.idle_lost.is_none())
                .map(|t| (s, t))
        })
        .collect();
    if !pairs.is_empty() {
        let _ = writeln!(
            out,
            "\nsouk / tiny_http (req/s above 1: souk serves more; latency below 1: souk answers sooner)\n"
        );
        let _ = writeln!(out, "| scenario | conns | req/s | p50 | p99 | p99.9 |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for (s, t) in pairs {
            let q = |q: f64| {
                ratio(
                    s.stats.ms(q).unwrap_or(f64::NAN),
                    t.stats.ms(q).unwrap_or(0.0),
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                s.label,
                s.busy,
                ratio(s.stats.rate(), t.stats.rate()),
                q(0.50),
                q(0.99),
                q(0.999)
            );
        }
    }

    let _ = writeln!(
        out,
        "\nCPU over warm-up + window (% of one core; this machine has {} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| scenario | conns | server CPU % | server CPU µs/req | client CPU % |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for r in results {
        let secs = r.span.as_secs_f64();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} |",
            r.label,
            r.conns,
            r.server_cpu_s
                .map_or_else(|| "?".into(), |cpu| format!("{:.0}", 100.0 * cpu / secs)),
            r.server_cpu_s.filter(|_| r.answered > 0).map_or_else(
                || "?".into(),
                |cpu| format!("{:.1}", cpu * 1e6 / r.answered as f64)
            ),
            100.0 * r.stats.client_cpu.as_secs_f64() / secs,
        );
    }
    let _ = writeln!(out);
    for r in results {
        if let Some(lost) = r.idle_lost {
            let _ = writeln!(
                out,
                "- {} ({}): idle connections lost (not opened, or no answer to a second request after the row): {lost}",
                r.label, r.conns
            );
        }
        if !r.stats.errors.is_empty() {
            let kinds: Vec<String> = r
                .stats
                .errors
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            let _ = writeln!(
                out,
                "- errors of {} ({}): {}",
                r.label,
                r.conns,
                kinds.join(", ")
            );
        }
    }
    for note in notes {
        let _ = writeln!(out, "- {note}");
    }
    print!("{out}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.iter().any(|a| a == "--quick") {
        &QUICK
    } else if args.iter().any(|a| a == "--bench") {
        &FULL
    } else {
        &SMOKE
    };
    match run(mode) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the whole plan; `Ok(false)` when the server misbehaved (no clean exit).
fn run(mode: &Mode) -> Result<bool, String> {
    // Cargo builds the binary (with this bench's profile: release) before the
    // bench, and tells its path here.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_souk"));
    eprintln!("souk binary: {}", bin.display());
    let mut notes = Vec::new();
    let load_before = load_average();
    notes.push(format!(
        "server: {} (SOUK_MAX_CONNECTIONS={SERVER_MAX_CONNECTIONS} for the idle row; other settings default or from the environment)",
        bin.display()
    ));

    // The idle row needs a descriptor per connection in this process (and in
    // the server, which inherits the same limit).
    let biggest_busy = mode.conns.iter().copied().max().unwrap_or(1);
    let fd_limit = open_files_limit().unwrap_or(1024);
    let room = fd_limit.saturating_sub(FD_MARGIN + IDLE_ROW_BUSY.max(biggest_busy));
    let idle = mode.idle.min(room);
    if idle < mode.idle {
        notes.push(format!(
            "open-files limit is {fd_limit}: the idle row has {idle} idle connections instead of {} (raise `ulimit -n` for the full row)",
            mode.idle
        ));
    }

    // Cold starts; the last server stays up for the load.
    let mut cold = Vec::new();
    let mut clean_exits = true;
    let mut souk = None;
    for run in 0..mode.cold_starts.max(1) {
        let (started, timing) = Souk::start(&bin, run)?;
        eprintln!(
            "cold start {}: listening at {:.1} ms, first 200 at {:.1} ms",
            run + 1,
            timing.to_listening.as_secs_f64() * 1e3,
            timing.to_ready.as_secs_f64() * 1e3
        );
        cold.push(timing);
        if let Some(previous) = souk.replace(started) {
            clean_exits &= report_stop(previous, &mut notes, false);
        }
    }
    let mut souk = souk.expect("at least one start");
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kb = proc_status_kb(souk.pid(), "VmRSS");
    let idle_threads = std::fs::read_to_string(format!("/proc/{}/status", souk.pid()))
        .ok()
        .and_then(|s| status_field(&s, "Threads")?.parse().ok());

    let workers = std::env::var("SOUK_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
    notes.push(format!(
        "tiny_http 0.12: in this process, {workers} threads calling `recv()` (as many as souk's workers); it spawns a thread per connection"
    ));
    notes.push(
        "errors count failed exchanges and unexpected statuses over warm-up and window; req/s and latencies count answers completed inside the window".into(),
    );
    notes.push(
        "client: this process, one thread and one keep-alive connection per conn, closed loop (a request is sent when the previous answer is in), on the same cores as the server".into(),
    );

    let mut env = Env {
        mode,
        souk: &mut souk,
        tiny: None,
        workers,
        ticks_per_s: clock_ticks_per_second(),
    };
    eprintln!(
        "running {} rows ({} mode):",
        plan(mode, idle).len(),
        mode.name
    );
    let mut results = Vec::new();
    for row in plan(mode, idle) {
        if let Some(status) = env.souk.exited() {
            notes.push(format!(
                "souk EXITED ({status}) before the row `{} {}` ({} busy + {} idle); rows after it were skipped. Its last log lines:\n\n```\n{}\n```",
                row.target.label(),
                row.scenario.name,
                row.busy,
                row.idle,
                env.souk.log_tail(30)
            ));
            clean_exits = false;
            break;
        }
        results.push(run_row(&mut env, &row));
    }
    if let Some(tiny) = env.tiny.take() {
        tiny.stop();
    }

    notes.push(format!(
        "load average (1/5/15 min) before: {load_before}, after: {} (other work on the machine skews every number)",
        load_average()
    ));
    for line in souk.complaints() {
        notes.push(format!("server log: {line}"));
    }
    clean_exits &= report_stop(souk, &mut notes, true);
    print_report(mode, &results, &cold, idle_rss_kb, idle_threads, &notes);
    Ok(clean_exits)
}

/// Stops a server with SIGTERM; notes the outcome; `true` on exit status 0.
fn report_stop(souk: Souk, notes: &mut Vec<String>, always_note: bool) -> bool {
    match souk.stop() {
        Ok((status, took)) if status.success() => {
            if always_note {
                notes.push(format!(
                    "SIGTERM: souk exited with status 0 after {:.1} ms",
                    took.as_secs_f64() * 1e3
                ));
            }
            true
        }
        Ok((status, _)) => {
            notes.push(format!("SIGTERM: souk exited with {status} (expected 0)"));
            false
        }
        Err(e) => {
            notes.push(format!("SIGTERM: {e}"));
            false
        }
    }
}
