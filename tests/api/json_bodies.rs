//! Request bodies as every API route decodes them (docs/api.md): JSON only,
//! UTF-8, no unknown fields, no duplicate keys, one value and nothing after.
//! Exercised through the test route `POST /test/echo`, which decodes
//! `{name: string, count: u32, note?: string}` and echoes it back.

use serde_json::json;

use crate::helpers::spawn_app;

#[test]
fn a_valid_body_is_decoded_and_echoed() {
    let app = spawn_app();
    let response = app.post_echo(br#"{"name":"caf\u00e9 \u2603","count":3,"note":"hi"}"#);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"name": "café ☃", "count": 3, "note": "hi"})
    );
    let response = app.post_echo(" {\"count\":0,\"name\":\"ü\"}\n".as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"name": "ü", "count": 0, "note": null})
    );
}

#[test]
fn malformed_json_gets_400_invalid_json() {
    let app = spawn_app();
    for body in [
        &br#"{"name":"a","count":1"#[..],
        br#"{name:"a","count":1}"#,
        br#"{"name":"a",,"count":1}"#,
        br#"{"name":'a',"count":1}"#,
        b"not json",
    ] {
        let response = app.post_echo(body);
        response.assert_error(400, "invalid_json");
    }
}

#[test]
fn invalid_utf8_inside_a_string_gets_400() {
    let app = spawn_app();
    let response = app.post_echo(b"{\"name\":\"a\xff\xfeb\",\"count\":1}");
    assert_eq!(response.status, 400, "{response:?}");
    response.error();
    // A lone surrogate escape is not a Unicode scalar value either.
    let response = app.post_echo(br#"{"name":"\ud800","count":1}"#);
    assert_eq!(response.status, 400, "{response:?}");
    response.error();
}

#[test]
fn an_unknown_field_gets_400() {
    let app = spawn_app();
    let response = app.post_echo(br#"{"name":"a","count":1,"admin":true}"#);
    let error = response.assert_error(400, "invalid_field");
    assert_eq!(error["field"], "admin", "the field names it: {error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("admin"),
        "the message names the field: {error}"
    );
}

#[test]
fn a_duplicate_key_gets_400() {
    let app = spawn_app();
    for body in [
        &br#"{"name":"a","count":1,"name":"b"}"#[..],
        br#"{"name":"a","count":1,"count":1}"#,
        br#"{"name":"a","count":1,"note":null,"note":"x"}"#,
    ] {
        let response = app.post_echo(body);
        assert_eq!(response.status, 400, "{response:?}");
        response.error();
    }
}

#[test]
fn a_wrong_type_gets_400_invalid_field_naming_the_field() {
    let app = spawn_app();
    let cases = [
        (&br#"{"name":"a","count":"1"}"#[..], "count"),
        (br#"{"name":"a","count":-1}"#, "count"),
        (br#"{"name":"a","count":1.5}"#, "count"),
        (br#"{"name":"a","count":4294967296}"#, "count"),
        (br#"{"name":7,"count":1}"#, "name"),
        (br#"{"name":"a","count":1,"note":[]}"#, "note"),
    ];
    for (body, field) in cases {
        let response = app.post_echo(body);
        let error = response.assert_error(400, "invalid_field");
        assert_eq!(error["field"], field, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_missing_field_gets_400() {
    let app = spawn_app();
    let response = app.post_echo(br#"{"count":1}"#);
    assert_eq!(response.status, 400, "{response:?}");
    let error = response.error();
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("name"),
        "{error}"
    );
}

#[test]
fn a_body_that_is_not_an_object_gets_400() {
    let app = spawn_app();
    for body in [&b"[]"[..], b"null", b"1", br#""a""#] {
        let response = app.post_echo(body);
        assert_eq!(response.status, 400, "{response:?}");
        response.error();
    }
}

#[test]
fn a_missing_or_other_content_type_gets_415() {
    let app = spawn_app();
    let body = br#"{"name":"a","count":1}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some(""),
    ] {
        let response = app.post_echo_as(content_type, body);
        response.assert_error(415, "unsupported_media_type");
    }
}

#[test]
fn a_content_type_that_is_not_text_or_is_repeated_gets_415_not_absent() {
    let app = spawn_app();
    let body = br#"{"name":"a","count":1}"#;
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"application/json\xff"],
        vec![b"\xffapplication/json"],
        vec![b"application/json; charset=\xe9"],
        vec![b"application/json", b"application/json"],
        vec![b"application/json", b"text/plain"],
    ];
    for lines in &cases {
        let mut request = b"POST /test/echo HTTP/1.1\r\nHost: test\r\n".to_vec();
        for value in lines {
            request.extend_from_slice(b"Content-Type: ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        let mut client = app.connect();
        client.send(&request);
        let response = client.read_response();
        assert_eq!(response.status, 415, "{lines:?}: {response:?}");
        response.assert_error(415, "unsupported_media_type");
    }
}

#[test]
fn application_json_with_parameters_or_another_case_is_accepted() {
    let app = spawn_app();
    let body = br#"{"name":"a","count":1}"#;
    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ] {
        let response = app.post_echo_as(Some(content_type), body);
        assert_eq!(response.status, 200, "{content_type}: {response:?}");
    }
}

#[test]
fn an_empty_body_gets_400_invalid_json() {
    let app = spawn_app();
    app.post_echo(b"").assert_error(400, "invalid_json");
    app.post_echo(b"   ").assert_error(400, "invalid_json");
}

#[test]
fn trailing_bytes_after_the_object_get_400_invalid_json() {
    let app = spawn_app();
    for body in [
        &br#"{"name":"a","count":1}x"#[..],
        br#"{"name":"a","count":1}{}"#,
        br#"{"name":"a","count":1} 1"#,
    ] {
        app.post_echo(body).assert_error(400, "invalid_json");
    }
    // Trailing whitespace is not garbage.
    let response = app.post_echo(b"{\"name\":\"a\",\"count\":1} \r\n\t");
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn error_messages_carry_no_byte_positions() {
    let app = spawn_app();
    let error = app
        .post_echo(br#"{"name":"a","count":1"#)
        .assert_error(400, "invalid_json");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.contains(" at line "), "{message}");
}
