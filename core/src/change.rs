//! One change (or validation) as a small machine with an explicit phase.
//!
//! ```text
//!  Waiting ──▶ Checking ──▶ Approved ──first send──▶ Committing ──▶ applied | OUTCOME_UNKNOWN | refused by the tenant
//!                 │  ▲          │                      (never back: policy is decided before the first send)
//!                 │  └─stale────┘
//!                 └──▶ refused by policy / failed before anything was sent
//! ```
//!
//! Policy is decided in [`Phase::Checking`] only, before the first send. Once a change is
//! [`Phase::Committing`] nothing can refuse it any more: it ends as applied, or — once any send may have
//! reached the tenant — as `OUTCOME_UNKNOWN`. A tenant's refusal (a 4xx) keeps its code only while no earlier
//! send may have arrived: a 4xx to a resend may come from a gateway or from checks made before the tenant
//! looks up the `Idempotency-Key`, so it says nothing about the send that was lost.

use crate::actor::{Actor, OverrideNote};
use crate::error::{ErrorCode, TransitionError};
use crate::facts::Resolved;
use crate::state::{AgentState, UserId};

/// Which policy lookup a change is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// "Is this agent scheduled now?"
    Schedule,
    /// "Is a mandatory break due?" (READY only.)
    BreakStatus,
    /// `cxone`: waiting for shared facts (directory, schedule export, unavailable codes) since this time
    /// (monotonic); policy is then decided locally.
    Facts { since_mono: u64 },
}

/// Where a change stands.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Behind an earlier change of the same agent.
    Waiting,
    /// Deciding policy: a lookup is queued, in flight, or backing off.
    Checking {
        lookup: Lookup,
        /// Retries spent on this lookup.
        retries: u32,
    },
    /// Policy allowed it at `approved_mono` (and `approved_unix`); waiting for its first send.
    Approved {
        approved_mono: u64,
        approved_unix: u64,
    },
    /// Sent at least once.
    Committing(Committing),
    /// Held until its agent's break ends (see [`crate::deferral`]), out of its agent's queue: released at
    /// `until_unix` (the break's end) back to `Waiting`, or given up at `deadline_unix`.
    Deferred { until_unix: u64, deadline_unix: u64 },
}

/// A change that has been sent.
#[derive(Clone, Debug)]
pub(crate) struct Committing {
    /// No send after this (monotonic): the end of the commit window.
    pub(crate) send_by_mono: u64,
    /// Retries spent (a 429 with `Retry-After` spends none).
    pub(crate) retries: u32,
    /// Whether any send may have reached the tenant: an answer lost after it left, a timeout, a 5xx, or an
    /// unreadable 2xx. A resumed change starts with `true` (the previous run's send may have arrived).
    pub(crate) maybe_applied: bool,
    /// The last transient failure was a 429.
    pub(crate) throttled: bool,
}

/// Validation only, or a real change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Validate,
    Change {
        /// The `Idempotency-Key` of every send of this change.
        key: String,
        /// For a change resumed after a restart that had ended `OUTCOME_UNKNOWN`: that record's id.
        settles: Option<String>,
        /// The caller's reference (already checked), carried into its intent, records and events.
        reference: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) user: UserId,
    pub(crate) state: AgentState,
    pub(crate) reason_code: String,
    pub(crate) purpose: Purpose,
    pub(crate) started_mono: u64,
    /// API requests sent on its behalf.
    pub(crate) attempts: u32,
    /// Times it waited for a token fetch.
    pub(crate) token_waits: u32,
    /// A 401 was answered by refreshing the token once.
    pub(crate) auth_resent: bool,
    /// Policy checks redone before the first send because the approval had grown stale.
    pub(crate) rechecks: u32,
    /// When the tenant first answered this change's requests with 429 and a `Retry-After` (monotonic):
    /// throttling spends no retries, and ends a commit window after this.
    pub(crate) throttled_since: Option<u64>,
    pub(crate) phase: Phase,
    /// The caller's explicit reason code, if it named one.
    pub(crate) explicit_reason: Option<String>,
    /// `cxone`: the agent and the `SetAgentState` target, decided while checking (or read from the journal).
    pub(crate) resolved: Option<Resolved>,
    /// Wall clock of its first send (for a change resumed after a restart: its approval, the earliest a
    /// send can have been).
    pub(crate) first_sent_unix: Option<u64>,
    /// Not sent: the tenant already showed it in effect in this observation record (`skipIfInEffect`).
    pub(crate) relies_on: Option<String>,
    /// Who asked for it.
    pub(crate) actor: Actor,
    /// A supervisor's override of the policy; `overrode` is set when a policy check would have refused it.
    pub(crate) override_: Option<Box<OverrideNote>>,
    /// The caller asked to hold it, rather than fail it, if a break is due.
    pub(crate) defer: bool,
    /// Once held (see [`crate::deferral`]): its deferral.
    pub(crate) deferral: Option<Held>,
}

/// A change's deferral, from the first time it was held.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    /// On every record of the deferral.
    pub(crate) id: String,
    /// When it gives up (Unix ms): set when it was first held.
    pub(crate) deadline_unix: u64,
    /// How it ends without being released. `None`: released, the outcome is the change's own.
    pub(crate) ending: Option<Ending>,
}

/// How a deferred change ends without being released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Cancelled by its caller.
    Cancelled,
    /// Replaced by a newer change of its agent.
    Replaced,
    /// Its deadline passed in the break.
    Expired,
}

impl Ending {
    /// The step its record names.
    pub(crate) fn phase(self) -> crate::deferral::DeferralPhase {
        match self {
            Self::Cancelled | Self::Replaced => crate::deferral::DeferralPhase::Cancelled,
            Self::Expired => crate::deferral::DeferralPhase::Expired,
        }
    }

