//! `audit verify` on logs written by hand: what it names when a log is damaged, the head it prints, and the
//! `--head SEQ:HASH` anchor that catches a removed tail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cxone_agent_state_core::{AuditRecord, ChainHead, Record};
use serde_json::{json, Value};

/// A fresh directory for one test (Cargo's scratch space for integration tests).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-verify-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `count` chained audit records, one per agent, as log lines (each with its newline).
fn audit_lines(count: u64) -> Vec<String> {
    let mut head = ChainHead::default();
    (0..count)
        .map(|i| {
            let draft: AuditRecord = serde_json::from_value(json!({
                "seq": 0, "id": format!("00000000-0000-4000-8000-{i:012}"),
                "timestamp": "2026-01-05T08:00:00.000Z", "userId": format!("agent-{i}"),
                "previousState": null, "newState": "READY", "reasonCode": "WORKING", "success": true,
                "latencyMs": 12, "policyViolation": false, "errorCode": null, "errorMessage": null,
                "attempts": 2, "idempotencyKey": null, "prevHash": "", "hash": "",
            }))
            .unwrap();
            String::from_utf8(Record::Audit(head.append(draft)).to_line()).unwrap()
        })
        .collect()
}

fn hash_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["hash"].as_str().unwrap().to_owned()
}

fn verify(file: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_cxone-agent-state"))
        .args(["audit", "verify"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

#[test]
fn a_tampered_record_is_named_by_its_line_and_seq() {
    let dir = scratch("tampered");
    let mut lines = audit_lines(5);
    lines[3] = lines[3].replace("\"success\":true", "\"success\":false");
    let log = write(&dir, "log.jsonl", &lines);
    let (code, stdout, _) = verify(&log, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("line 4: audit record seq 3: hash does not match its content"),
        "{stdout}"
    );
    assert!(!stdout.contains("record 0"), "{stdout}");
}

#[test]
fn an_unknown_member_fails_verification() {
    let dir = scratch("unknown-member");
    let mut lines = audit_lines(4);
    lines[3] = lines[3].replacen('{', "{\"note\":\"x\",", 1);
    let log = write(&dir, "log.jsonl", &lines);
    // stdout is not a terminal: the verdict is JSON, with the error's code and message at the top.
    let (code, stdout, _) = verify(&log, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["code"], "AUDIT_LOG_CORRUPT", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("line 4") && message.contains("`note`"),
        "{stdout}"
    );

    let (code, stdout, _) = verify(&log, &["--json"]);
    assert_eq!(code, Some(1), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], "AUDIT_LOG_CORRUPT", "{v}");
    assert_eq!(v["error"]["line"], 4, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`note`"),
        "{v}"
    );
    // The three records before it verified.
    assert_eq!(v["auditRecords"], 3, "{v}");
    assert_eq!(v["head"], format!("2:{}", hash_of(&lines[2])), "{v}");
}

#[test]
fn the_head_printed_is_the_head_that_head_takes_back() {
    let dir = scratch("head");
    let lines = audit_lines(3);
    let log = write(&dir, "log.jsonl", &lines);
    let head = format!("2:{}", hash_of(&lines[2]));
    let (code, stdout, _) = verify(&log, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((&v["auditRecords"], &v["head"]), (&json!(3), &json!(head)));

    // The same head, and an earlier one (the log may go on past it), both hold.
    let (code, stdout, _) = verify(&log, &["--head", &head]);
    assert_eq!(code, Some(0), "{stdout}");
    let earlier = format!("1:{}", hash_of(&lines[1]));
    let (code, stdout, _) = verify(&log, &["--head", &earlier]);
    assert_eq!(code, Some(0), "{stdout}");

    let (code, stdout, _) = verify(&log, &["--json", "--head", &head]);
    assert_eq!(code, Some(0), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v,
        json!({"ok": true, "auditRecords": 3, "records": 3, "head": head, "error": null})
    );

    // A log without audit records has no head.
    let empty = write(&dir, "empty.jsonl", &[]);
    let (code, stdout, _) = verify(&empty, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("\"head\":\"none\""), "{stdout}");
    let (code, stdout, _) = verify(&empty, &["--head", &head]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("no audit records"), "{stdout}");
}

#[test]
fn a_removed_or_rewritten_tail_fails_against_the_anchor() {
    let dir = scratch("removed-tail");
    let lines = audit_lines(3);
    let head = format!("2:{}", hash_of(&lines[2]));
    // The last record removed: the chain that is left is intact, only the anchor shows the loss.
    let shorter = write(&dir, "shorter.jsonl", &lines[..2]);
    let (code, stdout, _) = verify(&shorter, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = verify(&shorter, &["--head", &head]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("the log stops at seq 1, before the anchored seq 2"),
        "{stdout}"
    );
    let (code, stdout, _) = verify(&shorter, &["--head", &head, "--json"]);
    assert_eq!(code, Some(1), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], "AUDIT_LOG_CORRUPT", "{v}");
    assert_eq!(v["error"]["line"], Value::Null, "{v}");
    assert_eq!(v["head"], format!("1:{}", hash_of(&lines[1])), "{v}");

    // The tail rewritten from seq 1 on: a different chain, intact in itself.
    let mut forged: AuditRecord = serde_json::from_str(&lines[1]).unwrap();
    forged.success = false;
    let mut head_at_1 = ChainHead {
        next_seq: 1,
        last_hash: hash_of(&lines[0]),
    };
    let forged = String::from_utf8(Record::Audit(head_at_1.append(forged)).to_line()).unwrap();
    let rewritten = write(&dir, "rewritten.jsonl", &[lines[0].clone(), forged.clone()]);
    let (code, stdout, _) = verify(&rewritten, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let anchored = format!("1:{}", hash_of(&lines[1]));
    let (code, stdout, _) = verify(&rewritten, &["--head", &anchored]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "the audit record seq 1 has hash {}, not the anchored {}",
            hash_of(&forged),
            hash_of(&lines[1])
        )),
        "{stdout}"
    );
}

#[test]
fn a_malformed_anchor_is_refused_with_its_form() {
    let dir = scratch("bad-anchor");
    let log = write(&dir, "log.jsonl", &audit_lines(1));
    for (bad, why) in [
        ("2", "written SEQ:HASH"),
        ("x:abc", "SEQ is not a whole number"),
        ("2:abc", "64 lowercase hex digits"),
        (&format!("2:{}", "A".repeat(64)), "64 lowercase hex digits"),
    ] {
        let (code, stdout, stderr) = verify(&log, &["--head", bad]);
        assert_eq!(code, Some(64), "a usage error: {bad}: {stdout}{stderr}");
        assert!(stderr.contains(why), "{bad}: {stderr}");
        // stdout is not a terminal: the error is one JSON object there.
        let error: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(error["code"], "USAGE", "{bad}: {stdout}");
        assert!(error["message"].as_str().unwrap().contains(why), "{stdout}");
    }
}
