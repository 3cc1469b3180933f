//! The connection and durability options shared by `transition` and `bulk`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use cxone_agent_state::{AgentStateManager, ManagerConfig, Settings, SettingsError};
use cxone_agent_state_core::{
    redact_url, ChainHead, ReceiverChange, Secret, StateChanged, TransitionError,
};

use super::fail::{exit, refuse_stdout_onto, Failure};

/// Where the tenant is, how to authenticate, where the audit log and webhooks go.
///
/// The `cxone` options (the real CXone API) are listed under their own heading in `--help`; on that profile
/// `--domain` and `--base-url` are not needed. Every option falls back to the environment variable the reference module uses; a flag wins over it.
/// Secrets are held as [`Secret`] from the moment they are parsed, and `Debug` redacts the webhook URL's
/// query, so the options can be logged.
#[derive(Args)]
pub struct ConnectArgs {
    /// Tenant domain: the API is `https://{domain}.api.nice.incontact.com`.
    #[arg(long, env = "CXONE_DOMAIN")]
    domain: Option<String>,
    /// OAuth client id.
    #[arg(long, env = "CXONE_CLIENT_ID")]
    client_id: Option<String>,
    /// OAuth client secret (prefer the environment: flags show up in process lists).
    #[arg(long, env = "CXONE_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    client_secret: Option<Secret>,
    /// API base URL, overriding the domain (e.g. a local `sim-server`).
    #[arg(long, env = "CXONE_BASE_URL")]
    base_url: Option<String>,
    /// Token endpoint (default `{base}/oauth2/token`).
    #[arg(long, env = "CXONE_TOKEN_URL")]
    token_url: Option<String>,
    /// The tenant's request budget per minute (default 100) [env: CXONE_RATE_LIMIT_PER_MIN].
    #[arg(long)]
    rate_limit: Option<u32>,
    /// The durable log (JSON Lines): the audit log, with the intents, webhook payloads and checkpoints around
    /// its records.
    #[arg(long, env = "CXONE_AUDIT_LOG", default_value = "cxone-audit.jsonl")]
    audit_log: PathBuf,
    /// Webhook receiver: https, or http on loopback only.
    #[arg(long, env = "WORKFORCE_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// HMAC-SHA256 key for the `X-Signature-256` header of webhooks.
    #[arg(long, env = "WORKFORCE_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    webhook_secret: Option<Secret>,
    /// What a start does with webhook events accepted for an earlier receiver URL (the URL changed since):
    /// `deliver-to-original` (the receiver they were accepted for; the default) or `dead-letter` (set
    /// aside for `outbox replay` to the receiver configured then) [env: WORKFORCE_WEBHOOK_RECEIVER_CHANGE].
    #[arg(long, value_parser = |s: &str| s.parse::<ReceiverChange>().map_err(|e| e.to_string()))]
    webhook_receiver_change: Option<ReceiverChange>,
    /// How long to wait at exit for undelivered webhooks (they go out on the next start otherwise).
    #[arg(long, env = "WORKFORCE_WEBHOOK_DRAIN_SECS", default_value_t = 30)]
    webhook_drain_secs: u64,
    /// A webhook payload the receiver refuses (4xx) this many times is set aside as a dead letter, so the
    /// payloads behind it flow (see `outbox list` and `outbox replay`) [default: 5] [env:
    /// WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER].
    #[arg(long)]
    webhook_dead_letter_after: Option<u32>,
    /// Changes open at once (taken and not yet ended) before new ones answer BUSY [default: 100000] [env:
    /// CXONE_MAX_OPEN_CHANGES].
    #[arg(long, value_name = "N")]
    max_open_changes: Option<u32>,
    /// Per-request timeout in milliseconds.
    #[arg(long, env = "CXONE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Seed of the engine's jitter and ids (random by default).
    #[arg(long)]
    seed: Option<u64>,
    /// The API spoken: `seed` (the reference module's endpoints) or `cxone` (the real CXone API) [default:
    /// cxone when an access key is configured, else seed].
    #[arg(long, env = "CXONE_PROFILE", help_heading = "CXone profile")]
    profile: Option<String>,
    /// `cxone`: the access key id (the password grant's `username`).
    #[arg(long, env = "CXONE_ACCESS_KEY_ID", help_heading = "CXone profile")]
    access_key_id: Option<String>,
    /// `cxone`: the access key secret (prefer the environment: flags show up in process lists).
    #[arg(
        long,
        env = "CXONE_ACCESS_KEY_SECRET",
        hide_env_values = true,
        value_parser = secret,
        help_heading = "CXone profile"
    )]
    access_key_secret: Option<Secret>,
    /// `cxone`: where discovery starts [default: `https://cxone.niceincontact.com`].
    #[arg(long, env = "CXONE_AUTH_BASE", help_heading = "CXone profile")]
    auth_base: Option<String>,
    /// `cxone`: the ACD/Admin API base [default: discovered].
    #[arg(long, env = "CXONE_API_BASE_URL", help_heading = "CXone profile")]
    api_base_url: Option<String>,
    /// `cxone`: the WFM base [default: discovered]; with both bases set, discovery stops at the token.
    #[arg(long, env = "CXONE_WFM_BASE_URL", help_heading = "CXone profile")]
    wfm_base_url: Option<String>,
    /// `cxone`: the `v{N}.0` of every ACD call [default: 34].
    #[arg(long, env = "CXONE_API_VERSION", help_heading = "CXone profile")]
    api_version: Option<String>,
    /// `cxone`: how the client app authenticates, `basic` or `body` [default: basic].
    #[arg(long, env = "CXONE_CLIENT_AUTH", help_heading = "CXone profile")]
    client_auth: Option<String>,
    /// `cxone`: how SetAgentState carries its parameters, `query` or `json` [default: query].
    #[arg(long, env = "CXONE_SET_STATE_ENCODING", help_heading = "CXone profile")]
    set_state_encoding: Option<String>,
    /// `cxone`: `STATE=code name` pairs over the defaults, e.g. `NOT_READY=Break,PAUSED=Meeting` [default:
    /// NOT_READY=BREAK,PAUSED=ADHOC,IDLE=SYSTEM_IDLE,*=GENERAL].
    #[arg(long, env = "CXONE_REASON_CODES", help_heading = "CXone profile")]
    reason_codes: Option<String>,
    /// `cxone`: the schedule activity titles that are mandatory breaks [default: Break,Lunch].
    #[arg(long, env = "CXONE_BREAK_ACTIVITIES", help_heading = "CXone profile")]
    break_activities: Option<String>,
    /// `cxone`: the WFM host's own request budget per minute [default: 100].
    #[arg(
        long,
        env = "CXONE_WFM_RATE_LIMIT_PER_MIN",
        help_heading = "CXone profile"
    )]
    wfm_rate_limit_per_min: Option<String>,
    /// `cxone`: milliseconds between the end of one poll of the agents' states and the next (`watch`, and
    /// settling unknown outcomes) [default: 10000, at least 1000] [env: CXONE_OBSERVE_INTERVAL_MS].
    #[arg(long, value_name = "MS", help_heading = "Observation (cxone)")]
    observe_interval_ms: Option<u64>,
    /// `cxone`: an OUTCOME_UNKNOWN change not seen applied this many milliseconds after its last send may
    /// be settled as not applied [default: 60000] [env: CXONE_OBSERVE_SETTLE_AFTER_MS].
    #[arg(long, value_name = "MS", help_heading = "Observation (cxone)")]
    observe_settle_after_ms: Option<u64>,
    /// `cxone`: while observing, a change the last fresh observation shows in effect already is not sent
    /// (audited as a no-op naming that observation) [default: false] [env:
    /// CXONE_OBSERVE_SKIP_IF_IN_EFFECT].
    #[arg(
        long,
        value_name = "true|false",
        help_heading = "Observation (cxone)",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    observe_skip_if_in_effect: Option<bool>,
    /// `cxone`: the observed states are stale when no poll succeeded for this many milliseconds
    /// [default: 30000, at least the interval] [env: CXONE_OBSERVE_STALE_AFTER_MS].
    #[arg(long, value_name = "MS", help_heading = "Observation (cxone)")]
    observe_stale_after_ms: Option<u64>,
}

