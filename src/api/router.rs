//! Matches method and path segments to a handler; 404 and 405 as JSON errors.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Method, Reply, Request, Response};

use super::respond;

/// What a route runs. Plain functions: a route carries no state of its own.
pub type Handler = fn(&App, &Request, &Params) -> Result<Reply>;

/// Values of the `{name}` segments of the matched route, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Result<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::internal(format!("route has no parameter {name}")))
    }
}

enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

struct Route {
    method: Method,
    pattern: &'static str,
    /// The operation name metrics use, e.g. `users.get_by_id`.
    operation: &'static str,
    segments: Vec<Segment>,
    handler: Handler,
}

#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route; `pattern` segments like `{id}` match any one segment.
    pub fn route(mut self, method: Method, pattern: &'static str, handler: Handler) -> Router {
        let segments = split(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name),
                    None => Segment::Literal(s),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            operation: pattern,
            segments,
            handler,
        });
        self
    }

    /// Names the operation of the route added last (for metrics).
    pub fn op(mut self, operation: &'static str) -> Router {
        if let Some(route) = self.routes.last_mut() {
            route.operation = operation;
        }
        self
    }

    /// (`METHOD /pattern`, operation) of every route, in order: the index of
    /// a route here is the `Response::route` it tags its answers with.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|r| {
                (
                    format!("{} {}", r.method.as_str(), r.pattern),
                    r.operation.to_owned(),
                )
            })
            .collect()
    }

    pub fn dispatch(&self, app: &App, request: &Request) -> Reply {
        // HEAD is GET without the body (the connection drops the body).
        let method = if request.method == Method::Head {
            Method::Get
        } else {
            request.method
        };
        let mut allowed: Vec<Method> = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            let Some(params) = matches(&route.segments, &request.path) else {
                continue;
            };
            if route.method != method {
                allowed.push(route.method);
                continue;
            }
            return match (route.handler)(app, request, &params) {
                Ok(Reply::Now(mut response)) => {
                    response.route = Some(index);
                    Reply::Now(response)
                }
                Ok(Reply::Later(start)) => {
                    Reply::Later(Box::new(move |responder| start(responder.tagged(index))))
                }
                Err(e) => {
                    let mut response = respond::error(e);
                    response.route = Some(index);
                    Reply::Now(response)
                }
            };
        }
        if allowed.is_empty() {
            return Reply::Now(respond::error(Error::NotFound));
        }
        let mut allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        if allowed.contains(&Method::Get) {
            allow.push("HEAD");
        }
        Reply::Now(
            Response::error(
                405,
                "method_not_allowed",
                &format!("{} is not allowed here", request.method.as_str()),
            )
            .with_header("allow", allow.join(", ")),
        )
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(segments: &[Segment], path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut parts = split(path);
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Segment::Literal(literal) if *literal == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((*name, part.to_owned())),
        }
    }
    parts.next().is_none().then_some(Params(params))
}
