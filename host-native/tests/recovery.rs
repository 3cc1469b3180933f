//! The second rule on the native host's durable log: **nothing accepted is lost**, whatever byte a crash or
//! a power loss cuts the log at.
//!
//! A realistic log is written through the host's own writer, one group commit per drain of the engine: a day
//! of changes against the simulated tenant with faults, webhooks to a receiver that is sometimes down, and
//! checkpoints. Then the log is cut at every byte offset of its last commits (and, separately, cut and padded
//! with NUL bytes, as some file systems leave it after a power loss) and recovered each time. Every time:
//!
//! - recovery succeeds (a cut is a torn tail, never "corruption");
//! - the recovered state is exactly the fold of every record that was whole before the cut — so every
//!   acknowledged record (a whole group) survives, and nothing is invented;
//! - every audited change keeps its webhook (pending, delivered or dead-lettered), because its payload is
//!   written before its audit record;
//! - every change whose intent survived without an outcome is open, so the next start finishes it;
//! - a new engine restores from it, and the file takes new records after it.

use std::path::Path;

use cxone_agent_state::store;
use cxone_agent_state_core::sim::{
    AgentPlan, FaultKind, Harness, RandomFaults, ReceiverAnswer, SimConfig, SimTenant,
    SIM_WEBHOOK_URL, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{Engine, LogState, Now, Record, WebhookConfig};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;

/// Runs a short busy day of `rounds` rounds of changes and returns its records grouped as the engine emitted
/// them (one group per virtual instant: what one drain hands a host to commit).
fn groups(rounds: u64) -> Vec<Vec<Record>> {
    let sim = SimConfig {
        seed: 11,
        faults: RandomFaults {
            rate: 0.3,
            kinds: vec![
                FaultKind::DropAfter,
                FaultKind::DropBefore,
                FaultKind::status(500, None),
                FaultKind::RateLimit { retry_after_s: 2 },
            ],
        },
        ..SimConfig::default()
    };
    let mut config = Harness::engine_config_for_tenant(&sim, 5);
    config.checkpoint_every = Some(12);
    config.webhook = Some(WebhookConfig {
        dead_letter_after_refusals: 2,
        ..WebhookConfig::new(SIM_WEBHOOK_URL)
    });
    let mut tenant = SimTenant::new(sim);
    for i in 0..6 {
        tenant.add_agent(AgentPlan::on_shift(
            format!("a{i}"),
            T0 - 60 * MIN,
            T0 + 600 * MIN,
        ));
    }
    let mut h = Harness::new(Engine::new(config).unwrap(), tenant, T0);
    // The receiver is down for a while and refuses one payload outright.
    for _ in 0..6 {
        h.receiver.script.push_back(ReceiverAnswer::Drop);
    }
    h.receiver.script.push_back(ReceiverAnswer::Status(422));
    h.receiver.script.push_back(ReceiverAnswer::Status(422));
    for round in 0..rounds {
        for i in 0..6 {
            h.command_at(
                T0 + round * 20_000 + i * 500,
                cxone_agent_state_core::sim::Command::Transition {
                    user_id: format!("a{i}"),
                    state: ["READY", "PAUSED", "NOT_READY", "IDLE"][((round + i) % 4) as usize]
                        .into(),
                },
            );
        }
    }
    h.drive().unwrap();
    let mut out: Vec<(u64, Vec<Record>)> = Vec::new();
    for (at, r) in h.records() {
        match out.last_mut() {
            Some((t, g)) if t == at => g.push(r.clone()),
            _ => out.push((*at, vec![r.clone()])),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

/// Writes the groups through the host's writer, one group commit each.
fn write_log(path: &Path, groups: &[Vec<Record>]) {
    let (_, writer, thread) = store::open(path, T0).unwrap();
    for g in groups {
        writer
            .write(g.clone())
            .blocking_recv()
            .unwrap()
            .expect("written and synced");
    }
    drop(writer);
    thread.join().unwrap();
}

/// The fold of every record whose line is whole in `bytes` (with its newline, or the last one without).
fn fold_of_whole_records(records: &[Record], lines_end: &[usize], cut: usize) -> LogState {
    let mut state = LogState::default();
    for (r, &end) in records.iter().zip(lines_end) {
        // `end` is the offset just past the record's newline; without it the record is still whole.
        if end - 1 <= cut {
            state.apply(r).unwrap();
        }
    }
    state
}

/// Writes the log cut at `cut` and padded with `pad` NUL bytes to `cut_path`, recovers it and checks that the
/// recovered state is `expected` (the fold of the records whole before the cut), and that the file then
/// takes new records.
fn check_cut(cut_path: &Path, bytes: &[u8], cut: usize, pad: usize, expected: &LogState) {
    let mut damaged = bytes[..cut].to_vec();
    damaged.extend(std::iter::repeat_n(0u8, pad));
    std::fs::write(cut_path, &damaged).unwrap();
    let recovery =
        store::recover(cut_path, T0).unwrap_or_else(|e| panic!("cut at {cut} (+{pad} NUL): {e}"));
    assert_eq!(
        recovery.state.checkpoint(0),
        expected.checkpoint(0),
        "cut at {cut} (+{pad} NUL): the recovered state is not the fold of the whole records"
    );
    // The file now ends on a whole record, and takes new ones.
    let after = std::fs::read(cut_path).unwrap();
    assert!(after.is_empty() || after.ends_with(b"\n"), "cut at {cut}");
    let (_, w, t) = store::open(cut_path, T0).unwrap();
    w.write(vec![Record::Checkpoint(recovery.state.checkpoint(1))])
        .blocking_recv()
        .unwrap()
        .unwrap();
    drop(w);
    t.join().unwrap();
    let again = store::recover(cut_path, T0).unwrap();
    assert_eq!(
        again.state.checkpoint(0),
        expected.checkpoint(0),
        "cut at {cut}"
    );
    assert!(again.torn_tail_saved_to.is_none() && !again.newline_added);
}

#[test]
fn recovery_at_every_byte_of_the_last_commits_loses_nothing_acknowledged() {
    let groups = groups(4);
    let records: Vec<Record> = groups.iter().flatten().cloned().collect();
    assert!(records.iter().any(|r| matches!(r, Record::Checkpoint(_))));
    assert!(records.iter().any(|r| matches!(r, Record::Webhook(_))));
    assert!(records.iter().any(|r| matches!(r, Record::DeadLetter(_))));
    assert!(records.iter().any(|r| matches!(r, Record::Intent(_))));

    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    write_log(&full, &groups);
    let bytes = std::fs::read(&full).unwrap();
    let mut lines_end = Vec::new();
    let mut at = 0;
    for r in &records {
        at += r.to_line().len();
        lines_end.push(at);
    }
    assert_eq!(at, bytes.len(), "the file is the records, line by line");
    // Every audited success has its webhook payload right before it.
    for (i, r) in records.iter().enumerate() {
        if let Some(a) = r.as_audit().filter(|a| a.success) {
            assert!(
                matches!(records[i - 1], Record::Webhook(_)),
                "audit record {} without its payload before it",
                a.seq
            );
        }
    }

    // The last three commits, byte by byte.
    let group_ends: Vec<usize> = groups
        .iter()
        .scan(0, |acc, g| {
            *acc += g.iter().map(|r| r.to_line().len()).sum::<usize>();
            Some(*acc)
        })
        .collect();
    let from = group_ends[group_ends.len() - 4];
    // The cuts are split between workers (each with a file of its own), interleaved so each gets cuts
    // through every commit.
    const WORKERS: usize = 4;
    let checked: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let cut_path = dir.path().join(format!("cut-{w}.jsonl"));
                let (bytes, records, lines_end) = (&bytes, &records, &lines_end);
                scope.spawn(move || {
                    let mut checked = 0;
                    for cut in (from + w..=bytes.len()).step_by(WORKERS) {
                        let expected = fold_of_whole_records(records, lines_end, cut);
                        for pad in [0usize, 64] {
                            check_cut(&cut_path, bytes, cut, pad, &expected);
                            checked += 1;
                        }
                    }
                    checked
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .sum()
    });
    assert!(checked > 200, "only {checked} cuts");
    // Each torn tail was set aside beside the log, never silently dropped.
    assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".torn-")));
}

#[test]
fn a_restored_engine_finishes_what_a_cut_log_left_open() {
    let groups = groups(4);
    let records: Vec<Record> = groups.iter().flatten().cloned().collect();
    // Cut right after an intent whose outcome never reached the log.
    let i = records
        .iter()
        .position(|r| matches!(r, Record::Intent(_)))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    write_log(&path, &[records[..=i].to_vec()]);
    let recovery = store::recover(&path, T0).unwrap();
    assert_eq!(recovery.state.open_changes().count(), 1);
    let sim = SimConfig::default();
    let mut config = Harness::engine_config_for_tenant(&sim, 9);
    config.webhook = Some(WebhookConfig::new(SIM_WEBHOOK_URL));
    let mut engine = Engine::new(config).unwrap();
    let Record::Intent(intent) = &records[i] else {
        unreachable!()
    };
    let restored = engine.restore(Now::at(intent.at_ms + 1_000), recovery.state);
    assert_eq!(restored.resumed, 1, "sent again with its key, not lost");
    assert_eq!(engine.open_changes(), 1);
}

#[test]
fn recovery_reads_only_from_the_last_checkpoint() {
    let groups = groups(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    write_log(&path, &groups);
    let len = std::fs::metadata(&path).unwrap().len();
    let recovery = store::recover(&path, T0).unwrap();
    assert!(
        recovery.bytes_read * 3 < len,
        "read {} of {len} bytes",
        recovery.bytes_read
    );
    let mut whole = LogState::default();
    for r in groups.iter().flatten() {
        whole.apply(r).unwrap();
    }
    assert_eq!(recovery.state.checkpoint(0), whole.checkpoint(0));
    assert_eq!(recovery.state.chain_head(), whole.chain_head());
}

#[test]
fn a_torn_last_checkpoint_falls_back_to_the_one_before() {
    // Enough rounds that the log outgrows one chunk of the backward search for the last checkpoint.
    let groups = groups(40);
    let records: Vec<Record> = groups.iter().flatten().cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    write_log(&path, &groups);
    let whole = store::recover(&path, T0).unwrap();
    // A checkpoint cut short at the end: recovery must use an earlier whole one (and read further back).
    let mut bytes = std::fs::read(&path).unwrap();
    let Some(Record::Checkpoint(last)) = records
        .iter()
        .rev()
        .find(|r| matches!(r, Record::Checkpoint(_)))
    else {
        panic!("checkpoints were written");
    };
    let line = Record::Checkpoint(last.clone()).to_line();
    bytes.extend_from_slice(&line[..line.len() / 2]);
    std::fs::write(&path, &bytes).unwrap();
    let recovered = store::recover(&path, T0).unwrap();
    assert!(recovered.torn_tail_saved_to.is_some());
    assert_eq!(recovered.state.checkpoint(0), whole.state.checkpoint(0));
    // And a log far larger than one read chunk still recovers from near its end.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 256 * 1024, "{len}");
    assert!(
        recovered.bytes_read < len / 4,
        "read {} of {len}",
        recovered.bytes_read
    );
}

#[test]
fn a_second_process_cannot_open_a_log_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let (_, writer, thread) = store::open(&path, T0).unwrap();
    let err = store::open(&path, T0).unwrap_err();
    assert!(matches!(err, store::StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(writer);
    thread.join().unwrap();
    assert!(
        store::open(&path, T0).is_ok(),
        "free again once the writer stopped"
    );
}
