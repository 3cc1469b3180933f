//! The engine's side of observation (`cxone`): the poll as a timer of the engine, paced on the ACD host after
//! every change, check and fact; what each answer does to the history, the audit chain and the unknown
//! outcomes. The model and its rules are in [`crate::observe`].

use super::*;
use crate::cxone::acd::{AgentStatesPage, HistoryStretch, ObservedAgentState};
use crate::observe::{
    history_state, AgentSnapshot, HistoryRead, Observation, ObservationSource, PollPhase, Seen,
    Sent, Unsettled, MAX_POLL_PAGES, MAX_UNSETTLED, SENT_PER_AGENT,
};
use crate::{ObservationHeartbeat, OutcomeSettled, StateObserved};

/// What the observer would send next.
pub(super) enum ObserverRequest {
    Poll(Option<String>),
    History(String),
}

impl Engine {
    /// Starts observing agent states changed elsewhere (`cxone` only): the first poll goes out as soon as the
    /// pacer allows, and then every [`ObserveConfig::interval_ms`](crate::ObserveConfig) after the previous
    /// one ended. Starting twice is harmless.
    ///
    /// `OBSERVE_UNSUPPORTED` on `seed`, which has no endpoint to read states from; `CLOSED` once closed.
    pub fn start_observing(&mut self, now: Now) -> Result<(), CommandError> {
        if self.closed {
            return Err(CommandError::Closed);
        }
        if !self.cxone() {
            return Err(CommandError::ObserveUnsupported);
        }
        let now = self.clock(now);
        self.begin(now);
        if !self.observer.running {
            self.observer.running = true;
            self.observer.started_mono = now.mono_ms;
            self.observer.started_unix = now.unix_ms;
            if !matches!(self.observer.phase, PollPhase::InFlight) {
                self.observer.phase = PollPhase::Queued(None);
            }
        }
        self.run(now);
        Ok(())
    }

    /// Stops polling (a page in flight is ignored when it comes back). Unknown outcomes are then left as
    /// they are.
    pub fn stop_observing(&mut self) {
        self.observer.running = false;
        self.observer.phase = PollPhase::Due(u64::MAX);
        self.observer.in_flight = None;
        self.observer.history_user = None;
    }

    /// Whether the observer is running.
    pub fn is_observing(&self) -> bool {
        self.observer.running
    }

    /// `OUTCOME_UNKNOWN` changes that observation may still settle: those found undecidable (the tenant
    /// shows the agent in the requested state already, and its history cannot tell) are not counted, so a
    /// host waiting for this to reach 0 does not wait for what cannot come.
    pub fn unsettled_outcomes(&self) -> usize {
        self.observer
            .unsettled
            .iter()
            .filter(|u| u.history != HistoryRead::Undecidable)
            .count()
    }

    /// Every known agent's current state, where it is known from and how old it is, by user id.
    pub fn agents(&self, now: Now) -> Vec<AgentSnapshot> {
        let o = &self.observer;
        let observed_ago_ms = o
            .last_success
            .map(|(_, _, started_mono)| now.mono_ms.saturating_sub(started_mono));
        let stale = self.observation_stale(now);
        self.history
            .current_states()
            .map(|(user_id, entry)| {
                let seen = o.seen.get(user_id).filter(|s| s.state == entry.state);
                AgentSnapshot {
                    user_id: user_id.to_owned(),
                    state: entry.state.clone(),
                    since_ms: entry.entered_at_ms,
                    age_ms: now.unix_ms.saturating_sub(entry.entered_at_ms),
                    source: seen
                        .map_or("change", |s| s.observation.source.as_str())
                        .to_owned(),
                    tenant_state: seen.map(|s| s.observation.tenant_state.clone()),
                    code: seen.and_then(|s| s.observation.code.clone()),
                    observed_ago_ms: observed_ago_ms.filter(|_| o.running),
                    stale,
                }
            })
            .collect()
    }

    /// Observation is on and no poll has succeeded for `staleAfterMs`.
    fn observation_stale(&self, now: Now) -> bool {
        let o = &self.observer;
        if !o.running {
            return false;
        }
        let since = o
            .last_success
            .map_or(o.started_mono, |(_, _, started)| started);
        now.mono_ms.saturating_sub(since) > self.config.observe.stale_after_ms
    }

    // ---- the timer and the pacer ------------------------------------------------------------------------

