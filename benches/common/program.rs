//! The frame both benchmark programs share: the mode from the command line,
//! the exit status, the idle readings after a start, the notes every report
//! carries and the report's printing.

use std::fmt::{Display, Write as _};
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use super::{Stats, proc_status_kb, status_field};

/// How long a started server idles before its idle RSS is read.
pub const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// The mode a run was asked for: `--quick` (`cargo bench -- --quick`),
/// else `--bench` (`cargo bench`: full), else the smoke run of `cargo test`.
pub fn mode_from_args<'m, M>(full: &'m M, quick: &'m M, smoke: &'m M) -> &'m M {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--quick") {
        quick
    } else if args.iter().any(|a| a == "--bench") {
        full
    } else {
        smoke
    }
}

/// The exit status of a run: success only when it ran and every server
/// behaved (`Ok(true)`).
pub fn exit_code(result: Result<bool, String>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A server's resident memory and thread count once it has idled.
pub struct Idle {
    pub rss_kb: Option<u64>,
    pub threads: Option<u64>,
}

impl Idle {
    /// Waits IDLE_SETTLE, then reads process `pid`'s VmRSS and Threads.
    pub fn read(pid: u32) -> Idle {
        std::thread::sleep(IDLE_SETTLE);
        let rss_kb = proc_status_kb(pid, "VmRSS");
        let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| status_field(&s, "Threads")?.parse().ok());
        Idle { rss_kb, threads }
    }
}

/// Worker threads of the tiny_http ceiling: `SOUK_WORKERS`, else souk's
/// default (two per core).
pub fn server_workers() -> usize {
    std::env::var("SOUK_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The note on the tiny_http ceiling.
pub fn tiny_http_note(workers: usize) -> String {
    format!(
        "tiny_http 0.12: in this process, {workers} threads calling `recv()` (as many as souk's workers)"
    )
}

/// The note on the machine's load before and after the run.
pub fn load_note(load_before: &str) -> String {
    format!(
        "load average (1/5/15 min) before: {load_before}, after: {} (other work on the machine skews every number)",
        super::load_average()
    )
}

/// The report's line on a row's errors, if it had any (`conns` says how
/// many connections, as the row's table does).
pub fn write_errors(w: &mut String, label: &str, conns: impl Display, stats: &Stats) {
    if !stats.errors.is_empty() {
        let _ = writeln!(w, "- errors of {label} ({conns}): {}", stats.error_kinds());
    }
}

/// The report's closing list of notes.
pub fn write_notes(w: &mut String, notes: &[String]) {
    for note in notes {
        let _ = writeln!(w, "- {note}");
    }
}

/// Prints the report to stdout in one piece.
pub fn print(out: &str) {
    print!("{out}");
    let _ = io::stdout().flush();
}

/// Kilobytes of a /proc reading as MB with one decimal; `?` when it could
/// not be read.
pub fn fmt_rss_mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}
