//! Escrow (docs/ledger.md: "Escrow", invariants 4 and 5): holding, releasing,
//! refunding, disputes and their resolution, who may do what, races between
//! the two parties, automatic release (also across a restart of the real
//! binary), listing, idempotency, and the ledger check after all of it.

use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{Served, create_admin};
use crate::client::{Member, PASSWORD, World, json_request, log_in_at, quick_user, request, world};
use crate::helpers::{Client, HttpResponse, TempDir};

const BTC: &str = "btc";
/// Satoshis per bitcoin: btc has 8 decimal places by default.
const SAT: i64 = 100_000_000;

// ---- local helpers ---------------------------------------------------------

/// A btc amount in satoshis as the API writes it: exactly 8 decimals.
fn btc(sat: i64) -> String {
    format!("{}.{:08}", sat / SAT, sat % SAT)
}

/// Unix seconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ` (fractions
/// of a second ignored), by Howard Hinnant's days-from-civil.
fn unix_seconds(text: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| -> i64 {
        text.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an RFC 3339 time: {text}"))
    };
    assert!(text.ends_with('Z'), "not UTC: {text}");
    let (y, m, d) = (number(0..4), number(5..7), number(8..10));
    let (hh, mm, ss) = (number(11..13), number(14..16), number(17..19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

/// `escrow[to] - escrow[from]` in seconds.
fn seconds_between(escrow: &Value, from: &str, to: &str) -> i64 {
    let time = |key: &str| unix_seconds(escrow[key].as_str().expect("a time string"));
    time(to) - time(from)
}

fn escrow_path(id: &str) -> String {
    format!("/api/v1/escrows/{id}")
}

/// `POST /escrows` as `buyer`; the whole response.
fn try_create(
    w: &World,
    buyer: &Member,
    seller: &Member,
    amount: &str,
    release_after: Option<i64>,
) -> HttpResponse {
    let mut body = json!({"seller": seller.id, "currency": BTC, "amount": amount});
    if let Some(seconds) = release_after {
        body["release_after"] = json!(seconds);
    }
    w.post("/api/v1/escrows", Some(&buyer.token), &body)
}

/// Creates an escrow; panics unless 201; returns its id.
fn create(
    w: &World,
    buyer: &Member,
    seller: &Member,
    amount: &str,
    release_after: Option<i64>,
) -> String {
    let response = try_create(w, buyer, seller, amount, release_after);
    assert_eq!(response.status, 201, "create: {}", response.summary());
    let escrow = response.json()["escrow"].clone();
    assert_eq!(escrow["state"], "held", "{escrow}");
    escrow["id"].as_str().expect("an escrow id").to_owned()
}

/// `POST /escrows/{id}/{action}` (release, refund, dispute) with no body.
fn act(w: &World, who: &Member, id: &str, action: &str) -> HttpResponse {
    request(
        w.app.addr,
        "POST",
        &format!("{}/{action}", escrow_path(id)),
        Some(&who.token),
        None,
        &[],
    )
}

/// `act`, asserting 200 and the resulting state.
fn act_ok(w: &World, who: &Member, id: &str, action: &str, state: &str) -> Value {
    let response = act(w, who, id, action);
    assert_eq!(response.status, 200, "{action}: {}", response.summary());
    let escrow = response.json()["escrow"].clone();
    assert_eq!(escrow["state"], state, "{action}: {escrow}");
    assert_eq!(escrow["id"], id);
    escrow
}

fn resolve(w: &World, who: &Member, id: &str, to_seller: &str, to_buyer: &str) -> HttpResponse {
    w.post(
        &format!("/api/v1/admin/escrows/{id}/resolve"),
        Some(&who.token),
        &json!({"to_seller": to_seller, "to_buyer": to_buyer}),
    )
}

/// The escrow as `who` sees it; panics unless 200.
fn escrow(w: &World, who: &Member, id: &str) -> Value {
    let response = w.get(&escrow_path(id), &who.token);
    assert_eq!(response.status, 200, "get escrow: {}", response.summary());
    response.json()["escrow"].clone()
}

/// `(available, held)` as strings.
fn bal(w: &World, member: &Member) -> (String, String) {
    w.balance(member, BTC)
}

fn pair(available: i64, held: i64) -> (String, String) {
    (btc(available), btc(held))
}

/// Everything a forbidden action must leave alone: both wallets in full and
/// the escrow as an admin sees it.
fn snapshot(w: &World, admin: &Member, buyer: &Member, seller: &Member, id: &str) -> Value {
    let wallet = |m: &Member| {
        let response = w.get("/api/v1/wallet", &m.token);
        assert_eq!(response.status, 200);
        response.json()
    };
    json!({"buyer": wallet(buyer), "seller": wallet(seller), "escrow": escrow(w, admin, id)})
}

/// `GET /admin/check` is ok with no problems.
fn assert_clean(w: &World, admin: &Member) {
    let response = w.get("/api/v1/admin/check", &admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    let body = response.json();
    assert_eq!(body["problems"], json!([]), "{body}");
    assert_eq!(body["ok"], true, "{body}");
}

/// An admin, a buyer holding `funds` btc, and a seller.
fn cast(w: &World, funds: &str) -> (Member, Member, Member) {
    let admin = quick_user(&w.db, "admin", true);
    let buyer = quick_user(&w.db, "buyer", false);
    let seller = quick_user(&w.db, "seller", false);
    w.deposit(&admin, &buyer, BTC, funds);
    (admin, buyer, seller)
}

/// Every page of `GET /escrows?QUERY` with `limit`; the ids in order.
fn all_pages(w: &World, who: &Member, query: &str, limit: usize) -> (Vec<String>, Vec<Value>) {
    let (mut ids, mut items) = (Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/escrows?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(cursor) = &after {
            path.push_str(&format!("&after={cursor}"));
        }
        let response = w.get(&path, &who.token);
        assert_eq!(response.status, 200, "{path}: {}", response.summary());
        let body = response.json();
        let page = body["escrows"].as_array().expect("escrows").clone();
        assert!(page.len() <= limit, "{path}: {body}");
        for item in page {
            ids.push(item["id"].as_str().expect("an id").to_owned());
            items.push(item);
        }
        match &body["next"] {
            Value::Null => return (ids, items),
            Value::String(next) => {
                assert_eq!(
                    Some(next.as_str()),
                    ids.last().map(String::as_str),
                    "{body}"
                );
                after = Some(next.clone());
            }
            other => panic!("next is neither null nor a string: {other}"),
        }
    }
    panic!("paging {query} never ended");
}

// ---- the happy paths -------------------------------------------------------

#[test]
fn creating_an_escrow_moves_the_amount_from_available_to_held_and_release_pays_the_seller() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "2");

    let response = w.post(
        "/api/v1/escrows",
        Some(&buyer.token),
        &json!({"seller": seller.id, "currency": BTC, "amount": "0.5", "memo": "order 17"}),
    );
    assert_eq!(response.status, 201, "{}", response.summary());
    let created = response.json()["escrow"].clone();
    let id = created["id"].as_str().expect("an id").to_owned();
    let keys: Vec<&str> = created
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "id",
        "buyer",
        "seller",
        "currency",
        "amount",
        "state",
        "memo",
        "created_at",
        "release_at",
    ] {
        assert!(keys.contains(&key), "escrow.{key} is missing: {created}");
    }
    assert_eq!(created["buyer"], buyer.id.as_str());
    assert_eq!(created["seller"], seller.id.as_str());
    assert_eq!(created["currency"], BTC);
    assert_eq!(created["amount"], "0.50000000");
    assert_eq!(created["state"], "held");
    assert_eq!(created["memo"], "order 17");
    // The default release time: 14 days.
    assert_eq!(
        seconds_between(&created, "created_at", "release_at"),
        14 * 86_400
    );

    assert_eq!(bal(&w, &buyer), pair(SAT * 3 / 2, SAT / 2));
    assert_eq!(bal(&w, &seller), pair(0, 0));

    let released = act_ok(&w, &buyer, &id, "release", "released");
    assert_eq!(released["amount"], "0.50000000");
    assert_eq!(bal(&w, &buyer), pair(SAT * 3 / 2, 0));
    assert_eq!(bal(&w, &seller), pair(SAT / 2, 0));
    assert_eq!(escrow(&w, &seller, &id)["state"], "released");
    assert_clean(&w, &admin);
}

#[test]
fn a_refund_by_the_seller_returns_the_held_funds_to_the_buyers_available() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let id = create(&w, &buyer, &seller, "0.4", None);
    assert_eq!(bal(&w, &buyer), pair(SAT * 6 / 10, SAT * 4 / 10));

    act_ok(&w, &seller, &id, "refund", "refunded");
    assert_eq!(bal(&w, &buyer), pair(SAT, 0));
    assert_eq!(bal(&w, &seller), pair(0, 0));
    assert_eq!(escrow(&w, &buyer, &id)["state"], "refunded");
    assert_clean(&w, &admin);
}

