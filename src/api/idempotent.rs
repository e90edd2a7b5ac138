//! The idempotency protocol of docs/api.md around a money-moving write: the
//! key's response is stored by the same write job as the movement.

use serde_json::Value;

use super::deferred::Deferred;
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{BadHeader, Reply, Request, Response};
use crate::ledger::idempotency::{self, Stored};
use crate::store::WriteTx;
use crate::store::writer::Weight;

/// Runs `work`, worth `weight` (see `Weight`), through the writer and
/// answers with `render`'s response; `work` gets the time of the request
/// (unix seconds), the same on a second run. With an `Idempotency-Key`, a repeat of
/// the same request (same `canonical` form on the same route) replays the
/// stored answer, another request with the key gets 422, and a repeat while
/// the first runs gets 409.
pub fn write<T, W, R>(
    app: &App,
    request: &Request,
    keyed: Keyed,
    work: W,
    render: R,
) -> Result<Reply>
where
    T: Send + 'static,
    W: Fn(&WriteTx<'_>, i64) -> Result<T> + Send + 'static,
    R: Fn(T) -> Response + Send + 'static,
{
    let now = clock::unix_seconds();
    let work = move |tx: &WriteTx<'_>| work(tx, now);
    let Keyed {
        user_id,
        canonical,
        weight,
    } = keyed;
    let Some(key) = key(request)? else {
        return Ok(app.write(weight, work, render));
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
    let job = move |tx: &WriteTx<'_>| -> Result<Response> {
        // Committed by another process since the read above?
        if let Some(stored) = idempotency::lookup(tx, user_id, &key, &fingerprint)? {
            return Ok(replay(stored));
        }
        let response = render(work(tx)?);
        let stored = Stored {
            status: response.status,
            body: response.body.clone(),
        };
        idempotency::store(tx, user_id, &key, &fingerprint, &stored, now)?;
        Ok(response)
    };
    // The response is made in the job, to be stored with the movement.
    Ok(Deferred::write(&app.store.writer, weight, job)
        .inspect(move |_| drop(in_flight))
        .render(|response| response))
}

/// Whose key an `Idempotency-Key` is, the request's canonical form, and the
/// job's weight.
pub struct Keyed {
    pub user_id: i64,
    pub canonical: Value,
    pub weight: Weight,
}

impl Keyed {
    /// An ordinary job of `user_id`'s, whose request reads `canonical`.
    pub fn new(user_id: i64, canonical: Value) -> Keyed {
        Keyed {
            user_id,
            canonical,
            weight: Weight::ONE,
        }
    }

    /// The same, for a job worth `weight`.
    pub fn weighing(self, weight: Weight) -> Keyed {
        Keyed { weight, ..self }
    }
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
