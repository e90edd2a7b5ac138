//! Wallets and the ledger (docs/api.md: money, idempotency, "Wallets";
//! docs/ledger.md: invariants): exact amounts, transfers and batches that apply
//! fully or not at all, idempotency keys under retries and races, balances
//! that never go negative under concurrency, conservation under a seeded
//! random load, entry paging, and the admin views of balances and totals.

use std::collections::{BTreeMap, HashSet};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::{
    Member, World, open_db, quick_user, request, request_raw_headers, send_json, world,
};
use crate::helpers::{Client, HttpResponse};
use crate::seeded::{Rng, test_seed};

const BTC: u32 = 8;
const XMR: u32 = 12;

// ---- local helpers ---------------------------------------------------------

fn decimals(currency: &str) -> u32 {
    match currency {
        "btc" => BTC,
        "xmr" => XMR,
        other => panic!("no such test currency {other}"),
    }
}

/// Minor units of a decimal string as the server renders it (the test's own
/// exact parser: a sign, digits, at most `decimals` places).
fn minor(text: &str, decimals: u32) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        fraction.len() <= decimals as usize,
        "{text:?} has more than {decimals} places"
    );
    let padded = format!("{fraction:0<width$}", width = decimals as usize);
    let value: i128 = format!("{whole}{padded}")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a decimal amount"));
    if negative { -value } else { value }
}

/// Minor units as the server must render them: exactly `decimals` places.
fn major(minor: i128, decimals: u32) -> String {
    let scale = 10i128.pow(decimals);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

fn transfer(w: &World, from: &Member, to: &str, currency: &str, amount: &str) -> HttpResponse {
    w.post(
        "/api/v1/transfers",
        Some(&from.token),
        &json!({"to": to, "currency": currency, "amount": amount}),
    )
}

fn deposit_ref(
    w: &World,
    admin: &Member,
    user: &Member,
    currency: &str,
    amount: &str,
    reference: &str,
) -> HttpResponse {
    w.post(
        "/api/v1/admin/deposits",
        Some(&admin.token),
        &json!({"user_id": user.id, "currency": currency, "amount": amount, "reference": reference}),
    )
}

fn withdraw_ref(
    w: &World,
    admin: &Member,
    user: &Member,
    currency: &str,
    amount: &str,
    reference: &str,
) -> HttpResponse {
    w.post(
        "/api/v1/admin/withdrawals",
        Some(&admin.token),
        &json!({"user_id": user.id, "currency": currency, "amount": amount, "reference": reference}),
    )
}

/// Every entry of `member` (optionally of one currency), newest first, by
/// following `next` with pages of `limit`; panics on a repeated entry.
fn entries_paged(
    w: &World,
    member: &Member,
    currency: Option<&str>,
    limit: usize,
) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/wallet/entries?limit={limit}");
        if let Some(currency) = currency {
            path.push_str(&format!("&currency={currency}"));
        }
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let response = w.get(&path, &member.token);
        assert_eq!(response.status, 200, "{path}: {}", response.body_text());
        let body = response.json();
        let page = body["entries"]
            .as_array()
            .expect("entries is an array")
            .clone();
        assert!(
            page.len() <= limit,
            "{path}: {} entries on a page of {limit}",
            page.len()
        );
        pages += 1;
        out.extend(page);
        match &body["next"] {
            Value::Null => break,
            Value::String(next) => after = Some(next.clone()),
            other => panic!("next is a string or null, got {other}"),
        }
        assert!(pages <= 1000, "paging does not end");
    }
    let ids: HashSet<&str> = out
        .iter()
        .map(|e| e["id"].as_str().expect("an entry id"))
        .collect();
    assert_eq!(
        ids.len(),
        out.len(),
        "an entry came twice while paging: {out:?}"
    );
    (out, pages)
}

fn all_entries(w: &World, member: &Member) -> Vec<Value> {
    entries_paged(w, member, None, 100).0
}

/// What a member can see of the ledger: balances and every entry.
fn ledger_view(w: &World, members: &[&Member]) -> Vec<Value> {
    members
        .iter()
        .map(|m| {
            let wallet = w.get("/api/v1/wallet", &m.token);
            assert_eq!(wallet.status, 200);
            json!({"wallet": wallet.json(), "entries": all_entries(w, m)})
        })
        .collect()
}

fn wallet_stats(w: &World, admin: &Member) -> Value {
    let response = w.get("/api/v1/admin/stats/wallets", &admin.token);
    assert_eq!(response.status, 200, "{}", response.body_text());
    response.json()
}

fn admin_balances(
    w: &World,
    admin: &Member,
    ids: &[&str],
    currencies: Option<&str>,
) -> HttpResponse {
    let mut path = format!("/api/v1/admin/balances?user_ids={}", ids.join(","));
    if let Some(currencies) = currencies {
        path.push_str(&format!("&currencies={currencies}"));
    }
    w.get(&path, &admin.token)
}

/// An amount as a client may write it: sometimes with trailing zeros cut.
fn render_amount(rng: &mut Rng, minor: i128, decimals: u32) -> String {
    let full = major(minor, decimals);
    if rng.below(2) == 0 {
        return full;
    }
    let trimmed = full.trim_end_matches('0');
    trimmed.strip_suffix('.').unwrap_or(trimmed).to_owned()
}

// ---- amounts, transfers and entries ----------------------------------------

#[test]
fn a_deposit_then_a_transfer_shows_exact_balances_and_both_entry_lists() {
    let w = world();
    let admin = w.admin("wal_admin1");
    let alice = w.member("wal_alice1");
    let bob = w.member("wal_bob1");
    deposits_show_exact_amounts(&w, &admin, &alice, &bob);
    transfers_show_exact_amounts(&w, &alice, &bob);
    both_entry_lists_are_newest_first(&w, &alice, &bob);
    assert!(w.check(&admin).is_empty());
}

/// Alice's btc and xmr deposits, to the last place of each currency; bob's
/// never used currencies show as zeros.
fn deposits_show_exact_amounts(w: &World, admin: &Member, alice: &Member, bob: &Member) {
    let response = deposit_ref(w, admin, alice, "btc", "1.5", "tx-btc-1");
    assert_eq!(response.status, 201, "{}", response.body_text());
    let entry = &response.json()["entry"];
    assert_eq!(entry["amount"], "1.50000000", "{entry}");
    assert_eq!(entry["kind"], "deposit");
    assert_eq!(entry["direction"], "in");
    assert_eq!(entry["currency"], "btc");
    let response = deposit_ref(w, admin, alice, "xmr", "0.000000000001", "tx-xmr-1");
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert_eq!(response.json()["entry"]["amount"], "0.000000000001");

    assert_eq!(
        w.balance(alice, "btc"),
        ("1.50000000".into(), "0.00000000".into())
    );
    assert_eq!(
        w.balance(alice, "xmr"),
        ("0.000000000001".into(), "0.000000000000".into())
    );
    assert_eq!(
        w.balance(bob, "btc"),
        ("0.00000000".into(), "0.00000000".into())
    );
    assert_eq!(
        w.balance(bob, "xmr"),
        ("0.000000000000".into(), "0.000000000000".into()),
        "never used currencies show as zeros"
    );
}

/// Alice sends bob the smallest amount of each currency.
fn transfers_show_exact_amounts(w: &World, alice: &Member, bob: &Member) {
    let response = w.post(
        "/api/v1/transfers",
        Some(&alice.token),
        &json!({"to": bob.id, "currency": "btc", "amount": "0.00000001", "memo": "for the coffee ☕"}),
    );
    assert_eq!(response.status, 201, "{}", response.body_text());
    let t = &response.json()["transfer"];
    assert!(t["id"].as_str().is_some_and(|id| !id.is_empty()), "{t}");
    assert_eq!(t["from"], alice.id.as_str());
    assert_eq!(t["to"], bob.id.as_str());
    assert_eq!(t["currency"], "btc");
    assert_eq!(t["amount"], "0.00000001");
    assert_eq!(t["memo"], "for the coffee ☕");
    assert!(
        t["created_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{t}"
    );

    let response = transfer(w, alice, &bob.id, "xmr", "0.000000000001");
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert_eq!(response.json()["transfer"]["amount"], "0.000000000001");
    assert_eq!(response.json()["transfer"]["memo"], Value::Null);

    assert_eq!(
        w.balance(alice, "btc"),
        ("1.49999999".into(), "0.00000000".into())
    );
    assert_eq!(
        w.balance(alice, "xmr"),
        ("0.000000000000".into(), "0.000000000000".into())
    );
    assert_eq!(
        w.balance(bob, "btc"),
        ("0.00000001".into(), "0.00000000".into())
    );
    assert_eq!(
        w.balance(bob, "xmr"),
        ("0.000000000001".into(), "0.000000000000".into())
    );
}

/// Both sides' entries, newest first, with numeric ids and UTC times.
fn both_entry_lists_are_newest_first(w: &World, alice: &Member, bob: &Member) {
    let shape = |e: &Value| {
        json!([
            e["kind"],
            e["direction"],
            e["currency"],
            e["amount"],
            e["counterparty"],
            e["memo"],
            e["escrow_id"]
        ])
    };
    let coffee = "for the coffee ☕";
    let alice_entries = all_entries(w, alice);
    let got: Vec<Value> = alice_entries.iter().map(shape).collect();
    #[rustfmt::skip]
    let want = vec![
        json!(["transfer", "out", "xmr", "0.000000000001", bob.id, null, null]),
        json!(["transfer", "out", "btc", "0.00000001", bob.id, coffee, null]),
        json!(["deposit", "in", "xmr", "0.000000000001", null, null, null]),
        json!(["deposit", "in", "btc", "1.50000000", null, null, null]),
    ];
    assert_eq!(got, want, "alice's entries, newest first");
    let bob_entries = all_entries(w, bob);
    let got: Vec<Value> = bob_entries.iter().map(shape).collect();
    #[rustfmt::skip]
    let want = vec![
        json!(["transfer", "in", "xmr", "0.000000000001", alice.id, null, null]),
        json!(["transfer", "in", "btc", "0.00000001", alice.id, coffee, null]),
    ];
    assert_eq!(got, want, "bob's entries, newest first");
    for e in alice_entries.iter().chain(&bob_entries) {
        assert!(
            e["id"]
                .as_str()
                .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit())),
            "{e}"
        );
        assert!(
            e["created_at"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{e}"
        );
    }
}

