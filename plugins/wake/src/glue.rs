//! Glue between the policy modules and the host (wasm only).
//!
//! Storage layout (one key per service, so concurrent instances — a wake
//! blocked in `await-ready` while a tick and an activity report run beside
//! it — never overwrite each other's sessions):
//! - `session/{service}`: the [`Session`] (absolute expiry);
//! - `state/{service}`: the last published state name;
//! - `ready/{container}`: set when a member passed its readiness rule,
//!   cleared when it stops (a listing cannot show a TCP/HTTP probe);
//! - `history/{service}`: the last wakes, for the UI;
//! - `schedule-attempt/{service}`: the last scheduled wake attempt;
//! - `waking/{service}`: when the wake call in progress started;
//! - `api/services`: definitions made through `/api/v1/services`.
//!
//! Internal routes are for the host only: it calls them with the
//! `wakedock:host` permission, which it never gives a user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use wakedock_plugin_sdk::{
    auth, clock, containers, events, export_plugin, log, metrics, storage, Config, Container,
    ContainerEventKind, ContainerState, Error, Event, Health, HttpRequest, HttpResponse, Plugin,
};

use crate::service::{
    defs_from_labels, parse_def, parse_def_list, Catalog, LabeledContainer, ReadyRule, Service,
    ServiceDef, Source, ValidationError, WakeConfig,
};
use crate::session::{plan_sleep, Session, Sessions};
use crate::state::{derive_state, MemberProgress, MemberStatus, ServiceState, State};

const HOST_PERMISSION: &str = "wakedock:host";
const API_SERVICES_KEY: &str = "api/services";
const SESSION_PREFIX: &str = "session/";
const STATE_PREFIX: &str = "state/";
const READY_PREFIX: &str = "ready/";
const HISTORY_PREFIX: &str = "history/";
const HISTORY_LEN: usize = 20;
const SCHEDULE_ATTEMPT_PREFIX: &str = "schedule-attempt/";
const WAKING_PREFIX: &str = "waking/";
const SCHEDULE_RETRY_MS: u64 = 60_000;
/// Bound of the tick's readiness check of a member started by hand.
const QUICK_CHECK_MS: u32 = 300;

struct Wake {
    config_defs: Vec<ServiceDef>,
    self_container: Option<String>,
    instance: Option<String>,
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

/// One wake, for the service's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WakeRecord {
    at_ms: u64,
    duration_ms: u64,
    /// `ok`, `timeout` or `failed`.
    result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Why a wake did not finish.
enum WakeFailure {
    Timeout,
    Failed(String),
}

fn labeled(c: &Container) -> LabeledContainer {
    LabeledContainer {
        name: c.name.clone(),
        labels: c.labels.iter().cloned().collect(),
    }
}

fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"status": status, "code": code, "detail": detail}),
    )
}

fn no_content() -> HttpResponse {
    HttpResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    }
}

fn warn_on<T>(what: &str, r: Result<T, Error>) {
    if let Err(e) = r {
        log::warn(&format!("{what}: {}", e.describe()));
    }
}

// ---- storage helpers -------------------------------------------------------

fn session_of(service: &str) -> Option<Session> {
    storage::get_json(&format!("{SESSION_PREFIX}{service}"))
        .ok()
        .flatten()
}

fn put_session(service: &str, s: &Session) {
    warn_on(
        "saving a session",
        storage::set_json(&format!("{SESSION_PREFIX}{service}"), s),
    );
}

fn end_session(service: &str) {
    warn_on(
        "ending a session",
        storage::delete(&format!("{SESSION_PREFIX}{service}")),
    );
}

fn all_sessions() -> Sessions {
    let mut sessions = Sessions::default();
    let keys = storage::list_keys(SESSION_PREFIX).unwrap_or_default();
    for key in keys {
        if let Ok(Some(s)) = storage::get_json::<Session>(&key) {
            sessions
                .sessions
                .insert(key[SESSION_PREFIX.len()..].to_owned(), s);
        }
    }
    sessions
}

