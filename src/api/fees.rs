//! Platform fee routes (admin): what orders paid the platform per currency,
//! and taking fees out to the outside world.

use serde::Deserialize;
use serde_json::json;

use super::admin_ledger::ExternalRequest;
use super::idempotent::Keyed;
use super::{Params, auth, idempotent, json, respond};
use crate::app::App;
use crate::clock;
use crate::error::Result;
use crate::http::{Reply, Request};
use crate::ledger::money::{self, Amount, format_minor};
use crate::ledger::{self, PLATFORM};
use crate::orders::fees;

/// `GET /admin/fees`: {fees: {CUR: {balance, collected, withdrawn}}} for
/// every enabled currency.
pub fn summary(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let currencies = &app.config.currencies;
    let fees = app.read(|conn| fees::summary(conn, currencies))?;
    Ok(Reply::Now(respond::json(
        200,
        &json!({"fees": fees::summary_json(&fees, currencies)}),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawalBody {
    currency: String,
    amount: String,
    reference: String,
}

/// `POST /admin/fees/withdrawals` {currency, amount, reference}: 201
/// {withdrawal}; a reference already used by a withdrawal in the currency
/// is 409 `duplicate_reference`.
pub fn withdraw(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::admin(app, request)?;
    let body: WithdrawalBody = json::body(request)?;
    let currency = money::currency(&app.config.currencies, "currency", &body.currency)?;
    let amount = Amount::parse("amount", &body.amount, &currency)?;
    ledger::check_reference(&body.reference)?;
    let canonical = json!([currency.code, amount.minor(), body.reference]);
    let decimals = currency.decimals;
    let ext = ExternalRequest {
        user_id: PLATFORM,
        currency,
        amount,
        reference: body.reference,
    };
    idempotent::write(
        app,
        request,
        Keyed::new(caller.user.id, canonical),
        move |tx, now| fees::withdraw(tx, &ext.at(now)),
        move |entry| {
            let withdrawal = json!({
                "id": entry.id.to_string(),
                "currency": entry.currency,
                "amount": format_minor(i128::from(entry.amount), decimals),
                "reference": entry.reference,
                "created_at": clock::rfc3339(entry.created_at),
            });
            respond::json(201, &json!({"withdrawal": withdrawal}))
        },
    )
}
