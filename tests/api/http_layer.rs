//! The HTTP/1.1 layer as the wire sees it (docs/http.md): body framing and its
//! limits, head limits, timeouts, keep-alive and pipelining, the connection
//! cap, panics, routing errors and graceful shutdown.

use std::time::{Duration, Instant};

use crate::helpers::{
    CLIENT_TIMEOUT, Client, SHUTDOWN_TIMEOUT, eventually, gate, get, head, post, spawn_app,
    spawn_app_with,
};

fn assert_healthy(app: &crate::helpers::TestApp) {
    let response = app.get("/healthz");
    assert_eq!(response.status, 200, "{response:?}");
}

// ---- bodies ----------------------------------------------------------------

#[test]
fn a_huge_content_length_gets_413_and_a_close_and_the_server_lives_on() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 1000000000000000\r\n\r\n{\"na",
    );
    let response = client.read_response();
    response.assert_error(413, "payload_too_large");
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
    assert_healthy(&app);
}

#[test]
fn a_content_length_past_u64_gets_413() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\n\
          Content-Length: 99999999999999999999999999999999\r\n\r\nab",
    );
    client
        .read_response()
        .assert_error(413, "payload_too_large");
    client.expect_closed();
    assert_healthy(&app);
}

#[test]
fn a_body_just_over_the_limit_gets_413_before_it_is_sent() {
    let app = spawn_app_with(|c| c.max_body_bytes = 2048);
    let mut client = app.connect();
    // Only the head: the answer must come without waiting for the body.
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 2049\r\n\r\n",
    );
    let response = client.read_response();
    response.assert_error(413, "payload_too_large");
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
}

#[test]
fn a_body_of_exactly_the_limit_is_accepted() {
    let app = spawn_app_with(|c| c.max_body_bytes = 2048);
    let prefix = br#"{"name":"a","count":1,"note":""#;
    let suffix = br#""}"#;
    let mut body = prefix.to_vec();
    body.resize(2048 - suffix.len(), b'x');
    body.extend_from_slice(suffix);
    assert_eq!(body.len(), 2048);
    let response = app.post_echo(&body);
    assert_eq!(response.status, 200, "{response:?}");
    let note_len = 2048 - prefix.len() - suffix.len();
    assert_eq!(
        response.json()["note"].as_str().map(str::len),
        Some(note_len)
    );
}

#[test]
fn a_body_far_over_the_limit_sent_in_full_still_gets_a_readable_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 2048);
    let mut client = app.connect();
    let mut request = b"POST /test/echo HTTP/1.1\r\nHost: test\r\n\
                        Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
        .to_vec();
    request.resize(request.len() + 200_000, b'x');
    let mut writer = client.stream.try_clone().expect("cloning the stream");
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(&request);
    });
    let response = client.read_response();
    response.assert_error(413, "payload_too_large");
    sender.join().expect("the sender thread");
    assert_healthy(&app);
}