#[test]
fn bad_transfers_get_a_clear_error_and_change_nothing() {
    let w = world();
    let admin = w.admin("wal_admin2");
    let alice = w.member("wal_alice2");
    let bob = w.member("wal_bob2");
    w.deposit(&admin, &alice, "btc", "1");
    w.deposit(&admin, &alice, "xmr", "1");
    let before = ledger_view(&w, &[&alice, &bob]);

    for (what, body, status, code, field) in bad_transfer_cases(&alice, &bob) {
        let response = w.post("/api/v1/transfers", Some(&alice.token), &body);
        let error = response.assert_error(status, code);
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{what}: {error}");
        }
        assert_eq!(
            error.get("index"),
            None,
            "{what}: a single transfer has no index"
        );
    }
    // Wrong types and shapes: 400, either code.
    for (what, body) in badly_shaped_transfers(&bob) {
        let response = w.post("/api/v1/transfers", Some(&alice.token), &body);
        assert_eq!(response.status, 400, "{what}: {}", response.body_text());
        let error = response.error();
        assert!(
            error["code"] == "invalid_field" || error["code"] == "invalid_json",
            "{what}: {error}"
        );
    }
    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.1"});
    let response = w.post("/api/v1/transfers", None, &body);
    response.assert_error(401, "unauthenticated");

    assert_eq!(
        ledger_view(&w, &[&alice, &bob]),
        before,
        "a refused transfer changed the ledger"
    );
    assert!(w.check(&admin).is_empty());
}

/// A transfer from alice (1 btc, 1 xmr) to bob of 0.1 btc, with `key` set
/// to `value`.
fn transfer_with(bob: &Member, key: &str, value: Value) -> Value {
    let mut body = json!({"to": bob.id, "currency": "btc", "amount": "0.1"});
    body[key] = value;
    body
}

/// Transfers from alice refused with a status, a code and (for a 400) the
/// field at fault: (what, body, status, code, field).
#[rustfmt::skip]
fn bad_transfer_cases(
    alice: &Member,
    bob: &Member,
) -> Vec<(&'static str, Value, u16, &'static str, Option<&'static str>)> {
    let amount = |amount: &str| transfer_with(bob, "amount", json!(amount));
    let with = |key: &str, value: Value| transfer_with(bob, key, value);
    let amount_field = Some("amount");
    vec![
        ("more than available",     amount("1.00000001"), 409, "insufficient_funds", None),
        ("far more than available", amount("21000000"),   409, "insufficient_funds", None),
        ("to oneself",              with("to", json!(alice.id)), 400, "invalid_field", Some("to")),
        ("zero",                    amount("0"),           400, "invalid_field", amount_field),
        ("zero with places",        amount("0.00000000"),  400, "invalid_field", amount_field),
        ("negative",                amount("-1"),          400, "invalid_field", amount_field),
        ("exponent",                amount("1e3"),         400, "invalid_field", amount_field),
        ("too many places",         amount("0.000000001"), 400, "invalid_field", amount_field),
        ("spaces",                  amount(" 0.1"),        400, "invalid_field", amount_field),
        ("empty",                   amount(""),            400, "invalid_field", amount_field),
        ("past i64",                amount("92233720368.54775808"), 400, "invalid_field", amount_field),
        (
            "past i64 in xmr",
            json!({"to": bob.id, "currency": "xmr", "amount": "9223372.036854775808"}),
            400, "invalid_field", amount_field,
        ),
        ("unknown currency",        with("currency", json!("doge")), 400, "invalid_field", Some("currency")),
        ("upper-case currency",     with("currency", json!("BTC")),  400, "invalid_field", Some("currency")),
        ("not an id",               with("to", json!("bob")),        400, "invalid_field", Some("to")),
        ("unknown recipient",       with("to", json!("1234567")),    404, "not_found", None),
        ("memo too long",           with("memo", json!("m".repeat(281))), 400, "invalid_field", Some("memo")),
    ]
}

/// Transfers of the wrong types or shape: (what, body).
fn badly_shaped_transfers(bob: &Member) -> Vec<(&'static str, Value)> {
    let with = |key: &str, value: Value| transfer_with(bob, key, value);
    let without = |key: &str| {
        let mut body = transfer_with(bob, "amount", json!("0.1"));
        body.as_object_mut().expect("an object").remove(key);
        body
    };
    vec![
        ("a number for the amount", with("amount", json!(1))),
        ("a float for the amount", with("amount", json!(0.1))),
        ("a number for the recipient", with("to", json!(12345))),
        ("no amount", without("amount")),
        ("no recipient", without("to")),
        ("no currency", without("currency")),
        ("an unknown field", with("fee", json!("0.1"))),
        ("not an object", json!(["0.1"])),
    ]
}

// ---- batches ---------------------------------------------------------------

fn batch(w: &World, from: &Member, items: Value) -> HttpResponse {
    w.post(
        "/api/v1/transfers/batch",
        Some(&from.token),
        &json!({"transfers": items}),
    )
}

#[test]
fn a_batch_with_one_bad_item_applies_nothing_and_names_the_index() {
    let w = world();
    let admin = w.admin("wal_admin3");
    let alice = w.member("wal_alice3");
    let bob = w.member("wal_bob3");
    w.deposit(&admin, &alice, "btc", "1");
    w.deposit(&admin, &alice, "xmr", "1");
    let before = ledger_view(&w, &[&alice, &bob]);
    for (what, items, status, code, index) in bad_batch_cases(&alice, &bob) {
        let response = batch(&w, &alice, items);
        let error = response.assert_error(status, code);
        assert_eq!(error["index"], json!(index), "{what}: {error}");
        assert_eq!(
            ledger_view(&w, &[&alice, &bob]),
            before,
            "{what}: a refused batch changed the ledger"
        );
    }
    for (what, items) in [
        ("no items", json!([])),
        (
            "1001 items",
            Value::Array(vec![batch_item(&bob.id, "btc", "0.00000001"); 1001]),
        ),
    ] {
        let response = batch(&w, &alice, items);
        assert_eq!(response.status, 400, "{what}: {}", response.body_text());
        response.error();
    }
    let response = w.post("/api/v1/transfers/batch", Some(&alice.token), &json!({}));
    assert_eq!(
        response.status,
        400,
        "no transfers field: {}",
        response.body_text()
    );
    assert_eq!(
        ledger_view(&w, &[&alice, &bob]),
        before,
        "a refused batch changed the ledger"
    );
    assert!(w.check(&admin).is_empty());
}

/// One item of a batch transfer.
fn batch_item(to: &str, currency: &str, amount: &str) -> Value {
    json!({"to": to, "currency": currency, "amount": amount})
}

/// Batches from alice (1 btc, 1 xmr) refused because of one item:
/// (what, items, status, code, index of the item).
#[rustfmt::skip]
fn bad_batch_cases(
    alice: &Member,
    bob: &Member,
) -> Vec<(&'static str, Value, u16, &'static str, usize)> {
    let btc = |amount: &str| batch_item(&bob.id, "btc", amount);
    let xmr = |amount: &str| batch_item(&bob.id, "xmr", amount);
    let (invalid, poor) = ("invalid_field", "insufficient_funds");
    vec![
        ("item 2 has an unknown recipient", json!([btc("0.1"), xmr("0.1"), batch_item("7777777", "btc", "0.1")]), 404, "not_found", 2),
        ("item 1 has an unknown recipient", json!([btc("0.1"), batch_item("7777777", "btc", "0.1")]), 404, "not_found", 1),
        ("item 0 alone is unaffordable", json!([btc("1.5"), xmr("0.1")]), 409, poor, 0),
        ("the btc items together pass the balance at item 2", json!([btc("0.6"), xmr("0.3"), btc("0.6")]), 409, poor, 2),
        ("the xmr item is unaffordable after a good btc item", json!([btc("0.5"), xmr("1.000000000001")]), 409, poor, 1),
        ("item 1 goes to the sender", json!([btc("0.1"), batch_item(&alice.id, "btc", "0.1")]), 400, invalid, 1),
        ("item 3 has a bad amount", json!([btc("0.1"), btc("0.1"), btc("0.1"), btc("1e3")]), 400, invalid, 3),
        ("item 1 has an unknown currency", json!([btc("0.1"), batch_item(&bob.id, "doge", "0.1")]), 400, invalid, 1),
    ]
}

