//! Webhook outbox: at-least-once delivery of webhook payloads as a sans-IO state machine. See [`Outbox`].

use std::collections::{BTreeMap, VecDeque};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;
use crate::error::ConfigError;
use crate::http::{HttpRequest, HttpResponse, Method, RequestId, TransportErrorKind};
use crate::retry::RetryPolicy;
use crate::rng::DetRng;

/// The longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;
/// The longest event id accepted (it travels in the `X-Event-Id` header).
const MAX_EVENT_ID_LEN: usize = 200;

/// Checks a webhook URL: `https://host[:port][/path][?query]`, or `http://` for a loopback host only
/// (`localhost`, a `127.x.y.z` dotted quad, `[::1]`).
///
/// Refused: other schemes, an empty or malformed host, a bad port, user info (`user:pass@`, because
/// credentials in URLs end up in logs), a fragment, whitespace, control or non-ASCII characters (percent-encode
/// or punycode them). The error's reason names what is wrong and never echoes any part of the URL, whose
/// query or user info may carry secrets.
pub fn validate_webhook_url(url: &str) -> Result<(), ConfigError> {
    let refuse = |reason: &str| {
        Err(ConfigError::WebhookUrl {
            reason: reason.to_owned(),
        })
    };
    if url.is_empty() {
        return refuse("the URL is empty");
    }
    if url.len() > MAX_URL_LEN {
        return refuse("the URL is longer than 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("the URL contains whitespace or control characters");
    }
    if !url.is_ascii() {
        return refuse("the URL contains non-ASCII characters (percent-encode or punycode them)");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("not an absolute URL (expected https://host/...)");
    };
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return refuse("the scheme must be https (http is allowed for loopback hosts only)");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.contains('#') {
        return refuse("the URL must not have a fragment");
    }
    if authority.contains('@') {
        return refuse("the URL must not contain credentials (user info before '@')");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((literal, after)) = bracketed.split_once(']') else {
            return refuse("unterminated IPv6 literal in the host");
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return refuse("unexpected characters after the IPv6 literal"),
            },
        };
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return refuse("the host is not a valid IPv6 literal");
        }
        (Host::Ipv6(literal), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return refuse("the host is empty");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return refuse("the host contains characters not allowed in a host name");
        }
        (Host::Name(host), port)
    };
    if let Some(p) = port {
        let valid = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n));
        if !valid {
            return refuse("the port must be a number from 1 to 65535");
        }
    }
    if !https && !host.is_loopback() {
        return refuse("plain http is allowed for loopback hosts only; use https");
    }
    Ok(())
}

/// A parsed host, for the loopback check.
enum Host<'a> {
    Name(&'a str),
    Ipv6(&'a str),
}

impl Host<'_> {
    fn is_loopback(&self) -> bool {
        match self {
            Self::Name(h) => {
                h.eq_ignore_ascii_case("localhost")
                    || h.parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Self::Ipv6(h) => h
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback()),
        }
    }
}

/// Outbox settings. Defaults follow the reference's 5 s webhook timeout and add the retry schedule it lacked.
///
/// `Debug` shows neither the secret nor the URL's query.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboxConfig {
    /// The receiver; see [`validate_webhook_url`].
    pub url: String,
    /// When set, every delivery carries `X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    /// Must not be empty when set.
    pub secret: Option<Secret>,
    /// A delivery without an answer after this long counts as failed (the reference's 5000 ms).
    pub timeout_ms: u64,
    /// The wait after the first failed attempt; it doubles with every further failure.
    pub base_backoff_ms: u64,
    /// No computed backoff exceeds this. A `Retry-After` may ask for up to 5× this.
    pub max_backoff_ms: u64,
    /// Jitter drawn uniformly in `[0, jitter_ms)` is added to every backoff.
    pub jitter_ms: u64,
    /// How many deliveries may be in flight at once; 1 delivers strictly in order.
    pub max_in_flight: usize,
    /// Seed of the jitter generator. Same seed + same inputs = same schedule.
    pub seed: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: None,
            timeout_ms: 5_000,
            base_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            jitter_ms: 1_000,
            max_in_flight: 1,
            seed: 0,
        }
    }
}

impl std::fmt::Debug for OutboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxConfig")
            .field("url", &RedactedUrl(&self.url))
            .field("secret", &self.secret)
            .field("timeout_ms", &self.timeout_ms)
            .field("base_backoff_ms", &self.base_backoff_ms)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .field("jitter_ms", &self.jitter_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("seed", &self.seed)
            .finish()
    }
}

/// Shows a URL up to its query (or user info, should an unvalidated one carry it).
struct RedactedUrl<'a>(&'a str);