/// The settle wait when neither `--settle-wait-secs` nor `CXONE_SETTLE_WAIT_SECS` is given: the default
/// settle-after time (60 s) plus a few polls (10 s each) for the tenant's answers to decide.
pub const DEFAULT_SETTLE_WAIT_SECS: u64 = 90;

/// A settings error as a usage error (exit 64) with the engine's code, named by where its value came from:
/// the flag if one was given, the environment variable otherwise.
fn as_usage(e: SettingsError) -> Failure {
    let message = match &e {
        SettingsError::Invalid { name, reason, .. } => match flag_for(name) {
            Some(flag) => format!("invalid setting {flag}: {reason}"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    };
    Failure {
        exit: exit::USAGE,
        ..Failure::new(e.code().as_str(), message)
    }
}

/// Parses a secret straight into [`Secret`] (never held as a plain string).
fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value.to_owned()))
}

impl fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectArgs")
            .field("domain", &self.domain)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("rate_limit", &self.rate_limit)
            .field("audit_log", &self.audit_log)
            .field("webhook_url", &self.webhook_url.as_deref().map(redact_url))
            .field("webhook_secret", &self.webhook_secret)
            .field("webhook_receiver_change", &self.webhook_receiver_change)
            .field("webhook_drain_secs", &self.webhook_drain_secs)
            .field("webhook_dead_letter_after", &self.webhook_dead_letter_after)
            .field("max_open_changes", &self.max_open_changes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("seed", &self.seed)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("auth_base", &self.auth_base.as_deref().map(redact_url))
            .field(
                "api_base_url",
                &self.api_base_url.as_deref().map(redact_url),
            )
            .field(
                "wfm_base_url",
                &self.wfm_base_url.as_deref().map(redact_url),
            )
            .field("api_version", &self.api_version)
            .field("client_auth", &self.client_auth)
            .field("set_state_encoding", &self.set_state_encoding)
            .field("reason_codes", &self.reason_codes)
            .field("break_activities", &self.break_activities)
            .field("wfm_rate_limit_per_min", &self.wfm_rate_limit_per_min)
            .field("observe_interval_ms", &self.observe_interval_ms)
            .field("observe_settle_after_ms", &self.observe_settle_after_ms)
            .field("observe_skip_if_in_effect", &self.observe_skip_if_in_effect)
            .field("observe_stale_after_ms", &self.observe_stale_after_ms)
            .finish()
    }
}

