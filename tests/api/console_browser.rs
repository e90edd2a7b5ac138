//! The admin console in a real headless browser (Debian's chromium), driven
//! over the DevTools protocol by a small client below: a wrong password is
//! refused with the server's message; a non-admin is refused and their
//! session ended; an admin signs in through the form,
//! sees the overview's counter move under load, finds and suspends a user
//! (whose token then gets 401), sees every disputed order with its
//! messages (loaded at most four at once), resolves one with a split
//! (balances over the API are then right), closes a listing, reads the
//! fees and runs the ledger check, signs out (the token then gets 401 and
//! nothing is left on screen), is sent back to the sign-in form when the
//! session ends behind the page's back, and is refused (session ended)
//! once the admin role is taken away. Markup typed by users (a display
//! name, a listing title, a dispute reason, a message) shows as text and
//! never becomes elements. No script error, dialog or policy violation may
//! be logged. Screenshots of each screen go to
//! `target/console-screenshots/` for a person to look at.
//!
//! CI installs chromium (`.ci/run`, which sets `CI`); without chromium (on
//! PATH or in /usr/bin) this test is skipped locally and fails under CI.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::client::{
    Member, PASSWORD, World, hashing_request, open_db, quick_user, request, world_with,
};
use crate::helpers::TempDir;

/// How long one wait for the page may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);
/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium on PATH (as `.ci/run` finds it), else Debian's or Ubuntu's path.
fn chromium() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
            .collect::<Vec<_>>()
    });
    on_path
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|path| path.is_file())
}

/// The DevTools endpoint chromium prints on stderr; the rest of stderr is
/// drained so that chromium never blocks on a full pipe.
fn devtools_endpoint(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("chromium's stderr");
    let (found, endpoint) = mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://")
                && line.contains("DevTools listening on")
                && let Some(found) = found.take()
            {
                let _ = found.send(line[at..].trim().to_owned());
            }
        }
    });
    endpoint
        .recv_timeout(WAIT)
        .expect("chromium printed its DevTools endpoint")
}

/// A headless chromium and one page of it, attached over the DevTools
/// protocol (a flat session on the browser's WebSocket).
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Script exceptions, console errors and policy violations seen so far.
    problems: Vec<String>,
    _profile: TempDir,
}

