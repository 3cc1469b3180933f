//! Scenario tests: the engine drives the simulated tenant on a virtual clock (quinn's `Pair` style).
//! Each reads as a story: set up → act → drive → assert on events, requests and the tenant's ground truth.

use cxone_agent_state_core::sim::DayRun;
use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, Harness, SimConfig, SimTenant, Window,
    WorkdayConfig, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    verify_chain, ChainError, ChainHead, Engine, EngineConfig, ErrorCode, Event, HttpRequest, Now,
    Record, Secret, TransitionId,
};

const T0: u64 = WORKDAY_EPOCH_MS;
const HOUR: u64 = 3_600_000;
const MIN: u64 = 60_000;

fn window(from: u64, to: u64) -> Window {
    Window {
        start_ms: from,
        end_ms: to,
    }
}

/// An agent on shift all day with no breaks.
fn on_shift(user: &str) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: vec![window(T0 - HOUR, T0 + 10 * HOUR)],
        breaks: vec![],
        ..AgentPlan::default()
    }
}

/// An agent on shift whose mandatory break runs 10:00–10:45 (notice from 09:55).
fn on_break_at_ten(user: &str) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: vec![window(T0 - HOUR, T0 + 10 * HOUR)],
        breaks: vec![window(T0 + 2 * HOUR, T0 + 2 * HOUR + 45 * MIN)],
        ..AgentPlan::default()
    }
}

fn unscheduled(user: &str) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: vec![],
        breaks: vec![],
        ..AgentPlan::default()
    }
}

fn engine_config(tenant: &SimConfig) -> EngineConfig {
    Harness::engine_config_for_tenant(tenant, 7)
}

fn pair_with(
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimConfig),
) -> Harness {
    let mut sim = SimConfig::default();
    let mut cfg = engine_config(&sim);
    tweak(&mut cfg, &mut sim);
    let mut tenant = SimTenant::new(sim);
    for a in agents {
        tenant.add_agent(a);
    }
    let engine = Engine::new(cfg).expect("valid config");
    let mut h = Harness::new(engine, tenant, T0);
    h.record_requests(true);
    h
}

fn pair(agents: Vec<AgentPlan>) -> Harness {
    pair_with(agents, |_, _| {})
}

/// The final event of a transition: `Ok(new state)` or `Err(code)`.
fn outcome(h: &Harness, id: TransitionId) -> Result<String, ErrorCode> {
    h.events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(Ok(s.new_state.clone())),
            Event::TransitionFailed(f) if f.transition_id == id => Some(Err(f.error.code)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("transition {id:?} never finished"))
}

fn requests_to(h: &Harness, path_part: &str) -> Vec<(u64, HttpRequest)> {
    h.requests()
        .iter()
        .filter(|(_, r)| r.url.contains(path_part))
        .cloned()
        .collect()
}

#[test]
fn happy_path_sends_token_schedule_break_and_state() {
    let mut h = pair(vec![on_shift("alice")]);
    let id = h.transition("alice", "READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert_eq!(h.tenant.agent_state("alice"), Some("READY"));
    let paths: Vec<String> = h
        .requests()
        .iter()
        .map(|(_, r)| r.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/oauth2/token",
            "/api/v2/schedules/users/alice",
            "/api/v2/breaks/users/alice/status",
            "/api/v2/users/alice/state"
        ]
    );
    let (_, set) = &h.requests()[3];
    assert_eq!(
        set.body.as_deref(),
        Some(r#"{"reasonCode":"WORKING","state":"READY"}"#)
    );
    assert!(set
        .header("authorization")
        .unwrap()
        .starts_with("Bearer simtok-"));
    assert!(set.header("idempotency-key").is_some());

    let audit = h.audit_records();
    assert_eq!(audit.len(), 1);
    let r = &audit[0];
    assert!(r.success && !r.policy_violation);
    assert_eq!(r.reason_code.as_deref(), Some("WORKING"));
    assert_eq!(r.attempts, 3);
    assert!(r.latency_ms > 0, "latency covers the round trips");
    // The intent was persisted before the state change went out, and closed by the audit record.
    let kinds: Vec<&str> = h
        .records()
        .iter()
        .map(|(_, r)| match r {
            Record::Intent(_) => "intent",
            Record::Audit(_) => "audit",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["intent", "audit"]);
    assert_eq!(h.log_state().open_changes().count(), 0);
}

#[test]
fn unscheduled_agent_is_refused_without_a_state_change() {
    let mut h = pair(vec![unscheduled("bob")]);
    let id = h.transition("bob", "READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, id), Err(ErrorCode::AgentNotScheduled));
    assert!(requests_to(&h, "/state").is_empty(), "no change was sent");
    assert!(
        requests_to(&h, "/breaks/").is_empty(),
        "an unscheduled agent needs no break lookup"
    );
    assert!(h.events().iter().any(
        |(_, e)| matches!(e, Event::PolicyViolation(v) if v.code == ErrorCode::AgentNotScheduled)
    ));
    assert_eq!(h.engine.violation_count(), 1);
    assert!(h.audit_records()[0].policy_violation);
}

#[test]
fn mandatory_break_blocks_ready_but_allows_not_ready() {
    let mut h = pair(vec![on_break_at_ten("carol")]);
    h.drive_until(T0 + 2 * HOUR + 5 * MIN);
    let ready = h.transition("carol", "READY");
    h.drive().unwrap();
    let not_ready = h.transition("carol", "NOT_READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, ready), Err(ErrorCode::MandatoryBreakViolation));
    assert_eq!(outcome(&h, not_ready), Ok("NOT_READY".into()));
    assert_eq!(
        requests_to(&h, "/breaks/").len(),
        1,
        "NOT_READY cannot be refused by a break, so it skips the lookup"
    );
    assert_eq!(h.tenant.ground_truth().ready_accepted_during_break, 0);
    assert_eq!(h.tenant.agent_state("carol"), Some("NOT_READY"));
    let report = h.engine.compliance_report(h.now());
    assert_eq!(report.violation_count, 1);
    assert_eq!(report.success_count, 1);
}

#[test]
fn a_break_that_is_due_soon_already_blocks_ready() {
    // The tenant flags the break five minutes ahead; READY at 09:57 is refused too.
    let mut h = pair(vec![on_break_at_ten("carol")]);
    h.drive_until(T0 + 2 * HOUR - 3 * MIN);
    let id = h.transition("carol", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::MandatoryBreakViolation));
}

#[test]
fn retry_after_of_a_429_is_honoured() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::RateLimit { retry_after_s: 7 },
        1,
    ));
    let id = h.transition("alice", "NOT_READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, id), Ok("NOT_READY".into()));
    let sets = requests_to(&h, "/state");
    assert_eq!(sets.len(), 2);
    let waited = sets[1].0 - sets[0].0;
    assert!(waited >= 7_000, "waited only {waited} ms");
    // The same change keeps its idempotency key across the retry.
    assert_eq!(
        sets[0].1.header("idempotency-key"),
        sets[1].1.header("idempotency-key")
    );
    let retry = h
        .events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::RetryScheduled(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((retry.status, retry.retry), (Some(429), 1));
    assert!(retry.delay_ms >= 7_000);
}

#[test]
fn a_429_pauses_every_request_to_the_tenant() {
    let mut h = pair(vec![on_shift("alice"), on_shift("dave")]);
    // Warm the token so both changes go straight to their lookups.
    let warm = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert!(outcome(&h, warm).is_ok());
    h.tenant.script_fault(FaultRule {
        user_id: Some("alice".into()),
        ..FaultRule::on(
            Endpoint::SetState,
            FaultKind::RateLimit { retry_after_s: 20 },
            1,
        )
    });
    let start = h.now_ms();
    h.transition("alice", "NOT_READY");
    // Let alice's 429 land, then dave asks.
    h.drive_until(start + 1_000);
    let dave = h.transition("dave", "NOT_READY");
    h.drive().unwrap();
    assert!(outcome(&h, dave).is_ok());
    let dave_first = requests_to(&h, "/dave")[0].0;
    let limited_at = requests_to(&h, "/alice/state")[1].0; // the 429'd request
    assert!(
        dave_first >= limited_at + 20_000,
        "dave's lookup went out {} ms after the 429",
        dave_first - limited_at
    );
}

#[test]
fn a_persistent_500_after_sending_ends_outcome_unknown() {
    // Unlike a 503, a 500 may come after the tenant did the work.
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(500, None),
        10,
    ));
    let id = h.transition("alice", "NOT_READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::OutcomeUnknown));
    assert_eq!(requests_to(&h, "/state").len(), 4);
    assert_eq!(h.engine.violation_count(), 0);
}

#[test]
fn persistent_503_is_retried_three_times_then_fails() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(503, None),
        10,
    ));
    let id = h.transition("alice", "NOT_READY");
    h.drive().unwrap();

    // A 503 may come from a proxy after it forwarded the send: unknown, not a definite failure.
    assert_eq!(outcome(&h, id), Err(ErrorCode::OutcomeUnknown));
    let sets = requests_to(&h, "/state");
    assert_eq!(sets.len(), 4, "one try and three retries");
    // The reference schedule: 1000·2^n + jitter in [0, 1000).
    for (n, pair) in sets.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let base = 1000 << (n + 1);
        assert!(
            (base..base + 1000 + 100).contains(&gap),
            "retry {}: gap {gap}",
            n + 1
        );
    }
    assert_eq!(
        h.engine.violation_count(),
        0,
        "an outage is not a policy violation"
    );
    let r = &h.audit_records()[0];
    assert_eq!(r.error_code, Some(ErrorCode::OutcomeUnknown));
    assert!(!r.policy_violation);

    // Before anything was sent, the same outage is a definite failure.
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Schedule,
        FaultKind::status(503, None),
        10,
    ));
    let id = h.transition("alice", "NOT_READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::UpstreamUnavailable));
    assert!(requests_to(&h, "/state").is_empty());
}

