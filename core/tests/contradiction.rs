//! The first rule as a property: **the audit log never contradicts the tenant.**
//!
//! Random days against the simulated tenant with random faults — answers lost after the change was applied,
//! connections dropped before it, 5xx, 4xx, 429s with long `Retry-After`, answers slower than the timeout,
//! unreadable bodies — mandatory breaks that start while changes are under way, and crashes followed by a
//! restart from the durable log, sometimes with the wall clock stepped. Whatever happens, at the end:
//!
//! - every change the tenant applied is audited, and its last record is a success or `OUTCOME_UNKNOWN`,
//!   never a refusal;
//! - every change audited as a success was applied by the tenant;
//! - for every agent whose last success-or-unknown record is a success, the tenant holds that state (no
//!   older change was applied after it);
//! - the tenant never applied READY during a mandatory break;
//! - the audit chain verifies across restarts.
//!
//! The property runs under both API profiles: `seed`, and `cxone` (where an agent is its `agentId`, and the
//! tenant records a non-READY state as the unavailable code it was set with). On `cxone` it runs once more
//! **with observation on**, while agents, supervisors and the ACD change states on their own: then also
//! - every observation record names a state the tenant's true timeline holds from that very time;
//! - every settlement is checked like any record of its change (a settlement "applied" for a change the
//!   tenant never applied, or "not applied" for one it did, is caught);
//! - every change skipped as already in effect relies on an observation of the same agent in that state.

use std::collections::BTreeMap;

use cxone_agent_state_core::sim::{
    ActivityConfig, AgentPlan, Command, FaultKind, Harness, RandomFaults, SimConfig, SimTenant,
    TruthEntry, Window, CXONE_TEAM_A, CXONE_TEAM_B, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    parse_iso8601, verify_chain, AuditRecord, ChainHead, Engine, ErrorCode, ProfileKind, Record,
    TransitionOptions, READY,
};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;

fn fault() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        3 => Just(FaultKind::DropAfter),
        2 => Just(FaultKind::DropBefore),
        2 => prop::sample::select(&[500u16, 502, 503, 504][..]).prop_flat_map(|status| {
            prop::option::of(prop::sample::select(&[1u64, 40, 90][..]))
                .prop_map(move |retry_after_s| FaultKind::Status { status, retry_after_s })
        }),
        2 => prop::sample::select(&[2u64, 40, 90, 200, 400][..])
            .prop_map(|retry_after_s| FaultKind::RateLimit { retry_after_s }),
        2 => prop::sample::select(&[2_000u64, 12_000, 40_000][..])
            .prop_map(|extra_ms| FaultKind::Slow { extra_ms }),
        1 => Just(FaultKind::Malformed),
        1 => Just(FaultKind::Unauthorized),
        2 => prop::sample::select(&[403u16, 404, 408, 409, 422, 425][..])
            .prop_map(|status| FaultKind::Status { status, retry_after_s: None }),
    ]
}

#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    fault_rate: f64,
    faults: Vec<FaultKind>,
    /// Per agent: when its break starts, minutes after T0 (it lasts 15 min).
    breaks: Vec<u64>,
    /// (at, agent, state, deferred: held while a break is due rather than refused)
    commands: Vec<(u64, usize, &'static str, bool)>,
    /// A crash at this time, down for this long, with the wall clock stepped by this much meanwhile.
    crash: Option<(u64, u64, i64)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    let agents = 4usize;
    (
        any::<u64>(),
        prop_oneof![1 => Just(0.0), 3 => 0.05f64..0.6],
        prop::collection::vec(fault(), 1..6),
        prop::collection::vec(0u64..30, agents),
        prop::collection::vec(
            (
                0u64..(40 * MIN),
                0..agents,
                prop::sample::select(&["READY", "READY", "NOT_READY", "PAUSED"][..]),
                prop::bool::weighted(0.3),
            ),
            1..24,
        ),
        prop::option::of((
            0u64..(40 * MIN),
            prop_oneof![Just(0u64), 0u64..(6 * MIN)],
            prop_oneof![3 => Just(0i64), 1 => Just(-3_600_000i64), 1 => Just(3_600_000i64)],
        )),
    )
        .prop_map(|(seed, fault_rate, faults, breaks, commands, crash)| Plan {
            seed,
            fault_rate,
            faults,
            breaks,
            commands,
            crash,
        })
}

/// How observation runs in a case: `skip` turns `skipIfInEffect` on.
#[derive(Clone, Copy, Debug)]
struct Observing {
    skip: bool,
}

