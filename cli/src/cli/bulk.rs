//! `cxone-agent-state bulk`: many state changes from a CSV (`userId,state`) or JSON Lines file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use cxone_agent_state_core::{StateChanged, TransitionError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::connect::{finish, outcome_json, ConnectArgs};

/// The code of a row that could not be read; the other rows go on.
pub const MALFORMED_ROW: &str = "MALFORMED_ROW";

/// Options of `bulk`.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// CSV with a `userId,state` header, or JSON Lines of `{"userId","state"}`; `-` reads stdin.
    file: PathBuf,
    /// Transitions in flight at once (the engine still paces requests to the tenant's limit and runs one
    /// change per agent at a time).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Write per-row results (JSON Lines) here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// One input row: its number (1-based, data rows only) and what it asks, or why it is unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based row number.
    pub number: u64,
    /// `(userId, state)` or the reason the row is malformed.
    pub request: Result<(String, String), String>,
}

/// Reads rows from `input`, sending each to `tx`. The format is JSON Lines if the first non-blank line starts
/// with `{`, CSV otherwise. Returns an error only for input that is not rows at all (empty, no header).
pub fn read_rows(input: impl Read, tx: mpsc::Sender<Row>) -> Result<u64, String> {
    let mut reader = BufReader::new(input);
    let mut first = String::new();
    loop {
        first.clear();
        if reader.read_line(&mut first).map_err(|e| e.to_string())? == 0 {
            return Err(
                "the input is empty: expected a `userId,state` CSV header or JSON Lines".into(),
            );
        }
        if !first.trim().is_empty() {
            break;
        }
    }
    let send = |row: Row| tx.blocking_send(row).is_ok();
    if first.trim_start().starts_with('{') {
        let mut n = 0;
        for line in std::iter::once(Ok(first.clone())).chain(reader.lines()) {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    n += 1;
                    if !send(Row {
                        number: n,
                        request: Err(format!("unreadable line: {e}")),
                    }) {
                        break;
                    }
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            n += 1;
            let request = serde_json::from_str::<Value>(&line)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| {
                    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
                    match (field("userId"), field("state")) {
                        (Some(u), Some(s)) => Ok((u, s)),
                        _ => Err("needs string members `userId` and `state`".into()),
                    }
                });
            if !send(Row { number: n, request }) {
                break;
            }
        }
        return Ok(n);
    }
    // CSV: the header names the columns (any order, case-insensitive, extra columns ignored).
    let header: Vec<String> = first
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(user_col), Some(state_col)) = (col("userid"), col("state")) else {
        return Err(format!(
            "the CSV header must name `userId` and `state` columns, found `{}`",
            first.trim()
        ));
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut n = 0;
    for record in csv.records() {
        n += 1;
        let request = match record {
            Err(e) => Err(format!("unreadable CSV row: {e}")),
            Ok(r) if r.iter().all(|f| f.trim().is_empty()) => {
                n -= 1;
                continue;
            }
            Ok(r) if r.len() != header.len() => Err(format!(
                "expected {} fields, found {}",
                header.len(),
                r.len()
            )),
            Ok(r) => Ok((r[user_col].to_owned(), r[state_col].trim().to_owned())),
        };
        if !send(Row { number: n, request }) {
            break;
        }
    }
    Ok(n)
}

#[derive(Default)]
struct Tally {
    rows: u64,
    succeeded: u64,
    violations: u64,
    failed: u64,
    malformed: u64,
}

impl Tally {
    fn count(&mut self, failure: Option<bool>) {
        match failure {
            None => self.succeeded += 1,
            Some(true) => self.violations += 1,
            Some(false) => self.failed += 1,
        }
    }
}

