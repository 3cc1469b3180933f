//! The `cxone-agent-state` command-line program.

mod cli;

use clap::{Parser, Subcommand};

/// Changes NICE CXone agent states under shift and break compliance, and simulates whole shift days.
#[derive(Debug, Parser)]
#[command(name = "cxone-agent-state", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs agents through a shift day against the in-process simulated tenant, on a virtual clock.
    Simulate(cli::simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cli::simulate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
