//! The compliance report: the reference module's fields plus counts, percentiles and per-agent metrics.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;
use crate::deferral::DeferralPhase;
use crate::error::ErrorCode;
use crate::history::{AgentMetrics, History, HistoryConfig};
use crate::metrics::{LatencyHistogram, LatencySummary};

/// Attempts and successes for one requested state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCounts {
    /// Attempts to enter the state.
    pub attempts: u64,
    /// Accepted ones.
    pub successes: u64,
}

/// Deferred changes by how they went ([`DeferralPhase`](crate::DeferralPhase)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferralCounts {
    /// Times a change was held until a break ended (a change held again when it was checked at the
    /// break's end counts again). Not transition attempts.
    pub held: u64,
    /// Released and applied.
    pub applied: u64,
    /// Released and not applied (refused or failed; unknown outcomes are counted as such).
    pub failed: u64,
    /// Given up at their deadline (each also a policy violation).
    pub expired: u64,
    /// Cancelled by their caller or replaced by a newer change. Not transition attempts.
    pub cancelled: u64,
}

/// The compliance report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ComplianceReport {
    /// Transition attempts (reference field): successes, failures and unknown outcomes. Settlements of
    /// earlier unknown outcomes are not new attempts and are counted in `settled_count` only.
    pub total_transitions: u64,
    /// Policy violations ÷ attempts, 0 when there are none (reference field).
    pub violation_frequency: f64,
    /// Mean latency rounded like `Math.round` (reference field).
    pub average_latency_ms: u64,
    /// The most recent audit records, oldest first, at most the builder's log capacity (reference field).
    pub logs: Vec<AuditRecord>,
    /// Accepted changes.
    pub success_count: u64,
    /// Attempts that did not change state (violations included; unknown outcomes not).
    pub failure_count: u64,
    /// Attempts that may or may not have changed state (`OUTCOME_UNKNOWN`): failures of knowledge, never
    /// violations.
    pub unknown_outcome_count: u64,
    /// Records that settle an earlier unknown outcome.
    pub settled_count: u64,
    /// `cxone`: observation records (states the tenant showed), by source (`ours`, `external`). Not
    /// transition attempts: counted apart. Absent when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed_by_source: BTreeMap<String, u64>,
    /// Policy violations only.
    pub violation_count: u64,
    /// Policy violations by rule (`MANDATORY_BREAK_VIOLATION`, `AGENT_NOT_SCHEDULED`).
    #[serde(default)]
    pub violations_by_rule: BTreeMap<String, u64>,
    /// Changes a supervisor's override let past a policy refusal, by the rule passed (records with an
    /// override that passed no rule are not counted). Never violations.
    #[serde(default)]
    pub overrides_by_rule: BTreeMap<String, u64>,
    /// Deferred changes: how often one was held, and how they ended.
    #[serde(default)]
    pub deferrals: DeferralCounts,
    /// Failures by error code (unknown outcomes are counted apart).
    pub failures_by_code: BTreeMap<String, u64>,
    /// Latency statistics over all attempts.
    pub latency: LatencySummary,
    /// Counts per requested state.
    pub per_state: BTreeMap<String, StateCounts>,
    /// Idle time and utilization per agent.
    pub agents: Vec<AgentMetrics>,
    /// Per agent: attempts and outcomes, violations by rule, overrides, deferrals, unknown outcomes,
    /// requests and latency.
    #[serde(default)]
    pub agent_counts: BTreeMap<String, AgentCounts>,
    /// Policy violations by hour (UTC, `YYYY-MM-DDTHH`).
    #[serde(default)]
    pub violations_by_hour: BTreeMap<String, u64>,
    /// Retries the engine scheduled (token requests included). Known to a running engine only: absent
    /// from a report rebuilt from an audit log, which does not record them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// Of `retries`, those after a 429 (rate limited). Absent like `retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<u64>,
    /// Adherence and conformance per agent and for the team, when schedules were given (see
    /// [`Timelines::adherence`] and `report --schedule`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adherence: Option<crate::adherence::AdherenceReport>,
}