#[test]
fn a_4xx_to_a_resend_after_a_lost_answer_is_unknown_not_a_refusal() {
    for status in [403u16, 404, 408, 409, 422] {
        let mut h = pair(vec![on_shift("alice")]);
        h.tenant
            .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
        h.tenant.script_fault(FaultRule::on(
            Endpoint::SetState,
            FaultKind::status(status, None),
            if status == 408 { 10 } else { 1 },
        ));
        let id = h.transition("alice", "PAUSED");
        h.drive().unwrap();
        assert_eq!(h.tenant.agent_state("alice"), Some("PAUSED"), "{status}");
        assert_eq!(outcome(&h, id), Err(ErrorCode::OutcomeUnknown), "{status}");
    }
    // The same 4xx to a first send is the tenant's refusal.
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(409, None),
        1,
    ));
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::Conflict));
}

#[test]
fn validation_lookups_are_retried_too() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Schedule,
        FaultKind::status(502, None),
        2,
    ));
    let id = h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert_eq!(requests_to(&h, "/schedules/").len(), 3);
}

#[test]
fn exhausted_429s_without_retry_after_give_rate_limited() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Schedule,
        FaultKind::status(429, None),
        4,
    ));
    let id = h.transition("alice", "IDLE");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::RateLimited));
    assert_eq!(
        requests_to(&h, "/schedules/").len(),
        4,
        "one try and three retries"
    );
}

#[test]
fn a_429_with_retry_after_spends_no_retry_and_sustained_throttling_ends_at_the_window() {
    // Five 429s with Retry-After: more than the three retries the budget has, all waited out.
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::RateLimit { retry_after_s: 5 },
        5,
    ));
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("PAUSED".into()));
    assert_eq!(requests_to(&h, "/state").len(), 6);

    // A tenant that never stops throttling: the change gives up when its commit window closes, as
    // RATE_LIMITED (a 429 is refused before processing, so nothing was applied).
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::RateLimit { retry_after_s: 7 },
        1_000,
    ));
    let start = h.now_ms();
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::RateLimited));
    let sets = requests_to(&h, "/state");
    let window = h.engine.config().commit_window_ms;
    assert!(sets.len() > 10, "kept trying: {}", sets.len());
    let last = sets.last().unwrap().0;
    assert!(
        last - start <= window,
        "no send after the window ({} ms)",
        last - start
    );
    assert_eq!(h.tenant.ground_truth().state_changes_accepted, 0);
}

#[test]
fn a_revoked_token_is_refreshed_once_and_the_change_succeeds() {
    let mut h = pair(vec![on_shift("alice")]);
    let first = h.transition("alice", "READY");
    h.drive().unwrap();
    assert!(outcome(&h, first).is_ok());
    h.tenant.revoke_tokens();
    let second = h.transition("alice", "PAUSED");
    h.drive().unwrap();

    assert_eq!(outcome(&h, second), Ok("PAUSED".into()));
    assert_eq!(h.tenant.ground_truth().tokens_issued, 2);
    assert_eq!(
        h.tenant.ground_truth().responses_by_status.get(&401),
        Some(&1)
    );
}

#[test]
fn a_second_401_fails_unauthorized() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Schedule,
        FaultKind::Unauthorized,
        2,
    ));
    let id = h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::Unauthorized));
    assert_eq!(
        h.tenant.ground_truth().tokens_issued,
        2,
        "one refresh, no more"
    );
}

#[test]
fn invalid_client_fails_auth_without_retrying() {
    let mut h = pair_with(vec![on_shift("alice"), on_shift("dave")], |cfg, _| {
        cfg.credentials.client_secret = Secret::new("wrong-secret-value");
    });
    let a = h.transition("alice", "READY");
    let d = h.transition("dave", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, a), Err(ErrorCode::AuthFailed));
    assert_eq!(outcome(&h, d), Err(ErrorCode::AuthFailed));
    assert_eq!(requests_to(&h, "/oauth2/token").len(), 1);
    assert_eq!(h.requests().len(), 1, "nothing else was sent");
    let text = format!("{:?}", h.events());
    assert!(!text.contains("wrong-secret-value"));
}

#[test]
fn fifty_concurrent_transitions_share_one_token_request() {
    let agents: Vec<_> = (0..50).map(|i| on_shift(&format!("a{i}"))).collect();
    let mut h = pair(agents);
    let ids: Vec<_> = (0..50)
        .map(|i| h.transition(&format!("a{i}"), "NOT_READY"))
        .collect();
    h.drive().unwrap();
    for id in ids {
        assert!(outcome(&h, id).is_ok());
    }
    assert_eq!(requests_to(&h, "/oauth2/token").len(), 1);
    assert_eq!(h.tenant.ground_truth().tokens_issued, 1);
}

#[test]
fn the_token_is_refreshed_inside_its_last_minute() {
    let mut h = pair_with(vec![on_shift("alice")], |_, sim| sim.token_ttl_s = 600);
    h.transition("alice", "READY");
    h.drive().unwrap();
    // 8 min later: more than 60 s left, so the cached token serves.
    h.drive_until(T0 + 8 * MIN);
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(h.tenant.ground_truth().tokens_issued, 1);
    // 9.5 min after issue: less than 60 s left, so it is refreshed first.
    h.drive_until(T0 + 9 * MIN + 30_000);
    h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(h.tenant.ground_truth().tokens_issued, 2);
    assert_eq!(h.tenant.ground_truth().responses_by_status.get(&401), None);
}

#[test]
fn a_thousand_transitions_are_paced_to_the_limit_without_a_429() {
    // 250 agents, four changes each, all asked for at once.
    let agents: Vec<_> = (0..250).map(|i| on_shift(&format!("p{i:03}"))).collect();
    let mut h = pair(agents);
    h.record_requests(false);
    let states = ["READY", "PAUSED", "READY", "NOT_READY"];
    let mut ids = Vec::new();
    for s in states {
        for i in 0..250 {
            ids.push(h.transition(&format!("p{i:03}"), s));
        }
    }
    h.drive().unwrap();
    for id in &ids {
        assert!(outcome(&h, *id).is_ok(), "{id:?}");
    }
    let truth = h.tenant.ground_truth();
    assert_eq!(truth.rate_limited, 0);
    assert_eq!(truth.responses_by_status.get(&429), None);
    // The least time in which a 100/min bucket of 100 admits N requests.
    let n = truth.total_requests;
    let bound_ms = (n - 100) * 60_000 / 100;
    let took = h.now_ms() - T0;
    assert!(
        took as f64 <= bound_ms as f64 * 1.05,
        "took {took} ms for {n} requests; the rate bound is {bound_ms} ms"
    );
    assert!(took >= bound_ms, "faster than the limit allows?");
}

