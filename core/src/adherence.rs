//! Schedule adherence and conformance: pure functions of an agent's schedule and its actual state timeline.
//!
//! Time is cut where either the schedule or the state changes. Each piece has a **scheduled category**
//! (`work`: shift time outside mandatory-break activities; `break`: a mandatory-break activity; `off`:
//! outside every shift) and an **actual category** (`available`, `contact`, `unavailable` with its code,
//! `offline`, which includes any time before the first known state). A [`RuleTable`] maps the pair to In, Out
//! or Neutral with a threshold; the most specific rule wins: by scheduled activity name, then by unavailable
//! code, then by category. A pair no rule names is Neutral and reported as `unruled`.
//!
//! A **stretch of Out** is a run of consecutive Out time; its threshold is that of the rule in effect at its
//! start. Shorter than the threshold, it counts as In; at or over it, it counts as Out for its whole length and
//! is one [`AdherenceException`].
//!
//! Overlapping scheduled activities: a mandatory break wins over work where they overlap; among activities of
//! the same category, the one that started last names the time (a meeting inside a block of phone time).
//!
//! Figures are computed over `[from, min(now, to))`: a shift still running counts up to now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cxone::normalize_name;

/// What the schedule says an agent should be doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScheduledCategory {
    /// Shift time outside mandatory-break activities.
    Work,
    /// A mandatory-break activity.
    Break,
    /// Outside every shift.
    Off,
}

/// What the agent was actually doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActualCategory {
    /// READY (`Available`).
    Available,
    /// On an inbound or outbound contact, a consult or a dialer call.
    Contact,
    /// Not ready, with an unavailable code.
    Unavailable,
    /// Logged out, or not known.
    Offline,
}

/// A rule's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// In adherence.
    In,
    /// Out of adherence (once past the threshold).
    Out,
    /// Counted neither way.
    Neutral,
}

/// One rule: its verdict and how long Out may last before it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// In, Out or Neutral.
    pub verdict: Verdict,
    /// A stretch of Out shorter than this (seconds) counts as In.
    pub threshold_s: u64,
}

impl Rule {
    /// A rule with the default threshold of 60 s.
    pub const fn new(verdict: Verdict) -> Self {
        Self {
            verdict,
            threshold_s: 60,
        }
    }
}

/// The rule table: (scheduled × actual) to a [`Rule`], with more specific rules by activity and by code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTable {
    /// By category pair (the default table when left out).
    #[serde(default = "default_by_category")]
    pub by_category: BTreeMap<ScheduledCategory, BTreeMap<ActualCategory, Rule>>,
    /// By scheduled activity name (normalized: case, `_`, `-` and spaces do not matter), then actual category.
    #[serde(default)]
    pub by_activity: BTreeMap<String, BTreeMap<ActualCategory, Rule>>,
    /// Unavailable time by code (normalized), per scheduled category: "Training" during work may be In.
    #[serde(default)]
    pub by_code: BTreeMap<ScheduledCategory, BTreeMap<String, Rule>>,
}

fn default_by_category() -> BTreeMap<ScheduledCategory, BTreeMap<ActualCategory, Rule>> {
    RuleTable::default().by_category
}

impl Default for RuleTable {
    /// work × available/contact = In, work × unavailable/offline = Out; break × unavailable/offline = In,
    /// break × available/contact = Out; off × anything = Neutral; every threshold 60 s.
    fn default() -> Self {
        use ActualCategory::*;
        use Verdict::*;
        let row = |v: [Verdict; 4]| {
            [Available, Contact, Unavailable, Offline]
                .into_iter()
                .zip(v.map(Rule::new))
                .collect::<BTreeMap<_, _>>()
        };
        let by_category = [
            (ScheduledCategory::Work, row([In, In, Out, Out])),
            (ScheduledCategory::Break, row([Out, Out, In, In])),
            (
                ScheduledCategory::Off,
                row([Neutral, Neutral, Neutral, Neutral]),
            ),
        ]
        .into_iter()
        .collect();
        Self {
            by_category,
            by_activity: BTreeMap::new(),
            by_code: BTreeMap::new(),
        }
    }
}

