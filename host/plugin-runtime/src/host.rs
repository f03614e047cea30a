//! Store data of one plugin instance and the host side of every WIT import.
//!
//! This is the single chokepoint for permissions: each function checks the
//! plugin's effective [`Permissions`] (and quotas) before touching a
//! capability, returns `permission-denied` to the plugin on a refusal and
//! records it in the [`AuditSink`](crate::caps::AuditSink). The second layer
//! is at link time: interfaces the plugin was not granted are not linked at
//! all (see `runtime.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wakedock::plugin as wit;
use crate::caps::{
    ActionStatus, AuditEntry, AuthContext, BoxFuture, CapError, CapResult, ComposeAction,
    ComposeCaller, ComposeContainer, ComposeError, ComposeResult, Container, ContainerStats,
    FileEntry, FollowRequest, HostCapabilities, LabelFilter, Mail, MetricDesc, MetricKind,
    OutboundRequest, OutboundResponse, Probe, Readiness, SmtpSecurity, MAX_STOP_TIMEOUT_SECS,
};
use crate::manifest::{host_matches, topic_matches, Access, ContainerPermission, Permissions};

/// Longest log line kept.
const MAX_LOG_BYTES: usize = 4096;
/// Largest event payload accepted.
const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest storage key.
const MAX_KEY_BYTES: usize = 512;
/// Metrics one plugin may register.
const MAX_METRICS: usize = 64;
/// Cap on `await-ready` and outbound timeouts regardless of what the plugin asks.
const MAX_HOST_WAIT: Duration = Duration::from_secs(120);
/// Distinct refusals remembered per plugin for deduplication; beyond it,
/// new ones share one entry per capability and function.
const MAX_DISTINCT_DENIALS: usize = 256;

/// What every instance of one plugin shares: identity, permissions,
/// capabilities, metric registrations and rate-limit windows.
pub(crate) struct PluginShared {
    pub name: String,
    pub perms: Permissions,
    pub caps: HostCapabilities,
    /// Upper bound for host waits (the call's wall-time limit).
    pub wall_limit: Duration,
    metrics: Mutex<HashMap<String, MetricDesc>>,
    http_window: Mutex<VecDeque<Instant>>,
    /// Messages sent through `smtp` in the last minute.
    smtp_window: Mutex<VecDeque<Instant>>,
    /// Calls of each `containers` function.
    container_calls: Mutex<BTreeMap<&'static str, u64>>,
    /// The last failed call or refusal, for the plugin's status.
    pub last_error: Mutex<Option<String>>,
    denials: Denials,
    /// Log subscriptions (API 0.1.4).
    pub logs: crate::logs::PluginLogs,
}

impl PluginShared {
    pub fn new(
        name: String,
        perms: Permissions,
        caps: HostCapabilities,
        wall_limit: Duration,
        denial_interval: Duration,
    ) -> Self {
        PluginShared {
            name,
            perms,
            caps,
            wall_limit,
            metrics: Mutex::new(HashMap::new()),
            http_window: Mutex::new(VecDeque::new()),
            smtp_window: Mutex::new(VecDeque::new()),
            container_calls: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            denials: Denials::new(denial_interval),
            logs: crate::logs::PluginLogs::new(),
        }
    }
}

/// Which refusals were recorded recently. A plugin that lacks a
/// capability and tries it on every tick would otherwise write an audit
/// row (and a log line) each second: each distinct refusal (capability,
/// function, target, reason) is recorded once per interval, and that
/// record counts the identical ones left out since the previous one.
struct Denials {
    interval: Duration,
    seen: Mutex<HashMap<DenialKey, DenialWindow>>,
}

type DenialKey = (&'static str, &'static str, String, String);

struct DenialWindow {
    recorded_at: Instant,
    /// Identical refusals since `recorded_at`, not recorded.
    suppressed: u64,
}

