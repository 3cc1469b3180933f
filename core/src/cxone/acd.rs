//! The ACD side of the `cxone` profile: the agent directory, a team's unavailable codes, and the Admin API's
//! `SetAgentState`.
//!
//! Agents are addressed by their numeric [`AgentId`]. The directory (`GET …/agents`, paged) maps each to its
//! `userID` (for WFM) and `teamId` (for unavailable codes). A state change is
//! `POST {api}/inContactAPI/services/v{N}.0/agents/{agentId}/state?state=Available|Unavailable&outStateId=…`:
//! READY becomes `Available`; every other state becomes `Unavailable` with the `outStateId` of the team's
//! unavailable code that [`CxoneReasonTable`] names for it (or that the caller names). A name no code has is
//! `UNKNOWN_REASON_CODE` before anything is sent.
//!
//! Facts tagged **\[C\]** are confirmed from the sources in `cxone-api-facts.md`; **\[I\]** marks an inferred fact,
//! and each of those is configurable.

use std::str::FromStr;

use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{bearer, member_of, tenant_words};
use crate::config::Secret;
use crate::error::{ConfigError, ErrorCode, TransitionError};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::state::{AgentState, ReasonCodeTable, UserId, READY};

/// The API version every ACD endpoint uses unless configured: the portal's current prefix is v34.0 **\[C\]**;
/// using it for each endpoint is **\[I\]** (hence [`ApiVersions`]).
pub const DEFAULT_API_VERSION: u32 = 34;

/// How many agents one directory page asks for **\[I\]**: the spec types `top` as a string and publishes no
/// maximum, so a modest page keeps each answer small.
pub const DEFAULT_AGENTS_PAGE_SIZE: u64 = 100;

/// The API version (`v{N}.0`) per endpoint **\[I\]**: the SDK uses many versions side by side, so each
/// endpoint's version is configurable. Each defaults to [`DEFAULT_API_VERSION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiVersions {
    /// `GET …/agents`.
    pub agents: u32,
    /// `GET …/teams/{teamId}/unavailable-codes`.
    pub unavailable_codes: u32,
    /// `POST …/agents/{agentId}/state`.
    pub set_state: u32,
    /// `GET …/agents/states?updatedSince=` (the Real-Time Data poll).
    pub agent_states: u32,
    /// `GET …/agents/{agentId}/state-history`.
    pub state_history: u32,
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self {
            agents: DEFAULT_API_VERSION,
            unavailable_codes: DEFAULT_API_VERSION,
            set_state: DEFAULT_API_VERSION,
            agent_states: DEFAULT_API_VERSION,
            state_history: DEFAULT_API_VERSION,
        }
    }
}

/// `{api_base}/inContactAPI/services/v{version}.0`, whatever trailing slashes `api_base` has.
pub fn services_base(api_base: &str, version: u32) -> String {
    format!(
        "{}/inContactAPI/services/v{version}.0",
        api_base.trim_end_matches('/')
    )
}

/// One of the ACD calls, for messages: which call a refusal answered and what permission it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcdCall {
    /// `GET …/agents`: the agent directory.
    ListAgents,
    /// `GET …/teams/{teamId}/unavailable-codes`.
    UnavailableCodes,
    /// `POST …/agents/{agentId}/state` (the Admin API's `SetAgentState`).
    SetAgentState,
    /// `GET …/agents/states?updatedSince=`: the Real-Time Data poll.
    AgentStates,
    /// `GET …/agents/{agentId}/state-history`.
    StateHistory,
}

impl AcdCall {
    /// The call as the API documentation names it, e.g. `"SetAgentState"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListAgents => "GetAgents",
            Self::UnavailableCodes => "GetTeamUnavailableCodes",
            Self::SetAgentState => "SetAgentState",
            Self::AgentStates => "GetAgentStates",
            Self::StateHistory => "GetAgentStateHistory",
        }
    }

    /// The security-profile permission the call needs **\[I\]**: NICE publishes no mapping from API calls to
    /// permissions, so these are the permission-tab names that plausibly govern each call, for a 403 message.
    pub fn permission(self) -> &'static str {
        match self {
            Self::ListAgents => "Users > Users: View",
            Self::UnavailableCodes => "ACD > Unavailable Codes: View",
            Self::SetAgentState => "Users > Users: Edit (change another agent's state)",
            Self::AgentStates | Self::StateHistory => "Reporting > Real-Time Data: View",
        }
    }
}

/// A CXone agent id: the numeric `agentId` the Admin API addresses agents by **\[C\]**.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub u64);

impl AgentId {
    /// Reads our user id as an agent id: ASCII digits only, without leading zeros (one agent has one id).
    /// Anything else is `UNKNOWN_AGENT`, before any request is sent (no CXone agent has such an id).
    pub fn parse(user: &UserId) -> Result<Self, TransitionError> {
        let s = user.as_str();
        // Canonical digits only: `042` would name agent 42 under a second id, with a queue of its own.
        let canonical = s == "0" || !s.starts_with('0');
        (canonical && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| {
                TransitionError::new(
                    ErrorCode::UnknownAgent,
                    format!("`{s}` is not a CXone agent id (a number such as 12345, without leading zeros)"),
                )
            })
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn get_request(url: String, token: &Secret) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url,
        headers: vec![bearer(token)],
        body: None,
        timeout_ms: 0,
    }
}

