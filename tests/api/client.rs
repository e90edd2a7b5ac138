//! A JSON client over the raw test client, and a `World`: a running server
//! plus the way to make users, admins and money in it.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use souk::config::Config;

use crate::helpers::{Client, HttpResponse, TestApp, spawn_app_with};

/// How long a client waits for an answer that needs argon2 at the server's
/// cost (register, login, password change): tens of milliseconds with
/// optimized dependencies, but about a second per hash when argon2 is built
/// unoptimized and more on a loaded machine: past the harness's
/// `CLIENT_TIMEOUT`, and a slow hash is not what any test is about.
pub const HASHING_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a test waits for the database lock when it writes to the
/// server's database behind its back.
const DB_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server and the path of its database.
pub struct World {
    pub app: TestApp,
    pub db: PathBuf,
}

/// A user signed in: their id and session token.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub token: String,
    pub username: String,
}

pub const PASSWORD: &str = "correct horse battery";

pub fn world() -> World {
    world_with(|_| {})
}

/// Statistics are cached for 0 s here so that tests read them fresh.
pub fn world_with(tweak: impl FnOnce(&mut Config)) -> World {
    let mut db = PathBuf::new();
    let app = spawn_app_with(|config| {
        config.stats_cache_ttl = std::time::Duration::ZERO;
        // Registration and login run many argon2 hashes in tests: generous
        // per-address limits keep the rate limiters out of unrelated tests.
        config.login_rate_limit_per_minute = 10_000;
        config.registration_rate_limit_per_minute = 10_000;
        tweak(config);
        db = config.db_path.clone();
    });
    World { app, db }
}

// ---- JSON requests ---------------------------------------------------------

/// The bytes of one request with a JSON body (or none), a bearer token and
/// extra headers.
pub fn json_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// One `json_request` on `client` (keep-alive), and its answer; I/O errors
/// are returned, not panics (the server may die under it).
pub fn send_json(
    client: &mut Client,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    client
        .stream
        .write_all(&json_request(method, path, token, body, headers))?;
    client.try_read_response(method == "HEAD")
}

