//! `cxone-agent-state bulk`: many state changes from a CSV (`userId,state[,reason]`) or JSON Lines file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, LineWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use cxone_agent_state::AgentStateManager;
use cxone_agent_state_core::{
    scan_log, AuditRecord, ErrorCode, LogState, Record, ReferenceOutcome, ReferencedOutcomes,
    StateChanged, TransitionError, TransitionOptions,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::actor::ActorArgs;
use super::connect::{finish, interrupts, outcome_json, stop_at_once, ConnectArgs};
use super::fail::{code, exit, identity, refuse_stdout_onto, Failure};
use super::settle::settle_unknown;

/// Options of `bulk`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  cxone-agent-state bulk shift-change.csv --output results.jsonl
  cxone-agent-state bulk shift-change.csv --output results.jsonl --resume   # after an interrupted run
  printf 'userId,state\\nagent-7,READY\\n' | cxone-agent-state bulk - --concurrency 8
  printf 'userId,state,reason\\n12345,NOT_READY,Lunch\\n' | cxone-agent-state bulk - --profile cxone

Input: a CSV whose header names `userId` and `state` (any order, any case, extra columns ignored; a UTF-8
byte-order mark is skipped, values are trimmed), or JSON Lines of {\"userId\",\"state\"} (a duplicate member
makes the row MALFORMED_ROW). A malformed row fails alone; the others go on. An optional `reason` column
(or string member) names the reason code of the row's change, as `transition --reason` does (on cxone an
unavailable code of the agent's team, e.g. Lunch); blank means the reason table's.

Output: one JSON line per row, written as soon as it is decided: {\"row\",\"success\":true,\"userId\",
\"previousState\",\"newState\",…} or {\"row\",\"success\":false,\"code\",\"message\",…}. The output (or stdout)
may not be the audit log, one of its companion files (PATH.torn-*) or the input.

Resume: every change carries the reference `bulk:sha256=<input digest>:row=<n>` into its intent and audit record.
With --resume, rows the audit log already holds as done for the same input (succeeded, or sent with the
outcome still unknown, which the next start settles) are skipped, results are appended to --output, and
the results of rows done earlier but never printed are written from the audit log (\"fromAuditLog\":true).

Unknown outcomes (cxone): when rows end OUTCOME_UNKNOWN (the answer was lost; the change may have been
applied), bulk observes the tenant's agent states before it exits, for up to --settle-wait-secs
(CXONE_SETTLE_WAIT_SECS, default 90; 0 turns it off), saying on stderr what it waits for and what it
settled. Each settled row gets a second result line {\"row\",\"success\",\"settled\":true,\"applied\",
\"settles\",\"recordId\",\"evidence\",…} (NOT_APPLIED when it was not applied), and the audit log a
settlement record pointing at the unknown one. The exit code counts a row settled as applied as succeeded,
and one not applied or still unknown as failed. On seed nothing is observed.

Ctrl-C stops starting rows and waits for the changes in flight; a second Ctrl-C stops at once, after
syncing the audit log (changes in flight are journaled and resumed on the next start).

Settings read (flags win): CXONE_PROFILE, CXONE_DOMAIN, CXONE_BASE_URL, CXONE_TOKEN_URL, CXONE_CLIENT_ID,
CXONE_CLIENT_SECRET, CXONE_RATE_LIMIT_PER_MIN, CXONE_AUDIT_LOG, WORKFORCE_WEBHOOK_URL,
WORKFORCE_WEBHOOK_SECRET, WORKFORCE_WEBHOOK_DEAD_LETTER_AFTER, WORKFORCE_WEBHOOK_RECEIVER_CHANGE, CXONE_MAX_OPEN_CHANGES,
the cxone settings (see `transition --help`), CXONE_OBSERVE_INTERVAL_MS, CXONE_OBSERVE_SETTLE_AFTER_MS,
CXONE_OBSERVE_SKIP_IF_IN_EFFECT, CXONE_OBSERVE_STALE_AFTER_MS, CXONE_SETTLE_WAIT_SECS, CXONE_LOG.

",
    exit_codes_help!()
))]
pub struct BulkArgs {
    /// CSV with a `userId,state` header (and optionally `reason`), or JSON Lines of
    /// `{"userId","state"}` (and optionally `"reason"`); `-` reads stdin.
    file: PathBuf,
    /// Transitions in flight at once (the engine still paces requests to the tenant's limit and runs one
    /// change per agent at a time).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Write per-row results (JSON Lines) here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Skip the rows of this input the audit log already holds as done (see Resume below).
    #[arg(long)]
    resume: bool,
    /// Report errors as one JSON object (results are always JSON Lines).
    #[arg(long)]
    json: bool,
    /// Hide the progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// `cxone`: how long to observe the tenant before exiting when rows ended with an unknown outcome, to
    /// settle them [default: 90; 0: do not wait] [env: CXONE_SETTLE_WAIT_SECS].
    #[arg(long, value_name = "SECS")]
    settle_wait_secs: Option<u64>,
    /// Who asks for every row's change, and a supervisor's override of the policy for every row.
    #[command(flatten)]
    actor: ActorArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// One input row: its number (1-based, data rows only) and what it asks, or why it is unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based row number.
    pub number: u64,
    /// What the row asks, or the reason the row is malformed.
    pub request: Result<Ask, String>,
}

/// What one row asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The agent.
    pub user: String,
    /// The target state.
    pub state: String,
    /// The reason code named for the change (the `reason` column; blank: none).
    pub reason: Option<String>,
}

