//! Alert rules (`RULES`: memory, cpu, response_time, error_rate,
//! circuit_open): evaluated by the
//! monitor thread each MONITORING_INTERVAL; a rule fires at most once per
//! ALERT_COOLDOWN, is logged at warn level and kept in a bounded list.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Recent firings kept for `/admin/alerts`.
pub const RECENT_ALERTS_MAX: usize = 100;

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub rule: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub fired_at: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub memory_percent: f64,
    pub cpu_percent: f64,
    pub response_ms: f64,
    pub error_percent: f64,
    pub cooldown: Duration,
}

/// One evaluation's measured values.
pub struct Reading {
    /// 1 while the store's circuit breaker is open, else 0.
    pub circuit_open: f64,
    pub memory_percent: f64,
    pub cpu_percent: f64,
    pub response_ms: f64,
    pub error_percent: f64,
}

/// A copy of the alert book's figures (`Monitor::alerts`).
pub struct Alerts {
    /// Rules above threshold at the last evaluation.
    pub active: Vec<Alert>,
    /// The last RECENT_ALERTS_MAX firings, newest first.
    pub recent: Vec<Alert>,
    /// Firings since start per rule (rules that never fired are absent).
    pub firings: Vec<(&'static str, u64)>,
}

#[derive(Default)]
pub struct AlertBook {
    /// Rules above threshold at the last evaluation, with their last firing.
    active: Vec<Alert>,
    recent: VecDeque<Alert>,
    last_fired: Vec<(&'static str, Instant)>,
    pub firings: Vec<(&'static str, u64)>,
}

pub const RULES: [&str; 5] = [
    "memory",
    "cpu",
    "response_time",
    "error_rate",
    "circuit_open",
];

/// The unit of a rule's value and threshold, for the log; `None` for the
/// circuit breaker, which is open or not.
pub fn unit(rule: &str) -> Option<&'static str> {
    match rule {
        "memory" | "cpu" | "error_rate" => Some("%"),
        "response_time" => Some("ms"),
        _ => None,
    }
}

impl AlertBook {
    pub fn evaluate(&mut self, reading: &Reading, thresholds: &Thresholds, now: Instant) {
        let checks = [
            ("memory", reading.memory_percent, thresholds.memory_percent),
            ("cpu", reading.cpu_percent, thresholds.cpu_percent),
            ("response_time", reading.response_ms, thresholds.response_ms),
            (
                "error_rate",
                reading.error_percent,
                thresholds.error_percent,
            ),
            ("circuit_open", reading.circuit_open, 0.0),
        ];
        for (rule, value, threshold) in checks {
            let above = value > threshold;
            if !above {
                self.active.retain(|a| a.rule != rule);
                continue;
            }
            let cooled = self
                .last_fired
                .iter()
                .find(|(r, _)| *r == rule)
                .is_none_or(|(_, at)| now.duration_since(*at) >= thresholds.cooldown);
            if cooled {
                self.fire(rule, value, threshold, now);
            }
        }
    }

    fn fire(&mut self, rule: &'static str, value: f64, threshold: f64, now: Instant) {
        match unit(rule) {
            Some(unit) => {
                log::warn!("alert {rule}: {value:.1} {unit} is above {threshold:.1} {unit}");
            }
            None => log::warn!("alert {rule}: the store's circuit breaker is open"),
        }
        let alert = Alert {
            rule,
            value,
            threshold,
            fired_at: crate::clock::rfc3339(crate::clock::unix_seconds()),
        };
        self.last_fired.retain(|(r, _)| *r != rule);
        self.last_fired.push((rule, now));
        match self.firings.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, n)) => *n += 1,
            None => self.firings.push((rule, 1)),
        }
        self.active.retain(|a| a.rule != rule);
        self.active.push(alert.clone());
        if self.recent.len() == RECENT_ALERTS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(alert);
    }

    pub fn active(&self) -> Vec<Alert> {
        self.active.clone()
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Alert> {
        self.recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_fires_once_per_cooldown() {
        let mut book = AlertBook::default();
        let t = Thresholds {
            memory_percent: 0.0,
            cpu_percent: 100.0,
            response_ms: 1e9,
            error_percent: 100.0,
            cooldown: Duration::from_secs(3),
        };
        let reading = Reading {
            circuit_open: 0.0,
            memory_percent: 50.0,
            cpu_percent: 1.0,
            response_ms: 1.0,
            error_percent: 0.0,
        };
        let start = Instant::now();
        book.evaluate(&reading, &t, start);
        book.evaluate(&reading, &t, start + Duration::from_secs(1));
        assert_eq!(book.recent().len(), 1);
        book.evaluate(&reading, &t, start + Duration::from_secs(3));
        assert_eq!(book.recent().len(), 2);
        assert_eq!(book.active().len(), 1);
    }

    #[test]
    fn every_measured_rule_has_a_unit() {
        for rule in RULES {
            assert_eq!(unit(rule).is_none(), rule == "circuit_open", "{rule}");
        }
        assert_eq!(unit("response_time"), Some("ms"));
        assert_eq!(unit("cpu"), Some("%"));
    }
}