impl RuleTable {
    /// The rule for a piece of time, or `None` when no rule names it.
    pub fn rule_for(
        &self,
        scheduled: ScheduledCategory,
        activity: Option<&str>,
        actual: ActualCategory,
        code: Option<&str>,
    ) -> Option<Rule> {
        // Keys are compared normalized on both sides, so a table may spell them as the schedule does.
        fn named<'a, V>(map: &'a BTreeMap<String, V>, name: &str) -> Option<&'a V> {
            let wanted = normalize_name(name);
            map.iter()
                .find(|(k, _)| normalize_name(k) == wanted)
                .map(|(_, v)| v)
        }
        let by_activity = activity
            .and_then(|a| named(&self.by_activity, a))
            .and_then(|rules| rules.get(&actual));
        let by_code = || {
            (actual == ActualCategory::Unavailable)
                .then_some(code)
                .flatten()
                .and_then(|c| named(self.by_code.get(&scheduled)?, c))
        };
        let by_category = || self.by_category.get(&scheduled)?.get(&actual);
        by_activity.or_else(by_code).or_else(by_category).copied()
    }
}

/// One scheduled activity inside a shift, `[start_ms, end_ms)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledActivity {
    /// Its name (the schedule's activity title).
    pub name: String,
    /// When it starts (Unix ms, inclusive).
    pub start_ms: u64,
    /// When it ends (Unix ms, exclusive).
    pub end_ms: u64,
    /// Whether it is a mandatory break.
    pub mandatory_break: bool,
}

/// One shift, `[start_ms, end_ms)`, with its activities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledShift {
    /// When it starts (Unix ms, inclusive).
    pub start_ms: u64,
    /// When it ends (Unix ms, exclusive).
    pub end_ms: u64,
    /// Its activities; time no activity covers is work.
    #[serde(default)]
    pub activities: Vec<ScheduledActivity>,
}

/// One change of the actual state: from `at_ms` on, the agent was in `category` (with `code` when unavailable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActualChange {
    /// When (Unix ms).
    pub at_ms: u64,
    /// What the agent did from then on.
    pub category: ActualCategory,
    /// The unavailable code (or the state's name) when unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ActualChange {
    /// Entering `state` at `at_ms`: its category ([`category_of`]) and, for unavailable time, its code
    /// (`code`, else the state's name).
    pub fn entered(at_ms: u64, state: &str, code: Option<&str>) -> Self {
        let category = category_of(state);
        Self {
            at_ms,
            category,
            code: (category == ActualCategory::Unavailable)
                .then(|| code.unwrap_or(state).to_owned()),
        }
    }
}

/// One exception: a stretch of Out at or over its threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdherenceException {
    /// Start (Unix ms).
    pub start_ms: u64,
    /// End (Unix ms, exclusive).
    pub end_ms: u64,
    /// `end_ms − start_ms`.
    pub duration_ms: u64,
    /// The scheduled category at its start.
    pub scheduled: ScheduledCategory,
    /// The scheduled activity at its start, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// The actual category at its start.
    pub actual: ActualCategory,
    /// The unavailable code at its start, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// An agent's (or a team's) adherence over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Adherence {
    /// Time In (ms), short Out stretches included.
    pub in_ms: u64,
    /// Time Out (ms): stretches at or over their threshold.
    pub out_ms: u64,
    /// Neutral time (ms), unruled time included.
    pub neutral_ms: u64,
    /// Time no rule named (ms), by scheduled activity (or category name when no activity).
    pub unruled_ms: BTreeMap<String, u64>,
    /// Scheduled work time elapsed in the window (ms).
    pub scheduled_work_ms: u64,
    /// Time available or on a contact, anywhere in the window (ms).
    pub productive_ms: u64,
    /// Time available or on a contact outside every shift (ms).
    pub work_outside_shift_ms: u64,
    /// Time out of adherence by scheduled activity (or category name when no activity).
    pub out_by_activity_ms: BTreeMap<String, u64>,
    /// The exceptions, in time order.
    pub exceptions: Vec<AdherenceException>,
}

impl Adherence {
    /// In ÷ (In + Out), 0 to 1; `None` when nothing was In or Out.
    pub fn adherence(&self) -> Option<f64> {
        let total = self.in_ms + self.out_ms;
        (total > 0).then(|| self.in_ms as f64 / total as f64)
    }

    /// Productive time ÷ scheduled work time (may exceed 1); `None` without scheduled work.
    pub fn conformance(&self) -> Option<f64> {
        (self.scheduled_work_ms > 0)
            .then(|| self.productive_ms as f64 / self.scheduled_work_ms as f64)
    }

