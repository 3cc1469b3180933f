//! Latency statistics with a fixed memory footprint.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency tracked exactly; longer ones are clamped to it (one hour).
pub const MAX_TRACKED_LATENCY_MS: u64 = 3_600_000;

/// Significant decimal digits the histogram keeps.
const SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram of fixed size (HDR, 2 significant digits, 1 ms .. 1 h), plus an exact sum and max.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    /// Fixed-size (no auto-resize) histogram; values are clamped before recording.
    histogram: Histogram<u64>,
    /// Exact number of records (the histogram's own count saturates the same way, but this is explicit).
    count: u64,
    /// Exact sum of the recorded (unclamped) latencies.
    sum: u128,
    /// Exact maximum of the recorded (unclamped) latencies.
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_LATENCY_MS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self {
            histogram,
            count: 0,
            sum: 0,
            max: 0,
        }
    }
    /// Records one latency.
    pub fn record(&mut self, latency_ms: u64) {
        // Values below the lowest discernible value (0) land in the first bucket; values above the range
        // are clamped, so this never fails and the histogram never resizes.
        self.histogram
            .saturating_record(latency_ms.min(MAX_TRACKED_LATENCY_MS));
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(u128::from(latency_ms));
        self.max = self.max.max(latency_ms);
    }
    /// The summary so far (all zeros when empty).
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        // The histogram reports the highest value equivalent to a bucket, which can lie above the exact max
        // or the tracked range; cap at both.
        let quantile = |q: f64| {
            self.histogram
                .value_at_quantile(q)
                .min(self.max)
                .min(MAX_TRACKED_LATENCY_MS)
        };
        LatencySummary {
            count: self.count,
            average_ms: self.sum as f64 / self.count as f64,
            p50_ms: quantile(0.50),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            max_ms: self.max,
        }
    }
}

/// Count, average and percentiles of latencies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many.
    pub count: u64,
    /// Exact mean.
    pub average_ms: f64,
    /// Median.
    pub p50_ms: u64,
    /// 95th percentile.
    pub p95_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Exact maximum.
    pub max_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_summary_is_all_zeros() {
        let h = LatencyHistogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert_eq!(h.summary().average_ms, 0.0);
    }

    #[test]
    fn percentiles_on_uniform_1_to_1000() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.average_ms, 500.5);
        assert_eq!(s.max_ms, 1000);
        // 2 significant digits: relative error well under 1 %.
        assert!((495..=505).contains(&s.p50_ms), "p50 {}", s.p50_ms);
        assert!((945..=955).contains(&s.p95_ms), "p95 {}", s.p95_ms);
        assert!((985..=995).contains(&s.p99_ms), "p99 {}", s.p99_ms);
        assert!(s.p50_ms <= s.p95_ms && s.p95_ms <= s.p99_ms && s.p99_ms <= s.max_ms);
    }

    #[test]
    fn percentiles_never_exceed_exact_max() {
        let mut h = LatencyHistogram::new();
        // 1001 shares a bucket whose highest equivalent value is above 1001.
        h.record(1001);
        let s = h.summary();
        assert_eq!(s.p50_ms, 1001);
        assert_eq!(s.p99_ms, 1001);
        assert_eq!(s.max_ms, 1001);
    }

    #[test]
    fn zero_is_recordable() {
        let mut h = LatencyHistogram::new();
        h.record(0);
        h.record(0);
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.average_ms, 0.0);
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms), (0, 0, 0, 0));
    }

    #[test]
    fn values_above_range_are_clamped_but_sum_and_max_stay_exact() {
        let mut h = LatencyHistogram::new();
        let huge = MAX_TRACKED_LATENCY_MS * 10;
        h.record(huge);
        h.record(u64::MAX);
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.max_ms, u64::MAX);
        assert_eq!(s.average_ms, (huge as f64 + u64::MAX as f64) / 2.0);
        // The histogram itself only knows the clamped value (within its precision).
        let tolerance = MAX_TRACKED_LATENCY_MS / 100;
        assert!(
            s.p50_ms >= MAX_TRACKED_LATENCY_MS - tolerance,
            "{}",
            s.p50_ms
        );
        assert!(s.p99_ms <= MAX_TRACKED_LATENCY_MS, "{}", s.p99_ms);
    }

    #[test]
    fn memory_is_fixed() {
        let mut h = LatencyHistogram::new();
        let before = h.histogram.distinct_values();
        for v in (0..200_000u64).map(|i| i * 97 % (MAX_TRACKED_LATENCY_MS * 2)) {
            h.record(v);
        }
        assert_eq!(h.histogram.distinct_values(), before);
        assert_eq!(h.summary().count, 200_000);
    }
}
