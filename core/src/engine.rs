//! The engine: one state machine that turns commands, HTTP answers and timeouts into requests and events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, ChainHead};
use crate::config::{EngineConfig, ProfileKind, Secret, TokenSource};
use crate::error::{ConfigError, ErrorCode, TransitionError};
use crate::events::{
    ChangeIntent, Event, PolicyViolation, RequestKind, RetryScheduled, StateChanged,
    TokenRequested, TransitionFailed, TransitionId, ValidationCompleted, WebhookData,
    WebhookPayload, AGENT_STATE_CHANGED,
};
use crate::history::History;
use crate::http::{HttpRequest, HttpResponse, RequestId, TransportErrorKind};
use crate::pacer::Pacer;
use crate::policy::{PolicyDecision, ScheduleCache};
use crate::profile::{ApiProfile, SeedProfile, TokenFailure};
use crate::report::{ComplianceReport, ReportBuilder};
use crate::retry::RetryDecision;
use crate::rng::DetRng;
use crate::state::{is_idle_state, AgentState, UserId};
use crate::time::iso8601;
use crate::token::{Fetch, TokenCache};

/// Something a caller asks the engine to do.
///
/// In JSON: `{"command": "transition", "userId": "…", "state": "READY"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    /// Change an agent's state (the reference's `transitionState`).
    #[serde(rename_all = "camelCase")]
    Transition {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
    },
    /// Check policy only (the reference's `validateStateChange`); nothing is changed or audited.
    #[serde(rename_all = "camelCase")]
    Validate {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
    },
    /// Finish a change that was journaled ([`Event::ChangeIntent`]) but whose outcome was never recorded,
    /// e.g. after a crash. It is sent again with the journaled `Idempotency-Key`, so a tenant that already
    /// applied it answers from its replay cache instead of applying it twice.
    ///
    /// Policy: the journaled change passed its checks at `journaled_at_ms`. While that is no older than
    /// `policy_max_age_ms` (the freshness every send is held to), the change is re-sent as it was, so a
    /// change the tenant had already accepted is recorded as the success it was. An older intent is
    /// checked again first; if policy now refuses it, the refusal is recorded with a note that the earlier
    /// send may have reached the tenant (the seed API offers no way to ask).
    #[serde(rename_all = "camelCase")]
    Resume {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
        /// The key the interrupted change was sent with.
        idempotency_key: String,
        /// When the change was journaled (its [`ChangeIntent::at_ms`]); `None` if unknown (checked again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        journaled_at_ms: Option<u64>,
    },
}

/// One input to the engine. Each is handed in with the current time.
///
/// In JSON the variant is named by `type`: `{"type": "command", "command": "transition", …}`,
/// `{"type": "response", "id": 3, "status": 200, …}`, `{"type": "transportError", "id": 3, "kind": "reset"}`,
/// `{"type": "timeout"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Input {
    /// A caller's command.
    Command(Command),
    /// An HTTP answer to a request the engine handed out.
    Response(HttpResponse),
    /// A request that got no HTTP answer.
    TransportError {
        /// The request.
        id: RequestId,
        /// What went wrong.
        kind: TransportErrorKind,
    },
    /// The deadline from [`Output::Timeout`] has passed (early calls are harmless).
    Timeout,
    /// The host's token source answered an [`Event::TokenRequested`] (with [`TokenSource::External`]).
    #[serde(rename_all = "camelCase")]
    AccessToken {
        /// The `requestId` of the event.
        id: RequestId,
        /// The token; `None` with `error` when the source failed.
        access_token: Option<Secret>,
        /// Its remaining life in ms.
        #[serde(default)]
        expires_in_ms: u64,
        /// Why there is no token.
        #[serde(default)]
        error: Option<String>,
    },
}

/// One output of the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "camelCase")]
pub enum Output {
    /// Perform this request and hand back the answer with the same id.
    Transmit(HttpRequest),
    /// Persist or deliver this event.
    Event(Event),
    /// Nothing more for now: call [`Engine::handle_timeout`] at this time (Unix ms), or never if `None`.
    Timeout(Option<u64>),
}

/// The request steps of a transition, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Schedule,
    BreakStatus,
    SetState,
}

impl Step {
    fn kind(self) -> RequestKind {
        match self {
            Self::Schedule => RequestKind::Schedule,
            Self::BreakStatus => RequestKind::BreakStatus,
            Self::SetState => RequestKind::SetState,
        }
    }
}

