//! An admin's view of one user (the console's Users screen): the profile
//! with private fields, balances and lockout, their entries and orders,
//! and lifting a login lockout.

use serde_json::json;

use super::{Params, auth, orders, respond, wallet};
use crate::accounts::{User, users};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Reply, Request, Response};
use crate::ledger;

/// The user of the path's `{id}`, read fresh (not through the profile
/// cache); 404 when there is none.
fn target(app: &App, params: &Params) -> Result<User> {
    let id = params.id()?;
    app.read(|conn| users::by_id(conn, id))?
        .ok_or(Error::NotFound)
}

/// `GET /admin/users/{id}`: private fields, `locked_until` (RFC 3339, or
/// null when logins are not locked out) and balances.
pub fn get(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let user = target(app, params)?;
    let locked_until = app.guard.locked_for(&user.username).map(|left| {
        let seconds = i64::try_from(left.as_secs()).unwrap_or(i64::MAX);
        let rounded_up = seconds.saturating_add(i64::from(left.subsec_nanos() > 0));
        crate::clock::rfc3339(crate::clock::unix_seconds().saturating_add(rounded_up))
    });
    let currencies = &app.config.currencies;
    let balances = app.read(|conn| ledger::balances(conn, user.id, currencies))?;
    let mut view = serde_json::to_value(user.private())
        .map_err(|e| Error::internal_from("rendering a user", e))?;
    if let Some(map) = view.as_object_mut() {
        map.insert("locked_until".into(), json!(locked_until));
    }
    Ok(Reply::Now(respond::json(
        200,
        &json!({"user": view, "balances": ledger::balances_json(&balances, currencies)}),
    )))
}

/// `GET /admin/users/{id}/entries?currency=&limit=&after=`: newest first,
/// paged like `GET /wallet/entries`.
pub fn entries(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let user = target(app, params)?;
    wallet::entries_of(app, request, user.id)
}

/// `GET /admin/users/{id}/orders?state=&limit=&after=`: orders the user
/// bought or sold, newest first, paged like `GET /admin/orders`.
pub fn orders(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let user = target(app, params)?;
    orders::page(app, request, crate::orders::Scope::Either(user.id))
}

/// `POST /admin/users/{id}/unlock`: lifts a login lockout and forgets the
/// failed logins, as `souk user unlock` does (`LoginGuard::unlock`); 204
/// whether or not the user was locked out.
pub fn unlock(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let user = target(app, params)?;
    app.guard.unlock(&user.username);
    Ok(Reply::Now(Response::new(204)))
}
