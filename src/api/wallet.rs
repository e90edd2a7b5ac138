//! Wallets and transfers: balances, entry history, transfers and batches.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::idempotent::Keyed;
use super::{Params, auth, idempotent, json, query, respond};
use crate::app::App;
use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::ids;
use crate::ledger::money::{self, Amount};
use crate::ledger::{self, BATCH_ITEMS_MAX, MEMO_CHARS_MAX, TransferItem};
use crate::store::writer::Weight;

/// `GET /wallet`: available and held per enabled currency.
pub fn wallet(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let currencies = &app.config.currencies;
    let user_id = caller.user.id;
    let balances = app.caches.balances.get_or_load(&user_id, || {
        Ok(Arc::new(app.read(|conn| {
            ledger::balances(conn, user_id, currencies)
        })?))
    })?;
    Ok(Reply::Now(respond::wrapped(
        200,
        "balances",
        &ledger::balances_json(&balances, currencies),
    )))
}

/// `GET /wallet/entries?currency=&limit=&after=`: newest first.
pub fn entries(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    entries_of(app, request, caller.user.id)
}

/// A page of `user_id`'s entries as `{entries, next}` (also the admin's
/// `GET /admin/users/{id}/entries`).
pub(super) fn entries_of(app: &App, request: &Request, user_id: i64) -> Result<Reply> {
    let currencies = &app.config.currencies;
    let currency = query::param(request, "currency")?
        .map(|code| money::currency(currencies, "currency", &code))
        .transpose()?;
    let after = query::after_id(request)?;
    let limit = query::limit(request)?;
    let code = currency.as_ref().map(|c| c.code.as_str());
    let mut page = app.read(|conn| ledger::entries_page(conn, user_id, code, after, limit + 1))?;
    let next = query::next_cursor(&mut page, limit, |e| e.id.to_string());
    let entries: Vec<_> = page.iter().map(|e| e.view(currencies)).collect();
    Ok(Reply::Now(respond::json(
        200,
        &json!({"entries": entries, "next": next}),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
    currency: String,
    amount: String,
    memo: Option<String>,
}

impl TransferBody {
    fn parse(self, currencies: &Currencies) -> Result<TransferItem> {
        let to = ids::parse_id("to", &self.to)?;
        let currency = money::currency(currencies, "currency", &self.currency)?;
        let amount = Amount::parse("amount", &self.amount, &currency)?;
        let memo = self.memo.map(parse_memo).transpose()?;
        Ok(TransferItem {
            to,
            currency,
            amount,
            memo,
        })
    }
}

/// At most 280 characters; line breaks allowed, other control characters not.
pub fn parse_memo(memo: String) -> Result<String> {
    let chars = memo.chars().count();
    if chars > MEMO_CHARS_MAX {
        return Err(Error::invalid_field(
            "memo",
            format!("memo must be at most {MEMO_CHARS_MAX} characters, got {chars}"),
        ));
    }
    if memo.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid_field(
            "memo",
            "memo may not hold control characters other than line breaks",
        ));
    }
    Ok(memo)
}

/// The parsed form of a transfer, for idempotency fingerprints.
fn canonical(item: &TransferItem) -> serde_json::Value {
    json!([item.to, item.currency.code, item.amount.minor(), item.memo])
}

/// `POST /transfers`.
pub fn transfer(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let item = json::body::<TransferBody>(request)?.parse(&app.config.currencies)?;
    let from = caller.user.id;
    if item.to == from {
        return Err(Error::invalid_field("to", "cannot transfer to yourself"));
    }
    idempotent::write(
        app,
        request,
        Keyed::new(from, canonical(&item)),
        move |tx, now| ledger::transfer(tx, from, &item, now),
        |transfer| respond::json(201, &json!({"transfer": transfer.view()})),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    transfers: json::RawItems,
}

/// `POST /transfers/batch`: 1–1000 transfers, all or nothing.
pub fn transfer_batch(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: BatchBody = json::body(request)?;
    if body.transfers.is_empty() || body.transfers.len() > BATCH_ITEMS_MAX {
        return Err(Error::invalid_field(
            "transfers",
            format!("transfers takes 1-{BATCH_ITEMS_MAX} items"),
        ));
    }
    let from = caller.user.id;
    let items: Vec<TransferItem> = json::items::<TransferBody>(&body.transfers)?
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let item = item
                .parse(&app.config.currencies)
                .map_err(|e| e.at_index(index))?;
            if item.to == from {
                return Err(
                    Error::invalid_field("to", "cannot transfer to yourself").at_index(index)
                );
            }
            Ok(item)
        })
        .collect::<Result<_>>()?;
    let canonical = json!(items.iter().map(canonical).collect::<Vec<_>>());
    let weight = Weight::of(items.len());
    idempotent::write(
        app,
        request,
        Keyed::new(from, canonical).weighing(weight),
        move |tx, now| ledger::transfer_batch(tx, from, &items, now),
        |transfers| {
            let views: Vec<_> = transfers.iter().map(|t| t.view()).collect();
            respond::json(201, &json!({"transfers": views}))
        },
    )
}
