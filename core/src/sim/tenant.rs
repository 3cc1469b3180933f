//! The simulated tenant.
//!
//! One tenant serves both profiles side by side: the `seed` endpoints here and the real CXone API of the `cxone`
//! profile in [`cxone`]. Their routes do not overlap; agents, tokens, faults and ground truth are shared.

mod activity;
mod cxone;
#[cfg(test)]
mod tests;

pub use activity::{ActivityConfig, TruthEntry, TruthSource};
pub use cxone::{
    CxoneIdentity, CXONE_AREA, CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C, CXONE_UH_DOMAIN,
};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ConfigError;
use crate::http::{HttpRequest, HttpResponse, Method, TransportErrorKind};
use crate::pacer::{Pacer, RateLimit};
use crate::rng::DetRng;
use crate::time::iso8601;

/// A half-open time window `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start (Unix ms), inclusive.
    pub start_ms: u64,
    /// End (Unix ms), exclusive.
    pub end_ms: u64,
}

/// One simulated agent: shifts and mandatory breaks, and for the `cxone` profile its team and when it is
/// logged out.
///
/// The two `cxone` fields are left out of the JSON when unset, so plans written for the `seed` profile read and
/// write as before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPlan {
    /// The user id.
    pub user_id: String,
    /// Shifts; the agent is scheduled (`status: ACTIVE`) inside one.
    pub shifts: Vec<Window>,
    /// Mandatory breaks.
    pub breaks: Vec<Window>,
    /// When the agent has no ACD session: the `cxone` profile's `SetAgentState` answers 409 inside these
    /// windows. None by default (always logged in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logged_out: Vec<Window>,
    /// The agent's CXone team (e.g. [`CXONE_TEAM_C`], which has no unavailable codes). `None` assigns the
    /// teams A, B and C in turn, in the order agents are first added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<u64>,
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
    /// `cxone`: `GET /.well-known/openid-configuration` and `GET /.well-known/cxone-configuration`.
    Discovery,
    /// `cxone`: `POST /auth/token` (password and refresh grants).
    CxoneToken,
    /// `cxone`: `GET /inContactAPI/services/v{N}.0/agents`.
    Agents,
    /// `cxone`: `GET /inContactAPI/services/v{N}.0/teams/{teamId}/unavailable-codes`.
    UnavailableCodes,
    /// `cxone`: `POST /schedules/export` (the WFM host), paced by the WFM rate limit.
    ScheduleExport,
    /// `cxone`: `POST /inContactAPI/services/v{N}.0/agents/{agentId}/state` (the Admin API's `SetAgentState`).
    AgentState,
    /// `cxone`: `GET /inContactAPI/services/v{N}.0/agents/states?updatedSince` (the Real-Time Data API).
    AgentStates,
    /// `cxone`: `GET /inContactAPI/services/v{N}.0/agents/{agentId}/state-history`.
    StateHistory,
}

/// An injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
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
    /// Only this user (any when `None`): the plan's user id, whichever profile addresses the agent (by user
    /// id, by `agentId` or by UserHub `userID`).
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
    /// `cxone`: the tenant id, carried by the id_token and asked for by `/.well-known/cxone-configuration`.
    #[serde(default = "default_tenant_id")]
    pub tenant_id: String,
    /// `cxone`: the accepted access key id (`username` of the password grant).
    #[serde(default = "default_access_key_id")]
    pub access_key_id: String,
    /// `cxone`: the accepted access key secret (`password` of the password grant). The default holds `=`, `&`
    /// and `%`, which a client must form-encode.
    #[serde(default = "default_access_key_secret")]
    pub access_key_secret: String,
    /// `cxone`: agents, supervisors and the ACD changing agents' states on their own. Off by default (and then
    /// left out of the JSON).
    #[serde(default, skip_serializing_if = "ActivityConfig::is_default")]
    pub activity: ActivityConfig,
    /// `cxone`: requests to the WFM schedule export admitted per minute, a limit of its own.
    #[serde(default = "default_wfm_rate")]
    pub wfm_rate_per_minute: u32,
    /// `cxone`: the WFM token bucket's capacity (burst).
    #[serde(default = "default_wfm_rate")]
    pub wfm_burst: u32,
}

/// The default tenant id: UUID-shaped, like a real tenant's.
fn default_tenant_id() -> String {
    "11e51a00-0000-4000-8000-000000000001".to_owned()
}

fn default_access_key_id() -> String {
    "sim-access-key".to_owned()
}

fn default_access_key_secret() -> String {
    "sim-access-secret=&%".to_owned()
}

