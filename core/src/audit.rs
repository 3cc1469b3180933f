//! The audit trail: one record per transition attempt, chained with SHA-256.
//!
//! Each record's `hash` is the SHA-256 of its canonical encoding, which includes `prevHash`, so changing,
//! removing or reordering any record breaks every hash after it.
//!
//! **Canonical encoding:** the record as a JSON object without its `hash` member, keys sorted by byte order,
//! no insignificant whitespace, numbers and strings as `serde_json` writes them (UTF-8, minimal escapes).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ErrorCode;

/// The `prevHash` of the first record in a chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record. Field names are the reference module's, plus the chain and a few additions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
            attempts: self.attempts,
            error_code: self.error_code,
            error_message: &self.error_message,
            id: &self.id,
            idempotency_key: &self.idempotency_key,
            latency_ms: self.latency_ms,
            new_state: &self.new_state,
            policy_violation: self.policy_violation,
            prev_hash: &self.prev_hash,
            previous_state: &self.previous_state,
            reason_code: &self.reason_code,
            seq: self.seq,
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
    attempts: u32,
    error_code: Option<ErrorCode>,
    error_message: &'a Option<String>,
    id: &'a str,
    idempotency_key: &'a Option<String>,
    latency_ms: u64,
    new_state: &'a str,
    policy_violation: bool,
    prev_hash: &'a str,
    previous_state: &'a Option<String>,
    reason_code: &'a Option<String>,
    seq: u64,
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
}

/// The first place a chain fails to verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The record's content does not match its hash: it was edited.
    #[error("record {index} (seq {seq}): hash does not match its content")]
    HashMismatch {
        /// Position in the input, from 0.
        index: usize,
        /// The record's `seq`.
        seq: u64,
    },
    /// The record's `prevHash` is not the previous record's hash: a record was removed, inserted or reordered.
    #[error("record {index} (seq {seq}): prevHash does not link to the previous record")]
    BrokenLink {
        /// Position in the input, from 0.
        index: usize,
        /// The record's `seq`.
        seq: u64,
    },
    /// The sequence numbers are not consecutive.
    #[error("record {index}: expected seq {expected}, found {found}")]
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
        if r.seq != head.next_seq {
            return Err(ChainError::SequenceGap {
                index,
                expected: head.next_seq,
                found: r.seq,
            });
        }
        if r.prev_hash != head.last_hash {
            return Err(ChainError::BrokenLink { index, seq: r.seq });
        }
        if r.compute_hash() != r.hash {
            return Err(ChainError::HashMismatch { index, seq: r.seq });
        }
        head.next_seq += 1;
        head.last_hash = r.hash.clone();
    }
    Ok(head)
}

/// What reading a durable audit log (JSON Lines) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogScan {
    /// Where the chain stands after the last good record: continue it from here.
    pub head: ChainHead,
    /// Good records read.
    pub records: u64,
    /// Bytes of the file that hold good records (every byte after this is the torn tail).
    pub good_len: usize,
    /// An unfinished last line: a write cut short by a crash. It was never acknowledged, so setting it
    /// aside loses nothing that was reported.
    pub torn_tail: Option<Vec<u8>>,
}

/// Why a durable audit log cannot be continued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A complete line is not an audit record.
    #[error("line {line}: not an audit record: {reason}")]
    Unreadable {
        /// 1-based line number.
        line: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A record does not verify against the chain.
    #[error("line {line}: {source}")]
    Chain {
        /// 1-based line number.
        line: usize,
        /// What is wrong with the chain there.
        source: ChainError,
    },
}

impl LogError {
    /// Always `AUDIT_LOG_CORRUPT`: only the last line can be torn by a crash, so anything else is damage.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AuditLogCorrupt
    }

    /// The 1-based line number of the first bad line.
    pub fn line(&self) -> usize {
        match self {
            Self::Unreadable { line, .. } | Self::Chain { line, .. } => *line,
        }
    }
}

/// Reads a JSON Lines audit log, verifies its chain from `start`, and hands each good record to `each`.
///
/// Every acknowledged record ends with a newline, because a host writes the line and its newline before it
/// syncs and reports. So a last line without a newline is a torn write and is returned as
/// [`LogScan::torn_tail`]; a bad *complete* line anywhere is an error. Empty lines are skipped.
pub fn scan_log(
    bytes: &[u8],
    start: ChainHead,
    mut each: impl FnMut(&AuditRecord),
) -> Result<LogScan, LogError> {
    let mut head = start;
    let mut records = 0;
    let mut offset = 0;
    let mut line_no = 0;
    while offset < bytes.len() {
        let Some(nl) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            return Ok(LogScan {
                head,
                records,
                good_len: offset,
                torn_tail: Some(bytes[offset..].to_vec()),
            });
        };
        line_no += 1;
        let line = &bytes[offset..offset + nl];
        offset += nl + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: AuditRecord =
            serde_json::from_slice(line).map_err(|e| LogError::Unreadable {
                line: line_no,
                reason: e.to_string(),
            })?;
        head = verify_chain(head, [&record]).map_err(|source| LogError::Chain {
            line: line_no,
            source,
        })?;
        each(&record);
        records += 1;
    }
    Ok(LogScan {
        head,
        records,
        good_len: offset,
        torn_tail: None,
    })
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
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn chain_verifies_and_detects_tampering() {
        let mut head = ChainHead::default();
        let recs: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|u| head.append(draft(u)))
            .collect();
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

    fn log_of(users: &[&str]) -> Vec<u8> {
        let mut head = ChainHead::default();
        let mut out = Vec::new();
        for u in users {
            out.extend(serde_json::to_vec(&head.append(draft(u))).unwrap());
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn scan_sets_a_torn_tail_aside_and_continues_the_chain() {
        let mut bytes = log_of(&["a", "b"]);
        let good = bytes.len();
        bytes.extend_from_slice(b"{\"seq\":2,\"id\":\"x");
        let mut seen = Vec::new();
        let scan = scan_log(&bytes, ChainHead::default(), |r| {
            seen.push(r.user_id.clone())
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(scan.records, 2);
        assert_eq!(scan.good_len, good);
        assert_eq!(scan.torn_tail.as_deref(), Some(&bytes[good..]));
        assert_eq!(scan.head.next_seq, 2);
        // A complete record without its newline is torn too: it was never acknowledged.
        let mut no_newline = log_of(&["a"]);
        no_newline.pop();
        let scan = scan_log(&no_newline, ChainHead::default(), |_| {}).unwrap();
        assert_eq!((scan.records, scan.good_len), (0, 0));
    }

    #[test]
    fn scan_refuses_damage_before_the_last_line() {
        let bytes = log_of(&["a", "b", "c"]);
        let text = String::from_utf8(bytes).unwrap();
        let edited = text.replacen("\"userId\":\"b\"", "\"userId\":\"z\"", 1);
        let err = scan_log(edited.as_bytes(), ChainHead::default(), |_| {}).unwrap_err();
        assert_eq!(err.line(), 2);
        assert_eq!(err.code(), ErrorCode::AuditLogCorrupt);
        let garbage = text.replacen('{', "#", 1);
        assert!(matches!(
            scan_log(garbage.as_bytes(), ChainHead::default(), |_| {}),
            Err(LogError::Unreadable { line: 1, .. })
        ));
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
        assert_eq!(
            r.compute_hash(),
            hex::encode(Sha256::digest(r.canonical_via_map()))
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
