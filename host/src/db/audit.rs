//! The audit log: who did what to what, from where, and how it ended.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::audit_log as al;
use super::{now_ms, DbConnection, DbError};

/// One entry to record.
#[derive(Debug, Clone, Default, Insertable)]
#[diesel(table_name = al)]
pub struct NewAuditEntry {
    pub at: i64,
    /// Username, or none for anonymous callers.
    pub actor: Option<String>,
    /// Dotted verb, e.g. `container.stop`, `auth.login`.
    pub action: String,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub result: String,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
}

impl NewAuditEntry {
    pub fn new(action: &str, result: &str) -> Self {
        Self {
            at: now_ms(),
            action: action.to_string(),
            result: result.to_string(),
            ..Self::default()
        }
    }
}

#[derive(
    Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize, utoipa::ToSchema,
)]
#[diesel(table_name = al)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub result: String,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
}

/// Filters and paging for reading the log, newest first.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (e.g. `container.`).
    pub action: Option<String>,
    /// Only entries at or after this Unix millisecond.
    pub since: Option<i64>,
    /// Only entries before this Unix millisecond.
    pub until: Option<i64>,
    /// 1-based page number; a page past the end is empty.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Entries per page (1..=500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub per_page: Option<i64>,
}

/// The most entries one page holds.
pub const MAX_PER_PAGE: i64 = 500;

impl AuditQuery {
    /// Rows to skip for the requested page, if it can be computed without
    /// overflow (`None` for a page beyond what a 64-bit offset reaches).
    pub fn offset(&self) -> Option<i64> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(50);
        page.checked_sub(1)?.checked_mul(per_page)
    }
}

/// The LIKE escape character. Not `\`: diesel writes it as a literal
/// (`ESCAPE '\'`), which MySQL reads as an unterminated string.
const LIKE_ESCAPE: char = '!';

/// `text` with LIKE's wildcards (and the escape character) escaped.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            out.push(LIKE_ESCAPE);
        }
        out.push(c);
    }
    out
}

pub fn insert(conn: &mut DbConnection, entry: &NewAuditEntry) -> Result<(), DbError> {
    diesel::insert_into(al::table).values(entry).execute(conn)?;
    Ok(())
}