/// One agent's counts in the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCounts {
    /// Transition attempts (as the report's `totalTransitions` counts them).
    pub attempts: u64,
    /// Accepted ones.
    pub successes: u64,
    /// Failed ones (violations included, unknown outcomes not).
    pub failures: u64,
    /// `OUTCOME_UNKNOWN` outcomes.
    pub unknown_outcomes: u64,
    /// Policy violations by rule (code).
    pub violations_by_rule: BTreeMap<String, u64>,
    /// Changes a supervisor's override let past a policy refusal.
    pub overrides: u64,
    /// Deferred changes applied.
    pub deferred_applied: u64,
    /// Deferred changes given up: expired at their deadline, or released and not applied.
    pub deferred_given_up: u64,
    /// API requests sent for its changes: policy lookups and state changes, retries included.
    pub requests: u64,
    /// Retries scheduled for its changes, and of those after a 429. Known to a running engine only (see
    /// [`ComplianceReport::retries`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// See `retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<u64>,
    /// Latency of its attempts: median, 95th percentile (bucketed: within a factor of 1.25) and maximum.
    pub latency_p50_ms: u64,
    /// See `latency_p50_ms`.
    pub latency_p95_ms: u64,
    /// See `latency_p50_ms`.
    pub latency_max_ms: u64,
}

impl ComplianceReport {
    /// The report as `section,key,value` CSV rows with a header (easy to pivot in a spreadsheet): the
    /// summary, latency, failures by code, counts per state, then each agent. The CLI's `report --csv`
    /// and the pages' exports all write this.
    pub fn to_csv(&self) -> String {
        fn field(s: &str) -> std::borrow::Cow<'_, str> {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\"")).into()
            } else {
                s.into()
            }
        }
        let mut out = String::from("section,key,value\n");
        let mut row = |section: &str, key: &str, value: &dyn std::fmt::Display| {
            out.push_str(&format!(
                "{},{},{}\n",
                field(section),
                field(key),
                field(&value.to_string())
            ));
        };
        row("summary", "totalTransitions", &self.total_transitions);
        row("summary", "successCount", &self.success_count);
        row("summary", "failureCount", &self.failure_count);
        row(
            "summary",
            "unknownOutcomeCount",
            &self.unknown_outcome_count,
        );
        row("summary", "settledCount", &self.settled_count);
        for (source, n) in &self.observed_by_source {
            row("observed", source, n);
        }
        row("summary", "violationCount", &self.violation_count);
        row("summary", "violationFrequency", &self.violation_frequency);
        row("summary", "averageLatencyMs", &self.average_latency_ms);
        row("latency", "p50Ms", &self.latency.p50_ms);
        row("latency", "p95Ms", &self.latency.p95_ms);
        row("latency", "p99Ms", &self.latency.p99_ms);
        row("latency", "maxMs", &self.latency.max_ms);
        for (code, n) in &self.failures_by_code {
            row("failuresByCode", code, n);
        }
        for (rule, n) in &self.overrides_by_rule {
            row("overridesByRule", rule, n);
        }
        let d = &self.deferrals;
        row("deferrals", "held", &d.held);
        row("deferrals", "applied", &d.applied);
        row("deferrals", "failed", &d.failed);
        row("deferrals", "expired", &d.expired);
        row("deferrals", "cancelled", &d.cancelled);
        for (state, c) in &self.per_state {
            let section = format!("state:{state}");
            row(&section, "attempts", &c.attempts);
            row(&section, "successes", &c.successes);
        }
        if let (Some(n), Some(t)) = (self.retries, self.rate_limited) {
            row("summary", "retries", &n);
            row("summary", "rateLimited", &t);
        }
        for (rule, n) in &self.violations_by_rule {
            row("violationsByRule", rule, n);
        }
        for (hour, n) in &self.violations_by_hour {
            row("violationsByHour", hour, n);
        }
        let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
        for a in &self.agents {
            let section = format!("agent:{}", a.user_id);
            row(&section, "currentState", &a.current_state);
            row(&section, "cumulativeIdleMs", &a.cumulative_idle_ms);
            row(&section, "trackedMs", &a.tracked_ms);
            row(&section, "utilization", &opt(a.utilization));
        }
        for (user, c) in &self.agent_counts {
            let section = format!("agent:{user}");
            for (key, n) in [
                ("attempts", c.attempts),
                ("successes", c.successes),
                ("failures", c.failures),
                ("unknownOutcomes", c.unknown_outcomes),
                ("overrides", c.overrides),
                ("deferredApplied", c.deferred_applied),
                ("deferredGivenUp", c.deferred_given_up),
                ("requests", c.requests),
                ("latencyP50Ms", c.latency_p50_ms),
                ("latencyP95Ms", c.latency_p95_ms),
                ("latencyMaxMs", c.latency_max_ms),
            ] {
                row(&section, key, &n);
            }
            if let (Some(n), Some(t)) = (c.retries, c.rate_limited) {
                row(&section, "retries", &n);
                row(&section, "rateLimited", &t);
            }
            for (rule, n) in &c.violations_by_rule {
                row(&section, &format!("violations:{rule}"), n);
            }
        }
        if let Some(a) = &self.adherence {
            let mut figures = |section: &str, f: &crate::adherence::AdherenceFigures| {
                row(section, "adherence", &opt(f.adherence));
                row(section, "conformance", &opt(f.conformance));
                let t = &f.totals;
                row(section, "inMs", &t.in_ms);
                row(section, "outMs", &t.out_ms);
                row(section, "neutralMs", &t.neutral_ms);
                row(section, "scheduledWorkMs", &t.scheduled_work_ms);
                row(section, "productiveMs", &t.productive_ms);
                row(section, "workOutsideShiftMs", &t.work_outside_shift_ms);
                row(section, "exceptions", &t.exceptions.len());
                for (activity, ms) in &t.out_by_activity_ms {
                    row(section, &format!("outMs:{activity}"), ms);
                }
                for (what, ms) in &t.unruled_ms {
                    row(section, &format!("unruledMs:{what}"), ms);
                }
            };
            if let Some(team) = &a.team {
                figures("adherence:team", team);
            }
            for agent in &a.agents {
                figures(
                    &format!("adherence:agent:{}", agent.user_id),
                    &agent.figures,
                );
            }
            row("adherence:team", "exceptionCount", &a.exception_count);
            for p in &a.curve {
                row(
                    "adherence:curve",
                    &crate::time::iso8601(p.from_ms),
                    &opt(p.adherence),
                );
            }
        }
        out
    }
}