/// `POST path` with these exact body bytes, as `from`.
fn post_raw_body(w: &World, path: &str, from: &Member, body: &str) -> HttpResponse {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         authorization: Bearer {}\r\ncontent-length: {}\r\n\r\n{body}",
        from.token,
        body.len()
    );
    let mut client = Client::connect(w.app.addr);
    client.send(request.as_bytes());
    client.read_response()
}

const BATCH_PATH: &str = "/api/v1/transfers/batch";

/// A request from alice refused because of what it holds, and what its error
/// must say: `code` `None` takes any code, `index` `None` means the error
/// must carry no index, `field` `None` leaves the field unchecked.
struct IndexCase {
    what: String,
    path: &'static str,
    /// The exact body bytes (some cases are not one JSON value's rendering).
    body: String,
    status: u16,
    code: Option<&'static str>,
    index: Option<u64>,
    field: Option<&'static str>,
}

impl IndexCase {
    /// A batch of `items` whose error names item `index`.
    fn batch(what: impl Into<String>, items: Value, status: u16, index: u64) -> IndexCase {
        IndexCase {
            what: what.into(),
            path: BATCH_PATH,
            body: json!({ "transfers": items }).to_string(),
            status,
            code: None,
            index: Some(index),
            field: None,
        }
    }

    fn code(self, code: &'static str) -> IndexCase {
        IndexCase {
            code: Some(code),
            ..self
        }
    }

    /// Sends the case as `from` and checks its answer, naming the case.
    fn check(&self, w: &World, from: &Member) {
        let response = post_raw_body(w, self.path, from, &self.body);
        let what = &self.what;
        assert_eq!(
            response.status,
            self.status,
            "{what}: {}",
            response.body_text()
        );
        let error = match self.code {
            Some(code) => response.assert_error(self.status, code),
            None => response.error(),
        };
        match self.index {
            Some(index) => assert_eq!(error["index"], index, "{what}: {error}"),
            None => assert_eq!(error.get("index"), None, "{what}: {error}"),
        }
        if let Some(field) = self.field {
            assert_eq!(error["field"], field, "{what}: {error}");
        }
    }
}

/// An item to bob of `amount` btc, the amount any JSON value.
fn btc_to(bob: &Member, amount: Value) -> Value {
    json!({"to": bob.id, "currency": "btc", "amount": amount})
}

/// An amount of the wrong JSON type in item 1: invalid_field naming the
/// index and the field (issue 12: the index was missing).
fn wrong_amount_type_cases(bob: &Member) -> Vec<IndexCase> {
    let good = btc_to(bob, json!("0.1"));
    [
        json!(1),
        json!(1.5),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
    ]
    .into_iter()
    .map(|amount| IndexCase {
        field: Some("amount"),
        ..IndexCase::batch(
            format!("amount {amount}"),
            json!([good, btc_to(bob, amount)]),
            400,
            1,
        )
        .code("invalid_field")
    })
    .collect()
}

/// Other malformed items: 400 (either code), always with the index.
fn malformed_item_cases(bob: &Member) -> Vec<IndexCase> {
    let good = btc_to(bob, json!("0.1"));
    let mut wrong_to = good.clone();
    wrong_to["to"] = json!(12345);
    let mut unknown_field = good.clone();
    unknown_field["fee"] = json!("0.1");
    let mut no_amount = good.clone();
    no_amount
        .as_object_mut()
        .expect("an object")
        .remove("amount");
    let as_array = json!([bob.id, "btc", "0.1", null]);
    let mut cases: Vec<IndexCase> = [
        ("a number for the recipient", wrong_to),
        ("an unknown field", unknown_field),
        ("no amount", no_amount),
        ("a number, not an item", json!(5)),
        ("a string, not an item", json!("0.1")),
        ("null, not an item", json!(null)),
        ("the fields as an array", as_array),
    ]
    .into_iter()
    .map(|(what, item)| IndexCase::batch(what, json!([good, good, item]), 400, 2))
    .collect();
    let duplicate = format!(
        r#"{{"transfers":[{good},{{"to":"{0}","currency":"btc","amount":"0.1","amount":"0.2"}}]}}"#,
        bob.id
    );
    cases.push(IndexCase {
        body: duplicate,
        ..IndexCase::batch("a duplicate key", json!(null), 400, 1)
    });
    cases
}

/// A batch of one item is still a batch: its errors name index 0.
fn one_item_cases(alice: &Member, bob: &Member) -> Vec<IndexCase> {
    let to = |to: &str, amount: &str| json!({"to": to, "currency": "btc", "amount": amount});
    [
        (
            "an unknown recipient",
            to("7777777", "0.1"),
            404,
            "not_found",
        ),
        ("the sender", to(&alice.id, "0.1"), 400, "invalid_field"),
        ("too much", to(&bob.id, "2"), 409, "insufficient_funds"),
        (
            "a number amount",
            btc_to(bob, json!(1)),
            400,
            "invalid_field",
        ),
    ]
    .into_iter()
    .map(|(what, item, status, code)| IndexCase::batch(what, json!([item]), status, 0).code(code))
    .collect()
}

/// Errors of the body as a whole name no item, and a single transfer is no
/// batch: no index there.
fn no_index_cases(bob: &Member) -> Vec<IndexCase> {
    let whole_body = [
        json!({"transfers": "all"}),
        json!({"transfers": []}),
        json!({}),
    ]
    .into_iter()
    .map(|body| IndexCase {
        what: body.to_string(),
        path: BATCH_PATH,
        body: body.to_string(),
        status: 400,
        code: None,
        index: None,
        field: None,
    });
    let single = [
        (
            json!({"to": "7777777", "currency": "btc", "amount": "0.1"}),
            404,
            "not_found",
        ),
        (btc_to(bob, json!(1)), 400, "invalid_field"),
    ]
    .into_iter()
    .map(|(body, status, code)| IndexCase {
        what: format!("a single transfer {body}"),
        path: "/api/v1/transfers",
        body: body.to_string(),
        status,
        code: Some(code),
        index: None,
        field: None,
    });
    whole_body.chain(single).collect()
}

#[test]
fn every_error_caused_by_one_batch_item_names_its_index() {
    // Issue 12: an amount of the wrong JSON type got 400 with field
    // "transfers[1].amount" but no index, and a one-item batch to an unknown
    // user got 404 with no index.
    let w = world();
    let admin = quick_user(&w.db, "wal_admin16", true);
    let alice = quick_user(&w.db, "wal_alice16", false);
    let bob = quick_user(&w.db, "wal_bob16", false);
    w.deposit(&admin, &alice, "btc", "1");
    let before = ledger_view(&w, &[&alice, &bob]);
    let cases = [
        wrong_amount_type_cases(&bob),
        malformed_item_cases(&bob),
        one_item_cases(&alice, &bob),
        no_index_cases(&bob),
    ];
    for case in cases.iter().flatten() {
        case.check(&w, &alice);
    }
    assert_eq!(
        ledger_view(&w, &[&alice, &bob]),
        before,
        "a refused request changed the ledger"
    );
    assert!(w.check(&admin).is_empty());
}

/// The answer to the good batch: its five transfers in the order asked,
/// each its own transfer.
fn assert_transfers_in_order(
    response: &HttpResponse,
    alice: &Member,
    bob: &Member,
    carol: &Member,
) {
    let transfers = response.json()["transfers"]
        .as_array()
        .expect("transfers")
        .clone();
    let got: Vec<Value> = transfers
        .iter()
        .map(|t| json!([t["from"], t["to"], t["currency"], t["amount"], t["memo"]]))
        .collect();
    assert_eq!(
        got,
        vec![
            json!([alice.id, bob.id, "btc", "0.25000000", "b1"]),
            json!([alice.id, carol.id, "xmr", "0.500000000000", "c1"]),
            json!([alice.id, bob.id, "xmr", "0.000000000001", "b2"]),
            json!([alice.id, carol.id, "btc", "0.75000000", "c2"]),
            json!([alice.id, bob.id, "btc", "0.00000001", null]),
        ],
        "the transfers in the order asked"
    );
    let ids: HashSet<&str> = transfers.iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(
        ids.len(),
        5,
        "every item is its own transfer: {transfers:?}"
    );
}

