//! WFM schedules: the schedule export, and what it says about "scheduled now" and "mandatory break now".
//!
//! One request per agent: `POST {wfm}/schedules/export` with `{startDate, endDate, userID}` (one agent, at most
//! seven days, `yyyy-mm-dd`) answers with the agent's shifts and their activity intervals. The engine keeps
//! each agent's export for a while ([`ScheduleCacheEntry`], [`DEFAULT_SCHEDULE_TTL_MS`]) and decides every
//! transition locally from it ([`AgentSchedule::scheduled_at`], [`AgentSchedule::break_at`],
//! [`AgentSchedule::next_break_start_after`]); it never asks the tenant per transition.
//!
//! Facts are tagged as in `cxone-api-facts.md` §5: **\[C]** confirmed, **\[I]** inferred (and configurable, or
//! read leniently). The endpoint, its body, its limits and the outer answer shape are \[C]. The host (the
//! UserHub family) is \[I]: the caller passes it in. The shape of `activityIntervals` items is \[I] (untyped in
//! the spec; borrowed from the agent-facing schedule endpoint). Breaks have no flag: which activities are
//! mandatory breaks is \[I] and configured by [`BreakRule`].

use std::str::FromStr;

use serde_json::Value;

use super::{bearer, member_of, normalize_name, tenant_words};
use crate::config::Secret;
use crate::error::{BreakWindow, ConfigError, ErrorCode, TransitionError};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::profile::{BreakStatus, ScheduleAnswer};
use crate::time::{iso8601, parse_iso8601, Now};

/// The most days one export may ask for: *"up to seven days"* \[C: help `apiexportagentschedules`].
pub const MAX_EXPORT_DAYS: u8 = 7;

/// How long an agent's export is reused before it is read again: 60 minutes. \[I: our choice, configurable.]
/// Schedules change rarely within an hour; a shorter TTL costs one export per agent per TTL, never one per
/// transition.
pub const DEFAULT_SCHEDULE_TTL_MS: u64 = 60 * 60 * 1000;

/// The setting that names the mandatory-break activity titles, comma-separated (see [`BreakRule`]'s `FromStr`).
pub const BREAK_ACTIVITIES_SETTING: &str = "CXONE_BREAK_ACTIVITIES";

/// The permission the export needs (Manage also works) \[C: facts §5], named in a 403's message.
pub const SCHEDULE_PERMISSION: &str = "WFM > Scheduling > Schedule Manager: View";

const DAY_MS: u64 = 86_400_000;

/// The schedule export for one agent: `POST {wfm_base}/schedules/export` (a trailing `/` on the base is
/// dropped), with a Bearer token and a JSON body `{"startDate","endDate","userID"}`.
///
/// `days` is clamped to `1..=`[`MAX_EXPORT_DAYS`]. The dates are the UTC days of `from_unix_ms` and of
/// `days - 1` days later: `endDate` is taken as **inclusive** \[I: the facts' example asks 2026-01-05 to
/// 2026-01-11, Monday to Sunday, for "seven days"]. The tenant may read the dates in the business unit's time
/// zone \[I], and a shift running at `from_unix_ms` may have started the day before, so the engine should start
/// the export a day before the moment it cares about. `user_id` is the agent's UserHub `userID` (from
/// `GET /agents`), not its ACD `agentId`. `timeout_ms` is 0; the engine fills it in.
pub fn export_request(
    wfm_base: &str,
    user_id: &str,
    from_unix_ms: u64,
    days: u8,
    token: &Secret,
) -> HttpRequest {
    let last_day_ms =
        from_unix_ms.saturating_add(u64::from(days.clamp(1, MAX_EXPORT_DAYS) - 1) * DAY_MS);
    let body = format!(
        r#"{{"startDate":"{}","endDate":"{}","userID":{}}}"#,
        utc_date(from_unix_ms),
        utc_date(last_day_ms),
        Value::from(user_id)
    );
    HttpRequest {
        method: Method::Post,
        url: format!("{}/schedules/export", wfm_base.trim_end_matches('/')),
        headers: vec![
            bearer(token),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: Some(body),
        timeout_ms: 0,
    }
}

/// `yyyy-mm-dd` of a Unix-ms instant, in UTC (the date part of RFC 3339).
fn utc_date(ms: u64) -> String {
    let mut s = iso8601(ms);
    s.truncate(10);
    s
}

/// An activity code, as a shift's `baseActivityCode` or an interval's `activityCode` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityCode {
    /// The activity's title (`"Lunch"`, `"Break"`, `"Shift"`, …).
    pub title: String,
    /// `work`, when the answer gives it (intervals' codes may lack it \[I]).
    pub work: Option<bool>,
    /// `open`, when the answer gives it.
    pub open: Option<bool>,
}

/// One activity interval of a shift, `[start_ms, end_ms)` in Unix ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityInterval {
    /// What the agent is scheduled to do.
    pub code: ActivityCode,
    /// When it starts (inclusive).
    pub start_ms: u64,
    /// When it ends (exclusive).
    pub end_ms: u64,
}

