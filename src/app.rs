//! The application: configuration, store and routes behind the HTTP server,
//! and the running service's lifecycle (start, address, shutdown).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::accounts::guard::{AddressLimit, LoginGuard};
use crate::accounts::operator::Follower;
use crate::accounts::passwords::Hasher;
use crate::accounts::users::UserStats;
use crate::api::deferred::Deferred;
use crate::api::{self, Router};
use crate::cache::Caches;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::tls::Certificates;
use crate::http::{
    self, Completed, Headers, Reply, Request, Responder, Response, ServerHandle, Service,
};
use crate::ledger::idempotency::InFlight;
use crate::logs::{ACCESS_TARGET, AccessLine};
use crate::memo::Memo;
use crate::monitor::alerts::Thresholds;
use crate::monitor::{Monitor, MonitorThread};
use crate::orders::messages::{MESSAGE_WINDOW, MESSAGES_PER_WINDOW, SendLimit};
use crate::store::writer::Weight;
use crate::store::{ServeLock, Store, StoreConfig, Touched, WriteTx};
use crate::timers::Sweeper;

/// What every handler can reach.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub hasher: Hasher,
    pub guard: Arc<LoginGuard>,
    /// `POST /users` per client address: each one costs an argon2 hash.
    pub registrations: AddressLimit,
    /// Anonymous listing reads and searches per client address: they need
    /// no account, so the address is the only thing to count.
    pub anonymous_reads: AddressLimit,
    /// Order messages per sender, in a sliding window (shared with the
    /// write's callback, which gives a failed send's slot back).
    pub messages_sent: Arc<SendLimit>,
    pub user_stats: Memo<UserStats>,
    pub wallet_stats: Memo<serde_json::Value>,
    pub in_flight: InFlight,
    pub monitor: Arc<Monitor>,
    pub caches: Arc<Caches>,
    /// Operator changes made from the command line (`accounts::operator`).
    pub operator: Follower,
    router: Router,
}

impl Service for App {
    fn call(&self, request: &Request) -> Reply {
        let cors = &self.config.cors_origins;
        if cors.is_empty() {
            return self.router.dispatch(self, request);
        }
        let origin = cors.allowed(&request.headers).map(str::to_owned);
        if let Some(origin) = &origin
            && api::cors::is_preflight(request)
        {
            return Reply::Now(api::cors::preflight(origin));
        }
        match self.router.dispatch(self, request) {
            Reply::Now(response) => Reply::Now(api::cors::decorate(response, origin.as_deref())),
            Reply::Later(start) => Reply::Later(Box::new(move |responder: Responder| {
                start(
                    responder.map(move |response| api::cors::decorate(response, origin.as_deref())),
                );
            })),
        }
    }

    /// The HTTP layer's own refusals and the 500 of a panic carry the CORS
    /// headers like every other answer.
    fn decorate(&self, headers: &Headers, response: Response) -> Response {
        let cors = &self.config.cors_origins;
        if cors.is_empty() {
            return response;
        }
        api::cors::decorate(response, cors.allowed(headers))
    }

    fn completed(&self, done: &Completed<'_>) {
        let response = done.response;
        self.monitor
            .requests
            .record(response.route, response.status, done.elapsed);
        if self.config.access_log && log::log_enabled!(target: ACCESS_TARGET, log::Level::Info) {
            crate::logs::access(&AccessLine {
                method: done.method.map(crate::http::Method::as_str),
                route: response.route.and_then(|index| self.router.pattern(index)),
                status: response.status,
                elapsed: done.elapsed,
                bytes: done.body_bytes,
                client: done.client,
                user_id: done.user_id,
                request_id: done.request_id,
            });
        }
    }
}