#[test]
fn an_admin_resolves_a_dispute_by_moving_exactly_the_two_parts() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "3");
    let id = create(&w, &buyer, &seller, "1", None);
    act_ok(&w, &seller, &id, "dispute", "disputed");
    // Disputing moves nothing.
    assert_eq!(bal(&w, &buyer), pair(2 * SAT, SAT));

    let response = resolve(&w, &admin, &id, "0.3", "0.7");
    assert_eq!(response.status, 200, "{}", response.summary());
    let resolved = response.json()["escrow"].clone();
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    assert_eq!(
        resolved["resolution"],
        json!({"to_seller": "0.30000000", "to_buyer": "0.70000000"}),
        "{resolved}"
    );
    assert_eq!(bal(&w, &buyer), pair(2 * SAT + 7 * SAT / 10, 0));
    assert_eq!(bal(&w, &seller), pair(3 * SAT / 10, 0));
    assert_eq!(escrow(&w, &buyer, &id)["state"], "resolved");
    assert_clean(&w, &admin);
}

#[test]
fn a_resolution_may_give_everything_to_either_side() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "2");
    let all_to_buyer = create(&w, &buyer, &seller, "1", None);
    let all_to_seller = create(&w, &buyer, &seller, "1", None);
    act_ok(&w, &buyer, &all_to_buyer, "dispute", "disputed");
    act_ok(&w, &buyer, &all_to_seller, "dispute", "disputed");
    assert_eq!(bal(&w, &buyer), pair(0, 2 * SAT));

    let response = resolve(&w, &admin, &all_to_buyer, "0", "1");
    assert_eq!(response.status, 200, "{}", response.summary());
    assert_eq!(bal(&w, &buyer), pair(SAT, SAT));
    assert_eq!(bal(&w, &seller), pair(0, 0));

    let response = resolve(&w, &admin, &all_to_seller, "1", "0");
    assert_eq!(response.status, 200, "{}", response.summary());
    assert_eq!(bal(&w, &buyer), pair(SAT, 0));
    assert_eq!(bal(&w, &seller), pair(SAT, 0));

    for id in [&all_to_buyer, &all_to_seller] {
        assert_eq!(escrow(&w, &admin, id)["state"], "resolved");
    }
    assert_clean(&w, &admin);
}