    /// When the next poll is due, if it waits for time.
    pub(super) fn observer_deadline(&self) -> Option<u64> {
        match self.observer.phase {
            PollPhase::Due(at) if self.observer.running && at != u64::MAX => Some(at),
            PollPhase::Backoff { until_mono, .. } if self.observer.running => Some(until_mono),
            _ => None,
        }
    }

    /// A due poll (or its backoff's end) puts it in line for the pacer.
    pub(super) fn observer_timeout(&mut self, now: Now) {
        if !self.observer.running {
            return;
        }
        match &self.observer.phase {
            PollPhase::Due(at) if *at <= now.mono_ms => {
                self.observer.phase = PollPhase::Queued(None);
            }
            PollPhase::Backoff { until_mono, url } if *until_mono <= now.mono_ms => {
                self.observer.phase = PollPhase::Queued(url.clone());
            }
            _ => {}
        }
    }

    /// What the observer wants to send now, if anything: the poll first, then one state-history read.
    pub(super) fn observer_wants(&self) -> Option<ObserverRequest> {
        let o = &self.observer;
        if !o.running {
            return None;
        }
        if let PollPhase::Queued(url) = &o.phase {
            return Some(ObserverRequest::Poll(url.clone()));
        }
        if o.history_user.is_some() {
            return None;
        }
        o.unsettled
            .iter()
            .find(|u| u.history == HistoryRead::Wanted)
            .map(|u| ObserverRequest::History(u.user_id.clone()))
    }

    /// Sends what [`observer_wants`](Self::observer_wants) said (the pacer has allowed it).
    pub(super) fn send_observer(&mut self, now: Now, request: ObserverRequest) {
        let Some((token, generation)) = self.usable_token(now).map(|(t, g)| (t.clone(), g)) else {
            return;
        };
        let api = self.discovery.api_base.clone().unwrap_or_default();
        let cfg = &self.config.cxone;
        match request {
            ObserverRequest::Poll(url) => {
                let http = match &url {
                    None => {
                        let o = &mut self.observer;
                        o.poll_started_mono = now.mono_ms;
                        o.poll_started_unix = now.unix_ms;
                        o.pages = 0;
                        o.poll_time = None;
                        o.changed = 0;
                        acd::agent_states_request(
                            &api,
                            &cfg.versions,
                            &token,
                            o.updated_since.as_deref(),
                            self.config.observe.page_size,
                        )
                    }
                    Some(next) => acd::agent_states_next_request(next, &token),
                };
                self.observer.current_url = url;
                let id = self.transmit(now, Target::Api, http, Owner::Poll, generation);
                self.observer.in_flight = Some(id);
                self.observer.phase = PollPhase::InFlight;
            }
            ObserverRequest::History(user) => {
                let Some(index) = self
                    .observer
                    .unsettled
                    .iter()
                    .position(|u| u.user_id == user && u.history == HistoryRead::Wanted)
                else {
                    return;
                };
                let Ok(agent) = user.parse::<u64>().map(acd::AgentId) else {
                    self.observer.unsettled[index].history = HistoryRead::Undecidable;
                    return;
                };
                self.observer.unsettled[index].history = HistoryRead::InFlight;
                let tolerance = self.config.observe.match_tolerance_ms;
                let first_sent = self.observer.unsettled[index].first_sent_ms;
                let start = self.tenant_of_local(first_sent.saturating_sub(tolerance));
                let end = self.tenant_now(now).unix_ms;
                let cfg = &self.config.cxone;
                let http = acd::state_history_request(
                    &api,
                    &cfg.versions,
                    &token,
                    agent,
                    &iso8601(start),
                    &iso8601(end),
                );
                let id = self.transmit(
                    now,
                    Target::Api,
                    http,
                    Owner::StateHistory(user.clone()),
                    generation,
                );
                self.observer.history_user = Some(user);
                self.observer.history_request = Some(id);
            }
        }
    }

    /// A tenant time (Unix ms on its clock) on our wall clock, with the same tolerance as
    /// [`tenant_now`](Self::tenant_now).
    fn local_of_tenant(&self, tenant_ms: u64) -> u64 {
        let offset = self.tenant_clock_offset_ms;
        if offset.unsigned_abs() <= TENANT_CLOCK_TOLERANCE_MS {
            return tenant_ms;
        }
        tenant_ms.saturating_add_signed(-offset)
    }

