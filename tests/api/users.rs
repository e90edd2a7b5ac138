//! Accounts and sessions (docs/api.md, "Accounts and sessions"): register,
//! login, logout, case-insensitive usernames, lockout and the per-address
//! login limit, answers that do not tell unknown users from wrong passwords,
//! no secret at rest, bulk reads, prefix search, admin changes that apply
//! fully or not at all, suspension, password changes, public profiles,
//! closed registration, statistics, and bad input that changes nothing.
//!
//! Users are made through the API (register, then log in); only admins are
//! promoted in the database (as `souk user create --admin` would) and only
//! users "created days ago" for the statistics are inserted there directly.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::{
    Member, PASSWORD, World, hashing_request, open_db, quick_user, request, request_raw_headers,
    world, world_with,
};
use crate::helpers::{Client, HttpResponse, TestApp, gate};
use crate::seeded::Rng;

// ---- local helpers ---------------------------------------------------------

/// An argon2id PHC string of `PASSWORD` at the lowest cost argon2 allows,
/// for users inserted straight into the database.
fn cheap_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        let params = argon2::Params::new(8, 1, 1, None).expect("argon2 parameters");
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_with_salt(PASSWORD.as_bytes(), b"souk-test-salt-16")
            .expect("hashing the test password")
            .to_string()
    })
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// Inserts a user with `PASSWORD` straight into the database, as `souk user
/// create` would, created `age_s` seconds ago (and, when that is in the past,
/// last logged in then): the API can make neither an admin when registration
/// is closed nor a user of last week. Returns the id.
fn insert_user(world: &World, username: &str, role: &str, age_s: i64) -> String {
    let id = souk::ids::random_id().expect("a random id");
    let at = now_s() - age_s;
    let last_login_at = (age_s > 0).then_some(at);
    open_db(&world.db)
        .execute(
            "INSERT INTO users (id, username, password_hash, role, status, created_at, last_login_at)
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6)",
            rusqlite::params![id, username, cheap_hash(), role, at, last_login_at],
        )
        .expect("inserting a user");
    id.to_string()
}

/// An inserted user, logged in through the API.
fn inserted_member(world: &World, username: &str, role: &str) -> Member {
    Member {
        id: insert_user(world, username, role, 0),
        token: world.login(username, PASSWORD),
        username: username.to_owned(),
    }
}

/// Registers `username` with `PASSWORD`; returns the id.
fn seed(world: &World, username: &str) -> String {
    let body = assert_status(
        &register(
            world,
            None,
            &json!({"username": username, "password": PASSWORD}),
        ),
        201,
    );
    body["user"]["id"].as_str().expect("an id").to_owned()
}

/// `POST /sessions`, whatever the answer.
fn try_login(world: &World, username: &str, password: &str) -> HttpResponse {
    hashing_request(
        world.app.addr,
        "POST",
        "/api/v1/sessions",
        None,
        &json!({"username": username, "password": password}),
    )
}

fn register(world: &World, token: Option<&str>, body: &Value) -> HttpResponse {
    hashing_request(world.app.addr, "POST", "/api/v1/users", token, body)
}

/// `PATCH /users/me`, which may hash.
fn patch_me(world: &World, token: &str, body: &Value) -> HttpResponse {
    hashing_request(
        world.app.addr,
        "PATCH",
        "/api/v1/users/me",
        Some(token),
        body,
    )
}

/// One request with exactly these headers and body bytes.
fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    let mut client = Client::connect(app.addr);
    client.send(&bytes);
    client.read_response()
}

/// `POST path` with a raw JSON body.
fn post_raw(world: &World, path: &str, token: Option<&str>, body: &[u8]) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    raw(&world.app, "POST", path, &headers, body)
}

fn assert_status(response: &HttpResponse, status: u16) -> Value {
    assert_eq!(response.status, status, "{}", response.body_text());
    if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    }
}

/// `Retry-After` as whole seconds.
fn retry_after(response: &HttpResponse) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {response:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {response:?}"))
}

fn me(world: &World, token: &str) -> HttpResponse {
    world.get("/api/v1/users/me", token)
}

fn stats(world: &World, admin: &Member) -> Value {
    assert_status(&world.get("/api/v1/admin/stats/users", &admin.token), 200)
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    list.sort();
    list
}

fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && text.ends_with('Z')
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// ---- register, login, logout -----------------------------------------------

/// The answer to carol's registration: her fields, a numeric id (which
/// it returns), the defaults, no login yet.
fn assert_new_carol(registered: &Value) -> &str {
    let user = &registered["user"];
    assert_eq!(
        keys(user),
        sorted(&[
            "id",
            "username",
            "display_name",
            "role",
            "status",
            "created_at",
            "last_login_at"
        ]),
        "{registered}"
    );
    let id = user["id"].as_str().expect("the id is a string");
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{registered}");
    assert_eq!(user["username"], "carol");
    assert_eq!(user["display_name"], "Carol C.");
    assert_eq!(user["role"], "user");
    assert_eq!(user["status"], "active");
    assert!(user["last_login_at"].is_null(), "{registered}");
    assert!(
        is_rfc3339_utc(user["created_at"].as_str().unwrap_or_default()),
        "{registered}"
    );
    id
}

#[test]
fn a_user_registers_logs_in_reads_themselves_and_a_logout_kills_only_that_token() {
    let world = world();
    let registered = assert_status(
        &register(
            &world,
            None,
            &json!({"username": "carol", "password": PASSWORD, "display_name": "Carol C."}),
        ),
        201,
    );
    let id = assert_new_carol(&registered);

    let session = assert_status(&try_login(&world, "carol", PASSWORD), 201);
    let token = session["token"].as_str().expect("a token").to_owned();
    assert_eq!(session["user"]["id"], id);
    assert!(
        is_rfc3339_utc(session["expires_at"].as_str().unwrap_or_default()),
        "{session}"
    );

    let me_body = assert_status(&me(&world, &token), 200);
    let user = &me_body["user"];
    assert_eq!(user["id"], id);
    assert_eq!(user["username"], "carol");
    assert_eq!(user["role"], "user");
    assert_eq!(user["status"], "active");
    assert!(
        is_rfc3339_utc(user["last_login_at"].as_str().unwrap_or_default()),
        "{me_body}"
    );

    // A second session of the same user outlives the logout of the first.
    let other = world.login("carol", PASSWORD);
    assert_ne!(other, token, "every login gets its own token");

    let logout = world.delete("/api/v1/sessions/current", &token);
    assert_eq!(logout.status, 204, "{}", logout.body_text());
    assert!(logout.body.is_empty());

    me(&world, &token).assert_error(401, "unauthenticated");
    world
        .delete("/api/v1/sessions/current", &token)
        .assert_error(401, "unauthenticated");
    assert_status(&me(&world, &other), 200);
    // No token at all.
    request(world.app.addr, "GET", "/api/v1/users/me", None, None, &[])
        .assert_error(401, "unauthenticated");
}

