//! Cross-host test support: the shared JSON vectors in `tests/vectors/` and their replay.
//!
//! The same files are replayed natively (`cargo test -p cxone-agent-state-tests`), in wasm (Node and
//! headless Chromium) and from JS. Each vector has an `id`; every failure names it.
//!
//! The vectors are embedded with `include_str!`, so a wasm build needs no file system.

use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, Harness, PolicyDecision, SimConfig, SimTenant,
    TranscriptStep, Window, SIM_WEBHOOK_URL, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    verify_chain, AgentState, AuditRecord, ChainHead, Engine, EngineConfig, Output, ProfileKind,
    ReasonCodeTable, Record, RetryPolicy, Secret, UserId, WebhookConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `reason_codes.json`: state name → reason code or `INVALID_STATE`.
pub const REASON_CODES: &str = include_str!("../vectors/reason_codes.json");
/// `user_ids.json`: user id → path segment or `INVALID_USER_ID`.
pub const USER_IDS: &str = include_str!("../vectors/user_ids.json");
/// `policy.json`: (target, scheduled, break required) → decision.
pub const POLICY: &str = include_str!("../vectors/policy.json");
/// `retry_delays.json`: the retry schedule drawn from a seed.
pub const RETRY_DELAYS: &str = include_str!("../vectors/retry_delays.json");
/// `audit_chain.json`: canonical encodings, hashes and tampering.
pub const AUDIT_CHAIN: &str = include_str!("../vectors/audit_chain.json");
/// `transcripts.json`: full engine transcripts (inputs with times, and every output).
pub const TRANSCRIPTS: &str = include_str!("../vectors/transcripts.json");
/// `adherence.json`: hand-computed adherence and conformance (schedule, timeline, window → figures).
pub const ADHERENCE: &str = include_str!("../vectors/adherence.json");

/// Every vector file with its name, for hosts that replay them all.
pub const ALL: [(&str, &str); 7] = [
    ("reason_codes.json", REASON_CODES),
    ("user_ids.json", USER_IDS),
    ("policy.json", POLICY),
    ("retry_delays.json", RETRY_DELAYS),
    ("audit_chain.json", AUDIT_CHAIN),
    ("transcripts.json", TRANSCRIPTS),
    ("adherence.json", ADHERENCE),
];

/// One failed vector: its id and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The vector's `id`.
    pub id: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vector {}: {}", self.id, self.message)
    }
}

fn fail(id: &str, message: impl Into<String>) -> Failure {
    Failure {
        id: id.to_owned(),
        message: message.into(),
    }
}

fn check(id: &str, ok: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(fail(id, message()))
    }
}

fn parse<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Failure> {
    serde_json::from_str(text).map_err(|e| fail(file, format!("unreadable vector file: {e}")))
}

/// The vectors a file holds, replayed: `Ok(count)` or the first failure.
pub fn replay_file(name: &str, text: &str) -> Result<usize, Failure> {
    match name {
        "reason_codes.json" => replay_reason_codes(text),
        "user_ids.json" => replay_user_ids(text),
        "policy.json" => replay_policy(text),
        "retry_delays.json" => replay_retry_delays(text),
        "audit_chain.json" => replay_audit_chain(text),
        "transcripts.json" => replay_transcripts(text),
        "adherence.json" => replay_adherence(text),
        other => Err(fail(other, "unknown vector file")),
    }
}

/// Replays every embedded vector file; returns how many vectors passed.
pub fn replay_all() -> Result<usize, Failure> {
    ALL.iter().map(|(name, text)| replay_file(name, text)).sum()
}

// ---- reason codes --------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasonCodeFile {
    /// A custom table for the vectors that name it.
    custom_table: ReasonCodeTable,
    cases: Vec<ReasonCodeCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasonCodeCase {
    id: String,
    state: String,
    #[serde(default)]
    custom: bool,
    reason_code: Option<String>,
    error: Option<String>,
}

