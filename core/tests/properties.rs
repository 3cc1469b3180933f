//! Property tests for the input side: everything the engine and the simulated tenant parse from the network.
//!
//! The engine properties drive [`Engine`] directly with a host loop written here (not through the simulated
//! tenant): every request it hands out gets an answer chosen by the strategy — a plausible 200, a random status
//! with random headers and body, a transport error, or silence — delivered after a random delay, possibly late,
//! twice, or out of order. Virtual time jumps from one event or deadline to the next.
//!
//! All runs use a fixed proptest seed, so the suite is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use cxone_agent_state_core::sim::{
    AgentPlan, ApiProfile, Endpoint, FaultKind, FaultRule, Pacer, RandomFaults, SeedProfile,
    SimConfig, SimOutcome, SimTenant, TokenFailure, Window, SIM_BASE_URL,
};
use cxone_agent_state_core::{
    http_date, iso8601, parse_retry_after, verify_chain, AgentState, AuditRecord, ChainHead,
    Engine, EngineConfig, ErrorCode, Event, HttpRequest, HttpResponse, Input, Method, Now, Output,
    RateLimit, Record, RequestId, Secret, TransitionId, TransportErrorKind, UserId,
    MAX_USER_ID_LEN,
};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use serde_json::Value;

/// 2026-01-05T08:00:00Z, the virtual start of every run.
const T0: u64 = 1_767_600_000_000;
const MINUTE: u64 = 60_000;
/// Inputs handed to the engine before a run is declared a livelock.
const MAX_INPUTS: usize = 20_000;

fn config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

fn strings(items: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    prop::sample::select(items).prop_map(str::to_owned)
}

// ---- strategies: what the network says -------------------------------------------------------------------

/// `Retry-After` values: delta-seconds, huge numbers, signed and fractional garbage, HTTP dates (past, near,
/// far, malformed) and arbitrary text.
fn retry_after_value() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => (0u64..400).prop_map(|s| s.to_string()),
        1 => strings(&[
            "18446744073709551615",
            "18446744073709552",
            "99999999999999999999999999",
            "-1",
            "+5",
            "1.5",
            "1e3",
            " 3 ",
            "",
            "soon",
            "0x10",
            "٣",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Mon, 32 Jan 2026 08:00:00 GMT",
        ]),
        2 => (-600_000i64..600_000).prop_map(|off| http_date(T0.saturating_add_signed(off))),
        1 => (0u64..(400 * 365 * 86_400_000)).prop_map(http_date),
        1 => "[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        1 => "[+-]?[0-9]{1,25}",
        1 => ".{0,24}",
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => (strings(&["Retry-After", "retry-after", "RETRY-AFTER"]), retry_after_value()),
        1 => (strings(&["icStatusDescription", "Content-Type"]), ".{0,40}"),
        1 => ("[A-Za-z-]{1,12}", ".{0,24}"),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(header(), 0..4)
}

