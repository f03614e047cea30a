//! Silences and maintenance windows: while one covers an alert, its state
//! changes are recorded in the history but nobody is notified.
//!
//! A silence is manual, with an expiry. A maintenance window is planned:
//! once (`start`..`end`) or recurring (every day or on some weekdays, at a
//! time of day, for a duration). Both name the rules they cover (none: all)
//! and, optionally, target names (`*` wildcards).

use serde::{Deserialize, Serialize};

use crate::rule::{parse_ms, FieldError};
use crate::selector::glob;

/// A manual silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    /// Rule names it covers; empty: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Target names (`*` wildcards); empty: every target.
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub starts_ms: u64,
    pub ends_ms: u64,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

fn covers(rules: &[String], targets: &[String], rule: &str, target: &str) -> bool {
    (rules.is_empty() || rules.iter().any(|r| r == rule))
        && (targets.is_empty() || targets.iter().any(|t| glob(t, target)))
}

impl Silence {
    pub fn active(&self, now: u64) -> bool {
        self.starts_ms <= now && now < self.ends_ms
    }

    pub fn covers(&self, rule: &str, target: &str, now: u64) -> bool {
        self.active(now) && covers(&self.rules, &self.targets, rule, target)
    }
}

/// A maintenance window as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDef {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    /// One-off: RFC 3339 start and end (`2026-12-24T22:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Recurring: `day`, or weekdays (`mon`, `tue`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub every: Vec<String>,
    /// Recurring: time of day, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Recurring: how long, e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Recurring: the local time's offset from UTC, e.g. `+01:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
}

/// A checked maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub def: WindowDef,
    schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Schedule {
    Once {
        start: u64,
        end: u64,
    },
    Recurring {
        /// Bit `d` set: weekday `d` (0 = Monday).
        days: u8,
        /// Minutes after local midnight.
        at_min: u32,
        duration_ms: u64,
        offset_min: i32,
    },
}

const DAY_MS: u64 = 86_400_000;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn rfc3339_ms(field: &str, text: &str) -> Result<u64, FieldError> {
    humantime::parse_rfc3339_weak(text.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!("`{text}` is not an RFC 3339 time (e.g. `2026-12-24T22:00:00Z`)"),
            )
        })
}

fn hh_mm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t == "Z" || t == "UTC" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    hh_mm(rest).map(|m| sign * m as i32)
}

impl WindowDef {
    pub fn validate(&self) -> Result<Window, Vec<FieldError>> {
        let mut errs = Vec::new();
        if let Err(m) = crate::rule::check_name(&self.name) {
            errs.push(FieldError::new("name", m));
        }
        let once = self.start.is_some() || self.end.is_some();
        let recurring = !self.every.is_empty() || self.at.is_some() || self.duration.is_some();
        let schedule = match (once, recurring) {
            (true, true) | (false, false) => {
                errs.push(FieldError::new(
                    "start",
                    "give either `start` and `end` (one-off) or `every`, `at` and `duration` (recurring)",
                ));
                None
            }
            (true, false) => {
                let start = self.start.as_deref().map(|s| rfc3339_ms("start", s));
                let end = self.end.as_deref().map(|s| rfc3339_ms("end", s));
                match (start, end) {
                    (Some(Ok(s)), Some(Ok(e))) if e > s => {
                        Some(Schedule::Once { start: s, end: e })
                    }
                    (Some(Ok(_)), Some(Ok(_))) => {
                        errs.push(FieldError::new("end", "must be after `start`"));
                        None
                    }
                    (s, e) => {
                        for (field, r) in [("start", s), ("end", e)] {
                            match r {
                                None => errs.push(FieldError::new(field, "missing")),
                                Some(Err(x)) => errs.push(x),
                                Some(Ok(_)) => {}
                            }
                        }
                        None
                    }
                }
            }
            (false, true) => {
                let mut days = 0u8;
                for (i, d) in self.every.iter().enumerate() {
                    let d = d.trim().to_ascii_lowercase();
                    if d == "day" {
                        days = 0x7f;
                    } else if let Some(n) = WEEKDAYS.iter().position(|w| d.starts_with(w)) {
                        days |= 1 << n;
                    } else {
                        errs.push(FieldError::new(
                            format!("every[{i}]"),
                            format!("`{d}` is not `day` or a weekday (`mon` ... `sun`)"),
                        ));
                    }
                }
                if self.every.is_empty() {
                    errs.push(FieldError::new("every", "missing (`day` or weekdays)"));
                }
                let at = self.at.as_deref().and_then(hh_mm);
                if at.is_none() {
                    errs.push(FieldError::new("at", "missing or not `HH:MM`"));
                }
                let duration = match self.duration.as_deref().map(parse_ms) {
                    Some(Ok(ms)) if ms > 0 && ms <= 7 * DAY_MS => Some(ms),
                    Some(Ok(_)) => {
                        errs.push(FieldError::new(
                            "duration",
                            "must be above 0 and at most 7 days",
                        ));
                        None
                    }
                    Some(Err(m)) => {
                        errs.push(FieldError::new("duration", m));
                        None
                    }
                    None => {
                        errs.push(FieldError::new("duration", "missing"));
                        None
                    }
                };
                let offset_min = match self.utc_offset.as_deref() {
                    None => Some(0),
                    Some(t) => {
                        let o = offset(t);
                        if o.is_none() {
                            errs.push(FieldError::new(
                                "utc_offset",
                                format!("`{t}` is not like `+01:00`"),
                            ));
                        }
                        o
                    }
                };
                match (at, duration, offset_min) {
                    (Some(at_min), Some(duration_ms), Some(offset_min)) => {
                        Some(Schedule::Recurring {
                            days,
                            at_min,
                            duration_ms,
                            offset_min,
                        })
                    }
                    _ => None,
                }
            }
        };
        match schedule {
            Some(schedule) if errs.is_empty() => Ok(Window {
                def: self.clone(),
                schedule,
            }),
            _ => Err(errs),
        }
    }
}

