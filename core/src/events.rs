//! What the engine tells its host. Hosts persist and deliver these; the engine performs no side effects.

use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use crate::error::{ErrorCode, TransitionError};

/// Identifies one transition (or validation) command. Assigned by the engine in order, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransitionId(pub u64);

/// An event from the engine.
///
/// For every transition command the engine emits, in this order: zero or more [`Event::RetryScheduled`]
/// and at most one [`Event::ChangeIntent`] (always before the first state-change request it announces),
/// at most one [`Event::PolicyViolation`], exactly one [`Event::AuditRecord`], then exactly one of
/// [`Event::StateChanged`] (followed by its [`Event::Webhook`]) or [`Event::TransitionFailed`]. The audit
/// record comes first so a host can make it durable before it reports the outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Event {
    /// The tenant accepted a state change.
    StateChanged(StateChanged),
    /// Compliance policy refused a change.
    PolicyViolation(PolicyViolation),
    /// A transition ended without a state change.
    TransitionFailed(TransitionFailed),
    /// An audit record to persist.
    AuditRecord(AuditRecord),
    /// A webhook payload to deliver.
    Webhook(WebhookPayload),
    /// A request failed transiently and will be sent again.
    RetryScheduled(RetryScheduled),
    /// A validation-only command finished.
    ValidationCompleted(ValidationCompleted),
    /// A state change is about to be sent for the first time: journal it before performing the request.
    ChangeIntent(ChangeIntent),
    /// A token is needed from the host's token source ([`TokenSource::External`](crate::TokenSource)):
    /// answer with [`Input::AccessToken`](crate::Input::AccessToken) and this `request_id`.
    TokenRequested(TokenRequested),
}

/// The engine needs an access token from the host (e.g. a web console's own back end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequested {
    /// Answer with this id.
    pub request_id: crate::http::RequestId,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A state change about to be sent. Hosts with a durable audit log journal it first; on restart, a journaled
/// intent without an audit record is finished with [`Command::Resume`](crate::Command::Resume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeIntent {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The target state.
    pub state: String,
    /// The reason code being sent.
    pub reason_code: String,
    /// The `Idempotency-Key` the change is sent with (and resent with).
    pub idempotency_key: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// The tenant accepted a state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChanged {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The state before, if known.
    pub previous_state: Option<String>,
    /// The new state.
    pub new_state: String,
    /// The reason code sent.
    pub reason_code: String,
    /// From command to completion.
    pub latency_ms: u64,
    /// API requests sent for this transition.
    pub attempts: u32,
    /// Completion time (Unix ms).
    pub at_ms: u64,
}

/// Compliance policy refused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyViolation {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The refused state.
    pub requested_state: String,
    /// `AGENT_NOT_SCHEDULED` or `MANDATORY_BREAK_VIOLATION`.
    pub code: ErrorCode,
    /// When it was refused (Unix ms).
    pub at_ms: u64,
}

/// A transition ended without a state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionFailed {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent (as given, even if invalid).
    pub user_id: String,
    /// The requested state (as given, even if invalid).
    pub requested_state: String,
    /// Why.
    pub error: TransitionError,
    /// Whether compliance policy refused it (the audit record's `policyViolation`), so hosts need not
    /// know which codes are policy codes.
    pub policy_violation: bool,
    /// From command to completion.
    pub latency_ms: u64,
    /// API requests sent for this transition.
    pub attempts: u32,
    /// Completion time (Unix ms).
    pub at_ms: u64,
}

/// What kind of request a retry concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestKind {
    /// The OAuth token request.
    Token,
    /// The schedule lookup.
    Schedule,
    /// The break-status lookup.
    BreakStatus,
    /// The state change.
    SetState,
}

/// A request failed transiently and will be sent again after `delay_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryScheduled {
    /// The transition it serves (`None` for a token request, which serves many).
    pub transition_id: Option<TransitionId>,
    /// The agent of that transition (so a console can show "retrying" next to them).
    pub user_id: Option<String>,
    /// Which request.
    pub kind: RequestKind,
    /// The retry number, from 1.
    pub retry: u32,
    /// The wait before it is sent again.
    pub delay_ms: u64,
    /// The HTTP status that caused it, if there was one.
    pub status: Option<u16>,
    /// When it was scheduled (Unix ms).
    pub at_ms: u64,
}

/// A validation-only command finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationCompleted {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The state validated.
    pub state: String,
    /// Whether the change would be allowed.
    pub valid: bool,
    /// The reason code that would be sent, when valid.
    pub reason_code: Option<String>,
    /// Why not, when invalid.
    pub error: Option<TransitionError>,
    /// Completion time (Unix ms).
    pub at_ms: u64,
}

/// The reference module's `AGENT_STATE_CHANGED` webhook, with additive fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Always `AGENT_STATE_CHANGED`.
    pub event: String,
    /// A unique id for receivers to dedupe on (added). It is derived from the change's idempotency key, so
    /// the same change announced twice (after a crash and resume) carries the same id.
    pub event_id: String,
    /// RFC 3339 with milliseconds.
    pub timestamp: String,
    /// The change.
    pub data: WebhookData,
}

/// The `data` member of [`WebhookPayload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookData {
    /// The agent.
    pub user_id: String,
    /// The new state.
    pub new_state: String,
    /// The state before (added).
    pub previous_state: Option<String>,
    /// The reason code sent (added).
    pub reason_code: String,
    /// The transition's latency.
    pub latency_ms: u64,
    /// The length of the idle stretch this change ended (0 if the previous state was not idle).
    ///
    /// The reference computed the idle time of the state just entered, which is always 0 at that moment.
    pub idle_time_ms: u64,
    /// Policy violations so far (policy denials only, unlike the reference).
    pub violation_count: u64,
}

/// The `event` name of state-change webhooks.
pub const AGENT_STATE_CHANGED: &str = "AGENT_STATE_CHANGED";
