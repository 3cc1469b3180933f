//! The `cxone-agent-state` binary as a test drives it: a clean environment, the connection flags for a
//! simulated tenant, runs with a deadline, and readers for the JSON Lines files it writes.

use std::ffi::OsStr;
use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{
    admin_get, admin_post, with_codes, AgentPlan, Agents, Profile, SimProcess, ACCESS_KEY_ID,
    ACCESS_KEY_SECRET, CLIENT_ID, CLIENT_SECRET,
};

/// Variables the CLI reads; removed from every child even if the scan below misses them.
pub const KNOWN_VARS: &[&str] = &[
    "CXONE_DOMAIN",
    "CXONE_CLIENT_ID",
    "CXONE_CLIENT_SECRET",
    "CXONE_BASE_URL",
    "CXONE_TOKEN_URL",
    "CXONE_RATE_LIMIT_PER_MIN",
    "CXONE_AUDIT_LOG",
    "CXONE_LOG",
    "WORKFORCE_WEBHOOK_URL",
    "WORKFORCE_WEBHOOK_SECRET",
    "TARGET_USER_ID",
    "CXONE_PROFILE",
    "CXONE_ACCESS_KEY_ID",
    "CXONE_ACCESS_KEY_SECRET",
    "CXONE_AUTH_BASE",
    "CXONE_API_BASE_URL",
    "CXONE_WFM_BASE_URL",
    "CXONE_API_VERSION",
    "CXONE_CLIENT_AUTH",
    "CXONE_SET_STATE_ENCODING",
    "CXONE_REASON_CODES",
    "CXONE_BREAK_ACTIVITIES",
    "CXONE_WFM_RATE_LIMIT_PER_MIN",
    "CXONE_OBSERVE_INTERVAL_MS",
    "CXONE_OBSERVE_SETTLE_AFTER_MS",
    "CXONE_OBSERVE_SKIP_IF_IN_EFFECT",
    "CXONE_OBSERVE_STALE_AFTER_MS",
    "CXONE_SETTLE_WAIT_SECS",
];

/// A `userId,state` CSV of the server's agents `agent-NNNN` for `numbers`, each with `state(number)`.
pub fn agents_csv(
    numbers: std::ops::RangeInclusive<usize>,
    state: impl Fn(usize) -> &'static str,
) -> String {
    let mut csv = String::from("userId,state\n");
    for i in numbers {
        csv.push_str(&format!("agent-{i:04},{}\n", state(i)));
    }
    csv
}

/// The binary with `args`, a clean environment and no stdin.
pub fn cli<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    program(&super::binary(), args)
}

/// `bin` (another build of the program, a profiling one say) with `args`, a clean environment and no stdin.
pub fn program<I, S>(bin: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("CXONE_") || n.starts_with("WORKFORCE_") || n == "TARGET_USER_ID" {
            c.env_remove(&name);
        }
    }
    for name in KNOWN_VARS {
        c.env_remove(name);
    }
    c.args(args);
    c
}

