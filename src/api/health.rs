//! `GET /healthz` (the process serves) and `GET /readyz` (the database reads
//! and commits).

use serde_json::json;

use super::{Params, respond};
use crate::app::App;
use crate::error::Result;
use crate::http::{Reply, Request};
use crate::store::breaker::State;
use crate::store::writer::Weight;

pub fn healthz(_app: &App, _request: &Request, _params: &Params) -> Result<Reply> {
    Ok(Reply::Now(respond::json(200, &json!({"status": "ok"}))))
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
    app.store
        .readers
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))?;
    let now = crate::clock::unix_seconds();
    Ok(app.write(
        Weight::ONE,
        move |tx| {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([now.to_string()])?;
            Ok(())
        },
        |()| respond::json(200, &json!({"status": "ready"})),
    ))
}
