//! Real samples of every value that crosses the package's boundary as JSON, for `make types`: the script
//! `bindings-wasm/test/types/drift.mjs` types each of them against the package's `.d.ts` and compiles with
//! `tsc --strict`, so a field that one side has and the other lacks fails the build.
//!
//! Prints one JSON object, `{ "variants": {…}, "samples": {…} }`. `variants` lists every variant of each
//! tagged enum as serde itself names them (read from serde's "unknown variant" message), so the script can
//! refuse samples that miss a variant, and a `.d.ts` that lists more or fewer.
//!
//! The samples come from runs of the engine against the simulated tenant and webhook receiver: faults,
//! an external token source, webhooks refused into a dead letter and replayed, checkpoints, a close, and two
//! restarts (one change resumed and settled, one abandoned); and a run on the `cxone` profile (discovery, the
//! directory, unavailable codes and schedule exports each refused once and retried, a change with an explicit
//! reason code, the WFM host as a target, a token source that hands in the bases); and a `cxone` run that
//! observes agent states (our change and a supervisor's seen by the poll, a change skipped as already in
//! effect, unknown outcomes settled applied and not applied, a poll retried and one refused).

use cxone_agent_state_core::sim::{
    Action, AgentPlan, Command, DayRun, Endpoint, FaultKind, FaultRule, Harness, ReceiverAnswer,
    SimConfig, SimTenant, TokenBackend, TruthSource, Window, WorkdayConfig, SIM_WEBHOOK_URL,
    WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    Actor, Engine, EngineConfig, ErrorCode, Event, Input, Now, Output, Override, ProfileKind,
    Record, RequestId, RequestKind, Secret, Target, TokenSource, TransitionOptions,
    TransportErrorKind, WebhookConfig,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const T0: u64 = WORKDAY_EPOCH_MS;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// Every variant serde knows for `T`, read from its refusal of an unknown one.
fn variants<T: DeserializeOwned>(probe: Value) -> Vec<String> {
    let message = match serde_json::from_value::<T>(probe) {
        Ok(_) => panic!("the probe was accepted"),
        Err(e) => e.to_string(),
    };
    let expected = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("no variant list in {message:?}"))
        .1;
    // "one of `a`, `b`" / "`a` or `b`" / "`a`": the names are the odd pieces between backticks.
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn tagged_variants<T: DeserializeOwned>(tag: &str) -> Vec<String> {
    variants::<T>(json!({ tag: "__probe__", "value": null }))
}

/// `fault` for `user`'s next request to `endpoint`.
fn fault(endpoint: Endpoint, user: &str, fault: FaultKind) -> FaultRule {
    FaultRule {
        user_id: Some(user.to_owned()),
        ..FaultRule::on(endpoint, fault, 1)
    }
}

/// Puts a change for `user` on the wire and leaves it there: the tenant answers its state change 5 s late,
/// and the run stops 2 s in.
fn stall_on_wire(h: &mut Harness, user: &str, state: &str) {
    h.tenant.script_fault(fault(
        Endpoint::SetState,
        user,
        FaultKind::Slow { extra_ms: 5_000 },
    ));
    h.transition(user, state);
    h.drive_until(h.now_ms() + 2_000);
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("wire values serialize")
}

fn main() {
    let sim = SimConfig {
        seed: 7,
        ..SimConfig::default()
    };
    let mut config = Harness::engine_config_for_tenant(&sim, 11);
    config.token_source = TokenSource::External;
    config.checkpoint_every = Some(4);
    config.webhook = Some(WebhookConfig {
        secret: Some(Secret::new("hook-secret")),
        dead_letter_after_refusals: 2,
        ..WebhookConfig::new(SIM_WEBHOOK_URL)
    });
    let mut tenant = SimTenant::new(sim.clone());
    let shift = |user: &str| AgentPlan::on_shift(user, T0 - HOUR, T0 + 8 * HOUR);
    tenant.add_agent(shift("alice"));
    tenant.add_agent(shift("dave"));
    tenant.add_agent(AgentPlan {
        breaks: vec![Window {
            start_ms: T0 - MINUTE,
            end_ms: T0 + 14 * MINUTE,
        }],
        ..shift("carol")
    });
    tenant.add_agent(AgentPlan {
        user_id: "bob".into(),
        shifts: vec![],
        breaks: vec![],
        ..AgentPlan::default()
    });
    tenant.script_fault(fault(
        Endpoint::SetState,
        "alice",
        FaultKind::RateLimit { retry_after_s: 2 },
    ));
    tenant.script_fault(fault(Endpoint::Schedule, "dave", FaultKind::DropBefore));
    tenant.script_fault(fault(
        Endpoint::SetState,
        "dave",
        FaultKind::status(503, None),
    ));

    let mut h = Harness::new(Engine::new(config.clone()).expect("valid"), tenant, T0);
    h.set_token_backend(TokenBackend::Tenant);
    h.record_transcript();
    let mut checkpoints = Vec::new();
    let mut dead_letters = Vec::new();
    let mut restored = Vec::new();

    // Phase 1: changes, refusals, validations, retries; the receiver refuses the first payload into a
    // dead letter and fails the next delivery once.
    h.receiver.script.extend([
        ReceiverAnswer::Status(422),
        ReceiverAnswer::Status(422),
        ReceiverAnswer::Status(503),
        ReceiverAnswer::Drop,
    ]);
    h.transition("alice", "READY");
    h.transition("bob", "READY");
    h.transition("carol", "READY");
    h.transition("carol", "NOT_READY");
    h.transition("../x", "READY");
    h.validate("carol", "READY");
    h.validate("alice", "PAUSED");
    h.validate("alice", "bad state");
    h.transition("dave", "IDLE");
    // Changes with the caller's reference: an intent, audit records and outcomes that carry it.
    let ticket = |r: &str| TransitionOptions::default().with_reference(r);
    h.transition_with("alice", "IDLE", &ticket("ticket-4711"));
    h.transition_with("bob", "IDLE", &ticket("ticket-4712"));
    // A supervisor's override passes bob's missing shift; carol's READY in her break is deferred, replaced
    // by a second deferred READY, and applied when the break ends.
    h.transition_with(
        "bob",
        "NOT_READY",
        &TransitionOptions::default()
            .with_override(Override::new("kim", "covering a gap"))
            .with_actor(Actor::supervisor("kim")),
    );
    let defer = TransitionOptions::default().with_defer();
    h.transition_with("carol", "READY", &defer);
    h.transition_with("carol", "READY", &defer);
    h.drive_until(T0 + 5 * MINUTE);
    checkpoints.push(to_value(&h.engine.log_state().checkpoint(h.now().unix_ms)));
    h.drive().expect("quiesces");
    checkpoints.push(to_value(&h.engine.log_state().checkpoint(h.now().unix_ms)));
    dead_letters.extend(h.engine.log_state().dead_letters().map(to_value));
    h.command(Command::ReplayDeadLetters { event_id: None });
    h.drive().expect("quiesces");
    let mut reports = vec![to_value(&h.engine.compliance_report(h.now()))];
    let metrics: Vec<Value> = ["alice", "carol", "nobody"]
        .iter()
        .map(|u| to_value(&h.engine.agent_metrics(u, h.now())))
        .collect();

    // Phase 2: a change on the wire when the engine closes (OUTCOME_UNKNOWN), resumed and settled after a
    // restart.
    stall_on_wire(&mut h, "alice", "PAUSED");
    checkpoints.push(to_value(&h.engine.log_state().checkpoint(h.now().unix_ms)));
    h.command(Command::Close);
    checkpoints.push(to_value(&h.engine.log_state().checkpoint(h.now().unix_ms)));
    let _ = h.command(Command::Transition {
        user_id: "alice".into(),
        state: "IDLE".into(),
    });
    restored.push(to_value(&h.restart(1_000)));
    h.drive().expect("quiesces");

    // Phase 3: a change on the wire at a crash, too old to send again after a long restart: abandoned.
    stall_on_wire(&mut h, "dave", "READY");
    restored.push(to_value(&h.restart(3 * MINUTE)));
    h.drive().expect("quiesces");

    // An external token source that fails (an accessToken input without a token).
    let mut failing = Harness::new(
        Engine::new(config.clone()).expect("valid"),
        SimTenant::new(SimConfig::default()),
        T0,
    );
    failing.set_token_backend(TokenBackend::Failing("back end down".into()));
    failing.record_transcript();
    failing.transition("alice", "READY");
    failing.drive().expect("quiesces");

    // The `cxone` profile: discovery and the password grant, then the directory, a team's unavailable
    // codes and a schedule export (the WFM host), each refused once (503) and retried; a change with the
    // caller's reason code (an intent with `outStateId`), an unknown code and an unknown agent.
    let cxone_config = Harness::engine_config_for_profile(&sim, 13, ProfileKind::Cxone);
    let mut tenant = SimTenant::new(sim.clone());
    tenant.add_agent(shift("erin"));
    for endpoint in [
        Endpoint::Agents,
        Endpoint::UnavailableCodes,
        Endpoint::ScheduleExport,
    ] {
        tenant.script_fault(FaultRule::on(endpoint, FaultKind::status(503, None), 1));
    }
    let mut cx = Harness::new(
        Engine::new(cxone_config.clone()).expect("valid"),
        tenant,
        T0,
    );
    cx.record_transcript();
    let erin = cx.user("erin");
    cx.transition_with(
        &erin,
        "NOT_READY",
        &TransitionOptions::default().with_reason("Lunch"),
    );
    cx.transition_with(
        &erin,
        "PAUSED",
        &TransitionOptions::default().with_reason("Nap"),
    );
    cx.transition(&erin, "READY");
    cx.transition("999999", "READY");
    cx.drive().expect("quiesces");

    let (observed_outputs, agent_snapshots) = observing_run(&sim, &shift);

    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    // A browser page's token source that knows the `cxone` bases (no discovery).
    inputs.push(to_value(&Input::AccessToken {
        now: Now::new(1, T0),
        id: RequestId(1),
        access_token: Some(Secret::new("page-token")),
        expires_in_ms: HOUR,
        error: None,
        api_base: Some("https://api-c1.incontact.com".into()),
        wfm_base: Some("https://na1.nice-incontact.com".into()),
    }));
    for step in h
        .transcript()
        .iter()
        .chain(failing.transcript())
        .chain(cx.transcript())
    {
        if let Action::Input(i) = &step.action {
            inputs.push(to_value(i));
        }
        outputs.extend(step.outputs.iter().map(to_value));
    }
    // What restores persisted and reported is not in the transcript: take it from the log and the events.
    for (_, r) in h.records() {
        outputs.push(to_value(&Output::Persist(r.clone())));
    }
    for (_, e) in h.events() {
        outputs.push(to_value(&Output::Event(e.clone())));
    }
    outputs.extend(observed_outputs);
    let webhook_payloads: Vec<Value> = h
        .records()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Webhook(w) => Some(serde_json::from_str(&w.body).expect("payloads are JSON")),
            _ => None,
        })
        .collect();
    let now = h.now();

    let mut day = DayRun::new(&WorkdayConfig {
        agents: 30,
        shift_hours: 2,
        fault_rate: 0.05,
        ..WorkdayConfig::default()
    })
    .expect("valid day");
    let mut cxone_day = DayRun::new(&WorkdayConfig {
        agents: 10,
        shift_hours: 1,
        profile: ProfileKind::Cxone,
        ..WorkdayConfig::default()
    })
    .expect("valid day");
    cxone_day.run(|_, _| {}).expect("the day quiesces");
    // A simulation's log starts with its `simulation` mark: the one record kind only a day run writes.
    day.run(|_, r| {
        if matches!(r, Record::Simulation(_)) {
            outputs.push(to_value(&Output::Persist(r.clone())));
        }
    })
    .expect("the day quiesces");

    reports.push(to_value(&h.engine.compliance_report(now)));
    reports.push(agent_snapshots.1);
    reports.push(to_value(
        &Engine::new(config.clone())
            .expect("valid")
            .compliance_report(now),
    ));

    let error_codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let out = json!({
        "variants": {
            "output": tagged_variants::<Output>("type"),
            "event": tagged_variants::<Event>("type"),
            "record": tagged_variants::<Record>("kind"),
            "input": tagged_variants::<Input>("type"),
            "target": variants::<Target>(json!("__probe__")),
            "transportErrorKind": variants::<TransportErrorKind>(json!("__probe__")),
            "requestKind": variants::<RequestKind>(json!("__probe__")),
            "tokenSource": variants::<TokenSource>(json!("__probe__")),
            "errorCode": variants::<ErrorCode>(json!("__probe__")),
        },
        "samples": {
            "outputs": outputs,
            "inputs": inputs,
            "checkpoints": checkpoints,
            "deadLetters": dead_letters,
            "restored": restored,
            "webhookPayloads": webhook_payloads,
            "chainHeads": [to_value(h.engine.chain_head())],
            "agentSnapshots": agent_snapshots.0,
            "complianceReports": reports,
            "agentMetrics": metrics,
            "engineConfigs": [
                to_value(&config),
                to_value(&EngineConfig::default()),
                to_value(&cxone_config),
            ],
            "daySummaries": [to_value(&day.summary()), to_value(&cxone_day.summary())],
            "errorCodes": error_codes,
        },
    });
    println!("{out}");
}

