//! Monitoring routes: `/metrics` (Prometheus), the admin dashboard JSON, the
//! admin metrics export and alerts. They only read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Params, auth, query, respond};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Reply, Request, Response};
use crate::limits::WRITE_QUEUE_MAX;
use crate::monitor::prometheus::Exposition;
use crate::monitor::requests::{RouteSnapshot, code_label};
use crate::monitor::traffic::round2;
use crate::store::breaker::State;
use crate::store::writer::BATCH_BUCKETS;

const MB: f64 = 1024.0 * 1024.0;
const GB: f64 = MB * 1024.0;

/// `GET /metrics`: Prometheus text; with SOUK_METRICS_TOKEN set, only for
/// `Authorization: Bearer` with that token.
pub fn metrics(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    if let Some(expected) = &app.config.metrics_token {
        let given = auth::bearer_token(request)?.unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(Error::Unauthenticated);
        }
    }
    Ok(Reply::Now(prometheus_response(app)))
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn prometheus_response(app: &App) -> Response {
    let mut response = Response::new(200);
    response.headers.push((
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8".into(),
    ));
    response.body = prometheus(app).into_bytes();
    response
}

/// `GET /api/v1/admin/dashboard`.
pub fn dashboard(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    Ok(Reply::Now(respond::json(200, &report(app))))
}

/// `GET /api/v1/admin/metrics?format=json|prometheus`.
pub fn export(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    match query::param(request, "format")?.as_deref() {
        None | Some("json") => Ok(Reply::Now(respond::json(200, &report(app)))),
        Some("prometheus") => Ok(Reply::Now(prometheus_response(app))),
        Some(_) => Err(Error::invalid_field(
            "format",
            "format must be json or prometheus",
        )),
    }
}

/// `GET /api/v1/admin/alerts`.
pub fn alerts(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let alerts = app.monitor.alerts();
    Ok(Reply::Now(respond::json(
        200,
        &json!({"active": alerts.active, "recent": alerts.recent}),
    )))
}

/// Routes grouped by operation name.
fn operations(app: &App, routes: &[RouteSnapshot]) -> Value {
    let rates = app.monitor.requests_per_minute(routes);
    let mut by_operation: BTreeMap<&str, (RouteSnapshot, f64)> = BTreeMap::new();
    for (route, rate) in routes.iter().zip(rates) {
        let slot = by_operation
            .entry(&route.operation)
            .or_insert_with(|| (route.empty_like(), 0.0));
        for (sum, n) in slot.0.codes.iter_mut().zip(route.codes) {
            *sum += n;
        }
        slot.0.latency.add(&route.latency);
        slot.1 += rate;
    }
    let map: serde_json::Map<String, Value> = by_operation
        .into_iter()
        .map(|(name, (s, rate))| {
            let count = s.count();
            let errors = if count == 0 {
                0.0
            } else {
                s.errors_5xx() as f64 * 100.0 / count as f64
            };
            let value = json!({
                "count": count,
                "avg_response_time_ms": round2(s.latency.mean_ms()),
                "p95_ms": round2(s.latency.quantile_ms(0.95)),
                "p99_ms": round2(s.latency.quantile_ms(0.99)),
                "error_rate_percent": round2(errors),
                "requests_per_minute": round2(rate),
            });
            (name.to_owned(), value)
        })
        .collect();
    Value::Object(map)
}

fn store_figures(app: &App) -> Value {
    let stats = &app.store.writer.stats;
    let commits = stats.commits.load(Ordering::Relaxed);
    let jobs = stats.jobs.load(Ordering::Relaxed);
    let latency = stats.commit_latency.snapshot();
    let readers = app.store.readers.in_use();
    json!({
        "write_queue_depth": app.store.writer.queue_depth(),
        "write_queue_capacity": WRITE_QUEUE_MAX,
        "commits": commits,
        "jobs": jobs,
        "failed_jobs": stats.failed_jobs.load(Ordering::Relaxed),
        "failed_commits": stats.failed_commits.load(Ordering::Relaxed),
        "savepoint_retries": stats.savepoint_retries.load(Ordering::Relaxed),
        "rejected_queue_full": stats.rejected_full.load(Ordering::Relaxed),
        "avg_batch_size": round2(if commits == 0 { 0.0 } else { jobs as f64 / commits as f64 }),
        "last_batch_size": stats.last_batch_size.load(Ordering::Relaxed),
        "max_batch_size": stats.max_batch_size.load(Ordering::Relaxed),
        "commit_latency_avg_ms": round2(latency.mean_ms()),
        "commit_latency_p99_ms": round2(latency.quantile_ms(0.99)),
        "readers_in_use": readers.in_use,
        "readers_max": readers.size,
        "circuit": app.store.breaker.status(),
    })
}

