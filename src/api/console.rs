//! The admin console: `GET /admin`, one page served from the binary, with
//! its script and style sheet as same-origin routes (the page's policy
//! allows no inline script or style). The page only calls the documented
//! API with the token of a session it signs in itself. `/dashboard`, the
//! page the console replaced, redirects here.

use std::sync::LazyLock;

use super::Params;
use super::respond::HtmlPage;
use crate::app::App;
use crate::error::Result;
use crate::http::{Reply, Request, Response};

/// `GET /admin`.
pub fn page(_app: &App, _request: &Request, _: &Params) -> Result<Reply> {
    static PAGE: LazyLock<HtmlPage> =
        LazyLock::new(|| HtmlPage::new(include_str!("console/console.html")));
    Ok(Reply::Now(PAGE.response()))
}

fn asset(content_type: &'static str, body: &'static str) -> Reply {
    let mut response = Response::new(200)
        .with_header("content-type", content_type)
        .with_header("cache-control", "no-store")
        .with_header("x-content-type-options", "nosniff");
    response.body = body.as_bytes().to_vec();
    Reply::Now(response)
}

/// `GET /admin/console.js`.
pub fn script(_app: &App, _request: &Request, _: &Params) -> Result<Reply> {
    Ok(asset(
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ))
}

/// `GET /admin/console.css`.
pub fn style(_app: &App, _request: &Request, _: &Params) -> Result<Reply> {
    Ok(asset(
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ))
}

/// `GET /dashboard`: 308 to `/admin`.
pub fn dashboard_redirect(_app: &App, _request: &Request, _: &Params) -> Result<Reply> {
    Ok(Reply::Now(
        Response::new(308).with_header("location", "/admin"),
    ))
}
