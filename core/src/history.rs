//! Per-agent state timelines and the metrics derived from them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::observe::{StateClass, StateClasses};

/// Retention limits that keep memory bounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryConfig {
    /// Timeline entries kept per agent (older ones are dropped; their time stays in the totals).
    pub max_entries_per_agent: usize,
    /// Agents tracked at once; past this, the agent whose last change is oldest is forgotten.
    pub max_agents: usize,
    /// Which states count as working (utilization), idle and offline.
    #[serde(default)]
    pub classes: StateClasses,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_entries_per_agent: 256,
            max_agents: 100_000,
            classes: StateClasses::default(),
        }
    }
}

/// One stretch in a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    /// The state.
    pub state: String,
    /// When the agent entered it (Unix ms).
    pub entered_at_ms: u64,
    /// The state before, if any.
    pub previous_state: Option<String>,
}

/// Derived metrics for one agent at a given `now`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentMetrics {
    /// The agent.
    pub user_id: String,
    /// The current state.
    pub current_state: String,
    /// When the current stretch began.
    pub current_since_ms: u64,
    /// The current stretch, if it is an idle state (by default IDLE, PAUSED, NOT_READY, LOGGED_IN); else 0.
    pub idle_time_ms: u64,
    /// All idle time since tracking began, including the current stretch.
    pub cumulative_idle_ms: u64,
    /// Time since the first recorded state.
    pub tracked_ms: u64,
    /// Time per state, including the current stretch.
    pub time_in_state_ms: BTreeMap<String, u64>,
    /// Working time (READY and the contact states by default) ÷ tracked time outside offline states
    /// (`LOGGED_OUT`); `None` when there is no such time yet.
    pub utilization: Option<f64>,
}

/// Per-agent timelines.
#[derive(Clone, Debug)]
pub struct History {
    config: HistoryConfig,
    agents: BTreeMap<String, AgentTimeline>,
    /// `(last change, user id)` for every tracked agent, so the stalest agent is found in O(log n).
    by_last_change: BTreeSet<(u64, String)>,
}

/// What is kept for one agent.
#[derive(Clone, Debug)]
struct AgentTimeline {
    /// The retained entries, oldest first; never empty. The last one is the current stretch.
    entries: VecDeque<StateEntry>,
    /// When the first entry ever recorded began (kept even after that entry is dropped).
    first_seen_ms: u64,
    /// Time per state over closed stretches.
    closed_totals: BTreeMap<String, u64>,
    /// Idle time over closed stretches.
    closed_idle_ms: u64,
}

impl AgentTimeline {
    fn current(&self) -> &StateEntry {
        self.entries
            .back()
            .expect("a tracked agent has at least one entry")
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(HistoryConfig::default())
    }
}

