//! The admin console over HTTP: the `/admin` page and its assets (served
//! from the binary, strict policy), the old `/dashboard` redirect, the
//! admin routes the console needs (`/admin/users/{id}` and its entries,
//! orders and unlock; `/admin/escrows`), and the dashboard's figures over
//! the last interval. The page in a real browser is console_browser.rs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{
    Member, PASSWORD, World, hashing_request, quick_user, request, world, world_with,
};
use crate::helpers::HttpResponse;

const BTC: &str = "btc";

fn get(w: &World, path: &str, token: Option<&str>) -> HttpResponse {
    request(w.app.addr, "GET", path, token, None, &[])
}

fn post(w: &World, path: &str, token: Option<&str>) -> HttpResponse {
    request(w.app.addr, "POST", path, token, None, &[])
}

fn try_login(w: &World, username: &str, password: &str) -> HttpResponse {
    hashing_request(
        w.app.addr,
        "POST",
        "/api/v1/sessions",
        None,
        &json!({"username": username, "password": password}),
    )
}

/// The console's files must not load anything from elsewhere.
fn assert_self_contained(name: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    assert!(
        !lower.contains("http://") && !lower.contains("https://"),
        "{name} names an external URL"
    );
    for reference in ["src=\"//", "href=\"//", "url(//", "@import", "eval("] {
        assert!(!lower.contains(reference), "{name} contains {reference}");
    }
}

/// `GET path`: 200 with a content type that starts with `content_type`.
fn served(w: &World, path: &str, content_type: &str) -> HttpResponse {
    let response = w.app.get(path);
    assert_eq!(response.status, 200, "{path}: {}", response.summary());
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with(content_type),
        "{path}: {response:?}"
    );
    response
}

/// The console page's headers: no framing, no sniffing, and a policy that
/// allows only the binary's own scripts, styles and API.
fn assert_strict_policy(page: &HttpResponse) {
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "no `{directive}` in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
}

/// The page has no inline script or style: every script has a src, no
/// style attribute; it links the style sheet and loads nothing from elsewhere.
fn assert_no_inline_code(html: &str) {
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/admin/console.js\"").count(),
        "an inline script in the page"
    );
    assert!(
        !html.contains(" style=") && !html.contains("<style"),
        "inline style"
    );
    assert!(html.contains("href=\"/admin/console.css\""));
    assert_self_contained("the page", html);
}

/// The script calls the routes the console needs, and sets server text as
/// text only.
fn assert_console_script(js: &str) {
    assert_self_contained("the script", js);
    for call in [
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/admin/dashboard",
        "/api/v1/admin/users/",
        "/api/v1/admin/escrows?state=disputed",
        "/api/v1/admin/orders?state=disputed",
        "/api/v1/admin/fees",
        "/api/v1/admin/check",
        "sessionStorage",
        "Idempotency-Key",
    ] {
        assert!(js.contains(call), "the script never uses {call}");
    }
    assert!(!js.contains("innerHTML"), "server text is set as text only");
}

#[test]
fn the_console_page_and_its_assets_are_served_from_the_binary_under_a_strict_policy() {
    let w = world();
    let page = served(&w, "/admin", "text/html");
    assert_strict_policy(&page);
    let html = page.body_text();
    assert_no_inline_code(&html);

    let script = served(&w, "/admin/console.js", "text/javascript");
    assert_eq!(script.header("x-content-type-options"), Some("nosniff"));
    assert_console_script(&script.body_text());

    let css = served(&w, "/admin/console.css", "text/css").body_text();
    assert_self_contained("the style sheet", &css);
    assert!(
        css.contains("[hidden] { display: none !important; }"),
        "`hidden` must win over display rules"
    );

    // HEAD works, with the GET's length.
    let mut client = w.app.connect();
    client.send(crate::helpers::head("/admin").as_bytes());
    let head = client.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(html.len().to_string().as_str())
    );
}

/// Every JSON answer says `nosniff`: a success, an API refusal, and a
/// refusal of the HTTP layer itself.
#[test]
fn json_answers_tell_browsers_not_to_sniff() {
    let w = world();
    let admin = quick_user(&w.db, "root", true);
    for response in [
        w.get("/api/v1/users/me", &admin.token),
        get(&w, "/api/v1/users/me", None),
        get(&w, "/nowhere", None),
    ] {
        assert!(
            response
                .header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{}",
            response.summary()
        );
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{}",
            response.summary()
        );
    }
}

