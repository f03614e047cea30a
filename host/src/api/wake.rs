//! `/api/v1/wake/*`: the API the Caddy bridge calls, authenticated with a
//! bridge token (not a user session). In progress (issue 4): the state
//! subscription is served; wake calls, activity and the waiting page come
//! with the wake plugin.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{bearer, same};
use crate::error::{ApiError, Problem};
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
        // Compare against every token, so timing says nothing about which.
        let ok = state
            .bridge_tokens
            .iter()
            .fold(false, |ok, t| same(t, token) | ok);
        if ok {
            Ok(BridgeCaller)
        } else {
            Err(ApiError::Unauthorized("unknown bridge token".into()))
        }
    }
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
            Ok(s) => Event::default()
                .event("state")
                .json_data(&s)
                .unwrap_or_else(|_| Event::default().comment("unencodable state")),
            Err(RecvError::Lagged(_)) => snapshot_event(hub.snapshot()),
            Err(RecvError::Closed) => return None,
        };
        Some((event, (rx, hub)))
    });
    let stream = futures::stream::once(async move { first })
        .chain(changes)
        .map(Ok::<_, Infallible>)
        .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keepalive"),
        )
        .into_response()
}
