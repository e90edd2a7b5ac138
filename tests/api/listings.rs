//! Listings (docs/api.md, "Listings"): creating and editing, states and
//! who sees what, input rules, the caller's own list, and search — words,
//! accents, prefixes, ranking, hostile queries, filters, sorts and paging
//! while listings are added.

use std::collections::HashSet;

use serde_json::{Value, json};
use souk::cache::search::SEARCH_TTL;

use crate::client::{Member, World, quick_user, request, send_json, world};
use crate::helpers::{Client, HttpResponse};
use crate::seeded::{Rng, SeedOnFailure, test_seed};

const LISTINGS: &str = "/api/v1/listings";
const MINE: &str = "/api/v1/users/me/listings";

// ---- local helpers ---------------------------------------------------------

fn listing_path(id: &str) -> String {
    format!("{LISTINGS}/{id}")
}

fn post(w: &World, who: &Member, body: &Value) -> HttpResponse {
    w.post(LISTINGS, Some(&who.token), body)
}

/// Creates a listing of `who`; panics unless 201; returns the listing.
fn create(w: &World, who: &Member, body: Value) -> Value {
    let response = post(w, who, &body);
    assert_eq!(response.status, 201, "{}", response.body_text());
    response.json()["listing"].clone()
}

/// A btc listing titled `title` at `price`.
fn item(w: &World, who: &Member, title: &str, price: &str) -> String {
    let listing = create(
        w,
        who,
        json!({"title": title, "currency": "btc", "price": price}),
    );
    listing["id"].as_str().expect("an id").to_owned()
}

fn anonymous(w: &World, path: &str) -> HttpResponse {
    request(w.app.addr, "GET", path, None, None, &[])
}

fn get_as(w: &World, path: &str, who: Option<&Member>) -> HttpResponse {
    request(
        w.app.addr,
        "GET",
        path,
        who.map(|m| m.token.as_str()),
        None,
        &[],
    )
}

/// `GET /listings?{query}` anonymously; panics unless 200; (ids, next).
fn search(w: &World, query: &str) -> (Vec<String>, Option<String>) {
    let response = anonymous(w, &format!("{LISTINGS}?{query}"));
    assert_eq!(response.status, 200, "{query}: {}", response.body_text());
    page_of(&response)
}

fn page_of(response: &HttpResponse) -> (Vec<String>, Option<String>) {
    let body = response.json();
    let ids = body["listings"]
        .as_array()
        .expect("listings")
        .iter()
        .map(|l| l["id"].as_str().expect("an id").to_owned())
        .collect();
    (ids, body["next"].as_str().map(str::to_owned))
}

fn search_ids(w: &World, query: &str) -> Vec<String> {
    search(w, query).0
}

/// Percent-encodes every byte that is not unreserved.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn patch(w: &World, who: &Member, id: &str, body: Value) -> HttpResponse {
    w.patch(&listing_path(id), &who.token, &body)
}

fn set_state(w: &World, who: &Member, id: &str, state: &str) {
    let response = patch(w, who, id, json!({"state": state}));
    assert_eq!(response.status, 200, "{state}: {}", response.body_text());
    assert_eq!(response.json()["listing"]["state"], state);
}

// ---- creating and reading ----------------------------------------------------

#[test]
fn a_listing_is_created_active_with_defaults_and_anyone_can_read_it() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let listing = create(
        &w,
        &seller,
        json!({"title": "Ledger Nano", "currency": "btc", "price": "1.5"}),
    );
    assert_eq!(listing["seller"], seller.id.as_str());
    assert_eq!(listing["title"], "Ledger Nano");
    assert_eq!(listing["description"], "");
    assert_eq!(listing["currency"], "btc");
    assert_eq!(listing["price"], "1.50000000");
    assert_eq!(listing["quantity"], 1);
    assert_eq!(listing["tags"], json!([]));
    assert_eq!(listing["state"], "active");
    assert_eq!(listing["created_at"], listing["updated_at"]);
    let keys: HashSet<&str> = listing
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "seller",
        "title",
        "description",
        "currency",
        "price",
        "quantity",
        "tags",
        "state",
        "created_at",
        "updated_at",
    ]
    .into();
    assert_eq!(keys, expected);
    let id = listing["id"].as_str().expect("an id");
    let read = anonymous(&w, &listing_path(id));
    assert_eq!(read.status, 200, "{}", read.body_text());
    assert_eq!(read.json()["listing"], listing);

    let full = create(
        &w,
        &seller,
        json!({"title": "Monero hat", "description": "Warm.\nOrange.", "currency": "xmr",
               "price": "0.000000000001", "quantity": 0, "tags": ["hat", "xmr-merch", "hat"]}),
    );
    assert_eq!(full["price"], "0.000000000001");
    assert_eq!(full["quantity"], 0);
    assert_eq!(
        full["tags"],
        json!(["hat", "xmr-merch"]),
        "a repeated tag is kept once"
    );
}

