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
use crate::http::Method;
use crate::limits::{LOG_BUFFER_BYTES_MAX, SERVICE_STACK_BYTES};

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
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
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
            std::mem::swap(&mut *pending, &mut out);
            let writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Writes `pending` out on the calling thread.
    fn write_out(&self, pending: &mut Vec<u8>) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let _ = io::stderr().write_all(pending);
        pending.clear();
    }
}

/// env_logger's target: one whole line per `write`.
struct BatchWriter(Arc<Batch>);

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let batch = &self.0;
        let mut pending = batch.lock_pending();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        if pending.len() >= LOG_BUFFER_BYTES_MAX {
            batch.write_out(&mut pending);
        } else if was_empty {
            batch.arrived.notify_one();
        }
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
    /// `None`: refused before its head could be read.
    pub method: Option<Method>,
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
pub fn access(line: &AccessLine<'_>) {
    // Milliseconds with microsecond precision, as a number.
    let duration_ms = (line.elapsed.as_micros() as f64) / 1000.0;
    let user_id = line.user_id.map(IdText);
    let user_id = user_id.as_ref().map(kv::Value::from_display);
    log::info!(
        target: ACCESS_TARGET,
        method = line.method.map_or("-", Method::as_str),
        route = line.route.unwrap_or("-"),
        status = line.status,
        duration_ms = duration_ms,
        bytes = line.bytes,
        client:% = ClientText(line.client),
        user_id = user_id,
        request_id = line.request_id;
        "request"
    );
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
