//! Orders and platform fees (docs/api.md: Orders; docs/ledger.md:
//! invariants 7-10): placing, every move of the state table allowed and
//! refused (403/404/409, nothing changing), the stock race, fee arithmetic,
//! refusals, Idempotency-Key, order escrows behind the escrow routes,
//! paging, fee withdrawals, the timers (also across a restart of the real
//! binary) and the ledger check catching a corrupted order.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{Served, create_admin, run, souk};
use crate::client::{Member, PASSWORD, World, log_in_at, open_db, quick_user, request, world_with};
use crate::helpers::{HttpResponse, TempDir};

const BTC: &str = "btc";
const SAT: i64 = 100_000_000;
const ORDERS: &str = "/api/v1/orders";

// ---- local helpers ---------------------------------------------------------

/// A btc amount in satoshis as the API writes it: exactly 8 decimals.
fn btc(sat: i64) -> String {
    format!("{}.{:08}", sat / SAT, sat % SAT)
}

/// Unix seconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_seconds(text: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| -> i64 {
        text.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an RFC 3339 time: {text}"))
    };
    let (y, m, d) = (number(0..4), number(5..7), number(8..10));
    let (hh, mm, ss) = (number(11..13), number(14..16), number(17..19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss
}

fn time_of(order: &Value, key: &str) -> i64 {
    unix_seconds(order[key].as_str().expect("a time string"))
}

/// An admin, a buyer with `funds` btc, a seller and a stranger.
struct Shop {
    w: World,
    admin: Member,
    buyer: Member,
    seller: Member,
    stranger: Member,
}

fn shop_with(funds: &str, tweak: impl FnOnce(&mut souk::config::Config)) -> Shop {
    let w = world_with(tweak);
    let admin = quick_user(&w.db, "admin", true);
    let buyer = quick_user(&w.db, "buyer", false);
    let seller = quick_user(&w.db, "seller", false);
    let stranger = quick_user(&w.db, "stranger", false);
    w.deposit(&admin, &buyer, BTC, funds);
    Shop {
        w,
        admin,
        buyer,
        seller,
        stranger,
    }
}

fn shop(funds: &str) -> Shop {
    shop_with(funds, |_| {})
}

impl Shop {
    /// A btc listing of the seller's at `price_sat` with `quantity` in stock.
    fn listing(&self, price_sat: i64, quantity: i64) -> String {
        let body = json!({"title": "Brass lamp", "currency": BTC, "price": btc(price_sat), "quantity": quantity});
        let response = self
            .w
            .post("/api/v1/listings", Some(&self.seller.token), &body);
        assert_eq!(response.status, 201, "listing: {}", response.summary());
        response.json()["listing"]["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    fn try_place(&self, who: &Member, body: &Value) -> HttpResponse {
        self.w.post(ORDERS, Some(&who.token), body)
    }

    /// Places an order of the buyer's; panics unless 201; the order.
    fn place(&self, listing: &str, quantity: i64) -> Value {
        let body = json!({"listing": listing, "quantity": quantity});
        let response = self.try_place(&self.buyer, &body);
        assert_eq!(response.status, 201, "place: {}", response.summary());
        response.json()["order"].clone()
    }

    fn act(&self, who: &Member, id: &str, action: &str, body: Option<&Value>) -> HttpResponse {
        let path = if action == "resolve" {
            format!("/api/v1/admin/orders/{id}/resolve")
        } else {
            format!("{ORDERS}/{id}/{action}")
        };
        request(self.w.app.addr, "POST", &path, Some(&who.token), body, &[])
    }

    /// `act`, asserting 200 and the state reached; the order.
    fn act_ok(
        &self,
        who: &Member,
        id: &str,
        action: &str,
        body: Option<&Value>,
        to: &str,
    ) -> Value {
        let response = self.act(who, id, action, body);
        assert_eq!(response.status, 200, "{action}: {}", response.summary());
        let order = response.json()["order"].clone();
        assert_eq!(order["state"], to, "{action}: {order}");
        order
    }

    fn order(&self, who: &Member, id: &str) -> Value {
        let response = self.w.get(&format!("{ORDERS}/{id}"), &who.token);
        assert_eq!(response.status, 200, "get order: {}", response.summary());
        response.json()["order"].clone()
    }

    fn stock(&self, listing: &str) -> i64 {
        let response = self
            .w
            .get(&format!("/api/v1/listings/{listing}"), &self.seller.token);
        assert_eq!(response.status, 200, "{}", response.summary());
        response.json()["listing"]["quantity"]
            .as_i64()
            .expect("a quantity")
    }

    fn wallet(&self, who: &Member) -> (String, String) {
        self.w.balance(who, BTC)
    }

    fn fees(&self) -> Value {
        let response = self.w.get("/api/v1/admin/fees", &self.admin.token);
        assert_eq!(response.status, 200, "{}", response.summary());
        response.json()["fees"].clone()
    }

    /// Everything a refused request must leave alone.
    fn snapshot(&self, listing: &str, order: Option<&str>) -> Value {
        json!({
            "buyer": self.wallet(&self.buyer),
            "seller": self.wallet(&self.seller),
            "fees": self.fees(),
            "stock": self.stock(listing),
            "order": order.map(|id| self.order(&self.admin, id)),
        })
    }

    fn assert_clean(&self) {
        let problems = self.w.check(&self.admin);
        assert!(problems.is_empty(), "ledger check: {problems:?}");
    }

    /// An order of `listing` brought into `state` by its parties.
    fn order_in(&self, listing: &str, state: &str) -> String {
        let id = self.place(listing, 1)["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let dispute = json!({"reason": "not as described"});
        let split = json!({"to_seller": btc(1), "to_buyer": btc(99)});
        let steps: &[(&Member, &str, Option<&Value>, &str)] = match state {
            "paid" => &[],
            "shipped" => &[(&self.seller, "ship", None, "shipped")],
            "completed" => &[
                (&self.seller, "ship", None, "shipped"),
                (&self.buyer, "confirm", None, "completed"),
            ],
            "cancelled" => &[(&self.buyer, "cancel", None, "cancelled")],
            "disputed" => &[(&self.buyer, "dispute", Some(&dispute), "disputed")],
            "resolved" => &[
                (&self.buyer, "dispute", Some(&dispute), "disputed"),
                (&self.admin, "resolve", Some(&split), "resolved"),
            ],
            other => panic!("no way to {other}"),
        };
        for (who, action, body, to) in steps {
            self.act_ok(who, &id, action, *body, to);
        }
        id
    }
}

// ---- placing ---------------------------------------------------------------

/// An order has exactly the documented fields.
fn assert_order_fields(order: &Value) {
    let mut got: Vec<&str> = order
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    #[rustfmt::skip]
    let mut expected = vec![
        "id", "listing", "title", "buyer", "seller", "currency", "unit_price",
        "quantity", "amount", "fee", "state", "memo", "tracking",
        "dispute_reason", "escrow", "created_at", "updated_at", "ship_by",
        "confirm_by",
    ];
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected, "{order}");
}

#[test]
fn placing_an_order_reserves_the_stock_and_holds_the_amount_in_its_escrow() {
    let s = shop("1");
    let listing = s.listing(2_500, 5);
    // Cached before the order: the order must invalidate it.
    assert_eq!(s.stock(&listing), 5);
    let body = json!({"listing": listing, "quantity": 3, "memo": "gift wrap"});
    let response = s.try_place(&s.buyer, &body);
    assert_eq!(response.status, 201, "{}", response.summary());
    let order = response.json()["order"].clone();
    assert_order_fields(&order);
    assert_eq!(order["state"], "paid");
    assert_eq!(order["listing"], listing.as_str());
    assert_eq!(order["title"], "Brass lamp");
    assert_eq!(order["buyer"], s.buyer.id.as_str());
    assert_eq!(order["seller"], s.seller.id.as_str());
    assert_eq!(order["unit_price"], btc(2_500));
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["amount"], btc(7_500));
    assert_eq!(order["fee"], btc(0));
    assert_eq!(order["memo"], "gift wrap");
    assert_eq!(order["tracking"], Value::Null);
    assert_eq!(order["dispute_reason"], Value::Null);
    assert_eq!(order["confirm_by"], Value::Null);
    assert_eq!(
        time_of(&order, "ship_by") - time_of(&order, "created_at"),
        604_800,
        "SOUK_ORDER_SHIP_WITHIN's default"
    );
    assert_eq!(s.stock(&listing), 2);
    assert_eq!(s.wallet(&s.buyer), (btc(SAT - 7_500), btc(7_500)));
    let id = order["id"].as_str().expect("an id");
    assert_eq!(s.order(&s.seller, id), order);
    assert_eq!(s.order(&s.admin, id), order);
    let response = s.w.get(&format!("{ORDERS}/{id}"), &s.stranger.token);
    response.assert_error(404, "not_found");
    // Shipping sets the confirm timer and the tracking text.
    let shipped = s.act_ok(
        &s.seller,
        id,
        "ship",
        Some(&json!({"tracking": "DHL 123"})),
        "shipped",
    );
    assert_eq!(shipped["tracking"], "DHL 123");
    assert_eq!(
        time_of(&shipped, "confirm_by") - time_of(&shipped, "updated_at"),
        1_209_600,
        "SOUK_ORDER_CONFIRM_WITHIN's default"
    );
    s.assert_clean();
}

/// Every state × action × actor: the state table's moves succeed, every
/// other one is refused with the rule's status and changes nothing.
#[test]
fn the_state_table_allows_exactly_its_moves_and_refusals_change_nothing() {
    let s = shop("10");
    let listing = s.listing(100, 1000);
    let states = [
        "paid",
        "shipped",
        "disputed",
        "completed",
        "cancelled",
        "resolved",
    ];
    let actions = ["ship", "cancel", "confirm", "dispute", "resolve"];
    let dispute = json!({"reason": "broken"});
    let split = json!({"to_seller": btc(40), "to_buyer": btc(60)});
    let tracking = json!({"tracking": "post"});
    for state in states {
        for action in actions {
            for actor in ["buyer", "seller", "admin", "stranger"] {
                let who = match actor {
                    "buyer" => &s.buyer,
                    "seller" => &s.seller,
                    "admin" => &s.admin,
                    _ => &s.stranger,
                };
                let (expected, to) = expected(state, action, actor);
                let id = s.order_in(&listing, state);
                let body = match action {
                    "dispute" => Some(&dispute),
                    "resolve" => Some(&split),
                    "ship" => Some(&tracking),
                    _ => None,
                };
                let before = s.snapshot(&listing, Some(&id));
                let response = s.act(who, &id, action, body);
                let ctx = format!("{actor} {action} on {state}: {}", response.summary());
                assert_eq!(response.status, expected, "{ctx}");
                if expected == 200 {
                    assert_eq!(response.json()["order"]["state"], to, "{ctx}");
                } else {
                    let code = match expected {
                        403 => "forbidden",
                        404 => "not_found",
                        _ => "invalid_state",
                    };
                    response.assert_error(expected, code);
                    assert_eq!(s.snapshot(&listing, Some(&id)), before, "{ctx}");
                }
            }
        }
    }
    let response = s.act(&s.buyer, "12345", "cancel", None);
    response.assert_error(404, "not_found");
    s.assert_clean();
}

/// The rules, written out independently of the code's table: 404 for a
/// stranger, 403 for a role that never takes the action, 409 for the right
/// role in the wrong state.
fn expected(state: &str, action: &str, actor: &str) -> (u16, &'static str) {
    let open = matches!(state, "paid" | "shipped");
    match (actor, action) {
        // The resolve route is for admins: anyone else is refused as such.
        (_, "resolve") if actor != "admin" => (403, ""),
        ("admin", "resolve") if state == "disputed" => (200, "resolved"),
        ("admin", "resolve") => (409, ""),
        ("stranger", _) => (404, ""),
        ("admin", _) => (403, ""),
        ("buyer", "ship") | ("seller", "confirm") => (403, ""),
        ("seller", "ship") if state == "paid" => (200, "shipped"),
        ("buyer", "cancel") if state == "paid" => (200, "cancelled"),
        ("seller", "cancel") if open => (200, "cancelled"),
        ("buyer", "confirm") if state == "shipped" => (200, "completed"),
        (_, "dispute") if open => (200, "disputed"),
        _ => (409, ""),
    }
}

#[test]
fn cancelling_refunds_in_full_and_returns_stock_only_when_not_shipped() {
    let s = shop("1");
    let listing = s.listing(1_000, 10);
    let paid = s.place(&listing, 4)["id"].as_str().expect("id").to_owned();
    let shipped = s.place(&listing, 3)["id"].as_str().expect("id").to_owned();
    s.act_ok(&s.seller, &shipped, "ship", None, "shipped");
    assert_eq!(s.stock(&listing), 3);
    s.act_ok(&s.buyer, &paid, "cancel", None, "cancelled");
    assert_eq!(s.stock(&listing), 7, "a paid order's stock comes back");
    s.act_ok(&s.seller, &shipped, "cancel", None, "cancelled");
    assert_eq!(s.stock(&listing), 7, "a shipped order's stock does not");
    assert_eq!(s.wallet(&s.buyer), (btc(SAT), btc(0)));
    assert_eq!(s.wallet(&s.seller), (btc(0), btc(0)));
    s.assert_clean();
}

#[test]
fn a_hundred_racing_orders_for_ten_in_stock_place_exactly_ten() {
    let s = shop("1");
    let listing = s.listing(1_000, 10);
    let barrier = Barrier::new(100);
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                scope.spawn(|| {
                    let body = json!({"listing": listing});
                    barrier.wait();
                    let response = s.try_place(&s.buyer, &body);
                    let code = if response.status == 201 {
                        String::new()
                    } else {
                        response.error()["code"].as_str().unwrap_or("").to_owned()
                    };
                    (response.status, code)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect()
    });
    let placed = statuses.iter().filter(|(s, _)| *s == 201).count();
    let refused = statuses
        .iter()
        .filter(|(s, c)| *s == 409 && c == "out_of_stock")
        .count();
    assert_eq!((placed, refused), (10, 90), "{statuses:?}");
    assert_eq!(s.stock(&listing), 0);
    assert_eq!(s.wallet(&s.buyer), (btc(SAT - 10_000), btc(10_000)));
    s.assert_clean();
}

/// Of two racing moves on one order exactly one wins, and the loser moves
/// nothing: the buyer cancels while the seller ships, order after order.
#[test]
fn of_two_racing_moves_exactly_one_wins() {
    let s = shop("1");
    let listing = s.listing(1_000, 100);
    for round in 0..20 {
        let id = s.place(&listing, 1)["id"].as_str().expect("id").to_owned();
        let barrier = Barrier::new(2);
        let (cancel, ship) = std::thread::scope(|scope| {
            let cancel = scope.spawn(|| {
                barrier.wait();
                s.act(&s.buyer, &id, "cancel", None).status
            });
            let ship = scope.spawn(|| {
                barrier.wait();
                s.act(&s.seller, &id, "ship", None).status
            });
            (cancel.join().expect("cancel"), ship.join().expect("ship"))
        });
        let state = s.order(&s.buyer, &id)["state"].clone();
        match (cancel, ship) {
            (200, 409) => assert_eq!(state, "cancelled", "round {round}"),
            (409, 200) => assert_eq!(state, "shipped", "round {round}"),
            other => panic!("round {round}: cancel and ship answered {other:?}"),
        }
    }
    s.assert_clean();
}

#[test]
fn an_order_keeps_the_title_and_price_it_was_placed_at() {
    let s = shop("1");
    let listing = s.listing(1_000, 10);
    let order = s.place(&listing, 2);
    let edit = json!({"title": "Golden lamp", "price": btc(9_000)});
    let response = s.w.patch(
        &format!("/api/v1/listings/{listing}"),
        &s.seller.token,
        &edit,
    );
    assert_eq!(response.status, 200, "{}", response.summary());
    let id = order["id"].as_str().expect("id");
    let now = s.order(&s.buyer, id);
    assert_eq!(now["title"], "Brass lamp");
    assert_eq!(now["unit_price"], btc(1_000));
    assert_eq!(now["amount"], btc(2_000));
    s.act_ok(&s.seller, id, "ship", None, "shipped");
    s.act_ok(&s.buyer, id, "confirm", None, "completed");
    assert_eq!(s.wallet(&s.seller), (btc(2_000), btc(0)));
    s.assert_clean();
}

// ---- fees ------------------------------------------------------------------

#[test]
fn fees_are_floored_on_completion_and_taken_from_the_sellers_part_on_resolution() {
    let s = shop_with("1", |config| config.fee_bps = 250);
    let listing = s.listing(333, 100);
    // 999 sat at 2.5 %: 24.975 → 24.
    let order = s.place(&listing, 3);
    assert_eq!(order["amount"], btc(999));
    assert_eq!(order["fee"], btc(24));
    let id = order["id"].as_str().expect("id");
    s.act_ok(&s.seller, id, "ship", None, "shipped");
    let done = s.act_ok(&s.buyer, id, "confirm", None, "completed");
    assert_eq!(done["fee"], btc(24));
    assert_eq!(s.wallet(&s.seller), (btc(975), btc(0)));
    // One closing movement: the buyer's two release legs, one to the
    // seller and one to the platform ("0").
    let entries = s.w.get("/api/v1/wallet/entries", &s.buyer.token).json()["entries"].clone();
    let legs: Vec<(Value, Value)> = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "escrow_release")
        .map(|e| (e["counterparty"].clone(), e["amount"].clone()))
        .collect();
    assert_eq!(legs.len(), 2, "{entries}");
    assert!(legs.contains(&(json!("0"), json!(btc(24)))), "{entries}");
    assert!(
        legs.contains(&(json!(s.seller.id), json!(btc(975)))),
        "{entries}"
    );
    assert_eq!(
        s.fees()[BTC],
        json!({"balance": btc(24), "collected": btc(24), "withdrawn": btc(0)})
    );
    // A split of 999: 401 to the seller pays floor(10.025) = 10.
    let order = s.place(&listing, 3);
    let id = order["id"].as_str().expect("id");
    s.act_ok(
        &s.seller,
        id,
        "dispute",
        Some(&json!({"reason": "late"})),
        "disputed",
    );
    let split = json!({"to_seller": btc(401), "to_buyer": btc(598)});
    let resolved = s.act_ok(&s.admin, id, "resolve", Some(&split), "resolved");
    assert_eq!(resolved["fee"], btc(10));
    assert_eq!(s.wallet(&s.seller), (btc(975 + 391), btc(0)));
    assert_eq!(s.wallet(&s.buyer), (btc(SAT - 999 - 999 + 598), btc(0)));
    assert_eq!(s.fees()[BTC]["balance"], btc(34));
    assert_eq!(s.fees()["xmr"]["balance"], "0.000000000000");
    // The resolved escrow keeps the gross split.
    let escrow = s.w.get(
        &format!(
            "/api/v1/escrows/{}",
            resolved["escrow"].as_str().expect("escrow")
        ),
        &s.seller.token,
    );
    assert_eq!(
        escrow.json()["escrow"]["resolution"],
        json!({"to_seller": btc(401), "to_buyer": btc(598)})
    );
    s.assert_clean();
}

