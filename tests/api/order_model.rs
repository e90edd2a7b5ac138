//! A seeded random walk through the marketplace checked against a model
//! after every step: deposits, orders placed (also ones that must be
//! refused), every action by every kind of caller, timers firing, admin
//! resolutions, listings paused and restocked, fee withdrawals. After each
//! step every balance, every listing's stock, the platform's fee account,
//! the order touched and the ledger check must be exactly what the model
//! says.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Member, World, open_db, quick_user, world_with};
use crate::helpers::HttpResponse;
use crate::seeded::{Rng, SeedOnFailure, test_seed};

const FEE_BPS: i128 = 250;
const STEPS: usize = 200;
const TRADERS: usize = 3;
/// btc has 8 decimal places.
const DECIMALS: u32 = 8;

fn btc(minor: i128) -> String {
    let unit = 10i128.pow(DECIMALS);
    format!("{}.{:08}", minor / unit, minor % unit)
}

fn minor(text: &str) -> i128 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{fraction:0<8}");
    whole.parse::<i128>().expect("whole part") * 10i128.pow(DECIMALS)
        + fraction.parse::<i128>().expect("fraction")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Paid,
    Shipped,
    Completed,
    Cancelled,
    Disputed,
    Resolved,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Paid => "paid",
            State::Shipped => "shipped",
            State::Completed => "completed",
            State::Cancelled => "cancelled",
            State::Disputed => "disputed",
            State::Resolved => "resolved",
        }
    }
}

struct Order {
    id: String,
    buyer: usize,
    seller: usize,
    listing: usize,
    quantity: i64,
    amount: i128,
    fee: i128,
    state: State,
}

struct Listing {
    id: String,
    seller: usize,
    price: i128,
    stock: i64,
    active: bool,
}

#[derive(Default)]
struct Model {
    available: Vec<i128>,
    held: Vec<i128>,
    fee_balance: i128,
    fees_collected: i128,
    fees_withdrawn: i128,
    listings: Vec<Listing>,
    orders: Vec<Order>,
}

/// Who calls an order action, relative to the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Buyer,
    Seller,
    Admin,
    Outsider,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Ship,
    Cancel,
    Confirm,
    Dispute,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Ship => "ship",
            Action::Cancel => "cancel",
            Action::Confirm => "confirm",
            Action::Dispute => "dispute",
        }
    }

    /// The roles that may take this action in some state.
    fn roles(self) -> &'static [Who] {
        match self {
            Action::Ship => &[Who::Seller],
            Action::Confirm => &[Who::Buyer],
            Action::Cancel | Action::Dispute => &[Who::Buyer, Who::Seller],
        }
    }

    /// The state the action leads to from `state` for `who`, if allowed.
    fn next(self, state: State, who: Who) -> Option<State> {
        match (self, state, who) {
            (Action::Ship, State::Paid, Who::Seller) => Some(State::Shipped),
            (Action::Cancel, State::Paid, Who::Buyer | Who::Seller) => Some(State::Cancelled),
            (Action::Cancel, State::Shipped, Who::Seller) => Some(State::Cancelled),
            (Action::Confirm, State::Shipped, Who::Buyer) => Some(State::Completed),
            (Action::Dispute, State::Paid | State::Shipped, Who::Buyer | Who::Seller) => {
                Some(State::Disputed)
            }
            _ => None,
        }
    }
}

impl Model {
    /// The buyer's held amount goes back to their available.
    fn refund(&mut self, o: usize) {
        let (buyer, amount) = (self.orders[o].buyer, self.orders[o].amount);
        self.held[buyer] -= amount;
        self.available[buyer] += amount;
    }

    /// The held amount goes out: `to_seller` less its fee to the seller,
    /// the fee to the platform, `to_buyer` back to the buyer.
    fn close(&mut self, o: usize, to_seller: i128, fee: i128) {
        let order = &self.orders[o];
        let (buyer, seller, amount) = (order.buyer, order.seller, order.amount);
        self.held[buyer] -= amount;
        self.available[buyer] += amount - to_seller;
        self.available[seller] += to_seller - fee;
        self.fee_balance += fee;
        self.fees_collected += fee;
        self.orders[o].fee = fee;
    }

