//! The engine on the `cxone` profile against the simulated tenant: discovery, the shared facts (directory,
//! schedule exports, unavailable codes) and `SetAgentState`, on a virtual clock.

use cxone_agent_state_core::cxone::acd::SetStateEncoding;
use cxone_agent_state_core::cxone::auth::ClientAuth;
use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, Harness, SimConfig, SimTenant, Window, CXONE_AREA,
    CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C, CXONE_UH_DOMAIN, SIM_BASE_URL, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    Engine, EngineConfig, ErrorCode, Event, HttpRequest, ProfileKind, Record, Secret, TransitionId,
    TransitionOptions,
};

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

fn window(start_ms: u64, end_ms: u64) -> Window {
    Window { start_ms, end_ms }
}

fn pair_with(
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut EngineConfig, &mut SimConfig),
) -> Harness {
    let mut sim = SimConfig::default();
    let mut cfg = Harness::engine_config_for_profile(&sim, 7, ProfileKind::Cxone);
    tweak(&mut cfg, &mut sim);
    let mut tenant = SimTenant::new(sim);
    for a in agents {
        tenant.add_agent(a);
    }
    let mut h = Harness::new(Engine::new(cfg).expect("valid"), tenant, T0);
    h.record_requests(true);
    h
}

fn outcome(h: &Harness, id: TransitionId) -> Result<String, (ErrorCode, String)> {
    h.events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::StateChanged(s) if s.transition_id == id => Some(Ok(s.new_state.clone())),
            Event::TransitionFailed(f) if f.transition_id == id => {
                Some(Err((f.error.code, f.error.message.clone())))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("transition {id:?} never finished"))
}

#[test]
fn a_change_discovers_reads_the_facts_once_and_sets_the_state() {
    let mut h = pair_with(
        vec![AgentPlan {
            user_id: "alice".into(),
            shifts: vec![window(T0 - HOUR, T0 + 8 * HOUR)],
            breaks: vec![window(T0 + HOUR, T0 + HOUR + 15 * MIN)],
            ..AgentPlan::default()
        }],
        |_, _| {},
    );
    let alice = h.user("alice");
    let a = h.transition(&alice, "NOT_READY");
    let b = h.transition(&alice, "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, a), Ok("NOT_READY".into()));
    assert_eq!(outcome(&h, b), Ok("READY".into()));
    let sent: Vec<String> = h
        .requests()
        .iter()
        .map(|(_, r)| format!("{:?} {}", r.method, r.url))
        .collect();
    let count = |part: &str| sent.iter().filter(|s| s.contains(part)).count();
    // Discovery once, each fact once, and one request per change.
    assert_eq!(count("openid-configuration"), 1, "{sent:#?}");
    assert_eq!(count("/auth/token"), 1, "{sent:#?}");
    assert_eq!(count("/agents?"), 1, "{sent:#?}");
    assert_eq!(count("/schedules/export"), 1, "{sent:#?}");
    assert_eq!(count("/unavailable-codes"), 1, "{sent:#?}");
    assert_eq!(count("/agents/1001/state"), 2, "{sent:#?}");
    assert_eq!(h.tenant.agent_state("alice"), Some("READY"));
}

// ---- helpers ----------------------------------------------------------------------------------------------

/// An agent on shift all day (from an hour before T0) with no breaks, in `team`.
fn on_shift(user: &str, team: u64) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: vec![window(T0 - HOUR, T0 + 10 * HOUR)],
        team_id: Some(team),
        ..AgentPlan::default()
    }
}

fn requests_to(h: &Harness, path_part: &str) -> Vec<(u64, HttpRequest)> {
    h.requests()
        .iter()
        .filter(|(_, r)| r.url.contains(path_part))
        .cloned()
        .collect()
}

fn state_requests_of(h: &Harness, name: &str) -> Vec<(u64, HttpRequest)> {
    requests_to(h, &format!("/agents/{}/state", h.user(name)))
}

