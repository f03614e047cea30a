//! The host's implementations of the plugin capability traits, each on top
//! of a host capability: containers on [`DockerEngine`], storage on the
//! database, metrics on the Prometheus registry, events on the [`EventBus`],
//! outbound HTTP on reqwest, refusals on the audit log.
//!
//! The runtime checks grants and scopes before calling any of these, so
//! they only do the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts};
use wakedock_plugin_runtime::caps::*;

use super::stats::{idle_stats, sampled_stats, StatsSampler};
use crate::db::audit::NewAuditEntry;
use crate::db::{plugin_kv, Db, DbError};
use crate::docker::{ContainerDetails, ContainerSummary, DockerEngine, EngineError};
use crate::events::EventBus;

fn engine_err(e: EngineError) -> CapError {
    match e {
        EngineError::NotFound(_) => CapError::NotFound,
        EngineError::BadRequest(m) => CapError::Invalid(m),
        EngineError::Timeout(_) => CapError::Timeout,
        EngineError::Conflict(m) | EngineError::Unavailable(m) | EngineError::Engine(m) => {
            CapError::Unavailable(m)
        }
    }
}

fn db_err(e: DbError) -> CapError {
    CapError::Unavailable(format!("storage: {e}"))
}

fn state_of(s: &str) -> ContainerState {
    match s {
        "created" => ContainerState::Created,
        "running" => ContainerState::Running,
        "paused" => ContainerState::Paused,
        "restarting" => ContainerState::Restarting,
        "removing" => ContainerState::Removing,
        "dead" => ContainerState::Dead,
        _ => ContainerState::Exited,
    }
}

pub(crate) fn health_of(s: &str) -> Health {
    match s {
        "healthy" => Health::Healthy,
        "unhealthy" => Health::Unhealthy,
        "starting" => Health::Starting,
        _ => Health::None,
    }
}

/// RFC 3339 (Docker's timestamps) to Unix ms; Docker's zero time is none.
pub(crate) fn rfc3339_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    (ms > 0).then_some(ms)
}

fn from_summary(c: ContainerSummary) -> Container {
    Container {
        id: c.id,
        name: c.name,
        image: c.image,
        state: state_of(&c.state),
        health: health_of(&c.health),
        labels: c.labels.into_iter().collect(),
        started_at_ms: None,
    }
}

fn from_details(d: &ContainerDetails) -> Container {
    Container {
        id: d.id.clone(),
        name: d.name.clone(),
        image: d.image.clone(),
        state: state_of(&d.state),
        health: health_of(&d.health),
        labels: d.labels.clone().into_iter().collect(),
        started_at_ms: d.started_at.as_deref().and_then(rfc3339_ms),
    }
}

/// Containers, on the Docker engine.
///
/// Each operation costs as few engine requests as it can: a start, stop,
/// pause or unpause is one request (the engine answers 304 when there is
/// nothing to do), a readiness wait inspects once and then probes the
/// address it learned, inspecting again only when an engine event says
/// the container changed.
pub struct DockerContainers {
    pub docker: Arc<DockerEngine>,
    /// WakeDock's own container (id, name), when it runs in one: never
    /// stopped or paused by a plugin (see [`own_container`]).
    pub own: Option<(String, String)>,
}

/// The (id, name) of the container WakeDock runs in, if any: Docker sets
/// the hostname to the short id and leaves `/.dockerenv`.
pub async fn own_container(docker: &DockerEngine) -> Option<(String, String)> {
    for candidate in crate::container_env::own_container_candidates() {
        if let Ok(d) = docker.inspect(&candidate).await {
            return Some((d.id, d.name));
        }
    }
    None
}

/// How a reference (full id, id prefix or name, as Docker resolves them)
/// relates to WakeDock's own container.
#[derive(Debug, PartialEq, Eq)]
enum OwnRef {
    Own,
    Other,
    /// A hex prefix of our id that is not our name: Docker prefers a
    /// container of that name if there is one, so only the engine knows.
    Ambiguous,
}

