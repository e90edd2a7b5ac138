//! The OpenAPI document (`GET /api/v1/openapi.json`, `src/api/openapi.json`)
//! against the router, against itself, against the server's answers to
//! anonymous and non-admin calls, and against the limits in the code.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use souk::api::openapi::DOCUMENT;

use crate::client::{World, quick_user, request, world};
use crate::helpers::spawn_app;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("src/api/openapi.json is JSON")
}

/// (method in lowercase, path template) of every route of `api::routes()`,
/// with its operation name.
fn routes() -> Vec<(String, String, String)> {
    souk::api::routes()
        .describe()
        .into_iter()
        .map(|(method, template, operation)| {
            (
                method.to_ascii_lowercase(),
                template.to_owned(),
                operation.to_owned(),
            )
        })
        .collect()
}

/// (method, path template, operation object) of every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) {
                out.push((key.clone(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, template: &str) -> &'a Value {
    &doc["paths"][template][method]
}

/// What a `$ref` names, if it resolves within the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Follows `value` through a `$ref`, if it is one.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => resolve(doc, reference).unwrap_or(&Value::Null),
        None => value,
    }
}

/// Only a bearer session token lets a call through: every alternative of
/// the operation's `security` names `bearerAuth` (none is `{}`).
fn requires_token(operation: &Value) -> bool {
    operation["security"]
        .as_array()
        .is_some_and(|alternatives| {
            !alternatives.is_empty()
                && alternatives
                    .iter()
                    .all(|requirement| requirement.get("bearerAuth").is_some())
        })
}

fn is_admin(operation: &Value) -> bool {
    operation["x-admin"] == json!(true)
}

fn documents(operation: &Value, status: &str) -> bool {
    operation["responses"].get(status).is_some()
}

/// `template` with every `{param}` replaced by `1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_document_is_served_as_openapi_3_1_json() {
    let app = spawn_app();
    let response = app.get("/api/v1/openapi.json");
    assert_eq!(response.status, 200, "{}", response.summary());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let served = response.json();
    let version = served["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi is {version:?}");
    assert_eq!(
        served,
        document(),
        "the served document is the built-in one"
    );
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    let doc = document();
    let routed: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(method, template, _)| (method, template))
        .collect();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, template, _)| (method, template))
        .collect();
    let show = |set: Vec<&(String, String)>| {
        set.iter()
            .map(|(m, t)| format!("{} {t}", m.to_ascii_uppercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from src/api/openapi.json: [{}]; documented operations that are no route: [{}]",
        show(undocumented),
        show(unrouted)
    );
}

#[test]
fn operation_ids_are_the_routes_operation_names() {
    let doc = document();
    for (method, template, name) in routes() {
        let id = &operation(&doc, &method, &template)["operationId"];
        assert_eq!(id, &json!(name), "operationId of {method} {template}");
    }
}

#[test]
fn every_ref_resolves() {
    fn walk(doc: &Value, value: &Value, at: &str, broken: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref") {
                    let target = reference.as_str().and_then(|r| resolve(doc, r));
                    if target.is_none() {
                        broken.push(format!("{at}: {reference}"));
                    }
                }
                for (key, inner) in map {
                    walk(doc, inner, &format!("{at}/{key}"), broken);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    walk(doc, inner, &format!("{at}/{index}"), broken);
                }
            }
            _ => {}
        }
    }
    let doc = document();
    let mut broken = Vec::new();
    walk(&doc, &doc, "#", &mut broken);
    assert!(broken.is_empty(), "unresolved $refs: {broken:#?}");
}

#[test]
fn every_operation_has_an_id_a_success_and_its_path_parameters() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (method, template, op) in operations(&doc) {
        let name = format!("{} {template}", method.to_ascii_uppercase());
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{name} has no operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let statuses: Vec<&String> = op["responses"]
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        assert!(
            statuses
                .iter()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{name} documents no 2xx or 3xx answer: {statuses:?}"
        );
        assert!(
            op.get("security").is_some(),
            "{name} does not say whether it needs a token (`security`)"
        );
        let in_template: BTreeSet<&str> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let mut in_path = BTreeSet::new();
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            let parameter = deref(&doc, parameter);
            if parameter["in"] == "path" {
                assert_eq!(
                    parameter["required"],
                    json!(true),
                    "{name}: path parameters are required"
                );
                in_path.insert(parameter["name"].as_str().unwrap_or_default());
            }
        }
        assert_eq!(in_template, in_path, "{name}: path parameters");
    }
}

