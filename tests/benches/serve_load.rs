//! Load on `cxone-agent-state serve`: N concurrent HTTP clients (keep-alive) change the states of many agents
//! while the simulated tenant answers with a realistic latency and a rate limit far above the load. The same
//! load also goes through the library directly (`AgentStateManager::transition_state` from N tasks, against a
//! fresh tenant with the same settings and its own audit log): the baseline measured in the same run.
//! Each path's tenant is a `sim-server` process of its own, as CXone is remote: with the tenant inside the
//! bench's runtime, the library's answers came back without crossing a process (often on the very thread
//! that waited for them) while the service's crossed two, and that showed as the service's "overhead".
//!
//! Two phases on each path. Closed loop (each client sends its next change when the last is answered):
//! throughput, changes answered 200 per second, with p50/p99. Open loop at a fixed rate below both paths'
//! limits (each change sent on schedule, latency from the scheduled time), the two paths' requests
//! interleaved one by one, in rounds: the service's overhead, service − library at p50 and p99, the median
//! of the rounds (at saturation the two paths only queue for the same cores, so the gap there is the
//! throughput gap, printed too). Then where each process spent its CPU, and the ground truth of both
//! phases: every 200 is exactly one success audit record in the log and one change the tenant applied, no
//! idempotency key twice, and every agent ends in the state of its last 200. Run with `make bench` (or
//! `cargo bench -p cxone-agent-state-tests --bench serve_load`); `SERVE_LOAD_CLIENTS`, `SERVE_LOAD_AGENTS`,
//! `SERVE_LOAD_REQUESTS`, `SERVE_LOAD_PACED` and `SERVE_LOAD_LATENCY_MS` change the load;
//! `SERVE_LOAD_BIN` runs another build of the program as the service (a profiling build, say).
//!
//! The service and the tenants are the release binary (built here if missing); the clients and the library
//! share this process. Everything shares the machine's cores, so the figures are for the whole loop on this
//! host.

#[path = "../../core/benches/common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxone_agent_state::{AgentStateManager, ManagerConfig};
use cxone_agent_state_core::{EngineConfig, RateLimit, Record, Secret};
use support::cli::{path_str, program};
use support::serve::{new_key, serve_args, Service};
use support::{SimProcess, CLIENT_ID, CLIENT_SECRET};

/// Targets of the issue.
const TARGET_PER_SEC: f64 = 5_000.0;
const TARGET_OVERHEAD_P99_MS: f64 = 2.0;
/// The fixed rate of the latency phase (changes/s, both paths together, half each): half the throughput
/// target, so that neither path runs at its limit and the difference in latency is the service's own work,
/// not queueing for the CPU.
const PACED_RATE: f64 = 2_500.0;
/// Both the tenant's and the clients' limit: far above the load, so the tenant is never what binds.
const RATE_PER_MIN: u32 = 6_000_000;
const TENANT_BURST: u32 = 100_000;
/// The states each agent alternates between, so every request is a real change.
const STATES: [&str; 2] = ["READY", "NOT_READY"];

#[derive(Clone, Copy, Debug)]
struct Load {
    clients: usize,
    agents: usize,
    /// Measured requests (after one unmeasured change per agent).
    requests: usize,
    /// Requests of the latency phase, sent at [`PACED_RATE`].
    paced: usize,
    latency_ms: u64,
    jitter_ms: u64,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that a quick smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let load = if quick {
        Load {
            clients: 4,
            agents: 16,
            requests: 64,
            paced: 32,
            latency_ms: 2,
            jitter_ms: 0,
        }
    } else {
        Load {
            // Enough clients that they do not bound the closed loop: each waits for its answer, and a change
            // takes 17 to 27 ms on this tenant (one or two lookups, the change, the fsync), so 128 clients
            // could never send more than about 5,500/s however fast the service (the ceiling is printed).
            clients: env_or("SERVE_LOAD_CLIENTS", 256),
            agents: env_or("SERVE_LOAD_AGENTS", 4_096),
            requests: env_or("SERVE_LOAD_REQUESTS", 40_000),
            paced: env_or("SERVE_LOAD_PACED", 35_000),
            latency_ms: env_or("SERVE_LOAD_LATENCY_MS", 10) as u64,
            jitter_ms: 5,
        }
    };
    let bin = std::env::var_os("SERVE_LOAD_BIN")
        .map_or_else(support::cargo_env::build_program, std::path::PathBuf::from);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(load, &bin, quick));
}

