//! The HTTP API: routes, request decoding and response encoding. Handlers
//! all have one shape: parse → authorize → one call into the domain → render.

pub mod health;
pub mod json;
pub mod respond;
mod router;

pub use router::{Handler, Params, Router};

/// Every route of the service.
pub fn routes() -> Router {
    use crate::http::Method::Get;
    Router::new()
        .route(Get, "/healthz", health::healthz)
        .route(Get, "/readyz", health::readyz)
}
