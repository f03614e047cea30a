//! The plugin's routes. The same paths answer the API
//! (`/api/v1/plugins/stacks/...`, JSON) and the pages (`/p/stacks/...`,
//! HTML inside the host's layout, forms); `docs/stacks-api.md` lists them.
//!
//! Who may do what: viewers read; `user` operates (deploy, update,
//! restart, start, stop, down); `admin` also creates, edits, deletes and
//! adopts. The host's `compose` capability runs one action per stack at a
//! time (a second is `409`), audits it and streams its output.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use wakedock_plugin_sdk::auth::{self, Role};
use wakedock_plugin_sdk::compose::{self, Action, ActionState, ActionStatus, ComposeError};
use wakedock_plugin_sdk::{ui, HttpRequest, HttpResponse};

use super::{disk, engine};
use crate::model::{self, check_name, Member, Stack, StackState};
use crate::render::{self, Can, StackPage, Unmanaged};
use crate::validate::FieldError;

/// Longest an API call waits for its action (`?wait=`), in ms; the
/// manifest's wall time per call is 120 s.
const MAX_WAIT_MS: u32 = 110_000;

/// Who is asking, and whether for a page (`Some(base)`) or the API.
struct Ctx<'a> {
    req: &'a HttpRequest,
    base: Option<&'a str>,
    can: Can,
    instance: Option<&'a str>,
}

impl Ctx<'_> {
    fn page(&self) -> bool {
        self.base.is_some()
    }

    fn base(&self) -> &str {
        self.base.unwrap_or("")
    }

    /// The request's fields: a form on pages, a JSON object on the API.
    fn fields(&self) -> Result<BTreeMap<String, Value>, HttpResponse> {
        if self.page() {
            return Ok(ui::form(self.req)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect());
        }
        if self.req.body.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.req
            .json::<BTreeMap<String, Value>>()
            .map_err(|e| HttpResponse::error(400, &e))
    }

    /// An error: a problem document on the API; on a page, back to `to`
    /// with the message shown once.
    fn fail(&self, status: u16, to: &str, msg: &str) -> HttpResponse {
        if self.page() {
            ui::redirect(self.base(), to, false, msg)
        } else {
            HttpResponse::error(status, msg)
        }
    }
}

/// On a page, an action that needs confirming without `confirm=yes` (no
/// script: the host's script asks first and sets it) gets a page that
/// asks; `keep` are fields carried over.
fn unconfirmed(
    ctx: &Ctx<'_>,
    fields: &BTreeMap<String, Value>,
    question: &str,
    path: &str,
    keep: &[&str],
) -> Option<HttpResponse> {
    if !ctx.page() || text_field(fields, "confirm") == "yes" {
        return None;
    }
    let base = ctx.base();
    let hidden: String = keep
        .iter()
        .filter(|k| !text_field(fields, k).is_empty())
        .map(|k| {
            format!(
                r#"<input type="hidden" name="{k}" value="{}">"#,
                ui::escape(&text_field(fields, k))
            )
        })
        .collect();
    Some(ui::page(
        "Confirm",
        &format!(
            r#"<section class="card"><h1>Confirm</h1><p>{q}</p><form method="post" action="{base}{path}" class="inline"><input type="hidden" name="confirm" value="yes">{hidden}<button class="danger">Yes</button></form> <a class="button" href="{base}/">Cancel</a></section>"#,
            q = ui::escape(question),
        ),
    ))
}

fn text_field(fields: &BTreeMap<String, Value>, key: &str) -> String {
    match fields.get(key) {
        Some(Value::String(s)) => s.replace("\r\n", "\n"),
        _ => String::new(),
    }
}

fn flag(fields: &BTreeMap<String, Value>, key: &str) -> bool {
    match fields.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "yes" | "true" | "on" | "1"),
        _ => false,
    }
}

/// The caller's rights.
fn can() -> Can {
    match auth::caller().map(|c| c.role) {
        Some(Role::Admin) => Can {
            operate: true,
            admin: true,
        },
        Some(Role::User) => Can {
            operate: true,
            admin: false,
        },
        _ => Can {
            operate: false,
            admin: false,
        },
    }
}

