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
pub mod parties;
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
        .route(Get, "/healthz", health::healthz, "health.live")
        .route(Get, "/readyz", health::readyz, "health.ready")
        .route(Post, "/api/v1/users", users::register, "users.register")
        .route(Get, "/api/v1/users", users::list, "users.list")
        .route(Get, "/api/v1/users/me", users::me, "users.me")
        .route(
            Patch,
            "/api/v1/users/me",
            users::update_me,
            "users.update_me",
        )
        .route(Get, "/api/v1/users/{id}", users::get, "users.get_by_id")
        .route(Post, "/api/v1/sessions", sessions::login, "users.login")
        .route(
            Delete,
            "/api/v1/sessions/current",
            sessions::logout,
            "users.logout",
        )
        .route(
            Patch,
            "/api/v1/admin/users/{id}",
            users::admin_update,
            "admin.users.update",
        )
        .route(
            Post,
            "/api/v1/admin/users/bulk-update",
            users::bulk_update,
            "admin.users.bulk_update",
        )
        .route(
            Get,
            "/api/v1/admin/stats/users",
            users::stats,
            "admin.stats.users",
        )
        .route(Get, "/api/v1/wallet", wallet::wallet, "wallets.balances")
        .route(
            Get,
            "/api/v1/wallet/entries",
            wallet::entries,
            "wallets.entries",
        )
        .route(
            Post,
            "/api/v1/transfers",
            wallet::transfer,
            "wallets.transfer",
        )
        .route(
            Post,
            "/api/v1/transfers/batch",
            wallet::transfer_batch,
            "wallets.transfer_batch",
        )
        .route(
            Post,
            "/api/v1/admin/deposits",
            admin_ledger::deposit,
            "wallets.deposit",
        )
        .route(
            Post,
            "/api/v1/admin/withdrawals",
            admin_ledger::withdraw,
            "wallets.withdraw",
        )
        .route(
            Get,
            "/api/v1/admin/balances",
            admin_ledger::balances,
            "admin.balances",
        )
        .route(
            Get,
            "/api/v1/admin/stats/wallets",
            admin_ledger::stats,
            "admin.stats.wallets",
        )
        .route(
            Get,
            "/api/v1/admin/check",
            admin_ledger::check,
            "admin.check",
        )
        .route(Post, "/api/v1/escrows", escrows::create, "escrow.create")
        .route(Get, "/api/v1/escrows", escrows::list, "escrow.list")
        .route(Get, "/api/v1/escrows/{id}", escrows::get, "escrow.get")
        .route(
            Post,
            "/api/v1/escrows/{id}/release",
            escrows::release,
            "escrow.release",
        )
        .route(
            Post,
            "/api/v1/escrows/{id}/refund",
            escrows::refund,
            "escrow.refund",
        )
        .route(
            Post,
            "/api/v1/escrows/{id}/dispute",
            escrows::dispute,
            "escrow.dispute",
        )
        .route(
            Post,
            "/api/v1/admin/escrows/{id}/resolve",
            escrows::resolve,
            "escrow.resolve",
        )
        .route(
            Post,
            "/api/v1/listings",
            listings::create,
            "listings.create",
        )
        .route(Get, "/api/v1/listings", listings::search, "listings.search")
        .route(Get, "/api/v1/listings/{id}", listings::get, "listings.get")
        .route(
            Patch,
            "/api/v1/listings/{id}",
            listings::update,
            "listings.update",
        )
        .route(
            Get,
            "/api/v1/users/me/listings",
            listings::mine,
            "listings.mine",
        )
        .route(Post, "/api/v1/orders", orders::place, "orders.place")
        .route(Get, "/api/v1/orders", orders::list, "orders.list")
        .route(Get, "/api/v1/orders/{id}", orders::get, "orders.get")
        .route(
            Post,
            "/api/v1/orders/{id}/ship",
            orders::ship,
            "orders.ship",
        )
        .route(
            Post,
            "/api/v1/orders/{id}/cancel",
            orders::cancel,
            "orders.cancel",
        )
        .route(
            Post,
            "/api/v1/orders/{id}/confirm",
            orders::confirm,
            "orders.confirm",
        )
        .route(
            Post,
            "/api/v1/orders/{id}/dispute",
            orders::dispute,
            "orders.dispute",
        )
        .route(
            Post,
            "/api/v1/admin/orders/{id}/resolve",
            orders::resolve,
            "orders.resolve",
        )
        .route(
            Get,
            "/api/v1/admin/orders",
            orders::admin_list,
            "admin.orders",
        )
        .route(Get, "/api/v1/admin/fees", fees::summary, "admin.fees")
        .route(
            Post,
            "/api/v1/admin/fees/withdrawals",
            fees::withdraw,
            "admin.fees.withdraw",
        )
        .route(
            Post,
            "/api/v1/orders/{id}/review",
            reviews::create,
            "reviews.create",
        )
        .route(
            Get,
            "/api/v1/users/{id}/reviews",
            reviews::list,
            "reviews.list",
        )
        .route(
            Post,
            "/api/v1/orders/{id}/messages",
            messages::post,
            "messages.post",
        )
        .route(
            Get,
            "/api/v1/orders/{id}/messages",
            messages::list,
            "messages.list",
        )
        .route(Get, "/metrics", monitoring::metrics, "monitoring.metrics")
        .route(
            Get,
            "/dashboard",
            console::dashboard_redirect,
            "console.dashboard_redirect",
        )
        .route(Get, "/admin", console::page, "console.page")
        .route(Get, "/admin/console.js", console::script, "console.script")
        .route(Get, "/admin/console.css", console::style, "console.style")
        .route(
            Get,
            "/api/v1/admin/users/{id}",
            admin_users::get,
            "admin.users.get",
        )
        .route(
            Get,
            "/api/v1/admin/users/{id}/entries",
            admin_users::entries,
            "admin.users.entries",
        )
        .route(
            Get,
            "/api/v1/admin/users/{id}/orders",
            admin_users::orders,
            "admin.users.orders",
        )
        .route(
            Post,
            "/api/v1/admin/users/{id}/unlock",
            admin_users::unlock,
            "admin.users.unlock",
        )
        .route(
            Get,
            "/api/v1/admin/escrows",
            escrows::admin_list,
            "admin.escrows",
        )
        .route(
            Get,
            "/api/v1/admin/dashboard",
            monitoring::dashboard,
            "admin.dashboard",
        )
        .route(
            Get,
            "/api/v1/admin/metrics",
            monitoring::export,
            "admin.metrics",
        )
        .route(
            Get,
            "/api/v1/admin/alerts",
            monitoring::alerts,
            "admin.alerts",
        )
        .route(
            Get,
            "/api/v1/openapi.json",
            openapi::document,
            "api.openapi",
        )
}
