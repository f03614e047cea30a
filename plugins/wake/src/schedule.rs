//! Schedules: windows during which a service is kept awake (woken at the
//! window's start if asleep, never put to sleep inside it).
//!
//! A window is `DAYS HH:MM-HH:MM`, e.g. `mon-fri 08:00-18:00`, `sat,sun
//! 10:00-12:00`, `daily 22:00-02:00` (a window that ends before it starts
//! runs past midnight into the next day). Times are in the service's
//! `utc_offset` (`+01:00`; default UTC): a plugin has only a UTC clock and
//! no time-zone database, so daylight saving is not followed.

use std::fmt;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: i64 = 24 * 60;

/// One window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight.
    start: u16,
    end: u16,
    text: String,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_day(d: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|n| *n == d)
}

fn parse_days(spec: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if spec == "daily" || spec == "*" {
        return Ok([true; 7]);
    }
    for part in spec.split(',') {
        let bad = || format!("\"{part}\" is not a day or day range (mon..sun, e.g. mon-fri)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
                // sat-mon wraps round the week.
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[parse_day(part).ok_or_else(bad)?] = true,
        }
    }
    Ok(days)
}

fn parse_time(t: &str) -> Result<u16, String> {
    let bad = || format!("\"{t}\" is not a time (HH:MM, 00:00 to 24:00)");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let t = text.trim().to_ascii_lowercase();
        let (days, times) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("\"{text}\" is not a window (e.g. \"mon-fri 08:00-18:00\")"))?;
        let (start, end) = times
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("\"{times}\" is not a time range (HH:MM-HH:MM)"))?;
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if start == end {
            return Err(format!("\"{text}\" is empty: it starts when it ends"));
        }
        Ok(Window {
            days: parse_days(days)?,
            start,
            end,
            text: text.trim().to_owned(),
        })
    }

    /// Whether local time `minute` of weekday `day` (0 = Monday) is inside.
    fn covers(&self, day: usize, minute: u16) -> bool {
        if self.start < self.end {
            self.days[day] && minute >= self.start && minute < self.end
        } else {
            // Past midnight: the evening part today, or the morning part
            // of a window that started yesterday.
            (self.days[day] && minute >= self.start)
                || (self.days[(day + 6) % 7] && minute < self.end)
        }
    }
}

/// Parses `+HH:MM` / `-HH:MM` (or `Z`) into minutes east of UTC.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t == "+00:00" || t == "-00:00" {
        return Ok(0);
    }
    let bad = || format!("\"{text}\" is not a UTC offset (e.g. +01:00, -05:00)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// Whether any window covers Unix time `now_ms`, in local time at
/// `offset_min` east of UTC.
pub fn active(windows: &[Window], now_ms: u64, offset_min: i32) -> bool {
    if windows.is_empty() {
        return false;
    }
    let local_min = (now_ms / 60_000) as i64 + i64::from(offset_min);
    let days = local_min.div_euclid(MINUTES_PER_DAY);
    let minute = local_min.rem_euclid(MINUTES_PER_DAY) as u16;
    // 1970-01-01 was a Thursday (index 3 with Monday first).
    let day = (days + 3).rem_euclid(7) as usize;
    windows.iter().any(|w| w.covers(day, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of 2026-11-23 (a Monday) at `hh:mm` UTC, plus `days`.
    fn at(days: u64, hh: u64, mm: u64) -> u64 {
        const MONDAY_2026_11_23: u64 = 1_795_392_000_000;
        MONDAY_2026_11_23 + ((days * 24 + hh) * 60 + mm) * 60_000
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        let w = [Window::parse("mon 00:00-24:00").unwrap()];
        assert!(active(&w, at(0, 12, 0), 0));
        assert!(!active(&w, at(1, 12, 0), 0));
        assert!(!active(&w, at(6, 23, 59), 0));
    }

    #[test]
    fn weekday_office_hours() {
        let w = [Window::parse("Mon-Fri 08:00-18:00").unwrap()];
        assert!(active(&w, at(0, 8, 0), 0), "start is inside");
        assert!(active(&w, at(4, 17, 59), 0));
        assert!(!active(&w, at(4, 18, 0), 0), "end is outside");
        assert!(!active(&w, at(5, 12, 0), 0), "saturday");
        assert!(!active(&w, at(0, 7, 59), 0));
    }

    #[test]
    fn windows_past_midnight_and_wrapping_day_ranges() {
        let w = [Window::parse("fri 22:00-02:00").unwrap()];
        assert!(active(&w, at(4, 23, 0), 0));
        assert!(
            active(&w, at(5, 1, 59), 0),
            "saturday morning belongs to friday's window"
        );
        assert!(!active(&w, at(5, 22, 30), 0));
        assert!(!active(&w, at(4, 1, 0), 0), "friday morning is thursday's");
        let w = [Window::parse("sat-mon 10:00-11:00").unwrap()];
        assert!(active(&w, at(5, 10, 30), 0) && active(&w, at(6, 10, 30), 0));
        assert!(active(&w, at(7, 10, 30), 0), "next monday");
        assert!(!active(&w, at(1, 10, 30), 0), "tuesday");
    }

    #[test]
    fn utc_offsets_shift_local_time() {
        let w = [Window::parse("daily 08:00-09:00").unwrap()];
        // 07:30 UTC is 08:30 at +01:00.
        assert!(active(&w, at(2, 7, 30), 60));
        assert!(!active(&w, at(2, 7, 30), 0));
        // 13:30 UTC is 08:30 at -05:00.
        assert!(active(
            &w,
            at(2, 13, 30),
            parse_utc_offset("-05:00").unwrap()
        ));
        assert_eq!(parse_utc_offset("+05:30"), Ok(330));
        assert!(parse_utc_offset("01:00").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (text, wants) in [
            ("mon-fri", "not a window"),
            ("someday 08:00-09:00", "not a day"),
            ("mon 8-9", "not a time"),
            ("mon 08:00-25:00", "not a time"),
            ("mon 08:60-09:00", "not a time"),
            ("mon 09:00-09:00", "empty"),
            ("mon 09:00", "not a time range"),
        ] {
            let e = Window::parse(text).unwrap_err();
            assert!(e.contains(wants), "{text}: {e}");
        }
        assert!(!active(&[], at(0, 12, 0), 0), "no windows: never");
    }
}
