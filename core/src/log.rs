//! The durable log: what a host persists ([`Record`]), how the open state is folded back out of it after a
//! restart ([`LogState`]), and how a JSON Lines log is read ([`scan_log`]).
//!
//! **One ordered log.** Every record the engine asks a host to persist goes, in order, into one append-only
//! JSON Lines file: audit records (hash-chained, exactly as an auditor reads them), and the operational
//! records around them — a change's intent before it is first sent, a webhook payload accepted for delivery,
//! its delivery, a dead letter, and periodic checkpoints. A host writes a group of records and syncs once;
//! because the engine orders records so that every prefix of the log is a state it can resume from, a crash
//! or a power loss at any byte loses nothing that was acknowledged:
//!
//! - an intent precedes its first send, so a change the tenant may hold is never unknown to the log;
//! - a change's webhook payload precedes its audit record, so a log cut between them leaves the change open
//!   (it is resumed and announced again under the same event id) instead of audited without its webhook;
//! - a checkpoint summarises what is still open, so recovery reads only the log after the last one: its
//!   cost is bounded by what is open, not by the length of history.
//!
//! Audit lines carry no `kind` (a line without one is an audit record, as in every log written so far);
//! every other line names its `kind`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, ChainError, ChainHead};
use crate::error::ErrorCode;
use crate::events::TransitionId;
use crate::time::parse_iso8601;

/// One line of the durable log. Persist every one, in order, before performing any later transmit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// A state change is about to be sent for the first time.
    Intent(ChangeIntent),
    /// An audit record (hash-chained).
    Audit(AuditRecord),
    /// A webhook payload accepted for delivery.
    Webhook(WebhookEntry),
    /// A webhook payload reached its receiver.
    Delivered(Delivered),
    /// A webhook payload was set aside as a dead letter.
    DeadLetter(DeadLetter),
    /// A dead letter was put back in line for delivery.
    Replayed(Replayed),
    /// An open change will not be sent again (it is too old to send safely); its journal entry is closed.
    Abandoned(Abandoned),
    /// What was open at this point: recovery starts from the last checkpoint.
    Checkpoint(Checkpoint),
    /// The log was written by a simulation: its records describe a simulated tenant on a virtual clock.
    Simulation(SimulationRun),
}

/// The first record of a log a simulation wrote (the simulated day, `sim::DayRun`, emits it first): what
/// follows describes a simulated tenant on a virtual clock, not a real one. An auditor can tell the two
/// apart, and a tool that writes simulated records can refuse a log that holds real ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationRun {
    /// The seed of the day, the tenant and the engine.
    pub seed: u64,
    /// Agents simulated.
    pub agents: u64,
    /// Shift length in hours.
    pub shift_hours: u64,
    /// When the simulated day starts (virtual Unix ms).
    pub at_ms: u64,
}

/// A state change about to be sent. On restart, an intent without a closing audit record is finished by
/// [`Engine::restore`](crate::Engine::restore).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeIntent {
    /// The command (in the run that journaled it).
    pub transition_id: TransitionId,
    /// The agent.
    pub user_id: String,
    /// The target state.
    pub state: String,
    /// The reason code being sent.
    pub reason_code: String,
    /// The `Idempotency-Key` the change is sent with (and resent with).
    pub idempotency_key: String,
    /// When the policy check that approved it was made (Unix ms): resends stop a commit window later.
    pub approved_at_ms: u64,
    /// When it was journaled (Unix ms).
    pub at_ms: u64,
    /// The caller's reference of the change, if it gave one: a change resumed after a restart carries it
    /// into the audit record that finishes it. Absent (not `null`) when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The API profile it was sent on; absent for `seed`. A restart on another profile does not send it
    /// again (it would be another request than the one first sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::config::ProfileKind>,
    /// `cxone`: the unavailable code's `outStateId` the change is sent with (absent for `Available` and on
    /// `seed`), so a change resumed after a restart is sent again exactly as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_state_id: Option<u64>,
    /// Who asked for it, so a change resumed after a restart names them in the record that finishes it.
    /// Absent in intents written before the field existed (the system is named then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<crate::actor::Actor>,
    /// A supervisor's override the change was approved under (see [`Override`](crate::Override)).
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Box<crate::actor::OverrideNote>>,
    /// For a deferred change released when its break ended: the deferral's id (the log stops holding the
    /// deferral once its release is journaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferral: Option<String>,
}

/// A webhook payload to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEntry {
    /// Unique per payload; sent as `X-Event-Id` for receivers to dedupe on.
    pub event_id: String,
    /// The JSON payload exactly as sent (and signed).
    pub body: String,
    /// When it was accepted (Unix ms).
    pub at_ms: u64,
    /// The receiver it was accepted for, as its [`receiver_fingerprint`](crate::receiver_fingerprint).
    /// Absent from logs written before receivers were recorded: such a payload belongs to whichever
    /// receiver is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// That receiver's URL, so a restart configured with another one can still deliver it there. Absent
    /// when the URL has a query, fragment or user info: they may carry a secret, which never enters the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A webhook payload reached its receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// The payload.
    pub event_id: String,
    /// Attempts it took.
    pub attempts: u32,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A webhook payload set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The payload.
    pub event_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The receiver's last status, if it answered.
    pub last_status: Option<u16>,
    /// Why.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A dead letter put back in line, for the receiver configured when it was replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    /// The payload.
    pub event_id: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// The receiver it now belongs to (its fingerprint): it replaces the payload's own
    /// [`WebhookEntry::receiver`]. Absent from older logs (the payload keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// That receiver's URL, on the same terms as [`WebhookEntry::url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An open change given up for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Abandoned {
    /// The change's key.
    pub idempotency_key: String,
    /// Why.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// A change journaled and not yet closed: never confirmed, or ended `OUTCOME_UNKNOWN`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenChange {
    /// The intent.
    pub intent: ChangeIntent,
    /// The `id` of its `OUTCOME_UNKNOWN` audit record, if it has one (a settlement points to it).
    pub unknown_record: Option<String>,
}

/// A dead letter with its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterEntry {
    /// The payload.
    pub entry: WebhookEntry,
    /// Why it was set aside.
    pub dead: DeadLetter,
}

/// An agent's last known state: the one its latest successful audit record set. A failed change leaves it
/// as it was, and so does an `OUTCOME_UNKNOWN` one (the tenant may or may not hold the new state) until a
/// record settles it as a success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastState {
    /// The agent.
    pub user_id: String,
    /// The state.
    pub state: String,
    /// When the change that set it completed (its audit record's `timestamp`, Unix ms).
    pub at_ms: u64,
}

