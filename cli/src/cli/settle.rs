//! Settling `OUTCOME_UNKNOWN` changes by observation before `transition` and `bulk` exit (`cxone`).
//!
//! A change whose answer was lost may or may not have been applied. On `cxone` the engine can tell from
//! what the tenant shows (see the core's `observe` module); the command observes for a bounded time so that
//! its exit code, its output and the audit log say what really happened. On `seed` nothing is observed.

use std::time::Duration;

use cxone_agent_state::{AgentStateManager, Notice};
use cxone_agent_state_core::{ErrorCode, Event, OutcomeSettled};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// What a settle wait found.
#[derive(Debug, Default)]
pub struct Settling {
    /// The outcomes settled while waiting, in the order they were settled.
    pub settled: Vec<OutcomeSettled>,
    /// Unknown outcomes observation may still settle when the wait ended (a later start of a `cxone`
    /// command may settle them; the audit log keeps them as `OUTCOME_UNKNOWN` until then).
    pub still_unknown: usize,
    /// The wait was cut short by Ctrl-C.
    pub interrupted: bool,
}

impl Settling {
    /// The settlement of the unknown change of `user` to `state`, if one came.
    pub fn of(&self, user: &str, state: &str) -> Option<&OutcomeSettled> {
        self.settled
            .iter()
            .rev()
            .find(|s| s.user_id == user && s.requested_state.eq_ignore_ascii_case(state))
    }
}

/// How often the count of unsettled outcomes is asked for besides each settlement (a subscriber that falls
/// behind may miss a notice; the count never lies).
const RECHECK: Duration = Duration::from_millis(500);

/// Observes until every unknown outcome is settled or `wait` has passed, saying on stderr (through `say`)
/// what it waits for and what it settled. `None` when there is nothing to wait for: no unknown outcome
/// (`unknown == 0`), a zero `wait`, or a profile that cannot observe (`seed`: no waiting, no error).
pub async fn settle_unknown(
    manager: &AgentStateManager,
    unknown: usize,
    wait: Duration,
    interrupts: &mut UnboundedReceiver<()>,
    say: impl Fn(&str),
) -> Option<Settling> {
    if unknown == 0 || wait.is_zero() {
        return None;
    }
    // Subscribed before observing starts: no settlement can come in between.
    let mut notices = manager.subscribe();
    match manager.start_observing().await {
        Ok(()) => {}
        Err(e) if e.code == ErrorCode::ObserveUnsupported => return None,
        Err(e) => {
            say(&format!(
                "cannot observe the tenant to settle {unknown} unknown outcome(s): {} ({})",
                e.message, e.code
            ));
            return None;
        }
    }
    let pending = manager.unsettled_outcomes().await;
    if pending == 0 {
        // Nothing observation could settle (the engine keeps no such change): say nothing, wait for nothing.
        manager.stop_observing().await;
        return None;
    }
    let mut out = Settling::default();
    say(&format!(
        "settling {pending} change(s) whose outcome is unknown: observing the tenant's agent states for up \
         to {} s (--settle-wait-secs; Ctrl-C stops waiting)",
        wait.as_secs()
    ));
    let deadline = Instant::now() + wait;
    let mut left = pending;
    while left > 0 {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice::Event(Event::OutcomeSettled(s))) => {
                    say(&describe(&s));
                    out.settled.push(s);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep(RECHECK) => {}
            () = tokio::time::sleep_until(deadline) => break,
            Some(()) = interrupts.recv() => {
                out.interrupted = true;
                break;
            }
        }
        left = manager.unsettled_outcomes().await;
    }
    // A settlement reported in the same round as the last check.
    while let Ok(notice) = notices.try_recv() {
        if let Notice::Event(Event::OutcomeSettled(s)) = notice {
            say(&describe(&s));
            out.settled.push(s);
        }
    }
    manager.stop_observing().await;
    out.still_unknown = manager.unsettled_outcomes().await;
    let applied = out.settled.iter().filter(|s| s.applied).count();
    say(&format!(
        "settled by observation: {applied} applied, {} not applied; {} still unknown{}",
        out.settled.len() - applied,
        out.still_unknown,
        if out.interrupted {
            " (interrupted)"
        } else if out.still_unknown > 0 {
            " (the audit log keeps them as OUTCOME_UNKNOWN; a later run observing the tenant may settle them)"
        } else {
            ""
        }
    ));
    Some(out)
}

/// One settlement in words.
fn describe(s: &OutcomeSettled) -> String {
    format!(
        "settled: {} → {} was {}: {} (record {} settles {})",
        s.user_id,
        s.requested_state,
        if s.applied { "applied" } else { "not applied" },
        s.evidence,
        s.record_id,
        s.settles
    )
}
