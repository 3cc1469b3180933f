//! The tenant-side CXone state of every agent, its true timeline, and agents acting on their own.
//!
//! Every agent holds the state a real tenant would report for it (`agentStateName`/`agentStateId` of
//! `cxone-api-facts.md` §7, its unavailable code, `lastUpdateTime`, `sessionStartTime`). Each change, whoever
//! makes it, is appended to the agent's **truth timeline** ([`TruthEntry`]): what an observer polling
//! `GET …/agents/states?updatedSince=` should be able to reconstruct.
//!
//! Changes come from:
//! - the API (`SetAgentState` of the `cxone` profile, the `seed` set-state): [`TruthSource::Api`];
//! - the plan's `logged_out` windows and, with [`ActivityConfig::log_in_out`], the shifts:
//!   [`TruthSource::Session`];
//! - the activity of [`ActivityConfig`] (off by default): the agent itself, a supervisor, the ACD's contacts;
//! - [`SimTenant::external_change`](super::SimTenant::external_change), for tests.
//!
//! **Determinism.** The activity is drawn lazily, event by event, from generators of its own: one
//! [`DetRng`] per agent and per kind of activity, seeded from `SimConfig::seed` and the agent's `agentId`. It
//! never draws from the tenant's shared generator, so latencies, faults and tokens stay exactly as they were
//! with the activity off. Each event draws the same numbers whatever the agent's state, so the event *times*
//! of an agent depend only on the seed, its `agentId`, the rates and when its activity started. Events are
//! materialised with their true timestamps up to `now` before every request is processed; the work is
//! proportional to the number of events, not to the time elapsed.
//!
//! An agent's activity starts the first time the tenant's clock is advanced after the agent is added (by a
//! request, [`SimTenant::advance_to`](super::SimTenant::advance_to), a truth-timeline read or an external
//! change). Like the engine's, the tenant's clock must not run backwards: an API change at `t` is applied
//! after the activity up to `t`, so reading the timeline ahead of the requests to come would order them after
//! activity that had not yet happened.
//!
//! Exponential draws use `f64::ln` and are rounded up to whole milliseconds; hosts whose `ln` differed in the
//! last bit could in theory round one event a millisecond apart.

use serde::{Deserialize, Serialize};

use super::cxone::{recorded_state, team_codes};
use super::{AgentPlan, AgentSim};
use crate::error::ConfigError;
use crate::rng::DetRng;
use crate::state::READY;

/// How agents, supervisors and the ACD change agents' states on their own. All off by default, so a tenant
/// without it behaves (and draws random numbers) exactly as before it existed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ActivityConfig {
    /// How often, per agent and hour, the agent changes its own state: from `Available` to `Unavailable` with
    /// a random non-ACW code of its team (plain `Unavailable` for a team without codes), or back to
    /// `Available`. Ignored while logged out or on a contact.
    pub agent_changes_per_hour: f64,
    /// How often, per agent and hour, the ACD offers a contact; one is taken only while `Available`:
    /// `InboundContact` or `OutboundContact`, one in ten a consult, then back to `Available`.
    pub contacts_per_hour: f64,
    /// The mean duration of a contact (exponentially distributed, at least one second).
    pub contact_mean_s: f64,
    /// How often, per agent and hour, a supervisor sets the agent `Unavailable` with a random non-ACW code or,
    /// half the time when it is already unavailable, `Available`. Ignored while logged out or on a contact.
    pub supervisor_changes_per_hour: f64,
    /// Agents are `LoggedOut` outside their shifts: at a shift's start they log in (`LoggedIn`, then plain
    /// `Unavailable`), at its end they log out (ending any contact).
    pub log_in_out: bool,
}

/// A contact lasts three minutes on average unless configured otherwise: a typical handle time for voice.
const DEFAULT_CONTACT_MEAN_S: f64 = 180.0;

/// The shortest contact: a real one is never shorter than a second.
const MIN_CONTACT_MS: u64 = 1000;

const HOUR_MS: f64 = 3_600_000.0;

impl Default for ActivityConfig {
    fn default() -> Self {
        Self {
            agent_changes_per_hour: 0.0,
            contacts_per_hour: 0.0,
            contact_mean_s: DEFAULT_CONTACT_MEAN_S,
            supervisor_changes_per_hour: 0.0,
            log_in_out: false,
        }
    }
}