/// Accumulates audit records into a [`ComplianceReport`] with bounded memory.
#[derive(Clone, Debug)]
pub(crate) struct ReportBuilder {
    log_capacity: usize,
    /// The most recent records, oldest first.
    logs: VecDeque<AuditRecord>,
    successes: u64,
    failures: u64,
    unknown: u64,
    settled: u64,
    observed_by_source: BTreeMap<String, u64>,
    violations: u64,
    overrides_by_rule: BTreeMap<String, u64>,
    deferrals: DeferralCounts,
    failures_by_code: BTreeMap<String, u64>,
    per_state: BTreeMap<String, StateCounts>,
    latency: LatencyHistogram,
    agents: BTreeMap<String, AgentTally>,
    violations_by_hour: BTreeMap<String, u64>,
    /// Retries and 429s seen, for a running engine (`None` for a replay).
    retries: Option<(u64, u64)>,
}

/// What a record says of a deferred change, as the report counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeferralStep {
    /// Held until a break ends (not an attempt).
    Held,
    /// Cancelled or replaced (not an attempt).
    Cancelled,
    /// Given up at its deadline.
    Expired,
    /// Released and applied.
    Applied,
    /// Released and not applied.
    Failed,
}

impl DeferralStep {
    /// The step `record` tells, if it is a deferred change's. A released change that may have been applied
    /// (`OUTCOME_UNKNOWN`) tells none: later records settle it.
    fn of(record: &AuditRecord) -> Option<Self> {
        Some(match record.deferral.as_ref()?.phase {
            DeferralPhase::Deferred => Self::Held,
            DeferralPhase::Cancelled => Self::Cancelled,
            DeferralPhase::Expired => Self::Expired,
            DeferralPhase::Released if record.success => Self::Applied,
            DeferralPhase::Released if record.error_code == Some(ErrorCode::OutcomeUnknown) => {
                return None
            }
            DeferralPhase::Released => Self::Failed,
        })
    }
}

/// An agent's counts, with its latencies in buckets (each 1.25 times the last, from 1 ms).
#[derive(Clone, Debug, Default)]
struct AgentTally {
    counts: AgentCounts,
    buckets: Vec<u32>,
}

impl AgentTally {
    fn bucket(ms: u64) -> usize {
        // log base 1.25 of ms, from 1 ms: 0 ms and 1 ms share bucket 0.
        ((ms.max(1) as f64).ln() / 1.25f64.ln()).floor() as usize
    }

    fn record_latency(&mut self, ms: u64) {
        let b = Self::bucket(ms);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
        self.counts.latency_max_ms = self.counts.latency_max_ms.max(ms);
    }

