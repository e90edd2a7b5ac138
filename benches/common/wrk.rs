//! The machine's own ceilings for `benches/app.rs` (only that program
//! includes this file): the `wrk` load generator, a parser of its
//! `--latency` report, and an nginx serving souk's `/healthz` body, started
//! as a child process with everything of its own in the bench's temporary
//! directory. Both come from Debian (`apt-get install nginx-light wrk`);
//! where one is missing the rows that need it are skipped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PROBE_EVERY, probe_healthz, run_logged, terminate};

/// Where Debian installs the tools; `PATH` is searched when they are not there.
pub const WRK_USUAL: &str = "/usr/bin/wrk";
pub const NGINX_USUAL: &str = "/usr/sbin/nginx";
/// wrk's threads (`-t`): one per core of the 2-core machine the figures are from.
pub const WRK_THREADS: usize = 2;
/// nginx's `worker_processes`: as many as the machine's cores.
pub const NGINX_WORKERS: usize = 2;
/// nginx's `worker_connections`: far above the rows' 64 connections.
pub const NGINX_WORKER_CONNECTIONS: usize = 1024;
/// nginx's `keepalive_requests`: its default (1,000) closes a connection
/// after 1,000 requests and wrk would reconnect every few milliseconds;
/// souk keeps a connection for as long as the client does.
pub const NGINX_KEEPALIVE_REQUESTS: u64 = 100_000_000;
/// How long nginx may take to answer its first request.
pub const NGINX_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nginx may take to exit after SIGTERM (fast shutdown).
pub const NGINX_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its `-d` one wrk run may take before it is killed.
pub const WRK_GRACE: Duration = Duration::from_secs(30);
/// The body nginx answers with: souk's `GET /healthz` body.
pub const HEALTHZ_BODY: &str = r#"{"status":"ok"}"#;

/// The tool at its usual place, else the first `name` on `PATH`.
pub fn locate(name: &str, usual: &str) -> Option<PathBuf> {
    let usual = PathBuf::from(usual);
    if usual.is_file() {
        return Some(usual);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// wrk's report.

/// What one `wrk --latency` run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkRun {
    pub requests: u64,
    /// `Requests/sec`.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `Non-2xx or 3xx responses` (absent from the report when 0).
    pub non_2xx: u64,
    /// `Socket errors` summed: connect, read, write, timeout.
    pub socket_errors: u64,
}

impl WrkRun {
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }

    /// The errors in words, empty when there were none.
    pub fn error_text(&self) -> String {
        match (self.non_2xx, self.socket_errors) {
            (0, 0) => String::new(),
            (n, 0) => format!("{n} non-2xx/3xx"),
            (0, s) => format!("{s} socket errors"),
            (n, s) => format!("{n} non-2xx/3xx, {s} socket errors"),
        }
    }
}

/// A latency as wrk prints it (`812.00us`, `1.20ms`, `2.01s`, `1.00m`), in ms.
fn latency_ms(text: &str) -> Option<f64> {
    let units = [
        ("us", 1e-3),
        ("ms", 1.0),
        ("s", 1e3),
        ("m", 60e3),
        ("h", 3600e3),
    ];
    units.iter().find_map(|(suffix, scale)| {
        let number: f64 = text.strip_suffix(suffix)?.parse().ok()?;
        Some(number * scale)
    })
}

/// Parses the report of `wrk --latency`: `Requests/sec`, the count of
/// requests, the 50 % and 99 % lines of the latency distribution, and the
/// error lines.
pub fn parse(text: &str) -> Result<WrkRun, String> {
    let (mut requests, mut rate, mut p50, mut p99) = (None, None, None, None);
    let (mut non_2xx, mut socket_errors) = (0u64, 0u64);
    let mut in_distribution = false;
    for line in text.lines().map(str::trim) {
        if line == "Latency Distribution" {
            in_distribution = true;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rate = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().map_err(|_| format!("wrk: `{line}`"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                let n = part
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse::<u64>().ok());
                socket_errors += n.ok_or_else(|| format!("wrk: `{line}`"))?;
            }
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
        } else if in_distribution && let Some((percent, value)) = line.split_once('%') {
            match percent {
                "50" => p50 = latency_ms(value.trim()),
                "99" => p99 = latency_ms(value.trim()),
                _ => {}
            }
        }
    }
    let missing = |what: &str| {
        let head: Vec<&str> = text.lines().take(20).collect();
        format!("wrk's report has no {what}:\n{}", head.join("\n"))
    };
    Ok(WrkRun {
        requests: requests.ok_or_else(|| missing("`N requests in` line"))?,
        rate: rate.ok_or_else(|| missing("Requests/sec"))?,
        p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
    })
}

