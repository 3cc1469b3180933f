//! The edges of the durable log seen through the manager: a whole last record that lost its newline is kept
//! and continued (its `seq` is never reused), damage after a checkpoint is named by its line in the file,
//! and an agent's last state survives a restart.

use std::path::Path;
use std::time::Duration;

use cxone_agent_state::{now_ms, AgentStateManager, ManagerConfig};
use cxone_agent_state_core::sim::{AgentPlan, SimConfig, SimTenant};
use cxone_agent_state_core::{
    scan_log, AuditRecord, EngineConfig, ErrorCode, LogState, Record, Secret,
};

/// A tenant nobody listens at: these tests only send changes that fail before reaching it.
const NO_TENANT: &str = "http://127.0.0.1:9";

fn config(base_url: &str, log: &Path) -> ManagerConfig {
    let sim = SimConfig::default();
    let mut engine = EngineConfig::new(base_url, sim.client_id, Secret::new(sim.client_secret));
    engine.seed = 5;
    ManagerConfig::new(engine, Some(log.to_owned()))
}

/// The audit records of a log that must verify as a whole, in order.
fn audit_records(log: &Path) -> Vec<AuditRecord> {
    let bytes = std::fs::read(log).unwrap();
    let mut out = Vec::new();
    let scan = scan_log(&bytes, LogState::default(), |r| {
        if let Record::Audit(a) = r {
            out.push(a.clone());
        }
    })
    .expect("the whole log verifies");
    assert!(scan.torn_tail.is_none() && !scan.missing_newline);
    out
}

/// Starts a manager on `log`, asks for changes that fail on their input (each is audited, none reaches the
/// tenant), and shuts it down.
async fn invalid_changes(log: &Path, users: &[&str]) -> cxone_agent_state::store::Recovery {
    invalid_changes_with(config(NO_TENANT, log), users).await
}

/// [`invalid_changes`] with a configuration of its own.
async fn invalid_changes_with(
    config: ManagerConfig,
    users: &[&str],
) -> cxone_agent_state::store::Recovery {
    let m = AgentStateManager::start(config).await.unwrap();
    for u in users {
        let e = m.transition_state(u, "not a state").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState);
    }
    let recovery = m.recovery().clone();
    m.shutdown(Duration::from_millis(100)).await;
    recovery
}

#[tokio::test]
async fn a_whole_last_record_without_its_newline_is_kept_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    invalid_changes(&log, &["a1", "a2", "a3"]).await;
    let before = audit_records(&log);
    assert_eq!(before.len(), 3);
    let last = before.last().unwrap().clone();

    // The last record loses its newline (written without it, or the newline never reached the disk).
    let bytes = std::fs::read(&log).unwrap();
    let last_line = Record::Audit(last.clone()).to_line();
    assert!(
        bytes.ends_with(&last_line),
        "the log ends with that audit record"
    );
    std::fs::write(&log, &bytes[..bytes.len() - 1]).unwrap();

    let recovery = invalid_changes(&log, &["a4"]).await;
    assert!(recovery.newline_added, "{recovery:?}");
    assert!(recovery.torn_tail_saved_to.is_none(), "{recovery:?}");
    assert_eq!(recovery.state.chain_head().next_seq, last.seq + 1);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'));
    assert!(
        text.contains(std::str::from_utf8(&last_line).unwrap()),
        "the record is kept, now with its newline"
    );
    let after = audit_records(&log);
    assert_eq!(after.len(), 4);
    assert_eq!(after[..3], before[..]);
    assert_eq!(after[3].seq, last.seq + 1, "its seq is not reused");
    assert_eq!(after[3].prev_hash, last.hash);
    assert_eq!(after[3].user_id, "a4");
}

#[tokio::test]
async fn each_one_shot_process_names_the_state_the_last_one_left() {
    let mut tenant = SimTenant::new(SimConfig {
        latency_ms: 1,
        latency_jitter_ms: 0,
        ..SimConfig::default()
    });
    let now = now_ms();
    tenant.add_agent(AgentPlan::on_shift(
        "agent-1",
        now - 3_600_000,
        now + 3_600_000,
    ));
    let sim = cxone_agent_state_sim_server::start(([127, 0, 0, 1], 0).into(), tenant)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");

    // One manager per change, as `cxone-agent-state transition` runs: only the log links them.
    let mut previous = Vec::new();
    for state in ["READY", "PAUSED", "NOT_READY"] {
        let m = AgentStateManager::start(config(&sim.base_url(), &log))
            .await
            .unwrap();
        let changed = m.transition_state("agent-1", state).await.unwrap();
        previous.push(changed.previous_state);
        m.shutdown(Duration::from_millis(100)).await;
    }
    assert_eq!(
        previous,
        [None, Some("READY".to_owned()), Some("PAUSED".to_owned())]
    );
    let records = audit_records(&log);
    let logged: Vec<_> = records
        .iter()
        .map(|r| r.previous_state.as_deref())
        .collect();
    assert_eq!(logged, [None, Some("READY"), Some("PAUSED")]);
}

#[tokio::test]
async fn damage_after_a_checkpoint_is_named_by_its_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut c = config(NO_TENANT, &log);
    c.engine.checkpoint_every = Some(2);
    invalid_changes_with(c, &["a1", "a2", "a3"]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Two audit records, the checkpoint after them, then the third record: recovery reads only that one.
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[2].starts_with("{\"kind\":\"checkpoint\""),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("\"seq\":2,"), "{}", lines[3]);
    lines[3] = lines[3].replace("\"userId\":\"a3\"", "\"userId\":\"z3\"");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let err = AgentStateManager::start(config(NO_TENANT, &log))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuditLogCorrupt);
    let message = err.to_string();
    assert!(
        message.contains("line 4: audit record seq 2: hash does not match its content"),
        "{message}"
    );
}
