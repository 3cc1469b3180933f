//! The webhook outbox inside the engine: at-least-once delivery, in order, with backoff and dead letters.
//!
//! The reference module's `emitWebhook` posted inline with a 5 s timeout and dropped every failure. Here an
//! accepted payload (already persisted as a [`Record::Webhook`](crate::Record::Webhook)) is retried until the
//! receiver answers 2xx. A receiver that is down (no answer, 5xx, 408, 429) is waited out; one that keeps
//! *refusing* a payload (another 4xx) would hold every later payload forever, so after
//! `dead_letter_after_refusals` refusals, or once the payload is older than `dead_letter_after_ms`, it becomes a
//! dead letter (persisted, counted, replayable) and the queue moves on.
//!
//! Order: with `max_in_flight` = 1 (the default) payloads are sent strictly in order: the head waits through
//! its backoff and nothing behind it goes first. With `N > 1` the first `N` undelivered payloads are eligible.
//! An answer handed in at or after its request's deadline counts as a timeout, so the outcome never depends
//! on whether the host called `handle_timeout` first.
//!
//! Receivers: a payload belongs to the receiver it was accepted for (its entry names the URL's fingerprint).
//! A restart configured with another URL sends payloads left for the old receiver there, or sets them aside,
//! as [`ReceiverChange`] says. Those go out in a lane of their own (own order, own in-flight limit), so an
//! old receiver that is down holds up only its own payloads; they are signed with the secret configured now
//! (an earlier secret is never kept).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{check_url, loggable_url, receiver_fingerprint, ReceiverChange, WebhookConfig};
use crate::http::{HttpRequest, HttpResponse, Method, RequestId, TransportErrorKind};
use crate::log::WebhookEntry;
use crate::rng::DetRng;
use crate::time::Now;

/// The longest event id accepted (it travels in the `X-Event-Id` header).
const MAX_EVENT_ID_LEN: usize = 200;

/// The lane of the configured receiver.
const CONFIGURED: usize = 0;

#[derive(Clone, Copy, Debug)]
enum SlotState {
    /// Waiting to be sent at or after `due_mono`.
    Waiting { due_mono: u64 },
    /// Handed out; counts as failed at `deadline_mono`.
    InFlight { deadline_mono: u64 },
}

#[derive(Debug)]
struct Slot {
    entry: WebhookEntry,
    attempts: u32,
    refusals: u32,
    /// When this run took it, on the monotonic clock, and how old it already was then (carried over from an
    /// earlier run): it ages on the monotonic clock, so a stepped wall clock cannot age it.
    enqueued_mono: u64,
    prior_age_ms: u64,
    state: SlotState,
}

/// One receiver's payloads, in order: the configured receiver's, or those of an earlier receiver that a
/// restart found still waiting (see [`ReceiverChange`]). Each lane keeps its own order and in-flight limit,
/// so a receiver that is down holds up only its own payloads.
#[derive(Debug)]
struct Lane {
    /// Where its payloads go.
    url: String,
    /// Undelivered payloads by order.
    slots: BTreeMap<u64, Slot>,
}

/// A payload's place: its lane (an index into `Outbox::lanes`) and its order.
type Place = (usize, u64);

/// How one attempt failed, as a dead letter's reason tells it.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The receiver answered with this (non-2xx) status.
    Status(u16),
    /// No HTTP answer: the host's transport error.
    Transport(TransportErrorKind),
    /// No answer before the request's deadline.
    NoAnswer,
}

impl Failure {
    fn status(self) -> Option<u16> {
        match self {
            Self::Status(s) => Some(s),
            Self::Transport(_) | Self::NoAnswer => None,
        }
    }

    fn describe(self, timeout_ms: u64) -> String {
        match self {
            Self::Status(s) => format!("the receiver answered {s}"),
            Self::Transport(kind) => kind.describe().to_owned(),
            Self::NoAnswer => format!("no answer within {timeout_ms} ms"),
        }
    }
}

/// What happened to a delivery; the engine turns each into records and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    Delivered {
        event_id: String,
        attempts: u32,
    },
    Retry {
        event_id: String,
        attempt: u32,
        delay_ms: u64,
        status: Option<u16>,
    },
    DeadLettered {
        event_id: String,
        attempts: u32,
        last_status: Option<u16>,
        reason: String,
    },
}

