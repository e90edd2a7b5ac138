//! Per-route request metrics: counts by status code and a latency
//! histogram for each route (method + template) and its operation name.
//! The set of routes is fixed at start, and so is the set of status codes
//! this server sends (`STATUS_CODES`), so recording indexes arrays: no map,
//! no lock on the hot path, and the series stay bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::histogram::{Histogram, HistogramSnapshot};

/// Every status code this server answers with (the reason phrases of
/// `http::response`; a unit test keeps the two lists equal). A code outside
/// it is counted in one more slot, shown as `code="other"`.
pub const STATUS_CODES: [u16; 20] = [
    100, 200, 201, 204, 308, 400, 401, 403, 404, 405, 409, 411, 413, 414, 415, 422, 429, 431, 500,
    503,
];
/// Count slots per route: one per known code, one for any other.
const CODE_SLOTS: usize = STATUS_CODES.len() + 1;

fn code_slot(status: u16) -> usize {
    STATUS_CODES
        .iter()
        .position(|&code| code == status)
        .unwrap_or(STATUS_CODES.len())
}

/// The `code` label of a slot.
pub fn code_label(slot: usize) -> String {
    STATUS_CODES
        .get(slot)
        .map_or_else(|| "other".to_owned(), u16::to_string)
}

pub struct RouteMetrics {
    /// `GET`; empty for requests no route matched.
    pub method: String,
    /// `/api/v1/users/{id}`; `unmatched` for requests no route matched.
    pub route: String,
    /// `users.get_by_id`.
    pub operation: String,
    /// Responses by status code, in `STATUS_CODES` order, then any other.
    codes: [AtomicU64; CODE_SLOTS],
    latency: Histogram,
}

#[derive(Clone, Debug)]
pub struct RouteSnapshot {
    pub method: String,
    pub route: String,
    pub operation: String,
    /// Answers by slot (see `code_label`).
    pub codes: [u64; CODE_SLOTS],
    pub latency: HistogramSnapshot,
}

impl RouteSnapshot {
    /// An empty snapshot named like `self`, to add others into.
    pub fn empty_like(&self) -> RouteSnapshot {
        RouteSnapshot {
            method: self.method.clone(),
            route: self.route.clone(),
            operation: self.operation.clone(),
            codes: [0; CODE_SLOTS],
            latency: HistogramSnapshot::default(),
        }
    }

    pub fn count(&self) -> u64 {
        self.codes.iter().sum()
    }

    /// Answers with a 5xx status ("other" codes are not 5xx ones: every
    /// 5xx this server sends is listed).
    pub fn errors_5xx(&self) -> u64 {
        STATUS_CODES
            .iter()
            .zip(self.codes)
            .filter(|(code, _)| **code >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

pub struct RequestMetrics {
    /// One per route, in router order, then one for requests no route matched.
    routes: Vec<RouteMetrics>,
}

impl RequestMetrics {
    /// `routes`: (method, template, operation) for each route, in router
    /// order (`Router::describe`).
    pub fn new(routes: Vec<(&str, &str, &str)>) -> RequestMetrics {
        let mut all: Vec<RouteMetrics> = routes
            .into_iter()
            .map(|(method, template, operation)| RouteMetrics {
                method: method.to_owned(),
                route: template.to_owned(),
                operation: operation.to_owned(),
                codes: Default::default(),
                latency: Histogram::default(),
            })
            .collect();
        all.push(RouteMetrics {
            method: String::new(),
            route: "unmatched".into(),
            operation: "unmatched".into(),
            codes: Default::default(),
            latency: Histogram::default(),
        });
        RequestMetrics { routes: all }
    }

    /// Records one answered request; `route` is the router's index, `None`
    /// when no route matched (404, 405, or refused by the HTTP layer).
    pub fn record(&self, route: Option<usize>, status: u16, elapsed: Duration) {
        let unmatched = self.routes.len() - 1;
        let metrics = &self.routes[route.filter(|&i| i < unmatched).unwrap_or(unmatched)];
        metrics.codes[code_slot(status)].fetch_add(1, Ordering::Relaxed);
        metrics
            .latency
            .record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        self.routes
            .iter()
            .map(|m| {
                let mut codes = [0u64; CODE_SLOTS];
                for (slot, counter) in codes.iter_mut().zip(&m.codes) {
                    *slot = counter.load(Ordering::Relaxed);
                }
                RouteSnapshot {
                    method: m.method.clone(),
                    route: m.route.clone(),
                    operation: m.operation.clone(),
                    codes,
                    latency: m.latency.snapshot(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_codes_are_those_the_server_has_a_reason_phrase_for() {
        for status in 100..600u16 {
            let known = crate::http::reason(status) != "Unknown";
            assert_eq!(
                STATUS_CODES.contains(&status),
                known,
                "status {status}: STATUS_CODES and http::response::reason disagree"
            );
        }
    }

    #[test]
    fn each_status_is_counted_under_its_own_code() {
        let metrics = RequestMetrics::new(vec![("GET", "/a", "a.get")]);
        for status in [200, 200, 404, 503, 299] {
            metrics.record(Some(0), status, Duration::from_millis(1));
        }
        let routes = metrics.snapshot();
        let a = &routes[0];
        assert_eq!((a.method.as_str(), a.route.as_str()), ("GET", "/a"));
        let counted: Vec<(String, u64)> = a
            .codes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(slot, n)| (code_label(slot), *n))
            .collect();
        let expected = [("200", 2), ("404", 1), ("503", 1), ("other", 1)];
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(c, n)| ((*c).to_owned(), *n))
            .collect();
        assert_eq!(counted, expected);
        assert_eq!((a.count(), a.errors_5xx()), (5, 1));
    }
}