/// Each setting's environment variable, the id of the option that overrides it, and that option's flag.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("CXONE_DOMAIN", "domain", "--domain"),
    ("CXONE_CLIENT_ID", "client_id", "--client-id"),
    ("CXONE_CLIENT_SECRET", "client_secret", "--client-secret"),
    ("CXONE_BASE_URL", "base_url", "--base-url"),
    ("CXONE_TOKEN_URL", "token_url", "--token-url"),
    ("CXONE_RATE_LIMIT_PER_MIN", "rate_limit", "--rate-limit"),
    ("WORKFORCE_WEBHOOK_URL", "webhook_url", "--webhook-url"),
    (
        "WORKFORCE_WEBHOOK_SECRET",
        "webhook_secret",
        "--webhook-secret",
    ),
    (
        "WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER",
        "webhook_dead_letter_after",
        "--webhook-dead-letter-after",
    ),
    (
        "WORKFORCE_WEBHOOK_RECEIVER_CHANGE",
        "webhook_receiver_change",
        "--webhook-receiver-change",
    ),
    (
        "CXONE_MAX_OPEN_CHANGES",
        "max_open_changes",
        "--max-open-changes",
    ),
    ("CXONE_PROFILE", "profile", "--profile"),
    ("CXONE_ACCESS_KEY_ID", "access_key_id", "--access-key-id"),
    (
        "CXONE_ACCESS_KEY_SECRET",
        "access_key_secret",
        "--access-key-secret",
    ),
    ("CXONE_AUTH_BASE", "auth_base", "--auth-base"),
    ("CXONE_API_BASE_URL", "api_base_url", "--api-base-url"),
    ("CXONE_WFM_BASE_URL", "wfm_base_url", "--wfm-base-url"),
    ("CXONE_API_VERSION", "api_version", "--api-version"),
    ("CXONE_CLIENT_AUTH", "client_auth", "--client-auth"),
    (
        "CXONE_SET_STATE_ENCODING",
        "set_state_encoding",
        "--set-state-encoding",
    ),
    ("CXONE_REASON_CODES", "reason_codes", "--reason-codes"),
    (
        "CXONE_BREAK_ACTIVITIES",
        "break_activities",
        "--break-activities",
    ),
    (
        "CXONE_WFM_RATE_LIMIT_PER_MIN",
        "wfm_rate_limit_per_min",
        "--wfm-rate-limit-per-min",
    ),
    (
        "CXONE_OBSERVE_INTERVAL_MS",
        "observe_interval_ms",
        "--observe-interval-ms",
    ),
    (
        "CXONE_OBSERVE_SETTLE_AFTER_MS",
        "observe_settle_after_ms",
        "--observe-settle-after-ms",
    ),
    (
        "CXONE_OBSERVE_SKIP_IF_IN_EFFECT",
        "observe_skip_if_in_effect",
        "--observe-skip-if-in-effect",
    ),
    (
        "CXONE_OBSERVE_STALE_AFTER_MS",
        "observe_stale_after_ms",
        "--observe-stale-after-ms",
    ),
    (
        "CXONE_SETTLE_WAIT_SECS",
        "settle_wait_secs",
        "--settle-wait-secs",
    ),
];