impl Ask {
    fn new(user: impl Into<String>, state: impl Into<String>, reason: Option<&str>) -> Self {
        Self {
            user: user.into(),
            state: state.into(),
            reason: reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        }
    }
}

/// The input, read whole: its digest (which `--resume` matches) and its rows.
#[derive(Debug)]
pub struct Input {
    /// The first 16 hex digits of the SHA-256 of the input's bytes.
    pub digest: String,
    /// Every row, in input order.
    pub rows: Vec<Row>,
}

impl Input {
    /// Reads and parses `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let digest = hex::encode(&Sha256::digest(bytes)[..8]);
        Ok(Self {
            digest,
            rows: parse_rows(bytes)?,
        })
    }

    /// The reference a row's change carries into the log.
    pub fn reference(&self, row: u64) -> String {
        format!("{}{row}", self.reference_prefix())
    }

    /// What every reference of this input starts with.
    pub fn reference_prefix(&self) -> String {
        format!("bulk:sha256={}:row=", self.digest)
    }
}

/// Parses rows. The format is JSON Lines if the first non-blank line starts with `{`, CSV otherwise; a
/// UTF-8 byte-order mark is skipped. Returns an error only for input that is not rows at all (empty, no
/// header).
pub fn parse_rows(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    let Some(first) = lines.peek().copied() else {
        return Err(
            "the input is empty: expected a `userId,state` CSV header or JSON Lines".into(),
        );
    };
    if first.trim_start().starts_with('{') {
        return Ok(lines
            .zip(1..)
            .map(|(line, number)| Row {
                number,
                request: json_row(line),
            })
            .collect());
    }
    // CSV: the header names the columns (any order, case-insensitive, extra columns ignored).
    let header: Vec<String> = first
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let reason_col = col("reason");
    let (Some(user_col), Some(state_col)) = (col("userid"), col("state")) else {
        return Err(format!(
            "the CSV header must name `userId` and `state` columns, found `{}`",
            first.trim()
        ));
    };
    // The rows follow the header line (blank lines before it are not rows). Every line before it is blank,
    // so the header's first occurrence is the line itself.
    let header_end = text.find(first).map_or(text.len(), |i| i + first.len());
    let body = &text[header_end..];
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut rows = Vec::new();
    for record in csv.records() {
        let request = match record {
            Err(e) => Err(format!("unreadable CSV row: {e}")),
            Ok(r) if r.iter().all(|f| f.trim().is_empty()) => continue,
            Ok(r) if r.len() != header.len() => Err(format!(
                "expected {} fields, found {}",
                header.len(),
                r.len()
            )),
            Ok(r) => Ok(Ask::new(
                r[user_col].trim(),
                r[state_col].trim(),
                reason_col.map(|c| &r[c]),
            )),
        };
        rows.push(Row {
            number: rows.len() as u64 + 1,
            request,
        });
    }
    Ok(rows)
}