fn run(plan: &Plan, profile: ProfileKind) -> Result<(), TestCaseError> {
    run_with(plan, profile, None)
}

fn run_with(
    plan: &Plan,
    profile: ProfileKind,
    observing: Option<Observing>,
) -> Result<(), TestCaseError> {
    let sim = SimConfig {
        seed: plan.seed,
        faults: RandomFaults {
            rate: plan.fault_rate,
            kinds: plan.faults.clone(),
        },
        activity: match observing {
            Some(_) => ActivityConfig {
                agent_changes_per_hour: 6.0,
                supervisor_changes_per_hour: 2.0,
                contacts_per_hour: 6.0,
                ..ActivityConfig::default()
            },
            None => ActivityConfig::default(),
        },
        ..SimConfig::default()
    };
    let mut config = Harness::engine_config_for_profile(&sim, plan.seed ^ 0x5eed, profile);
    if let Some(o) = observing {
        config.observe.interval_ms = 5_000;
        config.observe.settle_after_ms = 2 * MIN;
        config.observe.skip_if_in_effect = o.skip;
    }
    let mut tenant = SimTenant::new(sim);
    for (i, start) in plan.breaks.iter().enumerate() {
        let start = T0 + start * MIN;
        tenant.add_agent(AgentPlan {
            user_id: format!("agent-{i}"),
            shifts: vec![Window {
                start_ms: T0 - 60 * MIN,
                end_ms: T0 + 600 * MIN,
            }],
            breaks: vec![Window {
                start_ms: start,
                end_ms: start + 15 * MIN,
            }],
            // On `cxone`, teams whose codes hold every state the plan asks for.
            team_id: Some([CXONE_TEAM_A, CXONE_TEAM_B][i % 2]),
            ..AgentPlan::default()
        });
    }
    let mut h = Harness::new(Engine::new(config).expect("valid"), tenant, T0);
    for &(at, agent, state, defer) in &plan.commands {
        let user_id = h.user(&format!("agent-{agent}"));
        let state = state.to_owned();
        let command = match defer {
            true => Command::TransitionWith {
                user_id,
                state,
                options: TransitionOptions::default().with_defer(),
            },
            false => Command::Transition { user_id, state },
        };
        h.command_at(T0 + at, command);
    }
    let observe = observing.is_some();
    if observe {
        let now = h.now();
        h.engine.start_observing(now).expect("cxone observes");
    }
    if let Some((at, down, step)) = plan.crash {
        h.drive_until(T0 + at);
        h.step_wall_clock(step);
        h.restart(down);
        if observe {
            let now = h.now();
            h.engine.start_observing(now).expect("cxone observes");
        }
    }
    if observe {
        // Long enough for every unknown outcome's time to be up, then quiet.
        h.drive_until(T0 + 60 * MIN);
        h.engine.stop_observing();
    }
    h.drive_bounded(2_000_000)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;

    let audit: Vec<AuditRecord> = h.audit_records();
    if std::env::var_os("CONTRADICTION_STATS").is_some() {
        let count = |c: ErrorCode| audit.iter().filter(|r| r.error_code == Some(c)).count();
        eprintln!(
            "records {} ok {} unknown {} violations {} rate-limited {} upstream {} settled {} applied {} replays {} crash {:?}",
            audit.len(),
            audit.iter().filter(|r| r.success).count(),
            count(ErrorCode::OutcomeUnknown),
            audit.iter().filter(|r| r.policy_violation).count(),
            count(ErrorCode::RateLimited),
            count(ErrorCode::UpstreamUnavailable),
            audit.iter().filter(|r| r.settles.is_some()).count(),
            h.tenant.accepted_changes().len(),
            h.tenant.ground_truth().idempotent_replays,
            plan.crash.map(|c| (c.1 > 0, c.2)),
        );
    }
    verify_chain(ChainHead::default(), &audit)
        .map_err(|e| TestCaseError::fail(format!("the chain breaks: {e}")))?;
    check(
        &audit,
        h.tenant.accepted_changes(),
        h.tenant.ground_truth().ready_accepted_during_break,
    )?;
    if observe {
        // Agents change on their own after the last poll: the tenant's final state is checked through the
        // true timeline instead.
        let mut truth = BTreeMap::new();
        for agent in 0..plan.breaks.len() {
            let name = format!("agent-{agent}");
            let until = h.now_ms();
            truth.insert(h.user(&name), h.tenant.truth_timeline(&name, until));
        }
        let intents: BTreeMap<String, u64> = h
            .records()
            .iter()
            .filter_map(|(_, r)| match r {
                Record::Intent(i) => Some((i.idempotency_key.clone(), i.at_ms)),
                _ => None,
            })
            .rev()
            .collect();
        return check_observed(&audit, &truth, &intents, h.tenant.accepted_changes());
    }
    for agent in 0..plan.breaks.len() {
        let name = format!("agent-{agent}");
        check_final_state(&audit, &h.user(&name), h.tenant.agent_state(&name), profile)?;
    }
    Ok(())
}

