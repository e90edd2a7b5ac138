//! Request figures over the last interval, beside those since start: the
//! monitor thread appends, once a second, the running totals of every route
//! summed together (answers by status class, one merged latency histogram)
//! to a fixed ring; a figure over the last N seconds is the newest totals
//! less those of N seconds ago. The ring holds `TRAFFIC_TICKS_MAX` ticks,
//! so the window is MONITORING_INTERVAL capped at that many seconds.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::requests::{RouteSnapshot, STATUS_CODES};
use crate::histogram::HistogramSnapshot;

/// Ticks (seconds) of running totals kept: the longest window the
/// dashboard's last-interval figures can cover. 900 ticks of ~170 bytes
/// each is ~150 KB, whatever the traffic.
pub const TRAFFIC_TICKS_MAX: usize = 900;
/// Points of the per-second series the dashboard sends (the console's
/// charts): two minutes at one point a second.
pub const SERIES_POINTS_MAX: usize = 120;
// The series is cut from the ring, so the ring must hold it.
const _: () = assert!(SERIES_POINTS_MAX < TRAFFIC_TICKS_MAX);

/// When a sample was taken: the monotonic clock measures spans (a step of
/// the wall clock changes no rate and no order), the wall clock only
/// labels the series' points.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stamp {
    /// Milliseconds since the monitor started, from `Instant`.
    pub mono_ms: u64,
    /// Milliseconds since the Unix epoch: a label only.
    pub wall_ms: u64,
}

/// Running totals over all routes at one moment.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub at: Stamp,
    pub count: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub latency: HistogramSnapshot,
}

impl Totals {
    pub fn of(routes: &[RouteSnapshot], at: Stamp) -> Totals {
        let mut t = Totals {
            at,
            ..Totals::default()
        };
        for route in routes {
            t.count += route.count();
            for (code, n) in STATUS_CODES.iter().zip(route.codes) {
                match code {
                    400..=499 => t.errors_4xx += n,
                    500..=599 => t.errors_5xx += n,
                    _ => {}
                }
            }
            t.latency.add(&route.latency);
        }
        t
    }

    /// What happened between `earlier` and `self`.
    fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            at: self.at,
            count: self.count.saturating_sub(earlier.count),
            errors_4xx: self.errors_4xx.saturating_sub(earlier.errors_4xx),
            errors_5xx: self.errors_5xx.saturating_sub(earlier.errors_5xx),
            latency: self.latency.saturating_sub(&earlier.latency),
        }
    }

    /// `requests`, latency quantiles and error shares of these totals, as
    /// JSON; with `seconds`, the rate over that many seconds too.
    fn figures(&self, seconds: Option<f64>) -> Value {
        let percent = |n: u64| {
            if self.count == 0 {
                0.0
            } else {
                round2(n as f64 * 100.0 / self.count as f64)
            }
        };
        let mut out = json!({
            "requests": self.count,
            "latency_p50_ms": round2(self.latency.quantile_ms(0.50)),
            "latency_p95_ms": round2(self.latency.quantile_ms(0.95)),
            "latency_p99_ms": round2(self.latency.quantile_ms(0.99)),
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "errors_4xx_percent": percent(self.errors_4xx),
            "errors_5xx_percent": percent(self.errors_5xx),
        });
        if let (Some(seconds), Some(map)) = (seconds, out.as_object_mut()) {
            let rate = if seconds > 0.0 {
                self.count as f64 / seconds
            } else {
                0.0
            };
            map.insert("seconds".into(), json!(round2(seconds)));
            map.insert("requests_per_s".into(), json!(round2(rate)));
        }
        out
    }
}

/// The wall-clock label of a tick taken at `at`: `now`'s wall clock less
/// the monotonic time since, so labels keep the ticks' order and spacing
/// even when the wall clock was stepped between them.
fn label_ms(at: Stamp, now: Stamp) -> u64 {
    now.wall_ms
        .saturating_sub(now.mono_ms.saturating_sub(at.mono_ms))
}

/// `value` to two decimals, as figures are shown.
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The ring of per-second totals, oldest first.
#[derive(Default)]
pub struct Ring {
    ticks: VecDeque<Totals>,
}

impl Ring {
    pub fn push(&mut self, totals: Totals) {
        while self.ticks.len() >= TRAFFIC_TICKS_MAX {
            self.ticks.pop_front();
        }
        self.ticks.push_back(totals);
    }