#[test]
fn usernames_are_case_insensitive_stored_lowercase_and_unique() {
    let world = world();
    let created = assert_status(
        &register(
            &world,
            None,
            &json!({"username": "Alice", "password": PASSWORD}),
        ),
        201,
    );
    assert_eq!(created["user"]["username"], "alice");
    for taken in ["ALICE", "alice", "aLiCe"] {
        register(
            &world,
            None,
            &json!({"username": taken, "password": PASSWORD}),
        )
        .assert_error(409, "username_taken");
    }
    let session = assert_status(&try_login(&world, "ALICE", PASSWORD), 201);
    assert_eq!(session["user"]["username"], "alice");
    assert_eq!(session["user"]["id"], created["user"]["id"]);
    let token = session["token"].as_str().expect("a token");
    let found = assert_status(&world.get("/api/v1/users?q=ALI", token), 200);
    let names: Vec<&str> = found["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["username"].as_str().expect("a username"))
        .collect();
    assert_eq!(names, ["alice"], "{found}");
}

// ---- the login guard -------------------------------------------------------

#[test]
fn failed_logins_lock_the_username_even_for_the_right_password_until_the_lockout_passes() {
    let world = world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = Duration::from_secs(2);
    });
    seed(&world, "mallory");
    seed(&world, "bystander");
    // Case does not matter to the count: usernames are case-insensitive.
    for (i, name) in ["mallory", "MALLORY", "Mallory", "mallory", "mAllory"]
        .into_iter()
        .enumerate()
    {
        try_login(&world, name, &format!("wrong password {i}"))
            .assert_error(401, "invalid_credentials");
    }
    let locked = try_login(&world, "mallory", PASSWORD);
    locked.assert_error(429, "locked_out");
    let wait = retry_after(&locked);
    assert!(
        (1..=2).contains(&wait),
        "Retry-After {wait} for a 2 s lockout"
    );
    try_login(&world, "MALLORY", "wrong password 6").assert_error(429, "locked_out");
    // The lock is per username: another user logs in meanwhile.
    assert_status(&try_login(&world, "bystander", PASSWORD), 201);

    std::thread::sleep(Duration::from_millis(2200));
    let session = assert_status(&try_login(&world, "mallory", PASSWORD), 201);
    assert_status(
        &me(&world, session["token"].as_str().expect("a token")),
        200,
    );
}

#[test]
fn a_successful_login_resets_the_failure_count() {
    let world = world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = Duration::from_secs(60);
    });
    seed(&world, "forgetful");
    for _ in 0..4 {
        try_login(&world, "forgetful", "not the password").assert_error(401, "invalid_credentials");
    }
    assert_status(&try_login(&world, "forgetful", PASSWORD), 201);
    // Without the reset the first of these would be the fifth failure in a
    // row and lock the name; every one must still be a plain 401.
    for _ in 0..4 {
        try_login(&world, "forgetful", "not the password").assert_error(401, "invalid_credentials");
    }
    assert_status(&try_login(&world, "forgetful", PASSWORD), 201);
    // And the guard does lock at the limit, so the above was no accident.
    for _ in 0..5 {
        try_login(&world, "forgetful", "not the password").assert_error(401, "invalid_credentials");
    }
    try_login(&world, "forgetful", PASSWORD).assert_error(429, "locked_out");
}

#[test]
fn logins_from_one_address_are_rate_limited_per_minute() {
    // `world_with` sets a generous limit first; this tweak runs after it.
    let world = world_with(|config| config.login_rate_limit_per_minute = 3);
    seed(&world, "busy");
    seed(&world, "other");
    try_login(&world, "busy", "wrong password").assert_error(401, "invalid_credentials");
    assert_status(&try_login(&world, "busy", PASSWORD), 201);
    assert_status(&try_login(&world, "other", PASSWORD), 201);
    for (name, password) in [
        ("busy", PASSWORD),
        ("other", PASSWORD),
        ("nobody", "whatever1"),
    ] {
        let limited = try_login(&world, name, password);
        limited.assert_error(429, "rate_limited");
        let wait = retry_after(&limited);
        assert!(
            (1..=60).contains(&wait),
            "Retry-After {wait} for a one-minute window"
        );
    }
    // Only logins are limited.
    request(world.app.addr, "GET", "/api/v1/users/me", None, None, &[])
        .assert_error(401, "unauthenticated");
}

/// `PATCH /users/me` changing the password to a new one, given `current`.
fn change_password(world: &World, token: &str, current: &str) -> HttpResponse {
    patch_me(
        world,
        token,
        &json!({"password": "a brand new passphrase", "current_password": current}),
    )
}

fn assert_wrong_current_password(response: &HttpResponse) {
    let error = response.assert_error(403, "forbidden");
    assert_eq!(error["field"], "current_password", "{error}");
}

#[test]
fn wrong_current_passwords_lock_the_username_like_failed_logins() {
    // Issue 12: a stolen session could guess the password through
    // PATCH /users/me without limit; every guess got 400.
    let world = world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = Duration::from_secs(60);
    });
    let victim = inserted_member(&world, "victim", "user");
    let bystander = inserted_member(&world, "bystander", "user");
    for i in 0..5 {
        assert_wrong_current_password(&change_password(
            &world,
            &victim.token,
            &format!("guess number {i}"),
        ));
    }
    // Locked: the right current password gets 429 too, and so does a login.
    let locked = change_password(&world, &victim.token, PASSWORD);
    locked.assert_error(429, "locked_out");
    let wait = retry_after(&locked);
    assert!(
        (1..=60).contains(&wait),
        "Retry-After {wait} for a 60 s lockout"
    );
    let locked = try_login(&world, "victim", PASSWORD);
    locked.assert_error(429, "locked_out");
    assert!((1..=60).contains(&retry_after(&locked)));

    // The password did not change, the session lives on, and only password
    // checks are refused: a display name still changes.
    assert_status(&me(&world, &victim.token), 200);
    let renamed = assert_status(
        &patch_me(&world, &victim.token, &json!({"display_name": "Still Me"})),
        200,
    );
    assert_eq!(renamed["user"]["display_name"], "Still Me");
    let stored: String = open_db(&world.db)
        .query_row(
            "SELECT password_hash FROM users WHERE username = 'victim'",
            [],
            |row| row.get(0),
        )
        .expect("the victim's hash");
    assert_eq!(stored, cheap_hash(), "a locked-out change changed nothing");
    // The lock is the victim's alone.
    assert_wrong_current_password(&change_password(&world, &bystander.token, "nope nope"));
    assert_status(&try_login(&world, "bystander", PASSWORD), 201);
}

#[test]
fn failed_logins_and_wrong_current_passwords_share_one_count() {
    let world = world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = Duration::from_secs(60);
    });
    let user = inserted_member(&world, "shared", "user");
    for _ in 0..3 {
        try_login(&world, "shared", "not the password").assert_error(401, "invalid_credentials");
    }
    for _ in 0..2 {
        assert_wrong_current_password(&change_password(&world, &user.token, "nor this one"));
    }
    try_login(&world, "shared", PASSWORD).assert_error(429, "locked_out");
    change_password(&world, &user.token, PASSWORD).assert_error(429, "locked_out");
}

