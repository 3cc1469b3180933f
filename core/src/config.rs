//! Engine configuration. Every default names where its value comes from.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::history::HistoryConfig;
use crate::pacer::RateLimit;
use crate::retry::RetryPolicy;
use crate::state::ReasonCodeTable;

/// What a [`Secret`] serializes as: its value never leaves the process except inside the request that needs
/// it (a token request's form, an `Authorization` header, a webhook signature).
pub const REDACTED: &str = "[redacted]";

/// A secret string (client secret, token, webhook key). `Debug` never shows it, it has no `Display`, and it
/// serializes as `"[redacted]"` (so a configuration or a transcript written to a file holds no secret).
/// It deserializes from its plain value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
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

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
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
    /// The real NICE CXone API: discovery, the password grant, the agent directory, teams' unavailable
    /// codes, the Admin API's `SetAgentState` and the WFM schedule export ([`crate::cxone`]).
    Cxone,
}

impl ProfileKind {
    /// `"seed"` or `"cxone"`, as settings and flags spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Cxone => "cxone",
        }
    }
}

impl std::fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProfileKind {
    type Err = ConfigError;

    /// `seed` or `cxone`, in any case.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "seed" => Ok(Self::Seed),
            "cxone" => Ok(Self::Cxone),
            _ => invalid("CXONE_PROFILE", "expected seed or cxone"),
        }
    }
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

/// The longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// Checks a URL the engine sends to: `https://host[:port][/path][?query]`, or `http://` for a loopback host
/// only (`localhost`, a `127.x.y.z` dotted quad, `[::1]`), so credentials and tokens never cross a network
/// in clear.
///
/// Refused: other schemes, an empty or malformed host, a bad port, user info (`user:pass@`, because
/// credentials in URLs end up in logs), a fragment, whitespace, control or non-ASCII characters (percent-encode
/// or punycode them). The reason names what is wrong and never echoes any part of the URL, whose query or
/// user info may carry secrets.
pub fn check_url(url: &str) -> Result<(), String> {
    let refuse = |reason: &str| Err(reason.to_owned());
    if url.is_empty() {
        return refuse("the URL is empty");
    }
    if url.len() > MAX_URL_LEN {
        return refuse("the URL is longer than 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("the URL contains whitespace or control characters");
    }
    if !url.is_ascii() {
        return refuse("the URL contains non-ASCII characters (percent-encode or punycode them)");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("not an absolute URL (expected https://host/...)");
    };
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return refuse("the scheme must be https (http is allowed for loopback hosts only)");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.contains('#') {
        return refuse("the URL must not have a fragment");
    }
    if authority.contains('@') {
        return refuse("the URL must not contain credentials (user info before '@')");
    }
    let (loopback, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((literal, after)) = bracketed.split_once(']') else {
            return refuse("unterminated IPv6 literal in the host");
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return refuse("unexpected characters after the IPv6 literal"),
            },
        };
        let Ok(ip) = literal.parse::<std::net::Ipv6Addr>() else {
            return refuse("the host is not a valid IPv6 literal");
        };
        (ip.is_loopback(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return refuse("the host is empty");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return refuse("the host contains characters not allowed in a host name");
        }
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        (loopback, port)
    };
    if let Some(p) = port {
        let valid = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n));
        if !valid {
            return refuse("the port must be a number from 1 to 65535");
        }
    }
    if !https && !loopback {
        return refuse("plain http is allowed for loopback hosts only; use https");
    }
    Ok(())
}

/// Where the parts of a URL that may carry a secret begin: the user info (`user:pass@` in the authority), and
/// the query or fragment.
struct SecretParts {
    /// Just past `scheme://` (0 for a URL without a scheme).
    authority_start: usize,
    /// Just past the last `@` of the authority, when it has user info.
    userinfo_end: Option<usize>,
    /// The first `?` or `#` after the authority.
    tail_start: Option<usize>,
}

