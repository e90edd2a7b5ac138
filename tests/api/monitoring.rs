//! Self-monitoring (docs/api.md, "Health and monitoring"): the Prometheus text of
//! `/metrics` and its token, the admin dashboard JSON and the metrics export,
//! alert firing and cooldown, the caches (fresh after writes, and counted).
//! The `/admin` console page is tests/api/console.rs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{Process, souk};
use crate::client::{Member, World, quick_user, world, world_with};
use crate::helpers::{HttpResponse, TempDir, get};

// ---- local helpers ---------------------------------------------------------

/// `GET /metrics` with an optional `Authorization` header value.
fn metrics_with(w: &World, authorization: Option<&str>) -> HttpResponse {
    let mut client = w.app.connect();
    let mut request = "GET /metrics HTTP/1.1\r\nhost: test\r\n".to_owned();
    if let Some(value) = authorization {
        request.push_str(&format!("authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    client.send(request.as_bytes());
    client.read_response()
}

fn metrics_text(w: &World) -> String {
    let response = metrics_with(w, None);
    assert_eq!(response.status, 200, "{}", response.summary());
    String::from_utf8(response.body).expect("metrics are UTF-8")
}

fn dashboard(w: &World, admin: &Member) -> Value {
    let response = w.get("/api/v1/admin/dashboard", &admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

// ---- a Prometheus text (0.0.4) parser, strict enough to fail ----------------

type Labels = BTreeMap<String, String>;
/// A histogram bucket: its `le`, its cumulative count, and its line.
type Bucket = (f64, f64, usize);

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    line: usize,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → type, as declared by `# TYPE`.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_labels(text: &str, line: usize) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("line {line}: a label without =\": {text:?}"));
        assert!(
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit()),
            "line {line}: bad label name {key:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (at, c) = chars
                .next()
                .unwrap_or_else(|| panic!("line {line}: an unterminated label value"));
            match c {
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("line {line}: bad escape {other:?}"),
                },
                '"' => break at,
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "line {line}: label {key} repeated"
        );
        rest = &after[end + 1..];
        assert!(
            rest.starts_with(',') || rest.starts_with('}'),
            "line {line}: junk after a label value: {rest:?}"
        );
    }
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its own name, or for `_bucket`, `_sum`
/// and `_count` the histogram (or summary) it is part of.
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
        {
            return Some(base.to_owned());
        }
    }
    None
}

/// Parses and checks the format rules: one `# TYPE` per family, before its
/// samples; the samples of a family in one group; well-formed lines.
fn parse_exposition(body: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    assert!(body.ends_with('\n'), "the exposition ends with a newline");
    for (index, raw) in body.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if let Some(comment) = raw.strip_prefix('#') {
            parse_comment(&mut out, comment, raw, line);
            continue;
        }
        let sample = parse_sample(raw, line);
        let family = family_of(&sample.name, &out.types)
            .unwrap_or_else(|| panic!("line {line}: {} has no # TYPE before it", sample.name));
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !finished.contains(&family),
                "line {line}: samples of {family} are split into more than one group"
            );
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            current = Some(family);
        }
        out.samples.push(sample);
    }
    out
}

/// A `# TYPE` (one per family, a known type, before the family's samples)
/// or `# HELP` line, text after the `#`; other comments are ignored.
fn parse_comment(out: &mut Exposition, comment: &str, raw: &str, line: usize) {
    let mut words = comment.split_whitespace();
    match words.next() {
        Some("TYPE") => {
            let name = words.next().expect("a TYPE names its family");
            let kind = words.next().expect("a TYPE gives a type");
            assert!(words.next().is_none(), "line {line}: {raw}");
            assert!(is_metric_name(name), "line {line}: {raw}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "line {line}: unknown type in {raw}"
            );
            assert!(
                out.types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "line {line}: a second # TYPE for {name}"
            );
            assert!(
                !out.samples
                    .iter()
                    .any(|s| family_of(&s.name, &out.types).as_deref() == Some(name)),
                "line {line}: # TYPE {name} after samples of it"
            );
        }
        Some("HELP") => {
            let name = words.next().expect("a HELP names its family");
            assert!(is_metric_name(name), "line {line}: {raw}");
        }
        _ => {}
    }
}