/// Replays `reason_codes.json`.
pub fn replay_reason_codes(text: &str) -> Result<usize, Failure> {
    let file: ReasonCodeFile = parse("reason_codes.json", text)?;
    let default = ReasonCodeTable::default();
    for c in &file.cases {
        let table = if c.custom {
            &file.custom_table
        } else {
            &default
        };
        let got = AgentState::parse(&c.state).map(|s| table.reason_for(&s).to_owned());
        match got {
            Ok(code) => check(
                &c.id,
                c.reason_code.as_deref() == Some(code.as_str()),
                || {
                    format!(
                        "got reason code {code}, expected {:?}/{:?}",
                        c.reason_code, c.error
                    )
                },
            )?,
            Err(e) => check(&c.id, c.error.as_deref() == Some(e.code.as_str()), || {
                format!(
                    "got error {}, expected {:?}/{:?}",
                    e.code, c.reason_code, c.error
                )
            })?,
        }
    }
    Ok(file.cases.len())
}

// ---- user ids ------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdCase {
    id: String,
    user_id: String,
    path_segment: Option<String>,
    error: Option<String>,
}

/// Replays `user_ids.json`.
pub fn replay_user_ids(text: &str) -> Result<usize, Failure> {
    let cases: Vec<UserIdCase> = parse("user_ids.json", text)?;
    for c in &cases {
        match UserId::parse(&c.user_id) {
            Ok(u) => {
                let seg = u.path_segment();
                check(
                    &c.id,
                    c.path_segment.as_deref() == Some(seg.as_str()),
                    || {
                        format!(
                            "got segment {seg}, expected {:?}/{:?}",
                            c.path_segment, c.error
                        )
                    },
                )?
            }
            Err(e) => check(&c.id, c.error.as_deref() == Some(e.code.as_str()), || {
                format!(
                    "got error {}, expected {:?}/{:?}",
                    e.code, c.path_segment, c.error
                )
            })?,
        }
    }
    Ok(cases.len())
}

// ---- policy --------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyCase {
    id: String,
    state: String,
    scheduled: bool,
    break_required: Option<bool>,
    decision: PolicyDecision,
}

/// Replays `policy.json`.
pub fn replay_policy(text: &str) -> Result<usize, Failure> {
    let cases: Vec<PolicyCase> = parse("policy.json", text)?;
    for c in &cases {
        let state = AgentState::parse(&c.state).map_err(|e| fail(&c.id, e.to_string()))?;
        let got = PolicyDecision::evaluate(&state, c.scheduled, c.break_required);
        check(&c.id, got == c.decision, || {
            format!("got {got:?}, expected {:?}", c.decision)
        })?;
    }
    Ok(cases.len())
}

// ---- retry delays --------------------------------------------------------------------------------------

/// `retry_delays.json`: decisions drawn in order from one seeded generator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryVector {
    /// The vector's id.
    pub id: String,
    /// The generator's seed.
    pub seed: u64,
    /// The schedule.
    pub policy: RetryPolicy,
    /// Decisions in the order they are drawn.
    pub draws: Vec<RetryDraw>,
}

/// One retry decision.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryDraw {
    /// The retry number, from 1.
    pub retry: u32,
    /// A server's `Retry-After`, in ms.
    pub retry_after_ms: Option<u64>,
    /// The delay, or `None` to give up.
    pub delay_ms: Option<u64>,
}

/// Replays `retry_delays.json`, and checks each delay against the reference formula too:
/// `min(base·2^n, cap) + jitter[0, jitter_ms)`.
pub fn replay_retry_delays(text: &str) -> Result<usize, Failure> {
    let vectors: Vec<RetryVector> = parse("retry_delays.json", text)?;
    for v in &vectors {
        let plan: Vec<(u32, Option<u64>)> = v
            .draws
            .iter()
            .map(|d| (d.retry, d.retry_after_ms))
            .collect();
        let got = v.policy.draw_delays(v.seed, &plan);
        for (i, (d, got)) in v.draws.iter().zip(got).enumerate() {
            check(&v.id, got == d.delay_ms, || {
                format!("draw {i}: got {got:?}, expected {:?}", d.delay_ms)
            })?;
            if let (Some(ms), None) = (got, d.retry_after_ms) {
                let step = v
                    .policy
                    .base_ms
                    .saturating_mul(1 << d.retry)
                    .min(v.policy.cap_ms);
                let ok = (step..step + v.policy.jitter_ms.max(1)).contains(&ms);
                check(&v.id, ok, || {
                    format!("draw {i}: {ms} ms is outside min(base·2^n, cap) + jitter")
                })?;
            }
        }
    }
    Ok(vectors.len())
}