#[test]
fn with_no_fee_the_seller_gets_everything_and_the_platform_nothing() {
    let s = shop("1");
    let listing = s.listing(777, 10);
    let id = s.place(&listing, 2)["id"].as_str().expect("id").to_owned();
    s.act_ok(&s.seller, &id, "ship", None, "shipped");
    s.act_ok(&s.buyer, &id, "confirm", None, "completed");
    assert_eq!(s.wallet(&s.seller), (btc(1_554), btc(0)));
    assert_eq!(
        s.fees()[BTC],
        json!({"balance": btc(0), "collected": btc(0), "withdrawn": btc(0)})
    );
    s.assert_clean();
}

#[test]
fn fee_withdrawals_take_fees_out_once_per_reference() {
    let s = shop_with("1", |config| config.fee_bps = 5000);
    let listing = s.listing(1_000, 10);
    let id = s.place(&listing, 1)["id"].as_str().expect("id").to_owned();
    s.act_ok(&s.seller, &id, "ship", None, "shipped");
    s.act_ok(&s.buyer, &id, "confirm", None, "completed");
    assert_eq!(s.fees()[BTC]["balance"], btc(500));
    let path = "/api/v1/admin/fees/withdrawals";
    let body = json!({"currency": BTC, "amount": btc(200), "reference": "cold-1"});
    let response = s.w.post(path, Some(&s.buyer.token), &body);
    response.assert_error(403, "forbidden");
    let response = s.w.post(path, Some(&s.admin.token), &body);
    assert_eq!(response.status, 201, "{}", response.summary());
    let withdrawal = response.json()["withdrawal"].clone();
    assert_eq!(withdrawal["amount"], btc(200));
    assert_eq!(withdrawal["reference"], "cold-1");
    assert_eq!(withdrawal["currency"], BTC);
    let again = s.w.post(path, Some(&s.admin.token), &body);
    again.assert_error(409, "duplicate_reference");
    let too_much = json!({"currency": BTC, "amount": btc(301), "reference": "cold-2"});
    s.w.post(path, Some(&s.admin.token), &too_much)
        .assert_error(409, "insufficient_funds");
    // A user withdrawal's reference is taken for fees too: one index.
    let user =
        json!({"user_id": s.seller.id, "currency": BTC, "amount": btc(10), "reference": "tx-9"});
    let response =
        s.w.post("/api/v1/admin/withdrawals", Some(&s.admin.token), &user);
    assert_eq!(response.status, 201, "{}", response.summary());
    let clash = json!({"currency": BTC, "amount": btc(10), "reference": "tx-9"});
    s.w.post(path, Some(&s.admin.token), &clash)
        .assert_error(409, "duplicate_reference");
    // Idempotency-Key replays.
    let keyed = json!({"currency": BTC, "amount": btc(100), "reference": "cold-3"});
    let key = [("idempotency-key", "fee-key-1")];
    let first = s.w.post_with(path, Some(&s.admin.token), &keyed, &key);
    assert_eq!(first.status, 201, "{}", first.summary());
    let replay = s.w.post_with(path, Some(&s.admin.token), &keyed, &key);
    assert_eq!(replay.status, 201, "{}", replay.summary());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), first.json());
    assert_eq!(
        s.fees()[BTC],
        json!({"balance": btc(200), "collected": btc(500), "withdrawn": btc(300)})
    );
    s.assert_clean();
}