/// The sim-server's agents are `agent-0001`…
fn agent_name(i: usize) -> String {
    format!("agent-{:04}", i + 1)
}

/// A simulated tenant in a process of its own (`cxone-agent-state sim-server`), as a real tenant is: the
/// library path's answers cross a process boundary just as the service's do, so the two paths differ only
/// by the service's layer. Its `agents` agents are on shift all day (no breaks), with the given latency and
/// a very high limit. It stops when dropped (or when the bench dies: its stdin closes).
struct Tenant {
    process: SimProcess,
    http: reqwest::Client,
}

/// What the tenant holds at the end: its side of the ground truth.
struct TenantTruth {
    /// Every applied change, `(idempotency key, user, state)`, in order.
    accepted: Vec<(String, String, String)>,
    idempotent_replays: u64,
    /// Each agent's state (index `i` is `agent_name(i)`).
    states: Vec<Option<String>>,
}

impl Tenant {
    fn start(load: Load) -> Self {
        let process = SimProcess::start(&[
            "--agents",
            &load.agents.to_string(),
            "--rate-limit",
            &RATE_PER_MIN.to_string(),
            "--burst",
            &TENANT_BURST.to_string(),
            "--latency-ms",
            &load.latency_ms.to_string(),
            "--latency-jitter-ms",
            &load.jitter_ms.to_string(),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ]);
        Self {
            process,
            http: reqwest::Client::new(),
        }
    }

    fn base_url(&self) -> String {
        self.process.base_url.clone()
    }

    async fn admin(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}/admin/{path}", self.process.base_url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("sim-server admin")
            .json()
            .await
            .expect("sim-server admin JSON")
    }

    async fn truth(&self, agents: usize) -> TenantTruth {
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let accepted = self
            .admin("accepted-changes")
            .await
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| {
                (
                    text(c, "idempotencyKey"),
                    text(c, "userId"),
                    text(c, "state"),
                )
            })
            .collect();
        let idempotent_replays = self.admin("ground-truth").await["idempotentReplays"]
            .as_u64()
            .expect("idempotentReplays");
        let mut states = Vec::with_capacity(agents);
        for i in 0..agents {
            let agent = self.admin(&format!("agents/{}", agent_name(i))).await;
            states.push(agent["state"].as_str().map(str::to_owned));
        }
        TenantTruth {
            accepted,
            idempotent_replays,
            states,
        }
    }

    fn pid(&self) -> String {
        self.process.pid().to_string()
    }
}

