//! Settings from the environment names the reference module uses, plus our additions.
//!
//! | variable | meaning |
//! |---|---|
//! | `CXONE_DOMAIN` | tenant domain; the base URL defaults to `https://{domain}.api.nice.incontact.com` |
//! | `CXONE_CLIENT_ID`, `CXONE_CLIENT_SECRET` | OAuth client credentials |
//! | `CXONE_BASE_URL` | API base URL (overrides the domain) |
//! | `CXONE_TOKEN_URL` | token endpoint (default `{base}/oauth2/token`) |
//! | `CXONE_RATE_LIMIT_PER_MIN` | the tenant's request budget (default 100) |
//! | `CXONE_AUDIT_LOG` | the durable audit log (JSON Lines) |
//! | `WORKFORCE_WEBHOOK_URL`, `WORKFORCE_WEBHOOK_SECRET` | webhook receiver and its HMAC key |
//! | `WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER` | refusals after which a payload is a dead letter (default 5) |
//! | `CXONE_MAX_OPEN_CHANGES` | changes open at once (taken and not yet ended) before new ones answer `BUSY` (default 100000) |
//! | `WORKFORCE_WEBHOOK_RECEIVER_CHANGE` | `deliver-to-original` (default) or `dead-letter`: what a start does with webhook events accepted for an earlier receiver URL |
//! | `TARGET_USER_ID` | the default agent of `transition` (read by the CLI) |
//! | `CXONE_PROFILE` | `seed` or `cxone`; unset: `cxone` when an access key is configured, else `seed` |
//!
//! The `cxone` profile (the real CXone API) reads these too; `CXONE_DOMAIN` and `CXONE_BASE_URL` are not
//! needed (nor used) there, and `CXONE_CLIENT_ID`/`CXONE_CLIENT_SECRET` are the client app's:
//!
//! | variable | meaning |
//! |---|---|
//! | `CXONE_ACCESS_KEY_ID`, `CXONE_ACCESS_KEY_SECRET` | the access key (the password grant's `username` and `password`) |
//! | `CXONE_AUTH_BASE` | where discovery starts (default `https://cxone.niceincontact.com`) |
//! | `CXONE_API_BASE_URL` | the ACD/Admin API base (default: discovered) |
//! | `CXONE_WFM_BASE_URL` | the WFM base (default: discovered); with both bases set, discovery stops at the token |
//! | `CXONE_API_VERSION` | the `v{N}.0` of every ACD call (default 34) |
//! | `CXONE_CLIENT_AUTH` | `basic` (default) or `body`: how the client app authenticates |
//! | `CXONE_SET_STATE_ENCODING` | `query` (default) or `json`: how `SetAgentState` carries its parameters |
//! | `CXONE_REASON_CODES` | `STATE=code name` pairs over the defaults, e.g. `NOT_READY=Break,PAUSED=Meeting` |
//! | `CXONE_BREAK_ACTIVITIES` | schedule activity titles that are mandatory breaks (default `Break,Lunch`) |
//! | `CXONE_WFM_RATE_LIMIT_PER_MIN` | the WFM host's own request budget (default 100) |
//!
//! Observing agent states changed elsewhere (`cxone` only; see `AgentStateManager::start_observing`):
//!
//! | variable | meaning |
//! |---|---|
//! | `CXONE_OBSERVE_INTERVAL_MS` | time between the end of one poll of the agents' states and the next (default 10000, at least 1000) |
//! | `CXONE_OBSERVE_SETTLE_AFTER_MS` | an `OUTCOME_UNKNOWN` change not seen applied this long after its last send may be settled as not applied (default 60000) |
//! | `CXONE_OBSERVE_SKIP_IF_IN_EFFECT` | `true` or `false` (default): a change the last fresh observation shows in effect already is not sent |
//! | `CXONE_OBSERVE_STALE_AFTER_MS` | observed states are stale when no poll succeeded for this long (default 30000, at least the interval) |
//! | `CXONE_SETTLE_WAIT_SECS` | how long `transition` and `bulk` observe before they exit to settle unknown outcomes (default 90; 0: not at all; read by the CLI) |
//!
//! `CXONE_TOKEN_URL`, when set, skips the OpenID configuration on `cxone`; `CXONE_RATE_LIMIT_PER_MIN` is the
//! ACD host's budget there. `http://` is accepted on a loopback host only, for every URL.
//!
//! Command-line flags override the environment. Errors name the setting, never a secret's value.

use std::path::PathBuf;

use cxone_agent_state_core::cxone::acd::{CxoneReasonTable, SetStateEncoding};
use cxone_agent_state_core::cxone::auth::ClientAuth;
use cxone_agent_state_core::cxone::wfm::BreakRule;
use cxone_agent_state_core::{
    tenant_base_url, ConfigError, EngineConfig, ErrorCode, ProfileKind, RateLimit, ReceiverChange,
    Secret, WebhookConfig,
};

