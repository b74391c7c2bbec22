//! Fast parsers for the timestamp shapes access logs use. Hand-rolled because they run once
//! per line on the hot path; chrono handles the rarer ISO 8601 shapes.

use std::cell::Cell;

use crate::event::Timestamp;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A run of ASCII digits (at most 19, so it cannot overflow a `u64`).
pub(super) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 19 {
        return None;
    }
    let mut value = 0u64;
    for &b in bytes {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + d as u64;
    }
    Some(value)
}

/// Small fixed-width fields (day, hour, …).
fn digits32(bytes: &[u8]) -> Option<u32> {
    digits(bytes).and_then(|v| u32::try_from(v).ok())
}

fn month_number(name: &[u8]) -> Option<u32> {
    Some(match name {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Gregorian leap years: every 4th, except centuries, except every 4th century.
fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// `month` is 1..=12.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the epoch for a local date and time, `None` for a date or time that does
/// not exist (31 April, 29 February of a common year, 25:00): the arithmetic below would
/// otherwise roll it into the next month. Second 60 is a leap second.
fn checked_seconds(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    Some(days * 86_400 + (hour * 3600 + minute * 60 + second) as i64)
}

/// Parses `+hhmm` / `-hhmm` into seconds east of UTC. Real offsets stay within ±14:00; up to
/// ±23:59 is accepted (what RFC 3339 parsers allow), `+9999` is not an offset.
fn offset_hhmm(bytes: &[u8]) -> Option<i64> {
    let (sign, rest) = match bytes.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    if rest.len() != 4 {
        return None;
    }
    let hours = digits(&rest[..2])? as i64;
    let minutes = digits(&rest[2..])? as i64;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Length of a `$time_local` value.
const TIME_LOCAL_LEN: usize = 26;

thread_local! {
    /// The last `$time_local` text this thread parsed and its result. Logs repeat one second
    /// on many consecutive lines, so most lines are a 26-byte compare. Per thread because
    /// parsers are shared by the decode threads. The initial entry is a correct one: 26 NUL
    /// bytes are no time.
    static LAST_TIME_LOCAL: Cell<([u8; TIME_LOCAL_LEN], Option<Timestamp>)> =
        const { Cell::new(([0; TIME_LOCAL_LEN], None)) };
}

/// nginx `$time_local` / Apache `%t`: `10/Mar/2025:14:02:11 +0000`.
pub fn parse_time_local(text: &[u8]) -> Option<Timestamp> {
    let text: [u8; TIME_LOCAL_LEN] = text.try_into().ok()?;
    LAST_TIME_LOCAL.with(|last| {
        let (last_text, last_ts) = last.get();
        if last_text == text {
            return last_ts;
        }
        let ts = parse_time_local_uncached(&text);
        last.set((text, ts));
        ts
    })
}

fn parse_time_local_uncached(text: &[u8; TIME_LOCAL_LEN]) -> Option<Timestamp> {
    if text[2] != b'/' || text[6] != b'/' || text[11] != b':' {
        return None;
    }
    if text[14] != b':' || text[17] != b':' || text[20] != b' ' {
        return None;
    }
    let day = digits32(&text[0..2])?;
    let month = month_number(&text[3..6])?;
    let year = digits32(&text[7..11])?;
    let hour = digits32(&text[12..14])?;
    let minute = digits32(&text[15..17])?;
    let second = digits32(&text[18..20])?;
    let offset = offset_hhmm(&text[21..26])?;
    let local = checked_seconds(year, month, day, hour, minute, second)?;
    Timestamp::checked_from_secs(local - offset)
}

/// `$msec`: Unix seconds with a fraction, `1741615331.472`.
pub fn parse_epoch_seconds(text: &[u8]) -> Option<Timestamp> {
    let (whole, fraction) = match memchr::memchr(b'.', text) {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 12 || fraction.len() > 9 {
        return None;
    }
    let secs = digits(whole)? as i64;
    let mut nanos = digits(fraction)? as i64;
    for _ in fraction.len()..9 {
        nanos *= 10;
    }
    Timestamp::checked_from_secs(secs)?.checked_add_nanos(nanos)
}

/// ISO 8601 / RFC 3339 (`$time_iso8601`, CRI and Docker timestamps). Fast path for the
/// exact shapes runtimes write; anything else goes through chrono.
pub fn parse_iso8601(text: &[u8]) -> Option<Timestamp> {
    if let Some(ts) = parse_iso8601_fast(text) {
        return Some(ts);
    }
    Timestamp::parse_rfc3339(std::str::from_utf8(text).ok()?)
}

fn parse_iso8601_fast(text: &[u8]) -> Option<Timestamp> {
    if text.len() < 20 || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' {
        return None;
    }
    if text[13] != b':' || text[16] != b':' {
        return None;
    }
    let year = digits32(&text[0..4])?;
    let month = digits32(&text[5..7])?;
    let day = digits32(&text[8..10])?;
    let hour = digits32(&text[11..13])?;
    let minute = digits32(&text[14..16])?;
    let second = digits32(&text[17..19])?;
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        let end = rest[1..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(rest.len(), |p| p + 1);
        let fraction = &rest[1..end];
        if fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        nanos = digits(fraction)? as i64;
        for _ in fraction.len()..9 {
            nanos *= 10;
        }
        rest = &rest[end..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => offset_hhmm(&[*sign, *h1, *h2, *m1, *m2])?,
        _ => return None,
    };
    let local = checked_seconds(year, month, day, hour, minute, second)?;
    Timestamp::checked_from_secs(local - offset)?.checked_add_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(ts: Option<Timestamp>) -> String {
        ts.expect("parses").to_rfc3339()
    }

    #[test]
    fn time_local_applies_the_offset() {
        assert_eq!(
            rfc(parse_time_local(b"17/Oct/2023:05:57:49 +1100")),
            "2023-10-16T18:57:49Z"
        );
        assert_eq!(
            rfc(parse_time_local(b"18/Jul/2025:14:14:47 -0400")),
            "2025-07-18T18:14:47Z"
        );
        assert_eq!(
            rfc(parse_time_local(b"29/Feb/2024:00:00:00 +0000")),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn time_local_rejects_garbage() {
        assert!(parse_time_local(b"10/Foo/2025:14:02:11 +0000").is_none());
        assert!(parse_time_local(b"10/Mar/2025:25:02:11 +0000").is_none());
        assert!(parse_time_local(b"10/Mar/2025:14:02:11 0000").is_none());
        assert!(parse_time_local(b"10/Mar/2025").is_none());
    }

    #[test]
    fn time_local_rejects_days_beyond_the_month() {
        assert!(parse_time_local(b"30/Feb/2026:00:00:00 +0000").is_none());
        assert!(parse_time_local(b"31/Apr/2026:00:00:00 +0000").is_none());
        assert!(parse_time_local(b"00/Apr/2026:00:00:00 +0000").is_none());
        assert!(parse_time_local(b"32/Jan/2026:00:00:00 +0000").is_none());
        assert_eq!(
            rfc(parse_time_local(b"30/Apr/2026:00:00:00 +0000")),
            "2026-04-30T00:00:00Z"
        );
        assert_eq!(
            rfc(parse_time_local(b"31/Dec/2026:23:59:59 +0000")),
            "2026-12-31T23:59:59Z"
        );
    }

    #[test]
    fn february_29_only_in_gregorian_leap_years() {
        for (year, leap) in [(2024, true), (2026, false), (2000, true), (1900, false)] {
            let local = format!("29/Feb/{year}:12:00:00 +0000");
            let iso = format!("{year}-02-29T12:00:00Z");
            assert_eq!(
                parse_time_local(local.as_bytes()).is_some(),
                leap,
                "{local}"
            );
            assert_eq!(parse_iso8601(iso.as_bytes()).is_some(), leap, "{iso}");
            assert_eq!(parse_iso8601_fast(iso.as_bytes()).is_some(), leap, "{iso}");
        }
        assert_eq!(
            rfc(parse_time_local(b"29/Feb/2000:12:00:00 +0000")),
            "2000-02-29T12:00:00Z"
        );
    }

    #[test]
    fn offsets_beyond_23_59_are_rejected() {
        assert!(parse_time_local(b"10/Mar/2025:14:02:11 +9999").is_none());
        assert!(parse_time_local(b"10/Mar/2025:14:02:11 +2360").is_none());
        assert!(parse_time_local(b"10/Mar/2025:14:02:11 -2400").is_none());
        assert_eq!(
            rfc(parse_time_local(b"10/Mar/2025:14:02:11 +2359")),
            "2025-03-09T14:03:11Z"
        );
        assert_eq!(
            rfc(parse_time_local(b"10/Mar/2025:14:02:11 -1400")),
            "2025-03-11T04:02:11Z"
        );
        assert!(parse_iso8601(b"2025-03-10T14:02:11+99:99").is_none());
        assert!(parse_iso8601(b"2025-03-10T14:02:11+23:60").is_none());
        assert_eq!(
            rfc(parse_iso8601(b"2025-03-10T14:02:11-23:59")),
            "2025-03-11T14:01:11Z"
        );
    }

    #[test]
    fn time_local_cache_answers_for_the_text_it_was_given() {
        let a = b"10/Mar/2025:14:02:11 +0000";
        let b = b"10/Mar/2025:14:02:12 +0000";
        let bad = b"30/Feb/2025:14:02:12 +0000";
        assert_eq!(rfc(parse_time_local(a)), "2025-03-10T14:02:11Z");
        assert_eq!(rfc(parse_time_local(a)), "2025-03-10T14:02:11Z");
        assert_eq!(rfc(parse_time_local(b)), "2025-03-10T14:02:12Z");
        assert!(parse_time_local(bad).is_none());
        assert!(parse_time_local(bad).is_none());
        assert_eq!(rfc(parse_time_local(a)), "2025-03-10T14:02:11Z");
        assert!(parse_time_local(&[0; TIME_LOCAL_LEN]).is_none());
        assert!(parse_time_local(&a[..25]).is_none());
    }

    #[test]
    fn iso8601_rejects_impossible_dates() {
        assert!(parse_iso8601(b"2026-02-30T00:00:00Z").is_none());
        assert!(parse_iso8601(b"2026-04-31T00:00:00.5Z").is_none());
        assert!(parse_iso8601(b"2026-00-10T00:00:00Z").is_none());
        assert!(parse_iso8601_fast(b"2026-02-30T00:00:00Z").is_none());
    }

    #[test]
    fn iso8601_shapes() {
        assert_eq!(
            rfc(parse_iso8601(b"2025-03-10T14:10:00.123456789Z")),
            "2025-03-10T14:10:00.123456789Z"
        );
        assert_eq!(
            rfc(parse_iso8601(b"2025-03-10T14:02:11+01:00")),
            "2025-03-10T13:02:11Z"
        );
        assert_eq!(
            rfc(parse_iso8601(b"2025-03-10T14:08:00.123Z")),
            "2025-03-10T14:08:00.123Z"
        );
        assert!(parse_iso8601(b"2025-13-10T14:08:00Z").is_none());
    }

    #[test]
    fn times_outside_the_nanosecond_range_are_rejected() {
        assert!(parse_epoch_seconds(b"430000000000").is_none());
        assert!(parse_time_local(b"01/Jan/9999:00:00:00 +0000").is_none());
        assert!(parse_iso8601(b"2263-01-01T00:00:00Z").is_none());
        assert!(parse_iso8601(b"1970-01-01T00:00:00Z").is_some());
    }

    #[test]
    fn epoch_seconds_with_fraction() {
        assert_eq!(
            rfc(parse_epoch_seconds(b"1741615331.472")),
            "2025-03-10T14:02:11.472Z"
        );
        assert!(parse_epoch_seconds(b"abc").is_none());
    }

    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// chrono's view of a UTC date at noon: `None` when the date does not exist or falls
    /// outside the nanosecond range.
    fn chrono_noon(year: i32, month: u32, day: u32) -> Option<Timestamp> {
        chrono::NaiveDate::from_ymd_opt(year, month, day)?
            .and_hms_opt(12, 0, 0)?
            .and_utc()
            .timestamp_nanos_opt()
            .map(Timestamp)
    }

    proptest::proptest! {
        // Failures report the shrunk input instead of writing `proptest-regressions/`.
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..proptest::test_runner::Config::with_cases(2000)
        })]

        // Half the years fall in the nanosecond range (1677-2262), half anywhere.
        #[test]
        fn iso8601_fast_path_agrees_with_chrono(year in proptest::prop_oneof![1670i32..=2270, 0i32..=9999], month in 0u32..=13, day in 0u32..=32) {
            let text = format!("{year:04}-{month:02}-{day:02}T12:00:00Z");
            proptest::prop_assert_eq!(
                parse_iso8601_fast(text.as_bytes()),
                chrono_noon(year, month, day),
                "{}", text
            );
        }

        // Runs of repeated texts, as in real logs: the cache never changes an answer.
        #[test]
        fn time_local_cache_matches_a_fresh_parse(
            picks in proptest::collection::vec((0usize..4, 1usize..4), 1..40)
        ) {
            let texts: [&[u8; TIME_LOCAL_LEN]; 4] = [
                b"10/Mar/2025:14:02:11 +0000",
                b"10/Mar/2025:14:02:12 +0000",
                b"10/Mar/2025:14:02:11 +0100",
                b"31/Apr/2025:14:02:11 +0000",
            ];
            for (pick, repeat) in picks {
                for _ in 0..repeat {
                    proptest::prop_assert_eq!(
                        parse_time_local(texts[pick]),
                        parse_time_local_uncached(texts[pick])
                    );
                }
            }
        }

        #[test]
        fn time_local_agrees_with_chrono(year in 1600i32..=2300, month in 1u32..=12, day in 0u32..=32) {
            let text = format!("{day:02}/{}/{year:04}:12:00:00 +0000", MONTHS[month as usize - 1]);
            proptest::prop_assert_eq!(
                parse_time_local(text.as_bytes()),
                chrono_noon(year, month, day),
                "{}", text
            );
        }
    }
}
