//! A bounded LRU cache with a time-to-live per entry, on the `lru` crate,
//! counting hits, misses, evictions and expirations.
//!
//! Loads are guarded by per-key generations: a value read from the
//! database before an invalidation of its key is never stored after it, so
//! a cache can never go back to a value older than an acknowledged write;
//! an invalidation of one key does not stop loads of the others (see
//! `Generations`). `clear` and `invalidate_where` stop every load in flight.

use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::error::Result;
use crate::limits::CACHE_GENERATION_STRIPES;
use crate::util::LockUnpoisoned;

/// Taken before a load reads the database (`TtlCache::ticket`); what the
/// load read is stored only if no invalidation of its key (and no `clear`)
/// came since. One ticket serves any number of keys, also keys not known
/// before the read (a search's page of listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Which loads may still store what they read. Every invalidation takes the
/// next number of one sequence (`last`) and writes it into its key's stripe
/// (keys hashed onto CACHE_GENERATION_STRIPES counters), or, for `clear`
/// and `invalidate_where`, into `everything`. A ticket is `last` when the
/// load began: a value for key k may be stored iff neither k's stripe nor
/// `everything` is past it. Keys sharing a stripe only cost each other a
/// store now and then, never correctness; the memory is fixed whatever the
/// number of keys.
struct Generations {
    last: u64,
    everything: u64,
    stripes: Box<[u64; CACHE_GENERATION_STRIPES]>,
}

impl Generations {
    fn new() -> Generations {
        Generations {
            last: 0,
            everything: 0,
            stripes: Box::new([0; CACHE_GENERATION_STRIPES]),
        }
    }

    fn ticket(&self) -> Ticket {
        Ticket(self.last)
    }

    fn bump(&mut self, stripe: usize) {
        self.last += 1;
        self.stripes[stripe] = self.last;
    }

    fn bump_all(&mut self) {
        self.last += 1;
        self.everything = self.last;
    }

    fn unchanged(&self, stripe: usize, ticket: Ticket) -> bool {
        self.everything <= ticket.0 && self.stripes[stripe] <= ticket.0
    }
}

struct Inner<K: Hash + Eq, V> {
    map: LruCache<K, (Instant, V)>,
    /// Moved by every invalidation, under the same lock as the map.
    generations: Generations,
}

pub struct TtlCache<K: Hash + Eq, V> {
    pub name: &'static str,
    inner: Mutex<Inner<K, V>>,
    /// Keys to stripes; seeded per process, so no client can aim many keys
    /// at one stripe.
    stripes: RandomState,
    ttl: Duration,
    capacity: usize,
    counters: Counters,
}

/// What a cache counts as it is used; shared by every kind of cache here.
#[derive(Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

impl Counters {
    /// One lookup: a hit when something fresh was `found`.
    pub fn lookup(&self, found: bool) {
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn expired(&self) {
        self.expirations.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with the cache's `size` and `capacity`.
    pub fn stats(&self, size: usize, capacity: usize) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expirations: self.expirations.load(Ordering::Relaxed),
            size,
            capacity,
        }
    }
}

