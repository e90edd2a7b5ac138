//! Acknowledged means durable (docs/durability.md), tested with the real binary: a
//! transfer load from several threads, `kill -9` in the middle of it, a
//! restart on the same database. Every transfer that got its 201 is there
//! exactly once, every transfer is whole (one out and one in entry), money
//! is conserved, idempotency keys committed with their transfers replay, and
//! `souk check` exits 0.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{PROCESS_TIMEOUT, Served, create_admin, run, souk};
use crate::client::{Member, log_in_at, member_at, request, send_json};
use crate::helpers::{CLIENT_TIMEOUT, Client, HttpResponse, TempDir};

/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(1);
/// Client threads of the load.
const LOAD_THREADS: usize = 4;
const PASSWORD: &str = "crash test password";

/// `souk check` on the database in `dir`: must exit 0.
fn souk_check(dir: &TempDir, when: &str) {
    let mut command = souk(dir);
    command.arg("check");
    let (status, out, err) = run(command);
    assert_eq!(
        status.code(),
        Some(0),
        "souk check {when}: {status:?}\nstdout: {out}\nstderr: {err}"
    );
    assert!(out.starts_with("ok"), "souk check {when}: {out}");
}

/// One transfer of the load, as sent.
#[derive(Clone, Debug)]
struct Sent {
    /// Its memo and its Idempotency-Key.
    memo: String,
    from: usize,
    to: usize,
    body: Value,
}

/// What one load thread saw.
#[derive(Default)]
struct LoadReport {
    /// Transfers answered 201, with the body of that answer.
    acknowledged: Vec<(Sent, Vec<u8>)>,
    /// The transfer in flight when the connection died, if any.
    unanswered: Option<Sent>,
    /// Anything but a 201 before the kill, or an error before the kill.
    failures: Vec<String>,
}

const AMOUNT: &str = "0.001";
const AMOUNT_MINOR: i128 = 100_000;
const FUNDING: &str = "1000";
const FUNDING_MINOR: i128 = 100_000_000_000;

#[test]
fn every_acknowledged_transfer_survives_kill_9_exactly_once() {
    let started = Instant::now();
    let dir = TempDir::new();
    create_admin(&dir, PASSWORD);
    let served = Served::start(&dir);
    let admin = log_in_at(served.addr, "admin", PASSWORD).token;
    let users = funded_users(served.addr, &admin);
    let reports = load_then_kill_9(served, &users, started);
    let acknowledged: Vec<&(Sent, Vec<u8>)> =
        reports.iter().flat_map(|r| &r.acknowledged).collect();
    assert!(
        acknowledged.len() >= 10,
        "too few transfers acknowledged to test anything: {}",
        acknowledged.len()
    );
    let in_flight = reports.iter().filter(|r| r.unanswered.is_some()).count();
    eprintln!(
        "{} transfers acknowledged, {in_flight} in flight at the kill",
        acknowledged.len()
    );

    // The crashed database as an operator finds it.
    souk_check(&dir, "right after the kill");

    let served = Served::start(&dir);
    let addr = served.addr;
    let outs = assert_acknowledged_applied_once(addr, &users, &acknowledged);
    assert_balances_replay_the_transfers(addr, &admin, &users, &reports, &outs);
    assert_totals_and_check(addr, &admin);
    assert_keys_replay(addr, &users, &reports, &outs);
    let log = served.drain_log();
    assert!(
        !log.iter().any(|line| line.contains("panicked")),
        "the restarted server panicked: {log:#?}"
    );
    served.stop();

    assert_whole_transfers_in_the_file(&dir, acknowledged.len() + in_flight);
    souk_check(&dir, "after the restart and a clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the crash test took {:?}",
        started.elapsed()
    );
}

