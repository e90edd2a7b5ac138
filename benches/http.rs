//! HTTP benchmark: the release `souk` binary against a bare tiny_http 0.12
//! hello-world (the ceiling; docs/http.md), driven by the same keep-alive client.
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
//! the number to watch. New rows: add a `Scenario` (`Scenario::simple` takes
//! a function of client thread and request number; `common::Flow` chains
//! requests) and put it in `plan`. The client, the load generator and the
//! server process are in `benches/common/mod.rs`, shared with `benches/app.rs`.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::program;
use common::{
    CONNECT_SETUP, Client, ColdStart, Flow, Launch, RssWatch, Scenario, Souk, Stats, Tiny,
    clock_ticks_per_second, cpu_during, drive, fmt_mb, fmt_ms, load_average, machine, median,
    open_files_limit, ratio, report_stop,
};

// ---------------------------------------------------------------------------
// Bounds.

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

fn healthz_request(_thread: usize, _i: u64) -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()
}

fn healthz() -> Scenario {
    Scenario::simple("GET /healthz", healthz_request, 200)
}

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
    scenario: fn() -> Scenario,
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
                scenario: healthz,
                target,
                busy,
                idle: 0,
            });
        }
    }
    if idle > 0 {
        rows.push(Row {
            scenario: healthz,
            target: Target::Souk,
            busy: IDLE_ROW_BUSY.min(*mode.conns.last().unwrap_or(&1)),
            idle,
        });
    }
    rows
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
    let scenario = (row.scenario)();
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
        scenario.name,
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
    // The idle connections' requests come from a flow of their own.
    let mut idle_flow = scenario.flow(usize::MAX);
    let (mut idle, idle_failed) = open_idle(addr, row.idle, idle_flow.as_mut());
    let server_pid = souk_pid.unwrap_or_else(std::process::id);
    let (stats, cpu, span) = cpu_during(server_pid, env.ticks_per_s, || {
        drive(
            addr,
            row.busy,
            env.mode.warmup,
            env.mode.duration,
            &scenario,
        )
    });
    let idle_lost = (row.idle > 0)
        .then(|| idle_failed + (idle.len() - still_answering(&mut idle, idle_flow.as_mut())));
    drop(idle);
    let peak_rss_kb = watch.map(RssWatch::finish);
    let server_cpu_s = cpu.map(|process| match row.target {
        Target::Souk => process,
        Target::TinyHttp => (process - stats.client_cpu.as_secs_f64()).max(0.0),
    });
    let answered = stats.answered;
    RowResult {
        label: format!("{} {}", row.target.label(), scenario.name),
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

/// Opens `count` idle keep-alive connections, each answered once; the ones
/// that opened and how many did not. One deadline for all of them: a dead
/// or stuck server cannot hold the row for a timeout per connection.
fn open_idle(addr: SocketAddr, count: usize, flow: &mut dyn Flow) -> (Vec<Client>, usize) {
    let mut idle = Vec::with_capacity(count);
    let mut failed = 0usize;
    let deadline = Instant::now() + CONNECT_SETUP;
    for i in 0..count {
        if Instant::now() >= deadline {
            failed += count - i;
            break;
        }
        let opened = Client::connect_until(addr, deadline).and_then(|mut c| {
            let answer = c.exchange(&flow.request())?;
            match flow.answer(answer.status, c.body()) {
                Ok(true) if !answer.close => Ok(c),
                Ok(_) => Err("closed or unfinished".to_string()),
                Err(e) => Err(e),
            }
        });
        match opened {
            Ok(client) => idle.push(client),
            Err(_) => failed += 1,
        }
    }
    (idle, failed)
}

/// How many of the idle connections still answer a request after the row.
fn still_answering(idle: &mut [Client], flow: &mut dyn Flow) -> usize {
    let mut still = 0;
    let deadline = Instant::now() + CONNECT_SETUP;
    for client in idle {
        if Instant::now() >= deadline {
            break;
        }
        let answer = client.exchange(&flow.request());
        still +=
            usize::from(answer.is_ok_and(|a| flow.answer(a.status, client.body()) == Ok(true)));
    }
    still
}

// ---------------------------------------------------------------------------
// Reporting.

fn print_report(
    mode: &Mode,
    results: &[RowResult],
    cold: &[ColdStart],
    idle: &program::Idle,
    notes: &[String],
) {
    let mut out = String::new();
    write_rows(&mut out, mode, results);
    write_cold_start(&mut out, cold, idle);
    write_ratios(&mut out, results);
    write_cpu(&mut out, results);
    let _ = writeln!(out);
    for r in results {
        if let Some(lost) = r.idle_lost {
            let _ = writeln!(
                out,
                "- {} ({}): idle connections lost (not opened, or no answer to a second request after the row): {lost}",
                r.label, r.conns
            );
        }
        program::write_errors(&mut out, &r.label, &r.conns, &r.stats);
    }
    program::write_notes(&mut out, notes);
    program::print(&out);
}

/// The title and the table of every row.
fn write_rows(out: &mut String, mode: &Mode, results: &[RowResult]) {
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
}

/// Cold start, idle RSS and the machine.
fn write_cold_start(out: &mut String, cold: &[ColdStart], idle: &program::Idle) {
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
        program::fmt_rss_mb(idle.rss_kb),
        idle.threads.map_or_else(|| "?".into(), |n| n.to_string()),
    );
    let _ = writeln!(out, "- machine: {}", machine());
}

