//! `GET /health`: is the host able to do its job right now.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::error::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    /// `up` or `down`.
    #[schema(value_type = String, pattern = "^(up|down)$")]
    pub status: &'static str,
    /// Why it is down: shown to admins only (it names sockets, hosts and
    /// paths); absent for everyone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when every component is up, else `degraded`.
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    pub version: &'static str,
    pub database: ComponentHealth,
    /// `sqlite`, `postgres` or `mysql` (MySQL or MariaDB).
    #[schema(value_type = String, pattern = "^(sqlite|postgres|mysql)$")]
    pub database_backend: &'static str,
    /// The database's size on disk in bytes: shown to admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_size_bytes: Option<i64>,
    pub docker: ComponentHealth,
    /// Caddy sites from container labels: conflicts and label errors are
    /// reported here but do not make the host unhealthy.
    pub routes: RoutesHealth,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoutesHealth {
    /// `ok`, or `problems` when a host is claimed twice or labels are bad.
    #[schema(value_type = String, pattern = "^(ok|problems)$")]
    pub status: &'static str,
    pub routes: usize,
    pub conflicts: usize,
    pub label_errors: usize,
    /// One sentence per conflict or label error: shown to admins only
    /// (they name containers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn routes_health(table: &crate::routes::RouteTable, details: bool) -> RoutesHealth {
    let problems = table.problems();
    RoutesHealth {
        status: if problems.is_empty() {
            "ok"
        } else {
            "problems"
        },
        routes: table.set.routes.len(),
        conflicts: table.set.conflicts.len(),
        label_errors: table.set.errors.len(),
        problems: if details { problems } else { Vec::new() },
    }
}

fn component(r: Result<(), String>, details: bool) -> ComponentHealth {
    match r {
        Ok(()) => ComponentHealth {
            status: "up",
            error: None,
        },
        Err(e) => ComponentHealth {
            status: "down",
            error: details.then_some(e),
        },
    }
}

/// Health of the database and the Docker engine; 503 when either is down.
/// Anyone sees the states; why a component is down only an admin sees
/// (send the admin's bearer token or session cookie).
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Everything is up", body = Health),
        (status = 503, description = "The database or Docker is down", body = Health,
            headers(("Retry-After" = u32, description = "Seconds before asking again"))),
    ),
    security((), ("bearer" = []))
)]
pub async fn health(
    State(state): State<AppState>,
    parts: http::request::Parts,
) -> impl IntoResponse {
    // An invalid or missing credential is no reason to refuse the states.
    let details = match crate::auth::authenticate(&parts, &state, None).await {
        Ok(user) => user.role >= crate::db::users::Role::Admin,
        Err(_) => false,
    };
    let timeout = Duration::from_secs(2);
    let (db, docker) = tokio::join!(
        async {
            match tokio::time::timeout(timeout, state.db.ping()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("database ping timed out".to_string()),
            }
        },
        async { state.docker.ping(timeout).await.map_err(|e| e.to_string()) },
    );
    let ok = db.is_ok() && docker.is_ok();
    let size = if details && db.is_ok() {
        state.metrics.data.refresh_size(&state.db).await
    } else {
        None
    };
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        database: component(db, details),
        database_backend: state.db.backend(),
        database_size_bytes: size,
        docker: component(docker, details),
        routes: routes_health(&state.routes.current(), details),
    };
    if ok {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, "5")],
            axum::Json(body),
        )
            .into_response()
    }
}

/// Prometheus metrics in the text exposition format. Open unless
/// `security.metrics_token` is set; then only with that bearer token.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "`security.metrics_token` is set and was not sent", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("metrics" = []))
)]
pub async fn metrics(State(state): State<AppState>, headers: http::HeaderMap) -> impl IntoResponse {
    if let Some(want) = &state.config.security.metrics_token {
        let sent = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !sent.is_some_and(|t| crate::auth::same(t, want)) {
            return crate::error::ApiError::Unauthorized(
                "send the metrics token (security.metrics_token) as a bearer token".into(),
            )
            .into_response();
        }
    }
    state.metrics.data.refresh_size(&state.db).await;
    // Container counts are read at scrape time: cheap, and never stale.
    if let Ok(list) = state.docker.list(&[]).await {
        let states: Vec<String> = list.into_iter().map(|c| c.state).collect();
        state.metrics.set_containers(&states);
    }
    match state.metrics.render() {
        Ok(text) => (
            StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}
