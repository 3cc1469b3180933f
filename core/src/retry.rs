//! Retry scheduling: capped exponential backoff with jitter, `Retry-After` honoured.

use serde::{Deserialize, Serialize};

use crate::rng::DetRng;

/// The retry schedule. Defaults are the reference module's `executeWithRetry`: 3 retries, waiting
/// `1000·2^retry + jitter[0,1000)` ms, plus a cap the reference lacked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryPolicy {
    /// Retries after the first attempt (the reference's `maxRetries = 3`).
    pub max_retries: u32,
    /// The base of the exponential (the reference's 1000 ms).
    pub base_ms: u64,
    /// Jitter is drawn uniformly in `[0, jitter_ms)` (the reference's `Math.random() * 1000`).
    pub jitter_ms: u64,
    /// No computed backoff exceeds this.
    pub cap_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the request fails at once.
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_ms: 1_000,
            jitter_ms: 1_000,
            cap_ms: 30_000,
            max_retry_after_ms: 300_000,
        }
    }
}

/// What to do after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Send again after this many milliseconds.
    RetryAfter(u64),
    /// Give up.
    GiveUp,
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (from 1), without `Retry-After`.
    pub fn backoff_ms(&self, retry: u32, rng: &mut DetRng) -> u64 {
        let exp = self
            .base_ms
            .saturating_mul(1u64.checked_shl(retry.min(63)).unwrap_or(u64::MAX));
        exp.saturating_add(rng.below(self.jitter_ms))
            .min(self.cap_ms)
    }

    /// Decides retry number `retry` (from 1): give up past `max_retries`, or when the server asks for a wait
    /// longer than `max_retry_after_ms`; otherwise wait the longer of the backoff and `Retry-After`.
    pub fn decide(
        &self,
        retry: u32,
        retry_after_ms: Option<u64>,
        rng: &mut DetRng,
    ) -> RetryDecision {
        if retry > self.max_retries {
            return RetryDecision::GiveUp;
        }
        if retry_after_ms.is_some_and(|ra| ra > self.max_retry_after_ms) {
            return RetryDecision::GiveUp;
        }
        let backoff = self.backoff_ms(retry, rng);
        RetryDecision::RetryAfter(backoff.max(retry_after_ms.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedule_with_cap() {
        let p = RetryPolicy::default();
        let mut rng = DetRng::new(3);
        for retry in 1..=3 {
            let d = p.backoff_ms(retry, &mut rng);
            let base = 1000 << retry;
            assert!((base..base + 1000).contains(&d), "retry {retry}: {d}");
        }
        assert_eq!(p.backoff_ms(10, &mut rng), 30_000);
        assert_eq!(p.decide(4, None, &mut rng), RetryDecision::GiveUp);
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let p = RetryPolicy::default();
        let mut rng = DetRng::new(3);
        assert_eq!(
            p.decide(1, Some(20_000), &mut rng),
            RetryDecision::RetryAfter(20_000)
        );
        match p.decide(1, Some(1), &mut rng) {
            RetryDecision::RetryAfter(d) => assert!(d >= 2000),
            RetryDecision::GiveUp => panic!("should retry"),
        }
        assert_eq!(p.decide(1, Some(400_000), &mut rng), RetryDecision::GiveUp);
    }
}
