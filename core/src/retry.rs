//! Retry scheduling: capped exponential backoff with jitter, `Retry-After` honoured.
//!
//! The engine (API and token requests) and the webhook outbox count retries the same way: retry `n` (from 1)
//! waits [`RetryPolicy::backoff_ms`]`(n)`.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::rng::DetRng;

/// The retry schedule. Defaults are the reference module's `executeWithRetry`: 3 retries, waiting
/// `1000·2^retry + jitter[0,1000)` ms, plus a cap the reference lacked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryPolicy {
    /// Retries after the first attempt (the reference's `maxRetries = 3`). A 429 answered with
    /// `Retry-After` does not spend one: throttling is bounded by the commit window instead.
    pub max_retries: u32,
    /// The base of the exponential (the reference's 1000 ms).
    pub base_ms: u64,
    /// Jitter drawn uniformly in `[0, jitter_ms)` (the reference's `Math.random() * 1000`), added after the
    /// cap, so retries that reached the cap still spread out instead of arriving together.
    pub jitter_ms: u64,
    /// No exponential step exceeds this (jitter comes on top).
    pub cap_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the request gives up at once.
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
pub(crate) enum RetryDecision {
    /// Send again after this many milliseconds.
    RetryAfter(u64),
    /// Give up.
    GiveUp,
}

impl RetryPolicy {
    /// Checks the schedule; `field` names it in the error.
    pub fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.base_ms == 0 || self.cap_ms < self.base_ms {
            return Err(ConfigError::Invalid {
                field,
                reason: "needs base_ms ≥ 1 and cap_ms ≥ base_ms".to_owned(),
            });
        }
        Ok(())
    }

    /// The wait before retry number `retry` (from 1), without `Retry-After`:
    /// `min(base·2^retry, cap) + jitter`.
    pub(crate) fn backoff_ms(&self, retry: u32, rng: &mut DetRng) -> u64 {
        let exp = self
            .base_ms
            .saturating_mul(1u64.checked_shl(retry.min(63)).unwrap_or(u64::MAX));
        exp.min(self.cap_ms)
            .saturating_add(rng.below(self.jitter_ms))
    }

    /// The wait before retry number `retry` when the server asked for `retry_after_ms`: the longer of the
    /// two. Jitter is drawn either way, so the draw sequence does not depend on the header.
    pub(crate) fn delay_ms(
        &self,
        retry: u32,
        retry_after_ms: Option<u64>,
        rng: &mut DetRng,
    ) -> u64 {
        self.backoff_ms(retry, rng).max(retry_after_ms.unwrap_or(0))
    }

    /// Decides retry number `retry` (from 1): give up past `max_retries`, or when the server asks for a wait
    /// longer than `max_retry_after_ms`; otherwise wait [`delay_ms`](Self::delay_ms).
    pub(crate) fn decide(
        &self,
        retry: u32,
        retry_after_ms: Option<u64>,
        rng: &mut DetRng,
    ) -> RetryDecision {
        if retry > self.max_retries {
            return RetryDecision::GiveUp;
        }
        if retry_after_ms.is_some_and(|ra| !self.waits_for(ra)) {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(self.delay_ms(retry, retry_after_ms, rng))
    }

    /// Decides after a 429 that said how long to wait: throttling, not failure. It spends no retry (`retry` is
    /// the one it would be, for the wait), and it bounds the waiting instead: give up when the server asks for
    /// a wait longer than `max_retry_after_ms`, or when the wait would end more than `window_ms` after
    /// `throttled_since_ms` (the first such 429, monotonic); otherwise wait [`delay_ms`](Self::delay_ms).
    pub(crate) fn decide_throttled(
        &self,
        retry: u32,
        retry_after_ms: u64,
        throttled_since_ms: u64,
        now_ms: u64,
        window_ms: u64,
        rng: &mut DetRng,
    ) -> RetryDecision {
        if !self.waits_for(retry_after_ms) {
            return RetryDecision::GiveUp;
        }
        let delay = self.delay_ms(retry, Some(retry_after_ms), rng);
        if now_ms.saturating_add(delay) > throttled_since_ms.saturating_add(window_ms) {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(delay)
        }
    }

    /// Whether a server's `Retry-After` is short enough to wait for (at most `max_retry_after_ms`).
    pub(crate) fn waits_for(&self, retry_after_ms: u64) -> bool {
        retry_after_ms <= self.max_retry_after_ms
    }

    /// The decisions a generator seeded with `seed` draws for `plan` (retry number, `Retry-After`), in order:
    /// the delay, or `None` to give up. For the shared retry vectors.
    pub fn draw_delays(&self, seed: u64, plan: &[(u32, Option<u64>)]) -> Vec<Option<u64>> {
        let mut rng = DetRng::new(seed);
        plan.iter()
            .map(|&(retry, ra)| match self.decide(retry, ra, &mut rng) {
                RetryDecision::RetryAfter(ms) => Some(ms),
                RetryDecision::GiveUp => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedule_with_cap_and_jitter_after_it() {
        let p = RetryPolicy::default();
        let mut rng = DetRng::new(3);
        for retry in 1..=3 {
            let d = p.backoff_ms(retry, &mut rng);
            let base = 1000 << retry;
            assert!((base..base + 1000).contains(&d), "retry {retry}: {d}");
        }
        // At the cap, jitter still spreads retries out.
        let capped: Vec<u64> = (0..20).map(|_| p.backoff_ms(10, &mut rng)).collect();
        assert!(capped.iter().all(|d| (30_000..31_000).contains(d)));
        assert!(capped.windows(2).any(|w| w[0] != w[1]), "{capped:?}");
        assert_eq!(p.decide(4, None, &mut rng), RetryDecision::GiveUp);
        assert_eq!(p.backoff_ms(u32::MAX, &mut rng) / 1000, 30);
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

    #[test]
    fn throttling_spends_no_retry_and_ends_with_its_window() {
        let p = RetryPolicy::default();
        let mut rng = DetRng::new(3);
        // Past `max_retries`, a throttled wait is still taken.
        assert_eq!(
            p.decide_throttled(4, 20_000, 0, 0, 120_000, &mut rng),
            RetryDecision::RetryAfter(20_000)
        );
        // A wait that would end after the window does not start.
        assert_eq!(
            p.decide_throttled(1, 20_000, 0, 100_001, 120_000, &mut rng),
            RetryDecision::GiveUp
        );
        assert_eq!(
            p.decide_throttled(1, 300_001, 0, 0, u64::MAX, &mut rng),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn draws_are_reproducible() {
        let p = RetryPolicy::default();
        let plan = [(1, None), (2, Some(9_000)), (4, None)];
        assert_eq!(p.draw_delays(5, &plan), p.draw_delays(5, &plan));
        assert_eq!(p.draw_delays(5, &plan)[2], None);
    }
}
