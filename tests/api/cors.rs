//! CORS for browser front ends (docs/http.md): only origins listed in
//! SOUK_CORS_ORIGINS get CORS headers, echoed exactly, never `*`.

use serde_json::json;

use crate::binary::{run, souk};
use crate::client::{HASHING_TIMEOUT, send_json, world_with};
use crate::helpers::{Client, HttpResponse, TempDir, TestApp, spawn_app_with};

const ALLOWED: &str = "https://app.example.com";
const REFUSED: &str = "https://evil.example.com";

fn cors_app() -> TestApp {
    spawn_app_with(|config| {
        config.cors_origins =
            souk::api::cors::CorsOrigins::parse(&format!("{ALLOWED}, http://localhost:3000"))
                .expect("an origin list");
    })
}

fn send(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut client = Client::connect(app.addr);
    send_json(&mut client, method, path, None, None, headers).expect("an answer")
}

fn preflight(app: &TestApp, origin: &str, method: &str) -> HttpResponse {
    send(
        app,
        "OPTIONS",
        "/api/v1/users/me",
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            (
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            ),
        ],
    )
}

fn cors_headers(response: &HttpResponse) -> Vec<&(String, String)> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("access-control-"))
        .collect()
}

fn assert_no_wildcard(response: &HttpResponse) {
    for (name, value) in cors_headers(response) {
        assert!(!value.contains('*'), "{name}: {value}");
    }
    assert!(
        response
            .header("access-control-allow-credentials")
            .is_none(),
        "{response:?}"
    );
}

#[test]
fn an_allowed_origin_gets_its_preflight_answered() {
    let app = cors_app();
    let response = preflight(&app, ALLOWED, "PATCH");
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or_default();
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{method} in {methods}");
    }
    let headers = response
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(headers.contains(header), "{header} in {headers}");
    }
    assert!(response.header("access-control-max-age").is_some());
    assert!(
        response
            .header("vary")
            .unwrap_or_default()
            .contains("Origin"),
        "{response:?}"
    );
    assert_no_wildcard(&response);
    // The second listed origin too.
    let other = preflight(&app, "http://localhost:3000", "GET");
    assert_eq!(
        other.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

#[test]
fn a_refused_origin_gets_no_cors_headers() {
    let app = cors_app();
    for origin in [REFUSED, "https://app.example.com.evil.example", "null", "*"] {
        let response = preflight(&app, origin, "PATCH");
        assert_ne!(response.status, 204, "{origin}: {response:?}");
        assert!(cors_headers(&response).is_empty(), "{origin}: {response:?}");
        let actual = send(&app, "GET", "/healthz", &[("origin", origin)]);
        assert_eq!(actual.status, 200);
        assert!(cors_headers(&actual).is_empty(), "{origin}: {actual:?}");
    }
}

#[test]
fn actual_requests_from_an_allowed_origin_carry_the_origin() {
    let app = cors_app();
    let response = send(&app, "GET", "/healthz", &[("origin", ALLOWED)]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
    assert!(
        response
            .header("vary")
            .unwrap_or_default()
            .contains("Origin"),
        "{response:?}"
    );
    assert_no_wildcard(&response);
    // Errors too: a front end must be able to read them.
    let unauthenticated = send(&app, "GET", "/api/v1/users/me", &[("origin", ALLOWED)]);
    unauthenticated.assert_error(401, "unauthenticated");
    assert_eq!(
        unauthenticated.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
    // An answer given after a commit (a deferred reply) as well.
    let mut client = Client::connect(app.addr);
    client
        .stream
        .set_read_timeout(Some(HASHING_TIMEOUT))
        .expect("setting a read timeout");
    let body = json!({"username": "browser_user", "password": "correct horse battery"});
    let created = send_json(
        &mut client,
        "POST",
        "/api/v1/users",
        None,
        Some(&body),
        &[("origin", ALLOWED)],
    )
    .expect("an answer");
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("access-control-allow-origin"), Some(ALLOWED));
}

#[test]
fn without_configured_origins_nobody_gets_cors_headers() {
    let world = world_with(|_| {});
    let app = &world.app;
    let response = preflight(app, ALLOWED, "GET");
    response.assert_error(405, "method_not_allowed");
    assert!(cors_headers(&response).is_empty(), "{response:?}");
    let actual = send(app, "GET", "/healthz", &[("origin", ALLOWED)]);
    assert!(cors_headers(&actual).is_empty(), "{actual:?}");
    assert!(actual.header("vary").is_none(), "{actual:?}");
}

#[test]
fn a_bad_origin_entry_stops_the_start_naming_the_variable() {
    let dir = TempDir::new();
    for bad in ["*", "app.example.com", "https://app.example.com/"] {
        let mut command = souk(&dir);
        command.env("SOUK_CORS_ORIGINS", bad);
        let (status, _, err) = run(command);
        assert!(!status.success(), "{bad} was accepted");
        assert!(err.contains("SOUK_CORS_ORIGINS"), "{bad}: {err}");
    }
}

#[test]
fn refusals_of_the_http_layer_and_panics_carry_cors_headers() {
    let app = spawn_app_with(|config| {
        config.cors_origins = souk::api::cors::CorsOrigins::parse(ALLOWED).expect("an origin");
        config.max_body_bytes = 1024;
    });
    let refusals: [(&str, u16, &str); 4] = [
        // A browser uploading more than SOUK_MAX_BODY.
        (
            "POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n",
            413,
            "payload_too_large",
        ),
        (
            "POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
            411,
            "length_required",
        ),
        (
            "POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n",
            400,
            "bad_request",
        ),
        ("GET /test/panic HTTP/1.1\r\nHost: x\r\n", 500, "internal"),
    ];
    for (head, status, code) in refusals {
        for (origin, allowed) in [(ALLOWED, true), (REFUSED, false)] {
            let mut client = Client::connect(app.addr);
            client.send(format!("{head}Origin: {origin}\r\n\r\n").as_bytes());
            let response = client.read_response();
            response.assert_error(status, code);
            let vary = response.header("vary").unwrap_or_default();
            assert!(vary.contains("Origin"), "{head}: {response:?}");
            if allowed {
                assert_eq!(
                    response.header("access-control-allow-origin"),
                    Some(ALLOWED),
                    "{head}: {response:?}"
                );
            } else {
                assert!(cors_headers(&response).is_empty(), "{head}: {response:?}");
            }
        }
    }
}

#[test]
fn the_503_of_the_body_budget_carries_cors_headers() {
    let app = spawn_app_with(|config| {
        config.cors_origins = souk::api::cors::CorsOrigins::parse(ALLOWED).expect("an origin");
        config.max_body_bytes = 64 * 1024;
        config.max_inflight_body_bytes = 80 * 1024;
    });
    let (body, sent) = (60 * 1024, 40 * 1024);
    let partial = |origin: &str| {
        let mut out = format!(
            "POST /test/echo HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\
             Content-Type: application/json\r\nContent-Length: {body}\r\n\r\n"
        )
        .into_bytes();
        out.extend(std::iter::repeat_n(b' ', sent));
        out
    };
    // The first stalled body holds about what it sent; the second one's
    // bytes do not fit what is left.
    let mut first = app.connect();
    first.send(&partial(ALLOWED));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut second = app.connect();
    second.send_lenient(&partial(ALLOWED));
    let refused = second.read_response();
    refused.assert_error(503, "unavailable");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some(ALLOWED),
        "{refused:?}"
    );
    drop(first);
}
