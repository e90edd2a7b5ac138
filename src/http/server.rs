//! The listener, the I/O thread that parks connections on epoll (idle ones
//! until readable, ones with an unsent answer until writable) and cuts off
//! late ones, the worker pool, and graceful shutdown.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use polling::{Event, Events, Poller};

use super::conn::{Conn, Flushed, Framing, Step, with_request_id};
use super::proxy::TrustedProxies;
use super::request::{Method, Request, RequestId};
use super::response::{Answer, Reply, Responder, Response};
use super::tls::Certificates;
use crate::heartbeat::Heartbeat;
use crate::limits::{
    ACCEPT_BACKOFF_MS_MAX, ACCEPT_BACKOFF_MS_MIN, DEADLINE_SWEEP_MS, SERVICE_STACK_BYTES,
    SHUTDOWN_GRACE_MS, WORKER_STACK_BYTES,
};

/// The application behind the server.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: &Request) -> Reply;

    /// Given every answer the HTTP layer makes itself to a request whose
    /// head it could parse (its refusals: 400, 411, 413, 414, 431, the 503
    /// of the body budget; and the 500 of a handler that panicked), with
    /// that request's headers (names lowercased), to add what the
    /// application adds to all its answers (CORS). Must be cheap and must
    /// not panic.
    fn decorate(&self, _headers: &[(String, Vec<u8>)], response: Response) -> Response {
        response
    }

    /// Told of every answer (including the HTTP layer's own refusals) once
    /// it is complete; for metrics and the access log. Must be cheap.
    fn completed(&self, _done: &Completed<'_>) {}
}

/// One answered request, as `Service::completed` sees it.
pub struct Completed<'a> {
    pub response: &'a Response,
    /// From the request's arrival to its answer (zero for refusals).
    pub elapsed: Duration,
    /// `None`: refused before its head could be read.
    pub method: Option<Method>,
    pub client: Option<IpAddr>,
    /// The signed-in caller, when the handler found one.
    pub user_id: Option<i64>,
    pub request_id: &'a str,
    /// Body bytes of the answer (none for HEAD).
    pub body_bytes: usize,
}

/// What is kept of a request while its answer is made elsewhere: enough
/// for `Completed`, and nothing allocated.
struct Asked {
    method: Method,
    client: IpAddr,
    user_id: Option<i64>,
    request_id: RequestId,
    head_only: bool,
    started: Instant,
}

impl Asked {
    fn of(request: &Request, framing: &Framing, started: Instant) -> Asked {
        Asked {
            method: request.method,
            client: request.client,
            user_id: request.user_id.get().copied(),
            request_id: request.request_id,
            head_only: framing.head_only,
            started,
        }
    }
}

/// The HTTP layer's own bounds (docs/http.md; README: Configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    /// Bytes of request bodies being received at once, all connections
    /// together (SOUK_MAX_INFLIGHT_BODY); bodies that arrive whole in one
    /// read do not count.
    pub max_inflight_body_bytes: usize,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub workers: usize,
}

/// What stands between the socket and HTTP: TLS, and the proxies whose
/// forwarded client addresses are believed.
#[derive(Default)]
pub struct Edge {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<Certificates>>,
    pub trusted_proxies: TrustedProxies,
}

const LISTENER_KEY: usize = 0;

/// State shared by the I/O thread, the workers and every connection.
pub(crate) struct Shared {
    pub(crate) poller: Poller,
    pub(crate) limits: Limits,
    pub(crate) trusted_proxies: TrustedProxies,
    tls: Option<Arc<Certificates>>,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) shutting_down: AtomicBool,
    /// Bytes of the in-flight body budget held by connections right now.
    pub(crate) inflight_body_bytes: AtomicUsize,
    /// Set once every connection is done (or the grace period is over):
    /// the I/O thread then exits.
    io_stop: AtomicBool,
    /// The I/O thread is gone: nothing may be parked any more.
    io_exited: AtomicBool,
    /// Connections waiting for the poller (to read a request, or to write
    /// the rest of an answer), by poller key.
    parked: Mutex<HashMap<usize, Conn>>,
    /// Stamped by the I/O thread on every wake-up (at least every
    /// DEADLINE_SWEEP_MS); the systemd watchdog reads it.
    io_heartbeat: Arc<Heartbeat>,
    work: Sender<Work>,
    pub(crate) service: Arc<dyn Service>,
}