impl SecretParts {
    fn of(url: &str) -> Self {
        let authority_start = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[authority_start..];
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let userinfo_end = rest[..authority_len]
            .rfind('@')
            .map(|at| authority_start + at + 1);
        let tail_start = rest[authority_len..]
            .find(['?', '#'])
            .map(|i| authority_start + authority_len + i);
        Self {
            authority_start,
            userinfo_end,
            tail_start,
        }
    }
}

/// The URL with what may carry a secret replaced by `[redacted]`: its user info, and its query or fragment
/// (`https://h/hook?token=x` shows as `https://h/hook?[redacted]`). What is left (scheme, host, port, path) is
/// what logs and messages may show.
pub fn redact_url(url: &str) -> String {
    let parts = SecretParts::of(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..parts.authority_start]);
    let host_start = match parts.userinfo_end {
        Some(end) => {
            out.push_str(REDACTED);
            out.push('@');
            end
        }
        None => parts.authority_start,
    };
    match parts.tail_start {
        Some(tail) => {
            out.push_str(&url[host_start..=tail]);
            out.push_str(REDACTED);
        }
        None => out.push_str(&url[host_start..]),
    }
    out
}

/// The URL itself when it has no user info, query or fragment (nothing that may carry a secret), else `None`:
/// only such a URL is ever written to the durable log.
pub(crate) fn loggable_url(url: &str) -> Option<&str> {
    let parts = SecretParts::of(url);
    (parts.userinfo_end.is_none() && parts.tail_start.is_none()).then_some(url)
}

/// The fingerprint of a webhook receiver: the first 16 hex digits of the SHA-256 of its whole URL (query
/// included, so two URLs that differ only by a token are two receivers). Cheap to compare, stable across
/// runs and hosts, and it does not show the URL; a token in the URL should still be a random one, since a
/// guessable token could be confirmed against the fingerprint.
pub fn receiver_fingerprint(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(url.as_bytes());
    hex::encode(&digest[..8])
}

/// What [`Engine::restore`](crate::Engine::restore) does with a webhook payload that is still waiting for a
/// receiver other than the one configured now (the webhook URL changed between runs): a payload belongs to
/// the receiver it was accepted for.
///
/// Hosts spell the values `deliver-to-original` and `dead-letter` ([`FromStr`](std::str::FromStr)); JSON
/// configurations `"deliverToOriginal"` and `"deadLetter"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ReceiverChange {
    /// Deliver it to the receiver it was accepted for, signed with the secret configured now. Only possible
    /// when that receiver's URL is in the log, which it is not when the URL has a query, fragment or user
    /// info (they may carry a secret, so they are never written there): such a payload becomes a dead letter.
    #[default]
    DeliverToOriginal,
    /// Set it aside as a dead letter; [`Engine::replay_dead_letters`](crate::Engine::replay_dead_letters)
    /// sends it to the receiver configured then.
    DeadLetter,
}

impl ReceiverChange {
    /// `"deliver-to-original"` or `"dead-letter"`: how hosts spell it in settings and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeliverToOriginal => "deliver-to-original",
            Self::DeadLetter => "dead-letter",
        }
    }
}

impl std::fmt::Display for ReceiverChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReceiverChange {
    type Err = ConfigError;

    /// Reads `deliver-to-original` or `dead-letter` (any case; the JSON spellings `deliverToOriginal` and
    /// `deadLetter` too). The error names the field `webhook.on_receiver_change`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let folded = s.trim().replace(['-', '_'], "").to_ascii_lowercase();
        match folded.as_str() {
            "delivertooriginal" => Ok(Self::DeliverToOriginal),
            "deadletter" => Ok(Self::DeadLetter),
            _ => invalid(
                "webhook.on_receiver_change",
                "expected deliver-to-original or dead-letter",
            ),
        }
    }
}

/// Checks a webhook URL with [`check_url`]; the error carries `INVALID_WEBHOOK_URL`.
pub fn validate_webhook_url(url: &str) -> Result<(), ConfigError> {
    check_url(url).map_err(|reason| ConfigError::WebhookUrl { reason })
}

