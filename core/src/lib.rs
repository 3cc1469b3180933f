//! # cxone-agent-state-core
//!
//! A **sans-IO** engine for changing NICE CXone agent states under shift and break compliance.
//!
//! **The contract: no I/O, no clock, no OS randomness, deterministic.** Time comes in with every input as a
//! [`Now`] (a monotonic reading for deadlines, a wall-clock one for records); jitter and ids come from a
//! generator seeded by the configuration. The same seed and the same inputs give byte-identical outputs, on
//! every host (tokio, Node, a browser).
//!
//! ```text
//!   commands (methods) ─┐                         ┌─▶ Transmit { id, target, request } ─▶ host performs HTTP
//!   Input::Response     │                         ├─▶ Persist(record)  ─▶ host appends to its durable log
//!   Input::TransportError ┼─▶ Engine ─▶ poll_output ┼─▶ Event(event)     ─▶ host tells callers and listeners
//!   Input::AccessToken  │                         └─▶ Timeout(deadline) ─▶ host sets a timer (monotonic)
//!   Input::Timeout ─────┘
//! ```
//!
//! ## The drive loop
//! 1. Hand in what happened: a command ([`Engine::transition`], [`Engine::validate`]) or an [`Input`], each
//!    with its [`Now`].
//! 2. Drain [`Engine::poll_output`] until it returns [`Output::Timeout`], acting on each output in order.
//!    **Persist every [`Output::Persist`] before performing any later [`Output::Transmit`] or reporting any
//!    later [`Output::Event`].** (An intent is persisted before the change is sent, an audit record before its
//!    outcome is reported; that is what makes a crash at any moment safe.)
//! 3. Sleep until the timeout's monotonic deadline, or until an answer or a command arrives; then back to 1.
//!    Calling [`Engine::handle_timeout`] early is harmless.
//!
//! ## What the engine guarantees
//! - **The audit log never contradicts the tenant.** Policy is decided before a change is first sent and never
//!   after; a change that may have reached the tenant ends as a success or as `OUTCOME_UNKNOWN`, and is settled
//!   later by new records (see [`Engine::restore`]).
//! - **Nothing accepted is lost**, given a host that follows the persist rule: see [`Record`] for how the
//!   records are ordered so that every prefix of the log can be resumed.
//!
//! Modules, one concern each: states and reason codes, the `seed` API profile, the `cxone` wire formats
//! ([`cxone`]) and the facts they are decided from, the token cache and `cxone` discovery, policy,
//! retries, pacing, the per-change machine, the webhook outbox, the durable log, history and metrics, the
//! audit chain, events and the report. The simulated tenant and the virtual-clock harness are in [`sim`]
//! (feature `sim`).
#![deny(missing_docs)]

mod actor;
pub mod adherence;
mod audit;
mod change;
mod config;
pub mod cxone;
mod deferral;
mod engine;
mod error;
mod events;
mod facts;
mod history;
mod http;
mod log;
mod metrics;
mod observe;
mod outbox;
mod pacer;
mod policy;
mod profile;
mod reference;
mod report;
mod retry;
mod rng;
mod state;
mod time;
mod token;

#[cfg(feature = "sim")]
pub mod sim;

pub use actor::{Actor, ActorError, ActorRole, Override, OverrideNote, Source, MAX_ACTOR_LEN};
pub use audit::{
    verify_chain, AnchorError, AnchorMismatch, AuditRecord, ChainError, ChainHead, HeadAnchor,
    GENESIS_HASH, NO_HEAD,
};
pub use config::{
    check_url, receiver_fingerprint, redact_url, tenant_base_url, validate_webhook_url,
    Credentials, EngineConfig, ProfileKind, ReceiverChange, Secret, TokenSource, WebhookConfig,
    REDACTED,
};
pub use deferral::{DeferConfig, DeferralNote, DeferralPhase, OpenDeferral};
pub use engine::{
    AgentView, DeferredChange, Engine, Input, Output, Restored, TransitionOptions, MAX_REASON_LEN,
};
pub use error::{BreakWindow, CommandError, ConfigError, ErrorCode, TransitionError};
pub use events::{
    Deferred, DeferredApplied, DeferredCancelled, Event, ObservationHeartbeat, OutcomeSettled,
    PolicyViolation, RequestKind, RetryScheduled, StateChanged, StateObserved, TokenRequested,
    TransitionFailed, TransitionId, ValidationCompleted, WebhookData, WebhookDeadLettered,
    WebhookDelivered, WebhookPayload, WebhookRetryScheduled, AGENT_STATE_CHANGED,
};
pub use history::{AgentMetrics, HistoryConfig, StateEntry};
pub use http::{
    HttpRequest, HttpResponse, Method, RequestId, Target, Transmit, TransportErrorKind,
};
pub use log::{
    last_checkpoint_start, scan_log, Abandoned, ChangeIntent, Checkpoint, DeadLetter,
    DeadLetterEntry, Delivered, LastState, LogError, LogScan, LogState, LogStateError, OpenChange,
    Record, Replayed, SimulationRun, WebhookEntry, CHECKPOINT_LINE_PREFIX,
};
pub use metrics::{LatencySummary, MAX_TRACKED_LATENCY_MS};
pub use observe::{
    history_state, AgentSnapshot, Observation, ObservationSource, ObserveConfig, StateClass,
    StateClasses, CONTACT_STATES, LOGGED_IN, LOGGED_OUT,
};
pub use pacer::RateLimit;
pub use reference::{is_valid_reference, ReferenceOutcome, ReferencedOutcomes, MAX_REFERENCE_LEN};
pub use report::{
    AgentCounts, ComplianceReport, DeferralCounts, ReportReplay, StateCounts, Timelines,
};
pub use retry::RetryPolicy;
pub use state::{
    is_idle_state, AgentState, ReasonCodeTable, UserId, IDLE, IDLE_STATES, MAX_STATE_LEN,
    MAX_USER_ID_LEN, NOT_READY, PAUSED, READY,
};
pub use time::{http_date, iso8601, parse_iso8601, parse_retry_after, Now};

/// The engine's history of agent states (returned by [`Engine::history`]).
pub use history::History;