    /// The money and stock effects of order `o` entering `to` from `from`.
    fn enter(&mut self, o: usize, from: State, to: State) {
        match to {
            State::Cancelled => {
                self.refund(o);
                if from == State::Paid {
                    let (listing, quantity) = (self.orders[o].listing, self.orders[o].quantity);
                    self.listings[listing].stock += quantity;
                }
            }
            State::Completed => {
                let (amount, fee) = (self.orders[o].amount, self.orders[o].fee);
                self.close(o, amount, fee);
            }
            _ => {}
        }
        self.orders[o].state = to;
    }
}

struct Walk {
    w: World,
    admin: Member,
    traders: Vec<Member>,
    outsider: Member,
    model: Model,
    rng: Rng,
}

impl Walk {
    fn member(&self, who: Who, o: usize) -> &Member {
        let order = &self.model.orders[o];
        match who {
            Who::Buyer => &self.traders[order.buyer],
            Who::Seller => &self.traders[order.seller],
            Who::Admin => &self.admin,
            Who::Outsider => &self.outsider,
        }
    }

    fn expect(&self, step: &str, response: &HttpResponse, status: u16, code: Option<&str>) {
        assert_eq!(
            response.status,
            status,
            "{step}: expected {status} {code:?}, got {}",
            response.body_text()
        );
        if let Some(code) = code {
            assert_eq!(response.error()["code"], json!(code), "{step}");
        }
    }

    fn deposit(&mut self, step: &str) {
        let t = self.rng.below(TRADERS as u64) as usize;
        let amount = 1_000_000 + i128::from(self.rng.below(4_000_000));
        let body = json!({
            "user_id": self.traders[t].id, "currency": "btc", "amount": btc(amount),
            "reference": format!("model-{}", step.replace(' ', "-")),
        });
        let done = self
            .w
            .post("/api/v1/admin/deposits", Some(&self.admin.token), &body);
        self.expect(step, &done, 201, None);
        self.model.available[t] += amount;
    }

    fn place(&mut self, step: &str) {
        let buyer = self.rng.below(TRADERS as u64) as usize;
        let l = self.rng.below(self.model.listings.len() as u64) as usize;
        let quantity: i64 = match self.rng.below(10) {
            0 => 0,
            1 => 1001,
            2 => 6 + self.rng.below(20) as i64,
            _ => 1 + self.rng.below(3) as i64,
        };
        let listing = &self.model.listings[l];
        let amount = listing.price * i128::from(quantity);
        let body = json!({"listing": listing.id, "quantity": quantity});
        let placed = self
            .w
            .post("/api/v1/orders", Some(&self.traders[buyer].token), &body);
        let step = format!("{step} place {quantity} of listing {l} by trader {buyer}");
        if !(1..=1000).contains(&quantity) {
            return self.expect(&step, &placed, 400, Some("invalid_field"));
        }
        if listing.seller == buyer {
            return self.expect(&step, &placed, 400, None);
        }
        if !listing.active {
            return self.expect(&step, &placed, 409, Some("invalid_state"));
        }
        if quantity > listing.stock {
            return self.expect(&step, &placed, 409, Some("out_of_stock"));
        }
        if amount > self.model.available[buyer] {
            return self.expect(&step, &placed, 409, Some("insufficient_funds"));
        }
        self.expect(&step, &placed, 201, None);
        let order = placed.json()["order"].clone();
        let fee = amount * FEE_BPS / 10_000;
        assert_eq!(order["amount"], json!(btc(amount)), "{step}");
        assert_eq!(order["fee"], json!(btc(fee)), "{step}");
        assert_eq!(order["state"], json!("paid"), "{step}");
        let seller = listing.seller;
        self.model.listings[l].stock -= quantity;
        self.model.available[buyer] -= amount;
        self.model.held[buyer] += amount;
        self.model.orders.push(Order {
            id: order["id"].as_str().expect("order id").to_owned(),
            buyer,
            seller,
            listing: l,
            quantity,
            amount,
            fee,
            state: State::Paid,
        });
        self.verify_order(&step, self.model.orders.len() - 1);
    }

    fn pick_order(&mut self) -> Option<usize> {
        let n = self.model.orders.len() as u64;
        (n > 0).then(|| self.rng.below(n) as usize)
    }

