//! The `cxone` profile's policy facts: the agent directory, each agent's schedule export and each team's
//! unavailable codes, cached and shared by every change that needs them.
//!
//! A change in `Checking` asks [`Facts::needs`] what it still lacks. The answer is a decision made locally
//! (approved with its resolved `SetAgentState` target, or refused), or the one fact to fetch first. A fact
//! is fetched by one request at a time however many changes wait for it (single flight, like the token), and
//! its answer wakes them all. Refetching on a miss is bounded: the directory at most once per
//! [`CxoneConfig::directory_refetch_ms`], a team's codes at most once per
//! [`CxoneConfig::codes_refetch_ms`], so a run of misses costs one extra request, not one each.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::change::Verdict;
use crate::cxone::acd::{AgentId, CxoneState, DirectoryAgent, UnavailableCode};
use crate::cxone::wfm::{AgentSchedule, ScheduleCacheEntry};
use crate::cxone::CxoneConfig;
use crate::error::{ErrorCode, TransitionError};
use crate::events::{RequestKind, TransitionId};
use crate::http::RequestId;
use crate::state::{AgentState, UserId};
use crate::time::{iso8601, Now};

/// Which host a request goes to: each has its own pacer, and a 429 pauses only its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// The ACD/Admin API (and, for `seed`, the one API there is).
    Acd = 0,
    /// The WFM host (`cxone` schedule export).
    Wfm = 1,
}

/// A fact a change may need.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FactKey {
    /// The whole agent directory (paged).
    Directory,
    /// One agent's schedule export, by UserHub `userID`.
    Schedule(String),
    /// One team's unavailable codes.
    Codes(u64),
}

impl FactKey {
    pub(crate) fn host(&self) -> Host {
        match self {
            Self::Schedule(_) => Host::Wfm,
            Self::Directory | Self::Codes(_) => Host::Acd,
        }
    }

    pub(crate) fn kind(&self) -> RequestKind {
        match self {
            Self::Directory => RequestKind::Directory,
            Self::Schedule(_) => RequestKind::ScheduleExport,
            Self::Codes(_) => RequestKind::UnavailableCodes,
        }
    }
}

/// What a change set to go out on `cxone` is sent as, decided while checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) agent_id: AgentId,
    pub(crate) target: CxoneState,
}

/// What a checking change needs next.
#[derive(Debug)]
pub(crate) enum Needs {
    /// Policy allows it (or a supervisor's override passed the refusal given); send it as this.
    Ready(Resolved, Option<TransitionError>),
    /// Fetch this fact first (or wait for the fetch under way).
    Fetch(FactKey),
    /// It ends here, before anything is sent.
    Fail(Verdict),
}

/// Where one fact's fetch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchState {
    /// Waiting for its host's pacer (and a token).
    Queued,
    /// Sent.
    InFlight(RequestId),
    /// Waiting to be sent again.
    Backoff { until_mono: u64 },
}

/// One fact being fetched, and the changes waiting for it.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub(crate) state: FetchState,
    pub(crate) waiters: Vec<TransitionId>,
    /// Retries spent.
    pub(crate) retries: u32,
    /// A 401 was answered by refreshing the token once.
    pub(crate) auth_resent: bool,
    /// When the host first throttled this fetch with a `Retry-After` (monotonic).
    pub(crate) throttled_since: Option<u64>,
    /// The directory's paging: where the next page starts, and the agents read so far.
    pub(crate) skip: u64,
    pub(crate) partial: Vec<DirectoryAgent>,
    /// Directory pages read so far.
    pub(crate) pages: u32,
}

impl Fetch {
    fn new() -> Self {
        Self {
            state: FetchState::Queued,
            waiters: Vec::new(),
            retries: 0,
            auth_resent: false,
            throttled_since: None,
            skip: 0,
            partial: Vec::new(),
            pages: 0,
        }
    }
}