#[test]
fn any_transfer_encoding_gets_411_and_a_close() {
    let app = spawn_app();
    for encoding in ["chunked", "identity", "gzip, chunked", "Chunked"] {
        let mut client = app.connect();
        client.send(
            format!(
                "POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: {encoding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        );
        let response = client.read_response();
        response.assert_error(411, "length_required");
        assert!(response.closes(), "{encoding}: {response:?}");
        client.expect_closed();
    }
}

#[test]
fn transfer_encoding_next_to_a_content_length_gets_411_not_a_smuggled_request() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /test/seq/smuggled HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    let response = client.read_response();
    response.assert_error(411, "length_required");
    client.expect_closed();
}

#[test]
fn a_repeated_content_length_gets_400_and_a_close_whether_equal_or_not() {
    let app = spawn_app();
    for (first, second) in [("5", "5"), ("5", "6"), ("0", "5")] {
        let mut client = app.connect();
        client.send(
            format!(
                "POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Length: {first}\r\n\
                 Content-Length: {second}\r\n\r\nhello"
            )
            .as_bytes(),
        );
        let response = client.read_response();
        assert_eq!(response.status, 400, "{first}/{second}: {response:?}");
        response.error();
        assert!(response.closes(), "{response:?}");
        client.expect_closed();
    }
}

#[test]
fn a_content_length_that_is_not_plain_digits_gets_400_and_a_close() {
    let app = spawn_app();
    for value in [
        "+5", "-5", "0x10", "5 5", "5,5", "5, 5", "five", "", "1e3", "٥",
    ] {
        let mut client = app.connect();
        let mut request =
            format!("POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Length: {value}\r\n\r\n")
                .into_bytes();
        request.extend_from_slice(b"hello");
        client.send(&request);
        let response = client.read_response();
        assert_eq!(response.status, 400, "{value:?}: {response:?}");
        response.error();
        assert!(response.closes(), "{value:?}: {response:?}");
        client.expect_closed();
    }
}

/// RFC 9112 §5: optional whitespace around a field value is not part of it,
/// so `Content-Length: 5 ` is 5 (httparse trims it before souk sees it).
#[test]
fn whitespace_around_a_content_length_is_not_part_of_it() {
    let app = spawn_app();
    let mut client = app.connect();
    let body = br#"{"name":"a","count":1}"#;
    client.send(
        format!(
            "POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length:   {} \t\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(body);
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    client.send(get("/test/seq/after").as_bytes());
    assert_eq!(client.read_response().json()["n"], "after");
}

// ---- heads -----------------------------------------------------------------

#[test]
fn a_request_head_over_16_kib_gets_431() {
    let app = spawn_app();
    let mut client = app.connect();
    let padding = "a".repeat(17 * 1024);
    client.send_lenient(
        format!("GET /healthz HTTP/1.1\r\nHost: test\r\nX-Padding: {padding}\r\n\r\n").as_bytes(),
    );
    let response = client.read_response();
    response.assert_error(431, "headers_too_large");
    assert!(response.closes(), "{response:?}");
}

#[test]
fn a_head_over_16_kib_that_never_ends_gets_431_without_waiting() {
    let app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(30));
    let mut client = app.connect();
    // No blank line: the server must not wait for the end of this head.
    let padding = "a".repeat(20 * 1024);
    client.send_lenient(format!("GET /healthz HTTP/1.1\r\nX-Padding: {padding}").as_bytes());
    client
        .read_response()
        .assert_error(431, "headers_too_large");
}

#[test]
fn a_head_of_many_headers_just_under_16_kib_is_served() {
    let app = spawn_app();
    let mut client = app.connect();
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: test\r\n");
    for i in 0..60 {
        request.push_str(&format!("X-H{i:02}: {}\r\n", "v".repeat(250)));
    }
    request.push_str("\r\n");
    assert!(request.len() < 16 * 1024 && request.len() > 15 * 1024);
    client.send(request.as_bytes());
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn sixty_four_headers_are_served_and_sixty_five_get_431() {
    let app = spawn_app();
    let request_with = |count: usize| {
        let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: test\r\n");
        for i in 1..count {
            request.push_str(&format!("X-Header-{i}: {i}\r\n"));
        }
        request.push_str("\r\n");
        request
    };
    let mut client = app.connect();
    client.send(request_with(64).as_bytes());
    assert_eq!(client.read_response().status, 200);
    let mut client = app.connect();
    client.send(request_with(65).as_bytes());
    let response = client.read_response();
    response.assert_error(431, "headers_too_large");
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
}

#[test]
fn a_target_over_8_kib_gets_414() {
    let app = spawn_app();
    let mut client = app.connect();
    let target = format!("/healthz?pad={}", "a".repeat(8 * 1024));
    client.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
    let response = client.read_response();
    response.assert_error(414, "uri_too_long");
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
    // 8 KiB exactly is still served.
    let target = format!("/healthz?{}", "a".repeat(8 * 1024 - "/healthz?".len()));
    assert_eq!(target.len(), 8 * 1024);
    assert_eq!(app.get(&target).status, 200);
}

#[test]
fn a_target_over_8_kib_that_never_ends_gets_414_without_waiting() {
    let app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(30));
    let mut client = app.connect();
    client.send_lenient(format!("GET /healthz?pad={}", "a".repeat(9 * 1024)).as_bytes());
    client.read_response().assert_error(414, "uri_too_long");
}

#[test]
fn garbage_bytes_get_400_and_a_close() {
    let app = spawn_app();
    let garbage: [&[u8]; 5] = [
        b"\x00\x01\x02\x03garbage\r\n\r\n",
        b"hello world\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX: \x01\x02\r\n\r\n",
    ];
    for bytes in garbage {
        let mut client = app.connect();
        client.send(bytes);
        let response = client.read_response();
        assert_eq!(
            response.status,
            400,
            "{:?}: {response:?}",
            String::from_utf8_lossy(bytes)
        );
        response.error();
        assert!(response.closes(), "{response:?}");
        client.expect_closed();
    }
    assert_healthy(&app);
}

#[test]
fn a_request_head_arriving_one_byte_at_a_time_is_answered() {
    let app = spawn_app();
    let mut client = app.connect();
    for byte in get("/test/seq/dribbled").as_bytes() {
        client.send(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(client.read_response().json()["n"], "dribbled");
}

// ---- timeouts --------------------------------------------------------------

#[test]
fn a_client_sending_half_a_head_is_cut_off_after_the_read_timeout() {
    let app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(1));
    let mut client = app.connect();
    let started = Instant::now();
    client.send(b"GET /healthz HTTP/1.1\r\nHo");
    client.expect_closed();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert_healthy(&app);
}

#[test]
fn a_client_sending_half_a_body_is_cut_off_after_the_read_timeout() {
    let app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(1));
    let mut client = app.connect();
    let started = Instant::now();
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 30\r\n\r\n{\"name\":",
    );
    client.expect_closed();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[test]
fn a_head_dribbled_slower_than_the_read_timeout_is_cut_off_though_bytes_keep_coming() {
    let app = spawn_app_with(|c| c.read_timeout = Duration::from_secs(1));
    let mut client = app.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
    let mut writer = client.stream.try_clone().expect("cloning the stream");
    let dribbler = std::thread::spawn(move || {
        use std::io::Write;
        let until = Instant::now() + CLIENT_TIMEOUT;
        while Instant::now() < until {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Closed within CLIENT_TIMEOUT, while the dribbler still has seconds to go.
    client.expect_closed();
    dribbler.join().expect("the dribbling thread");
}

#[test]
fn a_fresh_connection_that_sends_nothing_is_cut_off_after_the_read_timeout() {
    let app = spawn_app_with(|c| {
        c.read_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(30);
    });
    let mut client = app.connect();
    let waited = client.expect_closed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.read_timeout = Duration::from_secs(30);
    });
    let mut client = app.connect();
    client.send(get("/healthz").as_bytes());
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(!response.closes(), "{response:?}");
    let waited = client.expect_closed();
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
}

#[test]
fn a_keep_alive_connection_used_more_often_than_the_idle_timeout_stays_open() {
    let app = spawn_app_with(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.read_timeout = Duration::from_secs(1);
    });
    let mut client = app.connect();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        client.send(get(&format!("/test/seq/{i}")).as_bytes());
        let response = client.read_response();
        assert_eq!(response.json()["n"], i.to_string(), "request {i}");
        i += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(i >= 8);
}

// ---- keep-alive and pipelining ---------------------------------------------

#[test]
fn a_hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let app = spawn_app();
    let mut client = app.connect();
    let kinds: Vec<usize> = (0..100).map(|i| i % 3).collect();
    let mut batch = String::new();
    for (i, kind) in kinds.iter().enumerate() {
        batch.push_str(&match kind {
            0 => get(&format!("/test/seq/{i}")),
            1 => get(&format!("/nope/{i}")),
            _ => head("/healthz"),
        });
    }
    client.send(batch.as_bytes());
    for (i, kind) in kinds.iter().enumerate() {
        match kind {
            0 => {
                let response = client.read_response();
                assert_eq!(response.status, 200, "request {i}: {response:?}");
                assert_eq!(response.json()["n"], i.to_string(), "request {i}");
            }
            1 => {
                client.read_response().assert_error(404, "not_found");
            }
            _ => {
                let response = client.read_head_response();
                assert_eq!(response.status, 200, "request {i}: {response:?}");
                assert_eq!(response.header("content-length"), Some("15"));
            }
        }
    }
    // Still open and in step after all of them.
    client.send(get("/test/seq/last").as_bytes());
    assert_eq!(client.read_response().json()["n"], "last");
}

#[test]
fn pipelined_requests_larger_than_one_read_are_answered_in_order() {
    let app = spawn_app();
    let mut client = app.connect();
    let padding = "p".repeat(1000);
    let mut batch = Vec::new();
    for i in 0..100 {
        let body = format!(r#"{{"name":"{i}","count":{i},"note":"{padding}"}}"#);
        batch.extend_from_slice(&post(
            "/test/echo",
            Some("application/json"),
            body.as_bytes(),
        ));
    }
    assert!(batch.len() > 64 * 1024);
    let mut writer = client.stream.try_clone().expect("cloning the stream");
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&batch).expect("sending the batch");
    });
    for i in 0..100 {
        let response = client.read_response();
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(response.json()["name"], i.to_string());
        assert_eq!(response.json()["count"], i);
    }
    sender.join().expect("the sender thread");
}