pub fn route(req: &HttpRequest, instance: Option<&str>) -> HttpResponse {
    let ctx = Ctx {
        req,
        base: ui::page_base(req),
        can: can(),
        instance,
    };
    let segs: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", []) | ("GET", ["stacks"]) => list(&ctx),
        ("GET", ["new"]) if ctx.page() => new_form(&ctx),
        ("POST", ["stacks"]) => create(&ctx),
        ("GET", ["stacks", name]) => show(&ctx, name, &[], 200),
        ("PUT", ["stacks", name]) | ("POST", ["stacks", name, "save"]) => save(&ctx, name),
        ("DELETE", ["stacks", name]) | ("POST", ["stacks", name, "delete"]) => delete(&ctx, name),
        ("POST", ["stacks", name, verb]) => act(&ctx, name, verb),
        ("GET", ["stacks", name, "actions", id]) => action_status(&ctx, name, id),
        ("POST", ["projects", name, "adopt"]) => adopt(&ctx, name),
        _ => HttpResponse::not_found(),
    }
}

// ---------------------------------------------------------------------------
// Reading

/// Every stack folder and every Compose project on the engine.
struct Overview {
    managed: Vec<Stack>,
    unmanaged: Vec<Stack>,
    problems: Vec<String>,
}

fn sleeping(name: &str, members: &[Member], wake: &BTreeMap<String, String>) -> bool {
    wake.get(&model::wake_service(name, members))
        .map(String::as_str)
        == Some("asleep")
}

fn overview(instance: Option<&str>) -> Result<Overview, String> {
    let (folders, mut problems) = disk::folders()?;
    let mut by_project = match engine::members() {
        Ok(m) => model::by_project(m),
        Err(e) => {
            problems.push(format!("The engine's containers could not be listed: {e}"));
            BTreeMap::new()
        }
    };
    let wake = engine::wake_states();
    let mut managed = Vec::with_capacity(folders.len());
    for f in folders {
        let members = by_project.remove(&f.name).unwrap_or_default();
        let asleep = sleeping(&f.name, &members, &wake);
        managed.push(model::stack(&f.name, f.compose_file, true, members, asleep));
    }
    let unmanaged = by_project
        .into_iter()
        .filter(|(_, members)| model::in_scope(instance, members))
        .map(|(name, members)| {
            let asleep = sleeping(&name, &members, &wake);
            model::stack(&name, None, false, members, asleep)
        })
        .collect();
    Ok(Overview {
        managed,
        unmanaged,
        problems,
    })
}

fn list(ctx: &Ctx<'_>) -> HttpResponse {
    let o = match overview(ctx.instance) {
        Ok(o) => o,
        Err(e) => return HttpResponse::error(503, &e),
    };
    if ctx.page() {
        let unmanaged: Vec<Unmanaged> = o
            .unmanaged
            .into_iter()
            .map(|stack| Unmanaged { stack })
            .collect();
        return ui::page(
            "Stacks",
            &render::list_page(ctx.base(), &o.managed, &unmanaged, &o.problems, ctx.can),
        );
    }
    HttpResponse::json(
        200,
        &json!({"stacks": o.managed, "projects": o.unmanaged, "problems": o.problems}),
    )
}

/// One stack, with what `docker compose ps` adds (ports, exit codes).
fn one(name: &str, instance: Option<&str>) -> Result<Option<Stack>, String> {
    let managed = disk::exists(name);
    let members: Vec<Member> = engine::members()?
        .into_iter()
        .filter(|m| m.labels.get(model::labels::PROJECT).map(String::as_str) == Some(name))
        .collect();
    if !managed && (members.is_empty() || !model::in_scope(instance, &members)) {
        return Ok(None);
    }
    let mut members = members;
    if managed && !members.is_empty() {
        if let Ok(ps) = compose::ps(name) {
            for m in &mut members {
                if let Some(c) = ps.iter().find(|c| c.name == m.name) {
                    m.ports = c.ports.clone();
                    if m.state != "running" {
                        m.exit_code = Some(c.exit_code);
                    }
                }
            }
        }
    }
    let compose_file = if managed {
        disk::compose_file_of(name)
    } else {
        None
    };
    let asleep = sleeping(name, &members, &engine::wake_states());
    Ok(Some(model::stack(
        name,
        compose_file,
        managed,
        members,
        asleep,
    )))
}

