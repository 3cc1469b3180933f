//! Adherence speed: [`agent_adherence`] over many agent-days, against a bare pass over the same timelines.
//!
//! The workload (built once, before any timing, from a fixed seed): `AGENTS` agents, each with one 8-hour
//! shift (starts staggered by 15 minutes), two 15-minute mandatory breaks and a 30-minute mandatory lunch,
//! and for one agent in three a 1-hour training (not a break); and a timeline of exactly 40 state changes:
//! login and logout, going unavailable for each scheduled activity with its code and back (a few minutes
//! early or late, so some of it is Out), and the rest spread over the remaining work time across available,
//! contact, unavailable (with an ad-hoc code) and offline. Each agent-day is computed over the shift plus an
//! hour either side, with the day over (`now` = the window's end).
//!
//! Figures, each printed as agent-days per second:
//!
//! 1. **Adherence, default rules** — `agent_adherence` with `RuleTable::default()`. Target: at least
//!    100,000 agent-days/s native.
//! 2. **Adherence, with code and activity rules** — the same with a table that also has by-code and
//!    by-activity rules (training is In, personal time on break is Neutral), as a tenant would configure it.
//! 3. **Baseline: a bare pass** — one loop over the same timelines that touches every change and sums the
//!    time spent in each actual category over the window: the least any adherence computation must do. The
//!    printed ratio is adherence time ÷ bare-pass time (machines here are noisy, so the ratio against a
//!    baseline measured in the same run means more than the absolute figure alone).
//!
//! Criterion times the three in one group; the summary lines at the end are computed here with `Instant`
//! (median over a few interleaved repetitions, each timed run after a few untimed ones) so they print even
//! under `--quick` or `--test`. Every timed
//! run's totals are checked (In + Out + Neutral must cover each window exactly), so a computation that was
//! skipped or cut short fails the bench.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use cxone_agent_state_core::adherence::{
    agent_adherence, ActualCategory, ActualChange, Adherence, Rule, RuleTable, ScheduledActivity,
    ScheduledCategory, ScheduledShift, Verdict,
};
use cxone_agent_state_core::cxone::normalize_name;

mod common;
use common::median;

const MIN_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MIN_MS;
/// 2026-01-05T08:00:00Z.
const T0: u64 = 1_767_600_000_000;

/// Workload size (a debug build, as in `cargo test --benches`, only smoke-tests the code path on fewer).
const AGENTS: usize = 10_000;
const SHIFT_MS: u64 = 8 * HOUR_MS;
const CHANGES_PER_DAY: usize = 40;
/// Each agent-day's window: the shift plus this much either side.
const MARGIN_MS: u64 = HOUR_MS;
const WINDOW_MS: u64 = SHIFT_MS + 2 * MARGIN_MS;
/// Mandatory breaks: 15 + 30 + 15 minutes; scheduled work is the rest of the shift.
const SCHEDULED_WORK_MS: u64 = SHIFT_MS - 60 * MIN_MS;

/// Untimed runs of a pass before each timed one in the printed summary.
const WARM_UP_RUNS: usize = 3;

const TARGET_AGENT_DAYS_PER_S: f64 = 100_000.0;
const SEED: u64 = 0x00AD_4E2E_0CE5_EED5;

fn agents() -> usize {
    if cfg!(debug_assertions) {
        500
    } else {
        AGENTS
    }
}

