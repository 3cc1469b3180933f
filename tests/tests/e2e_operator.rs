//! The command line as a careful operator meets it: data safety, the audit trail's edges, input, exit codes
//! and messages, interrupts and progress, and help. Each test runs the real binary against `sim-server`
//! over loopback (or reads the files it wrote).
mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cxone_agent_state_core::sim::{Endpoint, FaultKind, FaultRule};
use serde_json::Value;
use support::cli::*;
use support::{admin_get, admin_post, WebhookSink};
use tokio::io::AsyncBufReadExt;

/// The `SEQ:HASH` a writing command printed on stderr as `audit head: SEQ:HASH (PATH)`.
fn head_of(out: &Out) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("audit head: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `audit head:` line:\n{out}"))
        .to_owned()
}

/// The lines of a file, as text.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts `cmd` in the background with piped stdout and stderr.
fn spawn(cmd: std::process::Command) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("the CLI starts")
}

/// `bulk INPUT --output OUTPUT --concurrency 2 [--resume]` with the connection flags `conn`.
fn bulk_two_at_a_time(
    input: &Path,
    output: &Path,
    conn: &[String],
    resume: bool,
) -> std::process::Command {
    let mut a = args(
        &[
            "bulk",
            path_str(input),
            "--output",
            path_str(output),
            "--concurrency",
            "2",
        ],
        conn,
    );
    if resume {
        a.push("--resume".into());
    }
    cli(a)
}