#[test]
fn http_1_0_without_keep_alive_is_closed_after_the_response() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
}

#[test]
fn http_1_0_with_keep_alive_stays_open() {
    let app = spawn_app();
    let mut client = app.connect();
    for i in 0..3 {
        client.send(
            format!("GET /test/seq/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        );
        let response = client.read_response();
        assert_eq!(response.json()["n"], i.to_string());
        assert_eq!(
            response.header("connection").map(str::to_ascii_lowercase),
            Some("keep-alive".into()),
            "{response:?}"
        );
    }
}

#[test]
fn connection_close_on_http_1_1_is_answered_with_connection_close_and_a_close() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: Close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
}

#[test]
fn requests_pipelined_after_a_connection_close_are_not_answered() {
    let app = spawn_app();
    let mut client = app.connect();
    let mut batch = String::from("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    batch.push_str(&get("/test/seq/ignored"));
    client.send(batch.as_bytes());
    assert!(client.read_response().closes());
    client.expect_closed();
}

#[test]
fn expect_100_continue_gets_100_before_the_body_is_sent_then_the_answer() {
    let app = spawn_app();
    let mut client = app.connect();
    let body = br#"{"name":"cont","count":7}"#;
    client.send(
        format!(
            "POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = client.read_response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.body.is_empty());
    client.send(body);
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["name"], "cont");
    // The next request on the connection gets no stray 100.
    client.send(&post("/test/echo", Some("application/json"), body));
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn expect_100_continue_over_the_body_limit_gets_413_and_no_100() {
    let app = spawn_app_with(|c| c.max_body_bytes = 2048);
    let mut client = app.connect();
    client.send(
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Expect: 100-continue\r\nContent-Length: 4096\r\n\r\n",
    );
    client
        .read_response()
        .assert_error(413, "payload_too_large");
    client.expect_closed();
}

#[test]
fn head_answers_with_the_headers_of_get_and_no_body() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(get("/healthz").as_bytes());
    let got = client.read_response();
    client.send(head("/healthz").as_bytes());
    let headed = client.read_head_response();
    assert_eq!(headed.status, got.status);
    // The same headers, but for each request's own id.
    let without_id = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|(name, _)| name != "x-request-id")
            .cloned()
            .collect()
    };
    assert_eq!(without_id(&headed.headers), without_id(&got.headers));
    assert!(headed.header("x-request-id").is_some());
    assert_eq!(
        headed.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    // Had HEAD sent a body, this response would not parse.
    client.send(get("/test/seq/after-head").as_bytes());
    assert_eq!(client.read_response().json()["n"], "after-head");
}

#[test]
fn a_client_that_stops_reading_its_answers_holds_no_worker_and_is_cut_off_by_its_response_deadline()
{
    let app = spawn_app_with(|c| {
        c.workers = 1;
        c.read_timeout = Duration::from_secs(1);
    });
    // 64 MiB of answers that the client never reads. The one worker writes
    // what the socket takes and parks the rest: others are served meanwhile.
    let mut hog = app.connect();
    hog.send(get("/test/big").repeat(16).as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut client = app.connect();
    client.send(get("/healthz").as_bytes());
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "healthz waited {:?} behind a client that does not read",
        started.elapsed()
    );
    // The first answer was not written within the read timeout: the
    // connection is cut off, with far less than 64 MiB sent.
    std::thread::sleep(Duration::from_millis(1500));
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut hog.stream, &mut chunk) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the server to cut the hog off, got {e}"),
        }
    }
    assert!(
        received < 32 << 20,
        "{received} bytes sent to a client that did not read"
    );
}