#[test]
fn a_right_current_password_resets_the_failure_count() {
    let world = world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = Duration::from_secs(60);
    });
    let user = inserted_member(&world, "resetter", "user");
    for _ in 0..4 {
        assert_wrong_current_password(&change_password(&world, &user.token, "wrong guess"));
    }
    assert_status(&change_password(&world, &user.token, PASSWORD), 200);
    // Without the reset the first of these would be the fifth failure in a
    // row and lock the name; each must still be a plain 400 / 401.
    for _ in 0..2 {
        assert_wrong_current_password(&change_password(&world, &user.token, "wrong guess"));
    }
    for _ in 0..2 {
        try_login(&world, "resetter", PASSWORD).assert_error(401, "invalid_credentials");
    }
    assert_status(
        &try_login(&world, "resetter", "a brand new passphrase"),
        201,
    );
    // And the count does lock at the limit, so the above was no accident.
    for _ in 0..5 {
        assert_wrong_current_password(&change_password(&world, &user.token, "wrong guess"));
    }
    patch_me(
        &world,
        &user.token,
        &json!({"password": "yet another passphrase", "current_password": "a brand new passphrase"}),
    )
    .assert_error(429, "locked_out");
}

#[test]
fn password_checks_on_patch_me_count_toward_the_per_address_login_limit() {
    // `world_with` sets a generous limit first; this tweak runs after it.
    let world = world_with(|config| config.login_rate_limit_per_minute = 3);
    let user = inserted_member(&world, "limited", "user"); // one login: 1 of 3
    assert_wrong_current_password(&change_password(&world, &user.token, "wrong guess"));
    assert_wrong_current_password(&change_password(&world, &user.token, "wrong guess"));
    for limited in [
        change_password(&world, &user.token, PASSWORD),
        try_login(&world, "limited", PASSWORD),
    ] {
        limited.assert_error(429, "rate_limited");
        let wait = retry_after(&limited);
        assert!(
            (1..=60).contains(&wait),
            "Retry-After {wait} for a one-minute window"
        );
    }
    // Changes without a password check are not limited.
    assert_status(
        &patch_me(&world, &user.token, &json!({"display_name": "Limited"})),
        200,
    );
}

#[test]
fn registrations_from_one_address_are_rate_limited_per_minute() {
    // Issue 12: one address could register about 45 users a second, each a
    // full argon2 hash. The default applies here (no `world_with` override).
    let app = crate::helpers::spawn_app();
    let addr = app.addr;
    let default_limit = souk::config::Config::for_path("unused.db", addr)
        .expect("the default configuration")
        .registration_rate_limit_per_minute;
    assert!(
        (10..=100).contains(&default_limit),
        "a default that people never hit and a flood always does: {default_limit}"
    );
    // Every attempt counts, a refused one too: it is cheap for us, but the
    // window is what keeps a script from reaching the hasher.
    for i in 0..default_limit {
        let body = json!({"username": format!("flood_{i}"), "password": "short"});
        let error = hashing_request(addr, "POST", "/api/v1/users", None, &body)
            .assert_error(400, "invalid_field");
        assert_eq!(error["field"], "password");
    }
    let body = json!({"username": "flood_last", "password": PASSWORD});
    let limited = hashing_request(addr, "POST", "/api/v1/users", None, &body);
    limited.assert_error(429, "rate_limited");
    let wait = retry_after(&limited);
    assert!(
        (1..=60).contains(&wait),
        "Retry-After {wait} for a one-minute window"
    );
    // Nothing was created: a login finds no such user.
    let login = hashing_request(addr, "POST", "/api/v1/sessions", None, &body);
    login.assert_error(401, "invalid_credentials");
}

#[test]
fn the_registration_limit_lets_the_first_sign_ups_through() {
    // `world_with` sets a generous limit first; this tweak runs after it.
    let world = world_with(|config| config.registration_rate_limit_per_minute = 2);
    seed(&world, "first_one");
    seed(&world, "second_one");
    let limited = register(
        &world,
        None,
        &json!({"username": "third_one", "password": PASSWORD}),
    );
    limited.assert_error(429, "rate_limited");
    assert!(limited.header("retry-after").is_some(), "{limited:?}");
    // Logins are limited apart from registrations.
    assert_status(&try_login(&world, "first_one", PASSWORD), 201);
    try_login(&world, "third_one", PASSWORD).assert_error(401, "invalid_credentials");
}

#[test]
fn an_unknown_user_and_a_wrong_password_get_byte_identical_answers() {
    let world = world();
    seed(&world, "known");
    let wrong = try_login(&world, "known", "not the password");
    let unknown = try_login(&world, "unknown", "not the password");
    wrong.assert_error(401, "invalid_credentials");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(
        wrong.body,
        unknown.body,
        "{} vs {}",
        wrong.body_text(),
        unknown.body_text()
    );
    assert_eq!(wrong.header("content-type"), unknown.header("content-type"));
    // A name that could never exist answers the same too.
    let impossible = try_login(&world, "no such user!", "not the password");
    assert_eq!(impossible.status, wrong.status);
    assert_eq!(impossible.body, wrong.body, "{}", impossible.body_text());
}

// ---- secrets at rest -------------------------------------------------------

#[test]
fn the_database_holds_neither_plaintext_passwords_nor_raw_tokens() {
    use base64::Engine as _;

    let world = world();
    let password = "Plaintext-Secret-4711";
    for name in ["dora", "dave"] {
        assert_status(
            &register(
                &world,
                None,
                &json!({"username": name, "password": password}),
            ),
            201,
        );
    }
    let token = world.login("dora", password);
    let raw_token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .expect("the token is base64url");
    assert_eq!(raw_token.len(), 32);

    let mut bytes = std::fs::read(&world.db).expect("reading the database file");
    let mut wal = world.db.clone().into_os_string();
    wal.push("-wal");
    if let Ok(wal) = std::fs::read(&wal) {
        bytes.extend_from_slice(&wal);
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"dora"), "the scan reads the data at all");
    assert!(
        !contains(password.as_bytes()),
        "the password is stored in plain text"
    );
    assert!(!contains(token.as_bytes()), "the token is stored as sent");
    assert!(!contains(&raw_token), "the token's raw bytes are stored");

    let conn = open_db(&world.db);
    let mut stmt = conn
        .prepare("SELECT password_hash FROM users WHERE id != 0")
        .expect("a query");
    let hashes: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .expect("querying")
        .collect::<rusqlite::Result<_>>()
        .expect("reading hashes");
    assert_eq!(hashes.len(), 2);
    for hash in &hashes {
        assert!(hash.starts_with("$argon2id$"), "not argon2id: {hash}");
    }
    assert_ne!(
        hashes[0], hashes[1],
        "the same password hashes differently (salted)"
    );
}

// ---- bulk read and search --------------------------------------------------

#[test]
fn a_bulk_read_returns_users_in_the_order_asked_and_leaves_unknown_ids_out() {
    let world = world();
    let viewer = world.member("viewer");
    let ids: Vec<String> = (0..8).map(|i| seed(&world, &format!("bulk_{i}"))).collect();
    let unknown = loop {
        let id = souk::ids::random_id().expect("a random id").to_string();
        if !ids.contains(&id) && id != viewer.id {
            break id;
        }
    };
    let asked = [
        &ids[5], &ids[0], &unknown, &ids[7], &ids[2], &viewer.id, &ids[3],
    ];
    let list = asked
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let body = assert_status(
        &world.get(&format!("/api/v1/users?ids={list}"), &viewer.token),
        200,
    );
    let users = body["users"].as_array().expect("users");
    let got: Vec<&str> = users
        .iter()
        .map(|u| u["id"].as_str().expect("an id"))
        .collect();
    let want: Vec<&str> = asked
        .iter()
        .filter(|id| ***id != unknown)
        .map(|s| s.as_str())
        .collect();
    assert_eq!(got, want, "{body}");
    assert_eq!(users[0]["username"], "bulk_5");
    for user in users {
        assert_eq!(
            keys(user),
            sorted(&["id", "username", "display_name", "created_at", "rating"]),
            "{user}"
        );
    }

    bulk_reads_check_their_query(&world, &viewer, &ids);
}