fn json_key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => strings(&[
            "access_token",
            "expires_in",
            "status",
            "mandatoryBreakRequired",
            "error",
            "shiftEnd",
        ]),
        1 => "[a-zA-Z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        strings(&[
            "ACTIVE",
            "INACTIVE",
            "t1",
            "",
            "2026-01-05T09:00:00Z",
            "9999-12-31T23:59:59Z"
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that look like the API's but are not quite: JSON of the wrong types, truncated JSON, deep nesting,
/// arbitrary text.
fn body() -> impl Strategy<Value = String> {
    const NEAR_MISSES: &[&str] = &[
        r#"{"status":5}"#,
        r#"{"status":null}"#,
        r#"{"status":["ACTIVE"]}"#,
        r#"{"status":"ACTIVE","shiftEnd":"garbage"}"#,
        r#"{"status":"ACTIVE","shiftEnd":"9999-12-31T23:59:59Z"}"#,
        r#"{"status":"ACTIVE","shiftEnd":"1970-01-01T00:00:00Z"}"#,
        r#"{"access_token":null}"#,
        r#"{"access_token":"","expires_in":3600}"#,
        r#"{"access_token":"t","expires_in":-1}"#,
        r#"{"access_token":"t","expires_in":1e3}"#,
        r#"{"access_token":"t","expires_in":"3600"}"#,
        r#"{"access_token":"t","expires_in":18446744073709551615}"#,
        r#"{"access_token":"t","expires_in":0}"#,
        r#"{"mandatoryBreakRequired":"yes"}"#,
        r#"{"mandatoryBreakRequired":null}"#,
        r#"{"mandatoryBreakRequired":1}"#,
        r#"{"error":5}"#,
        r#"{"error":"invalid_client"}"#,
        r#"{"error":{"nested":true}}"#,
        "null",
        "[]",
        "42",
        "\"str\"",
        "{}",
        "",
        " \n\t",
    ];
    const WHOLE: &[&str] = &[
        r#"{"access_token":"t1","expires_in":3600}"#,
        r#"{"status":"ACTIVE","shiftEnd":"2026-01-05T17:00:00.000Z"}"#,
        r#"{"mandatoryBreakRequired":false}"#,
        r#"{"userId":"alice","state":"READY"}"#,
    ];
    prop_oneof![
        3 => strings(NEAR_MISSES),
        2 => (strings(WHOLE), any::<prop::sample::Index>())
            .prop_map(|(b, i)| b[..i.index(b.len())].to_owned()),
        2 => prop::collection::btree_map(json_key(), json_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => (0usize..3_000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        1 => (0usize..3_000).prop_map(|d| format!("{}1{}", r#"{"a":"#.repeat(d), "}".repeat(d))),
        1 => (0usize..20_000).prop_map(|n| format!(r#"{{"error":"{}"}}"#, "x".repeat(n))),
        2 => ".{0,64}",
    ]
}

fn transport_kind() -> impl Strategy<Value = TransportErrorKind> {
    prop::sample::select(
        &[
            TransportErrorKind::Connect,
            TransportErrorKind::Reset,
            TransportErrorKind::Timeout,
            TransportErrorKind::Other,
        ][..],
    )
}

/// How the host answers one request.
#[derive(Clone, Debug)]
enum Reply {
    /// A 200 with a body the endpoint would plausibly send; the byte picks among them.
    Plausible(u8),
    /// Any status, headers and body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// No HTTP answer.
    Transport(TransportErrorKind),
    /// No answer at all: the engine's own deadline must fire.
    Silence,
}

#[derive(Clone, Debug)]
struct Answer {
    reply: Reply,
    /// Delivery delay; beyond the request timeout the answer arrives after the engine gave up on it.
    delay_ms: u64,
    /// Deliver the same answer a second time, later.
    duplicate: bool,
}

fn delay() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..500, 1 => 0u64..15_000]
}

fn answer_with(reply: impl Strategy<Value = Reply>) -> impl Strategy<Value = Answer> {
    (reply, delay(), prop::bool::weighted(0.1)).prop_map(|(reply, delay_ms, duplicate)| Answer {
        reply,
        delay_ms,
        duplicate,
    })
}

/// Any answer at all (property 1).
fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        8 => any::<u8>().prop_map(Reply::Plausible),
        2 => (100u16..600, headers(), body())
            .prop_map(|(status, headers, body)| Reply::Status { status, headers, body }),
        1 => (200u16..300, headers(), body())
            .prop_map(|(status, headers, body)| Reply::Status { status, headers, body }),
        2 => (
            prop::sample::select(&[401u16, 429, 500, 502, 503, 504][..]),
            headers(),
            body(),
        )
            .prop_map(|(status, headers, body)| Reply::Status { status, headers, body }),
        1 => transport_kind().prop_map(Reply::Transport),
        1 => Just(Reply::Silence),
    ]
}

/// Plausible answers (weight `ok` out of `ok + 5`) with transient failures only: a healthy or flaky tenant.
fn transient_reply(ok: u32) -> impl Strategy<Value = Reply> {
    let retry_after = prop::option::of(retry_after_value());
    prop_oneof![
        ok => any::<u8>().prop_map(Reply::Plausible),
        2 => retry_after.clone().prop_map(|ra| Reply::Status {
            status: 429,
            headers: ra.into_iter().map(|v| ("Retry-After".to_owned(), v)).collect(),
            body: r#"{"error":"rate_limited"}"#.to_owned(),
        }),
        1 => retry_after.prop_map(|ra| Reply::Status {
            status: 503,
            headers: ra.into_iter().map(|v| ("Retry-After".to_owned(), v)).collect(),
            body: String::new(),
        }),
        1 => transport_kind().prop_map(Reply::Transport),
        1 => Just(Reply::Silence),
    ]
}

/// One caller command, `at_ms` after the start.
#[derive(Clone, Debug)]
struct Cmd {
    at_ms: u64,
    validate: bool,
    user: String,
    state: String,
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => strings(&["alice", "bob", "carol", "agent 7?#%é", "dave.smith"]),
        1 => strings(&["", "a/b", "..", ".", "a\\b", "x\ny", "\u{7f}", "%2e%2e"]),
        1 => Just("u".repeat(200)),
        1 => Just("é".repeat(MAX_USER_ID_LEN)),
        1 => "[a-z0-9 ./%?#\\\\-]{0,12}",
    ]
}

fn state() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => strings(&["READY", "NOT_READY", "PAUSED", "IDLE", "TRAINING"]),
        1 => strings(&["ready", "", "RE-ADY", "READY ", "_X", "9X"]),
        1 => Just("A".repeat(65)),
        1 => "[A-Za-z0-9_-]{0,8}",
    ]
}

fn command(
    users: BoxedStrategy<String>,
    states: BoxedStrategy<String>,
    span_ms: u64,
) -> impl Strategy<Value = Cmd> {
    (0..span_ms, prop::bool::weighted(0.25), users, states).prop_map(
        |(at_ms, validate, user, state)| Cmd {
            at_ms,
            validate,
            user,
            state,
        },
    )
}

// ---- the host loop ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Token,
    Schedule,
    Break,
    State,
}

