//! The tenant-side CXone state: `agents/states`, `state-history`, the truth timeline and the activity.

use serde_json::Value;

use super::*;
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::sim::WORKDAY_EPOCH_MS;
use crate::state::READY;
use crate::time::parse_iso8601;

const T0: u64 = WORKDAY_EPOCH_MS;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const BASE: &str = "https://api.sim.invalid/inContactAPI/services/v34.0";

/// A tenant without latency or a tight rate limit, with `agents` agents on shift around T0 (teams A, B, C in
/// turn), and a token valid all day.
fn tenant_with(agents: usize, config: SimConfig) -> (SimTenant, String) {
    let mut t = SimTenant::new(SimConfig {
        latency_ms: 0,
        latency_jitter_ms: 0,
        rate_per_minute: 1_000_000,
        burst: 1_000_000,
        token_ttl_s: 86_400,
        ..config
    });
    for i in 0..agents {
        t.add_agent(AgentPlan::on_shift(
            format!("agent-{i:04}"),
            T0 - HOUR,
            T0 + 12 * HOUR,
        ));
    }
    let token = t.mint_access_token(T0 - HOUR);
    (t, token)
}

fn tenant(agents: usize) -> (SimTenant, String) {
    tenant_with(agents, SimConfig::default())
}

fn request(method: Method, url: &str, token: &str) -> HttpRequest {
    HttpRequest {
        method,
        url: url.to_owned(),
        headers: vec![("Authorization".to_owned(), format!("Bearer {token}"))],
        body: None,
        timeout_ms: 0,
    }
}

fn send(t: &mut SimTenant, now_ms: u64, req: &HttpRequest) -> HttpResponse {
    match t.handle_request(now_ms, req).outcome {
        SimOutcome::Response(r) => r,
        SimOutcome::TransportError(e) => panic!("transport error {e:?}"),
    }
}

