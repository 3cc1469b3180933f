//! `cxone-agent-state serve`: the HTTP service's tools. So far its API keys: `serve new-key` makes one,
//! `serve check-key` says whose a key is; the service itself is the next step of issue 13.

pub mod keys;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::fail::{code, Failure};
use keys::{Access, ApiKeys};

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

/// Runs a `serve` subcommand.
pub fn run(command: &ServeCommand) -> anyhow::Result<ExitCode> {
    match command {
        ServeCommand::NewKey(a) => new_key(a),
        ServeCommand::CheckKey(a) => check_key(a),
    }
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