// ---- refusals --------------------------------------------------------------

/// A listing of `who`'s with `body`, created through the API; its id.
fn listing_of(s: &Shop, who: &Member, body: &Value) -> String {
    let response = s.w.post("/api/v1/listings", Some(&who.token), body);
    assert_eq!(response.status, 201, "{}", response.summary());
    response.json()["listing"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// A listing of the seller's, moved to `state` (`paused`, `closed`).
fn listing_in_state(s: &Shop, state: &str) -> String {
    let id = s.listing(1_000, 5);
    let response = s.w.patch(
        &format!("/api/v1/listings/{id}"),
        &s.seller.token,
        &json!({"state": state}),
    );
    assert_eq!(response.status, 200, "{state}: {}", response.summary());
    id
}

#[test]
fn refused_orders_change_nothing() {
    let s = shop("0.0001");
    let listing = s.listing(1_000, 5);
    let huge = listing_of(
        &s,
        &s.seller,
        &json!({"title": "Island", "currency": BTC, "price": "50000000000", "quantity": 5}),
    );
    let own = listing_of(
        &s,
        &s.buyer,
        &json!({"title": "Mine", "currency": BTC, "price": "0.00000001"}),
    );
    let paused = listing_in_state(&s, "paused");
    let closed = listing_in_state(&s, "closed");
    let (invalid, state) = ("invalid_field", "invalid_state");
    // (body, status, code, field)
    #[rustfmt::skip]
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (json!({"listing": own}), 400, invalid, Some("listing")),
        (json!({"listing": paused}), 409, state, None),
        (json!({"listing": closed}), 409, state, None),
        (json!({"listing": listing, "quantity": 0}), 400, invalid, Some("quantity")),
        (json!({"listing": listing, "quantity": 1001}), 400, invalid, Some("quantity")),
        (json!({"listing": listing, "quantity": 1.5}), 400, invalid, Some("quantity")),
        (json!({"listing": listing, "quantity": 6}), 409, "out_of_stock", None),
        (json!({"listing": listing, "quantity": 5, "memo": "x".repeat(501)}), 400, invalid, Some("memo")),
        (json!({"listing": huge, "quantity": 2}), 400, invalid, Some("quantity")),
        (json!({"listing": huge, "quantity": 1}), 409, "insufficient_funds", None),
        (json!({"listing": listing, "colour": "red"}), 400, invalid, Some("colour")),
        (json!({"listing": "abc"}), 400, invalid, Some("listing")),
        (json!({"listing": "4242"}), 404, "not_found", None),
        // Input before state: a paused listing and a bad quantity is 400.
        (json!({"listing": paused, "quantity": 0}), 400, invalid, Some("quantity")),
    ];
    let before = s.snapshot(&listing, None);
    for (body, status, code, field) in cases {
        let response = s.try_place(&s.buyer, &body);
        let error = response.assert_error(status, code);
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{body}: {error}");
        }
        assert_eq!(s.snapshot(&listing, None), before, "{body}");
    }
    let response = s.w.get(ORDERS, &s.buyer.token);
    assert_eq!(response.json()["orders"], json!([]));
    unknown_fields_on_the_actions_are_refused(&s, &listing);
    s.assert_clean();
}

