//! The engine: one sans-IO state machine. Shared tenant context (tokens, pacer, schedule cache, audit chain,
//! history, report, the log's open state and the webhook outbox) lives here; each change is a small machine
//! of its own ([`crate::change`]), as quinn keeps its endpoint apart from its connections.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Override, OverrideNote, Source};
use crate::audit::{AuditRecord, ChainHead};
use crate::change::{Change, Committing, Lookup, Phase, Purpose, Verdict};
use crate::config::{check_url, EngineConfig, ProfileKind, Secret, TokenSource};
use crate::cxone::{acd, auth, wfm};
use crate::error::{CommandError, ConfigError, ErrorCode, TransitionError};
use crate::events::{
    Event, PolicyViolation, RequestKind, RetryScheduled, StateChanged, TokenRequested,
    TransitionFailed, TransitionId, ValidationCompleted, WebhookData, WebhookDeadLettered,
    WebhookDelivered, WebhookPayload, WebhookRetryScheduled, AGENT_STATE_CHANGED,
};
use crate::facts::{FactKey, Facts, FetchState, Host, Needs, Resolved};
use crate::history::{AgentMetrics, History};
use crate::http::{HttpRequest, HttpResponse, RequestId, Target, Transmit, TransportErrorKind};
use crate::log::{
    Abandoned, ChangeIntent, DeadLetter, Delivered, LogState, OpenChange, Record, Replayed,
    WebhookEntry,
};
use crate::observe::Observer;
use crate::outbox::{Note, Outbox};
use crate::pacer::{Pacer, RateLimit};
use crate::policy::{PolicyDecision, ScheduleCache};
use crate::profile::{ApiProfile, SeedProfile, TokenFailure};
use crate::reference::is_valid_reference;
use crate::report::{ComplianceReport, ReportBuilder};
use crate::retry::RetryDecision;
use crate::rng::DetRng;
use crate::state::{AgentState, UserId};
use crate::time::{iso8601, Now};

mod agent_view;
mod deferring;
mod observing;

use crate::token::{AuthStep, Discovery, Fetch, TokenCache};
pub use agent_view::AgentView;
use deferring::deferral_note;
pub use deferring::DeferredChange;

/// Something the world tells the engine, with the time the host read when it happened.
///
/// Commands (a caller asking for a change) are methods: [`Engine::transition`], [`Engine::validate`], …
///
/// In JSON the variant is named by `type`: `{"type": "response", "now": {…}, "id": 3, "response": {…}}`,
/// `{"type": "transportError", "now": {…}, "id": 3, "kind": "reset"}`, `{"type": "timeout", "now": {…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Input {
    /// An HTTP answer to a request the engine handed out.
    Response {
        /// When it arrived.
        now: Now,
        /// The request's id.
        id: RequestId,
        /// The answer.
        response: HttpResponse,
    },
    /// A request that got no HTTP answer.
    TransportError {
        /// When it failed.
        now: Now,
        /// The request's id.
        id: RequestId,
        /// What went wrong.
        kind: TransportErrorKind,
    },
    /// The host's token source answered an [`Event::TokenRequested`] (with [`TokenSource::External`]).
    AccessToken {
        /// When it answered.
        now: Now,
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
        /// `cxone`: the ACD/Admin API base, when the token source knows it (a configured base wins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// `cxone`: the WFM base, when the token source knows it (a configured base wins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wfm_base: Option<String>,
    },
    /// The deadline from [`Output::Timeout`] has passed (early calls are harmless).
    Timeout {
        /// Now.
        now: Now,
    },
}

impl Input {
    /// When it happened.
    pub fn now(&self) -> Now {
        match self {
            Self::Response { now, .. }
            | Self::TransportError { now, .. }
            | Self::AccessToken { now, .. }
            | Self::Timeout { now } => *now,
        }
    }
}

/// One output of the engine. Drain until [`Output::Timeout`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "camelCase")]
pub enum Output {
    /// Perform this request and hand back the answer with the same id.
    Transmit(Transmit),
    /// Make this record durable — **before performing any later `Transmit` or reporting any later event**.
    Persist(Record),
    /// Deliver this event (outcomes to their callers, the rest to listeners).
    Event(Event),
    /// Nothing more for now: call [`Engine::handle_timeout`] when the monotonic clock reaches this
    /// (milliseconds, the host's `mono_ms`), or never if `None`.
    Timeout(Option<u64>),
}

/// What [`Engine::restore`] found in the log and did with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Restored {
    /// Open changes sent again with their journaled `Idempotency-Key`.
    pub resumed: usize,
    /// Open changes too old to send again safely: recorded as `OUTCOME_UNKNOWN` and closed.
    pub abandoned: usize,
    /// Webhook payloads put back in line for delivery (those for their original receiver included).
    pub webhooks: usize,
    /// Dead letters held (see [`Engine::replay_dead_letters`]), those set aside now included.
    pub dead_letters: usize,
    /// Of `webhooks`, payloads accepted for another receiver than the configured one (the webhook URL
    /// changed since) that go to that original receiver
    /// ([`ReceiverChange::DeliverToOriginal`](crate::ReceiverChange::DeliverToOriginal)).
    pub webhooks_to_original_receiver: usize,
    /// Of `dead_letters`, payloads accepted for another receiver than the configured one that were set aside
    /// now: the policy says so ([`ReceiverChange::DeadLetter`](crate::ReceiverChange::DeadLetter)), or their
    /// receiver's URL is not in the log.
    pub webhooks_dead_lettered_receiver_changed: usize,
    /// Deferred changes held again (each under a new transition id), to be released when their break
    /// ends; any whose deadline has passed expires at once.
    pub deferred: usize,
}

/// Options of a state change ([`Engine::transition_with`]). Start from `TransitionOptions::default()` and
/// add what applies; new options may be added later.
///
/// ```
/// use cxone_agent_state_core::TransitionOptions;
/// let options = TransitionOptions::default().with_reference("ticket-4711");
/// assert_eq!(options.reference.as_deref(), Some("ticket-4711"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TransitionOptions {
    /// The caller's reference of the change: 1 to [`MAX_REFERENCE_LEN`](crate::MAX_REFERENCE_LEN)
    /// printable ASCII characters, e.g. a ticket number or `bulk:sha256=<16 hex>:row=12`. It goes into the
    /// change's intent and into every audit record of the change (resumed after a restart too), and onto its
    /// `StateChanged` or `TransitionFailed`; it is never sent to the tenant. See
    /// [`ReferencedOutcomes`](crate::ReferencedOutcomes) for reading it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The reason code to set the state with, instead of the one the configured table names for the target
    /// state: on `cxone`, the name of one of the agent's team's unavailable codes (`Lunch`, matched ignoring
    /// case, `_`, `-` and spaces; ignored for READY, which is `Available`); on `seed`, the `reasonCode` sent.
    /// 1 to [`MAX_REASON_LEN`] printable characters; anything else, or a name no code has, fails the change
    /// with `UNKNOWN_REASON_CODE` before anything is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asks for it. When absent: the override's supervisor if there is an override, else the system.
    /// An id that is not 1 to [`MAX_ACTOR_LEN`](crate::MAX_ACTOR_LEN) printable characters refuses the
    /// command with `INVALID_ACTOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// A supervisor's override of the compliance policy (see [`Override`]): a policy refusal does not stop
    /// the change, and its audit record names the override and the rule it passed. A supervisor or reason
    /// that is empty or not printable refuses the command with `INVALID_OVERRIDE`.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Override>,
    /// Hold a READY that a due mandatory break refuses, rather than fail it: it is applied when the break
    /// ends (checked again before it is sent), or given up at its deadline
    /// ([`DeferConfig::max_wait_ms`](crate::DeferConfig)). See [`crate::DeferralPhase`] for its steps. A
    /// newer change of the same agent replaces it. Ignored by validations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defer: bool,
}

/// The longest reason a caller may name ([`TransitionOptions::reason`]).
pub const MAX_REASON_LEN: usize = 64;

impl TransitionOptions {
    /// These options with an explicit reason code ([`TransitionOptions::reason`]).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// These options with the caller's `reference` (checked when the command is given).
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// These options naming who asks for the change.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// These options asking to hold the change while a break is due ([`TransitionOptions::defer`]).
    pub fn with_defer(mut self) -> Self {
        self.defer = true;
        self
    }

    /// These options with a supervisor's override of the policy.
    pub fn with_override(mut self, o: Override) -> Self {
        self.override_ = Some(o);
        self
    }

    /// The actor the change's records name: the one given, else the override's supervisor, else the
    /// system; or why the options are refused.
    fn checked_actor(&self) -> Result<Actor, CommandError> {
        if let Some(o) = &self.override_ {
            if !o.is_valid() {
                return Err(CommandError::InvalidOverride);
            }
        }
        let actor = match (&self.actor, &self.override_) {
            (Some(a), _) => a.clone(),
            (None, Some(o)) => Actor::supervisor(o.actor.clone()),
            (None, None) => Actor::system(),
        };
        if !actor.is_valid() {
            return Err(CommandError::InvalidActor(crate::ActorError));
        }
        Ok(actor)
    }
}

/// What a command asks for, with the caller's options (not yet checked).
#[derive(Clone, Copy, Debug)]
enum Ask<'a> {
    /// A policy check only (the reference is ignored).
    Validate(&'a TransitionOptions),
    /// A state change.
    Change(&'a TransitionOptions),
}

#[derive(Clone, Debug)]
enum Owner {
    Token,
    Change(TransitionId),
    /// `cxone`: a fact shared by the changes waiting for it.
    Fact(FactKey),
    /// `cxone`: a page of the observer's poll.
    Poll,
    /// `cxone`: an agent's state history, to settle an unknown outcome.
    StateHistory(String),
}

/// A named timer (quinn keeps a fixed table of them behind one `poll_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A request gets no answer by then: it timed out.
    Request(RequestId),
    /// A change's retry backoff ends.
    Backoff(TransitionId),
    /// A deferred change's break ends: it is released to be checked again.
    Deferred(TransitionId),
    /// A bounded stop's grace ends: changes never sent end (see [`Engine::stop_within`]).
    AbandonUnsent,
    /// A bounded stop's last bound: the engine closes if a change is still open.
    CloseOpen,
}

#[derive(Clone, Debug)]
struct Pending {
    owner: Owner,
    deadline_mono: u64,
    token_generation: u64,
}

/// A tenant clock within this much of ours is taken to agree with it (see [`Engine::tenant_now`]).
const TENANT_CLOCK_TOLERANCE_MS: u64 = 2_000;

const DAY_MS: u64 = 86_400_000;

/// A directory that has not ended after this many pages, or this many agents, is taken as a paging loop.
const MAX_DIRECTORY_PAGES: u32 = 10_000;
const MAX_DIRECTORY_AGENTS: u64 = 1_000_000;

/// An answer whose round trip took longer than this does not set the tenant's clock.
const TENANT_CLOCK_MAX_ROUND_TRIP_MS: u64 = 2_000;

/// How often one transition may wait for a token fetch: the first fetch, a refresh after a 401, and a
/// couple of expiries during long outages.
const MAX_TOKEN_WAITS: u32 = 4;

/// The longest raw input (a user id or state name that failed validation) written to a record as given;
/// longer input is cut here and marked, so no caller can make a record arbitrarily large.
const MAX_RAW_INPUT_CHARS: usize = 128;

