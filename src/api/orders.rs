//! Order routes: place, read, list, the parties' moves and an admin's
//! resolution. Who may move an order is decided in the write job against
//! the row it reads (`orders::act`): 404 for anyone neither a party nor an
//! admin, 403 for a role that may never take the action, 409 for the
//! wrong state.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::auth::Caller;
use super::idempotent::Keyed;
use super::parties::Parties;
use super::{Params, auth, json, query};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::ids;
use crate::orders::{
    self, Action, Input, MEMO_CHARS_MAX, Mover, NewOrder, Order, OrderState, OrderView,
    REASON_CHARS_MAX, Scope, TRACKING_CHARS_MAX, Terms,
};

/// How order routes read and show an order.
static ORDERS: Parties<Order, OrderView> = Parties {
    name: "order",
    list: "orders",
    by_id: orders::by_id,
    is_party: Order::is_party,
    view: Order::view,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    listing: String,
    quantity: Option<serde_json::Number>,
    memo: Option<String>,
}

/// `POST /orders`: the caller buys; stock and money are reserved at once.
pub fn place(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: PlaceBody = json::body(request)?;
    let listing = ids::parse_id("listing", &body.listing)?;
    let quantity = match &body.quantity {
        Some(n) => orders::parse_quantity(n)?,
        None => 1,
    };
    let memo = body
        .memo
        .map(|m| orders::parse_text("memo", m, MEMO_CHARS_MAX))
        .transpose()?;
    let new = NewOrder {
        buyer: caller.user.id,
        listing,
        quantity,
        memo,
    };
    let canonical = json!([new.listing, new.quantity, new.memo]);
    let terms = Terms {
        fee_bps: app.config.fee_bps,
        ship_within_s: app.config.order_ship_within_s,
    };
    let currencies = app.config.currencies.clone();
    let keyed = Keyed::new(caller.user.id, canonical);
    ORDERS.write(app, request, keyed, 201, move |tx, now| {
        orders::place(tx, &currencies, &new, terms, now)
    })
}

/// `GET /orders/{id}`: buyer, seller or admin.
pub fn get(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    ORDERS.get(app, request, params)
}

fn state_filter(request: &Request) -> Result<Option<OrderState>> {
    query::param(request, "state")?
        .map(|s| OrderState::parse("state", &s))
        .transpose()
}

/// One page of `scope`, rendered as `{orders, next}`.
pub(super) fn page(app: &App, request: &Request, scope: Scope) -> Result<Reply> {
    let state = state_filter(request)?;
    let after = query::after_id(request)?;
    let limit = query::limit(request)?;
    let mut page = app.read(|conn| orders::page(conn, scope, state, after, limit + 1))?;
    let next = query::next_cursor(&mut page, limit, |o| o.id.to_string());
    Ok(ORDERS.page(app, &page, next))
}

/// `GET /orders?role=buyer|seller&state=&limit=&after=`: the caller's,
/// newest first; both roles without `role`.
pub fn list(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let user = caller.user.id;
    let scope = match query::param(request, "role")?.as_deref() {
        None => Scope::Either(user),
        Some("buyer") => Scope::Buyer(user),
        Some("seller") => Scope::Seller(user),
        Some(_) => return Err(Error::invalid_field("role", "role must be buyer or seller")),
    };
    page(app, request, scope)
}

/// `GET /admin/orders?state=&limit=&after=`: every order (e.g. the disputes).
pub fn admin_list(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    page(app, request, Scope::All)
}

/// A body that may be left out: none is like `{}`; one sent is decoded
/// strictly (unknown fields are 400).
fn optional_body<T: DeserializeOwned + Default>(request: &Request) -> Result<T> {
    if request.body.is_empty() {
        return Ok(T::default());
    }
    json::body(request)
}

/// Runs `action` with `input` as the caller, through the writer, with the
/// Idempotency-Key protocol; answers 200 {order}.
fn act(
    app: &App,
    request: &Request,
    params: &Params,
    caller: &Caller,
    action: Action,
    input: Input,
) -> Result<Reply> {
    let id = params.id()?;
    // What the client asked for; settings (the confirm period) are not part of it.
    let asked = match &input {
        Input::None => json!(null),
        Input::Ship { tracking, .. } => json!(tracking),
        Input::Dispute { reason } => json!(reason),
        Input::Resolve {
            to_seller,
            to_buyer,
        } => json!([to_seller, to_buyer]),
    };
    let canonical = json!([id, format!("{action:?}"), asked]);
    let mover = Mover::User {
        id: caller.user.id,
        admin: caller.is_admin(),
    };
    let keyed = Keyed::new(caller.user.id, canonical);
    ORDERS.write(app, request, keyed, 200, move |tx, now| {
        orders::act(tx, id, action, &input, mover, now)
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    tracking: Option<String>,
}

/// `POST /orders/{id}/ship` {tracking?}: the seller, from paid.
pub fn ship(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: ShipBody = optional_body(request)?;
    let tracking = body
        .tracking
        .map(|t| orders::parse_text("tracking", t, TRACKING_CHARS_MAX))
        .transpose()?;
    let input = Input::Ship {
        tracking,
        confirm_within_s: app.config.order_confirm_within_s,
    };
    act(app, request, params, &caller, Action::Ship, input)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoBody {}

/// `POST /orders/{id}/cancel`: buyer or seller from paid, seller from shipped.
pub fn cancel(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let NoBody {} = optional_body(request)?;
    act(app, request, params, &caller, Action::Cancel, Input::None)
}

/// `POST /orders/{id}/confirm`: the buyer, from shipped.
pub fn confirm(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let NoBody {} = optional_body(request)?;
    act(app, request, params, &caller, Action::Confirm, Input::None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputeBody {
    reason: String,
}

/// `POST /orders/{id}/dispute` {reason}: either party, from paid or shipped.
pub fn dispute(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: DisputeBody = json::body(request)?;
    let reason = orders::parse_text("reason", body.reason, REASON_CHARS_MAX)?;
    if reason.trim().is_empty() {
        return Err(Error::invalid_field(
            "reason",
            format!("reason must be 1-{REASON_CHARS_MAX} characters, not only white space"),
        ));
    }
    act(
        app,
        request,
        params,
        &caller,
        Action::Dispute,
        Input::Dispute { reason },
    )
}

/// `POST /admin/orders/{id}/resolve` {to_seller, to_buyer}: an admin splits
/// a disputed order; the fee comes out of `to_seller` only.
pub fn resolve(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let (caller, order, body) = ORDERS.resolving(app, request, params)?;
    let currency = orders::enabled_currency(&app.config.currencies, "order", &order.currency)?;
    let (to_seller, to_buyer) = body.parts(&currency)?;
    // The amount never changes, so the sum is checked (400) before the state (409).
    if to_seller.checked_add(to_buyer) != Some(order.amount) {
        return Err(Error::invalid_field(
            "to_seller",
            "to_seller and to_buyer must sum exactly to the amount",
        ));
    }
    let input = Input::Resolve {
        to_seller,
        to_buyer,
    };
    act(app, request, params, &caller, Action::Resolve, input)
}
