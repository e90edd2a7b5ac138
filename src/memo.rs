//! One value computed at most once per time-to-live (statistics snapshots).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::util::LockUnpoisoned;

pub struct Memo<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Memo<T> {
    pub fn new(ttl: Duration) -> Memo<T> {
        Memo {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The stored value while fresh, else `load`'s (stored when it succeeds).
    /// `load` runs without the lock held, so a slow load blocks no reader.
    pub fn get_or_load(&self, load: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some((at, value)) = &*self.slot.lock_unpoisoned()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = load()?;
        *self.slot.lock_unpoisoned() = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}
