//! The engine on the `cxone` profile against the simulated tenant: discovery, the shared facts (directory,
//! schedule exports, unavailable codes) and `SetAgentState`, on a virtual clock.

use cxone_agent_state_core::sim::{
    AgentPlan, Harness, SimConfig, SimTenant, Window, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{Engine, EngineConfig, ErrorCode, Event, ProfileKind, TransitionId};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

fn window(start_ms: u64, end_ms: u64) -> Window {
    Window { start_ms, end_ms }
}

fn pair_with(
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimConfig),
) -> Harness {
    let mut sim = SimConfig::default();
    let mut cfg = Harness::engine_config_for_profile(&sim, 7, ProfileKind::Cxone);
    tweak(&mut cfg, &mut sim);
    let mut tenant = SimTenant::new(sim);
    for a in agents {
        tenant.add_agent(a);
    }
    let mut h = Harness::new(Engine::new(cfg).expect("valid"), tenant, T0);
    h.record_requests(true);
    h
}

fn outcome(h: &Harness, id: TransitionId) -> Result<String, (ErrorCode, String)> {
    h.events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(Ok(s.new_state.clone())),
            Event::TransitionFailed(f) if f.transition_id == id => {
                Some(Err((f.error.code, f.error.message.clone())))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("transition {id:?} never finished"))
}

#[test]
fn a_change_discovers_reads_the_facts_once_and_sets_the_state() {
    let mut h = pair_with(
        vec![AgentPlan {
            user_id: "alice".into(),
            shifts: vec![window(T0 - HOUR, T0 + 8 * HOUR)],
            breaks: vec![window(T0 + HOUR, T0 + HOUR + 15 * MIN)],
            ..AgentPlan::default()
        }],
        |_, _| {},
    );
    let alice = h.user("alice");
    let a = h.transition(&alice, "NOT_READY");
    let b = h.transition(&alice, "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, a), Ok("NOT_READY".into()));
    assert_eq!(outcome(&h, b), Ok("READY".into()));
    for (_, r) in h.requests() {
        eprintln!("{:?} {}", r.method, r.url);
    }
    assert_eq!(h.tenant.agent_state("alice"), Some("READY"));
}

#[test]
fn a_default_day_on_cxone_never_sends_ready_into_a_break() {
    use cxone_agent_state_core::sim::{DayRun, WorkdayConfig};
    let mut day = DayRun::new(&WorkdayConfig {
        profile: ProfileKind::Cxone,
        ..WorkdayConfig::default()
    })
    .unwrap();
    day.run(|_, _| {}).unwrap();
    let s = day.summary();
    eprintln!(
        "{:?} {:?} per={}",
        s.ground_truth,
        (
            s.report.success_count,
            s.report.violation_count,
            s.report.total_transitions
        ),
        s.api_requests_per_transition
    );
    assert_eq!(s.ground_truth.ready_accepted_during_break, 0);
    assert!(s.report.violation_count > 0, "rule breakers were stopped");
    assert!(s.report.success_count > s.report.total_transitions / 2);
    assert_eq!(s.report.total_transitions, s.commands);
    assert_eq!(
        s.ground_truth.rate_limited, 0,
        "the pacers kept under the limits"
    );
    assert!(s.ground_truth.faults_injected > 0);
}