impl std::fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        let cut = url.find(['?', '#', '@']).unwrap_or(url.len());
        if cut == url.len() {
            write!(f, "{url:?}")
        } else {
            write!(f, "\"{}[redacted]\"", url[..cut].escape_debug())
        }
    }
}

/// One webhook to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// Unique per payload; sent as `X-Event-Id` for receivers to dedupe on, and used to dedupe enqueues.
    /// 1 to 200 visible ASCII characters (no spaces), as it travels in a header.
    pub event_id: String,
    /// The JSON payload exactly as sent (and signed).
    pub body: String,
}

/// What [`Outbox::enqueue`] did with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Enqueued {
    /// Accepted: it will be delivered.
    Queued,
    /// An entry with this event id is already pending; this one was ignored.
    Duplicate,
    /// Refused: the event id is empty, longer than 200 bytes, or has characters other than visible ASCII
    /// (it could never be sent as a header). The host should drop the stored entry.
    InvalidEventId,
}

/// What happened to a delivery. Hosts mark entries delivered on [`Delivered`](Self::Delivered); the rest is
/// for logs and metrics.
///
/// In JSON: `{"type": "delivered", "eventId": "…", "attempts": 1, "atMs": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum OutboxEvent {
    /// The receiver answered 2xx: the entry is done.
    #[serde(rename_all = "camelCase")]
    Delivered {
        /// The entry.
        event_id: String,
        /// Attempts it took, from 1.
        attempts: u32,
        /// When the answer was handed in (Unix ms).
        at_ms: u64,
    },
    /// An attempt failed (non-2xx answer, transport error or timeout); the entry is sent again after
    /// `delay_ms`.
    #[serde(rename_all = "camelCase")]
    RetryScheduled {
        /// The entry.
        event_id: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The wait before the next attempt: the backoff, or a longer `Retry-After`.
        delay_ms: u64,
        /// The HTTP status, when the receiver answered; `None` for transport errors and timeouts.
        status: Option<u16>,
        /// When the failure was handed in (Unix ms).
        at_ms: u64,
    },
}

#[derive(Clone, Copy, Debug)]
enum SlotState {
    /// Waiting to be sent at or after `due_ms`.
    Waiting { due_ms: u64 },
    /// Handed out as request `id`; counts as failed at `deadline_ms`.
    InFlight { id: RequestId, deadline_ms: u64 },
}

#[derive(Debug)]
struct Slot {
    entry: OutboxEntry,
    attempts: u32,
    state: SlotState,
}

