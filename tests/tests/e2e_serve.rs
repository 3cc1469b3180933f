//! End-to-end tests of `cxone-agent-state serve`, the authenticated HTTP service over the engine: the real
//! binary as a child process, a simulated tenant (`sim-server`) on loopback, and a real HTTP client.
//!
//! Every endpoint with its status table, API keys (none, wrong, read-only), the body and batch limits,
//! `/metrics` parsed as OpenMetrics text and its counters against what was done, the OpenAPI document, the
//! event stream resumed with `Last-Event-ID`, and SIGTERM in the middle of a batch. The scenarios that touch
//! the tenant run once per profile (`seed::…` and `cxone::…`).
#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cli::*;
use support::serve::*;
use support::{admin_get, admin_post, Profile, WebhookSink};

for_each_profile!(
    every_endpoint_answers_as_documented,
    every_v1_route_refuses_a_missing_or_wrong_key_and_counts_it,
    a_read_only_key_reads_but_changes_nothing,
    metrics_parse_as_openmetrics_and_count_what_was_done,
    events_resume_after_last_event_id_then_arrive_live,
    sigterm_during_a_batch_loses_nothing,
);

/// A tenant for `profile` with `agents` agents `agent-NNNN` and an agent `brk` on a mandatory break for an
/// hour, a key file, and the service started on them with `extra` flags.
struct Scene {
    tenant: Tenant,
    dir: tempfile::TempDir,
    audit: std::path::PathBuf,
    keys: KeyFile,
    svc: Service,
}

impl Scene {
    async fn start(profile: Profile, agents: usize, extra: &[&str]) -> Self {
        let (mut tenant, dir, audit, conn) = scene_as(profile, agents, &[]).await;
        tenant.add_agent(support::on_break("brk")).await;
        let keys = key_file(dir.path()).await;
        let svc = Service::start(&keys.path, &conn, extra).await;
        Self {
            tenant,
            dir,
            audit,
            keys,
            svc,
        }
    }

    /// The client with the read-write key.
    fn rw(&self) -> Api {
        self.svc.api(Some(&self.keys.rw))
    }

    /// The client with the read-only key.
    fn ro(&self) -> Api {
        self.svc.api(Some(&self.keys.ro))
    }

    /// How the client addresses `agent-NNNN`.
    fn agent(&self, n: usize) -> String {
        self.tenant.id(&format!("agent-{n:04}"))
    }
}

/// The audit records of changes (observation records, which a `cxone` service writes as it polls, left
/// out).
fn change_records(audit: &Path) -> Vec<Value> {
    read_audit(audit)
        .into_iter()
        .filter(|r| r.get("observation").is_none())
        .collect()
}

