//! A whole simulated shift day, run on virtual time: the main job of `cxone-agent-state simulate` and of the
//! browser simulation.

use serde::{Deserialize, Serialize};

use super::harness::{Harness, Livelock};
use super::tenant::GroundTruth;
use super::workday::{Workday, WorkdayConfig};
use crate::engine::Engine;
use crate::error::ConfigError;
use crate::events::Event;
use crate::report::ComplianceReport;

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
}

/// A simulated day in progress: generate it, then [`advance`](Self::advance) it in slices (to show
/// progress) or [`run`](Self::run) it to the end.
#[derive(Debug)]
pub struct DayRun {
    config: WorkdayConfig,
    harness: Harness,
    commands: u64,
    retries: u64,
    started_ms: u64,
    last_event_ms: u64,
    end_ms: u64,
}

impl DayRun {
    /// Generates the day and an engine seeded with the same seed.
    pub fn new(config: &WorkdayConfig) -> Result<Self, ConfigError> {
        let day = Workday::generate(config);
        let engine = Engine::new(Harness::engine_config_for(&day, config.seed))?;
        let harness = Harness::for_workday(&day, engine);
        Ok(Self {
            config: config.clone(),
            commands: day.commands.len() as u64,
            retries: 0,
            started_ms: harness.now_ms(),
            last_event_ms: harness.now_ms(),
            end_ms: day.end_ms,
            harness,
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

    /// Simulates up to `virtual_ms` more of the day and returns the events produced, in order.
    pub fn advance(&mut self, virtual_ms: u64) -> Vec<(u64, Event)> {
        let until = self.harness.now_ms().saturating_add(virtual_ms);
        self.harness.drive_until(until);
        let events = self.harness.take_events();
        for (at, e) in &events {
            self.note(*at, e);
        }
        events
    }

    /// Runs the rest of the day, handing every event to `on_event`.
    pub fn run(&mut self, mut on_event: impl FnMut(u64, &Event)) -> Result<(), Livelock> {
        self.harness.drive()?;
        let events = self.harness.take_events();
        for (at, e) in &events {
            self.note(*at, e);
            on_event(*at, e);
        }
        Ok(())
    }

    fn note(&mut self, at_ms: u64, event: &Event) {
        self.last_event_ms = self.last_event_ms.max(at_ms);
        if matches!(event, Event::RetryScheduled(_)) {
            self.retries += 1;
        }
    }

    /// The summary as things stand.
    pub fn summary(&self) -> DaySummary {
        let now = self.last_event_ms;
        let truth = self.harness.tenant.ground_truth().clone();
        DaySummary {
            config: self.config.clone(),
            report: self.harness.engine.compliance_report(now),
            api_requests_per_transition: if self.commands == 0 {
                0.0
            } else {
                truth.total_requests as f64 / self.commands as f64
            },
            ground_truth: truth,
            commands: self.commands,
            retries: self.retries,
            started_ms: self.started_ms,
            finished_ms: now,
        }
    }
}