fn own_ref(reference: &str, own_id: &str, own_name: &str) -> OwnRef {
    let r = reference.trim_start_matches('/');
    if r == own_id || r == own_name {
        OwnRef::Own
    } else if !r.is_empty() && own_id.starts_with(r) {
        OwnRef::Ambiguous
    } else {
        OwnRef::Other
    }
}

impl DockerContainers {
    /// Refuses to act on WakeDock's own container. Compared against the id
    /// and name learned at start, so it costs no engine request (but for
    /// an id prefix of our own id, which the engine resolves).
    async fn not_own(&self, id: &str) -> CapResult<()> {
        let Some((own_id, own_name)) = &self.own else {
            return Ok(());
        };
        let own = match own_ref(id, own_id, own_name) {
            OwnRef::Own => true,
            OwnRef::Other => false,
            OwnRef::Ambiguous => &self.docker.inspect(id).await.map_err(engine_err)?.id == own_id,
        };
        if own {
            return Err(CapError::PermissionDenied(
                "WakeDock never stops or pauses its own container".into(),
            ));
        }
        Ok(())
    }
}

/// Port probes while an app boots: a connection attempt to a closed port
/// on the container's address is refused at once, so a tight cadence is
/// cheap and a port is seen within a few milliseconds of opening.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// After [`PROBE_FAST_FOR`] of waiting, a slow starter is probed less often.
const PROBE_EVERY_LATER: Duration = Duration::from_millis(25);
const PROBE_FAST_FOR: Duration = Duration::from_secs(5);
/// A container's healthcheck (an exec) is run as soon as its port opens and
/// retried this soon when it fails; while the port is still closed it runs
/// at least every [`HEALTHCHECK_AT_LEAST_EVERY`] (a check may not need it).
const HEALTHCHECK_RETRY: Duration = Duration::from_millis(10);
const HEALTHCHECK_AT_LEAST_EVERY: Duration = Duration::from_millis(250);
/// Inspect again after this long even without an engine event, while the
/// container is not running yet (in case an event was missed).
const INSPECT_AGAIN_EVERY: Duration = Duration::from_millis(500);

/// What a readiness check says about the container as last inspected.
enum Wait<T> {
    Ready(T),
    /// Probe again after this long (the inspected details still hold).
    ProbeAgain(Duration),
    /// Inspect again on the next engine event about it, or after this long.
    InspectAgain(Duration),
}

/// What an engine event about the waited-for container means for the wait.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Nothing that changes the inspected details (our own healthcheck
    /// execs, a start we already saw, renames...).
    Nothing,
    /// Docker's own healthcheck reported this status.
    Health(String),
    /// The container changed: inspect it again.
    Changed,
}

fn seen(action: &str, known: &ContainerDetails) -> Seen {
    if let Some(h) = action.strip_prefix("health_status: ") {
        return Seen::Health(h.to_string());
    }
    match action {
        "die" | "destroy" | "pause" | "oom" => Seen::Changed,
        "start" | "restart" | "unpause" if !known.running || known.state == "paused" => {
            Seen::Changed
        }
        _ => Seen::Nothing,
    }
}