enum Work {
    /// A connection with data to read.
    Ready(Conn),
    /// A deferred answer for a connection, with the framing of its request
    /// (rendered here, on the worker, if it is not yet).
    Resume(Conn, Framing, Answer, Asked),
    Stop,
}

pub struct Server;

/// A running server: its real address, and the way to stop it.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    io_thread: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds, then starts the I/O thread and the workers. The returned handle
    /// knows the real bound address (port 0 works).
    pub fn start(
        addr: SocketAddr,
        limits: Limits,
        edge: Edge,
        service: Arc<dyn Service>,
    ) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        // Each connection is in the queue at most once, so its length is
        // bounded by the connection cap.
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            poller: Poller::new()?,
            open_connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            inflight_body_bytes: AtomicUsize::new(0),
            io_stop: AtomicBool::new(false),
            io_exited: AtomicBool::new(false),
            parked: Mutex::new(HashMap::new()),
            io_heartbeat: Arc::new(Heartbeat::default()),
            work: work_tx,
            service,
            limits,
            trusted_proxies: edge.trusted_proxies,
            tls: edge.tls,
        });
        // A start that fails part way stops what it started: workers are
        // told to stop and joined, and the listener is registered with the
        // poller only by the I/O thread, so it is never dropped registered.
        let mut workers = Vec::with_capacity(shared.limits.workers);
        for index in 0..shared.limits.workers {
            let shared_for_worker = Arc::clone(&shared);
            let rx = work_rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || worker_loop(&shared_for_worker, &rx));
            match spawned {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    stop_workers(&shared, workers);
                    return Err(e);
                }
            }
        }
        let io_shared = Arc::clone(&shared);
        let (registered_tx, registered_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("http-io".into())
            .stack_size(SERVICE_STACK_BYTES)
            .spawn(move || {
                // SAFETY: the listener lives in this thread, which deletes it
                // from the poller before dropping it (`io_loop`); when adding
                // fails it was never registered.
                let added = unsafe {
                    io_shared
                        .poller
                        .add(&listener, Event::readable(LISTENER_KEY))
                };
                let ok = added.is_ok();
                let _ = registered_tx.send(added);
                if ok {
                    io_loop(&io_shared, listener);
                }
            });
        let registered = match spawned {
            Ok(io_thread) => match registered_rx.recv() {
                Ok(Ok(())) => Ok(io_thread),
                Ok(Err(e)) => Err((Some(io_thread), e)),
                Err(_) => Err((
                    Some(io_thread),
                    io::Error::other("the I/O thread ended at start"),
                )),
            },
            Err(e) => Err((None, e)),
        };
        let io_thread = match registered {
            Ok(io_thread) => io_thread,
            Err((io_thread, e)) => {
                if let Some(io_thread) = io_thread {
                    let _ = io_thread.join();
                }
                stop_workers(&shared, workers);
                return Err(e);
            }
        };
        Ok(ServerHandle {
            addr,
            shared,
            io_thread: Some(io_thread),
            workers,
        })
    }
}

/// Stops and joins workers of a start that failed part way.
fn stop_workers(shared: &Shared, workers: Vec<std::thread::JoinHandle<()>>) {
    for _ in &workers {
        let _ = shared.work.send(Work::Stop);
    }
    for worker in workers {
        let _ = worker.join();
    }
}

