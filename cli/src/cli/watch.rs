//! `cxone-agent-state watch`: observes agent states changed elsewhere (`cxone`) and prints each change.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use cxone_agent_state::Notice;
use cxone_agent_state_core::{
    iso8601, ErrorCode, Event, ObservationHeartbeat, OutcomeSettled, StateObserved,
};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::connect::{finish, stop_at_once, stop_requests, ConnectArgs};
use super::fail::{self, exit, Failure};

/// Options of `watch`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  cxone-agent-state watch --profile cxone
  cxone-agent-state watch --profile cxone --json --heartbeats --observe-interval-ms 5000 > changes.jsonl
  cxone-agent-state watch --profile cxone --for-secs 600

Polls the tenant's agent states (GET …/agents/states?updatedSince=, every --observe-interval-ms) and
prints every change it sees: the agents' own, supervisors', the ACD's, sessions starting and ending, and
our own. The first poll reports every agent once (previous state unknown). Each change is also an
observation record in the audit log, and an OUTCOME_UNKNOWN change of an earlier run that the tenant's
answers decide gets a settlement record.

Output: on a terminal, one row per change: time (UTC, the tenant's time of the change), agent, previous →
state (as the history names them), tenant state/code, source (ours: a change this process made;
external: anything else). With --json (or when stdout is not a terminal) JSON Lines: one object per change
{\"event\":\"stateObserved\",\"userId\",\"previousState\",\"state\",\"tenantState\",\"code\",\"source\",
\"atMs\",\"tenantTime\",\"recordId\",\"observedAtMs\"}, one per settled outcome {\"event\":\"outcomeSettled\",
\"userId\",\"requestedState\",\"applied\",\"settles\",\"recordId\",\"evidence\",…}, and with --heartbeats one
per poll {\"event\":\"heartbeat\",\"ok\",\"lagMs\",\"stale\",\"agents\",\"changed\",\"polls\",\"error\",\"atMs\"}.

Stopping: Ctrl-C (SIGINT) or SIGTERM stops polling, syncs the audit log, prints its head on stderr and
exits 0; a second one stops at once after syncing the log. --for-secs N stops by itself after N seconds.
A poll that fails is retried (see the heartbeats); watch keeps running.

Only the cxone profile can observe: on seed, watch fails with OBSERVE_UNSUPPORTED (exit 64).

Settings read (flags win): the cxone settings (see `transition --help`), CXONE_OBSERVE_INTERVAL_MS,
CXONE_OBSERVE_SETTLE_AFTER_MS, CXONE_OBSERVE_SKIP_IF_IN_EFFECT, CXONE_OBSERVE_STALE_AFTER_MS,
CXONE_AUDIT_LOG, WORKFORCE_WEBHOOK_URL, WORKFORCE_WEBHOOK_SECRET, CXONE_LOG.

",
    exit_codes_help!()
))]
pub struct WatchArgs {
    /// Print JSON Lines (the default when stdout is not a terminal).
    #[arg(long)]
    json: bool,
    /// Also print one line per poll: whether it succeeded, how far behind the states are, how many agents.
    #[arg(long)]
    heartbeats: bool,
    /// Stop by itself after this many seconds (exit 0).
    #[arg(long, value_name = "N")]
    for_secs: Option<u64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Exit codes: 0 stopped (a signal, or `--for-secs`), 64 `OBSERVE_UNSUPPORTED` (seed) or a usage error, 1
/// any other failure.
pub fn run(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let json = fail::json_mode(args.json);
    let config = args.connect.config()?;
    let interval_ms = config.engine.observe.interval_ms;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Listening before the manager starts: a stop request during recovery is a stop, not a kill.
        let mut stops = stop_requests();
        let audit_log = args.connect.audit_log();
        let manager = args.connect.start().await?;
        let mut notices = manager.subscribe();
        if let Err(e) = manager.start_observing().await {
            finish(manager, Duration::ZERO, audit_log).await;
            let exit = if e.code == ErrorCode::ObserveUnsupported {
                exit::USAGE
            } else {
                exit::FAILURE
            };
            let message = if e.code == ErrorCode::ObserveUnsupported {
                "watch needs the cxone profile (--profile cxone, or CXONE_PROFILE=cxone): the seed \
                 profile has no endpoint to read agent states from"
                    .to_owned()
            } else {
                e.message
            };
            return Err(Failure {
                exit,
                ..Failure::new(e.code.as_str(), message)
            }
            .into());
        }
        eprintln!(
            "watching agent states (a poll every {} ms{}); Ctrl-C stops",
            interval_ms,
            match args.for_secs {
                Some(n) => format!(", for {n} s"),
                None => String::new(),
            }
        );
        if !json {
            outln!(
                "{:<8}  {:<14}  {:>16}   {:<16}  {:<24}  source",
                "time",
                "agent",
                "previous",
                "state",
                "tenant state/code"
            );
        }
        let until = args
            .for_secs
            .map(|n| Instant::now() + Duration::from_secs(n));
        let mut stopped_by_signal = false;
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(Notice::Event(e)) => print_event(&e, json, args.heartbeats)?,
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => eprintln!(
                        "note: {n} notice(s) were not printed (output too slow); the audit log holds every \
                         observation"
                    ),
                    Err(RecvError::Closed) => break,
                },
                Some(()) = stops.recv() => {
                    stopped_by_signal = true;
                    break;
                }
                () = sleep_until(until) => break,
            }
        }
        manager.stop_observing().await;
        if stopped_by_signal {
            eprintln!(
                "stopping: syncing the audit log (Ctrl-C again stops at once after syncing it)"
            );
        }
        let drain = if stopped_by_signal {
            Duration::ZERO
        } else {
            args.connect.webhook_drain()
        };
        tokio::select! {
            () = finish(manager, drain, audit_log) => {}
            Some(()) = stops.recv() => {
                stop_at_once(audit_log, "webhooks still waiting go out on the next start");
            }
        }
        Ok(ExitCode::from(exit::OK))
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Prints one event, if `watch` prints it.
fn print_event(e: &Event, json: bool, heartbeats: bool) -> std::io::Result<()> {
    match e {
        Event::StateObserved(s) if json => outln!("{}", observed_json(s)),
        Event::StateObserved(s) => outln!("{}", observed_row(s)),
        Event::OutcomeSettled(s) if json => outln!("{}", tagged("outcomeSettled", s)),
        Event::OutcomeSettled(s) => outln!("{}", settled_row(s)),
        Event::ObservationHeartbeat(h) if heartbeats && json => {
            outln!("{}", tagged("heartbeat", h))
        }
        Event::ObservationHeartbeat(h) if heartbeats => outln!("{}", heartbeat_row(h)),
        _ => {}
    }
    use std::io::Write as _;
    super::Stdout.flush()
}

