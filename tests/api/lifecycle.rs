//! The real `souk` binary (SPEC §1, §2): it reports its real address, serves,
//! stops cleanly on SIGTERM, migrates, prints its version, and refuses bad
//! configuration naming the variable.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{Client, SHUTDOWN_TIMEOUT, TempDir, get};

/// How long the binary gets to start, or to stop after a signal.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);

/// `souk` with a database in `dir`, port 0 and info logging.
fn souk(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_souk"));
    command
        .env("SOUK_ADDR", "127.0.0.1:0")
        .env("SOUK_DB", dir.path.join("souk.db"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running `souk serve`, killed on drop if the test did not stop it.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// Every stderr line, as they come (drained so the child never blocks).
    log: mpsc::Receiver<String>,
}

impl Served {
    fn start(dir: &TempDir) -> Served {
        let mut child = souk(dir).spawn().expect("starting souk");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .expect("souk logs `listening on http://ADDR` in time");
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr.parse().expect("a socket address after listening on");
            }
        };
        Served {
            child,
            addr,
            log: lines_rx,
        }
    }

    fn wait(&mut self) -> ExitStatus {
        wait_with_timeout(&mut self.child)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for souk") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("souk did not exit within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command that must exit by itself; returns status, stdout, stderr.
fn run(mut command: Command) -> (ExitStatus, String, String) {
    let mut child = command.spawn().expect("starting souk");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = wait_with_timeout(&mut child);
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

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

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(served.child.id().to_string())
        .status()
        .expect("running kill");
    assert!(killed.success());
    let status = served.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        dir.path.join("souk.db").exists(),
        "serve creates the database"
    );
    let log: Vec<String> = served.log.try_iter().collect();
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
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(served.child.id().to_string())
        .status()
        .expect("running kill");
    assert!(killed.success());
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
