//! Monitoring routes: `/metrics` (Prometheus, built by
//! `monitor::prometheus::render`), the admin dashboard JSON, the admin
//! metrics export and alerts. They only read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Params, auth, query, respond};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Reply, Request, Response};
use crate::limits::WRITE_QUEUE_MAX;
use crate::monitor::requests::RouteSnapshot;
use crate::monitor::traffic::round2;

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
    response.body =
        crate::monitor::prometheus::render(&app.monitor, &app.store, &app.caches).into_bytes();
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