/// Every setting `Settings` reads, as `(variable, option id, flag)`: also those whose option does not read
/// its variable itself (a configuration file may set any of them).
pub fn setting_variables() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    SETTINGS.iter().copied()
}

/// The matches of the command being run (the innermost subcommand's), once `main` kept them.
pub fn leaf_matches() -> Option<&'static ArgMatches> {
    let mut m = MATCHES.get()?;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    Some(m)
}

/// The parsed command line, kept so a setting can be named by where its value came from.
static MATCHES: OnceLock<ArgMatches> = OnceLock::new();

/// Keeps the parsed command line (called once, by `main`).
pub fn remember_matches(matches: ArgMatches) {
    let _ = MATCHES.set(matches);
}

/// Whether the option `id` of the command being run was given on the command line (not by its variable
/// or its default).
fn given_as_flag(id: &str) -> bool {
    let Some(mut m) = MATCHES.get() else {
        return false;
    };
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The flag that set the setting whose variable is `variable`, if a flag did.
fn flag_for(variable: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|(v, id, _)| *v == variable && given_as_flag(id))
        .map(|(_, _, flag)| *flag)
}

impl ConnectArgs {
    /// The manager configuration these options describe. A bad setting is a usage error (exit 64) with the
    /// engine's code (`INVALID_CONFIG`), named by where its value came from: the flag if one was given, the
    /// environment variable otherwise (`CXONE_RATE_LIMIT_PER_MIN=lots` names the variable, never a flag the
    /// user did not type). A variable a flag overrides is not read at all.
    pub fn config(&self) -> Result<ManagerConfig, Failure> {
        let mut config = self.checked_settings()?.into_config().map_err(as_usage)?;
        // Audit records name the program as the changes' source.
        config.engine.source = cxone_agent_state_core::Source::Cli;
        Ok(config)
    }

    /// How long `transition` and `bulk` observe before they exit to settle unknown outcomes: `flag`
    /// (`--settle-wait-secs`) if given, else `CXONE_SETTLE_WAIT_SECS`, else 90 s. A bad value is a usage
    /// error (exit 64) with the code `INVALID_CONFIG`, named as [`config`](Self::config) names it.
    pub fn settle_wait(&self, flag: Option<u64>) -> Result<Duration, Failure> {
        let secs = match flag {
            Some(secs) => secs,
            None => self
                .checked_settings()?
                .settle_wait_secs
                .unwrap_or(DEFAULT_SETTLE_WAIT_SECS),
        };
        Ok(Duration::from_secs(secs))
    }