/// Which endpoint a request is for; `None` for anything the seed profile should never produce.
fn classify(req: &HttpRequest) -> Option<Api> {
    let path = req.path();
    let segment = |s: &str| !s.is_empty() && !s.contains('/');
    match req.method {
        Method::Post if path == "/oauth2/token" => Some(Api::Token),
        Method::Get => {
            if let Some(seg) = path.strip_prefix("/api/v2/schedules/users/") {
                return segment(seg).then_some(Api::Schedule);
            }
            path.strip_prefix("/api/v2/breaks/users/")
                .and_then(|r| r.strip_suffix("/status"))
                .filter(|s| segment(s))
                .map(|_| Api::Break)
        }
        Method::Post => path
            .strip_prefix("/api/v2/users/")
            .and_then(|r| r.strip_suffix("/state"))
            .filter(|s| segment(s))
            .map(|_| Api::State),
    }
}

fn plausible_body(api: Api, v: u8, token_ttl_s: u64) -> String {
    match api {
        Api::Token => format!(r#"{{"access_token":"t1","expires_in":{token_ttl_s}}}"#),
        Api::Schedule => match v % 4 {
            0 => r#"{"status":"INACTIVE"}"#.to_owned(),
            1 => format!(
                r#"{{"status":"ACTIVE","shiftEnd":"{}"}}"#,
                iso8601(T0 + 8 * 60 * MINUTE)
            ),
            _ => r#"{"status":"ACTIVE"}"#.to_owned(),
        },
        // A break is rarely due, as on a real tenant.
        Api::Break => format!(r#"{{"mandatoryBreakRequired":{}}}"#, v.is_multiple_of(8)),
        Api::State => if v.is_multiple_of(2) { "{}" } else { "" }.to_owned(),
    }
}

#[derive(Clone, Debug)]
enum Delivery {
    Response(RequestId, HttpResponse),
    Failure(RequestId, TransportErrorKind),
}

/// What the host saw, in order: records and events interleaved as the engine emitted them.
#[derive(Clone, Debug)]
enum Seen {
    Audit(AuditRecord),
    Event(Event),
}

struct Host<'a> {
    engine: Engine,
    answers: &'a [Answer],
    /// `expires_in` of the plausible token answers: a property of the tenant.
    token_ttl_s: u64,
    next_answer: usize,
    now_ms: u64,
    seq: u64,
    deliveries: BTreeMap<(u64, u64), Delivery>,
    deadline: Option<u64>,
    events: Vec<Seen>,
    sends: Vec<(u64, HttpRequest)>,
    started: Vec<(TransitionId, Cmd)>,
    inputs: usize,
    request_ids: BTreeSet<RequestId>,
    /// Requests the seed profile should never produce, or with a reused id.
    strange: Vec<String>,
}

impl<'a> Host<'a> {
    fn new(config: EngineConfig, answers: &'a [Answer]) -> Self {
        Self {
            engine: Engine::new(config).expect("valid config"),
            answers,
            token_ttl_s: 3600,
            next_answer: 0,
            now_ms: T0,
            seq: 0,
            deliveries: BTreeMap::new(),
            deadline: None,
            events: Vec::new(),
            sends: Vec::new(),
            started: Vec::new(),
            inputs: 0,
            request_ids: BTreeSet::new(),
            strange: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) {
        self.inputs += 1;
        self.engine.handle_input(input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            match self.engine.poll_output() {
                Output::Transmit(t) => self.answer(t.id, t.request),
                Output::Persist(Record::Audit(r)) => self.events.push(Seen::Audit(r)),
                Output::Persist(_) => {}
                Output::Event(e) => self.events.push(Seen::Event(e)),
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    return;
                }
            }
        }
    }

    fn answer(&mut self, id: RequestId, req: HttpRequest) {
        let a = &self.answers[self.next_answer % self.answers.len()];
        self.next_answer += 1;
        let api = classify(&req);
        if api.is_none() || !self.request_ids.insert(id) {
            self.strange.push(format!("{req:?}"));
        }
        let response = |status, headers, body| {
            Delivery::Response(
                id,
                HttpResponse {
                    status,
                    headers,
                    body,
                },
            )
        };
        let delivery = match (&a.reply, api) {
            (Reply::Silence, _) => None,
            (Reply::Transport(kind), _) => Some(Delivery::Failure(id, *kind)),
            (Reply::Plausible(v), Some(api)) => Some(response(
                200,
                vec![],
                plausible_body(api, *v, self.token_ttl_s),
            )),
            (Reply::Plausible(_), None) => Some(response(404, vec![], String::new())),
            (
                Reply::Status {
                    status,
                    headers,
                    body,
                },
                _,
            ) => Some(response(*status, headers.clone(), body.clone())),
        };
        let at = self.now_ms + a.delay_ms;
        if let Some(d) = delivery {
            if a.duplicate {
                self.push(at + 1 + a.delay_ms, d.clone());
            }
            self.push(at, d);
        }
        self.sends.push((self.now_ms, req));
    }

    fn push(&mut self, at: u64, d: Delivery) {
        self.seq += 1;
        self.deliveries.insert((at, self.seq), d);
    }

    /// Runs until nothing is left to do. `false` if that did not happen within [`MAX_INPUTS`] inputs.
    fn run(&mut self, commands: &[Cmd]) -> bool {
        let mut cmds = commands.to_vec();
        cmds.sort_by_key(|c| c.at_ms);
        let mut next_cmd = 0;
        self.drain();
        while self.inputs < MAX_INPUTS {
            let next = [
                self.deliveries.keys().next().map(|k| k.0),
                cmds.get(next_cmd).map(|c| T0 + c.at_ms),
                self.deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return true;
            };
            self.now_ms = self.now_ms.max(next);
            let now = Now::at(self.now_ms);
            while let Some(entry) = self.deliveries.first_entry() {
                if entry.key().0 > self.now_ms {
                    break;
                }
                let input = match entry.remove() {
                    Delivery::Response(id, response) => Input::Response { now, id, response },
                    Delivery::Failure(id, kind) => Input::TransportError { now, id, kind },
                };
                self.feed(input);
            }
            while let Some(c) = cmds.get(next_cmd).filter(|c| T0 + c.at_ms <= self.now_ms) {
                let c = c.clone();
                next_cmd += 1;
                self.inputs += 1;
                let id = if c.validate {
                    self.engine.validate(now, &c.user, &c.state)
                } else {
                    self.engine.transition(now, &c.user, &c.state)
                };
                self.drain();
                self.started
                    .push((id.expect("the queue is far from full"), c));
            }
            if self.deadline.is_some_and(|d| d <= self.now_ms) {
                self.feed(Input::Timeout { now });
            }
        }
        false
    }

    fn audit_records(&self) -> Vec<&AuditRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Seen::Audit(r) => Some(r),
                Seen::Event(_) => None,
            })
            .collect()
    }
}

