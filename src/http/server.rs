//! The listener and the acceptor thread, the workers — each an event loop
//! on its own epoll that owns the connections it was given (reading,
//! handling and answering their requests, parking them until their socket
//! has news, cutting off late ones) — and graceful shutdown.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::conn::{Conn, Flushed, Framing, Refused, Step};
use super::proxy::TrustedProxies;
use super::request::{Headers, Method, Request, RequestId};
use super::response::{Answer, Reply, Responder, Response};
use super::tls::Certificates;
use crate::heartbeat::Heartbeat;
use crate::limits::{
    ACCEPT_BACKOFF_MS_MAX, ACCEPT_BACKOFF_MS_MIN, ACCEPTOR_EVENTS, DEADLINE_SWEEP_MS, LOOP_EVENTS,
    SERVICE_STACK_BYTES, SHUTDOWN_GRACE_MS, STEAL_AFTER_MS, WORKER_STACK_BYTES,
};
use crate::util::LockUnpoisoned;

/// The application behind the server.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: &Request) -> Reply;

    /// Given every answer the HTTP layer makes itself to a request whose
    /// head it could parse (its refusals: 400, 411, 413, 414, 431, the 503
    /// of the body budget; and the 500 of a handler that panicked), with
    /// that request's headers (names lowercased), to add what the
    /// application adds to all its answers (CORS). Must be cheap and must
    /// not panic.
    fn decorate(&self, _headers: &Headers, response: Response) -> Response {
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

/// The acceptor's tokens: the listener, and its waker (a shutdown).
const LISTENER: Token = Token(0);
const ACCEPTOR_WAKE: Token = Token(1);
/// An event loop's waker; connection keys are counted up from
/// `FIRST_CONN_KEY` and never reach it.
const LOOP_WAKE: Token = Token(usize::MAX);
const FIRST_CONN_KEY: usize = 1;

/// State shared by the acceptor, every event loop and every connection.
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) trusted_proxies: TrustedProxies,
    tls: Option<Arc<Certificates>>,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) shutting_down: AtomicBool,
    /// Bytes of the in-flight body budget held by connections right now.
    pub(crate) inflight_body_bytes: AtomicUsize,
    /// Set once every connection is done (or the grace period is over): the
    /// acceptor and the event loops then exit.
    stop: AtomicBool,
    /// The clock of `Home::busy_since`.
    epoch: Instant,
    /// Stamped by the acceptor on every wake-up (at least every
    /// DEADLINE_SWEEP_MS); the systemd watchdog reads it.
    io_heartbeat: Arc<Heartbeat>,
    pub(crate) service: Arc<dyn Service>,
}

/// What reaches an event loop from other threads.
enum Inbound {
    /// A new connection, from the acceptor.
    Accepted(Conn),
    /// A deferred answer for one of its connections, with the framing of
    /// its request (rendered on the loop if it is not yet).
    Resume(Conn, Framing, Answer, Asked),
}

/// One event loop as its connections, their responders, the acceptor and
/// the other loops see it: where to register a socket, how to hand it
/// something, and what it holds (which another loop may take over while
/// this one is stuck in a handler).
pub(crate) struct Home {
    pub(crate) registry: Registry,
    waker: Waker,
    /// Each connection is in it at most once, so its length is bounded by
    /// the connection cap.
    inbox: Sender<Inbound>,
    inbox_rx: Receiver<Inbound>,
    /// A wake-up is on its way: later deliveries need not send another.
    woken: AtomicBool,
    /// The loop has exited: what is delivered now is dropped (closing its
    /// connection) rather than kept, for nobody would take it.
    closed: AtomicBool,
    /// Connections waiting for their socket (to read a request, or to
    /// write the rest of an answer), by key. Those whose answer is being
    /// made elsewhere are not here. Locked by its loop for each event, by
    /// another loop only to take them all over.
    parked: Mutex<HashMap<usize, Conn>>,
    /// Connections this loop owns (the acceptor gives a new one to the loop
    /// with the fewest).
    pub(crate) connections: AtomicUsize,
    /// When the loop began working on the connection it is serving now
    /// (`Shared::millis`, plus one), or 0 while it waits: how long one
    /// handler has been holding it.
    busy_since: AtomicU64,
}