    /// The upper edge of the bucket holding the `q` quantile (never above the maximum).
    fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let edge = 1.25f64.powi(b as i32 + 1).floor() as u64;
                return edge.min(self.counts.latency_max_ms);
            }
        }
        self.counts.latency_max_ms
    }

    /// The counts; `live`: retries are known (0 when none were noted).
    fn counts(&self, live: bool) -> AgentCounts {
        let known = |n: Option<u64>| n.or(live.then_some(0));
        AgentCounts {
            latency_p50_ms: self.quantile(0.5),
            latency_p95_ms: self.quantile(0.95),
            retries: known(self.counts.retries),
            rate_limited: known(self.counts.rate_limited),
            ..self.counts.clone()
        }
    }
}

/// The key for a failed record without an error code.
const UNKNOWN_CODE: &str = "UNKNOWN";

impl ReportBuilder {
    /// A builder that keeps at most `log_capacity` records for `logs`.
    pub(crate) fn new(log_capacity: usize) -> Self {
        Self {
            log_capacity,
            // Do not reserve the whole (possibly large) capacity up front.
            logs: VecDeque::new(),
            successes: 0,
            failures: 0,
            unknown: 0,
            settled: 0,
            observed_by_source: BTreeMap::new(),
            violations: 0,
            overrides_by_rule: BTreeMap::new(),
            deferrals: DeferralCounts::default(),
            failures_by_code: BTreeMap::new(),
            per_state: BTreeMap::new(),
            latency: LatencyHistogram::new(),
            agents: BTreeMap::new(),
            violations_by_hour: BTreeMap::new(),
            retries: None,
        }
    }

    /// A builder for a running engine, which also counts retries ([`note_retry`](Self::note_retry)).
    pub(crate) fn live(mut self) -> Self {
        self.retries = Some((0, 0));
        self
    }

    /// Counts a retry the engine scheduled.
    pub(crate) fn note_retry(&mut self, r: &crate::events::RetryScheduled) {
        let throttled = u64::from(r.status == Some(429));
        if let Some((n, t)) = &mut self.retries {
            *n += 1;
            *t += throttled;
        }
        if let Some(user) = &r.user_id {
            if !self.agents.contains_key(user) {
                self.agents.insert(user.clone(), AgentTally::default());
            }
            let c = &mut self.agents.get_mut(user).expect("inserted above").counts;
            *c.retries.get_or_insert(0) += 1;
            *c.rate_limited.get_or_insert(0) += throttled;
        }
    }
    /// Counts one audit record.
    pub(crate) fn ingest(&mut self, record: &AuditRecord) {
        self.keep(record);
        if let Some(o) = &record.observation {
            *self
                .observed_by_source
                .entry(o.source.as_str().to_owned())
                .or_default() += 1;
            return;
        }
        if record.settles.is_some() {
            self.settled = self.settled.saturating_add(1);
            return;
        }
        let deferral = DeferralStep::of(record);
        if let Some(step) = deferral {
            let n = &mut self.deferrals;
            let counter = match step {
                DeferralStep::Held => &mut n.held,
                DeferralStep::Cancelled => &mut n.cancelled,
                DeferralStep::Expired => &mut n.expired,
                DeferralStep::Applied => &mut n.applied,
                DeferralStep::Failed => &mut n.failed,
            };
            *counter = counter.saturating_add(1);
            // Held and cancelled records are steps, not attempts.
            if matches!(step, DeferralStep::Held | DeferralStep::Cancelled) {
                return;
            }
        }
        self.tally_agent(record, deferral);
        if record.policy_violation {
            // `timestamp` is RFC 3339: its first 13 characters name the hour.
            let hour = record.timestamp.get(..13).unwrap_or(&record.timestamp);
            *self.violations_by_hour.entry(hour.to_owned()).or_default() += 1;
        }
        if record.error_code == Some(ErrorCode::OutcomeUnknown) {
            self.unknown = self.unknown.saturating_add(1);
            self.latency.record(record.latency_ms);
            return;
        }
        // Look the key up before inserting: most records hit an existing entry and need no new String.
        if !self.per_state.contains_key(&record.new_state) {
            self.per_state
                .insert(record.new_state.clone(), StateCounts::default());
        }
        let counts = self
            .per_state
            .get_mut(&record.new_state)
            .expect("inserted above");
        counts.attempts = counts.attempts.saturating_add(1);
        if record.success {
            self.successes = self.successes.saturating_add(1);
            counts.successes = counts.successes.saturating_add(1);
        } else {
            self.failures = self.failures.saturating_add(1);
            let code = record.error_code.map_or(UNKNOWN_CODE, |c| c.as_str());
            match self.failures_by_code.get_mut(code) {
                Some(n) => *n = n.saturating_add(1),
                None => {
                    self.failures_by_code.insert(code.to_owned(), 1);
                }
            }
        }
        if let Some(rule) = record.override_.as_ref().and_then(|o| o.overrode) {
            *self
                .overrides_by_rule
                .entry(rule.as_str().to_owned())
                .or_default() += 1;
        }
        // Only policy refusals are violations (the reference counted every failure).
        if record.policy_violation {
            self.violations = self.violations.saturating_add(1);
        }
        self.latency.record(record.latency_ms);
    }

