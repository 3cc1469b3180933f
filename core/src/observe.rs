//! Observing agent states changed elsewhere (`cxone`): the poll's configuration, how a tenant state is named in
//! the history, and what the engine reports about it.
//!
//! Agents change their own state in their agent application, supervisors change it, the ACD moves agents
//! into contacts, and sessions end. The engine polls `GET …/agents/states?updatedSince=` (the Real-Time Data
//! API, `cxone-api-facts.md` §4) on a timer of its own, passing each poll's `lastPollTime` back as the next
//! `updatedSince` and following `_links.next`. Each agent whose state, unavailable code or session changed
//! becomes an [`Event::StateObserved`](crate::Event::StateObserved) and an observation record in the audit
//! chain; the history, idle time and utilization then follow the tenant rather than only our own changes.
//!
//! An `OUTCOME_UNKNOWN` change is settled by what the tenant shows (a new record pointing to the original;
//! nothing is rewritten). Its **send window** runs from its first send to the moment it ended unknown plus
//! the request timeout (a send still on its way may land that late), and ends early at our next change of
//! the same agent.
//! - **Applied** when the tenant shows the agent entering the requested state (and code) inside the send
//!   window: in a poll, or in the agent's state history (`GET …/agents/{agentId}/state-history`).
//! - **Not applied** once [`ObserveConfig::settle_after_ms`] has passed and a poll that began after that
//!   shows the agent unchanged since before the send (in another state), or the state history has no
//!   stretch in the requested state that began inside the send window.
//!
//! Anything the tenant's answers cannot decide stays unknown: the agent was already in the requested state
//! when the change was sent (a tenant need not mark a change to the state it holds), or a stretch in it
//! began within the clock tolerance of the send. The tenant does not say who made a change: a change to the
//! same state by someone else inside the send window reads as ours, and the settlement names the evidence
//! it was decided from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, TransitionError};
use crate::state::{ReasonCodeTable, IDLE, NOT_READY, PAUSED, READY};

/// The poll's settings (`cxone` only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObserveConfig {
    /// Time between the end of one poll and the start of the next.
    pub interval_ms: u64,
    /// Agents per page of the poll (`top`).
    pub page_size: u64,
    /// An `OUTCOME_UNKNOWN` change not seen applied this long after its last send is settled from the
    /// tenant's answers (see the module docs).
    pub settle_after_ms: u64,
    /// Before a change is sent: when the last observation (no older than `stale_after_ms`) shows the agent
    /// already in the requested state and code, the change is not sent and is audited as a no-op success that
    /// names the observation it relied on. Off by default.
    pub skip_if_in_effect: bool,
    /// The observed states are stale (a console says so) when no poll has succeeded for this long.
    pub stale_after_ms: u64,
    /// How far, either side, an observed change's time may be from one of our changes (from its first send to
    /// its completion) and still be taken as ours.
    pub match_tolerance_ms: u64,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
            page_size: crate::cxone::acd::DEFAULT_AGENT_STATES_PAGE_SIZE,
            settle_after_ms: 60_000,
            skip_if_in_effect: false,
            stale_after_ms: 30_000,
            match_tolerance_ms: 2_000,
        }
    }
}

impl ObserveConfig {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: why.to_owned(),
            })
        };
        if self.interval_ms < 1_000 {
            return bad(
                "observe.intervalMs",
                "must be at least 1000 (1 s): the poll shares the API's rate limit",
            );
        }
        if !(1..=1_000).contains(&self.page_size) {
            return bad("observe.pageSize", "must be 1 to 1000");
        }
        if self.stale_after_ms < self.interval_ms {
            return bad("observe.staleAfterMs", "must be at least the poll interval");
        }
        Ok(())
    }
}

/// Whether an observed change was made by this project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObservationSource {
    /// It matches a change this engine made (by agent, state and time).
    Ours,
    /// Anything else: the agent, a supervisor, the ACD, a session starting or ending.
    External,
}

impl ObservationSource {
    /// `"ours"` or `"external"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::External => "external",
        }
    }
}