/// The WFM limit defaults to the API's default (100 per minute, burst 100).
fn default_wfm_rate() -> u32 {
    100
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
            tenant_id: default_tenant_id(),
            access_key_id: default_access_key_id(),
            access_key_secret: default_access_key_secret(),
            wfm_rate_per_minute: default_wfm_rate(),
            wfm_burst: default_wfm_rate(),
            activity: ActivityConfig::default(),
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

/// How many idempotency keys the tenant remembers (oldest forgotten first).
const IDEMPOTENCY_MEMORY: usize = 200_000;

/// The scope the tenant grants (the reference module's).
const GRANTED_SCOPE: &str = "users:state:view users:state:write schedules:view breaks:view";

impl AgentPlan {
    /// The title the schedule gives a mandatory break: `Lunch` from half an hour on, else `Break`.
    pub fn break_title(b: &Window) -> &'static str {
        if b.end_ms - b.start_ms >= 30 * 60_000 {
            "Lunch"
        } else {
            "Break"
        }
    }

    /// The agent's schedule as adherence reads it (and the `cxone` export gives it): each shift with the
    /// mandatory breaks that meet it.
    pub fn scheduled_shifts(&self) -> Vec<crate::adherence::ScheduledShift> {
        self.shifts
            .iter()
            .map(|s| crate::adherence::ScheduledShift {
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                activities: self
                    .breaks
                    .iter()
                    .filter(|b| b.start_ms < s.end_ms && s.start_ms < b.end_ms)
                    .map(|b| crate::adherence::ScheduledActivity {
                        name: Self::break_title(b).to_owned(),
                        start_ms: b.start_ms,
                        end_ms: b.end_ms,
                        mandatory_break: true,
                    })
                    .collect(),
            })
            .collect()
    }

    /// An agent with one shift `[start_ms, end_ms)` and no breaks.
    pub fn on_shift(user_id: impl Into<String>, start_ms: u64, end_ms: u64) -> Self {
        Self {
            user_id: user_id.into(),
            shifts: vec![Window { start_ms, end_ms }],
            ..Self::default()
        }
    }

    /// The shift that contains `now_ms`, if any.
    pub fn shift_at(&self, now_ms: u64) -> Option<Window> {
        self.shifts.iter().copied().find(|w| w.contains(now_ms))
    }

    /// The break whose window, widened by `notice_ms` before its start, contains `now_ms`.
    pub fn break_due_at(&self, now_ms: u64, notice_ms: u64) -> Option<Window> {
        self.breaks
            .iter()
            .copied()
            .find(|w| now_ms >= w.start_ms.saturating_sub(notice_ms) && now_ms < w.end_ms)
    }
}

impl FaultKind {
    /// Answer `status` (with a `Retry-After` of `retry_after_s` seconds, if any) without processing the
    /// request: [`FaultKind::Status`].
    pub fn status(status: u16, retry_after_s: Option<u64>) -> Self {
        Self::Status {
            status,
            retry_after_s,
        }
    }
}

impl FaultRule {
    /// `fault` for the next `times` requests to `endpoint`, whoever they are for. For one agent only, set
    /// `user_id` with struct update syntax:
    ///
    /// ```
    /// # use cxone_agent_state_core::sim::{Endpoint, FaultKind, FaultRule};
    /// let rule = FaultRule {
    ///     user_id: Some("alice".into()),
    ///     ..FaultRule::on(Endpoint::SetState, FaultKind::status(503, Some(2)), 1)
    /// };
    /// assert_eq!(rule.endpoint, Some(Endpoint::SetState));
    /// ```
    pub fn on(endpoint: Endpoint, fault: FaultKind, times: u32) -> Self {
        Self {
            endpoint: Some(endpoint),
            user_id: None,
            fault,
            times,
        }
    }
}

impl Window {
    /// Whether `at_ms` lies in `[start_ms, end_ms)`.
    pub fn contains(&self, at_ms: u64) -> bool {
        at_ms >= self.start_ms && at_ms < self.end_ms
    }
}

impl Endpoint {
    /// The stable name used in counters and admin calls.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Schedule => "schedule",
            Self::BreakStatus => "breakStatus",
            Self::SetState => "setState",
            Self::Discovery => "discovery",
            Self::CxoneToken => "cxoneToken",
            Self::Agents => "agents",
            Self::UnavailableCodes => "unavailableCodes",
            Self::ScheduleExport => "scheduleExport",
            Self::AgentState => "agentState",
            Self::AgentStates => "agentStates",
            Self::StateHistory => "stateHistory",
        }
    }
}

#[derive(Debug)]
struct AgentSim {
    plan: AgentPlan,
    state: Option<String>,
    /// Who the agent is to the `cxone` profile.
    identity: CxoneIdentity,
    /// `cxone`: the state the tenant reports for the agent, and its truth timeline.
    tenant: activity::TenantState,
}

