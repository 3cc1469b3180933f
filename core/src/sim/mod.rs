//! A simulated CXone tenant that speaks the `seed` profile, plus a virtual-clock harness.
//!
//! Like the engine, the tenant is sans-IO: [`SimTenant::handle_request`] takes `now` and a request and says what
//! to answer and when. The same code runs in-process (tests, `simulate`, the browser) and behind a real HTTP
//! server.

mod day;
mod harness;
mod tenant;
mod workday;

pub use day::{
    throughput_workload, AgentTimeline, DayCharts, DayRun, DaySummary, LATENCY_BUCKETS_MS,
    TIMELINE_SAMPLE,
};
pub use harness::{Harness, Livelock, TokenBackend, TranscriptStep, SIM_BASE_URL};

pub use tenant::{
    AgentPlan, Endpoint, FaultKind, FaultRule, GroundTruth, RandomFaults, SimConfig, SimOutcome,
    SimReply, SimTenant, Window,
};
pub use workday::{PlannedCommand, Workday, WorkdayConfig, WORKDAY_EPOCH_MS};