/// Everything still open at one point of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Checkpoint {
    /// Where the audit chain stood.
    pub chain: ChainHead,
    /// Open changes, oldest first.
    pub open: Vec<OpenChange>,
    /// Undelivered webhook payloads, in delivery order.
    pub outbox: Vec<WebhookEntry>,
    /// Dead letters, oldest first.
    pub dead_letters: Vec<DeadLetterEntry>,
    /// Each agent's last known state, by user id. `None` in a checkpoint written before the member
    /// existed: it names no state, and is not checked against the records before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_states: Option<Vec<LastState>>,
    /// Deferred changes still held, by deferral id. Absent when there are none (and in checkpoints written
    /// before deferrals existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<crate::deferral::OpenDeferral>,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// The first bytes of a checkpoint line: hosts search backwards for it to start recovery there.
pub const CHECKPOINT_LINE_PREFIX: &[u8] = b"{\"kind\":\"checkpoint\"";

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum TaggedRef<'a> {
    Intent(&'a ChangeIntent),
    Webhook(&'a WebhookEntry),
    Delivered(&'a Delivered),
    DeadLetter(&'a DeadLetter),
    Replayed(&'a Replayed),
    Abandoned(&'a Abandoned),
    Checkpoint(&'a Checkpoint),
    Simulation(&'a SimulationRun),
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Audit(r) => r.serialize(s),
            Self::Intent(r) => TaggedRef::Intent(r).serialize(s),
            Self::Webhook(r) => TaggedRef::Webhook(r).serialize(s),
            Self::Delivered(r) => TaggedRef::Delivered(r).serialize(s),
            Self::DeadLetter(r) => TaggedRef::DeadLetter(r).serialize(s),
            Self::Replayed(r) => TaggedRef::Replayed(r).serialize(s),
            Self::Abandoned(r) => TaggedRef::Abandoned(r).serialize(s),
            Self::Checkpoint(r) => TaggedRef::Checkpoint(r).serialize(s),
            Self::Simulation(r) => TaggedRef::Simulation(r).serialize(s),
        }
    }
}

/// Every `kind` a record line may name (an audit record names none).
const RECORD_KINDS: &[&str] = &[
    "intent",
    "webhook",
    "delivered",
    "deadLetter",
    "replayed",
    "abandoned",
    "checkpoint",
    "simulation",
];

/// The record a `kind` names, parsed by `from` as that kind's own struct (which ignores the `kind` member).
/// Parsing each kind directly, instead of through a tagged enum, never buffers a whole line as generic
/// content, which keeps the wasm module small.
fn by_kind<E: serde::de::Error>(kind: Option<&str>, from: impl ParseAs<E>) -> Result<Record, E> {
    Ok(match kind {
        None => Record::Audit(from.parse().map_err(unknown_member)?),
        Some("intent") => Record::Intent(from.parse()?),
        Some("webhook") => Record::Webhook(from.parse()?),
        Some("delivered") => Record::Delivered(from.parse()?),
        Some("deadLetter") => Record::DeadLetter(from.parse()?),
        Some("replayed") => Record::Replayed(from.parse()?),
        Some("abandoned") => Record::Abandoned(from.parse()?),
        Some("checkpoint") => Record::Checkpoint(from.parse()?),
        Some("simulation") => Record::Simulation(from.parse()?),
        Some(other) => return Err(E::unknown_variant(other, RECORD_KINDS)),
    })
}

/// An audit line's unknown member, named with the reason it is refused (serde's own message lists every
/// known member instead).
fn unknown_member<E: serde::de::Error>(e: E) -> E {
    let text = e.to_string();
    match text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((member, _)) => E::custom(format_args!(
            "an audit record holds only the members its hash covers, and `{member}` is not one"
        )),
        None => e,
    }
}

/// Where a record is parsed from: a line's bytes, or a JSON value.
trait ParseAs<E> {
    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, E>;
}

impl ParseAs<serde_json::Error> for &str {
    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self)
    }
}

struct FromValue<'a>(&'a serde_json::Value);

impl<E: serde::de::Error> ParseAs<E> for FromValue<'_> {
    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, E> {
        T::deserialize(self.0).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let kind = match value.get("kind") {
            None => None,
            Some(serde_json::Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(serde::de::Error::custom("`kind` is not a string")),
        };
        by_kind(kind, FromValue(&value))
    }
}

impl Record {
    /// Parses one log line (without its newline).
    pub fn parse_line(line: &[u8]) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(line).map_err(|e| {
            <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8: {e}"))
        })?;
        Self::parse_json(text)
    }

    /// Parses one record from its JSON text.
    pub fn parse_json(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Peek<'a> {
            #[serde(borrow, default)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        let peek: Peek<'_> = serde_json::from_str(text)?;
        by_kind(peek.kind.as_deref(), text)
    }

    /// The record as one log line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("records always serialize");
        out.push(b'\n');
        out
    }

    /// The audit record, if this is one.
    pub fn as_audit(&self) -> Option<&AuditRecord> {
        match self {
            Self::Audit(r) => Some(r),
            _ => None,
        }
    }
}

/// What is open according to the log: the fold of its records, from the start or from a checkpoint.
///
/// The engine keeps one in step with what it persists (to write checkpoints); a host rebuilds one from the
/// log after a restart and hands it to [`Engine::restore`](crate::Engine::restore).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogState {
    chain: ChainHead,
    next_order: u64,
    open: BTreeMap<u64, OpenChange>,
    open_by_key: BTreeMap<String, u64>,
    /// Agent → its open change. An agent has at most one: a change's intent is written only after every
    /// earlier open change of its agent was closed (superseded), and a restore keeps only the latest.
    open_by_user: BTreeMap<String, u64>,
    /// The latest wall time any record names: a clock that reads earlier than this after a restart has been
    /// stepped back, and no age measured against it can be trusted.
    last_at_ms: u64,
    outbox: BTreeMap<u64, WebhookEntry>,
    outbox_by_id: BTreeMap<String, u64>,
    dead: BTreeMap<u64, DeadLetterEntry>,
    dead_by_id: BTreeMap<String, u64>,
    /// Agent → its last known state, so a restart knows the state each agent leaves on its next change.
    last_states: BTreeMap<String, LastState>,
    /// Deferred changes still held, by deferral id.
    deferred: BTreeMap<String, crate::deferral::OpenDeferral>,
    since_checkpoint: u64,
    records: u64,
}

