//! End-to-end tests of the `cxone-agent-state` binary against the simulated tenant over real HTTP on
//! 127.0.0.1: `transition`, `bulk` (including a `kill -9` halfway and a restart), `audit verify`, `report`,
//! `sim-server` and `simulate`.
//!
//! The CLI and (mostly) the tenant are both real child processes. Every child starts with the inherited
//! `CXONE_*`, `WORKFORCE_*` and `TARGET_USER_ID` variables removed, so the machine's environment cannot leak
//! in; everything a test needs is passed explicitly.
#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cxone_agent_state_core::sim::{Endpoint, FaultKind, FaultRule};
use serde_json::Value;
use support::cli::*;
use support::{
    admin_get, admin_post, Profile, SimProcess, WebhookSink, ACCESS_KEY_ID, ACCESS_KEY_SECRET,
    CLIENT_ID, CLIENT_SECRET,
};

// The scenarios below run once per profile (`seed::…` and `cxone::…`): the same CLI, the same tenant, the
// client speaking the reference module's endpoints or the real CXone API.
for_each_profile!(
    transition_success_prints_json_and_exits_0,
    transition_ready_during_a_mandatory_break_exits_2,
    transition_for_an_unscheduled_agent_exits_2,
    transition_defer_waits_out_a_break_and_applies_after_it,
    invalid_state_and_user_id_exit_1_without_reaching_the_tenant,
    bulk_csv_a_malformed_row_fails_alone,
    bulk_json_lines_all_succeed_exit_0,
    bulk_reads_stdin_and_prints_results_on_stdout,
    bulk_exits_non_zero_when_a_well_formed_row_is_refused,
    bulk_concurrency_is_respected,
    simulate_reports_no_ready_during_breaks_and_writes_a_verifiable_log,
);

// ---------------------------------------------------------------------------------------------------------
// transition
// ---------------------------------------------------------------------------------------------------------

async fn transition_success_prints_json_and_exits_0(profile: Profile) {
    let (sim, _dir, audit, conn) = scene_as(profile, 3, &[]).await;
    let agent = sim.id("agent-0001");

    let out = transition(&agent, "READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    assert_eq!(v["success"], true, "{out}");
    assert_eq!(v["userId"], agent);
    assert_eq!(v["newState"], "READY");
    assert_eq!(v["previousState"], Value::Null);
    assert!(v["attempts"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(sim.state_of("agent-0001").await, sim.set_as("READY"));

    // A second run on the same log continues its hash chain.
    let out = transition(&agent, "NOT_READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["newState"], "NOT_READY");
    assert_eq!(sim.state_of("agent-0001").await, sim.set_as("NOT_READY"));

    // Both changes are in the audit log as successes carrying the keys the tenant saw.
    let records = read_audit(&audit);
    assert_eq!(records.len(), 2, "{records:?}");
    let accepted = accepted_keys(&sim.base_url).await;
    let logged: Vec<String> = records.iter().filter_map(key_of).collect();
    assert_eq!(accepted, logged);
    assert!(records.iter().all(|r| r["success"] == true));
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}

async fn transition_ready_during_a_mandatory_break_exits_2(profile: Profile) {
    let (mut sim, _dir, audit, conn) = scene_as(profile, 1, &[]).await;
    sim.add_agent(support::on_break("brk")).await;
    let out = transition(&sim.id("brk"), "READY", &conn).await;
    assert_eq!(out.code(), Some(2), "{out}");
    let v = out.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["code"], "MANDATORY_BREAK_VIOLATION", "{out}");
    assert_eq!(v["policyViolation"], true);
    // Nothing was changed at the tenant.
    assert_eq!(agent_state(&sim.base_url, "brk").await, Value::Null);
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["readyAcceptedDuringBreak"], 0, "{truth}");
    assert_eq!(truth["stateChangesAccepted"], 0, "{truth}");
    let records = read_audit(&audit);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["policyViolation"], true);
    assert_eq!(records[0]["errorCode"], "MANDATORY_BREAK_VIOLATION");
    assert_eq!(records[0]["source"], "cli");
    assert_eq!(records[0]["actor"]["role"], "system");

    // Half an override is a usage error; a whole one passes the rule and is audited as an override.
    let agent = sim.id("brk");
    let ready = ["transition", "--user", &agent, "--state", "READY"];
    let half = run(cli(args(
        &[&ready[..], &["--override-actor", "kim"]].concat(),
        &conn,
    )))
    .await;
    assert_eq!(half.code(), Some(64), "{half}");
    let whole = [
        "--override-actor",
        "kim",
        "--override-reason",
        "queue over SLA",
    ];
    let out = run(cli(args(&[&ready[..], &whole[..]].concat(), &conn))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(sim.state_of("brk").await, sim.set_as("READY"));
    let records = read_audit(&audit);
    assert_eq!(records.len(), 2, "the usage error audited nothing");
    let o = &records[1];
    assert_eq!(o["success"], true);
    assert_eq!(o["policyViolation"], false);
    assert_eq!(o["override"]["actor"], "kim");
    assert_eq!(o["override"]["reason"], "queue over SLA");
    assert_eq!(o["override"]["overrode"], "MANDATORY_BREAK_VIOLATION");
    assert_eq!(o["actor"]["role"], "supervisor");
    assert_eq!(o["actor"]["id"], "kim");
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
    let report = run(cli(["report", "--audit-log", path_str(&audit), "--json"])).await;
    assert_eq!(report.code(), Some(0), "{report}");
    let r = report.json();
    assert_eq!(r["violationCount"], 1, "{r}");
    assert_eq!(r["overridesByRule"]["MANDATORY_BREAK_VIOLATION"], 1, "{r}");
}

async fn transition_defer_waits_out_a_break_and_applies_after_it(profile: Profile) {
    let (mut sim, _dir, audit, conn) = scene_as(profile, 1, &[]).await;
    let ends = cxone_agent_state::now_ms() + 2_000;
    sim.add_agent(support::on_break_until("short", ends)).await;
    let agent = sim.id("short");
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            &agent,
            "--state",
            "READY",
            "--defer",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("deferred:"), "{out}");
    assert!(
        cxone_agent_state::now_ms() >= ends,
        "applied after the break"
    );
    assert_eq!(sim.state_of("short").await, sim.set_as("READY"));
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["readyAcceptedDuringBreak"], 0, "{truth}");
    let records = read_audit(&audit);
    let phases: Vec<&str> = records
        .iter()
        .map(|r| r["deferral"]["phase"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(phases, ["deferred", "released"], "{records:?}");
    assert_eq!(records[1]["success"], true);
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}

async fn transition_for_an_unscheduled_agent_exits_2(profile: Profile) {
    let (mut sim, _dir, _audit, conn) = scene_as(profile, 1, &[]).await;
    sim.add_agent(support::unscheduled("ghost")).await;
    let out = transition(&sim.id("ghost"), "NOT_READY", &conn).await;
    assert_eq!(out.code(), Some(2), "{out}");
    let v = out.json();
    assert_eq!(v["code"], "AGENT_NOT_SCHEDULED", "{out}");
    assert_eq!(v["policyViolation"], true);
    assert_eq!(agent_state(&sim.base_url, "ghost").await, Value::Null);
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["acceptedWhileUnscheduled"], 0, "{truth}");
    assert_eq!(truth["stateChangesAccepted"], 0, "{truth}");
}

async fn invalid_state_and_user_id_exit_1_without_reaching_the_tenant(profile: Profile) {
    let (sim, _dir, _, conn) = scene_as(profile, 1, &[]).await;

    let out = transition(&sim.id("agent-0001"), "ready", &conn).await;
    assert_eq!(out.code(), Some(1), "{out}");
    let v = out.json();
    assert_eq!(v["code"], "INVALID_STATE", "{out}");
    assert_eq!(v["policyViolation"], false);

    for user in ["../x", "a/b"] {
        let out = transition(user, "READY", &conn).await;
        assert_eq!(out.code(), Some(1), "{user}: {out}");
        let v = out.json();
        assert_eq!(v["code"], "INVALID_USER_ID", "{user}: {out}");
        assert_eq!(v["userId"], user);
    }
    assert_eq!(
        total_requests(&sim.base_url).await,
        0,
        "no request (not even a token request) reached the tenant"
    );
    assert_eq!(agent_state(&sim.base_url, "agent-0001").await, Value::Null);
}

#[tokio::test]
async fn missing_settings_are_named_on_stderr_without_a_panic() {
    let (sim, _dir, audit, _) = scene(1, &[]);

    // No client id anywhere.
    let out = run(cli([
        "transition",
        "--user",
        "agent-0001",
        "--state",
        "READY",
        "--base-url",
        sim.base_url.as_str(),
        "--client-secret",
        CLIENT_SECRET,
        "--audit-log",
        path_str(&audit),
    ]))
    .await;
    // A missing setting is a usage error; stdout is not a terminal, so it is one JSON object there.
    assert_eq!(out.code(), Some(64), "{out}");
    assert_eq!(out.json()["code"], "INVALID_CONFIG", "{out}");
    assert!(out.stdout.contains("CXONE_CLIENT_ID"), "{out}");

    // No user: neither --user nor TARGET_USER_ID.
    let out = run(cli(args(
        &["transition", "--state", "READY"],
        &connect(&sim.base_url, &audit),
    )))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.stdout.contains("TARGET_USER_ID"), "{out}");

    // No tenant: neither --base-url nor --domain.
    let out = run(cli([
        "transition",
        "--user",
        "agent-0001",
        "--state",
        "READY",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--audit-log",
        path_str(&audit),
    ]))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.stdout.contains("CXONE_DOMAIN"), "{out}");

    assert_eq!(total_requests(&sim.base_url).await, 0);
}

