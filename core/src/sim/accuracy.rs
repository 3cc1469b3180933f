//! How far the engine's figures are from the tenant's truth: per agent and overall, utilization and idle time
//! over a window, from the engine's history against the simulated tenant's true timeline.
//!
//! Both timelines are read through the same [`StateClasses`]: a tenant state is named as the history names
//! it ([`history_state`]) before it is classed. A state of the engine's own that no class names (`TRAINING`,
//! which the tenant shows as `Unavailable` with its reason's code) is classed as the tenant shows it, so the
//! two timelines disagree only where the engine does not know what the tenant did. Before the engine's
//! first entry for an agent, the agent's time counts as neither working nor idle (the engine did not know).

use serde::{Deserialize, Serialize};

use super::harness::Harness;
use super::tenant::TruthEntry;
use crate::observe::{history_state, StateClass, StateClasses};
use crate::state::{AgentState, ReasonCodeTable};

/// One agent's figures against the truth over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentAccuracy {
    /// The agent (the engine's id).
    pub user_id: String,
    /// Changes of the agent's true state inside the window.
    pub truth_changes: u64,
    /// The engine's utilization (working ÷ online time); `None` without online time.
    pub utilization: Option<f64>,
    /// The truth's utilization.
    pub truth_utilization: Option<f64>,
    /// The engine's working time (ms).
    pub working_ms: u64,
    /// The truth's working time (ms).
    pub truth_working_ms: u64,
    /// The engine's idle time (ms).
    pub idle_ms: u64,
    /// The truth's idle time (ms).
    pub truth_idle_ms: u64,
    /// What "within one poll interval per state change" allows: the interval × (changes + 1) (ms).
    pub bound_ms: u64,
}

impl AgentAccuracy {
    /// |working − true working| (ms).
    pub fn working_error_ms(&self) -> u64 {
        self.working_ms.abs_diff(self.truth_working_ms)
    }

    /// |idle − true idle| (ms).
    pub fn idle_error_ms(&self) -> u64 {
        self.idle_ms.abs_diff(self.truth_idle_ms)
    }

    /// |utilization − true utilization|, when both are defined.
    pub fn utilization_error(&self) -> Option<f64> {
        Some((self.utilization? - self.truth_utilization?).abs())
    }

    /// Whether working and idle time are both within [`bound_ms`](Self::bound_ms).
    pub fn within_bound(&self) -> bool {
        self.working_error_ms() <= self.bound_ms && self.idle_error_ms() <= self.bound_ms
    }
}

/// Every agent's figures against the truth, with the overall errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayAccuracy {
    /// Whether the engine observed states changed elsewhere.
    pub observed: bool,
    /// The poll interval the bound is measured in (ms).
    pub interval_ms: u64,
    /// The window (Unix ms).
    pub from_ms: u64,
    /// The window's end (Unix ms).
    pub to_ms: u64,
    /// Mean |utilization error| over agents where both are defined (0 to 1).
    pub mean_utilization_error: f64,
    /// Largest |utilization error|.
    pub max_utilization_error: f64,
    /// Mean |idle time error| (ms).
    pub mean_idle_error_ms: f64,
    /// Largest |idle time error| (ms).
    pub max_idle_error_ms: u64,
    /// Agents whose working and idle time are within their bound.
    pub agents_within_bound: u64,
    /// Per agent, by the engine's id.
    pub agents: Vec<AgentAccuracy>,
}

/// Time per class over `[from, to)` of a timeline of `(entered at, state)` in order.
fn class_times(
    entries: &[(u64, String)],
    from: u64,
    to: u64,
    classes: &StateClasses,
) -> (u64, u64, u64) {
    let (mut working, mut idle, mut offline) = (0u64, 0u64, 0u64);
    for (i, (start, state)) in entries.iter().enumerate() {
        let end = entries.get(i + 1).map_or(to, |next| next.0);
        let (start, end) = ((*start).max(from), end.min(to));
        if end <= start {
            continue;
        }
        let span = end - start;
        match classes.class_of(state) {
            StateClass::Working => working += span,
            StateClass::Idle => idle += span,
            StateClass::Offline => offline += span,
            StateClass::Other => {}
        }
    }
    (working, idle, offline)
}