#[derive(Debug)]
struct Transition {
    user: UserId,
    state: AgentState,
    reason_code: String,
    validate_only: bool,
    started_ms: u64,
    attempts: u32,
    /// Retries so far per step. Never reset within a transition, so a step that keeps failing transiently
    /// runs out of retries even when a policy re-check or a 401 sends it round again.
    retries: [u32; 3],
    /// Times this transition had to wait for a token fetch; bounded, so tokens that expire before they can
    /// be used end the transition instead of fetching forever.
    token_waits: u32,
    /// A break re-check was made for the next state-change send; the send goes out after it even if
    /// pacing made that answer older than `policy_max_age_ms` (otherwise a slow limit re-checks forever).
    rechecked_for_send: bool,
    auth_resent: bool,
    idempotency_key: Option<String>,
    set_state_sent: bool,
    /// Started by [`Command::Resume`] with a journaled key.
    resumed: bool,
    schedule_ok: bool,
    break_checked_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
enum Owner {
    Token,
    Transition(TransitionId, Step),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    owner: Owner,
    deadline_ms: u64,
    token_generation: u64,
}

/// The sans-IO engine.
///
/// # Driving it
/// 1. Hand in everything that happened with [`handle_input`](Self::handle_input) (or the typed helpers
///    [`transition`](Self::transition), [`handle_response`](Self::handle_response), …), each with `now_ms`.
/// 2. Drain [`poll_output`](Self::poll_output) until it returns [`Output::Timeout`]: perform each
///    [`Output::Transmit`], persist or deliver each [`Output::Event`] in order.
/// 3. When the timeout's time comes (or anything else happens), call [`handle_timeout`](Self::handle_timeout)
///    and go back to step 2. Calling it early is harmless.
///
/// # Guarantees
/// - Every transition command ends in exactly one `StateChanged` or `TransitionFailed`, preceded by its
///   audit record; every validation command ends in one `ValidationCompleted`.
/// - At most one transition per agent is in progress; later ones for that agent wait in order.
/// - Every request passes the pacer; a token fetch is shared by all who need it.
pub struct Engine {
    config: EngineConfig,
    profile: Box<dyn ApiProfile>,
    base_url: String,
    rng: DetRng,
    token: TokenCache,
    pacer: Pacer,
    schedule_cache: ScheduleCache,
    history: History,
    report: ReportBuilder,
    chain: ChainHead,
    next_transition: u64,
    next_request: u64,
    transitions: BTreeMap<TransitionId, Transition>,
    agent_queues: BTreeMap<UserId, VecDeque<TransitionId>>,
    commit_queue: VecDeque<(TransitionId, Step)>,
    check_queue: VecDeque<(TransitionId, Step)>,
    token_waiters: VecDeque<(TransitionId, Step)>,
    pending: BTreeMap<RequestId, Pending>,
    deadlines: BTreeSet<(u64, RequestId)>,
    backoffs: BTreeMap<(u64, TransitionId), Step>,
    pacer_wake_ms: Option<u64>,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("base_url", &self.base_url)
            .field("transitions", &self.transitions.len())
            .field("in_flight", &self.pending.len())
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds an engine; the configuration is validated first.
    pub fn new(config: EngineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let profile: Box<dyn ApiProfile> = match config.profile {
            ProfileKind::Seed => Box::new(SeedProfile),
        };
        Ok(Self {
            profile,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            rng: DetRng::new(config.seed),
            token: TokenCache::new(config.token_refresh_margin_ms),
            pacer: Pacer::new(&config.rate_limit),
            schedule_cache: ScheduleCache::new(config.schedule_ttl_ms, config.history.max_agents),
            history: History::new(config.history.clone()),
            report: ReportBuilder::new(config.report_log_capacity),
            chain: config.audit_chain_head.clone().unwrap_or_default(),
            next_transition: 1,
            next_request: 1,
            transitions: BTreeMap::new(),
            agent_queues: BTreeMap::new(),
            commit_queue: VecDeque::new(),
            check_queue: VecDeque::new(),
            token_waiters: VecDeque::new(),
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            backoffs: BTreeMap::new(),
            pacer_wake_ms: None,
            out: VecDeque::new(),
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Hands in one input. Returns the id assigned to a command, `None` for other inputs.
    pub fn handle_input(&mut self, now_ms: u64, input: Input) -> Option<TransitionId> {
        match input {
            Input::Command(Command::Transition { user_id, state }) => {
                Some(self.start_command(now_ms, user_id, state, Mode::Change(None)))
            }
            Input::Command(Command::Validate { user_id, state }) => {
                Some(self.start_command(now_ms, user_id, state, Mode::Validate))
            }
            Input::Command(Command::Resume {
                user_id,
                state,
                idempotency_key,
                journaled_at_ms,
            }) => Some(self.start_command(
                now_ms,
                user_id,
                state,
                Mode::Change(Some((idempotency_key, journaled_at_ms))),
            )),
            Input::Response(r) => {
                self.handle_response(now_ms, r);
                None
            }
            Input::TransportError { id, kind } => {
                self.handle_transport_error(now_ms, id, kind);
                None
            }
            Input::Timeout => {
                self.handle_timeout(now_ms);
                None
            }
            Input::AccessToken {
                id,
                access_token,
                expires_in_ms,
                error,
            } => {
                let result = match access_token {
                    Some(t) => Ok((t, expires_in_ms)),
                    None => Err(error.unwrap_or_else(|| "no token".to_owned())),
                };
                self.handle_access_token(now_ms, id, result);
                None
            }
        }
    }

    /// Starts a state change (the reference's `transitionState`).
    pub fn transition(&mut self, now_ms: u64, user_id: &str, state: &str) -> TransitionId {
        self.start_command(
            now_ms,
            user_id.to_owned(),
            state.to_owned(),
            Mode::Change(None),
        )
    }

    /// Starts a policy check without a change (the reference's `validateStateChange`).
    pub fn validate(&mut self, now_ms: u64, user_id: &str, state: &str) -> TransitionId {
        self.start_command(now_ms, user_id.to_owned(), state.to_owned(), Mode::Validate)
    }

    /// Finishes a journaled change after a restart (see [`Command::Resume`]).
    pub fn resume(
        &mut self,
        now_ms: u64,
        user_id: &str,
        state: &str,
        idempotency_key: &str,
        journaled_at_ms: Option<u64>,
    ) -> TransitionId {
        self.start_command(
            now_ms,
            user_id.to_owned(),
            state.to_owned(),
            Mode::Change(Some((idempotency_key.to_owned(), journaled_at_ms))),
        )
    }

    /// Hands in an HTTP answer. Answers to unknown or timed-out requests are ignored.
    pub fn handle_response(&mut self, now_ms: u64, response: HttpResponse) {
        let Some(p) = self.take_pending(response.id) else {
            return;
        };
        match p.owner {
            Owner::Token => self.on_token_result(now_ms, Ok(&response)),
            Owner::Transition(id, step) => {
                self.on_api_result(now_ms, id, step, p.token_generation, Ok(&response))
            }
        }
        self.pump(now_ms);
    }

    /// Hands in a request that got no answer.
    pub fn handle_transport_error(&mut self, now_ms: u64, id: RequestId, kind: TransportErrorKind) {
        let Some(p) = self.take_pending(id) else {
            return;
        };
        self.on_failure_without_answer(now_ms, p, kind);
        self.pump(now_ms);
    }

    /// Hands in the answer of the host's token source to an [`Event::TokenRequested`] (only with
    /// [`TokenSource::External`]): a token and its remaining life, or why there is none. A token with no life
    /// left fails the waiting transitions with `TOKEN_EXPIRED`; a failure fails them with `AUTH_FAILED`.
    pub fn handle_access_token(
        &mut self,
        now_ms: u64,
        id: RequestId,
        result: Result<(Secret, u64), String>,
    ) {
        // Only an outstanding token request of an external source can be answered this way; any other id
        // (an API request's, or with client credentials) is ignored and keeps its own answer and deadline.
        let asked = matches!(self.pending.get(&id), Some(p) if matches!(p.owner, Owner::Token));
        if self.config.token_source != TokenSource::External || !asked {
            return;
        }
        self.take_pending(id);
        match result {
            Ok((token, expires_in_ms)) => self.accept_token(now_ms, token, expires_in_ms),
            Err(message) => self.fail_token_waiters(
                now_ms,
                TransitionError::new(
                    ErrorCode::AuthFailed,
                    format!(
                        "the token source failed: {}",
                        message.chars().take(200).collect::<String>()
                    ),
                ),
            ),
        }
        self.pump(now_ms);
    }

    /// Advances timers: request timeouts, retry backoffs and the pacer.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now_ms {
                break;
            }
            if let Some(p) = self.take_pending(id) {
                self.on_failure_without_answer(now_ms, p, TransportErrorKind::Timeout);
            }
        }
        while let Some((&(at, id), &step)) = self.backoffs.first_key_value() {
            if at > now_ms {
                break;
            }
            self.backoffs.remove(&(at, id));
            self.enqueue(id, step);
        }
        if let Fetch::Backoff { until_ms, retry } = self.token.fetch {
            if until_ms <= now_ms {
                self.token.fetch = Fetch::Queued { retry };
            }
        }
        self.pump(now_ms);
    }