/// The bodies of the token requests, in order.
fn grants(h: &Harness) -> Vec<String> {
    requests_to(h, "/auth/token")
        .into_iter()
        .map(|(_, r)| r.body.unwrap_or_default())
        .collect()
}

/// alice's READY fails before anything reaches the Admin API: its code and message.
fn first_change_fails(h: &mut Harness) -> (ErrorCode, String) {
    let id = h.transition(&h.user("alice"), "READY");
    h.drive().unwrap();
    assert!(
        requests_to(h, "/state").is_empty(),
        "no state change was sent"
    );
    assert_eq!(h.tenant.agent_state("alice"), None);
    assert_eq!(h.tenant.ground_truth().state_changes_accepted, 0);
    outcome(h, id).expect_err("the change fails")
}

fn reason(name: &str) -> TransitionOptions {
    TransitionOptions::default().with_reason(name)
}

// ---- discovery --------------------------------------------------------------------------------------------

#[test]
fn an_openid_configuration_that_is_missing_or_garbage_fails_discovery_naming_the_step() {
    for fault in [FaultKind::status(404, None), FaultKind::Malformed] {
        let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |_, _| {});
        h.tenant
            .script_fault(FaultRule::on(Endpoint::Discovery, fault.clone(), 1));
        let (code, message) = first_change_fails(&mut h);
        assert_eq!(code, ErrorCode::DiscoveryFailed, "{fault:?}: {message}");
        assert!(message.contains("OpenID configuration"), "{message}");
        assert!(
            requests_to(&h, "/auth/token").is_empty(),
            "no grant without a token endpoint"
        );
    }
}

#[test]
fn refused_access_key_credentials_fail_auth_without_discovering_further() {
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |cfg, _| {
        cfg.cxone.access_key_secret = Secret::new("not-the-secret");
    });
    let (code, message) = first_change_fails(&mut h);
    assert_eq!(code, ErrorCode::AuthFailed, "{message}");
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(!message.contains("not-the-secret"));
    assert_eq!(grants(&h).len(), 1, "a refusal is not retried");
    assert!(requests_to(&h, "cxone-configuration").is_empty());
}

#[test]
fn an_id_token_without_tenant_id_fails_discovery_unless_the_bases_are_set() {
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |_, _| {});
    h.tenant.omit_tenant_id_from_id_tokens(true);
    let (code, message) = first_change_fails(&mut h);
    assert_eq!(code, ErrorCode::DiscoveryFailed, "{message}");
    assert!(message.contains("reading the id_token"), "{message}");
    assert!(message.contains("tenantId"), "{message}");
    assert!(requests_to(&h, "cxone-configuration").is_empty());

    // With both bases configured the tenant need not be named: the same token serves.
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |cfg, _| {
        cfg.cxone.api_base = Some(SIM_BASE_URL.to_owned());
        cfg.cxone.wfm_base = Some(format!("https://{CXONE_AREA}.{CXONE_UH_DOMAIN}"));
    });
    h.tenant.omit_tenant_id_from_id_tokens(true);
    let id = h.transition(&h.user("alice"), "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("READY".into()));
    assert!(requests_to(&h, "cxone-configuration").is_empty());
    assert_eq!(h.tenant.agent_state("alice"), Some("READY"));
}

