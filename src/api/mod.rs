//! The HTTP API: routes, request decoding and response encoding. Handlers
//! all have one shape: parse → authorize → one call into the domain → render.

pub mod admin_ledger;
pub mod admin_users;
pub mod auth;
pub mod console;
pub mod cors;
pub mod deferred;
pub mod escrows;
pub mod fees;
pub mod health;
pub mod idempotent;
pub mod json;
pub mod listings;
pub mod messages;
pub mod monitoring;
pub mod openapi;
pub mod orders;
pub mod query;
pub mod respond;
pub mod reviews;
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
        .op("health.live")
        .route(Get, "/readyz", health::readyz)
        .op("health.ready")
        .route(Post, "/api/v1/users", users::register)
        .op("users.register")
        .route(Get, "/api/v1/users", users::list)
        .op("users.list")
        .route(Get, "/api/v1/users/me", users::me)
        .op("users.me")
        .route(Patch, "/api/v1/users/me", users::update_me)
        .op("users.update_me")
        .route(Get, "/api/v1/users/{id}", users::get)
        .op("users.get_by_id")
        .route(Post, "/api/v1/sessions", sessions::login)
        .op("users.login")
        .route(Delete, "/api/v1/sessions/current", sessions::logout)
        .op("users.logout")
        .route(Patch, "/api/v1/admin/users/{id}", users::admin_update)
        .op("admin.users.update")
        .route(Post, "/api/v1/admin/users/bulk-update", users::bulk_update)
        .op("admin.users.bulk_update")
        .route(Get, "/api/v1/admin/stats/users", users::stats)
        .op("admin.stats.users")
        .route(Get, "/api/v1/wallet", wallet::wallet)
        .op("wallets.balances")
        .route(Get, "/api/v1/wallet/entries", wallet::entries)
        .op("wallets.entries")
        .route(Post, "/api/v1/transfers", wallet::transfer)
        .op("wallets.transfer")
        .route(Post, "/api/v1/transfers/batch", wallet::transfer_batch)
        .op("wallets.transfer_batch")
        .route(Post, "/api/v1/admin/deposits", admin_ledger::deposit)
        .op("wallets.deposit")
        .route(Post, "/api/v1/admin/withdrawals", admin_ledger::withdraw)
        .op("wallets.withdraw")
        .route(Get, "/api/v1/admin/balances", admin_ledger::balances)
        .op("admin.balances")
        .route(Get, "/api/v1/admin/stats/wallets", admin_ledger::stats)
        .op("admin.stats.wallets")
        .route(Get, "/api/v1/admin/check", admin_ledger::check)
        .op("admin.check")
        .route(Post, "/api/v1/escrows", escrows::create)
        .op("escrow.create")
        .route(Get, "/api/v1/escrows", escrows::list)
        .op("escrow.list")
        .route(Get, "/api/v1/escrows/{id}", escrows::get)
        .op("escrow.get")
        .route(Post, "/api/v1/escrows/{id}/release", escrows::release)
        .op("escrow.release")
        .route(Post, "/api/v1/escrows/{id}/refund", escrows::refund)
        .op("escrow.refund")
        .route(Post, "/api/v1/escrows/{id}/dispute", escrows::dispute)
        .op("escrow.dispute")
        .route(Post, "/api/v1/admin/escrows/{id}/resolve", escrows::resolve)
        .op("escrow.resolve")
        .route(Post, "/api/v1/listings", listings::create)
        .op("listings.create")
        .route(Get, "/api/v1/listings", listings::search)
        .op("listings.search")
        .route(Get, "/api/v1/listings/{id}", listings::get)
        .op("listings.get")
        .route(Patch, "/api/v1/listings/{id}", listings::update)
        .op("listings.update")
        .route(Get, "/api/v1/users/me/listings", listings::mine)
        .op("listings.mine")
        .route(Post, "/api/v1/orders", orders::place)
        .op("orders.place")
        .route(Get, "/api/v1/orders", orders::list)
        .op("orders.list")
        .route(Get, "/api/v1/orders/{id}", orders::get)
        .op("orders.get")
        .route(Post, "/api/v1/orders/{id}/ship", orders::ship)
        .op("orders.ship")
        .route(Post, "/api/v1/orders/{id}/cancel", orders::cancel)
        .op("orders.cancel")
        .route(Post, "/api/v1/orders/{id}/confirm", orders::confirm)
        .op("orders.confirm")
        .route(Post, "/api/v1/orders/{id}/dispute", orders::dispute)
        .op("orders.dispute")
        .route(Post, "/api/v1/admin/orders/{id}/resolve", orders::resolve)
        .op("orders.resolve")
        .route(Get, "/api/v1/admin/orders", orders::admin_list)
        .op("admin.orders")
        .route(Get, "/api/v1/admin/fees", fees::summary)
        .op("admin.fees")
        .route(Post, "/api/v1/admin/fees/withdrawals", fees::withdraw)
        .op("admin.fees.withdraw")
        .route(Post, "/api/v1/orders/{id}/review", reviews::create)
        .op("reviews.create")
        .route(Get, "/api/v1/users/{id}/reviews", reviews::list)
        .op("reviews.list")
        .route(Post, "/api/v1/orders/{id}/messages", messages::post)
        .op("messages.post")
        .route(Get, "/api/v1/orders/{id}/messages", messages::list)
        .op("messages.list")
        .route(Get, "/metrics", monitoring::metrics)
        .op("monitoring.metrics")
        .route(Get, "/dashboard", console::dashboard_redirect)
        .op("console.dashboard_redirect")
        .route(Get, "/admin", console::page)
        .op("console.page")
        .route(Get, "/admin/console.js", console::script)
        .op("console.script")
        .route(Get, "/admin/console.css", console::style)
        .op("console.style")
        .route(Get, "/api/v1/admin/users/{id}", admin_users::get)
        .op("admin.users.get")
        .route(
            Get,
            "/api/v1/admin/users/{id}/entries",
            admin_users::entries,
        )
        .op("admin.users.entries")
        .route(Get, "/api/v1/admin/users/{id}/orders", admin_users::orders)
        .op("admin.users.orders")
        .route(Post, "/api/v1/admin/users/{id}/unlock", admin_users::unlock)
        .op("admin.users.unlock")
        .route(Get, "/api/v1/admin/escrows", escrows::admin_list)
        .op("admin.escrows")
        .route(Get, "/api/v1/admin/dashboard", monitoring::dashboard)
        .op("admin.dashboard")
        .route(Get, "/api/v1/admin/metrics", monitoring::export)
        .op("admin.metrics")
        .route(Get, "/api/v1/admin/alerts", monitoring::alerts)
        .op("admin.alerts")
        .route(Get, "/api/v1/openapi.json", openapi::document)
        .op("api.openapi")
}