impl Home {
    fn parked(&self) -> MutexGuard<'_, HashMap<usize, Conn>> {
        self.parked.lock_unpoisoned()
    }

    /// Working on one connection for longer than STEAL_AFTER_MS: a handler
    /// is holding it up.
    fn stuck(&self, now_ms: u64) -> bool {
        let since = self.busy_since.load(Ordering::Relaxed);
        since != 0 && now_ms.saturating_sub(since - 1) >= STEAL_AFTER_MS
    }

    /// Hands `item` to the loop and wakes it, unless a wake-up is pending.
    /// After the loop has exited the item is dropped (closing its
    /// connection).
    fn deliver(&self, item: Inbound) {
        if self.inbox.send(item).is_err() {
            return;
        }
        if self.closed.load(Ordering::SeqCst) {
            self.discard();
        } else if !self.woken.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// At the loop's exit: closes what it holds. A connection holds its
    /// home, so what stayed here would never close.
    fn discard(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.parked().clear();
        while self.inbox_rx.try_recv().is_ok() {}
    }
}

impl Shared {
    /// Milliseconds since the server started.
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }
}

pub struct Server;

/// A running server: its real address, and the way to stop it.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor_waker: Arc<Waker>,
    homes: Arc<[Arc<Home>]>,
    acceptor: Option<JoinHandle<()>>,
    loops: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds, then starts the event loops and the acceptor. The returned
    /// handle knows the real bound address (port 0 works).
    pub fn start(
        addr: SocketAddr,
        limits: Limits,
        edge: Edge,
        service: Arc<dyn Service>,
    ) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::new(limits, edge, service));
        let mut polls = Vec::with_capacity(shared.limits.workers);
        for _ in 0..shared.limits.workers {
            polls.push(EventLoop::poll()?);
        }
        let homes: Arc<[Arc<Home>]> = polls.iter().map(|(_, home)| Arc::clone(home)).collect();
        // A start that fails part way stops what it started.
        let loops = spawn_loops(&shared, &homes, polls)?;
        let (acceptor, acceptor_waker) = match spawn_acceptor(&shared, &homes, listener) {
            Ok(pair) => pair,
            Err(e) => {
                stop_loops(&shared, &homes, loops);
                return Err(e);
            }
        };
        Ok(ServerHandle {
            addr,
            shared,
            acceptor_waker,
            homes,
            acceptor: Some(acceptor),
            loops,
        })
    }
}

impl Shared {
    /// Nothing open yet, nothing stopping.
    fn new(limits: Limits, edge: Edge, service: Arc<dyn Service>) -> Shared {
        Shared {
            open_connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            inflight_body_bytes: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            io_heartbeat: Arc::new(Heartbeat::default()),
            service,
            limits,
            trusted_proxies: edge.trusted_proxies,
            tls: edge.tls,
        }
    }
}

/// Starts a thread per event loop; when one cannot start, stops those that
/// did.
fn spawn_loops(
    shared: &Arc<Shared>,
    homes: &Arc<[Arc<Home>]>,
    polls: Vec<(Poll, Arc<Home>)>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut loops = Vec::with_capacity(polls.len());
    for (index, (poll, home)) in polls.into_iter().enumerate() {
        let event_loop = EventLoop {
            shared: Arc::clone(shared),
            home,
            homes: Arc::clone(homes),
            poll,
            drained: false,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || event_loop.run());
        match spawned {
            Ok(thread) => loops.push(thread),
            Err(e) => {
                stop_loops(shared, homes, loops);
                return Err(e);
            }
        }
    }
    Ok(loops)
}

/// Starts the acceptor's thread on `listener`; its waker stops it.
fn spawn_acceptor(
    shared: &Arc<Shared>,
    homes: &Arc<[Arc<Home>]>,
    listener: TcpListener,
) -> io::Result<(JoinHandle<()>, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), ACCEPTOR_WAKE)?);
    let mut acceptor = Acceptor {
        shared: Arc::clone(shared),
        homes: Arc::clone(homes),
        poll,
        listener: None,
        next_key: FIRST_CONN_KEY,
    };
    // The listener is registered before the thread starts and dropped
    // with the acceptor, by whichever thread owns it then.
    acceptor.listen(listener)?;
    let thread = std::thread::Builder::new()
        .name("http-io".into())
        .stack_size(SERVICE_STACK_BYTES)
        .spawn(move || acceptor.run())?;
    Ok((thread, waker))
}

/// Stops and joins the event loops.
fn stop_loops(shared: &Shared, homes: &[Arc<Home>], loops: Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::SeqCst);
    for home in homes {
        let _ = home.waker.wake();
    }
    for thread in loops {
        let _ = thread.join();
    }
}

