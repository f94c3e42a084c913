//! Dates in PhonePe's settlement reports: read as India time (Asia/Kolkata, UTC+05:30, no
//! daylight saving) and kept as UTC instants (epoch milliseconds); report days are India days.
//!
//! Accepted: ISO (`2024-01-15`, `2024-01-15T10:20:30`, `2024-01-15 10:20:30.5`, with an optional
//! `Z` or `±hh:mm` offset, which then wins over India time), `dd-MM-yyyy`, `dd-MM-yyyy HH:mm` and
//! `dd-MM-yyyy HH:mm:ss`, and Excel serial dates (days since 1899-12-30, the fraction the time of
//! day). Business days skip Saturdays and Sundays; there is no holiday calendar.

/// India's offset from UTC, in milliseconds (+05:30).
pub const IST_OFFSET_MS: i64 = (5 * 3600 + 30 * 60) * 1000;
const DAY_MS: i64 = 86_400_000;

/// A calendar day as days since 1970-01-01 (in whichever zone the caller says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

/// Days since 1970-01-01 of the civil date `y-m-d` (proleptic Gregorian; H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of `days` since 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl Day {
    /// The India day of the UTC instant `ms`.
    pub fn india(ms: i64) -> Day {
        Day((ms + IST_OFFSET_MS).div_euclid(DAY_MS))
    }

    /// `yyyy-mm-dd`.
    pub fn parse_iso(s: &str) -> Option<Day> {
        let (y, m, d) = ymd(s.trim())?;
        Some(Day(days_from_civil(y, m, d)))
    }

    /// The UTC instant this India day starts at.
    pub fn india_start_ms(self) -> i64 {
        self.0 * DAY_MS - IST_OFFSET_MS
    }

    /// Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday).
    pub fn weekday(self) -> i64 {
        (self.0 + 3).rem_euclid(7)
    }

    fn is_weekend(self) -> bool {
        self.weekday() >= 5
    }

    /// `n` business days after this day: each step moves to the next Monday-to-Friday day.
    pub fn plus_business_days(self, n: u32) -> Day {
        let mut d = self;
        for _ in 0..n {
            d = Day(d.0 + 1);
            while d.is_weekend() {
                d = Day(d.0 + 1);
            }
        }
        d
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// A valid `yyyy-mm-dd` (years 1900..=2999).
fn ymd(s: &str) -> Option<(i64, u32, u32)> {
    let mut p = s.split('-');
    let (y, m, d) = (digits(p.next()?, 4)?, digits(p.next()?, 2)?, digits(p.next()?, 2)?);
    valid(i64::from(y), m, d).then_some((i64::from(y), m, d))
}

fn valid(y: i64, m: u32, d: u32) -> bool {
    (1900..=2999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// `HH:mm[:ss[.fff]]` → milliseconds into the day.
fn time_of_day(s: &str) -> Option<i64> {
    let mut p = s.split(':');
    let h = digits(p.next()?, 2)?;
    let min = digits(p.next()?, 2)?;
    let (sec, ms) = match p.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac_ok = frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit());
            if !frac_ok || (sec.contains('.') && frac.is_empty()) {
                return None;
            }
            // Milliseconds, truncated: PhonePe writes whole seconds.
            let ms = format!("{frac:0<3}").get(..3)?.parse::<i64>().ok()?;
            (digits(whole, 2)?, ms)
        }
    };
    if p.next().is_some() || h > 23 || min > 59 || sec > 59 {
        return None;
    }
    Some(((i64::from(h) * 60 + i64::from(min)) * 60 + i64::from(sec)) * 1000 + ms)
}

/// `Z`, `+05:30`, `-0100` at the end of an ISO time: (the rest, the offset in ms).
fn split_offset(s: &str) -> Option<(&str, Option<i64>)> {
    if let Some(rest) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return Some((rest, Some(0)));
    }
    let Some(at) = s.rfind(['+', '-']).filter(|&i| i >= 5) else {
        return Some((s, None));
    };
    let (rest, off) = s.split_at(at);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let hhmm = off[1..].replace(':', "");
    let (h, m) = (digits(hhmm.get(..2)?, 2)?, digits(hhmm.get(2..)?, 2)?);
    if h > 23 || m > 59 {
        return None;
    }
    Some((rest, Some(sign * (i64::from(h) * 60 + i64::from(m)) * 60_000)))
}

/// A date or date-time as PhonePe writes it → the UTC instant, in epoch milliseconds. A date
/// alone is the start of that India day. `None` when it is none of the accepted forms.
pub fn parse_text(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim())),
        None => (s, None),
    };
    let (y, m, d) = if date.len() == 10 && date.as_bytes()[4] == b'-' {
        ymd(date)?
    } else if date.len() == 10 && date.as_bytes()[2] == b'-' && date.as_bytes()[5] == b'-' {
        // dd-MM-yyyy
        let (dd, mm, yyyy) = (digits(&date[..2], 2)?, digits(&date[3..5], 2)?, digits(&date[6..], 4)?);
        valid(i64::from(yyyy), mm, dd).then_some((i64::from(yyyy), mm, dd))?
    } else {
        return None;
    };
    let iso = date.as_bytes()[4] == b'-';
    let (ms_of_day, offset) = match time {
        None => (0, None),
        // An offset is ISO's; `dd-MM-yyyy HH:mm:ss` is always India time.
        Some(t) if iso => {
            let (t, off) = split_offset(t)?;
            (time_of_day(t)?, off)
        }
        Some(t) => (time_of_day(t)?, None),
    };
    let local = days_from_civil(y, m, d) * DAY_MS + ms_of_day;
    Some(local - offset.unwrap_or(IST_OFFSET_MS))
}

