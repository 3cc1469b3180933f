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

    /// Stores a token that is refreshed at `refresh_at_mono` (the `cxone` schedule, [`crate::cxone::auth::refresh_at_ms`]).
    pub(crate) fn store_until(&mut self, token: Secret, refresh_at_mono: u64) {
        self.generation += 1;
        self.token = Some((token, refresh_at_mono));
    }

    /// Drops the token if it is still the one of `generation` (a 401 proved it dead).
    pub(crate) fn invalidate(&mut self, generation: u64) {
        if generation == self.generation {
            self.token = None;
        }
    }
}

/// A step of the `cxone` token machine: what the token "fetch" sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthStep {
    /// `GET {auth base}/.well-known/openid-configuration`.
    OpenIdConfiguration,
    /// The password grant (the access key).
    Password,
    /// The refresh grant.
    Refresh,
    /// `GET {issuer}/.well-known/cxone-configuration?tenantId=…`.
    CxoneConfiguration,
}

/// What `cxone` discovery has learnt: the token endpoint, the refresh token, the tenant and its bases.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    /// From the configuration (`token_url`) or the OpenID configuration.
    pub(crate) token_endpoint: Option<String>,
    /// The OpenID configuration's `issuer` (where the CXone configuration is asked).
    pub(crate) issuer: Option<String>,
    pub(crate) refresh_token: Option<Secret>,
    /// The `tenantId` of the last id_token, with its `iss`.
    pub(crate) tenant: Option<(String, Option<String>)>,
    /// The ACD/Admin base, configured or discovered.
    pub(crate) api_base: Option<String>,
    /// The WFM base, configured or discovered.
    pub(crate) wfm_base: Option<String>,
    /// The step in flight.
    pub(crate) step: Option<AuthStep>,
}

impl Discovery {
    /// Both bases are known.
    pub(crate) fn has_bases(&self) -> bool {
        self.api_base.is_some() && self.wfm_base.is_some()
    }

    /// The next step, given whether a usable token is held; `None` when nothing is left to do.
    pub(crate) fn next_step(&self, have_token: bool) -> Option<AuthStep> {
        if !have_token {
            if self.token_endpoint.is_none() {
                return Some(AuthStep::OpenIdConfiguration);
            }
            return Some(if self.refresh_token.is_some() {
                AuthStep::Refresh
            } else {
                AuthStep::Password
            });
        }
        (!self.has_bases()).then_some(AuthStep::CxoneConfiguration)
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
