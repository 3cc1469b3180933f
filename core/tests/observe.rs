//! Observation on the `cxone` profile against the simulated tenant, on a virtual clock: external changes
//! reach the history within a poll interval, paging, a 503 on the poll, our own changes recognised as ours,
//! `OUTCOME_UNKNOWN` settled both ways, skip-if-in-effect, the heartbeat and staleness, and `seed` refusing.

use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, Harness, SimConfig, SimTenant, TruthSource, Window,
    WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    AuditRecord, CommandError, Engine, EngineConfig, ErrorCode, Event, ObservationHeartbeat,
    ObservationSource, OutcomeSettled, ProfileKind, RequestKind, StateObserved, TransitionId,
    NOT_READY, READY,
};

const T0: u64 = WORKDAY_EPOCH_MS;
const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const INTERVAL: u64 = 10 * SEC;

fn on_shift(name: &str) -> AgentPlan {
    AgentPlan {
        user_id: name.into(),
        shifts: vec![Window {
            start_ms: T0 - HOUR,
            end_ms: T0 + 8 * HOUR,
        }],
        ..AgentPlan::default()
    }
}

fn pair_with(
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimConfig),
) -> Harness {
    let mut sim = SimConfig::default();
    let mut cfg = Harness::engine_config_for_profile(&sim, 11, ProfileKind::Cxone);
    cfg.observe.interval_ms = INTERVAL;
    tweak(&mut cfg, &mut sim);
    let mut tenant = SimTenant::new(sim);
    for a in agents {
        tenant.add_agent(a);
    }
    let mut h = Harness::new(Engine::new(cfg).expect("valid"), tenant, T0);
    h.record_requests(true);
    h
}

/// A pair with the observer started and its first poll done.
fn observing(
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimConfig),
) -> Harness {
    let mut h = pair_with(agents, tweak);
    let now = h.now();
    h.engine.start_observing(now).expect("cxone observes");
    let until = h.now_ms() + 2 * SEC;
    h.drive_until(until);
    h
}

/// The events of one kind, in order.
fn events_of<T>(h: &Harness, pick: impl Fn(&Event) -> Option<&T>) -> Vec<T>
where
    T: Clone,
{
    h.events()
        .iter()
        .filter_map(|(_, e)| pick(e).cloned())
        .collect()
}

fn observed(h: &Harness) -> Vec<StateObserved> {
    events_of(h, |e| match e {
        Event::StateObserved(o) => Some(o),
        _ => None,
    })
}

fn settled(h: &Harness) -> Vec<OutcomeSettled> {
    events_of(h, |e| match e {
        Event::OutcomeSettled(s) => Some(s),
        _ => None,
    })
}

fn heartbeats(h: &Harness) -> Vec<ObservationHeartbeat> {
    events_of(h, |e| match e {
        Event::ObservationHeartbeat(b) => Some(b),
        _ => None,
    })
}

fn polls(h: &Harness) -> Vec<(u64, String)> {
    h.requests()
        .iter()
        .filter(|(_, r)| r.url.contains("/agents/states"))
        .map(|(at, r)| (*at, r.url.clone()))
        .collect()
}

fn failure_code(h: &Harness, id: TransitionId) -> Option<ErrorCode> {
    h.events().iter().find_map(|(_, e)| match e {
        Event::TransitionFailed(f) if f.transition_id == id => Some(f.error.code),
        _ => None,
    })
}

fn record(h: &Harness, id: &str) -> AuditRecord {
    h.audit_records()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no record {id}"))
}