/// Exactly 100 ids are allowed, 101 are not; a bad id or paging value is 400
/// naming it, a good paging value changes nothing; no token is 401.
fn bulk_reads_check_their_query(world: &World, viewer: &Member, ids: &[String]) {
    let path = |query: &str| format!("/api/v1/users?ids={query}");
    let repeated =
        |n: usize| -> Vec<String> { (0..n).map(|i| ids[i % ids.len()].clone()).collect() };
    let response = world.get(&path(&repeated(100).join(",")), &viewer.token);
    assert_status(&response, 200);
    // Paging is the search's, but a bad value is refused here too (it was
    // ignored).
    let one = &ids[0];
    for (query, field) in [
        (repeated(101).join(","), "ids"),
        (format!("{one},abc"), "ids"),
        (format!("{one}&limit=-1.5"), "limit"),
        (format!("{one}&limit=+5"), "limit"),
        (format!("{one}&after=%C2%BD"), "after"),
    ] {
        let error = world
            .get(&path(&query), &viewer.token)
            .assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{query}");
    }
    let body = assert_status(
        &world.get(&path(&format!("{one}&limit=1&after=a")), &viewer.token),
        200,
    );
    assert_eq!(body["users"].as_array().map(Vec::len), Some(1), "{body}");
    request(world.app.addr, "GET", &path(one), None, None, &[])
        .assert_error(401, "unauthenticated");
}

#[test]
fn prefix_search_pages_through_every_match_once_in_username_order() {
    let world = world();
    let viewer = world.member("viewer");
    // Seeded out of order, with near misses around the prefix.
    let matching = [
        "shop_g", "shop_a", "shop_d", "shop_b", "shop_f", "shop_c", "shop_e",
    ];
    for name in matching {
        seed(&world, name);
    }
    for name in ["shopa", "sho", "shoq_a", "shop", "zshop_a"] {
        seed(&world, name);
    }
    let mut want: Vec<&str> = matching.to_vec();
    want.sort();

    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        assert!(page < 10, "paging does not end: {seen:?}");
        let path = match &after {
            None => "/api/v1/users?q=Shop_&limit=2".to_owned(),
            Some(cursor) => format!("/api/v1/users?q=Shop_&limit=2&after={cursor}"),
        };
        let body = assert_status(&world.get(&path, &viewer.token), 200);
        let users = body["users"].as_array().expect("users");
        assert!(users.len() <= 2, "a page holds at most `limit`: {body}");
        for user in users {
            assert_eq!(
                keys(user),
                sorted(&["id", "username", "display_name", "created_at", "rating"]),
                "{user}"
            );
            seen.push(user["username"].as_str().expect("a username").to_owned());
        }
        match &body["next"] {
            Value::Null => break,
            Value::String(next) => after = Some(next.clone()),
            other => panic!("next is {other}"),
        }
    }
    assert_eq!(seen, want);

    // A page of exactly all matches has no next page.
    let body = assert_status(
        &world.get("/api/v1/users?q=shop_&limit=7", &viewer.token),
        200,
    );
    assert_eq!(body["users"].as_array().map(Vec::len), Some(7), "{body}");
    assert!(body["next"].is_null(), "{body}");
    // A prefix nothing matches.
    let body = assert_status(&world.get("/api/v1/users?q=nomatch", &viewer.token), 200);
    assert_eq!(body["users"], json!([]));
    assert!(body["next"].is_null(), "{body}");
    // Bad limits and prefixes are refused.
    for (path, field) in [
        ("/api/v1/users?q=shop_&limit=0", "limit"),
        ("/api/v1/users?q=shop_&limit=101", "limit"),
        ("/api/v1/users?q=shop%25", "q"),
    ] {
        let error = world
            .get(path, &viewer.token)
            .assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{path}");
    }
}

// ---- admin changes ---------------------------------------------------------

#[test]
fn an_admin_changes_role_status_and_display_name_and_no_one_else_may() {
    let world = world();
    let admin = world.admin("root");
    let user = world.member("erin");
    let bystander = world.member("frank");
    let path = format!("/api/v1/admin/users/{}", user.id);
    let user = role_name_and_status_changes_apply_at_once(&world, &admin, &user, &path);
    others_may_not_change_anyone(&world, &bystander, &path);
    unknown_users_and_values_are_refused(&world, &admin, &path);
    let seen = assert_status(&me(&world, &user.token), 200);
    assert_eq!(seen["user"]["role"], "user");
    assert_eq!(seen["user"]["status"], "active");
    assert_eq!(seen["user"]["display_name"], "Erin E.");
}

/// The admin makes erin an admin with a display name, a user again,
/// suspended and active again: each seen at once. Erin, signed in again.
fn role_name_and_status_changes_apply_at_once(
    world: &World,
    admin: &Member,
    user: &Member,
    path: &str,
) -> Member {
    let changed = assert_status(
        &world.patch(
            path,
            &admin.token,
            &json!({"role": "admin", "display_name": "Erin E."}),
        ),
        200,
    );
    assert_eq!(changed["user"]["id"], user.id);
    assert_eq!(changed["user"]["role"], "admin");
    assert_eq!(changed["user"]["display_name"], "Erin E.");
    assert_eq!(changed["user"]["status"], "active");
    // The change is seen at once by the user themselves.
    let seen = assert_status(&me(world, &user.token), 200);
    assert_eq!(seen["user"]["role"], "admin");
    assert_eq!(seen["user"]["display_name"], "Erin E.");
    // Now an admin, erin may read the statistics.
    assert_status(&world.get("/api/v1/admin/stats/users", &user.token), 200);

    let changed = assert_status(
        &world.patch(path, &admin.token, &json!({"role": "user"})),
        200,
    );
    assert_eq!(changed["user"]["role"], "user");
    assert_eq!(
        changed["user"]["display_name"], "Erin E.",
        "untouched fields stay"
    );
    world
        .get("/api/v1/admin/stats/users", &user.token)
        .assert_error(403, "forbidden");

    let changed = assert_status(
        &world.patch(path, &admin.token, &json!({"status": "suspended"})),
        200,
    );
    assert_eq!(changed["user"]["status"], "suspended");
    me(world, &user.token).assert_error(401, "unauthenticated");
    let changed = assert_status(
        &world.patch(path, &admin.token, &json!({"status": "active"})),
        200,
    );
    assert_eq!(changed["user"]["status"], "active");
    Member {
        token: world.login("erin", PASSWORD),
        ..user.clone()
    }
}

/// A non-admin gets 403 and changes nothing; no token gets 401.
fn others_may_not_change_anyone(world: &World, bystander: &Member, path: &str) {
    world
        .patch(path, &bystander.token, &json!({"role": "admin"}))
        .assert_error(403, "forbidden");
    world
        .patch(
            &format!("/api/v1/admin/users/{}", bystander.id),
            &bystander.token,
            &json!({"role": "admin"}),
        )
        .assert_error(403, "forbidden");
    request(
        world.app.addr,
        "PATCH",
        path,
        None,
        Some(&json!({"role": "admin"})),
        &[],
    )
    .assert_error(401, "unauthenticated");
    let seen = assert_status(&me(world, &bystander.token), 200);
    assert_eq!(seen["user"]["role"], "user");
}