impl ServerHandle {
    /// The acceptor's heartbeat: accepting goes on while it stays fresh.
    pub fn io_heartbeat(&self) -> Arc<Heartbeat> {
        Arc::clone(&self.shared.io_heartbeat)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes idle connections, lets requests in flight
    /// finish and their answers go out (up to a grace period), then stops the
    /// acceptor and the event loops.
    pub fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.acceptor_waker.wake();
        for home in self.homes.iter() {
            let _ = home.waker.wake();
        }
        let grace_end = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
        while self.open_connections() > 0 && Instant::now() < grace_end {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.acceptor_waker.wake();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        stop_loops(&self.shared, &self.homes, std::mem::take(&mut self.loops));
        let left = self.open_connections();
        if left > 0 {
            log::warn!("shutdown: {left} connections still busy after the grace period");
        }
    }
}

/// The thread that accepts connections and gives each to an event loop.
struct Acceptor {
    shared: Arc<Shared>,
    homes: Arc<[Arc<Home>]>,
    poll: Poll,
    /// Dropped at the start of a shutdown, so new clients are refused at
    /// once instead of waiting in the backlog for an accept that never comes.
    listener: Option<TcpListener>,
    next_key: usize,
}

impl Acceptor {
    fn listen(&mut self, listener: TcpListener) -> io::Result<()> {
        let fd = listener.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(())
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(ACCEPTOR_EVENTS);
        let mut accept_backoff_ms = 0u64;
        let mut accept_resume_at: Option<Instant> = None;
        let sweep_every = Duration::from_millis(DEADLINE_SWEEP_MS);
        loop {
            let wait = accept_resume_at.map_or(sweep_every, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(sweep_every)
            });
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("poll failed: {e}");
                std::thread::sleep(sweep_every);
            }
            self.shared.io_heartbeat.beat();
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                self.stop_listening();
            }
            let listener_ready = events.iter().any(|event| event.token() == LISTENER);
            let resume_due = accept_resume_at.is_some_and(|at| Instant::now() >= at);
            // Edge-triggered: only a new connection wakes us, so after a
            // failed accept the backlog is retried on the backoff's clock.
            if self.listener.is_some() && (listener_ready || resume_due) {
                accept_resume_at = None;
                match self.accept_all() {
                    Ok(()) => accept_backoff_ms = 0,
                    Err(e) => {
                        accept_backoff_ms = (accept_backoff_ms * 2)
                            .clamp(ACCEPT_BACKOFF_MS_MIN, ACCEPT_BACKOFF_MS_MAX);
                        log::warn!("accept failed: {e}; retrying in {accept_backoff_ms} ms");
                        accept_resume_at =
                            Some(Instant::now() + Duration::from_millis(accept_backoff_ms));
                    }
                }
            }
        }
        self.stop_listening();
    }

    fn stop_listening(&mut self) {
        if let Some(listener) = self.listener.take() {
            let fd = listener.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// Accepts until the backlog is empty. Connections beyond the cap get 503.
    fn accept_all(&mut self) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        let shared = &self.shared;
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
            // runs on the event loop, like any request.
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
            let key = self.next_key;
            self.next_key = match key.checked_add(1) {
                Some(next) if next != LOOP_WAKE.0 => next,
                _ => FIRST_CONN_KEY,
            };
            // The loop with the fewest connections, one stuck in a handler
            // last.
            let now_ms = shared.millis();
            let Some(home) = self
                .homes
                .iter()
                .min_by_key(|home| (home.stuck(now_ms), home.connections.load(Ordering::Relaxed)))
            else {
                continue;
            };
            let conn = Conn::new(stream, key, peer, tls, Arc::clone(shared), Arc::clone(home));
            home.deliver(Inbound::Accepted(conn));
        }
    }
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // Non-blocking: a loop writes what the socket takes and keeps the rest;
    // deadlines are the loop's, not the socket's.
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
    let mut out = Vec::with_capacity(256);
    response.write_to(&mut out, &Framing::REJECT, true, &RequestId::generate());
    // A fresh socket's send buffer is empty: this never blocks for long.
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&out);
}

/// One worker: an event loop that owns its connections (registered
/// edge-triggered for reading and writing), reads, handles and answers
/// their requests, and cuts off late ones. When another loop is stuck in a
/// handler, this one takes over that loop's waiting connections.
struct EventLoop {
    shared: Arc<Shared>,
    home: Arc<Home>,
    /// Every loop's, this one's included.
    homes: Arc<[Arc<Home>]>,
    poll: Poll,
    /// The start of a shutdown was seen and idle connections closed.
    drained: bool,
}

