//! What a failed call says of its provider's limits: refused for load (a 429 or 529, an
//! overload), perhaps with a retry-after, or the account's usage limit reached until a
//! time. Read from the failure's message (the CLI's own error, which carries the status and
//! any reset the API sent), beside its classification by [`judge`](super::judge).
//!
//! The usage-limit wordings are those the CLIs print: claude's `Claude AI usage limit
//! reached|1767366000` (a Unix time) and `5-hour limit reached ∙ resets 3pm`, and the API's
//! `rate_limit ... reset at 2026-12-02T15:00:00Z`. A time of day without a date is the next
//! one in local time (a time zone named beside it is not read).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::outcome::{Failure, FailureKind, Pushback};

/// Statuses that mean "too many calls" rather than a server fault.
const REFUSED_STATUSES: &[&str] = &["429", "529"];

/// Words of a refusal for load, lower case.
const REFUSED_WORDS: &[&str] = &[
    "overloaded",
    "rate limit",
    "rate_limit",
    "too many requests",
    "resource_exhausted",
    "resource has been exhausted",
];

/// Words of a usage limit reached, lower case.
const QUOTA_WORDS: &[&str] = &[
    "usage limit",
    "limit reached",
    "limit will reset",
    "quota exceeded",
    "exceeded your current quota",
];

/// What `failure` (judged at `now`) says of its provider's limits, if anything.
pub fn pushback(failure: &Failure, now: SystemTime) -> Option<Pushback> {
    if matches!(
        failure.kind,
        FailureKind::Cancelled | FailureKind::Timeout | FailureKind::Launch
    ) {
        return None;
    }
    let lower = failure.message.to_lowercase();
    if QUOTA_WORDS.iter().any(|w| lower.contains(w)) {
        if let Some(until) = reset_time(&lower, now).filter(|&u| u > now) {
            return Some(Pushback::Quota { until });
        }
    }
    if failure.kind != FailureKind::Transient {
        return None;
    }
    let status = REFUSED_STATUSES
        .iter()
        .any(|s| super::outcome::transient_match(&[s.to_string()], &lower).is_some());
    if status || REFUSED_WORDS.iter().any(|w| lower.contains(w)) {
        return Some(Pushback::Refused {
            retry_after: retry_after(&lower),
        });
    }
    None
}

/// A failure that is a usage limit with a reset is transient whatever the CLI's exit said:
/// it is waited out, not given up on.
pub fn classify(mut failure: Failure, now: SystemTime) -> Failure {
    failure.pushback = pushback(&failure, now);
    if matches!(failure.pushback, Some(Pushback::Quota { .. })) {
        failure.kind = FailureKind::Transient;
    }
    failure
}

/// `retry-after: 20`, `retry after 20s`, `retry_after":20`, `try again in 20 seconds`.
pub fn retry_after(lower: &str) -> Option<Duration> {
    for marker in [
        "retry-after:",
        "retry-after",
        "retry_after\":",
        "retry_after:",
        "retry after",
        "try again in",
        "retry in",
    ] {
        let Some(at) = lower.find(marker) else {
            continue;
        };
        let rest = lower[at + marker.len()..].trim_start_matches([' ', '"', '=', ':']);
        if let Some(d) = amount(rest) {
            return Some(d);
        }
    }
    None
}

/// `20`, `20s`, `1.5 seconds`, `3 minutes`, `2h`: a number of seconds unless a unit says.
fn amount(text: &str) -> Option<Duration> {
    let digits: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let n: f64 = digits.parse().ok()?;
    let unit = text[digits.len()..].trim_start();
    let scale = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        0.001
    } else if unit.starts_with('m') && !unit.starts_with("ms") {
        60.0
    } else if unit.starts_with('h') {
        3600.0
    } else {
        1.0
    };
    let secs = n * scale;
    (secs.is_finite() && secs <= 7.0 * 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// When the limit resets, as the message says: a Unix time after `|`, an RFC 3339 time, a
/// time of day after `reset`/`resets` (`3pm`, `3:30 pm`, `15:00`), or a length after
/// `resets in` / `try again in`.
pub fn reset_time(lower: &str, now: SystemTime) -> Option<SystemTime> {
    // claude's `...usage limit reached|1767366000`.
    if let Some((_, tail)) = lower.split_once('|') {
        let digits: String = tail
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if (9..=11).contains(&digits.len()) {
            return Some(UNIX_EPOCH + Duration::from_secs(digits.parse().ok()?));
        }
    }
    for marker in ["resets at", "reset at", "resets", "reset:", "reset"] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(marker) {
            let start = from + at + marker.len();
            let rest = lower[start..].trim_start_matches([' ', ':', '"', '=']);
            if let Some(t) = rest
                .strip_prefix("in ")
                .and_then(amount)
                .map(|d| now + d)
                .or_else(|| rfc3339(rest))
                .or_else(|| time_of_day(rest, now))
            {
                return Some(t);
            }
            from = start;
        }
    }
    if let Some(at) = lower.find("try again in") {
        return amount(lower[at + "try again in".len()..].trim_start()).map(|d| now + d);
    }
    None
}