fn engine_config(seed: u64, per_minute: u32) -> EngineConfig {
    let mut c = EngineConfig::new("https://tenant.example", "client", Secret::new("secret"));
    c.seed = seed;
    c.rate_limit = RateLimit {
        per_minute,
        burst: None,
    };
    c
}

/// The code a command with malformed input must fail with, if its input is malformed.
fn input_error(c: &Cmd) -> Option<ErrorCode> {
    if UserId::parse(&c.user).is_err() {
        Some(ErrorCode::InvalidUserId)
    } else if AgentState::parse(&c.state).is_err() {
        Some(ErrorCode::InvalidState)
    } else {
        None
    }
}

/// Raw input is recorded as given, or cut after 128 characters with a marker (never at any length).
fn as_recorded(given: &str, recorded: &str) -> bool {
    if given.chars().count() <= 128 {
        return given == recorded;
    }
    let kept: String = given.chars().take(128).collect();
    recorded.starts_with(&kept)
        && recorded.contains("[truncated: ")
        && recorded.len() < kept.len() + 40
}

fn code_round_trips(code: ErrorCode) -> Result<(), TestCaseError> {
    prop_assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
    Ok(())
}

/// Every command ends in exactly one terminal event of its kind, each transition's preceded by its audit record
/// (with at most a policy-violation event between them), and the audit chain verifies.
fn check_outcomes(host: &Host<'_>) -> Result<(), TestCaseError> {
    let commands: BTreeMap<TransitionId, &Cmd> =
        host.started.iter().map(|(id, c)| (*id, c)).collect();
    prop_assert_eq!(commands.len(), host.started.len(), "command ids are unique");

    let mut terminal: BTreeMap<TransitionId, usize> = BTreeMap::new();
    let mut audits = 0;
    for (i, seen) in host.events.iter().enumerate() {
        let e = match seen {
            Seen::Audit(_) => {
                audits += 1;
                continue;
            }
            Seen::Event(e) => e,
        };
        let (id, validation) = match e {
            Event::StateChanged(s) => (s.transition_id, false),
            Event::TransitionFailed(f) => (f.transition_id, false),
            Event::ValidationCompleted(v) => (v.transition_id, true),
            _ => continue,
        };
        *terminal.entry(id).or_default() += 1;
        let Some(cmd) = commands.get(&id) else {
            return Err(TestCaseError::fail(format!(
                "terminal event for unknown command: {e:?}"
            )));
        };
        prop_assert_eq!(
            cmd.validate,
            validation,
            "wrong kind of terminal event: {:?}",
            e
        );
        match e {
            Event::ValidationCompleted(v) => {
                prop_assert_eq!(v.valid, v.error.is_none());
                prop_assert_eq!(v.valid, v.reason_code.is_some());
                if let Some(err) = &v.error {
                    code_round_trips(err.code)?;
                }
                if let Some(code) = input_error(cmd) {
                    prop_assert_eq!(v.error.as_ref().map(|e| e.code), Some(code));
                }
            }
            _ => {
                let before = host.events[..i]
                    .iter()
                    .rev()
                    .find(|s| !matches!(s, Seen::Event(Event::PolicyViolation(_))));
                let Some(Seen::Audit(r)) = before else {
                    return Err(TestCaseError::fail(format!(
                        "no audit record right before {e:?}"
                    )));
                };
                prop_assert!(
                    as_recorded(&cmd.user, &r.user_id),
                    "{:?} → {:?}",
                    cmd.user,
                    r.user_id
                );
                prop_assert!(
                    as_recorded(&cmd.state, &r.new_state),
                    "{:?} → {:?}",
                    cmd.state,
                    r.new_state
                );
                match e {
                    Event::StateChanged(s) => {
                        prop_assert!(r.success && r.error_code.is_none(), "{:?}", r);
                        prop_assert!(input_error(cmd).is_none());
                        prop_assert_eq!(&s.new_state, &cmd.state);
                    }
                    Event::TransitionFailed(f) => {
                        prop_assert!(!r.success);
                        prop_assert_eq!(r.error_code, Some(f.error.code));
                        code_round_trips(f.error.code)?;
                        if let Some(code) = input_error(cmd) {
                            prop_assert_eq!(f.error.code, code);
                            prop_assert_eq!(f.attempts, 0);
                        }
                        // A policy refusal is never recorded for a change that was sent.
                        if f.policy_violation {
                            prop_assert!(r.idempotency_key.is_none(), "{:?}", r);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
    for (id, cmd) in &commands {
        prop_assert_eq!(
            terminal.get(id).copied().unwrap_or(0),
            1,
            "command {:?} ({:?}) must end in exactly one terminal event",
            id,
            cmd
        );
    }
    let transitions = commands.values().filter(|c| !c.validate).count();
    prop_assert_eq!(audits, transitions, "one audit record per transition");

    let records = host.audit_records();
    let head = verify_chain(ChainHead::default(), records.iter().copied());
    prop_assert_eq!(
        head.as_ref().ok(),
        Some(host.engine.chain_head()),
        "{:?}",
        head
    );
    Ok(())
}

// ---- property 1: random answers never panic and never lose a transition -------------------------------------

proptest! {
    #![proptest_config(config(128, 0x5eed_0001))]

    #[test]
    fn random_answers_never_lose_a_transition(
        seed in any::<u64>(),
        // Slow limits included: a pacer interval longer than the engine's timers is where work can starve.
        per_minute in prop_oneof![2 => Just(100u32), 1 => 1u32..=3, 1 => 1u32..=600],
        // The tenant's token lifetime, usually CXone's hour, sometimes short.
        token_ttl_s in prop_oneof![2 => Just(3600u64), 1 => 1u64..=120],
        commands in prop::collection::vec(
            command(user().boxed(), state().boxed(), 2 * MINUTE),
            1..32,
        ),
        // Anything at all, or a flaky or healthy tenant (whose answers end fewer transitions early).
        answers in prop_oneof![
            2 => prop::collection::vec(answer_with(any_reply()), 1..48),
            1 => prop::collection::vec(answer_with(transient_reply(6)), 1..48),
            1 => prop::collection::vec(answer_with(transient_reply(40)), 1..48),
        ],
    ) {
        let mut host = Host::new(engine_config(seed, per_minute), &answers);
        host.token_ttl_s = token_ttl_s;
        let quiesced = host.run(&commands);
        prop_assert!(
            quiesced,
            "no quiescence after {} inputs: virtual time +{} ms, {} unfinished, {} in flight, {} requests sent, the last: {:?}",
            host.inputs,
            host.now_ms - T0,
            host.engine.open_changes(),
            host.engine.in_flight(),
            host.sends.len(),
            host.sends
                .iter()
                .rev()
                .take(4)
                .map(|(t, r)| format!("+{} ms {} {}", t - T0, r.method.as_str(), r.path()))
                .collect::<Vec<_>>()
        );
        prop_assert!(host.strange.is_empty(), "unexpected requests: {:?}", host.strange);
        prop_assert_eq!(host.engine.open_changes(), 0);
        prop_assert_eq!(host.engine.in_flight(), 0);
        prop_assert_eq!(host.engine.next_deadline(), None);
        check_outcomes(&host)?;
    }
}

// ---- property 2: the client never exceeds its own rate limit ------------------------------------------------

proptest! {
    #![proptest_config(config(64, 0x5eed_0002))]

    #[test]
    fn sends_never_exceed_the_rate_limit(
        seed in any::<u64>(),
        per_minute in prop_oneof![1 => 1u32..=10, 2 => 1u32..=600],
        commands in prop::collection::vec(
            command(
                strings(&["alice", "bob", "carol", "dave", "erin"]).boxed(),
                strings(&["READY", "NOT_READY", "PAUSED", "TRAINING"]).boxed(),
                5 * MINUTE,
            ),
            1..40,
        ),
        answers in prop::collection::vec(answer_with(transient_reply(6)), 1..48),
    ) {
        let mut host = Host::new(engine_config(seed, per_minute), &answers);
        // Quiescence is property 1's business; the rate bound must hold for whatever was sent.
        host.run(&commands);
        let times: Vec<u64> = host.sends.iter().map(|(t, _)| *t).collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));

        let limit = RateLimit { per_minute, burst: None };
        let mut bucket = Pacer::new(&limit);
        for (i, &t) in times.iter().enumerate() {
            let admitted = bucket.try_acquire(t);
            prop_assert!(
                admitted.is_ok(),
                "send #{} at +{} ms exceeds {}/min (next token at +{} ms)",
                i,
                t - T0,
                per_minute,
                admitted.err().unwrap_or(0).saturating_sub(T0)
            );
        }

        let burst = u64::from(per_minute);
        let allowed = burst + u64::from(per_minute);
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] > MINUTE {
                start += 1;
            }
            let in_window = (end - start + 1) as u64;
            prop_assert!(
                in_window <= allowed,
                "{} sends in the minute ending at +{} ms (limit {})",
                in_window,
                times[end] - T0,
                allowed
            );
        }
    }
}

// ---- property 3: the seed profile's parsers and Retry-After never panic ----------------------------------------

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![3 => 200u16..300, 3 => 100u16..600, 1 => any::<u16>()]
}

proptest! {
    #![proptest_config(config(256, 0x5eed_0003))]

    #[test]
    fn seed_profile_parsers_never_panic(status in status(), headers in headers(), body in body()) {
        let r = HttpResponse { status, headers, body };
        let json: Option<Value> = serde_json::from_str(&r.body).ok();
        let ok_status = (200..300).contains(&status);

        match SeedProfile.parse_token(&r) {
            Ok(t) => {
                prop_assert!(ok_status);
                let v = json.as_ref().expect("a token came from JSON");
                prop_assert!(!t.access_token.is_empty());
                prop_assert_eq!(v.get("access_token").and_then(Value::as_str), Some(t.access_token.expose()));
                let secs = v.get("expires_in").and_then(Value::as_u64).expect("expires_in");
                prop_assert_eq!(t.expires_in_ms, secs.saturating_mul(1000));
            }
            Err(TokenFailure::Refused(m)) => {
                prop_assert!(!ok_status && json.is_some(), "refused: {}", m);
            }
            Err(TokenFailure::Malformed(_)) => prop_assert!(ok_status || json.is_none()),
        }

        let status_field = json.as_ref().and_then(|v| v.get("status")).and_then(Value::as_str);
        match SeedProfile.parse_schedule(&r) {
            Ok(a) => prop_assert_eq!(Some(a.scheduled), status_field.map(|s| s == "ACTIVE")),
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::BadResponse);
                prop_assert!(status_field.is_none());
                code_round_trips(e.code)?;
            }
        }

        let expected = json
            .as_ref()
            .and_then(|v| v.get("mandatoryBreakRequired"))
            .and_then(Value::as_bool)
            .ok_or(ErrorCode::BadResponse);
        prop_assert_eq!(SeedProfile.parse_break(&r).map(|b| b.required).map_err(|e| e.code), expected);

        let expected = if r.body.trim().is_empty() || json.is_some() {
            Ok(())
        } else {
            Err(ErrorCode::BadResponse)
        };
        prop_assert_eq!(SeedProfile.parse_state(&r).map_err(|e| e.code), expected);
    }

    #[test]
    fn retry_after_only_accepts_digits_or_dates(
        value in prop_oneof![3 => retry_after_value(), 1 => any::<String>()],
        now_ms in prop_oneof![Just(T0), any::<u64>()],
    ) {
        let got = parse_retry_after(&value, now_ms);
        let v = value.trim();
        let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        let date = httpdate::parse_http_date(v).ok();
        if let Some(ms) = got {
            prop_assert!(
                digits || date.is_some(),
                "{:?} is neither delta-seconds nor an HTTP date, yet gave a delay of {} ms",
                value,
                ms
            );
        }
        if digits {
            if let Ok(secs) = v.parse::<u64>() {
                prop_assert_eq!(got, Some(secs.saturating_mul(1000)));
            }
        }
        if let (false, Some(at)) = (digits, date) {
            let at_ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            prop_assert_eq!(got, Some(at_ms.saturating_sub(now_ms)));
        }
    }
}

