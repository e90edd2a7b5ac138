//! Reviews and order messages over the wire: who may write them, when,
//! once-only reviews, the rating summary on the public profile, paging, the
//! per-user message rate, and that neither changes an order.

use serde_json::{Value, json};

use crate::client::{Member, World, quick_user, world};
use crate::helpers::HttpResponse;

const ORDERS: &str = "/api/v1/orders";

/// A seller, a buyer with 100 btc, an outsider and an admin.
struct Market {
    w: World,
    admin: Member,
    seller: Member,
    buyer: Member,
    outsider: Member,
    listing: String,
}

fn market() -> Market {
    let w = world();
    let admin = quick_user(&w.db, "root", true);
    let seller = quick_user(&w.db, "sally", false);
    let buyer = quick_user(&w.db, "bob", false);
    let outsider = quick_user(&w.db, "carol", false);
    w.deposit(&admin, &buyer, "btc", "100");
    let created = w.post(
        "/api/v1/listings",
        Some(&seller.token),
        &json!({"title": "Brass lamp", "currency": "btc", "price": "1", "quantity": 50}),
    );
    assert_eq!(created.status, 201, "{}", created.body_text());
    let listing = created.json()["listing"]["id"]
        .as_str()
        .expect("listing id")
        .to_owned();
    Market {
        w,
        admin,
        seller,
        buyer,
        outsider,
        listing,
    }
}

fn order_path(order: &str, action: &str) -> String {
    if action.is_empty() {
        format!("{ORDERS}/{order}")
    } else {
        format!("{ORDERS}/{order}/{action}")
    }
}

impl Market {
    /// A paid order of one lamp by the buyer; its id.
    fn order(&self) -> String {
        let placed = self.w.post(
            ORDERS,
            Some(&self.buyer.token),
            &json!({"listing": self.listing}),
        );
        assert_eq!(placed.status, 201, "{}", placed.body_text());
        placed.json()["order"]["id"]
            .as_str()
            .expect("order id")
            .to_owned()
    }

    /// `who` moves `order` by `action`; panics unless 200.
    fn act(&self, who: &Member, order: &str, action: &str, body: Value) {
        let moved = self
            .w
            .post(&order_path(order, action), Some(&who.token), &body);
        assert_eq!(moved.status, 200, "{action}: {}", moved.body_text());
    }

    /// A completed order (placed, shipped, confirmed).
    fn completed(&self) -> String {
        let order = self.order();
        self.act(&self.seller, &order, "ship", json!({}));
        self.act(&self.buyer, &order, "confirm", json!({}));
        order
    }

    /// A resolved order (placed, disputed, split by the admin).
    fn resolved(&self) -> String {
        let order = self.order();
        self.act(
            &self.buyer,
            &order,
            "dispute",
            json!({"reason": "never came"}),
        );
        let path = format!("/api/v1/admin/orders/{order}/resolve");
        let split = json!({"to_seller": "0.4", "to_buyer": "0.6"});
        let resolved = self.w.post(&path, Some(&self.admin.token), &split);
        assert_eq!(resolved.status, 200, "{}", resolved.body_text());
        order
    }

    fn review(&self, who: &Member, order: &str, body: Value) -> HttpResponse {
        self.w
            .post(&order_path(order, "review"), Some(&who.token), &body)
    }

    fn say(&self, who: &Member, order: &str, text: &str) -> HttpResponse {
        self.w.post(
            &order_path(order, "messages"),
            Some(&who.token),
            &json!({"body": text}),
        )
    }

    fn state(&self, order: &str) -> Value {
        let read = self.w.get(&order_path(order, ""), &self.admin.token);
        assert_eq!(read.status, 200, "{}", read.body_text());
        read.json()["order"]["state"].clone()
    }

    fn rating(&self, user: &Member) -> Value {
        let profile = self
            .w
            .get(&format!("/api/v1/users/{}", user.id), &self.outsider.token);
        assert_eq!(profile.status, 200, "{}", profile.body_text());
        profile.json()["user"]["rating"].clone()
    }

    fn review_count(&self) -> i64 {
        crate::client::open_db(&self.w.db)
            .query_row("SELECT count(*) FROM reviews", [], |row| row.get(0))
            .expect("counting reviews")
    }
}