#[test]
fn a_good_batch_across_currencies_is_applied_in_full() {
    let w = world();
    let admin = w.admin("wal_admin4");
    let alice = w.member("wal_alice4");
    let bob = w.member("wal_bob4");
    let carol = w.member("wal_carol4");
    w.deposit(&admin, &alice, "btc", "1.5");
    w.deposit(&admin, &alice, "xmr", "2");

    let items = json!([
        {"to": bob.id, "currency": "btc", "amount": "0.25", "memo": "b1"},
        {"to": carol.id, "currency": "xmr", "amount": "0.5", "memo": "c1"},
        {"to": bob.id, "currency": "xmr", "amount": "0.000000000001", "memo": "b2"},
        {"to": carol.id, "currency": "btc", "amount": "0.75", "memo": "c2"},
        {"to": bob.id, "currency": "btc", "amount": "0.00000001"},
    ]);
    let response = batch(&w, &alice, items);
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert_transfers_in_order(&response, &alice, &bob, &carol);
    // (who, currency, available); nothing is held.
    #[rustfmt::skip]
    let balances = [
        (&alice, "btc", "0.49999999"), (&alice, "xmr", "1.499999999999"),
        (&bob, "btc", "0.25000001"), (&bob, "xmr", "0.000000000001"),
        (&carol, "btc", "0.75000000"), (&carol, "xmr", "0.500000000000"),
    ];
    for (who, currency, available) in balances {
        let held = if currency == "btc" {
            "0.00000000"
        } else {
            "0.000000000000"
        };
        assert_eq!(
            w.balance(who, currency),
            (available.to_owned(), held.to_owned()),
            "{} {currency}",
            who.id
        );
    }
    let alice_out: Vec<Value> = all_entries(&w, &alice)
        .into_iter()
        .filter(|e| e["kind"] == "transfer")
        .map(|e| {
            json!([
                e["direction"],
                e["counterparty"],
                e["currency"],
                e["amount"]
            ])
        })
        .collect();
    assert_eq!(alice_out.len(), 5, "{alice_out:?}");
    assert!(alice_out.iter().all(|e| e[0] == "out"), "{alice_out:?}");
    assert_eq!(all_entries(&w, &bob).len(), 3);
    assert_eq!(all_entries(&w, &carol).len(), 2);
    assert!(w.check(&admin).is_empty());
}

// ---- idempotency -----------------------------------------------------------

fn keyed_transfer(w: &World, from: &Member, key: &str, body: &Value) -> HttpResponse {
    w.post_with(
        "/api/v1/transfers",
        Some(&from.token),
        body,
        &[("Idempotency-Key", key)],
    )
}

fn replayed(response: &HttpResponse) -> bool {
    response.header("idempotent-replayed") == Some("true")
}

#[test]
fn ten_retries_with_one_idempotency_key_apply_once_and_answer_identically() {
    let w = world();
    let admin = w.admin("wal_admin5");
    let alice = w.member("wal_alice5");
    let bob = w.member("wal_bob5");
    let carol = w.member("wal_carol5");
    w.deposit(&admin, &alice, "btc", "1");
    w.deposit(&admin, &carol, "btc", "1");
    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.1", "memo": "once"});

    let responses: Vec<HttpResponse> = (0..10)
        .map(|_| keyed_transfer(&w, &alice, "order-17", &body))
        .collect();
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 201, "try {i}: {}", response.body_text());
        assert_eq!(
            response.body, responses[0].body,
            "try {i} answers like the first"
        );
        assert_eq!(replayed(response), i > 0, "try {i}: {:?}", response.headers);
    }
    assert_eq!(w.balance(&alice, "btc").0, "0.90000000");
    assert_eq!(w.balance(&bob, "btc").0, "0.10000000");
    assert_eq!(all_entries(&w, &bob).len(), 1, "one transfer, not ten");

    // The same request written differently is the same request.
    let same = json!({"amount": "0.10000000", "memo": "once", "currency": "btc", "to": bob.id});
    let response = keyed_transfer(&w, &alice, "order-17", &same);
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert!(replayed(&response));
    assert_eq!(response.body, responses[0].body);

    a_different_request_under_the_key_is_refused(&w, [&alice, &bob, &carol], &body);
    // Keys are per caller: carol's "order-17" is her own.
    let response = keyed_transfer(&w, &carol, "order-17", &body);
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert!(!replayed(&response), "another caller's key is not replayed");
    assert_ne!(response.body, responses[0].body);
    assert_eq!(response.json()["transfer"]["from"], carol.id.as_str());
    assert_eq!(w.balance(&carol, "btc").0, "0.90000000");
    assert_eq!(w.balance(&bob, "btc").0, "0.20000000");

    malformed_keys_are_refused(&w, &alice, &body);
    assert_eq!(w.balance(&alice, "btc").0, "0.80000000");
    assert!(w.check(&admin).is_empty());
}

/// Another request under alice's key "order-17" (which sent `body`), on
/// this route or another, is 422 and changes nothing.
fn a_different_request_under_the_key_is_refused(
    w: &World,
    [alice, bob, carol]: [&Member; 3],
    body: &Value,
) {
    let before = ledger_view(w, &[alice, bob]);
    for other in [
        json!({"to": bob.id, "currency": "btc", "amount": "0.2", "memo": "once"}),
        json!({"to": bob.id, "currency": "btc", "amount": "0.1", "memo": "twice"}),
        json!({"to": bob.id, "currency": "btc", "amount": "0.1"}),
        json!({"to": carol.id, "currency": "btc", "amount": "0.1", "memo": "once"}),
    ] {
        let response = keyed_transfer(w, alice, "order-17", &other);
        response.assert_error(422, "idempotency_mismatch");
    }
    // The same key on another money route is another request too.
    let response = w.post_with(
        "/api/v1/transfers/batch",
        Some(&alice.token),
        &json!({ "transfers": [body] }),
        &[("Idempotency-Key", "order-17")],
    );
    response.assert_error(422, "idempotency_mismatch");
    assert_eq!(
        ledger_view(w, &[alice, bob]),
        before,
        "a mismatch changed the ledger"
    );
}

/// Malformed keys are refused before anything happens; 255 characters are
/// a key.
fn malformed_keys_are_refused(w: &World, alice: &Member, body: &Value) {
    for key in ["", "has space", &"k".repeat(256), "ключ"] {
        let response = keyed_transfer(w, alice, key, body);
        assert_eq!(
            response.status,
            400,
            "key {key:?}: {}",
            response.body_text()
        );
        response.error();
    }
    let response = keyed_transfer(w, alice, &"k".repeat(255), body);
    assert_eq!(
        response.status,
        201,
        "a 255-character key: {}",
        response.body_text()
    );
}

#[test]
fn twenty_concurrent_requests_with_one_key_apply_exactly_one_transfer() {
    let w = world();
    let admin = w.admin("wal_admin6");
    let alice = w.member("wal_alice6");
    let bob = w.member("wal_bob6");
    w.deposit(&admin, &alice, "btc", "1");
    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.01", "memo": "race"});
    let barrier = Barrier::new(20);
    let responses: Vec<HttpResponse> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    request(
                        w.app.addr,
                        "POST",
                        "/api/v1/transfers",
                        Some(&alice.token),
                        Some(&body),
                        &[("Idempotency-Key", "same-key")],
                    )
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a client thread"))
            .collect()
    });
    let mut originals = 0;
    let mut created_body: Option<Vec<u8>> = None;
    for response in &responses {
        match response.status {
            201 => {
                if !replayed(response) {
                    originals += 1;
                }
                let first = created_body.get_or_insert_with(|| response.body.clone());
                assert_eq!(&response.body, first, "every 201 is the same transfer");
            }
            409 => {
                response.assert_error(409, "idempotency_in_progress");
            }
            other => panic!("status {other}: {}", response.body_text()),
        }
    }
    assert_eq!(
        originals, 1,
        "exactly one answer is not a replay: {responses:?}"
    );
    assert_eq!(w.balance(&alice, "btc").0, "0.99000000");
    assert_eq!(w.balance(&bob, "btc").0, "0.01000000");
    let transfers = all_entries(&w, &alice)
        .into_iter()
        .filter(|e| e["kind"] == "transfer")
        .count();
    assert_eq!(transfers, 1);
    // After the race, the key replays.
    let response = keyed_transfer(&w, &alice, "same-key", &body);
    assert_eq!(response.status, 201);
    assert!(replayed(&response));
    assert_eq!(Some(response.body), created_body);
    assert!(w.check(&admin).is_empty());
}

/// A transfer of alice's with these raw `Idempotency-Key` header values.
fn raw_keyed_transfer(
    w: &World,
    from: &Member,
    path: &str,
    body: &Value,
    keys: &[&[u8]],
) -> HttpResponse {
    let headers: Vec<(&str, &[u8])> = keys.iter().map(|k| ("Idempotency-Key", *k)).collect();
    request_raw_headers(
        w.app.addr,
        "POST",
        path,
        Some(&from.token),
        Some(body),
        &headers,
    )
}

#[test]
fn a_non_utf8_idempotency_key_gets_400_every_time_and_moves_nothing() {
    // Issue 12: `k\xffey` was read as "no key", so two sends made two transfers.
    let w = world();
    let admin = quick_user(&w.db, "wal_admin13", true);
    let alice = quick_user(&w.db, "wal_alice13", false);
    let bob = quick_user(&w.db, "wal_bob13", false);
    w.deposit(&admin, &alice, "btc", "1");
    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.1"});
    let batch_body = json!({"transfers": [body.clone()]});
    for (path, body) in [
        ("/api/v1/transfers", &body),
        ("/api/v1/transfers", &body),
        ("/api/v1/transfers/batch", &batch_body),
        ("/api/v1/transfers/batch", &batch_body),
    ] {
        let response = raw_keyed_transfer(&w, &alice, path, body, &[b"k\xffey"]);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], "Idempotency-Key", "{path}: {error}");
    }
    assert_eq!(w.balance(&alice, "btc").0, "1.00000000");
    assert_eq!(w.balance(&bob, "btc").0, "0.00000000");
    assert!(all_entries(&w, &bob).is_empty(), "no transfer was made");
    assert!(w.check(&admin).is_empty());
}

