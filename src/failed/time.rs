//! Instants as operators write and read them: RFC 3339 in UTC, ages like
//! `3m ago`, and time bounds like `--since 1h`.

use crate::topology::parse_duration;

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC, to the
/// second: `2025-03-01T09:30:00Z`.
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How long ago `then` was, seen from `now` (both in ms): `45s`, `12m`,
/// `3h20m`, `2d4h`. A `then` in the future reads as `0s`.
pub fn format_age(then: i64, now: i64) -> String {
    let s = ((now - then) / 1000).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => match s % 3600 / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h{m}m", s / 3600),
        },
        _ => match s % 86_400 / 3600 {
            0 => format!("{}d", s / 86_400),
            h => format!("{}d{h}h", s / 86_400),
        },
    }
}

/// A time bound that is not an RFC 3339 instant nor a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a time: write a duration back from now (`90s`, `15m`, `1h`, `2d`) or an RFC 3339 instant (`2025-03-01T09:30:00Z`, `2025-03-01T10:30:00+01:00`, `2025-03-01`)")]
pub struct TimeError {
    input: String,
}

/// Reads a time bound: a duration back from `now_ms` (`1h`, `30m`, `2d`),
/// or an RFC 3339 instant (a date alone means its midnight UTC). Returns
/// milliseconds since the Unix epoch.
pub fn parse_instant(input: &str, now_ms: i64) -> Result<i64, TimeError> {
    let s = input.trim();
    let err = || TimeError {
        input: input.to_string(),
    };
    if let Some(days) = s.strip_suffix('d').and_then(|n| n.parse::<u32>().ok()) {
        return Ok(now_ms - i64::from(days) * 86_400_000);
    }
    if let Some(d) = parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    parse_rfc3339(s).ok_or_else(err)
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD(T| )HH:MM:SS[.fraction](Z|±HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 20 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_s = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_740_821_400_000; // 2025-03-01T09:30:00Z

    #[test]
    fn formats_utc_and_ages() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(T), "2025-03-01T09:30:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_age(T, T + 45_000), "45s");
        assert_eq!(format_age(T, T + 12 * 60_000 + 5), "12m");
        assert_eq!(format_age(T, T + 3 * 3_600_000), "3h");
        assert_eq!(format_age(T, T + 3 * 3_600_000 + 20 * 60_000), "3h20m");
        assert_eq!(format_age(T, T + 2 * 86_400_000 + 4 * 3_600_000), "2d4h");
        assert_eq!(format_age(T + 5000, T), "0s");
    }

    #[test]
    fn parses_durations_back_from_now() {
        assert_eq!(parse_instant("1h", T), Ok(T - 3_600_000));
        assert_eq!(parse_instant("90s", T), Ok(T - 90_000));
        assert_eq!(parse_instant("2d", T), Ok(T - 2 * 86_400_000));
        assert_eq!(parse_instant(" 15m ", T), Ok(T - 15 * 60_000));
    }

    #[test]
    fn parses_rfc3339_instants() {
        assert_eq!(parse_instant("2025-03-01T09:30:00Z", 0), Ok(T));
        assert_eq!(parse_instant("2025-03-01t09:30:00z", 0), Ok(T));
        assert_eq!(parse_instant("2025-03-01 10:30:00+01:00", 0), Ok(T));
        assert_eq!(parse_instant("2025-03-01T04:00:00-05:30", 0), Ok(T));
        assert_eq!(parse_instant("2025-03-01T09:30:00.25Z", 0), Ok(T + 250));
        assert_eq!(parse_instant("2025-03-01T09:30:00.123456Z", 0), Ok(T + 123));
        assert_eq!(
            parse_instant("2025-03-01", 0),
            Ok(T - 9 * 3_600_000 - 30 * 60_000)
        );
        for t in [T, 0, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_instant(&format_utc(t), 0), Ok(t));
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2025-02-30",
            "2025-13-01",
            "2025-03-01T09:30",
            "2025-03-01T09:30:00",
            "2025-03-01T25:00:00Z",
            "2025-03-01T09:30:00+0100",
            "2025-03-01T09:30:00.Z",
            "-1h",
        ] {
            let e = parse_instant(bad, T).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
