//! The machine-limits rows of `benches/app.rs` (only that program includes
//! this file): souk against the machine's own ceilings, in one table.
//!
//! - `GET /healthz`, and the cached `GET /wallet` and `GET /users/{id}`
//!   (signed in with a seeded session), driven by `wrk -t2 -c64 --latency`
//!   against nginx answering souk's `/healthz` body, driven the same way
//!   (`common/wrk.rs`). souk runs twice, side by side: with its default
//!   configuration (access log on, stderr read by a separate block-reading
//!   process, as journald would) on the main database, and with
//!   `SOUK_ACCESS_LOG=off` (nginx's access log is off too) on a copy; the
//!   targets are judged on the default one. For each route nginx runs
//!   right before the two souks, so that the machine's drift (other work
//!   on its two cores) falls on the three alike.
//! - durable `POST /transfers` at 64 connections (the bench's own row)
//!   against the raw rusqlite loop with 64 transfers per transaction;
//! - idle RSS after start, peak RSS with 1,000 connections, and the
//!   balance cache's hit rate over the mixed row (from the rows of the run).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Launch, Souk, fmt_ms, report_stop};
use crate::wrk::{self, Nginx, WrkRun};
use crate::{
    Ceiling, Kind, RowResult, TARGET_IDLE_RSS_MB, TARGET_PEAK_RSS_MB, copy_db, find, log_consumer,
    met, remove_db, token, user_id,
};

/// Connections of the wrk rows, the transfer row and the mixed row judged here.
pub const CONNS: usize = 64;
/// souk's `GET /healthz` req/s against nginx's, at least.
pub const TARGET_HEALTHZ_SHARE: f64 = 0.90;
/// souk's cached reads' req/s against nginx's `GET /healthz`, at least.
pub const TARGET_CACHED_SHARE: f64 = 0.75;
/// souk's durable transfers/s against the raw rusqlite loop's, at least.
pub const TARGET_TRANSFER_SHARE: f64 = 0.85;
/// The balance cache's hits over the mixed row, percent, at least.
pub const TARGET_BALANCE_HITS_PERCENT: f64 = 90.0;
/// Transfers per transaction of the storage ceiling judged against.
pub const CEILING_PER_TX: usize = 64;
/// The seeded user whose session signs the wrk rows in (never the admin),
/// and the one whose profile they read (wrk hits one URL).
const CALLER: usize = 1;
const PROFILE_OF: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    Healthz,
    Wallet,
    Profile,
}

impl Route {
    const ALL: [Route; 3] = [Route::Healthz, Route::Wallet, Route::Profile];

    fn path(self) -> String {
        match self {
            Route::Healthz => "/healthz".into(),
            Route::Wallet => "/api/v1/wallet".into(),
            Route::Profile => format!("/api/v1/users/{}", user_id(PROFILE_OF)),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Healthz => "GET /healthz",
            Route::Wallet => "GET /wallet (cached balance, signed in)",
            Route::Profile => "GET /users/{id} (cached profile, signed in)",
        }
    }

    fn target_share(self) -> f64 {
        if self == Route::Healthz {
            TARGET_HEALTHZ_SHARE
        } else {
            TARGET_CACHED_SHARE
        }
    }

    fn headers(self) -> Vec<String> {
        if self == Route::Healthz {
            Vec::new()
        } else {
            vec![format!("Authorization: Bearer {}", token(CALLER))]
        }
    }
}

/// One route's runs: nginx's ceiling, then the two souks.
pub struct RouteRuns {
    pub route: Route,
    /// nginx's `GET /healthz`, right before souk's runs of the route.
    pub nginx: Result<WrkRun, String>,
    /// souk with its default configuration (access log on).
    pub default: Result<WrkRun, String>,
    /// souk with `SOUK_ACCESS_LOG=off`.
    pub log_off: Result<WrkRun, String>,
}

/// The wrk rows of a run.
#[derive(Default)]
pub struct Limits {
    /// Why the wrk rows did not run (a missing tool, smoke mode, the filter).
    pub skipped: Option<String>,
    pub routes: Vec<RouteRuns>,
    /// wrk's `-d` of each measured run, and of the warm-up of each server.
    pub secs: u64,
    pub warmup_secs: u64,
}

impl Limits {
    pub fn skipped(why: impl Into<String>) -> Limits {
        Limits {
            skipped: Some(why.into()),
            ..Limits::default()
        }
    }
}

/// What the wrk rows run on.
pub struct Setup<'a> {
    /// The souk binary.
    pub bin: &'a Path,
    /// The main database (no other server holds it meanwhile).
    pub db: &'a Path,
    /// The bench's temporary directory (nginx's files go below it).
    pub dir: &'a Path,
    pub warmup: Duration,
    pub duration: Duration,
}