#[test]
fn changes_for_one_agent_run_one_at_a_time_in_order() {
    let mut h = pair(vec![on_shift("alice"), on_shift("dave")]);
    let order = ["READY", "NOT_READY", "PAUSED", "READY", "IDLE"];
    for s in order {
        h.transition("alice", s);
        h.transition("dave", s);
    }
    h.drive().unwrap();
    let alice: Vec<&str> = h
        .tenant
        .accepted_changes()
        .iter()
        .filter(|(_, u, _)| u == "alice")
        .map(|(_, _, s)| s.as_str())
        .collect();
    assert_eq!(alice, order);
    // Never two requests for alice in flight at once: each goes out after the previous answer arrived.
    let alice_audit: Vec<_> = h
        .audit_records()
        .into_iter()
        .filter(|r| r.user_id == "alice")
        .collect();
    let prev: Vec<Option<&str>> = alice_audit
        .iter()
        .map(|r| r.previous_state.as_deref())
        .collect();
    assert_eq!(
        prev,
        [
            None,
            Some("READY"),
            Some("NOT_READY"),
            Some("PAUSED"),
            Some("READY")
        ]
    );
    let sets = requests_to(&h, "/alice/state");
    let changed: Vec<u64> = h
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::StateChanged(s) if s.user_id == "alice" => Some(*t),
            _ => None,
        })
        .collect();
    for i in 1..sets.len() {
        assert!(
            sets[i].0 >= changed[i - 1],
            "request {i} overlapped the one before"
        );
    }
}

#[test]
fn secrets_never_reach_debug_events_errors_or_the_audit_log() {
    const SECRET: &str = "s3cr3t-client-secret";
    let mut h = pair_with(vec![on_shift("alice"), unscheduled("bob")], |cfg, sim| {
        cfg.credentials.client_secret = Secret::new(SECRET);
        sim.client_secret = SECRET.into();
    });
    h.transition("alice", "READY");
    h.transition("bob", "READY");
    h.tenant.script_fault(FaultRule::on(
        Endpoint::BreakStatus,
        FaultKind::Unauthorized,
        1,
    ));
    h.drive().unwrap();
    let tokens: Vec<String> = requests_to(&h, "/api/")
        .iter()
        .filter_map(|(_, r)| r.header("authorization").map(|a| a[7..].to_owned()))
        .collect();
    assert!(!tokens.is_empty());
    let surfaces = [
        format!("{:?}", h.engine),
        format!("{:?}", h.engine.config()),
        format!("{:?}", h.events()),
        serde_json::to_string(&h.audit_records()).unwrap(),
        serde_json::to_string(&h.engine.compliance_report(h.now())).unwrap(),
        format!("{:?}", h.requests()),
    ];
    for s in &surfaces {
        assert!(!s.contains(SECRET), "secret leaked: {s}");
        for t in &tokens {
            assert!(!s.contains(t.as_str()), "token leaked: {s}");
        }
    }
}

#[test]
fn audit_chain_verifies_and_detects_a_tampered_record() {
    let mut h = pair(vec![on_shift("alice"), unscheduled("bob")]);
    for s in ["READY", "PAUSED", "READY"] {
        h.transition("alice", s);
        h.transition("bob", s);
    }
    h.drive().unwrap();
    let records = h.audit_records();
    assert_eq!(records.len(), 6);
    let head = verify_chain(ChainHead::default(), &records).unwrap();
    assert_eq!(&head, h.engine.chain_head());

    let mut tampered = records.clone();
    tampered[3].success = !tampered[3].success;
    assert_eq!(
        verify_chain(ChainHead::default(), &tampered),
        Err(ChainError::HashMismatch { index: 3, seq: 3 })
    );
    let mut reordered = records.clone();
    reordered.swap(1, 2);
    assert_eq!(
        verify_chain(ChainHead::default(), &reordered)
            .unwrap_err()
            .index(),
        1
    );
}

#[test]
fn a_restarted_engine_continues_the_chain() {
    let mut h = pair(vec![on_shift("alice")]);
    h.transition("alice", "READY");
    h.drive().unwrap();
    let restored = h.restart(0);
    assert_eq!((restored.resumed, restored.abandoned), (0, 0));
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    let all = h.audit_records();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].seq, 1);
    verify_chain(ChainHead::default(), &all).unwrap();
}

#[test]
fn the_same_seed_gives_an_identical_audit_log() {
    let run = |seed: u64| {
        let mut day = DayRun::new(&WorkdayConfig {
            agents: 30,
            seed,
            fault_rate: 0.05,
            ..WorkdayConfig::default()
        })
        .unwrap();
        let mut log = Vec::new();
        day.run(|_, r| {
            if let Record::Audit(r) = r {
                log.push(serde_json::to_string(r).unwrap());
            }
        })
        .unwrap();
        log.join("\n")
    };
    let a = run(11);
    assert!(a.len() > 1000);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

#[test]
fn invalid_input_is_refused_before_any_request() {
    let mut h = pair(vec![on_shift("alice")]);
    let bad_state = h.transition("alice", "ready");
    let bad_user = h.transition("../admin", "READY");
    let slash = h.transition("a/b", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, bad_state), Err(ErrorCode::InvalidState));
    assert_eq!(outcome(&h, bad_user), Err(ErrorCode::InvalidUserId));
    assert_eq!(outcome(&h, slash), Err(ErrorCode::InvalidUserId));
    assert!(h.requests().is_empty());
    assert_eq!(h.audit_records().len(), 3, "every attempt is audited");
    assert_eq!(h.engine.violation_count(), 0);
}

#[test]
fn a_malformed_body_gives_bad_response() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::BreakStatus,
        FaultKind::Malformed,
        1,
    ));
    let id = h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::BadResponse));
    assert!(requests_to(&h, "/state").is_empty());
}

#[test]
fn a_change_whose_answer_was_lost_is_applied_once() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("PAUSED".into()));
    assert_eq!(h.tenant.ground_truth().state_changes_accepted, 1);
    assert_eq!(h.tenant.ground_truth().idempotent_replays, 1);
}

#[test]
fn an_answer_slower_than_the_timeout_is_retried() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Schedule,
        FaultKind::Slow { extra_ms: 30_000 },
        1,
    ));
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("PAUSED".into()));
    let lookups = requests_to(&h, "/schedules/");
    assert_eq!(lookups.len(), 2);
    assert!(lookups[1].0 - lookups[0].0 >= 10_000, "the timeout is 10 s");
}

#[test]
fn the_schedule_answer_is_cached_for_its_ttl() {
    let mut h = pair(vec![on_shift("alice")]);
    h.transition("alice", "READY");
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(requests_to(&h, "/schedules/").len(), 1);
    h.drive_until(T0 + 2 * MIN);
    h.transition("alice", "NOT_READY");
    h.drive().unwrap();
    assert_eq!(requests_to(&h, "/schedules/").len(), 2);

    // TTL 0: the reference's call-every-time behaviour.
    let mut h = pair_with(vec![on_shift("alice")], |cfg, _| cfg.schedule_ttl_ms = 0);
    h.transition("alice", "READY");
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert_eq!(requests_to(&h, "/schedules/").len(), 2);
}