#[test]
fn an_admin_may_release_or_refund_any_escrow() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let released = create(&w, &buyer, &seller, "0.25", None);
    let refunded = create(&w, &buyer, &seller, "0.25", None);
    act_ok(&w, &admin, &released, "release", "released");
    act_ok(&w, &admin, &refunded, "refund", "refunded");
    assert_eq!(bal(&w, &buyer), pair(3 * SAT / 4, 0));
    assert_eq!(bal(&w, &seller), pair(SAT / 4, 0));
    assert_clean(&w, &admin);
}

#[test]
fn creating_an_escrow_refuses_bad_input_and_moves_nothing() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let cases: [(Value, u16, &str); 9] = [
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "0"}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "-1"}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": buyer.id, "currency": BTC, "amount": "0.1"}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": seller.id, "currency": "doge", "amount": "0.1"}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "0.1", "release_after": 0}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "0.1", "release_after": 90 * 86_400 + 1}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "0.1", "colour": "red"}),
            400,
            "invalid_field",
        ),
        (
            json!({"seller": "4242424242", "currency": BTC, "amount": "0.1"}),
            404,
            "not_found",
        ),
        (
            json!({"seller": seller.id, "currency": BTC, "amount": "1.00000001"}),
            409,
            "insufficient_funds",
        ),
    ];
    for (body, status, code) in cases {
        let response = w.post("/api/v1/escrows", Some(&buyer.token), &body);
        assert_eq!(response.status, status, "{body}: {}", response.summary());
        response.assert_error(status, code);
    }
    // The longest release time allowed is accepted.
    let id = create(&w, &buyer, &seller, "0.1", Some(90 * 86_400));
    let (ids, _) = all_pages(&w, &buyer, "role=buyer", 100);
    assert_eq!(ids, vec![id]);
    assert_eq!(bal(&w, &buyer), pair(9 * SAT / 10, SAT / 10));
    assert_clean(&w, &admin);
}

// ---- forbidden transitions -------------------------------------------------

/// Who attempts a forbidden move.
#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    Buyer,
    Seller,
}

/// A forbidden move: a party's action (`release`, `refund`, `dispute`) or
/// an admin resolution with its split (to the seller, to the buyer).
#[derive(Clone, Copy, Debug)]
enum Move {
    Act(&'static str),
    Resolve(&'static str, &'static str),
}

/// One row of the forbidden-transition table: what is tried, by whom, and
/// the refusal it gets.
struct Forbidden {
    what: &'static str,
    who: Who,
    attempt: Move,
    status: u16,
    code: &'static str,
}

const fn forbid(
    what: &'static str,
    who: Who,
    attempt: Move,
    status: u16,
    code: &'static str,
) -> Forbidden {
    Forbidden {
        what,
        who,
        attempt,
        status,
        code,
    }
}

use Move::{Act, Resolve};
use Who::{Admin, Buyer, Seller};

// The tables of forbidden moves, by the state of the escrow they are tried on.

#[rustfmt::skip]
const AFTER_REFUND: &[Forbidden] = &[
    forbid("release after refund",         Buyer,  Act("release"),             409, "invalid_state"),
    forbid("admin release after refund",   Admin,  Act("release"),             409, "invalid_state"),
    forbid("refund twice",                 Seller, Act("refund"),              409, "invalid_state"),
    forbid("dispute after refund",         Buyer,  Act("dispute"),             409, "invalid_state"),
];

/// A held escrow: the wrong party, or not a party.
#[rustfmt::skip]
const WHILE_HELD: &[Forbidden] = &[
    forbid("refund by the buyer",          Buyer,  Act("refund"),              403, "forbidden"),
    forbid("release by the seller",        Seller, Act("release"),             403, "forbidden"),
    forbid("dispute by an admin",          Admin,  Act("dispute"),             403, "forbidden"),
    forbid("resolve of a held escrow",     Admin,  Resolve("0.5", "0.5"),      409, "invalid_state"),
];

#[rustfmt::skip]
const AFTER_RELEASE: &[Forbidden] = &[
    forbid("dispute after release",        Seller, Act("dispute"),             409, "invalid_state"),
    forbid("refund after release",         Seller, Act("refund"),              409, "invalid_state"),
    forbid("release twice",                Buyer,  Act("release"),             409, "invalid_state"),
    forbid("resolve of a released escrow", Admin,  Resolve("1", "0"),          409, "invalid_state"),
];

#[rustfmt::skip]
const WHILE_DISPUTED: &[Forbidden] = &[
    forbid("resolve by the buyer",         Buyer,  Resolve("0", "1"),          403, "forbidden"),
    forbid("resolve by the seller",        Seller, Resolve("1", "0"),          403, "forbidden"),
    forbid("a split short of the amount",  Admin,  Resolve("0.3", "0.6"),      400, "invalid_field"),
    forbid("a split above the amount",     Admin,  Resolve("0.5", "0.50000001"), 400, "invalid_field"),
    forbid("a negative part",              Admin,  Resolve("-0.5", "1.5"),     400, "invalid_field"),
    forbid("release of a disputed escrow", Buyer,  Act("release"),             409, "invalid_state"),
    forbid("refund of a disputed escrow",  Seller, Act("refund"),              409, "invalid_state"),
    forbid("dispute twice",                Seller, Act("dispute"),             409, "invalid_state"),
];

#[rustfmt::skip]
const AFTER_RESOLVE: &[Forbidden] = &[
    forbid("resolve twice",                Admin,  Resolve("0.5", "0.5"),      409, "invalid_state"),
    forbid("release after resolve",        Buyer,  Act("release"),             409, "invalid_state"),
];

/// The admin and the two parties of the escrows under test.
struct Cast<'a> {
    w: &'a World,
    admin: &'a Member,
    buyer: &'a Member,
    seller: &'a Member,
}