/// Unknown or bad fields on an order's actions get a 400 naming them.
fn unknown_fields_on_the_actions_are_refused(s: &Shop, listing: &str) {
    let id = s.place(listing, 1)["id"].as_str().expect("id").to_owned();
    let response = s.act(&s.seller, &id, "ship", Some(&json!({"carrier": "x"})));
    assert_eq!(
        response.assert_error(400, "invalid_field")["field"],
        "carrier"
    );
    let response = s.act(&s.buyer, &id, "dispute", Some(&json!({"reason": ""})));
    assert_eq!(
        response.assert_error(400, "invalid_field")["field"],
        "reason"
    );
    let split = json!({"to_seller": btc(1), "to_buyer": btc(1)});
    s.act_ok(
        &s.buyer,
        &id,
        "dispute",
        Some(&json!({"reason": "r"})),
        "disputed",
    );
    s.act(&s.admin, &id, "resolve", Some(&split))
        .assert_error(400, "invalid_field");
}

#[test]
fn an_idempotency_key_replays_placing_and_moving_an_order() {
    let s = shop("1");
    let listing = s.listing(1_000, 5);
    let body = json!({"listing": listing, "quantity": 2});
    let key = [("idempotency-key", "order-1")];
    let first = s.w.post_with(ORDERS, Some(&s.buyer.token), &body, &key);
    assert_eq!(first.status, 201, "{}", first.summary());
    let replay = s.w.post_with(ORDERS, Some(&s.buyer.token), &body, &key);
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), first.json());
    assert_eq!(s.stock(&listing), 3, "placed once");
    let other = json!({"listing": listing, "quantity": 1});
    s.w.post_with(ORDERS, Some(&s.buyer.token), &other, &key)
        .assert_error(422, "idempotency_mismatch");
    let id = first.json()["order"]["id"].as_str().expect("id").to_owned();
    let path = format!("{ORDERS}/{id}/cancel");
    let key = [("idempotency-key", "cancel-1")];
    let cancel = |key: &[(&str, &str)]| {
        request(s.w.app.addr, "POST", &path, Some(&s.buyer.token), None, key)
    };
    let first = cancel(&key);
    assert_eq!(first.status, 200, "{}", first.summary());
    let replay = cancel(&key);
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), first.json());
    cancel(&[]).assert_error(409, "invalid_state");
    assert_eq!(s.stock(&listing), 5);
    assert_eq!(s.wallet(&s.buyer), (btc(SAT), btc(0)));
    s.assert_clean();
}

