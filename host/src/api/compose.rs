//! `GET /api/v1/compose/{project}/output`: the live output of a Compose
//! stack's actions (issue 11), for the API and the browser alike (the
//! host's page script renders it for a plugin page's
//! `data-compose-output` element). A client that joins late first gets the
//! running (or last) action and its last lines.

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::Response;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use wakedock_plugin_runtime::caps::ActionStatus;

use crate::auth::AuthUser;
use crate::error::{ApiError, Problem};
use crate::http::extract::Path;
use crate::http::sse::event_stream;
use crate::stacks::actions::ProjectEvent;
use crate::stacks::state_name;
use crate::state::AppState;

/// An action as the stream shows it (`action` events).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    pub id: String,
    pub project: String,
    /// `up`, `pull`, `start`, `stop`, `restart`, `down`.
    pub kind: String,
    pub command: String,
    /// `running`, `succeeded`, `failed`, `timed-out`.
    pub state: String,
    pub exit_code: Option<i32>,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub started_by: Option<String>,
    /// Lines left out before the replayed ones.
    pub lines_dropped: u64,
}

impl From<&ActionStatus> for ActionView {
    fn from(s: &ActionStatus) -> Self {
        ActionView {
            id: s.id.clone(),
            project: s.project.clone(),
            kind: s.kind.clone(),
            command: s.command.clone(),
            state: state_name(s.state).to_owned(),
            exit_code: s.exit_code,
            started_at_ms: s.started_at_ms,
            finished_at_ms: s.finished_at_ms,
            started_by: s.started_by.clone(),
            lines_dropped: s.lines_dropped,
        }
    }
}

/// One output line (`line` events).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineView<'a> {
    pub id: &'a str,
    pub line: &'a str,
}

fn action_event(s: &ActionStatus) -> Event {
    Event::default()
        .event("action")
        .json_data(ActionView::from(s))
        .unwrap_or_default()
}

fn line_event(id: &str, line: &str) -> Event {
    Event::default()
        .event("line")
        .json_data(LineView { id, line })
        .unwrap_or_default()
}

/// Live output of a stack's Compose actions: an `action` event (the
/// running or last action) and its last lines as `line` events, then every
/// new action's `action` event (at its start and end) and `line`s.
#[utoipa::path(
    get, path = "/api/v1/compose/{project}/output", tag = "stacks",
    params(("project" = String, Path, description = "Stack (Compose project) name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "`action` (ActionView) and `line` (LineView) events", body = ActionView, content_type = "text/event-stream"),
        (status = 400, description = "Not a stack name", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn output(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    wakedock_plugin_runtime::check_project_name(&project)
        .map_err(|m| ApiError::bad_request("invalid_path", m))?;
    let (replay, rx) = state.compose.actions().watch(&project);
    let mut first = Vec::new();
    if let Some(s) = &replay {
        first.push(action_event(s));
        first.extend(s.lines.iter().map(|l| line_event(&s.id, l)));
    }
    let live = futures::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(ProjectEvent::Started(s)) | Ok(ProjectEvent::Finished(s)) => action_event(&s),
            Ok(ProjectEvent::Line { id, line }) => line_event(&id, &line),
            Err(RecvError::Lagged(n)) => Event::default()
                .event("line")
                .json_data(LineView {
                    id: "",
                    line: &format!("({n} lines skipped: this client fell behind)"),
                })
                .unwrap_or_default(),
            Err(RecvError::Closed) => return None,
        };
        Some((ev, rx))
    });
    Ok(event_stream(
        futures::stream::iter(first).chain(live),
        &state.shutdown,
    ))
}
