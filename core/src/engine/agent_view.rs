//! One agent as a service or a console shows it: where it stands, its recent stretches, its idle time and
//! utilization, its adherence so far, and the change held for it.

use super::*;
use crate::adherence::{AgentAdherence, RuleTable};
use crate::history::StateEntry;
use crate::observe::AgentSnapshot;

/// Stretches of an agent's history an [`AgentView`] holds at most (the newest).
const AGENT_VIEW_HISTORY: usize = 50;

/// One agent now ([`Engine::agent_view`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentView {
    /// The agent.
    pub user_id: String,
    /// Its current state, where it is known from and how old it is (absent while no change of it was
    /// applied or observed, e.g. when its first change is held until a break ends).
    pub current: Option<AgentSnapshot>,
    /// Its newest stretches, oldest first (at most 50).
    pub history: Vec<StateEntry>,
    /// Idle time, time per state and utilization.
    pub metrics: Option<AgentMetrics>,
    /// Adherence and conformance so far against its known schedule (absent when none is known).
    pub adherence: Option<AgentAdherence>,
    /// The deferred change held for it, if any.
    pub deferred: Option<DeferredChange>,
}

impl Engine {
    /// The agent `user_id` as the engine knows it now; `None` when it knows nothing of the agent: no change
    /// of it applied or observed, and none held for it.
    pub fn agent_view(&self, user_id: &str, now: Now) -> Option<AgentView> {
        let current = self.agents(now).into_iter().find(|a| a.user_id == user_id);
        let deferred = self.deferred_change(user_id);
        if current.is_none() && deferred.is_none() {
            return None;
        }
        let mut history = self.history.timeline(user_id);
        if history.len() > AGENT_VIEW_HISTORY {
            history.drain(..history.len() - AGENT_VIEW_HISTORY);
        }
        let schedules = self
            .facts
            .known_schedules(&self.config.cxone.break_activities);
        let adherence = schedules
            .contains_key(user_id)
            .then(|| {
                self.adherence_of(now, Some(&schedules), &RuleTable::default(), Some(user_id))
                    .agents
                    .into_iter()
                    .find(|a| a.user_id == user_id)
            })
            .flatten();
        Some(AgentView {
            user_id: user_id.to_owned(),
            current,
            history,
            metrics: self.agent_metrics(user_id, now),
            adherence,
            deferred,
        })
    }
}
