//! Prometheus text exposition format 0.0.4: one HELP and TYPE per family,
//! histograms as `_bucket{le=…}`, `_sum` and `_count`; `render` builds
//! every family `GET /metrics` serves.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Monitor;
use super::requests::{RouteSnapshot, code_label};
use crate::cache::Caches;
use crate::histogram::{BOUNDS_US, HistogramSnapshot};
use crate::store::Store;
use crate::store::breaker::{Breaker, State};
use crate::store::writer::{BATCH_BUCKETS, WriteStats};

#[derive(Default)]
pub struct Exposition {
    out: String,
    families: Vec<String>,
}

impl Exposition {
    /// Declares a family once; later samples of it may follow any time.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        if self.families.iter().any(|f| f == name) {
            return;
        }
        self.families.push(name.to_owned());
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram in seconds from microsecond buckets.
    pub fn histogram_seconds(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        let mut cumulative = 0u64;
        for (index, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = BOUNDS_US
                .get(index)
                .map_or("+Inf".to_owned(), |us| number(*us as f64 / 1e6));
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(h.sum_us as f64 / 1e6));
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (key, value) in all {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{key}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "NaN".to_owned()
    }
}

/// The Prometheus exposition of every figure: the requests, the store, the
/// caches, the system and the process.
pub fn render(monitor: &Monitor, store: &Store, caches: &Caches) -> String {
    let mut out = Exposition::default();
    request_families(&mut out, &monitor.requests.snapshot());
    store_families(&mut out, store);
    caches.prometheus(&mut out);
    system_families(&mut out, monitor);
    process_families(&mut out);
    out.family(
        "souk_build_info",
        "gauge",
        "Always 1; the labels say which souk this is.",
    );
    out.sample(
        "souk_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out.finish()
}

fn request_families(out: &mut Exposition, routes: &[RouteSnapshot]) {
    out.family(
        "souk_http_requests_total",
        "counter",
        "Requests answered, by method, route template and status code.",
    );
    // Only the codes a route has answered with: a series appears with its
    // first request (the duration histogram below has every route from the
    // start). Requests no route matched have no method label.
    for route in routes {
        for (slot, n) in route.codes.iter().enumerate().filter(|(_, n)| **n > 0) {
            let code = code_label(slot);
            let labels = route_labels(route, Some(&code));
            out.sample("souk_http_requests_total", &labels, *n as f64);
        }
    }
    out.family(
        "souk_http_request_duration_seconds",
        "histogram",
        "Time from request to answer, by method and route template.",
    );
    for route in routes {
        out.histogram_seconds(
            "souk_http_request_duration_seconds",
            &route_labels(route, None),
            &route.latency,
        );
    }
}

/// `method` (left out when no route matched), `route` and maybe `code`.
fn route_labels<'a>(route: &'a RouteSnapshot, code: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let method = (!route.method.is_empty()).then_some(("method", route.method.as_str()));
    method
        .into_iter()
        .chain([("route", route.route.as_str())])
        .chain(code.map(|code| ("code", code)))
        .collect()
}

/// The store: the write queue and read pool, the writer's counters, the
/// circuit breaker and the commit histograms.
fn store_families(out: &mut Exposition, store: &Store) {
    let stats = &store.writer.stats;
    store_gauges(out, store);
    writer_counters(out, stats);
    breaker_families(out, &store.breaker);
    batch_size_histogram(out, stats);
    out.family(
        "souk_commit_duration_seconds",
        "histogram",
        "Time from BEGIN to the end of COMMIT (fsync included).",
    );
    out.histogram_seconds(
        "souk_commit_duration_seconds",
        &[],
        &stats.commit_latency.snapshot(),
    );
}

/// The write queue's depth and the read pool's use.
fn store_gauges(out: &mut Exposition, store: &Store) {
    let readers = store.readers.in_use();
    let gauges: [(&str, &str, f64); 3] = [
        (
            "souk_write_queue_depth",
            "Write jobs waiting for the writer.",
            store.writer.queue_depth() as f64,
        ),
        (
            "souk_db_readers_in_use",
            "Read connections handed out.",
            f64::from(readers.in_use),
        ),
        (
            "souk_db_readers_max",
            "Read connection pool size.",
            f64::from(readers.size),
        ),
    ];
    for (name, help, value) in gauges {
        out.single(name, "gauge", help, value);
    }
}

