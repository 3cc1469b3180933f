//! Human-readable (and CSV) renderings of a compliance report.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use cxone_agent_state_core::ComplianceReport;

/// A table with this header.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    t
}

/// A right-aligned cell.
pub fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

/// Prints the report's figures, failures by code, counts per state and an agent summary.
pub fn print_report(r: &ComplianceReport) -> std::io::Result<()> {
    let mut t = table(["compliance report", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("total transitions", r.total_transitions.to_string()),
        ("succeeded", r.success_count.to_string()),
        ("failed", r.failure_count.to_string()),
        (
            "outcome unknown (may have been applied)",
            r.unknown_outcome_count.to_string(),
        ),
        ("settled later", r.settled_count.to_string()),
        ("policy violations blocked", r.violation_count.to_string()),
        (
            "violation frequency",
            format!("{:.2} %", r.violation_frequency * 100.0),
        ),
        ("average latency", format!("{} ms", r.average_latency_ms)),
        (
            "latency p50 / p95 / p99 / max",
            format!(
                "{} / {} / {} / {} ms",
                r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
            ),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![Cell::new(k), right(v)]);
    }
    outln!("{t}");

    if !r.failures_by_code.is_empty() {
        let mut t = table(["failures by code", "count"]);
        for (code, n) in &r.failures_by_code {
            t.add_row(vec![Cell::new(code), right(n)]);
        }
        outln!("{t}");
    }

    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["requested state", "attempts", "accepted"]);
    for (state, c) in &r.per_state {
        t.add_row(vec![
            Cell::new(state),
            right(c.attempts),
            right(c.successes),
        ]);
    }
    outln!("{t}");

    let utils: Vec<f64> = r.agents.iter().filter_map(|a| a.utilization).collect();
    let idle: Vec<u64> = r.agents.iter().map(|a| a.cumulative_idle_ms).collect();
    let mut t = table(["agents", "value"]);
    t.add_row(vec![
        Cell::new("agents with a state"),
        right(r.agents.len()),
    ]);
    if !utils.is_empty() {
        let mean = utils.iter().sum::<f64>() / utils.len() as f64;
        let min = utils.iter().copied().fold(f64::INFINITY, f64::min);
        let max = utils.iter().copied().fold(0.0, f64::max);
        t.add_row(vec![
            Cell::new("utilization mean / min / max"),
            right(format!(
                "{:.1} % / {:.1} % / {:.1} %",
                mean * 100.0,
                min * 100.0,
                max * 100.0
            )),
        ]);
    }
    if !idle.is_empty() {
        let mean = idle.iter().sum::<u64>() / idle.len() as u64;
        t.add_row(vec![
            Cell::new("cumulative idle per agent (mean)"),
            right(format!("{:.1} min", mean as f64 / 60_000.0)),
        ]);
    }
    outln!("{t}");
    Ok(())
}