/// A record that does not follow from the ones before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogStateError {
    /// An audit record does not continue the chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A checkpoint does not describe what the records before it leave open.
    #[error("a checkpoint disagrees with the records before it: {reason}")]
    CheckpointDisagrees {
        /// What differs.
        reason: String,
    },
}

impl LogState {
    /// The state a checkpoint describes.
    pub fn from_checkpoint(c: &Checkpoint) -> Self {
        let mut s = Self::default();
        s.adopt(c);
        s
    }

    fn adopt(&mut self, c: &Checkpoint) {
        let (records, next_order) = (self.records, self.next_order);
        *self = Self {
            chain: c.chain.clone(),
            records,
            next_order,
            last_at_ms: self.last_at_ms.max(c.at_ms),
            ..Self::default()
        };
        for o in &c.open {
            self.open_change(o.clone());
        }
        for e in &c.outbox {
            self.push_outbox(e.clone());
        }
        for d in &c.dead_letters {
            self.push_dead(d.clone());
        }
        // Inserted one by one: collecting into a map sorts first, which costs the wasm module a sort routine.
        for l in c.last_states.iter().flatten() {
            self.last_states.insert(l.user_id.clone(), l.clone());
        }
        for d in &c.deferred {
            self.deferred.insert(d.id.clone(), d.clone());
        }
    }

    fn open_change(&mut self, o: OpenChange) {
        let n = self.order();
        self.open_by_key.insert(o.intent.idempotency_key.clone(), n);
        self.open_by_user.insert(o.intent.user_id.clone(), n);
        self.open.insert(n, o);
    }

    fn order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn push_outbox(&mut self, e: WebhookEntry) {
        if self.outbox_by_id.contains_key(&e.event_id) {
            return;
        }
        let n = self.order();
        self.outbox_by_id.insert(e.event_id.clone(), n);
        self.outbox.insert(n, e);
    }

    fn push_dead(&mut self, d: DeadLetterEntry) {
        let n = self.order();
        self.dead_by_id.insert(d.entry.event_id.clone(), n);
        self.dead.insert(n, d);
    }

    /// Folds one record in. An audit record must continue the chain (its hash is checked too). A refused
    /// record changes nothing.
    pub fn apply(&mut self, record: &Record) -> Result<(), LogStateError> {
        if let Record::Audit(r) = record {
            // Only checked here: `apply_trusted` moves the head on to this record.
            self.chain.check_next(0, r)?;
        }
        if let Record::Checkpoint(c) = record {
            // Read from the start, every checkpoint must say exactly what the records before it leave open
            // (recovery trusts the last one without reading what precedes it).
            if self.records > 0 {
                let reason = if self.chain != c.chain {
                    Some(format!(
                        "the chain stands at seq {}, the checkpoint says {}",
                        self.chain.next_seq, c.chain.next_seq
                    ))
                } else if !self.open.values().eq(&c.open) {
                    Some("the open changes differ".to_owned())
                } else if !self.outbox.values().eq(&c.outbox) {
                    Some("the undelivered webhooks differ".to_owned())
                } else if !self.dead.values().eq(&c.dead_letters) {
                    Some("the dead letters differ".to_owned())
                } else if c
                    .last_states
                    .as_ref()
                    .is_some_and(|l| !self.last_states.values().eq(l))
                {
                    Some("the agents' last states differ".to_owned())
                } else if !self.deferred.values().eq(&c.deferred) {
                    Some("the deferred changes differ".to_owned())
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(LogStateError::CheckpointDisagrees { reason });
                }
            }
        }
        self.apply_trusted(record);
        Ok(())
    }

