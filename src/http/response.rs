//! Responses, and the two ways a handler gives one: at once (`Reply::Now`) or
//! later from another thread (`Reply::Later` with a `Responder`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write as _;
use std::time::SystemTime;

use super::conn::Framing;
use super::request::RequestId;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Fixed values (most) are borrowed: no allocation per answer.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<u8>,
    /// Which route answered (the router's index), for metrics.
    pub route: Option<usize>,
}

/// Headers most answers carry: room for them and what CORS adds.
const TYPICAL_HEADERS: usize = 4;

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            route: None,
        }
    }

    /// A JSON body; `value` is already serialized. `nosniff`: a browser
    /// never reads it as anything but JSON.
    pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
        let mut headers = Vec::with_capacity(TYPICAL_HEADERS);
        headers.push(("content-type", Cow::Borrowed("application/json")));
        headers.push(("x-content-type-options", Cow::Borrowed("nosniff")));
        Response {
            status,
            headers,
            body,
            route: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::json_bytes(status, value.to_string().into_bytes())
    }

    /// The error shape of docs/api.md, for errors the HTTP layer itself raises.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        Response::json(status, &body)
    }

    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Serializes head and (unless `head_only`) body into `out`. Every
    /// response but 1xx and 204 carries Content-Length, and every one its
    /// request's `x-request-id` (docs/http.md), written from the id
    /// itself rather than kept as an allocated header value.
    pub(crate) fn write_to(
        &self,
        out: &mut Vec<u8>,
        framing: &Framing,
        close: bool,
        request_id: &RequestId,
    ) {
        let http10_keep_alive = framing.http10 && !close;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        push_date(out);
        for (name, value) in &self.headers {
            push_header(out, name, value);
        }
        push_header(out, "x-request-id", request_id.as_str());
        let no_body = self.status < 200 || self.status == 204;
        if !no_body {
            let _ = write!(out, "content-length: {}\r\n", self.body.len());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !framing.head_only && !no_body {
            out.extend_from_slice(&self.body);
        }
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `date: <IMF-fixdate>`, formatted once a second per thread.
fn push_date(head: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            *cached_second = second;
            *text = httpdate::fmt_http_date(now);
        }
        push_header(head, "date", text);
    });
}

/// What a handler returns.
pub enum Reply {
    Now(Response),
    /// The handler started work that finishes on another thread (a commit);
    /// the closure receives the `Responder` that will carry the answer.
    Later(Box<dyn FnOnce(Responder) + Send>),
}

/// A deferred answer on its way back: ready, or to be rendered by the
/// worker that writes it, so that the thread that finished the work (the
/// database writer) does not spend its time on JSON.
pub enum Answer {
    Ready(Response),
    Render(Box<dyn FnOnce() -> Response + Send>),
}

impl Answer {
    /// The response, rendering it if needed (on the calling thread).
    pub fn into_response(self) -> Response {
        match self {
            Answer::Ready(response) => response,
            Answer::Render(render) => render(),
        }
    }

    /// The answer, passed through `change` once it is a response.
    fn map(self, change: impl FnOnce(Response) -> Response + Send + 'static) -> Answer {
        match self {
            Answer::Ready(response) => Answer::Ready(change(response)),
            Answer::Render(render) => Answer::Render(Box::new(move || change(render()))),
        }
    }
}

/// Carries one answer back to the connection that asked. Dropping it unsent
/// answers 500, so a lost callback can never leave a client hanging.
pub struct Responder {
    pub(crate) deliver: Option<Box<dyn FnOnce(Answer) + Send>>,
}

impl Responder {
    /// The same responder, marking its answer as coming from route `route`.
    pub fn tagged(self, route: usize) -> Responder {
        self.map(move |mut response| {
            response.route = Some(route);
            response
        })
    }

    /// The same responder, passing its answer through `change` first.
    pub fn map(mut self, change: impl FnOnce(Response) -> Response + Send + 'static) -> Responder {
        let deliver = self.deliver.take();
        Responder {
            deliver: deliver.map(|deliver| -> Box<dyn FnOnce(Answer) + Send> {
                Box::new(move |answer: Answer| deliver(answer.map(change)))
            }),
        }
    }

    pub fn send(mut self, response: Response) {
        if let Some(deliver) = self.deliver.take() {
            deliver(Answer::Ready(response));
        }
    }

    /// Sends an answer that the worker writing it renders (a panic there
    /// answers 500, as a handler's would).
    pub fn send_with(mut self, render: impl FnOnce() -> Response + Send + 'static) {
        if let Some(deliver) = self.deliver.take() {
            deliver(Answer::Render(Box::new(render)));
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(deliver) = self.deliver.take() {
            log::error!("a deferred request was dropped without an answer");
            deliver(Answer::Ready(Response::error(
                500,
                "internal",
                "internal error",
            )));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
