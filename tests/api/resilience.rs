//! Operating under failure: a real disk that fills up (a small tmpfs), the
//! store's circuit breaker, and reads past QUERY_TIMEOUT.
//!
//! The disk test mounts a tmpfs, which needs root: CI runs as root, so there
//! it must run; elsewhere it is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use souk::api::{self, Params, respond};
use souk::app::App;
use souk::http::{Method, Reply, Request};

use crate::client::{Member, World, request, world_with};
use crate::helpers::TempDir;

/// A tmpfs of `size_mb` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size_mb: u32) -> Option<SmallDisk> {
        let dir = TempDir::new();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&dir.path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        &self.dir.path
    }

    /// Fills the disk with a ballast file until it refuses more.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.path().join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("creating the ballast");
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir.path)
            .status();
    }
}

fn transfer(world: &World, from: &Member, to: &Member, memo: &str) -> u16 {
    let body = json!({"to": to.id, "currency": "btc", "amount": "0.00000001", "memo": memo});
    world
        .post("/api/v1/transfers", Some(&from.token), &body)
        .status
}

/// Every memo of `member`'s transfer entries, paging through the whole list.
fn memos(world: &World, member: &Member) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/wallet/entries?limit=100&after={a}"),
            None => "/api/v1/wallet/entries?limit=100".to_owned(),
        };
        let page = world.get(&path, &member.token).json();
        for entry in page["entries"].as_array().expect("entries") {
            if entry["kind"] == "transfer" {
                out.push(entry["memo"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return out,
        }
    }
}

#[test]
fn a_full_disk_fails_writes_cleanly_keeps_reads_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount(8) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let db = disk.path().join("souk.db");
    let world = world_with(|config| {
        config.db_path = db.clone();
        config.circuit_threshold = 3;
        config.circuit_cooldown = Duration::from_secs(2);
        config.monitoring_interval = Duration::from_secs(1);
        config.alert_cooldown = Duration::from_secs(60);
    });
    let admin = world.admin("disk_admin");
    let (alice, bob) = (world.member("disk_alice"), world.member("disk_bob"));
    world.deposit(&admin, &alice, "btc", "1");
    let ballast = disk.fill();

    let (mut acknowledged, mut refused) = write_until_refused(&world, &alice, &bob);
    writes_fail_fast_and_reads_go_on_while_open(&world, &alice, &bob);
    refused.push("while-open".into());
    std::fs::remove_file(&ballast).expect("freeing space");
    writes_recover(&world, &alice, &bob, &mut acknowledged, &mut refused);
    acknowledged_exactly_once_and_alerted(&world, &admin, &alice, &acknowledged, &refused);

    drop(world);
    let conn = rusqlite::Connection::open(&db).expect("reopening");
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(verdict, "ok");
}

/// Writes until the disk refuses: every answer is 201 or 503, never another
/// 5xx. The memos acknowledged and refused.
fn write_until_refused(world: &World, alice: &Member, bob: &Member) -> (Vec<String>, Vec<String>) {
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    let mut breaker_open = false;
    for n in 0..20_000 {
        let memo = format!("t{n}");
        match transfer(world, alice, bob, &memo) {
            201 => acknowledged.push(memo),
            503 => refused.push(memo),
            other => panic!("transfer {n} answered {other}: only 201 or 503 are acceptable"),
        }
        if refused.len() >= 5 {
            breaker_open = true;
            break;
        }
    }
    assert!(
        breaker_open,
        "the disk never filled ({} transfers acknowledged)",
        acknowledged.len()
    );

    (acknowledged, refused)
}