#[test]
fn a_failing_cxone_configuration_fails_discovery_naming_the_step() {
    // The token endpoint is configured, so the first discovery request is the CXone configuration.
    let token_url = |cfg: &mut EngineConfig, _: &mut SimConfig| {
        cfg.token_url = Some(format!("{SIM_BASE_URL}/auth/token"));
    };
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], token_url);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Discovery,
        FaultKind::status(404, None),
        1,
    ));
    let (code, message) = first_change_fails(&mut h);
    assert_eq!(code, ErrorCode::DiscoveryFailed, "{message}");
    assert!(message.contains("CXone configuration"), "{message}");
    assert!(requests_to(&h, "openid-configuration").is_empty());
    assert_eq!(
        requests_to(&h, "cxone-configuration").len(),
        1,
        "a 404 is not retried"
    );

    // A configuration host that stays down: retried, then the same.
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], token_url);
    h.tenant.script_fault(FaultRule::on(
        Endpoint::Discovery,
        FaultKind::status(503, None),
        10,
    ));
    let (code, message) = first_change_fails(&mut h);
    assert_eq!(code, ErrorCode::DiscoveryFailed, "{message}");
    assert!(message.contains("CXone configuration"), "{message}");
    assert_eq!(requests_to(&h, "cxone-configuration").len(), 4);
}

// ---- unavailable codes ------------------------------------------------------------------------------------

#[test]
fn an_unknown_reason_code_fails_before_anything_is_sent_and_misses_cost_one_refetch() {
    let agents: Vec<_> = (0..10)
        .map(|i| on_shift(&format!("a{i}"), CXONE_TEAM_A))
        .collect();
    let mut h = pair_with(agents, |_, _| {});
    let a0 = h.user("a0");
    let id = h.transition_with(&a0, "NOT_READY", &reason("Nope"));
    h.drive().unwrap();
    let (code, message) = outcome(&h, id).unwrap_err();
    assert_eq!(code, ErrorCode::UnknownReasonCode);
    assert!(message.contains("Nope"), "{message}");
    assert!(requests_to(&h, "/state").is_empty());
    let codes = |h: &Harness| requests_to(h, "/unavailable-codes").len();
    assert_eq!(codes(&h), 1);

    // Ten misses for the same team within the minute: no request.
    let ids: Vec<_> = (0..10)
        .map(|i| h.transition_with(&h.user(&format!("a{i}")), "PAUSED", &reason("Nope")))
        .collect();
    h.drive().unwrap();
    for id in ids {
        assert_eq!(outcome(&h, id).unwrap_err().0, ErrorCode::UnknownReasonCode);
    }
    assert_eq!(codes(&h), 1);
    // Ten more a few minutes later: one extra read, not ten.
    h.drive_until(T0 + 5 * MIN);
    let ids: Vec<_> = (0..10)
        .map(|i| h.transition_with(&h.user(&format!("a{i}")), "IDLE", &reason("Nope")))
        .collect();
    h.drive().unwrap();
    for id in ids {
        assert_eq!(outcome(&h, id).unwrap_err().0, ErrorCode::UnknownReasonCode);
    }
    assert_eq!(codes(&h), 2);
    assert!(requests_to(&h, "/state").is_empty());
    // A name the team has still works (matched loosely).
    let id = h.transition_with(&a0, "NOT_READY", &reason("system-idle"));
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("NOT_READY".into()));
    assert_eq!(h.tenant.agent_state("a0"), Some("UNAVAILABLE_SYSTEM_IDLE"));
}

#[test]
fn codes_in_either_field_case_resolve_to_each_teams_out_state_id() {
    // Team A spells `outstateId`/`outstateName` (its Break is 1), team B `outStateId`/`outStateName` (21).
    let mut h = pair_with(
        vec![
            on_shift("alice", CXONE_TEAM_A),
            on_shift("bob", CXONE_TEAM_B),
        ],
        |_, _| {},
    );
    let a = h.transition(&h.user("alice"), "NOT_READY");
    let b = h.transition(&h.user("bob"), "NOT_READY");
    let c = h.transition_with(&h.user("bob"), "PAUSED", &reason("Lunch"));
    h.drive().unwrap();
    assert_eq!(outcome(&h, a), Ok("NOT_READY".into()));
    assert_eq!(outcome(&h, b), Ok("NOT_READY".into()));
    assert_eq!(outcome(&h, c), Ok("PAUSED".into()));
    let url = |name: &str, i: usize| state_requests_of(&h, name)[i].1.url.clone();
    assert!(
        url("alice", 0).ends_with("?state=Unavailable&outStateId=1"),
        "{}",
        url("alice", 0)
    );
    assert!(
        url("bob", 0).ends_with("?state=Unavailable&outStateId=21"),
        "{}",
        url("bob", 0)
    );
    assert!(
        url("bob", 1).ends_with("?state=Unavailable&outStateId=22"),
        "{}",
        url("bob", 1)
    );
    assert_eq!(h.tenant.agent_state("alice"), Some("UNAVAILABLE_BREAK"));
    assert_eq!(h.tenant.agent_state("bob"), Some("UNAVAILABLE_LUNCH"));
}

