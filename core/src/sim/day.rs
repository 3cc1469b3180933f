//! A whole simulated shift day, run on virtual time: the main job of `cxone-agent-state simulate` and of the
//! browser simulation.

use serde::{Deserialize, Serialize};

use super::accuracy::{day_accuracy, DayAccuracy};
use super::harness::{Harness, Livelock};
use super::tenant::{AgentPlan, GroundTruth, SimConfig, SimTenant};
use super::workday::{Workday, WorkdayConfig};
use crate::config::ProfileKind;
use crate::engine::Engine;
use crate::error::ConfigError;
use crate::events::Event;
use crate::log::{Record, SimulationRun};
use crate::report::ComplianceReport;
use crate::time::Now;

/// The outcome of a simulated day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaySummary {
    /// The parameters of the day.
    pub config: WorkdayConfig,
    /// The engine's compliance report at the end of the day.
    pub report: ComplianceReport,
    /// What the tenant saw and did.
    pub ground_truth: GroundTruth,
    /// Transition commands the agents issued.
    pub commands: u64,
    /// API requests (token requests included) per transition command.
    pub api_requests_per_transition: f64,
    /// Retries the engine scheduled.
    pub retries: u64,
    /// Virtual start of the day (Unix ms).
    pub started_ms: u64,
    /// Virtual time of the last event so far (Unix ms).
    pub finished_ms: u64,
    /// Series for charts.
    pub charts: DayCharts,
    /// `cxone`: how far the engine's utilization and idle time are from the tenant's truth, once the day is
    /// done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<DayAccuracy>,
}

/// The same day with observation off and on: what observation buys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComparison {
    /// Observation off: the engine knows only its own changes.
    pub without: DayAccuracy,
    /// Observation on.
    pub with: DayAccuracy,
}

/// Runs the day twice, with observation off and on (the profile is `cxone`; everything else as given), and
/// returns how far each run's figures are from the tenant's truth.
pub fn compare_observation(config: &WorkdayConfig) -> Result<ObservationComparison, ConfigError> {
    let run = |observe: bool| -> Result<DayAccuracy, ConfigError> {
        let config = WorkdayConfig {
            profile: ProfileKind::Cxone,
            observe,
            ..config.clone()
        };
        let mut day = DayRun::new(&config)?;
        day.run(|_, _| {}).map_err(|e| ConfigError::Invalid {
            field: "workday",
            reason: e.to_string(),
        })?;
        Ok(day
            .accuracy
            .take()
            .expect("a cxone day measures its accuracy"))
    };
    Ok(ObservationComparison {
        without: run(false)?,
        with: run(true)?,
    })
}

/// Agents whose state timelines the charts keep (the first ones by id).
pub const TIMELINE_SAMPLE: usize = 12;

/// Upper bounds (ms) of the latency histogram's buckets; the last bucket is open-ended.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
];

/// Chart series of a simulated day, gathered from its events as they pass (memory stays small).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayCharts {
    /// Start of hour 0 (Unix ms).
    pub hour_zero_ms: u64,
    /// Policy violations blocked, per hour of the day.
    pub violations_per_hour: Vec<u64>,
    /// Retries scheduled, per hour.
    pub retries_per_hour: Vec<u64>,
    /// Of those, retries after a 429, per hour.
    pub rate_limited_per_hour: Vec<u64>,
    /// Upper bounds (ms) of the latency buckets ([`LATENCY_BUCKETS_MS`]).
    pub latency_buckets_ms: Vec<u64>,
    /// Transition latencies: counts per bucket of `latency_buckets_ms` (plus one open-ended bucket).
    pub latency_histogram: Vec<u64>,
    /// State timelines of a sample of agents.
    pub timelines: Vec<AgentTimeline>,
}

/// One agent's accepted states over the day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTimeline {
    /// The agent.
    pub user_id: String,
    /// `(entered at Unix ms, state)`, in order.
    pub segments: Vec<(u64, String)>,
}

impl DayCharts {
    fn new(hour_zero_ms: u64, sample: Vec<String>) -> Self {
        Self {
            hour_zero_ms,
            latency_buckets_ms: LATENCY_BUCKETS_MS.to_vec(),
            latency_histogram: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            timelines: sample
                .into_iter()
                .map(|user_id| AgentTimeline {
                    user_id,
                    segments: Vec::new(),
                })
                .collect(),
            ..Self::default()
        }
    }

    fn bump(series: &mut Vec<u64>, hour: usize) {
        if series.len() <= hour {
            series.resize(hour + 1, 0);
        }
        series[hour] += 1;
    }

