//! The `cxone-agent-state` command-line program.

mod cli;

use clap::{Parser, Subcommand};

/// Changes NICE CXone agent states under shift and break compliance, and simulates whole shift days.
///
/// Settings come from the reference module's environment variables (CXONE_DOMAIN, CXONE_CLIENT_ID,
/// CXONE_CLIENT_SECRET, WORKFORCE_WEBHOOK_URL, TARGET_USER_ID, …); flags override them.
#[derive(Debug, Parser)]
#[command(name = "cxone-agent-state", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Changes one agent's state and prints the outcome as JSON (exit 0 ok, 2 policy violation, 1 other).
    Transition(cli::transition::TransitionArgs),
    /// Changes many agents' states from a CSV (`userId,state`) or JSON Lines file (`-` for stdin).
    Bulk(cli::bulk::BulkArgs),
    /// Serves the simulated tenant over HTTP on loopback, with admin endpoints and CORS.
    SimServer(cli::sim_server::SimServerArgs),
    /// Rebuilds the compliance report from a durable audit log.
    Report(cli::audit::ReportArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// The webhook outbox: payloads waiting, and dead letters to list and replay.
    #[command(subcommand)]
    Outbox(cli::outbox::OutboxCommand),
    /// Runs agents through a shift day against the in-process simulated tenant, on a virtual clock.
    Simulate(cli::simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CXONE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Command::Transition(a) => cli::transition::run(a),
        Command::Bulk(a) => cli::bulk::run(a),
        Command::SimServer(a) => cli::sim_server::run(a),
        Command::Report(a) => cli::audit::report(a),
        Command::Audit(c) => cli::audit::run(c),
        Command::Outbox(c) => cli::outbox::run(c),
        Command::Simulate(a) => cli::simulate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