impl ActivityConfig {
    /// Checks that every rate and the mean contact duration are finite and not negative; the error names the
    /// field (as in JSON, under `activity.`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("activity.agentChangesPerHour", self.agent_changes_per_hour),
            ("activity.contactsPerHour", self.contacts_per_hour),
            ("activity.contactMeanS", self.contact_mean_s),
            (
                "activity.supervisorChangesPerHour",
                self.supervisor_changes_per_hour,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be a finite number, 0 or more".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether this is the default (everything off): then it is left out of a `SimConfig`'s JSON.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Who made a change in the truth timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TruthSource {
    /// Through the API: `SetAgentState` (`cxone`) or the `seed` set-state.
    Api,
    /// The agent itself.
    Agent,
    /// A supervisor.
    Supervisor,
    /// The ACD: a contact starting or ending.
    Acd,
    /// A session starting or ending (log in, log out), and the state every agent starts in.
    Session,
}

/// One change of an agent's tenant state, at its true time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthEntry {
    /// When the change happened (Unix ms).
    pub at_ms: u64,
    /// The new `agentStateName`: `LoggedOut`, `Available`, `Unavailable`, `InboundContact`, …
    pub state_name: String,
    /// The new `agentStateId` (`cxone-api-facts.md` §7: LoggedOut 0 … LoggedIn 8).
    pub state_id: u8,
    /// The unavailable code's `outStateId`, when `Unavailable` with a code.
    pub out_state_id: Option<u64>,
    /// The unavailable code's name (e.g. `Lunch`), when `Unavailable` with a code.
    pub code: Option<String>,
    /// Who made the change.
    pub source: TruthSource,
}

/// `agentStateName`, numbered as `agentStateId` \[C: SDK `agent-states-id.js`\].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CxState {
    LoggedOut = 0,
    Available = 1,
    Unavailable = 2,
    InboundContact = 3,
    OutboundContact = 4,
    InboundConsult = 5,
    OutboundConsult = 6,
    Dialer = 7,
    LoggedIn = 8,
}

const ALL_STATES: [CxState; 9] = [
    CxState::LoggedOut,
    CxState::Available,
    CxState::Unavailable,
    CxState::InboundContact,
    CxState::OutboundContact,
    CxState::InboundConsult,
    CxState::OutboundConsult,
    CxState::Dialer,
    CxState::LoggedIn,
];

impl CxState {
    pub(super) fn id(self) -> u8 {
        self as u8
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::LoggedOut => "LoggedOut",
            Self::Available => "Available",
            Self::Unavailable => "Unavailable",
            Self::InboundContact => "InboundContact",
            Self::OutboundContact => "OutboundContact",
            Self::InboundConsult => "InboundConsult",
            Self::OutboundConsult => "OutboundConsult",
            Self::Dialer => "Dialer",
            Self::LoggedIn => "LoggedIn",
        }
    }

    /// A state name, ignoring case.
    pub(super) fn parse(name: &str) -> Option<Self> {
        ALL_STATES
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// On a contact (or dialling): the ACD owns the agent.
    pub(super) fn is_contact(self) -> bool {
        matches!(
            self,
            Self::InboundContact
                | Self::OutboundContact
                | Self::InboundConsult
                | Self::OutboundConsult
                | Self::Dialer
        )
    }

    pub(super) fn is_outbound(self) -> bool {
        matches!(
            self,
            Self::OutboundContact | Self::OutboundConsult | Self::Dialer
        )
    }

    /// `agentStateCategory` \[I: the spec gives no values\]: `Available`, `Unavailable` (also while logged
    /// in without a state), `Working` on a contact, `LoggedOut`.
    pub(super) fn category(self) -> &'static str {
        match self {
            Self::LoggedOut => "LoggedOut",
            Self::Available => "Available",
            Self::Unavailable | Self::LoggedIn => "Unavailable",
            _ => "Working",
        }
    }

    /// The string state the `seed` side and `SimTenant::agent_state` show: what `SetAgentState` would record
    /// for `Available`/`Unavailable`, the state name in upper snake case otherwise (`INBOUND_CONTACT`).
    fn legacy(self, code: Option<Code>) -> String {
        match self {
            Self::Available => READY.to_owned(),
            Self::Unavailable => recorded_state(code.map(|(_, name, _)| name)),
            other => {
                let mut out = String::new();
                for (i, c) in other.name().chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_uppercase());
                }
                out
            }
        }
    }
}