/// Observation records against the true timelines (by user id), and no-op records against the observations
/// they name.
fn check_observed(
    audit: &[AuditRecord],
    truth: &BTreeMap<String, Vec<TruthEntry>>,
    first_sends: &BTreeMap<String, u64>,
    accepted: &[(String, String, String)],
) -> Result<(), TestCaseError> {
    let mut observations = BTreeMap::new();
    for r in audit {
        let Some(o) = &r.observation else { continue };
        observations.insert(r.id.as_str(), r);
        let at = parse_iso8601(&o.tenant_time).expect("the tenant writes ISO 8601");
        let timeline = truth.get(&r.user_id).map(Vec::as_slice).unwrap_or_default();
        let held = timeline.iter().any(|t| {
            t.at_ms == at
                && t.state_name.eq_ignore_ascii_case(&o.tenant_state)
                && t.out_state_id == o.out_state_id
        });
        prop_assert!(
            held,
            "observed {} {:?} at {}, the tenant's timeline says {:?}",
            o.tenant_state,
            o.code,
            o.tenant_time,
            timeline
                .iter()
                .filter(|t| t.at_ms.abs_diff(at) < 60_000)
                .collect::<Vec<_>>()
        );
    }
    // A settlement "applied" by observation: the tenant applied the change, or (the tenant does not say who
    // made a change) someone else put the agent in that state inside the change's send window.
    let by_id: BTreeMap<&str, &AuditRecord> = audit.iter().map(|r| (r.id.as_str(), r)).collect();
    for r in audit {
        if !(r.success && r.attempts == 0 && r.settles.is_some()) {
            continue;
        }
        let key = r.idempotency_key.clone().unwrap_or_default();
        if accepted.iter().any(|(k, _, _)| *k == key) {
            continue;
        }
        let unknown = by_id[r.settles.as_deref().unwrap()];
        let from = first_sends.get(&key).copied().unwrap_or(0);
        let to = parse_iso8601(&unknown.timestamp).unwrap() + 12_000;
        let wanted = |t: &TruthEntry| {
            if r.new_state == READY {
                t.state_name == "Available"
            } else {
                t.state_name == "Unavailable"
                    && t.code.as_deref().is_some_and(|c| {
                        c.replace(' ', "_")
                            .eq_ignore_ascii_case(r.reason_code.as_deref().unwrap_or_default())
                    })
            }
        };
        let timeline = truth.get(&r.user_id).map(Vec::as_slice).unwrap_or_default();
        prop_assert!(
            timeline.iter().any(|t| wanted(t) && (from..=to).contains(&t.at_ms)),
            "settled as applied, but the tenant neither applied it nor showed {} in its send window {}..{}: {:?}",
            r.new_state,
            from,
            to,
            r
        );
    }
    for r in audit {
        let Some(relied) = &r.relies_on else { continue };
        let o = observations.get(relied.as_str());
        prop_assert!(
            o.is_some_and(|o| o.user_id == r.user_id && o.new_state == r.new_state),
            "{:?} relies on {:?}",
            r,
            o
        );
    }
    Ok(())
}

/// What the tenant records for an audited state: the state itself on `seed`; on `cxone`, READY, or the
/// unavailable code it was set with (`UNAVAILABLE_BREAK` for NOT_READY's `BREAK`).
fn tenant_state(r: &AuditRecord, profile: ProfileKind) -> String {
    match profile {
        ProfileKind::Cxone if r.new_state != READY => format!(
            "UNAVAILABLE_{}",
            r.reason_code.as_deref().unwrap_or_default()
        ),
        _ => r.new_state.clone(),
    }
}

