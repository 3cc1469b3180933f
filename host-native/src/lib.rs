//! # cxone-agent-state
//!
//! The native host of the cxone-agent-state engine: [`AgentStateManager`] drives the sans-IO core with
//! tokio and reqwest (rustls), keeps a durable hash-chained audit log, and delivers webhooks at least once.
//! It mirrors the reference module's `AgentStateManager`: [`transition_state`](AgentStateManager::transition_state),
//! [`validate_state_change`](AgentStateManager::validate_state_change),
//! [`compliance_report`](AgentStateManager::compliance_report), [`idle_time`](AgentStateManager::idle_time),
//! plus [`subscribe`](AgentStateManager::subscribe) for events.
//!
//! [`sim_server`] serves the simulated tenant over real HTTP for tests and demos.
#![warn(missing_docs)]

mod http;
mod manager;
mod settings;
pub mod sim_server;
pub mod store;
mod webhook;

pub use cxone_agent_state_core as core;
pub use manager::{
    now_ms, AgentStateManager, ManagerConfig, ShutdownSummary, StartError, Validation,
};
pub use settings::{Settings, SettingsError};
pub use webhook::WebhookDelivery;