/// A change as one flat JSON object.
fn observed_json(s: &StateObserved) -> Value {
    let o = &s.observation;
    json!({
        "event": "stateObserved",
        "userId": s.user_id,
        "previousState": s.previous_state,
        "state": s.state,
        "tenantState": o.tenant_state,
        "code": o.code,
        "source": o.source.as_str(),
        "atMs": o.at_ms,
        "tenantTime": o.tenant_time,
        "recordId": s.record_id,
        "observedAtMs": s.at_ms,
    })
}

/// An event's own JSON with `"event": name` added.
fn tagged(name: &str, event: &impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("event".into(), Value::from(name));
    }
    v
}

/// `HH:MM:SS` (UTC) of Unix ms.
fn clock(ms: u64) -> String {
    iso8601(ms).get(11..19).unwrap_or_default().to_owned()
}

fn observed_row(s: &StateObserved) -> String {
    let o = &s.observation;
    let tenant = match &o.code {
        Some(code) => format!("{}/{code}", o.tenant_state),
        None => o.tenant_state.clone(),
    };
    format!(
        "{:<8}  {:<14}  {:>16} → {:<16}  {:<24}  {}",
        clock(o.at_ms),
        s.user_id,
        s.previous_state.as_deref().unwrap_or("—"),
        s.state,
        tenant,
        o.source.as_str()
    )
}

fn settled_row(s: &OutcomeSettled) -> String {
    format!(
        "{:<8}  {:<14}  settled: the change to {} was {} ({})",
        clock(s.at_ms),
        s.user_id,
        s.requested_state,
        if s.applied { "applied" } else { "not applied" },
        s.evidence
    )
}

fn heartbeat_row(h: &ObservationHeartbeat) -> String {
    let lag = h
        .lag_ms
        .map_or_else(|| "no poll yet".to_owned(), |ms| format!("lag {ms} ms"));
    match &h.error {
        Some(e) => format!(
            "{:<8}  poll failed: {} ({}); {lag}{}",
            clock(h.at_ms),
            e.message,
            e.code,
            if h.stale { ", stale" } else { "" }
        ),
        None => format!(
            "{:<8}  poll {}: {} agent(s), {} changed, {lag}{}",
            clock(h.at_ms),
            h.polls,
            h.agents,
            h.changed,
            if h.stale { ", stale" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_hours_minutes_seconds() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