impl Cast<'_> {
    fn member(&self, who: Who) -> &Member {
        match who {
            Who::Admin => self.admin,
            Who::Buyer => self.buyer,
            Who::Seller => self.seller,
        }
    }

    /// Tries every move of `table` on escrow `id`: each gets its status and
    /// code, and nothing changes (both wallets and the escrow as the admin
    /// sees it).
    fn assert_refused(&self, id: &str, table: &[Forbidden]) {
        for row in table {
            let Cast {
                w,
                admin,
                buyer,
                seller,
            } = *self;
            let before = snapshot(w, admin, buyer, seller, id);
            let who = self.member(row.who);
            let response = match row.attempt {
                Move::Act(action) => act(w, who, id, action),
                Move::Resolve(to_seller, to_buyer) => resolve(w, who, id, to_seller, to_buyer),
            };
            let what = row.what;
            assert_eq!(
                response.status,
                row.status,
                "{what}: {}",
                response.summary()
            );
            response.assert_error(row.status, row.code);
            let after = snapshot(w, admin, buyer, seller, id);
            assert_eq!(before, after, "{what} changed something");
        }
    }
}

#[test]
fn every_forbidden_transition_is_refused_and_changes_nothing() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "10");
    let (a, b, s) = (&admin, &buyer, &seller);
    let cast = Cast {
        w: &w,
        admin: a,
        buyer: b,
        seller: s,
    };

    let refunded = create(&w, b, s, "1", None);
    act_ok(&w, s, &refunded, "refund", "refunded");
    cast.assert_refused(&refunded, AFTER_REFUND);

    let held = create(&w, b, s, "1", None);
    cast.assert_refused(&held, WHILE_HELD);

    let released = create(&w, b, s, "1", None);
    act_ok(&w, b, &released, "release", "released");
    cast.assert_refused(&released, AFTER_RELEASE);

    let disputed = create(&w, b, s, "1", None);
    act_ok(&w, b, &disputed, "dispute", "disputed");
    cast.assert_refused(&disputed, WHILE_DISPUTED);

    let response = resolve(&w, a, &disputed, "0.5", "0.5");
    assert_eq!(response.status, 200, "{}", response.summary());
    cast.assert_refused(&disputed, AFTER_RESOLVE);

    // What did move: 1 refunded, 1 held, 1 released, 1 split in halves.
    assert_eq!(bal(&w, b), pair(10 * SAT - 3 * SAT + SAT / 2, SAT));
    assert_eq!(bal(&w, s), pair(SAT + SAT / 2, 0));
    assert_clean(&w, a);
}

// ---- races -----------------------------------------------------------------

#[test]
fn of_a_release_and_a_refund_racing_on_each_of_100_escrows_exactly_one_wins() {
    const EACH: i64 = SAT / 100;
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let body = json!({"seller": seller.id, "currency": BTC, "amount": btc(EACH)});

    let started = Instant::now();
    let ids = create_escrows_in_slices(w.app.addr, &buyer, &body);
    assert_eq!(ids.len(), RACE_ESCROWS);
    assert_eq!(bal(&w, &buyer), pair(0, SAT));
    let outcomes = race_in_slices(w.app.addr, &buyer, &seller, &ids);

    let mut released = 0i64;
    for (id, release, refund) in &outcomes {
        let state = escrow(&w, &admin, id)["state"].clone();
        match (release, refund) {
            (200, 409) => {
                released += 1;
                assert_eq!(state, "released", "escrow {id}");
            }
            (409, 200) => assert_eq!(state, "refunded", "escrow {id}"),
            other => panic!("escrow {id}: release and refund answered {other:?}"),
        }
    }
    assert_eq!(outcomes.len(), RACE_ESCROWS);
    assert_eq!(bal(&w, &buyer), pair(SAT - released * EACH, 0));
    assert_eq!(bal(&w, &seller), pair(released * EACH, 0));
    assert_clean(&w, &admin);
    eprintln!(
        "100 escrow races ({released} released) took {:?}",
        started.elapsed()
    );
}

/// Escrows raced on, and the threads (slices) that create and race them.
const RACE_ESCROWS: usize = 100;
const RACE_SLICES: usize = 10;

