//! Ctrl-C during `bulk`: no new rows start, the rows in flight finish, the audit log and the outbox are
//! flushed, and the program exits cleanly with 130.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_in_flight_rows_and_flushes() {
    // 600 requests/min with a burst of 5: 200 rows take about 40 s, so the interrupt lands mid-run.
    let sim =
        support::SimProcess::start(&["--agents", "200", "--rate-limit", "600", "--burst", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.csv");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "userId,state").unwrap();
    for i in 1..=200 {
        writeln!(f, "agent-{i:04},NOT_READY").unwrap();
    }
    drop(f);
    let audit = dir.path().join("audit.jsonl");
    let output = dir.path().join("out.jsonl");
    let child = Command::new(support::binary())
        .arg("bulk")
        .arg(&input)
        .args([
            "--concurrency",
            "8",
            "--webhook-drain-secs",
            "1",
            "--rate-limit",
            "600",
        ])
        .arg("--output")
        .arg(&output)
        .arg("--audit-log")
        .arg(&audit)
        .args(["--base-url", &sim.base_url, "--client-id", "sim-client"])
        .env_remove("CXONE_DOMAIN")
        .env_remove("CXONE_CLIENT_ID")
        .env_remove("WORKFORCE_WEBHOOK_URL")
        .env("CXONE_CLIENT_SECRET", "sim-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some rows are done, then interrupt.
    let start = Instant::now();
    while std::fs::read_to_string(&audit)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 10
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    // Not every row ran, every row that started finished, and each finished row is in the audit log.
    let results: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        results.len() >= 10 && results.len() < 200,
        "{} rows",
        results.len()
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        audit_text.ends_with('\n'),
        "the log ends on a complete record"
    );
    let lines: Vec<Value> = audit_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (intents, records): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .filter(|v| v["kind"] != "checkpoint")
        .partition(|v| v["kind"] == "intent");
    assert_eq!(
        records.len(),
        results.len(),
        "one audit record per finished row"
    );
    let verify = Command::new(support::binary())
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(verify.status.success());

    // Every change the tenant accepted is in the audit log; nothing is left to resume.
    let accepted = support::admin_get(&sim.base_url, "/admin/accepted-changes").await;
    let keys: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["success"] == true)
        .filter_map(|r| r["idempotencyKey"].as_str())
        .collect();
    for change in accepted.as_array().unwrap() {
        let key = change["idempotencyKey"].as_str().unwrap();
        assert!(
            keys.contains(key),
            "accepted change {key} missing from the audit log"
        );
    }
    for intent in &intents {
        assert!(
            keys.contains(intent["idempotencyKey"].as_str().unwrap()),
            "a journaled change has no outcome: {intent}"
        );
    }
}
