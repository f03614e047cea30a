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
use crate::wake::contract::{
    MemberStatus, MemberView, ServiceDefinition, ServiceView as ApiView, WakeRecord, WakeResult,
};
use crate::wake::MemberPhase;

use super::page::{self, Ctx, UiForm, UiResult, UiUser};

/// A member as the page shows it: its name and a word or two.
#[derive(Debug, Default)]
pub struct Member {
    pub name: String,
    pub status: String,
}

/// One wake of the history.
#[derive(Debug)]
pub struct Wake {
    pub at: String,
    pub took: String,
    pub ok: bool,
    pub result: &'static str,
    pub reason: String,
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
    pub history: Vec<Wake>,
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

/// A member in a few words: what WakeDock did with it, else what Docker
/// says.
fn member_text(m: &MemberView) -> String {
    match (m.phase, m.status) {
        (Some(MemberPhase::Asleep), MemberStatus::Exited { .. } | MemberStatus::Paused) => {
            "sleeping".into()
        }
        (Some(MemberPhase::Stopped), MemberStatus::Exited { exit_code: Some(c) }) => {
            format!("stopped outside WakeDock (exit {c})")
        }
        (Some(MemberPhase::Stopped), _) => "stopped outside WakeDock".into(),
        (_, MemberStatus::Running { ready: true }) => "running".into(),
        (_, MemberStatus::Running { ready: false }) => "running, not ready".into(),
        (_, MemberStatus::Exited { exit_code: Some(c) }) => format!("exited ({c})"),
        (_, MemberStatus::Exited { exit_code: None }) => "exited".into(),
        (_, MemberStatus::Missing) => "missing".into(),
        (_, MemberStatus::Created) => "created".into(),
        (_, MemberStatus::Paused) => "paused".into(),
        (_, MemberStatus::Restarting) => "restarting".into(),
        (_, MemberStatus::Removing) => "removing".into(),
        (_, MemberStatus::Dead) => "dead".into(),
    }
}

fn wake_of(w: WakeRecord) -> Wake {
    Wake {
        at: super::timestamp(w.at_ms as i64),
        took: format!("{:.1} s", w.duration_ms as f64 / 1000.0),
        ok: w.result == WakeResult::Ok,
        result: match w.result {
            WakeResult::Ok => "ok",
            WakeResult::Timeout => "timeout",
            WakeResult::Failed => "failed",
        },
        reason: w.reason.unwrap_or_default(),
    }
}

fn view(v: ApiView) -> ServiceView {
    let d = &v.service;
    let selector = d.selector.clone().unwrap_or_default();
    let members: Vec<Member> = v
        .members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            status: member_text(m),
        })
        .collect();
    let remaining_ms = v.session.as_ref().map(|x| x.remaining_ms as i64);
    let display = if d.display_name == d.name {
        String::new()
    } else {
        d.display_name.clone()
    };
    ServiceView {
        title: d.display_name.clone(),
        source: d.source.to_string(),
        state: v.state.state.to_string(),
        reason: v.state.reason.clone(),
        strategy: d.strategy.to_string(),
        sleep_mode: d.sleep_mode.to_string(),
        idle_timeout: duration(d.idle_timeout_ms),
        wake_timeout: duration(d.wake_timeout_ms),
        last_activity: v
            .session
            .as_ref()
            .filter(|x| x.last_activity_ms > 0)
            .map(|x| super::ago(x.last_activity_ms as i64))
            .unwrap_or_else(|| "none".into()),
        remaining: remaining_ms
            .map(|r| duration(r as u64 / 1000 * 1000))
            .unwrap_or_default(),
        remaining_ms,
        sleepable: d.sleepable,
        form: FormView {
            name: d.name.clone(),
            display_name: display,
            members: if selector.is_empty() {
                d.members.join(", ")
            } else {
                String::new()
            },
            selector: selector.clone(),
            idle_timeout: duration(d.idle_timeout_ms),
            wake_timeout: duration(d.wake_timeout_ms),
            strategy: d.strategy.to_string(),
            sleep_mode: d.sleep_mode.to_string(),
            ..Default::default()
        },
        history: v.history.into_iter().map(wake_of).collect(),
        selector,
        members,
        name: v.service.name,
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
                let errs = v.errors.iter().map(ToString::to_string).collect();
                (v.services.into_iter().map(view).collect(), errs, None)
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
        ApiError::Service { errors, .. } if !errors.is_empty() => {
            for item in errors {
                let (field, msg) = (item.field.clone(), item.message.clone());
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
fn kept_fields(definition: &ServiceDefinition) -> Map<String, Value> {
    let service = serde_json::to_value(definition).unwrap_or_default();
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
            page::after(u, "services", "/services", r, |v| match v.0.waited_ms {
                ms if ms > 0 => {
                    format!("{name} is awake (woke in {:.1} s).", ms as f64 / 1000.0)
                }
                _ => format!("{name} is awake."),
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
            .map(|v| kept_fields(&v.0.service))
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
    use wakedock_plugin_wake::service::{parse_def, Source};

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
        let mut def = parse_def(
            &json!({"name": "web", "members": ["a"], "theme": "dark", "utc_offset": "-01:30"}),
        )
        .unwrap()
        .validate(Source::Api)
        .unwrap()
        .definition();
        def.optional.clear();
        let keep = kept_fields(&def);
        assert_eq!(keep.get("theme"), Some(&json!("dark")));
        assert!(!keep.contains_key("optional"));
        assert_eq!(keep.get("utc_offset"), Some(&json!("-01:30")));
    }

    #[test]
    fn the_plugin_list_becomes_views() {
        let def =
            parse_def(&json!({"name": "web", "members": ["web-1", "web-2"], "idle_timeout": "5m"}))
                .unwrap()
                .validate(Source::Api)
                .unwrap();
        let state = wakedock_plugin_wake::state::document(
            &def,
            wakedock_plugin_wake::state::Next::plain(crate::wake::StateName::Awake),
            0,
            1,
        );
        let v = view(ApiView {
            service: def.definition(),
            state,
            members: vec![
                MemberView {
                    name: "web-1".into(),
                    status: MemberStatus::Running { ready: true },
                    phase: None,
                },
                MemberView {
                    name: "web-2".into(),
                    status: MemberStatus::Exited {
                        exit_code: Some(137),
                    },
                    phase: Some(MemberPhase::Asleep),
                },
            ],
            session: Some(crate::wake::contract::SessionView {
                expires_at_ms: 0,
                remaining_ms: 120_500,
                last_activity_ms: 1,
                open_connections: 0,
                requests: 0,
                adopted: false,
            }),
            history: vec![WakeRecord {
                at_ms: 0,
                duration_ms: 1250,
                result: WakeResult::Ok,
                reason: None,
            }],
        });
        assert_eq!((v.state.as_str(), v.title.as_str()), ("awake", "web"));
        assert_eq!(v.remaining, "2m");
        assert_eq!(v.form.members, "web-1, web-2");
        assert_eq!(v.history[0].took, "1.2 s");
        // Member status as words, never Rust Debug text.
        let words: Vec<&str> = v.members.iter().map(|m| m.status.as_str()).collect();
        assert_eq!(words, ["running", "sleeping"]);
    }
}