/// A non-negative integer, written as a number or as a numeric string.
fn as_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

fn bad_response(call: AcdCall, what: impl std::fmt::Display) -> TransitionError {
    TransitionError::new(
        ErrorCode::BadResponse,
        format!("{} answer: {what}", call.name()),
    )
}

/// The answer's JSON object, or `None` for 204 or an empty body; a non-2xx status is its error.
fn answer_object(
    call: AcdCall,
    response: &HttpResponse,
) -> Result<Option<Map<String, Value>>, TransitionError> {
    if !(200..300).contains(&response.status) {
        return Err(status_error(call, response));
    }
    if response.status == 204 || response.body.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(&response.body) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => Err(bad_response(call, "the body is not a JSON object")),
        Err(e) => Err(bad_response(
            call,
            format_args!("the body is not JSON: {e}"),
        )),
    }
}

/// The objects of the first array member of `names` present (none when absent).
fn entries<'a>(
    call: AcdCall,
    object: &'a Map<String, Value>,
    names: &[&str],
) -> Result<Vec<&'a Map<String, Value>>, TransitionError> {
    let Some(list) = names.iter().find_map(|n| member_of(object, n)) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| bad_response(call, format_args!("`{}` is not an array", names[0])))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_object()
                .ok_or_else(|| bad_response(call, format_args!("entry {i} is not an object")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The agent directory

/// `GET {services}/agents?skip={skip}&top={top}`: one page of the agent directory, with the bearer token.
/// `skip` and `top` are the spec's paging parameters **[C: SPEC-G]**.
pub fn agents_request(
    api_base: &str,
    versions: &ApiVersions,
    token: &Secret,
    skip: u64,
    top: u64,
) -> HttpRequest {
    get_request(
        format!(
            "{}/agents?skip={skip}&top={top}",
            services_base(api_base, versions.agents)
        ),
        token,
    )
}

/// One agent of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryAgent {
    /// `agentId`.
    pub agent_id: AgentId,
    /// `userID`: the user's UUID, which the WFM export is keyed by.
    pub user_id: String,
    /// `teamId`: whose unavailable codes apply to the agent.
    pub team_id: u64,
    /// `isActive`, when the answer says.
    pub active: Option<bool>,
}

/// One page of the agent directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentsPage {
    /// The agents on this page.
    pub agents: Vec<DirectoryAgent>,
    /// `totalRecords`, when the answer says.
    pub total_records: Option<u64>,
    /// Whether another page follows: `_links.next` is set, or `totalRecords` counts past this page. An empty
    /// page never has a next one (so paging always ends).
    pub more: bool,
}

/// Reads a directory answer to [`agents_request`] with this `skip`. 204 is an empty last page **[C: SPEC-G]**.
/// Field names match ignoring case; an agent without `agentId`, `userID` or `teamId` is `BAD_RESPONSE`.
pub fn parse_agents_page(
    response: &HttpResponse,
    skip: u64,
) -> Result<AgentsPage, TransitionError> {
    let call = AcdCall::ListAgents;
    let Some(object) = answer_object(call, response)? else {
        return Ok(AgentsPage {
            agents: Vec::new(),
            total_records: None,
            more: false,
        });
    };
    let agents = entries(call, &object, &["agents"])?
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let missing =
                |field: &str| bad_response(call, format_args!("agent {i} has no {field}"));
            Ok(DirectoryAgent {
                agent_id: member_of(a, "agentId")
                    .and_then(as_u64)
                    .map(AgentId)
                    .ok_or_else(|| missing("numeric `agentId`"))?,
                user_id: member_of(a, "userID")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("`userID`"))?
                    .to_owned(),
                team_id: member_of(a, "teamId")
                    .and_then(as_u64)
                    .ok_or_else(|| missing("numeric `teamId`"))?,
                active: member_of(a, "isActive").and_then(Value::as_bool),
            })
        })
        .collect::<Result<Vec<_>, TransitionError>>()?;
    let total_records = member_of(&object, "totalRecords").and_then(as_u64);
    let next_link = member_of(&object, "_links")
        .and_then(Value::as_object)
        .and_then(|links| member_of(links, "next"))
        .and_then(Value::as_str)
        .is_some_and(|next| !next.trim().is_empty());
    let counted_past = total_records.is_some_and(|total| skip + (agents.len() as u64) < total);
    Ok(AgentsPage {
        more: !agents.is_empty() && (next_link || counted_past),
        agents,
        total_records,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Unavailable codes

/// `GET {services}/teams/{teamId}/unavailable-codes?activeOnly=true` **[C: SPEC-C/SPEC-G]**, with the bearer
/// token.
pub fn unavailable_codes_request(
    api_base: &str,
    versions: &ApiVersions,
    team_id: u64,
    token: &Secret,
) -> HttpRequest {
    get_request(
        format!(
            "{}/teams/{team_id}/unavailable-codes?activeOnly=true",
            services_base(api_base, versions.unavailable_codes)
        ),
        token,
    )
}

/// One of a team's unavailable codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnavailableCode {
    /// `outstateId`: what `SetAgentState` takes as `outStateId`.
    pub out_state_id: u64,
    /// `outstateName`, e.g. `"Break"`.
    pub name: String,
    /// `isActive` (true when the answer omits it: the request asks for active codes only).
    pub active: bool,
    /// `isAcw`: an after-call-work code, which cannot be set outside a contact **\[C\]**.
    pub acw: bool,
}

/// Reads an answer to [`unavailable_codes_request`]: `unavailableCodes[]` (or the old `unavailableList[]`),
/// fields matched ignoring case (`outstateId`/`OutStateId`, `outstateName`/`outStateName`, `isAcw`/`isACW`).
/// 204 means the team has none **\[C\]**. `agentTimeoutMins` (a string in the spec) is not needed and ignored.
pub fn parse_unavailable_codes(
    response: &HttpResponse,
) -> Result<Vec<UnavailableCode>, TransitionError> {
    let call = AcdCall::UnavailableCodes;
    let Some(object) = answer_object(call, response)? else {
        return Ok(Vec::new());
    };
    entries(call, &object, &["unavailableCodes", "unavailableList"])?
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let missing = |field: &str| bad_response(call, format_args!("code {i} has no {field}"));
            let flag = |name: &str, default: bool| {
                member_of(c, name)
                    .and_then(Value::as_bool)
                    .unwrap_or(default)
            };
            Ok(UnavailableCode {
                out_state_id: member_of(c, "outstateId")
                    .and_then(as_u64)
                    .ok_or_else(|| missing("numeric `outstateId`"))?,
                name: member_of(c, "outstateName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing("`outstateName`"))?
                    .to_owned(),
                active: flag("isActive", true),
                acw: flag("isAcw", false),
            })
        })
        .collect()
}