#[test]
fn reviews_wait_for_a_finished_order_and_each_party_reviews_the_other_once() {
    let m = market();
    let (seller, buyer) = (&m.seller, &m.buyer);
    assert_eq!(m.rating(seller), json!({"count": 0, "average": "0.00"}));

    let open = m.order();
    m.review(buyer, &open, json!({"rating": 5}))
        .assert_error(409, "invalid_state");
    m.act(seller, &open, "ship", json!({}));
    m.review(seller, &open, json!({"rating": 5}))
        .assert_error(409, "invalid_state");
    let cancelled = m.order();
    m.act(buyer, &cancelled, "cancel", json!({}));
    m.review(buyer, &cancelled, json!({"rating": 1}))
        .assert_error(409, "invalid_state");

    let done = m.completed();
    // Not a party: an outsider is told nothing exists; an admin, who sees
    // the order, is refused.
    m.review(&m.outsider, &done, json!({"rating": 5}))
        .assert_error(404, "not_found");
    m.review(&m.admin, &done, json!({"rating": 5}))
        .assert_error(403, "forbidden");
    m.review(buyer, "123456789", json!({"rating": 5}))
        .assert_error(404, "not_found");
    assert_eq!(m.review_count(), 0);

    let by_buyer = m.review(buyer, &done, json!({"rating": 5, "comment": "Bright!"}));
    assert_eq!(by_buyer.status, 201, "{}", by_buyer.body_text());
    let review = by_buyer.json()["review"].clone();
    assert_eq!(review["order"], json!(done));
    assert_eq!(review["author"], json!(buyer.id));
    assert_eq!(review["subject"], json!(seller.id));
    assert_eq!(review["rating"], json!(5));
    assert_eq!(review["comment"], json!("Bright!"));
    m.review(buyer, &done, json!({"rating": 1}))
        .assert_error(409, "already_reviewed");
    let by_seller = m.review(seller, &done, json!({"rating": 4}));
    assert_eq!(by_seller.status, 201, "{}", by_seller.body_text());
    assert_eq!(by_seller.json()["review"]["subject"], json!(buyer.id));
    assert_eq!(by_seller.json()["review"]["comment"], Value::Null);
    m.review(seller, &done, json!({"rating": 4}))
        .assert_error(409, "already_reviewed");

    assert_eq!(m.rating(seller), json!({"count": 1, "average": "5.00"}));
    assert_eq!(m.rating(buyer), json!({"count": 1, "average": "4.00"}));
    // A resolved order can be reviewed too; 5, 4 and 4 average 4.33.
    let resolved = m.resolved();
    assert_eq!(m.review(buyer, &resolved, json!({"rating": 4})).status, 201);
    let third = m.completed();
    assert_eq!(m.review(buyer, &third, json!({"rating": 4})).status, 201);
    assert_eq!(m.rating(seller), json!({"count": 3, "average": "4.33"}));
    assert!(m.w.check(&m.admin).is_empty());
}

#[test]
fn bad_reviews_get_400_naming_the_field_and_store_nothing() {
    let m = market();
    let done = m.completed();
    let long = "x".repeat(souk::orders::reviews::COMMENT_CHARS_MAX + 1);
    let cases = [
        (json!({"rating": 0}), "rating"),
        (json!({"rating": 6}), "rating"),
        (json!({"rating": -1}), "rating"),
        (json!({"rating": 4.5}), "rating"),
        (json!({"rating": "5"}), ""),
        (json!({}), ""),
        (json!({"rating": 5, "comment": long}), "comment"),
        (json!({"rating": 5, "stars": 5}), "stars"),
        (json!({"rating": 5.5}), "rating"),
        (json!({"rating": 5, "comment": "bell\u{7}"}), "comment"),
        (json!({"rating": 5, "comment": "line\r\nend"}), "comment"),
    ];
    for (body, field) in cases {
        let refused = m.review(&m.buyer, &done, body.clone());
        assert_eq!(refused.status, 400, "{body}: {}", refused.body_text());
        if !field.is_empty() {
            assert_eq!(refused.error()["field"], json!(field), "{body}");
        }
    }
    assert_eq!(m.review_count(), 0);
    let exact = "é".repeat(souk::orders::reviews::COMMENT_CHARS_MAX);
    let fits = m.review(&m.buyer, &done, json!({"rating": 3, "comment": exact}));
    assert_eq!(fits.status, 201, "a comment is counted in characters");
}