/// An action's status as the API shows it.
#[derive(Serialize)]
struct ActionView {
    id: String,
    project: String,
    kind: String,
    command: String,
    state: &'static str,
    exit_code: Option<i32>,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
    started_by: Option<String>,
    lines: Vec<String>,
    lines_dropped: u64,
}

fn state_word(s: ActionState) -> &'static str {
    match s {
        ActionState::Running => "running",
        ActionState::Succeeded => "succeeded",
        ActionState::Failed => "failed",
        ActionState::TimedOut => "timed-out",
    }
}

fn view(s: ActionStatus) -> ActionView {
    ActionView {
        state: state_word(s.state),
        id: s.id,
        project: s.project,
        kind: s.kind,
        command: s.command,
        exit_code: s.exit_code,
        started_at_ms: s.started_at_ms,
        finished_at_ms: s.finished_at_ms,
        started_by: s.started_by,
        lines: s.lines,
        lines_dropped: s.lines_dropped,
    }
}

fn bad_name(ctx: &Ctx<'_>, name: &str) -> Option<HttpResponse> {
    check_name(name).err().map(|m| {
        if ctx.page() {
            ui::page_with_status(400, "Stacks", &format!("<h1>Not a stack</h1><p class=\"flash err\">{}</p>", ui::escape(&m)))
        } else {
            HttpResponse::json(400, &json!({"status": 400, "detail": m, "errors": [FieldError::new("name", m.clone())]}))
        }
    })
}

fn show(ctx: &Ctx<'_>, name: &str, errors: &[FieldError], status: u16) -> HttpResponse {
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    let stack = match one(name, ctx.instance) {
        Ok(Some(s)) => s,
        Ok(None) => return ctx.fail(404, "/", &format!("There is no stack {name}.")),
        Err(e) => return HttpResponse::error(503, &e),
    };
    let (compose_file, compose_text, env_text) = if stack.managed {
        match disk::read(name) {
            Ok(t) => t,
            Err(e) => return HttpResponse::error(500, &e),
        }
    } else {
        (None, String::new(), String::new())
    };
    let last = if stack.managed {
        compose::last(name).ok().flatten()
    } else {
        None
    };
    let runs = engine::runs(name, 10);
    if !ctx.page() {
        return HttpResponse::json(
            status,
            &json!({
                "stack": stack,
                "compose_file": compose_file,
                "compose": compose_text,
                "env": env_text,
                "declared_services": model::declared_services(&compose_text),
                "last_action": last.map(view),
                "runs": runs,
                "errors": errors,
            }),
        );
    }
    let (last_kind, last_state, last_lines) = match last {
        Some(a) => (
            Some(a.kind.clone()),
            Some(state_word(a.state).to_owned()),
            a.lines,
        ),
        None => (None, None, Vec::new()),
    };
    let page = StackPage {
        compose_text: &compose_text,
        env_text: &env_text,
        errors,
        last_kind,
        last_state,
        last_lines,
        runs,
    };
    let html = if stack.managed || !stack.services.is_empty() {
        render::stack_page(ctx.base(), &stack, &page, ctx.can)
    } else {
        String::new()
    };
    ui::page_with_status(status, &format!("Stack {name}"), &html)
}

