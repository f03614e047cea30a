//! Glue between the policy modules and the host (wasm only). First
//! version: see the crate README section in the report for what is missing.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;
use wakedock_plugin_sdk::{
    auth, clock, containers, events, export_plugin, log, storage, Config, Container,
    ContainerEventKind, ContainerState, Event, Health, HttpRequest, HttpResponse, Plugin,
};

use crate::service::{
    defs_from_labels, parse_def_list, Catalog, LabeledContainer, ReadyRule, Service, ServiceDef,
    ValidationError, WakeConfig,
};
use crate::session::{plan_sleep, Sessions};
use crate::state::{derive_state, MemberStatus, ServiceState, State};

const SESSIONS_KEY: &str = "sessions";
const API_SERVICES_KEY: &str = "api/services";
const STATES_KEY: &str = "states";
const EXIT_PREFIX: &str = "exit/";
const READY_PREFIX: &str = "ready/";

struct Wake {
    config_defs: Vec<ServiceDef>,
    config_errors: Vec<ValidationError>,
    self_container: Option<String>,
}

#[derive(Deserialize)]
struct Activity {
    services: BTreeMap<String, Counts>,
}

#[derive(Deserialize)]
struct Counts {
    #[serde(default)]
    requests: u64,
    #[serde(default)]
    open_connections: u64,
}

fn labeled(c: &Container) -> LabeledContainer {
    LabeledContainer {
        name: c.name.clone(),
        labels: c.labels.iter().cloned().collect(),
    }
}