/// The writer's counters, one family each.
fn writer_counters(out: &mut Exposition, stats: &WriteStats) {
    let counters: [(&str, &str, &AtomicU64); 6] = [
        ("souk_commits_total", "Group commits.", &stats.commits),
        (
            "souk_write_jobs_total",
            "Write jobs committed.",
            &stats.jobs,
        ),
        (
            "souk_write_jobs_failed_total",
            "Write jobs rolled back alone.",
            &stats.failed_jobs,
        ),
        (
            "souk_write_savepoint_retries_total",
            "Batches run again with a savepoint per job after a job failed mid-write.",
            &stats.savepoint_retries,
        ),
        (
            "souk_commits_failed_total",
            "Commits that failed.",
            &stats.failed_commits,
        ),
        (
            "souk_write_rejected_total",
            "Writes refused because the queue was full.",
            &stats.rejected_full,
        ),
    ];
    for (name, help, counter) in counters {
        out.single(
            name,
            "counter",
            help,
            counter.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The store circuit breaker's state and how often it opened.
fn breaker_families(out: &mut Exposition, breaker: &Breaker) {
    let state = match breaker.state() {
        State::Closed => 0.0,
        State::Open => 1.0,
        State::HalfOpen => 2.0,
    };
    out.single(
        "souk_circuit_state",
        "gauge",
        "Store circuit breaker: 0 closed, 1 open, 2 half-open.",
        state,
    );
    out.single(
        "souk_circuit_opened_total",
        "counter",
        "Times the store circuit breaker opened.",
        breaker.opened_total.load(Ordering::Relaxed) as f64,
    );
}

/// Write jobs per commit, in power-of-two buckets (`WriteStats::batch_sizes`).
fn batch_size_histogram(out: &mut Exposition, stats: &WriteStats) {
    out.family(
        "souk_commit_batch_size",
        "histogram",
        "Write jobs per commit.",
    );
    let mut cumulative = 0u64;
    for index in 0..BATCH_BUCKETS {
        cumulative += stats.batch_sizes[index].load(Ordering::Relaxed);
        let le = (1u64 << index).to_string();
        out.sample(
            "souk_commit_batch_size_bucket",
            &[("le", &le)],
            cumulative as f64,
        );
    }
    out.sample(
        "souk_commit_batch_size_bucket",
        &[("le", "+Inf")],
        cumulative as f64,
    );
    out.sample(
        "souk_commit_batch_size_sum",
        &[],
        stats.jobs.load(Ordering::Relaxed) as f64,
    );
    out.sample("souk_commit_batch_size_count", &[], cumulative as f64);
}

/// The process, the database's files and filesystem. Host-wide memory and
/// CPU are left to node_exporter (they stay in the dashboard JSON); ratios
/// are 0–1, as Prometheus convention has it.
fn system_families(out: &mut Exposition, monitor: &Monitor) {
    let s = monitor.system();
    let disk_used_ratio = s.disk_used_percent / 100.0;
    let gauges: [(&str, &str, f64); 4] = [
        (
            "souk_disk_used_ratio",
            "Share of the database's filesystem in use, 0 to 1.",
            disk_used_ratio,
        ),
        (
            "souk_disk_free_bytes",
            "Free space on the database's filesystem.",
            s.disk_free_bytes as f64,
        ),
        (
            "souk_db_size_bytes",
            "Database file size.",
            s.db_bytes as f64,
        ),
        (
            "souk_wal_size_bytes",
            "Write-ahead log size.",
            s.wal_bytes as f64,
        ),
    ];
    for (name, help, value) in gauges {
        out.single(name, "gauge", help, value);
    }
    let alerts = monitor.alerts();
    out.family(
        "souk_alert_active",
        "gauge",
        "1 while an alert rule is above its threshold.",
    );
    for rule in super::alerts::RULES {
        let on = alerts.active.iter().any(|a| a.rule == rule);
        out.sample(
            "souk_alert_active",
            &[("rule", rule)],
            if on { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "souk_alert_firings_total",
        "counter",
        "Times an alert rule fired.",
    );
    for rule in super::alerts::RULES {
        let n = alerts
            .firings
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or(0, |(_, n)| *n);
        out.sample("souk_alert_firings_total", &[("rule", rule)], n as f64);
    }
}

/// The standard `process_*` families (Prometheus client library
/// conventions), each left out when /proc could not give it.
fn process_families(out: &mut Exposition) {
    let p = super::process::read();
    let families: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_memory_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes.map(|b| b as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the unix epoch, in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            p.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Most file descriptors the process may open (the soft limit).",
            p.max_fds.map(|n| n as f64),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            out.single(name, kind, help, value);
        }
    }
}
