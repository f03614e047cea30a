//! The plugin's pages as HTML fragments (the host puts them in its layout,
//! reduced to its allowlist: no script or style here, the host's classes
//! only). Everything shown is escaped.

use std::fmt::Write;

use wakedock_plugin_sdk::ui::escape as e;

use crate::model::{Stack, StackState};
use crate::validate::FieldError;

/// What the caller may do on a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Can {
    /// deploy, update, restart, stop, start, down (role `user`).
    pub operate: bool,
    /// create, edit, delete, adopt (role `admin`).
    pub admin: bool,
}

fn badge(state: StackState) -> String {
    let class = match state {
        StackState::Running => "running",
        StackState::Partial => "unhealthy",
        StackState::Sleeping => "sleeping",
        StackState::Stopped | StackState::NotDeployed => "stopped",
    };
    format!(
        r#"<span class="badge {class}" data-stack-state="{}">{}</span>"#,
        state.word(),
        state.word()
    )
}

/// A project on the engine that has no folder in the stacks directory.
#[derive(Debug, Clone)]
pub struct Unmanaged {
    pub stack: Stack,
}

/// `GET /`: every stack, then the engine's projects WakeDock does not manage.
pub fn list_page(
    base: &str,
    stacks: &[Stack],
    unmanaged: &[Unmanaged],
    problems: &[String],
    can: Can,
) -> String {
    let mut h = String::with_capacity(256 + stacks.len() * 400);
    h.push_str("<h1>Stacks</h1>\n");
    h.push_str(r#"<p class="muted">Compose stacks: one folder each in the stacks directory, run with Docker Compose.</p>"#);
    if can.admin {
        let _ = write!(
            h,
            r#"<p><a class="button primary" href="{base}/new">New stack</a></p>"#
        );
    }
    for p in problems {
        let _ = write!(h, r#"<p class="flash err">{}</p>"#, e(p));
    }
    if stacks.is_empty() {
        h.push_str(r#"<p class="empty">No stack yet.</p>"#);
    } else {
        h.push_str(r#"<table class="list"><thead><tr><th scope="col">Stack</th><th scope="col">State</th><th scope="col">Services</th><th scope="col">Images</th></tr></thead><tbody>"#);
        for s in stacks {
            let _ = write!(
                h,
                r#"<tr data-stack="{n}"><td data-label="Stack"><a href="{base}/stacks/{n}">{n}</a>{sleeps}</td><td data-label="State">{b}{down}</td><td data-label="Services">{svcs}</td><td data-label="Images">{imgs}</td></tr>"#,
                n = e(&s.name),
                sleeps = if s.sleeps {
                    r#" <span class="muted small">sleeps when idle</span>"#
                } else {
                    ""
                },
                b = badge(s.state),
                down = if s.down.is_empty() {
                    String::new()
                } else {
                    format!(
                        r#" <span class="muted small">down: {}</span>"#,
                        e(&s.down.join(", "))
                    )
                },
                svcs = e(&s
                    .services
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")),
                imgs = e(&s.images.join(", ")),
            );
        }
        h.push_str("</tbody></table>");
    }
    if !unmanaged.is_empty() {
        h.push_str(r#"<section class="card"><h2>Compose projects outside the stacks directory</h2><p class="muted">Started by hand or by another tool. Adopting one moves its folder into the stacks directory; it is then a stack like any other.</p>"#);
        h.push_str(r#"<table class="list"><thead><tr><th scope="col">Project</th><th scope="col">State</th><th scope="col">Folder</th><th scope="col">Compose files</th><th scope="col"></th></tr></thead><tbody>"#);
        for u in unmanaged {
            let s = &u.stack;
            let _ = write!(
                h,
                r#"<tr data-project="{n}"><td data-label="Project">{n}</td><td data-label="State">{b}</td><td data-label="Folder"><code>{wd}</code></td><td data-label="Compose files">{cf}</td><td>{adopt}</td></tr>"#,
                n = e(&s.name),
                b = badge(s.state),
                wd = e(s.working_dir.as_deref().unwrap_or("?")),
                cf = e(&s.config_files.join(", ")),
                adopt = if can.admin && crate::model::check_name(&s.name).is_ok() {
                    format!(
                        r#"<form method="post" action="{base}/projects/{n}/adopt" data-confirm="Move {wd} into the stacks directory and manage {n} as a stack?"><input type="hidden" name="confirm" value=""><button>Adopt</button></form>"#,
                        n = e(&s.name),
                        wd = e(s.working_dir.as_deref().unwrap_or("")),
                    )
                } else {
                    String::new()
                },
            );
        }
        h.push_str("</tbody></table></section>");
    }
    h
}

/// The stack page's content.
#[derive(Debug, Clone, Default)]
pub struct StackPage<'a> {
    pub compose_text: &'a str,
    pub env_text: &'a str,
    pub errors: &'a [FieldError],
    /// The running or last action: its id, kind, state and lines.
    pub last_kind: Option<String>,
    pub last_state: Option<String>,
    pub last_lines: Vec<String>,
    /// Earlier runs: (when, kind, outcome, by, lines).
    pub runs: Vec<Run>,
}

/// One finished action, as kept in storage.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub exit_code: Option<i32>,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub started_by: Option<String>,
    pub lines: Vec<String>,
}

fn field_errors(errors: &[FieldError], prefix: &str) -> String {
    let mut h = String::new();
    for err in errors
        .iter()
        .filter(|x| x.field == prefix || x.field.starts_with(&format!("{prefix}:")))
    {
        let _ = write!(
            h,
            r#"<li class="field-error"><strong>{}</strong>: {}</li>"#,
            e(&err.field),
            e(&err.message)
        );
    }
    if h.is_empty() {
        h
    } else {
        format!(r#"<ul class="errors" role="alert">{h}</ul>"#)
    }
}

fn action_button(
    base: &str,
    name: &str,
    action: &str,
    label: &str,
    confirm: Option<&str>,
    class: &str,
) -> String {
    format!(
        r#"<form method="post" action="{base}/stacks/{n}/{action}" class="inline"{c}><input type="hidden" name="confirm" value=""><button class="{class}" data-action="{action}">{label}</button></form>"#,
        n = e(name),
        c = confirm
            .map(|q| format!(r#" data-confirm="{}""#, e(q)))
            .unwrap_or_default(),
    )
}

/// `GET /stacks/{name}`.
pub fn stack_page(base: &str, s: &Stack, p: &StackPage<'_>, can: Can) -> String {
    let n = e(&s.name);
    let mut h = String::with_capacity(4096 + p.compose_text.len() * 2);
    let _ = write!(h, r#"<h1>{n} {}</h1>"#, badge(s.state));
    if !s.down.is_empty() {
        let _ = write!(
            h,
            r#"<p class="flash err">Down: {}</p>"#,
            e(&s.down.join(", "))
        );
    }
    h.push_str(r#"<dl class="facts">"#);
    let folder = match &s.working_dir {
        Some(wd) => wd.clone(),
        None if s.managed => format!("{} in the stacks directory", s.name),
        None => "?".to_owned(),
    };
    let _ = write!(h, "<dt>Folder</dt><dd><code>{}</code></dd>", e(&folder));
    if !s.config_files.is_empty() {
        let _ = write!(
            h,
            "<dt>Compose files</dt><dd>{}</dd>",
            e(&s.config_files.join(", "))
        );
    }
    if let Some(env) = &s.env_file {
        let _ = write!(h, "<dt>Environment file</dt><dd>{}</dd>", e(env));
    }
    if s.sleeps {
        h.push_str("<dt>Sleeps</dt><dd>when idle: its services opt into wake-on-request; a request through Caddy wakes them in Compose's order</dd>");
    }
    h.push_str("</dl>");
    if can.operate && s.managed {
        h.push_str(r#"<div class="actions" aria-label="Actions">"#);
        h.push_str(&action_button(
            base, &s.name, "deploy", "Deploy", None, "primary",
        ));
        h.push_str(&action_button(
            base,
            &s.name,
            "update",
            "Update",
            Some("Pull the images and recreate what changed?"),
            "",
        ));
        h.push_str(&action_button(
            base,
            &s.name,
            "restart",
            "Restart",
            Some(&format!("Restart {}?", s.name)),
            "",
        ));
        h.push_str(&action_button(base, &s.name, "start", "Start", None, ""));
        h.push_str(&action_button(
            base,
            &s.name,
            "stop",
            "Stop",
            Some(&format!("Stop {}?", s.name)),
            "",
        ));
        h.push_str(&action_button(
            base,
            &s.name,
            "down",
            "Down",
            Some(&format!(
                "Take {} down (remove its containers and networks, keep its volumes)?",
                s.name
            )),
            "danger",
        ));
        h.push_str("</div>");
    }
    // Services.
    h.push_str(r#"<h2>Services</h2>"#);
    if s.services.is_empty() {
        h.push_str(r#"<p class="muted">No containers: deploy the stack to create them.</p>"#);
    } else {
        h.push_str(r#"<table class="list"><thead><tr><th scope="col">Service</th><th scope="col">Containers</th><th scope="col">State</th><th scope="col">Image</th><th scope="col">Ports</th></tr></thead><tbody>"#);
        for svc in &s.services {
            let containers: Vec<String> = svc
                .containers
                .iter()
                .map(|c| {
                    format!(
                        r#"<a href="/containers/{id}">{name}</a>"#,
                        id = e(&c.id),
                        name = e(&c.name)
                    )
                })
                .collect();
            let states: Vec<String> = svc
                .containers
                .iter()
                .map(|c| {
                    let mut t = c.state.clone();
                    if !c.health.is_empty() && c.health != "none" {
                        t.push_str(&format!(" ({})", c.health));
                    }
                    if svc.one_shot && c.state == "exited" {
                        t = "done (one-shot)".into();
                    }
                    t
                })
                .collect();
            let _ = write!(
                h,
                r#"<tr data-service="{sn}"><td data-label="Service">{sn}</td><td data-label="Containers">{c}</td><td data-label="State">{st}</td><td data-label="Image">{img}</td><td data-label="Ports">{ports}</td></tr>"#,
                sn = e(&svc.name),
                c = containers.join(", "),
                st = e(&states.join(", ")),
                img = e(svc
                    .containers
                    .first()
                    .map(|c| c.image.as_str())
                    .unwrap_or("")),
                ports = e(&svc
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")),
            );
        }
        h.push_str("</tbody></table>");
    }
    // Live output.
    h.push_str(r#"<section class="card" aria-labelledby="out-h"><h2 id="out-h">Output</h2>"#);
    let _ = write!(
        h,
        r#"<p class="muted small" data-compose-status="{n}" role="status">{}</p>"#,
        match (&p.last_kind, &p.last_state) {
            (Some(k), Some(st)) => e(&format!("{k}: {st}")),
            _ => "No action since the host started.".into(),
        }
    );
    let _ = write!(
        h,
        r#"<pre class="log output" data-compose-output="{n}" aria-live="polite">{}</pre>"#,
        e(&p.last_lines.join("\n"))
    );
    h.push_str("</section>");
    if !s.managed {
        // A project WakeDock did not create: where it runs from, and one
        // action to make it a stack.
        h.push_str(r#"<section class="card"><h2>Not managed yet</h2><p class="muted">This Compose project runs from a folder outside the stacks directory. Adopting it moves that folder into the stacks directory; its containers keep running, and it is then a stack like any other.</p>"#);
        if can.admin && crate::model::check_name(&s.name).is_ok() {
            let _ = write!(
                h,
                r#"<form method="post" action="{base}/projects/{n}/adopt" data-confirm="Move {wd} into the stacks directory and manage {n} as a stack?"><input type="hidden" name="confirm" value=""><button class="primary">Adopt</button></form>"#,
                wd = e(s.working_dir.as_deref().unwrap_or("")),
            );
        }
        h.push_str("</section>");
        return h;
    }
    // Files.
    let ro = if can.admin { "" } else { " readonly" };
    h.push_str(r#"<section class="card" aria-labelledby="files-h"><h2 id="files-h">Files</h2>"#);
    h.push_str(&field_errors(p.errors, "name"));
    if can.admin {
        let _ = write!(
            h,
            r#"<form method="post" action="{base}/stacks/{n}/save" class="stack">"#
        );
    }
    let _ = write!(
        h,
        r#"<label for="compose">{} (compose file)</label>{}<textarea id="compose" name="compose" rows="18" spellcheck="false"{ro}{inv}>{}</textarea>"#,
        e(s.compose_file.as_deref().unwrap_or("compose.yaml")),
        field_errors(p.errors, "compose"),
        e(p.compose_text),
        inv = if p.errors.iter().any(|x| x.field.starts_with("compose")) {
            r#" aria-invalid="true""#
        } else {
            ""
        },
    );
    let _ = write!(
        h,
        r#"<label for="env">.env</label>{}<textarea id="env" name="env" rows="6" spellcheck="false"{ro}{inv}>{}</textarea>"#,
        field_errors(p.errors, "env"),
        e(p.env_text),
        inv = if p.errors.iter().any(|x| x.field == "env") {
            r#" aria-invalid="true""#
        } else {
            ""
        },
    );
    if can.admin {
        h.push_str(r#"<p class="muted small">Checked by Docker Compose before it is saved; nothing changes on the engine until you deploy.</p><button class="primary">Save</button></form>"#);
    }
    h.push_str("</section>");
    // History.
    if !p.runs.is_empty() {
        h.push_str(r#"<section class="card"><h2>History</h2><ul class="runs">"#);
        for r in &p.runs {
            let _ = write!(
                h,
                r#"<li data-run="{id}"><details><summary>{kind}: <span class="badge res-{res}">{state}</span>{code} {by}</summary><pre class="log">{lines}</pre></details></li>"#,
                id = e(&r.id),
                kind = e(&r.kind),
                res = if r.state == "succeeded" {
                    "success"
                } else {
                    "failure"
                },
                state = e(&r.state),
                code = r
                    .exit_code
                    .map(|c| format!(" exit {c}"))
                    .unwrap_or_default(),
                by = r
                    .started_by
                    .as_deref()
                    .map(|b| format!("by {}", e(b)))
                    .unwrap_or_default(),
                lines = e(&r.lines.join("\n")),
            );
        }
        h.push_str("</ul></section>");
    }
    if can.admin && s.managed {
        let _ = write!(
            h,
            r#"<section class="card"><h2>Delete</h2><form method="post" action="{base}/stacks/{n}/delete" data-confirm="Delete the stack {n}: take it down and remove its folder?"><input type="hidden" name="confirm" value=""><label><input type="checkbox" name="volumes" value="yes"> Also remove its volumes (data)</label> <button class="danger">Delete stack</button></form></section>"#
        );
    }
    h
}

/// Small templates for a new stack.
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    ("empty", "Empty", "services:\n  app:\n    image: nginx:1.27\n    ports:\n      - \"127.0.0.1:8080:80\"\n"),
    (
        "web-db",
        "Web app and database",
        "services:\n  app:\n    image: ghcr.io/example/app:1\n    ports:\n      - \"127.0.0.1:8080:8080\"\n    environment:\n      DATABASE_URL: postgres://app:${DB_PASSWORD}@db/app\n    depends_on:\n      db:\n        condition: service_healthy\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: ${DB_PASSWORD}\n    volumes:\n      - db:/var/lib/postgresql/data\n    healthcheck:\n      test: [\"CMD\", \"pg_isready\", \"-U\", \"app\"]\n      interval: 5s\nvolumes:\n  db: {}\n",
    ),
    (
        "sleepy",
        "Sleeps when idle (wake-on-request)",
        "x-wakedock: &wakedock\n  wakedock.enable: \"true\"\n  wakedock.idle-timeout: 10m\n\nservices:\n  app:\n    image: traefik/whoami\n    ports:\n      - \"127.0.0.1:18081:80\"\n    labels: *wakedock\n",
    ),
];

/// `GET /new`: the form to create a stack.
pub fn new_page(base: &str, name: &str, compose: &str, env: &str, errors: &[FieldError]) -> String {
    let mut h = String::new();
    h.push_str("<h1>New stack</h1>");
    h.push_str(r#"<p class="muted">Paste a compose file or start from a template. A stack is a folder of the stacks directory; its name is the Compose project's.</p>"#);
    let _ = write!(
        h,
        r#"<form method="get" action="{base}/new" class="inline"><label for="template">Template</label> <select id="template" name="template">"#
    );
    for (id, title, _) in TEMPLATES {
        let _ = write!(h, r#"<option value="{id}">{}</option>"#, e(title));
    }
    h.push_str("</select> <button>Use</button></form>");
    let _ = write!(
        h,
        r#"<form method="post" action="{base}/stacks" class="stack">"#
    );
    let _ = write!(
        h,
        r#"<label for="name">Name</label>{}<input id="name" name="name" value="{}" required pattern="[a-z0-9][a-z0-9_\-]*" maxlength="63">"#,
        field_errors(errors, "name"),
        e(name)
    );
    let _ = write!(
        h,
        r#"<label for="compose">compose.yaml</label>{}<textarea id="compose" name="compose" rows="18" spellcheck="false">{}</textarea>"#,
        field_errors(errors, "compose"),
        e(compose)
    );
    let _ = write!(
        h,
        r#"<label for="env">.env (optional)</label>{}<textarea id="env" name="env" rows="5" spellcheck="false">{}</textarea>"#,
        field_errors(errors, "env"),
        e(env)
    );
    h.push_str(r#"<button class="primary">Create</button></form>"#);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    #[test]
    fn a_viewer_sees_no_action_and_everything_is_escaped() {
        let s = model::stack("web", Some("compose.yaml".into()), true, vec![], false);
        let page = StackPage {
            compose_text: "services: {a: {image: \"<x>\"}}",
            ..Default::default()
        };
        let viewer = stack_page(
            "/p/stacks",
            &s,
            &page,
            Can {
                operate: false,
                admin: false,
            },
        );
        assert!(!viewer.contains("<form"), "{viewer}");
        assert!(viewer.contains("&lt;x&gt;"));
        assert!(viewer.contains("readonly"));
        let admin = stack_page(
            "/p/stacks",
            &s,
            &page,
            Can {
                operate: true,
                admin: true,
            },
        );
        for a in [
            "deploy", "update", "restart", "stop", "down", "save", "delete",
        ] {
            assert!(admin.contains(&format!("/p/stacks/stacks/web/{a}")), "{a}");
        }
        assert!(admin.contains(r#"data-compose-output="web""#));
        // A project outside the stacks directory: no editor, one adopt.
        let outside = model::stack("web", None, false, vec![], false);
        let page = stack_page(
            "/p/stacks",
            &outside,
            &StackPage::default(),
            Can {
                operate: true,
                admin: true,
            },
        );
        assert!(page.contains("/p/stacks/projects/web/adopt"), "{page}");
        assert!(
            !page.contains("textarea") && !page.contains("/deploy"),
            "{page}"
        );
    }
}
