//! `cxone-agent-state simulate`: a shift day against the in-process simulated tenant, on virtual time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use comfy_table::Cell;
use cxone_agent_state_core::sim::{
    ActivityConfig, AgentAccuracy, DayAccuracy, DayRun, DaySummary, WorkdayConfig,
};
use cxone_agent_state_core::{scan_log, ChainHead, ErrorCode, LogState, ProfileKind, Record};
use indicatif::{ProgressBar, ProgressStyle};

use super::connect::print_head;
use super::fail::{code, refuse_stdout_onto, Failure};
use super::tables::{self, right, table};

/// Options of `simulate`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  cxone-agent-state simulate
  cxone-agent-state simulate --agents 1000 --hours 8 --seed 7 --json
  cxone-agent-state simulate --fault-rate 0.1 --audit-log day.jsonl && cxone-agent-state report --audit-log day.jsonl
  cxone-agent-state simulate --profile cxone --agents 100
  cxone-agent-state simulate --profile cxone --agents 50 --agent-changes-per-hour 4 --contacts-per-hour 8 --observe

On `cxone`, the summary says how far the engine's utilization and idle time are from the tenant's truth (per
agent and overall). Agents, supervisors and the ACD change states on their own with the activity flags; with
--observe the engine watches for those changes, and the same day is run once more without observation so both
errors are printed side by side.

The log starts with a `simulation` record, so an auditor can tell simulated records from real ones.
An existing log is replaced only if a simulation wrote it (or with --force). The log's head (SEQ:HASH)
is printed on stderr. Exits 1 if the tenant ever accepted READY during a mandatory break.

Settings read: none from the environment (flags only; the tenant is in-process).

",
    exit_codes_help!()
))]
pub struct SimulateArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Shift length in hours.
    #[arg(long, default_value_t = 8)]
    hours: u64,
    /// Seed of the day, the tenant and the engine: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of API requests that meet a random fault (5xx, 429, slow, malformed, dropped, revoked token).
    #[arg(long, default_value_t = 0.02)]
    fault_rate: f64,
    /// The tenant's rate limit in requests per minute (the client paces itself to it).
    #[arg(long, default_value_t = 100)]
    rate_limit: u32,
    /// Where the audit log (JSON Lines) is written.
    #[arg(long, default_value = "simulate-audit.jsonl")]
    audit_log: PathBuf,
    /// Print the summary as JSON (report plus the tenant's ground-truth counters) instead of tables.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Replace the log even if it holds records a simulation did not write.
    #[arg(long)]
    force: bool,
    /// The API the engine speaks to the simulated tenant: `seed` (the reference module's endpoints) or
    /// `cxone` (the real CXone API: discovery, the agent directory, unavailable codes, schedule exports).
    #[arg(long, default_value = "seed", value_parser = |s: &str| s.parse::<ProfileKind>().map_err(|e| e.to_string()))]
    profile: ProfileKind,
    /// `cxone`: observe states changed elsewhere (the poll of `agents/states`), and compare with the same day
    /// without observation.
    #[arg(long)]
    observe: bool,
    /// `cxone`: how often per agent and hour an agent changes its own state (break, back to Available).
    #[arg(long, default_value_t = 0.0)]
    agent_changes_per_hour: f64,
    /// `cxone`: how often per agent and hour the ACD offers a contact (taken while Available).
    #[arg(long, default_value_t = 0.0)]
    contacts_per_hour: f64,
    /// `cxone`: the mean length of a contact, in seconds.
    #[arg(long, default_value_t = 180.0)]
    contact_mean_s: f64,
    /// `cxone`: how often per agent and hour a supervisor changes the agent's state.
    #[arg(long, default_value_t = 0.0)]
    supervisor_changes_per_hour: f64,
    /// `cxone`: agents log out outside their shifts and log in at their start.
    #[arg(long)]
    log_in_out: bool,
    /// Agents ask for READY with --defer: one a due break refuses is held and applied when the break ends.
    #[arg(long)]
    defer: bool,
    /// Also write the day's schedules here, in the cxone export's format, so the day's adherence can be
    /// rebuilt later: `report --audit-log LOG --schedule FILE` gives the figures this run prints.
    #[arg(long, value_name = "FILE")]
    schedule_out: Option<PathBuf>,
}

