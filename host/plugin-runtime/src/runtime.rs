//! The plugin runtime: one wasmtime `Engine`, loaded plugins, their
//! instance pools, limits, failure tracking and status.
//!
//! # Instance model
//!
//! Each plugin has a small pool of live instances (at most `max-instances`,
//! each in its own `Store`), created from a pre-linked `InstancePre` with
//! the pooling allocator. A call takes an idle instance (or creates one,
//! running `init`), runs, and gives it back. So calls into one plugin run
//! concurrently up to `max-instances`; calls beyond wait for a free
//! instance (bounded by the wall-time limit). An instance is dropped, never
//! reused, after a trap, a timeout or a limit breach, and is recycled after
//! [`RuntimeConfig::recycle_after_calls`] calls, because a `Store` never
//! frees what accumulates in it. A burst of concurrent calls (a wake storm)
//! grows the pool; instances left idle for
//! [`RuntimeConfig::idle_instance_ttl`] are dropped, all but the newest, so
//! the host's memory comes back down after the burst.
//!
//! # Where wasm runs
//!
//! On the tokio runtime, through wasmtime's async calls: the engine's epoch
//! is advanced by a background thread every [`RuntimeConfig::epoch_tick`]
//! and each store yields to tokio on every tick, so a busy plugin holds a
//! worker thread for at most one tick at a time. The same epoch callback
//! counts ticks per call and interrupts the call when its CPU budget is
//! spent (this works inside an infinite loop). A tokio timeout around the
//! whole call also bounds time spent awaiting host calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

use crate::bindings::wakedock::plugin as wit;
use crate::bindings::{Plugin as PluginBindings, PluginPre};
use crate::cache::{CacheOutcome, CompileCache};
use crate::caps::{AuthContext, Event, HostCapabilities, HttpRequest, HttpResponse};
use crate::error::{CallError, RuntimeError};
use crate::host::{deny_all_wasi, Limiter, PluginShared, PluginState};
use crate::manifest::{
    check_api_version, min_opt, topic_matches, Grant, Manifest, Permissions, HOST_API_VERSION,
};

/// The WIT package of the plugin API.
const API_PACKAGE: &str = "wakedock:plugin";

/// Host-wide settings: defaults and ceilings for per-plugin limits, pool
/// sizes and failure policy.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory for compiled artifacts; `None` compiles on every load.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Epoch period: CPU-limit granularity and the longest a plugin holds a
    /// tokio worker without yielding.
    pub epoch_tick: Duration,
    pub default_memory_bytes: u64,
    pub max_memory_bytes: u64,
    pub default_cpu_ms_per_call: u64,
    pub max_cpu_ms_per_call: u64,
    pub default_wall_ms_per_call: u64,
    pub max_wall_ms_per_call: u64,
    pub default_max_instances: u32,
    pub max_instances: u32,
    pub default_table_elements: u32,
    pub max_table_elements: u32,
    /// An instance is replaced after this many calls.
    pub recycle_after_calls: u64,
    /// Idle instances beyond the newest one are dropped once they have not
    /// been used for this long (checked whenever an instance is returned).
    pub idle_instance_ttl: Duration,
    /// Consecutive failed calls that put a plugin in `failed`.
    pub failure_threshold: u32,
    /// First back-off; doubles on each relapse up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Live instances across all plugins (size of wasmtime's pool).
    pub pool_total_instances: u32,
    /// A plugin's identical permission refusals are audited (and logged by
    /// the host) once per this interval; the record counts those left out.
    pub denial_report_interval: Duration,
    /// Wasm stack per call.
    pub max_wasm_stack_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            default_memory_bytes: 32 << 20,
            max_memory_bytes: 256 << 20,
            default_cpu_ms_per_call: 200,
            max_cpu_ms_per_call: 10_000,
            default_wall_ms_per_call: 10_000,
            max_wall_ms_per_call: 120_000,
            default_max_instances: 4,
            max_instances: 32,
            default_table_elements: 20_000,
            max_table_elements: 1_000_000,
            recycle_after_calls: 10_000,
            idle_instance_ttl: Duration::from_secs(30),
            failure_threshold: 3,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30 * 60),
            pool_total_instances: 1000,
            denial_report_interval: Duration::from_secs(10 * 60),
            max_wasm_stack_bytes: 512 << 10,
        }
    }
}

/// A loaded plugin's identifier: its (unique) manifest name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PluginId(pub String);

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Limits in force for one plugin (manifest ∩ grant ∩ host ceilings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveLimits {
    pub memory_bytes: u64,
    pub cpu_ms_per_call: u64,
    pub wall_ms_per_call: u64,
    pub max_instances: u32,
    pub max_tables: u32,
    pub max_table_elements: u32,
}

/// Administrative/health state of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PluginHealth {
    Enabled,
    Disabled,
    /// Too many consecutive failures: calls are refused until `retry_at`,
    /// then the plugin is retried automatically.
    Failed {
        reason: String,
        retry_at: SystemTime,
        consecutive_failures: u32,
    },
}

