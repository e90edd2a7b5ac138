//! Application benchmark: the release `souk` binary on a seeded database,
//! driven through its API by the keep-alive client of `benches/common`.
//!
//! `cargo bench --bench app` runs the full plan (a few minutes, 1M-user growth
//! included); `cargo bench --bench app -- --quick` a short one (about a
//! minute, a third of it seeding 100,000 listings: only 64-connection rows of
//! 2 s, no growth rows, shorter ceilings). Run without `--bench` (as `cargo
//! test --all-targets` does) it is a smoke test of a few seconds on a small
//! database (300 users, 2,000 listings).
//!
//! What it does:
//! - seeds a database without the API (argon2 for 10,000 users would take
//!   minutes): `souk migrate`, then one rusqlite transaction inserting users
//!   (one precomputed argon2id hash for all), one session per user with a
//!   known token, a btc account, one deposit entry each, 100,000 listings
//!   (sellers round robin; titles of 4–6 and descriptions of 20–40 words
//!   drawn by Zipf from 4,000 generated words; triggers index them), 64
//!   stock listings of 1,000,000 units for the order rows (one seller each,
//!   `benches/common/orders.rs`) and the currency totals; `souk check` must
//!   pass on it. User 0 is an admin.
//! - cold start on that existing database (spawn → first 200 from
//!   `/healthz`) and the idle RSS after it;
//! - rows of closed-loop load: cached profile and balance reads, cached
//!   listing reads (signed in), two-word full-text listing searches,
//!   durable transfers, listing creation, batch transfers, escrow
//!   create + release, orders placed, orders' whole lives (place, ship,
//!   confirm; the server charges a fee), logins, and a
//!   mixed marketplace workload, next to a tiny_http hello-world ceiling;
//!   the server's `/metrics` before and after each row give its group-commit
//!   batch sizes, commit latency and cache hit rates over the row, and
//!   /proc its CPU time per thread group; the mixed workload also runs with
//!   1,000 connections on a freshly started server (peak RSS);
//! - the storage ceiling: the same transfer statements in a raw rusqlite loop
//!   (WAL, synchronous=FULL), one transfer per transaction, 64 per
//!   transaction (run right after the 64-connection transfer row, which it
//!   judges) and 128 per transaction (with SQLite's default page cache, and
//!   with 64 MiB);
//! - the search ceiling: the same search SQL (MATCH, bm25, join, LIMIT 21)
//!   in a raw rusqlite loop on 1 and 2 threads;
//! - growth (full mode): uniform reads at 10k and at 1M users, with caches
//!   on and off, and `souk check` wall time at both sizes;
//! - the cost of `RequestMetrics::record` against the server's CPU time per
//!   request;
//! - machine limits, one table of souk against the machine's own ceilings
//!   (`benches/common/limits.rs`): `GET /healthz` and the cached `GET
//!   /wallet` and `GET /users/{id}` driven by `wrk -t2 -c64 --latency`
//!   against nginx answering the same body (`benches/common/wrk.rs`; souk
//!   with its default configuration and with `SOUK_ACCESS_LOG=off`),
//!   durable transfers against the raw rusqlite loop with 64 transfers per
//!   transaction, idle and peak RSS, and the balance cache's hit rate over
//!   the mixed row. The wrk rows need `wrk` and `nginx` (`apt-get install
//!   nginx-light wrk`): without them, and in the smoke run, the table says
//!   they were skipped.
//!
//! Rows: `SOUK_BENCH_ROWS=KEY,…` runs only the rows of those keys (`Kind::key`:
//! `profile`, `transfer`, `order`, …; the tiny_http and `/healthz`
//! references always run) and the extra runs named: `access-log`, `peak`,
//! `ceiling`, and `limits` (the machine-limits table: the wrk rows, the
//! 64-connection transfer and mixed rows, the peak-RSS row and the
//! 64-per-transaction storage ceiling; under a minute with `--quick`).
//! `SOUK_BENCH_SECONDS=N` sets each row's measured time (wrk's `-d`: N
//! rounded up to whole seconds).
//!
//! Everything is bounded in time and count, on loopback; the client shares the
//! machine's cores with the server, so absolute numbers are lower bounds.

mod common;
#[path = "common/limits.rs"]
mod limits;
#[path = "common/orders.rs"]
mod orders;
#[path = "common/wrk.rs"]
mod wrk;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use common::program;
use common::{
    ColdStart, Flow, Launch, RssWatch, Scenario, Souk, Stats, Tiny, call, clock_ticks_per_second,
    cpu_during, drive, fmt_mb, fmt_ms, load_average, machine, median, ratio, report_stop,
    run_logged, threads_cpu_ns,
};

// ---------------------------------------------------------------------------
// Bounds and fixed values.

/// Connection cap given to the server: room for the 1,000-connection row.
const SERVER_MAX_CONNECTIONS: usize = 4096;
/// Logins per minute from one address: the login row comes from one address.
const SERVER_LOGIN_RATE_LIMIT: usize = 100_000;
/// The password of every seeded user.
const PASSWORD: &str = "correct horse battery staple";
/// What every seeded user deposited, in satoshi (1 BTC): far more than a run moves.
const SEED_BALANCE: i64 = 100_000_000;
/// One satoshi, as the API writes it.
const ONE_SAT: &str = "0.00000001";
/// Items of one batch transfer.
const BATCH_ITEMS: usize = 100;
/// Transfers per transaction in the batched storage-ceiling loop.
const CEILING_BATCH: usize = 128;
/// Most transfers one storage-ceiling loop does, whatever its time.
const CEILING_MAX_TRANSFERS: u64 = 10_000_000;
/// A larger SQLite page cache (KiB) for one ceiling variant; souk's writer
/// runs with SQLite's default (2,000 KiB).
const CEILING_BIG_CACHE_KIB: i64 = 64 * 1024;
/// SQLite page cache while seeding (KiB): the random-key indexes stay in memory.
const SEED_CACHE_KIB: i64 = 512 * 1024;
/// Seeded sessions expire this far in the future.
const SESSION_LIFETIME_S: i64 = 10 * 365 * 86_400;
/// How long one `souk migrate` or `souk check` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections of the growth rows.
const GROWTH_CONNS: usize = 64;
/// Targets of the issue.
const TARGET_READ_SHARE: f64 = 0.75;
const TARGET_READ_P99_MS: f64 = 5.0;
const TARGET_TRANSFERS_PER_S: f64 = 10_000.0;
const TARGET_TRANSFER_P99_MS: f64 = 20.0;
const TARGET_IDLE_RSS_MB: f64 = 8.0;
const TARGET_PEAK_RSS_MB: f64 = 32.0;
const TARGET_COLD_START_MS: f64 = 20.0;
const TARGET_GROWTH_RATIO: f64 = 2.0;
const TARGET_RECORD_PERCENT: f64 = 5.0;
const TARGET_SEARCH_PER_S: f64 = 5_000.0;
const TARGET_SEARCH_P99_MS: f64 = 20.0;
const TARGET_LISTINGS_PER_S: f64 = 5_000.0;
const TARGET_ORDERS_PER_S: f64 = 5_000.0;
const TARGET_ORDER_P99_MS: f64 = 20.0;
const TARGET_ORDER_LIVES_PER_S: f64 = 1_500.0;

// ---------------------------------------------------------------------------
// Modes.

struct Mode {
    name: &'static str,
    warmup: Duration,
    duration: Duration,
    /// Connections of most rows.
    conns: &'static [usize],
    /// Connections of the batch rows (each request is 100 transfers).
    batch_conns: &'static [usize],
    /// Connections of the login row (argon2-bound; more would only queue).
    login_conns: &'static [usize],
    /// The mixed row with this many connections (peak RSS target), if any.
    peak_conns: Option<usize>,
    /// Users of the main database.
    users: usize,
    /// Listings of the main database (sellers: the users, round robin).
    listings: usize,
    /// Users of the large database of the growth rows (`None`: no growth).
    growth_users: Option<usize>,
    growth_warmup: Duration,
    growth_duration: Duration,
    cold_starts: usize,
    ceiling_duration: Duration,
    /// `RequestMetrics::record` calls per measurement.
    record_calls: u64,
    /// Whether the wrk rows against nginx run (`limits`; they need both).
    limits: bool,
}

const FULL: Mode = Mode {
    name: "full",
    warmup: Duration::from_secs(2),
    duration: Duration::from_secs(8),
    conns: &[1, 64, 512],
    batch_conns: &[1, 64],
    login_conns: &[1, 64],
    peak_conns: Some(1000),
    users: 10_000,
    listings: 100_000,
    growth_users: Some(1_000_000),
    growth_warmup: Duration::from_secs(1),
    growth_duration: Duration::from_secs(5),
    cold_starts: 5,
    ceiling_duration: Duration::from_secs(5),
    record_calls: 20_000_000,
    limits: true,
};

const QUICK: Mode = Mode {
    name: "quick",
    warmup: Duration::from_millis(500),
    duration: Duration::from_millis(1500),
    conns: &[64],
    batch_conns: &[64],
    login_conns: &[64],
    peak_conns: Some(1000),
    users: 10_000,
    listings: 100_000,
    growth_users: None,
    growth_warmup: Duration::from_millis(500),
    growth_duration: Duration::from_millis(1500),
    cold_starts: 5,
    ceiling_duration: Duration::from_millis(1500),
    record_calls: 5_000_000,
    limits: true,
};

/// Without `--bench` (`cargo test --all-targets`): prove the bench still runs.
const SMOKE: Mode = Mode {
    name: "smoke (run with `cargo bench` for numbers)",
    warmup: Duration::from_millis(100),
    duration: Duration::from_millis(300),
    conns: &[2],
    batch_conns: &[2],
    login_conns: &[1],
    peak_conns: None,
    users: 300,
    listings: 2_000,
    growth_users: None,
    growth_warmup: Duration::from_millis(100),
    growth_duration: Duration::from_millis(300),
    cold_starts: 1,
    ceiling_duration: Duration::from_millis(200),
    record_calls: 100_000,
    limits: false,
};

// ---------------------------------------------------------------------------
// Seeded users: everything about user `i` follows from `i`.

/// A bijection on 63-bit values (multiply by odd constants, xor-shift within
/// 63 bits): distinct inputs give distinct, random-looking outputs; 0 → 0.
fn mix63(x: u64) -> u64 {
    const MASK: u64 = (1 << 63) - 1;
    let mut z = x & MASK;
    z = z.wrapping_mul(0x9E37_79B9_7F4A_7C15) & MASK;
    z ^= z >> 31;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9) & MASK;
    z ^= z >> 29;
    z
}

/// A random-looking positive id, distinct for each (`space`, `i`).
fn seeded_id(space: u64, i: usize) -> i64 {
    mix63((space << 40) | (i as u64 + 1)) as i64
}

const SPACE_USER: u64 = 1;
const SPACE_MOVEMENT: u64 = 3;
const SPACE_CEILING: u64 = 4;
const SPACE_LISTING: u64 = 5;

/// Words of the generated vocabulary of listing text: made-up pronounceable
/// words of three consonant-vowel syllables, word `k` at Zipf rank `k + 1`.
const VOCAB_WORDS: usize = 4_000;
/// The Zipf exponent of word frequencies (s = 1: natural text).
const ZIPF_S: f64 = 1.0;
/// Words of a seeded or created title, and of a description (inclusive).
const TITLE_WORDS: (usize, usize) = (4, 6);
const DESCRIPTION_WORDS: (usize, usize) = (20, 40);
/// Two-word searches: this many fixed pairs of words, each word drawn from
/// the vocabulary's mid-frequency ranks (0-based, half-open): common enough
/// to match hundreds to thousands of listings alone, selective together.
/// The search row draws pair `k` by Zipf (s = ZIPF_S) like people's
/// queries, so souk's search cache meets a realistic mix: a few popular
/// queries and a long tail (the same count as words: `draw_pair` reuses the
/// vocabulary's distribution).
const QUERY_PAIRS: usize = VOCAB_WORDS;
const QUERY_RANKS: (usize, usize) = (50, 500);
/// `GET /listings/{id}` reads draw from the first this many seeded listings
/// (all fit the listing cache: LISTING_ENTRIES_MAX is 10,000).
const LISTING_HOT: usize = 1_000;
/// The server's page size of a search plus one (the `next` probe).
const SEARCH_LIMIT: i64 = 21;
const SALT_LISTING_TEXT: u64 = 0x5EED_7E47;

const CONSONANTS: &[u8; 20] = b"bcdfghjklmnprstvwxyz";
const VOWELS: &[u8; 5] = b"aeiou";

