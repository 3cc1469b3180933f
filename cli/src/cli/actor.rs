//! Who asks for a change from the command line and how: `--actor`, a supervisor's override
//! (`--override-actor`, `--override-reason`) and `--defer`, shared by `transition` and `bulk`.

use clap::Args;

use cxone_agent_state_core::{Actor, ErrorCode, Override, TransitionOptions};

use super::fail::Failure;

/// Who asks, and an override of the policy.
#[derive(Debug, Args)]
pub struct ActorArgs {
    /// Who asks for the change, written on its audit records: agent:ID, supervisor:ID, system or system:ID
    /// [default: the override's supervisor, else system] [env: CXONE_ACTOR].
    #[arg(long, env = "CXONE_ACTOR", value_name = "ACTOR", value_parser = parse_actor)]
    actor: Option<Actor>,
    /// A supervisor's override of the compliance policy: the supervisor who decided it. The change passes a
    /// policy refusal (MANDATORY_BREAK_VIOLATION, AGENT_NOT_SCHEDULED) and is audited as an override, not
    /// a violation. Needs --override-reason.
    #[arg(long, value_name = "SUPERVISOR", requires = "override_reason")]
    override_actor: Option<String>,
    /// Why the policy is overridden (written on the audit record). Needs --override-actor.
    #[arg(long, value_name = "TEXT", requires = "override_actor")]
    override_reason: Option<String>,
    /// Hold a READY that a due mandatory break refuses until the break ends, then apply it (checked again
    /// first), rather than fail it; the command waits for it. The log keeps it: a run stopped meanwhile
    /// leaves it to the next start of any command on the same audit log. Gives up after an hour
    /// (MANDATORY_BREAK_VIOLATION).
    #[arg(long)]
    defer: bool,
}

fn parse_actor(text: &str) -> Result<Actor, String> {
    text.parse().map_err(|e| format!("{e}"))
}

impl ActorArgs {
    /// `options` with the actor and override these flags name; an override whose parts are empty or not
    /// printable is a usage error with the code `INVALID_OVERRIDE`.
    pub fn apply(&self, mut options: TransitionOptions) -> Result<TransitionOptions, Failure> {
        if let Some(actor) = &self.actor {
            options = options.with_actor(actor.clone());
        }
        if let (Some(actor), Some(reason)) = (&self.override_actor, &self.override_reason) {
            let o = Override::new(actor, reason);
            if !o.is_valid() {
                return Err(Failure {
                    exit: super::fail::exit::USAGE,
                    ..Failure::new(
                        ErrorCode::InvalidOverride.as_str(),
                        format!(
                            "--override-actor and --override-reason must each be 1 to {} printable characters",
                            cxone_agent_state_core::MAX_ACTOR_LEN
                        ),
                    )
                });
            }
            options = options.with_override(o);
        }
        if self.defer {
            options = options.with_defer();
        }
        Ok(options)
    }
}
