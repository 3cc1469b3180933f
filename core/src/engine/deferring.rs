//! The engine's side of deferred changes: holding a READY a due break refuses, releasing it when the break
//! ends, cancelling and replacing it, and holding it again after a restart. The model is in
//! [`crate::deferral`].

use super::*;
use crate::change::{Ending, Held};
use crate::deferral::{DeferralNote, DeferralPhase, OpenDeferral};
use crate::{Deferred, DeferredApplied, DeferredCancelled};

/// A deferred change held now ([`Engine::deferred_change`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeferredChange {
    /// Its command.
    pub transition_id: TransitionId,
    /// Its deferral's id (on each of its audit records).
    pub deferral_id: String,
    /// When it is released to be checked again (Unix ms).
    pub until_ms: u64,
    /// When it gives up (Unix ms).
    pub deadline_ms: u64,
}

/// A deferred change is released this long after its break's end (more than
/// [`BREAK_END_MARGIN_MS`](crate::facts::BREAK_END_MARGIN_MS), the policy's own margin).
const RELEASE_AFTER_BREAK_MS: u64 = 5_000;

impl Engine {
    /// Cancels the agent's deferred change, if it has one: it ends `DEFERRAL_CANCELLED` (audited, with a
    /// `deferredCancelled` event). Returns whether there was one.
    pub fn cancel_deferred(&mut self, now: Now, user_id: &str) -> bool {
        if self.closed {
            return false;
        }
        let Ok(user) = UserId::parse(user_id) else {
            return false;
        };
        let now = self.clock(now);
        let cancelled = self.end_deferred(now, &user, Ending::Cancelled);
        self.maybe_checkpoint(now);
        cancelled
    }

    /// The agent's deferred change, if it has one.
    pub fn deferred_change(&self, user_id: &str) -> Option<DeferredChange> {
        let user = UserId::parse(user_id).ok()?;
        let id = *self.deferred.get(&user)?;
        let change = self.changes.get(&id)?;
        match (&change.phase, &change.deferral) {
            (
                Phase::Deferred {
                    until_unix,
                    deadline_unix,
                    ..
                },
                Some(held),
            ) => Some(DeferredChange {
                transition_id: id,
                deferral_id: held.id.clone(),
                until_ms: *until_unix,
                deadline_ms: *deadline_unix,
            }),
            _ => None,
        }
    }

    /// Deferred changes held now.
    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

    /// A newer change of `user` replaces its deferred one.
    pub(super) fn replace_deferred(&mut self, now: Now, user: &UserId) {
        self.end_deferred(now, user, Ending::Replaced);
    }

    /// Ends `user`'s deferred change unsent: cancelled or replaced.
    fn end_deferred(&mut self, now: Now, user: &UserId, ending: Ending) -> bool {
        let Some(id) = self.deferred.remove(user) else {
            return false;
        };
        let Some(change) = self.changes.get_mut(&id) else {
            return false;
        };
        if let Some(held) = &mut change.deferral {
            held.ending = Some(ending);
        }
        let message = match ending {
            Ending::Replaced => {
                "a newer change of the agent replaced the deferred one: nothing was sent"
            }
            _ => "the deferred change was cancelled before it was sent",
        };
        let e = TransitionError::new(ErrorCode::DeferralCancelled, message);
        self.finish(now, id, Verdict::NotCompleted(e));
        true
    }

