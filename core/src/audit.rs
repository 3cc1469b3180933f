//! The audit trail: one record per transition attempt, chained with SHA-256.
//!
//! Each record's `hash` is the SHA-256 of its canonical encoding, which includes `prevHash`, so changing,
//! removing or reordering any record breaks every hash after it.
//!
//! **Canonical encoding:** the record as a JSON object without its `hash` member, keys sorted by byte order,
//! no insignificant whitespace, numbers and strings as `serde_json` writes them (UTF-8, minimal escapes).
//! Optional members added after the first release (`settles`, `reference`) are left out when absent, so
//! older records keep their hashes; when present they are hashed like every other member, in their sorted
//! place (`reference` between `reasonCode` and `seq`; `actor` first, `deferral` after `attempts`,
//! `override` after `observation`, `source` between `settles` and `success`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actor::{Actor, OverrideNote, Source};
use crate::deferral::DeferralNote;
use crate::error::ErrorCode;
use crate::observe::Observation;

/// The `prevHash` of the first record in a chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record. Field names are the reference module's, plus the chain and a few additions.
///
/// A record holds only the members its hash covers: any other member is refused when it is parsed, since
/// the chain could not vouch for it (a line with an added `"note"` would otherwise still verify).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditRecord {
    /// Position in the chain, from 0.
    pub seq: u64,
    /// A random (v4) UUID from the engine's seeded generator.
    pub id: String,
    /// When the attempt completed, RFC 3339 with milliseconds.
    pub timestamp: String,
    /// The agent.
    pub user_id: String,
    /// The agent's state before the attempt, if known.
    pub previous_state: Option<String>,
    /// The requested state.
    pub new_state: String,
    /// The reason code sent (or that would have been sent).
    pub reason_code: Option<String>,
    /// Whether the tenant accepted the change.
    pub success: bool,
    /// From the start of the transition to its completion.
    pub latency_ms: u64,
    /// Whether the attempt was refused by compliance policy.
    pub policy_violation: bool,
    /// The stable error code, if it failed.
    pub error_code: Option<ErrorCode>,
    /// The error message, if it failed.
    pub error_message: Option<String>,
    /// API requests sent on behalf of this transition (validation and state change, retries included; token
    /// requests excluded).
    pub attempts: u32,
    /// The `Idempotency-Key` of the state change, if one was sent.
    pub idempotency_key: Option<String>,
    /// For a record that settles an earlier `OUTCOME_UNKNOWN` one: that record's `id`. Nothing is rewritten;
    /// the settlement is a new record. Absent (not `null`) otherwise, so records written before the field
    /// existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settles: Option<String>,
    /// The caller's reference of the change (see [`TransitionOptions`](crate::TransitionOptions)): a short
    /// opaque string, e.g. a ticket number or `bulk:sha256=…:row=12`, on every audit record of the change,
    /// never sent to the tenant. Absent (not `null`) when the caller gave none, so records written before the
    /// field existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// For an **observation record** (`cxone`): what the tenant showed. Such a record is not a transition
    /// attempt: it says that the tenant showed `userId` in `newState` (`success` true, no attempts), and the
    /// report counts it apart. Absent (not `null`) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Box<Observation>>,
    /// For a change not sent because the tenant already showed it in effect (`observe.skipIfInEffect`): the
    /// `id` of the observation record it relied on. Absent (not `null`) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relies_on: Option<String>,
    /// Who asked for the change (for an observation record: the system). Every record the engine writes
    /// has one; absent (not `null`) only in records written before the field existed, which keep their
    /// hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Through what it came in: `cli`, `service`, `console`, `simulation`, or `observed` for an observation
    /// record. Present and absent like `actor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// A supervisor's override of the policy: who, why, and the rule it passed. Such a change is never a
    /// policy violation; the report counts overrides apart. Absent (not `null`) otherwise.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Box<OverrideNote>>,
    /// A step of a deferred change (see [`DeferralNote`]): held, released, cancelled or expired. Absent
    /// (not `null`) for a change that was never deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferral: Option<Box<DeferralNote>>,
    /// The previous record's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of this record's canonical encoding.
    pub hash: String,
}