/// The simulated tenant.
///
/// Order of processing for each request, as a gateway in front of a real tenant would: route → rate limiter
/// (429 + `Retry-After`) → injected fault → bearer-token check → the endpoint itself.
#[derive(Debug)]
pub struct SimTenant {
    config: SimConfig,
    rng: DetRng,
    agents: BTreeMap<String, AgentSim>,
    /// token → expiry (Unix ms).
    tokens: BTreeMap<String, u64>,
    /// The tenant's own rate limiter: the same token bucket the engine paces itself with.
    limiter: Pacer,
    /// The WFM host's limiter (`cxone` schedule export), apart from the API's.
    wfm_limiter: Pacer,
    scripted: VecDeque<FaultRule>,
    /// The answers to state changes by idempotency key, replayed as they were.
    idempotency: BTreeMap<String, HttpResponse>,
    idempotency_order: VecDeque<String>,
    truth: GroundTruth,
    accepted: Vec<(String, String, String)>,
    /// `cxone` refresh tokens not yet used (each is good for one refresh).
    refresh_tokens: BTreeSet<String>,
    /// The `agentId` the next new agent gets.
    next_agent_id: u64,
    /// `agentId` → user id.
    by_agent_id: BTreeMap<u64, String>,
    /// UserHub `userID` → user id.
    by_user_uuid: BTreeMap<String, String>,
    /// `cxone`: id_tokens are issued without the `tenantId` claim (a test knob, off by default).
    id_token_without_tenant_id: bool,
    /// The latest time the agents' activity has been materialised to.
    activity_clock_ms: u64,
    /// The earliest activity event due among all agents (`u64::MAX` when none), so that a request finds
    /// nothing to do in O(1).
    next_activity_ms: u64,
    /// An agent was added or replanned, or the activity reconfigured: look at every agent next time.
    activity_dirty: bool,
}

/// A tenant's view of one request after routing.
enum Route {
    Token,
    Schedule(String),
    BreakStatus(String),
    SetState(String),
    Cxone(cxone::CxoneRoute),
    NotFound,
}

impl Route {
    fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Self::Token => Some(Endpoint::Token),
            Self::Schedule(_) => Some(Endpoint::Schedule),
            Self::BreakStatus(_) => Some(Endpoint::BreakStatus),
            Self::SetState(_) => Some(Endpoint::SetState),
            Self::Cxone(route) => Some(route.endpoint()),
            Self::NotFound => None,
        }
    }

    fn user(&self) -> Option<&str> {
        match self {
            Self::Schedule(u) | Self::BreakStatus(u) | Self::SetState(u) => Some(u),
            _ => None,
        }
    }

    fn parse(method: Method, path: &str) -> Self {
        if let Some(route) = cxone::CxoneRoute::parse(method, path) {
            return Self::Cxone(route);
        }
        let decode = |seg: &str| -> Option<String> {
            if seg.is_empty() || seg.contains('/') {
                return None;
            }
            percent_decode_str(seg)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        let path = path.trim_end_matches('/');
        if method == Method::Post && path == "/oauth2/token" {
            return Self::Token;
        }
        if method == Method::Get {
            if let Some(seg) = path.strip_prefix("/api/v2/schedules/users/") {
                return decode(seg).map_or(Self::NotFound, Self::Schedule);
            }
            if let Some(seg) = path
                .strip_prefix("/api/v2/breaks/users/")
                .and_then(|r| r.strip_suffix("/status"))
            {
                return decode(seg).map_or(Self::NotFound, Self::BreakStatus);
            }
        }
        if method == Method::Post {
            if let Some(seg) = path
                .strip_prefix("/api/v2/users/")
                .and_then(|r| r.strip_suffix("/state"))
            {
                return decode(seg).map_or(Self::NotFound, Self::SetState);
            }
        }
        Self::NotFound
    }
}

fn json_response(status: u16, body: serde_json::Value) -> HttpResponse {
    HttpResponse::new(
        status,
        vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body.to_string(),
    )
}

fn error_response(status: u16, error: &str, description: &str) -> HttpResponse {
    json_response(
        status,
        json!({ "error": error, "error_description": description }),
    )
}

/// Parses an `application/x-www-form-urlencoded` body (a repeated name keeps its last value).
fn parse_form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// The request's body as JSON; `None` without a body or when it is not JSON.
fn json_body(request: &HttpRequest) -> Option<serde_json::Value> {
    serde_json::from_str(request.body.as_deref()?).ok()
}

fn check_at_least_one(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(())
}

fn check_fault_rate(rate: f64) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(ConfigError::Invalid {
            field: "faults.rate",
            reason: "must be between 0 and 1".to_owned(),
        });
    }
    Ok(())
}