/// RACE_ESCROWS escrows of `body` by `buyer`, created from RACE_SLICES
/// threads at once; their ids.
fn create_escrows_in_slices(addr: SocketAddr, buyer: &Member, body: &Value) -> Vec<String> {
    std::thread::scope(|scope| {
        let creators: Vec<_> = (0..RACE_SLICES)
            .map(|_| {
                let token = buyer.token.as_str();
                scope.spawn(move || {
                    (0..RACE_ESCROWS / RACE_SLICES)
                        .map(|_| {
                            let response = request(
                                addr,
                                "POST",
                                "/api/v1/escrows",
                                Some(token),
                                Some(body),
                                &[],
                            );
                            assert_eq!(response.status, 201, "{}", response.summary());
                            response.json()["escrow"]["id"]
                                .as_str()
                                .expect("an id")
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        creators
            .into_iter()
            .flat_map(|c| c.join().expect("a creator thread"))
            .collect()
    })
}

/// Each slice races release against refund on its escrows, one at a time;
/// each escrow's id and the two statuses.
fn race_in_slices(
    addr: SocketAddr,
    buyer: &Member,
    seller: &Member,
    ids: &[String],
) -> Vec<(String, u16, u16)> {
    std::thread::scope(|scope| {
        let slices: Vec<_> = ids
            .chunks(RACE_ESCROWS / RACE_SLICES)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for id in chunk {
                        let (release, refund) = race_release_and_refund(addr, buyer, seller, id);
                        for (what, response) in [("release", &release), ("refund", &refund)] {
                            if response.status == 409 {
                                response.assert_error(409, "invalid_state");
                            } else {
                                assert_eq!(response.status, 200, "{what}: {}", response.summary());
                            }
                        }
                        out.push((id.clone(), release.status, refund.status));
                    }
                    out
                })
            })
            .collect();
        slices
            .into_iter()
            .flat_map(|s| s.join().expect("a racing thread"))
            .collect()
    })
}

/// The buyer's release and the seller's refund of escrow `id`, sent from two
/// threads released by a barrier; their answers.
fn race_release_and_refund(
    addr: SocketAddr,
    buyer: &Member,
    seller: &Member,
    id: &str,
) -> (HttpResponse, HttpResponse) {
    let barrier = Barrier::new(2);
    std::thread::scope(|inner| {
        let go = |who: &Member, action: &'static str| {
            let barrier = &barrier;
            let token = who.token.clone();
            let path = format!("{}/{action}", escrow_path(id));
            inner.spawn(move || {
                let mut client = Client::connect(addr);
                let request = json_request("POST", &path, Some(&token), None, &[]);
                barrier.wait();
                client.send(&request);
                client.read_response()
            })
        };
        let release = go(buyer, "release");
        let refund = go(seller, "refund");
        (
            release.join().expect("the release thread"),
            refund.join().expect("the refund thread"),
        )
    })
}

// ---- automatic release -----------------------------------------------------

/// Polls the escrow as `who` until it is in `state` or `within` passes.
fn wait_for_state(addr: SocketAddr, who: &Member, id: &str, state: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let response = request(addr, "GET", &escrow_path(id), Some(&who.token), None, &[]);
        assert_eq!(response.status, 200, "{}", response.summary());
        let now = response.json()["escrow"]["state"].clone();
        if now == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "escrow {id} is still {now} after {within:?}, expected {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_escrow_releases_itself_to_the_seller_once_release_after_has_passed() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let response = try_create(&w, &buyer, &seller, "0.6", Some(2));
    assert_eq!(response.status, 201, "{}", response.summary());
    let created = response.json()["escrow"].clone();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(seconds_between(&created, "created_at", "release_at"), 2);
    // Not released before its time.
    assert_eq!(escrow(&w, &buyer, &id)["state"], "held");
    assert_eq!(bal(&w, &buyer), pair(4 * SAT / 10, 6 * SAT / 10));

    let started = Instant::now();
    wait_for_state(w.app.addr, &seller, &id, "released", Duration::from_secs(4));
    eprintln!("automatic release seen after {:?}", started.elapsed());
    assert_eq!(bal(&w, &buyer), pair(4 * SAT / 10, 0));
    assert_eq!(bal(&w, &seller), pair(6 * SAT / 10, 0));
    assert_clean(&w, &admin);
}

#[test]
fn a_disputed_escrow_is_not_released_automatically() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let disputed = create(&w, &buyer, &seller, "0.5", Some(1));
    act_ok(&w, &buyer, &disputed, "dispute", "disputed");
    // A sibling escrow with the same release time shows the sweeper ran.
    let control = create(&w, &buyer, &seller, "0.25", Some(1));
    wait_for_state(
        w.app.addr,
        &seller,
        &control,
        "released",
        Duration::from_secs(4),
    );
    std::thread::sleep(Duration::from_secs(3));

    assert_eq!(escrow(&w, &seller, &disputed)["state"], "disputed");
    assert_eq!(bal(&w, &buyer), pair(SAT / 4, SAT / 2));
    assert_eq!(bal(&w, &seller), pair(SAT / 4, 0));
    assert_clean(&w, &admin);
}