/// A code name reduced for comparison ([`normalize_name`](super::normalize_name)): `SYSTEM_IDLE`,
/// `system-idle` and `System Idle` compare equal.
pub fn normalize_code_name(name: &str) -> String {
    super::normalize_name(name)
}

/// The code called `name` ([`normalize_code_name`] on both sides). Of several, an active non-ACW code is
/// preferred, then an active one, then the first.
pub fn find_code<'a>(codes: &'a [UnavailableCode], name: &str) -> Option<&'a UnavailableCode> {
    let wanted = normalize_code_name(name);
    codes
        .iter()
        .filter(|c| normalize_code_name(&c.name) == wanted)
        .min_by_key(|c| (!c.active, c.acw))
}

// ---------------------------------------------------------------------------------------------------------
// Reason codes → unavailable codes

/// Which unavailable code (by name) each of our states is set with **\[I\]**, configurable through the
/// `CXONE_REASON_CODES` setting ([`CxoneReasonTable::parse`]).
///
/// READY is always `Available` and has no entry. The defaults are the `seed` profile's reason codes:
/// NOT_READY → `BREAK`, PAUSED → `ADHOC`, IDLE → `SYSTEM_IDLE`, any other state → `GENERAL`. Names match a
/// team's codes loosely ([`normalize_code_name`]), so `BREAK` finds a code called "Break"; a tenant without
/// such codes names its own.
///
/// It is a [`ReasonCodeTable`] whose codes are unavailable-code names (and which has no READY entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CxoneReasonTable(pub ReasonCodeTable);

impl Default for CxoneReasonTable {
    fn default() -> Self {
        let mut table = ReasonCodeTable::default();
        table.codes.remove(READY);
        Self(table)
    }
}

impl CxoneReasonTable {
    /// The defaults with the entries of `spec` on top: `STATE=Code name` pairs separated by commas, e.g.
    /// `NOT_READY=Break,PAUSED=Meeting`; the key `*` sets the fallback. An empty `spec` keeps the defaults.
    /// A malformed entry, READY, or a state named twice is `INVALID_CONFIG`, naming the entry.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let mut table = Self::default();
        let mut seen = Vec::new();
        for entry in spec.split(',').filter(|e| !e.trim().is_empty()) {
            let bad = |why: &str| ConfigError::Invalid {
                field: "CXONE_REASON_CODES",
                reason: format!("entry `{}`: {why}", entry.trim()),
            };
            let (state, code) = entry
                .split_once('=')
                .ok_or_else(|| bad("expected STATE=code name"))?;
            let (state, code) = (state.trim(), code.trim());
            if code.is_empty() {
                return Err(bad("the code name is empty"));
            }
            if seen.contains(&state) {
                return Err(bad("the state is named twice"));
            }
            seen.push(state);
            if state == "*" {
                code.clone_into(&mut table.0.fallback);
                continue;
            }
            let state = AgentState::parse(state).map_err(|e| bad(&e.message))?;
            if state.is_ready() {
                return Err(bad("READY is always Available and takes no code"));
            }
            table.0.codes.insert(state.into(), code.to_owned());
        }
        Ok(table)
    }

    /// The unavailable-code name to set `state` with: `None` for READY (`Available`, whatever the reason);
    /// otherwise the caller's `explicit_reason` if given, else the table's entry or fallback.
    pub fn code_name_for(
        &self,
        state: &AgentState,
        explicit_reason: Option<&str>,
    ) -> Option<String> {
        if state.is_ready() {
            return None;
        }
        Some(
            explicit_reason
                .unwrap_or_else(|| self.0.reason_for(state))
                .to_owned(),
        )
    }

    /// What `SetAgentState` is asked for `state`, given the agent's team's `codes`. A code name no code has
    /// is `UNKNOWN_REASON_CODE`, decided before anything is sent.
    pub fn target_for(
        &self,
        state: &AgentState,
        explicit_reason: Option<&str>,
        codes: &[UnavailableCode],
    ) -> Result<CxoneState, TransitionError> {
        let Some(name) = self.code_name_for(state, explicit_reason) else {
            return Ok(CxoneState::Available);
        };
        find_code(codes, &name)
            .map(|c| CxoneState::Unavailable {
                out_state_id: c.out_state_id,
            })
            .ok_or_else(|| {
                TransitionError::new(
                    ErrorCode::UnknownReasonCode,
                    format!("{state} needs the unavailable code `{name}`, which the agent's team does not have"),
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------------------
// SetAgentState

/// How `SetAgentState` carries its parameters. The spec has query parameters **[C: SPEC-C/SPEC-G]**; a test
/// suite sends a JSON body and gets 200 **[C: QA]**. Which one a tenant prefers is **\[I\]**, hence the choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SetStateEncoding {
    /// `?state=…&outStateId=…`, no body.
    #[default]
    Query,
    /// A JSON body `{"state":…,"outStateId":…}`.
    Json,
}

impl FromStr for SetStateEncoding {
    type Err = ConfigError;
    /// `query` or `json`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "query" => Ok(Self::Query),
            "json" => Ok(Self::Json),
            _ => Err(ConfigError::Invalid {
                field: "set-state encoding",
                reason: format!("`{s}` is neither `query` nor `json`"),
            }),
        }
    }
}

/// The state `SetAgentState` sets: only these two can be set; the platform owns every other state **\[C\]**.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CxoneState {
    /// `Available`.
    Available,
    /// `Unavailable` with an unavailable code's `outStateId`.
    Unavailable {
        /// The code's `outstateId`.
        out_state_id: u64,
    },
}