impl SimConfig {
    /// Checks the settings a tenant cannot run with; the error names the field (as in JSON).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_at_least_one("ratePerMinute", u64::from(self.rate_per_minute))?;
        check_at_least_one("burst", u64::from(self.burst))?;
        check_at_least_one("wfmRatePerMinute", u64::from(self.wfm_rate_per_minute))?;
        check_at_least_one("wfmBurst", u64::from(self.wfm_burst))?;
        check_at_least_one("tokenTtlS", self.token_ttl_s)?;
        check_fault_rate(self.faults.rate)?;
        self.activity.validate()?;
        if self.client_id.is_empty() {
            return Err(ConfigError::Invalid {
                field: "clientId",
                reason: "must not be empty".to_owned(),
            });
        }
        Ok(())
    }
}

/// The tenant's limit as a [`Pacer`] limit: its rate and its (announced to nobody) burst.
fn limit_of(config: &SimConfig) -> RateLimit {
    RateLimit {
        per_minute: config.rate_per_minute,
        burst: Some(config.burst),
    }
}

/// The WFM host's limit as a [`Pacer`] limit.
fn wfm_limit_of(config: &SimConfig) -> RateLimit {
    RateLimit {
        per_minute: config.wfm_rate_per_minute,
        burst: Some(config.wfm_burst),
    }
}

