//! Compliance policy: the reference module's validation, fixed, and the schedule cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::state::AgentState;

/// The outcome of the policy check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyDecision {
    /// The change may be sent.
    Allowed,
    /// `AGENT_NOT_SCHEDULED`.
    AgentNotScheduled,
    /// `MANDATORY_BREAK_VIOLATION`.
    MandatoryBreakViolation,
}

impl PolicyDecision {
    /// Decides a change. `break_required` is only consulted for READY; pass `None` when it was not looked up.
    ///
    /// The reference checked the break for every state; only READY can be refused by it, so other targets
    /// never need the lookup.
    pub fn evaluate(target: &AgentState, scheduled: bool, break_required: Option<bool>) -> Self {
        if !scheduled {
            Self::AgentNotScheduled
        } else if target.is_ready() && break_required == Some(true) {
            Self::MandatoryBreakViolation
        } else {
            Self::Allowed
        }
    }

    /// The error code of a denial.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            Self::Allowed => None,
            Self::AgentNotScheduled => Some(ErrorCode::AgentNotScheduled),
            Self::MandatoryBreakViolation => Some(ErrorCode::MandatoryBreakViolation),
        }
    }
}

/// Remembers "scheduled" answers per agent for a while.
///
/// Only positive answers are kept, and never past the end of the shift the answer named, so a shift that
/// starts or ends is seen at once; a TTL of 0 asks every time, as the reference does.
#[derive(Clone, Debug)]
pub struct ScheduleCache {
    ttl_ms: u64,
    max_entries: usize,
    valid_until: BTreeMap<String, u64>,
}

impl ScheduleCache {
    /// A cache with this TTL and size bound.
    pub fn new(ttl_ms: u64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries: max_entries.max(1),
            valid_until: BTreeMap::new(),
        }
    }

    /// `true` if the agent is known to be scheduled at `now_ms`.
    pub fn scheduled(&self, user_id: &str, now_ms: u64) -> bool {
        self.valid_until
            .get(user_id)
            .is_some_and(|&until| now_ms < until)
    }

    /// Records an answer received at `now_ms`.
    pub fn record(
        &mut self,
        user_id: &str,
        scheduled: bool,
        shift_end_ms: Option<u64>,
        now_ms: u64,
    ) {
        if !scheduled || self.ttl_ms == 0 {
            self.valid_until.remove(user_id);
            return;
        }
        let until = (now_ms + self.ttl_ms).min(shift_end_ms.unwrap_or(u64::MAX));
        if self.valid_until.len() >= self.max_entries && !self.valid_until.contains_key(user_id) {
            self.valid_until.retain(|_, &mut u| u > now_ms);
            if self.valid_until.len() >= self.max_entries {
                return;
            }
        }
        self.valid_until.insert(user_id.to_owned(), until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn break_blocks_only_ready() {
        let s = |n: &str| AgentState::parse(n).unwrap();
        assert_eq!(
            PolicyDecision::evaluate(&s("READY"), true, Some(true)),
            PolicyDecision::MandatoryBreakViolation
        );
        assert_eq!(
            PolicyDecision::evaluate(&s("NOT_READY"), true, Some(true)),
            PolicyDecision::Allowed
        );
        assert_eq!(
            PolicyDecision::evaluate(&s("NOT_READY"), false, None),
            PolicyDecision::AgentNotScheduled
        );
    }

    #[test]
    fn cache_honours_ttl_and_shift_end() {
        let mut c = ScheduleCache::new(60_000, 10);
        c.record("a", true, None, 1_000);
        assert!(c.scheduled("a", 60_999));
        assert!(!c.scheduled("a", 61_000));
        c.record("b", true, Some(5_000), 1_000);
        assert!(!c.scheduled("b", 5_000));
        c.record("a", false, None, 2_000);
        assert!(!c.scheduled("a", 2_001));
        let mut off = ScheduleCache::new(0, 10);
        off.record("a", true, None, 0);
        assert!(!off.scheduled("a", 0));
    }
}