impl EventLoop {
    /// A loop's poll and the home around it.
    fn poll() -> io::Result<(Poll, Arc<Home>)> {
        let poll = Poll::new()?;
        let (inbox, inbox_rx) = crossbeam_channel::unbounded();
        let home = Arc::new(Home {
            registry: poll.registry().try_clone()?,
            waker: Waker::new(poll.registry(), LOOP_WAKE)?,
            inbox,
            inbox_rx,
            woken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            parked: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            busy_since: AtomicU64::new(0),
        });
        Ok((poll, home))
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(LOOP_EVENTS);
        let sweep_every = Duration::from_millis(DEADLINE_SWEEP_MS);
        let mut last_sweep = Instant::now();
        loop {
            let wait = sweep_every.saturating_sub(last_sweep.elapsed());
            self.home.busy_since.store(0, Ordering::Relaxed);
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("poll failed: {e}");
                std::thread::sleep(sweep_every);
            }
            let now_ms = self.shared.millis();
            self.home.busy_since.store(now_ms + 1, Ordering::Relaxed);
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            if !self.drained && self.shared.shutting_down.load(Ordering::SeqCst) {
                self.drained = true;
                self.close_idle();
            }
            for event in events.iter() {
                let taken = self.home.parked().remove(&event.token().0);
                if let Some(mut conn) = taken {
                    self.mark_busy();
                    // Edge-triggered: what the socket said is kept until a
                    // read or a write finds it no longer so.
                    conn.readable |=
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.serve(conn);
                }
            }
            // Cleared before the inbox is read: a delivery after this
            // point wakes the next poll.
            self.home.woken.store(false, Ordering::SeqCst);
            let home = Arc::clone(&self.home);
            self.take_inbox(&home);
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = Instant::now();
                self.close_expired(last_sweep);
                self.take_over_stuck(now_ms);
            }
        }
        // Whatever is still here after the grace period closes now.
        self.home.discard();
    }

    /// From now on, until the loop waits again, it is working on one
    /// connection.
    fn mark_busy(&self) {
        let now_ms = self.shared.millis();
        self.home.busy_since.store(now_ms + 1, Ordering::Relaxed);
    }

    /// Everything in `from`'s inbox (this loop's, or a stuck one's).
    fn take_inbox(&mut self, from: &Home) {
        while let Ok(item) = from.inbox_rx.try_recv() {
            self.mark_busy();
            match item {
                Inbound::Accepted(mut conn) => {
                    conn.move_to(&self.home);
                    self.park(conn);
                }
                Inbound::Resume(mut conn, framing, answer, asked) => {
                    conn.move_to(&self.home);
                    self.resume(conn, framing, answer, asked);
                }
            }
        }
    }

    /// Takes over what waits on loops stuck in a handler: their parked
    /// connections and their inboxes (new connections, answers made
    /// elsewhere). The connection being handled stays with its loop.
    fn take_over_stuck(&mut self, now_ms: u64) {
        let homes = Arc::clone(&self.homes);
        for other in homes.iter() {
            if Arc::ptr_eq(other, &self.home) || !other.stuck(now_ms) {
                continue;
            }
            let waiting: Vec<Conn> = other.parked().drain().map(|(_, conn)| conn).collect();
            if !waiting.is_empty() {
                log::debug!(
                    "taking over {} connections of a worker stuck in a handler",
                    waiting.len()
                );
            }
            for mut conn in waiting {
                conn.move_to(&self.home);
                self.park(conn);
            }
            self.take_inbox(other);
        }
    }

    /// Keeps a connection until its socket has news (or its deadline
    /// passes). Registered once, for reading and writing, edge-triggered.
    fn park(&mut self, mut conn: Conn) {
        // An answer still being written is finished (within its deadline);
        // a connection waiting for a request closes at a shutdown.
        if !conn.wants_write() && self.shared.shutting_down.load(Ordering::SeqCst) {
            return; // dropping closes it
        }
        if !conn.registered {
            let fd = conn.stream.as_raw_fd();
            let registered = conn.home.registry.register(
                &mut SourceFd(&fd),
                Token(conn.key),
                Interest::READABLE | Interest::WRITABLE,
            );
            if registered.is_err() {
                return;
            }
            conn.registered = true;
            // Edge-triggered: bytes that came before registering may
            // raise no event; look once.
            conn.readable = true;
            return self.serve(conn);
        }
        self.home.parked().insert(conn.key, conn);
    }

    /// The start of a shutdown: every connection waiting for a request
    /// closes. Those writing an answer stay until it is out or their
    /// deadline passes.
    fn close_idle(&mut self) {
        self.home.parked().retain(|_, conn| conn.wants_write());
    }

    /// Closes what is past its deadline; what is idle between requests
    /// gives its buffers back (a busy connection is seldom idle at a
    /// sweep, so it keeps them; a thousand quiet ones hold none).
    fn close_expired(&mut self, now: Instant) {
        self.home.parked().retain(|_, conn| {
            let alive = conn.deadline() > now;
            if !alive {
                log::debug!("closing {} after its timeout", conn.who());
            } else {
                conn.release_idle_buffers();
            }
            alive
        });
    }

    /// A deferred answer is back: it is rendered (if it is not yet),
    /// queued, and the connection served on.
    fn resume(&mut self, mut conn: Conn, framing: Framing, answer: Answer, asked: Asked) {
        let rendered = catch_unwind(AssertUnwindSafe(|| answer.into_response()));
        let response = rendered.unwrap_or_else(|panic| {
            log::error!(
                "rendering the answer to request {} panicked: {}",
                asked.request_id.as_str(),
                panic_message(&panic)
            );
            Response::error(500, "internal", "internal error")
        });
        finished(&self.shared, &asked, &response);
        conn.queue(&response, &framing, &asked.request_id);
        // Events that came while the answer was being made were not seen.
        conn.readable = true;
        self.serve(conn);
    }

    /// Writes what is queued on `conn`, then answers every whole request
    /// buffered on it, one at a time; parks it whenever the socket is full
    /// or more input is needed, closes it when it is done.
    fn serve(&mut self, mut conn: Conn) {
        let shared = Arc::clone(&self.shared);
        loop {
            match conn.flush() {
                Flushed::Done => {}
                Flushed::Blocked => return self.park(conn),
                Flushed::Closing => {
                    if conn.linger() {
                        self.park(conn);
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
                            finished(&shared, &asked, &response);
                            conn.queue(&response, &framing, &asked.request_id);
                        }
                        Ok(Reply::Later(start)) => {
                            let asked = Asked::of(&request, &framing, started);
                            return self.defer(conn, framing, asked, start);
                        }
                        Err(panic) => {
                            let asked = Asked::of(&request, &Framing::REJECT, started);
                            handler_panicked(&shared, &mut conn, &request, asked, &panic);
                        }
                    }
                }
                Step::NeedMore if conn.wants_write() => {} // a 100 Continue to send
                Step::NeedMore => {
                    if conn.has_buffered_bytes() || !shared.shutting_down.load(Ordering::SeqCst) {
                        self.park(conn);
                    }
                    return;
                }
                Step::Reject(response, refused) => refuse(&shared, &mut conn, &response, &refused),
                Step::Closed => return,
            }
        }
    }

    /// The handler answers later: `start` gets a responder that brings the
    /// answer, with `conn`, back to this loop's inbox (`resume`).
    fn defer(
        &self,
        conn: Conn,
        framing: Framing,
        asked: Asked,
        start: Box<dyn FnOnce(Responder) + Send>,
    ) {
        let home = Arc::clone(&self.home);
        let deliver = move |answer: Answer| {
            home.deliver(Inbound::Resume(conn, framing, answer, asked));
        };
        let responder = Responder {
            deliver: Some(Box::new(deliver)),
        };
        // A panic here drops the responder, which answers 500 through this
        // loop's inbox.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| start(responder))) {
            log::error!("starting deferred work panicked: {}", panic_message(&panic));
        }
    }
}