impl SimTenant {
    /// A tenant with no agents.
    pub fn new(config: SimConfig) -> Self {
        Self {
            limiter: Pacer::new(&limit_of(&config)),
            wfm_limiter: Pacer::new(&wfm_limit_of(&config)),
            rng: DetRng::new(config.seed),
            config,
            agents: BTreeMap::new(),
            tokens: BTreeMap::new(),
            scripted: VecDeque::new(),
            idempotency: BTreeMap::new(),
            idempotency_order: VecDeque::new(),
            truth: GroundTruth::default(),
            accepted: Vec::new(),
            refresh_tokens: BTreeSet::new(),
            next_agent_id: cxone::FIRST_AGENT_ID,
            by_agent_id: BTreeMap::new(),
            by_user_uuid: BTreeMap::new(),
            id_token_without_tenant_id: false,
            activity_clock_ms: 0,
            next_activity_ms: u64::MAX,
            activity_dirty: false,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Adds (or replaces) an agent. A replaced agent keeps its current state and its `agentId` and `userID`;
    /// its team follows the new plan's `team_id` when set.
    ///
    /// A new agent gets the next `agentId` (1001, 1002, … in the order agents are first added), a UUID-shaped
    /// `userID` made from it, and the plan's team, else the teams A, B and C in turn. Its tenant state starts
    /// at the tenant's clock (see [`advance_to`](Self::advance_to)): a tenant that is to start at a given
    /// time is advanced there before its agents are added.
    pub fn add_agent(&mut self, plan: AgentPlan) {
        let (state, identity, tenant) = match self.agents.remove(&plan.user_id) {
            Some(old) => (old.state, old.identity, Some(old.tenant)),
            None => {
                let identity = CxoneIdentity::numbered(self.next_agent_id);
                self.next_agent_id += 1;
                self.by_agent_id
                    .insert(identity.agent_id.0, plan.user_id.clone());
                self.by_user_uuid
                    .insert(identity.user_id.clone(), plan.user_id.clone());
                (None, identity, None)
            }
        };
        let replanned = tenant.is_some();
        let tenant = tenant.unwrap_or_else(|| {
            activity::TenantState::new(&plan, &self.config.activity, self.activity_clock_ms)
        });
        let identity = CxoneIdentity {
            team_id: plan.team_id.unwrap_or(identity.team_id),
            ..identity
        };
        let user_id = plan.user_id.clone();
        let mut agent = AgentSim {
            plan,
            state,
            identity,
            tenant,
        };
        if replanned {
            agent.replan(self.activity_clock_ms, &self.config.activity);
        }
        self.agents.insert(user_id, agent);
        self.activity_dirty = true;
    }

    /// Every agent's user id, in order.
    pub fn agent_user_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.agents.keys().map(String::as_str)
    }

    /// Replaces the activity settings (refused when invalid). Agents whose activity has started go on from
    /// the tenant's latest time with the new rates; the others start with them when the clock next advances.
    pub fn set_activity(&mut self, activity: ActivityConfig) -> Result<(), ConfigError> {
        activity.validate()?;
        self.config.activity = activity;
        let (at_ms, seed) = (self.activity_clock_ms, self.config.seed);
        for agent in self.agents.values_mut() {
            if agent.tenant.started() {
                agent.start_activity(at_ms, &self.config.activity, seed);
            }
        }
        self.activity_dirty = true;
        Ok(())
    }

    /// Advances the tenant's clock to `now_ms`: every agent's activity up to then is applied, as at the start
    /// of each request. Calling it again with the same or an earlier time does nothing.
    pub fn advance_to(&mut self, now_ms: u64) {
        if !self.activity_dirty && now_ms < self.next_activity_ms {
            self.activity_clock_ms = self.activity_clock_ms.max(now_ms);
            return;
        }
        let (activity, seed) = (&self.config.activity, self.config.seed);
        let mut next = u64::MAX;
        for agent in self.agents.values_mut() {
            agent.materialize(now_ms, activity, seed);
            next = next.min(agent.tenant.next_due_ms().unwrap_or(u64::MAX));
        }
        self.next_activity_ms = next;
        self.activity_dirty = false;
        self.activity_clock_ms = self.activity_clock_ms.max(now_ms);
    }

    /// An agent's true timeline up to `until_ms` (inclusive): every change of its tenant state, from any
    /// source, the first being the state it started in when it was added. Advances the clock to `until_ms` first (see
    /// [`advance_to`](Self::advance_to)); empty for an unknown agent.
    pub fn truth_timeline(&mut self, user_id: &str, until_ms: u64) -> Vec<TruthEntry> {
        self.advance_to(until_ms);
        self.agents.get(user_id).map_or_else(Vec::new, |agent| {
            agent
                .tenant
                .timeline
                .iter()
                .filter(|e| e.at_ms <= until_ms)
                .cloned()
                .collect()
        })
    }

    /// Changes an agent's tenant state at `now_ms` as someone other than the API would: `state_name` is an
    /// `agentStateName` (`Available`, `Unavailable`, `LoggedOut`, `InboundContact`, …, any case), `code` the
    /// name of one of its team's unavailable codes (with `Unavailable` only). The string state follows (READY,
    /// `UNAVAILABLE_LUNCH`, `INBOUND_CONTACT`, `LOGGED_OUT`, …), but the change is not one accepted through
    /// the API ([`accepted_changes`](Self::accepted_changes) and the ground truth do not count it). A contact
    /// started this way lasts until the next change. Advances the clock to `now_ms` first.
    pub fn external_change(
        &mut self,
        now_ms: u64,
        user_id: &str,
        state_name: &str,
        code: Option<&str>,
        source: TruthSource,
    ) -> Result<(), String> {
        self.advance_to(now_ms);
        let agent = self
            .agents
            .get_mut(user_id)
            .ok_or_else(|| format!("no agent {user_id:?}"))?;
        let name = activity::CxState::parse(state_name)
            .ok_or_else(|| format!("unknown agent state {state_name:?}"))?;
        let code = match code {
            None => None,
            Some(_) if name != activity::CxState::Unavailable => {
                return Err("a code goes with Unavailable only".to_owned())
            }
            Some(wanted) => {
                let codes = cxone::team_codes(agent.identity.team_id).unwrap_or_default();
                let found = codes
                    .iter()
                    .find(|c| c.1 == wanted)
                    .or_else(|| codes.iter().find(|c| c.1.eq_ignore_ascii_case(wanted)));
                Some(*found.ok_or_else(|| {
                    format!("{wanted:?} is not an unavailable code of the agent's team")
                })?)
            }
        };
        if agent.change(now_ms, name, code, source, true) && name.is_contact() {
            let contact = agent.tenant.new_contact(agent.identity.agent_id.0, None);
            agent.tenant.contact = Some(contact);
        }
        Ok(())
    }

    /// Who an agent is to the `cxone` profile: its `agentId`, UserHub `userID` and team.
    pub fn cxone_agent(&self, user_id: &str) -> Option<&CxoneIdentity> {
        self.agents.get(user_id).map(|a| &a.identity)
    }

    /// The plan of an agent.
    pub fn agent(&self, user_id: &str) -> Option<&AgentPlan> {
        self.agents.get(user_id).map(|a| &a.plan)
    }

    /// How many agents the tenant knows.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Queues a scripted fault; rules apply in the order added.
    pub fn script_fault(&mut self, rule: FaultRule) {
        if rule.times > 0 {
            self.scripted.push_back(rule);
        }
    }

    /// Drops every scripted fault not yet used.
    pub fn clear_scripted_faults(&mut self) {
        self.scripted.clear();
    }

    /// Sets the random-fault profile; a rate outside `[0, 1]` is refused.
    pub fn set_random_faults(&mut self, faults: RandomFaults) -> Result<(), ConfigError> {
        check_fault_rate(faults.rate)?;
        self.config.faults = faults;
        Ok(())
    }

    /// Changes the rate limit (the bucket keeps its current fill, clamped to the new burst); a rate or
    /// burst of 0 is refused.
    pub fn set_rate_limit(&mut self, rate_per_minute: u32, burst: u32) -> Result<(), ConfigError> {
        check_at_least_one("ratePerMinute", u64::from(rate_per_minute))?;
        check_at_least_one("burst", u64::from(burst))?;
        self.config.rate_per_minute = rate_per_minute;
        self.config.burst = burst;
        self.limiter.set_limit(&limit_of(&self.config));
        Ok(())
    }

    /// Changes the WFM host's rate limit (the `cxone` schedule export), as [`set_rate_limit`](Self::set_rate_limit)
    /// does the API's.
    pub fn set_wfm_rate_limit(
        &mut self,
        rate_per_minute: u32,
        burst: u32,
    ) -> Result<(), ConfigError> {
        check_at_least_one("wfmRatePerMinute", u64::from(rate_per_minute))?;
        check_at_least_one("wfmBurst", u64::from(burst))?;
        self.config.wfm_rate_per_minute = rate_per_minute;
        self.config.wfm_burst = burst;
        self.wfm_limiter.set_limit(&wfm_limit_of(&self.config));
        Ok(())
    }

    /// `cxone`: issues id_tokens without the `tenantId` claim from now on (`true`), as a tenant whose id_token
    /// does not name it would, or with it again (`false`, the default).
    pub fn omit_tenant_id_from_id_tokens(&mut self, omit: bool) {
        self.id_token_without_tenant_id = omit;
    }

    /// Revokes every token issued so far (access tokens of both profiles and `cxone` refresh tokens).
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
        self.refresh_tokens.clear();
    }