impl App {
    /// How handlers read: `f` on a pooled reader connection, within
    /// QUERY_TIMEOUT, its store faults counted by the breaker
    /// (`store::Readers::read`).
    pub fn read<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        self.store.readers.read(f)
    }

    /// A write through the group-commit writer, worth `weight` (see
    /// `Weight`), that frees the worker while it waits: `render` builds the
    /// answer on a worker once the commit is durable. `work` may run twice
    /// (see `Writer::submit`).
    pub fn write<T, W, R>(&self, weight: Weight, work: W, render: R) -> Reply
    where
        T: Send + 'static,
        W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
        R: FnOnce(T) -> Response + Send + 'static,
    {
        Deferred::write(&self.store.writer, weight, work).render(render)
    }
}

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    /// `None`: plain HTTP.
    pub tls: Option<Arc<Certificates>>,
    pub app: Arc<App>,
    server: ServerHandle,
    sweeper: Sweeper,
    monitor: MonitorThread,
    /// Released only after the store is shut down (see `ServeLock`).
    serve_lock: ServeLock,
}

impl Running {
    /// `https` or `http`, for the address the server listens on.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// SIGHUP: reads the TLS certificate and key again for new connections
    /// (open ones go on). A bad pair keeps the old one; the error names the
    /// file. Without TLS there is nothing to reload.
    pub fn reload_tls(&self) -> std::result::Result<(), String> {
        match &self.tls {
            Some(certificates) => certificates.reload(),
            None => Ok(()),
        }
    }

    /// The threads whose life the systemd watchdog vouches for: the HTTP
    /// acceptor thread and the database writer.
    pub fn heartbeats(&self) -> Vec<crate::systemd::Watched> {
        vec![
            ("http-io", self.server.io_heartbeat()),
            ("db-writer", Arc::clone(&self.app.store.writer.heartbeat)),
        ]
    }

    /// Graceful stop: no new connections, requests in flight finish, queued
    /// writes commit, then the writer stops.
    pub fn shutdown(self) {
        self.server.shutdown();
        self.sweeper.stop();
        self.monitor.stop();
        self.app.store.shutdown();
        drop(self.serve_lock);
    }
}

/// Opens the store and starts serving the standard routes.
pub fn start(config: Config) -> Result<Running> {
    start_with_routes(config, api::routes())
}

/// Like `start`, with a router of the caller's (tests add routes to
/// `api::routes()`).
pub fn start_with_routes(config: Config, router: Router) -> Result<Running> {
    config.check().map_err(Error::Setup)?;
    // Before anything touches the database: a typo in SOUK_TLS_KEY on a
    // first deployment must not leave a new, empty database behind.
    let tls = load_tls(&config)?;
    // A refused file is refused before the lock file is made beside it.
    let found = crate::store::open::for_writing(&config.db_path)?;
    // Before anything writes the file: a second server stops here.
    let serve_lock = ServeLock::acquire(&config.db_path)?;
    let caches = Caches::new(&config);
    let store = open_store(&config, &caches)?;
    let limits = http_limits(&config);
    let addr = config.addr;
    let edge = http::Edge {
        tls: tls.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
    };
    let app = build_app(config, router, store, caches, &found)?;
    crate::cache::warm::spawn(
        Arc::clone(&app.caches),
        app.store.readers.clone(),
        app.config.currencies.clone(),
    );
    let service: Arc<dyn Service> = app.clone();
    let server = http::Server::start(addr, limits, edge, service).map_err(|e| {
        app.store.shutdown();
        Error::Setup(format!("cannot listen on {addr}: {e}"))
    })?;
    let threads = Sweeper::start(app.store.clone())
        .and_then(|sweeper| Ok((sweeper, app.monitor.start(&app.config.db_path)?)));
    let (sweeper, monitor) = match threads {
        Ok(pair) => pair,
        Err(e) => {
            server.shutdown();
            app.store.shutdown();
            let message = format!("cannot start a service thread: {e}");
            return Err(Error::internal(message));
        }
    };
    Ok(Running {
        addr: server.addr,
        tls,
        app,
        server,
        sweeper,
        monitor,
        serve_lock,
    })
}

