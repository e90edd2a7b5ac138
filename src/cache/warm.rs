//! Warming: at start, the most recently active users' profiles and balances
//! are loaded, so the first requests after a restart hit the cache. Runs on
//! a thread of its own; start-up does not wait for it.
//!
//! Finding them reads the users table whole (ordered by last login), which
//! fills the reader's SQLite page cache (up to 2 MiB) with pages no request
//! asked for: the reader drops them afterwards (`PRAGMA shrink_memory`) and
//! the freed memory goes back to the system (`util::return_freed_memory`).

use std::sync::Arc;

use super::{Caches, WARM_USERS_MAX};
use crate::accounts::users;
use crate::config::Currencies;
use crate::error::Result;
use crate::ledger;
use crate::store::Readers;

pub fn spawn(caches: Arc<Caches>, readers: Readers, currencies: Currencies) {
    let spawned = std::thread::Builder::new()
        .name("cache-warm".into())
        .stack_size(crate::limits::SERVICE_STACK_BYTES * 2)
        .spawn(move || {
            match warm(&caches, &readers, &currencies) {
                Ok(n) => log::debug!("cache warmed with {n} users"),
                Err(e) => log::warn!("cache warming failed: {e}"),
            }
            crate::util::return_freed_memory();
        });
    if let Err(e) = spawned {
        log::warn!("cache warming not started: {e}");
    }
}

fn warm(caches: &Caches, readers: &Readers, currencies: &Currencies) -> Result<usize> {
    let (profile_ticket, balance_ticket) = (caches.profiles.ticket(), caches.balances.ticket());
    let codes: Vec<String> = currencies.0.iter().map(|c| c.code.clone()).collect();
    let (active, balances) = readers.read(|conn| {
        let active = users::most_recently_active(conn, WARM_USERS_MAX)?;
        let ids: Vec<i64> = active.iter().map(|u| u.id).collect();
        let balances = ledger::balances_of_users(conn, &ids, &codes)?;
        conn.execute_batch("PRAGMA shrink_memory")?;
        Ok((active, balances))
    })?;
    let count = active.len();
    for user in active {
        caches
            .profiles
            .insert_if_unchanged(user.id, Arc::new(user), profile_ticket);
    }
    for (user_id, balances) in balances {
        caches
            .balances
            .insert_if_unchanged(user_id, Arc::new(balances), balance_ticket);
    }
    Ok(count)
}