    /// The ground-truth counters.
    pub fn ground_truth(&self) -> &GroundTruth {
        &self.truth
    }

    /// The state the tenant holds for an agent.
    pub fn agent_state(&self, user_id: &str) -> Option<&str> {
        self.agents.get(user_id)?.state.as_deref()
    }

    /// Every applied state change, in order, as `(idempotency key, user, state)`.
    pub fn accepted_changes(&self) -> &[(String, String, String)] {
        &self.accepted
    }

    /// Handles one request arriving at `now_ms`.
    pub fn handle_request(&mut self, now_ms: u64, request: &HttpRequest) -> SimReply {
        self.advance_to(now_ms);
        let mut reply = self.answer(now_ms, request);
        // Every answer carries the tenant's clock, as HTTP servers' answers do (RFC 9110 §6.6.1).
        if let SimOutcome::Response(r) = &mut reply.outcome {
            if r.header("date").is_none() {
                r.headers
                    .push(("Date".to_owned(), crate::time::http_date(now_ms)));
            }
        }
        reply
    }

    fn answer(&mut self, now_ms: u64, request: &HttpRequest) -> SimReply {
        self.truth.total_requests += 1;
        let route = Route::parse(request.method, request.path());
        let name = route.endpoint().map_or("unknown", Endpoint::as_str);
        *self
            .truth
            .requests_by_endpoint
            .entry(name.to_owned())
            .or_default() += 1;
        let mut deliver_at_ms = now_ms
            .saturating_add(self.config.latency_ms)
            .saturating_add(self.rng.below(self.config.latency_jitter_ms));

        let user = self.fault_user(&route, request);
        let outcome = match self.admit(now_ms, route.endpoint()) {
            Err(wait_ms) => {
                self.truth.rate_limited += 1;
                let mut r = error_response(429, "rate_limited", "too many requests");
                r.headers.push((
                    "Retry-After".to_owned(),
                    wait_ms.div_ceil(1000).max(1).to_string(),
                ));
                SimOutcome::Response(r)
            }
            Ok(()) => match self.pick_fault(route.endpoint(), user.as_deref()) {
                None => SimOutcome::Response(self.process(now_ms, &route, request)),
                Some(fault) => {
                    self.truth.faults_injected += 1;
                    match fault {
                        FaultKind::Status {
                            status,
                            retry_after_s,
                        } => {
                            // A `cxone` endpoint words its refusals as CXone does (`icStatusDescription` too).
                            let mut r = match route {
                                Route::Cxone(_) => {
                                    cxone::cxone_error(status, "injected", "injected fault")
                                }
                                _ => error_response(status, "injected", "injected fault"),
                            };
                            if let Some(s) = retry_after_s {
                                r.headers.push(("Retry-After".to_owned(), s.to_string()));
                            }
                            SimOutcome::Response(r)
                        }
                        FaultKind::RateLimit { retry_after_s } => {
                            let mut r = error_response(429, "rate_limited", "injected 429");
                            r.headers
                                .push(("Retry-After".to_owned(), retry_after_s.to_string()));
                            SimOutcome::Response(r)
                        }
                        FaultKind::Slow { extra_ms } => {
                            deliver_at_ms = deliver_at_ms.saturating_add(extra_ms);
                            SimOutcome::Response(self.process(now_ms, &route, request))
                        }
                        FaultKind::Malformed => SimOutcome::Response(HttpResponse::new(
                            200,
                            vec![("Content-Type".to_owned(), "application/json".to_owned())],
                            "{\"status\": \"ACT",
                        )),
                        FaultKind::DropBefore => {
                            SimOutcome::TransportError(TransportErrorKind::Reset)
                        }
                        FaultKind::DropAfter => {
                            let _ = self.process(now_ms, &route, request);
                            SimOutcome::TransportError(TransportErrorKind::Reset)
                        }
                        FaultKind::Unauthorized => SimOutcome::Response(error_response(
                            401,
                            "invalid_token",
                            "the access token was revoked",
                        )),
                    }
                }
            },
        };
        if let SimOutcome::Response(r) = &outcome {
            *self.truth.responses_by_status.entry(r.status).or_default() += 1;
        }
        SimReply {
            deliver_at_ms,
            outcome,
        }
    }