    /// `{window_s, last_interval, since_start, per_second}` given the
    /// totals `now`: the last interval is measured from the newest tick at
    /// least `window_s` old (the oldest kept while the server is younger),
    /// so it may be up to a tick longer than `window_s`.
    pub fn report(&self, now: &Totals, window_s: u64) -> Value {
        let window_s = window_s.min(TRAFFIC_TICKS_MAX as u64);
        let start = now.at.mono_ms.saturating_sub(window_s * 1000);
        let from = self
            .ticks
            .iter()
            .rev()
            .find(|t| t.at.mono_ms <= start)
            .or_else(|| self.ticks.front());
        let last_interval = match from {
            Some(from) => {
                let seconds = now.at.mono_ms.saturating_sub(from.at.mono_ms) as f64 / 1000.0;
                now.since(from).figures(Some(seconds))
            }
            None => Totals::default().figures(Some(0.0)),
        };
        let skip = self.ticks.len().saturating_sub(SERIES_POINTS_MAX + 1);
        let recent: Vec<&Totals> = self.ticks.iter().skip(skip).collect();
        let per_second: Vec<Value> = recent
            .windows(2)
            .map(|pair| {
                let seconds = pair[1].at.mono_ms.saturating_sub(pair[0].at.mono_ms) as f64 / 1000.0;
                let mut point = pair[1].since(pair[0]).figures(Some(seconds));
                if let Some(map) = point.as_object_mut() {
                    map.insert("at_ms".into(), json!(label_ms(pair[1].at, now.at)));
                }
                point
            })
            .collect();
        json!({
            "window_s": window_s,
            "last_interval": last_interval,
            "since_start": now.figures(None),
            "per_second": per_second,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(at_s: u64, count: u64, errors_5xx: u64) -> Totals {
        Totals {
            at: Stamp {
                mono_ms: at_s * 1000,
                wall_ms: 1_700_000_000_000 + at_s * 1000,
            },
            count,
            errors_5xx,
            ..Totals::default()
        }
    }

    #[test]
    fn the_last_interval_counts_only_what_happened_in_it() {
        let mut ring = Ring::default();
        for s in 0..100 {
            // 1,000 requests in the first second, then 2 a second.
            ring.push(totals(s, 1000 + 2 * s, s));
        }
        let now = totals(100, 1200, 100);
        let report = ring.report(&now, 10);
        assert_eq!(report["last_interval"]["requests"], 20);
        assert_eq!(report["last_interval"]["requests_per_s"], 2.0);
        assert_eq!(report["last_interval"]["errors_5xx"], 10);
        assert_eq!(report["last_interval"]["errors_5xx_percent"], 50.0);
        assert_eq!(report["since_start"]["requests"], 1200);
        assert_eq!(report["per_second"].as_array().map(Vec::len), Some(99));
    }

    #[test]
    fn the_ring_stays_within_its_bound() {
        let mut ring = Ring::default();
        for s in 0..(TRAFFIC_TICKS_MAX as u64 * 2) {
            ring.push(totals(s, s, 0));
        }
        assert_eq!(ring.ticks.len(), TRAFFIC_TICKS_MAX);
        let now = totals(TRAFFIC_TICKS_MAX as u64 * 2, 0, 0);
        let report = ring.report(&now, 86_400);
        assert_eq!(report["window_s"], TRAFFIC_TICKS_MAX as u64);
        assert_eq!(
            report["per_second"].as_array().map(Vec::len),
            Some(SERIES_POINTS_MAX)
        );
    }

    /// A wall clock stepped back an hour mid-way changes no rate and no
    /// order: spans come from the monotonic clock.
    #[test]
    fn a_wall_clock_step_changes_no_rate_and_no_order() {
        let mut ring = Ring::default();
        for s in 0..20u64 {
            let mut t = totals(s, 10 * s, 0);
            if s >= 10 {
                t.at.wall_ms -= 3_600_000;
            }
            ring.push(t);
        }
        let mut now = totals(20, 200, 0);
        now.at.wall_ms -= 3_600_000;
        let report = ring.report(&now, 5);
        assert_eq!(report["last_interval"]["requests_per_s"], 10.0);
        assert_eq!(report["last_interval"]["seconds"], 5.0);
        let points = report["per_second"].as_array().expect("points");
        assert!(points.iter().all(|p| p["requests_per_s"] == 10.0));
        assert!(
            points
                .windows(2)
                .all(|p| p[0]["at_ms"].as_u64() < p[1]["at_ms"].as_u64())
        );
    }
}