/// Reports of wrk 4.1 and what `parse` must read from them.
const SAMPLES: [(&str, WrkRun); 2] = [
    (
        "Running 2s test @ http://127.0.0.1:8080/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.07ms    2.04ms  17.05ms   89.27%
    Req/Sec    73.43k    21.54k  134.84k    80.95%
  Latency Distribution
     50%  333.00us
     75%  678.00us
     90%    3.33ms
     99%   10.21ms
  153527 requests in 1.10s, 24.74MB read
Requests/sec: 139451.34
Transfer/sec:     22.48MB
",
        WrkRun {
            requests: 153_527,
            rate: 139_451.34,
            p50_ms: 0.333,
            p99_ms: 10.21,
            non_2xx: 0,
            socket_errors: 0,
        },
    ),
    (
        "Running 2s test @ http://127.0.0.1:8080/api/v1/wallet
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   401.50ms  600.00ms   1.99s    80.00%
    Req/Sec   100.00     50.00   200.00     70.00%
  Latency Distribution
     50%    1.20ms
     75%   20.00ms
     90%  900.00ms
     99%    1.50s
  400 requests in 2.00s, 80.00KB read
  Socket errors: connect 0, read 3, write 0, timeout 5
  Non-2xx or 3xx responses: 12
Requests/sec:    199.90
Transfer/sec:     40.00KB
",
        WrkRun {
            requests: 400,
            rate: 199.9,
            p50_ms: 1.2,
            p99_ms: 1500.0,
            non_2xx: 12,
            socket_errors: 8,
        },
    ),
];

/// The parser against the samples (run by every mode of the bench, the
/// smoke run of `cargo test` included: bench programs have no unit tests).
pub fn self_check() -> Result<(), String> {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for (text, want) in &SAMPLES {
        let got = parse(text)?;
        let same = got.requests == want.requests
            && close(got.rate, want.rate)
            && close(got.p50_ms, want.p50_ms)
            && close(got.p99_ms, want.p99_ms)
            && got.non_2xx == want.non_2xx
            && got.socket_errors == want.socket_errors;
        if !same {
            return Err(format!("wrk parser: read {got:?}, expected {want:?}"));
        }
    }
    if parse("Running 2s test\nunable to connect to 127.0.0.1:1 Connection refused\n").is_ok() {
        return Err("wrk parser: accepted a report without figures".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running wrk.

/// `wrk -t2 -cCONNS -dSECSs --latency [-H HEADER]… URL`, its report parsed;
/// the report is written to `log_path` while it runs (and removed).
pub fn run(
    wrk: &Path,
    url: &str,
    headers: &[String],
    conns: usize,
    secs: u64,
    log_path: &Path,
) -> Result<WrkRun, String> {
    let mut command = Command::new(wrk);
    command
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    for header in headers {
        command.arg("-H").arg(header);
    }
    command.arg(url);
    let timeout = Duration::from_secs(secs) + WRK_GRACE;
    let (ok, text, _) = run_logged(command, log_path, timeout)?;
    if !ok {
        return Err(format!("wrk failed on {url}: {text}"));
    }
    parse(&text)
}

// ---------------------------------------------------------------------------
// nginx.

/// An nginx master process (and its workers), stopped when dropped.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    error_log: PathBuf,
}

/// The configuration: `/healthz`'s answer for every path, no access log,
/// the pid file and temporary paths in `dir`, in the foreground.
fn config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "worker_processes {NGINX_WORKERS};
daemon off;
pid {d}/nginx.pid;
events {{ worker_connections {NGINX_WORKER_CONNECTIONS}; }}
http {{
    access_log off;
    keepalive_requests {NGINX_KEEPALIVE_REQUESTS};
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr};
        default_type application/json;
        location / {{ return 200 '{HEALTHZ_BODY}'; }}
    }}
}}
"
    )
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Nginx {
    /// Writes the configuration into `dir` (created), starts `bin` on a free
    /// loopback port and waits for its first 200.
    pub fn start(bin: &Path, dir: &Path) -> Result<Nginx, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, addr)).map_err(|e| format!("{}: {e}", conf.display()))?;
        let error_log = dir.join("error.log");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut nginx = Nginx {
            child,
            addr,
            error_log,
        };
        let deadline = Instant::now() + NGINX_START_TIMEOUT;
        while probe_healthz(addr) != Some(200) {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("nginx exited at start ({status}): {}", nginx.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx never answered 200 on {addr}: {}",
                    nginx.log()
                ));
            }
            std::thread::sleep(PROBE_EVERY);
        }
        Ok(nginx)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// SIGTERM (nginx's fast shutdown: the workers go with the master).
    pub fn stop(mut self) -> Result<(), String> {
        let (status, _) = terminate(&mut self.child, "nginx", NGINX_STOP_TIMEOUT)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("nginx exited with {status}: {}", self.log()))
        }
    }
}

/// Stopped by SIGTERM even on an early return: SIGKILL would leave the
/// master's workers running.
impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = terminate(&mut self.child, "nginx", NGINX_STOP_TIMEOUT);
        }
    }
}