/// Sends SIGINT (what Ctrl-C sends) to a child.
fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits until `f` holds, for at most `secs` seconds.
async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Data safety
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn bulk_refuses_to_write_results_over_the_audit_log_or_its_companions() {
    let sim = server(5, &[]);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("yy.jsonl");
    let conn = connect(&sim.base_url, &audit);
    let first = transition("agent-0001", "READY", &conn).await;
    assert_eq!(first.code(), Some(0), "{first}");
    let before = std::fs::read(&audit).unwrap();
    let requests = total_requests(&sim.base_url).await;
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, agents_csv(1..=3, |_| "NOT_READY")).unwrap();

    // The same file by another spelling, a companion file, and the input itself.
    let same = dir.path().join(".").join("yy.jsonl");
    let torn = dir.path().join("yy.jsonl.torn-1700000000000");
    for output in [&same, &torn, &input] {
        let out = run(cli(args(
            &["bulk", path_str(&input), "--output", path_str(output)],
            &conn,
        )))
        .await;
        assert_eq!(out.code(), Some(64), "{out}");
        let error = out.json();
        assert_eq!(error["code"], "OUTPUT_IS_AUDIT_LOG", "{out}");
        assert!(
            error["message"].as_str().unwrap().contains("--output"),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read(&audit).unwrap(),
        before,
        "the log is untouched"
    );
    assert!(!torn.exists());

    // Results on stdout, redirected by the shell onto the log (`bulk rows.csv >> yy.jsonl`): for any
    // command that writes the log, and the refusal goes to stderr, not into the log.
    for head in [
        &["bulk", path_str(&input)][..],
        &["transition", "--user", "agent-0002", "--state", "READY"],
    ] {
        let mut redirected = cli(args(head, &conn));
        let log_for_append = std::fs::OpenOptions::new()
            .append(true)
            .open(&audit)
            .unwrap();
        redirected
            .stdin(Stdio::null())
            .stdout(log_for_append)
            .stderr(Stdio::piped());
        let out = redirected.output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{head:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("OUTPUT_IS_AUDIT_LOG"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read(&audit).unwrap(),
        before,
        "the log is untouched"
    );
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
    assert_eq!(
        total_requests(&sim.base_url).await,
        requests,
        "nothing was sent"
    );
}

#[tokio::test]
async fn simulate_refuses_a_log_with_real_records_unless_forced() {
    let (sim, dir, real, conn) = scene(5, &[]);
    let out = transition("agent-0001", "READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let before = std::fs::read(&real).unwrap();

    let simulate = |log: &Path, force: bool| {
        let mut a = vec![
            "simulate",
            "--agents",
            "3",
            "--hours",
            "1",
            "--no-progress",
            "--audit-log",
            path_str(log),
        ];
        if force {
            a.push("--force");
        }
        cli(a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let refused = run(simulate(&real, false)).await;
    assert_eq!(refused.code(), Some(1), "{refused}");
    assert_eq!(refused.json()["code"], "LOG_NOT_SIMULATED", "{refused}");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("--force"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read(&real).unwrap(),
        before,
        "the real log is kept"
    );

    // A simulation's own log is replaced without asking: `make run` twice works.
    let simulated = dir.path().join("sim.jsonl");
    for _ in 0..2 {
        let out = run(simulate(&simulated, false)).await;
        assert_eq!(out.code(), Some(0), "{out}");
    }
    // The other way round: real changes are not recorded in a simulation's log, so a later simulate
    // cannot wipe them.
    let simulated_bytes = std::fs::read(&simulated).unwrap();
    let mixed = transition("agent-0002", "READY", &connect(&sim.base_url, &simulated)).await;
    assert_eq!(mixed.code(), Some(1), "{mixed}");
    assert_eq!(mixed.json()["code"], "INVALID_CONFIG", "{mixed}");
    assert!(mixed.stdout.contains("written by a simulation"), "{mixed}");
    assert_eq!(std::fs::read(&simulated).unwrap(), simulated_bytes);

    let forced = run(simulate(&real, true)).await;
    assert_eq!(forced.code(), Some(0), "{forced}");
    assert_ne!(std::fs::read(&real).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_results_survive_kill_9_line_by_line_and_resume_fills_the_gap() {
    const ROWS: usize = 60;
    // Slow answers keep the run going long enough to kill it with results decided.
    let (sim, dir, audit, conn) = scene(ROWS, &["--latency-ms", "60"]);
    let input = dir.path().join("rows.csv");
    let output = dir.path().join("results.jsonl");
    std::fs::write(&input, agents_csv(1..=ROWS, |_| "NOT_READY")).unwrap();
    let bulk = |resume: bool| bulk_two_at_a_time(&input, &output, &conn, resume);
    let mut child = spawn(bulk(false));
    let audited = || {
        read_audit(&audit)
            .iter()
            .filter(|r| r["success"] == true)
            .count()
    };
    until(45, "15 audited changes", || audited() >= 15).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at_kill = audited();
    let results = read_jsonl(&output);
    // Every result printed is kept: at most the changes in flight (2) are audited without a line yet.
    assert!(
        results.len() + 2 >= at_kill && results.len() >= 13,
        "{} result lines for {at_kill} audited changes",
        results.len()
    );
    assert!(results.iter().all(|r| r["success"] == true));

    // Resuming sends only the rest, and writes the results the kill cut off from the audit log.
    let resumed = run(bulk(true)).await;
    assert_eq!(resumed.code(), Some(0), "{resumed}");
    let all = read_jsonl(&output);
    let rows: std::collections::BTreeSet<u64> =
        all.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(all.len(), ROWS, "one line per row:\n{resumed}");
    assert_eq!(rows.len(), ROWS);
    let from_log = all.iter().filter(|r| r["fromAuditLog"] == true).count();
    // At most the two audited without a line and the two in flight (resumed at start under their key).
    assert!(from_log <= 4, "only the lines the kill cut off: {from_log}");
    assert_eq!(
        admin_get(&sim.base_url, "/admin/accepted-changes")
            .await
            .as_array()
            .unwrap()
            .len(),
        ROWS,
        "no change was sent twice"
    );
}

// ---------------------------------------------------------------------------------------------------------
// The audit trail's edges
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deleted_last_record_is_caught_by_the_head_anchor() {
    let (_sim, _dir, audit, conn) = scene(5, &[]);
    let mut head = String::new();
    for (user, state) in [("agent-0001", "READY"), ("agent-0002", "READY")] {
        let out = transition(user, state, &conn).await;
        assert_eq!(out.code(), Some(0), "{out}");
        head = head_of(&out);
    }
    let (seq, hash) = head.split_once(':').unwrap();
    assert_eq!(seq, "1", "two records: the head is seq 1");
    assert_eq!(hash.len(), 64);

    let verify = |anchor: &str| cli(["audit", "verify", path_str(&audit), "--head", anchor]);
    let ok = run(verify(&head)).await;
    assert_eq!(ok.code(), Some(0), "{ok}");
    assert!(
        ok.stdout.contains(&head),
        "the OK line names the head:\n{ok}"
    );

    // Cut the last audit record (and everything after it).
    let kept: Vec<String> = {
        let all = lines(&audit);
        let last = all
            .iter()
            .rposition(|l| !l.contains("\"kind\""))
            .expect("an audit line");
        all[..last].to_vec()
    };
    std::fs::write(&audit, kept.join("\n") + "\n").unwrap();
    let chain_only = audit_verify(&audit).await;
    assert_eq!(
        chain_only.code(),
        Some(0),
        "the chain alone cannot see it:\n{chain_only}"
    );
    let anchored = run(verify(&head)).await;
    assert_eq!(anchored.code(), Some(1), "{anchored}");
    assert!(
        anchored.all_output().contains("seq 1"),
        "names the missing record:\n{anchored}"
    );
    let wrong = run(verify(&format!("0:{}", "0".repeat(64)))).await;
    assert_eq!(wrong.code(), Some(1), "{wrong}");
    let malformed = run(verify("latest")).await;
    assert_eq!(malformed.code(), Some(64), "{malformed}");
}

#[tokio::test]
async fn an_unknown_member_in_an_audit_record_fails_verification_and_names_the_record() {
    let (_sim, _dir, audit, conn) = scene(5, &[]);
    for user in ["agent-0001", "agent-0002", "agent-0003", "agent-0004"] {
        assert_eq!(transition(user, "READY", &conn).await.code(), Some(0));
    }
    let original = lines(&audit);
    let (line_no, _) = original
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.contains("\"kind\""))
        .nth(3)
        .unwrap();

    let mut added = original.clone();
    added[line_no] = added[line_no].replacen('{', "{\"note\":\"approved by me\",", 1);
    std::fs::write(&audit, added.join("\n") + "\n").unwrap();
    let out = audit_verify(&audit).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("note"), "names the member:\n{out}");
    assert!(
        out.stdout.contains(&format!("line {}", line_no + 1)),
        "names the line:\n{out}"
    );

    let mut edited = original.clone();
    edited[line_no] = edited[line_no].replace("\"READY\"", "\"PAUSED\"");
    std::fs::write(&audit, edited.join("\n") + "\n").unwrap();
    let out = audit_verify(&audit).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("seq 3"), "names the record:\n{out}");
    assert!(!out.stdout.contains("record 0"), "{out}");
}

#[tokio::test]
async fn a_whole_last_record_without_its_newline_is_kept_and_its_seq_not_reused() {
    let (_sim, dir, audit, conn) = scene(5, &[]);
    assert_eq!(
        transition("agent-0001", "READY", &conn).await.code(),
        Some(0)
    );
    let mut bytes = std::fs::read(&audit).unwrap();
    assert_eq!(bytes.pop(), Some(b'\n'));
    std::fs::write(&audit, &bytes).unwrap();
    let last_seq = read_audit(&audit)
        .last()
        .map(|r| r["seq"].as_u64().unwrap());

    let out = transition("agent-0002", "READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let seqs: Vec<u64> = read_audit(&audit)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![0, 1],
        "kept, and the next record is seq 1 ({last_seq:?})"
    );
    let torn: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert!(torn.is_empty(), "nothing was set aside");
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test]
async fn a_one_shot_transition_names_the_previous_state_from_the_log() {
    let (_sim, _dir, audit, conn) = scene(5, &[]);
    let first = transition("agent-0001", "READY", &conn).await;
    assert_eq!(first.json()["previousState"], Value::Null, "{first}");
    let second = transition("agent-0001", "NOT_READY", &conn).await;
    assert_eq!(second.json()["previousState"], "READY", "{second}");
    let last = read_audit(&audit).pop().unwrap();
    assert_eq!(last["previousState"], "READY");
}

// ---------------------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn bulk_input_from_a_spreadsheet_bom_padding_case_and_duplicates() {
    let (sim, dir, _, conn) = scene(5, &[]);
    let input = dir.path().join("export.csv");
    std::fs::write(
        &input,
        b"\xEF\xBB\xBFuserId,state\r\n agent-0001 , READY \r\nagent-0002,ready\r\n",
    )
    .unwrap();
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    let rows = out.json_lines();
    assert_eq!(rows.len(), 2, "{out}");
    let row = |n: u64| rows.iter().find(|r| r["row"] == n).unwrap();
    assert_eq!(row(1)["success"], true, "{out}");
    assert_eq!(row(1)["userId"], "agent-0001");
    assert_eq!(row(2)["code"], "INVALID_STATE");
    assert!(
        row(2)["message"].as_str().unwrap().contains("`READY`"),
        "suggests READY: {out}"
    );
    assert_eq!(agent_state(&sim.base_url, "agent-0001").await, "READY");

    let jsonl = dir.path().join("rows.jsonl");
    std::fs::write(
        &jsonl,
        "{\"userId\":\"agent-0003\",\"state\":\"READY\",\"state\":\"NOT_READY\"}\n",
    )
    .unwrap();
    let out = run(cli(args(&["bulk", path_str(&jsonl)], &conn))).await;
    assert_eq!(out.code(), Some(1), "{out}");
    let rows = out.json_lines();
    assert_eq!(rows[0]["code"], "MALFORMED_ROW", "{out}");
    assert!(rows[0]["message"].as_str().unwrap().contains("state"));
    assert_eq!(agent_state(&sim.base_url, "agent-0003").await, Value::Null);
}

// ---------------------------------------------------------------------------------------------------------
// Exit codes and messages
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn usage_errors_exit_64_as_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conn = connect("http://127.0.0.1:9", &audit);
    for argv in [
        args(&["transition", "--user", "a", "--bogus"], &conn),
        args(&["transition", "--user", "a"], &conn),
        vec!["simulate".into(), "--agents".into(), "-3".into()],
        vec!["nonsense".into()],
        vec!["audit".into()],
    ] {
        let out = run(cli(&argv)).await;
        assert_eq!(out.code(), Some(64), "{argv:?}\n{out}");
        let error = out.json();
        assert_eq!(error["code"], "USAGE", "{out}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    assert!(!audit.exists(), "nothing was started");
}

#[tokio::test]
async fn a_bad_environment_value_is_named_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // A transition whose secret comes from the environment, with one more variable set to `value`.
    let with_env = |name: &str, value: &str| {
        let mut c = cli([
            "transition",
            "--user",
            "agent-0001",
            "--state",
            "READY",
            "--base-url",
            "http://127.0.0.1:9",
            "--client-id",
            "i",
            "--audit-log",
            path_str(&audit),
        ]);
        c.env("CXONE_CLIENT_SECRET", "hush-hush-0042")
            .env(name, value);
        c
    };
    for (name, value, flag) in [
        ("CXONE_RATE_LIMIT_PER_MIN", "lots", "--rate-limit"),
        (
            "WORKFORCE_WEBHOOK_RECEIVER_CHANGE",
            "sideways",
            "--webhook-receiver-change",
        ),
        ("CXONE_MAX_OPEN_CHANGES", "many", "--max-open-changes"),
        ("CXONE_MAX_OPEN_CHANGES", "0", "--max-open-changes"),
    ] {
        let out = run(with_env(name, value)).await;
        assert_eq!(out.code(), Some(64), "{out}");
        let error = out.json();
        assert_eq!(error["code"], "INVALID_CONFIG", "{out}");
        assert!(error["message"].as_str().unwrap().contains(name), "{out}");
        assert!(
            !out.all_output().contains(flag),
            "names a flag never typed:\n{out}"
        );
        assert!(!out.all_output().contains("hush-hush-0042"), "{out}");
    }
    // A flag is named as the flag, even where the variable could have set the same setting.
    let mut zero = with_env("CXONE_DOMAIN", "acme");
    zero.args(["--rate-limit", "0"]);
    let out = run(zero).await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.stdout.contains("--rate-limit"), "{out}");
    assert!(!out.stdout.contains("CXONE_RATE_LIMIT_PER_MIN"), "{out}");
    // A variable a flag overrides is not read at all: its bad value is no error.
    let mut overridden = with_env("CXONE_RATE_LIMIT_PER_MIN", "lots");
    overridden.args(["--rate-limit", "100", "--request-timeout-ms", "200"]);
    let out = run(overridden).await;
    assert_ne!(out.json()["code"], "INVALID_CONFIG", "{out}");
    assert_eq!(
        out.code(),
        Some(1),
        "it got as far as the (absent) tenant:\n{out}"
    );
}

#[tokio::test]
async fn failures_are_json_objects_and_a_changed_input_is_named_on_resume() {
    let (_sim, dir, audit, conn) = scene(3, &[]);
    assert_eq!(
        transition("agent-0001", "READY", &conn).await.code(),
        Some(0)
    );
    let out = run(cli(args(
        &["outbox", "replay", "--event-id", "no-such-event"],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "NO_SUCH_DEAD_LETTER", "{out}");
    let missing = dir.path().join("missing.jsonl");
    let out = run(cli(["report", "--audit-log", path_str(&missing)])).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "AUDIT_LOG_UNAVAILABLE", "{out}");
    let out = audit_verify(&audit).await;
    assert_eq!(out.json()["ok"], true, "{out}");

    // `--resume` with an input that changed since: every row is sent again, and it says so.
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, agents_csv(1..=2, |_| "NOT_READY")).unwrap();
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    std::fs::write(&input, agents_csv(1..=3, |_| "NOT_READY")).unwrap();
    let out = run(cli(args(&["bulk", path_str(&input), "--resume"], &conn))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("holds no row of this input"), "{out}");
    assert_eq!(out.json_lines().len(), 3, "{out}");
}

#[tokio::test]
async fn policy_refusals_exit_2_and_bulk_exits_2_when_they_are_its_only_failures() {
    let sim = server(5, &[]);
    add_agent(&sim.base_url, support::unscheduled("agent-off")).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conn = connect(&sim.base_url, &audit);
    let refused = transition("agent-off", "READY", &conn).await;
    assert_eq!(refused.code(), Some(2), "{refused}");
    assert_eq!(refused.json()["code"], "AGENT_NOT_SCHEDULED");

    let only_refusals = "userId,state\nagent-0001,READY\nagent-off,READY\n";
    let out = run_input(
        cli(args(&["bulk", "-"], &conn)),
        Some(only_refusals.as_bytes()),
    )
    .await;
    assert_eq!(out.code(), Some(2), "{out}");
    let with_malformed = "userId,state\nagent-0002,READY\nagent-off,READY\nagent-0003\n";
    let out = run_input(
        cli(args(&["bulk", "-"], &conn)),
        Some(with_malformed.as_bytes()),
    )
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
}

#[tokio::test]
async fn webhook_failures_name_their_cause_without_colour() {
    let (sim, _dir, audit, _) = scene(5, &[]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let mut conn = connect(&sim.base_url, &audit);
    set_flag(&mut conn, "--webhook-drain-secs", "1");
    conn.extend(["--webhook-url".to_owned(), url]);
    let mut c = cli(args(
        &["transition", "--user", "agent-0001", "--state", "READY"],
        &conn,
    ));
    c.env("CXONE_LOG", "warn");
    let out = run(c).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.to_lowercase().contains("connection refused"),
        "{out}"
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "no ANSI colour off a terminal:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Interrupts and progress
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_says_what_it_waits_for_and_resume_finishes_the_rest() {
    const ROWS: usize = 150;
    let (sim, dir, audit, _) = scene(ROWS, &["--latency-ms", "40"]);
    let input = dir.path().join("rows.csv");
    let output = dir.path().join("results.jsonl");
    std::fs::write(&input, agents_csv(1..=ROWS, |_| "READY")).unwrap();
    let conn = connect(&sim.base_url, &audit);
    let bulk = |resume: bool| bulk_two_at_a_time(&input, &output, &conn, resume);
    let child = spawn(bulk(false));
    until(45, "10 results", || count_lines(&output) >= 10).await;
    interrupt(&child);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops soon after Ctrl-C")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopping: no new rows will start"),
        "{stderr}"
    );
    assert!(stderr.contains("in flight"), "{stderr}");
    let decided = read_jsonl(&output).len();
    assert!(decided < ROWS, "interrupted before the end ({decided})");
    let from_row = decided + 1;
    assert!(
        stderr.contains(&format!(
            "{} rows not started, from row {from_row} on",
            ROWS - decided
        )),
        "{stderr}"
    );

    let resumed = run(bulk(true)).await;
    assert_eq!(resumed.code(), Some(0), "{resumed}");
    assert!(
        resumed
            .stderr
            .contains(&format!("resume: {decided} of {ROWS} rows")),
        "{resumed}"
    );
    let all = read_jsonl(&output);
    assert_eq!(all.len(), ROWS, "every row has one result");
    let mut rows: Vec<u64> = all.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), ROWS, "no row was done twice");
    let accepted = admin_get(&sim.base_url, "/admin/accepted-changes").await;
    assert_eq!(
        accepted.as_array().unwrap().len(),
        ROWS,
        "each change sent once"
    );
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

/// A tenant of `agents` agents whose state changes take 20 s to answer (the first Ctrl-C would wait for
/// them), a log, and connection flags whose request timeout outlasts that.
async fn slow_state_changes(agents: usize) -> Scene {
    let (sim, dir, audit, mut conn) = scene(agents, &[]);
    let slow = serde_json::to_value(FaultRule::on(
        Endpoint::SetState,
        FaultKind::Slow { extra_ms: 20_000 },
        agents as u32,
    ))
    .unwrap();
    assert_eq!(
        admin_post(&sim.base_url, "/admin/faults", &slow).await["scripted"],
        1
    );
    set_flag(&mut conn, "--request-timeout-ms", "30000");
    (sim, dir, audit, conn)
}

/// Once `audit` holds an intent, Ctrl-C; once the CLI said it is stopping, Ctrl-C again. Returns the
/// first message and the exit status with all of stderr, checking the second Ctrl-C stopped it at once.
async fn interrupt_twice(
    mut child: tokio::process::Child,
    audit: &Path,
) -> (String, std::process::ExitStatus, String) {
    until(20, "the first intents", || {
        !read_kind(audit, "intent").is_empty()
    })
    .await;
    // stderr as it comes, so the second Ctrl-C is sent only once the first one was heard.
    let mut stderr_lines =
        tokio::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    interrupt(&child);
    let mut stderr = String::new();
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr_lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.starts_with("stopping:") {
                first = line;
                break;
            }
        }
    })
    .await
    .expect("the first Ctrl-C is answered at once");
    interrupt(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("a second Ctrl-C stops at once")
        .unwrap();
    while let Some(line) = stderr_lines.next_line().await.unwrap() {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped at once"), "{stderr}");
    assert!(stderr.contains("synced"), "{stderr}");
    assert!(stderr.contains("audit head: "), "{stderr}");
    (first, status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once_and_the_log_stays_whole() {
    let (_sim, dir, audit, conn) = slow_state_changes(10).await;
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, agents_csv(1..=10, |_| "READY")).unwrap();
    let child = spawn(cli(args(
        &["bulk", path_str(&input), "--concurrency", "2"],
        &conn,
    )));
    let (first, _, stderr) = interrupt_twice(child, &audit).await;
    assert!(
        first.contains("waiting for 2 change(s) in flight"),
        "{first}"
    );
    assert!(
        stderr.contains("8 rows not started, from row 3 on"),
        "{stderr}"
    );
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_one_shot_transition_waits_then_stops_at_once() {
    let (sim, _dir, audit, conn) = slow_state_changes(3).await;
    let child = spawn(cli(args(
        &["transition", "--user", "agent-0001", "--state", "READY"],
        &conn,
    )));
    let (first, _, _) = interrupt_twice(child, &audit).await;
    assert!(
        first.contains("waiting for the change in flight"),
        "{first}"
    );
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
    // The journaled change is resent on the next start under its key, and recorded.
    admin_post(&sim.base_url, "/admin/faults/clear", &serde_json::json!({})).await;
    let out = transition("agent-0002", "READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("resending 1 state change(s)"), "{out}");
    let users: Vec<Value> = read_audit(&audit)
        .into_iter()
        .filter(|r| r["success"] == true)
        .map(|r| r["userId"].clone())
        .collect();
    assert!(users.contains(&Value::from("agent-0001")), "{users:?}");
}

/// `argv` run by `script`, which gives it a terminal as an operator has (stdout and stderr both go to it).
fn on_a_terminal(argv: &[String]) -> std::process::Command {
    let line = argv
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = std::process::Command::new("script");
    c.args(["-qfec", &line, "/dev/null"]);
    for name in KNOWN_VARS {
        c.env_remove(name);
    }
    c
}

#[tokio::test]
async fn on_a_terminal_transition_speaks_in_words() {
    let (_sim, _dir, _, conn) = scene(5, &[]);
    let argv = |state: &str| {
        let mut a = vec![
            support::binary().display().to_string(),
            "transition".into(),
            "--user".into(),
            "agent-0001".into(),
            "--state".into(),
            state.into(),
        ];
        a.extend(conn.iter().cloned());
        a
    };
    let ok = run(on_a_terminal(&argv("READY"))).await;
    assert_eq!(ok.code(), Some(0), "{ok}");
    assert!(ok.stdout.contains("agent-0001: unknown → READY"), "{ok}");
    assert!(!ok.stdout.contains("{\""), "no JSON on a terminal:\n{ok}");
    let bad = run(on_a_terminal(&argv("ready"))).await;
    assert_eq!(bad.code(), Some(1), "{bad}");
    assert!(
        bad.stdout.contains("error: ") && bad.stdout.contains("(INVALID_STATE)"),
        "{bad}"
    );
    assert!(!bad.stdout.contains("{\""), "{bad}");
    // --json asks for JSON even on a terminal.
    let mut json = argv("NOT_READY");
    json.push("--json".into());
    let out = run(on_a_terminal(&json)).await;
    assert!(out.stdout.contains("\"previousState\":\"READY\""), "{out}");
}

#[tokio::test]
async fn the_progress_bar_counts_rows_on_a_terminal_without_tearing_results() {
    let (sim, dir, audit, _) = scene(30, &[]);
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, agents_csv(1..=30, |_| "READY")).unwrap();
    let conn = connect(&sim.base_url, &audit);
    let mut argv = vec![
        support::binary().display().to_string(),
        "bulk".into(),
        path_str(&input).into(),
    ];
    argv.extend(conn.iter().cloned());
    let out = run(on_a_terminal(&argv)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("/30 rows"), "counts rows:\n{out}");
    // Every result line is whole on the terminal.
    let whole = out
        .stdout
        .split(['\r', '\n'])
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim_end()).ok())
        .filter(|v| v["row"].is_u64())
        .count();
    assert_eq!(whole, 30, "{out}");
}

// ---------------------------------------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_help_has_examples_settings_and_exit_codes() {
    for sub in [
        &[][..],
        &["transition"],
        &["bulk"],
        &["report"],
        &["simulate"],
        &["sim-server"],
        &["audit"],
        &["audit", "verify"],
        &["outbox"],
        &["outbox", "list"],
        &["outbox", "replay"],
    ] {
        let mut argv: Vec<&str> = sub.to_vec();
        argv.push("--help");
        let out = run(cli(&argv)).await;
        assert_eq!(out.code(), Some(0), "{argv:?}\n{out}");
        for needle in ["Examples:", "Exit codes:", "64", "130", "Settings read"] {
            assert!(
                out.stdout.contains(needle),
                "{argv:?} lacks {needle}:\n{out}"
            );
        }
    }
    let out = run(cli(["sim-server", "--help"])).await;
    for (method, path, _) in cxone_agent_state_sim_server::ADMIN_ENDPOINTS {
        assert!(
            out.stdout.contains(path) && out.stdout.contains(method),
            "sim-server --help lacks {method} {path}"
        );
    }
    let out = run(cli(["report", "--help"])).await;
    assert!(out.stdout.contains("cxone-audit.jsonl"), "{out}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for code in ["| 0 ", "| 1 ", "| 2 ", "| 64 ", "| 130 "] {
        assert!(
            readme.contains(code),
            "the README's exit-code table lacks {code}"
        );
    }
}