/// One request to `addr` on a connection of its own (usable from any thread
/// and against the real binary), answered within the harness's
/// `CLIENT_TIMEOUT`; panics unless answered.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut client = Client::connect(addr);
    send_json(&mut client, method, path, token, body, headers)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `request` with extra header lines whose values are raw bytes (non-UTF-8,
/// control characters: whatever a client may put on the wire).
pub fn request_raw_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &[u8])],
) -> HttpResponse {
    let mut bytes = json_request(method, path, token, body, &[]);
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request head")
        + 2;
    let mut lines = Vec::new();
    for (name, value) in headers {
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    bytes.splice(head_end..head_end, lines);
    let mut client = Client::connect(addr);
    client
        .stream
        .write_all(&bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    client
        .try_read_response(method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `request` with a JSON body and `HASHING_TIMEOUT` for the answer, for
/// the calls that hash a password.
pub fn hashing_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> HttpResponse {
    let mut client = Client::connect(addr);
    client
        .stream
        .set_read_timeout(Some(HASHING_TIMEOUT))
        .expect("setting a read timeout");
    send_json(&mut client, method, path, token, Some(body), &[])
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

// ---- users and sessions ------------------------------------------------------

/// `POST path` of `username` and `password` at `addr` (patient with
/// argon2); panics unless 201 (naming `what`); returns the body.
fn post_credentials(
    addr: SocketAddr,
    path: &str,
    what: &str,
    username: &str,
    password: &str,
) -> Value {
    let body = json!({"username": username, "password": password});
    let response = hashing_request(addr, "POST", path, None, &body);
    assert_eq!(
        response.status,
        201,
        "{what} {username}: {}",
        response.body_text()
    );
    response.json()
}

/// Registers `username` at `addr`; panics unless 201; returns the new id.
pub fn register_at(addr: SocketAddr, username: &str, password: &str) -> String {
    let body = post_credentials(addr, "/api/v1/users", "register", username, password);
    body["user"]["id"].as_str().expect("an id").to_owned()
}

/// Logs in at `addr`; panics unless 201.
pub fn log_in_at(addr: SocketAddr, username: &str, password: &str) -> Member {
    let body = post_credentials(addr, "/api/v1/sessions", "login of", username, password);
    Member {
        id: body["user"]["id"].as_str().expect("an id").to_owned(),
        token: body["token"].as_str().expect("a token").to_owned(),
        username: username.to_owned(),
    }
}

/// Registers `username` at `addr` and logs in.
pub fn member_at(addr: SocketAddr, username: &str, password: &str) -> Member {
    let id = register_at(addr, username, password);
    Member {
        id,
        ..log_in_at(addr, username, password)
    }
}

/// The database at `db`, opened next to the running server, with souk's id
/// functions (`souk_order_seq(id)` and the like) for finding rows by the
/// ids the API shows.
pub fn open_db(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("opening the test database");
    conn.busy_timeout(DB_BUSY_TIMEOUT).expect("busy timeout");
    souk::store::seq_ids::register(&conn).expect("the id functions");
    conn
}

/// A user with a live session, written straight into the database at `db`.
/// For tests not about registration or login (tests/api/users.rs is): each
/// argon2id hash costs seconds in an unoptimised build on a loaded machine,
/// and through the API a test's few users alone could outlast the client
/// timeout.
pub fn quick_user(db: &Path, username: &str, admin: bool) -> Member {
    let conn = open_db(db);
    let id = souk::ids::random_id().expect("a random id");
    let now = souk::clock::unix_seconds();
    let role = if admin { "admin" } else { "user" };
    conn.execute(
        "INSERT INTO users (id, username, password_hash, role, status, created_at)
         VALUES (?1, ?2, '$argon2id$v=19$m=19456,t=2,p=1$never$used', ?3, 'active', ?4)",
        rusqlite::params![id, username, role, now],
    )
    .expect("inserting a user");
    let (token, hash) = souk::accounts::sessions::new_token().expect("a session token");
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![hash.as_slice(), id, now, now + 86_400],
    )
    .expect("inserting a session");
    Member {
        id: id.to_string(),
        token,
        username: username.to_owned(),
    }
}

impl World {
    pub fn get(&self, path: &str, token: &str) -> HttpResponse {
        request(self.app.addr, "GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> HttpResponse {
        request(self.app.addr, "POST", path, token, Some(body), &[])
    }

    pub fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        request(self.app.addr, "POST", path, token, Some(body), headers)
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> HttpResponse {
        request(self.app.addr, "PATCH", path, Some(token), Some(body), &[])
    }

    pub fn delete(&self, path: &str, token: &str) -> HttpResponse {
        request(self.app.addr, "DELETE", path, Some(token), None, &[])
    }

    /// Logs in (patient with argon2); panics unless 201; returns the token.
    pub fn login(&self, username: &str, password: &str) -> String {
        log_in_at(self.app.addr, username, password).token
    }

    /// Registers `username` with `PASSWORD` and logs in (patient with argon2).
    pub fn member(&self, username: &str) -> Member {
        member_at(self.app.addr, username, PASSWORD)
    }

    /// Registers `username`, makes it an admin straight in the database (as
    /// `souk user create --admin` would), and logs in.
    pub fn admin(&self, username: &str) -> Member {
        let id = register_at(self.app.addr, username, PASSWORD);
        open_db(&self.db)
            .execute("UPDATE users SET role = 'admin' WHERE id = ?1", [&id])
            .expect("promoting");
        Member {
            id,
            ..log_in_at(self.app.addr, username, PASSWORD)
        }
    }

    /// An admin deposit; panics unless 201.
    pub fn deposit(&self, admin: &Member, user: &Member, currency: &str, amount: &str) {
        let reference = format!("dep-{}-{}", user.id, next_reference());
        let body = json!({"user_id": user.id, "currency": currency, "amount": amount, "reference": reference});
        let response = self.post("/api/v1/admin/deposits", Some(&admin.token), &body);
        assert_eq!(response.status, 201, "deposit: {}", response.body_text());
    }

    /// (available, held) of `member` in `currency`, as strings.
    pub fn balance(&self, member: &Member, currency: &str) -> (String, String) {
        let response = self.get("/api/v1/wallet", &member.token);
        assert_eq!(response.status, 200);
        let b = &response.json()["balances"][currency];
        (
            b["available"].as_str().expect("available").to_owned(),
            b["held"].as_str().expect("held").to_owned(),
        )
    }

    /// `GET /admin/check`: the list of problems (empty when all invariants hold).
    pub fn check(&self, admin: &Member) -> Vec<Value> {
        let response = self.get("/api/v1/admin/check", &admin.token);
        assert_eq!(response.status, 200);
        response.json()["problems"]
            .as_array()
            .expect("problems")
            .clone()
    }
}

fn next_reference() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