/// A snapshot of one plugin for the admin UI / API.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub id: PluginId,
    pub version: String,
    pub api_version: String,
    pub sha256: String,
    pub health: PluginHealth,
    pub calls: u64,
    pub errors: u64,
    pub total_time: Duration,
    pub memory_high_water_bytes: u64,
    pub live_instances: usize,
    pub last_error: Option<String>,
    pub limits: EffectiveLimits,
    pub loaded_from_cache: bool,
    /// Calls of each `containers` function (`inspect`, `start`,
    /// `await-ready`...), allowed or refused: what the plugin asks of the
    /// engine.
    pub container_calls: std::collections::BTreeMap<&'static str, u64>,
}

/// What [`PluginRuntime::load`] did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub id: PluginId,
    pub cache: CacheOutcome,
    pub compile_time: Duration,
    pub init_time: Duration,
}

struct Instance {
    store: Store<PluginState>,
    bindings: PluginBindings,
    calls: u64,
    /// When it was last returned to the pool.
    idle_since: Instant,
}

#[derive(Debug)]
struct HealthState {
    admin_enabled: bool,
    consecutive_failures: u32,
    relapses: u32,
    failed_until: Option<SystemTime>,
    failed_reason: Option<String>,
}

struct LoadedPlugin {
    manifest: Manifest,
    sha256: String,
    limits: EffectiveLimits,
    shared: Arc<PluginShared>,
    pre: PluginPre<PluginState>,
    config_json: String,
    idle: Mutex<Vec<Instance>>,
    permits: Semaphore,
    live: AtomicU64,
    health: Mutex<HealthState>,
    calls: AtomicU64,
    errors: AtomicU64,
    total_nanos: AtomicU64,
    memory_hwm: AtomicU64,
    from_cache: bool,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

enum Call {
    Event(Event),
    Tick,
    Http(HttpRequest, AuthContext),
}

enum Output {
    Unit,
    Http(HttpResponse),
}

pub(crate) struct Inner {
    engine: Engine,
    config: RuntimeConfig,
    caps: HostCapabilities,
    cache: CompileCache,
    plugins: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    /// Set by [`PluginRuntime::stop_ticks`]: tickers end after their
    /// current tick and no new one starts.
    ticks_stopped: tokio::sync::watch::Sender<bool>,
}

/// The plugin runtime. Cheap to clone (shared state).
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes out of an idle pool (oldest first, as calls take the newest) the
/// instances idle for longer than `ttl`, always leaving the newest one so
/// the next call finds a warm instance.
fn take_stale(idle: &mut Vec<Instance>, ttl: Duration) -> Vec<Instance> {
    let keep_from = idle
        .iter()
        .position(|i| i.idle_since.elapsed() < ttl)
        .unwrap_or(idle.len())
        .min(idle.len().saturating_sub(1));
    idle.drain(..keep_from).collect()
}

/// The text of a panic's payload (`catch_unwind`'s error).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

impl PluginRuntime {
    /// Builds the engine (epoch interruption, pooling allocator, no
    /// component-model concurrency) and starts the epoch ticker thread.
    pub fn new(
        config: RuntimeConfig,
        caps: HostCapabilities,
    ) -> Result<PluginRuntime, RuntimeError> {
        let mut wc = wasmtime::Config::new();
        wc.epoch_interruption(true);
        // Concurrency support (WASIp3) triples call overhead; plugins are
        // WASIp2 components and do not need it.
        wc.concurrency_support(false);
        wc.max_wasm_stack(config.max_wasm_stack_bytes);
        let mut pool = PoolingAllocationConfig::new();
        let n = config.pool_total_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(config.max_memory_bytes as usize)
            // Keep few warm slots so RSS tracks live instances.
            .max_unused_warm_slots(16);
        wc.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wc).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = CompileCache::new(&engine, config.cache_dir.clone())
            .map_err(|e| RuntimeError::Cache(e.to_string()))?;

