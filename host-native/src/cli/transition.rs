//! `cxone-agent-state transition`: one state change, printed as JSON.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::connect::{finish, ConnectArgs};

/// Options of `transition`.
#[derive(Debug, Args)]
pub struct TransitionArgs {
    /// The agent (default: `TARGET_USER_ID`).
    #[arg(long, env = "TARGET_USER_ID")]
    user: Option<String>,
    /// The target state, e.g. READY, NOT_READY, PAUSED, IDLE.
    #[arg(long)]
    state: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Exit codes: 0 changed, 2 refused by policy, 1 any other failure.
pub fn run(args: &TransitionArgs) -> anyhow::Result<ExitCode> {
    let user = args.user.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "missing setting TARGET_USER_ID (set the environment variable or pass --user)"
        )
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let manager = args.connect.start().await?;
        let result = manager.transition_state(&user, &args.state).await;
        finish(manager, args.connect.webhook_drain()).await;
        let (out, code) = match result {
            Ok(c) => (
                json!({
                    "success": true,
                    "userId": c.user_id,
                    "previousState": c.previous_state,
                    "newState": c.new_state,
                    "reasonCode": c.reason_code,
                    "latencyMs": c.latency_ms,
                    "attempts": c.attempts,
                }),
                ExitCode::SUCCESS,
            ),
            Err(e) => {
                let code = if e.code.is_policy_violation() { 2 } else { 1 };
                (
                    json!({
                        "success": false,
                        "userId": user,
                        "state": args.state,
                        "error": { "code": e.code, "message": e.message },
                        "policyViolation": e.code.is_policy_violation(),
                    }),
                    ExitCode::from(code),
                )
            }
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
        Ok(code)
    })
}
