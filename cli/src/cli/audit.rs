//! `cxone-agent-state audit verify` and `cxone-agent-state report`: read the durable log back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cxone_agent_state_core::{
    scan_log, ChainHead, ErrorCode, HeadAnchor, LogScan, LogState, Record, ReportReplay,
};

use super::fail::code;
use super::tables;

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain of every audit record (and that every other record follows from the ones
    /// before it); names the first broken line and exits 1 on tampering. The OK line ends with the head,
    /// `SEQ:HASH` of the last audit record (`none` without any): note it to check the log later with
    /// `--head`.
    #[command(after_help = concat!(
        "Examples:
  cxone-agent-state audit verify cxone-audit.jsonl
  cxone-agent-state audit verify cxone-audit.jsonl --head 41:3f9a…(64 hex)
  cxone-agent-state audit verify cxone-audit.jsonl --json

Every command that writes the log prints its head on stderr (`audit head: SEQ:HASH`). A hash chain cannot
see that its last records were deleted: keep the head elsewhere and pass it to --head. Audit records may
hold only the members their hash covers. Reads the log without changing or locking it.

Settings read: none (the log is the argument).

",
        exit_codes_help!()
    ))]
    Verify {
        /// The log (JSON Lines).
        file: PathBuf,
        /// Also require the audit record this head names, as `audit verify` printed it (`SEQ:HASH`): a
        /// hash chain cannot show that its last records were removed, an anchor noted earlier can. The log
        /// may go on past it.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<HeadAnchor>,
        /// Print one JSON object: `{ok, auditRecords, records, head, error: {code, message, line}}` (with
        /// `code` and `message` also at the top on failure). The default when stdout is not a terminal.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `audit` subcommand.
pub fn run(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        // A verdict, like a transition's outcome: JSON with --json or when stdout is not a terminal.
        AuditCommand::Verify { file, head, json } => {
            verify(file, head.as_ref(), super::fail::json_mode(*json))
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>, super::fail::Failure> {
    std::fs::read(file).map_err(|e| {
        super::fail::Failure::new(
            ErrorCode::AuditLogUnavailable.as_str(),
            format!("cannot read {}: {e}", file.display()),
        )
    })
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

/// Why `audit verify` fails: a coded message, and the line when one is to blame.
struct Failure {
    code: ErrorCode,
    message: String,
    line: Option<usize>,
}

fn verify(file: &Path, anchor: Option<&HeadAnchor>, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    // Counted as the records are read, so a failure still says how far the log verified.
    let (mut records, mut audit_records) = (0u64, 0u64);
    let mut head = ChainHead::default();
    let mut hash_at_anchor = None;
    let scan = scan_log(&bytes, LogState::default(), |r| {
        records += 1;
        if let Record::Audit(a) = r {
            audit_records += 1;
            head.next_seq = a.seq + 1;
            head.last_hash.clone_from(&a.hash);
            if anchor.is_some_and(|h| h.seq() == a.seq) {
                hash_at_anchor = Some(a.hash.clone());
            }
        }
    });
    let failure = match &scan {
        Err(e) => Some(Failure {
            code: e.code(),
            message: e.to_string(),
            line: Some(e.line()),
        }),
        Ok(scan) => {
            torn_note(scan);
            anchor
                .and_then(|a| a.check(&head, hash_at_anchor.as_deref()).err())
                .map(|e| Failure {
                    code: e.code(),
                    message: e.to_string(),
                    line: None,
                })
        }
    };
    if json {
        let error = failure.as_ref().map(|f| {
            serde_json::json!({ "code": f.code.as_str(), "message": f.message, "line": f.line })
        });
        let mut report = serde_json::json!({
            "ok": failure.is_none(),
            "auditRecords": audit_records,
            "records": records,
            "head": head.anchor_text(),
            "error": error,
        });
        // Like every error the command line reports in JSON: `code` and `message` at the top.
        if let Some(f) = &failure {
            report["code"] = f.code.as_str().into();
            report["message"] = f.message.clone().into();
        }
        outln!("{report}");
    } else if let Some(f) = &failure {
        outln!("FAIL: {}: {}", file.display(), f.message);
    } else {
        let anchored = anchor.map_or(String::new(), |a| {
            format!(", anchored record seq {} present", a.seq())
        });
        outln!(
            "OK: {audit_records} audit records ({records} records in all), hash chain intact{anchored}; head {}",
            head.anchor_text()
        );
    }
    Ok(if failure.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Options of `report`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  cxone-agent-state report
  cxone-agent-state report --audit-log simulate-audit.jsonl --json
  cxone-agent-state report --csv > report.csv

The report is rebuilt from the audit records alone (the log must verify): transitions, successes,
failures by code, outcomes unknown and settled, policy violations, latency percentiles, per-state counts,
utilization and idle time per agent.

Settings read: CXONE_AUDIT_LOG (the same default as `transition` and `bulk`).

",
    exit_codes_help!()
))]
pub struct ReportArgs {
    /// The log to rebuild the report from.
    #[arg(long, env = "CXONE_AUDIT_LOG", default_value = "cxone-audit.jsonl")]
    audit_log: PathBuf,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (`section,key,value` rows, easy to pivot).
    #[arg(long)]
    csv: bool,
    /// Compute schedule adherence and conformance against this stored schedule, in the cxone export's
    /// format ({"agentSchedules":[{"userId","shifts":[…]}]}); `simulate --schedule-out` writes one. Its
    /// userId must be the agent as the audit log names it (the agentId on cxone).
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// The adherence rule table (JSON: {"byCategory":…, "byActivity":…, "byCode":…}); default: the
    /// documented table (docs/adherence.md). Needs --schedule.
    #[arg(long, value_name = "FILE", requires = "schedule")]
    rules: Option<PathBuf>,
    /// Activity titles that are mandatory breaks in the schedule [default: Break, Lunch]
    /// [env: CXONE_BREAK_ACTIVITIES].
    #[arg(long, env = "CXONE_BREAK_ACTIVITIES", value_name = "TITLES")]
    break_activities: Option<String>,
    /// Start of the adherence window (RFC 3339) [default: the earliest shift start].
    #[arg(long, value_name = "TIME", requires = "schedule")]
    from: Option<String>,
    /// End of the adherence window (RFC 3339) [default: the latest shift end].
    #[arg(long, value_name = "TIME", requires = "schedule")]
    to: Option<String>,
}

/// Adherence against the stored schedule at `path`, from the timelines the log's records tell.
fn adherence(
    args: &ReportArgs,
    path: &Path,
    replay: &ReportReplay,
) -> anyhow::Result<cxone_agent_state_core::adherence::AdherenceReport> {
    use cxone_agent_state_core::adherence::{AdherenceWindow, RuleTable};
    use cxone_agent_state_core::cxone::wfm::{read_schedules, BreakRule};
    let unreadable = |what: String| super::fail::Failure::new(code::INPUT_UNREADABLE, what);
    let text = std::fs::read_to_string(path)
        .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
    let rule: BreakRule = match &args.break_activities {
        Some(t) => t
            .parse()
            .map_err(|e| super::fail::Failure::usage(format!("CXONE_BREAK_ACTIVITIES: {e}")))?,
        None => BreakRule::default(),
    };
    let schedules = read_schedules(&text, &rule)
        .map_err(|e| unreadable(format!("{}: {}", path.display(), e.message)))?;
    let rules: RuleTable = match &args.rules {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| unreadable(format!("{}: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| unreadable(format!("{}: not a rule table: {e}", p.display())))?
        }
        None => RuleTable::default(),
    };
    let time = |flag: &str, t: &Option<String>| -> anyhow::Result<Option<u64>> {
        t.as_deref()
            .map(|t| {
                cxone_agent_state_core::parse_iso8601(t).ok_or_else(|| {
                    super::fail::Failure::usage(format!("--{flag} {t}: not an RFC 3339 time"))
                        .into()
                })
            })
            .transpose()
    };
    let (from, to) = (time("from", &args.from)?, time("to", &args.to)?);
    let window = AdherenceWindow::of_schedules(schedules.values()).map(|w| w.bounded(from, to));
    Ok(replay.timelines().adherence(&rules, &schedules, window))
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
        super::fail::Failure::new(
            e.code().as_str(),
            format!(
                "{} does not verify ({e}); run `cxone-agent-state audit verify`",
                args.audit_log.display(),
            ),
        )
    })?;
    torn_note(&scan);
    let mut report = replay.report();
    if let Some(path) = &args.schedule {
        report.adherence = Some(adherence(args, path, &replay)?);
    }
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
