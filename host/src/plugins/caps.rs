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

use crate::db::audit::NewAuditEntry;
use crate::db::{plugin_kv, Db, DbError};
use crate::docker::{ContainerDetails, ContainerSummary, DockerEngine, EngineError};
use crate::events::EventBus;

fn engine_err(e: EngineError) -> CapError {
    match e {
        EngineError::NotFound(_) => CapError::NotFound,
        EngineError::BadRequest(m) => CapError::Invalid(m),
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
pub struct DockerContainers {
    pub docker: Arc<DockerEngine>,
    /// WakeDock's own container, when it runs in one: never stopped or
    /// paused by a plugin (see [`own_container`]).
    pub own_id: Option<String>,
}

/// The (id, name) of the container WakeDock runs in, if any: Docker sets
/// the hostname to the short id and leaves `/.dockerenv`.
pub async fn own_container(docker: &DockerEngine) -> Option<(String, String)> {
    if !std::path::Path::new("/.dockerenv").exists() {
        return None;
    }
    let host = std::fs::read_to_string("/etc/hostname").ok()?;
    docker
        .inspect(host.trim())
        .await
        .ok()
        .map(|d| (d.id, d.name))
}

impl DockerContainers {
    /// Refuses to act on WakeDock's own container.
    async fn not_own(&self, id: &str) -> CapResult<()> {
        let Some(own) = &self.own_id else {
            return Ok(());
        };
        let d = self.docker.inspect(id).await.map_err(engine_err)?;
        if &d.id == own {
            return Err(CapError::PermissionDenied(
                "WakeDock never stops or pauses its own container".into(),
            ));
        }
        Ok(())
    }
}

/// How often readiness is re-checked between engine events: a port probe
/// is cheap; a healthcheck is an exec in the container.
const PORT_PROBE_EVERY: Duration = Duration::from_millis(25);
const HEALTHCHECK_EVERY: Duration = Duration::from_millis(100);

impl DockerContainers {
    /// One readiness check: `Ok(Ok(readiness))` when ready, else
    /// `Ok(Err(when to look again))`.
    async fn check_ready(&self, id: &str) -> CapResult<Result<Readiness, Duration>> {
        let d = self.docker.inspect(id).await.map_err(engine_err)?;
        if !d.running {
            not_exited(&d)?;
            return Ok(Err(PORT_PROBE_EVERY));
        }
        if let Some(test) = &d.healthcheck_test {
            if d.health == "healthy" {
                return Ok(Ok(Readiness::Healthy));
            }
            // Run the container's own check now rather than wait for
            // Docker's next interval.
            let passed = self
                .docker
                .run_healthcheck(id, test, Duration::from_secs(5))
                .await
                .map_err(engine_err)?;
            return Ok(if passed {
                Ok(Readiness::Healthy)
            } else {
                Err(HEALTHCHECK_EVERY)
            });
        }
        let Some(addr) = probe_addr(&d, None) else {
            return Ok(Ok(Readiness::Running));
        };
        Ok(if tcp_open(&addr).await {
            Ok(Readiness::PortOpen)
        } else {
            Err(PORT_PROBE_EVERY)
        })
    }

    /// One explicit probe: `Ok(Ok(()))` when it passes.
    async fn check_probe(&self, id: &str, probe: &Probe) -> CapResult<Result<(), Duration>> {
        let d = self.docker.inspect(id).await.map_err(engine_err)?;
        if !d.running {
            not_exited(&d)?;
            return Ok(Err(PORT_PROBE_EVERY));
        }
        let port = match probe {
            Probe::Tcp(p) => *p,
            Probe::Http(h) => h.port,
        };
        let Some(addr) = probe_addr(&d, Some(port)) else {
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
            Ok(())
        } else {
            Err(PORT_PROBE_EVERY)
        })
    }

    /// Runs `check` until it is ready, again on every engine event about
    /// the container and between events at the pace `check` asks for.
    async fn wait_for<T, F, Fut>(&self, id: &str, timeout: Duration, check: F) -> CapResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = CapResult<Result<T, Duration>>>,
    {
        // Subscribe before the first check so no event is missed between.
        let mut events = self.docker.subscribe();
        let deadline = Instant::now() + timeout;
        let full_id = self.docker.inspect(id).await.map_err(engine_err)?.id;
        loop {
            let again = match check().await? {
                Ok(r) => return Ok(r),
                Err(again) => again,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CapError::Timeout);
            }
            let poll = tokio::time::sleep(again.min(remaining));
            tokio::select! {
                _ = poll => {}
                _ = async {
                    loop {
                        match events.recv().await {
                            Ok(e) if e.id == full_id => return,
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(_) => std::future::pending::<()>().await,
                        }
                    }
                } => {}
            }
        }
    }
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

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.docker.start(id).await.map(|_| ()).map_err(engine_err) })
    }

    fn stop<'a>(&'a self, id: &'a str, timeout_secs: Option<u32>) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.not_own(id).await?;
            let t = timeout_secs.map(|s| Duration::from_secs(u64::from(s)));
            self.docker
                .stop(id, t)
                .await
                .map(|_| ())
                .map_err(engine_err)
        })
    }

    fn expect_stop(&self, id: &str, plugin: &str) {
        self.docker.expect_stop(id, &format!("plugin:{plugin}"));
    }

    fn restart<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.docker
                .restart(id, None)
                .await
                .map(|_| ())
                .map_err(engine_err)
        })
    }

    /// Re-checks on every engine event about the container (start, health
    /// status...), and between events every 25 ms while waiting for a port
    /// to open (the engine does not announce it) or every 100 ms by running
    /// the container's own healthcheck.
    fn await_ready<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<Readiness>> {
        Box::pin(async move { self.wait_for(id, timeout, || self.check_ready(id)).await })
    }

    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.not_own(id).await?;
            self.docker.pause(id).await.map(|_| ()).map_err(engine_err)
        })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.docker
                .unpause(id)
                .await
                .map(|_| ())
                .map_err(engine_err)
        })
    }

    fn await_probe<'a>(
        &'a self,
        id: &'a str,
        probe: &'a Probe,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            self.wait_for(id, timeout, || self.check_probe(id, probe))
                .await
        })
    }

    fn await_exit<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, CapResult<i32>> {
        Box::pin(async move {
            self.wait_for(id, timeout, || async {
                let d = self.docker.inspect(id).await.map_err(engine_err)?;
                Ok(match (d.running || d.state == "paused", d.exit_code) {
                    (false, code) => Ok(code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1)),
                    // The engine announces the exit; this is only a fallback.
                    (true, _) => Err(Duration::from_secs(1)),
                })
            })
            .await
        })
    }

    fn exit_code<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Option<i32>>> {
        Box::pin(async move {
            let d = self.docker.inspect(id).await.map_err(engine_err)?;
            Ok(match d.running || d.state == "paused" {
                true => None,
                false => d.exit_code.and_then(|c| i32::try_from(c).ok()),
            })
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
}

impl PromMetrics {
    pub fn new(docker: Arc<DockerEngine>, registry: prometheus::Registry) -> Self {
        Self {
            docker,
            registry,
            metrics: Mutex::new(HashMap::new()),
        }
    }

    async fn stats_of(&self, id: &str) -> CapResult<ContainerStats> {
        let d = self.docker.inspect(id).await.map_err(engine_err)?;
        let now = crate::db::now_ms() as u64;
        if !d.running {
            return Ok(ContainerStats {
                container_id: d.id,
                state: state_of(&d.state),
                cpu_percent: 0.0,
                memory_bytes: 0,
                memory_limit_bytes: 0,
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                last_activity_ms: None,
                at_ms: now,
            });
        }
        let s = self.docker.stats(id).await.map_err(engine_err)?;
        Ok(ContainerStats {
            container_id: d.id,
            state: state_of(&d.state),
            cpu_percent: s.cpu_percent,
            memory_bytes: s.memory_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            net_rx_bytes: s.network_rx_bytes,
            net_tx_bytes: s.network_tx_bytes,
            last_activity_ms: None,
            at_ms: now,
        })
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

    fn all_container_stats(&self) -> BoxFuture<'_, CapResult<Vec<ContainerStats>>> {
        Box::pin(async move {
            let list = self.docker.list(&[]).await.map_err(engine_err)?;
            let all = futures::future::join_all(list.iter().map(|c| self.stats_of(&c.id))).await;
            Ok(all.into_iter().filter_map(Result::ok).collect())
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
        tokio::spawn(async move {
            if let Err(err) = db.run(move |c| crate::db::audit::insert(c, &entry)).await {
                tracing::error!(error = %err, "could not audit a plugin refusal");
            }
        });
    }
}