/// What the tenant said, carried by an observation record and its event. Its members are declared in byte
/// order of their JSON names: it is part of an audit record's canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// When the tenant says the change happened, on our wall clock (Unix ms): the tenant's clock offset taken
    /// off.
    pub at_ms: u64,
    /// The unavailable code's name (`outStateDescription`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The unavailable code's id (`outStateId`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_state_id: Option<u64>,
    /// `ours` or `external`.
    pub source: ObservationSource,
    /// The tenant's state name (`agentStateName`), e.g. `"Unavailable"`.
    pub tenant_state: String,
    /// The tenant's state id (`agentStateId`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_state_id: Option<u64>,
    /// When the tenant says the change happened (`lastUpdateTime`), as it wrote it.
    pub tenant_time: String,
}

/// How time in a state counts in utilization and idle time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StateClass {
    /// Taking or handling contacts: counts towards utilization.
    Working,
    /// Logged in but not taking contacts: counts as idle time.
    Idle,
    /// Logged out: left out of utilization's denominator.
    Offline,
    /// Anything not listed: tracked, neither working nor idle.
    Other,
}

/// Which states count as working, idle or offline. The defaults: `READY` and the contact states work;
/// `IDLE`, `PAUSED`, `NOT_READY` and `LOGGED_IN` (a session with no state yet) are idle; `LOGGED_OUT` is
/// offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StateClasses {
    /// States whose time counts towards utilization.
    pub working: Vec<String>,
    /// States whose time counts as idle.
    pub idle: Vec<String>,
    /// States whose time is left out of utilization's denominator.
    pub offline: Vec<String>,
}

/// `InboundContact` and the other contact states, as the history names them.
pub const CONTACT_STATES: [&str; 5] = [
    "INBOUND_CONTACT",
    "OUTBOUND_CONTACT",
    "INBOUND_CONSULT",
    "OUTBOUND_CONSULT",
    "DIALER",
];

/// `LoggedOut`, as the history names it.
pub const LOGGED_OUT: &str = "LOGGED_OUT";
/// `LoggedIn` (a session with no state yet), as the history names it.
pub const LOGGED_IN: &str = "LOGGED_IN";

impl Default for StateClasses {
    fn default() -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        let mut working = vec![READY];
        working.extend(CONTACT_STATES);
        Self {
            working: owned(&working),
            idle: owned(&[IDLE, PAUSED, NOT_READY, LOGGED_IN]),
            offline: owned(&[LOGGED_OUT]),
        }
    }
}

impl StateClasses {
    /// How time in `state` counts.
    pub fn class_of(&self, state: &str) -> StateClass {
        let has = |list: &[String]| list.iter().any(|s| s == state);
        if has(&self.working) {
            StateClass::Working
        } else if has(&self.idle) {
            StateClass::Idle
        } else if has(&self.offline) {
            StateClass::Offline
        } else {
            StateClass::Other
        }
    }
}

/// The history's name for a tenant state: `Available` is `READY`; `Unavailable` is the state whose reason
/// code names the unavailable code (`Break` → `NOT_READY`, `Adhoc` → `PAUSED`, `System Idle` → `IDLE` with
/// the default table), else `NOT_READY`; every other state is its own name in upper snake case
/// (`InboundContact` → `INBOUND_CONTACT`, `LoggedOut` → `LOGGED_OUT`).
pub fn history_state(tenant_state: &str, code: Option<&str>, reasons: &ReasonCodeTable) -> String {
    if tenant_state.eq_ignore_ascii_case("Available") {
        return READY.to_owned();
    }
    if tenant_state.eq_ignore_ascii_case("Unavailable") {
        if let Some(code) = code {
            let wanted = crate::cxone::normalize_name(code);
            // The table is a map: the first state in name order wins, so the answer is stable.
            if let Some((state, _)) = reasons.codes.iter().find(|(state, c)| {
                state.as_str() != READY && crate::cxone::normalize_name(c) == wanted
            }) {
                return state.clone();
            }
        }
        return NOT_READY.to_owned();
    }
    let mut out = String::with_capacity(tenant_state.len() + 4);
    for (i, c) in tenant_state.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !out.ends_with('_') {
            out.push('_');
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out
}

/// One agent as [`Engine::agents`](crate::Engine::agents) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentSnapshot {
    /// The agent.
    pub user_id: String,
    /// The current state, as the history names it.
    pub state: String,
    /// Since when (Unix ms).
    pub since_ms: u64,
    /// How long the agent has been in it (ms).
    pub age_ms: u64,
    /// Where the state is known from: `change` (a change this engine made, not yet seen by a poll), `ours`
    /// or `external` (observed).
    pub source: String,
    /// The tenant's state name, when observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_state: Option<String>,
    /// The unavailable code's name, when observed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How long ago the last successful poll ended, when observing (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ago_ms: Option<u64>,
    /// Whether observation is on and no poll has succeeded for `staleAfterMs`: the state may be out of date.
    pub stale: bool,
}

