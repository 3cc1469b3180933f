//! Engine speed, measured against the in-process simulated tenant.
//!
//! Two figures, each printed with a ratio against a baseline measured in the same process run (these machines
//! are noisy, so absolute figures alone mean little):
//!
//! 1. **Engine throughput** — 2,000 NOT_READY/READY transitions over 500 on-shift agents, with a rate limit
//!    so high that pacing never holds a request back (virtual time is free; wall time is what counts).
//!    Baseline: a fresh tenant answering exactly the requests the engine sent in that run (captured once with
//!    `record_requests`), at the same virtual times, with no engine and no harness. The ratio shows what the
//!    engine (plus the harness's event queue) costs on top of bare request handling.
//! 2. **A 1,000-agent, 8-hour simulated day** — `DayRun::new` + `run`, the job of `simulate`. Target: under
//!    1 s wall. Baseline: generating the same workday plus a fresh tenant replaying that day's captured
//!    request stream: the work any simulation of that day must do whatever the engine. The ratio shows the
//!    engine's (and harness's) share on top of it.
//!
//! Criterion times each of the four in its groups; the summary lines at the end are computed here with
//! `Instant` (median over a few interleaved repetitions) so they print even under `--quick` or `--test`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use cxone_agent_state_core::sim::{
    AgentPlan, Command, DayRun, Harness, SimConfig, SimTenant, Workday, WorkdayConfig,
    WORKDAY_EPOCH_MS,
};
use cxone_agent_state_core::{Engine, Event, HttpRequest, NOT_READY, READY};

mod common;
use common::median;

const T0: u64 = WORKDAY_EPOCH_MS;
const HOUR_MS: u64 = 3_600_000;

/// Throughput workload: this many transitions …
const TRANSITIONS: usize = 2_000;
/// … spread round-robin over this many agents …
const AGENTS: usize = 500;
/// … one every this many virtual ms (an agent's next change comes 2.5 s after its last: no per-agent queueing).
const COMMAND_SPACING_MS: u64 = 5;
/// High enough that neither the engine's pacer nor the tenant's bucket ever holds anything back.
const HIGH_RATE_PER_MINUTE: u32 = 10_000_000;

/// Day workload size and target.
const DAY_AGENTS: usize = 1_000;
const DAY_TARGET: Duration = Duration::from_secs(1);

// ---- throughput workload ----------------------------------------------------------------------------------

fn user(i: usize) -> String {
    format!("agent-{:04}", i + 1)
}

fn tenant_config() -> SimConfig {
    SimConfig {
        rate_per_minute: HIGH_RATE_PER_MINUTE,
        burst: HIGH_RATE_PER_MINUTE,
        ..SimConfig::default()
    }
}

/// A tenant knowing `AGENTS` agents on shift all day, with no breaks and no faults.
fn throughput_tenant() -> SimTenant {
    let mut tenant = SimTenant::new(tenant_config());
    for i in 0..AGENTS {
        tenant.add_agent(AgentPlan::on_shift(
            user(i),
            T0 - HOUR_MS,
            T0 + 10 * HOUR_MS,
        ));
    }
    tenant
}

/// Engine + tenant + the `TRANSITIONS` commands scheduled on the virtual clock; nothing run yet.
fn throughput_harness() -> Harness {
    let sim = tenant_config();
    let config = Harness::engine_config_for_tenant(&sim, 7);
    let engine = Engine::new(config).expect("valid engine config");
    let mut h = Harness::new(engine, throughput_tenant(), T0);
    for i in 0..TRANSITIONS {
        // Rounds alternate NOT_READY, READY, NOT_READY, … for every agent.
        let state = if (i / AGENTS).is_multiple_of(2) {
            NOT_READY
        } else {
            READY
        };
        h.command_at(
            T0 + i as u64 * COMMAND_SPACING_MS,
            Command::Transition {
                user_id: user(i % AGENTS),
                state: state.to_owned(),
            },
        );
    }
    h
}

/// Runs the throughput workload once, checks it did what it should, and returns the requests it sent.
fn capture_throughput_requests() -> Vec<(u64, HttpRequest)> {
    let mut h = throughput_harness();
    h.record_requests(true);
    h.drive().expect("throughput workload quiesces");
    let changed = h
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::StateChanged(_)))
        .count();
    assert_eq!(changed, TRANSITIONS, "every transition should succeed");
    assert_eq!(h.tenant.ground_truth().rate_limited, 0, "no 429s expected");
    h.requests().to_vec()
}

/// The baseline: the tenant alone answering the captured requests at their virtual times.
fn replay(tenant: &mut SimTenant, requests: &[(u64, HttpRequest)]) {
    for (at_ms, request) in requests {
        black_box(tenant.handle_request(*at_ms, request));
    }
}

// ---- day workload -----------------------------------------------------------------------------------------

/// A debug build (`cargo test --benches`) only smoke-tests the code path, on a smaller day.
fn day_agents() -> usize {
    if cfg!(debug_assertions) {
        100
    } else {
        DAY_AGENTS
    }
}

fn day_config(agents: usize) -> WorkdayConfig {
    WorkdayConfig {
        agents,
        ..Default::default()
    }
}

/// The measured job: generate the day, build engine + harness, run it to the end.
fn run_day(config: &WorkdayConfig) -> DayRun {
    let mut run = DayRun::new(config).expect("valid day config");
    run.run(|_, _| {}).expect("the day quiesces");
    run
}

