//! Logs (README: Logs): SOUK_LOG_FORMAT=json lines, the access log and its
//! fields, X-Request-Id on every answer, client addresses on failed logins
//! and lockouts, and no secret in the log of a run that uses them all.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::binary::{PROCESS_TIMEOUT, Served, souk};
use crate::client::{
    HASHING_TIMEOUT, Member, PASSWORD, log_in_at, quick_user, register_at, request, send_json,
    world,
};
use crate::helpers::{Client, HttpResponse, TempDir};

/// A request on a connection of its own that may wait for argon2.
fn hashing(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut client = Client::connect(addr);
    client
        .stream
        .set_read_timeout(Some(HASHING_TIMEOUT))
        .expect("setting a read timeout");
    send_json(&mut client, method, path, token, Some(body), headers)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Stops `served` and returns every log line it wrote.
fn stop_and_read(served: Served) -> Vec<String> {
    let (mut seen, found) = served.read_log_until(Duration::from_millis(300), |_| false);
    assert!(!found);
    served.signal("-TERM");
    let (rest, _) = served.read_log_until(PROCESS_TIMEOUT, |line| line.contains("stopped"));
    seen.extend(rest);
    seen
}

/// The access log line (JSON) whose request id is `request_id`.
fn access_line(lines: &[String], request_id: &str) -> Value {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["target"] == "souk::access" && line["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no access line with request id {request_id}: {lines:#?}"))
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn json_log_lines_are_objects_with_ts_level_target_and_msg() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command.env("SOUK_LOG_FORMAT", "json");
    let served = Served::start_with(command);
    let answer = request(served.addr, "GET", "/healthz", None, None, &[]);
    assert_eq!(answer.status, 200, "{}", answer.summary());
    let lines = stop_and_read(served);
    assert!(lines.len() >= 3, "{lines:#?}");
    for line in &lines {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["ts", "level", "target", "msg"] {
            assert!(object[key].is_string(), "no string {key}: {line}");
        }
        let ts = object["ts"].as_str().unwrap_or_default();
        assert!(
            ts.ends_with('Z') && ts.contains('T'),
            "ts not RFC 3339: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"target\":\"souk::access\"")),
        "{lines:#?}"
    );
}

#[test]
fn the_access_log_line_has_every_field_and_the_route_template() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command.env("SOUK_LOG_FORMAT", "json");
    let served = Served::start_with(command);
    let member = quick_user(&dir.path.join("souk.db"), "alice", false);
    let path = format!("/api/v1/users/{}", member.id);
    let read = request(
        served.addr,
        "GET",
        &path,
        Some(&member.token),
        None,
        &[("x-request-id", "trace-42")],
    );
    assert_eq!(read.status, 200, "{}", read.summary());
    let missing = request(
        served.addr,
        "GET",
        "/api/v1/users/123",
        None,
        None,
        &[("x-request-id", "trace-43")],
    );
    assert_eq!(missing.status, 401, "{}", missing.summary());
    let lines = stop_and_read(served);

    let line = access_line(&lines, "trace-42");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/api/v1/users/{id}", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes"], json!(read.body.len()), "{line}");
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    assert_eq!(line["user_id"], json!(member.id), "{line}");
    let duration = line["duration_ms"].as_f64().expect("duration_ms a number");
    assert!((0.0..60_000.0).contains(&duration), "{line}");

    let line = access_line(&lines, "trace-43");
    assert_eq!(line["route"], "/api/v1/users/{id}", "{line}");
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["user_id"], Value::Null, "{line}");
    assert!(
        !lines.iter().any(|l| l.contains("/api/v1/users/123")),
        "a raw path with its id was logged: {lines:#?}"
    );
}

#[test]
fn x_request_id_is_echoed_when_sent_and_generated_when_not() {
    let w = world();
    let addr = w.app.addr;
    let echoed = request(
        addr,
        "GET",
        "/healthz",
        None,
        None,
        &[("x-request-id", "abc-123")],
    );
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.header("x-request-id"), Some("abc-123"));

    let generated = request(addr, "GET", "/healthz", None, None, &[]);
    let id = generated.header("x-request-id").expect("an id").to_owned();
    assert!(is_generated_id(&id), "{id}");
    let again = request(addr, "GET", "/healthz", None, None, &[]);
    assert_ne!(again.header("x-request-id"), Some(id.as_str()));

    // Replaced when too long, when it has a space, when repeated.
    let long = "x".repeat(65);
    let longest = "y".repeat(64);
    for headers in [
        vec![("x-request-id", long.as_str())],
        vec![("x-request-id", "two words")],
        vec![("x-request-id", "a"), ("x-request-id", "b")],
    ] {
        let answer = request(addr, "GET", "/healthz", None, None, &headers);
        let id = answer.header("x-request-id").expect("an id");
        assert!(is_generated_id(id), "{headers:?} gave {id}");
    }
    let answer = request(
        addr,
        "GET",
        "/healthz",
        None,
        None,
        &[("x-request-id", &longest)],
    );
    assert_eq!(answer.header("x-request-id"), Some(longest.as_str()));

    // A 4xx of a handler, and one of the HTTP layer.
    let not_found = request(
        addr,
        "GET",
        "/nowhere",
        None,
        None,
        &[("x-request-id", "r-404")],
    );
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.header("x-request-id"), Some("r-404"));
    let mut client = Client::connect(addr);
    client.send(
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nX-Request-Id: r-413\r\n\
          Content-Length: 999999999999\r\n\r\n",
    );
    let refused = client.read_response();
    assert_eq!(refused.status, 413, "{}", refused.summary());
    assert_eq!(refused.header("x-request-id"), Some("r-413"));
    let mut client = Client::connect(addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
    let refused = client.read_response();
    assert_eq!(refused.status, 400, "{}", refused.summary());
    assert!(is_generated_id(
        refused.header("x-request-id").expect("an id")
    ));
}