#[test]
fn an_external_change_reaches_the_history_within_one_poll_interval() {
    let mut h = observing(vec![on_shift("alice"), on_shift("bob")], |_, _| {});
    let alice = h.user("alice");
    let first_polls = polls(&h);
    assert_eq!(first_polls.len(), 1, "{first_polls:?}");
    assert!(
        !first_polls[0].1.contains("updatedSince"),
        "the first poll reads everyone: {first_polls:?}"
    );
    // A supervisor puts alice on lunch.
    let at = h.now_ms() + 3 * SEC;
    h.drive_until(at);
    h.tenant
        .external_change(
            at,
            "alice",
            "Unavailable",
            Some("Lunch"),
            TruthSource::Supervisor,
        )
        .unwrap();
    h.drive_until(at + INTERVAL + 2 * SEC);
    let seen: Vec<_> = observed(&h)
        .into_iter()
        .filter(|o| o.user_id == alice && o.observation.code.as_deref() == Some("Lunch"))
        .collect();
    assert_eq!(seen.len(), 1, "{:?}", observed(&h));
    let o = &seen[0];
    assert_eq!(o.state, NOT_READY);
    assert_eq!(o.observation.source, ObservationSource::External);
    assert_eq!(o.observation.tenant_state, "Unavailable");
    assert_eq!(o.observation.at_ms, at, "the tenant's time of the change");
    // The history follows the tenant, from the tenant's time.
    let current = h.engine.history().current(&alice).unwrap().clone();
    assert_eq!(
        (current.state.as_str(), current.entered_at_ms),
        (NOT_READY, at)
    );
    // The observation is in the chain, marked as one, not as an attempt.
    let r = record(&h, &o.record_id);
    assert!(r.observation.is_some() && r.success && r.attempts == 0);
    assert_eq!(r.reason_code.as_deref(), Some("Lunch"));
    let report = h.engine.compliance_report(h.now());
    assert_eq!(report.total_transitions, 0, "observations are not attempts");
    assert!(report.observed_by_source["external"] >= 1);
    // Later polls pass the previous poll's lastPollTime back.
    let later = polls(&h);
    assert!(later.len() >= 2);
    assert!(
        later[1..]
            .iter()
            .all(|(_, url)| url.contains("updatedSince=")),
        "{later:?}"
    );
    // Nothing changed for bob after the baseline: no second observation of him.
    let bob = h.user("bob");
    assert!(observed(&h).iter().filter(|o| o.user_id == bob).count() <= 1);
}

#[test]
fn our_own_change_is_recognised_as_ours_and_not_counted_twice() {
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let alice = h.user("alice");
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + INTERVAL + 3 * SEC;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), None);
    let ours: Vec<_> = observed(&h)
        .into_iter()
        .filter(|o| o.user_id == alice && o.state == READY)
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", observed(&h));
    assert_eq!(ours[0].observation.source, ObservationSource::Ours);
    // One READY stretch in the history: the confirmation's, not a second one from the observation.
    let readies = h
        .engine
        .history()
        .timeline(&alice)
        .iter()
        .filter(|e| e.state == READY)
        .count();
    assert_eq!(readies, 1);
    let snapshot = h.engine.agents(h.now());
    let a = snapshot.iter().find(|a| a.user_id == alice).unwrap();
    assert_eq!((a.state.as_str(), a.source.as_str()), (READY, "ours"));
    assert!(!a.stale);
}

#[test]
fn a_state_left_and_entered_again_between_polls_is_not_mistaken_for_no_change() {
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let alice = h.user("alice");
    // The agent was in her session long before we watched: her stretch counts from when we started.
    let first = h.engine.history().timeline(&alice)[0].clone();
    assert!(first.entered_at_ms >= T0, "{first:?}");
    // She takes lunch herself, and the poll sees it.
    let at = h.now_ms() + 3 * SEC;
    h.drive_until(at);
    h.tenant
        .external_change(
            at,
            "alice",
            "Unavailable",
            Some("Lunch"),
            TruthSource::Agent,
        )
        .unwrap();
    h.drive_until(at + INTERVAL + 2 * SEC);
    assert_eq!(h.engine.history().current(&alice).unwrap().state, NOT_READY);
    // We make her READY; two seconds after it is confirmed she goes back to lunch, before the next poll.
    let id = h.transition(&alice, READY);
    let sent = h.now_ms();
    h.drive_until(sent + SEC);
    assert_eq!(failure_code(&h, id), None);
    assert_eq!(h.engine.history().current(&alice).unwrap().state, READY);
    let back = h.now_ms() + 2 * SEC;
    h.drive_until(back);
    h.tenant
        .external_change(
            back,
            "alice",
            "Unavailable",
            Some("Lunch"),
            TruthSource::Agent,
        )
        .unwrap();
    h.drive_until(back + INTERVAL + 2 * SEC);
    // The same state and code as the poll before, at a later tenant time: the history follows the tenant.
    let current = h.engine.history().current(&alice).unwrap().clone();
    assert_eq!(
        (current.state.as_str(), current.entered_at_ms),
        (NOT_READY, back)
    );
    let lunches = observed(&h)
        .into_iter()
        .filter(|o| o.user_id == alice && o.observation.code.as_deref() == Some("Lunch"))
        .count();
    assert_eq!(lunches, 2, "{:?}", observed(&h));
}