impl CxoneState {
    /// `"Available"` or `"Unavailable"`, as the API spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "Available",
            Self::Unavailable { .. } => "Unavailable",
        }
    }

    fn out_state_id(self) -> Option<u64> {
        match self {
            Self::Available => None,
            Self::Unavailable { out_state_id } => Some(out_state_id),
        }
    }
}

/// `POST {services}/agents/{agentId}/state` setting `target`, with the bearer token and an `Idempotency-Key`
/// (harmless to CXone; the simulated tenant dedupes on it). With [`SetStateEncoding::Query`]:
/// `?state=Unavailable&outStateId=5` and no body; with [`SetStateEncoding::Json`]: the body
/// `{"state":"Unavailable","outStateId":5}` as `application/json`.
pub fn set_state_request(
    api_base: &str,
    versions: &ApiVersions,
    agent_id: AgentId,
    target: CxoneState,
    token: &Secret,
    encoding: SetStateEncoding,
    idempotency_key: &str,
) -> HttpRequest {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        out_state_id: Option<u64>,
    }
    let mut url = format!(
        "{}/agents/{agent_id}/state",
        services_base(api_base, versions.set_state)
    );
    let mut headers = vec![
        bearer(token),
        ("Idempotency-Key".to_owned(), idempotency_key.to_owned()),
    ];
    let body = match encoding {
        SetStateEncoding::Query => {
            url.push_str("?state=");
            url.push_str(target.as_str());
            if let Some(id) = target.out_state_id() {
                url.push_str(&format!("&outStateId={id}"));
            }
            None
        }
        SetStateEncoding::Json => {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            let body = Body {
                state: target.as_str(),
                out_state_id: target.out_state_id(),
            };
            Some(serde_json::to_string(&body).expect("plain fields serialize"))
        }
    };
    HttpRequest {
        method: Method::Post,
        url,
        headers,
        body,
        timeout_ms: 0,
    }
}

