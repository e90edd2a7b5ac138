//! The idempotency protocol of docs/api.md around a money-moving write: the
//! key's response is stored by the same write job as the movement.

use serde_json::Value;

use super::respond;
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{BadHeader, Reply, Request, Response};
use crate::ledger::idempotency::{self, Stored};
use crate::store::WriteTx;

/// Runs `work` through the writer and answers with `render`'s response. With
/// an `Idempotency-Key`, a repeat of the same request (same `canonical`
/// form on the same route) replays the stored answer, another request with
/// the key gets 422, and a repeat while the first runs gets 409.
pub fn write<T, W, R>(
    app: &App,
    request: &Request,
    user_id: i64,
    canonical: Value,
    work: W,
    render: R,
) -> Result<Reply>
where
    T: Send + 'static,
    W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    R: Fn(T) -> Response + Send + 'static,
{
    write_weighted(app, request, user_id, canonical, 1, work, render)
}

/// `write` for a job worth `weight` ordinary ones (see `Writer::submit_weighted`).
#[allow(clippy::too_many_arguments)]
pub fn write_weighted<T, W, R>(
    app: &App,
    request: &Request,
    user_id: i64,
    canonical: Value,
    weight: usize,
    work: W,
    render: R,
) -> Result<Reply>
where
    T: Send + 'static,
    W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    R: Fn(T) -> Response + Send + 'static,
{
    let Some(key) = key(request)? else {
        return Ok(app.write_weighted(weight, work, render));
    };
    let route = format!("{} {}", request.method.as_str(), request.path());
    let fingerprint = idempotency::fingerprint(&route, &canonical);
    let in_flight = app.in_flight.begin(user_id, &key)?;
    if let Some(stored) = app
        .store
        .readers
        .read(|conn| idempotency::lookup(conn, user_id, &key, &fingerprint))?
    {
        return Ok(Reply::Now(replay(stored)));
    }
    let now = clock::unix_seconds();
    let writer = app.store.writer.clone();
    Ok(Reply::Later(Box::new(move |responder| {
        let job = move |tx: &WriteTx<'_>| -> Result<(Response, bool)> {
            // Committed by another process since the read above?
            if let Some(stored) = idempotency::lookup(tx, user_id, &key, &fingerprint)? {
                return Ok((replay(stored), true));
            }
            let response = render(work(tx)?);
            let stored = Stored {
                status: response.status,
                body: response.body.clone(),
            };
            idempotency::store(tx, user_id, &key, &fingerprint, &stored, now)?;
            Ok((response, false))
        };
        writer.submit_weighted(weight, job, move |result| {
            drop(in_flight);
            responder.send(match result {
                Ok((response, _)) => response,
                Err(e) => respond::error(e),
            });
        });
    })))
}

/// The request's key: `None` only when no `Idempotency-Key` was sent. One
/// that was sent but is unreadable (not UTF-8, repeated) is 400 like any
/// malformed key: taking it for "no key" would apply a retry twice.
fn key(request: &Request) -> Result<Option<String>> {
    match request.header("idempotency-key") {
        Ok(None) => Ok(None),
        Ok(Some(value)) => idempotency::parse_key(value).map(Some),
        Err(BadHeader::NotUtf8) => Err(idempotency::invalid_key()),
        Err(BadHeader::Repeated) => Err(Error::invalid_field(
            idempotency::KEY_FIELD,
            format!("send one {}, not several", idempotency::KEY_FIELD),
        )),
    }
}

fn replay(stored: Stored) -> Response {
    Response::json_bytes(stored.status, stored.body).with_header("idempotent-replayed", "true")
}