    fn note(&mut self, at_ms: u64, event: &Event) {
        let hour = (at_ms.saturating_sub(self.hour_zero_ms) / 3_600_000) as usize;
        match event {
            Event::PolicyViolation(_) => Self::bump(&mut self.violations_per_hour, hour),
            Event::RetryScheduled(r) => {
                Self::bump(&mut self.retries_per_hour, hour);
                if r.status == Some(429) {
                    Self::bump(&mut self.rate_limited_per_hour, hour);
                }
            }
            Event::StateChanged(c) => {
                if let Some(t) = self.timelines.iter_mut().find(|t| t.user_id == c.user_id) {
                    t.segments.push((at_ms, c.new_state.clone()));
                }
            }
            _ => {}
        }
    }

    fn note_record(&mut self, record: &Record) {
        if let Record::Audit(r) = record {
            let i = LATENCY_BUCKETS_MS
                .iter()
                .position(|&b| r.latency_ms <= b)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            self.latency_histogram[i] += 1;
        }
    }
}

/// What one slice of a simulated day produced, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaySlice {
    /// Events with their virtual times.
    pub events: Vec<(u64, Event)>,
    /// Records for the durable log (audit records among them), with their virtual times.
    pub records: Vec<(u64, Record)>,
}

/// A simulated day in progress: generate it, then [`advance`](Self::advance) it in slices (to show
/// progress) or [`run`](Self::run) it to the end.
#[derive(Debug)]
pub struct DayRun {
    config: WorkdayConfig,
    harness: Harness,
    commands: u64,
    started_ms: u64,
    last_event_ms: u64,
    end_ms: u64,
    charts: DayCharts,
    /// The log's first record, until the first slice hands it out.
    mark: Option<Record>,
    /// The engine observes (until the day's end).
    observing: bool,
    /// Measured once the day is done (`cxone`).
    accuracy: Option<DayAccuracy>,
    /// Each agent's schedule, by the engine's name of it.
    schedules: std::collections::BTreeMap<String, Vec<crate::adherence::ScheduledShift>>,
    /// The actual-state timelines the audit records tell, as a log read back would (see
    /// [`Timelines`](crate::Timelines)).
    timelines: crate::report::Timelines,
}

impl DayRun {
    /// Generates the day and an engine seeded with the same seed.
    pub fn new(config: &WorkdayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let day = Workday::generate(config);
        let mut engine_config =
            Harness::engine_config_for_profile(&day.tenant, config.seed, config.profile);
        // The report carries the most recent records; the whole trail is the audit log.
        engine_config.report_log_capacity = 500;
        if !config.activity.is_default() {
            // Agents acting on their own change state often: keep the whole day's timeline.
            engine_config.history.max_entries_per_agent = 4_096;
        }
        let engine = Engine::new(engine_config)?;
        let mut harness = Harness::for_workday(&day, engine);
        if config.observe {
            let now = harness.now();
            harness
                .engine
                .start_observing(now)
                .map_err(|e| ConfigError::Invalid {
                    field: "observe",
                    reason: e.to_string(),
                })?;
        }
        let mut sample: Vec<String> = day.agents.iter().map(|a| a.user_id.clone()).collect();
        sample.sort();
        sample.truncate(TIMELINE_SAMPLE);
        // The engine's name of each (its `agentId` on `cxone`).
        let sample = sample.iter().map(|name| harness.user(name)).collect();
        let schedules = day
            .agents
            .iter()
            .map(|a| (harness.user(&a.user_id), a.scheduled_shifts()))
            .collect();
        let mark = Record::Simulation(SimulationRun {
            seed: config.seed,
            agents: config.agents as u64,
            shift_hours: config.shift_hours,
            at_ms: harness.now_ms(),
        });
        Ok(Self {
            mark: Some(mark),
            config: config.clone(),
            commands: day.commands.len() as u64,
            started_ms: harness.now_ms(),
            last_event_ms: harness.now_ms(),
            charts: DayCharts::new(harness.now_ms(), sample),
            end_ms: day.end_ms,
            harness,
            observing: config.observe,
            accuracy: None,
            schedules,
            timelines: Default::default(),
        })
    }

    /// The engine, tenant and clock.
    pub fn harness(&self) -> &Harness {
        &self.harness
    }

    /// Mutable access, e.g. to script faults before running.
    pub fn harness_mut(&mut self) -> &mut Harness {
        &mut self.harness
    }

    /// Share of the day's virtual time already simulated, in `[0, 1]`.
    pub fn progress(&self) -> f64 {
        let span = self.end_ms.saturating_sub(self.started_ms).max(1);
        (self.harness.now_ms().saturating_sub(self.started_ms) as f64 / span as f64).min(1.0)
    }

    /// Whether nothing is left to do.
    pub fn is_done(&self) -> bool {
        self.harness.next_time().is_none()
    }

    /// Simulates up to `virtual_ms` more of the day and returns what it produced.
    pub fn advance(&mut self, virtual_ms: u64) -> DaySlice {
        let until = self.harness.now_ms().saturating_add(virtual_ms);
        self.harness.drive_until(until.min(self.end_ms));
        if until >= self.end_ms {
            self.end_observing();
            self.harness.drive_until(until);
        }
        if self.is_done() {
            self.measure();
        }
        self.collect()
    }

