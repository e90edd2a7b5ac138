//! HTTPS (docs/http.md, "TLS"): certificates made here with rcgen, a real
//! rustls client (and curl when it is installed), plain HTTP refused on the
//! TLS port, stalled handshakes cut off by the read timeout, and SIGHUP
//! reloading the pair in the real binary.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::binary::{PROCESS_TIMEOUT, Process, Served, run, souk};
use crate::helpers::{CLIENT_TIMEOUT, Client, HttpResponse, TempDir, TestApp, spawn_app_with};

// ---- certificates ------------------------------------------------------------

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for localhost and 127.0.0.1, written as
    /// `NAME.crt` and `NAME.key` in `dir`; returns the paths and the
    /// certificate.
    pub fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = KeyPair::generate().expect("a server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("writing the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("writing the key");
        (cert_path, key_path, cert.der().clone())
    }

    /// A client that trusts this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_config(&[&self.der], None)
    }
}

fn client_config(
    roots: &[&CertificateDer<'static>],
    only: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("adding a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match only {
        Some(version) => vec![version],
        None => rustls::ALL_VERSIONS.to_vec(),
    };
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .expect("protocol versions")
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// A server on HTTPS with a fresh CA and certificate; `tweak` runs last.
fn spawn_tls_app(tweak: impl FnOnce(&mut souk::config::Config)) -> (TestApp, TestCa, TempDir) {
    let dir = TempDir::new();
    let ca = TestCa::new("souk test CA");
    let (cert, key, _) = ca.issue(&dir.path, "server");
    let app = spawn_app_with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        tweak(config);
    });
    (app, ca, dir)
}

// ---- a TLS client --------------------------------------------------------------