fn load_sessions() -> Sessions {
    storage::get_json::<Sessions>(SESSIONS_KEY)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn save_sessions(s: &Sessions) {
    if let Err(e) = storage::set_json(SESSIONS_KEY, s) {
        log::error(&format!("saving sessions: {}", e.describe()));
    }
}

impl Wake {
    /// The catalog with selector services resolved, and every container.
    fn catalog(&self) -> Result<(Catalog, Vec<Container>), String> {
        let all = containers::list_all().map_err(|e| e.describe())?;
        let labeled: Vec<LabeledContainer> = all.iter().map(labeled).collect();
        let api: Vec<ServiceDef> = storage::get_json(API_SERVICES_KEY)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut cat = Catalog::build(&self.config_defs, &api, &defs_from_labels(&labeled));
        cat.errors.extend(self.config_errors.iter().cloned());
        let selector_services: Vec<String> = cat
            .services
            .values()
            .filter(|s| s.selector.is_some())
            .map(|s| s.name.clone())
            .collect();
        for name in selector_services {
            let s = cat.services.remove(&name).expect("listed");
            let sel = s.selector.clone().expect("selector service");
            let names = labeled
                .iter()
                .filter(|c| c.labels.get(&sel.key) == Some(&sel.value))
                .map(|c| c.name.clone())
                .collect();
            match s.with_members(names) {
                Ok(s) => {
                    cat.services.insert(name, s);
                }
                Err(errs) => cat.errors.extend(errs),
            }
        }
        Ok((cat, all))
    }

    fn member_status(service: &Service, c: Option<&Container>) -> MemberStatus {
        let Some(c) = c else {
            return MemberStatus::Missing;
        };
        match c.state {
            ContainerState::Created => MemberStatus::Created,
            ContainerState::Paused => MemberStatus::Paused,
            ContainerState::Restarting => MemberStatus::Restarting,
            ContainerState::Removing => MemberStatus::Removing,
            ContainerState::Dead => MemberStatus::Dead,
            ContainerState::Exited => MemberStatus::Exited {
                code: storage::get_json::<i32>(&format!("{EXIT_PREFIX}{}", c.name))
                    .ok()
                    .flatten(),
            },
            ContainerState::Running => {
                let ready = match service.ready_rule(&c.name, c.health != Health::None) {
                    ReadyRule::DockerHealth => c.health == Health::Healthy,
                    // Not observable from a listing: ready once an
                    // await-ready succeeded for this start of the container.
                    _ => {
                        c.started_at_ms.is_some()
                            && storage::get_json::<u64>(&format!("{READY_PREFIX}{}", c.name))
                                .ok()
                                .flatten()
                                == c.started_at_ms
                    }
                };
                MemberStatus::Running { ready }
            }
        }
    }

    fn publish_states(&self, cat: &Catalog, all: &[Container]) {
        let by_name: BTreeMap<&str, &Container> =
            all.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut prev: BTreeMap<String, String> = storage::get_json(STATES_KEY)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut changed = false;
        for s in cat.services.values() {
            let members = s
                .members
                .iter()
                .map(|m| {
                    (
                        m.clone(),
                        Self::member_status(s, by_name.get(m.as_str()).copied()),
                    )
                })
                .collect();
            let previous = prev.get(&s.name).map(|p| match p.as_str() {
                "waking" => State::Waking,
                "awake" => State::Awake,
                "going-to-sleep" => State::GoingToSleep,
                _ => State::Asleep,
            });
            let state = derive_state(s, &members, previous.as_ref());
            let key = state.name().as_str().to_owned();
            if prev.get(&s.name) != Some(&key) {
                changed = true;
                prev.insert(s.name.clone(), key);
                if let Err(e) = events::publish_json("wake.state", &ServiceState::of(s, &state)) {
                    log::warn(&format!("publishing wake.state: {}", e.describe()));
                }
            }
        }
        if changed {
            let _ = storage::set_json(STATES_KEY, &prev);
        }
    }

    fn wake(&self, name: &str) -> HttpResponse {
        let started = clock::now_ms();
        let (cat, all) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return HttpResponse::error(503, &format!("docker_unavailable: {e}")),
        };
        let Some(s) = cat.services.get(name) else {
            return HttpResponse::error(404, "unknown_service");
        };
        let deadline = started.saturating_add(s.wake_timeout_ms);
        let by_name: BTreeMap<&str, &Container> =
            all.iter().map(|c| (c.name.as_str(), c)).collect();
        for wave in s.start_waves() {
            for m in &wave {
                let running = by_name
                    .get(m.as_str())
                    .is_some_and(|c| c.state == ContainerState::Running);
                if !running {
                    if let Err(e) = containers::start(m) {
                        if s.is_required(m) {
                            return HttpResponse::error(
                                502,
                                &format!("starting \"{m}\": {}", e.describe()),
                            );
                        }
                        log::warn(&format!("starting optional \"{m}\": {}", e.describe()));
                    }
                }
            }
            for m in wave.iter().filter(|m| s.is_required(m)) {
                let left = deadline.saturating_sub(clock::now_ms());
                if left == 0 {
                    return HttpResponse::error(504, "wake_timeout");
                }
                let left = u32::try_from(left).unwrap_or(u32::MAX);
                match containers::await_ready(m, left) {
                    Ok(r) => {
                        // Never ready merely because it runs.
                        if r == containers::Readiness::Running && !s.is_one_shot(m) {
                            return HttpResponse::error(
                                502,
                                &format!(
                                    "\"{m}\" has no healthcheck and no port: set wakedock.ready"
                                ),
                            );
                        }
                        if let Ok(c) = containers::inspect(m) {
                            if let Some(at) = c.started_at_ms {
                                let _ = storage::set_json(&format!("{READY_PREFIX}{m}"), &at);
                            }
                        }
                    }
                    Err(wakedock_plugin_sdk::Error::Timeout) => {
                        return HttpResponse::error(504, "wake_timeout")
                    }
                    Err(e) if s.is_one_shot(m) => {
                        // A one-shot member that exited: done if exit 0 was recorded.
                        let code = storage::get_json::<i32>(&format!("{EXIT_PREFIX}{m}"))
                            .ok()
                            .flatten();
                        if code != Some(0) {
                            return HttpResponse::error(
                                502,
                                &format!("one-shot \"{m}\": {} (exit code {code:?})", e.describe()),
                            );
                        }
                    }
                    Err(e) => {
                        return HttpResponse::error(502, &format!("\"{m}\": {}", e.describe()))
                    }
                }
            }
        }
        let now = clock::now_ms();
        let mut sessions = load_sessions();
        sessions.woke(name, now, s.idle_timeout_ms);
        save_sessions(&sessions);
        HttpResponse::json(
            200,
            &json!({"service": name, "state": "awake", "waited_ms": now - started}),
        )
    }

    fn activity(&self, req: &HttpRequest) -> HttpResponse {
        let body: Activity = match req.json() {
            Ok(b) => b,
            Err(e) => return HttpResponse::error(400, &e),
        };
        let (cat, _) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return HttpResponse::error(503, &e),
        };
        let now = clock::now_ms();
        let mut sessions = load_sessions();
        for (name, c) in &body.services {
            if let Some(s) = cat.services.get(name) {
                sessions.record_activity(
                    name,
                    now,
                    c.requests,
                    c.open_connections,
                    s.idle_timeout_ms,
                );
            }
        }
        save_sessions(&sessions);
        HttpResponse {
            status: 204,
            headers: vec![],
            body: vec![],
        }
    }
}