/// souk / tiny_http at the same connection counts.
fn write_ratios(out: &mut String, results: &[RowResult]) {
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
}

/// CPU of the server and of the client over each row.
fn write_cpu(out: &mut String, results: &[RowResult]) {
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
}

// ---------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    program::exit_code(run(program::mode_from_args(&FULL, &QUICK, &SMOKE)))
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
    let idle_conns = idle_connections(mode, &mut notes);
    let (mut souk, cold, mut clean_exits) = cold_starts(&bin, mode, &mut notes)?;
    let idle = program::Idle::read(souk.pid());

    let workers = program::server_workers();
    notes.push(format!(
        "{}; it spawns a thread per connection",
        program::tiny_http_note(workers)
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
    let (results, ran_all) = run_plan(&mut env, idle_conns, &mut notes);
    clean_exits &= ran_all;
    if let Some(tiny) = env.tiny.take() {
        tiny.stop();
    }

    notes.push(program::load_note(&load_before));
    for line in souk.complaints() {
        notes.push(format!("server log: {line}"));
    }
    clean_exits &= report_stop(souk, &mut notes, true);
    print_report(mode, &results, &cold, &idle, &notes);
    Ok(clean_exits)
}

/// Idle connections of the idle row: the mode's, as far as the open-files
/// limit leaves room. The idle row needs a descriptor per connection in this
/// process (and in the server, which inherits the same limit).
fn idle_connections(mode: &Mode, notes: &mut Vec<String>) -> usize {
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
    idle
}

/// Cold starts on fresh databases; the last server stays up for the load.
/// Also whether every earlier one stopped cleanly.
fn cold_starts(
    bin: &Path,
    mode: &Mode,
    notes: &mut Vec<String>,
) -> Result<(Souk, Vec<ColdStart>, bool), String> {
    let mut cold = Vec::new();
    let mut clean_exits = true;
    let mut souk = None;
    for run in 0..mode.cold_starts.max(1) {
        let launch = Launch::fresh(run)?.env("SOUK_MAX_CONNECTIONS", SERVER_MAX_CONNECTIONS);
        let (started, timing) = Souk::start(bin, launch)?;
        eprintln!(
            "cold start {}: listening at {:.1} ms, first 200 at {:.1} ms",
            run + 1,
            timing.to_listening.as_secs_f64() * 1e3,
            timing.to_ready.as_secs_f64() * 1e3
        );
        cold.push(timing);
        if let Some(previous) = souk.replace(started) {
            clean_exits &= report_stop(previous, notes, false);
        }
    }
    let souk = souk.expect("at least one start");
    Ok((souk, cold, clean_exits))
}

/// Runs the plan's rows; stops at the first row the server is found dead
/// before (then the second value is `false`).
fn run_plan(
    env: &mut Env<'_>,
    idle_conns: usize,
    notes: &mut Vec<String>,
) -> (Vec<RowResult>, bool) {
    let plan = plan(env.mode, idle_conns);
    eprintln!("running {} rows ({} mode):", plan.len(), env.mode.name);
    let mut results = Vec::new();
    for row in plan {
        if let Some(status) = env.souk.exited() {
            notes.push(format!(
                "souk EXITED ({status}) before the row `{} {}` ({} busy + {} idle); rows after it were skipped. Its last log lines:\n\n```\n{}\n```",
                row.target.label(),
                (row.scenario)().name,
                row.busy,
                row.idle,
                env.souk.log_tail(30)
            ));
            return (results, false);
        }
        results.push(run_row(env, &row));
    }
    (results, true)
}
