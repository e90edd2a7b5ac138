//! Escrow routes. Only the parties (and admins) see or act on an escrow;
//! anyone else gets 404, so existence is not revealed.

use serde::Deserialize;
use serde_json::json;

use super::idempotent::Keyed;
use super::parties::Parties;
use super::wallet::parse_memo;
use super::{Params, auth, json, query};
use crate::app::App;
use crate::error::{Error, Result};
use crate::escrow::{
    self, Escrow, EscrowState, EscrowView, NewEscrow, RELEASE_AFTER_DEFAULT_S, RELEASE_AFTER_MAX_S,
    Role,
};
use crate::http::{Reply, Request};
use crate::ids;
use crate::ledger::money::{self, Amount};
use crate::store::WriteTx;

/// How escrow routes read and show an escrow.
static ESCROWS: Parties<Escrow, EscrowView> = Parties {
    name: "escrow",
    list: "escrows",
    by_id: escrow::by_id,
    is_party: Escrow::is_party,
    view: Escrow::view,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    seller: String,
    currency: String,
    amount: String,
    memo: Option<String>,
    release_after: Option<i64>,
}

/// `POST /escrows`: the caller buys; funds move from available to held.
pub fn create(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: CreateBody = json::body(request)?;
    let seller = ids::parse_id("seller", &body.seller)?;
    if seller == caller.user.id {
        return Err(Error::invalid_field("seller", "cannot buy from yourself"));
    }
    let currency = money::currency(&app.config.currencies, "currency", &body.currency)?;
    let amount = Amount::parse("amount", &body.amount, &currency)?;
    let memo = body.memo.map(parse_memo).transpose()?;
    let release_after_s = body.release_after.unwrap_or(RELEASE_AFTER_DEFAULT_S);
    if !(1..=RELEASE_AFTER_MAX_S).contains(&release_after_s) {
        return Err(Error::invalid_field(
            "release_after",
            format!("release_after must be 1-{RELEASE_AFTER_MAX_S} seconds"),
        ));
    }
    let new = NewEscrow {
        buyer: caller.user.id,
        seller,
        currency,
        amount,
        memo,
        release_after_s,
    };
    let canonical = json!([
        new.seller,
        new.currency.code,
        new.amount.minor(),
        new.memo,
        new.release_after_s
    ]);
    let keyed = Keyed::new(caller.user.id, canonical);
    ESCROWS.write(app, request, keyed, 201, move |tx, now| {
        escrow::create(tx, &new, now)
    })
}

/// `GET /escrows/{id}`: buyer, seller or admin.
pub fn get(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    ESCROWS.get(app, request, params)
}

/// `GET /escrows?role=buyer|seller&state=&limit=&after=`.
pub fn list(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let role = match query::param(request, "role")?.as_deref() {
        None => Role::Either,
        Some("buyer") => Role::Buyer,
        Some("seller") => Role::Seller,
        Some(_) => return Err(Error::invalid_field("role", "role must be buyer or seller")),
    };
    page(app, request, Some((caller.user.id, role)), None)
}

/// `GET /admin/escrows?state=&kind=&limit=&after=`: every escrow (or the
/// plain ones, or the orders'), newest first.
pub fn admin_list(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let origin = match query::param(request, "kind")?.as_deref() {
        None => None,
        Some("plain") => Some(escrow::Origin::Plain),
        Some("order") => Some(escrow::Origin::Order),
        Some(_) => return Err(Error::invalid_field("kind", "kind must be plain or order")),
    };
    page(app, request, None, origin)
}

/// One page of escrows in `party`'s scope (`escrow::page`), as `{escrows, next}`.
fn page(
    app: &App,
    request: &Request,
    party: Option<(i64, Role)>,
    origin: Option<escrow::Origin>,
) -> Result<Reply> {
    let state = query::param(request, "state")?
        .map(|text| EscrowState::parse("state", &text))
        .transpose()?;
    let after = query::after_id(request)?;
    let limit = query::limit(request)?;
    let mut page = app.read(|conn| escrow::page(conn, party, state, origin, after, limit + 1))?;
    let next = query::next_cursor(&mut page, limit, |e| e.id.to_string());
    Ok(ESCROWS.page(app, &page, next))
}

/// Who may take an action on an escrow besides admins.
#[derive(Clone, Copy)]
enum Actor {
    Buyer,
    Seller,
    EitherParty,
}

type Action = fn(&WriteTx<'_>, i64, i64) -> Result<Escrow>;

fn act(
    app: &App,
    request: &Request,
    params: &Params,
    actor: Actor,
    admin_may: bool,
    action: Action,
) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let escrow = ESCROWS.visible(app, &caller, params)?;
    let allowed = match actor {
        Actor::Buyer => escrow.buyer == caller.user.id,
        Actor::Seller => escrow.seller == caller.user.id,
        Actor::EitherParty => escrow.is_party(caller.user.id),
    } || (admin_may && caller.is_admin());
    if !allowed {
        return Err(Error::Forbidden);
    }
    let id = escrow.id;
    let keyed = Keyed::new(caller.user.id, json!([id]));
    ESCROWS.write(app, request, keyed, 200, move |tx, now| action(tx, id, now))
}

/// `POST /escrows/{id}/release`: buyer or admin; funds to the seller.
pub fn release(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    act(app, request, params, Actor::Buyer, true, escrow::release)
}

/// `POST /escrows/{id}/refund`: seller or admin; funds back to the buyer.
pub fn refund(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    act(app, request, params, Actor::Seller, true, escrow::refund)
}

/// `POST /escrows/{id}/dispute`: buyer or seller; stops the automatic release.
pub fn dispute(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    act(
        app,
        request,
        params,
        Actor::EitherParty,
        false,
        escrow::dispute,
    )
}

/// `POST /admin/escrows/{id}/resolve`: an admin splits a disputed escrow.
pub fn resolve(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let (caller, escrow, body) = ESCROWS.resolving(app, request, params)?;
    let currency = money::currency(&app.config.currencies, "currency", &escrow.currency)?;
    let (to_seller, to_buyer) = body.parts(&currency)?;
    let id = escrow.id;
    let keyed = Keyed::new(caller.user.id, json!([id, to_seller, to_buyer]));
    ESCROWS.write(app, request, keyed, 200, move |tx, now| {
        escrow::resolve(tx, id, to_seller, to_buyer, now)
    })
}