// ---- workload ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seeded, good enough to spread a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    /// `t` moved by `[lo_min, hi_min)` minutes, at ms resolution.
    fn around(&mut self, t: u64, lo_min: i64, hi_min: i64) -> u64 {
        let min = MIN_MS as i64;
        let span = ((hi_min - lo_min) * min) as u64;
        t.checked_add_signed(lo_min * min + (self.next() % span) as i64)
            .expect("times stay in range")
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One agent-day: the schedule, the actual timeline and the window.
struct AgentDay {
    shifts: Vec<ScheduledShift>,
    timeline: Vec<ActualChange>,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
}

fn activity(name: &str, start_ms: u64, len_ms: u64, mandatory_break: bool) -> ScheduledActivity {
    ScheduledActivity {
        name: name.to_owned(),
        start_ms,
        end_ms: start_ms + len_ms,
        mandatory_break,
    }
}

fn agent_day(rng: &mut Rng, i: usize) -> AgentDay {
    let start = T0 + (i as u64 % 16) * 15 * MIN_MS;
    let end = start + SHIFT_MS;
    let mut activities = vec![
        activity(
            "Break",
            start + rng.range(120, 150) * MIN_MS,
            15 * MIN_MS,
            true,
        ),
        activity(
            "Lunch",
            start + rng.range(240, 270) * MIN_MS,
            30 * MIN_MS,
            true,
        ),
        activity(
            "Break",
            start + rng.range(390, 410) * MIN_MS,
            15 * MIN_MS,
            true,
        ),
    ];
    if i.is_multiple_of(3) {
        activities.push(activity(
            "Training",
            start + rng.range(305, 320) * MIN_MS,
            HOUR_MS,
            false,
        ));
    }

    let mut changes: Vec<(u64, ActualCategory, Option<&str>)> = Vec::with_capacity(CHANGES_PER_DAY);
    let mut taken = BTreeSet::new();
    let mut push = |changes: &mut Vec<_>, t: u64, category, code| {
        let fresh = taken.insert(t);
        if fresh {
            changes.push((t, category, code));
        }
        fresh
    };
    let fixed = [
        push(
            &mut changes,
            rng.around(start, -5, 5),
            ActualCategory::Available,
            None,
        ),
        push(
            &mut changes,
            rng.around(end, -5, 10),
            ActualCategory::Offline,
            None,
        ),
    ];
    assert!(fixed.into_iter().all(|fresh| fresh));
    // Each scheduled activity: unavailable with its code from up to 2 minutes early to 3 late, back from
    // 1 minute early to 4 late.
    for a in &activities {
        let code = if a.mandatory_break {
            a.name.as_str()
        } else {
            "Training"
        };
        let leave = rng.around(a.start_ms, -2, 3);
        let back = rng.around(a.end_ms, -1, 4);
        // Rarely, someone on a break logs into personal time first.
        let code = if a.mandatory_break && rng.chance(10) {
            "Personal"
        } else {
            code
        };
        let away = push(&mut changes, leave, ActualCategory::Unavailable, Some(code));
        let returned = push(&mut changes, back, ActualCategory::Available, None);
        assert!(away && returned, "activity changes are clear of each other");
    }
    // The rest: spread over work time clear of the activities and of login/logout.
    let codes = ["Adhoc", "Meeting", "Personal", "Coaching"];
    while changes.len() < CHANGES_PER_DAY {
        let t = rng.range(start + 6 * MIN_MS, end - 6 * MIN_MS);
        let clear = activities
            .iter()
            .all(|a| t + 3 * MIN_MS <= a.start_ms || t >= a.end_ms + 5 * MIN_MS);
        if !clear {
            continue;
        }
        let (category, code) = match rng.next() % 100 {
            0..=44 => (ActualCategory::Contact, None),
            45..=79 => (ActualCategory::Available, None),
            80..=94 => (
                ActualCategory::Unavailable,
                Some(codes[rng.next() as usize % codes.len()]),
            ),
            _ => (ActualCategory::Offline, None),
        };
        // A time already taken is simply drawn again.
        push(&mut changes, t, category, code);
    }
    changes.sort_unstable_by_key(|&(t, _, _)| t);
    let timeline = changes
        .into_iter()
        .map(|(at_ms, category, code)| ActualChange {
            at_ms,
            category,
            code: code.map(str::to_owned),
        })
        .collect::<Vec<_>>();
    assert_eq!(timeline.len(), CHANGES_PER_DAY);

    AgentDay {
        shifts: vec![ScheduledShift {
            start_ms: start,
            end_ms: end,
            activities,
        }],
        timeline,
        from_ms: start - MARGIN_MS,
        to_ms: end + MARGIN_MS,
        now_ms: end + MARGIN_MS,
    }
}

fn workload(agents: usize) -> Vec<AgentDay> {
    let mut rng = Rng(SEED);
    (0..agents).map(|i| agent_day(&mut rng, i)).collect()
}

/// The default table plus what a tenant typically adds: training (by code) is In during work, personal time
/// during a break is Neutral, and the "Training" activity (by name, spelled differently) is In when unavailable.
fn configured_rules() -> RuleTable {
    let mut rules = RuleTable::default();
    rules.by_code.insert(
        ScheduledCategory::Work,
        [
            (normalize_name("Training"), Rule::new(Verdict::In)),
            (normalize_name("Coaching"), Rule::new(Verdict::In)),
        ]
        .into(),
    );
    rules.by_code.insert(
        ScheduledCategory::Break,
        [(normalize_name("Personal"), Rule::new(Verdict::Neutral))].into(),
    );
    rules.by_activity.insert(
        "TRAINING".to_owned(),
        [(ActualCategory::Unavailable, Rule::new(Verdict::In))].into(),
    );
    rules
}

// ---- the measured passes ----------------------------------------------------------------------------------

/// What one pass over every agent-day adds up; checked after every timed run.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    days: u64,
    covered_ms: u64,
    in_ms: u64,
    out_ms: u64,
    exceptions: u64,
}