/// Checks an answer to [`set_state_request`]: a 2xx with an empty or JSON body is success (200 is what the
/// API answers **\[C\]**; 202 and 204 are accepted too). A 2xx whose body is neither is `BAD_RESPONSE`: it
/// does not read as the API's answer (a proxy's page, a cut body), so it confirms nothing. Anything else is
/// its error, as [`refusal`] or the retried statuses code it.
pub fn check_set_state(response: &HttpResponse) -> Result<(), TransitionError> {
    if !(200..300).contains(&response.status) {
        return Err(status_error(AcdCall::SetAgentState, response));
    }
    let body = response.body.trim();
    if body.is_empty() || serde_json::from_str::<Value>(body).is_ok() {
        Ok(())
    } else {
        Err(bad_response(
            AcdCall::SetAgentState,
            format_args!("status {} with a body that is not JSON", response.status),
        ))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Refusals

/// A definite refusal of `call`, which retrying will not change, with the tenant's words appended:
///
/// - 400 → `BAD_REQUEST`;
/// - 403 → `FORBIDDEN`, naming the call and the permission ([`AcdCall::permission`], **\[I\]**) the access
///   key's security profile lacks;
/// - 404 → `UNKNOWN_AGENT` (for the codes call: the agent's team is unknown);
/// - 409 → `STATE_CONFLICT`: the agent cannot be set now, e.g. not logged in **\[I\]**;
/// - another 4xx → `REJECTED`.
///
/// `None` for 2xx, for what the engine retries (408, 429, 5xx) and for 401 (the token machine's).
pub fn refusal(call: AcdCall, response: &HttpResponse) -> Option<TransitionError> {
    let name = call.name();
    let status = response.status;
    let (code, what) = match status {
        400 => (
            ErrorCode::BadRequest,
            format!("{name} was refused as malformed"),
        ),
        403 => (
            ErrorCode::Forbidden,
            format!(
                "{name} is forbidden: the access key's security profile lacks the permission `{}`",
                call.permission()
            ),
        ),
        404 => (
            ErrorCode::UnknownAgent,
            match call {
                AcdCall::UnavailableCodes => format!("{name}: the agent's team was not found"),
                _ => format!("{name}: the agent was not found"),
            },
        ),
        409 => (
            ErrorCode::StateConflict,
            format!("{name}: the agent cannot be set now (for example, not logged in)"),
        ),
        401 | 408 | 429 => return None,
        _ if (400..500).contains(&status) => (ErrorCode::Rejected, format!("{name} was refused")),
        _ => return None,
    };
    let message = match tenant_words(response) {
        Some(words) => format!("{what} ({status}; the tenant says: {words})"),
        None => format!("{what} ({status})"),
    };
    Some(TransitionError::new(code, message))
}

/// The error a non-2xx answer stands for, when a parser is handed one: a [`refusal`], else the code the
/// engine would give once its retries are spent.
fn status_error(call: AcdCall, response: &HttpResponse) -> TransitionError {
    refusal(call, response).unwrap_or_else(|| {
        let code = match response.status {
            401 => ErrorCode::Unauthorized,
            429 => ErrorCode::RateLimited,
            _ => ErrorCode::UpstreamUnavailable,
        };
        TransitionError::new(
            code,
            format!("{} answered {}", call.name(), response.status),
        )
    })
}

// ---------------------------------------------------------------------------------------------------------
// Observing states changed elsewhere (§4)

/// How many agents one page of the Real-Time Data poll asks for **\[I\]**.
pub const DEFAULT_AGENT_STATES_PAGE_SIZE: u64 = 100;

/// `GET {services}/agents/states?updatedSince={ISO}&top={top}` **[C: SPEC-G]**: the agents whose state changed
/// since the previous poll's `lastPollTime` (every agent when `updated_since` is `None`).
pub fn agent_states_request(
    api_base: &str,
    versions: &ApiVersions,
    token: &Secret,
    updated_since: Option<&str>,
    top: u64,
) -> HttpRequest {
    let mut url = format!(
        "{}/agents/states?top={top}",
        services_base(api_base, versions.agent_states)
    );
    if let Some(since) = updated_since {
        url.push_str("&updatedSince=");
        url.extend(utf8_percent_encode(since, QUERY_VALUE));
    }
    get_request(url, token)
}

/// The next page of a poll: the `_links.next` URL the tenant gave, with the bearer token.
pub fn agent_states_next_request(next_url: &str, token: &Secret) -> HttpRequest {
    get_request(next_url.to_owned(), token)
}

/// Characters escaped in a query value (`+` and `:` too: a time zone offset must survive).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One agent's state as the Real-Time Data API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedAgentState {
    /// `agentId`.
    pub agent_id: AgentId,
    /// `agentStateName`, e.g. `"Available"`, `"InboundContact"`, `"LoggedOut"` (§7).
    pub state_name: String,
    /// `agentStateId` (§7), when given.
    pub state_id: Option<u64>,
    /// `outStateId` (0 and absent both mean none).
    pub out_state_id: Option<u64>,
    /// `outStateDescription`: the unavailable code's name (empty means none).
    pub code: Option<String>,
    /// `lastUpdateTime` (else `startDate`) as the tenant wrote it.
    pub updated_at: String,
    /// `lastUpdateTime` read as Unix ms on the tenant's clock.
    pub updated_at_ms: u64,
    /// `sessionStartTime`, when given: a new session is a change even in the same state.
    pub session_start: Option<String>,
}

/// One page of the Real-Time Data poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatesPage {
    /// `lastPollTime`: the next poll's `updatedSince`.
    pub last_poll_time: Option<String>,
    /// The agents on this page.
    pub states: Vec<ObservedAgentState>,
    /// `_links.next`, when another page follows.
    pub next: Option<String>,
}

/// Reads an answer to [`agent_states_request`]. Field names match ignoring case; 204 is an empty page. An
/// entry without a numeric `agentId`, a state name or a readable `lastUpdateTime` is `BAD_RESPONSE`.
pub fn parse_agent_states(response: &HttpResponse) -> Result<AgentStatesPage, TransitionError> {
    let call = AcdCall::AgentStates;
    let Some(object) = answer_object(call, response)? else {
        return Ok(AgentStatesPage {
            last_poll_time: None,
            states: Vec::new(),
            next: None,
        });
    };
    let states = entries(call, &object, &["agentStates"])?
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let missing =
                |field: &str| bad_response(call, format_args!("agent state {i} has no {field}"));
            let text = |name: &str| {
                member_of(a, name)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let updated_at = text("lastUpdateTime")
                .or_else(|| text("startDate"))
                .ok_or_else(|| missing("`lastUpdateTime`"))?;
            let updated_at_ms = crate::time::parse_iso8601(&updated_at)
                .ok_or_else(|| missing("readable `lastUpdateTime`"))?;
            Ok(ObservedAgentState {
                agent_id: member_of(a, "agentId")
                    .and_then(as_u64)
                    .map(AgentId)
                    .ok_or_else(|| missing("numeric `agentId`"))?,
                state_name: text("agentStateName").ok_or_else(|| missing("`agentStateName`"))?,
                state_id: member_of(a, "agentStateId").and_then(as_u64),
                out_state_id: member_of(a, "outStateId")
                    .and_then(as_u64)
                    .filter(|id| *id != 0),
                code: text("outStateDescription"),
                updated_at,
                updated_at_ms,
                session_start: text("sessionStartTime"),
            })
        })
        .collect::<Result<Vec<_>, TransitionError>>()?;
    let next = member_of(&object, "_links")
        .and_then(Value::as_object)
        .and_then(|links| member_of(links, "next"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|next| !next.is_empty())
        .map(str::to_owned);
    Ok(AgentStatesPage {
        last_poll_time: member_of(&object, "lastPollTime")
            .and_then(Value::as_str)
            .map(str::to_owned),
        // An empty page never has a next one, so paging always ends.
        next: next.filter(|_| !states.is_empty()),
        states,
    })
}