#[test]
fn an_idempotency_key_that_is_not_1_to_255_visible_ascii_gets_400_whatever_its_bytes() {
    let w = world();
    let admin = quick_user(&w.db, "wal_admin14", true);
    let alice = quick_user(&w.db, "wal_alice14", false);
    let bob = quick_user(&w.db, "wal_bob14", false);
    w.deposit(&admin, &alice, "btc", "1");
    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.1"});
    let long = vec![b'k'; 256];
    let path = "/api/v1/transfers";
    // Values that reach the API: each is refused there, naming the header.
    let refused: Vec<&[u8]> = vec![
        b"",
        b"k\tey",
        b"has space",
        &long,
        "ключ".as_bytes(),
        b"\xff",
        b"\x80\x81",
        b"caf\xe9",
    ];
    for key in &refused {
        let response = raw_keyed_transfer(&w, &alice, path, &body, &[key]);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], "Idempotency-Key", "key {key:?}: {error}");
    }
    // Control characters other than tab never reach a route: the HTTP
    // layer refuses the head, with 400 too.
    for key in [&b"k\x01ey"[..], b"k\x7fey", b"k\x1bey"] {
        let response = raw_keyed_transfer(&w, &alice, path, &body, &[key]);
        assert_eq!(
            response.status,
            400,
            "key {key:?}: {}",
            response.body_text()
        );
    }
    // Two keys: which one counts would be a guess, so neither does.
    let response = raw_keyed_transfer(&w, &alice, path, &body, &[b"one", b"two"]);
    let error = response.assert_error(400, "invalid_field");
    assert_eq!(error["field"], "Idempotency-Key", "{error}");
    assert_eq!(w.balance(&alice, "btc").0, "1.00000000");
    assert!(all_entries(&w, &bob).is_empty(), "no transfer was made");

    // The bounds themselves are accepted: 1 and 255 visible characters.
    let longest = vec![b'~'; 255];
    for key in [&b"!"[..], &longest] {
        let response = raw_keyed_transfer(&w, &alice, path, &body, &[key]);
        assert_eq!(
            response.status,
            201,
            "key {key:?}: {}",
            response.body_text()
        );
    }
    assert_eq!(w.balance(&alice, "btc").0, "0.80000000");
    assert!(w.check(&admin).is_empty());
}

// ---- races -----------------------------------------------------------------

#[test]
fn fifty_concurrent_transfers_against_ten_amounts_of_funds_let_exactly_ten_through() {
    let w = world();
    let admin = w.admin("wal_admin7");
    let alice = w.member("wal_alice7");
    let bob = w.member("wal_bob7");
    w.deposit(&admin, &alice, "btc", "0.3"); // 10 × 0.03
    let barrier = Barrier::new(51);
    let done = AtomicBool::new(false);
    let (responses, lowest) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            barrier.wait();
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                seen.push(w.balance(&alice, "btc").0);
            }
            seen
        });
        let threads: Vec<_> = (0..50)
            .map(|i| {
                let (w, alice, bob, barrier) = (&w, &alice, &bob, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let body = json!({"to": bob.id, "currency": "btc", "amount": "0.03", "memo": format!("race {i}")});
                    w.post("/api/v1/transfers", Some(&alice.token), &body)
                })
            })
            .collect();
        let responses: Vec<HttpResponse> = threads
            .into_iter()
            .map(|t| t.join().expect("a client thread"))
            .collect();
        done.store(true, Ordering::Relaxed);
        (responses, watcher.join().expect("the watcher"))
    });
    let mut created = 0;
    let mut refused = 0;
    for response in &responses {
        match response.status {
            201 => created += 1,
            409 => {
                response.assert_error(409, "insufficient_funds");
                refused += 1;
            }
            other => panic!("status {other}: {}", response.body_text()),
        }
    }
    assert_eq!((created, refused), (10, 40));
    for balance in &lowest {
        assert!(
            !balance.starts_with('-'),
            "a balance went negative: {balance}"
        );
        assert!(
            minor(balance, BTC) <= 30_000_000,
            "more than was there: {balance}"
        );
    }
    assert_eq!(
        w.balance(&alice, "btc"),
        ("0.00000000".into(), "0.00000000".into())
    );
    assert_eq!(w.balance(&bob, "btc").0, "0.30000000");
    assert_eq!(all_entries(&w, &bob).len(), 10);
    assert!(w.check(&admin).is_empty());
}

// ---- deposits and withdrawals ----------------------------------------------

#[test]
fn withdrawals_need_funds_and_references_replay_like_deposits() {
    let w = world();
    let admin = w.admin("wal_admin8");
    let alice = w.member("wal_alice8");
    deposit_references_replay(&w, &admin, &alice);
    refused_movements_change_nothing(&w, &admin, &alice);
    withdrawal_references_replay(&w, &admin, &alice);

    let stats = wallet_stats(&w, &admin);
    let btc = &stats["currencies"]["btc"];
    assert_eq!(btc["deposited"], "1.00000000", "{stats}");
    assert_eq!(btc["withdrawn"], "1.00000000", "{stats}");
    assert_eq!(btc["total_available"], "0.00000000", "{stats}");
    assert_eq!(
        stats["currencies"]["xmr"]["deposited"], "3.000000000000",
        "{stats}"
    );
    let kinds: Vec<Value> = all_entries(&w, &alice)
        .iter()
        .map(|e| json!([e["kind"], e["currency"], e["amount"]]))
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!(["withdrawal", "btc", "0.60000000"]),
            json!(["withdrawal", "btc", "0.40000000"]),
            json!(["deposit", "xmr", "3.000000000000"]),
            json!(["deposit", "btc", "1.00000000"]),
        ]
    );
    assert!(w.check(&admin).is_empty());
}

/// Alice gets 1 btc (reference `dep-a`) and 3 xmr (the same reference: they
/// are per currency); the same deposit again replays, another under the
/// same reference is refused.
fn deposit_references_replay(w: &World, admin: &Member, alice: &Member) {
    let response = deposit_ref(w, admin, alice, "btc", "1", "dep-a");
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert!(!replayed(&response));
    let deposit_entry = response.json()["entry"].clone();
    assert_eq!(deposit_entry["reference"], "dep-a", "{deposit_entry}");

    // The same deposit again (a re-sent confirmation) replays; another amount,
    // user or currency... under the same reference is refused.
    let again = deposit_ref(w, admin, alice, "btc", "1.00000000", "dep-a");
    assert_eq!(again.status, 201, "{}", again.body_text());
    assert!(replayed(&again), "{:?}", again.headers);
    assert_eq!(again.json()["entry"], deposit_entry);
    deposit_ref(w, admin, alice, "btc", "2", "dep-a").assert_error(422, "idempotency_mismatch");
    deposit_ref(w, admin, admin, "btc", "1", "dep-a").assert_error(422, "idempotency_mismatch");
    // References are per currency.
    let xmr = deposit_ref(w, admin, alice, "xmr", "3", "dep-a");
    assert_eq!(xmr.status, 201, "{}", xmr.body_text());
    assert!(!replayed(&xmr));
    assert_eq!(w.balance(alice, "btc").0, "1.00000000");
    assert_eq!(w.balance(alice, "xmr").0, "3.000000000000");
}

/// Withdrawals beyond the funds, bad amounts, currencies, users and
/// references, and members moving money in or out: refused, nothing moves.
fn refused_movements_change_nothing(w: &World, admin: &Member, alice: &Member) {
    let before = ledger_view(w, &[alice]);
    withdraw_ref(w, admin, alice, "btc", "1.00000001", "wd-big")
        .assert_error(409, "insufficient_funds");
    withdraw_ref(w, admin, alice, "xmr", "3.000000000001", "wd-big")
        .assert_error(409, "insufficient_funds");
    withdraw_ref(w, admin, alice, "btc", "0", "wd-zero").assert_error(400, "invalid_field");
    withdraw_ref(w, admin, alice, "doge", "1", "wd-doge").assert_error(400, "invalid_field");
    let nobody = Member {
        id: "4242424242".into(),
        token: String::new(),
        username: "nobody".into(),
    };
    withdraw_ref(w, admin, &nobody, "btc", "0.1", "wd-nobody").assert_error(404, "not_found");
    deposit_ref(w, admin, &nobody, "btc", "0.1", "dep-nobody").assert_error(404, "not_found");
    let bad_reference = deposit_ref(w, admin, alice, "btc", "0.1", "has space");
    assert_eq!(
        bad_reference.assert_error(400, "invalid_field")["field"],
        "reference"
    );
    // Members cannot move money in or out.
    let body =
        json!({"user_id": alice.id, "currency": "btc", "amount": "0.1", "reference": "self-serve"});
    w.post("/api/v1/admin/withdrawals", Some(&alice.token), &body)
        .assert_error(403, "forbidden");
    w.post("/api/v1/admin/deposits", Some(&alice.token), &body)
        .assert_error(403, "forbidden");
    assert_eq!(
        ledger_view(w, &[alice]),
        before,
        "a refused movement changed the ledger"
    );
}