    /// The tenant's own token bucket (the WFM host's for the schedule export): `Err(ms until a request would
    /// be admitted)` when empty.
    fn admit(&mut self, now_ms: u64, endpoint: Option<Endpoint>) -> Result<(), u64> {
        let limiter = if endpoint == Some(Endpoint::ScheduleExport) {
            &mut self.wfm_limiter
        } else {
            &mut self.limiter
        };
        limiter
            .try_acquire(now_ms)
            .map_err(|at_ms| at_ms.saturating_sub(now_ms))
    }

    /// The user a scripted fault's `user_id` is compared with: the path's user for `seed`, the plan's user id
    /// of the `agentId` or `userID` the request names for `cxone`.
    fn fault_user(&self, route: &Route, request: &HttpRequest) -> Option<String> {
        match route {
            Route::Cxone(cxone) => self.cxone_fault_user(cxone, request),
            _ => route.user().map(str::to_owned),
        }
    }

    /// The first scripted rule that matches wins; otherwise a random fault may strike an API endpoint.
    ///
    /// Random faults spare the token endpoints (and `cxone` discovery): one bad token answer fails every
    /// transition waiting for it, which would swamp a day's statistics. Script token faults explicitly.
    fn pick_fault(&mut self, endpoint: Option<Endpoint>, user: Option<&str>) -> Option<FaultKind> {
        let endpoint = endpoint?;
        if let Some(i) = self.scripted.iter().position(|r| {
            r.endpoint.is_none_or(|e| e == endpoint)
                && r.user_id.as_deref().is_none_or(|u| Some(u) == user)
        }) {
            let rule = &mut self.scripted[i];
            rule.times -= 1;
            let fault = rule.fault.clone();
            if rule.times == 0 {
                self.scripted.remove(i);
            }
            return Some(fault);
        }
        let faults = &self.config.faults;
        let spared = matches!(
            endpoint,
            Endpoint::Token | Endpoint::CxoneToken | Endpoint::Discovery
        );
        if spared || faults.kinds.is_empty() || faults.rate <= 0.0 {
            return None;
        }
        if !self.rng.chance(faults.rate) {
            return None;
        }
        let k = self.rng.below(faults.kinds.len() as u64) as usize;
        Some(self.config.faults.kinds[k].clone())
    }

    fn bearer_ok(&mut self, now_ms: u64, request: &HttpRequest) -> bool {
        let Some(token) = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        match self.tokens.get(token) {
            Some(&exp) if now_ms < exp => true,
            Some(_) => {
                self.tokens.remove(token);
                false
            }
            None => false,
        }
    }

    fn process(&mut self, now_ms: u64, route: &Route, request: &HttpRequest) -> HttpResponse {
        if let Route::Token = route {
            return self.issue_token(now_ms, request);
        }
        if let Route::NotFound = route {
            return error_response(404, "not_found", "no such endpoint");
        }
        if let Route::Cxone(cxone) = route {
            return self.process_cxone(now_ms, cxone, request);
        }
        if !self.bearer_ok(now_ms, request) {
            return error_response(401, "invalid_token", "missing, expired or revoked token");
        }
        let user = route.user().unwrap_or_default().to_owned();
        let notice = self.config.break_notice_ms;
        let Some(agent) = self.agents.get(&user) else {
            return error_response(404, "user_not_found", "no such user");
        };
        match route {
            Route::Schedule(_) => {
                let shift = agent.plan.shift_at(now_ms);
                json_response(
                    200,
                    json!({
                        "userId": user,
                        "status": if shift.is_some() { "ACTIVE" } else { "INACTIVE" },
                        "shiftStart": shift.map(|w| iso8601(w.start_ms)),
                        "shiftEnd": shift.map(|w| iso8601(w.end_ms)),
                    }),
                )
            }
            Route::BreakStatus(_) => {
                let due = agent.plan.break_due_at(now_ms, notice);
                json_response(
                    200,
                    json!({
                        "userId": user,
                        "mandatoryBreakRequired": due.is_some(),
                        "breakStart": due.map(|w| iso8601(w.start_ms)),
                        "breakEnd": due.map(|w| iso8601(w.end_ms)),
                    }),
                )
            }
            Route::SetState(_) => self.set_state(now_ms, user, request),
            Route::Token | Route::Cxone(_) | Route::NotFound => unreachable!("handled above"),
        }
    }

