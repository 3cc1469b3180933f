//! The `cxone` profile's endpoints: the real NICE CXone API, as `cxone-api-facts.md` §1, 2A, 3, 5 and 6
//! describe it, served beside the `seed` endpoints by the same tenant.
//!
//! | Method | Path | Auth | Answer |
//! |---|---|---|---|
//! | GET | `/.well-known/openid-configuration` | none | `issuer`, `token_endpoint`, … of the request's origin |
//! | GET | `/.well-known/cxone-configuration?tenantId=` | none | `api_endpoint` (the origin), `area`, `uhDomain`; 404 for another tenant |
//! | POST | `/auth/token` | Basic or form client | password and refresh grants; 400 `{error, error_description}` |
//! | GET | `/inContactAPI/services/v{N}.0/agents?skip&top` | Bearer | a page of the directory; 204 past the end |
//! | GET | `…/teams/{teamId}/unavailable-codes?activeOnly=true` | Bearer | team A (spec casing), B (SDK casing), C → 204 |
//! | POST | `…/agents/{agentId}/state` | Bearer | query or JSON `state`/`outStateId`; 200, 400, 404, 409 (also while `LoggedOut`) |
//! | GET | `…/agents/states?updatedSince&top&skip` | Bearer | §4's list: agents with `lastUpdateTime >= updatedSince` by `agentId`; 400 for a bad date |
//! | GET | `…/agents/{agentId}/state-history?startDate&endDate` | Bearer | `agentStateHistory`: the truth timeline's stretches meeting the range; 400, 404 |
//! | POST | `/schedules/export` (any host) | Bearer | `{startDate, endDate, userID}` → shifts with Break/Lunch intervals |
//!
//! The tenant is sans-IO and sees whole URLs, so every base it announces is the **origin of the request**
//! (`scheme://authority`): `issuer`, `token_endpoint` and `api_endpoint`. The WFM base a client derives,
//! `https://{area}.{uhDomain}`, is `https://`[`CXONE_AREA`]`.`[`CXONE_UH_DOMAIN`]; the export is routed by its path
//! whatever the host, so in process that base reaches the tenant too. Over real HTTP (`sim-server`) that host
//! does not resolve: a client sets its WFM base to the server's URL directly.
//!
//! `agents/states` answers 200 even when no agent matches (an empty `agentStates`), pages by `top` (default
//! 100, at most 1000) and `skip`, and links the next page absolutely in `_links.next` (`null` on the last).
//! `lastPollTime` is the time of each answer: a client polling through several pages keeps the **first**
//! page's `lastPollTime` as its next `updatedSince`, so a change made while it paged is seen again rather than
//! missed. A change at exactly `lastPollTime` is listed by that poll and by the next (`>=`): at least once,
//! never lost. Only the current state of each agent is listed, as CXone does; the truth timeline
//! ([`SimTenant::truth_timeline`]) keeps every change. `agentStateCategory`, `skillId`, `mediaTypeId` and
//! the like carry simulator values \[I\]: the spec lists the fields, not their values.
//!
//! The `/inContactAPI/services/v{N}.0` prefix matches ignoring case, for any `N` \[C: the SDK mixes both\].
//! Errors carry the `icStatusDescription` header and a `{error, error_description}` body \[C: QA, TAP, SPEC-G\].

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::activity::{Code, CxState};
use super::{error_response, json_body, json_response, parse_form, SimTenant, TruthSource};
use crate::cxone::acd::AgentId;
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::sim::{Endpoint, SIM_BASE_URL};
use crate::state::READY;
use crate::time::{iso8601, parse_iso8601};

/// The `area` the CXone configuration announces: with [`CXONE_UH_DOMAIN`], the WFM base
/// `https://sim.sim.invalid` (`.invalid` never resolves, RFC 2606).
pub const CXONE_AREA: &str = "sim";

/// The `uhDomain` the CXone configuration announces (see [`CXONE_AREA`]).
pub const CXONE_UH_DOMAIN: &str = "sim.invalid";

/// Team A: its unavailable codes are spelled as the spec spells them (`outstateId`, `outstateName`).
pub const CXONE_TEAM_A: u64 = 101;

/// Team B: its unavailable codes are spelled as the SDK reads them (`outStateId`, `outStateName`), with other ids.
pub const CXONE_TEAM_B: u64 = 102;

/// Team C: no unavailable codes (204), so only `Available` can be set for its agents.
pub const CXONE_TEAM_C: u64 = 103;

/// The `businessUnitId` every agent reports \[I: illustrative\].
const BUSINESS_UNIT_ID: u64 = 4_600_001;