/// One JSON Lines row: an object with string members `userId` and `state`, and optionally `reason` (a
/// string; null or blank: none), each named once.
fn json_row(line: &str) -> Result<Ask, String> {
    let Members(members) = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let mut seen = BTreeSet::new();
    if let Some((dup, _)) = members.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(format!("the member `{dup}` appears more than once"));
    }
    let field = |name: &str| {
        members
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    };
    let reason = match members.iter().find(|(k, _)| k == "reason") {
        None | Some((_, Value::Null)) => None,
        Some((_, Value::String(r))) => Some(r.as_str()),
        Some(_) => return Err("the member `reason` must be a string".into()),
    };
    match (field("userId"), field("state")) {
        (Some(u), Some(s)) => Ok(Ask::new(u, s, reason)),
        _ => Err("needs string members `userId` and `state`".into()),
    }
}

/// A JSON object's members in order, duplicates kept (a map would silently keep the last one).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Refuses an output that is the audit log, one of its companion files (`PATH.torn-*`), or the input:
/// writing results there would destroy what they describe. Paths are compared canonically and, on Unix, by
/// file identity (a hard link is the same file); without `--output`, stdout is checked the same way (a shell
/// redirection `> cxone-audit.jsonl`).
fn check_output(output: Option<&Path>, audit_log: &Path, input: &Path) -> Result<(), Failure> {
    let refuse = |what: &str| {
        let target = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        Err(Failure {
            exit: exit::USAGE,
            ..Failure::new(
                code::OUTPUT_IS_AUDIT_LOG,
                format!(
                    "refusing to write results to {target}: it is {what}; choose another --output"
                ),
            )
        })
    };
    let the_log = format!("the audit log ({})", audit_log.display());
    let Some(output) = output else {
        return refuse_stdout_onto(audit_log);
    };
    let out = canonical(output);
    let log = canonical(audit_log);
    if out == log || identity::same(output, audit_log) {
        return refuse(&the_log);
    }
    let companion = match (out.parent(), out.file_name(), log.file_name()) {
        (Some(dir), Some(name), Some(log_name)) => {
            Some(dir) == log.parent()
                && name
                    .to_string_lossy()
                    .starts_with(&format!("{}.", log_name.to_string_lossy()))
        }
        _ => false,
    };
    if companion {
        return refuse(&format!(
            "a companion file of the audit log ({})",
            audit_log.display()
        ));
    }
    if input.as_os_str() != "-" && (out == canonical(input) || identity::same(output, input)) {
        return refuse("the input");
    }
    Ok(())
}

/// A path made absolute with symlinks resolved, for a file that may not exist yet (its directory must).
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// The log's bytes, or none for a log not written yet.
fn read_log(path: &Path) -> Result<Vec<u8>, Failure> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Failure::new(
            ErrorCode::AuditLogUnavailable.as_str(),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Scans the whole log, handing every record to `each`; a log that does not verify is refused.
fn scan_whole(path: &Path, each: impl FnMut(&Record)) -> Result<(), Failure> {
    scan_log(&read_log(path)?, LogState::default(), each)
        .map(|_| ())
        .map_err(|e| {
            Failure::new(
                e.code().as_str(),
                format!("{} does not verify: {e}", path.display()),
            )
        })
}

/// What the audit log holds of this input's rows, for `--resume`.
struct Prior {
    /// Rows done: the latest record of their reference succeeded or ended `OUTCOME_UNKNOWN` (the next start
    /// settles it), or their intent is still open (this start resumes it). A refused or failed row is not
    /// done: it runs again.
    done: BTreeSet<u64>,
    /// A digest of another input whose rows the log holds, if it holds none of this one's (the file may
    /// have been edited since: said, since every row is then sent again).
    other_input: Option<String>,
}

impl Prior {
    fn read(path: &Path, input: &Input) -> Result<Self, Failure> {
        const BULK: &str = "bulk:sha256=";
        let mut outcomes = ReferencedOutcomes::with_prefix(BULK);
        scan_whole(path, |record| outcomes.observe(record))?;
        let prefix = input.reference_prefix();
        let mut done = BTreeSet::new();
        let (mut ours, mut other_input) = (false, None);
        for (reference, outcome) in outcomes.iter() {
            let Some(row) = reference.strip_prefix(prefix.as_str()) else {
                other_input = reference
                    .strip_prefix(BULK)
                    .and_then(|r| r.split(':').next())
                    .map(str::to_owned);
                continue;
            };
            ours = true;
            let finished = matches!(
                outcome,
                ReferenceOutcome::Open
                    | ReferenceOutcome::Succeeded
                    | ReferenceOutcome::Failed(Some(ErrorCode::OutcomeUnknown))
            );
            if let (true, Ok(row)) = (finished, row.parse()) {
                done.insert(row);
            }
        }
        Ok(Self {
            done,
            other_input: other_input.filter(|_| !ours),
        })
    }
}

/// The row numbers an earlier run's `--output` file already holds a result line for.
fn rows_printed(output: Option<&Path>) -> BTreeSet<u64> {
    let Some(text) = output.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["row"].as_u64())
        .collect()
}