    /// Adds another agent's figures (a team's figures are the sums).
    pub fn add(&mut self, other: &Adherence) {
        self.in_ms += other.in_ms;
        self.out_ms += other.out_ms;
        self.neutral_ms += other.neutral_ms;
        self.scheduled_work_ms += other.scheduled_work_ms;
        self.productive_ms += other.productive_ms;
        self.work_outside_shift_ms += other.work_outside_shift_ms;
        for (k, v) in &other.unruled_ms {
            *self.unruled_ms.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.out_by_activity_ms {
            *self.out_by_activity_ms.entry(k.clone()).or_default() += v;
        }
        self.exceptions.extend(other.exceptions.iter().cloned());
        self.exceptions.sort_by_key(|e| (e.start_ms, e.end_ms));
    }
}

/// Everything one agent's adherence is computed from, as the vectors and the bindings give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdherenceInput {
    /// The rule table (the default when left out).
    #[serde(default)]
    pub rules: RuleTable,
    /// The agent's shifts.
    #[serde(default)]
    pub shifts: Vec<ScheduledShift>,
    /// The agent's actual state changes, in time order.
    #[serde(default)]
    pub timeline: Vec<ActualChange>,
    /// The window's start (Unix ms).
    pub from_ms: u64,
    /// The window's end (Unix ms, exclusive).
    pub to_ms: u64,
    /// Now (Unix ms): nothing after it counts.
    pub now_ms: u64,
}

/// The figures with the two ratios spelled out, as the vectors and the bindings give them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdherenceFigures {
    /// In ÷ (In + Out); `null` when undefined.
    pub adherence: Option<f64>,
    /// Productive ÷ scheduled work; `null` when undefined.
    pub conformance: Option<f64>,
    /// The times and exceptions.
    #[serde(flatten)]
    pub totals: Adherence,
}

impl AdherenceInput {
    /// Computes the figures.
    pub fn compute(&self) -> AdherenceFigures {
        let totals = agent_adherence(
            &self.rules,
            &self.shifts,
            &self.timeline,
            self.from_ms,
            self.to_ms,
            self.now_ms,
        );
        AdherenceFigures {
            adherence: totals.adherence(),
            conformance: totals.conformance(),
            totals,
        }
    }
}

/// What the schedule says at one instant: the category and the naming activity.
fn scheduled_at(shifts: &[ScheduledShift], t: u64) -> (ScheduledCategory, Option<&str>) {
    let Some(shift) = shifts.iter().find(|s| s.start_ms <= t && t < s.end_ms) else {
        return (ScheduledCategory::Off, None);
    };
    let covering = |mandatory: bool| {
        shift
            .activities
            .iter()
            .filter(|a| a.mandatory_break == mandatory && a.start_ms <= t && t < a.end_ms)
            .max_by_key(|a| a.start_ms)
    };
    match covering(true) {
        Some(a) => (ScheduledCategory::Break, Some(a.name.as_str())),
        None => (
            ScheduledCategory::Work,
            covering(false).map(|a| a.name.as_str()),
        ),
    }
}

/// One piece of time with everything constant.
struct Piece<'a> {
    start: u64,
    end: u64,
    scheduled: ScheduledCategory,
    activity: Option<&'a str>,
    actual: ActualCategory,
    code: Option<&'a str>,
    rule: Option<Rule>,
}

impl Piece<'_> {
    fn label(&self) -> String {
        match self.activity {
            Some(a) => a.to_owned(),
            None => format!("{:?}", self.scheduled).to_lowercase(),
        }
    }
}