#[tokio::test]
async fn the_client_secret_never_appears_in_output_even_with_debug_logs() {
    const SECRET: &str = "e2e-S3cret-9f2c7a";
    const WRONG: &str = "e2e-Wr0ng-41d7be";
    let (sim, _dir, audit, _) = scene(3, &["--client-secret", SECRET]);
    let base = [
        "--base-url",
        sim.base_url.as_str(),
        "--client-id",
        CLIENT_ID,
        "--audit-log",
        path_str(&audit),
        "--rate-limit",
        "6000",
        "--webhook-drain-secs",
        "1",
    ];

    // The secret from the environment, debug logging on.
    let mut cmd = cli(args(
        &["transition", "--user", "agent-0001", "--state", "READY"],
        &base.map(str::to_owned),
    ));
    cmd.env("CXONE_CLIENT_SECRET", SECRET)
        .env("CXONE_LOG", "debug");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        !out.stderr.trim().is_empty(),
        "debug logging produced nothing, so the check below would prove little:\n{out}"
    );
    assert!(!out.all_output().contains(SECRET), "secret leaked:\n{out}");

    // The secret as a flag, trace logging on.
    let mut cmd = cli(args(
        &[
            "transition",
            "--user",
            "agent-0002",
            "--state",
            "NOT_READY",
            "--client-secret",
            SECRET,
        ],
        &base.map(str::to_owned),
    ));
    cmd.env("CXONE_LOG", "trace");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!out.all_output().contains(SECRET), "secret leaked:\n{out}");

    // A wrong secret: AUTH_FAILED, and neither secret is echoed.
    for (how, level) in [("env", "debug"), ("flag", "debug")] {
        let mut extra = base.map(str::to_owned).to_vec();
        if how == "flag" {
            extra.extend(["--client-secret".to_owned(), WRONG.to_owned()]);
        }
        let mut cmd = cli(args(
            &["transition", "--user", "agent-0003", "--state", "READY"],
            &extra,
        ));
        if how == "env" {
            cmd.env("CXONE_CLIENT_SECRET", WRONG);
        }
        cmd.env("CXONE_LOG", level);
        let out = run(cmd).await;
        assert_eq!(out.code(), Some(1), "{how}: {out}");
        assert_eq!(out.json()["code"], "AUTH_FAILED", "{how}: {out}");
        let all = out.all_output();
        assert!(
            !all.contains(WRONG) && !all.contains(SECRET),
            "secret leaked ({how}):\n{out}"
        );
    }
    assert_eq!(agent_state(&sim.base_url, "agent-0003").await, Value::Null);

    // Nor in the durable log, nor in --help with the secret in the environment.
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        !text.contains(SECRET) && !text.contains(WRONG),
        "secret in the log"
    );
    let mut cmd = cli(["transition", "--help"]);
    cmd.env("CXONE_CLIENT_SECRET", SECRET);
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        !out.all_output().contains(SECRET),
        "--help shows the secret"
    );
}

#[tokio::test]
async fn settings_come_from_the_environment_and_target_user_id_picks_the_agent() {
    let (sim, _dir, audit, _) = scene(5, &[]);
    let mut cmd = cli(["transition", "--state", "READY"]);
    cmd.env("CXONE_BASE_URL", &sim.base_url)
        .env("CXONE_CLIENT_ID", CLIENT_ID)
        .env("CXONE_CLIENT_SECRET", CLIENT_SECRET)
        .env("CXONE_AUDIT_LOG", &audit)
        .env("CXONE_RATE_LIMIT_PER_MIN", "6000")
        .env("TARGET_USER_ID", "agent-0004");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["userId"], "agent-0004", "{out}");
    assert_eq!(agent_state(&sim.base_url, "agent-0004").await, "READY");
    let records = read_audit(&audit);
    assert_eq!(records.len(), 1, "CXONE_AUDIT_LOG is where the log went");
    assert_eq!(records[0]["userId"], "agent-0004");

    // --user wins over TARGET_USER_ID.
    let mut cmd = cli(args(
        &["transition", "--user", "agent-0005", "--state", "PAUSED"],
        &connect(&sim.base_url, &audit),
    ));
    cmd.env("TARGET_USER_ID", "agent-0004");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["userId"], "agent-0005");
    assert_eq!(agent_state(&sim.base_url, "agent-0004").await, "READY");
    assert_eq!(agent_state(&sim.base_url, "agent-0005").await, "PAUSED");
}

const NON_LOOPBACK_HOOK: &str = "http://hooks.example.com/wfm?token=abc123xyz";

#[tokio::test]
async fn a_plain_http_webhook_url_off_loopback_is_refused() {
    let (sim, _dir, audit, _) = scene(1, &[]);
    for via_env in [false, true] {
        let mut extra = connect(&sim.base_url, &audit);
        if !via_env {
            extra.extend(["--webhook-url".to_owned(), NON_LOOPBACK_HOOK.to_owned()]);
        }
        let mut cmd = cli(args(
            &["transition", "--user", "agent-0001", "--state", "READY"],
            &extra,
        ));
        if via_env {
            cmd.env("WORKFORCE_WEBHOOK_URL", NON_LOOPBACK_HOOK);
        }
        let out = run(cmd).await;
        assert_eq!(out.code(), Some(64), "env={via_env}: {out}");
        // Named by where the value came from: the variable, or the flag.
        let name = if via_env {
            "WORKFORCE_WEBHOOK_URL"
        } else {
            "--webhook-url"
        };
        assert!(out.stdout.contains(name), "env={via_env}: {out}");
        assert!(
            out.stdout.contains("loopback"),
            "the reason is given: {out}"
        );
        assert!(
            !out.all_output().contains("abc123xyz"),
            "the URL's query is echoed:\n{out}"
        );
    }
    // An http URL on loopback is fine (nothing listens there; the drain gives up at once).
    let mut conn = connect(&sim.base_url, &audit);
    set_flag(&mut conn, "--webhook-drain-secs", "0");
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            "agent-0001",
            "--state",
            "READY",
            "--webhook-url",
            "http://127.0.0.1:9/hook",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    // Only the last run reached the tenant.
    assert_eq!(
        admin_get(&sim.base_url, "/admin/ground-truth").await["stateChangesAccepted"],
        1
    );
}

#[tokio::test]
async fn a_refused_webhook_url_names_the_code_invalid_webhook_url() {
    let (sim, _dir, audit, _) = scene(1, &[]);
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            "agent-0001",
            "--state",
            "READY",
            "--webhook-url",
            NON_LOOPBACK_HOOK,
        ],
        &connect(&sim.base_url, &audit),
    )))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert_eq!(out.json()["code"], "INVALID_WEBHOOK_URL", "{out}");
}

// ---------------------------------------------------------------------------------------------------------
// the cxone profile's own behaviour
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn cxone_transition_reason_lunch_sets_the_teams_lunch_code() {
    let (sim, _dir, audit, conn) = scene_as(Profile::Cxone, 3, &[]).await;
    let agent = sim.id("agent-0001");
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            &agent,
            "--state",
            "NOT_READY",
            "--reason",
            "Lunch",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    assert_eq!(v["success"], true, "{out}");
    assert_eq!(v["userId"], agent);
    assert_eq!(v["newState"], "NOT_READY");
    assert_eq!(v["reasonCode"], "Lunch", "{out}");
    // The team's "Lunch" code, not the table's BREAK.
    assert_eq!(sim.state_of("agent-0001").await, "UNAVAILABLE_LUNCH");
    let records = read_audit(&audit);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["reasonCode"], "Lunch", "{records:?}");
    // Names match ignoring case, `_`, `-` and spaces: "system-idle" finds "System Idle" (team B's casing).
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            &sim.id("agent-0002"),
            "--state",
            "PAUSED",
            "--reason",
            "system-idle",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(sim.state_of("agent-0002").await, "UNAVAILABLE_SYSTEM_IDLE");
    // A name no code has: UNKNOWN_REASON_CODE, exit 1, nothing set.
    let out = run(cli(args(
        &[
            "transition",
            "--user",
            &agent,
            "--state",
            "NOT_READY",
            "--reason",
            "Nap",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "UNKNOWN_REASON_CODE", "{out}");
    assert_eq!(out.json()["policyViolation"], false, "{out}");
    assert_eq!(sim.state_of("agent-0001").await, "UNAVAILABLE_LUNCH");
    // READY is Available: a reason is not needed, and team C (no codes at all) can still be set READY,
    // but nothing else.
    let mut sim = sim;
    sim.add_agent(cxone_agent_state_core::sim::AgentPlan {
        team_id: Some(cxone_agent_state_core::sim::CXONE_TEAM_C),
        ..support::on_shift("team-c")
    })
    .await;
    let team_c = sim.id("team-c");
    let out = transition(&team_c, "NOT_READY", &conn).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "UNKNOWN_REASON_CODE", "{out}");
    let out = transition(&team_c, "READY", &conn).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(sim.state_of("team-c").await, "READY");
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["stateChangesAccepted"], 3, "{truth}");
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test]
async fn cxone_bulk_reason_column_names_each_rows_code() {
    let (sim, dir, audit, conn) = scene_as(Profile::Cxone, 6, &[]).await;
    let input = dir.path().join("rows.csv");
    let id = |n: usize| sim.id(&format!("agent-{n:04}"));
    std::fs::write(
        &input,
        format!(
            "userId,state,reason\n{},NOT_READY,Lunch\n{},NOT_READY,\n{},PAUSED,Meeting\n{},READY,Lunch\n{},NOT_READY,Nap\n",
            id(1),
            id(2),
            id(3),
            id(4),
            id(5)
        ),
    )
    .unwrap();
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    // The unknown code fails its row alone (not a policy refusal): exit 1.
    assert_eq!(out.code(), Some(1), "{out}");
    let results = out.json_lines();
    let row = |n: u64| {
        results
            .iter()
            .find(|r| r["row"] == n)
            .unwrap_or_else(|| panic!("row {n}: {out}"))
    };
    for n in 1..=4 {
        assert_eq!(row(n)["success"], true, "{}", row(n));
    }
    assert_eq!(row(1)["reasonCode"], "Lunch");
    assert_eq!(row(5)["code"], "UNKNOWN_REASON_CODE", "{}", row(5));
    assert_eq!(sim.state_of("agent-0001").await, "UNAVAILABLE_LUNCH");
    assert_eq!(
        sim.state_of("agent-0002").await,
        "UNAVAILABLE_BREAK",
        "a blank reason: the table's code"
    );
    assert_eq!(sim.state_of("agent-0003").await, "UNAVAILABLE_MEETING");
    assert_eq!(
        sim.state_of("agent-0004").await,
        "READY",
        "READY takes no code"
    );
    assert_eq!(sim.state_of("agent-0005").await, Value::Null);
    assert!(out.stderr.contains("4 succeeded"), "{out}");

    // JSON Lines: a `reason` member, null or absent for none.
    let input = dir.path().join("rows.jsonl");
    std::fs::write(
        &input,
        format!(
            "{{\"userId\":\"{}\",\"state\":\"NOT_READY\",\"reason\":\"training\"}}\n{{\"userId\":\"{}\",\"state\":\"PAUSED\",\"reason\":null}}\n",
            id(5),
            id(6)
        ),
    )
    .unwrap();
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(sim.state_of("agent-0005").await, "UNAVAILABLE_TRAINING");
    assert_eq!(sim.state_of("agent-0006").await, "UNAVAILABLE_ADHOC");
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test]
async fn cxone_an_unknown_agent_is_unknown_agent_exit_1_and_nothing_is_sent() {
    let (sim, _dir, audit, conn) = scene_as(Profile::Cxone, 2, &[]).await;
    for user in ["9999", "agent-0001"] {
        let out = transition(user, "READY", &conn).await;
        assert_eq!(out.code(), Some(1), "{user}: {out}");
        let v = out.json();
        assert_eq!(v["code"], "UNKNOWN_AGENT", "{user}: {out}");
        assert_eq!(v["policyViolation"], false);
        assert_eq!(v["userId"], user);
    }
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["stateChangesAccepted"], 0, "{truth}");
    assert_eq!(
        truth["requestsByEndpoint"].get("agentState"),
        None,
        "no SetAgentState was sent: {truth}"
    );
    let records = read_audit(&audit);
    assert!(
        records.iter().all(|r| r["errorCode"] == "UNKNOWN_AGENT"),
        "{records:?}"
    );
}