impl AuditRecord {
    /// The canonical bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.canonical()).expect("audit records always serialize")
    }

    /// Computes the hash this record should carry (streamed: the canonical bytes are never buffered).
    pub fn compute_hash(&self) -> String {
        let mut hasher = HashWriter(Sha256::new());
        serde_json::to_writer(&mut hasher, &self.canonical())
            .expect("audit records always serialize");
        hex::encode(hasher.0.finalize())
    }

    fn canonical(&self) -> Canonical<'_> {
        Canonical {
            actor: &self.actor,
            attempts: self.attempts,
            deferral: &self.deferral,
            error_code: self.error_code,
            error_message: &self.error_message,
            id: &self.id,
            idempotency_key: &self.idempotency_key,
            latency_ms: self.latency_ms,
            new_state: &self.new_state,
            observation: &self.observation,
            override_: &self.override_,
            policy_violation: self.policy_violation,
            prev_hash: &self.prev_hash,
            previous_state: &self.previous_state,
            reason_code: &self.reason_code,
            reference: &self.reference,
            relies_on: &self.relies_on,
            seq: self.seq,
            settles: &self.settles,
            source: &self.source,
            success: self.success,
            timestamp: &self.timestamp,
            user_id: &self.user_id,
        }
    }
}

/// The record without `hash`, its members declared in byte order of their JSON names, so serde_json
/// writes the canonical encoding directly (no intermediate map). `canonical_encoding_is_sorted` pins it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Canonical<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: &'a Option<Actor>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    deferral: &'a Option<Box<DeferralNote>>,
    error_code: Option<ErrorCode>,
    error_message: &'a Option<String>,
    id: &'a str,
    idempotency_key: &'a Option<String>,
    latency_ms: u64,
    new_state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    observation: &'a Option<Box<Observation>>,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    override_: &'a Option<Box<OverrideNote>>,
    policy_violation: bool,
    prev_hash: &'a str,
    previous_state: &'a Option<String>,
    reason_code: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relies_on: &'a Option<String>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    settles: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: &'a Option<Source>,
    success: bool,
    timestamp: &'a str,
    user_id: &'a str,
}

/// Feeds serde_json's output straight into the hasher.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AuditRecord {
    #[cfg(test)]
    fn canonical_via_map(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("audit records always serialize");
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("hash");
        }
        // serde_json's Map is a BTreeMap (no `preserve_order`), so its keys come out sorted.
        serde_json::to_vec(&value).expect("values always serialize")
    }
}

/// Where a chain stands: the next sequence number and the last hash. Persist it to continue a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainHead {
    /// The `seq` the next record gets.
    pub next_seq: u64,
    /// The `hash` of the last record ([`GENESIS_HASH`] when empty).
    pub last_hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self {
            next_seq: 0,
            last_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainHead {
    /// Links `record` onto the chain: sets `seq`, `prevHash` and `hash`, then advances the head.
    pub fn append(&mut self, mut record: AuditRecord) -> AuditRecord {
        record.seq = self.next_seq;
        record.prev_hash = std::mem::take(&mut self.last_hash);
        record.hash = record.compute_hash();
        self.next_seq += 1;
        self.last_hash = record.hash.clone();
        record
    }

    /// Whether `r` continues the chain from here (`index` is its position in the input, for the error).
    /// The head is not moved.
    pub(crate) fn check_next(&self, index: usize, r: &AuditRecord) -> Result<(), ChainError> {
        if r.seq != self.next_seq {
            return Err(ChainError::SequenceGap {
                index,
                expected: self.next_seq,
                found: r.seq,
            });
        }
        if r.prev_hash != self.last_hash {
            return Err(ChainError::BrokenLink { index, seq: r.seq });
        }
        if r.compute_hash() != r.hash {
            return Err(ChainError::HashMismatch { index, seq: r.seq });
        }
        Ok(())
    }

    /// The last record as a [`HeadAnchor`] (`SEQ:HASH`), or `None` for a chain without records.
    pub fn anchor(&self) -> Option<HeadAnchor> {
        let seq = self.next_seq.checked_sub(1)?;
        Some(HeadAnchor {
            seq,
            hash: self.last_hash.clone(),
        })
    }

    /// The head as people read and write it: the last record's `SEQ:HASH`, or [`NO_HEAD`] (`none`) for a
    /// chain without records. `audit verify` prints it; `audit verify --head` takes it back.
    pub fn anchor_text(&self) -> String {
        self.anchor()
            .map_or_else(|| NO_HEAD.to_owned(), |a| a.to_string())
    }
}

/// What [`ChainHead::anchor_text`] says for a chain without records.
pub const NO_HEAD: &str = "none";

/// The last record of a chain named by its `seq` and `hash`, written `SEQ:HASH` (the hash as 64 lowercase
/// hex digits): an anchor for the tail of a log.
///
/// A hash chain shows any record edited, inserted or removed *before* its last one, but not a last record
/// removed: what is left is still a valid chain. A head noted somewhere else (a ticket, a second system)
/// closes that gap: the log must still hold the record it names, with exactly that hash.
///
/// ```
/// use cxone_agent_state_core::HeadAnchor;
/// let text = format!("41:{}", "ab".repeat(32));
/// let anchor: HeadAnchor = text.parse().unwrap();
/// assert_eq!(anchor.seq(), 41);
/// assert_eq!(anchor.to_string(), text);
/// assert!("41:AB".parse::<HeadAnchor>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeadAnchor {
    seq: u64,
    hash: String,
}

