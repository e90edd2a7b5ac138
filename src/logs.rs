//! Logging set-up (README: Logs): env_logger with RUST_LOG as the filter,
//! in SOUK_LOG_FORMAT — `text` for people, `json` for one object per line
//! `{ts, level, target, msg, …fields}` — and the access log's line
//! (target `souk::access`). Structured fields are the `log` crate's
//! key-values; JSON is built with serde_json, never by hand.
//!
//! What never reaches a log: passwords, session tokens and Authorization
//! header values. No line takes a request's body or headers; the request
//! id a client sends is logged only when it is short visible ASCII.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use log::kv::{self, Key, Source, Value, VisitSource, VisitValue};

use crate::config::LogFormat;
use crate::limits::{LOG_BUFFER_BYTES_MAX, LOG_GATHER_MS, SERVICE_STACK_BYTES};
use crate::util::LockUnpoisoned;

/// The target of the access log's lines: `RUST_LOG=souk::access=off`
/// silences them alone.
pub const ACCESS_TARGET: &str = "souk::access";

/// Installs the process's logger. Once, before anything logs; `flush`
/// before the process exits.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => builder.format_key_values(text_fields),
        LogFormat::Json => builder.format(json_line),
    };
    if let Some(batch) = Batch::start() {
        builder.target(env_logger::Target::Pipe(Box::new(BatchWriter(batch))));
        let _ = FORMAT.set(format);
    }
    builder.init();
}

/// Writes out every line still waiting for the log writer thread.
pub fn flush() {
    if let Some(batch) = BATCH.get() {
        let mut pending = batch.lock_pending();
        batch.write_out(&mut pending);
    }
}

static BATCH: OnceLock<Arc<Batch>> = OnceLock::new();
/// The format of `init`, once lines go through `BATCH` (the access log's
/// own writer needs both).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Lines on their way to stderr. A thread that logs appends its line and
/// goes on; the `log-writer` thread writes whatever has gathered with one
/// `write` — one system call for many lines when requests come fast,
/// rather than one per line on every worker.
struct Batch {
    pending: Mutex<Vec<u8>>,
    arrived: Condvar,
    /// Held while bytes go to stderr (taken after `pending`), so lines
    /// reach it in the order they were logged.
    writing: Mutex<()>,
}

impl Batch {
    /// `None` when the writer thread cannot start: then lines go straight
    /// to stderr.
    fn start() -> Option<Arc<Batch>> {
        let batch = Arc::new(Batch {
            pending: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            writing: Mutex::new(()),
        });
        let writer = Arc::clone(&batch);
        std::thread::Builder::new()
            .name("log-writer".into())
            .stack_size(SERVICE_STACK_BYTES)
            .spawn(move || writer.run())
            .ok()?;
        BATCH.set(Arc::clone(&batch)).ok()?;
        Some(batch)
    }

    fn lock_pending(&self) -> MutexGuard<'_, Vec<u8>> {
        // Only byte copies run under it: a poisoned buffer is still bytes.
        self.pending.lock_unpoisoned()
    }

    fn run(&self) {
        let mut out = Vec::new();
        loop {
            let mut pending = self.lock_pending();
            while pending.is_empty() {
                pending = self
                    .arrived
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
            // Let lines gather: a thread that logs wakes this one (a system
            // call) only when it finds the batch empty, so under load that
            // is once per gathering rather than once per line.
            drop(pending);
            std::thread::sleep(Duration::from_millis(LOG_GATHER_MS));
            let mut pending = self.lock_pending();
            std::mem::swap(&mut *pending, &mut out);
            let writing = self.writing.lock_unpoisoned();
            drop(pending);
            // Nowhere to report a failed write to stderr.
            let _ = io::stderr().write_all(&out);
            drop(writing);
            out.clear();
            if out.capacity() > LOG_BUFFER_BYTES_MAX {
                out = Vec::new();
            }
        }
    }

    /// Appends whole lines for the writer thread.
    fn push(&self, lines: &[u8]) {
        let mut pending = self.lock_pending();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(lines);
        if pending.len() >= LOG_BUFFER_BYTES_MAX {
            self.write_out(&mut pending);
        } else if was_empty {
            self.arrived.notify_one();
        }
    }

    /// Writes `pending` out on the calling thread.
    fn write_out(&self, pending: &mut Vec<u8>) {
        let _writing = self.writing.lock_unpoisoned();
        let _ = io::stderr().write_all(pending);
        pending.clear();
    }
}