// ---- the order's escrow ----------------------------------------------------

#[test]
fn the_escrow_routes_refuse_an_orders_escrow_and_list_it_with_its_order() {
    let s = shop("1");
    let listing = s.listing(1_000, 5);
    let order = s.place(&listing, 1);
    let (id, escrow) = (
        order["id"].as_str().expect("id").to_owned(),
        order["escrow"].as_str().expect("escrow").to_owned(),
    );
    let response = s.w.get("/api/v1/escrows", &s.buyer.token);
    let listed = response.json()["escrows"][0].clone();
    assert_eq!(listed["id"], escrow.as_str());
    assert_eq!(listed["order"], id.as_str());
    assert_eq!(listed["release_at"], Value::Null);
    let before = s.snapshot(&listing, Some(&id));
    let path = |action: &str| format!("/api/v1/escrows/{escrow}/{action}");
    for (who, action) in [
        (&s.buyer, "release"),
        (&s.seller, "refund"),
        (&s.admin, "release"),
        (&s.buyer, "dispute"),
    ] {
        let response = request(
            s.w.app.addr,
            "POST",
            &path(action),
            Some(&who.token),
            None,
            &[],
        );
        response.assert_error(409, "invalid_state");
        assert_eq!(s.snapshot(&listing, Some(&id)), before, "{action}");
    }
    s.act_ok(
        &s.buyer,
        &id,
        "dispute",
        Some(&json!({"reason": "r"})),
        "disputed",
    );
    let split = json!({"to_seller": btc(500), "to_buyer": btc(500)});
    let response = s.w.post(
        &format!("/api/v1/admin/escrows/{escrow}/resolve"),
        Some(&s.admin.token),
        &split,
    );
    response.assert_error(409, "invalid_state");
    assert_eq!(s.order(&s.buyer, &id)["state"], "disputed");
    s.assert_clean();
}

