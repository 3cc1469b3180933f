//! A realistic shift day: agents, shifts, breaks and the transitions they try.

use serde::{Deserialize, Serialize};

use super::tenant::{ActivityConfig, AgentPlan, FaultKind, RandomFaults, SimConfig, Window};
use crate::error::ConfigError;
use crate::rng::DetRng;
use crate::state::{IDLE, NOT_READY, PAUSED, READY};

/// The default start of the simulated day: 2026-01-05T08:00:00Z (a Monday).
pub const WORKDAY_EPOCH_MS: u64 = 1_767_600_000_000;

/// Parameters of a simulated day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkdayConfig {
    /// Number of agents.
    pub agents: usize,
    /// Seed for the plan.
    pub seed: u64,
    /// Start of the day (Unix ms).
    pub start_ms: u64,
    /// Shift length in hours.
    pub shift_hours: u64,
    /// Share of requests that get a random fault.
    pub fault_rate: f64,
    /// Share of agents with no shift at all.
    pub unscheduled_share: f64,
    /// Share of agents who try READY during breaks or after their shift.
    pub rule_breaker_share: f64,
    /// The tenant's limit in requests per minute (its burst is the same figure).
    pub rate_per_minute: u32,
    /// Length of a short break in minutes (a lunch break is twice as long).
    pub break_minutes: u64,
    /// Hours between the breaks of a shift.
    pub break_every_hours: u64,
    /// Which API the engine speaks to the simulated tenant (`seed` by default).
    pub profile: crate::config::ProfileKind,
    /// How agents, supervisors and the ACD change states on their own (`cxone`; off by default).
    #[serde(skip_serializing_if = "ActivityConfig::is_default")]
    pub activity: ActivityConfig,
    /// Observe states changed elsewhere while the day runs (`cxone` only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observe: bool,
    /// Agents ask for READY with `defer`: one a due break refuses is held and applied when the break ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defer: bool,
}

impl Default for WorkdayConfig {
    fn default() -> Self {
        Self {
            agents: 200,
            seed: 42,
            start_ms: WORKDAY_EPOCH_MS,
            shift_hours: 8,
            fault_rate: 0.02,
            unscheduled_share: 0.02,
            rule_breaker_share: 0.15,
            rate_per_minute: 100,
            break_minutes: 15,
            break_every_hours: 2,
            profile: crate::config::ProfileKind::Seed,
            activity: ActivityConfig::default(),
            observe: false,
            defer: false,
        }
    }
}

/// A transition an agent tries at a given time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCommand {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The agent.
    pub user_id: String,
    /// The requested state.
    pub state: String,
}

/// A generated day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workday {
    /// The agents.
    pub agents: Vec<AgentPlan>,
    /// Commands sorted by time.
    pub commands: Vec<PlannedCommand>,
    /// The tenant configuration for the day (faults included).
    pub tenant: SimConfig,
    /// End of the day (Unix ms).
    pub end_ms: u64,
    /// Changes are asked with `defer` ([`WorkdayConfig::defer`]).
    pub defer: bool,
}

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

impl RandomFaults {
    /// The mix a simulated day draws from: 5xx, 429 with `Retry-After`, slow answers (one past the
    /// engine's default 10 s timeout), malformed bodies, dropped connections and revoked tokens.
    pub fn default_kinds() -> Vec<FaultKind> {
        vec![
            FaultKind::Status {
                status: 503,
                retry_after_s: None,
            },
            FaultKind::Status {
                status: 500,
                retry_after_s: None,
            },
            FaultKind::Status {
                status: 502,
                retry_after_s: None,
            },
            FaultKind::RateLimit { retry_after_s: 2 },
            FaultKind::Slow { extra_ms: 2_000 },
            FaultKind::Slow { extra_ms: 12_000 },
            FaultKind::Malformed,
            FaultKind::DropBefore,
            FaultKind::DropAfter,
            FaultKind::Unauthorized,
        ]
    }
}