#[test]
fn creating_needs_a_token_and_reading_with_a_bad_token_is_401() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let body = json!({"title": "x", "currency": "btc", "price": "1"});
    w.post(LISTINGS, None, &body)
        .assert_error(401, "unauthenticated");
    let id = item(&w, &seller, "thing", "1");
    let response = request(
        w.app.addr,
        "GET",
        &listing_path(id.as_str()),
        Some("not-a-token"),
        None,
        &[],
    );
    response.assert_error(401, "unauthenticated");
    let response = request(w.app.addr, "GET", LISTINGS, Some("nope"), None, &[]);
    response.assert_error(401, "unauthenticated");
    anonymous(&w, &listing_path("123")).assert_error(404, "not_found");
    anonymous(&w, &listing_path("abc")).assert_error(404, "not_found");
}

#[test]
fn bad_inputs_get_400_naming_the_field_and_create_nothing() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let base = json!({"title": "ok", "currency": "btc", "price": "1"});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let long_title = "é".repeat(201);
    let cases: Vec<(Value, &str)> = vec![
        (with("title", json!("")), "title"),
        (with("title", json!(long_title)), "title"),
        (with("title", json!("tab\there")), "title"),
        (
            with("description", json!("x".repeat(20_001))),
            "description",
        ),
        (
            with(
                "tags",
                json!(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]),
            ),
            "tags",
        ),
        (with("tags", json!(["snake_case"])), "tags"),
        (with("tags", json!(["Upper"])), "tags"),
        (with("tags", json!([""])), "tags"),
        (with("tags", json!(["x".repeat(33)])), "tags"),
        (with("price", json!("0")), "price"),
        (with("price", json!("-1")), "price"),
        (with("price", json!("1e3")), "price"),
        (with("price", json!("0.000000001")), "price"),
        (with("price", json!(1)), "price"),
        (with("quantity", json!(-1)), "quantity"),
        (with("quantity", json!(1_000_001)), "quantity"),
        (with("quantity", json!(2.5)), "quantity"),
        (with("quantity", json!("1")), "quantity"),
        (with("currency", json!("doge")), "currency"),
    ];
    for (body, field) in cases {
        let response = post(&w, &seller, &body);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{body}: {}", response.body_text());
    }
    let unknown = with("colour", json!("red"));
    assert_eq!(post(&w, &seller, &unknown).status, 400);
    assert_eq!(post(&w, &seller, &json!({"title": "no price"})).status, 400);
    // The limits themselves are fine.
    create(&w, &seller, with("title", json!("é".repeat(200))));
    create(&w, &seller, with("quantity", json!(1_000_000)));
    // JSON Schema's integer: a number with no fraction, written either way.
    let three = create(&w, &seller, with("quantity", json!(3.0)));
    assert_eq!(three["quantity"], 3);
    create(
        &w,
        &seller,
        with(
            "tags",
            json!(["a", "b", "c", "d", "e", "f", "g", "h", "i", "x".repeat(32)]),
        ),
    );
    let mine = w.get(MINE, &seller.token);
    assert_eq!(mine.json()["listings"].as_array().map(Vec::len), Some(4));
}

// ---- states, visibility, edits -------------------------------------------------

#[test]
fn states_move_between_active_and_paused_and_closed_is_final() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let id = item(&w, &seller, "lamp", "2");
    set_state(&w, &seller, &id, "paused");
    set_state(&w, &seller, &id, "paused");
    set_state(&w, &seller, &id, "active");
    set_state(&w, &seller, &id, "closed");
    for body in [
        json!({"state": "active"}),
        json!({"state": "paused"}),
        json!({"state": "closed"}),
        json!({"title": "new"}),
        json!({}),
    ] {
        patch(&w, &seller, &id, body).assert_error(409, "invalid_state");
    }
    let read = w.get(&listing_path(&id), &seller.token);
    assert_eq!(read.json()["listing"]["state"], "closed");
    assert_eq!(read.json()["listing"]["title"], "lamp");
    // A bad input on a closed listing is still a 400: inputs come first.
    patch(&w, &seller, &id, json!({"state": "gone"})).assert_error(400, "invalid_field");
}