// ---- property 4: user ids and state names -----------------------------------------------------------------------

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `^[A-Z][A-Z0-9_]{0,63}$`
fn state_shape(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

proptest! {
    #![proptest_config(config(256, 0x5eed_0004))]

    #[test]
    fn user_ids_encode_to_one_safe_segment(
        id in prop_oneof![
            2 => any::<String>(),
            2 => "[a-zA-Z0-9 ./\\\\%?#~_:@!$&'()*+,;=-]{0,12}",
            1 => "[.]{1,4}",
            1 => ".{120,135}",
            1 => user(),
        ],
    ) {
        match UserId::parse(&id) {
            Ok(u) => {
                prop_assert_eq!(u.as_str(), id.as_str());
                let seg = u.path_segment();
                for bad in ["/", "?", "#", ".."] {
                    prop_assert!(!seg.contains(bad), "{:?} -> {:?} contains {:?}", id, seg, bad);
                }
                prop_assert!(seg != ".", "{:?} is a dot segment", id);
                let b = seg.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        prop_assert!(
                            i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit(),
                            "{:?} -> {:?}: bad escape at {}",
                            id,
                            seg,
                            i
                        );
                        i += 3;
                    } else {
                        prop_assert!(is_unreserved(b[i]), "{:?} -> {:?}: raw {:?}", id, seg, b[i] as char);
                        i += 1;
                    }
                }
                let decoded = percent_encoding::percent_decode_str(&seg).decode_utf8();
                prop_assert_eq!(decoded.as_deref().ok(), Some(id.as_str()), "segment decodes back");
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::InvalidUserId);
                let plausible = !id.is_empty()
                    && id.chars().count() <= MAX_USER_ID_LEN
                    && !id.chars().any(char::is_control)
                    && !id.contains(['/', '\\'])
                    && !id.contains("..")
                    && id != ".";
                prop_assert!(!plausible, "{:?} rejected: {}", id, e);
            }
        }
    }

    #[test]
    fn state_names_match_the_documented_shape(
        name in prop_oneof![
            2 => any::<String>(),
            2 => "[A-Za-z0-9_ -]{0,70}",
            2 => "[A-Z][A-Z0-9_]{0,63}",
            1 => "[A-Z][A-Z0-9_]{63,66}",
            1 => state(),
        ],
    ) {
        match AgentState::parse(&name) {
            Ok(s) => {
                prop_assert!(state_shape(&name), "{:?} accepted", name);
                prop_assert_eq!(s.as_str(), name.as_str());
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::InvalidState);
                prop_assert!(!state_shape(&name), "{:?} rejected: {}", name, e);
            }
        }
    }
}