#[tokio::test]
async fn cxone_is_inferred_from_an_access_key_and_said_once_on_stderr() {
    let sim = Tenant::start(Profile::Cxone, 2, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // Only the access key, the client app and where to start: no CXONE_PROFILE, no domain, no base URL. The
    // auth base and the WFM base only: discovery reads the OpenID configuration, grants a token and takes the
    // API base from the CXone configuration.
    let env_only = |extra: &[(&str, &str)]| {
        let mut cmd = cli([
            "transition",
            "--user",
            "1001",
            "--state",
            "READY",
            "--audit-log",
            path_str(&audit),
        ]);
        cmd.env("CXONE_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("CXONE_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .env("CXONE_CLIENT_ID", CLIENT_ID)
            .env("CXONE_CLIENT_SECRET", CLIENT_SECRET)
            .env("CXONE_AUTH_BASE", &sim.base_url)
            .env("CXONE_WFM_BASE_URL", &sim.base_url);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };
    let out = run(env_only(&[])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["userId"], "1001", "{out}");
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("profile cxone"))
        .collect();
    assert_eq!(notes.len(), 1, "one line says so: {out}");
    assert!(notes[0].contains("CXONE_PROFILE"), "{out}");
    assert_eq!(sim.state_of("agent-0001").await, "READY");
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert!(
        truth["requestsByEndpoint"]["discovery"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "the OpenID and the CXone configurations were read: {truth}"
    );

    // Named explicitly: no note.
    let out = run(env_only(&[("CXONE_PROFILE", "cxone")])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!out.stderr.contains("profile cxone"), "{out}");
    // `seed` named explicitly wins over the access key: no note, and seed's settings are required.
    let out = run(env_only(&[("CXONE_PROFILE", "seed")])).await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.stdout.contains("CXONE_DOMAIN"), "{out}");
    assert!(!out.stderr.contains("profile cxone"), "{out}");
    // With bulk, which reads its settings twice, the note is still one line.
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, "userId,state\n1002,READY\n").unwrap();
    let mut bulk = cli(["bulk", path_str(&input), "--audit-log", path_str(&audit)]);
    for (k, v) in [
        ("CXONE_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("CXONE_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET),
        ("CXONE_CLIENT_ID", CLIENT_ID),
        ("CXONE_CLIENT_SECRET", CLIENT_SECRET),
        ("CXONE_AUTH_BASE", sim.base_url.as_str()),
        ("CXONE_WFM_BASE_URL", sim.base_url.as_str()),
    ] {
        bulk.env(k, v);
    }
    let out = run(bulk).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stderr.matches("profile cxone").count(), 1, "{out}");
}

#[tokio::test]
async fn cxone_secrets_never_appear_in_output_or_the_audit_log() {
    const KEY_SECRET: &str = "ak-S3cret=&%-5e1d";
    const APP_SECRET: &str = "app-S3cret-77c1";
    const WRONG: &str = "ak-Wr0ng=&%-9a0b";
    let (sim, _dir, audit, _) = scene_as(
        Profile::Cxone,
        3,
        &[
            "--access-key-secret",
            KEY_SECRET,
            "--client-secret",
            APP_SECRET,
        ],
    )
    .await;
    let mut flags = sim.connect(&audit);
    set_flag(&mut flags, "--client-secret", APP_SECRET);
    // The access key secret from the environment, not a flag (flags show in process lists).
    let i = flags
        .iter()
        .position(|f| f == "--access-key-secret")
        .unwrap();
    flags.drain(i..i + 2);
    let mut all = String::new();
    for (user, state, level, key_secret) in [
        ("agent-0001", "READY", "trace", KEY_SECRET),
        ("agent-0002", "NOT_READY", "debug", KEY_SECRET),
        // A 401 on the state change: the token is renewed (the refresh grant) and the change resent.
        ("agent-0001", "PAUSED", "trace", KEY_SECRET),
        ("agent-0003", "READY", "debug", WRONG),
    ] {
        if state == "PAUSED" {
            let rule = serde_json::json!(
                {"endpoint": "agentState", "fault": {"kind": "unauthorized"}, "times": 1}
            );
            let r = admin_post(&sim.base_url, "/admin/faults", &rule).await;
            assert_eq!(r["scripted"], 1, "{r}");
        }
        let mut cmd = cli(args(
            &["transition", "--user", &sim.id(user), "--state", state],
            &flags,
        ));
        cmd.env("CXONE_ACCESS_KEY_SECRET", key_secret)
            .env("CXONE_LOG", level);
        let out = run(cmd).await;
        if key_secret == WRONG {
            assert_eq!(out.code(), Some(1), "{out}");
            assert_eq!(out.json()["code"], "AUTH_FAILED", "{out}");
        } else {
            assert_eq!(out.code(), Some(0), "{user} {state}: {out}");
            assert!(
                !out.stderr.trim().is_empty(),
                "logging produced nothing:\n{out}"
            );
        }
        all.push_str(&out.all_output());
    }
    // The secret as a flag, too.
    let mut cmd = cli(args(
        &[
            "transition",
            "--user",
            &sim.id("agent-0002"),
            "--state",
            "READY",
            "--access-key-secret",
            KEY_SECRET,
        ],
        &flags,
    ));
    cmd.env("CXONE_LOG", "trace");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    all.push_str(&out.all_output());
    all.push_str(&std::fs::read_to_string(&audit).unwrap());
    let mut cmd = cli(["transition", "--help"]);
    cmd.env("CXONE_ACCESS_KEY_SECRET", KEY_SECRET);
    all.push_str(&run(cmd).await.all_output());
    for needle in [KEY_SECRET, APP_SECRET, WRONG, "simtok-", "simrt-", "eyJ"] {
        assert!(!all.contains(needle), "{needle} leaked:\n{all}");
    }
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert!(
        truth["responsesByStatus"]["401"].as_u64().unwrap_or(0) >= 1,
        "the 401 was answered, so a token was renewed: {truth}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// bulk
// ---------------------------------------------------------------------------------------------------------

async fn bulk_csv_a_malformed_row_fails_alone(profile: Profile) {
    let (sim, dir, audit, conn) = scene_as(profile, 5, &[]).await;
    let input = dir.path().join("rows.csv");
    let output = dir.path().join("results.jsonl");
    let id = |n: &str| sim.id(n);
    std::fs::write(
        &input,
        format!(
            "userId,state\n{},READY\n{},NOT_READY,extra\n{},PAUSED\n\"{}\",READY\n",
            id("agent-0001"),
            id("agent-0002"),
            id("agent-0003"),
            id("agent-0004")
        ),
    )
    .unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--output", path_str(&output)],
        &conn,
    )))
    .await;
    assert_eq!(
        out.code(),
        Some(1),
        "a failed row makes the exit non-zero: {out}"
    );
    assert!(
        out.stdout.trim().is_empty(),
        "results went to --output: {out}"
    );
    let summary = out
        .stderr
        .lines()
        .find(|l| l.starts_with("bulk: "))
        .unwrap_or_else(|| panic!("no summary line on stderr: {out}"));
    assert!(summary.contains("bulk: 4 rows"), "{summary}");
    assert!(summary.contains("3 succeeded"), "{summary}");
    assert!(summary.contains("1 malformed"), "{summary}");

    let results = read_jsonl(&output);
    assert_eq!(results.len(), 4, "{results:?}");
    let by_row: BTreeMap<u64, &Value> = results
        .iter()
        .map(|r| (r["row"].as_u64().expect("row number"), r))
        .collect();
    assert_eq!(by_row.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(by_row[&2]["success"], false);
    assert_eq!(by_row[&2]["code"], "MALFORMED_ROW");
    for (row, user, state) in [
        (1, "agent-0001", "READY"),
        (3, "agent-0003", "PAUSED"),
        (4, "agent-0004", "READY"),
    ] {
        assert_eq!(by_row[&row]["success"], true, "{}", by_row[&row]);
        assert_eq!(by_row[&row]["userId"], sim.id(user));
        assert_eq!(by_row[&row]["newState"], state);
        assert_eq!(sim.state_of(user).await, sim.set_as(state));
    }
    assert_eq!(sim.state_of("agent-0002").await, Value::Null);
    // Malformed rows never reach the engine, so the audit log holds the three changes.
    assert_eq!(read_audit(&audit).len(), 3);
}