#[test]
fn paused_and_closed_listings_are_seen_only_by_their_seller_and_admins() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let other = quick_user(&w.db, "other", false);
    let admin = quick_user(&w.db, "admin", true);
    let id = item(&w, &seller, "chair", "3");
    let path = listing_path(&id);
    for state in ["active", "paused", "closed"] {
        if state != "active" {
            set_state(&w, &seller, &id, state);
        }
        let public = state == "active";
        let expect = |who: Option<&Member>, visible: bool| {
            let response = get_as(&w, &path, who);
            if visible {
                assert_eq!(response.status, 200, "{state}: {}", response.body_text());
                assert_eq!(response.json()["listing"]["state"], state);
            } else {
                response.assert_error(404, "not_found");
            }
        };
        expect(None, public);
        expect(Some(&other), public);
        expect(Some(&seller), true);
        expect(Some(&admin), true);
        // Search shows active listings only, to everyone.
        assert_eq!(search_ids(&w, "q=chair").len(), usize::from(public));
        let mine = page_of(&w.get(MINE, &seller.token)).0;
        assert_eq!(mine, vec![id.clone()], "own list shows every state");
    }
}

#[test]
fn a_hidden_listing_as_a_search_cursor_answers_like_an_id_that_never_existed() {
    // Regression: the cursor's key was read whatever the listing's state,
    // so `after=<paused id>` (200 vs 404) told its existence, `q=X` with
    // it its words by prefix, and the price sorts where its price lies.
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    for title in ["public lamp", "public lamp two", "public lamp three"] {
        item(&w, &seller, title, "3");
    }
    let hidden = item(&w, &seller, "lamp zebrafish prototype", "2.5");
    set_state(&w, &seller, &hidden, "paused");
    let never = "1234567";
    for query in [
        "",
        "q=lamp",
        "q=lamp+zebr",
        "sort=price_asc&currency=btc",
        "sort=price_desc&currency=btc",
        "sort=newest",
    ] {
        for after in [hidden.as_str(), never] {
            let path = format!("{LISTINGS}?{query}&after={after}");
            let error = anonymous(&w, &path).assert_error(404, "not_found");
            assert_eq!(error["field"], "after", "{path}: {error}");
            let error = get_as(&w, &path, Some(&seller)).assert_error(404, "not_found");
            assert_eq!(error["field"], "after", "the seller's search too: {path}");
        }
    }
}

#[test]
fn only_the_seller_or_an_admin_may_edit() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let other = quick_user(&w.db, "other", false);
    let admin = quick_user(&w.db, "admin", true);
    let id = item(&w, &seller, "desk", "4");
    patch(&w, &other, &id, json!({"title": "mine now"})).assert_error(403, "forbidden");
    let response = patch(
        &w,
        &admin,
        &id,
        json!({"title": "Desk (checked)", "quantity": 3}),
    );
    assert_eq!(response.status, 200, "{}", response.body_text());
    set_state(&w, &seller, &id, "paused");
    // Other users cannot see a paused listing, so for them it does not exist.
    patch(&w, &other, &id, json!({"title": "x"})).assert_error(404, "not_found");
    set_state(&w, &admin, &id, "active");
    patch(&w, &seller, "123", json!({"title": "x"})).assert_error(404, "not_found");
    let body = json!({"title": "x"});
    request(
        w.app.addr,
        "PATCH",
        &listing_path(&id),
        None,
        Some(&body),
        &[],
    )
    .assert_error(401, "unauthenticated");
    let read = anonymous(&w, &listing_path(&id)).json();
    assert_eq!(read["listing"]["title"], "Desk (checked)");
    assert_eq!(read["listing"]["quantity"], 3);
}

#[test]
fn an_edit_changes_what_it_names_and_is_seen_at_once() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let listing = create(
        &w,
        &seller,
        json!({"title": "Old title", "description": "old words", "currency": "xmr",
               "price": "2", "tags": ["old"]}),
    );
    let id = listing["id"].as_str().expect("an id");
    // Read once so the listing is cached; the edit must replace it.
    assert_eq!(anonymous(&w, &listing_path(id)).status, 200);
    let response = patch(
        &w,
        &seller,
        id,
        json!({"title": "New title", "description": "fresh words", "price": "0.5",
               "quantity": 7, "tags": ["new", "shiny"]}),
    );
    assert_eq!(response.status, 200, "{}", response.body_text());
    let read = anonymous(&w, &listing_path(id)).json()["listing"].clone();
    assert_eq!(read, response.json()["listing"]);
    assert_eq!(read["title"], "New title");
    assert_eq!(read["description"], "fresh words");
    assert_eq!(read["price"], "0.500000000000");
    assert_eq!(read["quantity"], 7);
    assert_eq!(read["tags"], json!(["new", "shiny"]));
    assert_eq!(read["currency"], "xmr");
    assert_eq!(read["created_at"], listing["created_at"]);
    // The index follows the text and the tags.
    assert!(search_ids(&w, "q=old").is_empty());
    assert_eq!(search_ids(&w, "q=fresh"), vec![id.to_owned()]);
    assert!(search_ids(&w, "tag=old").is_empty());
    assert_eq!(search_ids(&w, "tag=shiny"), vec![id.to_owned()]);
}

