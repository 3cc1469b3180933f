//! The simulated tenant's `cxone` profile, driven by the `cxone` wire modules as the client: every request is
//! built by `cxone::{auth, acd, wfm}` and every answer read by their parsers, so both sides are checked
//! against each other.

use cxone_agent_state_core::cxone::acd::{
    self, AcdCall, AgentId, ApiVersions, CxoneReasonTable, CxoneState, SetStateEncoding,
};
use cxone_agent_state_core::cxone::auth::{self, ClientAuth, CxoneCredentials, CxoneToken};
use cxone_agent_state_core::cxone::wfm::{self, BreakRule};
use cxone_agent_state_core::sim::{
    AgentPlan, Endpoint, FaultKind, FaultRule, RandomFaults, SimConfig, SimOutcome, SimTenant,
    Window, CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C, WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{
    AgentState, ErrorCode, HttpRequest, HttpResponse, Secret, NOT_READY, PAUSED, READY,
};

/// 2026-01-05T08:00:00Z.
const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// Where the client starts discovery; every base the tenant announces is this origin.
const AUTH: &str = "https://cxone.sim.invalid";

/// `SetAgentState`'s two encodings, short so that each call reads on one line.
const Q: SetStateEncoding = SetStateEncoding::Query;
const J: SetStateEncoding = SetStateEncoding::Json;
const AVAILABLE: CxoneState = CxoneState::Available;

fn unavailable(out_state_id: u64) -> CxoneState {
    CxoneState::Unavailable { out_state_id }
}

fn window(start_ms: u64, end_ms: u64) -> Window {
    Window { start_ms, end_ms }
}

/// alice (team A) has a 15-minute break at T0+1h and a 30-minute lunch at T0+3h; bob is in team B, carol in
/// team C; dave (team A) is logged out around T0; eve has no shift.
fn tenant(config: SimConfig) -> SimTenant {
    let mut t = SimTenant::new(SimConfig {
        latency_ms: 0,
        latency_jitter_ms: 0,
        ..config
    });
    let shift = vec![window(T0 - HOUR, T0 + 8 * HOUR)];
    t.add_agent(AgentPlan {
        user_id: "alice".into(),
        shifts: shift.clone(),
        breaks: vec![
            window(T0 + HOUR, T0 + HOUR + 15 * MIN),
            window(T0 + 3 * HOUR, T0 + 3 * HOUR + 30 * MIN),
        ],
        ..AgentPlan::default()
    });
    for user in ["bob", "carol"] {
        t.add_agent(AgentPlan::on_shift(user, T0 - HOUR, T0 + 8 * HOUR));
    }
    t.add_agent(AgentPlan {
        logged_out: vec![window(T0 - HOUR, T0 + HOUR)],
        ..AgentPlan::on_shift("dave", T0 - HOUR, T0 + 8 * HOUR)
    });
    t.add_agent(AgentPlan {
        user_id: "eve".into(),
        ..AgentPlan::default()
    });
    t
}

/// [`tenant`] whose tokens outlive a test's day, which runs past an hour.
fn long_token_tenant() -> SimTenant {
    tenant(SimConfig {
        token_ttl_s: 12 * 3600,
        ..SimConfig::default()
    })
}

fn send(t: &mut SimTenant, now_ms: u64, request: &HttpRequest) -> HttpResponse {
    match t.handle_request(now_ms, request).outcome {
        SimOutcome::Response(r) => r,
        SimOutcome::TransportError(e) => panic!("dropped: {e:?}"),
    }
}

fn creds(config: &SimConfig) -> CxoneCredentials {
    CxoneCredentials {
        access_key_id: config.access_key_id.clone(),
        access_key_secret: Secret::new(&config.access_key_secret),
        client_id: config.client_id.clone(),
        client_secret: Secret::new(&config.client_secret),
    }
}

fn token_endpoint() -> String {
    format!("{AUTH}/auth/token")
}

fn login(t: &mut SimTenant, client_auth: ClientAuth) -> CxoneToken {
    let request = auth::password_grant_request(&token_endpoint(), &creds(t.config()), client_auth);
    let answer = send(t, T0, &request);
    auth::parse_token_answer(&answer).unwrap_or_else(|e| panic!("{e:?}: {}", answer.body))
}

fn set_state(
    t: &mut SimTenant,
    now_ms: u64,
    token: &Secret,
    user: &str,
    target: CxoneState,
    encoding: SetStateEncoding,
    key: &str,
) -> HttpResponse {
    let agent = t.cxone_agent(user).expect("a known agent").agent_id;
    let request = acd::set_state_request(
        AUTH,
        &ApiVersions::default(),
        agent,
        target,
        token,
        encoding,
        key,
    );
    send(t, now_ms, &request)
}

#[test]
fn discovery_password_grants_and_id_token() {
    let mut t = tenant(SimConfig::default());
    let tenant_id = t.config().tenant_id.clone();
    assert!(t.config().access_key_secret.contains(['=', '&', '%']));

    let openid = send(&mut t, T0, &auth::openid_configuration_request(AUTH));
    let openid = auth::parse_openid_configuration(&openid).unwrap();
    assert_eq!(openid.issuer, AUTH);
    assert_eq!(openid.token_endpoint, token_endpoint());

    let request = auth::password_grant_request(
        &openid.token_endpoint,
        &creds(t.config()),
        ClientAuth::Basic,
    );
    let answer = send(&mut t, T0, &request);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let basic = auth::parse_token_answer(&answer).unwrap();
    assert_eq!(basic.expires_in_ms, 3_600_000);
    assert!(basic.refresh_token.is_some());
    let id_token = basic.id_token.as_ref().expect("an id_token");
    assert!(!id_token.expose().contains('='), "unpadded base64url");
    let claims = auth::id_token_claims(id_token.expose()).unwrap();
    assert_eq!(claims.tenant_id, tenant_id);
    assert_eq!(claims.issuer.as_deref(), Some(AUTH));

    let body = login(&mut t, ClientAuth::Body);
    assert_ne!(body.access_token, basic.access_token);
    assert_eq!(t.ground_truth().tokens_issued, 2);

    let config = send(
        &mut t,
        T0,
        &auth::cxone_configuration_request(&openid.issuer, &claims.tenant_id),
    );
    let bases = auth::parse_cxone_configuration(&config, &claims.tenant_id).unwrap();
    assert_eq!(bases.api_base, AUTH);
    assert_eq!(bases.wfm_base, "https://sim.sim.invalid");

    let other = send(
        &mut t,
        T0,
        &auth::cxone_configuration_request(AUTH, "11e0-not-this-one"),
    );
    assert_eq!(other.status, 404);
    let e = auth::parse_cxone_configuration(&other, "11e0-not-this-one").unwrap_err();
    assert!(e.message.contains("404"), "{e}");
    assert_eq!(t.ground_truth().requests_by_endpoint["discovery"], 3);
    assert_eq!(t.ground_truth().requests_by_endpoint["cxoneToken"], 2);
}

#[test]
fn bad_grants_are_refused_with_oauth_errors() {
    let mut t = tenant(SimConfig::default());
    let good = creds(t.config());
    let refused = |t: &mut SimTenant, request: &HttpRequest| {
        let answer = send(t, T0, request);
        assert_eq!(answer.status, 400, "{}", answer.body);
        auth::parse_token_answer(&answer).unwrap_err()
    };
    let wrong_secret = CxoneCredentials {
        access_key_secret: Secret::new("sim-access-secret"),
        ..good.clone()
    };
    let e = refused(
        &mut t,
        &auth::password_grant_request(&token_endpoint(), &wrong_secret, ClientAuth::Basic),
    );
    assert!(format!("{e:?}").contains("invalid_grant"), "{e:?}");
    let wrong_client = CxoneCredentials {
        client_secret: Secret::new("nope"),
        ..good.clone()
    };
    for client_auth in [ClientAuth::Basic, ClientAuth::Body] {
        let e = refused(
            &mut t,
            &auth::password_grant_request(&token_endpoint(), &wrong_client, client_auth),
        );
        assert!(format!("{e:?}").contains("invalid_client"), "{e:?}");
    }
    let mut client_credentials =
        auth::password_grant_request(&token_endpoint(), &good, ClientAuth::Basic);
    client_credentials.body = Some("grant_type=client_credentials".into());
    let e = refused(&mut t, &client_credentials);
    assert!(format!("{e:?}").contains("unsupported_grant_type"), "{e:?}");
    assert_eq!(t.ground_truth().tokens_issued, 0);
}

#[test]
fn refresh_grant_rotates_and_a_used_refresh_token_is_refused() {
    let mut t = tenant(SimConfig::default());
    let good = creds(t.config());
    let first = login(&mut t, ClientAuth::Basic);
    let old_refresh = first.refresh_token.clone().unwrap();

    let request =
        auth::refresh_grant_request(&token_endpoint(), &old_refresh, &good, ClientAuth::Basic);
    let second = auth::parse_token_answer(&send(&mut t, T0, &request)).unwrap();
    let agents = acd::agents_request(AUTH, &ApiVersions::default(), &second.access_token, 0, 10);
    assert_eq!(send(&mut t, T0, &agents).status, 200);

    let again = send(&mut t, T0, &request);
    let failure = auth::parse_token_answer(&again).unwrap_err();
    assert!(auth::is_refresh_refused(&failure), "{failure:?}");

    let body_refresh = auth::refresh_grant_request(
        &token_endpoint(),
        second.refresh_token.as_ref().unwrap(),
        &good,
        ClientAuth::Body,
    );
    let third = auth::parse_token_answer(&send(&mut t, T0, &body_refresh)).unwrap();

    // The spec requires client_id with this grant.
    let mut without_client_id = auth::refresh_grant_request(
        &token_endpoint(),
        third.refresh_token.as_ref().unwrap(),
        &good,
        ClientAuth::Basic,
    );
    let form = without_client_id.body.take().unwrap();
    without_client_id.body = Some(
        form.split('&')
            .filter(|p| !p.starts_with("client_id="))
            .collect::<Vec<_>>()
            .join("&"),
    );
    let answer = send(&mut t, T0, &without_client_id);
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("invalid_request"), "{}", answer.body);

    t.revoke_tokens();
    let revoked = auth::refresh_grant_request(
        &token_endpoint(),
        third.refresh_token.as_ref().unwrap(),
        &good,
        ClientAuth::Basic,
    );
    let failure = auth::parse_token_answer(&send(&mut t, T0, &revoked)).unwrap_err();
    assert!(auth::is_refresh_refused(&failure), "{failure:?}");
    assert_eq!(t.ground_truth().tokens_issued, 3);
}