/// A `cxone` engine observing two agents: our change and a supervisor's seen by the poll, a change skipped
/// because the tenant already shows it, an unknown outcome settled as applied and one as not applied, a poll
/// page retried (503) and a poll refused (403). Returns the outputs (records and events) and the agents'
/// snapshots with the report.
fn observing_run(
    sim: &SimConfig,
    shift: &dyn Fn(&str) -> AgentPlan,
) -> (Vec<Value>, (Vec<Value>, Value)) {
    let mut config = Harness::engine_config_for_profile(sim, 17, ProfileKind::Cxone);
    config.observe.skip_if_in_effect = true;
    config.observe.settle_after_ms = 20_000;
    let mut tenant = SimTenant::new(sim.clone());
    tenant.add_agent(shift("frank"));
    tenant.add_agent(shift("gina"));
    tenant.script_fault(FaultRule::on(
        Endpoint::AgentStates,
        FaultKind::status(503, None),
        1,
    ));
    let mut ob = Harness::new(Engine::new(config).expect("valid"), tenant, T0);
    let (frank, gina) = (ob.user("frank"), ob.user("gina"));
    ob.engine.start_observing(ob.now()).expect("cxone observes");
    ob.drain();
    ob.transition(&frank, "NOT_READY");
    ob.drive_until(ob.now_ms() + 25_000);
    // A supervisor sends frank to lunch; then we ask for what the tenant already shows.
    ob.tenant
        .external_change(
            ob.now_ms(),
            "frank",
            "Unavailable",
            Some("Lunch"),
            TruthSource::Supervisor,
        )
        .expect("frank is known");
    ob.drive_until(ob.now_ms() + 25_000);
    ob.transition_with(
        &frank,
        "NOT_READY",
        &TransitionOptions::default().with_reason("Lunch"),
    );
    ob.drive_until(ob.now_ms() + 5_000);
    // gina's change is applied but its answers are lost; then one is lost before it is processed.
    ob.tenant
        .script_fault(fault(Endpoint::AgentState, "gina", FaultKind::DropAfter));
    for _ in 0..3 {
        ob.tenant
            .script_fault(fault(Endpoint::AgentState, "gina", FaultKind::DropBefore));
    }
    ob.transition_with(
        &gina,
        "PAUSED",
        &TransitionOptions::default().with_reference("ticket-9"),
    );
    ob.drive_until(ob.now_ms() + 60_000);
    for _ in 0..4 {
        ob.tenant
            .script_fault(fault(Endpoint::AgentState, "gina", FaultKind::DropBefore));
    }
    ob.transition(&gina, "IDLE");
    ob.drive_until(ob.now_ms() + 90_000);
    // A refused poll: a heartbeat with its error.
    ob.tenant.script_fault(FaultRule::on(
        Endpoint::AgentStates,
        FaultKind::status(403, None),
        1,
    ));
    ob.drive_until(ob.now_ms() + 25_000);
    let snapshots = ob.engine.agents(ob.now()).iter().map(to_value).collect();
    let report = to_value(&ob.engine.compliance_report(ob.now()));
    ob.engine.stop_observing();
    let mut outputs: Vec<Value> = ob
        .records()
        .iter()
        .map(|(_, r)| to_value(&Output::Persist(r.clone())))
        .collect();
    outputs.extend(
        ob.events()
            .iter()
            .map(|(_, e)| to_value(&Output::Event(e.clone()))),
    );
    (outputs, (snapshots, report))
}
