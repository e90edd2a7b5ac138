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
/// Connection cap given to the server: room for the idle row.

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
}

pub struct Answer {
    status: u16,
    close: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
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

    pub fn read_response(&mut self) -> Result<Answer, String> {
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

    pub fn fill(&mut self) -> Result<(), String> {
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
// The load generator.

/// What one `drive` measured.
pub struct Stats {
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
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q).map(|ns| ns as f64 / 1e6)
    }
}

pub struct ThreadStats {
    ok: u64,
    answered: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram,
    cpu_ns: u64,
}

/// Runs `conns` client threads, each with its own keep-alive connection,
/// sending `scenario` requests back to back: `warmup` unmeasured, then
/// `duration` measured. Responses count when they complete inside the window.
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

pub fn note(stats: &mut ThreadStats, kind: String) {
    *stats.errors.entry(kind).or_default() += 1;
}

pub fn client_loop(
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
    addr: SocketAddr,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct ColdStart {
    to_listening: Duration,
    to_ready: Duration,
}

/// Lines of the server's log kept for the report (warnings, errors, the tail).
pub const LOG_LINES_KEPT: usize = 200;

impl Souk {
    /// Spawns the server on a fresh database and waits for its first 200.
    pub fn start(bin: &Path, run: usize) -> Result<(Souk, ColdStart), String> {
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

    /// SIGTERM, then waits for the exit. Returns the status and how long it took.
    /// The exit status, once the process has ended (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn stop(mut self) -> Result<(ExitStatus, Duration), String> {
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
pub fn probe_healthz(addr: SocketAddr) -> Option<u16> {
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

pub struct Tiny {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
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
