//! Latency statistics with a fixed memory footprint.

use serde::{Deserialize, Serialize};

/// The largest latency tracked exactly; longer ones are clamped to it (one hour).
pub const MAX_TRACKED_LATENCY_MS: u64 = 3_600_000;

/// A latency histogram of fixed size (HDR, 2 significant digits, 1 ms .. 1 h), plus an exact sum and max.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    _private: (),
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        unimplemented!()
    }
    /// Records one latency.
    pub fn record(&mut self, latency_ms: u64) {
        let _ = latency_ms;
        unimplemented!()
    }
    /// The summary so far (all zeros when empty).
    pub fn summary(&self) -> LatencySummary {
        unimplemented!()
    }
}

/// Count, average and percentiles of latencies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