/// Vocabulary word `k` (distinct for k < 10,000: the first two syllables
/// spell `k` in base 100; the third only makes them look less regular).
fn vocab_word(k: usize) -> String {
    let syllable = |n: usize, out: &mut String| {
        out.push(CONSONANTS[n % 20] as char);
        out.push(VOWELS[(n / 20) % 5] as char);
    };
    let mut word = String::with_capacity(6);
    syllable(k % 100, &mut word);
    syllable((k / 100) % 100, &mut word);
    syllable((mix63(k as u64 + 1) % 100) as usize, &mut word);
    word
}

/// The vocabulary and its Zipf cumulative distribution.
struct Vocab {
    words: Vec<String>,
    cdf: Vec<f64>,
    pairs: Vec<(usize, usize)>,
}

impl Vocab {
    fn build() -> Vocab {
        let words: Vec<String> = (0..VOCAB_WORDS).map(vocab_word).collect();
        let weights: Vec<f64> = (1..=VOCAB_WORDS)
            .map(|r| 1.0 / (r as f64).powf(ZIPF_S))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let span = (QUERY_RANKS.1 - QUERY_RANKS.0) as u64;
        let pairs = (0..QUERY_PAIRS as u64)
            .map(|k| {
                let a = QUERY_RANKS.0 + (mix63(0xA000 + 2 * k) % span) as usize;
                let mut b = QUERY_RANKS.0 + (mix63(0xA001 + 2 * k) % span) as usize;
                if b == a {
                    b = QUERY_RANKS.0 + (b + 1 - QUERY_RANKS.0) % span as usize;
                }
                (a, b)
            })
            .collect();
        Vocab { words, cdf, pairs }
    }

    /// One word, drawn by Zipf frequency.
    fn draw(&self, rng: &mut Rng) -> &str {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let k = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.words.len() - 1);
        &self.words[k]
    }

    /// A query pair's index, drawn by Zipf over QUERY_PAIRS.
    fn draw_pair(&self, rng: &mut Rng) -> usize {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(QUERY_PAIRS - 1)
    }

    /// `n` drawn words in `lo..=hi`, space-separated.
    fn text(&self, rng: &mut Rng, (lo, hi): (usize, usize)) -> String {
        let n = lo + rng.below(hi - lo + 1);
        let mut out = String::new();
        for k in 0..n {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(self.draw(rng));
        }
        out
    }

    fn title(&self, rng: &mut Rng) -> String {
        self.text(rng, TITLE_WORDS)
    }

    fn description(&self, rng: &mut Rng) -> String {
        let mut text = self.text(rng, DESCRIPTION_WORDS);
        text.push('.');
        text
    }

    /// Query pair `k`'s words.
    fn pair(&self, k: usize) -> (&str, &str) {
        let (a, b) = self.pairs[k % self.pairs.len()];
        (&self.words[a], &self.words[b])
    }

    /// The FTS5 expression souk builds for `q=a+b` (src/listings/search.rs:
    /// each word quoted, AND, the last one a prefix).
    fn match_expression(&self, k: usize) -> String {
        let (a, b) = self.pair(k);
        format!("\"{a}\" AND \"{b}\" *")
    }
}

fn vocab() -> &'static Vocab {
    static VOCAB: std::sync::OnceLock<Vocab> = std::sync::OnceLock::new();
    VOCAB.get_or_init(Vocab::build)
}

fn listing_id(i: usize) -> i64 {
    seeded_id(SPACE_LISTING, i)
}

fn user_id(i: usize) -> i64 {
    seeded_id(SPACE_USER, i)
}

/// The 32 bytes of user `i`'s session token (TOKEN_BYTES in
/// src/accounts/sessions.rs): `i` little-endian, then fixed padding.
fn token_bytes(i: usize) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes[8..].copy_from_slice(b"souk-bench-token-padding");
    bytes
}

/// The token as a client sends it (base64url without padding).
fn token(i: usize) -> String {
    URL_SAFE_NO_PAD.encode(token_bytes(i))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs `souk ARGS` with `SOUK_DB=db`: (success, output) and the wall time.
fn souk_command(bin: &Path, db: &Path, args: &[&str]) -> Result<(bool, String, Duration), String> {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("SOUK_DB", db)
        .env("RUST_LOG", "warn");
    let log_path = PathBuf::from(format!("{}.command-log", db.display()));
    run_logged(command, &log_path, COMMAND_TIMEOUT).map_err(|e| format!("souk {args:?}: {e}"))
}

/// `souk check` on `db`: its wall time, or the problems it found.
fn souk_check(bin: &Path, db: &Path) -> Result<Duration, String> {
    let (ok, text, took) = souk_command(bin, db, &["check"])?;
    if ok {
        Ok(took)
    } else {
        let head: Vec<&str> = text.lines().take(10).collect();
        Err(format!(
            "souk check failed on {}:\n{}",
            db.display(),
            head.join("\n")
        ))
    }
}

/// Creates `db` with `souk migrate` and seeds `users` users and `listings`
/// listings without the API. Returns the time the inserts took.
fn seed(
    bin: &Path,
    db: &Path,
    users: usize,
    listings: usize,
    phc: &str,
) -> Result<Duration, String> {
    let (ok, text, _) = souk_command(bin, db, &["migrate"])?;
    if !ok {
        return Err(format!("souk migrate failed: {text}"));
    }
    let started = Instant::now();
    let mut conn = Connection::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
    // A throwaway file being built: no journal, no fsync; WAL again at the end.
    let sql =
        |conn: &Connection, sql: &str| conn.execute_batch(sql).map_err(|e| format!("{sql}: {e}"));
    conn.query_row("PRAGMA journal_mode = OFF", [], |_| Ok(()))
        .map_err(|e| format!("journal_mode: {e}"))?;
    sql(
        &conn,
        &format!(
            "PRAGMA synchronous = OFF; PRAGMA cache_size = -{SEED_CACHE_KIB}; PRAGMA temp_store = MEMORY;"
        ),
    )?;
    let now = now_s();
    let created = now - 30 * 86_400;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    seed_users(&tx, users, phc, now, created)?;
    seed_listings(&tx, users, listings, created)?;
    orders::seed_stock(&tx, users, created)?;
    seed_indexes_and_totals(&tx, users)?;
    tx.commit().map_err(|e| format!("commit: {e}"))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(|e| format!("journal_mode: {e}"))?;
    drop(conn);
    Ok(started.elapsed())
}

/// Users `0..users` (user 0 the admin), each with a session, a btc account
/// and the deposit that funded it.
fn seed_users(
    tx: &rusqlite::Transaction<'_>,
    users: usize,
    phc: &str,
    now: i64,
    created: i64,
) -> Result<(), String> {
    let mut user = tx
        .prepare(
            "INSERT INTO users (id, username, display_name, password_hash, role, status, created_at, last_login_at)
             VALUES (?1, ?2, NULL, ?3, ?4, 'active', ?5, ?6)",
        )
        .map_err(|e| e.to_string())?;
    let mut session = tx
        .prepare("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")
        .map_err(|e| e.to_string())?;
    let mut account = tx
        .prepare(
            "INSERT INTO accounts (user_id, currency, available, held) VALUES (?1, 'btc', ?2, 0)",
        )
        .map_err(|e| e.to_string())?;
    let mut entry = tx
        .prepare(
            "INSERT INTO entries (movement_id, user_id, kind, direction, currency, amount,
                                  counterparty, escrow_id, memo, reference, created_at)
             VALUES (?1, ?2, 'deposit', 'in', 'btc', ?3, NULL, NULL, NULL, ?4, ?5)",
        )
        .map_err(|e| e.to_string())?;
    for i in 0..users {
        let id = user_id(i);
        let role = if i == 0 { "admin" } else { "user" };
        // The most recent logins are the highest indexes (start-up warms them).
        let last_login = now - (users - i) as i64;
        user.execute(params![
            id,
            format!("user{i}"),
            phc,
            role,
            created,
            last_login
        ])
        .map_err(|e| format!("user {i}: {e}"))?;
        let hash: [u8; 32] = Sha256::digest(token_bytes(i)).into();
        session
            .execute(params![hash.as_slice(), id, now, now + SESSION_LIFETIME_S])
            .map_err(|e| format!("session {i}: {e}"))?;
        account
            .execute(params![id, SEED_BALANCE])
            .map_err(|e| format!("account {i}: {e}"))?;
        entry
            .execute(params![
                seeded_id(SPACE_MOVEMENT, i),
                id,
                SEED_BALANCE,
                format!("bench-seed-{i}"),
                created
            ])
            .map_err(|e| format!("entry {i}: {e}"))?;
    }
    Ok(())
}

/// Listings `0..listings`, sellers round robin, text drawn from the
/// vocabulary (their indexes are filled by `seed_indexes_and_totals`).
fn seed_listings(
    tx: &rusqlite::Transaction<'_>,
    users: usize,
    listings: usize,
    created: i64,
) -> Result<(), String> {
    let mut listing = tx
        .prepare(
            "INSERT INTO listings (id, seller, title, description, currency, price, quantity,
                                   tags, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'btc', ?5, 1, '[\"bench\"]', 'active', ?6, ?6)",
        )
        .map_err(|e| e.to_string())?;
    let words = vocab();
    let mut rng = Rng::new(0, SALT_LISTING_TEXT);
    for i in 0..listings {
        let title = words.title(&mut rng);
        let description = words.description(&mut rng);
        listing
            .execute(params![
                listing_id(i),
                user_id(i % users),
                title,
                description,
                1 + (i as i64 % 1000) * 1000,
                created
            ])
            .map_err(|e| format!("listing {i}: {e}"))?;
    }
    Ok(())
}

/// The listing indexes and the currency totals of the seeded rows.
fn seed_indexes_and_totals(tx: &rusqlite::Transaction<'_>, users: usize) -> Result<(), String> {
    // The indexes souk's listing job writes for each new listing
    // (`listings::index_new`), here in bulk.
    tx.execute_batch(
        "INSERT INTO listings_fts (listings_fts) VALUES ('rebuild');
         INSERT OR IGNORE INTO listing_tags (tag, listing_seq)
         SELECT value, seq FROM listings, json_each(listings.tags);",
    )
    .map_err(|e| format!("listing indexes: {e}"))?;
    tx.execute(
        "INSERT INTO currency_totals (currency, deposited, withdrawn) VALUES ('btc', ?1, 0)",
        [SEED_BALANCE * users as i64],
    )
    .map_err(|e| format!("currency_totals: {e}"))?;
    Ok(())
}

/// Copies a closed database (and its WAL, if one was left).
fn copy_db(from: &Path, to: &Path) -> Result<(), String> {
    for suffix in ["", "-wal"] {
        let (a, b) = (
            PathBuf::from(format!("{}{suffix}", from.display())),
            PathBuf::from(format!("{}{suffix}", to.display())),
        );
        let _ = std::fs::remove_file(&b);
        if suffix.is_empty() || a.exists() {
            std::fs::copy(&a, &b)
                .map_err(|e| format!("copy {} → {}: {e}", a.display(), b.display()))?;
        }
    }
    Ok(())
}

/// Removes a database and its WAL and shared-memory files.
fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1024.0 / 1024.0)
}

// ---------------------------------------------------------------------------
// Requests and flows.

