//! Admin money routes: deposits, withdrawals, bulk balances, wallet
//! statistics and the ledger check.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::idempotent::Keyed;
use super::{Params, auth, idempotent, json, query, respond};
use crate::app::App;
use crate::audit;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::ids;
use crate::ledger::money::{self, Amount, Currency};
use crate::ledger::{self, Applied, External};

/// Most users in one `GET /admin/balances`: as many 19-digit ids as always
/// fit the 8 KiB request target even with every comma percent-encoded
/// (`%2C`: 22 bytes an id), with room to spare, so a request over the limit
/// gets this route's 400 rather than the HTTP layer's 414.
pub const BALANCE_USERS_MAX: usize = 350;
const _: () =
    assert!((BALANCE_USERS_MAX + 1) * 22 + 128 <= crate::limits::REQUEST_TARGET_BYTES_MAX);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalBody {
    user_id: String,
    currency: String,
    amount: String,
    reference: String,
}

/// A deposit or withdrawal as asked, before the write job gives it its time.
pub(super) struct ExternalRequest {
    pub user_id: i64,
    pub currency: Currency,
    pub amount: Amount,
    pub reference: String,
}

impl ExternalRequest {
    /// The movement, made at `now`.
    pub fn at(&self, now: i64) -> External<'_> {
        External {
            user_id: self.user_id,
            currency: &self.currency,
            amount: self.amount,
            reference: &self.reference,
            now,
        }
    }
}

impl ExternalBody {
    fn parse(self, app: &App) -> Result<ExternalRequest> {
        let user_id = ids::parse_id("user_id", &self.user_id)?;
        let currency = money::currency(&app.config.currencies, "currency", &self.currency)?;
        let amount = Amount::parse("amount", &self.amount, &currency)?;
        ledger::check_reference(&self.reference)?;
        Ok(ExternalRequest {
            user_id,
            currency,
            amount,
            reference: self.reference,
        })
    }
}

type Movement = fn(&crate::store::WriteTx<'_>, &External<'_>) -> Result<Applied<ledger::Entry>>;

fn external(app: &App, request: &Request, movement: Movement) -> Result<Reply> {
    let caller = auth::admin(app, request)?;
    let ext = json::body::<ExternalBody>(request)?.parse(app)?;
    let canonical = json!([
        ext.user_id,
        ext.currency.code,
        ext.amount.minor(),
        ext.reference
    ]);
    let currencies = app.config.currencies.clone();
    idempotent::write(
        app,
        request,
        Keyed::new(caller.user.id, canonical),
        move |tx, now| movement(tx, &ext.at(now)),
        move |applied| match applied {
            Applied::New(entry) => respond::json(201, &json!({"entry": entry.view(&currencies)})),
            Applied::Replayed(entry) => {
                respond::json(201, &json!({"entry": entry.view(&currencies)}))
                    .with_header("idempotent-replayed", "true")
            }
        },
    )
}

/// `POST /admin/deposits`: credit from outside; the reference makes it repeatable.
pub fn deposit(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    external(app, request, ledger::deposit)
}

/// `POST /admin/withdrawals`: debit to outside.
pub fn withdraw(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    external(app, request, ledger::withdraw)
}

/// `GET /admin/balances?user_ids=…&currencies=…`: one query for up to
/// `BALANCE_USERS_MAX` users.
pub fn balances(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let list = query::param(request, "user_ids")?
        .ok_or_else(|| Error::invalid_field("user_ids", "user_ids is required"))?;
    let user_ids = query::id_list("user_ids", &list, BALANCE_USERS_MAX)?;
    let all = &app.config.currencies;
    let codes: Vec<String> = match query::param(request, "currencies")? {
        None => all.0.iter().map(|c| c.code.clone()).collect(),
        Some(list) => list
            .split(',')
            .map(|code| money::currency(all, "currencies", code).map(|c| c.code))
            .collect::<Result<_>>()?,
    };
    let found = app.read(|conn| ledger::balances_of_users(conn, &user_ids, &codes))?;
    let map: BTreeMap<String, ledger::BalancesView<'_>> = found
        .iter()
        .map(|(user_id, balances)| (user_id.to_string(), ledger::balances_json(balances, all)))
        .collect();
    Ok(Reply::Now(respond::wrapped(200, "balances", &map)))
}

/// `GET /admin/stats/wallets`, cached STATS_CACHE_TIMEOUT.
pub fn stats(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let stats = app.wallet_stats.get_or_load(|| {
        app.read(|conn| {
            audit::stats::wallet_stats(conn, &app.config.currencies, clock::unix_seconds())
        })
    })?;
    Ok(Reply::Now(respond::json(200, &stats)))
}

/// `GET /admin/check`: every invariant of docs/ledger.md on one snapshot.
pub fn check(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let problems = app.read(audit::check)?;
    Ok(Reply::Now(respond::json(
        200,
        &json!({"ok": problems.is_empty(), "problems": problems}),
    )))
}