type Send1 = Arc<
    dyn Fn(String, &'static str) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What one run of the load gave.
#[derive(Clone, Default)]
struct Outcome {
    /// Latency of every measured request answered with success, in µs, sorted.
    latencies_us: Vec<u64>,
    /// Successes in the measured phase.
    ok_measured: usize,
    /// Successes in all (warm-up included).
    ok_total: usize,
    /// Failures by code.
    failures: BTreeMap<String, usize>,
    /// The measured phase: first send to last answer.
    wall: Duration,
    /// Per agent, the state of its last success (None: none, or its last request failed).
    last_state: Vec<Option<&'static str>>,
    /// Agents whose last request failed (their tenant state is not known from the answers).
    uncertain: usize,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.ok_measured as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn pct_ms(&self, q: f64) -> f64 {
        let v = &self.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    }
}

/// One pass of one change per agent (unmeasured), then `requests` changes spread over `clients` tasks, each
/// owning its own agents and sending one change at a time, alternating each agent's state.
async fn drive(load: Load, send: Send1) -> Outcome {
    let barrier = Arc::new(tokio::sync::Barrier::new(load.clients));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..load.clients {
        let send = send.clone();
        let barrier = barrier.clone();
        let owned: Vec<usize> = (c..load.agents).step_by(load.clients).collect();
        let measured = load.requests / load.clients + usize::from(c < load.requests % load.clients);
        tasks.spawn(async move {
            let mut flips = vec![0usize; owned.len()];
            let mut last: Vec<(usize, Option<&'static str>)> =
                owned.iter().map(|&a| (a, None)).collect();
            let mut failures: BTreeMap<String, usize> = BTreeMap::new();
            let mut latencies = Vec::with_capacity(measured);
            let mut ok_total = 0usize;
            let step = |k: usize, flips: &mut Vec<usize>| {
                let slot = k % owned.len();
                let state = STATES[flips[slot] % 2];
                flips[slot] += 1;
                (slot, state)
            };
            for k in 0..owned.len() {
                let (slot, state) = step(k, &mut flips);
                match send(agent_name(owned[slot]), state).await {
                    Ok(()) => {
                        ok_total += 1;
                        last[slot].1 = Some(state);
                    }
                    Err(code) => {
                        *failures.entry(code).or_default() += 1;
                        last[slot].1 = None;
                    }
                }
            }
            barrier.wait().await;
            let started = Instant::now();
            for k in 0..measured {
                let (slot, state) = step(owned.len() + k, &mut flips);
                let sent = Instant::now();
                match send(agent_name(owned[slot]), state).await {
                    Ok(()) => {
                        latencies.push(sent.elapsed().as_micros() as u64);
                        ok_total += 1;
                        last[slot].1 = Some(state);
                    }
                    Err(code) => {
                        *failures.entry(code).or_default() += 1;
                        last[slot].1 = None;
                    }
                }
            }
            (started, Instant::now(), latencies, ok_total, failures, last)
        });
    }
    let mut out = Outcome {
        last_state: vec![None; load.agents],
        ..Outcome::default()
    };
    let (mut first, mut end) = (None::<Instant>, None::<Instant>);
    while let Some(r) = tasks.join_next().await {
        let (s, e, lat, ok, failures, last) = r.expect("no panics");
        first = Some(first.map_or(s, |f| f.min(s)));
        end = Some(end.map_or(e, |x| x.max(e)));
        out.ok_measured += lat.len();
        out.latencies_us.extend(lat);
        out.ok_total += ok;
        for (code, n) in failures {
            *out.failures.entry(code).or_default() += n;
        }
        for (a, state) in last {
            out.last_state[a] = state;
            out.uncertain += usize::from(state.is_none());
        }
    }
    out.wall = end.expect("clients ran") - first.expect("clients ran");
    out.latencies_us.sort_unstable();
    out
}

/// The latency phase, open loop: `load.paced` changes on each path, the paths' requests interleaved one
/// by one (request `i` goes to path `(i + shift) % N`) at [`PACED_RATE`] per second in all, so that a noisy
/// moment of the machine falls on every path alike. Each is sent at its scheduled time whatever the answers
/// before it (so a slow answer cannot hide the ones queued behind it); each path goes round-robin over its
/// agents, each change the opposite of the agent's state so far. Latency is measured from the scheduled
/// time. Returns each path's round; each rig's totals and agents' last states are brought up to date for
/// the ground truth.
async fn drive_paced<const N: usize>(
    load: Load,
    mut rigs: [&mut Rig; N],
    shift: usize,
) -> [Outcome; N] {
    let flip = |s: &str| if s == "READY" { "NOT_READY" } else { "READY" };
    let mut next: [Vec<&'static str>; N] = std::array::from_fn(|p| {
        rigs[p]
            .total
            .last_state
            .iter()
            .map(|s| flip(s.unwrap_or("NOT_READY")))
            .collect()
    });
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..load.paced * N {
        let at = start + Duration::from_secs_f64(i as f64 / PACED_RATE);
        tokio::time::sleep_until(at).await;
        let (p, j) = ((i + shift) % N, i / N);
        let a = j % load.agents;
        let state = next[p][a];
        next[p][a] = flip(state);
        let send = rigs[p].send.clone();
        tasks.spawn(async move {
            let r = send(agent_name(a), state).await;
            (p, j, a, state, at.elapsed(), r)
        });
    }
    let mut rounds: [Outcome; N] = std::array::from_fn(|_| Outcome::default());
    let mut newest = vec![[None::<usize>; N]; load.agents];
    while let Some(r) = tasks.join_next().await {
        let (p, j, a, state, took, r) = r.expect("no panics");
        let (paced, total) = (&mut rounds[p], &mut rigs[p].total);
        let newer = newest[a][p].is_none_or(|n| j > n);
        if newer {
            newest[a][p] = Some(j);
        }
        match r {
            Ok(()) => {
                paced.latencies_us.push(took.as_micros() as u64);
                paced.ok_measured += 1;
                total.ok_total += 1;
                if newer {
                    total.last_state[a] = Some(state);
                }
            }
            Err(code) => {
                *paced.failures.entry(code.clone()).or_default() += 1;
                *total.failures.entry(code).or_default() += 1;
                if newer {
                    total.last_state[a] = None;
                }
            }
        }
    }
    let wall = start.elapsed();
    for (paced, rig) in rounds.iter_mut().zip(rigs.iter_mut()) {
        paced.wall = wall;
        paced.latencies_us.sort_unstable();
        rig.total.uncertain = rig.total.last_state.iter().filter(|s| s.is_none()).count();
    }
    rounds
}

/// CPU seconds (user + system) a process has used so far, from `/proc` (None elsewhere).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// What the ground truth says of a run: the audit log against the answers and the tenant.
struct Check {
    successes: usize,
    failures_audited: usize,
    duplicate_keys: usize,
    tenant_accepted: usize,
    tenant_duplicate_keys: usize,
    tenant_replays: u64,
    /// Changes the tenant applied that the log does not hold as a success, or the other way round, or held
    /// with another agent or state.
    mismatched: usize,
    agents_wrong: usize,
    agents_checked: usize,
}

impl Check {
    fn holds(&self, out: &Outcome) -> bool {
        self.successes == out.ok_total
            && self.tenant_accepted == out.ok_total
            && self.duplicate_keys == 0
            && self.tenant_duplicate_keys == 0
            && self.mismatched == 0
            && self.agents_wrong == 0
    }

    fn line(&self, out: &Outcome) -> String {
        format!(
            "{} answered OK; log: {} success records ({} failures), {} duplicate keys; tenant applied {} ({} duplicate keys, {} idempotent replays); {} log/tenant mismatches; {}/{} agents end in the state of their last OK",
            out.ok_total,
            self.successes,
            self.failures_audited,
            self.duplicate_keys,
            self.tenant_accepted,
            self.tenant_duplicate_keys,
            self.tenant_replays,
            self.mismatched,
            self.agents_checked - self.agents_wrong,
            self.agents_checked
        )
    }
}

async fn check(log: &Path, tenant: &Tenant, out: &Outcome) -> Check {
    let bytes = std::fs::read(log).expect("the audit log");
    let mut logged: HashMap<String, (String, String)> = HashMap::new();
    let (mut successes, mut failures_audited, mut duplicate_keys) = (0, 0, 0);
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(Record::Audit(a)) = Record::parse_line(line) {
            if !a.success {
                failures_audited += 1;
                continue;
            }
            successes += 1;
            let key = a.idempotency_key.clone().unwrap_or_default();
            if logged.insert(key, (a.user_id, a.new_state)).is_some() {
                duplicate_keys += 1;
            }
        }
    }
    let truth = tenant.truth(out.last_state.len()).await;
    let accepted = &truth.accepted;
    let mut seen = HashSet::new();
    let mut tenant_duplicate_keys = 0;
    let mut mismatched = 0;
    for (key, user, state) in accepted {
        if !seen.insert(key.as_str()) {
            tenant_duplicate_keys += 1;
        }
        if logged.get(key) != Some(&(user.clone(), state.clone())) {
            mismatched += 1;
        }
    }
    mismatched += logged.keys().filter(|k| !seen.contains(k.as_str())).count();
    let mut agents_checked = 0;
    let mut agents_wrong = 0;
    for (i, want) in out.last_state.iter().enumerate() {
        if let Some(want) = want {
            agents_checked += 1;
            if truth.states[i].as_deref() != Some(*want) {
                agents_wrong += 1;
            }
        }
    }
    Check {
        successes,
        failures_audited,
        duplicate_keys,
        tenant_accepted: accepted.len(),
        tenant_duplicate_keys,
        tenant_replays: truth.idempotent_replays,
        mismatched,
        agents_wrong,
        agents_checked,
    }
}

