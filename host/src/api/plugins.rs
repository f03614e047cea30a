//! `/api/v1/plugins`: install, inspect, configure and remove plugins
//! (admin), and the plugins' own HTTP routes under
//! `/api/v1/plugins/{name}/...` (any signed-in user; the plugin sees who).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use wakedock_plugin_runtime::caps::{AuthContext, HttpRequest, Role as PluginRole};
use wakedock_plugin_runtime::RuntimeError;

use crate::auth::AuthUser;
use crate::db::audit::NewAuditEntry;
use crate::db::users::Role;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::plugins::{GrantSpec, PluginInfo, PluginPackage, Source};
use crate::state::AppState;

/// A plugin package to install: the manifest text and the component.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// The `plugin.toml`, as text.
    pub manifest: String,
    /// The component `.wasm`, base64-encoded.
    pub wasm_base64: String,
    /// `"all"` to approve what the manifest requests, or an explicit grant
    /// (`{"capabilities": {...}, "limits": {...}}`). Required to install:
    /// an admin must see and approve what a plugin asks for.
    pub grant: Option<GrantSpec>,
    /// Overrides of the manifest's `[config]`.
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InstallQuery {
    /// Validate and show what the plugin requests, without installing.
    pub dry_run: Option<bool>,
}

/// What a package is and asks for (the grant screen).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PackagePreview {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub description: String,
    pub author: Option<String>,
    #[schema(value_type = Object)]
    pub requested: serde_json::Value,
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    pub tick_interval: Option<String>,
    pub sha256: String,
    /// Whether a plugin of this name is installed (installing upgrades it).
    pub upgrade_of: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlugin {
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    pub grant: Option<GrantSpec>,
}

async fn finish<T>(
    state: &AppState,
    mut entry: NewAuditEntry,
    r: Result<T, crate::plugins::PluginError>,
) -> ApiResult<T> {
    if let Err(e) = &r {
        entry.result = "failure".into();
        entry.detail = Some(e.to_string());
    }
    state.audit(entry).await;
    Ok(r?)
}

/// Installed plugins with their grants and runtime status.
#[utoipa::path(
    get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = [PluginInfo]), (status = 403, body = Problem)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<PluginInfo>>> {
    user.require(Role::Admin)?;
    Ok(Json(state.plugins.list().await?))
}