// ---- property 5: the simulated tenant never panics on arbitrary requests ------------------------------------------

/// Stands for the bearer token the tenant issued at the start of the run.
const ISSUED: &str = "<issued>";

#[derive(Clone, Debug)]
struct RawRequest {
    post: bool,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    advance_ms: u64,
}

fn sim_url() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        3 => strings(&["alice", "bob", "nobody", "%", "%FF", "%2F", "a%2Fb", "%C3%A9", "%C3", "", "..", "a/b"]),
        1 => ".{0,12}",
    ];
    let path = prop_oneof![
        2 => strings(&["/oauth2/token", "/oauth2/token/", "/", "", "/api/v2/users//state"]),
        2 => seg.clone().prop_map(|s| format!("/api/v2/schedules/users/{s}")),
        2 => seg.clone().prop_map(|s| format!("/api/v2/breaks/users/{s}/status")),
        2 => seg.prop_map(|s| format!("/api/v2/users/{s}/state")),
        1 => ".{0,40}",
    ];
    let prefix = strings(&[
        SIM_BASE_URL,
        SIM_BASE_URL,
        "",
        "https://other.example",
        "://",
        "https://sim.invalid?x=",
    ]);
    let query = strings(&["", "", "?a=1", "?", "#frag"]);
    (prefix, path, query).prop_map(|(p, a, q)| format!("{p}{a}{q}"))
}

