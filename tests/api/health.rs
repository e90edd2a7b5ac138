//! `GET /healthz` and `GET /readyz` (docs/api.md, Health and monitoring).

use crate::helpers::{head, spawn_app};

#[test]
fn healthz_answers_200_status_ok() {
    let app = spawn_app();
    let response = app.get("/healthz");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
}

#[test]
fn readyz_answers_200_when_the_database_reads_and_commits() {
    let app = spawn_app();
    for _ in 0..3 {
        let response = app.get("/readyz");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.json()["status"], "ready");
    }
}

#[test]
fn head_works_on_readyz_whose_answer_comes_after_a_commit() {
    let app = spawn_app();
    let mut client = app.connect();
    client.send(head("/readyz").as_bytes());
    let response = client.read_head_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("content-length").is_some());
    // The deferred answer kept the connection in step.
    client.send(crate::helpers::get("/healthz").as_bytes());
    assert_eq!(client.read_response().json()["status"], "ok");
}
