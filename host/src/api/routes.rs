//! `/api/v1/routes`: the sites generated from `wakedock.host` labels
//! ([`crate::routes`]). Users read the table with its conflicts and label
//! errors; Caddy bridges (bridge token) subscribe to it and route by Host
//! header from their copy.

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::Response;
use futures::StreamExt;
use serde::Serialize;

use crate::api::wake::BridgeCaller;
use crate::auth::AuthUser;
use crate::error::{ApiResult, Problem};
use crate::http::extract::Json;
use crate::http::sse::event_stream;
use crate::routes::RouteTable;
use crate::state::AppState;

/// One generated site.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteView {
    /// Lowercase host name.
    pub host: String,
    /// The service a request wakes; absent for a plain proxy.
    pub service: Option<String>,
    /// Dial addresses (`host:port`), one per container.
    pub upstreams: Vec<String>,
    pub containers: Vec<String>,
}

/// A host claimed twice: the older claim keeps the route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteConflictView {
    pub host: String,
    pub kept: Vec<String>,
    pub refused: String,
    pub message: String,
}

/// A container whose route labels are invalid (it gets no route).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteLabelError {
    pub service: String,
    /// The label at fault, e.g. `wakedock.port`.
    pub field: String,
    pub message: String,
}

/// The route table.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Routes {
    /// Whether the engine has been listed yet.
    pub loaded: bool,
    /// Bumped on every change.
    pub generation: u64,
    /// Why the last listing failed (the table keeps its last contents).
    pub engine_error: Option<String>,
    pub routes: Vec<RouteView>,
    pub conflicts: Vec<RouteConflictView>,
    pub errors: Vec<RouteLabelError>,
}

impl From<&RouteTable> for Routes {
    fn from(t: &RouteTable) -> Self {
        Routes {
            loaded: t.loaded,
            generation: t.generation,
            engine_error: t.engine_error.clone(),
            routes: t
                .set
                .routes
                .iter()
                .map(|r| RouteView {
                    host: r.host.clone(),
                    service: r.service.clone(),
                    upstreams: r.upstreams.clone(),
                    containers: r.containers.clone(),
                })
                .collect(),
            conflicts: t
                .set
                .conflicts
                .iter()
                .map(|c| RouteConflictView {
                    host: c.host.clone(),
                    kept: c.kept.clone(),
                    refused: c.refused.clone(),
                    message: c.message.clone(),
                })
                .collect(),
            errors: t
                .set
                .errors
                .iter()
                .map(|e| RouteLabelError {
                    service: e.service.clone(),
                    field: e.field.clone(),
                    message: e.to_string(),
                })
                .collect(),
        }
    }
}

/// Sites generated from container labels, with conflicts and label errors.
#[utoipa::path(
    get, path = "/api/v1/routes", tag = "routes",
    responses(
        (status = 200, body = Routes),
        (status = 401, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Json<Routes>> {
    Ok(Json(Routes::from(&*state.routes.current())))
}

/// What a bridge needs of one route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BridgeRoute {
    pub host: String,
    /// Empty for a plain proxy (nothing to wake).
    pub service: String,
    pub upstreams: Vec<String>,
}

/// The whole table, sent on connect and after every change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BridgeRoutes {
    /// Bumped on every change.
    pub generation: u64,
    /// False until the host has listed the engine once: a bridge keeps its
    /// previous table rather than dropping every route.
    pub loaded: bool,
    pub routes: Vec<BridgeRoute>,
}

fn routes_event(t: &RouteTable) -> Event {
    let body = BridgeRoutes {
        generation: t.generation,
        loaded: t.loaded,
        routes: t
            .set
            .routes
            .iter()
            .map(|r| BridgeRoute {
                host: r.host.clone(),
                service: r.service.clone().unwrap_or_default(),
                upstreams: r.upstreams.clone(),
            })
            .collect(),
    };
    Event::default()
        .event("routes")
        .json_data(body)
        .unwrap_or_else(|_| Event::default().comment("unencodable routes"))
}

/// The route table for a Caddy bridge: a `routes` event with the whole
/// table at once and after every change; `: keepalive` every 15 s.
#[utoipa::path(
    get, path = "/api/v1/routes/subscribe", tag = "routes",
    responses(
        (status = 200, description = "`routes` events", body = BridgeRoutes, content_type = "text/event-stream"),
        (status = 401, body = Problem),
    ),
    security(("bridge" = []))
)]
pub async fn subscribe(State(state): State<AppState>, _bridge: BridgeCaller) -> Response {
    let rx = state.routes.subscribe();
    // `changed()` after `borrow_and_update()`: the first item is the table
    // as it is now, then one per change (intermediate ones may be skipped,
    // which is fine: each event is the whole table).
    let tables = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let t = rx.borrow_and_update().clone();
        Some((routes_event(&t), (rx, false)))
    });
    event_stream(tables.boxed(), &state.shutdown)
}
