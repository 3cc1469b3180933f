//! Stable error codes and the error types that carry them.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
///
/// The same string reaches Rust callers, JS callers and the audit log, so these names never change once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The requested state name is malformed.
    InvalidState,
    /// The user id is empty, too long, or contains forbidden characters.
    InvalidUserId,
    /// Policy: the agent has no active shift.
    AgentNotScheduled,
    /// Policy: a mandatory break is due, so READY is refused.
    MandatoryBreakViolation,
    /// The API answered 401 twice in a row, even after a token refresh.
    Unauthorized,
    /// The token endpoint refused the credentials (`invalid_client` and friends).
    AuthFailed,
    /// The API answered 403: the credentials lack permission.
    Forbidden,
    /// The API answered 404 for the user.
    UserNotFound,
    /// The API answered 409.
    Conflict,
    /// The API refused the request with another 4xx status.
    Rejected,
    /// Retries were exhausted while the API kept answering 429.
    RateLimited,
    /// Retries were exhausted on 5xx answers, transport errors or timeouts.
    UpstreamUnavailable,
    /// The API answered with a body that could not be parsed.
    BadResponse,
    /// The configuration is invalid.
    InvalidConfig,
    /// A resumed change carries an unusable idempotency key.
    InvalidIdempotencyKey,
    /// A webhook URL is not https (plain http is allowed on loopback only).
    InvalidWebhookUrl,
    /// The durable audit log is damaged before its last line (not a torn write: tampering or disk damage).
    AuditLogCorrupt,
    /// An access token handed in by the caller had already expired.
    TokenExpired,
    /// The durable audit log could not be written, so no outcome can be reported safely.
    AuditLogUnavailable,
    /// A browser page was given a client secret without opting in (the npm package refuses it).
    ClientSecretInBrowser,
    /// The npm package was used before its WebAssembly module was loaded (`await initAsync()` first).
    NotInitialized,
    /// A state change was sent and may have reached the tenant, but no answer confirmed it: a failure of
    /// knowledge, not of the change. The journal keeps it open until later records settle it.
    OutcomeUnknown,
    /// Too many changes are open at once (the engine's bounded queue is full); try again later.
    Busy,
    /// The manager was closed (or is shutting down) before the command could run.
    Closed,
    /// A caller's reference for a change is empty, longer than 128 characters, or not printable ASCII.
    InvalidReference,
    /// `cxone` profile: a discovery step (OpenID configuration, the id_token's `tenantId`, the CXone
    /// configuration) failed; the message names the step.
    DiscoveryFailed,
    /// `cxone` profile: the agent is not in the tenant's agent directory (or the API answered 404 for it).
    UnknownAgent,
    /// `cxone` profile: no unavailable code of the agent's team has the name the reason code asks for.
    UnknownReasonCode,
    /// The API answered 400: the request was refused as malformed (the tenant's words are kept).
    BadRequest,
    /// The API answered 409: the state cannot be set now (for example the agent is not logged in).
    StateConflict,
    /// Observing states changed elsewhere needs a read endpoint the profile does not have (`seed`).
    ObserveUnsupported,
    /// A settlement: the tenant's own answers show that an `OUTCOME_UNKNOWN` change was not applied.
    NotApplied,
    /// An actor is not `agent:ID`, `supervisor:ID` or `system[:ID]` with a printable id of at most 128
    /// characters.
    InvalidActor,
    /// An override lacks its supervisor or its reason (each 1 to 128 printable characters).
    InvalidOverride,
    /// A deferred change was cancelled before it was sent: by its caller, or replaced by a newer request
    /// for the same agent. Nothing was sent.
    DeferralCancelled,
}

