//! Clients that attack the server rather than use it: slow readers of large
//! pipelined answers, many stalled bodies at once, heads that break the
//! RFC 9112 Host and request-target rules, bodies still being sent after
//! their refusal, and a second server on the same database file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::binary::{Served, run, souk};
use crate::helpers::{Client, TempDir, get, spawn_app, spawn_app_with};

// ---- slow readers ------------------------------------------------------------

/// A client that pipelined `requests` and now reads its answers at
/// `bytes_per_tick` every 10 ms (0: never), until `stop` is set.
fn slow_reader(
    addr: std::net::SocketAddr,
    requests: &[u8],
    bytes_per_tick: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut client = Client::connect(addr);
    client.send_lenient(requests);
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; bytes_per_tick.max(1)];
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
            if bytes_per_tick > 0 && client.stream.read(&mut chunk).is_err() {
                return;
            }
        }
    })
}

#[test]
fn twice_as_many_slow_readers_as_workers_do_not_delay_anyone_elses_healthz() {
    let app = spawn_app_with(|c| c.workers = 2);
    let stop = Arc::new(AtomicBool::new(false));
    // Each pipelines 4 MiB answers, far more than the socket buffers hold;
    // half read at 128 KiB/s, half not at all.
    let requests = get("/test/big").repeat(8);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let rate = if i % 2 == 0 { 1280 } else { 0 };
            slow_reader(app.addr, requests.as_bytes(), rate, Arc::clone(&stop))
        })
        .collect();
    // Let every worker reach the point where the old server blocked.
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let response = app.get("/healthz");
        latencies.push(started.elapsed());
        assert_eq!(response.status, 200, "{response:?}");
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        let _ = reader.join();
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let slowest = latencies[latencies.len() - 1];
    assert!(
        median < Duration::from_millis(100) && slowest < Duration::from_secs(1),
        "healthz behind 8 slow readers: median {median:?}, slowest {slowest:?}"
    );
}

#[test]
fn pipelined_requests_behind_an_unsent_answer_wait_and_are_answered_in_order() {
    let app = spawn_app_with(|c| c.workers = 1);
    let mut client = app.connect();
    // A large answer first, then small ones: none may overtake it, and all
    // arrive once the client reads.
    let mut requests = get("/test/big");
    for n in 0..20 {
        requests.push_str(&get(&format!("/test/seq/{n}")));
    }
    client.send(requests.as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.read_response().status, 200);
    for n in 0..20 {
        let response = client.read_response();
        assert_eq!(response.json()["n"], n.to_string(), "{response:?}");
    }
}

// ---- the in-flight body budget -------------------------------------------------