// ---- the connection cap ----------------------------------------------------

#[test]
fn connections_past_the_cap_get_503_and_a_close_until_others_close() {
    let app = spawn_app_with(|c| c.max_connections = 4);
    let mut held: Vec<Client> = (0..4)
        .map(|i| {
            let mut client = app.connect();
            client.send(get(&format!("/test/seq/{i}")).as_bytes());
            assert_eq!(client.read_response().status, 200);
            client
        })
        .collect();
    let mut fifth = app.connect();
    let response = fifth.read_response();
    response.assert_error(503, "unavailable");
    assert!(response.header("retry-after").is_some(), "{response:?}");
    assert!(response.closes(), "{response:?}");
    fifth.expect_closed();
    // The held ones still work.
    for client in &mut held {
        client.send(get("/healthz").as_bytes());
        assert_eq!(client.read_response().status, 200);
    }
    drop(held);
    eventually("a slot to free up", || {
        let mut client = app.connect();
        client.send_lenient(get("/healthz").as_bytes());
        let response = client.try_read_response(false).ok()?;
        (response.status == 200).then_some(())
    });
}

// ---- handler failures and routing ------------------------------------------

#[test]
fn a_panicking_handler_gets_500_and_a_close_and_the_server_goes_on() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(get("/test/panic").as_bytes());
    let response = client.read_response();
    let error = response.assert_error(500, "internal");
    assert!(
        !error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("on purpose"),
        "the panic message leaked: {error}"
    );
    assert!(response.closes(), "{response:?}");
    client.expect_closed();
    for _ in 0..10 {
        let mut client = app.connect();
        client.send(get("/test/panic").as_bytes());
        assert_eq!(client.read_response().status, 500);
    }
    assert_healthy(&app);
}

