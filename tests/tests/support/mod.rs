//! Shared support for the end-to-end tests: the binary, a simulated tenant over real HTTP (in-process or as
//! the `sim-server` child process), a webhook sink that can be taken down, and real-time agent plans.
//!
//! Every server listens on 127.0.0.1 on a free port and stops by itself (dropped handle, or the child sees
//! its stdin close).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cxone_agent_state::{now_ms, ManagerConfig};
use cxone_agent_state_core::sim::{
    AgentPlan, SimConfig, SimTenant, Window, CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C,
};
use cxone_agent_state_core::{
    EngineConfig, ProfileKind, RateLimit, RetryPolicy, Secret, WebhookConfig,
};
use cxone_agent_state_sim_server::{self as sim_server, SimServerHandle};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub mod cargo_env;
pub mod cli;
pub mod serve;

pub const HOUR: u64 = 3_600_000;
pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";
/// The access key the simulated tenant accepts by default (`cxone`).
pub const ACCESS_KEY_ID: &str = "sim-access-key";
/// Its secret: the simulated tenant's default, with `=`, `&` and `%` in it.
pub const ACCESS_KEY_SECRET: &str = "sim-access-secret=&%";

/// The API a test's client speaks to the simulated tenant (which serves both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The reference module's endpoints; agents are addressed by name.
    Seed,
    /// The real CXone API; agents are addressed by their numeric `agentId`.
    Cxone,
}

impl Profile {
    /// `seed` or `cxone`.
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    /// The engine's name for it.
    pub fn kind(self) -> ProfileKind {
        match self {
            Self::Seed => ProfileKind::Seed,
            Self::Cxone => ProfileKind::Cxone,
        }
    }

    /// The state the tenant records (`/admin/agents/{name}`) when `state` is set with the default reason
    /// table: on `cxone`, READY is `Available` and the others `Unavailable` with the table's code.
    pub fn tenant_state(self, state: &str) -> String {
        match (self, state) {
            (Self::Seed, s) | (Self::Cxone, s @ "READY") => s.to_owned(),
            (Self::Cxone, "NOT_READY") => "UNAVAILABLE_BREAK".to_owned(),
            (Self::Cxone, "PAUSED") => "UNAVAILABLE_ADHOC".to_owned(),
            (Self::Cxone, "IDLE") => "UNAVAILABLE_SYSTEM_IDLE".to_owned(),
            (Self::Cxone, _) => "UNAVAILABLE_GENERAL".to_owned(),
        }
    }
}

/// Runs a test body `async fn NAME(profile: Profile)` once per profile: `seed::NAME` and `cxone::NAME`.
#[allow(unused_macros)]
macro_rules! for_each_profile {
    ($($name:ident),* $(,)?) => {
        mod seed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Profile::Seed).await
                }
            )*
        }
        mod cxone {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Profile::Cxone).await
                }
            )*
        }
    };
}

/// Agent names and how a client of one profile addresses them: by name on `seed`, by the `agentId` the
/// simulated tenant assigns on `cxone` (1001, 1002, … in the order agents are first added).
#[derive(Clone, Debug)]
pub struct Agents {
    profile: Profile,
    names: Vec<String>,
}

impl Agents {
    /// No agents yet.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            names: Vec::new(),
        }
    }

    /// Notes an agent the tenant has just been given (a name seen before keeps its id).
    pub fn add(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }

    /// How the client addresses `name`: the name itself on `seed`, its `agentId` on `cxone`; a name the
    /// tenant does not know is passed through (it is unknown either way).
    pub fn id(&self, name: &str) -> String {
        match (self.profile, self.names.iter().position(|n| n == name)) {
            (Profile::Cxone, Some(i)) => (1001 + i).to_string(),
            _ => name.to_owned(),
        }
    }

    /// The team the tenant gives the agent named `name` by default (`cxone`): A, B, C in turn.
    pub fn default_team(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|n| n == name)?;
        Some([CXONE_TEAM_A, CXONE_TEAM_B, CXONE_TEAM_C][i % 3])
    }
}

/// `plan` in a team with unavailable codes, unless it names its own: on `cxone` the tenant puts every third
/// new agent in team C, which has none, so only READY could be set for it; the scenarios that set other
/// states use teams A and B (the test of team C puts an agent there itself).
pub fn with_codes(plan: AgentPlan, nth: usize) -> AgentPlan {
    AgentPlan {
        team_id: plan.team_id.or(Some([CXONE_TEAM_A, CXONE_TEAM_B][nth % 2])),
        ..plan
    }
}

/// The `cxone-agent-state` binary, built on first use if this test run has not built it.
pub fn binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(cargo_env::build_program).clone()
}