#[tokio::test]
async fn webhook_events_stay_with_the_receiver_they_were_accepted_for() {
    let sim = server(5, &[]);
    let old = WebhookSink::start().await;
    old.down.store(true, Ordering::SeqCst);
    let new = WebhookSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut conn = connect(&sim.base_url, &audit);
    set_flag(&mut conn, "--webhook-drain-secs", "1");
    let with_url = |conn: &[String], url: &str| {
        let mut c = conn.to_vec();
        c.extend(["--webhook-url".to_owned(), url.to_owned()]);
        c
    };
    let out = transition("agent-0001", "READY", &with_url(&conn, &old.url)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(old.ids().is_empty());

    old.down.store(false, Ordering::SeqCst);
    // Time enough to deliver both (shutdown returns as soon as the outbox is empty).
    set_flag(&mut conn, "--webhook-drain-secs", "15");
    let out = transition("agent-0002", "READY", &with_url(&conn, &new.url)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("the webhook URL changed: 1 event(s) accepted for the earlier receiver go to that receiver"),
        "says the receiver changed:\n{out}"
    );
    assert_eq!(old.ids().len(), 1, "the old event went to its own receiver");
    assert_eq!(new.ids().len(), 1, "only the new event went to the new one");
    assert!(old.ids().is_disjoint(&new.ids()));

    // Configured the other way, an event left for the old receiver is set aside as a dead letter.
    old.down.store(true, Ordering::SeqCst);
    set_flag(&mut conn, "--webhook-drain-secs", "1");
    let out = transition("agent-0003", "READY", &with_url(&conn, &old.url)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let mut dead_letter = with_url(&conn, &new.url);
    dead_letter.extend([
        "--webhook-receiver-change".to_owned(),
        "dead-letter".to_owned(),
    ]);
    set_flag(&mut dead_letter, "--webhook-drain-secs", "15");
    let out = transition("agent-0004", "READY", &dead_letter).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("were set aside as dead letters"),
        "{out}"
    );
    assert_eq!(
        new.ids().len(),
        2,
        "the new receiver got only its own event"
    );
    let list = outbox_list_json(&audit).await;
    assert_eq!(
        list.json()["deadLetters"].as_array().unwrap().len(),
        1,
        "{list}"
    );
}

/// `serve new-key` prints a fresh key once with its key-file line (the file never holds the key);
/// `serve check-key` tells whose a key is, and refuses one the file does not hold, never printing it.
#[tokio::test]
async fn serve_new_key_makes_a_key_its_line_admits_and_check_key_tells_whose_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str, read_only: bool| {
        let mut a = vec!["serve", "new-key", name, "--json"];
        if read_only {
            a.push("--read-only");
        }
        run(cli(a))
    };
    let ops = new("ops", false).await;
    assert_eq!(ops.code(), Some(0), "{ops}");
    let dash = new("dash", true).await;
    let (ops, dash) = (ops.json(), dash.json());
    let key = ops["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cxas_"), "{ops}");
    assert_ne!(ops["key"], dash["key"]);
    let file = dir.path().join("api-keys");
    let lines = format!(
        "# keys\n{}\n{}\n",
        ops["line"].as_str().unwrap(),
        dash["line"].as_str().unwrap()
    );
    assert!(!lines.contains(&key), "the key file holds digests only");
    assert!(dash["line"].as_str().unwrap().ends_with(" read-only"));
    std::fs::write(&file, lines).unwrap();

    let check = |presented: String| {
        let file = file.clone();
        async move {
            run_input(
                cli([
                    "serve",
                    "check-key",
                    "--json",
                    "--api-keys",
                    path_str(&file),
                ]),
                Some(presented.as_bytes()),
            )
            .await
        }
    };
    let out = check(format!("{key}\n")).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["name"], "ops");
    assert_eq!(out.json()["access"], "read-write");
    let out = check(dash["key"].as_str().unwrap().to_owned()).await;
    assert_eq!(out.json()["access"], "read-only", "{out}");
    let wrong = format!("{}x", &key[..key.len() - 1]);
    let out = check(wrong.clone()).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "UNAUTHORIZED", "{out}");
    assert!(
        !out.stdout.contains(&wrong) && !out.stderr.contains(&wrong),
        "{out}"
    );

    let bad = run(cli(["serve", "new-key", "no/slashes"])).await;
    assert_eq!(bad.code(), Some(64), "{bad}");
}
