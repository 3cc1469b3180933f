//! `cxone-agent-state sim-server`: the simulated tenant over real HTTP, on the wall clock.
//!
//! Prints `sim-server listening on http://HOST:PORT` as its first stdout line, then one JSON line
//! `{"profile","baseUrl","clientId","agents","ratePerMinute","burst"}` (with `--profile cxone`, also
//! `authBase`, `accessKeyId`, `tenantId`, `wfmBase` and `wfmRatePerMinute`; never a secret), and serves until
//! Ctrl-C (or, with `--exit-on-stdin-eof`, until stdin is closed).
//!
//! The tenant serves both profiles at once; `--profile` only chooses what the JSON line tells a client.

use std::fmt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use cxone_agent_state_core::sim::{ActivityConfig, AgentPlan, RandomFaults, SimConfig, SimTenant};
use cxone_agent_state_core::RateLimit;
use cxone_agent_state_sim_server as sim_server;
use tokio::sync::oneshot;

use super::fail::Failure;

const HOUR_MS: u64 = 3_600_000;

/// Which API a client of the server means to speak; the tenant serves both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimProfile {
    /// The reference module's endpoints (`/oauth2/token`, `/api/v2/...`).
    Seed,
    /// The real CXone API (discovery, `/auth/token`, `/inContactAPI/...`, `/schedules/export`).
    Cxone,
}

/// Options of `sim-server`.
#[derive(Args)]
#[command(after_help = after_help())]
pub struct SimServerArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of agents, `agent-0001`…, each on shift from an hour ago for 24 hours, with no breaks
    /// (add agents with breaks through `POST /admin/agents`).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// The tenant's rate limit in requests per minute.
    #[arg(long, default_value_t = 100)]
    rate_limit: u32,
    /// The tenant's burst (token-bucket capacity) [default: rate limit / 60, at least 1]. Clients are not
    /// told it: they learn it from 429 answers.
    #[arg(long)]
    burst: Option<u32>,
    /// Seed of tokens and random faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which profile's connection settings the startup JSON line prints (the tenant serves both).
    #[arg(long, value_enum, default_value_t = SimProfile::Seed)]
    profile: SimProfile,
    /// `cxone`: the accepted access key id (`username` of the password grant).
    #[arg(long, default_value = "sim-access-key")]
    access_key_id: String,
    /// `cxone`: the accepted access key secret (a built-in default holding `=`, `&` and `%` applies; its
    /// value is not shown here).
    #[arg(
        long,
        default_value = "sim-access-secret=&%",
        hide_default_value = true
    )]
    access_key_secret: String,
    /// `cxone`: the WFM schedule export's own rate limit, in requests per minute (its burst is the same).
    #[arg(long, default_value_t = 100)]
    wfm_rate_limit: u32,
    /// The accepted OAuth client id.
    #[arg(long, default_value = "sim-client")]
    client_id: String,
    /// The accepted OAuth client secret (a built-in default applies; its value is not shown here).
    #[arg(long, default_value = "sim-secret", hide_default_value = true)]
    client_secret: String,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: u64,
    /// Added latency of every answer, in milliseconds.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
    /// Extra latency drawn uniformly in [0, N) milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Share of API requests (not token requests) that meet a random fault (5xx, 429, slow, malformed,
    /// dropped connection, revoked token).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// `mandatoryBreakRequired` turns true this many seconds before a break starts.
    #[arg(long, default_value_t = 300)]
    break_notice_secs: u64,
    /// Also stop when stdin is closed (for a parent process that spawns the server).
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// Per agent and hour: the agent goes Unavailable with a code, or back to Available [default: 0].
    #[arg(long, value_name = "RATE", help_heading = "Agent activity")]
    agent_changes_per_hour: Option<String>,
    /// Per agent and hour: contacts the ACD offers while Available [default: 0].
    #[arg(long, value_name = "RATE", help_heading = "Agent activity")]
    contacts_per_hour: Option<String>,
    /// Mean contact duration in seconds [default: 180].
    #[arg(long, value_name = "SECONDS", help_heading = "Agent activity")]
    contact_mean_s: Option<String>,
    /// Per agent and hour: a supervisor sets Unavailable with a code, or Available [default: 0].
    #[arg(long, value_name = "RATE", help_heading = "Agent activity")]
    supervisor_changes_per_hour: Option<String>,
    /// Agents are LoggedOut outside their shifts [default: false].
    #[arg(long, value_name = "true|false", help_heading = "Agent activity")]
    log_in_out: Option<String>,
}