/// One shift, `[start_ms, end_ms)` in Unix ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shift {
    /// When it starts (inclusive).
    pub start_ms: u64,
    /// When it ends (exclusive).
    pub end_ms: u64,
    /// The shift's `baseActivityCode`, when the answer gives one.
    pub base: Option<ActivityCode>,
    /// Its activity intervals, in the answer's order.
    pub intervals: Vec<ActivityInterval>,
}

/// One agent's schedule as one export gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSchedule {
    /// The export's first instant: the start of its `start` day, UTC \[I: the days' time zone is not documented].
    pub range_start_ms: u64,
    /// The first instant after the export: the end of its (inclusive) `end` day, UTC.
    pub range_end_ms: u64,
    /// The agent's shifts; empty when the agent is not in `agentSchedules` (not scheduled).
    pub shifts: Vec<Shift>,
}

impl AgentSchedule {
    /// Whether the export's date range covers `t_ms` (Unix). When it does not, read the schedule again
    /// before deciding anything at `t_ms`.
    pub fn covers(&self, t_ms: u64) -> bool {
        self.range_start_ms <= t_ms && t_ms < self.range_end_ms
    }

    /// Whether the agent is in a shift at `t_ms` (start inclusive, end exclusive), and when that shift ends
    /// (`scheduled`, `shift_end_ms`; the latest end if shifts overlap). Any shift counts, whatever its base
    /// activity \[I].
    pub fn scheduled_at(&self, t_ms: u64) -> ScheduleAnswer {
        let end = self
            .shifts
            .iter()
            .filter(|s| s.start_ms <= t_ms && t_ms < s.end_ms)
            .map(|s| s.end_ms)
            .max();
        ScheduleAnswer {
            scheduled: end.is_some(),
            shift_end_ms: end,
        }
    }

    /// The mandatory breaks under `rule`, sorted, with overlapping or touching intervals merged (a Break that
    /// runs straight into a Lunch is one window).
    pub fn break_windows(&self, rule: &BreakRule) -> Vec<BreakWindow> {
        let mut found: Vec<(u64, u64)> = self
            .shifts
            .iter()
            .flat_map(|s| &s.intervals)
            .filter(|i| i.start_ms < i.end_ms && rule.is_break(&i.code))
            .map(|i| (i.start_ms, i.end_ms))
            .collect();
        found.sort_unstable();
        let mut merged: Vec<BreakWindow> = Vec::with_capacity(found.len());
        for (start_ms, end_ms) in found {
            match merged.last_mut() {
                Some(last) if start_ms <= last.end_ms => last.end_ms = last.end_ms.max(end_ms),
                _ => merged.push(BreakWindow { start_ms, end_ms }),
            }
        }
        merged
    }

    /// Whether a mandatory break (under `rule`) is in progress at `t_ms`, and its window (`required`,
    /// `window`). READY is refused while one is.
    pub fn break_at(&self, t_ms: u64, rule: &BreakRule) -> BreakStatus {
        let window = self
            .break_windows(rule)
            .into_iter()
            .find(|w| w.start_ms <= t_ms && t_ms < w.end_ms);
        BreakStatus {
            required: window.is_some(),
            window,
        }
    }

    /// The start of the first mandatory break (under `rule`) that begins strictly after `t_ms`.
    ///
    /// A change checked at `t_ms` may land as late as `t_ms` plus the commit window; if a break starts
    /// before then, the engine refuses READY (or checks again just before sending).
    pub fn next_break_start_after(&self, t_ms: u64, rule: &BreakRule) -> Option<u64> {
        self.break_windows(rule)
            .into_iter()
            .map(|w| w.start_ms)
            .find(|&start| start > t_ms)
    }
}

/// Which activities are mandatory breaks. Breaks have no flag in the export \[C, negative]; recognising them is
/// \[I] and configurable.
///
/// An activity is a break when its title is one of `titles` (case-insensitive; `_`, `-` and space count as the
/// same), or, when `non_work_is_break` is set, when its code says `work: false`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BreakRule {
    /// Break titles; default `["Break", "Lunch"]` (setting [`BREAK_ACTIVITIES_SETTING`]).
    pub titles: Vec<String>,
    /// Whether any `work: false` activity is a break too; default `false` (non-work also covers meetings and
    /// training, which do not forbid READY).
    pub non_work_is_break: bool,
}

impl Default for BreakRule {
    fn default() -> Self {
        Self {
            titles: vec!["Break".to_owned(), "Lunch".to_owned()],
            non_work_is_break: false,
        }
    }
}

impl BreakRule {
    /// Whether an activity with this code is a mandatory break.
    pub fn is_break(&self, code: &ActivityCode) -> bool {
        (self.non_work_is_break && code.work == Some(false))
            || self
                .titles
                .iter()
                .any(|t| normalize_name(t) == normalize_name(&code.title))
    }
}

impl FromStr for BreakRule {
    type Err = ConfigError;