    /// Folds in a record the engine itself just made (its chain is known to hold).
    pub(crate) fn apply_trusted(&mut self, record: &Record) {
        self.records += 1;
        self.since_checkpoint += 1;
        match record {
            Record::Audit(r) => {
                self.chain.next_seq = r.seq + 1;
                self.chain.last_hash.clone_from(&r.hash);
                if r.success {
                    self.set_last_state(r);
                }
                if let Some(d) = &r.deferral {
                    match crate::deferral::OpenDeferral::of(r) {
                        Some(open) => {
                            self.deferred.insert(d.id.clone(), open);
                        }
                        None => {
                            self.deferred.remove(&d.id);
                        }
                    }
                }
                if let Some(n) = r
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| self.open_by_key.get(k).copied())
                {
                    if r.error_code == Some(ErrorCode::OutcomeUnknown) {
                        if let Some(o) = self.open.get_mut(&n) {
                            o.unknown_record = Some(r.id.clone());
                        }
                    } else {
                        self.close(n);
                    }
                }
            }
            Record::Intent(i) => {
                self.saw(i.at_ms);
                // A released deferral is sent: from here on the journal carries it.
                if let Some(id) = &i.deferral {
                    self.deferred.remove(id);
                }
                if !self.open_by_key.contains_key(&i.idempotency_key) {
                    self.open_change(OpenChange {
                        intent: i.clone(),
                        unknown_record: None,
                    });
                }
            }
            Record::Abandoned(a) => {
                self.saw(a.at_ms);
                if let Some(n) = self.open_by_key.get(&a.idempotency_key).copied() {
                    self.close(n);
                }
            }
            Record::Webhook(e) => {
                self.saw(e.at_ms);
                self.push_outbox(e.clone());
            }
            Record::Delivered(d) => {
                self.saw(d.at_ms);
                if let Some(n) = self.outbox_by_id.remove(&d.event_id) {
                    self.outbox.remove(&n);
                }
            }
            Record::DeadLetter(d) => {
                self.saw(d.at_ms);
                if let Some(n) = self.outbox_by_id.remove(&d.event_id) {
                    if let Some(entry) = self.outbox.remove(&n) {
                        self.push_dead(DeadLetterEntry {
                            entry,
                            dead: d.clone(),
                        });
                    }
                }
            }
            Record::Replayed(r) => {
                self.saw(r.at_ms);
                if let Some(n) = self.dead_by_id.remove(&r.event_id) {
                    if let Some(mut d) = self.dead.remove(&n) {
                        if r.receiver.is_some() {
                            d.entry.receiver.clone_from(&r.receiver);
                            d.entry.url.clone_from(&r.url);
                        }
                        self.push_outbox(d.entry);
                    }
                }
            }
            Record::Checkpoint(c) => {
                self.adopt(c);
                self.since_checkpoint = 0;
            }
            // A mark, not state: nothing opens or closes.
            Record::Simulation(_) => {}
        }
    }

    /// `r` (a success) set its agent's last state. An agent already known keeps its entry, overwritten in
    /// place: no allocation per record for the agents a log names again and again.
    fn set_last_state(&mut self, r: &AuditRecord) {
        let at_ms = parse_iso8601(&r.timestamp).unwrap_or(self.last_at_ms);
        if let Some(last) = self.last_states.get_mut(&r.user_id) {
            last.state.clone_from(&r.new_state);
            last.at_ms = at_ms;
            return;
        }
        self.last_states.insert(
            r.user_id.clone(),
            LastState {
                user_id: r.user_id.clone(),
                state: r.new_state.clone(),
                at_ms,
            },
        );
    }

    fn saw(&mut self, at_ms: u64) {
        self.last_at_ms = self.last_at_ms.max(at_ms);
    }

    fn close(&mut self, n: u64) {
        if let Some(o) = self.open.remove(&n) {
            self.open_by_key.remove(&o.intent.idempotency_key);
            if self.open_by_user.get(&o.intent.user_id) == Some(&n) {
                self.open_by_user.remove(&o.intent.user_id);
            }
        }
    }

    /// A checkpoint of everything open now.
    pub fn checkpoint(&self, at_ms: u64) -> Checkpoint {
        Checkpoint {
            chain: self.chain.clone(),
            open: self.open.values().cloned().collect(),
            outbox: self.outbox.values().cloned().collect(),
            dead_letters: self.dead.values().cloned().collect(),
            last_states: Some(self.last_states.values().cloned().collect()),
            deferred: self.deferred.values().cloned().collect(),
            at_ms,
        }
    }

    /// A checkpoint of everything open now, counted as folded in: what [`apply`](Self::apply) of it would
    /// leave, without rebuilding the state from the copy it just made (the engine writes its own this way).
    pub(crate) fn take_checkpoint(&mut self, at_ms: u64) -> Checkpoint {
        let c = self.checkpoint(at_ms);
        self.records += 1;
        self.since_checkpoint = 0;
        self.saw(at_ms);
        c
    }

    /// Where the audit chain stands.
    pub fn chain_head(&self) -> &ChainHead {
        &self.chain
    }

    /// Open changes, oldest first.
    pub fn open_changes(&self) -> impl Iterator<Item = &OpenChange> {
        self.open.values()
    }

    /// The open change of one agent, if it has one (the latest, should an old log hold several).
    pub fn open_change_of(&self, user_id: &str) -> Option<&OpenChange> {
        self.open_by_user
            .get(user_id)
            .and_then(|n| self.open.get(n))
    }

    /// Deferred changes still held (see [`OpenDeferral`](crate::OpenDeferral)), by deferral id.
    pub fn deferred(&self) -> impl Iterator<Item = &crate::deferral::OpenDeferral> {
        self.deferred.values()
    }

    /// Each agent's last known state, by user id.
    pub fn last_states(&self) -> impl Iterator<Item = &LastState> {
        self.last_states.values()
    }

    /// One agent's last known state, if a successful change of it was read.
    pub fn last_state_of(&self, user_id: &str) -> Option<&LastState> {
        self.last_states.get(user_id)
    }

    /// The latest wall time (Unix ms) any record read so far names.
    pub fn last_at_ms(&self) -> u64 {
        self.last_at_ms
    }

    /// Undelivered webhook payloads, in delivery order.
    pub fn undelivered(&self) -> impl Iterator<Item = &WebhookEntry> {
        self.outbox.values()
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadLetterEntry> {
        self.dead.values()
    }

    /// How many dead letters are held.
    pub fn dead_letter_count(&self) -> usize {
        self.dead.len()
    }

    /// Records folded in since the last checkpoint (or the start).
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// Items a checkpoint would carry: open changes, undelivered webhooks, dead letters and last states.
    pub fn open_items(&self) -> usize {
        self.open.len()
            + self.outbox.len()
            + self.dead.len()
            + self.last_states.len()
            + self.deferred.len()
    }
}

/// What reading a JSON Lines log found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LogScan {
    /// The fold of every good record read.
    pub state: LogState,
    /// Good records read.
    pub records: u64,
    /// Of those, audit records.
    pub audit_records: u64,
    /// Bytes that hold good records (everything after this is the torn tail). A last record that was whole
    /// but lacked its newline counts as good: `missing_newline` says so.
    pub good_len: usize,
    /// The last record is whole but its newline is missing: add it before appending.
    pub missing_newline: bool,
    /// An unfinished last line (or NUL bytes a power loss left behind): a write cut short. It was never
    /// acknowledged, so setting it aside loses nothing that was reported.
    pub torn_tail: Option<Vec<u8>>,
}

/// Why a log cannot be read on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A complete line is not a record.
    #[error("line {line}: not a log record: {reason}")]
    Unreadable {
        /// 1-based line number.
        line: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A record does not follow from the ones before it (the audit chain is broken).
    #[error("line {line}: {source}")]
    Broken {
        /// 1-based line number.
        line: usize,
        /// What is wrong there.
        source: LogStateError,
    },
}

impl LogError {
    /// Always `AUDIT_LOG_CORRUPT`: only the last line can be torn by a crash, so anything else is damage.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AuditLogCorrupt
    }

    /// The 1-based line number of the first bad line (counted from where the scan started).
    pub fn line(&self) -> usize {
        match self {
            Self::Unreadable { line, .. } | Self::Broken { line, .. } => *line,
        }
    }

    /// The same error for a reader that started scanning after `lines_before` lines of the file (at a
    /// checkpoint), so its line number counts from the start of the file.
    pub fn after_lines(mut self, lines_before: usize) -> Self {
        match &mut self {
            Self::Unreadable { line, .. } | Self::Broken { line, .. } => {
                *line = line.saturating_add(lines_before);
            }
        }
        self
    }
}

