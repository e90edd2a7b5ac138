//! The order rows of `benches/app.rs` (only that program includes this file):
//! the stock they buy from, seeded with the rest of the database, and the
//! two flows, `POST /orders` alone and an order's whole life (place, ship by
//! the seller, confirm by the buyer).
//!
//! Stock: `STOCK_LISTINGS` listings of `STOCK_QUANTITY` each, at
//! `STOCK_PRICE`, one per seller, the sellers being the last seeded users
//! (client threads act as the first ones, so a buyer is never the seller).
//! Their text uses words outside the search vocabulary, so the search rows
//! match the same listings as without them.

use rusqlite::{Transaction, params};

use crate::{Flow, Rng, caller_of, expect, post, seeded_id, token, user_id};

/// Listings the order rows buy from (one seller each).
pub const STOCK_LISTINGS: usize = 64;
/// Units in stock of each: listings::QUANTITY_MAX, far more than a run orders.
pub const STOCK_QUANTITY: i64 = 1_000_000;
/// Unit price in satoshi: a buyer's SEED_BALANCE pays for 100,000 orders.
pub const STOCK_PRICE: i64 = 1_000;
/// The platform's fee the server is started with (basis points), so that
/// confirming an order pays the fee leg too.
pub const FEE_BPS: u32 = 250;

const SPACE_STOCK: u64 = 6;

fn stock_id(k: usize) -> i64 {
    seeded_id(SPACE_STOCK, k)
}

/// The seeded user index selling stock listing `k`.
fn stock_seller(k: usize, users: usize) -> usize {
    users - 1 - k
}

/// Inserts the stock listings in the seeding transaction (their sellers
/// are users `users - STOCK_LISTINGS ..`, never the admin, user 0).
pub fn seed_stock(tx: &Transaction<'_>, users: usize, created: i64) -> Result<(), String> {
    if users <= STOCK_LISTINGS + 1 {
        return Err(format!(
            "stock listings need more than {} users",
            STOCK_LISTINGS + 1
        ));
    }
    let mut listing = tx
        .prepare(
            "INSERT INTO listings (id, seller, title, description, currency, price, quantity,
                                   tags, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'Stock of the order rows.', 'btc', ?4, ?5, '[\"stock\"]',
                     'active', ?6, ?6)",
        )
        .map_err(|e| e.to_string())?;
    for k in 0..STOCK_LISTINGS {
        listing
            .execute(params![
                stock_id(k),
                user_id(stock_seller(k, users)),
                format!("stock crate {k}"),
                STOCK_PRICE,
                STOCK_QUANTITY,
                created
            ])
            .map_err(|e| format!("stock listing {k}: {e}"))?;
    }
    Ok(())
}

/// The index of a stock listing drawn at random whose seller is not `me`.
fn draw_stock(rng: &mut Rng, users: usize, me: usize) -> usize {
    let k = rng.below(STOCK_LISTINGS);
    if stock_seller(k, users) == me {
        (k + 1) % STOCK_LISTINGS
    } else {
        k
    }
}

fn place_request(k: usize, buyer_token: &str) -> Vec<u8> {
    let body = format!(r#"{{"listing":"{}"}}"#, stock_id(k));
    post("/api/v1/orders", Some(buyer_token), &body)
}

/// The order id in `{"order":{"id":"…",…}}`.
fn order_id(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "order answer is not JSON".to_string())?;
    value["order"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "order answer without an id".to_string())
}

/// `POST /orders`: one unit of a random stock listing as the thread's own
/// user; any answer but 201 is an error.
pub struct Place {
    rng: Rng,
    users: usize,
    me: usize,
    token: String,
}

impl Flow for Place {
    fn request(&mut self) -> Vec<u8> {
        let k = draw_stock(&mut self.rng, self.users, self.me);
        place_request(k, &self.token)
    }

    fn answer(&mut self, status: u16, _body: &[u8]) -> Result<bool, String> {
        expect(status, 201)
    }
}

/// Where an order's life is: the answer awaited next.
enum Step {
    Place,
    Ship(String),
    Confirm(String),
}

/// One order's life per iteration: the thread's user places it (201), the
/// listing's seller ships it with their own token (200), the buyer confirms
/// it (200: amount − fee to the seller, the fee to the platform).
pub struct Life {
    rng: Rng,
    users: usize,
    me: usize,
    token: String,
    /// The seller of the listing of the order being placed or shipped.
    seller: usize,
    step: Step,
}

impl Flow for Life {
    fn request(&mut self) -> Vec<u8> {
        match &self.step {
            Step::Place => {
                let k = draw_stock(&mut self.rng, self.users, self.me);
                self.seller = stock_seller(k, self.users);
                place_request(k, &self.token)
            }
            Step::Ship(order) => post(
                &format!("/api/v1/orders/{order}/ship"),
                Some(&token(self.seller)),
                "",
            ),
            Step::Confirm(order) => post(
                &format!("/api/v1/orders/{order}/confirm"),
                Some(&self.token),
                "",
            ),
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Result<bool, String> {
        match std::mem::replace(&mut self.step, Step::Place) {
            Step::Place if status == 201 => {
                self.step = Step::Ship(order_id(body)?);
                Ok(false)
            }
            Step::Place => Err(format!("place: status {status}")),
            Step::Ship(order) if status == 200 => {
                self.step = Step::Confirm(order);
                Ok(false)
            }
            Step::Ship(_) => Err(format!("ship: status {status}")),
            Step::Confirm(_) if status == 200 => Ok(true),
            Step::Confirm(_) => Err(format!("confirm: status {status}")),
        }
    }

    fn reset(&mut self) {
        self.step = Step::Place;
    }
}

/// The flow of client thread `thread` for the `POST /orders` row.
pub fn place_flow(thread: usize, users: usize, salt: u64) -> Box<dyn Flow> {
    let me = caller_of(thread, users);
    Box::new(Place {
        rng: Rng::new(thread, salt),
        users,
        me,
        token: token(me),
    })
}

/// The flow of client thread `thread` for the order-life row.
pub fn life_flow(thread: usize, users: usize, salt: u64) -> Box<dyn Flow> {
    let me = caller_of(thread, users);
    Box::new(Life {
        rng: Rng::new(thread, salt),
        users,
        me,
        token: token(me),
        seller: 0,
        step: Step::Place,
    })
}