impl ServerHandle {
    /// The I/O thread's heartbeat: accepting and polling go on while it
    /// stays fresh.
    pub fn io_heartbeat(&self) -> Arc<Heartbeat> {
        Arc::clone(&self.shared.io_heartbeat)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes idle connections, lets requests in flight
    /// finish and their answers go out (up to a grace period), then stops the
    /// I/O thread and the workers.
    pub fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.shared.poller.notify();
        let grace_end = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
        while self.open_connections() > 0 && Instant::now() < grace_end {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shared.io_stop.store(true, Ordering::SeqCst);
        let _ = self.shared.poller.notify();
        if let Some(io) = self.io_thread.take() {
            let _ = io.join();
        }
        for _ in &self.workers {
            let _ = self.shared.work.send(Work::Stop);
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let left = self.open_connections();
        if left > 0 {
            log::warn!("shutdown: {left} connections still busy after the grace period");
        }
    }
}

fn lock_parked(shared: &Shared) -> MutexGuard<'_, HashMap<usize, Conn>> {
    // A panic never happens while this lock is held (only map operations and
    // poller calls run under it), but a poisoned map is still a valid map.
    shared
        .parked
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands a connection to the poller until it is readable (or, with an
/// answer unsent, writable) or its deadline passes.
fn park(shared: &Shared, mut conn: Conn) {
    let key = conn.key;
    let writing = conn.wants_write();
    let mut parked = lock_parked(shared);
    // Checked under the lock: once the I/O thread has seen the flag it closes
    // what waits for a request, under this lock. An answer still being
    // written is finished (within its deadline).
    if shared.io_exited.load(Ordering::SeqCst)
        || (!writing && shared.shutting_down.load(Ordering::SeqCst))
    {
        return; // dropping closes it
    }
    let interest = if writing {
        Event::writable(key)
    } else {
        Event::readable(key)
    };
    // Registering under the lock: the I/O thread cannot see the event before
    // the connection is in the map.
    let armed = if conn.registered {
        shared.poller.modify(&conn.stream, interest)
    } else {
        // SAFETY: the stream is deleted from the poller in `Conn::drop`,
        // before the socket closes.
        unsafe { shared.poller.add(&conn.stream, interest) }
    };
    if armed.is_ok() {
        conn.registered = true;
        parked.insert(key, conn);
    }
}

fn io_loop(shared: &Arc<Shared>, listener: TcpListener) {
    // Dropped at the start of a shutdown, so new clients are refused at once
    // instead of waiting in the backlog for an accept that never comes.
    let mut listener = Some(listener);
    let mut events = Events::new();
    let mut next_key: usize = LISTENER_KEY + 1;
    let mut accept_backoff_ms = 0u64;
    let mut accept_resume_at: Option<Instant> = None;
    let mut last_sweep = Instant::now();
    let sweep_every = Duration::from_millis(DEADLINE_SWEEP_MS);
    loop {
        events.clear();
        let wait = accept_resume_at.map_or(sweep_every, |at| {
            at.saturating_duration_since(Instant::now())
                .min(sweep_every)
        });
        if let Err(e) = shared.poller.wait(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            log::error!("poller wait failed: {e}");
            std::thread::sleep(sweep_every);
        }
        shared.io_heartbeat.beat();
        if shared.io_stop.load(Ordering::SeqCst) {
            break;
        }
        if listener.is_some() && shared.shutting_down.load(Ordering::SeqCst) {
            stop_listening(shared, &mut listener);
        }
        let mut listener_ready = false;
        for event in events.iter() {
            if event.key == LISTENER_KEY {
                listener_ready = listener.is_some();
            } else if let Some(mut conn) = lock_parked(shared).remove(&event.key) {
                conn.readable = event.readable;
                let _ = shared.work.send(Work::Ready(conn));
            }
        }
        let resume_due = accept_resume_at.is_some_and(|at| Instant::now() >= at);
        if let Some(listener) = &listener
            && (listener_ready || resume_due)
        {
            accept_resume_at = None;
            match accept_all(shared, listener, &mut next_key) {
                Ok(()) => accept_backoff_ms = 0,
                Err(e) => {
                    accept_backoff_ms =
                        (accept_backoff_ms * 2).clamp(ACCEPT_BACKOFF_MS_MIN, ACCEPT_BACKOFF_MS_MAX);
                    log::warn!("accept failed: {e}; retrying in {accept_backoff_ms} ms");
                    accept_resume_at =
                        Some(Instant::now() + Duration::from_millis(accept_backoff_ms));
                }
            }
            if accept_resume_at.is_none()
                && let Err(e) = shared
                    .poller
                    .modify(listener, Event::readable(LISTENER_KEY))
            {
                log::error!("re-arming the listener failed: {e}");
                accept_resume_at =
                    Some(Instant::now() + Duration::from_millis(ACCEPT_BACKOFF_MS_MAX));
            }
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = Instant::now();
            close_expired(shared, last_sweep);
        }
    }
    stop_listening(shared, &mut listener);
    let left: Vec<Conn> = {
        let mut parked = lock_parked(shared);
        // Under the lock: a worker that finishes after this closes its
        // connection instead of parking it where nobody looks.
        shared.io_exited.store(true, Ordering::SeqCst);
        parked.drain().map(|(_, conn)| conn).collect()
    };
    drop(left); // closes whatever is still parked after the grace period
}

/// The start of a shutdown: no more accepts, and every connection waiting
/// for a request is closed. Those writing an answer stay parked until it is
/// out or their deadline passes.
fn stop_listening(shared: &Shared, listener: &mut Option<TcpListener>) {
    if let Some(listener) = listener.take() {
        let _ = shared.poller.delete(&listener);
    }
    let idle: Vec<Conn> = {
        let mut parked = lock_parked(shared);
        let keys: Vec<usize> = parked
            .iter()
            .filter(|(_, conn)| !conn.wants_write())
            .map(|(key, _)| *key)
            .collect();
        keys.iter().filter_map(|key| parked.remove(key)).collect()
    };
    drop(idle);
}

/// Accepts until the backlog is empty. Connections beyond the cap get 503.
fn accept_all(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    next_key: &mut usize,
) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if shared.open_connections.load(Ordering::SeqCst) >= shared.limits.max_connections {
            refuse_over_capacity(shared, stream);
            continue;
        }
        if configure(&stream).is_err() {
            continue;
        }
        // Building a session allocates but does no crypto: the handshake
        // runs on a worker, like any request.
        let tls = match &shared.tls {
            None => None,
            Some(certificates) => match certificates.session() {
                Ok(session) => Some(Box::new(session)),
                Err(e) => {
                    log::error!("cannot start a TLS session: {e}");
                    continue;
                }
            },
        };
        *next_key = next_key.checked_add(1).unwrap_or(LISTENER_KEY + 1);
        let conn = Conn::new(stream, *next_key, peer, tls, Arc::clone(shared));
        park(shared, conn);
    }
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // Non-blocking: a worker writes what the socket takes and parks the
    // rest; deadlines are the I/O thread's, not the socket's.
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)
}