fn sim_header() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => Just(("Authorization".to_owned(), format!("Bearer {ISSUED}"))),
        1 => (strings(&["Authorization", "authorization"]), strings(&["Bearer ", "Bearer", "", "Basic x", "Bearer simtok-0"])),
        2 => (strings(&["Idempotency-Key", "idempotency-key"]), strings(&["k1", "k2", "", "é"])),
        1 => ("[A-Za-z-]{1,12}", ".{0,24}"),
    ]
}

fn sim_body() -> impl Strategy<Value = Option<String>> {
    let form_part = prop_oneof![
        strings(&[
            "grant_type=client_credentials",
            "client_id=sim-client",
            "client_secret=sim-secret"
        ]),
        strings(&[
            "client_id=%FF",
            "client_secret=%",
            "=",
            "&&",
            "grant_type",
            "a+b=c%2",
            "client_id=sim%2Dclient"
        ]),
        "[a-z_%+=&0-9A-F]{0,16}",
    ];
    prop::option::of(prop_oneof![
        2 => prop::collection::vec(form_part, 0..5).prop_map(|p| p.join("&")),
        2 => (state(), prop::option::of(".{0,8}")).prop_map(|(s, r)| {
            serde_json::json!({ "state": s, "reasonCode": r }).to_string()
        }),
        2 => body(),
    ])
}

fn sim_request() -> impl Strategy<Value = RawRequest> {
    (
        any::<bool>(),
        sim_url(),
        prop::collection::vec(sim_header(), 0..4),
        sim_body(),
        prop_oneof![3 => 0u64..2_000, 1 => 0u64..(2 * 60 * MINUTE)],
    )
        .prop_map(|(post, url, headers, body, advance_ms)| RawRequest {
            post,
            url,
            headers,
            body,
            advance_ms,
        })
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        (any::<u16>(), prop::option::of(any::<u64>())).prop_map(|(status, retry_after_s)| {
            FaultKind::Status {
                status,
                retry_after_s,
            }
        }),
        any::<u64>().prop_map(|retry_after_s| FaultKind::RateLimit { retry_after_s }),
        any::<u64>().prop_map(|extra_ms| FaultKind::Slow { extra_ms }),
        Just(FaultKind::Malformed),
        Just(FaultKind::DropBefore),
        Just(FaultKind::DropAfter),
        Just(FaultKind::Unauthorized),
    ]
}