/// env_logger's target: one whole line per `write`.
struct BatchWriter(Arc<Batch>);

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    /// The writer thread flushes; `logs::flush` at exit.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// ` key=value` for each field that has a value (an unknown user id is
/// left out rather than written as `None`).
fn text_fields(out: &mut env_logger::fmt::Formatter, fields: &dyn Source) -> io::Result<()> {
    struct Pairs<'a>(&'a mut env_logger::fmt::Formatter);
    impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
        fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
            if !is_null(&value) {
                write!(self.0, " {key}={value}")?;
            }
            Ok(())
        }
    }
    fields.visit(&mut Pairs(out)).map_err(io::Error::other)
}

/// One JSON object per line. A field named like one of the fixed keys is
/// written as `field.NAME`, so it can never hide them.
fn json_line(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> io::Result<()> {
    struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
            let name = match key.as_str() {
                reserved @ ("ts" | "level" | "target" | "msg") => format!("field.{reserved}"),
                name => name.to_owned(),
            };
            self.0.insert(name, to_json(&value));
            Ok(())
        }
    }
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), out.timestamp_millis().to_string().into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert("msg".into(), record.args().to_string().into());
    record
        .key_values()
        .visit(&mut Fields(&mut object))
        .map_err(io::Error::other)?;
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

fn is_null(value: &Value<'_>) -> bool {
    struct Null(bool);
    impl<'v> VisitValue<'v> for Null {
        fn visit_any(&mut self, _: Value<'_>) -> Result<(), kv::Error> {
            Ok(())
        }
        fn visit_null(&mut self) -> Result<(), kv::Error> {
            self.0 = true;
            Ok(())
        }
    }
    let mut null = Null(false);
    let _ = value.visit(&mut null);
    null.0
}

/// A field's value as JSON: numbers and booleans as such, nothing as
/// null, anything else as its text.
fn to_json(value: &Value<'_>) -> serde_json::Value {
    struct Json(serde_json::Value);
    impl<'v> VisitValue<'v> for Json {
        fn visit_any(&mut self, value: Value<'_>) -> Result<(), kv::Error> {
            self.0 = value.to_string().into();
            Ok(())
        }
        fn visit_null(&mut self) -> Result<(), kv::Error> {
            self.0 = serde_json::Value::Null;
            Ok(())
        }
        fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
            self.0 = value.into();
            Ok(())
        }
        fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
            self.0 = value.into();
            Ok(())
        }
        fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
            self.0 = value.into();
            Ok(())
        }
        fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
            self.0 = value.into();
            Ok(())
        }
        fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
            self.0 = value.into();
            Ok(())
        }
    }
    let mut json = Json(serde_json::Value::Null);
    match value.visit(&mut json) {
        Ok(()) => json.0,
        Err(_) => value.to_string().into(),
    }
}

/// One answered request, as the access log writes it.
pub struct AccessLine<'a> {
    /// The request's method (`GET`); `None`: refused before its head could
    /// be read. Text, so the logger needs nothing of the HTTP layer.
    pub method: Option<&'static str>,
    /// The route's template (`/users/{id}`), never the path with its ids;
    /// `None` when no route matched.
    pub route: Option<&'static str>,
    pub status: u16,
    pub elapsed: Duration,
    /// Body bytes sent (none for HEAD).
    pub bytes: usize,
    pub client: Option<IpAddr>,
    pub user_id: Option<i64>,
    pub request_id: &'a str,
}

/// Writes the access log's line for `line` (the caller checked that the
/// access log is on and `ACCESS_TARGET` enabled at info).
///
/// One line per request is the busiest log there is, so it skips the
/// `log` machinery: the line is formatted here, exactly as env_logger
/// formats any other line (text: `[ts INFO  target] msg key=value…`; JSON:
/// the same object `json_line` makes, keys sorted), into a buffer of the
/// calling thread, with a timestamp whose date part is worked out once a
/// second, and appended to the log writer's batch under one lock. Before
/// `init` (or when the writer thread could not start) it goes through
/// `log` like any line.
pub fn access(line: &AccessLine<'_>) {
    let (Some(batch), Some(format)) = (BATCH.get(), FORMAT.get()) else {
        return access_through_log(line);
    };
    thread_local! {
        static LINE: std::cell::RefCell<(Vec<u8>, Stamp, String)> =
            const { std::cell::RefCell::new((Vec::new(), Stamp::EMPTY, String::new())) };
    }
    LINE.with_borrow_mut(|(buf, stamp, ts)| {
        buf.clear();
        let now = std::time::SystemTime::now();
        let written = match format {
            LogFormat::Text => access_text(buf, stamp.seconds(now), line),
            LogFormat::Json => {
                // As `json_line` writes it: `2026-11-30T14:29:11.123Z`.
                let millis = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_millis();
                ts.clear();
                ts.push_str(stamp.seconds(now));
                let _ = std::fmt::Write::write_fmt(ts, format_args!(".{millis:03}Z"));
                access_json(buf, ts, line)
            }
        };
        if written.is_ok() {
            batch.push(buf);
        }
        if buf.capacity() > ACCESS_LINE_CAPACITY_MAX {
            *buf = Vec::new();
        }
    });
}