/// An agent on shift from an hour ago for a day, with no breaks (real time).
pub fn on_shift(user: &str) -> AgentPlan {
    let now = now_ms();
    AgentPlan::on_shift(user, now - HOUR, now + 23 * HOUR)
}

/// An agent on shift whose mandatory break is running now (real time).
pub fn on_break(user: &str) -> AgentPlan {
    on_break_until(user, now_ms() + HOUR)
}

/// An agent on shift whose mandatory break began a minute ago and ends at `end_ms`.
pub fn on_break_until(user: &str, end_ms: u64) -> AgentPlan {
    AgentPlan {
        breaks: vec![Window {
            start_ms: now_ms() - 60_000,
            end_ms,
        }],
        ..on_shift(user)
    }
}

/// An agent with no shift.
pub fn unscheduled(user: &str) -> AgentPlan {
    AgentPlan {
        user_id: user.into(),
        shifts: vec![],
        breaks: vec![],
        ..AgentPlan::default()
    }
}

/// A simulated tenant over real HTTP, in this process.
pub async fn sim(agents: Vec<AgentPlan>, tweak: impl FnOnce(&mut SimConfig)) -> SimServerHandle {
    let mut config = SimConfig {
        latency_ms: 2,
        latency_jitter_ms: 0,
        rate_per_minute: 6_000,
        burst: 100,
        ..SimConfig::default()
    };
    tweak(&mut config);
    let mut tenant = SimTenant::new(config);
    for a in agents {
        tenant.add_agent(a);
    }
    sim_server::start(SocketAddr::from(([127, 0, 0, 1], 0)), tenant)
        .await
        .expect("the simulated tenant starts")
}

/// [`sim`] for a client of `profile`, and how it addresses the agents. On `cxone` every agent without a
/// team of its own gets one with unavailable codes ([`with_codes`]).
pub async fn sim_as(
    profile: Profile,
    agents: Vec<AgentPlan>,
    tweak: impl FnOnce(&mut SimConfig),
) -> (SimServerHandle, Agents) {
    let mut ids = Agents::new(profile);
    let agents = agents
        .into_iter()
        .enumerate()
        .map(|(i, plan)| {
            ids.add(&plan.user_id);
            match profile {
                Profile::Seed => plan,
                Profile::Cxone => with_codes(plan, i),
            }
        })
        .collect();
    (sim(agents, tweak).await, ids)
}

/// [`config`] for a client of `profile`: on `cxone`, the access key and every base at `base_url`, the WFM
/// host as generous as the API.
pub fn config_as(profile: Profile, base_url: &str, audit_log: Option<PathBuf>) -> ManagerConfig {
    let mut c = config(base_url, audit_log);
    if profile == Profile::Cxone {
        let engine = &mut c.engine;
        engine.profile = ProfileKind::Cxone;
        engine.cxone.access_key_id = ACCESS_KEY_ID.to_owned();
        engine.cxone.access_key_secret = Secret::new(ACCESS_KEY_SECRET);
        engine.cxone.auth_base = base_url.to_owned();
        engine.cxone.api_base = Some(base_url.to_owned());
        engine.cxone.wfm_base = Some(base_url.to_owned());
        engine.cxone.wfm_rate_limit = engine.rate_limit.clone();
    }
    c
}

/// A manager configuration for a simulated tenant at `base_url`, with a fixed seed.
pub fn config(base_url: &str, audit_log: Option<PathBuf>) -> ManagerConfig {
    let mut engine = EngineConfig::new(base_url, CLIENT_ID, Secret::new(CLIENT_SECRET));
    engine.seed = 7;
    engine.rate_limit = RateLimit {
        per_minute: 6_000,
        burst: None,
    };
    engine.request_timeout_ms = 2_000;
    // Short backoffs keep real-time tests quick; the schedule's shape is what the core tests pin.
    engine.retry.base_ms = 100;
    engine.retry.jitter_ms = 50;
    ManagerConfig::new(engine, audit_log)
}

/// A webhook configuration for a sink, with short backoffs.
pub fn webhook(url: &str, secret: Option<&str>) -> WebhookConfig {
    WebhookConfig {
        secret: secret.map(Secret::new),
        retry: RetryPolicy {
            base_ms: 100,
            cap_ms: 500,
            jitter_ms: 50,
            ..RetryPolicy::default()
        },
        timeout_ms: 1_000,
        ..WebhookConfig::new(url)
    }
}

/// The `sim-server` binary as a child process; it exits when this handle (its stdin) is dropped.
pub struct SimProcess {
    child: Child,
    /// Its base URL.
    pub base_url: String,
}