#[test]
fn validate_checks_policy_without_changing_or_auditing() {
    let mut h = pair(vec![on_break_at_ten("carol")]);
    h.drive_until(T0 + 2 * HOUR + MIN);
    h.validate("carol", "READY");
    h.validate("carol", "TRAINING");
    h.drive().unwrap();
    let results: Vec<(bool, Option<String>)> = h
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ValidationCompleted(v) => Some((v.valid, v.reason_code.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(results, [(false, None), (true, Some("GENERAL".into()))]);
    assert!(h.audit_records().is_empty());
    assert!(requests_to(&h, "/state").is_empty());
}

#[test]
fn idle_time_and_utilization_follow_the_timeline() {
    let mut h = pair(vec![on_shift("alice")]);
    h.transition("alice", "READY");
    h.drive().unwrap();
    let ready_at = h.now_ms();
    h.drive_until(ready_at + 30 * MIN);
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    let paused_at = h.now_ms();
    assert_eq!(
        h.engine.idle_time("alice", Now::at(paused_at + 10 * MIN)),
        10 * MIN
    );
    let m = h
        .engine
        .agent_metrics("alice", Now::at(paused_at + 10 * MIN))
        .unwrap();
    assert_eq!(m.time_in_state_ms["READY"], paused_at - ready_at);
    let u = m.utilization.unwrap();
    assert!((u - 0.75).abs() < 0.01, "utilization {u}");
}

#[test]
fn a_default_day_never_sends_ready_into_a_break() {
    let mut day = DayRun::new(&WorkdayConfig::default()).unwrap();
    day.run(|_, _| {}).unwrap();
    let s = day.summary();
    assert_eq!(s.ground_truth.ready_accepted_during_break, 0);
    assert!(s.report.violation_count > 0, "rule breakers were stopped");
    assert!(s.report.success_count > s.report.total_transitions / 2);
    assert_eq!(s.report.total_transitions, s.commands);
    assert_eq!(
        s.ground_truth.rate_limited, 0,
        "the pacer kept under the limit"
    );
    assert!(s.ground_truth.faults_injected > 0);
}

#[test]
fn a_very_slow_limit_still_sends_the_change_after_one_recheck() {
    // One request a minute: every break answer is a minute old when the change gets its slot. The engine
    // re-checks once, then sends, instead of re-checking forever.
    let mut h = pair_with(vec![on_shift("alice")], |cfg, sim| {
        cfg.rate_limit.per_minute = 1;
        sim.rate_per_minute = 1;
        sim.burst = 1;
    });
    let id = h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert_eq!(requests_to(&h, "/breaks/").len(), 2);
    assert_eq!(h.tenant.ground_truth().rate_limited, 0);
}

#[test]
fn tokens_shorter_lived_than_the_refresh_margin_still_work() {
    let mut h = pair_with(vec![on_shift("alice")], |_, sim| sim.token_ttl_s = 30);
    let a = h.transition("alice", "READY");
    let b = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    assert!(outcome(&h, a).is_ok() && outcome(&h, b).is_ok());
    assert_eq!(h.tenant.ground_truth().tokens_issued, 1);
}

mod external_tokens {
    //! A browser console hands tokens in from its own back end instead of holding a client secret.
    use super::*;
    use cxone_agent_state_core::sim::TokenBackend;
    use cxone_agent_state_core::TokenSource;

    fn console(agents: Vec<AgentPlan>, backend: TokenBackend) -> Harness {
        let mut h = pair_with(agents, |cfg, _| {
            cfg.token_source = TokenSource::External;
            cfg.credentials.client_id = String::new();
            cfg.credentials.client_secret = Secret::new("");
        });
        h.set_token_backend(backend);
        h
    }

    #[test]
    fn fifty_changes_ask_the_token_source_once() {
        let agents: Vec<_> = (0..50).map(|i| on_shift(&format!("c{i}"))).collect();
        let mut h = console(agents, TokenBackend::Tenant);
        let ids: Vec<_> = (0..50)
            .map(|i| h.transition(&format!("c{i}"), "READY"))
            .collect();
        h.drive().unwrap();
        for id in ids {
            assert_eq!(outcome(&h, id), Ok("READY".into()));
        }
        assert_eq!(h.token_requests(), 1);
        assert!(
            requests_to(&h, "/oauth2/token").is_empty(),
            "no secret, no token endpoint"
        );
        assert_eq!(
            h.tenant.ground_truth().tokens_issued,
            1,
            "the back end's one fetch"
        );
    }

    #[test]
    fn a_revoked_token_asks_the_source_again() {
        let mut h = console(vec![on_shift("alice")], TokenBackend::Tenant);
        h.transition("alice", "READY");
        h.drive().unwrap();
        h.tenant.revoke_tokens();
        let id = h.transition("alice", "PAUSED");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Ok("PAUSED".into()));
        assert_eq!(h.token_requests(), 2);
    }

    #[test]
    fn an_expired_token_fails_with_token_expired() {
        let mut h = console(vec![on_shift("alice")], TokenBackend::Fixed("t".into(), 0));
        let id = h.transition("alice", "READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Err(ErrorCode::TokenExpired));
        assert!(h.requests().is_empty());
    }

    #[test]
    fn a_failing_source_fails_with_auth_failed() {
        let mut h = console(
            vec![on_shift("alice")],
            TokenBackend::Failing("back end down".into()),
        );
        let id = h.transition("alice", "READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Err(ErrorCode::AuthFailed));
        let msg = h
            .events()
            .iter()
            .find_map(|(_, e)| match e {
                Event::TransitionFailed(f) => Some(f.error.message.clone()),
                _ => None,
            })
            .unwrap();
        assert!(msg.contains("back end down"), "{msg}");
    }

    #[test]
    fn an_unanswered_token_request_times_out_and_is_asked_again() {
        // No back end: the request times out (10 s), is retried per the schedule, then the change fails.
        let mut h = pair_with(vec![on_shift("alice")], |cfg, _| {
            cfg.token_source = TokenSource::External;
        });
        let id = h.transition("alice", "READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Err(ErrorCode::UpstreamUnavailable));
        assert_eq!(h.token_requests(), 4, "one ask and three retries");
    }
}

#[test]
fn a_token_with_no_life_left_fails_token_expired_without_refetching() {
    let mut h = pair_with(vec![on_shift("alice")], |_, sim| sim.token_ttl_s = 0);
    let id = h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::TokenExpired));
    assert_eq!(h.tenant.ground_truth().tokens_issued, 1);
}

// ---- the audit log never contradicts the tenant -------------------------------------------------------------

fn failure_of(h: &Harness, id: TransitionId) -> cxone_agent_state_core::TransitionFailed {
    h.events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::TransitionFailed(f) if f.transition_id == id => Some(f.clone()),
            _ => None,
        })
        .expect("a failure")
}

/// The story from the core v2 issue: an agent goes READY a few minutes before a mandatory break; the change
/// reaches the tenant but its answer is lost; the resend meets a 503 with `Retry-After: 40`; by the time the
/// pause ends the break is due. The tenant holds READY, and so must the audit log.
#[test]
fn ready_just_before_a_break_whose_answer_was_lost_is_recorded_as_the_success_it_was() {
    let mut h = pair(vec![on_break_at_ten("carol")]);
    // 09:54:30: the break (10:00) is announced from 09:55, so READY is still allowed.
    h.drive_until(T0 + 2 * HOUR - 5 * MIN - 30_000);
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(503, Some(40)),
        1,
    ));
    let id = h.transition("carol", "READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert_eq!(h.tenant.agent_state("carol"), Some("READY"));
    let truth = h.tenant.ground_truth();
    assert_eq!(truth.state_changes_accepted, 1, "applied once");
    assert_eq!(
        truth.idempotent_replays, 1,
        "the resend was answered from the first send"
    );
    assert_eq!(truth.ready_accepted_during_break, 0);
    let sets = requests_to(&h, "/state");
    assert_eq!(sets.len(), 3);
    assert!(
        sets[2].0 >= T0 + 2 * HOUR - 5 * MIN,
        "the last resend went out after the break became due"
    );
    assert_eq!(
        requests_to(&h, "/breaks/").len(),
        1,
        "no policy check after the send"
    );
    assert!(!h
        .events()
        .iter()
        .any(|(_, e)| matches!(e, Event::PolicyViolation(_))));
    let audit = h.audit_records();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].success && !audit[0].policy_violation);
    assert_eq!(h.engine.violation_count(), 0);
}

