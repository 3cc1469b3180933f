//! The compliance report: the reference module's fields plus counts, percentiles and per-agent metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use crate::history::{AgentMetrics, History};
use crate::metrics::LatencySummary;

/// Attempts and successes for one requested state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCounts {
    /// Attempts to enter the state.
    pub attempts: u64,
    /// Accepted ones.
    pub successes: u64,
}

/// The compliance report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceReport {
    /// Transition attempts (reference field).
    pub total_transitions: u64,
    /// Policy violations ÷ attempts, 0 when there are none (reference field).
    pub violation_frequency: f64,
    /// Mean latency rounded like `Math.round` (reference field).
    pub average_latency_ms: u64,
    /// The most recent audit records, oldest first, at most the builder's log capacity (reference field).
    pub logs: Vec<AuditRecord>,
    /// Accepted changes.
    pub success_count: u64,
    /// Attempts that did not change state (violations included).
    pub failure_count: u64,
    /// Policy violations only.
    pub violation_count: u64,
    /// Failures by error code.
    pub failures_by_code: BTreeMap<String, u64>,
    /// Latency statistics over all attempts.
    pub latency: LatencySummary,
    /// Counts per requested state.
    pub per_state: BTreeMap<String, StateCounts>,
    /// Idle time and utilization per agent.
    pub agents: Vec<AgentMetrics>,
}

/// Accumulates audit records into a [`ComplianceReport`] with bounded memory.
#[derive(Clone, Debug)]
pub struct ReportBuilder {
    _private: (),
}

impl ReportBuilder {
    /// A builder that keeps at most `log_capacity` records for `logs`.
    pub fn new(log_capacity: usize) -> Self {
        let _ = log_capacity;
        unimplemented!()
    }
    /// Counts one audit record.
    pub fn ingest(&mut self, record: &AuditRecord) {
        let _ = record;
        unimplemented!()
    }
    /// Policy violations so far.
    pub fn violation_count(&self) -> u64 {
        unimplemented!()
    }
    /// The report, with per-agent metrics from `history` at `now_ms`.
    pub fn build(&self, history: &History, now_ms: u64) -> ComplianceReport {
        let _ = (history, now_ms);
        unimplemented!()
    }
}