#[test]
fn a_panic_while_starting_deferred_work_gets_500_and_no_worker_is_lost() {
    let app = spawn_app();
    // More panics than the test server's four workers: each would take its
    // worker with it if the panic escaped.
    for _ in 0..10 {
        let mut client = app.connect();
        client.send(get("/test/panic-later").as_bytes());
        let response = client.read_response();
        response.assert_error(500, "internal");
    }
    assert_healthy(&app);
}

#[test]
fn an_unknown_path_gets_404_not_found() {
    let app = spawn_app();
    app.get("/nope").assert_error(404, "not_found");
    app.get("/healthz/extra").assert_error(404, "not_found");
}

#[test]
fn a_wrong_method_gets_405_with_allow() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(&post("/healthz", Some("application/json"), b"{}"));
    let response = client.read_response();
    response.assert_error(405, "method_not_allowed");
    let allow = response.header("allow").expect("an Allow header");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "HEAD"], "{response:?}");
    client.send(b"DELETE /test/echo HTTP/1.1\r\nHost: test\r\n\r\n");
    let response = client.read_response();
    response.assert_error(405, "method_not_allowed");
    assert_eq!(response.header("allow"), Some("POST"));
    // An unknown method is refused the same way, on a connection that stays open.
    client.send(b"BREW /healthz HTTP/1.1\r\nHost: test\r\n\r\n");
    client
        .read_response()
        .assert_error(405, "method_not_allowed");
    client.send(get("/healthz").as_bytes());
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn a_literal_segment_wins_over_a_parameter_and_allow_lists_only_that_path() {
    let app = spawn_app();
    let allow_of = |request: &str| {
        let mut client = app.connect();
        client.send(request.as_bytes());
        let response = client.read_response();
        response.assert_error(405, "method_not_allowed");
        let allow = response
            .header("allow")
            .expect("an Allow header")
            .to_owned();
        let mut methods: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
        methods.sort_unstable();
        methods
    };
    // `bulk-update` is not an `{id}`: PATCH there is 405, not an id lookup.
    assert_eq!(
        allow_of("PATCH /api/v1/admin/users/bulk-update HTTP/1.1\r\nHost: t\r\n\r\n"),
        ["POST"]
    );
    // `/users/me` takes GET and PATCH; `/users/{id}`'s GET is not repeated.
    assert_eq!(
        allow_of("DELETE /api/v1/users/me HTTP/1.1\r\nHost: t\r\n\r\n"),
        ["GET", "HEAD", "PATCH"]
    );
    assert_eq!(
        allow_of("DELETE /api/v1/users/123 HTTP/1.1\r\nHost: t\r\n\r\n"),
        ["GET", "HEAD"]
    );
}

// ---- graceful shutdown -----------------------------------------------------

#[test]
fn a_request_in_flight_during_shutdown_still_gets_its_answer_with_connection_close() {
    let mut app = spawn_app();
    let mut client = app.connect();
    client.send(get("/test/gate/in-flight-at-shutdown").as_bytes());
    gate::wait_entered("in-flight-at-shutdown");
    let done = app.begin_shutdown();
    // The listener closes once the shutdown has begun.
    eventually("the listener to close", || {
        std::net::TcpStream::connect_timeout(&app.addr, Duration::from_secs(1))
            .is_err()
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        done.try_recv().is_err(),
        "shutdown returned under a request in flight: the binary would exit under it"
    );
    gate::open("in-flight-at-shutdown");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["gate"], "in-flight-at-shutdown");
    assert!(
        response.closes(),
        "the last answer says it closes: {response:?}"
    );
    client.expect_closed();
    done.recv_timeout(SHUTDOWN_TIMEOUT)
        .expect("shutdown finishes in time");
}