/// Withdrawal `wd-1` of 0.4 btc replays like a deposit, and the rest can go.
fn withdrawal_references_replay(w: &World, admin: &Member, alice: &Member) {
    let response = withdraw_ref(w, admin, alice, "btc", "0.4", "wd-1");
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert!(!replayed(&response));
    let entry = response.json()["entry"].clone();
    assert_eq!(
        json!([
            entry["kind"],
            entry["direction"],
            entry["currency"],
            entry["amount"],
            entry["reference"]
        ]),
        json!(["withdrawal", "out", "btc", "0.40000000", "wd-1"])
    );
    assert_eq!(w.balance(alice, "btc").0, "0.60000000");

    let again = withdraw_ref(w, admin, alice, "btc", "0.4", "wd-1");
    assert_eq!(again.status, 201, "{}", again.body_text());
    assert!(replayed(&again), "{:?}", again.headers);
    assert_eq!(again.json()["entry"], entry);
    withdraw_ref(w, admin, alice, "btc", "0.3", "wd-1").assert_error(422, "idempotency_mismatch");
    assert_eq!(
        w.balance(alice, "btc").0,
        "0.60000000",
        "replays and mismatches move nothing"
    );

    // Everything that is left can go.
    let response = withdraw_ref(w, admin, alice, "btc", "0.6", "wd-2");
    assert_eq!(response.status, 201, "{}", response.body_text());
    assert_eq!(
        w.balance(alice, "btc"),
        ("0.00000000".into(), "0.00000000".into())
    );
}

// ---- entry paging ----------------------------------------------------------

/// What tells the entries of the paging test apart: reference or memo.
fn label(entry: &Value) -> String {
    entry["reference"]
        .as_str()
        .or_else(|| entry["memo"].as_str())
        .unwrap_or_else(|| panic!("an entry without label: {entry}"))
        .to_owned()
}

/// alice and bob with seven entries of alice's, oldest first: deposits
/// (p1 btc, p2 xmr, p3 btc), a btc transfer to bob (t4), a deposit (p5 xmr),
/// an xmr transfer to bob (t6), a withdrawal (p7 btc); labelled by reference
/// or memo.
fn seven_entries(w: &World) -> (Member, Member) {
    let admin = w.admin("wal_admin9");
    let alice = w.member("wal_alice9");
    let bob = w.member("wal_bob9");
    let memo_transfer = |currency: &str, amount: &str, memo: &str| {
        let body = json!({"to": bob.id, "currency": currency, "amount": amount, "memo": memo});
        let response = w.post("/api/v1/transfers", Some(&alice.token), &body);
        assert_eq!(response.status, 201, "{}", response.body_text());
    };
    let ok = |response: HttpResponse| assert_eq!(response.status, 201, "{}", response.body_text());
    ok(deposit_ref(w, &admin, &alice, "btc", "1", "p1"));
    ok(deposit_ref(w, &admin, &alice, "xmr", "2", "p2"));
    ok(deposit_ref(w, &admin, &alice, "btc", "0.5", "p3"));
    memo_transfer("btc", "0.1", "t4");
    ok(deposit_ref(w, &admin, &alice, "xmr", "0.25", "p5"));
    memo_transfer("xmr", "0.3", "t6");
    ok(withdraw_ref(w, &admin, &alice, "btc", "0.2", "p7"));
    (alice, bob)
}

/// Bad queries are 400 naming the field; another user's entry is no cursor
/// for this list: well formed, but not found among bob's (404, naming
/// `after`); no token is 401.
fn entry_queries_are_checked(w: &World, alice: &Member, bob: &Member, alices_entry: &str) {
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "limit=-1",
        "limit=",
        "currency=doge",
        "currency=BTC",
        "after=x",
    ] {
        let response = w.get(&format!("/api/v1/wallet/entries?{bad}"), &alice.token);
        let error = response.assert_error(400, "invalid_field");
        let field = bad.split('=').next().unwrap_or_default();
        assert_eq!(error["field"], field, "{bad}: {error}");
    }
    let response = w.get(
        &format!("/api/v1/wallet/entries?after={alices_entry}"),
        &bob.token,
    );
    assert_eq!(response.assert_error(404, "not_found")["field"], "after");
    let response = w.get("/api/v1/wallet/entries", "not-a-token");
    response.assert_error(401, "unauthenticated");
}

#[test]
fn entries_page_newest_first_every_entry_exactly_once() {
    let w = world();
    let (alice, bob) = seven_entries(&w);
    let newest_first = ["p7", "t6", "p5", "t4", "p3", "p2", "p1"];
    let (entries, pages) = entries_paged(&w, &alice, None, 3);
    let labels: Vec<String> = entries.iter().map(label).collect();
    assert_eq!(labels, newest_first, "pages of 3");
    assert_eq!(pages, 3, "7 entries in pages of 3: 3 + 3 + 1");
    for limit in [1, 2, 7, 100] {
        let (entries, pages) = entries_paged(&w, &alice, None, limit);
        let labels: Vec<String> = entries.iter().map(label).collect();
        assert_eq!(labels, newest_first, "pages of {limit}");
        assert_eq!(pages, 7usize.div_ceil(limit), "pages of {limit}");
    }
    let response = w.get("/api/v1/wallet/entries", &alice.token);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["entries"].as_array().map(Vec::len),
        Some(7),
        "the default limit is 20"
    );
    assert_eq!(response.json()["next"], Value::Null);

    let (xmr, _) = entries_paged(&w, &alice, Some("xmr"), 2);
    let labels: Vec<String> = xmr.iter().map(label).collect();
    assert_eq!(labels, ["t6", "p5", "p2"], "only xmr");
    assert!(xmr.iter().all(|e| e["currency"] == "xmr"));
    let (btc, _) = entries_paged(&w, &alice, Some("btc"), 1);
    let labels: Vec<String> = btc.iter().map(label).collect();
    assert_eq!(labels, ["p7", "t4", "p3", "p1"], "only btc");
    let (bobs, _) = entries_paged(&w, &bob, None, 1);
    let labels: Vec<String> = bobs.iter().map(label).collect();
    assert_eq!(labels, ["t6", "t4"], "bob sees his side only");

    // Ids are not the insertion order: no two consecutive entries have
    // consecutive ids.
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("a numeric id")
        })
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0].abs_diff(pair[1]) > 1),
        "sequential-looking ids: {ids:?}"
    );
    let alices_entry = entries[0]["id"].as_str().expect("an id");
    entry_queries_are_checked(&w, &alice, &bob, alices_entry);
}

// ---- admin views -----------------------------------------------------------

#[test]
fn admin_balances_answers_for_many_users_at_once_and_only_to_admins() {
    let w = world();
    let admin = w.admin("wal_admin10");
    let alice = w.member("wal_alice10");
    let bob = w.member("wal_bob10");
    w.deposit(&admin, &alice, "btc", "1.5");
    w.deposit(&admin, &alice, "xmr", "2");
    w.deposit(&admin, &bob, "btc", "0.00000001");
    let unknown = "5555555555555";

    let response = admin_balances(&w, &admin, &[&alice.id, unknown, &bob.id], Some("btc"));
    assert_eq!(response.status, 200, "{}", response.body_text());
    let zero_btc = json!({"available": "0.00000000", "held": "0.00000000"});
    let mut expected = serde_json::Map::new();
    expected.insert(
        alice.id.clone(),
        json!({"btc": {"available": "1.50000000", "held": "0.00000000"}}),
    );
    expected.insert(
        bob.id.clone(),
        json!({"btc": {"available": "0.00000001", "held": "0.00000000"}}),
    );
    assert_eq!(
        response.json(),
        json!({"balances": expected}),
        "unknown ids are left out"
    );

    let response = admin_balances(&w, &admin, &[&bob.id, &admin.id, &alice.id], None);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let balances = &response.json()["balances"];
    assert_eq!(balances[&alice.id]["xmr"]["available"], "2.000000000000");
    assert_eq!(
        balances[&bob.id]["xmr"]["available"], "0.000000000000",
        "zeros when never used"
    );
    assert_eq!(balances[&admin.id]["btc"], zero_btc);
    let response = admin_balances(&w, &admin, &[&alice.id], Some("xmr,btc"));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["balances"][&alice.id]["btc"]["available"],
        "1.50000000"
    );
    assert_eq!(
        response.json()["balances"][&alice.id]["xmr"]["available"],
        "2.000000000000"
    );

    admin_balances_checks_its_query_and_caller(&w, &admin, &alice);
}

/// At most 350 ids, and good ids and currencies, or 400; admins only.
fn admin_balances_checks_its_query_and_caller(w: &World, admin: &Member, alice: &Member) {
    // At most 350 ids: the most 19-digit ids that always fit the target.
    let ids: Vec<String> = (0..=350u64)
        .map(|n| (9_000_000_000_000_000_000 + n).to_string())
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let response = admin_balances(w, admin, &refs[..350], Some("btc"));
    assert_eq!(response.status, 200, "350 ids: {}", response.body_text());
    let response = admin_balances(w, admin, &refs, Some("btc"));
    assert_eq!(
        response.assert_error(400, "invalid_field")["field"],
        "user_ids"
    );

    for bad in [
        "user_ids=",
        "user_ids=abc",
        "currencies=btc",
        "user_ids=1&currencies=doge",
    ] {
        let response = w.get(&format!("/api/v1/admin/balances?{bad}"), &admin.token);
        assert_eq!(response.status, 400, "{bad}: {}", response.body_text());
        response.error();
    }
    admin_balances(w, alice, &[&alice.id], None).assert_error(403, "forbidden");
    w.get("/api/v1/admin/stats/wallets", &alice.token)
        .assert_error(403, "forbidden");
    w.get("/api/v1/admin/check", &alice.token)
        .assert_error(403, "forbidden");
    let response = request(
        w.app.addr,
        "GET",
        &format!("/api/v1/admin/balances?user_ids={}", alice.id),
        None,
        None,
        &[],
    );
    response.assert_error(401, "unauthenticated");
}

