//! `cxone` edges: one id per agent, the export's date range, a refresh grant refused for another reason than
//! `invalid_grant`, a refusal that makes the cached facts suspect, and a journal written on the other
//! profile.

use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, Harness, SimConfig, SimTenant, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    ChangeIntent, Engine, ErrorCode, Event, LogState, ProfileKind, Record, TransitionId,
};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;

fn pair(tweak: impl FnOnce(&mut SimConfig)) -> Harness {
    let mut sim = SimConfig::default();
    tweak(&mut sim);
    let cfg = Harness::engine_config_for_profile(&sim, 7, ProfileKind::Cxone);
    let mut tenant = SimTenant::new(sim);
    for name in ["alice", "bob"] {
        tenant.add_agent(AgentPlan::on_shift(name, T0 - 60 * MIN, T0 + 480 * MIN));
    }
    let mut h = Harness::new(Engine::new(cfg).unwrap(), tenant, T0);
    h.record_requests(true);
    h
}

fn outcome(h: &Harness, id: TransitionId) -> Result<String, ErrorCode> {
    h.events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(Ok(s.new_state.clone())),
            Event::TransitionFailed(f) if f.transition_id == id => Some(Err(f.error.code)),
            _ => None,
        })
        .expect("finished")
}

fn count(h: &Harness, part: &str) -> usize {
    h.requests()
        .iter()
        .filter(|(_, r)| r.url.contains(part))
        .count()
}

#[test]
fn an_agent_has_one_id_so_a_leading_zero_is_unknown_before_anything_is_sent() {
    let mut h = pair(|_| {});
    let alice = h.user("alice");
    let padded = format!("0{alice}");
    let a = h.transition(&alice, "NOT_READY");
    let b = h.transition(&padded, "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, a), Ok("NOT_READY".into()));
    assert_eq!(outcome(&h, b), Err(ErrorCode::UnknownAgent));
    assert_eq!(
        count(&h, "/state"),
        1,
        "only the canonical id reached the tenant"
    );
}

#[test]
fn the_export_starts_the_day_before_so_a_shift_from_yesterday_is_covered() {
    let mut h = pair(|_| {});
    let id = h.transition(&h.user("alice"), "READY");
    h.drive().unwrap();
    assert!(outcome(&h, id).is_ok());
    let body = h
        .requests()
        .iter()
        .find(|(_, r)| r.url.ends_with("/schedules/export"))
        .and_then(|(_, r)| r.body.clone())
        .unwrap();
    // T0 is 2026-01-05T08:00Z: three days from the 4th.
    assert!(
        body.contains(r#""startDate":"2026-01-04","endDate":"2026-01-06""#),
        "{body}"
    );
}

#[test]
fn a_refresh_refused_for_any_reason_falls_back_to_the_password_grant() {
    let mut h = pair(|sim| sim.token_ttl_s = 120);
    let first = h.transition(&h.user("alice"), "READY");
    h.drive().unwrap();
    assert!(outcome(&h, first).is_ok());
    h.drive_until(T0 + 90_000);
    // The refresh grant meets a 400 that is not `invalid_grant` (the tenant's form of the grant differs).
    h.tenant.script_fault(FaultRule::on(
        Endpoint::CxoneToken,
        FaultKind::status(400, None),
        1,
    ));
    let second = h.transition(&h.user("alice"), "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, second), Ok("PAUSED".into()));
    let grants: Vec<&str> = h
        .requests()
        .iter()
        .filter(|(_, r)| r.url.ends_with("/auth/token"))
        .map(|(_, r)| {
            let body = r.body.as_deref().unwrap_or_default();
            if body.contains("grant_type=refresh_token") {
                "refresh"
            } else {
                "password"
            }
        })
        .collect();
    assert_eq!(grants, ["password", "refresh", "password"]);
}

#[test]
fn a_404_to_a_state_change_makes_the_directory_be_read_again_at_the_next_change() {
    let mut h = pair(|_| {});
    let alice = h.user("alice");
    let first = h.transition(&alice, "NOT_READY");
    h.drive().unwrap();
    assert!(outcome(&h, first).is_ok());
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::status(404, None),
        1,
    ));
    let refused = h.transition(&alice, "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, refused), Err(ErrorCode::UnknownAgent));
    assert_eq!(count(&h, "/agents?"), 1);
    assert_eq!(count(&h, "/unavailable-codes"), 1);
    // Seconds later, not a minute: the agent's entry and its team's codes are read again.
    let again = h.transition(&alice, "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, again), Ok("PAUSED".into()));
    assert_eq!(count(&h, "/agents?"), 2);
    assert_eq!(count(&h, "/unavailable-codes"), 2);
}

#[test]
fn a_change_journaled_on_the_seed_profile_is_not_sent_again_through_cxone() {
    let mut h = pair(|_| {});
    let alice = h.user("alice");
    let mut state = LogState::default();
    state
        .apply(&Record::Intent(ChangeIntent {
            transition_id: TransitionId(1),
            user_id: alice.clone(),
            state: "READY".into(),
            reason_code: "WORKING".into(),
            idempotency_key: "k-seed".into(),
            approved_at_ms: T0 - 10_000,
            at_ms: T0 - 10_000,
            reference: None,
            profile: None,
            out_state_id: None,
            actor: None,
            override_: None,
            deferral: None,
        }))
        .unwrap();
    let now = h.now();
    let restored = h.engine.restore(now, state);
    h.drive().unwrap();
    assert_eq!((restored.resumed, restored.abandoned), (0, 1));
    assert_eq!(count(&h, "/state"), 0, "nothing sent");
    let audit = h.audit_records();
    assert_eq!(audit[0].error_code, Some(ErrorCode::OutcomeUnknown));
    assert!(
        audit[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("seed profile")),
        "{audit:?}"
    );
}