#[test]
fn access_log_off_writes_no_access_lines() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command.env("SOUK_ACCESS_LOG", "false");
    let served = Served::start_with(command);
    for _ in 0..3 {
        let answer = request(served.addr, "GET", "/healthz", None, None, &[]);
        assert_eq!(answer.status, 200);
    }
    // A line that comes after those requests' would-be access lines.
    let body = json!({"username": "nobody", "password": "not the password"});
    let answer = hashing(served.addr, "POST", "/api/v1/sessions", None, &body, &[]);
    assert_eq!(answer.status, 401, "{}", answer.summary());
    let (seen, found) =
        served.read_log_until(PROCESS_TIMEOUT, |line| line.contains("failed login"));
    assert!(found, "{seen:#?}");
    assert!(
        !seen.iter().any(|line| line.contains("souk::access")),
        "{seen:#?}"
    );
    served.stop();
}

#[test]
fn failed_logins_and_lockouts_name_the_client_and_no_secret_reaches_the_log() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command
        .env("RUST_LOG", "debug")
        .env("SOUK_TRUSTED_PROXIES", "127.0.0.1")
        .env("MAX_LOGIN_ATTEMPTS", "2");
    let served = Served::start_with(command);
    let addr = served.addr;
    let (first, second) = change_password_then_sign_in(addr);
    lock_out_from_a_forwarded_client(addr);
    let out = request(
        addr,
        "DELETE",
        "/api/v1/sessions/current",
        Some(&second.token),
        None,
        &[],
    );
    assert_eq!(out.status, 204, "{}", out.summary());
    let lines = stop_and_read(served);
    assert_the_lockout_names_the_client(&lines);
    assert_no_secret_in(&lines, [first.token.as_str(), second.token.as_str()]);
}

/// The password that carol changes, and the wrong one guessed.
const NEW_PASSWORD: &str = "a brand new secret phrase";
const WRONG_PASSWORD: &str = "a guess that is wrong";

/// Carol registers, signs in, changes her password and signs in with the
/// new one; both sessions work. Returns them.
fn change_password_then_sign_in(addr: SocketAddr) -> (Member, Member) {
    register_at(addr, "carol", PASSWORD);
    let first = log_in_at(addr, "carol", PASSWORD);
    let change = json!({"current_password": PASSWORD, "password": NEW_PASSWORD});
    let changed = hashing(
        addr,
        "PATCH",
        "/api/v1/users/me",
        Some(&first.token),
        &change,
        &[],
    );
    assert_eq!(changed.status, 200, "{}", changed.summary());
    let second = log_in_at(addr, "carol", NEW_PASSWORD);
    // The new session works, and so does the one that changed the password.
    for session in [&second, &first] {
        let me = request(
            addr,
            "GET",
            "/api/v1/users/me",
            Some(&session.token),
            None,
            &[],
        );
        assert_eq!(me.status, 200, "{}", me.summary());
    }
    (first, second)
}

/// Two wrong passwords from a forwarded client lock carol out.
fn lock_out_from_a_forwarded_client(addr: SocketAddr) {
    let forwarded = [("x-forwarded-for", "203.0.113.9")];
    let guess = json!({"username": "carol", "password": WRONG_PASSWORD});
    for expected in [401, 401, 429] {
        let answer = hashing(addr, "POST", "/api/v1/sessions", None, &guess, &forwarded);
        assert_eq!(answer.status, expected, "{}", answer.summary());
    }
}

/// The failed logins, the lockout and the refusal name the forwarded client.
fn assert_the_lockout_names_the_client(lines: &[String]) {
    let failed = lines
        .iter()
        .filter(|l| l.contains("failed login for `carol`"))
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 2, "{lines:#?}");
    assert!(
        failed.iter().all(|l| l.contains("203.0.113.9")),
        "{failed:#?}"
    );
    let locked = lines.iter().find(|l| l.contains("locked out for"));
    assert!(
        locked.is_some_and(|l| l.contains("203.0.113.9")),
        "{lines:#?}"
    );
    let refused = lines.iter().find(|l| l.contains("refused: locked out"));
    assert!(
        refused.is_some_and(|l| l.contains("203.0.113.9")),
        "{lines:#?}"
    );
}

/// No password, token, part of a token or `Bearer` reaches the log.
fn assert_no_secret_in(lines: &[String], tokens: [&str; 2]) {
    let log = lines.join("\n");
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        WRONG_PASSWORD,
        tokens[0],
        tokens[1],
        "Bearer",
        "bearer",
    ] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
    // Parts of a token count too: any 12 characters of one.
    for token in tokens {
        for start in (0..token.len().saturating_sub(12)).step_by(6) {
            let part = &token[start..start + 12];
            assert!(!log.contains(part), "part of a token is in the log:\n{log}");
        }
    }
}