async fn bulk_json_lines_all_succeed_exit_0(profile: Profile) {
    let (sim, dir, _audit, conn) = scene_as(profile, 5, &[]).await;
    let input = dir.path().join("rows.jsonl");
    let output = dir.path().join("results.jsonl");
    let states = ["READY", "NOT_READY", "PAUSED", "READY", "IDLE"];
    let mut text = String::new();
    for (i, s) in states.iter().enumerate() {
        text.push_str(&format!(
            "{{\"userId\":\"{}\",\"state\":\"{s}\"}}\n\n",
            sim.id(&format!("agent-{:04}", i + 1))
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--output", path_str(&output)],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("bulk: 5 rows"), "{out}");
    assert!(out.stderr.contains("5 succeeded"), "{out}");
    let results = read_jsonl(&output);
    assert_eq!(results.len(), 5);
    let rows: BTreeSet<u64> = results.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, (1..=5).collect());
    assert!(results.iter().all(|r| r["success"] == true), "{results:?}");
    for (i, s) in states.iter().enumerate() {
        assert_eq!(
            sim.state_of(&format!("agent-{:04}", i + 1)).await,
            sim.set_as(s)
        );
    }
}

async fn bulk_reads_stdin_and_prints_results_on_stdout(profile: Profile) {
    let (sim, _dir, _, conn) = scene_as(profile, 6, &[]).await;

    let csv = sim.agents_csv(1..=3, |i| ["READY", "PAUSED", "NOT_READY"][i - 1]);
    let out = run_input(cli(args(&["bulk", "-"], &conn)), Some(csv.as_bytes())).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let results = out.json_lines();
    assert_eq!(results.len(), 3, "{out}");
    assert!(results.iter().all(|r| r["success"] == true), "{out}");
    assert!(out.stderr.contains("bulk: 3 rows"), "{out}");
    assert_eq!(sim.state_of("agent-0002").await, sim.set_as("PAUSED"));

    let jsonl = format!(
        "{{\"userId\":\"{}\",\"state\":\"READY\"}}\n{{not json\n",
        sim.id("agent-0004")
    );
    let out = run_input(cli(args(&["bulk", "-"], &conn)), Some(jsonl.as_bytes())).await;
    assert_eq!(out.code(), Some(1), "{out}");
    let results = out.json_lines();
    assert_eq!(results.len(), 2, "{out}");
    let bad = results.iter().find(|r| r["row"] == 2).expect("row 2");
    assert_eq!(bad["code"], "MALFORMED_ROW");
    let good = results.iter().find(|r| r["row"] == 1).expect("row 1");
    assert_eq!(good["success"], true);
    assert_eq!(sim.state_of("agent-0004").await, "READY");
}

async fn bulk_exits_non_zero_when_a_well_formed_row_is_refused(profile: Profile) {
    let (mut sim, dir, _audit, conn) = scene_as(profile, 3, &[]).await;
    sim.add_agent(support::unscheduled("ghost")).await;
    let input = dir.path().join("rows.csv");
    std::fs::write(
        &input,
        format!(
            "userId,state\n{},READY\n{},READY\n{},READY\n",
            sim.id("agent-0001"),
            sim.id("ghost"),
            sim.id("agent-0002")
        ),
    )
    .unwrap();
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    // Its only failure is a policy refusal: exit 2.
    assert_eq!(out.code(), Some(2), "{out}");
    let results = out.json_lines();
    assert_eq!(results.len(), 3, "{out}");
    let ghost = results.iter().find(|r| r["row"] == 2).unwrap();
    assert_eq!(ghost["code"], "AGENT_NOT_SCHEDULED");
    assert_eq!(
        results.iter().filter(|r| r["success"] == true).count(),
        2,
        "{out}"
    );
    assert!(out.stderr.contains("1 refused by policy"), "{out}");
}

#[tokio::test]
async fn bulk_empty_input_is_a_clear_error() {
    let (sim, dir, _, conn) = scene(1, &[]);
    for (name, text) in [("empty.csv", ""), ("blank.csv", "\n  \n\n")] {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
        assert_eq!(out.code(), Some(1), "{name}: {out}");
        assert_eq!(out.json()["code"], "INPUT_UNREADABLE", "{name}: {out}");
        assert!(out.stdout.contains("empty"), "{name}: {out}");
    }
    let out = run_input(cli(args(&["bulk", "-"], &conn)), Some(b"")).await;
    assert_eq!(out.code(), Some(1), "stdin: {out}");
    assert!(out.stdout.contains("empty"), "stdin: {out}");
    // A missing file is an error too, naming the file.
    let missing = dir.path().join("nope.csv");
    let out = run(cli(args(&["bulk", path_str(&missing)], &conn))).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("nope.csv"), "{out}");
    assert_eq!(total_requests(&sim.base_url).await, 0);
}

async fn bulk_concurrency_is_respected(profile: Profile) {
    let (sim, dir, _, conn) = scene_as(profile, 40, &[]).await;
    let csv = sim.agents_csv(1..=12, |_| "READY");
    // One at a time: results come back in input order.
    let input = dir.path().join("serial.csv");
    std::fs::write(&input, &csv).unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--concurrency", "1"],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    let rows: Vec<u64> = out
        .json_lines()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, (1..=12).collect::<Vec<_>>(), "{out}");

    // Several at a time: everything still succeeds exactly once.
    let csv = sim.agents_csv(13..=40, |_| "NOT_READY");
    let input = dir.path().join("parallel.csv");
    std::fs::write(&input, &csv).unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--concurrency", "4"],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    let rows: BTreeSet<u64> = out
        .json_lines()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, (1..=28).collect());
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["stateChangesAccepted"], 40, "{truth}");

    // Zero is refused up front.
    let out = run(cli(args(
        &["bulk", path_str(&input), "--concurrency", "0"],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(64), "a usage error: {out}");
    assert!(out.stderr.contains("--concurrency"), "{out}");
}

// ---------------------------------------------------------------------------------------------------------
// kill -9 halfway through a bulk run, then a restart
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_killed_halfway_recovers_on_restart() {
    const ROWS: usize = 300;
    let sim = SimProcess::start(support::SLOW_TENANT_300);
    let sink = WebhookSink::start().await;
    sink.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let input = dir.path().join("rows.csv");
    let output = dir.path().join("results.jsonl");
    let csv = agents_csv(1..=ROWS, |i| if i % 2 == 1 { "READY" } else { "NOT_READY" });
    std::fs::write(&input, csv).unwrap();
    let mut conn = connect(&sim.base_url, &audit);
    // The client paces itself to the tenant's budget.
    set_flag(&mut conn, "--rate-limit", "4200");
    conn.extend(["--webhook-url".to_owned(), sink.url.clone()]);

    let mut first = tokio::process::Command::from(cli(args(
        &["bulk", path_str(&input), "--output", path_str(&output)],
        &conn,
    )));
    first
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = first.spawn().expect("bulk starts");
    let started = Instant::now();
    loop {
        if count_lines(&output) >= 100 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bulk finished ({status}) before it could be killed; slow the tenant down");
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "bulk made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
    assert!(!status.success());

    // What the kill left.
    let accepted_at_kill = admin_get(&sim.base_url, "/admin/accepted-changes").await;
    let accepted_at_kill = accepted_at_kill.as_array().unwrap().len();
    assert!(
        (90..ROWS).contains(&accepted_at_kill),
        "killed halfway: {accepted_at_kill} changes accepted"
    );
    let logged_at_kill: BTreeSet<String> = read_audit(&audit).iter().filter_map(key_of).collect();
    let intents_at_kill: BTreeSet<String> = read_kind(&audit, "intent")
        .iter()
        .filter_map(key_of)
        .collect();
    assert!(intents_at_kill.len() >= logged_at_kill.len() - 1);
    let interrupted: BTreeSet<String> = intents_at_kill
        .difference(&logged_at_kill)
        .cloned()
        .collect();
    assert_eq!(sink.ids().len(), 0, "the sink was down");
    eprintln!(
        "at the kill: {accepted_at_kill} accepted, {} recorded, {} journaled, {} interrupted",
        logged_at_kill.len(),
        intents_at_kill.len(),
        interrupted.len()
    );

    // Restart on the same files with a tiny input; the sink is back once the killed run's requests are
    // all answered.
    sink.quiesce().await;
    sink.down.store(false, Ordering::SeqCst);
    let tiny = dir.path().join("tiny.csv");
    std::fs::write(&tiny, "userId,state\nagent-0300,PAUSED\n").unwrap();
    set_flag(&mut conn, "--webhook-drain-secs", "30");
    let restart = run(cli(args(&["bulk", path_str(&tiny)], &conn))).await;
    assert_eq!(restart.code(), Some(0), "{restart}");
    assert!(
        restart.stderr.contains("recovered: delivering"),
        "the outbox left by the killed run is delivered: {restart}"
    );
    if !interrupted.is_empty() {
        assert!(
            restart
                .stderr
                .contains(&format!("resending {} state change(s)", interrupted.len())),
            "{} interrupted changes: {restart}",
            interrupted.len()
        );
    }
    assert!(
        !restart.stderr.contains("still waiting"),
        "every webhook was delivered before exit: {restart}"
    );

    // The log verifies...
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
    assert_eq!(verify.json()["ok"], true, "{verify}");

    // ...and records every change the tenant accepted, as a success with the key it was sent with.
    assert_eq!(
        read_jsonl(&audit).len(),
        count_lines(&audit),
        "no torn line after a clean exit"
    );
    let records = read_audit(&audit);
    let successes: Vec<&Value> = records.iter().filter(|r| r["success"] == true).collect();
    let success_keys: BTreeSet<String> = successes.iter().copied().filter_map(key_of).collect();
    assert_eq!(
        success_keys.len(),
        successes.len(),
        "each change is recorded as a success once"
    );
    let accepted_keys = accepted_keys(&sim.base_url).await;
    let accepted_set: BTreeSet<String> = accepted_keys.iter().cloned().collect();
    assert_eq!(
        accepted_set.len(),
        accepted_keys.len(),
        "no change was applied twice"
    );
    let missing: Vec<&String> = accepted_set.difference(&success_keys).collect();
    assert!(
        missing.is_empty(),
        "{} accepted changes have no success record: {missing:?}",
        missing.len()
    );
    let phantom: Vec<&String> = success_keys.difference(&accepted_set).collect();
    assert!(
        phantom.is_empty(),
        "success records the tenant never accepted: {phantom:?}"
    );
    let logged: BTreeSet<String> = records.iter().filter_map(key_of).collect();
    let lost: Vec<&String> = intents_at_kill.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "journaled changes with no outcome after the restart: {lost:?}"
    );
    assert!(
        successes.len() > accepted_at_kill,
        "the killed run's changes plus the restart's own"
    );

    // The outbox delivered what the killed run left, plus the restart's own events.
    let want = successes.len();
    assert!(
        support::eventually(10_000, || sink.ids().len() >= want).await,
        "{} distinct webhook events delivered, {want} successes recorded",
        sink.ids().len()
    );
    let received = sink.received.lock().unwrap().clone();
    let mut events_per_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in &received {
        assert_eq!(d.body["event"], "AGENT_STATE_CHANGED", "{}", d.body);
        assert_eq!(d.body["eventId"], d.event_id.as_str());
        let user = d.body["data"]["userId"].as_str().unwrap().to_owned();
        events_per_user
            .entry(user)
            .or_default()
            .insert(d.event_id.clone());
    }
    let mut successes_per_user: BTreeMap<String, usize> = BTreeMap::new();
    for s in &successes {
        *successes_per_user
            .entry(s["userId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (user, n) in &successes_per_user {
        let got = events_per_user.get(user).map_or(0, BTreeSet::len);
        assert!(got >= *n, "{user}: {n} successes, {got} webhook events");
    }
}

/// Runs `transition USER READY` while the tenant holds back the answer to its state change, and kills it
/// with SIGKILL once the tenant has applied the change: accepted, its outcome never recorded. Returns the
/// change's idempotency key.
async fn kill_after_the_tenant_accepted(base: &str, audit: &Path, user: &str) -> String {
    // Typed, so the wire format follows the tenant's own serde attributes.
    let rule = serde_json::to_value(FaultRule {
        user_id: Some(user.to_owned()),
        ..FaultRule::on(Endpoint::SetState, FaultKind::Slow { extra_ms: 30_000 }, 1)
    })
    .unwrap();
    assert_eq!(
        admin_post(base, "/admin/faults", &rule).await["scripted"],
        1
    );
    let mut cmd = tokio::process::Command::from(cli(args(
        &["transition", "--user", user, "--state", "READY"],
        &connect(base, audit),
    )));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("transition starts");
    let started = Instant::now();
    let key = loop {
        let accepted = admin_get(base, "/admin/accepted-changes").await;
        if let Some(c) = accepted
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["userId"] == user)
        {
            break key_of(c).expect("a key");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "transition finished early"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the change never reached the tenant"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let journaled: Vec<String> = read_kind(audit, "intent")
        .iter()
        .filter_map(key_of)
        .collect();
    assert_eq!(
        journaled,
        std::slice::from_ref(&key),
        "the intent was journaled"
    );
    assert!(
        read_audit(audit)
            .iter()
            .all(|r| key_of(r).as_ref() != Some(&key)),
        "the outcome was not recorded before the kill"
    );
    key
}

#[tokio::test]
async fn a_change_accepted_just_before_a_kill_is_recorded_after_restart() {
    let (sim, _dir, audit, _) = scene(3, &[]);
    let key = kill_after_the_tenant_accepted(&sim.base_url, &audit, "agent-0001").await;

    let restart = transition("agent-0002", "NOT_READY", &connect(&sim.base_url, &audit)).await;
    assert_eq!(restart.code(), Some(0), "{restart}");
    assert!(
        restart.stderr.contains("resending 1 state change(s)"),
        "{restart}"
    );
    let records = read_audit(&audit);
    let resumed = records
        .iter()
        .find(|r| key_of(r).as_ref() == Some(&key))
        .unwrap_or_else(|| panic!("no record of {key}: {records:?}"));
    assert_eq!(resumed["success"], true, "{resumed}");
    assert_eq!(resumed["userId"], "agent-0001");
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["stateChangesAccepted"], 2, "applied once: {truth}");
    assert_eq!(truth["idempotentReplays"], 1, "{truth}");
    assert_eq!(agent_state(&sim.base_url, "agent-0001").await, "READY");
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}

#[tokio::test]
async fn a_change_accepted_before_a_kill_is_not_recorded_as_refused_after_restart() {
    let (sim, _dir, audit, _) = scene(3, &[]);
    let key = kill_after_the_tenant_accepted(&sim.base_url, &audit, "agent-0001").await;
    assert_eq!(agent_state(&sim.base_url, "agent-0001").await, "READY");
    // The agent's mandatory break starts before the restart (the tenant keeps its READY state).
    add_agent(&sim.base_url, support::on_break("agent-0001")).await;

    let restart = transition("agent-0002", "NOT_READY", &connect(&sim.base_url, &audit)).await;
    assert_eq!(restart.code(), Some(0), "{restart}");
    let records = read_audit(&audit);
    let resumed = records
        .iter()
        .find(|r| key_of(r).as_ref() == Some(&key))
        .unwrap_or_else(|| panic!("no record of {key}: {records:?}"));
    assert_eq!(
        agent_state(&sim.base_url, "agent-0001").await,
        "READY",
        "the tenant applied the change"
    );
    assert_eq!(
        resumed["success"], true,
        "the tenant accepted {key}, the log says otherwise: {resumed}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// audit verify and report
// ---------------------------------------------------------------------------------------------------------

/// Three successful changes in order, through the CLI.
async fn three_successes(base: &str, audit: &Path, dir: &Path) {
    let input = dir.join("three.csv");
    std::fs::write(
        &input,
        "userId,state\nagent-0001,READY\nagent-0002,NOT_READY\nagent-0003,PAUSED\n",
    )
    .unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--concurrency", "1"],
        &connect(base, audit),
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
}

#[tokio::test]
async fn audit_verify_intact_tampered_and_torn() {
    let (sim, dir, audit, _) = scene(3, &[]);
    three_successes(&sim.base_url, &audit, dir.path()).await;
    let original = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        original.lines().count(),
        6,
        "an intent and an audit record per change"
    );

    let out = audit_verify(&audit).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["ok"], true, "{out}");
    assert_eq!(out.json()["auditRecords"], 3, "{out}");
    assert!(!out.stderr.contains("warning"), "{out}");

    // Flip one field of the middle audit record (the file's fourth line).
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    assert!(lines[3].contains("\"success\":true"), "{}", lines[3]);
    assert!(lines[3].contains("\"seq\":1,"), "{}", lines[3]);
    lines[3] = lines[3].replace("\"success\":true", "\"success\":false");
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let out = audit_verify(&tampered).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.all_output().contains("line 4"), "{out}");
    assert_eq!(out.json()["ok"], false, "{out}");
    assert_eq!(out.json()["code"], "AUDIT_LOG_CORRUPT", "{out}");

    // A tampered log is not reported on, and no manager starts on it.
    let out = run(cli(["report", "--audit-log", path_str(&tampered)])).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "AUDIT_LOG_CORRUPT", "{out}");
    assert!(out.stdout.contains("does not verify"), "{out}");
    let requests_before = total_requests(&sim.base_url).await;
    let out = transition(
        "agent-0001",
        "NOT_READY",
        &connect(&sim.base_url, &tampered),
    )
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "AUDIT_LOG_CORRUPT", "{out}");
    assert_eq!(total_requests(&sim.base_url).await, requests_before);
    assert_eq!(
        std::fs::read_to_string(&tampered).unwrap(),
        lines.join("\n") + "\n",
        "the tampered log is left as it was"
    );

    // A whole last record without its newline is kept; a line cut short is torn.
    let no_newline = dir.path().join("no-newline.jsonl");
    std::fs::write(&no_newline, original.trim_end_matches('\n')).unwrap();
    let out = audit_verify(&no_newline).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["auditRecords"], 3, "{out}");
    assert!(
        out.stderr.contains("newline") && !out.stderr.contains("torn"),
        "{out}"
    );
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, &original[..original.len() - 40]).unwrap();
    let out = audit_verify(&cut).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["auditRecords"], 2, "{out}");
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("torn"),
        "{out}"
    );

    // The next start sets the torn line aside, resends the change whose outcome it held (same key: the
    // tenant answers from its first send), and continues the chain.
    let out = transition("agent-0001", "IDLE", &connect(&sim.base_url, &cut)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("torn last line"), "{out}");
    assert!(out.stderr.contains("resending 1 state change(s)"), "{out}");
    let out = audit_verify(&cut).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.json()["auditRecords"], 4, "{out}");
    assert!(!out.stderr.contains("torn"), "{out}");
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["idempotentReplays"], 1, "{truth}");

    // The whole-but-unterminated log is continued as it is (the newline is added).
    let out = transition("agent-0002", "IDLE", &connect(&sim.base_url, &no_newline)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("lacked its newline"), "{out}");
    let out = audit_verify(&no_newline).await;
    assert_eq!(out.json()["auditRecords"], 4, "{out}");
}