    fn tenant_of_local(&self, local_ms: u64) -> u64 {
        self.tenant_now(Now {
            mono_ms: 0,
            unix_ms: local_ms,
        })
        .unix_ms
    }

    // ---- the poll's answers -----------------------------------------------------------------------------

    pub(super) fn on_poll_answer(
        &mut self,
        now: Now,
        id: RequestId,
        generation: u64,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        if !self.observer.running || self.observer.in_flight != Some(id) {
            return;
        }
        self.observer.in_flight = None;
        let r = match result {
            Err(kind) => return self.poll_transient(now, None, None, Some(kind)),
            Ok(r) => r,
        };
        match r.status {
            200..=299 => match acd::parse_agent_states(r) {
                Ok(page) => self.on_poll_page(now, page),
                Err(e) => self.poll_failed(now, e),
            },
            401 => {
                self.token.invalidate(generation);
                if std::mem::replace(&mut self.observer.auth_resent, true) {
                    let e = TransitionError::new(
                        ErrorCode::Unauthorized,
                        "GetAgentStates: the API answered 401 again after a token refresh",
                    );
                    self.poll_failed(now, e);
                } else {
                    self.observer.phase = PollPhase::Queued(self.observer.current_url.clone());
                }
            }
            s if is_transient(s) => {
                let ra = r.retry_after_ms(now.unix_ms);
                self.poll_transient(now, Some(s), ra, None);
            }
            s => {
                let e = acd::refusal(acd::AcdCall::AgentStates, r).unwrap_or_else(|| {
                    TransitionError::new(
                        ErrorCode::Rejected,
                        format!("GetAgentStates was refused ({s})"),
                    )
                });
                self.poll_failed(now, e);
            }
        }
    }

    fn on_poll_page(&mut self, now: Now, page: AgentStatesPage) {
        let first = self.observer.pages == 0;
        self.observer.pages += 1;
        self.observer.auth_resent = false;
        self.observer.retries = 0;
        if first {
            self.observer.poll_time = page.last_poll_time.clone();
        }
        for state in page.states {
            self.observe_one(now, state);
        }
        match page.next {
            Some(next) => {
                // The bearer token goes only where the API lives.
                let api = self.discovery.api_base.as_deref().unwrap_or_default();
                if origin_of(&next) != origin_of(api) {
                    let e = TransitionError::new(
                        ErrorCode::BadResponse,
                        "GetAgentStates answer: `_links.next` points away from the API's origin",
                    );
                    return self.poll_failed(now, e);
                }
                if self.observer.pages >= MAX_POLL_PAGES {
                    let e = TransitionError::new(
                        ErrorCode::BadResponse,
                        format!(
                            "GetAgentStates answer: the poll did not end after {} pages",
                            self.observer.pages
                        ),
                    );
                    return self.poll_failed(now, e);
                }
                self.observer.phase = PollPhase::Queued(Some(next));
            }
            None => self.end_poll(now),
        }
    }

    /// The last page came back: the next poll asks for changes since this one's `lastPollTime`.
    fn end_poll(&mut self, now: Now) {
        // Without a `lastPollTime`, the poll's start on the tenant's clock is the safe next `updatedSince`.
        let fallback = iso8601(self.tenant_of_local(self.observer.poll_started_unix));
        let o = &mut self.observer;
        o.updated_since = Some(o.poll_time.take().unwrap_or(fallback));
        let o = &mut self.observer;
        o.polls += 1;
        o.last_success = Some((now.mono_ms, now.unix_ms, o.poll_started_mono));
        o.last_error = None;
        o.phase = PollPhase::Due(now.mono_ms.saturating_add(self.config.observe.interval_ms));
        self.sweep_unsettled(now);
        self.heartbeat(now, None);
    }

    fn heartbeat(&mut self, now: Now, error: Option<TransitionError>) {
        let o = &self.observer;
        let event = ObservationHeartbeat {
            ok: error.is_none(),
            lag_ms: o
                .last_success
                .map(|(_, _, started)| now.mono_ms.saturating_sub(started)),
            stale: self.observation_stale(now),
            agents: o.seen.len(),
            changed: o.changed,
            polls: o.polls,
            error,
            at_ms: now.unix_ms,
        };
        self.emit(Event::ObservationHeartbeat(event));
    }

