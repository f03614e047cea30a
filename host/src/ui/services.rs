//! `/services` (wake-on-request): each service's state, members, idle
//! timeout, last activity, time left before sleep, wake and sleep buttons,
//! wake history with durations; admins define, edit and remove services
//! with messages next to the fields. Everything goes through the API's
//! `/api/v1/services` handlers (roles, validation by the wake plugin, audit).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::services as api;
use crate::error::ApiError;
use crate::http::extract;
use crate::state::AppState;

use super::page::{self, Ctx, UiForm, UiResult, UiUser};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    pub name: String,
    pub status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Session {
    pub remaining_ms: i64,
    pub last_activity_ms: i64,
    pub open_connections: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Wake {
    pub at_ms: i64,
    pub duration_ms: u64,
    pub result: String,
    pub reason: Option<String>,
}

/// A service as the page shows it.
#[derive(Debug, Default)]
pub struct ServiceView {
    pub name: String,
    pub title: String,
    pub source: String,
    pub state: String,
    pub reason: Option<String>,
    pub strategy: String,
    pub sleep_mode: String,
    pub members: Vec<Member>,
    pub selector: String,
    pub idle_timeout: String,
    pub wake_timeout: String,
    pub last_activity: String,
    /// Milliseconds until it sleeps, when it has a session.
    pub remaining_ms: Option<i64>,
    pub remaining: String,
    pub history: Vec<(String, String, Wake)>,
    pub sleepable: bool,
    /// The definition the edit form starts from.
    pub form: FormView,
}

/// A service form: the values typed and a message next to each field.
#[derive(Debug, Default, Clone)]
pub struct FormView {
    pub name: String,
    pub display_name: String,
    pub members: String,
    pub selector: String,
    pub idle_timeout: String,
    pub wake_timeout: String,
    pub strategy: String,
    pub sleep_mode: String,
    pub errors: Vec<(String, String)>,
    /// Errors that belong to no field of the form.
    pub general: Vec<String>,
}

impl FormView {
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// Milliseconds as `5m`, `1h30m`, `45s` (what the config file accepts).
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) && s >= 60 => format!("{}m", s / 60),
        _ if s > 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{s}s"),
    }
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn view(v: &Value) -> ServiceView {
    let s = v.get("service").cloned().unwrap_or_default();
    let name = text(&s, "/name");
    let mut members: Vec<Member> = v
        .get("members")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    // The plugin reports e.g. `Running { ready: true }`: the word is enough.
    for m in &mut members {
        m.status = m
            .status
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_lowercase();
    }
    let session: Option<Session> = v
        .get("session")
        .filter(|s| !s.is_null())
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let history: Vec<Wake> = v
        .get("history")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    let ms = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let selector = match s.get("selector") {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Object(o)) => format!(
            "{}={}",
            o.get("key").and_then(Value::as_str).unwrap_or(""),
            o.get("value").and_then(Value::as_str).unwrap_or("")
        ),
        _ => String::new(),
    };
    let remaining_ms = session.as_ref().map(|x| x.remaining_ms.max(0));
    let display = text(&s, "/display_name");
    ServiceView {
        title: if display.is_empty() {
            name.clone()
        } else {
            display.clone()
        },
        source: text(&s, "/source"),
        state: text(v, "/state/state"),
        reason: v
            .pointer("/state/reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        strategy: text(&s, "/strategy"),
        sleep_mode: text(&s, "/sleep_mode"),
        idle_timeout: duration(ms("/idle_timeout_ms")),
        wake_timeout: duration(ms("/wake_timeout_ms")),
        last_activity: session
            .as_ref()
            .filter(|x| x.last_activity_ms > 0)
            .map(|x| super::ago(x.last_activity_ms))
            .unwrap_or_else(|| "none".into()),
        remaining: remaining_ms
            .map(|r| duration(r as u64 / 1000 * 1000))
            .unwrap_or_default(),
        remaining_ms,
        history: history
            .into_iter()
            .map(|w| {
                (
                    super::timestamp(w.at_ms),
                    format!("{:.1} s", w.duration_ms as f64 / 1000.0),
                    w,
                )
            })
            .collect(),
        sleepable: s.get("sleepable").and_then(Value::as_bool).unwrap_or(true),
        form: FormView {
            name: name.clone(),
            display_name: display,
            members: if selector.is_empty() {
                members
                    .iter()
                    .map(|m| m.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                String::new()
            },
            selector: selector.clone(),
            idle_timeout: duration(ms("/idle_timeout_ms")),
            wake_timeout: duration(ms("/wake_timeout_ms")),
            strategy: text(&s, "/strategy"),
            sleep_mode: text(&s, "/sleep_mode"),
            ..Default::default()
        },
        selector,
        members,
        name,
    }
}

#[derive(Template)]
#[template(path = "services.html")]
pub struct ListPage {
    pub ctx: Ctx,
    pub services: Vec<ServiceView>,
    /// Definitions that could not be used, as the plugin says.
    pub errors: Vec<String>,
    pub new: FormView,
    /// The service whose edit form is open, after a failed save.
    pub editing: String,
    pub unavailable: Option<String>,
    /// Caddy bridges subscribed to this host right now.
    pub bridges: usize,
}

async fn render(state: &AppState, u: &UiUser, new: FormView, edited: Option<FormView>) -> UiResult {
    let (services, errors, unavailable) =
        match api::list(State(state.clone()), u.user.clone()).await {
            Ok(v) => {
                let v = v.0;
                let list = v
                    .get("services")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().map(view).collect())
                    .unwrap_or_default();
                let errs = v
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .map(|e| {
                                format!(
                                    "{} {}: {}",
                                    text(e, "/service"),
                                    text(e, "/field"),
                                    text(e, "/message")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (list, errs, None)
            }
            Err(e) => (Vec::new(), Vec::new(), Some(page::describe(&e))),
        };
    let mut services: Vec<ServiceView> = services;
    let editing = edited.as_ref().map(|f| f.name.clone()).unwrap_or_default();
    if let Some(f) = edited {
        if let Some(s) = services.iter_mut().find(|s| s.name == f.name) {
            s.form = f;
        }
    }
    let failed = !new.errors.is_empty() || !new.general.is_empty();
    let mut res = page::page(
        u,
        ListPage {
            ctx: u.ctx("services"),
            services,
            errors,
            new,
            editing: editing.clone(),
            unavailable,
            bridges: state.wake.connected_bridges(),
        },
    );
    if failed || !editing.is_empty() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(res)
}

pub async fn list(State(state): State<AppState>, u: UiUser) -> UiResult {
    render(
        &state,
        &u,
        FormView {
            idle_timeout: "5m".into(),
            strategy: "blocking".into(),
            sleep_mode: "stop".into(),
            ..Default::default()
        },
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceForm {
    pub name: String,
    pub display_name: String,
    pub members: String,
    pub selector: String,
    pub idle_timeout: String,
    pub wake_timeout: String,
    pub strategy: String,
    pub sleep_mode: String,
}

impl ServiceForm {
    fn view(&self) -> FormView {
        FormView {
            name: self.name.trim().to_string(),
            display_name: self.display_name.clone(),
            members: self.members.clone(),
            selector: self.selector.clone(),
            idle_timeout: self.idle_timeout.clone(),
            wake_timeout: self.wake_timeout.clone(),
            strategy: self.strategy.clone(),
            sleep_mode: self.sleep_mode.clone(),
            ..Default::default()
        }
    }

    /// The definition in the config file's shape; empty fields are left
    /// out so the plugin's defaults apply.
    fn definition(&self, keep: Map<String, Value>) -> Value {
        let mut d = keep;
        d.insert("name".into(), json!(self.name.trim()));
        let members: Vec<&str> = self
            .members
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        let mut put = |k: &str, v: &str| {
            if !v.trim().is_empty() {
                d.insert(k.into(), json!(v.trim()));
            }
        };
        put("display_name", &self.display_name);
        put("selector", &self.selector);
        put("idle_timeout", &self.idle_timeout);
        put("wake_timeout", &self.wake_timeout);
        put("strategy", &self.strategy);
        put("sleep_mode", &self.sleep_mode);
        if !members.is_empty() {
            d.insert("members".into(), json!(members));
        }
        Value::Object(d)
    }
}

/// Puts an API error's per-field messages next to the form's fields.
fn errors_into(form: &mut FormView, e: &ApiError) {
    let fields = [
        "name",
        "display_name",
        "members",
        "selector",
        "idle_timeout",
        "wake_timeout",
        "strategy",
        "sleep_mode",
    ];
    match e {
        ApiError::Service {
            errors: Some(Value::Array(list)),
            ..
        } if !list.is_empty() => {
            for item in list {
                let field = text(item, "/field");
                let msg = text(item, "/message");
                if fields.contains(&field.as_str()) {
                    form.errors.push((field, msg));
                } else if field.is_empty() {
                    form.general.push(msg);
                } else {
                    form.general.push(format!("{field}: {msg}"));
                }
            }
        }
        other => form.general.push(page::describe(other)),
    }
}

/// `POST /services`: defines a service (admin).
pub async fn create(State(state): State<AppState>, f: UiForm<ServiceForm>) -> UiResult {
    let u = &f.user;
    let r = api::create(
        State(state.clone()),
        u.user.clone(),
        extract::Json(f.form.definition(Map::new())),
    )
    .await;
    match r {
        Ok(_) => Ok(page::redirect_with(
            "/services",
            true,
            format!("Service {} is defined.", f.form.name.trim()),
        )),
        Err(e @ ApiError::Forbidden(_)) => Err(u.fail("services", e)),
        Err(e) => {
            let mut form = f.form.view();
            errors_into(&mut form, &e);
            render(&state, u, form, None).await
        }
    }
}

/// The parts of a stored definition the form does not show, so an edit
/// keeps them.
fn kept_fields(service: &Value) -> Map<String, Value> {
    let mut keep = Map::new();
    for k in [
        "optional",
        "one_shot",
        "depends_on",
        "ready",
        "ignore_user_agents",
        "ignore_paths",
        "theme",
        "sleepable",
        "schedule",
    ] {
        match service.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(v) => {
                keep.insert(k.into(), v.clone());
            }
        }
    }
    if let Some(min) = service.get("utc_offset_min").and_then(Value::as_i64) {
        if min != 0 {
            let sign = if min < 0 { '-' } else { '+' };
            let m = min.abs();
            keep.insert(
                "utc_offset".into(),
                json!(format!("{sign}{:02}:{:02}", m / 60, m % 60)),
            );
        }
    }
    keep
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub confirm: Option<String>,
    #[serde(flatten)]
    pub fields: ServiceForm,
}

/// `POST /services/{name}/{wake|sleep|update|delete}`.
pub async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    f: UiForm<ActionForm>,
) -> UiResult {
    let u = &f.user;
    let user = u.user.clone();
    match action.as_str() {
        "wake" => {
            let r = api::wake(State(state), user, extract::Path(name.clone())).await;
            page::after(u, "services", "/services", r, |v| {
                match v.0.get("waited_ms").and_then(Value::as_u64) {
                    Some(ms) if ms > 0 => {
                        format!("{name} is awake (woke in {:.1} s).", ms as f64 / 1000.0)
                    }
                    _ => format!("{name} is awake."),
                }
            })
        }
        "sleep" => {
            let r = api::sleep(State(state), user, extract::Path(name.clone())).await;
            page::after(u, "services", "/services", r, |_| {
                format!("{name} is going to sleep.")
            })
        }
        "delete" => {
            if f.form.confirm.as_deref() != Some("yes") {
                return Ok(page::page(
                    u,
                    super::containers::ConfirmPage {
                        ctx: u.ctx("services"),
                        title: format!("Remove the service {name}?"),
                        question: format!(
                            "Remove the service {name}? Its containers are left as they are."
                        ),
                        action: format!("/services/{name}/delete"),
                        button: "Remove".into(),
                        back: "/services".into(),
                    },
                ));
            }
            let r = api::delete(State(state), user, extract::Path(name.clone())).await;
            page::after(u, "services", "/services", r, |_| {
                format!("Removed the service {name}.")
            })
        }
        "update" => {
            let current = api::get(
                State(state.clone()),
                user.clone(),
                extract::Path(name.clone()),
            )
            .await
            .map(|v| kept_fields(v.0.get("service").unwrap_or(&Value::Null)))
            .unwrap_or_default();
            let mut fields = f.form.fields;
            fields.name = name.clone();
            let r = api::update(
                State(state.clone()),
                user,
                extract::Path(name.clone()),
                extract::Json(fields.definition(current)),
            )
            .await;
            match r {
                Ok(_) => Ok(page::redirect_with(
                    "/services",
                    true,
                    format!("Saved the service {name}."),
                )),
                Err(e @ ApiError::Forbidden(_)) => Err(u.fail("services", e)),
                Err(e) => {
                    let mut form = fields.view();
                    errors_into(&mut form, &e);
                    render(&state, u, FormView::default(), Some(form)).await
                }
            }
        }
        other => Err(u.fail(
            "services",
            ApiError::NotFound(format!("there is no service action {other:?}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(duration(300_000), "5m");
        assert_eq!(duration(7_200_000), "2h");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(500), "500ms");
    }

    #[test]
    fn forms_become_definitions() {
        let f = ServiceForm {
            name: " web ".into(),
            members: "a, b\nc".into(),
            idle_timeout: "5m".into(),
            ..Default::default()
        };
        let d = f.definition(Map::new());
        assert_eq!(
            d,
            json!({"name": "web", "members": ["a", "b", "c"], "idle_timeout": "5m"})
        );
        let keep = kept_fields(&json!({"theme": "dark", "optional": [], "utc_offset_min": -90}));
        assert_eq!(keep.get("theme"), Some(&json!("dark")));
        assert!(!keep.contains_key("optional"));
        assert_eq!(keep.get("utc_offset"), Some(&json!("-01:30")));
    }

    #[test]
    fn the_plugin_list_becomes_views() {
        let v = view(&json!({
            "service": {"name": "web", "display_name": "", "source": "api", "idle_timeout_ms": 300000,
                        "wake_timeout_ms": 30000, "strategy": "blocking", "sleep_mode": "stop", "selector": null},
            "state": {"service": "web", "state": "awake", "strategy": "blocking"},
            "members": [{"name": "web-1", "status": "Running"}],
            "session": {"remaining_ms": 120500, "last_activity_ms": 1, "open_connections": 0},
            "history": [{"at_ms": 0, "duration_ms": 1250, "result": "ok"}],
        }));
        assert_eq!((v.state.as_str(), v.title.as_str()), ("awake", "web"));
        assert_eq!(v.remaining, "2m");
        assert_eq!(v.form.members, "web-1");
        assert_eq!(v.history[0].1, "1.2 s");
    }
}