/// `/v1/agents` as `userId -> state`.
async fn agent_states(api: &Api) -> BTreeMap<String, String> {
    let r = api.get("/v1/agents").await;
    assert_eq!(r.status, 200, "{r}");
    r.json()["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("no agents array: {r}"))
        .iter()
        .map(|a| {
            (
                a["userId"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Tallies outcomes by their `status`.
#[derive(Debug, Default)]
struct Tally(BTreeMap<u64, u64>);

impl Tally {
    fn add(&mut self, outcome: &Value) {
        *self
            .0
            .entry(outcome["status"].as_u64().expect("a status"))
            .or_default() += 1;
    }

    fn of(&self, status: u64) -> u64 {
        self.0.get(&status).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Every endpoint
// ---------------------------------------------------------------------------------------------------------

async fn every_endpoint_answers_as_documented(profile: Profile) {
    let mut s = Scene::start(profile, 6, &[]).await;
    // Two agents whose break ends in ten minutes: a READY for them may be deferred (a deferral waits an
    // hour at most).
    let break_end = cxone_agent_state::now_ms() + 600_000;
    for name in ["held", "held2"] {
        s.tenant
            .add_agent(support::on_break_until(name, break_end))
            .await;
    }
    let api = s.rw();
    let (a1, a2, a3, a4, a5, a6) = (
        s.agent(1),
        s.agent(2),
        s.agent(3),
        s.agent(4),
        s.agent(5),
        s.agent(6),
    );
    let (brk, held, held2) = (
        s.tenant.id("brk"),
        s.tenant.id("held"),
        s.tenant.id("held2"),
    );
    let mut tally = Tally::default();

    // Applied: 200, and the tenant shows it.
    let r = api.set_state(&a1, &json!({"state": "READY"})).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    let v = r.json();
    tally.add(&v);
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["code"], "OK");
    assert_eq!(v["status"], 200);
    assert_eq!(v["userId"], a1.as_str());
    assert_eq!(v["state"], "READY");
    assert_eq!(v["policyViolation"], false);
    assert!(v["attempts"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["reasonCode"].is_string(), "{v}");
    assert_eq!(
        s.tenant.state_of("agent-0001").await,
        s.tenant.set_as("READY")
    );

    // With a reference (kept in the outcome and the audit record), and the state before.
    let r = api
        .set_state(
            &a1,
            &json!({"state": "NOT_READY", "reference": "ticket-42"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let v = r.json();
    tally.add(&v);
    assert_eq!(v["previousState"], "READY", "{v}");
    assert_eq!(v["reference"], "ticket-42", "{v}");
    assert_eq!(
        s.tenant.state_of("agent-0001").await,
        s.tenant.set_as("NOT_READY")
    );

    // Refused by policy: 409, nothing sent.
    let r = api.set_state(&brk, &json!({"state": "READY"})).await;
    assert_eq!(r.status, 409, "{r}");
    let v = r.json();
    tally.add(&v);
    assert_eq!(v["success"], false);
    assert_eq!(v["code"], "MANDATORY_BREAK_VIOLATION", "{v}");
    assert_eq!(v["policyViolation"], true);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(s.tenant.state_of("brk").await, Value::Null);

    // Invalid: 422, nothing sent.
    let r = api.set_state(&a2, &json!({"state": "ready"})).await;
    assert_eq!(r.status, 422, "{r}");
    let v = r.json();
    tally.add(&v);
    assert_eq!(v["code"], "INVALID_STATE", "{v}");
    assert_eq!(v["policyViolation"], false);
    assert_eq!(s.tenant.state_of("agent-0002").await, Value::Null);

    // Deferred: 202 with the deferral, shown on the agent, cancelled once.
    let r = api
        .set_state(&held, &json!({"state": "READY", "defer": true}))
        .await;
    assert_eq!(r.status, 202, "{r}");
    let v = r.json();
    assert_eq!(v["code"], "DEFERRED", "{v}");
    assert_eq!(v["success"], false);
    assert!(
        v["deferralId"].as_str().is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    let until = v["untilMs"].as_u64().expect("untilMs");
    assert!(until >= break_end, "held until the break ends: {v}");
    assert!(
        v["deadlineMs"].as_u64().expect("deadlineMs") >= until,
        "{v}"
    );
    // An agent whose only news is the held change is known, with the deferral and (seed) no state yet.
    let r = api.get(&format!("/v1/agents/{held}")).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["deferred"]["deferralId"], v["deferralId"], "{r}");

    let r = api.set_state(&held2, &json!({"state": "NOT_READY"})).await;
    assert_eq!(r.status, 200, "{r}");
    tally.add(&r.json());
    let r = api
        .set_state(
            &held2,
            &json!({"state": "READY", "defer": true, "reference": "after-break"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r}");
    let deferral = r.json()["deferralId"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["reference"], "after-break");
    let r = api.get(&format!("/v1/agents/{held2}")).await;
    assert_eq!(r.status, 200, "{r}");
    let view = r.json();
    assert_eq!(view["userId"], held2.as_str());
    assert_eq!(view["current"]["state"], "NOT_READY", "{view}");
    assert_eq!(view["deferred"]["deferralId"], deferral.as_str(), "{view}");
    assert!(
        view["deferred"]["untilMs"].as_u64() >= Some(break_end),
        "{view}"
    );
    let r = api.delete(&format!("/v1/agents/{held2}/deferred")).await;
    assert_eq!(r.status, 200, "{r}");
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["code"], "DEFERRAL_CANCELLED");
    assert_eq!(v["userId"], held2.as_str());
    let r = api.delete(&format!("/v1/agents/{held2}/deferred")).await;
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), "NOT_FOUND");
    let r = api.get(&format!("/v1/agents/{held2}")).await;
    assert_eq!(r.json()["deferred"], Value::Null, "{r}");
    let r = api.delete(&format!("/v1/agents/{held}/deferred")).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(s.tenant.state_of("held").await, Value::Null);
    assert_eq!(
        s.tenant.state_of("held2").await,
        s.tenant.set_as("NOT_READY")
    );

    // A JSON batch, streamed as NDJSON: one outcome per row in input order; a malformed row fails alone.
    let batch = json!({"transitions": [
        {"userId": a3, "state": "READY"},
        {"state": "READY"},
        {"userId": a4, "state": "PAUSED", "reference": "b-2"},
        {"userId": brk, "state": "READY"},
        {"userId": a3, "state": "NOT_READY"},
        {"userId": a5, "state": "idle"},
    ]});
    let r = api.post_json("/v1/transitions", &batch).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let rows = r.json_lines();
    for o in &rows {
        tally.add(o);
    }
    let seen: Vec<(u64, u64, &str)> = rows
        .iter()
        .map(|o| {
            (
                o["row"].as_u64().unwrap(),
                o["status"].as_u64().unwrap(),
                o["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, 200, "OK"),
            (1, 400, "MALFORMED_ROW"),
            (2, 200, "OK"),
            (3, 409, "MANDATORY_BREAK_VIOLATION"),
            (4, 200, "OK"),
            (5, 422, "INVALID_STATE"),
        ],
        "{r}"
    );
    assert_eq!(rows[2]["reference"], "b-2");
    assert_eq!(rows[4]["previousState"], "READY", "row 4 after row 0");
    assert_eq!(rows[3]["policyViolation"], true);
    assert_eq!(
        s.tenant.state_of("agent-0003").await,
        s.tenant.set_as("NOT_READY")
    );
    assert_eq!(
        s.tenant.state_of("agent-0004").await,
        s.tenant.set_as("PAUSED")
    );
    assert_eq!(s.tenant.state_of("agent-0005").await, Value::Null);

    // NDJSON rows in, one JSON answer out (`?format=json`); blank lines are not rows.
    let ndjson = format!(
        "{}\n{{not json\n\n{}\n",
        json!({"userId": a5, "state": "READY"}),
        json!({"userId": a6, "state": "IDLE"})
    );
    let r = api
        .post_raw(
            "/v1/transitions?format=json",
            "application/x-ndjson",
            ndjson.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let results = r.json()["results"].as_array().expect("results").clone();
    for o in &results {
        tally.add(o);
    }
    let seen: Vec<(u64, &str)> = results
        .iter()
        .map(|o| (o["row"].as_u64().unwrap(), o["code"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(0, "OK"), (1, "MALFORMED_ROW"), (2, "OK")], "{r}");
    assert_eq!(results[2]["userId"], a6.as_str());

    // `Accept: application/json` is the same as `?format=json`.
    let r = api
        .send(
            api.request(reqwest::Method::POST, "/v1/transitions")
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(json!({"transitions": [{"userId": a6, "state": "NOT_READY"}]}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let results = r.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 1, "{r}");
    tally.add(&results[0]);
    assert_eq!(results[0]["row"], 0);
    assert_eq!(results[0]["code"], "OK");
    assert_eq!(
        s.tenant.state_of("agent-0005").await,
        s.tenant.set_as("READY")
    );
    assert_eq!(
        s.tenant.state_of("agent-0006").await,
        s.tenant.set_as("NOT_READY")
    );

    // The agents changed, as the engine knows them.
    let states = agent_states(&api).await;
    let want: BTreeMap<String, String> = [
        (&a1, "NOT_READY"),
        (&a3, "NOT_READY"),
        (&a4, "PAUSED"),
        (&a5, "READY"),
        (&a6, "NOT_READY"),
        (&held2, "NOT_READY"),
    ]
    .into_iter()
    .map(|(a, st)| (a.clone(), st.to_owned()))
    .collect();
    for (agent, state) in &want {
        assert_eq!(states.get(agent), Some(state), "{agent}: {states:?}");
    }
    if profile == Profile::Seed {
        // Nothing observed on seed: exactly the agents changed.
        assert_eq!(states, want);
    }
    // (On cxone the observer sees the whole tenant: agents never changed here show as observed.)
    for untouched in [&a2, &brk, &held] {
        assert!(
            profile == Profile::Cxone || !states.contains_key(untouched),
            "{untouched}: {states:?}"
        );
    }

    // One agent: current state, history, metrics.
    let r = api.get(&format!("/v1/agents/{a3}")).await;
    assert_eq!(r.status, 200, "{r}");
    let view = r.json();
    assert_eq!(view["userId"], a3.as_str());
    assert_eq!(view["current"]["state"], "NOT_READY", "{view}");
    let history: Vec<&str> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert!(history.ends_with(&["READY", "NOT_READY"]), "{view}");
    assert_eq!(view["metrics"]["userId"], a3.as_str(), "{view}");
    assert_eq!(view["metrics"]["currentState"], "NOT_READY", "{view}");
    assert_eq!(view["deferred"], Value::Null);
    let r = api.get("/v1/agents/no-such-agent").await;
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), "NOT_FOUND");
    assert_eq!(r.json()["success"], false);

    // The report counts what was done.
    let (applied, refused, invalid) = (tally.of(200), tally.of(409), tally.of(422));
    assert_eq!((applied, refused, invalid), (9, 2, 2), "{tally:?}");
    let r = api.get("/v1/report").await;
    assert_eq!(r.status, 200, "{r}");
    let report = r.json();
    assert_eq!(report["successCount"], applied, "{report}");
    assert_eq!(report["violationCount"], refused, "{report}");
    assert_eq!(
        report["violationsByRule"]["MANDATORY_BREAK_VIOLATION"], refused,
        "{report}"
    );
    assert_eq!(
        report["failuresByCode"]["INVALID_STATE"], invalid,
        "{report}"
    );
    assert_eq!(report["failureCount"], refused + invalid, "{report}");
    assert_eq!(
        report["totalTransitions"],
        applied + refused + invalid,
        "{report}"
    );
    assert_eq!(report["unknownOutcomeCount"], 0, "{report}");
    assert_eq!(report["deferrals"]["held"], 2, "{report}");
    assert_eq!(report["deferrals"]["cancelled"], 2, "{report}");
    assert_eq!(report["perState"]["PAUSED"]["successes"], 1, "{report}");

    // The same report rebuilt from the log over a window that holds everything; none over a later one.
    let now = cxone_agent_state::now_ms();
    let window = |from: u64, to: u64| {
        format!(
            "/v1/report?from={}&to={}",
            cxone_agent_state::core::iso8601(from),
            cxone_agent_state::core::iso8601(to)
        )
    };
    let r = api
        .get(&window(now - support::HOUR, now + support::HOUR))
        .await;
    assert_eq!(r.status, 200, "{r}");
    let rebuilt = r.json();
    for field in [
        "totalTransitions",
        "successCount",
        "failureCount",
        "violationCount",
    ] {
        assert_eq!(rebuilt[field], report[field], "{field}: {rebuilt}");
    }
    let r = api
        .get(&window(now + support::HOUR, now + 2 * support::HOUR))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["totalTransitions"], 0, "{r}");
    let r = api.get("/v1/report?from=yesterday").await;
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), "INVALID_QUERY");
    let r = api.get("/v1/report?format=xml").await;
    assert_eq!(r.status, 400, "{r}");

    // CSV.
    let r = api.get("/v1/report?format=csv").await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv")));
    assert!(r.text.starts_with("section,key,value\n"), "{r}");
    let lines: BTreeSet<&str> = r.text.lines().collect();
    let total = format!("summary,totalTransitions,{}", applied + refused + invalid);
    let successes = format!("summary,successCount,{applied}");
    assert!(lines.contains(total.as_str()), "{r}");
    assert!(lines.contains(successes.as_str()), "{r}");

    // Every change is audited as the service's, by the key's name.
    let records = change_records(&s.audit);
    assert!(!records.is_empty());
    for rec in &records {
        assert_eq!(rec["source"], "service", "{rec}");
        assert_eq!(rec["actor"]["id"], "writer", "{rec}");
        assert_eq!(rec["actor"]["role"], "system", "{rec}");
    }
    assert!(
        records.iter().any(|r| r["reference"] == "ticket-42"),
        "the reference is audited"
    );

    let (status, stderr) = s.svc.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let verify = audit_verify(&s.audit).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
    drop(s.dir);
}

// ---------------------------------------------------------------------------------------------------------
// 2. API keys
// ---------------------------------------------------------------------------------------------------------

/// Every `/v1` route, with a body a key would make acceptable.
fn v1_routes(agent: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/v1/agents".to_owned(), None),
        (Method::GET, format!("/v1/agents/{agent}"), None),
        (
            Method::POST,
            format!("/v1/agents/{agent}/state"),
            Some(json!({"state": "READY"})),
        ),
        (Method::DELETE, format!("/v1/agents/{agent}/deferred"), None),
        (
            Method::POST,
            "/v1/transitions".to_owned(),
            Some(json!({"transitions": [{"userId": agent, "state": "READY"}]})),
        ),
        (Method::GET, "/v1/report".to_owned(), None),
        (Method::GET, "/v1/events".to_owned(), None),
    ]
}

async fn call(
    api: &Api,
    method: &reqwest::Method,
    path: &str,
    body: &Option<Value>,
    auth: Option<&str>,
) -> Answer {
    let mut request = api.request(method.clone(), path);
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    if let Some(b) = body {
        request = request
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    api.send(request).await
}

async fn every_v1_route_refuses_a_missing_or_wrong_key_and_counts_it(profile: Profile) {
    let s = Scene::start(profile, 2, &[]).await;
    let agent = s.agent(1);
    let anonymous = s.svc.api(None);
    let (stranger, _) = new_key("stranger", false).await;
    let presented = [
        None,
        Some(format!("Bearer {stranger}")),
        Some(format!("Bearer {}x", s.keys.rw)),
        // The right key under another scheme.
        Some(format!("Basic {}", s.keys.rw)),
        Some("Bearer".to_owned()),
    ];
    let mut refused = 0;
    for (method, path, body) in v1_routes(&agent) {
        for auth in &presented {
            let r = call(&anonymous, &method, &path, &body, auth.as_deref()).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {r}");
            let v = r.json();
            assert_eq!(v["success"], false);
            assert_eq!(v["code"], "UNAUTHORIZED", "{method} {path}: {r}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");
            // The key is never echoed back.
            assert!(!r.text.contains(&s.keys.rw) && !r.text.contains(&stranger));
            refused += 1;
        }
    }
    // Nothing reached the engine.
    assert_eq!(s.tenant.state_of("agent-0001").await, Value::Null);
    assert!(change_records(&s.audit).is_empty());
    assert!(read_kind(&s.audit, "intent").is_empty());

    // The operational routes answer without a key.
    let r = anonymous.get("/healthz").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["status"], "ok");
    s.svc.ready().await;
    let r = anonymous.get("/openapi.json").await;
    assert_eq!(r.status, 200, "{r}");
    let m = anonymous.metrics().await;
    assert_eq!(
        m.get("cxone_agent_state_http_unauthorized_total", &[]),
        Some(refused as f64),
        "every refusal is counted"
    );
    assert_eq!(
        m.sum(
            "cxone_agent_state_http_requests_total",
            &[("status", "401")]
        ),
        refused as f64
    );
    assert_eq!(
        m.sum(
            "cxone_agent_state_http_requests_total",
            &[("route", "/v1/events"), ("status", "401")]
        ),
        presented.len() as f64
    );

    // The right key passes (and is not counted as refused).
    let r = s.rw().get("/v1/agents").await;
    assert_eq!(r.status, 200, "{r}");
    let m = anonymous.metrics().await;
    assert_eq!(
        m.get("cxone_agent_state_http_unauthorized_total", &[]),
        Some(refused as f64)
    );
    let (status, stderr) = s.svc.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    for key in [&s.keys.rw, &s.keys.ro, &stranger] {
        assert!(!stderr.contains(key.as_str()), "a key in the logs");
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3. A read-only key
// ---------------------------------------------------------------------------------------------------------

async fn a_read_only_key_reads_but_changes_nothing(profile: Profile) {
    let mut s = Scene::start(profile, 2, &[]).await;
    s.tenant
        .add_agent(support::on_break_until(
            "held",
            cxone_agent_state::now_ms() + 600_000,
        ))
        .await;
    let (rw, ro) = (s.rw(), s.ro());
    let (a1, held) = (s.agent(1), s.tenant.id("held"));
    assert_eq!(
        rw.set_state(&a1, &json!({"state": "READY"})).await.status,
        200
    );
    assert_eq!(
        rw.set_state(&held, &json!({"state": "NOT_READY"}))
            .await
            .status,
        200
    );
    let r = rw
        .set_state(&held, &json!({"state": "READY", "defer": true}))
        .await;
    assert_eq!(r.status, 202, "{r}");

    // Reading works.
    let states = agent_states(&ro).await;
    assert_eq!(
        states.get(&a1).map(String::as_str),
        Some("READY"),
        "{states:?}"
    );
    let r = ro.get(&format!("/v1/agents/{held}")).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.json()["deferred"]["deferralId"].is_string(), "{r}");
    let r = ro.get("/v1/report").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["successCount"], 2, "{r}");
    let r = ro.get("/v1/report?format=csv").await;
    assert_eq!(r.status, 200, "{r}");
    let first = change_records(&s.audit)[0]["seq"].as_u64().unwrap();
    let mut events = Sse::open(&ro, "/v1/events", Some(&first.to_string())).await;
    let e = events
        .next(Duration::from_secs(5))
        .await
        .expect("the backlog after the first record");
    assert_eq!(e.event.as_deref(), Some("audit"));
    assert!(e.id.unwrap().parse::<u64>().unwrap() > first);
    drop(events);

    // Changing does not.
    let counts = |audit: &Path| {
        (
            change_records(audit).len(),
            read_kind(audit, "intent").len(),
        )
    };
    let before = counts(&s.audit);
    let refusals = [
        ro.set_state(&a1, &json!({"state": "NOT_READY"})).await,
        ro.post_json(
            "/v1/transitions",
            &json!({"transitions": [{"userId": a1, "state": "PAUSED"}]}),
        )
        .await,
        ro.post_raw(
            "/v1/transitions",
            "application/x-ndjson",
            format!("{}\n", json!({"userId": a1, "state": "IDLE"})).into_bytes(),
        )
        .await,
        ro.delete(&format!("/v1/agents/{held}/deferred")).await,
    ];
    for r in &refusals {
        assert_eq!(r.status, 403, "{r}");
        assert_eq!(r.code(), "READ_ONLY_KEY", "{r}");
        assert_eq!(r.json()["success"], false);
    }
    assert_eq!(
        s.tenant.state_of("agent-0001").await,
        s.tenant.set_as("READY")
    );
    assert_eq!(
        s.tenant.state_of("held").await,
        s.tenant.set_as("NOT_READY")
    );
    assert_eq!(counts(&s.audit), before, "nothing new in the log");
    // The deferred change is still held: the read-write key cancels it.
    let r = rw.get(&format!("/v1/agents/{held}")).await;
    assert!(r.json()["deferred"]["deferralId"].is_string(), "{r}");
    let r = rw.delete(&format!("/v1/agents/{held}/deferred")).await;
    assert_eq!(r.status, 200, "{r}");

    let m = ro.metrics().await;
    assert_eq!(
        m.sum(
            "cxone_agent_state_http_requests_total",
            &[("status", "403")]
        ),
        refusals.len() as f64
    );
    assert_eq!(
        m.get("cxone_agent_state_http_unauthorized_total", &[]),
        Some(0.0),
        "a read-only key is not an unauthorized one"
    );
}

// ---------------------------------------------------------------------------------------------------------
// 4. Limits
// ---------------------------------------------------------------------------------------------------------

/// Writes `head` on a fresh connection to the service and reads until the service answers and closes, or
/// closes: what it sent back, and how long that took.
async fn slow_client(base: &str, head: &str) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the service held a stalled client for 10 s");
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_engine_answers_503_with_retry_after_and_a_slow_client_holds_nothing() {
    let s = Scene::start(
        Profile::Seed,
        3,
        &["--max-open-changes", "1", "--read-timeout-ms", "300"],
    )
    .await;
    let api = s.rw();
    let (a1, a2) = (s.agent(1), s.agent(2));
    // agent-0001's change is applied at once and answered three seconds later: it holds the one open slot.
    let rule = json!({"endpoint": "setState", "userId": "agent-0001",
                      "fault": {"kind": "slow", "extraMs": 3000}, "times": 1});
    assert_eq!(
        admin_post(&s.tenant.base_url, "/admin/faults", &rule).await["scripted"],
        1
    );
    let held = {
        let api = s.rw();
        let a1 = a1.clone();
        tokio::spawn(async move { api.set_state(&a1, &json!({"state": "READY"})).await })
    };
    let until = Instant::now() + Duration::from_secs(10);
    while s.tenant.state_of("agent-0001").await != s.tenant.set_as("READY") {
        assert!(
            Instant::now() < until,
            "the first change never reached the tenant"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The engine is full: a change answers 503 BUSY with Retry-After, and so does a batch row.
    let r = api.set_state(&a2, &json!({"state": "READY"})).await;
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.code(), "BUSY");
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    let r = api
        .post_json(
            "/v1/transitions?format=json",
            &json!({"transitions": [{"userId": a2, "state": "READY"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["results"][0]["status"], 503, "{r}");
    assert_eq!(r.json()["results"][0]["code"], "BUSY", "{r}");
    assert_eq!(
        s.tenant.state_of("agent-0002").await,
        Value::Null,
        "nothing sent"
    );

    // A body that stops coming is answered 408 at the read timeout; a head that stops coming gets its
    // connection closed. Neither holds anything: the service answers others meanwhile.
    let key = &s.keys.rw;
    let (started, stalled_body) = (Instant::now(), {
        let head = format!(
            "POST /v1/agents/{a2}/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"state\""
        );
        let base = s.svc.base.clone();
        tokio::spawn(async move { slow_client(&base, &head).await })
    });
    let stalled_head = {
        let base = s.svc.base.clone();
        tokio::spawn(async move { slow_client(&base, "GET /healthz HTTP/1.1\r\nHost:").await })
    };
    let r = api.get("/healthz").await;
    assert_eq!(r.status, 200, "answered while two clients stall");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let (answer, took) = stalled_body.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let (answer, took) = stalled_head.await.unwrap();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "closed at the read timeout: {took:?}"
    );
    assert_eq!(
        s.tenant.state_of("agent-0002").await,
        Value::Null,
        "the stalled change was never taken"
    );

    // The held change ends; room again.
    let r = held.await.unwrap();
    assert_eq!(r.status, 200, "{r}");
    let r = api.set_state(&a2, &json!({"state": "READY"})).await;
    assert_eq!(r.status, 200, "{r}");
    let m = api.metrics().await;
    let labels = [
        ("route", "/v1/agents/{id}/state"),
        ("method", "POST"),
        ("status", "503"),
    ];
    assert_eq!(
        m.get(&format!("{P}http_requests_total"), &labels),
        Some(1.0)
    );
    let (status, _) = s.svc.stop().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_batches_over_the_limits_and_bad_json_are_refused_and_nothing_is_done() {
    let s = Scene::start(
        Profile::Seed,
        6,
        &["--max-body-bytes", "2048", "--max-batch", "5"],
    )
    .await;
    let api = s.rw();
    let a1 = s.agent(1);
    let rows = |n: usize| -> Vec<Value> {
        (1..=n)
            .map(|i| json!({"userId": s.agent(i), "state": "READY"}))
            .collect()
    };

    // Too large a body, on both routes that take one.
    let big = json!({"state": "READY", "reference": "x".repeat(3000)});
    let r = api.set_state(&a1, &big).await;
    assert_eq!(r.status, 413, "{r}");
    assert_eq!(r.code(), "BODY_TOO_LARGE");
    let r = api
        .post_json(
            "/v1/transitions",
            &json!({"transitions": rows(1), "padding": "x".repeat(3000)}),
        )
        .await;
    assert_eq!(r.status, 413, "{r}");
    assert_eq!(r.code(), "BODY_TOO_LARGE");

    // Too many rows, JSON or NDJSON: nothing is done.
    let r = api
        .post_json("/v1/transitions", &json!({"transitions": rows(6)}))
        .await;
    assert_eq!(r.status, 413, "{r}");
    assert_eq!(r.code(), "BATCH_TOO_LARGE");
    let ndjson: String = rows(6).iter().map(|r| format!("{r}\n")).collect();
    let r = api
        .post_raw(
            "/v1/transitions",
            "application/x-ndjson",
            ndjson.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 413, "{r}");
    assert_eq!(r.code(), "BATCH_TOO_LARGE");

    // Not JSON, or not the JSON the route takes.
    let bad: [(&str, &str, &[u8]); 7] = [
        ("/v1/agents/X/state", "application/json", b"{\"state\":"),
        ("/v1/agents/X/state", "application/json", b"[]"),
        (
            "/v1/agents/X/state",
            "application/json",
            b"{\"state\":\"READY\",\"bogus\":1}",
        ),
        ("/v1/agents/X/state", "application/json", b""),
        ("/v1/transitions", "application/json", b"not json"),
        ("/v1/transitions", "application/json", b"{\"rows\":[]}"),
        ("/v1/transitions", "application/x-ndjson", b"\xff\xfe\n"),
    ];
    for (path, content_type, body) in bad {
        let path = path.replace('X', &a1);
        let r = api.post_raw(&path, content_type, body.to_vec()).await;
        assert_eq!(r.status, 400, "{path} {body:?}: {r}");
        assert_eq!(r.code(), "INVALID_JSON", "{path} {body:?}: {r}");
    }

    // Nothing was audited, journaled or sent.
    assert!(
        read_jsonl(&s.audit).is_empty(),
        "{:?}",
        read_jsonl(&s.audit)
    );
    let accepted = admin_get(&s.tenant.base_url, "/admin/accepted-changes").await;
    assert_eq!(accepted.as_array().map(Vec::len), Some(0), "{accepted}");
    assert_eq!(s.tenant.state_of("agent-0001").await, Value::Null);

    // A batch at the limit goes through.
    let r = api
        .post_json(
            "/v1/transitions?format=json",
            &json!({"transitions": rows(5)}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|o| o["status"] == 200), "{r}");
    assert_eq!(change_records(&s.audit).len(), 5);

    let m = api.metrics().await;
    assert_eq!(
        m.sum(
            "cxone_agent_state_http_requests_total",
            &[("route", "/v1/transitions"), ("status", "413")]
        ),
        3.0
    );
}

// ---------------------------------------------------------------------------------------------------------
// 5. Metrics
// ---------------------------------------------------------------------------------------------------------

/// The metric families the service exports (without the `cxone_agent_state_` prefix) and their types.
const FAMILIES: &[(&str, &str)] = &[
    ("transitions", "counter"),
    ("violations_blocked", "counter"),
    ("deferrals", "counter"),
    ("api_requests", "counter"),
    ("token_refreshes", "counter"),
    ("transition_latency_seconds", "histogram"),
    ("pacer_wait_seconds", "gauge"),
    ("outbox_depth", "gauge"),
    ("outbox_oldest_age_seconds", "gauge"),
    ("outbox_dead_letters", "gauge"),
    ("open_changes", "gauge"),
    ("log_fsync_seconds", "histogram"),
    ("observer_lag_seconds", "gauge"),
    ("http_requests", "counter"),
    ("http_request_duration_seconds", "histogram"),
    ("http_unauthorized", "counter"),
    ("events_missed", "counter"),
];

const P: &str = "cxone_agent_state_";

async fn metrics_parse_as_openmetrics_and_count_what_was_done(profile: Profile) {
    let s = Scene::start(profile, 4, &[]).await;
    let api = s.rw();
    let brk = s.tenant.id("brk");
    let mut tally = Tally::default();
    let mut state_route = Tally::default();
    for (agent, state) in [
        (s.agent(1), "READY"),
        (s.agent(2), "NOT_READY"),
        (s.agent(1), "PAUSED"),
        (brk.clone(), "READY"),
        (brk.clone(), "READY"),
        (s.agent(3), "not-a-state"),
    ] {
        let r = api.set_state(&agent, &json!({ "state": state })).await;
        state_route.add(&json!({"status": r.status}));
        tally.add(&r.json());
    }
    let r = api
        .post_json(
            "/v1/transitions?format=json",
            &json!({"transitions": [
                {"userId": s.agent(3), "state": "READY"},
                {"userId": brk, "state": "READY"},
                {"userId": s.agent(4), "state": "IDLE"},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    for o in r.json()["results"].as_array().unwrap() {
        tally.add(o);
    }
    let (applied, refused) = (tally.of(200), tally.of(409));
    assert_eq!((applied, refused, tally.of(422)), (5, 3, 1), "{tally:?}");

    // The counters are fed by the engine's events: wait for the last one.
    let end = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = api.metrics().await;
        let labels = [("result", "applied"), ("code", "OK")];
        if m.get(&format!("{P}transitions_total"), &labels) == Some(applied as f64)
            || Instant::now() > end
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = api.get("/metrics").await;
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );
    assert!(r.text.ends_with("# EOF\n"));
    for (family, kind) in FAMILIES {
        assert_eq!(
            m.types.get(&format!("{P}{family}")).map(String::as_str),
            Some(*kind),
            "{family}: {:?}",
            m.types
        );
    }

    let n = |name: &str, labels: &[(&str, &str)]| m.get(&format!("{P}{name}"), labels);
    assert_eq!(
        n(
            "transitions_total",
            &[("result", "applied"), ("code", "OK")]
        ),
        Some(applied as f64),
        "one per 200"
    );
    assert_eq!(
        n(
            "transitions_total",
            &[("result", "failed"), ("code", "MANDATORY_BREAK_VIOLATION")]
        ),
        Some(refused as f64)
    );
    assert_eq!(
        n(
            "transitions_total",
            &[("result", "failed"), ("code", "INVALID_STATE")]
        ),
        Some(1.0)
    );
    assert_eq!(
        n(
            "violations_blocked_total",
            &[("rule", "MANDATORY_BREAK_VIOLATION")]
        ),
        Some(refused as f64),
        "one per refusal"
    );
    assert_eq!(
        n("transition_latency_seconds_count", &[]),
        Some(applied as f64)
    );
    let state_route_count = |status: &str| {
        n(
            "http_requests_total",
            &[
                ("route", "/v1/agents/{id}/state"),
                ("method", "POST"),
                ("status", status),
            ],
        )
    };
    assert_eq!(state_route_count("200"), Some(state_route.of(200) as f64));
    assert_eq!(state_route_count("409"), Some(state_route.of(409) as f64));
    assert_eq!(state_route_count("422"), Some(state_route.of(422) as f64));
    assert_eq!(
        n(
            "http_requests_total",
            &[
                ("route", "/v1/transitions"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );
    assert!(n("http_request_duration_seconds_count", &[]).unwrap() >= 7.0);
    assert_eq!(n("http_unauthorized_total", &[]), Some(0.0));
    assert_eq!(n("events_missed_total", &[]), Some(0.0));
    assert_eq!(n("open_changes", &[]), Some(0.0));
    assert_eq!(n("outbox_depth", &[]), Some(0.0));
    assert!(n("log_fsync_seconds_count", &[]).unwrap() >= 1.0);
    // Requests to the tenant, labelled with its host.
    let host = s.tenant.base_url.trim_start_matches("http://");
    let to_tenant = m.sum(
        &format!("{P}api_requests_total"),
        &[("target", "api"), ("host", host), ("status", "200")],
    );
    assert!(
        to_tenant >= applied as f64,
        "at least one request per applied change: {to_tenant}"
    );
    assert!(m.sum(&format!("{P}token_refreshes_total"), &[("result", "ok")]) >= 1.0);
    // Every sample's family is one of the service's.
    for sample in &m.samples {
        assert!(sample.family.starts_with(P), "{sample:?}");
    }
}

#[test]
fn the_metrics_parser_takes_good_text_and_refuses_bad() {
    let good = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{k=\"v\\\"q\",j=\"2\"} 3\n\
                # TYPE h histogram\n# UNIT h seconds\nh_sum 1.5\nh_count 2\nh_bucket{le=\"1\"} 1\n\
                h_bucket{le=\"+Inf\"} 2\n# TYPE g gauge\ng 0.5\n# EOF\n";
    let e = parse_metrics(good).unwrap();
    assert_eq!(e.get("a_x_total", &[("k", "v\"q"), ("j", "2")]), Some(3.0));
    assert_eq!(e.sum("h_bucket", &[]), 3.0);
    assert_eq!(e.get("g", &[]), Some(0.5));
    assert_eq!(e.samples[0].family, "a_x");
    for bad in [
        "# TYPE a counter\na_total 1\n",
        "a_total 1\n# EOF\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a counter\na_total{k=v} 1\n# EOF\n",
        "# TYPE a counter\na_total one\n# EOF\n",
        "# TYPE a counter\na_total 1\n\n# EOF\n",
        "# TYPE h histogram\nh_count 2\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n# EOF\n",
        "# TYPE h histogram\nh_count 2\nh_bucket{le=\"+Inf\"} 1\n# EOF\n",
    ] {
        assert!(parse_metrics(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// 6. OpenAPI
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path()).await;
    // The document needs no tenant: the service starts before it reaches one.
    let conn = connect("http://127.0.0.1:9", &dir.path().join("audit.jsonl"));
    let svc = Service::start(&keys.path, &conn, &[]).await;
    let r = svc.api(None).get("/openapi.json").await;
    assert_eq!(r.status, 200, "{r}");
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"]
        .as_str()
        .is_some_and(|t| !t.trim().is_empty()));
    assert!(doc["info"]["version"].is_string());
    let methods = ["get", "post", "put", "delete", "patch", "head", "options"];
    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            listed.insert((path.clone(), method.to_uppercase()));
            let responses = op["responses"].as_object();
            assert!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            for (code, response) in responses.unwrap() {
                assert!(
                    code == "default" || (code.len() == 3 && code.parse::<u16>().is_ok()),
                    "{method} {path}: {code}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {code}"
                );
            }
            if path.starts_with("/v1/") {
                let secured = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|req| req.get("api_key").is_some()));
                assert!(secured, "{method} {path} names its key");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} documents its 401"
                );
            }
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("/v1/agents/{id}/state", "POST"),
        ("/v1/transitions", "POST"),
        ("/v1/agents", "GET"),
        ("/v1/agents/{id}", "GET"),
        ("/v1/agents/{id}/deferred", "DELETE"),
        ("/v1/report", "GET"),
        ("/v1/events", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/openapi.json", "GET"),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(listed, want);
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(
        scheme["scheme"].as_str().map(str::to_lowercase),
        Some("bearer".into())
    );
    let (status, stderr) = svc.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

// ---------------------------------------------------------------------------------------------------------
// 7. Server-sent events
// ---------------------------------------------------------------------------------------------------------

/// The audit events of `sse` until one satisfies `done` (10 s at most), heartbeats checked and skipped.
async fn audit_events_until(sse: &mut Sse, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Some(e) = sse.next(left).await else {
            panic!("the stream ended or went quiet; got {out:?}");
        };
        if e.event.as_deref() != Some("audit") {
            assert_eq!(e.event.as_deref(), Some("heartbeat"), "{e:?}");
            assert_eq!(e.id, None, "heartbeats carry no id");
            continue;
        }
        let record: Value = serde_json::from_str(&e.data).expect("the data is an audit record");
        assert_eq!(
            e.id.as_deref(),
            Some(record["seq"].to_string().as_str()),
            "the id is the record's seq"
        );
        let stop = done(&record);
        out.push(record);
        if stop {
            return out;
        }
    }
}

fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

async fn events_resume_after_last_event_id_then_arrive_live(profile: Profile) {
    let s = Scene::start(profile, 5, &[]).await;
    let api = s.rw();
    let changes = [
        (s.agent(1), "READY"),
        (s.agent(2), "NOT_READY"),
        (s.agent(3), "PAUSED"),
    ];
    for (agent, state) in &changes {
        let r = api.set_state(agent, &json!({ "state": state })).await;
        assert_eq!(r.status, 200, "{r}");
    }
    let logged = read_audit(&s.audit);
    let seq_of = |agent: &str, state: &str| {
        logged
            .iter()
            .find(|r| r["userId"] == agent && r["newState"] == state && r["success"] == true)
            .unwrap_or_else(|| panic!("no record of {agent} {state}: {logged:?}"))["seq"]
            .as_u64()
            .unwrap()
    };
    let first = seq_of(&changes[0].0, "READY");
    let third = seq_of(&changes[2].0, "PAUSED");

    // Resumed after the first: exactly the later records, in order, once each.
    let mut sse = Sse::open(&api, "/v1/events", Some(&first.to_string())).await;
    let backlog = audit_events_until(&mut sse, |r| r["seq"].as_u64() >= Some(third)).await;
    let got = seqs(&backlog);
    let want: Vec<u64> = (first + 1..=third).collect();
    assert_eq!(got, want, "the records after {first}");
    let by_seq: BTreeMap<u64, &Value> = logged
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    for r in &backlog {
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(by_seq.get(&seq).copied(), Some(r), "as logged");
    }
    assert!(backlog
        .iter()
        .any(|r| r["userId"] == changes[1].0.as_str() && r["newState"] == "NOT_READY"));

    // A change made now arrives live, next in line: nothing skipped, nothing twice.
    let a4 = s.agent(4);
    let r = api.set_state(&a4, &json!({"state": "IDLE"})).await;
    assert_eq!(r.status, 200, "{r}");
    let live = audit_events_until(&mut sse, |r| r["userId"] == a4.as_str()).await;
    let got = seqs(&live);
    let want: Vec<u64> = (third + 1..third + 1 + got.len() as u64).collect();
    assert_eq!(got, want, "consecutive after the backlog");
    let arrived = live.last().unwrap();
    assert_eq!(arrived["newState"], "IDLE");
    assert_eq!(arrived["success"], true);
    let logged = read_audit(&s.audit);
    let in_log = logged
        .iter()
        .find(|r| r["seq"] == arrived["seq"])
        .expect("in the log");
    assert_eq!(in_log["hash"], arrived["hash"], "the same record");

    // A stream opened without Last-Event-ID starts at the live edge: no backlog.
    let mut fresh = Sse::open(&api, "/v1/events", None).await;
    // The stream's head is sent once it is subscribed: a change made now is live for it.
    let a5 = s.agent(5);
    let r = api.set_state(&a5, &json!({"state": "READY"})).await;
    assert_eq!(r.status, 200, "{r}");
    let seen = audit_events_until(&mut fresh, |r| r["userId"] == a5.as_str()).await;
    assert!(
        seqs(&seen)
            .iter()
            .all(|&q| q > arrived["seq"].as_u64().unwrap()),
        "no backlog: {:?}",
        seqs(&seen)
    );
    // ...and the resumed one sees it too.
    let more = audit_events_until(&mut sse, |r| r["userId"] == a5.as_str()).await;
    assert_eq!(
        more.first().unwrap()["seq"].as_u64(),
        Some(got.last().unwrap() + 1)
    );

    // Not a seq: refused.
    let r = api
        .send(
            api.request(reqwest::Method::GET, "/v1/events")
                .header("last-event-id", "yesterday"),
        )
        .await;
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), "INVALID_QUERY");

    // On SIGTERM the streams end and the service exits.
    drop((sse, fresh));
    let (status, stderr) = s.svc.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

// ---------------------------------------------------------------------------------------------------------
// 8. SIGTERM in the middle of a batch
// ---------------------------------------------------------------------------------------------------------

async fn sigterm_during_a_batch_loses_nothing(profile: Profile) {
    const ROWS: usize = 300;
    // The batch takes several seconds.
    let mut flags = support::SLOW_TENANT_300.to_vec();
    if profile == Profile::Cxone {
        flags.extend(["--profile", "cxone", "--wfm-rate-limit", "6000"]);
    }
    let sim = support::SimProcess::start(&flags);
    let mut ids = support::Agents::new(profile);
    for i in 1..=ROWS {
        ids.add(&format!("agent-{i:04}"));
    }
    if profile == Profile::Cxone {
        // Every agent in a team with unavailable codes (see `Tenant::start`).
        let plans: Vec<_> = (1..=ROWS)
            .filter(|i| i % 3 == 0)
            .map(|i| support::with_codes(support::on_shift(&format!("agent-{i:04}")), i))
            .collect();
        let body = serde_json::to_value(plans).unwrap();
        admin_post(&sim.base_url, "/admin/agents", &body).await;
    }
    let tenant = Tenant {
        sim,
        profile,
        agents: ids,
    };
    let sink = WebhookSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut conn = tenant.connect(&audit);
    set_flag(&mut conn, "--rate-limit", "4200");
    conn.extend(["--webhook-url".to_owned(), sink.url.clone()]);
    let keys = key_file(dir.path()).await;
    let svc = Service::start(&keys.path, &conn, &["--shutdown-grace-secs", "2"]).await;
    let api = svc.api(Some(&keys.rw));

    let state = |i: usize| if i % 2 == 1 { "READY" } else { "NOT_READY" };
    let rows: Vec<Value> = (1..=ROWS)
        .map(|i| json!({"userId": tenant.id(&format!("agent-{i:04}")), "state": state(i)}))
        .collect();
    let response = api
        .request(reqwest::Method::POST, "/v1/transitions")
        .header("content-type", "application/json")
        .body(json!({ "transitions": rows }).to_string())
        .send()
        .await
        .expect("the batch is taken");
    assert_eq!(response.status().as_u16(), 200);
    // The stream, read as it comes.
    let streamed = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink_rows = streamed.clone();
    let reader = tokio::spawn(async move {
        let mut response = response;
        let mut buffer = Vec::new();
        let mut ended_cleanly = false;
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    buffer.extend_from_slice(&bytes);
                    while let Some(i) = buffer.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=i).collect();
                        let v: Value = serde_json::from_slice(&line).expect("an NDJSON outcome");
                        sink_rows.lock().unwrap().push(v);
                    }
                }
                Ok(None) => {
                    ended_cleanly = true;
                    break;
                }
                Err(_) => break,
            }
        }
        ended_cleanly
    });
    // SIGTERM once a fifth of the rows are done (in the log: the stream may lag the log by a row).
    let started = Instant::now();
    while change_records(&audit).len() < ROWS / 5 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the batch made no progress:\n{}",
            svc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_signal = streamed.lock().unwrap().len();
    let signalled = started.elapsed();
    svc.signal("TERM");
    let (status, stderr) = svc.wait(Duration::from_secs(25)).await;
    let ended_cleanly = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends with the service")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let head = stderr
        .lines()
        .find_map(|l| l.strip_prefix("audit head: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no audit head printed:\n{stderr}"))
        .to_owned();
    let streamed = streamed.lock().unwrap().clone();
    eprintln!(
        "{profile:?}: {at_signal} rows streamed at SIGTERM ({signalled:?}), {} in all (stream ended cleanly: {ended_cleanly}), exit after {:?}\n{stderr}",
        streamed.len(),
        started.elapsed()
    );

    // Every row was answered, in input order, before the service exited: applied, or CLOSED (not made:
    // refused after the signal, or never sent when the grace ran out).
    assert!(ended_cleanly, "the batch's answer ended cleanly");
    assert_eq!(streamed.len(), ROWS, "every row answered");
    for (i, o) in streamed.iter().enumerate() {
        assert_eq!(o["row"], i, "{o}");
        match o["status"].as_u64() {
            Some(200) => assert_eq!(o["code"], "OK", "{o}"),
            Some(503) => assert_eq!(o["code"], "CLOSED", "{o}"),
            _ => panic!("row {i}: {o}"),
        }
    }
    let closed = streamed.iter().filter(|o| o["status"] == 503).count();
    assert!(closed > 0, "the stop cut the batch short");

    // The log verifies against the head printed at exit, with no torn line.
    let verify = run(cli(["audit", "verify", path_str(&audit), "--head", &head])).await;
    assert_eq!(verify.code(), Some(0), "{verify}");
    assert_eq!(read_jsonl(&audit).len(), count_lines(&audit));

    let records = change_records(&audit);
    let successes: Vec<&Value> = records.iter().filter(|r| r["success"] == true).collect();
    let success_keys: BTreeSet<String> = successes.iter().copied().filter_map(key_of).collect();
    assert_eq!(success_keys.len(), successes.len(), "each change once");
    // Every row the stream said was applied has its success record.
    let applied_users: BTreeSet<String> = successes
        .iter()
        .map(|r| r["userId"].as_str().unwrap().to_owned())
        .collect();
    for o in streamed.iter().filter(|o| o["status"] == 200) {
        let user = o["userId"].as_str().unwrap();
        assert!(
            successes
                .iter()
                .any(|r| r["userId"] == user && r["newState"] == o["state"]),
            "row {} applied without a success record",
            o["row"]
        );
    }
    // Every change the tenant applied has its success record, and none is recorded that it did not apply.
    let accepted: BTreeSet<String> = accepted_keys(&tenant.base_url).await.into_iter().collect();
    let missing: Vec<&String> = accepted.difference(&success_keys).collect();
    assert!(
        missing.is_empty(),
        "applied without a success record: {missing:?}"
    );
    let phantom: Vec<&String> = success_keys.difference(&accepted).collect();
    assert!(
        phantom.is_empty(),
        "recorded but never applied: {phantom:?}"
    );
    // Every change taken has its outcome: no intent without an audit record.
    let intents: BTreeSet<String> = read_kind(&audit, "intent")
        .iter()
        .filter_map(key_of)
        .collect();
    let logged: BTreeSet<String> = records.iter().filter_map(key_of).collect();
    let open: Vec<&String> = intents.difference(&logged).collect();
    assert!(open.is_empty(), "intents with no outcome: {open:?}");
    assert_eq!(
        successes.len(),
        ROWS - closed,
        "exactly the rows answered as applied"
    );
    // A row answered CLOSED was not made: the tenant holds nothing of it.
    for o in streamed.iter().filter(|o| o["status"] == 503) {
        let user = o["userId"].as_str().unwrap();
        assert!(
            !successes.iter().any(|r| r["userId"] == user),
            "row {} answered CLOSED but applied",
            o["row"]
        );
        let name = format!("agent-{:04}", o["row"].as_u64().unwrap() + 1);
        assert_eq!(tenant.state_of(&name).await, Value::Null, "{name}");
    }

    // Each applied change's webhook is in the log, and was delivered or is still waiting there.
    let webhooks: Vec<Value> = read_kind(&audit, "webhook")
        .iter()
        .map(|w| serde_json::from_str(w["body"].as_str().unwrap()).unwrap())
        .collect();
    for user in &applied_users {
        assert!(
            webhooks
                .iter()
                .any(|w| w["data"]["userId"] == user.as_str()),
            "{user}: applied with no webhook in the log"
        );
    }
    assert_eq!(webhooks.len(), successes.len(), "one webhook per change");
    let delivered: BTreeSet<String> = read_kind(&audit, "delivered")
        .iter()
        .map(|d| d["eventId"].as_str().unwrap().to_owned())
        .collect();
    let received = sink.ids();
    assert!(
        delivered.is_subset(&received),
        "delivered per the log, never received"
    );
    let undelivered = webhooks.len() - delivered.len();
    if undelivered > 0 {
        assert!(
            stderr.contains(&format!("{undelivered} webhook event(s) are still waiting")),
            "{undelivered} undelivered: {stderr}"
        );
    }
    drop(tenant);
}