use crate::manager::ManagerConfig;

/// A missing or invalid setting. The message names the variable (and flag) but never echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A required setting is not set.
    #[error("missing setting {name} (set the environment variable or pass {flag})")]
    Missing {
        /// The environment variable.
        name: &'static str,
        /// The equivalent flag.
        flag: &'static str,
    },
    /// A setting is set but unusable.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// Why.
        reason: String,
        /// The stable code (`INVALID_CONFIG`, or `INVALID_WEBHOOK_URL` for a refused webhook URL).
        code: ErrorCode,
    },
}

impl SettingsError {
    /// The stable code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing { .. } => ErrorCode::InvalidConfig,
            Self::Invalid { code, .. } => *code,
        }
    }

    fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            reason: reason.into(),
            code: ErrorCode::InvalidConfig,
        }
    }
}

/// A configuration error from the core, named by the setting it came from (the core names its own fields).
impl From<ConfigError> for SettingsError {
    fn from(e: ConfigError) -> Self {
        let code = e.code();
        let (name, reason) = match e {
            ConfigError::WebhookUrl { .. } => ("WORKFORCE_WEBHOOK_URL", e.to_string()),
            ConfigError::Invalid { field, reason } => (
                match field {
                    "base_url" => "CXONE_BASE_URL",
                    "token_url" => "CXONE_TOKEN_URL",
                    "rate_limit.per_minute" => "CXONE_RATE_LIMIT_PER_MIN",
                    "client_id" => "CXONE_CLIENT_ID",
                    "client_secret" => "CXONE_CLIENT_SECRET",
                    "domain" => "CXONE_DOMAIN",
                    "webhook.secret" => "WORKFORCE_WEBHOOK_SECRET",
                    "webhook.dead_letter_after_refusals" => "WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER",
                    "max_open_changes" => "CXONE_MAX_OPEN_CHANGES",
                    "webhook.on_receiver_change" => "WORKFORCE_WEBHOOK_RECEIVER_CHANGE",
                    "request_timeout_ms" => "--request-timeout-ms",
                    "observe.intervalMs" => "CXONE_OBSERVE_INTERVAL_MS",
                    "observe.staleAfterMs" => "CXONE_OBSERVE_STALE_AFTER_MS",
                    // The `cxone` settings name themselves.
                    f if f.starts_with("CXONE_") => f,
                    _ => "configuration",
                },
                reason,
            ),
            other => ("configuration", other.to_string()),
        };
        Self::Invalid { name, reason, code }
    }
}