#[test]
fn a_team_without_codes_can_be_set_available_only() {
    let mut h = pair_with(vec![on_shift("carol", CXONE_TEAM_C)], |_, _| {});
    let carol = h.user("carol");
    let not_ready = h.transition(&carol, "NOT_READY");
    h.drive().unwrap();
    let (code, message) = outcome(&h, not_ready).unwrap_err();
    assert_eq!(code, ErrorCode::UnknownReasonCode);
    assert!(message.contains("0 codes"), "{message}");
    assert!(requests_to(&h, "/state").is_empty());
    assert_eq!(requests_to(&h, "/unavailable-codes").len(), 1, "204: none");
    let ready = h.transition(&carol, "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, ready), Ok("READY".into()));
    assert_eq!(h.tenant.agent_state("carol"), Some("READY"));
}

// ---- credentials and grants -------------------------------------------------------------------------------

#[test]
fn a_secret_with_reserved_characters_authenticates_by_basic_and_by_body() {
    let secret = SimConfig::default().access_key_secret;
    assert!(secret.contains('=') && secret.contains('&') && secret.contains('%'));
    for auth in [ClientAuth::Basic, ClientAuth::Body] {
        let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |cfg, _| {
            cfg.cxone.client_auth = auth;
        });
        let id = h.transition(&h.user("alice"), "READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id), Ok("READY".into()), "{auth:?}");
        let (_, grant) = &requests_to(&h, "/auth/token")[0];
        let body = grant.body.clone().unwrap_or_default();
        assert!(
            body.contains("password=sim-access-secret%3D%26%25"),
            "{body}"
        );
        let basic = grant
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "));
        match auth {
            ClientAuth::Basic => assert!(basic && !body.contains("client_secret")),
            _ => assert!(!basic && body.contains("client_secret=sim-secret")),
        }
        assert_eq!(h.tenant.ground_truth().tokens_issued, 1);
    }
}

#[test]
fn an_aged_token_is_refreshed_and_a_refused_refresh_falls_back_to_the_password_grant() {
    // A two-minute token is renewed half-way through its life.
    for refused in [false, true] {
        let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |_, sim| {
            sim.token_ttl_s = 120;
        });
        let first = h.transition(&h.user("alice"), "READY");
        h.drive().unwrap();
        assert!(outcome(&h, first).is_ok());
        h.drive_until(T0 + 90_000);
        if refused {
            // The refresh token is revoked (the aged access token is not used again anyway).
            h.tenant.revoke_tokens();
        }
        let second = h.transition(&h.user("alice"), "PAUSED");
        h.drive().unwrap();
        assert_eq!(
            outcome(&h, second),
            Ok("PAUSED".into()),
            "refused: {refused}"
        );
        let grants: Vec<String> = grants(&h)
            .iter()
            .map(|b| {
                let kind = b.split('&').find(|p| p.starts_with("grant_type=")).unwrap();
                kind.trim_start_matches("grant_type=").to_owned()
            })
            .collect();
        let expected: &[&str] = if refused {
            &["password", "refresh_token", "password"]
        } else {
            &["password", "refresh_token"]
        };
        assert_eq!(grants, expected);
        let truth = h.tenant.ground_truth();
        assert_eq!(
            truth.responses_by_status.get(&401),
            None,
            "renewed before use"
        );
        assert_eq!(truth.responses_by_status.contains_key(&400), refused);
        assert_eq!(
            requests_to(&h, "openid-configuration").len(),
            1,
            "discovered once"
        );
    }
}

