//! The process-wide fixed bounds (HTTP framing, queues, threads, the writer's
//! batches, timeouts), each with the reason for its value. Bounds an operator
//! may change live in `config`; these do not move. Bounds that belong to one
//! module stand beside the code they bound, each with its reason too:
//! input lengths and counts beside their parse functions (`accounts`,
//! `listings`, `orders`, `orders::reviews`, `orders::messages`, `ledger`,
//! `ledger::idempotency`, `listings::search`, `config`'s currencies), page
//! sizes in `api::query`, cache sizes in `cache` and `cache::search`, the
//! login guard's maps in `accounts::guard`, the hash queue in
//! `accounts::passwords`, the timer thread's in `timers`, the operator
//! follower's in `accounts::operator`, the monitor's in `monitor::alerts` and
//! `monitor::traffic`, the breaker's thresholds in `store::writer`, the
//! store's waits in `store::readers` and `store::pragmas` (and there the
//! readers' page cache), the report size of `audit::check` (in
//! `ledger::check`), `api::router::ROUTE_SEGMENTS_MAX`,
//! `logs::ACCESS_LINE_CAPACITY_MAX` and `api::admin_ledger::BALANCE_USERS_MAX`.

/// Longest request head (request line plus headers), bytes. 431 past it (docs/http.md).
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Most headers in one request. 431 past it (docs/http.md).
pub const REQUEST_HEADERS_MAX: usize = 64;
/// Longest request target (path and query), bytes. 414 past it (docs/http.md).
pub const REQUEST_TARGET_BYTES_MAX: usize = 8 * 1024;
/// Longest `X-Request-Id` taken from a client, bytes (visible ASCII only;
/// anything else is replaced by a generated id): enough for a UUID or a
/// proxy's trace id, short enough to keep every access log line short.
pub const REQUEST_ID_BYTES_MAX: usize = 64;
/// Log bytes waiting for the log writer thread. Past it, the thread that
/// logs writes them itself (and others wait for it), as they would on a
/// full pipe: memory stays bounded when stderr is slower than the log.
pub const LOG_BUFFER_BYTES_MAX: usize = 256 * 1024;
/// How long the log writer thread lets lines gather before writing them:
/// the most a line waits (logs::flush writes the rest at exit). Short
/// enough that `tail -f` looks live; long enough that under load one wake-up
/// and one write carry many lines.
pub const LOG_GATHER_MS: u64 = 2;
/// Bytes read from a socket in one `read` call: one head fits in one read.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// A body arriving in parts grows its buffer by the read chunk up to this
/// size, then by doubling: few reallocations for large bodies, and a
/// stalled small body holds no more budget than the bytes it sent.
pub const BODY_DOUBLING_FROM_BYTES: usize = 64 * 1024;
/// A connection's receive buffer is shrunk back to this capacity after a large
/// body, so a thousand idle connections do not each keep a megabyte.
pub const IDLE_BUFFER_BYTES_MAX: usize = 4 * 1024;
/// Stack of a request worker. Handlers are shallow; SQLite and JSON need
/// far less than this, argon2 works on the heap.
pub const WORKER_STACK_BYTES: usize = 256 * 1024;
/// Stack of the HTTP acceptor thread and of other small service threads.
pub const SERVICE_STACK_BYTES: usize = 128 * 1024;
/// After a closing answer is out, unread input from the client (a refused
/// body, pipelined requests) is read and thrown away for at most this long,
/// so the client reads our answer instead of a connection reset.
pub const LINGER_MS: u64 = 2_000;
/// How often an event loop looks for connections past their deadline, at most.
pub const DEADLINE_SWEEP_MS: u64 = 100;
/// Readiness events one worker's event loop takes per wait; more wait for
/// the next (they are not lost: epoll keeps them ready).
pub const LOOP_EVENTS: usize = 256;
/// A worker busy with one connection for this long is stuck in a handler:
/// the other workers take over the connections waiting on it (at their
/// next deadline sweep), so one slow handler holds up only its own
/// connection for long. Far above a healthy request (tens of µs to a few
/// ms for a search).
pub const STEAL_AFTER_MS: u64 = 50;
/// Readiness events the acceptor takes per wait (its listener and waker).
pub const ACCEPTOR_EVENTS: usize = 8;
/// First pause after a failed `accept` (EMFILE, ENFILE, ENOBUFS…); doubles up
/// to `ACCEPT_BACKOFF_MS_MAX` while accept keeps failing.
pub const ACCEPT_BACKOFF_MS_MIN: u64 = 5;
pub const ACCEPT_BACKOFF_MS_MAX: u64 = 1000;
/// How long a graceful shutdown waits for requests in flight before it gives
/// up on them and exits anyway.
pub const SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Entries in SOUK_TRUSTED_PROXIES: each request's address is checked
/// against every one, and a proxy fleet needs a handful of networks.
pub const TRUSTED_PROXIES_MAX: usize = 256;
/// Origins in SOUK_CORS_ORIGINS: compared one by one on each request with
/// an `Origin`; a few front ends, never a directory of them.
pub const CORS_ORIGINS_MAX: usize = 64;
/// Seconds a browser may cache a CORS preflight answer (Access-Control-Max-Age):
/// short enough that a changed SOUK_CORS_ORIGINS takes effect soon.
pub const CORS_PREFLIGHT_MAX_AGE_S: u32 = 600;
/// Largest TLS certificate chain or key file read at start or on SIGHUP: a
/// long chain of RSA certificates is a few tens of KiB.
pub const TLS_PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Encrypted bytes rustls may hold for one connection before the socket
/// takes them (its default, stated here): with our own unsent plaintext,
/// this is what a slow TLS reader can pin.
pub const TLS_SEND_BUFFER_BYTES: usize = 64 * 1024;
/// Encrypted bytes a worker reads from one TLS socket per wake-up (rustls
/// takes at most 4 KiB per read, so this is a few reads): about the plain
/// path's READ_CHUNK_BYTES, one full record (16 KiB and its overhead) with
/// room to spare, so a large body needs few round trips through the event
/// loop and one busy connection still cannot keep a worker to itself.
pub const TLS_READ_BYTES_MAX: usize = 20 * 1024;