/// The rounds of the open-loop phase; the overhead is the median of the rounds' differences. On these
/// machines a stall of a few milliseconds (seen with `perf sched`: a thread kept waiting for a core while the
/// other one idles) now and then lifts a round's p99 by 5 to 100 ms. The paths' requests are interleaved
/// (see [`drive_paced`]) so that a stall falls on both, and seven rounds keep one or two disturbed rounds
/// from deciding the verdict; each round is printed.
const PACED_ROUNDS: usize = 7;

type Finish = Box<dyn FnOnce(Outcome) -> Pin<Box<dyn Future<Output = Check>>>>;

/// One path, started and through its closed-loop phase: what the paced rounds need, and how it ends.
struct Rig {
    send: Send1,
    closed: Outcome,
    /// Every phase so far, for the ground truth.
    total: Outcome,
    /// Stops the path and checks the ground truth of `total`.
    finish: Finish,
}

impl Rig {
    fn new(send: Send1, closed: Outcome, finish: Finish) -> Self {
        Self {
            send,
            total: closed.clone(),
            closed,
            finish,
        }
    }

    /// Stops the path: its ground truth over every phase.
    async fn end(self) -> (Outcome, Check) {
        let Rig {
            send,
            total,
            finish,
            ..
        } = self;
        // The last handle on the library's manager goes with it.
        drop(send);
        let check = finish(total.clone()).await;
        (total, check)
    }
}