impl Plugin for Wake {
    fn init(config: Config) -> Result<Self, String> {
        let cfg = WakeConfig::from_json(config.value())?;
        let (config_defs, config_errors) = parse_def_list(&cfg.services);
        for e in &config_errors {
            log::error(&e.to_string());
        }
        Ok(Wake {
            config_defs,
            config_errors,
            self_container: cfg.self_container,
        })
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Container(ev) = event {
            if matches!(
                ev.kind,
                ContainerEventKind::Stopped | ContainerEventKind::Died
            ) {
                if let Some(code) = ev.exit_code {
                    let _ =
                        storage::set_json(&format!("{EXIT_PREFIX}{}", ev.container_name), &code);
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let (cat, all) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return log::warn(&format!("listing containers: {e}")),
        };
        let now = clock::now_ms();
        let running: BTreeMap<&str, bool> = all
            .iter()
            .map(|c| (c.name.as_str(), c.state == ContainerState::Running))
            .collect();
        let mut sessions = load_sessions();
        let before = sessions.clone();
        sessions.retain_known(|n| cat.services.contains_key(n));
        for s in cat.services.values() {
            if s.members
                .iter()
                .any(|m| running.get(m.as_str()) == Some(&true))
                && sessions.adopt_running(&s.name, now, s.idle_timeout_ms)
            {
                log::info(&format!(
                    "service \"{}\" found running: session started",
                    s.name
                ));
            }
        }
        for name in sessions.due(now, cat.services.values()) {
            let s = &cat.services[&name];
            let Some(plan) = plan_sleep(s, self.self_container.as_deref()) else {
                continue;
            };
            let mut ok = true;
            for m in plan.waves.iter().flatten() {
                if running.get(m.as_str()) != Some(&true) {
                    continue;
                }
                // `pause` needs containers.pause (WIT 0.1.x addition): stop until then.
                if let Err(e) = containers::stop(m, None) {
                    log::warn(&format!("stopping \"{m}\" of \"{name}\": {}", e.describe()));
                    ok = false;
                }
            }
            if ok {
                sessions.end(&name);
                log::info(&format!("service \"{name}\" idle: put to sleep"));
            }
        }
        if sessions != before {
            save_sessions(&sessions);
        }
        self.publish_states(&cat, &all);
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        // Internal routes: only the host (a synthetic admin caller).
        if !matches!(auth::caller(), Some(c) if c.role == auth::Role::Admin) {
            return HttpResponse::error(403, "host only");
        }
        let path = req.path.clone();
        match (req.method.as_str(), path.as_str()) {
            ("POST", "/activity") => self.activity(&req),
            ("POST", p) if p.starts_with("/wake/") => self.wake(&p["/wake/".len()..]),
            ("GET", "/services") => match self.catalog() {
                Ok((cat, _)) => HttpResponse::json(
                    200,
                    &json!({
                        "services": cat.services,
                        "errors": cat.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }),
                ),
                Err(e) => HttpResponse::error(503, &e),
            },
            ("GET", "/sessions") => HttpResponse::json(200, &load_sessions()),
            _ => HttpResponse::not_found(),
        }
    }
}

export_plugin!(Wake);