impl HeadAnchor {
    /// The anchored record's `seq`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The anchored record's `hash` (64 lowercase hex digits).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether a log whose chain ends at `head` holds the anchored record with the anchored hash.
    /// `hash_at_seq` is the hash of the log's audit record with the anchored `seq`, if the reader saw one
    /// (the last record's hash is taken from `head`, so a reader that starts at a checkpoint can still check
    /// an anchor on the last record).
    pub fn check(&self, head: &ChainHead, hash_at_seq: Option<&str>) -> Result<(), AnchorMismatch> {
        let Some(last_seq) = head.next_seq.checked_sub(1) else {
            return Err(AnchorMismatch::Empty {
                anchored_seq: self.seq,
            });
        };
        let found = match self.seq {
            s if s > last_seq => {
                return Err(AnchorMismatch::StopsBefore {
                    last_seq,
                    anchored_seq: self.seq,
                })
            }
            s if s == last_seq => Some(head.last_hash.as_str()),
            _ => hash_at_seq,
        };
        match found {
            Some(h) if h == self.hash => Ok(()),
            Some(h) => Err(AnchorMismatch::DifferentHash {
                seq: self.seq,
                found: h.to_owned(),
                anchored: self.hash.clone(),
            }),
            None => Err(AnchorMismatch::NotRead { seq: self.seq }),
        }
    }
}

impl std::fmt::Display for HeadAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for HeadAnchor {
    type Err = AnchorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = s.split_once(':').ok_or(AnchorError::Shape)?;
        // Digits only: `u64::from_str` alone would take a sign (`+3`).
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AnchorError::Seq);
        }
        let seq = seq.parse().map_err(|_| AnchorError::Seq)?;
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(AnchorError::Hash);
        }
        Ok(Self {
            seq,
            hash: hash.to_owned(),
        })
    }
}

/// Why a `SEQ:HASH` head anchor does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// No `:` between the two parts.
    #[error(
        "a head anchor is written SEQ:HASH (as `audit verify` prints it), e.g. 41:<64 hex digits>"
    )]
    Shape,
    /// The part before `:` is not a sequence number.
    #[error("the head anchor's SEQ is not a whole number")]
    Seq,
    /// The part after `:` is not a SHA-256 in lowercase hex.
    #[error("the head anchor's HASH must be 64 lowercase hex digits")]
    Hash,
}

/// Why a log does not hold the record a [`HeadAnchor`] names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorMismatch {
    /// The log holds no audit record at all.
    #[error("the log holds no audit records, but the head anchor names seq {anchored_seq}")]
    Empty {
        /// The anchored `seq`.
        anchored_seq: u64,
    },
    /// The log ends before the anchored record: records were removed from its end.
    #[error("the log stops at seq {last_seq}, before the anchored seq {anchored_seq}")]
    StopsBefore {
        /// The `seq` of the log's last audit record.
        last_seq: u64,
        /// The anchored `seq`.
        anchored_seq: u64,
    },
    /// The log's record at the anchored `seq` is another one: the log was rewritten from there on.
    #[error("the audit record seq {seq} has hash {found}, not the anchored {anchored}")]
    DifferentHash {
        /// The anchored `seq`.
        seq: u64,
        /// The hash the log's record has.
        found: String,
        /// The hash the anchor names.
        anchored: String,
    },
    /// The reader did not see the anchored record (it precedes where the log was read from).
    #[error("the audit record seq {seq} was not read, so the head anchor cannot be checked")]
    NotRead {
        /// The anchored `seq`.
        seq: u64,
    },
}

impl AnchorMismatch {
    /// Always `AUDIT_LOG_CORRUPT`: a log that lost or changed an anchored record was tampered with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AuditLogCorrupt
    }
}