/// `agent_adherence` over every agent-day.
fn adherence_pass(rules: &RuleTable, days: &[AgentDay]) -> Totals {
    let mut t = Totals::default();
    for d in days {
        let a: Adherence = agent_adherence(
            black_box(rules),
            black_box(&d.shifts),
            black_box(&d.timeline),
            d.from_ms,
            d.to_ms,
            d.now_ms,
        );
        t.days += 1;
        t.covered_ms += a.in_ms + a.out_ms + a.neutral_ms;
        t.in_ms += a.in_ms;
        t.out_ms += a.out_ms;
        t.exceptions += a.exceptions.len() as u64;
        black_box(a);
    }
    t
}

/// The baseline: one pass over the same timelines, touching every change, summing the time in each actual
/// category over the window (offline before the first change, as adherence counts it).
fn bare_pass(days: &[AgentDay]) -> Totals {
    let mut t = Totals::default();
    for d in days {
        let timeline = black_box(&d.timeline);
        let end = d.to_ms.min(d.now_ms);
        let mut by_category = [0u64; 4];
        let mut coded = 0u64;
        let (mut prev_t, mut prev_c) = (d.from_ms, ActualCategory::Offline as usize);
        for c in timeline {
            let at = c.at_ms.clamp(d.from_ms, end);
            by_category[prev_c] += at - prev_t;
            prev_t = at;
            prev_c = c.category as usize;
            coded += u64::from(c.code.is_some());
        }
        by_category[prev_c] += end - prev_t;
        let by_category = black_box(by_category);
        t.days += 1;
        t.covered_ms += by_category.iter().sum::<u64>();
        t.exceptions += black_box(coded);
    }
    t
}

/// Every agent-day was computed and each covered its window exactly.
fn check(t: &Totals, agents: usize) {
    assert_eq!(t.days, agents as u64, "every agent-day computed");
    assert_eq!(
        t.covered_ms,
        agents as u64 * WINDOW_MS,
        "In + Out + Neutral (or the bare pass's category times) must cover every window exactly"
    );
}

/// A closer look at the default-rules figures, once, outside any timing: per-agent invariants, and a
/// workload that really exercises both In and Out.
fn check_figures(days: &[AgentDay]) -> (f64, f64) {
    let rules = RuleTable::default();
    let (mut in_ms, mut out_ms, mut exceptions) = (0u64, 0u64, 0usize);
    for d in days {
        let a = agent_adherence(&rules, &d.shifts, &d.timeline, d.from_ms, d.to_ms, d.now_ms);
        assert_eq!(
            a.in_ms + a.out_ms + a.neutral_ms,
            WINDOW_MS,
            "one agent-day's In + Out + Neutral must equal its window"
        );
        assert!(
            a.unruled_ms.is_empty(),
            "the default table names every pair"
        );
        assert_eq!(a.scheduled_work_ms, SCHEDULED_WORK_MS);
        assert!(a.productive_ms <= WINDOW_MS);
        assert_eq!(
            a.out_ms,
            a.out_by_activity_ms.values().sum::<u64>(),
            "Out time is all attributed"
        );
        in_ms += a.in_ms;
        out_ms += a.out_ms;
        exceptions += a.exceptions.len();
    }
    let adherence = in_ms as f64 / (in_ms + out_ms) as f64;
    assert!(
        (0.5..0.99).contains(&adherence),
        "a realistic day is mostly but not wholly in adherence: {adherence}"
    );
    let exceptions = exceptions as f64 / days.len() as f64;
    assert!(exceptions >= 1.0, "exceptions per agent-day: {exceptions}");
    (adherence, exceptions)
}

