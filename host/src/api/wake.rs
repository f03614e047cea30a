//! `/api/v1/wake/*`: the API the Caddy bridge calls, authenticated with a
//! bridge token (not a user session): the state subscription, wake calls
//! (single-flight per service), activity reports, the waiting page and its
//! progress stream. The contract is in `docs/design/wake-on-request.md`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};

use crate::auth::{bearer, bridge_token_index};
use crate::error::{ApiError, Problem};
use crate::http::extract::{Json, Path};
use crate::http::sse::event_stream;
use crate::state::AppState;
use crate::wake::ServiceState;

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

fn state_event(s: &ServiceState) -> Event {
    Event::default()
        .event("state")
        .json_data(s)
        .unwrap_or_else(|_| Event::default().comment("unencodable state"))
}

fn snapshot_event(services: Vec<ServiceState>) -> Event {
    Event::default()
        .event("snapshot")
        .json_data(json!({ "services": services }))
        .unwrap_or_else(|_| Event::default().event("snapshot").data("{\"services\":[]}"))
}

/// Service states for the bridge: one `snapshot` event with every service,
/// then a `state` event per change; a `: keepalive` comment every 15 s.
/// A subscriber that falls behind gets a fresh snapshot.
#[utoipa::path(
    get, path = "/api/v1/wake/subscribe", tag = "wake",
    responses(
        (status = 200, description = "text/event-stream of `snapshot` and `state` events (ServiceState)", body = ServiceState),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn subscribe(State(state): State<AppState>, _bridge: BridgeCaller) -> Response {
    let hub = state.wake.clone();
    let rx = hub.subscribe();
    let first = snapshot_event(hub.snapshot());
    let changes = futures::stream::unfold((rx, hub), |(mut rx, hub)| async move {
        let event = match rx.recv().await {
            Ok(s) => state_event(&s),
            Err(RecvError::Lagged(_)) => snapshot_event(hub.snapshot()),
            Err(RecvError::Closed) => return None,
        };
        Some((event, (rx, hub)))
    });
    event_stream(
        futures::stream::once(async move { first }).chain(changes),
        &state.shutdown,
    )
}

/// The page a browser sees while its service wakes.
#[derive(Template)]
#[template(path = "waiting.html")]
struct WaitingPage<'a> {
    title: &'a str,
    state: &'a str,
    message: &'a str,
    /// Where the page listens for progress: on the site's own origin, which
    /// the bridge proxies to `/api/v1/wake/{service}/events`.
    events_url: String,
    /// `auto` (follows the system), `light` or `dark`.
    theme: &'a str,
    members: &'a [crate::wake::MemberProgress],
}

fn known(state: &AppState, service: &str) -> Result<ServiceState, ApiError> {
    state
        .wake
        .get(service)
        .ok_or_else(|| ApiError::NotFound(format!("unknown service {service:?}")))
}

/// The waiting page for `service` (the bridge serves it to browsers in
/// `dynamic` mode). It follows the service's progress and reloads itself
/// once the service is awake; without JavaScript it reloads every 3 s.
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
    let message = match s.state.as_str() {
        "failed" => format!(
            "Could not start: {}",
            s.reason.as_deref().unwrap_or("unknown error")
        ),
        "waking" => "Waking up…".to_string(),
        _ => "Waiting for it to start…".to_string(),
    };
    let html = WaitingPage {
        title: s.display_name.as_deref().unwrap_or(&s.service),
        state: &s.state,
        message: &message,
        events_url: format!("/.wakedock/{}/events", s.service),
        theme: match s.theme.as_deref() {
            Some("light") => "light",
            Some("dark") => "dark",
            _ => "auto",
        },
        members: &s.members,
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

/// Progress of one service for its waiting page: its current state as a
/// `state` event, then each change, until the client leaves.
#[utoipa::path(
    get, path = "/api/v1/wake/{service}/events", tag = "wake",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "text/event-stream of `state` events", body = ServiceState),
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
    let hub = state.wake.clone();
    let rx = hub.subscribe();
    let current = known(&state, &service)?;
    let first = state_event(&current);
    let changes = futures::stream::unfold(
        (rx, hub, service),
        move |(mut rx, hub, service)| async move {
            loop {
                match rx.recv().await {
                    Ok(s) if s.service == service => {
                        let ev = state_event(&s);
                        return Some((ev, (rx, hub, service)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        let s = hub.get(&service)?;
                        return Some((state_event(&s), (rx, hub, service)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok(event_stream(
        futures::stream::once(async move { first }).chain(changes),
        &state.shutdown,
    ))
}

/// The answer to a wake: the service is ready.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Woken {
    pub service: String,
    /// Always `awake`.
    pub state: String,
    /// How long the wake call that did the work took.
    pub waited_ms: u64,
}

/// Wakes a service and answers once it is ready (or its wake timeout has
/// passed). Concurrent calls for one service share one start sequence.
#[utoipa::path(
    post, path = "/api/v1/wake/{service}", tag = "wake",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "Ready", body = Woken),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 502, description = "`wake_failed`: a member could not start", body = Problem),
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
) -> Result<Json<serde_json::Value>, ApiError> {
    let v = state
        .wake
        .waker
        .wake(&state.plugins, &state.metrics.wake, &service)
        .await?;
    Ok(Json(v))
}

/// Activity counts of one service in a bridge's batch.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityCounts {
    /// Requests since the previous report.
    #[serde(default)]
    pub requests: u64,
    /// Long-lived connections open now (WebSocket, SSE, streaming).
    #[serde(default)]
    pub open_connections: u64,
}

/// A bridge's activity batch.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityReport {
    pub services: std::collections::BTreeMap<String, ActivityCounts>,
}

/// Activity since the bridge's last report: extends sessions; open
/// connections keep a service awake while they are reported.
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
    Json(report): Json<ActivityReport>,
) -> Result<StatusCode, ApiError> {
    let body = serde_json::to_vec(&report).map_err(ApiError::internal)?;
    crate::wake::plugin::call(&state.plugins, "POST", "/activity", body).await?;
    Ok(StatusCode::NO_CONTENT)
}