// ---- lists -----------------------------------------------------------------

fn ids_of(response: &HttpResponse) -> (Vec<String>, Option<String>) {
    assert_eq!(response.status, 200, "{}", response.summary());
    let body = response.json();
    let ids = body["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, body["next"].as_str().map(str::to_owned))
}

#[test]
fn orders_are_listed_newest_first_by_role_and_state_with_a_cursor() {
    let s = shop("1");
    let listing = s.listing(1_000, 100);
    let mut placed: Vec<String> = (0..5)
        .map(|_| s.place(&listing, 1)["id"].as_str().expect("id").to_owned())
        .collect();
    s.act_ok(
        &s.buyer,
        &placed[1],
        "dispute",
        Some(&json!({"reason": "r"})),
        "disputed",
    );
    placed.reverse();
    let (ids, next) = ids_of(&s.w.get(&format!("{ORDERS}?limit=3"), &s.buyer.token));
    assert_eq!(ids, placed[..3]);
    let next = next.expect("a next cursor");
    let (rest, last) = ids_of(&s.w.get(&format!("{ORDERS}?limit=3&after={next}"), &s.buyer.token));
    assert_eq!(rest, placed[3..]);
    assert_eq!(last, None);
    let (ids, _) = ids_of(&s.w.get(&format!("{ORDERS}?role=seller"), &s.seller.token));
    assert_eq!(ids, placed);
    let (ids, _) = ids_of(&s.w.get(&format!("{ORDERS}?role=buyer"), &s.seller.token));
    assert!(ids.is_empty());
    let (ids, _) = ids_of(&s.w.get(&format!("{ORDERS}?state=disputed"), &s.seller.token));
    assert_eq!(ids, vec![placed[3].clone()]);
    let (ids, _) = ids_of(&s.w.get(ORDERS, &s.stranger.token));
    assert!(ids.is_empty());
    s.w.get(&format!("{ORDERS}?role=admin"), &s.buyer.token)
        .assert_error(400, "invalid_field");
    s.w.get(&format!("{ORDERS}?state=lost"), &s.buyer.token)
        .assert_error(400, "invalid_field");
    s.w.get(&format!("{ORDERS}?after={next}"), &s.stranger.token)
        .assert_error(404, "not_found");
    // The admin queue: every order, by state.
    let (ids, _) = ids_of(&s.w.get("/api/v1/admin/orders?state=disputed", &s.admin.token));
    assert_eq!(ids, vec![placed[3].clone()]);
    let (ids, _) = ids_of(&s.w.get("/api/v1/admin/orders", &s.admin.token));
    assert_eq!(ids, placed);
    s.w.get("/api/v1/admin/orders", &s.buyer.token)
        .assert_error(403, "forbidden");
}

/// Without `role`, a user's orders as buyer and as seller come merged,
/// newest first, across pages.
#[test]
fn both_roles_are_listed_merged_newest_first() {
    let s = shop("1");
    s.w.deposit(&s.admin, &s.seller, BTC, "1");
    let sellers = s.listing(1_000, 100);
    let body = json!({"title": "Kettle", "currency": BTC, "price": btc(500), "quantity": 100});
    let response = s.w.post("/api/v1/listings", Some(&s.buyer.token), &body);
    assert_eq!(response.status, 201, "{}", response.summary());
    let buyers = response.json()["listing"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut placed = Vec::new();
    for round in 0..7 {
        let (who, listing) = if round % 3 == 1 {
            (&s.seller, &buyers)
        } else {
            (&s.buyer, &sellers)
        };
        let response = s.try_place(who, &json!({"listing": listing}));
        assert_eq!(response.status, 201, "{}", response.summary());
        placed.push(
            response.json()["order"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    placed.reverse();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("{ORDERS}?limit=2&after={cursor}"),
            None => format!("{ORDERS}?limit=2"),
        };
        let (ids, next) = ids_of(&s.w.get(&path, &s.buyer.token));
        seen.extend(ids);
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, placed);
    let (ids, _) = ids_of(&s.w.get(&format!("{ORDERS}?role=seller&state=paid"), &s.buyer.token));
    assert_eq!(ids.len(), 2);
}

// ---- timers ----------------------------------------------------------------

/// Polls the order until it leaves `state`; the order then.
fn wait_while(s: &Shop, id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let order = s.order(&s.buyer, id);
        if order["state"] != state {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} still {state} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_timers_cancel_an_unshipped_order_and_complete_an_unconfirmed_one_on_time() {
    let s = shop_with("1", |config| {
        config.fee_bps = 1000;
        config.order_ship_within_s = 1;
        config.order_confirm_within_s = 1;
    });
    let listing = s.listing(1_000, 10);
    let unshipped = s.place(&listing, 2);
    let id = unshipped["id"].as_str().expect("id");
    let started = Instant::now();
    let cancelled = wait_while(&s, id, "paid", Duration::from_secs(4));
    eprintln!("ship timer fired after {:?}", started.elapsed());
    assert_eq!(cancelled["state"], "cancelled");
    assert!(
        time_of(&cancelled, "updated_at") > time_of(&unshipped, "ship_by"),
        "never before ship_by: {cancelled}"
    );
    assert_eq!(s.stock(&listing), 10);
    assert_eq!(s.wallet(&s.buyer), (btc(SAT), btc(0)));

    let order = s.place(&listing, 1);
    let id = order["id"].as_str().expect("id");
    let shipped = s.act_ok(&s.seller, id, "ship", None, "shipped");
    let completed = wait_while(&s, id, "shipped", Duration::from_secs(4));
    assert_eq!(completed["state"], "completed");
    assert!(
        time_of(&completed, "updated_at") > time_of(&shipped, "confirm_by"),
        "never before confirm_by: {completed}"
    );
    assert_eq!(s.wallet(&s.seller), (btc(900), btc(0)));
    assert_eq!(s.fees()[BTC]["balance"], btc(100));
    // A disputed order's timers stop.
    let order = s.place(&listing, 1);
    let id = order["id"].as_str().expect("id");
    s.act_ok(
        &s.buyer,
        id,
        "dispute",
        Some(&json!({"reason": "r"})),
        "disputed",
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(s.order(&s.buyer, id)["state"], "disputed");
    s.assert_clean();
}

#[test]
fn the_ship_timer_fires_after_a_restart_of_the_binary() {
    let dir = TempDir::new();
    let db = dir.path.join("souk.db");
    create_admin(&dir, PASSWORD);
    let buyer = quick_user(&db, "buyer", false);
    let seller = quick_user(&db, "seller", false);
    let mut command = souk(&dir);
    command.env("SOUK_ORDER_SHIP_WITHIN", "2");
    let served = Served::start_with(command);
    let addr = served.addr;
    let admin = log_in_at(addr, "admin", PASSWORD);
    let post = |who: &Member, path: &str, body: Value| {
        let response = request(addr, "POST", path, Some(&who.token), Some(&body), &[]);
        assert_eq!(response.status, 201, "{path}: {}", response.summary());
        response.json()
    };
    post(
        &admin,
        "/api/v1/admin/deposits",
        json!({"user_id": buyer.id, "currency": BTC, "amount": "1", "reference": "tx-1"}),
    );
    let listing = post(
        &seller,
        "/api/v1/listings",
        json!({"title": "Lamp", "currency": BTC, "price": "0.1", "quantity": 3}),
    )["listing"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = post(&buyer, ORDERS, json!({"listing": listing, "quantity": 2}))["order"].clone();
    let id = order["id"].as_str().expect("id").to_owned();
    served.stop();

    // The ship time passes while nothing runs.
    std::thread::sleep(Duration::from_secs(3));
    let served = Served::start(&dir);
    let addr = served.addr;
    let get = |who: &Member, path: &str| {
        let response = request(addr, "GET", path, Some(&who.token), None, &[]);
        assert_eq!(response.status, 200, "{path}: {}", response.summary());
        response.json()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let cancelled = loop {
        let order = get(&buyer, &format!("{ORDERS}/{id}"))["order"].clone();
        if order["state"] == "cancelled" {
            break order;
        }
        assert!(Instant::now() < deadline, "still {order}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(time_of(&cancelled, "updated_at") > time_of(&order, "ship_by"));
    assert_eq!(
        get(&buyer, "/api/v1/wallet")["balances"][BTC],
        json!({"available": "1.00000000", "held": "0.00000000"})
    );
    assert_eq!(
        get(&seller, &format!("/api/v1/listings/{listing}"))["listing"]["quantity"],
        3
    );
    assert_eq!(get(&admin, "/api/v1/admin/check")["problems"], json!([]));
    served.stop();
}

// ---- the check -------------------------------------------------------------

#[test]
fn the_ledger_check_catches_a_corrupted_order() {
    let s = shop_with("1", |config| config.fee_bps = 100);
    let listing = s.listing(10_000, 10);
    let completed = s.order_in(&listing, "completed");
    let paid = s.order_in(&listing, "paid");
    s.assert_clean();
    let db = open_db(&s.w.db);
    db.execute(
        "UPDATE orders SET fee = fee + 1 WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
        [&completed],
    )
    .expect("corrupting the fee");
    let problems = s.w.check(&s.admin);
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains(&completed))),
        "{problems:?}"
    );
    db.execute(
        "UPDATE orders SET fee = fee - 1 WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
        [&completed],
    )
    .expect("repairing the fee");
    s.assert_clean();
    // Paid with a held escrow, shown as completed: the states disagree.
    db.execute(
        "UPDATE orders SET state = 'completed' WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
        [&paid],
    )
    .expect("corrupting the state");
    let problems = s.w.check(&s.admin);
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains(&paid))),
        "{problems:?}"
    );
    // `souk check` (next to the running server) sees it too.
    let (status, out, err) = souk_check(&s.w.db);
    assert_eq!(status.code(), Some(3), "{out}\n{err}");
    assert!(out.contains(&paid), "{out}");
    db.execute(
        "UPDATE orders SET state = 'paid' WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
        [&paid],
    )
    .expect("repairing the state");
    s.assert_clean();
    let (status, out, err) = souk_check(&s.w.db);
    assert!(status.success(), "{out}\n{err}");
}

/// A stranger credited with the seller's part of a release, the balances
/// moved along so that replay and conservation still hold: only the check
/// of who a closing pays can see it.
#[test]
fn the_ledger_check_catches_a_release_paid_to_someone_else() {
    let s = shop_with("1", |config| config.fee_bps = 100);
    let listing = s.listing(10_000, 10);
    let completed = s.order_in(&listing, "completed");
    let escrow = s.order(&s.admin, &completed)["escrow"]
        .as_str()
        .expect("escrow")
        .to_owned();
    s.assert_clean();
    let mut db = open_db(&s.w.db);
    let tx = db.transaction().expect("a transaction");
    let trigger: String = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'entries_never_change'",
            [],
            |row| row.get(0),
        )
        .expect("the append-only trigger");
    let amount: i64 = tx
        .query_row(
            "SELECT amount FROM entries WHERE escrow_id = ?1 AND kind = 'escrow_release'
             AND direction = 'in' AND user_id = ?2",
            [&escrow, &s.seller.id],
            |row| row.get(0),
        )
        .expect("the seller's leg");
    tx.execute_batch("DROP TRIGGER entries_never_change")
        .expect("dropping the trigger");
    tx.execute(
        "UPDATE entries SET user_id = ?3 WHERE escrow_id = ?1 AND kind = 'escrow_release'
         AND direction = 'in' AND user_id = ?2",
        [&escrow, &s.seller.id, &s.stranger.id],
    )
    .expect("redirecting the leg");
    tx.execute_batch(&trigger).expect("restoring the trigger");
    tx.execute(
        "UPDATE accounts SET available = available - ?2 WHERE user_id = ?1 AND currency = 'btc'",
        rusqlite::params![s.seller.id, amount],
    )
    .expect("the seller's balance");
    tx.execute(
        "INSERT INTO accounts (user_id, currency, available, held) VALUES (?1, 'btc', ?2, 0)",
        rusqlite::params![s.stranger.id, amount],
    )
    .expect("the stranger's balance");
    tx.commit().expect("commit");
    let problems = s.w.check(&s.admin);
    assert!(
        problems.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.contains(&escrow) && p.contains(&s.stranger.id))),
        "{problems:?}"
    );
    let (status, out, err) = souk_check(&s.w.db);
    assert_eq!(status.code(), Some(3), "{out}\n{err}");
    assert!(out.contains(&escrow), "{out}");
}