/// Builds the retry vectors from the implementation (used to write the file).
pub fn generate_retry_delays() -> Vec<RetryVector> {
    let mut out = Vec::new();
    let draws_for = |policy: &RetryPolicy, seed: u64, plan: &[(u32, Option<u64>)]| {
        plan.iter()
            .zip(policy.draw_delays(seed, plan))
            .map(|(&(retry, retry_after_ms), delay_ms)| RetryDraw {
                retry,
                retry_after_ms,
                delay_ms,
            })
            .collect::<Vec<_>>()
    };
    let reference = RetryPolicy::default();
    let plan = [(1, None), (2, None), (3, None), (4, None)];
    for seed in [1, 42, 20260105] {
        out.push(RetryVector {
            id: format!("retry-reference-seed-{seed}"),
            seed,
            draws: draws_for(&reference, seed, &plan),
            policy: reference.clone(),
        });
    }
    let plan = [(1, Some(7_000)), (2, Some(500)), (3, Some(400_000))];
    out.push(RetryVector {
        id: "retry-after-honoured".into(),
        seed: 9,
        draws: draws_for(&reference, 9, &plan),
        policy: reference.clone(),
    });
    let capped = RetryPolicy {
        max_retries: 8,
        cap_ms: 10_000,
        ..RetryPolicy::default()
    };
    let plan: Vec<_> = (1..=9).map(|r| (r, None)).collect();
    out.push(RetryVector {
        id: "retry-capped".into(),
        seed: 5,
        draws: draws_for(&capped, 5, &plan),
        policy: capped,
    });
    out
}

// ---- audit chain ---------------------------------------------------------------------------------------

/// `audit_chain.json`: a chain, each record's canonical encoding, and tamperings that must be caught.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVector {
    /// The vector's id.
    pub id: String,
    /// The records, chained from the genesis hash.
    pub records: Vec<AuditRecord>,
    /// Each record's canonical encoding (what its hash covers).
    pub canonical: Vec<String>,
    /// Edits that verification must catch.
    pub tamperings: Vec<Tampering>,
}

/// One edit of a chain and the first index verification must name.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tampering {
    /// What is done.
    pub description: String,
    /// `"edit"` (set `field` of record `index` to `value`), `"remove"` or `"swap"` (with the next).
    pub action: String,
    /// The record.
    pub index: usize,
    /// For `edit`: the JSON member.
    pub field: Option<String>,
    /// For `edit`: the new value.
    pub value: Option<Value>,
    /// The index verification must report.
    pub first_bad_index: usize,
}

/// Applies a tampering to a chain given as JSON values.
pub fn tamper(records: &[Value], t: &Tampering) -> Vec<Value> {
    let mut out = records.to_vec();
    match t.action.as_str() {
        "edit" => {
            if let (Some(f), Some(v)) = (&t.field, &t.value) {
                out[t.index][f.as_str()] = v.clone();
            }
        }
        "remove" => {
            out.remove(t.index);
        }
        "swap" => out.swap(t.index, t.index + 1),
        _ => {}
    }
    out
}

/// Replays `audit_chain.json`.
pub fn replay_audit_chain(text: &str) -> Result<usize, Failure> {
    let vectors: Vec<AuditVector> = parse("audit_chain.json", text)?;
    for v in &vectors {
        for (i, r) in v.records.iter().enumerate() {
            let canonical = String::from_utf8(r.canonical_bytes()).unwrap_or_default();
            check(&v.id, canonical == v.canonical[i], || {
                format!(
                    "record {i}: canonical encoding differs:\n  got  {canonical}\n  want {}",
                    v.canonical[i]
                )
            })?;
            let hash = r.compute_hash();
            check(&v.id, hash == r.hash, || {
                format!("record {i}: hash {hash} != {}", r.hash)
            })?;
        }
        verify_chain(ChainHead::default(), &v.records)
            .map_err(|e| fail(&v.id, format!("the intact chain fails: {e}")))?;
        let values: Vec<Value> = v
            .records
            .iter()
            .map(|r| serde_json::to_value(r).expect("records serialize"))
            .collect();
        for t in &v.tamperings {
            let edited: Vec<AuditRecord> = tamper(&values, t)
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| fail(&v.id, format!("{}: {e}", t.description)))?;
            match verify_chain(ChainHead::default(), &edited) {
                Ok(_) => return Err(fail(&v.id, format!("{}: not detected", t.description))),
                Err(e) => check(&v.id, e.index() == t.first_bad_index, || {
                    format!(
                        "{}: reported index {}, expected {}",
                        t.description,
                        e.index(),
                        t.first_bad_index
                    )
                })?,
            }
        }
    }
    Ok(vectors.len())
}