        let weak = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("wakedock-plugin-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("starting epoch thread: {e}")))?;

        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                engine,
                config,
                caps,
                cache,
                plugins: RwLock::new(HashMap::new()),
                ticks_stopped: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The wasmtime engine (for tools and benchmarks).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Validates, compiles (or loads from cache), links and initialises a
    /// plugin. `config_override` (a JSON object, or `Null`) is merged over
    /// the manifest's `[config]`. The plugin serves calls once this returns.
    pub async fn load(
        &self,
        manifest: Manifest,
        wasm: &[u8],
        grant: Grant,
        config_override: serde_json::Value,
    ) -> Result<LoadReport, RuntimeError> {
        if self.read_plugins().contains_key(&manifest.name) {
            return Err(RuntimeError::AlreadyLoaded(manifest.name));
        }
        let name = manifest.name.clone();
        let (plugin, report) = match self.prepare(manifest, wasm, grant, config_override).await {
            Ok(p) => p,
            Err(e) => {
                // An `init` that followed logs before failing leaves nothing.
                self.end_follows(&name);
                return Err(e);
            }
        };
        {
            let mut map = self
                .inner
                .plugins
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if map.contains_key(&name) {
                return Err(RuntimeError::AlreadyLoaded(name));
            }
            map.insert(name.clone(), plugin.clone());
        }
        self.start_ticker(&plugin);
        tracing::info!(plugin = %name, version = %plugin.manifest.version, cache = ?report.cache, "plugin loaded");
        Ok(report)
    }

    /// Checks a package without loading it: the manifest (fields and API
    /// version), and that `wasm` is a component whose every import is
    /// requested by the manifest and whose exports are the plugin world's.
    /// What a dry run and the grant screen rely on before they show
    /// anything. Compiles (through the compile cache, so a later install
    /// of the same component does not compile again).
    pub async fn validate(&self, manifest: &Manifest, wasm: &[u8]) -> Result<(), RuntimeError> {
        manifest.validate()?;
        check_api_version(&manifest.api_version)?;
        self.compile_checked(manifest, wasm).await.map(|_| ())
    }

    /// Compiles (or loads the cached artifact) off the async workers, then
    /// checks the component's imports against the manifest and its exports
    /// against the plugin world.
    async fn compile_checked(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
    ) -> Result<(wasmtime::component::Component, CacheOutcome), RuntimeError> {
        let engine = self.inner.engine.clone();
        let bytes = wasm.to_vec();
        let inner = self.inner.clone();
        let compiled =
            tokio::task::spawn_blocking(move || inner.cache.load_or_compile(&engine, &bytes))
                .await
                .map_err(|e| RuntimeError::Engine(format!("compile task: {e}")))?;
        let (component, cache) = compiled.map_err(|e| RuntimeError::MalformedWasm {
            plugin: manifest.name.clone(),
            message: format!("{e:#}"),
        })?;
        check_imports(&self.inner.engine, &component, manifest)?;
        check_exports(&self.inner.engine, &component, &manifest.name)?;
        Ok((component, cache))
    }

    /// Replaces a loaded plugin with a new version (or new grant/config)
    /// without a host restart. The new version is fully validated and
    /// initialised before the swap; on error the old one keeps running.
    /// Calls already running on the old version finish on it.
    pub async fn upgrade(
        &self,
        manifest: Manifest,
        wasm: &[u8],
        grant: Grant,
        config_override: serde_json::Value,
    ) -> Result<LoadReport, RuntimeError> {
        if !self.read_plugins().contains_key(&manifest.name) {
            return Err(RuntimeError::NotLoaded(manifest.name));
        }
        let name = manifest.name.clone();
        let (plugin, report) = match self.prepare(manifest, wasm, grant, config_override).await {
            Ok(p) => p,
            Err(e) => {
                // The old version keeps running, with its own subscriptions
                // (a failed `init` of the new one may have replaced them).
                if let Ok(old) = self.get(&name) {
                    old.shared.sync_follows();
                }
                return Err(e);
            }
        };
        let old = {
            let mut map = self
                .inner
                .plugins
                .write()
                .unwrap_or_else(|p| p.into_inner());
            map.insert(name.clone(), plugin.clone())
        };
        if let Some(old) = old {
            if let Some(t) = lock(&old.ticker).take() {
                t.abort();
            }
        }
        // Exactly the new version's subscriptions (under the new grant):
        // the old version's end with it.
        plugin.shared.sync_follows();
        self.start_ticker(&plugin);
        tracing::info!(plugin = %name, version = %plugin.manifest.version, "plugin upgraded");
        Ok(report)
    }

    /// Removes a plugin. Running calls finish; its ticker stops.
    pub fn unload(&self, id: &str) -> Result<(), RuntimeError> {
        let removed = self
            .inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match removed {
            Some(p) => {
                if let Some(t) = lock(&p.ticker).take() {
                    t.abort();
                }
                self.end_follows(id);
                Ok(())
            }
            None => Err(RuntimeError::NotLoaded(id.to_owned())),
        }
    }

    /// Re-enables a plugin (also clears a `failed` state).
    pub fn enable(&self, id: &str) -> Result<(), RuntimeError> {
        let p = self.get(id)?;
        let mut h = lock(&p.health);
        h.admin_enabled = true;
        h.failed_until = None;
        h.failed_reason = None;
        h.consecutive_failures = 0;
        h.relapses = 0;
        Ok(())
    }

    /// Stops serving calls to a plugin until [`enable`](Self::enable).
    pub fn disable(&self, id: &str) -> Result<(), RuntimeError> {
        let p = self.get(id)?;
        lock(&p.health).admin_enabled = false;
        let dropped = std::mem::take(&mut *lock(&p.idle));
        p.live.fetch_sub(dropped.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Delivers `event` to every enabled plugin entitled to it (container
    /// events: plugins whose container selector matches; bus events:
    /// plugins subscribed to the topic, except the publisher), concurrently.
    /// Returns each recipient's outcome.
    pub async fn dispatch_event(&self, event: Event) -> Vec<(PluginId, Result<(), RuntimeError>)> {
        let recipients: Vec<Arc<LoadedPlugin>> = self
            .read_plugins()
            .values()
            .filter(|p| entitled(p, &event))
            .cloned()
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for p in recipients {
            let rt = self.clone();
            let ev = event.clone();
            set.spawn(async move {
                let id = PluginId(p.manifest.name.clone());
                let r = rt.call(&p, Call::Event(ev)).await.map(|_| ());
                (id, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(pair) = r {
                out.push(pair);
            }
        }
        out
    }

    /// Ends every log subscription of plugin `name`.
    fn end_follows(&self, name: &str) {
        self.inner
            .caps
            .logs
            .set_follows(name, Vec::new(), crate::logs::LogDelivery::nowhere());
    }

    /// Delivers `event` to the load of a plugin that `shared` belongs to
    /// (a log line, whatever its subscriptions to the bus); false if that
    /// load is no longer the plugin's (unloaded or upgraded).
    pub(crate) async fn deliver_to(
        &self,
        shared: &Arc<PluginShared>,
        event: Event,
    ) -> Result<bool, RuntimeError> {
        let Some(p) = self.read_plugins().get(&shared.name).cloned() else {
            return Ok(false);
        };
        if !Arc::ptr_eq(&p.shared, shared) {
            return Ok(false);
        }
        self.call(&p, Call::Event(event)).await.map(|_| true)
    }

    /// Delivers `event` to one plugin, regardless of subscriptions.
    pub async fn send_event(&self, id: &str, event: Event) -> Result<(), RuntimeError> {
        let p = self.get(id)?;
        self.call(&p, Call::Event(event)).await.map(|_| ())
    }

    /// Runs `on-tick` once. Plugins with a `tick-interval` are also ticked
    /// automatically by a task started at load (when loaded inside a tokio
    /// runtime).
    pub async fn tick(&self, id: &str) -> Result<(), RuntimeError> {
        let p = self.get(id)?;
        self.call(&p, Call::Tick).await.map(|_| ())
    }

    /// Routes an HTTP request (path relative to `/api/v1/plugins/{id}`) to
    /// a plugin. The host authenticates first and passes the caller.
    pub async fn handle_http(
        &self,
        id: &str,
        request: HttpRequest,
        auth: AuthContext,
    ) -> Result<HttpResponse, RuntimeError> {
        let p = self.get(id)?;
        match self.call(&p, Call::Http(request, auth)).await? {
            Output::Http(r) => Ok(r),
            Output::Unit => Err(RuntimeError::Call {
                plugin: id.to_owned(),
                kind: CallError::Trap("handle-http returned no response".into()),
            }),
        }
    }

    /// Status of every loaded plugin, sorted by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        let mut v: Vec<PluginStatus> = self.read_plugins().values().map(|p| status_of(p)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Status of one plugin.
    pub fn plugin_status(&self, id: &str) -> Result<PluginStatus, RuntimeError> {
        let p = self.get(id)?;
        Ok(status_of(&p))
    }

    /// The navigation entries (`[[pages]]`) of every enabled plugin, by
    /// plugin name.
    pub fn pages(&self) -> Vec<(String, Vec<crate::manifest::PageEntry>)> {
        let mut v: Vec<_> = self
            .read_plugins()
            .values()
            .filter(|p| !p.manifest.pages.is_empty() && lock(&p.health).admin_enabled)
            .map(|p| (p.manifest.name.clone(), p.manifest.pages.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Effective permissions of a loaded plugin.
    pub fn permissions(&self, id: &str) -> Result<Permissions, RuntimeError> {
        Ok(self.get(id)?.shared.perms.clone())
    }

    fn read_plugins(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LoadedPlugin>>> {
        self.inner.plugins.read().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<LoadedPlugin>, RuntimeError> {
        self.read_plugins()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotLoaded(id.to_owned()))
    }

    fn effective_limits(&self, m: &Manifest, g: &Grant) -> EffectiveLimits {
        let c = &self.inner.config;
        let (ml, gl) = (&m.limits, &g.limits);
        EffectiveLimits {
            memory_bytes: min_opt(
                &[ml.memory_bytes, gl.memory_bytes],
                c.default_memory_bytes,
                c.max_memory_bytes,
            ),
            cpu_ms_per_call: min_opt(
                &[ml.cpu_ms_per_call, gl.cpu_ms_per_call],
                c.default_cpu_ms_per_call,
                c.max_cpu_ms_per_call,
            ),
            wall_ms_per_call: min_opt(
                &[ml.wall_ms_per_call, gl.wall_ms_per_call],
                c.default_wall_ms_per_call,
                c.max_wall_ms_per_call,
            ),
            max_instances: min_opt(
                &[
                    ml.max_instances.map(u64::from),
                    gl.max_instances.map(u64::from),
                ],
                c.default_max_instances.into(),
                c.max_instances.into(),
            ) as u32,
            max_tables: min_opt(
                &[ml.max_tables.map(u64::from), gl.max_tables.map(u64::from)],
                16,
                64,
            ) as u32,
            max_table_elements: min_opt(
                &[
                    ml.max_table_elements.map(u64::from),
                    gl.max_table_elements.map(u64::from),
                ],
                c.default_table_elements.into(),
                c.max_table_elements.into(),
            ) as u32,
        }
    }

    async fn prepare(
        &self,
        manifest: Manifest,
        wasm: &[u8],
        grant: Grant,
        config_override: serde_json::Value,
    ) -> Result<(Arc<LoadedPlugin>, LoadReport), RuntimeError> {
        manifest.validate()?;
        check_api_version(&manifest.api_version)?;
        let name = manifest.name.clone();
        let perms = Permissions::intersect(&manifest.capabilities, &grant.capabilities);
        let limits = self.effective_limits(&manifest, &grant);
        let config_json =
            merge_config(manifest.config_json(), config_override).map_err(|message| {
                RuntimeError::InvalidConfig {
                    plugin: name.clone(),
                    message,
                }
            })?;

        let started = Instant::now();
        let sha256 = crate::sha256_hex(wasm);
        let (component, cache) = self.compile_checked(&manifest, wasm).await?;
        let compile_time = started.elapsed();

        let mut linker: Linker<PluginState> = Linker::new(&self.inner.engine);
        link(&mut linker, &manifest).map_err(|e| RuntimeError::Instantiate {
            plugin: name.clone(),
            message: format!("linking: {e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| RuntimeError::Instantiate {
                plugin: name.clone(),
                message: format!("{e:#}"),
            })?;

        let shared = Arc::new(PluginShared::new(
            name.clone(),
            perms,
            self.inner.caps.clone(),
            Duration::from_millis(limits.wall_ms_per_call),
            self.inner.config.denial_report_interval,
        ));
        let _ = shared.logs.runtime.set(Arc::downgrade(&self.inner));
        let plugin = Arc::new(LoadedPlugin {
            permits: Semaphore::new(limits.max_instances as usize),
            manifest,
            sha256,
            limits,
            shared,
            pre,
            config_json,
            idle: Mutex::new(Vec::new()),
            live: AtomicU64::new(0),
            health: Mutex::new(HealthState {
                admin_enabled: true,
                consecutive_failures: 0,
                relapses: 0,
                failed_until: None,
                failed_reason: None,
            }),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            total_nanos: AtomicU64::new(0),
            memory_hwm: AtomicU64::new(0),
            from_cache: cache == CacheOutcome::Hit,
            ticker: Mutex::new(None),
        });

        // Create the first instance now: it validates the config (init) and
        // stays warm for the first call.
        let init_started = Instant::now();
        let first = self.new_instance(&plugin).await.map_err(|e| match e {
            RuntimeError::Call { plugin, kind } => RuntimeError::InitFailed {
                plugin,
                message: kind.to_string(),
            },
            other => other,
        })?;
        lock(&plugin.idle).push(first);
        let init_time = init_started.elapsed();
        Ok((
            plugin,
            LoadReport {
                id: PluginId(name),
                cache,
                compile_time,
                init_time,
            },
        ))
    }

    fn start_ticker(&self, plugin: &Arc<LoadedPlugin>) {
        let Some(every) = plugin.manifest.tick_interval() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut stopped = self.inner.ticks_stopped.subscribe();
        if *stopped.borrow() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let target: Weak<LoadedPlugin> = Arc::downgrade(plugin);
        let task = handle.spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                let (Some(inner), Some(p)) = (weak.upgrade(), target.upgrade()) else {
                    break;
                };
                let rt = PluginRuntime { inner };
                // A panic in host code the tick reached must not end this
                // plugin's ticks for good: it is logged, the next tick runs.
                let tick = std::panic::AssertUnwindSafe(rt.call(&p, Call::Tick));
                match futures::FutureExt::catch_unwind(tick).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(plugin = %p.manifest.name, "tick: {e}"),
                    Err(panic) => tracing::error!(
                        plugin = %p.manifest.name,
                        panic = panic_message(panic.as_ref()),
                        "a tick panicked; the next one runs as scheduled"
                    ),
                }
            }
        });
        *lock(&plugin.ticker) = Some(task);
    }

    /// Ends every plugin's ticks (for shutdown): a tick in progress
    /// finishes, then its ticker stops; returns once all have. No ticker
    /// starts afterwards.
    pub async fn stop_ticks(&self) {
        self.inner.ticks_stopped.send_replace(true);
        let tickers: Vec<_> = self
            .read_plugins()
            .values()
            .filter_map(|p| lock(&p.ticker).take())
            .collect();
        for t in tickers {
            let _ = t.await;
        }
    }

    /// Creates and initialises an instance. Failures count as call failures.
    async fn new_instance(&self, p: &Arc<LoadedPlugin>) -> Result<Instance, RuntimeError> {
        let mut store = Store::new(
            &self.inner.engine,
            PluginState {
                shared: p.shared.clone(),
                wasi: deny_all_wasi(),
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_limit: p.limits.memory_bytes as usize,
                    table_elements_limit: p.limits.max_table_elements as usize,
                    max_tables: p.limits.max_tables as usize,
                    memory_peak: 0,
                    memory_hit: false,
                    table_hit: false,
                },
                caller: None,
                ticks: 0,
                tick_budget: self.tick_budget(p),
                cpu_exceeded: false,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.ticks += 1;
            if s.ticks >= s.tick_budget {
                s.cpu_exceeded = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let wall = Duration::from_millis(p.limits.wall_ms_per_call);
        let pre = p.pre.clone();
        let config = p.config_json.clone();
        let fut = async {
            let bindings = pre.instantiate_async(&mut store).await?;
            let init = bindings
                .wakedock_plugin_handler()
                .call_init(&mut store, &config)
                .await?;
            wasmtime::Result::Ok((bindings, init))
        };
        let outcome = tokio::time::timeout(wall, fut).await;
        let result = match outcome {
            Ok(Ok((bindings, Ok(())))) => {
                p.live.fetch_add(1, Ordering::Relaxed);
                let peak = store.data().limiter.memory_peak as u64;
                p.memory_hwm.fetch_max(peak, Ordering::Relaxed);
                return Ok(Instance {
                    store,
                    bindings,
                    calls: 0,
                    idle_since: Instant::now(),
                });
            }
            Ok(Ok((_, Err(message)))) => {
                return Err(RuntimeError::InitFailed {
                    plugin: p.manifest.name.clone(),
                    message,
                })
            }
            Ok(Err(e)) => classify(&p.limits, store.data(), &e),
            Err(_) => CallError::WallTimeout {
                limit_ms: p.limits.wall_ms_per_call,
            },
        };
        Err(RuntimeError::Call {
            plugin: p.manifest.name.clone(),
            kind: result,
        })
    }

    fn tick_budget(&self, p: &LoadedPlugin) -> u64 {
        let tick_ms = self.inner.config.epoch_tick.as_millis().max(1) as u64;
        p.limits.cpu_ms_per_call.div_ceil(tick_ms).max(1) + 1
    }

    /// Refuses calls to a disabled or failed plugin; after the back-off, lets
    /// one call through on probation.
    fn admit(&self, p: &LoadedPlugin) -> Result<(), RuntimeError> {
        let mut h = lock(&p.health);
        if !h.admin_enabled {
            return Err(RuntimeError::Disabled(p.manifest.name.clone()));
        }
        if let Some(until) = h.failed_until {
            if SystemTime::now() < until {
                return Err(RuntimeError::Failed {
                    plugin: p.manifest.name.clone(),
                    reason: h.failed_reason.clone().unwrap_or_default(),
                    retry_at: until,
                });
            }
            // Probation: the next failure fails it again at once.
            h.failed_until = None;
            h.consecutive_failures = self.inner.config.failure_threshold.saturating_sub(1);
        }
        Ok(())
    }

    fn record_failure(&self, p: &LoadedPlugin, err: &RuntimeError) {
        p.errors.fetch_add(1, Ordering::Relaxed);
        let msg = err.to_string();
        *lock(&p.shared.last_error) = Some(msg.clone());
        let mut h = lock(&p.health);
        h.consecutive_failures += 1;
        if h.consecutive_failures >= self.inner.config.failure_threshold && h.failed_until.is_none()
        {
            let c = &self.inner.config;
            let factor = 1u32.checked_shl(h.relapses.min(16)).unwrap_or(u32::MAX);
            let backoff = c.backoff_base.saturating_mul(factor).min(c.backoff_max);
            h.failed_until = Some(SystemTime::now() + backoff);
            h.failed_reason = Some(msg.clone());
            h.relapses += 1;
            tracing::warn!(plugin = %p.manifest.name, ?backoff, "plugin failed {} times in a row, suspended: {msg}", h.consecutive_failures);
        }
    }

    fn record_success(&self, p: &LoadedPlugin) {
        let mut h = lock(&p.health);
        h.consecutive_failures = 0;
        h.relapses = 0;
        h.failed_reason = None;
    }

    async fn call(&self, p: &Arc<LoadedPlugin>, call: Call) -> Result<Output, RuntimeError> {
        self.admit(p)?;
        let wall = Duration::from_millis(p.limits.wall_ms_per_call);
        let started = Instant::now();
        let _permit = match tokio::time::timeout(wall, p.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                p.errors.fetch_add(1, Ordering::Relaxed);
                return Err(RuntimeError::Call {
                    plugin: p.manifest.name.clone(),
                    kind: CallError::Busy(p.limits.max_instances),
                });
            }
        };
        p.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_on_instance(p, call, wall).await;
        p.total_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match &result {
            Ok(_) => self.record_success(p),
            Err(e) => self.record_failure(p, e),
        }
        result
    }

    async fn call_on_instance(
        &self,
        p: &Arc<LoadedPlugin>,
        call: Call,
        wall: Duration,
    ) -> Result<Output, RuntimeError> {
        let pooled = lock(&p.idle).pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.new_instance(p).await?,
        };
        {
            let s = inst.store.data_mut();
            s.ticks = 0;
            s.cpu_exceeded = false;
            s.caller = None;
        }
        inst.store.set_epoch_deadline(1);
        let Instance {
            store, bindings, ..
        } = &mut inst;
        let handler = bindings.wakedock_plugin_handler();
        let fut = async {
            match call {
                Call::Event(ev) => handler
                    .call_on_event(&mut *store, &ev)
                    .await
                    .map(|_| Output::Unit),
                Call::Tick => handler
                    .call_on_tick(&mut *store)
                    .await
                    .map(|_| Output::Unit),
                Call::Http(req, auth) => {
                    store.data_mut().caller = Some(auth);
                    handler
                        .call_handle_http(&mut *store, &req)
                        .await
                        .map(Output::Http)
                }
            }
        };
        let outcome = tokio::time::timeout(wall, fut).await;
        let peak = inst.store.data().limiter.memory_peak as u64;
        p.memory_hwm.fetch_max(peak, Ordering::Relaxed);
        let err = match outcome {
            Ok(Ok(out)) => {
                inst.store.data_mut().caller = None;
                inst.calls += 1;
                let enabled = lock(&p.health).admin_enabled;
                if inst.calls < self.inner.config.recycle_after_calls && enabled {
                    inst.idle_since = Instant::now();
                    let stale = {
                        let mut idle = lock(&p.idle);
                        idle.push(inst);
                        take_stale(&mut idle, self.inner.config.idle_instance_ttl)
                    };
                    p.live.fetch_sub(stale.len() as u64, Ordering::Relaxed);
                    // Dropped outside the lock: freeing a store takes a while.
                    drop(stale);
                } else {
                    p.live.fetch_sub(1, Ordering::Relaxed);
                }
                return Ok(out);
            }
            Ok(Err(e)) => classify(&p.limits, inst.store.data(), &e),
            Err(_) => CallError::WallTimeout {
                limit_ms: p.limits.wall_ms_per_call,
            },
        };
        // The instance may be in any state after a failure: drop it.
        p.live.fetch_sub(1, Ordering::Relaxed);
        drop(inst);
        Err(RuntimeError::Call {
            plugin: p.manifest.name.clone(),
            kind: err,
        })
    }
}

/// Turns a wasmtime error into the reason shown to the admin, preferring
/// the limit that caused it.
fn classify(limits: &EffectiveLimits, s: &PluginState, e: &wasmtime::Error) -> CallError {
    if s.cpu_exceeded {
        return CallError::CpuLimit {
            limit_ms: limits.cpu_ms_per_call,
        };
    }
    if s.limiter.memory_hit {
        return CallError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    if s.limiter.table_hit {
        return CallError::TableLimit;
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{e:#}")),
    }
}

fn entitled(p: &LoadedPlugin, event: &Event) -> bool {
    if !lock(&p.health).admin_enabled {
        return false;
    }
    match event {
        Event::Container(ev) => p
            .shared
            .perms
            .containers
            .as_ref()
            .is_some_and(|c| c.selector.matches(&ev.labels)),
        Event::Plugin(ev) => {
            ev.source != p.manifest.name
                && p.shared
                    .perms
                    .events_subscribe
                    .iter()
                    .any(|t| topic_matches(t, &ev.topic))
                && host_container_event_visible(p, ev)
        }
    }
}

/// The host's events about one container (`host.container-*`, with the
/// container's `labels`) reach only plugins that may see that container,
/// as its engine events do.
fn host_container_event_visible(p: &LoadedPlugin, ev: &crate::caps::PluginEvent) -> bool {
    if ev.source != "host" || !ev.topic.starts_with("host.container-") {
        return true;
    }
    let Some(c) = p.shared.perms.containers.as_ref() else {
        return false;
    };
    let labels: Vec<(String, String)> = serde_json::from_str::<serde_json::Value>(&ev.payload)
        .ok()
        .and_then(|v| {
            v.get("labels")?.as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
        })
        .unwrap_or_default();
    c.selector.matches(&labels)
}

fn status_of(p: &LoadedPlugin) -> PluginStatus {
    let h = lock(&p.health);
    let health = if !h.admin_enabled {
        PluginHealth::Disabled
    } else if let Some(until) = h.failed_until.filter(|u| SystemTime::now() < *u) {
        PluginHealth::Failed {
            reason: h.failed_reason.clone().unwrap_or_default(),
            retry_at: until,
            consecutive_failures: h.consecutive_failures,
        }
    } else {
        PluginHealth::Enabled
    };
    PluginStatus {
        id: PluginId(p.manifest.name.clone()),
        version: p.manifest.version.clone(),
        api_version: p.manifest.api_version.clone(),
        sha256: p.sha256.clone(),
        health,
        calls: p.calls.load(Ordering::Relaxed),
        errors: p.errors.load(Ordering::Relaxed),
        total_time: Duration::from_nanos(p.total_nanos.load(Ordering::Relaxed)),
        memory_high_water_bytes: p.memory_hwm.load(Ordering::Relaxed),
        live_instances: p.live.load(Ordering::Relaxed) as usize,
        last_error: lock(&p.shared.last_error).clone(),
        limits: p.limits.clone(),
        loaded_from_cache: p.from_cache,
        container_calls: p.shared.container_calls(),
    }
}

/// Shallow-merges the admin's overrides over the manifest defaults.
fn merge_config(
    defaults: serde_json::Value,
    overrides: serde_json::Value,
) -> Result<String, String> {
    let mut base = match defaults {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    match overrides {
        serde_json::Value::Null => {}
        serde_json::Value::Object(m) => base.extend(m),
        other => {
            return Err(format!(
                "config override must be a JSON object, got {other}"
            ))
        }
    }
    Ok(serde_json::Value::Object(base).to_string())
}

/// Splits `ns:pkg/iface@version` into (`ns:pkg`, `iface`, `version`).
fn split_import(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (pkg, rest) = name.split_once('/')?;
    let (iface, version) = match rest.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (rest, None),
    };
    Some((pkg, iface, version))
}

fn import_version_ok(version: Option<&str>) -> bool {
    let host = semver::Version::parse(HOST_API_VERSION).expect("valid host API version");
    let Some(Ok(v)) = version.map(semver::Version::parse) else {
        return false;
    };
    v.pre.is_empty()
        && v.major == host.major
        && if host.major == 0 {
            v.minor == host.minor
        } else {
            v.minor <= host.minor
        }
        && v <= host
}

/// Layer one of the permission check: every interface the component
/// actually imports must be of this API version and requested by its
/// manifest (a component importing more than it declares is refused).
fn check_imports(
    engine: &Engine,
    component: &wasmtime::component::Component,
    m: &Manifest,
) -> Result<(), RuntimeError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let Some((pkg, iface, version)) = split_import(name) else {
            return Err(RuntimeError::ImportNotGranted {
                plugin: m.name.clone(),
                import: name.to_owned(),
                reason: "plugins may only import WakeDock and WASI interfaces".into(),
            });
        };
        if pkg.starts_with("wasi:") {
            // Linked with a deny-all context: nothing to grant.
            continue;
        }
        if pkg != API_PACKAGE {
            return Err(RuntimeError::ImportNotGranted {
                plugin: m.name.clone(),
                import: name.to_owned(),
                reason: format!("`{pkg}` is not a WakeDock or WASI package"),
            });
        }
        if !import_version_ok(version) {
            return Err(RuntimeError::ImportVersionMismatch {
                plugin: m.name.clone(),
                import: name.to_owned(),
                host: HOST_API_VERSION.to_owned(),
            });
        }
        if !requests_interface(m, iface) {
            let reason = if !matches!(
                iface,
                "containers"
                    | "metrics"
                    | "storage"
                    | "http-outbound"
                    | "events"
                    | "files"
                    | "compose"
                    | "container-logs"
                    | "smtp"
            ) {
                format!("`{iface}` is not an interface of plugin API {HOST_API_VERSION}")
            } else {
                format!("the manifest does not request capability `{iface}` (add it under [capabilities])")
            };
            return Err(RuntimeError::ImportNotGranted {
                plugin: m.name.clone(),
                import: name.to_owned(),
                reason,
            });
        }
    }
    Ok(())
}

/// Whether the manifest asks for the WIT interface `iface`. Requested
/// interfaces are linked even where the admin's grant leaves them out, so
/// that a call to them reaches the host function, which answers
/// `permission-denied` (and audits it) instead of the plugin failing to
/// load: admins may grant part of what a plugin asks for.
fn requests_interface(m: &Manifest, iface: &str) -> bool {
    let c = &m.capabilities;
    match iface {
        "types" | "log" | "clock" | "auth" => true,
        "containers" => c.containers.is_some(),
        "metrics" => c.metrics.is_some(),
        "storage" => c.storage.is_some(),
        "http-outbound" => c.http_outbound.is_some(),
        "events" => c.events.is_some(),
        "files" => c.files.is_some(),
        "compose" => c.compose.is_some(),
        "container-logs" => c.container_logs.is_some(),
        "smtp" => c.smtp.is_some(),
        _ => false,
    }
}

fn check_exports(
    engine: &Engine,
    component: &wasmtime::component::Component,
    plugin: &str,
) -> Result<(), RuntimeError> {
    let ty = component.component_type();
    let found = ty.exports(engine).any(|(name, _)| {
        split_import(name).is_some_and(|(pkg, iface, v)| {
            pkg == API_PACKAGE && iface == "handler" && import_version_ok(v)
        })
    });
    if found {
        Ok(())
    } else {
        Err(RuntimeError::MissingExport {
            plugin: plugin.to_owned(),
            export: format!("{API_PACKAGE}/handler@{HOST_API_VERSION}"),
        })
    }
}

/// Layer two: link WASI (deny-all) plus only the WakeDock interfaces the
/// manifest requests. Each host function checks the effective permission
/// (request ∩ grant) and scope before doing anything.
fn link(linker: &mut Linker<PluginState>, m: &Manifest) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wit::types::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::log::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::clock::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    wit::auth::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    if requests_interface(m, "containers") {
        wit::containers::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "metrics") {
        wit::metrics::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "storage") {
        wit::storage::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "http-outbound") {
        wit::http_outbound::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "events") {
        wit::events::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "files") {
        wit::files::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "compose") {
        wit::compose::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "container-logs") {
        wit::container_logs::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    if requests_interface(m, "smtp") {
        wit::smtp::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    Ok(())
}
