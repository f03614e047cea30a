//! `/api/v1/wake/*`: the API the Caddy bridge calls, authenticated with a
//! bridge token (not a user session): the state subscription, wake calls
//! (through the operation gate), activity reports, the waiting page and its
//! progress stream. Every answer is read from the hub or typed by the wake
//! contract; a name the hub does not know is a 404 before any metric or
//! plugin call. The contract is in `docs/design/wake-on-request.md`.

use std::time::Duration;

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{bearer, bridge_token_index};
use crate::error::{ApiError, Problem};
use crate::http::extract::{Json, Path};
use crate::http::sse::event_stream;
use crate::state::AppState;
use crate::wake::contract::{ActivityReport, Snapshot, Woken};
use crate::wake::{Change, MemberPhase, MemberProgress, OpReason, ServiceState, StateName};

/// A request from a Caddy bridge holding a valid bridge token.
#[derive(Debug)]
pub struct BridgeCaller;

impl FromRequestParts<AppState> for BridgeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.bridge_tokens.is_empty() {
            return Err(ApiError::Unauthorized(
                "no bridge token is configured: set security.bridge_tokens or WAKEDOCK_BRIDGE_TOKEN"
                    .into(),
            ));
        }
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("send the bridge token as a bearer token".into())
        })?;
        if bridge_token_index(&state.bridge_tokens, token).is_some() {
            Ok(BridgeCaller)
        } else {
            Err(ApiError::Unauthorized("unknown bridge token".into()))
        }
    }
}

fn json_event(name: &'static str, v: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(v)
        .unwrap_or_else(|_| Event::default().comment("unencodable event"))
}

fn snapshot_event(services: Vec<ServiceState>) -> Event {
    json_event("snapshot", &Snapshot { services })
}

/// Service states for the bridge: one `snapshot` event with every service,
/// then a `state` event per change (and a fresh snapshot when a service is
/// removed, or the subscriber fell behind); `: keepalive` every 15 s.
#[utoipa::path(
    get, path = "/api/v1/wake/subscribe", tag = "wake",
    responses(
        (status = 200, description = "`snapshot` (Snapshot), then `state` (ServiceState) events", body = Snapshot, content_type = "text/event-stream"),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn subscribe(State(state): State<AppState>, _bridge: BridgeCaller) -> Response {
    let hub = state.wake.clone();
    // Counted while the stream lives (the services page shows it).
    let connected = hub.bridge_connected();
    let rx = hub.subscribe();
    let first = snapshot_event(hub.snapshot());
    let changes = futures::stream::unfold((rx, hub), |(mut rx, hub)| async move {
        let event = match rx.recv().await {
            Ok(Change::State(s)) => json_event("state", &s),
            Ok(Change::Removed(_)) | Err(RecvError::Lagged(_)) => snapshot_event(hub.snapshot()),
            Err(RecvError::Closed) => return None,
        };
        Some((event, (rx, hub)))
    });
    let events = futures::stream::once(async move { first })
        .chain(changes)
        .map(move |e| {
            let _ = &connected;
            e
        });
    event_stream(events, &state.shutdown)
}

/// The last log lines of a member a failed wake names.
#[derive(Debug, Clone, Serialize)]
pub struct FailureLogs {
    pub member: String,
    pub lines: Vec<String>,
}

/// Log lines shown for a failed wake.
const FAILURE_LOG_LINES: u32 = 20;

/// For a failed service: the member to blame (the one that failed, else
/// one still starting when time ran out, else one stopped outside
/// WakeDock) and its last log lines, read from Docker.
async fn failure_logs(state: &AppState, s: &ServiceState) -> Option<FailureLogs> {
    if s.state != StateName::Failed {
        return None;
    }
    let pick = |phase| s.members.iter().find(|m| m.status == phase);
    let member = pick(MemberPhase::Failed)
        .or_else(|| pick(MemberPhase::Starting))
        .or_else(|| pick(MemberPhase::Stopped))?
        .name
        .clone();
    let read = async {
        let stream = state
            .docker
            .logs(&member, Some(FAILURE_LOG_LINES), false, false)
            .await
            .ok()?;
        let lines: Vec<_> = stream.take(FAILURE_LOG_LINES as usize).collect().await;
        Some(
            lines
                .into_iter()
                .filter_map(Result::ok)
                .map(|l| l.line)
                .collect::<Vec<_>>(),
        )
    };
    let lines = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()?;
    Some(FailureLogs { member, lines })
}

/// The page a browser sees while its service wakes (or after its wake
/// failed).
#[derive(Template)]
#[template(path = "waiting.html")]
struct WaitingPage<'a> {
    title: &'a str,
    state: &'a str,
    failed: bool,
    message: String,
    /// Where the page listens for progress: on the site's own origin, which
    /// the bridge proxies to `/api/v1/wake/{service}/events`.
    events_url: String,
    /// `auto` (follows the system), `light` or `dark`.
    theme: &'a str,
    members: &'a [MemberProgress],
    logs: Option<FailureLogs>,
}