/// An Excel serial date-time (1900 date system: day 0 is 1899-12-30; `is_1904`: day 0 is
/// 1904-01-01), read as India time → the UTC instant, to the nearest second. `None` outside
/// years 1900..=2999 or when not finite.
pub fn from_excel_serial(serial: f64, is_1904: bool) -> Option<i64> {
    if !serial.is_finite() {
        return None;
    }
    let epoch = if is_1904 {
        days_from_civil(1904, 1, 1)
    } else {
        days_from_civil(1899, 12, 30)
    };
    let secs = (serial * 86_400.0).round();
    if !(0.0..=1.0e11).contains(&secs) {
        return None;
    }
    let local = epoch * DAY_MS + secs as i64 * 1000;
    let (y, _, _) = civil_from_days(local.div_euclid(DAY_MS));
    (1900..=2999).contains(&y).then_some(local - IST_OFFSET_MS)
}

/// The instant `ms` as India time, `yyyy-mm-ddTHH:MM:SS+05:30`.
pub fn india_rfc3339(ms: i64) -> String {
    let local = ms + IST_OFFSET_MS;
    let day = Day(local.div_euclid(DAY_MS));
    let s = local.rem_euclid(DAY_MS) / 1000;
    format!("{day}T{:02}:{:02}:{:02}+05:30", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-15 00:00 India time = 2024-01-14 18:30 UTC.
    const JAN15_IST: i64 = 1_705_257_000_000;

    #[test]
    fn every_accepted_text_form_is_india_time_unless_it_says_otherwise() {
        let at = |h: i64, m: i64, s: i64| JAN15_IST + ((h * 60 + m) * 60 + s) * 1000;
        let cases = [
            ("2024-01-15", JAN15_IST),
            ("15-01-2024", JAN15_IST),
            ("15-01-2024 10:20:30", at(10, 20, 30)),
            ("15-01-2024 10:20", at(10, 20, 0)),
            ("2024-01-15T10:20:30", at(10, 20, 30)),
            ("2024-01-15 10:20:30", at(10, 20, 30)),
            ("2024-01-15T10:20:30.250", at(10, 20, 30) + 250),
            ("2024-01-15T04:50:30Z", at(10, 20, 30)),
            ("2024-01-15T10:20:30+05:30", at(10, 20, 30)),
            ("2024-01-15T05:50:30+01:00", at(10, 20, 30)),
            ("  2024-01-15  ", JAN15_IST),
        ];
        for (text, want) in cases {
            assert_eq!(parse_text(text), Some(want), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "2024-1-15",
            "15/01/2024",
            "01-15-2024",
            "2024-02-30",
            "29-02-2023",
            "2024-01-15T24:00:00",
            "2024-01-15T10:61",
            "2024-01-15T10:20:30+25:00",
            "15-01-2024 10:20:30Z",
            "yesterday",
            "45306",
            "1800-01-01",
        ] {
            assert_eq!(parse_text(bad), None, "{bad:?}");
        }
        assert_eq!(parse_text("29-02-2024"), Some(JAN15_IST + 45 * DAY_MS));
    }

    #[test]
    fn excel_serials_are_india_time_to_the_second() {
        // 45306 is 2024-01-15 in Excel's 1900 date system.
        assert_eq!(from_excel_serial(45306.0, false), Some(JAN15_IST));
        let half_past_ten = 45306.0 + (10.5 * 3600.0) / 86_400.0;
        assert_eq!(from_excel_serial(half_past_ten, false), Some(JAN15_IST + 37_800_000));
        assert_eq!(from_excel_serial(45306.0 - 1462.0, true), Some(JAN15_IST));
        for bad in [f64::NAN, f64::INFINITY, -1.0, 4.0e6] {
            assert_eq!(from_excel_serial(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn india_days_and_business_days() {
        assert_eq!(Day::india(JAN15_IST).to_string(), "2024-01-15");
        assert_eq!(Day::india(JAN15_IST - 1).to_string(), "2024-01-14");
        assert_eq!(Day::parse_iso("2024-01-15"), Some(Day::india(JAN15_IST)));
        assert_eq!(Day::parse_iso("2024-01-15").unwrap().india_start_ms(), JAN15_IST);
        let monday = Day::parse_iso("2024-01-15").unwrap();
        assert_eq!(monday.weekday(), 0);
        let friday = Day::parse_iso("2024-01-19").unwrap();
        let saturday = Day::parse_iso("2024-01-20").unwrap();
        let wednesday_after = Day::parse_iso("2024-01-24").unwrap();
        assert_eq!(friday.plus_business_days(3), wednesday_after, "Mon, Tue, Wed");
        assert_eq!(saturday.plus_business_days(3), wednesday_after);
        assert_eq!(monday.plus_business_days(3).to_string(), "2024-01-18");
        assert_eq!(monday.plus_business_days(0), monday);
        assert_eq!(india_rfc3339(JAN15_IST + 37_800_000), "2024-01-15T10:30:00+05:30");
        for days in [-800_000, -1, 0, 1, 19_737, 400_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