/// Builds the audit vectors from a recorded transcript run (used to write the file).
pub fn generate_audit_chain(transcripts: &[Transcript]) -> Vec<AuditVector> {
    let records: Vec<AuditRecord> = transcripts
        .iter()
        .flat_map(|t| t.steps.iter())
        .flat_map(|s| s.outputs.iter())
        .filter_map(|o| match o {
            Output::Persist(Record::Audit(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    // Re-chain the records of all transcripts into one chain, as one long log would hold them.
    let mut head = ChainHead::default();
    let records: Vec<AuditRecord> = records.into_iter().map(|r| head.append(r)).collect();
    let canonical = records
        .iter()
        .map(|r| String::from_utf8(r.canonical_bytes()).expect("canonical JSON is UTF-8"))
        .collect();
    let tamperings = vec![
        Tampering {
            description: "success flipped".into(),
            action: "edit".into(),
            index: 1,
            field: Some("success".into()),
            value: Some(Value::Bool(!records[1].success)),
            first_bad_index: 1,
        },
        Tampering {
            description: "latency rewritten".into(),
            action: "edit".into(),
            index: 2,
            field: Some("latencyMs".into()),
            value: Some(Value::from(1)),
            first_bad_index: 2,
        },
        Tampering {
            description: "record removed".into(),
            action: "remove".into(),
            index: 1,
            field: None,
            value: None,
            first_bad_index: 1,
        },
        Tampering {
            description: "records reordered".into(),
            action: "swap".into(),
            index: 0,
            field: None,
            value: None,
            first_bad_index: 0,
        },
    ];
    vec![AuditVector {
        id: "audit-chain-from-transcripts".into(),
        records,
        canonical,
        tamperings,
    }]
}

// ---- transcripts ---------------------------------------------------------------------------------------

/// A full engine transcript: a configuration, then every input with its time and the outputs it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    /// The vector's id.
    pub id: String,
    /// What the story is.
    pub description: String,
    /// The engine's configuration.
    pub config: EngineConfig,
    /// Inputs and outputs.
    pub steps: Vec<TranscriptStep>,
}

/// Replays one transcript on a fresh engine: every output must equal the recorded one, as JSON.
pub fn replay_transcript(t: &Transcript) -> Result<(), Failure> {
    let mut engine =
        Engine::new(t.config.clone()).map_err(|e| fail(&t.id, format!("config: {e}")))?;
    for (i, step) in t.steps.iter().enumerate() {
        step.action.apply(&mut engine);
        let outputs = engine.drain_outputs();
        let got = serde_json::to_value(&outputs).expect("outputs serialize");
        let want = serde_json::to_value(&step.outputs).expect("outputs serialize");
        if got != want {
            return Err(fail(
                &t.id,
                format!(
                    "step {i} (at {:?}): outputs differ\n  got  {got}\n  want {want}",
                    step.action.now()
                ),
            ));
        }
    }
    Ok(())
}

/// Replays `transcripts.json`.
pub fn replay_transcripts(text: &str) -> Result<usize, Failure> {
    let all: Vec<Transcript> = parse("transcripts.json", text)?;
    for t in &all {
        replay_transcript(t)?;
    }
    Ok(all.len())
}

const T0: u64 = WORKDAY_EPOCH_MS;
const HOUR: u64 = 3_600_000;

fn agent(user: &str, scheduled: bool, on_break: bool) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: if scheduled {
            vec![Window {
                start_ms: T0 - HOUR,
                end_ms: T0 + 8 * HOUR,
            }]
        } else {
            vec![]
        },
        breaks: if on_break {
            vec![Window {
                start_ms: T0 - 60_000,
                end_ms: T0 + 14 * 60_000,
            }]
        } else {
            vec![]
        },
        ..AgentPlan::default()
    }
}

fn record(
    id: &str,
    description: &str,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimTenant),
    act: impl FnOnce(&mut Harness),
) -> Transcript {
    record_on(ProfileKind::Seed, id, description, tweak, act)
}