    /// The next output. Drain until [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        self.out
            .pop_front()
            .unwrap_or_else(|| Output::Timeout(self.next_deadline()))
    }

    /// Every pending output, in order, ending with the [`Output::Timeout`]: the drain step of the loop in one
    /// call (hosts that cross a boundary per call, like wasm, want this).
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        let mut out: Vec<Output> = self.out.drain(..).collect();
        out.push(Output::Timeout(self.next_deadline()));
        out
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let queued = !self.commit_queue.is_empty()
            || !self.check_queue.is_empty()
            || matches!(self.token.fetch, Fetch::Queued { .. });
        [
            self.deadlines.first().map(|d| d.0),
            self.backoffs.first_key_value().map(|(k, _)| k.0),
            match self.token.fetch {
                Fetch::Backoff { until_ms, .. } => Some(until_ms),
                _ => None,
            },
            self.pacer_wake_ms.filter(|_| queued),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The reference's `calculateIdleTime`: the current stretch if the agent is in IDLE, PAUSED or NOT_READY.
    pub fn idle_time(&self, user_id: &str, now_ms: u64) -> u64 {
        self.history.idle_time(user_id, now_ms)
    }

    /// The compliance report at `now_ms`.
    pub fn compliance_report(&self, now_ms: u64) -> ComplianceReport {
        self.report.build(&self.history, now_ms)
    }

    /// State history and metrics.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Where the audit chain stands; persist it to continue the chain after a restart.
    pub fn chain_head(&self) -> &ChainHead {
        &self.chain
    }

    /// Policy violations so far.
    pub fn violation_count(&self) -> u64 {
        self.report.violation_count()
    }

    /// Commands not yet finished.
    pub fn unfinished(&self) -> usize {
        self.transitions.len()
    }

    /// Requests handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    // ---- commands -------------------------------------------------------------------------------------

    fn start_command(
        &mut self,
        now_ms: u64,
        user_raw: String,
        state_raw: String,
        mode: Mode,
    ) -> TransitionId {
        let id = TransitionId(self.next_transition);
        self.next_transition += 1;
        let validate_only = matches!(mode, Mode::Validate);
        let (given_key, journaled_at_ms) = match &mode {
            Mode::Change(Some((k, at))) => (Some(k.clone()), *at),
            _ => (None, None),
        };
        let parsed = UserId::parse(&user_raw)
            .and_then(|u| Ok((u, AgentState::parse(&state_raw)?)))
            .and_then(|v| match &given_key {
                Some(k) if !valid_idempotency_key(k) => Err(TransitionError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    "an idempotency key is 1 to 128 printable ASCII characters",
                )),
                _ => Ok(v),
            });
        let (user, state) = match parsed {
            Ok(v) => v,
            Err(e) => {
                if validate_only {
                    self.emit_validation(now_ms, id, &user_raw, &state_raw, Err(e));
                } else {
                    self.emit_attempt(
                        now_ms,
                        id,
                        Attempt {
                            user_id: user_raw,
                            new_state: state_raw,
                            reason_code: None,
                            result: Err(e),
                            latency_ms: 0,
                            attempts: 0,
                            idempotency_key: None,
                        },
                    );
                }
                return id;
            }
        };
        let reason_code = self.config.reason_codes.reason_for(&state).to_owned();
        let fresh_journal = journaled_at_ms
            .is_some_and(|at| at <= now_ms && now_ms - at <= self.config.policy_max_age_ms);
        let idempotency_key = match mode {
            Mode::Validate => None,
            Mode::Change(Some((k, _))) => Some(k),
            Mode::Change(None) => Some(self.rng.uuid().to_string()),
        };
        self.transitions.insert(
            id,
            Transition {
                user: user.clone(),
                state,
                reason_code,
                validate_only,
                started_ms: now_ms,
                attempts: 0,
                retries: [0; 3],
                token_waits: 0,
                rechecked_for_send: false,
                auth_resent: false,
                idempotency_key,
                set_state_sent: false,
                resumed: given_key.is_some(),
                // A resumed change whose checks are still fresh goes straight to the send; the send-time
                // freshness rule in `pump` still applies to its break check.
                schedule_ok: fresh_journal,
                break_checked_ms: journaled_at_ms.filter(|_| fresh_journal),
            },
        );
        let queue = self.agent_queues.entry(user).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            self.advance(now_ms, id);
        }
        self.pump(now_ms);
        id
    }

    /// Decides a transition's next step from what it knows so far.
    fn advance(&mut self, now_ms: u64, id: TransitionId) {
        let Some(t) = self.transitions.get_mut(&id) else {
            return;
        };
        if !t.schedule_ok {
            if self.schedule_cache.scheduled(t.user.as_str(), now_ms) {
                t.schedule_ok = true;
            } else {
                return self.enqueue(id, Step::Schedule);
            }
        }
        if t.state.is_ready() && t.break_checked_ms.is_none() {
            return self.enqueue(id, Step::BreakStatus);
        }
        if t.validate_only {
            self.finish(now_ms, id, Ok(()));
        } else {
            self.enqueue(id, Step::SetState);
        }
    }

    /// State changes wait in the commit queue (served first), lookups in the check queue.
    fn queue_for(&mut self, step: Step) -> &mut VecDeque<(TransitionId, Step)> {
        match step {
            Step::SetState => &mut self.commit_queue,
            _ => &mut self.check_queue,
        }
    }

    fn enqueue(&mut self, id: TransitionId, step: Step) {
        self.queue_for(step).push_back((id, step));
    }

    // ---- sending --------------------------------------------------------------------------------------

    /// Sends what the pacer allows: the token fetch first, then state changes (already validated, so the
    /// gap between check and change stays short), then lookups.
    fn pump(&mut self, now_ms: u64) {
        self.pacer_wake_ms = None;
        loop {
            if let Fetch::Queued { retry } = self.token.fetch {
                if self.config.token_source == TokenSource::External {
                    // No request to the tenant: the host's token source answers, so the pacer is not asked.
                    self.request_external_token(now_ms, retry);
                    continue;
                }
                match self.pacer.try_acquire(now_ms) {
                    Ok(()) => {
                        self.send_token(now_ms, retry);
                        continue;
                    }
                    Err(at) => {
                        self.pacer_wake_ms = Some(at);
                        return;
                    }
                }
            }
            let (queue, &(id, step)) = match (self.commit_queue.front(), self.check_queue.front()) {
                (Some(item), _) => (QueueName::Commit, item),
                (None, Some(item)) => (QueueName::Check, item),
                (None, None) => return,
            };
            if self.token.usable(now_ms).is_none() {
                self.pop(queue);
                let t = self
                    .transitions
                    .get_mut(&id)
                    .expect("queued transitions exist");
                t.token_waits += 1;
                if t.token_waits > MAX_TOKEN_WAITS {
                    let e = TransitionError::new(
                        ErrorCode::AuthFailed,
                        "every token from the token endpoint expired before it could be used",
                    );
                    self.finish(now_ms, id, Err(e));
                    continue;
                }
                self.token_waiters.push_back((id, step));
                if self.token.fetch == Fetch::Idle {
                    self.token.fetch = Fetch::Queued { retry: 0 };
                }
                continue;
            }
            if step == Step::SetState {
                let t = &self.transitions[&id];
                let stale = t
                    .break_checked_ms
                    .is_some_and(|at| now_ms > at.saturating_add(self.config.policy_max_age_ms));
                if t.state.is_ready() && stale && !t.rechecked_for_send {
                    self.pop(queue);
                    if let Some(t) = self.transitions.get_mut(&id) {
                        t.break_checked_ms = None;
                        t.rechecked_for_send = true;
                    }
                    self.check_queue.push_front((id, Step::BreakStatus));
                    continue;
                }
            }
            match self.pacer.try_acquire(now_ms) {
                Ok(()) => {
                    self.pop(queue);
                    self.send_api(now_ms, id, step);
                }
                Err(at) => {
                    self.pacer_wake_ms = Some(at);
                    return;
                }
            }
        }
    }

    fn pop(&mut self, queue: QueueName) {
        match queue {
            QueueName::Commit => self.commit_queue.pop_front(),
            QueueName::Check => self.check_queue.pop_front(),
        };
    }

    /// Gives an outstanding request its id and deadline (its timeout is then a transport error).
    fn track(&mut self, now_ms: u64, owner: Owner, token_generation: u64) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let deadline_ms = now_ms.saturating_add(self.config.request_timeout_ms);
        self.pending.insert(
            id,
            Pending {
                owner,
                deadline_ms,
                token_generation,
            },
        );
        self.deadlines.insert((deadline_ms, id));
        id
    }

    fn register(
        &mut self,
        now_ms: u64,
        mut request: HttpRequest,
        owner: Owner,
        token_generation: u64,
    ) -> RequestId {
        let id = self.track(now_ms, owner, token_generation);
        request.id = id;
        request.timeout_ms = self.config.request_timeout_ms;
        self.out.push_back(Output::Transmit(request));
        id
    }

    /// With an external token source, the "request" is an event the host answers, tracked like any other.
    fn request_external_token(&mut self, now_ms: u64, retry: u32) {
        let id = self.track(now_ms, Owner::Token, 0);
        self.token.fetch = Fetch::InFlight { request: id, retry };
        self.out
            .push_back(Output::Event(Event::TokenRequested(TokenRequested {
                request_id: id,
                at_ms: now_ms,
            })));
    }

    fn send_token(&mut self, now_ms: u64, retry: u32) {
        let request = self.profile.token_request(&self.config);
        let id = self.register(now_ms, request, Owner::Token, 0);
        self.token.fetch = Fetch::InFlight { request: id, retry };
    }

    fn send_api(&mut self, now_ms: u64, id: TransitionId, step: Step) {
        let Some((token, generation)) = self.token.usable(now_ms).map(|(t, g)| (t.clone(), g))
        else {
            return;
        };
        let t = self
            .transitions
            .get_mut(&id)
            .expect("queued transitions exist");
        t.attempts += 1;
        let request = match step {
            Step::Schedule => self
                .profile
                .schedule_request(&self.base_url, &t.user, &token),
            Step::BreakStatus => self.profile.break_request(&self.base_url, &t.user, &token),
            Step::SetState => {
                if !t.set_state_sent {
                    // Journal point: a host makes this durable before it performs the request below, so a
                    // crash can never leave a change applied by the tenant but unknown to the audit trail.
                    self.out
                        .push_back(Output::Event(Event::ChangeIntent(ChangeIntent {
                            transition_id: id,
                            user_id: t.user.as_str().to_owned(),
                            state: t.state.as_str().to_owned(),
                            reason_code: t.reason_code.clone(),
                            idempotency_key: t.idempotency_key.clone().unwrap_or_default(),
                            at_ms: now_ms,
                        })));
                }
                t.set_state_sent = true;
                t.rechecked_for_send = false;
                self.profile.state_request(
                    &self.base_url,
                    &t.user,
                    &t.state,
                    &t.reason_code,
                    &token,
                    t.idempotency_key.as_deref().unwrap_or_default(),
                )
            }
        };
        self.register(now_ms, request, Owner::Transition(id, step), generation);
    }

    fn take_pending(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline_ms, id));
        Some(p)
    }

    // ---- answers --------------------------------------------------------------------------------------

    fn on_failure_without_answer(&mut self, now_ms: u64, p: Pending, kind: TransportErrorKind) {
        match p.owner {
            Owner::Token => self.on_token_result(now_ms, Err(kind)),
            Owner::Transition(id, step) => {
                self.on_api_result(now_ms, id, step, p.token_generation, Err(kind))
            }
        }
    }

    fn on_token_result(&mut self, now_ms: u64, result: Result<&HttpResponse, TransportErrorKind>) {
        let retry = match self.token.fetch {
            Fetch::InFlight { retry, .. } => retry,
            _ => 0,
        };
        let transient = match result {
            Ok(r) if is_transient(r.status) => Some((Some(r.status), r.retry_after_ms(now_ms))),
            Ok(r) => {
                let parsed = self.profile.parse_token(r);
                let outcome = match parsed {
                    Ok(tok) if (200..300).contains(&r.status) => Ok(tok),
                    Err(TokenFailure::Malformed(m)) if (200..300).contains(&r.status) => {
                        Err(TransitionError::new(ErrorCode::BadResponse, m))
                    }
                    Err(TokenFailure::Refused(m)) => {
                        Err(TransitionError::new(ErrorCode::AuthFailed, m))
                    }
                    Ok(_) | Err(TokenFailure::Malformed(_)) => Err(TransitionError::new(
                        ErrorCode::AuthFailed,
                        format!("token endpoint answered {}", r.status),
                    )),
                };
                match outcome {
                    Ok(tok) => self.accept_token(now_ms, tok.access_token, tok.expires_in_ms),
                    Err(e) => self.fail_token_waiters(now_ms, e),
                }
                None
            }
            Err(_) => Some((None, None)),
        };
        let Some((status, retry_after_ms)) = transient else {
            return;
        };
        self.note_rate_limit(now_ms, status, retry_after_ms);
        let next = retry + 1;
        match self
            .config
            .retry
            .decide(next, retry_after_ms, &mut self.rng)
        {
            RetryDecision::RetryAfter(delay_ms) => {
                self.token.fetch = Fetch::Backoff {
                    until_ms: now_ms + delay_ms,
                    retry: next,
                };
                self.out
                    .push_back(Output::Event(Event::RetryScheduled(RetryScheduled {
                        transition_id: None,
                        user_id: None,
                        kind: RequestKind::Token,
                        retry: next,
                        delay_ms,
                        status,
                        at_ms: now_ms,
                    })));
            }
            RetryDecision::GiveUp => {
                let e = exhausted(status, "token request");
                self.fail_token_waiters(now_ms, e);
            }
        }
    }

    /// Stores a token from either source and lets its waiters go; an empty token or one with no life left
    /// fails them instead (fetching again would only get the same).
    fn accept_token(&mut self, now_ms: u64, token: Secret, expires_in_ms: u64) {
        if token.is_empty() {
            let e = TransitionError::new(ErrorCode::AuthFailed, "the access token is empty");
            return self.fail_token_waiters(now_ms, e);
        }
        if expires_in_ms == 0 {
            let e = TransitionError::new(
                ErrorCode::TokenExpired,
                "the access token had already expired when it arrived",
            );
            return self.fail_token_waiters(now_ms, e);
        }
        self.token.store(token, expires_in_ms, now_ms);
        self.requeue_token_waiters();
    }

    /// Waiters were at the head of their queues: put them back there, in order.
    fn requeue_token_waiters(&mut self) {
        while let Some((id, step)) = self.token_waiters.pop_back() {
            self.queue_for(step).push_front((id, step));
        }
    }

    fn fail_token_waiters(&mut self, now_ms: u64, error: TransitionError) {
        self.token.fetch = Fetch::Idle;
        while let Some((id, _)) = self.token_waiters.pop_front() {
            self.finish(now_ms, id, Err(error.clone()));
        }
    }

    fn on_api_result(
        &mut self,
        now_ms: u64,
        id: TransitionId,
        step: Step,
        generation: u64,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        let r = match result {
            Err(kind) => return self.retry_or_fail(now_ms, id, step, None, None, Some(kind)),
            Ok(r) => r,
        };
        match r.status {
            200..=299 => self.on_api_success(now_ms, id, step, r),
            401 => {
                self.token.invalidate(generation);
                let t = self
                    .transitions
                    .get_mut(&id)
                    .expect("pending transitions exist");
                if t.auth_resent {
                    let e = TransitionError::new(
                        ErrorCode::Unauthorized,
                        "the API answered 401 again after a token refresh",
                    );
                    self.finish(now_ms, id, Err(e));
                } else {
                    t.auth_resent = true;
                    self.enqueue(id, step);
                }
            }
            s if is_transient(s) => {
                let ra = r.retry_after_ms(now_ms);
                self.retry_or_fail(now_ms, id, step, Some(s), ra, None)
            }
            s => {
                let code = match s {
                    403 => ErrorCode::Forbidden,
                    404 => ErrorCode::UserNotFound,
                    409 => ErrorCode::Conflict,
                    _ => ErrorCode::Rejected,
                };
                let detail = r
                    .header("icStatusDescription")
                    .map(str::to_owned)
                    .or_else(|| error_field(&r.body))
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                let e = TransitionError::new(code, format!("the API answered {s}{detail}"));
                self.finish(now_ms, id, Err(e));
            }
        }
    }

    fn on_api_success(&mut self, now_ms: u64, id: TransitionId, step: Step, r: &HttpResponse) {
        match step {
            Step::Schedule => match self.profile.parse_schedule(r) {
                Ok(answer) => {
                    let t = self
                        .transitions
                        .get_mut(&id)
                        .expect("pending transitions exist");
                    self.schedule_cache.record(
                        t.user.as_str(),
                        answer.scheduled,
                        answer.shift_end_ms,
                        now_ms,
                    );
                    if answer.scheduled {
                        t.schedule_ok = true;
                        self.advance(now_ms, id);
                    } else {
                        self.finish(
                            now_ms,
                            id,
                            Err(policy_error(PolicyDecision::AgentNotScheduled)),
                        );
                    }
                }
                Err(e) => self.finish(now_ms, id, Err(e)),
            },
            Step::BreakStatus => match self.profile.parse_break(r) {
                Ok(status) => {
                    let t = self
                        .transitions
                        .get_mut(&id)
                        .expect("pending transitions exist");
                    t.break_checked_ms = Some(now_ms);
                    match PolicyDecision::evaluate(&t.state, true, Some(status.required)) {
                        PolicyDecision::Allowed => self.advance(now_ms, id),
                        denial => {
                            let mut e = policy_error(denial);
                            if let Some(w) = status.window {
                                e.message = format!(
                                    "a mandatory break ({} to {}) is due: READY is not allowed",
                                    iso8601(w.start_ms),
                                    iso8601(w.end_ms)
                                );
                                e.break_window = Some(w);
                            }
                            self.finish(now_ms, id, Err(e))
                        }
                    }
                }
                Err(e) => self.finish(now_ms, id, Err(e)),
            },
            Step::SetState => {
                let result = self.profile.parse_state(r);
                self.finish(now_ms, id, result);
            }
        }
    }

    fn retry_or_fail(
        &mut self,
        now_ms: u64,
        id: TransitionId,
        step: Step,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        transport: Option<TransportErrorKind>,
    ) {
        self.note_rate_limit(now_ms, status, retry_after_ms);
        let t = self
            .transitions
            .get_mut(&id)
            .expect("pending transitions exist");
        let slot = &mut t.retries[step as usize];
        *slot += 1;
        let retry = *slot;
        match self
            .config
            .retry
            .decide(retry, retry_after_ms, &mut self.rng)
        {
            RetryDecision::RetryAfter(delay_ms) => {
                self.backoffs.insert((now_ms + delay_ms, id), step);
                let user = self.transitions[&id].user.as_str().to_owned();
                self.out
                    .push_back(Output::Event(Event::RetryScheduled(RetryScheduled {
                        transition_id: Some(id),
                        user_id: Some(user),
                        kind: step.kind(),
                        retry,
                        delay_ms,
                        status,
                        at_ms: now_ms,
                    })));
            }
            RetryDecision::GiveUp => {
                let what = match (status, transport) {
                    (_, Some(TransportErrorKind::Timeout)) => "request (timed out)",
                    (_, Some(_)) => "request (connection failed)",
                    _ => "request",
                };
                self.finish(now_ms, id, Err(exhausted(status, what)));
            }
        }
    }

    /// A 429 with `Retry-After` pauses every request to the tenant, not only the one that got it.
    fn note_rate_limit(&mut self, now_ms: u64, status: Option<u16>, retry_after_ms: Option<u64>) {
        if let (Some(429), Some(ra)) = (status, retry_after_ms) {
            if ra <= self.config.retry.max_retry_after_ms {
                self.pacer.pause_until(now_ms + ra);
            }
        }
    }

    // ---- completion -----------------------------------------------------------------------------------

    fn finish(&mut self, now_ms: u64, id: TransitionId, result: Result<(), TransitionError>) {
        let Some(t) = self.transitions.remove(&id) else {
            return;
        };
        let latency_ms = now_ms.saturating_sub(t.started_ms);
        let result = match result {
            Err(mut e) if t.resumed && !t.set_state_sent => {
                e.message.push_str(
                    " (a resumed change: its send before the interruption may have reached the tenant)",
                );
                Err(e)
            }
            r => r,
        };
        if t.validate_only {
            let result = result.map(|()| t.reason_code.clone());
            self.emit_validation(now_ms, id, t.user.as_str(), t.state.as_str(), result);
        } else {
            self.emit_attempt(
                now_ms,
                id,
                Attempt {
                    user_id: t.user.as_str().to_owned(),
                    new_state: t.state.as_str().to_owned(),
                    reason_code: Some(t.reason_code.clone()),
                    result,
                    latency_ms,
                    attempts: t.attempts,
                    // A resumed change records its journaled key even if it was refused before sending,
                    // so the journal entry counts as settled and is not resumed again on the next start.
                    idempotency_key: t
                        .idempotency_key
                        .clone()
                        .filter(|_| t.set_state_sent || t.resumed),
                },
            );
        }
        // Hand the agent's slot to its next waiting command.
        let next = self.agent_queues.get_mut(&t.user).and_then(|q| {
            q.retain(|x| *x != id);
            q.front().copied()
        });
        match next {
            Some(next) => self.advance(now_ms, next),
            None => {
                self.agent_queues.remove(&t.user);
            }
        }
    }

    fn emit_validation(
        &mut self,
        now_ms: u64,
        id: TransitionId,
        user_id: &str,
        state: &str,
        result: Result<String, TransitionError>,
    ) {
        let (valid, reason_code, error) = match result {
            Ok(rc) => (true, Some(rc), None),
            Err(e) => (false, None, Some(e)),
        };
        self.out.push_back(Output::Event(Event::ValidationCompleted(
            ValidationCompleted {
                transition_id: id,
                user_id: user_id.to_owned(),
                state: state.to_owned(),
                valid,
                reason_code,
                error,
                at_ms: now_ms,
            },
        )));
    }

    fn emit_attempt(&mut self, now_ms: u64, id: TransitionId, a: Attempt) {
        let previous = self.history.current(&a.user_id).cloned();
        let error = a.result.as_ref().err();
        let error_code = error.map(|e| e.code);
        let policy_violation = error_code.is_some_and(ErrorCode::is_policy_violation);
        if let Some(code) = error_code.filter(|_| policy_violation) {
            self.out
                .push_back(Output::Event(Event::PolicyViolation(PolicyViolation {
                    transition_id: id,
                    user_id: a.user_id.clone(),
                    requested_state: a.new_state.clone(),
                    code,
                    at_ms: now_ms,
                })));
        }
        // A change that succeeded was sent, so it has its idempotency key.
        let webhook_id = a
            .idempotency_key
            .as_deref()
            .filter(|_| a.result.is_ok())
            .map(webhook_event_id);
        let timestamp = iso8601(now_ms);
        let record = AuditRecord {
            seq: 0,
            id: self.rng.uuid().to_string(),
            timestamp: timestamp.clone(),
            user_id: a.user_id.clone(),
            previous_state: previous.as_ref().map(|p| p.state.clone()),
            new_state: a.new_state.clone(),
            reason_code: a.reason_code.clone(),
            success: a.result.is_ok(),
            latency_ms: a.latency_ms,
            policy_violation,
            error_code,
            error_message: error.map(|e| e.message.clone()),
            attempts: a.attempts,
            idempotency_key: a.idempotency_key,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let record = self.chain.append(record);
        self.report.ingest(&record);
        self.out
            .push_back(Output::Event(Event::AuditRecord(record)));
        match a.result {
            Ok(()) => {
                self.history.record(&a.user_id, &a.new_state, now_ms);
                let idle_time_ms = previous
                    .as_ref()
                    .filter(|p| is_idle_state(&p.state))
                    .map_or(0, |p| now_ms.saturating_sub(p.entered_at_ms));
                let reason_code = a.reason_code.unwrap_or_default();
                let previous_state = previous.map(|p| p.state);
                self.out
                    .push_back(Output::Event(Event::StateChanged(StateChanged {
                        transition_id: id,
                        user_id: a.user_id.clone(),
                        previous_state: previous_state.clone(),
                        new_state: a.new_state.clone(),
                        reason_code: reason_code.clone(),
                        latency_ms: a.latency_ms,
                        attempts: a.attempts,
                        at_ms: now_ms,
                    })));
                let payload = WebhookPayload {
                    event: AGENT_STATE_CHANGED.to_owned(),
                    event_id: webhook_id.unwrap_or_default(),
                    timestamp,
                    data: WebhookData {
                        user_id: a.user_id,
                        new_state: a.new_state,
                        previous_state,
                        reason_code,
                        latency_ms: a.latency_ms,
                        idle_time_ms,
                        violation_count: self.report.violation_count(),
                    },
                };
                self.out.push_back(Output::Event(Event::Webhook(payload)));
            }
            Err(error) => {
                self.out
                    .push_back(Output::Event(Event::TransitionFailed(TransitionFailed {
                        transition_id: id,
                        user_id: a.user_id,
                        requested_state: a.new_state,
                        error,
                        policy_violation,
                        latency_ms: a.latency_ms,
                        attempts: a.attempts,
                        at_ms: now_ms,
                    })));
            }
        }
    }
}