    /// Counts a transition attempt's record for its agent (`deferral`: its step, if it was deferred).
    fn tally_agent(&mut self, record: &AuditRecord, deferral: Option<DeferralStep>) {
        if !self.agents.contains_key(&record.user_id) {
            self.agents
                .insert(record.user_id.clone(), AgentTally::default());
        }
        let t = self
            .agents
            .get_mut(&record.user_id)
            .expect("inserted above");
        let c = &mut t.counts;
        c.attempts += 1;
        c.requests += u64::from(record.attempts);
        match record.error_code {
            _ if record.success => c.successes += 1,
            Some(ErrorCode::OutcomeUnknown) => c.unknown_outcomes += 1,
            _ => c.failures += 1,
        }
        if record.policy_violation {
            let rule = record.error_code.map_or(UNKNOWN_CODE, |e| e.as_str());
            *c.violations_by_rule.entry(rule.to_owned()).or_default() += 1;
        }
        if record
            .override_
            .as_ref()
            .is_some_and(|o| o.overrode.is_some())
        {
            c.overrides += 1;
        }
        match deferral {
            Some(DeferralStep::Applied) => c.deferred_applied += 1,
            Some(DeferralStep::Failed | DeferralStep::Expired) => c.deferred_given_up += 1,
            _ => {}
        }
        t.record_latency(record.latency_ms);
    }

    fn keep(&mut self, record: &AuditRecord) {
        if self.log_capacity > 0 {
            while self.logs.len() >= self.log_capacity {
                self.logs.pop_front();
            }
            self.logs.push_back(record.clone());
        }
    }

    /// Policy violations so far.
    pub(crate) fn violation_count(&self) -> u64 {
        self.violations
    }
    /// The report, with per-agent metrics from `history` at `now_ms`.
    pub(crate) fn build(&self, history: &History, now_ms: u64) -> ComplianceReport {
        let latency = self.latency.summary();
        let total = self
            .successes
            .saturating_add(self.failures)
            .saturating_add(self.unknown);
        let violation_frequency = if total == 0 {
            0.0
        } else {
            self.violations as f64 / total as f64
        };
        ComplianceReport {
            total_transitions: total,
            violation_frequency,
            average_latency_ms: js_round(latency.average_ms),
            logs: self.logs.iter().cloned().collect(),
            success_count: self.successes,
            failure_count: self.failures,
            unknown_outcome_count: self.unknown,
            settled_count: self.settled,
            observed_by_source: self.observed_by_source.clone(),
            violation_count: self.violations,
            // A policy refusal is a failure with a policy code: the violations are those failures.
            violations_by_rule: self
                .failures_by_code
                .iter()
                .filter(|(code, _)| {
                    ErrorCode::ALL
                        .iter()
                        .any(|c| c.as_str() == code.as_str() && c.is_policy_violation())
                })
                .map(|(code, n)| (code.clone(), *n))
                .collect(),
            overrides_by_rule: self.overrides_by_rule.clone(),
            deferrals: self.deferrals.clone(),
            failures_by_code: self.failures_by_code.clone(),
            latency,
            per_state: self.per_state.clone(),
            agents: history.all_metrics(now_ms),
            agent_counts: self
                .agents
                .iter()
                .map(|(u, t)| (u.clone(), t.counts(self.retries.is_some())))
                .collect(),
            violations_by_hour: self.violations_by_hour.clone(),
            retries: self.retries.map(|r| r.0),
            rate_limited: self.retries.map(|r| r.1),
            adherence: None,
        }
    }
}