fn api_defs() -> Vec<ServiceDef> {
    storage::get_json(API_SERVICES_KEY)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn mark_ready(container: &str, ready: bool) {
    let key = format!("{READY_PREFIX}{container}");
    if ready {
        warn_on("marking ready", storage::set_json(&key, &true));
    } else {
        let _ = storage::delete(&key);
    }
}

fn marked_ready(container: &str) -> bool {
    storage::get_json::<bool>(&format!("{READY_PREFIX}{container}"))
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn history(service: &str) -> Vec<WakeRecord> {
    storage::get_json(&format!("{HISTORY_PREFIX}{service}"))
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn record_wake(service: &str, rec: WakeRecord) {
    let mut h = history(service);
    h.insert(0, rec);
    h.truncate(HISTORY_LEN);
    warn_on(
        "saving wake history",
        storage::set_json(&format!("{HISTORY_PREFIX}{service}"), &h),
    );
}

/// Publishes `state` for `s` unless it is already the published one.
fn publish(s: &Service, state: &State) {
    publish_if(s, state, false);
}

/// Publishes `state` even if it is the stored one: the end of a wake
/// overrides any progress event (the host drops an unchanged repeat).
fn publish_always(s: &Service, state: &State) {
    publish_if(s, state, true);
}

fn publish_if(s: &Service, state: &State, always: bool) {
    let key = format!("{STATE_PREFIX}{}", s.name);
    let name = state.name().as_str().to_owned();
    let prev: Option<String> = storage::get_json(&key).ok().flatten();
    // Failed states carry a reason that may change; always re-publish them.
    if !always && prev.as_deref() == Some(name.as_str()) && !matches!(state, State::Failed { .. }) {
        return;
    }
    warn_on("saving a state", storage::set_json(&key, &name));
    warn_on(
        "publishing wake.state",
        events::publish_json("wake.state", &ServiceState::of(s, state)),
    );
}

/// Members' progress during a wake, published with the `waking` state on
/// every step so the waiting page can show it.
struct Progress<'a> {
    service: &'a Service,
    members: Vec<MemberProgress>,
}

impl<'a> Progress<'a> {
    fn new(service: &'a Service) -> Self {
        let members = service
            .start_waves()
            .into_iter()
            .flatten()
            .filter(|m| service.is_required(m))
            .map(|name| MemberProgress {
                name,
                status: "waiting".into(),
            })
            .collect();
        Progress { service, members }
    }

    fn set(&mut self, member: &str, status: &str) {
        let Some(m) = self.members.iter_mut().find(|m| m.name == member) else {
            return;
        };
        if m.status == status {
            return;
        }
        m.status = status.into();
        let mut doc = ServiceState::of(self.service, &State::Waking);
        doc.members = self.members.clone();
        warn_on(
            "publishing wake progress",
            events::publish_json("wake.state", &doc),
        );
    }
}

/// Whether a wake call is running for `s` (it started less than the wake
/// timeout ago; a call that died without clearing its mark stops counting
/// then).
fn wake_in_progress(s: &Service, now: u64) -> bool {
    storage::get_json::<u64>(&format!("{WAKING_PREFIX}{}", s.name))
        .ok()
        .flatten()
        .is_some_and(|at| now < at.saturating_add(s.wake_timeout_ms + 5_000))
}

fn published_state(service: &str) -> Option<State> {
    let name: String = storage::get_json(&format!("{STATE_PREFIX}{service}"))
        .ok()
        .flatten()?;
    Some(match name.as_str() {
        "waking" => State::Waking,
        "awake" => State::Awake,
        "going-to-sleep" => State::GoingToSleep,
        "failed" => State::Failed {
            reason: String::new(),
        },
        _ => State::Asleep,
    })
}

// ---- metrics ---------------------------------------------------------------

fn register_metrics() {
    warn_on(
        "registering sessions_active",
        metrics::register_gauge("sessions_active", "Services with an open wake session", &[]),
    );
    warn_on(
        "registering sleeps_total",
        metrics::register_counter(
            "sleeps_total",
            "Services put to sleep, by reason (idle, manual)",
            &["service", "reason"],
        ),
    );
}

fn count_sleep(service: &str, reason: &str) {
    let _ = metrics::counter_add("sleeps_total", &[service, reason], 1.0);
}

// ---- readiness -------------------------------------------------------------

/// The probe of a member whose rule is not Docker's healthcheck; `None`
/// for the default rule (the host's `await-ready`).
fn probe_of(rule: &ReadyRule) -> Option<containers::Probe> {
    match rule {
        ReadyRule::DockerHealth | ReadyRule::Tcp { port: None } => None,
        ReadyRule::Tcp { port: Some(p) } => Some(containers::Probe::Tcp(*p)),
        ReadyRule::Http { port, path } => Some(containers::Probe::Http(containers::HttpProbe {
            port: *port,
            path: path.clone(),
        })),
    }
}

/// Waits until `m` of `s` is ready by its rule, at most `timeout_ms`.
fn await_member(s: &Service, c: &Container, timeout_ms: u32) -> Result<(), Error> {
    let rule = s.ready_rule(&c.name, c.health != Health::None);
    if let Some(probe) = probe_of(&rule) {
        return containers::await_probe(&c.name, &probe, timeout_ms);
    }
    match containers::await_ready(&c.name, timeout_ms)? {
        // Never ready merely because it runs.
        containers::Readiness::Running => Err(Error::Invalid(format!(
            "\"{}\" has no healthcheck and no port to probe: give it a `ready` rule",
            c.name
        ))),
        _ => Ok(()),
    }
}

impl Wake {
    /// The catalog with selector services resolved, and every container.
    fn catalog(&self) -> Result<(Catalog, Vec<Container>), String> {
        let all = containers::list_all().map_err(|e| e.describe())?;
        // Label services and selectors see only this install's containers.
        let labeled: Vec<LabeledContainer> = all
            .iter()
            .map(labeled)
            .filter(|c| crate::scope::in_scope(self.instance.as_deref(), c))
            .collect();
        let mut cat = Catalog::build(&self.config_defs, &api_defs(), &defs_from_labels(&labeled));
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
                code: containers::exit_code(&c.name).ok().flatten(),
            },
            ContainerState::Running => {
                let ready = match service.ready_rule(&c.name, c.health != Health::None) {
                    ReadyRule::DockerHealth => c.health == Health::Healthy || marked_ready(&c.name),
                    _ => marked_ready(&c.name),
                };
                MemberStatus::Running { ready }
            }
        }
    }

    fn members(s: &Service, all: &[Container]) -> BTreeMap<String, MemberStatus> {
        s.members
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    Self::member_status(s, all.iter().find(|c| &c.name == m)),
                )
            })
            .collect()
    }

    /// Starts (or thaws) the members in `depends_on` order and waits for
    /// each required one to be ready.
    fn start_members(
        s: &Service,
        deadline: u64,
        progress: &mut Progress<'_>,
    ) -> Result<(), WakeFailure> {
        for wave in s.start_waves() {
            let mut started = Vec::new();
            for m in &wave {
                let c = match containers::inspect(m) {
                    Ok(c) => c,
                    Err(e) if s.is_required(m) => {
                        return Err(WakeFailure::Failed(format!("\"{m}\": {}", e.describe())))
                    }
                    Err(e) => {
                        log::warn(&format!("optional \"{m}\": {}", e.describe()));
                        continue;
                    }
                };
                let r = match c.state {
                    ContainerState::Running => Ok(()),
                    ContainerState::Paused => containers::unpause(m),
                    _ => {
                        mark_ready(m, false);
                        containers::start(m)
                    }
                };
                match r {
                    Ok(()) => {
                        progress.set(m, "starting");
                        started.push(c)
                    }
                    Err(e) if s.is_required(m) => {
                        return Err(WakeFailure::Failed(format!(
                            "starting \"{m}\": {}",
                            e.describe()
                        )))
                    }
                    Err(e) => log::warn(&format!("starting optional \"{m}\": {}", e.describe())),
                }
            }
            for c in started.iter().filter(|c| s.is_required(&c.name)) {
                let m = &c.name;
                let left = deadline.saturating_sub(clock::now_ms());
                if left == 0 {
                    return Err(WakeFailure::Timeout);
                }
                let left = u32::try_from(left).unwrap_or(u32::MAX);
                let waited = if s.is_one_shot(m) {
                    // Done when it has run to completion with exit 0.
                    match containers::await_exit(m, left) {
                        Ok(0) => Ok(()),
                        Ok(code) => Err(Error::Unavailable(format!(
                            "one-shot \"{m}\" exited with code {code}"
                        ))),
                        Err(e) => Err(e),
                    }
                } else {
                    await_member(s, c, left)
                };
                match waited {
                    Ok(()) => {
                        // Progress first: once marked ready, a tick may
                        // derive and publish `awake`, and no progress
                        // event may come after that.
                        progress.set(m, if s.is_one_shot(m) { "done" } else { "ready" });
                        mark_ready(m, true);
                    }
                    Err(Error::Timeout) => return Err(WakeFailure::Timeout),
                    Err(e) => {
                        progress.set(m, "failed");
                        return Err(WakeFailure::Failed(format!("\"{m}\": {}", e.describe())));
                    }
                }
            }
        }
        Ok(())
    }

    /// The catalog, the containers and the service `name`, or the error
    /// answer (503 without Docker, 404 for an unknown name).
    fn lookup(&self, name: &str) -> Result<(Service, Vec<Container>), HttpResponse> {
        let (mut cat, all) = self
            .catalog()
            .map_err(|e| problem(503, "docker_unavailable", &e))?;
        let s = cat.services.remove(name).ok_or_else(|| {
            problem(
                404,
                "unknown_service",
                &format!("no service named \"{name}\""),
            )
        })?;
        Ok((s, all))
    }

    fn wake(&self, name: &str) -> HttpResponse {
        let started = clock::now_ms();
        let (s, all) = match self.lookup(name) {
            Ok(x) => x,
            Err(answer) => return answer,
        };
        let s = &s;
        let members = Self::members(s, &all);
        let before = derive_state(s, &members, published_state(name).as_ref());
        if before != State::Awake {
            publish(s, &State::Waking);
        }
        // While this call wakes the service, the tick leaves its state and
        // readiness to it (see `wake_in_progress`).
        warn_on(
            "marking a wake in progress",
            storage::set_json(&format!("{WAKING_PREFIX}{name}"), &started),
        );
        let mut progress = Progress::new(s);
        let result =
            Self::start_members(s, started.saturating_add(s.wake_timeout_ms), &mut progress);
        let now = clock::now_ms();
        let duration_ms = now - started;
        let (rec, response) = match result {
            Ok(()) => {
                let mut session = session_of(name).unwrap_or_else(|| Session::start(now, 0));
                session.record_activity(now, 0, session.open_connections, s.idle_timeout_ms);
                put_session(name, &session);
                publish_always(s, &State::Awake);
                (
                    WakeRecord {
                        at_ms: started,
                        duration_ms,
                        result: "ok".into(),
                        reason: None,
                    },
                    HttpResponse::json(
                        200,
                        &json!({"service": name, "state": "awake", "waited_ms": duration_ms}),
                    ),
                )
            }
            Err(WakeFailure::Timeout) => {
                let detail = format!(
                    "service \"{name}\" was not ready within its wake timeout of {} ms",
                    s.wake_timeout_ms
                );
                (
                    WakeRecord {
                        at_ms: started,
                        duration_ms,
                        result: "timeout".into(),
                        reason: Some(detail.clone()),
                    },
                    problem(504, "wake_timeout", &detail),
                )
            }
            Err(WakeFailure::Failed(reason)) => {
                publish(
                    s,
                    &State::Failed {
                        reason: reason.clone(),
                    },
                );
                (
                    WakeRecord {
                        at_ms: started,
                        duration_ms,
                        result: "failed".into(),
                        reason: Some(reason.clone()),
                    },
                    problem(502, "wake_failed", &reason),
                )
            }
        };
        if before != State::Awake || rec.result != "ok" {
            record_wake(name, rec);
        }
        let _ = storage::delete(&format!("{WAKING_PREFIX}{name}"));
        response
    }

    /// Services inside a schedule window: a running one has its session
    /// extended (so it does not sleep), a sleeping one is woken — at most
    /// once a minute, so a service that cannot start is not retried on
    /// every tick.
    fn keep_scheduled_awake(&self, cat: &Catalog, running: &dyn Fn(&str) -> bool, now: u64) {
        for s in cat.services.values() {
            if !crate::schedule::active(&s.schedule, now, s.utc_offset_min) {
                continue;
            }
            if s.members.iter().any(|m| running(m)) {
                let mut session =
                    session_of(&s.name).unwrap_or_else(|| Session::start(now, s.idle_timeout_ms));
                session.record_activity(now, 0, session.open_connections, s.idle_timeout_ms);
                put_session(&s.name, &session);
                continue;
            }
            let key = format!("{SCHEDULE_ATTEMPT_PREFIX}{}", s.name);
            let last: u64 = storage::get_json(&key).ok().flatten().unwrap_or(0);
            if now.saturating_sub(last) < SCHEDULE_RETRY_MS {
                continue;
            }
            warn_on("saving a schedule attempt", storage::set_json(&key, &now));
            log::info(&format!(
                "service \"{}\" is inside its schedule: waking it",
                s.name
            ));
            let r = self.wake(&s.name);
            if r.status != 200 {
                log::warn(&format!(
                    "scheduled wake of \"{}\" failed: {}",
                    s.name,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
    }

    /// Stops (or pauses) the members, dependents first. Returns false if
    /// a member could not be put to sleep.
    fn put_to_sleep(&self, s: &Service, reason: &str) -> Result<(), String> {
        let Some(plan) = plan_sleep(s, self.self_container.as_deref()) else {
            return Err(format!("service \"{}\" may not be put to sleep", s.name));
        };
        publish(s, &State::GoingToSleep);
        let mut failures = Vec::new();
        for m in plan.waves.iter().flatten() {
            let c = match containers::inspect(m) {
                Ok(c) => c,
                Err(Error::NotFound) => continue,
                Err(e) => {
                    failures.push(format!("\"{m}\": {}", e.describe()));
                    continue;
                }
            };
            if c.state != ContainerState::Running {
                continue;
            }
            mark_ready(m, false);
            let r = match plan.mode {
                crate::service::SleepMode::Pause => containers::pause(m),
                crate::service::SleepMode::Stop => containers::stop(m, None),
            };
            if let Err(e) = r {
                failures.push(format!("\"{m}\": {}", e.describe()));
            }
        }
        if !failures.is_empty() {
            let reason = format!("could not put to sleep: {}", failures.join("; "));
            publish(
                s,
                &State::Failed {
                    reason: reason.clone(),
                },
            );
            return Err(reason);
        }
        end_session(&s.name);
        count_sleep(&s.name, reason);
        publish(s, &State::Asleep);
        log::info(&format!("service \"{}\" put to sleep ({reason})", s.name));
        Ok(())
    }

    fn sleep(&self, name: &str) -> HttpResponse {
        let s = match self.lookup(name) {
            Ok((s, _)) => s,
            Err(answer) => return answer,
        };
        match self.put_to_sleep(&s, "manual") {
            Ok(()) => HttpResponse::json(200, &json!({"service": name, "state": "asleep"})),
            Err(e) if !s.sleepable => problem(409, "not_sleepable", &e),
            Err(e) => problem(502, "sleep_failed", &e),
        }
    }

    fn activity(&self, req: &HttpRequest) -> HttpResponse {
        let body: Activity = match req.json() {
            Ok(b) => b,
            Err(e) => return problem(400, "invalid_body", &e),
        };
        let (cat, _) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return problem(503, "docker_unavailable", &e),
        };
        let now = clock::now_ms();
        for (name, c) in &body.services {
            let Some(s) = cat.services.get(name) else {
                continue;
            };
            let mut session = session_of(name).unwrap_or_else(|| Session::start(now, 0));
            session.record_activity(now, c.requests, c.open_connections, s.idle_timeout_ms);
            put_session(name, &session);
        }
        no_content()
    }

    /// Every service with its state, session and recent wakes.
    fn list(&self) -> HttpResponse {
        let (cat, all) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return problem(503, "docker_unavailable", &e),
        };
        let now = clock::now_ms();
        let services: Vec<serde_json::Value> = cat
            .services
            .values()
            .map(|s| {
                let members = Self::members(s, &all);
                let state = derive_state(s, &members, published_state(&s.name).as_ref());
                let session = session_of(&s.name);
                json!({
                    "service": s,
                    "state": ServiceState::of(s, &state),
                    "members": members.iter().map(|(m, st)| json!({"name": m, "status": format!("{st:?}")})).collect::<Vec<_>>(),
                    "session": session.as_ref().map(|x| json!({
                        "expires_at_ms": x.expires_at_ms,
                        "remaining_ms": x.remaining_ms(now),
                        "last_activity_ms": x.last_activity_ms,
                        "open_connections": x.open_connections,
                        "requests": x.requests,
                        "adopted": x.adopted,
                    })),
                    "history": history(&s.name),
                })
            })
            .collect();
        HttpResponse::json(
            200,
            &json!({
                "services": services,
                "errors": cat.errors,
                "now_ms": now,
            }),
        )
    }

    /// Create (`name = None`) or replace an API-defined service.
    fn put_service(&self, req: &HttpRequest, name: Option<&str>) -> HttpResponse {
        let value: serde_json::Value = match req.json() {
            Ok(v) => v,
            Err(e) => return problem(400, "invalid_body", &e),
        };
        let def = match parse_def(&value) {
            Ok(d) => d,
            Err(e) => return invalid(vec![e]),
        };
        if let Some(name) = name {
            if def.name != name {
                return invalid(vec![ValidationError {
                    service: def.name.clone(),
                    field: "name".into(),
                    message: format!(
                        "does not match the URL's \"{name}\" (rename by delete and create)"
                    ),
                }]);
            }
        }
        if let Err(errs) = def.validate(Source::Api) {
            return invalid(errs);
        }
        if self.config_defs.iter().any(|d| d.name == def.name) {
            return problem(
                409,
                "defined_in_config",
                &format!(
                    "service \"{}\" is defined in the config file, which takes precedence; edit it there",
                    def.name
                ),
            );
        }
        let mut defs = api_defs();
        let existing = defs.iter().position(|d| d.name == def.name);
        match (name, existing) {
            (None, Some(_)) => {
                return problem(
                    409,
                    "service_exists",
                    &format!("service \"{}\" already exists", def.name),
                )
            }
            (Some(n), None) => {
                return problem(
                    404,
                    "unknown_service",
                    &format!("no API-defined service named \"{n}\""),
                )
            }
            (_, Some(i)) => defs[i] = def.clone(),
            (None, None) => defs.push(def.clone()),
        }
        if let Err(e) = storage::set_json(API_SERVICES_KEY, &defs) {
            return problem(503, "storage_unavailable", &e.describe());
        }
        HttpResponse::json(if name.is_none() { 201 } else { 200 }, &def)
    }

    fn delete_service(&self, name: &str) -> HttpResponse {
        let mut defs = api_defs();
        let before = defs.len();
        defs.retain(|d| d.name != name);
        if defs.len() == before {
            let other = if self.config_defs.iter().any(|d| d.name == name) {
                Some("the config file")
            } else {
                None
            };
            return match other {
                Some(src) => problem(
                    409,
                    "defined_in_config",
                    &format!("service \"{name}\" is defined in {src}; remove it there"),
                ),
                None => problem(
                    404,
                    "unknown_service",
                    &format!("no API-defined service named \"{name}\" (services defined by labels go away with their labels)"),
                ),
            };
        }
        if let Err(e) = storage::set_json(API_SERVICES_KEY, &defs) {
            return problem(503, "storage_unavailable", &e.describe());
        }
        no_content()
    }
}

fn invalid(errors: Vec<ValidationError>) -> HttpResponse {
    let detail = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    HttpResponse::json(
        422,
        &json!({"status": 422, "code": "invalid_service", "detail": detail, "errors": errors}),
    )
}

impl Plugin for Wake {
    fn init(config: Config) -> Result<Self, String> {
        let cfg = WakeConfig::from_json(config.value())?;
        let (config_defs, config_errors) = parse_def_list(&cfg.services);
        // The host checks the config file's services before it starts;
        // refuse rather than run with part of them.
        if !config_errors.is_empty() {
            let list: Vec<String> = config_errors.iter().map(ToString::to_string).collect();
            return Err(list.join("; "));
        }
        register_metrics();
        Ok(Wake {
            config_defs,
            self_container: cfg.self_container,
            instance: cfg.instance,
        })
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Container(ev) = event {
            if matches!(
                ev.kind,
                ContainerEventKind::Stopped | ContainerEventKind::Died
            ) {
                mark_ready(&ev.container_name, false);
            }
        }
    }

    fn on_tick(&mut self) {
        let (cat, all) = match self.catalog() {
            Ok(x) => x,
            Err(e) => return log::warn(&format!("listing containers: {e}")),
        };
        let now = clock::now_ms();
        let sessions = all_sessions();
        // Sessions of services that no longer exist.
        for name in sessions.sessions.keys() {
            if !cat.services.contains_key(name) {
                end_session(name);
            }
        }
        let running = |m: &str| {
            all.iter()
                .any(|c| c.name == m && c.state == ContainerState::Running)
        };
        let mut active = 0u32;
        for s in cat.services.values() {
            let any_running = s.members.iter().any(|m| running(m));
            if any_running && sessions.get(&s.name).is_none() {
                // Started by hand, or running when WakeDock started: it
                // gets a session from now, so it does go to sleep.
                let mut session = Session::start(now, s.idle_timeout_ms);
                session.adopted = true;
                put_session(&s.name, &session);
                log::info(&format!(
                    "service \"{}\" found running: session started",
                    s.name
                ));
                active += 1;
            } else if sessions.get(&s.name).is_some() {
                active += 1;
            }
            if wake_in_progress(s, now) {
                continue;
            }
            // Members that run without having passed their probe here
            // (started by hand): one quick check each tick.
            for c in all.iter().filter(|c| {
                s.members.contains(&c.name)
                    && c.state == ContainerState::Running
                    && !marked_ready(&c.name)
            }) {
                let rule = s.ready_rule(&c.name, c.health != Health::None);
                let ready = match (&rule, probe_of(&rule)) {
                    (ReadyRule::DockerHealth, _) => c.health == Health::Healthy,
                    (_, Some(p)) => containers::await_probe(&c.name, &p, QUICK_CHECK_MS).is_ok(),
                    (_, None) => matches!(
                        containers::await_ready(&c.name, QUICK_CHECK_MS),
                        Ok(containers::Readiness::PortOpen | containers::Readiness::Healthy)
                    ),
                };
                if ready {
                    mark_ready(&c.name, true);
                }
            }
        }
        let _ = metrics::gauge_set("sessions_active", &[], f64::from(active));
        self.keep_scheduled_awake(&cat, &running, now);
        for name in sessions.due(now, cat.services.values()) {
            let Some(s) = cat.services.get(&name) else {
                continue;
            };
            // Re-read: activity may have arrived since the listing.
            if session_of(&name).is_some_and(|x| !x.expired(clock::now_ms())) {
                continue;
            }
            if s.members.iter().any(|m| running(m)) {
                if let Err(e) = self.put_to_sleep(s, "idle") {
                    log::warn(&e);
                }
            } else {
                end_session(&name);
            }
        }
        // Derived states (containers changed by hand, by Docker...).
        for s in cat.services.values() {
            if wake_in_progress(s, now) {
                continue;
            }
            let members = Self::members(s, &all);
            let prev = published_state(&s.name);
            let state = derive_state(s, &members, prev.as_ref());
            // A failed wake stays failed until something changes.
            if matches!(prev, Some(State::Failed { .. })) && state == State::Asleep {
                continue;
            }
            if prev.as_ref().map(State::name) != Some(state.name()) {
                publish(s, &state);
            }
        }
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        if !auth::has_permission(HOST_PERMISSION) {
            return problem(
                403,
                "forbidden",
                "these routes are the host's: use /api/v1/services",
            );
        }
        let path = req.path.clone();
        let method = req.method.clone();
        let name_after = |prefix: &str| path.strip_prefix(prefix).filter(|n| !n.is_empty());
        match (method.as_str(), path.as_str()) {
            ("POST", "/activity") => self.activity(&req),
            ("GET", "/services") => self.list(),
            ("POST", "/services") => self.put_service(&req, None),
            ("POST", _) if name_after("/wake/").is_some() => {
                self.wake(name_after("/wake/").expect("checked"))
            }
            ("POST", _) if name_after("/sleep/").is_some() => {
                self.sleep(name_after("/sleep/").expect("checked"))
            }
            ("PUT", _) if name_after("/services/").is_some() => {
                self.put_service(&req, name_after("/services/"))
            }
            ("DELETE", _) if name_after("/services/").is_some() => {
                self.delete_service(name_after("/services/").expect("checked"))
            }
            _ => HttpResponse::not_found(),
        }
    }
}

export_plugin!(Wake);