    fn act(&mut self, step: &str) {
        let Some(o) = self.pick_order() else { return };
        // Half the time the move that takes the order forward, so that
        // orders get completed; otherwise anything by anyone.
        let (action, who) = match (self.rng.below(2), self.model.orders[o].state) {
            (0, State::Paid) => (Action::Ship, Who::Seller),
            (0, State::Shipped) => (Action::Confirm, Who::Buyer),
            _ => (
                *self.rng.pick(&[
                    Action::Ship,
                    Action::Cancel,
                    Action::Confirm,
                    Action::Dispute,
                ]),
                *self
                    .rng
                    .pick(&[Who::Buyer, Who::Seller, Who::Admin, Who::Outsider]),
            ),
        };
        let body = match action {
            Action::Ship => json!({"tracking": format!("TRK-{step}")}),
            Action::Dispute => json!({"reason": "not as described"}),
            Action::Cancel | Action::Confirm => json!({}),
        };
        let path = format!(
            "/api/v1/orders/{}/{}",
            self.model.orders[o].id,
            action.path()
        );
        let answer = self.w.post(&path, Some(&self.member(who, o).token), &body);
        let state = self.model.orders[o].state;
        let step = format!(
            "{step} {action:?} by {who:?} on order {o} ({})",
            state.name()
        );
        if who == Who::Outsider {
            return self.expect(&step, &answer, 404, Some("not_found"));
        }
        if !action.roles().contains(&who) {
            return self.expect(&step, &answer, 403, Some("forbidden"));
        }
        let Some(to) = action.next(state, who) else {
            return self.expect(&step, &answer, 409, Some("invalid_state"));
        };
        self.expect(&step, &answer, 200, None);
        assert_eq!(answer.json()["order"]["state"], json!(to.name()), "{step}");
        self.model.enter(o, state, to);
        self.verify_order(&step, o);
    }

    fn resolve(&mut self, step: &str) {
        let disputed: Vec<usize> = (0..self.model.orders.len())
            .filter(|&o| self.model.orders[o].state == State::Disputed)
            .collect();
        // Mostly a disputed order; sometimes any (which must be refused).
        let o = match (disputed.is_empty(), self.rng.below(4)) {
            (false, 0..=2) => *self.rng.pick(&disputed),
            _ => match self.pick_order() {
                Some(o) => o,
                None => return,
            },
        };
        let amount = self.model.orders[o].amount;
        let to_seller = i128::from(self.rng.below(amount as u64 + 1));
        let split = json!({"to_seller": btc(to_seller), "to_buyer": btc(amount - to_seller)});
        let path = format!("/api/v1/admin/orders/{}/resolve", self.model.orders[o].id);
        let step = format!(
            "{step} resolve order {o} ({})",
            self.model.orders[o].state.name()
        );
        if self.rng.below(4) == 0 {
            let buyer = &self.traders[self.model.orders[o].buyer];
            let refused = self.w.post(&path, Some(&buyer.token), &split);
            return self.expect(&step, &refused, 403, Some("forbidden"));
        }
        if self.rng.below(4) == 0 {
            let uneven =
                json!({"to_seller": btc(to_seller), "to_buyer": btc(amount - to_seller + 1)});
            let refused = self.w.post(&path, Some(&self.admin.token), &uneven);
            return self.expect(&step, &refused, 400, Some("invalid_field"));
        }
        let answer = self.w.post(&path, Some(&self.admin.token), &split);
        if self.model.orders[o].state != State::Disputed {
            return self.expect(&step, &answer, 409, Some("invalid_state"));
        }
        self.expect(&step, &answer, 200, None);
        let fee = to_seller * FEE_BPS / 10_000;
        self.model.close(o, to_seller, fee);
        self.model.orders[o].state = State::Resolved;
        self.verify_order(&step, o);
    }

    /// Moves an open order's deadline into the past behind the server's
    /// back (the clock passing it), and waits for the timer.
    fn expire(&mut self, step: &str) {
        let open: Vec<usize> = (0..self.model.orders.len())
            .filter(|&o| matches!(self.model.orders[o].state, State::Paid | State::Shipped))
            .collect();
        if open.is_empty() {
            return;
        }
        let o = *self.rng.pick(&open);
        let state = self.model.orders[o].state;
        let column = if state == State::Paid {
            "ship_by"
        } else {
            "confirm_by"
        };
        let past = souk::clock::unix_seconds() - 2;
        let changed = open_db(&self.w.db)
            .execute(
                &format!("UPDATE orders SET {column} = ?1 WHERE seq = souk_order_seq(CAST(?2 AS INTEGER))"),
                rusqlite::params![past, self.model.orders[o].id],
            )
            .expect("moving a deadline");
        assert_eq!(changed, 1);
        let to = if state == State::Paid {
            State::Cancelled
        } else {
            State::Completed
        };
        let step = format!("{step} {column} of order {o} passes ({})", state.name());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.read_order(o)["state"].clone();
            if now == json!(to.name()) {
                break;
            }
            assert_eq!(now, json!(state.name()), "{step}");
            assert!(Instant::now() < deadline, "{step}: the timer did not fire");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.model.enter(o, state, to);
        self.verify_order(&step, o);
    }