    /// A poll that cannot go on: reported, and the whole poll is tried again after the interval from the
    /// same `updatedSince`, so nothing is missed.
    fn poll_failed(&mut self, now: Now, e: TransitionError) {
        let o = &mut self.observer;
        o.retries = 0;
        o.auth_resent = false;
        o.last_error = Some(e.clone());
        o.phase = PollPhase::Due(now.mono_ms.saturating_add(self.config.observe.interval_ms));
        self.heartbeat(now, Some(e));
    }

    /// A 429, a 5xx, a transport error or a timeout: the page is asked for again after a backoff, as any
    /// request would be; when the retries are spent, the poll fails and starts again later.
    fn poll_transient(
        &mut self,
        now: Now,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        transport: Option<TransportErrorKind>,
    ) {
        self.note_rate_limit(now, Host::Acd, status, retry_after_ms);
        self.observer.retries += 1;
        let retry = self.observer.retries;
        match self
            .config
            .retry
            .decide(retry, retry_after_ms, &mut self.rng)
        {
            RetryDecision::RetryAfter(delay_ms) => {
                self.observer.phase = PollPhase::Backoff {
                    until_mono: now.mono_ms.saturating_add(delay_ms),
                    url: self.observer.current_url.clone(),
                };
                self.emit(Event::RetryScheduled(RetryScheduled {
                    transition_id: None,
                    user_id: None,
                    kind: RequestKind::AgentStates,
                    retry,
                    delay_ms,
                    status,
                    at_ms: now.unix_ms,
                }));
            }
            RetryDecision::GiveUp => {
                let mut e = exhausted(status, request_failure(transport));
                e.message = format!("GetAgentStates {}", e.message);
                self.poll_failed(now, e);
            }
        }
    }

    // ---- one observed agent -----------------------------------------------------------------------------

    fn observe_one(&mut self, now: Now, item: ObservedAgentState) {
        let user_id = item.agent_id.0.to_string();
        let at_ms = self.local_of_tenant(item.updated_at_ms).min(now.unix_ms);
        let state = history_state(
            &item.state_name,
            item.code.as_deref(),
            &self.config.reason_codes,
        );
        if let Some(seen) = self.observer.seen.get(&user_id) {
            let o = &seen.observation;
            let same = o.tenant_state.eq_ignore_ascii_case(&item.state_name)
                && o.out_state_id == item.out_state_id
                && seen.session_start == item.session_start;
            if same && o.tenant_time == item.updated_at {
                return;
            }
            // The same state again, entered anew at a later tenant time: the agent left it and came back
            // between two polls, or one of our changes moved the history away in between. When the history
            // already shows it, only the seen observation moves on; otherwise it is a change to record.
            if same && self.previous_state(&user_id).as_deref() == Some(state.as_str()) {
                if let Some(seen) = self.observer.seen.get_mut(&user_id) {
                    seen.observation.tenant_time = item.updated_at.clone();
                    seen.observation.at_ms = at_ms;
                }
                self.settle_if_shown(now, &user_id);
                return;
            }
        }
        let (source, asked) = self.source_of(&user_id, &item, at_ms);
        // Our own change keeps the name it was asked by: `TRAINING`, sent as `Unavailable` with the
        // fallback code, is not renamed `NOT_READY` by its own observation.
        let state = asked.unwrap_or(state);
        let observation = Observation {
            at_ms,
            code: item.code.clone(),
            out_state_id: item.out_state_id,
            source,
            tenant_state: item.state_name.clone(),
            tenant_state_id: item.state_id,
            tenant_time: item.updated_at.clone(),
        };
        let previous_state = self.previous_state(&user_id);
        let first_sight = !self.observer.seen.contains_key(&user_id);
        // A first sight that tells the history nothing new is the baseline: no record.
        let record_id = if first_sight && previous_state.as_deref() == Some(state.as_str()) {
            None
        } else {
            let record = self.audit_record(
                now,
                AuditDraft {
                    user_id: user_id.clone(),
                    previous_state: previous_state.clone(),
                    new_state: state.clone(),
                    reason_code: item.code.clone(),
                    latency_ms: 0,
                    attempts: 0,
                    idempotency_key: None,
                    settles: None,
                    reference: None,
                    observation: Some(Box::new(observation.clone())),
                    relies_on: None,
                    actor: Actor::system(),
                    override_: None,
                    deferral: None,
                },
                Ok(()),
            );
            let id = record.id.clone();
            self.persist(Record::Audit(record));
            // Our own change is in the history already, from its confirmation.
            if !(source == ObservationSource::Ours && previous_state.as_deref() == Some(&state)) {
                // What the tenant did before we watched is not ours to count: an observed stretch begins
                // when observation started at the earliest (the record and the settling keep the tenant's
                // own time).
                let since = at_ms.max(self.observer.started_unix.min(now.unix_ms));
                self.history.record(&user_id, &state, since);
            }
            self.observer.changed += 1;
            self.emit(Event::StateObserved(StateObserved {
                user_id: user_id.clone(),
                previous_state,
                state: state.clone(),
                observation: observation.clone(),
                record_id: id.clone(),
                at_ms: now.unix_ms,
            }));
            Some(id)
        };
        self.observer.seen.insert(
            user_id.clone(),
            Seen {
                state,
                observation,
                session_start: item.session_start,
                record_id,
            },
        );
        self.settle_if_shown(now, &user_id);
    }

