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
//! | `WORKFORCE_WEBHOOK_RECEIVER_CHANGE` | `deliver-to-original` (default) or `dead-letter`: what a start does with webhook events accepted for an earlier receiver URL |
//! | `TARGET_USER_ID` | the default agent of `transition` (read by the CLI) |
//!
//! Command-line flags override the environment. Errors name the setting, never a secret's value.

use std::path::PathBuf;

use cxone_agent_state_core::{
    tenant_base_url, ConfigError, EngineConfig, ErrorCode, RateLimit, ReceiverChange, Secret,
    WebhookConfig,
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
                    "webhook.on_receiver_change" => "WORKFORCE_WEBHOOK_RECEIVER_CHANGE",
                    "request_timeout_ms" => "--request-timeout-ms",
                    _ => "configuration",
                },
                reason,
            ),
            other => ("configuration", other.to_string()),
        };
        Self::Invalid { name, reason, code }
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
    /// `WORKFORCE_WEBHOOK_RECEIVER_CHANGE`: what a start does with webhook payloads accepted for another
    /// receiver than the configured one (default [`ReceiverChange::DeliverToOriginal`]).
    pub webhook_receiver_change: Option<ReceiverChange>,
    /// Seed of the engine's jitter and ids; random when unset.
    pub seed: Option<u64>,
    /// Per-request timeout in ms (default 10 000).
    pub request_timeout_ms: Option<u64>,
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
        let webhook_receiver_change = get("WORKFORCE_WEBHOOK_RECEIVER_CHANGE")
            .map(|v| v.parse::<ReceiverChange>())
            .transpose()?;
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
            webhook_receiver_change,
            seed: None,
            request_timeout_ms: None,
        })
    }

    /// Checks the settings and builds a manager configuration.
    pub fn into_config(self) -> Result<ManagerConfig, SettingsError> {
        let base_url = match (&self.base_url, &self.domain) {
            (Some(b), _) => b.trim_end_matches('/').to_owned(),
            (None, Some(d)) => tenant_base_url(d)?,
            (None, None) => {
                return Err(SettingsError::Missing {
                    name: "CXONE_DOMAIN",
                    flag: "--domain or --base-url",
                })
            }
        };
        let client_id = self.client_id.ok_or(SettingsError::Missing {
            name: "CXONE_CLIENT_ID",
            flag: "--client-id",
        })?;
        let client_secret = self.client_secret.ok_or(SettingsError::Missing {
            name: "CXONE_CLIENT_SECRET",
            flag: "--client-secret",
        })?;
        let mut engine = EngineConfig::new(base_url, client_id, client_secret);
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
        engine.validate()?;
        Ok(ManagerConfig::new(engine, self.audit_log))
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
}