    fn edit_listing(&mut self, step: &str) {
        let l = self.rng.below(self.model.listings.len() as u64) as usize;
        let listing = &self.model.listings[l];
        let body = if self.rng.below(2) == 0 {
            json!({"state": if listing.active { "paused" } else { "active" }})
        } else {
            json!({"quantity": self.rng.below(8)})
        };
        let seller = &self.traders[listing.seller];
        let path = format!("/api/v1/listings/{}", listing.id);
        let edited = self.w.patch(&path, &seller.token, &body);
        self.expect(
            &format!("{step} edit listing {l}: {body}"),
            &edited,
            200,
            None,
        );
        let listing = &mut self.model.listings[l];
        if let Some(state) = body["state"].as_str() {
            listing.active = state == "active";
        }
        if let Some(quantity) = body["quantity"].as_i64() {
            listing.stock = quantity;
        }
    }

    fn withdraw_fees(&mut self, step: &str) {
        let balance = self.model.fee_balance;
        let amount = 1 + i128::from(self.rng.below(balance as u64 + 2));
        let body = json!({"currency": "btc", "amount": btc(amount), "reference": format!("fees-{}", step.replace(' ', "-"))});
        let answer = self.w.post(
            "/api/v1/admin/fees/withdrawals",
            Some(&self.admin.token),
            &body,
        );
        let step = format!("{step} withdraw {} of {} fees", btc(amount), btc(balance));
        if amount > balance {
            return self.expect(&step, &answer, 409, Some("insufficient_funds"));
        }
        self.expect(&step, &answer, 201, None);
        self.model.fee_balance -= amount;
        self.model.fees_withdrawn += amount;
    }

    fn read_order(&self, o: usize) -> Value {
        let buyer = &self.traders[self.model.orders[o].buyer];
        let path = format!("/api/v1/orders/{}", self.model.orders[o].id);
        let read = self.w.get(&path, &buyer.token);
        assert_eq!(read.status, 200, "{}", read.body_text());
        read.json()["order"].clone()
    }

    fn verify_order(&self, step: &str, o: usize) {
        let order = &self.model.orders[o];
        let shown = self.read_order(o);
        assert_eq!(shown["state"], json!(order.state.name()), "{step}: {shown}");
        assert_eq!(shown["fee"], json!(btc(order.fee)), "{step}: {shown}");
        assert_eq!(shown["amount"], json!(btc(order.amount)), "{step}: {shown}");
    }

    /// Every balance, every stock, the fee account and the ledger check.
    fn verify(&self, step: &str) {
        let ids: Vec<&str> = self.traders.iter().map(|t| t.id.as_str()).collect();
        let path = format!(
            "/api/v1/admin/balances?user_ids={}&currencies=btc",
            ids.join(",")
        );
        let balances = self.w.get(&path, &self.admin.token);
        assert_eq!(balances.status, 200, "{step}: {}", balances.body_text());
        let balances = balances.json()["balances"].clone();
        for (t, id) in ids.iter().enumerate() {
            let shown = &balances[*id]["btc"];
            let got = (
                minor(shown["available"].as_str().unwrap_or("?")),
                minor(shown["held"].as_str().unwrap_or("?")),
            );
            let want = (self.model.available[t], self.model.held[t]);
            assert_eq!(got, want, "{step}: trader {t} (available, held)");
        }
        for (l, listing) in self.model.listings.iter().enumerate() {
            let path = format!("/api/v1/listings/{}", listing.id);
            let shown = self.w.get(&path, &self.traders[listing.seller].token);
            assert_eq!(shown.status, 200, "{step}: {}", shown.body_text());
            let shown = shown.json()["listing"].clone();
            assert_eq!(
                shown["quantity"],
                json!(listing.stock),
                "{step}: listing {l} stock"
            );
            let state = if listing.active { "active" } else { "paused" };
            assert_eq!(shown["state"], json!(state), "{step}: listing {l}");
        }
        let fees = self.w.get("/api/v1/admin/fees", &self.admin.token);
        assert_eq!(fees.status, 200, "{step}: {}", fees.body_text());
        let fees = fees.json()["fees"]["btc"].clone();
        assert_eq!(
            (
                minor(fees["balance"].as_str().unwrap_or("?")),
                minor(fees["collected"].as_str().unwrap_or("?")),
                minor(fees["withdrawn"].as_str().unwrap_or("?")),
            ),
            (
                self.model.fee_balance,
                self.model.fees_collected,
                self.model.fees_withdrawn
            ),
            "{step}: fees (balance, collected, withdrawn) {fees}"
        );
        let check = self.w.get("/api/v1/admin/check", &self.admin.token);
        assert_eq!(
            check.json(),
            json!({"ok": true, "problems": []}),
            "{step}: ledger check"
        );
    }
}