impl DockerContainers {
    /// Waits until `check` says the container is ready, for at most
    /// `timeout`. The container is inspected once; `check` then probes what
    /// that inspection told (its address, its healthcheck). It is inspected
    /// again only when an engine event says it changed (it died, was
    /// paused, was started after being stopped), or when `check` asks.
    async fn wait_for<T, F, Fut>(&self, id: &str, timeout: Duration, check: F) -> CapResult<T>
    where
        F: Fn(Arc<ContainerDetails>, Duration) -> Fut,
        Fut: std::future::Future<Output = CapResult<Wait<T>>>,
    {
        // Subscribe before inspecting so no event is missed between.
        let mut events = self.docker.subscribe();
        let started = Instant::now();
        let deadline = started + timeout;
        let mut d = Arc::new(self.docker.inspect(id).await.map_err(engine_err)?);
        loop {
            let (again, inspect_on_timer) = match check(d.clone(), started.elapsed()).await? {
                Wait::Ready(r) => return Ok(r),
                Wait::ProbeAgain(t) => (t, false),
                Wait::InspectAgain(t) => (t, true),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CapError::Timeout);
            }
            let inspect = tokio::select! {
                _ = tokio::time::sleep(again.min(remaining)) => inspect_on_timer,
                s = next_seen(&mut events, &d) => match s {
                    Seen::Changed => true,
                    Seen::Health(h) => {
                        Arc::make_mut(&mut d).health = h;
                        false
                    }
                    Seen::Nothing => false,
                },
            };
            if inspect {
                d = Arc::new(self.docker.inspect(id).await.map_err(engine_err)?);
            }
        }
    }

    /// One readiness check of a container as inspected.
    async fn check_ready(
        &self,
        d: &ContainerDetails,
        waited: Duration,
        last_healthcheck: &Mutex<Option<Instant>>,
    ) -> CapResult<Wait<Readiness>> {
        if let Some(wait) = not_running(d)? {
            return Ok(wait);
        }
        let cadence = probe_cadence(waited);
        let addr = probe_addr(d, None);
        let Some(test) = &d.healthcheck_test else {
            return Ok(match addr {
                None => Wait::Ready(Readiness::Running),
                Some(a) if tcp_open(&a).await => Wait::Ready(Readiness::PortOpen),
                Some(_) => Wait::ProbeAgain(cadence),
            });
        };
        if d.health == "healthy" {
            return Ok(Wait::Ready(Readiness::Healthy));
        }
        // The app cannot pass its healthcheck before it listens: wait for
        // the port, then run the check at once rather than on a cadence.
        let port_open = match &addr {
            Some(a) => tcp_open(a).await,
            None => true,
        };
        let due = {
            let last = last_healthcheck.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|t| t.elapsed() >= HEALTHCHECK_AT_LEAST_EVERY)
        };
        if !port_open && !due {
            return Ok(Wait::ProbeAgain(cadence));
        }
        *last_healthcheck.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let passed = self
            .docker
            .run_healthcheck(&d.id, test, Duration::from_secs(5))
            .await
            .map_err(engine_err)?;
        Ok(match (passed, port_open) {
            (true, _) => Wait::Ready(Readiness::Healthy),
            (false, true) => Wait::ProbeAgain(HEALTHCHECK_RETRY),
            (false, false) => Wait::ProbeAgain(cadence),
        })
    }

    /// One explicit probe of a container as inspected.
    async fn check_probe(
        &self,
        d: &ContainerDetails,
        waited: Duration,
        probe: &Probe,
    ) -> CapResult<Wait<()>> {
        if let Some(wait) = not_running(d)? {
            return Ok(wait);
        }
        let port = match probe {
            Probe::Tcp(p) => *p,
            Probe::Http(h) => h.port,
        };
        let Some(addr) = probe_addr(d, Some(port)) else {
            return Err(CapError::Invalid(format!(
                "container {} has no address to probe port {port} on",
                d.name
            )));
        };
        let passed = match probe {
            Probe::Tcp(_) => tcp_open(&addr).await,
            Probe::Http(h) => http_ok(&addr, &h.path).await,
        };
        Ok(if passed {
            Wait::Ready(())
        } else {
            Wait::ProbeAgain(probe_cadence(waited))
        })
    }
}

fn probe_cadence(waited: Duration) -> Duration {
    if waited < PROBE_FAST_FOR {
        PROBE_EVERY
    } else {
        PROBE_EVERY_LATER
    }
}

/// The next event about `d` that matters (pending forever once the
/// engine's event channel is closed).
async fn next_seen(
    events: &mut tokio::sync::broadcast::Receiver<crate::docker::ContainerEvent>,
    d: &ContainerDetails,
) -> Seen {
    loop {
        match events.recv().await {
            Ok(e) if e.id == d.id && !predates_run(&e, d) => match seen(&e.action, d) {
                Seen::Nothing => continue,
                s => return s,
            },
            Ok(_) => continue,
            // Missed some: whatever happened, inspecting tells.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return Seen::Changed,
            Err(_) => std::future::pending::<()>().await,
        }
    }
}