/// wrk's `-d`: whole seconds, at least one.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// wrk at CONNS connections, its report going through `log`.
struct Driver {
    wrk: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn run(&self, url: &str, headers: &[String], secs: u64) -> Result<WrkRun, String> {
        eprintln!("  wrk {url}: {CONNS} conns, {secs} s …");
        wrk::run(&self.wrk, url, headers, CONNS, secs, &self.log)
    }
}

/// The wrk rows: nginx and the two souks started side by side, warmed up,
/// then each route on the three in turn. Missing tools skip them; `Err`
/// when a server would not start. The flag is false when a server did not
/// stop cleanly.
pub fn run(setup: &Setup<'_>, notes: &mut Vec<String>) -> Result<(Limits, bool), String> {
    let wrk = wrk::locate("wrk", wrk::WRK_USUAL);
    let nginx_bin = wrk::locate("nginx", wrk::NGINX_USUAL);
    let (Some(wrk), Some(nginx_bin)) = (wrk, nginx_bin) else {
        return Ok((
            Limits::skipped(format!(
                "skipped: wrk and nginx are needed (`apt-get install nginx-light wrk`; looked at {} and {} and on PATH)",
                wrk::WRK_USUAL,
                wrk::NGINX_USUAL
            )),
            true,
        ));
    };
    let driver = Driver {
        wrk,
        log: setup.dir.join("wrk.log"),
    };
    let mut limits = Limits {
        secs: whole_secs(setup.duration),
        warmup_secs: whole_secs(setup.warmup),
        ..Limits::default()
    };
    eprintln!("machine limits (nginx {}):", nginx_bin.display());
    let nginx = Nginx::start(&nginx_bin, &setup.dir.join("nginx"))?;
    // Only one server may hold a database file: the second souk gets a copy.
    let off_db = setup.db.with_file_name("limits-log-off.db");
    copy_db(setup.db, &off_db)?;
    let wrapper = log_consumer(setup.db)?;
    let launch = |db: &Path| Launch::existing(db).env("SOUK_BENCH_BIN", setup.bin.display());
    let (default, _) = Souk::start(&wrapper, launch(setup.db))?;
    let (log_off, _) = Souk::start(&wrapper, launch(&off_db).env("SOUK_ACCESS_LOG", "off"))?;
    for addr in [nginx.addr, default.addr, log_off.addr] {
        let _ = driver.run(&format!("http://{addr}/healthz"), &[], limits.warmup_secs);
    }
    for route in Route::ALL {
        let on = |souk: &Souk| {
            let url = format!("http://{}{}", souk.addr, route.path());
            driver.run(&url, &route.headers(), limits.secs)
        };
        limits.routes.push(RouteRuns {
            route,
            nginx: driver.run(&nginx.url("/healthz"), &[], limits.secs),
            default: on(&default),
            log_off: on(&log_off),
        });
    }
    let mut clean = true;
    for souk in [default, log_off] {
        for line in souk.complaints() {
            notes.push(format!("server log (machine limits): {line}"));
        }
        clean &= report_stop(souk, notes, false);
    }
    remove_db(&off_db);
    if let Err(e) = nginx.stop() {
        notes.push(format!("nginx: {e}"));
        clean = false;
    }
    Ok((limits, clean))
}

// ---------------------------------------------------------------------------
// The table.

/// What the table is made of: the wrk rows and the rest of the run.
pub struct Facts<'a> {
    pub limits: &'a Limits,
    pub rows: &'a [RowResult],
    pub ceilings: &'a [Ceiling],
    pub users: usize,
    pub idle_rss_kb: Option<u64>,
    /// Connections of the peak-RSS row, in modes that have one.
    pub peak_conns: Option<usize>,
}

/// One line of the table.
fn line(w: &mut String, cells: [&str; 6]) {
    let _ = writeln!(w, "| {} |", cells.join(" | "));
}

fn with_errors(text: String, errors: &str) -> String {
    if errors.is_empty() {
        text
    } else {
        format!("{text}; **errors: {errors}**")
    }
}

fn percent(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.0} %", 100.0 * a / b)
    } else {
        "-".into()
    }
}