/// The first place a chain fails to verify.
///
/// Messages name the record by its `seq` (its position in the input, `index`, means little when a log is
/// checked one record at a time; a log reader adds the line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The record's content does not match its hash: it was edited.
    #[error("audit record seq {seq}: hash does not match its content")]
    HashMismatch {
        /// Position in the input, from 0.
        index: usize,
        /// The record's `seq`.
        seq: u64,
    },
    /// The record's `prevHash` is not the previous record's hash: a record was removed, inserted or reordered.
    #[error("audit record seq {seq}: prevHash does not link to the previous record")]
    BrokenLink {
        /// Position in the input, from 0.
        index: usize,
        /// The record's `seq`.
        seq: u64,
    },
    /// The sequence numbers are not consecutive.
    #[error("audit record seq {found}: expected seq {expected}")]
    SequenceGap {
        /// Position in the input, from 0.
        index: usize,
        /// The expected `seq`.
        expected: u64,
        /// The `seq` found.
        found: u64,
    },
}

impl ChainError {
    /// Position in the input of the first broken record.
    pub fn index(&self) -> usize {
        match self {
            Self::HashMismatch { index, .. }
            | Self::BrokenLink { index, .. }
            | Self::SequenceGap { index, .. } => *index,
        }
    }
}

/// Verifies a chain that starts at `start` (use `ChainHead::default()` for a whole log) and returns the head
/// after the last record.
pub fn verify_chain<'a>(
    start: ChainHead,
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<ChainHead, ChainError> {
    let mut head = start;
    for (index, r) in records.into_iter().enumerate() {
        head.check_next(index, r)?;
        head.next_seq += 1;
        head.last_hash.clone_from(&r.hash);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(user: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            id: "00000000-0000-4000-8000-000000000000".into(),
            timestamp: "2026-01-05T08:00:00.000Z".into(),
            user_id: user.into(),
            previous_state: None,
            new_state: "READY".into(),
            reason_code: Some("WORKING".into()),
            success: true,
            latency_ms: 12,
            policy_violation: false,
            error_code: None,
            error_message: None,
            attempts: 3,
            idempotency_key: None,
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
        }
    }

    /// Three records chained onto `head`, for agents a, b and c.
    fn three(head: &mut ChainHead) -> Vec<AuditRecord> {
        ["a", "b", "c"]
            .iter()
            .map(|u| head.append(draft(u)))
            .collect()
    }

    #[test]
    fn chain_verifies_and_detects_tampering() {
        let mut head = ChainHead::default();
        let recs = three(&mut head);
        assert_eq!(recs[0].prev_hash, GENESIS_HASH);
        assert_eq!(recs[1].prev_hash, recs[0].hash);
        assert_eq!(verify_chain(ChainHead::default(), &recs).unwrap(), head);

        let mut edited = recs.clone();
        edited[1].success = false;
        assert_eq!(
            verify_chain(ChainHead::default(), &edited).unwrap_err(),
            ChainError::HashMismatch { index: 1, seq: 1 }
        );
        let removed = [recs[0].clone(), recs[2].clone()];
        assert_eq!(
            verify_chain(ChainHead::default(), &removed)
                .unwrap_err()
                .index(),
            1
        );
    }

    #[test]
    fn the_head_anchor_prints_and_parses_as_seq_colon_hash() {
        let mut head = ChainHead::default();
        assert_eq!(head.anchor(), None);
        assert_eq!(head.anchor_text(), "none");
        let records = three(&mut head);
        let anchor = head.anchor().unwrap();
        assert_eq!((anchor.seq(), anchor.hash()), (2, records[2].hash.as_str()));
        let text = head.anchor_text();
        assert_eq!(text, format!("2:{}", records[2].hash));
        assert_eq!(text.parse::<HeadAnchor>().unwrap(), anchor);

        let hash = "a".repeat(64);
        for (bad, why) in [
            ("2", AnchorError::Shape),
            (&hash.clone(), AnchorError::Shape),
            (&format!(":{hash}"), AnchorError::Seq),
            (&format!("+2:{hash}"), AnchorError::Seq),
            (&format!("x:{hash}"), AnchorError::Seq),
            (&format!("99999999999999999999:{hash}"), AnchorError::Seq),
            ("2:", AnchorError::Hash),
            (&format!("2:{}", "A".repeat(64)), AnchorError::Hash),
            (&format!("2:{}", "a".repeat(63)), AnchorError::Hash),
            (&format!("2:{hash}0"), AnchorError::Hash),
            (&format!("2:{}g", "a".repeat(63)), AnchorError::Hash),
        ] {
            assert_eq!(bad.parse::<HeadAnchor>(), Err(why), "{bad}");
        }
    }

    #[test]
    fn a_head_anchor_checks_the_tail_of_a_chain() {
        let mut head = ChainHead::default();
        let records = three(&mut head);
        let at = |i: usize| HeadAnchor {
            seq: records[i].seq,
            hash: records[i].hash.clone(),
        };
        // The last record is checked against the head; an earlier one against the hash the reader saw.
        assert_eq!(at(2).check(&head, None), Ok(()));
        assert_eq!(at(1).check(&head, Some(&records[1].hash)), Ok(()));
        assert_eq!(
            at(1).check(&head, None),
            Err(AnchorMismatch::NotRead { seq: 1 })
        );
        assert_eq!(
            at(1).check(&head, Some(&records[0].hash)),
            Err(AnchorMismatch::DifferentHash {
                seq: 1,
                found: records[0].hash.clone(),
                anchored: records[1].hash.clone(),
            })
        );
        // The last record removed: what is left verifies, the anchor does not.
        let shorter = verify_chain(ChainHead::default(), &records[..2]).unwrap();
        let e = at(2).check(&shorter, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the log stops at seq 1, before the anchored seq 2"
        );
        assert_eq!(e.code(), ErrorCode::AuditLogCorrupt);
        assert_eq!(
            at(0).check(&ChainHead::default(), None),
            Err(AnchorMismatch::Empty { anchored_seq: 0 })
        );
    }

    #[test]
    fn canonical_encoding_is_sorted() {
        // The direct encoding equals the sorted-map encoding, for every optional member set or not.
        let mut r = ChainHead::default().append(draft("a\"b\u{e9}"));
        assert_eq!(r.canonical_bytes(), r.canonical_via_map());
        r.error_code = Some(ErrorCode::RateLimited);
        r.error_message = Some("x\ny".into());
        r.previous_state = Some("READY".into());
        r.idempotency_key = Some("k".into());
        r.reason_code = None;
        assert_eq!(r.canonical_bytes(), r.canonical_via_map());
        r.settles = Some("00000000-0000-4000-8000-000000000001".into());
        assert_eq!(r.canonical_bytes(), r.canonical_via_map());
        r.reference = Some("bulk:sha256=0123456789abcdef:row=12".into());
        assert_eq!(r.canonical_bytes(), r.canonical_via_map());
        r.actor = Some(crate::Actor::supervisor("kim"));
        r.source = Some(crate::Source::Cli);
        r.override_ = Some(Box::new(crate::OverrideNote {
            actor: "kim".into(),
            overrode: Some(ErrorCode::MandatoryBreakViolation),
            reason: "coverage".into(),
        }));
        r.deferral = Some(Box::new(crate::DeferralNote {
            cause: Some("replaced".into()),
            deadline_ms: Some(9),
            id: "d".into(),
            phase: crate::DeferralPhase::Cancelled,
            until_ms: Some(8),
        }));
        assert_eq!(r.canonical_bytes(), r.canonical_via_map());
        let text = String::from_utf8(r.canonical_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"actor":{"id":"kim","role":"supervisor"},"attempts""#),
            "{text}"
        );
        assert!(
            text.contains(
                r#""settles":"00000000-0000-4000-8000-000000000001","source":"cli","success""#
            ),
            "{text}"
        );
        assert_eq!(
            r.compute_hash(),
            hex::encode(Sha256::digest(r.canonical_via_map()))
        );
    }

    #[test]
    fn a_reference_is_hashed_in_its_sorted_place_and_only_when_present() {
        let plain = ChainHead::default().append(draft("a"));
        assert!(!String::from_utf8(plain.canonical_bytes())
            .unwrap()
            .contains("reference"));
        assert!(!serde_json::to_string(&plain).unwrap().contains("reference"));

        let mut referenced = draft("a");
        referenced.reference = Some("ticket-42".into());
        let referenced = ChainHead::default().append(referenced);
        let text = String::from_utf8(referenced.canonical_bytes()).unwrap();
        assert!(
            text.contains("\"reasonCode\":\"WORKING\",\"reference\":\"ticket-42\",\"seq\":0"),
            "{text}"
        );
        assert_ne!(referenced.hash, plain.hash);
        let back: AuditRecord =
            serde_json::from_str(&serde_json::to_string(&referenced).unwrap()).unwrap();
        assert_eq!(back, referenced);

        // The reference is covered by the hash: editing it is tampering.
        let mut edited = referenced.clone();
        edited.reference = Some("ticket-43".into());
        assert_eq!(
            verify_chain(ChainHead::default(), [&edited]).unwrap_err(),
            ChainError::HashMismatch { index: 0, seq: 0 }
        );
    }

    #[test]
    fn canonical_encoding_is_sorted_and_excludes_hash() {
        let r = ChainHead::default().append(draft("a"));
        let s = String::from_utf8(r.canonical_bytes()).unwrap();
        assert!(s.starts_with("{\"attempts\":3,\"errorCode\":null"), "{s}");
        assert!(!s.contains("\"hash\""));
        assert!(s.contains("\"prevHash\""));
    }
}
