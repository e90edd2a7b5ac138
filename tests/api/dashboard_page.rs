//! The `/dashboard` page in a real headless browser (Debian's chromium):
//! it loads, asks for no external asset, fetches the live dashboard JSON with
//! the admin token, draws its charts and table, and logs no script error.
//! CI installs chromium (`.ci/run`); without it this test is skipped locally
//! and fails under CI.

use std::process::Command;

use crate::client::world;

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
}

#[test]
fn the_dashboard_page_draws_live_data_without_script_errors() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (see .ci/run)"
        );
        eprintln!("skipped: no chromium on this machine");
        return;
    };
    let world = world();
    let admin = world.admin("dash_admin");
    for _ in 0..20 {
        assert_eq!(world.get("/api/v1/users/me", &admin.token).status, 200);
    }
    let profile = crate::helpers::TempDir::new();
    let url = format!("http://{}/dashboard#token={}", world.app.addr, admin.token);
    let output = Command::new("timeout")
        .arg("60")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=6000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path.display()))
        .arg(&url)
        .output()
        .expect("running chromium");
    let dom = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("id=\"status\">up "),
        "the status line shows live data:\n{dom}"
    );
    assert!(
        dom.contains("<td>users.me</td><td>"),
        "the operations table lists users.me:\n{dom}"
    );
    assert!(
        !dom.contains("id=\"rps\">–"),
        "the request rate was computed"
    );
    assert_eq!(
        dom.matches("<canvas").count(),
        7,
        "every chart is on the page"
    );
    for bad in ["Uncaught", "Failed to load resource", "ERROR:CONSOLE"] {
        assert!(!log.contains(bad), "the browser logged `{bad}`:\n{log}");
    }
}