#[derive(Debug)]
pub(crate) struct Outbox {
    config: WebhookConfig,
    /// The configured receiver's fingerprint, and its URL as the log may hold it.
    receiver: String,
    logged_url: Option<String>,
    next_order: u64,
    /// The configured receiver's lane first, then one per earlier receiver payloads still go to.
    lanes: Vec<Lane>,
    by_event: BTreeMap<String, Place>,
    in_flight: BTreeMap<RequestId, Place>,
}

/// Whether an event id can travel in a header: 1 to 200 visible ASCII characters.
pub(crate) fn valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Outbox {
    pub(crate) fn new(config: WebhookConfig) -> Self {
        Self {
            receiver: receiver_fingerprint(&config.url),
            logged_url: loggable_url(&config.url).map(str::to_owned),
            next_order: 0,
            lanes: vec![Lane {
                url: config.url.clone(),
                slots: BTreeMap::new(),
            }],
            by_event: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            config,
        }
    }

    /// The payload, bound to the configured receiver (a new one, or a dead letter being replayed).
    pub(crate) fn bind(&self, entry: WebhookEntry) -> WebhookEntry {
        WebhookEntry {
            receiver: Some(self.receiver.clone()),
            url: self.logged_url.clone(),
            ..entry
        }
    }

    /// Where a payload carried over from an earlier run goes: `Ok(None)` to the configured receiver (it was
    /// accepted for it, or its log predates receivers), `Ok(Some(url))` to the other receiver it was accepted
    /// for, `Err(reason)` nowhere: it becomes a dead letter (see [`ReceiverChange`]).
    pub(crate) fn route(&self, entry: &WebhookEntry) -> Result<Option<String>, String> {
        let Some(receiver) = entry.receiver.as_deref() else {
            return Ok(None);
        };
        if receiver == self.receiver {
            return Ok(None);
        }
        // The URL must be the one the fingerprint names, and one the engine would send to (the log is a file
        // anyone with access could edit).
        let original = entry.url.as_deref().filter(|url| {
            receiver_fingerprint(url) == receiver
                && loggable_url(url).is_some()
                && check_url(url).is_ok()
        });
        let changed = format!(
            "accepted for another webhook receiver (fingerprint {receiver}); the configured receiver changed"
        );
        match (self.config.on_receiver_change, original) {
            (ReceiverChange::DeliverToOriginal, Some(url)) => Ok(Some(url.to_owned())),
            (ReceiverChange::DeliverToOriginal, None) => Err(format!(
                "{changed}, and the original receiver's URL is not in the log (a URL with a query or user \
                 info never is)"
            )),
            (ReceiverChange::DeadLetter, _) => Err(changed),
        }
    }

    /// Queues a payload for the configured receiver, due at once, `age_ms` old already (0 for a new one). A
    /// payload whose event id is already waiting is not queued twice.
    pub(crate) fn enqueue(&mut self, entry: WebhookEntry, now: Now, age_ms: u64) -> bool {
        self.enqueue_to(None, entry, now, age_ms)
    }

    /// Queues a payload as [`enqueue`](Self::enqueue) does, for the receiver at `url` (`None`: the
    /// configured one).
    pub(crate) fn enqueue_to(
        &mut self,
        url: Option<String>,
        entry: WebhookEntry,
        now: Now,
        age_ms: u64,
    ) -> bool {
        if self.by_event.contains_key(&entry.event_id) || !valid_event_id(&entry.event_id) {
            return false;
        }
        let lane = match url {
            Some(url) if url != self.config.url => self.lane_of(url),
            _ => CONFIGURED,
        };
        self.next_order += 1;
        self.by_event
            .insert(entry.event_id.clone(), (lane, self.next_order));
        self.lanes[lane].slots.insert(
            self.next_order,
            Slot {
                entry,
                attempts: 0,
                refusals: 0,
                enqueued_mono: now.mono_ms,
                prior_age_ms: age_ms,
                state: SlotState::Waiting {
                    due_mono: now.mono_ms,
                },
            },
        );
        true
    }

    /// The lane of the receiver at `url`, opened if it has none yet.
    fn lane_of(&mut self, url: String) -> usize {
        if let Some(lane) = self.lanes.iter().position(|l| l.url == url) {
            return lane;
        }
        self.lanes.push(Lane {
            url,
            slots: BTreeMap::new(),
        });
        self.lanes.len() - 1
    }

    /// Requests of `lane` in flight.
    fn busy(&self, lane: usize) -> usize {
        self.in_flight.values().filter(|(l, _)| *l == lane).count()
    }

    fn slot_mut(&mut self, (lane, order): Place) -> Option<&mut Slot> {
        self.lanes.get_mut(lane)?.slots.get_mut(&order)
    }

    fn take_slot(&mut self, (lane, order): Place) -> Slot {
        let slot = self.lanes[lane].slots.remove(&order).expect("present");
        self.by_event.remove(&slot.entry.event_id);
        slot
    }

    /// The next due payload among the eligible ones (the first `max_in_flight` of each receiver's lane), as
    /// a request tracked under `id`; `None` if nothing is due or every slot is busy.
    pub(crate) fn start_next(&mut self, now: Now, id: RequestId) -> Option<HttpRequest> {
        let max = self.config.max_in_flight;
        let place = self.lanes.iter().enumerate().find_map(|(lane, l)| {
            if self.busy(lane) >= max {
                return None;
            }
            l.slots
                .iter()
                .take(max)
                .find(|(_, s)| matches!(s.state, SlotState::Waiting { due_mono } if due_mono <= now.mono_ms))
                .map(|(&order, _)| (lane, order))
        })?;
        let deadline_mono = now.mono_ms.saturating_add(self.config.timeout_ms);
        let slot = self.slot_mut(place).expect("found");
        slot.attempts += 1;
        slot.state = SlotState::InFlight { deadline_mono };
        self.in_flight.insert(id, place);
        Some(self.request(place))
    }

    fn request(&self, (lane, order): Place) -> HttpRequest {
        let lane = &self.lanes[lane];
        let entry = &lane.slots[&order].entry;
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Event-Id".to_owned(), entry.event_id.clone()),
        ];
        if let Some(secret) = &self.config.secret {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(entry.body.as_bytes());
            let sig = hex::encode(mac.finalize().into_bytes());
            headers.push(("X-Signature-256".to_owned(), format!("sha256={sig}")));
        }
        HttpRequest {
            method: Method::Post,
            url: lane.url.clone(),
            headers,
            body: Some(entry.body.clone()),
            timeout_ms: self.config.timeout_ms,
        }
    }

    /// Whether request `id` is one of ours.
    pub(crate) fn owns(&self, id: RequestId) -> bool {
        self.in_flight.contains_key(&id)
    }

    /// Hands in the answer to request `id`.
    pub(crate) fn answer(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<&HttpResponse, TransportErrorKind>,
        rng: &mut DetRng,
    ) -> Option<Note> {
        let place = self.in_flight.remove(&id)?;
        let slot = self.slot_mut(place)?;
        let late = matches!(slot.state, SlotState::InFlight { deadline_mono, .. } if now.mono_ms >= deadline_mono);
        let failure = match result {
            _ if late => Failure::NoAnswer,
            Ok(r) if (200..300).contains(&r.status) => {
                let slot = self.take_slot(place);
                return Some(Note::Delivered {
                    event_id: slot.entry.event_id,
                    attempts: slot.attempts,
                });
            }
            Ok(r) => {
                let refused = (400..500).contains(&r.status) && r.status != 408 && r.status != 429;
                if refused {
                    slot.refusals += 1;
                }
                let ra = r.retry_after_ms(now.unix_ms);
                return Some(self.failed(now, place, Failure::Status(r.status), ra, rng));
            }
            Err(kind) => Failure::Transport(kind),
        };
        Some(self.failed(now, place, failure, None, rng))
    }

    /// Requests past their deadline count as failed.
    pub(crate) fn expire(&mut self, now: Now, rng: &mut DetRng) -> Vec<Note> {
        let expired: Vec<(RequestId, Place)> = self
            .in_flight
            .iter()
            .filter(|(_, &(lane, order))| {
                matches!(self.lanes[lane].slots[&order].state, SlotState::InFlight { deadline_mono, .. } if deadline_mono <= now.mono_ms)
            })
            .map(|(&id, &place)| (id, place))
            .collect();
        expired
            .into_iter()
            .map(|(id, place)| {
                self.in_flight.remove(&id);
                self.failed(now, place, Failure::NoAnswer, None, rng)
            })
            .collect()
    }

    fn failed(
        &mut self,
        now: Now,
        place: Place,
        failure: Failure,
        retry_after_ms: Option<u64>,
        rng: &mut DetRng,
    ) -> Note {
        let config = &self.config;
        let status = failure.status();
        let slot = self.lanes[place.0]
            .slots
            .get_mut(&place.1)
            .expect("present");
        let age = now
            .mono_ms
            .saturating_sub(slot.enqueued_mono)
            .saturating_add(slot.prior_age_ms);
        let reason = if slot.refusals >= config.dead_letter_after_refusals {
            Some(format!(
                "the receiver refused it {} times (last status {})",
                slot.refusals,
                status.map_or_else(|| "none".to_owned(), |s| s.to_string())
            ))
        } else if age >= config.dead_letter_after_ms {
            Some(format!(
                "still undelivered {} s after it was accepted (last attempt: {})",
                age / 1000,
                failure.describe(config.timeout_ms)
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            let slot = self.take_slot(place);
            return Note::DeadLettered {
                event_id: slot.entry.event_id,
                attempts: slot.attempts,
                last_status: status,
                reason,
            };
        }
        // A receiver's Retry-After is honoured up to the policy's limit (never a reason to give up here).
        let ra = retry_after_ms.map(|ra| ra.min(config.retry.max_retry_after_ms));
        let delay_ms = config.retry.delay_ms(slot.attempts, ra, rng);
        slot.state = SlotState::Waiting {
            due_mono: now.mono_ms.saturating_add(delay_ms),
        };
        Note::Retry {
            event_id: slot.entry.event_id.clone(),
            attempt: slot.attempts,
            delay_ms,
            status,
        }
    }

    /// The earliest time anything is due: a retry, or an in-flight deadline.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let max = self.config.max_in_flight;
        let waiting = self
            .lanes
            .iter()
            .enumerate()
            .filter(|&(lane, _)| self.busy(lane) < max)
            .flat_map(|(_, l)| l.slots.values().take(max))
            .filter_map(|s| match s.state {
                SlotState::Waiting { due_mono } => Some(due_mono),
                SlotState::InFlight { .. } => None,
            });
        let in_flight = self
            .lanes
            .iter()
            .flat_map(|l| l.slots.values())
            .filter_map(|s| match s.state {
                SlotState::InFlight { deadline_mono, .. } => Some(deadline_mono),
                SlotState::Waiting { .. } => None,
            });
        waiting.chain(in_flight).min()
    }

    /// Payloads accepted and not yet delivered or set aside.
    pub(crate) fn pending(&self) -> usize {
        self.lanes.iter().map(|l| l.slots.len()).sum()
    }

    /// How long the oldest payload still pending has waited, counting its time before a restart (0 when
    /// none is pending). Each lane's first slot is its oldest.
    pub(crate) fn oldest_age_ms(&self, now: Now) -> u64 {
        self.lanes
            .iter()
            .filter_map(|l| l.slots.values().next())
            .map(|s| {
                s.prior_age_ms
                    .saturating_add(now.mono_ms.saturating_sub(s.enqueued_mono))
            })
            .max()
            .unwrap_or(0)
    }

    /// Drops every in-flight request (the engine was closed); the payloads stay pending in the log.
    pub(crate) fn forget_in_flight(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::time::http_date;

    const T0: u64 = 1_767_600_000_000;

    fn entry(id: &str) -> WebhookEntry {
        WebhookEntry {
            event_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            at_ms: T0,
            receiver: None,
            url: None,
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse::new(
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "",
        )
    }

    /// Starts the next due payload at `now` as request `id` and hands in the receiver's `response` at once.
    fn send_and_answer(
        o: &mut Outbox,
        now: Now,
        id: u64,
        response: HttpResponse,
        rng: &mut DetRng,
    ) -> Option<Note> {
        o.start_next(now, RequestId(id)).expect("a payload is due");
        o.answer(now, RequestId(id), Ok(&response), rng)
    }

    struct Ids(u64);
    impl Ids {
        fn next(&mut self) -> RequestId {
            self.0 += 1;
            RequestId(self.0)
        }
    }

    #[test]
    fn requests_carry_the_event_id_and_the_body_signature() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut o = Outbox::new(WebhookConfig {
            secret: Some(Secret::new("Jefe")),
            ..WebhookConfig::new("https://hooks.example.com/agent?k=1")
        });
        let now = Now::at(T0);
        o.enqueue(
            WebhookEntry {
                body: "what do ya want for nothing?".into(),
                ..entry("evt-1")
            },
            now,
            0,
        );
        let r = o.start_next(now, RequestId(1)).expect("due at once");
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://hooks.example.com/agent?k=1");
        assert_eq!(r.timeout_ms, 5_000);
        assert_eq!(r.header("x-event-id"), Some("evt-1"));
        assert_eq!(
            r.header("X-Signature-256"),
            Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert!(!format!("{r:?}").contains("Jefe"));
    }

    #[test]
    fn strict_order_every_entry_once_with_the_shared_retry_count() {
        let mut o = Outbox::new(WebhookConfig::new("https://h/x"));
        let mut rng = DetRng::new(1);
        let mut ids = Ids(0);
        let mut now = Now::at(T0);
        for i in 0..3 {
            assert!(o.enqueue(entry(&format!("e{i}")), now, 0));
        }
        assert!(
            !o.enqueue(entry("e1"), now, 0),
            "a waiting id is not queued twice"
        );
        let mut delivered = Vec::new();
        let mut fails = [2u32, 0, 1];
        let mut delays = Vec::new();
        for _ in 0..100 {
            while let Some(r) = o.start_next(now, ids.next()) {
                let id = RequestId(ids.0);
                let ev = r.header("x-event-id").unwrap().to_owned();
                assert!(o.start_next(now, RequestId(999)).is_none(), "one at a time");
                let k: usize = ev[1..].parse().unwrap();
                let note = if fails[k] > 0 {
                    fails[k] -= 1;
                    o.answer(now, id, Ok(&answer(503, &[])), &mut rng)
                } else {
                    o.answer(now, id, Ok(&answer(204, &[])), &mut rng)
                };
                match note.unwrap() {
                    Note::Delivered { event_id, attempts } => delivered.push((event_id, attempts)),
                    Note::Retry {
                        attempt, delay_ms, ..
                    } => delays.push((attempt, delay_ms)),
                    n => panic!("{n:?}"),
                }
            }
            match o.next_deadline() {
                Some(t) => now = Now::at(t.max(now.mono_ms)),
                None => break,
            }
        }
        assert_eq!(
            delivered,
            [("e0".into(), 3), ("e1".into(), 1), ("e2".into(), 2)]
        );
        // Retry n waits min(1000·2^n, cap) + jitter: the engine's count.
        for (attempt, d) in delays {
            let base = 1000u64 << attempt;
            assert!((base..base + 1000).contains(&d), "attempt {attempt}: {d}");
        }
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn a_refused_payload_becomes_a_dead_letter_and_the_next_flows() {
        let mut o = Outbox::new(WebhookConfig {
            dead_letter_after_refusals: 3,
            ..WebhookConfig::new("https://h/x")
        });
        let mut rng = DetRng::new(2);
        let mut now = Now::at(T0);
        o.enqueue(entry("bad"), now, 0);
        o.enqueue(entry("good"), now, 0);
        let mut notes = Vec::new();
        for n in 1..=3 {
            let r = o.start_next(now, RequestId(n)).unwrap();
            assert_eq!(r.header("x-event-id"), Some("bad"));
            notes.push(
                o.answer(now, RequestId(n), Ok(&answer(422, &[])), &mut rng)
                    .unwrap(),
            );
            if let Some(t) = o.next_deadline() {
                now = Now::at(t);
            }
        }
        assert!(
            matches!(&notes[2], Note::DeadLettered { event_id, attempts: 3, last_status: Some(422), .. } if event_id == "bad")
        );
        let r = o.start_next(now, RequestId(9)).unwrap();
        assert_eq!(r.header("x-event-id"), Some("good"));
        // 5xx and 429 are a receiver that is down, not a refusal: never dead-lettered for that.
        let mut o = Outbox::new(WebhookConfig {
            dead_letter_after_refusals: 1,
            ..WebhookConfig::new("https://h/x")
        });
        o.enqueue(entry("e"), now, 0);
        assert!(matches!(
            send_and_answer(&mut o, now, 1, answer(503, &[]), &mut rng),
            Some(Note::Retry { .. })
        ));
    }

    #[test]
    fn a_payload_ages_on_the_monotonic_clock() {
        let mut o = Outbox::new(WebhookConfig {
            dead_letter_after_ms: 60_000,
            ..WebhookConfig::new("https://h/x")
        });
        let mut rng = DetRng::new(7);
        // Carried over from an earlier run already 50 s old; the wall clock then jumps a day ahead.
        o.enqueue(entry("e"), Now::new(1_000, T0), 50_000);
        let _ = o.start_next(Now::new(1_000, T0), RequestId(1));
        let stepped = Now::new(5_000, T0 + 86_400_000);
        assert!(matches!(
            o.answer(stepped, RequestId(1), Ok(&answer(500, &[])), &mut rng),
            Some(Note::Retry { .. })
        ));
        // 11 s later on the monotonic clock it is 61 s old.
        let later = Now::new(12_000, T0);
        assert!(matches!(
            send_and_answer(&mut o, later, 2, answer(500, &[]), &mut rng),
            Some(Note::DeadLettered { .. })
        ));
    }

    #[test]
    fn the_oldest_age_counts_time_before_a_restart_on_the_monotonic_clock_and_drops_delivered_ones()
    {
        let mut o = Outbox::new(WebhookConfig::new("https://h/x"));
        let mut rng = DetRng::new(7);
        assert_eq!(o.oldest_age_ms(Now::new(1_000, T0)), 0, "none pending");
        o.enqueue(entry("a"), Now::new(1_000, T0), 50_000);
        o.enqueue(entry("b"), Now::new(2_000, T0), 0);
        // The wall clock jumping changes nothing; 50 s before the restart and 4 s since.
        assert_eq!(o.oldest_age_ms(Now::new(5_000, T0 + 86_400_000)), 54_000);
        assert_eq!(
            send_and_answer(&mut o, Now::new(5_000, T0), 1, answer(200, &[]), &mut rng),
            Some(Note::Delivered {
                event_id: "a".into(),
                attempts: 1
            })
        );
        assert_eq!(
            o.oldest_age_ms(Now::new(6_000, T0)),
            4_000,
            "b is the oldest now"
        );
    }

    #[test]
    fn an_old_payload_is_set_aside_at_its_next_failure() {
        let mut o = Outbox::new(WebhookConfig {
            dead_letter_after_ms: 60_000,
            ..WebhookConfig::new("https://h/x")
        });
        let mut rng = DetRng::new(3);
        o.enqueue(entry("e"), Now::at(T0), 0);
        let _ = o.start_next(Now::at(T0), RequestId(1));
        assert!(matches!(
            o.answer(
                Now::at(T0 + 1),
                RequestId(1),
                Err(TransportErrorKind::Connect),
                &mut rng
            ),
            Some(Note::Retry { .. })
        ));
        let later = Now::at(T0 + 61_000);
        let note = send_and_answer(&mut o, later, 2, answer(503, &[]), &mut rng);
        let Some(Note::DeadLettered {
            reason,
            last_status: Some(503),
            ..
        }) = note
        else {
            panic!("{note:?}")
        };
        assert_eq!(
            reason,
            "still undelivered 61 s after it was accepted (last attempt: the receiver answered 503)"
        );
        // A dead letter's reason names the last failure whatever it was.
        for (result, cause) in [
            (
                Err(TransportErrorKind::Connect),
                "no connection could be made",
            ),
            (Ok(answer(200, &[])), "no answer within 5000 ms"),
        ] {
            o.enqueue(entry("f"), later, 61_000);
            let _ = o.start_next(later, RequestId(3));
            // The 200 comes at the request's deadline: too late to count.
            let at = if result.is_ok() {
                T0 + 66_000
            } else {
                T0 + 61_000
            };
            let note = o.answer(
                Now::at(at),
                RequestId(3),
                result.as_ref().map_err(|k| *k),
                &mut rng,
            );
            assert!(
                matches!(&note, Some(Note::DeadLettered { reason, last_status: None, .. }) if reason.ends_with(&format!("(last attempt: {cause})"))),
                "{note:?}"
            );
        }
    }

    #[test]
    fn payloads_for_an_earlier_receiver_go_there_in_their_own_lane() {
        let old = "https://old.example/hook";
        let mut o = Outbox::new(WebhookConfig::new("https://new.example/hook"));
        let mut rng = DetRng::new(8);
        let now = Now::at(T0);
        let for_old = WebhookEntry {
            receiver: Some(receiver_fingerprint(old)),
            url: Some(old.into()),
            ..entry("o1")
        };
        assert_eq!(o.route(&for_old), Ok(Some(old.to_owned())));
        assert_eq!(
            o.route(&entry("legacy")),
            Ok(None),
            "no receiver: the configured one"
        );
        let bound = o.bind(entry("n1"));
        assert_eq!(bound.url.as_deref(), Some("https://new.example/hook"));
        assert_eq!(o.route(&bound), Ok(None));
        assert!(o.enqueue_to(Some(old.into()), for_old, now, 0));
        assert!(o.enqueue(bound, now, 0));
        // Each receiver has its own lane: both go out at once, and the old receiver, down, holds up only
        // its own payloads.
        let r = o.start_next(now, RequestId(2)).unwrap();
        assert_eq!(
            (r.url.as_str(), r.header("x-event-id")),
            ("https://new.example/hook", Some("n1"))
        );
        let r = o.start_next(now, RequestId(1)).unwrap();
        assert_eq!((r.url.as_str(), r.header("x-event-id")), (old, Some("o1")));
        assert!(
            o.start_next(now, RequestId(3)).is_none(),
            "one at a time per receiver"
        );
        assert!(matches!(
            o.answer(
                now,
                RequestId(1),
                Err(TransportErrorKind::Connect),
                &mut rng
            ),
            Some(Note::Retry { .. })
        ));
        assert!(matches!(
            o.answer(now, RequestId(2), Ok(&answer(204, &[])), &mut rng),
            Some(Note::Delivered { .. })
        ));
        assert_eq!(o.pending(), 1);
        let due = o.next_deadline().expect("the old receiver's retry");
        let r = o.start_next(Now::at(due), RequestId(4)).unwrap();
        assert_eq!(r.url, old);
    }

    #[test]
    fn a_payload_whose_receiver_cannot_be_reached_is_refused_a_route() {
        let mut o = Outbox::new(WebhookConfig::new("https://new.example/hook"));
        let with_query = "https://old.example/hook?token=sekrit";
        let unknown = WebhookEntry {
            receiver: Some(receiver_fingerprint(with_query)),
            url: None,
            ..entry("q")
        };
        let reason = o.route(&unknown).unwrap_err();
        assert!(reason.contains("another webhook receiver"), "{reason}");
        assert!(reason.contains("not in the log"), "{reason}");
        assert!(
            !reason.contains("sekrit") && !reason.contains("old.example"),
            "{reason}"
        );
        // A URL that is not the one its fingerprint names (an edited log) is not trusted either.
        let forged = WebhookEntry {
            url: Some("https://elsewhere.example/x".into()),
            ..unknown
        };
        assert!(o.route(&forged).is_err());
        // With the dead-letter policy, even a known URL is not sent to.
        o.config.on_receiver_change = ReceiverChange::DeadLetter;
        let known = WebhookEntry {
            receiver: Some(receiver_fingerprint("https://old.example/hook")),
            url: Some("https://old.example/hook".into()),
            ..entry("k")
        };
        let reason = o.route(&known).unwrap_err();
        assert!(
            reason.contains("the configured receiver changed"),
            "{reason}"
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_limit() {
        let mut o = Outbox::new(WebhookConfig::new("https://h/x"));
        let mut rng = DetRng::new(4);
        let now = Now::at(T0);
        o.enqueue(entry("e"), now, 0);
        let n = send_and_answer(
            &mut o,
            now,
            1,
            answer(429, &[("Retry-After", "30")]),
            &mut rng,
        );
        assert!(matches!(
            n,
            Some(Note::Retry {
                delay_ms: 30_000,
                status: Some(429),
                ..
            })
        ));
        let now = Now::at(T0 + 30_000);
        assert_eq!(o.next_deadline(), Some(T0 + 30_000));
        let date = http_date(now.unix_ms + 45_000);
        let n = send_and_answer(
            &mut o,
            now,
            2,
            answer(503, &[("retry-after", &date)]),
            &mut rng,
        );
        assert!(matches!(
            n,
            Some(Note::Retry {
                delay_ms: 45_000,
                ..
            })
        ));
        let now = Now::at(now.mono_ms + 45_000);
        let n = send_and_answer(
            &mut o,
            now,
            3,
            answer(503, &[("Retry-After", "999999")]),
            &mut rng,
        );
        assert!(matches!(
            n,
            Some(Note::Retry {
                delay_ms: 300_000,
                ..
            })
        ));
    }

    #[test]
    fn timeouts_retry_and_late_or_stale_answers_change_nothing() {
        let mut o = Outbox::new(WebhookConfig::new("https://h/x"));
        let mut rng = DetRng::new(5);
        let t = |ms| Now::at(T0 + ms);
        o.enqueue(entry("e"), t(0), 0);
        let _ = o.start_next(t(0), RequestId(1));
        assert_eq!(o.next_deadline(), Some(T0 + 5_000));
        assert!(o.expire(t(4_999), &mut rng).is_empty(), "early is harmless");
        let notes = o.expire(t(5_000), &mut rng);
        assert!(matches!(
            notes.as_slice(),
            [Note::Retry {
                status: None,
                attempt: 1,
                ..
            }]
        ));
        assert_eq!(
            o.answer(t(5_001), RequestId(1), Ok(&answer(200, &[])), &mut rng),
            None
        );
        assert_eq!(
            o.answer(t(5_001), RequestId(77), Ok(&answer(200, &[])), &mut rng),
            None
        );
        assert_eq!(o.pending(), 1);
        let due = o.next_deadline().unwrap();
        let _ = o.start_next(Now::at(due), RequestId(2)).unwrap();
        // An answer at its deadline counts as late even without a prior expire.
        let n = o.answer(
            Now::at(due + 5_000),
            RequestId(2),
            Ok(&answer(200, &[])),
            &mut rng,
        );
        assert!(matches!(
            n,
            Some(Note::Retry {
                attempt: 2,
                status: None,
                ..
            })
        ));
    }

    #[test]
    fn several_in_flight_up_to_the_limit() {
        let mut o = Outbox::new(WebhookConfig {
            max_in_flight: 3,
            ..WebhookConfig::new("https://h/x")
        });
        let mut rng = DetRng::new(6);
        let now = Now::at(T0);
        for i in 0..5 {
            o.enqueue(entry(&format!("e{i}")), now, 0);
        }
        let sent: Vec<String> = (1..=5)
            .filter_map(|i| o.start_next(now, RequestId(i)))
            .map(|r| r.header("x-event-id").unwrap().to_owned())
            .collect();
        assert_eq!(sent, ["e0", "e1", "e2"]);
        o.answer(now, RequestId(1), Ok(&answer(500, &[])), &mut rng);
        o.answer(now, RequestId(2), Ok(&answer(200, &[])), &mut rng);
        let r = o.start_next(now, RequestId(6)).unwrap();
        assert_eq!(r.header("x-event-id"), Some("e3"));
        assert!(o.start_next(now, RequestId(7)).is_none());
        assert_eq!(o.pending(), 4);
    }

    #[test]
    fn bad_event_ids_are_refused() {
        let mut o = Outbox::new(WebhookConfig::new("https://h/x"));
        for bad in ["", "a b", "a\r\nX-Evil: 1", "é", &"x".repeat(201)] {
            assert!(!o.enqueue(entry(bad), Now::at(T0), 0), "{bad:?}");
        }
        assert_eq!(o.pending(), 0);
    }
}