/// The words of a core parse error, without the core's own field name (the setting names itself).
fn reason_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Every setting, each optional until [`into_config`](Settings::into_config) checks them.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `CXONE_DOMAIN`.
    pub domain: Option<String>,
    /// `CXONE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `CXONE_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `CXONE_BASE_URL`.
    pub base_url: Option<String>,
    /// `CXONE_TOKEN_URL`.
    pub token_url: Option<String>,
    /// `CXONE_RATE_LIMIT_PER_MIN`.
    pub rate_limit_per_min: Option<u32>,
    /// `CXONE_AUDIT_LOG`.
    pub audit_log: Option<PathBuf>,
    /// `WORKFORCE_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// `WORKFORCE_WEBHOOK_SECRET`.
    pub webhook_secret: Option<Secret>,
    /// Refusals after which a webhook payload becomes a dead letter (default 5).
    pub webhook_dead_letter_after: Option<u32>,
    /// `CXONE_MAX_OPEN_CHANGES`: changes open at once before new ones answer `BUSY` (default 100 000).
    pub max_open_changes: Option<u32>,
    /// `WORKFORCE_WEBHOOK_RECEIVER_CHANGE`: what a start does with webhook payloads accepted for another
    /// receiver than the configured one (default [`ReceiverChange::DeliverToOriginal`]).
    pub webhook_receiver_change: Option<ReceiverChange>,
    /// Seed of the engine's jitter and ids; random when unset.
    pub seed: Option<u64>,
    /// Per-request timeout in ms (default 10 000).
    pub request_timeout_ms: Option<u64>,
    /// `CXONE_PROFILE`; unset: see [`profile`](Settings::profile).
    pub profile: Option<ProfileKind>,
    /// `CXONE_ACCESS_KEY_ID` (`cxone`).
    pub access_key_id: Option<String>,
    /// `CXONE_ACCESS_KEY_SECRET` (`cxone`).
    pub access_key_secret: Option<Secret>,
    /// `CXONE_AUTH_BASE` (`cxone`).
    pub auth_base: Option<String>,
    /// `CXONE_API_BASE_URL` (`cxone`).
    pub api_base_url: Option<String>,
    /// `CXONE_WFM_BASE_URL` (`cxone`).
    pub wfm_base_url: Option<String>,
    /// `CXONE_API_VERSION` (`cxone`): the version of every ACD call.
    pub api_version: Option<u32>,
    /// `CXONE_CLIENT_AUTH` (`cxone`).
    pub client_auth: Option<ClientAuth>,
    /// `CXONE_SET_STATE_ENCODING` (`cxone`).
    pub set_state_encoding: Option<SetStateEncoding>,
    /// `CXONE_REASON_CODES` (`cxone`).
    pub reason_codes: Option<CxoneReasonTable>,
    /// `CXONE_BREAK_ACTIVITIES` (`cxone`).
    pub break_activities: Option<BreakRule>,
    /// `CXONE_WFM_RATE_LIMIT_PER_MIN` (`cxone`).
    pub wfm_rate_limit_per_min: Option<u32>,
    /// `CXONE_OBSERVE_INTERVAL_MS` (`cxone`): time between polls of the agents' states.
    pub observe_interval_ms: Option<u64>,
    /// `CXONE_OBSERVE_SETTLE_AFTER_MS` (`cxone`): when an unknown outcome may be settled as not applied.
    pub observe_settle_after_ms: Option<u64>,
    /// `CXONE_OBSERVE_SKIP_IF_IN_EFFECT` (`cxone`): skip a change the tenant shows in effect already.
    pub observe_skip_if_in_effect: Option<bool>,
    /// `CXONE_OBSERVE_STALE_AFTER_MS` (`cxone`): when the observed states are stale.
    pub observe_stale_after_ms: Option<u64>,
    /// `CXONE_SETTLE_WAIT_SECS`: how long a command observes before it exits to settle unknown outcomes
    /// (the CLI's `transition` and `bulk` read it; the manager does not).
    pub settle_wait_secs: Option<u64>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (an environment, a map in tests). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let number = |name: &'static str| -> Result<Option<u32>, SettingsError> {
            get(name)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        SettingsError::invalid(name, "not a whole number (0 to 4294967295)")
                    })
                })
                .transpose()
        };
        let rate_limit_per_min = number("CXONE_RATE_LIMIT_PER_MIN")?;
        let webhook_dead_letter_after = number("WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER")?;
        let max_open_changes = number("CXONE_MAX_OPEN_CHANGES")?;
        let webhook_receiver_change = get("WORKFORCE_WEBHOOK_RECEIVER_CHANGE")
            .map(|v| v.parse::<ReceiverChange>())
            .transpose()?;
        // A `cxone` setting parsed by the core's reader; a refusal names the setting.
        fn parsed<T>(
            name: &'static str,
            value: Option<String>,
            parse: impl FnOnce(&str) -> Result<T, ConfigError>,
        ) -> Result<Option<T>, SettingsError> {
            value
                .map(|v| parse(&v).map_err(|e| SettingsError::invalid(name, reason_of(e))))
                .transpose()
        }
        let profile = parsed("CXONE_PROFILE", get("CXONE_PROFILE"), str::parse)?;
        let client_auth = parsed("CXONE_CLIENT_AUTH", get("CXONE_CLIENT_AUTH"), str::parse)?;
        let set_state_encoding = parsed(
            "CXONE_SET_STATE_ENCODING",
            get("CXONE_SET_STATE_ENCODING"),
            str::parse,
        )?;
        let reason_codes = parsed(
            "CXONE_REASON_CODES",
            get("CXONE_REASON_CODES"),
            CxoneReasonTable::parse,
        )?;
        let break_activities = parsed(
            "CXONE_BREAK_ACTIVITIES",
            get("CXONE_BREAK_ACTIVITIES"),
            str::parse,
        )?;
        let long = |name: &'static str| -> Result<Option<u64>, SettingsError> {
            get(name)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        SettingsError::invalid(name, "not a whole number of 0 or more")
                    })
                })
                .transpose()
        };
        let observe_interval_ms = long("CXONE_OBSERVE_INTERVAL_MS")?;
        let observe_settle_after_ms = long("CXONE_OBSERVE_SETTLE_AFTER_MS")?;
        let observe_stale_after_ms = long("CXONE_OBSERVE_STALE_AFTER_MS")?;
        let settle_wait_secs = long("CXONE_SETTLE_WAIT_SECS")?;
        let observe_skip_if_in_effect = get("CXONE_OBSERVE_SKIP_IF_IN_EFFECT")
            .map(|v| {
                parse_bool(&v).ok_or_else(|| {
                    SettingsError::invalid(
                        "CXONE_OBSERVE_SKIP_IF_IN_EFFECT",
                        "expected true or false (also 1/0, yes/no, on/off)",
                    )
                })
            })
            .transpose()?;
        let api_version = number("CXONE_API_VERSION")?;
        let wfm_rate_limit_per_min = number("CXONE_WFM_RATE_LIMIT_PER_MIN")?;
        Ok(Self {
            domain: get("CXONE_DOMAIN"),
            client_id: get("CXONE_CLIENT_ID"),
            client_secret: get("CXONE_CLIENT_SECRET").map(Secret::new),
            base_url: get("CXONE_BASE_URL"),
            token_url: get("CXONE_TOKEN_URL"),
            rate_limit_per_min,
            audit_log: get("CXONE_AUDIT_LOG").map(PathBuf::from),
            webhook_url: get("WORKFORCE_WEBHOOK_URL"),
            webhook_secret: get("WORKFORCE_WEBHOOK_SECRET").map(Secret::new),
            webhook_dead_letter_after,
            max_open_changes,
            webhook_receiver_change,
            seed: None,
            request_timeout_ms: None,
            profile,
            access_key_id: get("CXONE_ACCESS_KEY_ID"),
            access_key_secret: get("CXONE_ACCESS_KEY_SECRET").map(Secret::new),
            auth_base: get("CXONE_AUTH_BASE"),
            api_base_url: get("CXONE_API_BASE_URL"),
            wfm_base_url: get("CXONE_WFM_BASE_URL"),
            api_version,
            client_auth,
            set_state_encoding,
            reason_codes,
            break_activities,
            wfm_rate_limit_per_min,
            observe_interval_ms,
            observe_settle_after_ms,
            observe_skip_if_in_effect,
            observe_stale_after_ms,
            settle_wait_secs,
        })
    }

    /// The profile these settings select: `CXONE_PROFILE` when set; otherwise `cxone` when an access key
    /// (its id or its secret) is configured, else `seed`.
    pub fn profile(&self) -> ProfileKind {
        self.profile.unwrap_or(if self.has_access_key() {
            ProfileKind::Cxone
        } else {
            ProfileKind::Seed
        })
    }

    /// Whether [`profile`](Settings::profile) is `cxone` only because an access key is configured
    /// (`CXONE_PROFILE` unset). A host tells its user so; the library prints nothing.
    pub fn profile_inferred(&self) -> bool {
        self.profile.is_none() && self.has_access_key()
    }

    fn has_access_key(&self) -> bool {
        self.access_key_id.is_some() || self.access_key_secret.is_some()
    }

    /// Checks the settings and builds a manager configuration.
    ///
    /// On `cxone` the access key is required and `CXONE_DOMAIN`/`CXONE_BASE_URL` are not read (the bases
    /// are discovered, or set with `CXONE_API_BASE_URL`/`CXONE_WFM_BASE_URL`).
    pub fn into_config(self) -> Result<ManagerConfig, SettingsError> {
        let profile = self.profile();
        let base_url = match (profile, &self.base_url, &self.domain) {
            (ProfileKind::Cxone, _, _) => String::new(),
            (_, Some(b), _) => b.trim_end_matches('/').to_owned(),
            (_, None, Some(d)) => tenant_base_url(d)?,
            (_, None, None) => {
                return Err(SettingsError::Missing {
                    name: "CXONE_DOMAIN",
                    flag: "--domain or --base-url",
                })
            }
        };
        if profile == ProfileKind::Cxone {
            if self.access_key_id.is_none() {
                return Err(SettingsError::Missing {
                    name: "CXONE_ACCESS_KEY_ID",
                    flag: "--access-key-id",
                });
            }
            if self.access_key_secret.is_none() {
                return Err(SettingsError::Missing {
                    name: "CXONE_ACCESS_KEY_SECRET",
                    flag: "--access-key-secret",
                });
            }
        }
        let client_id = self.client_id.ok_or(SettingsError::Missing {
            name: "CXONE_CLIENT_ID",
            flag: "--client-id",
        })?;
        let client_secret = self.client_secret.ok_or(SettingsError::Missing {
            name: "CXONE_CLIENT_SECRET",
            flag: "--client-secret",
        })?;
        let mut engine = EngineConfig::new(base_url, client_id, client_secret);
        engine.profile = profile;
        let cxone = &mut engine.cxone;
        if let Some(id) = self.access_key_id {
            cxone.access_key_id = id;
        }
        if let Some(secret) = self.access_key_secret {
            cxone.access_key_secret = secret;
        }
        if let Some(base) = self.auth_base {
            cxone.auth_base = base.trim_end_matches('/').to_owned();
        }
        cxone.api_base = self
            .api_base_url
            .map(|b| b.trim_end_matches('/').to_owned());
        cxone.wfm_base = self
            .wfm_base_url
            .map(|b| b.trim_end_matches('/').to_owned());
        if let Some(v) = self.api_version {
            cxone.versions.agents = v;
            cxone.versions.unavailable_codes = v;
            cxone.versions.set_state = v;
        }
        if let Some(a) = self.client_auth {
            cxone.client_auth = a;
        }
        if let Some(e) = self.set_state_encoding {
            cxone.set_state_encoding = e;
        }
        if let Some(t) = self.reason_codes {
            cxone.reason_codes = t;
        }
        if let Some(b) = self.break_activities {
            cxone.break_activities = b;
        }
        if let Some(per_minute) = self.wfm_rate_limit_per_min {
            cxone.wfm_rate_limit = RateLimit {
                per_minute,
                burst: None,
            };
        }
        engine.token_url = self.token_url;
        engine.seed = self.seed.unwrap_or_else(random_seed);
        if let Some(per_minute) = self.rate_limit_per_min {
            engine.rate_limit = RateLimit {
                per_minute,
                burst: None,
            };
        }
        if let Some(t) = self.request_timeout_ms {
            engine.request_timeout_ms = t;
        }
        if let Some(n) = self.max_open_changes {
            engine.max_open_changes = n as usize;
        }
        if let Some(url) = self.webhook_url {
            let mut webhook = WebhookConfig {
                secret: self.webhook_secret,
                ..WebhookConfig::new(url)
            };
            if let Some(n) = self.webhook_dead_letter_after {
                webhook.dead_letter_after_refusals = n;
            }
            if let Some(policy) = self.webhook_receiver_change {
                webhook.on_receiver_change = policy;
            }
            engine.webhook = Some(webhook);
        }
        let observe = &mut engine.observe;
        if let Some(ms) = self.observe_interval_ms {
            observe.interval_ms = ms;
            // A poll slower than the default staleness allows would be refused as stale by design: unless
            // set, states are stale after three missed polls then.
            if self.observe_stale_after_ms.is_none() {
                observe.stale_after_ms = observe.stale_after_ms.max(ms.saturating_mul(3));
            }
        }
        if let Some(ms) = self.observe_settle_after_ms {
            observe.settle_after_ms = ms;
        }
        if let Some(skip) = self.observe_skip_if_in_effect {
            observe.skip_if_in_effect = skip;
        }
        if let Some(ms) = self.observe_stale_after_ms {
            observe.stale_after_ms = ms;
        }
        engine.validate()?;
        Ok(ManagerConfig::new(engine, self.audit_log))
    }
}