/// A POST head announcing `length` bytes of JSON body, and `sent` of them.
fn partial_post(length: usize, sent: usize) -> Vec<u8> {
    let mut out = format!(
        "POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .into_bytes();
    out.extend(std::iter::repeat_n(b' ', sent));
    out
}

#[test]
fn bodies_past_the_in_flight_budget_get_503_and_the_budget_comes_back() {
    let app = spawn_app_with(|c| {
        c.max_body_bytes = 64 * 1024;
        c.max_inflight_body_bytes = 100 * 1024;
    });
    let body = 60 * 1024;
    let sent = 40 * 1024;
    // Two stalled bodies hold about what they sent (~40 KiB each); the third
    // one's bytes do not fit what is left.
    let mut first = app.connect();
    first.send(&partial_post(body, sent));
    let mut second = app.connect();
    second.send(&partial_post(body, sent));
    // Time for the server to read both (generous: a loaded CI machine).
    std::thread::sleep(Duration::from_millis(1000));
    let mut third = app.connect();
    third.send_lenient(&partial_post(body, sent));
    let refused = third.read_response();
    refused.assert_error(503, "unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    assert!(refused.closes(), "{refused:?}");
    // The first body completes (its JSON is blanks: 400), which gives its
    // share back; a whole new body then fits.
    first.send(&vec![b' '; body - sent]);
    first.read_response().assert_error(400, "invalid_json");
    let mut fourth = app.connect();
    fourth.send(&partial_post(body, body));
    fourth.read_response().assert_error(400, "invalid_json");
    drop(second);
}

#[test]
fn announced_lengths_without_bytes_do_not_use_up_the_body_budget() {
    let app = spawn_app_with(|c| {
        c.max_body_bytes = 1 << 20;
        c.max_inflight_body_bytes = (1 << 20) + 64 * 1024;
    });
    // Many heads that announce the largest body and send one byte of it.
    let claims: Vec<Client> = (0..64)
        .map(|_| {
            let mut client = app.connect();
            client.send(&partial_post(1 << 20, 1));
            client
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // An honest 200 KiB body sent in two parts is still received.
    let mut honest = app.connect();
    let length = 200 * 1024;
    honest.send(&partial_post(length, length / 2));
    std::thread::sleep(Duration::from_millis(100));
    honest.send(&vec![b' '; length - length / 2]);
    honest.read_response().assert_error(400, "invalid_json");
    drop(claims);
}

#[test]
fn three_hundred_stalled_one_mib_bodies_do_not_lift_rss_past_64_mb() {
    let dir = TempDir::new();
    let served = Served::start(&dir);
    let length = (1 << 20) - 1;
    let mut held = Vec::new();
    // Each sends all but the last 100 bytes of a 1 MiB body, then stalls.
    for _ in 0..300 {
        let stream = TcpStream::connect(served.addr).expect("connecting");
        stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .expect("a write timeout");
        let mut stream = stream;
        // Refused ones are closed by the server: that is the point.
        let _ = stream.write_all(&partial_post(length, length - 100));
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = served.status_bytes("VmHWM");
    let health = {
        let mut client = Client::connect(served.addr);
        client.send(get("/healthz").as_bytes());
        client.read_response().status
    };
    drop(held);
    served.stop();
    assert_eq!(health, 200);
    assert!(
        peak < 64 << 20,
        "peak RSS {} MB with 300 stalled 1 MiB bodies",
        peak >> 20
    );
}

// ---- a refused body that is still being sent --------------------------------------

#[test]
fn a_client_still_sending_a_refused_body_reads_its_413_not_a_reset() {
    let app = spawn_app();
    let mut client = app.connect();
    // The head is refused at once; the body keeps coming after it.
    let mut request = partial_post(2 << 20, 0);
    request.extend(std::iter::repeat_n(b' ', 256 * 1024));
    client.send_lenient(&request);
    // By now the server has answered and closed its side; a close with our
    // body unread would have reset the connection and lost the answer.
    std::thread::sleep(Duration::from_millis(300));
    let response = client.read_response();
    response.assert_error(413, "payload_too_large");
    assert!(response.closes(), "{response:?}");
}

// ---- RFC 9112 request rules ----------------------------------------------------------

fn raw(app: &crate::helpers::TestApp, request: &str) -> crate::helpers::HttpResponse {
    let mut client = app.connect();
    client.send(request.as_bytes());
    client.read_response()
}

#[test]
fn an_http11_request_without_one_valid_host_gets_400_and_a_close() {
    let app = spawn_app();
    for request in [
        "GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a b/c\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a:80x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: user@host\r\n\r\n",
    ] {
        let response = raw(&app, request);
        response.assert_error(400, "bad_request");
        assert!(response.closes(), "{request:?}: {response:?}");
    }
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost:\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let response = raw(&app, request);
        assert_eq!(response.status, 200, "{request:?}: {response:?}");
    }
}

#[test]
fn a_target_that_is_neither_origin_nor_absolute_form_gets_400() {
    let app = spawn_app();
    for request in [
        "GET healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET ftp://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http:///healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let response = raw(&app, request);
        response.assert_error(400, "bad_request");
    }
    for request in [
        "GET http://:80/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://u@a/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        raw(&app, request).assert_error(400, "bad_request");
    }
    for host in ["a:000080", "[v1.fe80::a+en1]", "[::1]", "a:"] {
        let response = raw(
            &app,
            &format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        );
        assert_eq!(response.status, 200, "Host: {host}: {response:?}");
    }
    // `OPTIONS *` asks about the server as a whole.
    let response = raw(&app, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 204, "{response:?}");
    assert!(
        response.header("allow").is_some_and(|a| a.contains("POST")),
        "{response:?}"
    );
    let response = raw(&app, "GET http://a:1/healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 200, "{response:?}");
    let response = raw(&app, "GET HTTP://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn every_response_carries_a_date_and_html_carries_security_headers() {
    let app = spawn_app();
    let is_imf_date = |value: Option<&str>| {
        value.is_some_and(|v| v.ends_with(" GMT") && v.len() == 29 && v.as_bytes()[3] == b',')
    };
    for response in [
        app.get("/healthz"),
        app.get("/nowhere"),
        raw(&app, "GET /healthz HTTP/1.1\r\n\r\n"),
        app.post_echo(b"{"),
    ] {
        assert!(is_imf_date(response.header("date")), "{response:?}");
    }
    let page = app.get("/admin");
    assert_eq!(page.status, 200);
    assert!(is_imf_date(page.header("date")), "{page:?}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let script_src = csp
        .split(';')
        .find(|directive| directive.trim().starts_with("script-src"))
        .unwrap_or_default();
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
}

#[test]
fn a_shutdown_refuses_new_connections_at_once_while_an_answer_is_still_being_written() {
    let mut app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(3));
    // A client that never reads keeps an answer unsent, and the shutdown
    // waiting for it.
    let mut hog = app.connect();
    hog.send(get("/test/big").repeat(4).as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let done = app.begin_shutdown();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let refused = TcpStream::connect_timeout(&app.addr, Duration::from_secs(1)).is_err();
    assert!(
        refused && started.elapsed() < Duration::from_secs(1),
        "a new connection during shutdown must be refused, not left in the backlog"
    );
    drop(hog);
    assert!(
        done.recv_timeout(Duration::from_secs(10)).is_ok(),
        "shutdown finished"
    );
}

// ---- one server per database ---------------------------------------------------------

#[test]
fn a_second_server_on_the_same_database_refuses_to_start_and_the_tools_still_work() {
    let dir = TempDir::new();
    let first = Served::start(&dir);
    let (status, _, stderr) = run(souk(&dir));
    assert_eq!(status.code(), Some(2), "{stderr}");
    let db = std::fs::canonicalize(dir.path.join("souk.db")).expect("the database exists");
    assert!(
        stderr.contains(&db.display().to_string()) && stderr.contains("another souk"),
        "the refusal names the file and the reason: {stderr}"
    );
    // The lock is a file of its own: never a descriptor of the database.
    let mut lock = db.clone().into_os_string();
    lock.push(".lock");
    assert!(std::path::Path::new(&lock).exists(), "{lock:?}");
    // The first server still serves.
    let mut client = Client::connect(first.addr);
    client.send(get("/readyz").as_bytes());
    assert_eq!(client.read_response().status, 200);
    // The offline tools work beside it.
    let mut create = souk(&dir);
    create.env("SOUK_PASSWORD", "a long enough password").args([
        "user",
        "create",
        "--username",
        "beside",
    ]);
    let (status, out, err) = run(create);
    assert!(status.success(), "user create: {out} {err}");
    let (status, out, err) = run({
        let mut check = souk(&dir);
        check.arg("check");
        check
    });
    assert!(status.success(), "check: {out} {err}");
    let copy = dir.path.join("copy.db");
    let (status, out, err) = run({
        let mut backup = souk(&dir);
        backup.arg("backup").arg(&copy);
        backup
    });
    assert!(status.success(), "backup: {out} {err}");
    assert!(copy.exists());
    first.stop();
    // Once the first is gone, a server starts on the file again.
    let again = Served::start(&dir);
    again.stop();
}