/// Returns one page and the total count matching the filter.
pub fn query(conn: &mut DbConnection, q: &AuditQuery) -> Result<(Vec<AuditEntry>, i64), DbError> {
    let filtered = || {
        let mut query = al::table.into_boxed();
        if let Some(actor) = &q.actor {
            query = query.filter(al::actor.eq(actor.clone()));
        }
        if let Some(action) = &q.action {
            if let Some(prefix) = action.strip_suffix('.') {
                // A prefix match: `%` and `_` in it are literal characters,
                // not wildcards.
                query = query.filter(
                    al::action
                        .like(format!("{}.%", like_escape(prefix)))
                        .escape(LIKE_ESCAPE),
                );
            } else {
                query = query.filter(al::action.eq(action.clone()));
            }
        }
        if let Some(since) = q.since {
            query = query.filter(al::at.ge(since));
        }
        if let Some(until) = q.until {
            query = query.filter(al::at.lt(until));
        }
        query
    };
    let total: i64 = filtered().count().get_result(conn)?;
    let per_page = q.per_page.unwrap_or(50);
    // Checked: a page past the end of i64 is simply past the end.
    let Some(offset) = q.offset() else {
        return Ok((Vec::new(), total));
    };
    let rows = filtered()
        .order(al::id.desc())
        .limit(per_page)
        .offset(offset)
        .select(AuditEntry::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Deletes at most `batch` of the oldest entries that are past retention:
/// written before `older_than` (Unix ms), or beyond the newest
/// `max_entries`. One short statement per call, so a large backlog is
/// removed in many small steps and never holds a long lock. Returns how
/// many were deleted (fewer than `batch`: nothing more to do).
///
/// The count limit keeps the entries whose id is within `max_entries` of
/// the newest id: at most `max_entries` entries (ids only grow; gaps left
/// by earlier pruning make it fewer), found without counting the table.
pub fn prune_batch(
    conn: &mut DbConnection,
    older_than: Option<i64>,
    max_entries: Option<i64>,
    batch: i64,
) -> Result<usize, DbError> {
    let below_id = match max_entries {
        Some(max) => al::table
            .select(diesel::dsl::max(al::id))
            .first::<Option<i64>>(conn)?
            .map(|newest| newest.saturating_sub(max) + 1),
        None => None,
    };
    if older_than.is_none() && below_id.is_none() {
        return Ok(0);
    }
    let mut q = al::table
        .select(al::id)
        .order(al::id.asc())
        .limit(batch)
        .into_boxed();
    q = match (older_than, below_id) {
        (Some(at), Some(id)) => q.filter(al::at.lt(at).or(al::id.lt(id))),
        (Some(at), None) => q.filter(al::at.lt(at)),
        (None, Some(id)) => q.filter(al::id.lt(id)),
        (None, None) => unreachable!("checked above"),
    };
    // Ids first, then a delete by id: MySQL has no LIMIT in an IN
    // subquery, and the delete then locks only these rows.
    let ids: Vec<i64> = q.load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(al::table.filter(al::id.eq_any(&ids))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    #[tokio::test]
    async fn pruning_by_age_and_count_in_batches_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(move |c| {
                let now = now_ms();
                // 30 old entries, then 30 recent ones.
                for i in 0..60 {
                    let mut e = NewAuditEntry::new("x.y", "success");
                    e.at = if i < 30 { now - 10 * 86_400_000 } else { now };
                    e.target = Some(format!("t{i}"));
                    insert(c, &e)?;
                }
                let cutoff = Some(now - 86_400_000);
                // Small batches: 7 + 7 + 7 + 7 + 2, then nothing.
                let mut steps = Vec::new();
                loop {
                    let n = prune_batch(c, cutoff, None, 7)?;
                    steps.push(n);
                    if n < 7 {
                        break;
                    }
                }
                assert_eq!(steps, vec![7, 7, 7, 7, 2], "{backend}");
                assert_eq!(query(c, &AuditQuery::default())?.1, 30, "{backend}");
                // Now at most 10 entries: the newest 10 remain.
                while prune_batch(c, None, Some(10), 7)? == 7 {}
                let (rows, total) = query(c, &AuditQuery::default())?;
                assert_eq!(total, 10, "{backend}");
                assert_eq!(rows[0].target.as_deref(), Some("t59"));
                assert_eq!(rows[9].target.as_deref(), Some("t50"));
                assert_eq!(prune_batch(c, None, None, 7)?, 0);
                Ok(())
            })
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn filter_and_page_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(move |c| {
                for i in 0..7 {
                    let mut e = NewAuditEntry::new(
                        if i % 2 == 0 {
                            "container.stop"
                        } else {
                            "auth.login"
                        },
                        "success",
                    );
                    e.actor = Some(if i < 4 { "alice" } else { "bob" }.into());
                    e.target = Some(format!("t{i}"));
                    insert(c, &e)?;
                }
                let (rows, total) = query(c, &AuditQuery::default())?;
                assert_eq!((rows.len(), total), (7, 7), "{backend}");
                assert_eq!(rows[0].target.as_deref(), Some("t6"), "newest first");

                let q = AuditQuery {
                    action: Some("container.".into()),
                    per_page: Some(2),
                    page: Some(2),
                    ..Default::default()
                };
                let (rows, total) = query(c, &q)?;
                assert_eq!(total, 4, "{backend}");
                assert_eq!(rows.len(), 2);
                assert_eq!(rows[0].target.as_deref(), Some("t2"));

                // `_` and `%` in a prefix are literal: `a_b.` is not `aXb.`.
                for action in ["a_b.x", "aXb.x", "a%b.y", "a!b.z", "a\\b.w"] {
                    insert(c, &NewAuditEntry::new(action, "success"))?;
                }
                for (prefix, n) in [
                    ("a_b.", 1),
                    ("a%b.", 1),
                    ("a_", 0),
                    ("a!b.", 1),
                    ("a\\b.", 1),
                ] {
                    let q = AuditQuery {
                        action: Some(prefix.into()),
                        ..Default::default()
                    };
                    assert_eq!(query(c, &q)?.1, n, "{backend}: {prefix}");
                }
                // Pages past the end, up to the largest, are empty.
                let q = AuditQuery {
                    page: Some(i64::MAX),
                    per_page: Some(1),
                    ..Default::default()
                };
                assert!(query(c, &q)?.0.is_empty(), "{backend}");
                let q = AuditQuery {
                    page: Some(i64::MAX),
                    per_page: Some(500),
                    ..Default::default()
                };
                assert_eq!(q.offset(), None);
                assert!(query(c, &q)?.0.is_empty(), "{backend}");
                let q = AuditQuery {
                    actor: Some("bob".into()),
                    action: Some("auth.login".into()),
                    ..Default::default()
                };
                assert_eq!(query(c, &q)?.1, 1);
                Ok(())
            })
            .await
            .unwrap();
        }
    }
}