/// 1 btc deposited for `buyer`, then an escrow of 0.3 btc to `seller`
/// released automatically after 2 s; its id.
fn a_released_in_two_seconds_escrow(
    addr: SocketAddr,
    admin: &Member,
    buyer: &Member,
    seller: &Member,
) -> String {
    let deposit = json!({"user_id": buyer.id, "currency": BTC, "amount": "1", "reference": "tx-1"});
    let response = request(
        addr,
        "POST",
        "/api/v1/admin/deposits",
        Some(&admin.token),
        Some(&deposit),
        &[],
    );
    assert_eq!(response.status, 201, "deposit: {}", response.summary());
    let body = json!({"seller": seller.id, "currency": BTC, "amount": "0.3", "release_after": 2});
    let response = request(
        addr,
        "POST",
        "/api/v1/escrows",
        Some(&buyer.token),
        Some(&body),
        &[],
    );
    assert_eq!(response.status, 201, "create: {}", response.summary());
    response.json()["escrow"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// `who`'s btc balance as served at `addr`.
fn btc_balance_at(addr: SocketAddr, who: &Member) -> Value {
    let response = request(addr, "GET", "/api/v1/wallet", Some(&who.token), None, &[]);
    assert_eq!(response.status, 200, "{}", response.summary());
    response.json()["balances"][BTC].clone()
}

#[test]
fn automatic_release_is_picked_up_after_a_restart_of_the_binary() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    // The first admin, the way docs/running.md says; it also creates the database.
    create_admin(&dir, PASSWORD);
    let buyer = quick_user(&db, "buyer", false);
    let seller = quick_user(&db, "seller", false);

    let served = Served::start(&dir);
    let addr = served.addr;
    let admin = log_in_at(addr, "admin", PASSWORD);
    let id = a_released_in_two_seconds_escrow(addr, &admin, &buyer, &seller);
    served.stop();

    // The release time passes while nothing runs.
    std::thread::sleep(Duration::from_secs(3));
    let served = Served::start(&dir);
    let addr = served.addr;
    let response = request(
        addr,
        "GET",
        &escrow_path(&id),
        Some(&buyer.token),
        None,
        &[],
    );
    assert_eq!(response.status, 200, "{}", response.summary());
    let started = Instant::now();
    wait_for_state(addr, &buyer, &id, "released", Duration::from_secs(2));
    eprintln!("released {:?} after the restart", started.elapsed());

    let wallet = |who: &Member| btc_balance_at(addr, who);
    assert_eq!(
        wallet(&seller),
        json!({"available": "0.30000000", "held": "0.00000000"})
    );
    assert_eq!(
        wallet(&buyer),
        json!({"available": "0.70000000", "held": "0.00000000"})
    );
    let response = request(
        addr,
        "GET",
        "/api/v1/admin/check",
        Some(&admin.token),
        None,
        &[],
    );
    assert_eq!(response.json()["ok"], true, "{}", response.summary());
    served.stop();
}

// ---- visibility ------------------------------------------------------------

#[test]
fn a_third_user_gets_404_for_someone_elses_escrow_on_every_route_and_admins_see_it() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let stranger = quick_user(&w.db, "stranger", false);
    w.deposit(&admin, &stranger, BTC, "1");
    let id = create(&w, &buyer, &seller, "0.5", None);
    // The stranger's own escrow, so their list is not empty.
    let own = create(&w, &stranger, &seller, "0.1", None);

    let before = snapshot(&w, &admin, &buyer, &seller, &id);
    let response = w.get(&escrow_path(&id), &stranger.token);
    response.assert_error(404, "not_found");
    for action in ["release", "refund", "dispute"] {
        act(&w, &stranger, &id, action).assert_error(404, "not_found");
    }
    // An id that does not exist looks the same.
    w.get(&escrow_path("4242424242"), &stranger.token)
        .assert_error(404, "not_found");
    act(&w, &stranger, "4242424242", "release").assert_error(404, "not_found");
    w.get(&escrow_path("not-an-id"), &stranger.token)
        .assert_error(404, "not_found");
    // Resolving is for admins only, whoever asks.
    resolve(&w, &stranger, &id, "0.5", "0").assert_error(403, "forbidden");
    assert_eq!(snapshot(&w, &admin, &buyer, &seller, &id), before);

    for query in ["", "role=buyer", "role=seller", "state=held"] {
        let (ids, _) = all_pages(&w, &stranger, query, 100);
        assert!(!ids.contains(&id), "{query}: {ids:?}");
        if query != "role=seller" {
            assert_eq!(ids, vec![own.clone()], "{query}");
        }
    }
    // Without a token: 401, not a hint either way.
    let response = request(w.app.addr, "GET", &escrow_path(&id), None, None, &[]);
    response.assert_error(401, "unauthenticated");

    // The parties and an admin see it.
    for who in [&buyer, &seller, &admin] {
        let seen = escrow(&w, who, &id);
        assert_eq!(seen["id"], id.as_str());
        assert_eq!(seen["buyer"], buyer.id.as_str());
    }
    let (seller_ids, _) = all_pages(&w, &seller, "role=seller", 100);
    assert_eq!(seller_ids, vec![own, id]);
    assert_clean(&w, &admin);
}

// ---- money held is not money available -------------------------------------