/// One sample line: a metric name, labels, a value, maybe a timestamp.
fn parse_sample(raw: &str, line: usize) -> Sample {
    let name_end = raw.find(['{', ' ']).unwrap_or(raw.len());
    let name = &raw[..name_end];
    assert!(
        is_metric_name(name),
        "line {line}: bad metric name in {raw:?}"
    );
    let (labels, rest) = if raw[name_end..].starts_with('{') {
        parse_labels(&raw[name_end + 1..], line)
    } else {
        (BTreeMap::new(), &raw[name_end..])
    };
    let mut parts = rest.split_whitespace();
    let value_text = parts
        .next()
        .unwrap_or_else(|| panic!("line {line}: no value in {raw:?}"));
    let value: f64 = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("line {line}: value {v:?} is not a number")),
    };
    if let Some(timestamp) = parts.next() {
        assert!(
            timestamp.parse::<i64>().is_ok(),
            "line {line}: bad timestamp in {raw:?}"
        );
    }
    assert!(parts.next().is_none(), "line {line}: junk in {raw:?}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
        line,
    }
}

impl Exposition {
    /// The one sample of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} appears twice");
        found.first().map(|s| s.value)
    }

    /// Checks every histogram family; returns how many series were checked.
    fn check_histograms(&self) -> usize {
        let mut series_checked = 0;
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let bucket_name = format!("{family}_bucket");
            // Series: the labels without `le`, in order of appearance.
            let mut series: Vec<(Labels, Vec<Bucket>)> = Vec::new();
            for sample in self.samples.iter().filter(|s| s.name == bucket_name) {
                let mut labels = sample.labels.clone();
                let le = labels
                    .remove("le")
                    .unwrap_or_else(|| panic!("line {}: a bucket without le", sample.line));
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>()
                        .unwrap_or_else(|_| panic!("line {}: le={le:?}", sample.line))
                };
                match series.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, buckets)) => buckets.push((bound, sample.value, sample.line)),
                    None => series.push((labels, vec![(bound, sample.value, sample.line)])),
                }
            }
            assert!(!series.is_empty(), "histogram {family} has no buckets");
            for (labels, buckets) in &series {
                for pair in buckets.windows(2) {
                    let ((le_a, n_a, _), (le_b, n_b, line)) = (pair[0], pair[1]);
                    assert!(
                        le_b > le_a,
                        "line {line}: {family} {labels:?}: le not increasing"
                    );
                    assert!(
                        n_b >= n_a,
                        "line {line}: {family} {labels:?}: cumulative count falls from {n_a} to {n_b}"
                    );
                }
                let (last_le, last_n, line) = *buckets.last().expect("a bucket");
                assert!(
                    last_le.is_infinite(),
                    "line {line}: {family} {labels:?}: the last bucket is not le=\"+Inf\""
                );
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let count = self
                    .value(&format!("{family}_count"), &pairs)
                    .unwrap_or_else(|| panic!("{family} {labels:?} has no _count"));
                assert_eq!(
                    count, last_n,
                    "{family} {labels:?}: _count differs from the +Inf bucket"
                );
                let sum = self
                    .value(&format!("{family}_sum"), &pairs)
                    .unwrap_or_else(|| panic!("{family} {labels:?} has no _sum"));
                assert!(sum >= 0.0, "{family} {labels:?}: _sum {sum}");
                series_checked += 1;
            }
        }
        series_checked
    }
}

// ---- /metrics --------------------------------------------------------------