/// The library path through its closed-loop phase, and the CPU seconds that phase took (this process's
/// and its tenant's).
async fn run_library(load: Load, dir: &Path) -> (Rig, f64) {
    let server = Tenant::start(load);
    let log = dir.join("library-audit.jsonl");
    let mut engine = EngineConfig::new(server.base_url(), CLIENT_ID, Secret::new(CLIENT_SECRET));
    engine.rate_limit = RateLimit {
        per_minute: RATE_PER_MIN,
        burst: None,
    };
    let manager = Arc::new(
        AgentStateManager::start(ManagerConfig::new(engine, Some(log.clone())))
            .await
            .expect("manager starts"),
    );
    let m = manager.clone();
    let send: Send1 = Arc::new(move |user, state| {
        let m = m.clone();
        Box::pin(async move {
            m.transition_state(&user, state)
                .await
                .map(|_| ())
                .map_err(|e| e.code.as_str().to_owned())
        })
    });
    let both = || Some(cpu_secs("self")? + cpu_secs(&server.pid())?);
    let cpu0 = both();
    let out = drive(load, send.clone()).await;
    let cpu = both().zip(cpu0).map_or(f64::NAN, |(b, a)| b - a);
    let finish: Finish = Box::new(move |total| {
        Box::pin(async move {
            let manager = Arc::into_inner(manager).expect("all done");
            manager.shutdown(Duration::from_secs(1)).await;
            let check = check(&log, &server, &total).await;
            drop(server);
            check
        })
    });
    (Rig::new(send, out, finish), cpu)
}