    /// Holds a change that a due break refuses (`e` names the break), until the break ends. A break that
    /// ends past the change's deadline refuses it now instead (a change held before expires).
    pub(super) fn hold(&mut self, now: Now, id: TransitionId, e: TransitionError) {
        let tenant_now = self.tenant_now(now);
        let defer = self.config.defer;
        let Some(change) = self.changes.get_mut(&id) else {
            return;
        };
        // The break's end is on the tenant's clock; ours may differ, and our reading of theirs may be off by
        // a few seconds: released a little after the end, so the check before sending does not meet the
        // break's last seconds.
        let until = match e.break_window {
            Some(w) => {
                (w.end_ms + now.unix_ms + RELEASE_AFTER_BREAK_MS).saturating_sub(tenant_now.unix_ms)
            }
            None => now.unix_ms.saturating_add(defer.recheck_ms),
        }
        .max(now.unix_ms.saturating_add(1_000));
        let first = change.deferral.is_none();
        let held = change.deferral.get_or_insert_with(|| Held {
            id: String::new(),
            deadline_unix: now.unix_ms.saturating_add(defer.max_wait_ms),
            ending: None,
        });
        if until > held.deadline_unix {
            if first {
                // Never held: a plain refusal.
                change.deferral = None;
            } else {
                held.ending = Some(Ending::Expired);
            }
            return self.finish(now, id, Verdict::Policy(e));
        }
        if first {
            held.id = self.rng.uuid().to_string();
        }
        let (deferral_id, deadline) = (held.id.clone(), held.deadline_unix);
        let wake_mono = now.mono_ms.saturating_add(until - now.unix_ms);
        change.phase = Phase::Deferred {
            until_unix: until,
            deadline_unix: deadline,
        };
        let user = change.user.clone();
        self.leave_queue(&user, id);
        // An earlier deferred change of the agent (asked before this one, held while this one waited) is
        // replaced by it.
        if self.deferred.get(&user).is_some_and(|&older| older != id) {
            self.end_deferred(now, &user, Ending::Replaced);
        }
        self.deferred.insert(user.clone(), id);
        self.timers.insert((wake_mono, Timer::Deferred(id)));
        let change = self.changes.get(&id).expect("present");
        let draft = AuditDraft {
            user_id: user.as_str().to_owned(),
            previous_state: self.previous_state(user.as_str()),
            new_state: change.state.as_str().to_owned(),
            reason_code: Some(change.reason_code.clone()),
            latency_ms: now.mono_ms.saturating_sub(change.started_mono),
            attempts: change.attempts,
            idempotency_key: None,
            settles: None,
            reference: change.reference().map(str::to_owned),
            observation: None,
            relies_on: None,
            actor: change.actor.clone(),
            override_: None,
            deferral: Some(Box::new(DeferralNote {
                cause: None,
                deadline_ms: Some(deadline),
                id: deferral_id.clone(),
                phase: DeferralPhase::Deferred,
                until_ms: Some(until),
            })),
        };
        let reference = draft.reference.clone();
        let (user_id, requested_state) = (draft.user_id.clone(), draft.new_state.clone());
        let record = self.audit_record(now, draft, Ok(()));
        let record_id = record.id.clone();
        self.persist(Record::Audit(record));
        self.emit(Event::Deferred(Deferred {
            transition_id: id,
            user_id,
            requested_state,
            deferral_id,
            record_id,
            until_ms: until,
            deadline_ms: deadline,
            reference,
            at_ms: now.unix_ms,
        }));
    }

    /// A deferred change's break has ended: back into its agent's queue, to be checked again before it is
    /// sent. Past its deadline (a change held again after a restart), it expires.
    pub(super) fn release(&mut self, now: Now, id: TransitionId) {
        let Some(change) = self.changes.get_mut(&id) else {
            return;
        };
        let Phase::Deferred { deadline_unix, .. } = change.phase else {
            return;
        };
        let user = change.user.clone();
        self.deferred.remove(&user);
        if now.unix_ms >= deadline_unix {
            if let Some(held) = &mut change.deferral {
                held.ending = Some(Ending::Expired);
            }
            let e = TransitionError::new(
                ErrorCode::MandatoryBreakViolation,
                "the deferred READY reached its deadline before the break ended: given up",
            );
            return self.finish(now, id, Verdict::Policy(e));
        }
        change.phase = Phase::Waiting;
        change.rechecks = 0;
        // The released attempt's latency and requests count from here: the wait and the first check are on
        // the `deferred` record.
        change.started_mono = now.mono_ms;
        change.attempts = 0;
        self.join_queue(user, id);
    }

