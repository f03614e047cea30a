//! `/api/v1/services`: wake-on-request services for signed-in users. The
//! wake plugin holds the definitions, sessions and history; the state of
//! each service is the hub's (the same document the overview, the waiting
//! page and the bridges see). These handlers check the caller's role,
//! forward definitions to the plugin's internal routes, run wakes and
//! sleeps through the operation gate, and audit every change, manual wake
//! and sleep.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::AuthUser;
use crate::db::users::Role;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};
use crate::state::AppState;
use crate::wake::contract::{ErrorCode, ServiceList, ServiceView, Slept, Woken};
use crate::wake::{plugin, OpReason};
use wakedock_plugin_wake::service::ServiceDef;

/// The plugin's list with each service's state (and its members' phases)
/// taken from the hub.
async fn overlaid(state: &AppState) -> ApiResult<ServiceList> {
    let mut list: ServiceList =
        plugin::call(&state.plugins, "GET", "/services", Vec::new()).await?;
    for v in &mut list.services {
        overlay(state, v);
    }
    Ok(list)
}

fn overlay(state: &AppState, v: &mut ServiceView) {
    if let Some(doc) = state.wake.get(&v.service.name) {
        for m in &mut v.members {
            m.phase = doc.member(&m.name);
        }
        v.state = doc;
    }
}

/// Every service: its definition (after precedence), state, members,
/// session and recent wakes, plus definition errors.
#[utoipa::path(
    get, path = "/api/v1/services", tag = "services",
    responses(
        (status = 200, body = ServiceList),
        (status = 401, body = Problem),
        (status = 503, description = "The wake plugin is unavailable", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, _user: AuthUser) -> ApiResult<Json<ServiceList>> {
    Ok(Json(overlaid(&state).await?))
}

/// One service, as in the list.
#[utoipa::path(
    get, path = "/api/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, body = ServiceView),
        (status = 404, description = "`unknown_service`", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    overlaid(&state)
        .await?
        .services
        .into_iter()
        .find(|s| s.service.name == name)
        .map(Json)
        .ok_or_else(|| unknown(&name))
}

fn unknown(name: &str) -> ApiError {
    ApiError::Service {
        status: StatusCode::NOT_FOUND,
        code: ErrorCode::UnknownService,
        message: format!("no service named \"{name}\""),
        errors: Vec::new(),
    }
}

/// Runs a change through the plugin and audits it either way.
async fn audited<T>(
    state: &AppState,
    user: &AuthUser,
    role: Role,
    action: &str,
    target: &str,
    call: impl std::future::Future<Output = ApiResult<T>>,
) -> ApiResult<T> {
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
/// config file's shape (`name`, `members` or `selector`, `idle_timeout`...),
/// checked by the wake plugin: an invalid one gives 422 `invalid_service`
/// with `errors` naming each field (also for a field of the wrong type).
#[utoipa::path(
    post, path = "/api/v1/services", tag = "services",
    request_body = ServiceDef,
    responses(
        (status = 201, description = "The stored definition", body = ServiceDef),
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
) -> ApiResult<(StatusCode, Json<ServiceDef>)> {
    let name = body_name(&body);
    let v = audited(&state, &user, Role::Admin, "service.create", &name, async {
        Ok(plugin::call(
            &state.plugins,
            "POST",
            "/services",
            body.to_string().into_bytes(),
        )
        .await?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Replaces an API-defined service (admin).
#[utoipa::path(
    put, path = "/api/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body = ServiceDef,
    responses(
        (status = 200, description = "The stored definition", body = ServiceDef),
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
) -> ApiResult<Json<ServiceDef>> {
    let path = format!("/services/{name}");
    let v = audited(&state, &user, Role::Admin, "service.update", &name, async {
        Ok(plugin::call(&state.plugins, "PUT", &path, body.to_string().into_bytes()).await?)
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
        Ok(plugin::call_raw(&state.plugins, "DELETE", &path, Vec::new()).await?)
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
        (status = 200, body = Woken),
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
) -> ApiResult<Json<Woken>> {
    let v = audited(&state, &user, Role::User, "service.wake", &name, async {
        Ok(state.wake.ops.wake(&state, &name, OpReason::Manual).await?)
    })
    .await?;
    Ok(Json(v))
}

/// Puts a service to sleep now (user role and up), after any wake that
/// runs.
#[utoipa::path(
    post, path = "/api/v1/services/{name}/sleep", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses(
        (status = 200, body = Slept),
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
) -> ApiResult<Json<Slept>> {
    let v = audited(&state, &user, Role::User, "service.sleep", &name, async {
        state
            .wake
            .ops
            .sleep(&state, &name, OpReason::Manual)
            .await?
            .ok_or_else(|| ApiError::Service {
                status: StatusCode::CONFLICT,
                code: ErrorCode::NotIdle,
                message: format!("service \"{name}\" is being woken"),
                errors: Vec::new(),
            })
    })
    .await?;
    Ok(Json(v))
}
