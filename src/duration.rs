//! Human durations such as `90s`, `2m30s`, `1h`, `500ms` (a bare number means seconds).

use std::time::Duration;

/// Parses a duration; the error says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return from_seconds(secs, text);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` has a number without a unit"))?;
        if num_len == 0 {
            return Err(format!(
                "`{text}` is not a duration (expected e.g. 90s, 2m30s, 1h)"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            unit => {
                return Err(format!(
                    "unknown unit `{unit}` in `{text}` (use ms, s, m, h or d)"
                ))
            }
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    from_seconds(total, text)
}

/// The longest duration accepted, 100 years: longer ones are typos, and a deadline of
/// `Instant::now() + d` must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A number of seconds as a duration, refusing what is negative, not finite or past
/// [`MAX_DURATION`] (`Duration::from_secs_f64` would panic on some of these). `text` is the
/// value as written, for the message.
pub fn from_seconds(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("`{text}` is too long (at most 100 years)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Short display used in terminal lines and the execution log: `850ms`, `7.2s`, `3m04s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let secs = d.as_secs();
        if secs < 3600 {
            format!("{}m{:02}s", secs / 60, secs % 60)
        } else {
            format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
        }
    }
}

/// A duration written so that [`parse_duration`] reads back the same value (to the
/// millisecond): `2m`, `1h30m`, `90ms`, `2m30s`. For files orch writes and reads again.
pub fn format_exact(d: Duration) -> String {
    // Rounded, not truncated: a parsed `7ms` may come back as 6.999999ms.
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    if ms == 0 {
        return "0s".into();
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("10").is_ok());
        // Past what a Duration or a deadline can hold: an error, not a panic.
        for huge in [
            "1e300",
            "1e300s",
            "99999999999999999999h",
            "inf",
            "NaN",
            "1e20",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert!(from_seconds(f64::MAX, "max").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(7200)), "7.2s");
        assert_eq!(format_duration(Duration::from_secs(184)), "3m04s");
    }

    #[test]
    fn exact_format_reads_back() {
        for ms in [0, 1, 999, 1000, 90_000, 150_500, 3_600_000, 5_423_007] {
            let d = Duration::from_millis(ms);
            let text = format_exact(d);
            let back = parse_duration(&text).unwrap();
            assert_eq!((back.as_secs_f64() * 1000.0).round() as u64, ms, "{text}");
            assert_eq!(format_exact(back), text);
        }
        assert_eq!(format_exact(Duration::from_secs(120)), "2m");
        assert_eq!(format_exact(Duration::from_secs(5400)), "1h30m");
    }
}