#[test]
fn bad_edits_get_400_naming_the_field_and_change_nothing() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let listing = create(
        &w,
        &seller,
        json!({"title": "Fixed", "currency": "btc", "price": "1", "tags": ["keep"]}),
    );
    let id = listing["id"].as_str().expect("an id");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"price": "0"}), "price"),
        (json!({"price": "-1"}), "price"),
        (json!({"price": "1e3"}), "price"),
        (json!({"price": "0.0000000000001"}), "price"),
        (json!({"price": "92233720368.547758071"}), "price"),
        (json!({"quantity": -1}), "quantity"),
        (json!({"quantity": 1.5}), "quantity"),
        (json!({"quantity": 1_000_001}), "quantity"),
        (json!({"tags": ["Bad"]}), "tags"),
        (json!({"state": "sold"}), "state"),
        (json!({"title": "fine", "state": "open"}), "state"),
    ];
    for (body, field) in cases {
        let response = patch(&w, &seller, id, body.clone());
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{body}");
    }
    assert_eq!(
        patch(&w, &seller, id, json!({"currency": "xmr"})).status,
        400
    );
    // A price only another currency takes (xmr has 12 places, btc 8)
    // conflicts with the listing's currency.
    patch(&w, &seller, id, json!({"price": "0.000000001"})).assert_error(409, "currency_mismatch");
    let read = anonymous(&w, &listing_path(id)).json()["listing"].clone();
    assert_eq!(read, listing);
}

#[test]
fn own_listings_page_newest_first_with_a_state_filter() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let other = quick_user(&w.db, "other", false);
    let ids: Vec<String> = (0..5)
        .map(|i| item(&w, &seller, &format!("thing {i}"), "1"))
        .collect();
    item(&w, &other, "not mine", "1");
    set_state(&w, &seller, &ids[1], "paused");
    set_state(&w, &seller, &ids[3], "closed");
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let mut seen = Vec::new();
    let mut path = format!("{MINE}?limit=2");
    loop {
        let response = w.get(&path, &seller.token);
        assert_eq!(response.status, 200, "{}", response.body_text());
        let (page, next) = page_of(&response);
        assert!(page.len() <= 2);
        seen.extend(page);
        match next {
            Some(cursor) => path = format!("{MINE}?limit=2&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(
        page_of(&w.get(&format!("{MINE}?state=paused"), &seller.token)).0,
        vec![ids[1].clone()]
    );
    assert_eq!(
        page_of(&w.get(&format!("{MINE}?state=closed"), &seller.token)).0,
        vec![ids[3].clone()]
    );
    assert_eq!(
        page_of(&w.get(&format!("{MINE}?state=active"), &seller.token))
            .0
            .len(),
        3
    );
    w.get(&format!("{MINE}?state=sold"), &seller.token)
        .assert_error(400, "invalid_field");
    w.get(&format!("{MINE}?limit=0"), &seller.token)
        .assert_error(400, "invalid_field");
    w.get(&format!("{MINE}?after=x"), &seller.token)
        .assert_error(400, "invalid_field");
    // A cursor from someone else's list names nothing in this one.
    let error = w
        .get(&format!("{MINE}?after={}", ids[0]), &other.token)
        .assert_error(404, "not_found");
    assert_eq!(error["field"], "after");
    anonymous(&w, MINE).assert_error(401, "unauthenticated");
    // `/users/me/listings` is not `/users/{id}`.
    assert_eq!(w.get("/api/v1/users/me", &seller.token).status, 200);
}

// ---- search ------------------------------------------------------------------

#[test]
fn search_folds_case_and_accents_and_matches_the_last_word_as_a_prefix() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let cafe = item(&w, &seller, "Café crème grinder", "1");
    let ledger = item(&w, &seller, "Hardware ledger wallet", "1");
    for q in [
        "cafe",
        "CAFE",
        "Café",
        "caf",
        "cafe%20creme",
        "CRÈME",
        "grind",
    ] {
        assert_eq!(search_ids(&w, &format!("q={q}")), vec![cafe.clone()], "{q}");
    }
    assert_eq!(search_ids(&w, "q=ledg"), vec![ledger.clone()]);
    assert_eq!(search_ids(&w, "q=hardware+ledg"), vec![ledger.clone()]);
    // Only the last word is a prefix; every word must match.
    assert!(search_ids(&w, "q=ledg+wallet").is_empty());
    assert!(search_ids(&w, "q=ledger+coffee").is_empty());
    assert_eq!(search_ids(&w, "q=wallet+ledger"), vec![ledger.clone()]);
    // Combining accents (e + U+0301) fold too.
    assert_eq!(
        search_ids(&w, &format!("q={}", encode("cafe\u{301}"))),
        vec![cafe.clone()]
    );
}

