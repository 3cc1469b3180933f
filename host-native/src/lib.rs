//! # cxone-agent-state
//!
//! The native host of the cxone-agent-state engine, for Rust services: [`AgentStateManager`] drives the
//! sans-IO core with tokio and reqwest (rustls) in one `select!` loop, keeps one durable, hash-chained log
//! (the audit log an auditor reads), and delivers webhooks at least once. It mirrors the reference module's
//! `AgentStateManager`: [`transition_state`](AgentStateManager::transition_state),
//! [`validate_state_change`](AgentStateManager::validate_state_change),
//! [`compliance_report`](AgentStateManager::compliance_report), [`idle_time`](AgentStateManager::idle_time),
//! plus [`subscribe`](AgentStateManager::subscribe) for events and records.
//!
//! The host follows the core's one rule — **persist every record before performing any later request or
//! reporting any later event** — and decides nothing else: policy, retries, pacing, tokens, audit records and
//! webhook payloads all come from the core.
#![warn(missing_docs)]

mod clock;
mod http;
mod manager;
mod settings;
pub mod store;

pub use clock::{now_ms, SystemClock, WallClock};
pub use cxone_agent_state_core as core;
pub use manager::{
    AgentStateManager, Counts, IoObserver, ManagerConfig, Notice, PendingChange, Progress,
    ShutdownSummary, StartError, Status, StopBounds, Validation,
};
pub use settings::{Settings, SettingsError};
