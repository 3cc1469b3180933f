//! `cxone-agent-state transition`: one state change.

use std::process::ExitCode;

use clap::Args;

use cxone_agent_state_core::{
    ErrorCode, OutcomeSettled, StateChanged, TransitionError, TransitionOptions,
};
use serde_json::json;

use super::actor::ActorArgs;
use super::connect::{finish, interrupts, outcome_json, stop_at_once, ConnectArgs};
use super::fail::{self, exit, Failure};
use super::settle::{settle_unknown, Settling};

/// Options of `transition`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  cxone-agent-state transition --user agent-7 --state READY
  TARGET_USER_ID=agent-7 cxone-agent-state transition --state NOT_READY --json
  cxone-agent-state transition --base-url http://127.0.0.1:8080 --client-id sim-client \\
      --client-secret sim-secret --user agent-0001 --state PAUSED
  cxone-agent-state transition --profile cxone --user 12345 --state NOT_READY --reason Lunch
  cxone-agent-state transition --user agent-7 --state READY \\
      --override-actor kim --override-reason \"queue over SLA\"

Output: with --json (or when stdout is not a terminal) one JSON object: {\"success\":true,\"userId\",
\"previousState\",\"newState\",\"reasonCode\",\"latencyMs\",\"attempts\"} or {\"success\":false,\"code\",
\"message\",\"userId\",\"state\",\"policyViolation\"}; on a terminal, a sentence. The audit log's head
(SEQ:HASH) is printed on stderr: keep it to check the log later with `audit verify --head`.

Ctrl-C waits for the change in flight; a second Ctrl-C stops at once after syncing the audit log (the
change is journaled and resumed on the next start). Ctrl-C while an unknown outcome is being settled stops
waiting: the outcome stays OUTCOME_UNKNOWN, exit 130.

Unknown outcomes (cxone): when the answer to the change is lost (OUTCOME_UNKNOWN: it may have been
applied), the command observes the tenant's agent states before it exits, for up to --settle-wait-secs
(CXONE_SETTLE_WAIT_SECS, default 90; 0 turns it off), saying on stderr what it waits for and what it
settled; the audit log gets a settlement record pointing at the unknown one. The outcome printed and the
exit code are then the settled ones: applied exits 0 ({\"success\":true,…,\"settled\":{…}}); not applied
exits 1 with NOT_APPLIED; still unknown when the wait ends exits 1 with OUTCOME_UNKNOWN. On seed nothing
is observed.

On the cxone profile the agent is its numeric CXone agentId; an unknown one fails with UNKNOWN_AGENT and
a reason no unavailable code of the agent's team has with UNKNOWN_REASON_CODE (exit 1, nothing was set).

Settings read (flags win): TARGET_USER_ID, CXONE_PROFILE, CXONE_DOMAIN, CXONE_BASE_URL, CXONE_TOKEN_URL,
CXONE_CLIENT_ID, CXONE_CLIENT_SECRET, CXONE_RATE_LIMIT_PER_MIN, CXONE_AUDIT_LOG, WORKFORCE_WEBHOOK_URL,
WORKFORCE_WEBHOOK_SECRET, WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER, WORKFORCE_WEBHOOK_RECEIVER_CHANGE, CXONE_MAX_OPEN_CHANGES,
the cxone settings (CXONE_ACCESS_KEY_ID, CXONE_ACCESS_KEY_SECRET, CXONE_AUTH_BASE, CXONE_API_BASE_URL,
CXONE_WFM_BASE_URL, CXONE_API_VERSION, CXONE_CLIENT_AUTH, CXONE_SET_STATE_ENCODING, CXONE_REASON_CODES,
CXONE_BREAK_ACTIVITIES, CXONE_WFM_RATE_LIMIT_PER_MIN, CXONE_OBSERVE_INTERVAL_MS,
CXONE_OBSERVE_SETTLE_AFTER_MS, CXONE_OBSERVE_SKIP_IF_IN_EFFECT, CXONE_OBSERVE_STALE_AFTER_MS),
CXONE_SETTLE_WAIT_SECS, CXONE_LOG (log filter, e.g. debug).

",
    exit_codes_help!()
))]
pub struct TransitionArgs {
    /// The agent (default: `TARGET_USER_ID`).
    #[arg(long, env = "TARGET_USER_ID")]
    user: Option<String>,
    /// The target state, e.g. READY, NOT_READY, PAUSED, IDLE.
    #[arg(long)]
    state: String,
    /// The reason code to set the state with, instead of the one the reason table names: on cxone the
    /// name of one of the team's unavailable codes (e.g. Lunch; ignored for READY), on seed the reasonCode
    /// sent.
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
    #[command(flatten)]
    actor: ActorArgs,
    /// Print the outcome as one JSON object (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// `cxone`: how long to observe the tenant before exiting when the outcome is unknown, to settle it
    /// [default: 90; 0: do not wait] [env: CXONE_SETTLE_WAIT_SECS].
    #[arg(long, value_name = "SECS")]
    pub settle_wait_secs: Option<u64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Exit codes: 0 changed (or an unknown outcome settled as applied), 2 refused by policy, 1 any other
/// failure (not applied, still unknown), 64 a usage error.
pub fn run(args: &TransitionArgs, json: bool) -> anyhow::Result<ExitCode> {
    let user = args.user.clone().ok_or_else(|| {
        Failure::usage(
            "missing setting TARGET_USER_ID (set the environment variable or pass --user)",
        )
    })?;
    let settle_wait = args.connect.settle_wait(args.settle_wait_secs)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Listening before the manager starts: a Ctrl-C during recovery is a stop, not a kill.
        let mut interrupts = interrupts();
        let audit_log = args.connect.audit_log();
        let manager = args.connect.start().await?;
        let mut options = args.actor.apply(TransitionOptions::default())?;
        if options.defer {
            say_when_deferred(&manager);
        }
        if let Some(reason) = &args.reason {
            options = options.with_reason(reason);
        }
        let submitted = manager
            .submit_transition_with(&user, &args.state, &options)
            .await;
        let outcome = async move {
            match submitted {
                Ok(pending) => pending.outcome().await,
                Err(e) => Err(e),
            }
        };
        tokio::pin!(outcome);
        let mut interrupted = false;
        let result = loop {
            tokio::select! {
                result = &mut outcome => break result,
                Some(()) = interrupts.recv() => {
                    if interrupted {
                        stop_at_once(
                            audit_log,
                            "the change in flight is journaled and resumed on the next start",
                        );
                    }
                    interrupted = true;
                    eprintln!(
                        "stopping: waiting for the change in flight to finish, then syncing the audit log \
                         (Ctrl-C again stops at once; the change is journaled and resumed on the next start)"
                    );
                }
            }
        };
        // An unknown outcome is settled by what the tenant shows, if the profile can observe it.
        let unknown = matches!(&result, Err(e) if e.code == ErrorCode::OutcomeUnknown);
        let settling = if interrupted {
            None
        } else {
            settle_unknown(
                &manager,
                usize::from(unknown),
                settle_wait,
                &mut interrupts,
                |m| eprintln!("{m}"),
            )
            .await
        };
        if settling.as_ref().is_some_and(|s| s.interrupted) {
            interrupted = true;
        }
        let settled = settlement(&result, settling.as_ref(), &user, &args.state);
        let applied = settled.as_ref().is_some_and(|s| s.applied);
        let result = match &settled {
            Some(s) if !s.applied => Err(not_applied(s)),
            _ => result,
        };
        // Interrupted: webhooks wait in the durable outbox for the next start instead of holding the exit.
        let drain = if interrupted {
            std::time::Duration::ZERO
        } else {
            args.connect.webhook_drain()
        };
        tokio::select! {
            () = finish(manager, drain, audit_log) => {}
            Some(()) = interrupts.recv() => {
                stop_at_once(audit_log, "webhooks still waiting go out on the next start");
            }
        }
        match &result {
            _ if json => {
                let mut line = if applied {
                    json!({"success": true, "userId": user, "newState": args.state})
                } else {
                    outcome_json(&user, &args.state, &result)
                };
                if let Some(s) = &settled {
                    line["settled"] = json!({
                        "applied": s.applied,
                        "settles": s.settles,
                        "recordId": s.record_id,
                        "evidence": s.evidence,
                    });
                }
                outln!("{line}");
            }
            _ if applied => outln!(
                "{user}: → {} applied (the answer was lost; settled by observation, record {})",
                args.state,
                settled.as_ref().map_or("", |s| s.record_id.as_str())
            ),
            Ok(c) => outln!(
                "{}: {} → {} (reason {}) in {} ms, {} API request(s)",
                c.user_id,
                c.previous_state.as_deref().unwrap_or("unknown"),
                c.new_state,
                c.reason_code,
                c.latency_ms,
                c.attempts
            ),
            Err(e) => {
                return Ok(fail::report(
                    &Failure {
                        exit: exit_of(e.code.is_policy_violation()),
                        ..Failure::new(
                            e.code.as_str(),
                            format!("{user} → {}: {}", args.state, e.message),
                        )
                    },
                    false,
                ))
            }
        }
        Ok(match &result {
            _ if interrupted => ExitCode::from(exit::INTERRUPTED),
            _ if applied => ExitCode::SUCCESS,
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => ExitCode::from(exit_of(e.code.is_policy_violation())),
        })
    })
}