/// Installs (or upgrades) a plugin at runtime. With `dry_run=true`, only
/// validates the package and returns what it requests.
#[utoipa::path(
    post, path = "/api/v1/plugins", tag = "plugins",
    params(InstallQuery),
    request_body = InstallRequest,
    responses(
        (status = 201, body = PluginInfo, description = "Installed"),
        (status = 200, body = PackagePreview, description = "dry_run: what the package is and requests"),
        (status = 400, description = "Bad manifest, incompatible API version, invalid component, grant missing or too wide", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn install(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<InstallQuery>,
    Json(req): Json<InstallRequest>,
) -> ApiResult<Response> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(req.wasm_base64.trim())
        .map_err(|e| ApiError::bad_request("invalid_body", format!("wasm_base64: {e}")))?;
    let package = PluginPackage {
        manifest_toml: req.manifest,
        wasm,
    };
    if q.dry_run.unwrap_or(false) {
        let preview = preview(&state, &user, &package).await?;
        return Ok(axum::Json(preview).into_response());
    }
    let info = install_package(&state, &user, package, req.grant, req.config, req.enabled).await?;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

/// What a package is and requests (admin only): the grant screen's
/// content, for the API's `dry_run` and the UI.
pub async fn preview(
    state: &AppState,
    user: &AuthUser,
    package: &PluginPackage,
) -> ApiResult<PackagePreview> {
    let manifest = package.manifest().map_err(ApiError::from)?;
    user.require_audited(state, Role::Admin, "plugin.install", &manifest.name)
        .await?;
    // Nothing is shown for a package that could not be installed: the
    // component must compile and import only what the manifest requests.
    state
        .plugins
        .runtime()
        .validate(&manifest, &package.wasm)
        .await
        .map_err(|e| ApiError::bad_request("plugin_rejected", e.to_string()))?;
    let upgrade_of = state
        .plugins
        .info(&manifest.name)
        .await
        .ok()
        .map(|p| p.version);
    Ok(PackagePreview {
        requested: serde_json::to_value(&manifest.capabilities).unwrap_or_default(),
        limits: serde_json::to_value(&manifest.limits).unwrap_or_default(),
        sha256: wakedock_plugin_runtime::sha256_hex(&package.wasm),
        name: manifest.name,
        version: manifest.version,
        api_version: manifest.api_version,
        description: manifest.description,
        author: manifest.author,
        tick_interval: manifest.tick_interval,
        upgrade_of,
    })
}

/// Installs (or upgrades) a package with the admin's grant, audited.
pub async fn install_package(
    state: &AppState,
    user: &AuthUser,
    package: PluginPackage,
    grant: Option<GrantSpec>,
    config: Option<serde_json::Value>,
    enabled: Option<bool>,
) -> ApiResult<PluginInfo> {
    let manifest = package.manifest().map_err(ApiError::from)?;
    user.require_audited(state, Role::Admin, "plugin.install", &manifest.name)
        .await?;
    let Some(grant) = grant else {
        return Err(ApiError::bad_request(
            "grant_required",
            format!(
                "plugin `{}` requests {}; send \"grant\": \"all\" or an explicit grant to install it",
                manifest.name,
                serde_json::to_string(&manifest.capabilities).unwrap_or_default()
            ),
        ));
    };
    let mut entry = user.audit_entry("plugin.install", &manifest.name);
    entry.detail = Some(format!(
        "version {}, grant {}",
        manifest.version,
        serde_json::to_string(&grant).unwrap_or_default()
    ));
    let r = state
        .plugins
        .install(
            package,
            &grant,
            config,
            enabled.unwrap_or(true),
            Source::Api,
        )
        .await;
    finish(state, entry, r).await
}

/// One plugin.
#[utoipa::path(
    get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<PluginInfo>> {
    user.require(Role::Admin)?;
    Ok(Json(state.plugins.info(&name).await?))
}

/// Enables, disables, reconfigures or re-grants a plugin, at runtime.
#[utoipa::path(
    patch, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    request_body = UpdatePlugin,
    responses(
        (status = 200, body = PluginInfo),
        (status = 400, body = Problem),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    Json(req): Json<UpdatePlugin>,
) -> ApiResult<Json<PluginInfo>> {
    user.require_audited(&state, Role::Admin, "plugin.update", &name)
        .await?;
    if req.enabled.is_none() && req.config.is_none() && req.grant.is_none() {
        // Nothing to change: the plugin as it is.
        return Ok(Json(state.plugins.info(&name).await?));
    }
    let mut entry = user.audit_entry("plugin.update", &name);
    entry.detail = Some(
        [
            req.enabled.map(|e| format!("enabled={e}")),
            req.config.as_ref().map(|_| "config changed".to_string()),
            req.grant
                .as_ref()
                .map(|g| format!("grant {}", serde_json::to_string(g).unwrap_or_default())),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    );
    let r = async {
        if req.config.is_some() || req.grant.is_some() {
            state
                .plugins
                .reconfigure(&name, req.config.clone(), req.grant.as_ref())
                .await?;
        }
        match req.enabled {
            Some(e) => state.plugins.set_enabled(&name, e).await,
            None => state.plugins.info(&name).await,
        }
    }
    .await;
    Ok(Json(finish(&state, entry, r).await?))
}

/// Uninstalls a plugin: unloads it and deletes its files and storage.
#[utoipa::path(
    delete, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    user.require_audited(&state, Role::Admin, "plugin.remove", &name)
        .await?;
    let entry = user.audit_entry("plugin.remove", &name);
    let r = state.plugins.remove(&name).await;
    finish(&state, entry, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn plugin_role(role: Role) -> (PluginRole, Vec<String>) {
    match role {
        Role::Viewer => (PluginRole::Viewer, vec!["containers:read".into()]),
        Role::User => (
            PluginRole::User,
            vec!["containers:read".into(), "containers:write".into()],
        ),
        Role::Admin => (
            PluginRole::Admin,
            vec![
                "containers:read".into(),
                "containers:write".into(),
                "admin".into(),
            ],
        ),
    }
}

/// A plugin's own route: `/api/v1/plugins/{name}/{path...}`, any method.
/// The host authenticates the caller first; the plugin sees who it is.
pub async fn plugin_http(
    State(state): State<AppState>,
    user: AuthUser,
    Path((name, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let request = HttpRequest {
        method: method.as_str().to_string(),
        path: format!("/{rest}"),
        query: uri.query().unwrap_or("").to_string(),
        headers: request_headers(&headers),
        body: body.to_vec(),
    };
    let response = call_plugin(&state, &name, &user, request).await?;
    let status = StatusCode::from_u16(response.status).map_err(|_| {
        ApiError::PluginFailed(format!(
            "plugin {name} answered with invalid status {}",
            response.status
        ))
    })?;
    let mut out = (status, response.body).into_response();
    for (k, v) in response.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            if passes_through(&k) {
                out.headers_mut().insert(k, v);
            }
        }
    }
    inert(out.headers_mut());
    Ok(out)
}

/// The headers a plugin sees: the request's, without credentials (they
/// stay with the host) and without `x-wakedock-*` (the host's own, which a
/// client must not forge).
pub(crate) fn request_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "authorization" | "cookie" | "x-csrf-token")
                && !k.as_str().starts_with("x-wakedock-")
        })
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Whether a plugin's response header may reach the client: never a
/// cookie on the host's origin, a security policy of its own or a CORS
/// grant.
pub(crate) fn passes_through(k: &http::HeaderName) -> bool {
    let n = k.as_str();
    !(k == http::header::SET_COOKIE
        || n.starts_with("content-security-policy")
        || n.starts_with("access-control-")
        || n.starts_with("x-wakedock-")
        || n == "x-frame-options"
        || n == "x-content-type-options"
        || n == "referrer-policy"
        || n == "cross-origin-opener-policy"
        || n == "strict-transport-security")
}

/// A plugin's API answer on the host's origin can do nothing there: it is
/// sandboxed (an HTML document runs no script and has no origin), and a
/// type a browser would run or apply as script or style becomes
/// `application/octet-stream` (with `nosniff`, so a `<script src>` or
/// stylesheet link to a plugin route is refused). Plugin pages are served
/// differently: inside the layout, see `ui::plugin_pages`.
pub(crate) fn inert(h: &mut HeaderMap) {
    let ct = h
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let safe = matches!(
        ct.as_deref(),
        None | Some(
            "application/json"
                | "application/problem+json"
                | "text/plain"
                | "text/csv"
                | "text/html"
                | "text/event-stream"
                | "application/x-ndjson"
                | "application/octet-stream"
        )
    );
    if !safe {
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
    }
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'none'"),
    );
}

/// Calls the plugin's `handle-http` as `user`.
pub(crate) async fn call_plugin(
    state: &AppState,
    name: &str,
    user: &AuthUser,
    request: HttpRequest,
) -> ApiResult<wakedock_plugin_runtime::caps::HttpResponse> {
    let (role, permissions) = plugin_role(user.role);
    let auth = AuthContext {
        user_id: user.id.clone(),
        username: user.username.clone(),
        role,
        permissions,
    };
    state
        .plugins
        .runtime()
        .handle_http(name, request, auth)
        .await
        .map_err(|e| match e {
            RuntimeError::NotLoaded(_) => {
                ApiError::NotFound(format!("no plugin named {name:?} is running"))
            }
            RuntimeError::Disabled(_) => {
                ApiError::PluginUnavailable(format!("plugin {name} is disabled"))
            }
            RuntimeError::Failed { .. } => ApiError::PluginUnavailable(e.to_string()),
            other => ApiError::PluginFailed(other.to_string()),
        })
}
