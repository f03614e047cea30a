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

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
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

/// `text` with LIKE's wildcards (and the escape character) escaped by `\`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
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
                        .escape('\\'),
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

/// Deletes entries older than `keep_ms`.
pub fn purge_older_than(conn: &mut DbConnection, keep_ms: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(al::table.filter(al::at.lt(now_ms() - keep_ms))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    #[tokio::test]
    async fn filter_and_page_on_both_backends() {
        for t in testing::both().await {
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
                for action in ["a_b.x", "aXb.x", "a%b.y"] {
                    insert(c, &NewAuditEntry::new(action, "success"))?;
                }
                for (prefix, n) in [("a_b.", 1), ("a%b.", 1), ("a_", 0)] {
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