/// Result lines for `rows`, built from the latest audit record of each row's change (marked
/// `"fromAuditLog": true`): for rows an earlier run finished without printing their result (it was killed
/// in between) and rows this start resumed.
fn lines_from_log(
    path: &Path,
    input: &Input,
    rows: &BTreeSet<u64>,
) -> Result<Vec<(Value, Option<bool>)>, Failure> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let prefix = input.reference_prefix();
    let mut latest: BTreeMap<u64, AuditRecord> = BTreeMap::new();
    scan_whole(path, |record| {
        if let Record::Audit(r) = record {
            let row = r
                .reference
                .as_deref()
                .and_then(|r| r.strip_prefix(prefix.as_str()))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(row) = row.filter(|n| rows.contains(n)) {
                latest.insert(row, r.clone());
            }
        }
    })?;
    Ok(rows
        .iter()
        .map(|&row| {
            let (mut line, failure) = match latest.get(&row) {
                Some(r) if r.success => (
                    json!({
                        "success": true, "userId": r.user_id, "previousState": r.previous_state,
                        "newState": r.new_state, "reasonCode": r.reason_code,
                        "latencyMs": r.latency_ms, "attempts": r.attempts,
                    }),
                    None,
                ),
                Some(r) => (
                    json!({
                        "success": false, "code": r.error_code, "message": r.error_message,
                        "userId": r.user_id, "state": r.new_state,
                        "policyViolation": r.policy_violation,
                    }),
                    Some(r.policy_violation),
                ),
                None => (
                    json!({
                        "success": false, "code": ErrorCode::OutcomeUnknown,
                        "message": "journaled and sent; no audit record settles it yet (the next start resends it)",
                    }),
                    Some(false),
                ),
            };
            line["row"] = json!(row);
            line["fromAuditLog"] = json!(true);
            (line, failure)
        })
        .collect())
}

#[derive(Default)]
struct Tally {
    rows: u64,
    /// Done and reported by an earlier run (`--resume`).
    skipped: u64,
    /// Results read back from the audit log (`--resume`: done earlier but never printed, or resumed now).
    recovered: u64,
    succeeded: u64,
    violations: u64,
    failed: u64,
    malformed: u64,
    /// Rows that ended `OUTCOME_UNKNOWN` (counted as failed until observation settles them as applied).
    unknown: usize,
}

impl Tally {
    fn count(&mut self, failure: Option<bool>) {
        match failure {
            None => self.succeeded += 1,
            Some(true) => self.violations += 1,
            Some(false) => self.failed += 1,
        }
    }

    fn decided(&self) -> u64 {
        self.succeeded + self.violations + self.failed + self.malformed
    }

    /// 0 when every row succeeded, 2 when every failure was a policy refusal, 1 otherwise.
    fn exit(&self) -> u8 {
        if self.failed + self.malformed > 0 {
            exit::FAILURE
        } else if self.violations > 0 {
            exit::POLICY
        } else {
            exit::OK
        }
    }
}

/// The rows a stop left: how many were not started, and the first of them.
fn not_started(rows: &[Row], next: usize) -> Option<(usize, u64)> {
    rows.get(next).map(|row| (rows.len() - next, row.number))
}