    /// Observation stops at the day's end (or the day would never be done).
    fn end_observing(&mut self) {
        if self.observing {
            self.harness.drive_until(self.end_ms);
            self.harness.engine.stop_observing();
            self.observing = false;
        }
    }

    /// `cxone`: the engine's figures against the tenant's truth over the day.
    fn measure(&mut self) {
        if self.config.profile != ProfileKind::Cxone || self.accuracy.is_some() {
            return;
        }
        let interval = self.harness.engine.config().observe.interval_ms;
        let (from, to) = (self.started_ms, self.end_ms);
        self.accuracy = Some(day_accuracy(
            &mut self.harness,
            self.config.observe,
            interval,
            from,
            to,
        ));
    }

    /// Runs the rest of the day, handing every record for the log to `on_record`.
    pub fn run(&mut self, mut on_record: impl FnMut(u64, &Record)) -> Result<(), Livelock> {
        self.end_observing();
        self.harness.drive()?;
        self.measure();
        let slice = self.collect();
        for (at, r) in &slice.records {
            on_record(*at, r);
        }
        Ok(())
    }

    /// What the harness produced since the last slice; the first slice starts with the log's
    /// [`SimulationRun`] mark.
    fn collect(&mut self) -> DaySlice {
        let mut records = self.harness.take_records();
        if let Some(mark) = self.mark.take() {
            records.insert(0, (self.started_ms, mark));
        }
        let slice = DaySlice {
            events: self.harness.take_events(),
            records,
        };
        for (at, e) in &slice.events {
            self.last_event_ms = self.last_event_ms.max(*at);
            self.charts.note(*at, e);
        }
        for (at, r) in &slice.records {
            self.last_event_ms = self.last_event_ms.max(*at);
            self.charts.note_record(r);
            if let Record::Audit(a) = r {
                self.timelines.ingest(a);
            }
        }
        slice
    }

    /// Each agent's schedule, by the engine's name of it: what `simulate --schedule-out` writes (in the
    /// `cxone` export's format, [`schedule_document`](crate::cxone::wfm::schedule_document)).
    pub fn schedules(
        &self,
    ) -> &std::collections::BTreeMap<String, Vec<crate::adherence::ScheduledShift>> {
        &self.schedules
    }

    /// The summary as things stand. Its report carries adherence and conformance against the day's
    /// schedules, from the audit records as a log read back gives them, over the schedules' span with the
    /// default rule table: `report --audit-log … --schedule …` rebuilds the same figures.
    pub fn summary(&self) -> DaySummary {
        let now = self.last_event_ms;
        let truth = self.harness.tenant.ground_truth().clone();
        let mut report = self.harness.engine.compliance_report(Now::at(now));
        report.adherence = Some(self.timelines.adherence(
            &crate::adherence::RuleTable::default(),
            &self.schedules,
            None,
        ));
        DaySummary {
            config: self.config.clone(),
            report,
            api_requests_per_transition: if self.commands == 0 {
                0.0
            } else {
                truth.total_requests as f64 / self.commands as f64
            },
            ground_truth: truth,
            commands: self.commands,
            retries: self.charts.retries_per_hour.iter().sum(),
            started_ms: self.started_ms,
            finished_ms: now,
            charts: self.charts.clone(),
            accuracy: self.accuracy.clone(),
        }
    }
}

/// A fixed engine workload against the in-process tenant, for comparing hosts' speed (wasm with native):
/// `agents` agents on shift each make `per_agent` changes, with no pacing in the way. Returns a checksum
/// of the outcome (the audit chain's head), equal on every host.
pub fn throughput_workload(agents: u32, per_agent: u32) -> u64 {
    let t0 = super::WORKDAY_EPOCH_MS;
    let sim = SimConfig {
        rate_per_minute: 10_000_000,
        burst: 10_000_000,
        ..SimConfig::default()
    };
    let mut config = Harness::engine_config_for_tenant(&sim, 0);
    config.rate_limit.burst = Some(sim.burst);
    let mut tenant = SimTenant::new(sim);
    tenant.advance_to(t0);
    for i in 0..agents {
        tenant.add_agent(AgentPlan::on_shift(
            format!("w{i}"),
            t0 - 3_600_000,
            t0 + 86_400_000,
        ));
    }
    let engine = Engine::new(config).expect("the workload's configuration is valid");
    let mut h = Harness::new(engine, tenant, t0);
    h.keep_records(false);
    let states = ["READY", "NOT_READY", "PAUSED", "IDLE"];
    for round in 0..per_agent {
        for i in 0..agents {
            h.transition(&format!("w{i}"), states[(round as usize + i as usize) % 4]);
        }
        h.drive().expect("the workload quiesces");
    }
    let head = h.engine.chain_head();
    head.next_seq ^ u64::from_str_radix(&head.last_hash[..12], 16).unwrap_or(0)
}
