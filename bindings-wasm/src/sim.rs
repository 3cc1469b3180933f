//! The simulation module's exports: whole simulated days and the speed workload.

use cxone_agent_state_core::sim::{DayRun, WorkdayConfig};
use cxone_agent_state_core::{Engine, EngineConfig, Secret};
use serde::Serialize;
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
    }
    let o: Options = if options.is_undefined() || options.is_null() {
        Options::default()
    } else {
        from_js("simulateDay options", &options)?
    };
    let invalid = |field: &str, why: &str| coded("INVALID_CONFIG", &format!("{field} {why}"));
    let whole = |v: Option<f64>, field: &str, min: f64, max: f64| -> Result<Option<u64>, JsValue> {
        match v {
            None => Ok(None),
            Some(x) if x.is_finite() && x.fract() == 0.0 && x >= min && x <= max => {
                Ok(Some(x as u64))
            }
            Some(_) => Err(invalid(
                field,
                &format!("must be a whole number from {min} to {max}"),
            )),
        }
    };
    let share = |v: Option<f64>, field: &str| -> Result<Option<f64>, JsValue> {
        match v {
            None => Ok(None),
            Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
            Some(_) => Err(invalid(field, "must be between 0 and 1")),
        }
    };
    let d = WorkdayConfig::default();
    Ok(WorkdayConfig {
        agents: whole(o.agents, "agents", 1.0, 100_000.0)?.map_or(d.agents, |v| v as usize),
        shift_hours: whole(o.hours, "hours", 1.0, 24.0)?.unwrap_or(d.shift_hours),
        seed: whole(o.seed, "seed", 0.0, 9_007_199_254_740_991.0)?.unwrap_or(d.seed),
        fault_rate: share(o.faults, "faults")?.unwrap_or(d.fault_rate),
        rate_per_minute: whole(
            o.rate_limit_per_minute,
            "rateLimitPerMinute",
            1.0,
            1_000_000.0,
        )?
        .map_or(d.rate_per_minute, |v| v as u32),
        break_minutes: whole(o.break_minutes, "breakMinutes", 1.0, 120.0)?
            .unwrap_or(d.break_minutes),
        break_every_hours: whole(o.break_every_hours, "breakEveryHours", 1.0, 12.0)?
            .unwrap_or(d.break_every_hours),
        unscheduled_share: share(o.unscheduled_share, "unscheduledShare")?
            .unwrap_or(d.unscheduled_share),
        rule_breaker_share: share(o.rule_breaker_share, "ruleBreakerShare")?
            .unwrap_or(d.rule_breaker_share),
        start_ms: whole(o.start_ms, "startMs", 0.0, 9_007_199_254_740_991.0)?.unwrap_or(d.start_ms),
    })
}

fn summary_js(run: &DayRun) -> JsValue {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WithBuckets<'a> {
        #[serde(flatten)]
        summary: &'a cxone_agent_state_core::sim::DaySummary,
        latency_buckets_ms: &'a [u64],
    }
    let summary = run.summary();
    to_js(&WithBuckets {
        summary: &summary,
        latency_buckets_ms: &cxone_agent_state_core::sim::LATENCY_BUCKETS_MS,
    })
}

/// Runs a whole simulated day (the simulated tenant and the engine, in wasm, on virtual time) and returns
/// its summary. Throws `INVALID_CONFIG` on bad options (e.g. a negative agent count).
///
/// ```js
/// const day = simulateDay({ agents: 1000, hours: 8, seed: 42, faults: 0.02, rateLimitPerMinute: 100 });
/// console.log(day.report.violationCount, day.groundTruth.readyAcceptedDuringBreak); // …, 0
/// ```
#[wasm_bindgen(js_name = simulateDay, unchecked_return_type = "DaySummary")]
pub fn simulate_day(
    #[wasm_bindgen(unchecked_param_type = "SimulateDayOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let config = workday_config(options)?;
    let mut run = DayRun::new(&config).map_err(|e| config_error(&e))?;
    run.run(|_, _| {})
        .map_err(|e| coded("UPSTREAM_UNAVAILABLE", &e.to_string()))?;
    Ok(summary_js(&run))
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

    /// The summary so far.
    #[wasm_bindgen(unchecked_return_type = "DaySummary")]
    pub fn summary(&self) -> JsValue {
        summary_js(&self.run)
    }
}

/// A fixed engine workload against the in-process tenant (for comparing wasm with native speed): `agents`
/// agents each make `per_agent` changes; returns a checksum of the outcome.
pub fn throughput_workload(agents: u32, per_agent: u32) -> u64 {
    use cxone_agent_state_core::sim::{
        AgentPlan, Harness, SimConfig, SimTenant, Window, SIM_BASE_URL,
    };
    use cxone_agent_state_core::RateLimit;
    let t0 = cxone_agent_state_core::sim::WORKDAY_EPOCH_MS;
    let sim = SimConfig {
        rate_per_minute: 10_000_000,
        burst: 10_000_000,
        ..SimConfig::default()
    };
    let mut config = EngineConfig::new(
        SIM_BASE_URL,
        sim.client_id.clone(),
        Secret::new(sim.client_secret.clone()),
    );
    config.rate_limit = RateLimit {
        per_minute: 10_000_000,
        burst: Some(10_000_000),
    };
    let mut tenant = SimTenant::new(sim);
    for i in 0..agents {
        tenant.add_agent(AgentPlan {
            user_id: format!("w{i}"),
            shifts: vec![Window {
                start_ms: t0 - 3_600_000,
                end_ms: t0 + 86_400_000,
            }],
            breaks: vec![],
        });
    }
    let engine = Engine::new(config).expect("valid");
    let mut h = Harness::new(engine, tenant, t0);
    let states = ["READY", "NOT_READY", "PAUSED", "IDLE"];
    for round in 0..per_agent {
        for i in 0..agents {
            h.transition(&format!("w{i}"), states[(round as usize + i as usize) % 4]);
        }
        h.drive().expect("quiesces");
    }
    let head = h.engine.chain_head();
    head.next_seq ^ u64::from_str_radix(&head.last_hash[..12], 16).unwrap_or(0)
}

/// `throughput_workload` for JS; returns the checksum as a number.
#[wasm_bindgen(js_name = throughputWorkload)]
pub fn throughput_workload_js(agents: u32, per_agent: u32) -> f64 {
    (throughput_workload(agents, per_agent) & ((1 << 52) - 1)) as f64
}