/// Where results go: each line is written whole and flushed as soon as it is decided, so a crash keeps
/// every result printed so far; on a terminal the progress bar is suspended around it.
struct Results {
    file: Option<LineWriter<File>>,
    bar: ProgressBar,
}

impl Results {
    fn write(&mut self, line: &Value) -> io::Result<()> {
        let text = line.to_string();
        match &mut self.file {
            Some(f) => writeln!(f, "{text}"),
            None => self.bar.suspend(|| super::write_line(&text)),
        }
    }
}

/// Runs the rows; see the exit codes in `--help`.
pub fn run(args: &BulkArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&args.file)?;
    let input = Input::parse(&bytes).map_err(|e| {
        Failure::new(
            code::INPUT_UNREADABLE,
            format!("{}: {e}", args.file.display()),
        )
    })?;
    let audit_log = args.connect.audit_log();
    let output = args.output.as_deref();
    check_output(output, audit_log, &args.file)?;
    // Checked before anything starts: bad settings are reported without touching the log.
    args.connect.config()?;
    let base_options = args.actor.apply(TransitionOptions::default())?;
    let settle_wait = args.connect.settle_wait(args.settle_wait_secs)?;
    let (skip, printed) = if args.resume {
        let prior = Prior::read(audit_log, &input)?;
        if let Some(other) = &prior.other_input {
            // Not refused: a script that always passes --resume meets a new file every day.
            eprintln!(
                "note: --resume: {} holds no row of this input (digest {}) but rows of another (digest \
                 {other}); if this file was edited since that run, every row is sent again",
                audit_log.display(),
                input.digest
            );
        }
        (prior.done, rows_printed(output))
    } else {
        (BTreeSet::new(), BTreeSet::new())
    };
    let file = match output {
        None => None,
        Some(p) => {
            let mut options = OpenOptions::new();
            options.create(true);
            if args.resume {
                options.append(true);
            } else {
                options.write(true).truncate(true);
            }
            let file = options.open(p).map_err(|e| {
                Failure::new(
                    code::IO_ERROR,
                    format!("cannot create {}: {e}", p.display()),
                )
            })?;
            Some(LineWriter::new(file))
        }
    };
    let skipped = input
        .rows
        .iter()
        .filter(|r| skip.contains(&r.number))
        .count() as u64;
    let bar = progress(input.rows.len() as u64, args.no_progress);
    // Rows done earlier count as done from the start, without skewing the rate and ETA.
    bar.set_position(skipped);
    bar.reset_eta();
    let mut results = Results {
        file,
        bar: bar.clone(),
    };
    if args.resume {
        say(
            &bar,
            &format!(
                "resume: {skipped} of {} rows of this input (digest {}) are already done in {}; skipping them",
                input.rows.len(),
                input.digest,
                audit_log.display()
            ),
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Listening before the manager starts: a Ctrl-C during recovery is a stop, not a kill.
        let mut interrupts = interrupts();
        let manager = args.connect.start().await?;
        let started = Instant::now();
        let mut tally = Tally {
            rows: input.rows.len() as u64,
            ..Tally::default()
        };
        let mut in_flight: JoinSet<(Value, Option<bool>)> = JoinSet::new();
        let mut next = 0;
        let mut stopping = false;
        loop {
            // Start rows while there is room; malformed rows are answered at once.
            while !stopping && in_flight.len() < usize::from(args.concurrency) {
                let Some(row) = input.rows.get(next) else {
                    break;
                };
                next += 1;
                if skip.contains(&row.number) {
                    continue;
                }
                match &row.request {
                    Err(message) => {
                        tally.malformed += 1;
                        results.write(&json!({
                            "row": row.number, "success": false,
                            "code": code::MALFORMED_ROW, "message": message,
                        }))?;
                        bar.inc(1);
                    }
                    Ok(Ask {
                        user,
                        state,
                        reason,
                    }) => {
                        // Handed to the engine here, in input order: later changes for an agent wait
                        // behind earlier ones, whatever the concurrency.
                        let reference = input.reference(row.number);
                        match submit(&manager, &base_options, user, state, reason.as_deref(), &reference)
                            .await
                        {
                            Ok(pending) => {
                                let (number, user, state) =
                                    (row.number, user.clone(), state.clone());
                                in_flight.spawn(async move {
                                    let result = pending.outcome().await;
                                    row_result(number, &user, &state, result)
                                });
                            }
                            Err(e) => {
                                let (line, failure) = row_result(row.number, user, state, Err(e));
                                tally.count(failure);
                                results.write(&line)?;
                                bar.inc(1);
                            }
                        }
                    }
                }
            }
            if in_flight.is_empty() && (stopping || next == input.rows.len()) {
                break;
            }
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    let (value, failure) = done.expect("row tasks do not panic");
                    if value["code"] == ErrorCode::OutcomeUnknown.as_str() {
                        tally.unknown += 1;
                    }
                    tally.count(failure);
                    results.write(&value)?;
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} ok, {} refused, {} failed",
                        tally.succeeded, tally.violations, tally.failed + tally.malformed
                    ));
                }
                Some(()) = interrupts.recv() => {
                    if stopping {
                        force_stop(&bar, audit_log, &tally, in_flight.len(), not_started(&input.rows, next));
                    }
                    stopping = true;
                    say(&bar, &format!(
                        "stopping: no new rows will start; waiting for {} change(s) in flight to finish, \
                         then syncing the audit log (Ctrl-C again stops at once; changes in flight are \
                         journaled and resumed on the next start)",
                        in_flight.len()
                    ));
                }
            }
        }
        // Rows that ended OUTCOME_UNKNOWN are settled by what the tenant shows, if the profile can observe.
        if !stopping {
            let settling = settle_unknown(
                &manager,
                tally.unknown,
                settle_wait,
                &mut interrupts,
                |m| say(&bar, m),
            )
            .await;
            if let Some(settling) = settling {
                stopping = settling.interrupted;
                let prefix = input.reference_prefix();
                for s in &settling.settled {
                    let Some(row) = s
                        .reference
                        .as_deref()
                        .and_then(|r| r.strip_prefix(prefix.as_str()))
                        .and_then(|n| n.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    let mut line = json!({
                        "row": row, "success": s.applied, "settled": true, "applied": s.applied,
                        "userId": s.user_id, "state": s.requested_state, "settles": s.settles,
                        "recordId": s.record_id, "evidence": s.evidence,
                    });
                    if s.applied {
                        // It was counted as failed when it ended unknown.
                        tally.failed = tally.failed.saturating_sub(1);
                        tally.succeeded += 1;
                    } else {
                        line["code"] = json!(ErrorCode::NotApplied);
                        line["message"] = json!(format!(
                            "the answer was lost, and the tenant shows the change was not applied: {}",
                            s.evidence
                        ));
                    }
                    results.write(&line)?;
                }
            }
        }
        bar.finish_and_clear();
        // Interrupted: webhooks wait in the durable outbox for the next start instead of holding the exit.
        let drain = if stopping {
            Duration::ZERO
        } else {
            args.connect.webhook_drain()
        };
        tokio::select! {
            () = finish(manager, drain, audit_log) => {}
            Some(()) = interrupts.recv() => {
                force_stop(&bar, audit_log, &tally, 0, not_started(&input.rows, next));
            }
        }
        // Rows done earlier whose result was never printed (a crash between the two), and rows this start
        // resumed: their results come from the audit log, now that every one of them is settled.
        let unprinted: BTreeSet<u64> = skip.difference(&printed).copied().collect();
        for (line, failure) in lines_from_log(audit_log, &input, &unprinted)? {
            tally.count(failure);
            tally.recovered += 1;
            results.write(&line)?;
        }
        tally.skipped = skipped - tally.recovered;
        let left = not_started(&input.rows, next).filter(|_| stopping);
        eprintln!(
            "bulk: {} rows in {:.1} s: {} succeeded, {} refused by policy, {} failed, {} malformed{}{}{}",
            tally.rows,
            started.elapsed().as_secs_f64(),
            tally.succeeded,
            tally.violations,
            tally.failed,
            tally.malformed,
            if tally.skipped > 0 {
                format!(", {} skipped (done and reported earlier)", tally.skipped)
            } else {
                String::new()
            },
            if tally.recovered > 0 {
                format!(", {} read back from the audit log", tally.recovered)
            } else {
                String::new()
            },
            match left {
                Some((count, from)) => format!(
                    "; interrupted: {count} rows not started, from row {from} on (run again with --resume)"
                ),
                None => String::new(),
            }
        );
        Ok(ExitCode::from(if stopping {
            exit::INTERRUPTED
        } else {
            tally.exit()
        }))
    })
}

