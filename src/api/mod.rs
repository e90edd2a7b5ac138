//! The HTTP API: routes, request decoding and response encoding. Handlers
//! all have one shape: parse → authorize → one call into the domain → render.

pub mod auth;
pub mod health;
pub mod json;
pub mod query;
pub mod respond;
mod router;
pub mod sessions;
pub mod users;

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
}