/// Runs the day and prints the report. Exits 1 if the tenant ever accepted READY during a mandatory break.
pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = WorkdayConfig {
        agents: args.agents,
        shift_hours: args.hours,
        seed: args.seed,
        fault_rate: args.fault_rate,
        rate_per_minute: args.rate_limit,
        profile: args.profile,
        activity: ActivityConfig {
            agent_changes_per_hour: args.agent_changes_per_hour,
            contacts_per_hour: args.contacts_per_hour,
            contact_mean_s: args.contact_mean_s,
            supervisor_changes_per_hour: args.supervisor_changes_per_hour,
            log_in_out: args.log_in_out,
        },
        observe: args.observe,
        defer: args.defer,
        ..WorkdayConfig::default()
    };
    if args.observe && args.profile != ProfileKind::Cxone {
        return Err(Failure {
            exit: super::fail::exit::USAGE,
            ..Failure::new(
                ErrorCode::ObserveUnsupported.as_str(),
                "--observe needs --profile cxone: seed has no endpoint to read agent states",
            )
        }
        .into());
    }
    let wall = Instant::now();
    let mut day = DayRun::new(&config)
        .map_err(|e| Failure::usage(format!("invalid simulation settings: {e}")))?;
    refuse_stdout_onto(&args.audit_log)?;
    if !args.force {
        refuse_real_log(&args.audit_log)?;
    }
    let file = File::create(&args.audit_log)
        .with_context(|| format!("cannot create audit log {}", args.audit_log.display()))?;
    let mut audit = BufWriter::new(file);

    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1000)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulating [{bar:40}] {percent:>3}% {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    // Ten virtual minutes per slice: fine-grained enough for the bar, coarse enough to cost nothing.
    const SLICE_MS: u64 = 10 * 60_000;
    let mut records = 0u64;
    while !day.is_done() {
        // The whole log, as a real run writes it: intents, audit records, checkpoints.
        for (_, record) in day.advance(SLICE_MS).records {
            audit.write_all(&record.to_line())?;
            if matches!(record, Record::Audit(_)) {
                records += 1;
            }
        }
        bar.set_position((day.progress() * 1000.0) as u64);
        bar.set_message(format!("{records} audit records"));
    }
    bar.finish_and_clear();
    let file = audit.into_inner().context("cannot flush the audit log")?;
    file.sync_all().context("cannot sync the audit log")?;
    let elapsed = wall.elapsed();

    let (verified, head) = verify_file(&args.audit_log)?;
    print_head(&args.audit_log, &head);
    if let Some(path) = &args.schedule_out {
        let document = cxone_agent_state_core::cxone::wfm::schedule_document(day.schedules());
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .with_context(|| format!("cannot write the schedules to {}", path.display()))?;
    }
    let summary = day.summary();
    // The same day without observation: what observation buys.
    let without = match args.observe {
        true => {
            let mut other = DayRun::new(&WorkdayConfig {
                observe: false,
                ..config.clone()
            })
            .map_err(|e| Failure::usage(format!("invalid simulation settings: {e}")))?;
            other
                .run(|_, _| {})
                .map_err(|e| anyhow::anyhow!("the day without observation did not end: {e}"))?;
            other.summary().accuracy
        }
        false => None,
    };
    let failure = (summary.ground_truth.ready_accepted_during_break > 0).then(|| {
        Failure::new(
            code::COMPLIANCE_FAILURE,
            format!(
                "the tenant accepted READY during a mandatory break {} times",
                summary.ground_truth.ready_accepted_during_break
            ),
        )
    });
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        value["auditLog"] = serde_json::json!({
            "path": args.audit_log.display().to_string(),
            "records": verified,
            "chainVerified": true,
        });
        value["wallTimeMs"] = serde_json::json!(elapsed.as_secs_f64() * 1000.0);
        if let Some(w) = &without {
            value["accuracyWithoutObservation"] = serde_json::to_value(w)?;
        }
        if let Some(f) = &failure {
            // One JSON document: the summary, with the failure's code and message at the top.
            value["code"] = f.code.clone().into();
            value["message"] = f.message.clone().into();
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_tables(&summary)?;
        if let Some(a) = &summary.accuracy {
            print_accuracy(a, without.as_ref())?;
        }
        outln!(
            "audit log: {} ({verified} records, hash chain verified)",
            args.audit_log.display()
        );
        outln!(
            "simulated {:.1} h for {} agents in {:.2} s of wall time",
            (summary.finished_ms - summary.started_ms) as f64 / 3_600_000.0,
            args.agents,
            elapsed.as_secs_f64()
        );
    }
    if let Some(f) = failure {
        if !args.json {
            eprintln!("error: {} ({})", f.message, f.code);
        }
        return Ok(ExitCode::from(f.exit));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the log back and checks its hash chain; returns the number of audit records and the head.
fn verify_file(path: &Path) -> anyhow::Result<(u64, ChainHead)> {
    let bytes = std::fs::read(path)?;
    let scan = scan_log(&bytes, LogState::default(), |_| {})
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        scan.torn_tail.is_none() && !scan.missing_newline,
        "{}: the last line is incomplete",
        path.display()
    );
    Ok((scan.audit_records, scan.state.chain_head().clone()))
}

/// Refuses to replace a log a simulation did not write: one whose first record is not a
/// [`Record::Simulation`] mark (an empty or missing file is fine).
fn refuse_real_log(path: &Path) -> Result<(), Failure> {
    match cxone_agent_state::store::is_simulated(path) {
        Ok(None | Some(true)) => Ok(()),
        Ok(Some(false)) => Err(Failure::new(
            code::LOG_NOT_SIMULATED,
            format!(
                "refusing to replace {}: it holds records a simulation did not write (a real audit log?); \
                 choose another --audit-log, or pass --force to replace it",
                path.display()
            ),
        )),
        Err(e) => Err(Failure::new(
            code::IO_ERROR,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// One row of the accuracy table: a figure of a run.
type Figure = Box<dyn Fn(&DayAccuracy) -> String>;

/// The engine's figures against the tenant's truth: overall (with observation off and on when both ran), then
/// the agents furthest off.
fn print_accuracy(a: &DayAccuracy, without: Option<&DayAccuracy>) -> std::io::Result<()> {
    let label = |a: &DayAccuracy| {
        if a.observed {
            "observation on"
        } else {
            "observation off"
        }
    };
    let runs: Vec<&DayAccuracy> = without.into_iter().chain([a]).collect();
    let mut header = vec!["against the tenant's truth".to_owned()];
    header.extend(runs.iter().map(|r| label(r).to_owned()));
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(header);
    let pp = |x: f64| format!("{:.2} pp", x * 100.0);
    let secs = |ms: f64| format!("{:.1} s", ms / 1000.0);
    let rows: Vec<(&str, Figure)> = vec![
        (
            "mean |utilization error|",
            Box::new(move |r| pp(r.mean_utilization_error)),
        ),
        (
            "max |utilization error|",
            Box::new(move |r| pp(r.max_utilization_error)),
        ),
        (
            "mean |idle time error|",
            Box::new(move |r| secs(r.mean_idle_error_ms)),
        ),
        (
            "max |idle time error|",
            Box::new(move |r| secs(r.max_idle_error_ms as f64)),
        ),
        (
            "agents within one poll interval per change",
            Box::new(|r| format!("{} / {}", r.agents_within_bound, r.agents.len())),
        ),
    ];
    for (name, f) in rows {
        let mut row = vec![Cell::new(name)];
        row.extend(runs.iter().map(|r| right(f(r))));
        t.add_row(row);
    }
    outln!("{t}");
    let mut worst: Vec<&AgentAccuracy> = a.agents.iter().collect();
    worst.sort_by_key(|x| std::cmp::Reverse(x.idle_error_ms().max(x.working_error_ms())));
    let mut t = table([
        "agent (furthest off)",
        "true changes",
        "utilization",
        "true",
        "idle",
        "true idle",
    ]);
    let util = |u: Option<f64>| u.map_or("-".to_owned(), |u| format!("{:.1} %", u * 100.0));
    for x in worst.into_iter().take(5) {
        t.add_row(vec![
            Cell::new(&x.user_id),
            right(x.truth_changes),
            right(util(x.utilization)),
            right(util(x.truth_utilization)),
            right(secs(x.idle_ms as f64)),
            right(secs(x.truth_idle_ms as f64)),
        ]);
    }
    outln!("{t}");
    Ok(())
}

fn print_tables(s: &DaySummary) -> std::io::Result<()> {
    tables::print_report(&s.report)?;
    let g = &s.ground_truth;
    let mut t = table(["simulation", "value"]);
    t.add_row(vec![Cell::new("retries scheduled"), right(s.retries)]);
    t.add_row(vec![
        Cell::new("API requests per transition"),
        right(format!("{:.2}", s.api_requests_per_transition)),
    ]);
    outln!("{t}");

    let mut t = table(["simulated tenant (ground truth)", "value"]);
    let rows: Vec<(&str, u64)> = vec![
        ("requests received", g.total_requests),
        ("429s sent by its rate limiter", g.rate_limited),
        ("faults injected", g.faults_injected),
        ("tokens issued", g.tokens_issued),
        ("state changes accepted", g.state_changes_accepted),
        ("idempotent replays", g.idempotent_replays),
        (
            "changes accepted while unscheduled",
            g.accepted_while_unscheduled,
        ),
        (
            "READY accepted during a mandatory break",
            g.ready_accepted_during_break,
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![Cell::new(k), right(v)]);
    }
    outln!("{t}");
    Ok(())
}