// ---- criterion group --------------------------------------------------------------------------------------

fn bench_adherence(c: &mut Criterion, days: &[AgentDay]) {
    let default_rules = RuleTable::default();
    let configured = configured_rules();
    let n = days.len();
    let mut g = c.benchmark_group("adherence");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function(
        format!("agent_adherence default rules/{n} agent-days"),
        |b| b.iter(|| adherence_pass(&default_rules, days)),
    );
    g.bench_function(
        format!("agent_adherence code+activity rules/{n} agent-days"),
        |b| b.iter(|| adherence_pass(&configured, days)),
    );
    g.bench_function(format!("bare pass/{n} timelines"), |b| {
        b.iter(|| bare_pass(days))
    });
    g.finish();
}

// ---- printed summary --------------------------------------------------------------------------------------

/// `x` rounded, with thousands separators.
fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn summary(test_mode: bool, days: &[AgentDay]) {
    let reps = if test_mode { 1 } else { 15 };
    let n = days.len();
    let (adherence, exceptions) = check_figures(days);
    println!();
    println!(
        "== adherence summary (median of {reps} interleaved runs, each after {WARM_UP_RUNS} untimed, over {n} \
         agent-days: 8-hour shift, {CHANGES_PER_DAY} state changes, {:.2} exceptions and {:.1}% adherence per agent-day) ==",
        exceptions,
        adherence * 100.0
    );

    let default_rules = RuleTable::default();
    let configured = configured_rules();
    let (mut default_s, mut configured_s, mut bare_s) = (Vec::new(), Vec::new(), Vec::new());
    // Each timed run comes right after `WARM_UP_RUNS` untimed runs of the same pass, so every pass is timed in
    // its steady state, as criterion's back-to-back iterations see it. Straight after an adherence pass the
    // bare pass takes about three runs to get there (here: 2.7, 2.4, 1.3, then 0.9 ms for 10,000 timelines):
    // cache warm-up, not work, and it would otherwise show up as a 3x slower baseline.
    let timed = |secs: &mut Vec<f64>, pass: &dyn Fn() -> Totals| {
        for _ in 0..WARM_UP_RUNS {
            black_box(pass());
        }
        let t = Instant::now();
        let totals = pass();
        secs.push(t.elapsed().as_secs_f64());
        check(&totals, n);
    };
    for _ in 0..reps {
        timed(&mut default_s, &|| adherence_pass(&default_rules, days));
        timed(&mut configured_s, &|| adherence_pass(&configured, days));
        timed(&mut bare_s, &|| bare_pass(days));
    }
    let (default_s, configured_s, bare_s) =
        (median(default_s), median(configured_s), median(bare_s));
    let rate = |s: f64| n as f64 / s;
    let verdict = |s: f64| {
        if cfg!(debug_assertions) {
            "not judged: debug build"
        } else if rate(s) >= TARGET_AGENT_DAYS_PER_S {
            "MET"
        } else {
            "MISSED"
        }
    };
    for (label, secs) in [
        ("default rules", default_s),
        ("code + activity rules", configured_s),
    ] {
        println!(
            "adherence ({label}): {} agent-days/s, {:.2} µs per agent-day (target >= {} agent-days/s: {}); \
             ratio to a bare pass over the same timelines = {:.1}x",
            grouped(rate(secs)),
            secs / n as f64 * 1e6,
            grouped(TARGET_AGENT_DAYS_PER_S),
            verdict(secs),
            secs / bare_s,
        );
    }
    println!(
        "bare pass (every change touched, time per actual category summed): {} agent-days/s, {:.3} µs per \
         agent-day",
        grouped(rate(bare_s)),
        bare_s / n as f64 * 1e6,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // Criterion's rule: `cargo test --benches` (no `--bench`) and `cargo bench -- --test` run in test mode.
    let test_mode = has("--test") || !has("--bench");
    let listing = has("--list");

    let days = workload(agents());
    let mut c = Criterion::default().configure_from_args();
    bench_adherence(&mut c, &days);
    if !listing {
        summary(test_mode, &days);
    }
    c.final_summary();
}
