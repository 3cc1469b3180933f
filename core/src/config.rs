//! Engine configuration. Every default names where its value comes from.

use serde::{Deserialize, Serialize};

use crate::audit::ChainHead;
use crate::error::ConfigError;
use crate::history::HistoryConfig;
use crate::pacer::RateLimit;
use crate::retry::RetryPolicy;
use crate::state::ReasonCodeTable;

/// A secret string (client secret, token). `Debug` never shows it and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for building a request. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// OAuth client credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
}

/// Which API dialect to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ProfileKind {
    /// The reference module's endpoints (served by the simulated tenant).
    #[default]
    Seed,
}

/// Where access tokens come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum TokenSource {
    /// The engine asks the token endpoint with the client credentials.
    #[default]
    ClientCredentials,
    /// The host hands tokens in (`Event::TokenRequested` → `Input::AccessToken`): a browser page gets them
    /// from its own back end and never holds a client secret.
    External,
}

/// The API base URL of a tenant domain: `https://{domain}.api.nice.incontact.com`, as the reference
/// module builds it. A domain is 1 to 63 letters, digits and `-` (nothing that could change the host).
pub fn tenant_base_url(domain: &str) -> Result<String, ConfigError> {
    let ok = !domain.is_empty()
        && domain.len() <= 63
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(ConfigError::Invalid {
            field: "domain",
            reason: "a tenant domain is letters, digits and '-' only".to_owned(),
        });
    }
    Ok(format!("https://{domain}.api.nice.incontact.com"))
}

/// Everything the engine needs. Build with [`EngineConfig::new`] and adjust fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EngineConfig {
    /// API base URL, e.g. `https://acme.api.nice.incontact.com` (no trailing slash needed).
    pub base_url: String,
    /// Token endpoint; `{base_url}/oauth2/token` when `None`, as in the reference.
    pub token_url: Option<String>,
    /// OAuth credentials (unused with [`TokenSource::External`]).
    pub credentials: Credentials,
    /// Where tokens come from.
    pub token_source: TokenSource,
    /// API dialect.
    pub profile: ProfileKind,
    /// Seed of the generator behind jitter and ids. Same seed + same inputs = same outputs.
    pub seed: u64,
    /// State → reason code.
    pub reason_codes: ReasonCodeTable,
    /// Refresh the token when less than this much of its life remains (the reference's 60 s).
    pub token_refresh_margin_ms: u64,
    /// How long a schedule answer is reused per agent; 0 asks every time as the reference does.
    pub schedule_ttl_ms: u64,
    /// A break check older than this when the state change is about to be sent is done again, so a
    /// break that became due while the change waited for the pacer is still caught.
    pub policy_max_age_ms: u64,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Client-side rate limit.
    pub rate_limit: RateLimit,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// History retention.
    pub history: HistoryConfig,
    /// Audit records kept in memory for the report's `logs`.
    pub report_log_capacity: usize,
    /// Continue an existing audit chain (after a restart) instead of starting a new one.
    pub audit_chain_head: Option<ChainHead>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            token_url: None,
            credentials: Credentials {
                client_id: String::new(),
                client_secret: Secret::new(""),
            },
            profile: ProfileKind::Seed,
            token_source: TokenSource::ClientCredentials,
            seed: 0,
            reason_codes: ReasonCodeTable::default(),
            token_refresh_margin_ms: 60_000,
            schedule_ttl_ms: 60_000,
            policy_max_age_ms: 30_000,
            retry: RetryPolicy::default(),
            rate_limit: RateLimit::default(),
            request_timeout_ms: 10_000,
            history: HistoryConfig::default(),
            report_log_capacity: 10_000,
            audit_chain_head: None,
        }
    }
}

impl EngineConfig {
    /// A configuration with defaults for everything but the endpoint and credentials.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            credentials: Credentials {
                client_id: client_id.into(),
                client_secret,
            },
            ..Self::default()
        }
    }

    /// Checks every setting; the error names the field, never a secret.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !url_ok(&self.base_url) {
            return invalid("base_url", "must be an http(s) URL");
        }
        if let Some(t) = &self.token_url {
            if !url_ok(t) {
                return invalid("token_url", "must be an http(s) URL");
            }
        }
        if self.token_source == TokenSource::ClientCredentials {
            if self.credentials.client_id.is_empty() {
                return invalid("client_id", "is empty");
            }
            if self.credentials.client_secret.is_empty() {
                return invalid("client_secret", "is empty");
            }
        }
        if self.rate_limit.per_minute == 0 {
            return invalid("rate_limit.per_minute", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms", "must be at least 1");
        }
        if self.retry.cap_ms < self.retry.base_ms {
            return invalid("retry.cap_ms", "must be at least retry.base_ms");
        }
        if self.history.max_entries_per_agent == 0 || self.history.max_agents == 0 {
            return invalid("history", "limits must be at least 1");
        }
        Ok(())
    }

    /// The token endpoint in use.
    pub fn token_endpoint(&self) -> String {
        self.token_url
            .clone()
            .unwrap_or_else(|| format!("{}/oauth2/token", self.base_url.trim_end_matches('/')))
    }
}
