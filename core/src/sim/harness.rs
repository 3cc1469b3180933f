//! A virtual-clock harness in the style of quinn's `Pair`: the engine drives the simulated tenant (and a
//! simulated webhook receiver), and time jumps from one deadline to the next.
//!
//! The harness is also the engine's durable log: it keeps every persisted record, so a test can "crash" the
//! engine ([`Harness::restart`]) and restore a new one from what was persisted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use serde::{Deserialize, Serialize};

use super::tenant::{SimConfig, SimOutcome, SimTenant};
use super::workday::Workday;
use crate::audit::AuditRecord;
use crate::config::{EngineConfig, ProfileKind, Secret, REDACTED};
use crate::engine::{Engine, Input, Output, Restored, TransitionOptions};
use crate::error::CommandError;
use crate::events::{Event, TransitionId};
use crate::http::{HttpRequest, HttpResponse, RequestId, Target, Transmit, TransportErrorKind};
use crate::log::{LogState, Record};
use crate::pacer::RateLimit;
use crate::profile::{ApiProfile, SeedProfile};
use crate::time::Now;

/// The base URL the engine uses against the in-process tenant (never resolved).
pub const SIM_BASE_URL: &str = "https://sim.invalid";

/// The URL of the in-process webhook receiver (never resolved).
pub const SIM_WEBHOOK_URL: &str = "https://hooks.sim.invalid/agent-state";

/// The harness ran more steps than allowed: something keeps scheduling work without finishing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no quiescence after {steps} steps (virtual time {now_ms})")]
pub struct Livelock {
    /// Steps taken.
    pub steps: usize,
    /// Virtual time reached.
    pub now_ms: u64,
}

/// A command a transcript or a test hands the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "command",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Command {
    /// [`Engine::transition`].
    Transition {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
    },
    /// [`Engine::transition_with`].
    TransitionWith {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
        /// The options (the caller's reference, …).
        options: TransitionOptions,
    },
    /// [`Engine::validate`].
    Validate {
        /// The agent.
        user_id: String,
        /// The target state.
        state: String,
    },
    /// [`Engine::replay_dead_letters`].
    ReplayDeadLetters {
        /// One dead letter, or all when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// [`Engine::close`].
    Close,
    /// [`Engine::cancel_deferred`].
    CancelDeferred {
        /// The agent.
        user_id: String,
    },
    /// [`Engine::start_observing`].
    StartObserving,
    /// [`Engine::stop_observing`].
    StopObserving,
}

/// One step of a transcript: what was handed to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// A command, at a time.
    Command {
        /// When.
        now: Now,
        /// What.
        command: Command,
    },
    /// An input (it carries its time).
    Input(Input),
}

impl Action {
    /// When it happened.
    pub fn now(&self) -> Now {
        match self {
            Self::Command { now, .. } => *now,
            Self::Input(i) => i.now(),
        }
    }

    /// Hands the action to an engine; a command's id (or refusal) is returned.
    pub fn apply(&self, engine: &mut Engine) -> Option<Result<TransitionId, CommandError>> {
        match self {
            Self::Command { now, command } => match command {
                Command::Transition { user_id, state } => {
                    Some(engine.transition(*now, user_id, state))
                }
                Command::TransitionWith {
                    user_id,
                    state,
                    options,
                } => Some(engine.transition_with(*now, user_id, state, options)),
                Command::Validate { user_id, state } => Some(engine.validate(*now, user_id, state)),
                Command::ReplayDeadLetters { event_id } => {
                    engine.replay_dead_letters(*now, event_id.as_deref());
                    None
                }
                Command::CancelDeferred { user_id } => {
                    engine.cancel_deferred(*now, user_id);
                    None
                }
                Command::Close => {
                    engine.close(*now);
                    None
                }
                Command::StartObserving => engine.start_observing(*now).err().map(Err),
                Command::StopObserving => {
                    engine.stop_observing();
                    None
                }
            },
            Self::Input(i) => {
                engine.handle_input(i.clone());
                None
            }
        }
    }
}

/// One action handed to the engine and every output it produced before asking for a timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptStep {
    /// What was handed in.
    pub action: Action,
    /// The outputs drained after it, ending with the [`Output::Timeout`].
    pub outputs: Vec<Output>,
}

