//! A simulated CXone tenant that speaks the `seed` profile and the real CXone API (the `cxone` profile), plus a
//! virtual-clock harness.
//!
//! Like the engine, the tenant is sans-IO: [`SimTenant::handle_request`] takes `now` and a request and says what
//! to answer and when. The same code runs in-process (tests, `simulate`, the browser) and behind a real HTTP
//! server.

mod accuracy;
mod day;
mod harness;
mod tenant;
mod workday;

pub use accuracy::{day_accuracy, AgentAccuracy, DayAccuracy};
pub use day::{
    compare_observation, throughput_workload, AgentTimeline, DayCharts, DayRun, DaySlice,
    DaySummary, ObservationComparison, LATENCY_BUCKETS_MS, TIMELINE_SAMPLE,
};
pub use harness::{
    Action, Command, Harness, Livelock, ReceiverAnswer, SimReceiver, TokenBackend, TranscriptStep,
    SIM_BASE_URL, SIM_WEBHOOK_URL,
};

/// The token bucket the engine and the simulated tenant pace with.
pub use crate::pacer::Pacer;
/// The policy rule itself, for the shared policy vectors.
pub use crate::policy::PolicyDecision;
/// The wire side of the `seed` profile, for tests and vectors that exercise it directly.
pub use crate::profile::{
    ApiProfile, BreakStatus, ParsedToken, ScheduleAnswer, SeedProfile, TokenFailure,
};

pub use tenant::{
    ActivityConfig, AgentPlan, CxoneIdentity, Endpoint, FaultKind, FaultRule, GroundTruth,
    RandomFaults, SimConfig, SimOutcome, SimReply, SimTenant, TruthEntry, TruthSource, Window,
    CXONE_AREA, CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C, CXONE_UH_DOMAIN,
};
pub use workday::{PlannedCommand, Workday, WorkdayConfig, WORKDAY_EPOCH_MS};