    /// `ours`, with the history's name of the state our change asked for, when one of our recent changes
    /// of this agent asked for this state and code and the tenant's time of the change falls between its
    /// first send and its completion (with the tolerance); `external` otherwise.
    fn source_of(
        &self,
        user_id: &str,
        item: &ObservedAgentState,
        at_ms: u64,
    ) -> (ObservationSource, Option<String>) {
        let tolerance = self.config.observe.match_tolerance_ms;
        let ours = self.observer.sent.get(user_id).and_then(|sent| {
            sent.iter().rev().find(|s| {
                s.tenant_state.eq_ignore_ascii_case(&item.state_name)
                    && s.out_state_id == item.out_state_id
                    && at_ms.saturating_add(tolerance) >= s.first_sent_ms
                    && at_ms <= s.done_ms.saturating_add(tolerance)
            })
        });
        match ours {
            Some(s) => (ObservationSource::Ours, Some(s.state.clone())),
            None => (ObservationSource::External, None),
        }
    }

    // ---- our changes, as the observer needs them --------------------------------------------------------

    /// A change is first sent: remember it for matching, and bound the evidence for the unknown outcomes of
    /// the same agent (what the tenant shows from now on may be this change's doing).
    pub(super) fn note_first_send(
        &mut self,
        now: Now,
        user_id: &str,
        state: String,
        target: acd::CxoneState,
    ) {
        if !self.cxone() {
            return;
        }
        let sent = self.observer.sent.entry(user_id.to_owned()).or_default();
        if sent.len() >= SENT_PER_AGENT {
            sent.remove(0);
        }
        sent.push(Sent {
            state,
            tenant_state: target.as_str(),
            out_state_id: out_state_of(target),
            first_sent_ms: now.unix_ms,
            done_ms: u64::MAX,
        });
        for u in &mut self.observer.unsettled {
            if u.user_id == user_id && u.until_ms.is_none() {
                u.until_ms = Some(now.unix_ms);
            }
        }
    }

    /// A sent change ended (in any way): its time window for matching closes; an unknown outcome waits to be
    /// settled.
    pub(super) fn note_sent_done(
        &mut self,
        now: Now,
        change: &Change,
        unknown_record: Option<String>,
    ) {
        if !self.cxone() {
            return;
        }
        let user_id = change.user.as_str();
        let Some(target) = change.resolved.map(|r| r.target) else {
            return;
        };
        let first_sent_ms = change.first_sent_unix.unwrap_or(now.unix_ms);
        if let Some(sent) = self.observer.sent.get_mut(user_id) {
            if let Some(s) = sent
                .iter_mut()
                .rev()
                .find(|s| s.done_ms == u64::MAX && s.first_sent_ms <= now.unix_ms)
            {
                s.done_ms = now.unix_ms;
            }
        }
        let Some(record_id) = unknown_record else {
            return;
        };
        // Bounded: without observation running nothing settles them, and the oldest matter least.
        if self.observer.unsettled.len() >= MAX_UNSETTLED {
            self.observer.unsettled.remove(0);
        }
        let previous_state = self.previous_state(user_id);
        self.observer.unsettled.push(Unsettled {
            record_id,
            previous_state,
            key: change.key().map(str::to_owned),
            user_id: user_id.to_owned(),
            state: change.state.as_str().to_owned(),
            reason_code: change.reason_code.clone(),
            reference: change.reference().map(str::to_owned),
            tenant_state: target.as_str(),
            out_state_id: out_state_of(target),
            first_sent_ms,
            done_ms: now.unix_ms,
            until_ms: None,
            decide_after_mono: now
                .mono_ms
                .saturating_add(self.config.observe.settle_after_ms),
            history: HistoryRead::None,
        });
        // What the tenant already shows may settle it at once.
        self.settle_if_shown(now, user_id);
    }

