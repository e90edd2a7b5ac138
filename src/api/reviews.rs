//! Review routes: rate the other party of a finished order (once per side),
//! and read a user's reviews with their summary.

use serde::Deserialize;
use serde_json::json;

use super::{Params, auth, json, query, respond};
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::orders::reviews::{self, NewReview, Review};
use crate::store::writer::Weight;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    rating: serde_json::Number,
    comment: Option<String>,
}

/// `POST /orders/{id}/review`: the buyer or the seller of a completed or
/// resolved order, once each.
pub fn create(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let order_id = params.id()?;
    let body: CreateBody = json::body(request)?;
    let new = NewReview {
        order_id,
        author: caller.user.id,
        author_is_admin: caller.is_admin(),
        rating: reviews::parse_rating(&body.rating)?,
        comment: body.comment.map(reviews::parse_comment).transpose()?,
    };
    let now = clock::unix_seconds();
    Ok(app.write(
        Weight::ONE,
        move |tx| reviews::create(tx, &new, now),
        |review| respond::json(201, &json!({"review": review.view()})),
    ))
}

/// `GET /users/{id}/reviews?limit=&after=`: reviews the user received,
/// newest first, with their summary.
pub fn list(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::caller(app, request)?;
    let subject = params.id()?;
    let limit = query::limit(request)?;
    let after = query::after_id(request)?;
    let user = auth::profile(app, subject)?.ok_or(Error::NotFound)?;
    let mut page = app.read(|conn| reviews::page(conn, subject, after, limit + 1))?;
    let next = query::next_cursor(&mut page, limit, |r| r.id.to_string());
    let shown: Vec<_> = page.iter().map(Review::view).collect();
    Ok(Reply::Now(respond::json(
        200,
        &json!({"reviews": shown, "next": next, "summary": user.rating.view()}),
    )))
}
