//! Time. The engine never reads a clock: every input carries a [`Now`], read by the host.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A moment, as the host read it from two clocks.
///
/// - `mono_ms` comes from a **monotonic** clock (milliseconds from any origin the host likes, e.g. its start):
///   every deadline, timeout, backoff, pacing interval and latency is measured on it, so stepping the wall
///   clock (NTP, a VM resumed, an administrator) neither stalls timers nor fires them all at once.
/// - `unix_ms` is **wall-clock** Unix-epoch milliseconds: it is used only where a record names a time
///   (audit timestamps, webhook payloads, history), and where the tenant speaks in wall time (an HTTP-date
///   `Retry-After`, a shift's end).
///
/// A virtual clock (the simulator, tests) may use the same number for both: [`Now::at`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Now {
    /// Monotonic milliseconds.
    pub mono_ms: u64,
    /// Wall-clock Unix-epoch milliseconds.
    pub unix_ms: u64,
}

impl Now {
    /// A moment read from both clocks.
    pub fn new(mono_ms: u64, unix_ms: u64) -> Self {
        Self { mono_ms, unix_ms }
    }

    /// A moment of a virtual clock, where monotonic and wall time are the same number.
    pub fn at(ms: u64) -> Self {
        Self {
            mono_ms: ms,
            unix_ms: ms,
        }
    }

    /// This moment `ms` later on both clocks (saturating).
    pub fn plus(self, ms: u64) -> Self {
        Self {
            mono_ms: self.mono_ms.saturating_add(ms),
            unix_ms: self.unix_ms.saturating_add(ms),
        }
    }
}

/// Formats Unix-epoch milliseconds as RFC 3339 with milliseconds, e.g. `2026-01-05T08:00:00.000Z`.
pub fn iso8601(ms: u64) -> String {
    // humantime cannot write years past 9999; clamp instead of panicking on an absurd clock.
    let ms = ms.min(MAX_FORMATTABLE_MS);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write with a four-digit year.
const MAX_FORMATTABLE_MS: u64 = 253_402_300_799_999;

/// Parses an RFC 3339 timestamp into Unix-epoch milliseconds.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Parses a `Retry-After` value (delta-seconds or an HTTP date) into a delay in milliseconds from
/// `now_unix_ms` (a date is wall time).
///
/// A date in the past gives 0. An unparseable value gives `None`.
pub fn parse_retry_after(value: &str, now_unix_ms: u64) -> Option<u64> {
    let v = value.trim();
    // delta-seconds is `1*DIGIT` (RFC 9110): no sign, no spaces inside.
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now_unix_ms))
}

/// Reads an HTTP date (a `Date` header) as Unix ms.
pub(crate) fn parse_http_date(value: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Formats Unix-epoch milliseconds as an HTTP date (for `Retry-After` and `Date` in the simulator).
pub fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let ms = 1_767_600_000_123;
        let s = iso8601(ms);
        assert_eq!(s, "2026-01-05T08:00:00.123Z");
        assert_eq!(parse_iso8601(&s), Some(ms));
    }

    #[test]
    fn retry_after_forms() {
        let now = 1_767_600_000_000;
        assert_eq!(parse_retry_after("7", now), Some(7000));
        assert_eq!(
            parse_retry_after(&http_date(now + 12_000), now),
            Some(12_000)
        );
        assert_eq!(parse_retry_after(&http_date(now - 5_000), now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("+5", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(u64::MAX)
        );
        assert_eq!(iso8601(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn plus_saturates() {
        let n = Now::new(u64::MAX - 1, 5);
        assert_eq!(n.plus(10), Now::new(u64::MAX, 15));
    }
}