#[test]
fn directory_pages_name_every_agent() {
    let mut t = tenant(SimConfig::default());
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let versions = ApiVersions::default();
    let mut found = Vec::new();
    let mut skip = 0;
    let mut pages = 0;
    loop {
        let answer = send(
            &mut t,
            T0,
            &acd::agents_request(AUTH, &versions, &token, skip, 2),
        );
        let page = acd::parse_agents_page(&answer, skip).unwrap();
        pages += 1;
        skip += page.agents.len() as u64;
        found.extend(page.agents);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(found.len(), 5);
    for (agent, user) in found.iter().zip(["alice", "bob", "carol", "dave", "eve"]) {
        let id = t.cxone_agent(user).unwrap();
        assert_eq!(agent.agent_id, id.agent_id, "{user}");
        assert_eq!(agent.user_id, id.user_id, "{user}");
        assert_eq!(agent.team_id, id.team_id, "{user}");
        assert_eq!(agent.active, Some(true));
    }
    assert_eq!(found[0].agent_id, AgentId(1001));
    let teams: Vec<u64> = found.iter().map(|a| a.team_id).collect();
    assert_eq!(
        teams,
        [
            CXONE_TEAM_A,
            CXONE_TEAM_B,
            CXONE_TEAM_C,
            CXONE_TEAM_A,
            CXONE_TEAM_B
        ]
    );

    // Past the end: 204, an empty last page. The prefix matches in any case and version.
    let mut past = acd::agents_request(AUTH, &versions, &token, 5, 2);
    past.url = past.url.replace(
        "/inContactAPI/services/v34.0",
        "/incontactapi/Services/V2.0",
    );
    let answer = send(&mut t, T0, &past);
    assert_eq!(answer.status, 204);
    assert!(!acd::parse_agents_page(&answer, 5).unwrap().more);

    let unauthenticated = acd::agents_request(AUTH, &versions, &Secret::new("forged"), 0, 2);
    let answer = send(&mut t, T0, &unauthenticated);
    assert_eq!(answer.status, 401);
    assert!(answer.header("icStatusDescription").is_some());
}

#[test]
fn unavailable_codes_per_team_in_both_casings() {
    let mut t = tenant(SimConfig::default());
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let versions = ApiVersions::default();
    let mut codes_of = |team: u64| {
        let answer = send(
            &mut t,
            T0,
            &acd::unavailable_codes_request(AUTH, &versions, team, &token),
        );
        (answer.clone(), acd::parse_unavailable_codes(&answer))
    };

    let (raw_a, a) = codes_of(CXONE_TEAM_A);
    assert!(raw_a.body.contains("\"outstateName\""), "{}", raw_a.body);
    let a = a.unwrap();
    let (raw_b, b) = codes_of(CXONE_TEAM_B);
    assert!(raw_b.body.contains("\"outStateName\""), "{}", raw_b.body);
    let b = b.unwrap();
    for name in ["Break", "Lunch", "Meeting", "Training", "System Idle"] {
        assert!(acd::find_code(&a, name).is_some(), "team A lacks {name}");
        assert!(acd::find_code(&b, name).is_some(), "team B lacks {name}");
    }
    assert_eq!(acd::find_code(&a, "BREAK").unwrap().out_state_id, 1);
    assert_eq!(acd::find_code(&b, "Break").unwrap().out_state_id, 21);
    assert!(a.iter().any(|c| c.acw) && b.iter().any(|c| c.acw));

    // The engine's default reason table finds a code for every state it sets.
    let table = CxoneReasonTable::default();
    for state in [NOT_READY, PAUSED, "IDLE", "TRAINING"] {
        let state = AgentState::parse(state).unwrap();
        let target = table.target_for(&state, None, &a).unwrap();
        assert!(matches!(target, CxoneState::Unavailable { .. }), "{state}");
    }

    let (raw_c, c) = codes_of(CXONE_TEAM_C);
    assert_eq!(raw_c.status, 204);
    assert!(c.unwrap().is_empty());

    let (raw_unknown, unknown) = codes_of(999);
    assert_eq!(raw_unknown.status, 404);
    assert_eq!(unknown.unwrap_err().code, ErrorCode::UnknownAgent);
}

#[test]
fn schedule_export_has_breaks_and_lunches_as_activity_intervals() {
    let mut t = tenant(SimConfig::default());
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let alice = t.cxone_agent("alice").unwrap().user_id.clone();
    // In process the announced WFM host reaches the tenant: the export is routed by its path.
    let wfm_base = "https://sim.sim.invalid";
    let answer = send(
        &mut t,
        T0,
        &wfm::export_request(wfm_base, &alice, T0 - DAY, 7, &token),
    );
    let schedule = wfm::parse_export(&answer, &alice).unwrap();
    assert!(schedule.covers(T0) && schedule.covers(T0 + 5 * DAY - 1));
    assert_eq!(schedule.shifts.len(), 1);
    let titles: Vec<&str> = schedule.shifts[0]
        .intervals
        .iter()
        .map(|i| i.code.title.as_str())
        .collect();
    assert_eq!(titles, ["Break", "Lunch"]);
    let rule = BreakRule::default();
    assert!(schedule.scheduled_at(T0).scheduled);
    assert!(!schedule.scheduled_at(T0 + 9 * HOUR).scheduled);
    let on_break = schedule.break_at(T0 + HOUR + 5 * MIN, &rule);
    assert!(on_break.required);
    assert_eq!(
        on_break.window.map(|w| (w.start_ms, w.end_ms)),
        Some((T0 + HOUR, T0 + HOUR + 15 * MIN))
    );
    assert!(!schedule.break_at(T0 + 2 * HOUR, &rule).required);
    assert!(schedule.break_at(T0 + 3 * HOUR + 29 * MIN, &rule).required);
    assert_eq!(schedule.next_break_start_after(T0, &rule), Some(T0 + HOUR));

    let bad = |t: &mut SimTenant, body: String| {
        let mut request = wfm::export_request(wfm_base, &alice, T0, 1, &token);
        request.body = Some(body);
        let answer = send(t, T0, &request);
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(answer.header("icStatusDescription").is_some());
        wfm::refusal(&answer).unwrap()
    };
    let eight_days =
        format!(r#"{{"startDate":"2026-01-05","endDate":"2026-01-12","userID":"{alice}"}}"#);
    let e = bad(&mut t, eight_days);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("seven days"), "{e}");
    let seven_days =
        format!(r#"{{"startDate":"2026-01-05","endDate":"2026-01-11","userID":"{alice}"}}"#);
    let mut request = wfm::export_request(wfm_base, &alice, T0, 1, &token);
    request.body = Some(seven_days);
    assert_eq!(send(&mut t, T0, &request).status, 200);
    let e = bad(
        &mut t,
        format!(r#"{{"startDate":"2026-02-30","endDate":"2026-03-01","userID":"{alice}"}}"#),
    );
    assert!(e.message.contains("yyyy-mm-dd"), "{e}");
    bad(
        &mut t,
        r#"{"startDate":"2026-01-05","endDate":"2026-01-05","userID":"nobody"}"#.to_owned(),
    );
    bad(
        &mut t,
        r#"{"startDate":"2026-01-05","endDate":"2026-01-05"}"#.to_owned(),
    );
}

#[test]
fn set_state_by_query_and_by_json() {
    let mut t = tenant(SimConfig::default());
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let at = T0 + 30 * MIN;
    let answer = set_state(&mut t, at, &token, "alice", AVAILABLE, Q, "k1");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("icStatusDescription"), Some("Success"));
    acd::check_set_state(&answer).unwrap();
    assert_eq!(t.agent_state("alice"), Some(READY));

    let lunch = unavailable(2);
    let answer = set_state(&mut t, at, &token, "alice", lunch, J, "k2");
    acd::check_set_state(&answer).unwrap();
    assert_eq!(t.agent_state("alice"), Some("UNAVAILABLE_LUNCH"));

    let idle_b = unavailable(25);
    let answer = set_state(&mut t, at, &token, "bob", idle_b, Q, "k3");
    acd::check_set_state(&answer).unwrap();
    assert_eq!(t.agent_state("bob"), Some("UNAVAILABLE_SYSTEM_IDLE"));

    // The same key again is answered from the replay cache and changes nothing.
    let replay = set_state(&mut t, at, &token, "alice", AVAILABLE, Q, "k1");
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(t.agent_state("alice"), Some("UNAVAILABLE_LUNCH"));

    let changes: Vec<(&str, &str, &str)> = t
        .accepted_changes()
        .iter()
        .map(|(k, u, s)| (k.as_str(), u.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("k1", "alice", "READY"),
            ("k2", "alice", "UNAVAILABLE_LUNCH"),
            ("k3", "bob", "UNAVAILABLE_SYSTEM_IDLE"),
        ]
    );
    for (_, _, state) in &changes {
        assert!(AgentState::parse(state).is_ok(), "{state}");
    }
    let truth = t.ground_truth();
    assert_eq!(
        (truth.state_changes_accepted, truth.idempotent_replays),
        (3, 1)
    );
    assert_eq!(truth.requests_by_endpoint["agentState"], 4);
}

#[test]
fn set_state_refusals_say_why_in_ic_status_description() {
    let mut t = long_token_tenant();
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let refusal = |answer: &HttpResponse, status: u16| {
        assert_eq!(answer.status, status, "{}", answer.body);
        let words = answer
            .header("icStatusDescription")
            .expect("icStatusDescription");
        let e = acd::refusal(AcdCall::SetAgentState, answer).unwrap();
        assert!(e.message.contains(words), "{e}");
        assert!(acd::check_set_state(answer).is_err());
        e.code
    };

    let unknown = acd::set_state_request(
        AUTH,
        &ApiVersions::default(),
        AgentId(9999),
        CxoneState::Available,
        &token,
        SetStateEncoding::Query,
        "u1",
    );
    assert_eq!(
        refusal(&send(&mut t, T0, &unknown), 404),
        ErrorCode::UnknownAgent
    );

    let logged_out = set_state(&mut t, T0, &token, "dave", AVAILABLE, Q, "u2");
    assert_eq!(refusal(&logged_out, 409), ErrorCode::StateConflict);
    // Later dave has logged in.
    let later = set_state(&mut t, T0 + 2 * HOUR, &token, "dave", AVAILABLE, J, "u3");
    assert_eq!(later.status, 200);

    let team_b_code = unavailable(21);
    let wrong_team = set_state(&mut t, T0, &token, "alice", team_b_code, J, "u4");
    assert_eq!(refusal(&wrong_team, 400), ErrorCode::BadRequest);
    let no_codes = set_state(&mut t, T0, &token, "carol", unavailable(1), Q, "u5");
    assert_eq!(refusal(&no_codes, 400), ErrorCode::BadRequest);
    let acw = set_state(&mut t, T0, &token, "alice", unavailable(8), Q, "u6");
    assert_eq!(refusal(&acw, 409), ErrorCode::StateConflict);

    let mut busy = acd::set_state_request(
        AUTH,
        &ApiVersions::default(),
        t.cxone_agent("alice").unwrap().agent_id,
        CxoneState::Available,
        &token,
        SetStateEncoding::Query,
        "u7",
    );
    busy.url = busy.url.replace("state=Available", "state=Busy");
    let answer = send(&mut t, T0, &busy);
    assert_eq!(refusal(&answer, 400), ErrorCode::BadRequest);
    assert_eq!(
        answer.header("icStatusDescription"),
        Some("Invalid state request.")
    );

    assert_eq!(t.ground_truth().state_changes_accepted, 1);
    assert_eq!(t.agent_state("alice"), None);
}

#[test]
fn available_during_a_break_and_off_shift_count_in_ground_truth() {
    let mut t = long_token_tenant();
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let in_break = T0 + HOUR + 5 * MIN;
    let answer = set_state(&mut t, in_break, &token, "alice", AVAILABLE, Q, "b1");
    assert_eq!(answer.status, 200);
    let unavailable = unavailable(1);
    set_state(&mut t, in_break, &token, "alice", unavailable, Q, "b2");
    let off_shift = set_state(&mut t, T0, &token, "eve", AVAILABLE, J, "b3");
    assert_eq!(off_shift.status, 200);
    let truth = t.ground_truth();
    assert_eq!(truth.ready_accepted_during_break, 1);
    assert_eq!(truth.accepted_while_unscheduled, 1);
    assert_eq!(truth.state_changes_accepted, 3);
}

#[test]
fn wfm_and_api_have_separate_rate_limits() {
    let mut t = tenant(SimConfig {
        wfm_rate_per_minute: 1,
        wfm_burst: 2,
        ..SimConfig::default()
    });
    let token = login(&mut t, ClientAuth::Basic).access_token;
    let alice = t.cxone_agent("alice").unwrap().user_id.clone();
    let export = wfm::export_request("https://sim.sim.invalid", &alice, T0, 1, &token);
    assert_eq!(send(&mut t, T0, &export).status, 200);
    assert_eq!(send(&mut t, T0, &export).status, 200);
    let limited = send(&mut t, T0, &export);
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("60"));
    let agents = acd::agents_request(AUTH, &ApiVersions::default(), &token, 0, 10);
    for _ in 0..5 {
        assert_eq!(send(&mut t, T0, &agents).status, 200);
    }
    assert_eq!(t.ground_truth().rate_limited, 1);

    t.set_wfm_rate_limit(600, 1).unwrap();
    assert_eq!(send(&mut t, T0 + 60 * 1000, &export).status, 200);
    assert_eq!(send(&mut t, T0 + 60 * 1000, &export).status, 429);
    assert!(t.set_wfm_rate_limit(0, 1).is_err());
}

#[test]
fn scripted_and_random_faults_reach_cxone_endpoints() {
    let mut t = tenant(SimConfig::default());
    let token = login(&mut t, ClientAuth::Basic).access_token;
    t.script_fault(FaultRule {
        user_id: Some("alice".into()),
        ..FaultRule::on(Endpoint::AgentState, FaultKind::status(503, Some(2)), 1)
    });
    let bob = set_state(&mut t, T0, &token, "bob", AVAILABLE, Q, "f1");
    assert_eq!(bob.status, 200);
    let alice = set_state(&mut t, T0, &token, "alice", AVAILABLE, Q, "f2");
    assert_eq!(
        (alice.status, alice.header("retry-after")),
        (503, Some("2"))
    );
    assert!(
        acd::refusal(AcdCall::SetAgentState, &alice).is_none(),
        "503 is retried, not refused"
    );
    let retried = set_state(&mut t, T0, &token, "alice", AVAILABLE, Q, "f2");
    assert_eq!(retried.status, 200);
    assert_eq!(t.ground_truth().faults_injected, 1);

    // A fault scripted for the export, matched by the userID in its body.
    t.script_fault(FaultRule {
        user_id: Some("bob".into()),
        ..FaultRule::on(Endpoint::ScheduleExport, FaultKind::DropBefore, 1)
    });
    let bob_uuid = t.cxone_agent("bob").unwrap().user_id.clone();
    let export = wfm::export_request(AUTH, &bob_uuid, T0, 1, &token);
    assert!(matches!(
        t.handle_request(T0, &export).outcome,
        SimOutcome::TransportError(_)
    ));

    // Random faults spare discovery and the token endpoint.
    t.set_random_faults(RandomFaults {
        rate: 1.0,
        kinds: vec![FaultKind::status(500, None)],
    })
    .unwrap();
    let openid = send(&mut t, T0, &auth::openid_configuration_request(AUTH));
    assert_eq!(openid.status, 200);
    let token = login(&mut t, ClientAuth::Body).access_token;
    let agents = acd::agents_request(AUTH, &ApiVersions::default(), &token, 0, 10);
    assert_eq!(send(&mut t, T0, &agents).status, 500);
    assert_eq!(t.ground_truth().faults_injected, 3);
}

#[test]
fn seed_json_of_a_plan_is_unchanged_and_cxone_fields_read_back() {
    let plan = AgentPlan::on_shift("alice", 1, 2);
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(
        json,
        r#"{"userId":"alice","shifts":[{"startMs":1,"endMs":2}],"breaks":[]}"#
    );
    let cxone: AgentPlan = serde_json::from_str(
        r#"{"userId":"x","shifts":[],"breaks":[],"loggedOut":[{"startMs":5,"endMs":6}],"teamId":103}"#,
    )
    .unwrap();
    assert_eq!(cxone.logged_out, [window(5, 6)]);
    assert_eq!(cxone.team_id, Some(CXONE_TEAM_C));
    let old: SimConfig = serde_json::from_str(
        r#"{"seed":1,"clientId":"c","clientSecret":"s","tokenTtlS":60,"ratePerMinute":10,"burst":5,
            "latencyMs":0,"latencyJitterMs":0,"breakNoticeMs":0,"faults":{"rate":0.0,"kinds":[]}}"#,
    )
    .unwrap();
    assert_eq!(old.wfm_rate_per_minute, 100);
    assert_eq!(old.access_key_id, "sim-access-key");
    old.validate().unwrap();

    let mut t = tenant(SimConfig::default());
    t.add_agent(AgentPlan {
        team_id: Some(CXONE_TEAM_C),
        ..AgentPlan::on_shift("alice", 0, 1)
    });
    let alice = t.cxone_agent("alice").unwrap();
    assert_eq!(
        (alice.agent_id, alice.team_id),
        (AgentId(1001), CXONE_TEAM_C)
    );
    assert_eq!(t.cxone_agent("nobody"), None);
}
