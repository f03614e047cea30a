//! `GET /api/v1/audit`: the audit log, for admins.

use axum::extract::State;
use serde::Serialize;

use crate::auth::AuthUser;
use crate::db::audit::{self, AuditEntry, AuditQuery};
use crate::db::users::Role;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Query};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// Audit entries, newest first, filtered and paginated.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    user.require(Role::Admin)?;
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(50);
    if page < 1 {
        return Err(ApiError::bad_request("invalid_query", "page starts at 1"));
    }
    if !(1..=audit::MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("per_page must be 1..={}", audit::MAX_PER_PAGE),
        ));
    }
    let (items, total) = state.db.run(move |c| audit::query(c, &q)).await?;
    Ok(Json(AuditPage {
        items,
        total,
        page,
        per_page,
    }))
}