#[test]
fn our_own_change_to_a_state_outside_the_table_keeps_its_name_when_observed() {
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let alice = h.user("alice");
    // TRAINING is sent as Unavailable with the fallback code; its own observation must not rename it.
    let id = h.transition(&alice, "TRAINING");
    let until = h.now_ms() + INTERVAL + 3 * SEC;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), None);
    let ours: Vec<_> = observed(&h)
        .into_iter()
        .filter(|o| o.user_id == alice && o.observation.source == ObservationSource::Ours)
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", observed(&h));
    assert_eq!(ours[0].state, "TRAINING");
    assert_eq!(ours[0].observation.tenant_state, "Unavailable");
    let timeline = h.engine.history().timeline(&alice);
    let last = timeline.last().unwrap();
    assert_eq!(last.state, "TRAINING", "{timeline:?}");
    assert_eq!(timeline.iter().filter(|e| e.state == "TRAINING").count(), 1);
}

#[test]
fn the_poll_follows_next_links_across_pages() {
    let agents: Vec<AgentPlan> = (0..250)
        .map(|i| on_shift(&format!("agent-{i:03}")))
        .collect();
    let mut h = observing(agents, |c, _| c.observe.page_size = 100);
    let until = h.now_ms() + 5 * SEC;
    h.drive_until(until);
    let pages = polls(&h);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[1].1.contains("skip=100") && pages[2].1.contains("skip=200"),
        "{pages:?}"
    );
    let snapshot = h.engine.agents(h.now());
    assert_eq!(snapshot.len(), 250);
    let beats = heartbeats(&h);
    assert_eq!(beats.last().map(|b| (b.ok, b.agents)), Some((true, 250)));
}

#[test]
fn a_503_on_the_poll_backs_off_and_misses_nothing() {
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let alice = h.user("alice");
    let at = h.now_ms() + SEC;
    h.drive_until(at);
    h.tenant
        .external_change(
            at,
            "alice",
            "Unavailable",
            Some("Meeting"),
            TruthSource::Agent,
        )
        .unwrap();
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentStates,
        FaultKind::status(503, None),
        2,
    ));
    h.drive_until(at + 3 * INTERVAL);
    let retries = h
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::RetryScheduled(r) if r.kind == RequestKind::AgentStates && r.status == Some(503)))
        .count();
    assert_eq!(retries, 2);
    let meeting = observed(&h)
        .into_iter()
        .filter(|o| o.user_id == alice && o.observation.code.as_deref() == Some("Meeting"))
        .count();
    assert_eq!(meeting, 1, "the change made before the 503s is seen once");
    assert!(heartbeats(&h).last().unwrap().ok);
}

#[test]
fn an_unknown_outcome_that_was_applied_is_settled_as_applied() {
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let alice = h.user("alice");
    // The tenant applies the change and the answer is lost, every time.
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::DropAfter,
        100,
    ));
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + 5 * MIN;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), Some(ErrorCode::OutcomeUnknown));
    let unknown = h
        .audit_records()
        .into_iter()
        .find(|r| r.error_code == Some(ErrorCode::OutcomeUnknown))
        .unwrap();
    let s = settled(&h);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].applied, "{:?}", s[0]);
    assert_eq!(s[0].settles, unknown.id);
    let settlement = record(&h, &s[0].record_id);
    assert!(settlement.success);
    assert_eq!(settlement.settles.as_deref(), Some(unknown.id.as_str()));
    assert_eq!(settlement.idempotency_key, unknown.idempotency_key);
    // The settlement tells the same change as the unknown record: the same previous state, the state asked.
    assert_eq!(settlement.previous_state, unknown.previous_state);
    assert_eq!(settlement.new_state, READY);
    // Nothing was rewritten: the unknown record is still there as it was.
    assert_eq!(record(&h, &unknown.id), unknown);
    assert_eq!(h.engine.unsettled_outcomes(), 0);
    assert_eq!(
        h.engine.log_state().open_changes().count(),
        0,
        "the journal closed it"
    );
}

