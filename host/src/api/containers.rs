//! `/api/v1/containers`: list, inspect, operate, logs and stats.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::db::users::Role;
use crate::docker::{
    ActionOutcome, ContainerDetails, ContainerStats, ContainerSummary, LogLine,
    MAX_STOP_TIMEOUT_SECS,
};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::state::AppState;

/// Container ids are hex; names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Anything
/// else is refused before it reaches the engine.
pub(crate) fn check_ref(id_or_name: &str) -> ApiResult<()> {
    let ok = !id_or_name.is_empty()
        && id_or_name.len() <= 255
        && id_or_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && id_or_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_container_ref",
            format!("{id_or_name:?} is not a container id or name"),
        ))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only containers with this label (`key` or `key=value`); repeatable
    /// as a comma-separated list.
    pub label: Option<String>,
    /// Only containers in this state (running, exited, ...).
    pub state: Option<String>,
    /// Case-insensitive substring of the name or image.
    pub q: Option<String>,
}

/// All containers, running or not.
#[utoipa::path(
    get, path = "/api/v1/containers", tag = "containers",
    params(ListQuery),
    responses(
        (status = 200, body = [ContainerSummary]),
        (status = 503, description = "Docker is unreachable", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ContainerSummary>>> {
    let labels: Vec<String> = q
        .label
        .as_deref()
        .map(|l| {
            l.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut list = state.docker.list(&labels).await?;
    if let Some(s) = &q.state {
        list.retain(|c| &c.state == s);
    }
    if let Some(needle) = q.q.as_deref().map(str::to_lowercase) {
        list.retain(|c| {
            c.name.to_lowercase().contains(&needle) || c.image.to_lowercase().contains(&needle)
        });
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(list))
}

/// One container in detail.
#[utoipa::path(
    get, path = "/api/v1/containers/{id}", tag = "containers",
    params(("id" = String, Path, description = "Container id or name", pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length = 255)),
    responses(
        (status = 200, body = ContainerDetails),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn inspect(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<ContainerDetails>> {
    check_ref(&id)?;
    Ok(Json(state.docker.inspect(&id).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ActionQuery {
    /// Seconds to wait for a clean stop before the engine kills it, 0 to
    /// 3600 (stop and restart only; default `docker.stop_timeout`).
    pub timeout: Option<u32>,
}

/// The stop timeout of `action`, refused when out of range or given to an
/// action that does not stop anything.
fn stop_timeout(action: Action, q: &ActionQuery) -> ApiResult<Option<Duration>> {
    let Some(t) = q.timeout else {
        return Ok(None);
    };
    if !matches!(action, Action::Stop | Action::Restart) {
        return Err(ApiError::bad_request(
            "invalid_timeout",
            format!(
                "timeout applies to stop and restart, not {}",
                action.as_str()
            ),
        ));
    }
    if t > MAX_STOP_TIMEOUT_SECS {
        return Err(ApiError::bad_request(
            "invalid_timeout",
            format!("timeout={t} is above the maximum of {MAX_STOP_TIMEOUT_SECS} seconds"),
        ));
    }
    Ok(Some(Duration::from_secs(u64::from(t))))
}

/// The operations a `user` may run.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
    Pause,
    Unpause,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
        }
    }
}

/// Starts, stops, restarts, pauses or unpauses a container (role `user`
/// or above).
#[utoipa::path(
    post, path = "/api/v1/containers/{id}/{action}", tag = "containers",
    params(
        ("id" = String, Path, description = "Container id or name", pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length = 255),
        ("action" = Action, Path, description = "start, stop, restart, pause or unpause"),
        ActionQuery,
    ),
    responses(
        (status = 200, body = ActionOutcome),
        (status = 400, description = "`invalid_timeout`: above 3600 s, or given to start/pause/unpause", body = Problem),
        (status = 403, description = "Viewers may not operate containers", body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn act(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, action)): Path<(String, Action)>,
    Query(q): Query<ActionQuery>,
) -> ApiResult<Json<ActionOutcome>> {
    check_ref(&id)?;
    let timeout = stop_timeout(action, &q)?;
    let action_name = format!("container.{}", action.as_str());
    user.require_audited(&state, Role::User, &action_name, &id)
        .await?;
    let mut entry = user.audit_entry(&action_name, &id);
    if matches!(action, Action::Stop | Action::Pause) {
        if let Err(e) = crate::container_env::refuse_own(&state, &id, action.as_str()).await {
            entry.result = "failure".into();
            entry.detail = Some(e.to_string());
            state.audit(entry).await;
            return Err(e);
        }
    }
    // A stop asked for here is not a crash (the alerts plugin reads it).
    let by = format!("user:{}", user.username);
    let r = match action {
        Action::Start => state.docker.start(&id).await,
        Action::Stop => state.docker.stop_by(&id, timeout, &by).await,
        Action::Restart => state.docker.restart_by(&id, timeout, &by).await,
        Action::Pause => state.docker.pause(&id).await,
        Action::Unpause => state.docker.unpause(&id).await,
    };
    match &r {
        Ok(o) if !o.changed => entry.detail = Some("already in that state".into()),
        Ok(_) => {}
        Err(e) => {
            entry.result = "failure".into();
            entry.detail = Some(e.to_string());
        }
    }
    state.audit(entry).await;
    Ok(Json(r?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Kill and remove a running container.
    pub force: Option<bool>,
}

/// Removes a container (admin only).
#[utoipa::path(
    delete, path = "/api/v1/containers/{id}", tag = "containers",
    params(("id" = String, Path, description = "Container id or name", pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length = 255), RemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Running; use force=true", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    check_ref(&id)?;
    user.require_audited(&state, Role::Admin, "container.remove", &id)
        .await?;
    let mut entry = user.audit_entry("container.remove", &id);
    if let Err(e) = crate::container_env::refuse_own(&state, &id, "remove").await {
        entry.result = "failure".into();
        entry.detail = Some(e.to_string());
        state.audit(entry).await;
        return Err(e);
    }
    let r = state.docker.remove(&id, q.force.unwrap_or(false)).await;
    if let Err(e) = &r {
        entry.result = "failure".into();
        entry.detail = Some(e.to_string());
    }
    state.audit(entry).await;
    r?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Lines from the end (default 100; 0 for none).
    pub tail: Option<u32>,
    /// Keep the response open and stream new lines (Server-Sent Events).
    pub follow: Option<bool>,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    pub timestamps: Option<bool>,
}

/// Log lines. Without `follow`: a JSON array. With `follow=true`: a
/// `text/event-stream` whose events are named `stdout`/`stderr` and carry
/// one line each, until the container stops or the client leaves.
#[utoipa::path(
    get, path = "/api/v1/containers/{id}/logs", tag = "containers",
    params(("id" = String, Path, description = "Container id or name", pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length = 255), LogsQuery),
    responses(
        (status = 200, body = [LogLine], description = "Lines, or an event stream with follow=true"),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn logs(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    check_ref(&id)?;
    let follow = q.follow.unwrap_or(false);
    let stream = state
        .docker
        .logs(
            &id,
            Some(q.tail.unwrap_or(100)),
            follow,
            q.timestamps.unwrap_or(false),
        )
        .await?;
    if !follow {
        let lines: Vec<LogLine> = stream
            .take(100_000)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        return Ok(axum::Json(lines).into_response());
    }
    let events = stream.map(|r| match r {
        Ok(l) => Event::default().event(l.stream).data(l.line),
        Err(e) => Event::default().event("error").data(e.to_string()),
    });
    Ok(crate::http::sse::event_stream(events, &state.shutdown))
}

/// One resource sample (takes about a second: the engine measures CPU
/// over an interval).
#[utoipa::path(
    get, path = "/api/v1/containers/{id}/stats", tag = "containers",
    params(("id" = String, Path, description = "Container id or name", pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length = 255)),
    responses(
        (status = 200, body = ContainerStats),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<ContainerStats>> {
    check_ref(&id)?;
    Ok(Json(state.docker.stats(&id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_timeouts_are_bounded_and_only_for_stopping_actions() {
        let q = |t| ActionQuery { timeout: Some(t) };
        assert_eq!(
            stop_timeout(Action::Stop, &q(3600)).unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            stop_timeout(Action::Restart, &q(0)).unwrap(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            stop_timeout(Action::Stop, &ActionQuery::default()).unwrap(),
            None
        );
        for (action, t) in [
            (Action::Stop, 3601),
            // Read as a negative i32, which Docker takes as "wait forever".
            (Action::Stop, u32::MAX),
            (Action::Restart, 2_147_483_648),
            (Action::Start, 10),
            (Action::Pause, 10),
        ] {
            let e = stop_timeout(action, &q(t)).unwrap_err();
            assert_eq!(e.code(), "invalid_timeout", "{action:?} {t}");
        }
    }

    #[test]
    fn container_refs_are_checked() {
        assert!(check_ref("web-1").is_ok());
        assert!(check_ref("a1b2c3").is_ok());
        assert!(check_ref("my_app.v2").is_ok());
        assert!(check_ref("").is_err());
        assert!(check_ref("-rm").is_err());
        assert!(check_ref("../etc").is_err());
        assert!(check_ref("a b").is_err());
    }
}
