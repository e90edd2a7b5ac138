//! Per-route request metrics: counts by status class and a latency
//! histogram for each route (method + template) and its operation name.
//! The set of routes is fixed at start, so recording indexes a Vec: no map,
//! no lock on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{Histogram, HistogramSnapshot};

pub struct RouteMetrics {
    /// `GET /api/v1/users/{id}`.
    pub route: String,
    /// `users.get_by_id`.
    pub operation: String,
    /// Responses by status class: 1xx..5xx at index 0..4.
    classes: [AtomicU64; 5],
    latency: Histogram,
}

#[derive(Clone, Debug)]
pub struct RouteSnapshot {
    pub route: String,
    pub operation: String,
    pub classes: [u64; 5],
    pub latency: HistogramSnapshot,
}

impl RouteSnapshot {
    pub fn count(&self) -> u64 {
        self.classes.iter().sum()
    }
    pub fn errors_5xx(&self) -> u64 {
        self.classes[4]
    }
}

pub struct RequestMetrics {
    /// One per route, in router order, then one for requests no route matched.
    routes: Vec<RouteMetrics>,
}

impl RequestMetrics {
    /// `routes`: (route, operation) for each route, in router order.
    pub fn new(routes: Vec<(String, String)>) -> RequestMetrics {
        let mut all: Vec<RouteMetrics> = routes
            .into_iter()
            .map(|(route, operation)| RouteMetrics {
                route,
                operation,
                classes: Default::default(),
                latency: Histogram::default(),
            })
            .collect();
        all.push(RouteMetrics {
            route: "unmatched".into(),
            operation: "unmatched".into(),
            classes: Default::default(),
            latency: Histogram::default(),
        });
        RequestMetrics { routes: all }
    }

    /// Records one answered request; `route` is the router's index, `None`
    /// when no route matched (404, 405, or refused by the HTTP layer).
    pub fn record(&self, route: Option<usize>, status: u16, elapsed: Duration) {
        let unmatched = self.routes.len() - 1;
        let metrics = &self.routes[route.filter(|&i| i < unmatched).unwrap_or(unmatched)];
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        metrics.classes[class].fetch_add(1, Ordering::Relaxed);
        metrics
            .latency
            .record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        self.routes
            .iter()
            .map(|m| {
                let mut classes = [0u64; 5];
                for (slot, counter) in classes.iter_mut().zip(&m.classes) {
                    *slot = counter.load(Ordering::Relaxed);
                }
                RouteSnapshot {
                    route: m.route.clone(),
                    operation: m.operation.clone(),
                    classes,
                    latency: m.latency.snapshot(),
                }
            })
            .collect()
    }
}