#[test]
fn an_unknown_outcome_that_never_arrived_is_settled_as_not_applied() {
    let mut h = observing(vec![on_shift("alice")], |c, _| {
        c.observe.settle_after_ms = MIN
    });
    let alice = h.user("alice");
    // The connection drops before the tenant reads any send.
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::DropBefore,
        100,
    ));
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + 6 * MIN;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), Some(ErrorCode::OutcomeUnknown));
    assert!(h.tenant.accepted_changes().is_empty());
    let s = settled(&h);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(!s[0].applied);
    assert!(s[0].evidence.contains("unchanged"), "{}", s[0].evidence);
    let settlement = record(&h, &s[0].record_id);
    assert!(!settlement.success);
    assert_eq!(settlement.error_code, Some(ErrorCode::NotApplied));
    // No state-history read was needed.
    assert!(!h
        .requests()
        .iter()
        .any(|(_, r)| r.url.contains("state-history")));
}

#[test]
fn an_unknown_outcome_the_tenant_cannot_decide_is_not_waited_for() {
    let mut h = observing(vec![on_shift("alice")], |c, _| {
        c.observe.settle_after_ms = MIN
    });
    let alice = h.user("alice");
    // She made herself Available before we asked for it: the tenant will show nothing new either way.
    let at = h.now_ms() + SEC;
    h.drive_until(at);
    h.tenant
        .external_change(at, "alice", "Available", None, TruthSource::Agent)
        .unwrap();
    h.drive_until(at + INTERVAL + 2 * SEC);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::DropBefore,
        100,
    ));
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + 6 * MIN;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), Some(ErrorCode::OutcomeUnknown));
    // Not settled either way (nothing is guessed), and not counted as something a host could wait for.
    assert!(settled(&h).is_empty(), "{:?}", settled(&h));
    assert_eq!(h.engine.unsettled_outcomes(), 0);
}

#[test]
fn a_later_external_change_makes_the_state_history_decide() {
    let mut h = observing(vec![on_shift("alice")], |c, _| {
        c.observe.settle_after_ms = 10 * MIN
    });
    let alice = h.user("alice");
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::DropBefore,
        100,
    ));
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + 3 * MIN;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), Some(ErrorCode::OutcomeUnknown));
    assert!(settled(&h).is_empty(), "not yet: its time is not up");
    // Someone else moves alice after our send: the snapshot alone cannot tell any more.
    let at = h.now_ms();
    h.tenant
        .external_change(
            at,
            "alice",
            "Unavailable",
            Some("Training"),
            TruthSource::Supervisor,
        )
        .unwrap();
    h.drive_until(at + 12 * MIN);
    let s = settled(&h);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(!s[0].applied);
    assert!(s[0].evidence.contains("state history"), "{}", s[0].evidence);
    assert!(h
        .requests()
        .iter()
        .any(|(_, r)| r.url.contains("state-history")));
}

#[test]
fn a_change_already_in_effect_is_not_sent_when_asked() {
    let mut h = observing(vec![on_shift("alice")], |c, _| {
        c.observe.skip_if_in_effect = true
    });
    let alice = h.user("alice");
    let at = h.now_ms() + SEC;
    h.drive_until(at);
    h.tenant
        .external_change(at, "alice", "Available", None, TruthSource::Agent)
        .unwrap();
    h.drive_until(at + INTERVAL + 2 * SEC);
    let seen = observed(&h)
        .into_iter()
        .find(|o| o.user_id == alice && o.state == READY)
        .expect("observed");
    let sets_before = h.tenant.accepted_changes().len();
    let id = h.transition(&alice, READY);
    let until = h.now_ms() + 5 * SEC;
    h.drive_until(until);
    assert_eq!(failure_code(&h, id), None);
    assert_eq!(h.tenant.accepted_changes().len(), sets_before, "not sent");
    let noop = h
        .audit_records()
        .into_iter()
        .find(|r| r.relies_on.is_some())
        .expect("a no-op record");
    assert!(noop.success && noop.attempts == 0);
    assert_eq!(noop.relies_on.as_deref(), Some(seen.record_id.as_str()));
    // Off by default: the same change is sent.
    let mut h = observing(vec![on_shift("alice")], |_, _| {});
    let at = h.now_ms() + SEC;
    h.drive_until(at);
    h.tenant
        .external_change(at, "alice", "Available", None, TruthSource::Agent)
        .unwrap();
    h.drive_until(at + INTERVAL + 2 * SEC);
    let alice = h.user("alice");
    h.transition(&alice, READY);
    let until = h.now_ms() + 5 * SEC;
    h.drive_until(until);
    assert_eq!(h.tenant.accepted_changes().len(), 1);
}