/// Whether event `e` happened before the run that inspection `d` saw
/// began: the `die` of the previous run, delivered late by a busy engine,
/// says nothing about this one (and must not cost an inspect).
fn predates_run(e: &crate::docker::ContainerEvent, d: &ContainerDetails) -> bool {
    let Some(started) = d
        .started_at
        .as_deref()
        .filter(|_| d.running)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    else {
        return false;
    };
    let Ok(nanos) = u64::try_from(e.time_nano) else {
        return false;
    };
    std::time::UNIX_EPOCH + Duration::from_nanos(nanos) < started
}

/// `Some(wait)` for a container that is not running (or is paused), an
/// error for one that stopped: waiting longer cannot help.
fn not_running<T>(d: &ContainerDetails) -> CapResult<Option<Wait<T>>> {
    if d.running && d.state != "paused" {
        return Ok(None);
    }
    not_exited(d)?;
    Ok(Some(Wait::InspectAgain(INSPECT_AGAIN_EVERY)))
}

/// Where to test "a port answers": the container's TCP port `port` (its
/// first exposed or published one if `None`) on the container's own
/// address. Only without one (no network the host shares) the published
/// address on the host — a weaker test, because Docker's userland proxy
/// accepts connections on a published port before the app listens.
fn probe_addr(d: &ContainerDetails, port: Option<u16>) -> Option<String> {
    let tcp = d
        .ports
        .iter()
        .filter(|p| p.protocol == "tcp")
        .filter(|p| port.is_none_or(|want| p.private_port == want));
    let private = match (tcp.clone().next(), port) {
        (Some(p), _) => Some(p.private_port),
        // Not exposed in the image: still reachable on the container's
        // address.
        (None, Some(want)) => Some(want),
        (None, None) => None,
    }?;
    if let Some(ip) = d.ip_address.as_deref().filter(|ip| !ip.is_empty()) {
        return Some(if ip.contains(':') {
            format!("[{ip}]:{private}")
        } else {
            format!("{ip}:{private}")
        });
    }
    let p = tcp.clone().find(|p| p.public_port.is_some())?;
    let ip = match p.ip.as_deref() {
        None | Some("") | Some("0.0.0.0") => "127.0.0.1",
        Some("::") => "::1",
        Some(ip) => ip,
    };
    Some(if ip.contains(':') {
        format!("[{ip}]:{}", p.public_port?)
    } else {
        format!("{ip}:{}", p.public_port?)
    })
}