    /// `skipIfInEffect`: the observation record a change may rely on instead of being sent.
    pub(super) fn in_effect(&self, now: Now, change: &Change) -> Option<String> {
        if !self.config.observe.skip_if_in_effect || !self.observer.running {
            return None;
        }
        let (_, _, started) = self.observer.last_success?;
        if now.mono_ms.saturating_sub(started) > self.config.observe.stale_after_ms {
            return None;
        }
        let target = change.resolved?.target;
        let seen = self.observer.seen.get(change.user.as_str())?;
        let o = &seen.observation;
        let matches = o.tenant_state.eq_ignore_ascii_case(target.as_str())
            && o.out_state_id == out_state_of(target);
        // Our own later change may have moved the agent since: only a history that agrees is relied on.
        let current = self.history.current(change.user.as_str())?;
        (matches && current.state == seen.state)
            .then(|| seen.record_id.clone())
            .flatten()
    }

    // ---- settling unknown outcomes ----------------------------------------------------------------------

    /// The tenant shows the agent entering the state an unknown change asked for inside that change's send
    /// window: it was applied.
    fn settle_if_shown(&mut self, now: Now, user_id: &str) {
        let Some(seen) = self.observer.seen.get(user_id) else {
            return;
        };
        let o = seen.observation.clone();
        loop {
            let index = self.observer.unsettled.iter().position(|u| {
                u.user_id == user_id
                    && shows(&o, u)
                    && o.at_ms >= u.first_sent_ms
                    && o.at_ms <= self.window_end(u)
            });
            let Some(index) = index else {
                return;
            };
            let evidence = format!(
                "the tenant showed the agent entering {} at {}, inside the change's send window",
                describe(&o.tenant_state, o.code.as_deref()),
                o.tenant_time
            );
            self.settle(now, index, true, evidence);
        }
    }

    /// After a poll: each unknown outcome whose time is up is settled as not applied when the tenant shows the
    /// agent unchanged since before it was sent; otherwise its state history is read.
    fn sweep_unsettled(&mut self, now: Now) {
        let tolerance = self.config.observe.match_tolerance_ms;
        let poll_started = self.observer.poll_started_mono;
        let mut index = 0;
        while index < self.observer.unsettled.len() {
            let u = &self.observer.unsettled[index];
            // The poll must have begun after the change's time was up.
            if u.history != HistoryRead::None || poll_started < u.decide_after_mono {
                index += 1;
                continue;
            }
            let seen = self.observer.seen.get(&u.user_id);
            // An agent already in the requested state tells nothing: a tenant need not mark a change to
            // the state it holds.
            if seen.is_some_and(|s| shows(&s.observation, u)) {
                self.observer.unsettled[index].history = HistoryRead::Undecidable;
                index += 1;
                continue;
            }
            let unchanged = seen
                .filter(|s| s.observation.at_ms.saturating_add(tolerance) < u.first_sent_ms)
                .map(|s| s.observation.tenant_time.clone());
            match unchanged {
                Some(since) => {
                    let evidence = format!(
                        "the tenant shows the agent unchanged since {since}, before the change was sent"
                    );
                    self.settle(now, index, false, evidence);
                }
                None => {
                    self.observer.unsettled[index].history = HistoryRead::Wanted;
                    index += 1;
                }
            }
        }
    }

    pub(super) fn on_history_answer(
        &mut self,
        now: Now,
        id: RequestId,
        user_id: String,
        generation: u64,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        if self.observer.history_request != Some(id) {
            return;
        }
        self.observer.history_request = None;
        self.observer.history_user = None;
        let Some(index) = self
            .observer
            .unsettled
            .iter()
            .position(|u| u.user_id == user_id && u.history == HistoryRead::InFlight)
        else {
            return;
        };
        let stretches = match result {
            Ok(r) if (200..300).contains(&r.status) => acd::parse_state_history(r),
            Ok(r) if r.status == 401 => {
                self.token.invalidate(generation);
                self.observer.unsettled[index].history = HistoryRead::Wanted;
                return;
            }
            // Anything else: tried again after the next poll.
            _ => {
                self.observer.unsettled[index].history = HistoryRead::None;
                return;
            }
        };
        let Ok(stretches) = stretches else {
            self.observer.unsettled[index].history = HistoryRead::Undecidable;
            return;
        };
        match self.decide_from_history(&self.observer.unsettled[index], &stretches) {
            Some((applied, evidence)) => self.settle(now, index, applied, evidence),
            None => self.observer.unsettled[index].history = HistoryRead::Undecidable,
        }
    }

