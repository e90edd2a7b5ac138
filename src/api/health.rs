//! `GET /healthz` (the process serves) and `GET /readyz` (the database reads
//! and commits).

use serde_json::json;

use super::{Params, respond};
use crate::app::App;
use crate::error::Result;
use crate::http::{Reply, Request, Response};
use crate::store::writer::Weight;
use crate::store::{self, breaker::State};

pub fn healthz(_app: &App, _request: &Request, _params: &Params) -> Result<Reply> {
    // A fixed body: nothing to serialize.
    Ok(Reply::Now(Response::json_bytes(
        200,
        br#"{"status":"ok"}"#.to_vec(),
    )))
}

/// Ready when a reader answers and a write commits through the writer.
pub fn readyz(app: &App, _request: &Request, _params: &Params) -> Result<Reply> {
    let breaker = app.store.breaker.status();
    if breaker.state == State::Open {
        return Err(crate::error::Error::Unavailable {
            reason: format!("the store's circuit breaker is open: {}", breaker.reason),
            retry_after_s: breaker.retry_after_s,
        });
    }
    app.read(store::probe_read)?;
    let now = crate::clock::unix_seconds();
    Ok(app.write(
        Weight::ONE,
        move |tx| store::probe_write(tx, now),
        |()| respond::json(200, &json!({"status": "ready"})),
    ))
}