/// A transcript on `profile`: the same three agents (on `cxone`, alice is agent 1001 of team A, bob 1002 of
/// team B, carol 1003 of team C, which has no unavailable codes).
fn record_on(
    profile: ProfileKind,
    id: &str,
    description: &str,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimTenant),
    act: impl FnOnce(&mut Harness),
) -> Transcript {
    let sim = SimConfig {
        seed: 3,
        ..SimConfig::default()
    };
    let mut config = Harness::engine_config_for_profile(&sim, 2026, profile);
    let mut tenant = SimTenant::new(sim);
    for a in [
        agent("alice", true, false),
        agent("bob", false, false),
        agent("carol", true, true),
    ] {
        tenant.add_agent(a);
    }
    tweak(&mut config, &mut tenant);
    let engine = Engine::new(config.clone()).expect("valid config");
    let mut h = Harness::new(engine, tenant, T0);
    h.record_transcript();
    act(&mut h);
    h.drive().expect("transcripts quiesce");
    Transcript {
        id: id.into(),
        description: description.into(),
        config,
        steps: h.transcript().to_vec(),
    }
}

/// Records the transcript vectors from scenarios against the simulated tenant (used to write the file).
pub fn generate_transcripts() -> Vec<Transcript> {
    vec![
        record(
            "transcript-happy-ready",
            "alice goes READY: token, schedule, break status, state change",
            |_, _| {},
            |h| {
                h.transition("alice", "READY");
            },
        ),
        record(
            "transcript-policy-denials",
            "bob is unscheduled; carol is in a mandatory break: READY refused, NOT_READY allowed",
            |_, _| {},
            |h| {
                h.transition("bob", "READY");
                h.transition("carol", "READY");
                h.transition("carol", "NOT_READY");
            },
        ),
        record(
            "transcript-429-retry-after",
            "the state change meets a 429 with Retry-After: 7 and is sent again 7 s later",
            |_, t| {
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::RateLimit { retry_after_s: 7 },
                    1,
                ))
            },
            |h| {
                h.transition("alice", "PAUSED");
            },
        ),
        record(
            "transcript-503-exhausted",
            "the state change meets 503 four times: it may have been applied, so it ends OUTCOME_UNKNOWN",
            |_, t| {
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::status(503, None),
                    4,
                ))
            },
            |h| {
                h.transition("alice", "NOT_READY");
            },
        ),
        record(
            "transcript-401-refresh",
            "the schedule lookup meets a 401: one token refresh, then success",
            |_, t| t.script_fault(FaultRule::on(Endpoint::Schedule, FaultKind::Unauthorized, 1)),
            |h| {
                h.transition("alice", "IDLE");
            },
        ),
        record(
            "transcript-invalid-client",
            "the token endpoint refuses the credentials: AUTH_FAILED, no retry",
            |c, _| c.credentials.client_secret = Secret::new("not-the-secret"),
            |h| {
                h.transition("alice", "READY");
            },
        ),
        record(
            "transcript-timeout-and-malformed",
            "a lookup times out and is retried; a malformed break answer gives BAD_RESPONSE",
            |_, t| {
                t.script_fault(FaultRule::on(
                    Endpoint::Schedule,
                    FaultKind::Slow { extra_ms: 15_000 },
                    1,
                ));
                t.script_fault(FaultRule::on(Endpoint::BreakStatus, FaultKind::Malformed, 1));
            },
            |h| {
                h.transition("alice", "READY");
            },
        ),
        record(
            "transcript-lost-answer-then-503",
            "the change is applied but its answer is lost; the resend meets a 503 with Retry-After: 40 and is \
             then answered from the first send: a success, sent with one Idempotency-Key",
            |_, t| {
                t.script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::status(503, Some(40)),
                    1,
                ));
            },
            |h| {
                h.transition("alice", "READY");
            },
        ),
        record(
            "transcript-outcome-unknown",
            "the change is applied but its answer is lost, and every resend meets a 500: OUTCOME_UNKNOWN, \
             and its intent stays open",
            |_, t| {
                t.script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::status(500, None),
                    3,
                ));
            },
            |h| {
                h.transition("alice", "PAUSED");
            },
        ),
        record(
            "transcript-429-spends-no-retry",
            "five 429s with Retry-After: 3 are waited out without spending the three retries",
            |_, t| {
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::RateLimit { retry_after_s: 3 },
                    5,
                ))
            },
            |h| {
                h.transition("alice", "IDLE");
            },
        ),
        record(
            "transcript-webhooks-and-a-dead-letter",
            "the receiver refuses the first payload twice (dead letter), takes the second, then takes the \
             first when it is replayed",
            |c, _| {
                c.webhook = Some(WebhookConfig {
                    dead_letter_after_refusals: 2,
                    ..WebhookConfig::new(SIM_WEBHOOK_URL)
                })
            },
            |h| {
                use cxone_agent_state_core::sim::ReceiverAnswer;
                h.receiver.script.push_back(ReceiverAnswer::Status(422));
                h.receiver.script.push_back(ReceiverAnswer::Status(422));
                h.transition("alice", "READY");
                h.drive().expect("quiesces");
                h.transition("carol", "NOT_READY");
                h.drive().expect("quiesces");
                h.command(cxone_agent_state_core::sim::Command::ReplayDeadLetters { event_id: None });
            },
        ),
        record(
            "transcript-wall-clock-step",
            "the wall clock jumps back an hour while a retry waits: the retry goes out on time and the \
             records carry the stepped wall time",
            |_, t| {
                t.script_fault(FaultRule::on(
                    Endpoint::SetState,
                    FaultKind::status(503, None),
                    1,
                ))
            },
            |h| {
                h.transition("alice", "NOT_READY");
                h.drive_until(T0 + 2_000);
                h.step_wall_clock(-3_600_000);
            },
        ),
        record(
            "transcript-close",
            "the engine closes while a change is on the wire and another waits behind it: OUTCOME_UNKNOWN \
             and CLOSED, then commands are refused",
            |_, t| t.script_fault(FaultRule::on(Endpoint::SetState, FaultKind::Slow { extra_ms: 5_000 }, 1)),
            |h| {
                use cxone_agent_state_core::sim::Command;
                h.transition("alice", "READY");
                h.transition("alice", "PAUSED");
                h.drive_until(T0 + 3_000);
                h.command(Command::Close);
                h.command(Command::Transition {
                    user_id: "alice".into(),
                    state: "IDLE".into(),
                });
            },
        ),
        record_on(
            ProfileKind::Cxone,
            "transcript-cxone-happy",
            "cxone: discovery (OpenID configuration, password grant, id_token tenantId, CXone configuration), \
             then the directory, alice's schedule export and her team's codes, read once: NOT_READY is \
             Unavailable with Break's outStateId, READY is Available, PAUSED with the reason Lunch",
            |_, _| {},
            |h| {
                use cxone_agent_state_core::TransitionOptions;
                let alice = h.user("alice");
                h.transition(&alice, "NOT_READY");
                h.transition(&alice, "READY");
                h.transition_with(
                    &alice,
                    "PAUSED",
                    &TransitionOptions::default().with_reason("lunch"),
                );
            },
        ),
        record_on(
            ProfileKind::Cxone,
            "transcript-cxone-refusals",
            "cxone, JSON-encoded SetAgentState: bob is unscheduled, carol is in a mandatory break, agent 9999 \
             is not in the directory, carol's team has no code for NOT_READY, and alice's schedule export \
             meets a 429 with Retry-After that pauses only the WFM host",
            |c, t| {
                c.cxone.set_state_encoding = cxone_agent_state_core::cxone::acd::SetStateEncoding::Json;
                t.script_fault(FaultRule::on(
                    Endpoint::ScheduleExport,
                    FaultKind::RateLimit { retry_after_s: 4 },
                    1,
                ));
            },
            |h| {
                let (alice, bob, carol) = (h.user("alice"), h.user("bob"), h.user("carol"));
                h.transition(&bob, "READY");
                h.transition(&carol, "READY");
                h.transition(&carol, "NOT_READY");
                h.transition("9999", "READY");
                h.transition(&alice, "IDLE");
            },
        ),
        record_on(
            ProfileKind::Cxone,
            "transcript-cxone-observation",
            "cxone with observation: the first poll reads everyone, a supervisor puts bob on Lunch (external), \
             alice's READY is seen as ours, and alice's NOT_READY, whose answer is lost after the tenant \
             applied it, ends OUTCOME_UNKNOWN and is settled as applied by the next poll",
            |c, _| {
                c.observe.interval_ms = 10_000;
                c.observe.settle_after_ms = 20_000;
            },
            |h| {
                use cxone_agent_state_core::sim::{Command, TruthSource};
                let alice = h.user("alice");
                h.command(Command::StartObserving);
                h.transition(&alice, "READY");
                h.drive_until(T0 + 15_000);
                h.tenant
                    .external_change(T0 + 15_000, "bob", "Unavailable", Some("Lunch"), TruthSource::Supervisor)
                    .expect("bob is an agent");
                h.drive_until(T0 + 30_000);
                h.tenant.script_fault(FaultRule::on(
                    Endpoint::AgentState,
                    FaultKind::DropAfter,
                    10,
                ));
                h.transition(&alice, "NOT_READY");
                h.drive_until(T0 + 150_000);
                h.command(Command::StopObserving);
            },
        ),
        record(
            "transcript-per-agent-order-and-bad-input",
            "three changes for alice run in order; bad ids and states fail before any request (an absurdly \
             long one is recorded cut short); a checkpoint every four records",
            |c, _| c.checkpoint_every = Some(4),
            |h| {
                h.transition("alice", "READY");
                h.transition("alice", "TRAINING");
                h.transition("../etc", "READY");
                h.transition("alice", "ready");
                h.transition(&"x".repeat(300), "READY");
                h.validate("carol", "READY");
                h.transition("alice", "NOT_READY");
            },
        ),
    ]
}

fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("vectors serialize") + "\n"
}

/// The generated vector files, as pretty JSON, by file name.
pub fn generated_files() -> Vec<(&'static str, String)> {
    let transcripts = generate_transcripts();
    vec![
        ("retry_delays.json", pretty(&generate_retry_delays())),
        (
            "audit_chain.json",
            pretty(&generate_audit_chain(&transcripts)),
        ),
        ("transcripts.json", pretty(&transcripts)),
    ]
}

// ---- adherence ------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct AdherenceFile {
    cases: Vec<AdherenceCase>,
}

#[derive(Deserialize)]
struct AdherenceCase {
    id: String,
    input: cxone_agent_state_core::adherence::AdherenceInput,
    expect: serde_json::Map<String, Value>,
}

/// Whether `got` is what `want` pins: numbers within 1e-9, objects and arrays element by element.
pub fn same_figure(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => match (g.as_f64(), w.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= 1e-9,
            _ => false,
        },
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len()
                && w.iter()
                    .all(|(k, w)| g.get(k).is_some_and(|g| same_figure(g, w)))
        }
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| same_figure(g, w))
        }
        (g, w) => g == w,
    }
}

/// Replays `adherence.json`: every key a case expects must come out so.
pub fn replay_adherence(text: &str) -> Result<usize, Failure> {
    let file: AdherenceFile = parse("adherence.json", text)?;
    for c in &file.cases {
        let got = serde_json::to_value(c.input.compute()).expect("figures serialize");
        for (key, want) in &c.expect {
            let g = got.get(key).unwrap_or(&Value::Null);
            check(&c.id, same_figure(g, want), || {
                format!("{key}: got {g}, expected {want}")
            })?;
        }
    }
    Ok(file.cases.len())
}
