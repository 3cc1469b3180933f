//! Who asked for a change, through what, and a supervisor's override of the policy.
//!
//! Every audit record the engine writes carries an [`Actor`] (an agent, a supervisor or the system, with its
//! id) and a [`Source`] (the CLI, the service, the agent console, a simulation, or an observation of the
//! tenant). An [`Override`] is a supervisor's say-so that lets one change pass the compliance policy: the
//! change is audited as an override (its [`OverrideNote`] names the rule it passed), never as a violation,
//! and the report counts overrides apart.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// The longest actor id, override actor or override reason, in characters.
pub const MAX_ACTOR_LEN: usize = 128;

/// What part the party plays asked for a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ActorRole {
    /// The agent whose state it is (an agent console).
    Agent,
    /// A supervisor or workforce analyst acting on an agent.
    Supervisor,
    /// A program: a bulk run, a scheduled job, the engine itself (settlements, deferred changes).
    System,
}

impl ActorRole {
    /// `agent`, `supervisor` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::System => "system",
        }
    }
}

/// Who asked for a change: its role and, when known, its id (an agent's user id, a supervisor's login).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    // Members in byte order of their names: audit records hash their canonical (sorted) encoding.
    /// Its id, 1 to [`MAX_ACTOR_LEN`] printable characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Agent, supervisor or system.
    pub role: ActorRole,
}

impl Actor {
    /// The system, with no id: what a change names when its caller names nobody.
    pub fn system() -> Self {
        Self {
            role: ActorRole::System,
            id: None,
        }
    }

    /// An agent acting on their own state.
    pub fn agent(id: impl Into<String>) -> Self {
        Self {
            role: ActorRole::Agent,
            id: Some(id.into()),
        }
    }

    /// A supervisor.
    pub fn supervisor(id: impl Into<String>) -> Self {
        Self {
            role: ActorRole::Supervisor,
            id: Some(id.into()),
        }
    }

    /// Whether the id (if any) is 1 to [`MAX_ACTOR_LEN`] printable characters.
    pub fn is_valid(&self) -> bool {
        self.id.as_deref().is_none_or(is_valid_text)
    }
}

impl std::fmt::Display for Actor {
    /// `role` or `role:id`, as the CLI's `--actor` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{}:{id}", self.role.as_str()),
            None => f.write_str(self.role.as_str()),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = ActorError;

    /// `agent:ID`, `supervisor:ID`, `system` or `system:ID`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (role, id) = match s.split_once(':') {
            Some((k, id)) => (k, Some(id.to_owned())),
            None => (s, None),
        };
        let role = match role {
            "agent" => ActorRole::Agent,
            "supervisor" => ActorRole::Supervisor,
            "system" => ActorRole::System,
            _ => return Err(ActorError),
        };
        if role != ActorRole::System && id.is_none() {
            return Err(ActorError);
        }
        let actor = Self { role, id };
        actor.is_valid().then_some(actor).ok_or(ActorError)
    }
}

/// An actor that does not parse: the text is not `agent:ID`, `supervisor:ID` or `system[:ID]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an actor is written agent:ID, supervisor:ID or system[:ID], the id 1 to {MAX_ACTOR_LEN} printable characters")]
pub struct ActorError;

/// Through what a change came in. Set once per engine ([`EngineConfig::source`](crate::EngineConfig::source));
/// observation records say [`Source::Observed`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Source {
    /// The `cxone-agent-state` program's `transition` and `bulk`.
    Cli,
    /// A Rust service embedding the library, or `cxone-agent-state serve`.
    #[default]
    Service,
    /// The npm package in an agent console.
    Console,
    /// A simulated day.
    Simulation,
    /// What the tenant showed (an observation record).
    Observed,
}

impl Source {
    /// `cli`, `service`, `console`, `simulation` or `observed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Service => "service",
            Self::Console => "console",
            Self::Simulation => "simulation",
            Self::Observed => "observed",
        }
    }
}

/// A supervisor's override of the compliance policy for one change
/// ([`TransitionOptions::override_`](crate::TransitionOptions::override_)).
///
/// The change is still checked (so its record can name the rule it passed), but a policy refusal —
/// `MANDATORY_BREAK_VIOLATION`, `AGENT_NOT_SCHEDULED` — does not stop it. Everything else still does: an
/// unknown agent or reason code, the tenant's own refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Override {
    /// The supervisor who decided it: 1 to [`MAX_ACTOR_LEN`] printable characters.
    pub actor: String,
    /// Why: 1 to [`MAX_ACTOR_LEN`] printable characters.
    pub reason: String,
}

impl Override {
    /// An override by `actor`, for `reason`.
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    /// Whether both parts are 1 to [`MAX_ACTOR_LEN`] printable characters.
    pub fn is_valid(&self) -> bool {
        is_valid_text(&self.actor) && is_valid_text(&self.reason)
    }
}

/// An override as its audit record keeps it: who, why, and the rule it passed (absent when the policy
/// would have allowed the change anyway).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideNote {
    // Members in byte order of their names, like [`Actor`]'s.
    /// The supervisor.
    pub actor: String,
    /// The policy code the change would have been refused with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrode: Option<ErrorCode>,
    /// Why.
    pub reason: String,
}

/// 1 to [`MAX_ACTOR_LEN`] characters, none of them a control character.
fn is_valid_text(s: &str) -> bool {
    is_printable_text(s, MAX_ACTOR_LEN)
}

/// Not blank, at most `max` characters, none of them a control character: what a caller's free text (a
/// reason code's name, an actor, an override's reason) must be.
pub(crate) fn is_printable_text(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_parse_and_print_as_the_cli_writes_them() {
        for text in ["agent:1001", "supervisor:kim", "system", "system:bulk"] {
            let a: Actor = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        assert_eq!(
            "supervisor:kim".parse::<Actor>().unwrap(),
            Actor::supervisor("kim")
        );
        for bad in [
            "",
            "agent",
            "agent:",
            "boss:kim",
            "supervisor:a\nb",
            "system: ",
        ] {
            assert!(bad.parse::<Actor>().is_err(), "{bad:?}");
        }
        let long = format!("agent:{}", "x".repeat(MAX_ACTOR_LEN + 1));
        assert!(long.parse::<Actor>().is_err());
    }

    #[test]
    fn actors_and_sources_serialize_as_documented() {
        assert_eq!(
            serde_json::to_string(&Actor::supervisor("kim")).unwrap(),
            r#"{"id":"kim","role":"supervisor"}"#
        );
        assert_eq!(
            serde_json::to_string(&Actor::system()).unwrap(),
            r#"{"role":"system"}"#
        );
        for s in [
            Source::Cli,
            Source::Service,
            Source::Console,
            Source::Simulation,
            Source::Observed,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }

    #[test]
    fn overrides_need_an_actor_and_a_reason() {
        assert!(Override::new("kim", "coverage gap").is_valid());
        assert!(!Override::new("", "coverage gap").is_valid());
        assert!(!Override::new("kim", " ").is_valid());
        assert!(!Override::new("kim", "a\u{7}").is_valid());
        assert!(!Override::new("kim", "r".repeat(MAX_ACTOR_LEN + 1)).is_valid());
    }
}
