//! Deferred changes: a READY refused only because a mandatory break is due is held, not failed, when the
//! caller asks for it ([`TransitionOptions::defer`](crate::TransitionOptions::defer)), and applied when the
//! break ends.
//!
//! ```text
//!  Checking ──break due──▶ Deferred ──break over──▶ Waiting ──▶ Checking ──▶ … applied | refused
//!                            │  ▲                                   │
//!                            │  └──────── still in a break ─────────┘
//!                            ├──cancel / a newer request──▶ cancelled (DEFERRAL_CANCELLED)
//!                            └──deadline──▶ expired (MANDATORY_BREAK_VIOLATION)
//! ```
//!
//! A deferred change is released at the break's end (as the schedule or the tenant's break answer names
//! it; without one, after [`DeferConfig::recheck_ms`]) and checked again before it is sent: policy is
//! still decided before the first send. One agent has at most one: a newer change for the agent replaces
//! it. Each step is an audit record carrying a [`DeferralNote`], and the log keeps the pending ones
//! ([`OpenDeferral`]), so they survive a restart.

use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::audit::AuditRecord;

/// Where a deferred change stands, as its audit records say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum DeferralPhase {
    /// Held until the break ends (`untilMs`), at the latest until `deadlineMs`. Not a transition attempt.
    Deferred,
    /// Released and checked again: this record is the change's outcome (applied, refused, unknown).
    Released,
    /// Cancelled before it was sent: by the caller, or replaced by a newer change of the agent.
    Cancelled,
    /// Its deadline passed while the break was still due: given up, a policy refusal.
    Expired,
}

impl DeferralPhase {
    /// `deferred`, `released`, `cancelled` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deferred => "deferred",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

/// A deferred change's step, on its audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeferralNote {
    // Members in byte order of their names: audit records hash their canonical (sorted) encoding.
    /// Why it was cancelled: `cancelled` (by its caller) or `replaced` (by a newer change of the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// `deferred`: when it gives up (Unix ms, our clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The deferral's id: the same on every record of the deferred change.
    pub id: String,
    /// This step.
    pub phase: DeferralPhase,
    /// `deferred`: when it is released to be checked again (Unix ms, our clock): the break's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl DeferralNote {
    /// The `released` step of deferral `id`: the record that carries it is the change's outcome.
    pub(crate) fn released(id: String) -> Self {
        Self {
            cause: None,
            deadline_ms: None,
            id,
            phase: DeferralPhase::Released,
            until_ms: None,
        }
    }
}

/// How long deferred changes may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct DeferConfig {
    /// A deferred change gives up this long after it was first deferred. A break that ends later than that
    /// refuses the change at once (it is not deferred). One hour by default.
    pub max_wait_ms: u64,
    /// When the refusal names no break end (a `seed` tenant that does not say), the change is checked again
    /// this often. One minute by default.
    pub recheck_ms: u64,
}

impl Default for DeferConfig {
    fn default() -> Self {
        Self {
            max_wait_ms: 3_600_000,
            recheck_ms: 60_000,
        }
    }
}

/// A deferred change the log holds open: its `deferred` record with no later record of the deferral (and
/// no intent of its release). [`Engine::restore`](crate::Engine::restore) holds it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenDeferral {
    /// The deferral's id.
    pub id: String,
    /// The agent.
    pub user_id: String,
    /// The target state (READY).
    pub state: String,
    /// The caller's reference, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// When it is released (Unix ms).
    pub until_ms: u64,
    /// When it gives up (Unix ms).
    pub deadline_ms: u64,
}

impl OpenDeferral {
    /// The pending deferral a `deferred` record describes.
    pub(crate) fn of(record: &AuditRecord) -> Option<Self> {
        let note = record.deferral.as_ref()?;
        (note.phase == DeferralPhase::Deferred).then(|| Self {
            id: note.id.clone(),
            user_id: record.user_id.clone(),
            state: record.new_state.clone(),
            reference: record.reference.clone(),
            actor: record.actor.clone(),
            until_ms: note.until_ms.unwrap_or(0),
            deadline_ms: note.deadline_ms.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_serializes_its_members_in_sorted_order() {
        let note = DeferralNote {
            cause: None,
            deadline_ms: Some(2),
            id: "d1".into(),
            phase: DeferralPhase::Deferred,
            until_ms: Some(1),
        };
        assert_eq!(
            serde_json::to_string(&note).unwrap(),
            r#"{"deadlineMs":2,"id":"d1","phase":"deferred","untilMs":1}"#
        );
        for p in [
            DeferralPhase::Deferred,
            DeferralPhase::Released,
            DeferralPhase::Cancelled,
            DeferralPhase::Expired,
        ] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }
}