/// The TLS certificate and key, when both are set (`Config::check` made
/// sure both or neither are).
fn load_tls(config: &Config) -> Result<Option<Arc<Certificates>>> {
    match config.tls_cert.as_ref().zip(config.tls_key.as_ref()) {
        Some((cert, key)) => Ok(Some(Arc::new(
            Certificates::load(cert, key).map_err(Error::Setup)?,
        ))),
        None => Ok(None),
    }
}

/// Opens the store, its commits telling `caches` what they changed.
fn open_store(config: &Config, caches: &Arc<Caches>) -> Result<Store> {
    let invalidate = Arc::clone(caches);
    Store::open(
        &StoreConfig {
            path: config.db_path.clone(),
            readers: config.db_readers,
            query_timeout: config.query_timeout,
            breaker_threshold: config.circuit_threshold,
            breaker_cooldown: config.circuit_cooldown,
        },
        Arc::new(move |conn: &rusqlite::Connection, touched: &[Touched]| {
            invalidate.invalidate(conn, touched);
        }),
    )
}

/// The HTTP layer's bounds, from the configuration.
fn http_limits(config: &Config) -> http::Limits {
    http::Limits {
        max_body_bytes: config.max_body_bytes,
        max_inflight_body_bytes: usize::try_from(config.max_inflight_body_bytes)
            .unwrap_or(usize::MAX),
        max_connections: config.max_connections,
        read_timeout: config.read_timeout,
        idle_timeout: config.idle_timeout,
        workers: config.workers,
    }
}

/// Everything handlers reach, around the opened store: the password hasher,
/// the rate limits, the memos, the operator follower and the monitor.
fn build_app(
    config: Config,
    router: Router,
    store: Store,
    caches: Arc<Caches>,
    found: &crate::store::Preflight,
) -> Result<Arc<App>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher = Hasher::start(cpus)?;
    let guard = Arc::new(LoginGuard::new(
        config.max_login_attempts,
        config.lockout_duration,
        config.login_rate_limit_per_minute,
    ));
    let registrations =
        AddressLimit::new("registration", config.registration_rate_limit_per_minute);
    let anonymous_reads =
        AddressLimit::new("anonymous read", crate::limits::ANONYMOUS_READS_PER_MINUTE);
    log_database(found);
    let operator = Follower::start(&store.readers).inspect_err(|_| store.shutdown())?;
    let user_stats = Memo::new(config.stats_cache_ttl);
    let wallet_stats = Memo::new(config.stats_cache_ttl);
    let monitor = Arc::new(Monitor::new(
        router.describe(),
        thresholds(&config),
        config.monitoring_interval,
        Arc::clone(&store.breaker),
    ));
    Ok(Arc::new(App {
        config,
        store,
        hasher,
        guard,
        registrations,
        anonymous_reads,
        messages_sent: Arc::new(SendLimit::new(MESSAGES_PER_WINDOW, MESSAGE_WINDOW)),
        user_stats,
        wallet_stats,
        in_flight: InFlight::default(),
        monitor,
        caches,
        operator,
        router,
    }))
}

/// The start log's line on the database: its absolute path, and whether
/// this start created it (a mistyped SOUK_DB shows here).
fn log_database(found: &crate::store::Preflight) {
    let path = found.absolute.display();
    let version = crate::store::SCHEMA_VERSION;
    if found.created {
        log::info!("database {path}: new file created at schema version {version}");
    } else if found.version < version {
        log::info!(
            "database {path}: upgraded from schema version {} to {version}",
            found.version
        );
    } else {
        log::info!("database {path} (schema version {version})");
    }
}

fn thresholds(config: &Config) -> Thresholds {
    Thresholds {
        memory_percent: f64::from(config.alert_memory_percent),
        cpu_percent: f64::from(config.alert_cpu_percent),
        response_ms: config.alert_response_ms as f64,
        error_percent: f64::from(config.alert_error_percent),
        cooldown: config.alert_cooldown,
    }
}