/// An answer on its way to the engine: the [`Input`] it becomes on arrival, but for the time, which is read
/// when it arrives (the wall clock may have been stepped meanwhile).
#[derive(Debug)]
enum Answer {
    Response {
        id: RequestId,
        response: HttpResponse,
    },
    TransportError {
        id: RequestId,
        kind: TransportErrorKind,
    },
    AccessToken {
        id: RequestId,
        access_token: Option<Secret>,
        expires_in_ms: u64,
        error: Option<String>,
    },
}

impl Answer {
    /// The input the engine gets when the answer arrives at `now`.
    fn arrive(self, now: Now) -> Input {
        match self {
            Self::Response { id, response } => Input::Response { now, id, response },
            Self::TransportError { id, kind } => Input::TransportError { now, id, kind },
            Self::AccessToken {
                id,
                access_token,
                expires_in_ms,
                error,
            } => Input::AccessToken {
                now,
                id,
                access_token,
                expires_in_ms,
                error,
                api_base: None,
                wfm_base: None,
            },
        }
    }
}

/// How the harness answers [`Event::TokenRequested`] (an engine with an external token source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenBackend {
    /// Like a web console's back end: fetch a token from the tenant with its own client credentials.
    Tenant,
    /// Always answer this token with this remaining life (ms).
    Fixed(String, u64),
    /// Always fail with this message.
    Failing(String),
}

/// How the simulated webhook receiver answers one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReceiverAnswer {
    /// This HTTP status.
    Status(u16),
    /// The connection drops.
    Drop,
}

/// A webhook receiver on the virtual clock: scripted answers first, then `default`.
#[derive(Clone, Debug)]
pub struct SimReceiver {
    /// Answers for the next deliveries, in order.
    pub script: VecDeque<ReceiverAnswer>,
    /// The answer once the script is spent.
    pub default: ReceiverAnswer,
    /// Bodies accepted (2xx), in order.
    pub accepted: Vec<String>,
}

impl Default for SimReceiver {
    fn default() -> Self {
        Self {
            script: VecDeque::new(),
            default: ReceiverAnswer::Status(204),
            accepted: Vec::new(),
        }
    }
}

impl SimReceiver {
    fn handle(&mut self, request: &HttpRequest) -> ReceiverAnswer {
        let answer = self.script.pop_front().unwrap_or(self.default);
        if matches!(answer, ReceiverAnswer::Status(s) if (200..300).contains(&s)) {
            self.accepted.push(request.body.clone().unwrap_or_default());
        }
        answer
    }
}

/// Engine + tenant + webhook receiver + virtual clock + the durable log.
#[derive(Debug)]
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// The simulated tenant.
    pub tenant: SimTenant,
    /// The simulated webhook receiver.
    pub receiver: SimReceiver,
    now_ms: u64,
    /// What the engine's wall clock reads minus true (virtual) time: stepped by tests.
    wall_offset_ms: i64,
    seq: u64,
    deliveries: BinaryHeap<Reverse<(u64, u64)>>,
    delivery_items: BTreeMap<u64, Answer>,
    commands: BinaryHeap<Reverse<(u64, u64)>>,
    command_items: BTreeMap<u64, Command>,
    events: Vec<(u64, Event)>,
    records: Vec<(u64, Record)>,
    keep_records: bool,
    requests: Vec<(u64, HttpRequest)>,
    record_requests: bool,
    transcript: Option<Vec<TranscriptStep>>,
    token_backend: Option<TokenBackend>,
    token_requests: u64,
}

impl Harness {
    /// A harness starting at `start_ms`.
    pub fn new(engine: Engine, tenant: SimTenant, start_ms: u64) -> Self {
        Self {
            engine,
            tenant,
            receiver: SimReceiver::default(),
            now_ms: start_ms,
            wall_offset_ms: 0,
            seq: 0,
            deliveries: BinaryHeap::new(),
            delivery_items: BTreeMap::new(),
            commands: BinaryHeap::new(),
            command_items: BTreeMap::new(),
            events: Vec::new(),
            records: Vec::new(),
            keep_records: true,
            requests: Vec::new(),
            record_requests: false,
            transcript: None,
            token_backend: None,
            token_requests: 0,
        }
    }