impl Denials {
    fn new(interval: Duration) -> Self {
        Denials {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when this refusal is to be recorded now, `n` being the
    /// identical ones left out before it; `None` to leave it out.
    fn admit(&self, mut key: DenialKey, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains_key(&key) && seen.len() >= MAX_DISTINCT_DENIALS {
            seen.retain(|_, w| now.duration_since(w.recorded_at) < self.interval);
            if seen.len() >= MAX_DISTINCT_DENIALS {
                // Many distinct targets: one entry for all of them.
                key.2 = "*".into();
                key.3 = "(many distinct refusals)".into();
            }
        }
        match seen.get_mut(&key) {
            Some(w) if now.duration_since(w.recorded_at) < self.interval => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let left_out = w.suppressed;
                *w = DenialWindow {
                    recorded_at: now,
                    suppressed: 0,
                };
                Some(left_out)
            }
            None => {
                seen.insert(
                    key,
                    DenialWindow {
                        recorded_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// Memory/table limiter that also records the high-water mark and whether
/// a limit was hit (to report a trap as "memory limit" rather than a bare
/// `unreachable`).
pub(crate) struct Limiter {
    pub memory_limit: usize,
    pub table_elements_limit: usize,
    pub max_tables: usize,
    pub memory_peak: usize,
    pub memory_hit: bool,
    pub table_hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = true;
            return Ok(false);
        }
        self.memory_peak = self.memory_peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements_limit {
            self.table_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        // A Rust component has a handful of core instances; 64 leaves room
        // while stopping a component that tries to instantiate thousands.
        64
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        16
    }
}

/// Data of one instance's `Store`.
pub(crate) struct PluginState {
    pub shared: Arc<PluginShared>,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    /// The caller of the current `handle-http`, if any.
    pub caller: Option<AuthContext>,
    /// Epoch ticks consumed by the current call, and its budget.
    pub ticks: u64,
    pub tick_budget: u64,
    pub cpu_exceeded: bool,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginShared {
    /// Records a refusal (once per distinct refusal and interval, see
    /// [`Denials`]), makes it the plugin's last error, and returns the
    /// error the plugin sees.
    fn deny(
        &self,
        capability: &'static str,
        action: &'static str,
        target: &str,
        reason: String,
    ) -> CapError {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
            "permission denied: {capability}.{action} on `{target}`: {reason}"
        ));
        let key = (capability, action, target.to_owned(), reason.clone());
        if let Some(repeated) = self.denials.admit(key, Instant::now()) {
            self.caps.audit.record(AuditEntry {
                plugin: self.name.clone(),
                capability,
                action,
                target: target.to_owned(),
                reason: reason.clone(),
                at: SystemTime::now(),
                repeated,
            });
        }
        CapError::PermissionDenied(reason)
    }

    /// Calls of each `containers` function so far.
    pub fn container_calls(&self) -> BTreeMap<&'static str, u64> {
        self.container_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The containers permission, for a call of `action` (every
    /// `containers` function comes through here, and is counted).
    fn container_perm(
        &self,
        action: &'static str,
        target: &str,
    ) -> CapResult<&ContainerPermission> {
        *self
            .container_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(action)
            .or_default() += 1;
        match &self.perms.containers {
            Some(p) => Ok(p),
            None => Err(self.deny(
                "containers",
                action,
                target,
                "the containers capability is not granted".into(),
            )),
        }
    }

    /// Checks that `id` is inside the plugin's selector (and that the
    /// plugin may write, if `write`), and returns the reference to act on.
    /// A grant whose selector matches every container needs no look at the
    /// container, so this costs no engine request; otherwise the container
    /// is inspected and its resolved id returned.
    async fn visible_container(
        &self,
        action: &'static str,
        id: &str,
        write: bool,
    ) -> CapResult<String> {
        let perm = self.container_perm(action, id)?;
        if write && perm.access < Access::Write {
            return Err(self.deny(
                "containers",
                action,
                id,
                format!("{action} needs containers access \"write\"; granted \"read\""),
            ));
        }
        if perm.selector.matches_everything() {
            return Ok(id.to_owned());
        }
        let selector = perm.selector.clone();
        let c = self.caps.containers.inspect(id).await?;
        self.in_selector(action, id, &selector, c).map(|c| c.id)
    }

    /// `c` if the selector matches it, else a refusal.
    fn in_selector(
        &self,
        action: &'static str,
        id: &str,
        selector: &crate::manifest::Selector,
        c: Container,
    ) -> CapResult<Container> {
        if !selector.matches(&c.labels) {
            return Err(self.deny(
                "containers",
                action,
                id,
                format!("container `{}` is outside the granted selector", c.name),
            ));
        }
        Ok(c)
    }

    fn host_wait(&self, asked: Duration) -> Duration {
        asked.min(self.wall_limit).min(MAX_HOST_WAIT)
    }

    /// Runs a host-side wait of at most `timeout_ms` (capped by the call's
    /// wall-time limit); `Timeout` when it runs out.
    async fn bounded<'a, T>(
        &self,
        timeout_ms: u32,
        wait: impl FnOnce(Duration) -> BoxFuture<'a, CapResult<T>>,
    ) -> CapResult<T> {
        let limit = self.host_wait(Duration::from_millis(timeout_ms.into()));
        match tokio::time::timeout(limit, wait(limit)).await {
            Ok(r) => r,
            Err(_) => Err(CapError::Timeout),
        }
    }
}

impl wit::types::Host for PluginState {}

impl wit::log::Host for PluginState {
    async fn log(&mut self, level: wit::log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("…[truncated]");
        }
        self.shared.caps.log.log(&self.shared.name, level, &message);
    }
}

fn process_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl wit::clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn monotonic_ns(&mut self) -> u64 {
        process_origin().elapsed().as_nanos() as u64
    }
}

impl wit::auth::Host for PluginState {
    async fn current_caller(&mut self) -> Option<wit::auth::Caller> {
        self.caller.as_ref().map(|c| wit::auth::Caller {
            user_id: c.user_id.clone(),
            username: c.username.clone(),
            role: c.role,
        })
    }

    async fn has_permission(&mut self, permission: String) -> bool {
        self.caller
            .as_ref()
            .is_some_and(|c| c.permissions.contains(&permission))
    }
}

impl wit::containers::Host for PluginState {
    async fn list(
        &mut self,
        filters: Vec<LabelFilter>,
        include_stopped: bool,
    ) -> CapResult<Vec<Container>> {
        let perm = self.shared.container_perm("list", "*")?;
        let selector = perm.selector.clone();
        let mut all = filters;
        all.extend(selector.terms.iter().map(|(k, v)| LabelFilter {
            key: k.clone(),
            value: v.clone(),
        }));
        let list = self
            .shared
            .caps
            .containers
            .list(&all, include_stopped)
            .await?;
        // Defence in depth: never trust the implementation to have filtered.
        Ok(list
            .into_iter()
            .filter(|c| selector.matches(&c.labels))
            .collect())
    }

    async fn inspect(&mut self, id: String) -> CapResult<Container> {
        let perm = self.shared.container_perm("inspect", &id)?;
        let selector = perm.selector.clone();
        let c = self.shared.caps.containers.inspect(&id).await?;
        self.shared.in_selector("inspect", &id, &selector, c)
    }

    async fn start(&mut self, id: String) -> CapResult<()> {
        let c = self.shared.visible_container("start", &id, true).await?;
        self.shared.caps.containers.start(&c).await
    }

    async fn stop(&mut self, id: String, timeout_secs: Option<u32>) -> CapResult<()> {
        if let Some(t) = timeout_secs.filter(|t| *t > MAX_STOP_TIMEOUT_SECS) {
            return Err(CapError::Invalid(format!(
                "timeout-secs {t} is above the maximum of {MAX_STOP_TIMEOUT_SECS}"
            )));
        }
        let c = self.shared.visible_container("stop", &id, true).await?;
        self.shared
            .caps
            .containers
            .expect_stop(&c, &self.shared.name);
        self.shared.caps.containers.stop(&c, timeout_secs).await
    }

    async fn restart(&mut self, id: String) -> CapResult<()> {
        let c = self.shared.visible_container("restart", &id, true).await?;
        self.shared
            .caps
            .containers
            .expect_stop(&c, &self.shared.name);
        self.shared.caps.containers.restart(&c).await
    }

    async fn await_ready(&mut self, id: String, timeout_ms: u32) -> CapResult<Readiness> {
        let c = self
            .shared
            .visible_container("await-ready", &id, false)
            .await?;
        let containers = &self.shared.caps.containers;
        self.shared
            .bounded(timeout_ms, |wait| containers.await_ready(&c, wait))
            .await
    }

    async fn pause(&mut self, id: String) -> CapResult<()> {
        let c = self.shared.visible_container("pause", &id, true).await?;
        self.shared.caps.containers.pause(&c).await
    }

    async fn unpause(&mut self, id: String) -> CapResult<()> {
        let c = self.shared.visible_container("unpause", &id, true).await?;
        self.shared.caps.containers.unpause(&c).await
    }

    async fn await_probe(&mut self, id: String, probe: Probe, timeout_ms: u32) -> CapResult<()> {
        if let Probe::Http(h) = &probe {
            if !h.path.starts_with('/') {
                return Err(CapError::Invalid(format!(
                    "probe path {:?} must start with /",
                    h.path
                )));
            }
        }
        let c = self
            .shared
            .visible_container("await-probe", &id, false)
            .await?;
        let containers = &self.shared.caps.containers;
        self.shared
            .bounded(timeout_ms, |wait| containers.await_probe(&c, &probe, wait))
            .await
    }

    async fn exit_code(&mut self, id: String) -> CapResult<Option<i32>> {
        let c = self
            .shared
            .visible_container("exit-code", &id, false)
            .await?;
        self.shared.caps.containers.exit_code(&c).await
    }

    async fn await_exit(&mut self, id: String, timeout_ms: u32) -> CapResult<i32> {
        let c = self
            .shared
            .visible_container("await-exit", &id, false)
            .await?;
        let containers = &self.shared.caps.containers;
        self.shared
            .bounded(timeout_ms, |wait| containers.await_exit(&c, wait))
            .await
    }
}

fn valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && (name.as_bytes()[0].is_ascii_lowercase() || name.as_bytes()[0] == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl PluginShared {
    fn record_metric(
        &self,
        action: &'static str,
        kind: MetricKind,
        name: String,
        labels: Vec<String>,
        value: f64,
    ) -> CapResult<()> {
        if !self.perms.metrics {
            return Err(self.deny(
                "metrics",
                action,
                &name,
                "the metrics capability is not granted".into(),
            ));
        }
        if !value.is_finite() {
            return Err(CapError::Invalid(format!(
                "metric `{name}`: value must be finite"
            )));
        }
        {
            let registered = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            let Some(desc) = registered.get(&name) else {
                return Err(CapError::NotFound);
            };
            if desc.kind != kind {
                return Err(CapError::Invalid(format!(
                    "metric `{name}` is a {:?}, not a {kind:?}",
                    desc.kind
                )));
            }
            if desc.label_names.len() != labels.len() {
                return Err(CapError::Invalid(format!(
                    "metric `{name}` has {} labels, got {} values",
                    desc.label_names.len(),
                    labels.len()
                )));
            }
        }
        if kind == MetricKind::Counter && value < 0.0 {
            return Err(CapError::Invalid(format!(
                "counter `{name}` cannot decrease"
            )));
        }
        self.caps
            .metrics
            .record(&self.name, &name, kind, &labels, value)
    }

    /// Every container the plugin may see (stopped ones too); `None`
    /// without the containers capability.
    async fn visible_containers(&self) -> CapResult<Option<Vec<Container>>> {
        let Some(perm) = &self.perms.containers else {
            return Ok(None);
        };
        let filters: Vec<LabelFilter> = perm
            .selector
            .terms
            .iter()
            .map(|(k, v)| LabelFilter {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let selector = perm.selector.clone();
        let list = self.caps.containers.list(&filters, true).await?;
        Ok(Some(
            list.into_iter()
                .filter(|c| selector.matches(&c.labels))
                .collect(),
        ))
    }
}

impl wit::metrics::Host for PluginState {
    async fn stats(&mut self, id: String) -> CapResult<ContainerStats> {
        let c = self.shared.visible_container("stats", &id, false).await?;
        self.shared.caps.metrics.container_stats(&c).await
    }

    async fn all_stats(&mut self) -> CapResult<Vec<ContainerStats>> {
        let Some(visible) = self.shared.visible_containers().await? else {
            return Err(self.shared.deny(
                "metrics",
                "all-stats",
                "*",
                "reading container stats needs the containers capability".into(),
            ));
        };
        // Only what the plugin may see is sampled (the host's sampling is
        // the cost, not the filtering), and the listing just made tells the
        // host which of them run.
        let ids: std::collections::HashSet<&str> = visible.iter().map(|c| c.id.as_str()).collect();
        let all = self
            .shared
            .caps
            .metrics
            .all_container_stats(&visible)
            .await?;
        Ok(all
            .into_iter()
            .filter(|s| ids.contains(s.container_id.as_str()))
            .collect())
    }

    async fn register(&mut self, desc: MetricDesc) -> CapResult<()> {
        if !self.shared.perms.metrics {
            return Err(self.shared.deny(
                "metrics",
                "register",
                &desc.name,
                "the metrics capability is not granted".into(),
            ));
        }
        if !valid_metric_name(&desc.name) {
            return Err(CapError::Invalid(format!(
                "metric name `{}` must match [a-z_][a-z0-9_]{{0,63}}",
                desc.name
            )));
        }
        if let Some(bad) = desc.label_names.iter().find(|l| !valid_metric_name(l)) {
            return Err(CapError::Invalid(format!(
                "label name `{bad}` must match [a-z_][a-z0-9_]{{0,63}}"
            )));
        }
        {
            let mut registered = self
                .shared
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = registered.get(&desc.name) {
                return if *existing == desc {
                    Ok(())
                } else {
                    Err(CapError::Invalid(format!(
                        "metric `{}` is already registered differently",
                        desc.name
                    )))
                };
            }
            if registered.len() >= MAX_METRICS {
                return Err(CapError::QuotaExceeded);
            }
            registered.insert(desc.name.clone(), desc.clone());
        }
        let result = self.shared.caps.metrics.register(&self.shared.name, &desc);
        if result.is_err() {
            let mut registered = self
                .shared
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            registered.remove(&desc.name);
        }
        result
    }

    async fn counter_add(
        &mut self,
        name: String,
        label_values: Vec<String>,
        value: f64,
    ) -> CapResult<()> {
        self.shared.record_metric(
            "counter-add",
            MetricKind::Counter,
            name,
            label_values,
            value,
        )
    }

    async fn gauge_set(
        &mut self,
        name: String,
        label_values: Vec<String>,
        value: f64,
    ) -> CapResult<()> {
        self.shared
            .record_metric("gauge-set", MetricKind::Gauge, name, label_values, value)
    }

    async fn histogram_observe(
        &mut self,
        name: String,
        label_values: Vec<String>,
        value: f64,
    ) -> CapResult<()> {
        self.shared.record_metric(
            "histogram-observe",
            MetricKind::Histogram,
            name,
            label_values,
            value,
        )
    }
}

impl PluginShared {
    fn storage_quota(&self, action: &'static str, key: &str) -> CapResult<u64> {
        match self.perms.storage_quota_bytes {
            Some(q) => Ok(q),
            None => Err(self.deny(
                "storage",
                action,
                key,
                "the storage capability is not granted".into(),
            )),
        }
    }
}

fn check_key(key: &str) -> CapResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CapError::Invalid(format!(
            "storage keys must be 1..={MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

impl wit::storage::Host for PluginState {
    async fn get(&mut self, key: String) -> CapResult<Option<Vec<u8>>> {
        self.shared.storage_quota("get", &key)?;
        check_key(&key)?;
        self.shared.caps.storage.get(&self.shared.name, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> CapResult<()> {
        let quota = self.shared.storage_quota("set", &key)?;
        check_key(&key)?;
        if (key.len() + value.len()) as u64 > quota {
            return Err(CapError::QuotaExceeded);
        }
        self.shared
            .caps
            .storage
            .set(&self.shared.name, &key, value, quota)
            .await
    }

    async fn delete(&mut self, key: String) -> CapResult<bool> {
        self.shared.storage_quota("delete", &key)?;
        check_key(&key)?;
        self.shared
            .caps
            .storage
            .delete(&self.shared.name, &key)
            .await
    }

    async fn list_keys(&mut self, prefix: String) -> CapResult<Vec<String>> {
        self.shared.storage_quota("list-keys", &prefix)?;
        self.shared
            .caps
            .storage
            .list_keys(&self.shared.name, &prefix)
            .await
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> CapResult<bool> {
        let quota = self.shared.storage_quota("compare-and-swap", &key)?;
        check_key(&key)?;
        if new
            .as_ref()
            .is_some_and(|v| (key.len() + v.len()) as u64 > quota)
        {
            return Err(CapError::QuotaExceeded);
        }
        self.shared
            .caps
            .storage
            .compare_and_swap(&self.shared.name, &key, expected, new, quota)
            .await
    }
}

impl wit::http_outbound::Host for PluginState {
    async fn send(&mut self, request: OutboundRequest) -> CapResult<OutboundResponse> {
        let Some(perm) = self.shared.perms.http_outbound.clone() else {
            // The host only: a URL's path and query can carry a secret
            // (webhook tokens), and refusals are logged and audited.
            let host = url::Url::parse(&request.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(self.shared.deny(
                "http-outbound",
                "send",
                &host,
                "the http-outbound capability is not granted".into(),
            ));
        };
        let url = url::Url::parse(&request.url)
            .map_err(|e| CapError::Invalid(format!("url `{}`: {e}", request.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(CapError::Invalid(format!(
                "url scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CapError::Invalid(
                "credentials in the URL are not allowed; use a header".into(),
            ));
        }
        let host = url
            .host_str()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !perm.hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(self.shared.deny(
                "http-outbound",
                "send",
                &host,
                format!("host `{host}` is not in the granted allowlist"),
            ));
        }
        if !within_rate(&self.shared.http_window, perm.max_requests_per_minute) {
            return Err(CapError::QuotaExceeded);
        }
        let asked = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(MAX_HOST_WAIT);
        let wait = self.shared.host_wait(asked);
        let fut = self
            .shared
            .caps
            .http
            .send(&self.shared.name, &url, request, wait);
        match tokio::time::timeout(wait, fut).await {
            Ok(r) => r,
            Err(_) => Err(CapError::Timeout),
        }
    }
}

/// Counts one call in a sliding one-minute `window`; false (and not
/// counted) when `per_minute` calls are in it already.
fn within_rate(window: &Mutex<VecDeque<Instant>>, per_minute: u32) -> bool {
    let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= per_minute as usize {
        return false;
    }
    window.push_back(now);
    true
}

/// Recipients one message may have.
const MAX_MAIL_RECIPIENTS: usize = 50;
/// Longest subject (RFC 5322's line limit).
const MAX_SUBJECT_BYTES: usize = 998;
/// Largest text body.
const MAX_MAIL_TEXT_BYTES: usize = 1 << 20;
/// Longest an SMTP exchange may take unless the plugin asks for less.
const DEFAULT_SMTP_WAIT: Duration = Duration::from_secs(30);

/// The checks on a mail that need no server: what the plugin wrote is
/// one address per field and one line per header (no header injection),
/// within the bounds above, and a password never crosses in clear.
fn check_mail(mail: &Mail) -> Result<(), String> {
    let one_line = |field: &str, v: &str| {
        if v.contains(['\r', '\n']) {
            Err(format!("{field} must be one line"))
        } else {
            Ok(())
        }
    };
    let server = &mail.server;
    if server.port == 0 {
        return Err("server port 0 is not a port".into());
    }
    if mail.from.trim().is_empty() {
        return Err("from is empty".into());
    }
    one_line("from", &mail.from)?;
    if mail.to.is_empty() || mail.to.len() > MAX_MAIL_RECIPIENTS {
        return Err(format!(
            "to must list 1 to {MAX_MAIL_RECIPIENTS} recipients, not {}",
            mail.to.len()
        ));
    }
    for (i, to) in mail.to.iter().enumerate() {
        if to.trim().is_empty() {
            return Err(format!("to[{i}] is empty"));
        }
        one_line(&format!("to[{i}]"), to)?;
    }
    one_line("subject", &mail.subject)?;
    if mail.subject.len() > MAX_SUBJECT_BYTES {
        return Err(format!("subject is longer than {MAX_SUBJECT_BYTES} bytes"));
    }
    if mail.text.len() > MAX_MAIL_TEXT_BYTES {
        return Err(format!("text is larger than {MAX_MAIL_TEXT_BYTES} bytes"));
    }
    match (&server.username, &server.password) {
        (Some(_), None) | (None, Some(_)) => {
            return Err("give both username and password, or neither".into())
        }
        (Some(u), Some(_)) => {
            one_line("username", u)?;
            if server.security == SmtpSecurity::None {
                return Err(
                    "a login needs security starttls or tls: with none the password would cross the network in clear"
                        .into(),
                );
            }
        }
        (None, None) => {}
    }
    Ok(())
}

impl PluginShared {
    /// `smtp.send`: permission, allowlist, checks and rate, then the host's
    /// SMTP client, bounded in time. Refusals name the server's host only.
    pub(crate) async fn send_mail(&self, mail: Mail) -> CapResult<()> {
        let host = mail.server.host.trim_end_matches('.').to_ascii_lowercase();
        let Some(perm) = &self.perms.smtp else {
            return Err(self.deny(
                "smtp",
                "send",
                &host,
                "the smtp capability is not granted".into(),
            ));
        };
        if host.is_empty() {
            return Err(CapError::Invalid("server host is empty".into()));
        }
        if !perm.hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(self.deny(
                "smtp",
                "send",
                &host,
                format!("SMTP server `{host}` is not in the granted allowlist"),
            ));
        }
        check_mail(&mail).map_err(CapError::Invalid)?;
        if !within_rate(&self.smtp_window, perm.max_messages_per_minute) {
            return Err(CapError::QuotaExceeded);
        }
        let asked = mail
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(DEFAULT_SMTP_WAIT);
        let wait = self.host_wait(asked);
        let fut = self.caps.smtp.send(&self.name, mail, wait);
        tokio::time::timeout(wait, fut)
            .await
            .unwrap_or(Err(CapError::Timeout))
    }
}

impl wit::smtp::Host for PluginState {
    async fn send(&mut self, message: Mail) -> CapResult<()> {
        self.shared.send_mail(message).await
    }
}

impl wit::events::Host for PluginState {
    async fn publish(&mut self, topic: String, payload: String) -> CapResult<()> {
        let Some(patterns) = &self.shared.perms.events_publish else {
            return Err(self.shared.deny(
                "events",
                "publish",
                &topic,
                "the events capability is not granted".into(),
            ));
        };
        if !patterns.iter().any(|p| topic_matches(p, &topic)) {
            return Err(self.shared.deny(
                "events",
                "publish",
                &topic,
                format!("topic `{topic}` is not in the granted publish list"),
            ));
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Err(CapError::Invalid(format!(
                "payload larger than {MAX_EVENT_BYTES} bytes"
            )));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
            return Err(CapError::Invalid(format!("payload is not JSON: {e}")));
        }
        self.shared
            .caps
            .events
            .publish(&self.shared.name, &topic, &payload)
    }
}

/// Largest file `files.read` returns.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most log lines `compose.logs` returns.
const MAX_LOG_TAIL: u32 = 2000;

/// Checks a path of the stacks directory: relative, `/`-separated, no `.`,
/// `..` or empty segments, no backslash, NUL or control characters; `""`
/// (the directory itself) only where `root_ok`.
pub fn check_stacks_path(path: &str, root_ok: bool) -> Result<(), String> {
    if path.is_empty() {
        return if root_ok {
            Ok(())
        } else {
            Err("an empty path names the stacks directory itself".into())
        };
    }
    if path.len() > 1024 {
        return Err("path is longer than 1024 bytes".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute: paths are relative to the stacks directory"
        ));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a backslash or a control character",
            path.escape_debug()
        ));
    }
    for seg in path.split('/') {
        match seg {
            "" => return Err(format!("`{path}` has an empty segment")),
            "." | ".." => {
                return Err(format!(
                    "`{path}`: `{seg}` is not allowed (no way out of the stacks directory)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Compose's rule for project names, which are also folder names in the
/// stacks directory: `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
pub fn check_project_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && (name.as_bytes()[0].is_ascii_lowercase() || name.as_bytes()[0].is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a stack name: lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 63 characters (no `/`, `.` or `..`)",
            name.escape_debug()
        ))
    }
}

/// A Compose service name: `[a-zA-Z0-9][a-zA-Z0-9._-]*`.
fn check_service_names(names: &[String]) -> Result<(), String> {
    for n in names {
        let ok = !n.is_empty()
            && n.len() <= 128
            && n.as_bytes()[0].is_ascii_alphanumeric()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return Err(format!("`{}` is not a service name", n.escape_debug()));
        }
    }
    Ok(())
}

impl PluginShared {
    fn files_access(&self, action: &'static str, path: &str, write: bool) -> CapResult<()> {
        match self.perms.files {
            None => Err(self.deny(
                "files",
                action,
                path,
                "the files capability is not granted".into(),
            )),
            Some(Access::Read) if write => Err(self.deny(
                "files",
                action,
                path,
                format!("{action} needs files access \"write\"; granted \"read\""),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The files permission and a well-formed path; a symlink leading out
    /// is the implementation's to refuse, audited here.
    fn files_path(
        &self,
        action: &'static str,
        path: &str,
        write: bool,
        root_ok: bool,
    ) -> CapResult<()> {
        self.files_access(action, path, write)?;
        check_stacks_path(path, root_ok).map_err(CapError::Invalid)
    }

    fn files_result<T>(&self, action: &'static str, path: &str, r: CapResult<T>) -> CapResult<T> {
        match r {
            Err(CapError::PermissionDenied(why)) => Err(self.deny("files", action, path, why)),
            other => other,
        }
    }

    fn compose_access(&self, action: &'static str, target: &str, write: bool) -> ComposeResult<()> {
        let refused = |why: String| {
            let CapError::PermissionDenied(why) = self.deny("compose", action, target, why) else {
                unreachable!("deny always answers permission-denied")
            };
            ComposeError::PermissionDenied(why)
        };
        match self.perms.compose {
            None => Err(refused("the compose capability is not granted".into())),
            Some(Access::Read) if write => Err(refused(format!(
                "{action} needs compose access \"write\"; granted \"read\""
            ))),
            Some(_) => Ok(()),
        }
    }

    fn compose_project(
        &self,
        action: &'static str,
        project: &str,
        write: bool,
    ) -> ComposeResult<()> {
        self.compose_access(action, project, write)?;
        check_project_name(project).map_err(ComposeError::Invalid)
    }
}

impl PluginState {
    fn compose_caller(&self) -> ComposeCaller {
        ComposeCaller {
            plugin: self.shared.name.clone(),
            user: self.caller.as_ref().map(|c| c.username.clone()),
        }
    }
}

impl wit::files::Host for PluginState {
    async fn list(&mut self, path: String) -> CapResult<Vec<FileEntry>> {
        self.shared.files_path("list", &path, false, true)?;
        let r = self.shared.caps.files.list(&path).await;
        self.shared.files_result("list", &path, r)
    }

    async fn stat(&mut self, path: String) -> CapResult<FileEntry> {
        self.shared.files_path("stat", &path, false, true)?;
        let r = self.shared.caps.files.stat(&path).await;
        self.shared.files_result("stat", &path, r)
    }

    async fn read(&mut self, path: String) -> CapResult<Vec<u8>> {
        self.shared.files_path("read", &path, false, false)?;
        let r = self.shared.caps.files.read(&path, MAX_FILE_BYTES).await;
        self.shared.files_result("read", &path, r)
    }

    async fn write(&mut self, path: String, content: Vec<u8>) -> CapResult<()> {
        self.shared.files_path("write", &path, true, false)?;
        if content.len() as u64 > MAX_FILE_BYTES {
            return Err(CapError::Invalid(format!(
                "files larger than {MAX_FILE_BYTES} bytes are not written"
            )));
        }
        let r = self.shared.caps.files.write(&path, content).await;
        self.shared.files_result("write", &path, r)
    }

    async fn create_dir(&mut self, path: String) -> CapResult<()> {
        self.shared.files_path("create-dir", &path, true, false)?;
        let r = self.shared.caps.files.create_dir(&path).await;
        self.shared.files_result("create-dir", &path, r)
    }

    async fn remove(&mut self, path: String, recursive: bool) -> CapResult<bool> {
        self.shared.files_path("remove", &path, true, false)?;
        let r = self.shared.caps.files.remove(&path, recursive).await;
        self.shared.files_result("remove", &path, r)
    }

    async fn rename(&mut self, from: String, to: String) -> CapResult<()> {
        self.shared.files_path("rename", &from, true, false)?;
        check_stacks_path(&to, false).map_err(CapError::Invalid)?;
        let r = self.shared.caps.files.rename(&from, &to).await;
        self.shared.files_result("rename", &from, r)
    }
}

impl wit::compose::Host for PluginState {
    async fn start_action(
        &mut self,
        project: String,
        action: ComposeAction,
    ) -> ComposeResult<String> {
        self.shared
            .compose_project("start-action", &project, true)?;
        let services = match &action {
            ComposeAction::Up(o) => &o.services[..],
            ComposeAction::Pull(s)
            | ComposeAction::Start(s)
            | ComposeAction::Stop(s)
            | ComposeAction::Restart(s) => &s[..],
            ComposeAction::Down(_) => &[],
        };
        check_service_names(services).map_err(ComposeError::Invalid)?;
        let caller = self.compose_caller();
        self.shared
            .caps
            .compose
            .start_action(&caller, &project, action)
            .await
    }

    async fn await_action(&mut self, id: String, timeout_ms: u32) -> ComposeResult<ActionStatus> {
        self.shared.compose_access("await-action", &id, false)?;
        let wait = self
            .shared
            .host_wait(Duration::from_millis(timeout_ms.into()));
        self.shared.caps.compose.await_action(&id, wait).await
    }

    async fn last_action(&mut self, project: String) -> ComposeResult<Option<ActionStatus>> {
        self.shared
            .compose_project("last-action", &project, false)?;
        self.shared.caps.compose.last_action(&project).await
    }

    async fn config(
        &mut self,
        project: String,
        files: Vec<String>,
        env_file: Option<String>,
    ) -> ComposeResult<String> {
        self.shared.compose_project("config", &project, false)?;
        for f in files.iter().chain(env_file.iter()) {
            check_stacks_path(f, false)
                .and_then(|()| {
                    if f.contains('/') {
                        Err(format!(
                            "`{f}`: name a file in the project's folder, not a path"
                        ))
                    } else {
                        Ok(())
                    }
                })
                .map_err(ComposeError::Invalid)?;
        }
        let limit = self.shared.host_wait(MAX_HOST_WAIT);
        let fut = self
            .shared
            .caps
            .compose
            .config(&project, &files, env_file.as_deref());
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(ComposeError::Timeout))
    }

    async fn ps(&mut self, project: String) -> ComposeResult<Vec<ComposeContainer>> {
        self.shared.compose_project("ps", &project, false)?;
        let limit = self.shared.host_wait(MAX_HOST_WAIT);
        tokio::time::timeout(limit, self.shared.caps.compose.ps(&project))
            .await
            .unwrap_or(Err(ComposeError::Timeout))
    }

    async fn logs(
        &mut self,
        project: String,
        services: Vec<String>,
        tail: u32,
    ) -> ComposeResult<Vec<String>> {
        self.shared.compose_project("logs", &project, false)?;
        check_service_names(&services).map_err(ComposeError::Invalid)?;
        let limit = self.shared.host_wait(MAX_HOST_WAIT);
        let fut = self
            .shared
            .caps
            .compose
            .logs(&project, &services, tail.min(MAX_LOG_TAIL));
        tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(ComposeError::Timeout))
    }

    async fn adopt(&mut self, project: String) -> ComposeResult<()> {
        self.shared.compose_project("adopt", &project, true)?;
        let caller = self.compose_caller();
        self.shared.caps.compose.adopt(&caller, &project).await
    }
}

/// A subscription's name: what storage keys and URLs carry.
fn check_follow_name(name: &str) -> CapResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(CapError::Invalid(format!(
            "`{}` is not a subscription name (1 to 64 letters, digits, `-`, `_` or `.`)",
            name.escape_debug()
        )))
    }
}

impl PluginShared {
    /// The `container-logs` bounds and the `containers` selector every
    /// subscription is narrowed to; a refusal without either.
    fn logs_perm(
        &self,
        action: &'static str,
        target: &str,
    ) -> CapResult<(crate::manifest::LogsPermission, crate::manifest::Selector)> {
        let Some(perm) = self.perms.container_logs else {
            return Err(self.deny(
                "container-logs",
                action,
                target,
                "the container-logs capability is not granted".into(),
            ));
        };
        let Some(containers) = &self.perms.containers else {
            return Err(self.deny(
                "container-logs",
                action,
                target,
                "following logs needs the containers capability (its selector bounds what is followed)".into(),
            ));
        };
        Ok((perm, containers.selector.clone()))
    }

    /// Hands the whole table to the host (it follows exactly that).
    pub(crate) fn sync_follows(self: &Arc<Self>) {
        let all = self.logs.all();
        let to = crate::logs::LogDelivery {
            shared: Arc::downgrade(self),
        };
        self.caps.logs.set_follows(&self.name, all, to);
    }
}

/// Checks a request and makes it a subscription within `selector`.
fn checked_follow(
    name: &str,
    request: FollowRequest,
    selector: &crate::manifest::Selector,
) -> CapResult<crate::logs::LogFollow> {
    check_follow_name(name)?;
    if let Some(bad) = request.labels.iter().find(|t| t.contains(',')) {
        return Err(CapError::Invalid(format!(
            "labels: `{bad}` holds a `,`: give one term per entry"
        )));
    }
    let terms = crate::manifest::Selector::parse(&request.labels.join(","))
        .map_err(|m| CapError::Invalid(format!("labels: {m}")))?;
    if let Some(i) = request.names.iter().position(|n| n.trim().is_empty()) {
        return Err(CapError::Invalid(format!("names[{i}] is empty")));
    }
    let pattern = match request.pattern {
        None => None,
        Some(p) if p.len() > crate::logs::MAX_PATTERN_BYTES => {
            return Err(CapError::Invalid(format!(
                "pattern is longer than {} bytes",
                crate::logs::MAX_PATTERN_BYTES
            )))
        }
        Some(p) => Some(
            regex::RegexBuilder::new(&p)
                .size_limit(crate::logs::MAX_PATTERN_PROGRAM_BYTES)
                .build()
                .map_err(|e| CapError::Invalid(format!("pattern: {e}")))?,
        ),
    };
    Ok(crate::logs::LogFollow {
        name: name.to_owned(),
        selector: terms.and(selector),
        names: request
            .names
            .iter()
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect(),
        pattern,
        since_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    })
}

impl wit::container_logs::Host for PluginState {
    async fn follow(&mut self, name: String, request: FollowRequest) -> CapResult<()> {
        let (perm, selector) = self.shared.logs_perm("follow", &name)?;
        let new = checked_follow(&name, request, &selector)?;
        {
            let mut follows = self
                .shared
                .logs
                .follows
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match follows.get(&name) {
                // The same again: nothing changes, no line is lost or repeated.
                Some(old) if old.same_as(&new) => return Ok(()),
                Some(_) => {}
                None if follows.len() >= perm.max_subscriptions as usize => {
                    return Err(CapError::QuotaExceeded)
                }
                None => {}
            }
            follows.insert(name, Arc::new(new));
        }
        self.shared.sync_follows();
        Ok(())
    }

    async fn unfollow(&mut self, name: String) -> CapResult<bool> {
        self.shared.logs_perm("unfollow", &name)?;
        let removed = self
            .shared
            .logs
            .follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name)
            .is_some();
        if removed {
            self.shared.sync_follows();
        }
        Ok(removed)
    }

    async fn following(&mut self) -> CapResult<Vec<String>> {
        self.shared.logs_perm("following", "*")?;
        Ok(self
            .shared
            .logs
            .follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect())
    }
}

/// Frozen WASI clocks: std's `Instant`/`SystemTime` see time 0. Plugins get
/// time only through the `clock` interface (which the host can audit and
/// fake in tests).
pub(crate) struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A WASI context with no authority: no preopened directories, no
/// environment, no arguments, no network, stdio going nowhere, frozen
/// clocks. Rust's std imports WASI even in a plugin that never uses it, so
/// the interfaces are linked, but they can do nothing.
pub(crate) fn deny_all_wasi() -> WasiCtx {
    let mut b = WasiCtx::builder();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock);
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(target: &str) -> DenialKey {
        ("storage", "get", target.into(), "not granted".into())
    }

    #[test]
    fn a_repeated_refusal_is_recorded_once_per_interval_with_its_count() {
        let d = Denials::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(d.admit(key("a"), t0), Some(0));
        for i in 1..=599 {
            assert_eq!(d.admit(key("a"), t0 + Duration::from_secs(i)), None);
        }
        // Another target is another refusal.
        assert_eq!(d.admit(key("b"), t0 + Duration::from_secs(1)), Some(0));
        // After the interval: recorded again, with the 599 left out.
        assert_eq!(d.admit(key("a"), t0 + Duration::from_secs(600)), Some(599));
        assert_eq!(d.admit(key("a"), t0 + Duration::from_secs(601)), None);
    }

    #[test]
    fn many_distinct_refusals_share_one_entry() {
        let d = Denials::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..MAX_DISTINCT_DENIALS {
            assert_eq!(d.admit(key(&i.to_string()), t0), Some(0));
        }
        // Full: the next new targets are counted together.
        assert_eq!(d.admit(key("new-1"), t0), Some(0));
        assert_eq!(d.admit(key("new-2"), t0), None);
        assert_eq!(d.admit(key("new-3"), t0), None);
        // Once the old ones expire there is room again.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(d.admit(key("new-4"), later), Some(0));
    }

    mod smtp {
        use super::*;
        use crate::caps::SmtpServer;
        use crate::manifest::SmtpPermission;
        use crate::testing::TestHost;

        fn shared(host: &TestHost, smtp: Option<SmtpPermission>) -> PluginShared {
            let perms = Permissions {
                smtp,
                ..Permissions::default()
            };
            PluginShared::new(
                "mailer".into(),
                perms,
                host.capabilities(),
                Duration::from_secs(30),
                Duration::from_secs(600),
            )
        }

        fn granted(hosts: &[&str], per_minute: u32) -> Option<SmtpPermission> {
            Some(SmtpPermission {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                max_messages_per_minute: per_minute,
            })
        }

        fn mail(host: &str) -> Mail {
            Mail {
                server: SmtpServer {
                    host: host.into(),
                    port: 587,
                    security: SmtpSecurity::Starttls,
                    username: Some("ops".into()),
                    password: Some("hunter2".into()),
                    ca_pem: None,
                },
                from: "WakeDock <wd@example.org>".into(),
                to: vec!["ops@example.org".into()],
                subject: "[FIRING] crash on api".into(),
                text: "exit code 1".into(),
                timeout_ms: None,
            }
        }

        fn sent(host: &TestHost) -> usize {
            host.smtp.sent.lock().unwrap().len()
        }

        #[tokio::test]
        async fn without_the_capability_nothing_is_sent_and_the_refusal_is_audited() {
            let host = TestHost::new();
            let s = shared(&host, None);
            let e = s.send_mail(mail("smtp.example.org")).await.unwrap_err();
            assert!(
                matches!(&e, CapError::PermissionDenied(m) if m.contains("smtp capability")),
                "{e:?}"
            );
            assert_eq!(sent(&host), 0);
            let audit = host.audit_entries();
            assert_eq!(
                (
                    audit[0].capability,
                    audit[0].action,
                    audit[0].target.as_str()
                ),
                ("smtp", "send", "smtp.example.org")
            );
            assert!(!format!("{audit:?}").contains("hunter2"));
        }

        #[tokio::test]
        async fn only_allowlisted_servers_are_reached() {
            let host = TestHost::new();
            let s = shared(&host, granted(&["smtp.example.org", "*.mail.example"], 10));
            for bad in [
                "evil.example",
                "smtp.example.org.evil.example",
                "mail.example",
            ] {
                let e = s.send_mail(mail(bad)).await.unwrap_err();
                assert!(matches!(e, CapError::PermissionDenied(_)), "{bad}: {e:?}");
            }
            assert_eq!(sent(&host), 0);
            s.send_mail(mail("SMTP.example.org.")).await.unwrap();
            s.send_mail(mail("out.mail.example")).await.unwrap();
            assert_eq!(sent(&host), 2);
            let (plugin, m) = host.smtp.sent.lock().unwrap()[0].clone();
            assert_eq!((plugin.as_str(), m.to.len()), ("mailer", 1));
        }

        #[tokio::test]
        async fn messages_are_rate_limited_per_minute() {
            let host = TestHost::new();
            let s = shared(&host, granted(&["smtp.example.org"], 3));
            for _ in 0..3 {
                s.send_mail(mail("smtp.example.org")).await.unwrap();
            }
            let e = s.send_mail(mail("smtp.example.org")).await.unwrap_err();
            assert_eq!(e, CapError::QuotaExceeded);
            assert_eq!(sent(&host), 3);
        }

        /// What spoils a good mail.
        type Change = Box<dyn Fn(&mut Mail)>;

        #[tokio::test]
        async fn malformed_mails_are_invalid_and_never_sent() {
            let host = TestHost::new();
            let s = shared(&host, granted(&["smtp.example.org"], 100));
            let cases: Vec<(&str, Change)> = vec![
                ("no recipient", Box::new(|m| m.to.clear())),
                (
                    "header injection",
                    Box::new(|m| m.subject = "hi\r\nBcc: x@y".into()),
                ),
                (
                    "injected recipient",
                    Box::new(|m| m.to = vec!["a@b\nc@d".into()]),
                ),
                ("half a login", Box::new(|m| m.server.password = None)),
                (
                    "a password in clear",
                    Box::new(|m| m.server.security = SmtpSecurity::None),
                ),
                ("port 0", Box::new(|m| m.server.port = 0)),
            ];
            for (what, change) in cases {
                let mut m = mail("smtp.example.org");
                change(&mut m);
                let e = s.send_mail(m).await.unwrap_err();
                assert!(
                    matches!(&e, CapError::Invalid(why) if !why.contains("hunter2")),
                    "{what}: {e:?}"
                );
            }
            assert_eq!(sent(&host), 0);
            // Without a login, plain SMTP to a local relay is fine.
            let mut m = mail("smtp.example.org");
            m.server.security = SmtpSecurity::None;
            m.server.username = None;
            m.server.password = None;
            s.send_mail(m).await.unwrap();
            assert_eq!(sent(&host), 1);
        }
    }
}
