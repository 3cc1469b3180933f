//! `cxone-agent-state transition`: one state change, printed as JSON.

use std::process::ExitCode;

use clap::Args;

use super::connect::{finish, outcome_json, ConnectArgs};

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
        let code = match &result {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) if e.code.is_policy_violation() => ExitCode::from(2),
            Err(_) => ExitCode::from(1),
        };
        let out = outcome_json(&user, &args.state, &result);
        outln!("{}", serde_json::to_string_pretty(&out)?);
        Ok(code)
    })
}
