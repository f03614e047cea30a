//! `/api/v1/services`: wake-on-request services for signed-in users. The
//! wake plugin holds the definitions and sessions; these handlers check
//! the caller's role, forward to the plugin's internal routes and audit
//! every change, manual wake and sleep.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::AuthUser;
use crate::db::users::Role;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};
use crate::state::AppState;
use crate::wake::plugin;

/// Every service: its definition (after precedence), state, members,
/// session and recent wakes, plus definition errors.
#[utoipa::path(
    get, path = "/api/v1/services", tag = "services",
    responses(
        (status = 200, description = "`{\"services\":[{\"service\",\"state\",\"members\",\"session\",\"history\"}],\"errors\":[...],\"now_ms\"}`"),
        (status = 401, body = Problem),
        (status = 503, description = "The wake plugin is unavailable", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
) -> ApiResult<Json<serde_json::Value>> {
    let a = plugin::call(&state.plugins, "GET", "/services", Vec::new()).await?;
    Ok(Json(a.json()?))
}

/// One service, as in the list.
#[utoipa::path(
    get, path = "/api/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "`{\"service\",\"state\",\"members\",\"session\",\"history\"}`"),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let a = plugin::call(&state.plugins, "GET", "/services", Vec::new()).await?;
    let all = a.json()?;
    all.get("services")
        .and_then(|s| s.as_array())
        .and_then(|list| {
            list.iter()
                .find(|s| s.pointer("/service/name").and_then(|n| n.as_str()) == Some(&name))
        })
        .cloned()
        .map(Json)
        .ok_or_else(|| unknown(&name))
}

fn unknown(name: &str) -> ApiError {
    ApiError::Service {
        status: StatusCode::NOT_FOUND,
        code: "unknown_service",
        message: format!("no service named \"{name}\""),
        errors: None,
    }
}

/// Runs a change through the plugin and audits it either way.
async fn audited(
    state: &AppState,
    user: &AuthUser,
    role: Role,
    action: &str,
    target: &str,
    call: impl std::future::Future<Output = ApiResult<serde_json::Value>>,
) -> ApiResult<serde_json::Value> {
    user.require_audited(state, role, action, target).await?;
    let mut entry = user.audit_entry(action, target);
    let r = call.await;
    if let Err(e) = &r {
        entry.result = "failure".into();
        entry.detail = Some(e.to_string());
    }
    state.audit(entry).await;
    r
}

fn body_name(body: &serde_json::Value) -> String {
    body.get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Defines a service (admin). The body is a service definition in the
/// config file's shape (`name`, `members` or `selector`, `idle_timeout`...);
/// an invalid one gives 422 `invalid_service` with `errors` naming each
/// field.
#[utoipa::path(
    post, path = "/api/v1/services", tag = "services",
    responses(
        (status = 201, description = "The stored definition"),
        (status = 409, description = "`service_exists` or `defined_in_config`", body = Problem),
        (status = 422, description = "`invalid_service`", body = Problem),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let name = body_name(&body);
    let v = audited(&state, &user, Role::Admin, "service.create", &name, async {
        plugin::call(
            &state.plugins,
            "POST",
            "/services",
            body.to_string().into_bytes(),
        )
        .await?
        .json()
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Replaces an API-defined service (admin).
#[utoipa::path(
    put, path = "/api/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "The stored definition"),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 409, description = "`defined_in_config`", body = Problem),
        (status = 422, description = "`invalid_service`", body = Problem),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<serde_json::Value>> {
    let path = format!("/services/{name}");
    let v = audited(&state, &user, Role::Admin, "service.update", &name, async {
        plugin::call(&state.plugins, "PUT", &path, body.to_string().into_bytes())
            .await?
            .json()
    })
    .await?;
    Ok(Json(v))
}

/// Removes an API-defined service (admin). Its containers are left as
/// they are.
#[utoipa::path(
    delete, path = "/api/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 409, description = "`defined_in_config`", body = Problem),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let path = format!("/services/{name}");
    audited(&state, &user, Role::Admin, "service.delete", &name, async {
        plugin::call(&state.plugins, "DELETE", &path, Vec::new())
            .await?
            .json()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Wakes a service now and answers once it is ready (user role and up).
/// Shares the wake in flight, if any.
#[utoipa::path(
    post, path = "/api/v1/services/{name}/wake", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "`{\"service\",\"state\":\"awake\",\"waited_ms\"}`"),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 502, description = "`wake_failed`", body = Problem),
        (status = 504, description = "`wake_timeout`", body = Problem),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn wake(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let v = audited(&state, &user, Role::User, "service.wake", &name, async {
        state
            .wake
            .waker
            .wake(&state.plugins, &state.metrics.wake, &name)
            .await
    })
    .await?;
    Ok(Json(v))
}

/// Puts a service to sleep now (user role and up).
#[utoipa::path(
    post, path = "/api/v1/services/{name}/sleep", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "`{\"service\",\"state\":\"asleep\"}`"),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 409, description = "`not_sleepable`", body = Problem),
        (status = 502, description = "`sleep_failed`", body = Problem),
        (status = 403, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn sleep(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let path = format!("/sleep/{name}");
    let v = audited(&state, &user, Role::User, "service.sleep", &name, async {
        plugin::call(&state.plugins, "POST", &path, Vec::new())
            .await?
            .json()
    })
    .await?;
    Ok(Json(v))
}