#[test]
fn a_title_match_ranks_above_a_description_only_match() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let in_description = create(
        &w,
        &seller,
        json!({"title": "Warm socks", "description": "Pairs well with a lantern.",
               "currency": "btc", "price": "1"}),
    )["id"]
        .clone();
    let in_title = create(
        &w,
        &seller,
        json!({"title": "Brass lantern", "description": "Bright.", "currency": "btc", "price": "1"}),
    )["id"]
        .clone();
    item(&w, &seller, "Unrelated", "1");
    let found = search_ids(&w, "q=lantern");
    assert_eq!(
        found,
        vec![
            in_title.as_str().unwrap_or_default().to_owned(),
            in_description.as_str().unwrap_or_default().to_owned()
        ]
    );
    assert_eq!(search_ids(&w, "q=lantern&sort=relevance"), found);
}

/// Queries that mean something to the search engine's syntax, or are odd
/// Unicode; each must be searched as plain text.
#[rustfmt::skip]
const HOSTILE_QUERIES: &[&str] = &[
    "\"", "\"\"", "*", "-x", "a:b", "title:a", "^", "^a", "(", ")",
    "NEAR(a b)", "NEAR", "OR", "a OR b", "NOT", "NOT a", "AND", "'", "\\",
    "a*", "*a", "{a b}", "a + b", "🎉", "🎉a🎉", "e\u{301}", "\u{301}", "%00",
    "\u{0}", "a\u{0}b", "…", "ǅ", "ß", "İ", "日本語", "١٢٣", "\u{200B}",
    "\u{FEFF}", "a\"b", "col:\"x\"", "a AND (b OR", "%", "%%", "+", "NEAR/2",
    "\u{10FFFF}",
];

#[test]
fn query_syntax_is_plain_text_and_no_query_gives_a_5xx() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let near = item(&w, &seller, "NEAR OR NOT AND", "1");
    let plain = item(&w, &seller, "plain a b", "1");
    let long_word = "x".repeat(200);
    for q in HOSTILE_QUERIES.iter().copied().chain([long_word.as_str()]) {
        // Every byte not unreserved is percent-encoded: NUL goes as `%00`.
        let wire = encode(q);
        for sort in [
            "",
            "&sort=relevance",
            "&sort=newest",
            "&sort=price_asc",
            "&sort=price_desc",
        ] {
            let response = anonymous(&w, &format!("{LISTINGS}?q={wire}{sort}"));
            assert!(
                response.status == 200,
                "q={q:?}{sort}: {} {}",
                response.status,
                response.body_text()
            );
        }
    }
    // Words that mean something to the engine are searched as words.
    assert_eq!(search_ids(&w, "q=NEAR"), vec![near.clone()]);
    assert_eq!(search_ids(&w, "q=or+not"), vec![near.clone()]);
    assert_eq!(search_ids(&w, "q=a+OR+b"), Vec::<String>::new());
    assert_eq!(search_ids(&w, "q=a+b"), vec![plain.clone()]);
    // An empty or all-punctuation q is no q: everything, newest first.
    let everything = vec![plain.clone(), near.clone()];
    assert_eq!(search_ids(&w, "q="), everything);
    assert_eq!(
        search_ids(&w, &format!("q={}", encode("\"*-:^()"))),
        everything
    );
    let too_long = anonymous(&w, &format!("{LISTINGS}?q={}", "x".repeat(201)));
    assert_eq!(too_long.assert_error(400, "invalid_field")["field"], "q");
}