/// Two users with FUNDING btc each, deposited by the admin.
fn funded_users(addr: SocketAddr, admin: &str) -> Vec<Member> {
    let users: Vec<Member> = (0..2)
        .map(|i| member_at(addr, &format!("crash_user{i}"), PASSWORD))
        .collect();
    for (i, user) in users.iter().enumerate() {
        let body = json!({"user_id": user.id, "currency": "btc", "amount": FUNDING, "reference": format!("fund-{i}")});
        let response = request(
            addr,
            "POST",
            "/api/v1/admin/deposits",
            Some(admin),
            Some(&body),
            &[],
        );
        assert_eq!(response.status, 201, "funding: {}", response.body_text());
    }
    users
}

/// Runs the transfer load, `kill -9`s the server in the middle of it (once
/// at least 10 transfers are answered) and waits for it to die.
fn load_then_kill_9(mut served: Served, users: &[Member], started: Instant) -> Vec<LoadReport> {
    let addr = served.addr;
    let killed = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let reports: Vec<LoadReport> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..LOAD_THREADS)
            .map(|t| {
                let (killed, answered) = (&killed, &answered);
                s.spawn(move || load_thread(addr, users, t, killed, answered, started))
            })
            .collect();

        std::thread::sleep(LOAD_BEFORE_KILL);
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while answered.load(Ordering::Relaxed) < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let running = threads.iter().filter(|t| !t.is_finished()).count();
        killed.store(true, Ordering::SeqCst);
        served.signal("-9");
        let reports: Vec<LoadReport> = threads
            .into_iter()
            .map(|t| t.join().expect("a load thread"))
            .collect();
        let failures: Vec<&String> = reports.iter().flat_map(|r| &r.failures).collect();
        assert!(
            failures.is_empty(),
            "the load failed before the kill: {failures:#?}"
        );
        assert_eq!(running, LOAD_THREADS, "the load stopped before the kill");
        reports
    });
    let status = served.wait();
    assert!(
        !status.success(),
        "souk was killed, not stopped: {status:?}"
    );
    reports
}

/// One load thread: transfers one after the other on its own keep-alive
/// connection, each with a unique memo and Idempotency-Key, until the
/// connection dies.
fn load_thread(
    addr: SocketAddr,
    users: &[Member],
    t: usize,
    killed: &AtomicBool,
    answered: &AtomicUsize,
    started: Instant,
) -> LoadReport {
    let mut report = LoadReport::default();
    let from = t % users.len();
    let to = (t + 1) % users.len();
    let mut client = Client::connect(addr);
    for i in 0.. {
        let memo = format!("crash-t{t}-{i}");
        let body = json!({"to": users[to].id, "currency": "btc", "amount": AMOUNT, "memo": memo});
        let sent = Sent {
            memo: memo.clone(),
            from,
            to,
            body,
        };
        match send_json(
            &mut client,
            "POST",
            "/api/v1/transfers",
            Some(&users[from].token),
            Some(&sent.body),
            &[("Idempotency-Key", &memo)],
        ) {
            Ok(response) if response.status == 201 => {
                answered.fetch_add(1, Ordering::Relaxed);
                report.acknowledged.push((sent, response.body));
            }
            Ok(response) => {
                report.failures.push(format!(
                    "{memo}: {} {}",
                    response.status,
                    response.body_text()
                ));
                return report;
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    report.failures.push(format!("{memo}: {e} before the kill"));
                }
                report.unanswered = Some(sent);
                return report;
            }
        }
        if started.elapsed() > PROCESS_TIMEOUT {
            report.failures.push("the kill never came".into());
            return report;
        }
    }
    report
}