/// Runs the day once with request recording on and returns its request stream, after checking that a bare
/// tenant replaying it ends with the same ground truth (so the baseline really does the tenant's share).
fn capture_day_requests(config: &WorkdayConfig) -> Vec<(u64, HttpRequest)> {
    let mut run = DayRun::new(config).expect("valid day config");
    run.harness_mut().record_requests(true);
    run.run(|_, _| {}).expect("the day quiesces");
    let requests = run.harness().requests().to_vec();
    let mut tenant = day_tenant(&Workday::generate(config));
    replay(&mut tenant, &requests);
    assert_eq!(
        tenant.ground_truth(),
        run.harness().tenant.ground_truth(),
        "replaying the captured requests should reproduce the tenant's day"
    );
    requests
}

fn day_tenant(day: &Workday) -> SimTenant {
    let mut tenant = SimTenant::new(day.tenant.clone());
    for a in &day.agents {
        tenant.add_agent(a.clone());
    }
    tenant
}

/// The day baseline: generate the workday, build its tenant, replay the day's request stream.
fn day_baseline(config: &WorkdayConfig, requests: &[(u64, HttpRequest)]) -> (Workday, SimTenant) {
    let day = Workday::generate(config);
    let mut tenant = day_tenant(&day);
    replay(&mut tenant, requests);
    (day, tenant)
}

// ---- criterion groups -------------------------------------------------------------------------------------

fn bench_throughput(c: &mut Criterion) {
    // Captured on first use, so `--list` and filtered-out runs skip it.
    let requests = OnceCell::new();
    let mut g = c.benchmark_group("throughput");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(TRANSITIONS as u64));
    g.bench_function("engine+tenant/2000 transitions, 500 agents", |b| {
        b.iter_batched(
            throughput_harness,
            |mut h| {
                h.drive().expect("quiesces");
                h
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("tenant alone/same requests", |b| {
        let requests = requests.get_or_init(capture_throughput_requests);
        b.iter_batched(
            throughput_tenant,
            |mut t| {
                replay(&mut t, requests);
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_day(c: &mut Criterion) {
    let config = day_config(day_agents());
    let requests = OnceCell::new();
    let mut g = c.benchmark_group("day");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function(format!("DayRun {} agents 8 h", config.agents), |b| {
        b.iter(|| run_day(black_box(&config)))
    });
    g.bench_function("baseline: generate + tenant replay", |b| {
        let requests = requests.get_or_init(|| capture_day_requests(&config));
        b.iter(|| day_baseline(black_box(&config), requests))
    });
    g.finish();
}

// ---- printed summary --------------------------------------------------------------------------------------

/// Times `run_a` and `run_b` (their setup and the drop of what they return stay off the clock), alternating
/// them so drift on a noisy machine hits both alike; returns both medians in seconds.
fn interleaved<A, RA, B, RB>(
    reps: usize,
    mut setup_a: impl FnMut() -> A,
    mut run_a: impl FnMut(A) -> RA,
    mut setup_b: impl FnMut() -> B,
    mut run_b: impl FnMut(B) -> RB,
) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let input = setup_a();
        let t = Instant::now();
        let out = run_a(input);
        a.push(t.elapsed().as_secs_f64());
        drop(black_box(out));
        let input = setup_b();
        let t = Instant::now();
        let out = run_b(input);
        b.push(t.elapsed().as_secs_f64());
        drop(black_box(out));
    }
    (median(a), median(b))
}

fn summary(test_mode: bool) {
    let throughput_reps = if test_mode { 1 } else { 21 };
    let day_reps = if test_mode { 1 } else { 5 };
    println!();
    println!("== engine summary (median of {throughput_reps} / {day_reps} interleaved runs) ==");

    let requests = capture_throughput_requests();
    let (engine_s, tenant_s) = interleaved(
        throughput_reps,
        throughput_harness,
        |mut h| {
            h.drive().expect("quiesces");
            h
        },
        throughput_tenant,
        |mut t| {
            replay(&mut t, &requests);
            t
        },
    );
    println!(
        "engine throughput: {:.0} transitions/s (engine+tenant ÷ tenant alone = {:.1}x; \
         {TRANSITIONS} transitions over {AGENTS} agents = {} requests in {:.2} ms vs {:.2} ms for the \
         tenant answering the same requests directly)",
        TRANSITIONS as f64 / engine_s,
        engine_s / tenant_s,
        requests.len(),
        engine_s * 1e3,
        tenant_s * 1e3,
    );

    let agents = day_agents();
    let config = day_config(agents);
    let requests = capture_day_requests(&config);
    let commands = Workday::generate(&config).commands.len();
    let (day_s, base_s) = interleaved(
        day_reps,
        || (),
        |()| run_day(&config),
        || (),
        |()| day_baseline(&config, &requests),
    );
    let verdict = if cfg!(debug_assertions) {
        "not judged: debug build".to_owned()
    } else if day_s < DAY_TARGET.as_secs_f64() {
        "MET".to_owned()
    } else {
        "MISSED".to_owned()
    };
    println!(
        "{agents}-agent 8-hour day: {day_s:.3} s wall (target < {} s: {verdict}); ratio to baseline \
         (generate the workday + bare tenant replaying the day's {} requests: {base_s:.3} s) = {:.1}x; \
         {commands} commands",
        DAY_TARGET.as_secs(),
        requests.len(),
        day_s / base_s,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // Criterion's rule: `cargo test --benches` (no `--bench`) and `cargo bench -- --test` run in test mode.
    let test_mode = has("--test") || !has("--bench");
    let listing = has("--list");

    let mut c = Criterion::default().configure_from_args();
    bench_throughput(&mut c);
    bench_day(&mut c);
    if !listing {
        summary(test_mode);
    }
    c.final_summary();
}