/// The sans-IO engine.
///
/// # Driving it
/// 1. Hand in what happened, each with a [`Now`]: commands as methods ([`transition`](Self::transition),
///    [`validate`](Self::validate)), answers and timers as [`Input`]s ([`handle_input`](Self::handle_input) or
///    the typed helpers).
/// 2. Drain [`poll_output`](Self::poll_output) until it returns [`Output::Timeout`]: persist each
///    [`Output::Persist`], perform each [`Output::Transmit`], deliver each [`Output::Event`] — in order.
///    **Persist every `Persist` before performing any later `Transmit` or reporting any later event.**
/// 3. When the monotonic clock reaches the timeout (or anything else happens), call
///    [`handle_timeout`](Self::handle_timeout) and go back to step 2. Calling it early is harmless.
///
/// # Guarantees
/// - Every transition command ends in exactly one `StateChanged` or `TransitionFailed`, preceded by its
///   audit record; every validation command ends in one `ValidationCompleted`.
/// - Policy is decided before a change is first sent and never after. A change that may have reached the
///   tenant ends as a success or as `OUTCOME_UNKNOWN` (unless the tenant's own answer to an idempotent
///   resend says it was not applied).
/// - Changes for one agent run one at a time, in the order they were asked for.
/// - Every API and token request passes the pacer of its host (on `cxone`, the ACD and WFM hosts have one
///   each, and a 429 pauses only its own); a token fetch is shared by all who need it, and so is each
///   `cxone` fact (the directory, an agent's schedule export, a team's unavailable codes).
/// - On `cxone`, policy is decided from the agent's schedule export on the tenant's clock (read from its
///   answers' `Date`), before the first send, as on `seed`.
/// - After [`close`](Self::close) the engine stays closed: commands answer `CLOSED`, inputs are ignored.
pub struct Engine {
    config: EngineConfig,
    profile: Box<dyn ApiProfile>,
    base_url: String,
    rng: DetRng,
    token: TokenCache,
    /// The ACD (or `seed`) host's pacer; token and discovery requests pass it too.
    pacer: Pacer,
    /// `cxone`: the WFM host's pacer.
    wfm_pacer: Pacer,
    /// `cxone`: the token endpoint, the tenant and its bases.
    discovery: Discovery,
    /// `cxone`: the directory, schedule exports and unavailable codes.
    facts: Facts,
    /// `cxone`: the share of the WFM budget background schedule reads may take.
    prefetch_pacer: Pacer,
    /// `cxone`: when a background schedule read may go out next.
    prefetch_wake: Option<u64>,
    /// `cxone`: how far the tenant's clock (its answers' `Date`) is ahead of the wall clock handed in, ms.
    tenant_clock_offset_ms: i64,
    schedules: ScheduleCache,
    /// `cxone`: what the poll has seen, and the unknown outcomes it may settle.
    observer: Observer,
    history: History,
    report: ReportBuilder,
    chain: ChainHead,
    log: LogState,
    outbox: Option<Outbox>,
    next_transition: u64,
    next_request: u64,
    changes: BTreeMap<TransitionId, Change>,
    agents: BTreeMap<UserId, VecDeque<TransitionId>>,
    runnable: VecDeque<TransitionId>,
    commit_queue: VecDeque<TransitionId>,
    check_queue: VecDeque<TransitionId>,
    token_waiters: VecDeque<TransitionId>,
    pending: BTreeMap<RequestId, Pending>,
    /// Every timer but the pacer's, the token fetch's and the outbox's, by monotonic deadline.
    /// Agent → its deferred change (at most one).
    deferred: BTreeMap<UserId, TransitionId>,
    timers: BTreeSet<(u64, Timer)>,
    pacer_wake_mono: Option<u64>,
    last_mono: u64,
    accepting: bool,
    closed: bool,
    /// The generator was keyed to this run (see [`Engine::begin`]): a restore or a command came first, so
    /// [`Engine::restore`] does nothing from now on.
    begun: bool,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("base_url", &self.base_url)
            .field("open_changes", &self.changes.len())
            .field("in_flight", &self.pending.len())
            .field("chain", &self.chain)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds an engine; the configuration is validated first.
    pub fn new(config: EngineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        // `cxone` is spoken by the engine with `crate::cxone`'s wire functions; the seed profile builds the rest.
        let profile: Box<dyn ApiProfile> = Box::new(SeedProfile);
        let discovery = Discovery {
            token_endpoint: config.token_url.clone(),
            api_base: config.cxone.api_base.clone(),
            wfm_base: config.cxone.wfm_base.clone(),
            ..Discovery::default()
        };
        Ok(Self {
            profile,
            wfm_pacer: Pacer::new(&config.cxone.wfm_rate_limit),
            discovery,
            facts: Facts::default(),
            prefetch_pacer: Pacer::new(&RateLimit {
                per_minute: (u64::from(config.cxone.wfm_rate_limit.per_minute)
                    * u64::from(config.cxone.schedule_prefetch_percent)
                    / 100)
                    .clamp(1, u64::from(u32::MAX)) as u32,
                burst: Some(1),
            }),
            prefetch_wake: None,
            tenant_clock_offset_ms: 0,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            rng: DetRng::new(config.seed),
            token: TokenCache::new(config.token_refresh_margin_ms),
            pacer: Pacer::new(&config.rate_limit),
            schedules: ScheduleCache::new(config.schedule_ttl_ms, config.history.max_agents),
            observer: Observer::default(),
            history: History::new(config.history.clone()),
            report: ReportBuilder::new(config.report_log_capacity).live(),
            chain: ChainHead::default(),
            log: LogState::default(),
            outbox: config.webhook.clone().map(Outbox::new),
            next_transition: 1,
            next_request: 1,
            changes: BTreeMap::new(),
            agents: BTreeMap::new(),
            runnable: VecDeque::new(),
            commit_queue: VecDeque::new(),
            check_queue: VecDeque::new(),
            token_waiters: VecDeque::new(),
            pending: BTreeMap::new(),
            deferred: BTreeMap::new(),
            timers: BTreeSet::new(),
            pacer_wake_mono: None,
            last_mono: 0,
            accepting: true,
            closed: false,
            begun: false,
            out: VecDeque::new(),
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ---- restart ------------------------------------------------------------------------------------------

    /// Continues from a durable log after a restart: the audit chain goes on from its head, each agent's
    /// last known state seeds the history (so the next change names its `previousState`), every open change
    /// is finished, and undelivered webhooks are sent. Call it once, before any command (later calls do
    /// nothing).
    ///
    /// An open change is sent again with its journaled `Idempotency-Key` — without a new policy check
    /// (policy was decided before its first send): a tenant that already applied it answers from its record
    /// of that send, one that did not applies it now. A change whose approving check is older than the commit
    /// window is not sent again (it could apply something policy no longer allows): it is recorded as
    /// `OUTCOME_UNKNOWN` and closed.
    pub fn restore(&mut self, now: Now, state: LogState) -> Restored {
        let mut restored = Restored::default();
        if self.begun || self.closed {
            return restored;
        }
        let now = self.clock(now);
        self.chain = state.chain_head().clone();
        self.begin(now);
        // A wall clock that reads earlier than the log's last record has been stepped back since: no age
        // measured on it can be trusted, so nothing is resent (it could land outside its commit window).
        let clock_behind = now.unix_ms < state.last_at_ms();
        // Each agent's last known state starts the history, so the first change after a restart names the
        // state it leaves (in its event, its webhook and its audit record). A stretch cannot start after now:
        // one the log dates later (the clock was stepped back) starts now.
        for last in state.last_states() {
            self.history
                .record(&last.user_id, &last.state, last.at_ms.min(now.unix_ms));
        }
        let opens: Vec<OpenChange> = state.open_changes().cloned().collect();
        let undelivered: Vec<WebhookEntry> = state.undelivered().cloned().collect();
        let deferred: Vec<crate::OpenDeferral> = state.deferred().cloned().collect();
        self.log = state;
        restored.deferred = self.restore_deferred(now, deferred);
        // Each agent's latest open change, by its index in `opens` (inserted one by one: `collect` into a
        // map sorts first, which costs the wasm module a sort routine for nothing).
        let mut latest: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, o) in opens.iter().enumerate() {
            latest.insert(o.intent.user_id.as_str(), index);
        }

        for (index, open) in opens.iter().enumerate() {
            let i = &open.intent;
            let parsed = parse_target(&i.user_id, &i.state);
            let age = now
                .unix_ms
                .checked_sub(i.approved_at_ms)
                .filter(|_| !clock_behind);
            let window = self.config.commit_window_ms;
            let verdict = match (parsed, age) {
                // Only the latest open change of an agent may go out again: an older one would undo it.
                _ if latest[i.user_id.as_str()] != index => {
                    Err("superseded by a later change of the same agent: not sent again".to_owned())
                }
                (Err(_), _) => Err("its agent or state is malformed: not sent again".to_owned()),
                (Ok(_), None) => Err(
                    "the wall clock reads earlier than the log, so its age cannot be trusted: not sent again"
                        .to_owned(),
                ),
                (Ok(_), Some(age)) if age > window => Err(format!(
                    "its policy check is {} s old, past the {} s commit window: not sent again",
                    age / 1000,
                    window / 1000
                )),
                (Ok(parsed), Some(age)) => match self.resolve_journaled(&parsed, i) {
                    Ok(resolved) => Ok((parsed, age, resolved)),
                    Err(why) => Err(why),
                },
            };
            match verdict {
                Ok(((user, state), age, resolved)) => {
                    let id = self.next_id();
                    let phase = Phase::Committing(Committing {
                        send_by_mono: now
                            .mono_ms
                            .saturating_add(self.config.commit_window_ms - age),
                        retries: 0,
                        maybe_applied: true,
                        throttled: false,
                    });
                    let purpose = Purpose::Change {
                        key: i.idempotency_key.clone(),
                        settles: open.unknown_record.clone(),
                        reference: i.reference.clone(),
                    };
                    let mut change = Change::new(
                        user,
                        state,
                        i.reason_code.clone(),
                        purpose,
                        now.mono_ms,
                        phase,
                    );
                    change.resolved = resolved;
                    change.first_sent_unix = Some(i.approved_at_ms);
                    change.actor = i.actor.clone().unwrap_or_else(Actor::system);
                    change.override_ = i.override_.clone();
                    self.admit(id, change);
                    restored.resumed += 1;
                }
                Err(why) => {
                    if open.unknown_record.is_none() {
                        let e = TransitionError::new(
                            ErrorCode::OutcomeUnknown,
                            format!("interrupted before the tenant confirmed it; {why}"),
                        );
                        let user_id = truncate_raw(&i.user_id);
                        let record = self.audit_record(
                            now,
                            AuditDraft {
                                previous_state: self.previous_state(&user_id),
                                user_id,
                                new_state: truncate_raw(&i.state),
                                reason_code: Some(i.reason_code.clone()),
                                latency_ms: 0,
                                attempts: 0,
                                idempotency_key: Some(i.idempotency_key.clone()),
                                settles: None,
                                reference: i.reference.clone(),
                                observation: None,
                                relies_on: None,
                                actor: i.actor.clone().unwrap_or_else(Actor::system),
                                override_: i.override_.clone(),
                                deferral: i
                                    .deferral
                                    .clone()
                                    .map(|id| Box::new(crate::DeferralNote::released(id))),
                            },
                            Err(&e),
                        );
                        self.persist(Record::Audit(record));
                    }
                    self.persist(Record::Abandoned(Abandoned {
                        idempotency_key: i.idempotency_key.clone(),
                        reason: why,
                        at_ms: now.unix_ms,
                    }));
                    restored.abandoned += 1;
                }
            }
        }
        // A payload belongs to the receiver it was accepted for: one for another receiver (the URL changed
        // since) goes there or becomes a dead letter, as the configuration says. Without a receiver
        // configured, every payload stays in the log as it is.
        let mut set_aside = Vec::new();
        if let Some(outbox) = &mut self.outbox {
            for e in undelivered {
                let age = if clock_behind {
                    0
                } else {
                    now.unix_ms.saturating_sub(e.at_ms)
                };
                match outbox.route(&e) {
                    Ok(original) => {
                        let elsewhere = original.is_some();
                        if outbox.enqueue_to(original, e, now, age) {
                            restored.webhooks += 1;
                            restored.webhooks_to_original_receiver += usize::from(elsewhere);
                        }
                    }
                    Err(reason) => set_aside.push((e.event_id, reason)),
                }
            }
        }
        for (event_id, reason) in set_aside {
            self.on_outbox_note(
                now,
                Note::DeadLettered {
                    event_id,
                    attempts: 0,
                    last_status: None,
                    reason,
                },
            );
            restored.webhooks_dead_lettered_receiver_changed += 1;
        }
        restored.dead_letters = self.log.dead_letter_count();
        self.run(now);
        restored
    }

    /// `cxone`: what a journaled change is sent again as (its agent and its `SetAgentState` target, from the
    /// journal); `None` on `seed`.
    fn resolve_journaled(
        &self,
        (user, state): &(UserId, AgentState),
        intent: &ChangeIntent,
    ) -> Result<Option<Resolved>, String> {
        let journaled = intent.profile.unwrap_or_default();
        if journaled != self.config.profile {
            return Err(format!(
                "it was sent on the {journaled} profile and the engine now speaks {}: not sent again",
                self.config.profile
            ));
        }
        if !self.cxone() {
            return Ok(None);
        }
        let agent_id = acd::AgentId::parse(user)
            .map_err(|_| "its agent is not a CXone agent id: not sent again".to_owned())?;
        let target = match (state.is_ready(), intent.out_state_id) {
            (true, _) => acd::CxoneState::Available,
            (false, Some(out_state_id)) => acd::CxoneState::Unavailable { out_state_id },
            (false, None) => {
                return Err(
                    "its unavailable code is not in the journal, so it cannot be sent as it was: not sent again"
                        .to_owned(),
                )
            }
        };
        Ok(Some(Resolved { agent_id, target }))
    }

    // ---- commands -----------------------------------------------------------------------------------------

    /// Starts a state change (the reference's `transitionState`). Its outcome comes as an event with this id.
    pub fn transition(
        &mut self,
        now: Now,
        user_id: &str,
        state: &str,
    ) -> Result<TransitionId, CommandError> {
        self.command(
            now,
            user_id,
            state,
            Ask::Change(&TransitionOptions::default()),
        )
    }

    /// Starts a state change with options, e.g. the caller's reference
    /// ([`TransitionOptions::with_reference`]); otherwise the same as [`transition`](Self::transition).
    ///
    /// A reference that is not 1 to [`MAX_REFERENCE_LEN`](crate::MAX_REFERENCE_LEN) printable ASCII
    /// characters refuses the command: [`CommandError::InvalidReference`] (`INVALID_REFERENCE`), no id,
    /// nothing audited.
    pub fn transition_with(
        &mut self,
        now: Now,
        user_id: &str,
        state: &str,
        options: &TransitionOptions,
    ) -> Result<TransitionId, CommandError> {
        self.command(now, user_id, state, Ask::Change(options))
    }

    /// Starts a policy check only (the reference's `validateStateChange`); nothing is changed or audited.
    pub fn validate(
        &mut self,
        now: Now,
        user_id: &str,
        state: &str,
    ) -> Result<TransitionId, CommandError> {
        self.command(
            now,
            user_id,
            state,
            Ask::Validate(&TransitionOptions::default()),
        )
    }

    /// A policy check with options (an explicit [`reason`](TransitionOptions::reason) is checked too; the
    /// reference is ignored); otherwise the same as [`validate`](Self::validate).
    pub fn validate_with(
        &mut self,
        now: Now,
        user_id: &str,
        state: &str,
        options: &TransitionOptions,
    ) -> Result<TransitionId, CommandError> {
        self.command(now, user_id, state, Ask::Validate(options))
    }

    /// Puts dead letters back in line for delivery: the one with `event_id`, or all when `None`. Returns how
    /// many. Each is recorded ([`Record::Replayed`]) and goes to the receiver configured now, whichever it was
    /// accepted for: the record names that receiver, so a later restart keeps it there.
    pub fn replay_dead_letters(&mut self, now: Now, event_id: Option<&str>) -> usize {
        if self.closed {
            return 0;
        }
        let Some(outbox) = &self.outbox else {
            return 0;
        };
        let letters: Vec<WebhookEntry> = self
            .log
            .dead_letters()
            .filter(|d| event_id.is_none_or(|id| d.entry.event_id == id))
            .map(|d| outbox.bind(d.entry.clone()))
            .collect();
        let count = letters.len();
        let now = self.clock(now);
        for entry in letters {
            self.persist(Record::Replayed(Replayed {
                event_id: entry.event_id.clone(),
                at_ms: now.unix_ms,
                receiver: entry.receiver.clone(),
                url: entry.url.clone(),
            }));
            if let Some(o) = &mut self.outbox {
                o.enqueue(entry, now, 0);
            }
        }
        self.run(now);
        count
    }

    /// Stops taking commands (they answer `CLOSED`); changes already taken run to their end. For a graceful
    /// shutdown: stop, drive until [`open_changes`](Self::open_changes) is 0, then drop or [`close`](Self::close).
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Ends now, each as `CLOSED` and audited, every open change that was never sent: one waiting behind
    /// its agent's earlier change, deciding policy, or approved and waiting for the pacer. Nothing of them
    /// reached the tenant, so nothing is contradicted. Changes sent at least once run to their end (applied,
    /// refused, or `OUTCOME_UNKNOWN`); deferred changes stay held in the log for the next start. For a
    /// bounded graceful stop: [`stop_accepting`](Self::stop_accepting), drive while the grace lasts, then
    /// this, then drive until [`open_changes`](Self::open_changes) is 0. Returns how many ended.
    pub fn abandon_unsent(&mut self, now: Now) -> usize {
        if self.closed {
            return 0;
        }
        let now = self.clock(now);
        let ended = self.end_unsent(now);
        self.run(now);
        ended
    }

    /// A bounded graceful stop, on the engine's own timers: takes no more commands and stops observing now;
    /// `abandon_unsent_after_ms` from now, every change never sent ends `CLOSED`
    /// ([`abandon_unsent`](Self::abandon_unsent)); `close_after_ms` from now, if a change is still open, the
    /// engine [closes](Self::close) (one that may have reached the tenant ends `OUTCOME_UNKNOWN`, settled by
    /// a later start). `None`: that bound never comes. The host drives as ever until
    /// [`open_changes`](Self::open_changes) is 0 (and the outbox empty or out of time).
    pub fn stop_within(
        &mut self,
        now: Now,
        abandon_unsent_after_ms: Option<u64>,
        close_after_ms: Option<u64>,
    ) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        self.stop_accepting();
        self.stop_observing();
        for (after, timer) in [
            (abandon_unsent_after_ms, Timer::AbandonUnsent),
            (close_after_ms, Timer::CloseOpen),
        ] {
            if let Some(ms) = after {
                self.timers.insert((now.mono_ms.saturating_add(ms), timer));
            }
        }
    }

    /// Ends every open change never sent as `CLOSED`, audited; how many.
    fn end_unsent(&mut self, now: Now) -> usize {
        let ids: Vec<TransitionId> = self
            .changes
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.phase,
                    Phase::Waiting | Phase::Checking { .. } | Phase::Approved { .. }
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            let e = TransitionError::new(
                ErrorCode::Closed,
                "the service stopped before the change was sent; it was not made",
            );
            self.finish(now, id, Verdict::NotCompleted(e));
        }
        ids.len()
    }

