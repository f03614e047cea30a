//! `GET /health`: is the host able to do its job right now.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    /// `up` or `down`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when every component is up, else `degraded`.
    pub status: &'static str,
    pub version: &'static str,
    pub database: ComponentHealth,
    /// `sqlite` or `postgres`.
    pub database_backend: &'static str,
    pub docker: ComponentHealth,
    /// Caddy sites from container labels: conflicts and label errors are
    /// reported here but do not make the host unhealthy.
    pub routes: RoutesHealth,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoutesHealth {
    /// `ok`, or `problems` when a host is claimed twice or labels are bad.
    pub status: &'static str,
    pub routes: usize,
    pub conflicts: usize,
    pub label_errors: usize,
    /// One sentence per conflict or label error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn routes_health(table: &crate::routes::RouteTable) -> RoutesHealth {
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
        problems,
    }
}

fn component(r: Result<(), String>) -> ComponentHealth {
    match r {
        Ok(()) => ComponentHealth {
            status: "up",
            error: None,
        },
        Err(e) => ComponentHealth {
            status: "down",
            error: Some(e),
        },
    }
}

/// Health of the database and the Docker engine; 503 when either is down.
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Everything is up", body = Health),
        (status = 503, description = "The database or Docker is down", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
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
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        database: component(db),
        database_backend: state.db.backend(),
        docker: component(docker),
        routes: routes_health(&state.routes.current()),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
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