fn get(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

fn post(path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn expect(status: u16, wanted: u16) -> Result<bool, String> {
    if status == wanted {
        Ok(true)
    } else {
        Err(format!("status {status}"))
    }
}

/// splitmix64: a small, fast generator per client thread.
struct Rng(u64);

impl Rng {
    /// Streams of different (thread, salt) start at unrelated points of the
    /// sequence (a plain `thread × constant` start would make the threads'
    /// streams shifted copies of one another, and their draws collide).
    fn new(thread: usize, salt: u64) -> Rng {
        let mut seed = Rng(salt.rotate_left(32) ^ thread as u64);
        Rng(seed.next())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A user other than `me` (needs two users or more).
    fn other(&mut self, users: usize, me: usize) -> usize {
        loop {
            let k = self.below(users);
            if k != me {
                return k;
            }
        }
    }
}

/// The seeded user that client thread `thread` acts as (never the admin).
fn caller_of(thread: usize, users: usize) -> usize {
    1 + thread % (users - 1)
}

fn transfer_body(to: usize) -> String {
    format!(
        r#"{{"to":"{}","currency":"btc","amount":"{ONE_SAT}"}}"#,
        user_id(to)
    )
}

/// Reads: `GET /users/{id}` or `GET /wallet`, as the thread's own user or as
/// a random one each time (`uniform`: every session, profile and balance of
/// the database is equally likely, which defeats caches larger databases
/// do not fit in).
struct Read {
    rng: Rng,
    users: usize,
    /// The thread's own token (`None`: a random caller each time).
    token: Option<String>,
    wallet: bool,
}

impl Flow for Read {
    fn request(&mut self) -> Vec<u8> {
        let drawn;
        let token = match &self.token {
            Some(token) => token,
            None => {
                drawn = token(self.rng.below(self.users));
                &drawn
            }
        };
        if self.wallet {
            get("/api/v1/wallet", token)
        } else {
            let target = user_id(self.rng.below(self.users));
            get(&format!("/api/v1/users/{target}"), token)
        }
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 200)
    }
}

/// `POST /transfers` (1 satoshi to a random user) or `POST /transfers/batch`
/// (`items` of them) as the thread's own user.
struct Transfer {
    rng: Rng,
    users: usize,
    me: usize,
    token: String,
    items: usize,
}

impl Flow for Transfer {
    fn request(&mut self) -> Vec<u8> {
        if self.items == 1 {
            let to = self.rng.other(self.users, self.me);
            return post("/api/v1/transfers", Some(&self.token), &transfer_body(to));
        }
        let mut body = String::from(r#"{"transfers":["#);
        for k in 0..self.items {
            if k > 0 {
                body.push(',');
            }
            body.push_str(&transfer_body(self.rng.other(self.users, self.me)));
        }
        body.push_str("]}");
        post("/api/v1/transfers/batch", Some(&self.token), &body)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 201)
    }
}

/// `GET /listings?q=W1+W2` (full-text, relevance, a page of 20) as the
/// thread's own user, one of the fixed query pairs drawn by Zipf each time:
/// popular queries hit souk's search cache (pages kept 2 s), the tail runs
/// FTS5 and BM25 over the words' matches.
struct Search {
    rng: Rng,
    token: String,
}

impl Flow for Search {
    fn request(&mut self) -> Vec<u8> {
        let words = vocab();
        let (a, b) = words.pair(words.draw_pair(&mut self.rng));
        get(&format!("/api/v1/listings?q={a}+{b}"), &self.token)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 200)
    }
}

/// `GET /listings/{id}` of one of the LISTING_HOT first seeded listings,
/// signed in (anonymous reads are rate-limited per address).
struct ListingRead {
    rng: Rng,
    token: String,
}

impl Flow for ListingRead {
    fn request(&mut self) -> Vec<u8> {
        let id = listing_id(self.rng.below(LISTING_HOT));
        get(&format!("/api/v1/listings/{id}"), &self.token)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 200)
    }
}

/// `POST /listings`: a new listing of the thread's own user, with text drawn
/// like the seeded listings'.
struct ListingCreate {
    rng: Rng,
    token: String,
}

impl Flow for ListingCreate {
    fn request(&mut self) -> Vec<u8> {
        let words = vocab();
        let body = format!(
            r#"{{"title":"{}","description":"{}","currency":"btc","price":"0.00010000","tags":["bench"]}}"#,
            words.title(&mut self.rng),
            words.description(&mut self.rng)
        );
        post("/api/v1/listings", Some(&self.token), &body)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 201)
    }
}

/// The escrow id in `{"escrow":{"id":"…",…}}`.
fn escrow_id(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "escrow answer is not JSON".to_string())?;
    value["escrow"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "escrow answer without an id".to_string())
}

/// One escrow iteration: create (1 satoshi, a random seller), then release.
struct Escrow {
    rng: Rng,
    users: usize,
    me: usize,
    token: String,
    /// The escrow created and not yet released.
    pending: Option<String>,
}