    /// An engine configuration that talks to a tenant built from `workday.tenant`: matching credentials and
    /// the tenant's per-minute limit (but not its burst, which a client is never told).
    pub fn engine_config_for(workday: &Workday, seed: u64) -> EngineConfig {
        Self::engine_config_for_tenant(&workday.tenant, seed)
    }

    /// An engine configuration for a tenant built from `tenant`: its credentials and its per-minute limit
    /// (but not its burst, which a client is never told); its records name `simulation` as their source.
    pub fn engine_config_for_tenant(tenant: &SimConfig, seed: u64) -> EngineConfig {
        let mut c = EngineConfig::new(
            SIM_BASE_URL,
            tenant.client_id.clone(),
            Secret::new(tenant.client_secret.clone()),
        );
        c.seed = seed;
        c.rate_limit = RateLimit {
            per_minute: tenant.rate_per_minute,
            burst: None,
        };
        // A simulated day's records say so.
        c.source = crate::actor::Source::Simulation;
        c
    }

    /// An engine configuration for a tenant built from `tenant`, speaking `profile`: on `cxone`, the access
    /// key, discovery from the tenant's origin ([`SIM_BASE_URL`]), and the WFM host's own limit.
    pub fn engine_config_for_profile(
        tenant: &SimConfig,
        seed: u64,
        profile: ProfileKind,
    ) -> EngineConfig {
        let mut c = Self::engine_config_for_tenant(tenant, seed);
        if profile == ProfileKind::Cxone {
            c.profile = profile;
            c.base_url = String::new();
            c.cxone.access_key_id = tenant.access_key_id.clone();
            c.cxone.access_key_secret = Secret::new(tenant.access_key_secret.clone());
            c.cxone.auth_base = SIM_BASE_URL.to_owned();
            c.cxone.wfm_rate_limit = RateLimit {
                per_minute: tenant.wfm_rate_per_minute,
                burst: None,
            };
        }
        c
    }

    /// How the engine names the agent the tenant knows as `name`: the name itself on `seed`, its `agentId`
    /// on `cxone` (`name` itself when the tenant has no such agent).
    pub fn user(&self, name: &str) -> String {
        match self.engine.config().profile {
            ProfileKind::Cxone => self
                .tenant
                .cxone_agent(name)
                .map_or_else(|| name.to_owned(), |a| a.agent_id.to_string()),
            _ => name.to_owned(),
        }
    }

    /// A harness running a whole generated day: the tenant knows the agents, and every planned command is
    /// scheduled at its time.
    pub fn for_workday(workday: &Workday, engine: Engine) -> Self {
        let start = workday.commands.first().map_or(0, |c| c.at_ms);
        let mut tenant = SimTenant::new(workday.tenant.clone());
        tenant.advance_to(start);
        for a in &workday.agents {
            tenant.add_agent(a.clone());
        }
        let mut h = Self::new(engine, tenant, start);
        for c in &workday.commands {
            let user_id = h.user(&c.user_id);
            let state = c.state.clone();
            let command = match workday.defer {
                true => Command::TransitionWith {
                    user_id,
                    state,
                    options: TransitionOptions::default().with_defer(),
                },
                false => Command::Transition { user_id, state },
            };
            h.command_at(c.at_ms, command);
        }
        h
    }

    /// Virtual now.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Virtual now, as the engine sees it: the monotonic clock is virtual time; the wall clock is virtual
    /// time unless a test stepped it ([`step_wall_clock`](Self::step_wall_clock)).
    pub fn now(&self) -> Now {
        Now::new(
            self.now_ms,
            self.now_ms.saturating_add_signed(self.wall_offset_ms),
        )
    }

    /// Steps the engine's wall clock by `ms` (negative: back), as NTP or an administrator might; the monotonic
    /// clock and the tenant's time do not move.
    pub fn step_wall_clock(&mut self, ms: i64) {
        self.wall_offset_ms = self.wall_offset_ms.saturating_add(ms);
    }

    /// Keep a copy of every request sent (off by default; memory grows with the run).
    pub fn record_requests(&mut self, on: bool) {
        self.record_requests = on;
    }

    /// Keep every persisted record (on by default); a long simulated day turns it off and takes them as
    /// they come with [`take_records`](Self::take_records).
    pub fn keep_records(&mut self, on: bool) {
        self.keep_records = on;
    }

