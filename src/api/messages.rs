//! Order message routes: the buyer, the seller and admins write and read
//! an order's conversation; anyone else is told the order does not exist.

use serde::Deserialize;
use serde_json::json;

use super::deferred::Deferred;
use super::{Params, auth, json, query, respond};
use crate::app::App;
use crate::clock;
use crate::error::Result;
use crate::http::{Reply, Request};
use crate::orders::messages::{self, Message};
use crate::store::writer::Weight;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    body: String,
}

/// `POST /orders/{id}/messages`: input is checked (400), then who may
/// write (404), then the sender's rate (429), and only then is it stored.
pub fn post(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let order_id = params.id()?;
    let body: PostBody = json::body(request)?;
    let text = messages::parse_body(body.body)?;
    let author = caller.user.id;
    // Parties never change, so a snapshot read settles who may write.
    app.read(|conn| messages::conversation(conn, order_id, author, caller.is_admin()))?;
    let counted = app.messages_sent.count(author)?;
    let now = clock::unix_seconds();
    // A send that fails (503, a failed commit) is not stored, so its slot
    // is given back.
    let limit = app.messages_sent.clone();
    Ok(Deferred::write(&app.store.writer, Weight::ONE, move |tx| {
        messages::post(tx, order_id, author, &text, now)
    })
    .inspect(move |result| {
        if result.is_err() {
            limit.release(author, counted);
        }
    })
    .render(|message| respond::json(201, &json!({"message": message.view()}))))
}

/// `GET /orders/{id}/messages?limit=&after=`: oldest first.
pub fn list(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let order_id = params.id()?;
    let limit = query::limit(request)?;
    let after = query::after_id(request)?;
    let mut page = app.read(|conn| {
        messages::conversation(conn, order_id, caller.user.id, caller.is_admin())?;
        messages::page(conn, order_id, after, limit + 1)
    })?;
    let next = query::next_cursor(&mut page, limit, |m| m.id.to_string());
    let shown: Vec<_> = page.iter().map(Message::view).collect();
    Ok(Reply::Now(respond::json(
        200,
        &json!({"messages": shown, "next": next}),
    )))
}