// ---- deadlines and failing timers ------------------------------------------

/// Sets the order's `column` (ship_by or confirm_by) an hour into the past,
/// as if the deadline passed before the timer could fire.
fn pass_deadline(s: &Shop, id: &str, column: &str) {
    open_db(&s.w.db)
        .execute(
            &format!(
                "UPDATE orders SET {column} = CAST(strftime('%s', 'now') AS INTEGER) - 3600
                 WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))"
            ),
            [id],
        )
        .expect("moving the deadline");
}

#[test]
fn a_party_cannot_move_an_order_whose_deadline_passed() {
    let s = shop("1");
    let listing = s.listing(1_000, 10);
    let paid = s.order_in(&listing, "paid");
    pass_deadline(&s, &paid, "ship_by");
    for (who, action, body) in [
        (&s.seller, "ship", None),
        (&s.buyer, "cancel", None),
        (&s.buyer, "dispute", Some(json!({"reason": "late"}))),
    ] {
        let refused = s.act(who, &paid, action, body.as_ref());
        let error = refused.assert_error(409, "invalid_state");
        eprintln!("{action} after ship_by: {error}");
    }
    assert_eq!(
        wait_while(&s, &paid, "paid", Duration::from_secs(4))["state"],
        "cancelled"
    );
    assert_eq!(s.stock(&listing), 10);

    let shipped = s.order_in(&listing, "shipped");
    pass_deadline(&s, &shipped, "confirm_by");
    for (who, action, body) in [
        (&s.buyer, "confirm", None),
        (&s.seller, "cancel", None),
        (&s.buyer, "dispute", Some(json!({"reason": "broken"}))),
    ] {
        s.act(who, &shipped, action, body.as_ref())
            .assert_error(409, "invalid_state");
    }
    assert_eq!(
        wait_while(&s, &shipped, "shipped", Duration::from_secs(4))["state"],
        "completed"
    );
    // Before its deadline a move goes through as always.
    let early = s.order_in(&listing, "paid");
    s.act_ok(&s.seller, &early, "ship", None, "shipped");
    s.assert_clean();
}