/// One TLS connection reading one HTTP response at a time.
pub struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsClient> {
        let tcp = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
        tcp.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        tcp.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut client = TlsClient {
            stream: StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        };
        // The handshake, now: errors surface here rather than at the first read.
        while client.stream.conn.is_handshaking() {
            client.stream.conn.complete_io(&mut client.stream.sock)?;
        }
        Ok(client)
    }

    /// The server's certificate.
    pub fn server_cert(&self) -> CertificateDer<'static> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server sent a certificate")
            .clone()
            .into_owned()
    }

    pub fn protocol(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.conn.protocol_version()
    }

    /// Sends `bytes` and reads one response with its body.
    pub fn exchange(&mut self, bytes: &[u8]) -> io::Result<HttpResponse> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad head {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        self.buf.drain(..head_end);
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < length {
            self.fill()?;
        }
        let body = self.buf.drain(..length).collect();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

// ---- serving -------------------------------------------------------------------

#[test]
fn requests_over_tls_keep_alive_and_carry_bodies() {
    let (app, ca, _dir) = spawn_tls_app(|_| {});
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    for _ in 0..3 {
        let response = client
            .exchange(&get_request("/healthz"))
            .expect("GET /healthz");
        assert_eq!(response.status, 200, "{response:?}");
        assert!(!response.closes(), "keep-alive: {response:?}");
    }
    let body = br#"{"name":"over tls","count":3}"#;
    let mut post = format!(
        "POST /test/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(body);
    let echoed = client.exchange(&post).expect("POST /test/echo");
    assert_eq!(echoed.status, 200, "{echoed:?}");
    assert_eq!(echoed.json()["name"], "over tls");
    // A body larger than one TLS record and one read chunk.
    let note = "n".repeat(100_000);
    let big = format!(r#"{{"name":"big","count":1,"note":"{note}"}}"#);
    let mut post = format!(
        "POST /test/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    post.extend_from_slice(big.as_bytes());
    let echoed = client.exchange(&post).expect("a large POST");
    assert_eq!(echoed.status, 200, "{echoed:?}");
    assert_eq!(echoed.json()["note"].as_str().map(str::len), Some(100_000));
    // A large answer (/test/big) comes whole too.
    let big_answer = client
        .exchange(&get_request("/test/big"))
        .expect("GET /test/big");
    assert_eq!(big_answer.status, 200);
    assert!(
        big_answer.body.len() > 100_000,
        "{} bytes",
        big_answer.body.len()
    );
    let after = client
        .exchange(&get_request("/healthz"))
        .expect("GET after");
    assert_eq!(after.status, 200);
}

#[test]
fn pipelined_requests_over_tls_are_answered_in_order() {
    let (app, ca, _dir) = spawn_tls_app(|config| config.workers = 1);
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    let mut pipelined = Vec::new();
    for n in 0..20 {
        pipelined.extend_from_slice(&get_request(&format!("/test/seq/{n}")));
    }
    let first = client.exchange(&pipelined).expect("the first answer");
    assert_eq!(first.json()["n"], "0");
    for n in 1..20 {
        let response = client.exchange(b"").expect("a pipelined answer");
        assert_eq!(response.json()["n"], n.to_string(), "{response:?}");
    }
}

#[test]
fn requests_left_decrypted_behind_a_body_are_served_without_new_bytes() {
    // The head comes first; then, in one record, exactly the rest of the
    // body and two more requests. The body read takes only the body, so the
    // two requests wait decrypted inside rustls, where the poller cannot
    // see them: they must be served without the client sending anything.
    let (app, ca, _dir) = spawn_tls_app(|_| {});
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    let body = br#"{"name":"split","count":2}"#;
    let head = format!(
        "POST /test/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    client.stream.write_all(head.as_bytes()).expect("the head");
    client.stream.flush().expect("the head");
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = body.to_vec();
    rest.extend_from_slice(&get_request("/test/seq/1"));
    rest.extend_from_slice(&get_request("/test/seq/2"));
    let echoed = client.exchange(&rest).expect("the POST's answer");
    assert_eq!(echoed.json()["name"], "split");
    for n in 1..=2 {
        let response = client.exchange(b"").expect("a pipelined answer");
        assert_eq!(response.json()["n"], n.to_string(), "{response:?}");
    }
}

#[test]
fn tls_clients_that_never_read_do_not_delay_anyone_elses_healthz() {
    // The slow-reader rule over TLS: answers wait in the connection's
    // buffers, parked for writability, and no worker waits on a socket.
    let (app, ca, _dir) = spawn_tls_app(|config| config.workers = 2);
    let requests = get_request("/test/big").repeat(8);
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("connecting");
        client.stream.write_all(&requests).expect("pipelining");
        client.stream.flush().expect("pipelining");
        stuck.push(client);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("connecting");
        let response = client
            .exchange(&get_request("/healthz"))
            .expect("GET /healthz");
        latencies.push(started.elapsed());
        assert_eq!(response.status, 200);
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let slowest = latencies[latencies.len() - 1];
    assert!(
        median < Duration::from_millis(200) && slowest < Duration::from_secs(1),
        "healthz behind 8 TLS clients that never read: median {median:?}, slowest {slowest:?}"
    );
    drop(stuck);
}

#[test]
fn tls_1_2_and_1_3_both_work() {
    let (app, ca, _dir) = spawn_tls_app(|_| {});
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&[&ca.der], Some(version));
        let mut client = TlsClient::connect(app.addr, config).expect("a TLS connection");
        assert_eq!(client.protocol(), Some(expected));
        let response = client
            .exchange(&get_request("/healthz"))
            .expect("GET /healthz");
        assert_eq!(response.status, 200, "{response:?}");
    }
}

#[test]
fn a_client_that_does_not_trust_the_certificate_gets_nothing() {
    let (app, ca, _dir) = spawn_tls_app(|_| {});
    let stranger = TestCa::new("someone else");
    let refused = TlsClient::connect(app.addr, stranger.client_config());
    assert!(refused.is_err(), "the handshake must fail");
    // The server goes on.
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    assert_eq!(
        client.exchange(&get_request("/healthz")).unwrap().status,
        200
    );
}

#[test]
fn plain_http_to_the_tls_port_gets_no_clear_text_answer() {
    let (app, ca, _dir) = spawn_tls_app(|_| {});
    for request in [
        &get_request("/healthz")[..],
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let mut client = Client::connect(app.addr);
        client.send(request);
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match client.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the server must close the connection, got {e}"),
            }
        }
        assert!(started.elapsed() < CLIENT_TIMEOUT);
        let text = String::from_utf8_lossy(&seen);
        assert!(
            !text.contains("HTTP/") && !text.contains("healthz") && !text.contains("error"),
            "clear text came back: {text:?}"
        );
        // Not a byte: not even a TLS alert, which curl would show as an
        // HTTP/0.9 answer.
        assert!(seen.is_empty(), "bytes came back: {seen:?}");
    }
    // TLS clients are still served.
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    assert_eq!(
        client.exchange(&get_request("/healthz")).unwrap().status,
        200
    );
}

#[test]
fn stalled_handshakes_are_closed_after_the_read_timeout_and_block_no_one() {
    // Fewer workers than stalled clients: none of them may hold one.
    let (app, ca, _dir) = spawn_tls_app(|config| {
        config.workers = 2;
        config.read_timeout = Duration::from_secs(1);
    });
    let mut silent: Vec<Client> = Vec::new();
    for i in 0..8 {
        let mut client = Client::connect(app.addr);
        if i % 2 == 1 {
            // Half of them start a ClientHello record and never finish it.
            client.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        }
        silent.push(client);
    }
    let started = Instant::now();
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    let response = client
        .exchange(&get_request("/healthz"))
        .expect("GET /healthz");
    assert_eq!(response.status, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "healthz took {took:?}");
    // Each silent client is cut off once its read timeout passes.
    for mut client in silent {
        let waited = client.expect_closed();
        assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    }
}

#[test]
fn curl_speaks_https_to_souk() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("note: curl is not installed; skipping the curl check");
        return;
    }
    let (app, ca, dir) = spawn_tls_app(|_| {});
    let ca_path = dir.path.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).expect("writing the CA");
    let port = app.addr.port();
    let curl = |extra: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&ca_path)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .output()
            .expect("running curl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let url = format!("https://localhost:{port}/healthz");
    let (ok, body, err) = curl(&[&url, &url]);
    assert!(ok, "curl failed: {err}");
    assert_eq!(body.matches("ok").count(), 2, "{body}");
    let echo = format!("https://localhost:{port}/test/echo");
    let (ok, body, err) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name":"curl","count":1}"#,
        &echo,
    ]);
    assert!(ok, "curl POST failed: {err}");
    assert!(body.contains(r#""name":"curl""#), "{body}");
}

// ---- configuration and SIGHUP in the real binary ----------------------------

/// `souk` with `SOUK_TLS_CERT`/`SOUK_TLS_KEY` set to these files.
fn souk_tls(dir: &TempDir, cert: &Path, key: &Path) -> std::process::Command {
    let mut command = souk(dir);
    command.env("SOUK_TLS_CERT", cert).env("SOUK_TLS_KEY", key);
    command
}

#[test]
fn one_tls_variable_alone_or_a_bad_file_stops_the_start() {
    let dir = TempDir::new();
    let ca = TestCa::new("souk test CA");
    let (cert, key, _) = ca.issue(&dir.path, "server");
    let mut only_cert = souk(&dir);
    only_cert
        .env("SOUK_TLS_CERT", &cert)
        .env_remove("SOUK_TLS_KEY");
    let (status, _, err) = run(only_cert);
    assert!(!status.success());
    assert!(err.contains("SOUK_TLS_KEY"), "{err}");
    let mut only_key = souk(&dir);
    only_key
        .env("SOUK_TLS_KEY", &key)
        .env_remove("SOUK_TLS_CERT");
    let (status, _, err) = run(only_key);
    assert!(!status.success());
    assert!(err.contains("SOUK_TLS_CERT"), "{err}");
    // A key that is not a key; a key of another certificate; no file.
    let garbage = dir.path.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let (_, other_key, _) = ca.issue(&dir.path, "other");
    let missing = dir.path.join("missing.crt");
    for (cert_file, key_file, named) in [
        (&cert, &garbage, &garbage),
        (&cert, &other_key, &other_key),
        (&missing, &key, &missing),
        (&garbage, &key, &garbage),
    ] {
        let (status, _, err) = run(souk_tls(&dir, cert_file, key_file));
        assert!(!status.success(), "{cert_file:?} {key_file:?}");
        let name = named.display().to_string();
        assert!(err.contains(&name), "the error must name {name}: {err}");
    }
}

/// Starts the real binary on HTTPS and waits for `listening on https://ADDR`.
fn start_https(command: std::process::Command) -> (Process, SocketAddr) {
    let process = Process::spawn(command);
    let marker = "listening on https://";
    let (seen, found) = process.read_log_until(PROCESS_TIMEOUT, |line| line.contains(marker));
    let addr = seen
        .last()
        .filter(|_| found)
        .and_then(|line| line.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no `{marker}ADDR` in the log: {seen:#?}"));
    (process, addr)
}

/// Replaces the files at `cert`/`key` with those at `new_cert`/`new_key`.
fn replace_pair(cert: &Path, key: &Path, new_cert: &Path, new_key: &Path) {
    std::fs::copy(new_cert, cert).expect("copying the certificate");
    std::fs::copy(new_key, key).expect("copying the key");
}

#[test]
fn sighup_serves_a_new_valid_pair_to_new_connections() {
    let dir = TempDir::new();
    let ca = TestCa::new("souk test CA");
    let (cert, key, first) = ca.issue(&dir.path, "live");
    let (new_cert, new_key, second) = ca.issue(&dir.path, "next");
    let (process, addr) = start_https(souk_tls(&dir, &cert, &key));
    let mut open = TlsClient::connect(addr, ca.client_config()).expect("a TLS connection");
    assert_eq!(open.server_cert(), first);
    replace_pair(&cert, &key, &new_cert, &new_key);
    process.signal("-HUP");
    let (seen, reloaded) = process.read_log_until(PROCESS_TIMEOUT, |line| {
        line.contains("TLS certificate reloaded")
    });
    assert!(reloaded, "no reload logged: {seen:#?}");
    let fresh = TlsClient::connect(addr, ca.client_config()).expect("a new TLS connection");
    assert_eq!(
        fresh.server_cert(),
        second,
        "a new connection gets the new certificate"
    );
    // The connection opened before goes on.
    let response = open
        .exchange(&get_request("/healthz"))
        .expect("the old connection");
    assert_eq!(response.status, 200);
    process.stop();
}

#[test]
fn sighup_with_a_broken_pair_keeps_the_old_one() {
    let dir = TempDir::new();
    let ca = TestCa::new("souk test CA");
    let (cert, key, first) = ca.issue(&dir.path, "live");
    let (_, other_key, _) = ca.issue(&dir.path, "other");
    let (process, addr) = start_https(souk_tls(&dir, &cert, &key));
    // A key that does not fit the certificate.
    std::fs::copy(&other_key, &key).expect("copying a wrong key");
    process.signal("-HUP");
    let (seen, failed) =
        process.read_log_until(PROCESS_TIMEOUT, |line| line.contains("TLS reload failed"));
    assert!(failed, "no failed reload logged: {seen:#?}");
    let line = seen.last().cloned().unwrap_or_default();
    assert!(
        line.contains(&key.display().to_string()),
        "the error names the file: {line}"
    );
    let mut client = TlsClient::connect(addr, ca.client_config()).expect("a TLS connection");
    assert_eq!(client.server_cert(), first, "the old pair is still served");
    assert_eq!(
        client.exchange(&get_request("/healthz")).unwrap().status,
        200
    );
    // A file that is not PEM at all, then a missing file: the same.
    std::fs::write(&cert, "garbage").unwrap();
    process.signal("-HUP");
    let (_, failed) = process.read_log_until(PROCESS_TIMEOUT, |line| {
        line.contains("TLS reload failed") && line.contains(&cert.display().to_string())
    });
    assert!(failed);
    std::fs::remove_file(&cert).unwrap();
    process.signal("-HUP");
    let (_, failed) = process.read_log_until(PROCESS_TIMEOUT, |line| {
        line.contains("TLS reload failed") && line.contains(&cert.display().to_string())
    });
    assert!(failed);
    let client = TlsClient::connect(addr, ca.client_config()).expect("a TLS connection");
    assert_eq!(client.server_cert(), first);
    process.stop();
}

#[test]
fn sighup_without_tls_keeps_serving() {
    let dir = TempDir::new();
    let served = Served::start(&dir);
    served.signal("-HUP");
    let (seen, logged) =
        served.read_log_until(PROCESS_TIMEOUT, |line| line.contains("nothing to reload"));
    assert!(logged, "{seen:#?}");
    let response = crate::client::request(served.addr, "GET", "/healthz", None, None, &[]);
    assert_eq!(response.status, 200);
    served.stop();
}

// ---- closing and failing -------------------------------------------------------

#[test]
fn a_close_notify_without_a_fin_closes_the_connection_at_once() {
    // The idle timeout is long: only the close_notify can end this quickly.
    let (app, ca, _dir) = spawn_tls_app(|config| config.idle_timeout = Duration::from_secs(60));
    let mut client = TlsClient::connect(app.addr, ca.client_config()).expect("a TLS connection");
    // The request and the close_notify in one write, so the server decrypts
    // both in one read and the poller has nothing more to report; the TCP
    // write side stays open (no FIN).
    let conn = &mut client.stream.conn;
    conn.writer()
        .write_all(&get_request("/healthz"))
        .expect("the request");
    conn.send_close_notify();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).expect("encrypting");
    }
    client.stream.sock.write_all(&wire).expect("sending");
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "expected the answer and the server's close_notify, got {e} after {:?}",
                started.elapsed()
            ),
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}

#[test]
fn a_peer_that_speaks_tls_but_fails_the_handshake_gets_an_alert() {
    let (app, _ca, _dir) = spawn_tls_app(|_| {});
    let mut client = Client::connect(app.addr);
    // A handshake record whose ClientHello is one byte of garbage.
    client.send(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0xff]);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server must close the connection, got {e}"),
        }
    }
    // An alert record (content type 21).
    assert_eq!(seen.first(), Some(&0x15), "{seen:?}");
}

#[test]
fn a_bad_tls_pair_stops_the_start_before_the_database_is_created() {
    let dir = TempDir::new();
    let ca = TestCa::new("souk test CA");
    let (cert, _, _) = ca.issue(&dir.path, "server");
    let typo = dir.path.join("server.kye");
    let (status, _, err) = run(souk_tls(&dir, &cert, &typo));
    assert!(!status.success());
    assert!(err.contains("server.kye"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&dir.path)
        .expect("the directory")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("souk.db"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