#[test]
fn held_funds_cannot_be_spent_by_transfers() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let friend = quick_user(&w.db, "friend", false);
    create(&w, &buyer, &seller, "0.6", None);

    let transfer = |amount: &str| {
        w.post(
            "/api/v1/transfers",
            Some(&buyer.token),
            &json!({"to": friend.id, "currency": BTC, "amount": amount}),
        )
    };
    transfer("0.5").assert_error(409, "insufficient_funds");
    transfer("1").assert_error(409, "insufficient_funds");
    assert_eq!(bal(&w, &buyer), pair(4 * SAT / 10, 6 * SAT / 10));
    assert_eq!(bal(&w, &friend), pair(0, 0));
    // Nor by another escrow.
    try_create(&w, &buyer, &seller, "0.40000001", None).assert_error(409, "insufficient_funds");

    // Exactly what is available can go.
    let response = transfer("0.4");
    assert_eq!(response.status, 201, "{}", response.summary());
    assert_eq!(bal(&w, &buyer), pair(0, 6 * SAT / 10));
    assert_eq!(bal(&w, &friend), pair(4 * SAT / 10, 0));
    assert_clean(&w, &admin);
}

// ---- lists -----------------------------------------------------------------

#[test]
fn paging_escrows_by_role_and_state_returns_every_escrow_exactly_once_newest_first() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "10");
    let other = quick_user(&w.db, "other", false);
    w.deposit(&admin, &other, BTC, "10");

    // The buyer buys 7 times; `other` buys 5 times from the buyer.
    let bought: Vec<String> = (0..7)
        .map(|_| create(&w, &buyer, &seller, "0.1", None))
        .collect();
    let sold: Vec<String> = (0..5)
        .map(|_| create(&w, &other, &buyer, "0.1", None))
        .collect();
    for id in [&bought[1], &bought[4], &bought[6]] {
        act_ok(&w, &buyer, id, "release", "released");
    }
    act_ok(&w, &buyer, &sold[2], "refund", "refunded");

    let newest_first =
        |ids: &[&String]| -> Vec<String> { ids.iter().rev().map(|s| (*s).clone()).collect() };
    let bought_refs: Vec<&String> = bought.iter().collect();
    let sold_refs: Vec<&String> = sold.iter().collect();
    let all_refs: Vec<&String> = bought.iter().chain(&sold).collect();

    for limit in [1, 2, 3, 100] {
        let (ids, items) = all_pages(&w, &buyer, "role=buyer", limit);
        assert_eq!(ids, newest_first(&bought_refs), "role=buyer limit={limit}");
        assert!(items.iter().all(|e| e["buyer"] == buyer.id.as_str()));

        let (ids, items) = all_pages(&w, &buyer, "role=seller", limit);
        assert_eq!(ids, newest_first(&sold_refs), "role=seller limit={limit}");
        assert!(items.iter().all(|e| e["seller"] == buyer.id.as_str()));

        let (ids, _) = all_pages(&w, &buyer, "", limit);
        assert_eq!(ids, newest_first(&all_refs), "no role, limit={limit}");
    }

    let (ids, items) = all_pages(&w, &buyer, "role=buyer&state=released", 2);
    assert_eq!(ids, newest_first(&[&bought[1], &bought[4], &bought[6]]));
    assert!(items.iter().all(|e| e["state"] == "released"));
    let (ids, _) = all_pages(&w, &buyer, "role=buyer&state=held", 1);
    assert_eq!(
        ids,
        newest_first(&[&bought[0], &bought[2], &bought[3], &bought[5]])
    );
    let (ids, _) = all_pages(&w, &buyer, "role=seller&state=refunded", 1);
    assert_eq!(ids, vec![sold[2].clone()]);
    let (ids, _) = all_pages(&w, &buyer, "state=disputed", 5);
    assert!(ids.is_empty());

    // The default page size is 20; this list fits in one page.
    let response = w.get("/api/v1/escrows", &buyer.token);
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["escrows"].as_array().map(Vec::len), Some(12));
    assert_eq!(body["next"], Value::Null);

    // The seller's view of the buyer's escrows is the same set.
    let (ids, _) = all_pages(&w, &seller, "role=seller", 4);
    assert_eq!(ids, newest_first(&bought_refs));
    assert_clean(&w, &admin);
}