#[test]
fn a_change_that_may_have_been_applied_ends_outcome_unknown_and_is_settled_on_restart() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(503, None),
        3,
    ));
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();

    // The tenant applied it; the engine cannot know: OUTCOME_UNKNOWN, never UPSTREAM_UNAVAILABLE.
    assert_eq!(h.tenant.agent_state("alice"), Some("PAUSED"));
    let f = failure_of(&h, id);
    assert_eq!(f.error.code, ErrorCode::OutcomeUnknown);
    assert!(!f.policy_violation);
    assert!(
        f.error.message.contains("UPSTREAM_UNAVAILABLE"),
        "{}",
        f.error.message
    );
    let report = h.engine.compliance_report(h.now());
    assert_eq!(
        (
            report.unknown_outcome_count,
            report.failure_count,
            report.violation_count
        ),
        (1, 0, 0)
    );
    let unknown = h.audit_records().pop().unwrap();
    assert_eq!(unknown.error_code, Some(ErrorCode::OutcomeUnknown));
    // The journal keeps it open.
    let open: Vec<_> = h.log_state().open_changes().cloned().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].unknown_record.as_deref(), Some(unknown.id.as_str()));

    // The next start resends it with the same key; the tenant answers from its record of the first send.
    let restored = h.restart(1_000);
    assert_eq!(restored.resumed, 1);
    h.drive().unwrap();
    let settlement = h.audit_records().pop().unwrap();
    assert!(settlement.success);
    assert_eq!(settlement.settles.as_deref(), Some(unknown.id.as_str()));
    assert_eq!(settlement.idempotency_key, unknown.idempotency_key);
    assert_eq!(h.tenant.ground_truth().state_changes_accepted, 1);
    assert_eq!(
        h.log_state().open_changes().count(),
        0,
        "settled and closed"
    );
    verify_chain(ChainHead::default(), &h.audit_records()).unwrap();
    let report = h.engine.compliance_report(h.now());
    assert_eq!((report.settled_count, report.total_transitions), (1, 0));
}

#[test]
fn an_interrupted_change_older_than_the_commit_window_is_not_sent_again() {
    let mut h = pair(vec![on_shift("alice")]);
    // The answer takes a minute; the process dies while it is on the way.
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 60_000 },
        1,
    ));
    h.transition("alice", "READY");
    h.drive_until(T0 + 5_000);
    assert_eq!(h.tenant.agent_state("alice"), Some("READY"), "applied");
    assert_eq!(h.log_state().open_changes().count(), 1);
    // Down for ten minutes: far past the commit window.
    let restored = h.restart(10 * MIN);
    assert_eq!((restored.resumed, restored.abandoned), (0, 1));
    h.drive().unwrap();
    let sets = requests_to(&h, "/state");
    assert_eq!(sets.len(), 1, "not sent again");
    let last = h.audit_records().pop().unwrap();
    assert_eq!(last.error_code, Some(ErrorCode::OutcomeUnknown));
    assert!(!last.policy_violation);
    assert_eq!(h.log_state().open_changes().count(), 0, "closed for good");
    assert!(h
        .records()
        .iter()
        .any(|(_, r)| matches!(r, Record::Abandoned(_))));
}

#[test]
fn an_interrupted_change_inside_the_window_is_resent_and_applied_once() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 60_000 },
        1,
    ));
    h.transition("alice", "NOT_READY");
    h.drive_until(T0 + 5_000);
    let restored = h.restart(10_000);
    assert_eq!(restored.resumed, 1);
    h.drive().unwrap();
    let audit = h.audit_records();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].success);
    assert_eq!(
        audit[0].settles, None,
        "there was no unknown record to settle"
    );
    let truth = h.tenant.ground_truth();
    assert_eq!(
        (truth.state_changes_accepted, truth.idempotent_replays),
        (1, 1)
    );
    assert_eq!(
        requests_to(&h, "/breaks/").len() + requests_to(&h, "/schedules/").len(),
        1,
        "a resumed change is not checked again"
    );
}

#[test]
fn changes_for_one_agent_keep_their_order_when_the_first_is_delayed_by_faults() {
    let mut h = pair(vec![on_shift("agent-0014")]);
    h.tenant.script_fault(FaultRule {
        user_id: Some("agent-0014".into()),
        ..FaultRule::on(Endpoint::Schedule, FaultKind::status(503, None), 2)
    });
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 3_000 },
        1,
    ));
    let a = h.transition("agent-0014", "READY");
    let b = h.transition("agent-0014", "NOT_READY");
    h.drive().unwrap();
    assert!(outcome(&h, a).is_ok() && outcome(&h, b).is_ok());
    let applied: Vec<&str> = h
        .tenant
        .accepted_changes()
        .iter()
        .map(|(_, _, s)| s.as_str())
        .collect();
    assert_eq!(applied, ["READY", "NOT_READY"]);
    assert_eq!(h.tenant.agent_state("agent-0014"), Some("NOT_READY"));
}

// ---- time ---------------------------------------------------------------------------------------------------

#[test]
fn a_wall_clock_step_neither_stalls_timers_nor_times_out_requests() {
    for step in [-(HOUR as i64), HOUR as i64] {
        let mut h = pair(vec![on_shift("alice")]);
        h.tenant.script_fault(FaultRule::on(
            Endpoint::SetState,
            FaultKind::status(503, None),
            1,
        ));
        h.tenant.script_fault(FaultRule::on(
            Endpoint::SetState,
            FaultKind::Slow { extra_ms: 4_000 },
            1,
        ));
        let id = h.transition("alice", "PAUSED");
        // The 503 arrives and a retry is scheduled (2–3 s); then the wall clock jumps.
        h.drive_until(T0 + 2_000);
        assert_eq!(requests_to(&h, "/state").len(), 1);
        h.step_wall_clock(step);
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Ok("PAUSED".into()), "step {step}");
        let sets = requests_to(&h, "/state");
        assert_eq!(sets.len(), 2, "the slow answer (4 s) did not time out");
        let gap = sets[1].0 - sets[0].0;
        assert!(
            (2_000..3_100).contains(&gap),
            "step {step}: retried after {gap} ms"
        );
        // Records carry wall time.
        let stamp = cxone_agent_state_core::parse_iso8601(&h.audit_records()[0].timestamp).unwrap();
        assert_eq!(stamp, h.now_ms().saturating_add_signed(step));
        assert!(h.engine.compliance_report(h.now()).latency.max_ms < 10_000);
    }
}

// ---- webhooks -----------------------------------------------------------------------------------------------

#[test]
fn a_payload_the_receiver_keeps_refusing_becomes_a_dead_letter_and_later_ones_flow() {
    use cxone_agent_state_core::sim::{ReceiverAnswer, SIM_WEBHOOK_URL};
    use cxone_agent_state_core::WebhookConfig;
    let mut h = pair_with(vec![on_shift("alice"), on_shift("dave")], |cfg, _| {
        cfg.webhook = Some(WebhookConfig {
            dead_letter_after_refusals: 3,
            ..WebhookConfig::new(SIM_WEBHOOK_URL)
        });
    });
    for _ in 0..3 {
        h.receiver.script.push_back(ReceiverAnswer::Status(422));
    }
    h.transition("alice", "READY");
    h.drive().unwrap();
    h.transition("dave", "PAUSED");
    h.drive().unwrap();
    let dead: Vec<_> = h
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::WebhookDeadLettered(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].last_status), (3, Some(422)));
    assert_eq!(
        h.receiver.accepted.len(),
        1,
        "the later payload was delivered"
    );
    assert!(h.receiver.accepted[0].contains("\"dave\""));
    assert_eq!(h.engine.dead_letters(), 1);
    assert_eq!(h.log_state().dead_letters().count(), 1);

    // Replayed, it is delivered (the receiver takes it now).
    let now = h.now();
    assert_eq!(h.engine.replay_dead_letters(now, None), 1);
    h.drive().unwrap();
    assert_eq!(h.receiver.accepted.len(), 2);
    assert!(h.receiver.accepted[1].contains("\"alice\""));
    assert_eq!(h.engine.dead_letters(), 0);
    assert_eq!(h.log_state().undelivered().count(), 0);
    // Every payload precedes its change's audit record in the log.
    let order: Vec<&str> = h
        .records()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Webhook(_) => Some("webhook"),
            Record::Audit(_) => Some("audit"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["webhook", "audit", "webhook", "audit"]);
}

#[test]
fn undelivered_webhooks_survive_a_restart() {
    use cxone_agent_state_core::sim::{ReceiverAnswer, SIM_WEBHOOK_URL};
    use cxone_agent_state_core::WebhookConfig;
    let mut h = pair_with(vec![on_shift("alice")], |cfg, _| {
        cfg.webhook = Some(WebhookConfig::new(SIM_WEBHOOK_URL));
    });
    h.receiver.default = ReceiverAnswer::Drop;
    h.transition("alice", "READY");
    h.drive_until(T0 + 20_000);
    assert_eq!(h.log_state().undelivered().count(), 1);
    h.receiver.default = ReceiverAnswer::Status(200);
    let restored = h.restart(0);
    assert_eq!(restored.webhooks, 1);
    h.drive().unwrap();
    assert_eq!(h.receiver.accepted.len(), 1);
    assert_eq!(h.log_state().undelivered().count(), 0);
}

