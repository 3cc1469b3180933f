//! What the engine tells its host besides requests and records: outcomes for callers, and what happened on
//! the way. Hosts deliver these; the engine performs no side effects.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, TransitionError};
use crate::http::RequestId;

/// Identifies one transition (or validation) command. Assigned by the engine in order, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransitionId(pub u64);

/// An event from the engine.
///
/// For every transition command the engine emits, in this order: zero or more [`Event::RetryScheduled`],
/// then its audit record ([`Output::Persist`](crate::Output::Persist)), at most one
/// [`Event::PolicyViolation`], then exactly one of [`Event::StateChanged`] or [`Event::TransitionFailed`].
/// The record comes first, so a host makes it durable before it reports the outcome. Every validation
/// command ends in one [`Event::ValidationCompleted`]. A change resumed after a restart ends like any other,
/// but no caller waits for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Event {
    /// The tenant accepted a state change: the caller's result.
    StateChanged(StateChanged),
    /// A transition ended without a confirmed state change: the caller's result. `OUTCOME_UNKNOWN` means the
    /// change may have been applied.
    TransitionFailed(TransitionFailed),
    /// A validation-only command finished: the caller's result.
    ValidationCompleted(ValidationCompleted),
    /// Compliance policy refused a change (also reported by its `TransitionFailed`).
    PolicyViolation(PolicyViolation),
    /// A request failed transiently and will be sent again.
    RetryScheduled(RetryScheduled),
    /// A token is needed from the host's token source ([`TokenSource::External`](crate::TokenSource)):
    /// answer with [`Input::AccessToken`](crate::Input::AccessToken) and this `request_id`.
    TokenRequested(TokenRequested),
    /// A webhook payload reached its receiver (a 2xx).
    WebhookDelivered(WebhookDelivered),
    /// A webhook delivery failed and will be tried again.
    WebhookRetryScheduled(WebhookRetryScheduled),
    /// The receiver kept refusing a webhook payload (or it grew too old): it is set aside as a dead letter,
    /// persisted and counted, and later payloads flow again.
    WebhookDeadLettered(WebhookDeadLettered),
    /// `cxone`: a poll showed an agent in a new state (or code, or session), made by us or elsewhere.
    StateObserved(StateObserved),
    /// `cxone`: a poll ended (or failed); says whether observation is alive and how far behind it is.
    ObservationHeartbeat(ObservationHeartbeat),
    /// An `OUTCOME_UNKNOWN` change was settled by what the tenant showed (a new audit record).
    OutcomeSettled(OutcomeSettled),
    /// A READY refused only because a mandatory break is due is held until the break ends (it was asked
    /// with `defer`). Its outcome comes later, as for any change.
    Deferred(Deferred),
    /// A deferred change was released when its break ended and applied.
    DeferredApplied(DeferredApplied),
    /// A deferred change will not be applied: cancelled, replaced by a newer change, given up at its
    /// deadline, or refused when it was checked again.
    DeferredCancelled(DeferredCancelled),
}

/// A change is held until its agent's break ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Deferred {
    /// The command (a change held again after a restart has a new one).
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The state it asks for (READY).
    pub requested_state: String,
    /// The deferral's id, on each of its audit records.
    pub deferral_id: String,
    /// Its `deferred` audit record.
    pub record_id: String,
    /// When it is released to be checked again: the break's end (Unix ms).
    pub until_ms: u64,
    /// When it gives up (Unix ms).
    pub deadline_ms: u64,
    /// The caller's reference of the change, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A deferred change was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeferredApplied {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The state set.
    pub state: String,
    /// The deferral's id.
    pub deferral_id: String,
    /// The caller's reference of the change, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A deferred change will not be applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeferredCancelled {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The state it asked for.
    pub requested_state: String,
    /// The deferral's id.
    pub deferral_id: String,
    /// `cancelled` (by its caller), `replaced` (by a newer change of the agent), `expired` (its deadline
    /// passed in the break), or `failed` (released, it did not apply: the code says why).
    pub cause: String,
    /// The code the change ended with (`DEFERRAL_CANCELLED`, `MANDATORY_BREAK_VIOLATION`, …).
    pub code: ErrorCode,
    /// The caller's reference of the change, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A poll showed an agent in a new state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StateObserved {
    /// The agent.
    pub user_id: String,
    /// The state before, as the history knew it.
    pub previous_state: Option<String>,
    /// The new state, as the history names it (see [`history_state`](crate::history_state)).
    pub state: String,
    /// What the tenant said, and whether the change was ours.
    pub observation: crate::Observation,
    /// The observation's audit record.
    pub record_id: String,
    /// When it was observed (Unix ms).
    pub at_ms: u64,
}

