//! A bounded LRU cache with a time-to-live per entry, on the `lru` crate,
//! counting hits, misses, evictions and expirations.
//!
//! Loads are guarded by an epoch: a value read from the database before an
//! invalidation is never stored after it, so a cache can never go back to a
//! value older than an acknowledged write.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::error::Result;
use crate::util::LockUnpoisoned;

struct Inner<K: Hash + Eq, V> {
    map: LruCache<K, (Instant, V)>,
    /// Bumped by every invalidation, under the same lock as the map.
    epoch: u64,
}

pub struct TtlCache<K: Hash + Eq, V> {
    pub name: &'static str,
    inner: Mutex<Inner<K, V>>,
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
                map: LruCache::new(cap),
                epoch: 0,
            }),
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
        let epoch = self.inner.lock_unpoisoned().epoch;
        let value = load()?;
        self.insert_if_unchanged(key.clone(), value.clone(), epoch);
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
        let epoch = self.inner.lock_unpoisoned().epoch;
        let found = load()?;
        if let Some(value) = &found {
            self.insert_if_unchanged(key.clone(), value.clone(), epoch);
        }
        Ok(found)
    }

    /// Stores a value read under `epoch` (from `epoch()`), unless an
    /// invalidation came since.
    pub fn insert_if_unchanged(&self, key: K, value: V, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock_unpoisoned();
        if inner.epoch != epoch {
            return;
        }
        if let Some((evicted, _)) = inner.map.push(key.clone(), (Instant::now(), value))
            && evicted != key
        {
            self.counters.evicted();
        }
    }

    /// Take before reading what will be inserted.
    pub fn epoch(&self) -> u64 {
        self.inner.lock_unpoisoned().epoch
    }

    /// Forgets `key`; loads running now will not store what they read.
    pub fn invalidate(&self, key: &K) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.epoch += 1;
        inner.map.pop(key);
    }

    /// Forgets every entry; loads running now will not store what they read.
    pub fn clear(&self) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.epoch += 1;
        inner.map.clear();
    }

    /// Forgets every entry `doomed` picks (a scan: for rare writes only).
    pub fn invalidate_where(&self, doomed: impl Fn(&K, &V) -> bool) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.epoch += 1;
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
}