pub fn print(w: &mut String, f: &Facts<'_>) {
    let _ = writeln!(
        w,
        "\n### Machine limits: souk against the machine's own ceilings\n"
    );
    line(
        w,
        [
            "measure",
            "souk",
            "ceiling",
            "souk / ceiling",
            "target",
            "met",
        ],
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---|---|");
    http_lines(w, f.limits);
    transfer_line(w, f.rows, f.ceilings);
    memory_lines(w, f);
    hit_rate_line(w, f.rows);
    if f.limits.skipped.is_none() {
        let _ = writeln!(
            w,
            "\nwrk rows: `wrk -t{} -c{CONNS} -d{}s --latency`, one URL each (signed-in rows: user {CALLER}'s seeded session; the profile of user {PROFILE_OF}), after a {}-second wrk warm-up per server; wrk's own 2 threads share the 2 cores with the server. nginx: Debian's nginx-light, `worker_processes {}`, `access_log off`, `keepalive_requests {}` (its default 1,000 would make wrk reconnect), `return 200 '{}'` with `default_type application/json`. The three servers run side by side; for each route nginx runs right before the two souks, and is their ceiling. souk: its default configuration on the main database (access log on; stderr read by a separate block-reading process, as journald would), and `SOUK_ACCESS_LOG=off` on a copy. Errors: wrk's non-2xx/3xx responses and socket errors; a row with any misses its target.",
            wrk::WRK_THREADS,
            f.limits.secs,
            f.limits.warmup_secs,
            wrk::NGINX_WORKERS,
            wrk::NGINX_KEEPALIVE_REQUESTS,
            wrk::HEALTHZ_BODY,
        );
    }
}

/// Per route: nginx's run, then each souk's req/s against it, and (on the
/// default configuration) souk's p99 against nginx's.
fn http_lines(w: &mut String, limits: &Limits) {
    if let Some(why) = &limits.skipped {
        line(
            w,
            [
                &format!("GET /healthz, /wallet, /users/{{id}} against nginx (wrk, {CONNS} conns)"),
                why,
                "",
                "",
                "≥ 90 % / ≥ 75 % of nginx's req/s; p99 ≤ nginx's",
                "-",
            ],
        );
        return;
    }
    for r in &limits.routes {
        let measure = format!(
            "nginx GET /healthz, {CONNS} conns (the ceiling of the {} rows below)",
            r.route.label()
        );
        let ceiling = match &r.nginx {
            Ok(run) => {
                line(w, [&measure, "", &run_text(run), "", "", ""]);
                Some(run)
            }
            Err(e) => {
                line(
                    w,
                    [&measure, "", &format!("**wrk failed**: {e}"), "", "", ""],
                );
                None
            }
        };
        souk_lines(w, r.route, true, &r.default, ceiling);
        souk_lines(w, r.route, false, &r.log_off, ceiling);
    }
}

/// req/s, p50 and p99, and the errors if any.
fn run_text(run: &WrkRun) -> String {
    let text = format!(
        "{:.0} req/s (p50 {} ms, p99 {} ms)",
        run.rate,
        fmt_ms(Some(run.p50_ms)),
        fmt_ms(Some(run.p99_ms))
    );
    with_errors(text, &run.error_text())
}

/// One souk run against nginx's run of its route: req/s, and on the
/// default configuration (`judged`) p99 too.
fn souk_lines(
    w: &mut String,
    route: Route,
    judged: bool,
    run: &Result<WrkRun, String>,
    ceiling: Option<&WrkRun>,
) {
    let config = if judged {
        "default configuration (access log on)"
    } else {
        "SOUK_ACCESS_LOG=off"
    };
    let measure = format!("souk {}, {CONNS} conns, {config}", route.label());
    let (run, ceiling) = match (run, ceiling) {
        (Ok(run), Some(ceiling)) => (run, ceiling),
        (Err(e), _) => {
            let failed = format!("**wrk failed**: {e}");
            line(w, [&measure, &failed, "", "", "", met(false)]);
            return;
        }
        (Ok(run), None) => {
            line(
                w,
                [&measure, &run_text(run), "no ceiling", "", "", met(false)],
            );
            return;
        }
    };
    let clean = run.errors() == 0 && ceiling.errors() == 0;
    let (target, ok) = if judged {
        let share = route.target_share();
        (
            format!("≥ {:.0} % of nginx's req/s", share * 100.0),
            met(clean && run.rate >= share * ceiling.rate),
        )
    } else {
        ("shown; judged on the default row".into(), "-")
    };
    line(
        w,
        [
            &measure,
            &run_text(run),
            &format!("{:.0} req/s", ceiling.rate),
            &percent(run.rate, ceiling.rate),
            &target,
            ok,
        ],
    );
    if judged {
        line(
            w,
            [
                &format!("souk {} p99, {CONNS} conns, {config}", route.label()),
                &format!("{} ms", fmt_ms(Some(run.p99_ms))),
                &format!("{} ms", fmt_ms(Some(ceiling.p99_ms))),
                &percent(run.p99_ms, ceiling.p99_ms),
                "≤ nginx's p99",
                met(clean && run.p99_ms <= ceiling.p99_ms),
            ],
        );
    }
}

/// Durable transfers over HTTP against the raw rusqlite loop.
fn transfer_line(w: &mut String, rows: &[RowResult], ceilings: &[Ceiling]) {
    let measure = format!("durable POST /transfers, {CONNS} conns (the bench's client)");
    let target = format!(
        "≥ {:.0} % of rusqlite, {CEILING_PER_TX} transfers per transaction",
        TARGET_TRANSFER_SHARE * 100.0
    );
    let row = find(rows, Kind::Transfer, CONNS);
    let ceiling = ceilings
        .iter()
        .find(|c| c.per_tx == CEILING_PER_TX && c.cache_kib.is_none());
    let (Some(row), Some(ceiling)) = (row, ceiling) else {
        let missing = match (row, ceiling) {
            (None, None) => "not run: neither the row nor the ceiling (mode or SOUK_BENCH_ROWS)",
            (None, _) => "not run at this connection count (mode or SOUK_BENCH_ROWS)",
            _ => "ceiling not run (SOUK_BENCH_ROWS)",
        };
        line(w, [&measure, missing, "", "", &target, "-"]);
        return;
    };
    let errors = row.stats.error_count();
    let text = format!(
        "{:.0} transfers/s (p99 {} ms)",
        row.stats.rate(),
        fmt_ms(row.stats.ms(0.99))
    );
    let errors_text = if errors == 0 {
        String::new()
    } else {
        format!("{errors} ({})", row.stats.error_kinds())
    };
    line(
        w,
        [
            &measure,
            &with_errors(text, &errors_text),
            &format!(
                "{:.0} transfers/s (raw rusqlite loop, right after the row)",
                ceiling.rate()
            ),
            &percent(row.stats.rate(), ceiling.rate()),
            &target,
            met(errors == 0 && row.stats.rate() >= TARGET_TRANSFER_SHARE * ceiling.rate()),
        ],
    );
}

/// Idle RSS after start and peak RSS with many connections.
fn memory_lines(w: &mut String, f: &Facts<'_>) {
    let idle = format!(
        "idle RSS 500 ms after the first 200, {}-user database",
        f.users
    );
    let idle_target = format!("≤ {TARGET_IDLE_RSS_MB} MB");
    match f.idle_rss_kb {
        Some(kb) => {
            let mb = kb as f64 / 1024.0;
            let result = format!("{mb:.1} MB");
            line(
                w,
                [
                    &idle,
                    &result,
                    "",
                    "",
                    &idle_target,
                    met(mb <= TARGET_IDLE_RSS_MB),
                ],
            );
        }
        None => line(w, [&idle, "not read", "", "", &idle_target, "-"]),
    }
    let peak_target = format!("≤ {TARGET_PEAK_RSS_MB} MB");
    let peak = f.peak_conns.and_then(|c| find(f.rows, Kind::Mixed, c));
    match peak.and_then(|row| Some((row.conns, row.peak_rss_kb?))) {
        Some((conns, kb)) => {
            let mb = kb as f64 / 1024.0;
            let measure = format!("peak RSS, {conns} conns, mixed workload (fresh server)");
            let result = format!("{mb:.1} MB");
            let ok = met(mb <= TARGET_PEAK_RSS_MB);
            line(w, [&measure, &result, "", "", &peak_target, ok]);
        }
        None => line(
            w,
            [
                "peak RSS, many conns, mixed workload",
                "not run (mode or SOUK_BENCH_ROWS)",
                "",
                "",
                &peak_target,
                "-",
            ],
        ),
    }
}

/// The balance cache's hit rate over the mixed row at CONNS connections.
fn hit_rate_line(w: &mut String, rows: &[RowResult]) {
    let target = format!("≥ {TARGET_BALANCE_HITS_PERCENT:.0} %");
    let row = find(rows, Kind::Mixed, CONNS);
    let server = row.and_then(|r| r.server.as_ref());
    let measure = format!("balance-cache hit rate, mixed 80 % reads / 20 % writes, {CONNS} conns");
    match server.and_then(|s| s.hit_percent("balances")) {
        Some(p) => {
            let result = format!("{p:.1} %");
            let ok = met(p >= TARGET_BALANCE_HITS_PERCENT);
            line(w, [&measure, &result, "", "", &target, ok]);
        }
        None => line(
            w,
            [
                &measure,
                "not run (mode or SOUK_BENCH_ROWS)",
                "",
                "",
                &target,
                "-",
            ],
        ),
    }
}