/// Where and how webhooks are delivered. Defaults follow the reference's 5 s webhook timeout and add the
/// retries, ordering and dead letters it lacked.
///
/// `Debug` shows neither the secret nor the URL's query.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookConfig {
    /// The receiver; see [`check_url`].
    pub url: String,
    /// When set, every delivery carries `X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    /// Must not be empty when set.
    pub secret: Option<Secret>,
    /// A delivery without an answer after this long counts as failed (the reference's 5000 ms).
    pub timeout_ms: u64,
    /// The wait before each new attempt, counted exactly as the engine counts its retries. `max_retries`
    /// is not used: a receiver that is down (5xx, no answer) is retried until it answers or the payload
    /// grows older than `dead_letter_after_ms`.
    pub retry: RetryPolicy,
    /// How many deliveries may be in flight at once; 1 delivers strictly in order.
    pub max_in_flight: usize,
    /// A payload the receiver refuses (a 4xx other than 408 and 429) this many times becomes a dead letter,
    /// so one payload it will never take does not hold up every later one.
    pub dead_letter_after_refusals: u32,
    /// A payload still undelivered this long after it was accepted becomes a dead letter at its next
    /// failure (a receiver gone for good). One day by default.
    pub dead_letter_after_ms: u64,
    /// What a restart does with payloads still waiting for a receiver other than this one (the URL changed
    /// since they were accepted): deliver them to their original receiver (the default) or set them aside.
    pub on_receiver_change: ReceiverChange,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: None,
            timeout_ms: 5_000,
            retry: RetryPolicy {
                cap_ms: 60_000,
                ..RetryPolicy::default()
            },
            max_in_flight: 1,
            dead_letter_after_refusals: 5,
            dead_letter_after_ms: 86_400_000,
            on_receiver_change: ReceiverChange::DeliverToOriginal,
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field(
                "dead_letter_after_refusals",
                &self.dead_letter_after_refusals,
            )
            .field("dead_letter_after_ms", &self.dead_letter_after_ms)
            .field("on_receiver_change", &self.on_receiver_change)
            .finish()
    }
}

impl WebhookConfig {
    /// A configuration for this receiver with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_webhook_url(&self.url)?;
        if self.secret.as_ref().is_some_and(Secret::is_empty) {
            return invalid("webhook.secret", "must not be empty when set");
        }
        at_least_one("webhook.timeout_ms", self.timeout_ms)?;
        at_least_one("webhook.max_in_flight", self.max_in_flight)?;
        at_least_one(
            "webhook.dead_letter_after_refusals",
            self.dead_letter_after_refusals,
        )?;
        self.retry.validate("webhook.retry")
    }
}

fn invalid<T>(field: &'static str, reason: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        field,
        reason: reason.to_owned(),
    })
}

/// A count or duration that may not be 0.
fn at_least_one<T: Default + PartialEq>(field: &'static str, value: T) -> Result<(), ConfigError> {
    if value == T::default() {
        return invalid(field, "must be at least 1");
    }
    Ok(())
}