// ---- SetAgentState ----------------------------------------------------------------------------------------

#[test]
fn set_agent_state_goes_as_query_parameters_or_as_json() {
    for encoding in [SetStateEncoding::Query, SetStateEncoding::Json] {
        let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |cfg, _| {
            cfg.cxone.set_state_encoding = encoding;
        });
        let a = h.transition(&h.user("alice"), "NOT_READY");
        let b = h.transition(&h.user("alice"), "READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, a), Ok("NOT_READY".into()));
        assert_eq!(outcome(&h, b), Ok("READY".into()));
        let sets = state_requests_of(&h, "alice");
        let shape: Vec<(String, Option<String>)> = sets
            .iter()
            .map(|(_, r)| {
                let query = r.url.split_once('?').map(|(_, q)| q.to_owned());
                (query.unwrap_or_default(), r.body.clone())
            })
            .collect();
        match encoding {
            SetStateEncoding::Query => assert_eq!(
                shape,
                [
                    ("state=Unavailable&outStateId=1".to_owned(), None),
                    ("state=Available".to_owned(), None)
                ]
            ),
            _ => {
                assert_eq!(
                    shape,
                    [
                        (
                            String::new(),
                            Some(r#"{"state":"Unavailable","outStateId":1}"#.to_owned())
                        ),
                        (String::new(), Some(r#"{"state":"Available"}"#.to_owned()))
                    ]
                );
                assert_eq!(sets[0].1.header("content-type"), Some("application/json"));
            }
        }
        let applied: Vec<&str> = h
            .tenant
            .accepted_changes()
            .iter()
            .map(|(_, _, s)| s.as_str())
            .collect();
        assert_eq!(applied, ["UNAVAILABLE_BREAK", "READY"], "{encoding:?}");
    }
}

#[test]
fn refusals_of_set_agent_state_keep_the_tenants_words_and_are_not_retried() {
    for (status, code) in [
        (403, ErrorCode::Forbidden),
        (404, ErrorCode::UnknownAgent),
        (400, ErrorCode::BadRequest),
    ] {
        let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |_, _| {});
        h.tenant.script_fault(FaultRule::on(
            Endpoint::AgentState,
            FaultKind::status(status, None),
            1,
        ));
        let id = h.transition(&h.user("alice"), "READY");
        h.drive().unwrap();
        let (got, message) = outcome(&h, id).unwrap_err();
        assert_eq!(got, code, "{status}: {message}");
        assert!(
            message.contains("the tenant says: injected fault"),
            "{message}"
        );
        assert!(message.contains("SetAgentState"), "{message}");
        if status == 403 {
            assert!(message.contains("security profile"), "{message}");
        }
        assert_eq!(
            state_requests_of(&h, "alice").len(),
            1,
            "{status}: not retried"
        );
    }
    // A real 409: the agent is not logged in.
    let mut h = pair_with(
        vec![AgentPlan {
            logged_out: vec![window(T0, T0 + HOUR)],
            ..on_shift("alice", CXONE_TEAM_A)
        }],
        |_, _| {},
    );
    let id = h.transition(&h.user("alice"), "READY");
    h.drive().unwrap();
    let (got, message) = outcome(&h, id).unwrap_err();
    assert_eq!(got, ErrorCode::StateConflict, "{message}");
    assert!(message.contains("The agent is not logged in."), "{message}");
    assert_eq!(state_requests_of(&h, "alice").len(), 1, "not retried");
    assert_eq!(h.tenant.agent_state("alice"), None);
    assert!(!h.audit_records()[0].policy_violation);
}

#[test]
fn an_agent_not_in_the_directory_is_unknown_and_the_directory_is_reread_at_most_once_a_minute() {
    let mut h = pair_with(vec![on_shift("alice", CXONE_TEAM_A)], |_, _| {});
    let ghost = "9999";
    let first = h.transition(ghost, "READY");
    h.drive().unwrap();
    let (code, message) = outcome(&h, first).unwrap_err();
    assert_eq!(code, ErrorCode::UnknownAgent);
    assert!(message.contains("9999"), "{message}");
    assert!(requests_to(&h, "/state").is_empty());
    assert!(requests_to(&h, "/schedules/export").is_empty());
    let directory = |h: &Harness| {
        h.requests()
            .iter()
            .filter(|(_, r)| r.path().ends_with("/agents"))
            .count()
    };
    assert_eq!(directory(&h), 1);
    // More misses within the minute: no new read.
    for _ in 0..5 {
        let id = h.transition(ghost, "NOT_READY");
        h.drive().unwrap();
        assert_eq!(outcome(&h, id).unwrap_err().0, ErrorCode::UnknownAgent);
    }
    assert_eq!(directory(&h), 1);
    // Later, a miss reads the directory again once; an agent added since is found then.
    h.tenant.add_agent(on_shift("zoe", CXONE_TEAM_B));
    h.drive_until(T0 + 2 * MIN);
    let id = h.transition(ghost, "READY");
    let zoe = h.transition(&h.user("zoe"), "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id).unwrap_err().0, ErrorCode::UnknownAgent);
    assert_eq!(outcome(&h, zoe), Ok("READY".into()));
    assert_eq!(directory(&h), 2);
    assert!(state_requests_of(&h, "alice").is_empty());
}

// ---- schedules --------------------------------------------------------------------------------------------

/// carol's break runs 10:00–10:15; dave has none. Both are warmed (token, directory, exports) at 09:50 on a
/// limit of one request a minute.
fn slow_pair_before_carols_break(rate_per_minute: u32) -> Harness {
    let break_at = T0 + 2 * HOUR;
    let mut h = pair_with(
        vec![
            AgentPlan {
                breaks: vec![window(break_at, break_at + 15 * MIN)],
                ..on_shift("carol", CXONE_TEAM_A)
            },
            on_shift("dave", CXONE_TEAM_B),
        ],
        |cfg, sim| {
            cfg.rate_limit.per_minute = rate_per_minute;
            sim.rate_per_minute = rate_per_minute;
            sim.burst = 1;
            sim.token_ttl_s = 10 * 3600;
        },
    );
    h.drive_until(break_at - 10 * MIN);
    h.validate(&h.user("carol"), "READY");
    h.validate(&h.user("dave"), "READY");
    h.drive().unwrap();
    assert!(h.now_ms() < break_at - 3 * MIN, "warmed by {}", h.now_ms());
    h
}

#[test]
fn a_ready_held_by_the_pacer_until_its_break_is_near_is_refused_by_the_recheck() {
    let break_at = T0 + 2 * HOUR;
    // 09:57:50: the break is 2 min 10 s away, outside the commit window (2 min): READY is approved.
    let at = break_at - 2 * MIN - 10_000;

    // Control: with a limit that lets it out at once, it is sent and applied before the break.
    let mut h = slow_pair_before_carols_break(100);
    h.drive_until(at);
    let id = h.transition(&h.user("carol"), "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, id), Ok("READY".into()));

    // One request a minute: dave's change takes the slot first, so carol's approved READY waits a minute
    // for the pacer — past `policy_max_age_ms` (30 s). The recheck sees the break 70 s away: refused.
    let mut h = slow_pair_before_carols_break(1);
    let max_age = h.engine.config().policy_max_age_ms;
    h.drive_until(at - 1_000);
    let dave = h.transition(&h.user("dave"), "READY");
    h.drive_until(at);
    let carol = h.transition(&h.user("carol"), "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, dave), Ok("READY".into()));
    let failed = h
        .events()
        .iter()
        .find_map(|(t, e)| match e {
            Event::TransitionFailed(f) if f.transition_id == carol => Some((*t, f.clone())),
            _ => None,
        })
        .expect("carol's READY failed");
    assert_eq!(failed.1.error.code, ErrorCode::MandatoryBreakViolation);
    assert!(failed.1.policy_violation);
    assert!(
        failed.0 >= at + max_age,
        "refused by the recheck, {} ms later",
        failed.0 - at
    );
    assert!(state_requests_of(&h, "carol").is_empty(), "never sent");
    let exports = requests_to(&h, "/schedules/export").len();
    assert_eq!(exports, 2, "the recheck used the export it had");
    // Ground truth through the break: no READY applied during it.
    h.drive_until(break_at + 20 * MIN);
    assert_eq!(h.tenant.agent_state("carol"), None);
    assert_eq!(h.tenant.ground_truth().ready_accepted_during_break, 0);
}

#[test]
fn a_429_from_one_host_pauses_only_that_host() {
    let mut h = pair_with(
        vec![
            on_shift("alice", CXONE_TEAM_A),
            on_shift("bob", CXONE_TEAM_A),
            on_shift("carol", CXONE_TEAM_A),
        ],
        |_, _| {},
    );
    // alice's facts (directory, export, team A's codes) are cached.
    let warm = h.transition(&h.user("alice"), "NOT_READY");
    h.drive().unwrap();
    assert!(outcome(&h, warm).is_ok());

    // The WFM host throttles bob's export for 30 s.
    h.tenant.script_fault(FaultRule::on(
        Endpoint::ScheduleExport,
        FaultKind::RateLimit { retry_after_s: 30 },
        1,
    ));
    let start = h.now_ms();
    let bob = h.transition(&h.user("bob"), "READY");
    h.drive_until(start + 1_000);
    let limited_at = requests_to(&h, "/schedules/export")[1].0;
    let alice = h.transition(&h.user("alice"), "READY");
    let carol = h.transition(&h.user("carol"), "READY");
    h.drive().unwrap();
    for id in [bob, alice, carol] {
        assert_eq!(outcome(&h, id), Ok("READY".into()));
    }
    let alice_sent = state_requests_of(&h, "alice")[1].0;
    assert!(
        alice_sent < limited_at + 2_000,
        "alice's change waited for the WFM host"
    );
    let exports: Vec<u64> = requests_to(&h, "/schedules/export")
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t > limited_at)
        .collect();
    assert_eq!(exports.len(), 2, "bob's again, carol's");
    assert!(
        exports.iter().all(|t| *t >= limited_at + 30_000),
        "{exports:?}"
    );

    // And the other way: the ACD host throttles; a new agent's export still goes out at once.
    let mut h = pair_with(
        vec![
            on_shift("alice", CXONE_TEAM_A),
            on_shift("dave", CXONE_TEAM_A),
        ],
        |_, _| {},
    );
    let warm = h.transition(&h.user("alice"), "NOT_READY");
    h.drive().unwrap();
    assert!(outcome(&h, warm).is_ok());
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::RateLimit { retry_after_s: 30 },
        1,
    ));
    let start = h.now_ms();
    h.transition(&h.user("alice"), "READY");
    h.drive_until(start + 1_000);
    let limited_at = state_requests_of(&h, "alice")[1].0;
    let asked = h.now_ms();
    let dave = h.transition(&h.user("dave"), "READY");
    h.drive().unwrap();
    assert_eq!(outcome(&h, dave), Ok("READY".into()));
    let export = requests_to(&h, "/schedules/export").last().unwrap().0;
    assert!(
        export >= asked && export < limited_at + 2_000,
        "dave's export waited for the ACD host"
    );
    assert!(state_requests_of(&h, "dave")[0].0 >= limited_at + 30_000);
}

#[test]
fn the_schedule_export_is_read_once_per_agent_per_ttl_window() {
    let names = ["a0", "a1", "a2", "a3", "a4"];
    let agents: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| on_shift(n, [CXONE_TEAM_A, CXONE_TEAM_B][i % 2]))
        .collect();
    let mut h = pair_with(agents, |_, _| {});
    let states = ["READY", "PAUSED", "READY", "NOT_READY", "IDLE"];
    let mut ids = Vec::new();
    // Every five minutes for 55 minutes, each agent changes state: 60 transitions.
    for round in 0..12u64 {
        h.drive_until(T0 + round * 5 * MIN);
        for n in names {
            ids.push(h.transition(&h.user(n), states[round as usize % states.len()]));
        }
        h.drive().unwrap();
    }
    for id in &ids {
        assert!(outcome(&h, *id).is_ok());
    }
    let exports = |h: &Harness| h.tenant.ground_truth().requests_by_endpoint["scheduleExport"];
    assert_eq!(exports(&h), 5, "one export per agent in the hour");
    assert_eq!(
        requests_to(&h, "/unavailable-codes").len(),
        2,
        "one per team"
    );
    assert_eq!(
        h.requests()
            .iter()
            .filter(|(_, r)| r.path().ends_with("/agents"))
            .count(),
        1
    );
    // Past the TTL: one more each.
    h.drive_until(T0 + HOUR + MIN);
    for n in names {
        ids.push(h.transition(&h.user(n), "READY"));
    }
    h.drive().unwrap();
    assert_eq!(exports(&h), 10);
}

// ---- restart ----------------------------------------------------------------------------------------------

#[test]
fn a_change_interrupted_by_a_restart_is_resent_with_its_journaled_out_state_id() {
    // bob is in team B, whose Adhoc is 26: PAUSED goes out as `Unavailable&outStateId=26`.
    let mut h = pair_with(vec![on_shift("bob", CXONE_TEAM_B)], |_, _| {});
    h.tenant.script_fault(FaultRule::on(
        Endpoint::AgentState,
        FaultKind::Slow { extra_ms: 60_000 },
        1,
    ));
    h.transition(&h.user("bob"), "PAUSED");
    h.drive_until(T0 + 10_000);
    assert_eq!(state_requests_of(&h, "bob").len(), 1);
    let journaled: Vec<Option<u64>> = h
        .records()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Intent(i) => Some(i.out_state_id),
            _ => None,
        })
        .collect();
    assert_eq!(journaled, [Some(26)]);
    let before = h.requests().len();

    let restored = h.restart(10_000);
    assert_eq!(restored.resumed, 1);
    h.drive().unwrap();
    let sets = state_requests_of(&h, "bob");
    assert_eq!(sets.len(), 2);
    for (_, r) in &sets {
        assert!(
            r.url.ends_with("?state=Unavailable&outStateId=26"),
            "{}",
            r.url
        );
    }
    assert_eq!(
        sets[0].1.header("idempotency-key"),
        sets[1].1.header("idempotency-key")
    );
    // The resend needs a token (discovery again), but no facts: it is not checked again.
    let after: Vec<String> = h.requests()[before..]
        .iter()
        .map(|(_, r)| r.path().to_owned())
        .collect();
    assert!(
        after.iter().all(|p| !p.ends_with("/agents")
            && !p.contains("unavailable-codes")
            && !p.contains("/schedules/")),
        "{after:?}"
    );
    let truth = h.tenant.ground_truth();
    assert_eq!(
        (truth.state_changes_accepted, truth.idempotent_replays),
        (1, 1)
    );
    assert_eq!(h.tenant.agent_state("bob"), Some("UNAVAILABLE_ADHOC"));
    let last = h.audit_records().pop().unwrap();
    assert!(last.success && last.new_state == "PAUSED");
}
