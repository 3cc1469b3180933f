//! The `cxone-agent-state` command-line program.

/// The exit-code table, as every `--help` and the README show it (a macro, so `concat!` can use it).
macro_rules! exit_codes_help {
    () => {
        "Exit codes:
  0    done
  1    failed (the tenant, the audit log, a file, the network)
  2    refused by compliance policy (bulk: every failed row was a policy refusal)
  64   usage error (unknown flag, missing or invalid value; watch on the seed profile)
  130  interrupted (Ctrl-C): work in flight was finished and the log synced"
    };
}

mod cli;

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::fail;

/// mimalloc: under `serve`'s load glibc malloc (its arena locks, and chunk consolidation when tasks free on
/// another thread what they allocated on one) took about a fifth of the process's CPU. Built without its
/// transparent huge pages (the `no_thp` feature): a fault on such a page zeroes 2 MiB, after compacting memory
/// where the kernel defragments for `madvise`d regions, on the worker that touched it; with them the
/// service's p99 in the load bench was 5 to 16 ms above the library's in some rounds, without them at most
/// 4 ms in any round.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Changes NICE CXone agent states under shift and break compliance, and simulates whole shift days.
///
/// Settings come from the reference module's environment variables (CXONE_DOMAIN, CXONE_CLIENT_ID,
/// CXONE_CLIENT_SECRET, WORKFORCE_WEBHOOK_URL, TARGET_USER_ID, …); flags override them. The cxone profile
/// speaks the real CXone API (CXONE_PROFILE=cxone, or an access key configured).
#[derive(Debug, Parser)]
#[command(
    name = "cxone-agent-state",
    version,
    about,
    after_help = concat!(
        "Examples:
  cxone-agent-state simulate --agents 200 --hours 8
  cxone-agent-state transition --user agent-7 --state READY
  cxone-agent-state transition --profile cxone --user 12345 --state NOT_READY --reason Lunch
  cxone-agent-state bulk shift-change.csv --output results.jsonl
  cxone-agent-state watch --profile cxone --json
  cxone-agent-state audit verify cxone-audit.jsonl --head 41:<hash>

Settings read (flags win): CXONE_DOMAIN, CXONE_BASE_URL, CXONE_TOKEN_URL, CXONE_CLIENT_ID,
CXONE_CLIENT_SECRET, CXONE_RATE_LIMIT_PER_MIN, CXONE_AUDIT_LOG, WORKFORCE_WEBHOOK_URL, WORKFORCE_WEBHOOK_SECRET,
WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER, WORKFORCE_WEBHOOK_RECEIVER_CHANGE, CXONE_MAX_OPEN_CHANGES, TARGET_USER_ID, CXONE_LOG, and for
the cxone profile CXONE_PROFILE, CXONE_ACCESS_KEY_ID, CXONE_ACCESS_KEY_SECRET, CXONE_AUTH_BASE,
CXONE_API_BASE_URL, CXONE_WFM_BASE_URL, CXONE_API_VERSION, CXONE_CLIENT_AUTH, CXONE_SET_STATE_ENCODING,
CXONE_REASON_CODES, CXONE_BREAK_ACTIVITIES, CXONE_WFM_RATE_LIMIT_PER_MIN, CXONE_OBSERVE_INTERVAL_MS,
CXONE_OBSERVE_SETTLE_AFTER_MS, CXONE_OBSERVE_SKIP_IF_IN_EFFECT, CXONE_OBSERVE_STALE_AFTER_MS,
CXONE_SETTLE_WAIT_SECS. When CXONE_PROFILE is unset and an
access key is configured, the profile is cxone (said on stderr).

Errors: with --json, or when stdout is not a terminal, every error is one JSON object
{\"success\":false,\"code\",\"message\"} on stdout; on a terminal, words on stderr.

",
        exit_codes_help!()
    )
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Changes one agent's state and prints the outcome.
    Transition(cli::transition::TransitionArgs),
    /// Observes agent states changed elsewhere (cxone) and prints each change as it is seen.
    Watch(cli::watch::WatchArgs),
    /// Changes many agents' states from a CSV (`userId,state`) or JSON Lines file (`-` for stdin).
    Bulk(cli::bulk::BulkArgs),
    /// Serves the simulated tenant over HTTP on loopback, with admin endpoints and CORS.
    SimServer(cli::sim_server::SimServerArgs),
    /// Serves the engine over HTTP: changes, batches, agents, reports, events, metrics (see docs/serve.md);
    /// `serve new-key` and `serve check-key` manage its API keys.
    #[command(after_help = concat!(
        "Examples:
  cxone-agent-state serve new-key ops-dashboard --read-only
  cxone-agent-state serve --api-keys /etc/cxone-agent-state/api-keys --listen 0.0.0.0:8443 \\
      --tls-cert cert.pem --tls-key key.pem
  cxone-agent-state serve --config /etc/cxone-agent-state/serve.toml --check-config

Settings: every option's environment variable, and --config FILE (TOML, the same names), with the
precedence flags > environment > file. SIGTERM stops accepting, finishes what is in flight, flushes the
log and the outbox, and exits 0.

",
        exit_codes_help!()
    ))]
    Serve(cli::serve::ServeArgs),
    /// Rebuilds the compliance report from a durable audit log.
    Report(cli::audit::ReportArgs),
    /// Audit log tools.
    #[command(subcommand, after_help = concat!(
        "Examples:
  cxone-agent-state audit verify cxone-audit.jsonl --head 41:<hash>