impl ErrorCode {
    /// The stable string form, e.g. `"MANDATORY_BREAK_VIOLATION"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidState => "INVALID_STATE",
            Self::InvalidUserId => "INVALID_USER_ID",
            Self::AgentNotScheduled => "AGENT_NOT_SCHEDULED",
            Self::MandatoryBreakViolation => "MANDATORY_BREAK_VIOLATION",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::AuthFailed => "AUTH_FAILED",
            Self::Forbidden => "FORBIDDEN",
            Self::UserNotFound => "USER_NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Rejected => "REJECTED",
            Self::RateLimited => "RATE_LIMITED",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::BadResponse => "BAD_RESPONSE",
            Self::InvalidConfig => "INVALID_CONFIG",
            Self::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Self::InvalidWebhookUrl => "INVALID_WEBHOOK_URL",
            Self::AuditLogCorrupt => "AUDIT_LOG_CORRUPT",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::AuditLogUnavailable => "AUDIT_LOG_UNAVAILABLE",
            Self::ClientSecretInBrowser => "CLIENT_SECRET_IN_BROWSER",
            Self::NotInitialized => "NOT_INITIALIZED",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Self::Busy => "BUSY",
            Self::Closed => "CLOSED",
            Self::InvalidReference => "INVALID_REFERENCE",
            Self::DiscoveryFailed => "DISCOVERY_FAILED",
            Self::UnknownAgent => "UNKNOWN_AGENT",
            Self::UnknownReasonCode => "UNKNOWN_REASON_CODE",
            Self::BadRequest => "BAD_REQUEST",
            Self::StateConflict => "STATE_CONFLICT",
            Self::ObserveUnsupported => "OBSERVE_UNSUPPORTED",
            Self::NotApplied => "NOT_APPLIED",
            Self::InvalidActor => "INVALID_ACTOR",
            Self::InvalidOverride => "INVALID_OVERRIDE",
            Self::DeferralCancelled => "DEFERRAL_CANCELLED",
        }
    }

    /// Every code, in declaration order (for docs, vectors and bindings). The list grows; match on codes,
    /// not on positions.
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidState,
        Self::InvalidUserId,
        Self::AgentNotScheduled,
        Self::MandatoryBreakViolation,
        Self::Unauthorized,
        Self::AuthFailed,
        Self::Forbidden,
        Self::UserNotFound,
        Self::Conflict,
        Self::Rejected,
        Self::RateLimited,
        Self::UpstreamUnavailable,
        Self::BadResponse,
        Self::InvalidConfig,
        Self::InvalidIdempotencyKey,
        Self::InvalidWebhookUrl,
        Self::AuditLogCorrupt,
        Self::TokenExpired,
        Self::AuditLogUnavailable,
        Self::ClientSecretInBrowser,
        Self::NotInitialized,
        Self::OutcomeUnknown,
        Self::Busy,
        Self::Closed,
        Self::InvalidReference,
        Self::DiscoveryFailed,
        Self::UnknownAgent,
        Self::UnknownReasonCode,
        Self::BadRequest,
        Self::StateConflict,
        Self::ObserveUnsupported,
        Self::NotApplied,
        Self::InvalidActor,
        Self::InvalidOverride,
        Self::DeferralCancelled,
    ];

    /// Parses the stable string form.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// Whether this code is a compliance-policy denial.
    ///
    /// Only these count towards `violationCount`; the reference module counted every failure, which
    /// made transport trouble look like agents breaking policy.
    pub fn is_policy_violation(self) -> bool {
        matches!(
            self,
            Self::AgentNotScheduled | Self::MandatoryBreakViolation
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition (or a validation) did not succeed: a stable code plus a human message.
///
/// The message never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct TransitionError {
    /// The stable code.
    pub code: ErrorCode,
    /// A short human-readable explanation.
    pub message: String,
    /// For `MANDATORY_BREAK_VIOLATION`: the break, when the tenant said which (so a console can say
    /// "mandatory break in progress until 10:45" in the agent's own time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_window: Option<BreakWindow>,
}

/// A mandatory break's window (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "camelCase")]
pub struct BreakWindow {
    /// When the break starts.
    pub start_ms: u64,
    /// When it ends.
    pub end_ms: u64,
}

impl TransitionError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            break_window: None,
        }
    }
}

/// An invalid engine or simulator configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of range or malformed; the field is named, its value is not echoed.
    #[error("invalid setting `{field}`: {reason}")]
    Invalid {
        /// The setting's name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A webhook URL that is not https (plain http is allowed on loopback only), or not a URL at all.
    #[error("invalid webhook URL: {reason}")]
    WebhookUrl {
        /// Why it is refused.
        reason: String,
    },
}

impl ConfigError {
    /// The stable code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidConfig,
            Self::WebhookUrl { .. } => ErrorCode::InvalidWebhookUrl,
        }
    }
}

/// Why the engine refused a command outright (no id was assigned, nothing was audited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The bounded queue of open changes is full (`BUSY`).
    #[error("too many changes are open ({limit}); try again when some have finished")]
    Busy {
        /// The configured limit.
        limit: usize,
    },
    /// The engine was closed (`CLOSED`).
    #[error("the engine is closed")]
    Closed,
    /// The caller's reference is empty, longer than
    /// [`MAX_REFERENCE_LEN`](crate::MAX_REFERENCE_LEN) characters, or not printable ASCII
    /// (`INVALID_REFERENCE`).
    #[error("the reference must be 1 to {max} printable ASCII characters", max = crate::MAX_REFERENCE_LEN)]
    InvalidReference,
    /// The profile has no endpoint to read agent states from (`seed`): observation is not possible
    /// (`OBSERVE_UNSUPPORTED`).
    #[error("the seed profile has no endpoint to read agent states: observation needs the cxone profile")]
    ObserveUnsupported,
    /// The actor is malformed (`INVALID_ACTOR`).
    #[error("{0}")]
    InvalidActor(crate::actor::ActorError),
    /// The override lacks its supervisor or reason, or one is not printable (`INVALID_OVERRIDE`).
    #[error("an override needs a supervisor and a reason, each 1 to {max} printable characters", max = crate::actor::MAX_ACTOR_LEN)]
    InvalidOverride,
}

impl CommandError {
    /// The stable code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Busy { .. } => ErrorCode::Busy,
            Self::Closed => ErrorCode::Closed,
            Self::InvalidReference => ErrorCode::InvalidReference,
            Self::ObserveUnsupported => ErrorCode::ObserveUnsupported,
            Self::InvalidActor(_) => ErrorCode::InvalidActor,
            Self::InvalidOverride => ErrorCode::InvalidOverride,
        }
    }
}

impl From<CommandError> for TransitionError {
    fn from(e: CommandError) -> Self {
        TransitionError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(seen.insert(c.as_str()), "{c} twice");
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!(seen.contains("OUTCOME_UNKNOWN"));
        assert!(seen.contains("INVALID_REFERENCE"));
        assert_eq!(
            TransitionError::from(CommandError::InvalidReference).code,
            ErrorCode::InvalidReference
        );
        assert!(!ErrorCode::OutcomeUnknown.is_policy_violation());
    }
}