    /// The settings, checked as far as reading them goes (see [`config`](Self::config)).
    fn checked_settings(&self) -> Result<Settings, Failure> {
        refuse_stdout_onto(&self.audit_log)?;
        let settings = self
            .settings(|name| {
                flag_for(name)
                    .is_none()
                    .then(|| std::env::var(name).ok())
                    .flatten()
            })
            .map_err(as_usage)?;
        if settings.profile_inferred() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "note: profile cxone (CXONE_PROFILE is not set and an access key is configured; \
                     --profile seed keeps the reference endpoints)"
                );
            });
        }
        Ok(settings)
    }

    /// The settings these options give, over `env` (the variables no flag overrides): a flag wins, then
    /// its variable (clap reads the variables of the options that name one), then `env`.
    fn settings(&self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        // The `cxone` options are parsed by `Settings`, so a bad value is `INVALID_CONFIG` naming it.
        let text = |name: &str| -> Option<String> {
            match name {
                "CXONE_PROFILE" => self.profile.clone(),
                "CXONE_ACCESS_KEY_ID" => self.access_key_id.clone(),
                "CXONE_AUTH_BASE" => self.auth_base.clone(),
                "CXONE_API_BASE_URL" => self.api_base_url.clone(),
                "CXONE_WFM_BASE_URL" => self.wfm_base_url.clone(),
                "CXONE_API_VERSION" => self.api_version.clone(),
                "CXONE_CLIENT_AUTH" => self.client_auth.clone(),
                "CXONE_SET_STATE_ENCODING" => self.set_state_encoding.clone(),
                "CXONE_REASON_CODES" => self.reason_codes.clone(),
                "CXONE_BREAK_ACTIVITIES" => self.break_activities.clone(),
                "CXONE_WFM_RATE_LIMIT_PER_MIN" => self.wfm_rate_limit_per_min.clone(),
                _ => None,
            }
        };
        let env = Settings::from_lookup(|name| text(name).or_else(|| env(name)))?;
        Ok(Settings {
            domain: self.domain.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            base_url: self.base_url.clone(),
            token_url: self.token_url.clone(),
            rate_limit_per_min: self.rate_limit.or(env.rate_limit_per_min),
            audit_log: Some(self.audit_log.clone()),
            webhook_url: self.webhook_url.clone(),
            webhook_secret: self.webhook_secret.clone(),
            webhook_dead_letter_after: self
                .webhook_dead_letter_after
                .or(env.webhook_dead_letter_after),
            max_open_changes: self.max_open_changes.or(env.max_open_changes),
            webhook_receiver_change: self.webhook_receiver_change.or(env.webhook_receiver_change),
            seed: self.seed,
            request_timeout_ms: Some(self.request_timeout_ms),
            access_key_secret: self.access_key_secret.clone(),
            observe_interval_ms: self.observe_interval_ms.or(env.observe_interval_ms),
            observe_settle_after_ms: self.observe_settle_after_ms.or(env.observe_settle_after_ms),
            observe_skip_if_in_effect: self
                .observe_skip_if_in_effect
                .or(env.observe_skip_if_in_effect),
            observe_stale_after_ms: self.observe_stale_after_ms.or(env.observe_stale_after_ms),
            ..env
        })
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// One request's timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long to wait for the outbox at exit.
    pub fn webhook_drain(&self) -> Duration {
        Duration::from_secs(self.webhook_drain_secs)
    }

    /// Starts a manager and says on stderr what recovery found.
    pub async fn start(&self) -> anyhow::Result<AgentStateManager> {
        let manager = AgentStateManager::start(self.config()?)
            .await
            .map_err(|e| Failure::new(e.code().as_str(), e.to_string()))?;
        let r = manager.recovery();
        if let Some(p) = &r.torn_tail_saved_to {
            eprintln!(
                "recovered: the log's torn last line (an interrupted write) was set aside in {}",
                p.display()
            );
        }
        if r.newline_added {
            eprintln!(
                "recovered: the log's last record was whole but lacked its newline; it was added"
            );
        }
        let restored = manager.restored();
        if restored.resumed > 0 {
            eprintln!(
                "recovered: resending {} state change(s) interrupted before the tenant confirmed them \
                 (same Idempotency-Key)",
                restored.resumed
            );
        }
        if restored.abandoned > 0 {
            eprintln!(
                "recovered: {} interrupted state change(s) were too old to send again; recorded as OUTCOME_UNKNOWN",
                restored.abandoned
            );
        }
        if restored.webhooks > 0 {
            eprintln!(
                "recovered: delivering {} webhook event(s) left from an earlier run",
                restored.webhooks
            );
        }
        if restored.webhooks_to_original_receiver > 0 {
            eprintln!(
                "note: the webhook URL changed: {} event(s) accepted for the earlier receiver go to that \
                 receiver, not the new one (--webhook-receiver-change dead-letter sets them aside instead)",
                restored.webhooks_to_original_receiver
            );
        }
        if restored.webhooks_dead_lettered_receiver_changed > 0 {
            eprintln!(
                "note: the webhook URL changed: {} event(s) accepted for the earlier receiver were set aside \
                 as dead letters (`outbox replay` sends them to the receiver configured now)",
                restored.webhooks_dead_lettered_receiver_changed
            );
        }
        if restored.dead_letters > 0 {
            eprintln!(
                "note: {} webhook event(s) are dead letters (see `cxone-agent-state outbox list`)",
                restored.dead_letters
            );
        }
        Ok(manager)
    }
}