impl Escrow {
    fn request(&mut self) -> Vec<u8> {
        match &self.pending {
            None => {
                let seller = user_id(self.rng.other(self.users, self.me));
                let body =
                    format!(r#"{{"seller":"{seller}","currency":"btc","amount":"{ONE_SAT}"}}"#);
                post("/api/v1/escrows", Some(&self.token), &body)
            }
            Some(id) => post(
                &format!("/api/v1/escrows/{id}/release"),
                Some(&self.token),
                "",
            ),
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Result<bool, String> {
        match self.pending.take() {
            None => {
                if status != 201 {
                    return Err(format!("create: status {status}"));
                }
                self.pending = Some(escrow_id(body)?);
                Ok(false)
            }
            Some(_) if status == 200 => Ok(true),
            Some(_) => Err(format!("release: status {status}")),
        }
    }
}

impl Flow for Escrow {
    fn request(&mut self) -> Vec<u8> {
        Escrow::request(self)
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Result<bool, String> {
        Escrow::answer(self, status, body)
    }

    fn reset(&mut self) {
        self.pending = None;
    }
}

/// `POST /sessions` as the thread's own user, with the right password.
struct Login {
    body: String,
}

impl Flow for Login {
    fn request(&mut self) -> Vec<u8> {
        post("/api/v1/sessions", None, &self.body)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 201)
    }
}

/// The marketplace mix, per iteration: 80 % reads (a profile, the wallet,
/// the latest entries: about a third each), 20 % writes (a transfer, or an
/// escrow created and released: half each).
struct Mixed {
    rng: Rng,
    users: usize,
    me: usize,
    token: String,
    escrow: Escrow,
    /// What the current iteration is: the escrow chain is two requests.
    in_escrow: bool,
}

impl Flow for Mixed {
    fn request(&mut self) -> Vec<u8> {
        if self.in_escrow {
            return self.escrow.request();
        }
        match self.rng.below(100) {
            0..27 => {
                let target = user_id(self.rng.below(self.users));
                get(&format!("/api/v1/users/{target}"), &self.token)
            }
            27..54 => get("/api/v1/wallet", &self.token),
            54..80 => get("/api/v1/wallet/entries?limit=20", &self.token),
            80..90 => {
                let to = self.rng.other(self.users, self.me);
                post("/api/v1/transfers", Some(&self.token), &transfer_body(to))
            }
            _ => {
                self.in_escrow = true;
                self.escrow.request()
            }
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Result<bool, String> {
        if self.in_escrow {
            let result = self.escrow.answer(status, body);
            if result != Ok(false) {
                self.in_escrow = false;
            }
            return result;
        }
        match status {
            200 | 201 => Ok(true),
            _ => Err(format!("status {status}")),
        }
    }

    fn reset(&mut self) {
        self.escrow.pending = None;
        self.in_escrow = false;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tiny,
    Healthz,
    Profile,
    Wallet,
    ListingRead,
    Search,
    ListingCreate,
    Transfer,
    Batch,
    Escrow,
    Order,
    OrderLife,
    Login,
    Mixed,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Tiny => "tiny_http hello world (ceiling)",
            Kind::Healthz => "GET /healthz",
            Kind::Profile => "GET /users/{id} (cached profile)",
            Kind::Wallet => "GET /wallet (cached balance)",
            Kind::ListingRead => {
                "GET /listings/{id} (cached; signed in: anonymous reads are limited to 1,200/min per address)"
            }
            Kind::Search => {
                "GET /listings?q=W1+W2 (full-text, two words, Zipf over 4,000 queries; pages cached 2 s)"
            }
            Kind::ListingCreate => "POST /listings (durable, signed in)",
            Kind::Transfer => "POST /transfers (durable, 1 sat)",
            Kind::Batch => "POST /transfers/batch (100 items)",
            Kind::Escrow => "escrow create + release",
            Kind::Order => "POST /orders (durable, 1 unit of a stock listing)",
            Kind::OrderLife => "order life: place, ship (seller), confirm (buyer)",
            Kind::Login => "POST /sessions (argon2id)",
            Kind::Mixed => "mixed 80 % reads / 20 % writes",
        }
    }

    /// The row's name in `SOUK_BENCH_ROWS`.
    fn key(self) -> &'static str {
        match self {
            Kind::Tiny => "tiny",
            Kind::Healthz => "healthz",
            Kind::Profile => "profile",
            Kind::Wallet => "wallet",
            Kind::ListingRead => "listing-read",
            Kind::Search => "search",
            Kind::ListingCreate => "listing-create",
            Kind::Transfer => "transfer",
            Kind::Batch => "batch",
            Kind::Escrow => "escrow",
            Kind::Order => "order",
            Kind::OrderLife => "order-life",
            Kind::Login => "login",
            Kind::Mixed => "mixed",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Kind::Tiny
            | Kind::Healthz
            | Kind::Profile
            | Kind::Wallet
            | Kind::ListingRead
            | Kind::Search
            | Kind::Batch => "req/s",
            Kind::ListingCreate => "listings/s",
            Kind::Transfer => "transfers/s",
            Kind::Escrow => "pairs/s",
            Kind::Order => "orders/s",
            Kind::OrderLife => "lives/s",
            Kind::Login => "logins/s",
            Kind::Mixed => "ops/s",
        }
    }

    /// Rows the machine-limits table judges (`SOUK_BENCH_ROWS=limits` runs them).
    fn in_limits(self) -> bool {
        matches!(self, Kind::Transfer | Kind::Mixed)
    }

    fn writes(self) -> bool {
        matches!(
            self,
            Kind::ListingCreate
                | Kind::Transfer
                | Kind::Batch
                | Kind::Escrow
                | Kind::Order
                | Kind::OrderLife
                | Kind::Login
                | Kind::Mixed
        )
    }

    /// The load of this row on a database of `users` users.
    fn scenario(self, users: usize, uniform: bool) -> Scenario {
        Scenario::new(self.label(), move |thread| {
            self.flow(thread, users, uniform)
        })
    }

    /// The flow of client thread `thread` of this row.
    fn flow(self, thread: usize, users: usize, uniform: bool) -> Box<dyn Flow> {
        let salt = self as u64 * 0x1000_0000 + u64::from(uniform);
        let rng = Rng::new(thread, salt);
        let me = caller_of(thread, users);
        match self {
            Kind::Tiny | Kind::Healthz => Scenario::simple(
                self.label(),
                |_, _| b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec(),
                200,
            )
            .flow(thread),
            Kind::Profile | Kind::Wallet => Box::new(Read {
                rng,
                users,
                token: (!uniform).then(|| token(me)),
                wallet: self == Kind::Wallet,
            }),
            Kind::Search => Box::new(Search {
                rng,
                token: token(me),
            }),
            Kind::ListingRead => Box::new(ListingRead {
                rng,
                token: token(me),
            }),
            Kind::ListingCreate => Box::new(ListingCreate {
                rng,
                token: token(me),
            }),
            Kind::Transfer | Kind::Batch => Box::new(Transfer {
                rng,
                users,
                me,
                token: token(me),
                items: if self == Kind::Batch { BATCH_ITEMS } else { 1 },
            }),
            Kind::Escrow => Box::new(escrow_flow(thread, users, salt)),
            Kind::Order => orders::place_flow(thread, users, salt),
            Kind::OrderLife => orders::life_flow(thread, users, salt),
            Kind::Login => Box::new(Login {
                body: format!(r#"{{"username":"user{me}","password":"{PASSWORD}"}}"#),
            }),
            Kind::Mixed => Box::new(Mixed {
                rng,
                users,
                me,
                token: token(me),
                escrow: escrow_flow(thread, users, salt),
                in_escrow: false,
            }),
        }
    }
}

/// The escrow flow of client thread `thread` (its own stream of draws).
fn escrow_flow(thread: usize, users: usize, salt: u64) -> Escrow {
    let me = caller_of(thread, users);
    Escrow {
        rng: Rng::new(thread, salt ^ 0xE5),
        users,
        me,
        token: token(me),
        pending: None,
    }
}

// ---------------------------------------------------------------------------
// The server's own figures: `/metrics` before and after a row.

/// One scrape of `/metrics`: value by series (`name{labels}`).
#[derive(Default, Clone)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn take(addr: SocketAddr) -> Option<Scrape> {
        let (status, body) = call(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        let text = String::from_utf8(body).ok()?;
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Some(Scrape(series))
    }

    /// What changed from `before` to `self` (counters and histograms).
    fn since(&self, before: &Scrape) -> Scrape {
        Scrape(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    fn value(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// A histogram's cumulative buckets, (upper bound, count), by bound.
    fn buckets(&self, family: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{family}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// The upper bound of the bucket holding quantile `q`.
    fn quantile(&self, family: &str, q: f64) -> Option<f64> {
        let buckets = self.buckets(family);
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = (q * total).ceil().max(1.0);
        buckets.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
    }

    /// Hit rate of a cache over the span, percent (None without lookups).
    fn hit_percent(&self, cache: &str) -> Option<f64> {
        let hits = self.value(&format!("souk_cache_hits_total{{cache=\"{cache}\"}}"));
        let misses = self.value(&format!("souk_cache_misses_total{{cache=\"{cache}\"}}"));
        (hits + misses > 0.0).then(|| 100.0 * hits / (hits + misses))
    }

    fn hit_rates(&self) -> String {
        let one = |c: &str| {
            self.hit_percent(c)
                .map_or("-".into(), |p| format!("{p:.0}"))
        };
        format!(
            "{}/{}/{}",
            one("profiles"),
            one("sessions"),
            one("balances")
        )
    }
}

// ---------------------------------------------------------------------------
// Running rows.

struct RowResult {
    kind: Kind,
    label: String,
    conns: usize,
    stats: Stats,
    peak_rss_kb: Option<u64>,
    server_cpu_s: Option<f64>,
    span: Duration,
    /// The server's `/metrics` over the row (souk rows).
    server: Option<Scrape>,
    /// The server's CPU seconds over the row by thread name (souk rows).
    threads_cpu_s: BTreeMap<String, f64>,
}

impl RowResult {
    fn cpu_us_per_request(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|_| self.stats.exchanges > 0)
            .map(|cpu| cpu * 1e6 / self.stats.exchanges as f64)
    }

    fn p99(&self) -> f64 {
        self.stats.ms(0.99).unwrap_or(f64::INFINITY)
    }

    /// Percent of one core that the server's threads named `name` used.
    fn thread_percent(&self, name: &str) -> String {
        self.threads_cpu_s.get(name).map_or("-".into(), |s| {
            format!("{:.0}", 100.0 * s / self.span.as_secs_f64())
        })
    }
}

struct Runner {
    ticks_per_s: u64,
    warmup: Duration,
    duration: Duration,
}

impl Runner {
    /// One row against a souk server (`souk: Some`) or the in-process tiny_http.
    fn row(
        &self,
        souk: Option<&Souk>,
        addr: SocketAddr,
        kind: Kind,
        label: String,
        conns: usize,
        scenario: &Scenario,
    ) -> RowResult {
        eprintln!("  {label} on {addr}: {conns} conns …");
        let pid = souk.map(Souk::pid);
        let before = pid.and_then(|_| Scrape::take(addr));
        let watch = pid.map(RssWatch::start);
        let cpu_pid = pid.unwrap_or_else(std::process::id);
        let threads_before = pid.map(threads_cpu_ns).unwrap_or_default();
        let (stats, cpu, span) = cpu_during(cpu_pid, self.ticks_per_s, || {
            drive(addr, conns, self.warmup, self.duration, scenario)
        });
        let threads_cpu_s = pid
            .map(threads_cpu_ns)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, ns)| {
                let before = threads_before.get(&name).copied().unwrap_or(0);
                (name, ns.saturating_sub(before) as f64 / 1e9)
            })
            .collect();
        let peak_rss_kb = watch.map(RssWatch::finish);
        let server = match (before, pid.and_then(|_| Scrape::take(addr))) {
            (Some(b), Some(a)) => Some(a.since(&b)),
            _ => None,
        };
        // tiny_http runs in this process: its CPU is ours less the clients'.
        let server_cpu_s = cpu.map(|c| {
            if souk.is_some() {
                c
            } else {
                (c - stats.client_cpu.as_secs_f64()).max(0.0)
            }
        });
        RowResult {
            kind,
            label,
            conns,
            stats,
            peak_rss_kb,
            server_cpu_s,
            span,
            server,
            threads_cpu_s,
        }
    }
}

fn server_env(launch: Launch) -> Launch {
    launch
        .env("SOUK_MAX_CONNECTIONS", SERVER_MAX_CONNECTIONS)
        .env("LOGIN_RATE_LIMIT", SERVER_LOGIN_RATE_LIMIT)
        .env("SOUK_FEE_BPS", orders::FEE_BPS)
        // The rows compare with runs from before the access log; its cost
        // is measured apart (`access_log_rows`).
        .env("SOUK_ACCESS_LOG", "false")
}

// ---------------------------------------------------------------------------
// The access log's cost: cached profile reads with SOUK_ACCESS_LOG off and
// on, alternating (off, on, off, on) on servers of their own, so the
// machine's drift falls on both alike.

/// A script next to `db` that runs the binary `$SOUK_BENCH_BIN` with its
/// stderr going to a separate process that reads it in blocks, as journald
/// does, and drops the access lines (this process reads what is left line
/// by line, and with 64 client threads beside it would be the bottleneck
/// instead of souk).
fn log_consumer(db: &Path) -> Result<PathBuf, String> {
    let wrapper = db.with_file_name("souk-log-consumer.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/bash\nexec \"$SOUK_BENCH_BIN\" 2> >(exec grep --line-buffered -v souk::access >&2)\n",
    )
    .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    let made_executable = Command::new("chmod").arg("+x").arg(&wrapper).status();
    if !made_executable.is_ok_and(|s| s.success()) {
        return Err(format!("cannot make {} executable", wrapper.display()));
    }
    Ok(wrapper)
}

/// The rows, and a note with the cost (1 - on/off of the summed rates).
fn access_log_rows(
    bin: &Path,
    db: &Path,
    users: usize,
    conns: usize,
    runner: &Runner,
    notes: &mut Vec<String>,
) -> Result<(Vec<RowResult>, bool), String> {
    let wrapper = log_consumer(db)?;
    let mut rows = Vec::new();
    let mut clean = true;
    let (mut off, mut on) = (0.0, 0.0);
    for access_log in [false, true, false, true] {
        let launch = server_env(Launch::existing(db))
            .env("SOUK_ACCESS_LOG", access_log)
            .env("SOUK_BENCH_BIN", bin.display());
        let (server, _) = Souk::start(&wrapper, launch)?;
        let scenario = Kind::Profile.scenario(users, false);
        let label = format!(
            "{}, access log {}",
            Kind::Profile.label(),
            if access_log { "on" } else { "off" }
        );
        let row = runner.row(
            Some(&server),
            server.addr,
            Kind::Profile,
            label,
            conns,
            &scenario,
        );
        *(if access_log { &mut on } else { &mut off }) += row.stats.rate();
        rows.push(row);
        clean &= report_stop(server, notes, false);
    }
    notes.push(format!(
        "access log: GET /users/{{id}} (cached) at {conns} conns, servers alternating off/on/off/on: {:.0} vs {:.0} req/s summed, a cost of {:.1} % with the access log on (text format, RUST_LOG=info; stderr a pipe to `grep -v souk::access`, a process of its own reading in blocks as journald does, which drops the access lines)",
        off,
        on,
        if off > 0.0 { (1.0 - on / off) * 100.0 } else { 0.0 }
    ));
    Ok((rows, clean))
}

// ---------------------------------------------------------------------------
// The storage ceiling: souk's transfer statements in a raw rusqlite loop.

struct Ceiling {
    per_tx: usize,
    /// `PRAGMA cache_size` in KiB, when not SQLite's default.
    cache_kib: Option<i64>,
    transfers: u64,
    commits: u64,
    took: Duration,
}

impl Ceiling {
    fn rate(&self) -> f64 {
        self.transfers as f64 / self.took.as_secs_f64()
    }
}

/// A connection to `db` with the writer's pragmas: WAL, synchronous=FULL,
/// foreign keys, temporary tables in memory, and `cache_kib` if given.
fn ceiling_connection(db: &Path, cache_kib: Option<i64>) -> Result<Connection, String> {
    let conn = Connection::open(db).map_err(|e| e.to_string())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}"));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(|e| e.to_string())?;
    if let Some(kib) = cache_kib {
        conn.execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(|e| e.to_string())?;
    }
    Ok(conn)
}

/// One transfer of 1 satoshi from `from` to `to` with souk's statements,
/// inside the caller's transaction; `movement` is its movement id.
fn raw_transfer(
    conn: &Connection,
    from: i64,
    to: i64,
    movement: i64,
    now: i64,
) -> Result<(), String> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")
        .and_then(|mut s| s.query_row([to], |row| row.get(0)))
        .map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!("recipient {to} is missing"));
    }
    let debited = conn
        .prepare_cached(
            "UPDATE accounts SET available = available - ?3
             WHERE user_id = ?1 AND currency = ?2 AND available >= ?3",
        )
        .and_then(|mut s| s.execute(params![from, "btc", 1]))
        .map_err(|e| e.to_string())?;
    if debited != 1 {
        return Err(format!("debit of user {from} failed"));
    }
    conn.prepare_cached(
        "INSERT INTO accounts (user_id, currency, available) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, currency) DO UPDATE SET available = available + excluded.available
         WHERE available <= 9223372036854775807 - excluded.available",
    )
    .and_then(|mut s| s.execute(params![to, "btc", 1]))
    .map_err(|e| e.to_string())?;
    for (user, direction, counterparty) in [(from, "out", to), (to, "in", from)] {
        conn.prepare_cached(
            "INSERT INTO entries (movement_id, user_id, kind, direction, currency, amount,
                                  counterparty, escrow_id, memo, reference, created_at)
             VALUES (?1, ?2, 'transfer', ?3, 'btc', 1, ?4, NULL, NULL, NULL, ?5)",
        )
        .and_then(|mut s| s.execute(params![movement, user, direction, counterparty, now]))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Transfers of 1 satoshi between random seeded users, `per_tx` per
/// transaction, for `duration`, with souk's statements for one: the
/// recipient check, the debit UPDATE with its available check, the credit
/// upsert, two entry INSERTs (no savepoint: souk's writer takes one only
/// when a job fails after writing); WAL, synchronous=FULL, the writer's
/// pragmas, no concurrent checkpointer.
fn storage_ceiling(
    db: &Path,
    users: usize,
    per_tx: usize,
    cache_kib: Option<i64>,
    duration: Duration,
) -> Result<Ceiling, String> {
    let conn = ceiling_connection(db, cache_kib)?;
    let mut rng = Rng::new(per_tx, 0xCE11);
    let mut next_id = 0usize;
    let (mut transfers, mut commits) = (0u64, 0u64);
    let now = now_s();
    let started = Instant::now();
    while started.elapsed() < duration && transfers < CEILING_MAX_TRANSFERS {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string())?;
        for _ in 0..per_tx {
            let from = rng.below(users);
            let to = user_id(rng.other(users, from));
            let movement = seeded_id(SPACE_CEILING, next_id);
            next_id += 1;
            raw_transfer(&conn, user_id(from), to, movement, now)?;
            transfers += 1;
        }
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
        commits += 1;
    }
    Ok(Ceiling {
        per_tx,
        cache_kib,
        transfers,
        commits,
        took: started.elapsed(),
    })
}

/// The storage ceiling on a fresh copy of the seeded database `pristine`
/// (beside it; removed after).
fn ceiling_on_copy(
    pristine: &Path,
    users: usize,
    per_tx: usize,
    cache_kib: Option<i64>,
    duration: Duration,
) -> Result<Ceiling, String> {
    let db = pristine.with_file_name(format!("ceiling-{per_tx}.db"));
    copy_db(pristine, &db)?;
    eprintln!("storage ceiling: {per_tx} transfer(s) per transaction, cache {cache_kib:?} KiB …");
    let ceiling = storage_ceiling(&db, users, per_tx, cache_kib, duration);
    remove_db(&db);
    ceiling
}

// ---------------------------------------------------------------------------
// The search ceiling: souk's search SQL in a raw rusqlite loop.

/// The SQL of `search::page` for words, relevance, no filter, no cursor.
const SEARCH_SQL: &str =
    "SELECT l.id, l.seller, l.title, l.description, l.currency, l.price, l.quantity,
        l.tags, l.state, l.created_at, l.updated_at
 FROM (SELECT rowid AS seq, bm25(listings_fts, 10.0, 1.0) AS score FROM listings_fts
       WHERE listings_fts MATCH ?1) AS hits
 JOIN listings l ON l.seq = hits.seq
 WHERE l.state = 'active'
 ORDER BY hits.score, l.seq DESC LIMIT ?2";

struct SearchCeiling {
    threads: usize,
    queries: u64,
    took: Duration,
}

impl SearchCeiling {
    fn rate(&self) -> f64 {
        self.queries as f64 / self.took.as_secs_f64()
    }
}

/// The query pairs as souk runs them (one read transaction each, every
/// column of the page read), on `threads` connections of their own, for
/// `duration`.
fn search_ceiling(db: &Path, threads: usize, duration: Duration) -> Result<SearchCeiling, String> {
    let barrier = std::sync::Barrier::new(threads);
    let results: Vec<Result<(u64, Duration), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<(u64, Duration), String> {
                    let conn = Connection::open(db).map_err(|e| e.to_string())?;
                    conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;")
                        .map_err(|e| e.to_string())?;
                    let words = vocab();
                    let mut rng = Rng::new(t, 0x5EA4C);
                    let mut queries = 0u64;
                    barrier.wait();
                    let started = Instant::now();
                    while started.elapsed() < duration {
                        let expression = words.match_expression(rng.below(QUERY_PAIRS));
                        conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
                        let mut stmt =
                            conn.prepare_cached(SEARCH_SQL).map_err(|e| e.to_string())?;
                        let mut rows = stmt
                            .query(params![expression, SEARCH_LIMIT])
                            .map_err(|e| e.to_string())?;
                        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                            for c in 0..11 {
                                let value: rusqlite::types::Value =
                                    row.get(c).map_err(|e| e.to_string())?;
                                std::hint::black_box(value);
                            }
                        }
                        drop(rows);
                        drop(stmt);
                        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
                        queries += 1;
                    }
                    Ok((queries, started.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a search thread panicked".into()))
            })
            .collect()
    });
    let mut total = 0;
    let mut took = Duration::ZERO;
    for r in results {
        let (queries, t) = r?;
        total += queries;
        took = took.max(t);
    }
    Ok(SearchCeiling {
        threads,
        queries: total,
        took,
    })
}

