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

    /// The `{id}` of the path as an id; one that cannot be an id names
    /// nothing, so it is 404 like an unknown one.
    pub fn id(&self) -> Result<i64> {
        crate::ids::parse_id("id", self.get("id")?).map_err(|_| Error::NotFound)
    }
}

enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

/// A route as metrics name it: (method, pattern, operation), e.g. (`GET`,
/// `/api/v1/users/{id}`, `users.get_by_id`).
pub type RouteName = (&'static str, &'static str, &'static str);

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

    /// Adds a route; `pattern` segments like `{id}` match any one segment;
    /// `operation` names it for metrics (`users.get_by_id`).
    pub fn route(
        mut self,
        method: Method,
        pattern: &'static str,
        handler: Handler,
        operation: &'static str,
    ) -> Router {
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
            operation,
            segments,
            handler,
        });
        self
    }

    /// (method, pattern, operation) of every route, in order: the index of
    /// a route here is the `Response::route` it tags its answers with.
    pub fn describe(&self) -> Vec<RouteName> {
        self.routes
            .iter()
            .map(|r| (r.method.as_str(), r.pattern, r.operation))
            .collect()
    }

    /// The pattern (`/users/{id}`) of the route at `index`.
    pub fn pattern(&self, index: usize) -> Option<&'static str> {
        self.routes.get(index).map(|route| route.pattern)
    }

    /// Runs the route that matches the request's path most specifically
    /// (a literal segment beats a `{param}` in the same place, leftmost
    /// first: `/admin/users/bulk-update` is never `/admin/users/{id}`) and
    /// method. A path whose best pattern lacks the method gets 405 with an
    /// `Allow` of that pattern's methods only; no match at all is 404.
    pub fn dispatch(&self, app: &App, request: &Request) -> Reply {
        // HEAD is GET without the body (the connection drops the body).
        let method = if request.method == Method::Head {
            Method::Get
        } else {
            request.method
        };
        if request.path() == "*" {
            // `OPTIONS *`: the server as a whole (RFC 9110 §9.3.7).
            return Reply::Now(Response::new(204).with_header("allow", SERVER_METHODS));
        }
        // The path's segments, split once; a path longer than any pattern
        // matches none.
        let mut parts = [""; ROUTE_SEGMENTS_MAX];
        let mut count = 0;
        for part in split(request.path()) {
            let Some(slot) = parts.get_mut(count) else {
                return Reply::Now(respond::error(Error::NotFound));
            };
            *slot = part;
            count += 1;
        }
        let parts = &parts[..count];
        let best = self
            .routes
            .iter()
            .filter_map(|route| specificity(&route.segments, parts))
            .max();
        let Some(best) = best else {
            return Reply::Now(respond::error(Error::NotFound));
        };
        let mut allowed: Vec<Method> = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            if specificity(&route.segments, parts) != Some(best) {
                continue;
            }
            if route.method != method {
                allowed.push(route.method);
                continue;
            }
            let params = params(&route.segments, parts);
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

/// `None` when the pattern does not match the path split into `parts`;
/// otherwise a rank where a literal segment counts more than a parameter,
/// earlier segments most. Two patterns of one rank that match one path are
/// the same pattern. Runs for every route on every request: a pattern of
/// another length is out at once.
fn specificity(segments: &[Segment], parts: &[&str]) -> Option<u64> {
    const _: () = assert!(ROUTE_SEGMENTS_MAX <= 64);
    if segments.len() != parts.len() {
        return None;
    }
    let mut rank = 0u64;
    for (position, (segment, part)) in segments.iter().zip(parts).enumerate() {
        match segment {
            Segment::Literal(literal) if literal == part => rank |= 1 << (63 - position),
            Segment::Literal(_) => return None,
            Segment::Param(_) => {}
        }
    }
    Some(rank)
}

/// The `{name}` values of a pattern that matches the path's `parts`.
fn params(segments: &[Segment], parts: &[&str]) -> Params {
    let values = segments
        .iter()
        .zip(parts)
        .filter_map(|(segment, part)| match segment {
            Segment::Param(name) => Some((*name, (*part).to_owned())),
            Segment::Literal(_) => None,
        })
        .collect();
    Params(values)
}

/// Every method some route takes, for `OPTIONS *`.
const SERVER_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE, OPTIONS";

/// Segments a route pattern may have (the rank is a 64-bit mask).
const ROUTE_SEGMENTS_MAX: usize = 64;
