//! `cxone-agent-state outbox list` and `outbox replay`: the webhook payloads still waiting, and the dead
//! letters a receiver refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Cell;
use cxone_agent_state::store;
use cxone_agent_state_core::{iso8601, ErrorCode};

use super::connect::{finish, ConnectArgs};
use super::fail::{code, Failure};
use super::tables::{right, table};

/// `outbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Lists the dead letters (payloads the receiver kept refusing) and counts the payloads still waiting.
    #[command(after_help = concat!(
        "Examples:
  cxone-agent-state outbox list
  cxone-agent-state outbox list --audit-log /var/lib/wfm/cxone-audit.jsonl --json

Reads the log without changing or locking it.

Settings read: CXONE_AUDIT_LOG.

",
        exit_codes_help!()
    ))]
    List {
        /// The log.
        #[arg(long, env = "CXONE_AUDIT_LOG", default_value = "cxone-audit.jsonl")]
        audit_log: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Puts dead letters back in line and delivers them (to the configured webhook URL), then exits.
    #[command(after_help = concat!(
        "Examples:
  cxone-agent-state outbox replay
  cxone-agent-state outbox replay --event-id 4f6c…   # one dead letter

Replayed payloads belong to the receiver configured now. The audit log's head (SEQ:HASH) is printed on
stderr. Exits 1 when --event-id names no dead letter.

Settings read (flags win): WORKFORCE_WEBHOOK_URL, WORKFORCE_WEBHOOK_SECRET, CXONE_AUDIT_LOG, and the
tenant settings of `transition` (the engine starts to deliver).

",
        exit_codes_help!()
    ))]
    Replay {
        /// Only this event id (all dead letters when absent).
        #[arg(long)]
        event_id: Option<String>,
        #[command(flatten)]
        connect: Box<ConnectArgs>,
    },
}

/// Runs an `outbox` subcommand.
pub fn run(command: &OutboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::List { audit_log, json } => list(audit_log, *json),
        OutboxCommand::Replay { event_id, connect } => replay(event_id.as_deref(), connect),
    }
}

fn list(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let state = store::read_state(path).map_err(|e| {
        let code = match e {
            store::StoreError::Corrupt { .. } => ErrorCode::AuditLogCorrupt,
            _ => ErrorCode::AuditLogUnavailable,
        };
        Failure::new(code.as_str(), e.to_string())
    })?;
    let dead: Vec<_> = state.dead_letters().collect();
    let waiting = state.undelivered().count();
    if json {
        let value = serde_json::json!({
            "pending": waiting,
            "deadLetters": dead,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{waiting} webhook event(s) waiting for delivery; {} dead letter(s)",
        dead.len()
    );
    if !dead.is_empty() {
        let mut t = table([
            "event id",
            "attempts",
            "last status",
            "accepted",
            "set aside",
            "why",
        ]);
        for d in &dead {
            t.add_row(vec![
                Cell::new(&d.entry.event_id),
                right(d.dead.attempts),
                right(
                    d.dead
                        .last_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                ),
                Cell::new(iso8601(d.entry.at_ms)),
                Cell::new(iso8601(d.dead.at_ms)),
                Cell::new(&d.dead.reason),
            ]);
        }
        outln!("{t}");
        outln!("resend them with `cxone-agent-state outbox replay` (or `--event-id ID` for one)");
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(event_id: Option<&str>, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let manager = connect.start().await?;
        let n = manager.replay_dead_letters(event_id).await;
        if n > 0 {
            eprintln!("replaying {n} dead letter(s)");
        }
        finish(manager, connect.webhook_drain(), connect.audit_log()).await;
        match event_id {
            Some(id) if n == 0 => Err(Failure::new(
                code::NO_SUCH_DEAD_LETTER,
                format!("no dead letter with event id {id} (see `cxone-agent-state outbox list`)"),
            )
            .into()),
            _ => {
                if n == 0 {
                    eprintln!("no dead letter to replay");
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
