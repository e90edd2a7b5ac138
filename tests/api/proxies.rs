//! Behind a reverse proxy (docs/http.md): `X-Forwarded-For` is believed only
//! from peers in SOUK_TRUSTED_PROXIES, and then its rightmost entry that is
//! not itself trusted is the client address every per-address limit counts.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::binary::{PROCESS_TIMEOUT, Process, run, souk};
use crate::client::{HASHING_TIMEOUT, World, send_json, world_with};
use crate::helpers::{Client, HttpResponse, TempDir};

/// `POST /sessions` with a wrong password, sent with these extra headers.
fn login_with(world: &World, headers: &[(&str, &str)]) -> HttpResponse {
    let mut client = Client::connect(world.app.addr);
    client
        .stream
        .set_read_timeout(Some(HASHING_TIMEOUT))
        .expect("setting a read timeout");
    let body = json!({"username": "nobody_here", "password": "wrong password"});
    send_json(
        &mut client,
        "POST",
        "/api/v1/sessions",
        None,
        Some(&body),
        headers,
    )
    .expect("an answer")
}

fn login_from(world: &World, forwarded: &str) -> u16 {
    login_with(world, &[("x-forwarded-for", forwarded)]).status
}

#[test]
fn an_untrusted_peers_forwarded_for_is_ignored() {
    let world = world_with(|config| config.login_rate_limit_per_minute = 2);
    // Loopback is not trusted here: the claimed addresses do not count, the
    // peer's own does, so all three share one budget.
    assert_eq!(login_from(&world, "198.51.100.1"), 401);
    assert_eq!(login_from(&world, "198.51.100.2"), 401);
    let limited = login_with(&world, &[("x-forwarded-for", "198.51.100.3")]);
    limited.assert_error(429, "rate_limited");
}

#[test]
fn a_trusted_proxys_forwarded_addresses_get_their_own_budgets() {
    let world = world_with(|config| {
        config.login_rate_limit_per_minute = 2;
        config.trusted_proxies =
            souk::http::proxy::TrustedProxies::parse("127.0.0.1").expect("a proxy list");
    });
    assert_eq!(login_from(&world, "198.51.100.1"), 401);
    assert_eq!(login_from(&world, "198.51.100.1"), 401);
    assert_eq!(login_from(&world, "198.51.100.1"), 429);
    // Another client behind the same proxy has a budget of its own.
    assert_eq!(login_from(&world, "198.51.100.2"), 401);
    assert_eq!(login_from(&world, "2001:db8::7"), 401);
    // The proxy's own requests (no header) count as the proxy.
    assert_eq!(login_with(&world, &[]).status, 401);
}

#[test]
fn only_the_rightmost_untrusted_entry_is_believed() {
    let world = world_with(|config| {
        config.login_rate_limit_per_minute = 2;
        config.trusted_proxies =
            souk::http::proxy::TrustedProxies::parse("127.0.0.0/8, 10.0.0.0/8").expect("a list");
    });
    // What the client wrote (the left part) changes nothing: all three are
    // 198.51.100.7, seen through two trusted proxies.
    assert_eq!(login_from(&world, "1.1.1.1, 198.51.100.7, 10.0.0.2"), 401);
    assert_eq!(login_from(&world, "2.2.2.2, 198.51.100.7"), 401);
    let limited = login_with(
        &world,
        &[
            ("x-forwarded-for", "3.3.3.3"),
            ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
        ],
    );
    limited.assert_error(429, "rate_limited");
    assert_eq!(login_from(&world, "1.1.1.1, 198.51.100.8"), 401);
}

#[test]
fn registrations_count_the_forwarded_address_too() {
    let world = world_with(|config| {
        config.registration_rate_limit_per_minute = 1;
        config.trusted_proxies =
            souk::http::proxy::TrustedProxies::parse("127.0.0.1").expect("a proxy list");
    });
    let register = |forwarded: &str, name: &str| {
        let mut client = Client::connect(world.app.addr);
        client
            .stream
            .set_read_timeout(Some(HASHING_TIMEOUT))
            .expect("setting a read timeout");
        // A refused (too short) password still counts, and costs no hash.
        let body = json!({"username": name, "password": "short"});
        send_json(
            &mut client,
            "POST",
            "/api/v1/users",
            None,
            Some(&body),
            &[("x-forwarded-for", forwarded)],
        )
        .expect("an answer")
        .status
    };
    assert_eq!(register("198.51.100.1", "first"), 400);
    assert_eq!(register("198.51.100.1", "second"), 429);
    assert_eq!(register("198.51.100.2", "third"), 400);
}

#[test]
fn a_bad_trusted_proxy_entry_stops_the_start_naming_the_variable() {
    let dir = TempDir::new();
    for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.1,nonsense"] {
        let mut command = souk(&dir);
        command.env("SOUK_TRUSTED_PROXIES", bad);
        let (status, _, err) = run(command);
        assert!(!status.success(), "{bad} was accepted");
        assert!(err.contains("SOUK_TRUSTED_PROXIES"), "{bad}: {err}");
    }
}

#[test]
fn refusals_and_timeouts_are_logged_with_the_forwarded_client() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command
        .env("RUST_LOG", "souk=debug")
        .env("SOUK_TRUSTED_PROXIES", "127.0.0.1")
        .env("SOUK_READ_TIMEOUT", "1");
    let process = Process::spawn(command);
    let marker = "listening on http://";
    let (seen, found) = process.read_log_until(PROCESS_TIMEOUT, |line| line.contains(marker));
    let addr: SocketAddr = seen
        .last()
        .filter(|_| found)
        .and_then(|line| line.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no `{marker}ADDR` in the log: {seen:#?}"));
    // A body over the limit, refused from its head.
    let mut refused = Client::connect(addr);
    refused.send(
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\
          Content-Length: 999999999999\r\n\r\n",
    );
    refused
        .read_response()
        .assert_error(413, "payload_too_large");
    let wanted = "refused a request from 203.0.113.7 (via 127.0.0.1:";
    let (seen, found) = process.read_log_until(PROCESS_TIMEOUT, |line| line.contains(wanted));
    assert!(found, "no `{wanted}` in the log: {seen:#?}");
    // A body that stops coming, cut off by the read timeout.
    let mut stalled = Client::connect(addr);
    stalled.send(
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.8\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    );
    let wanted = "closing 203.0.113.8 (via 127.0.0.1:";
    let (seen, found) =
        process.read_log_until(Duration::from_secs(10), |line| line.contains(wanted));
    assert!(found, "no `{wanted}` in the log: {seen:#?}");
    process.stop();
}
