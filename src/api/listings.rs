//! Listing routes: create, read (anyone, for an active listing), edit
//! (seller or admin), the caller's own, and search. A listing the caller
//! may not see is 404, so a paused or closed listing's existence is not
//! revealed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::Caller;
use super::{Params, auth, json, query, respond};
use crate::app::App;
use crate::cache::search::Page as SearchPage;
use crate::cache::ttl::Ticket;
use crate::clock;
use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::ids;
use crate::ledger::money::{self, Amount, Currency};
use crate::listings::search::{self, QUERY_CHARS_MAX, Query, Sort};
use crate::listings::{
    self, Changes, Description, Listing, ListingState, ListingView, NewListing, QUANTITY_DEFAULT,
    Shown, Tag, Tags, Title,
};
use crate::store::writer::Weight;

/// `{"listing": …}`, serialized straight from the listing.
#[derive(Serialize)]
struct One<'a> {
    listing: ListingView<'a>,
}

impl One<'_> {
    fn of<'a>(listing: &'a Listing, currencies: &Currencies) -> One<'a> {
        One {
            listing: listing.view(currencies),
        }
    }
}

/// `{"listing": …}` of a listing rendered already (`Shown`).
#[derive(Serialize)]
struct Rendered<'a> {
    listing: &'a RawValue,
}

/// `{"listings": […], "next": …}`: views, or listings rendered already.
#[derive(Serialize)]
struct Many<T> {
    listings: Vec<T>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    description: Option<String>,
    currency: String,
    price: String,
    quantity: Option<serde_json::Number>,
    tags: Option<Vec<String>>,
}

/// `POST /listings`: a new active listing of the caller's.
pub fn create(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: CreateBody = json::body(request)?;
    let title = Title::parse(&body.title)?;
    let description = Description::parse(body.description.as_deref().unwrap_or(""))?;
    let currency = money::currency(&app.config.currencies, "currency", &body.currency)?;
    let price = Amount::parse("price", &body.price, &currency)?;
    let quantity = match &body.quantity {
        Some(n) => listings::parse_quantity(n)?,
        None => QUANTITY_DEFAULT,
    };
    let tags = Tags::parse(body.tags.as_deref().unwrap_or(&[]))?;
    let new = NewListing {
        seller: caller.user.id,
        title,
        description,
        currency,
        price,
        quantity,
        tags,
    };
    let now = clock::unix_seconds();
    let currencies = app.config.currencies.clone();
    Ok(app.write(
        Weight::ONE,
        move |tx| listings::create(tx, &new, now),
        move |listing| respond::json(201, &One::of(&listing, &currencies)),
    ))
}

/// The caller, if a token was sent (401 for a bad one); an anonymous call
/// counts toward its address's limit instead.
fn optional_caller(app: &App, request: &Request) -> Result<Option<Caller>> {
    if auth::bearer_token(request)?.is_some() {
        return auth::caller(app, request).map(Some);
    }
    app.anonymous_reads.count(request.client)?;
    Ok(None)
}

/// The listing `{id}` if `caller` may see it (through the listing cache);
/// else 404.
fn visible(app: &App, caller: Option<&Caller>, params: &Params) -> Result<Arc<Shown>> {
    let id = params.id()?;
    let currencies = &app.config.currencies;
    let listing = app
        .caches
        .listings
        .get_or_load_some(&id, || {
            app.read(|conn| listings::by_id(conn, id))?
                .map(|listing| Shown::of(&listing, currencies).map(Arc::new))
                .transpose()
        })?
        .ok_or(Error::NotFound)?;
    let viewer = caller.map(|c| c.user.id);
    let admin = caller.is_some_and(Caller::is_admin);
    if !listing.visible_to(viewer, admin) {
        return Err(Error::NotFound);
    }
    Ok(listing)
}