#[test]
fn the_old_dashboard_address_redirects_to_the_console() {
    let w = world();
    let response = w.app.get("/dashboard");
    assert_eq!(response.status, 308, "{}", response.summary());
    assert_eq!(response.header("location"), Some("/admin"));
}

/// Every new admin route: 401 without a token, 403 for a non-admin,
/// success for an admin, 404 for an unknown user, 400 for bad input.
#[test]
fn the_consoles_admin_routes_are_for_admins_only_and_check_their_input() {
    let w = world();
    let admin = quick_user(&w.db, "root", true);
    let plain = quick_user(&w.db, "plain", false);
    let id = &plain.id;
    let gets = [
        format!("/api/v1/admin/users/{id}"),
        format!("/api/v1/admin/users/{id}/entries"),
        format!("/api/v1/admin/users/{id}/orders"),
        "/api/v1/admin/escrows".to_owned(),
    ];
    let unlock = format!("/api/v1/admin/users/{id}/unlock");
    for path in &gets {
        get(&w, path, None).assert_error(401, "unauthenticated");
        get(&w, path, Some(&plain.token)).assert_error(403, "forbidden");
        assert_eq!(get(&w, path, Some(&admin.token)).status, 200, "{path}");
    }
    post(&w, &unlock, None).assert_error(401, "unauthenticated");
    post(&w, &unlock, Some(&plain.token)).assert_error(403, "forbidden");
    let unlocked = post(&w, &unlock, Some(&admin.token));
    assert_eq!(unlocked.status, 204, "{}", unlocked.summary());
    assert!(unlocked.body.is_empty());

    // Unknown users (and ids that are no ids) are 404.
    for missing in ["123456789", "not-an-id"] {
        for path in [
            format!("/api/v1/admin/users/{missing}"),
            format!("/api/v1/admin/users/{missing}/entries"),
            format!("/api/v1/admin/users/{missing}/orders"),
        ] {
            get(&w, &path, Some(&admin.token)).assert_error(404, "not_found");
        }
        post(
            &w,
            &format!("/api/v1/admin/users/{missing}/unlock"),
            Some(&admin.token),
        )
        .assert_error(404, "not_found");
    }

    // Bad query values are 400 naming the field.
    let user = format!("/api/v1/admin/users/{id}");
    #[rustfmt::skip]
    let bad_queries = [
        (format!("{user}/entries?limit=0"), "limit"),
        (format!("{user}/entries?currency=zzz"), "currency"),
        (format!("{user}/entries?after=x"), "after"),
        (format!("{user}/orders?state=lost"), "state"),
        (format!("{user}/orders?limit=101"), "limit"),
        ("/api/v1/admin/escrows?state=lost".to_owned(), "state"),
        ("/api/v1/admin/escrows?limit=abc".to_owned(), "limit"),
        ("/api/v1/admin/escrows?after=-1".to_owned(), "after"),
    ];
    for (path, field) in bad_queries {
        let error = get(&w, &path, Some(&admin.token)).assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{path}");
    }
    // A cursor that names nothing of the list is 404.
    get(
        &w,
        "/api/v1/admin/escrows?after=123456789",
        Some(&admin.token),
    )
    .assert_error(404, "not_found");
}

#[test]
fn an_admin_sees_a_users_private_fields_lockout_balances_entries_and_orders() {
    let w = world();
    let admin = quick_user(&w.db, "root", true);
    let alice = quick_user(&w.db, "alice", false);
    let bob = quick_user(&w.db, "bob", false);
    w.deposit(&admin, &alice, BTC, "1.5");
    w.deposit(&admin, &alice, BTC, "0.25");
    w.deposit(&admin, &bob, BTC, "1");
    let view = get(
        &w,
        &format!("/api/v1/admin/users/{}", alice.id),
        Some(&admin.token),
    )
    .json();
    let user = &view["user"];
    assert_eq!(user["id"], alice.id);
    assert_eq!(user["username"], "alice");
    assert_eq!(user["role"], "user");
    assert_eq!(user["status"], "active");
    assert!(user["locked_until"].is_null(), "{view}");
    assert!(
        user.get("last_login_at").is_some(),
        "private fields: {view}"
    );
    assert_eq!(view["balances"][BTC]["available"], "1.75000000");
    assert_eq!(view["balances"][BTC]["held"], "0.00000000");

    admin_sees_the_users_entries(&w, &admin, &alice, &bob);
    admin_sees_the_users_orders(&w, &admin, &alice, &bob);
}

