//! The in-process caches: user profiles, session lookups, balances,
//! single listings and search pages (`search`).
//! Caches are never the source of truth for a money decision (debits check
//! the database in the same statement). Every committed write invalidates
//! exactly the keys it touched, before any caller hears of the commit (the
//! writer calls `Caches::invalidate` between COMMIT and the answers).

pub mod search;
pub mod ttl;
pub mod warm;

use std::sync::Arc;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::accounts::User;
use crate::accounts::sessions::{SessionEntry, TokenHash};
use crate::config::{Config, Currencies};
use crate::ledger::Balances;
use crate::listings::Shown;
use crate::monitor::prometheus::Exposition;
use crate::store::Touched;
use search::{SEARCH_ENTRIES_MAX, SEARCH_TTL, SearchCache};
use ttl::{CacheStats, TtlCache};

/// Entries per cache: a few MB at most, and enough for every active user of
/// a small marketplace.
pub const PROFILE_ENTRIES_MAX: usize = 10_000;
pub const SESSION_ENTRIES_MAX: usize = 10_000;
pub const BALANCE_ENTRIES_MAX: usize = 10_000;
/// Listings read one by one (`GET /listings/{id}`): the ones being looked
/// at now; a listing with a long description is some 80 KB, so this stays
/// well under a GB even at worst.
pub const LISTING_ENTRIES_MAX: usize = 10_000;
/// Users whose profile and balances are loaded at start.
pub const WARM_USERS_MAX: usize = 1_000;

/// A metric family: name, type (counter or gauge), help, and how to read it
/// off a cache's stats.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CacheStats) -> f64,
);

pub struct Caches {
    /// What a refreshed balance lists (the enabled currencies).
    currencies: Currencies,
    pub profiles: TtlCache<i64, Arc<User>>,
    pub sessions: TtlCache<TokenHash, SessionEntry>,
    pub balances: TtlCache<i64, Arc<Balances>>,
    pub listings: TtlCache<i64, Arc<Shown>>,
    pub searches: SearchCache,
}

impl Caches {
    pub fn new(config: &Config) -> Arc<Caches> {
        Arc::new(Caches {
            currencies: config.currencies.clone(),
            profiles: TtlCache::new("profiles", PROFILE_ENTRIES_MAX, config.cache_ttl),
            sessions: TtlCache::new("sessions", SESSION_ENTRIES_MAX, config.cache_ttl),
            balances: TtlCache::new("balances", BALANCE_ENTRIES_MAX, config.balance_cache_ttl),
            listings: TtlCache::new("listings", LISTING_ENTRIES_MAX, config.cache_ttl),
            // Off with the other caches (CACHE_TIMEOUT=0), never longer than them.
            searches: SearchCache::new(
                "searches",
                SEARCH_ENTRIES_MAX,
                SEARCH_TTL.min(config.cache_ttl),
            ),
        })
    }

    /// Called by the writer after each commit, before any answer goes out,
    /// with its connection (outside any transaction: it reads what was just
    /// committed). A touched balance that was cached is read again there
    /// rather than dropped: a wallet read right after a transfer then hits
    /// (each user's balance is read once per commit however many of its
    /// jobs touched it).
    pub fn invalidate(&self, conn: &Connection, touched: &[Touched]) {
        let mut balances: Vec<i64> = Vec::new();
        for key in touched {
            match key {
                Touched::User(id) => self.profiles.invalidate(id),
                Touched::Balance(id) => balances.push(*id),
                Touched::Session(hash) => self.sessions.invalidate(hash),
                Touched::SessionsOf(id) => self.sessions.invalidate_where(|_, s| s.user_id == *id),
                Touched::Listing(id) => self.listings.invalidate(id),
                Touched::Searchable => self.searches.invalidate_all(),
            }
        }
        balances.sort_unstable();
        balances.dedup();
        // Inside a transaction (a failed commit whose rollback failed too)
        // a read could see what was not committed: drop, do not reload.
        let committed_state = conn.is_autocommit();
        for id in &balances {
            if committed_state {
                self.balances.refresh(id, || {
                    Ok(Arc::new(crate::ledger::balances(
                        conn,
                        *id,
                        &self.currencies,
                    )?))
                });
            } else {
                self.balances.invalidate(id);
            }
        }
    }

    fn all(&self) -> [(&'static str, CacheStats); 5] {
        [
            (self.profiles.name, self.profiles.stats()),
            (self.sessions.name, self.sessions.stats()),
            (self.balances.name, self.balances.stats()),
            (self.listings.name, self.listings.stats()),
            (self.searches.name, self.searches.stats()),
        ]
    }

    /// The dashboard's `caches` object.
    pub fn report(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .all()
            .into_iter()
            .map(|(name, s)| {
                let lookups = s.hits + s.misses;
                let rate = if lookups == 0 {
                    0.0
                } else {
                    s.hits as f64 * 100.0 / lookups as f64
                };
                let value = json!({
                    "hits": s.hits,
                    "misses": s.misses,
                    "hit_rate_percent": (rate * 100.0).round() / 100.0,
                    "evictions": s.evictions,
                    "expirations": s.expirations,
                    "size": s.size,
                    "capacity": s.capacity,
                });
                (name.to_owned(), value)
            })
            .collect();
        Value::Object(map)
    }

    pub fn prometheus(&self, out: &mut Exposition) {
        let stats = self.all();
        let families: [Family; 6] = [
            (
                "souk_cache_hits_total",
                "counter",
                "Cache lookups answered from the cache.",
                |s| s.hits as f64,
            ),
            (
                "souk_cache_misses_total",
                "counter",
                "Cache lookups that went to the database.",
                |s| s.misses as f64,
            ),
            (
                "souk_cache_evictions_total",
                "counter",
                "Entries pushed out by newer ones.",
                |s| s.evictions as f64,
            ),
            (
                "souk_cache_expirations_total",
                "counter",
                "Entries dropped past their TTL.",
                |s| s.expirations as f64,
            ),
            ("souk_cache_size", "gauge", "Entries in the cache.", |s| {
                s.size as f64
            }),
            (
                "souk_cache_capacity",
                "gauge",
                "Most entries the cache holds.",
                |s| s.capacity as f64,
            ),
        ];
        for (family, kind, help, value) in families {
            out.family(family, kind, help);
            for (name, s) in &stats {
                out.sample(family, &[("cache", name)], value(s));
            }
        }
    }
}

/// Caches off: for the command line, which serves no reads.
pub fn no_caches() -> impl Fn(&Connection, &[Touched]) + Send + Sync + 'static {
    |_: &Connection, _: &[Touched]| {}
}