/// `true`/`false` (and `1`/`0`, `yes`/`no`, `on`/`off`), any case.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A seed from the OS for a production engine (tests pass one for reproducibility).
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has a random source");
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_reference_environment_builds_a_config() {
        let s = Settings::from_lookup(env(&[
            ("CXONE_DOMAIN", "acme"),
            ("CXONE_CLIENT_ID", "id"),
            ("CXONE_CLIENT_SECRET", "very-secret"),
            ("CXONE_RATE_LIMIT_PER_MIN", "250"),
            ("WORKFORCE_WEBHOOK_URL", "https://hooks.example/wfm"),
            ("WORKFORCE_WEBHOOK_SECRET", "hook-secret"),
        ]))
        .unwrap();
        let c = s.into_config().unwrap();
        assert_eq!(c.engine.base_url, "https://acme.api.nice.incontact.com");
        assert_eq!(
            c.engine.token_endpoint(),
            "https://acme.api.nice.incontact.com/oauth2/token"
        );
        assert_eq!(c.engine.rate_limit.per_minute, 250);
        let webhook = c.engine.webhook.as_ref().expect("a webhook");
        assert_eq!(
            webhook.on_receiver_change,
            ReceiverChange::DeliverToOriginal
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("very-secret") && !debug.contains("hook-secret"),
            "{debug}"
        );
    }

    #[test]
    fn the_receiver_change_policy_is_read_and_checked() {
        let base = [
            ("CXONE_BASE_URL", "http://127.0.0.1:9"),
            ("CXONE_CLIENT_ID", "i"),
            ("CXONE_CLIENT_SECRET", "s3"),
            ("WORKFORCE_WEBHOOK_URL", "https://hooks.example/wfm"),
        ];
        let with = |value: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("WORKFORCE_WEBHOOK_RECEIVER_CHANGE", value));
            Settings::from_lookup(env(&pairs))
        };
        let c = with("dead-letter").unwrap().into_config().unwrap();
        assert_eq!(
            c.engine.webhook.unwrap().on_receiver_change,
            ReceiverChange::DeadLetter
        );
        let s = with("deliver-to-original").unwrap();
        assert_eq!(
            s.webhook_receiver_change,
            Some(ReceiverChange::DeliverToOriginal)
        );
        let e = with("forward-anywhere").unwrap_err();
        assert!(
            matches!(
                e,
                SettingsError::Invalid {
                    name: "WORKFORCE_WEBHOOK_RECEIVER_CHANGE",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        assert!(e.to_string().contains("dead-letter"), "{e}");
    }

    #[test]
    fn missing_and_bad_settings_are_named_without_secrets() {
        let e = Settings::from_lookup(env(&[
            ("CXONE_DOMAIN", "acme"),
            ("CXONE_CLIENT_SECRET", "s3"),
        ]))
        .unwrap()
        .into_config()
        .unwrap_err();
        assert!(e.to_string().contains("CXONE_CLIENT_ID"), "{e}");
        let e = Settings::from_lookup(env(&[
            ("CXONE_DOMAIN", "acme.evil.com/x"),
            ("CXONE_CLIENT_ID", "i"),
            ("CXONE_CLIENT_SECRET", "s3"),
        ]))
        .unwrap()
        .into_config()
        .unwrap_err();
        assert!(e.to_string().contains("CXONE_DOMAIN"));
        let e = Settings::from_lookup(env(&[("CXONE_RATE_LIMIT_PER_MIN", "lots")])).unwrap_err();
        assert!(e.to_string().contains("CXONE_RATE_LIMIT_PER_MIN"));
        let e = Settings::from_lookup(env(&[
            ("CXONE_BASE_URL", "http://127.0.0.1:9"),
            ("CXONE_CLIENT_ID", "i"),
            ("CXONE_CLIENT_SECRET", "topsecret"),
            ("WORKFORCE_WEBHOOK_URL", "http://hooks.example/x?token=abc"),
        ]))
        .unwrap()
        .into_config()
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("WORKFORCE_WEBHOOK_URL"), "{text}");
        assert!(
            !text.contains("topsecret") && !text.contains("token=abc"),
            "{text}"
        );
    }
    const ACCESS: [(&str, &str); 4] = [
        ("CXONE_ACCESS_KEY_ID", "key-id"),
        ("CXONE_ACCESS_KEY_SECRET", "ak=S3cret&%25"),
        ("CXONE_CLIENT_ID", "app"),
        ("CXONE_CLIENT_SECRET", "app-Secret=&%"),
    ];

    fn with_access(more: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        ACCESS.iter().chain(more).copied().collect()
    }

    #[test]
    fn every_cxone_setting_is_read_into_the_engine() {
        let s = Settings::from_lookup(env(&with_access(&[
            ("CXONE_PROFILE", "CXone"),
            ("CXONE_AUTH_BASE", "https://cxone-gov.niceincontact.com/"),
            ("CXONE_API_BASE_URL", "http://127.0.0.1:9/"),
            ("CXONE_WFM_BASE_URL", "https://na1.nice-incontact.com"),
            ("CXONE_API_VERSION", "33"),
            ("CXONE_CLIENT_AUTH", "body"),
            ("CXONE_SET_STATE_ENCODING", "JSON"),
            ("CXONE_REASON_CODES", "NOT_READY=Lunch,PAUSED=Meeting"),
            ("CXONE_BREAK_ACTIVITIES", "Break, Lunch,Rest"),
            ("CXONE_WFM_RATE_LIMIT_PER_MIN", "42"),
            ("CXONE_RATE_LIMIT_PER_MIN", "300"),
        ])))
        .unwrap();
        assert_eq!(s.profile(), ProfileKind::Cxone);
        assert!(!s.profile_inferred(), "CXONE_PROFILE was set");
        let c = s.into_config().unwrap().engine;
        assert_eq!(c.profile, ProfileKind::Cxone);
        assert_eq!(
            c.base_url, "",
            "cxone needs no CXONE_DOMAIN or CXONE_BASE_URL"
        );
        assert_eq!(c.credentials.client_id, "app");
        assert_eq!(c.credentials.client_secret.expose(), "app-Secret=&%");
        let x = &c.cxone;
        assert_eq!(x.access_key_id, "key-id");
        assert_eq!(x.access_key_secret.expose(), "ak=S3cret&%25");
        assert_eq!(x.auth_base, "https://cxone-gov.niceincontact.com");
        assert_eq!(x.api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(
            x.wfm_base.as_deref(),
            Some("https://na1.nice-incontact.com")
        );
        assert_eq!(
            (
                x.versions.agents,
                x.versions.unavailable_codes,
                x.versions.set_state
            ),
            (33, 33, 33)
        );
        assert_eq!(x.client_auth, ClientAuth::Body);
        assert_eq!(x.set_state_encoding, SetStateEncoding::Json);
        assert_eq!(
            x.reason_codes,
            CxoneReasonTable::parse("NOT_READY=Lunch,PAUSED=Meeting").unwrap()
        );
        assert_eq!(x.break_activities.titles, ["Break", "Lunch", "Rest"]);
        assert_eq!(x.wfm_rate_limit.per_minute, 42);
        assert_eq!(c.rate_limit.per_minute, 300, "the ACD host's budget");
    }

    #[test]
    fn defaults_apply_to_unset_cxone_settings() {
        let c = Settings::from_lookup(env(&with_access(&[])))
            .unwrap()
            .into_config()
            .unwrap()
            .engine;
        assert_eq!(c.profile, ProfileKind::Cxone);
        let d = cxone_agent_state_core::cxone::CxoneConfig::default();
        let x = &c.cxone;
        assert_eq!(x.auth_base, d.auth_base);
        assert_eq!((&x.api_base, &x.wfm_base), (&None, &None));
        assert_eq!(x.versions, d.versions);
        assert_eq!(x.client_auth, d.client_auth);
        assert_eq!(x.set_state_encoding, d.set_state_encoding);
        assert_eq!(x.reason_codes, d.reason_codes);
        assert_eq!(x.break_activities, d.break_activities);
        assert_eq!(x.wfm_rate_limit, d.wfm_rate_limit);
    }

    #[test]
    fn the_profile_is_inferred_from_an_access_key_unless_it_is_set() {
        // Nothing: seed, as the reference's users know it.
        let s = Settings::from_lookup(env(&[("CXONE_DOMAIN", "acme")])).unwrap();
        assert_eq!(
            (s.profile(), s.profile_inferred()),
            (ProfileKind::Seed, false)
        );
        // An access key (its id, or its secret) and no CXONE_PROFILE: cxone, and said to be inferred.
        for key in ["CXONE_ACCESS_KEY_ID", "CXONE_ACCESS_KEY_SECRET"] {
            let s = Settings::from_lookup(env(&[(key, "k")])).unwrap();
            assert_eq!(
                (s.profile(), s.profile_inferred()),
                (ProfileKind::Cxone, true),
                "{key}"
            );
        }
        // CXONE_PROFILE wins over the inference, either way; an empty value counts as unset.
        let s = Settings::from_lookup(env(&with_access(&[
            ("CXONE_PROFILE", "seed"),
            ("CXONE_BASE_URL", "http://127.0.0.1:9"),
        ])))
        .unwrap();
        assert_eq!(
            (s.profile(), s.profile_inferred()),
            (ProfileKind::Seed, false)
        );
        let c = s.into_config().unwrap().engine;
        assert_eq!(c.profile, ProfileKind::Seed);
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        let s = Settings::from_lookup(env(&[("CXONE_PROFILE", "cxone")])).unwrap();
        assert_eq!(
            (s.profile(), s.profile_inferred()),
            (ProfileKind::Cxone, false)
        );
        let s = Settings::from_lookup(env(&with_access(&[("CXONE_PROFILE", " ")]))).unwrap();
        assert_eq!(
            (s.profile(), s.profile_inferred()),
            (ProfileKind::Cxone, true)
        );
        // Settings set in code take precedence over nothing: a host may set the profile itself.
        let s = Settings {
            profile: Some(ProfileKind::Seed),
            ..Settings::from_lookup(env(&with_access(&[]))).unwrap()
        };
        assert_eq!(s.profile(), ProfileKind::Seed);
    }

    #[test]
    fn cxone_requires_the_access_key_and_the_client_app_but_no_domain() {
        for (missing, flag) in [
            ("CXONE_ACCESS_KEY_ID", "--access-key-id"),
            ("CXONE_ACCESS_KEY_SECRET", "--access-key-secret"),
            ("CXONE_CLIENT_ID", "--client-id"),
            ("CXONE_CLIENT_SECRET", "--client-secret"),
        ] {
            let mut pairs: Vec<_> = ACCESS
                .iter()
                .filter(|(k, _)| *k != missing)
                .copied()
                .collect();
            pairs.push(("CXONE_PROFILE", "cxone"));
            let e = Settings::from_lookup(env(&pairs))
                .unwrap()
                .into_config()
                .unwrap_err();
            assert_eq!(
                e,
                SettingsError::Missing {
                    name: missing,
                    flag
                },
                "{e}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidConfig);
            let text = e.to_string();
            assert!(
                !text.contains("S3cret") && !text.contains("app-Secret"),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_cxone_values_are_invalid_config_named_by_setting_never_by_secret() {
        for (name, value) in [
            ("CXONE_PROFILE", "nice"),
            ("CXONE_CLIENT_AUTH", "header"),
            ("CXONE_SET_STATE_ENCODING", "form"),
            ("CXONE_REASON_CODES", "READY=Break"),
            ("CXONE_REASON_CODES", "NOT_READY"),
            ("CXONE_BREAK_ACTIVITIES", " , "),
            ("CXONE_API_VERSION", "v34"),
            ("CXONE_WFM_RATE_LIMIT_PER_MIN", "fast"),
        ] {
            let e = Settings::from_lookup(env(&with_access(&[(name, value)]))).unwrap_err();
            assert!(
                matches!(&e, SettingsError::Invalid { name: n, .. } if *n == name),
                "{name}: {e}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{name}");
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
        // Values the engine refuses: plain http off loopback (every URL), zero budgets and versions.
        for (name, value) in [
            ("CXONE_AUTH_BASE", "http://cxone.example.com"),
            ("CXONE_API_BASE_URL", "http://api.example.com"),
            ("CXONE_WFM_BASE_URL", "ftp://wfm.example.com"),
            ("CXONE_API_VERSION", "0"),
            ("CXONE_WFM_RATE_LIMIT_PER_MIN", "0"),
        ] {
            let e = Settings::from_lookup(env(&with_access(&[(name, value)])))
                .unwrap()
                .into_config()
                .unwrap_err();
            assert!(
                matches!(&e, SettingsError::Invalid { name: n, .. } if *n == name),
                "{name}: {e}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{name}");
            let text = e.to_string();
            assert!(
                !text.contains("S3cret") && !text.contains("app-Secret"),
                "{text}"
            );
        }
        // http on loopback is fine.
        assert!(Settings::from_lookup(env(&with_access(&[
            ("CXONE_AUTH_BASE", "http://localhost:8080"),
            ("CXONE_API_BASE_URL", "http://127.0.0.1:8080"),
            ("CXONE_WFM_BASE_URL", "http://[::1]:8080"),
        ])))
        .unwrap()
        .into_config()
        .is_ok());
    }

    #[test]
    fn observation_settings_reach_the_engine_and_bad_ones_are_named() {
        let c = Settings::from_lookup(env(&with_access(&[
            ("CXONE_OBSERVE_INTERVAL_MS", "2000"),
            ("CXONE_OBSERVE_SETTLE_AFTER_MS", "5000"),
            ("CXONE_OBSERVE_SKIP_IF_IN_EFFECT", "Yes"),
            ("CXONE_OBSERVE_STALE_AFTER_MS", "9000"),
            ("CXONE_SETTLE_WAIT_SECS", "0"),
        ])))
        .unwrap();
        assert_eq!(c.settle_wait_secs, Some(0));
        let o = c.into_config().unwrap().engine.observe;
        assert_eq!(
            (
                o.interval_ms,
                o.settle_after_ms,
                o.skip_if_in_effect,
                o.stale_after_ms
            ),
            (2_000, 5_000, true, 9_000)
        );
        // A slow poll alone raises the staleness with it instead of being refused.
        let o = Settings::from_lookup(env(&with_access(&[("CXONE_OBSERVE_INTERVAL_MS", "60000")])))
            .unwrap()
            .into_config()
            .unwrap()
            .engine
            .observe;
        assert_eq!((o.interval_ms, o.stale_after_ms), (60_000, 180_000));
        for (name, value) in [
            ("CXONE_OBSERVE_INTERVAL_MS", "soon"),
            ("CXONE_OBSERVE_SETTLE_AFTER_MS", "-1"),
            ("CXONE_OBSERVE_SKIP_IF_IN_EFFECT", "maybe"),
            ("CXONE_OBSERVE_STALE_AFTER_MS", "1.5"),
            ("CXONE_SETTLE_WAIT_SECS", "forever"),
        ] {
            let e = Settings::from_lookup(env(&with_access(&[(name, value)]))).unwrap_err();
            assert!(
                matches!(&e, SettingsError::Invalid { name: n, .. } if *n == name),
                "{name}: {e}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{name}");
        }
        // Values the engine refuses are named by their variable too.
        for (name, pairs) in [
            (
                "CXONE_OBSERVE_INTERVAL_MS",
                vec![("CXONE_OBSERVE_INTERVAL_MS", "500")],
            ),
            (
                "CXONE_OBSERVE_STALE_AFTER_MS",
                vec![
                    ("CXONE_OBSERVE_INTERVAL_MS", "5000"),
                    ("CXONE_OBSERVE_STALE_AFTER_MS", "1000"),
                ],
            ),
        ] {
            let e = Settings::from_lookup(env(&with_access(&pairs)))
                .unwrap()
                .into_config()
                .unwrap_err();
            assert!(
                matches!(&e, SettingsError::Invalid { name: n, .. } if *n == name),
                "{name}: {e}"
            );
            assert_eq!(e.code(), ErrorCode::InvalidConfig);
        }
    }

    #[test]
    fn the_cxone_secrets_never_show_in_debug() {
        let s = Settings::from_lookup(env(&with_access(&[]))).unwrap();
        let debug = format!("{s:?}");
        assert!(debug.contains("key-id"), "{debug}");
        let c = s.into_config().unwrap();
        let config = format!("{c:?}");
        for text in [debug, config] {
            assert!(
                !text.contains("S3cret") && !text.contains("app-Secret"),
                "{text}"
            );
        }
    }
}