fn refuse_over_capacity(shared: &Shared, mut stream: TcpStream) {
    // A TLS port never answers in clear text: the client just sees a close.
    if shared.tls.is_some() {
        return;
    }
    let response = Response::error(
        503,
        "unavailable",
        "too many connections; try again shortly",
    )
    .with_header("retry-after", "1");
    let response = with_request_id(response, &RequestId::generate());
    let mut out = Vec::with_capacity(256);
    response.write_to(&mut out, false, true, false);
    // A fresh socket's send buffer is empty: this never blocks for long.
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&out);
}

fn close_expired(shared: &Shared, now: Instant) {
    let mut parked = lock_parked(shared);
    let expired: Vec<usize> = parked
        .iter()
        .filter(|(_, conn)| conn.deadline() <= now)
        .map(|(key, _)| *key)
        .collect();
    for key in expired {
        if let Some(conn) = parked.remove(&key) {
            log::debug!("closing {} after its timeout", conn.who());
            drop(conn);
        }
    }
}

fn worker_loop(shared: &Arc<Shared>, work: &Receiver<Work>) {
    while let Ok(item) = work.recv() {
        match item {
            Work::Ready(conn) => serve(shared, conn),
            Work::Resume(mut conn, framing, answer, asked) => {
                let rendered = catch_unwind(AssertUnwindSafe(|| answer.into_response()));
                let response = rendered.unwrap_or_else(|panic| {
                    log::error!(
                        "rendering the answer to request {} panicked: {}",
                        asked.request_id.as_str(),
                        panic_message(&panic)
                    );
                    Response::error(500, "internal", "internal error")
                });
                let response = finished(shared, &asked, response);
                conn.queue(&response, &framing);
                serve(shared, conn);
            }
            Work::Stop => return,
        }
    }
}

