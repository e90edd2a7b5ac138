//! Self-monitoring: per-route and per-operation request metrics, system and
//! process figures, alert rules. The monitor only reads; it never changes
//! what it watches. A thread ticks once a second (system figures, request
//! rates) and evaluates alerts every MONITORING_INTERVAL.

pub mod alerts;
pub mod process;
pub mod prometheus;
pub mod requests;
pub mod system;
pub mod traffic;

use crate::util::LockUnpoisoned;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use alerts::{AlertBook, Alerts, Reading, Thresholds};
use requests::{RequestMetrics, RouteSnapshot};
use system::{SystemSampler, SystemSnapshot};

/// Seconds of per-second request totals kept for rates (requests per minute).
const RATE_WINDOW_S: usize = 60;
const TICK: Duration = Duration::from_secs(1);

pub struct Monitor {
    pub requests: RequestMetrics,
    system: Mutex<SystemSnapshot>,
    alerts: Mutex<AlertBook>,
    /// Per-second totals per route, newest last, at most RATE_WINDOW_S + 1.
    totals: Mutex<VecDeque<Vec<u64>>>,
    /// Per-second totals over all routes, for the last-interval figures.
    traffic: Mutex<traffic::Ring>,
    thresholds: Thresholds,
    interval: Duration,
    started: Instant,
    breaker: Arc<crate::store::breaker::Breaker>,
}

/// The monitor thread; stopping it joins it.
pub struct MonitorThread {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl MonitorThread {
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Now, on the monotonic clock (from `started`) and the wall clock.
fn stamp(started: Instant) -> traffic::Stamp {
    traffic::Stamp {
        mono_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        wall_ms: crate::clock::unix_millis(),
    }
}

impl Monitor {
    pub fn new(
        routes: Vec<(&str, &str, &str)>,
        thresholds: Thresholds,
        interval: Duration,
        breaker: Arc<crate::store::breaker::Breaker>,
    ) -> Monitor {
        Monitor {
            requests: RequestMetrics::new(routes),
            system: Mutex::new(SystemSnapshot::default()),
            alerts: Mutex::new(AlertBook::default()),
            totals: Mutex::new(VecDeque::with_capacity(RATE_WINDOW_S + 1)),
            traffic: Mutex::new(traffic::Ring::default()),
            thresholds,
            interval,
            started: Instant::now(),
            breaker,
        }
    }

    /// Starts the sampling thread.
    pub fn start(self: &Arc<Self>, db_path: &Path) -> std::io::Result<MonitorThread> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let monitor = Arc::clone(self);
        let mut sampler = SystemSampler::new(db_path);
        *monitor.system.lock_unpoisoned() = sampler.sample();
        let start = traffic::Totals::of(&monitor.requests.snapshot(), stamp(monitor.started));
        monitor.traffic.lock_unpoisoned().push(start);
        let thread = std::thread::Builder::new()
            .name("monitor".into())
            .stack_size(crate::limits::SERVICE_STACK_BYTES * 2)
            .spawn(move || {
                let mut next_evaluation = Instant::now() + monitor.interval.min(TICK);
                let mut previous = monitor.requests.snapshot();
                loop {
                    match stopped.recv_timeout(TICK) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    monitor.tick(&mut sampler);
                    if Instant::now() >= next_evaluation {
                        next_evaluation = Instant::now() + monitor.interval;
                        previous = monitor.evaluate(&previous);
                    }
                }
            })?;
        Ok(MonitorThread { stop, thread })
    }

    fn tick(&self, sampler: &mut SystemSampler) {
        let sample = sampler.sample();
        *self.system.lock_unpoisoned() = sample;
        let routes = self.requests.snapshot();
        self.traffic
            .lock_unpoisoned()
            .push(traffic::Totals::of(&routes, stamp(self.started)));
        let counts: Vec<u64> = routes.iter().map(RouteSnapshot::count).collect();
        let mut totals = self.totals.lock_unpoisoned();
        if totals.len() > RATE_WINDOW_S {
            totals.pop_front();
        }
        totals.push_back(counts);
    }

    /// Evaluates the alert rules over what happened since `previous`.
    fn evaluate(&self, previous: &[RouteSnapshot]) -> Vec<RouteSnapshot> {
        let now = self.requests.snapshot();
        let (mut count, mut sum_us, mut errors) = (0u64, 0u64, 0u64);
        for (after, before) in now.iter().zip(previous) {
            count += after.latency.count.saturating_sub(before.latency.count);
            sum_us += after.latency.sum_us.saturating_sub(before.latency.sum_us);
            errors += after.errors_5xx().saturating_sub(before.errors_5xx());
        }
        let system = self.system();
        let circuit_open = self.breaker.state() == crate::store::breaker::State::Open;
        let reading = Reading {
            circuit_open: if circuit_open { 1.0 } else { 0.0 },
            memory_percent: system.memory_used_percent,
            cpu_percent: system.cpu_percent,
            response_ms: if count == 0 {
                0.0
            } else {
                sum_us as f64 / count as f64 / 1000.0
            },
            error_percent: if count == 0 {
                0.0
            } else {
                errors as f64 * 100.0 / count as f64
            },
        };
        self.alerts
            .lock_unpoisoned()
            .evaluate(&reading, &self.thresholds, Instant::now());
        now
    }

    pub fn system(&self) -> SystemSnapshot {
        self.system.lock_unpoisoned().clone()
    }

    pub fn alerts(&self) -> Alerts {
        let book = self.alerts.lock_unpoisoned();
        Alerts {
            active: book.active(),
            recent: book.recent(),
            firings: book.firings.clone(),
        }
    }

    /// Request figures over the last MONITORING_INTERVAL (capped at
    /// `traffic::TRAFFIC_TICKS_MAX` seconds) and since start, and a
    /// per-second series (`traffic::Ring::report`).
    pub fn traffic(&self, routes: &[RouteSnapshot]) -> serde_json::Value {
        let now = traffic::Totals::of(routes, stamp(self.started));
        self.traffic
            .lock_unpoisoned()
            .report(&now, self.interval.as_secs().max(1))
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Requests per minute per route over the last minute (scaled up while
    /// the server has run less than a minute).
    pub fn requests_per_minute(&self, current: &[RouteSnapshot]) -> Vec<f64> {
        let totals = self.totals.lock_unpoisoned();
        let Some(oldest) = totals.front() else {
            return vec![0.0; current.len()];
        };
        let seconds = totals.len().max(1) as f64;
        current
            .iter()
            .zip(oldest)
            .map(|(now, then)| now.count().saturating_sub(*then) as f64 * 60.0 / seconds)
            .collect()
    }
}