    fn issue_token(&mut self, now_ms: u64, request: &HttpRequest) -> HttpResponse {
        let form = parse_form(request.body.as_deref().unwrap_or_default());
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return error_response(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let id_ok = form.get("client_id") == Some(&self.config.client_id);
        let secret_ok = form.get("client_secret") == Some(&self.config.client_secret);
        if !(id_ok && secret_ok) {
            return error_response(401, "invalid_client", "client authentication failed");
        }
        let token = self.mint_access_token(now_ms);
        json_response(
            200,
            json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.config.token_ttl_s,
                "scope": GRANTED_SCOPE,
            }),
        )
    }

    /// A new access token valid for `token_ttl_s` from `now_ms` (expired ones are forgotten first), counted
    /// in the ground truth.
    fn mint_access_token(&mut self, now_ms: u64) -> String {
        self.tokens.retain(|_, &mut exp| exp > now_ms);
        let token = format!("simtok-{}", self.rng.uuid().simple());
        let ttl_ms = self.config.token_ttl_s.saturating_mul(1000);
        self.tokens
            .insert(token.clone(), now_ms.saturating_add(ttl_ms));
        self.truth.tokens_issued += 1;
        token
    }

    fn set_state(&mut self, now_ms: u64, user: String, request: &HttpRequest) -> HttpResponse {
        let key = request.header("idempotency-key").map(str::to_owned);
        if let Some(replay) = self.replay(key.as_deref()) {
            return replay;
        }
        let body = json_body(request);
        let state = body
            .as_ref()
            .and_then(|v| v.get("state"))
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        let reason = body
            .as_ref()
            .and_then(|v| v.get("reasonCode"))
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        let Some(state) = state.filter(|s| crate::state::AgentState::parse(s).is_ok()) else {
            return error_response(400, "invalid_request", "body needs a valid `state`");
        };
        let previous = self.apply_change(now_ms, &user, &state);
        self.api_change_from_seed(now_ms, &user, &state);
        let response = json_response(
            200,
            json!({
                "userId": user,
                "state": state,
                "previousState": previous,
                "reasonCode": reason,
                "updatedAt": iso8601(now_ms),
            }),
        );
        self.record_change(key, user, state, &response);
        response
    }

    /// The stored answer to a state change already made with this idempotency key, marked
    /// `Idempotent-Replayed: true`.
    fn replay(&mut self, key: Option<&str>) -> Option<HttpResponse> {
        let mut replay = self.idempotency.get(key?)?.clone();
        self.truth.idempotent_replays += 1;
        replay
            .headers
            .push(("Idempotent-Replayed".to_owned(), "true".to_owned()));
        Some(replay)
    }

    /// Applies a state change to a known agent and keeps the ground truth: READY inside a mandatory break,
    /// a change outside every shift. Returns the previous state.
    fn apply_change(&mut self, now_ms: u64, user: &str, state: &str) -> Option<String> {
        let agent = self.agents.get_mut(user).expect("checked by the caller");
        if state == crate::state::READY && agent.plan.break_due_at(now_ms, 0).is_some() {
            self.truth.ready_accepted_during_break += 1;
        }
        if agent.plan.shift_at(now_ms).is_none() {
            self.truth.accepted_while_unscheduled += 1;
        }
        let previous = agent.state.replace(state.to_owned());
        self.truth.state_changes_accepted += 1;
        previous
    }

    /// A `seed` set-state as the tenant state sees it: READY is `Available`, `UNAVAILABLE_<CODE>` the team's
    /// code of that name, anything else plain `Unavailable`.
    fn api_change_from_seed(&mut self, now_ms: u64, user: &str, state: &str) {
        let agent = self.agents.get_mut(user).expect("checked by the caller");
        let (name, code) = if state == crate::state::READY {
            (activity::CxState::Available, None)
        } else {
            let codes = cxone::team_codes(agent.identity.team_id).unwrap_or_default();
            let code = codes
                .into_iter()
                .find(|c| cxone::recorded_state(Some(c.1)) == state);
            (activity::CxState::Unavailable, code)
        };
        agent.change(now_ms, name, code, TruthSource::Api, false);
    }

    /// Remembers the answer to an applied change under its idempotency key (if any) and lists the change.
    fn record_change(
        &mut self,
        key: Option<String>,
        user: String,
        state: String,
        response: &HttpResponse,
    ) {
        let key = key.unwrap_or_default();
        if !key.is_empty() {
            if self.idempotency_order.len() >= IDEMPOTENCY_MEMORY {
                if let Some(old) = self.idempotency_order.pop_front() {
                    self.idempotency.remove(&old);
                }
            }
            self.idempotency_order.push_back(key.clone());
            self.idempotency.insert(key.clone(), response.clone());
        }
        self.accepted.push((key, user, state));
    }
}