/// `Err` for a container that stopped: waiting longer cannot help.
fn not_exited(d: &ContainerDetails) -> CapResult<()> {
    match d.state.as_str() {
        "exited" | "dead" => Err(CapError::Unavailable(format!(
            "container {} is {} (exit code {})",
            d.name,
            d.state,
            d.exit_code.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

async fn tcp_open(addr: &str) -> bool {
    tokio::time::timeout(
        Duration::from_millis(250),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// `GET http://addr/path` answers below 500 (the app is up; a 404 on a
/// probe path is the app's answer).
async fn http_ok(addr: &str, path: &str) -> bool {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(1000))
            .build()
            .expect("static client config")
    });
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() < 500)
}

impl ContainerHost for DockerContainers {
    fn list<'a>(
        &'a self,
        filters: &'a [LabelFilter],
        include_stopped: bool,
    ) -> BoxFuture<'a, CapResult<Vec<Container>>> {
        Box::pin(async move {
            let labels: Vec<String> = filters
                .iter()
                .map(|f| match &f.value {
                    Some(v) => format!("{}={v}", f.key),
                    None => f.key.clone(),
                })
                .collect();
            let list = self.docker.list(&labels).await.map_err(engine_err)?;
            Ok(list
                .into_iter()
                .filter(|c| include_stopped || c.state == "running")
                .map(from_summary)
                .collect())
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Container>> {
        Box::pin(async move {
            let d = self.docker.inspect(id).await.map_err(engine_err)?;
            Ok(from_details(&d))
        })
    }

    /// One engine request; already running is success.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.docker
                .start_container(id)
                .await
                .map(|_| ())
                .map_err(engine_err)
        })
    }

    /// One engine request (its time limit outlasts the stop timeout);
    /// already stopped is success.
    fn stop<'a>(&'a self, id: &'a str, timeout_secs: Option<u32>) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.not_own(id).await?;
            let t = timeout_secs.map(|s| Duration::from_secs(u64::from(s)));
            self.docker.stop_container(id, t).await.map_err(engine_err)
        })
    }

    fn expect_stop(&self, id: &str, plugin: &str) {
        self.docker.expect_stop(id, &format!("plugin:{plugin}"));
    }

    fn restart<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.docker
                .restart_container(id, None)
                .await
                .map_err(engine_err)
        })
    }

    /// Inspects once, then probes: the port on the container's address
    /// every 5 ms (25 ms after 5 s), and with a Docker healthcheck, the
    /// container's own check by exec as soon as the port opens (retried
    /// every 10 ms while it fails), instead of waiting for Docker's
    /// interval. Inspects again only on an engine event about the
    /// container (it died, was paused or restarted); Docker's own
    /// `health_status: healthy` counts at once.
    fn await_ready<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<Readiness>> {
        Box::pin(async move {
            // The healthcheck's floor counts from now: a check run before
            // the app could listen would only fail.
            let last_healthcheck = Mutex::new(Some(Instant::now()));
            let last_healthcheck = &last_healthcheck;
            self.wait_for(id, timeout, |d, waited| async move {
                self.check_ready(&d, waited, last_healthcheck).await
            })
            .await
        })
    }

    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.not_own(id).await?;
            self.docker.pause_container(id).await.map_err(engine_err)
        })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.docker.unpause_container(id).await.map_err(engine_err) })
    }

    fn await_probe<'a>(
        &'a self,
        id: &'a str,
        probe: &'a Probe,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.wait_for(id, timeout, |d, waited| async move {
                self.check_probe(&d, waited, probe).await
            })
            .await
        })
    }

    fn await_exit<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, CapResult<i32>> {
        Box::pin(async move {
            self.wait_for(id, timeout, |d, _| async move {
                Ok(match (d.running || d.state == "paused", d.exit_code) {
                    (false, code) => {
                        Wait::Ready(code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1))
                    }
                    // The engine announces the exit; this is only a fallback.
                    (true, _) => Wait::InspectAgain(Duration::from_secs(1)),
                })
            })
            .await
        })
    }

    /// Free for a container whose `die` the engine announced (the wake
    /// plugin asks for every sleeping member on every tick); else one
    /// inspect.
    fn exit_code<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Option<i32>>> {
        Box::pin(async move {
            let code = self.docker.exit_code(id).await.map_err(engine_err)?;
            Ok(code.and_then(|c| i32::try_from(c).ok()))
        })
    }
}

/// Per-plugin storage in the database.
pub struct DbStorage {
    pub db: Db,
}

impl StorageHost for DbStorage {
    fn get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, CapResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let (p, k) = (plugin.to_string(), key.to_string());
            self.db
                .run(move |c| plugin_kv::get(c, &p, &k))
                .await
                .map_err(db_err)
        })
    }

    fn set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
        quota_bytes: u64,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            let (p, k) = (plugin.to_string(), key.to_string());
            let quota = i64::try_from(quota_bytes).unwrap_or(i64::MAX);
            match self
                .db
                .run(move |c| plugin_kv::set(c, &p, &k, &value, quota))
                .await
                .map_err(db_err)?
            {
                plugin_kv::SetOutcome::Stored => Ok(()),
                plugin_kv::SetOutcome::OverQuota { .. } => Err(CapError::QuotaExceeded),
            }
        })
    }

    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(async move {
            let (p, k) = (plugin.to_string(), key.to_string());
            self.db
                .run(move |c| plugin_kv::delete(c, &p, &k))
                .await
                .map_err(db_err)
        })
    }

    fn list_keys<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, CapResult<Vec<String>>> {
        Box::pin(async move {
            let (p, k) = (plugin.to_string(), prefix.to_string());
            self.db
                .run(move |c| plugin_kv::keys(c, &p, &k))
                .await
                .map_err(db_err)
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        quota_bytes: u64,
    ) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(async move {
            let (p, k) = (plugin.to_string(), key.to_string());
            let quota = i64::try_from(quota_bytes).unwrap_or(i64::MAX);
            match self
                .db
                .run(move |c| {
                    plugin_kv::compare_and_swap(
                        c,
                        &p,
                        &k,
                        expected.as_deref(),
                        new.as_deref(),
                        quota,
                    )
                })
                .await
                .map_err(db_err)?
            {
                plugin_kv::CasOutcome::Swapped => Ok(true),
                plugin_kv::CasOutcome::Mismatch => Ok(false),
                plugin_kv::CasOutcome::OverQuota { .. } => Err(CapError::QuotaExceeded),
            }
        })
    }
}