/// The webhook outbox: accepts entries and hands out deliveries until each is acknowledged with a 2xx.
///
/// The reference module's `emitWebhook` posted inline with a 5 s timeout and dropped every failure. The
/// [`Outbox`] replaces that with guaranteed delivery: an accepted entry is retried (capped exponential
/// backoff with seeded jitter, `Retry-After` honoured) until the receiver answers 2xx. Nothing accepted is
/// ever dropped; a receiver may see an entry more than once and dedupes on `X-Event-Id`.
///
/// Like the [`Engine`](crate::Engine) it performs no I/O and reads no clock: time comes in as Unix-epoch
/// milliseconds, jitter from a [`DetRng`](crate::DetRng) seeded by [`OutboxConfig::seed`].
///
/// # Driving it
/// 1. Hand in what happened: [`enqueue`](Outbox::enqueue), [`handle_response`](Outbox::handle_response),
///    [`handle_transport_error`](Outbox::handle_transport_error), [`handle_timeout`](Outbox::handle_timeout),
///    each with `now_ms`.
/// 2. Drain [`poll_event`](Outbox::poll_event) until `None`, then [`poll_transmit`](Outbox::poll_transmit)
///    until `None`, performing each request and handing back its answer (or transport error) with its id.
/// 3. Set a timer for [`next_deadline`](Outbox::next_deadline); when it fires call
///    [`handle_timeout`](Outbox::handle_timeout) and go back to step 2. Early calls are harmless.
///
/// # The host's job (durability)
/// The outbox lives in memory; durability is the host's:
/// - **Persist an entry durably before [`enqueue`](Outbox::enqueue)** (e.g. write the
///   [`Event::Webhook`](crate::Event::Webhook) payload to a journal together with its audit record).
/// - **On [`OutboxEvent::Delivered`] mark the entry delivered** in the store (or delete it). A crash between
///   the 2xx and that mark only causes one more delivery, which receivers dedupe.
/// - **On restart, re-enqueue every stored entry not marked delivered**, in their original order.
/// - To compact the store, rewrite it from [`pending_entries`](Outbox::pending_entries).
///
/// # Order
/// With [`max_in_flight`](OutboxConfig::max_in_flight) = 1 (the default) entries are delivered strictly in
/// enqueue order: the head of the queue waits through its backoff and nothing behind it is sent meanwhile.
/// With `N > 1` only the first `N` undelivered entries are eligible, so up to `N` go at once and an entry
/// can overtake at most `N − 1` earlier ones.
///
/// # Guarantees
/// - Every accepted entry is retried until a 2xx answer; none is ever dropped.
/// - With `max_in_flight = 1`, entries are sent and delivered strictly in enqueue order.
/// - Exactly one [`OutboxEvent::Delivered`] per accepted entry.
/// - Answers for unknown or stale request ids are ignored, as is an answer handed in at or after its
///   request's timeout: the timeout is applied first, so the outcome never depends on whether the host
///   called [`handle_timeout`](Self::handle_timeout) before handing the answer in. The retry delivers again.
///
/// Every non-2xx answer is retried, 4xx included: a receiver that keeps refusing holds the queue (with
/// strict order, everything behind the head waits). [`OutboxEvent::RetryScheduled`] carries the status so
/// hosts can alert on it.
pub struct Outbox {
    config: OutboxConfig,
    /// The backoff schedule (capped exponential with jitter), shared with the engine's retries.
    backoff: RetryPolicy,
    rng: DetRng,
    next_request: u64,
    next_seq: u64,
    /// Undelivered entries by enqueue sequence number.
    slots: BTreeMap<u64, Slot>,
    /// Event id → sequence number, for dedupe.
    by_event: BTreeMap<String, u64>,
    /// Request id → sequence number of the entry it carries.
    in_flight: BTreeMap<RequestId, u64>,
    events: VecDeque<OutboxEvent>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("config", &self.config)
            .field("pending", &self.slots.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Checks the configuration (the URL with [`validate_webhook_url`]) and builds an empty outbox.
    pub fn new(config: OutboxConfig) -> Result<Self, ConfigError> {
        validate_webhook_url(&config.url)?;
        let invalid = |field: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if config.secret.as_ref().is_some_and(Secret::is_empty) {
            return invalid("secret", "must not be empty when set");
        }
        if config.timeout_ms == 0 {
            return invalid("timeout_ms", "must be at least 1");
        }
        if config.base_backoff_ms == 0 {
            return invalid("base_backoff_ms", "must be at least 1");
        }
        if config.max_backoff_ms < config.base_backoff_ms {
            return invalid("max_backoff_ms", "must be at least base_backoff_ms");
        }
        if config.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        Ok(Self {
            rng: DetRng::new(config.seed),
            backoff: RetryPolicy {
                base_ms: config.base_backoff_ms,
                jitter_ms: config.jitter_ms,
                cap_ms: config.max_backoff_ms,
                ..RetryPolicy::default()
            },
            config,
            next_request: 1,
            next_seq: 0,
            slots: BTreeMap::new(),
            by_event: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            events: VecDeque::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// Accepts an entry for delivery, due at once. Persist it durably first.
    ///
    /// An entry whose event id is already pending is ignored ([`Enqueued::Duplicate`]); once delivered, the
    /// same id may be enqueued again.
    pub fn enqueue(&mut self, now_ms: u64, entry: OutboxEntry) -> Enqueued {
        if !valid_event_id(&entry.event_id) {
            return Enqueued::InvalidEventId;
        }
        if self.by_event.contains_key(&entry.event_id) {
            return Enqueued::Duplicate;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_event.insert(entry.event_id.clone(), seq);
        self.slots.insert(
            seq,
            Slot {
                entry,
                attempts: 0,
                state: SlotState::Waiting { due_ms: now_ms },
            },
        );
        Enqueued::Queued
    }

    /// The next delivery to perform, if one is due at `now_ms` and the in-flight limit allows.
    ///
    /// A `POST` to the configured URL with `Content-Type: application/json`, `X-Event-Id` and, with a
    /// secret, `X-Signature-256: sha256=<lowercase hex HMAC-SHA256(secret, body)>`. Request ids are unique
    /// per outbox, from 1. Call until `None`.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<HttpRequest> {
        let window = self.config.max_in_flight;
        let (&seq, slot) =
            self.slots.iter_mut().take(window).find(
                |(_, s)| matches!(s.state, SlotState::Waiting { due_ms } if due_ms <= now_ms),
            )?;
        let id = RequestId(self.next_request);
        self.next_request += 1;
        slot.attempts = slot.attempts.saturating_add(1);
        slot.state = SlotState::InFlight {
            id,
            deadline_ms: now_ms.saturating_add(self.config.timeout_ms),
        };
        self.in_flight.insert(id, seq);
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Event-Id".to_owned(), slot.entry.event_id.clone()),
        ];
        if let Some(secret) = &self.config.secret {
            headers.push((
                "X-Signature-256".to_owned(),
                format!("sha256={}", sign(secret, &slot.entry.body)),
            ));
        }
        Some(HttpRequest {
            id,
            method: Method::Post,
            url: self.config.url.clone(),
            headers,
            body: Some(slot.entry.body.clone()),
            timeout_ms: self.config.timeout_ms,
        })
    }

    /// Hands in the receiver's answer. 2xx: delivered. Anything else: retried after the backoff, or after
    /// `Retry-After` (seconds or an HTTP date) when that is longer, capped at 5 × `max_backoff_ms`.
    ///
    /// Answers for unknown, stale or timed-out requests (see [`Outbox`]'s guarantees) are ignored.
    pub fn handle_response(&mut self, now_ms: u64, response: &HttpResponse) {
        self.expire(now_ms);
        let Some(seq) = self.in_flight.remove(&response.id) else {
            return;
        };
        if (200..300).contains(&response.status) {
            let Some(slot) = self.slots.remove(&seq) else {
                return;
            };
            self.by_event.remove(&slot.entry.event_id);
            self.events.push_back(OutboxEvent::Delivered {
                event_id: slot.entry.event_id,
                attempts: slot.attempts,
                at_ms: now_ms,
            });
        } else {
            let retry_after = response.retry_after_ms(now_ms);
            self.schedule_retry(now_ms, seq, Some(response.status), retry_after);
        }
    }

    /// Hands in a delivery that got no answer. Every kind is retried after the backoff; unknown or stale ids
    /// are ignored.
    pub fn handle_transport_error(&mut self, now_ms: u64, id: RequestId, kind: TransportErrorKind) {
        // Every kind means the same here: no acknowledgement, so send again.
        let _ = kind;
        self.expire(now_ms);
        if let Some(seq) = self.in_flight.remove(&id) {
            self.schedule_retry(now_ms, seq, None, None);
        }
    }

    /// Advances timers: an in-flight delivery past its timeout counts as failed and is retried. Entries
    /// whose backoff has run out are handed out by [`poll_transmit`](Self::poll_transmit). Early calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.expire(now_ms);
    }

    /// The earliest time at which there is work: an in-flight timeout, or an eligible entry becoming due.
    ///
    /// A value at or before the current time means [`poll_transmit`](Self::poll_transmit) has a delivery
    /// to hand out now. `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots
            .values()
            .take(self.config.max_in_flight)
            .map(|s| match s.state {
                SlotState::Waiting { due_ms } => due_ms,
                SlotState::InFlight { deadline_ms, .. } => deadline_ms,
            })
            .min()
    }

    /// The next event, oldest first. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<OutboxEvent> {
        self.events.pop_front()
    }