/// `sim-server` flags of a slow tenant for 300 agents: ~70 requests/s with a burst of 5 and 150 ms answers,
/// so that a run over all of them takes several seconds and, at any moment, state changes are in flight
/// (accepted by the tenant or not, their outcome not yet recorded): for the tests that interrupt a run.
pub const SLOW_TENANT_300: &[&str] = &[
    "--agents",
    "300",
    "--rate-limit",
    "4200",
    "--burst",
    "5",
    "--latency-ms",
    "150",
];

impl SimProcess {
    /// Starts `sim-server` with extra flags and waits for its first line.
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args([
                "sim-server",
                "--listen",
                "127.0.0.1:0",
                "--exit-on-stdin-eof",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sim-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("sim-server prints its URL");
        let base_url = line
            .trim()
            .strip_prefix("sim-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base_url }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET an admin endpoint as JSON.
pub async fn admin_get(base: &str, path: &str) -> Value {
    let text = reqwest::get(format!("{base}{path}"))
        .await
        .expect("admin GET")
        .text()
        .await
        .expect("admin body");
    serde_json::from_str(&text).expect("admin JSON")
}

/// POST JSON to an admin endpoint.
pub async fn admin_post(base: &str, path: &str, body: &Value) -> Value {
    let text = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("admin POST")
        .text()
        .await
        .expect("admin body");
    serde_json::from_str(&text).expect("admin JSON")
}

/// One delivery the sink saw.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `X-Event-Id`.
    pub event_id: String,
    /// `X-Signature-256`, if any.
    pub signature: Option<String>,
    /// The body.
    pub body: Value,
    /// The raw body.
    pub raw: Vec<u8>,
}

/// A webhook receiver on loopback that records deliveries; while `down`, it answers 503 (and counts).
pub struct WebhookSink {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// Accepted deliveries (2xx answered), in arrival order.
    pub received: Arc<Mutex<Vec<Delivery>>>,
    /// While true, every delivery gets 503.
    pub down: Arc<AtomicBool>,
    /// Deliveries refused while down.
    pub refused: Arc<AtomicU64>,
    /// Deliveries whose body contains this text are refused with 422 (a payload the receiver will never
    /// take), and counted in `refused`.
    pub refuse_containing: Arc<Mutex<Option<String>>>,
    /// Connections open now.
    open: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookSink {
    /// Starts the sink.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let refuse_containing = Arc::new(Mutex::new(None::<String>));
        let open = Arc::new(AtomicU64::new(0));
        let opened = open.clone();
        let (r, d, f, rc) = (
            received.clone(),
            down.clone(),
            refused.clone(),
            refuse_containing.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, d, f, rc) = (r.clone(), d.clone(), f.clone(), rc.clone());
                opened.fetch_add(1, Ordering::SeqCst);
                let opened = opened.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (r, d, f, rc) = (r.clone(), d.clone(), f.clone(), rc.clone());
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                            };
                            let event_id = header("x-event-id").unwrap_or_default();
                            let signature = header("x-signature-256");
                            let raw = req.into_body().collect().await.map(|b| b.to_bytes());
                            let raw = raw.map(|b| b.to_vec()).unwrap_or_default();
                            let refuse = rc.lock().unwrap().clone().is_some_and(|needle| {
                                String::from_utf8_lossy(&raw).contains(&needle)
                            });
                            let status = if refuse {
                                f.fetch_add(1, Ordering::SeqCst);
                                422
                            } else if d.load(Ordering::SeqCst) {
                                f.fetch_add(1, Ordering::SeqCst);
                                503
                            } else {
                                r.lock().unwrap().push(Delivery {
                                    event_id,
                                    signature,
                                    body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                                    raw,
                                });
                                200
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    opened.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            url,
            received,
            down,
            refused,
            refuse_containing,
            open,
            task,
        }
    }

    /// Waits until no connection has been open for a while: every request a stopped sender had already
    /// written has been answered, so flipping `down` cannot change the answer to one of them.
    pub async fn quiesce(&self) {
        let mut idle_polls = 0;
        let quiet = eventually(10_000, || {
            idle_polls = if self.open.load(Ordering::SeqCst) == 0 {
                idle_polls + 1
            } else {
                0
            };
            idle_polls >= 5
        })
        .await;
        assert!(quiet, "the webhook sink still has connections open");
    }

    /// The distinct event ids received so far.
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.event_id.clone())
            .collect()
    }
}

/// Waits (polling) until `f` holds or `timeout_ms` passes; returns whether it held.
pub async fn eventually(timeout_ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