/// The last thing a poll said about one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) state: String,
    pub(crate) observation: Observation,
    pub(crate) session_start: Option<String>,
    /// The observation record that reported it, if one was written.
    pub(crate) record_id: Option<String>,
}

/// A change of ours, kept a little while so an observation can be matched to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The history's name of the state asked for (`TRAINING` where the tenant shows `Unavailable`).
    pub(crate) state: String,
    pub(crate) tenant_state: &'static str,
    pub(crate) out_state_id: Option<u64>,
    pub(crate) first_sent_ms: u64,
    pub(crate) done_ms: u64,
}

/// An `OUTCOME_UNKNOWN` change waiting to be settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsettled {
    pub(crate) record_id: String,
    /// The agent's state before the change, as the unknown record has it: the settlement says the same.
    pub(crate) previous_state: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) user_id: String,
    pub(crate) state: String,
    pub(crate) reason_code: String,
    pub(crate) reference: Option<String>,
    pub(crate) tenant_state: &'static str,
    pub(crate) out_state_id: Option<u64>,
    /// Wall clock (ms) of the first send (or the approval, if that is all that is known).
    pub(crate) first_sent_ms: u64,
    /// Wall clock (ms) when it ended unknown: its sends had all been answered or timed out.
    pub(crate) done_ms: u64,
    /// Wall clock (ms) of the first send of our next change of the same agent: what the tenant shows from
    /// then on may be that change's doing.
    pub(crate) until_ms: Option<u64>,
    /// Monotonic (ms): when it may be settled as not applied.
    pub(crate) decide_after_mono: u64,
    /// A state-history read is wanted or under way.
    pub(crate) history: HistoryRead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HistoryRead {
    None,
    Wanted,
    InFlight,
    /// The tenant's answers cannot tell: it stays unknown.
    Undecidable,
}

/// Where a poll stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PollPhase {
    /// The next poll starts at this monotonic time.
    Due(u64),
    /// Waiting for the pacer (and a token): the first page, or the page at this URL.
    Queued(Option<String>),
    /// A page is in flight.
    InFlight,
    /// A page failed transiently; it is asked for again at this monotonic time.
    Backoff {
        until_mono: u64,
        url: Option<String>,
    },
}

/// The observer's state inside the engine.
#[derive(Clone, Debug)]
pub(crate) struct Observer {
    pub(crate) running: bool,
    /// Monotonic time observation started.
    pub(crate) started_mono: u64,
    /// Unix time observation started: no observed stretch begins earlier.
    pub(crate) started_unix: u64,
    /// Wall clock at the start of the poll under way.
    pub(crate) poll_started_unix: u64,
    /// Agents whose change the poll under way reported.
    pub(crate) changed: usize,
    /// The page request in flight.
    pub(crate) in_flight: Option<crate::http::RequestId>,
    /// The URL of the page being read (`None`: the first page).
    pub(crate) current_url: Option<String>,
    /// The state-history request in flight.
    pub(crate) history_request: Option<crate::http::RequestId>,
    pub(crate) phase: PollPhase,
    /// The last complete poll's `lastPollTime`.
    pub(crate) updated_since: Option<String>,
    /// This poll's first page's `lastPollTime`.
    pub(crate) poll_time: Option<String>,
    /// Monotonic start of the poll under way.
    pub(crate) poll_started_mono: u64,
    pub(crate) pages: u32,
    pub(crate) retries: u32,
    pub(crate) auth_resent: bool,
    pub(crate) polls: u64,
    /// Monotonic and wall-clock end of the last successful poll, and the monotonic start of that poll.
    pub(crate) last_success: Option<(u64, u64, u64)>,
    pub(crate) seen: BTreeMap<String, Seen>,
    pub(crate) sent: BTreeMap<String, Vec<Sent>>,
    pub(crate) unsettled: Vec<Unsettled>,
    /// The agent whose state history is in flight.
    pub(crate) history_user: Option<String>,
    pub(crate) last_error: Option<TransitionError>,
}