/// The skill a contact of the simulated ACD comes in on, inbound and outbound \[I: illustrative\].
const INBOUND_SKILL: (u64, &str) = (2001, "Sim Inbound");
const OUTBOUND_SKILL: (u64, &str) = (2002, "Sim Outbound");

/// Every contact is a phone call \[I: `mediaTypeId` 4 is voice on the tenants seen in public samples\].
const CALL_MEDIA: (u64, &str) = (4, "Call");

/// The first `agentId`: real ones are numbers of several digits.
pub(super) const FIRST_AGENT_ID: u64 = 1001;

/// Every team's unavailable codes, as `(name, isAcw)`: what a tenant typically has, including `Adhoc`,
/// `General` and `System Idle`, which the engine's default reason table names. Team A numbers them from 1,
/// team B from 21.
const UNAVAILABLE_CODES: [(&str, bool); 8] = [
    ("Break", false),
    ("Lunch", false),
    ("Meeting", false),
    ("Training", false),
    ("System Idle", false),
    ("Adhoc", false),
    ("General", false),
    ("ACW", true),
];

/// A directory page when `top` is not given (the engine asks for 100 too).
const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest page the directory answers.
const MAX_PAGE_SIZE: usize = 1000;

/// The most days one export covers, `endDate` inclusive \[C: help `apiexportagentschedules`\].
const MAX_EXPORT_DAYS: u64 = 7;

const DAY_MS: u64 = 86_400_000;

/// The `sub` of every id_token: the API user the access key belongs to.
const API_USER_SUB: &str = "user:5e1d0000-0000-4000-8000-0000000000a1";

/// Who an agent is to the `cxone` profile ([`SimTenant::cxone_agent`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CxoneIdentity {
    /// The ACD `agentId` the Admin API addresses the agent by.
    pub agent_id: AgentId,
    /// The UserHub `userID` (UUID-shaped) the WFM export is keyed by.
    pub user_id: String,
    /// The team whose unavailable codes apply ([`CXONE_TEAM_A`], [`CXONE_TEAM_B`], [`CXONE_TEAM_C`] or a
    /// plan's own, which has no codes endpoint: 404).
    pub team_id: u64,
}

impl CxoneIdentity {
    /// The identity of the agent numbered `agent_id`: a `userID` made from it, and teams A, B, C in turn.
    pub(super) fn numbered(agent_id: u64) -> Self {
        let teams = [CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C];
        Self {
            agent_id: AgentId(agent_id),
            user_id: format!("5e1d0000-0000-4000-8000-{agent_id:012}"),
            team_id: teams[((agent_id - FIRST_AGENT_ID) % 3) as usize],
        }
    }
}

/// A `cxone` request after routing.
pub(super) enum CxoneRoute {
    OpenIdConfiguration,
    CxoneConfiguration,
    Token,
    Agents,
    UnavailableCodes(String),
    AgentState(String),
    ScheduleExport,
    AgentStates,
    StateHistory(String),
}

impl CxoneRoute {
    pub(super) fn endpoint(&self) -> Endpoint {
        match self {
            Self::OpenIdConfiguration | Self::CxoneConfiguration => Endpoint::Discovery,
            Self::Token => Endpoint::CxoneToken,
            Self::Agents => Endpoint::Agents,
            Self::UnavailableCodes(_) => Endpoint::UnavailableCodes,
            Self::AgentState(_) => Endpoint::AgentState,
            Self::ScheduleExport => Endpoint::ScheduleExport,
            Self::AgentStates => Endpoint::AgentStates,
            Self::StateHistory(_) => Endpoint::StateHistory,
        }
    }

    /// `None` for a path of the `seed` profile (or of nobody).
    pub(super) fn parse(method: Method, path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        let fixed = match (method, path) {
            (Method::Get, "/.well-known/openid-configuration") => Some(Self::OpenIdConfiguration),
            (Method::Get, "/.well-known/cxone-configuration") => Some(Self::CxoneConfiguration),
            (Method::Post, "/auth/token") => Some(Self::Token),
            (Method::Post, "/schedules/export") => Some(Self::ScheduleExport),
            _ => None,
        };
        if fixed.is_some() {
            return fixed;
        }
        let segments: Vec<&str> = services_rest(path)?.split('/').collect();
        let is = |segment: &str, name: &str| segment.eq_ignore_ascii_case(name);
        match (method, segments.as_slice()) {
            // Before any `agents/{agentId}` route: `states` is not an agent.
            (Method::Get, [agents, states]) if is(agents, "agents") && is(states, "states") => {
                Some(Self::AgentStates)
            }
            (Method::Get, [agents, agent, history])
                if is(agents, "agents") && is(history, "state-history") =>
            {
                Some(Self::StateHistory(decode(agent)))
            }
            (Method::Get, [agents]) if is(agents, "agents") => Some(Self::Agents),
            (Method::Get, [teams, team, codes])
                if is(teams, "teams") && is(codes, "unavailable-codes") =>
            {
                Some(Self::UnavailableCodes(decode(team)))
            }
            (Method::Post, [agents, agent, state])
                if is(agents, "agents") && is(state, "state") =>
            {
                Some(Self::AgentState(decode(agent)))
            }
            _ => None,
        }
    }
}

