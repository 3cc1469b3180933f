//! A virtual-clock harness in the style of quinn's `Pair`: the engine drives the simulated tenant, and time
//! jumps from one deadline to the next.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use super::tenant::{SimConfig, SimOutcome, SimTenant};
use super::workday::Workday;
use crate::config::{EngineConfig, Secret};

use crate::engine::{Command, Engine, Input, Output};
use crate::events::{Event, TransitionId};
use crate::http::{HttpRequest, HttpResponse, RequestId, TransportErrorKind};
use crate::pacer::RateLimit;
use crate::profile::{ApiProfile, SeedProfile};

/// The base URL the engine uses against the in-process tenant (never resolved).
pub const SIM_BASE_URL: &str = "http://sim.invalid";

/// The harness ran more steps than allowed: something keeps scheduling work without finishing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no quiescence after {steps} steps (virtual time {now_ms})")]
pub struct Livelock {
    /// Steps taken.
    pub steps: usize,
    /// Virtual time reached.
    pub now_ms: u64,
}

#[derive(Debug)]
enum Delivery {
    Response(HttpResponse),
    Failure(RequestId, TransportErrorKind),
    Input(Input),
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

/// Engine + tenant + virtual clock.
#[derive(Debug)]
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// The simulated tenant.
    pub tenant: SimTenant,
    now_ms: u64,
    seq: u64,
    deliveries: BinaryHeap<Reverse<(u64, u64)>>,
    delivery_items: BTreeMap<u64, Delivery>,
    commands: BinaryHeap<Reverse<(u64, u64)>>,
    command_items: BTreeMap<u64, Command>,
    engine_deadline: Option<u64>,
    events: Vec<(u64, Event)>,
    requests: Vec<(u64, HttpRequest)>,
    record_requests: bool,
    started: Vec<(u64, TransitionId)>,
    transcript: Option<Vec<TranscriptStep>>,
    token_backend: Option<TokenBackend>,
    token_requests: u64,
}

/// One input handed to the engine and every output it produced before asking for a timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptStep {
    /// Virtual time of the input (Unix ms).
    pub at_ms: u64,
    /// The input.
    pub input: Input,
    /// The outputs drained after it, ending with the [`Output::Timeout`].
    pub outputs: Vec<Output>,
}

impl Harness {
    /// A harness starting at `start_ms`.
    pub fn new(engine: Engine, tenant: SimTenant, start_ms: u64) -> Self {
        Self {
            engine,
            tenant,
            now_ms: start_ms,
            seq: 0,
            deliveries: BinaryHeap::new(),
            delivery_items: BTreeMap::new(),
            commands: BinaryHeap::new(),
            command_items: BTreeMap::new(),
            engine_deadline: None,
            events: Vec::new(),
            requests: Vec::new(),
            record_requests: false,
            started: Vec::new(),
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
    /// (but not its burst, which a client is never told).
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
        c
    }

    /// A harness running a whole generated day: the tenant knows the agents, and every planned command is
    /// scheduled at its time.
    pub fn for_workday(workday: &Workday, engine: Engine) -> Self {
        let mut tenant = SimTenant::new(workday.tenant.clone());
        for a in &workday.agents {
            tenant.add_agent(a.clone());
        }
        let start = workday.commands.first().map_or(0, |c| c.at_ms);
        let mut h = Self::new(engine, tenant, start);
        for c in &workday.commands {
            h.command_at(
                c.at_ms,
                Command::Transition {
                    user_id: c.user_id.clone(),
                    state: c.state.clone(),
                },
            );
        }
        h
    }

    /// Virtual now.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Keep a copy of every request sent (off by default; memory grows with the run).
    pub fn record_requests(&mut self, on: bool) {
        self.record_requests = on;
    }

    /// Requests sent so far with their send times, if recording.
    pub fn requests(&self) -> &[(u64, HttpRequest)] {
        &self.requests
    }

    /// Records every input and the outputs it produced (off by default), for transcript vectors.
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// The transcript so far, if recording.
    pub fn transcript(&self) -> &[TranscriptStep] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// Hands one input to the engine at the current virtual time and drains the outputs.
    pub fn feed(&mut self, input: Input) -> Option<TransitionId> {
        let recorded = self.transcript.is_some().then(|| input.clone());
        let id = self.engine.handle_input(self.now_ms, input);
        if let Some(id) = id {
            self.started.push((self.now_ms, id));
        }
        let outputs = self.engine.drain_outputs();
        if let (Some(t), Some(input)) = (&mut self.transcript, recorded) {
            t.push(TranscriptStep {
                at_ms: self.now_ms,
                input,
                outputs: outputs.clone(),
            });
        }
        self.process(outputs);
        id
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
        self.seq += 1;
        self.deliveries.push(Reverse((
            self.now_ms + self.tenant.config().latency_ms,
            self.seq,
        )));
        self.delivery_items.insert(
            self.seq,
            Delivery::Input(Input::AccessToken {
                id,
                access_token,
                expires_in_ms,
                error,
            }),
        );
    }

    /// Events so far with their times.
    pub fn events(&self) -> &[(u64, Event)] {
        &self.events
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<(u64, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Commands started by the harness so far, with their times and ids.
    pub fn started(&self) -> &[(u64, TransitionId)] {
        &self.started
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
        self.feed(Input::Command(Command::Transition {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
        }))
        .expect("commands get an id")
    }

    /// Starts a validation now and drains the engine.
    pub fn validate(&mut self, user_id: &str, state: &str) -> TransitionId {
        self.feed(Input::Command(Command::Validate {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
        }))
        .expect("commands get an id")
    }

    /// Drains the engine's outputs: requests go to the tenant, events are collected.
    pub fn drain(&mut self) {
        let outputs = self.engine.drain_outputs();
        self.process(outputs);
    }

    /// Requests go to the tenant, events are collected, the timeout is remembered.
    fn process(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Transmit(request) => {
                    let reply = self.tenant.handle_request(self.now_ms, &request);
                    let delivery = match reply.outcome {
                        SimOutcome::Response(mut r) => {
                            r.id = request.id;
                            Delivery::Response(r)
                        }
                        SimOutcome::TransportError(kind) => Delivery::Failure(request.id, kind),
                    };
                    self.seq += 1;
                    self.deliveries
                        .push(Reverse((reply.deliver_at_ms.max(self.now_ms), self.seq)));
                    self.delivery_items.insert(self.seq, delivery);
                    if self.record_requests {
                        self.requests.push((self.now_ms, request));
                    }
                }
                Output::Event(e) => {
                    if let Event::TokenRequested(t) = &e {
                        self.answer_token_request(t.request_id);
                    }
                    self.events.push((self.now_ms, e));
                }
                Output::Timeout(deadline) => self.engine_deadline = deadline,
            }
        }
    }

    /// The next virtual time anything happens.
    pub fn next_time(&self) -> Option<u64> {
        [
            self.deliveries.peek().map(|r| r.0 .0),
            self.commands.peek().map(|r| r.0 .0),
            self.engine_deadline,
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
            let input = match self.delivery_items.remove(&seq).expect("delivery exists") {
                Delivery::Response(r) => Input::Response(r),
                Delivery::Failure(id, kind) => Input::TransportError { id, kind },
                Delivery::Input(input) => input,
            };
            self.feed(input);
        }
        while let Some(&Reverse((at, seq))) = self.commands.peek() {
            if at > now {
                break;
            }
            self.commands.pop();
            let command = self.command_items.remove(&seq).expect("command exists");
            self.feed(Input::Command(command));
        }
        if self.engine_deadline.is_some_and(|d| d <= now) {
            self.feed(Input::Timeout);
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