/// What a command asks for.
enum Mode {
    /// A policy check only.
    Validate,
    /// A change; for a resumed one, its journaled idempotency key and journal time.
    Change(Option<(String, Option<u64>)>),
}

fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Clone, Copy)]
enum QueueName {
    Commit,
    Check,
}

/// The facts of one finished transition attempt.
struct Attempt {
    user_id: String,
    new_state: String,
    reason_code: Option<String>,
    result: Result<(), TransitionError>,
    latency_ms: u64,
    attempts: u32,
    idempotency_key: Option<String>,
}

/// How often one transition may wait for a token fetch: the first fetch, a refresh after a 401, and a
/// couple of expiries during long outages.
const MAX_TOKEN_WAITS: u32 = 4;

/// The webhook event id of a change: derived from its idempotency key, so a change that is resumed after a
/// crash (and announced again) carries the same id and receivers dedupe it.
fn webhook_event_id(change_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update("cxone-agent-state/webhook/")
        .chain_update(change_key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn is_transient(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

fn exhausted(status: Option<u16>, what: &str) -> TransitionError {
    match status {
        Some(429) => TransitionError::new(
            ErrorCode::RateLimited,
            format!("{what} still rate limited (429) after all retries"),
        ),
        Some(s) => TransitionError::new(
            ErrorCode::UpstreamUnavailable,
            format!("{what} still failing ({s}) after all retries"),
        ),
        None => TransitionError::new(
            ErrorCode::UpstreamUnavailable,
            format!("{what} got no answer after all retries"),
        ),
    }
}

fn policy_error(decision: PolicyDecision) -> TransitionError {
    match decision {
        PolicyDecision::MandatoryBreakViolation => TransitionError::new(
            ErrorCode::MandatoryBreakViolation,
            "a mandatory break is due: READY is not allowed",
        ),
        _ => TransitionError::new(
            ErrorCode::AgentNotScheduled,
            "the agent has no active shift",
        ),
    }
}

fn error_field(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("error")?.as_str()?;
    Some(e.chars().take(200).collect())
}