    /// Closes the engine for good. Every open change ends now: one that may have reached the tenant as
    /// `OUTCOME_UNKNOWN`, any other as `CLOSED`, each audited. Requests in flight are forgotten; undelivered
    /// webhooks stay in the log for the next start. Later commands answer `CLOSED`; later inputs are ignored.
    pub fn close(&mut self, now: Now) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        self.accepting = false;
        // A send still in flight may arrive.
        for p in self.pending.values() {
            if let Owner::Change(id) = &p.owner {
                if let Some(Phase::Committing(c)) = self.changes.get_mut(id).map(|c| &mut c.phase) {
                    c.maybe_applied = true;
                }
            }
        }
        // Deferred changes stay open in the log: the next start holds them again.
        self.forget_deferred();
        let ids: Vec<TransitionId> = self.changes.keys().copied().collect();
        for id in ids {
            let e = TransitionError::new(
                ErrorCode::Closed,
                "the engine was closed before the change completed",
            );
            self.finish(now, id, Verdict::NotCompleted(e));
        }
        self.runnable.clear();
        self.commit_queue.clear();
        self.check_queue.clear();
        self.token_waiters.clear();
        self.pending.clear();
        self.timers.clear();
        self.token.fetch = Fetch::Idle;
        self.facts.forget_fetches();
        self.stop_observing();
        if let Some(o) = &mut self.outbox {
            o.forget_in_flight();
        }
        self.maybe_checkpoint(now);
        self.closed = true;
    }

    fn command(
        &mut self,
        now: Now,
        user_raw: &str,
        state_raw: &str,
        ask: Ask<'_>,
    ) -> Result<TransitionId, CommandError> {
        if self.closed || !self.accepting {
            return Err(CommandError::Closed);
        }
        let (validate, options) = match ask {
            Ask::Validate(o) => (true, o),
            Ask::Change(o) => (false, o),
        };
        let reference = match options.reference.as_deref() {
            _ if validate => None,
            Some(r) if !is_valid_reference(r) => return Err(CommandError::InvalidReference),
            r => r.map(str::to_owned),
        };
        let reason = options.reason.as_deref();
        let actor = options.checked_actor()?;
        let override_ = options.override_.as_ref().map(|o| {
            Box::new(OverrideNote {
                actor: o.actor.clone(),
                overrode: None,
                reason: o.reason.clone(),
            })
        });
        if self.changes.len() >= self.config.max_open_changes {
            return Err(CommandError::Busy {
                limit: self.config.max_open_changes,
            });
        }
        let now = self.clock(now);
        self.begin(now);
        let id = self.next_id();
        let (user, state) = match parse_target(user_raw, state_raw)
            .and_then(|t| check_reason(reason).map(|()| t))
        {
            Ok(v) => v,
            Err(e) => {
                let (user_id, new_state) = (truncate_raw(user_raw), truncate_raw(state_raw));
                if validate {
                    self.emit_validation(now, id, user_id, new_state, Err(e));
                } else {
                    let draft = AuditDraft {
                        previous_state: self.previous_state(&user_id),
                        user_id,
                        new_state,
                        reason_code: None,
                        latency_ms: 0,
                        attempts: 0,
                        idempotency_key: None,
                        settles: None,
                        reference,
                        observation: None,
                        relies_on: None,
                        actor,
                        override_,
                        deferral: None,
                    };
                    self.emit_failure(now, id, draft, e);
                }
                self.maybe_checkpoint(now);
                return Ok(id);
            }
        };
        let purpose = if validate {
            Purpose::Validate
        } else {
            Purpose::Change {
                key: self.rng.uuid().to_string(),
                settles: None,
                reference,
            }
        };
        let reason_code = self.reason_code_for(&state, reason);
        let mut change = Change::new(
            user,
            state,
            reason_code,
            purpose,
            now.mono_ms,
            Phase::Waiting,
        );
        change.explicit_reason = reason.map(str::to_owned);
        change.actor = actor;
        change.override_ = override_;
        change.defer = options.defer && !validate;
        if !validate {
            // A newer change of an agent replaces its deferred one.
            self.replace_deferred(now, &change.user);
        }
        self.admit(id, change);
        self.run(now);
        Ok(id)
    }

    /// The reason code a change to `state` names in its records (and, on `seed`, sends) when the caller
    /// names none: the profile's table entry for the state (on `cxone`, an unavailable code's name; READY
    /// keeps the `seed` table's, as it is set `Available` whatever the reason). The reference's
    /// `getReasonCodeForState`, for the profile in use.
    pub fn reason_code(&self, state: &AgentState) -> String {
        self.reason_code_for(state, None)
    }

    /// [`reason_code`](Self::reason_code), or the caller's explicit reason.
    fn reason_code_for(&self, state: &AgentState, explicit: Option<&str>) -> String {
        let cxone = self.config.profile == ProfileKind::Cxone;
        match (cxone, explicit) {
            (true, _) => self
                .config
                .cxone
                .reason_codes
                .code_name_for(state, explicit)
                .unwrap_or_else(|| self.config.reason_codes.reason_for(state).to_owned()),
            (false, Some(r)) => r.to_owned(),
            (false, None) => self.config.reason_codes.reason_for(state).to_owned(),
        }
    }

    /// Keys the generator behind ids and idempotency keys to this run: the configured seed mixed with the
    /// time the run began and the head of the log it continues. The same inputs still give the same outputs,
    /// but a restart (or a second run with the same seed) never draws the keys of an earlier run — a tenant
    /// would answer a reused `Idempotency-Key` from its record of a different change.
    fn begin(&mut self, now: Now) {
        if std::mem::replace(&mut self.begun, true) {
            return;
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.config.seed.to_le_bytes())
            .chain_update(now.unix_ms.to_le_bytes())
            .chain_update(self.chain.next_seq.to_le_bytes())
            .chain_update(self.chain.last_hash.as_bytes())
            .finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        self.rng = DetRng::new(u64::from_le_bytes(seed));
    }

    fn next_id(&mut self) -> TransitionId {
        let id = TransitionId(self.next_transition);
        self.next_transition += 1;
        id
    }

    /// Takes a change into the table and its agent's queue; the head of a queue may run.
    fn admit(&mut self, id: TransitionId, change: Change) {
        self.join_queue(change.user.clone(), id);
        self.changes.insert(id, change);
    }

    /// Puts a change at the back of its agent's queue; the head of a queue may run.
    fn join_queue(&mut self, user: UserId, id: TransitionId) {
        let queue = self.agents.entry(user).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            self.runnable.push_back(id);
        }
    }

    // ---- inputs -------------------------------------------------------------------------------------------

    /// Hands in one input.
    pub fn handle_input(&mut self, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Response { now, id, response } => self.handle_response(now, id, response),
            Input::TransportError { now, id, kind } => self.handle_transport_error(now, id, kind),
            Input::AccessToken {
                now,
                id,
                access_token,
                expires_in_ms,
                error,
                api_base,
                wfm_base,
            } => {
                let result = match access_token {
                    Some(t) => Ok((t, expires_in_ms)),
                    None => Err(error.unwrap_or_else(|| "the token source gave no token".into())),
                };
                self.handle_access_token_with_bases(now, id, result, api_base, wfm_base);
            }
            Input::Timeout { now } => self.handle_timeout(now),
        }
    }

    /// Hands in an HTTP answer to request `id`.
    pub fn handle_response(&mut self, now: Now, id: RequestId, response: HttpResponse) {
        self.answer(now, id, Ok(&response));
    }

    /// Hands in a request that got no HTTP answer.
    pub fn handle_transport_error(&mut self, now: Now, id: RequestId, kind: TransportErrorKind) {
        self.answer(now, id, Err(kind));
    }

    fn answer(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        if self.outbox.as_ref().is_some_and(|o| o.owns(id)) {
            let note = self
                .outbox
                .as_mut()
                .and_then(|o| o.answer(now, id, result, &mut self.rng));
            if let Some(note) = note {
                self.on_outbox_note(now, note);
            }
        } else if let Some(p) = self.take_pending(id) {
            if let (Ok(r), Owner::Change(_) | Owner::Fact(_) | Owner::Poll) = (result, &p.owner) {
                // Sent at its deadline less the request timeout.
                let sent_mono = p
                    .deadline_mono
                    .saturating_sub(self.config.request_timeout_ms);
                self.read_tenant_clock(now, r, now.mono_ms.saturating_sub(sent_mono));
            }
            match p.owner {
                Owner::Token => self.on_token_answer(now, result),
                Owner::Change(cid) => self.on_change_answer(now, cid, p.token_generation, result),
                Owner::Fact(key) => self.on_fact_answer(now, key, p.token_generation, result),
                Owner::Poll => self.on_poll_answer(now, id, p.token_generation, result),
                Owner::StateHistory(user) => {
                    self.on_history_answer(now, id, user, p.token_generation, result)
                }
            }
        }
        self.run(now);
    }

    /// Hands in the token source's answer to an [`Event::TokenRequested`]: the token and its remaining life
    /// in ms, or why there is none.
    pub fn handle_access_token(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<(Secret, u64), String>,
    ) {
        self.handle_access_token_with_bases(now, id, result, None, None);
    }

    /// [`handle_access_token`](Self::handle_access_token) with the `cxone` bases the token source knows
    /// (each used only when the configuration sets none): a browser page's back end can hand in the API base
    /// with the token, so the page needs no discovery (and holds no secret).
    pub fn handle_access_token_with_bases(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<(Secret, u64), String>,
        api_base: Option<String>,
        wfm_base: Option<String>,
    ) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        let expected = matches!(self.pending.get(&id), Some(p) if matches!(p.owner, Owner::Token));
        if !expected || self.take_pending(id).is_none() {
            return;
        }
        let bases = if self.cxone() {
            [(api_base, false), (wfm_base, true)]
        } else {
            // `seed` has one base, its configured one.
            [(None, false), (None, true)]
        };
        for (given, wfm) in bases {
            let known = if wfm {
                &self.discovery.wfm_base
            } else {
                &self.discovery.api_base
            };
            let Some(base) = given.filter(|_| known.is_none()) else {
                continue;
            };
            if let Err(reason) = check_url(&base) {
                let what = if wfm { "WFM" } else { "API" };
                let e = TransitionError::new(
                    ErrorCode::DiscoveryFailed,
                    format!("the token source's {what} base is not usable: {reason}"),
                );
                self.fail_token_waiters(now, e);
                self.run(now);
                return;
            }
            let base = Some(base.trim_end_matches('/').to_owned());
            if wfm {
                self.discovery.wfm_base = base;
            } else {
                self.discovery.api_base = base;
            }
        }
        match result {
            Ok((token, expires_in_ms)) if self.cxone() && !self.discovery.has_bases() => {
                let e = TransitionError::new(
                    ErrorCode::DiscoveryFailed,
                    "no API and WFM base: configure them (apiBaseUrl, wfmBaseUrl) or have the token source return them",
                );
                // The token is good; only the bases are missing.
                self.token.store(token, expires_in_ms, now.mono_ms);
                self.fail_token_waiters(now, e);
            }
            Ok((token, expires_in_ms)) => self.accept_token(now, token, expires_in_ms),
            Err(message) => {
                let e = TransitionError::new(
                    ErrorCode::AuthFailed,
                    format!("the token source failed: {message}"),
                );
                self.fail_token_waiters(now, e);
            }
        }
        self.run(now);
    }

    /// Advances timers: request timeouts, retry backoffs, the pacer and the outbox.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now.mono_ms {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Request(id) => {
                    if let Some(p) = self.pending.remove(&id) {
                        let timed_out = Err(TransportErrorKind::Timeout);
                        match p.owner {
                            Owner::Token => self.on_token_answer(now, timed_out),
                            Owner::Change(cid) => {
                                self.on_change_answer(now, cid, p.token_generation, timed_out)
                            }
                            Owner::Fact(key) => {
                                self.on_fact_answer(now, key, p.token_generation, timed_out)
                            }
                            Owner::Poll => {
                                self.on_poll_answer(now, id, p.token_generation, timed_out)
                            }
                            Owner::StateHistory(user) => {
                                self.on_history_answer(now, id, user, p.token_generation, timed_out)
                            }
                        }
                    }
                }
                Timer::Backoff(id) => self.requeue(id),
                Timer::Deferred(id) => self.release(now, id),
                Timer::AbandonUnsent => {
                    self.end_unsent(now);
                }
                Timer::CloseOpen => {
                    // Nothing open: the outbox keeps its drain time.
                    if self.open_changes() > 0 {
                        return self.close(now);
                    }
                }
            }
        }
        if let Fetch::Backoff { until_ms, retry } = self.token.fetch {
            if until_ms <= now.mono_ms {
                self.token.fetch = Fetch::Queued { retry };
            }
        }
        self.facts.expire_backoffs(now.mono_ms);
        self.observer_timeout(now);
        let notes = match &mut self.outbox {
            Some(o) => o.expire(now, &mut self.rng),
            None => Vec::new(),
        };
        for note in notes {
            self.on_outbox_note(now, note);
        }
        self.run(now);
    }

    // ---- outputs ------------------------------------------------------------------------------------------

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

    /// The earliest monotonic time at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let queued = !self.commit_queue.is_empty()
            || !self.check_queue.is_empty()
            || self.facts.any_queued()
            || self.observer_wants().is_some()
            || matches!(self.token.fetch, Fetch::Queued { .. });
        [
            self.timers.first().map(|t| t.0),
            match self.token.fetch {
                Fetch::Backoff { until_ms, .. } => Some(until_ms),
                _ => None,
            },
            self.facts.next_backoff(),
            self.observer_deadline(),
            self.prefetch_wake,
            self.pacer_wake_mono.filter(|_| queued),
            self.outbox.as_ref().and_then(Outbox::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- getters ------------------------------------------------------------------------------------------

    /// The reference's `calculateIdleTime`: the current stretch if the agent is in IDLE, PAUSED or NOT_READY.
    pub fn idle_time(&self, user_id: &str, now: Now) -> u64 {
        self.history.idle_time(user_id, now.unix_ms)
    }

    /// Idle time, time per state and utilization of one agent.
    pub fn agent_metrics(&self, user_id: &str, now: Now) -> Option<AgentMetrics> {
        self.history.agent_metrics(user_id, now.unix_ms)
    }

    /// The compliance report at `now`.
    pub fn compliance_report(&self, now: Now) -> ComplianceReport {
        self.report.build(&self.history, now.unix_ms)
    }

    /// Adherence and conformance per agent and for the team, so far: the agents' timelines as the history
    /// holds them (this engine's changes and, while observing, what the tenant showed; unavailable time is
    /// named by its state) against `schedules` (by user id) or, when `None`, the `cxone` schedule exports
    /// the engine holds. The window is the schedules' span, counted up to `now`.
    pub fn adherence_report(
        &self,
        now: Now,
        schedules: Option<&BTreeMap<String, Vec<crate::adherence::ScheduledShift>>>,
        rules: &crate::adherence::RuleTable,
    ) -> crate::adherence::AdherenceReport {
        self.adherence_of(now, schedules, rules, None)
    }

    /// [`adherence_report`](Self::adherence_report) over every agent, or only over `only`.
    pub(crate) fn adherence_of(
        &self,
        now: Now,
        schedules: Option<&BTreeMap<String, Vec<crate::adherence::ScheduledShift>>>,
        rules: &crate::adherence::RuleTable,
        only: Option<&str>,
    ) -> crate::adherence::AdherenceReport {
        use crate::adherence::{ActualChange, AdherenceWindow};
        let held;
        let schedules = match schedules {
            Some(s) => s,
            None => {
                held = self
                    .facts
                    .known_schedules(&self.config.cxone.break_activities);
                &held
            }
        };
        let picked;
        let schedules = match only {
            Some(user) => {
                picked = schedules
                    .get(user)
                    .map(|s| (user.to_owned(), s.clone()))
                    .into_iter()
                    .collect::<BTreeMap<_, _>>();
                &picked
            }
            None => schedules,
        };
        let timelines: BTreeMap<String, Vec<ActualChange>> = self
            .history
            .current_states()
            .filter(|(user, _)| only.is_none_or(|o| o == *user))
            .map(|(user, _)| {
                let changes = self
                    .history
                    .timeline(user)
                    .into_iter()
                    .map(|e| ActualChange::entered(e.entered_at_ms, &e.state, None))
                    .collect();
                (user.to_owned(), changes)
            })
            .collect();
        let window = AdherenceWindow::of_schedules(schedules.values())
            .map(|w| AdherenceWindow {
                now_ms: now.unix_ms.min(w.to_ms),
                ..w
            })
            .unwrap_or(AdherenceWindow {
                from_ms: now.unix_ms,
                to_ms: now.unix_ms,
                now_ms: now.unix_ms,
                step_ms: 3_600_000,
            });
        crate::adherence::team_report(rules, schedules, &timelines, window)
    }

    /// State history and metrics.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Where the audit chain stands.
    pub fn chain_head(&self) -> &ChainHead {
        &self.chain
    }

    /// What the log holds open (what a checkpoint would carry).
    pub fn log_state(&self) -> &LogState {
        &self.log
    }

    /// Policy violations so far.
    pub fn violation_count(&self) -> u64 {
        self.report.violation_count()
    }

    /// Commands not yet finished (resumed changes included; deferred changes held until a break ends are
    /// not counted: they wait in the log, and a graceful shutdown need not wait for them).
    pub fn open_changes(&self) -> usize {
        self.changes.len() - self.deferred.len()
    }

    /// API and token requests handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Webhook payloads accepted and not yet delivered (dead letters excluded).
    pub fn pending_webhooks(&self) -> usize {
        self.outbox.as_ref().map_or(0, Outbox::pending)
    }

    /// How long the oldest webhook payload still pending has waited (ms; 0 when none is), its time before
    /// a restart included.
    pub fn oldest_pending_webhook_ms(&self, now: Now) -> u64 {
        self.outbox.as_ref().map_or(0, |o| o.oldest_age_ms(now))
    }

    /// How long the tenant's request budget holds back the next request (ms; 0 when it could go now).
    pub fn pacer_wait_ms(&self, now: Now) -> u64 {
        self.pacer_wake_mono
            .map_or(0, |at| at.saturating_sub(now.mono_ms))
    }

    /// Whether a usable access token is held (on `cxone`, with the API bases discovered): the engine can
    /// send a change now without first authenticating.
    pub fn has_token(&self, now: Now) -> bool {
        self.usable_token(now).is_some()
    }

    /// Fetches an access token now if none is usable and none is being fetched, so that a service is ready
    /// before its first change. A fetch that fails ends as any token failure does; call again to try again.
    /// Nothing happens on a closed engine.
    pub fn prepare_token(&mut self, now: Now) {
        if self.closed {
            return;
        }
        let now = self.clock(now);
        if self.want_token(now) {
            self.run(now);
        }
    }

    /// Dead letters held.
    pub fn dead_letters(&self) -> usize {
        self.log.dead_letter_count()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- the loop -----------------------------------------------------------------------------------------

    /// The monotonic clock never runs backwards here, whatever a host hands in.
    fn clock(&mut self, now: Now) -> Now {
        self.last_mono = self.last_mono.max(now.mono_ms);
        Now {
            mono_ms: self.last_mono,
            unix_ms: now.unix_ms,
        }
    }

    /// Runs until nothing more can happen at `now`: changes that became runnable start (iteratively: a
    /// change that finishes hands its agent's slot on through the queue, never by recursion), then requests
    /// go out as the pacer allows, then webhooks.
    fn run(&mut self, now: Now) {
        loop {
            while let Some(id) = self.runnable.pop_front() {
                self.advance(now, id);
            }
            self.pump(now);
            if self.runnable.is_empty() {
                break;
            }
        }
        self.pump_outbox(now);
        self.maybe_checkpoint(now);
    }

    fn advance(&mut self, now: Now, id: TransitionId) {
        match self.changes.get(&id).map(|c| &c.phase) {
            Some(Phase::Waiting) => self.begin_checks(now, id),
            Some(Phase::Checking {
                lookup: Lookup::Facts { .. },
                ..
            }) => self.check_facts(now, id),
            Some(_) => self.requeue(id),
            None => {}
        }
    }

    /// `cxone`: notes how far the tenant's clock is from ours, from an answer's `Date` (whole seconds, so
    /// the middle of its second is taken). Policy on `cxone` is decided here from the schedule export,
    /// so it is decided on the tenant's clock: a client whose wall clock is wrong must not let a READY land
    /// in a break the tenant's schedule has started.
    ///
    /// Only 2xx answers of the tenant's API and WFM hosts that came back within
    /// [`TENANT_CLOCK_MAX_ROUND_TRIP_MS`] are read: a gateway's error page or an answer that took long (or
    /// was handed in late) may carry a stale `Date`.
    fn read_tenant_clock(&mut self, now: Now, r: &HttpResponse, round_trip_ms: u64) {
        if !self.cxone()
            || !(200..300).contains(&r.status)
            || round_trip_ms > TENANT_CLOCK_MAX_ROUND_TRIP_MS
        {
            return;
        }
        if let Some(date) = r.header("date").and_then(crate::time::parse_http_date) {
            let tenant = date.saturating_add(500);
            self.tenant_clock_offset_ms =
                (tenant as i128 - i128::from(now.unix_ms)).clamp(-(1 << 52), 1 << 52) as i64;
        }
    }

    /// `now` on the tenant's clock, as far as its answers tell: the wall clock handed in unless the two
    /// disagree by more than [`TENANT_CLOCK_TOLERANCE_MS`] (a `Date` has whole seconds, and answers take
    /// time to arrive).
    fn tenant_now(&self, now: Now) -> Now {
        let offset = self.tenant_clock_offset_ms;
        if offset.unsigned_abs() <= TENANT_CLOCK_TOLERANCE_MS {
            return now;
        }
        Now {
            mono_ms: now.mono_ms,
            unix_ms: now.unix_ms.saturating_add_signed(offset),
        }
    }

    /// Whether the engine speaks `cxone`.
    fn cxone(&self) -> bool {
        self.config.profile == ProfileKind::Cxone
    }

    /// The queue a change waits in for its next request: lookups in the check queue, state changes in the
    /// commit queue (served first).
    fn queue_of(&mut self, id: TransitionId) -> Option<&mut VecDeque<TransitionId>> {
        match self.changes.get(&id).map(|c| &c.phase) {
            // A change waiting for facts is in their fetches' waiter lists, not in a queue.
            Some(Phase::Checking {
                lookup: Lookup::Facts { .. },
                ..
            }) => None,
            Some(Phase::Checking { .. }) => Some(&mut self.check_queue),
            Some(Phase::Approved { .. } | Phase::Committing(_)) => Some(&mut self.commit_queue),
            Some(Phase::Waiting | Phase::Deferred { .. }) | None => None,
        }
    }

    /// Decides what policy still needs to know: the schedule (unless cached), then a break (READY only).
    fn begin_checks(&mut self, now: Now, id: TransitionId) {
        if self.cxone() {
            if let Some(change) = self.changes.get_mut(&id) {
                change.phase = Phase::Checking {
                    lookup: Lookup::Facts {
                        since_mono: now.mono_ms,
                    },
                    retries: 0,
                };
            }
            return self.check_facts(now, id);
        }
        let Some(change) = self.changes.get(&id) else {
            return;
        };
        if !self.schedules.scheduled(change.user.as_str(), now) {
            self.start_lookup(id, Lookup::Schedule);
        } else {
            self.check_break_or_approve(now, id);
        }
    }

    /// The agent is scheduled: a READY change still checks the break, any other is approved.
    fn check_break_or_approve(&mut self, now: Now, id: TransitionId) {
        let Some(change) = self.changes.get(&id) else {
            return;
        };
        if change.state.is_ready() {
            self.start_lookup(id, Lookup::BreakStatus);
        } else {
            self.approve(now, id);
        }
    }

    /// `cxone`: decides the change from the facts at hand, or waits for the one it lacks.
    fn check_facts(&mut self, now: Now, id: TransitionId) {
        let Some(change) = self.changes.get(&id) else {
            return;
        };
        let Phase::Checking {
            lookup: Lookup::Facts { since_mono },
            ..
        } = change.phase
        else {
            return;
        };
        let tenant_now = self.tenant_now(now);
        let needs = self.facts.needs(
            &self.config.cxone,
            self.config.commit_window_ms,
            &change.user,
            &change.state,
            change.explicit_reason.as_deref(),
            change.override_.is_some(),
            since_mono,
            tenant_now,
        );
        match needs {
            Needs::Ready(resolved, overridden) => {
                if let Some(c) = self.changes.get_mut(&id) {
                    c.resolved = Some(resolved);
                    if let (Some(o), Some(e)) = (c.override_.as_mut(), overridden) {
                        o.overrode.get_or_insert(e.code);
                    }
                }
                self.approve(now, id);
            }
            Needs::Fetch(key) => {
                self.facts.wait_for(key, id);
            }
            // Not passed by an override here (the facts already let it through): held, or refused.
            Needs::Fail(Verdict::Policy(e)) => {
                self.policy_refusal(now, id, e);
            }
            Needs::Fail(verdict) => self.finish(now, id, verdict),
        }
    }

    /// Policy refuses a change with `e`. A change under a supervisor's override goes on (its override notes
    /// the first rule it passed): returns `true`. Any other ends here, before anything was sent.
    fn policy_refusal(&mut self, now: Now, id: TransitionId, e: TransitionError) -> bool {
        let Some(change) = self.changes.get_mut(&id) else {
            return false;
        };
        if let Some(o) = change.override_.as_mut() {
            o.overrode.get_or_insert(e.code);
            return true;
        }
        let deferrable = change.defer
            && e.code == ErrorCode::MandatoryBreakViolation
            && matches!(change.purpose, Purpose::Change { .. });
        if deferrable {
            self.hold(now, id, e);
        } else {
            self.finish(now, id, Verdict::Policy(e));
        }
        false
    }

    /// Puts a change in line for a policy lookup, with no retries spent on it yet.
    fn start_lookup(&mut self, id: TransitionId, lookup: Lookup) {
        if let Some(change) = self.changes.get_mut(&id) {
            change.phase = Phase::Checking { lookup, retries: 0 };
            self.check_queue.push_back(id);
        }
    }

    fn approve(&mut self, now: Now, id: TransitionId) {
        let Some(change) = self.changes.get_mut(&id) else {
            return;
        };
        if change.purpose == Purpose::Validate {
            return self.finish(now, id, Verdict::Applied);
        }
        if self.cxone() {
            let change = self.changes.get(&id).expect("present");
            if let Some(record) = self.in_effect(now, change) {
                let change = self.changes.get_mut(&id).expect("present");
                change.relies_on = Some(record);
                return self.finish(now, id, Verdict::Applied);
            }
        }
        let change = self.changes.get_mut(&id).expect("present");
        change.phase = Phase::Approved {
            approved_mono: now.mono_ms,
            approved_unix: now.unix_ms,
        };
        // Throttling met while checking does not eat into the time the change has to be sent.
        change.throttled_since = None;
        self.commit_queue.push_back(id);
    }

    /// Back into its queue after a backoff or a 401.
    fn requeue(&mut self, id: TransitionId) {
        if let Some(q) = self.queue_of(id) {
            q.push_back(id);
        }
    }

    /// Sends what the pacer allows: the token fetch first, then state changes (already validated, so the gap
    /// between check and change stays short), then lookups.
    fn pump(&mut self, now: Now) {
        self.pacer_wake_mono = None;
        // Facts for the WFM host need the token too: ask for it before the ACD loop serves the token fetch.
        if !self.facts.queues[Host::Wfm as usize].is_empty() {
            self.want_token(now);
        }
        self.pump_acd(now);
        self.pump_facts(now, Host::Wfm);
        self.prefetch(now);
    }

    /// `cxone`: reads again, in the background, the schedule exports that changes used and that are in the
    /// last tenth of their TTL, within the configured share of the WFM budget and only while no change
    /// waits for the WFM host. It never asks for a token of its own.
    fn prefetch(&mut self, now: Now) {
        self.prefetch_wake = None;
        if !self.cxone() || self.config.cxone.schedule_prefetch_percent == 0 {
            return;
        }
        while self.facts.queues[Host::Wfm as usize].is_empty() {
            match self.facts.next_prefetch() {
                Some(due) if due <= now.mono_ms => {}
                later => {
                    self.prefetch_wake = later;
                    return;
                }
            }
            if self.usable_token(now).is_none() {
                return;
            }
            for pacer in [&mut self.prefetch_pacer, &mut self.wfm_pacer] {
                if let Err(at) = pacer.try_acquire(now.mono_ms) {
                    self.prefetch_wake = Some(at);
                    return;
                }
            }
            match self.facts.take_prefetch(now.mono_ms) {
                Ok(key) => self.send_fact(now, key),
                Err(next) => {
                    self.prefetch_wake = next;
                    return;
                }
            }
        }
    }

    /// Starts a token fetch when none is usable and none is under way; `true` when there is no usable token.
    fn want_token(&mut self, now: Now) -> bool {
        if self.usable_token(now).is_some() {
            return false;
        }
        if self.token.fetch == Fetch::Idle {
            self.token.fetch = Fetch::Queued { retry: 0 };
        }
        true
    }

    /// The token, if one may be used now: on `cxone` only once the bases are known too.
    fn usable_token(&self, now: Now) -> Option<(&Secret, u64)> {
        if self.cxone() && !self.discovery.has_bases() {
            return None;
        }
        self.token.usable(now.mono_ms)
    }

    /// The pacer of a host is empty until `at` (monotonic).
    fn wake_at(&mut self, at: u64) {
        self.pacer_wake_mono = Some(self.pacer_wake_mono.map_or(at, |w| w.min(at)));
    }

    /// Sends the facts of `host` that its pacer allows (with a token).
    fn pump_facts(&mut self, now: Now, host: Host) {
        while let Some(key) = self.facts.queues[host as usize].front().cloned() {
            if self.want_token(now) {
                return;
            }
            let pacer = match host {
                Host::Acd => &mut self.pacer,
                Host::Wfm => &mut self.wfm_pacer,
            };
            match pacer.try_acquire(now.mono_ms) {
                Ok(()) => {
                    self.facts.queues[host as usize].pop_front();
                    self.send_fact(now, key);
                }
                Err(at) => return self.wake_at(at),
            }
        }
    }

    /// The ACD host (the only one on `seed`): the token fetch first, then state changes (already validated,
    /// so the gap between check and change stays short), then lookups, then facts.
    fn pump_acd(&mut self, now: Now) {
        loop {
            if let Fetch::Queued { retry } = self.token.fetch {
                if self.config.token_source == TokenSource::External {
                    // No request to the tenant: the host's token source answers, so the pacer is not asked.
                    self.request_external_token(now, retry);
                    continue;
                }
                match self.pacer.try_acquire(now.mono_ms) {
                    Ok(()) => {
                        self.send_token(now, retry);
                        continue;
                    }
                    Err(at) => return self.wake_at(at),
                }
            }
            let (from_commit, id) = match (self.commit_queue.front(), self.check_queue.front()) {
                (Some(&id), _) => (true, id),
                (None, Some(&id)) => (false, id),
                (None, None) => {
                    if !self.facts.queues[Host::Acd as usize].is_empty() {
                        if matches!(self.token.fetch, Fetch::Idle) && self.want_token(now) {
                            continue;
                        }
                        self.pump_facts(now, Host::Acd);
                        if !self.facts.queues[Host::Acd as usize].is_empty() {
                            return;
                        }
                    }
                    // Last in line: the observer's poll, then its state-history reads.
                    let Some(request) = self.observer_wants() else {
                        return;
                    };
                    if self.usable_token(now).is_none() {
                        if matches!(self.token.fetch, Fetch::Idle) && self.want_token(now) {
                            continue;
                        }
                        return;
                    }
                    match self.pacer.try_acquire(now.mono_ms) {
                        Ok(()) => {
                            self.send_observer(now, request);
                            continue;
                        }
                        Err(at) => return self.wake_at(at),
                    }
                }
            };
            let pop = |e: &mut Self| {
                if from_commit {
                    e.commit_queue.pop_front();
                } else {
                    e.check_queue.pop_front();
                }
            };
            if !self.changes.contains_key(&id) {
                pop(self);
                continue;
            }
            if self.usable_token(now).is_none() {
                pop(self);
                let change = self.changes.get_mut(&id).expect("present");
                change.token_waits += 1;
                if change.token_waits > MAX_TOKEN_WAITS {
                    let e = TransitionError::new(
                        ErrorCode::AuthFailed,
                        "every token from the token endpoint expired before it could be used",
                    );
                    self.finish(now, id, Verdict::NotCompleted(e));
                    continue;
                }
                self.token_waiters.push_back(id);
                if self.token.fetch == Fetch::Idle {
                    self.token.fetch = Fetch::Queued { retry: 0 };
                }
                continue;
            }
            let change = self.changes.get_mut(&id).expect("present");
            match change.phase {
                Phase::Approved { approved_mono, .. } => {
                    let age = now.mono_ms.saturating_sub(approved_mono);
                    let stale = age > self.config.commit_window_ms
                        || (age > self.config.policy_max_age_ms && change.rechecks == 0);
                    if stale {
                        // Not yet sent: policy may (and must) be decided again.
                        change.rechecks += 1;
                        pop(self);
                        self.begin_checks(now, id);
                        continue;
                    }
                }
                Phase::Committing(ref c) if now.mono_ms > c.send_by_mono => {
                    let e = window_closed(c.throttled);
                    pop(self);
                    self.finish(now, id, Verdict::NotCompleted(e));
                    continue;
                }
                _ => {}
            }
            match self.pacer.try_acquire(now.mono_ms) {
                Ok(()) => {
                    pop(self);
                    self.send(now, id);
                }
                Err(at) => return self.wake_at(at),
            }
        }
    }

    fn pump_outbox(&mut self, now: Now) {
        // The request id is taken only once a payload goes out, so ids stay dense.
        while let Some(request) = self
            .outbox
            .as_mut()
            .and_then(|o| o.start_next(now, RequestId(self.next_request)))
        {
            let id = self.next_request_id();
            self.out.push_back(Output::Transmit(Transmit {
                id,
                target: Target::Webhook,
                request,
            }));
        }
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Gives an outstanding request its id and deadline (its timeout is then a transport error).
    fn track(&mut self, now: Now, owner: Owner, token_generation: u64) -> RequestId {
        let id = self.next_request_id();
        let deadline_mono = now.mono_ms.saturating_add(self.config.request_timeout_ms);
        self.pending.insert(
            id,
            Pending {
                owner,
                deadline_mono,
                token_generation,
            },
        );
        self.timers.insert((deadline_mono, Timer::Request(id)));
        id
    }

    fn transmit(
        &mut self,
        now: Now,
        target: Target,
        mut request: HttpRequest,
        owner: Owner,
        generation: u64,
    ) -> RequestId {
        let id = self.track(now, owner, generation);
        request.timeout_ms = self.config.request_timeout_ms;
        self.out.push_back(Output::Transmit(Transmit {
            id,
            target,
            request,
        }));
        id
    }

    fn take_pending(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.timers.remove(&(p.deadline_mono, Timer::Request(id)));
        Some(p)
    }

    fn send(&mut self, now: Now, id: TransitionId) {
        let Some((token, generation)) = self.usable_token(now).map(|(t, g)| (t.clone(), g)) else {
            return;
        };
        let window = self.config.commit_window_ms;
        let change = self.changes.get_mut(&id).expect("queued changes exist");
        change.attempts += 1;
        let request = match change.phase {
            Phase::Checking {
                lookup: Lookup::Schedule,
                ..
            } => self
                .profile
                .schedule_request(&self.base_url, &change.user, &token),
            Phase::Checking {
                lookup: Lookup::BreakStatus,
                ..
            } => self
                .profile
                .break_request(&self.base_url, &change.user, &token),
            Phase::Deferred { .. } => return,
            Phase::Checking {
                lookup: Lookup::Facts { .. },
                ..
            } => return,
            Phase::Approved {
                approved_mono,
                approved_unix,
            } => {
                // Journal point: a host makes this durable before it performs the request below, so a
                // crash can never leave a change the tenant may hold unknown to the log.
                let intent = ChangeIntent {
                    transition_id: id,
                    user_id: change.user.as_str().to_owned(),
                    state: change.state.as_str().to_owned(),
                    reason_code: change.reason_code.clone(),
                    idempotency_key: change.key().unwrap_or_default().to_owned(),
                    approved_at_ms: approved_unix,
                    at_ms: now.unix_ms,
                    reference: change.reference().map(str::to_owned),
                    profile: (self.config.profile != ProfileKind::Seed)
                        .then_some(self.config.profile),
                    out_state_id: change.resolved.and_then(|r| match r.target {
                        acd::CxoneState::Unavailable { out_state_id } => Some(out_state_id),
                        acd::CxoneState::Available => None,
                    }),
                    actor: Some(change.actor.clone()),
                    override_: change.override_.clone(),
                    deferral: change.deferral.as_ref().map(|d| d.id.clone()),
                };
                change.phase = Phase::Committing(Committing {
                    send_by_mono: approved_mono.saturating_add(window),
                    retries: 0,
                    maybe_applied: false,
                    throttled: false,
                });
                change.first_sent_unix = Some(now.unix_ms);
                let (user, target) = (change.user.clone(), change.resolved.map(|r| r.target));
                let state = change.state.as_str().to_owned();
                let request = self.state_request(id, &token);
                if let Some(target) = target {
                    self.note_first_send(now, user.as_str(), state, target);
                }
                self.supersede(now, &intent);
                self.persist(Record::Intent(intent));
                request
            }
            Phase::Committing(_) => self.state_request(id, &token),
            Phase::Waiting => return,
        };
        self.transmit(now, Target::Api, request, Owner::Change(id), generation);
    }

    /// An earlier change of the same agent still open in the log (its outcome unknown) must never be sent
    /// again once a later one goes out: a resend after a restart would undo the later change. It is closed
    /// for good first, in the same group as the later change's intent.
    fn supersede(&mut self, now: Now, later: &ChangeIntent) {
        let earlier = self
            .log
            .open_change_of(&later.user_id)
            .map(|o| o.intent.idempotency_key.clone())
            .filter(|k| *k != later.idempotency_key);
        if let Some(key) = earlier {
            self.persist(Record::Abandoned(Abandoned {
                idempotency_key: key,
                reason: "superseded by a later change of the same agent: sending it again could undo that one"
                    .to_owned(),
                at_ms: now.unix_ms,
            }));
        }
    }

    fn state_request(&self, id: TransitionId, token: &Secret) -> HttpRequest {
        let c = &self.changes[&id];
        if let Some(r) = c.resolved {
            return acd::set_state_request(
                self.discovery.api_base.as_deref().unwrap_or_default(),
                &self.config.cxone.versions,
                r.agent_id,
                r.target,
                token,
                self.config.cxone.set_state_encoding,
                c.key().unwrap_or_default(),
            );
        }
        self.profile.state_request(
            &self.base_url,
            &c.user,
            &c.state,
            &c.reason_code,
            token,
            c.key().unwrap_or_default(),
        )
    }

    // ---- tokens -------------------------------------------------------------------------------------------

    /// With an external token source, the "request" is an event the host answers, tracked like any other.
    fn request_external_token(&mut self, now: Now, retry: u32) {
        let id = self.track(now, Owner::Token, 0);
        self.token.fetch = Fetch::InFlight { request: id, retry };
        self.out
            .push_back(Output::Event(Event::TokenRequested(TokenRequested {
                request_id: id,
                at_ms: now.unix_ms,
            })));
    }

    fn send_token(&mut self, now: Now, retry: u32) {
        if self.cxone() {
            return self.send_discovery(now, retry);
        }
        let request = self.profile.token_request(&self.config);
        let id = self.transmit(now, Target::Token, request, Owner::Token, 0);
        self.token.fetch = Fetch::InFlight { request: id, retry };
    }

    /// `cxone`: sends the next step of the token machine (discovery, a grant), or lets the waiters go when
    /// nothing is left to do.
    fn send_discovery(&mut self, now: Now, retry: u32) {
        let have_token = self.token.usable(now.mono_ms).is_some();
        let Some(step) = self.discovery.next_step(have_token) else {
            self.token.fetch = Fetch::Idle;
            return self.release_token_waiters();
        };
        let cfg = &self.config.cxone;
        let creds = || cfg.credentials(&self.config.credentials);
        let endpoint = self.discovery.token_endpoint.as_deref().unwrap_or_default();
        let request = match step {
            AuthStep::OpenIdConfiguration => auth::openid_configuration_request(&cfg.auth_base),
            AuthStep::Password => auth::password_grant_request(endpoint, &creds(), cfg.client_auth),
            AuthStep::Refresh => match &self.discovery.refresh_token {
                Some(rt) => auth::refresh_grant_request(endpoint, rt, &creds(), cfg.client_auth),
                None => auth::password_grant_request(endpoint, &creds(), cfg.client_auth),
            },
            AuthStep::CxoneConfiguration => {
                let Some((tenant, iss)) = self.discovery.tenant.clone() else {
                    let e = auth::DiscoveryError::new(
                        auth::DiscoveryStep::IdToken,
                        "the token answer carried no id_token, whose tenantId names the tenant \
                         (or set the API and WFM bases directly)",
                    );
                    return self.fail_token_waiters(now, e.into());
                };
                let issuer = self
                    .discovery
                    .issuer
                    .clone()
                    .or(iss)
                    .unwrap_or_else(|| cfg.auth_base.clone());
                auth::cxone_configuration_request(&issuer, &tenant)
            }
        };
        self.discovery.step = Some(step);
        let id = self.transmit(now, Target::Token, request, Owner::Token, 0);
        self.token.fetch = Fetch::InFlight { request: id, retry };
    }

    /// `cxone`: an answer to a step of the token machine.
    fn on_discovery_answer(&mut self, now: Now, result: Result<&HttpResponse, TransportErrorKind>) {
        let retry = match self.token.fetch {
            Fetch::InFlight { retry, .. } => retry,
            _ => 0,
        };
        let step = self.discovery.step.take().unwrap_or(AuthStep::Password);
        let r = match result {
            Ok(r) if is_transient(r.status) => {
                let ra = r.retry_after_ms(now.unix_ms);
                return self.token_transient(now, retry, Some(r.status), ra, Some(step));
            }
            Err(_) => return self.token_transient(now, retry, None, None, Some(step)),
            Ok(r) => r,
        };
        let next = Fetch::Queued { retry: 0 };
        match step {
            AuthStep::OpenIdConfiguration => match auth::parse_openid_configuration(r) {
                Ok(c) => {
                    self.discovery
                        .token_endpoint
                        .get_or_insert(c.token_endpoint);
                    self.discovery.issuer = Some(c.issuer);
                    self.token.fetch = next;
                }
                Err(e) => self.fail_token_waiters(now, e.into()),
            },
            AuthStep::Password | AuthStep::Refresh => match auth::parse_token_answer(r) {
                Ok(token) => self.accept_cxone_token(now, token),
                Err(f)
                    if step == AuthStep::Refresh
                        && (auth::is_refresh_refused(&f) || !(200..300).contains(&r.status)) =>
                {
                    // The refresh grant was refused (the token spent or revoked, or the grant's form not
                    // what this tenant takes): the access key gets a new token; a refusal of that fails.
                    self.discovery.refresh_token = None;
                    self.token.fetch = next;
                }
                Err(TokenFailure::Malformed(m)) if (200..300).contains(&r.status) => {
                    self.fail_token_waiters(now, TransitionError::new(ErrorCode::BadResponse, m));
                }
                Err(TokenFailure::Refused(m) | TokenFailure::Malformed(m)) => {
                    self.fail_token_waiters(now, TransitionError::new(ErrorCode::AuthFailed, m));
                }
            },
            AuthStep::CxoneConfiguration => {
                let tenant = self.discovery.tenant.clone().unwrap_or_default().0;
                match auth::parse_cxone_configuration(r, &tenant) {
                    Ok(bases) => {
                        self.discovery.api_base.get_or_insert(bases.api_base);
                        self.discovery.wfm_base.get_or_insert(bases.wfm_base);
                        self.token.fetch = Fetch::Idle;
                        self.release_token_waiters();
                    }
                    Err(e) => self.fail_token_waiters(now, e.into()),
                }
            }
        }
    }

    /// `cxone`: a token from a grant. Its id_token names the tenant (needed only while the bases are not
    /// known); it is refreshed on the SDK's schedule ([`auth::refresh_at_ms`]).
    fn accept_cxone_token(&mut self, now: Now, token: auth::CxoneToken) {
        if token.expires_in_ms == 0 {
            let e = TransitionError::new(
                ErrorCode::TokenExpired,
                "the access token had already expired when it arrived",
            );
            return self.fail_token_waiters(now, e);
        }
        if let Some(id_token) = &token.id_token {
            match auth::id_token_claims(id_token.expose()) {
                Ok(c) => {
                    // The `iss` is where the CXone configuration is asked only if it is a usable URL.
                    let issuer = c.issuer.filter(|i| check_url(i).is_ok());
                    self.discovery.tenant = Some((c.tenant_id, issuer));
                }
                Err(e) if !self.discovery.has_bases() => {
                    return self.fail_token_waiters(now, e.into());
                }
                Err(_) => {}
            }
        }
        self.discovery.refresh_token = token.refresh_token;
        let refresh_at = auth::refresh_at_ms(now.mono_ms, token.expires_in_ms);
        self.token.store_until(token.access_token, refresh_at);
        if self.discovery.has_bases() {
            self.token.fetch = Fetch::Idle;
            self.release_token_waiters();
        } else {
            self.token.fetch = Fetch::Queued { retry: 0 };
        }
    }

    fn on_token_answer(&mut self, now: Now, result: Result<&HttpResponse, TransportErrorKind>) {
        if self.cxone() {
            return self.on_discovery_answer(now, result);
        }
        let retry = match self.token.fetch {
            Fetch::InFlight { retry, .. } => retry,
            _ => 0,
        };
        let transient = match result {
            Ok(r) if is_transient(r.status) => {
                Some((Some(r.status), r.retry_after_ms(now.unix_ms)))
            }
            Ok(r) => {
                let outcome = match self.profile.parse_token(r) {
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
                    Ok(tok) => self.accept_token(now, tok.access_token, tok.expires_in_ms),
                    Err(e) => self.fail_token_waiters(now, e),
                }
                None
            }
            Err(_) => Some((None, None)),
        };
        let Some((status, retry_after_ms)) = transient else {
            return;
        };
        self.token_transient(now, retry, status, retry_after_ms, None);
    }

    /// A token or discovery request failed transiently: retried after a backoff, or its waiters fail (a
    /// discovery step's with `DISCOVERY_FAILED` naming the step).
    fn token_transient(
        &mut self,
        now: Now,
        retry: u32,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        step: Option<AuthStep>,
    ) {
        self.note_rate_limit(now, Host::Acd, status, retry_after_ms);
        let next = retry + 1;
        match self
            .config
            .retry
            .decide(next, retry_after_ms, &mut self.rng)
        {
            RetryDecision::RetryAfter(delay_ms) => {
                self.token.fetch = Fetch::Backoff {
                    until_ms: now.mono_ms.saturating_add(delay_ms),
                    retry: next,
                };
                self.emit(Event::RetryScheduled(RetryScheduled {
                    transition_id: None,
                    user_id: None,
                    kind: RequestKind::Token,
                    retry: next,
                    delay_ms,
                    status,
                    at_ms: now.unix_ms,
                }));
            }
            RetryDecision::GiveUp => {
                let discovery_step = match step {
                    Some(AuthStep::OpenIdConfiguration) => {
                        Some(auth::DiscoveryStep::OpenIdConfiguration)
                    }
                    Some(AuthStep::CxoneConfiguration) => {
                        Some(auth::DiscoveryStep::CxoneConfiguration)
                    }
                    _ => None,
                };
                let e = match discovery_step {
                    Some(step) => {
                        let cause = exhausted(status, "the request");
                        auth::DiscoveryError::new(step, cause.message).into()
                    }
                    None => exhausted(status, "token request"),
                };
                self.fail_token_waiters(now, e);
            }
        }
    }

    /// Stores a token from either source and lets its waiters go; an empty token or one with no life left
    /// fails them instead (fetching again would only get the same).
    fn accept_token(&mut self, now: Now, token: Secret, expires_in_ms: u64) {
        if token.is_empty() {
            let e = TransitionError::new(ErrorCode::AuthFailed, "the access token is empty");
            return self.fail_token_waiters(now, e);
        }
        if expires_in_ms == 0 {
            let e = TransitionError::new(
                ErrorCode::TokenExpired,
                "the access token had already expired when it arrived",
            );
            return self.fail_token_waiters(now, e);
        }
        self.token.store(token, expires_in_ms, now.mono_ms);
        self.release_token_waiters();
    }

    /// A usable token is held: the changes waiting for it go back to the head of their queues, in order.
    fn release_token_waiters(&mut self) {
        while let Some(id) = self.token_waiters.pop_back() {
            if let Some(q) = self.queue_of(id) {
                q.push_front(id);
            }
        }
    }

    fn fail_token_waiters(&mut self, now: Now, error: TransitionError) {
        self.token.fetch = Fetch::Idle;
        self.discovery.step = None;
        while let Some(id) = self.token_waiters.pop_front() {
            self.finish(now, id, Verdict::NotCompleted(error.clone()));
        }
        // Facts waiting for their host's pacer need the token too: their changes fail with it (asking again
        // at once would only get the same answer).
        for host in [Host::Acd, Host::Wfm] {
            let keys: Vec<FactKey> = self.facts.queues[host as usize].drain(..).collect();
            for key in keys {
                for id in self.facts.end_fetch(&key) {
                    self.finish(now, id, Verdict::NotCompleted(error.clone()));
                }
            }
        }
    }

    /// A 429 with `Retry-After` pauses every request to the host that answered it, not only the one that
    /// got it (the other host keeps its own pace).
    fn note_rate_limit(
        &mut self,
        now: Now,
        host: Host,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
    ) {
        if let (Some(429), Some(ra)) = (status, retry_after_ms) {
            if self.config.retry.waits_for(ra) {
                let pacer = match host {
                    Host::Acd => &mut self.pacer,
                    Host::Wfm => &mut self.wfm_pacer,
                };
                pacer.pause_until(now.mono_ms.saturating_add(ra));
            }
        }
    }

    // ---- answers for changes ------------------------------------------------------------------------------

    fn on_change_answer(
        &mut self,
        now: Now,
        id: TransitionId,
        generation: u64,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        if !self.changes.contains_key(&id) {
            return;
        }
        let r = match result {
            Err(kind) => return self.transient(now, id, None, None, Some(kind)),
            Ok(r) => r,
        };
        match r.status {
            200..=299 => self.on_success(now, id, r),
            401 => {
                self.token.invalidate(generation);
                let change = self.changes.get_mut(&id).expect("present");
                if change.auth_resent {
                    let e = TransitionError::new(
                        ErrorCode::Unauthorized,
                        "the API answered 401 again after a token refresh",
                    );
                    // A 401 is refused before anything is processed: it says nothing of earlier sends.
                    self.finish(now, id, Verdict::NotCompleted(e));
                } else {
                    change.auth_resent = true;
                    self.requeue(id);
                }
            }
            s if is_transient(s) => {
                let ra = r.retry_after_ms(now.unix_ms);
                self.transient(now, id, Some(s), ra, None)
            }
            s if self.cxone() => {
                if matches!(s, 400 | 404) {
                    if let Some(resolved) = self.changes.get(&id).and_then(|c| c.resolved) {
                        self.facts.forget_agent(resolved.agent_id);
                    }
                }
                let e = acd::refusal(acd::AcdCall::SetAgentState, r).unwrap_or_else(|| {
                    TransitionError::new(
                        ErrorCode::Rejected,
                        format!("SetAgentState was refused ({s})"),
                    )
                });
                self.finish(now, id, Verdict::TenantRefused(e));
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
                self.finish(now, id, Verdict::TenantRefused(e));
            }
        }
    }

    fn on_success(&mut self, now: Now, id: TransitionId, r: &HttpResponse) {
        let change = self.changes.get_mut(&id).expect("present");
        match change.phase {
            Phase::Checking {
                lookup: Lookup::Schedule,
                ..
            } => match self.profile.parse_schedule(r) {
                Ok(answer) => {
                    self.schedules.record(
                        change.user.as_str(),
                        answer.scheduled,
                        answer.shift_end_ms,
                        now,
                    );
                    let e = policy_error(PolicyDecision::AgentNotScheduled);
                    if answer.scheduled || self.policy_refusal(now, id, e) {
                        self.check_break_or_approve(now, id);
                    }
                }
                Err(e) => self.finish(now, id, Verdict::NotCompleted(e)),
            },
            Phase::Checking {
                lookup: Lookup::BreakStatus,
                ..
            } => match self.profile.parse_break(r) {
                Ok(status) => {
                    match PolicyDecision::evaluate(&change.state, true, Some(status.required)) {
                        PolicyDecision::Allowed => self.approve(now, id),
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
                            if self.policy_refusal(now, id, e) {
                                self.approve(now, id);
                            }
                        }
                    }
                }
                Err(e) => self.finish(now, id, Verdict::NotCompleted(e)),
            },
            Phase::Committing(ref mut c) => match match c {
                _ if change.resolved.is_some() => acd::check_set_state(r),
                _ => self.profile.parse_state(r),
            } {
                Ok(()) => self.finish(now, id, Verdict::Applied),
                Err(e) => {
                    // A 2xx whose body cannot be read: the tenant may well have applied it.
                    c.maybe_applied = true;
                    self.finish(now, id, Verdict::NotCompleted(e));
                }
            },
            Phase::Waiting
            | Phase::Approved { .. }
            | Phase::Deferred { .. }
            | Phase::Checking {
                lookup: Lookup::Facts { .. },
                ..
            } => {}
        }
    }

    /// A 429, a 5xx, a transport error or a timeout: send again after a backoff, or give up.
    fn transient(
        &mut self,
        now: Now,
        id: TransitionId,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        transport: Option<TransportErrorKind>,
    ) {
        self.note_rate_limit(now, Host::Acd, status, retry_after_ms);
        let policy = &self.config.retry;
        let window = self.config.commit_window_ms;
        let change = self.changes.get_mut(&id).expect("present");
        let (retries, kind, send_by) = match &mut change.phase {
            Phase::Checking { lookup, retries } => {
                let kind = match lookup {
                    Lookup::Schedule => RequestKind::Schedule,
                    Lookup::BreakStatus => RequestKind::BreakStatus,
                    // A change waiting for facts sends nothing of its own.
                    Lookup::Facts { .. } => return,
                };
                (retries, kind, None)
            }
            Phase::Committing(c) => {
                c.throttled = status == Some(429);
                if status.is_some_and(may_have_been_processed)
                    || transport.is_some_and(|k| k.may_have_arrived())
                {
                    c.maybe_applied = true;
                }
                (&mut c.retries, RequestKind::SetState, Some(c.send_by_mono))
            }
            Phase::Waiting | Phase::Approved { .. } | Phase::Deferred { .. } => return,
        };
        let (decision, retry) = match retry_after_ms.filter(|_| status == Some(429)) {
            // Throttling (see `RetryPolicy::decide_throttled`): the retry is reported as the one it would be;
            // not spent, so repeated 429s repeat the number.
            Some(ra) => {
                let since = *change.throttled_since.get_or_insert(now.mono_ms);
                let retry = *retries + 1;
                let decision =
                    policy.decide_throttled(retry, ra, since, now.mono_ms, window, &mut self.rng);
                (decision, retry)
            }
            None => {
                *retries += 1;
                (
                    policy.decide(*retries, retry_after_ms, &mut self.rng),
                    *retries,
                )
            }
        };
        // A change already sent is never sent after its commit window.
        let decision = match (decision, send_by) {
            (RetryDecision::RetryAfter(d), Some(by)) if now.mono_ms.saturating_add(d) > by => {
                RetryDecision::GiveUp
            }
            (d, _) => d,
        };
        match decision {
            RetryDecision::RetryAfter(delay_ms) => {
                self.timers
                    .insert((now.mono_ms.saturating_add(delay_ms), Timer::Backoff(id)));
                let user = change.user.as_str().to_owned();
                self.emit(Event::RetryScheduled(RetryScheduled {
                    transition_id: Some(id),
                    user_id: Some(user),
                    kind,
                    retry,
                    delay_ms,
                    status,
                    at_ms: now.unix_ms,
                }));
            }
            RetryDecision::GiveUp => {
                let what = request_failure(transport);
                self.finish(now, id, Verdict::NotCompleted(exhausted(status, what)));
            }
        }
    }

    // ---- facts (cxone) -------------------------------------------------------------------------------------

    fn send_fact(&mut self, now: Now, key: FactKey) {
        let Some((token, generation)) = self.usable_token(now).map(|(t, g)| (t.clone(), g)) else {
            return;
        };
        let Some(fetch) = self.facts.fetches.get(&key) else {
            return;
        };
        let cfg = &self.config.cxone;
        let api = self.discovery.api_base.as_deref().unwrap_or_default();
        let (target, request) = match &key {
            FactKey::Directory => (
                Target::Api,
                acd::agents_request(api, &cfg.versions, &token, fetch.skip, cfg.agents_page_size),
            ),
            FactKey::Codes(team) => (
                Target::Api,
                acd::unavailable_codes_request(api, &cfg.versions, *team, &token),
            ),
            FactKey::Schedule(user_id) => {
                let wfm_base = self.discovery.wfm_base.as_deref().unwrap_or_default();
                (
                    Target::Wfm,
                    wfm::export_request(
                        wfm_base,
                        user_id,
                        // From the day before: the tenant may read dates in the business unit's time
                        // zone, and a shift that began yesterday may still run.
                        self.tenant_now(now).unix_ms.saturating_sub(DAY_MS),
                        cfg.schedule_days,
                        &token,
                    ),
                )
            }
        };
        let id = self.transmit(now, target, request, Owner::Fact(key.clone()), generation);
        if let Some(f) = self.facts.fetches.get_mut(&key) {
            f.state = FetchState::InFlight(id);
        }
    }

    fn on_fact_answer(
        &mut self,
        now: Now,
        key: FactKey,
        generation: u64,
        result: Result<&HttpResponse, TransportErrorKind>,
    ) {
        let Some(fetch) = self.facts.fetches.get_mut(&key) else {
            return;
        };
        let r = match result {
            Err(kind) => return self.fact_transient(now, key, None, None, Some(kind)),
            Ok(r) => r,
        };
        match r.status {
            200..=299 => self.on_fact_success(now, key, r),
            401 => {
                self.token.invalidate(generation);
                if fetch.auth_resent {
                    let e = TransitionError::new(
                        ErrorCode::Unauthorized,
                        "the API answered 401 again after a token refresh",
                    );
                    self.fail_fact(now, &key, e);
                } else {
                    fetch.auth_resent = true;
                    fetch.state = FetchState::Queued;
                    self.facts.queues[key.host() as usize].push_front(key);
                }
            }
            s if is_transient(s) => {
                let ra = r.retry_after_ms(now.unix_ms);
                self.fact_transient(now, key, Some(s), ra, None);
            }
            s => {
                let refusal = match &key {
                    FactKey::Directory => acd::refusal(acd::AcdCall::ListAgents, r),
                    FactKey::Codes(_) => acd::refusal(acd::AcdCall::UnavailableCodes, r),
                    FactKey::Schedule(_) => wfm::refusal(r),
                };
                let e = refusal.unwrap_or_else(|| {
                    TransitionError::new(
                        ErrorCode::Rejected,
                        format!("the {:?} request was refused ({s})", key.kind()),
                    )
                });
                self.fail_fact(now, &key, e);
            }
        }
    }

    fn on_fact_success(&mut self, now: Now, key: FactKey, r: &HttpResponse) {
        let stored = match &key {
            FactKey::Directory => {
                let fetch = self.facts.fetches.get_mut(&key).expect("present");
                match acd::parse_agents_page(r, fetch.skip) {
                    Ok(page) => {
                        fetch.skip += page.agents.len() as u64;
                        fetch.partial.extend(page.agents);
                        if page.more {
                            // The next page goes first: the changes waiting for it wait for nothing else.
                            fetch.state = FetchState::Queued;
                            fetch.retries = 0;
                            fetch.auth_resent = false;
                            fetch.throttled_since = None;
                            fetch.pages += 1;
                            if fetch.pages >= MAX_DIRECTORY_PAGES
                                || fetch.partial.len() as u64 >= MAX_DIRECTORY_AGENTS
                            {
                                let e = TransitionError::new(
                                    ErrorCode::BadResponse,
                                    format!(
                                        "GetAgents answer: the directory did not end after {} pages ({} agents)",
                                        fetch.pages,
                                        fetch.partial.len()
                                    ),
                                );
                                self.fail_fact(now, &key, e);
                                return;
                            }
                            self.facts.queues[Host::Acd as usize].push_front(key);
                            return;
                        }
                        let agents = std::mem::take(&mut fetch.partial);
                        self.facts.store_directory(agents, now);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            FactKey::Codes(team) => acd::parse_unavailable_codes(r)
                .map(|codes| self.facts.store_codes(*team, codes, now)),
            FactKey::Schedule(user_id) => wfm::parse_export(r, user_id).map(|schedule| {
                let max = self.config.history.max_agents;
                self.facts
                    .store_schedule(user_id.clone(), schedule, now, max);
            }),
        };
        match stored {
            Ok(()) => {
                for id in self.facts.end_fetch(&key) {
                    self.runnable.push_back(id);
                }
            }
            Err(e) => self.fail_fact(now, &key, e),
        }
    }

    /// A fact could not be had: every change waiting for it ends (nothing of theirs was sent).
    fn fail_fact(&mut self, now: Now, key: &FactKey, error: TransitionError) {
        for id in self.facts.end_fetch(key) {
            self.finish(now, id, Verdict::NotCompleted(error.clone()));
        }
    }

    /// A 429, a 5xx, a transport error or a timeout for a fact: sent again after a backoff, or given up.
    fn fact_transient(
        &mut self,
        now: Now,
        key: FactKey,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        transport: Option<TransportErrorKind>,
    ) {
        self.note_rate_limit(now, key.host(), status, retry_after_ms);
        let Some(fetch) = self.facts.fetches.get_mut(&key) else {
            return;
        };
        let policy = &self.config.retry;
        let (decision, retry) = match retry_after_ms.filter(|_| status == Some(429)) {
            Some(ra) => {
                let since = *fetch.throttled_since.get_or_insert(now.mono_ms);
                let retry = fetch.retries + 1;
                let window = self.config.commit_window_ms;
                let d =
                    policy.decide_throttled(retry, ra, since, now.mono_ms, window, &mut self.rng);
                (d, retry)
            }
            None => {
                fetch.retries += 1;
                (
                    policy.decide(fetch.retries, retry_after_ms, &mut self.rng),
                    fetch.retries,
                )
            }
        };
        match decision {
            RetryDecision::RetryAfter(delay_ms) => {
                fetch.state = FetchState::Backoff {
                    until_mono: now.mono_ms.saturating_add(delay_ms),
                };
                self.emit(Event::RetryScheduled(RetryScheduled {
                    transition_id: None,
                    user_id: None,
                    kind: key.kind(),
                    retry,
                    delay_ms,
                    status,
                    at_ms: now.unix_ms,
                }));
            }
            RetryDecision::GiveUp => {
                let what = request_failure(transport);
                let mut e = exhausted(status, what);
                e.message = format!("{:?} {}", key.kind(), e.message);
                self.fail_fact(now, &key, e);
            }
        }
    }

    // ---- webhooks -----------------------------------------------------------------------------------------

    fn on_outbox_note(&mut self, now: Now, note: Note) {
        match note {
            Note::Delivered { event_id, attempts } => {
                self.persist(Record::Delivered(Delivered {
                    event_id: event_id.clone(),
                    attempts,
                    at_ms: now.unix_ms,
                }));
                self.emit(Event::WebhookDelivered(WebhookDelivered {
                    event_id,
                    attempts,
                    at_ms: now.unix_ms,
                }));
            }
            Note::Retry {
                event_id,
                attempt,
                delay_ms,
                status,
            } => self.emit(Event::WebhookRetryScheduled(WebhookRetryScheduled {
                event_id,
                attempt,
                delay_ms,
                status,
                at_ms: now.unix_ms,
            })),
            Note::DeadLettered {
                event_id,
                attempts,
                last_status,
                reason,
            } => {
                self.persist(Record::DeadLetter(DeadLetter {
                    event_id: event_id.clone(),
                    attempts,
                    last_status,
                    reason: reason.clone(),
                    at_ms: now.unix_ms,
                }));
                let dead_letters = self.log.dead_letter_count();
                self.emit(Event::WebhookDeadLettered(WebhookDeadLettered {
                    event_id,
                    attempts,
                    last_status,
                    reason,
                    dead_letters,
                    at_ms: now.unix_ms,
                }));
            }
        }
    }

    // ---- completion ---------------------------------------------------------------------------------------

    fn emit(&mut self, e: Event) {
        if let Event::RetryScheduled(r) = &e {
            self.report.note_retry(r);
        }
        self.out.push_back(Output::Event(e));
    }

    fn persist(&mut self, record: Record) {
        self.log.apply_trusted(&record);
        self.out.push_back(Output::Persist(record));
    }

    /// A checkpoint once enough has been written since the last one: at least `checkpoint_every` records,
    /// and at least twice what it would carry, so writing checkpoints stays a small share of the log.
    fn maybe_checkpoint(&mut self, now: Now) {
        let Some(every) = self.config.checkpoint_every else {
            return;
        };
        let threshold = u64::from(every).max(2 * self.log.open_items() as u64);
        if self.log.since_checkpoint() >= threshold {
            // Not through `persist`: folding the checkpoint in would rebuild the state it was just made from.
            let c = self.log.take_checkpoint(now.unix_ms);
            self.out.push_back(Output::Persist(Record::Checkpoint(c)));
        }
    }

    /// Ends a change: decides its outcome (see [`Change::outcome`]), records and reports it, and hands the
    /// agent's slot to the next change waiting for it.
    fn finish(&mut self, now: Now, id: TransitionId, verdict: Verdict) {
        let Some(change) = self.changes.remove(&id) else {
            return;
        };
        let policy_refusal = matches!(verdict, Verdict::Policy(_));
        let result = change.outcome(verdict);
        let latency_ms = now.mono_ms.saturating_sub(change.started_mono);
        self.leave_queue(&change.user, id);
        match &change.purpose {
            Purpose::Validate => {
                let result = result.map(|()| change.reason_code.clone());
                self.emit_validation(
                    now,
                    id,
                    change.user.as_str().to_owned(),
                    change.state.as_str().to_owned(),
                    result,
                );
            }
            Purpose::Change { key, settles, .. } => {
                let key = change.journaled().then(|| key.clone());
                // Only a definite outcome settles an earlier unknown one; another unknown leaves it open.
                let settles = settles
                    .clone()
                    .filter(|_| !matches!(&result, Err(e) if e.code == ErrorCode::OutcomeUnknown));
                debug_assert!(
                    !policy_refusal || key.is_none(),
                    "a refused change was never sent"
                );
                // An unknown outcome whose commit window has closed can never be settled by a resend: its
                // journal entry is closed at once instead of being carried in every checkpoint.
                let window_closed = matches!(&change.phase, Phase::Committing(c) if now.mono_ms >= c.send_by_mono)
                    && matches!(&result, Err(e) if e.code == ErrorCode::OutcomeUnknown);
                let unknown = matches!(&result, Err(e) if e.code == ErrorCode::OutcomeUnknown);
                let mut unknown_record = None;
                let deferral_end = self.deferral_end(now, id, &change, &result);
                match result {
                    Ok(()) => self.emit_success(now, id, &change, latency_ms, key.clone(), settles),
                    Err(e) => {
                        let draft = AuditDraft {
                            user_id: change.user.as_str().to_owned(),
                            previous_state: self.previous_state(change.user.as_str()),
                            new_state: change.state.as_str().to_owned(),
                            reason_code: Some(change.reason_code.clone()),
                            latency_ms,
                            attempts: change.attempts,
                            idempotency_key: key.clone(),
                            settles,
                            reference: change.reference().map(str::to_owned),
                            observation: None,
                            relies_on: None,
                            actor: change.actor.clone(),
                            override_: change.override_.clone(),
                            deferral: deferral_note(&change),
                        };
                        let record_id = self.emit_failure(now, id, draft, e);
                        unknown_record = unknown.then_some(record_id);
                    }
                }
                if let Some(e) = deferral_end {
                    self.emit(e);
                }
                if change.first_sent_unix.is_some() {
                    self.note_sent_done(now, &change, unknown_record);
                }
                if let (true, Some(key)) = (window_closed, key) {
                    self.persist(Record::Abandoned(Abandoned {
                        idempotency_key: key,
                        reason: "its commit window has closed: it will not be sent again"
                            .to_owned(),
                        at_ms: now.unix_ms,
                    }));
                }
            }
        }
    }

    /// Takes a change out of its agent's queue. The head (the running change) hands its agent's slot to the
    /// next change waiting; a change elsewhere in the queue (the engine is closing) just leaves it.
    fn leave_queue(&mut self, user: &UserId, id: TransitionId) {
        let Some(queue) = self.agents.get_mut(user) else {
            return;
        };
        if queue.front() == Some(&id) {
            queue.pop_front();
            if let Some(&next) = queue.front() {
                self.runnable.push_back(next);
            }
        } else {
            queue.retain(|x| *x != id);
        }
        if queue.is_empty() {
            self.agents.remove(user);
        }
    }

    fn emit_validation(
        &mut self,
        now: Now,
        id: TransitionId,
        user_id: String,
        state: String,
        result: Result<String, TransitionError>,
    ) {
        let (valid, reason_code, error) = match result {
            Ok(rc) => (true, Some(rc), None),
            Err(e) => (false, None, Some(e)),
        };
        self.emit(Event::ValidationCompleted(ValidationCompleted {
            transition_id: id,
            user_id,
            state,
            valid,
            reason_code,
            error,
            at_ms: now.unix_ms,
        }));
    }

    /// The state an agent is in before this change, as its audit record and event name it: read before the
    /// history records the change.
    fn previous_state(&self, user_id: &str) -> Option<String> {
        self.history.current(user_id).map(|p| p.state.clone())
    }

    fn audit_record(
        &mut self,
        now: Now,
        d: AuditDraft,
        result: Result<(), &TransitionError>,
    ) -> AuditRecord {
        let error = result.err();
        let error_code = error.map(|e| e.code);
        // A change held until its break ends has no outcome yet: not a success, not a failure.
        let held = d
            .deferral
            .as_ref()
            .is_some_and(|n| n.phase == crate::DeferralPhase::Deferred);
        let source = match d.observation {
            Some(_) => Source::Observed,
            None => self.config.source,
        };
        let record = AuditRecord {
            seq: 0,
            id: self.rng.uuid().to_string(),
            timestamp: iso8601(now.unix_ms),
            user_id: d.user_id,
            previous_state: d.previous_state,
            new_state: d.new_state,
            reason_code: d.reason_code,
            success: result.is_ok() && !held,
            latency_ms: d.latency_ms,
            policy_violation: error_code.is_some_and(ErrorCode::is_policy_violation),
            error_code,
            error_message: error.map(|e| e.message.clone()),
            attempts: d.attempts,
            idempotency_key: d.idempotency_key,
            settles: d.settles,
            reference: d.reference,
            observation: d.observation,
            relies_on: d.relies_on,
            source: Some(source),
            actor: Some(d.actor),
            override_: d.override_,
            deferral: d.deferral,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let record = self.chain.append(record);
        self.report.ingest(&record);
        record
    }

    /// Audits and reports a failure; returns its record's id.
    fn emit_failure(
        &mut self,
        now: Now,
        id: TransitionId,
        d: AuditDraft,
        e: TransitionError,
    ) -> String {
        let (user_id, new_state) = (d.user_id.clone(), d.new_state.clone());
        let reference = d.reference.clone();
        let (latency_ms, attempts) = (d.latency_ms, d.attempts);
        let record = self.audit_record(now, d, Err(&e));
        let record_id = record.id.clone();
        let policy_violation = record.policy_violation;
        self.persist(Record::Audit(record));
        if policy_violation {
            self.emit(Event::PolicyViolation(PolicyViolation {
                transition_id: id,
                user_id: user_id.clone(),
                requested_state: new_state.clone(),
                code: e.code,
                at_ms: now.unix_ms,
            }));
        }
        self.emit(Event::TransitionFailed(TransitionFailed {
            transition_id: id,
            user_id,
            requested_state: new_state,
            error: e,
            policy_violation,
            latency_ms,
            attempts,
            at_ms: now.unix_ms,
            reference,
        }));
        record_id
    }

    fn emit_success(
        &mut self,
        now: Now,
        id: TransitionId,
        change: &Change,
        latency_ms: u64,
        key: Option<String>,
        settles: Option<String>,
    ) {
        let user_id = change.user.as_str().to_owned();
        let new_state = change.state.as_str().to_owned();
        // Both read before the history records this change.
        let previous_state = self.previous_state(&user_id);
        // The webhook's outbox entry goes first: a log cut between the two leaves the change open (resumed and
        // announced again under the same event id) rather than audited without its webhook.
        // A change not sent because the tenant already showed it changes nothing: no webhook, no new stretch.
        let noop = change.relies_on.is_some();
        if let Some(outbox) = self.outbox.as_ref().filter(|_| !noop) {
            let idle_time_ms = self.history.idle_time(&user_id, now.unix_ms);
            let payload = WebhookPayload {
                event: AGENT_STATE_CHANGED.to_owned(),
                event_id: webhook_event_id(key.as_deref().unwrap_or_default()),
                timestamp: iso8601(now.unix_ms),
                data: WebhookData {
                    user_id: user_id.clone(),
                    new_state: new_state.clone(),
                    previous_state: previous_state.clone(),
                    reason_code: change.reason_code.clone(),
                    latency_ms,
                    idle_time_ms,
                    violation_count: self.report.violation_count(),
                },
            };
            let entry = outbox.bind(WebhookEntry {
                event_id: payload.event_id.clone(),
                body: serde_json::to_string(&payload).expect("payloads serialize"),
                at_ms: now.unix_ms,
                receiver: None,
                url: None,
            });
            self.persist(Record::Webhook(entry.clone()));
            if let Some(o) = &mut self.outbox {
                o.enqueue(entry, now, 0);
            }
        }
        let record = self.audit_record(
            now,
            AuditDraft {
                user_id: user_id.clone(),
                previous_state: previous_state.clone(),
                new_state: new_state.clone(),
                reason_code: Some(change.reason_code.clone()),
                latency_ms,
                attempts: change.attempts,
                idempotency_key: key,
                settles,
                reference: change.reference().map(str::to_owned),
                observation: None,
                relies_on: change.relies_on.clone(),
                actor: change.actor.clone(),
                override_: change.override_.clone(),
                deferral: deferral_note(change),
            },
            Ok(()),
        );
        self.persist(Record::Audit(record));
        if !noop {
            self.history.record(&user_id, &new_state, now.unix_ms);
        }
        self.emit(Event::StateChanged(StateChanged {
            transition_id: id,
            user_id,
            previous_state,
            new_state,
            reason_code: change.reason_code.clone(),
            latency_ms,
            attempts: change.attempts,
            at_ms: now.unix_ms,
            reference: change.reference().map(str::to_owned),
        }));
    }
}

/// The facts of a change for its audit record (its outcome comes apart), and for its event when it failed.
struct AuditDraft {
    user_id: String,
    /// Read before the history records the change (see [`Engine::previous_state`]).
    previous_state: Option<String>,
    new_state: String,
    reason_code: Option<String>,
    latency_ms: u64,
    attempts: u32,
    idempotency_key: Option<String>,
    settles: Option<String>,
    /// The caller's reference of the change.
    reference: Option<String>,
    /// For an observation record: what the tenant showed.
    observation: Option<Box<crate::Observation>>,
    /// For a change not sent because it was in effect: the observation record relied on.
    relies_on: Option<String>,
    /// Who asked for it (the system for observations and settlements).
    actor: Actor,
    /// A supervisor's override, with the rule it passed.
    override_: Option<Box<OverrideNote>>,
    /// A deferred change's step.
    deferral: Option<Box<crate::DeferralNote>>,
}

/// A well-formed agent and target state, or the first error in them (the agent's is checked first).
fn parse_target(user_id: &str, state: &str) -> Result<(UserId, AgentState), TransitionError> {
    Ok((UserId::parse(user_id)?, AgentState::parse(state)?))
}

/// A caller's explicit reason: 1 to [`MAX_REASON_LEN`] characters, none of them a control character.
fn check_reason(reason: Option<&str>) -> Result<(), TransitionError> {
    match reason {
        Some(r) if !crate::actor::is_printable_text(r, MAX_REASON_LEN) => {
            Err(TransitionError::new(
                ErrorCode::UnknownReasonCode,
                format!("a reason is 1 to {MAX_REASON_LEN} printable characters"),
            ))
        }
        _ => Ok(()),
    }
}

/// Raw input as given, cut to [`MAX_RAW_INPUT_CHARS`] characters with a marker naming the bytes left out.
fn truncate_raw(raw: &str) -> String {
    match raw.char_indices().nth(MAX_RAW_INPUT_CHARS) {
        None => raw.to_owned(),
        Some((cut, _)) => format!(
            "{}…[truncated: {} more bytes]",
            &raw[..cut],
            raw.len() - cut
        ),
    }
}

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

/// Whether a transient status may come from a server that processed the request. Only a 429 (a limiter
/// refuses before anything is done) and a 408 or 425 (the server would not start) are sure not to; any 5xx
/// may follow work that was done — a 503 too, which proxies also send when the upstream reset after the
/// request was forwarded.
fn may_have_been_processed(status: u16) -> bool {
    status >= 500
}

/// Statuses worth sending again: throttling, a server that timed out or would not start yet, and any 5xx.
fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (500..600).contains(&status)
}

/// How a request that is given up on failed last, for [`exhausted`]'s message.
fn request_failure(transport: Option<TransportErrorKind>) -> &'static str {
    match transport {
        Some(TransportErrorKind::Timeout) => "request (timed out)",
        Some(_) => "request (connection failed)",
        None => "request",
    }
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

fn window_closed(throttled: bool) -> TransitionError {
    if throttled {
        TransitionError::new(
            ErrorCode::RateLimited,
            "the tenant was still throttling when the change's commit window closed",
        )
    } else {
        TransitionError::new(
            ErrorCode::UpstreamUnavailable,
            "the change could not be sent again before its commit window closed",
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenants_clock_is_read_only_from_quick_2xx_answers() {
        let mut cfg = EngineConfig::new("", "id", Secret::new("s"));
        cfg.profile = ProfileKind::Cxone;
        cfg.cxone.access_key_id = "k".into();
        cfg.cxone.access_key_secret = Secret::new("ks");
        let mut e = Engine::new(cfg).unwrap();
        let now = Now {
            mono_ms: 1_000,
            unix_ms: 1_767_600_000_000,
        };
        let hour_ago = crate::time::http_date(now.unix_ms - 3_600_000);
        let answer =
            |status| HttpResponse::new(status, vec![("Date".into(), hour_ago.clone())], "");
        // A gateway's 503 with a stale `Date`, and a 200 that took 5 s: neither is read.
        e.read_tenant_clock(now, &answer(503), 100);
        e.read_tenant_clock(now, &answer(200), 5_000);
        assert_eq!(e.tenant_now(now), now);
        // A quick 200 is: the tenant's clock is an hour behind ours.
        e.read_tenant_clock(now, &answer(200), 100);
        let behind = now.unix_ms - e.tenant_now(now).unix_ms;
        assert!((3_599_000..=3_600_000).contains(&behind), "{behind}");
        // A second's disagreement is within a `Date`'s resolution: our clock is used.
        let close = crate::time::http_date(now.unix_ms + 1_000);
        e.read_tenant_clock(
            now,
            &HttpResponse::new(200, vec![("Date".into(), close)], ""),
            100,
        );
        assert_eq!(e.tenant_now(now), now);
    }

    #[test]
    fn raw_input_is_cut_with_a_marker() {
        assert_eq!(truncate_raw("short"), "short");
        let long = "é".repeat(300);
        let cut = truncate_raw(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_RAW_INPUT_CHARS)));
        assert!(cut.ends_with(&format!("[truncated: {} more bytes]", (300 - 128) * 2)));
        assert!(cut.chars().count() < 200);
    }
}