fn known(state: &AppState, service: &str) -> Result<ServiceState, ApiError> {
    state
        .wake
        .get(service)
        .ok_or_else(|| ApiError::NotFound(format!("unknown service {service:?}")))
}

/// The waiting page for `service` (the bridge serves it to browsers in
/// `dynamic` mode). It follows the service's progress and reloads itself
/// once the service is awake; without JavaScript it reloads every 3 s. A
/// failed wake shows its reason, the member's last log lines and a retry
/// button (a reload: the bridge starts a wake for a service not awake).
#[utoipa::path(
    get, path = "/api/v1/wake/{service}/page", tag = "wake",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "text/html waiting page", content_type = "text/html"),
        (status = 404, description = "Unknown service", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn page(
    State(state): State<AppState>,
    _bridge: BridgeCaller,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let s = known(&state, &service)?;
    let failed = s.state == StateName::Failed;
    let message = match s.state {
        StateName::Failed => format!(
            "Could not start: {}",
            s.reason.as_deref().unwrap_or("unknown error")
        ),
        StateName::Waking => "Waking up…".to_string(),
        _ => "Waiting for it to start…".to_string(),
    };
    let html = WaitingPage {
        title: &s.display_name,
        state: s.state.as_str(),
        failed,
        message,
        events_url: format!("/.wakedock/{}/events", s.service),
        theme: match s.theme.as_deref() {
            Some("light") => "light",
            Some("dark") => "dark",
            _ => "auto",
        },
        members: &s.members,
        logs: failure_logs(&state, &s).await,
    }
    .render()
    .map_err(ApiError::internal)?;
    let mut res = (StatusCode::OK, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page is self-contained: its own inline style and script, and a
    // connection back to its own origin for progress. Nothing else.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    Ok(res)
}

/// The `state` event of `s`, followed by a `logs` event (FailureLogs) when
/// it is a failure with a member to blame.
async fn progress_events(state: &AppState, s: &ServiceState) -> Vec<Event> {
    let mut out = vec![json_event("state", s)];
    if let Some(logs) = failure_logs(state, s).await {
        out.push(json_event("logs", &logs));
    }
    out
}

/// Progress of one service for its waiting page: its current state as a
/// `state` event, then each change (a failure with a `logs` event: the
/// failed member's last log lines), until the client leaves or the service
/// is removed.
#[utoipa::path(
    get, path = "/api/v1/wake/{service}/events", tag = "wake",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "`state` (ServiceState) and `logs` events", body = ServiceState, content_type = "text/event-stream"),
        (status = 404, description = "Unknown service", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    _bridge: BridgeCaller,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let rx = state.wake.subscribe();
    let current = known(&state, &service)?;
    let first = progress_events(&state, &current).await;
    let changes = futures::stream::unfold(
        (rx, state.clone(), service),
        move |(mut rx, state, service)| async move {
            loop {
                let doc = match rx.recv().await {
                    Ok(Change::State(s)) if s.service == service => s,
                    Ok(Change::Removed(name)) if name == service => return None,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => state.wake.get(&service)?,
                    Err(RecvError::Closed) => return None,
                };
                let evs = progress_events(&state, &doc).await;
                return Some((futures::stream::iter(evs), (rx, state, service)));
            }
        },
    )
    .flatten();
    Ok(event_stream(
        futures::stream::iter(first).chain(changes),
        &state.shutdown,
    ))
}

/// Wakes a service and answers once it is ready (or its wake timeout has
/// passed). Concurrent calls for one service share one wake; a wake asked
/// for while the service goes to sleep starts right after.
#[utoipa::path(
    post, path = "/api/v1/wake/{service}", tag = "wake",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "Ready", body = Woken),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 502, description = "`wake_failed`: a member could not start; `plugin_error`: the wake plugin failed", body = Problem),
        (status = 503, description = "The wake plugin or Docker is unavailable", body = Problem),
        (status = 504, description = "`wake_timeout`", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn wake(
    State(state): State<AppState>,
    _bridge: BridgeCaller,
    Path(service): Path<String>,
) -> Result<Json<Woken>, ApiError> {
    let w = state
        .wake
        .ops
        .wake(&state, &service, OpReason::Request)
        .await?;
    Ok(Json(w))
}

/// Activity since the bridge's last report: extends sessions; open
/// connections keep a service awake while they are reported. Names the
/// hub does not know are left out.
#[utoipa::path(
    post, path = "/api/v1/wake/activity", tag = "wake",
    request_body = ActivityReport,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, body = Problem),
        (status = 401, body = Problem),
        (status = 503, description = "The wake plugin is unavailable", body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn activity(
    State(state): State<AppState>,
    _bridge: BridgeCaller,
    Json(mut report): Json<ActivityReport>,
) -> Result<StatusCode, ApiError> {
    report.services.retain(|name, _| state.wake.knows(name));
    if report.services.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let body = serde_json::to_vec(&report).map_err(ApiError::internal)?;
    crate::wake::plugin::call_raw(&state.plugins, "POST", "/activity", body).await?;
    Ok(StatusCode::NO_CONTENT)
}