/// A poll ended or failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ObservationHeartbeat {
    /// Whether this poll succeeded.
    pub ok: bool,
    /// Time since the start of the last successful poll: how old the observed states may be (ms). `None`
    /// before the first success.
    pub lag_ms: Option<u64>,
    /// Whether the observed states are older than `observe.staleAfterMs`.
    pub stale: bool,
    /// Agents known to the observer.
    pub agents: usize,
    /// Agents whose change this poll reported.
    pub changed: usize,
    /// Polls that succeeded so far.
    pub polls: u64,
    /// Why this poll failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::TransitionError>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// An `OUTCOME_UNKNOWN` change was settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OutcomeSettled {
    /// The agent.
    pub user_id: String,
    /// The state the change asked for.
    pub requested_state: String,
    /// Whether the tenant applied it.
    pub applied: bool,
    /// The `OUTCOME_UNKNOWN` record it settles.
    pub settles: String,
    /// The settlement's own audit record.
    pub record_id: String,
    /// What it was decided from.
    pub evidence: String,
    /// The caller's reference of the change, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// The engine needs an access token from the host (e.g. a web console's own back end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TokenRequested {
    /// Answer with this id.
    pub request_id: RequestId,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// The tenant accepted a state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
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
    /// From command to completion (monotonic).
    pub latency_ms: u64,
    /// API requests sent for this transition.
    pub attempts: u32,
    /// Completion time (Unix ms).
    pub at_ms: u64,
    /// The caller's reference of the change, as in its audit record (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Compliance policy refused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
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

/// A transition ended without a confirmed state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TransitionFailed {
    /// The command.
    pub transition_id: TransitionId,
    /// The agent (as given, even if invalid; cut short with a marker if absurdly long).
    pub user_id: String,
    /// The requested state (as given, even if invalid; cut short likewise).
    pub requested_state: String,
    /// Why.
    pub error: TransitionError,
    /// Whether compliance policy refused it (the audit record's `policyViolation`), so hosts need not
    /// know which codes are policy codes.
    pub policy_violation: bool,
    /// From command to completion (monotonic).
    pub latency_ms: u64,
    /// API requests sent for this transition.
    pub attempts: u32,
    /// Completion time (Unix ms).
    pub at_ms: u64,
    /// The caller's reference of the change, as in its audit record (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What kind of request a retry concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RequestKind {
    /// The OAuth token request.
    Token,
    /// The schedule lookup.
    Schedule,
    /// The break-status lookup.
    BreakStatus,
    /// The state change.
    SetState,
    /// `cxone`: a page of the agent directory.
    Directory,
    /// `cxone`: a team's unavailable codes.
    UnavailableCodes,
    /// `cxone`: an agent's WFM schedule export.
    ScheduleExport,
    /// `cxone`: a page of the Real-Time Data poll (`agents/states?updatedSince=`).
    AgentStates,
    /// `cxone`: an agent's state history, read to settle an unknown outcome.
    StateHistory,
}

/// A request failed transiently and will be sent again after `delay_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RetryScheduled {
    /// The transition it serves (`None` for a token request, which serves many).
    pub transition_id: Option<TransitionId>,
    /// The agent of that transition (so a console can show "retrying" next to them).
    pub user_id: Option<String>,
    /// Which request.
    pub kind: RequestKind,
    /// The retry number, from 1. A 429 with `Retry-After` spends none: it is reported as the retry it would
    /// be, so repeated 429s repeat the number.
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
#[non_exhaustive]
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

/// A webhook payload reached its receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebhookDelivered {
    /// The payload's event id.
    pub event_id: String,
    /// Attempts it took, from 1.
    pub attempts: u32,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A webhook delivery failed (non-2xx, no answer, or timeout) and will be tried again after `delay_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebhookRetryScheduled {
    /// The payload's event id.
    pub event_id: String,
    /// The attempt that failed, from 1.
    pub attempt: u32,
    /// The wait before the next attempt: the backoff, or a longer `Retry-After`.
    pub delay_ms: u64,
    /// The HTTP status, when the receiver answered; `None` for transport errors and timeouts.
    pub status: Option<u16>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A webhook payload was set aside as a dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebhookDeadLettered {
    /// The payload's event id.
    pub event_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The receiver's last status, if it answered.
    pub last_status: Option<u16>,
    /// Why it was set aside.
    pub reason: String,
    /// Dead letters now held.
    pub dead_letters: usize,
    /// When (Unix ms).
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