    /// Requests sent so far with their send times, if recording.
    pub fn requests(&self) -> &[(u64, HttpRequest)] {
        &self.requests
    }

    /// Records every action and the outputs it produced (off by default), for transcript vectors. Secrets
    /// are replaced by `[redacted]` in what is recorded — inputs and outputs alike — so a transcript replays
    /// exactly on an engine configured from its (redacted) configuration, and no vector holds a secret.
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// The transcript so far, if recording.
    pub fn transcript(&self) -> &[TranscriptStep] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// Hands one action to the engine at its time and drains the outputs.
    pub fn act(&mut self, action: Action) -> Option<Result<TransitionId, CommandError>> {
        let result = action.apply(&mut self.engine);
        let outputs = self.engine.drain_outputs();
        if let Some(t) = &mut self.transcript {
            t.push(TranscriptStep {
                action: redact_action(&action),
                outputs: outputs.iter().map(redact_output).collect(),
            });
        }
        self.process(outputs);
        result
    }

    /// Hands one input to the engine and drains the outputs.
    pub fn feed(&mut self, input: Input) {
        self.act(Action::Input(input));
    }

    /// Runs a command now and drains the engine.
    pub fn command(&mut self, command: Command) -> Option<Result<TransitionId, CommandError>> {
        let now = self.now();
        self.act(Action::Command { now, command })
    }

    /// Answers the engine's token requests with `backend` (for [`TokenSource::External`](crate::TokenSource)).
    pub fn set_token_backend(&mut self, backend: TokenBackend) {
        self.token_backend = Some(backend);
    }