/// Reads JSON Lines log bytes, folding every record into `start` (a default state for a whole log, or
/// the state of the checkpoint the bytes begin with) and handing each to `each`.
///
/// A host writes each line with its newline and syncs before it acknowledges anything, so only the last
/// line can be cut short: a last line without a newline that is not a whole JSON value (or a run of NUL
/// bytes, which some file systems leave after a power loss) is the torn tail. A whole last record without
/// its newline is kept. A bad *complete* line anywhere is an error, and so is a last line that is a whole
/// JSON value but not a record that follows (a cut never makes one). Empty lines are skipped.
pub fn scan_log(
    bytes: &[u8],
    start: LogState,
    mut each: impl FnMut(&Record),
) -> Result<LogScan, LogError> {
    let mut state = start;
    let (mut records, mut audit_records) = (0u64, 0u64);
    let mut offset = 0;
    let mut line_no = 0;
    let mut missing_newline = false;
    // NUL padding at the end is never data.
    let end = bytes.len() - bytes.iter().rev().take_while(|&&b| b == 0).count();
    while offset < end {
        let nl = bytes[offset..end].iter().position(|&b| b == b'\n');
        let line_end = nl.map_or(end, |i| offset + i);
        let line = &bytes[offset..line_end];
        line_no += 1;
        let whole = nl.is_some();
        // A NUL byte is never part of a record: a power loss left a hole, and only the last (unsynced) group
        // can have one, so everything from here on is the torn tail.
        if line.contains(&0) {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = line_end + usize::from(whole);
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Ok(text) => Record::parse_json(text),
            // Cut inside a character, or garbage a power loss left behind.
            Err(_) if !whole => break,
            Err(e) => Err(<serde_json::Error as serde::de::Error>::custom(format!(
                "not UTF-8: {e}"
            ))),
        };
        let record = match parsed {
            Ok(r) => r,
            // A write cut short ends inside a JSON value, or (garbage) is no JSON at all. A whole value that
            // is not a record was written that way: no crash makes one.
            Err(e) if !whole && !e.is_data() => break,
            Err(e) => {
                return Err(LogError::Unreadable {
                    line: line_no,
                    reason: e.to_string(),
                })
            }
        };
        // `apply` checks before it changes anything, so a refused record leaves the state as it was. A whole
        // record that does not follow is damage even without its newline: only the record the writer was
        // writing can be cut, and it followed.
        if let Err(source) = state.apply(&record) {
            return Err(LogError::Broken {
                line: line_no,
                source,
            });
        }
        each(&record);
        records += 1;
        if matches!(record, Record::Audit(_)) {
            audit_records += 1;
        }
        offset = line_end + usize::from(whole);
        if !whole {
            missing_newline = true;
            break;
        }
    }
    Ok(LogScan {
        state,
        records,
        audit_records,
        good_len: offset,
        missing_newline,
        torn_tail: (offset < bytes.len()).then(|| bytes[offset..].to_vec()),
    })
}