impl Window {
    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn active(&self, now: u64) -> bool {
        match self.schedule {
            Schedule::Once { start, end } => start <= now && now < end,
            Schedule::Recurring {
                days,
                at_min,
                duration_ms,
                offset_min,
            } => {
                let local = now as i64 + i64::from(offset_min) * 60_000;
                let local = local.max(0) as u64;
                // Look at windows that began today and on the days before,
                // as far back as a window can last.
                let today = local / DAY_MS;
                (0..=duration_ms.div_ceil(DAY_MS)).any(|back| {
                    let Some(day) = today.checked_sub(back) else {
                        return false;
                    };
                    // 1970-01-01 was a Thursday (weekday 3 from Monday).
                    let weekday = ((day + 3) % 7) as u8;
                    let begin = day * DAY_MS + u64::from(at_min) * 60_000;
                    days & (1 << weekday) != 0 && begin <= local && local < begin + duration_ms
                })
            }
        }
    }

    pub fn covers(&self, rule: &str, target: &str, now: u64) -> bool {
        self.active(now) && covers(&self.def.rules, &self.def.targets, rule, target)
    }
}

/// Why a rule's notification on `target` is held back now, if it is.
pub fn suppressed_by(
    silences: &[Silence],
    windows: &[Window],
    rule: &str,
    target: &str,
    now: u64,
) -> Option<String> {
    if let Some(s) = silences.iter().find(|s| s.covers(rule, target, now)) {
        return Some(format!("silence {}", s.id));
    }
    windows
        .iter()
        .find(|w| w.covers(rule, target, now))
        .map(|w| format!("maintenance window {}", w.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(v: serde_json::Value) -> Result<Window, Vec<FieldError>> {
        serde_json::from_value::<WindowDef>(v).unwrap().validate()
    }

    #[test]
    fn silences_cover_their_rules_and_targets_until_they_expire() {
        let s = Silence {
            id: "s1".into(),
            rules: vec!["crash".into()],
            targets: vec!["api-*".into()],
            starts_ms: 100,
            ends_ms: 200,
            comment: String::new(),
            created_by: "admin".into(),
        };
        assert!(s.covers("crash", "api-1", 150));
        assert!(!s.covers("crash", "db", 150));
        assert!(!s.covers("oom", "api-1", 150));
        assert!(!s.covers("crash", "api-1", 200));
        assert!(!s.covers("crash", "api-1", 99));
        assert_eq!(
            suppressed_by(&[s], &[], "crash", "api-1", 150).as_deref(),
            Some("silence s1")
        );
    }

    #[test]
    fn one_off_windows() {
        let w = window(json!({"name": "upgrade", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"})).unwrap();
        let ten = 1_796_119_200_000; // 2026-12-01T10:00:00Z
        assert!(w.active(ten));
        assert!(w.active(ten + 3_599_999));
        assert!(!w.active(ten + 3_600_000));
        assert!(!w.active(ten - 1));
    }

    #[test]
    fn recurring_windows_on_weekdays_and_across_midnight() {
        // Tuesdays 23:00 local (UTC+1) for two hours.
        let w = window(json!({"name": "backup", "every": ["tue"], "at": "23:00", "duration": "2h", "utc_offset": "+01:00"})).unwrap();
        let tue_2026_12_01_utc_midnight: u64 = 1_796_083_200_000;
        let h = 3_600_000;
        // 23:30 local Tuesday = 22:30 UTC.
        assert!(w.active(tue_2026_12_01_utc_midnight + 22 * h + h / 2));
        // 00:30 local Wednesday, still inside.
        assert!(w.active(tue_2026_12_01_utc_midnight + 23 * h + h / 2));
        // 01:30 local Wednesday: over.
        assert!(!w.active(tue_2026_12_01_utc_midnight + 24 * h + h / 2));
        // Monday 23:30 local: not a Tuesday.
        assert!(!w.active(tue_2026_12_01_utc_midnight - 2 * h + h / 2));
        let daily =
            window(json!({"name": "d", "every": ["day"], "at": "02:00", "duration": "30m"}))
                .unwrap();
        assert!(daily.active(tue_2026_12_01_utc_midnight + 2 * h + 60_000));
        assert!(!daily.active(tue_2026_12_01_utc_midnight + 3 * h));
    }

    #[test]
    fn bad_windows_name_their_fields() {
        let e =
            window(json!({"name": "x", "every": ["funday"], "at": "25:00", "duration": "forever"}))
                .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["every[0]", "at", "duration"]);
        let e = window(json!({"name": "x", "start": "yesterday", "end": "2026-12-01T11:00:00Z"}))
            .unwrap_err();
        assert_eq!(e[0].field, "start");
        let e = window(json!({"name": "x"})).unwrap_err();
        assert_eq!(e[0].field, "start");
    }
}