/// The service as a child process (`support::serve::Service`, with `bin` as the program): a fresh key, the
/// default log level as deployed (a line per request, kept), and the key for the clients (the key file holds
/// only its hash).
async fn start_service(bin: &Path, dir: &Path, base_url: &str) -> (Service, String) {
    let (key, line) = new_key("bench", false).await;
    let keys = dir.join("api-keys");
    std::fs::write(&keys, format!("{line}\n")).expect("key file");
    let audit = dir.join("service-audit.jsonl");
    let conn: Vec<String> = [
        "--base-url",
        base_url,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--rate-limit",
        &RATE_PER_MIN.to_string(),
        "--shutdown-grace-secs",
        "5",
        "--webhook-drain-secs",
        "0",
        "--audit-log",
        path_str(&audit),
    ]
    .map(str::to_owned)
    .to_vec();
    let service = Service::from_command(program(bin, serve_args(&keys, &conn, &[]))).await;
    service.ready().await;
    (service, key)
}

/// A few sums of the service's `/metrics` (OpenMetrics text).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let k = k.split('{').next()?;
            (k == name).then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    match client.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Where the service's time went in the measured phase, from its metrics and CPU use.
struct ServiceProfile {
    service_cpu: f64,
    /// The clients.
    bench_cpu: f64,
    tenant_cpu: f64,
    http_mean_ms: f64,
    fsyncs: f64,
    fsync_mean_ms: f64,
    tenant_latency_mean_ms: f64,
}

/// The service path through its closed-loop phase, and where its time went.
async fn run_service(load: Load, dir: &Path, bin: &Path) -> (Rig, ServiceProfile) {
    let server = Tenant::start(load);
    let (service, key) = start_service(bin, dir, &server.base_url()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(load.clients * 2)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let bearer = format!("Bearer {key}");
    let url = service.base.clone();
    let c = client.clone();
    let send: Send1 = Arc::new(move |user, state| {
        let c = c.clone();
        let url = format!("{url}/v1/agents/{user}/state");
        let bearer = bearer.clone();
        Box::pin(async move {
            let r = c
                .post(url)
                .header("authorization", bearer)
                .header("content-type", "application/json")
                .body(format!("{{\"state\":\"{state}\"}}"))
                .send()
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| format!("body: {e}"))?;
            if status == 200 {
                return Ok(());
            }
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Err(format!("{status} {code}"))
        })
    });
    let pid = service.pid().to_string();
    // The warm-up pass is inside `drive`; the profile spans the whole drive (warm-up is one change per
    // agent, a small share of the total).
    let before = scrape(&client, &service.base).await;
    let tenant_pid = server.pid();
    let cpu = || (cpu_secs(&pid), cpu_secs("self"), cpu_secs(&tenant_pid));
    let (cpu_s0, cpu_b0, cpu_t0) = cpu();
    let out = drive(load, send.clone()).await;
    let (cpu_s1, cpu_b1, cpu_t1) = cpu();
    let after = scrape(&client, &service.base).await;
    let d = |name: &str| metric(&after, name) - metric(&before, name);
    let per = |sum: &str, count: &str| d(sum) / d(count).max(1.0) * 1000.0;
    let profile = ServiceProfile {
        service_cpu: cpu_s1.zip(cpu_s0).map_or(f64::NAN, |(b, a)| b - a),
        bench_cpu: cpu_b1.zip(cpu_b0).map_or(f64::NAN, |(b, a)| b - a),
        tenant_cpu: cpu_t1.zip(cpu_t0).map_or(f64::NAN, |(b, a)| b - a),
        http_mean_ms: per(
            "cxone_agent_state_http_request_duration_seconds_sum",
            "cxone_agent_state_http_request_duration_seconds_count",
        ),
        fsyncs: d("cxone_agent_state_log_fsync_seconds_count"),
        fsync_mean_ms: per(
            "cxone_agent_state_log_fsync_seconds_sum",
            "cxone_agent_state_log_fsync_seconds_count",
        ),
        tenant_latency_mean_ms: per(
            "cxone_agent_state_transition_latency_seconds_sum",
            "cxone_agent_state_transition_latency_seconds_count",
        ),
    };
    let log = dir.join("service-audit.jsonl");
    let finish: Finish = Box::new(move |total| {
        Box::pin(async move {
            drop(client);
            let (status, stderr) = service.stop().await;
            if !status.success() {
                eprintln!("serve exited with {status}; stderr:\n{stderr}");
            }
            let check = check(&log, &server, &total).await;
            drop(server);
            check
        })
    });
    (Rig::new(send, out, finish), profile)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "PASS"
    } else {
        "NOT MET"
    }
}