/// SQLite's plan of the search SQL, one line per step.
fn search_plan(db: &Path) -> Result<String, String> {
    let conn = Connection::open(db).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {SEARCH_SQL}"))
        .map_err(|e| e.to_string())?;
    let steps = stmt
        .query_map(params![vocab().match_expression(0), SEARCH_LIMIT], |row| {
            row.get::<_, String>(3)
        })
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(|e| e.to_string())?;
    Ok(steps.join("; "))
}

/// Active listings matching each query pair: (min, median, max).
fn match_counts(db: &Path) -> Result<(u64, u64, u64), String> {
    let conn = Connection::open(db).map_err(|e| e.to_string())?;
    let words = vocab();
    let mut counts = Vec::new();
    for k in 0..QUERY_PAIRS {
        let n: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM listings_fts f JOIN listings l ON l.seq = f.rowid
                 WHERE listings_fts MATCH ?1 AND l.state = 'active'",
            )
            .and_then(|mut s| s.query_row([words.match_expression(k)], |row| row.get(0)))
            .map_err(|e| e.to_string())?;
        counts.push(n.max(0) as u64);
    }
    counts.sort_unstable();
    Ok((
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1],
    ))
}

// ---------------------------------------------------------------------------
// The cost of recording a request's metrics.

struct RecordCost {
    threads: usize,
    ns_per_call: f64,
}

/// ns per `RequestMetrics::record`, each of `threads` threads recording
/// `calls / threads` times on the same route (the contended case: the same
/// atomics bounce between cores).
fn record_cost(threads: usize, calls: u64) -> RecordCost {
    use souk::monitor::requests::RequestMetrics;
    let metrics = RequestMetrics::new(souk::api::routes().describe());
    let per_thread = calls / threads as u64;
    let barrier = std::sync::Barrier::new(threads);
    let nanos: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (metrics, barrier) = (&metrics, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    for i in 0..per_thread {
                        metrics.record(
                            std::hint::black_box(Some(0)),
                            std::hint::black_box(200),
                            std::hint::black_box(Duration::from_micros(40 + (i & 1023))),
                        );
                    }
                    started.elapsed().as_nanos() as f64 / per_thread as f64
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a recording thread panicked"))
            .collect()
    });
    RecordCost {
        threads,
        ns_per_call: nanos.iter().sum::<f64>() / nanos.len() as f64,
    }
}

// ---------------------------------------------------------------------------
// Growth: uniform reads at two sizes, caches on and off.

struct GrowthRow {
    users: usize,
    caches: bool,
    kind: Kind,
    result: RowResult,
}

struct SizeFacts {
    users: usize,
    seed: Duration,
    db_mb: f64,
    check: Duration,
}

fn growth_rows(
    bin: &Path,
    db: &Path,
    users: usize,
    runner: &Runner,
    notes: &mut Vec<String>,
) -> Result<(Vec<GrowthRow>, bool), String> {
    let mut rows = Vec::new();
    let mut clean = true;
    for caches in [true, false] {
        let mut launch = server_env(Launch::existing(db));
        if !caches {
            launch = launch
                .env("CACHE_TIMEOUT", 0)
                .env("BALANCE_CACHE_TIMEOUT", 0);
        }
        let (souk, _) = Souk::start(bin, launch)?;
        for kind in [Kind::Profile, Kind::Wallet] {
            let label = format!(
                "{} at {} users, caches {}",
                if kind == Kind::Profile {
                    "GET /users/{id}"
                } else {
                    "GET /wallet"
                },
                users,
                if caches { "on" } else { "off" }
            );
            let scenario = kind.scenario(users, true);
            let result = runner.row(Some(&souk), souk.addr, kind, label, GROWTH_CONNS, &scenario);
            rows.push(GrowthRow {
                users,
                caches,
                kind,
                result,
            });
        }
        for line in souk.complaints() {
            notes.push(format!("server log ({users} users): {line}"));
        }
        clean &= report_stop(souk, notes, false);
    }
    Ok((rows, clean))
}

// ---------------------------------------------------------------------------
// Reporting.

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

struct Report<'a> {
    mode: &'a Mode,
    users: usize,
    seed_time: Duration,
    rows: &'a [RowResult],
    cold: &'a [ColdStart],
    idle_rss_kb: Option<u64>,
    idle_threads: Option<u64>,
    empty_idle_rss_kb: Option<u64>,
    ceilings: &'a [Ceiling],
    search_ceilings: &'a [SearchCeiling],
    /// Active listings matching a query pair: min, median, max.
    matches: (u64, u64, u64),
    growth: &'a [GrowthRow],
    sizes: &'a [SizeFacts],
    records: &'a [RecordCost],
    store: Option<serde_json::Value>,
    limits: &'a limits::Limits,
    notes: &'a [String],
}

fn find(rows: &[RowResult], kind: Kind, conns: usize) -> Option<&RowResult> {
    rows.iter().find(|r| r.kind == kind && r.conns == conns)
}

fn print_report(r: &Report<'_>) {
    let mut out = String::new();
    let w = &mut out;
    report_rows(w, r);
    report_group_commit(w, r);
    report_storage_ceiling(w, r);
    report_search_ceiling(w, r);
    report_cold_start(w, r);
    report_growth(w, r);
    report_record_cost(w, r);
    report_targets(w, r);
    limits::print(
        w,
        &limits::Facts {
            limits: r.limits,
            rows: r.rows,
            ceilings: r.ceilings,
            users: r.users,
            idle_rss_kb: r.idle_rss_kb,
            peak_conns: r.mode.peak_conns,
        },
    );
    report_footer(w, r);
    program::print(&out);
}

/// The search row the search tables judge: at 64 connections, or the first.
fn search_row(rows: &[RowResult]) -> Option<&RowResult> {
    find(rows, Kind::Search, 64).or_else(|| rows.iter().find(|x| x.kind == Kind::Search))
}

/// The server CPU time of one `GET /healthz`, in µs, if measured.
fn healthz_us(rows: &[RowResult]) -> Option<f64> {
    rows.iter()
        .find(|x| x.kind == Kind::Healthz)
        .and_then(RowResult::cpu_us_per_request)
}

/// The title and the table of every load row.
fn report_rows(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "\n## Application benchmark ({} mode: {:?} warm-up + {:?} measured per row; {} seeded users, {} seeded listings)\n",
        r.mode.name, r.mode.warmup, r.mode.duration, r.users, r.mode.listings
    );
    let _ = writeln!(
        w,
        "| scenario | conns | rate | unit | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | client CPU µs/req | server peak RSS MB | cache hit % prof/sess/bal |"
    );
    let _ = writeln!(
        w,
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for row in r.rows {
        let _ = writeln!(
            w,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.conns,
            row.stats.rate(),
            row.kind.unit(),
            fmt_ms(row.stats.ms(0.50)),
            fmt_ms(row.stats.ms(0.99)),
            fmt_ms(row.stats.ms(0.999)),
            row.stats.error_count(),
            row.cpu_us_per_request()
                .map_or("?".into(), |us| format!("{us:.1}")),
            if row.stats.exchanges > 0 {
                format!(
                    "{:.1}",
                    row.stats.client_cpu.as_secs_f64() * 1e6 / row.stats.exchanges as f64
                )
            } else {
                "?".into()
            },
            fmt_mb(row.peak_rss_kb),
            row.server.as_ref().map_or("-".into(), Scrape::hit_rates),
        );
    }
    let _ = writeln!(
        w,
        "\nA pair is two requests (create, release); an order life three (place, ship, confirm); a mixed op is one request, or two for an escrow. Latency is per iteration (a pair: both requests; a life: all three)."
    );
}

/// Group commit over the write rows.
fn report_group_commit(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "\n### Group commit during the write rows (server `/metrics` before/after each row)\n"
    );
    let _ = writeln!(
        w,
        "| scenario | conns | rate | unit | commits/s | write jobs/commit (mean) | batch size p50 | batch size p99 | commit p50 ms | commit p99 ms | CPU % db-writer / workers / http-io / hasher |"
    );
    let _ = writeln!(w, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for row in r.rows.iter().filter(|row| row.kind.writes()) {
        let Some(s) = &row.server else { continue };
        let commits = s.value("souk_commit_batch_size_count");
        let jobs = s.value("souk_commit_batch_size_sum");
        let le = |family: &str, q: f64, scale: f64| {
            s.quantile(family, q).map_or("-".into(), |v| {
                if v.is_infinite() {
                    "> max".into()
                } else {
                    format!("≤ {}", v * scale)
                }
            })
        };
        let _ = writeln!(
            w,
            "| {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} / {} / {} / {} |",
            row.label,
            row.conns,
            row.stats.rate(),
            row.kind.unit(),
            commits / row.span.as_secs_f64(),
            if commits > 0.0 {
                format!("{:.1}", jobs / commits)
            } else {
                "-".into()
            },
            le("souk_commit_batch_size", 0.5, 1.0),
            le("souk_commit_batch_size", 0.99, 1.0),
            le("souk_commit_duration_seconds", 0.5, 1e3),
            le("souk_commit_duration_seconds", 0.99, 1e3),
            row.thread_percent("db-writer"),
            row.thread_percent("worker"),
            row.thread_percent("http-io"),
            row.thread_percent("hasher"),
        );
    }
    let _ = writeln!(
        w,
        "\nBatch sizes and commit times are histogram buckets (upper bounds). Commits/s and CPU % (of one core, per thread group) are over warm-up + window."
    );
    if let Some(store) = &r.store {
        let _ = writeln!(
            w,
            "Admin dashboard `store` after the load rows: {}",
            serde_json::to_string(store).unwrap_or_default()
        );
    }
}

/// Storage ceiling: the raw rusqlite transfer loops beside souk's write rows.
fn report_storage_ceiling(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "\n### Storage ceiling: the same transfer writes in a raw rusqlite loop (WAL, synchronous=FULL, one thread, seeded copy)\n"
    );
    let souk_row = find(r.rows, Kind::Transfer, 64).or_else(|| {
        r.rows
            .iter()
            .filter(|x| x.kind == Kind::Transfer)
            .max_by_key(|x| x.conns)
    });
    let souk64 = souk_row.map_or(0.0, |x| x.stats.rate());
    let _ = writeln!(
        w,
        "| writer | transfers/s | commits/s | souk POST /transfers @ {} conns / this |",
        souk_row.map_or(0, |x| x.conns)
    );
    let _ = writeln!(w, "|---|---:|---:|---:|");
    for c in r.ceilings {
        let _ = writeln!(
            w,
            "| rusqlite, {} transfer{} per transaction{} | {:.0} | {:.0} | {} |",
            c.per_tx,
            if c.per_tx == 1 { "" } else { "s" },
            c.cache_kib.map_or(String::new(), |kib| format!(
                ", page cache {} MiB (souk: SQLite's default 2 MB)",
                kib / 1024
            )),
            c.rate(),
            c.commits as f64 / c.took.as_secs_f64(),
            ratio(souk64, c.rate()),
        );
    }
    for row in r
        .rows
        .iter()
        .filter(|x| matches!(x.kind, Kind::Transfer | Kind::Batch))
    {
        let per_request = if row.kind == Kind::Batch {
            BATCH_ITEMS
        } else {
            1
        };
        let commits = row
            .server
            .as_ref()
            .map_or(0.0, |s| s.value("souk_commit_batch_size_count"));
        let _ = writeln!(
            w,
            "| souk {}, {} conns | {:.0} | {:.0} | |",
            row.label,
            row.conns,
            row.stats.rate() * per_request as f64,
            commits / row.span.as_secs_f64(),
        );
    }
}