fn fault_rule() -> impl Strategy<Value = FaultRule> {
    let endpoint = prop::option::of(prop::sample::select(
        &[
            Endpoint::Token,
            Endpoint::Schedule,
            Endpoint::BreakStatus,
            Endpoint::SetState,
        ][..],
    ));
    (
        endpoint,
        prop::option::of(strings(&["alice", "bob", "nobody"])),
        fault_kind(),
        0u32..3,
    )
        .prop_map(|(endpoint, user_id, fault, times)| FaultRule {
            endpoint,
            user_id,
            fault,
            times,
        })
}

fn sim_config() -> impl Strategy<Value = SimConfig> {
    (
        any::<u64>(),
        prop_oneof![Just(3600u64), any::<u64>()],
        1u32..=600,
        1u32..=100,
        prop_oneof![Just(40u64), any::<u64>()],
        prop_oneof![Just(20u64), any::<u64>()],
        prop_oneof![Just(300_000u64), any::<u64>()],
        0.0f64..1.0,
        prop::collection::vec(fault_kind(), 0..4),
    )
        .prop_map(
            |(seed, token_ttl_s, rate, burst, latency_ms, jitter, notice, rate_f, kinds)| {
                SimConfig {
                    seed,
                    token_ttl_s,
                    rate_per_minute: rate,
                    burst,
                    latency_ms,
                    latency_jitter_ms: jitter,
                    break_notice_ms: notice,
                    faults: RandomFaults {
                        rate: rate_f,
                        kinds,
                    },
                    ..SimConfig::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(config(256, 0x5eed_0005))]

    #[test]
    fn sim_tenant_never_panics_on_arbitrary_requests(
        sim in sim_config(),
        rules in prop::collection::vec(fault_rule(), 0..4),
        requests in prop::collection::vec(sim_request(), 1..24),
    ) {
        let hour = 60 * MINUTE;
        let mut tenant = SimTenant::new(sim.clone());
        tenant.add_agent(AgentPlan {
            user_id: "alice".into(),
            shifts: vec![Window { start_ms: T0 - hour, end_ms: T0 + 10 * hour }],
            breaks: vec![Window { start_ms: T0 + hour, end_ms: T0 + 2 * hour }],
            ..AgentPlan::default()
        });
        tenant.add_agent(AgentPlan { user_id: "bob".into(), shifts: vec![], breaks: vec![], ..AgentPlan::default() });

        // A real token first, so authenticated paths are reached.
        let mut now = T0;
        let token_request = HttpRequest {
            method: Method::Post,
            url: format!("{SIM_BASE_URL}/oauth2/token"),
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
            body: Some(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                sim.client_id, sim.client_secret
            )),
            timeout_ms: 10_000,
        };
        let mut responses = 0u64;
        let issued = match tenant.handle_request(now, &token_request).outcome {
            SimOutcome::Response(r) => {
                responses += 1;
                serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("access_token")?.as_str().map(str::to_owned))
            }
            SimOutcome::TransportError(_) => None,
        }
        .unwrap_or_default();
        for rule in rules {
            tenant.script_fault(rule);
        }

        for raw in &requests {
            now += raw.advance_ms;
            let request = HttpRequest {
                method: if raw.post { Method::Post } else { Method::Get },
                url: raw.url.clone(),
                headers: raw
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.replace(ISSUED, &issued)))
                    .collect(),
                body: raw.body.clone(),
                timeout_ms: 10_000,
            };
            let reply = tenant.handle_request(now, &request);
            prop_assert!(reply.deliver_at_ms >= now, "answer before the request: {:?}", reply);
            if let SimOutcome::Response(r) = &reply.outcome {
                responses += 1;
                if r.status == 200 && r.header("Idempotent-Replayed").is_none() {
                    // Only a Malformed fault answers 200 with a body that is not JSON.
                    let parsed = serde_json::from_str::<Value>(&r.body);
                    prop_assert!(parsed.is_ok() || r.body == "{\"status\": \"ACT", "{:?}", r);
                }
            }
        }

        let truth = tenant.ground_truth();
        let total = requests.len() as u64 + 1;
        prop_assert_eq!(truth.total_requests, total);
        prop_assert_eq!(truth.requests_by_endpoint.values().sum::<u64>(), total);
        prop_assert_eq!(truth.responses_by_status.values().sum::<u64>(), responses);
        prop_assert_eq!(tenant.accepted_changes().len() as u64, truth.state_changes_accepted);
        for (_, user, state) in tenant.accepted_changes() {
            prop_assert!(user == "alice" || user == "bob", "change for unknown user {:?}", user);
            prop_assert!(AgentState::parse(state).is_ok(), "malformed state {:?} applied", state);
        }
    }
}
