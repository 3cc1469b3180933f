//! `cxone-agent-state serve`: the engine as an authenticated HTTP service (axum, in the same process as the
//! driver), with metrics, server-sent events and an OpenAPI document; and its API keys' tools
//! (`serve new-key`, `serve check-key`). See `docs/serve.md`.

pub mod api;
pub mod config;
pub mod keys;
pub mod metrics;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::NoDelayAcceptor;
use clap::{Args, CommandFactory, Subcommand};
use cxone_agent_state::core::{redact_url, Source};
use cxone_agent_state::{AgentStateManager, ManagerConfig, Notice, StopBounds};
use serde_json::json;

use super::connect::ConnectArgs;
use super::fail::{code, exit, Failure};
use keys::{Access, ApiKeys};

/// `serve`: the service, or one of its tools.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    /// A tool instead of the service.
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// The service's options.
    #[command(flatten)]
    run: RunArgs,
}

/// Options of the service.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where to listen: `HOST:PORT` (port 0 picks a free one; the address is said on stderr).
    #[arg(
        long,
        env = "CXONE_SERVE_LISTEN",
        default_value = "127.0.0.1:8080",
        help_heading = "Service"
    )]
    listen: String,
    /// The API key file: one `NAME SHA256-HEX [read-only]` per line (see `serve new-key`).
    #[arg(
        long,
        env = "CXONE_API_KEYS_FILE",
        value_name = "FILE",
        help_heading = "Service"
    )]
    api_keys: Option<PathBuf>,
    /// `/metrics` needs an API key too (it answers without one by default).
    #[arg(long, env = "CXONE_SERVE_METRICS_AUTH", help_heading = "Service")]
    metrics_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        env = "CXONE_SERVE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "Service"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(
        long,
        env = "CXONE_SERVE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Service"
    )]
    tls_key: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, env = "CXONE_SERVE_MAX_BODY_BYTES", default_value_t = 1 << 20, help_heading = "Service")]
    max_body_bytes: usize,
    /// Most rows in one batch (`POST /v1/transitions`).
    #[arg(
        long,
        env = "CXONE_SERVE_MAX_BATCH",
        default_value_t = 10_000,
        help_heading = "Service"
    )]
    max_batch: usize,
    /// Longest a request's head or body may take to arrive, in milliseconds.
    #[arg(
        long,
        env = "CXONE_SERVE_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        help_heading = "Service"
    )]
    read_timeout_ms: u64,
    /// On SIGTERM: how long requests in flight may take to finish before their connections are closed.
    #[arg(
        long,
        env = "CXONE_SERVE_SHUTDOWN_GRACE_SECS",
        default_value_t = 30,
        help_heading = "Service"
    )]
    shutdown_grace_secs: u64,
    /// Observe agent states changed elsewhere while serving (cxone; ignored on seed).
    #[arg(long, env = "CXONE_SERVE_OBSERVE", value_name = "true|false", default_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(),
          help_heading = "Service")]
    observe: bool,
    /// Log as JSON lines (one object per line, with the request id of each call).
    #[arg(long, env = "CXONE_LOG_JSON", help_heading = "Service")]
    log_json: bool,
    /// A TOML file of settings, named as their environment variables (flags > environment > file).
    #[arg(
        long,
        env = "CXONE_CONFIG",
        value_name = "FILE",
        help_heading = "Service"
    )]
    config: Option<PathBuf>,
    /// Check the settings and print the effective ones (secrets redacted), then exit: 0 valid, 64 not.
    #[arg(long, help_heading = "Service")]
    check_config: bool,
    /// `--check-config`: print JSON.
    #[arg(long)]
    json: bool,
}

impl ServeArgs {
    /// Whether the service logs JSON lines.
    pub fn log_json(&self) -> bool {
        self.command.is_none() && self.run.log_json
    }

    /// Whether this runs the service (rather than a tool).
    pub fn is_service(&self) -> bool {
        self.command.is_none()
    }
}

/// `serve` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Prints a fresh random API key once, with the line to add to the key file (which holds only its
    /// SHA-256).
    NewKey(NewKeyArgs),
    /// Reads an API key on stdin and says which line of the key file it matches, and its access (exit 1 when
    /// none does). The key is never printed.
    CheckKey(CheckKeyArgs),
}