/// What follows `/inContactAPI/services/v{N}.0/`, the prefix matched ignoring case.
fn services_rest(path: &str) -> Option<&str> {
    const PREFIX: &str = "/incontactapi/services/v";
    if !path.get(..PREFIX.len())?.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &path[PREFIX.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then_some(())?;
    rest[digits..].strip_prefix(".0/")
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// `scheme://authority` of an absolute URL; the harness's base for anything else.
fn origin_of(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return SIM_BASE_URL.to_owned();
    };
    let rest = &url[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    url[..i + 3 + end].to_owned()
}

/// The URL's query parameters (a repeated name keeps its last value).
fn query_of(url: &str) -> BTreeMap<String, String> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    parse_form(without_fragment.split_once('?').map_or("", |(_, q)| q))
}

/// A refusal as CXone words it: the `icStatusDescription` header and a `{error, error_description}` body.
pub(super) fn cxone_error(status: u16, error: &str, description: &str) -> HttpResponse {
    let mut response = error_response(status, error, description);
    response
        .headers
        .push(("icStatusDescription".to_owned(), description.to_owned()));
    response
}

/// A token endpoint refusal: 400 `{error, error_description}` \[C: SPEC-G\].
fn token_refusal(error: &str, description: &str) -> HttpResponse {
    error_response(400, error, description)
}

/// A team's codes as `(outstateId, name, isAcw)`: `None` for a team the tenant does not know.
pub(super) fn team_codes(team_id: u64) -> Option<Vec<(u64, &'static str, bool)>> {
    let first_id = match team_id {
        CXONE_TEAM_A => 1,
        CXONE_TEAM_B => 21,
        CXONE_TEAM_C => return Some(Vec::new()),
        _ => return None,
    };
    Some(
        (first_id..)
            .zip(UNAVAILABLE_CODES)
            .map(|(id, (name, acw))| (id, name, acw))
            .collect(),
    )
}

fn team_name(team_id: u64) -> String {
    match team_id {
        CXONE_TEAM_A => "Team A".to_owned(),
        CXONE_TEAM_B => "Team B".to_owned(),
        CXONE_TEAM_C => "Team C".to_owned(),
        other => format!("Team {other}"),
    }
}

/// The state the ground truth records: `READY` for `Available`; `UNAVAILABLE_<CODE>` for `Unavailable` with a
/// code (`System Idle` → `UNAVAILABLE_SYSTEM_IDLE`), plain `UNAVAILABLE` without one.
pub(super) fn recorded_state(code_name: Option<&str>) -> String {
    match code_name {
        None => "UNAVAILABLE".to_owned(),
        Some(name) => {
            let code: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("UNAVAILABLE_{code}")
        }
    }
}

/// A `yyyy-mm-dd` day's first instant (UTC); `None` for anything else, including impossible dates.
fn day_start_ms(day: &str) -> Option<u64> {
    let shaped = day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let ms = parse_iso8601(&format!("{}T00:00:00Z", shaped.then_some(day)?))?;
    // `parse_iso8601` may roll 2026-02-30 over; a day that does not format back was not a date.
    iso8601(ms).starts_with(day).then_some(ms)
}

/// The `Authorization: Basic` pair, each part URL-decoded after base64 (as DEFRA's client encodes them).
fn basic_credentials(request: &HttpRequest) -> Option<(String, String)> {
    let encoded = request.header("authorization")?.strip_prefix("Basic ")?;
    let pair = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = pair.split_once(':')?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// `base64url(JSON)` without padding, as JWT segments are written.
fn jwt_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

impl SimTenant {
    /// The plan's user id of the agent a `cxone` request names (by `agentId` in the path, by `userID` in an
    /// export's body), for scripted faults.
    pub(super) fn cxone_fault_user(
        &self,
        route: &CxoneRoute,
        request: &HttpRequest,
    ) -> Option<String> {
        match route {
            CxoneRoute::AgentState(agent) | CxoneRoute::StateHistory(agent) => {
                self.user_of_agent_id(agent)
            }
            CxoneRoute::ScheduleExport => {
                let body = json_body(request)?;
                self.by_user_uuid
                    .get(body.get("userID")?.as_str()?)
                    .cloned()
            }
            _ => None,
        }
    }

    fn user_of_agent_id(&self, agent: &str) -> Option<String> {
        let id: u64 = agent.parse().ok()?;
        self.by_agent_id.get(&id).cloned()
    }

    /// A `cxone` endpoint, after the rate limiter and the fault injection.
    pub(super) fn process_cxone(
        &mut self,
        now_ms: u64,
        route: &CxoneRoute,
        request: &HttpRequest,
    ) -> HttpResponse {
        let origin = origin_of(&request.url);
        match route {
            CxoneRoute::OpenIdConfiguration => return openid_configuration(&origin),
            CxoneRoute::CxoneConfiguration => return self.cxone_configuration(&origin, request),
            CxoneRoute::Token => return self.cxone_token(now_ms, &origin, request),
            _ => {}
        }
        if !self.bearer_ok(now_ms, request) {
            return cxone_error(
                401,
                "invalid_token",
                "The access token is missing, expired or revoked.",
            );
        }
        match route {
            CxoneRoute::Agents => self.agents_page(&origin, request),
            CxoneRoute::UnavailableCodes(team) => unavailable_codes(team),
            CxoneRoute::AgentState(agent) => self.cxone_set_state(now_ms, agent, request),
            CxoneRoute::AgentStates => self.agent_states(now_ms, &origin, request),
            CxoneRoute::StateHistory(agent) => self.state_history(now_ms, agent, request),
            _ => self.schedule_export(request),
        }
    }

    fn cxone_configuration(&self, origin: &str, request: &HttpRequest) -> HttpResponse {
        let query = query_of(&request.url);
        if query.get("tenantId") != Some(&self.config.tenant_id) {
            return cxone_error(404, "not_found", "No configuration for this tenant.");
        }
        json_response(
            200,
            json!({
                "private": false,
                "ui_endpoint": origin,
                "auth_endpoint": origin,
                "api_endpoint": origin,
                "area": CXONE_AREA,
                "cluster": "sim1",
                "domain": CXONE_UH_DOMAIN,
                "acdDomain": CXONE_UH_DOMAIN,
                "uhDomain": CXONE_UH_DOMAIN,
                "tenantId": self.config.tenant_id,
                "globaldomain": CXONE_UH_DOMAIN,
            }),
        )
    }

    /// `POST /auth/token`: the password grant (access key as user) and the refresh grant (`client_id`
    /// required \[C: SPEC-C\]), the client app authenticated by HTTP Basic or by `client_id`/`client_secret` in
    /// the form. Refresh tokens are single-use: a refresh answers a new one and forgets the old.
    fn cxone_token(&mut self, now_ms: u64, origin: &str, request: &HttpRequest) -> HttpResponse {
        let form = parse_form(request.body.as_deref().unwrap_or_default());
        let grant = form.get("grant_type").map(String::as_str);
        if !matches!(grant, Some("password" | "refresh_token")) {
            return match grant {
                None => token_refusal("invalid_request", "grant_type is missing"),
                Some(_) => token_refusal(
                    "unsupported_grant_type",
                    "only password and refresh_token are supported",
                ),
            };
        }
        let client = basic_credentials(request).or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        });
        if client
            != Some((
                self.config.client_id.clone(),
                self.config.client_secret.clone(),
            ))
        {
            return token_refusal("invalid_client", "client authentication failed");
        }
        if grant == Some("password") {
            let user_ok = form.get("username") == Some(&self.config.access_key_id);
            let password_ok = form.get("password") == Some(&self.config.access_key_secret);
            if !(user_ok && password_ok) {
                return token_refusal("invalid_grant", "the access key id or secret is wrong");
            }
        } else {
            if form.get("client_id") != Some(&self.config.client_id) {
                return token_refusal(
                    "invalid_request",
                    "client_id is required with refresh_token",
                );
            }
            let known = form
                .get("refresh_token")
                .is_some_and(|t| self.refresh_tokens.remove(t));
            if !known {
                return token_refusal(
                    "invalid_grant",
                    "the refresh token is unknown, used or revoked",
                );
            }
        }
        self.issue_cxone_tokens(now_ms, origin)
    }

    fn issue_cxone_tokens(&mut self, now_ms: u64, origin: &str) -> HttpResponse {
        let access_token = self.mint_access_token(now_ms);
        let refresh_token = format!("simrt-{}", self.rng.uuid().simple());
        let ttl_s = self.config.token_ttl_s;
        self.refresh_tokens.insert(refresh_token.clone());
        let issued_s = now_ms / 1000;
        let mut claims = json!({
            "iss": origin,
            "sub": API_USER_SUB,
            "aud": self.config.client_id,
            "iat": issued_s,
            "exp": issued_s.saturating_add(ttl_s),
            "tenantId": self.config.tenant_id,
            "name": "Simulated API user",
        });
        if self.id_token_without_tenant_id {
            if let Some(claims) = claims.as_object_mut() {
                claims.remove("tenantId");
            }
        }
        // Shaped like a JWT, not signed: clients read the claims without verifying (there is no JWKS).
        let id_token = format!(
            "{}.{}.{}",
            jwt_segment(&json!({ "alg": "RS256", "typ": "JWT", "kid": "sim" })),
            jwt_segment(&claims),
            URL_SAFE_NO_PAD.encode("simulated, not signed"),
        );
        let mut response = json_response(
            200,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "refresh_token": refresh_token,
                "expires_in": ttl_s,
                "id_token": id_token,
            }),
        );
        response.headers.extend([
            ("Cache-Control".to_owned(), "no-store".to_owned()),
            ("Pragma".to_owned(), "no-cache".to_owned()),
        ]);
        response
    }

    /// `GET …/agents?skip&top`: agents in `agentId` order; 204 when the page is empty.
    fn agents_page(&self, origin: &str, request: &HttpRequest) -> HttpResponse {
        let query = query_of(&request.url);
        let number = |name: &str, default: usize| match query.get(name) {
            None => Some(default),
            Some(v) => v.trim().parse::<usize>().ok(),
        };
        let (Some(skip), Some(top)) = (number("skip", 0), number("top", DEFAULT_PAGE_SIZE)) else {
            return cxone_error(400, "invalid_request", "skip and top must be numbers.");
        };
        let top = top.clamp(1, MAX_PAGE_SIZE);
        let total = self.by_agent_id.len();
        let agents: Vec<Value> = self
            .by_agent_id
            .values()
            .skip(skip)
            .take(top)
            .filter_map(|user| self.agents.get(user))
            .map(|agent| {
                let id = &agent.identity;
                json!({
                    "agentId": id.agent_id.0,
                    "userID": id.user_id,
                    "teamId": id.team_id,
                    "teamName": team_name(id.team_id),
                    "isActive": true,
                    "firstName": agent.plan.user_id,
                    "lastName": "Sim",
                })
            })
            .collect();
        if agents.is_empty() {
            return HttpResponse::new(204, Vec::new(), "");
        }
        let path = request.path();
        let next = (skip + agents.len() < total)
            .then(|| format!("{origin}{path}?skip={}&top={top}", skip + top));
        json_response(
            200,
            json!({
                "totalRecords": total,
                "agents": agents,
                "_links": {
                    "self": format!("{origin}{path}?skip={skip}&top={top}"),
                    "next": next,
                },
            }),
        )
    }

    /// `POST …/agents/{agentId}/state`, the Admin API's `SetAgentState`: `state` and `outStateId` from the
    /// query, else from a JSON body \[C: spec and QA\]. Counted in the ground truth as the `seed` set-state is,
    /// `Available` as READY.
    fn cxone_set_state(&mut self, now_ms: u64, agent: &str, request: &HttpRequest) -> HttpResponse {
        let Some(user) = self.user_of_agent_id(agent) else {
            return cxone_error(404, "not_found", "Agent not found.");
        };
        let key = request.header("idempotency-key").map(str::to_owned);
        if let Some(replay) = self.replay(key.as_deref()) {
            return replay;
        }
        let (state, out_state_id) = requested_state(request);
        let invalid = |why: &str| cxone_error(400, "invalid_request", why);
        let available = match state.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("Available") => true,
            Some(s) if s.eq_ignore_ascii_case("Unavailable") => false,
            _ => return invalid("Invalid state request."),
        };
        let agent = &self.agents[&user];
        let code = match (available, out_state_id) {
            (_, Some(Err(()))) => return invalid("Invalid outStateId."),
            (true, Some(Ok(_))) => return invalid("outStateId applies to Unavailable only."),
            (_, None) => None,
            (false, Some(Ok(id))) => {
                let codes = team_codes(agent.identity.team_id).unwrap_or_default();
                match codes.into_iter().find(|(code_id, _, _)| *code_id == id) {
                    Some(code) => Some(code),
                    None => {
                        return invalid(
                            "outStateId is not an unavailable code of the agent's team.",
                        )
                    }
                }
            }
        };
        let logged_out = agent.tenant.name == CxState::LoggedOut;
        if logged_out || agent.plan.logged_out.iter().any(|w| w.contains(now_ms)) {
            return cxone_error(409, "conflict", "The agent is not logged in.");
        }
        // An ACW code needs a contact \[C for the Agent API's reason; assumed for the Admin API\].
        if code.is_some_and(|(_, _, acw)| acw) {
            return cxone_error(409, "conflict", "An ACW code can only be set on a contact.");
        }
        let recorded = if available {
            READY.to_owned()
        } else {
            recorded_state(code.map(|(_, name, _)| name))
        };
        self.apply_change(now_ms, &user, &recorded);
        let name = if available {
            CxState::Available
        } else {
            CxState::Unavailable
        };
        if let Some(agent) = self.agents.get_mut(&user) {
            agent.change(now_ms, name, code, TruthSource::Api, false);
        }
        let response = HttpResponse::new(
            200,
            vec![("icStatusDescription".to_owned(), "Success".to_owned())],
            "",
        );
        self.record_change(key, user, recorded, &response);
        response
    }

    /// `GET …/agents/states?updatedSince&top&skip`: the agents whose `lastUpdateTime >= updatedSince` (every
    /// agent without it), in `agentId` order, a page at a time (see the module docs).
    fn agent_states(&self, now_ms: u64, origin: &str, request: &HttpRequest) -> HttpResponse {
        let query = query_of(&request.url);
        let since = match query.get("updatedSince").map(|s| s.trim()) {
            None | Some("") => None,
            Some(s) => match parse_iso8601(s) {
                Some(ms) => Some(ms),
                None => {
                    return cxone_error(
                        400,
                        "invalid_request",
                        "updatedSince must be an ISO 8601 date-time.",
                    )
                }
            },
        };
        let Some((skip, top)) = skip_and_top(&query) else {
            return cxone_error(400, "invalid_request", "skip and top must be numbers.");
        };
        let matching: Vec<&super::AgentSim> = self
            .by_agent_id
            .values()
            .filter_map(|user| self.agents.get(user))
            .filter(|agent| since.is_none_or(|t| agent.tenant.last_update_ms >= t))
            .collect();
        let total = matching.len();
        let page: Vec<Value> = matching
            .iter()
            .skip(skip)
            .take(top)
            .map(|agent| agent_state_item(agent))
            .collect();
        let link = |skip: usize| {
            let mut url = format!("{origin}{}?", request.path());
            if let Some(t) = since {
                url.push_str(&format!("updatedSince={}&", iso8601(t)));
            }
            url.push_str(&format!("top={top}&skip={skip}"));
            url
        };
        let next = (skip + page.len() < total).then(|| link(skip + top));
        let previous = (skip > 0).then(|| link(skip.saturating_sub(top)));
        json_response(
            200,
            json!({
                "totalRecords": total,
                "_links": { "self": link(skip), "next": next, "previous": previous },
                "lastPollTime": iso8601(now_ms),
                "agentStates": page,
            }),
        )
    }

    /// `GET …/agents/{agentId}/state-history?startDate&endDate`: the stretches of the agent's truth timeline
    /// that meet `[startDate, endDate]` (from the start of time and up to now when left out), each with its
    /// duration in whole seconds (the current one's up to now).
    fn state_history(&self, now_ms: u64, agent: &str, request: &HttpRequest) -> HttpResponse {
        let Some(agent) = self
            .user_of_agent_id(agent)
            .and_then(|user| self.agents.get(&user))
        else {
            return cxone_error(404, "not_found", "Agent not found.");
        };
        let query = query_of(&request.url);
        let date = |name: &str, default: u64| match query.get(name).map(|s| s.trim()) {
            None | Some("") => Some(default),
            Some(s) => parse_iso8601(s),
        };
        let (Some(start_ms), Some(end_ms)) = (date("startDate", 0), date("endDate", now_ms)) else {
            return cxone_error(
                400,
                "invalid_request",
                "startDate and endDate must be ISO 8601 date-times.",
            );
        };
        if end_ms < start_ms {
            return cxone_error(400, "invalid_request", "endDate is before startDate.");
        }
        let timeline = &agent.tenant.timeline;
        let stretches: Vec<Value> = timeline
            .iter()
            .enumerate()
            .filter(|(_, e)| e.at_ms <= now_ms)
            .filter_map(|(i, entry)| {
                let until_ms = timeline
                    .get(i + 1)
                    .map_or(now_ms, |next| next.at_ms.min(now_ms))
                    .max(entry.at_ms);
                // A stretch of no length (LoggedIn at a login) is kept when its instant is in range.
                let meets =
                    entry.at_ms <= end_ms && (until_ms > start_ms || entry.at_ms >= start_ms);
                meets.then(|| {
                    json!({
                        "stateIndex": i,
                        "startDate": iso8601(entry.at_ms),
                        "agentStateId": entry.state_id,
                        "agentStateName": entry.state_name,
                        "outStateId": entry.out_state_id.unwrap_or(0),
                        "outStateDescription": entry.code.as_deref().unwrap_or(""),
                        "duration": (until_ms - entry.at_ms) / 1000,
                    })
                })
            })
            .collect();
        json_response(200, json!({ "agentStateHistory": stretches }))
    }

    /// `POST /schedules/export`: one agent, at most seven days (`endDate` inclusive), `yyyy-mm-dd`. Each of the
    /// agent's shifts that meets the range is answered with the breaks that meet it as activity intervals,
    /// titled `Lunch` (30 minutes or longer) or `Break`. Breaks outside every shift are not exported.
    fn schedule_export(&self, request: &HttpRequest) -> HttpResponse {
        let invalid = |why: &str| cxone_error(400, "invalid_request", why);
        let body = json_body(request);
        let field = |name: &str| body.as_ref()?.get(name)?.as_str();
        let (Some(start), Some(end), Some(user_uuid)) =
            (field("startDate"), field("endDate"), field("userID"))
        else {
            return invalid("startDate, endDate and userID are required.");
        };
        let (Some(start_ms), Some(end_ms)) = (day_start_ms(start), day_start_ms(end)) else {
            return invalid("Dates must be yyyy-mm-dd.");
        };
        if end_ms < start_ms || (end_ms - start_ms) / DAY_MS >= MAX_EXPORT_DAYS {
            return invalid("The range must run forward over at most seven days.");
        }
        let Some(agent) = self
            .by_user_uuid
            .get(user_uuid)
            .and_then(|user| self.agents.get(user))
        else {
            return invalid("Unknown userID.");
        };
        let range_end_ms = end_ms + DAY_MS;
        let meets =
            |a_start: u64, a_end: u64, b_start: u64, b_end: u64| a_start < b_end && b_start < a_end;
        let shifts: Vec<Value> = agent
            .plan
            .shifts
            .iter()
            .filter(|s| meets(s.start_ms, s.end_ms, start_ms, range_end_ms))
            .map(|shift| {
                let intervals: Vec<Value> = agent
                    .plan
                    .breaks
                    .iter()
                    .filter(|b| meets(b.start_ms, b.end_ms, shift.start_ms, shift.end_ms))
                    .map(|b| {
                        let title = super::AgentPlan::break_title(b);
                        json!({
                            "activityCode": {
                                "id": format!("sim-{}", title.to_ascii_lowercase()),
                                "title": title,
                                "open": false,
                                "work": false,
                            },
                            "start": iso8601(b.start_ms),
                            "end": iso8601(b.end_ms),
                            "activityNotes": "",
                        })
                    })
                    .collect();
                json!({
                    "start": iso8601(shift.start_ms),
                    "end": iso8601(shift.end_ms),
                    "shiftNotes": "",
                    "baseActivityCode": {
                        "id": "sim-shift",
                        "title": "Shift",
                        "open": true,
                        "work": true,
                        "overTime": false,
                    },
                    "activityIntervals": intervals,
                })
            })
            .collect();
        json_response(
            200,
            json!({
                "start": start,
                "end": end,
                "agentSchedules": [{ "userId": user_uuid, "shifts": shifts }],
            }),
        )
    }
}