/// The settlement of an `OUTCOME_UNKNOWN` result, if observation settled it.
fn settlement(
    result: &Result<StateChanged, TransitionError>,
    settling: Option<&Settling>,
    user: &str,
    state: &str,
) -> Option<OutcomeSettled> {
    match (result, settling) {
        (Err(e), Some(s)) if e.code == ErrorCode::OutcomeUnknown => s.of(user, state).cloned(),
        _ => None,
    }
}

/// Says on stderr when a change is held until a break ends (`--defer`), and when it is released.
fn say_when_deferred(manager: &cxone_agent_state::AgentStateManager) {
    let mut notices = manager.subscribe();
    tokio::spawn(async move {
        use cxone_agent_state::Notice;
        use cxone_agent_state_core::{iso8601, Event};
        while let Ok(notice) = notices.recv().await {
            if let Notice::Event(Event::Deferred(d)) = notice {
                eprintln!(
                    "deferred: {} {} is held until the break ends ({}), at the latest until {}; \
                     waiting (Ctrl-C twice stops and leaves it in the audit log for the next start)",
                    d.user_id,
                    d.requested_state,
                    iso8601(d.until_ms),
                    iso8601(d.deadline_ms)
                );
            }
        }
    });
}

/// A change settled as not applied, as the error it ends with (`NOT_APPLIED`).
fn not_applied(s: &OutcomeSettled) -> TransitionError {
    TransitionError::new(
        ErrorCode::NotApplied,
        format!(
            "the answer was lost, and the tenant shows the change was not applied: {}",
            s.evidence
        ),
    )
}

fn exit_of(policy_violation: bool) -> u8 {
    if policy_violation {
        exit::POLICY
    } else {
        exit::FAILURE
    }
}
