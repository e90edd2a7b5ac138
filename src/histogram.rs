//! A fixed-bucket latency histogram of atomics: recording is a few relaxed
//! atomic adds, no lock, so every request can afford it. Plain data, at the
//! bottom of the layers: the store's writer and the monitor both record in one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in microseconds (Prometheus `le` labels are
/// these in seconds); one more bucket catches everything above.
pub const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A copy of a histogram's counters at one moment.
#[derive(Clone, Default, Debug)]
pub struct HistogramSnapshot {
    pub buckets: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&self, micros: u64) {
        let index = BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0u64; BOUNDS_US.len() + 1];
        for (slot, bucket) in buckets.iter_mut().zip(&self.buckets) {
            *slot = bucket.load(Ordering::Relaxed);
        }
        HistogramSnapshot {
            buckets,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// The `q` quantile (0..=1) in milliseconds, interpolated within its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (index, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let lower = if index == 0 { 0 } else { BOUNDS_US[index - 1] };
                let upper = BOUNDS_US
                    .get(index)
                    .copied()
                    .unwrap_or(lower.saturating_mul(2));
                let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return (lower as f64 + within * (upper - lower) as f64) / 1000.0;
            }
            seen += n;
        }
        BOUNDS_US[BOUNDS_US.len() - 1] as f64 / 1000.0
    }

    /// Adds `other`'s counts to these (one histogram of several).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (sum, n) in self.buckets.iter_mut().zip(other.buckets) {
            *sum = sum.saturating_add(n);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count = self.count.saturating_add(other.count);
    }

    /// What was recorded between `earlier` and these counts.
    pub fn saturating_sub(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut buckets = self.buckets;
        for (n, before) in buckets.iter_mut().zip(earlier.buckets) {
            *n = n.saturating_sub(before);
        }
        HistogramSnapshot {
            buckets,
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(800); // 0.5-1 ms bucket
        }
        h.record(40_000); // 25-50 ms bucket
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        let p50 = s.quantile_ms(0.5);
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p999 = s.quantile_ms(0.999);
        assert!((25.0..=50.0).contains(&p999), "{p999}");
        assert!((s.mean_ms() - 1.192).abs() < 1e-9);
    }

    #[test]
    fn snapshots_add_and_subtract_bucket_by_bucket() {
        let h = Histogram::default();
        h.record(800);
        let before = h.snapshot();
        h.record(40_000);
        h.record(800);
        let after = h.snapshot();
        let between = after.saturating_sub(&before);
        assert_eq!((between.count, between.sum_us), (2, 40_800));
        let mut total = before.clone();
        total.add(&between);
        assert_eq!(total.buckets, after.buckets);
        assert_eq!((total.count, total.sum_us), (after.count, after.sum_us));
        // A counter that went backwards (a restart) gives zero, not a wrap.
        assert_eq!(before.saturating_sub(&after).count, 0);
    }
}