/// Unknown users and values.
fn unknown_users_and_values_are_refused(world: &World, admin: &Member, path: &str) {
    world
        .patch(
            "/api/v1/admin/users/12345",
            &admin.token,
            &json!({"role": "admin"}),
        )
        .assert_error(404, "not_found");
    for body in [json!({"role": "root"}), json!({"status": "banned"})] {
        let response = world.patch(path, &admin.token, &body);
        assert_eq!(response.status, 400, "{body}: {}", response.body_text());
    }
    let error = world
        .patch(path, &admin.token, &json!({"display_name": "x".repeat(65)}))
        .assert_error(400, "invalid_field");
    assert_eq!(error["field"], "display_name");
}

#[test]
fn suspending_a_user_kills_their_sessions_at_once_and_blocks_their_login() {
    let world = world();
    let admin = world.admin("root");
    let user = world.member("grace");
    let second = world.login(&user.username, PASSWORD);
    let path = format!("/api/v1/admin/users/{}", user.id);
    // Warm every cache the token goes through.
    assert_status(&me(&world, &user.token), 200);
    assert_status(&me(&world, &second), 200);

    assert_status(
        &world.patch(&path, &admin.token, &json!({"status": "suspended"})),
        200,
    );
    me(&world, &user.token).assert_error(401, "unauthenticated");
    me(&world, &second).assert_error(401, "unauthenticated");
    // The right password no longer opens a session, and the answer is the
    // one a wrong password gets, byte for byte: it never tells whether the
    // password was right.
    let right = try_login(&world, &user.username, PASSWORD);
    let wrong = try_login(&world, &user.username, "not the password");
    right.assert_error(401, "invalid_credentials");
    assert_eq!(right.body, wrong.body);

    // Reactivated: the old sessions stay dead, a new login works.
    assert_status(
        &world.patch(&path, &admin.token, &json!({"status": "active"})),
        200,
    );
    me(&world, &user.token).assert_error(401, "unauthenticated");
    let token = world.login(&user.username, PASSWORD);
    assert_status(&me(&world, &token), 200);
}

#[test]
fn a_bulk_update_with_an_unknown_id_applies_nothing_and_names_the_index() {
    let world = world();
    let admin = world.admin("root");
    let a = world.member("hank");
    let b = world.member("ivy");
    let c = world.member("jack");
    let path = "/api/v1/admin/users/bulk-update";

    let failing = json!({"updates": [
        {"id": a.id, "display_name": "Hank H."},
        {"id": b.id, "role": "admin"},
        {"id": "4242424242", "display_name": "Nobody"},
        {"id": c.id, "status": "suspended"},
    ]});
    let error = world
        .post(path, Some(&admin.token), &failing)
        .assert_error(404, "not_found");
    assert_eq!(error["index"], 2, "{error}");

    let check_unchanged = || {
        let a_seen = assert_status(&me(&world, &a.token), 200);
        assert!(a_seen["user"]["display_name"].is_null(), "{a_seen}");
        let b_seen = assert_status(&me(&world, &b.token), 200);
        assert_eq!(b_seen["user"]["role"], "user", "{b_seen}");
        // Not suspended: jack's token still works.
        let c_seen = assert_status(&me(&world, &c.token), 200);
        assert_eq!(c_seen["user"]["status"], "active", "{c_seen}");
    };
    check_unchanged();

    // A malformed id and a bad value are refused before anything runs.
    let bad_id = json!({"updates": [{"id": a.id, "display_name": "Hank H."}, {"id": "abc"}]});
    let error = world
        .post(path, Some(&admin.token), &bad_id)
        .assert_error(400, "invalid_field");
    assert_eq!(error["index"], 1, "{error}");
    let bad_name = json!({"updates": [{"id": a.id, "display_name": ""}]});
    let error = world
        .post(path, Some(&admin.token), &bad_name)
        .assert_error(400, "invalid_field");
    assert_eq!(error["index"], 0, "{error}");
    assert_eq!(error["field"], "display_name", "{error}");
    world
        .post(path, Some(&admin.token), &json!({"updates": []}))
        .assert_error(400, "invalid_field");
    world
        .post(
            path,
            Some(&a.token),
            &json!({"updates": [{"id": a.id, "role": "admin"}]}),
        )
        .assert_error(403, "forbidden");
    check_unchanged();

    // The same updates without the unknown id all apply.
    let good = json!({"updates": [
        {"id": a.id, "display_name": "Hank H."},
        {"id": b.id, "role": "admin"},
        {"id": c.id, "status": "suspended"},
    ]});
    let body = assert_status(&world.post(path, Some(&admin.token), &good), 200);
    assert_eq!(body, json!({"updated": 3}));
    let a_seen = assert_status(&me(&world, &a.token), 200);
    assert_eq!(a_seen["user"]["display_name"], "Hank H.");
    let b_seen = assert_status(&me(&world, &b.token), 200);
    assert_eq!(b_seen["user"]["role"], "admin");
    me(&world, &c.token).assert_error(401, "unauthenticated");
}

/// Bad items for a bulk update of user `id`, each refused with 400:
/// (what, item, code, field), where "" and `None` leave the code and the
/// field unchecked: serde_json reads a number or a bool where an enum goes as
/// a syntax error ("expected value"), 400 either way; the index is the point.
#[rustfmt::skip]
fn bad_update_items(id: &str) -> Vec<(&'static str, Value, &'static str, Option<&'static str>)> {
    let with = |key: &str, value: Value| {
        let mut item = json!({ "id": id });
        item[key] = value;
        item
    };
    let invalid = "invalid_field";
    vec![
        ("a number for the role", with("role", json!(5)), "", None),
        ("an unknown role", with("role", json!("superuser")), invalid, Some("role")),
        ("a bool for the status", with("status", json!(true)), "", None),
        ("a number for the name", with("display_name", json!(5)), invalid, Some("display_name")),
        ("a number for the id", json!({"id": 42, "role": "admin"}), invalid, Some("id")),
        ("null, not an item", json!(null), "", None),
        ("the fields as an array", json!([id, "admin"]), "", None),
        ("an unknown field", with("password", json!("x")), "", None),
    ]
}

#[test]
fn every_error_caused_by_one_bulk_update_item_names_its_index() {
    let world = world();
    let admin = quick_user(&world.db, "root", true);
    let a = quick_user(&world.db, "kim", false);
    let path = "/api/v1/admin/users/bulk-update";
    let good = json!({"id": a.id, "display_name": "Kim K."});
    for (what, item, code, field) in bad_update_items(&a.id) {
        let body = json!({"updates": [good, item]});
        let response = world.post(path, Some(&admin.token), &body);
        assert_eq!(response.status, 400, "{what}: {}", response.body_text());
        let error = response.error();
        if !code.is_empty() {
            assert_eq!(error["code"], code, "{what}: {error}");
        }
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{what}: {error}");
        }
        assert_eq!(error["index"], 1, "{what}: {error}");
    }
    // A bulk update of one item is still a bulk update.
    for (item, status, code) in [
        (
            json!({"id": "4242424242", "role": "admin"}),
            404,
            "not_found",
        ),
        (json!({"id": a.id, "display_name": 5}), 400, "invalid_field"),
    ] {
        let body = json!({ "updates": [item] });
        let response = world.post(path, Some(&admin.token), &body);
        let error = response.assert_error(status, code);
        assert_eq!(error["index"], 0, "{body}: {error}");
    }
    // Nothing was applied.
    let seen = assert_status(&me(&world, &a.token), 200);
    assert!(seen["user"]["display_name"].is_null(), "{seen}");
    assert_eq!(seen["user"]["role"], "user", "{seen}");
}