impl History {
    /// Empty history with these limits.
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            config,
            agents: BTreeMap::new(),
            by_last_change: BTreeSet::new(),
        }
    }
    /// Records that `user_id` entered `state` at `at_ms` and returns the new entry.
    pub fn record(&mut self, user_id: &str, state: &str, at_ms: u64) -> StateEntry {
        // At least the current entry must be kept, whatever the configuration says.
        let max_entries = self.config.max_entries_per_agent.max(1);
        if let Some(agent) = self.agents.get_mut(user_id) {
            let current = agent.current();
            let since = current.entered_at_ms;
            // Time never goes backwards: an earlier `at_ms` closes the stretch with 0 ms and the new entry
            // starts where the old one did, so the timeline stays ordered.
            let entered_at_ms = at_ms.max(since);
            let duration = entered_at_ms - since;
            let previous = current.state.clone();
            let total = agent.closed_totals.entry(previous.clone()).or_insert(0);
            *total = total.saturating_add(duration);
            if self.config.classes.class_of(&previous) == StateClass::Idle {
                agent.closed_idle_ms = agent.closed_idle_ms.saturating_add(duration);
            }
            let entry = StateEntry {
                state: state.to_owned(),
                entered_at_ms,
                previous_state: Some(previous),
            };
            agent.entries.push_back(entry.clone());
            while agent.entries.len() > max_entries {
                agent.entries.pop_front();
            }
            if entered_at_ms != since {
                let key = (since, user_id.to_owned());
                self.by_last_change.remove(&key);
                self.by_last_change.insert((entered_at_ms, key.1));
            }
            return entry;
        }

        let max_agents = self.config.max_agents.max(1);
        while self.agents.len() >= max_agents {
            let Some((_, stalest)) = self.by_last_change.pop_first() else {
                break;
            };
            self.agents.remove(&stalest);
        }
        let entry = StateEntry {
            state: state.to_owned(),
            entered_at_ms: at_ms,
            previous_state: None,
        };
        self.agents.insert(
            user_id.to_owned(),
            AgentTimeline {
                entries: VecDeque::from([entry.clone()]),
                first_seen_ms: at_ms,
                closed_totals: BTreeMap::new(),
                closed_idle_ms: 0,
            },
        );
        self.by_last_change.insert((at_ms, user_id.to_owned()));
        entry
    }
    /// The current stretch of an agent.
    pub fn current(&self, user_id: &str) -> Option<&StateEntry> {
        self.agents.get(user_id).map(AgentTimeline::current)
    }
    /// The reference module's `calculateIdleTime`: the current stretch if it is idle, else 0.
    pub fn idle_time(&self, user_id: &str, now_ms: u64) -> u64 {
        self.current(user_id)
            .filter(|e| self.config.classes.class_of(&e.state) == StateClass::Idle)
            .map_or(0, |e| now_ms.saturating_sub(e.entered_at_ms))
    }
    /// Metrics for one agent.
    pub fn agent_metrics(&self, user_id: &str, now_ms: u64) -> Option<AgentMetrics> {
        let agent = self.agents.get(user_id)?;
        Some(self.metrics_of(user_id, agent, now_ms))
    }
    /// Metrics for every tracked agent, by user id.
    pub fn all_metrics(&self, now_ms: u64) -> Vec<AgentMetrics> {
        self.agents
            .iter()
            .map(|(user_id, agent)| self.metrics_of(user_id, agent, now_ms))
            .collect()
    }
    /// The retained timeline of an agent, oldest first.
    pub fn timeline(&self, user_id: &str) -> Vec<StateEntry> {
        self.agents
            .get(user_id)
            .map(|a| a.entries.iter().cloned().collect())
            .unwrap_or_default()
    }
    /// Every tracked agent's current stretch, by user id.
    pub fn current_states(&self) -> impl Iterator<Item = (&str, &StateEntry)> {
        self.agents
            .iter()
            .map(|(user_id, agent)| (user_id.as_str(), agent.current()))
    }
    /// How many agents are tracked.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Whether `user_id` is tracked.
    pub fn contains(&self, user_id: &str) -> bool {
        self.agents.contains_key(user_id)
    }

    /// The configured state classes.
    pub fn classes(&self) -> &StateClasses {
        &self.config.classes
    }

    fn metrics_of(&self, user_id: &str, agent: &AgentTimeline, now_ms: u64) -> AgentMetrics {
        let classes = &self.config.classes;
        let current = agent.current();
        let current_ms = now_ms.saturating_sub(current.entered_at_ms);
        let idle_time_ms = if classes.class_of(&current.state) == StateClass::Idle {
            current_ms
        } else {
            0
        };
        let mut time_in_state_ms = agent.closed_totals.clone();
        let total = time_in_state_ms.entry(current.state.clone()).or_insert(0);
        *total = total.saturating_add(current_ms);
        let tracked_ms = now_ms.saturating_sub(agent.first_seen_ms);
        let (mut working_ms, mut offline_ms) = (0u64, 0u64);
        for (state, ms) in &time_in_state_ms {
            match classes.class_of(state) {
                StateClass::Working => working_ms = working_ms.saturating_add(*ms),
                StateClass::Offline => offline_ms = offline_ms.saturating_add(*ms),
                StateClass::Idle | StateClass::Other => {}
            }
        }
        let online_ms = tracked_ms.saturating_sub(offline_ms);
        let utilization = (online_ms > 0).then(|| working_ms as f64 / online_ms as f64);
        AgentMetrics {
            user_id: user_id.to_owned(),
            current_state: current.state.clone(),
            current_since_ms: current.entered_at_ms,
            idle_time_ms,
            cumulative_idle_ms: agent.closed_idle_ms.saturating_add(idle_time_ms),
            tracked_ms,
            time_in_state_ms,
            utilization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{StateClasses, LOGGED_OUT};
    use crate::state::{IDLE, NOT_READY, PAUSED, READY};

    fn limits(max_entries_per_agent: usize, max_agents: usize) -> History {
        History::new(HistoryConfig {
            max_entries_per_agent,
            max_agents,
            classes: StateClasses::default(),
        })
    }

    #[test]
    fn observed_states_count_by_their_class() {
        let mut h = History::default();
        h.record("a", READY, 0);
        h.record("a", "INBOUND_CONTACT", 100); // READY 100
        h.record("a", NOT_READY, 300); // contact 200
        h.record("a", LOGGED_OUT, 400); // NOT_READY 100
        h.record("a", "LOGGED_IN", 1_400); // offline 1000
        let m = h.agent_metrics("a", 1_500).unwrap(); // LOGGED_IN 100 (idle)
        assert_eq!(m.tracked_ms, 1_500);
        // Working 300 of 500 online.
        assert_eq!(m.utilization, Some(300.0 / 500.0));
        assert_eq!(m.idle_time_ms, 100);
        assert_eq!(m.cumulative_idle_ms, 200);
        // Offline the whole time: no utilization.
        h.record("b", LOGGED_OUT, 0);
        assert_eq!(h.agent_metrics("b", 1_000).unwrap().utilization, None);
    }

    #[test]
    fn record_links_previous_state_and_restarts_on_same_state() {
        let mut h = History::default();
        let first = h.record("a", READY, 1_000);
        assert_eq!(first.previous_state, None);
        let second = h.record("a", NOT_READY, 2_000);
        assert_eq!(second.previous_state.as_deref(), Some(READY));
        let third = h.record("a", NOT_READY, 3_000);
        assert_eq!(third.previous_state.as_deref(), Some(NOT_READY));
        assert_eq!(third.entered_at_ms, 3_000);
        assert_eq!(h.current("a"), Some(&third));
        assert_eq!(h.timeline("a"), vec![first, second, third]);
        // Re-entering the same state restarts the stretch (reference: entryTime is overwritten) ...
        assert_eq!(h.idle_time("a", 3_500), 500);
        // ... but the time before still counts.
        let m = h.agent_metrics("a", 3_500).unwrap();
        assert_eq!(m.time_in_state_ms[NOT_READY], 1_500);
        assert_eq!(m.cumulative_idle_ms, 1_500);
    }

    #[test]
    fn idle_time_matches_reference() {
        let mut h = History::default();
        assert_eq!(h.idle_time("nobody", 10_000), 0);
        assert!(h.current("nobody").is_none());
        assert!(h.agent_metrics("nobody", 10_000).is_none());
        assert!(h.timeline("nobody").is_empty());
        for idle in [IDLE, PAUSED, NOT_READY] {
            h.record("a", idle, 1_000);
            assert_eq!(h.idle_time("a", 4_000), 3_000, "{idle}");
        }
        h.record("a", READY, 5_000);
        assert_eq!(h.idle_time("a", 9_000), 0);
        h.record("a", "ON_CALL", 9_000);
        assert_eq!(h.idle_time("a", 12_000), 0);
        // `now` before the entry saturates instead of wrapping.
        h.record("b", IDLE, 10_000);
        assert_eq!(h.idle_time("b", 9_000), 0);
    }

    #[test]
    fn cumulative_idle_time_in_state_and_utilization() {
        let mut h = History::default();
        h.record("a", READY, 0);
        h.record("a", NOT_READY, 100); // READY 100
        h.record("a", READY, 150); // NOT_READY 50
        h.record("a", PAUSED, 450); // READY 300
        h.record("a", "ON_CALL", 470); // PAUSED 20
        h.record("a", IDLE, 500); // ON_CALL 30
        let m = h.agent_metrics("a", 600).unwrap(); // IDLE 100 (current)
        assert_eq!(m.current_state, IDLE);
        assert_eq!(m.current_since_ms, 500);
        assert_eq!(m.idle_time_ms, 100);
        assert_eq!(m.cumulative_idle_ms, 50 + 20 + 100);
        assert_eq!(m.tracked_ms, 600);
        let expected: BTreeMap<String, u64> = [
            (READY, 400),
            (NOT_READY, 50),
            (PAUSED, 20),
            ("ON_CALL", 30),
            (IDLE, 100),
        ]
        .into_iter()
        .map(|(s, t)| (s.to_owned(), t))
        .collect();
        assert_eq!(m.time_in_state_ms, expected);
        assert_eq!(m.time_in_state_ms.values().sum::<u64>(), m.tracked_ms);
        assert_eq!(m.utilization, Some(400.0 / 600.0));

        // Current READY stretch counts towards utilization; nothing tracked yet gives None.
        h.record("b", READY, 1_000);
        assert_eq!(h.agent_metrics("b", 1_000).unwrap().utilization, None);
        assert_eq!(h.agent_metrics("b", 1_500).unwrap().utilization, Some(1.0));
        let b = h.agent_metrics("b", 1_500).unwrap();
        assert_eq!((b.idle_time_ms, b.cumulative_idle_ms), (0, 0));
    }

    #[test]
    fn totals_survive_timeline_truncation() {
        let mut h = limits(3, 10);
        let mut t = 1_000;
        for i in 0..10 {
            h.record("a", if i % 2 == 0 { READY } else { IDLE }, t);
            t += 100;
        }
        // Entries at 1000..=1900; only the last three are kept.
        let timeline = h.timeline("a");
        assert_eq!(timeline.len(), 3);
        assert_eq!(
            timeline.iter().map(|e| e.entered_at_ms).collect::<Vec<_>>(),
            vec![1_700, 1_800, 1_900]
        );
        let m = h.agent_metrics("a", 2_000).unwrap();
        assert_eq!(m.tracked_ms, 1_000, "counted from the very first entry");
        assert_eq!(m.time_in_state_ms[READY], 500);
        assert_eq!(m.time_in_state_ms[IDLE], 500);
        assert_eq!(m.cumulative_idle_ms, 500);
        assert_eq!(m.utilization, Some(0.5));
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut h = History::default();
        h.record("a", READY, 1_000);
        let e = h.record("a", IDLE, 400);
        assert_eq!(e.entered_at_ms, 1_000);
        let m = h.agent_metrics("a", 1_500).unwrap();
        assert_eq!(m.time_in_state_ms[READY], 0);
        assert_eq!(m.time_in_state_ms[IDLE], 500);
        assert_eq!(m.tracked_ms, 500);
        // A `now` before everything saturates to 0.
        let m = h.agent_metrics("a", 0).unwrap();
        assert_eq!((m.tracked_ms, m.idle_time_ms, m.utilization), (0, 0, None));
    }

    #[test]
    fn evicts_agent_with_oldest_last_change() {
        let mut h = limits(8, 3);
        h.record("c", READY, 100);
        h.record("b", READY, 100);
        h.record("a", READY, 300);
        h.record("c", IDLE, 400); // c is now fresh; b and... a are older
        assert_eq!(h.agent_count(), 3);
        h.record("d", READY, 500); // evicts b (last change 100)
        assert_eq!(h.agent_count(), 3);
        assert!(h.current("b").is_none());
        h.record("e", READY, 500); // evicts a (300)
        assert!(h.current("a").is_none());
        // Tie at 500 between d and e; c (400) goes first, then the smaller id (d).
        h.record("f", READY, 600);
        assert!(h.current("c").is_none());
        h.record("g", READY, 600);
        assert!(h.current("d").is_none());
        assert!(h.current("e").is_some());
        let ids: Vec<_> = h.all_metrics(700).into_iter().map(|m| m.user_id).collect();
        assert_eq!(ids, ["e", "f", "g"]);
        // A re-recorded evicted agent starts afresh.
        h.record("b", IDLE, 700);
        assert_eq!(h.current("b").unwrap().previous_state, None);
        assert!(h.current("e").is_none());
    }

    #[test]
    fn all_metrics_are_sorted_by_user_id() {
        let mut h = History::default();
        for u in ["zed", "amy", "mo"] {
            h.record(u, READY, 0);
        }
        let ids: Vec<_> = h.all_metrics(10).into_iter().map(|m| m.user_id).collect();
        assert_eq!(ids, ["amy", "mo", "zed"]);
        assert_eq!(h.agent_count(), 3);
    }
}