#[test]
fn operations_with_security_document_401_and_admin_ones_403() {
    let doc = document();
    for (method, template, op) in operations(&doc) {
        let name = format!("{} {template}", method.to_ascii_uppercase());
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured {
            assert!(
                documents(&op, "401"),
                "{name} takes a token but documents no 401"
            );
        }
        if is_admin(&op) {
            assert!(
                requires_token(&op),
                "{name} is admin-only but needs no token"
            );
            assert!(
                documents(&op, "403"),
                "{name} is admin-only but documents no 403"
            );
        }
    }
}

/// Calls every route as `token` (path ids `1`, bodies `{}`), logout last.
fn call_every_route(world: &World, token: Option<&str>) -> Vec<(String, String, u16)> {
    let mut all = routes();
    all.sort_by_key(|(method, _, _)| method == "delete");
    all.into_iter()
        .map(|(method, template, _)| {
            let body = matches!(method.as_str(), "post" | "patch").then(|| json!({}));
            let path = concrete(&template);
            let response = request(
                world.app.addr,
                &method.to_ascii_uppercase(),
                &path,
                token,
                body.as_ref(),
                &[],
            );
            (method, template, response.status)
        })
        .collect()
}

#[test]
fn anonymous_calls_get_401_exactly_where_the_document_asks_for_a_token() {
    let doc = document();
    let world = world();
    for (method, template, status) in call_every_route(&world, None) {
        let op = operation(&doc, &method, &template);
        assert_eq!(
            status == 401,
            requires_token(op),
            "{} {template}: an anonymous call got {status}; the document says it {} a token",
            method.to_ascii_uppercase(),
            if requires_token(op) {
                "needs"
            } else {
                "does not need"
            }
        );
    }
}

#[test]
fn non_admins_get_403_exactly_on_the_operations_marked_admin() {
    let doc = document();
    let world = world();
    let plain = quick_user(&world.db, "plain_user", false);
    for (method, template, status) in call_every_route(&world, Some(&plain.token)) {
        let op = operation(&doc, &method, &template);
        assert_eq!(
            status == 403,
            is_admin(op),
            "{} {template}: a non-admin got {status}; the document says it is {}",
            method.to_ascii_uppercase(),
            if is_admin(op) {
                "admin-only"
            } else {
                "not admin-only"
            }
        );
    }
}

// ---- patterns and limits -----------------------------------------------------

/// `[0-hi]`, or `0`.
fn class(hi: u32) -> String {
    if hi == 0 {
        "0".to_owned()
    } else {
        format!("[0-{hi}]")
    }
}

/// `n` more digits.
fn digits(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "[0-9]".to_owned(),
        n => format!("[0-9]{{{n}}}"),
    }
}

fn digit(text: &str, at: usize) -> u32 {
    u32::from(text.as_bytes()[at] - b'0')
}

/// Alternatives matching the numbers of exactly `bound.len()` digits below `bound`.
fn below(bound: &str) -> Vec<String> {
    (0..bound.len())
        .filter(|&at| digit(bound, at) > 0)
        .map(|at| {
            format!(
                "{}{}{}",
                &bound[..at],
                class(digit(bound, at) - 1),
                digits(bound.len() - at - 1)
            )
        })
        .collect()
}

/// 1..=`fraction.len() - at` more fraction digits that, padded with zeros,
/// are at most `fraction[at..]`.
fn fraction_at_most(fraction: &str, at: usize) -> String {
    let rest = fraction.len() - at - 1;
    let x = digit(fraction, at);
    if rest == 0 {
        return class(x);
    }
    let mut alternatives = Vec::new();
    if x > 0 {
        alternatives.push(format!("{}[0-9]{{0,{rest}}}", class(x - 1)));
    }
    alternatives.push(format!(
        "{}(?:{})?",
        &fraction[at..=at],
        fraction_at_most(fraction, at + 1)
    ));
    alternatives.join("|")
}

/// What `ids::parse_id` accepts: 1..=i64::MAX in at most 19 digits.
fn id_pattern() -> String {
    let max = i64::MAX.to_string();
    format!(
        "^(?!0+$)(?:[0-9]{{1,{}}}|{}|{max})$",
        max.len() - 1,
        below(&max).join("|")
    )
}