// ---- the user's own account ------------------------------------------------

#[test]
fn a_password_change_ends_the_other_sessions_and_needs_the_current_password() {
    let world = world();
    let user = world.member("kate");
    let other = world.login(&user.username, PASSWORD);
    let new_password = "a brand new passphrase";

    // A wrong current password: 403 naming it (the session is fine); a
    // missing one: 400 on current_password. Nothing ends.
    let error = patch_me(
        &world,
        &user.token,
        &json!({"password": new_password, "current_password": "not the password"}),
    )
    .assert_error(403, "forbidden");
    assert_eq!(error["field"], "current_password");
    let error = patch_me(&world, &user.token, &json!({"password": new_password}))
        .assert_error(400, "invalid_field");
    assert_eq!(error["field"], "current_password");
    let error = patch_me(
        &world,
        &user.token,
        &json!({"password": "short", "current_password": PASSWORD}),
    )
    .assert_error(400, "invalid_field");
    assert_eq!(error["field"], "password");
    assert_status(&me(&world, &other), 200);

    let changed = assert_status(
        &patch_me(
            &world,
            &user.token,
            &json!({"password": new_password, "current_password": PASSWORD, "display_name": "Kate K."}),
        ),
        200,
    );
    assert_eq!(changed["user"]["id"], user.id);
    assert_eq!(changed["user"]["display_name"], "Kate K.");
    assert!(changed["user"].get("password").is_none(), "{changed}");

    me(&world, &other).assert_error(401, "unauthenticated");
    assert_status(&me(&world, &user.token), 200);
    try_login(&world, &user.username, PASSWORD).assert_error(401, "invalid_credentials");
    let fresh = world.login(&user.username, new_password);
    assert_status(&me(&world, &fresh), 200);
    assert_status(&me(&world, &user.token), 200);
}

#[test]
fn another_users_profile_shows_only_public_fields() {
    let world = world();
    let viewer = world.member("lena");
    let target = world.member("mike");
    assert_status(
        &world.patch(
            "/api/v1/users/me",
            &target.token,
            &json!({"display_name": "Mike M."}),
        ),
        200,
    );
    let body = assert_status(
        &world.get(&format!("/api/v1/users/{}", target.id), &viewer.token),
        200,
    );
    assert_eq!(keys(&body), ["user"]);
    let user = &body["user"];
    assert_eq!(
        keys(user),
        sorted(&["id", "username", "display_name", "created_at", "rating"]),
        "{body}"
    );
    assert_eq!(user["id"], target.id);
    assert_eq!(user["username"], "mike");
    assert_eq!(user["display_name"], "Mike M.");

    world
        .get("/api/v1/users/4242424242", &viewer.token)
        .assert_error(404, "not_found");
    world
        .get("/api/v1/users/not-an-id", &viewer.token)
        .assert_error(404, "not_found");
    request(
        world.app.addr,
        "GET",
        &format!("/api/v1/users/{}", target.id),
        None,
        None,
        &[],
    )
    .assert_error(401, "unauthenticated");
}

// ---- closed registration and statistics ------------------------------------

#[test]
fn with_registration_closed_only_an_admin_creates_users() {
    let world = world_with(|config| config.open_registration = false);
    let admin = inserted_member(&world, "root", "admin");
    let member = inserted_member(&world, "nina", "user");
    let body = json!({"username": "oscar", "password": PASSWORD});

    register(&world, None, &body).assert_error(401, "unauthenticated");
    register(&world, Some(&member.token), &body).assert_error(403, "forbidden");
    let created = assert_status(&register(&world, Some(&admin.token), &body), 201);
    assert_eq!(created["user"]["username"], "oscar");
    assert_eq!(created["user"]["role"], "user");
    let token = world.login("oscar", PASSWORD);
    assert_status(&me(&world, &token), 200);
    assert_eq!(stats(&world, &admin)["total"], 3);
}

#[test]
fn user_statistics_count_what_happened() {
    let world = world();
    let admin = world.admin("root");
    let fresh = world.member("pat");
    seed(&world, "quinn");
    // Created three days ago and logged in then.
    insert_user(&world, "rita", "user", 3 * 86_400);
    // Created ten days ago: in neither window.
    insert_user(&world, "sam", "user", 10 * 86_400);

    let before = stats(&world, &admin);
    assert_eq!(
        keys(&before),
        sorted(&[
            "total",
            "active_24h",
            "active_7d",
            "new_24h",
            "new_7d",
            "suspended",
            "admins",
            "as_of"
        ]),
        "{before}"
    );
    let expect = |s: &Value, field: &str, n: i64| assert_eq!(s[field], n, "{field} in {s}");
    expect(&before, "total", 5);
    expect(&before, "admins", 1);
    expect(&before, "suspended", 0);
    expect(&before, "new_24h", 3);
    expect(&before, "new_7d", 4);
    // root and pat logged in just now, rita three days ago.
    expect(&before, "active_24h", 2);
    expect(&before, "active_7d", 3);
    let as_of = before["as_of"].as_str().expect("as_of is a string");
    assert!(is_rfc3339_utc(as_of), "{before}");

    assert_status(
        &world.patch(
            &format!("/api/v1/admin/users/{}", fresh.id),
            &admin.token,
            &json!({"status": "suspended"}),
        ),
        200,
    );
    seed(&world, "tina");
    let after = stats(&world, &admin);
    expect(&after, "total", 6);
    expect(&after, "suspended", 1);
    expect(&after, "new_24h", 4);
    expect(&after, "admins", 1);

    world
        .get("/api/v1/admin/stats/users", &world.member("uma").token)
        .assert_error(403, "forbidden");
    request(
        world.app.addr,
        "GET",
        "/api/v1/admin/stats/users",
        None,
        None,
        &[],
    )
    .assert_error(401, "unauthenticated");
}

// ---- bad input -------------------------------------------------------------

#[test]
fn bad_registrations_get_a_4xx_and_create_no_user() {
    let world = world();
    let admin = world.admin("root");
    let before = stats(&world, &admin)["total"].clone();
    bad_fields_are_named(&world);
    malformed_bodies_are_refused(&world);
    two_megabytes_are_refused_with_413(&world);
    let member = world.member("wendy");
    bad_changes_to_ones_own_account_change_nothing(&world, &member);
    for prefix in ["victor", "walter"] {
        let found = assert_status(
            &world.get(&format!("/api/v1/users?q={prefix}"), &member.token),
            200,
        );
        assert_eq!(found["users"], json!([]), "{prefix}");
    }
    // root and wendy only.
    let after = stats(&world, &admin)["total"].clone();
    assert_eq!(before, 1);
    assert_eq!(after, 2);
}

