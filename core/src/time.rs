//! Time helpers. The engine never reads a clock: time arrives as Unix-epoch milliseconds.

use std::time::{Duration, UNIX_EPOCH};

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

/// Parses a `Retry-After` value (delta-seconds or an HTTP date) into a delay in milliseconds from `now_ms`.
///
/// A date in the past gives 0. An unparseable value gives `None`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    // delta-seconds is `1*DIGIT` (RFC 9110): no sign, no spaces inside.
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now_ms))
}

/// Formats Unix-epoch milliseconds as an HTTP date (for `Retry-After` in the simulator).
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
}
