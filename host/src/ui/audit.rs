//! `/audit` (admin): the audit log, filtered by actor, action and time.

use askama::Template;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::api::audit as api;
use crate::db::audit::{AuditEntry, AuditQuery};
use crate::error::ApiError;
use crate::http::extract;
use crate::state::AppState;

use super::page::{self, Ctx, UiResult, UiUser};

pub struct EntryView {
    pub e: AuditEntry,
    pub at: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub ctx: Ctx,
    pub entries: Vec<EntryView>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub actor: String,
    pub action: String,
    pub since: String,
    pub until: String,
    /// The filter as a query string, for the page links.
    pub filter_qs: String,
    pub error: Option<String>,
}

/// The filter form: times as `YYYY-MM-DDTHH:MM` (a datetime-local input,
/// read as UTC).
#[derive(Debug, Default, Deserialize)]
pub struct AuditForm {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub page: Option<i64>,
}

const PER_PAGE: i64 = 50;

/// `2026-11-27T10:30` (or with seconds, or a date alone) as Unix ms, UTC.
pub fn parse_time(s: &str) -> Result<i64, String> {
    use cookie::time::{Date, Month, PrimitiveDateTime, Time};
    let bad = || format!("{s:?} is not a date and time (use YYYY-MM-DD HH:MM)");
    let s = s.trim().replace(' ', "T");
    let (date, time) = s.split_once('T').unwrap_or((&s, "00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&t.len()) {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i32>().map_err(|_| bad());
    let month = Month::try_from(num(d[1])? as u8).map_err(|_| bad())?;
    let date = Date::from_calendar_date(num(d[0])?, month, num(d[2])? as u8).map_err(|_| bad())?;
    let sec = t.get(2).map(|x| num(x)).transpose()?.unwrap_or(0);
    let time = Time::from_hms(num(t[0])? as u8, num(t[1])? as u8, sec as u8).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp()
        * 1000)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn list(
    State(state): State<AppState>,
    u: UiUser,
    Query(f): Query<AuditForm>,
) -> UiResult {
    let (actor, action) = (nonempty(&f.actor), nonempty(&f.action));
    let (since_s, until_s) = (nonempty(&f.since), nonempty(&f.until));
    let mut error = None;
    let mut time = |s: &Option<String>| match s.as_deref().map(parse_time) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            error = Some(page::describe(&ApiError::validation(e)));
            None
        }
        None => None,
    };
    let (since, until) = (time(&since_s), time(&until_s));
    let page_no = f.page.unwrap_or(1).max(1);
    let q = AuditQuery {
        actor: actor.clone(),
        action: action.clone(),
        since,
        until,
        page: Some(page_no),
        per_page: Some(PER_PAGE),
    };
    let r = api::list(State(state), u.user.clone(), extract::Query(q))
        .await
        .map_err(|e| u.fail("audit", e))?
        .0;
    let filter_qs = [
        ("actor", &actor),
        ("action", &action),
        ("since", &since_s),
        ("until", &until_s),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}&", page::urlencode(v))))
    .collect::<String>();
    Ok(page::page(
        &u,
        AuditPage {
            ctx: u.ctx("audit"),
            entries: r
                .items
                .into_iter()
                .map(|e| EntryView {
                    at: super::timestamp(e.at),
                    e,
                })
                .collect(),
            total: r.total,
            page: page_no,
            pages: ((r.total + PER_PAGE - 1) / PER_PAGE).max(1),
            actor: actor.unwrap_or_default(),
            action: action.unwrap_or_default(),
            since: since_s.unwrap_or_default(),
            until: until_s.unwrap_or_default(),
            filter_qs,
            error,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("2023-11-14T22:13").unwrap(), 1_699_999_980_000);
        assert_eq!(
            parse_time("2023-11-14 22:13:20").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-13-01T00:00").is_err());
    }
}
