//! systemd notifications (`Type=notify`, deploy/souk.service) from the real
//! binary: READY=1 once it listens, WATCHDOG=1 every half WATCHDOG_USEC
//! while its HTTP I/O thread and its writer live, none while the writer is
//! stuck, and STOPPING=1 on SIGTERM; all sent as datagrams to the socket
//! named by NOTIFY_SOCKET, a path or an abstract `@name`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use crate::binary::{Served, souk};
use crate::helpers::{Client, TempDir, post};

/// systemd's side: the socket souk sends to, with the arrival time of
/// every message.
struct Listener {
    socket: UnixDatagram,
}

/// One notification: when it came, and its `KEY=value` lines.
struct Message {
    at: Instant,
    text: String,
}

impl Listener {
    fn bind(dir: &TempDir) -> (Listener, String) {
        let path = dir.path.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        (Listener::with(socket), path.display().to_string())
    }

    /// In the abstract namespace: `@name`.
    fn bind_abstract() -> (Listener, String) {
        let name = format!(
            "souk-test-notify-{}-{:?}",
            std::process::id(),
            Instant::now()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("binding the abstract socket");
        (Listener::with(socket), format!("@{name}"))
    }

    fn with(socket: UnixDatagram) -> Listener {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        Listener { socket }
    }

    /// Every message that arrives within `within`.
    fn read_for(&self, within: Duration) -> Vec<Message> {
        self.read_until(within, |_| false).0
    }

    /// Messages until one has the line `wanted` (it is the last) or
    /// `within` passes; and whether it came.
    fn read_until_line(&self, within: Duration, wanted: &str) -> (Vec<Message>, bool) {
        self.read_until(within, |m| m.text.lines().any(|line| line == wanted))
    }

    fn read_until(
        &self,
        within: Duration,
        stop: impl Fn(&Message) -> bool,
    ) -> (Vec<Message>, bool) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue; // the read timeout: look at the deadline again
            };
            let message = Message {
                at: Instant::now(),
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            let hit = stop(&message);
            seen.push(message);
            if hit {
                return (seen, true);
            }
        }
        (seen, false)
    }
}

fn pings(messages: &[Message]) -> Vec<Instant> {
    messages
        .iter()
        .filter(|m| m.text == "WATCHDOG=1")
        .map(|m| m.at)
        .collect()
}

fn texts(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

/// `souk` with NOTIFY_SOCKET and a watchdog of 200 ms (pings every 100 ms).
fn served_with_notify(dir: &TempDir, socket: &str) -> Served {
    let mut command = souk(dir);
    command
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "200000");
    Served::start_with(command)
}

/// READY=1 (with the address in STATUS=), watchdog pings, then SIGTERM:
/// STOPPING=1 and a clean exit.
fn ready_pings_and_stopping(listener: &Listener, mut served: Served) {
    let (seen, ready) = listener.read_until_line(Duration::from_secs(10), "READY=1");
    assert!(ready, "no READY=1: {:?}", texts(&seen));
    let ready = seen.last().expect("the READY message");
    let status = format!("STATUS=serving on http://{}", served.addr);
    assert!(ready.text.lines().any(|l| l == status), "{:?}", ready.text);
    assert!(
        pings(&seen).is_empty(),
        "a ping before READY=1: {:?}",
        texts(&seen)
    );

    let after = listener.read_for(Duration::from_secs(1));
    let count = pings(&after).len();
    assert!(count >= 2, "{count} pings in 1 s: {:?}", texts(&after));
    assert!(count <= 20, "{count} pings in 1 s, for a 200 ms watchdog");

    served.signal("-TERM");
    let (seen, stopping) = listener.read_until_line(Duration::from_secs(10), "STOPPING=1");
    assert!(stopping, "no STOPPING=1 after SIGTERM: {:?}", texts(&seen));
    let status = served.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let late = listener.read_for(Duration::from_millis(300));
    assert!(
        pings(&late).is_empty(),
        "pings after STOPPING=1: {:?}",
        texts(&late)
    );
}

#[test]
fn souk_tells_systemd_ready_pings_the_watchdog_and_tells_stopping_on_sigterm() {
    let dir = TempDir::new();
    let (listener, path) = Listener::bind(&dir);
    let served = served_with_notify(&dir, &path);
    ready_pings_and_stopping(&listener, served);
}

#[test]
fn notifications_reach_an_abstract_notify_socket_too() {
    let dir = TempDir::new();
    let (listener, name) = Listener::bind_abstract();
    let served = served_with_notify(&dir, &name);
    ready_pings_and_stopping(&listener, served);
}

#[test]
fn a_watchdog_meant_for_another_pid_gets_no_pings() {
    let dir = TempDir::new();
    let (listener, path) = Listener::bind(&dir);
    let mut command = souk(&dir);
    command
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let served = Served::start_with(command);
    let (seen, ready) = listener.read_until_line(Duration::from_secs(10), "READY=1");
    assert!(ready, "no READY=1: {:?}", texts(&seen));
    let after = listener.read_for(Duration::from_millis(700));
    assert!(pings(&after).is_empty(), "{:?}", texts(&after));
    served.stop();
}

/// The writer is made to wait the way it would in production: another
/// process holds SQLite's write lock (as a `souk user` command does for a
/// moment), and souk's writer sits in its busy timeout (5 s) until it is
/// released. No test hook in souk is involved.
#[test]
fn watchdog_pings_stop_while_the_writer_is_stuck_and_resume_after() {
    let dir = TempDir::new();
    let (listener, path) = Listener::bind(&dir);
    let served = served_with_notify(&dir, &path);
    let (seen, ready) = listener.read_until_line(Duration::from_secs(10), "READY=1");
    assert!(ready, "no READY=1: {:?}", texts(&seen));
    assert!(pings(&listener.read_for(Duration::from_millis(600))).len() >= 2);

    let lock = rusqlite::Connection::open(dir.path.join("souk.db")).expect("opening the database");
    lock.busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("taking the write lock");
    let held_at = Instant::now();
    // A registration: a password hash, then a write the writer cannot begin.
    let addr = served.addr;
    let registration = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let body = br#"{"username":"stuck_writer","password":"correct horse battery"}"#;
        client.send(&post("/api/v1/users", Some("application/json"), body));
        client.read_response().status
    });
    let during = listener.read_for(Duration::from_millis(3500));
    lock.execute_batch("ROLLBACK")
        .expect("releasing the write lock");
    let released_at = Instant::now();

    // Pings go on until the writer's heartbeat is 1 s old
    // (WATCHDOG_STALE_MS_MIN), then stop until the lock is released.
    let during_pings = pings(&during);
    let mut marks = vec![held_at];
    marks.extend(&during_pings);
    marks.push(released_at);
    let longest_gap = marks
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap >= Duration::from_millis(1500),
        "the pings never paused while the writer waited (longest gap {longest_gap:?}, \
         {} pings in 3.5 s)",
        during_pings.len()
    );

    // Generous: under load the writer first finishes the registration.
    let after = listener.read_for(Duration::from_secs(4));
    assert!(
        pings(&after).len() >= 2,
        "the pings did not resume: {:?}",
        texts(&after)
    );
    let status = registration.join().expect("the registration thread");
    assert_eq!(status, 201, "the stuck write commits once the lock is free");
    let log = served.drain_log();
    assert!(
        log.iter()
            .any(|line| line.contains("watchdog: the db-writer thread has shown no life")),
        "the withheld ping is logged, naming the thread: {log:#?}"
    );
    served.stop();
}