/// Writes what is queued on `conn`, then answers every whole request
/// buffered on it, one at a time; parks it whenever the socket is full or
/// more input is needed, closes it when it is done.
fn serve(shared: &Arc<Shared>, mut conn: Conn) {
    loop {
        match conn.flush() {
            Flushed::Done => {}
            Flushed::Blocked => return park(shared, conn),
            Flushed::Closing => {
                if conn.linger() {
                    park(shared, conn);
                }
                return;
            }
            Flushed::Failed => return,
        }
        match conn.next_request() {
            Step::Request(request, framing) => {
                let started = Instant::now();
                match catch_unwind(AssertUnwindSafe(|| shared.service.call(&request))) {
                    Ok(Reply::Now(response)) => {
                        let asked = Asked::of(&request, &framing, started);
                        let response = finished(shared, &asked, response);
                        conn.queue(&response, &framing);
                    }
                    Ok(Reply::Later(start)) => {
                        let asked = Asked::of(&request, &framing, started);
                        let work = shared.work.clone();
                        let deliver = move |answer: Answer| {
                            let _ = work.send(Work::Resume(conn, framing, answer, asked));
                        };
                        let responder = Responder {
                            deliver: Some(Box::new(deliver)),
                        };
                        // A panic here drops the responder, which answers
                        // 500 through the worker pool; this worker goes on.
                        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| start(responder))) {
                            log::error!(
                                "starting deferred work panicked: {}",
                                panic_message(&panic)
                            );
                        }
                        return;
                    }
                    Err(panic) => {
                        log::error!(
                            "handler panicked on {} {} (request {}): {}",
                            request.method.as_str(),
                            request.path,
                            request.request_id.as_str(),
                            panic_message(&panic)
                        );
                        let response = shared.service.decorate(
                            &request.headers,
                            Response::error(500, "internal", "internal error"),
                        );
                        let asked = Asked::of(&request, &Framing::REJECT, started);
                        let response = finished(shared, &asked, response);
                        conn.reject(&response);
                    }
                }
            }
            Step::NeedMore if conn.wants_write() => {} // a 100 Continue to send
            Step::NeedMore => {
                if conn.has_buffered_bytes() || !shared.shutting_down.load(Ordering::SeqCst) {
                    park(shared, conn);
                }
                return;
            }
            Step::Reject(response, refused) => {
                log::debug!("refused a request from {}: {}", conn.who(), response.status);
                shared.service.completed(&Completed {
                    response: &response,
                    elapsed: Duration::ZERO,
                    method: refused.method,
                    client: refused.client,
                    user_id: None,
                    request_id: refused.request_id.as_str(),
                    body_bytes: response.body.len(),
                });
                conn.reject(&response);
            }
            Step::Closed => return,
        }
    }
}

/// An answer is ready: it gets its request's id, and the service hears of it.
fn finished(shared: &Shared, asked: &Asked, response: Response) -> Response {
    let response = with_request_id(response, &asked.request_id);
    shared.service.completed(&Completed {
        response: &response,
        elapsed: asked.started.elapsed(),
        method: Some(asked.method),
        client: Some(asked.client),
        user_id: asked.user_id,
        request_id: asked.request_id.as_str(),
        body_bytes: if asked.head_only || response.status == 204 {
            0
        } else {
            response.body.len()
        },
    });
    response
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