Settings read: none (see `audit verify --help`).

",
        exit_codes_help!()
    ))]
    Audit(cli::audit::AuditCommand),
    /// The webhook outbox: payloads waiting, and dead letters to list and replay.
    #[command(subcommand, after_help = concat!(
        "Examples:
  cxone-agent-state outbox list
  cxone-agent-state outbox replay --event-id <id>

Settings read: CXONE_AUDIT_LOG, and for `replay` the webhook and tenant settings (see each --help).

",
        exit_codes_help!()
    ))]
    Outbox(cli::outbox::OutboxCommand),
    /// Runs agents through a shift day against the in-process simulated tenant, on a virtual clock.
    Simulate(cli::simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    // Errors are one JSON object in JSON mode (`--json` given to any command, or stdout not a terminal).
    // Results are a command's own business: `report`, `audit`, `outbox` and `simulate` print tables unless
    // their `--json` asks for JSON, as their output is for people first.
    let json = fail::json_mode(std::env::args_os().any(|a| a == "--json"));
    // `serve --config FILE`: its entries fill in the variables the environment does not set, before the
    // command line (and the environment) is read.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(serve) = Cli::command().find_subcommand("serve") {
        if let Err(e) = cli::serve::config::apply_file(&argv, &cli::serve::known_variables(serve)) {
            return fail::report(&e, json);
        }
    }
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let cli = match parsed {
        Ok((cli, matches)) => {
            cli::connect::remember_matches(matches);
            cli
        }
        Err(e) => return fail::from_clap(&e, json),
    };
    // The service logs what it does (`info`); the other commands only what went wrong.
    let (service, log_json) = match &cli.command {
        Command::Serve(a) => (a.is_service(), a.log_json()),
        _ => (false, false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CXONE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if service { "info" } else { "warn" })
    });
    // The service writes a line per request: a thread of its own writes them, a batch at a time, so no
    // request waits on a `write` to stderr. Nothing is dropped (a full queue makes the logger wait), and
    // what is queued is written when `main` returns (`_flush_logs_at_exit`).
    let (writer, _flush_logs_at_exit) = if service {
        let (w, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("cxone-log-lines")
            .finish(std::io::BufWriter::new(std::io::stderr()));
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(w),
            Some(guard),
        )
    } else {
        (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            None,
        )
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if log_json {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let result = match &cli.command {
        Command::Transition(a) => cli::transition::run(a, fail::json_mode(a.json)),
        Command::Bulk(a) => cli::bulk::run(a),
        Command::Watch(a) => cli::watch::run(a),
        Command::SimServer(a) => cli::sim_server::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Report(a) => cli::audit::report(a),
        Command::Audit(c) => cli::audit::run(c),
        Command::Outbox(c) => cli::outbox::run(c),
        Command::Simulate(a) => cli::simulate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail::report(&fail::Failure::of(&e), json),
    }
}