fn ratio(working: u64, online: u64) -> Option<f64> {
    (online > 0).then(|| working as f64 / online as f64)
}

/// The engine's figures against the truth for every agent of the tenant, over `[from_ms, to_ms)`.
pub fn day_accuracy(
    harness: &mut Harness,
    observed: bool,
    interval_ms: u64,
    from_ms: u64,
    to_ms: u64,
) -> DayAccuracy {
    let classes = harness.engine.history().classes().clone();
    let reasons: ReasonCodeTable = harness.engine.config().reason_codes.clone();
    let names: Vec<String> = harness.tenant.agent_user_ids().map(str::to_owned).collect();
    let mut agents = Vec::with_capacity(names.len());
    for name in names {
        let user_id = harness.user(&name);
        let truth: Vec<TruthEntry> = harness.tenant.truth_timeline(&name, to_ms);
        let truth_changes = truth
            .iter()
            .filter(|t| (from_ms..to_ms).contains(&t.at_ms))
            .count() as u64;
        let truth: Vec<(u64, String)> = truth
            .iter()
            .map(|t| {
                (
                    t.at_ms,
                    history_state(&t.state_name, t.code.as_deref(), &reasons),
                )
            })
            .collect();
        let ours: Vec<(u64, String)> = harness
            .engine
            .history()
            .timeline(&user_id)
            .into_iter()
            .map(|e| {
                let state = match (classes.class_of(&e.state), AgentState::parse(&e.state)) {
                    (StateClass::Other, Ok(s)) => {
                        history_state("Unavailable", Some(reasons.reason_for(&s)), &reasons)
                    }
                    _ => e.state,
                };
                (e.entered_at_ms, state)
            })
            .collect();
        let (tw, ti, to) = class_times(&truth, from_ms, to_ms, &classes);
        let (w, i, o) = class_times(&ours, from_ms, to_ms, &classes);
        let span = to_ms.saturating_sub(from_ms);
        agents.push(AgentAccuracy {
            user_id,
            truth_changes,
            utilization: ratio(w, span.saturating_sub(o)),
            truth_utilization: ratio(tw, span.saturating_sub(to)),
            working_ms: w,
            truth_working_ms: tw,
            idle_ms: i,
            truth_idle_ms: ti,
            bound_ms: interval_ms.saturating_mul(truth_changes + 1),
        });
    }
    agents.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let utilization_errors: Vec<f64> = agents
        .iter()
        .filter_map(AgentAccuracy::utilization_error)
        .collect();
    let n = agents.len().max(1) as f64;
    DayAccuracy {
        observed,
        interval_ms,
        from_ms,
        to_ms,
        mean_utilization_error: utilization_errors.iter().sum::<f64>()
            / utilization_errors.len().max(1) as f64,
        max_utilization_error: utilization_errors.iter().copied().fold(0.0, f64::max),
        mean_idle_error_ms: agents.iter().map(|a| a.idle_error_ms() as f64).sum::<f64>() / n,
        max_idle_error_ms: agents
            .iter()
            .map(AgentAccuracy::idle_error_ms)
            .max()
            .unwrap_or(0),
        agents_within_bound: agents.iter().filter(|a| a.within_bound()).count() as u64,
        agents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_times_clip_to_the_window_and_skip_unknown_time() {
        let c = StateClasses::default();
        let t = |v: &[(u64, &str)]| {
            v.iter()
                .map(|(a, s)| (*a, (*s).to_owned()))
                .collect::<Vec<_>>()
        };
        let entries = t(&[
            (0, "READY"),
            (100, "NOT_READY"),
            (250, "LOGGED_OUT"),
            (300, "READY"),
        ]);
        assert_eq!(class_times(&entries, 50, 400, &c), (50 + 100, 150, 50));
        // Nothing known before the first entry.
        assert_eq!(class_times(&t(&[(200, "READY")]), 0, 300, &c), (100, 0, 0));
        assert_eq!(class_times(&[], 0, 300, &c), (0, 0, 0));
        assert_eq!(ratio(1, 0), None);
    }
}