/// `2026-12-02t15:00:00z` (lower-cased), UTC or with an offset.
fn rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest.as_bytes().first() {
        Some(b'z') | None => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6).and_then(|m| m.parse().ok()).unwrap_or(0);
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// `3pm`, `3:30 pm`, `15:00`, `11am`: the next such moment after `now`, in local time.
fn time_of_day(text: &str, now: SystemTime) -> Option<SystemTime> {
    let hour_digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    if hour_digits.is_empty() || hour_digits.len() > 2 {
        return None;
    }
    let mut hour: u32 = hour_digits.parse().ok()?;
    let mut rest = &text[hour_digits.len()..];
    let mut minute = 0;
    let mut explicit_minutes = false;
    if let Some(r) = rest.strip_prefix(':') {
        let m: String = r.chars().take_while(char::is_ascii_digit).collect();
        if m.len() != 2 {
            return None;
        }
        minute = m.parse().ok()?;
        explicit_minutes = true;
        rest = &r[2..];
    }
    let rest = rest.trim_start();
    if let Some(after) = rest
        .strip_prefix("am")
        .or_else(|| rest.strip_prefix("a.m."))
    {
        let _ = after;
        if hour == 12 {
            hour = 0;
        }
    } else if rest.starts_with("pm") || rest.starts_with("p.m.") {
        if hour < 12 {
            hour += 12;
        }
    } else if !explicit_minutes {
        // A bare number is not a time of day (`resets 5 times`).
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    Some(next_local(now, hour, minute))
}

/// The first moment after `now` whose local time is `hour:minute`.
fn next_local(now: SystemTime, hour: u32, minute: u32) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r and mktime read and write only the struct passed.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return now;
    }
    for day in 0..3 {
        let mut t = tm;
        t.tm_mday += day;
        t.tm_hour = hour as i32;
        t.tm_min = minute as i32;
        t.tm_sec = 0;
        t.tm_isdst = -1;
        let at = unsafe { libc::mktime(&mut t) };
        if at > secs {
            return UNIX_EPOCH + Duration::from_secs(at as u64);
        }
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::local_hh_mm;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn transient(message: &str) -> Failure {
        Failure::new(FailureKind::Transient, message)
    }

    #[test]
    fn a_429_or_an_overload_is_a_refusal_a_500_is_not() {
        let now = at(1_800_000_000);
        for m in [
            "exit 1, transient error (HTTP 429): API Error: 429 Too Many Requests",
            r#"API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}"#,
            "exit code 173, transient error (HTTP 429): Resource has been exhausted",
        ] {
            assert_eq!(
                pushback(&transient(m), now),
                Some(Pushback::Refused { retry_after: None }),
                "{m}"
            );
        }
        assert_eq!(pushback(&transient("API Error: 500 Internal"), now), None);
        assert_eq!(
            pushback(&Failure::new(FailureKind::Exit, "exit 1: 429 words"), now),
            None,
            "only a transient failure is a refusal"
        );
    }

    #[test]
    fn a_retry_after_is_read_in_the_cli_wordings() {
        for (m, secs) in [
            ("API Error: 429 rate_limit_error; retry-after: 20", 20.0),
            ("429 Too Many Requests (retry after 1.5s)", 1.5),
            (r#"{"error":{"code":429},"retry_after":7}"#, 7.0),
            ("rate limit: please try again in 2 minutes", 120.0),
        ] {
            let p = pushback(&transient(m), at(0));
            assert_eq!(
                p,
                Some(Pushback::Refused {
                    retry_after: Some(Duration::from_secs_f64(secs))
                }),
                "{m}"
            );
        }
    }

    #[test]
    fn a_usage_limit_is_read_with_its_reset_whatever_the_exit() {
        let now = at(1_767_300_000);
        let f = classify(
            Failure::new(
                FailureKind::AgentError,
                "agent reported an error: Claude AI usage limit reached|1767366000",
            ),
            now,
        );
        assert_eq!(f.kind, FailureKind::Transient);
        assert_eq!(
            f.pushback,
            Some(Pushback::Quota {
                until: at(1_767_366_000)
            })
        );
        let f = transient("429 rate_limit_error: usage limit; reset at 2026-01-02T15:00:00Z");
        let until = at(1_767_366_000); // 2026-01-02 15:00:00 UTC
        assert_eq!(pushback(&f, now), Some(Pushback::Quota { until }));
        // Reset already past, or no reset said: not a wait.
        assert_eq!(
            pushback(&transient("usage limit reached|1767000000"), now),
            None,
            "a reset already past is no wait"
        );
    }

    #[test]
    fn a_time_of_day_is_the_next_one_in_local_time() {
        let now = at(1_767_300_000);
        for (m, hh_mm) in [
            ("5-hour limit reached ∙ resets 3pm", "15:00"),
            ("limit reached, resets at 3:30 pm (Europe/Paris)", "15:30"),
            ("usage limit reached. resets 11am", "11:00"),
            ("usage limit reached; resets at 07:05", "07:05"),
            ("usage limit reached; resets 12am", "00:00"),
        ] {
            let Some(Pushback::Quota { until }) = pushback(&transient(m), now) else {
                panic!("{m}: no quota");
            };
            assert_eq!(local_hh_mm(until), hh_mm, "{m}");
            let ahead = until.duration_since(now).unwrap();
            assert!(ahead <= Duration::from_secs(25 * 3600), "{m}: {ahead:?}");
        }
        assert_eq!(reset_time("usage limit; resets 5 times", now), None);
        let in_two = reset_time("usage limit reached, resets in 2h", now).unwrap();
        assert_eq!(in_two, now + Duration::from_secs(7200));
    }
}