fn new_form(ctx: &Ctx<'_>) -> HttpResponse {
    if !ctx.can.admin {
        return ui::page_with_status(
            403,
            "New stack",
            "<h1>New stack</h1><p class=\"flash err\">Only an admin creates stacks.</p>",
        );
    }
    let template = ctx.req.query_param("template").unwrap_or("empty");
    let text = render::TEMPLATES
        .iter()
        .find(|(id, _, _)| *id == template)
        .map(|(_, _, t)| *t)
        .unwrap_or(render::TEMPLATES[0].2);
    ui::page(
        "New stack",
        &render::new_page(ctx.base(), "", text, "", &[]),
    )
}

// ---------------------------------------------------------------------------
// Files

fn refused(ctx: &Ctx<'_>, what: &str, to: &str) -> HttpResponse {
    ctx.fail(403, to, &format!("Your role may not {what}."))
}

fn invalid(errors: Vec<FieldError>) -> HttpResponse {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    HttpResponse::json(
        422,
        &json!({"status": 422, "detail": detail, "errors": errors}),
    )
}

fn create(ctx: &Ctx<'_>) -> HttpResponse {
    if !ctx.can.admin {
        return refused(ctx, "create stacks", "/");
    }
    let fields = match ctx.fields() {
        Ok(f) => f,
        Err(r) => return r,
    };
    let name = text_field(&fields, "name").trim().to_owned();
    let compose_text = text_field(&fields, "compose");
    let env_text = text_field(&fields, "env");
    match disk::save(&name, &compose_text, &env_text, true) {
        Ok(()) => {
            if ctx.page() {
                ui::redirect(
                    ctx.base(),
                    &format!("/stacks/{name}"),
                    true,
                    &format!("Stack {name} created. Deploy it when ready."),
                )
            } else {
                HttpResponse::json(201, &json!({"name": name}))
            }
        }
        Err(errors) if ctx.page() => ui::page_with_status(
            422,
            "New stack",
            &render::new_page(ctx.base(), &name, &compose_text, &env_text, &errors),
        ),
        Err(errors) => invalid(errors),
    }
}

fn save(ctx: &Ctx<'_>, name: &str) -> HttpResponse {
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    if !ctx.can.admin {
        return refused(ctx, "edit stacks", &format!("/stacks/{name}"));
    }
    let fields = match ctx.fields() {
        Ok(f) => f,
        Err(r) => return r,
    };
    let compose_text = text_field(&fields, "compose");
    let env_text = text_field(&fields, "env");
    match disk::save(name, &compose_text, &env_text, false) {
        Ok(()) if ctx.page() => ui::redirect(
            ctx.base(),
            &format!("/stacks/{name}"),
            true,
            "Saved. Deploy to apply it.",
        ),
        Ok(()) => HttpResponse::json(200, &json!({"name": name, "saved": true})),
        Err(errors) if ctx.page() => {
            // Show what was typed, with its errors; the files are unchanged.
            let stack = match one(name, ctx.instance) {
                Ok(Some(s)) => s,
                _ => model::stack(name, disk::compose_file_of(name), true, Vec::new(), false),
            };
            let page = StackPage {
                compose_text: &compose_text,
                env_text: &env_text,
                errors: &errors,
                ..Default::default()
            };
            ui::page_with_status(
                422,
                &format!("Stack {name}"),
                &render::stack_page(ctx.base(), &stack, &page, ctx.can),
            )
        }
        Err(errors) => invalid(errors),
    }
}

// ---------------------------------------------------------------------------
// Actions

/// The Compose action behind a verb.
fn action_of(verb: &str) -> Option<Action> {
    let up = |pull| {
        Action::Up(compose::UpOptions {
            services: Vec::new(),
            pull,
            remove_orphans: true,
            force_recreate: false,
        })
    };
    Some(match verb {
        "deploy" => up(compose::PullPolicy::Missing),
        // Pull every image, then recreate only the services whose image or
        // configuration changed (Compose's config hash): one action.
        "update" => up(compose::PullPolicy::Always),
        "restart" => Action::Restart(Vec::new()),
        "start" => Action::Start(Vec::new()),
        "stop" => Action::Stop(Vec::new()),
        "down" => Action::Down(compose::DownOptions {
            volumes: false,
            remove_orphans: true,
        }),
        _ => return None,
    })
}