/// p50, p99 and max, the successes, the wall time and the failures of a phase.
fn latency_line(o: &Outcome) -> String {
    format!(
        "p50 {:>6.2} ms, p99 {:>6.2} ms, max {:>6.2} ms; {} OK in {:.2} s; failures: {}",
        o.pct_ms(0.50),
        o.pct_ms(0.99),
        o.pct_ms(1.0),
        o.ok_measured,
        o.wall.as_secs_f64(),
        failures_line(o)
    )
}

fn failures_line(out: &Outcome) -> String {
    if out.failures.is_empty() {
        "none".to_owned()
    } else {
        out.failures
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn run(load: Load, bin: &Path, quick: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lib_rig, lib_cpu) = run_library(load, dir.path()).await;
    let (mut svc_rig, profile) = run_service(load, dir.path(), bin).await;
    let round = Load {
        paced: (load.paced / PACED_ROUNDS).max(1),
        ..load
    };
    let mut rounds = Vec::new();
    for r in 0..PACED_ROUNDS {
        let [l, s] = drive_paced(round, [&mut lib_rig, &mut svc_rig], r).await;
        rounds.push((l, s));
    }
    let (lib, svc) = (lib_rig.closed.clone(), svc_rig.closed.clone());
    let (lib_all, lib_check) = lib_rig.end().await;
    let (svc_all, svc_check) = svc_rig.end().await;

    println!(
        "== serve under load: {} clients (keep-alive), {} agents, {} measured changes after one per agent; tenant latency {}–{} ms, {} req/min ==",
        load.clients,
        load.agents,
        load.requests,
        load.latency_ms,
        load.latency_ms + load.jitter_ms,
        RATE_PER_MIN
    );
    println!(
        "closed loop (each client sends its next change when the last is answered): throughput"
    );
    for (name, o) in [
        ("library (direct calls)", &lib),
        ("service (HTTP)        ", &svc),
    ] {
        println!(
            "{name}: {:>7.0} changes/s; {}",
            o.per_sec(),
            latency_line(o)
        );
    }
    let throughput_ok = svc.per_sec() >= TARGET_PER_SEC;
    println!(
        "throughput at the HTTP edge: {:.0} changes/s, {:.3} × the library's   [target: ≥ {TARGET_PER_SEC:.0}/s, each audited and fsynced before its answer] {}",
        svc.per_sec(),
        svc.per_sec() / lib.per_sec().max(1e-9),
        verdict(throughput_ok)
    );
    let (sum_us, n) = rounds.iter().fold((0u64, 0usize), |(s, n), (l, _)| {
        (
            s + l.latencies_us.iter().sum::<u64>(),
            n + l.latencies_us.len(),
        )
    });
    let unloaded_ms = sum_us as f64 / n.max(1) as f64 / 1000.0;
    println!(
        "  the clients' own ceiling: {} clients ÷ {unloaded_ms:.2} ms (the library's mean answer in the open loop, below) = {:.0} changes/s",
        load.clients,
        load.clients as f64 / unloaded_ms.max(1e-9) * 1000.0
    );
    println!(
        "  at saturation both paths queue for the same 2 cores (clients, tenant and service share them), so the latency gap there is the throughput gap: p50 {:+.2} ms, p99 {:+.2} ms",
        svc.pct_ms(0.50) - lib.pct_ms(0.50),
        svc.pct_ms(0.99) - lib.pct_ms(0.99)
    );
    println!(
        "open loop at {PACED_RATE:.0} changes/s in all, the two paths' requests interleaved one by one ({:.0}/s each; each sent on schedule, latency from the scheduled time), {PACED_ROUNDS} rounds of {} changes per path: overhead",
        PACED_RATE / 2.0,
        round.paced
    );
    let (mut d50, mut d99, mut ratio99) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (l, s)) in rounds.iter().enumerate() {
        println!(
            "round {}: library (direct calls): {}",
            r + 1,
            latency_line(l)
        );
        println!(
            "round {}: service (HTTP)        : {}",
            r + 1,
            latency_line(s)
        );
        d50.push(s.pct_ms(0.50) - l.pct_ms(0.50));
        d99.push(s.pct_ms(0.99) - l.pct_ms(0.99));
        ratio99.push(s.pct_ms(0.99) / l.pct_ms(0.99));
    }
    let each99 = d99
        .iter()
        .map(|d| format!("{d:+.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    let above = d99.iter().filter(|d| **d >= TARGET_OVERHEAD_P99_MS).count();
    let over50 = common::median(d50);
    let over99 = common::median(d99);
    let overhead_ok = over99 < TARGET_OVERHEAD_P99_MS;
    println!(
        "service overhead (service − library, median of {PACED_ROUNDS} rounds; each round's p99: {}; {above} of {PACED_ROUNDS} at or above the target): p50 {over50:+.2} ms, p99 {over99:+.2} ms; p99 ratio {:.3}   [target: p99 < {TARGET_OVERHEAD_P99_MS} ms] {}",
        each99,
        common::median(ratio99),
        verdict(overhead_ok)
    );
    let lib_ok = lib_check.holds(&lib_all);
    let svc_ok = svc_check.holds(&svc_all);
    println!(
        "service ground truth (both phases): {}   [target: 0 lost, 0 duplicated] {}",
        svc_check.line(&svc_all),
        verdict(svc_ok)
    );
    println!(
        "library ground truth (both phases): {}   {}",
        lib_check.line(&lib_all),
        verdict(lib_ok)
    );
    let n = (svc.ok_total + svc.failures.values().sum::<usize>()).max(1) as f64;
    let ln = (lib.ok_total + lib.failures.values().sum::<usize>()).max(1) as f64;
    println!(
        "  where the time goes (closed loop): service process {:.1} CPU-s ({:.0} µs/change), its clients {:.1} CPU-s ({:.0} µs/change), its tenant {:.1} CPU-s ({:.0} µs/change); library run {:.1} CPU-s ({:.0} µs/change, its tenant's included)",
        profile.service_cpu,
        profile.service_cpu / n * 1e6,
        profile.bench_cpu,
        profile.bench_cpu / n * 1e6,
        profile.tenant_cpu,
        profile.tenant_cpu / n * 1e6,
        lib_cpu,
        lib_cpu / ln * 1e6,
    );
    println!(
        "  service's own view: mean answer {:.2} ms, tenant round trip (command to confirmation) {:.2} ms; {:.0} log syncs ({:.1} records' changes per sync), {:.2} ms each",
        profile.http_mean_ms,
        profile.tenant_latency_mean_ms,
        profile.fsyncs,
        n / profile.fsyncs.max(1.0),
        profile.fsync_mean_ms
    );
    if quick {
        // The smoke run (`cargo test --benches`, debug builds) judges no speed, only the ground truth.
        assert!(svc_ok && lib_ok, "changes lost or duplicated");
    } else {
        let met = throughput_ok && overhead_ok && svc_ok;
        println!("targets: {}", if met { "MET" } else { "NOT MET" });
    }
}
