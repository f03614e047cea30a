//! `/containers`: the list (filter, search, actions) and one container's
//! page (live log tail, live CPU and memory charts, labels, ports, mounts).
//! Actions go through the API's own handlers: same roles, same audit.

use askama::Template;
use axum::extract::{Path, Query, State};
use futures::StreamExt;
use serde::Deserialize;

use crate::api::containers as api;
use crate::docker::{ContainerDetails, ContainerSummary, PortMapping};
use crate::http::extract;
use crate::state::AppState;
use crate::wake::Membership;

use super::charts::{charts, Charts};
use super::page::{self, local, Ctx, UiForm, UiResult, UiUser};

/// The four states the UI groups containers into.
pub const CLASSES: [&str; 4] = ["running", "sleeping", "stopped", "unhealthy"];

/// running, sleeping (not running, and its service's state says WakeDock
/// put it to sleep or is waking it: see [`Membership::sleeping`]), stopped
/// (anything else not running, a crashed member included), or unhealthy
/// (running but failing its healthcheck).
pub fn class_of(state: &str, health: &str, member: Option<&Membership>) -> &'static str {
    if health == "unhealthy" {
        "unhealthy"
    } else if state == "running" {
        "running"
    } else if member.is_some_and(Membership::sleeping) {
        "sleeping"
    } else {
        "stopped"
    }
}

/// What a row or page says of a container's state: its class and
/// Docker's state word, or `sleeping` for a sleeping member.
fn label(class: &str, state: &str) -> String {
    if class == "sleeping" {
        "sleeping".into()
    } else {
        state.to_string()
    }
}

pub fn ports_text(ports: &[PortMapping]) -> String {
    let mut v: Vec<String> = ports
        .iter()
        .map(|p| match (p.public_port, &p.ip) {
            (Some(pp), Some(ip)) => format!("{ip}:{pp}→{}/{}", p.private_port, p.protocol),
            (Some(pp), None) => format!("{pp}→{}/{}", p.private_port, p.protocol),
            _ => format!("{}/{}", p.private_port, p.protocol),
        })
        .collect();
    v.dedup();
    v.join(", ")
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub short_id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub class: &'static str,
    /// The state badge's text: Docker's state, or `sleeping`.
    pub label: String,
    pub health: String,
    pub ports: String,
    /// Docker's "Up 3 minutes" / "Exited (0) 2 hours ago".
    pub status: String,
    pub running: bool,
    /// The wake-on-request service it is a member of.
    pub member: Option<Membership>,
}

impl Row {
    pub fn new(c: &ContainerSummary, member: Option<Membership>) -> Self {
        let class = class_of(&c.state, &c.health, member.as_ref());
        Row {
            id: c.id.clone(),
            short_id: super::short_id(&c.id),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            class,
            label: label(class, &c.state),
            health: c.health.clone(),
            ports: ports_text(&c.ports),
            status: c.status.clone(),
            running: c.state == "running",
            member,
        }
    }
}

#[derive(Template)]
#[template(path = "containers.html")]
pub struct ListPage {
    pub ctx: Ctx,
    pub rows: Vec<Row>,
    pub total: usize,
    pub q: String,
    pub class: String,
    pub back: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub q: Option<String>,
    /// running, sleeping, stopped or unhealthy.
    pub state: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    u: UiUser,
    Query(q): Query<ListQuery>,
) -> UiResult {
    let search = q.q.clone().filter(|s| !s.trim().is_empty());
    let all = api::list(
        State(state.clone()),
        u.user.clone(),
        extract::Query(api::ListQuery {
            q: search.clone(),
            ..Default::default()
        }),
    )
    .await
    .map_err(|e| u.fail("containers", e))?
    .0;
    let class = q
        .state
        .filter(|s| CLASSES.contains(&s.as_str()))
        .unwrap_or_default();
    let total = all.len();
    let members = state.wake.memberships();
    let rows = all
        .iter()
        .map(|c| Row::new(c, members.get(&c.name).cloned()))
        .filter(|r| class.is_empty() || r.class == class)
        .collect();
    let back = match (&search, class.as_str()) {
        (None, "") => "/containers".to_string(),
        _ => format!(
            "/containers?q={}&state={}",
            page::urlencode(search.as_deref().unwrap_or("")),
            class
        ),
    };
    Ok(page::page(
        &u,
        ListPage {
            ctx: u.ctx("containers"),
            rows,
            total,
            q: search.unwrap_or_default(),
            class,
            back,
        },
    ))
}

#[derive(Template)]
#[template(path = "container.html")]
pub struct DetailPage {
    pub ctx: Ctx,
    pub c: ContainerDetails,
    pub class: &'static str,
    pub label: String,
    pub member: Option<Membership>,
    pub ports: String,
    pub logs: Vec<crate::docker::LogLine>,
    pub logs_error: Option<String>,
    pub charts: Charts,
    pub back: String,
}

/// Log lines shown when the page opens; new ones arrive live.
const TAIL: u32 = 100;