#[test]
fn metrics_is_prometheus_text_with_one_type_per_family_and_whole_histograms() {
    let w = world();
    let admin = quick_user(&w.db, "admin", true);
    // Traffic on a few routes, a commit, a 404 and a 401, so that the
    // histograms have something in them.
    for _ in 0..3 {
        assert_eq!(w.app.get("/healthz").status, 200);
    }
    assert_eq!(w.app.get("/readyz").status, 200);
    assert_eq!(w.get("/api/v1/users/me", &admin.token).status, 200);
    assert_eq!(w.app.get("/api/v1/users/me").status, 401);
    assert_eq!(w.app.get("/no/such/route").status, 404);

    let response = metrics_with(&w, None);
    assert_eq!(response.status, 200, "{}", response.summary());
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{content_type}"
    );
    let body = String::from_utf8(response.body).expect("UTF-8");
    let exposition = parse_exposition(&body);

    assert!(exposition.check_histograms() >= 3, "{body}");
    for &(family, kind) in METRIC_FAMILIES {
        assert_eq!(
            exposition.types.get(family).map(String::as_str),
            Some(kind),
            "family {family}"
        );
    }
    assert_request_series(&exposition);
    assert_request_labels_are_bounded(&exposition);
    assert_eq!(
        exposition.value("souk_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    for cache in ["profiles", "sessions", "balances"] {
        assert!(
            exposition
                .value("souk_cache_capacity", &[("cache", cache)])
                .is_some_and(|n| n > 0.0),
            "cache {cache}"
        );
    }
    assert_process_figures(&exposition);
}