impl fmt::Debug for SimServerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimServerArgs")
            .field("listen", &self.listen)
            .field("agents", &self.agents)
            .field("rate_limit", &self.rate_limit)
            .field("burst", &self.burst)
            .field("seed", &self.seed)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[redacted]")
            .field("wfm_rate_limit", &self.wfm_rate_limit)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .field("latency_ms", &self.latency_ms)
            .field("latency_jitter_ms", &self.latency_jitter_ms)
            .field("fault_rate", &self.fault_rate)
            .field("break_notice_secs", &self.break_notice_secs)
            .field("exit_on_stdin_eof", &self.exit_on_stdin_eof)
            .field("agent_changes_per_hour", &self.agent_changes_per_hour)
            .field("contacts_per_hour", &self.contacts_per_hour)
            .field("contact_mean_s", &self.contact_mean_s)
            .field(
                "supervisor_changes_per_hour",
                &self.supervisor_changes_per_hour,
            )
            .field("log_in_out", &self.log_in_out)
            .finish()
    }
}

/// Examples, the admin endpoints (from the server's own list) and the exit codes.
fn after_help() -> String {
    let mut text = String::from(
        "Examples:
  cxone-agent-state sim-server --listen 127.0.0.1:8080 --agents 100
  cxone-agent-state sim-server --fault-rate 0.05 --rate-limit 600 --burst 20
  cxone-agent-state sim-server --profile cxone
  curl -s http://127.0.0.1:8080/admin/ground-truth

The first stdout line is `sim-server listening on http://HOST:PORT`, then one JSON line
{\"profile\",\"baseUrl\",\"clientId\",\"agents\",\"ratePerMinute\",\"burst\"}. Serves until Ctrl-C (or stdin
EOF with --exit-on-stdin-eof). Point the other commands at it with --base-url, --client-id sim-client and
--client-secret sim-secret.

The tenant also serves the real CXone API (the cxone profile): discovery, /auth/token, /inContactAPI/...
and /schedules/export. With --profile cxone the JSON line adds authBase, accessKeyId, tenantId, wfmBase and
wfmRatePerMinute. The configuration announces the WFM host https://sim.sim.invalid, which does not resolve:
set a client's WFM base to the server's URL (wfmBase) instead.

Admin endpoints (JSON; not rate limited, not counted):
",
    );
    for (method, path, what) in sim_server::ADMIN_ENDPOINTS {
        text.push_str(&format!("  {method:<5}{path:<26}{what}\n"));
    }
    text.push_str("\nSettings read: none (flags only).\n\n");
    text.push_str(exit_codes_help!());
    text
}

impl SimServerArgs {
    fn burst(&self) -> u32 {
        // The same default the engine assumes when it is not told a tenant's burst.
        RateLimit {
            per_minute: self.rate_limit,
            burst: self.burst,
        }
        .effective_burst()
    }

    /// The agents' own activity, from the activity flags given (each checked as the server checks it).
    fn activity(&self) -> Result<ActivityConfig, Failure> {
        let mut activity = ActivityConfig::default();
        for (flag, value) in [
            ("--agent-changes-per-hour", &self.agent_changes_per_hour),
            ("--contacts-per-hour", &self.contacts_per_hour),
            ("--contact-mean-s", &self.contact_mean_s),
            (
                "--supervisor-changes-per-hour",
                &self.supervisor_changes_per_hour,
            ),
            ("--log-in-out", &self.log_in_out),
        ] {
            if let Some(value) = value {
                sim_server::apply_activity_flag(&mut activity, flag, value)
                    .map_err(|e| Failure::usage(format!("invalid setting {e}")))?;
            }
        }
        Ok(activity)
    }

    fn config(&self) -> anyhow::Result<SimConfig> {
        let config = SimConfig {
            activity: self.activity()?,
            seed: self.seed,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_ttl_s: self.token_ttl,
            rate_per_minute: self.rate_limit,
            burst: self.burst(),
            latency_ms: self.latency_ms,
            latency_jitter_ms: self.latency_jitter_ms,
            break_notice_ms: self.break_notice_secs.saturating_mul(1000),
            faults: RandomFaults {
                rate: self.fault_rate,
                kinds: RandomFaults::default_kinds(),
            },
            access_key_id: self.access_key_id.clone(),
            access_key_secret: self.access_key_secret.clone(),
            wfm_rate_per_minute: self.wfm_rate_limit,
            wfm_burst: self.wfm_rate_limit,
            ..SimConfig::default()
        };
        config.validate().context("invalid sim-server settings")?;
        Ok(config)
    }