/// The tenant holds the state of an agent's last audited success, unless an unknown outcome came after it.
fn check_final_state(
    audit: &[AuditRecord],
    user: &str,
    tenant_holds: Option<&str>,
    profile: ProfileKind,
) -> Result<(), TestCaseError> {
    let last = audit
        .iter()
        .filter(|r| r.user_id == user)
        .rfind(|r| r.success || r.error_code == Some(ErrorCode::OutcomeUnknown));
    if let Some(r) = last.filter(|r| r.success) {
        let expected = tenant_state(r, profile);
        prop_assert_eq!(
            tenant_holds,
            Some(expected.as_str()),
            "the log's last word on {} is {:?}, the tenant holds {:?}",
            user,
            r,
            tenant_holds
        );
    }
    Ok(())
}

/// The rule, checked against the tenant's ground truth.
fn check(
    audit: &[AuditRecord],
    accepted: &[(String, String, String)],
    ready_accepted_during_break: u64,
) -> Result<(), TestCaseError> {
    let mut last_by_key: BTreeMap<&str, &AuditRecord> = BTreeMap::new();
    for r in audit {
        if let Some(k) = &r.idempotency_key {
            last_by_key.insert(k, r);
        }
        if r.policy_violation {
            prop_assert!(
                r.idempotency_key.is_none(),
                "a sent change refused by policy: {:?}",
                r
            );
        }
    }
    let applied: BTreeMap<&str, (&str, &str)> = accepted
        .iter()
        .map(|(k, u, s)| (k.as_str(), (u.as_str(), s.as_str())))
        .collect();
    for (key, (user, state)) in &applied {
        let Some(r) = last_by_key.get(key) else {
            return Err(TestCaseError::fail(format!(
                "the tenant applied {state} for {user} ({key}) and the audit log has no record of it"
            )));
        };
        prop_assert!(
            r.success || r.error_code == Some(ErrorCode::OutcomeUnknown),
            "the tenant applied {} for {}, the audit log says {:?}",
            state,
            user,
            r
        );
    }
    for r in audit {
        // Observations, no-ops and settlements by observation are checked against the timeline
        // (`check_observed`).
        let by_observation = r.settles.is_some() && r.attempts == 0;
        if r.success && r.observation.is_none() && r.relies_on.is_none() && !by_observation {
            let key = r.idempotency_key.as_deref().unwrap_or_default();
            prop_assert!(
                applied.contains_key(key),
                "audited as applied, but the tenant never applied it: {:?}",
                r
            );
        }
    }
    prop_assert_eq!(ready_accepted_during_break, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x5eed_0c0d),
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_audit_log_never_contradicts_the_tenant(plan in plan()) {
        run(&plan, ProfileKind::Seed)?;
    }

    #[test]
    fn the_audit_log_never_contradicts_the_tenant_on_cxone(plan in plan()) {
        run(&plan, ProfileKind::Cxone)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0b5e_27e0),
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_audit_log_never_contradicts_the_tenant_while_observing(
        plan in plan(),
        skip in any::<bool>(),
    ) {
        run_with(&plan, ProfileKind::Cxone, Some(Observing { skip }))?;
    }
}

/// The property has teeth: the records the old engine wrote in the story of the core v2 issue (a refusal
/// for a change the tenant applied, a definite failure for one that may have been) are caught.
#[test]
fn a_contradiction_would_be_caught() {
    let sim = SimConfig::default();
    let config = Harness::engine_config_for_tenant(&sim, 1);
    let mut tenant = SimTenant::new(sim);
    tenant.add_agent(AgentPlan::on_shift("agent-0", T0 - MIN, T0 + 600 * MIN));
    let mut h = Harness::new(Engine::new(config).unwrap(), tenant, T0);
    h.transition("agent-0", "READY");
    h.drive().unwrap();
    let audit = h.audit_records();
    let accepted = h.tenant.accepted_changes().to_vec();
    check(&audit, &accepted, 0).unwrap();
    for (code, violation) in [
        (ErrorCode::MandatoryBreakViolation, true),
        (ErrorCode::UpstreamUnavailable, false),
    ] {
        let mut doctored = audit.clone();
        let r = doctored.last_mut().unwrap();
        r.success = false;
        r.error_code = Some(code);
        r.policy_violation = violation;
        assert!(check(&doctored, &accepted, 0).is_err(), "{code} not caught");
    }
    // A success the tenant never saw is caught too, and so is READY inside a break.
    assert!(check(&audit, &[], 0).is_err());
    assert!(check(&audit, &accepted, 1).is_err());
    // So is an older change applied after the last audited success (a resend out of order).
    check_final_state(&audit, "agent-0", Some("READY"), ProfileKind::Seed).unwrap();
    assert!(check_final_state(&audit, "agent-0", Some("NOT_READY"), ProfileKind::Seed).is_err());
}