/// A rating is a whole number however it is written (`5.0` like a
/// quantity's `1.0`); a comment may hold line breaks and tabs.
#[test]
fn a_whole_float_rating_and_a_comment_with_line_breaks_are_accepted() {
    let m = market();
    let done = m.completed();
    let comment = "Good:\n\t- bright\n\t- solid";
    let review = m.review(&m.buyer, &done, json!({"rating": 5.0, "comment": comment}));
    assert_eq!(review.status, 201, "{}", review.body_text());
    assert_eq!(review.json()["review"]["rating"], json!(5));
    assert_eq!(review.json()["review"]["comment"], json!(comment));
    assert_eq!(m.rating(&m.seller), json!({"count": 1, "average": "5.00"}));
}

#[test]
fn a_users_reviews_page_newest_first_with_the_summary() {
    let m = market();
    let mut written = Vec::new();
    for rating in [5, 3, 4, 5] {
        let order = m.completed();
        let review = m.review(&m.buyer, &order, json!({"rating": rating}));
        assert_eq!(review.status, 201);
        written.push(review.json()["review"]["id"].clone());
    }
    written.reverse();
    let path = format!("/api/v1/users/{}/reviews", m.seller.id);
    let mut seen = Vec::new();
    for body in pages(&m, &path, &m.outsider, 3) {
        assert_eq!(body["summary"], json!({"count": 4, "average": "4.25"}));
        for review in body["reviews"].as_array().expect("reviews") {
            assert_eq!(review["subject"], json!(m.seller.id));
            seen.push(review["id"].clone());
        }
    }
    assert_eq!(seen, written, "every review once, newest first");

    let none = m.w.get(
        &format!("/api/v1/users/{}/reviews", m.buyer.id),
        &m.buyer.token,
    );
    assert_eq!(
        none.json(),
        json!({"reviews": [], "next": null, "summary": {"count": 0, "average": "0.00"}})
    );
    let stray = m.w.get(&format!("{path}?after=123"), &m.outsider.token);
    assert_eq!(
        stray.assert_error(404, "not_found")["field"],
        json!("after")
    );
    m.w.get("/api/v1/users/123/reviews", &m.outsider.token)
        .assert_error(404, "not_found");
    m.w.get(&format!("{path}?limit=0"), &m.outsider.token)
        .assert_error(400, "invalid_field");
    let anonymous = crate::client::request(m.w.app.addr, "GET", &path, None, None, &[]);
    assert_eq!(anonymous.status, 401);
}

/// Five messages on `order` from the buyer, the seller and an admin, each
/// answered with itself; their ids, oldest first.
fn five_messages(m: &Market, order: &str) -> Vec<Value> {
    let mut written = Vec::new();
    for (who, text) in [
        (&m.buyer, "Is it brass all through?"),
        (&m.seller, "Yes, solid brass."),
        (&m.admin, "Reminder: keep it civil."),
        (&m.buyer, "Thanks!"),
        (&m.seller, "Shipping today.\n\tTracking follows."),
    ] {
        let sent = m.say(who, order, text);
        assert_eq!(sent.status, 201, "{}", sent.body_text());
        let message = sent.json()["message"].clone();
        assert_eq!(message["author"], json!(who.id));
        assert_eq!(message["order"], json!(order));
        assert_eq!(message["body"], json!(text));
        written.push(message["id"].clone());
    }
    written
}

/// An outsider neither writes nor reads; an unknown order is 404; a bad
/// body is 400 naming the field.
fn bad_messages_are_refused(m: &Market, order: &str) {
    m.say(&m.outsider, order, "let me in")
        .assert_error(404, "not_found");
    m.say(&m.buyer, "123456789", "hello?")
        .assert_error(404, "not_found");
    let path = order_path(order, "messages");
    m.w.get(&path, &m.outsider.token)
        .assert_error(404, "not_found");
    let too_long = "x".repeat(souk::orders::messages::BODY_CHARS_MAX + 1);
    for (body, field) in [
        (json!({"body": ""}), "body"),
        (json!({ "body": too_long }), "body"),
        (json!({"body": "hi", "to": "sally"}), "to"),
        (json!({"body": "esc\u{1b}[2J"}), "body"),
        (json!({"body": "nul\u{0}"}), "body"),
    ] {
        let refused = m.w.post(&path, Some(&m.buyer.token), &body);
        assert_eq!(
            refused.assert_error(400, "invalid_field")["field"],
            json!(field),
            "{body}"
        );
    }
}