fn compose_failure(ctx: &Ctx<'_>, name: &str, e: ComposeError) -> HttpResponse {
    let to = format!("/stacks/{name}");
    match e {
        ComposeError::Conflict(id) => {
            if ctx.page() {
                ctx.fail(
                    409,
                    &to,
                    "Another action is running on this stack; wait for it to finish.",
                )
            } else {
                HttpResponse::json(
                    409,
                    &json!({"status": 409, "detail": format!("another action ({id}) is running on {name}"), "running": id}),
                )
            }
        }
        ComposeError::NotFound => ctx.fail(404, "/", &format!("There is no stack {name}.")),
        ComposeError::InvalidProject(lines) => {
            if ctx.page() {
                ctx.fail(422, &to, &lines.join("; "))
            } else {
                invalid(crate::validate::from_compose(&lines))
            }
        }
        ComposeError::Invalid(m) | ComposeError::PermissionDenied(m) => ctx.fail(400, &to, &m),
        ComposeError::Timeout => ctx.fail(504, &to, "Compose did not answer in time."),
        ComposeError::Unavailable(m) => ctx.fail(503, &to, &format!("Compose is unavailable: {m}")),
    }
}

/// `?wait=<ms>` on the API: wait (host-side) for the action to end.
fn wait_ms(req: &HttpRequest) -> Option<u32> {
    req.query_param("wait")
        .map(|v| v.parse::<u32>().unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS))
}

fn act(ctx: &Ctx<'_>, name: &str, verb: &str) -> HttpResponse {
    let Some(action) = action_of(verb) else {
        return HttpResponse::not_found();
    };
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    if !ctx.can.operate {
        return refused(ctx, &format!("{verb} stacks"), &format!("/stacks/{name}"));
    }
    if !disk::exists(name) {
        return ctx.fail(
            404,
            "/",
            &format!(
                "There is no stack {name} in the stacks directory (adopt a project to manage it)."
            ),
        );
    }
    if (verb == "deploy" || verb == "update") && disk::compose_file_of(name).is_none() {
        return ctx.fail(
            422,
            &format!("/stacks/{name}"),
            "The stack has no compose file yet.",
        );
    }
    let question = match verb {
        "update" => Some(format!(
            "Pull the images of {name} and recreate what changed?"
        )),
        "restart" => Some(format!("Restart {name}?")),
        "stop" => Some(format!("Stop {name}?")),
        "down" => Some(format!(
            "Take {name} down (remove its containers and networks, keep its volumes)?"
        )),
        _ => None,
    };
    if let Some(q) = question {
        let fields = match ctx.fields() {
            Ok(f) => f,
            Err(r) => return r,
        };
        if let Some(r) = unconfirmed(ctx, &fields, &q, &format!("/stacks/{name}/{verb}"), &[]) {
            return r;
        }
    }
    let id = match compose::start(name, &action) {
        Ok(id) => id,
        Err(e) => return compose_failure(ctx, name, e),
    };
    if ctx.page() {
        return ui::redirect(
            ctx.base(),
            &format!("/stacks/{name}"),
            true,
            &format!("{verb}: started; its output follows below."),
        );
    }
    match wait_ms(ctx.req) {
        Some(ms) => match compose::wait(&id, ms) {
            Ok(s) => HttpResponse::json(200, &view(s)),
            Err(e) => compose_failure(ctx, name, e),
        },
        None => HttpResponse::json(202, &json!({"id": id, "project": name, "kind": verb})),
    }
}

fn action_status(ctx: &Ctx<'_>, name: &str, id: &str) -> HttpResponse {
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    match compose::wait(id, wait_ms(ctx.req).unwrap_or(0)) {
        Ok(s) if s.project == name => HttpResponse::json(200, &view(s)),
        Ok(_) | Err(ComposeError::NotFound) => {
            HttpResponse::error(404, "no such action on this stack")
        }
        Err(e) => compose_failure(ctx, name, e),
    }
}

