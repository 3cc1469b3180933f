//! The simulation module's exports: whole simulated days and the speed workload.

use cxone_agent_state_core::sim::{ActivityConfig, DayRun, WorkdayConfig};
use cxone_agent_state_core::{ErrorCode, ProfileKind};
use wasm_bindgen::prelude::*;

use crate::{coded, config_error, from_js, time, to_js};

fn workday_config(options: JsValue) -> Result<WorkdayConfig, JsValue> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Options {
        agents: Option<f64>,
        hours: Option<f64>,
        seed: Option<f64>,
        faults: Option<f64>,
        rate_limit_per_minute: Option<f64>,
        break_minutes: Option<f64>,
        break_every_hours: Option<f64>,
        unscheduled_share: Option<f64>,
        rule_breaker_share: Option<f64>,
        start_ms: Option<f64>,
        profile: Option<String>,
        activity: Option<ActivityConfig>,
        observe: Option<bool>,
        defer: Option<bool>,
    }
    let o: Options = if options.is_undefined() || options.is_null() {
        Options::default()
    } else {
        from_js("simulateDay options", &options)?
    };
    // Only the JS-to-Rust conversion is checked here; the ranges are WorkdayConfig::validate's.
    let whole = |v: Option<f64>, field: &str| -> Result<Option<u64>, JsValue> {
        match v {
            None => Ok(None),
            Some(x) if x.is_finite() && x.fract() == 0.0 && x >= 0.0 => Ok(Some(x as u64)),
            Some(_) => Err(coded(
                "INVALID_CONFIG",
                &format!("{field} must be a whole number, at least 0"),
            )),
        }
    };
    let d = WorkdayConfig::default();
    let profile = match o.profile.as_deref() {
        None => d.profile,
        Some(p) => p.parse::<ProfileKind>().map_err(|_| {
            coded(
                "INVALID_CONFIG",
                &format!("profile must be \"seed\" or \"cxone\" (got {p:?})"),
            )
        })?,
    };
    let observe = o.observe.unwrap_or(d.observe);
    if observe && profile != ProfileKind::Cxone {
        // The same code as the engine's `startObserving` and the CLI's `simulate --observe` on seed.
        return Err(coded(
            ErrorCode::ObserveUnsupported.as_str(),
            "observe needs profile \"cxone\": seed has no endpoint to read agent states",
        ));
    }
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(WorkdayConfig {
        agents: whole(o.agents, "agents")?.map_or(d.agents, |v| v as usize),
        shift_hours: whole(o.hours, "hours")?.unwrap_or(d.shift_hours),
        seed: whole(o.seed, "seed")?.unwrap_or(d.seed),
        fault_rate: o.faults.unwrap_or(d.fault_rate),
        rate_per_minute: whole(o.rate_limit_per_minute, "rateLimitPerMinute")?
            .map_or(d.rate_per_minute, small),
        break_minutes: whole(o.break_minutes, "breakMinutes")?.unwrap_or(d.break_minutes),
        break_every_hours: whole(o.break_every_hours, "breakEveryHours")?
            .unwrap_or(d.break_every_hours),
        unscheduled_share: o.unscheduled_share.unwrap_or(d.unscheduled_share),
        rule_breaker_share: o.rule_breaker_share.unwrap_or(d.rule_breaker_share),
        start_ms: whole(o.start_ms, "startMs")?.unwrap_or(d.start_ms),
        profile,
        activity: o.activity.unwrap_or(d.activity),
        observe,
        defer: o.defer.unwrap_or(d.defer),
    })
}

/// Runs a whole simulated day (the simulated tenant and the engine, in wasm, on virtual time) and returns
/// its summary. Throws `INVALID_CONFIG` on bad options (e.g. a negative agent count).
///
/// ```js
/// const day = simulateDay({ agents: 1000, hours: 8, seed: 42, faults: 0.02, rateLimitPerMinute: 100 });
/// console.log(day.report.violationCount, day.groundTruth.readyAcceptedDuringBreak); // …, 0
/// ```
///
/// `profile: "cxone"` runs the day on the real CXone API's dialect (discovery, the agent directory,
/// unavailable codes, schedule exports); the engine then names agents by their numeric `agentId`.
/// There, `activity` makes agents, supervisors and the ACD change states on their own, `observe: true` has
/// the engine poll `agents/states` for those changes (`OBSERVE_UNSUPPORTED` on seed), and the summary's
/// `accuracy` holds the engine's utilization and idle time against the tenant's truth:
///
/// ```js
/// const options = { agents: 100, profile: 'cxone', activity: { agentChangesPerHour: 4, contactsPerHour: 8 } };
/// const on = simulateDay({ ...options, observe: true }).accuracy;
/// const off = simulateDay(options).accuracy;
/// console.log(on.meanUtilizationError, off.meanUtilizationError); // far smaller with observation on
/// ```
#[wasm_bindgen(js_name = simulateDay, unchecked_return_type = "DaySummary")]
pub fn simulate_day(
    #[wasm_bindgen(unchecked_param_type = "SimulateDayOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let config = workday_config(options)?;
    let mut run = DayRun::new(&config).map_err(|e| config_error(&e))?;
    run.run(|_, _| {})
        .map_err(|e| coded("UPSTREAM_UNAVAILABLE", &e.to_string()))?;
    Ok(to_js(&run.summary()))
}

/// A simulated day run in slices, so a page (or a Web Worker) can report progress.
///
/// ```js
/// const run = new SimulationRun({ agents: 1000 });
/// while (!run.done) { run.advance(10 * 60_000); postMessage({ progress: run.progress }); }
/// const day = run.summary();
/// ```
#[wasm_bindgen]
pub struct SimulationRun {
    run: DayRun,
}

#[wasm_bindgen]
impl SimulationRun {
    /// Generates the day; throws `INVALID_CONFIG` on bad options.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "SimulateDayOptions | undefined")] options: JsValue,
    ) -> Result<SimulationRun, JsValue> {
        let config = workday_config(options)?;
        let run = DayRun::new(&config).map_err(|e| config_error(&e))?;
        Ok(Self { run })
    }

    /// Simulates up to `virtual_ms` more of the day.
    pub fn advance(&mut self, virtual_ms: f64) {
        let _ = self.run.advance(time(virtual_ms));
    }

    /// Share of the day simulated, 0 to 1.
    #[wasm_bindgen(getter)]
    pub fn progress(&self) -> f64 {
        self.run.progress()
    }

    /// Whether the day is over.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> bool {
        self.run.is_done()
    }

    /// The report so far as `section,key,value` CSV (the CLI's `report --csv` layout).
    #[wasm_bindgen(js_name = reportCsv)]
    pub fn report_csv(&self) -> String {
        self.run.summary().report.to_csv()
    }

    /// The summary so far.
    #[wasm_bindgen(unchecked_return_type = "DaySummary")]
    pub fn summary(&self) -> JsValue {
        to_js(&self.run.summary())
    }
}

/// [`throughput_workload`](cxone_agent_state_core::sim::throughput_workload) for JS (the speed comparison
/// with native code); returns the checksum's low 52 bits as a number.
#[wasm_bindgen(js_name = throughputWorkload)]
pub fn throughput_workload_js(agents: u32, per_agent: u32) -> f64 {
    (cxone_agent_state_core::sim::throughput_workload(agents, per_agent) & ((1 << 52) - 1)) as f64
}