/// An unavailable code: `(outStateId, name, isAcw)`.
pub(super) type Code = (u64, &'static str, bool);

/// A contact in progress.
#[derive(Clone, Copy, Debug)]
pub(super) struct Contact {
    /// The `contactId` the tenant reports.
    pub(super) id: u64,
    /// When the ACD ends it; `None` for one started by [`SimTenant::external_change`](super::SimTenant::external_change).
    pub(super) end_ms: Option<u64>,
}

/// What the tenant reports for one agent, and how it got there.
#[derive(Debug)]
pub(super) struct TenantState {
    pub(super) name: CxState,
    pub(super) code: Option<Code>,
    pub(super) last_update_ms: u64,
    pub(super) session_start_ms: u64,
    pub(super) contact: Option<Contact>,
    pub(super) timeline: Vec<TruthEntry>,
    contacts_started: u64,
    generator: Option<Generator>,
}

/// The agent's activity: its own generators and what is due next.
#[derive(Debug)]
struct Generator {
    /// The agent's own changes, the supervisor's, the ACD's contact offers.
    streams: [Stream; 3],
    /// Session edges (logged-out windows, and shifts with `log_in_out`) still to come, ascending.
    boundaries: Vec<u64>,
    cursor: usize,
    /// Everything up to here has been applied.
    materialized_ms: u64,
}

#[derive(Debug)]
struct Stream {
    rng: DetRng,
    /// Mean time between events; `None` when off.
    mean_ms: Option<f64>,
    next_ms: Option<u64>,
}

const AGENT: usize = 0;
const SUPERVISOR: usize = 1;
const CONTACTS: usize = 2;

/// What happens next to an agent, in the order simultaneous events apply.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Boundary,
    ContactEnd,
    Stream(usize),
}

/// SplitMix64's finaliser: spreads a seed, an `agentId` and a stream number over independent seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An exponential draw with mean `mean_ms`, at least 1 ms.
fn exponential_ms(rng: &mut DetRng, mean_ms: f64) -> u64 {
    let u = rng.unit();
    let ms = (-(1.0 - u).ln() * mean_ms).ceil();
    // `as` saturates: an absurdly long wait is simply never reached.
    (ms as u64).max(1)
}

fn mean_ms(per_hour: f64) -> Option<f64> {
    (per_hour > 0.0).then(|| HOUR_MS / per_hour)
}

/// Whether the agent has an ACD session at `at_ms`.
fn in_session(plan: &AgentPlan, log_in_out: bool, at_ms: u64) -> bool {
    !plan.logged_out.iter().any(|w| w.contains(at_ms))
        && (!log_in_out || plan.shift_at(at_ms).is_some())
}

/// The session edges after `after_ms`, ascending.
fn boundaries(plan: &AgentPlan, log_in_out: bool, after_ms: u64) -> Vec<u64> {
    let shifts = plan.shifts.iter().filter(|_| log_in_out);
    let mut edges: Vec<u64> = plan
        .logged_out
        .iter()
        .chain(shifts)
        .flat_map(|w| [w.start_ms, w.end_ms])
        .filter(|&t| t > after_ms)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

impl TenantState {
    /// A new agent added when the tenant's clock reads `at_ms`: a session has started (plain `Unavailable`)
    /// then, unless it has none then.
    pub(super) fn new(plan: &AgentPlan, activity: &ActivityConfig, at_ms: u64) -> Self {
        let name = if in_session(plan, activity.log_in_out, at_ms) {
            CxState::Unavailable
        } else {
            CxState::LoggedOut
        };
        Self {
            name,
            code: None,
            last_update_ms: at_ms,
            session_start_ms: at_ms,
            contact: None,
            timeline: vec![TruthEntry {
                at_ms,
                state_name: name.name().to_owned(),
                state_id: name.id(),
                out_state_id: None,
                code: None,
                source: TruthSource::Session,
            }],
            contacts_started: 0,
            generator: None,
        }
    }

    /// When the next activity event is due, if any (`None` before the activity started).
    pub(super) fn next_due_ms(&self) -> Option<u64> {
        self.next_due().map(|(at, _)| at)
    }

    fn next_due(&self) -> Option<(u64, Due)> {
        let generator = self.generator.as_ref()?;
        let boundary = generator
            .boundaries
            .get(generator.cursor)
            .map(|&t| (t, Due::Boundary));
        let contact_end = self
            .contact
            .and_then(|c| c.end_ms)
            .map(|t| (t, Due::ContactEnd));
        let streams = generator
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.next_ms?, Due::Stream(i))));
        boundary.into_iter().chain(contact_end).chain(streams).min()
    }

    /// Whether the agent's activity has started.
    pub(super) fn started(&self) -> bool {
        self.generator.is_some()
    }

    /// The next `contactId`: the `agentId` followed by a counter, so ids never collide between agents.
    pub(super) fn new_contact(&mut self, agent_id: u64, end_ms: Option<u64>) -> Contact {
        self.contacts_started += 1;
        Contact {
            id: agent_id * 1_000_000 + self.contacts_started,
            end_ms,
        }
    }
}