/// The connection flags for a simulated tenant at `base`, with a durable audit log at `audit`.
pub fn connect(base: &str, audit: &Path) -> Vec<String> {
    [
        "--base-url",
        base,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--audit-log",
        path_str(audit),
        // The client paces itself to this budget; the servers below allow it.
        "--rate-limit",
        "6000",
        "--webhook-drain-secs",
        "2",
        "--request-timeout-ms",
        "5000",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Replaces the value of `flag` in `flags`.
pub fn set_flag(flags: &mut [String], flag: &str, value: &str) {
    let i = flags
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not among {flags:?}"));
    flags[i + 1] = value.to_owned();
}

/// `[a, b, ...]` + `more` as owned strings.
pub fn args(head: &[&str], more: &[String]) -> Vec<String> {
    head.iter()
        .map(|s| (*s).to_owned())
        .chain(more.iter().cloned())
        .collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// What a finished CLI run left.
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }

    /// stdout as JSON Lines.
    pub fn json_lines(&self) -> Vec<Value> {
        json_lines(&self.stdout)
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs a command to completion (60 s at most), feeding it `input` on stdin if given.
pub async fn run_input(cmd: Command, input: Option<&[u8]>) -> Out {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the CLI starts");
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(bytes).await.expect("stdin takes the input");
        drop(stdin);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the CLI finishes within 60 s")
        .expect("the CLI can be waited for");
    let out = Out {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked"), "the CLI panicked:\n{out}");
    out
}

pub async fn run(cmd: Command) -> Out {
    run_input(cmd, None).await
}

/// `transition --user USER --state STATE` with the connection flags `conn`.
pub async fn transition(user: &str, state: &str, conn: &[String]) -> Out {
    run(cli(args(
        &["transition", "--user", user, "--state", state],
        conn,
    )))
    .await
}

/// `audit verify LOG`.
pub async fn audit_verify(log: &Path) -> Out {
    run(cli(["audit", "verify", path_str(log)])).await
}

/// `outbox list --json --audit-log LOG`.
pub async fn outbox_list_json(log: &Path) -> Out {
    run(cli([
        "outbox",
        "list",
        "--json",
        "--audit-log",
        path_str(log),
    ]))
    .await
}

/// A simulated tenant as a child process with a generous rate limit and `agents` agents on shift.
pub fn server(agents: usize, extra: &[&str]) -> SimProcess {
    let agents = agents.to_string();
    let mut flags = vec![
        "--rate-limit",
        "6000",
        "--burst",
        "100",
        "--agents",
        &agents,
    ];
    flags.extend_from_slice(extra);
    SimProcess::start(&flags)
}

/// A simulated tenant, a scratch directory, the log `audit.jsonl` in it, and the connection flags for both.
pub type Scene = (
    SimProcess,
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<String>,
);

/// [`server`] with `agents` agents and `extra` flags, and a fresh directory for its log: see [`Scene`].
pub fn scene(agents: usize, extra: &[&str]) -> Scene {
    let sim = server(agents, extra);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conn = connect(&sim.base_url, &audit);
    (sim, dir, audit, conn)
}

pub async fn total_requests(base: &str) -> u64 {
    admin_get(base, "/admin/ground-truth").await["totalRequests"]
        .as_u64()
        .expect("totalRequests")
}

pub async fn agent_state(base: &str, user: &str) -> Value {
    admin_get(base, &format!("/admin/agents/{user}")).await["state"].clone()
}

pub async fn add_agent(base: &str, plan: AgentPlan) {
    let body = serde_json::to_value(plan).expect("plans serialize");
    let r = admin_post(base, "/admin/agents", &body).await;
    assert_eq!(r["added"], 1, "{r}");
}

/// The complete (newline-terminated) lines of a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    json_lines(complete)
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// The audit records of a log (its lines without a `kind`).
pub fn read_audit(path: &Path) -> Vec<Value> {
    read_jsonl(path)
        .into_iter()
        .filter(|v| v.get("kind").is_none())
        .collect()
}

/// The records of one kind (`intent`, `webhook`, `delivered`, …) of a log.
pub fn read_kind(path: &Path, kind: &str) -> Vec<Value> {
    read_jsonl(path)
        .into_iter()
        .filter(|v| v["kind"] == kind)
        .collect()
}

pub fn key_of(v: &Value) -> Option<String> {
    v["idempotencyKey"].as_str().map(str::to_owned)
}

/// The `Idempotency-Key` of every change the tenant at `base_url` applied, in order.
pub async fn accepted_keys(base_url: &str) -> Vec<String> {
    super::admin_get(base_url, "/admin/accepted-changes")
        .await
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(key_of)
        .collect()
}

/// Waits until nothing accepts connections on `addr` any more.
pub fn port_closes(addr: SocketAddr, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn addr_of(base_url: &str) -> SocketAddr {
    base_url
        .strip_prefix("http://")
        .expect("http base URL")
        .parse()
        .expect("base URL is host:port")
}

/// A simulated tenant (`sim-server`, started for `profile`) and how a client of that profile reaches it and
/// addresses its agents. It dereferences to the [`SimProcess`].
pub struct Tenant {
    pub sim: SimProcess,
    pub profile: Profile,
    pub agents: Agents,
}

impl std::ops::Deref for Tenant {
    type Target = SimProcess;
    fn deref(&self) -> &SimProcess {
        &self.sim
    }
}

impl Tenant {
    /// [`server`] for `profile` with `agents` agents `agent-0001`…: on `cxone` the server is started with
    /// `--profile cxone` and a WFM budget as generous as the API's, and the agents the tenant put in team C
    /// (no unavailable codes) are moved to teams A and B, so every state can be set for every one of them.
    pub async fn start(profile: Profile, agents: usize, extra: &[&str]) -> Self {
        let mut flags: Vec<&str> = extra.to_vec();
        if profile == Profile::Cxone {
            flags.extend(["--profile", "cxone", "--wfm-rate-limit", "6000"]);
        }
        let sim = server(agents, &flags);
        let mut ids = Agents::new(profile);
        for i in 1..=agents {
            ids.add(&format!("agent-{i:04}"));
        }
        let tenant = Self {
            sim,
            profile,
            agents: ids,
        };
        if profile == Profile::Cxone && agents >= 3 {
            let plans: Vec<AgentPlan> = (1..=agents)
                .filter(|i| i % 3 == 0)
                .map(|i| with_codes(super::on_shift(&format!("agent-{i:04}")), i))
                .collect();
            let body = serde_json::to_value(plans).expect("plans serialize");
            admin_post(&tenant.base_url, "/admin/agents", &body).await;
        }
        tenant
    }

    /// How the client addresses the agent named `name`.
    pub fn id(&self, name: &str) -> String {
        self.agents.id(name)
    }

    /// Adds an agent (on `cxone` in a team with codes unless its plan names one).
    pub async fn add_agent(&mut self, plan: AgentPlan) {
        self.agents.add(&plan.user_id);
        let plan = match self.profile {
            Profile::Seed => plan,
            Profile::Cxone => with_codes(plan, 0),
        };
        add_agent(&self.base_url, plan).await;
    }

    /// The connection flags of a client of this profile, with its audit log at `audit`: on `cxone` the
    /// access key, and the auth, API and WFM bases all at the server (its announced WFM host does not
    /// resolve).
    pub fn connect(&self, audit: &Path) -> Vec<String> {
        let mut flags = connect(&self.base_url, audit);
        if self.profile == Profile::Cxone {
            let base = &self.base_url;
            // `--base-url` belongs to seed; cxone neither needs nor reads it.
            let i = flags
                .iter()
                .position(|f| f == "--base-url")
                .expect("--base-url");
            flags.drain(i..i + 2);
            flags.extend(
                [
                    "--profile",
                    "cxone",
                    "--auth-base",
                    base,
                    "--api-base-url",
                    base,
                    "--wfm-base-url",
                    base,
                    "--access-key-id",
                    ACCESS_KEY_ID,
                    "--access-key-secret",
                    ACCESS_KEY_SECRET,
                    "--wfm-rate-limit-per-min",
                    "6000",
                ]
                .map(str::to_owned),
            );
        }
        flags
    }

    /// A `userId,state` CSV of `agent-NNNN` for `numbers`, addressed as this profile does.
    pub fn agents_csv(
        &self,
        numbers: std::ops::RangeInclusive<usize>,
        state: impl Fn(usize) -> &'static str,
    ) -> String {
        let mut csv = String::from("userId,state\n");
        for i in numbers {
            csv.push_str(&format!(
                "{},{}\n",
                self.id(&format!("agent-{i:04}")),
                state(i)
            ));
        }
        csv
    }

    /// The state the tenant holds for the agent named `name`.
    pub async fn state_of(&self, name: &str) -> Value {
        agent_state(&self.base_url, name).await
    }

    /// What [`state_of`](Self::state_of) reads after `state` was set with the default reason table.
    pub fn set_as(&self, state: &str) -> Value {
        Value::from(self.profile.tenant_state(state))
    }
}

/// [`Tenant::start`] with a fresh directory for its log: the tenant, the directory, the log
/// `audit.jsonl` in it, and the connection flags for both.
pub async fn scene_as(
    profile: Profile,
    agents: usize,
    extra: &[&str],
) -> (Tenant, tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    let tenant = Tenant::start(profile, agents, extra).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conn = tenant.connect(&audit);
    (tenant, dir, audit, conn)
}

/// A running `watch` (or any long-running command): its stdout lines as they come, signals to send it,
/// and its output once it ends.
pub struct Running {
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Keeps every line `lines` yields in `sink` as it comes, until the stream ends.
pub fn keep_lines<R>(
    mut lines: tokio::io::Lines<R>,
    sink: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    })
}

impl Running {
    /// Starts `cmd` with stdout and stderr piped and no stdin.
    pub fn spawn(cmd: Command) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the CLI starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = keep_lines(tokio::io::BufReader::new(stdout).lines(), lines.clone());
        Self {
            child,
            lines,
            reader,
        }
    }

    /// The JSON lines printed so far.
    pub fn json_lines(&self) -> Vec<Value> {
        json_lines(&self.lines.lock().unwrap().join("\n"))
    }

    /// Waits up to `within` for a printed JSON line that `f` accepts, and returns it.
    pub async fn until(&mut self, within: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + within;
        loop {
            if let Some(v) = self.json_lines().into_iter().find(|v| f(v)) {
                return Some(v);
            }
            if Instant::now() > end {
                return None;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the command ended early; printed:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal (`INT`, `TERM`) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits (20 s at most) for the command to end.
    pub async fn wait(mut self) -> Out {
        use tokio::io::AsyncReadExt;
        let mut stderr = String::new();
        let mut pipe = self.child.stderr.take().expect("piped stderr");
        let status = tokio::time::timeout(Duration::from_secs(20), async {
            let (status, _) = tokio::join!(self.child.wait(), pipe.read_to_string(&mut stderr));
            status
        })
        .await
        .expect("the command ends within 20 s")
        .expect("the command can be waited for");
        let _ = self.reader.await;
        let out = Out {
            status,
            stdout: self.lines.lock().unwrap().join("\n"),
            stderr,
        };
        assert!(!out.stderr.contains("panicked"), "the CLI panicked:\n{out}");
        out
    }
}