impl WorkdayConfig {
    /// Checks every parameter; the error names the field (as in JSON) and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |field: &'static str, value: f64, min: f64, max: f64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    field,
                    reason: format!("must be from {min} to {max}"),
                })
            }
        };
        range("agents", self.agents as f64, 1.0, 100_000.0)?;
        range("shiftHours", self.shift_hours as f64, 1.0, 24.0)?;
        range("faultRate", self.fault_rate, 0.0, 1.0)?;
        range("unscheduledShare", self.unscheduled_share, 0.0, 1.0)?;
        range("ruleBreakerShare", self.rule_breaker_share, 0.0, 1.0)?;
        range(
            "ratePerMinute",
            f64::from(self.rate_per_minute),
            1.0,
            1_000_000.0,
        )?;
        range("breakMinutes", self.break_minutes as f64, 1.0, 120.0)?;
        range("breakEveryHours", self.break_every_hours as f64, 1.0, 12.0)?;
        self.activity.validate()?;
        if self.observe && self.profile != crate::config::ProfileKind::Cxone {
            return Err(ConfigError::Invalid {
                field: "observe",
                reason: "observation needs the cxone profile (seed has no endpoint to read states)"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

impl Workday {
    /// Generates a day; the same config gives the same day.
    ///
    /// Scheduled agents start READY at their shift start (staggered by quarter hours), take a break every
    /// `break_every_hours` (the middle one twice as long, as a lunch), go NOT_READY for each break and READY
    /// after it, pause ad hoc, sometimes sit IDLE or go to TRAINING (a state outside the reason-code table),
    /// and go NOT_READY just before their shift ends. Rule breakers also try READY in the middle of a break
    /// and after their shift; unscheduled agents try READY anyway.
    pub fn generate(config: &WorkdayConfig) -> Self {
        let mut rng = DetRng::new(config.seed);
        let shift_ms = config.shift_hours.max(1) * HOUR_MS;
        let every_ms = config.break_every_hours.max(1) * HOUR_MS;
        let short_ms = config.break_minutes.max(1) * MINUTE_MS;
        let tenant = SimConfig {
            seed: config.seed ^ 0x5eed_7e4a_u64,
            rate_per_minute: config.rate_per_minute.max(1),
            burst: config.rate_per_minute.max(1),
            wfm_rate_per_minute: config.rate_per_minute.max(1),
            wfm_burst: config.rate_per_minute.max(1),
            faults: RandomFaults {
                rate: config.fault_rate.clamp(0.0, 1.0),
                kinds: RandomFaults::default_kinds(),
            },
            activity: config.activity.clone(),
            ..SimConfig::default()
        };
        let notice_ms = tenant.break_notice_ms;
        let mut agents = Vec::with_capacity(config.agents);
        let mut commands = Vec::new();
        let mut end_ms = config.start_ms + shift_ms + HOUR_MS;
        for i in 0..config.agents {
            let user_id = format!("agent-{:04}", i + 1);
            let mut push = |at_ms: u64, state: &str| {
                commands.push(PlannedCommand {
                    at_ms,
                    user_id: user_id.clone(),
                    state: state.to_owned(),
                })
            };
            if rng.chance(config.unscheduled_share) {
                // Not on today's schedule, but tries to work anyway.
                push(config.start_ms + rng.below(HOUR_MS), READY);
                agents.push(AgentPlan {
                    user_id: user_id.clone(),
                    shifts: Vec::new(),
                    breaks: Vec::new(),
                    ..AgentPlan::default()
                });
                continue;
            }
            let start = config.start_ms + 15 * MINUTE_MS * rng.below(4);
            let shift = Window {
                start_ms: start,
                end_ms: start + shift_ms,
            };
            end_ms = end_ms.max(shift.end_ms + HOUR_MS);
            let count = (shift_ms - 1) / every_ms;
            let mut breaks = Vec::new();
            for k in 1..=count {
                let lunch = count >= 3 && k == count.div_ceil(2);
                let len = if lunch { 2 * short_ms } else { short_ms };
                let at = start + k * every_ms + rng.below(20 * MINUTE_MS) - 10 * MINUTE_MS;
                if at + len + 5 * MINUTE_MS < shift.end_ms {
                    breaks.push(Window {
                        start_ms: at,
                        end_ms: at + len,
                    });
                }
            }
            let breaker = rng.chance(config.rule_breaker_share);

            push(start + rng.below(3 * MINUTE_MS), READY);
            // The gaps between breaks, where ad-hoc changes happen away from any break notice.
            let mut gap_start = start + 10 * MINUTE_MS;
            let mut gaps = Vec::new();
            for b in &breaks {
                gaps.push((
                    gap_start,
                    b.start_ms.saturating_sub(notice_ms + 20 * MINUTE_MS),
                ));
                gap_start = b.end_ms + 10 * MINUTE_MS;
            }
            gaps.push((gap_start, shift.end_ms.saturating_sub(30 * MINUTE_MS)));
            for &(from, to) in &gaps {
                if to <= from + 15 * MINUTE_MS {
                    continue;
                }
                let at = from + rng.below(to - from - 15 * MINUTE_MS);
                let roll = rng.below(10);
                let away = match roll {
                    0..=3 => Some((PAUSED, 3 + rng.below(6))),
                    4 => Some((IDLE, 2 + rng.below(5))),
                    5 => Some(("TRAINING", 10)),
                    _ => None,
                };
                if let Some((state, minutes)) = away {
                    push(at, state);
                    push(at + minutes * MINUTE_MS, READY);
                }
            }
            for b in &breaks {
                push(
                    b.start_ms.saturating_sub(rng.below(2 * MINUTE_MS)),
                    NOT_READY,
                );
                push(b.end_ms + rng.below(3 * MINUTE_MS), READY);
            }
            if breaker {
                if !breaks.is_empty() {
                    let b = breaks[rng.below(breaks.len() as u64) as usize];
                    let span = b.end_ms - b.start_ms;
                    push(b.start_ms + span / 4 + rng.below(span / 2), READY);
                }
                if rng.chance(0.5) {
                    push(
                        shift.end_ms + 5 * MINUTE_MS + rng.below(15 * MINUTE_MS),
                        READY,
                    );
                }
            }
            push(
                shift.end_ms - MINUTE_MS - rng.below(3 * MINUTE_MS),
                NOT_READY,
            );
            agents.push(AgentPlan {
                user_id: user_id.clone(),
                shifts: vec![shift],
                breaks,
                ..AgentPlan::default()
            });
        }
        commands.sort_by(|a, b| (a.at_ms, &a.user_id).cmp(&(b.at_ms, &b.user_id)));
        Self {
            agents,
            commands,
            tenant,
            end_ms,
            defer: config.defer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_config_same_day_and_sane_plans() {
        let cfg = WorkdayConfig {
            agents: 50,
            ..WorkdayConfig::default()
        };
        let a = Workday::generate(&cfg);
        assert_eq!(a, Workday::generate(&cfg));
        assert_ne!(
            a,
            Workday::generate(&WorkdayConfig {
                seed: 43,
                ..cfg.clone()
            })
        );
        assert_eq!(a.agents.len(), 50);
        assert!(a.commands.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        for plan in a.agents.iter().filter(|p| !p.shifts.is_empty()) {
            let shift = plan.shifts[0];
            assert_eq!(shift.end_ms - shift.start_ms, 8 * HOUR_MS);
            assert_eq!(plan.breaks.len(), 3, "{}", plan.user_id);
            assert_eq!(
                plan.breaks[1].end_ms - plan.breaks[1].start_ms,
                30 * MINUTE_MS
            );
            for b in &plan.breaks {
                assert!(shift.contains(b.start_ms) && shift.contains(b.end_ms));
            }
        }
        // Every agent has something to do, and some try READY inside a break.
        let in_break = a
            .commands
            .iter()
            .filter(|c| c.state == READY)
            .filter(|c| {
                let p = a.agents.iter().find(|p| p.user_id == c.user_id).unwrap();
                p.breaks.iter().any(|b| b.contains(c.at_ms))
            })
            .count();
        assert!(in_break > 0);
    }
}