/// Every page of the list at `path`, read as `reader` `limit` at a time
/// by following `next`.
fn pages(m: &Market, path: &str, reader: &Member, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            None => format!("{path}?limit={limit}"),
            Some(cursor) => format!("{path}?limit={limit}&after={cursor}"),
        };
        let page = m.w.get(&page_path, &reader.token);
        assert_eq!(page.status, 200, "{}", page.body_text());
        let body = page.json();
        after = body["next"].as_str().map(str::to_owned);
        pages.push(body);
        if after.is_none() {
            return pages;
        }
    }
}

/// The ids of the messages at `path`, read as `reader` in pages of two.
fn messages_paged(m: &Market, path: &str, reader: &Member) -> Vec<Value> {
    pages(m, path, reader, 2)
        .iter()
        .flat_map(|page| page["messages"].as_array().expect("messages").clone())
        .map(|message| message["id"].clone())
        .collect()
}

#[test]
fn messages_are_for_the_parties_and_admins_oldest_first_and_change_nothing() {
    let m = market();
    let order = m.order();
    let before = m.w.balance(&m.buyer, "btc");
    let written = five_messages(&m, &order);
    bad_messages_are_refused(&m, &order);
    let path = order_path(&order, "messages");
    for reader in [&m.buyer, &m.seller, &m.admin] {
        let seen = messages_paged(&m, &path, reader);
        assert_eq!(seen, written, "every message once, oldest first");
    }
    assert_eq!(
        m.state(&order),
        json!("paid"),
        "messages never move an order"
    );
    assert_eq!(m.w.balance(&m.buyer, "btc"), before);
    let other = m.order();
    let stray = m.w.get(
        &format!(
            "{}?after={}",
            order_path(&other, "messages"),
            written[0].as_str().unwrap_or("")
        ),
        &m.buyer.token,
    );
    assert_eq!(
        stray.assert_error(404, "not_found")["field"],
        json!("after")
    );

    assert!(m.w.check(&m.admin).is_empty());
}

#[test]
fn a_user_sends_at_most_sixty_messages_a_minute() {
    let m = market();
    let order = m.order();
    for n in 0..souk::orders::messages::MESSAGES_PER_WINDOW {
        let sent = m.say(&m.buyer, &order, &format!("message {n}"));
        assert_eq!(sent.status, 201, "message {n}: {}", sent.body_text());
    }
    let refused = m.say(&m.buyer, &order, "one too many");
    refused.assert_error(429, "rate_limited");
    let wait: u64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // The limit is the sender's, not the order's.
    assert_eq!(m.say(&m.seller, &order, "still here").status, 201);
    let count: i64 = crate::client::open_db(&m.w.db)
        .query_row(
            "SELECT count(*) FROM order_messages WHERE author = ?1",
            [&m.buyer.id],
            |row| row.get(0),
        )
        .expect("counting");
    assert_eq!(count, 60, "the refused message was not stored");
}

/// A send the writer fails (here a trigger refuses every message) is not
/// stored, so it gives its slot back: the sender still has all sixty.
#[test]
fn a_message_that_fails_to_be_stored_is_not_counted() {
    let m = market();
    let order = m.order();
    let db = crate::client::open_db(&m.w.db);
    db.execute_batch(
        "CREATE TRIGGER refuse_messages BEFORE INSERT ON order_messages
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .expect("a refusing trigger");
    for n in 0..souk::orders::messages::MESSAGES_PER_WINDOW {
        let failed = m.say(&m.buyer, &order, &format!("lost {n}"));
        assert!(
            failed.status >= 500,
            "message {n}: {} {}",
            failed.status,
            failed.body_text()
        );
    }
    db.execute_batch("DROP TRIGGER refuse_messages")
        .expect("dropping the trigger");
    for n in 0..souk::orders::messages::MESSAGES_PER_WINDOW {
        let sent = m.say(&m.buyer, &order, &format!("message {n}"));
        assert_eq!(sent.status, 201, "message {n}: {}", sent.body_text());
    }
    m.say(&m.buyer, &order, "one too many")
        .assert_error(429, "rate_limited");
}