/// A transition's outcome as the JSON the CLI prints (`transition`) and writes per row (`bulk`).
pub fn outcome_json(
    user: &str,
    state: &str,
    result: &Result<StateChanged, TransitionError>,
) -> serde_json::Value {
    match result {
        Ok(c) => serde_json::json!({
            "success": true,
            "userId": c.user_id,
            "previousState": c.previous_state,
            "newState": c.new_state,
            "reasonCode": c.reason_code,
            "latencyMs": c.latency_ms,
            "attempts": c.attempts,
        }),
        Err(e) => serde_json::json!({
            "success": false,
            "code": e.code,
            "message": e.message,
            "userId": user,
            "state": state,
            "policyViolation": e.code.is_policy_violation(),
        }),
    }
}

/// Shuts the manager down, reports webhooks left for the next start, and prints the audit log's head on
/// stderr: the anchor to keep for `audit verify --head` (a hash chain alone cannot see a deleted tail).
pub async fn finish(manager: AgentStateManager, drain: Duration, audit_log: &Path) {
    let summary = manager.shutdown(drain).await;
    if summary.undelivered_webhooks > 0 {
        eprintln!(
            "{} webhook event(s) are still waiting; they will be delivered on the next start",
            summary.undelivered_webhooks
        );
    }
    if summary.dead_letters > 0 {
        eprintln!(
            "{} webhook event(s) are dead letters (the receiver refused them); \
             see `cxone-agent-state outbox list` and `outbox replay`",
            summary.dead_letters
        );
    }
    print_head(audit_log, &summary.audit_head);
}