enum PluginMetric {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

/// Container stats from the engine, and plugins' own metrics in the host's
/// Prometheus registry.
pub struct PromMetrics {
    pub docker: Arc<DockerEngine>,
    pub registry: prometheus::Registry,
    metrics: Mutex<HashMap<(String, String), (MetricDesc, PluginMetric)>>,
    /// Samples for `all-stats` (see [`StatsSampler`]).
    sampler: StatsSampler,
}

impl PromMetrics {
    pub fn new(docker: Arc<DockerEngine>, registry: prometheus::Registry) -> Self {
        Self {
            sampler: StatsSampler::new(docker.clone()),
            docker,
            registry,
            metrics: Mutex::new(HashMap::new()),
        }
    }

    async fn stats_of(&self, id: &str) -> CapResult<ContainerStats> {
        let d = self.docker.inspect(id).await.map_err(engine_err)?;
        if !d.running {
            return Ok(idle_stats(d.id, state_of(&d.state)));
        }
        let s = self.docker.stats(id).await.map_err(engine_err)?;
        Ok(sampled_stats(d.id, state_of(&d.state), &s, s.cpu_percent))
    }
}

fn metric_name(plugin: &str, name: &str) -> String {
    // The registry adds the `wakedock_` namespace.
    format!("plugin_{}_{}", plugin.replace('-', "_"), name)
}

impl MetricsHost for PromMetrics {
    fn container_stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<ContainerStats>> {
        Box::pin(self.stats_of(id))
    }