/// Every acknowledged transfer is there exactly once, on both sides, and
/// at most the one in flight per thread is there unacknowledged. Returns
/// how many times each memo is in a sender's entries.
fn assert_acknowledged_applied_once(
    addr: SocketAddr,
    users: &[Member],
    acknowledged: &[&(Sent, Vec<u8>)],
) -> HashMap<String, usize> {
    let (outs, ins) = transfer_halves(addr, users);
    for (sent, _) in acknowledged {
        assert_eq!(
            outs.get(&sent.memo),
            Some(&1),
            "acknowledged transfer {} is not in its sender's entries exactly once",
            sent.memo
        );
        assert_eq!(
            ins.get(&sent.memo),
            Some(&1),
            "acknowledged transfer {} is not in its recipient's entries exactly once",
            sent.memo
        );
    }
    assert!(
        outs.values().chain(ins.values()).all(|n| *n == 1),
        "a transfer was applied twice"
    );
    let mut out_memos: Vec<&String> = outs.keys().collect();
    let mut in_memos: Vec<&String> = ins.keys().collect();
    out_memos.sort();
    in_memos.sort();
    assert_eq!(out_memos, in_memos, "a transfer lost one of its halves");
    assert!(
        outs.len() <= acknowledged.len() + LOAD_THREADS,
        "{} transfers applied for {} acknowledged",
        outs.len(),
        acknowledged.len()
    );
    outs
}

/// The users' transfer entries counted by memo: (outgoing, incoming).
fn transfer_halves(
    addr: SocketAddr,
    users: &[Member],
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut outs: HashMap<String, usize> = HashMap::new();
    let mut ins: HashMap<String, usize> = HashMap::new();
    for user in users {
        for entry in all_entries(addr, &user.token) {
            if entry["kind"] != "transfer" {
                continue;
            }
            let memo = entry["memo"]
                .as_str()
                .expect("a load transfer has a memo")
                .to_owned();
            let counterparty = entry["counterparty"].as_str().unwrap_or_default();
            assert_ne!(counterparty, user.id, "{entry}");
            let side = if entry["direction"] == "out" {
                &mut outs
            } else {
                &mut ins
            };
            *side.entry(memo).or_default() += 1;
        }
    }
    (outs, ins)
}

/// Balances: the replay of the applied transfers (the acknowledged ones,
/// give or take the ones in flight), and conserved.
fn assert_balances_replay_the_transfers(
    addr: SocketAddr,
    admin: &str,
    users: &[Member],
    reports: &[LoadReport],
    outs: &HashMap<String, usize>,
) {
    let ids: Vec<&str> = users.iter().map(|user| user.id.as_str()).collect();
    let path = format!(
        "/api/v1/admin/balances?user_ids={}&currencies=btc",
        ids.join(",")
    );
    let response = request(addr, "GET", &path, Some(admin), None, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let balances = response.json()["balances"].clone();
    let mut expected: BTreeMap<usize, i128> =
        (0..users.len()).map(|i| (i, FUNDING_MINOR)).collect();
    let sent_by_memo: HashMap<&str, &Sent> = reports
        .iter()
        .flat_map(|r| {
            r.acknowledged
                .iter()
                .map(|(sent, _)| sent)
                .chain(&r.unanswered)
        })
        .map(|sent| (sent.memo.as_str(), sent))
        .collect();
    for memo in outs.keys() {
        let sent = sent_by_memo
            .get(memo.as_str())
            .unwrap_or_else(|| panic!("transfer {memo} was never sent"));
        *expected.entry(sent.from).or_default() -= AMOUNT_MINOR;
        *expected.entry(sent.to).or_default() += AMOUNT_MINOR;
    }
    let mut sum = 0i128;
    for (index, id) in ids.iter().enumerate() {
        let available = minor_btc(
            balances[*id]["btc"]["available"]
                .as_str()
                .expect("available"),
        );
        assert_eq!(
            available, expected[&index],
            "user {index}'s balance is the replay of the transfers: {balances}"
        );
        sum += available;
    }
    assert_eq!(
        sum,
        FUNDING_MINOR * users.len() as i128,
        "money is conserved: {balances}"
    );
}

/// The wallet totals count only the funding, and the server's own check
/// finds nothing.
fn assert_totals_and_check(addr: SocketAddr, admin: &str) {
    let response = request(
        addr,
        "GET",
        "/api/v1/admin/stats/wallets",
        Some(admin),
        None,
        &[],
    );
    assert_eq!(response.status, 200);
    let btc = response.json()["currencies"]["btc"].clone();
    assert_eq!(btc["deposited"], "2000.00000000", "{btc}");
    assert_eq!(btc["withdrawn"], "0.00000000", "{btc}");
    let response = request(addr, "GET", "/api/v1/admin/check", Some(admin), None, &[]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"ok": true, "problems": []}),
        "the check after the restart"
    );
}