/// Options of `serve new-key`.
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// The key's name, as the service's logs and metrics will name its caller: 1 to 64 letters, digits,
    /// '-', '_' or '.'.
    name: String,
    /// The key reaches only the GET endpoints.
    #[arg(long)]
    read_only: bool,
    /// Print JSON: {"name","key","line"}.
    #[arg(long)]
    json: bool,
}

/// Options of `serve check-key`.
#[derive(Debug, Args)]
pub struct CheckKeyArgs {
    /// The key file: one `NAME SHA256-HEX [read-only]` per line.
    #[arg(long, env = "CXONE_API_KEYS_FILE", value_name = "FILE")]
    api_keys: PathBuf,
    /// Print JSON: {"name","access"}.
    #[arg(long)]
    json: bool,
}

/// Runs `serve`: the service, or a tool.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(ServeCommand::NewKey(a)) => new_key(a),
        Some(ServeCommand::CheckKey(a)) => check_key(a),
        None => serve(&args.run),
    }
}

/// The variable names a configuration file may set: every option's variable of `serve`, and every setting
/// the engine's settings read.
pub fn known_variables(serve: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    names.extend(super::connect::setting_variables().map(|(v, _, _)| v.to_owned()));
    names.insert("CXONE_LOG".to_owned());
    names.remove("CXONE_CONFIG");
    names
}

/// Everything the service needs, checked.
struct Plan {
    listen: SocketAddr,
    keys: ApiKeys,
    keys_file: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    manager: ManagerConfig,
    limits: api::Limits,
}

impl RunArgs {
    fn plan(&self) -> Result<Plan, Failure> {
        let invalid = |what: String| Failure {
            exit: exit::USAGE,
            ..Failure::new("INVALID_CONFIG", what)
        };
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(format!(
                "--listen {:?} is not HOST:PORT (e.g. 127.0.0.1:8080)",
                self.listen
            ))
        })?;
        let keys_file = self.api_keys.clone().ok_or_else(|| {
            invalid(
                "the service needs API keys: --api-keys FILE or CXONE_API_KEYS_FILE (make one with                  `cxone-agent-state serve new-key NAME`)"
                    .to_owned(),
            )
        })?;
        let text = std::fs::read_to_string(&keys_file)
            .map_err(|e| invalid(format!("{}: {e}", keys_file.display())))?;
        let keys =
            ApiKeys::parse(&text).map_err(|e| invalid(format!("{}: {e}", keys_file.display())))?;
        if keys.count() == 0 {
            return Err(invalid(format!("{} holds no key", keys_file.display())));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                load_tls(c, k).map_err(invalid)?;
                Some((c.clone(), k.clone()))
            }
            _ => None,
        };
        if self.max_body_bytes == 0 || self.max_batch == 0 || self.read_timeout_ms == 0 {
            return Err(invalid(
                "--max-body-bytes, --max-batch and --read-timeout-ms are at least 1".to_owned(),
            ));
        }
        let mut manager = self.connect.config()?;
        manager.engine.source = Source::Service;
        manager.observe_at_start = self.observe;
        Ok(Plan {
            listen,
            keys,
            keys_file,
            tls,
            manager,
            limits: api::Limits {
                max_body_bytes: self.max_body_bytes,
                max_batch: self.max_batch,
                read_timeout: Duration::from_millis(self.read_timeout_ms),
            },
        })
    }
}

/// Reads a certificate chain and its key (PEM) into a rustls server configuration.
fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn serve(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let plan = args.plan()?;
    if args.check_config {
        return check_config(args, &plan);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve_async(args, plan))
}

