//! The read and write shapes shared by the routes of a thing with two
//! parties (an escrow, an order): only a party or an admin sees one, anyone
//! else gets 404, and every answer is `{<name>: view}`.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{self, Caller};
use super::idempotent::{self, Keyed};
use super::{Params, json, respond};
use crate::app::App;
use crate::config::Currencies;
use crate::error::Result;
use crate::http::{Reply, Request};
use crate::ledger::money::{self, Currency};
use crate::store::WriteTx;

/// How the routes read and show one kind of thing with two parties.
pub struct Parties<T, V> {
    /// The key of the thing in every answer (`{"escrow": …}`).
    pub name: &'static str,
    /// The key of a page of them (`{"escrows": […], "next": …}`).
    pub list: &'static str,
    pub by_id: fn(&Connection, i64) -> Result<Option<T>>,
    pub is_party: fn(&T, i64) -> bool,
    pub view: fn(&T, &Currencies) -> V,
}

impl<T: Send + 'static, V: Serialize> Parties<T, V> {
    /// The one with the route's id if the caller may see it (a party or an
    /// admin); else 404.
    pub fn visible(&self, app: &App, caller: &Caller, params: &Params) -> Result<T> {
        let id = params.id()?;
        let found = app.read(|conn| (self.by_id)(conn, id))?;
        auth::party_or_admin(caller, found, self.is_party)
    }

    /// `GET /…/{id}`: 200 `{<name>: view}` for a party or an admin.
    pub fn get(&self, app: &App, request: &Request, params: &Params) -> Result<Reply> {
        let caller = auth::caller(app, request)?;
        let found = self.visible(app, &caller, params)?;
        Ok(Reply::Now(self.render(200, &found, &app.config.currencies)))
    }

    /// `idempotent::write` of `work`, answering `status` `{<name>: view}`
    /// with the one it wrote.
    pub fn write<W>(
        &'static self,
        app: &App,
        request: &Request,
        keyed: Keyed,
        status: u16,
        work: W,
    ) -> Result<Reply>
    where
        W: Fn(&WriteTx<'_>, i64) -> Result<T> + Send + 'static,
    {
        let currencies = app.config.currencies.clone();
        idempotent::write(app, request, keyed, work, move |written| {
            self.render(status, &written, &currencies)
        })
    }

    /// What an admin's resolve route starts from: the caller (an admin,
    /// else 401/403), the one with the route's id (else 404), and the split
    /// the body asks for (else 400), checked in that order.
    pub fn resolving(
        &self,
        app: &App,
        request: &Request,
        params: &Params,
    ) -> Result<(Caller, T, Resolution)> {
        let caller = auth::admin(app, request)?;
        let found = self.visible(app, &caller, params)?;
        let body: Resolution = json::body(request)?;
        Ok((caller, found, body))
    }

    /// 200 `{<list>: [view…], next}`: one page, and the cursor of the next.
    pub fn page(&self, app: &App, page: &[T], next: Option<String>) -> Reply {
        let views: Vec<_> = page
            .iter()
            .map(|found| (self.view)(found, &app.config.currencies))
            .collect();
        Reply::Now(respond::json(
            200,
            &json!({ self.list: views, "next": next }),
        ))
    }

    fn render(&self, status: u16, found: &T, currencies: &Currencies) -> crate::http::Response {
        // Through a JSON value, as the other answers: its keys come out sorted.
        respond::json(
            status,
            &json!({ self.name: (self.view)(found, currencies) }),
        )
    }
}

/// An admin's split of a disputed one: `{to_seller, to_buyer}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    to_seller: String,
    to_buyer: String,
}

impl Resolution {
    /// The two parts in minor units of `currency`. Zero is a valid part:
    /// everything to one side.
    pub fn parts(&self, currency: &Currency) -> Result<(i64, i64)> {
        let part = |field: &str, text: &str| money::parse_units(field, text, currency);
        Ok((
            part("to_seller", &self.to_seller)?,
            part("to_buyer", &self.to_buyer)?,
        ))
    }
}