/// Alice's entries (deposits of 1.5 then 0.25 btc) as the admin sees them:
/// her own, newest first, paged like /wallet/entries.
fn admin_sees_the_users_entries(w: &World, admin: &Member, alice: &Member, bob: &Member) {
    let path = format!("/api/v1/admin/users/{}/entries", alice.id);
    let first = get(w, &format!("{path}?limit=1"), Some(&admin.token)).json();
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["entries"][0]["amount"], "0.25000000");
    let next = first["next"].as_str().expect("a next page");
    let second = get(
        w,
        &format!("{path}?limit=1&after={next}"),
        Some(&admin.token),
    )
    .json();
    assert_eq!(second["entries"][0]["amount"], "1.50000000");
    assert!(second["next"].is_null(), "{second}");
    // The same pages as the user's own.
    let own = w.get("/api/v1/wallet/entries", &alice.token).json();
    let all = get(w, &path, Some(&admin.token)).json();
    assert_eq!(own, all);
    // Bob's entry is no cursor of Alice's list.
    let bobs = w.get("/api/v1/wallet/entries", &bob.token).json();
    let bobs_entry = bobs["entries"][0]["id"].as_str().expect("an entry id");
    get(w, &format!("{path}?after={bobs_entry}"), Some(&admin.token))
        .assert_error(404, "not_found");
}

/// An order of alice's from bob, in the lists of both (the orders a user
/// bought or sold) as the admin sees them.
fn admin_sees_the_users_orders(w: &World, admin: &Member, alice: &Member, bob: &Member) {
    let listing = w.post(
        "/api/v1/listings",
        Some(&bob.token),
        &json!({"title": "Tin cup", "currency": BTC, "price": "0.1", "quantity": 3}),
    );
    assert_eq!(listing.status, 201, "{}", listing.summary());
    let listing_id = listing.json()["listing"]["id"].clone();
    let order = w.post(
        "/api/v1/orders",
        Some(&alice.token),
        &json!({"listing": listing_id}),
    );
    assert_eq!(order.status, 201, "{}", order.summary());
    let order_id = order.json()["order"]["id"].clone();
    for who in [alice, bob] {
        let page = get(
            w,
            &format!("/api/v1/admin/users/{}/orders", who.id),
            Some(&admin.token),
        )
        .json();
        assert_eq!(page["orders"][0]["id"], order_id, "{page}");
        assert!(page["next"].is_null());
    }
    let paid = get(
        w,
        &format!("/api/v1/admin/users/{}/orders?state=shipped", alice.id),
        Some(&admin.token),
    )
    .json();
    assert_eq!(paid["orders"], json!([]));
    let nobody = quick_user(&w.db, "nobody", false);
    let none = get(
        w,
        &format!("/api/v1/admin/users/{}/orders", nobody.id),
        Some(&admin.token),
    )
    .json();
    assert_eq!(none, json!({"orders": [], "next": null}));
}

#[test]
fn unlock_lifts_a_login_lockout_at_once() {
    let w = world_with(|config| {
        config.max_login_attempts = 3;
        config.lockout_duration = Duration::from_secs(3600);
    });
    let admin = quick_user(&w.db, "root", true);
    let victim = w.member("victim");
    for i in 0..3 {
        try_login(&w, "victim", &format!("wrong password {i}"))
            .assert_error(401, "invalid_credentials");
    }
    try_login(&w, "victim", PASSWORD).assert_error(429, "locked_out");
    let path = format!("/api/v1/admin/users/{}", victim.id);
    let locked = get(&w, &path, Some(&admin.token)).json();
    let until = locked["user"]["locked_until"]
        .as_str()
        .unwrap_or_else(|| panic!("locked_until is set: {locked}"));
    assert!(until.ends_with('Z') && until.len() == 20, "{until}");

    let response = post(&w, &format!("{path}/unlock"), Some(&admin.token));
    assert_eq!(response.status, 204, "{}", response.summary());
    let unlocked = get(&w, &path, Some(&admin.token)).json();
    assert!(unlocked["user"]["locked_until"].is_null(), "{unlocked}");
    let login = try_login(&w, "victim", PASSWORD);
    assert_eq!(login.status, 201, "{}", login.summary());
    // Unlocking someone who is not locked out is a harmless 204.
    assert_eq!(
        post(&w, &format!("{path}/unlock"), Some(&admin.token)).status,
        204
    );
}

