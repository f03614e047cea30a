//! `/api/v1/backups`: list, take and download backups (admin).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthUser;
use crate::backup::schedule::{BackupFile, LastBackup};
use crate::backup::BackupSummary;
use crate::db::users::Role;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

/// The backup directory and schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupList {
    /// Backups in the directory, newest first.
    pub items: Vec<BackupFile>,
    pub directory: String,
    /// `backup.interval` in seconds; absent: no scheduled backups.
    pub interval_seconds: Option<u64>,
    /// How many are kept.
    pub keep: usize,
    /// The last backup this host took (since it started).
    pub last: Option<LastBackup>,
}

/// The backups in the backup directory, and the schedule.
#[utoipa::path(
    get, path = "/api/v1/backups", tag = "backups",
    responses((status = 200, body = BackupList), (status = 403, body = Problem)),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<BackupList>> {
    user.require(Role::Admin)?;
    let b = state.backups.clone();
    let items = tokio::task::spawn_blocking(move || b.list())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(BackupList {
        items,
        directory: state.backups.dir.display().to_string(),
        interval_seconds: state.backups.interval.map(|d| d.as_secs()),
        keep: state.backups.keep,
        last: state.backups.last(),
    }))
}

/// Takes a backup now (a consistent snapshot; the server keeps serving)
/// into the backup directory; the oldest beyond `backup.keep` are deleted.
#[utoipa::path(
    post, path = "/api/v1/backups", tag = "backups",
    responses(
        (status = 201, body = BackupSummary, description = "Written; `path` is the file name"),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<(StatusCode, Json<BackupSummary>)> {
    user.require_audited(&state, Role::Admin, "backup.create", "backup")
        .await?;
    let result = state.backups.take(&state.db).await;
    let mut entry = user.audit_entry("backup.create", "backup");
    match result {
        Ok(s) => {
            entry.target = Some(s.path.clone());
            state.audit(entry).await;
            Ok((StatusCode::CREATED, Json(s)))
        }
        Err(e) => {
            entry.result = "failure".into();
            state.audit(entry).await;
            Err(ApiError::internal(e))
        }
    }
}

/// Downloads one backup file (gzip; restore it with `wakedock restore`).
#[utoipa::path(
    get, path = "/api/v1/backups/{name}", tag = "backups",
    params(("name" = String, Path, description = "A backup's file name",
        pattern = "^wakedock-backup-[0-9TZ-]+\\.jsonl\\.gz$")),
    responses(
        (status = 200, description = "The backup file", content_type = "application/gzip",
            body = Vec<u8>),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    user.require_audited(&state, Role::Admin, "backup.download", &name)
        .await?;
    let path = state
        .backups
        .path_of(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no backup named {name:?}")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound(format!("no backup named {name:?}")))?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    state
        .audit(user.audit_entry("backup.download", &name))
        .await;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