/// Bad usernames, passwords and display names: 400 naming the field.
fn bad_fields_are_named(world: &World) {
    let refused = |body: Value, field: &str| {
        let error = register(world, None, &body).assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{body}");
    };
    for name in [
        "ab",
        &"a".repeat(33),
        "al ice",
        "ümlaut",
        "al-ice",
        "",
        "ab\u{0}c",
    ] {
        refused(json!({"username": name, "password": PASSWORD}), "username");
    }
    // Lengths count characters: seven two-byte characters are too short.
    for password in ["1234567", "ééééééé", &"p".repeat(257), &"p".repeat(300)] {
        refused(
            json!({"username": "victor", "password": password}),
            "password",
        );
    }
    refused(json!({"username": 12345, "password": PASSWORD}), "username");
    refused(
        json!({"username": "victor", "password": 12345678}),
        "password",
    );
    refused(
        json!({"username": "victor", "password": PASSWORD, "display_name": "x".repeat(65)}),
        "display_name",
    );
    refused(
        json!({"username": "victor", "password": PASSWORD, "display_name": "  "}),
        "display_name",
    );
}

/// Unknown or missing fields, duplicate keys, malformed JSON, trailing bytes
/// and a body that is not JSON.
fn malformed_bodies_are_refused(world: &World) {
    // Unknown fields (including a try at choosing one's role), missing fields.
    for body in [
        json!({"username": "victor", "password": PASSWORD, "role": "admin"}),
        json!({"username": "victor", "password": PASSWORD, "extra": 1}),
        json!({"username": "victor"}),
        json!(null),
    ] {
        let response = register(world, None, &body);
        assert_eq!(response.status, 400, "{body}: {}", response.body_text());
        let code = response.error()["code"].clone();
        assert!(
            code == "invalid_json" || code == "invalid_field",
            "{body}: {code}"
        );
    }
    // Duplicate keys, malformed JSON, trailing bytes.
    for body in [
        format!(r#"{{"username":"victor","username":"walter","password":"{PASSWORD}"}}"#),
        format!(r#"{{"username":"victor","password":"{PASSWORD}","password":"other password"}}"#),
        r#"{"username":"victor","password":"#.to_owned(),
        format!(r#"{{"username":"victor","password":"{PASSWORD}"}} {{}}"#),
        "\u{feff}{}".to_owned(),
    ] {
        let response = post_raw(world, "/api/v1/users", None, body.as_bytes());
        assert_eq!(response.status, 400, "{body}: {}", response.body_text());
        response.error();
    }
    // Not JSON at all.
    let body = json!({"username": "victor", "password": PASSWORD}).to_string();
    let response = raw(
        &world.app,
        "POST",
        "/api/v1/users",
        &[("content-type", "text/plain")],
        body.as_bytes(),
    );
    response.assert_error(415, "unsupported_media_type");
}

/// Two megabytes: refused with 413, however the body is sent.
fn two_megabytes_are_refused_with_413(world: &World) {
    let mut client = Client::connect(world.app.addr);
    let size = 2 * 1024 * 1024;
    let mut big = format!(
        "POST /api/v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {size}\r\n\r\n"
    )
    .into_bytes();
    let mut body =
        format!(r#"{{"username":"victor","password":"{PASSWORD}","display_name":""#).into_bytes();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    big.extend_from_slice(&body);
    let mut writer = client.stream.try_clone().expect("cloning the stream");
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(&big);
    });
    client
        .read_response()
        .assert_error(413, "payload_too_large");
    sender.join().expect("the sender thread");
}

/// Bad changes to one's own account change nothing either.
fn bad_changes_to_ones_own_account_change_nothing(world: &World, member: &Member) {
    for body in [
        json!({"display_name": 5}),
        json!({"display_name": "x".repeat(65)}),
        json!({"role": "admin"}),
        json!({"current_password": PASSWORD}),
    ] {
        let response = world.patch("/api/v1/users/me", &member.token, &body);
        assert_eq!(response.status, 400, "{body}: {}", response.body_text());
        response.error();
    }
    let seen = assert_status(&me(world, &member.token), 200);
    assert_eq!(seen["user"]["role"], "user");
    assert!(seen["user"]["display_name"].is_null(), "{seen}");
}

/// A token of `username`'s, logged in but never used, then expired in the
/// database.
fn expired_token(world: &World, username: &str) -> String {
    let expired = world.login(username, PASSWORD);
    let raw_expired = {
        use base64::Engine as _;
        use sha2::Digest as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&expired)
            .expect("base64url");
        sha2::Sha256::digest(&bytes).to_vec()
    };
    let changed = open_db(&world.db)
        .execute(
            "UPDATE sessions SET expires_at = ?1 WHERE token_hash = ?2",
            rusqlite::params![now_s() - 1, raw_expired],
        )
        .expect("expiring a session");
    assert_eq!(
        changed, 1,
        "the session is stored as the SHA-256 of the token"
    );
    expired
}

/// Authorization values that must all get 401: wrong schemes, random,
/// flipped, doubled, expired (`expired`) and huge tokens; the first six
/// also on a write route.
fn bad_authorizations(token: &str, expired: &str) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let printable: Vec<u8> = (0x21..0x7f).collect();
    let mut flipped = token.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ASCII");
    vec![
        "Bearer".into(),
        "Bearer ".into(),
        "Basic x".into(),
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("Bearer {}", rng.text(BASE64URL, 43)),
        format!("Bearer {}", rng.text(BASE64URL, 44)),
        format!("Bearer {}", rng.text(BASE64URL, 42)),
        format!("Bearer {}", rng.text(b"!@#$%^&*()+=", 43)),
        format!("Bearer {}", "=".repeat(43)),
        format!("Bearer {token}x"),
        format!("Bearer {flipped}"),
        format!("Bearer {token} {token}"),
        format!("Bearer {expired}"),
        rng.text(BASE64URL, 43),
        rng.text(&printable, 10 * 1024),
        format!("Bearer {}", rng.text(&printable, 10 * 1024)),
    ]
}

#[test]
fn malformed_expired_or_garbage_authorization_gets_401_never_5xx() {
    let world = world();
    let member = world.member("xena");
    let expired = expired_token(&world, "xena");
    let values = bad_authorizations(&member.token, &expired);
    for value in &values {
        let response = raw(
            &world.app,
            "GET",
            "/api/v1/users/me",
            &[("authorization", value)],
            b"",
        );
        assert!(response.status < 500, "{value:?}: {response:?}");
        response.assert_error(401, "unauthenticated");
    }
    // The same through a write route.
    for value in &values[..6] {
        let response = raw(
            &world.app,
            "DELETE",
            "/api/v1/sessions/current",
            &[("authorization", value)],
            b"",
        );
        response.assert_error(401, "unauthenticated");
    }
    // The real token still works, the scheme in any case.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {}", member.token);
        let response = raw(
            &world.app,
            "GET",
            "/api/v1/users/me",
            &[("authorization", &value)],
            b"",
        );
        assert_status(&response, 200);
    }
}