    /// Token requests the engine made of the host so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests
    }

    fn answer_token_request(&mut self, id: RequestId) {
        self.token_requests += 1;
        let Some(backend) = self.token_backend.clone() else {
            return;
        };
        let (access_token, expires_in_ms, error) = match backend {
            TokenBackend::Fixed(t, ttl) => (Some(Secret::new(t)), ttl, None),
            TokenBackend::Failing(e) => (None, 0, Some(e)),
            TokenBackend::Tenant => {
                // The back end asks the tenant's token endpoint with the tenant's own credentials.
                let tenant = self.tenant.config();
                let backend = EngineConfig::new(
                    SIM_BASE_URL,
                    tenant.client_id.clone(),
                    Secret::new(tenant.client_secret.clone()),
                );
                let request = SeedProfile.token_request(&backend);
                let token = match self.tenant.handle_request(self.now_ms, &request).outcome {
                    SimOutcome::Response(r) => SeedProfile.parse_token(&r).ok(),
                    SimOutcome::TransportError(_) => None,
                };
                match token {
                    Some(t) => (Some(t.access_token), t.expires_in_ms, None),
                    None => (None, 0, Some("the back end got no token".to_owned())),
                }
            }
        };
        let at = self.now_ms + self.tenant.config().latency_ms;
        self.deliver_at(
            at,
            Answer::AccessToken {
                id,
                access_token,
                expires_in_ms,
                error,
            },
        );
    }

    fn deliver_at(&mut self, at_ms: u64, answer: Answer) {
        self.seq += 1;
        self.deliveries.push(Reverse((at_ms, self.seq)));
        self.delivery_items.insert(self.seq, answer);
    }

    /// Events so far with their times.
    pub fn events(&self) -> &[(u64, Event)] {
        &self.events
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<(u64, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Every persisted record so far with its time: the durable log.
    pub fn records(&self) -> &[(u64, Record)] {
        &self.records
    }

    /// Takes the records collected so far.
    pub fn take_records(&mut self) -> Vec<(u64, Record)> {
        std::mem::take(&mut self.records)
    }

    /// The audit records persisted so far, in order.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.records
            .iter()
            .filter_map(|(_, r)| r.as_audit().cloned())
            .collect()
    }

    /// The fold of every persisted record: what a host would recover after a crash now.
    pub fn log_state(&self) -> LogState {
        let mut state = LogState::default();
        for (_, r) in &self.records {
            state
                .apply(r)
                .expect("the engine persists a consistent log");
        }
        state
    }

    /// Simulates a crash and a restart: answers in flight are lost, the process stays down for `down_ms`, then
    /// a new engine with the same configuration restores from the records persisted so far, and the run
    /// continues.
    pub fn restart(&mut self, down_ms: u64) -> Restored {
        let config = self.engine.config().clone();
        self.restart_with(config, down_ms)
    }

    /// As [`restart`](Self::restart), with another configuration: a setting changed between the two runs.
    pub fn restart_with(&mut self, config: EngineConfig, down_ms: u64) -> Restored {
        let state = self.log_state();
        self.deliveries.clear();
        self.delivery_items.clear();
        self.now_ms = self.now_ms.saturating_add(down_ms);
        self.engine = Engine::new(config).expect("a valid configuration");
        let restored = self.engine.restore(self.now(), state);
        self.drain();
        restored
    }

    /// Schedules a command at a virtual time (now if in the past).
    pub fn command_at(&mut self, at_ms: u64, command: Command) {
        self.seq += 1;
        self.commands
            .push(Reverse((at_ms.max(self.now_ms), self.seq)));
        self.command_items.insert(self.seq, command);
    }

    /// Starts a transition now and drains the engine.
    pub fn transition(&mut self, user_id: &str, state: &str) -> TransitionId {
        self.command(Command::Transition {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
        })
        .expect("commands answer")
        .expect("the engine takes the command")
    }

    /// Starts a transition with options now and drains the engine.
    pub fn transition_with(
        &mut self,
        user_id: &str,
        state: &str,
        options: &TransitionOptions,
    ) -> TransitionId {
        self.command(Command::TransitionWith {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
            options: options.clone(),
        })
        .expect("commands answer")
        .expect("the engine takes the command")
    }

    /// Starts a validation now and drains the engine.
    pub fn validate(&mut self, user_id: &str, state: &str) -> TransitionId {
        self.command(Command::Validate {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
        })
        .expect("commands answer")
        .expect("the engine takes the command")
    }

    /// Drains the engine's outputs: requests go to the tenant or the receiver, records and events are kept.
    pub fn drain(&mut self) {
        let outputs = self.engine.drain_outputs();
        self.process(outputs);
    }

    fn process(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Transmit(t) => self.perform(t),
                Output::Persist(r) => {
                    if self.keep_records {
                        self.records.push((self.now_ms, r));
                    }
                }
                Output::Event(e) => {
                    if let Event::TokenRequested(t) = &e {
                        self.answer_token_request(t.request_id);
                    }
                    self.events.push((self.now_ms, e));
                }
                // The harness asks the engine for its deadline when it needs it.
                Output::Timeout(_) => {}
            }
        }
    }

    fn perform(&mut self, t: Transmit) {
        let Transmit {
            id,
            target,
            request,
        } = t;
        if target == Target::Webhook {
            let answer = match self.receiver.handle(&request) {
                ReceiverAnswer::Status(status) => Answer::Response {
                    id,
                    response: HttpResponse::new(status, vec![], ""),
                },
                ReceiverAnswer::Drop => Answer::TransportError {
                    id,
                    kind: TransportErrorKind::Reset,
                },
            };
            self.deliver_at(self.now_ms + 5, answer);
        } else {
            let reply = self.tenant.handle_request(self.now_ms, &request);
            let answer = match reply.outcome {
                SimOutcome::Response(response) => Answer::Response { id, response },
                SimOutcome::TransportError(kind) => Answer::TransportError { id, kind },
            };
            self.deliver_at(reply.deliver_at_ms.max(self.now_ms), answer);
        }
        if self.record_requests {
            self.requests.push((self.now_ms, request));
        }
    }

    /// The next virtual time anything happens.
    pub fn next_time(&self) -> Option<u64> {
        [
            self.deliveries.peek().map(|r| r.0 .0),
            self.commands.peek().map(|r| r.0 .0),
            self.engine.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Jumps to the next time anything happens and handles everything due then. `false` when idle.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_time() else {
            return false;
        };
        self.now_ms = self.now_ms.max(next);
        let now = self.now_ms;
        while let Some(&Reverse((at, seq))) = self.deliveries.peek() {
            if at > now {
                break;
            }
            self.deliveries.pop();
            let answer = self.delivery_items.remove(&seq).expect("delivery exists");
            // The engine reads its clocks when the answer arrives (the wall clock may have been stepped).
            self.feed(answer.arrive(self.now()));
        }
        while let Some(&Reverse((at, seq))) = self.commands.peek() {
            if at > now {
                break;
            }
            self.commands.pop();
            let command = self.command_items.remove(&seq).expect("command exists");
            self.command(command);
        }
        if self.engine.next_deadline().is_some_and(|d| d <= now) {
            self.feed(Input::Timeout { now: self.now() });
        }
        true
    }

    /// Steps until nothing is left, allowing up to 10 million steps.
    pub fn drive(&mut self) -> Result<usize, Livelock> {
        self.drive_bounded(10_000_000)
    }

    /// Steps until nothing is left or `max_steps` were taken.
    pub fn drive_bounded(&mut self, max_steps: usize) -> Result<usize, Livelock> {
        self.drain();
        for steps in 0..max_steps {
            if !self.step() {
                return Ok(steps);
            }
        }
        Err(Livelock {
            steps: max_steps,
            now_ms: self.now_ms,
        })
    }

    /// Steps until virtual time reaches `until_ms` (or nothing is left).
    pub fn drive_until(&mut self, until_ms: u64) {
        self.drain();
        while self.next_time().is_some_and(|t| t <= until_ms) {
            self.step();
        }
        self.now_ms = self.now_ms.max(until_ms);
    }
}