/// A thread's access-line buffer is dropped above this capacity (a line is
/// ~200 bytes; a client's 64-byte request id is the longest part).
const ACCESS_LINE_CAPACITY_MAX: usize = 4096;

/// `access` through the `log` crate: the slow path, for before `init`.
fn access_through_log(line: &AccessLine<'_>) {
    let user_id = line.user_id.map(IdText);
    let user_id = user_id.as_ref().map(kv::Value::from_display);
    log::info!(
        target: ACCESS_TARGET,
        method = line.method.unwrap_or("-"),
        route = line.route.unwrap_or("-"),
        status = line.status,
        duration_ms = line.duration_ms(),
        bytes = line.bytes,
        client:% = ClientText(line.client),
        user_id = user_id,
        request_id = line.request_id;
        "request"
    );
}

impl AccessLine<'_> {
    /// Milliseconds with microsecond precision, as a number.
    fn duration_ms(&self) -> f64 {
        (self.elapsed.as_micros() as f64) / 1000.0
    }
}

/// `[2026-11-30T14:29:11Z INFO  souk::access] request method=… …`, the
/// fields in `access_through_log`'s order, `user_id` only when known.
fn access_text(buf: &mut Vec<u8>, seconds: &str, line: &AccessLine<'_>) -> io::Result<()> {
    // Piece by piece: one `write!` of every field (an f64 among them) cost
    // more than the rest of a cached read's logging.
    for piece in [
        "[",
        seconds,
        "Z INFO  ",
        ACCESS_TARGET,
        "] request method=",
        line.method.unwrap_or("-"),
        " route=",
        line.route.unwrap_or("-"),
        " status=",
    ] {
        buf.extend_from_slice(piece.as_bytes());
    }
    write!(buf, "{}", line.status)?;
    buf.extend_from_slice(b" duration_ms=");
    push_millis(buf, line.elapsed);
    write!(buf, " bytes={} client=", line.bytes)?;
    match line.client {
        Some(client) => write!(buf, "{client}")?,
        None => buf.push(b'-'),
    }
    if let Some(user_id) = line.user_id {
        write!(buf, " user_id={user_id}")?;
    }
    buf.extend_from_slice(b" request_id=");
    buf.extend_from_slice(line.request_id.as_bytes());
    buf.push(b'\n');
    Ok(())
}

/// `elapsed` in milliseconds as `duration_ms`'s f64 prints (`1.234`,
/// `0.05`, `12`): whole milliseconds, then the microseconds without
/// trailing zeros. The same text, since a decimal of at most 15
/// significant digits is the shortest one that reads back as its nearest
/// f64 (unit-tested against the f64's own formatting).
fn push_millis(buf: &mut Vec<u8>, elapsed: Duration) {
    let micros = elapsed.as_micros();
    let (whole, mut fraction) = (micros / 1000, (micros % 1000) as u32);
    let _ = write!(buf, "{whole}");
    if fraction == 0 {
        return;
    }
    buf.push(b'.');
    let mut digits = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let _ = write!(buf, "{fraction:0digits$}");
}

/// The JSON object `json_line` would make of `access_through_log`'s record:
/// the same keys in the same (sorted) order, ids as strings.
fn access_json(buf: &mut Vec<u8>, ts: &str, line: &AccessLine<'_>) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Object<'a> {
        bytes: usize,
        client: String,
        duration_ms: f64,
        level: &'static str,
        method: &'static str,
        msg: &'static str,
        request_id: &'a str,
        route: &'static str,
        status: u16,
        target: &'static str,
        ts: &'a str,
        user_id: Option<String>,
    }
    let object = Object {
        bytes: line.bytes,
        client: ClientText(line.client).to_string(),
        duration_ms: line.duration_ms(),
        level: "INFO",
        method: line.method.unwrap_or("-"),
        msg: "request",
        request_id: line.request_id,
        route: line.route.unwrap_or("-"),
        status: line.status,
        target: ACCESS_TARGET,
        ts,
        user_id: line.user_id.map(|id| id.to_string()),
    };
    serde_json::to_writer(&mut *buf, &object)?;
    buf.push(b'\n');
    Ok(())
}