fn escrow(w: &World, buyer: &Member, seller: &Member, amount: &str) -> String {
    let response = w.post(
        "/api/v1/escrows",
        Some(&buyer.token),
        &json!({"seller": seller.id, "currency": BTC, "amount": amount}),
    );
    assert_eq!(response.status, 201, "{}", response.summary());
    response.json()["escrow"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

#[test]
fn the_admin_escrow_list_has_everyones_escrows_by_state_newest_first() {
    let w = world();
    let admin = quick_user(&w.db, "root", true);
    let (a, b, c) = (
        quick_user(&w.db, "ann", false),
        quick_user(&w.db, "ben", false),
        quick_user(&w.db, "cat", false),
    );
    w.deposit(&admin, &a, BTC, "1");
    w.deposit(&admin, &c, BTC, "1");
    let first = escrow(&w, &a, &b, "0.1");
    let second = escrow(&w, &c, &b, "0.2");
    let third = escrow(&w, &a, &c, "0.3");
    let disputed = w.post(
        &format!("/api/v1/escrows/{second}/dispute"),
        Some(&c.token),
        &json!({}),
    );
    assert_eq!(disputed.status, 200, "{}", disputed.summary());

    let all = get(&w, "/api/v1/admin/escrows", Some(&admin.token)).json();
    assert_eq!(
        escrow_ids(&all),
        [third.clone(), second.clone(), first.clone()]
    );
    let held = get(&w, "/api/v1/admin/escrows?state=held", Some(&admin.token)).json();
    assert_eq!(escrow_ids(&held), [third.clone(), first.clone()]);
    let open = get(
        &w,
        "/api/v1/admin/escrows?state=disputed",
        Some(&admin.token),
    )
    .json();
    assert_eq!(escrow_ids(&open), std::slice::from_ref(&second));
    assert_eq!(open["escrows"][0]["state"], "disputed");
    // Paged with the same cursors as everywhere.
    let page = get(&w, "/api/v1/admin/escrows?limit=2", Some(&admin.token)).json();
    assert_eq!(escrow_ids(&page), [third.clone(), second.clone()]);
    assert_eq!(page["next"], json!(second));
    let rest = get(
        &w,
        &format!("/api/v1/admin/escrows?limit=2&after={second}"),
        Some(&admin.token),
    )
    .json();
    assert_eq!(escrow_ids(&rest), std::slice::from_ref(&first));
    assert!(rest["next"].is_null());
    // A user's own list is unchanged: only theirs.
    let bens = w.get("/api/v1/escrows", &b.token).json();
    assert_eq!(bens["escrows"].as_array().map(Vec::len), Some(2));

    let order_id = a_disputed_order(&w, &a, &b);
    orders_escrows_are_listed_by_kind(&w, &admin, &order_id, [first, second, third]);
}

/// The ids of a page of escrows, in order.
fn escrow_ids(page: &Value) -> Vec<String> {
    page["escrows"]
        .as_array()
        .expect("escrows")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// A listing of `seller`'s ordered by `buyer`, who disputes the order; its id.
fn a_disputed_order(w: &World, buyer: &Member, seller: &Member) -> Value {
    let listing = w.post(
        "/api/v1/listings",
        Some(&seller.token),
        &json!({"title": "Tin cup", "currency": BTC, "price": "0.1", "quantity": 3}),
    );
    assert_eq!(listing.status, 201, "{}", listing.summary());
    let order = w.post(
        "/api/v1/orders",
        Some(&buyer.token),
        &json!({"listing": listing.json()["listing"]["id"]}),
    );
    assert_eq!(order.status, 201, "{}", order.summary());
    let order_id = order.json()["order"]["id"].clone();
    let disputed = w.post(
        &format!("/api/v1/orders/{}/dispute", order_id.as_str().unwrap_or("")),
        Some(&buyer.token),
        &json!({"reason": "never came"}),
    );
    assert_eq!(disputed.status, 200, "{}", disputed.summary());
    order_id
}

/// An order's escrow is left out with kind=plain, alone with kind=order; a
/// disputed order's escrow too, so plain disputes are never crowded out.
/// `first`, `second`, `third`: the plain escrows, oldest first (the second
/// disputed).
fn orders_escrows_are_listed_by_kind(
    w: &World,
    admin: &Member,
    order_id: &Value,
    [first, second, third]: [String; 3],
) {
    let list = |query: &str| {
        get(
            w,
            &format!("/api/v1/admin/escrows?{query}"),
            Some(&admin.token),
        )
        .json()
    };
    let orders = list("kind=order");
    assert_eq!(
        orders["escrows"].as_array().map(Vec::len),
        Some(1),
        "{orders}"
    );
    assert_eq!(orders["escrows"][0]["order"], *order_id);
    let order_escrow = orders["escrows"][0]["id"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        escrow_ids(&list("state=disputed")),
        [order_escrow.clone(), second.clone()]
    );
    assert_eq!(
        escrow_ids(&list("state=disputed&kind=order")),
        [order_escrow]
    );
    assert_eq!(
        escrow_ids(&list("state=disputed&kind=plain")),
        std::slice::from_ref(&second)
    );
    let plain = list("kind=plain&limit=1");
    assert_eq!(escrow_ids(&plain), std::slice::from_ref(&third));
    assert_eq!(
        escrow_ids(&list(&format!("kind=plain&after={third}"))),
        [second, first]
    );
    get(w, "/api/v1/admin/escrows?kind=both", Some(&admin.token))
        .assert_error(400, "invalid_field");
}

/// The dashboard's `traffic` figures, as `admin` sees them.
fn dashboard_traffic(w: &World, admin: &Member) -> Value {
    let response = w.get("/api/v1/admin/dashboard", &admin.token);
    assert_eq!(response.status, 200, "{}", response.summary());
    response.json()["traffic"].clone()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Right after a burst of 60 404s that took `burst`: since start counts it
/// all, however slow the machine; the last interval (at least 2 s) holds the
/// whole burst when it took under a second, on a busy machine at least its end.
fn assert_burst_counted(before: &Value, busy: &Value, burst: Duration) {
    let grew = |key: &str| {
        count(&busy["since_start"], key).saturating_sub(count(&before["since_start"], key))
    };
    assert!(grew("requests") >= 60, "{before} {busy}");
    assert!(grew("errors_4xx") >= 60, "{before} {busy}");
    let recent = &busy["last_interval"];
    let least = if burst < Duration::from_secs(1) {
        60
    } else {
        1
    };
    assert!(count(recent, "requests") >= least, "{burst:?} {busy}");
    assert!(count(recent, "errors_4xx") >= least, "{burst:?} {busy}");
    assert!(
        recent["errors_4xx_percent"].as_f64().unwrap_or(0.0) > 50.0,
        "{busy}"
    );
    assert!(
        recent["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{busy}"
    );
    for key in [
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "seconds",
    ] {
        assert!(recent[key].is_number(), "{key}: {busy}");
    }
    assert!(count(&busy["since_start"], "requests") >= 60, "{busy}");
}

/// The traffic once the burst has left the last interval (within 30 s).
fn traffic_after_the_burst(w: &World, admin: &Member) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = dashboard_traffic(w, admin);
        if now["last_interval"]["errors_4xx"] == 0 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the burst never left the window: {now}"
        );
    }
}

/// After the burst left the window: the last interval holds only the
/// dashboard's own calls, the totals (more than `since_start` requests
/// then) and the per-second series still have the burst.
fn assert_burst_forgotten(quiet: &Value, since_start: u64) {
    let recent = quiet["last_interval"]["requests"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        recent < 20,
        "only the dashboard's own calls are recent: {quiet}"
    );
    let seconds = quiet["last_interval"]["seconds"].as_f64().unwrap_or(0.0);
    assert!((2.0..=10.0).contains(&seconds), "{quiet}");
    assert!(quiet["since_start"]["requests"].as_u64().unwrap_or(0) > since_start);
    assert!(quiet["since_start"]["errors_4xx"].as_u64().unwrap_or(0) >= 60);
    // The per-second series has the burst in it, with times.
    let points = quiet["per_second"].as_array().expect("per_second");
    assert!(
        points
            .iter()
            .map(|p| p["errors_4xx"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= 60,
        "{quiet}"
    );
    assert!(
        points
            .windows(2)
            .all(|p| p[0]["at_ms"].as_u64() < p[1]["at_ms"].as_u64())
    );
}

/// The dashboard's `traffic.last_interval` counts the last interval only;
/// `since_start` keeps everything.
#[test]
fn the_dashboards_last_interval_figures_forget_old_load_and_since_start_keeps_it() {
    let w = world_with(|config| config.monitoring_interval = Duration::from_secs(2));
    let admin = quick_user(&w.db, "root", true);
    let before = dashboard_traffic(&w, &admin);
    assert_eq!(before["window_s"], 2);
    let burst_started = Instant::now();
    for _ in 0..60 {
        assert_eq!(get(&w, "/nowhere", None).status, 404);
    }
    let burst = burst_started.elapsed();
    let busy = dashboard_traffic(&w, &admin);
    assert_burst_counted(&before, &busy, burst);
    // A few seconds later the burst has left the window, not the totals.
    let quiet = traffic_after_the_burst(&w, &admin);
    assert_burst_forgotten(&quiet, count(&busy["since_start"], "requests"));
}