/// Everything the engine needs. Build with [`EngineConfig::new`] and adjust fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct EngineConfig {
    /// API base URL, e.g. `https://acme.api.nice.incontact.com` (no trailing slash needed). https, or http on
    /// loopback only.
    pub base_url: String,
    /// Token endpoint; `{base_url}/oauth2/token` when `None`, as in the reference. https, or http on
    /// loopback only.
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
    /// A policy check older than this when a change is about to be sent for the first time is made again,
    /// so a break that became due while the change waited for the pacer is still caught.
    pub policy_max_age_ms: u64,
    /// How long after the policy check that approved it a change may still be sent or re-sent. Past it the
    /// change is not sent again: it ends as `OUTCOME_UNKNOWN` if a send may have reached the tenant, else as
    /// `RATE_LIMITED` or `UPSTREAM_UNAVAILABLE`. This bounds sustained throttling per change, and it keeps a
    /// late resend from applying a change that policy would no longer allow: keep it below the tenant's
    /// break notice (the simulated tenant announces breaks 5 min ahead). Two minutes by default.
    pub commit_window_ms: u64,
    /// Retry schedule of API and token requests.
    pub retry: RetryPolicy,
    /// Client-side rate limit.
    pub rate_limit: RateLimit,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// History retention.
    pub history: HistoryConfig,
    /// Audit records kept in memory for the report's `logs`.
    pub report_log_capacity: usize,
    /// Open changes (running or waiting) the engine accepts before commands answer `BUSY`.
    pub max_open_changes: usize,
    /// A checkpoint record is written after this many other records (or after twice the number of open
    /// items, if that is more), so recovery reads only what follows the last one. `None` writes none.
    pub checkpoint_every: Option<u32>,
    /// Where webhooks go; `None` sends none.
    pub webhook: Option<WebhookConfig>,
    /// The `cxone` profile's settings (unused by `seed`).
    pub cxone: crate::cxone::CxoneConfig,
    /// `cxone`: observing states changed elsewhere ([`Engine::start_observing`](crate::Engine::start_observing)).
    #[serde(default)]
    pub observe: crate::observe::ObserveConfig,
    /// Through what this engine's changes come in (`cli`, `service`, `console`, `simulation`): written on
    /// every audit record it makes, except observation records (`observed`).
    pub source: crate::actor::Source,
    /// How long deferred changes may wait ([`TransitionOptions::defer`](crate::TransitionOptions::defer)).
    pub defer: crate::deferral::DeferConfig,
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
            commit_window_ms: 120_000,
            retry: RetryPolicy::default(),
            rate_limit: RateLimit::default(),
            request_timeout_ms: 10_000,
            history: HistoryConfig::default(),
            report_log_capacity: 10_000,
            max_open_changes: 100_000,
            checkpoint_every: Some(1_000),
            webhook: None,
            cxone: crate::cxone::CxoneConfig::default(),
            observe: crate::observe::ObserveConfig::default(),
            source: crate::actor::Source::default(),
            defer: crate::deferral::DeferConfig::default(),
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
        // `cxone` discovers its bases, so `base_url` is checked only when given.
        if self.profile == ProfileKind::Seed || !self.base_url.is_empty() {
            check_url(&self.base_url).or_else(|r| invalid("base_url", &r))?;
        }
        if let Some(t) = &self.token_url {
            check_url(t).or_else(|r| invalid("token_url", &r))?;
        }
        if self.profile == ProfileKind::Cxone {
            self.cxone
                .validate(self.token_source == TokenSource::ClientCredentials)?;
        }
        if self.token_source == TokenSource::ClientCredentials {
            if self.credentials.client_id.is_empty() {
                return invalid("client_id", "is empty");
            }
            if self.credentials.client_secret.is_empty() {
                return invalid("client_secret", "is empty");
            }
        }
        at_least_one("rate_limit.per_minute", self.rate_limit.per_minute)?;
        at_least_one("request_timeout_ms", self.request_timeout_ms)?;
        at_least_one("commit_window_ms", self.commit_window_ms)?;
        at_least_one("max_open_changes", self.max_open_changes)?;
        if self.checkpoint_every == Some(0) {
            return invalid("checkpoint_every", "must be at least 1 (or unset)");
        }
        self.retry.validate("retry")?;
        if self.history.max_entries_per_agent == 0 || self.history.max_agents == 0 {
            return invalid("history", "limits must be at least 1");
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        self.observe.validate()?;
        Ok(())
    }

    /// The token endpoint in use.
    pub fn token_endpoint(&self) -> String {
        self.token_url
            .clone()
            .unwrap_or_else(|| format!("{}/oauth2/token", self.base_url.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_serialize_redacted_and_deserialize_plain() {
        let s = Secret::new("hunter2");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        let back: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back.expose(), "hunter2");
        let cfg = EngineConfig::new("https://t.example", "id", Secret::new("top-secret"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("top-secret"), "{json}");
    }

    #[test]
    fn endpoints_must_be_https_or_loopback_http() {
        let cfg = |base: &str| EngineConfig::new(base, "id", Secret::new("s"));
        assert!(cfg("https://acme.api.nice.incontact.com")
            .validate()
            .is_ok());
        assert!(cfg("http://127.0.0.1:8080").validate().is_ok());
        assert!(cfg("http://localhost:1").validate().is_ok());
        assert!(cfg("http://[::1]:9").validate().is_ok());
        let e = cfg("http://acme.example").validate().unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    field: "base_url",
                    ..
                }
            ),
            "{e}"
        );
        let mut c = cfg("https://a.example");
        c.token_url = Some("http://10.0.0.1/token?secret=x".into());
        let e = c.validate().unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                field: "token_url",
                ..
            }
        ));
        assert!(!e.to_string().contains("secret=x"));
    }

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://hooks.example.com/agent",
            "https://h:8443/x?y=1",
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:80/",
        ] {
            assert!(validate_webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://h/x",
            "http://hooks.example.com/x",
            "https://user:pw@h/x",
            "https://h/x#frag",
            "https:// h/x",
            "https://h:0/x",
            "https://h:99999/x",
            "https://[::1/x",
            "https:///x",
            "https://hé/x",
            "hooks.example.com",
        ] {
            let e = validate_webhook_url(bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidWebhookUrl, "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted_and_fingerprinted_without_their_secrets() {
        for (url, shown) in [
            ("https://h/hook", "https://h/hook"),
            ("https://h/hook?token=sekrit", "https://h/hook?[redacted]"),
            ("https://h/hook#sekrit", "https://h/hook#[redacted]"),
            (
                "https://user:sekrit@h:8443/x",
                "https://[redacted]@h:8443/x",
            ),
            (
                "https://u:sekrit@h?k=sekrit",
                "https://[redacted]@h?[redacted]",
            ),
            ("https://h/a@b", "https://h/a@b"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert_eq!(loggable_url(url).is_some(), url == shown, "{url}");
        }
        let a = receiver_fingerprint("https://h/hook?token=1");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_eq!(a, receiver_fingerprint("https://h/hook?token=1"));
        assert_ne!(a, receiver_fingerprint("https://h/hook?token=2"));
    }

    #[test]
    fn receiver_change_reads_the_host_and_json_spellings() {
        for (text, want) in [
            ("deliver-to-original", ReceiverChange::DeliverToOriginal),
            ("Dead-Letter", ReceiverChange::DeadLetter),
            ("deadLetter", ReceiverChange::DeadLetter),
        ] {
            assert_eq!(text.parse::<ReceiverChange>().unwrap(), want, "{text}");
            assert_eq!(want.as_str().parse::<ReceiverChange>().unwrap(), want);
        }
        let e = "drop".parse::<ReceiverChange>().unwrap_err();
        assert!(e.to_string().contains("webhook.on_receiver_change"), "{e}");
        assert_eq!(e.code(), crate::ErrorCode::InvalidConfig);
        let c: WebhookConfig =
            serde_json::from_str(r#"{"url":"https://h/x","onReceiverChange":"deadLetter"}"#)
                .unwrap();
        assert_eq!(c.on_receiver_change, ReceiverChange::DeadLetter);
        let c: WebhookConfig = serde_json::from_str(r#"{"url":"https://h/x"}"#).unwrap();
        assert_eq!(c.on_receiver_change, ReceiverChange::DeliverToOriginal);
    }

    #[test]
    fn webhook_debug_redacts_secret_and_query() {
        let cfg = WebhookConfig {
            secret: Some(Secret::new("hunter2")),
            ..WebhookConfig::new("https://h/hook?token=sekrit")
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2") && !s.contains("sekrit"), "{s}");
        assert!(
            s.contains("https://h/hook") && s.contains("[redacted]"),
            "{s}"
        );
    }
}