/// Counters of one cache at one moment.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub size: usize,
    pub capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache of at most `capacity` entries, each kept at most `ttl`. A zero
    /// TTL turns caching off (every read goes to the loader).
    pub fn new(name: &'static str, capacity: usize, ttl: Duration) -> TtlCache<K, V> {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        TtlCache {
            name,
            inner: Mutex::new(Inner {
                // Grows with its entries rather than reserving room for all
                // of them at start (~270 KiB for 10,000, mostly idle).
                map: LruCache::sparse(cap),
                generations: Generations::new(),
            }),
            stripes: RandomState::new(),
            ttl,
            capacity: cap.get(),
            counters: Counters::default(),
        }
    }

    /// The fresh value for `key`, counting a hit or a miss.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock_unpoisoned();
        let found = match inner.map.get(key) {
            Some((stored_at, value)) if stored_at.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                inner.map.pop(key);
                self.counters.expired();
                None
            }
            None => None,
        };
        self.counters.lookup(found.is_some());
        found
    }

    /// The cached value, or `load`'s, stored unless an invalidation happened
    /// while it loaded.
    pub fn get_or_load(&self, key: &K, load: impl FnOnce() -> Result<V>) -> Result<V> {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let ticket = self.ticket();
        let value = load()?;
        self.insert_if_unchanged(key.clone(), value.clone(), ticket);
        Ok(value)
    }

    /// Like `get_or_load` for a loader that may find nothing; only what it
    /// finds is stored (absent keys are not remembered).
    pub fn get_or_load_some(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<Option<V>>,
    ) -> Result<Option<V>> {
        if let Some(value) = self.get(key) {
            return Ok(Some(value));
        }
        let ticket = self.ticket();
        let found = load()?;
        if let Some(value) = &found {
            self.insert_if_unchanged(key.clone(), value.clone(), ticket);
        }
        Ok(found)
    }

    /// Stores a value read after `ticket` was taken, unless an invalidation
    /// of `key` (or a `clear`) came since.
    pub fn insert_if_unchanged(&self, key: K, value: V, ticket: Ticket) {
        if self.ttl.is_zero() {
            return;
        }
        let stripe = self.stripe(&key);
        let mut inner = self.inner.lock_unpoisoned();
        if !inner.generations.unchanged(stripe, ticket) {
            return;
        }
        if let Some((evicted, _)) = inner.map.push(key.clone(), (Instant::now(), value))
            && evicted != key
        {
            self.counters.evicted();
        }
    }

    /// Take before reading what will be inserted.
    pub fn ticket(&self) -> Ticket {
        self.inner.lock_unpoisoned().generations.ticket()
    }

    fn stripe(&self, key: &K) -> usize {
        // The remainder is below CACHE_GENERATION_STRIPES, so it fits.
        (self.stripes.hash_one(key) % CACHE_GENERATION_STRIPES as u64) as usize
    }

    /// Forgets `key`; loads of it running now will not store what they read.
    pub fn invalidate(&self, key: &K) {
        let stripe = self.stripe(key);
        let mut inner = self.inner.lock_unpoisoned();
        inner.generations.bump(stripe);
        inner.map.pop(key);
    }

    /// Like `invalidate`, but an entry that was cached is replaced at once
    /// by what `reload` reads, for a caller that reads the state after the
    /// change itself (the writer, between its commit and any other write):
    /// the next lookup hits instead of loading. Keys not cached are only
    /// invalidated (the writer does not load what nobody asked for); a
    /// failed reload leaves the key uncached.
    pub fn refresh(&self, key: &K, reload: impl FnOnce() -> Result<V>) {
        let stripe = self.stripe(key);
        let ticket = {
            let mut inner = self.inner.lock_unpoisoned();
            inner.generations.bump(stripe);
            if inner.map.pop(key).is_none() || self.ttl.is_zero() {
                return;
            }
            // Taken after the bump: only a later invalidation stops it.
            inner.generations.ticket()
        };
        if let Ok(value) = reload() {
            self.insert_if_unchanged(key.clone(), value, ticket);
        }
    }

    /// Forgets every entry; loads running now will not store what they read.
    pub fn clear(&self) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.generations.bump_all();
        inner.map.clear();
    }

    /// Forgets every entry `doomed` picks (a scan: for rare writes only);
    /// no load running now stores what it read (`doomed` may pick keys not
    /// cached yet).
    pub fn invalidate_where(&self, doomed: impl Fn(&K, &V) -> bool) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.generations.bump_all();
        let keys: Vec<K> = inner
            .map
            .iter()
            .filter(|(k, (_, v))| doomed(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            inner.map.pop(&key);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let size = self.inner.lock_unpoisoned().map.len();
        self.counters.stats(size, self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_expire_evict_and_invalidate() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 2, Duration::from_millis(50));
        assert_eq!(cache.get_or_load(&1, || Ok(10)).unwrap(), 10);
        assert_eq!(cache.get_or_load(&1, || Ok(99)).unwrap(), 10, "a hit");
        cache.get_or_load(&2, || Ok(20)).unwrap();
        cache.get_or_load(&3, || Ok(30)).unwrap();
        assert_eq!(cache.stats().evictions, 1);
        cache.invalidate(&3);
        assert_eq!(cache.get_or_load(&3, || Ok(31)).unwrap(), 31);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get_or_load(&3, || Ok(32)).unwrap(), 32, "expired");
        let s = cache.stats();
        assert_eq!((s.hits, s.expirations), (1, 1));
    }

    #[test]
    fn a_refresh_replaces_a_cached_value_and_leaves_others_alone() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 10, Duration::from_secs(60));
        cache.get_or_load(&1, || Ok(10)).unwrap();
        cache.refresh(&1, || Ok(11));
        assert_eq!(cache.get(&1), Some(11), "the next read hits the new value");
        // Not cached: invalidated, not loaded.
        cache.refresh(&2, || panic!("nobody asked for it"));
        assert_eq!(cache.get(&2), None);
        // A failed reload leaves it uncached.
        cache.refresh(&1, || Err(crate::error::Error::NotFound));
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn a_load_that_began_before_a_refresh_does_not_overwrite_it() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 10, Duration::from_secs(60));
        cache.get_or_load(&1, || Ok(10)).unwrap();
        cache.invalidate(&1);
        let old = cache.get_or_load(&1, || {
            // A reader read 10; meanwhile the key is cached again and a
            // write commits, whose refresh stores 12.
            cache.insert_if_unchanged(1, 11, cache.ticket());
            cache.refresh(&1, || Ok(12));
            Ok(10)
        });
        assert_eq!(old.unwrap(), 10);
        assert_eq!(cache.get(&1), Some(12), "the refreshed value stays");
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_stored() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 10, Duration::from_secs(60));
        let stale = cache.get_or_load(&1, || {
            cache.invalidate(&1); // a write commits while the old value is read
            Ok(1)
        });
        assert_eq!(stale.unwrap(), 1);
        assert_eq!(
            cache.get_or_load(&1, || Ok(2)).unwrap(),
            2,
            "the stale value was not kept"
        );
    }

    /// A key other than `key` that hashes to another stripe.
    fn elsewhere(cache: &TtlCache<u32, u32>, key: u32) -> u32 {
        (key + 1..)
            .find(|k| cache.stripe(k) != cache.stripe(&key))
            .unwrap()
    }

    #[test]
    fn invalidating_one_key_does_not_stop_a_load_of_another() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 10, Duration::from_secs(60));
        let other = elsewhere(&cache, 1);
        let loaded = cache.get_or_load(&1, || {
            cache.invalidate(&other); // a write to another key commits meanwhile
            Ok(10)
        });
        assert_eq!(loaded.unwrap(), 10);
        assert_eq!(cache.get(&1), Some(10), "the load was stored");
        // A ticket taken before both reads serves keys unknown at the time.
        let ticket = cache.ticket();
        cache.invalidate(&other);
        cache.insert_if_unchanged(2, 20, ticket);
        let blocked = cache.stripe(&2) == cache.stripe(&other);
        assert_eq!(cache.get(&2), (!blocked).then_some(20));
    }

    #[test]
    fn clear_and_invalidate_where_stop_every_load() {
        let cache: TtlCache<u32, u32> = TtlCache::new("t", 10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.clear();
        cache.insert_if_unchanged(1, 10, ticket);
        assert_eq!(cache.get(&1), None, "read before the clear: not stored");
        cache.insert_if_unchanged(1, 11, cache.ticket());
        assert_eq!(cache.get(&1), Some(11));
        let ticket = cache.ticket();
        // Picks nothing cached, yet may mean keys being loaded now.
        cache.invalidate_where(|_, _| false);
        cache.insert_if_unchanged(2, 20, ticket);
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&1), Some(11), "kept: not picked");
    }

    /// Writers bump a key's value in the "database", then invalidate it (as
    /// the writer does after COMMIT) and acknowledge; readers load through
    /// the cache. A reader that saw a write acknowledged must never get an
    /// older value from the cache, whatever the interleaving.
    #[test]
    fn concurrent_loads_never_store_a_value_older_than_an_acknowledged_write() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        const KEYS: usize = 8;
        let cache: Arc<TtlCache<usize, u64>> =
            Arc::new(TtlCache::new("t", KEYS, Duration::from_secs(60)));
        let db: Arc<[AtomicU64; KEYS]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let acked: Arc<[AtomicU64; KEYS]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (cache, db, acked, stop) = (
                Arc::clone(&cache),
                Arc::clone(&db),
                Arc::clone(&acked),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = n % KEYS;
                    let version = db[key].fetch_add(1, Ordering::SeqCst) + 1;
                    cache.invalidate(&key);
                    acked[key].store(version, Ordering::SeqCst);
                    n += 1;
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (cache, db, acked) = (Arc::clone(&cache), Arc::clone(&db), Arc::clone(&acked));
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        let key = (i + r) % KEYS;
                        let seen = acked[key].load(Ordering::SeqCst);
                        let value = cache
                            .get_or_load(&key, || {
                                let value = db[key].load(Ordering::SeqCst);
                                std::thread::yield_now();
                                Ok(value)
                            })
                            .unwrap();
                        assert!(
                            value >= seen,
                            "key {key}: {value} after {seen} was acknowledged"
                        );
                    }
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
