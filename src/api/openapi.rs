//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the whole API.
//! `openapi.json` beside this file is the one source of truth for it: edit
//! it by hand with every change to a route, a body or an answer
//! (`tests/api/openapi.rs` compares it with `routes()`).

use super::Params;
use crate::app::App;
use crate::error::Result;
use crate::http::{Reply, Request, Response};

/// The document, as built into the binary.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn document(_app: &App, _request: &Request, _params: &Params) -> Result<Reply> {
    Ok(Reply::Now(Response::json_bytes(
        200,
        DOCUMENT.as_bytes().to_vec(),
    )))
}
