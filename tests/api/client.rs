//! A JSON client over the raw test client, and a `World`: a running server
//! plus the way to make users, admins and money in it.

use std::path::PathBuf;

use serde_json::{Value, json};
use souk::config::Config;

use crate::helpers::{Client, HttpResponse, TestApp, spawn_app_with};

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
        // Registration and login run many argon2 hashes in tests: a generous
        // per-address limit keeps the rate limiter out of unrelated tests.
        config.login_rate_limit_per_minute = 10_000;
        tweak(config);
        db = config.db_path.clone();
    });
    World { app, db }
}

/// One request with a JSON body (or none), a bearer token and extra headers.
pub fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
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
    let mut client = Client::connect(app.addr);
    client.send(&bytes);
    if method == "HEAD" {
        client.read_head_response()
    } else {
        client.read_response()
    }
}

impl World {
    pub fn get(&self, path: &str, token: &str) -> HttpResponse {
        request(&self.app, "GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> HttpResponse {
        request(&self.app, "POST", path, token, Some(body), &[])
    }

    pub fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        request(&self.app, "POST", path, token, Some(body), headers)
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> HttpResponse {
        request(&self.app, "PATCH", path, Some(token), Some(body), &[])
    }

    pub fn delete(&self, path: &str, token: &str) -> HttpResponse {
        request(&self.app, "DELETE", path, Some(token), None, &[])
    }

    /// Logs in; panics unless 201.
    pub fn login(&self, username: &str, password: &str) -> String {
        let response = self.post(
            "/api/v1/sessions",
            None,
            &json!({"username": username, "password": password}),
        );
        assert_eq!(
            response.status,
            201,
            "login of {username}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Registers `username` with `PASSWORD` and logs in.
    pub fn member(&self, username: &str) -> Member {
        let response = self.post(
            "/api/v1/users",
            None,
            &json!({"username": username, "password": PASSWORD}),
        );
        assert_eq!(
            response.status,
            201,
            "register {username}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        let id = response.json()["user"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        Member {
            id,
            token: self.login(username, PASSWORD),
            username: username.to_owned(),
        }
    }

    /// Registers `username`, makes it an admin straight in the database (as
    /// `souk user create --admin` would), and logs in.
    pub fn admin(&self, username: &str) -> Member {
        let response = self.post(
            "/api/v1/users",
            None,
            &json!({"username": username, "password": PASSWORD}),
        );
        assert_eq!(response.status, 201);
        let id = response.json()["user"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let conn = rusqlite::Connection::open(&self.db).expect("opening the test database");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn.execute(
            "UPDATE users SET role = 'admin' WHERE username = ?1",
            [username],
        )
        .expect("promoting");
        Member {
            id,
            token: self.login(username, PASSWORD),
            username: username.to_owned(),
        }
    }

    /// An admin deposit; panics unless 201.
    pub fn deposit(&self, admin: &Member, user: &Member, currency: &str, amount: &str) {
        let reference = format!("dep-{}-{}", user.id, next_reference());
        let body = json!({"user_id": user.id, "currency": currency, "amount": amount, "reference": reference});
        let response = self.post("/api/v1/admin/deposits", Some(&admin.token), &body);
        assert_eq!(
            response.status,
            201,
            "deposit: {:?}",
            String::from_utf8_lossy(&response.body)
        );
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
