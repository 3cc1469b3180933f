//! Client-side rate pacing: one token bucket per tenant, paused as a whole by a 429's `Retry-After`.

use serde::{Deserialize, Serialize};

/// The tenant's request budget as the client knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimit {
    /// Requests per minute (the reference module's "100 requests per minute per tenant").
    pub per_minute: u32,
    /// Bucket capacity. `None` means one second's worth of the per-minute rate (at least 1).
    ///
    /// A client is told a per-minute quota but not the burst the tenant's limiter allows. Bursting a whole
    /// minute's worth meets a 429 storm at any gateway whose bucket is smaller; one second's worth is the
    /// smallest burst common gateways configure for such a quota, so it stays under a limiter the client
    /// cannot see (network jitter aside: requests that bunch up in transit can still meet an occasional
    /// 429, which then pauses the whole pacer), and costs at most one second against the fastest possible
    /// schedule. Set it when the tenant's burst is known.
    pub burst: Option<u32>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: 100,
            burst: None,
        }
    }
}

impl RateLimit {
    /// The bucket capacity in use: `burst`, or one second's worth of `per_minute` (at least 1).
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_minute / 60).max(1)
    }
}

/// One token = this many units; refill adds `per_minute` units per millisecond, so all math is exact integers.
const UNITS_PER_TOKEN: u64 = 60_000;

/// A token bucket on monotonic time: the engine paces itself with one, and the simulated tenant's limiter is
/// one too (tests use it to check that a run of sends kept to a limit).
#[derive(Clone, Debug)]
pub struct Pacer {
    per_minute: u64,
    capacity: u64,
    units: u64,
    last_ms: Option<u64>,
    paused_until_ms: u64,
}

impl Pacer {
    /// A full bucket for this limit.
    pub fn new(limit: &RateLimit) -> Self {
        let per_minute = u64::from(limit.per_minute.max(1));
        let burst = u64::from(limit.effective_burst());
        let capacity = burst * UNITS_PER_TOKEN;
        Self {
            per_minute,
            capacity,
            units: capacity,
            last_ms: None,
            paused_until_ms: 0,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let from = self.last_ms.unwrap_or(now_ms).max(self.paused_until_ms);
        if now_ms > from {
            let add = (now_ms - from).saturating_mul(self.per_minute);
            self.units = self.units.saturating_add(add).min(self.capacity);
        }
        self.last_ms = Some(now_ms.max(from));
    }

    /// Takes one token if one is available at `now_ms`; otherwise returns when one will be.
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), u64> {
        if now_ms < self.paused_until_ms {
            return Err(self.paused_until_ms.saturating_add(self.ms_until_token(0)));
        }
        self.refill(now_ms);
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            Ok(())
        } else {
            Err(now_ms.saturating_add(self.ms_until_token(self.units)))
        }
    }

    fn ms_until_token(&self, units: u64) -> u64 {
        (UNITS_PER_TOKEN - units).div_ceil(self.per_minute)
    }

    /// Changes the limit. The bucket keeps its current fill, clamped to the new capacity; refill from
    /// the last acquisition on uses the new rate.
    #[cfg(feature = "sim")]
    pub fn set_limit(&mut self, limit: &RateLimit) {
        let fresh = Self::new(limit);
        self.per_minute = fresh.per_minute;
        self.capacity = fresh.capacity;
        self.units = self.units.min(self.capacity);
    }

    /// Pauses every request until `until_ms` and empties the bucket, so sending resumes at the steady rate
    /// rather than with a burst that would meet another 429.
    pub fn pause_until(&mut self, until_ms: u64) {
        if until_ms > self.paused_until_ms {
            self.paused_until_ms = until_ms;
            self.units = 0;
            self.last_ms = Some(until_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut p = Pacer::new(&RateLimit {
            per_minute: 100,
            burst: Some(2),
        });
        assert!(p.try_acquire(0).is_ok());
        assert!(p.try_acquire(0).is_ok());
        assert_eq!(p.try_acquire(0), Err(600));
        assert_eq!(p.try_acquire(599), Err(600));
        assert!(p.try_acquire(600).is_ok());
        assert_eq!(p.try_acquire(600), Err(1200));
    }

    #[test]
    fn the_default_burst_is_one_seconds_worth() {
        let mut p = Pacer::new(&RateLimit {
            per_minute: 6_000,
            burst: None,
        });
        for _ in 0..100 {
            assert!(p.try_acquire(0).is_ok());
        }
        assert_eq!(p.try_acquire(0), Err(10));
        let mut slow = Pacer::new(&RateLimit::default());
        assert!(slow.try_acquire(0).is_ok());
        assert_eq!(slow.try_acquire(0), Err(600));
    }

    #[test]
    fn pause_blocks_everything_then_resumes_empty() {
        let mut p = Pacer::new(&RateLimit::default());
        p.pause_until(10_000);
        assert_eq!(p.try_acquire(5_000), Err(10_600));
        assert_eq!(p.try_acquire(10_000), Err(10_600));
        assert!(p.try_acquire(10_600).is_ok());
    }
}
