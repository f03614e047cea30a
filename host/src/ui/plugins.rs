//! `/plugins` (admin): installed plugins with state, requested and granted
//! capabilities, stats and last error; upload a package, see what it asks
//! for and grant it explicitly; enable, disable, configure, remove. Every
//! action is the API's own handler.

use askama::Template;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::plugins::{self as api, PackagePreview, UpdatePlugin};
use crate::db::users::Role;
use crate::error::ApiError;
use crate::http::extract;
use crate::plugins::{GrantSpec, PluginInfo, PluginPackage};
use crate::state::AppState;

use super::page::{self, Ctx, UiError, UiForm, UiResult, UiUser};

/// A plugin as the page shows it.
#[derive(Debug)]
pub struct PluginView {
    pub info: PluginInfo,
    /// enabled, disabled or failed.
    pub state: String,
    pub failure: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub total_ms: String,
    pub memory: String,
    pub last_error: Option<String>,
    pub requested: String,
    pub granted: String,
    pub config: String,
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl From<PluginInfo> for PluginView {
    fn from(info: PluginInfo) -> Self {
        use wakedock_plugin_runtime::PluginHealth;
        let (state, failure) = match info.status.as_ref().map(|s| &s.health) {
            Some(PluginHealth::Enabled) => ("enabled".to_string(), None),
            Some(PluginHealth::Disabled) => ("disabled".to_string(), None),
            Some(PluginHealth::Failed {
                reason,
                consecutive_failures,
                ..
            }) => (
                "failed".to_string(),
                Some(format!(
                    "{reason} ({consecutive_failures} failures in a row)"
                )),
            ),
            None if info.enabled => ("not loaded".to_string(), info.load_error.clone()),
            None => ("disabled".to_string(), info.load_error.clone()),
        };
        let s = info.status.as_ref();
        PluginView {
            state,
            failure,
            calls: s.map(|s| s.calls).unwrap_or(0),
            errors: s.map(|s| s.errors).unwrap_or(0),
            total_ms: s
                .map(|s| format!("{:.1} ms", s.total_time.as_secs_f64() * 1000.0))
                .unwrap_or_default(),
            memory: s
                .map(|s| super::bytes(s.memory_high_water_bytes))
                .unwrap_or_default(),
            last_error: s.and_then(|s| s.last_error.clone()),
            requested: pretty(&info.requested),
            granted: pretty(&info.granted),
            config: pretty(&info.config),
            info,
        }
    }
}

#[derive(Template)]
#[template(path = "plugins.html")]
pub struct ListPage {
    pub ctx: Ctx,
    pub plugins: Vec<PluginView>,
}

pub async fn list(State(state): State<AppState>, u: UiUser) -> UiResult {
    let plugins = api::list(State(state), u.user.clone())
        .await
        .map_err(|e| u.fail("plugins", e))?
        .0;
    Ok(page::page(
        &u,
        ListPage {
            ctx: u.ctx("plugins"),
            plugins: plugins.into_iter().map(PluginView::from).collect(),
        },
    ))
}

#[derive(Template)]
#[template(path = "plugin_grant.html")]
pub struct GrantPage {
    pub ctx: Ctx,
    pub p: PackagePreview,
    pub ticket: String,
    pub requested: String,
    pub limits: String,
    /// What the admin typed, when the page comes back with an error.
    pub grant_text: String,
    pub config_text: String,
    pub grant_all: bool,
    pub error: Option<String>,
}

/// `POST /plugins/upload` (multipart: `csrf` first, then `manifest` and
/// `wasm`): checks the package and shows what it requests; nothing is
/// installed yet.
///
/// Nothing of the body is read before the caller is known to be a signed-in
/// admin, and nothing past the first field before its CSRF token matched:
/// a stranger's upload costs no memory.
pub async fn upload(State(state): State<AppState>, req: Request) -> UiResult {
    let (parts, body) = req.into_parts();
    let (user, via_cookie) = crate::auth::identify(&parts, &state)
        .await
        .map_err(|e| UiError::new(e.status(), "Please sign in again and retry the upload."))?;
    let u = page::UiUser::of(&parts, user, &state);
    u.user
        .require_audited(&state, Role::Admin, "plugin.install", "(upload)")
        .await
        .map_err(|e| u.fail("plugins", e))?;
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(&parts.headers);
    let failed = |e: &dyn std::fmt::Display| {
        UiError::new(StatusCode::BAD_REQUEST, format!("The upload failed: {e}."))
    };
    let mut mp = Multipart::from_request(Request::from_parts(parts.clone(), body), &state)
        .await
        .map_err(|e| failed(&e))?;
    let (mut manifest, mut wasm) = (None, None);
    let mut csrf_checked = !via_cookie;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(failed(&e)),
        };
        let name = field.name().unwrap_or("").to_string();
        if !csrf_checked {
            // The form's first field is its CSRF token; anything else is
            // refused before it is read, and of the token at most a
            // token's worth is.
            let mut token = Vec::new();
            if name == "csrf" {
                while let Some(chunk) = field.chunk().await.map_err(|e| failed(&e))? {
                    token.extend_from_slice(&chunk);
                    if token.len() > 256 {
                        break;
                    }
                }
            }
            let token = (name == "csrf")
                .then(|| String::from_utf8(token).ok())
                .flatten();
            crate::auth::check_csrf(&parts.headers, &jar, token.as_deref())
                .map_err(|e| u.fail("plugins", e))?;
            csrf_checked = true;
            continue;
        }
        let data = field.bytes().await.map_err(|e| failed(&e))?;
        match name.as_str() {
            "manifest" => manifest = Some(data),
            "wasm" => wasm = Some(data),
            _ => {}
        }
    }
    if !csrf_checked {
        crate::auth::check_csrf(&parts.headers, &jar, None).map_err(|e| u.fail("plugins", e))?;
    }
    let back_with = |msg: String| page::redirect_with("/plugins", false, msg);
    let (Some(manifest), Some(wasm)) = (
        manifest.filter(|m| !m.is_empty()),
        wasm.filter(|w| !w.is_empty()),
    ) else {
        return Ok(back_with(
            "Choose both files: the plugin.toml manifest and the .wasm component.".into(),
        ));
    };
    let Ok(manifest_toml) = String::from_utf8(manifest.to_vec()) else {
        return Ok(back_with("The manifest is not UTF-8 text.".into()));
    };
    let package = PluginPackage {
        manifest_toml,
        wasm: wasm.to_vec(),
    };
    let preview = match api::preview(&state, &u.user, &package).await {
        Ok(p) => p,
        Err(e @ ApiError::Forbidden(_)) => return Err(u.fail("plugins", e)),
        Err(e) => {
            return Ok(back_with(format!(
                "The package was refused: {}",
                page::describe(&e)
            )))
        }
    };
    let ticket = state.ui.hold(package, &u.user.username);
    Ok(page::page(&u, grant_page(&u, preview, ticket, None, None)))
}