/// The families /metrics must have, with their types.
const METRIC_FAMILIES: &[(&str, &str)] = &[
    ("souk_http_requests_total", "counter"),
    ("souk_http_request_duration_seconds", "histogram"),
    ("souk_commit_duration_seconds", "histogram"),
    ("souk_commit_batch_size", "histogram"),
    ("souk_write_queue_depth", "gauge"),
    ("souk_db_readers_in_use", "gauge"),
    ("souk_cache_hits_total", "counter"),
    ("souk_cache_misses_total", "counter"),
    ("souk_cache_evictions_total", "counter"),
    ("souk_cache_size", "gauge"),
    ("souk_disk_used_ratio", "gauge"),
    ("souk_disk_free_bytes", "gauge"),
    ("souk_db_size_bytes", "gauge"),
    ("souk_wal_size_bytes", "gauge"),
    ("souk_alert_active", "gauge"),
    ("souk_build_info", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
];

/// Every route has its latency series; the counter has a series per status
/// code a route answered with, counting what was sent (three `GET /healthz`,
/// `GET /api/v1/users/me` once signed in and once not, one unmatched route).
fn assert_request_series(exposition: &Exposition) {
    let healthz = [("method", "GET"), ("route", "/healthz")];
    let mut with_code = healthz.to_vec();
    with_code.push(("code", "200"));
    assert_eq!(
        exposition.value("souk_http_requests_total", &with_code),
        Some(3.0)
    );
    assert_eq!(
        exposition.value("souk_http_request_duration_seconds_count", &healthz),
        Some(3.0)
    );
    let me = [("method", "GET"), ("route", "/api/v1/users/me")];
    for (code, count) in [("200", 1.0), ("401", 1.0)] {
        let mut labels = me.to_vec();
        labels.push(("code", code));
        assert_eq!(
            exposition.value("souk_http_requests_total", &labels),
            Some(count),
            "GET /api/v1/users/me {code}"
        );
    }
    assert_eq!(
        exposition.value(
            "souk_http_requests_total",
            &[("route", "unmatched"), ("code", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        exposition.value("souk_http_request_duration_seconds_count", &me),
        Some(2.0)
    );
}

/// Request series carry exactly `method` (unless unmatched), `route` (a
/// template) and `code` (a status code), nothing that another label
/// already says.
fn assert_request_labels_are_bounded(exposition: &Exposition) {
    let routes: HashSet<String> = souk::api::routes()
        .describe()
        .into_iter()
        .map(|(method, route, _)| format!("{method} {route}"))
        .collect();
    let mut seen = 0;
    for sample in &exposition.samples {
        let counter = sample.name == "souk_http_requests_total";
        if !counter
            && !sample
                .name
                .starts_with("souk_http_request_duration_seconds")
        {
            continue;
        }
        seen += 1;
        let mut names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        names.retain(|name| *name != "le");
        let route = &sample.labels["route"];
        if route == "unmatched" {
            assert!(!sample.labels.contains_key("method"), "{sample:?}");
        } else {
            // A template of `api::routes()` (or of the test server's own
            // extra routes, under /test/), never a path with an id in it.
            let method = &sample.labels["method"];
            let known = routes.contains(&format!("{method} {route}"));
            assert!(known || route.starts_with("/test/"), "{sample:?}");
        }
        if counter {
            let code = &sample.labels["code"];
            assert!(
                code.len() == 3 && code.parse::<u16>().is_ok_and(|c| (100..600).contains(&c)),
                "{sample:?}"
            );
            assert!(
                sample.value > 0.0,
                "a counter series before its first request: {sample:?}"
            );
        }
        for name in names {
            assert!(["method", "route", "code"].contains(&name), "{sample:?}");
        }
    }
    assert!(seen > routes.len(), "every route has its series");
}

/// The standard process families, with values a running server has.
fn assert_process_figures(exposition: &Exposition) {
    let value = |name: &str| {
        exposition
            .value(name, &[])
            .unwrap_or_else(|| panic!("{name} is missing"))
    };
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_cpu_seconds_total") > 0.0);
    let open = value("process_open_fds");
    assert!(open >= 3.0 && open <= value("process_max_fds"), "{open}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    let disk = value("souk_disk_used_ratio");
    assert!((0.0..=1.0).contains(&disk), "souk_disk_used_ratio {disk}");
}

#[test]
fn the_healthz_request_counter_grows_by_the_number_of_healthz_requests() {
    let w = world();
    let labels = [("method", "GET"), ("route", "/healthz"), ("code", "200")];
    let counter = |w: &World| {
        parse_exposition(&metrics_text(w))
            .value("souk_http_requests_total", &labels)
            .unwrap_or(0.0)
    };
    let before = counter(&w);
    // On one keep-alive connection and on fresh ones.
    let mut client = w.app.connect();
    for _ in 0..7 {
        client.send(get("/healthz").as_bytes());
        assert_eq!(client.read_response().status, 200);
    }
    for _ in 0..5 {
        assert_eq!(w.app.get("/healthz").status, 200);
    }
    assert_eq!(counter(&w), before + 12.0);
    // Reading the metrics is not a /healthz request.
    assert_eq!(counter(&w), before + 12.0);
}

#[test]
fn with_a_metrics_token_metrics_needs_that_bearer_token() {
    let token = "s3cret-scrape-token";
    let w = world_with(|config| config.metrics_token = Some(token.to_owned()));
    metrics_with(&w, None).assert_error(401, "unauthenticated");
    for wrong in [
        "Bearer wrong-token",
        "Bearer s3cret-scrape-toke",
        "Bearer s3cret-scrape-token-and-more",
        "Basic czNjcmV0LXNjcmFwZS10b2tlbg==",
        "s3cret-scrape-token",
        "Bearer ",
    ] {
        metrics_with(&w, Some(wrong)).assert_error(401, "unauthenticated");
    }
    let response = metrics_with(&w, Some(&format!("Bearer {token}")));
    assert_eq!(response.status, 200, "{}", response.summary());
    let body = String::from_utf8(response.body).expect("UTF-8");
    parse_exposition(&body);
    assert!(body.contains("# TYPE souk_http_requests_total counter"));
    // Without a token configured, /metrics is open (the other tests) and a
    // user's session token is not the metrics token.
    let user = quick_user(&w.db, "user", false);
    metrics_with(&w, Some(&format!("Bearer {}", user.token))).assert_error(401, "unauthenticated");
}

// ---- the admin dashboard and export ----------------------------------------

fn assert_number(value: &Value, path: &str) -> f64 {
    let mut at = value;
    for key in path.split('.') {
        at = &at[key];
    }
    let number = at
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {at} in {value}"));
    assert!(number.is_finite() && number >= 0.0, "{path} = {number}");
    number
}

fn assert_dashboard_shape(report: &Value) {
    assert_system_metrics_shape(report);
    assert_service_metrics_shape(report);
    assert_caches_shape(report);
    assert!(report["store"].is_object(), "store: {report}");
    assert!(report["alerts"]["active"].is_array(), "{report}");
    assert!(report["alerts"]["recent"].is_array(), "{report}");
}

/// The system figures are numbers in range.
fn assert_system_metrics_shape(report: &Value) {
    for path in [
        "system_metrics.memory.used_percent",
        "system_metrics.memory.available_gb",
        "system_metrics.memory.process_rss_mb",
        "system_metrics.cpu.percent",
        "system_metrics.cpu.count",
        "system_metrics.cpu.process_percent",
        "system_metrics.disk.used_percent",
        "system_metrics.disk.free_gb",
        "system_metrics.database.size_mb",
        "system_metrics.database.wal_mb",
        "uptime_s",
    ] {
        assert_number(report, path);
    }
    assert!(assert_number(report, "system_metrics.cpu.count") >= 1.0);
    assert!(assert_number(report, "system_metrics.memory.process_rss_mb") > 0.0);
    for percent in [
        "system_metrics.memory.used_percent",
        "system_metrics.disk.used_percent",
    ] {
        assert!(assert_number(report, percent) <= 100.0, "{percent}");
    }
}

/// Every operation's figures are finite, non-negative and consistent.
fn assert_service_metrics_shape(report: &Value) {
    let operations = report["service_metrics"]
        .as_object()
        .expect("service_metrics is an object");
    for name in [
        "health.live",
        "users.get_by_id",
        "wallets.transfer",
        "escrow.create",
        "admin.dashboard",
    ] {
        assert!(operations.contains_key(name), "operation {name}: {report}");
    }
    for (name, figures) in operations {
        for key in [
            "count",
            "avg_response_time_ms",
            "p95_ms",
            "p99_ms",
            "error_rate_percent",
            "requests_per_minute",
        ] {
            let n = figures[key]
                .as_f64()
                .unwrap_or_else(|| panic!("service_metrics.{name}.{key}: {figures}"));
            assert!(
                n.is_finite() && n >= 0.0,
                "service_metrics.{name}.{key} = {n}"
            );
        }
        assert!(
            figures["error_rate_percent"].as_f64() <= Some(100.0),
            "{name}: {figures}"
        );
        assert!(
            figures["p95_ms"].as_f64() <= figures["p99_ms"].as_f64(),
            "{name}: p95 above p99: {figures}"
        );
    }
}

/// The caches reported are the documented ones, with sane figures.
fn assert_caches_shape(report: &Value) {
    let caches = report["caches"].as_object().expect("caches is an object");
    // Every cache the server reports is in the API document, and no other.
    let document: Value = serde_json::from_str(include_str!("../../src/api/openapi.json"))
        .expect("the OpenAPI document is JSON");
    let documented = &document["components"]["schemas"]["Dashboard"]["properties"]["caches"];
    let mut names: Vec<&String> = caches.keys().collect();
    let mut listed: Vec<&String> = documented["properties"]
        .as_object()
        .expect("documented caches")
        .keys()
        .collect();
    names.sort();
    listed.sort();
    assert_eq!(names, listed, "caches reported vs documented");
    assert_eq!(
        documented["required"].as_array().map(Vec::len),
        Some(listed.len()),
        "every documented cache is required"
    );
    for name in ["profiles", "sessions", "balances"] {
        let cache = &caches
            .get(name)
            .unwrap_or_else(|| panic!("cache {name}: {report}"));
        for key in ["hits", "misses", "hit_rate_percent", "size", "capacity"] {
            let n = cache[key]
                .as_f64()
                .unwrap_or_else(|| panic!("caches.{name}.{key}: {cache}"));
            assert!(n.is_finite() && n >= 0.0, "caches.{name}.{key} = {n}");
        }
        assert!(cache["hit_rate_percent"].as_f64() <= Some(100.0), "{cache}");
        assert!(
            cache["size"].as_f64() <= cache["capacity"].as_f64(),
            "{cache}"
        );
        assert!(cache["capacity"].as_f64() > Some(0.0), "{cache}");
    }
}

#[test]
fn the_admin_dashboard_has_every_key_of_the_spec_and_is_for_admins_only() {
    let w = world();
    let admin = quick_user(&w.db, "admin", true);
    let user = quick_user(&w.db, "user", false);
    for _ in 0..4 {
        assert_eq!(
            w.get(&format!("/api/v1/users/{}", user.id), &admin.token)
                .status,
            200
        );
    }

    let report = dashboard(&w, &admin);
    assert_dashboard_shape(&report);
    let by_id = &report["service_metrics"]["users.get_by_id"];
    assert_eq!(by_id["count"], 4, "{by_id}");
    assert_eq!(by_id["error_rate_percent"].as_f64(), Some(0.0), "{by_id}");
    assert!(
        by_id["avg_response_time_ms"].as_f64() > Some(0.0),
        "{by_id}"
    );
    assert!(by_id["p95_ms"].as_f64() > Some(0.0), "{by_id}");
    assert_eq!(
        report["service_metrics"]["wallets.transfer"]["count"], 0,
        "{report}"
    );

    w.get("/api/v1/admin/dashboard", &user.token)
        .assert_error(403, "forbidden");
    w.app
        .get("/api/v1/admin/dashboard")
        .assert_error(401, "unauthenticated");
}

#[test]
fn the_admin_metrics_export_speaks_json_and_prometheus_and_refuses_xml() {
    let w = world();
    let admin = quick_user(&w.db, "admin", true);
    let user = quick_user(&w.db, "user", false);

    for path in ["/api/v1/admin/metrics?format=json", "/api/v1/admin/metrics"] {
        let response = w.get(path, &admin.token);
        assert_eq!(response.status, 200, "{path}: {}", response.summary());
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_dashboard_shape(&response.json());
    }

    let response = w.get("/api/v1/admin/metrics?format=prometheus", &admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{response:?}"
    );
    let body = String::from_utf8(response.body).expect("UTF-8");
    let exposition = parse_exposition(&body);
    exposition.check_histograms();
    assert_eq!(
        exposition
            .types
            .get("souk_http_requests_total")
            .map(String::as_str),
        Some("counter")
    );

    for bad in ["xml", "JSON", "", "prometheus,json"] {
        let response = w.get(&format!("/api/v1/admin/metrics?format={bad}"), &admin.token);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], "format", "{bad}: {error}");
    }
    for format in ["json", "prometheus"] {
        w.get(
            &format!("/api/v1/admin/metrics?format={format}"),
            &user.token,
        )
        .assert_error(403, "forbidden");
    }
}

// ---- alerts ----------------------------------------------------------------

fn memory_alerts(w: &World, admin: &Member) -> (Vec<Value>, Vec<Value>) {
    let response = w.get("/api/v1/admin/alerts", &admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    let body = response.json();
    let of_memory = |key: &str| -> Vec<Value> {
        body[key]
            .as_array()
            .unwrap_or_else(|| panic!("alerts.{key}: {body}"))
            .iter()
            .filter(|a| a["rule"] == "memory")
            .cloned()
            .collect()
    };
    (of_memory("active"), of_memory("recent"))
}

fn assert_alert_shape(alert: &Value) {
    assert_eq!(alert["rule"], "memory", "{alert}");
    assert!(alert["value"].as_f64() > Some(0.0), "{alert}");
    assert_eq!(alert["threshold"].as_f64(), Some(0.0), "{alert}");
    let fired_at = alert["fired_at"].as_str().expect("fired_at is a string");
    assert!(
        fired_at.len() >= 20 && fired_at.as_bytes()[10] == b'T' && fired_at.ends_with('Z'),
        "fired_at is RFC 3339 UTC: {fired_at}"
    );
}

/// The alert metrics in the exposition: each (family, rule, value).
fn assert_alert_metrics(w: &World, expected: &[(&str, &str, f64)]) {
    let exposition = parse_exposition(&metrics_text(w));
    for &(family, rule, value) in expected {
        assert_eq!(
            exposition.value(family, &[("rule", rule)]),
            Some(value),
            "{family}{{rule={rule}}}"
        );
    }
}

/// The one active memory alert (and the one recent), within 2 s of `started`.
fn first_memory_alert(w: &World, admin: &Member, started: Instant) -> Value {
    loop {
        let (active, recent) = memory_alerts(w, admin);
        if let Some(alert) = active.first() {
            assert_eq!(active.len(), 1, "{active:?}");
            assert_eq!(recent.len(), 1, "{recent:?}");
            return alert.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no active memory alert within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The recent memory alerts once there are two, within 5 s of `seen`.
fn second_memory_firing(w: &World, admin: &Member, seen: Instant) -> Vec<Value> {
    loop {
        let (_, recent) = memory_alerts(w, admin);
        if recent.len() >= 2 {
            return recent;
        }
        assert!(
            seen.elapsed() < Duration::from_secs(5),
            "no second firing after the cooldown: {recent:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_memory_alert_fires_within_an_interval_and_at_most_once_per_cooldown() {
    let w = world_with(|config| {
        config.alert_memory_percent = 0;
        config.monitoring_interval = Duration::from_secs(1);
        config.alert_cooldown = Duration::from_secs(3);
        // Only the memory rule can fire here.
        config.alert_cpu_percent = 100;
        config.alert_response_ms = 3_600_000;
        config.alert_error_percent = 100;
    });
    let started = Instant::now();
    let admin = quick_user(&w.db, "admin", true);
    let first = first_memory_alert(&w, &admin, started);
    let seen = Instant::now();
    assert_alert_shape(&first);

    // Evaluations go on every second, the rule stays above its threshold, but
    // the cooldown holds the second firing back.
    std::thread::sleep(Duration::from_millis(2_500));
    let (active, recent) = memory_alerts(&w, &admin);
    assert_eq!(
        recent.len(),
        1,
        "fired again within the cooldown: {recent:?}"
    );
    assert_eq!(active.len(), 1, "still above its threshold: {active:?}");
    assert_eq!(recent[0], first);
    assert_alert_metrics(
        &w,
        &[
            ("souk_alert_firings_total", "memory", 1.0),
            ("souk_alert_active", "memory", 1.0),
            ("souk_alert_active", "cpu", 0.0),
        ],
    );

    // After the cooldown, a second firing.
    let recent = second_memory_firing(&w, &admin, seen);
    assert_eq!(recent.len(), 2, "{recent:?}");
    assert!(
        seen.elapsed() >= Duration::from_millis(2_500),
        "the second firing came early"
    );
    for alert in &recent {
        assert_alert_shape(alert);
    }
    assert_alert_metrics(&w, &[("souk_alert_firings_total", "memory", 2.0)]);
    // The dashboard shows the same alerts.
    let report = dashboard(&w, &admin);
    let shown = report["alerts"]["recent"]
        .as_array()
        .expect("recent alerts")
        .iter()
        .filter(|a| a["rule"] == "memory")
        .count();
    assert!(shown >= 2, "{report}");
}

#[test]
fn a_firing_alert_is_logged_at_warn_level_by_the_binary() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command
        .env("RUST_LOG", "warn")
        .env("ALERT_MEMORY_PERCENT", "0")
        .env("MONITORING_INTERVAL", "1");
    let process = Process::spawn(command);
    let (log, found) = process.read_log_until(Duration::from_secs(20), |line| {
        line.contains("alert memory")
    });
    process.terminate();
    assert!(found, "no `alert memory` line on stderr: {log:?}");
    let line = log.last().expect("the alert line");
    assert!(line.contains("WARN"), "logged at warn level: {line}");
}

// ---- caches ----------------------------------------------------------------

#[test]
fn a_new_display_name_is_seen_by_the_next_profile_read_of_another_user() {
    let w = world();
    let alice = quick_user(&w.db, "alice", false);
    let bob = quick_user(&w.db, "bob", false);
    let path = format!("/api/v1/users/{}", alice.id);
    let read = |w: &World| {
        let response = w.get(&path, &bob.token);
        assert_eq!(response.status, 200, "{}", response.summary());
        response.json()["user"]["display_name"].clone()
    };
    // Twice: the second read is from the cache.
    assert_eq!(read(&w), Value::Null);
    assert_eq!(read(&w), Value::Null);

    for name in ["Alice A.", "Alice B.", "Ålice ✓"] {
        let response = w.patch(
            "/api/v1/users/me",
            &alice.token,
            &json!({ "display_name": name }),
        );
        assert_eq!(response.status, 200, "{}", response.summary());
        assert_eq!(read(&w), name);
        assert_eq!(read(&w), name);
    }
    // Alice's own view agrees.
    let response = w.get("/api/v1/users/me", &alice.token);
    assert_eq!(response.json()["user"]["display_name"], "Ålice ✓");
}

#[test]
fn a_transfer_is_seen_by_the_next_wallet_read_of_both_parties() {
    let w = world();
    let admin = quick_user(&w.db, "admin", true);
    let alice = quick_user(&w.db, "alice", false);
    let bob = quick_user(&w.db, "bob", false);
    w.deposit(&admin, &alice, "btc", "1");
    // Read (and so cache) both wallets, twice.
    for _ in 0..2 {
        assert_eq!(
            w.balance(&alice, "btc"),
            ("1.00000000".to_owned(), "0.00000000".to_owned())
        );
        assert_eq!(
            w.balance(&bob, "btc"),
            ("0.00000000".to_owned(), "0.00000000".to_owned())
        );
    }
    for (n, (alice_after, bob_after)) in
        [("0.75000000", "0.25000000"), ("0.50000000", "0.50000000")]
            .into_iter()
            .enumerate()
    {
        let response = w.post(
            "/api/v1/transfers",
            Some(&alice.token),
            &json!({"to": bob.id, "currency": "btc", "amount": "0.25"}),
        );
        assert_eq!(response.status, 201, "transfer {n}: {}", response.summary());
        assert_eq!(w.balance(&alice, "btc").0, alice_after, "transfer {n}");
        assert_eq!(w.balance(&bob, "btc").0, bob_after, "transfer {n}");
    }
    // A deposit by an admin is seen at once too.
    w.deposit(&admin, &bob, "btc", "2");
    assert_eq!(w.balance(&bob, "btc").0, "2.50000000");
    // The wallet reads did go through the balance cache.
    let balances = &dashboard(&w, &admin)["caches"]["balances"];
    assert!(balances["hits"].as_u64() >= Some(1), "{balances}");
}

#[test]
fn reading_one_profile_50_times_is_served_from_the_profile_cache() {
    let w = world();
    let admin = quick_user(&w.db, "admin", true);
    let alice = quick_user(&w.db, "alice", false);
    let bob = quick_user(&w.db, "bob", false);
    let path = format!("/api/v1/users/{}", alice.id);
    let before = dashboard(&w, &admin)["caches"]["profiles"].clone();
    for _ in 0..50 {
        let response = w.get(&path, &bob.token);
        assert_eq!(response.status, 200, "{}", response.summary());
        assert_eq!(response.json()["user"]["username"], "alice");
    }
    let profiles = dashboard(&w, &admin)["caches"]["profiles"].clone();
    let rate = profiles["hit_rate_percent"]
        .as_f64()
        .expect("hit_rate_percent");
    assert!(rate > 90.0, "profiles hit rate {rate}: {profiles}");
    let new_hits = profiles["hits"].as_u64().unwrap_or(0) - before["hits"].as_u64().unwrap_or(0);
    let new_misses =
        profiles["misses"].as_u64().unwrap_or(0) - before["misses"].as_u64().unwrap_or(0);
    // Each read looks up bob (the caller) and alice: at most one miss each.
    assert!(new_hits >= 98, "{before} → {profiles}");
    assert!(new_misses <= 2, "{before} → {profiles}");
    assert!(profiles["size"].as_u64() >= Some(2), "{profiles}");
    let exposition = parse_exposition(&metrics_text(&w));
    assert!(
        exposition
            .value("souk_cache_hits_total", &[("cache", "profiles")])
            .is_some_and(|n| n >= 98.0)
    );
}
