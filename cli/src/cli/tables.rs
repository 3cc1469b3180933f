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
    for (rule, n) in &r.violations_by_rule {
        t.add_row(vec![Cell::new(format!("  blocked by {rule}")), right(n)]);
    }
    let overrides: u64 = r.overrides_by_rule.values().sum();
    if overrides > 0 {
        t.add_row(vec![
            Cell::new("supervisor overrides (not violations)"),
            right(overrides),
        ]);
    }
    let d = &r.deferrals;
    if d.held > 0 {
        t.add_row(vec![
            Cell::new("deferred: held / applied / given up / cancelled"),
            right(format!(
                "{} / {} / {} / {}",
                d.held,
                d.applied,
                d.expired + d.failed,
                d.cancelled
            )),
        ]);
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
    if let Some(a) = &r.adherence {
        print_adherence(a)?;
    }
    Ok(())
}

/// A share as a percentage, or `—` when undefined.
fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), |x| format!("{:.1} %", x * 100.0))
}

fn minutes(ms: u64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

/// The team's adherence and conformance, its hourly curve, and the agents least in adherence.
pub fn print_adherence(
    a: &cxone_agent_state_core::adherence::AdherenceReport,
) -> std::io::Result<()> {
    let mut t = table(["schedule adherence (team)", "value"]);
    if let Some(team) = &a.team {
        let x = &team.totals;
        for (k, v) in [
            ("adherence (In ÷ (In + Out))", percent(team.adherence)),
            (
                "conformance (productive ÷ scheduled work)",
                percent(team.conformance),
            ),
            (
                "in / out of adherence",
                format!("{} / {}", minutes(x.in_ms), minutes(x.out_ms)),
            ),
            ("exceptions", a.exception_count.to_string()),
            ("work outside the shift", minutes(x.work_outside_shift_ms)),
        ] {
            t.add_row(vec![Cell::new(k), right(v)]);
        }
        for (activity, ms) in &x.out_by_activity_ms {
            t.add_row(vec![
                Cell::new(format!("out of adherence during {activity}")),
                right(minutes(*ms)),
            ]);
        }
        for (what, ms) in &x.unruled_ms {
            t.add_row(vec![
                Cell::new(format!("no rule (neutral): {what}")),
                right(minutes(*ms)),
            ]);
        }
    }
    outln!("{t}");
    let curve: Vec<String> = a
        .curve
        .iter()
        .map(|p| {
            let hour = cxone_agent_state_core::iso8601(p.from_ms);
            format!("{} {}", &hour[11..16], percent(p.adherence))
        })
        .collect();
    if !curve.is_empty() {
        outln!("adherence by hour (UTC): {}", curve.join(" · "));
    }
    let mut worst: Vec<_> = a
        .agents
        .iter()
        .filter(|x| x.figures.adherence.is_some())
        .collect();
    worst.sort_by(|x, y| {
        x.figures
            .adherence
            .partial_cmp(&y.figures.adherence)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut t = table([
        "agent (least adherent first)",
        "adherence",
        "conformance",
        "exceptions",
        "out",
    ]);
    for x in worst.iter().take(10) {
        t.add_row(vec![
            Cell::new(&x.user_id),
            right(percent(x.figures.adherence)),
            right(percent(x.figures.conformance)),
            right(x.figures.totals.exceptions.len()),
            right(minutes(x.figures.totals.out_ms)),
        ]);
    }
    if !worst.is_empty() {
        outln!("{t}");
    }
    Ok(())
}