    /// Reads [`BREAK_ACTIVITIES_SETTING`]: comma-separated titles, blanks ignored (`"Break, Lunch,Rest"`).
    /// A value naming no title is refused, so a typo cannot switch break enforcement off. `non_work_is_break`
    /// stays `false`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let titles: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if titles.is_empty() {
            return Err(ConfigError::Invalid {
                field: BREAK_ACTIVITIES_SETTING,
                reason: "names no activity title".to_owned(),
            });
        }
        Ok(Self {
            titles,
            non_work_is_break: false,
        })
    }
}

/// One agent's export and when it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleCacheEntry {
    /// The export.
    pub schedule: AgentSchedule,
    /// When it was read, on the **monotonic** clock ([`Now::mono_ms`]), so a wall-clock step neither stretches
    /// nor shrinks the TTL.
    pub fetched_at_ms: u64,
}

impl ScheduleCacheEntry {
    /// Whether the entry may still decide a transition at `now`: read less than `ttl_ms` ago (monotonic; see
    /// [`DEFAULT_SCHEDULE_TTL_MS`]) and covering `now`'s wall time. A TTL of 0 is never fresh.
    pub fn fresh(&self, now: Now, ttl_ms: u64) -> bool {
        now.mono_ms < self.fetched_at_ms.saturating_add(ttl_ms) && self.schedule.covers(now.unix_ms)
    }
}

/// A 400 or 403 export answer as a coded error, or `None` for any other status.
///
/// 400 gives `BAD_REQUEST`; 403 gives `FORBIDDEN` and names [`SCHEDULE_PERMISSION`]. Both keep the tenant's
/// words: the `icStatusDescription` header, else the body's `{error, error_description}` \[C: facts §6].
pub fn refusal(response: &HttpResponse) -> Option<TransitionError> {
    let (code, hint) = match response.status {
        400 => (ErrorCode::BadRequest, String::new()),
        403 => (
            ErrorCode::Forbidden,
            format!("; the API user needs the permission {SCHEDULE_PERMISSION}"),
        ),
        _ => return None,
    };
    let words = tenant_words(response)
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    Some(TransitionError::new(
        code,
        format!(
            "the WFM schedule export was refused ({}){words}{hint}",
            response.status
        ),
    ))
}

/// Reads an export answer into `user_id`'s schedule.
///
/// Member names are matched case-insensitively (`userId` here, `userID` in the request). Timestamps are
/// ISO 8601 with `Z` or a `±hh:mm` offset; one without a zone is refused rather than guessed. `start` and `end`
/// may be `yyyy-mm-dd` days (UTC, `end` inclusive) or timestamps. An agent missing from `agentSchedules` gets
/// an empty schedule (not scheduled); its entries' `shifts` and `activityIntervals` may be absent (none).
/// Anything else missing or garbled is `BAD_RESPONSE`, naming the member. A 400 or 403 gives [`refusal`]'s
/// error; another non-2xx status is `BAD_RESPONSE`.
pub fn parse_export(
    response: &HttpResponse,
    user_id: &str,
) -> Result<AgentSchedule, TransitionError> {
    if !(200..300).contains(&response.status) {
        return Err(refusal(response)
            .unwrap_or_else(|| bad(format!("answered status {}", response.status))));
    }
    let body: Value = serde_json::from_str(&response.body)
        .map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let range_start_ms = range_bound(&body, "start", 0)?;
    let range_end_ms = range_bound(&body, "end", DAY_MS)?;
    let mut shifts = Vec::new();
    for (i, entry) in list(&body, "", "agentSchedules", true)?.iter().enumerate() {
        let path = format!("agentSchedules[{i}]");
        if !text(entry, &path, "userId")?.eq_ignore_ascii_case(user_id) {
            continue;
        }
        for (j, shift) in list(entry, &path, "shifts", false)?.iter().enumerate() {
            shifts.push(parse_shift(shift, &format!("{path}.shifts[{j}]"))?);
        }
    }
    Ok(AgentSchedule {
        range_start_ms,
        range_end_ms,
        shifts,
    })
}

/// Reads a stored schedule in the export's format (`{"agentSchedules": [{"userId", "shifts": […]}]}`, the
/// range members `start`/`end` optional) for every agent in it: user id → shifts, in file order. An agent
/// listed twice has the shifts of both entries. Errors are `BAD_RESPONSE` naming the member, as
/// [`parse_export`]'s.
pub fn parse_schedule_document(
    text_: &str,
) -> Result<std::collections::BTreeMap<String, Vec<Shift>>, TransitionError> {
    let body: Value =
        serde_json::from_str(text_).map_err(|e| bad(format!("the file is not JSON: {e}")))?;
    let mut out: std::collections::BTreeMap<String, Vec<Shift>> = Default::default();
    for (i, entry) in list(&body, "", "agentSchedules", true)?.iter().enumerate() {
        let path = format!("agentSchedules[{i}]");
        let user = text(entry, &path, "userId")?.to_owned();
        let shifts = out.entry(user).or_default();
        for (j, shift) in list(entry, &path, "shifts", false)?.iter().enumerate() {
            shifts.push(parse_shift(shift, &format!("{path}.shifts[{j}]"))?);
        }
    }
    Ok(out)
}

