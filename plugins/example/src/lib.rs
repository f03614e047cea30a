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
    auth, clock, containers, events, export_plugin, log, metrics, storage, Config,
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