/// One agent's adherence over `[from_ms, min(now_ms, to_ms))`. `timeline` is in time order; before its first
/// change the agent counts as offline.
pub fn agent_adherence(
    rules: &RuleTable,
    shifts: &[ScheduledShift],
    timeline: &[ActualChange],
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Adherence {
    let end = to_ms.min(now_ms);
    let mut out = Adherence::default();
    if end <= from_ms {
        return out;
    }
    // Every instant where something may change.
    let mut cuts: Vec<u64> = vec![from_ms, end];
    for s in shifts {
        cuts.extend([s.start_ms, s.end_ms]);
        for a in &s.activities {
            cuts.extend([a.start_ms, a.end_ms]);
        }
    }
    cuts.extend(timeline.iter().map(|c| c.at_ms));
    cuts.retain(|&t| t >= from_ms && t <= end);
    cuts.sort_unstable();
    cuts.dedup();

    // The timeline is in time order: the change in effect at `t` is found by binary search.
    let actual_at = |t: u64| match timeline.partition_point(|c| c.at_ms <= t) {
        0 => (ActualCategory::Offline, None),
        n => (timeline[n - 1].category, timeline[n - 1].code.as_deref()),
    };
    let pieces: Vec<Piece<'_>> = cuts
        .windows(2)
        .map(|w| {
            let (scheduled, activity) = scheduled_at(shifts, w[0]);
            let (actual, code) = actual_at(w[0]);
            Piece {
                start: w[0],
                end: w[1],
                scheduled,
                activity,
                actual,
                code,
                rule: rules.rule_for(scheduled, activity, actual, code),
            }
        })
        .collect();

    for p in &pieces {
        let span = p.end - p.start;
        if p.scheduled == ScheduledCategory::Work {
            out.scheduled_work_ms += span;
        }
        if matches!(
            p.actual,
            ActualCategory::Available | ActualCategory::Contact
        ) {
            out.productive_ms += span;
            if p.scheduled == ScheduledCategory::Off {
                out.work_outside_shift_ms += span;
            }
        }
    }
    // A run of Out pieces is judged as one stretch, by the threshold of the rule at its start.
    let mut i = 0;
    while i < pieces.len() {
        let p = &pieces[i];
        let span = p.end - p.start;
        match p.rule.map(|r| r.verdict) {
            None => {
                out.neutral_ms += span;
                *out.unruled_ms.entry(p.label()).or_default() += span;
                i += 1;
            }
            Some(Verdict::Neutral) => {
                out.neutral_ms += span;
                i += 1;
            }
            Some(Verdict::In) => {
                out.in_ms += span;
                i += 1;
            }
            Some(Verdict::Out) => {
                let mut j = i + 1;
                while j < pieces.len() && pieces[j].rule.map(|r| r.verdict) == Some(Verdict::Out) {
                    j += 1;
                }
                let run = &pieces[i..j];
                let length = run[run.len() - 1].end - p.start;
                let threshold_ms = p.rule.map_or(0, |r| r.threshold_s.saturating_mul(1000));
                if length < threshold_ms {
                    out.in_ms += length;
                } else {
                    out.out_ms += length;
                    for q in run {
                        *out.out_by_activity_ms.entry(q.label()).or_default() += q.end - q.start;
                    }
                    out.exceptions.push(AdherenceException {
                        start_ms: p.start,
                        end_ms: p.start + length,
                        duration_ms: length,
                        scheduled: p.scheduled,
                        activity: p.activity.map(str::to_owned),
                        actual: p.actual,
                        code: p.code.map(str::to_owned),
                    });
                }
                i = j;
            }
        }
    }
    out
}

/// The actual category of a state as the history and the audit log name it: READY is available; the
/// contact states (`INBOUND_CONTACT`, `OUTBOUND_CONTACT`, the consults, `DIALER`) are a contact;
/// `LOGGED_OUT` is offline; every other state (NOT_READY, PAUSED, IDLE, a session with no state yet, an
/// unavailable code's state) is unavailable.
pub fn category_of(state: &str) -> ActualCategory {
    use crate::observe::{CONTACT_STATES, LOGGED_OUT};
    if state == crate::state::READY {
        ActualCategory::Available
    } else if CONTACT_STATES.contains(&state) {
        ActualCategory::Contact
    } else if state == LOGGED_OUT {
        ActualCategory::Offline
    } else {
        ActualCategory::Unavailable
    }
}

/// One agent's figures in a team report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentAdherence {
    /// The agent.
    pub user_id: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: AdherenceFigures,
}

/// The team's adherence over one step of the day (the curve).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurvePoint {
    /// The step's start (Unix ms).
    pub from_ms: u64,
    /// The step's end (Unix ms, exclusive).
    pub to_ms: u64,
    /// The team's adherence over the step; `null` when nothing was In or Out in it.
    pub adherence: Option<f64>,
}

