//! # cxone-agent-state-core
//!
//! A **sans-IO** engine for changing NICE CXone agent states under shift and break compliance.
//!
//! **The contract: no I/O, no clock, no OS randomness, deterministic.** Time comes in as Unix-epoch
//! milliseconds on every call; jitter and ids come from a generator seeded by the configuration. The same seed
//! and the same inputs give byte-identical outputs, on every host (tokio, Node, a browser).
//!
//! ```text
//!            commands ─┐                       ┌─▶ Transmit(HttpRequest{id,…})  ──▶ host performs HTTP
//!   HTTP responses/errors ─┼─▶ handle_input(now, ·) ─▶ Engine ─▶ poll_output(now) ─┼─▶ Event(…)  ──▶ host persists/delivers
//!            timeouts ─┘                       └─▶ Timeout(next deadline)  ──▶ host sets a timer
//! ```
//!
//! After every `handle_input`, drain `poll_output` until it returns [`Output::Timeout`].
//!
//! Modules, one concern each: [`state`](AgentState) names and reason codes, the `seed` API profile, the token
//! cache, policy, retry scheduling, rate pacing, history and metrics, the audit chain, events and the report.
#![deny(missing_docs)]

mod audit;
mod config;
mod engine;
mod error;
mod events;
mod history;
mod http;
mod metrics;
mod outbox;
mod pacer;
mod policy;
mod profile;
mod report;
mod retry;
mod rng;
mod state;
mod time;
mod token;

#[cfg(feature = "sim")]
pub mod sim;

pub use audit::{
    scan_log, verify_chain, AuditRecord, ChainError, ChainHead, LogError, LogScan, GENESIS_HASH,
};
pub use config::{tenant_base_url, Credentials, EngineConfig, ProfileKind, Secret, TokenSource};
pub use engine::{Command, Engine, Input, Output};
pub use error::{BreakWindow, ConfigError, ErrorCode, TransitionError};
pub use events::{
    ChangeIntent, Event, PolicyViolation, RequestKind, RetryScheduled, StateChanged,
    TokenRequested, TransitionFailed, TransitionId, ValidationCompleted, WebhookData,
    WebhookPayload, AGENT_STATE_CHANGED,
};
pub use history::{AgentMetrics, History, HistoryConfig, StateEntry};
pub use http::{HttpRequest, HttpResponse, Method, RequestId, TransportErrorKind};
pub use metrics::{LatencyHistogram, LatencySummary, MAX_TRACKED_LATENCY_MS};
pub use outbox::*;
pub use pacer::{Pacer, RateLimit};
pub use policy::{PolicyDecision, ScheduleCache};
pub use profile::{ApiProfile, BreakStatus, ParsedToken, SeedProfile, TokenFailure};
pub use report::{ComplianceReport, ReportBuilder, ReportReplay, StateCounts};
pub use retry::{RetryDecision, RetryPolicy};
pub use rng::DetRng;
pub use state::{
    is_idle_state, AgentState, ReasonCodeTable, UserId, IDLE, IDLE_STATES, MAX_STATE_LEN,
    MAX_USER_ID_LEN, NOT_READY, PAUSED, READY,
};
pub use time::{http_date, iso8601, parse_iso8601, parse_retry_after};