/// `GET /listings/{id}`: anyone for an active listing; the seller and
/// admins for a paused or closed one. The listing's JSON was rendered when
/// it was loaded into the cache.
pub fn get(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = optional_caller(app, request)?;
    let listing = visible(app, caller.as_ref(), params)?;
    Ok(Reply::Now(respond::json(
        200,
        &Rendered {
            listing: &listing.view,
        },
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    title: Option<String>,
    description: Option<String>,
    price: Option<String>,
    quantity: Option<serde_json::Number>,
    tags: Option<Vec<String>>,
    state: Option<String>,
}

/// `PATCH /listings/{id}`: the seller or an admin; a closed listing is 409.
/// Inputs are checked (400) before the state (409).
pub fn update(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let listing = visible(app, Some(&caller), params)?;
    if listing.seller != caller.user.id && !caller.is_admin() {
        return Err(Error::Forbidden);
    }
    let body: UpdateBody = json::body(request)?;
    // The currency never changes, so the price is read in the listing's.
    let currency = money::currency(&app.config.currencies, "currency", &listing.currency)?;
    let changes = Changes {
        title: body.title.as_deref().map(Title::parse).transpose()?,
        description: body
            .description
            .as_deref()
            .map(Description::parse)
            .transpose()?,
        price: body
            .price
            .as_deref()
            .map(|p| edited_price(app, p, &currency))
            .transpose()?,
        quantity: body
            .quantity
            .as_ref()
            .map(listings::parse_quantity)
            .transpose()?,
        tags: body.tags.as_deref().map(Tags::parse).transpose()?,
        state: body
            .state
            .as_deref()
            .map(|s| ListingState::parse("state", s))
            .transpose()?,
    };
    let (id, now) = (listing.id, clock::unix_seconds());
    let currencies = app.config.currencies.clone();
    Ok(app.write(
        Weight::ONE,
        move |tx| listings::update(tx, id, &changes, now),
        move |listing| respond::json(200, &One::of(&listing, &currencies)),
    ))
}

/// A new price, in the listing's currency. A price no enabled currency
/// takes is 400; one that only another currency takes (more decimal places
/// than this one has, or too large for it) conflicts with the listing's
/// currency, which the request cannot see or change: 409
/// `currency_mismatch`.
fn edited_price(app: &App, text: &str, currency: &Currency) -> Result<Amount> {
    let refused = match Amount::parse("price", text, currency) {
        Ok(price) => return Ok(price),
        Err(refused) => refused,
    };
    let elsewhere = app
        .config
        .currencies
        .0
        .iter()
        .any(|spec| Amount::parse("price", text, &Currency::from_spec(spec)).is_ok());
    if !elsewhere {
        return Err(refused);
    }
    Err(Error::Conflict {
        code: "currency_mismatch",
        message: format!(
            "price `{}` does not fit the listing's currency {} ({} decimal places)",
            ids::truncate(text, 40),
            currency.code,
            currency.decimals
        ),
    })
}

/// Renders a page fetched with `limit + 1` rows: the extra row only says
/// that there is a next page, whose cursor is the last shown listing's id.
fn render_page(app: &App, mut page: Vec<Listing>, limit: usize) -> Reply {
    let next = query::next_cursor(&mut page, limit, |l| l.id.to_string());
    let listings = page
        .iter()
        .map(|l| l.view(&app.config.currencies))
        .collect();
    Reply::Now(respond::json(200, &Many { listings, next }))
}

/// `GET /users/me/listings?state=&limit=&after=`: the caller's own, in any
/// state, newest first.
pub fn mine(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let state = query::param(request, "state")?
        .map(|s| ListingState::parse("state", &s))
        .transpose()?;
    let limit = query::limit(request)?;
    let after = query::after_id(request)?;
    let page =
        app.read(|conn| listings::page_own(conn, caller.user.id, state, after, limit + 1))?;
    Ok(render_page(app, page, limit))
}

/// `GET /listings?q=&seller=&currency=&tag=&min_price=&max_price=&sort=&limit=&after=`:
/// active listings only, to anyone. The page's ids come from the search
/// cache when it has them (see `cache::search`: edits invalidate it, new
/// listings may lag by up to `SEARCH_TTL`), the listings from the listing
/// cache, so quantities are always current.
pub fn search(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    optional_caller(app, request)?;
    let query = parse_query(app, request)?;
    let limit = query::limit(request)?;
    let after = query::after_id(request)?;
    let key = query.cache_key(after, limit);
    let searches = &app.caches.searches;
    if let Some((cached, generation)) = searches.get(&key)
        && let Some(page) = cached_listings(app, &cached.ids)?
        // An edit that committed while the listings were read may have
        // changed what matches: its answer may be out, so start over.
        && searches.generation() == generation
    {
        let next = cached
            .ids
            .last()
            .filter(|_| cached.more)
            .map(i64::to_string);
        return Ok(render(&page, next));
    }
    let generation = searches.generation();
    let ticket = app.caches.listings.ticket();
    let mut found = app.read(|conn| search::page(conn, &query, after, limit + 1))?;
    let next = query::next_cursor(&mut found, limit, |l| l.id.to_string());
    let page = found
        .iter()
        .map(|listing| cache_shown(app, listing, ticket))
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<i64> = page.iter().map(|l| l.id).collect();
    let more = next.is_some();
    searches.insert(key, SearchPage { ids, more }, generation);
    Ok(render(&page, next))
}

/// The listings `ids` from the listing cache, those it lacks in one read;
/// None if one is gone or no longer active (the page is then stale: an
/// edit raced this request).
fn cached_listings(app: &App, ids: &[i64]) -> Result<Option<Vec<Arc<Shown>>>> {
    let cache = &app.caches.listings;
    let mut found: Vec<Option<Arc<Shown>>> = ids.iter().map(|id| cache.get(id)).collect();
    let missing: Vec<i64> = ids
        .iter()
        .zip(&found)
        .filter(|(_, l)| l.is_none())
        .map(|(id, _)| *id)
        .collect();
    if !missing.is_empty() {
        let ticket = cache.ticket();
        let read = app.read(|conn| listings::by_ids(conn, &missing))?;
        let mut read = read.into_iter();
        for slot in found.iter_mut().filter(|l| l.is_none()) {
            if let Some(listing) = read.next().flatten() {
                *slot = Some(cache_shown(app, &listing, ticket)?);
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|l| l.filter(|l| l.state == ListingState::Active))
        .collect())
}

/// `listing` rendered, and kept in the listing cache unless an edit of it
/// came since `ticket` (taken before it was read).
fn cache_shown(app: &App, listing: &Listing, ticket: Ticket) -> Result<Arc<Shown>> {
    let shown = Arc::new(Shown::of(listing, &app.config.currencies)?);
    app.caches
        .listings
        .insert_if_unchanged(listing.id, Arc::clone(&shown), ticket);
    Ok(shown)
}

/// A page of listings and the next page's cursor.
fn render(page: &[Arc<Shown>], next: Option<String>) -> Reply {
    let listings: Vec<&RawValue> = page.iter().map(|l| &*l.view).collect();
    Reply::Now(respond::json(200, &Many { listings, next }))
}

fn parse_query(app: &App, request: &Request) -> Result<Query> {
    let q = query::param(request, "q")?.unwrap_or_default();
    if q.chars().count() > QUERY_CHARS_MAX {
        return Err(Error::invalid_field(
            "q",
            format!("q must be at most {QUERY_CHARS_MAX} characters"),
        ));
    }
    let seller = query::param(request, "seller")?
        .map(|s| ids::parse_id("seller", &s))
        .transpose()?;
    let currency = query::param(request, "currency")?
        .map(|c| money::currency(&app.config.currencies, "currency", &c))
        .transpose()?;
    let tag = query::param(request, "tag")?
        .map(|t| Tag::parse("tag", &t))
        .transpose()?;
    let sort = query::param(request, "sort")?
        .map(|s| Sort::parse(&s))
        .transpose()?;
    // A bound is a decimal in the currency's unit, so it needs one.
    let bound = |field: &str| -> Result<Option<i64>> {
        let Some(text) = query::param(request, field)? else {
            return Ok(None);
        };
        let currency = currency.as_ref().ok_or_else(|| {
            Error::invalid_field(
                field,
                format!("{field} needs currency= (prices are per currency)"),
            )
        })?;
        money::parse_units(field, &text, currency).map(Some)
    };
    let (min_price, max_price) = (bound("min_price")?, bound("max_price")?);
    Ok(Query {
        words: search::match_expression(&q),
        seller,
        currency: currency.map(|c| c.code),
        tag,
        min_price,
        max_price,
        sort,
    })
}