pub async fn detail(State(state): State<AppState>, u: UiUser, Path(id): Path<String>) -> UiResult {
    api::check_ref(&id).map_err(|e| u.fail("containers", e))?;
    let c = state
        .docker
        .inspect(&id)
        .await
        .map_err(|e| u.fail("containers", e))?;
    let (logs, logs_error) = match state.docker.logs(&c.id, Some(TAIL), false, false).await {
        Ok(s) => {
            let lines: Vec<_> = s.take(TAIL as usize).collect().await;
            match lines.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(l) => (l, None),
                Err(e) => (vec![], Some(e.to_string())),
            }
        }
        Err(e) => (vec![], Some(e.to_string())),
    };
    let member = state.wake.membership(&c.name);
    let class = class_of(&c.state, &c.health, member.as_ref());
    Ok(page::page(
        &u,
        DetailPage {
            ctx: u.ctx("containers"),
            class,
            label: label(class, &c.state),
            member,
            ports: ports_text(&c.ports),
            charts: charts(&state.ui.samples.of(&c.id)),
            back: format!("/containers/{}", c.name),
            c,
            logs,
            logs_error,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub back: Option<String>,
    /// `yes` once the person has confirmed a stop, restart or removal.
    pub confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub ctx: Ctx,
    pub title: String,
    pub question: String,
    pub action: String,
    pub button: String,
    pub back: String,
}

fn verb(action: &str) -> Option<(&'static str, &'static str)> {
    Some(match action {
        "start" => ("Started", "Start"),
        "stop" => ("Stopped", "Stop"),
        "restart" => ("Restarted", "Restart"),
        "pause" => ("Paused", "Pause"),
        "unpause" => ("Resumed", "Resume"),
        "remove" => ("Removed", "Remove"),
        _ => return None,
    })
}

/// Needs a confirmation first.
pub fn destructive(action: &str) -> bool {
    matches!(action, "stop" | "restart" | "remove")
}

/// `POST /containers/{id}/{action}`.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    f: UiForm<ActionForm>,
) -> UiResult {
    let u = &f.user;
    let back = local(f.form.back.as_deref(), "/containers");
    let Some((done, button)) = verb(&action) else {
        return Err(u.fail(
            "containers",
            crate::ApiError::NotFound(format!("there is no container action {action:?}")),
        ));
    };
    if destructive(&action) && f.form.confirm.as_deref() != Some("yes") {
        return Ok(page::page(
            u,
            ConfirmPage {
                ctx: u.ctx("containers"),
                title: format!("{button} {id}?"),
                question: match action.as_str() {
                    "remove" => format!(
                        "Remove the container {id}? It is stopped first if it runs; \
                         its anonymous volumes stay."
                    ),
                    _ => format!("{button} the container {id}?"),
                },
                action: format!("/containers/{id}/{action}"),
                button: button.to_string(),
                back,
            },
        ));
    }
    let user = u.user.clone();
    let r = if action == "remove" {
        api::remove(
            State(state),
            user,
            extract::Path(id.clone()),
            extract::Query(api::RemoveQuery { force: Some(true) }),
        )
        .await
        .map(|_| true)
    } else {
        let a: api::Action = serde_json::from_value(serde_json::Value::String(action.clone()))
            .map_err(|_| u.fail("containers", crate::ApiError::NotFound(action.clone())))?;
        api::act(
            State(state),
            user,
            extract::Path((id.clone(), a)),
            extract::Query(api::ActionQuery::default()),
        )
        .await
        .map(|o| o.0.changed)
    };
    // A removed container has no page to go back to.
    let to = if action == "remove" && r.is_ok() && back.starts_with("/containers/") {
        "/containers".to_string()
    } else {
        back
    };
    page::after(u, "containers", &to, r, |changed| {
        if changed {
            format!("{done} {id}.")
        } else {
            format!("{id} was already in that state.")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::{MemberPhase, StateName};

    fn member(phase: MemberPhase, state: StateName) -> Membership {
        Membership {
            service: "web".into(),
            display_name: "Web".into(),
            state,
            phase,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_of("running", "none", None), "running");
        assert_eq!(class_of("running", "unhealthy", None), "unhealthy");
        assert_eq!(class_of("exited", "none", None), "stopped");
        // Put to sleep by WakeDock (stopped or paused), or being woken.
        let asleep = member(MemberPhase::Asleep, StateName::Asleep);
        assert_eq!(class_of("exited", "none", Some(&asleep)), "sleeping");
        assert_eq!(class_of("paused", "none", Some(&asleep)), "sleeping");
        let waiting = member(MemberPhase::Waiting, StateName::Waking);
        assert_eq!(class_of("exited", "none", Some(&waiting)), "sleeping");
        assert_eq!(class_of("running", "none", Some(&asleep)), "running");
        // Crashed or stopped by hand: stopped, even though it is a member
        // with WakeDock labels.
        let crashed = member(MemberPhase::Stopped, StateName::Asleep);
        assert_eq!(class_of("exited", "none", Some(&crashed)), "stopped");
        assert_eq!(label("sleeping", "exited"), "sleeping");
        assert_eq!(label("stopped", "exited"), "exited");
    }

    #[test]
    fn ports_read_well() {
        let p = vec![PortMapping {
            private_port: 8080,
            public_port: Some(32768),
            ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        }];
        assert_eq!(ports_text(&p), "127.0.0.1:32768→8080/tcp");
    }
}