/// `skip` (default 0) and `top` (default 100, clamped to 1..=1000); `None` when one is not a number.
fn skip_and_top(query: &BTreeMap<String, String>) -> Option<(usize, usize)> {
    let number = |name: &str, default: usize| match query.get(name) {
        None => Some(default),
        Some(v) => v.trim().parse::<usize>().ok(),
    };
    let (skip, top) = (number("skip", 0)?, number("top", DEFAULT_PAGE_SIZE)?);
    Some((skip, top.clamp(1, MAX_PAGE_SIZE)))
}

/// One agent of `agents/states`, shaped as §4 of `cxone-api-facts.md` lists it.
fn agent_state_item(agent: &super::AgentSim) -> Value {
    let t = &agent.tenant;
    let id = &agent.identity;
    let code: Option<Code> = t.code;
    let contact = t.contact.filter(|_| t.name.is_contact());
    let skill = match contact {
        None => (0, ""),
        Some(_) if t.name.is_outbound() => OUTBOUND_SKILL,
        Some(_) => INBOUND_SKILL,
    };
    let media = if contact.is_some() {
        CALL_MEDIA
    } else {
        (0, "")
    };
    let updated = iso8601(t.last_update_ms);
    json!({
        "agentId": id.agent_id.0,
        "agentStateId": t.name.id(),
        "agentStateName": t.name.name(),
        "agentStateCategory": t.name.category(),
        "outStateId": code.map_or(0, |c| c.0),
        "outStateDescription": code.map_or("", |c| c.1),
        "lastUpdateTime": updated,
        "startDate": updated,
        "sessionStartTime": (t.name != CxState::LoggedOut).then(|| iso8601(t.session_start_ms)),
        "teamId": id.team_id,
        "teamName": team_name(id.team_id),
        "userName": format!("{}@{CXONE_UH_DOMAIN}", agent.plan.user_id),
        "firstName": agent.plan.user_id,
        "lastName": "Sim",
        "isActive": true,
        "isACW": code.is_some_and(|c| c.2),
        "isOutbound": t.name.is_outbound(),
        "contactId": contact.map_or(0, |c| c.id),
        "skillId": skill.0,
        "skillName": skill.1,
        "mediaTypeId": media.0,
        "mediaTypeName": media.1,
        "openContacts": u8::from(contact.is_some()),
        "stationId": 0,
        "stationPhoneNumber": "",
        "fromAddress": "",
        "toAddress": "",
        "businessUnitId": BUSINESS_UNIT_ID,
    })
}

