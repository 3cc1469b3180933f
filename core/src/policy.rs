//! Compliance policy: the reference module's validation, fixed, and the schedule cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::AgentState;
use crate::time::Now;

/// The outcome of the policy check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
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
}

/// Remembers "scheduled" answers per agent for a while.
///
/// Only positive answers are kept: for `ttl` on the monotonic clock, and never past the end of the shift the
/// answer named (wall time, as the tenant gives it), so a shift that starts or ends is seen at once; a TTL of
/// 0 asks every time, as the reference does.
#[derive(Clone, Debug)]
pub(crate) struct ScheduleCache {
    ttl_ms: u64,
    max_entries: usize,
    /// user → (valid until, monotonic; shift end, Unix).
    valid: BTreeMap<String, (u64, u64)>,
}

impl ScheduleCache {
    /// A cache with this TTL and size bound.
    pub(crate) fn new(ttl_ms: u64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries: max_entries.max(1),
            valid: BTreeMap::new(),
        }
    }

    /// `true` if the agent is known to be scheduled at `now`.
    pub(crate) fn scheduled(&self, user_id: &str, now: Now) -> bool {
        self.valid
            .get(user_id)
            .is_some_and(|&(until, shift_end)| now.mono_ms < until && now.unix_ms < shift_end)
    }

    /// Records an answer received at `now`.
    pub(crate) fn record(
        &mut self,
        user_id: &str,
        scheduled: bool,
        shift_end_ms: Option<u64>,
        now: Now,
    ) {
        if !scheduled || self.ttl_ms == 0 {
            self.valid.remove(user_id);
            return;
        }
        let until = now.mono_ms.saturating_add(self.ttl_ms);
        let shift_end = shift_end_ms.unwrap_or(u64::MAX);
        if self.valid.len() >= self.max_entries && !self.valid.contains_key(user_id) {
            self.valid.retain(|_, &mut (u, _)| u > now.mono_ms);
            if self.valid.len() >= self.max_entries {
                return;
            }
        }
        self.valid.insert(user_id.to_owned(), (until, shift_end));
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
        let at = Now::at;
        let mut c = ScheduleCache::new(60_000, 10);
        c.record("a", true, None, at(1_000));
        assert!(c.scheduled("a", at(60_999)));
        assert!(!c.scheduled("a", at(61_000)));
        c.record("b", true, Some(5_000), at(1_000));
        assert!(!c.scheduled("b", at(5_000)));
        c.record("a", false, None, at(2_000));
        assert!(!c.scheduled("a", at(2_001)));
        let mut off = ScheduleCache::new(0, 10);
        off.record("a", true, None, at(0));
        assert!(!off.scheduled("a", at(0)));
    }

    #[test]
    fn a_wall_clock_step_does_not_stretch_or_shrink_the_ttl() {
        let mut c = ScheduleCache::new(60_000, 10);
        let unix = 10_000_000;
        c.record("a", true, Some(unix + 20_000_000), Now::new(0, unix));
        // The wall clock jumps back an hour: the monotonic TTL still rules.
        assert!(c.scheduled("a", Now::new(59_000, unix - 3_600_000 + 59_000)));
        assert!(!c.scheduled("a", Now::new(60_000, unix - 3_600_000 + 60_000)));
    }
}