/// Adherence and conformance per agent and for the team, over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdherenceReport {
    /// The window's start (Unix ms).
    pub from_ms: u64,
    /// The window's end (Unix ms, exclusive).
    pub to_ms: u64,
    /// Time is counted up to here (Unix ms).
    pub now_ms: u64,
    /// The team: the sums of its agents' times (its `exceptions` are left empty: see each agent's, and
    /// `exceptionCount`).
    pub team: Option<AdherenceFigures>,
    /// The team's exceptions.
    pub exception_count: u64,
    /// Each agent with a schedule or a timeline, by user id.
    pub agents: Vec<AgentAdherence>,
    /// The team's adherence per step of [`AdherenceWindow::step_ms`] through the window.
    pub curve: Vec<CurvePoint>,
}

/// The window a team report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdherenceWindow {
    /// Start (Unix ms).
    pub from_ms: u64,
    /// End (Unix ms, exclusive).
    pub to_ms: u64,
    /// Time is counted up to here.
    pub now_ms: u64,
    /// The curve's step (ms); one hour by default.
    pub step_ms: u64,
}

impl AdherenceWindow {
    /// The span of the schedules (the earliest shift start to the latest shift end), counted whole: how a
    /// report rebuilt after the day reads a log (and how a simulated day reports itself, so both agree).
    /// `None` when there are no shifts.
    pub fn of_schedules<'a>(
        schedules: impl IntoIterator<Item = &'a Vec<ScheduledShift>>,
    ) -> Option<Self> {
        let mut span: Option<(u64, u64)> = None;
        for s in schedules.into_iter().flatten() {
            span = Some(match span {
                None => (s.start_ms, s.end_ms),
                Some((a, b)) => (a.min(s.start_ms), b.max(s.end_ms)),
            });
        }
        span.map(|(from_ms, to_ms)| Self {
            from_ms,
            to_ms,
            now_ms: to_ms,
            step_ms: 3_600_000,
        })
    }
}

impl AdherenceWindow {
    /// This window with another start and end where given (time is then counted up to the end).
    pub fn bounded(self, from_ms: Option<u64>, to_ms: Option<u64>) -> Self {
        let to_ms = to_ms.unwrap_or(self.to_ms);
        Self {
            from_ms: from_ms.unwrap_or(self.from_ms),
            to_ms,
            now_ms: to_ms,
            ..self
        }
    }
}