#[test]
fn wallet_statistics_match_a_known_sequence() {
    let w = world();
    let admin = w.admin("wal_admin11");
    let alice = w.member("wal_alice11");
    let bob = w.member("wal_bob11");
    let stats = wallet_stats(&w, &admin);
    for (code, zero) in [("btc", "0.00000000"), ("xmr", "0.000000000000")] {
        let c = &stats["currencies"][code];
        assert_eq!(
            *c,
            json!({"total_available": zero, "total_held": zero, "deposited": zero, "withdrawn": zero,
                   "accounts": 0, "transfers_24h": 0, "volume_24h": zero, "open_escrows": 0}),
            "{code} before anything: {stats}"
        );
    }
    assert!(
        stats["as_of"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{stats}"
    );

    w.deposit(&admin, &alice, "btc", "1.5");
    w.deposit(&admin, &bob, "btc", "0.25");
    w.deposit(&admin, &alice, "xmr", "2");
    let ok = |response: HttpResponse| assert_eq!(response.status, 201, "{}", response.body_text());
    ok(withdraw_ref(&w, &admin, &alice, "btc", "0.1", "stats-wd"));
    ok(transfer(&w, &alice, &bob.id, "btc", "0.2"));
    ok(batch(
        &w,
        &alice,
        json!([
            {"to": bob.id, "currency": "btc", "amount": "0.05"},
            {"to": bob.id, "currency": "xmr", "amount": "0.5"},
        ]),
    ));
    // Bob sends all his xmr back: his xmr account is zero again.
    ok(transfer(&w, &bob, &alice.id, "xmr", "0.5"));
    // Refused movements count for nothing.
    transfer(&w, &bob, &alice.id, "xmr", "0.5").assert_error(409, "insufficient_funds");
    withdraw_ref(&w, &admin, &bob, "btc", "5", "stats-wd-big")
        .assert_error(409, "insufficient_funds");

    let stats = wallet_stats(&w, &admin);
    assert_eq!(
        stats["currencies"]["btc"],
        json!({"total_available": "1.65000000", "total_held": "0.00000000",
               "deposited": "1.75000000", "withdrawn": "0.10000000",
               "accounts": 2, "transfers_24h": 2, "volume_24h": "0.25000000", "open_escrows": 0}),
        "btc: {stats}"
    );
    assert_eq!(
        stats["currencies"]["xmr"],
        json!({"total_available": "2.000000000000", "total_held": "0.000000000000",
               "deposited": "2.000000000000", "withdrawn": "0.000000000000",
               "accounts": 1, "transfers_24h": 2, "volume_24h": "1.000000000000", "open_escrows": 0}),
        "xmr: alice holds it all, bob's zero account does not count: {stats}"
    );
    assert_eq!(w.balance(&alice, "btc").0, "1.15000000");
    assert_eq!(w.balance(&bob, "btc").0, "0.50000000");
    assert!(w.check(&admin).is_empty());
}

/// `n` users with a zero btc and xmr account each, written straight into
/// the database in one transaction (they change no total).
fn zero_accounts(w: &World, n: usize) {
    let mut conn = open_db(&w.db);
    let tx = conn.transaction().expect("a transaction");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64;
    for i in 0..n {
        let id = souk::ids::random_id().expect("a random id");
        tx.execute(
            "INSERT INTO users (id, username, password_hash, role, status, created_at)
             VALUES (?1, ?2, 'not-a-hash', 'user', 'active', ?3)",
            rusqlite::params![id, format!("zero_{i}"), now],
        )
        .expect("inserting a user");
        for currency in ["btc", "xmr"] {
            tx.execute(
                "INSERT INTO accounts (user_id, currency) VALUES (?1, ?2)",
                rusqlite::params![id, currency],
            )
            .expect("inserting an account");
        }
    }
    tx.commit().expect("committing the accounts");
}

/// The currencies of a `/admin/stats/wallets` answer whose figures break
/// total_available + total_held = deposited − withdrawn (exact minor units).
fn unbalanced_currencies(stats: &Value) -> Vec<String> {
    let currencies = stats["currencies"].as_object().expect("currencies");
    currencies
        .iter()
        .filter(|(code, c)| {
            let d = decimals(code);
            let figure = |name: &str| minor(c[name].as_str().expect("an amount"), d);
            figure("total_available") + figure("total_held")
                != figure("deposited") - figure("withdrawn")
        })
        .map(|(code, c)| format!("{code}: {c}"))
        .collect()
}

/// Admin deposits and withdrawals (refused ones too) for `user`, the
/// `t`-th mover, alternating btc and xmr, until `stop`; how many were sent.
fn move_money_until(
    addr: std::net::SocketAddr,
    token: &str,
    t: usize,
    user: &Member,
    stop: &AtomicBool,
) -> u64 {
    let mut client = Client::connect(addr);
    let mut moves = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let currency = if moves.is_multiple_of(2) {
            "btc"
        } else {
            "xmr"
        };
        let (path, amount) = if moves % 3 == 2 {
            ("/api/v1/admin/withdrawals", "0.0005")
        } else {
            ("/api/v1/admin/deposits", "0.001")
        };
        let body = json!({"user_id": user.id, "currency": currency,
                          "amount": amount, "reference": format!("snap-{t}-{moves}")});
        let response = send_json(&mut client, "POST", path, Some(token), Some(&body), &[])
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            response.status == 201 || response.status == 409,
            "{path}: {}",
            response.summary()
        );
        moves += 1;
    }
    moves
}

#[test]
fn wallet_statistics_balance_in_every_answer_under_concurrent_deposits_and_withdrawals() {
    // Issue 12: the statistics were read by several queries outside one
    // read transaction, so a commit between two of them broke the equation.
    const POLLS: usize = 300;
    let w = world(); // statistics cached 0 s: every answer is a fresh read
    let admin = quick_user(&w.db, "wal_admin15", true);
    let users: Vec<Member> = (0..2)
        .map(|i| quick_user(&w.db, &format!("wal_snap{i}"), false))
        .collect();
    // Many accounts make the statistics' read long enough that commits land
    // inside it often: the race shows in a few hundred answers, not thousands.
    zero_accounts(&w, 3000);
    let addr = w.app.addr;
    let stop = AtomicBool::new(false);
    let (broken, moves) = std::thread::scope(|s| {
        let movers: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(t, user)| {
                let (stop, token) = (&stop, &admin.token);
                s.spawn(move || move_money_until(addr, token, t, user, stop))
            })
            .collect();
        let mut client = Client::connect(addr);
        let mut broken = Vec::new();
        for _ in 0..POLLS {
            let path = "/api/v1/admin/stats/wallets";
            let response = send_json(&mut client, "GET", path, Some(&admin.token), None, &[])
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(response.status, 200, "{}", response.summary());
            broken.extend(unbalanced_currencies(&response.json()));
        }
        stop.store(true, Ordering::Relaxed);
        let moves: u64 = movers
            .into_iter()
            .map(|m| m.join().expect("a mover thread"))
            .sum();
        (broken, moves)
    });
    assert!(
        broken.is_empty(),
        "{} of {POLLS} answers (during {moves} deposits and withdrawals) were not one snapshot; first: {:?}",
        broken.len(),
        &broken[..broken.len().min(3)]
    );
    assert!(moves > 0, "the answers were read while money moved");
    // After the race, one more answer balances, and so does the ledger.
    assert!(unbalanced_currencies(&wallet_stats(&w, &admin)).is_empty());
    assert!(w.check(&admin).is_empty());
}

// ---- conservation under a random load ---------------------------------------

/// Totals in minor units per currency, as the test saw them acknowledged.
type Totals = BTreeMap<&'static str, i128>;

const CURRENCIES: [&str; 2] = ["btc", "xmr"];

/// One client thread of the random mix: `ops` random operations; returns the
/// deposits and withdrawals acknowledged with 201.
fn random_ops(
    w: &World,
    admin: &Member,
    users: &[Member],
    rng: &mut Rng,
    tag: &str,
    ops: usize,
    ctx: &str,
) -> (Totals, Totals) {
    let mut deposited = Totals::new();
    let mut withdrawn = Totals::new();
    for i in 0..ops {
        let roll = rng.below(100);
        let currency = *rng.pick(&CURRENCIES);
        let user = rng.pick(users);
        let op = Op {
            w,
            admin,
            users,
            user,
            currency,
            key: format!("{tag}-{i}"),
            what: format!("{ctx}, {tag} op {i}"),
        };
        if roll < 15 {
            op.deposit(rng, &mut deposited);
        } else if roll < 25 {
            op.withdraw(rng, &mut withdrawn);
        } else if roll < 55 {
            op.transfer(rng);
        } else if roll < 70 {
            op.batch(rng);
        } else {
            op.read();
        }
    }
    (deposited, withdrawn)
}