    /// The runtime's listing says which containers run; only those are
    /// sampled, each at most once per [`super::stats::MAX_AGE`] and in the
    /// background once it has a sample (see [`StatsSampler`]), so a plugin
    /// asking every second for hundreds of containers costs the engine one
    /// request per container per interval and waits for the engine only
    /// the first time.
    fn all_container_stats<'a>(
        &'a self,
        containers: &'a [Container],
    ) -> BoxFuture<'a, CapResult<Vec<ContainerStats>>> {
        Box::pin(async move {
            let (running, idle): (Vec<_>, Vec<_>) = containers
                .iter()
                .partition(|c| c.state == ContainerState::Running);
            let mut out: Vec<ContainerStats> = idle
                .into_iter()
                .map(|c| idle_stats(c.id.clone(), c.state))
                .collect();
            let running = running.into_iter().map(|c| c.id.clone()).collect();
            out.extend(self.sampler.running(running).await);
            Ok(out)
        })
    }

    fn register(&self, plugin: &str, desc: &MetricDesc) -> CapResult<()> {
        let key = (plugin.to_string(), desc.name.clone());
        let mut map = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((existing, _)) = map.get(&key) {
            return if existing == desc {
                Ok(())
            } else {
                Err(CapError::Invalid(format!(
                    "metric {} is already registered with another description",
                    desc.name
                )))
            };
        }
        let name = metric_name(plugin, &desc.name);
        let labels: Vec<&str> = desc.label_names.iter().map(String::as_str).collect();
        let invalid = |e: prometheus::Error| CapError::Invalid(e.to_string());
        let metric = match desc.kind {
            MetricKind::Counter => {
                let m = CounterVec::new(Opts::new(name, desc.help.clone()), &labels)
                    .map_err(invalid)?;
                self.registry
                    .register(Box::new(m.clone()))
                    .map_err(invalid)?;
                PluginMetric::Counter(m)
            }
            MetricKind::Gauge => {
                let m =
                    GaugeVec::new(Opts::new(name, desc.help.clone()), &labels).map_err(invalid)?;
                self.registry
                    .register(Box::new(m.clone()))
                    .map_err(invalid)?;
                PluginMetric::Gauge(m)
            }
            MetricKind::Histogram => {
                let mut opts = HistogramOpts::new(name, desc.help.clone());
                if !desc.buckets.is_empty() {
                    opts = opts.buckets(desc.buckets.clone());
                }
                let m = HistogramVec::new(opts, &labels).map_err(invalid)?;
                self.registry
                    .register(Box::new(m.clone()))
                    .map_err(invalid)?;
                PluginMetric::Histogram(m)
            }
        };
        map.insert(key, (desc.clone(), metric));
        Ok(())
    }

    fn record(
        &self,
        plugin: &str,
        name: &str,
        kind: MetricKind,
        label_values: &[String],
        value: f64,
    ) -> CapResult<()> {
        let map = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        let (_, metric) = map
            .get(&(plugin.to_string(), name.to_string()))
            .ok_or(CapError::NotFound)?;
        let values: Vec<&str> = label_values.iter().map(String::as_str).collect();
        let invalid = |e: prometheus::Error| CapError::Invalid(e.to_string());
        match (metric, kind) {
            (PluginMetric::Counter(m), MetricKind::Counter) => {
                if value < 0.0 {
                    return Err(CapError::Invalid("a counter cannot decrease".into()));
                }
                m.get_metric_with_label_values(&values)
                    .map_err(invalid)?
                    .inc_by(value)
            }
            (PluginMetric::Gauge(m), MetricKind::Gauge) => m
                .get_metric_with_label_values(&values)
                .map_err(invalid)?
                .set(value),
            (PluginMetric::Histogram(m), MetricKind::Histogram) => m
                .get_metric_with_label_values(&values)
                .map_err(invalid)?
                .observe(value),
            _ => {
                return Err(CapError::Invalid(format!(
                    "{name} is not a metric of that kind"
                )))
            }
        }
        Ok(())
    }
}

/// Plugins publish to the host's event bus.
pub struct BusEvents {
    pub bus: EventBus,
}

impl EventSink for BusEvents {
    fn publish(&self, plugin: &str, topic: &str, payload: &str) -> CapResult<()> {
        self.bus.publish(plugin, topic, payload);
        Ok(())
    }
}

/// Outbound HTTP through reqwest, without following redirects (a redirect
/// could leave the allowlisted host).
pub struct ReqwestOutbound {
    client: reqwest::Client,
}

