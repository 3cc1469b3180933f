//! A realistic shift day: agents, shifts, breaks and the transitions they try.

use serde::{Deserialize, Serialize};

use super::tenant::{AgentPlan, SimConfig};

/// The default start of the simulated day: 2026-01-05T08:00:00Z (a Monday).
pub const WORKDAY_EPOCH_MS: u64 = 1_767_600_000_000;

/// Parameters of a simulated day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkdayConfig {
    /// Number of agents.
    pub agents: usize,
    /// Seed for the plan.
    pub seed: u64,
    /// Start of the day (Unix ms).
    pub start_ms: u64,
    /// Shift length in hours.
    pub shift_hours: u64,
    /// Share of requests that get a random fault.
    pub fault_rate: f64,
    /// Share of agents with no shift at all.
    pub unscheduled_share: f64,
    /// Share of agents who try READY during breaks or after their shift.
    pub rule_breaker_share: f64,
}

impl Default for WorkdayConfig {
    fn default() -> Self {
        Self {
            agents: 200,
            seed: 42,
            start_ms: WORKDAY_EPOCH_MS,
            shift_hours: 8,
            fault_rate: 0.02,
            unscheduled_share: 0.02,
            rule_breaker_share: 0.15,
        }
    }
}

/// A transition an agent tries at a given time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCommand {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The agent.
    pub user_id: String,
    /// The requested state.
    pub state: String,
}

/// A generated day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workday {
    /// The agents.
    pub agents: Vec<AgentPlan>,
    /// Commands sorted by time.
    pub commands: Vec<PlannedCommand>,
    /// The tenant configuration for the day (faults included).
    pub tenant: SimConfig,
    /// End of the day (Unix ms).
    pub end_ms: u64,
}

impl Workday {
    /// Generates a day; the same config gives the same day.
    pub fn generate(config: &WorkdayConfig) -> Self {
        let _ = config;
        unimplemented!()
    }
}