#[test]
fn the_heartbeat_says_when_observation_is_stale_and_when_it_recovers() {
    let mut h = observing(vec![on_shift("alice")], |c, _| {
        c.observe.stale_after_ms = 30 * SEC;
        c.retry.max_retries = 1;
    });
    let alice = h.user("alice");
    let first = heartbeats(&h);
    assert!(first.last().is_some_and(|b| b.ok && !b.stale));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentStates,
        FaultKind::status(503, None),
        1_000,
    ));
    let until = h.now_ms() + 2 * MIN;
    h.drive_until(until);
    let beats = heartbeats(&h);
    let last = beats.last().unwrap();
    assert!(!last.ok && last.stale, "{last:?}");
    assert!(last.lag_ms.is_some_and(|l| l > 30 * SEC));
    assert_eq!(
        last.error.as_ref().map(|e| e.code),
        Some(ErrorCode::UpstreamUnavailable)
    );
    let a = h
        .engine
        .agents(h.now())
        .into_iter()
        .find(|a| a.user_id == alice);
    assert!(a.is_none_or(|a| a.stale));
    h.tenant.clear_scripted_faults();
    let until = h.now_ms() + 2 * INTERVAL;
    h.drive_until(until);
    let last = heartbeats(&h).last().cloned().unwrap();
    assert!(last.ok && !last.stale, "{last:?}");
}

#[test]
fn seed_refuses_to_observe() {
    let sim = SimConfig::default();
    let cfg = Harness::engine_config_for_profile(&sim, 1, ProfileKind::Seed);
    let mut h = Harness::new(Engine::new(cfg).unwrap(), SimTenant::new(sim), T0);
    let now = h.now();
    let e = h.engine.start_observing(now).unwrap_err();
    assert_eq!(e, CommandError::ObserveUnsupported);
    assert_eq!(e.code().as_str(), "OBSERVE_UNSUPPORTED");
    h.drive().unwrap();
    assert!(h.requests().is_empty());
}

#[test]
fn a_simulated_day_matches_the_truth_within_a_poll_interval_per_change_with_observation() {
    use cxone_agent_state_core::sim::{compare_observation, ActivityConfig, WorkdayConfig};
    let config = WorkdayConfig {
        agents: 24,
        seed: 5,
        shift_hours: 4,
        profile: ProfileKind::Cxone,
        activity: ActivityConfig {
            agent_changes_per_hour: 4.0,
            contacts_per_hour: 8.0,
            supervisor_changes_per_hour: 1.0,
            log_in_out: true,
            ..ActivityConfig::default()
        },
        ..WorkdayConfig::default()
    };
    let c = compare_observation(&config).unwrap();
    assert_eq!(c.with.agents.len(), 24);
    let changes: u64 = c.with.agents.iter().map(|a| a.truth_changes).sum();
    assert!(
        changes > 24 * 10,
        "agents acted on their own: {changes} changes"
    );
    for a in &c.with.agents {
        assert!(
            a.within_bound(),
            "{}: working {} vs {} true, idle {} vs {} true, bound {}",
            a.user_id,
            a.working_ms,
            a.truth_working_ms,
            a.idle_ms,
            a.truth_idle_ms,
            a.bound_ms
        );
    }
    assert_eq!(c.with.agents_within_bound, 24);
    // Without observation the engine knows only its own changes, and is far off.
    assert!(
        c.without.agents_within_bound < 24,
        "{:?}",
        c.without.agents_within_bound
    );
    assert!(
        c.without.mean_utilization_error > 5.0 * c.with.mean_utilization_error.max(0.001),
        "without {} with {}",
        c.without.mean_utilization_error,
        c.with.mean_utilization_error
    );
    assert!(c.without.mean_idle_error_ms > c.with.mean_idle_error_ms);
    assert!(c.with.observed && !c.without.observed);
}
