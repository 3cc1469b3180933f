//! `cxone-agent-state audit verify` and `cxone-agent-state report`: read the durable log back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cxone_agent_state_core::{scan_log, LogError, LogScan, LogState, Record, ReportReplay};

use super::tables;

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain of every audit record (and that every other record follows from the ones
    /// before it); names the first broken line and exits 1 on tampering.
    Verify {
        /// The log (JSON Lines).
        file: PathBuf,
    },
}

/// Runs an `audit` subcommand.
pub fn run(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { file } => verify(file),
    }
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))
}

fn torn_note(scan: &LogScan) {
    if let Some(t) = &scan.torn_tail {
        eprintln!(
            "warning: the last line ({} bytes) is torn — a write interrupted by a crash, never acknowledged; \
             the next start sets it aside",
            t.len()
        );
    }
    if scan.missing_newline {
        eprintln!("note: the last record is whole but lacks its newline; the next start adds it");
    }
}

fn verify(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    match scan_log(&bytes, LogState::default(), |_| {}) {
        Ok(scan) => {
            torn_note(&scan);
            outln!(
                "OK: {} audit records ({} records in all), hash chain intact; head {}",
                scan.audit_records,
                scan.records,
                scan.state.chain_head().last_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            outln!("FAIL: {}: {}", file.display(), describe(&e));
            Ok(ExitCode::from(1))
        }
    }
}

fn describe(e: &LogError) -> String {
    match e {
        LogError::Broken { line, source } => {
            format!("first broken record on line {line}: {source}")
        }
        other => format!("first broken record: {other}"),
    }
}

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The log to rebuild the report from.
    #[arg(long, env = "CXONE_AUDIT_LOG")]
    audit_log: PathBuf,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (`section,key,value` rows, easy to pivot).
    #[arg(long)]
    csv: bool,
}

/// Rebuilds the compliance report from the log's audit records (the log must verify).
pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(&args.audit_log)?;
    let mut replay = ReportReplay::new(usize::MAX);
    let scan = scan_log(&bytes, LogState::default(), |r| {
        if let Record::Audit(r) = r {
            replay.ingest(r);
        }
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{} does not verify ({}); run `cxone-agent-state audit verify`",
            args.audit_log.display(),
            describe(&e)
        )
    })?;
    torn_note(&scan);
    let report = replay.report();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.csv {
        out!("{}", report.to_csv());
    } else {
        tables::print_report(&report)?;
        outln!(
            "rebuilt from {} audit records of {}",
            scan.audit_records,
            args.audit_log.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