impl ReqwestOutbound {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("wakedock-plugin/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }
}

impl HttpOutbound for ReqwestOutbound {
    fn send<'a>(
        &'a self,
        _plugin: &'a str,
        url: &'a url::Url,
        request: OutboundRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<OutboundResponse>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .map_err(|_| CapError::Invalid(format!("bad method {:?}", request.method)))?;
            let mut rb = self
                .client
                .request(method, url.as_str())
                .timeout(timeout)
                .body(request.body);
            for (k, v) in &request.headers {
                rb = rb.header(k, v);
            }
            let resp = rb.send().await.map_err(|e| {
                if e.is_timeout() {
                    CapError::Timeout
                } else {
                    CapError::Unavailable(e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = resp
                .bytes()
                .await
                .map_err(|e| CapError::Unavailable(e.to_string()))?
                .to_vec();
            Ok(OutboundResponse {
                status,
                headers,
                body,
            })
        })
    }
}

/// Permission refusals go to the audit log.
pub struct DbAudit {
    pub db: Db,
    /// The write runs in the background, tracked so shutdown waits for it.
    pub tasks: crate::tasks::Tasks,
}

/// Refusals arrive here already deduplicated (once per distinct refusal
/// and interval): each becomes one log line and one audit row.
impl AuditSink for DbAudit {
    fn record(&self, e: AuditEntry) {
        TracingAudit.record(e.clone());
        let mut entry =
            NewAuditEntry::new(&format!("plugin.{}.{}", e.capability, e.action), "denied");
        entry.actor = Some(format!("plugin:{}", e.plugin));
        entry.target = Some(e.target);
        entry.detail = Some(match e.repeated {
            0 => e.reason,
            n => format!(
                "{} (and {n} identical refusals since the last entry, not recorded one by one)",
                e.reason
            ),
        });
        let db = self.db.clone();
        self.tasks.spawn("plugin refusal audit", async move {
            if let Err(err) = db.run(move |c| crate::db::audit::insert(c, &entry)).await {
                tracing::error!(error = %err, "could not audit a plugin refusal");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(running: bool, state: &str) -> ContainerDetails {
        ContainerDetails {
            id: "f00d".into(),
            name: "web".into(),
            image: String::new(),
            image_id: String::new(),
            state: state.into(),
            health: "none".into(),
            running,
            exit_code: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            created: None,
            labels: Default::default(),
            ports: Vec::new(),
            mounts: Vec::new(),
            env_count: 0,
            command: Vec::new(),
            has_healthcheck: false,
            healthcheck_test: None,
            ip_address: None,
        }
    }

    #[test]
    fn only_events_that_change_a_container_cost_an_inspect() {
        let running = details(true, "running");
        let stopped = details(false, "exited");
        // Our own healthcheck execs and a start we already saw: nothing.
        assert_eq!(
            seen("exec_start: /testapp healthcheck", &running),
            Seen::Nothing
        );
        assert_eq!(seen("exec_die", &running), Seen::Nothing);
        assert_eq!(seen("start", &running), Seen::Nothing);
        assert_eq!(seen("rename", &running), Seen::Nothing);
        // Docker's own check: taken as told, no inspect.
        assert_eq!(
            seen("health_status: healthy", &running),
            Seen::Health("healthy".into())
        );
        assert_eq!(seen("die", &running), Seen::Changed);
        assert_eq!(seen("pause", &running), Seen::Changed);
        assert_eq!(seen("start", &stopped), Seen::Changed);
        assert_eq!(seen("unpause", &details(true, "paused")), Seen::Changed);
    }

    #[test]
    fn an_event_from_before_the_inspected_run_is_stale() {
        let mut running = details(true, "running");
        running.started_at = Some("2026-12-01T10:00:00.500000000Z".into());
        let at = |t: &str| crate::docker::ContainerEvent {
            id: running.id.clone(),
            name: None,
            action: "die".into(),
            time_nano: humantime::parse_rfc3339(t)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i64,
            labels: Default::default(),
        };
        // The previous run's die, delivered after this run's inspect.
        assert!(predates_run(
            &at("2026-12-01T10:00:00.400000000Z"),
            &running
        ));
        assert!(!predates_run(
            &at("2026-12-01T10:00:00.600000000Z"),
            &running
        ));
        // Not running: every event may matter.
        let mut stopped = running.clone();
        stopped.running = false;
        assert!(!predates_run(
            &at("2026-12-01T10:00:00.400000000Z"),
            &stopped
        ));
    }

    #[test]
    fn our_own_container_is_recognised_without_the_engine() {
        let (id, name) = ("0123456789abcdef0123", "wakedock");
        assert_eq!(own_ref(id, id, name), OwnRef::Own);
        assert_eq!(own_ref("wakedock", id, name), OwnRef::Own);
        assert_eq!(own_ref("/wakedock", id, name), OwnRef::Own);
        assert_eq!(own_ref("web", id, name), OwnRef::Other);
        assert_eq!(own_ref("fedcba", id, name), OwnRef::Other);
        // A short id of ours, unless a container has that name.
        assert_eq!(own_ref("0123456789ab", id, name), OwnRef::Ambiguous);
    }
}