// ---- redaction of recorded transcripts -------------------------------------------------------------------

/// Form fields that carry secrets.
const SECRET_FORM_FIELDS: &[&str] = &["client_secret", "password", "refresh_token"];
/// JSON members of token answers that carry secrets.
const SECRET_JSON_MEMBERS: &[&str] = &["access_token", "refresh_token"];

fn redact_request(r: &HttpRequest) -> HttpRequest {
    let mut r = r.clone();
    for (k, v) in &mut r.headers {
        if k.eq_ignore_ascii_case("authorization") {
            let (scheme, credentials) = v.split_once(' ').unwrap_or((v.as_str(), ""));
            *v = match redact_basic(scheme, credentials) {
                Some(basic) => basic,
                None => format!("{scheme} {REDACTED}"),
            };
        }
    }
    let form = r
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if let (true, Some(body)) = (form, &r.body) {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| {
                let v = if SECRET_FORM_FIELDS.contains(&k.as_ref()) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        r.body = Some(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        );
    }
    r
}

/// HTTP Basic credentials with the secret replaced by [`REDACTED`], encoded as the engine encodes them:
/// replaying the transcript with its redacted configuration (whose secret is `[redacted]`) builds this very
/// header. The client id (no secret) stays readable.
fn redact_basic(scheme: &str, credentials: &str) -> Option<String> {
    use base64::Engine as _;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, _secret) = decoded.split_once(':')?;
    let redacted = format!("{user}:{}", utf8_percent_encode(REDACTED, NON_ALPHANUMERIC));
    Some(format!(
        "{scheme} {}",
        base64::engine::general_purpose::STANDARD.encode(redacted)
    ))
}

fn redact_response(r: &HttpResponse) -> HttpResponse {
    let mut r = r.clone();
    if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(&r.body) {
        let mut changed = false;
        for m in SECRET_JSON_MEMBERS {
            if let Some(v) = map.get_mut(*m).filter(|v| v.is_string()) {
                *v = serde_json::Value::String(REDACTED.to_owned());
                changed = true;
            }
        }
        // An id_token's claims (the tenant, the issuer, the API user) are what the engine reads from it and
        // are no secret; its signature is what would make it a credential, so only that is left out.
        if let Some(serde_json::Value::String(t)) = map.get_mut("id_token") {
            if let Some((claims, _signature)) = t.rsplit_once('.') {
                *t = format!("{claims}.{REDACTED}");
                changed = true;
            }
        }
        if changed {
            r.body = serde_json::Value::Object(map).to_string();
        }
    }
    r
}

fn redact_action(a: &Action) -> Action {
    match a {
        Action::Input(Input::Response { now, id, response }) => Action::Input(Input::Response {
            now: *now,
            id: *id,
            response: redact_response(response),
        }),
        // An access token handed in serializes redacted already ([`Secret`]).
        other => other.clone(),
    }
}

fn redact_output(o: &Output) -> Output {
    match o {
        Output::Transmit(t) => Output::Transmit(Transmit {
            id: t.id,
            target: t.target,
            request: redact_request(&t.request),
        }),
        other => other.clone(),
    }
}