#[test]
fn a_bad_role_state_limit_or_cursor_in_the_escrow_list_is_a_400() {
    let w = world();
    let (_admin, buyer, seller) = cast(&w, "1");
    let id = create(&w, &buyer, &seller, "0.1", None);
    let cases = [
        ("role=owner", "role"),
        ("role=", "role"),
        ("role=BUYER", "role"),
        ("state=open", "state"),
        ("state=", "state"),
        ("role=buyer&state=Held", "state"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("after=xyz", "after"),
    ];
    for (query, field) in cases {
        let response = w.get(&format!("/api/v1/escrows?{query}"), &buyer.token);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{query}: {error}");
    }
    // A cursor from someone else's list is not a cursor of this one.
    let stranger = quick_user(&w.db, "stranger", false);
    let response = w.get(&format!("/api/v1/escrows?after={id}"), &stranger.token);
    assert_eq!(response.assert_error(404, "not_found")["field"], "after");
}

// ---- idempotency -----------------------------------------------------------

#[test]
fn a_repeated_idempotency_key_on_post_escrows_replays_and_creates_no_second_escrow() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let body = json!({"seller": seller.id, "currency": BTC, "amount": "0.2", "memo": "once"});
    let key = [("Idempotency-Key", "order-17-hold")];

    let first = w.post_with("/api/v1/escrows", Some(&buyer.token), &body, &key);
    assert_eq!(first.status, 201, "{}", first.summary());
    assert_eq!(first.header("idempotent-replayed"), None);
    let id = first.json()["escrow"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    for _ in 0..2 {
        let again = w.post_with("/api/v1/escrows", Some(&buyer.token), &body, &key);
        assert_eq!(again.status, 201, "{}", again.summary());
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.json(), first.json());
    }
    assert_eq!(bal(&w, &buyer), pair(8 * SAT / 10, 2 * SAT / 10));
    let (ids, _) = all_pages(&w, &buyer, "role=buyer", 100);
    assert_eq!(ids, vec![id.clone()]);

    // The same key with another request: 422, nothing created.
    let other = json!({"seller": seller.id, "currency": BTC, "amount": "0.3", "memo": "once"});
    w.post_with("/api/v1/escrows", Some(&buyer.token), &other, &key)
        .assert_error(422, "idempotency_mismatch");
    // Keys are per caller: the seller's use of it is their own request.
    let seller_body = json!({"seller": buyer.id, "currency": BTC, "amount": "0.2"});
    w.post_with("/api/v1/escrows", Some(&seller.token), &seller_body, &key)
        .assert_error(409, "insufficient_funds");
    // A new key is a new escrow.
    let fresh = w.post_with(
        "/api/v1/escrows",
        Some(&buyer.token),
        &body,
        &[("Idempotency-Key", "order-18-hold")],
    );
    assert_eq!(fresh.status, 201, "{}", fresh.summary());
    assert_ne!(fresh.json()["escrow"]["id"], id.as_str());
    assert_eq!(bal(&w, &buyer), pair(6 * SAT / 10, 4 * SAT / 10));
    let (ids, _) = all_pages(&w, &buyer, "role=buyer", 100);
    assert_eq!(ids.len(), 2);
    assert_clean(&w, &admin);
}

#[test]
fn a_repeated_idempotency_key_on_an_escrow_action_replays_the_200() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "1");
    let id = create(&w, &buyer, &seller, "0.5", None);
    let path = format!("{}/release", escrow_path(&id));
    let key = [("Idempotency-Key", "release-once")];
    let first = request(w.app.addr, "POST", &path, Some(&buyer.token), None, &key);
    assert_eq!(first.status, 200, "{}", first.summary());
    let again = request(w.app.addr, "POST", &path, Some(&buyer.token), None, &key);
    assert_eq!(again.status, 200, "{}", again.summary());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    // Without the key, a second release is a conflict.
    act(&w, &buyer, &id, "release").assert_error(409, "invalid_state");
    // The same key on another action of the same escrow is another request.
    let dispute = format!("{}/dispute", escrow_path(&id));
    request(w.app.addr, "POST", &dispute, Some(&buyer.token), None, &key)
        .assert_error(422, "idempotency_mismatch");
    assert_eq!(bal(&w, &seller), pair(SAT / 2, 0));
    assert_clean(&w, &admin);
}

// ---- the ledger check ------------------------------------------------------

#[test]
fn the_ledger_check_is_clean_after_every_kind_of_escrow_movement() {
    let w = world();
    let (admin, buyer, seller) = cast(&w, "5");
    assert_clean(&w, &admin);
    let released = create(&w, &buyer, &seller, "0.1", None);
    let refunded = create(&w, &buyer, &seller, "0.2", None);
    let split = create(&w, &buyer, &seller, "0.3", None);
    let to_buyer = create(&w, &buyer, &seller, "0.4", None);
    let disputed = create(&w, &buyer, &seller, "0.5", None);
    let open = create(&w, &buyer, &seller, "0.6", None);
    let automatic = create(&w, &buyer, &seller, "0.7", Some(1));
    assert_clean(&w, &admin);

    act_ok(&w, &buyer, &released, "release", "released");
    act_ok(&w, &seller, &refunded, "refund", "refunded");
    for id in [&split, &to_buyer, &disputed] {
        act_ok(&w, &seller, id, "dispute", "disputed");
    }
    assert_clean(&w, &admin);
    assert_eq!(resolve(&w, &admin, &split, "0.1", "0.2").status, 200);
    assert_eq!(resolve(&w, &admin, &to_buyer, "0", "0.4").status, 200);
    // A transfer of the seller's proceeds, in the middle of it all.
    let response = w.post(
        "/api/v1/transfers",
        Some(&seller.token),
        &json!({"to": buyer.id, "currency": BTC, "amount": "0.05"}),
    );
    assert_eq!(response.status, 201, "{}", response.summary());
    wait_for_state(
        w.app.addr,
        &buyer,
        &automatic,
        "released",
        Duration::from_secs(4),
    );
    assert_eq!(escrow(&w, &admin, &open)["state"], "held");

    // The buyer: 5 - 2.8 held + 0.2 refunded + 0.2 + 0.4 resolved + 0.05
    // sent back; held, the disputed 0.5 and the open 0.6. The seller: 0.1 +
    // 0.1 + 0.7 - 0.05.
    assert_eq!(bal(&w, &buyer), pair(305 * SAT / 100, 11 * SAT / 10));
    assert_eq!(bal(&w, &seller), pair(9 * SAT / 10 - 5 * SAT / 100, 0));
    assert_clean(&w, &admin);
    let problems = w.check(&admin);
    assert!(problems.is_empty(), "{problems:?}");
}