/// Adherence per agent and for the team: every agent with a schedule or a timeline (an agent with a
/// timeline and no schedule is all `off`; one with a schedule and no timeline is offline throughout).
/// Timelines need not be sorted.
pub fn team_report(
    rules: &RuleTable,
    schedules: &BTreeMap<String, Vec<ScheduledShift>>,
    timelines: &BTreeMap<String, Vec<ActualChange>>,
    window: AdherenceWindow,
) -> AdherenceReport {
    let mut users: Vec<&String> = schedules.keys().chain(timelines.keys()).collect();
    users.sort();
    users.dedup();
    let none_scheduled: Vec<ScheduledShift> = Vec::new();
    let no_changes: Vec<ActualChange> = Vec::new();
    let sorted: BTreeMap<&String, Vec<ActualChange>> = timelines
        .iter()
        .map(|(u, t)| {
            let mut t = t.clone();
            t.sort_by_key(|c| c.at_ms);
            (u, t)
        })
        .collect();
    let mut team = Adherence::default();
    let mut exception_count = 0u64;
    let mut agents = Vec::with_capacity(users.len());
    let steps = window
        .to_ms
        .saturating_sub(window.from_ms)
        .div_ceil(window.step_ms.max(1));
    let mut curve_totals = vec![(0u64, 0u64); steps as usize];
    for user in users {
        let shifts = schedules.get(user).unwrap_or(&none_scheduled);
        let timeline = sorted.get(user).unwrap_or(&no_changes);
        let totals = agent_adherence(
            rules,
            shifts,
            timeline,
            window.from_ms,
            window.to_ms,
            window.now_ms,
        );
        exception_count += totals.exceptions.len() as u64;
        team.add(&Adherence {
            exceptions: Vec::new(),
            ..totals.clone()
        });
        for (k, point) in curve_totals.iter_mut().enumerate() {
            let from = window.from_ms + k as u64 * window.step_ms;
            let to = (from + window.step_ms).min(window.to_ms);
            let part = agent_adherence(rules, shifts, timeline, from, to, window.now_ms);
            point.0 += part.in_ms;
            point.1 += part.out_ms;
        }
        agents.push(AgentAdherence {
            user_id: user.clone(),
            figures: AdherenceFigures {
                adherence: totals.adherence(),
                conformance: totals.conformance(),
                totals,
            },
        });
    }
    let curve = curve_totals
        .iter()
        .enumerate()
        .map(|(k, &(in_ms, out_ms))| {
            let from_ms = window.from_ms + k as u64 * window.step_ms;
            CurvePoint {
                from_ms,
                to_ms: (from_ms + window.step_ms).min(window.to_ms),
                adherence: (in_ms + out_ms > 0).then(|| in_ms as f64 / (in_ms + out_ms) as f64),
            }
        })
        .collect();
    AdherenceReport {
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        now_ms: window.now_ms,
        team: (!agents.is_empty()).then(|| AdherenceFigures {
            adherence: team.adherence(),
            conformance: team.conformance(),
            totals: team,
        }),
        exception_count,
        agents,
        curve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const T0: u64 = 1_767_600_000_000;

    fn shift(start: u64, end: u64, activities: Vec<ScheduledActivity>) -> ScheduledShift {
        ScheduledShift {
            start_ms: T0 + start * MIN,
            end_ms: T0 + end * MIN,
            activities,
        }
    }
    fn activity(name: &str, start: u64, end: u64, mandatory_break: bool) -> ScheduledActivity {
        ScheduledActivity {
            name: name.into(),
            start_ms: T0 + start * MIN,
            end_ms: T0 + end * MIN,
            mandatory_break,
        }
    }
    fn at(minute: u64, category: ActualCategory, code: Option<&str>) -> ActualChange {
        ActualChange {
            at_ms: T0 + minute * MIN,
            category,
            code: code.map(str::to_owned),
        }
    }
    fn run(
        shifts: &[ScheduledShift],
        timeline: &[ActualChange],
        from: u64,
        to: u64,
        now: u64,
    ) -> Adherence {
        agent_adherence(
            &RuleTable::default(),
            shifts,
            timeline,
            T0 + from * MIN,
            T0 + to * MIN,
            T0 + now * MIN,
        )
    }
    use ActualCategory::*;

    #[test]
    fn a_day_by_hand() {
        // Shift 0–120 with a break 60–75. Ready at 0; unavailable (Adhoc) 20–20.5 (under the threshold);
        // unavailable 30–40 (an exception); still available at 60 (5 min into the break, an exception);
        // on break 65–75; available after.
        let shifts = [shift(0, 120, vec![activity("Lunch", 60, 75, true)])];
        let timeline = [
            at(0, Available, None),
            at(20, Unavailable, Some("Adhoc")),
            ActualChange {
                at_ms: T0 + 20 * MIN + 30_000,
                category: Available,
                code: None,
            },
            at(30, Unavailable, Some("Adhoc")),
            at(40, Available, None),
            at(65, Unavailable, Some("Lunch")),
            at(75, Available, None),
        ];
        let a = run(&shifts, &timeline, 0, 120, 200);
        assert_eq!(a.out_ms, 10 * MIN + 5 * MIN);
        assert_eq!(a.in_ms, 120 * MIN - 15 * MIN);
        assert_eq!(a.neutral_ms, 0);
        assert_eq!(a.exceptions.len(), 2);
        assert_eq!(a.exceptions[0].start_ms, T0 + 30 * MIN);
        assert_eq!(a.exceptions[0].code.as_deref(), Some("Adhoc"));
        assert_eq!(a.exceptions[1].scheduled, ScheduledCategory::Break);
        assert_eq!(a.exceptions[1].activity.as_deref(), Some("Lunch"));
        assert_eq!(a.adherence(), Some(105.0 / 120.0));
        assert_eq!(a.scheduled_work_ms, 105 * MIN);
        // Available 0–20, 20.5–30, 40–65, 75–120 = 20 + 9.5 + 25 + 45 minutes.
        assert_eq!(a.productive_ms, 99 * MIN + 30_000);
        assert_eq!(a.out_by_activity_ms["work"], 10 * MIN);
        assert_eq!(a.out_by_activity_ms["Lunch"], 5 * MIN);
    }

    #[test]
    fn zero_scheduled_time_is_undefined_not_zero() {
        let a = run(&[], &[at(0, Available, None)], 0, 60, 60);
        assert_eq!(a.adherence(), None);
        assert_eq!(a.conformance(), None);
        assert_eq!(a.neutral_ms, 60 * MIN);
        assert_eq!(a.work_outside_shift_ms, 60 * MIN);
    }

    #[test]
    fn a_shift_still_running_counts_up_to_now() {
        let shifts = [shift(0, 480, vec![])];
        let a = run(&shifts, &[at(0, Available, None)], 0, 480, 90);
        assert_eq!(a.in_ms, 90 * MIN);
        assert_eq!(a.scheduled_work_ms, 90 * MIN);
        assert_eq!(a.conformance(), Some(1.0));
    }

    #[test]
    fn work_outside_the_shift_is_reported_and_conformance_may_exceed_one() {
        let shifts = [shift(60, 120, vec![])];
        let a = run(&shifts, &[at(30, Available, None)], 0, 150, 150);
        assert_eq!(a.work_outside_shift_ms, 60 * MIN);
        assert_eq!(a.scheduled_work_ms, 60 * MIN);
        assert_eq!(a.conformance(), Some(2.0));
        assert_eq!(a.adherence(), Some(1.0));
    }

    #[test]
    fn an_agent_with_no_history_is_offline_and_out() {
        let shifts = [shift(0, 60, vec![])];
        let a = run(&shifts, &[], 0, 60, 60);
        assert_eq!(a.out_ms, 60 * MIN);
        assert_eq!(a.exceptions.len(), 1);
        assert_eq!(a.exceptions[0].actual, Offline);
        assert_eq!(a.adherence(), Some(0.0));
    }

    #[test]
    fn a_timeline_that_starts_mid_shift_is_offline_before() {
        let shifts = [shift(0, 60, vec![])];
        let a = run(&shifts, &[at(30, Available, None)], 0, 60, 60);
        assert_eq!((a.out_ms, a.in_ms), (30 * MIN, 30 * MIN));
    }

    #[test]
    fn overlapping_activities_the_break_wins_then_the_latest() {
        let shifts = [shift(
            0,
            60,
            vec![
                activity("Phone", 0, 60, false),
                activity("Meeting", 10, 20, false),
                activity("Break", 15, 30, true),
            ],
        )];
        assert_eq!(
            scheduled_at(&shifts, T0 + 12 * MIN),
            (ScheduledCategory::Work, Some("Meeting"))
        );
        assert_eq!(
            scheduled_at(&shifts, T0 + 16 * MIN),
            (ScheduledCategory::Break, Some("Break"))
        );
        assert_eq!(
            scheduled_at(&shifts, T0 + 40 * MIN),
            (ScheduledCategory::Work, Some("Phone"))
        );
    }

    #[test]
    fn an_unruled_pair_is_neutral_and_reported() {
        let mut rules = RuleTable::default();
        rules
            .by_category
            .get_mut(&ScheduledCategory::Work)
            .unwrap()
            .remove(&Contact);
        let shifts = [shift(0, 60, vec![])];
        let a = agent_adherence(
            &rules,
            &shifts,
            &[
                at(0, Available, None),
                at(10, Contact, None),
                at(40, Available, None),
            ],
            T0,
            T0 + 60 * MIN,
            T0 + 60 * MIN,
        );
        assert_eq!(a.neutral_ms, 30 * MIN);
        assert_eq!(a.unruled_ms["work"], 30 * MIN);
        assert_eq!(a.in_ms, 30 * MIN);
    }

    #[test]
    fn rules_by_code_and_by_activity_are_more_specific() {
        let mut rules = RuleTable::default();
        rules.by_code.insert(
            ScheduledCategory::Work,
            [(normalize_name("Training"), Rule::new(Verdict::In))].into(),
        );
        rules.by_activity.insert(
            normalize_name("Team_Meeting"),
            [(Offline, Rule::new(Verdict::Neutral))].into(),
        );
        let shifts = [shift(0, 60, vec![activity("Team Meeting", 30, 60, false)])];
        let a = agent_adherence(
            &rules,
            &shifts,
            &[at(0, Unavailable, Some("TRAINING")), at(30, Offline, None)],
            T0,
            T0 + 60 * MIN,
            T0 + 60 * MIN,
        );
        assert_eq!((a.in_ms, a.out_ms, a.neutral_ms), (30 * MIN, 0, 30 * MIN));
    }

    #[test]
    fn a_stretch_at_the_threshold_is_out_one_under_is_in() {
        let shifts = [shift(0, 60, vec![])];
        let with = |secs: u64| {
            let back = T0 + 10 * MIN + secs * 1000;
            run(
                &shifts,
                &[
                    at(0, Available, None),
                    at(10, Unavailable, Some("Adhoc")),
                    ActualChange {
                        at_ms: back,
                        category: Available,
                        code: None,
                    },
                ],
                0,
                60,
                60,
            )
        };
        assert_eq!(with(59).out_ms, 0);
        assert_eq!(with(60).out_ms, 60_000);
        assert_eq!(with(60).exceptions.len(), 1);
    }

    #[test]
    fn a_team_is_the_sum_of_its_agents() {
        let shifts = [shift(0, 60, vec![])];
        let a = run(&shifts, &[at(0, Available, None)], 0, 60, 60);
        let b = run(&shifts, &[at(0, Offline, None)], 0, 60, 60);
        let mut team = Adherence::default();
        team.add(&a);
        team.add(&b);
        assert_eq!(team.adherence(), Some(0.5));
        assert_eq!(team.exceptions.len(), 1);
    }

    #[test]
    fn states_map_to_one_category_each() {
        assert_eq!(category_of("READY"), Available);
        for contact in crate::observe::CONTACT_STATES {
            assert_eq!(category_of(contact), Contact);
        }
        assert_eq!(category_of("LOGGED_OUT"), Offline);
        for other in ["NOT_READY", "PAUSED", "IDLE", "LOGGED_IN", "TRAINING"] {
            assert_eq!(category_of(other), Unavailable, "{other}");
        }
    }

    #[test]
    fn a_team_report_sums_its_agents_and_draws_a_curve() {
        // Two agents on 0–120 with a break 60–75; one adheres, one is unavailable 30–50 (an exception);
        // a third has a timeline and no schedule (all off: neutral).
        let day = vec![shift(0, 120, vec![activity("Lunch", 60, 75, true)])];
        let good = vec![
            at(0, Available, None),
            at(60, Unavailable, Some("Lunch")),
            at(75, Available, None),
        ];
        let mut bad = good.clone();
        bad.push(at(30, Unavailable, Some("Adhoc")));
        bad.push(at(50, Available, None));
        let schedules: BTreeMap<String, Vec<ScheduledShift>> =
            [("a".to_owned(), day.clone()), ("b".to_owned(), day)].into();
        let timelines: BTreeMap<String, Vec<ActualChange>> = [
            ("a".to_owned(), good),
            ("b".to_owned(), bad), // unsorted: the report sorts
            ("c".to_owned(), vec![at(0, Available, None)]),
        ]
        .into();
        let window = AdherenceWindow {
            from_ms: T0,
            to_ms: T0 + 120 * MIN,
            now_ms: T0 + 120 * MIN,
            step_ms: 60 * MIN,
        };
        let r = team_report(&RuleTable::default(), &schedules, &timelines, window);
        let users: Vec<&str> = r.agents.iter().map(|a| a.user_id.as_str()).collect();
        assert_eq!(users, ["a", "b", "c"]);
        let (a, b, c) = (
            &r.agents[0].figures,
            &r.agents[1].figures,
            &r.agents[2].figures,
        );
        assert_eq!(a.adherence, Some(1.0));
        assert_eq!(b.totals.out_ms, 20 * MIN);
        assert_eq!(b.totals.exceptions.len(), 1);
        assert_eq!(c.adherence, None, "no scheduled time: undefined, not 0");
        assert_eq!(c.totals.work_outside_shift_ms, 120 * MIN);
        let team = r.team.as_ref().unwrap();
        assert_eq!(team.totals.in_ms, a.totals.in_ms + b.totals.in_ms);
        assert_eq!(team.totals.out_ms, 20 * MIN);
        assert!(team.totals.exceptions.is_empty());
        assert_eq!(r.exception_count, 1);
        assert_eq!(team.adherence, Some(1.0 - 20.0 / 240.0));
        // The curve: the first hour holds the exception, the second is all In.
        assert_eq!(r.curve.len(), 2);
        assert_eq!(r.curve[0].adherence, Some(1.0 - 20.0 / 120.0));
        assert_eq!(r.curve[1].adherence, Some(1.0));
        assert_eq!(
            AdherenceWindow::of_schedules(schedules.values()).map(|w| (w.from_ms, w.to_ms)),
            Some((T0, T0 + 120 * MIN))
        );
    }
}