/// The facts cache and its fetches.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    directory: BTreeMap<AgentId, DirectoryAgent>,
    /// When the directory was last read whole (monotonic).
    directory_read_mono: Option<u64>,
    /// Schedule exports by `userID`, with when each was read (monotonic).
    schedules: BTreeMap<String, ScheduleCacheEntry>,
    /// Unavailable codes by team, with when they were read (monotonic).
    codes: BTreeMap<u64, (Vec<UnavailableCode>, u64)>,
    pub(crate) fetches: BTreeMap<FactKey, Fetch>,
    /// Facts waiting for their host's pacer, per host.
    pub(crate) queues: [VecDeque<FactKey>; 2],
    /// Exports used since they were read, by when a prefetch reads them again (monotonic): the last tenth
    /// of their TTL.
    prefetch_due: BTreeSet<(u64, String)>,
}

impl Facts {
    /// The schedule exports held, as adherence reads them, by our user id (the `agentId`).
    pub(crate) fn known_schedules(
        &self,
        rule: &crate::cxone::wfm::BreakRule,
    ) -> BTreeMap<String, Vec<crate::adherence::ScheduledShift>> {
        self.directory
            .iter()
            .filter_map(|(id, agent)| {
                let e = self.schedules.get(&agent.user_id)?;
                let shifts = e.schedule.shifts.iter().map(|s| s.to_adherence(rule));
                Some((id.to_string(), shifts.collect()))
            })
            .collect()
    }

