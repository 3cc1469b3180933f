//! The simulated tenant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::http::{HttpRequest, HttpResponse, TransportErrorKind};

/// A half-open time window `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start (Unix ms), inclusive.
    pub start_ms: u64,
    /// End (Unix ms), exclusive.
    pub end_ms: u64,
}

/// One simulated agent: shifts and mandatory breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPlan {
    /// The user id.
    pub user_id: String,
    /// Shifts; the agent is scheduled (`status: ACTIVE`) inside one.
    pub shifts: Vec<Window>,
    /// Mandatory breaks.
    pub breaks: Vec<Window>,
}

/// The tenant's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Endpoint {
    /// `POST /oauth2/token`
    Token,
    /// `GET /api/v2/schedules/users/{id}`
    Schedule,
    /// `GET /api/v2/breaks/users/{id}/status`
    BreakStatus,
    /// `POST /api/v2/users/{id}/state`
    SetState,
}

/// An injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// Answer this status (e.g. 500, 503) without processing the request.
    Status {
        /// The status.
        status: u16,
        /// A `Retry-After` in seconds, if any.
        retry_after_s: Option<u64>,
    },
    /// Answer 429 with `Retry-After` without processing the request.
    RateLimit {
        /// `Retry-After` in seconds.
        retry_after_s: u64,
    },
    /// Process normally but answer `extra_ms` later.
    Slow {
        /// Added latency.
        extra_ms: u64,
    },
    /// Answer 200 with a body that is not valid JSON, without processing the request.
    Malformed,
    /// Drop the connection before processing.
    DropBefore,
    /// Process, then drop the connection (the change happened; the client cannot know).
    DropAfter,
    /// Answer 401 as if the token had been revoked, without processing the request.
    Unauthorized,
}

/// A scripted fault: applies to the next `times` requests that match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Only this endpoint (any when `None`).
    pub endpoint: Option<Endpoint>,
    /// Only this user (any when `None`).
    pub user_id: Option<String>,
    /// What to do.
    pub fault: FaultKind,
    /// How many matching requests it applies to.
    pub times: u32,
}

/// Random faults drawn from the tenant's seeded generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RandomFaults {
    /// Probability that a request gets a fault (0 disables).
    pub rate: f64,
    /// The faults to pick from, uniformly.
    pub kinds: Vec<FaultKind>,
}

impl Default for RandomFaults {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: Vec::new(),
        }
    }
}

/// The tenant's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimConfig {
    /// Seed for latency jitter, faults and tokens.
    pub seed: u64,
    /// The accepted client id.
    pub client_id: String,
    /// The accepted client secret.
    pub client_secret: String,
    /// Token lifetime (`expires_in`).
    pub token_ttl_s: u64,
    /// Requests admitted per minute (token-bucket refill rate).
    pub rate_per_minute: u32,
    /// Token-bucket capacity (burst).
    pub burst: u32,
    /// Base one-way answer latency.
    pub latency_ms: u64,
    /// Extra latency drawn uniformly in `[0, latency_jitter_ms)`.
    pub latency_jitter_ms: u64,
    /// `mandatoryBreakRequired` turns true this long before a break starts (a break that is due).
    pub break_notice_ms: u64,
    /// Random faults.
    pub faults: RandomFaults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            token_ttl_s: 3600,
            rate_per_minute: 100,
            burst: 100,
            latency_ms: 40,
            latency_jitter_ms: 20,
            break_notice_ms: 300_000,
            faults: RandomFaults::default(),
        }
    }
}

/// What the tenant does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimOutcome {
    /// An HTTP answer.
    Response(HttpResponse),
    /// No answer: the connection fails.
    TransportError(TransportErrorKind),
}

/// The outcome and when the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReply {
    /// When the client receives it (Unix ms).
    pub deliver_at_ms: u64,
    /// What it receives.
    pub outcome: SimOutcome,
}

/// Ground-truth counters: what the tenant actually saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroundTruth {
    /// Requests of any kind.
    pub total_requests: u64,
    /// Requests per endpoint.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Answers per status.
    pub responses_by_status: BTreeMap<u16, u64>,
    /// 429s sent by the rate limiter (not injected ones).
    pub rate_limited: u64,
    /// Faults injected (scripted or random).
    pub faults_injected: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// State changes applied.
    pub state_changes_accepted: u64,
    /// Repeated idempotency keys answered from the replay cache.
    pub idempotent_replays: u64,
    /// READY changes applied inside a mandatory break window. Must stay 0.
    pub ready_accepted_during_break: u64,
    /// Changes applied while the agent had no active shift.
    pub accepted_while_unscheduled: u64,
}

/// The simulated tenant.
#[derive(Debug)]
pub struct SimTenant {
    _private: (),
}

impl SimTenant {
    /// A tenant with no agents.
    pub fn new(config: SimConfig) -> Self {
        let _ = config;
        unimplemented!()
    }
    /// Adds (or replaces) an agent.
    pub fn add_agent(&mut self, plan: AgentPlan) {
        let _ = plan;
        unimplemented!()
    }
    /// Queues a scripted fault; rules apply in the order added.
    pub fn script_fault(&mut self, rule: FaultRule) {
        let _ = rule;
        unimplemented!()
    }
    /// Sets the random-fault profile.
    pub fn set_random_faults(&mut self, faults: RandomFaults) {
        let _ = faults;
        unimplemented!()
    }
    /// Changes the rate limit (the bucket keeps its current fill, clamped to the new burst).
    pub fn set_rate_limit(&mut self, rate_per_minute: u32, burst: u32) {
        let _ = (rate_per_minute, burst);
        unimplemented!()
    }
    /// Revokes every token issued so far.
    pub fn revoke_tokens(&mut self) {
        unimplemented!()
    }
    /// Handles one request arriving at `now_ms`.
    pub fn handle_request(&mut self, now_ms: u64, request: &HttpRequest) -> SimReply {
        let _ = (now_ms, request);
        unimplemented!()
    }
    /// The ground-truth counters.
    pub fn ground_truth(&self) -> &GroundTruth {
        unimplemented!()
    }
    /// The state the tenant holds for an agent.
    pub fn agent_state(&self, user_id: &str) -> Option<&str> {
        let _ = user_id;
        unimplemented!()
    }
    /// The idempotency keys of every applied state change, in order, with the user and state.
    pub fn accepted_changes(&self) -> &[(String, String, String)] {
        unimplemented!()
    }
}
