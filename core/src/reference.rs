//! A caller's reference for a change: a short opaque string the caller chooses — a ticket number, a console's
//! request id, `bulk:sha256=<16 hex>:row=12` — so it can find its requests in the durable log.
//!
//! The engine checks it ([`is_valid_reference`]), writes it into the change's intent and into every audit
//! record of the change (the one that finishes it, a policy refusal's, an `OUTCOME_UNKNOWN` one and the one
//! that settles it, also after a restart), and reports it on the change's `StateChanged` or
//! `TransitionFailed`. It is never sent to the tenant. [`ReferencedOutcomes`] reads a log back into "where
//! does the change with this reference stand".

use std::collections::BTreeMap;

use crate::error::ErrorCode;
use crate::log::Record;

/// The longest reference, in characters (bytes: it is ASCII). Long enough for a prefix, a SHA-256 digest
/// in hex and a row number; short enough that no caller can make records arbitrarily large (the same bound
/// as raw input written to a record).
pub const MAX_REFERENCE_LEN: usize = 128;

/// Whether `reference` may be given to a change: 1 to [`MAX_REFERENCE_LEN`] printable ASCII characters
/// (space to `~`; no control characters). The engine refuses any other with `INVALID_REFERENCE`.
pub fn is_valid_reference(reference: &str) -> bool {
    (1..=MAX_REFERENCE_LEN).contains(&reference.len())
        && reference.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Where the change with a reference stands according to the log (the latest record that names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceOutcome {
    /// Its intent is journaled and no audit record has finished it yet. The next
    /// [`Engine::restore`](crate::Engine::restore) of this log finishes it (sends it again or records it as
    /// `OUTCOME_UNKNOWN`), under the same reference: asking for it again would make a second change.
    Open,
    /// The tenant accepted it (`success: true`).
    Succeeded,
    /// It ended without a confirmed change, with this code (always present in records the engine writes).
    /// `OUTCOME_UNKNOWN` means it may have been applied; a later record of the same change may settle it.
    Failed(Option<ErrorCode>),
}

/// What a log says about each reference: the outcome of the latest record that names it.
///
/// Feed it every record of a log in order — from the start, not from the last checkpoint — for example from
/// [`scan_log`](crate::scan_log)'s callback, or from records as a host persists them:
///
/// ```
/// use cxone_agent_state_core::{scan_log, LogState, ReferenceOutcome, ReferencedOutcomes};
/// # let log_bytes: Vec<u8> = Vec::new();
/// let mut outcomes = ReferencedOutcomes::with_prefix("bulk:sha256=0123456789abcdef:");
/// scan_log(&log_bytes, LogState::default(), |record| outcomes.observe(record))?;
/// let row_12 = outcomes.get("bulk:sha256=0123456789abcdef:row=12");
/// let done = row_12 == Some(ReferenceOutcome::Succeeded);
/// # assert!(!done);
/// # Ok::<(), cxone_agent_state_core::LogError>(())
/// ```
///
/// A reference given to several changes (a row asked for again after a failure) reads as its latest change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferencedOutcomes {
    prefix: String,
    outcomes: BTreeMap<String, ReferenceOutcome>,
}

impl ReferencedOutcomes {
    /// Keeps every reference.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only references that start with `prefix` (e.g. one input file's), so memory follows what the
    /// caller asks about rather than the length of the log.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            outcomes: BTreeMap::new(),
        }
    }

    /// Folds one record in: an intent opens its reference, an audit record gives it its outcome. Other
    /// records, and records without a reference, change nothing.
    pub fn observe(&mut self, record: &Record) {
        let (reference, outcome) = match record {
            Record::Intent(i) => (&i.reference, ReferenceOutcome::Open),
            Record::Audit(r) if r.success => (&r.reference, ReferenceOutcome::Succeeded),
            Record::Audit(r) => (&r.reference, ReferenceOutcome::Failed(r.error_code)),
            _ => return,
        };
        if let Some(reference) = reference.as_deref() {
            if reference.starts_with(self.prefix.as_str()) {
                self.outcomes.insert(reference.to_owned(), outcome);
            }
        }
    }

    /// The outcome of the latest record with `reference`, if the log names it.
    pub fn get(&self, reference: &str) -> Option<ReferenceOutcome> {
        self.outcomes.get(reference).copied()
    }

    /// Every reference seen, in byte order, with its outcome.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ReferenceOutcome)> {
        self.outcomes.iter().map(|(r, o)| (r.as_str(), *o))
    }

    /// How many references were seen.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether no reference was seen.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_short_printable_ascii() {
        assert!(is_valid_reference("bulk:sha256=0123456789abcdef:row=12"));
        assert!(is_valid_reference("ticket 42 ~!"));
        assert!(is_valid_reference(&"x".repeat(MAX_REFERENCE_LEN)));
        assert!(!is_valid_reference(""));
        assert!(!is_valid_reference(&"x".repeat(MAX_REFERENCE_LEN + 1)));
        for bad in ["a\nb", "a\tb", "\u{7f}", "café", "a\0"] {
            assert!(!is_valid_reference(bad), "{bad:?}");
        }
    }
}