// ---- limits, close and checkpoints ----------------------------------------------------------------------------

#[test]
fn the_bounded_queue_answers_busy_and_close_is_sticky() {
    use cxone_agent_state_core::sim::Command;
    use cxone_agent_state_core::CommandError;
    let mut h = pair_with(vec![on_shift("alice"), on_shift("dave")], |cfg, _| {
        cfg.max_open_changes = 2;
    });
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 60_000 },
        1,
    ));
    let first = h.transition("alice", "READY");
    let second = h.transition("alice", "PAUSED");
    let third = h.command(Command::Transition {
        user_id: "dave".into(),
        state: "READY".into(),
    });
    assert_eq!(third, Some(Err(CommandError::Busy { limit: 2 })));
    assert_eq!(CommandError::Busy { limit: 2 }.code(), ErrorCode::Busy);
    // alice's first change is in flight (slow) when the engine closes; the second waits behind it.
    h.drive_until(T0 + 5_000);
    assert!(h.tenant.agent_state("alice").is_some());
    h.command(Command::Close);
    assert_eq!(failure_of(&h, first).error.code, ErrorCode::OutcomeUnknown);
    assert_eq!(failure_of(&h, second).error.code, ErrorCode::Closed);
    assert_eq!(
        h.command(Command::Validate {
            user_id: "dave".into(),
            state: "READY".into()
        }),
        Some(Err(CommandError::Closed))
    );
    assert_eq!(h.engine.next_deadline(), None);
    h.drive().unwrap();
    assert_eq!(h.audit_records().len(), 2, "both audited, nothing more");
}

#[test]
fn checkpoints_let_recovery_start_late_in_the_log() {
    let agents: Vec<_> = (0..20).map(|i| on_shift(&format!("c{i}"))).collect();
    let mut h = pair_with(agents, |cfg, _| cfg.checkpoint_every = Some(10));
    for round in 0..3 {
        for i in 0..20 {
            h.transition(&format!("c{i}"), ["READY", "PAUSED", "NOT_READY"][round]);
        }
    }
    h.drive().unwrap();
    let records: Vec<Record> = h.records().iter().map(|(_, r)| r.clone()).collect();
    let checkpoints: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Record::Checkpoint(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(checkpoints.len() >= 5, "{}", checkpoints.len());
    let last = *checkpoints.last().unwrap();
    assert!(
        records.len() - last <= 25,
        "the tail after the last checkpoint is short"
    );
    let Record::Checkpoint(c) = &records[last] else {
        unreachable!()
    };
    let mut from_checkpoint = cxone_agent_state_core::LogState::from_checkpoint(c);
    for r in &records[last + 1..] {
        from_checkpoint.apply(r).unwrap();
    }
    let whole = h.log_state();
    assert_eq!(from_checkpoint.checkpoint(0), whole.checkpoint(0));
    assert_eq!(from_checkpoint.chain_head(), h.engine.chain_head());
}

#[test]
fn an_unknown_outcome_stays_open_until_a_definite_answer_settles_it() {
    let mut h = pair(vec![on_shift("alice")]);
    let status_500 = |times| FaultRule::on(Endpoint::SetState, FaultKind::status(500, None), times);
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    h.tenant.script_fault(status_500(3));
    h.transition("alice", "READY");
    h.drive().unwrap();
    let first = h.audit_records().pop().unwrap();
    assert_eq!(first.error_code, Some(ErrorCode::OutcomeUnknown));

    // The next start resends it, and meets 500s again: still unknown, nothing settled.
    h.tenant.script_fault(status_500(4));
    assert_eq!(h.restart(1_000).resumed, 1);
    h.drive().unwrap();
    let second = h.audit_records().pop().unwrap();
    assert_eq!(second.error_code, Some(ErrorCode::OutcomeUnknown));
    assert_eq!(second.settles, None, "an unknown outcome settles nothing");
    let open: Vec<_> = h.log_state().open_changes().cloned().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].unknown_record.as_deref(), Some(second.id.as_str()));

    // The start after that gets an answer: the settlement points at the latest unknown record.
    assert_eq!(h.restart(1_000).resumed, 1);
    h.drive().unwrap();
    let third = h.audit_records().pop().unwrap();
    assert!(third.success);
    assert_eq!(third.settles.as_deref(), Some(second.id.as_str()));
    assert_eq!(h.log_state().open_changes().count(), 0);
    assert_eq!(h.tenant.ground_truth().state_changes_accepted, 1);
}

#[test]
fn an_unknown_change_is_never_resent_after_a_later_change_of_the_same_agent() {
    let mut h = pair(vec![on_shift("alice")]);
    // READY never arrives (dropped before, then 500s): unknown, and not applied.
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropBefore, 1));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(500, None),
        3,
    ));
    h.transition("alice", "READY");
    h.drive().unwrap();
    assert_eq!(
        h.audit_records().pop().unwrap().error_code,
        Some(ErrorCode::OutcomeUnknown)
    );
    assert_eq!(h.log_state().open_changes().count(), 1);
    // NOT_READY is sent and applied, but its answer is slow; the process dies while it is on the way.
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 30_000 },
        1,
    ));
    let at = h.now_ms();
    h.transition("alice", "NOT_READY");
    h.drive_until(at + 5_000);
    assert_eq!(h.tenant.agent_state("alice"), Some("NOT_READY"));
    // Sending NOT_READY closed READY's journal entry for good.
    let open: Vec<String> = h
        .log_state()
        .open_changes()
        .map(|o| o.intent.state.clone())
        .collect();
    assert_eq!(open, ["NOT_READY"]);
    let restored = h.restart(2_000);
    assert_eq!((restored.resumed, restored.abandoned), (1, 0));
    h.drive().unwrap();
    assert_eq!(
        h.tenant.agent_state("alice"),
        Some("NOT_READY"),
        "READY was not resent"
    );
    let applied: Vec<&str> = h
        .tenant
        .accepted_changes()
        .iter()
        .map(|(_, _, s)| s.as_str())
        .collect();
    assert_eq!(applied, ["NOT_READY"]);
    let last = h.audit_records().pop().unwrap();
    assert!(last.success && last.new_state == "NOT_READY");
}

#[test]
fn a_wall_clock_stepped_back_across_a_restart_resends_nothing() {
    let mut h = pair(vec![on_break_at_ten("carol")]);
    h.drive_until(T0 + 2 * HOUR - 5 * MIN - 30_000);
    // The send never arrives; the process dies before its retry.
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropBefore, 1));
    let at = h.now_ms();
    h.transition("carol", "READY");
    // Paced at one request a second: token, schedule, break, then the send at ~1.8 s, dropped.
    h.drive_until(at + 2_500);
    assert_eq!(h.log_state().open_changes().count(), 1);
    assert_eq!(requests_to(&h, "/state").len(), 1);
    // Down for eleven minutes (the break has begun), and the wall clock now reads an hour early.
    h.step_wall_clock(-(HOUR as i64));
    let restored = h.restart(11 * MIN);
    assert_eq!((restored.resumed, restored.abandoned), (0, 1));
    h.drive().unwrap();
    assert_eq!(h.tenant.ground_truth().ready_accepted_during_break, 0);
    assert_eq!(h.tenant.agent_state("carol"), None);
    let last = h.audit_records().pop().unwrap();
    assert_eq!(last.error_code, Some(ErrorCode::OutcomeUnknown));
    assert!(last.error_message.unwrap().contains("wall clock"));
}

#[test]
fn restore_resends_only_the_latest_open_change_of_an_agent() {
    use cxone_agent_state_core::{ChangeIntent, LogState};
    let intent = |key: &str, state: &str| {
        Record::Intent(ChangeIntent {
            transition_id: TransitionId(1),
            user_id: "alice".into(),
            state: state.into(),
            reason_code: "X".into(),
            idempotency_key: key.into(),
            approved_at_ms: T0,
            at_ms: T0,
            reference: None,
            out_state_id: None,
        })
    };
    // A log written before a later send closed the earlier one: both open.
    let mut state = LogState::default();
    state.apply(&intent("k-old", "READY")).unwrap();
    state.apply(&intent("k-new", "PAUSED")).unwrap();
    let mut h = pair(vec![on_shift("alice")]);
    let mut engine = Engine::new(h.engine.config().clone()).unwrap();
    let restored = engine.restore(Now::at(T0 + 1_000), state);
    assert_eq!((restored.resumed, restored.abandoned), (1, 1));
    h.engine = engine;
    h.drive().unwrap();
    let applied: Vec<&str> = h
        .tenant
        .accepted_changes()
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    assert_eq!(applied, ["k-new"]);
}