/// A stored schedule ([`parse_schedule_document`]) as adherence reads it: user id → shifts, each activity a
/// mandatory break when `rule` says so.
pub fn read_schedules(
    text_: &str,
    rule: &BreakRule,
) -> Result<
    std::collections::BTreeMap<String, Vec<crate::adherence::ScheduledShift>>,
    TransitionError,
> {
    Ok(parse_schedule_document(text_)?
        .into_iter()
        .map(|(user, shifts)| (user, shifts.iter().map(|s| s.to_adherence(rule)).collect()))
        .collect())
}

impl Shift {
    /// The shift as adherence reads it: its activity intervals, each a mandatory break when `rule` says so.
    pub fn to_adherence(&self, rule: &BreakRule) -> crate::adherence::ScheduledShift {
        crate::adherence::ScheduledShift {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            activities: self
                .intervals
                .iter()
                .map(|i| crate::adherence::ScheduledActivity {
                    name: i.code.title.clone(),
                    start_ms: i.start_ms,
                    end_ms: i.end_ms,
                    mandatory_break: rule.is_break(&i.code),
                })
                .collect(),
        }
    }
}

/// Schedules written in the export's format, which [`parse_schedule_document`] reads back: each shift with
/// a `Shift` base activity, each activity an interval (`work: false` for a mandatory break). `start`/`end`
/// span the shifts' days.
pub fn schedule_document(
    schedules: &std::collections::BTreeMap<String, Vec<crate::adherence::ScheduledShift>>,
) -> Value {
    let all = schedules.values().flatten();
    let start = all.clone().map(|s| s.start_ms).min().unwrap_or(0);
    let end = all.map(|s| s.end_ms).max().unwrap_or(0);
    let agents: Vec<Value> = schedules
        .iter()
        .map(|(user, shifts)| {
            let shifts: Vec<Value> = shifts
                .iter()
                .map(|s| {
                    let intervals: Vec<Value> = s
                        .activities
                        .iter()
                        .map(|a| {
                            serde_json::json!({
                                "activityCode": {
                                    "title": a.name,
                                    "work": !a.mandatory_break,
                                    "open": false,
                                },
                                "start": iso8601(a.start_ms),
                                "end": iso8601(a.end_ms),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "start": iso8601(s.start_ms),
                        "end": iso8601(s.end_ms),
                        "baseActivityCode": { "title": "Shift", "work": true, "open": true },
                        "activityIntervals": intervals,
                    })
                })
                .collect();
            serde_json::json!({ "userId": user, "shifts": shifts })
        })
        .collect();
    serde_json::json!({
        "start": utc_date(start),
        "end": utc_date(end.saturating_sub(1)),
        "agentSchedules": agents,
    })
}

fn parse_shift(shift: &Value, path: &str) -> Result<Shift, TransitionError> {
    let (start_ms, end_ms) = span(shift, path)?;
    let base = match member(shift, "baseActivityCode") {
        Some(code) => Some(activity_code(code, &at(path, "baseActivityCode"))?),
        None => None,
    };
    let mut intervals = Vec::new();
    for (k, item) in list(shift, path, "activityIntervals", false)?
        .iter()
        .enumerate()
    {
        let path = format!("{path}.activityIntervals[{k}]");
        let code = member(item, "activityCode")
            .ok_or_else(|| bad(format!("`{path}.activityCode` is missing")))?;
        let code = activity_code(code, &at(&path, "activityCode"))?;
        let (start_ms, end_ms) = span(item, &path)?;
        intervals.push(ActivityInterval {
            code,
            start_ms,
            end_ms,
        });
    }
    Ok(Shift {
        start_ms,
        end_ms,
        base,
        intervals,
    })
}

fn activity_code(code: &Value, path: &str) -> Result<ActivityCode, TransitionError> {
    Ok(ActivityCode {
        title: text(code, path, "title")?.to_owned(),
        work: flag(code, path, "work")?,
        open: flag(code, path, "open")?,
    })
}

/// `start` and `end` of a shift or an interval, checked to be in order.
fn span(v: &Value, path: &str) -> Result<(u64, u64), TransitionError> {
    let time = |name| {
        let s = text(v, path, name)?;
        parse_instant(s).ok_or_else(|| {
            bad(format!(
                "`{}` is not an ISO 8601 time with a zone",
                at(path, name)
            ))
        })
    };
    let (start, end) = (time("start")?, time("end")?);
    if end < start {
        return Err(bad(format!("`{path}` ends before it starts")));
    }
    Ok((start, end))
}

/// The export's `start` or `end`: a `yyyy-mm-dd` day (its first instant plus `day_offset_ms`) or a timestamp.
fn range_bound(body: &Value, name: &str, day_offset_ms: u64) -> Result<u64, TransitionError> {
    let s = text(body, "", name)?;
    let day = (s.len() == 10)
        .then(|| parse_instant(&format!("{s}T00:00:00Z")))
        .flatten()
        .map(|ms| ms + day_offset_ms);
    day.or_else(|| parse_instant(s))
        .ok_or_else(|| bad(format!("`{name}` is neither a yyyy-mm-dd day nor a time")))
}

/// RFC 3339 with a required zone: `Z` or `±hh:mm`. [`parse_iso8601`] alone reads a missing zone as UTC and
/// ignores (or refuses) other offsets, so the zone is taken off and applied here.
fn parse_instant(s: &str) -> Option<u64> {
    let s = s.trim();
    let (local, offset_min) = match s.strip_suffix(['Z', 'z']) {
        Some(local) => (local, 0),
        None => {
            let split = s.len().checked_sub(6)?;
            let &[sign, h1, h2, b':', m1, m2] = s.get(split..)?.as_bytes() else {
                return None;
            };
            let digits = [h1, h2, m1, m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let [h1, h2, m1, m2] = digits.map(|d| i64::from(d - b'0'));
            let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let minutes = hours * 60 + minutes;
            let offset = match sign {
                b'+' => minutes,
                b'-' => -minutes,
                _ => return None,
            };
            (s.get(..split)?, offset)
        }
    };
    // Only `yyyy-mm-ddThh:mm:ss` and optional fractional seconds may remain.
    let fraction = local.get(19..)?;
    let fraction_ok = fraction.is_empty()
        || fraction
            .strip_prefix('.')
            .is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !fraction_ok {
        return None;
    }
    let local_ms = i128::from(parse_iso8601(local)?);
    u64::try_from(local_ms - i128::from(offset_min) * 60_000).ok()
}

/// A member by name, exact first, else case-insensitively; `null` counts as absent.
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    member_of(v.as_object()?, name).filter(|v| !v.is_null())
}

fn at(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn text<'a>(v: &'a Value, path: &str, name: &str) -> Result<&'a str, TransitionError> {
    match member(v, name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("`{}` is not a string", at(path, name)))),
        None => Err(bad(format!("`{}` is missing", at(path, name)))),
    }
}