/// `--check-config`: every setting of `serve`, its value (secrets redacted) and where it came from.
fn check_config(args: &RunArgs, plan: &Plan) -> anyhow::Result<ExitCode> {
    let Some(matches) = super::connect::leaf_matches() else {
        return Ok(ExitCode::SUCCESS);
    };
    let command = crate::Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("serve is a subcommand");
    let variable_of = |id: &str| {
        super::connect::setting_variables()
            .find(|(_, i, _)| *i == id)
            .map(|(v, _, _)| v.to_owned())
    };
    let mut rows = Vec::new();
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "check_config" | "json" | "help") || arg.get_long().is_none() {
            continue;
        }
        let variable = arg
            .get_env()
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| variable_of(id));
        let raw = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| {
                variable
                    .as_deref()
                    .and_then(|v| std::env::var(v).ok())
                    .filter(|v| !v.is_empty())
            });
        let secret =
            arg.is_hide_env_values_set() || variable.as_deref().is_some_and(config::is_secret);
        let value = raw.map(|v| {
            if secret {
                cxone_agent_state::core::REDACTED.to_owned()
            } else if id.ends_with("url") || id.ends_with("base") {
                redact_url(&v)
            } else {
                v
            }
        });
        rows.push(json!({
            "flag": format!("--{}", arg.get_long().unwrap_or(id)),
            "variable": variable,
            "value": value,
            "source": config::source_of(matches, id, variable.as_deref()),
        }));
    }
    let summary = json!({
        "valid": true,
        "profile": plan.manager.engine.profile.as_str(),
        "listen": plan.listen.to_string(),
        "tls": plan.tls.is_some(),
        "apiKeys": plan.keys.count(),
        "settings": rows,
    });
    if args.json || !std::io::stdout().is_terminal() {
        outln!("{summary}");
    } else {
        outln!(
            "configuration valid: profile {}, listening on {} ({}), {} API key(s) in {}",
            plan.manager.engine.profile.as_str(),
            plan.listen,
            if plan.tls.is_some() { "HTTPS" } else { "HTTP" },
            plan.keys.count(),
            plan.keys_file.display()
        );
        for r in &rows {
            outln!(
                "  {:<34} {:<12} {}",
                r["flag"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or(""),
                r["value"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve_async(args: &RunArgs, plan: Plan) -> anyhow::Result<ExitCode> {
    let Plan {
        listen,
        keys,
        keys_file: _,
        tls,
        manager: config,
        limits,
    } = plan;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Failure::new("LISTEN_FAILED", format!("cannot listen on {listen}: {e}")))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let metrics = metrics::Metrics::new();
    let audit_log = args.connect.audit_log().to_owned();
    let manager = Arc::new(
        AgentStateManager::start(config.with_io_observer(metrics.clone()))
            .await
            .map_err(|e| Failure::new(e.code().as_str(), e.to_string()))?,
    );
    let restored = manager.restored();
    if restored.resumed + restored.abandoned + restored.webhooks > 0 {
        tracing::info!(
            resumed = restored.resumed,
            abandoned = restored.abandoned,
            webhooks = restored.webhooks,
            "recovered what the log held open"
        );
    }
    // Metrics hear every event.
    let mut notices = manager.subscribe();
    let counting = metrics.clone();
    tokio::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(Notice::Event(e)) => counting.event(&e),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => counting.missed(n),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let signalled = stopping.clone();
    let token_ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(api::readiness(
        manager.clone(),
        token_ready.clone(),
        stopping.clone(),
    ));
    let app = Arc::new(api::AppState {
        manager: manager.clone(),
        keys,
        metrics,
        limits,
        audit_log: audit_log.clone(),
        metrics_need_key: args.metrics_auth,
        token_ready,
        stopping,
    });
    let router = api::router(app);
    let handle = axum_server::Handle::new();
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            "serving plain HTTP on {local}: API keys cross the network in clear; give --tls-cert and --tls-key"
        );
        eprintln!(
            "warning: serving plain HTTP on {local}, not loopback: API keys cross the network in clear              (give --tls-cert and --tls-key)"
        );
    }
    eprintln!(
        "listening on {scheme}://{local} (profile {})",
        manager_profile(args)
    );
    tracing::info!(%local, scheme, "listening");
    // SIGTERM or Ctrl-C: no new connections and no new changes (they answer CLOSED); requests in flight
    // go on. Once the grace is over, changes never sent end CLOSED (audited) and their requests answer so;
    // changes already sent get one request timeout more, then whatever is open ends (OUTCOME_UNKNOWN if it
    // may have been sent, settled by the next start) and is answered; connections still open two seconds
    // later are closed. The outbox has its drain time from the signal; the log is synced.
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let bounds = StopBounds::graceful(
        grace,
        args.connect.request_timeout(),
        args.connect.webhook_drain(),
    );
    let http_deadline = bounds.close_after.unwrap_or(grace) + Duration::from_secs(2);
    let shutdown = handle.clone();
    let stopping_manager = manager.clone();
    let mut stops = super::connect::stop_requests();
    let stopper = tokio::spawn(async move {
        stops.recv().await?;
        eprintln!("stopping: no new connections or changes; finishing requests in flight");
        tracing::info!("stop requested");
        let _ = stop_tx.send(true);
        stopping_manager.stop_accepting().await;
        shutdown.graceful_shutdown(Some(http_deadline));
        Some(stopping_manager.stop(bounds).await)
    });
    let read_timeout = Duration::from_millis(args.read_timeout_ms);
    let service = router.into_make_service();
    // Every accepted connection sends as it writes (TCP_NODELAY): with Nagle's algorithm a small write
    // (an answer, a streamed batch row, an event) waits behind any unacknowledged one, up to the client's
    // delayed ACK (tens of milliseconds). TLS, when given, wraps the same acceptor.
    let mut server = axum_server::from_tcp(listener)
        .acceptor(NoDelayAcceptor)
        .handle(handle);
    tune(server.http_builder(), read_timeout);
    let served = match tls {
        Some((cert, key)) => {
            let config = load_tls(&cert, &key).map_err(|e| Failure::new("INVALID_CONFIG", e))?;
            let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
            server
                .map(|no_delay| {
                    axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(no_delay)
                })
                .serve(service)
                .await
        }
        None => server.serve(service).await,
    };
    if let Err(e) = served {
        tracing::error!("the server failed: {e}");
    }
    // Stopped by a signal: the stop under way ends. Otherwise (the server failed) the same stop, at once.
    let by_signal = *signalled.borrow();
    let summary = if by_signal {
        stopper.await.ok().flatten()
    } else {
        stopper.abort();
        None
    };
    let summary = match summary {
        Some(s) => s,
        None => {
            let now = StopBounds::graceful(Duration::ZERO, Duration::ZERO, bounds.webhook_drain);
            manager.stop(now).await
        }
    };
    if summary.ended_closed > 0 {
        tracing::warn!(
            ended = summary.ended_closed,
            "the stop's grace ran out: changes never sent were ended CLOSED (not made)"
        );
    }
    if summary.ended_unknown > 0 {
        tracing::warn!(
            ended = summary.ended_unknown,
            "the stop's bound ran out: changes that may have reached the tenant ended OUTCOME_UNKNOWN (the next start settles them)"
        );
    }
    if summary.undelivered_webhooks > 0 {
        eprintln!(
            "{} webhook event(s) are still waiting; they will be delivered on the next start",
            summary.undelivered_webhooks
        );
    }
    super::connect::print_head(&audit_log, &summary.audit_head);
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// HTTP/1 only, with a deadline on each request's head (a slow client cannot hold a connection open).
fn tune(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    read_timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(read_timeout);
}

fn manager_profile(args: &RunArgs) -> String {
    args.connect
        .config()
        .map(|c| c.engine.profile.as_str().to_owned())
        .unwrap_or_default()
}

fn new_key(args: &NewKeyArgs) -> anyhow::Result<ExitCode> {
    if !keys::is_valid_name(&args.name) {
        return Err(
            Failure::usage("a key's name is 1 to 64 letters, digits, '-', '_' or '.'").into(),
        );
    }
    let key = keys::new_key().map_err(|e| Failure::new("FAILED", format!("no randomness: {e}")))?;
    let access = if args.read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let line = keys::key_line(&args.name, &key, access);
    if args.json || !std::io::stdout().is_terminal() {
        outln!("{}", json!({ "name": args.name, "key": key, "line": line }));
    } else {
        outln!(
            "API key for {} (shown once; keep it in a secret store):",
            args.name
        );
        outln!("{key}");
        outln!("add this line to the key file (CXONE_API_KEYS_FILE):");
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn check_key(args: &CheckKeyArgs) -> anyhow::Result<ExitCode> {
    let unreadable = |what: String| Failure::new(code::INPUT_UNREADABLE, what);
    let text = std::fs::read_to_string(&args.api_keys)
        .map_err(|e| unreadable(format!("{}: {e}", args.api_keys.display())))?;
    let keys = ApiKeys::parse(&text)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.api_keys.display())))?;
    let mut presented = String::new();
    std::io::stdin()
        .read_to_string(&mut presented)
        .map_err(|e| unreadable(format!("stdin: {e}")))?;
    match keys.check(presented.trim()) {
        Some(e) => {
            let access = match e.access {
                Access::ReadWrite => "read-write",
                Access::ReadOnly => "read-only",
            };
            if args.json || !std::io::stdout().is_terminal() {
                outln!("{}", json!({ "name": e.name, "access": access }));
            } else {
                outln!("the key is {}'s ({access})", e.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Err(Failure::new(
            "UNAUTHORIZED",
            format!(
                "the key matches none of the {} keys in {}",
                keys.count(),
                args.api_keys.display()
            ),
        )
        .into()),
    }
}