impl AgentSim {
    /// Applies a change to the tenant state and appends it to the truth timeline, unless it changes nothing
    /// (same state, same code). Any change ends a contact in progress. With `legacy`, the string state
    /// follows it. Returns whether anything changed.
    pub(super) fn change(
        &mut self,
        at_ms: u64,
        name: CxState,
        code: Option<Code>,
        source: TruthSource,
        legacy: bool,
    ) -> bool {
        let t = &mut self.tenant;
        if t.name == name && t.code.map(|c| c.0) == code.map(|c| c.0) {
            return false;
        }
        if t.name == CxState::LoggedOut {
            t.session_start_ms = at_ms;
        }
        t.name = name;
        t.code = code;
        t.last_update_ms = at_ms;
        t.contact = None;
        t.timeline.push(TruthEntry {
            at_ms,
            state_name: name.name().to_owned(),
            state_id: name.id(),
            out_state_id: code.map(|c| c.0),
            code: code.map(|c| c.1.to_owned()),
            source,
        });
        if legacy {
            self.state = Some(name.legacy(code));
        }
        true
    }

    /// The agent's team's codes that are not ACW codes.
    fn plain_codes(&self) -> Vec<Code> {
        team_codes(self.identity.team_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.2)
            .collect()
    }

    /// Starts (or restarts, with new settings) the agent's activity at `at_ms`: the streams are drawn anew
    /// from there with the current rates, the session edges from the plan, and the session made to agree
    /// with the plan at `at_ms`. A restart keeps each stream's generator where it was.
    pub(super) fn start_activity(&mut self, at_ms: u64, activity: &ActivityConfig, seed: u64) {
        let agent_id = self.identity.agent_id.0;
        let old = self.tenant.generator.take();
        let rates = [
            activity.agent_changes_per_hour,
            activity.supervisor_changes_per_hour,
            activity.contacts_per_hour,
        ];
        let mut streams = old.map_or_else(
            || {
                [0u64, 1, 2].map(|i| Stream {
                    rng: DetRng::new(mix(seed ^ mix(agent_id ^ mix(i)))),
                    mean_ms: None,
                    next_ms: None,
                })
            },
            |g| g.streams,
        );
        for (stream, rate) in streams.iter_mut().zip(rates) {
            stream.mean_ms = mean_ms(rate);
            stream.next_ms = stream
                .mean_ms
                .map(|mean| at_ms.saturating_add(exponential_ms(&mut stream.rng, mean)));
        }
        self.tenant.generator = Some(Generator {
            streams,
            boundaries: boundaries(&self.plan, activity.log_in_out, at_ms),
            cursor: 0,
            materialized_ms: at_ms,
        });
        self.reconcile_session(at_ms, activity.log_in_out);
    }

    /// The plan changed: its session edges are taken again from `at_ms` on, the rest of the activity goes on.
    pub(super) fn replan(&mut self, at_ms: u64, activity: &ActivityConfig) {
        let Some(generator) = self.tenant.generator.as_mut() else {
            return;
        };
        let at_ms = at_ms.max(generator.materialized_ms);
        generator.boundaries = boundaries(&self.plan, activity.log_in_out, at_ms);
        generator.cursor = 0;
        self.reconcile_session(at_ms, activity.log_in_out);
    }