impl Browser {
    fn launch(path: &std::path::Path) -> Browser {
        let profile = TempDir::new();
        let mut child = Command::new(path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let url = devtools_endpoint(&mut child);
        let (socket, _) = tungstenite::connect(url.as_str()).expect("connecting to DevTools");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("a read timeout");
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
            _profile: profile,
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].clone();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A command to the page; panics on a protocol error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .expect("sending to DevTools");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "DevTools did not answer {method}"
            );
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text.as_str().to_owned(),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("reading from DevTools: {e}"),
            };
            let answer: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if answer["id"] == json!(id) {
                assert!(
                    answer.get("error").is_none(),
                    "{method} failed: {}",
                    answer["error"]
                );
                return answer["result"].clone();
            }
            self.note_event(&answer);
        }
    }

    /// Keeps what would be a problem on a real operator's screen.
    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Page.javascriptDialogOpening") => {
                self.problems.push(format!("dialog: {params}"));
            }
            Some("Runtime.exceptionThrown") => self
                .problems
                .push(format!("exception: {}", params["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.problems
                    .push(format!("console.error: {}", params["args"]));
            }
            // Network refusals (the 401 a test provokes) are expected; a
            // policy violation or a script error is not.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                self.problems.push(format!("log: {}", params["entry"]));
            }
            _ => {}
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The value of a JavaScript expression (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "`{expression}` threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; its value. Fails with `what`
    /// and what the page says after WAIT.
    fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.eval("document.body.innerText");
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&mut self, id: &str) -> String {
        self.eval(&format!("document.getElementById({id:?}).textContent"))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn visible(&mut self, id: &str) -> bool {
        self.eval(&format!(
            "(() => {{ const e = document.getElementById({id:?}); return !!e && e.getClientRects().length > 0; }})()"
        )) == json!(true)
    }

    /// Types `value` into a field as a person would: the page sees an
    /// `input` event.
    fn fill(&mut self, selector: &str, value: &str) {
        self.eval(&format!(
            "(() => {{ const field = document.querySelector({selector:?}); \
             field.value = {value:?}; \
             field.dispatchEvent(new Event('input', {{ bubbles: true }})); }})()"
        ));
    }

    fn click(&mut self, selector: &str) {
        self.eval(&format!("document.querySelector({selector:?}).click()"));
    }

    fn submit(&mut self, selector: &str) {
        self.eval(&format!(
            "document.querySelector({selector:?}).requestSubmit()"
        ));
    }

    /// A PNG of the page as it is, under target/console-screenshots/.
    /// Fills the sign-in form and sends it.
    fn sign_in(&mut self, username: &str, password: &str) {
        self.fill("#signin-username", username);
        self.fill("#signin-password", password);
        self.submit("#signin-form");
    }

    /// Signs `username` (an admin) in, waits for the overview, and returns
    /// the page's token.
    fn sign_in_admin(&mut self, username: &str, what: &str) -> String {
        self.sign_in(username, PASSWORD);
        self.wait_for(
            what,
            "document.getElementById('t-total').textContent !== '–'",
        );
        self.eval("sessionStorage.getItem('souk.admin.token')")
            .as_str()
            .expect("a token in sessionStorage")
            .to_owned()
    }

    fn screenshot(&mut self, name: &str) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("a screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("writing a screenshot");
    }
}

/// How long chromium may take to close itself (all its processes) after
/// `Browser.close` before it is killed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Drop for Browser {
    /// `Browser.close` over DevTools first, so chromium ends its helper
    /// processes itself; a kill of the main process only if it lingers.
    /// The profile folder is removed after (the field drops last).
    fn drop(&mut self) {
        self.next_id += 1;
        let close = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        let _ = self.socket.send(Message::Text(close.to_string().into()));
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/console-screenshots`, found from the test binary
/// (`target/debug/deps/api-…`), wherever the target folder is.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("console-screenshots")
}

fn sessions_of(w: &World, user_id: &str) -> i64 {
    open_db(&w.db)
        .query_row(
            "SELECT count(*) FROM sessions WHERE user_id = ?1",
            [user_id],
            |row| row.get(0),
        )
        .expect("counting sessions")
}

fn status(w: &World, method: &str, path: &str, token: &str) -> u16 {
    request(w.app.addr, method, path, Some(token), None, &[]).status
}

/// Disputed orders besides the seeded one: more than the page loads
/// messages for at once (4).
const OTHER_DISPUTES: usize = 6;

/// `count` more disputed orders between two other users (one listing),
/// their ids.
/// `buyer` orders one of `listing`; the order's id.
fn place_order(w: &World, buyer: &Member, listing: &Value) -> String {
    let order = w.post(
        "/api/v1/orders",
        Some(&buyer.token),
        &json!({"listing": listing}),
    );
    assert_eq!(order.status, 201, "{}", order.summary());
    order.json()["order"]["id"]
        .as_str()
        .expect("an order id")
        .to_owned()
}

fn seed_more_disputes(w: &World, admin: &Member, count: usize) -> Vec<String> {
    let buyer = quick_user(&w.db, "buyer_two", false);
    let seller = quick_user(&w.db, "seller_two", false);
    w.deposit(admin, &buyer, "btc", "1");
    let listing = w.post(
        "/api/v1/listings",
        Some(&seller.token),
        &json!({"title": "Spare part", "currency": "btc", "price": "0.01", "quantity": 20}),
    );
    assert_eq!(listing.status, 201, "{}", listing.summary());
    let listing = listing.json()["listing"]["id"].clone();
    (0..count)
        .map(|_| {
            let id = place_order(w, &buyer, &listing);
            let disputed = w.post(
                &format!("/api/v1/orders/{id}/dispute"),
                Some(&buyer.token),
                &json!({"reason": "not as described"}),
            );
            assert_eq!(disputed.status, 200, "{}", disputed.summary());
            id
        })
        .collect()
}

/// Wraps the page's `fetch` to keep the most message lists ever loading at
/// once in `window.peakMessageLoads`.
const COUNT_MESSAGE_LOADS: &str = "(() => {
    const real = window.fetch;
    let now = 0;
    window.peakMessageLoads = 0;
    window.fetch = (url, init) => {
        if (!String(url).includes('/messages')) return real(url, init);
        now += 1;
        window.peakMessageLoads = Math.max(window.peakMessageLoads, now);
        return real(url, init).finally(() => { now -= 1; });
    };
    return true;
})()";

/// Markup a hostile user might type: shown as text, it does nothing; parsed
/// as HTML, it would make an `img[src=x]` and call `alert`.
const HOSTILE: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

/// True on the page when no hostile text became markup: no `img[src=x]`,
/// and no script but the console's own.
const NO_MARKUP: &str = "document.querySelectorAll('img').length === 0 && document.querySelectorAll('script').length === 1";

/// A disputed order (seller ships, buyer disputes, both write), its id.
/// The listing's title, the reason and a message carry `HOSTILE`.
fn seed_dispute(w: &World, admin: &Member, buyer: &Member, seller: &Member) -> String {
    w.deposit(admin, buyer, "btc", "1");
    let listing = w.post(
        "/api/v1/listings",
        Some(&seller.token),
        &json!({"title": format!("Brass lamp {HOSTILE}"), "description": "Polished.", "currency": "btc", "price": "0.1", "quantity": 5}),
    );
    assert_eq!(listing.status, 201, "{}", listing.summary());
    let listing = listing.json()["listing"]["id"].clone();
    let id = place_order(w, buyer, &listing);
    let moves = [
        (seller, "ship", json!({"tracking": "TRACK-1"})),
        (
            buyer,
            "dispute",
            json!({"reason": format!("The lamp arrived dented. {HOSTILE}")}),
        ),
    ];
    for (who, action, body) in moves {
        let response = w.post(
            &format!("/api/v1/orders/{id}/{action}"),
            Some(&who.token),
            &body,
        );
        assert_eq!(response.status, 200, "{action}: {}", response.summary());
    }
    for (who, text) in [
        (
            buyer,
            format!("It is dented on one side, photos sent. {HOSTILE}"),
        ),
        (seller, "It left here in perfect shape.".to_owned()),
    ] {
        let response = w.post(
            &format!("/api/v1/orders/{id}/messages"),
            Some(&who.token),
            &json!({"body": text}),
        );
        assert_eq!(response.status, 201, "message: {}", response.summary());
    }
    id
}

/// The world the browser test works on: its users and the disputes seeded
/// for the admin to find.
struct Scene {
    w: World,
    admin: Member,
    /// A member who is not an admin.
    outsider: Member,
    /// A member whose display name is markup.
    mallory: Member,
    buyer: Member,
    seller: Member,
    /// The disputed order the admin resolves.
    order: String,
    /// More disputed orders, each with messages.
    others: Vec<String>,
}

impl Scene {
    fn new() -> Scene {
        let w = world_with(|config| {
            config.fee_bps = 500;
            config.max_login_attempts = 2;
        });
        let admin = w.admin("console_admin");
        let outsider = w.member("not_an_admin");
        let mallory = quick_user(&w.db, "mallory", false);
        let named = w.patch(
            "/api/v1/users/me",
            &mallory.token,
            &json!({"display_name": HOSTILE}),
        );
        assert_eq!(named.status, 200, "{}", named.summary());
        let buyer = quick_user(&w.db, "buyer", false);
        let seller = quick_user(&w.db, "seller", false);
        let order = seed_dispute(&w, &admin, &buyer, &seller);
        let others = seed_more_disputes(&w, &admin, OTHER_DISPUTES);
        Scene {
            w,
            admin,
            outsider,
            mallory,
            buyer,
            seller,
            order,
            others,
        }
    }
}

#[test]
fn an_admin_runs_the_marketplace_from_the_console_in_a_real_browser() {
    let Some(path) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (see .ci/run)"
        );
        eprintln!("skipped: no chromium on this machine");
        return;
    };
    let s = Scene::new();
    let mut b = Browser::launch(&path);
    b.navigate(&format!("http://{}/admin", s.w.app.addr));
    refusals_at_sign_in(&mut b, &s);
    a_failed_session_end_is_said(&mut b, &s);

    // The admin signs in.
    let token = b.sign_in_admin("console_admin", "the overview");
    assert!(b.visible("console") && !b.visible("signin"));
    the_overview_moves_under_load(&mut b, &s);
    suspend_a_user(&mut b, &s);
    lift_a_lockout(&mut b, &s);
    disputes_show_with_their_messages(&mut b, &s);
    resolve_a_dispute(&mut b, &s);
    close_a_listing(&mut b);
    fees_and_the_ledger_check(&mut b, &s);
    signing_out_leaves_nothing(&mut b, &s, &token);
    a_session_ended_elsewhere_returns_to_the_form(&mut b, &s);
    a_demoted_admin_is_refused(&mut b, &s);

    assert!(
        b.problems.is_empty(),
        "the browser reported: {:#?}",
        b.problems
    );
}

/// Polls until `token` gets 401 from `GET /users/me`; fails with `what`
/// after WAIT.
fn wait_until_refused(w: &World, token: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while status(w, "GET", "/api/v1/users/me", token) != 401 {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Only the form shows at first; a wrong password and a non-admin are refused.
fn refusals_at_sign_in(b: &mut Browser, s: &Scene) {
    let Scene { w, outsider, .. } = s;
    b.wait_for(
        "the sign-in form",
        "document.readyState === 'complete' && !!document.getElementById('signin-form')",
    );
    assert!(
        b.visible("signin") && !b.visible("console"),
        "only the form shows at first"
    );
    b.screenshot("1-sign-in");

    // A wrong password is refused with the server's message, and the form
    // can be used again.
    b.sign_in("console_admin", "not the password");
    b.wait_for(
        "the wrong password's refusal",
        "document.getElementById('signin-message').textContent.includes('invalid_credentials')",
    );
    assert!(b.visible("signin-message") && !b.visible("console"));
    assert_eq!(
        b.eval("document.getElementById('signin-submit').disabled"),
        json!(false)
    );
    assert_eq!(b.eval("sessionStorage.length"), json!(0));
    b.screenshot("1b-wrong-password");

    // A non-admin is refused, and the session the page made is ended.
    b.sign_in("not_an_admin", PASSWORD);
    b.wait_for(
        "the refusal",
        "document.getElementById('signin-message').textContent.includes('not an administrator')",
    );
    assert!(!b.visible("console") && !b.visible("tabs"));
    assert_eq!(b.eval("sessionStorage.length"), json!(0));
    assert_eq!(
        sessions_of(w, &outsider.id),
        1,
        "only the test's own session is left"
    );
    b.screenshot("2-refused");
}

/// When ending the refused session fails, the page says so.
fn a_failed_session_end_is_said(b: &mut Browser, s: &Scene) {
    let Scene { w, outsider, .. } = s;
    // When ending that session fails (here the network refuses the
    // DELETE), the page says so instead of claiming it was ended.
    b.eval(
        "window.realFetch = window.fetch; window.fetch = (url, init) => \
         init && init.method === 'DELETE' ? Promise.reject(new TypeError('offline')) : window.realFetch(url, init)",
    );
    b.sign_in("not_an_admin", PASSWORD);
    let said = b.wait_for(
        "the failed ending",
        "document.getElementById('signin-message').textContent.includes('Ending the session failed') && document.getElementById('signin-message').textContent",
    );
    assert!(
        !said.as_str().unwrap_or_default().contains("was ended"),
        "{said}"
    );
    b.eval("window.fetch = window.realFetch; true");
    assert_eq!(
        sessions_of(w, &outsider.id),
        2,
        "that session is still there"
    );
}

/// The overview: the request counter, the charts and their tooltip.
fn the_overview_moves_under_load(b: &mut Browser, s: &Scene) {
    let Scene { w, mallory, .. } = s;
    // The request counter moves under load.
    let before: u64 = b.text("t-total").parse().expect("a count");
    for _ in 0..40 {
        assert_eq!(status(w, "GET", "/api/v1/users/me", &mallory.token), 200);
    }
    let moved = format!(
        "Number(document.getElementById('t-total').textContent) >= {}",
        before + 40
    );
    b.wait_for("the counter to count the load", &moved);
    // The chart code says how many points it drew (the server's series
    // has one a second: a few after a few seconds).
    b.wait_for(
        "charts with points",
        "['c-rate', 'c-latency', 'c-errors'].every((id) => Number(document.getElementById(id).dataset.points) >= 2)",
    );
    // The pointer over a chart shows the time and values with their unit.
    let at = b.eval(
        "(() => { const r = document.getElementById('c-latency').getBoundingClientRect(); return [r.left + r.width * 0.9, r.top + r.height / 2]; })()",
    );
    b.call(
        "Input.dispatchMouseEvent",
        json!({"type": "mouseMoved", "x": at[0], "y": at[1]}),
    );
    let tip = b.wait_for(
        "the values under the pointer",
        "!document.getElementById('tooltip').hidden && document.getElementById('tooltip').textContent",
    );
    let tip = tip.as_str().unwrap_or_default();
    assert!(
        tip.contains("p50: ") && tip.contains("p99: ") && tip.contains(" ms"),
        "{tip}"
    );
    b.screenshot("3-overview");
}

/// Searches the users tab for `query` and opens user `id` from the
/// results; the selector of that user's row.
fn open_user(b: &mut Browser, query: &str, id: &str) -> String {
    b.fill("#user-q", query);
    b.submit("#user-search");
    let row = format!("tr[data-user-id=\"{id}\"]");
    b.wait_for(
        "the search result",
        &format!("!!document.querySelector('{row}')"),
    );
    b.click(&row);
    row
}

/// Users: search, open, suspend.
fn suspend_a_user(b: &mut Browser, s: &Scene) {
    let Scene { w, mallory, .. } = s;
    // Users: search, open, suspend; the user's token is refused afterwards.
    b.click("#tabs button[data-tab=users]");
    let row = open_user(b, "mall", &mallory.id);
    b.wait_for("the user's page", "document.getElementById('ud-status') && document.getElementById('ud-status').textContent === 'active'");
    assert_eq!(b.text("ud-title"), format!("mallory ({HOSTILE})"));
    let listed = b.eval(&format!("document.querySelector('{row}').textContent"));
    assert!(
        listed.as_str().unwrap_or_default().contains(HOSTILE),
        "{listed}"
    );
    assert_eq!(
        b.eval(NO_MARKUP),
        json!(true),
        "the display name became markup"
    );
    assert_eq!(b.text("ud-locked-until"), "not locked out");
    b.click("#ud-suspend");
    b.wait_for(
        "the suspension",
        "document.getElementById('ud-status').textContent === 'suspended'",
    );
    assert_eq!(status(w, "GET", "/api/v1/users/me", &mallory.token), 401);
    b.screenshot("4-user-suspended");
}

/// A locked-out user.
fn lift_a_lockout(b: &mut Browser, s: &Scene) {
    let Scene { w, outsider, .. } = s;
    // A locked-out user: the page shows until when, and lifts it.
    let login = |password: &str| {
        hashing_request(
            w.app.addr,
            "POST",
            "/api/v1/sessions",
            None,
            &json!({"username": "not_an_admin", "password": password}),
        )
        .status
    };
    assert_eq!((login("wrong one 1"), login("wrong one 2")), (401, 401));
    assert_eq!(login(PASSWORD), 429);
    open_user(b, "not_an", &outsider.id);
    b.wait_for(
        "the lockout",
        "document.getElementById('ud-title').textContent === 'not_an_admin' && document.getElementById('ud-locked-until').textContent !== 'not locked out'",
    );
    b.screenshot("4b-user-locked-out");
    b.click("#ud-unlock");
    b.wait_for(
        "the lockout lifted",
        "document.getElementById('ud-locked-until').textContent === 'not locked out' && document.getElementById('ud-message').textContent.includes('done')",
    );
    assert_eq!(login(PASSWORD), 201);
}

/// Disputes: every disputed order shows with its messages.
fn disputes_show_with_their_messages(b: &mut Browser, s: &Scene) {
    let Scene { order, others, .. } = s;
    b.eval(COUNT_MESSAGE_LOADS);
    b.click("#tabs button[data-tab=disputes]");
    let card = format!("div.card[data-kind=order][data-id=\"{order}\"]");
    b.wait_for(
        "the disputed order",
        &format!("!!document.querySelector('{card}')"),
    );
    // Every disputed order shows with its messages, loaded a few at a time.
    for id in others {
        let other = format!("div.card[data-kind=order][data-id=\"{id}\"] .messages");
        assert_eq!(
            b.eval(&format!("!!document.querySelector('{other}')")),
            json!(true),
            "order {id}"
        );
    }
    let peak = b.eval("window.peakMessageLoads");
    assert!(
        (1..=4).contains(&peak.as_u64().unwrap_or(0)),
        "message lists loading at once: {peak}"
    );
    let card_text = b.eval(&format!("document.querySelector('{card}').textContent"));
    let card_text = card_text.as_str().unwrap_or_default();
    assert!(
        card_text.contains("dented on one side") && card_text.contains("perfect shape"),
        "{card_text}"
    );
    // The title, the reason and the message show the markup as text.
    assert_eq!(card_text.matches(HOSTILE).count(), 3, "{card_text}");
    assert_eq!(b.eval(NO_MARKUP), json!(true), "a dispute became markup");
}

/// Disputes: a split that does not add up is stopped on the page; the right one resolves the order.
fn resolve_a_dispute(b: &mut Browser, s: &Scene) {
    let Scene {
        w,
        admin,
        buyer,
        seller,
        order,
        ..
    } = s;
    let card = format!("div.card[data-kind=order][data-id=\"{order}\"]");
    b.fill(&format!("{card} .to-seller"), "0.06");
    b.fill(&format!("{card} .to-buyer"), "0.05");
    b.submit(&format!("{card} form"));
    b.wait_for(
        "the sum check",
        &format!("document.querySelector('{card} .message').textContent.includes('add up')"),
    );
    b.fill(&format!("{card} .to-buyer"), "0.04");
    // Editing a part clears the refusal about the old parts.
    b.wait_for(
        "the refusal cleared",
        &format!("document.querySelector('{card} .message').textContent === ''"),
    );
    b.screenshot("5-dispute");
    b.submit(&format!("{card} form"));
    b.wait_for(
        "the resolution",
        "document.getElementById('disputes-message').textContent.includes('resolved')",
    );
    let resolved = w
        .get(&format!("/api/v1/orders/{order}"), &admin.token)
        .json()["order"]
        .clone();
    assert_eq!(resolved["state"], "resolved");
    // Buyer: 1 - 0.1 + 0.04; seller: 0.06 less the fee taken from it.
    assert_eq!(w.balance(buyer, "btc").0, "0.94000000");
    let fee = resolved["fee"].as_str().expect("a fee");
    assert_eq!(fee, "0.00300000", "5 % of the seller's part");
    assert_eq!(w.balance(seller, "btc").0, "0.05700000");
    assert!(w.check(admin).is_empty());
}

/// Listings: find and close one.
fn close_a_listing(b: &mut Browser) {
    // Listings: find and close one.
    b.click("#tabs button[data-tab=listings]");
    b.fill("#listing-q", "brass");
    b.submit("#listing-search");
    b.wait_for(
        "the listing",
        "document.querySelectorAll('#listing-results tr').length === 1",
    );
    let listed = b.text("listing-results");
    assert!(listed.contains(HOSTILE), "{listed}");
    assert_eq!(b.eval(NO_MARKUP), json!(true), "a title became markup");
    b.click("#listing-results tr button");
    b.wait_for(
        "the closed listing",
        "document.getElementById('listings-message').textContent.includes('closed')",
    );
    b.screenshot("6-listings");
}

/// Fees (a refusal, a withdrawal) and the ledger check.
fn fees_and_the_ledger_check(b: &mut Browser, s: &Scene) {
    let Scene { w, admin, .. } = s;
    // Fees and the ledger check.
    b.click("#tabs button[data-tab=fees]");
    b.wait_for(
        "the fee balances",
        "document.getElementById('fee-balances').textContent.includes('0.00300000')",
    );
    // A refusal shows the server's own message; a withdrawal goes through.
    b.fill("#fw-amount", "1");
    b.fill("#fw-reference", "payout-1");
    b.submit("#fee-withdraw");
    let refused = b.wait_for(
        "the refusal",
        "document.getElementById('fees-message').textContent.startsWith('Refused: ') && document.getElementById('fees-message').textContent",
    );
    let direct = w.post(
        "/api/v1/admin/fees/withdrawals",
        Some(&admin.token),
        &json!({"currency": "btc", "amount": "1", "reference": "payout-1"}),
    );
    let message = direct.error()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !message.is_empty() && refused.as_str().unwrap_or_default().contains(&message),
        "{refused} vs {message}"
    );
    b.fill("#fw-amount", "0.001");
    b.submit("#fee-withdraw");
    b.wait_for(
        "the withdrawal",
        "document.getElementById('fee-balances').textContent.includes('0.00200000')",
    );
    b.screenshot("7-fees");
    b.click("#tabs button[data-tab=ledger]");
    b.click("#ledger-run");
    b.wait_for(
        "the check",
        "document.getElementById('ledger-result').textContent.includes('All invariants hold')",
    );
    b.screenshot("8-ledger");
}

/// Signing out ends the session and leaves nothing on screen.
fn signing_out_leaves_nothing(b: &mut Browser, s: &Scene, token: &str) {
    let Scene { w, .. } = s;
    // Signing out ends the session and leaves nothing on screen.
    b.click("#sign-out");
    b.wait_for(
        "the sign-in form",
        "document.getElementById('signin').getClientRects().length > 0",
    );
    assert!(!b.visible("console"));
    for id in [
        "user-results",
        "ud-facts",
        "dispute-orders",
        "fee-balances",
        "ledger-result",
        "alerts",
    ] {
        assert_eq!(b.text(id), "", "#{id} was left on screen");
    }
    assert_eq!(b.text("t-total"), "–");
    assert_eq!(
        b.eval("document.getElementById('signin-username').value"),
        json!("")
    );
    assert_eq!(b.eval("sessionStorage.length"), json!(0));
    wait_until_refused(w, token, "the admin's token still works after signing out");
    b.screenshot("9-signed-out");
}

/// A session ended elsewhere sends the page back to the form.
fn a_session_ended_elsewhere_returns_to_the_form(b: &mut Browser, s: &Scene) {
    let Scene { w, .. } = s;
    // A session that ends behind the page's back (here: a logout from
    // elsewhere) sends the page back to the form at its next call.
    let token = b.sign_in_admin("console_admin", "the overview again");
    assert_eq!(status(w, "DELETE", "/api/v1/sessions/current", &token), 204);
    b.wait_for(
        "the page to notice",
        "document.getElementById('signin-message').textContent.includes('session has ended')",
    );
    assert!(!b.visible("console"));
    assert_eq!(b.text("t-total"), "–");
}

/// An admin whose role is taken away is refused.
fn a_demoted_admin_is_refused(b: &mut Browser, s: &Scene) {
    let Scene { w, admin, .. } = s;
    // An admin whose role is taken away is refused at the next call, and
    // the page ends the session.
    let token = b.sign_in_admin("console_admin", "the overview once more");
    let other = quick_user(&w.db, "other_admin", true);
    let demoted = w.patch(
        &format!("/api/v1/admin/users/{}", admin.id),
        &other.token,
        &json!({"role": "user"}),
    );
    assert_eq!(demoted.status, 200, "{}", demoted.summary());
    b.wait_for(
        "the refusal of a former admin",
        "document.getElementById('signin-message').textContent.includes('no longer an administrator')",
    );
    assert!(!b.visible("console"));
    wait_until_refused(w, &token, "the former admin's session was not ended");
}