#[test]
fn a_restart_never_draws_the_keys_of_an_earlier_run() {
    let mut h = pair(vec![on_shift("alice"), on_shift("dave")]);
    for round in 0..3 {
        h.transition("alice", ["READY", "PAUSED", "IDLE"][round]);
        h.transition("dave", ["NOT_READY", "READY", "PAUSED"][round]);
        h.drive().unwrap();
        // Same seed, same configuration, a new process.
        h.restart(1_000);
    }
    let keys: Vec<&str> = h
        .tenant
        .accepted_changes()
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(unique.len(), 6, "a key was reused: {keys:?}");
    assert_eq!(h.tenant.ground_truth().idempotent_replays, 0);
    assert_eq!(h.tenant.agent_state("alice"), Some("IDLE"));
    assert_eq!(h.tenant.agent_state("dave"), Some("PAUSED"));
}

#[test]
fn a_long_queue_for_one_agent_drains_without_recursion() {
    // 20,000 checks wait behind the first one's schedule lookup; once it is answered (and cached), each
    // finishes at once and hands the slot to the next — in a loop, not by recursion, so the stack holds.
    let mut h = pair(vec![on_shift("alice")]);
    h.record_requests(false);
    for _ in 0..20_000 {
        h.validate("alice", "PAUSED");
    }
    h.drive().unwrap();
    let done = h
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::ValidationCompleted(v) if v.valid))
        .count();
    assert_eq!(done, 20_000);
    assert_eq!(h.tenant.ground_truth().requests_by_endpoint["schedule"], 1);
    assert_eq!(h.engine.open_changes(), 0);
}

// ---- previousState after a restart ---------------------------------------------------------------------

/// The `StateChanged` of a transition (the latest with its id: each run numbers its transitions from 1).
fn state_changed(h: &Harness, id: TransitionId) -> cxone_agent_state_core::StateChanged {
    h.events()
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("transition {id:?} did not succeed"))
}

/// The `previousState` of the last webhook payload persisted.
fn last_webhook_previous_state(h: &Harness) -> Option<String> {
    let body = h
        .records()
        .iter()
        .rev()
        .find_map(|(_, r)| match r {
            Record::Webhook(w) => Some(w.body.clone()),
            _ => None,
        })
        .expect("a webhook payload");
    let payload: cxone_agent_state_core::WebhookPayload = serde_json::from_str(&body).unwrap();
    payload.data.previous_state
}

#[test]
fn the_first_change_after_a_restart_names_the_state_it_leaves() {
    use cxone_agent_state_core::sim::SIM_WEBHOOK_URL;
    use cxone_agent_state_core::{parse_iso8601, WebhookConfig};
    let mut h = pair_with(vec![on_shift("alice")], |cfg, _| {
        cfg.webhook = Some(WebhookConfig::new(SIM_WEBHOOK_URL));
    });
    h.transition("alice", "READY");
    h.drive().unwrap();
    let ready = h.audit_records().pop().unwrap();
    let ready_at = parse_iso8601(&ready.timestamp).unwrap();

    // A new process (one per change, as the CLI's `transition` runs): the log is all it knows.
    h.restart(5 * MIN);
    let current = h.engine.history().current("alice").cloned().unwrap();
    assert_eq!(
        (current.state.as_str(), current.entered_at_ms),
        ("READY", ready_at)
    );
    let id = h.transition("alice", "PAUSED");
    h.drive().unwrap();
    let changed = state_changed(&h, id);
    assert_eq!(changed.previous_state.as_deref(), Some("READY"));
    let record = h.audit_records().pop().unwrap();
    assert_eq!(record.new_state, "PAUSED");
    assert_eq!(record.previous_state.as_deref(), Some("READY"));
    assert_eq!(last_webhook_previous_state(&h).as_deref(), Some("READY"));
    // The READY stretch ran from its record through the time the process was down.
    let m = h.engine.agent_metrics("alice", h.now()).unwrap();
    let paused_at = parse_iso8601(&record.timestamp).unwrap();
    assert_eq!(m.time_in_state_ms["READY"], paused_at - ready_at);
    assert!(m.time_in_state_ms["READY"] >= 5 * MIN);
}

#[test]
fn an_unknown_outcome_moves_the_last_state_only_once_it_is_settled() {
    let mut h = pair(vec![on_shift("alice")]);
    h.transition("alice", "READY");
    h.drive().unwrap();
    // PAUSED is applied, but its answer is lost and the retries meet 503s: OUTCOME_UNKNOWN.
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(503, None),
        3,
    ));
    h.transition("alice", "PAUSED");
    h.drive().unwrap();
    let unknown = h.audit_records().pop().unwrap();
    assert_eq!(unknown.error_code, Some(ErrorCode::OutcomeUnknown));
    let last = |h: &Harness| {
        h.log_state()
            .last_state_of("alice")
            .map(|l| l.state.clone())
    };
    assert_eq!(last(&h).as_deref(), Some("READY"), "unknown: not claimed");

    // The next start settles it as a success, which leaves READY.
    assert_eq!(h.restart(1_000).resumed, 1);
    h.drive().unwrap();
    let settlement = h.audit_records().pop().unwrap();
    assert_eq!(settlement.settles.as_deref(), Some(unknown.id.as_str()));
    assert_eq!(settlement.previous_state.as_deref(), Some("READY"));
    assert_eq!(last(&h).as_deref(), Some("PAUSED"));

    h.restart(1_000);
    let id = h.transition("alice", "NOT_READY");
    h.drive().unwrap();
    assert_eq!(
        state_changed(&h, id).previous_state.as_deref(),
        Some("PAUSED")
    );
}

#[test]
fn a_restore_from_a_checkpoint_knows_the_last_states_too() {
    use cxone_agent_state_core::LogState;
    let agents: Vec<_> = (0..3).map(|i| on_shift(&format!("c{i}"))).collect();
    let mut h = pair_with(agents, |cfg, _| cfg.checkpoint_every = Some(1));
    for state in ["READY", "PAUSED"] {
        for i in 0..3 {
            h.transition(&format!("c{i}"), state);
        }
    }
    h.drive().unwrap();
    let records: Vec<Record> = h.records().iter().map(|(_, r)| r.clone()).collect();
    let last = records
        .iter()
        .rposition(|r| matches!(r, Record::Checkpoint(_)))
        .expect("a checkpoint");
    let Record::Checkpoint(c) = &records[last] else {
        unreachable!()
    };
    assert!(
        c.last_states.as_ref().is_some_and(|l| !l.is_empty()),
        "{c:?}"
    );
    let mut state = LogState::from_checkpoint(c);
    for r in &records[last + 1..] {
        state.apply(r).unwrap();
    }
    let mut engine = Engine::new(h.engine.config().clone()).unwrap();
    engine.restore(h.now(), state);
    h.engine = engine;
    let id = h.transition("c1", "IDLE");
    h.drive().unwrap();
    assert_eq!(
        state_changed(&h, id).previous_state.as_deref(),
        Some("PAUSED")
    );
}

#[test]
fn a_last_state_dated_after_now_starts_now() {
    let mut h = pair(vec![on_shift("alice")]);
    h.transition("alice", "READY");
    h.drive().unwrap();
    // The wall clock is stepped back an hour across the restart: the log's READY is "in the future".
    h.step_wall_clock(-(HOUR as i64));
    h.restart(0);
    let now = h.now();
    let current = h.engine.history().current("alice").cloned().unwrap();
    assert_eq!(current.state, "READY");
    assert_eq!(current.entered_at_ms, now.unix_ms);
    let m = h.engine.agent_metrics("alice", now).unwrap();
    assert_eq!((m.tracked_ms, m.time_in_state_ms["READY"]), (0, 0));
    let m = h.engine.agent_metrics("alice", now.plus(1_000)).unwrap();
    assert_eq!(m.time_in_state_ms["READY"], 1_000);
}

// ---- the caller's reference -----------------------------------------------------------------------------