#[test]
fn a_request_held_in_its_handler_does_not_hold_up_other_connections() {
    let app = spawn_app_with(|c| c.workers = 2);
    let mut held = app.connect();
    held.send(get("/test/gate/held-while-others-run").as_bytes());
    gate::wait_entered("held-while-others-run");
    for i in 0..5 {
        let mut client = app.connect();
        client.send(get(&format!("/test/seq/{i}")).as_bytes());
        assert_eq!(client.read_response().json()["n"], i.to_string());
    }
    gate::open("held-while-others-run");
    assert_eq!(held.read_response().json()["gate"], "held-while-others-run");
}

#[test]
fn keep_alive_connections_of_a_worker_held_in_a_handler_are_served_by_another() {
    // Each worker owns the connections it was given; one held in a handler
    // has the connections waiting on it taken over by the other.
    let app = spawn_app_with(|c| c.workers = 2);
    let mut clients: Vec<_> = (0..6)
        .map(|_| {
            let mut client = app.connect();
            client.send(get("/healthz").as_bytes());
            assert_eq!(client.read_response().status, 200);
            client
        })
        .collect();
    let mut held = app.connect();
    held.send(get("/test/gate/held-with-keep-alive-neighbours").as_bytes());
    gate::wait_entered("held-with-keep-alive-neighbours");
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(get(&format!("/test/seq/{i}")).as_bytes());
        assert_eq!(client.read_response().json()["n"], i.to_string());
    }
    gate::open("held-with-keep-alive-neighbours");
    assert_eq!(
        held.read_response().json()["gate"],
        "held-with-keep-alive-neighbours"
    );
    // Both workers go on serving every connection afterwards.
    for client in &mut clients {
        client.send(get("/healthz").as_bytes());
        assert_eq!(client.read_response().status, 200);
    }
}

#[test]
fn shutdown_under_a_stream_of_keep_alive_requests_is_prompt_and_cuts_no_response() {
    let mut app = spawn_app();
    let clients: Vec<_> = (0..8)
        .map(|t| {
            // Connected and answered once before the shutdown begins.
            let mut client = app.connect();
            client.send(get("/healthz").as_bytes());
            assert_eq!(client.read_response().status, 200);
            std::thread::spawn(move || {
                // Immediate answers and answers after a commit (/readyz).
                let paths = ["/healthz", "/readyz"];
                let until = Instant::now() + 2 * SHUTDOWN_TIMEOUT;
                for i in t.. {
                    assert!(Instant::now() < until, "never closed");
                    client.send_lenient(get(paths[i % 2]).as_bytes());
                    match client.read_response_or_close() {
                        Some(response) => assert_eq!(response.status, 200, "{response:?}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let done = app.begin_shutdown();
    done.recv_timeout(SHUTDOWN_TIMEOUT)
        .expect("shutdown finishes in time");
    for client in clients {
        client.join().expect("a client thread");
    }
}

#[test]
fn shutdown_closes_idle_keep_alive_connections_without_waiting_for_them() {
    let mut app = spawn_app_with(|c| c.idle_timeout = Duration::from_secs(60));
    let mut client = app.connect();
    client.send(get("/healthz").as_bytes());
    assert_eq!(client.read_response().status, 200);
    let mut silent = app.connect();
    let done = app.begin_shutdown();
    done.recv_timeout(SHUTDOWN_TIMEOUT)
        .expect("shutdown finishes in time");
    client.expect_closed();
    silent.expect_closed();
}

#[test]
fn an_http_1_0_client_expecting_100_gets_no_100_only_the_answer() {
    let app = spawn_app();
    let mut client = app.connect();
    let body = br#"{"name":"old","count":1}"#;
    client.send(
        format!(
            "POST /test/echo HTTP/1.0\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // Give a wrong 100 the time to arrive before the body is sent.
    std::thread::sleep(std::time::Duration::from_millis(200));
    client.send(body);
    let response = client.read_response();
    assert_eq!(
        response.status, 200,
        "the first thing read is the answer: {response:?}"
    );
}

#[test]
fn a_request_target_in_absolute_form_is_served_as_its_path() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(b"GET http://example.test/healthz HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["status"], "ok");
}