impl Walk {
    /// A server with deadlines far away, an admin, the traders and an
    /// outsider, each trader selling two listings of seeded price and stock.
    fn start(seed: u64) -> Walk {
        let w = world_with(|config| {
            config.fee_bps = FEE_BPS as u32;
            // Deadlines far away: the walk moves them itself (`expire`), so a
            // timer fires only where the model expects it.
            config.order_ship_within_s = 3600;
            config.order_confirm_within_s = 3600;
        });
        let admin = quick_user(&w.db, "model_admin", true);
        let traders: Vec<Member> = (0..TRADERS)
            .map(|t| quick_user(&w.db, &format!("trader{t}"), false))
            .collect();
        let outsider = quick_user(&w.db, "outsider", false);
        let mut walk = Walk {
            w,
            admin,
            traders,
            outsider,
            model: Model {
                available: vec![0; TRADERS],
                held: vec![0; TRADERS],
                ..Model::default()
            },
            rng: Rng(seed),
        };
        for t in 0..TRADERS {
            for n in 0..2 {
                walk.open_listing(t, n);
            }
        }
        walk
    }

    /// Trader `t`'s listing number `n`, created through the API.
    fn open_listing(&mut self, t: usize, n: usize) {
        let price = 1_000 + i128::from(self.rng.below(200_000));
        let stock = 2 + self.rng.below(9) as i64;
        let body = json!({"title": format!("item {t}-{n}"), "currency": "btc",
                          "price": btc(price), "quantity": stock});
        let created = self
            .w
            .post("/api/v1/listings", Some(&self.traders[t].token), &body);
        assert_eq!(created.status, 201, "{}", created.body_text());
        self.model.listings.push(Listing {
            id: created.json()["listing"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            seller: t,
            price,
            stock,
            active: true,
        });
    }

    /// One seeded step, then the check of everything; the step's kind.
    fn step(&mut self, n: usize) -> &'static str {
        let step = format!("step {n}");
        let kind = match self.rng.below(100) {
            0..=11 => "deposit",
            12..=41 => "place",
            42..=71 => "act",
            72..=79 => "resolve",
            80..=87 => "expire",
            88..=94 => "edit listing",
            _ => "withdraw fees",
        };
        match kind {
            "deposit" => self.deposit(&step),
            "place" => self.place(&step),
            "act" => self.act(&step),
            "resolve" => self.resolve(&step),
            "expire" => self.expire(&step),
            "edit listing" => self.edit_listing(&step),
            _ => self.withdraw_fees(&step),
        }
        self.verify(&format!("{step} ({kind})"));
        kind
    }

    /// How many of the model's orders are in one of `states`.
    fn orders_in(&self, states: &[State]) -> usize {
        self.model
            .orders
            .iter()
            .filter(|o| states.contains(&o.state))
            .count()
    }
}

#[test]
fn a_seeded_walk_through_orders_matches_the_model_after_every_step() {
    let seed = test_seed();
    let _seed = SeedOnFailure(seed);
    let mut walk = Walk::start(seed);
    let mut done: HashMap<&str, usize> = HashMap::new();
    for n in 0..STEPS {
        *done.entry(walk.step(n)).or_default() += 1;
    }
    let finished = walk.orders_in(&[State::Completed, State::Resolved, State::Cancelled]);
    let completed = walk.orders_in(&[State::Completed]);
    eprintln!(
        "{} orders, {finished} finished ({completed} completed), fees collected {}: {done:?}",
        walk.model.orders.len(),
        btc(walk.model.fees_collected)
    );
    assert!(
        finished > 0,
        "the walk finished no order, so it tested little"
    );
}