/// A random amount of `currency` in `1..=max_major_hundredths / 100` major
/// units: minor units, and as a client might write it.
fn random_amount(rng: &mut Rng, currency: &str, max_major_hundredths: u64) -> (i128, String) {
    let d = decimals(currency);
    let max = i128::from(max_major_hundredths) * 10i128.pow(d) / 100;
    let minor = 1 + i128::from(rng.next() >> 1) % max;
    (minor, render_amount(rng, minor, d))
}

/// One operation of the random mix: who acts, in which currency, its key
/// and its name in failures.
struct Op<'a> {
    w: &'a World,
    admin: &'a Member,
    users: &'a [Member],
    user: &'a Member,
    currency: &'static str,
    /// `TAG-I`: the operation's memo and Idempotency-Key.
    key: String,
    what: String,
}

impl Op<'_> {
    /// Another user than the one acting.
    fn other_user(&self, rng: &mut Rng) -> &Member {
        loop {
            let to = rng.pick(self.users);
            if to.id != self.user.id {
                return to;
            }
        }
    }

    fn deposit(&self, rng: &mut Rng, deposited: &mut Totals) {
        let (what, currency) = (&self.what, self.currency);
        let (minor, text) = random_amount(rng, currency, 200);
        let reference = format!("mix-{}", self.key);
        let response = deposit_ref(self.w, self.admin, self.user, currency, &text, &reference);
        assert_eq!(
            response.status,
            201,
            "{what}: deposit {text} {currency}: {}",
            response.body_text()
        );
        *deposited.entry(currency).or_default() += minor;
    }

    fn withdraw(&self, rng: &mut Rng, withdrawn: &mut Totals) {
        let (what, currency) = (&self.what, self.currency);
        let (minor, text) = random_amount(rng, currency, 50);
        let reference = format!("mix-{}", self.key);
        let response = withdraw_ref(self.w, self.admin, self.user, currency, &text, &reference);
        match response.status {
            201 => *withdrawn.entry(currency).or_default() += minor,
            409 => assert_eq!(response.error()["code"], "insufficient_funds", "{what}"),
            other => panic!("{what}: withdrawal got {other}: {}", response.body_text()),
        }
    }

    /// A keyed transfer, sent twice one time in four: a retry of a done
    /// transfer replays it.
    fn transfer(&self, rng: &mut Rng) {
        let what = &self.what;
        let to = self.other_user(rng);
        let (_, text) = random_amount(rng, self.currency, 30);
        let body =
            json!({"to": to.id, "currency": self.currency, "amount": text, "memo": self.key});
        let tries = if rng.below(4) == 0 { 2 } else { 1 };
        let mut first: Option<HttpResponse> = None;
        for _ in 0..tries {
            let response = keyed_transfer(self.w, self.user, &self.key, &body);
            match response.status {
                201 | 409 => {}
                other => panic!("{what}: transfer got {other}: {}", response.body_text()),
            }
            if response.status == 409 {
                assert_eq!(response.error()["code"], "insufficient_funds", "{what}");
            }
            if let Some(first) = &first
                && first.status == 201
            {
                assert_eq!(
                    response.status, 201,
                    "{what}: a retry of a done transfer replays"
                );
                assert!(replayed(&response), "{what}");
                assert_eq!(response.body, first.body, "{what}");
            }
            first.get_or_insert(response);
        }
    }

    /// A batch of 1 to 5 transfers in any currencies: all applied, or the
    /// index of the one that lacked funds.
    fn batch(&self, rng: &mut Rng) {
        let what = &self.what;
        let items: Vec<Value> = (0..1 + rng.below(5))
            .map(|_| {
                let currency = *rng.pick(&CURRENCIES);
                let to = self.other_user(rng);
                let (_, text) = random_amount(rng, currency, 20);
                json!({"to": to.id, "currency": currency, "amount": text})
            })
            .collect();
        let count = items.len();
        let response = batch(self.w, self.user, Value::Array(items));
        match response.status {
            201 => assert_eq!(
                response.json()["transfers"].as_array().map(Vec::len),
                Some(count),
                "{what}"
            ),
            409 => {
                let error = response.error();
                assert_eq!(error["code"], "insufficient_funds", "{what}");
                assert!(
                    error["index"]
                        .as_u64()
                        .is_some_and(|i| (i as usize) < count),
                    "{what}: {error}"
                );
            }
            other => panic!("{what}: batch got {other}: {}", response.body_text()),
        }
    }

    /// The wallet (no balance below zero) and the latest entries.
    fn read(&self) {
        let (what, user) = (&self.what, self.user);
        let response = self.w.get("/api/v1/wallet", &user.token);
        assert_eq!(response.status, 200, "{what}");
        let balances = response.json()["balances"].clone();
        for code in CURRENCIES {
            for part in ["available", "held"] {
                let text = balances[code][part]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: {balances}"));
                assert!(
                    minor(text, decimals(code)) >= 0,
                    "{what}: negative balance {balances}"
                );
            }
        }
        let response = self.w.get("/api/v1/wallet/entries?limit=5", &user.token);
        assert_eq!(response.status, 200, "{what}");
    }
}

/// Client threads of each phase of the random mix, and operations of each.
const MIX_THREADS: u64 = 4;
const MIX_OPS: usize = 30;

#[test]
fn a_seeded_random_mix_from_several_threads_conserves_money_in_every_phase() {
    let seed = test_seed();
    let ctx = format!("seed {seed} (rerun with SOUK_TEST_SEED={seed})");
    let w = world();
    let admin = w.admin("wal_admin12");
    let users: Vec<Member> = (0..3).map(|i| w.member(&format!("wal_mix{i}"))).collect();
    let mut ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    ids.push(&admin.id);
    let mut deposited = Totals::new();
    let mut withdrawn = Totals::new();
    for phase in 0..3u64 {
        for (d, wd) in mix_phase(&w, &admin, &users, seed, phase, &ctx) {
            for (code, v) in d {
                *deposited.entry(code).or_default() += v;
            }
            for (code, v) in wd {
                *withdrawn.entry(code).or_default() += v;
            }
        }
        let ctx = format!("{ctx}, phase {phase}");
        assert_money_conserved(&w, &admin, &ids, (&deposited, &withdrawn), &ctx);
        let response = w.get("/api/v1/admin/check", &admin.token);
        assert_eq!(response.status, 200, "{ctx}");
        assert_eq!(
            response.json(),
            json!({"ok": true, "problems": []}),
            "{ctx}: the ledger check"
        );
    }
    assert!(
        deposited.values().sum::<i128>() > 0,
        "{ctx}: the mix deposited nothing, so it tested little"
    );
    let stats = wallet_stats(&w, &admin);
    let moved: i64 = CURRENCIES
        .iter()
        .map(|code| {
            stats["currencies"][code]["transfers_24h"]
                .as_i64()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        moved > 0,
        "{ctx}: no transfer went through, so the mix tested little: {stats}"
    );
}

/// One phase of the mix: MIX_THREADS threads of MIX_OPS random operations,
/// each with a generator of its own drawn from `seed`; their acknowledged
/// deposits and withdrawals.
fn mix_phase(
    w: &World,
    admin: &Member,
    users: &[Member],
    seed: u64,
    phase: u64,
    ctx: &str,
) -> Vec<(Totals, Totals)> {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..MIX_THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut rng =
                        Rng(seed ^ (phase * MIX_THREADS + t).wrapping_mul(0x2545_F491_4F6C_DD1D));
                    let tag = format!("p{phase}t{t}");
                    random_ops(w, admin, users, &mut rng, &tag, MIX_OPS, ctx)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a client thread of the mix"))
            .collect()
    })
}

/// Per currency: no balance below zero, the balances of `ids` sum to the
/// deposits less the withdrawals acknowledged, and the wallet statistics
/// say the same.
fn assert_money_conserved(
    w: &World,
    admin: &Member,
    ids: &[&str],
    (deposited, withdrawn): (&Totals, &Totals),
    ctx: &str,
) {
    let response = admin_balances(w, admin, ids, None);
    assert_eq!(response.status, 200, "{ctx}: {}", response.body_text());
    let balances = response.json()["balances"].clone();
    let stats = wallet_stats(w, admin);
    for code in CURRENCIES {
        let d = decimals(code);
        let mut sum = 0i128;
        for id in ids {
            for part in ["available", "held"] {
                let text = balances[*id][code][part]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: no {code} {part} for {id}: {balances}"));
                let value = minor(text, d);
                assert!(
                    value >= 0,
                    "{ctx}: negative {code} {part} of {id}: {balances}"
                );
                sum += value;
            }
        }
        let dep = deposited.get(code).copied().unwrap_or(0);
        let wd = withdrawn.get(code).copied().unwrap_or(0);
        assert_eq!(
            sum,
            dep - wd,
            "{ctx}: {code} balances sum to {} but deposits - withdrawals are {}",
            major(sum, d),
            major(dep - wd, d)
        );
        let c = &stats["currencies"][code];
        let figure = |name: &str| {
            minor(
                c[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: {name} in {stats}")),
                d,
            )
        };
        assert_eq!(figure("deposited"), dep, "{ctx}: {code} deposited: {stats}");
        assert_eq!(figure("withdrawn"), wd, "{ctx}: {code} withdrawn: {stats}");
        assert_eq!(
            figure("total_available") + figure("total_held"),
            dep - wd,
            "{ctx}: {code} totals: {stats}"
        );
    }
}