#[test]
fn filters_narrow_the_results_and_price_bounds_need_a_currency() {
    let w = world();
    let alice = quick_user(&w.db, "alice", false);
    let bob = quick_user(&w.db, "bob", false);
    let a1 = create(
        &w,
        &alice,
        json!({"title": "one", "currency": "btc", "price": "1", "tags": ["red"]}),
    );
    let a2 = create(
        &w,
        &alice,
        json!({"title": "two", "currency": "xmr", "price": "2", "tags": ["red", "big"]}),
    );
    let b1 = create(
        &w,
        &bob,
        json!({"title": "three", "currency": "btc", "price": "3", "tags": ["big"]}),
    );
    let id = |l: &Value| l["id"].as_str().unwrap_or_default().to_owned();
    let (a1, a2, b1) = (id(&a1), id(&a2), id(&b1));
    let none: Vec<String> = Vec::new();
    let alices = format!("seller={}", alice.id);
    let alices_big_two = format!("q=two&seller={}&tag=big", alice.id);
    #[rustfmt::skip]
    let narrowed = [
        (alices.as_str(), vec![a2.clone(), a1.clone()]),
        ("currency=btc", vec![b1.clone(), a1.clone()]),
        ("tag=red", vec![a2.clone(), a1.clone()]),
        ("tag=big&currency=btc", vec![b1.clone()]),
        ("currency=btc&min_price=1&max_price=3", vec![b1.clone(), a1.clone()]),
        ("currency=btc&min_price=1.00000001", vec![b1.clone()]),
        ("currency=btc&max_price=2.99999999", vec![a1.clone()]),
        ("currency=btc&min_price=3&max_price=3", vec![b1.clone()]),
        ("currency=btc&min_price=4", none.clone()),
        ("seller=123", none.clone()),
        ("tag=none", none),
        (alices_big_two.as_str(), vec![a2]),
    ];
    for (query, want) in narrowed {
        assert_eq!(search_ids(&w, query), want, "{query}");
    }
    let bad = [
        ("min_price=1", "min_price"),
        ("max_price=1", "max_price"),
        ("currency=btc&min_price=-1", "min_price"),
        ("currency=btc&max_price=1e3", "max_price"),
        ("currency=btc&min_price=0.000000001", "min_price"),
        ("currency=doge", "currency"),
        ("seller=abc", "seller"),
        ("seller=0", "seller"),
        ("tag=Red", "tag"),
        ("tag=", "tag"),
        ("sort=cheapest", "sort"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("after=abc", "after"),
    ];
    for (query, field) in bad {
        let response = anonymous(&w, &format!("{LISTINGS}?{query}"));
        assert_eq!(
            response.assert_error(400, "invalid_field")["field"],
            field,
            "{query}"
        );
    }
    let unknown = anonymous(&w, &format!("{LISTINGS}?after=123"));
    assert_eq!(unknown.assert_error(404, "not_found")["field"], "after");
}

#[test]
fn each_sort_has_its_order() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let mk = |title: &str, currency: &str, price: &str| {
        create(
            &w,
            &seller,
            json!({"title": title, "currency": currency, "price": price}),
        )["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let b2 = mk("gadget b2", "btc", "2");
    let x1 = mk("gadget x1", "xmr", "1");
    let b1 = mk("gadget b1", "btc", "1");
    let b2_later = mk("gadget b2 again", "btc", "2");
    assert_eq!(
        search_ids(&w, ""),
        vec![b2_later.clone(), b1.clone(), x1.clone(), b2.clone()]
    );
    assert_eq!(search_ids(&w, "sort=newest"), search_ids(&w, ""));
    assert_eq!(
        search_ids(&w, "sort=relevance"),
        search_ids(&w, ""),
        "relevance without q is newest"
    );
    // Price sorts: by currency, then price; equal prices oldest first going up
    // and newest first going down.
    assert_eq!(
        search_ids(&w, "sort=price_asc"),
        vec![b1.clone(), b2.clone(), b2_later.clone(), x1.clone()]
    );
    assert_eq!(
        search_ids(&w, "sort=price_desc"),
        vec![b2_later.clone(), b2.clone(), b1.clone(), x1.clone()]
    );
    assert_eq!(
        search_ids(&w, "q=gadget&sort=price_asc&currency=btc"),
        vec![b1.clone(), b2.clone(), b2_later.clone()]
    );
    assert_eq!(search_ids(&w, "q=gadget").len(), 4);
}

/// Pages through `query` with `limit`, calling `between` after each page;
/// returns every id seen, in order.
fn page_through(w: &World, query: &str, limit: u64, mut between: impl FnMut()) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let after = next.map(|c| format!("&after={c}")).unwrap_or_default();
        let (page, cursor) = search(w, &format!("{query}&limit={limit}{after}"));
        assert!(page.len() as u64 <= limit);
        seen.extend(page);
        between();
        match cursor {
            Some(cursor) => next = Some(cursor),
            None => return seen,
        }
    }
}