    /// Entries accepted and not yet delivered (queued or in flight).
    pub fn pending(&self) -> usize {
        self.slots.len()
    }

    /// The entries not yet delivered, in enqueue order: what a host keeps (or compacts its store to).
    pub fn pending_entries(&self) -> impl Iterator<Item = &OutboxEntry> + '_ {
        self.slots.values().map(|s| &s.entry)
    }

    /// Fails every in-flight delivery whose timeout has passed.
    fn expire(&mut self, now_ms: u64) {
        // In-flight entries are always among the first `max_in_flight` (the window only slides on delivery).
        let expired: Vec<(RequestId, u64)> = self
            .slots
            .iter()
            .take(self.config.max_in_flight)
            .filter_map(|(&seq, s)| match s.state {
                SlotState::InFlight { id, deadline_ms } if deadline_ms <= now_ms => Some((id, seq)),
                _ => None,
            })
            .collect();
        for (id, seq) in expired {
            self.in_flight.remove(&id);
            self.schedule_retry(now_ms, seq, None, None);
        }
    }

    /// Puts a failed entry back to wait for its backoff and reports it.
    fn schedule_retry(
        &mut self,
        now_ms: u64,
        seq: u64,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
    ) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        let attempt = slot.attempts.max(1);
        // Delivery never gives up, so only the schedule is used: the first retry waits `base`.
        let backoff = self.backoff.backoff_ms(attempt - 1, &mut self.rng);
        let retry_after_cap = self.config.max_backoff_ms.saturating_mul(5);
        let delay_ms = backoff.max(retry_after_ms.map_or(0, |ra| ra.min(retry_after_cap)));
        slot.state = SlotState::Waiting {
            due_ms: now_ms.saturating_add(delay_ms),
        };
        self.events.push_back(OutboxEvent::RetryScheduled {
            event_id: slot.entry.event_id.clone(),
            attempt,
            delay_ms,
            status,
            at_ms: now_ms,
        });
    }
}