fn delete(ctx: &Ctx<'_>, name: &str) -> HttpResponse {
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    let to = format!("/stacks/{name}");
    if !ctx.can.admin {
        return refused(ctx, "delete stacks", &to);
    }
    if !disk::exists(name) {
        return ctx.fail(404, "/", &format!("There is no stack {name}."));
    }
    let fields = match ctx.fields() {
        Ok(f) => f,
        Err(r) => return r,
    };
    let volumes = flag(&fields, "volumes") || ctx.req.query_param("volumes") == Some("true");
    let q = format!(
        "Delete the stack {name}: take it down and remove its folder{}?",
        if volumes {
            " and its volumes (data)"
        } else {
            "; its volumes are kept"
        }
    );
    if let Some(r) = unconfirmed(
        ctx,
        &fields,
        &q,
        &format!("/stacks/{name}/delete"),
        &["volumes"],
    ) {
        return r;
    }
    // Down first (containers and networks; volumes only when asked), then
    // the folder. A failed down leaves everything in place.
    let has_containers = one(name, ctx.instance)
        .ok()
        .flatten()
        .is_some_and(|s| s.state != StackState::NotDeployed);
    if has_containers || volumes {
        let down = Action::Down(compose::DownOptions {
            volumes,
            remove_orphans: true,
        });
        let id = match compose::start(name, &down) {
            Ok(id) => id,
            Err(e) => return compose_failure(ctx, name, e),
        };
        match compose::wait(&id, MAX_WAIT_MS) {
            Ok(s) if s.state == ActionState::Succeeded => {}
            Ok(s) if s.state == ActionState::Running => {
                return ctx.fail(
                    504,
                    &to,
                    "Taking the stack down is still running; delete it again once it finished.",
                )
            }
            Ok(s) => {
                return ctx.fail(
                    500,
                    &to,
                    &format!(
                        "Taking the stack down failed, nothing was removed: {}",
                        s.lines.last().cloned().unwrap_or_default()
                    ),
                )
            }
            Err(e) => return compose_failure(ctx, name, e),
        }
    }
    if let Err(e) = disk::remove(name) {
        return ctx.fail(500, &to, &e);
    }
    engine::forget_runs(name);
    if ctx.page() {
        ui::redirect(
            ctx.base(),
            "/",
            true,
            &format!(
                "Stack {name} deleted{}.",
                if volumes {
                    " with its volumes"
                } else {
                    "; its volumes were kept"
                }
            ),
        )
    } else {
        HttpResponse::json(
            200,
            &json!({"name": name, "deleted": true, "volumes_removed": volumes}),
        )
    }
}

fn adopt(ctx: &Ctx<'_>, name: &str) -> HttpResponse {
    if let Some(r) = bad_name(ctx, name) {
        return r;
    }
    if !ctx.can.admin {
        return refused(ctx, "adopt projects", "/");
    }
    let fields = match ctx.fields() {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q =
        format!("Move the folder of {name} into the stacks directory and manage it as a stack?");
    if let Some(r) = unconfirmed(ctx, &fields, &q, &format!("/projects/{name}/adopt"), &[]) {
        return r;
    }
    // Only a project of this install (see `wakedock.instance`).
    let outside = one(name, ctx.instance)
        .ok()
        .flatten()
        .is_some_and(|s| !s.managed);
    if !outside {
        return ctx.fail(
            404,
            "/",
            &format!(
                "No Compose project {name} of this install runs outside the stacks directory."
            ),
        );
    }
    match compose::adopt(name) {
        Ok(()) if ctx.page() => ui::redirect(
            ctx.base(),
            &format!("/stacks/{name}"),
            true,
            &format!("{name} is now a stack in the stacks directory."),
        ),
        Ok(()) => HttpResponse::json(200, &json!({"name": name, "adopted": true})),
        Err(ComposeError::NotFound) => ctx.fail(
            404,
            "/",
            &format!("No Compose project {name} runs on the engine."),
        ),
        Err(e) => compose_failure(ctx, name, e),
    }
}