/// A thread's last timestamp, `2026-11-30T14:29:11` (UTC), and the second
/// it stands for: the date is worked out once a second, not per line.
struct Stamp {
    second: u64,
    text: String,
}

impl Stamp {
    const EMPTY: Stamp = Stamp {
        second: u64::MAX,
        text: String::new(),
    };

    /// `now` to the second, as env_logger writes it (without the `Z`).
    fn seconds(&mut self, now: std::time::SystemTime) -> &str {
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if since.as_secs() != self.second {
            self.second = since.as_secs();
            self.text.clear();
            // Whole seconds: `2026-11-30T14:29:11Z`; the `Z` is the caller's.
            let whole = crate::clock::rfc3339(i64::try_from(self.second).unwrap_or(0));
            self.text.push_str(whole.trim_end_matches('Z'));
        }
        &self.text
    }
}

/// Ids are strings in the API (docs/api.md): so in the log too, where a
/// JSON reader would round a 63-bit number.
struct IdText(i64);

impl std::fmt::Display for IdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

struct ClientText(Option<IpAddr>);

impl std::fmt::Display for ClientText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(client) => write!(f, "{client}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(user_id: Option<i64>) -> AccessLine<'static> {
        AccessLine {
            method: Some("GET"),
            route: Some("/api/v1/users/{id}"),
            status: 200,
            elapsed: Duration::from_micros(1_234),
            bytes: 57,
            client: Some(IpAddr::from([10, 0, 0, 7])),
            user_id,
            request_id: "trace-1",
        }
    }

    #[test]
    fn the_access_text_line_is_env_loggers_format() {
        let mut buf = Vec::new();
        access_text(&mut buf, "2026-11-30T14:29:11", &line(Some(42))).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "[2026-11-30T14:29:11Z INFO  souk::access] request method=GET \
             route=/api/v1/users/{id} status=200 duration_ms=1.234 bytes=57 \
             client=10.0.0.7 user_id=42 request_id=trace-1\n"
        );
        let mut buf = Vec::new();
        access_text(&mut buf, "2026-11-30T14:29:11", &line(None)).unwrap();
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .ends_with("client=10.0.0.7 request_id=trace-1\n")
        );
    }

    #[test]
    fn milliseconds_print_as_their_f64_does() {
        let mut micros: Vec<u64> = (0..3_000).collect();
        micros.extend([
            9_999,
            10_000,
            10_001,
            123_456_789,
            999_999_999_999,
            999_999_999_999_999,
        ]);
        for m in micros {
            let mut buf = Vec::new();
            push_millis(&mut buf, Duration::from_micros(m));
            let expected = format!("{}", m as f64 / 1000.0);
            assert_eq!(String::from_utf8(buf).unwrap(), expected, "{m} µs");
        }
    }

    #[test]
    fn the_access_json_line_has_json_lines_keys_in_order() {
        let mut buf = Vec::new();
        access_json(&mut buf, "2026-11-30T14:29:11.005Z", &line(Some(42))).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"bytes\":57,\"client\":\"10.0.0.7\",\"duration_ms\":1.234,\"level\":\"INFO\",\
             \"method\":\"GET\",\"msg\":\"request\",\"request_id\":\"trace-1\",\
             \"route\":\"/api/v1/users/{id}\",\"status\":200,\"target\":\"souk::access\",\
             \"ts\":\"2026-11-30T14:29:11.005Z\",\"user_id\":\"42\"}\n"
        );
    }

    #[test]
    fn the_stamp_changes_with_the_second_only() {
        let mut stamp = Stamp::EMPTY;
        let at = |s: u64, ms: u64| {
            std::time::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
        };
        assert_eq!(stamp.seconds(at(1_796_048_951, 10)), "2026-11-30T14:29:11");
        assert_eq!(stamp.seconds(at(1_796_048_951, 990)), "2026-11-30T14:29:11");
        assert_eq!(stamp.seconds(at(1_796_048_952, 0)), "2026-11-30T14:29:12");
    }
}