/// Runs the rows; exit 0 when every row succeeded, 1 when any failed, 130 when interrupted.
pub fn run(args: &BulkArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    // The bar follows the input as it is read (one pass over the file): bytes of a file, a spinner for stdin.
    let (input, bar): (Box<dyn Read + Send>, ProgressBar) = if args.file.as_os_str() == "-" {
        let bar = progress(None);
        (Box::new(bar.wrap_read(io::stdin())), bar)
    } else {
        let file = File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?;
        let bar = progress(file.metadata().ok().map(|m| m.len()));
        (Box::new(bar.wrap_read(file)), bar)
    };
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(p) => {
            Box::new(BufWriter::new(File::create(p).map_err(|e| {
                anyhow::anyhow!("cannot create {}: {e}", p.display())
            })?))
        }
        None => Box::new(super::Stdout),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (tx, mut rows) = mpsc::channel::<Row>(args.concurrency * 2);
        let reader = std::thread::spawn(move || read_rows(input, tx));
        // Input errors (an empty file, no header) are found before anything is started.
        let first = rows.recv().await;
        let mut reader = Some(reader);
        if first.is_none() {
            let done = reader.take().expect("not joined yet").join();
            if let Err(e) = done.expect("the reader does not panic") {
                anyhow::bail!("{}: {e}", args.file.display());
            }
        }
        let manager = args.connect.start().await?;
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut in_flight: JoinSet<(Value, Option<bool>)> = JoinSet::new();
        let mut input_done = first.is_none();
        let mut pending_row = first;
        let mut interrupted = false;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            // Start rows while there is room; malformed rows are answered at once.
            while !interrupted && in_flight.len() < args.concurrency {
                let row = match pending_row.take() {
                    Some(r) => r,
                    None => match rows.try_recv() {
                        Ok(r) => r,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            input_done = true;
                            break;
                        }
                    },
                };
                tally.rows += 1;
                match row.request {
                    Err(message) => {
                        tally.malformed += 1;
                        let line = json!({
                            "row": row.number, "success": false,
                            "error": { "code": MALFORMED_ROW, "message": message },
                        });
                        writeln!(out, "{line}")?;
                    }
                    Ok((user, state)) => {
                        // Handed to the engine here, in input order: later changes for an agent wait
                        // behind earlier ones, whatever the concurrency.
                        match manager.submit_transition(&user, &state).await {
                            Ok(pending) => {
                                in_flight.spawn(async move {
                                    let result = pending.outcome().await;
                                    row_result(row.number, &user, &state, result)
                                });
                            }
                            Err(e) => {
                                let (line, failure) = row_result(row.number, &user, &state, Err(e));
                                tally.count(failure);
                                writeln!(out, "{line}")?;
                            }
                        }
                    }
                }
            }
            if in_flight.is_empty() && (interrupted || input_done) {
                break;
            }
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let (value, failure) = done.expect("row tasks do not panic");
                    tally.count(failure);
                    writeln!(out, "{value}")?;
                    bar.set_message(format!(
                        "{} ok, {} refused, {} failed",
                        tally.succeeded, tally.violations, tally.failed + tally.malformed
                    ));
                }
                row = rows.recv(), if !interrupted && !input_done && in_flight.len() < args.concurrency => {
                    match row {
                        Some(r) => pending_row = Some(r),
                        None => input_done = true,
                    }
                }
                _ = &mut ctrl_c, if !interrupted => {
                    interrupted = true;
                    bar.println("interrupted: finishing the rows in flight, then flushing the audit log and outbox");
                }
            }
        }
        out.flush()?;
        bar.finish_and_clear();
        finish(manager, args.connect.webhook_drain()).await;
        if interrupted {
            // The reader may be blocked on a full channel: close it so the thread can end.
            drop(rows);
        }
        if let Some(Ok(Err(e))) = reader.map(std::thread::JoinHandle::join) {
            eprintln!("input: {e}");
        }
        eprintln!(
            "bulk: {} rows in {:.1} s: {} succeeded, {} refused by policy, {} failed, {} malformed{}",
            tally.rows,
            started.elapsed().as_secs_f64(),
            tally.succeeded,
            tally.violations,
            tally.failed,
            tally.malformed,
            if interrupted { " (interrupted: the remaining rows were not started)" } else { "" }
        );
        Ok(if interrupted {
            ExitCode::from(130)
        } else if tally.succeeded == tally.rows {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
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

fn progress(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if !io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {bytes}/{total_bytes} read; {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> (Result<u64, String>, Vec<Row>) {
        let (tx, mut rx) = mpsc::channel(1000);
        let n = read_rows(text.as_bytes(), tx);
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(r);
        }
        (n, out)
    }

    #[test]
    fn csv_rows_fail_alone() {
        let (n, r) = rows("userId,state\nalice,READY\nbob\n\"carol\",NOT_READY\n,\n");
        assert_eq!(n, Ok(3));
        assert_eq!(r[0].request, Ok(("alice".into(), "READY".into())));
        assert!(r[1]
            .request
            .as_ref()
            .unwrap_err()
            .contains("expected 2 fields"));
        assert_eq!(r[2].request, Ok(("carol".into(), "NOT_READY".into())));
    }

    #[test]
    fn header_order_and_case_do_not_matter() {
        let (_, r) = rows("State,USERID,team\nPAUSED,a1,x\n");
        assert_eq!(r[0].request, Ok(("a1".into(), "PAUSED".into())));
    }

    #[test]
    fn json_lines_rows() {
        let (n, r) =
            rows("{\"userId\":\"a\",\"state\":\"READY\"}\n{oops\n{\"userId\":1,\"state\":\"X\"}\n");
        assert_eq!(n, Ok(3));
        assert!(r[0].request.is_ok());
        assert!(r[1].request.as_ref().unwrap_err().contains("not JSON"));
        assert!(r[2].request.as_ref().unwrap_err().contains("userId"));
    }

    #[test]
    fn empty_input_and_bad_header_are_errors() {
        assert!(rows("").0.unwrap_err().contains("empty"));
        assert!(rows("\n\n").0.unwrap_err().contains("empty"));
        assert!(rows("user,status\na,READY\n")
            .0
            .unwrap_err()
            .contains("userId"));
    }
}
