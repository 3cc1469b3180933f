//! A webhook payload belongs to the receiver it was accepted for: when the configured webhook URL changes
//! between two runs, a payload still waiting for the old receiver goes there (if the log knows its URL) or
//! becomes a dead letter, as `WebhookConfig::on_receiver_change` says, and the restart reports it.

use cxone_agent_state_core::sim::{
    AgentPlan, Harness, ReceiverAnswer, SimConfig, SimTenant, Window,
};
use cxone_agent_state_core::{
    receiver_fingerprint, Engine, EngineConfig, Event, LogState, Now, Output, ReceiverChange,
    Record, Target, WebhookConfig,
};

const T0: u64 = cxone_agent_state_core::sim::WORKDAY_EPOCH_MS;
const HOUR: u64 = 3_600_000;
const OLD: &str = "https://old.example/hook";
const NEW: &str = "https://new.example/hook";

fn config(webhook: Option<WebhookConfig>) -> EngineConfig {
    let mut cfg = Harness::engine_config_for_tenant(&SimConfig::default(), 7);
    cfg.webhook = webhook;
    cfg
}

/// A run whose receiver at `url` is down: one change is made, and its payload is still waiting when the run
/// ends.
fn run_with_receiver_down(url: &str) -> Harness {
    let mut tenant = SimTenant::new(SimConfig::default());
    tenant.add_agent(AgentPlan {
        user_id: "alice".into(),
        shifts: vec![Window {
            start_ms: T0 - HOUR,
            end_ms: T0 + 10 * HOUR,
        }],
        breaks: vec![],
        ..AgentPlan::default()
    });
    let engine = Engine::new(config(Some(WebhookConfig::new(url)))).unwrap();
    let mut h = Harness::new(engine, tenant, T0);
    h.receiver.default = ReceiverAnswer::Drop;
    h.transition("alice", "READY");
    h.drive_until(T0 + 20_000);
    let waiting: Vec<_> = h.log_state().undelivered().cloned().collect();
    assert_eq!(waiting.len(), 1, "the payload is still waiting");
    assert_eq!(
        waiting[0].receiver.as_deref(),
        Some(receiver_fingerprint(url).as_str())
    );
    h.receiver.default = ReceiverAnswer::Status(204);
    h.record_requests(true);
    h
}

fn webhook_urls(h: &Harness) -> Vec<String> {
    h.requests()
        .iter()
        .filter(|(_, r)| r.header("x-event-id").is_some())
        .map(|(_, r)| r.url.clone())
        .collect()
}

fn dead_letter_reasons(h: &Harness) -> Vec<String> {
    h.records()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::DeadLetter(d) => Some(d.reason.clone()),
            _ => None,
        })
        .collect()
}

fn receiver_config(url: &str, policy: ReceiverChange) -> EngineConfig {
    config(Some(WebhookConfig {
        on_receiver_change: policy,
        ..WebhookConfig::new(url)
    }))
}

/// Restarts a second later with `config`; returns what the restore did with webhooks: (put back in line, of
/// those for their original receiver, set aside because the receiver changed, dead letters held).
fn restart(h: &mut Harness, config: EngineConfig) -> (usize, usize, usize, usize) {
    let r = h.restart_with(config, 1_000);
    (
        r.webhooks,
        r.webhooks_to_original_receiver,
        r.webhooks_dead_lettered_receiver_changed,
        r.dead_letters,
    )
}

#[test]
fn a_payload_for_the_old_receiver_is_delivered_there_after_the_url_changed() {
    let mut h = run_with_receiver_down(OLD);
    assert_eq!(
        restart(
            &mut h,
            receiver_config(NEW, ReceiverChange::DeliverToOriginal)
        ),
        (1, 1, 0, 0)
    );
    h.drive().unwrap();
    assert_eq!(
        webhook_urls(&h),
        [OLD],
        "sent to the old receiver, not the new one"
    );
    assert_eq!(h.receiver.accepted.len(), 1);
    assert_eq!(h.log_state().undelivered().count(), 0);
    assert!(h
        .events()
        .iter()
        .any(|(_, e)| matches!(e, Event::WebhookDelivered(_))));
}