    /// The deferral event a finishing change ends with, if it was deferred.
    pub(super) fn deferral_end(
        &self,
        now: Now,
        id: TransitionId,
        change: &Change,
        result: &Result<(), TransitionError>,
    ) -> Option<Event> {
        let held = change.deferral.as_ref()?;
        let reference = change.reference().map(str::to_owned);
        let (cause, code) = match (held.ending, result) {
            (None, Ok(())) => {
                return Some(Event::DeferredApplied(DeferredApplied {
                    transition_id: id,
                    user_id: change.user.as_str().to_owned(),
                    state: change.state.as_str().to_owned(),
                    deferral_id: held.id.clone(),
                    reference,
                    at_ms: now.unix_ms,
                }))
            }
            // Released, it may have been applied: the settlement says, not this deferral.
            (None, Err(e)) if e.code == ErrorCode::OutcomeUnknown => return None,
            (None, Err(e)) => ("failed", e.code),
            (Some(ending), Err(e)) => (ending.cause(), e.code),
            (Some(ending), Ok(())) => (ending.cause(), ErrorCode::DeferralCancelled),
        };
        Some(Event::DeferredCancelled(DeferredCancelled {
            transition_id: id,
            user_id: change.user.as_str().to_owned(),
            requested_state: change.state.as_str().to_owned(),
            deferral_id: held.id.clone(),
            cause: cause.to_owned(),
            code,
            reference,
            at_ms: now.unix_ms,
        }))
    }

    /// Holds again the deferred changes a log left open, each under a new transition id. One whose
    /// deadline has passed expires at once; one whose break has ended is released at once.
    pub(super) fn restore_deferred(&mut self, now: Now, open: Vec<OpenDeferral>) -> usize {
        let mut held = 0;
        for d in open {
            let Ok((user, state)) = parse_target(&d.user_id, &d.state) else {
                continue;
            };
            let id = self.next_id();
            let until = d.until_ms.min(d.deadline_ms);
            let wake_mono = now
                .mono_ms
                .saturating_add(until.saturating_sub(now.unix_ms));
            let purpose = Purpose::Change {
                key: self.rng.uuid().to_string(),
                settles: None,
                reference: d.reference.clone(),
            };
            let reason_code = self.reason_code_for(&state, None);
            let mut change = Change::new(
                user.clone(),
                state,
                reason_code,
                purpose,
                now.mono_ms,
                Phase::Deferred {
                    until_unix: d.until_ms,
                    deadline_unix: d.deadline_ms,
                },
            );
            change.actor = d.actor.clone().unwrap_or_else(Actor::system);
            change.defer = true;
            change.deferral = Some(Held {
                id: d.id.clone(),
                deadline_unix: d.deadline_ms,
                ending: None,
            });
            // An agent has at most one; a log that held two keeps the later.
            if let Some(older) = self.deferred.insert(user, id) {
                self.changes.remove(&older);
                held -= 1;
            }
            self.changes.insert(id, change);
            self.timers.insert((wake_mono, Timer::Deferred(id)));
            held += 1;
        }
        held
    }

    /// Forgets the deferred changes when the engine closes: they stay open in the log, and the next
    /// [`restore`](Self::restore) holds them again.
    pub(super) fn forget_deferred(&mut self) {
        for (_, id) in std::mem::take(&mut self.deferred) {
            self.changes.remove(&id);
        }
    }
}

/// The deferral note of a finishing change's record, if it was ever held.
pub(super) fn deferral_note(change: &Change) -> Option<Box<DeferralNote>> {
    let held = change.deferral.as_ref()?;
    Some(Box::new(match held.ending {
        Some(ending) => DeferralNote {
            cause: (ending.phase() == DeferralPhase::Cancelled).then(|| ending.cause().to_owned()),
            deadline_ms: None,
            id: held.id.clone(),
            phase: ending.phase(),
            until_ms: None,
        },
        None => DeferralNote::released(held.id.clone()),
    }))
}