impl Default for Observer {
    fn default() -> Self {
        Self {
            running: false,
            started_mono: 0,
            started_unix: 0,
            poll_started_unix: 0,
            changed: 0,
            in_flight: None,
            current_url: None,
            history_request: None,
            phase: PollPhase::Due(0),
            updated_since: None,
            poll_time: None,
            poll_started_mono: 0,
            pages: 0,
            retries: 0,
            auth_resent: false,
            polls: 0,
            last_success: None,
            seen: BTreeMap::new(),
            sent: BTreeMap::new(),
            unsettled: Vec::new(),
            history_user: None,
            last_error: None,
        }
    }
}

/// How many of an agent's recent changes are kept for matching.
pub(crate) const SENT_PER_AGENT: usize = 8;

/// Unknown outcomes kept for settling; past this, the oldest is dropped (it stays unknown).
pub(crate) const MAX_UNSETTLED: usize = 10_000;

/// A poll that has not ended after this many pages is taken as a paging loop.
pub(crate) const MAX_POLL_PAGES: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_states_are_named_for_the_history() {
        let t = ReasonCodeTable::default();
        assert_eq!(history_state("Available", None, &t), READY);
        assert_eq!(history_state("available", Some("x"), &t), READY);
        assert_eq!(history_state("Unavailable", Some("Break"), &t), NOT_READY);
        assert_eq!(history_state("Unavailable", Some("Adhoc"), &t), PAUSED);
        assert_eq!(history_state("Unavailable", Some("System Idle"), &t), IDLE);
        assert_eq!(history_state("Unavailable", Some("Lunch"), &t), NOT_READY);
        assert_eq!(history_state("Unavailable", None, &t), NOT_READY);
        assert_eq!(history_state("InboundContact", None, &t), "INBOUND_CONTACT");
        assert_eq!(
            history_state("OutboundConsult", None, &t),
            "OUTBOUND_CONSULT"
        );
        assert_eq!(history_state("LoggedOut", None, &t), LOGGED_OUT);
        assert_eq!(history_state("LoggedIn", None, &t), LOGGED_IN);
        assert_eq!(history_state("Dialer", None, &t), "DIALER");
        assert_eq!(
            history_state("After Call Work", None, &t),
            "AFTER_CALL_WORK"
        );
    }

    #[test]
    fn classes_default_and_configurable() {
        let c = StateClasses::default();
        assert_eq!(c.class_of(READY), StateClass::Working);
        assert_eq!(c.class_of("INBOUND_CONTACT"), StateClass::Working);
        assert_eq!(c.class_of("DIALER"), StateClass::Working);
        assert_eq!(c.class_of(NOT_READY), StateClass::Idle);
        assert_eq!(c.class_of(LOGGED_IN), StateClass::Idle);
        assert_eq!(c.class_of(LOGGED_OUT), StateClass::Offline);
        assert_eq!(c.class_of("ON_CALL"), StateClass::Other);
        let mut c = c;
        c.working.push("ON_CALL".into());
        assert_eq!(c.class_of("ON_CALL"), StateClass::Working);
    }

    #[test]
    fn config_limits() {
        assert!(ObserveConfig::default().validate().is_ok());
        let c = ObserveConfig {
            interval_ms: 500,
            ..ObserveConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "observe.intervalMs",
                ..
            })
        ));
        let c = ObserveConfig {
            stale_after_ms: 5_000,
            ..ObserveConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