/// Open: writes fail fast with Retry-After, readiness says why, reads go on
/// (the transfer tried has memo `while-open`).
fn writes_fail_fast_and_reads_go_on_while_open(world: &World, alice: &Member, bob: &Member) {
    let started = Instant::now();
    let body =
        json!({"to": bob.id, "currency": "btc", "amount": "0.00000001", "memo": "while-open"});
    let rejected = request(
        world.app.addr,
        "POST",
        "/api/v1/transfers",
        Some(&alice.token),
        Some(&body),
        &[],
    );
    let rejected_in = started.elapsed();
    assert_eq!(rejected.status, 503);
    assert!(rejected.header("retry-after").is_some());
    assert!(
        rejected_in < Duration::from_millis(200),
        "fails fast, took {rejected_in:?}"
    );
    let ready = world.app.get("/readyz");
    assert_eq!(ready.status, 503, "readyz while the breaker is open");
    assert_eq!(
        world.get("/api/v1/wallet", &alice.token).status,
        200,
        "reads keep answering"
    );
    assert_eq!(world.get("/api/v1/users/me", &bob.token).status, 200);
    let metrics = String::from_utf8(world.app.get("/metrics").body).expect("utf-8");
    let circuit: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("souk_circuit"))
        .collect();
    assert!(
        circuit.contains(&"souk_circuit_state 1"),
        "metrics show the open breaker: {circuit:?}"
    );
}

/// Space has come back: writes succeed again within 5 s, without a restart.
fn writes_recover(
    world: &World,
    alice: &Member,
    bob: &Member,
    acknowledged: &mut Vec<String>,
    refused: &mut Vec<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut recovered = false;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let memo = format!("after{n}");
        match transfer(world, alice, bob, &memo) {
            201 => {
                acknowledged.push(memo);
                recovered = true;
                break;
            }
            503 => refused.push(memo),
            other => panic!("after freeing space a transfer answered {other}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        recovered,
        "writes did not recover within 5 s of freeing space"
    );
    assert_eq!(world.app.get("/readyz").status, 200);
}

/// Every acknowledged transfer is there exactly once; no refused one is;
/// the ledger holds, and the circuit_open alert fired once (cooldown 60 s).
fn acknowledged_exactly_once_and_alerted(
    world: &World,
    admin: &Member,
    alice: &Member,
    acknowledged: &[String],
    refused: &[String],
) {
    let mut seen = memos(world, alice);
    seen.sort();
    let mut expected = acknowledged.to_vec();
    expected.sort();
    assert_eq!(seen, expected, "acknowledged transfers, exactly once");
    assert!(
        refused.iter().all(|m| !seen.contains(m)),
        "no refused transfer was applied"
    );
    assert!(world.check(admin).is_empty(), "ledger invariants hold");

    // The circuit_open alert fired, once (cooldown 60 s).
    let alerts = world.get("/api/v1/admin/alerts", &admin.token).json();
    let fired = alerts["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .filter(|a| a["rule"] == "circuit_open")
        .count();
    assert_eq!(fired, 1, "circuit_open fired once: {alerts}");
}

/// A read that never ends by itself.
fn endless_read(app: &App, _: &Request, _: &Params) -> souk::error::Result<Reply> {
    let n: i64 = app.store.readers.read(|conn| {
        Ok(conn.query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            [],
            |row| row.get(0),
        )?)
    })?;
    Ok(Reply::Now(respond::json(200, &json!({ "n": n }))))
}

#[test]
fn a_read_past_query_timeout_is_interrupted_with_503_and_the_server_goes_on() {
    let dir = TempDir::new();
    let mut config = souk::config::Config::for_path(
        dir.path.join("souk.db"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("config");
    config.query_timeout = Duration::from_secs(1);
    let router = api::routes().route(
        Method::Get,
        "/test/endless-read",
        endless_read,
        "/test/endless-read",
    );
    let running = souk::app::start_with_routes(config, router).expect("starting");
    let mut client = crate::helpers::Client::connect(running.addr);
    let started = Instant::now();
    client.send(b"GET /test/endless-read HTTP/1.1\r\nhost: t\r\n\r\n");
    let response = client.read_response();
    let took = started.elapsed();
    assert_eq!(
        response.status,
        503,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "interrupted after ~1 s, took {took:?}"
    );
    client.send(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n");
    assert_eq!(client.read_response().status, 200, "the server goes on");
    running.shutdown();
}