/// Rebuilds the report from an audit log, record by record (see `cxone-agent-state report`).
///
/// The timeline comes from the successful records' timestamps; "now" is the last record's time, so idle
/// time and utilization read as of the end of the log.
#[derive(Clone, Debug)]
pub struct ReportReplay {
    builder: ReportBuilder,
    history: History,
    last_ms: u64,
    timelines: Timelines,
}

/// When the agent entered the state a record names, if the record tells one: a success (a change of ours, an
/// observation, a no-op relying on one), but not a settlement by observation (no request of its own), which
/// names a state the observation records already carry. An observation happened when the tenant says; any
/// other record when it was written, or at `fallback` when its timestamp cannot be read (`None`: not at all).
fn entered_at(record: &AuditRecord, fallback: Option<u64>) -> Option<u64> {
    let observed_settlement = record.settles.is_some() && record.attempts == 0;
    if !record.success || observed_settlement {
        return None;
    }
    match &record.observation {
        Some(o) => Some(o.at_ms),
        None => crate::time::parse_iso8601(&record.timestamp).or(fallback),
    }
}

/// Each agent's actual-state changes as audit records tell them ([`Timelines::ingest`]): what adherence is
/// computed from, the same way for a simulated day and for a log read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timelines {
    by_user: BTreeMap<String, Vec<crate::adherence::ActualChange>>,
}

impl Timelines {
    /// Takes the state change a record tells, if it tells one: a successful change of ours (applied, or a
    /// no-op relying on what the tenant showed), or an observation (at the tenant's time). Settlements,
    /// failures and deferral steps change nothing.
    pub fn ingest(&mut self, record: &AuditRecord) {
        let Some(at_ms) = entered_at(record, None) else {
            return;
        };
        let code = record
            .observation
            .as_ref()
            .and_then(|o| o.code.as_deref())
            .or(record.reason_code.as_deref());
        let change = crate::adherence::ActualChange::entered(at_ms, &record.new_state, code);
        if !self.by_user.contains_key(&record.user_id) {
            self.by_user.insert(record.user_id.clone(), Vec::new());
        }
        self.by_user
            .get_mut(&record.user_id)
            .expect("inserted above")
            .push(change);
    }

    /// The timelines, by user id (in record order; [`team_report`](crate::adherence::team_report) sorts).
    pub fn by_user(&self) -> &BTreeMap<String, Vec<crate::adherence::ActualChange>> {
        &self.by_user
    }

    /// Adherence per agent and for the team against `schedules` (by the user ids the records name), over
    /// `window`, or over the schedules' span when `None` (see
    /// [`AdherenceWindow::of_schedules`](crate::adherence::AdherenceWindow::of_schedules)).
    pub fn adherence(
        &self,
        rules: &crate::adherence::RuleTable,
        schedules: &BTreeMap<String, Vec<crate::adherence::ScheduledShift>>,
        window: Option<crate::adherence::AdherenceWindow>,
    ) -> crate::adherence::AdherenceReport {
        let window = window
            .or_else(|| crate::adherence::AdherenceWindow::of_schedules(schedules.values()))
            .unwrap_or(crate::adherence::AdherenceWindow {
                from_ms: 0,
                to_ms: 0,
                now_ms: 0,
                step_ms: 3_600_000,
            });
        crate::adherence::team_report(rules, schedules, &self.by_user, window)
    }
}

impl ReportReplay {
    /// An empty replay keeping at most `log_capacity` records for `logs`.
    pub fn new(log_capacity: usize) -> Self {
        Self {
            builder: ReportBuilder::new(log_capacity),
            history: History::new(HistoryConfig::default()),
            last_ms: 0,
            timelines: Timelines::default(),
        }
    }

    /// Counts one record. A record whose timestamp cannot be read still counts, at the last known time.
    pub fn ingest(&mut self, record: &AuditRecord) {
        let at_ms = crate::time::parse_iso8601(&record.timestamp).unwrap_or(self.last_ms);
        self.last_ms = self.last_ms.max(at_ms);
        self.builder.ingest(record);
        self.timelines.ingest(record);
        if let Some(at_ms) = entered_at(record, Some(at_ms)) {
            self.history
                .record(&record.user_id, &record.new_state, at_ms);
        }
    }

    /// The report as of the last record.
    pub fn report(&self) -> ComplianceReport {
        self.builder.build(&self.history, self.last_ms)
    }

    /// The agents' actual-state timelines read so far (for [`Timelines::adherence`]).
    pub fn timelines(&self) -> &Timelines {
        &self.timelines
    }
}

