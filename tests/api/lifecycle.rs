//! The real `souk` binary (docs/running.md): it reports its real address, serves,
//! stops cleanly on SIGTERM, migrates, prints its version, and refuses bad
//! configuration naming the variable.

use std::time::{Duration, Instant};

use crate::binary::{Served, run, souk};
use crate::helpers::{Client, SHUTDOWN_TIMEOUT, TempDir, get};

#[test]
fn souk_logs_its_real_address_serves_and_exits_0_on_sigterm() {
    let dir = TempDir::new();
    let mut served = Served::start(&dir);
    assert_ne!(served.addr.port(), 0, "the real port, not 0");
    let mut client = Client::connect(served.addr);
    client.send(get("/healthz").as_bytes());
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["status"], "ok");
    drop(client);

    served.signal("-TERM");
    let status = served.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        dir.path.join("souk.db").exists(),
        "serve creates the database"
    );
    let log = served.log_to_end();
    assert!(
        log.iter().any(|line| line.contains("stopped")),
        "a clean stop is logged: {log:?}"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&served.addr, Duration::from_secs(1)).is_err(),
        "nothing listens after the exit"
    );
}

#[test]
fn sigterm_lets_a_keep_alive_client_finish_and_closes_it() {
    let dir = TempDir::new();
    let mut served = Served::start(&dir);
    let mut client = Client::connect(served.addr);
    client.send(get("/readyz").as_bytes());
    assert_eq!(client.read_response().status, 200);
    served.signal("-TERM");
    let started = Instant::now();
    let status = served.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        started.elapsed() < SHUTDOWN_TIMEOUT,
        "an idle client does not hold up the exit"
    );
    client.expect_closed();
}

#[test]
fn souk_migrate_creates_the_database_and_exits_0() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command.arg("migrate");
    let (status, _out, err) = run(command);
    assert_eq!(status.code(), Some(0), "{err}");
    let path = dir.path.join("souk.db");
    assert!(path.exists(), "{err}");
    let conn = rusqlite::Connection::open(&path).expect("opening the migrated database");
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("reading user_version");
    assert_eq!(version, souk::store::SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("reading journal_mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    drop(conn);
    // Again: nothing to do, still 0.
    let mut command = souk(&dir);
    command.arg("migrate");
    let (status, _out, err) = run(command);
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn souk_version_prints_the_version() {
    let dir = TempDir::new();
    let mut command = souk(&dir);
    command.arg("--version");
    let (status, out, err) = run(command);
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(
        out.trim(),
        format!("souk {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    assert!(
        !dir.path.join("souk.db").exists(),
        "--version touches nothing"
    );
}

#[test]
fn a_bad_configuration_value_stops_souk_with_a_message_naming_the_variable() {
    let cases = [
        ("MAX_DB_CONNECTIONS", "abc"),
        ("MAX_DB_CONNECTIONS", "0"),
        ("SOUK_MAX_BODY", "ten"),
        ("SOUK_READ_TIMEOUT", "-1"),
        ("SOUK_CURRENCIES", "BTC:8"),
        ("SOUK_ADDR", "localhost"),
        ("SOUK_OPEN_REGISTRATION", "maybe"),
        ("SOUK_REGISTRATION_RATE_LIMIT", "0"),
    ];
    for (variable, value) in cases {
        let dir = TempDir::new();
        let mut command = souk(&dir);
        command.env(variable, value);
        let (status, _out, err) = run(command);
        assert!(
            !status.success(),
            "{variable}={value} was accepted: {status:?}"
        );
        assert!(
            err.contains(variable),
            "{variable}={value}: the message names the variable: {err}"
        );
        assert!(!err.contains("listening on"), "{variable}={value}: {err}");
    }
}