#[test]
fn a_payload_whose_old_receiver_url_had_a_query_becomes_a_dead_letter() {
    let old = "https://old.example/hook?token=sekrit";
    let mut h = run_with_receiver_down(old);
    assert_eq!(
        restart(
            &mut h,
            receiver_config(NEW, ReceiverChange::DeliverToOriginal)
        ),
        (0, 0, 1, 1)
    );
    h.drive().unwrap();
    assert!(webhook_urls(&h).is_empty(), "{:?}", webhook_urls(&h));
    let reasons = dead_letter_reasons(&h);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("another webhook receiver") && reasons[0].contains("not in the log"),
        "{}",
        reasons[0]
    );
    assert!(h.events().iter().any(|(_, e)| matches!(
        e,
        Event::WebhookDeadLettered(d) if d.attempts == 0 && d.reason == reasons[0]
    )));
    // Neither run wrote the old URL's query (or any of the old URL) to the log.
    for (_, r) in h.records() {
        let line = String::from_utf8(r.to_line()).unwrap();
        assert!(
            !line.contains("sekrit") && !line.contains("old.example"),
            "{line}"
        );
    }
}

#[test]
fn the_dead_letter_policy_sets_a_payload_for_the_old_receiver_aside() {
    let mut h = run_with_receiver_down(OLD);
    assert_eq!(
        restart(&mut h, receiver_config(NEW, ReceiverChange::DeadLetter)),
        (0, 0, 1, 1)
    );
    h.drive().unwrap();
    assert!(webhook_urls(&h).is_empty());
    let reasons = dead_letter_reasons(&h);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains(&receiver_fingerprint(OLD))
            && reasons[0].contains("the configured receiver changed"),
        "{}",
        reasons[0]
    );
}

#[test]
fn a_payload_from_a_log_without_receivers_goes_to_the_configured_one() {
    // A webhook line as logs written before receivers were recorded hold it.
    let line = format!(r#"{{"kind":"webhook","eventId":"evt-1","body":"{{}}","atMs":{T0}}}"#);
    let mut state = LogState::default();
    state
        .apply(&Record::parse_line(line.as_bytes()).unwrap())
        .unwrap();
    let mut engine = Engine::new(receiver_config(NEW, ReceiverChange::DeadLetter)).unwrap();
    let restored = engine.restore(Now::at(T0 + 1_000), state);
    assert_eq!(
        (
            restored.webhooks,
            restored.webhooks_to_original_receiver,
            restored.webhooks_dead_lettered_receiver_changed
        ),
        (1, 0, 0)
    );
    let sent: Vec<String> = engine
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Transmit(t) if t.target == Target::Webhook => Some(t.request.url),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [NEW]);
}

#[test]
fn a_replayed_payload_belongs_to_the_receiver_it_was_replayed_for() {
    let mut h = run_with_receiver_down(OLD);
    let new_config = receiver_config(NEW, ReceiverChange::DeadLetter);
    assert_eq!(restart(&mut h, new_config.clone()), (0, 0, 1, 1));
    // The operator replays it to the new receiver, which is down too.
    h.receiver.default = ReceiverAnswer::Drop;
    let now = h.now();
    assert_eq!(h.engine.replay_dead_letters(now, None), 1);
    h.drive_until(h.now_ms() + 5_000);
    let replayed = h.records().iter().find_map(|(_, r)| match r {
        Record::Replayed(r) => Some(r.clone()),
        _ => None,
    });
    let replayed = replayed.expect("a replayed record");
    assert_eq!(replayed.receiver, Some(receiver_fingerprint(NEW)));
    assert_eq!(replayed.url.as_deref(), Some(NEW));
    assert_eq!(h.log_state().undelivered().count(), 1);
    // The next run, still with the dead-letter policy, sends it to the new receiver: it is its own now.
    h.receiver.default = ReceiverAnswer::Status(204);
    let before = webhook_urls(&h).len();
    assert_eq!(restart(&mut h, new_config), (1, 0, 0, 0));
    h.drive().unwrap();
    let urls = webhook_urls(&h);
    assert!(
        !urls[before..].is_empty() && urls[before..].iter().all(|u| u == NEW),
        "{urls:?}"
    );
    assert_eq!(h.receiver.accepted.len(), 1);
    assert_eq!(h.log_state().undelivered().count(), 0);
}

#[test]
fn without_a_receiver_configured_payloads_stay_in_the_log_as_they_are() {
    let mut h = run_with_receiver_down(OLD);
    assert_eq!(restart(&mut h, config(None)), (0, 0, 0, 0));
    h.drive().unwrap();
    assert!(webhook_urls(&h).is_empty());
    let waiting: Vec<_> = h.log_state().undelivered().cloned().collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].url.as_deref(), Some(OLD));
}