    /// The end of an unknown change's send window (see [`crate::observe`]).
    fn window_end(&self, u: &Unsettled) -> u64 {
        let end = u
            .done_ms
            .saturating_add(self.config.request_timeout_ms)
            .saturating_add(self.config.observe.match_tolerance_ms);
        u.until_ms
            .map_or(end, |until| end.min(until.saturating_sub(1)))
    }

    /// Applied when a stretch in the requested state and code began inside the send window; not applied
    /// when none did and the agent was not already in that state when the change was sent; `None` when the
    /// history cannot tell.
    fn decide_from_history(
        &self,
        u: &Unsettled,
        stretches: &[HistoryStretch],
    ) -> Option<(bool, String)> {
        let tolerance = self.config.observe.match_tolerance_ms;
        let until = self.window_end(u);
        let is_requested = |s: &HistoryStretch| {
            s.state_name.eq_ignore_ascii_case(u.tenant_state) && s.out_state_id == u.out_state_id
        };
        let mut covering: Option<&HistoryStretch> = None;
        for s in stretches {
            let start = self.local_of_tenant(s.start_ms);
            if start <= u.first_sent_ms.saturating_sub(tolerance) {
                covering = Some(s);
                continue;
            }
            if start > until || !is_requested(s) {
                continue;
            }
            if start >= u.first_sent_ms {
                return Some((
                    true,
                    format!(
                        "the tenant's state history shows the agent {} from {}",
                        describe(&s.state_name, None),
                        iso8601(s.start_ms)
                    ),
                ));
            }
            // Began within the tolerance before the send: cannot tell whose it was.
            return None;
        }
        if covering.is_some_and(is_requested) {
            return None;
        }
        Some((
            false,
            "the tenant's state history shows no stretch in the requested state since the change was sent"
                .to_owned(),
        ))
    }

    /// A new record settles the unknown one; nothing is rewritten.
    fn settle(&mut self, now: Now, index: usize, applied: bool, evidence: String) {
        let u = self.observer.unsettled.remove(index);
        let draft = AuditDraft {
            previous_state: u.previous_state.clone(),
            user_id: u.user_id.clone(),
            new_state: u.state.clone(),
            reason_code: Some(u.reason_code.clone()),
            latency_ms: 0,
            attempts: 0,
            idempotency_key: u.key.clone(),
            settles: Some(u.record_id.clone()),
            reference: u.reference.clone(),
            observation: None,
            relies_on: None,
            actor: Actor::system(),
            override_: None,
            deferral: None,
        };
        let error = TransitionError::new(
            ErrorCode::NotApplied,
            format!("settled as not applied: {evidence}"),
        );
        let record = self.audit_record(now, draft, if applied { Ok(()) } else { Err(&error) });
        let record_id = record.id.clone();
        self.persist(Record::Audit(record));
        self.emit(Event::OutcomeSettled(OutcomeSettled {
            user_id: u.user_id,
            requested_state: u.state,
            applied,
            settles: u.record_id,
            record_id,
            evidence,
            reference: u.reference,
            at_ms: now.unix_ms,
        }));
    }
}

/// The observation shows the state and code the unknown change asked for.
fn shows(o: &Observation, u: &Unsettled) -> bool {
    o.tenant_state.eq_ignore_ascii_case(u.tenant_state) && o.out_state_id == u.out_state_id
}

fn out_state_of(target: acd::CxoneState) -> Option<u64> {
    match target {
        acd::CxoneState::Available => None,
        acd::CxoneState::Unavailable { out_state_id } => Some(out_state_id),
    }
}

fn describe(tenant_state: &str, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{tenant_state} ({code})"),
        None => tenant_state.to_owned(),
    }
}

/// `scheme://authority` of a URL, lower-cased (`""` for something that is not one).
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}").to_ascii_lowercase()
}