fn get(t: &mut SimTenant, now_ms: u64, token: &str, url: &str) -> HttpResponse {
    send(t, now_ms, &request(Method::Get, url, token))
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn agent_id(t: &SimTenant, user: &str) -> u64 {
    t.cxone_agent(user).unwrap().agent_id.0
}

fn set_state(t: &mut SimTenant, now_ms: u64, token: &str, user: &str, query: &str) -> u16 {
    let url = format!("{BASE}/agents/{}/state?{query}", agent_id(t, user));
    send(t, now_ms, &request(Method::Post, &url, token)).status
}

/// The items of one `agents/states` poll (every page), and the first page's `lastPollTime`.
fn poll(t: &mut SimTenant, now_ms: u64, token: &str, since: Option<&str>) -> (Vec<Value>, String) {
    let mut url = match since {
        Some(s) => format!("{BASE}/agents/states?updatedSince={s}"),
        None => format!("{BASE}/agents/states"),
    };
    let mut items = Vec::new();
    let mut first_poll_time = None;
    loop {
        let r = get(t, now_ms, token, &url);
        assert_eq!(r.status, 200, "{}", r.body);
        let page = json(&r);
        first_poll_time.get_or_insert_with(|| page["lastPollTime"].as_str().unwrap().to_owned());
        items.extend(page["agentStates"].as_array().unwrap().iter().cloned());
        match page["_links"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    (items, first_poll_time.unwrap())
}

fn item_of(items: &[Value], agent_id: u64) -> Option<&Value> {
    items.iter().find(|i| i["agentId"] == agent_id)
}

#[test]
fn agents_states_pages_by_top_with_absolute_next_links() {
    let (mut t, token) = tenant(250);
    let mut url = format!("{BASE}/agents/states?top=100");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&mut t, T0, &token, &url);
        assert_eq!(r.status, 200, "{}", r.body);
        let page = json(&r);
        pages += 1;
        assert_eq!(page["totalRecords"], 250);
        assert_eq!(page["lastPollTime"], iso8601(T0));
        let items = page["agentStates"].as_array().unwrap();
        assert_eq!(items.len(), if pages < 3 { 100 } else { 50 });
        ids.extend(items.iter().map(|i| i["agentId"].as_u64().unwrap()));
        assert!(page["_links"]["self"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{BASE}/agents/states?")));
        assert_eq!(page["_links"]["previous"].is_null(), pages == 1);
        match page["_links"]["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    next,
                    format!("{BASE}/agents/states?top=100&skip={}", pages * 100)
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        ids,
        (1001..=1250).collect::<Vec<u64>>(),
        "every agent once, by agentId"
    );
    // Default page size 100, and `top` capped at 1000.
    let page = json(&get(&mut t, T0, &token, &format!("{BASE}/agents/states")));
    assert_eq!(page["agentStates"].as_array().unwrap().len(), 100);
    let page = json(&get(
        &mut t,
        T0,
        &token,
        &format!("{BASE}/AGENTS/States?top=5000"),
    ));
    assert_eq!(page["agentStates"].as_array().unwrap().len(), 250);
    assert!(page["_links"]["next"].is_null());
}

#[test]
fn agents_states_item_has_the_documented_shape() {
    let (mut t, token) = tenant(1);
    let (items, _) = poll(&mut t, T0, &token, None);
    let item = items[0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec![
        "agentId",
        "agentStateId",
        "agentStateName",
        "agentStateCategory",
        "outStateId",
        "outStateDescription",
        "lastUpdateTime",
        "startDate",
        "sessionStartTime",
        "teamId",
        "teamName",
        "userName",
        "firstName",
        "lastName",
        "isActive",
        "isACW",
        "isOutbound",
        "contactId",
        "skillId",
        "skillName",
        "mediaTypeId",
        "mediaTypeName",
        "openContacts",
        "stationId",
        "stationPhoneNumber",
        "fromAddress",
        "toAddress",
        "businessUnitId",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    // A session started: plain Unavailable, no code, at 0.
    assert_eq!(item["agentStateName"], "Unavailable");
    assert_eq!(item["agentStateId"], 2);
    assert_eq!(item["outStateId"], 0);
    assert_eq!(item["outStateDescription"], "");
    assert_eq!(item["lastUpdateTime"], iso8601(0));
    assert_eq!(item["startDate"], item["lastUpdateTime"]);
}

#[test]
fn updated_since_lists_only_agents_changed_since() {
    let (mut t, token) = tenant(3);
    assert_eq!(
        set_state(&mut t, T0, &token, "agent-0001", "state=Available"),
        200
    );
    let since = iso8601(T0 - 1);
    let (items, _) = poll(&mut t, T0 + 1000, &token, Some(&since));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["agentId"], 1002);
    assert_eq!(items[0]["agentStateName"], "Available");
    assert_eq!(items[0]["lastUpdateTime"], iso8601(T0));
    // `>=`: a change at exactly updatedSince is listed.
    let (items, _) = poll(&mut t, T0 + 1000, &token, Some(&iso8601(T0)));
    assert_eq!(items.len(), 1);
    let (items, _) = poll(&mut t, T0 + 1000, &token, Some(&iso8601(T0 + 1)));
    assert!(items.is_empty(), "200 with an empty list, not 204");
    let (items, _) = poll(&mut t, T0 + 1000, &token, None);
    assert_eq!(items.len(), 3);
    let r = get(
        &mut t,
        T0,
        &token,
        &format!("{BASE}/agents/states?updatedSince=yesterday"),
    );
    assert_eq!(r.status, 400);
    assert!(json(&r)["error_description"].is_string());
    assert!(r.header("icStatusDescription").is_some());
    let r = get(&mut t, T0, &token, &format!("{BASE}/agents/states?top=x"));
    assert_eq!(r.status, 400);
}

#[test]
fn agents_states_needs_a_bearer_token_and_is_rate_limited() {
    let (mut t, token) = tenant(1);
    let r = get(&mut t, T0, "wrong", &format!("{BASE}/agents/states"));
    assert_eq!(r.status, 401);
    t.set_rate_limit(1, 1).unwrap();
    assert_eq!(
        get(&mut t, T0, &token, &format!("{BASE}/agents/states")).status,
        200
    );
    assert_eq!(
        get(&mut t, T0, &token, &format!("{BASE}/agents/states")).status,
        429
    );
}

#[test]
fn last_poll_time_chaining_misses_no_change() {
    let activity = ActivityConfig {
        agent_changes_per_hour: 6.0,
        contacts_per_hour: 10.0,
        contact_mean_s: 90.0,
        supervisor_changes_per_hour: 2.0,
        log_in_out: false,
    };
    let (mut t, token) = tenant_with(
        30,
        SimConfig {
            activity,
            ..SimConfig::default()
        },
    );
    t.advance_to(T0);
    let users: Vec<String> = t.agent_user_ids().map(str::to_owned).collect();
    for user in &users {
        t.external_change(T0, user, "Available", None, TruthSource::Supervisor)
            .unwrap();
    }
    // (poll time, items) of every poll, chained through the first page's lastPollTime.
    let mut polls: Vec<(u64, Vec<Value>)> = Vec::new();
    let mut since = iso8601(T0 - 1);
    let mut now = T0;
    while now < T0 + 2 * HOUR {
        now += 37_000;
        let (items, last_poll) = poll(&mut t, now, &token, Some(&since));
        assert_eq!(parse_iso8601(&last_poll), Some(now));
        polls.push((now, items));
        since = last_poll;
    }
    let mut changes = 0;
    for user in &users {
        let id = agent_id(&t, user);
        let timeline = t.truth_timeline(user, now);
        for entry in timeline.iter().filter(|e| e.at_ms >= T0) {
            changes += 1;
            // The first poll at or after the change lists the agent, as of then or later.
            let (at, items) = polls
                .iter()
                .find(|(at, _)| *at >= entry.at_ms)
                .expect("a poll after the change");
            let item = item_of(items, id).unwrap_or_else(|| {
                panic!(
                    "{user}: change at {} missed by the poll at {at}",
                    entry.at_ms
                )
            });
            let seen = parse_iso8601(item["lastUpdateTime"].as_str().unwrap()).unwrap();
            assert!(seen >= entry.at_ms);
        }
        // The last listing of each agent is its true current state.
        let last = polls
            .iter()
            .rev()
            .find_map(|(_, items)| item_of(items, id))
            .unwrap();
        let truth = timeline.last().unwrap();
        assert_eq!(last["agentStateName"], truth.state_name.as_str());
        assert_eq!(last["agentStateId"], truth.state_id);
        assert_eq!(last["outStateId"], truth.out_state_id.unwrap_or(0));
    }
    assert!(changes > 500, "the activity made changes: {changes}");
}

#[test]
fn state_ids_and_names_follow_the_table() {
    let (mut t, token) = tenant(1);
    let id = agent_id(&t, "agent-0000");
    let table = [
        ("LoggedOut", 0),
        ("Available", 1),
        ("Unavailable", 2),
        ("InboundContact", 3),
        ("OutboundContact", 4),
        ("InboundConsult", 5),
        ("OutboundConsult", 6),
        ("Dialer", 7),
        ("LoggedIn", 8),
    ];
    for (i, (name, state_id)) in table.into_iter().enumerate() {
        let at = T0 + i as u64 * MIN;
        t.external_change(
            at,
            "agent-0000",
            &name.to_lowercase(),
            None,
            TruthSource::Agent,
        )
        .unwrap();
        let (items, _) = poll(&mut t, at, &token, None);
        let item = item_of(&items, id).unwrap();
        assert_eq!(item["agentStateName"], name);
        assert_eq!(item["agentStateId"], state_id);
        let on_contact = (3..=7).contains(&state_id);
        assert_eq!(item["openContacts"], u8::from(on_contact), "{name}");
        assert_eq!(item["isOutbound"], matches!(state_id, 4 | 6 | 7), "{name}");
        assert_eq!(item["contactId"] != 0, on_contact, "{name}");
        let truth = t.truth_timeline("agent-0000", at);
        assert_eq!(truth.last().unwrap().state_id, state_id);
    }
}

#[test]
fn set_agent_state_with_a_code_shows_out_state_id_and_description() {
    let (mut t, token) = tenant(2);
    // agent-0000 is in team A (Lunch = 2), agent-0001 in team B (Lunch = 22).
    assert_eq!(
        set_state(
            &mut t,
            T0,
            &token,
            "agent-0000",
            "state=Unavailable&outStateId=2"
        ),
        200
    );
    assert_eq!(
        set_state(
            &mut t,
            T0,
            &token,
            "agent-0001",
            "state=Unavailable&outStateId=22"
        ),
        200
    );
    let (items, _) = poll(&mut t, T0 + 1, &token, None);
    for (item, out_state_id) in items.iter().zip([2, 22]) {
        assert_eq!(item["agentStateName"], "Unavailable");
        assert_eq!(item["agentStateId"], 2);
        assert_eq!(item["outStateId"], out_state_id);
        assert_eq!(item["outStateDescription"], "Lunch");
        assert_eq!(item["lastUpdateTime"], iso8601(T0));
    }
    let truth = t.truth_timeline("agent-0000", T0 + 1);
    assert_eq!(
        truth.last().unwrap(),
        &TruthEntry {
            at_ms: T0,
            state_name: "Unavailable".into(),
            state_id: 2,
            out_state_id: Some(2),
            code: Some("Lunch".into()),
            source: TruthSource::Api,
        }
    );
    // The string state and the ground truth are as before.
    assert_eq!(t.agent_state("agent-0000"), Some("UNAVAILABLE_LUNCH"));
    assert_eq!(t.ground_truth().state_changes_accepted, 2);
}

#[test]
fn a_scripted_503_reaches_agents_states() {
    let (mut t, token) = tenant(1);
    t.script_fault(FaultRule::on(
        Endpoint::AgentStates,
        FaultKind::status(503, Some(3)),
        1,
    ));
    let r = get(&mut t, T0, &token, &format!("{BASE}/agents/states"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert!(r.header("icStatusDescription").is_some());
    assert_eq!(
        get(&mut t, T0, &token, &format!("{BASE}/agents/states")).status,
        200
    );
    let truth = t.ground_truth();
    assert_eq!(truth.requests_by_endpoint["agentStates"], 2);
    assert_eq!(truth.faults_injected, 1);
    // And on the history, for one agent only.
    t.script_fault(FaultRule {
        user_id: Some("agent-0000".into()),
        ..FaultRule::on(Endpoint::StateHistory, FaultKind::status(503, None), 1)
    });
    let url = format!("{BASE}/agents/1001/state-history");
    assert_eq!(get(&mut t, T0, &token, &url).status, 503);
    assert_eq!(get(&mut t, T0, &token, &url).status, 200);
}

#[test]
fn state_history_lists_stretches_with_durations() {
    let (mut t, token) = tenant(1);
    let user = "agent-0000";
    t.external_change(T0, user, "Available", None, TruthSource::Agent)
        .unwrap();
    t.external_change(
        T0 + 10 * MIN,
        user,
        "Unavailable",
        Some("Break"),
        TruthSource::Supervisor,
    )
    .unwrap();
    assert_eq!(
        set_state(&mut t, T0 + 25 * MIN, &token, user, "state=Available"),
        200
    );
    let now = T0 + 30 * MIN + 500;
    let url = format!("{BASE}/agents/1001/state-history");
    let all = json(&get(&mut t, now, &token, &url));
    let all = all["agentStateHistory"].as_array().unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[0]["agentStateName"], "Unavailable");
    assert_eq!(all[0]["startDate"], iso8601(0));
    assert_eq!(all[1]["agentStateName"], "Available");
    assert_eq!(all[1]["duration"], 600);
    assert_eq!(all[2]["agentStateId"], 2);
    assert_eq!(all[2]["outStateId"], 1);
    assert_eq!(all[2]["outStateDescription"], "Break");
    assert_eq!(all[2]["duration"], 900);
    assert_eq!(all[3]["stateIndex"], 3);
    assert_eq!(all[3]["startDate"], iso8601(T0 + 25 * MIN));
    assert_eq!(all[3]["duration"], 300, "the current stretch, up to now");
    assert_eq!(all[3]["outStateId"], 0);

    let range = format!(
        "{url}?startDate={}&endDate={}",
        iso8601(T0 + 12 * MIN),
        iso8601(T0 + 20 * MIN)
    );
    let some = json(&get(&mut t, now, &token, &range));
    let some = some["agentStateHistory"].as_array().unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[0]["stateIndex"], 2);
    let bad = format!("{url}?startDate=soon");
    assert_eq!(get(&mut t, now, &token, &bad).status, 400);
    let backwards = format!(
        "{url}?startDate={}&endDate={}",
        iso8601(T0),
        iso8601(T0 - 1)
    );
    assert_eq!(get(&mut t, now, &token, &backwards).status, 400);
    let unknown = format!("{BASE}/agents/9999/state-history");
    assert_eq!(get(&mut t, now, &token, &unknown).status, 404);
}

fn busy() -> ActivityConfig {
    ActivityConfig {
        agent_changes_per_hour: 3.0,
        contacts_per_hour: 8.0,
        contact_mean_s: 120.0,
        supervisor_changes_per_hour: 1.0,
        log_in_out: true,
    }
}

/// Every agent's truth timeline after a day of activity under `seed`.
fn day_of_activity(seed: u64) -> Vec<Vec<TruthEntry>> {
    let (mut t, _) = tenant_with(
        5,
        SimConfig {
            seed,
            activity: busy(),
            ..SimConfig::default()
        },
    );
    t.advance_to(T0 - 2 * HOUR);
    // Materialised in uneven steps: the result must not depend on them.
    let mut now = T0 - 2 * HOUR;
    for step in [1, 7_000, 3 * MIN, HOUR, 13, 5 * HOUR] {
        now += step;
        t.advance_to(now);
    }
    let users: Vec<String> = t.agent_user_ids().map(str::to_owned).collect();
    users
        .iter()
        .map(|u| t.truth_timeline(u, T0 + 14 * HOUR))
        .collect()
}

#[test]
fn activity_is_deterministic_per_seed() {
    let a = day_of_activity(7);
    assert!(a.iter().all(|timeline| timeline.len() > 20), "{a:?}");
    assert_eq!(a, day_of_activity(7));
    assert_ne!(a, day_of_activity(8));
    // Another materialisation pattern, same events.
    let (mut t, _) = tenant_with(
        5,
        SimConfig {
            seed: 7,
            activity: busy(),
            ..SimConfig::default()
        },
    );
    t.advance_to(T0 - 2 * HOUR);
    let users: Vec<String> = t.agent_user_ids().map(str::to_owned).collect();
    let b: Vec<Vec<TruthEntry>> = users
        .iter()
        .map(|u| t.truth_timeline(u, T0 + 14 * HOUR))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn activity_does_not_touch_the_shared_generator() {
    // The same requests answer at the same times with and without the activity.
    let latencies = |activity: ActivityConfig| {
        let (mut t, token) = tenant_with(
            3,
            SimConfig {
                activity,
                ..SimConfig::default()
            },
        );
        t.config.latency_jitter_ms = 50;
        (0..50)
            .map(|i| {
                let req = request(Method::Get, &format!("{BASE}/agents"), &token);
                t.handle_request(T0 + i * MIN, &req).deliver_at_ms - (T0 + i * MIN)
            })
            .collect::<Vec<u64>>()
    };
    let off = latencies(ActivityConfig::default());
    assert!(off.iter().any(|&l| l != off[0]), "jitter is drawn");
    assert_eq!(off, latencies(busy()));
}

#[test]
fn activity_is_off_by_default() {
    let (mut t, token) = tenant(4);
    assert_eq!(SimConfig::default().activity, ActivityConfig::default());
    // The default is left out of the JSON, so configurations serialise as before.
    let value = serde_json::to_value(SimConfig::default()).unwrap();
    assert!(value.get("activity").is_none());
    let back: SimConfig = serde_json::from_value(value).unwrap();
    assert_eq!(back, SimConfig::default());
    for i in 0..8 {
        get(&mut t, T0 + i * HOUR, &token, &format!("{BASE}/agents"));
    }
    let users: Vec<String> = t.agent_user_ids().map(str::to_owned).collect();
    for user in &users {
        let timeline = t.truth_timeline(user, T0 + 8 * HOUR);
        assert_eq!(timeline.len(), 1, "{user}: {timeline:?}");
        assert_eq!(timeline[0].state_name, "Unavailable");
        assert_eq!(timeline[0].at_ms, 0);
        assert_eq!(timeline[0].source, TruthSource::Session);
        assert_eq!(t.agent_state(user), None, "the string state is untouched");
    }
}

#[test]
fn activity_rates_are_roughly_honoured_over_eight_hours() {
    let agents = 50;
    let (mut t, _) = tenant_with(
        agents,
        SimConfig {
            activity: ActivityConfig {
                agent_changes_per_hour: 4.0,
                ..ActivityConfig::default()
            },
            ..SimConfig::default()
        },
    );
    t.advance_to(T0);
    let users: Vec<String> = t.agent_user_ids().map(str::to_owned).collect();
    let count = |t: &mut SimTenant, source: TruthSource| {
        users
            .iter()
            .map(|u| {
                t.truth_timeline(u, T0 + 8 * HOUR)
                    .iter()
                    .filter(|e| e.source == source)
                    .count()
            })
            .sum::<usize>()
    };
    // Every event of the agent's own changes a state: expect 50 × 8 h × 4 = 1600.
    let own = count(&mut t, TruthSource::Agent);
    assert!((1350..=1850).contains(&own), "{own}");
    for user in &users {
        let timeline = t.truth_timeline(user, T0 + 8 * HOUR);
        for e in timeline.iter().filter(|e| e.source == TruthSource::Agent) {
            if e.state_name == "Unavailable" {
                let code = e.code.as_deref();
                assert!(code != Some("ACW"), "never an ACW code");
                // Team C has no codes: plain Unavailable.
                assert_eq!(code.is_some(), e.out_state_id.is_some());
            }
        }
    }

    // Contacts: only while Available, mean duration as configured.
    let (mut t, _) = tenant_with(
        agents,
        SimConfig {
            activity: ActivityConfig {
                contacts_per_hour: 6.0,
                contact_mean_s: 120.0,
                ..ActivityConfig::default()
            },
            ..SimConfig::default()
        },
    );
    t.advance_to(T0);
    for user in &users {
        t.external_change(T0, user, "Available", None, TruthSource::Agent)
            .unwrap();
    }
    let (mut contacts, mut consults, mut total_ms) = (0u64, 0u64, 0u64);
    for user in &users {
        let timeline = t.truth_timeline(user, T0 + 8 * HOUR);
        for pair in timeline.windows(2) {
            if pair[0].source == TruthSource::Acd && pair[0].state_name != "Available" {
                contacts += 1;
                consults += u64::from(pair[0].state_name.contains("Consult"));
                assert_eq!(pair[1].state_name, "Available");
                assert_eq!(pair[1].source, TruthSource::Acd);
                total_ms += pair[1].at_ms - pair[0].at_ms;
            }
        }
    }
    // Offered 50 × 8 × 6 = 2400, taken while Available (about 1/(1 + 6 × 120/3600) of the time): ~2000.
    assert!((1700..=2300).contains(&contacts), "{contacts}");
    assert!(
        consults > 0 && consults * 4 < contacts,
        "{consults} of {contacts}"
    );
    let mean_s = total_ms as f64 / contacts as f64 / 1000.0;
    assert!((100.0..=140.0).contains(&mean_s), "{mean_s}");
}

#[test]
fn an_api_change_during_a_contact_ends_it() {
    let (mut t, token) = tenant_with(
        1,
        SimConfig {
            activity: ActivityConfig {
                contacts_per_hour: 30.0,
                contact_mean_s: 600.0,
                ..ActivityConfig::default()
            },
            ..SimConfig::default()
        },
    );
    let user = "agent-0000";
    t.advance_to(T0);
    t.external_change(T0, user, "Available", None, TruthSource::Agent)
        .unwrap();
    // Look ahead on a twin (same seed, same calls) for when the first contact starts.
    let (mut twin, _) = tenant_with(
        1,
        SimConfig {
            activity: t.config().activity.clone(),
            ..SimConfig::default()
        },
    );
    twin.advance_to(T0);
    twin.external_change(T0, user, "Available", None, TruthSource::Agent)
        .unwrap();
    let start = twin
        .truth_timeline(user, T0 + 4 * HOUR)
        .into_iter()
        .find(|e| e.source == TruthSource::Acd)
        .expect("a contact within 4 h");
    assert!(start.state_name.ends_with("Contact") || start.state_name.ends_with("Consult"));

    let at = start.at_ms + 500;
    let (items, _) = poll(&mut t, at, &token, None);
    assert_eq!(items[0]["agentStateName"], start.state_name.as_str());
    assert_eq!(items[0]["openContacts"], 1);
    assert_eq!(
        set_state(&mut t, at, &token, user, "state=Unavailable&outStateId=1"),
        200
    );
    let timeline = t.truth_timeline(user, at + 4 * HOUR);
    let tail: Vec<_> = timeline.iter().filter(|e| e.at_ms >= start.at_ms).collect();
    assert_eq!(tail.len(), 2, "the contact's own end never comes: {tail:?}");
    assert_eq!(tail[1].source, TruthSource::Api);
    assert_eq!(tail[1].code.as_deref(), Some("Break"));
    let (items, _) = poll(&mut t, at + 1, &token, None);
    assert_eq!(items[0]["openContacts"], 0);
    assert_eq!(items[0]["contactId"], 0);
}

#[test]
fn external_changes_are_not_accepted_changes() {
    let (mut t, _) = tenant(3);
    t.external_change(
        T0,
        "agent-0000",
        "Unavailable",
        Some("Lunch"),
        TruthSource::Supervisor,
    )
    .unwrap();
    assert_eq!(t.agent_state("agent-0000"), Some("UNAVAILABLE_LUNCH"));
    t.external_change(T0, "agent-0001", "Available", None, TruthSource::Agent)
        .unwrap();
    assert_eq!(t.agent_state("agent-0001"), Some(READY));
    t.external_change(T0, "agent-0002", "InboundContact", None, TruthSource::Acd)
        .unwrap();
    assert_eq!(t.agent_state("agent-0002"), Some("INBOUND_CONTACT"));
    t.external_change(
        T0 + 1,
        "agent-0002",
        "LoggedOut",
        None,
        TruthSource::Session,
    )
    .unwrap();
    assert_eq!(t.agent_state("agent-0002"), Some("LOGGED_OUT"));
    assert!(t.accepted_changes().is_empty());
    assert_eq!(t.ground_truth().state_changes_accepted, 0);
    let last = t.truth_timeline("agent-0000", T0).pop().unwrap();
    assert_eq!(last.source, TruthSource::Supervisor);
    assert_eq!(last.out_state_id, Some(2));

    assert!(t
        .external_change(T0, "nobody", "Available", None, TruthSource::Agent)
        .is_err());
    assert!(t
        .external_change(T0, "agent-0000", "Asleep", None, TruthSource::Agent)
        .is_err());
    assert!(t
        .external_change(
            T0,
            "agent-0000",
            "Unavailable",
            Some("Nap"),
            TruthSource::Agent
        )
        .is_err());
    assert!(t
        .external_change(
            T0,
            "agent-0000",
            "Available",
            Some("Lunch"),
            TruthSource::Agent
        )
        .is_err());
    // Team C has no codes at all.
    assert!(t
        .external_change(
            T0,
            "agent-0002",
            "Unavailable",
            Some("Lunch"),
            TruthSource::Agent
        )
        .is_err());
}

#[test]
fn logged_out_agents_refuse_set_agent_state() {
    let (mut t, token) = tenant(1);
    t.external_change(T0, "agent-0000", "LoggedOut", None, TruthSource::Supervisor)
        .unwrap();
    assert_eq!(
        set_state(&mut t, T0 + 1, &token, "agent-0000", "state=Available"),
        409
    );
    assert!(t.accepted_changes().is_empty());
}

#[test]
fn plan_logged_out_windows_and_shifts_drive_the_session() {
    let (mut t, token) = tenant_with(
        0,
        SimConfig {
            activity: ActivityConfig {
                log_in_out: true,
                ..ActivityConfig::default()
            },
            ..SimConfig::default()
        },
    );
    t.add_agent(AgentPlan {
        logged_out: vec![Window {
            start_ms: T0 + 2 * HOUR,
            end_ms: T0 + 3 * HOUR,
        }],
        ..AgentPlan::on_shift("shifty", T0, T0 + 8 * HOUR)
    });
    t.advance_to(T0 - HOUR);
    let (items, _) = poll(&mut t, T0 - HOUR, &token, None);
    assert_eq!(items[0]["agentStateName"], "LoggedOut");
    assert!(items[0]["sessionStartTime"].is_null());
    assert_eq!(
        set_state(&mut t, T0 - HOUR, &token, "shifty", "state=Available"),
        409
    );
    let timeline = t.truth_timeline("shifty", T0 + 10 * HOUR);
    let sessions: Vec<(u64, &str)> = timeline
        .iter()
        .map(|e| (e.at_ms, e.state_name.as_str()))
        .collect();
    assert_eq!(
        sessions,
        [
            (0, "LoggedOut"),
            (T0, "LoggedIn"),
            (T0, "Unavailable"),
            (T0 + 2 * HOUR, "LoggedOut"),
            (T0 + 3 * HOUR, "LoggedIn"),
            (T0 + 3 * HOUR, "Unavailable"),
            (T0 + 8 * HOUR, "LoggedOut"),
        ]
    );
    assert!(timeline.iter().all(|e| e.source == TruthSource::Session));
}

#[test]
fn activity_settings_are_validated() {
    let mut t = SimTenant::new(SimConfig::default());
    for bad in [
        ActivityConfig {
            agent_changes_per_hour: -1.0,
            ..ActivityConfig::default()
        },
        ActivityConfig {
            contact_mean_s: f64::NAN,
            ..ActivityConfig::default()
        },
        ActivityConfig {
            supervisor_changes_per_hour: f64::INFINITY,
            ..ActivityConfig::default()
        },
    ] {
        let err = t.set_activity(bad.clone()).unwrap_err();
        assert!(err.to_string().contains("activity."), "{err}");
        let config = SimConfig {
            activity: bad,
            ..SimConfig::default()
        };
        assert!(config.validate().is_err());
    }
    assert_eq!(t.config().activity, ActivityConfig::default());
    let partial: ActivityConfig = serde_json::from_str(r#"{"contactsPerHour":2}"#).unwrap();
    assert_eq!(partial.contacts_per_hour, 2.0);
    assert_eq!(partial.contact_mean_s, 180.0);
    t.set_activity(partial).unwrap();
    assert_eq!(t.config().activity.contacts_per_hour, 2.0);
}

#[test]
fn set_activity_turns_the_activity_on_from_the_tenant_clock() {
    let (mut t, _) = tenant(2);
    t.advance_to(T0);
    assert_eq!(t.truth_timeline("agent-0000", T0 + HOUR).len(), 1);
    t.set_activity(ActivityConfig {
        agent_changes_per_hour: 20.0,
        ..ActivityConfig::default()
    })
    .unwrap();
    let timeline = t.truth_timeline("agent-0000", T0 + 3 * HOUR);
    assert!(timeline.len() > 10, "{timeline:?}");
    assert!(timeline[1..].iter().all(|e| e.at_ms > T0 + HOUR));
    t.set_activity(ActivityConfig::default()).unwrap();
    let before = t.truth_timeline("agent-0000", T0 + 3 * HOUR).len();
    assert_eq!(t.truth_timeline("agent-0000", T0 + 9 * HOUR).len(), before);
}

#[test]
fn the_route_for_agents_states_is_not_an_agent() {
    assert!(matches!(
        Route::parse(Method::Get, "/incontactapi/services/v2.0/agents/states"),
        Route::Cxone(cxone::CxoneRoute::AgentStates)
    ));
    assert!(matches!(
        Route::parse(
            Method::Get,
            "/inContactAPI/services/v34.0/agents/1001/State-History"
        ),
        Route::Cxone(cxone::CxoneRoute::StateHistory(_))
    ));
    assert!(matches!(
        Route::parse(Method::Post, "/inContactAPI/services/v34.0/agents/states"),
        Route::NotFound
    ));
}
