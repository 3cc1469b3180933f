//! The token cache: one token per engine, refreshed early, fetched by one request at a time.

use crate::config::Secret;
use crate::http::RequestId;

/// Where the single token fetch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// No fetch under way.
    Idle,
    /// Waiting for the pacer; `retry` is the retry number (0 for the first try).
    Queued { retry: u32 },
    /// Sent.
    InFlight { request: RequestId, retry: u32 },
    /// Waiting to be retried.
    Backoff { until_ms: u64, retry: u32 },
}

/// A cached bearer token plus the single-flight fetch state.
///
/// Every stored token gets a new `generation`, so a 401 answered to a request made with an older token does not
/// throw away a newer one that another request already fetched.
#[derive(Debug)]
pub(crate) struct TokenCache {
    /// The token and the time from which it is no longer handed out (refresh due).
    token: Option<(Secret, u64)>,
    generation: u64,
    refresh_margin_ms: u64,
    pub(crate) fetch: Fetch,
}

impl TokenCache {
    pub(crate) fn new(refresh_margin_ms: u64) -> Self {
        Self {
            token: None,
            generation: 0,
            refresh_margin_ms,
            fetch: Fetch::Idle,
        }
    }

    /// The token and its generation, if it has more than the refresh margin of life left at `now_ms`.
    pub(crate) fn usable(&self, now_ms: u64) -> Option<(&Secret, u64)> {
        match &self.token {
            Some((t, refresh_at)) if now_ms < *refresh_at => Some((t, self.generation)),
            _ => None,
        }
    }

    /// Stores a token. It is refreshed `refresh_margin_ms` before it expires, but never later than half-way
    /// through its life: a token that lives less than the margin would otherwise never be usable.
    pub(crate) fn store(&mut self, token: Secret, expires_in_ms: u64, now_ms: u64) {
        self.generation += 1;
        let margin = self.refresh_margin_ms.min(expires_in_ms / 2);
        let refresh_at = now_ms.saturating_add(expires_in_ms - margin);
        self.token = Some((token, refresh_at));
        self.fetch = Fetch::Idle;
    }

    /// Drops the token if it is still the one of `generation` (a 401 proved it dead).
    pub(crate) fn invalidate(&mut self, generation: u64) {
        if generation == self.generation {
            self.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_inside_the_margin() {
        let mut c = TokenCache::new(60_000);
        assert!(c.usable(0).is_none());
        c.store(Secret::new("t"), 3_600_000, 0);
        assert!(c.usable(3_539_999).is_some());
        assert!(c.usable(3_540_000).is_none());
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_used_for_half_its_life() {
        let mut c = TokenCache::new(60_000);
        c.store(Secret::new("t"), 30_000, 1_000);
        assert!(c.usable(15_999).is_some());
        assert!(c.usable(16_000).is_none());
        c.store(Secret::new("z"), 0, 1_000);
        assert!(c.usable(1_000).is_none());
    }

    #[test]
    fn stale_generation_does_not_invalidate_new_token() {
        let mut c = TokenCache::new(0);
        c.store(Secret::new("a"), 1_000, 0);
        let (_, g1) = c.usable(0).unwrap();
        c.store(Secret::new("b"), 1_000, 0);
        c.invalidate(g1);
        assert_eq!(c.usable(0).unwrap().0.expose(), "b");
        let (_, g2) = c.usable(0).unwrap();
        c.invalidate(g2);
        assert!(c.usable(0).is_none());
    }
}