/// A handler panicked on `request`: logged, answered 500, and the
/// connection closed after it.
fn handler_panicked(
    shared: &Shared,
    conn: &mut Conn,
    request: &Request,
    asked: Asked,
    panic: &Box<dyn std::any::Any + Send>,
) {
    log::error!(
        "handler panicked on {} {} (request {}): {}",
        request.method.as_str(),
        request.path(),
        request.request_id.as_str(),
        panic_message(panic)
    );
    let response = shared.service.decorate(
        &request.headers,
        Response::error(500, "internal", "internal error"),
    );
    finished(shared, &asked, &response);
    conn.reject(&response, &asked.request_id);
}

/// The HTTP layer refused a request itself: the service hears of it, and
/// the connection closes after the answer.
fn refuse(shared: &Shared, conn: &mut Conn, response: &Response, refused: &Refused) {
    log::debug!("refused a request from {}: {}", conn.who(), response.status);
    shared.service.completed(&Completed {
        response,
        elapsed: Duration::ZERO,
        method: refused.method,
        client: refused.client,
        user_id: None,
        request_id: refused.request_id.as_str(),
        body_bytes: response.body.len(),
    });
    conn.reject(response, &refused.request_id);
}

/// An answer is ready: the service hears of it (it goes out with its
/// request's id).
fn finished(shared: &Shared, asked: &Asked, response: &Response) {
    shared.service.completed(&Completed {
        response,
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
