//! Burst against `sim-server` over loopback: 1,000 distinct agents, a quarter going READY, a tenant limit of
//! 6,000 requests/min. Prints the share of successes, the 429s the tenant sent, API requests per transition,
//! and wall time ÷ the rate bound (the least time in which the tenant's limiter can admit the requests the
//! run needed). Run with `make bench` (or `cargo bench -p cxone-agent-state --bench loopback`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxone_agent_state::{now_ms, AgentStateManager, ManagerConfig};
use cxone_agent_state_core::sim::{AgentPlan, SimConfig, SimTenant};
use cxone_agent_state_core::{EngineConfig, RateLimit, Secret};
use cxone_agent_state_sim_server as sim_server;

const AGENTS: usize = 1_000;
const RATE_PER_MIN: u32 = 6_000;
/// The tenant's bucket: two seconds' worth. The client is not told it.
const TENANT_BURST: u32 = 200;

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that a quick smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let agents = if quick { 40 } else { AGENTS };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(agents, quick));
}

async fn run(agents: usize, quick: bool) {
    let now = now_ms();
    let mut tenant = SimTenant::new(SimConfig {
        rate_per_minute: RATE_PER_MIN,
        burst: TENANT_BURST,
        latency_ms: 1,
        latency_jitter_ms: 0,
        ..SimConfig::default()
    });
    let users: Vec<String> = (1..=agents).map(|i| format!("agent-{i:04}")).collect();
    for u in &users {
        tenant.add_agent(AgentPlan::on_shift(
            u.clone(),
            now - 3_600_000,
            now + 23 * 3_600_000,
        ));
    }
    let server = sim_server::start(SocketAddr::from(([127, 0, 0, 1], 0)), tenant)
        .await
        .expect("sim-server starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = EngineConfig::new(server.base_url(), "sim-client", Secret::new("sim-secret"));
    engine.rate_limit = RateLimit {
        per_minute: RATE_PER_MIN,
        burst: None,
    };
    engine.seed = 1;
    let manager = Arc::new(
        AgentStateManager::start(ManagerConfig::new(
            engine,
            Some(dir.path().join("bench-audit.jsonl")),
        ))
        .await
        .expect("manager starts"),
    );

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, u) in users.iter().enumerate() {
        let m = Arc::clone(&manager);
        let user = u.clone();
        let state = if i % 4 == 0 {
            "READY"
        } else {
            ["NOT_READY", "PAUSED", "IDLE"][i % 3]
        };
        tasks.spawn(async move { m.transition_state(&user, state).await.is_ok() });
    }
    let mut ok = 0usize;
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.expect("no panics"));
    }
    let wall = started.elapsed();
    let manager = Arc::into_inner(manager).expect("all done");
    manager.shutdown(Duration::from_secs(1)).await;

    let truth = server
        .tenant()
        .lock()
        .expect("tenant")
        .ground_truth()
        .clone();
    let requests = truth.total_requests;
    let per_ms = f64::from(RATE_PER_MIN) / 60_000.0;
    let bound_ms = requests.saturating_sub(u64::from(TENANT_BURST)) as f64 / per_ms;
    let client_burst = RateLimit {
        per_minute: RATE_PER_MIN,
        burst: None,
    }
    .effective_burst();
    let client_model_ms = requests.saturating_sub(u64::from(client_burst)) as f64 / per_ms;
    let ratio = wall.as_secs_f64() * 1000.0 / bound_ms.max(1.0);
    let per_transition = requests as f64 / agents as f64;

    println!("== loopback burst against sim-server ({agents} agents, 1 in 4 going READY, {RATE_PER_MIN} req/min) ==");
    println!(
        "successes: {ok}/{agents} ({:.1} %)   [target: all]",
        ok as f64 * 100.0 / agents as f64
    );
    println!(
        "429s sent by the tenant: {}   [target: 0]",
        truth.rate_limited
    );
    println!(
        "API requests per transition: {per_transition:.3} ({requests} requests, {} tokens)   [target: ≤ 2.3; the reference needs 3 + a token per caller]",
        truth.tokens_issued
    );
    println!(
        "wall time ÷ rate bound: {:.2} s ÷ {:.2} s = {ratio:.3}   [target: ≤ 1.1]",
        wall.as_secs_f64(),
        bound_ms / 1000.0
    );
    println!(
        "  the rate bound is (requests − tenant burst {TENANT_BURST}) ÷ {RATE_PER_MIN}/min. The client is told only \
         the per-minute limit, so it assumes a burst of one second's worth ({client_burst}); by its own model the \
         run needs {:.2} s. The gap to the bound ({:.2} s) is the burst the tenant allows but never announced; \
         the rest is round trips and fsyncs of the audit log.",
        client_model_ms / 1000.0,
        (client_model_ms - bound_ms) / 1000.0
    );
    if !quick {
        let met = ok == agents && truth.rate_limited == 0 && per_transition <= 2.3 && ratio <= 1.1;
        println!("targets: {}", if met { "MET" } else { "NOT MET" });
    }
}
