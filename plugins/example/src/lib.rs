//! Example WakeDock plugin.
//!
//! - `GET /hello` answers JSON with a visit counter persisted in storage (so
//!   it survives instance recycling and host restarts);
//! - `GET /whoami` shows the authenticated caller the host passed in;
//! - `GET /containers` lists the containers this plugin may see (the grant's
//!   label selector applies);
//! - every tick it counts visible running containers, sets a gauge and
//!   publishes a `example.tick` event;
//! - it counts container events by kind in a Prometheus counter.

use serde::Deserialize;
use serde_json::json;
use wakedock_plugin_sdk::{
    auth, clock, containers, events, export_plugin, log, metrics, storage, ui, Config,
    ContainerEventKind, ContainerState, Event, HttpRequest, HttpResponse, Plugin,
};

/// Settings from the `[config]` table of `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello from WakeDock".to_owned()
}

struct Example {
    settings: Settings,
    started_ns: u64,
}

const HITS_KEY: &str = "hello/hits";

impl Plugin for Example {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        // Registration is idempotent: every new instance may call it.
        metrics::register_counter("hello_requests_total", "GET /hello calls", &[])
            .map_err(|e| e.describe())?;
        metrics::register_gauge("running_containers", "Visible running containers", &[])
            .map_err(|e| e.describe())?;
        metrics::register_counter("container_events_total", "Container events seen", &["kind"])
            .map_err(|e| e.describe())?;
        Ok(Example {
            settings,
            started_ns: clock::monotonic_ns(),
        })
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Container(ev) = event {
            let kind = match ev.kind {
                ContainerEventKind::Started => "started",
                ContainerEventKind::Stopped => "stopped",
                ContainerEventKind::Died => "died",
                ContainerEventKind::HealthChanged => "health_changed",
            };
            if let Err(e) = metrics::counter_add("container_events_total", &[kind], 1.0) {
                log::warn(&format!("counting event: {}", e.describe()));
            }
        }
    }

    fn on_tick(&mut self) {
        let running = match containers::list(&[], false) {
            Ok(list) => list
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .count(),
            Err(e) => {
                log::warn(&format!("listing containers: {}", e.describe()));
                return;
            }
        };
        if let Err(e) = metrics::gauge_set("running_containers", &[], running as f64) {
            log::warn(&format!("setting gauge: {}", e.describe()));
        }
        let payload = json!({ "running": running, "at_ms": clock::now_ms() });
        if let Err(e) = events::publish_json("example.tick", &payload) {
            log::warn(&format!("publishing tick: {}", e.describe()));
        }
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        if let Some(base) = ui::page_base(&req) {
            return page(&req, base);
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/hello") => self.hello(),
            ("GET", "/whoami") => match auth::caller() {
                Some(c) => HttpResponse::json(
                    200,
                    &json!({
                        "user": c.username,
                        "role": match c.role {
                            auth::Role::Viewer => "viewer",
                            auth::Role::User => "user",
                            auth::Role::Admin => "admin",
                        },
                        "can_write_containers": auth::has_permission("containers:write"),
                    }),
                ),
                None => HttpResponse::error(401, "no caller"),
            },
            ("GET", "/containers") => match containers::list_all() {
                Ok(list) => {
                    let items: Vec<_> = list
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "name": c.name,
                                "image": c.image,
                                "state": state_name(c.state),
                            })
                        })
                        .collect();
                    HttpResponse::json(200, &json!({ "containers": items }))
                }
                Err(e) => HttpResponse::error(502, &e.describe()),
            },
            _ => HttpResponse::not_found(),
        }
    }
}

/// The plugin's page (`/p/example/`), shown inside the host's layout: a
/// visit counter and a form that posts back to the plugin. It also tries
/// what a hostile page would (a script calling the host's API, a form
/// posting to it and to another plugin's pages): the host strips the
/// script, and its policy and form tokens refuse the posts (see
/// tests/ui.rs).
fn page(req: &HttpRequest, base: &str) -> HttpResponse {
    let who = auth::caller().map(|c| c.username).unwrap_or_default();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => {
            let note = storage::get_json::<String>("note")
                .ok()
                .flatten()
                .unwrap_or_default();
            let html = format!(
                r#"<h1>Example plugin</h1>
<p class="muted">A page of a third-party plugin, inside WakeDock's layout. Hello, {who}.</p>
<p data-example-note>Note: {note}</p>
<form method="post" action="{base}/note"><label for="note">Note</label><input id="note" name="note" value=""><button class="primary" data-example-save>Save</button></form>
<script>window.examplePwned = true; fetch("/api/v1/users", {{method: "POST"}});</script>
<form method="post" action="/api/v1/users" data-example-host><input type="hidden" name="username" value="mallory"><button data-example-host-post>Post to the host's API</button></form>
<form method="post" action="/p/stacks/stacks" data-example-other><input type="hidden" name="name" value="mallory"><button data-example-other-post>Post to another plugin</button></form>"#,
                who = ui::escape(&who),
                note = ui::escape(&note),
            );
            ui::page("Example", &html)
        }
        ("POST", "/note") => {
            let note = ui::form(req)
                .into_iter()
                .find(|(k, _)| k == "note")
                .map(|(_, v)| v)
                .unwrap_or_default();
            match storage::set_json("note", &note) {
                Ok(()) => ui::redirect(base, "/", true, "Note saved."),
                Err(e) => ui::redirect(base, "/", false, &e.describe()),
            }
        }
        _ => ui::page_with_status(404, "Example", "<h1>Not here</h1>"),
    }
}

fn state_name(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Removing => "removing",
        ContainerState::Exited => "exited",
        ContainerState::Dead => "dead",
    }
}

impl Example {
    fn hello(&self) -> HttpResponse {
        let hits = match storage::get_json::<u64>(HITS_KEY) {
            Ok(v) => v.unwrap_or(0) + 1,
            Err(e) => return HttpResponse::error(500, &e.describe()),
        };
        if let Err(e) = storage::set_json(HITS_KEY, &hits) {
            return HttpResponse::error(507, &e.describe());
        }
        if let Err(e) = metrics::counter_add("hello_requests_total", &[], 1.0) {
            log::warn(&format!("counting request: {}", e.describe()));
        }
        let uptime_ms = (clock::monotonic_ns().saturating_sub(self.started_ns)) / 1_000_000;
        HttpResponse::json(
            200,
            &json!({
                "message": self.settings.greeting,
                "hits": hits,
                "instance_uptime_ms": uptime_ms,
            }),
        )
    }
}

export_plugin!(Example);