/// Write jobs waiting for the writer. A full queue answers 503 at once rather
/// than letting latency grow: 4096 jobs is well over a second of work.
pub const WRITE_QUEUE_MAX: usize = 4096;
/// Jobs committed together in one transaction (group commit). Bounds the
/// time a single commit holds the write lock and the work lost to one failure.
pub const COMMIT_BATCH_MAX: usize = 512;
/// Work in one commit, in rows-ish units (a transfer is 1, a batch of N
/// transfers N): keeps one commit well under a second even when many large
/// batches arrive together.
pub const COMMIT_WEIGHT_MAX: usize = 4096;
/// How long a batch smaller than the last commit's waits for more jobs
/// before it commits, from its BEGIN: callers the last commit answered are
/// usually back within it, and one fsync then serves them all (a commit
/// here is ~4 ms, so a caller that misses the batch waits far longer). A
/// lone caller (last batch of one) never waits.
pub const COMMIT_LINGER_US: u64 = 1_000;
/// Read-only connections, at most (MAX_DB_CONNECTIONS is checked against it).
pub const DB_READERS_MAX: u32 = 64;
/// Request workers, at most (SOUK_WORKERS is checked against it).
pub const WORKERS_MAX: usize = 1024;
/// Generation counters per TTL cache (`cache::ttl`): an invalidation of a
/// key stops the loads in flight of the keys hashed to the same counter. A
/// group commit of a few hundred transfers invalidates a few hundred keys at
/// once; with 1024 stripes a load that overlaps it is still stored most of
/// the time, for 8 KiB per cache whatever the number of keys.
pub const CACHE_GENERATION_STRIPES: usize = 1024;
/// How many SQLite VM steps pass between two looks at a query's deadline.
pub const QUERY_PROGRESS_STEPS: i32 = 10_000;

const _: () = assert!(REQUEST_TARGET_BYTES_MAX < REQUEST_HEAD_BYTES_MAX);
const _: () = assert!(READ_CHUNK_BYTES >= REQUEST_HEAD_BYTES_MAX);
const _: () = assert!(COMMIT_BATCH_MAX <= WRITE_QUEUE_MAX);
const _: () = assert!(COMMIT_BATCH_MAX <= COMMIT_WEIGHT_MAX);
const _: () = assert!(ACCEPT_BACKOFF_MS_MIN <= ACCEPT_BACKOFF_MS_MAX);
/// How often the checkpointer thread copies the WAL into the database file.
pub const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// WAL pages after which the writer checkpoints by itself: only when the
/// checkpointer falls this far behind (40 MB with 4 KiB pages). Bounds the WAL.
pub const WAL_WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// Anonymous `GET /listings` and `GET /listings/{id}` calls per client
/// address and minute (429 past it): 20 a second is more than a person
/// browsing, and keeps one script from taking every reader.
pub const ANONYMOUS_READS_PER_MINUTE: u32 = 1_200;
/// An idle writer thread wakes this often just to show it is alive: the
/// systemd watchdog pings only while the writer's heartbeat is fresh.
pub const WRITER_IDLE_BEAT_MS: u64 = 250;
/// The systemd watchdog calls a thread stuck when its heartbeat is older
/// than half of WATCHDOG_USEC, but never sooner than this: several times
/// the longest quiet stretch of a healthy thread (the acceptor's
/// DEADLINE_SWEEP_MS, the writer's WRITER_IDLE_BEAT_MS), so a busy machine
/// does not miss a ping.
pub const WATCHDOG_STALE_MS_MIN: u64 = 1_000;
const _: () = assert!(WATCHDOG_STALE_MS_MIN >= 4 * WRITER_IDLE_BEAT_MS);
const _: () = assert!(WATCHDOG_STALE_MS_MIN >= 4 * DEADLINE_SWEEP_MS);
/// Shortest time between two watchdog pings, whatever WATCHDOG_USEC says:
/// a silly interval must not make the watchdog thread spin.
pub const WATCHDOG_PING_MS_MIN: u64 = 10;
/// Highest platform fee (SOUK_FEE_BPS): half of an order's amount.
pub const FEE_BPS_MAX: u32 = 5000;
/// Longest ship or confirm period: a year, so a deadline always fits.
pub const ORDER_TIMER_MAX_S: u64 = 365 * 86_400;