    /// Logs the agent in or out at `at_ms` if its session disagrees with the plan then.
    fn reconcile_session(&mut self, at_ms: u64, log_in_out: bool) {
        let wanted = in_session(&self.plan, log_in_out, at_ms);
        let logged_out = self.tenant.name == CxState::LoggedOut;
        // The plan's logged-out windows always existed without touching the string state; only the
        // activity's log-in/out (new) writes it.
        if wanted && logged_out {
            self.change(
                at_ms,
                CxState::LoggedIn,
                None,
                TruthSource::Session,
                log_in_out,
            );
            self.change(
                at_ms,
                CxState::Unavailable,
                None,
                TruthSource::Session,
                log_in_out,
            );
        } else if !wanted && !logged_out {
            self.change(
                at_ms,
                CxState::LoggedOut,
                None,
                TruthSource::Session,
                log_in_out,
            );
        }
    }

    /// Applies every activity event up to `until_ms` (inclusive), in time order. The first call starts the
    /// activity at `until_ms`.
    pub(super) fn materialize(&mut self, until_ms: u64, activity: &ActivityConfig, seed: u64) {
        if !self.tenant.started() {
            self.start_activity(until_ms, activity, seed);
            return;
        }
        while let Some((at_ms, due)) = self.tenant.next_due().filter(|(t, _)| *t <= until_ms) {
            match due {
                Due::Boundary => {
                    if let Some(g) = self.tenant.generator.as_mut() {
                        g.cursor += 1;
                    }
                    self.reconcile_session(at_ms, activity.log_in_out);
                }
                Due::ContactEnd => {
                    self.change(at_ms, CxState::Available, None, TruthSource::Acd, true);
                }
                Due::Stream(i) => self.stream_event(i, at_ms, activity),
            }
            if let Some(g) = self.tenant.generator.as_mut() {
                g.materialized_ms = at_ms;
            }
        }
        if let Some(g) = self.tenant.generator.as_mut() {
            g.materialized_ms = g.materialized_ms.max(until_ms);
        }
    }

    /// One event of stream `i` at `at_ms`. It always draws the same four numbers (the wait for the next
    /// event, a choice, a code, a duration), whatever the agent's state, so the stream's times never depend on
    /// what the others did.
    fn stream_event(&mut self, i: usize, at_ms: u64, activity: &ActivityConfig) {
        let agent_id = self.identity.agent_id.0;
        let codes = self.plain_codes();
        let Some(stream) = self.tenant.generator.as_mut().map(|g| &mut g.streams[i]) else {
            return;
        };
        let Some(mean) = stream.mean_ms else {
            stream.next_ms = None;
            return;
        };
        stream.next_ms = Some(at_ms.saturating_add(exponential_ms(&mut stream.rng, mean)));
        let choice = stream.rng.below(20);
        let code = codes
            .get(stream.rng.below(codes.len() as u64) as usize)
            .copied();
        let contact_ms =
            exponential_ms(&mut stream.rng, activity.contact_mean_s * 1000.0).max(MIN_CONTACT_MS);
        let current = self.tenant.name;
        let free = matches!(
            current,
            CxState::Available | CxState::Unavailable | CxState::LoggedIn
        );
        match i {
            AGENT if free => {
                let (name, code) = if current == CxState::Available {
                    (CxState::Unavailable, code)
                } else {
                    (CxState::Available, None)
                };
                self.change(at_ms, name, code, TruthSource::Agent, true);
            }
            SUPERVISOR if free => {
                let (name, code) = if current != CxState::Available && choice < 10 {
                    (CxState::Available, None)
                } else {
                    (CxState::Unavailable, code)
                };
                self.change(at_ms, name, code, TruthSource::Supervisor, true);
            }
            CONTACTS if current == CxState::Available => {
                let name = match choice {
                    0 => CxState::InboundConsult,
                    1 => CxState::OutboundConsult,
                    2..=10 => CxState::InboundContact,
                    _ => CxState::OutboundContact,
                };
                self.change(at_ms, name, None, TruthSource::Acd, true);
                let contact = self
                    .tenant
                    .new_contact(agent_id, Some(at_ms.saturating_add(contact_ms)));
                self.tenant.contact = Some(contact);
            }
            _ => {}
        }
    }
}