/// What `money::parse_units` accepts for `decimals` places (`positive`: and
/// `Amount::parse`): at most i64::MAX minor units.
fn amount_pattern(decimals: u32, positive: bool) -> String {
    let scale = 10i64.pow(decimals);
    let whole = (i64::MAX / scale).to_string();
    let fraction = format!("{:0width$}", i64::MAX % scale, width = decimals as usize);
    let mut smaller = Vec::new();
    if whole.len() > 1 {
        smaller.push(format!("[0-9]{{1,{}}}", whole.len() - 1));
    }
    smaller.extend(below(&whole));
    let head = if positive { "^(?![0.]*$)0*" } else { "^0*" };
    if decimals == 0 {
        return format!("{head}(?:{}|{whole})$", smaller.join("|"));
    }
    format!(
        "{head}(?:(?:{})(?:\\.[0-9]{{1,{decimals}}})?|{whole}(?:\\.(?:{}))?)$",
        smaller.join("|"),
        fraction_at_most(&fraction, 0)
    )
}

fn capitalized(code: &str) -> String {
    let mut chars = code.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[test]
fn ids_currencies_and_amounts_follow_the_parsers() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Id"]["pattern"], json!(id_pattern()), "Id");
    let config =
        souk::config::Config::for_path("unused.db", "127.0.0.1:0".parse().expect("an address"))
            .expect("the default configuration");
    let codes: Vec<&str> = config
        .currencies
        .0
        .iter()
        .map(|c| c.code.as_str())
        .collect();
    assert_eq!(
        schemas["Currency"]["enum"],
        json!(codes),
        "Currency lists the default currencies"
    );
    for currency in &config.currencies.0 {
        let name = capitalized(&currency.code);
        let d = currency.decimals;
        assert_eq!(
            schemas[format!("Amount{name}")]["pattern"],
            json!(amount_pattern(d, true)),
            "Amount{name}"
        );
        assert_eq!(
            schemas[format!("AmountOrZero{name}")]["pattern"],
            json!(amount_pattern(d, false)),
            "AmountOrZero{name}"
        );
        assert_eq!(
            schemas[format!("Money{name}")]["pattern"],
            json!(format!("^[0-9]+\\.[0-9]{{{d}}}$")),
            "Money{name}"
        );
    }
}