/// A full sweep's worth of due orders whose move fails (their escrow row is
/// gone) must not stop the order due after them.
#[test]
fn failing_timers_do_not_hold_back_the_orders_due_after_them() {
    let broken = souk::timers::SWEEP_BATCH_MAX;
    let s = shop("1");
    let listing = s.listing(1, broken as i64 + 1);
    let ids: Vec<String> = (0..=broken)
        .map(|_| s.place(&listing, 1)["id"].as_str().expect("id").to_owned())
        .collect();
    let db = open_db(&s.w.db);
    db.execute_batch("PRAGMA foreign_keys = OFF")
        .expect("foreign keys off");
    for (i, id) in ids[..broken].iter().enumerate() {
        // Due long ago, oldest first, and an escrow that does not exist.
        db.execute(
            "UPDATE orders SET ship_by = ?2, escrow = -seq WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
            rusqlite::params![id, 1_000 + i as i64],
        )
        .expect("breaking an order");
    }
    let good = &ids[broken];
    db.execute(
        "UPDATE orders SET ship_by = 100000 WHERE seq = souk_order_seq(CAST(?1 AS INTEGER))",
        [good],
    )
    .expect("making the last order due");
    let order = wait_while(&s, good, "paid", Duration::from_secs(6));
    assert_eq!(order["state"], "cancelled");
    assert_eq!(s.order(&s.admin, &ids[0])["state"], "paid", "still broken");
}

#[test]
fn wallet_stats_count_users_not_the_platforms_fee_account() {
    let s = shop_with("1", |config| config.fee_bps = 100);
    let listing = s.listing(10_000, 10);
    s.order_in(&listing, "completed");
    assert_eq!(s.fees()[BTC]["balance"], btc(100));
    let response = s.w.get("/api/v1/admin/stats/wallets", &s.admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    let stats = response.json()["currencies"][BTC].clone();
    assert_eq!(stats["accounts"], 2, "the buyer and the seller: {stats}");
    assert_eq!(stats["total_available"], btc(SAT), "fees included: {stats}");
}

#[test]
fn a_dispute_reason_of_only_white_space_is_refused() {
    let s = shop("1");
    let listing = s.listing(1_000, 10);
    let paid = s.order_in(&listing, "paid");
    for reason in [" ", " \n\t ", "\u{3000}"] {
        let refused = s.act(&s.buyer, &paid, "dispute", Some(&json!({"reason": reason})));
        assert_eq!(
            refused.assert_error(400, "invalid_field")["field"],
            "reason",
            "{reason:?}"
        );
    }
    assert_eq!(s.order(&s.buyer, &paid)["state"], "paid");
    s.act_ok(
        &s.buyer,
        &paid,
        "dispute",
        Some(&json!({"reason": " late\n"})),
        "disputed",
    );
}

/// `souk check` on `db` (next to the running server): status, stdout, stderr.
fn souk_check(db: &std::path::Path) -> (std::process::ExitStatus, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_souk"));
    command
        .arg("check")
        .env("SOUK_DB", db)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    run(command)
}