fn flag(v: &Value, path: &str, name: &str) -> Result<Option<bool>, TransitionError> {
    match member(v, name) {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("`{}` is not true or false", at(path, name)))),
        None => Ok(None),
    }
}

/// A list member; absent is an error only when `required`.
fn list<'a>(
    v: &'a Value,
    path: &str,
    name: &str,
    required: bool,
) -> Result<&'a [Value], TransitionError> {
    match member(v, name) {
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(bad(format!("`{}` is not a list", at(path, name)))),
        None if required => Err(bad(format!("`{}` is missing", at(path, name)))),
        None => Ok(&[]),
    }
}

fn bad(what: String) -> TransitionError {
    TransitionError::new(
        ErrorCode::BadResponse,
        format!("WFM schedule export: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "11eb8f7a-0000-4c2a-9a3b-00000000beef";

    fn ms(s: &str) -> u64 {
        parse_iso8601(s).unwrap()
    }

    fn ok(body: &str) -> HttpResponse {
        HttpResponse::new(200, vec![], body)
    }

    fn body_of(r: &HttpRequest) -> Value {
        serde_json::from_str(r.body.as_deref().unwrap()).unwrap()
    }

    /// The facts' example, filled in: an 08:00–16:30 shift with a Break, a Lunch and a Meeting (`work:false`).
    const EXAMPLE: &str = r#"{"start":"2026-01-05","end":"2026-01-11","agentSchedules":[{"userId":"11eb8f7a-0000-4c2a-9a3b-00000000beef","shifts":[{"start":"2026-01-05T08:00:00.000Z","end":"2026-01-05T16:30:00.000Z","shiftNotes":"","baseActivityCode":{"title":"Shift","open":true,"work":true,"overTime":false},"activityIntervals":[
        {"activityCode":{"id":"a1","title":"Break"},"start":"2026-01-05T10:00:00.000Z","end":"2026-01-05T10:15:00.000Z","activityNotes":""},
        {"activityCode":{"id":"a2","title":"lunch","work":false},"start":"2026-01-05T12:00:00Z","end":"2026-01-05T12:30:00Z","activityNotes":""},
        {"activityCode":{"id":"a3","title":"Team Meeting","work":false,"open":false},"start":"2026-01-05T14:00:00Z","end":"2026-01-05T14:30:00Z","activityNotes":""},
        {"activityCode":{"id":"a4","title":"LUNCH_BREAK"},"start":"2026-01-05T15:00:00Z","end":"2026-01-05T15:10:00Z","activityNotes":""}
    ]}]}]}"#;

    fn example() -> AgentSchedule {
        parse_export(&ok(EXAMPLE), USER).unwrap()
    }

    #[test]
    fn export_request_asks_for_inclusive_utc_days_across_year_end() {
        let token = Secret::new("tok");
        let from = ms("2026-12-30T23:59:59.999Z");
        let r = export_request("https://na1.nice-incontact.com/", USER, from, 7, &token);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url, "https://na1.nice-incontact.com/schedules/export");
        assert_eq!(r.header("authorization"), Some("Bearer tok"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(
            r.body.as_deref(),
            Some(
                format!(r#"{{"startDate":"2026-12-30","endDate":"2027-01-05","userID":"{USER}"}}"#)
                    .as_str()
            )
        );
        // Across a month end in a leap year, and one day only.
        let one = export_request("https://h", "u", ms("2028-02-29T12:00:00Z"), 1, &token);
        assert_eq!(body_of(&one)["startDate"], "2028-02-29");
        assert_eq!(body_of(&one)["endDate"], "2028-02-29");
        let three = export_request("https://h", "u", ms("2026-01-30T00:00:00Z"), 3, &token);
        assert_eq!(body_of(&three)["endDate"], "2026-02-01");
    }

    #[test]
    fn export_request_clamps_days_and_escapes_the_user() {
        let token = Secret::new("t");
        let from = ms("2026-01-05T09:00:00Z");
        let many = export_request("https://h", "u", from, 30, &token);
        assert_eq!(body_of(&many)["endDate"], "2026-01-11");
        let none = export_request("https://h", "u", from, 0, &token);
        assert_eq!(body_of(&none)["endDate"], "2026-01-05");
        let quoted = export_request("https://h", "a\"b", from, 1, &token);
        assert_eq!(body_of(&quoted)["userID"], "a\"b");
    }

    #[test]
    fn parses_the_facts_example() {
        let s = example();
        assert_eq!(s.range_start_ms, ms("2026-01-05T00:00:00Z"));
        assert_eq!(s.range_end_ms, ms("2026-01-12T00:00:00Z"));
        assert_eq!(s.shifts.len(), 1);
        let shift = &s.shifts[0];
        assert_eq!(
            (shift.start_ms, shift.end_ms),
            (ms("2026-01-05T08:00:00Z"), ms("2026-01-05T16:30:00Z"))
        );
        assert_eq!(
            shift.base,
            Some(ActivityCode {
                title: "Shift".into(),
                work: Some(true),
                open: Some(true)
            })
        );
        assert_eq!(shift.intervals.len(), 4);
        assert_eq!(shift.intervals[1].code.title, "lunch");
        assert_eq!(shift.intervals[1].code.work, Some(false));
        assert_eq!(shift.intervals[0].code.work, None);
        assert_eq!(shift.intervals[2].end_ms, ms("2026-01-05T14:30:00Z"));
    }

    #[test]
    fn members_match_case_insensitively_and_ids_too() {
        let body = r#"{"START":"2026-01-05","End":"2026-01-05","AgentSchedules":[{"USERID":"11EB8F7A-0000-4C2A-9A3B-00000000BEEF","Shifts":[{"Start":"2026-01-05T08:00:00Z","END":"2026-01-05T09:00:00Z","ActivityIntervals":[{"ActivityCode":{"Title":"Break","Work":false},"START":"2026-01-05T08:10:00Z","end":"2026-01-05T08:20:00Z"}]}]}]}"#;
        let s = parse_export(&ok(body), USER).unwrap();
        assert_eq!(s.shifts.len(), 1);
        assert_eq!(s.shifts[0].intervals[0].code.work, Some(false));
        assert!(s.scheduled_at(ms("2026-01-05T08:30:00Z")).scheduled);
    }

    #[test]
    fn an_agent_without_schedules_is_not_scheduled() {
        let s = parse_export(&ok(EXAMPLE), "someone-else").unwrap();
        assert!(s.shifts.is_empty());
        assert!(s.covers(ms("2026-01-05T10:00:00Z")));
        assert!(!s.scheduled_at(ms("2026-01-05T10:00:00Z")).scheduled);
        let empty =
            r#"{"start":"2026-01-05","end":"2026-01-05","agentSchedules":[{"userId":"x"}]}"#;
        assert!(parse_export(&ok(empty), "x").unwrap().shifts.is_empty());
        let none = r#"{"start":"2026-01-05","end":"2026-01-05","agentSchedules":[]}"#;
        assert!(parse_export(&ok(none), "x").unwrap().shifts.is_empty());
    }

    #[test]
    fn scheduled_from_shift_start_inclusive_to_end_exclusive() {
        let s = example();
        let start = ms("2026-01-05T08:00:00Z");
        let end = ms("2026-01-05T16:30:00Z");
        assert_eq!(
            s.scheduled_at(start),
            ScheduleAnswer {
                scheduled: true,
                shift_end_ms: Some(end)
            }
        );
        assert!(s.scheduled_at(end - 1).scheduled);
        assert_eq!(
            s.scheduled_at(end),
            ScheduleAnswer {
                scheduled: false,
                shift_end_ms: None
            }
        );
        assert!(!s.scheduled_at(start - 1).scheduled);
    }

    #[test]
    fn breaks_by_title_and_the_window_reported() {
        let s = example();
        let rule = BreakRule::default();
        let lunch = s.break_at(ms("2026-01-05T12:10:00Z"), &rule);
        assert!(lunch.required);
        assert_eq!(
            lunch.window,
            Some(BreakWindow {
                start_ms: ms("2026-01-05T12:00:00Z"),
                end_ms: ms("2026-01-05T12:30:00Z")
            })
        );
        assert!(s.break_at(ms("2026-01-05T10:00:00Z"), &rule).required);
        assert!(!s.break_at(ms("2026-01-05T10:15:00Z"), &rule).required);
        // LUNCH_BREAK is not "Lunch"; a meeting is work:false but not a break by default.
        assert!(!s.break_at(ms("2026-01-05T15:05:00Z"), &rule).required);
        assert_eq!(
            s.break_at(ms("2026-01-05T14:10:00Z"), &rule),
            BreakStatus {
                required: false,
                window: None
            }
        );
        let configured: BreakRule = "Lunch break, Break".parse().unwrap();
        assert!(s.break_at(ms("2026-01-05T15:05:00Z"), &configured).required);
        assert!(!s.break_at(ms("2026-01-05T12:10:00Z"), &configured).required);
    }

    #[test]
    fn non_work_counts_only_when_asked() {
        let s = example();
        let rule = BreakRule {
            titles: vec![],
            non_work_is_break: true,
        };
        assert!(s.break_at(ms("2026-01-05T14:10:00Z"), &rule).required);
        assert!(s.break_at(ms("2026-01-05T12:10:00Z"), &rule).required);
        // The Break interval's code gives no `work`, so it is not non-work.
        assert!(!s.break_at(ms("2026-01-05T10:05:00Z"), &rule).required);
    }

    #[test]
    fn title_matching_folds_case_and_separators() {
        let rule = BreakRule {
            titles: vec!["Lunch-Break".into()],
            non_work_is_break: false,
        };
        let code = |t: &str| ActivityCode {
            title: t.into(),
            work: None,
            open: None,
        };
        assert!(rule.is_break(&code("LUNCH_BREAK")));
        assert!(rule.is_break(&code(" lunch break ")));
        assert!(!rule.is_break(&code("Lunch")));
        assert!(!rule.is_break(&code("LunchBreak")));
    }

    #[test]
    fn break_activities_setting_parses() {
        let r: BreakRule = " Rest ,, Lunch ".parse().unwrap();
        assert_eq!(r.titles, vec!["Rest".to_owned(), "Lunch".to_owned()]);
        assert!(!r.non_work_is_break);
        let err = " , ".parse::<BreakRule>().unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidConfig);
        assert!(err.to_string().contains(BREAK_ACTIVITIES_SETTING), "{err}");
    }

    #[test]
    fn next_break_start_and_merged_windows() {
        let s = example();
        let rule = BreakRule::default();
        let t = ms("2026-01-05T09:00:00Z");
        assert_eq!(
            s.next_break_start_after(t, &rule),
            Some(ms("2026-01-05T10:00:00Z"))
        );
        // Inside the Break, the next one is the Lunch; at a break's exact start, it is not "after".
        assert_eq!(
            s.next_break_start_after(ms("2026-01-05T10:00:00Z"), &rule),
            Some(ms("2026-01-05T12:00:00Z"))
        );
        assert_eq!(
            s.next_break_start_after(ms("2026-01-05T12:00:00Z"), &rule),
            None
        );
        // A Break running straight into a Lunch is one window.
        let body = r#"{"start":"2026-01-05","end":"2026-01-05","agentSchedules":[{"userId":"u","shifts":[{"start":"2026-01-05T08:00:00Z","end":"2026-01-05T16:00:00Z","activityIntervals":[
            {"activityCode":{"title":"Lunch"},"start":"2026-01-05T10:15:00Z","end":"2026-01-05T10:45:00Z"},
            {"activityCode":{"title":"Break"},"start":"2026-01-05T10:00:00Z","end":"2026-01-05T10:15:00Z"}]}]}]}"#;
        let joined = parse_export(&ok(body), "u").unwrap();
        assert_eq!(
            joined.break_at(ms("2026-01-05T10:05:00Z"), &rule).window,
            Some(BreakWindow {
                start_ms: ms("2026-01-05T10:00:00Z"),
                end_ms: ms("2026-01-05T10:45:00Z")
            })
        );
        assert_eq!(
            joined.next_break_start_after(t, &rule),
            Some(ms("2026-01-05T10:00:00Z"))
        );
    }

    #[test]
    fn covers_the_export_days() {
        let s = example();
        assert!(s.covers(ms("2026-01-05T00:00:00Z")));
        assert!(s.covers(ms("2026-01-11T23:59:59.999Z")));
        assert!(!s.covers(ms("2026-01-12T00:00:00Z")));
        assert!(!s.covers(ms("2026-01-04T23:59:59.999Z")));
    }

    #[test]
    fn cache_entry_is_fresh_within_ttl_and_range() {
        let entry = ScheduleCacheEntry {
            schedule: example(),
            fetched_at_ms: 1_000,
        };
        let wall = ms("2026-01-05T09:00:00Z");
        assert!(entry.fresh(Now::new(1_000, wall), DEFAULT_SCHEDULE_TTL_MS));
        assert!(entry.fresh(
            Now::new(1_000 + DEFAULT_SCHEDULE_TTL_MS - 1, wall),
            DEFAULT_SCHEDULE_TTL_MS
        ));
        assert!(!entry.fresh(
            Now::new(1_000 + DEFAULT_SCHEDULE_TTL_MS, wall),
            DEFAULT_SCHEDULE_TTL_MS
        ));
        assert!(!entry.fresh(
            Now::new(2_000, ms("2026-01-12T00:00:00Z")),
            DEFAULT_SCHEDULE_TTL_MS
        ));
        assert!(!entry.fresh(Now::new(1_000, wall), 0));
    }

    #[test]
    fn timestamps_need_a_zone_and_honour_offsets() {
        assert_eq!(
            parse_instant("2026-01-05T10:00:00+02:00"),
            Some(ms("2026-01-05T08:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-01-05T10:00:00.250-05:30"),
            Some(ms("2026-01-05T15:30:00.250Z"))
        );
        assert_eq!(
            parse_instant("2026-01-05T10:00:00z"),
            Some(ms("2026-01-05T10:00:00Z"))
        );
        assert_eq!(parse_instant("2026-01-05T10:00:00"), None);
        assert_eq!(parse_instant("2026-01-05T10:00:00+24:00"), None);
        assert_eq!(parse_instant("2026-01-05T10:00:00.+01:00"), None);
        assert_eq!(parse_instant("1970-01-01T00:30:00+01:00"), None);
    }

    #[test]
    fn malformed_bodies_are_bad_responses_naming_the_member() {
        let base = |agent: &str| {
            format!(r#"{{"start":"2026-01-05","end":"2026-01-05","agentSchedules":[{agent}]}}"#)
        };
        let cases = [
            ("not json".to_owned(), "not JSON"),
            (
                r#"{"start":"2026-01-05","end":"2026-01-05"}"#.to_owned(),
                "`agentSchedules` is missing",
            ),
            (
                r#"{"end":"2026-01-05","agentSchedules":[]}"#.to_owned(),
                "`start` is missing",
            ),
            (
                r#"{"start":"Monday","end":"2026-01-05","agentSchedules":[]}"#.to_owned(),
                "`start` is neither",
            ),
            (
                base(r#"{"shifts":[]}"#),
                "`agentSchedules[0].userId` is missing",
            ),
            (
                base(r#"{"userId":"u","shifts":{}}"#),
                "`agentSchedules[0].shifts` is not a list",
            ),
            (
                base(
                    r#"{"userId":"u","shifts":[{"start":"2026-01-05T08:00:00","end":"2026-01-05T09:00:00Z"}]}"#,
                ),
                "`agentSchedules[0].shifts[0].start` is not an ISO 8601 time",
            ),
            (
                base(
                    r#"{"userId":"u","shifts":[{"start":"2026-01-05T09:00:00Z","end":"2026-01-05T08:00:00Z"}]}"#,
                ),
                "`agentSchedules[0].shifts[0]` ends before it starts",
            ),
            (
                base(
                    r#"{"userId":"u","shifts":[{"start":"2026-01-05T08:00:00Z","end":"2026-01-05T09:00:00Z","activityIntervals":[{"start":"2026-01-05T08:00:00Z","end":"2026-01-05T09:00:00Z"}]}]}"#,
                ),
                "`agentSchedules[0].shifts[0].activityIntervals[0].activityCode` is missing",
            ),
            (
                base(
                    r#"{"userId":"u","shifts":[{"start":"2026-01-05T08:00:00Z","end":"2026-01-05T09:00:00Z","activityIntervals":[{"activityCode":{"title":7},"start":"2026-01-05T08:00:00Z","end":"2026-01-05T09:00:00Z"}]}]}"#,
                ),
                "activityCode.title` is not a string",
            ),
            (
                base(
                    r#"{"userId":"u","shifts":[{"start":"2026-01-05T08:00:00Z","end":"2026-01-05T09:00:00Z","baseActivityCode":{"title":"Shift","work":"yes"}}]}"#,
                ),
                "`agentSchedules[0].shifts[0].baseActivityCode.work` is not true or false",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_export(&ok(&body), "u").unwrap_err();
            assert_eq!(err.code, ErrorCode::BadResponse, "{body}");
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
        let teapot = parse_export(&HttpResponse::new(418, vec![], ""), "u").unwrap_err();
        assert_eq!(teapot.code, ErrorCode::BadResponse);
    }

    #[test]
    fn refusals_keep_the_tenants_words() {
        let forbidden = HttpResponse::new(
            403,
            vec![],
            r#"{"error":"insufficient_scope","error_description":"Missing WFM permission"}"#,
        );
        let e = refusal(&forbidden).unwrap();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message
                .contains("Missing WFM permission; insufficient_scope"),
            "{}",
            e.message
        );
        assert!(e.message.contains(SCHEDULE_PERMISSION), "{}", e.message);
        assert_eq!(parse_export(&forbidden, "u").unwrap_err(), e);

        let header = HttpResponse::new(
            400,
            vec![(
                "icStatusDescription".into(),
                "Date range exceeds 7 days".into(),
            )],
            "",
        );
        let e = refusal(&header).unwrap();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(
            e.message.ends_with(": Date range exceeds 7 days"),
            "{}",
            e.message
        );
        assert!(refusal(&HttpResponse::new(401, vec![], "")).is_none());
        assert!(refusal(&ok(EXAMPLE)).is_none());
    }
}
