//! What the benchmark programs share (`benches/http.rs`, `benches/app.rs`
//! include it with `mod common;`): the keep-alive HTTP client and the load
//! generator (`drive`), the latency histogram, /proc readings, the souk
//! process (spawn, cold start, SIGTERM), the tiny_http ceiling and a few
//! formatting helpers; `program` is the frame both programs share (mode,
//! exit status, report notes). Each program uses a different part of it.
#![allow(dead_code)]

pub mod program;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
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
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client thread keeps trying to open its connection before the run.
pub const CONNECT_SETUP: Duration = Duration::from_secs(10);
/// Read and write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed request before the thread reconnects.
pub const ERROR_PAUSE: Duration = Duration::from_millis(1);
/// Longest response head the client accepts.
pub const RESPONSE_HEAD_MAX: usize = 64 * 1024;
/// Longest response body the client accepts.
pub const RESPONSE_BODY_MAX: usize = 16 * 1024 * 1024;
/// Stack of a client thread (buffers and histogram live on the heap).
pub const CLIENT_STACK: usize = 128 * 1024;
/// How often the server's VmRSS is sampled during a row.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How long cold start may take before the bench gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Gap between two `/healthz` probes during cold start.
pub const PROBE_EVERY: Duration = Duration::from_micros(500);
/// How long a SIGTERM'd server may take to exit (its own grace is 30 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------
// Latency histogram: log-linear, 128 sub-buckets per power of two (< 0.8 %
// relative error), in nanoseconds, up to ~275 s (longer values are clamped).

pub const SUB_BITS: u32 = 7;
pub const SUB: u64 = 1 << SUB_BITS;
pub const MAX_SHIFT: u32 = 30;
pub const BUCKETS: usize = (MAX_SHIFT as usize + 2) * SUB as usize;

pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    pub fn index(value: u64) -> usize {
        let value = value.min(((2 * SUB) << MAX_SHIFT) - 1);
        if value < 2 * SUB {
            return value as usize;
        }
        let shift = 63 - value.leading_zeros() - SUB_BITS;
        ((shift as u64 + 1) * SUB + ((value >> shift) - SUB)) as usize
    }

    /// The middle of the values that fall in bucket `index`.
    pub fn value_at(index: usize) -> u64 {
        let index = index as u64;
        if index < 2 * SUB {
            return index;
        }
        let shift = index / SUB - 1;
        let mantissa = index % SUB + SUB;
        let low = mantissa << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    pub fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in nanoseconds.
    pub fn quantile(&self, q: f64) -> Option<u64> {
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

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` that belong to the last response; dropped
    /// when the next one is read.
    consumed: usize,
    /// Where the last response's body is in `buf`.
    body: Range<usize>,
}

pub struct Answer {
    pub status: u16,
    pub close: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client::over(stream))
    }

    fn over(stream: TcpStream) -> Client {
        Client {
            stream,
            buf: Vec::with_capacity(4096),
            consumed: 0,
            body: 0..0,
        }
    }

    /// The body of the last response read.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// Connects, retrying until `deadline` (a full accept backlog drops SYNs).
    pub fn connect_until(addr: SocketAddr, deadline: Instant) -> Result<Client, String> {
        loop {
            match Client::connect(addr) {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => return Err(error_kind(&e)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Sends one request and reads its final (non-1xx) response.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
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
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.body = 0..0;
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
        self.consumed = total;
        self.body = head_end..total;
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

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn error_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Scenarios: what each client thread sends, and how it judges the answers.

/// The requests of one client thread. An iteration is one request or a chain
/// of them (say, create an escrow, then release it); its latency runs from
/// its first request to its last answer.
pub trait Flow: Send {
    /// The next request: the bytes of one whole HTTP/1.1 request (keep-alive).
    fn request(&mut self) -> Vec<u8>;
    /// Judges the answer to the last request: `Ok(true)` when it ends the
    /// iteration, `Ok(false)` when the iteration goes on with another request,
    /// `Err(kind)` when it is wrong (the flow starts a new iteration).
    fn answer(&mut self, status: u16, body: &[u8]) -> Result<bool, String>;
    /// The exchange failed (connection lost): start a new iteration.
    fn reset(&mut self) {}
}

/// A named kind of load: makes the flow of client thread `thread`.
pub struct Scenario {
    pub name: String,
    flow: Box<dyn Fn(usize) -> Box<dyn Flow>>,
}

impl Scenario {
    pub fn new(name: impl Into<String>, flow: impl Fn(usize) -> Box<dyn Flow> + 'static) -> Self {
        Scenario {
            name: name.into(),
            flow: Box::new(flow),
        }
    }

    /// One request per iteration: `request(thread, i)` gives request number
    /// `i` of client thread `thread`; the answer must have status `expect`.
    pub fn simple(
        name: impl Into<String>,
        request: fn(usize, u64) -> Vec<u8>,
        expect: u16,
    ) -> Self {
        Scenario::new(name, move |thread| {
            Box::new(Simple {
                thread,
                i: 0,
                request,
                expect,
            })
        })
    }

    pub fn flow(&self, thread: usize) -> Box<dyn Flow> {
        (self.flow)(thread)
    }
}

struct Simple {
    thread: usize,
    i: u64,
    request: fn(usize, u64) -> Vec<u8>,
    expect: u16,
}

impl Flow for Simple {
    fn request(&mut self) -> Vec<u8> {
        let bytes = (self.request)(self.thread, self.i);
        self.i += 1;
        bytes
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        if status == self.expect {
            Ok(true)
        } else {
            Err(format!("status {status}"))
        }
    }
}

// ---------------------------------------------------------------------------
// The load generator.

/// What one `drive` measured.
pub struct Stats {
    /// Iterations that completed inside the window.
    pub ok: u64,
    /// Iterations completed, warm-up included.
    pub answered: u64,
    /// HTTP exchanges that got a well-formed answer, warm-up included.
    pub exchanges: u64,
    /// Failed exchanges and unexpected answers, warm-up included, by kind.
    pub errors: BTreeMap<String, u64>,
    pub latency: Histogram,
    pub window: Duration,
    /// CPU time of the client threads, from their start to their end.
    pub client_cpu: Duration,
}

impl Stats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Iterations per second inside the window.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q).map(|ns| ns as f64 / 1e6)
    }

    /// `kind ×n, …` of the errors.
    pub fn error_kinds(&self) -> String {
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        kinds.join(", ")
    }
}

pub struct ThreadStats {
    ok: u64,
    answered: u64,
    exchanges: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram,
    cpu_ns: u64,
}

/// Runs `conns` client threads, each with its own keep-alive connection,
/// running `scenario`'s iterations back to back: `warmup` unmeasured, then
/// `duration` measured. Iterations count when they complete inside the window.
pub fn drive(
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
        let flow = scenario.flow(thread);
        let handle = std::thread::Builder::new()
            .name(format!("client-{thread}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || client_loop(addr, &barrier, warmup, duration, flow))
            .expect("spawning a client thread");
        handles.push(handle);
    }
    barrier.wait();
    let mut stats = Stats {
        ok: 0,
        answered: 0,
        exchanges: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new(),
        window: duration,
        client_cpu: Duration::ZERO,
    };
    for handle in handles {
        let one = handle.join().expect("a client thread panicked");
        stats.ok += one.ok;
        stats.answered += one.answered;
        stats.exchanges += one.exchanges;
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

/// The open connection, or a new one; `None` (noted, after a pause) when
/// connecting fails.
fn connected<'a>(
    client: &'a mut Option<Client>,
    addr: SocketAddr,
    stats: &mut ThreadStats,
) -> Option<&'a mut Client> {
    if client.is_none() {
        match Client::connect(addr) {
            Ok(conn) => *client = Some(conn),
            Err(e) => {
                note(stats, format!("connect: {}", error_kind(&e)));
                std::thread::sleep(ERROR_PAUSE);
                return None;
            }
        }
    }
    client.as_mut()
}

/// Books the flow's verdict on one answer, which came at `done` in an
/// iteration `started` then: a finished iteration (`Ok(true)`) is answered
/// and, once measuring, counted with its latency; a refusal is noted.
/// Whether the iteration ended.
fn book_answer(
    stats: &mut ThreadStats,
    verdict: Result<bool, String>,
    measure_from: Instant,
    started: Instant,
    done: Instant,
) -> bool {
    stats.exchanges += 1;
    match verdict {
        Ok(true) => {
            stats.answered += 1;
            if done >= measure_from {
                stats.ok += 1;
                stats.latency.record((done - started).as_nanos() as u64);
            }
            true
        }
        Ok(false) => false,
        Err(kind) => {
            note(stats, kind);
            true
        }
    }
}

fn client_loop(
    addr: SocketAddr,
    barrier: &Barrier,
    warmup: Duration,
    duration: Duration,
    mut flow: Box<dyn Flow>,
) -> ThreadStats {
    let mut stats = ThreadStats {
        ok: 0,
        answered: 0,
        exchanges: 0,
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
    // When the current iteration's first request was sent.
    let mut iteration_start: Option<Instant> = None;
    while Instant::now() < end {
        let Some(conn) = connected(&mut client, addr, &mut stats) else {
            continue;
        };
        let bytes = flow.request();
        let started = *iteration_start.get_or_insert_with(Instant::now);
        let result = conn.exchange(&bytes);
        let done = Instant::now();
        if done > end {
            break;
        }
        match result {
            Ok(answer) => {
                let verdict = flow.answer(answer.status, conn.body());
                if book_answer(&mut stats, verdict, measure_from, started, done) {
                    iteration_start = None;
                }
                if answer.close {
                    client = None;
                }
            }
            Err(e) => {
                note(&mut stats, e);
                flow.reset();
                iteration_start = None;
                client = None;
                std::thread::sleep(ERROR_PAUSE);
            }
        }
    }
    stats.cpu_ns = thread_cpu_ns().unwrap_or(0);
    stats
}

/// One request on a fresh connection: the status and the body.
pub fn call(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut client = Client::connect(addr).map_err(|e| error_kind(&e))?;
    let answer = client.exchange(request)?;
    Ok((answer.status, client.body().to_vec()))
}

/// Runs `work` and returns its result with the CPU seconds `pid` spent
/// meanwhile (user + system, from clock ticks) and the wall time it took.
pub fn cpu_during<T>(
    pid: u32,
    ticks_per_s: u64,
    work: impl FnOnce() -> T,
) -> (T, Option<f64>, Duration) {
    let started = Instant::now();
    let before = proc_cpu_ticks(pid);
    let value = work();
    let after = proc_cpu_ticks(pid);
    let span = started.elapsed();
    let cpu = match (before, after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_s as f64),
        _ => None,
    };
    (value, cpu, span)
}
// ---------------------------------------------------------------------------
// /proc readings.

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM…), in kB.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, field)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub fn status_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// user + system CPU time of a process, in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of a process's live threads so far, in nanoseconds, summed by
/// thread name with a trailing `-N` dropped (`worker-3` counts as `worker`).
pub fn threads_cpu_ns(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let comm = comm.trim();
        let name = match comm.rsplit_once('-') {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => comm,
        };
        *out.entry(name.to_owned()).or_default() += ns;
    }
    out
}

/// CPU time of the calling thread so far, in nanoseconds (first field of
/// schedstat: precise, unlike the clock ticks of `stat`).
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The soft limit on open files of this process.
pub fn open_files_limit() -> Option<usize> {
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
pub struct RssWatch {
    pid: u32,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: JoinHandle<()>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
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
    pub fn finish(self) -> u64 {
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

pub struct Souk {
    child: Child,
    pub addr: SocketAddr,
    /// Removed when the server is dropped (a fresh database's directory).
    owned_dir: Option<PathBuf>,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct ColdStart {
    pub to_listening: Duration,
    pub to_ready: Duration,
}

/// How to start a server: its database and its environment.
pub struct Launch {
    pub db: PathBuf,
    /// A directory removed with the server (`None`: the database is kept).
    pub owned_dir: Option<PathBuf>,
    /// Extra environment (`SOUK_ADDR`, `SOUK_DB` and `RUST_LOG` are set).
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// A fresh database in a new directory of its own (removed with the server).
    pub fn fresh(run: usize) -> Result<Launch, String> {
        let dir = std::env::temp_dir().join(format!("souk-bench-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Launch {
            db: dir.join("souk.db"),
            owned_dir: Some(dir),
            env: Vec::new(),
        })
    }

    /// An existing database, kept when the server goes.
    pub fn existing(db: &Path) -> Launch {
        Launch {
            db: db.to_owned(),
            owned_dir: None,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: impl ToString) -> Launch {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }
}

/// Reads the server's stderr on a thread of its own: keeps the last
/// `LOG_LINES_KEPT` lines in `log` and sends the address of the first
/// `listening on` line.
fn follow_log(
    stderr: std::process::ChildStderr,
    log: Arc<Mutex<Vec<String>>>,
) -> Result<mpsc::Receiver<SocketAddr>, String> {
    let (addr_tx, addr_rx) = mpsc::channel();
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
    Ok(addr_rx)
}

/// Lines of the server's log kept for the report (warnings, errors, the tail).
pub const LOG_LINES_KEPT: usize = 200;

impl Souk {
    /// Spawns the server and waits for its first 200 on `/healthz`.
    pub fn start(bin: &Path, launch: Launch) -> Result<(Souk, ColdStart), String> {
        let spawned = Instant::now();
        let mut command = Command::new(bin);
        command
            .env("SOUK_ADDR", "127.0.0.1:0")
            .env("SOUK_DB", &launch.db)
            .env("RUST_LOG", "info");
        for (name, value) in &launch.env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr_rx = follow_log(stderr, Arc::clone(&log))?;
        let mut souk = Souk {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            owned_dir: launch.owned_dir,
            log,
        };
        let deadline = spawned + START_TIMEOUT;
        souk.addr = souk.wait_listening(&addr_rx, deadline)?;
        let to_listening = spawned.elapsed();
        souk.wait_healthy(deadline)?;
        let to_ready = spawned.elapsed();
        Ok((
            souk,
            ColdStart {
                to_listening,
                to_ready,
            },
        ))
    }

    /// The address the server says it listens on, before `deadline`.
    fn wait_listening(
        &mut self,
        addr_rx: &mpsc::Receiver<SocketAddr>,
        deadline: Instant,
    ) -> Result<SocketAddr, String> {
        loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => return Ok(addr),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!(
                            "souk exited at start ({status}):\n{}",
                            self.log_tail(20)
                        ));
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    return Err(format!(
                        "souk never said `listening on`:\n{}",
                        self.log_tail(20)
                    ));
                }
            }
        }
    }

    /// Probes `/healthz` until it answers 200, before `deadline`.
    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if probe_healthz(self.addr) == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return Err("souk never answered 200 on /healthz".into());
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at WARN or ERROR.
    pub fn complaints(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .cloned()
            .collect()
    }

    /// The exit status, once the process has ended (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for the exit. Returns the status and how long it took.
    pub fn stop(mut self) -> Result<(ExitStatus, Duration), String> {
        if let Some(status) = self.exited() {
            return Err(format!("souk had already exited ({status}) before SIGTERM"));
        }
        terminate(&mut self.child, "souk", STOP_TIMEOUT)
    }
}

/// SIGTERM to `child` (`name` in messages), then waits up to `timeout` for
/// its exit, and kills it after that. Returns the status and how long the
/// exit took.
pub fn terminate(
    child: &mut Child,
    name: &str,
    timeout: Duration,
) -> Result<(ExitStatus, Duration), String> {
    let asked = Instant::now();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !kill.success() {
        return Err(format!("kill -TERM {} ({name}) failed: {kill}", child.id()));
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok((status, asked.elapsed())),
            Ok(None) if asked.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{name} still running {timeout:?} after SIGTERM; killed"
                ));
            }
            Err(e) => break Err(format!("waiting for {name}: {e}")),
        }
    }
}

/// Runs `command` with its stdout and stderr going to `log_path` (a pipe
/// nobody reads while waiting could fill up and stall it), for at most
/// `timeout` (killed after that). Returns whether it succeeded, its output
/// (the file is removed) and its wall time.
pub fn run_logged(
    mut command: Command,
    log_path: &Path,
    timeout: Duration,
) -> Result<(bool, String, Duration), String> {
    let what = format!("{:?}", command.get_program());
    let log =
        std::fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_too = log.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_too)
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} took over {timeout:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let _ = std::fs::remove_file(log_path);
    Ok((status.success(), text.trim().to_owned(), took))
}

/// A server left running by an early return or a panic is killed; the
/// directory of a fresh database goes either way.
impl Drop for Souk {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One `GET /healthz` on a fresh connection; the status, if any.
pub fn probe_healthz(addr: SocketAddr) -> Option<u16> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    Client::over(stream)
        .exchange(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()
        .map(|a| a.status)
}

// ---------------------------------------------------------------------------
// The ceiling: tiny_http 0.12 hello-world, in this process.

pub struct Tiny {
    server: Arc<tiny_http::Server>,
    pub addr: SocketAddr,
    handlers: Vec<JoinHandle<()>>,
}

impl Tiny {
    /// `handlers` threads answer requests, as many as souk has workers.
    pub fn start(handlers: usize) -> Tiny {
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

    pub fn stop(self) {
        for _ in &self.handlers {
            self.server.unblock();
        }
        for handler in self.handlers {
            let _ = handler.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting helpers.

pub fn machine() -> String {
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

pub fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |ms| format!("{ms:.3}"))
}

pub fn fmt_mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a (in-process)".into(),
        |kb| format!("{:.1}", kb as f64 / 1024.0),
    )
}

pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Stops a server with SIGTERM; notes the outcome; `true` on exit status 0.
pub fn report_stop(souk: Souk, notes: &mut Vec<String>, always_note: bool) -> bool {
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