    /// Decides what the change still needs. `since_mono` is when its current check began: a fact read since
    /// then is used even when a miss would otherwise read it again (so no change waits for a fact twice).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn needs(
        &mut self,
        config: &CxoneConfig,
        commit_window_ms: u64,
        user: &UserId,
        state: &AgentState,
        explicit_reason: Option<&str>,
        overriding: bool,
        since_mono: u64,
        now: Now,
    ) -> Needs {
        let agent_id = match AgentId::parse(user) {
            Ok(a) => a,
            Err(e) => return Needs::Fail(Verdict::NotCompleted(e)),
        };
        let may_refetch = |read: Option<u64>, every: u64| match read {
            None => true,
            Some(at) => at < since_mono && now.mono_ms.saturating_sub(at) >= every,
        };
        let Some(agent) = self.directory.get(&agent_id) else {
            if may_refetch(self.directory_read_mono, config.directory_refetch_ms) {
                return Needs::Fetch(FactKey::Directory);
            }
            return Needs::Fail(Verdict::NotCompleted(TransitionError::new(
                ErrorCode::UnknownAgent,
                format!("agent {agent_id} is not in the tenant's agent directory"),
            )));
        };
        let ttl = config.schedule_ttl_ms;
        let schedule = match self.schedules.get(&agent.user_id) {
            Some(e) if e.fresh(now, ttl) || e.fetched_at_ms >= since_mono => {
                self.prefetch_due
                    .insert((prefetch_at(e.fetched_at_ms, ttl), agent.user_id.clone()));
                &e.schedule
            }
            _ => return Needs::Fetch(FactKey::Schedule(agent.user_id.clone())),
        };
        let overridden = match decide(schedule, config, commit_window_ms, state, now) {
            Err(e) if !overriding => return Needs::Fail(Verdict::Policy(e)),
            result => result.err(),
        };
        let Some(name) = config.reason_codes.code_name_for(state, explicit_reason) else {
            return Needs::Ready(
                Resolved {
                    agent_id,
                    target: CxoneState::Available,
                },
                overridden,
            );
        };
        let team = agent.team_id;
        let codes = self.codes.get(&team);
        // Codes are read again once they are as old as a schedule export (an admin may retire one).
        if codes.is_some_and(|c| c.1 < since_mono && now.mono_ms.saturating_sub(c.1) >= ttl) {
            return Needs::Fetch(FactKey::Codes(team));
        }
        if let Some((codes, _)) = codes {
            if let Ok(target) = config.reason_codes.target_for(state, Some(&name), codes) {
                return Needs::Ready(Resolved { agent_id, target }, overridden);
            }
        }
        if may_refetch(codes.map(|c| c.1), config.codes_refetch_ms) {
            return Needs::Fetch(FactKey::Codes(team));
        }
        let known = codes.map_or(0, |c| c.0.len());
        Needs::Fail(Verdict::NotCompleted(TransitionError::new(
            ErrorCode::UnknownReasonCode,
            format!(
                "{state} needs the unavailable code `{name}`, which team {team} of agent {agent_id} does not have ({known} codes)"
            ),
        )))
    }

    /// Adds `waiter` to the fetch of `key`, starting the fetch if none is under way. Returns whether a new
    /// fetch was queued.
    pub(crate) fn wait_for(&mut self, key: FactKey, waiter: TransitionId) -> bool {
        let host = key.host() as usize;
        let mut queued = false;
        let fetch = self.fetches.entry(key.clone()).or_insert_with(|| {
            queued = true;
            Fetch::new()
        });
        if !fetch.waiters.contains(&waiter) {
            fetch.waiters.push(waiter);
        }
        if queued {
            self.queues[host].push_back(key);
        }
        queued
    }

    /// Ends the fetch of `key`, returning its waiters.
    pub(crate) fn end_fetch(&mut self, key: &FactKey) -> Vec<TransitionId> {
        self.fetches
            .remove(key)
            .map(|f| f.waiters)
            .unwrap_or_default()
    }

    /// Stores a directory read whole.
    pub(crate) fn store_directory(&mut self, agents: Vec<DirectoryAgent>, now: Now) {
        self.directory = agents.into_iter().map(|a| (a.agent_id, a)).collect();
        self.directory_read_mono = Some(now.mono_ms);
    }

    /// The first export due for a prefetch at `now_mono` that no fetch is reading yet, taken off the list
    /// (its fetch is started, with no waiter); or, when none is due, when the next one will be.
    pub(crate) fn take_prefetch(&mut self, now_mono: u64) -> Result<FactKey, Option<u64>> {
        while let Some((due, user_id)) = self.prefetch_due.first().cloned() {
            if due > now_mono {
                return Err(Some(due));
            }
            self.prefetch_due.pop_first();
            let key = FactKey::Schedule(user_id);
            if !self.fetches.contains_key(&key) {
                self.fetches.insert(key.clone(), Fetch::new());
                return Ok(key);
            }
        }
        Err(None)
    }

    /// When the next prefetch is due, if any export is waiting for one.
    pub(crate) fn next_prefetch(&self) -> Option<u64> {
        self.prefetch_due.first().map(|(due, _)| *due)
    }

    /// Stores a schedule export; at most `max` are kept (the oldest read goes first).
    pub(crate) fn store_schedule(
        &mut self,
        user_id: String,
        schedule: AgentSchedule,
        now: Now,
        max: usize,
    ) {
        // A fresh read is used again before it is prefetched again.
        self.prefetch_due.retain(|(_, u)| *u != user_id);
        if self.schedules.len() >= max && !self.schedules.contains_key(&user_id) {
            let oldest = self
                .schedules
                .iter()
                .min_by_key(|(_, e)| e.fetched_at_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.prefetch_due.retain(|(_, u)| *u != k);
                self.schedules.remove(&k);
            }
        }
        self.schedules.insert(
            user_id,
            ScheduleCacheEntry {
                schedule,
                fetched_at_ms: now.mono_ms,
            },
        );
    }

    /// The tenant refused a state change as malformed or for an unknown agent: the agent's directory entry
    /// and its team's codes may be out of date (moved to another team, a code retired), so both are read
    /// again by the next change that needs them.
    pub(crate) fn forget_agent(&mut self, agent_id: AgentId) {
        if let Some(agent) = self.directory.remove(&agent_id) {
            self.codes.remove(&agent.team_id);
            // The directory is read again for the agent at its next change, not a minute later.
            self.directory_read_mono = None;
        }
    }

    /// Stores a team's unavailable codes.
    pub(crate) fn store_codes(&mut self, team: u64, codes: Vec<UnavailableCode>, now: Now) {
        self.codes.insert(team, (codes, now.mono_ms));
    }

    /// Whether any fact waits for its host's pacer.
    pub(crate) fn any_queued(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// The earliest end of a fact's backoff.
    pub(crate) fn next_backoff(&self) -> Option<u64> {
        self.fetches
            .values()
            .filter_map(|f| match f.state {
                FetchState::Backoff { until_mono } => Some(until_mono),
                _ => None,
            })
            .min()
    }

    /// Puts every fact whose backoff has ended back in its host's queue.
    pub(crate) fn expire_backoffs(&mut self, now_mono: u64) {
        for (key, f) in &mut self.fetches {
            if let FetchState::Backoff { until_mono } = f.state {
                if until_mono <= now_mono {
                    f.state = FetchState::Queued;
                    self.queues[key.host() as usize].push_back(key.clone());
                }
            }
        }
    }

    /// Forgets every fetch (the engine closed); the cache stays.
    pub(crate) fn forget_fetches(&mut self) {
        self.fetches.clear();
        for q in &mut self.queues {
            q.clear();
        }
    }
}