/// Everything the dashboard shows (docs/api.md, Health and monitoring).
pub fn report(app: &App) -> Value {
    let system = app.monitor.system();
    let routes = app.monitor.requests.snapshot();
    let alerts = app.monitor.alerts();
    json!({
        "system_metrics": {
            "memory": {
                "used_percent": round2(system.memory_used_percent),
                "available_gb": round2(system.memory_available_bytes as f64 / GB),
                "process_rss_mb": round2(system.process_rss_bytes as f64 / MB),
            },
            "cpu": {
                "percent": round2(system.cpu_percent),
                "count": system.cpu_count,
                "process_percent": round2(system.process_cpu_percent),
            },
            "disk": {
                "used_percent": round2(system.disk_used_percent),
                "free_gb": round2(system.disk_free_bytes as f64 / GB),
            },
            "database": {
                "size_mb": round2(system.db_bytes as f64 / MB),
                "wal_mb": round2(system.wal_bytes as f64 / MB),
            },
        },
        "service_metrics": operations(app, &routes),
        "traffic": app.monitor.traffic(&routes),
        "caches": app.caches.report(),
        "store": store_figures(app),
        "alerts": {"active": alerts.active, "recent": alerts.recent},
        "uptime_s": app.monitor.uptime().as_secs(),
    })
}

/// The Prometheus exposition of every figure.
pub fn prometheus(app: &App) -> String {
    let mut out = Exposition::default();
    request_families(&mut out, &app.monitor.requests.snapshot());
    store_families(&mut out, app);
    app.caches.prometheus(&mut out);
    system_families(&mut out, app);
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

fn store_families(out: &mut Exposition, app: &App) {
    let stats = &app.store.writer.stats;
    let readers = app.store.readers.in_use();
    let gauges: [(&str, &str, f64); 3] = [
        (
            "souk_write_queue_depth",
            "Write jobs waiting for the writer.",
            app.store.writer.queue_depth() as f64,
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
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    let counters: [(&str, &str, u64); 6] = [
        (
            "souk_commits_total",
            "Group commits.",
            stats.commits.load(Ordering::Relaxed),
        ),
        (
            "souk_write_jobs_total",
            "Write jobs committed.",
            stats.jobs.load(Ordering::Relaxed),
        ),
        (
            "souk_write_jobs_failed_total",
            "Write jobs rolled back alone.",
            stats.failed_jobs.load(Ordering::Relaxed),
        ),
        (
            "souk_write_savepoint_retries_total",
            "Batches run again with a savepoint per job after a job failed mid-write.",
            stats.savepoint_retries.load(Ordering::Relaxed),
        ),
        (
            "souk_commits_failed_total",
            "Commits that failed.",
            stats.failed_commits.load(Ordering::Relaxed),
        ),
        (
            "souk_write_rejected_total",
            "Writes refused because the queue was full.",
            stats.rejected_full.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    let breaker = &app.store.breaker;
    out.family(
        "souk_circuit_state",
        "gauge",
        "Store circuit breaker: 0 closed, 1 open, 2 half-open.",
    );
    let state = match breaker.state() {
        State::Closed => 0.0,
        State::Open => 1.0,
        State::HalfOpen => 2.0,
    };
    out.sample("souk_circuit_state", &[], state);
    out.family(
        "souk_circuit_opened_total",
        "counter",
        "Times the store circuit breaker opened.",
    );
    out.sample(
        "souk_circuit_opened_total",
        &[],
        breaker.opened_total.load(Ordering::Relaxed) as f64,
    );
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

/// The process, the database's files and filesystem. Host-wide memory and
/// CPU are left to node_exporter (they stay in the dashboard JSON); ratios
/// are 0–1, as Prometheus convention has it.
fn system_families(out: &mut Exposition, app: &App) {
    let s = app.monitor.system();
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
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    let alerts = app.monitor.alerts();
    out.family(
        "souk_alert_active",
        "gauge",
        "1 while an alert rule is above its threshold.",
    );
    for rule in crate::monitor::alerts::RULES {
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
    for rule in crate::monitor::alerts::RULES {
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
    let p = crate::monitor::process::read();
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
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
    }
}