/// Where the last checkpoint line in `bytes` starts, if there is one (a line that begins with
/// [`CHECKPOINT_LINE_PREFIX`]). Hosts call it on the tail of a log, reading further back until it answers.
pub fn last_checkpoint_start(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    loop {
        let start = bytes[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if bytes[start..].starts_with(CHECKPOINT_LINE_PREFIX) {
            return Some(start);
        }
        if start == 0 {
            return None;
        }
        end = start - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ChainHead;

    fn audit(
        head: &mut ChainHead,
        user: &str,
        key: Option<&str>,
        code: Option<ErrorCode>,
    ) -> Record {
        Record::Audit(head.append(AuditRecord {
            seq: 0,
            id: format!("id-{user}-{}", head.next_seq),
            timestamp: "2026-01-05T08:00:00.000Z".into(),
            user_id: user.into(),
            previous_state: None,
            new_state: "READY".into(),
            reason_code: Some("WORKING".into()),
            success: code.is_none(),
            latency_ms: 5,
            policy_violation: false,
            error_code: code,
            error_message: code.map(|c| c.as_str().to_owned()),
            attempts: 1,
            idempotency_key: key.map(str::to_owned),
            settles: None,
            reference: None,
            observation: None,
            relies_on: None,
            actor: None,
            source: None,
            override_: None,
            deferral: None,
            prev_hash: String::new(),
            hash: String::new(),
        }))
    }

    fn intent(key: &str) -> Record {
        Record::Intent(ChangeIntent {
            transition_id: TransitionId(1),
            user_id: "a".into(),
            state: "READY".into(),
            reason_code: "WORKING".into(),
            idempotency_key: key.into(),
            approved_at_ms: 1,
            at_ms: 2,
            reference: None,
            profile: None,
            out_state_id: None,
            actor: None,
            override_: None,
            deferral: None,
        })
    }

    fn hook(id: &str) -> Record {
        Record::Webhook(WebhookEntry {
            event_id: id.into(),
            body: "{\"x\":\"line\\nbreak\"}".into(),
            at_ms: 3,
            receiver: Some("0123456789abcdef".into()),
            url: Some("https://old.example/hook".into()),
        })
    }

    fn log(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(Record::to_line).collect()
    }

    #[test]
    fn lines_round_trip_and_audit_lines_carry_no_kind() {
        let mut head = ChainHead::default();
        let records = vec![
            intent("k1"),
            hook("e1"),
            audit(&mut head, "a", Some("k1"), None),
            Record::Delivered(Delivered {
                event_id: "e1".into(),
                attempts: 1,
                at_ms: 4,
            }),
            Record::Checkpoint(LogState::default().checkpoint(5)),
        ];
        for r in &records {
            let line = r.to_line();
            let text = std::str::from_utf8(&line).unwrap();
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert_eq!(text.contains("\"kind\""), r.as_audit().is_none(), "{text}");
            assert_eq!(&Record::parse_line(&line[..line.len() - 1]).unwrap(), r);
            let via_serde: Record = serde_json::from_slice(&line).unwrap();
            assert_eq!(&via_serde, r);
        }
        let cp = records[4].to_line();
        assert!(cp.starts_with(CHECKPOINT_LINE_PREFIX));
        // The caller's reference: written only when given; a line without it (any older log) reads as none.
        let Record::Intent(mut referenced) = intent("k2") else {
            unreachable!()
        };
        let plain = Record::Intent(referenced.clone()).to_line();
        assert!(!String::from_utf8_lossy(&plain).contains("reference"));
        referenced.reference = Some("ticket-42".into());
        let line = Record::Intent(referenced.clone()).to_line();
        assert!(String::from_utf8_lossy(&line).contains(r#""reference":"ticket-42""#));
        assert_eq!(
            Record::parse_line(&line[..line.len() - 1]).unwrap(),
            Record::Intent(referenced)
        );
        assert!(Record::parse_line(br#"{"kind":"intent","bogus":1}"#).is_err());
        assert!(Record::parse_line(br#"{"kind":"mystery","atMs":1}"#).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"kind":5}"#).is_err());
    }

    #[test]
    fn webhook_lines_without_a_receiver_still_parse() {
        // As every log before receivers were recorded wrote them.
        let old = br#"{"kind":"webhook","eventId":"e1","body":"{}","atMs":3}"#;
        let Record::Webhook(e) = Record::parse_line(old).unwrap() else {
            panic!("not a webhook record")
        };
        assert_eq!((e.receiver, e.url), (None, None));
        let old = br#"{"kind":"replayed","eventId":"e1","atMs":4}"#;
        assert!(matches!(
            Record::parse_line(old).unwrap(),
            Record::Replayed(Replayed {
                receiver: None,
                url: None,
                ..
            })
        ));
        // And a payload without them is written as before: no `receiver`, no `url`.
        let Record::Webhook(mut e) = hook("e1") else {
            unreachable!()
        };
        (e.receiver, e.url) = (None, None);
        let line = String::from_utf8(Record::Webhook(e).to_line()).unwrap();
        let written =
            r#"{"kind":"webhook","eventId":"e1","body":"{\"x\":\"line\\nbreak\"}","atMs":3}"#;
        assert_eq!(line, format!("{written}\n"));
    }

    #[test]
    fn the_fold_opens_and_closes_changes_and_webhooks() {
        let mut head = ChainHead::default();
        let mut s = LogState::default();
        for r in [intent("k1"), intent("k2"), hook("e1"), hook("e2")] {
            s.apply(&r).unwrap();
        }
        s.apply(&audit(&mut head, "a", Some("k1"), None)).unwrap();
        s.apply(&audit(
            &mut head,
            "a",
            Some("k2"),
            Some(ErrorCode::OutcomeUnknown),
        ))
        .unwrap();
        let open: Vec<_> = s.open_changes().collect();
        assert_eq!(open.len(), 1, "k1 closed; k2 stays open as unknown");
        assert_eq!(open[0].intent.idempotency_key, "k2");
        assert!(open[0].unknown_record.is_some());
        s.apply(&Record::DeadLetter(DeadLetter {
            event_id: "e1".into(),
            attempts: 5,
            last_status: Some(400),
            reason: "refused".into(),
            at_ms: 9,
        }))
        .unwrap();
        assert_eq!(s.undelivered().count(), 1);
        assert_eq!(s.dead_letters().count(), 1);
        s.apply(&Record::Replayed(Replayed {
            event_id: "e1".into(),
            at_ms: 10,
            receiver: Some("fedcba9876543210".into()),
            url: None,
        }))
        .unwrap();
        let order: Vec<_> = s.undelivered().map(|e| e.event_id.as_str()).collect();
        assert_eq!(order, ["e2", "e1"], "a replayed letter goes to the back");
        let replayed = s.undelivered().last().unwrap();
        assert_eq!(
            (replayed.receiver.as_deref(), replayed.url.as_deref()),
            (Some("fedcba9876543210"), None),
            "a replayed letter belongs to the receiver it was replayed for"
        );
        s.apply(&Record::Abandoned(Abandoned {
            idempotency_key: "k2".into(),
            reason: "old".into(),
            at_ms: 11,
        }))
        .unwrap();
        assert_eq!(s.open_changes().count(), 0);

        // A checkpoint carries exactly the open state.
        let cp = s.checkpoint(12);
        let restored = LogState::from_checkpoint(&cp);
        assert_eq!(restored.checkpoint(12), cp);
    }

    #[test]
    fn a_broken_chain_is_refused() {
        let mut head = ChainHead::default();
        let a = audit(&mut head, "a", None, None);
        let b = audit(&mut head, "b", None, None);
        let mut s = LogState::default();
        assert!(matches!(s.apply(&b), Err(LogStateError::Chain(_))));
        s.apply(&a).unwrap();
        s.apply(&b).unwrap();
        assert_eq!(s.chain_head(), &head);
    }

    #[test]
    fn scan_keeps_a_whole_last_record_and_sets_a_torn_one_aside() {
        let mut head = ChainHead::default();
        let records = [intent("k"), audit(&mut head, "a", Some("k"), None)];
        let bytes = log(&records);
        // A hole of NULs inside the last group, with a whole line after it: all of it is torn.
        let mut holed = bytes.clone();
        let last_start = records[0].to_line().len();
        for b in &mut holed[last_start + 5..last_start + 15] {
            *b = 0;
        }
        let scan = scan_log(&holed, LogState::default(), |_| {}).unwrap();
        assert_eq!((scan.records, scan.good_len), (1, last_start));
        assert!(scan.torn_tail.is_some());
        // Whole record, newline missing: kept.
        let scan = scan_log(&bytes[..bytes.len() - 1], LogState::default(), |_| {}).unwrap();
        assert_eq!((scan.records, scan.audit_records), (2, 1));
        assert!(scan.missing_newline && scan.torn_tail.is_none());
        // Cut inside the last record: torn.
        let cut = bytes.len() - 10;
        let scan = scan_log(&bytes[..cut], LogState::default(), |_| {}).unwrap();
        assert_eq!(scan.records, 1);
        assert_eq!(scan.torn_tail.as_deref(), Some(&bytes[scan.good_len..cut]));
        assert_eq!(
            scan.state.open_changes().count(),
            1,
            "the change stays open"
        );
        // NUL padding after a power loss.
        let mut padded = bytes.clone();
        padded.extend([0u8; 64]);
        let scan = scan_log(&padded, LogState::default(), |_| {}).unwrap();
        assert_eq!(scan.records, 2);
        assert_eq!(scan.good_len, bytes.len());
        assert_eq!(scan.torn_tail.map(|t| t.len()), Some(64));
    }

    #[test]
    fn scan_refuses_damage_before_the_last_line() {
        let mut head = ChainHead::default();
        let records = [
            audit(&mut head, "a", None, None),
            audit(&mut head, "b", None, None),
            audit(&mut head, "c", None, None),
        ];
        let text = String::from_utf8(log(&records)).unwrap();
        let edited = text.replacen("\"userId\":\"b\"", "\"userId\":\"z\"", 1);
        let err = scan_log(edited.as_bytes(), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(err.line(), 2);
        assert_eq!(err.code(), ErrorCode::AuditLogCorrupt);
        let garbage = text.replacen('{', "#", 1);
        assert!(matches!(
            scan_log(garbage.as_bytes(), LogState::default(), |_| {}),
            Err(LogError::Unreadable { line: 1, .. })
        ));
    }

    /// Four audit records, one per line.
    fn four_audit_lines() -> Vec<String> {
        let mut head = ChainHead::default();
        ["a", "b", "c", "d"]
            .iter()
            .map(|u| String::from_utf8(audit(&mut head, u, None, None).to_line()).unwrap())
            .collect()
    }

    #[test]
    fn a_chain_error_names_the_line_and_the_seq() {
        let mut lines = four_audit_lines();
        assert!(lines[3].contains("\"seq\":3,"), "{}", lines[3]);
        lines[3] = lines[3].replace("\"userId\":\"d\"", "\"userId\":\"z\"");
        let err = scan_log(lines.concat().as_bytes(), LogState::default(), |_| {}).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            "line 4: audit record seq 3: hash does not match its content"
        );
        assert!(!message.contains("record 0"), "{message}");

        // Removed and reordered records are named the same way.
        let removed = [&lines[0], &lines[1], &lines[3]]
            .map(String::as_str)
            .concat();
        let err = scan_log(removed.as_bytes(), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: audit record seq 3: expected seq 2"
        );
        let mut head = ChainHead::default();
        let mut relinked: Vec<_> = ["a", "b"]
            .iter()
            .map(|u| audit(&mut head, u, None, None))
            .collect();
        if let Record::Audit(r) = &mut relinked[1] {
            r.prev_hash = "1".repeat(64);
            r.hash = r.compute_hash();
        }
        let err = scan_log(&log(&relinked), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: audit record seq 1: prevHash does not link to the previous record"
        );
    }

    #[test]
    fn an_audit_line_with_an_unknown_member_does_not_verify() {
        let mut lines = four_audit_lines();
        lines[3] = lines[3].replacen('{', "{\"note\":\"x\",", 1);
        let bytes = lines.concat();
        let err = scan_log(bytes.as_bytes(), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(err.code(), ErrorCode::AuditLogCorrupt);
        assert_eq!(err.line(), 4);
        let message = err.to_string();
        assert!(message.starts_with("line 4: "), "{message}");
        assert!(message.contains("`note`"), "{message}");
        assert!(!message.contains("expected one of"), "{message}");

        // The same without the last newline: a whole JSON value, so not a torn write.
        let err = scan_log(bytes.trim_end().as_bytes(), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(err.line(), 4);

        // Through every parser a host uses.
        let line = lines[3].trim_end();
        let e = Record::parse_json(line).unwrap_err();
        assert!(e.to_string().contains("`note`"), "{e}");
        let e = serde_json::from_str::<Record>(line).unwrap_err();
        assert!(e.to_string().contains("`note`"), "{e}");
        // An audit line names no `kind`, not even `null`.
        let with_null_kind = lines[0].replacen('{', "{\"kind\":null,", 1);
        assert!(Record::parse_json(with_null_kind.trim_end()).is_err());
        // The other kinds carry `kind` and still parse.
        let intent_line = intent("k").to_line();
        assert!(Record::parse_line(&intent_line[..intent_line.len() - 1]).is_ok());
    }

    #[test]
    fn an_audit_record_with_settles_still_parses_and_verifies() {
        let mut head = ChainHead::default();
        let mut settled = AuditRecord {
            settles: Some("id-a-0".into()),
            ..audit(&mut ChainHead::default(), "a", None, None)
                .as_audit()
                .unwrap()
                .clone()
        };
        settled = head.append(settled);
        let line = Record::Audit(settled.clone()).to_line();
        assert!(std::str::from_utf8(&line).unwrap().contains("\"settles\":"));
        let scan = scan_log(&line, LogState::default(), |_| {}).unwrap();
        assert_eq!(scan.audit_records, 1);
        assert_eq!(
            Record::parse_line(&line[..line.len() - 1]).unwrap(),
            Record::Audit(settled)
        );
    }

    #[test]
    fn an_observation_record_parses_verifies_and_sets_the_last_state() {
        let mut head = ChainHead::default();
        let base = audit(&mut ChainHead::default(), "a", None, None)
            .as_audit()
            .unwrap()
            .clone();
        let observed = head.append(AuditRecord {
            new_state: "INBOUND_CONTACT".into(),
            idempotency_key: None,
            observation: Some(Box::new(crate::Observation {
                at_ms: 5,
                code: None,
                out_state_id: None,
                source: crate::ObservationSource::External,
                tenant_state: "InboundContact".into(),
                tenant_state_id: Some(3),
                tenant_time: "1970-01-01T00:00:00.005Z".into(),
            })),
            ..base.clone()
        });
        let base_state = base.new_state.clone();
        let noop = head.append(AuditRecord {
            relies_on: Some(observed.id.clone()),
            idempotency_key: None,
            ..base
        });
        let mut bytes = Record::Audit(observed.clone()).to_line();
        bytes.extend(Record::Audit(noop.clone()).to_line());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"observation\":{\"atMs\":5,"), "{text}");
        assert!(text.contains("\"reliesOn\":"), "{text}");
        let scan = scan_log(&bytes, LogState::default(), |_| {}).unwrap();
        assert_eq!(scan.audit_records, 2);
        // The last state is what the tenant was seen in, then confirmed by the no-op.
        let last: Vec<_> = scan.state.last_states().map(|l| l.state.clone()).collect();
        assert_eq!(last, [base_state]);
        let first = text.lines().next().unwrap();
        assert_eq!(
            Record::parse_line(first.as_bytes()).unwrap(),
            Record::Audit(observed)
        );
        // A tampered observation breaks the chain.
        let tampered = text.replace("InboundContact", "OutboundContact");
        assert!(scan_log(tampered.as_bytes(), LogState::default(), |_| {}).is_err());
    }

    #[test]
    fn a_whole_last_record_that_does_not_follow_is_damage_not_a_torn_write() {
        let mut lines = four_audit_lines();
        lines[3] = lines[3].replace("\"userId\":\"d\"", "\"userId\":\"z\"");
        let bytes = lines.concat();
        let err = scan_log(bytes.trim_end().as_bytes(), LogState::default(), |_| {}).unwrap_err();
        assert_eq!(err.line(), 4);
        // A cut inside the record is still a torn write.
        let cut = &bytes.as_bytes()[..bytes.len() - 20];
        let scan = scan_log(cut, LogState::default(), |_| {}).unwrap();
        assert_eq!(scan.audit_records, 3);
        assert!(scan.torn_tail.is_some());
    }

    /// An audit record of `user` entering `state` at `timestamp`, failed with `code` if given.
    fn change(
        head: &mut ChainHead,
        user: &str,
        state: &str,
        timestamp: &str,
        code: Option<ErrorCode>,
    ) -> Record {
        let Record::Audit(mut r) = audit(&mut ChainHead::default(), user, None, code) else {
            unreachable!()
        };
        r.new_state = state.into();
        r.timestamp = timestamp.into();
        Record::Audit(head.append(r))
    }

    #[test]
    fn the_fold_keeps_each_agents_last_state() {
        let mut head = ChainHead::default();
        let mut s = LogState::default();
        let t = |m: u64| format!("2026-01-05T08:{m:02}:00.000Z");
        let at = |m: u64| crate::time::parse_iso8601(&t(m)).unwrap();
        let last =
            |s: &LogState, user: &str| s.last_state_of(user).map(|l| (l.state.clone(), l.at_ms));
        s.apply(&change(&mut head, "a", "READY", &t(1), None))
            .unwrap();
        s.apply(&change(&mut head, "b", "PAUSED", &t(2), None))
            .unwrap();
        assert_eq!(last(&s, "a"), Some(("READY".into(), at(1))));
        // A failure leaves it as it was; so does an unknown outcome: the tenant may not hold the new state.
        let refused = change(
            &mut head,
            "a",
            "NOT_READY",
            &t(3),
            Some(ErrorCode::AgentNotScheduled),
        );
        s.apply(&refused).unwrap();
        let unknown = change(
            &mut head,
            "a",
            "PAUSED",
            &t(4),
            Some(ErrorCode::OutcomeUnknown),
        );
        s.apply(&unknown).unwrap();
        assert_eq!(last(&s, "a"), Some(("READY".into(), at(1))));
        // A success that settles it does.
        let Record::Audit(mut settles) =
            change(&mut ChainHead::default(), "a", "PAUSED", &t(5), None)
        else {
            unreachable!()
        };
        settles.settles = unknown.as_audit().map(|u| u.id.clone());
        s.apply(&Record::Audit(head.append(settles))).unwrap();
        assert_eq!(last(&s, "a"), Some(("PAUSED".into(), at(5))));
        let users: Vec<_> = s.last_states().map(|l| l.user_id.as_str()).collect();
        assert_eq!(users, ["a", "b"]);
        assert_eq!(last(&s, "nobody"), None);
    }

    #[test]
    fn taking_a_checkpoint_leaves_what_folding_it_in_would() {
        let mut head = ChainHead::default();
        let mut s = LogState::default();
        for r in [intent("k"), hook("e1"), audit(&mut head, "b", None, None)] {
            s.apply(&r).unwrap();
        }
        let mut folded = s.clone();
        let c = s.take_checkpoint(99);
        folded.apply(&Record::Checkpoint(c.clone())).unwrap();
        assert_eq!(c, folded.checkpoint(99));
        assert_eq!(s.checkpoint(7), folded.checkpoint(7));
        assert_eq!(
            (s.since_checkpoint(), s.last_at_ms(), s.records),
            (0, 99, 4)
        );
        assert_eq!(
            (
                folded.since_checkpoint(),
                folded.last_at_ms(),
                folded.records
            ),
            (0, 99, 4)
        );
    }

    #[test]
    fn a_checkpoint_carries_the_last_states_and_is_checked_against_them() {
        let mut head = ChainHead::default();
        let mut s = LogState::default();
        s.apply(&change(
            &mut head,
            "a",
            "READY",
            "2026-01-05T08:00:00.000Z",
            None,
        ))
        .unwrap();
        s.apply(&change(
            &mut head,
            "b",
            "IDLE",
            "2026-01-05T08:01:00.000Z",
            None,
        ))
        .unwrap();
        let cp = s.checkpoint(9);
        let states = cp.last_states.clone().unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(
            (states[1].user_id.as_str(), states[1].state.as_str()),
            ("b", "IDLE")
        );

        // Round trip: through its line, and through the state it describes.
        let line = Record::Checkpoint(cp.clone()).to_line();
        let text = std::str::from_utf8(&line).unwrap();
        assert!(
            text.contains("\"lastStates\":[{\"userId\":\"a\",\"state\":\"READY\",\"atMs\":"),
            "{text}"
        );
        let Record::Checkpoint(parsed) = Record::parse_line(&line[..line.len() - 1]).unwrap()
        else {
            panic!("a checkpoint")
        };
        assert_eq!(parsed, cp);
        let restored = LogState::from_checkpoint(&parsed);
        assert_eq!(restored.checkpoint(9), cp);
        assert_eq!(restored.last_state_of("b"), s.last_state_of("b"));

        // Read from the start, a checkpoint whose last states differ is refused...
        let mut wrong = cp.clone();
        wrong.last_states.as_mut().unwrap()[0].state = "PAUSED".into();
        let mut again = s.clone();
        let e = again.apply(&Record::Checkpoint(wrong)).unwrap_err();
        assert!(e.to_string().contains("last states differ"), "{e}");
        assert_eq!(again, s, "a refused record changes nothing");

        // ... and one written before the member existed is not: it names no state, so recovery from it
        // knows none (as reading from the start does past it).
        let old_line = text.replacen(
            &format!(
                ",\"lastStates\":{}",
                serde_json::to_string(&states).unwrap()
            ),
            "",
            1,
        );
        assert!(!old_line.contains("lastStates"), "{old_line}");
        let Record::Checkpoint(old) = Record::parse_json(old_line.trim_end()).unwrap() else {
            panic!("a checkpoint")
        };
        assert_eq!(old.last_states, None);
        let mut from_start = s.clone();
        from_start.apply(&Record::Checkpoint(old.clone())).unwrap();
        assert_eq!(from_start.last_states().count(), 0);
        assert_eq!(
            from_start.checkpoint(9),
            LogState::from_checkpoint(&old).checkpoint(9)
        );
    }

    #[test]
    fn the_last_checkpoint_is_found_from_the_end() {
        let mut head = ChainHead::default();
        let mut s = LogState::default();
        let mut records = vec![intent("k1")];
        s.apply(&records[0]).unwrap();
        let cp = Record::Checkpoint(s.checkpoint(1));
        records.push(cp);
        records.push(audit(&mut head, "a", Some("k1"), None));
        let bytes = log(&records);
        let at = last_checkpoint_start(&bytes).unwrap();
        assert_eq!(at, records[0].to_line().len());
        // Resuming from the checkpoint gives the same state as reading everything.
        let Record::Checkpoint(c) = &records[1] else {
            unreachable!()
        };
        let tail = scan_log(
            &bytes[at + records[1].to_line().len()..],
            LogState::from_checkpoint(c),
            |_| {},
        )
        .unwrap();
        let whole = scan_log(&bytes, LogState::default(), |_| {}).unwrap();
        assert_eq!(tail.state.checkpoint(0), whole.state.checkpoint(0));
        assert_eq!(last_checkpoint_start(&log(&records[2..])), None);
    }
}