/// Search ceiling: the raw FTS5 loops beside souk's search row.
fn report_search_ceiling(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "\n### Search ceiling: the same FTS5 query in a raw rusqlite loop ({} listings, seeded copy; {QUERY_PAIRS} two-word queries matching {} / {} / {} listings min / median / max)\n",
        r.mode.listings, r.matches.0, r.matches.1, r.matches.2
    );
    let search_row = search_row(r.rows);
    let search_rate = search_row.map_or(0.0, |x| x.stats.rate());
    let _ = writeln!(
        w,
        "| reader | queries/s | p50 ms | p99 ms | souk GET /listings?q= @ {} conns / this |",
        search_row.map_or(0, |x| x.conns)
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|");
    for c in r.search_ceilings {
        let _ = writeln!(
            w,
            "| rusqlite, {} thread{} (own connection each), MATCH + bm25 + join, LIMIT {SEARCH_LIMIT} | {:.0} | | | {} |",
            c.threads,
            if c.threads == 1 { "" } else { "s" },
            c.rate(),
            ratio(search_rate, c.rate()),
        );
    }
    if let Some(row) = search_row {
        let _ = writeln!(
            w,
            "| souk {}, {} conns | {:.0} | {} | {} | |",
            row.label,
            row.conns,
            row.stats.rate(),
            fmt_ms(row.stats.ms(0.5)),
            fmt_ms(row.stats.ms(0.99)),
        );
        if let Some(s) = &row.server {
            let hits = s.value("souk_cache_hits_total{cache=\"searches\"}");
            let misses = s.value("souk_cache_misses_total{cache=\"searches\"}");
            let _ = writeln!(
                w,
                "\nsouk's search cache over the row: {hits:.0} hits, {misses:.0} misses ({:.1} % hits; queries drawn by Zipf from {QUERY_PAIRS} pairs)",
                100.0 * hits / (hits + misses).max(1.0)
            );
        }
    }
}

/// Cold start and idle RSS.
fn report_cold_start(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        w,
        "\n### Cold start on the existing {}-user database\n",
        r.users
    );
    let ready: Vec<Duration> = r.cold.iter().map(|c| c.to_ready).collect();
    let listening: Vec<Duration> = r.cold.iter().map(|c| c.to_listening).collect();
    let _ = writeln!(w, "| measure | result | target |");
    let _ = writeln!(w, "|---|---:|---:|");
    let _ = writeln!(
        w,
        "| spawn → first 200 on /healthz, median of {} (min / max) | {:.1} ms ({:.1} / {:.1}) | ≤ {TARGET_COLD_START_MS} ms |",
        ready.len(),
        ms(median(ready.clone())),
        ms(ready.iter().min().copied().unwrap_or_default()),
        ms(ready.iter().max().copied().unwrap_or_default()),
    );
    let _ = writeln!(
        w,
        "| spawn → `listening on` logged, median | {:.1} ms | |",
        ms(median(listening))
    );
    let _ = writeln!(
        w,
        "| idle RSS 500 ms after the first 200 ({} threads) | {} MB | ≤ {TARGET_IDLE_RSS_MB} MB |",
        r.idle_threads.map_or("?".into(), |n| n.to_string()),
        program::fmt_rss_mb(r.idle_rss_kb),
    );
    let _ = writeln!(
        w,
        "| idle RSS 500 ms after the first 200, empty database (for comparison) | {} MB | |",
        program::fmt_rss_mb(r.empty_idle_rss_kb),
    );
}

/// Growth: uniform reads at each size, and the sizes' facts.
fn report_growth(w: &mut String, r: &Report<'_>) {
    if !r.growth.is_empty() {
        let _ = writeln!(
            w,
            "\n### Growth: uniform reads ({GROWTH_CONNS} conns; caller and profile drawn uniformly from all users; {:?} warm-up + {:?})\n",
            r.mode.growth_warmup, r.mode.growth_duration
        );
        let _ = writeln!(
            w,
            "| users | caches | route | req/s | p50 ms | p99 ms | errors | cache hit % prof/sess/bal |"
        );
        let _ = writeln!(w, "|---:|---|---|---:|---:|---:|---:|---|");
        for g in r.growth {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                g.users,
                if g.caches { "on" } else { "off (TTL 0)" },
                if g.kind == Kind::Profile {
                    "GET /users/{id}"
                } else {
                    "GET /wallet"
                },
                g.result.stats.rate(),
                fmt_ms(g.result.stats.ms(0.5)),
                fmt_ms(g.result.stats.ms(0.99)),
                g.result.stats.error_count(),
                g.result
                    .server
                    .as_ref()
                    .map_or("-".into(), Scrape::hit_rates),
            );
        }
        let _ = writeln!(
            w,
            "\n| users | seeding (rusqlite, one transaction) | database MB | `souk check` wall time |"
        );
        let _ = writeln!(w, "|---:|---:|---:|---:|");
        for s in r.sizes {
            let _ = writeln!(
                w,
                "| {} | {:.1} s | {:.0} | {:.2} s |",
                s.users,
                s.seed.as_secs_f64(),
                s.db_mb,
                s.check.as_secs_f64()
            );
        }
    }
}