/// When an export read at `fetched_mono` is read again in the background: in the last tenth of its TTL.
fn prefetch_at(fetched_mono: u64, ttl_ms: u64) -> u64 {
    fetched_mono.saturating_add(ttl_ms - ttl_ms / 10)
}

/// Policy, decided locally from the agent's schedule export: not scheduled now → `AGENT_NOT_SCHEDULED`; a
/// READY while a mandatory break is in effect, or when one starts before the change could still land (within
/// the commit window) → `MANDATORY_BREAK_VIOLATION`.
/// How far our reading of the tenant's clock may be off: its `Date` has whole seconds, and readings within
/// two seconds of ours are taken as agreeing. A break is treated as running this long after its end.
pub(crate) const BREAK_END_MARGIN_MS: u64 = 3_000;

fn decide(
    schedule: &AgentSchedule,
    config: &CxoneConfig,
    commit_window_ms: u64,
    state: &AgentState,
    now: Now,
) -> Result<(), TransitionError> {
    if !schedule.scheduled_at(now.unix_ms).scheduled {
        return Err(TransitionError::new(
            ErrorCode::AgentNotScheduled,
            "the agent has no active shift in the WFM schedule",
        ));
    }
    if !state.is_ready() {
        return Ok(());
    }
    let rule = &config.break_activities;
    // Our reading of the tenant's clock may be off by up to `BREAK_END_MARGIN_MS`: a break that ended
    // within that is taken as still running, so READY never lands in its last seconds.
    let window = schedule
        .break_at(now.unix_ms, rule)
        .window
        .or_else(|| {
            schedule
                .break_at(now.unix_ms.saturating_sub(BREAK_END_MARGIN_MS), rule)
                .window
        })
        .or_else(|| {
            let start = schedule.next_break_start_after(now.unix_ms, rule)?;
            (start < now.unix_ms.saturating_add(commit_window_ms)).then(|| {
                schedule
                    .break_at(start, rule)
                    .window
                    .expect("a break starts there")
            })
        });
    match window {
        None => Ok(()),
        Some(w) => {
            let mut e = TransitionError::new(
                ErrorCode::MandatoryBreakViolation,
                format!(
                    "a mandatory break ({} to {}) is due: READY is not allowed",
                    iso8601(w.start_ms),
                    iso8601(w.end_ms)
                ),
            );
            e.break_window = Some(w);
            Err(e)
        }
    }
}