/// A documented limit (where in the document) and the code's constant.
type LimitCheck = (&'static str, Value, usize);

#[test]
fn documented_limits_are_the_codes() {
    let doc = document();
    for (what, documented, code) in account_and_ledger_limits(&doc)
        .into_iter()
        .chain(listing_limits(&doc))
        .chain(order_limits(&doc))
    {
        assert_eq!(documented, json!(code), "{what}");
    }
    let s = &doc["components"]["schemas"];
    let release_after = &s["EscrowCreateRequest"]["properties"]["release_after"];
    assert_eq!(
        release_after["maximum"],
        json!(souk::escrow::RELEASE_AFTER_MAX_S)
    );
    assert_eq!(
        release_after["default"],
        json!(souk::escrow::RELEASE_AFTER_DEFAULT_S)
    );
}

/// Limits of accounts, the ledger, the dashboard and paging.
fn account_and_ledger_limits(doc: &Value) -> Vec<LimitCheck> {
    use souk::accounts::users::{BULK_IDS_MAX, BULK_UPDATES_MAX};
    use souk::accounts::{
        DISPLAY_NAME_CHARS_MAX, PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN, USERNAME_CHARS_MAX,
        USERNAME_CHARS_MIN,
    };
    use souk::ledger::{BATCH_ITEMS_MAX, MEMO_CHARS_MAX, REFERENCE_CHARS_MAX};
    use souk::monitor::traffic::{SERIES_POINTS_MAX, TRAFFIC_TICKS_MAX};
    let s = &doc["components"]["schemas"];
    let p = &doc["components"]["parameters"];
    let traffic = &s["Dashboard"]["properties"]["traffic"]["properties"];
    let ids = parameter_schema(doc, "/api/v1/users", "get", "ids");
    let user_ids = parameter_schema(doc, "/api/v1/admin/balances", "get", "user_ids");
    #[rustfmt::skip]
    let limits = vec![
        ("X-Request-Id max", &doc["components"]["headers"]["RequestId"]["schema"]["maxLength"], souk::limits::REQUEST_ID_BYTES_MAX),
        ("username min", &s["UsernameInput"]["minLength"], USERNAME_CHARS_MIN),
        ("username max", &s["UsernameInput"]["maxLength"], USERNAME_CHARS_MAX),
        ("password min", &s["Password"]["minLength"], PASSWORD_CHARS_MIN),
        ("password max", &s["Password"]["maxLength"], PASSWORD_CHARS_MAX),
        ("display name", &s["DisplayName"]["maxLength"], DISPLAY_NAME_CHARS_MAX),
        ("memo", &s["Memo"]["maxLength"], MEMO_CHARS_MAX),
        ("reference", &s["Reference"]["maxLength"], REFERENCE_CHARS_MAX),
        ("batch", &s["TransferBatchRequest"]["properties"]["transfers"]["maxItems"], BATCH_ITEMS_MAX),
        ("bulk update", &s["BulkUpdateRequest"]["properties"]["updates"]["maxItems"], BULK_UPDATES_MAX),
        ("ids", &ids["maxItems"], BULK_IDS_MAX),
        ("user_ids", &user_ids["maxItems"], souk::api::admin_ledger::BALANCE_USERS_MAX),
        ("traffic window", &traffic["window_s"]["maximum"], TRAFFIC_TICKS_MAX),
        ("traffic series", &traffic["per_second"]["maxItems"], SERIES_POINTS_MAX),
        ("limit max", &p["Limit"]["schema"]["maximum"], souk::api::query::PAGE_MAX),
        ("limit default", &p["Limit"]["schema"]["default"], souk::api::query::PAGE_DEFAULT),
        ("idempotency key", &p["IdempotencyKey"]["schema"]["maxLength"], souk::ledger::idempotency::KEY_CHARS_MAX),
    ];
    limits
        .into_iter()
        .map(|(what, documented, code)| (what, documented.clone(), code))
        .collect()
}

/// Limits of listings, their search and their quantities.
fn listing_limits(doc: &Value) -> Vec<LimitCheck> {
    let s = &doc["components"]["schemas"];
    let quantity_max = usize::try_from(souk::listings::QUANTITY_MAX).unwrap_or(usize::MAX);
    vec![
        (
            "listing title",
            s["ListingTitle"]["maxLength"].clone(),
            souk::listings::TITLE_CHARS_MAX,
        ),
        (
            "listing description",
            s["ListingDescription"]["maxLength"].clone(),
            souk::listings::DESCRIPTION_CHARS_MAX,
        ),
        (
            "tags",
            s["Tags"]["maxItems"].clone(),
            souk::listings::TAGS_MAX,
        ),
        (
            "tag",
            s["Tag"]["maxLength"].clone(),
            souk::listings::TAG_CHARS_MAX,
        ),
        (
            "q",
            parameter_schema(doc, "/api/v1/listings", "get", "q")["maxLength"].clone(),
            souk::listings::search::QUERY_CHARS_MAX,
        ),
        ("quantity", s["Quantity"]["maximum"].clone(), quantity_max),
        (
            "quantity on create",
            s["ListingCreateRequest"]["properties"]["quantity"]["maximum"].clone(),
            quantity_max,
        ),
        (
            "quantity on edit",
            s["ListingUpdateRequest"]["properties"]["quantity"]["maximum"].clone(),
            quantity_max,
        ),
    ]
}

/// Limits of orders, their reviews and messages.
fn order_limits(doc: &Value) -> Vec<LimitCheck> {
    let s = &doc["components"]["schemas"];
    let order_quantity_max = usize::try_from(souk::orders::QUANTITY_MAX).unwrap_or(usize::MAX);
    vec![
        (
            "order memo",
            s["OrderMemo"]["maxLength"].clone(),
            souk::orders::MEMO_CHARS_MAX,
        ),
        (
            "tracking",
            s["Tracking"]["maxLength"].clone(),
            souk::orders::TRACKING_CHARS_MAX,
        ),
        (
            "dispute reason",
            s["DisputeReason"]["maxLength"].clone(),
            souk::orders::REASON_CHARS_MAX,
        ),
        (
            "order quantity",
            s["OrderPlaceRequest"]["properties"]["quantity"]["maximum"].clone(),
            order_quantity_max,
        ),
        (
            "order quantity shown",
            s["Order"]["properties"]["quantity"]["maximum"].clone(),
            order_quantity_max,
        ),
        (
            "review comment",
            s["ReviewComment"]["maxLength"].clone(),
            souk::orders::reviews::COMMENT_CHARS_MAX,
        ),
        (
            "message body",
            s["MessageBody"]["maxLength"].clone(),
            souk::orders::messages::BODY_CHARS_MAX,
        ),
    ]
}

/// The schema of parameter `name` of operation `method template`.
fn parameter_schema(doc: &Value, template: &str, method: &str, name: &str) -> Value {
    operation(doc, method, template)["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|parameter| deref(doc, parameter))
        .find(|parameter| parameter["name"] == name)
        .map(|parameter| parameter["schema"].clone())
        .unwrap_or_else(|| panic!("{method} {template} has no parameter {name}"))
}
