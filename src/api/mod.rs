//! The HTTP API: routes, request decoding and response encoding. Handlers
//! all have one shape: parse → authorize → one call into the domain → render.

pub mod admin_ledger;
pub mod auth;
pub mod escrows;
pub mod health;
pub mod idempotent;
pub mod json;
pub mod query;
pub mod respond;
mod router;
pub mod sessions;
pub mod users;
pub mod wallet;

pub use router::{Handler, Params, Router};

/// Every route of the service.
pub fn routes() -> Router {
    use crate::http::Method::{Delete, Get, Patch, Post};
    Router::new()
        .route(Get, "/healthz", health::healthz)
        .route(Get, "/readyz", health::readyz)
        .route(Post, "/api/v1/users", users::register)
        .route(Get, "/api/v1/users", users::list)
        .route(Get, "/api/v1/users/me", users::me)
        .route(Patch, "/api/v1/users/me", users::update_me)
        .route(Get, "/api/v1/users/{id}", users::get)
        .route(Post, "/api/v1/sessions", sessions::login)
        .route(Delete, "/api/v1/sessions/current", sessions::logout)
        .route(Patch, "/api/v1/admin/users/{id}", users::admin_update)
        .route(Post, "/api/v1/admin/users/bulk-update", users::bulk_update)
        .route(Get, "/api/v1/admin/stats/users", users::stats)
        .route(Get, "/api/v1/wallet", wallet::wallet)
        .route(Get, "/api/v1/wallet/entries", wallet::entries)
        .route(Post, "/api/v1/transfers", wallet::transfer)
        .route(Post, "/api/v1/transfers/batch", wallet::transfer_batch)
        .route(Post, "/api/v1/admin/deposits", admin_ledger::deposit)
        .route(Post, "/api/v1/admin/withdrawals", admin_ledger::withdraw)
        .route(Get, "/api/v1/admin/balances", admin_ledger::balances)
        .route(Get, "/api/v1/admin/stats/wallets", admin_ledger::stats)
        .route(Get, "/api/v1/admin/check", admin_ledger::check)
        .route(Post, "/api/v1/escrows", escrows::create)
        .route(Get, "/api/v1/escrows", escrows::list)
        .route(Get, "/api/v1/escrows/{id}", escrows::get)
        .route(Post, "/api/v1/escrows/{id}/release", escrows::release)
        .route(Post, "/api/v1/escrows/{id}/refund", escrows::refund)
        .route(Post, "/api/v1/escrows/{id}/dispute", escrows::dispute)
        .route(Post, "/api/v1/admin/escrows/{id}/resolve", escrows::resolve)
}
