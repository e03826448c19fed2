//! A fixed-size histogram of durations, for percentiles over a run of any length.
//!
//! A run that kept every frame-to-event latency grew by 8 bytes an event, about 19 MB a day on a
//! busy camera. This keeps counts in log-spaced buckets instead: 1 % wide from 1 µs to about 17
//! minutes (a value outside is counted in the first or last bucket), so a percentile is within 1 %
//! of the true value, the minimum and maximum are exact, and the memory is fixed (about 17 KB).

/// Smallest value resolved, ms.
const MIN_MS: f64 = 1e-3;
/// Relative width of a bucket.
const GROWTH: f64 = 1.01;
/// Buckets: 1 µs × 1.01^2100 ≈ 1.2 × 10^6 ms.
const BUCKETS: usize = 2100;

/// Counts of values (milliseconds) in log-spaced buckets.
#[derive(Clone, PartialEq)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    min: f64,
    max: f64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

fn bucket(v: f64) -> usize {
    if v.is_nan() || v <= MIN_MS {
        return 0;
    }
    let i = ((v / MIN_MS).ln() / GROWTH.ln()).floor();
    (i as usize).min(BUCKETS - 1)
}

impl Histogram {
    /// Count one value in milliseconds (NaN is ignored).
    pub fn record(&mut self, ms: f64) {
        if ms.is_nan() {
            return;
        }
        if let Some(c) = self.counts.get_mut(bucket(ms)) {
            *c += 1;
        }
        self.count += 1;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    /// How many values were counted.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `q` quantile (0..=1, nearest rank), within 1 % (exact at 0 and 1); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = ((self.count - 1) as f64 * q).round() as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                // the middle of the bucket, kept within what was seen
                let mid = MIN_MS * GROWTH.powf(i as f64 + 0.5);
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent_and_memory_is_fixed() {
        let mut h = Histogram::default();
        let mut exact: Vec<f64> = Vec::new();
        let mut x = 12345u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = 0.05 + (x >> 40) as f64 / (1u64 << 24) as f64 * 400.0;
            h.record(v);
            exact.push(v);
        }
        exact.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let want = exact[((exact.len() - 1) as f64 * q).round() as usize];
            let got = h.quantile(q).unwrap_or(0.0);
            assert!((got - want).abs() <= want * 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(0.0), exact.first().copied());
        assert_eq!(h.quantile(1.0), exact.last().copied());
        assert_eq!(h.len(), 100_000);
        assert_eq!(h.counts.len(), BUCKETS);
        assert!(Histogram::default().quantile(0.5).is_none());
        h.record(f64::NAN);
        h.record(-1.0);
        h.record(1e12);
        assert_eq!(h.len(), 100_002);
    }
}