    /// The startup JSON line: what a client of `profile` needs to connect, never a secret.
    fn startup_info(&self, base_url: &str) -> anyhow::Result<serde_json::Value> {
        let mut info = serde_json::json!({
            "profile": self.profile.to_possible_value().map(|v| v.get_name().to_owned()),
            "baseUrl": base_url,
            "clientId": self.client_id,
            "agents": self.agents,
            "ratePerMinute": self.rate_limit,
            "burst": self.burst(),
        });
        if self.profile == SimProfile::Cxone {
            let config = self.config()?;
            for (key, value) in [
                ("authBase", serde_json::json!(base_url)),
                ("accessKeyId", serde_json::json!(config.access_key_id)),
                ("tenantId", serde_json::json!(config.tenant_id)),
                // The announced WFM host does not resolve; over HTTP the export is at the server's URL.
                ("wfmBase", serde_json::json!(base_url)),
                (
                    "wfmRatePerMinute",
                    serde_json::json!(config.wfm_rate_per_minute),
                ),
            ] {
                info[key] = value;
            }
        }
        Ok(info)
    }

    fn tenant(&self, now_ms: u64) -> anyhow::Result<SimTenant> {
        let mut tenant = SimTenant::new(self.config()?);
        tenant.advance_to(now_ms);
        for i in 0..self.agents {
            tenant.add_agent(AgentPlan::on_shift(
                format!("agent-{:04}", i + 1),
                now_ms.saturating_sub(HOUR_MS),
                now_ms.saturating_add(23 * HOUR_MS),
            ));
        }
        Ok(tenant)
    }
}

/// Serves the simulated tenant until Ctrl-C (or stdin EOF with `--exit-on-stdin-eof`).
pub fn run(args: &SimServerArgs) -> anyhow::Result<ExitCode> {
    let tenant = args.tenant(cxone_agent_state::now_ms())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(serve(args, tenant));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(args: &SimServerArgs, tenant: SimTenant) -> anyhow::Result<ExitCode> {
    let handle = sim_server::start(args.listen, tenant)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let base_url = handle.base_url();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "sim-server listening on {base_url}")?;
        writeln!(out, "{}", args.startup_info(&base_url)?)?;
        out.flush()?;
    }
    let stdin_closed = if args.exit_on_stdin_eof {
        Some(watch_stdin_eof()?)
    } else {
        None
    };
    let stdin_closed = async {
        match stdin_closed {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for Ctrl-C")?;
            eprintln!("sim-server: interrupted, stopping");
        }
        () = stdin_closed => eprintln!("sim-server: stdin closed, stopping"),
    }
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Reads (and discards) stdin on a plain thread, which never blocks the runtime's shutdown, and signals EOF.
fn watch_stdin_eof() -> anyhow::Result<oneshot::Receiver<()>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("sim-server-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        })
        .context("cannot watch stdin")?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimServerArgs,
    }

    fn args(argv: &[&str]) -> SimServerArgs {
        Cli::parse_from(std::iter::once("sim-server").chain(argv.iter().copied())).args
    }

    #[test]
    fn cxone_profile_prints_its_connection_settings_and_no_secret() {
        let info = args(&["--profile", "cxone", "--wfm-rate-limit", "7"])
            .startup_info("http://127.0.0.1:9")
            .unwrap();
        assert_eq!(info["profile"], "cxone");
        assert_eq!(info["authBase"], "http://127.0.0.1:9");
        assert_eq!(info["wfmBase"], "http://127.0.0.1:9");
        assert_eq!(info["accessKeyId"], "sim-access-key");
        assert_eq!(info["clientId"], "sim-client");
        assert_eq!(info["wfmRatePerMinute"], 7);
        assert_eq!(info["tenantId"], SimConfig::default().tenant_id);
        let text = info.to_string();
        assert!(
            !text.contains("sim-access-secret") && !text.contains("sim-secret"),
            "{text}"
        );
    }

    #[test]
    fn seed_profile_prints_what_it_always_did() {
        let info = args(&[]).startup_info("http://127.0.0.1:9").unwrap();
        assert_eq!(info["profile"], "seed");
        assert_eq!(info["baseUrl"], "http://127.0.0.1:9");
        assert!(info.get("authBase").is_none() && info.get("wfmBase").is_none());
        let config = args(&["--access-key-secret", "a=b"]).config().unwrap();
        assert_eq!(config.access_key_secret, "a=b");
        assert_eq!(config.wfm_burst, 100);
    }
}