/// Whether an event id can travel as a header value.
fn valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`.
fn sign(secret: &Secret, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::time::http_date;

    const T0: u64 = 1_767_600_000_000;

    fn config(url: &str) -> OutboxConfig {
        OutboxConfig {
            url: url.to_owned(),
            ..OutboxConfig::default()
        }
    }

    fn outbox(cfg: OutboxConfig) -> Outbox {
        Outbox::new(cfg).expect("valid config")
    }

    fn entry(id: &str) -> OutboxEntry {
        OutboxEntry {
            event_id: id.to_owned(),
            body: format!(r#"{{"eventId":"{id}"}}"#),
        }
    }

    fn answer(id: RequestId, status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            id,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: String::new(),
        }
    }

    fn events(o: &mut Outbox) -> Vec<OutboxEvent> {
        std::iter::from_fn(|| o.poll_event()).collect()
    }

    #[test]
    fn url_rules() {
        for ok in [
            "https://hooks.example.com",
            "https://hooks.example.com/",
            "HTTPS://hooks.example.com:8443/a/b?x=1&y=2",
            "http://127.0.0.1:8080/x",
            "http://127.9.8.7/x",
            "http://localhost",
            "http://LOCALHOST:3000/hook",
            "http://[::1]:9/",
            "https://[2001:db8::1]/x",
            "https://h?x=a@b",
        ] {
            assert_eq!(validate_webhook_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "http://example.com",
            "http://10.0.0.1/x",
            "http://localhost.evil.example/x",
            "http://127.1/x",
            "http://[::ffff:127.0.0.1]/x",
            "ftp://example.com/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "example.com/x",
            "https://",
            "https:///x",
            "https://:443/x",
            "https://h:/x",
            "https://h:0/x",
            "https://h:65536/x",
            "https://h:12a/x",
            "https://[::1/x",
            "https://[nope]/x",
            "https://h/x#frag",
            "https://h/a b",
            " https://h/x",
            "https://h/x\n",
            "https://h\t/x",
            "https://hé.example/x",
            "https://user@h/x",
            "https://h%2e/x",
        ] {
            let err = validate_webhook_url(bad).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::InvalidWebhookUrl, "{bad}");
            assert_eq!(err.code().as_str(), "INVALID_WEBHOOK_URL");
        }
    }

    #[test]
    fn url_errors_never_echo_secrets() {
        let err = validate_webhook_url("https://user:pw@h/x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::WebhookUrl { .. }));
        assert!(!text.contains("pw") && !text.contains("user:"), "{text}");
        assert!(text.contains("credentials"), "{text}");
        for url in [
            "ftp://h/x?token=sekrit",
            "http://example.com/x?token=sekrit",
            "https://h/x?token=sekrit#frag",
        ] {
            let text = validate_webhook_url(url).unwrap_err().to_string();
            assert!(
                !text.contains("sekrit") && !text.contains("token"),
                "{text}"
            );
        }
        let err = Outbox::new(config("https://u:pw@h/")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidWebhookUrl);
    }

    #[test]
    fn config_is_validated() {
        let base = config("https://h/x");
        let bad = [
            OutboxConfig {
                max_in_flight: 0,
                ..base.clone()
            },
            OutboxConfig {
                timeout_ms: 0,
                ..base.clone()
            },
            OutboxConfig {
                base_backoff_ms: 0,
                ..base.clone()
            },
            OutboxConfig {
                max_backoff_ms: 10,
                ..base.clone()
            },
            OutboxConfig {
                secret: Some(Secret::new("")),
                ..base.clone()
            },
        ];
        for cfg in bad {
            let err = Outbox::new(cfg).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig, "{err}");
        }
        assert!(Outbox::new(base).is_ok());
    }

    #[test]
    fn config_serde_camel_case_with_defaults() {
        let cfg: OutboxConfig = serde_json::from_str(
            r#"{"url":"https://h/x","secret":"s3","maxInFlight":4,"baseBackoffMs":10}"#,
        )
        .unwrap();
        assert_eq!(cfg.max_in_flight, 4);
        assert_eq!(cfg.base_backoff_ms, 10);
        assert_eq!(cfg.timeout_ms, 5_000);
        assert_eq!(cfg.max_backoff_ms, 60_000);
        assert_eq!(cfg.secret.as_ref().map(Secret::expose), Some("s3"));
        let ev = OutboxEvent::Delivered {
            event_id: "e1".into(),
            attempts: 2,
            at_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type": "delivered", "eventId": "e1", "attempts": 2, "atMs": 5})
        );
        let ev = OutboxEvent::RetryScheduled {
            event_id: "e1".into(),
            attempt: 1,
            delay_ms: 1500,
            status: Some(503),
            at_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type": "retryScheduled", "eventId": "e1", "attempt": 1,
                "delayMs": 1500, "status": 503, "atMs": 5})
        );
    }

    #[test]
    fn request_shape_and_rfc4231_signature() {
        let mut o = outbox(OutboxConfig {
            secret: Some(Secret::new("Jefe")),
            ..config("https://hooks.example.com/agent?k=1")
        });
        let body = "what do ya want for nothing?";
        o.enqueue(
            T0,
            OutboxEntry {
                event_id: "evt-1".into(),
                body: body.into(),
            },
        );
        let r = o.poll_transmit(T0).expect("due at once");
        assert_eq!(r.id, RequestId(1));
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://hooks.example.com/agent?k=1");
        assert_eq!(r.body.as_deref(), Some(body));
        assert_eq!(r.timeout_ms, 5_000);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-event-id"), Some("evt-1"));
        assert_eq!(
            r.header("X-Signature-256"),
            Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert!(!format!("{r:?}").contains("Jefe"));

        let mut plain = outbox(config("https://hooks.example.com/agent"));
        plain.enqueue(T0, entry("a"));
        plain.enqueue(T0, entry("b"));
        let r = plain.poll_transmit(T0).unwrap();
        assert_eq!(r.id, RequestId(1));
        assert_eq!(r.header("x-signature-256"), None);
        plain.handle_response(T0, &answer(r.id, 204, &[]));
        let r = plain.poll_transmit(T0).unwrap();
        assert_eq!(r.id, RequestId(2), "ids are unique and increasing");
        assert_eq!(r.header("x-event-id"), Some("b"));
    }

    /// How the simulated receiver treats one attempt.
    #[derive(Clone, Copy)]
    enum Fault {
        Status(u16),
        Transport,
        Hang,
    }

    /// Every event, the receiver's log of (event id, accepted), each send's (time, event id).
    type Run = (Vec<OutboxEvent>, Vec<(String, bool)>, Vec<(u64, String)>);

    /// Drives an outbox against a receiver that fails each entry's first `fails(index)` attempts (cycling
    /// through 500, transport errors and hangs) and then answers 200.
    fn run(cfg: OutboxConfig, n: usize, fails: impl Fn(usize) -> u32) -> Run {
        let mut o = outbox(cfg);
        for i in 0..n {
            assert_eq!(o.enqueue(T0, entry(&format!("e{i}"))), Enqueued::Queued);
        }
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let (mut all, mut receiver, mut sends) = (Vec::new(), Vec::new(), Vec::new());
        let mut now = T0;
        for _ in 0..100_000 {
            while let Some(r) = o.poll_transmit(now) {
                let id = r.header("x-event-id").unwrap().to_owned();
                sends.push((now, id.clone()));
                let index: usize = id[1..].parse().unwrap();
                let tries = seen.entry(id.clone()).or_default();
                *tries += 1;
                if *tries > fails(index) {
                    receiver.push((id, true));
                    now += 7;
                    o.handle_response(now, &answer(r.id, 200, &[]));
                } else {
                    receiver.push((id, false));
                    match [Fault::Status(500), Fault::Transport, Fault::Hang][*tries as usize % 3] {
                        Fault::Status(s) => {
                            now += 3;
                            o.handle_response(now, &answer(r.id, s, &[]))
                        }
                        Fault::Transport => {
                            now += 1;
                            o.handle_transport_error(now, r.id, TransportErrorKind::Reset)
                        }
                        Fault::Hang => {}
                    }
                }
            }
            all.extend(events(&mut o));
            match o.next_deadline() {
                None => return (all, receiver, sends),
                Some(at) => now = now.max(at).max(now + 1),
            }
            o.handle_timeout(now);
        }
        panic!("did not finish");
    }

    #[test]
    fn strict_order_under_failures_every_entry_exactly_once() {
        let cfg = OutboxConfig {
            max_backoff_ms: 10_000,
            seed: 42,
            ..config("https://h/x")
        };
        let n = 12;
        let fails = |i: usize| [0, 3, 1, 7, 0, 2, 9, 0, 1, 4, 0, 5][i];
        let (events, receiver, sends) = run(cfg, n, fails);

        // The receiver accepted each entry exactly once, in enqueue order.
        let accepted: Vec<&str> = receiver
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(id, _)| id.as_str())
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        assert_eq!(accepted, expected);
        // Head-of-line: sends never go back to an earlier entry and never skip ahead of a failing one.
        let order: Vec<usize> = sends
            .iter()
            .map(|(_, id)| id[1..].parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");

        let delivered: Vec<(String, u32)> = events
            .iter()
            .filter_map(|e| match e {
                OutboxEvent::Delivered {
                    event_id, attempts, ..
                } => Some((event_id.clone(), *attempts)),
                _ => None,
            })
            .collect();
        assert_eq!(
            delivered,
            (0..n)
                .map(|i| (format!("e{i}"), fails(i) + 1))
                .collect::<Vec<_>>()
        );

        for i in 0..n {
            let id = format!("e{i}");
            let delays: Vec<(u32, u64)> = events
                .iter()
                .filter_map(|e| match e {
                    OutboxEvent::RetryScheduled {
                        event_id,
                        attempt,
                        delay_ms,
                        ..
                    } if *event_id == id => Some((*attempt, *delay_ms)),
                    _ => None,
                })
                .collect();
            assert_eq!(delays.len() as u32, fails(i), "{id}");
            for (k, &(attempt, d)) in delays.iter().enumerate() {
                assert_eq!(attempt, k as u32 + 1);
                assert!((1_000..=10_000).contains(&d), "{id}: {d}");
            }
            assert!(
                delays.windows(2).all(|w| w[0].1 <= w[1].1),
                "{id}: {delays:?}"
            );
            if fails(i) >= 5 {
                // 1000·2^4 = 16 s > the 10 s cap.
                assert_eq!(delays[4].1, 10_000);
            }
            // No send before its backoff ran out: consecutive sends of one entry are ≥ the delay apart.
            let times: Vec<u64> = sends
                .iter()
                .filter(|(_, e)| *e == id)
                .map(|(t, _)| *t)
                .collect();
            for (w, &(_, d)) in times.windows(2).zip(&delays) {
                assert!(w[1] - w[0] >= d, "{id}: {times:?} {delays:?}");
            }
        }
    }

    #[test]
    fn several_in_flight_up_to_the_limit() {
        let mut o = outbox(OutboxConfig {
            max_in_flight: 3,
            ..config("https://h/x")
        });
        for i in 0..5 {
            o.enqueue(T0, entry(&format!("e{i}")));
        }
        let sent: Vec<HttpRequest> = std::iter::from_fn(|| o.poll_transmit(T0)).collect();
        let ids: Vec<&str> = sent
            .iter()
            .map(|r| r.header("x-event-id").unwrap())
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
        // e0 fails; e1 succeeds, which lets e3 in; e4 waits for a free slot.
        o.handle_response(T0 + 5, &answer(sent[0].id, 500, &[]));
        o.handle_response(T0 + 5, &answer(sent[1].id, 200, &[]));
        let r = o.poll_transmit(T0 + 5).unwrap();
        assert_eq!(r.header("x-event-id"), Some("e3"));
        assert!(o.poll_transmit(T0 + 5).is_none());
        assert_eq!(o.pending(), 4);
        let left: Vec<&str> = o.pending_entries().map(|e| e.event_id.as_str()).collect();
        assert_eq!(left, ["e0", "e2", "e3", "e4"]);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut o = outbox(config("https://h/x"));
        o.enqueue(T0, entry("e"));
        let r = o.poll_transmit(T0).unwrap();
        o.handle_response(T0, &answer(r.id, 429, &[("Retry-After", "30")]));
        match events(&mut o).as_slice() {
            [OutboxEvent::RetryScheduled {
                delay_ms,
                status,
                attempt,
                ..
            }] => {
                assert_eq!((*delay_ms, *status, *attempt), (30_000, Some(429), 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.next_deadline(), Some(T0 + 30_000));
        assert!(o.poll_transmit(T0 + 29_999).is_none());
        let r = o.poll_transmit(T0 + 30_000).expect("due after Retry-After");

        // An HTTP date.
        let now = T0 + 30_000;
        o.handle_response(
            now,
            &answer(r.id, 503, &[("retry-after", &http_date(now + 45_000))]),
        );
        assert!(matches!(
            events(&mut o).as_slice(),
            [OutboxEvent::RetryScheduled {
                delay_ms: 45_000,
                ..
            }]
        ));

        // Absurd values are capped at 5 × max_backoff_ms; short ones lose to the backoff.
        let now = now + 45_000;
        let r = o.poll_transmit(now).unwrap();
        o.handle_response(now, &answer(r.id, 503, &[("Retry-After", "999999")]));
        assert!(matches!(
            events(&mut o).as_slice(),
            [OutboxEvent::RetryScheduled {
                delay_ms: 300_000,
                ..
            }]
        ));
        let now = now + 300_000;
        let r = o.poll_transmit(now).unwrap();
        o.handle_response(now, &answer(r.id, 503, &[("Retry-After", "1")]));
        match events(&mut o).as_slice() {
            // Attempt 4: 1000·2^3 plus jitter.
            [OutboxEvent::RetryScheduled { delay_ms, .. }] => {
                assert!((8_000..9_000).contains(delay_ms), "{delay_ms}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_is_retried_and_late_answers_are_ignored() {
        let mut o = outbox(config("https://h/x"));
        o.enqueue(T0, entry("e"));
        let first = o.poll_transmit(T0).unwrap();
        assert_eq!(o.next_deadline(), Some(T0 + 5_000));
        o.handle_timeout(T0 + 4_999);
        assert!(events(&mut o).is_empty(), "early timeout is harmless");
        o.handle_timeout(T0 + 5_000);
        let delay = match events(&mut o).as_slice() {
            [OutboxEvent::RetryScheduled {
                status: None,
                attempt: 1,
                delay_ms,
                at_ms,
                ..
            }] => {
                assert_eq!(*at_ms, T0 + 5_000);
                *delay_ms
            }
            other => panic!("{other:?}"),
        };
        // The late 200 for the timed-out request changes nothing.
        o.handle_response(T0 + 5_001, &answer(first.id, 200, &[]));
        assert!(events(&mut o).is_empty());
        assert_eq!(o.pending(), 1);

        let second = o.poll_transmit(T0 + 5_000 + delay).expect("retried");
        assert_ne!(second.id, first.id);
        // An answer handed in at its deadline counts as late even without a prior handle_timeout.
        let deadline = T0 + 5_000 + delay + 5_000;
        o.handle_response(deadline, &answer(second.id, 200, &[]));
        assert!(matches!(
            events(&mut o).as_slice(),
            [OutboxEvent::RetryScheduled {
                attempt: 2,
                status: None,
                ..
            }]
        ));
        assert_eq!(o.pending(), 1);
    }

    #[test]
    fn unknown_stale_and_duplicate_answers_are_ignored() {
        let mut o = outbox(config("https://h/x"));
        o.enqueue(T0, entry("a"));
        o.enqueue(T0, entry("b"));
        let r = o.poll_transmit(T0).unwrap();
        o.handle_response(T0, &answer(RequestId(99), 200, &[]));
        o.handle_transport_error(T0, RequestId(98), TransportErrorKind::Connect);
        assert!(events(&mut o).is_empty());
        assert_eq!(o.pending(), 2);

        o.handle_response(T0 + 1, &answer(r.id, 200, &[]));
        assert_eq!(
            events(&mut o),
            [OutboxEvent::Delivered {
                event_id: "a".into(),
                attempts: 1,
                at_ms: T0 + 1
            }]
        );
        // A repeated answer or error for the delivered request is stale.
        o.handle_response(T0 + 2, &answer(r.id, 200, &[]));
        o.handle_response(T0 + 2, &answer(r.id, 500, &[]));
        o.handle_transport_error(T0 + 2, r.id, TransportErrorKind::Reset);
        assert!(events(&mut o).is_empty());
        assert_eq!(o.pending(), 1);
        let r = o.poll_transmit(T0 + 2).unwrap();
        assert_eq!(r.header("x-event-id"), Some("b"));
    }

    #[test]
    fn duplicate_and_invalid_enqueues() {
        let mut o = outbox(config("https://h/x"));
        assert_eq!(o.enqueue(T0, entry("a")), Enqueued::Queued);
        assert_eq!(o.enqueue(T0, entry("a")), Enqueued::Duplicate);
        assert_eq!(o.pending(), 1);
        let r = o.poll_transmit(T0).unwrap();
        // Still a duplicate while in flight.
        assert_eq!(o.enqueue(T0, entry("a")), Enqueued::Duplicate);
        assert!(o.poll_transmit(T0).is_none());
        o.handle_response(T0, &answer(r.id, 200, &[]));
        assert_eq!(o.pending(), 0);
        assert_eq!(o.next_deadline(), None);
        // Delivered ids may come again (a new delivery).
        assert_eq!(o.enqueue(T0, entry("a")), Enqueued::Queued);

        for bad in ["", "a b", "a\r\nX-Evil: 1", "é", &"x".repeat(201)] {
            let e = OutboxEntry {
                event_id: bad.to_owned(),
                body: "{}".into(),
            };
            assert_eq!(o.enqueue(T0, e), Enqueued::InvalidEventId, "{bad:?}");
        }
        assert_eq!(o.pending(), 1);
    }

    #[test]
    fn same_seed_same_schedule() {
        let cfg = |seed| OutboxConfig {
            seed,
            ..config("https://h/x")
        };
        let fails = |i: usize| (i as u32 * 5) % 7;
        let a = run(cfg(7), 6, fails);
        let b = run(cfg(7), 6, fails);
        assert_eq!(a, b);
        let c = run(cfg(8), 6, fails);
        assert_ne!(a.0, c.0, "a different seed draws different jitter");
    }

    #[test]
    fn debug_redacts_secret_and_query() {
        let cfg = OutboxConfig {
            secret: Some(Secret::new("hunter2")),
            ..config("https://h/hook?token=sekrit")
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2") && !s.contains("sekrit"), "{s}");
        assert!(
            s.contains("https://h/hook") && s.contains("[redacted]"),
            "{s}"
        );
        let s = format!("{:?}", outbox(cfg));
        assert!(!s.contains("hunter2") && !s.contains("sekrit"), "{s}");
    }
}
