//! `cxone` policy from schedule exports: decided on the tenant's clock, and kept fresh by background reads
//! (an export a change used is read again in the last tenth of its TTL, within a share of the WFM budget,
//! so a later change never waits for the WFM host).

use cxone_agent_state_core::sim::Window;
use cxone_agent_state_core::sim::{AgentPlan, Harness, SimConfig, SimTenant, WORKDAY_EPOCH_MS};
use cxone_agent_state_core::{Engine, ErrorCode, Event, ProfileKind};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;

fn exports(h: &Harness) -> Vec<u64> {
    h.requests()
        .iter()
        .filter(|(_, r)| r.url.ends_with("/schedules/export"))
        .map(|(at, _)| *at)
        .collect()
}

fn run(prefetch_percent: u8) -> (Harness, Vec<u64>) {
    let sim = SimConfig {
        latency_ms: 30,
        latency_jitter_ms: 0,
        ..SimConfig::default()
    };
    let mut cfg = Harness::engine_config_for_profile(&sim, 7, ProfileKind::Cxone);
    cfg.cxone.schedule_ttl_ms = 10 * MIN;
    cfg.cxone.schedule_prefetch_percent = prefetch_percent;
    let mut tenant = SimTenant::new(sim);
    for name in ["alice", "bob"] {
        tenant.add_agent(AgentPlan::on_shift(name, T0 - 60 * MIN, T0 + 480 * MIN));
    }
    let mut h = Harness::new(Engine::new(cfg).unwrap(), tenant, T0);
    h.record_requests(true);
    let alice = h.user("alice");
    // Alice changes state at 0 and 10.5 min (past the first read's TTL); bob only at 0 (his export is used once, then read ahead once).
    h.transition(&alice, "NOT_READY");
    h.transition(&h.user("bob"), "NOT_READY");
    h.drive_until(T0 + 10 * MIN + 30_000);
    h.transition(&alice, "READY");
    h.drive_until(T0 + 25 * MIN);
    let latencies = h
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::StateChanged(s) => Some(s.latency_ms),
            _ => None,
        })
        .collect();
    (h, latencies)
}

#[test]
fn a_used_export_is_read_again_before_it_runs_out_so_no_change_waits_for_it() {
    let (with, latencies) = run(50);
    let reads = exports(&with);
    // Two first reads, then one background read each in the last tenth of the TTL (from 9 min); alice used
    // hers again at 10.5 min, so it is read ahead once more (from 18 min), bob's is not: five in all.
    assert_eq!(reads.len(), 5, "{reads:?}");
    let within = |at: u64, from: u64| (T0 + from..T0 + from + 30_000).contains(&at);
    assert!(
        reads[2..4].iter().all(|&at| within(at, 9 * MIN)),
        "{reads:?}"
    );
    assert!(within(reads[4], 18 * MIN), "{reads:?}");
    // Alice's second change found a fresh export: one state change, no export, on its way.
    let last = *latencies.last().unwrap();
    let (without, latencies_off) = run(0);
    let last_off = *latencies_off.last().unwrap();
    assert!(last < last_off, "prefetched {last} ms vs {last_off} ms");
    // Without prefetching, the export is read when a change needs it: three reads in all.
    assert_eq!(exports(&without).len(), 3, "{:?}", exports(&without));
}

/// The client's wall clock runs an hour slow. By its own clock the break (T0 to T0+15 min) is an hour away;
/// by the tenant's it has begun. The export's times are the tenant's, so READY is refused: policy reads the
/// tenant's clock from its answers' `Date`.
#[test]
fn a_client_clock_an_hour_slow_still_refuses_ready_in_a_break() {
    let sim = SimConfig::default();
    let cfg = Harness::engine_config_for_profile(&sim, 7, ProfileKind::Cxone);
    let mut tenant = SimTenant::new(sim);
    tenant.add_agent(AgentPlan {
        user_id: "alice".into(),
        shifts: vec![Window {
            start_ms: T0 - 120 * MIN,
            end_ms: T0 + 480 * MIN,
        }],
        breaks: vec![Window {
            start_ms: T0,
            end_ms: T0 + 15 * MIN,
        }],
        ..AgentPlan::default()
    });
    let mut h = Harness::new(Engine::new(cfg).unwrap(), tenant, T0 + MIN);
    h.step_wall_clock(-60 * MIN as i64);
    let alice = h.user("alice");
    let ready = h.transition(&alice, "READY");
    h.drive().unwrap();
    let failed = h.events().iter().find_map(|(_, e)| match e {
        Event::TransitionFailed(f) if f.transition_id == ready => Some(f.error.code),
        _ => None,
    });
    assert_eq!(failed, Some(ErrorCode::MandatoryBreakViolation));
    assert_eq!(h.tenant.ground_truth().ready_accepted_during_break, 0);
    assert_eq!(h.tenant.agent_state("alice"), None, "nothing was set");
}