fn referenced(reference: &str) -> cxone_agent_state_core::TransitionOptions {
    cxone_agent_state_core::TransitionOptions::default().with_reference(reference)
}

/// The reference of every intent and audit record, in log order (`"intent"`/`"audit"`, reference).
fn references_in_log(h: &Harness) -> Vec<(&'static str, Option<String>)> {
    h.records()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Intent(i) => Some(("intent", i.reference.clone())),
            Record::Audit(a) => Some(("audit", a.reference.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reference_reaches_the_intent_the_audit_record_and_the_event_but_never_the_tenant() {
    let reference = "bulk:sha256=0123456789abcdef:row=12";
    let mut h = pair(vec![on_shift("alice"), on_shift("dave")]);
    let id = h.transition_with("alice", "READY", &referenced(reference));
    let plain = h.transition("dave", "READY");
    h.drive().unwrap();

    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert_eq!(outcome(&h, plain), Ok("READY".into()));
    let mut logged = references_in_log(&h);
    logged.sort();
    let some = Some(reference.to_owned());
    assert_eq!(
        logged,
        [
            ("audit", None),
            ("audit", some.clone()),
            ("intent", None),
            ("intent", some.clone())
        ]
    );
    let changed = h
        .events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(changed.reference, some);
    // A change without a reference writes no `reference` member at all (so its record hashes as before).
    for (_, r) in h.records() {
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line.contains("\"reference\""),
            line.contains("alice"),
            "{line}"
        );
    }
    for (_, r) in h.requests() {
        let wire = format!("{} {:?} {:?}", r.url, r.headers, r.body);
        assert!(!wire.contains("row=12"), "sent to the tenant: {wire}");
    }
}

#[test]
fn a_policy_refusal_and_a_malformed_request_carry_the_reference_in_their_records() {
    let mut h = pair(vec![unscheduled("bob")]);
    let refused = h.transition_with("bob", "READY", &referenced("ticket-1"));
    let malformed = h.transition_with("bob", "ready", &referenced("ticket-2"));
    h.drive().unwrap();

    assert_eq!(outcome(&h, refused), Err(ErrorCode::AgentNotScheduled));
    assert_eq!(outcome(&h, malformed), Err(ErrorCode::InvalidState));
    let audit = h.audit_records();
    let by_reference = |r: &str| {
        audit
            .iter()
            .find(|a| a.reference.as_deref() == Some(r))
            .unwrap_or_else(|| panic!("no record with {r}"))
    };
    assert!(by_reference("ticket-1").policy_violation);
    assert_eq!(
        by_reference("ticket-2").error_code,
        Some(ErrorCode::InvalidState)
    );
    assert!(
        !h.records()
            .iter()
            .any(|(_, r)| matches!(r, Record::Intent(_))),
        "nothing was journaled: nothing was sent"
    );
    let failed = failure_of(&h, refused);
    assert_eq!(failed.reference.as_deref(), Some("ticket-1"));
    assert!(failed.policy_violation);
}

#[test]
fn a_change_resumed_after_a_restart_keeps_its_reference_in_every_record() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant
        .script_fault(FaultRule::on(Endpoint::SetState, FaultKind::DropAfter, 1));
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::status(503, None),
        3,
    ));
    let id = h.transition_with("alice", "PAUSED", &referenced("console:req-77"));
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Err(ErrorCode::OutcomeUnknown));

    // The reference lives in the journal across the restart (the new engine only has the log).
    let restored = h.restart(1_000);
    assert_eq!(restored.resumed, 1);
    h.drive().unwrap();
    let audit = h.audit_records();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].error_code, Some(ErrorCode::OutcomeUnknown));
    assert!(audit[1].success);
    assert_eq!(audit[1].settles.as_deref(), Some(audit[0].id.as_str()));
    for a in &audit {
        assert_eq!(a.reference.as_deref(), Some("console:req-77"), "{a:?}");
    }
    verify_chain(ChainHead::default(), &audit).unwrap();
    let resumed = h
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::StateChanged(s) => Some(s.reference.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(resumed, [Some("console:req-77".to_owned())]);
}

#[test]
fn a_change_abandoned_on_restore_keeps_its_reference() {
    let mut h = pair(vec![on_shift("alice")]);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 60_000 },
        1,
    ));
    h.transition_with("alice", "READY", &referenced("ticket-9"));
    h.drive_until(T0 + 5_000);
    let restored = h.restart(10 * MIN);
    assert_eq!((restored.resumed, restored.abandoned), (0, 1));
    h.drive().unwrap();
    let last = h.audit_records().pop().unwrap();
    assert_eq!(last.error_code, Some(ErrorCode::OutcomeUnknown));
    assert_eq!(last.reference.as_deref(), Some("ticket-9"));
}

#[test]
fn an_invalid_reference_refuses_the_command_with_invalid_reference() {
    use cxone_agent_state_core::sim::Command;
    use cxone_agent_state_core::{CommandError, TransitionError, MAX_REFERENCE_LEN};
    let mut h = pair(vec![on_shift("alice")]);
    for bad in [
        String::new(),
        "x".repeat(MAX_REFERENCE_LEN + 1),
        "row\n12".into(),
        "r\u{e9}f".into(),
    ] {
        let answer = h.command(Command::TransitionWith {
            user_id: "alice".into(),
            state: "READY".into(),
            options: referenced(&bad),
        });
        assert_eq!(answer, Some(Err(CommandError::InvalidReference)), "{bad:?}");
    }
    assert_eq!(
        TransitionError::from(CommandError::InvalidReference).code,
        ErrorCode::InvalidReference
    );
    h.drive().unwrap();
    assert!(h.records().is_empty(), "nothing audited");
    assert!(h.events().is_empty(), "no outcome reported");
    assert!(h.requests().is_empty(), "nothing sent");
    // The refusals took no ids: the next command is the first.
    let longest = "x".repeat(MAX_REFERENCE_LEN);
    let id = h.transition_with("alice", "READY", &referenced(&longest));
    assert_eq!(id, TransitionId(1));
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("READY".into()));
}

#[test]
fn referenced_outcomes_read_the_log_back_for_a_resumed_run() {
    use cxone_agent_state_core::{scan_log, LogState, ReferenceOutcome, ReferencedOutcomes};
    let mut h = pair(vec![
        on_shift("alice"),
        unscheduled("bob"),
        on_shift("carol"),
    ]);
    h.tenant.script_fault(FaultRule {
        user_id: Some("carol".into()),
        ..FaultRule::on(Endpoint::SetState, FaultKind::Slow { extra_ms: 60_000 }, 1)
    });
    let row = |n: u32| format!("bulk:sha256=00112233aabbccdd:row={n}");
    h.transition_with("alice", "READY", &referenced(&row(1)));
    h.transition_with("bob", "READY", &referenced(&row(2)));
    h.transition_with("carol", "READY", &referenced(&row(3)));
    h.transition_with("alice", "PAUSED", &referenced("another:file"));
    // The run stops while carol's change is on the wire.
    h.drive_until(T0 + 5_000);

    let log: Vec<u8> = h.records().iter().flat_map(|(_, r)| r.to_line()).collect();
    let mut outcomes = ReferencedOutcomes::with_prefix("bulk:sha256=00112233aabbccdd:");
    scan_log(&log, LogState::default(), |r| outcomes.observe(r)).unwrap();
    assert_eq!(outcomes.get(&row(1)), Some(ReferenceOutcome::Succeeded));
    assert_eq!(
        outcomes.get(&row(2)),
        Some(ReferenceOutcome::Failed(Some(ErrorCode::AgentNotScheduled)))
    );
    assert_eq!(outcomes.get(&row(3)), Some(ReferenceOutcome::Open));
    assert_eq!(outcomes.get(&row(4)), None);
    assert_eq!(outcomes.get("another:file"), None, "outside the prefix");
    assert_eq!(outcomes.len(), 3);

    // The restore finishes the open change under its reference: the log then says it succeeded.
    h.restart(1_000);
    h.drive().unwrap();
    let mut all = ReferencedOutcomes::new();
    for (_, r) in h.records() {
        all.observe(r);
    }
    assert_eq!(all.get(&row(3)), Some(ReferenceOutcome::Succeeded));
    assert_eq!(all.get("another:file"), Some(ReferenceOutcome::Succeeded));
    assert_eq!(all.iter().count(), 4);
}