/// Hands one row's change to the engine, with its reference (and its reason, if it names one).
async fn submit(
    manager: &AgentStateManager,
    base: &TransitionOptions,
    user: &str,
    state: &str,
    reason: Option<&str>,
    reference: &str,
) -> Result<cxone_agent_state::PendingChange, TransitionError> {
    let mut options = base.clone().with_reference(reference);
    if let Some(reason) = reason {
        options = options.with_reason(reason);
    }
    manager.submit_transition_with(user, state, &options).await
}

fn read_input(file: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|e| {
        Failure::new(
            code::INPUT_UNREADABLE,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    Ok(bytes)
}

/// The second Ctrl-C: sync the audit log (every acknowledged record is already durable; this covers the
/// group being written), say what is left, and exit 130 now.
fn force_stop(
    bar: &ProgressBar,
    audit_log: &Path,
    tally: &Tally,
    in_flight: usize,
    left: Option<(usize, u64)>,
) -> ! {
    bar.finish_and_clear();
    stop_at_once(
        audit_log,
        &format!(
            "{} of {} rows decided, {in_flight} change(s) in flight are journaled and resumed on the next \
             start{}; run again with --resume for the rest",
            tally.decided(),
            tally.rows,
            match left {
                Some((count, from)) => format!("; {count} rows not started, from row {from} on"),
                None => String::new(),
            },
        ),
    )
}

/// A message on stderr that does not tear the progress bar.
fn say(bar: &ProgressBar, message: &str) {
    if bar.is_hidden() {
        eprintln!("{message}");
    } else {
        bar.println(message);
    }
}

/// One row's result line, and `Some(is policy violation)` when it failed.
fn row_result(
    number: u64,
    user: &str,
    state: &str,
    result: Result<StateChanged, TransitionError>,
) -> (Value, Option<bool>) {
    let mut line = outcome_json(user, state, &result);
    line["row"] = json!(number);
    (line, result.err().map(|e| e.code.is_policy_violation()))
}

/// A bar over rows, with rate and ETA; hidden when asked or when stderr is not a terminal.
fn progress(rows: u64, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(rows);
    if hidden || !io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}; {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<Row>, String> {
        parse_rows(text.as_bytes())
    }

    fn ask(user: &str, state: &str) -> Result<Ask, String> {
        Ok(Ask::new(user, state, None))
    }

    #[test]
    fn csv_rows_fail_alone() {
        let r = rows("userId,state\nalice,READY\nbob\n\"carol\",NOT_READY\n,\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].request, ask("alice", "READY"));
        assert!(r[1]
            .request
            .as_ref()
            .unwrap_err()
            .contains("expected 2 fields"));
        assert_eq!(r[2].request, ask("carol", "NOT_READY"));
        assert_eq!(r[2].number, 3);
    }

    #[test]
    fn blank_lines_before_the_header_do_not_shift_row_numbers() {
        let r = rows("\n  \nuserId,state\nalice,READY\nbob,PAUSED\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].number, 1);
        assert_eq!(r[0].request, ask("alice", "READY"));
        assert_eq!(r[1].request, ask("bob", "PAUSED"));
    }

    #[test]
    fn header_order_and_case_do_not_matter() {
        let r = rows("State,USERID,team\nPAUSED,a1,x\n").unwrap();
        assert_eq!(r[0].request, ask("a1", "PAUSED"));
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_values_are_trimmed() {
        let r = parse_rows(b"\xEF\xBB\xBFuserId,state\r\n agent-0010 , READY \r\n").unwrap();
        assert_eq!(r[0].request, ask("agent-0010", "READY"));
        let r = parse_rows(b"\xEF\xBB\xBF{\"userId\":\"a\",\"state\":\"READY\"}\n").unwrap();
        assert_eq!(r[0].request, ask("a", "READY"));
    }

    #[test]
    fn json_lines_rows() {
        let r =
            rows("{\"userId\":\"a\",\"state\":\"READY\"}\n{oops\n{\"userId\":1,\"state\":\"X\"}\n")
                .unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].request.is_ok());
        assert!(r[1].request.as_ref().unwrap_err().contains("not JSON"));
        assert!(r[2].request.as_ref().unwrap_err().contains("userId"));
    }

    #[test]
    fn a_duplicate_json_member_makes_the_row_malformed() {
        let r = rows("{\"userId\":\"a\",\"state\":\"READY\",\"state\":\"NOT_READY\"}\n").unwrap();
        let e = r[0].request.as_ref().unwrap_err();
        assert!(e.contains("`state` appears more than once"), "{e}");
    }

    #[test]
    fn an_optional_reason_column_names_the_code_and_blank_means_none() {
        let r = rows("userId,state,Reason\n1001,NOT_READY,Lunch\n1002,PAUSED, \n1003,READY,\n")
            .unwrap();
        assert_eq!(
            r[0].request,
            Ok(Ask::new("1001", "NOT_READY", Some("Lunch")))
        );
        assert_eq!(r[1].request, ask("1002", "PAUSED"));
        assert_eq!(r[2].request, ask("1003", "READY"));
        let r = rows(concat!(
            "{\"userId\":\"1001\",\"state\":\"NOT_READY\",\"reason\":\" Lunch \"}\n",
            "{\"userId\":\"1002\",\"state\":\"PAUSED\",\"reason\":\"\"}\n",
            "{\"userId\":\"1003\",\"state\":\"PAUSED\",\"reason\":null}\n",
            "{\"userId\":\"1004\",\"state\":\"PAUSED\",\"reason\":7}\n",
        ))
        .unwrap();
        assert_eq!(
            r[0].request,
            Ok(Ask::new("1001", "NOT_READY", Some("Lunch")))
        );
        assert_eq!(r[1].request, ask("1002", "PAUSED"));
        assert_eq!(r[2].request, ask("1003", "PAUSED"));
        let e = r[3].request.as_ref().unwrap_err();
        assert!(e.contains("`reason` must be a string"), "{e}");
    }

    #[test]
    fn empty_input_and_bad_header_are_errors() {
        assert!(rows("").unwrap_err().contains("empty"));
        assert!(rows("\n\n").unwrap_err().contains("empty"));
        assert!(rows("user,status\na,READY\n")
            .unwrap_err()
            .contains("userId"));
    }

    #[test]
    fn the_digest_names_the_input() {
        let a = Input::parse(b"userId,state\na,READY\n").unwrap();
        let b = Input::parse(b"userId,state\na,NOT_READY\n").unwrap();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.reference(3), format!("bulk:sha256={}:row=3", a.digest));
    }

    #[test]
    fn exit_codes_follow_the_failures() {
        let mut t = Tally::default();
        t.count(None);
        assert_eq!(t.exit(), exit::OK);
        t.count(Some(true));
        assert_eq!(t.exit(), exit::POLICY);
        t.count(Some(false));
        assert_eq!(t.exit(), exit::FAILURE);
    }

    #[test]
    fn the_output_may_not_be_the_log_its_companions_or_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("yy.jsonl");
        std::fs::write(&log, b"").unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, b"userId,state\n").unwrap();
        let via_dot = dir.path().join(".").join("yy.jsonl");
        assert!(check_output(Some(&via_dot), &log, &input).is_err());
        let torn = dir.path().join("yy.jsonl.torn-123");
        assert!(check_output(Some(&torn), &log, &input).is_err());
        assert!(check_output(Some(&input), &log, &input).is_err());
        let results = dir.path().join("results.jsonl");
        assert!(check_output(Some(&results), &log, &input).is_ok());
        // A hard link is the same file under another name.
        let link = dir.path().join("link.jsonl");
        std::fs::hard_link(&log, &link).unwrap();
        let e = check_output(Some(&link), &log, &input).unwrap_err();
        assert!(e.message.contains("the audit log"), "{}", e.message);
    }
}