/// Ctrl-C presses, each one a message (a handler stays installed, so none is lost between two waits).
pub fn interrupts() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM, each one a message: the ways a long-running command (`watch`)
/// is asked to stop. The handlers stay installed, so a second request can stop at once.
pub fn stop_requests() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while term.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
    }
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The second Ctrl-C: syncs the audit log (every acknowledged record is already durable; this covers the
/// group being written), prints its head and `what` is left, and exits 130 now.
pub fn stop_at_once(audit_log: &Path, what: &str) -> ! {
    let synced = std::fs::File::open(audit_log)
        .and_then(|f| f.sync_all())
        .is_ok();
    if let Ok(state) = cxone_agent_state::store::read_state(audit_log) {
        print_head(audit_log, state.chain_head());
    }
    eprintln!(
        "stopped at once: {what}; audit log {}",
        if synced {
            "synced"
        } else {
            "could not be synced"
        }
    );
    std::process::exit(i32::from(exit::INTERRUPTED))
}

/// `audit head: SEQ:HASH (PATH)` on stderr.
pub fn print_head(audit_log: &Path, head: &ChainHead) {
    eprintln!(
        "audit head: {} ({})",
        head.anchor_text(),
        audit_log.display()
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use cxone_agent_state_core::cxone::acd::SetStateEncoding;
    use cxone_agent_state_core::cxone::auth::ClientAuth;
    use cxone_agent_state_core::ProfileKind;

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    #[test]
    fn debug_shows_no_secret_and_no_webhook_query() {
        let probe = Probe::try_parse_from([
            "probe",
            "--client-secret",
            "cs-0xDEADBEEF",
            "--webhook-secret",
            "ws-0xFEEDFACE",
            "--webhook-url",
            "https://hooks.example/wfm?token=tk-0xC0FFEE",
            "--access-key-secret",
            "ak-0xBADC0DE",
            "--api-base-url",
            "https://api.example/x?sig=sg-0xF00D",
        ])
        .unwrap();
        let debug = format!("{probe:?}");
        for secret in [
            "cs-0xDEADBEEF",
            "ws-0xFEEDFACE",
            "tk-0xC0FFEE",
            "ak-0xBADC0DE",
            "sg-0xF00D",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("hooks.example"), "{debug}");
    }

    fn probe(argv: &[&str]) -> ConnectArgs {
        Probe::try_parse_from(std::iter::once("probe").chain(argv.iter().copied()))
            .unwrap()
            .connect
    }

    #[test]
    fn cxone_flags_win_over_the_environment_and_reach_the_engine() {
        let connect = probe(&[
            "--profile",
            "cxone",
            "--access-key-id",
            "flag-key",
            "--access-key-secret",
            "flag=&%secret",
            "--client-id",
            "app",
            "--client-secret",
            "app-secret",
            "--api-base-url",
            "http://127.0.0.1:9",
            "--wfm-base-url",
            "http://127.0.0.1:9",
            "--api-version",
            "33",
            "--set-state-encoding",
            "json",
            "--reason-codes",
            "NOT_READY=Lunch",
        ]);
        // Variables no flag overrides (as `config` reads them).
        let env = |name: &str| {
            match name {
                "CXONE_API_VERSION" => Some("7"),
                "CXONE_CLIENT_AUTH" => Some("body"),
                "CXONE_WFM_RATE_LIMIT_PER_MIN" => Some("12"),
                "CXONE_ACCESS_KEY_SECRET" => Some("env-secret"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let settings = connect.settings(env).unwrap();
        assert!(!settings.profile_inferred());
        let engine = settings.into_config().unwrap().engine;
        assert_eq!(engine.profile, ProfileKind::Cxone);
        let c = &engine.cxone;
        assert_eq!(c.access_key_id, "flag-key");
        assert_eq!(c.access_key_secret.expose(), "flag=&%secret");
        assert_eq!(c.versions.set_state, 33, "the flag wins");
        assert_eq!(
            c.client_auth,
            ClientAuth::Body,
            "the variable, with no flag"
        );
        assert_eq!(c.wfm_rate_limit.per_minute, 12);
        assert_eq!(c.set_state_encoding, SetStateEncoding::Json);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn an_access_key_alone_infers_cxone_and_a_bad_flag_value_is_invalid_config() {
        let connect = probe(&["--access-key-id", "k"]);
        let settings = connect.settings(|_| None).unwrap();
        assert!(settings.profile_inferred());
        assert_eq!(settings.profile(), ProfileKind::Cxone);
        let connect = probe(&["--profile", "seed", "--access-key-id", "k"]);
        assert_eq!(
            connect.settings(|_| None).unwrap().profile(),
            ProfileKind::Seed
        );
        let e = probe(&["--client-auth", "header"])
            .settings(|_| None)
            .unwrap_err();
        assert_eq!(e.code().as_str(), "INVALID_CONFIG");
        assert!(e.to_string().contains("CXONE_CLIENT_AUTH"), "{e}");
    }
}