    /// The cause its `deferredCancelled` event (and, when cancelled, its record) names.
    pub(crate) fn cause(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Replaced => "replaced",
            Self::Expired => "expired",
        }
    }
}

/// How a change ends, before the phase has its say.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// The tenant confirmed it.
    Applied,
    /// Policy refused it (only possible while checking).
    Policy(TransitionError),
    /// The tenant answered with a definite refusal (a 4xx).
    TenantRefused(TransitionError),
    /// It could not be completed (retries spent, the window closed, no token, an unreadable answer, the
    /// engine closed): nothing in this verdict says whether a send arrived.
    NotCompleted(TransitionError),
}

impl Change {
    /// A change that has done nothing yet.
    pub(crate) fn new(
        user: UserId,
        state: AgentState,
        reason_code: String,
        purpose: Purpose,
        started_mono: u64,
        phase: Phase,
    ) -> Self {
        Self {
            user,
            state,
            reason_code,
            purpose,
            started_mono,
            attempts: 0,
            token_waits: 0,
            auth_resent: false,
            rechecks: 0,
            throttled_since: None,
            phase,
            explicit_reason: None,
            resolved: None,
            first_sent_unix: None,
            relies_on: None,
            actor: Actor::system(),
            override_: None,
            defer: false,
            deferral: None,
        }
    }

    /// The idempotency key, for a real change.
    pub(crate) fn key(&self) -> Option<&str> {
        match &self.purpose {
            Purpose::Change { key, .. } => Some(key),
            Purpose::Validate => None,
        }
    }

    /// The caller's reference, for a real change that has one.
    pub(crate) fn reference(&self) -> Option<&str> {
        match &self.purpose {
            Purpose::Change { reference, .. } => reference.as_deref(),
            Purpose::Validate => None,
        }
    }

    /// Whether the change has been sent (its intent is in the journal). A change resumed after a restart
    /// starts out committing, and nothing moves a change out of that phase.
    pub(crate) fn journaled(&self) -> bool {
        matches!(self.phase, Phase::Committing(_))
    }

    /// The final result. This is the one place a verdict becomes an outcome, and the rule that keeps the audit
    /// log from contradicting the tenant lives here: a change that may have been applied never ends as a
    /// failure.
    pub(crate) fn outcome(&self, verdict: Verdict) -> Result<(), TransitionError> {
        let in_doubt = match &self.phase {
            Phase::Committing(c) => c.maybe_applied,
            _ => false,
        };
        match verdict {
            Verdict::Applied => Ok(()),
            Verdict::Policy(e) => {
                debug_assert!(
                    !matches!(self.phase, Phase::Committing(_)),
                    "policy is never decided after a send"
                );
                if matches!(self.phase, Phase::Committing(_)) {
                    return Err(unknown(&e));
                }
                Err(e)
            }
            Verdict::TenantRefused(e) | Verdict::NotCompleted(e) if in_doubt => Err(unknown(&e)),
            Verdict::TenantRefused(e) | Verdict::NotCompleted(e) => Err(e),
        }
    }
}

/// `OUTCOME_UNKNOWN`, keeping what ended the change in the message.
fn unknown(cause: &TransitionError) -> TransitionError {
    TransitionError::new(
        ErrorCode::OutcomeUnknown,
        format!(
            "a send of this change may have reached the tenant, and no answer confirmed it ({}: {}); \
             the journal keeps it open until later records settle it",
            cause.code, cause.message
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(phase: Phase) -> Change {
        Change::new(
            UserId::parse("a").unwrap(),
            AgentState::parse("READY").unwrap(),
            "WORKING".into(),
            Purpose::Change {
                key: "k".into(),
                settles: None,
                reference: None,
            },
            0,
            phase,
        )
    }

    fn committing(maybe_applied: bool) -> Phase {
        Phase::Committing(Committing {
            send_by_mono: 1,
            retries: 0,
            maybe_applied,
            throttled: false,
        })
    }

    fn err(code: ErrorCode) -> TransitionError {
        TransitionError::new(code, "x")
    }

    #[test]
    fn a_change_in_doubt_never_ends_as_a_failure_of_the_change() {
        let c = change(committing(true));
        let code = |v: Verdict| c.outcome(v).unwrap_err().code;
        assert_eq!(
            code(Verdict::NotCompleted(err(ErrorCode::UpstreamUnavailable))),
            ErrorCode::OutcomeUnknown
        );
        // A 4xx to a resend says nothing about the send that may have arrived.
        assert_eq!(
            code(Verdict::TenantRefused(err(ErrorCode::Forbidden))),
            ErrorCode::OutcomeUnknown
        );
        assert!(c.outcome(Verdict::Applied).is_ok());
        // Surely not applied: the tenant's refusal keeps its code.
        let c = change(committing(false));
        assert_eq!(
            c.outcome(Verdict::TenantRefused(err(ErrorCode::Forbidden)))
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn a_change_not_sent_or_surely_not_applied_keeps_its_cause() {
        for phase in [
            Phase::Waiting,
            Phase::Checking {
                lookup: Lookup::Schedule,
                retries: 0,
            },
            committing(false),
        ] {
            let c = change(phase);
            assert_eq!(
                c.outcome(Verdict::NotCompleted(err(ErrorCode::RateLimited)))
                    .unwrap_err()
                    .code,
                ErrorCode::RateLimited
            );
        }
        let c = change(Phase::Checking {
            lookup: Lookup::BreakStatus,
            retries: 0,
        });
        assert_eq!(
            c.outcome(Verdict::Policy(err(ErrorCode::MandatoryBreakViolation)))
                .unwrap_err()
                .code,
            ErrorCode::MandatoryBreakViolation
        );
    }
}