#[test]
fn paging_returns_every_match_once_in_order_while_listings_are_added() {
    let seed = test_seed();
    let _seed = SeedOnFailure(seed);
    let mut rng = Rng(seed);
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let price = |rng: &mut Rng| format!("{}.{:02}", 1 + rng.below(5), rng.below(3) * 25);
    let tag = |rng: &mut Rng| if rng.below(2) == 0 { "even" } else { "odd" };
    let currency = |rng: &mut Rng| if rng.below(2) == 0 { "btc" } else { "xmr" };
    let mut initial = Vec::new();
    for i in 0..30 {
        let (p, c) = (price(&mut rng), currency(&mut rng));
        let listing = create(
            &w,
            &seller,
            json!({"title": format!("widget {i}"), "currency": c, "price": p, "tags": [tag(&mut rng)]}),
        );
        initial.push(listing["id"].as_str().unwrap_or_default().to_owned());
    }
    for query in [
        "q=widget&sort=newest",
        "sort=price_asc",
        "sort=price_desc",
        "tag=even",
        "tag=odd&sort=price_asc",
        "q=widget&tag=even&sort=price_desc",
        "sort=newest&currency=btc",
    ] {
        // The whole list before paging.
        let expected = page_through(&w, query, 100, || {});
        let limit = 1 + rng.below(7);
        let mut added = 0;
        let seen = page_through(&w, query, limit, || {
            let (p, c) = (price(&mut rng), currency(&mut rng));
            create(
                &w,
                &seller,
                json!({"title": format!("widget late {added}"), "currency": c, "price": p,
                       "tags": [tag(&mut rng)]}),
            );
            added += 1;
        });
        // Every listing there at the start, once and in order; listings
        // added meanwhile may appear (after the cursor) but never twice.
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: a listing came twice");
        let old: Vec<&String> = seen.iter().filter(|id| expected.contains(id)).collect();
        assert_eq!(
            old,
            expected.iter().collect::<Vec<_>>(),
            "{query} limit {limit}"
        );
        if !query.contains("price") {
            assert_eq!(seen, expected, "newest first: nothing added shows up later");
        }
    }
    // Relevance: each match at most once, and all of them once the cached
    // pages from before the additions have aged out (search results may lag
    // new listings by up to SEARCH_TTL).
    std::thread::sleep(SEARCH_TTL);
    let seen = page_through(&w, "q=widget", 3, || {});
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    let all = page_through(&w, "q=widget&sort=newest", 100, || {});
    assert_eq!(seen.len(), all.len());
}

#[test]
fn single_listing_reads_are_cached_and_an_edit_is_seen_at_once() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let admin = quick_user(&w.db, "admin", true);
    let id = item(&w, &seller, "cached", "1");
    let figures =
        || w.get("/api/v1/admin/dashboard", &admin.token).json()["caches"]["listings"].clone();
    let before = figures();
    for _ in 0..3 {
        assert_eq!(anonymous(&w, &listing_path(&id)).status, 200);
    }
    let after = figures();
    let hits = |f: &Value| f["hits"].as_u64().unwrap_or_default();
    assert!(hits(&after) >= hits(&before) + 2, "{before} -> {after}");
    let response = patch(&w, &seller, &id, json!({"price": "2"}));
    assert_eq!(response.status, 200, "{}", response.body_text());
    let read = anonymous(&w, &listing_path(&id)).json();
    assert_eq!(read["listing"]["price"], "2.00000000");
}

#[test]
fn anonymous_reads_are_limited_per_address_and_signed_in_ones_are_not() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let id = item(&w, &seller, "popular", "1");
    let mut client = Client::connect(w.app.addr);
    let per_minute = souk::limits::ANONYMOUS_READS_PER_MINUTE;
    for n in 0..per_minute {
        let path = if n % 2 == 0 {
            listing_path(&id)
        } else {
            LISTINGS.to_owned()
        };
        let response = send_json(&mut client, "GET", &path, None, None, &[]).expect("an answer");
        assert_eq!(response.status, 200, "read {n}: {}", response.body_text());
    }
    let refused = anonymous(&w, LISTINGS);
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    anonymous(&w, &listing_path(&id)).assert_error(429, "rate_limited");
    let signed_in = get_as(&w, &listing_path(&id), Some(&seller));
    assert_eq!(signed_in.status, 200, "{}", signed_in.body_text());
}

// ---- the search cache --------------------------------------------------------

/// The dashboard's figures of the search cache.
fn search_cache(w: &World, admin: &Member) -> Value {
    w.get("/api/v1/admin/dashboard", &admin.token).json()["caches"]["searches"].clone()
}

fn hits(figures: &Value) -> u64 {
    figures["hits"].as_u64().unwrap_or_default()
}

/// Asks `query` until the cache answers it (a hit), then returns the ids.
fn cached_search(w: &World, admin: &Member, query: &str) -> Vec<String> {
    search_ids(w, query);
    let before = hits(&search_cache(w, admin));
    let ids = search_ids(w, query);
    let after = hits(&search_cache(w, admin));
    assert_eq!(after, before + 1, "{query}: the second ask was a hit");
    ids
}