#[tokio::test]
async fn a_closed_stdout_does_not_make_the_cli_panic() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("simulate.jsonl");
    let out = run(cli([
        "simulate",
        "--agents",
        "2",
        "--hours",
        "1",
        "--no-progress",
        "--json",
        "--audit-log",
        path_str(&audit),
    ]))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    for argv in [
        vec!["report", "--audit-log", path_str(&audit), "--json"],
        vec!["audit", "verify", path_str(&audit)],
    ] {
        let mut child = cli(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written, as `| head -0` would.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked") && output.status.code() != Some(101),
            "{argv:?}: {}\n{stderr}",
            output.status
        );
    }
}

#[tokio::test]
async fn report_table_json_and_csv() {
    let sim = server(3, &[]);
    add_agent(&sim.base_url, support::on_break("brk")).await;
    add_agent(&sim.base_url, support::unscheduled("ghost")).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let input = dir.path().join("mix.csv");
    std::fs::write(
        &input,
        "userId,state\n\
         agent-0001,READY\n\
         agent-0002,NOT_READY\n\
         brk,READY\n\
         ghost,READY\n\
         agent-0003,ready\n\
         nobody,READY\n",
    )
    .unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input), "--concurrency", "1"],
        &connect(&sim.base_url, &audit),
    )))
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    let records = read_audit(&audit);
    assert_eq!(records.len(), 6, "one record per attempted transition");
    let violations = records
        .iter()
        .filter(|r| r["policyViolation"] == true)
        .count();
    assert_eq!(violations, 2);

    // Table.
    let out = run(cli(["report", "--audit-log", path_str(&audit)])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("compliance report"), "{out}");
    assert!(out.stdout.contains("total transitions"), "{out}");
    assert!(out.stdout.contains("MANDATORY_BREAK_VIOLATION"), "{out}");
    assert!(out.stdout.contains("rebuilt from 6 audit records"), "{out}");

    // JSON.
    let out = run(cli(["report", "--audit-log", path_str(&audit), "--json"])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let r = out.json();
    assert_eq!(r["totalTransitions"], records.len() as u64, "{r}");
    assert_eq!(r["successCount"], 2, "{r}");
    assert_eq!(r["failureCount"], 4, "{r}");
    assert_eq!(
        r["violationCount"], violations as u64,
        "only policy refusals count as violations: {r}"
    );
    let by_code = &r["failuresByCode"];
    for code in [
        "MANDATORY_BREAK_VIOLATION",
        "AGENT_NOT_SCHEDULED",
        "INVALID_STATE",
        "USER_NOT_FOUND",
    ] {
        assert_eq!(by_code[code], 1, "{code}: {by_code}");
    }

    // CSV.
    let out = run(cli(["report", "--audit-log", path_str(&audit), "--csv"])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let mut csv_lines = out.stdout.lines();
    assert_eq!(csv_lines.next(), Some("section,key,value"), "{out}");
    let rows: Vec<&str> = csv_lines.collect();
    assert!(rows.contains(&"summary,totalTransitions,6"), "{out}");
    assert!(rows.contains(&"summary,violationCount,2"), "{out}");
    assert!(
        rows.iter().all(|r| r.split(',').count() >= 3),
        "every row has three fields: {out}"
    );

    // The flags conflict.
    let out = run(cli([
        "report",
        "--audit-log",
        path_str(&audit),
        "--json",
        "--csv",
    ]))
    .await;
    assert_ne!(out.code(), Some(0), "{out}");
}

// ---------------------------------------------------------------------------------------------------------
// sim-server and simulate
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sim_server_prints_its_url_then_json_and_stops_when_stdin_closes() {
    use std::io::{BufRead, BufReader};
    let mut child = cli([
        "sim-server",
        "--listen",
        "127.0.0.1:0",
        "--exit-on-stdin-eof",
        "--agents",
        "7",
        "--rate-limit",
        "6000",
        "--burst",
        "100",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sim-server starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim_end()
        .strip_prefix("sim-server listening on ")
        .unwrap_or_else(|| panic!("first line {first:?}"))
        .to_owned();
    let port: u16 = base
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{base}"))
        .parse()
        .expect("a port");
    assert_ne!(port, 0);
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    let info: Value = serde_json::from_str(second.trim()).expect("the second line is JSON");
    assert_eq!(info["baseUrl"], base.as_str(), "{info}");
    assert_eq!(info["agents"], 7);
    assert_eq!(info["ratePerMinute"], 6000);
    assert_eq!(info["burst"], 100);
    assert_eq!(info["clientId"], CLIENT_ID);
    assert!(!second.contains(CLIENT_SECRET), "{second}");

    assert_eq!(
        admin_get(&base, "/admin/health").await,
        serde_json::json!({ "ok": true })
    );
    let agent = admin_get(&base, "/admin/agents/agent-0007").await;
    assert_eq!(agent["plan"]["userId"], "agent-0007", "{agent}");

    // Closing stdin stops it cleanly (exit 0, not a kill) and frees the port.
    drop(child.stdin.take());
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("sim-server still running 10 s after its stdin closed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(port_closes(addr_of(&base), Duration::from_secs(5)));
}

#[tokio::test]
async fn dropping_a_sim_process_closes_its_port() {
    let sim = server(1, &[]);
    assert_eq!(admin_get(&sim.base_url, "/admin/health").await["ok"], true);
    let addr = addr_of(&sim.base_url);
    drop(sim);
    assert!(
        port_closes(addr, Duration::from_secs(5)),
        "still accepting after drop"
    );
}

async fn simulate_reports_no_ready_during_breaks_and_writes_a_verifiable_log(profile: Profile) {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("simulate.jsonl");
    let schedule = dir.path().join("schedule.json");
    let simulate = |log: &Path| {
        cli([
            "simulate",
            "--profile",
            profile.as_str(),
            "--agents",
            "20",
            "--no-progress",
            "--json",
            "--audit-log",
            path_str(log),
            "--schedule-out",
            path_str(&schedule),
        ])
    };
    let out = run(simulate(&audit)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    assert_eq!(v["groundTruth"]["readyAcceptedDuringBreak"], 0, "{v}");
    // The engine spoke the profile asked for: the state changes went to its endpoint.
    let by_endpoint = &v["groundTruth"]["requestsByEndpoint"];
    let (used, unused) = match profile {
        Profile::Seed => ("setState", "agentState"),
        Profile::Cxone => ("agentState", "setState"),
    };
    assert!(by_endpoint[used].as_u64().unwrap_or(0) > 0, "{by_endpoint}");
    assert_eq!(by_endpoint.get(unused), None, "{by_endpoint}");
    assert!(
        v["groundTruth"]["stateChangesAccepted"].as_u64().unwrap() > 0,
        "{v}"
    );
    let lines = read_audit(&audit).len() as u64;
    assert!(lines > 0);
    assert_eq!(v["auditLog"]["records"], lines);
    assert_eq!(v["auditLog"]["chainVerified"], true);
    assert_eq!(v["report"]["totalTransitions"], lines);

    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
    assert_eq!(verify.json()["auditRecords"], lines, "{verify}");
    let report = run(cli(["report", "--audit-log", path_str(&audit), "--json"])).await;
    assert_eq!(report.code(), Some(0), "{report}");
    assert_eq!(report.json()["totalTransitions"], lines);

    // The day's adherence, rebuilt from the stored log and the stored schedule, is the one it printed.
    let printed = &v["report"]["adherence"];
    assert!(
        printed["team"]["adherence"].as_f64().unwrap() > 0.5,
        "{printed}"
    );
    assert_eq!(printed["agents"].as_array().unwrap().len(), 20);
    let report_with_schedule = || {
        cli([
            "report",
            "--audit-log",
            path_str(&audit),
            "--schedule",
            path_str(&schedule),
            "--json",
        ])
    };
    let rebuilt = run(report_with_schedule()).await;
    assert_eq!(rebuilt.code(), Some(0), "{rebuilt}");
    assert_eq!(&rebuilt.json()["adherence"], printed);
    // A schedule that is not an export is refused with its code.
    std::fs::write(&schedule, "{\"agents\": []}").unwrap();
    let bad = run(report_with_schedule()).await;
    assert_eq!(bad.code(), Some(1), "{bad}");
    assert_eq!(bad.json()["code"], "INPUT_UNREADABLE", "{bad}");

    // The same seed gives the same day.
    let again = dir.path().join("again.jsonl");
    let out2 = run(simulate(&again)).await;
    assert_eq!(out2.code(), Some(0), "{out2}");
    assert_eq!(out2.json()["groundTruth"], v["groundTruth"]);
}

/// `simulate --observe` on cxone: agents, supervisors and the ACD change states themselves; the engine
/// observes them, and the same day is run again without observation. Both are measured against the tenant's
/// truth: with observation every agent is within one poll interval per change, without it far fewer are.
#[tokio::test]
async fn simulate_with_observation_reports_its_error_against_the_truth_with_and_without() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("observe.jsonl");
    let simulate = |json: bool| {
        let mut a = vec![
            "simulate",
            "--profile",
            "cxone",
            "--agents",
            "20",
            "--hours",
            "4",
            "--agent-changes-per-hour",
            "4",
            "--contacts-per-hour",
            "6",
            "--supervisor-changes-per-hour",
            "0.5",
            "--observe",
            "--no-progress",
            "--force",
            "--audit-log",
            path_str(&audit),
        ];
        if json {
            a.push("--json");
        }
        cli(a)
    };
    let out = run(simulate(true)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    let (on, off) = (&v["accuracy"], &v["accuracyWithoutObservation"]);
    assert_eq!(on["observed"], true, "{v}");
    assert_eq!(off["observed"], false, "{v}");
    assert_eq!(on["agents"].as_array().unwrap().len(), 20);
    assert_eq!(on["agentsWithinBound"], 20, "{on}");
    assert!(off["agentsWithinBound"].as_u64().unwrap() < 20, "{off}");
    let mean = |a: &Value, key: &str| a[key].as_f64().unwrap();
    assert!(
        mean(off, "meanUtilizationError") > 5.0 * mean(on, "meanUtilizationError").max(0.001),
        "off {off} on {on}"
    );
    assert!(mean(off, "meanIdleErrorMs") > mean(on, "meanIdleErrorMs"));
    // The log holds the observations, in the chain, and verifies.
    let records = read_audit(&audit);
    let observations = records
        .iter()
        .filter(|r| !r["observation"].is_null())
        .count();
    assert!(observations > 20, "{observations} observation records");
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");

    // On a terminal: both columns, side by side.
    let out = run(simulate(false)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    for heading in [
        "observation off",
        "observation on",
        "agents within one poll interval",
    ] {
        assert!(out.stdout.contains(heading), "{heading}: {out}");
    }
    assert!(out.stdout.contains("20 / 20"), "{out}");

    // Seed cannot observe: a usage error with the stable code, before anything is written.
    let seed_log = dir.path().join("seed.jsonl");
    let out = run(cli([
        "simulate",
        "--profile",
        "seed",
        "--observe",
        "--json",
        "--no-progress",
        "--audit-log",
        path_str(&seed_log),
    ]))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert_eq!(out.json()["code"], "OBSERVE_UNSUPPORTED", "{out}");
    assert!(!seed_log.exists(), "nothing was written");
}

// ---------------------------------------------------------------------------------------------------------
// per-agent order and the webhook outbox
// ---------------------------------------------------------------------------------------------------------

/// A CSV with `agent-0014,READY` then `agent-0014,NOT_READY` among other rows, at the default concurrency
/// of 32, with the first change delayed by faults (a 503 on its schedule lookup, a slow answer to its send):
/// the tenant applies the two in input order, every time.
#[tokio::test]
async fn bulk_applies_one_agents_changes_in_input_order_under_faults() {
    // The rounds are independent (each has its own tenant and directory): run them at once.
    let mut rounds = tokio::task::JoinSet::new();
    for round in 0..3 {
        rounds.spawn(bulk_in_input_order_round(round));
    }
    while let Some(done) = rounds.join_next().await {
        if let Err(e) = done {
            // A failed round's own panic message (with its "round {round}") is the test's.
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// One round of [`bulk_applies_one_agents_changes_in_input_order_under_faults`]: the slow answer to the
/// first change's send takes `200 + 100 * round` ms.
async fn bulk_in_input_order_round(round: u64) {
    let sim = server(60, &[]);
    admin_post(
        &sim.base_url,
        "/admin/faults",
        &serde_json::json!([
            {"endpoint": "schedule", "userId": "agent-0014",
             "fault": {"kind": "status", "status": 503}, "times": 1},
            {"endpoint": "setState", "userId": "agent-0014",
             "fault": {"kind": "slow", "extraMs": 200 + 100 * round}, "times": 1}
        ]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let input = dir.path().join("rows.csv");
    let mut csv = String::from("userId,state\n");
    for i in 1..=30 {
        if i == 5 {
            csv.push_str("agent-0014,READY\n");
        }
        if i == 12 {
            csv.push_str("agent-0014,NOT_READY\n");
        }
        csv.push_str(&format!("agent-{:04},PAUSED\n", i + 20));
    }
    std::fs::write(&input, csv).unwrap();
    let out = run(cli(args(
        &["bulk", path_str(&input)],
        &connect(&sim.base_url, &audit),
    )))
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    let accepted = admin_get(&sim.base_url, "/admin/accepted-changes").await;
    let order: Vec<&str> = accepted
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["userId"] == "agent-0014")
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["READY", "NOT_READY"], "round {round}");
    assert_eq!(agent_state(&sim.base_url, "agent-0014").await, "NOT_READY");
}

#[tokio::test]
async fn outbox_list_shows_dead_letters_and_replay_delivers_them() {
    let sim = server(3, &[]);
    let sink = support::WebhookSink::start().await;
    *sink.refuse_containing.lock().unwrap() = Some("agent-0001".into());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut conn = connect(&sim.base_url, &audit);
    conn.extend(
        [
            "--webhook-url",
            &sink.url,
            "--webhook-dead-letter-after",
            "2",
        ]
        .map(str::to_owned),
    );
    set_flag(&mut conn, "--webhook-drain-secs", "60");
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, "userId,state\nagent-0001,READY\nagent-0002,READY\n").unwrap();

    // The receiver refuses agent-0001's payload: after two refusals it is set aside, and the next flows.
    let out = run(cli(args(&["bulk", path_str(&input)], &conn))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("1 webhook event(s) are dead letters"),
        "{out}"
    );
    assert_eq!(sink.ids().len(), 1);
    assert_eq!(sink.refused.load(Ordering::SeqCst), 2);

    let list = run(cli(["outbox", "list", "--audit-log", path_str(&audit)])).await;
    assert_eq!(list.code(), Some(0), "{list}");
    assert!(list.stdout.contains("1 dead letter(s)"), "{list}");
    assert!(list.stdout.contains("422"), "{list}");
    let json = outbox_list_json(&audit).await;
    let v = json.json();
    assert_eq!(v["pending"], 0, "{v}");
    let dead = v["deadLetters"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0]["entry"]["body"]
        .as_str()
        .unwrap()
        .contains("agent-0001"));
    let event_id = dead[0]["entry"]["eventId"].as_str().unwrap().to_owned();

    // Replayed once the receiver takes it: delivered, and gone from the list.
    *sink.refuse_containing.lock().unwrap() = None;
    let replay = run(cli(args(
        &["outbox", "replay", "--event-id", &event_id],
        &conn,
    )))
    .await;
    assert_eq!(replay.code(), Some(0), "{replay}");
    assert!(
        replay.stderr.contains("replaying 1 dead letter(s)"),
        "{replay}"
    );
    assert!(sink.ids().contains(&event_id));
    let list = run(cli(["outbox", "list", "--audit-log", path_str(&audit)])).await;
    assert!(list.stdout.contains("0 dead letter(s)"), "{list}");
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}

// ---------------------------------------------------------------------------------------------------------
// watch, and unknown outcomes settled by observation (cxone)
// ---------------------------------------------------------------------------------------------------------

/// The connection flags of `conn` with a one-second poll.
fn observing(conn: &[String]) -> Vec<String> {
    let mut flags = conn.to_vec();
    flags.extend(["--observe-interval-ms", "1000"].map(str::to_owned));
    flags
}

/// `watch --json --heartbeats` with `conn`.
fn watch(conn: &[String]) -> Running {
    Running::spawn(cli(args(
        &["watch", "--json", "--heartbeats"],
        &observing(conn),
    )))
}

/// The `audit head: SEQ:HASH (PATH)` a command printed on stderr.
fn printed_head(out: &Out) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("audit head: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no audit head printed:\n{out}"))
        .to_owned()
}

/// `audit verify` of `audit` against the head a run printed passes.
async fn verify_against_printed_head(audit: &Path, out: &Out) {
    let verify = run(cli([
        "audit",
        "verify",
        path_str(audit),
        "--head",
        &printed_head(out),
    ]))
    .await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}

/// The audit records of `audit` that carry an observation.
fn observation_records(audit: &Path) -> Vec<Value> {
    read_audit(audit)
        .into_iter()
        .filter(|r| r.get("observation").is_some())
        .collect()
}

#[tokio::test]
async fn watch_prints_external_changes_and_other_processes_transitions_then_stops_on_sigterm() {
    let (sim, dir, audit, conn) = scene_as(Profile::Cxone, 3, &[]).await;
    let (a1, a2) = (sim.id("agent-0001"), sim.id("agent-0002"));
    let mut w = watch(&conn);
    // The first poll reports every agent once; its heartbeat says the baseline is in.
    let first = w
        .until(Duration::from_secs(10), |v| {
            v["event"] == "heartbeat" && v["ok"] == true
        })
        .await
        .unwrap_or_else(|| panic!("no heartbeat: {:?}", w.json_lines()));
    assert_eq!(first["agents"], 3, "{first}");

    // A supervisor sets agent-0001 Unavailable/Lunch in the tenant: seen within a couple of polls.
    let r = admin_post(
        &sim.base_url,
        "/admin/agents/agent-0001/tenant-state",
        &serde_json::json!({"state": "Unavailable", "code": "Lunch", "source": "supervisor"}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let lunch = w
        .until(Duration::from_secs(5), |v| {
            v["event"] == "stateObserved" && v["userId"] == a1 && v["code"] == "Lunch"
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the supervisor's change was not printed: {:?}",
                w.json_lines()
            )
        });
    assert_eq!(lunch["tenantState"], "Unavailable", "{lunch}");
    assert_eq!(lunch["state"], "NOT_READY", "{lunch}");
    assert_eq!(lunch["source"], "external", "{lunch}");

    // A `transition` run by another process (its own audit log: watch holds this one) is seen too. For this
    // process it is external: `ours` means a change this engine made (see the next tests for `ours`).
    let other_log = dir.path().join("other.jsonl");
    let out = transition(&a2, "READY", &sim.connect(&other_log)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let ready = w
        .until(Duration::from_secs(5), |v| {
            v["event"] == "stateObserved" && v["userId"] == a2 && v["tenantState"] == "Available"
        })
        .await
        .unwrap_or_else(|| panic!("the transition was not printed: {:?}", w.json_lines()));
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["source"], "external", "{ready}");

    w.signal("TERM");
    let out = w.wait().await;
    assert_eq!(out.code(), Some(0), "{out}");
    // Every printed change is an observation record of the log, with the source printed.
    let records = observation_records(&audit);
    for printed in [&lunch, &ready] {
        let record = records
            .iter()
            .find(|r| r["id"] == printed["recordId"])
            .unwrap_or_else(|| panic!("{printed} has no record in {records:?}"));
        assert_eq!(record["observation"]["source"], printed["source"]);
        assert_eq!(record["userId"], printed["userId"]);
    }
    verify_against_printed_head(&audit, &out).await;
}

#[tokio::test]
async fn ctrl_c_stops_watch_with_exit_0_and_a_verifiable_log() {
    let (_sim, _dir, audit, conn) = scene_as(Profile::Cxone, 2, &[]).await;
    let mut w = watch(&conn);
    assert!(
        w.until(Duration::from_secs(10), |v| v["event"] == "stateObserved")
            .await
            .is_some(),
        "the first poll's changes were not printed"
    );
    w.signal("INT");
    let out = w.wait().await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("stopping"), "{out}");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.ends_with('\n'), "the log ends on a complete record");
    assert!(
        observation_records(&audit).len() >= 2,
        "the baseline of both agents is in the log:\n{text}"
    );
    verify_against_printed_head(&audit, &out).await;
}

#[tokio::test]
async fn watch_for_secs_stops_by_itself_and_prints_heartbeats_only_when_asked() {
    let (_sim, _dir, _audit, conn) = scene_as(Profile::Cxone, 1, &[]).await;
    let started = Instant::now();
    // Not a terminal, so JSON Lines by default; --for-secs ends it.
    let out = run(cli(args(&["watch", "--for-secs", "2"], &observing(&conn)))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(started.elapsed() < Duration::from_secs(15), "{out}");
    let lines = out.json_lines();
    assert!(lines.iter().any(|v| v["event"] == "stateObserved"), "{out}");
    assert!(
        lines.iter().all(|v| v["event"] != "heartbeat"),
        "heartbeats only with --heartbeats: {out}"
    );
}

#[tokio::test]
async fn watch_on_seed_fails_with_observe_unsupported() {
    let (_sim, _dir, audit, conn) = scene_as(Profile::Seed, 1, &[]).await;
    let started = Instant::now();
    let out = run(cli(args(&["watch", "--json", "--for-secs", "30"], &conn))).await;
    assert_eq!(out.code(), Some(64), "{out}");
    let v = out.json();
    assert_eq!(v["code"], "OBSERVE_UNSUPPORTED", "{out}");
    assert!(v["message"].as_str().unwrap().contains("cxone"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait"
    );
    assert!(read_audit(&audit).is_empty(), "nothing was observed");
}

#[tokio::test]
async fn bad_observation_settings_are_usage_errors_named_by_their_source() {
    let (_sim, _dir, _audit, conn) = scene_as(Profile::Cxone, 1, &[]).await;
    let out = run(cli(args(
        &["watch", "--json", "--observe-interval-ms", "10"],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    let v = out.json();
    assert_eq!(v["code"], "INVALID_CONFIG", "{out}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--observe-interval-ms"),
        "{out}"
    );
    let mut cmd = cli(args(
        &["transition", "--json", "--user", "1001", "--state", "READY"],
        &conn,
    ));
    cmd.env("CXONE_SETTLE_WAIT_SECS", "soon");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(64), "{out}");
    let v = out.json();
    assert_eq!(v["code"], "INVALID_CONFIG", "{out}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("CXONE_SETTLE_WAIT_SECS"),
        "{out}"
    );
}

/// Scripts `fault` on the next ten `SetAgentState` requests of the agent named `name`: more than the
/// change's send and its three retries, so every one of them meets it.
async fn fault_every_send(base: &str, name: &str, fault: FaultKind) {
    let rule = serde_json::to_value(FaultRule {
        user_id: Some(name.to_owned()),
        ..FaultRule::on(Endpoint::AgentState, fault, 10)
    })
    .unwrap();
    assert_eq!(
        admin_post(base, "/admin/faults", &rule).await["scripted"],
        1
    );
}

#[tokio::test]
async fn a_transition_whose_answer_is_lost_is_settled_as_applied_before_it_exits() {
    let (sim, _dir, audit, conn) = scene_as(Profile::Cxone, 3, &[]).await;
    let agent = sim.id("agent-0001");
    // The tenant applies every send and drops the connection before answering: the outcome is unknown.
    fault_every_send(&sim.base_url, "agent-0001", FaultKind::DropAfter).await;
    let out = run(cli(args(
        &[
            "transition",
            "--json",
            "--user",
            &agent,
            "--state",
            "READY",
            "--settle-wait-secs",
            "30",
        ],
        &observing(&conn),
    )))
    .await;
    assert_eq!(out.code(), Some(0), "settled as applied: {out}");
    let v = out.json();
    assert_eq!(v["success"], true, "{out}");
    assert_eq!(v["settled"]["applied"], true, "{out}");
    assert!(out.stderr.contains("settling 1 change"), "{out}");
    assert!(out.stderr.contains("1 applied"), "{out}");
    assert_eq!(sim.state_of("agent-0001").await, sim.set_as("READY"));

    // The log holds the unknown record, untouched, and a settlement pointing at it.
    let records = read_audit(&audit);
    let unknown = records
        .iter()
        .find(|r| r["errorCode"] == "OUTCOME_UNKNOWN")
        .unwrap_or_else(|| panic!("no OUTCOME_UNKNOWN record: {records:?}"));
    let settlement = records
        .iter()
        .find(|r| r["settles"] == unknown["id"])
        .unwrap_or_else(|| panic!("nothing settles {}: {records:?}", unknown["id"]));
    assert_eq!(settlement["success"], true, "{settlement}");
    assert_eq!(settlement["userId"], agent);
    assert_eq!(settlement["newState"], "READY");
    assert_eq!(v["settled"]["settles"], unknown["id"], "{out}");
    assert_eq!(v["settled"]["recordId"], settlement["id"], "{out}");
    // What settled it: the tenant showing our own change.
    assert!(
        observation_records(&audit)
            .iter()
            .any(|r| r["userId"] == agent
                && r["observation"]["source"] == "ours"
                && r["observation"]["tenantState"] == "Available"),
        "{records:?}"
    );
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test]
async fn a_transition_whose_sends_all_failed_is_settled_as_not_applied_and_exits_1() {
    let (sim, _dir, audit, conn) = scene_as(Profile::Cxone, 3, &[]).await;
    let agent = sim.id("agent-0002");
    // A 503 may come from a proxy that forwarded the send: unknown, though the tenant never applied it.
    fault_every_send(
        &sim.base_url,
        "agent-0002",
        FaultKind::Status {
            status: 503,
            retry_after_s: None,
        },
    )
    .await;
    let mut flags = observing(&conn);
    flags.extend(["--observe-settle-after-ms", "2000"].map(str::to_owned));
    let out = run(cli(args(
        &[
            "transition",
            "--json",
            "--user",
            &agent,
            "--state",
            "READY",
            "--settle-wait-secs",
            "30",
        ],
        &flags,
    )))
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    let v = out.json();
    assert_eq!(v["success"], false, "{out}");
    assert_eq!(v["code"], "NOT_APPLIED", "{out}");
    assert_eq!(v["settled"]["applied"], false, "{out}");
    let records = read_audit(&audit);
    let unknown = records
        .iter()
        .find(|r| r["errorCode"] == "OUTCOME_UNKNOWN")
        .unwrap_or_else(|| panic!("no OUTCOME_UNKNOWN record: {records:?}"));
    let settlement = records
        .iter()
        .find(|r| r["settles"] == unknown["id"])
        .unwrap_or_else(|| panic!("nothing settles {}: {records:?}", unknown["id"]));
    assert_eq!(settlement["success"], false, "{settlement}");
    assert_eq!(settlement["errorCode"], "NOT_APPLIED", "{settlement}");
    assert_eq!(audit_verify(&audit).await.code(), Some(0));
}

#[tokio::test]
async fn an_unknown_outcome_on_seed_is_reported_without_waiting() {
    let (sim, _dir, _audit, conn) = scene_as(Profile::Seed, 1, &[]).await;
    let rule = serde_json::to_value(FaultRule {
        user_id: Some("agent-0001".to_owned()),
        ..FaultRule::on(
            Endpoint::SetState,
            FaultKind::Status {
                status: 503,
                retry_after_s: None,
            },
            10,
        )
    })
    .unwrap();
    admin_post(&sim.base_url, "/admin/faults", &rule).await;
    let out = run(cli(args(
        &[
            "transition",
            "--json",
            "--user",
            "agent-0001",
            "--state",
            "READY",
        ],
        &conn,
    )))
    .await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.json()["code"], "OUTCOME_UNKNOWN", "{out}");
    assert!(
        !out.stderr.contains("settling"),
        "seed cannot observe: {out}"
    );
}

#[tokio::test]
async fn bulk_settles_rows_whose_answer_was_lost_and_counts_them_as_succeeded() {
    let (sim, dir, audit, conn) = scene_as(Profile::Cxone, 3, &[]).await;
    fault_every_send(&sim.base_url, "agent-0002", FaultKind::DropAfter).await;
    let input = dir.path().join("rows.csv");
    std::fs::write(&input, sim.agents_csv(1..=3, |_| "READY")).unwrap();
    let mut flags = observing(&conn);
    flags.extend(["--settle-wait-secs", "30", "--no-progress"].map(str::to_owned));
    let out = run(cli(args(&["bulk", path_str(&input)], &flags))).await;
    assert_eq!(out.code(), Some(0), "every row applied in the end: {out}");
    let lines = out.json_lines();
    let row2: Vec<&Value> = lines.iter().filter(|v| v["row"] == 2).collect();
    assert_eq!(
        row2.len(),
        2,
        "the unknown result, then its settlement: {out}"
    );
    assert_eq!(row2[0]["code"], "OUTCOME_UNKNOWN", "{out}");
    assert_eq!(row2[1]["settled"], true, "{out}");
    assert_eq!(row2[1]["success"], true, "{out}");
    let unknown_id = read_audit(&audit)
        .into_iter()
        .find(|r| r["errorCode"] == "OUTCOME_UNKNOWN")
        .map(|r| r["id"].clone())
        .expect("an unknown record");
    assert_eq!(row2[1]["settles"], unknown_id, "{out}");
    assert!(out.stderr.contains("3 succeeded"), "{out}");
}

/// The library: a manager that observes from its start reports its own change as `ours`, and the
/// snapshot says so too.
#[tokio::test]
async fn a_manager_observing_from_its_start_sees_its_own_change_as_ours() {
    use cxone_agent_state::{AgentStateManager, Notice};
    use cxone_agent_state_core::{ErrorCode, Event, ObservationSource};

    let sim = Tenant::start(Profile::Cxone, 3, &[]).await;
    let agent = sim.id("agent-0003");
    let mut config =
        support::config_as(Profile::Cxone, &sim.base_url, None).with_observe_at_start(true);
    config.engine.observe.interval_ms = 1_000;
    let manager = AgentStateManager::start(config).await.unwrap();
    let mut notices = manager.subscribe();
    manager.transition_state(&agent, "READY").await.unwrap();
    let observed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Notice::Event(Event::StateObserved(s))) = notices.recv().await {
                if s.user_id == agent && s.observation.tenant_state == "Available" {
                    return s;
                }
            }
        }
    })
    .await
    .expect("the change was observed");
    assert_eq!(observed.observation.source, ObservationSource::Ours);
    let snapshot = manager.agents().await;
    let mine = snapshot
        .iter()
        .find(|a| a.user_id == agent)
        .expect("in the snapshot");
    assert_eq!(
        (mine.state.as_str(), mine.source.as_str()),
        ("READY", "ours")
    );
    assert_eq!(manager.unsettled_outcomes().await, 0);
    manager.shutdown(Duration::from_secs(1)).await;

    // Seed cannot observe: the option is ignored, and asking is OBSERVE_UNSUPPORTED.
    let seed = AgentStateManager::start(
        support::config_as(Profile::Seed, &sim.base_url, None).with_observe_at_start(true),
    )
    .await
    .unwrap();
    let e = seed.start_observing().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ObserveUnsupported);
    seed.shutdown(Duration::from_secs(1)).await;
}

/// A deferred READY survives `kill -9`: the log holds it, and the next long-running process on the same log
/// (`watch`) holds it again and applies it when the break ends, under the same deferral id.
#[tokio::test]
async fn a_deferred_change_survives_kill_9_and_is_applied_by_the_next_process() {
    let (mut sim, _dir, audit, conn) = scene_as(Profile::Cxone, 1, &[]).await;
    let ends = cxone_agent_state::now_ms() + 6_000;
    sim.add_agent(support::on_break_until("held", ends)).await;
    let agent = sim.id("held");
    let mut first = tokio::process::Command::from(cli(args(
        &[
            "transition",
            "--user",
            &agent,
            "--state",
            "READY",
            "--defer",
        ],
        &conn,
    )));
    first
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = first.spawn().expect("transition starts");
    let started = Instant::now();
    let deferral_id = loop {
        let held = read_audit(&audit)
            .into_iter()
            .find(|r| r["deferral"]["phase"] == "deferred");
        if let Some(r) = held {
            break r["deferral"]["id"].as_str().unwrap().to_owned();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "it should wait for the break"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never deferred"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    assert!(
        cxone_agent_state::now_ms() < ends,
        "killed inside the break"
    );
    assert_eq!(agent_state(&sim.base_url, "held").await, Value::Null);

    let out = run(cli(args(&["watch", "--for-secs", "12"], &observing(&conn)))).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(sim.state_of("held").await, sim.set_as("READY"));
    let truth = admin_get(&sim.base_url, "/admin/ground-truth").await;
    assert_eq!(truth["readyAcceptedDuringBreak"], 0, "{truth}");
    let released: Vec<Value> = read_audit(&audit)
        .into_iter()
        .filter(|r| r["deferral"]["phase"] == "released")
        .collect();
    assert_eq!(released.len(), 1, "applied once");
    assert_eq!(released[0]["deferral"]["id"], deferral_id.as_str());
    assert_eq!(released[0]["success"], true);
    let verify = audit_verify(&audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
}
