//! Per-agent state timelines and the metrics derived from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Retention limits that keep memory bounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryConfig {
    /// Timeline entries kept per agent (older ones are dropped; their time stays in the totals).
    pub max_entries_per_agent: usize,
    /// Agents tracked at once; past this, the agent whose last change is oldest is forgotten.
    pub max_agents: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_entries_per_agent: 256,
            max_agents: 100_000,
        }
    }
}

/// One stretch in a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    /// The state.
    pub state: String,
    /// When the agent entered it (Unix ms).
    pub entered_at_ms: u64,
    /// The state before, if any.
    pub previous_state: Option<String>,
}

/// Derived metrics for one agent at a given `now`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentMetrics {
    /// The agent.
    pub user_id: String,
    /// The current state.
    pub current_state: String,
    /// When the current stretch began.
    pub current_since_ms: u64,
    /// The current stretch, if it is an idle state (IDLE, PAUSED, NOT_READY); else 0.
    pub idle_time_ms: u64,
    /// All idle time since tracking began, including the current stretch.
    pub cumulative_idle_ms: u64,
    /// Time since the first recorded state.
    pub tracked_ms: u64,
    /// Time per state, including the current stretch.
    pub time_in_state_ms: BTreeMap<String, u64>,
    /// READY time ÷ tracked time; `None` when nothing has been tracked yet.
    pub utilization: Option<f64>,
}

/// Per-agent timelines.
#[derive(Clone, Debug, Default)]
pub struct History {
    _private: (),
}

impl History {
    /// Empty history with these limits.
    pub fn new(config: HistoryConfig) -> Self {
        let _ = config;
        unimplemented!()
    }
    /// Records that `user_id` entered `state` at `at_ms` and returns the new entry.
    pub fn record(&mut self, user_id: &str, state: &str, at_ms: u64) -> StateEntry {
        let _ = (user_id, state, at_ms);
        unimplemented!()
    }
    /// The current stretch of an agent.
    pub fn current(&self, user_id: &str) -> Option<&StateEntry> {
        let _ = user_id;
        unimplemented!()
    }
    /// The reference module's `calculateIdleTime`: the current stretch if it is idle, else 0.
    pub fn idle_time(&self, user_id: &str, now_ms: u64) -> u64 {
        let _ = (user_id, now_ms);
        unimplemented!()
    }
    /// Metrics for one agent.
    pub fn agent_metrics(&self, user_id: &str, now_ms: u64) -> Option<AgentMetrics> {
        let _ = (user_id, now_ms);
        unimplemented!()
    }
    /// Metrics for every tracked agent, by user id.
    pub fn all_metrics(&self, now_ms: u64) -> Vec<AgentMetrics> {
        let _ = now_ms;
        unimplemented!()
    }
    /// The retained timeline of an agent, oldest first.
    pub fn timeline(&self, user_id: &str) -> Vec<StateEntry> {
        let _ = user_id;
        unimplemented!()
    }
    /// How many agents are tracked.
    pub fn agent_count(&self) -> usize {
        unimplemented!()
    }
}
