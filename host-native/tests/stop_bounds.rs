//! A bounded stop ([`StopBounds`]), as a service's SIGTERM uses it: changes never sent end `CLOSED` when the
//! grace runs out, a change on the wire whose answer does not come ends `OUTCOME_UNKNOWN` at the bound (and
//! the next start settles it with the same `Idempotency-Key`), and the stop ends long before the tenant
//! would have answered. Nothing is rewritten, and the audit log never claims what the tenant does not hold.

use std::path::Path;
use std::time::{Duration, Instant};

use cxone_agent_state::{now_ms, AgentStateManager, ManagerConfig, StopBounds};
use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, SimConfig, SimTenant,
};
use cxone_agent_state_core::{
    scan_log, AuditRecord, EngineConfig, ErrorCode, LogState, Record, Secret,
};

fn config(base_url: &str, log: &Path) -> ManagerConfig {
    let sim = SimConfig::default();
    let mut engine = EngineConfig::new(base_url, sim.client_id, Secret::new(sim.client_secret));
    engine.seed = 11;
    // Longer than the test: only the stop's bound can end the change on the wire.
    engine.request_timeout_ms = 60_000;
    ManagerConfig::new(engine, Some(log.to_owned()))
}

fn audit_records(log: &Path) -> Vec<AuditRecord> {
    let bytes = std::fs::read(log).unwrap();
    let mut out = Vec::new();
    scan_log(&bytes, LogState::default(), |r| {
        if let Record::Audit(a) = r {
            out.push(a.clone());
        }
    })
    .expect("the whole log verifies");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_stop_closes_what_never_left_and_leaves_the_sent_change_unknown_until_settled() {
    let now = now_ms();
    let mut tenant = SimTenant::new(SimConfig {
        latency_ms: 0,
        latency_jitter_ms: 0,
        ..SimConfig::default()
    });
    tenant.add_agent(AgentPlan::on_shift(
        "alice",
        now - 3_600_000,
        now + 3_600_000,
    ));
    // alice's first state change is applied at once and answered a minute later.
    tenant.script_fault(FaultRule {
        endpoint: Some(Endpoint::SetState),
        user_id: Some("alice".into()),
        fault: FaultKind::Slow { extra_ms: 60_000 },
        times: 1,
    });
    let server = cxone_agent_state_sim_server::start(([127, 0, 0, 1], 0).into(), tenant)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let manager = AgentStateManager::start(config(&server.base_url(), &log))
        .await
        .unwrap();
    let sent = manager.submit_transition("alice", "READY").await.unwrap();
    let behind = manager
        .submit_transition("alice", "NOT_READY")
        .await
        .unwrap();
    let tenant = server.tenant();
    let until = Instant::now() + Duration::from_secs(10);
    while tenant.lock().unwrap().agent_state("alice") != Some("READY") {
        assert!(
            Instant::now() < until,
            "the first change never reached the tenant"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let bounds = StopBounds::graceful(
        Duration::from_millis(200),
        Duration::from_millis(300),
        Duration::ZERO,
    );
    let summary = manager.stop(bounds).await;
    assert_eq!(
        (summary.ended_closed, summary.ended_unknown),
        (1, 1),
        "the stop tells what its bounds ended: {summary:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded, not waiting for the tenant's answer: {:?}",
        started.elapsed()
    );
    let sent = sent.outcome().await.unwrap_err();
    assert_eq!(sent.code, ErrorCode::OutcomeUnknown, "{sent:?}");
    let behind = behind.outcome().await.unwrap_err();
    assert_eq!(behind.code, ErrorCode::Closed, "{behind:?}");
    assert_eq!(
        tenant.lock().unwrap().agent_state("alice"),
        Some("READY"),
        "the change behind was never sent"
    );
    let records = audit_records(&log);
    let codes: Vec<Option<ErrorCode>> = records.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [Some(ErrorCode::Closed), Some(ErrorCode::OutcomeUnknown)],
        "the change behind ends at the grace, the one on the wire at the bound: {records:#?}"
    );
    assert!(records.iter().all(|r| !r.success));
    // `stop` answers once every record is durable; `shutdown` then waits for the log to be let go.
    manager.shutdown(Duration::ZERO).await;

    // The next start resends the unknown change with its key: the tenant knows it, and a new record
    // settles the old one; nothing earlier is rewritten.
    let restarted = AgentStateManager::start(config(&server.base_url(), &log))
        .await
        .unwrap();
    assert_eq!(restarted.restored().resumed, 1);
    restarted.shutdown(Duration::ZERO).await;
    let after = audit_records(&log);
    assert_eq!(&after[..records.len()], &records[..], "nothing rewritten");
    let settling = after
        .iter()
        .skip(records.len())
        .find(|r| r.settles.is_some())
        .unwrap_or_else(|| panic!("no settling record: {after:#?}"));
    assert!(settling.success, "{settling:?}");
    assert_eq!(settling.new_state, "READY");
    assert_eq!(settling.idempotency_key, records[1].idempotency_key);
    server.shutdown().await;
}
