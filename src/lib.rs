//! souk: a marketplace core in one small binary. See ARCHITECTURE.md for the
//! map of modules and the invariants they keep.

pub mod accounts;
pub mod api;
pub mod app;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod escrow;
pub mod heartbeat;
pub mod http;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod listings;
pub mod logs;
pub mod memo;
pub mod monitor;
pub mod orders;
pub mod store;
pub mod systemd;
pub mod timers;
pub mod util;