fn grant_page(
    u: &UiUser,
    p: PackagePreview,
    ticket: String,
    typed: Option<&InstallForm>,
    error: Option<String>,
) -> GrantPage {
    GrantPage {
        ctx: u.ctx("plugins"),
        requested: pretty(&p.requested),
        limits: pretty(&p.limits),
        grant_text: typed
            .map(|t| t.grant_json.clone())
            .unwrap_or_else(|| pretty(&serde_json::json!({"capabilities": p.requested}))),
        config_text: typed.map(|t| t.config_json.clone()).unwrap_or_default(),
        grant_all: typed.is_none_or(|t| t.grant == "all"),
        p,
        ticket,
        error,
    }
}

#[derive(Debug, Deserialize)]
pub struct InstallForm {
    pub ticket: String,
    /// `all` or `custom`.
    #[serde(default)]
    pub grant: String,
    /// Set by the Cancel button.
    pub cancel: Option<String>,
    /// Set by the install button.
    pub decision: Option<String>,
    #[serde(default)]
    pub grant_json: String,
    #[serde(default)]
    pub config_json: String,
    pub enabled: Option<String>,
}

/// `POST /plugins/install`: the admin's decision on the grant screen.
pub async fn install(State(state): State<AppState>, f: UiForm<InstallForm>) -> UiResult {
    let u = &f.user;
    u.user
        .require(Role::Admin)
        .map_err(|e| u.fail("plugins", e))?;
    let Some(package) = state.ui.take(&f.form.ticket, &u.user.username) else {
        return Ok(page::redirect_with(
            "/plugins",
            false,
            "That upload has expired; upload the package again.",
        ));
    };
    if f.form.cancel.is_some() {
        return Ok(page::redirect_with(
            "/plugins",
            true,
            "Nothing was installed.",
        ));
    }
    // Input errors go back to the grant screen, with what was typed.
    let parsed: Result<(GrantSpec, Option<serde_json::Value>), String> = (|| {
        let grant = if f.form.grant == "all" {
            GrantSpec::All(crate::plugins::AllMarker)
        } else {
            serde_json::from_str(&f.form.grant_json)
                .map_err(|e| format!("The grant is not valid JSON: {e}."))?
        };
        let config = if f.form.config_json.trim().is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&f.form.config_json)
                    .map_err(|e| format!("The configuration is not valid JSON: {e}."))?,
            )
        };
        Ok((grant, config))
    })();
    let result = match parsed {
        Ok((grant, config)) => {
            let enabled = Some(f.form.enabled.is_some());
            api::install_package(
                &state,
                &u.user,
                package.clone(),
                Some(grant),
                config,
                enabled,
            )
            .await
            .map_err(|e| page::describe(&e))
        }
        Err(msg) => Err(msg),
    };
    match result {
        Ok(info) => Ok(page::redirect_with(
            "/plugins",
            true,
            format!("Installed {} {}.", info.name, info.version),
        )),
        Err(msg) => {
            let preview = api::preview(&state, &u.user, &package)
                .await
                .map_err(|e| u.fail("plugins", e))?;
            let ticket = state.ui.hold(package, &u.user.username);
            let mut res = page::page(u, grant_page(u, preview, ticket, Some(&f.form), Some(msg)));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            Ok(res)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PluginForm {
    pub config_json: Option<String>,
    pub confirm: Option<String>,
}

/// `POST /plugins/{name}/{enable|disable|configure|remove}`.
pub async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    f: UiForm<PluginForm>,
) -> UiResult {
    let u = &f.user;
    let user = u.user.clone();
    let update = |req: UpdatePlugin| {
        api::update(
            State(state.clone()),
            user.clone(),
            extract::Path(name.clone()),
            extract::Json(req),
        )
    };
    let r: Result<String, ApiError> = match action.as_str() {
        "enable" | "disable" => update(UpdatePlugin {
            enabled: Some(action == "enable"),
            ..Default::default()
        })
        .await
        .map(|p| {
            format!(
                "{} is {}.",
                p.0.name,
                if p.0.enabled { "enabled" } else { "disabled" }
            )
        }),
        "configure" => {
            let text = f.form.config_json.clone().unwrap_or_default();
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(config) => update(UpdatePlugin {
                    config: Some(config),
                    ..Default::default()
                })
                .await
                .map(|p| format!("{} has its new configuration.", p.0.name)),
                Err(e) => Err(ApiError::validation(format!(
                    "the configuration of {name} is not valid JSON: {e}"
                ))),
            }
        }
        "remove" => {
            if f.form.confirm.as_deref() != Some("yes") {
                return Ok(page::page(
                    u,
                    super::containers::ConfirmPage {
                        ctx: u.ctx("plugins"),
                        title: format!("Remove {name}?"),
                        question: format!(
                            "Remove the plugin {name}? Its files and stored data are deleted."
                        ),
                        action: format!("/plugins/{name}/remove"),
                        button: "Remove".into(),
                        back: "/plugins".into(),
                    },
                ));
            }
            api::remove(State(state.clone()), user, extract::Path(name.clone()))
                .await
                .map(|_| format!("Removed {name}."))
        }
        other => Err(ApiError::NotFound(format!(
            "there is no plugin action {other:?}"
        ))),
    };
    page::after(u, "plugins", "/plugins", r, |m| m)
}