#[test]
fn a_cached_search_never_shows_a_listing_as_it_was_before_an_answered_edit() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let admin = quick_user(&w.db, "admin", true);
    let paused = item(&w, &seller, "zephyr one", "1");
    let closed = item(&w, &seller, "zephyr two", "2");
    let retitled = item(&w, &seller, "zephyr three", "3");
    let cheap = item(&w, &seller, "zephyr four", "4");
    let all = vec![
        cheap.clone(),
        retitled.clone(),
        closed.clone(),
        paused.clone(),
    ];
    assert_eq!(cached_search(&w, &admin, "q=zephyr&sort=price_desc"), all);

    set_state(&w, &seller, &paused, "paused");
    let shown = search_ids(&w, "q=zephyr&sort=price_desc");
    assert_eq!(
        shown,
        [cheap.clone(), retitled.clone(), closed.clone()],
        "paused: gone at once"
    );
    set_state(&w, &seller, &paused, "active");
    cached_search(&w, &admin, "q=zephyr&sort=price_desc");

    set_state(&w, &seller, &closed, "closed");
    let shown = search_ids(&w, "q=zephyr&sort=price_desc");
    assert_eq!(
        shown,
        [cheap.clone(), retitled.clone(), paused.clone()],
        "closed: gone at once"
    );
    cached_search(&w, &admin, "q=zephyr&sort=price_desc");

    let response = patch(&w, &seller, &retitled, json!({"title": "other"}));
    assert_eq!(response.status, 200, "{}", response.body_text());
    let shown = search_ids(&w, "q=zephyr&sort=price_desc");
    assert_eq!(
        shown,
        [cheap.clone(), paused.clone()],
        "retitled: gone at once"
    );
    cached_search(&w, &admin, "q=zephyr&sort=price_desc");

    let response = patch(&w, &seller, &cheap, json!({"price": "0.5"}));
    assert_eq!(response.status, 200, "{}", response.body_text());
    let shown = search_ids(&w, "q=zephyr&sort=price_desc");
    assert_eq!(
        shown,
        [paused.clone(), cheap.clone()],
        "repriced: reordered at once"
    );

    an_edited_description_or_tag_leaves_a_cached_search_at_once(&w, &seller, &admin);
}

/// A listing found through its description or tag is gone from a cached
/// search as soon as an edit of either is answered.
fn an_edited_description_or_tag_leaves_a_cached_search_at_once(
    w: &World,
    seller: &Member,
    admin: &Member,
) {
    let described = create(
        w,
        seller,
        json!({"title": "plain", "description": "a quokka", "currency": "btc", "price": "5",
               "tags": ["red"]}),
    )["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cached_search(w, admin, "q=quokka"), vec![described.clone()]);
    assert_eq!(cached_search(w, admin, "tag=red"), vec![described.clone()]);
    let response = patch(w, seller, &described, json!({"description": "a wombat"}));
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert!(search_ids(w, "q=quokka").is_empty(), "redescribed");
    cached_search(w, admin, "tag=red");
    let response = patch(w, seller, &described, json!({"tags": ["blue"]}));
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert!(search_ids(w, "tag=red").is_empty(), "retagged");
}

#[test]
fn stock_changes_show_in_a_cached_search_without_dropping_it() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let buyer = quick_user(&w.db, "buyer", false);
    let admin = quick_user(&w.db, "admin", true);
    w.deposit(&admin, &buyer, "btc", "1");
    let id = create(
        &w,
        &seller,
        json!({"title": "brass kettle", "currency": "btc", "price": "0.01", "quantity": 5}),
    )["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let quantity = |w: &World| {
        let response = anonymous(w, &format!("{LISTINGS}?q=kettle"));
        assert_eq!(response.status, 200, "{}", response.body_text());
        response.json()["listings"][0]["quantity"].clone()
    };
    assert_eq!(cached_search(&w, &admin, "q=kettle"), vec![id.clone()]);
    let response = w.post(
        "/api/v1/orders",
        Some(&buyer.token),
        &json!({"listing": id, "quantity": 2}),
    );
    assert_eq!(response.status, 201, "{}", response.body_text());
    let before = hits(&search_cache(&w, &admin));
    assert_eq!(quantity(&w), 3, "the stock is current");
    assert_eq!(
        hits(&search_cache(&w, &admin)),
        before + 1,
        "an order does not drop cached pages"
    );
}

#[test]
fn a_new_listing_shows_in_a_cached_search_within_the_cache_lifetime() {
    let w = world();
    let seller = quick_user(&w.db, "seller", false);
    let admin = quick_user(&w.db, "admin", true);
    let first = item(&w, &seller, "quince jam", "1");
    assert_eq!(cached_search(&w, &admin, "q=quince"), vec![first.clone()]);
    let created = std::time::Instant::now();
    let second = item(&w, &seller, "quince jelly", "1");
    // docs/api.md: search results may lag new listings by up to 2 s.
    let lag = SEARCH_TTL;
    loop {
        let shown = search_ids(&w, "q=quince");
        if shown.contains(&second) {
            assert_eq!(shown, [second.clone(), first.clone()]);
            break;
        }
        assert!(
            created.elapsed() < lag + std::time::Duration::from_millis(500),
            "not shown {:?} after it was created",
            created.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let figures = search_cache(&w, &admin);
    for key in ["hits", "misses", "size", "capacity", "hit_rate_percent"] {
        assert!(figures.get(key).is_some(), "{key} in {figures}");
    }
}
