//! Cached search pages: for a normalized search (words, filters, sort,
//! cursor, page size), the ids of the listings on its page and whether a
//! next page exists. The listings themselves are rendered from the listing
//! cache, so a stock or edit shows at once.
//!
//! Freshness: every edit that can move a listing into, out of or within
//! results (`Touched::Searchable`: title, description, price, tags, state)
//! bumps a generation after its commit and before its answer; an entry
//! stored under an older generation is never served. A load takes the
//! generation before it reads, so a page read before an edit is never
//! stored after it. New listings do not bump it (creating is the busiest
//! write there is, and would empty the cache for every one): a search can
//! miss a listing created less than `SEARCH_TTL` ago.

use crate::util::LockUnpoisoned;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::ttl::{CacheStats, Counters};

/// How long a page is served from the cache: the most a search lags a new
/// listing. Short because new listings are not invalidations, long enough
/// that a popular query costs one FTS5 query per this interval.
pub const SEARCH_TTL: Duration = Duration::from_secs(2);
/// Pages kept: the distinct searches of a few seconds of heavy traffic.
pub const SEARCH_ENTRIES_MAX: usize = 10_000;
/// Bytes of keys and ids kept, counted as `entry_bytes` does: a key holds
/// at most a 200-character query and its filters, a page at most 100 ids,
/// so 10,000 entries of typical size (20 ids, a short key) fit easily.
pub const SEARCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bookkeeping counted per entry on top of its key and ids.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// One cached page: the ids shown, in order, and whether more follow (the
/// next page's cursor is then the last id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub ids: Vec<i64>,
    pub more: bool,
}

struct Entry {
    stored_at: Instant,
    generation: u64,
    bytes: usize,
    page: Page,
}

struct Inner {
    map: LruCache<String, Entry>,
    bytes: usize,
    /// Bumped by `invalidate_all`, under the same lock as the map.
    generation: u64,
}

pub struct SearchCache {
    pub name: &'static str,
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
    counters: Counters,
}

fn entry_bytes(key: &str, page: &Page) -> usize {
    key.len() + page.ids.len() * size_of::<i64>() + ENTRY_OVERHEAD_BYTES
}

impl SearchCache {
    /// A zero `ttl` turns the cache off.
    pub fn new(name: &'static str, capacity: usize, ttl: Duration) -> SearchCache {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        SearchCache {
            name,
            inner: Mutex::new(Inner {
                map: LruCache::sparse(cap),
                bytes: 0,
                generation: 0,
            }),
            ttl,
            capacity: cap.get(),
            counters: Counters::default(),
        }
    }

    /// Take before reading a page that will be inserted.
    pub fn generation(&self) -> u64 {
        self.inner.lock_unpoisoned().generation
    }

    /// The page for `key` and the generation it was stored under, if it is
    /// younger than the TTL and no searchable edit came since; counts a
    /// hit or a miss.
    pub fn get(&self, key: &str) -> Option<(Page, u64)> {
        let mut inner = self.inner.lock_unpoisoned();
        let generation = inner.generation;
        let found = match inner.map.get(key) {
            None => None,
            Some(e) if e.generation == generation && e.stored_at.elapsed() < self.ttl => {
                Some((e.page.clone(), generation))
            }
            Some(_) => {
                if let Some(e) = inner.map.pop(key) {
                    inner.bytes -= e.bytes;
                }
                self.counters.expired();
                None
            }
        };
        drop(inner);
        self.counters.lookup(found.is_some());
        found
    }

    /// Stores a page read under `generation`, unless a searchable edit came
    /// since; the least recently used pages go to keep both bounds.
    pub fn insert(&self, key: String, page: Page, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let bytes = entry_bytes(&key, &page);
        if bytes > SEARCH_BYTES_MAX {
            return;
        }
        let mut inner = self.inner.lock_unpoisoned();
        if inner.generation != generation {
            return;
        }
        let entry = Entry {
            stored_at: Instant::now(),
            generation,
            bytes,
            page,
        };
        inner.bytes += bytes;
        if let Some((old_key, old)) = inner.map.push(key.clone(), entry) {
            inner.bytes -= old.bytes;
            if old_key != key {
                self.counters.evicted();
            }
        }
        while inner.bytes > SEARCH_BYTES_MAX {
            let Some((_, old)) = inner.map.pop_lru() else {
                break;
            };
            inner.bytes -= old.bytes;
            self.counters.evicted();
        }
    }

    /// No page stored before this call is served again, and loads running
    /// now will not store what they read. O(1): stale pages are dropped
    /// when next looked up, or pushed out.
    pub fn invalidate_all(&self) {
        self.inner.lock_unpoisoned().generation += 1;
    }

    pub fn stats(&self) -> CacheStats {
        let size = self.inner.lock_unpoisoned().map.len();
        self.counters.stats(size, self.capacity)
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock_unpoisoned().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: i64) -> Page {
        Page {
            ids: (0..n).collect(),
            more: false,
        }
    }

    #[test]
    fn pages_expire_and_go_on_any_searchable_edit() {
        let cache = SearchCache::new("t", 10, Duration::from_millis(50));
        let g = cache.generation();
        cache.insert("a".into(), page(3), g);
        assert_eq!(cache.get("a").map(|(p, _)| p), Some(page(3)));
        cache.invalidate_all();
        assert_eq!(cache.get("a"), None, "stored before an edit");
        cache.insert("a".into(), page(2), g);
        assert_eq!(cache.get("a"), None, "read before an edit, stored after");
        cache.insert("a".into(), page(2), cache.generation());
        assert!(cache.get("a").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None, "expired");
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (2, 3, 2));
    }

    #[test]
    fn entries_and_bytes_stay_bounded() {
        let cache = SearchCache::new("t", 3, Duration::from_secs(60));
        let g = cache.generation();
        for k in 0..5 {
            cache.insert(format!("k{k}"), page(1), g);
        }
        assert_eq!(cache.stats().size, 3);
        assert_eq!(cache.stats().evictions, 2);
        assert_eq!(cache.bytes(), 3 * entry_bytes("k0", &page(1)));
        let big = SEARCH_BYTES_MAX / 8 / 2;
        cache.insert("big1".into(), page(big as i64), g);
        cache.insert("big2".into(), page(big as i64), g);
        assert!(cache.bytes() <= SEARCH_BYTES_MAX);
        assert!(cache.get("big2").is_some() && cache.get("big1").is_none());
    }
}