#[test]
fn an_authorization_header_that_is_not_text_or_is_repeated_gets_401_never_anonymous() {
    let world = world_with(|config| {
        config.open_registration = false;
        config.metrics_token = Some("metrics-secret".into());
    });
    let member = quick_user(&world.db, "yolanda", false);
    let admin = quick_user(&world.db, "root", true);
    let good = format!("Bearer {}", member.token).into_bytes();
    let admin_good = format!("Bearer {}", admin.token).into_bytes();
    let mut token_then_ff = good.clone();
    token_then_ff.push(0xff);
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"Bearer \xff\xfe"],
        vec![b"Bearer caf\xe9"],
        vec![&token_then_ff],
        vec![b"\xffBearer x"],
        // Two, even both right: which one counts would be a guess.
        vec![&good, &good],
        vec![&good, b"Bearer other"],
        vec![&admin_good, &good],
    ];
    let send = |method: &str, path: &str, body: Option<&Value>, lines: &[&[u8]]| {
        let headers: Vec<(&str, &[u8])> = lines.iter().map(|v| ("Authorization", *v)).collect();
        request_raw_headers(world.app.addr, method, path, None, body, &headers)
    };
    let newcomer = json!({"username": "zed", "password": PASSWORD});
    for lines in &cases {
        send("GET", "/api/v1/users/me", None, lines).assert_error(401, "unauthenticated");
        send("DELETE", "/api/v1/sessions/current", None, lines)
            .assert_error(401, "unauthenticated");
        // With registration closed, only an admin registers: an unreadable
        // header is not "no header", and neither is ever an admin.
        send("POST", "/api/v1/users", Some(&newcomer), lines).assert_error(401, "unauthenticated");
        send("GET", "/metrics", None, lines).assert_error(401, "unauthenticated");
    }
    // Nothing was registered, and the sessions still work one at a time.
    assert_status(&me(&world, &member.token), 200);
    let found = assert_status(&world.get("/api/v1/users?q=zed", &admin.token), 200);
    assert_eq!(found["users"], json!([]), "{found}");
    let metrics = send("GET", "/metrics", None, &[b"Bearer metrics-secret"]);
    assert_eq!(metrics.status, 200, "{}", metrics.body_text());
}

#[test]
fn parallel_wrong_guesses_cannot_pass_the_lockout() {
    let world = crate::client::world_with(|config| {
        config.max_login_attempts = 5;
        config.lockout_duration = std::time::Duration::from_secs(60);
    });
    let user = world.member("parallel_target");
    let addr = world.app.addr;
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let app = &world.app;
                scope.spawn(move || {
                    let _ = addr;
                    let body =
                        json!({"username": "parallel_target", "password": "wrong password!"});
                    crate::client::request(
                        app.addr,
                        "POST",
                        "/api/v1/sessions",
                        None,
                        Some(&body),
                        &[],
                    )
                    .status
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a guess"))
            .collect()
    });
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        wrong <= 5,
        "at most MAX_LOGIN_ATTEMPTS guesses were checked, got {wrong}: {statuses:?}"
    );
    assert_eq!(
        wrong + locked,
        20,
        "every other guess was refused as locked: {statuses:?}"
    );
    let after = json!({"username": user.username, "password": crate::client::PASSWORD});
    let status = world.post("/api/v1/sessions", None, &after).status;
    assert_eq!(status, 429, "the right password is locked out too");
}

#[test]
fn a_json_array_is_not_accepted_as_a_body() {
    let world = crate::client::world();
    let response = world.post(
        "/api/v1/users",
        None,
        &json!(["zed_array", "correct horse battery", null]),
    );
    response.assert_error(400, "invalid_json");
}

// ---- a login racing a password change --------------------------------------

/// `souk_write_queue_depth` from `/metrics`: jobs waiting for the writer.
fn write_queue_depth(world: &World) -> u64 {
    let response = world.app.get("/metrics");
    assert_eq!(response.status, 200, "{}", response.summary());
    response
        .body_text()
        .lines()
        .find_map(|l| l.strip_prefix("souk_write_queue_depth "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("souk_write_queue_depth in /metrics") as u64
}

/// Holds the server's writer inside a write job at gate `key` (every later
/// write job queues behind it); returns the held request, answering its
/// status once the gate opens and its job committed.
fn hold_writer(world: &World, key: &str) -> std::thread::JoinHandle<u16> {
    let (addr, path) = (world.app.addr, format!("/test/hold-writer/{key}"));
    let held = std::thread::spawn(move || request(addr, "GET", &path, None, None, &[]).status);
    crate::helpers::gate::wait_entered(key);
    assert_eq!(write_queue_depth(world), 0, "nothing else is queued");
    held
}

/// Waits until more than `than` jobs wait for the writer.
fn wait_for_queue_above(world: &World, than: u64, what: &str) -> u64 {
    crate::helpers::eventually(what, || {
        let depth = write_queue_depth(world);
        (depth > than).then_some(depth)
    })
}

fn sessions_of(world: &World, user_id: &str) -> i64 {
    open_db(&world.db)
        .query_row(
            "SELECT count(*) FROM sessions WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .expect("counting sessions")
}

fn login_in_background(world: &World, username: &str) -> std::thread::JoinHandle<HttpResponse> {
    let (addr, body) = (
        world.app.addr,
        json!({"username": username, "password": PASSWORD}),
    );
    std::thread::spawn(move || hashing_request(addr, "POST", "/api/v1/sessions", None, &body))
}

#[test]
fn a_login_checked_against_a_password_changed_before_its_session_commits_gets_401() {
    let world = world();
    let alice = world.member("alice");
    let key = format!("passwd-race-{}", alice.id);
    let held = hold_writer(&world, &key);
    // The login reads the old hash, verifies the old password and queues
    // its session behind the held job.
    let login = login_in_background(&world, "alice");
    wait_for_queue_above(&world, 0, "the login's session job");
    // Then a change like `souk user passwd` commits first: a new hash and
    // every session ended.
    gate::open_then(
        &key,
        &format!(
            "UPDATE users SET password_hash = 'changed by an operator' WHERE id = {id};
             DELETE FROM sessions WHERE user_id = {id};",
            id = alice.id
        ),
    );
    assert_eq!(held.join().expect("the held job"), 200);
    login
        .join()
        .expect("the login thread")
        .assert_error(401, "invalid_credentials");
    assert_eq!(sessions_of(&world, &alice.id), 0, "no session survived");
}

#[test]
fn a_login_with_the_old_password_loses_to_a_password_change_committed_first() {
    let world = world();
    let alice = world.member("alice");
    let key = format!("patch-race-{}", alice.id);
    let held = hold_writer(&world, &key);
    // Alice changes her password (ending her other sessions); an attacker
    // with the old one logs in meanwhile. Both pass their password checks
    // and queue, the change first.
    let change = {
        let (addr, token) = (world.app.addr, alice.token.clone());
        std::thread::spawn(move || {
            let body = json!({"password": "a brand new password", "current_password": PASSWORD});
            hashing_request(addr, "PATCH", "/api/v1/users/me", Some(&token), &body)
        })
    };
    wait_for_queue_above(&world, 0, "the password change's job");
    let login = login_in_background(&world, "alice");
    wait_for_queue_above(&world, 1, "the login's session job");
    gate::open(&key);
    assert_eq!(held.join().expect("the held job"), 200);
    let changed = change.join().expect("the change thread");
    assert_eq!(changed.status, 200, "{}", changed.summary());
    login
        .join()
        .expect("the login thread")
        .assert_error(401, "invalid_credentials");
    assert_eq!(sessions_of(&world, &alice.id), 1, "only the changer's own");
    assert_eq!(world.get("/api/v1/users/me", &alice.token).status, 200);
}