/// `GET {services}/agents/{agentId}/state-history?startDate={ISO}&endDate={ISO}` **[C: SPEC-C]**.
pub fn state_history_request(
    api_base: &str,
    versions: &ApiVersions,
    token: &Secret,
    agent: AgentId,
    start: &str,
    end: &str,
) -> HttpRequest {
    let mut url = format!(
        "{}/agents/{}/state-history?startDate=",
        services_base(api_base, versions.state_history),
        agent.0
    );
    url.extend(utf8_percent_encode(start, QUERY_VALUE));
    url.push_str("&endDate=");
    url.extend(utf8_percent_encode(end, QUERY_VALUE));
    get_request(url, token)
}

/// One stretch of an agent's state history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryStretch {
    /// `startDate`, Unix ms on the tenant's clock.
    pub start_ms: u64,
    /// `agentStateName`.
    pub state_name: String,
    /// `outStateId` (0 and absent both mean none).
    pub out_state_id: Option<u64>,
}

/// Reads an answer to [`state_history_request`]: `agentStateHistory[]`; 204 is none.
pub fn parse_state_history(
    response: &HttpResponse,
) -> Result<Vec<HistoryStretch>, TransitionError> {
    let call = AcdCall::StateHistory;
    let Some(object) = answer_object(call, response)? else {
        return Ok(Vec::new());
    };
    entries(call, &object, &["agentStateHistory"])?
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let missing =
                |field: &str| bad_response(call, format_args!("stretch {i} has no {field}"));
            Ok(HistoryStretch {
                start_ms: member_of(a, "startDate")
                    .and_then(Value::as_str)
                    .and_then(crate::time::parse_iso8601)
                    .ok_or_else(|| missing("readable `startDate`"))?,
                state_name: member_of(a, "agentStateName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("`agentStateName`"))?
                    .to_owned(),
                out_state_id: member_of(a, "outStateId")
                    .and_then(as_u64)
                    .filter(|id| *id != 0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "https://api-c47.nice-incontact.com/";

    fn token() -> Secret {
        Secret::new("tok-1")
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(status, vec![], body)
    }

    fn state(name: &str) -> AgentState {
        AgentState::parse(name).unwrap()
    }

    /// Agent 42's state change with the idempotency key `k-1`.
    fn set_state(v: &ApiVersions, target: CxoneState, encoding: SetStateEncoding) -> HttpRequest {
        set_state_request(API, v, AgentId(42), target, &token(), encoding, "k-1")
    }

    fn code(id: u64, name: &str, active: bool, acw: bool) -> UnavailableCode {
        UnavailableCode {
            out_state_id: id,
            name: name.to_owned(),
            active,
            acw,
        }
    }

    #[test]
    fn services_base_and_versions() {
        assert_eq!(
            services_base("https://x.example//", 12),
            "https://x.example/inContactAPI/services/v12.0"
        );
        let v = ApiVersions {
            agents: 30,
            ..ApiVersions::default()
        };
        assert_eq!(v.set_state, 34);
        let r = agents_request(API, &v, &token(), 200, 100);
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "https://api-c47.nice-incontact.com/inContactAPI/services/v30.0/agents?skip=200&top=100"
        );
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
        let c = unavailable_codes_request(API, &ApiVersions::default(), 77, &token());
        assert_eq!(
            c.url,
            "https://api-c47.nice-incontact.com/inContactAPI/services/v34.0/teams/77/unavailable-codes?activeOnly=true"
        );
        assert_eq!(c.body, None);
    }

    #[test]
    fn agent_ids_are_numeric() {
        let id = |s: &str| AgentId::parse(&UserId::parse(s).unwrap());
        assert_eq!(id("12345").unwrap(), AgentId(12345));
        for bad in ["agent-7", "+5", " 5", "1.0", "99999999999999999999999"] {
            let e = id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnknownAgent, "{bad}");
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }

    #[test]
    fn directory_pages() {
        let first = parse_agents_page(
            &resp(
                200,
                r#"{"totalRecords":3,"agents":[
                    {"agentId":11,"userID":"u-11","teamId":5,"isActive":true},
                    {"AgentID":"12","userId":"u-12","TEAMID":6}],
                  "_links":{"self":"…","next":null}}"#,
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            first.agents[1],
            DirectoryAgent {
                agent_id: AgentId(12),
                user_id: "u-12".into(),
                team_id: 6,
                active: None
            }
        );
        assert_eq!(first.agents[0].active, Some(true));
        assert_eq!(first.total_records, Some(3));
        assert!(first.more, "2 of 3 read");
        let last = parse_agents_page(
            &resp(
                200,
                r#"{"totalRecords":3,"agents":[{"agentId":13,"userID":"u","teamId":5}]}"#,
            ),
            2,
        )
        .unwrap();
        assert!(!last.more);
        let linked = parse_agents_page(
            &resp(200, r#"{"agents":[{"agentId":1,"userID":"u","teamId":5}],"_links":{"next":"https://x/agents?skip=1"}}"#),
            0,
        )
        .unwrap();
        assert!(linked.more);
        let empty = parse_agents_page(&resp(200, r#"{"totalRecords":9,"agents":[]}"#), 0).unwrap();
        assert!(!empty.more, "an empty page ends paging");
        assert_eq!(parse_agents_page(&resp(204, ""), 0).unwrap().agents, vec![]);
        let e = parse_agents_page(&resp(200, r#"{"agents":[{"agentId":1,"userID":"u"}]}"#), 0)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadResponse);
        assert!(e.message.contains("teamId"), "{}", e.message);
    }

    #[test]
    fn codes_with_mixed_case_fields() {
        let codes = parse_unavailable_codes(&resp(
            200,
            r#"{"teamId":5,"unavailableCodes":[
                {"outstateId":5,"outstateName":"Break","isActive":true,"isAcw":false,"agentTimeoutMins":"15"},
                {"OutStateId":"6","outStateName":"Wrap","ISACTIVE":false,"isACW":true},
                {"outStateId":7,"OUTSTATENAME":"Lunch"}]}"#,
        ))
        .unwrap();
        assert_eq!(
            codes,
            vec![
                code(5, "Break", true, false),
                code(6, "Wrap", false, true),
                code(7, "Lunch", true, false)
            ]
        );
        let old = parse_unavailable_codes(&resp(
            200,
            r#"{"unavailableList":[{"OutStateId":3,"OutStateName":"Meeting"}]}"#,
        ))
        .unwrap();
        assert_eq!(old, vec![code(3, "Meeting", true, false)]);
    }

    #[test]
    fn no_content_means_no_codes() {
        assert_eq!(parse_unavailable_codes(&resp(204, "")).unwrap(), vec![]);
    }

    #[test]
    fn code_names_match_loosely() {
        assert_eq!(normalize_code_name("  SYSTEM__IDLE "), "system idle");
        let codes = [
            code(1, "System Idle", false, false),
            code(2, "System-Idle", true, true),
            code(3, "system idle", true, false),
            code(4, "Break", true, false),
        ];
        for name in ["SYSTEM_IDLE", "system-idle", "System Idle"] {
            assert_eq!(
                find_code(&codes, name).map(|c| c.out_state_id),
                Some(3),
                "{name}"
            );
        }
        // Without an active non-ACW one, an active code beats an inactive one.
        assert_eq!(
            find_code(&codes[..2], "system idle").unwrap().out_state_id,
            2
        );
        assert_eq!(find_code(&codes, "Lunch"), None);
    }

    #[test]
    fn reasons_map_to_codes() {
        let t = CxoneReasonTable::default();
        assert_eq!(t.code_name_for(&state("READY"), Some("Break")), None);
        assert_eq!(
            t.code_name_for(&state("NOT_READY"), None).as_deref(),
            Some("BREAK")
        );
        assert_eq!(
            t.code_name_for(&state("IDLE"), None).as_deref(),
            Some("SYSTEM_IDLE")
        );
        assert_eq!(
            t.code_name_for(&state("TRAINING"), None).as_deref(),
            Some("GENERAL")
        );
        assert_eq!(
            t.code_name_for(&state("NOT_READY"), Some("Lunch"))
                .as_deref(),
            Some("Lunch")
        );
        let codes = [
            code(5, "Break", true, false),
            code(9, "System Idle", true, false),
        ];
        assert_eq!(
            t.target_for(&state("READY"), None, &[]),
            Ok(CxoneState::Available)
        );
        assert_eq!(
            t.target_for(&state("IDLE"), None, &codes),
            Ok(CxoneState::Unavailable { out_state_id: 9 })
        );
        let e = t.target_for(&state("PAUSED"), None, &codes).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownReasonCode);
        assert!(e.message.contains("ADHOC"), "{}", e.message);
    }

    #[test]
    fn reason_table_parses() {
        let t =
            CxoneReasonTable::parse(" NOT_READY = Coffee Break ,PAUSED=Meeting,*=Other,").unwrap();
        assert_eq!(t.0.codes["NOT_READY"], "Coffee Break");
        assert_eq!(t.0.codes["PAUSED"], "Meeting");
        assert_eq!(t.0.codes["IDLE"], "SYSTEM_IDLE", "defaults stay");
        assert_eq!(t.0.fallback, "Other");
        assert_eq!(
            CxoneReasonTable::parse("").unwrap(),
            CxoneReasonTable::default()
        );
        for (spec, entry) in [
            ("NOT_READY=Break,PAUSED", "`PAUSED`"),
            ("paused=Meeting", "`paused=Meeting`"),
            ("READY=Go", "`READY=Go`"),
            ("IDLE=", "`IDLE=`"),
            ("IDLE=a,IDLE=b", "`IDLE=b`"),
        ] {
            let e = CxoneReasonTable::parse(spec).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidConfig);
            assert!(e.to_string().contains(entry), "{spec}: {e}");
        }
    }

    #[test]
    fn set_state_in_the_query() {
        assert_eq!("JSON".parse(), Ok(SetStateEncoding::Json));
        assert_eq!(" query".parse(), Ok(SetStateEncoding::Query));
        assert!("form".parse::<SetStateEncoding>().is_err());
        let v = ApiVersions::default();
        let unavailable = CxoneState::Unavailable { out_state_id: 5 };
        let r = set_state(&v, unavailable, SetStateEncoding::default());
        assert_eq!(r.method, Method::Post);
        assert_eq!(
            r.url,
            "https://api-c47.nice-incontact.com/inContactAPI/services/v34.0/agents/42/state?state=Unavailable&outStateId=5"
        );
        assert_eq!(r.body, None);
        assert_eq!(r.header("content-type"), None);
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(r.header("idempotency-key"), Some("k-1"));
        let a = set_state(&v, CxoneState::Available, SetStateEncoding::Query);
        assert!(
            a.url.ends_with("/agents/42/state?state=Available"),
            "{}",
            a.url
        );
    }

    #[test]
    fn set_state_in_a_json_body() {
        let v = ApiVersions {
            set_state: 12,
            ..ApiVersions::default()
        };
        let unavailable = CxoneState::Unavailable { out_state_id: 5 };
        let r = set_state(&v, unavailable, SetStateEncoding::Json);
        assert_eq!(
            r.url,
            "https://api-c47.nice-incontact.com/inContactAPI/services/v12.0/agents/42/state"
        );
        assert_eq!(
            r.body.as_deref(),
            Some(r#"{"state":"Unavailable","outStateId":5}"#)
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("idempotency-key"), Some("k-1"));
        let a = set_state(&v, CxoneState::Available, SetStateEncoding::Json);
        assert_eq!(a.body.as_deref(), Some(r#"{"state":"Available"}"#));
    }

    #[test]
    fn refusals_keep_the_tenants_words() {
        let described = |status| {
            HttpResponse::new(
                status,
                vec![("ICSTATUSDESCRIPTION".into(), "Invalid agent.".into())],
                "",
            )
        };
        let body = |status| {
            resp(
                status,
                r#"{"error":"forbidden","error_description":"Missing permission"}"#,
            )
        };
        let call = AcdCall::SetAgentState;
        for (status, code) in [
            (400, ErrorCode::BadRequest),
            (403, ErrorCode::Forbidden),
            (404, ErrorCode::UnknownAgent),
            (409, ErrorCode::StateConflict),
        ] {
            let e = refusal(call, &described(status)).unwrap();
            assert_eq!(e.code, code);
            assert!(e.message.contains("Invalid agent."), "{}", e.message);
            assert!(e.message.contains("SetAgentState"), "{}", e.message);
            let e = refusal(call, &body(status)).unwrap();
            assert!(
                e.message.contains("Missing permission; forbidden"),
                "{}",
                e.message
            );
        }
        let forbidden = refusal(AcdCall::UnavailableCodes, &body(403)).unwrap();
        assert!(
            forbidden.message.contains("Unavailable Codes: View"),
            "{}",
            forbidden.message
        );
        let conflict = refusal(call, &resp(409, "")).unwrap();
        assert!(
            conflict.message.contains("not logged in"),
            "{}",
            conflict.message
        );
        assert_eq!(
            refusal(call, &resp(405, "")).unwrap().code,
            ErrorCode::Rejected
        );
        assert_eq!(
            check_set_state(&described(404)).unwrap_err().code,
            ErrorCode::UnknownAgent
        );
    }

    #[test]
    fn retried_statuses_are_not_refusals() {
        for status in [200, 202, 401, 408, 429, 500, 503] {
            assert_eq!(
                refusal(AcdCall::SetAgentState, &resp(status, "")),
                None,
                "{status}"
            );
        }
        assert_eq!(check_set_state(&resp(200, "")), Ok(()));
        assert_eq!(check_set_state(&resp(202, "")), Ok(()));
        assert_eq!(check_set_state(&resp(200, r#"{"ok":true}"#)), Ok(()));
        // A 2xx that is not the API's answer confirms nothing.
        assert_eq!(
            check_set_state(&resp(200, "{\"status\": \"ACT"))
                .unwrap_err()
                .code,
            ErrorCode::BadResponse
        );
        assert_eq!(
            check_set_state(&resp(503, "")).unwrap_err().code,
            ErrorCode::UpstreamUnavailable
        );
        assert_eq!(
            parse_unavailable_codes(&resp(429, "")).unwrap_err().code,
            ErrorCode::RateLimited
        );
    }

    #[test]
    fn malformed_answers_are_bad_responses() {
        for body in [
            "{\"agents\":[",
            "[1]",
            r#"{"agents":{}}"#,
            r#"{"agents":[7]}"#,
        ] {
            let e = parse_agents_page(&resp(200, body), 0).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadResponse, "{body}");
        }
        let e = parse_unavailable_codes(&resp(
            200,
            r#"{"unavailableCodes":[{"outstateId":"x","outstateName":"B"}]}"#,
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadResponse);
        assert!(e.message.contains("outstateId"), "{}", e.message);
    }
}