/// The cost of `RequestMetrics::record` against a request's CPU time.
fn report_record_cost(w: &mut String, r: &Report<'_>) {
    let healthz = r.rows.iter().find(|x| x.kind == Kind::Healthz);
    let healthz_us = healthz.and_then(RowResult::cpu_us_per_request);
    let _ = writeln!(
        w,
        "\n### Cost of recording a request's metrics (`RequestMetrics::record`, same route)\n"
    );
    let _ = writeln!(
        w,
        "| threads | ns per record | server CPU µs per GET /healthz ({} conns) | share of a request's CPU | target |",
        healthz.map_or(0, |h| h.conns)
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|");
    for c in r.records {
        let _ = writeln!(
            w,
            "| {} | {:.1} | {} | {} | < {TARGET_RECORD_PERCENT} % |",
            c.threads,
            c.ns_per_call,
            healthz_us.map_or("?".into(), |us| format!("{us:.1}")),
            healthz_us.map_or("?".into(), |us| format!(
                "{:.3} %",
                100.0 * c.ns_per_call / (us * 1e3)
            )),
        );
    }
}

/// The targets table.
fn report_targets(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(w, "\n### Targets\n");
    let _ = writeln!(w, "| target | result | met |");
    let _ = writeln!(w, "|---|---|---|");
    read_targets(w, r);
    transfer_and_search_targets(w, r);
    listing_targets(w, r);
    order_targets(w, r.rows);
    rss_target(w, r);
    cold_and_growth_targets(w, r);
    record_targets(w, r);
}

/// Cached reads against tiny_http at 64 connections.
fn read_targets(w: &mut String, r: &Report<'_>) {
    let tiny64 = find(r.rows, Kind::Tiny, 64).map(|x| x.stats.rate());
    for kind in [Kind::Profile, Kind::Wallet] {
        if let (Some(row), Some(tiny)) = (find(r.rows, kind, 64), tiny64) {
            let share = row.stats.rate() / tiny;
            let _ = writeln!(
                w,
                "| {} ≥ {:.0} % of tiny_http req/s at 64 conns | {:.0} of {:.0} req/s = {:.0} % | {} |",
                kind.label(),
                TARGET_READ_SHARE * 100.0,
                row.stats.rate(),
                tiny,
                share * 100.0,
                met(share >= TARGET_READ_SHARE)
            );
            let _ = writeln!(
                w,
                "| {} p99 ≤ {TARGET_READ_P99_MS} ms at 64 conns | {:.2} ms | {} |",
                kind.label(),
                row.p99(),
                met(row.p99() <= TARGET_READ_P99_MS)
            );
        }
    }
}

/// Durable transfers and searches.
fn transfer_and_search_targets(w: &mut String, r: &Report<'_>) {
    let search_row = search_row(r.rows);
    if let Some(row) = find(r.rows, Kind::Transfer, 64) {
        let _ = writeln!(
            w,
            "| durable transfers ≥ {TARGET_TRANSFERS_PER_S:.0}/s at 64 conns | {:.0}/s | {} |",
            row.stats.rate(),
            met(row.stats.rate() >= TARGET_TRANSFERS_PER_S)
        );
        let _ = writeln!(
            w,
            "| durable transfer p99 ≤ {TARGET_TRANSFER_P99_MS} ms at 64 conns | {:.2} ms | {} |",
            row.p99(),
            met(row.p99() <= TARGET_TRANSFER_P99_MS)
        );
    }
    if let Some(row) = search_row {
        let _ = writeln!(
            w,
            "| search ≥ {TARGET_SEARCH_PER_S:.0} req/s at {} conns, {} listings (two-word queries) | {:.0} req/s ({} × the 1-thread raw FTS5 ceiling) | {} |",
            row.conns,
            r.mode.listings,
            row.stats.rate(),
            r.search_ceilings
                .first()
                .map_or("-".into(), |c| ratio(row.stats.rate(), c.rate())),
            met(row.stats.rate() >= TARGET_SEARCH_PER_S)
        );
        let _ = writeln!(
            w,
            "| search p99 ≤ {TARGET_SEARCH_P99_MS} ms at {} conns | {:.2} ms | {} |",
            row.conns,
            row.p99(),
            met(row.p99() <= TARGET_SEARCH_P99_MS)
        );
    }
}

/// Listing reads against `/healthz`, and listing creation.
fn listing_targets(w: &mut String, r: &Report<'_>) {
    if let (Some(read), Some(health)) = (
        r.rows.iter().find(|x| x.kind == Kind::ListingRead),
        r.rows.iter().find(|x| x.kind == Kind::Healthz),
    ) {
        let share = read.stats.rate() / health.stats.rate();
        let _ = writeln!(
            w,
            "| GET /listings/{{id}} (cached, signed in) ≥ {:.0} % of GET /healthz req/s at {} conns | {:.0} of {:.0} req/s = {:.0} % | {} |",
            TARGET_READ_SHARE * 100.0,
            read.conns,
            read.stats.rate(),
            health.stats.rate(),
            share * 100.0,
            met(share >= TARGET_READ_SHARE)
        );
    }
    if let Some(row) = r.rows.iter().find(|x| x.kind == Kind::ListingCreate) {
        let _ = writeln!(
            w,
            "| creating listings ≥ {TARGET_LISTINGS_PER_S:.0}/s at {} conns (durable) | {:.0}/s (p99 {:.2} ms) | {} |",
            row.conns,
            row.stats.rate(),
            row.p99(),
            met(row.stats.rate() >= TARGET_LISTINGS_PER_S)
        );
    }
}

/// The server's RSS with the seeded listings (stated; no target).
fn rss_target(w: &mut String, r: &Report<'_>) {
    let search_row = search_row(r.rows);
    let _ = writeln!(
        w,
        "| server RSS with {} listings (stated; no target) | idle {} MB after start; peak {} MB during the search row | - |",
        r.mode.listings,
        program::fmt_rss_mb(r.idle_rss_kb),
        search_row.map_or("?".into(), |x| fmt_mb(x.peak_rss_kb)),
    );
}

/// Cold start, and latency growth from the seeded size to the large one.
fn cold_and_growth_targets(w: &mut String, r: &Report<'_>) {
    if !r.cold.is_empty() {
        let m = ms(median(r.cold.iter().map(|c| c.to_ready).collect()));
        let _ = writeln!(
            w,
            "| cold start ≤ {TARGET_COLD_START_MS} ms (existing {}-user database, median) | {m:.1} ms | {} |",
            r.users,
            met(m <= TARGET_COLD_START_MS)
        );
    }
    if let [small, large, ..] = r.sizes {
        for caches in [true, false] {
            for kind in [Kind::Profile, Kind::Wallet] {
                let pick = |users: usize| {
                    r.growth
                        .iter()
                        .find(|g| g.users == users && g.caches == caches && g.kind == kind)
                };
                if let (Some(a), Some(b)) = (pick(small.users), pick(large.users)) {
                    let p50 = b.result.stats.ms(0.5).unwrap_or(f64::NAN)
                        / a.result.stats.ms(0.5).unwrap_or(f64::NAN);
                    let p99 = b.result.p99() / a.result.p99();
                    let _ = writeln!(
                        w,
                        "| {} latency within {TARGET_GROWTH_RATIO}× from {} to {} users (caches {}) | p50 ×{p50:.2}, p99 ×{p99:.2} | {} |",
                        if kind == Kind::Profile {
                            "GET /users/{id}"
                        } else {
                            "GET /wallet"
                        },
                        small.users,
                        large.users,
                        if caches { "on" } else { "off" },
                        met(p50 <= TARGET_GROWTH_RATIO && p99 <= TARGET_GROWTH_RATIO)
                    );
                }
            }
        }
    }
}

/// Metrics recording against a request's CPU time.
fn record_targets(w: &mut String, r: &Report<'_>) {
    let healthz_us = healthz_us(r.rows);
    if let Some(us) = healthz_us {
        for c in r.records {
            let share = 100.0 * c.ns_per_call / (us * 1e3);
            let _ = writeln!(
                w,
                "| metrics recording < {TARGET_RECORD_PERCENT} % of a request ({} thread{}) | {share:.3} % | {} |",
                c.threads,
                if c.threads == 1 { "" } else { "s" },
                met(share < TARGET_RECORD_PERCENT)
            );
        }
    }
}

/// The errors of each row, the seeding and RSS facts, the machine and the notes.
fn report_footer(w: &mut String, r: &Report<'_>) {
    let _ = writeln!(w);
    for row in r.rows.iter().chain(r.growth.iter().map(|g| &g.result)) {
        let conns = format!("{} conns", row.conns);
        program::write_errors(w, &row.label, conns, &row.stats);
    }
    let _ = writeln!(
        w,
        "- seeding {} users and {} listings (rusqlite, one transaction, after `souk migrate`; the FTS5 and tag indexes filled in bulk at the end): {:.2} s",
        r.users,
        r.mode.listings,
        r.seed_time.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- server RSS with {} listings: {} MB idle (500 ms after the first 200), {} MB peak during the search row",
        r.mode.listings,
        program::fmt_rss_mb(r.idle_rss_kb),
        r.rows
            .iter()
            .find(|x| x.kind == Kind::Search)
            .map_or("?".into(), |x| fmt_mb(x.peak_rss_kb)),
    );
    let _ = writeln!(w, "- machine: {}", machine());
    program::write_notes(w, r.notes);
}

/// The order rows' lines of the targets table (a refused order, any answer
/// but the expected one, fails the rate target), and `POST /orders` beside
/// the durable transfer of the same run.
fn order_targets(w: &mut String, rows: &[RowResult]) {
    if let Some(row) = rows.iter().find(|x| x.kind == Kind::Order) {
        let _ = writeln!(
            w,
            "| durable orders ≥ {TARGET_ORDERS_PER_S:.0}/s at {} conns ({} errors) | {:.0}/s | {} |",
            row.conns,
            row.stats.error_count(),
            row.stats.rate(),
            met(row.stats.rate() >= TARGET_ORDERS_PER_S && row.stats.error_count() == 0)
        );
        let _ = writeln!(
            w,
            "| durable order p99 ≤ {TARGET_ORDER_P99_MS} ms at {} conns | {:.2} ms | {} |",
            row.conns,
            row.p99(),
            met(row.p99() <= TARGET_ORDER_P99_MS)
        );
        if let Some(transfer) = find(rows, Kind::Transfer, row.conns) {
            let cpu = |x: &RowResult| {
                x.cpu_us_per_request()
                    .map_or("?".into(), |us| format!("{us:.0}"))
            };
            let _ = writeln!(
                w,
                "| POST /orders beside POST /transfers at {} conns (stated; no target) | {:.0} / {:.0} per s = {}×; server CPU {} / {} µs per request | - |",
                row.conns,
                row.stats.rate(),
                transfer.stats.rate(),
                ratio(row.stats.rate(), transfer.stats.rate()),
                cpu(row),
                cpu(transfer),
            );
        }
    }
    if let Some(row) = rows.iter().find(|x| x.kind == Kind::OrderLife) {
        let _ = writeln!(
            w,
            "| order lives (place, ship, confirm) ≥ {TARGET_ORDER_LIVES_PER_S:.0}/s at {} conns ({} errors) | {:.0}/s (p99 {:.2} ms) | {} |",
            row.conns,
            row.stats.error_count(),
            row.stats.rate(),
            row.p99(),
            met(row.stats.rate() >= TARGET_ORDER_LIVES_PER_S && row.stats.error_count() == 0)
        );
    }
}

/// The row keys of `SOUK_BENCH_ROWS` (comma-separated), if set.
fn rows_filter() -> Option<Vec<String>> {
    let keys = std::env::var("SOUK_BENCH_ROWS").ok()?;
    Some(keys.split(',').map(|k| k.trim().to_owned()).collect())
}

/// Whether an extra run named by one of `names` (`access-log`, `peak`,
/// `ceiling`, `limits`) is wanted.
fn wanted(only: &Option<Vec<String>>, names: &[&str]) -> bool {
    only.as_ref()
        .is_none_or(|keys| keys.iter().any(|k| names.contains(&k.as_str())))
}

// ---------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let mode = program::mode_from_args(&FULL, &QUICK, &SMOKE);
    let dir = std::env::temp_dir().join(format!("souk-bench-app-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = std::fs::create_dir_all(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| run(mode, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    program::exit_code(result)
}

/// What every phase of the run reads.
struct Setup<'a> {
    mode: &'a Mode,
    /// The souk binary under test.
    bin: PathBuf,
    /// The run's working directory (removed after it).
    dir: &'a Path,
    /// The seeded database; every other one is a copy of it.
    pristine: PathBuf,
    /// The copy the load rows run on.
    main_db: PathBuf,
    /// The keys of `SOUK_BENCH_ROWS`, if set.
    only: Option<Vec<String>>,
    /// Each load row's measured time (`SOUK_BENCH_SECONDS`, else the mode's).
    duration: Duration,
    ticks_per_s: u64,
}

/// What the run gathers for the report besides the rows: notes, and whether
/// every server behaved.
struct Journal {
    notes: Vec<String>,
    clean: bool,
}

impl Journal {
    /// Records a phase's verdict on the servers it ran.
    fn judge(&mut self, ok: bool) {
        self.clean &= ok;
    }
}

/// Runs the whole plan in `dir`; `Ok(false)` when the server misbehaved.
fn run(mode: &Mode, dir: &Path) -> Result<bool, String> {
    // `SOUK_BENCH_SERVER=PATH` runs another build of souk (one with
    // symbols, to profile it).
    let bin = std::env::var_os("SOUK_BENCH_SERVER")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_souk")), PathBuf::from);
    eprintln!("souk binary: {}", bin.display());
    wrk::self_check()?;
    let mut journal = Journal {
        notes: Vec::new(),
        clean: true,
    };
    let load_before = load_average();
    let seeded = seed_pristine(&bin, mode, dir, &mut journal.notes)?;
    let setup = Setup::new(mode, bin, dir, seeded.pristine.clone())?;
    let started = cold_starts(&setup, &mut journal)?;
    let workers = program::server_workers();
    let load = load_rows(&setup, workers, started.souk, &mut journal)?;
    let (mut rows, mut ceilings) = (load.rows, load.ceilings);
    let store = load.souk.as_ref().and_then(dashboard_store);
    if let Some(server) = load.souk {
        stop_main_server(server, &mut journal);
    }
    rows.extend(access_log(&setup, &mut journal)?);
    let limits = limits_table(&setup, &mut journal);
    rows.extend(peak_row(&setup, &mut journal)?);
    check_after_load(&setup, &mut journal);
    ceilings.extend(other_ceilings(&setup)?);
    ceilings.sort_by_key(|c| (c.per_tx, c.cache_kib));
    let search_ceilings = search_ceilings(&setup)?;
    let (growth, sizes) = growth(&setup, &seeded, &mut journal)?;
    eprintln!("RequestMetrics::record …");
    let records = vec![
        record_cost(1, mode.record_calls),
        record_cost(2, mode.record_calls),
    ];
    closing_notes(&setup, workers, &load_before, &mut journal.notes);
    print_report(&Report {
        mode,
        users: mode.users,
        seed_time: seeded.seed_time,
        rows: &rows,
        cold: &started.cold,
        idle_rss_kb: started.idle.rss_kb,
        idle_threads: started.idle.threads,
        empty_idle_rss_kb: started.empty_idle_rss_kb,
        ceilings: &ceilings,
        search_ceilings: &search_ceilings,
        matches: seeded.matches,
        growth: &growth,
        sizes: &sizes,
        records: &records,
        store,
        limits: &limits,
        notes: &journal.notes,
    });
    Ok(journal.clean)
}

impl<'a> Setup<'a> {
    /// The run's setup: the seeded database `pristine` and the copy of it
    /// the load rows run on, the rows asked for, and each row's length.
    fn new(mode: &'a Mode, bin: PathBuf, dir: &'a Path, pristine: PathBuf) -> Result<Self, String> {
        let main_db = dir.join("main.db");
        copy_db(&pristine, &main_db)?;
        Ok(Setup {
            mode,
            bin,
            dir,
            pristine,
            main_db,
            only: rows_filter(),
            // `SOUK_BENCH_SECONDS=10` lengthens each row (e.g. to profile one).
            duration: std::env::var("SOUK_BENCH_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .map_or(mode.duration, Duration::from_secs_f64),
            ticks_per_s: clock_ticks_per_second(),
        })
    }

    /// The runner of the main load rows.
    fn runner(&self) -> Runner {
        Runner {
            ticks_per_s: self.ticks_per_s,
            warmup: self.mode.warmup,
            duration: self.duration,
        }
    }
}

/// The seeded database and the facts of its seeding.
struct Seeded {
    pristine: PathBuf,
    /// The argon2id hash of PASSWORD that every seeded user has.
    phc: String,
    seed_time: Duration,
    /// How long `souk check` took on it.
    check_time: Duration,
    /// Active listings matching a query pair: min, median, max.
    matches: (u64, u64, u64),
}

/// Seeds the database every other one of the run is a copy of, checks it,
/// and notes what the search rows will meet in it.
fn seed_pristine(
    bin: &Path,
    mode: &Mode,
    dir: &Path,
    notes: &mut Vec<String>,
) -> Result<Seeded, String> {
    let phc =
        souk::accounts::passwords::hash_now(PASSWORD.as_bytes()).map_err(|e| e.to_string())?;
    let pristine = dir.join("seeded.db");
    eprintln!(
        "seeding {} users and {} listings …",
        mode.users, mode.listings
    );
    let seed_time = seed(bin, &pristine, mode.users, mode.listings, &phc)?;
    let check_time = souk_check(bin, &pristine)?;
    eprintln!(
        "seeded in {:.2} s; souk check passed in {:.2} s",
        seed_time.as_secs_f64(),
        check_time.as_secs_f64()
    );
    let matches = match_counts(&pristine)?;
    eprintln!(
        "listings matching each of the {QUERY_PAIRS} query pairs: min {}, median {}, max {}",
        matches.0, matches.1, matches.2
    );
    notes.push(format!(
        "search: {QUERY_PAIRS} fixed two-word queries (`q=w1+w2`, words of Zipf ranks {}–{} of {VOCAB_WORDS}) match {} / {} / {} active listings (min / median / max); seeded titles have {}–{} words and descriptions {}–{}, drawn by Zipf (s = {ZIPF_S}); SQLite's plan of the search SQL: {}",
        QUERY_RANKS.0 + 1,
        QUERY_RANKS.1,
        matches.0,
        matches.1,
        matches.2,
        TITLE_WORDS.0,
        TITLE_WORDS.1,
        DESCRIPTION_WORDS.0,
        DESCRIPTION_WORDS.1,
        search_plan(&pristine)?
    ));
    Ok(Seeded {
        pristine,
        phc,
        seed_time,
        check_time,
        matches,
    })
}

/// The cold starts on the main database, the server left up for the load,
/// and the idle readings.
struct Started {
    souk: Souk,
    cold: Vec<ColdStart>,
    idle: program::Idle,
    /// Idle RSS of a server on an empty database, for comparison.
    empty_idle_rss_kb: Option<u64>,
}

/// Cold starts on the existing database; the last server stays up. Only
/// one server may hold a database file, so each stops before the next.
fn cold_starts(setup: &Setup<'_>, journal: &mut Journal) -> Result<Started, String> {
    let mut cold = Vec::new();
    let mut souk = None;
    for run in 0..setup.mode.cold_starts.max(1) {
        if let Some(previous) = souk.take() {
            let ok = report_stop(previous, &mut journal.notes, false);
            journal.judge(ok);
        }
        let launch = server_env(Launch::existing(&setup.main_db));
        let (started, timing) = Souk::start(&setup.bin, launch)?;
        eprintln!(
            "cold start {}: listening at {:.1} ms, first 200 at {:.1} ms",
            run + 1,
            ms(timing.to_listening),
            ms(timing.to_ready)
        );
        cold.push(timing);
        souk = Some(started);
    }
    let souk = souk.expect("at least one start");
    let idle = program::Idle::read(souk.pid());
    // The same on an empty database, for comparison (no cache to warm).
    let (empty, _) = Souk::start(&setup.bin, server_env(Launch::fresh(0)?))?;
    let empty_idle_rss_kb = program::Idle::read(empty.pid()).rss_kb;
    let ok = report_stop(empty, &mut journal.notes, false);
    journal.judge(ok);
    Ok(Started {
        souk,
        cold,
        idle,
        empty_idle_rss_kb,
    })
}

/// The connections of the single-count rows: 64 if the mode has it.
fn healthz_conns(mode: &Mode) -> usize {
    *mode
        .conns
        .iter()
        .find(|&&c| c == 64)
        .unwrap_or(&mode.conns[0])
}

/// The load rows in order, narrowed by `SOUK_BENCH_ROWS`.
fn load_plan(mode: &Mode, only: &Option<Vec<String>>) -> Vec<(Kind, usize)> {
    // The ceiling right before the reads it is compared with, at each
    // connection count: the machine's other load drifts over minutes.
    let mut plan: Vec<(Kind, usize)> = Vec::new();
    for &c in mode.conns {
        plan.extend([(Kind::Tiny, c), (Kind::Profile, c), (Kind::Wallet, c)]);
    }
    let healthz_conns = healthz_conns(mode);
    plan.push((Kind::Healthz, healthz_conns));
    plan.push((Kind::ListingRead, healthz_conns));
    plan.push((Kind::Search, healthz_conns));
    plan.extend(mode.conns.iter().map(|&c| (Kind::Transfer, c)));
    plan.push((Kind::ListingCreate, healthz_conns));
    plan.extend(mode.batch_conns.iter().map(|&c| (Kind::Batch, c)));
    plan.extend(mode.conns.iter().map(|&c| (Kind::Escrow, c)));
    plan.push((Kind::Order, healthz_conns));
    plan.push((Kind::OrderLife, healthz_conns));
    plan.extend(mode.login_conns.iter().map(|&c| (Kind::Login, c)));
    plan.extend(mode.conns.iter().map(|&c| (Kind::Mixed, c)));
    // `SOUK_BENCH_ROWS=order,search` runs only those rows (and the
    // references they are compared with), skipping the extra runs: a
    // quick loop while working on one path. See `Kind::key`.
    if let Some(keys) = only {
        plan.retain(|(kind, _)| {
            matches!(kind, Kind::Tiny | Kind::Healthz)
                || keys
                    .iter()
                    .any(|k| k == kind.key() || (k == "limits" && kind.in_limits()))
        });
    }
    plan
}

/// The main load rows and the storage ceilings run between them, and the
/// server if it is still up after them.
struct LoadRows {
    rows: Vec<RowResult>,
    ceilings: Vec<Ceiling>,
    souk: Option<Souk>,
}

/// Runs the plan's rows on `souk` (the tiny_http rows on a ceiling in this
/// process); stops at the first row the server is found dead before.
fn load_rows(
    setup: &Setup<'_>,
    workers: usize,
    souk: Souk,
    journal: &mut Journal,
) -> Result<LoadRows, String> {
    let (mode, runner) = (setup.mode, setup.runner());
    let plan = load_plan(mode, &setup.only);
    eprintln!("running {} rows ({} mode):", plan.len(), mode.name);
    let mut tiny: Option<Tiny> = None;
    let mut out = LoadRows {
        rows: Vec::new(),
        ceilings: Vec::new(),
        souk: Some(souk),
    };
    for (kind, conns) in plan {
        let scenario = kind.scenario(mode.users, false);
        if kind == Kind::Tiny {
            let tiny = tiny.get_or_insert_with(|| Tiny::start(workers));
            let label = "tiny_http hello world (ceiling)".into();
            out.rows
                .push(runner.row(None, tiny.addr, kind, label, conns, &scenario));
            continue;
        }
        let Some(server) = out.souk.as_mut() else {
            break;
        };
        if let Some(status) = server.exited() {
            journal.notes.push(format!(
                "souk EXITED ({status}) before the row `{}` ({conns} conns); rows after it were skipped. Its last log lines:\n\n```\n{}\n```",
                kind.label(),
                server.log_tail(30)
            ));
            journal.clean = false;
            out.souk = None;
            break;
        }
        let label = kind.label().into();
        out.rows
            .push(runner.row(Some(server), server.addr, kind, label, conns, &scenario));
        // The storage ceiling the machine-limits table judges this row by,
        // right after it (the server idle): the disk's fsync time drifts
        // with the machine's other work far more than its CPU does.
        if kind == Kind::Transfer
            && conns == limits::CONNS
            && wanted(&setup.only, &["ceiling", "limits"])
        {
            let (per_tx, duration) = (limits::CEILING_PER_TX, mode.ceiling_duration);
            out.ceilings.push(ceiling_on_copy(
                &setup.pristine,
                mode.users,
                per_tx,
                None,
                duration,
            )?);
        }
    }
    if let Some(tiny) = tiny.take() {
        tiny.stop();
    }
    Ok(out)
}

/// Stops the server of the load rows, noting what it complained of.
fn stop_main_server(server: Souk, journal: &mut Journal) {
    for line in server.complaints() {
        journal.notes.push(format!("server log: {line}"));
    }
    let ok = report_stop(server, &mut journal.notes, true);
    journal.judge(ok);
}

/// The access-log rows (key `access-log`), on servers of their own.
fn access_log(setup: &Setup<'_>, journal: &mut Journal) -> Result<Vec<RowResult>, String> {
    if !wanted(&setup.only, &["access-log"]) {
        return Ok(Vec::new());
    }
    let (rows, ok) = access_log_rows(
        &setup.bin,
        &setup.main_db,
        setup.mode.users,
        healthz_conns(setup.mode),
        &setup.runner(),
        &mut journal.notes,
    )?;
    journal.judge(ok);
    Ok(rows)
}

/// The admin dashboard's `store` section, if the server answers it.
fn dashboard_store(souk: &Souk) -> Option<serde_json::Value> {
    let admin = token(0);
    let (status, body) = call(
        souk.addr,
        &format!("GET /api/v1/admin/dashboard HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    )
    .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    (status == 200).then(|| value["store"].clone())
}

/// The machine-limits table, or why it was skipped. Tools that are there
/// but fail (a server would not start) fail the bench, after the rest of
/// it has run and been reported.
fn limits_table(setup: &Setup<'_>, journal: &mut Journal) -> limits::Limits {
    if !setup.mode.limits {
        return limits::Limits::skipped("skipped in smoke mode (run `cargo bench --bench app`)");
    }
    if !wanted(&setup.only, &["limits"]) {
        return limits::Limits::skipped("skipped: not in SOUK_BENCH_ROWS (key `limits`)");
    }
    let limits_setup = limits::Setup {
        bin: &setup.bin,
        db: &setup.main_db,
        dir: setup.dir,
        warmup: setup.mode.warmup,
        duration: setup.duration,
    };
    match limits::run(&limits_setup, &mut journal.notes) {
        Ok((limits, ok)) => {
            journal.judge(ok);
            limits
        }
        Err(e) => {
            journal.clean = false;
            limits::Limits::skipped(format!("**failed**: {e}"))
        }
    }
}

/// Peak RSS with many connections, on a server of its own: the heap that
/// earlier rows left behind (argon2's 19 MiB blocks, the 100-item batch
/// jobs) would otherwise count against it.
fn peak_row(setup: &Setup<'_>, journal: &mut Journal) -> Result<Option<RowResult>, String> {
    let Some(peak) = setup
        .mode
        .peak_conns
        .filter(|_| wanted(&setup.only, &["peak", "limits"]))
    else {
        return Ok(None);
    };
    let (server, _) = Souk::start(&setup.bin, server_env(Launch::existing(&setup.main_db)))?;
    let scenario = Kind::Mixed.scenario(setup.mode.users, false);
    let label = format!("{} (fresh server)", Kind::Mixed.label());
    let row = setup.runner().row(
        Some(&server),
        server.addr,
        Kind::Mixed,
        label,
        peak,
        &scenario,
    );
    for line in server.complaints() {
        journal.notes.push(format!("server log (peak row): {line}"));
    }
    let ok = report_stop(server, &mut journal.notes, false);
    journal.judge(ok);
    Ok(Some(row))
}

/// `souk check` on the main database after all the load.
fn check_after_load(setup: &Setup<'_>, journal: &mut Journal) {
    match souk_check(&setup.bin, &setup.main_db) {
        Ok(took) => journal.notes.push(format!(
            "`souk check` after the load rows: all invariants hold ({:.2} s, database {:.0} MB)",
            took.as_secs_f64(),
            file_mb(&setup.main_db)
        )),
        Err(e) => {
            journal
                .notes
                .push(format!("`souk check` after the load rows FAILED: {e}"));
            journal.clean = false;
        }
    }
}

/// The other storage ceilings (the machine-limits one ran after the
/// transfer row).
fn other_ceilings(setup: &Setup<'_>) -> Result<Vec<Ceiling>, String> {
    let variants = [
        (1, None),
        (CEILING_BATCH, None),
        (CEILING_BATCH, Some(CEILING_BIG_CACHE_KIB)),
    ];
    let mut ceilings = Vec::new();
    for (per_tx, cache_kib) in variants
        .into_iter()
        .filter(|_| wanted(&setup.only, &["ceiling"]))
    {
        let (users, duration) = (setup.mode.users, setup.mode.ceiling_duration);
        ceilings.push(ceiling_on_copy(
            &setup.pristine,
            users,
            per_tx,
            cache_kib,
            duration,
        )?);
    }
    Ok(ceilings)
}

/// The search ceiling on a copy of the seeded database, on 1 and 2 threads.
fn search_ceilings(setup: &Setup<'_>) -> Result<Vec<SearchCeiling>, String> {
    let mut ceilings = Vec::new();
    let db = setup.dir.join("search-ceiling.db");
    copy_db(&setup.pristine, &db)?;
    for threads in [1, 2]
        .into_iter()
        .filter(|_| wanted(&setup.only, &["ceiling"]))
    {
        eprintln!("search ceiling: {threads} thread(s) …");
        ceilings.push(search_ceiling(&db, threads, setup.mode.ceiling_duration)?);
    }
    remove_db(&db);
    Ok(ceilings)
}

/// Growth (full mode): the uniform-read rows at the seeded size, then at
/// the large one seeded for them, and the facts of both sizes.
fn growth(
    setup: &Setup<'_>,
    seeded: &Seeded,
    journal: &mut Journal,
) -> Result<(Vec<GrowthRow>, Vec<SizeFacts>), String> {
    let (mut growth, mut sizes) = (Vec::new(), Vec::new());
    let Some(large) = setup.mode.growth_users else {
        return Ok((growth, sizes));
    };
    let mode = setup.mode;
    let growth_runner = Runner {
        ticks_per_s: setup.ticks_per_s,
        warmup: mode.growth_warmup,
        duration: mode.growth_duration,
    };
    let mut at_size = |db: &Path, users: usize, journal: &mut Journal| -> Result<(), String> {
        eprintln!("growth at {users} users:");
        let (rows, ok) = growth_rows(&setup.bin, db, users, &growth_runner, &mut journal.notes)?;
        growth.extend(rows);
        journal.judge(ok);
        remove_db(db);
        Ok(())
    };
    let small_db = setup.dir.join("growth-small.db");
    copy_db(&setup.pristine, &small_db)?;
    sizes.push(SizeFacts {
        users: mode.users,
        seed: seeded.seed_time,
        db_mb: file_mb(&setup.pristine),
        check: seeded.check_time,
    });
    at_size(&small_db, mode.users, journal)?;
    let large_db = setup.dir.join("growth-large.db");
    eprintln!("seeding {large} users …");
    let took = seed(&setup.bin, &large_db, large, 0, &seeded.phc)?;
    eprintln!("seeded in {:.1} s; souk check …", took.as_secs_f64());
    let check = souk_check(&setup.bin, &large_db)?;
    sizes.push(SizeFacts {
        users: large,
        seed: took,
        db_mb: file_mb(&large_db),
        check,
    });
    at_size(&large_db, large, journal)?;
    Ok((growth, sizes))
}

/// The notes on how the run was set up, after those of its phases.
fn closing_notes(setup: &Setup<'_>, workers: usize, load_before: &str, notes: &mut Vec<String>) {
    notes.push(format!(
        "server: {} on a copy of the seeded database, SOUK_MAX_CONNECTIONS={SERVER_MAX_CONNECTIONS}, LOGIN_RATE_LIMIT={SERVER_LOGIN_RATE_LIMIT} (one client address), SOUK_FEE_BPS={} (orders pay a fee); other settings default or from the environment",
        setup.bin.display(),
        orders::FEE_BPS
    ));
    notes.push(program::tiny_http_note(workers));
    notes.push("client: this process, one thread and one keep-alive connection per conn, closed loop, on the same cores as the server; each thread acts as its own seeded user (reads of the main rows: its own session, a uniformly drawn profile)".into());
    let batch_conns = setup.mode.batch_conns;
    if !batch_conns.contains(&512) {
        notes.push(format!(
            "POST /transfers/batch runs at {batch_conns:?} connections only: at 512, one group commit takes up to 512 jobs × 100 items = 51,200 transfers, which takes longer than this client's {:?} read timeout (every request timed out in a trial run)",
            common::IO_TIMEOUT
        ));
    }
    notes.push("errors count failed exchanges and unexpected statuses over warm-up and window; rates and latencies count iterations completed inside the window".into());
    notes.push(program::load_note(load_before));
}