/// The keys were committed with their transfers: the last acknowledged
/// transfers of every thread replay with the very same answer, and a client
/// retrying the unanswered ones with their keys ends with every transfer
/// applied exactly once.
fn assert_keys_replay(
    addr: SocketAddr,
    users: &[Member],
    reports: &[LoadReport],
    outs: &HashMap<String, usize>,
) {
    for report in reports {
        for (sent, body) in report.acknowledged.iter().rev().take(10) {
            let response = resend(addr, users, sent, "replaying");
            assert_eq!(
                response.header("idempotent-replayed"),
                Some("true"),
                "replaying {}",
                sent.memo
            );
            assert_eq!(&response.body, body, "replaying {}", sent.memo);
        }
    }
    for sent in reports.iter().filter_map(|r| r.unanswered.as_ref()) {
        let response = resend(addr, users, sent, "retrying");
        let was_applied = outs.contains_key(&sent.memo);
        assert_eq!(
            response.header("idempotent-replayed") == Some("true"),
            was_applied,
            "retrying {}: replayed exactly when it was applied before the kill",
            sent.memo
        );
    }
}

/// Sends `sent` again with its Idempotency-Key; it must be answered 201.
fn resend(addr: SocketAddr, users: &[Member], sent: &Sent, doing: &str) -> HttpResponse {
    let response = request(
        addr,
        "POST",
        "/api/v1/transfers",
        Some(&users[sent.from].token),
        Some(&sent.body),
        &[("Idempotency-Key", &sent.memo)],
    );
    assert_eq!(
        response.status,
        201,
        "{doing} {}: {}",
        sent.memo,
        response.body_text()
    );
    response
}

/// Whole transfers only, straight from the file, and after the retries
/// every one of the `attempted` transfers applied once.
fn assert_whole_transfers_in_the_file(dir: &TempDir, attempted: usize) {
    let conn = rusqlite::Connection::open(dir.path.join("souk.db")).expect("opening the database");
    let broken: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT movement_id FROM entries WHERE kind = 'transfer'
               GROUP BY movement_id HAVING count(*) != 2 OR sum(direction = 'out') != 1)",
            [],
            |row| row.get(0),
        )
        .expect("counting transfer halves");
    assert_eq!(broken, 0, "transfers with a missing or extra half");
    let applied: i64 = conn
        .query_row(
            "SELECT count(DISTINCT memo) FROM entries WHERE kind = 'transfer'",
            [],
            |row| row.get(0),
        )
        .expect("counting transfers");
    assert_eq!(
        applied as usize, attempted,
        "after the retries, every transfer sent is applied once"
    );
}

/// Every entry of the caller, following `next` in pages of 100.
fn all_entries(addr: SocketAddr, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let path = match &after {
            None => "/api/v1/wallet/entries?limit=100".to_owned(),
            Some(after) => format!("/api/v1/wallet/entries?limit=100&after={after}"),
        };
        let response = request(addr, "GET", &path, Some(token), None, &[]);
        assert_eq!(response.status, 200, "{path}: {}", response.body_text());
        let body = response.json();
        out.extend(body["entries"].as_array().expect("entries").iter().cloned());
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return out,
        }
    }
    panic!("paging the entries does not end");
}

/// Minor units of a btc amount as the server renders it ("1.50000000").
fn minor_btc(text: &str) -> i128 {
    let (whole, fraction) = text.split_once('.').expect("a point");
    assert_eq!(fraction.len(), 8, "{text}");
    format!("{whole}{fraction}").parse().expect("digits")
}