/// `Math.round` for a non-negative mean: halves round up.
fn js_round(x: f64) -> u64 {
    // `as` saturates (and maps NaN to 0), which is what a latency wants.
    (x + 0.5).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ChainHead;
    use crate::state::{NOT_READY, READY};

    fn record(
        user: &str,
        state: &str,
        latency_ms: u64,
        error_code: Option<ErrorCode>,
        policy_violation: bool,
    ) -> AuditRecord {
        AuditRecord {
            seq: 0,
            id: "00000000-0000-4000-8000-000000000000".into(),
            timestamp: "2026-01-05T08:00:00.000Z".into(),
            user_id: user.into(),
            previous_state: None,
            new_state: state.into(),
            reason_code: None,
            success: error_code.is_none() && !policy_violation,
            latency_ms,
            policy_violation,
            error_code,
            error_message: error_code.map(|c| c.as_str().to_owned()),
            attempts: 1,
            idempotency_key: None,
            settles: None,
            reference: None,
            observation: None,
            relies_on: None,
            actor: None,
            source: None,
            override_: None,
            deferral: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn empty_report() {
        let r = ReportBuilder::new(10).build(&History::default(), 0);
        assert_eq!(r.total_transitions, 0);
        assert_eq!(r.violation_frequency, 0.0);
        assert_eq!(r.average_latency_ms, 0);
        assert!(r.logs.is_empty() && r.agents.is_empty() && r.per_state.is_empty());
        assert_eq!(r.latency, LatencySummary::default());
    }

    #[test]
    fn only_policy_violations_count_as_violations() {
        let mut b = ReportBuilder::new(100);
        b.ingest(&record("a", READY, 10, None, false));
        b.ingest(&record(
            "a",
            READY,
            10,
            Some(ErrorCode::UpstreamUnavailable),
            false,
        ));
        b.ingest(&record("a", READY, 10, Some(ErrorCode::Forbidden), false));
        assert_eq!(b.violation_count(), 0, "plain failures are not violations");
        b.ingest(&record(
            "a",
            READY,
            10,
            Some(ErrorCode::MandatoryBreakViolation),
            true,
        ));
        let mut no_code = record("b", NOT_READY, 10, None, false);
        no_code.success = false;
        b.ingest(&no_code);
        assert_eq!(b.violation_count(), 1);

        let r = b.build(&History::default(), 0);
        assert_eq!(r.total_transitions, 5);
        assert_eq!(r.success_count, 1);
        assert_eq!(r.failure_count, 4);
        assert_eq!(r.violation_count, 1);
        assert_eq!(r.violation_frequency, 0.2);
        let codes: Vec<(&str, u64)> = r
            .failures_by_code
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            codes,
            [
                ("FORBIDDEN", 1),
                ("MANDATORY_BREAK_VIOLATION", 1),
                ("UNKNOWN", 1),
                ("UPSTREAM_UNAVAILABLE", 1),
            ]
        );
        assert_eq!(
            r.per_state[READY],
            StateCounts {
                attempts: 4,
                successes: 1
            }
        );
        assert_eq!(
            r.per_state[NOT_READY],
            StateCounts {
                attempts: 1,
                successes: 0
            }
        );
    }

    #[test]
    fn average_latency_rounds_like_math_round() {
        assert_eq!(js_round(2.5), 3);
        assert_eq!(js_round(2.4999), 2);
        assert_eq!(js_round(3.5), 4);
        assert_eq!(js_round(0.0), 0);

        let mut b = ReportBuilder::new(0);
        b.ingest(&record("a", READY, 2, None, false));
        b.ingest(&record("a", READY, 3, None, false));
        let r = b.build(&History::default(), 0);
        assert_eq!(r.latency.average_ms, 2.5);
        assert_eq!(r.average_latency_ms, 3);
        assert_eq!(r.latency.count, 2);
        assert_eq!(r.latency.max_ms, 3);
    }

    #[test]
    fn logs_keep_the_most_recent_records() {
        let mut head = ChainHead::default();
        let mut b = ReportBuilder::new(3);
        let mut none = ReportBuilder::new(0);
        for i in 0..5 {
            let r = head.append(record(&format!("u{i}"), READY, i, None, false));
            b.ingest(&r);
            none.ingest(&r);
        }
        let r = b.build(&History::default(), 0);
        assert_eq!(r.total_transitions, 5, "counts cover every record");
        assert_eq!(
            r.logs.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [2, 3, 4],
            "oldest first"
        );
        assert!(none.build(&History::default(), 0).logs.is_empty());
        assert_eq!(none.build(&History::default(), 0).total_transitions, 5);
    }

    #[test]
    fn agents_come_from_history() {
        let mut h = History::default();
        h.record("b", READY, 0);
        h.record("a", NOT_READY, 0);
        let r = ReportBuilder::new(1).build(&h, 1_000);
        assert_eq!(r.agents, h.all_metrics(1_000));
        assert_eq!(r.agents[0].user_id, "a");
        assert_eq!(r.agents[0].idle_time_ms, 1_000);
        assert_eq!(r.agents[1].utilization, Some(1.0));
    }

    #[test]
    fn unknown_outcomes_are_counted_apart_and_never_as_violations() {
        // `record`'s, with a key, an outcome and what it settles as given.
        let rec = |code: Option<ErrorCode>, settles: Option<&str>, success: bool| AuditRecord {
            id: "x".into(),
            success,
            error_message: None,
            idempotency_key: Some("k".into()),
            settles: settles.map(str::to_owned),
            ..record("a", READY, 10, code, false)
        };
        let mut b = ReportBuilder::new(10);
        b.ingest(&rec(None, None, true));
        b.ingest(&rec(Some(ErrorCode::OutcomeUnknown), None, false));
        b.ingest(&rec(None, Some("x"), true));
        let r = b.build(&History::default(), 0);
        assert_eq!(r.total_transitions, 2);
        assert_eq!(
            (
                r.success_count,
                r.failure_count,
                r.unknown_outcome_count,
                r.settled_count
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(r.violation_count, 0);
        assert!(r.failures_by_code.is_empty());
        assert_eq!(r.logs.len(), 3);
        assert!(r.to_csv().contains("summary,unknownOutcomeCount,1"));
    }

    #[test]
    fn agents_are_counted_apart_with_bucketed_latency() {
        let mut b = ReportBuilder::new(0);
        for ms in [10, 20, 30, 40, 1_000] {
            b.ingest(&record("a", READY, ms, None, false));
        }
        b.ingest(&record(
            "a",
            READY,
            5,
            Some(ErrorCode::MandatoryBreakViolation),
            true,
        ));
        b.ingest(&record(
            "b",
            READY,
            7,
            Some(ErrorCode::OutcomeUnknown),
            false,
        ));
        let r = b.build(&History::default(), 0);
        let a = &r.agent_counts["a"];
        assert_eq!((a.attempts, a.successes, a.failures), (6, 5, 1));
        assert_eq!(a.violations_by_rule["MANDATORY_BREAK_VIOLATION"], 1);
        assert_eq!(a.latency_max_ms, 1_000);
        // Within a bucket (×1.25) of the true median (20 or 30) and 95th percentile (1 000).
        assert!((20..=38).contains(&a.latency_p50_ms), "{a:?}");
        assert!((800..=1_000).contains(&a.latency_p95_ms), "{a:?}");
        assert_eq!(r.agent_counts["b"].unknown_outcomes, 1);
        assert_eq!(r.violations_by_hour["2026-01-05T08"], 1);
        assert_eq!(r.retries, None, "a replay does not know retries");
        let csv = r.to_csv();
        assert!(
            csv.contains("agent:a,violations:MANDATORY_BREAK_VIOLATION,1"),
            "{csv}"
        );
        assert!(csv.contains("violationsByHour,2026-01-05T08,1"), "{csv}");
        assert_eq!(r.violations_by_rule["MANDATORY_BREAK_VIOLATION"], 1);
        assert!(
            csv.contains("violationsByRule,MANDATORY_BREAK_VIOLATION,1"),
            "{csv}"
        );
    }

    #[test]
    fn timelines_take_successes_and_observations_only() {
        let mut t = Timelines::default();
        t.ingest(&record("a", READY, 1, None, false));
        t.ingest(&record(
            "a",
            NOT_READY,
            1,
            Some(ErrorCode::Forbidden),
            false,
        ));
        let mut paused = record("a", "PAUSED", 1, None, false);
        paused.reason_code = Some("Adhoc".into());
        t.ingest(&paused);
        let changes = &t.by_user()["a"];
        assert_eq!(changes.len(), 2, "the failure changed nothing");
        assert_eq!(
            changes[0].category,
            crate::adherence::ActualCategory::Available
        );
        assert_eq!(changes[1].code.as_deref(), Some("Adhoc"));
    }
}