fn openid_configuration(origin: &str) -> HttpResponse {
    json_response(
        200,
        json!({
            "issuer": origin,
            "authorization_endpoint": format!("{origin}/auth/authorize"),
            "token_endpoint": format!("{origin}/auth/token"),
            "end_session_endpoint": format!("{origin}/auth/logout"),
            "jwks_uri": format!("{origin}/.well-known/jwks"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid"],
        }),
    )
}

/// `GET …/teams/{teamId}/unavailable-codes`: team A in the spec's casing, team B in the SDK's, team C 204, any
/// other team 404. Every code is active, so `activeOnly` changes nothing.
fn unavailable_codes(team: &str) -> HttpResponse {
    let Some((team_id, codes)) = team
        .parse::<u64>()
        .ok()
        .and_then(|id| Some((id, team_codes(id)?)))
    else {
        return cxone_error(404, "not_found", "Team not found.");
    };
    if codes.is_empty() {
        return HttpResponse::new(204, Vec::new(), "");
    }
    let (id_key, name_key) = if team_id == CXONE_TEAM_B {
        ("outStateId", "outStateName")
    } else {
        ("outstateId", "outstateName")
    };
    let codes: Vec<Value> = codes
        .into_iter()
        .map(|(id, name, acw)| {
            let mut code = serde_json::Map::new();
            code.insert(id_key.to_owned(), json!(id));
            code.insert(name_key.to_owned(), json!(name));
            code.insert("isActive".to_owned(), json!(true));
            code.insert("isAcw".to_owned(), json!(acw));
            code.insert("agentTimeoutMins".to_owned(), json!("15"));
            Value::Object(code)
        })
        .collect();
    json_response(
        200,
        json!({
            "teamId": team_id,
            "teamName": team_name(team_id),
            "teamUuid": format!("7ea70000-0000-4000-8000-{team_id:012}"),
            "divisionNo": 0,
            "unavailableCodes": codes,
        }),
    )
}

/// `state` and `outStateId` (`Err` when not a number) from the query if it has `state`, else from a JSON body.
fn requested_state(request: &HttpRequest) -> (Option<String>, Option<Result<u64, ()>>) {
    let query = query_of(&request.url);
    if let Some(state) = query.get("state") {
        let id = query
            .get("outStateId")
            .map(|v| v.trim().parse::<u64>().map_err(|_| ()));
        return (Some(state.clone()), id);
    }
    let body = json_body(request);
    let member = |name: &str| body.as_ref()?.get(name).filter(|v| !v.is_null());
    let state = member("state").and_then(Value::as_str).map(str::to_owned);
    let id = member("outStateId").map(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or(())
    });
    (state, id)
}
