//! In-memory capability implementations, so the runtime (and code using it)
//! can be tested without Docker, a database or a network. Enabled by the
//! `testing` feature.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::caps::*;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Containers held in a vector; start/stop change their state.
#[derive(Default)]
pub struct MemoryContainers {
    pub containers: Mutex<Vec<Container>>,
    /// `(action, id)` of every mutating call that reached the host.
    pub actions: Mutex<Vec<(String, String)>>,
    /// Calls of `inspect` that reached the host.
    pub inspects: AtomicUsize,
}

impl MemoryContainers {
    pub fn add(&self, id: &str, name: &str, running: bool, labels: &[(&str, &str)]) {
        lock(&self.containers).push(Container {
            id: id.into(),
            name: name.into(),
            image: "test/image:latest".into(),
            state: if running {
                ContainerState::Running
            } else {
                ContainerState::Exited
            },
            health: Health::None,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            started_at_ms: running.then_some(0),
        });
    }

    fn find(&self, id: &str) -> CapResult<Container> {
        lock(&self.containers)
            .iter()
            .find(|c| c.id == id || c.name == id)
            .cloned()
            .ok_or(CapError::NotFound)
    }

    fn set_state(&self, action: &str, id: &str, state: ContainerState) -> CapResult<()> {
        let mut list = lock(&self.containers);
        let c = list
            .iter_mut()
            .find(|c| c.id == id || c.name == id)
            .ok_or(CapError::NotFound)?;
        c.state = state;
        lock(&self.actions).push((action.into(), c.id.clone()));
        Ok(())
    }
}

impl ContainerHost for MemoryContainers {
    fn list<'a>(
        &'a self,
        filters: &'a [LabelFilter],
        include_stopped: bool,
    ) -> BoxFuture<'a, CapResult<Vec<Container>>> {
        Box::pin(async move {
            Ok(lock(&self.containers)
                .iter()
                .filter(|c| include_stopped || c.state == ContainerState::Running)
                .filter(|c| {
                    filters.iter().all(|f| {
                        c.labels
                            .iter()
                            .any(|(k, v)| *k == f.key && f.value.as_ref().is_none_or(|fv| fv == v))
                    })
                })
                .cloned()
                .collect())
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Container>> {
        Box::pin(async move {
            self.inspects.fetch_add(1, Ordering::Relaxed);
            self.find(id)
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.set_state("start", id, ContainerState::Running) })
    }

    fn stop<'a>(&'a self, id: &'a str, _timeout_secs: Option<u32>) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.set_state("stop", id, ContainerState::Exited) })
    }

    fn restart<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.set_state("restart", id, ContainerState::Running) })
    }

    fn await_ready<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<Readiness>> {
        Box::pin(async move {
            if self.find(id)?.state == ContainerState::Running {
                Ok(Readiness::Running)
            } else {
                tokio::time::sleep(timeout).await;
                Err(CapError::Timeout)
            }
        })
    }

    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.set_state("pause", id, ContainerState::Paused) })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.set_state("unpause", id, ContainerState::Running) })
    }

    /// Memory containers have no ports: a probe passes when running.
    fn await_probe<'a>(
        &'a self,
        id: &'a str,
        _probe: &'a Probe,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move { self.await_ready(id, timeout).await.map(|_| ()) })
    }

    fn exit_code<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Option<i32>>> {
        Box::pin(async move {
            Ok(match self.find(id)?.state {
                ContainerState::Exited | ContainerState::Dead => Some(0),
                _ => None,
            })
        })
    }

    fn await_exit<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, CapResult<i32>> {
        Box::pin(async move {
            match self.exit_code(id).await? {
                Some(code) => Ok(code),
                None => {
                    tokio::time::sleep(timeout).await;
                    Err(CapError::Timeout)
                }
            }
        })
    }
}

/// Key-value storage per plugin with an atomic quota check.
#[derive(Default)]
pub struct MemoryStorage {
    pub data: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryStorage {
    /// Bytes (keys + values) used by `plugin`.
    pub fn usage(&self, plugin: &str) -> u64 {
        lock(&self.data)
            .iter()
            .filter(|((p, _), _)| p == plugin)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

/// Bytes `plugin` uses in `data` without its value under `key`.
fn used_besides(data: &BTreeMap<(String, String), Vec<u8>>, plugin: &str, key: &str) -> u64 {
    data.iter()
        .filter(|((p, k), _)| p == plugin && k != key)
        .map(|((_, k), v)| (k.len() + v.len()) as u64)
        .sum()
}

impl StorageHost for MemoryStorage {
    fn get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, CapResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            Ok(lock(&self.data)
                .get(&(plugin.to_owned(), key.to_owned()))
                .cloned())
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
            let mut data = lock(&self.data);
            if used_besides(&data, plugin, key) + (key.len() + value.len()) as u64 > quota_bytes {
                return Err(CapError::QuotaExceeded);
            }
            data.insert((plugin.to_owned(), key.to_owned()), value);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(async move {
            Ok(lock(&self.data)
                .remove(&(plugin.to_owned(), key.to_owned()))
                .is_some())
        })
    }

    fn list_keys<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, CapResult<Vec<String>>> {
        Box::pin(async move {
            Ok(lock(&self.data)
                .keys()
                .filter(|(p, k)| p == plugin && k.starts_with(prefix))
                .map(|(_, k)| k.clone())
                .collect())
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
            let mut data = lock(&self.data);
            let k = (plugin.to_owned(), key.to_owned());
            if data.get(&k) != expected.as_ref() {
                return Ok(false);
            }
            match new {
                None => {
                    data.remove(&k);
                }
                Some(value) => {
                    if used_besides(&data, plugin, key) + (key.len() + value.len()) as u64
                        > quota_bytes
                    {
                        return Err(CapError::QuotaExceeded);
                    }
                    data.insert(k, value);
                }
            }
            Ok(true)
        })
    }
}

/// A metric series: (plugin, metric name, label values).
pub type SeriesKey = (String, String, Vec<String>);

/// Records metric registrations and the latest value per series.
#[derive(Default)]
pub struct MemoryMetrics {
    pub registered: Mutex<Vec<(String, MetricDesc)>>,
    /// (plugin, metric, label values) → value (sum for counters, last for
    /// gauges, sum of observations for histograms).
    pub values: Mutex<BTreeMap<SeriesKey, f64>>,
    pub stats: Mutex<Vec<ContainerStats>>,
}

impl MetricsHost for MemoryMetrics {
    fn container_stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<ContainerStats>> {
        Box::pin(async move {
            lock(&self.stats)
                .iter()
                .find(|s| s.container_id == id)
                .cloned()
                .ok_or(CapError::NotFound)
        })
    }

    fn all_container_stats<'a>(
        &'a self,
        containers: &'a [Container],
    ) -> BoxFuture<'a, CapResult<Vec<ContainerStats>>> {
        Box::pin(async move {
            Ok(lock(&self.stats)
                .iter()
                .filter(|s| containers.iter().any(|c| c.id == s.container_id))
                .cloned()
                .collect())
        })
    }

    fn register(&self, plugin: &str, desc: &MetricDesc) -> CapResult<()> {
        lock(&self.registered).push((plugin.into(), desc.clone()));
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
        let mut values = lock(&self.values);
        let slot = values
            .entry((plugin.into(), name.into(), label_values.to_vec()))
            .or_insert(0.0);
        match kind {
            MetricKind::Gauge => *slot = value,
            MetricKind::Counter | MetricKind::Histogram => *slot += value,
        }
        Ok(())
    }
}

/// Records published events.
#[derive(Default)]
pub struct MemoryEvents {
    pub published: Mutex<Vec<(String, String, String)>>,
}

impl EventSink for MemoryEvents {
    fn publish(&self, plugin: &str, topic: &str, payload: &str) -> CapResult<()> {
        lock(&self.published).push((plugin.into(), topic.into(), payload.into()));
        Ok(())
    }
}

/// Records outbound requests and answers each with `200` and body `ok`.
/// No network traffic at all.
#[derive(Default)]
pub struct RecordingHttp {
    pub sent: Mutex<Vec<(String, String)>>,
}

impl HttpOutbound for RecordingHttp {
    fn send<'a>(
        &'a self,
        plugin: &'a str,
        url: &'a url::Url,
        _request: OutboundRequest,
        _timeout: Duration,
    ) -> BoxFuture<'a, CapResult<OutboundResponse>> {
        Box::pin(async move {
            lock(&self.sent).push((plugin.into(), url.to_string()));
            Ok(OutboundResponse {
                status: 200,
                headers: Vec::new(),
                body: b"ok".to_vec(),
            })
        })
    }
}

/// Records the mails it is given and accepts each (API 0.1.4). No network
/// traffic at all.
#[derive(Default)]
pub struct MemorySmtp {
    pub sent: Mutex<Vec<(String, Mail)>>,
}

impl SmtpHost for MemorySmtp {
    fn send<'a>(
        &'a self,
        plugin: &'a str,
        mail: Mail,
        _timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            lock(&self.sent).push((plugin.into(), mail));
            Ok(())
        })
    }
}

/// Records log lines.
#[derive(Default)]
pub struct MemoryLog {
    pub lines: Mutex<Vec<(String, LogLevel, String)>>,
}

impl LogSink for MemoryLog {
    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        lock(&self.lines).push((plugin.into(), level, message.into()));
    }
}

/// Records audit entries.
#[derive(Default)]
pub struct MemoryAudit {
    pub entries: Mutex<Vec<AuditEntry>>,
}

impl AuditSink for MemoryAudit {
    fn record(&self, entry: AuditEntry) {
        lock(&self.entries).push(entry);
    }
}

/// The stacks directory as a map of paths to contents (directories are
/// paths mapped to `None`).
#[derive(Default)]
pub struct MemoryFiles {
    pub entries: Mutex<BTreeMap<String, Option<Vec<u8>>>>,
}

impl MemoryFiles {
    fn entry(name: &str, content: &Option<Vec<u8>>) -> FileEntry {
        FileEntry {
            name: name.rsplit('/').next().unwrap_or(name).to_owned(),
            is_dir: content.is_none(),
            size: content.as_ref().map_or(0, |c| c.len() as u64),
            modified_ms: 0,
        }
    }

    fn parent_exists(map: &BTreeMap<String, Option<Vec<u8>>>, path: &str) -> bool {
        match path.rsplit_once('/') {
            None => true,
            Some((parent, _)) => matches!(map.get(parent), Some(None)),
        }
    }
}

impl FilesHost for MemoryFiles {
    fn list<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<Vec<FileEntry>>> {
        Box::pin(async move {
            let map = lock(&self.entries);
            if !path.is_empty() && !matches!(map.get(path), Some(None)) {
                return Err(CapError::NotFound);
            }
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            Ok(map
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                })
                .map(|(k, v)| Self::entry(k, v))
                .collect())
        })
    }

    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<FileEntry>> {
        Box::pin(async move {
            let map = lock(&self.entries);
            map.get(path)
                .map(|v| Self::entry(path, v))
                .ok_or(CapError::NotFound)
        })
    }

    fn read<'a>(&'a self, path: &'a str, max_bytes: u64) -> BoxFuture<'a, CapResult<Vec<u8>>> {
        Box::pin(async move {
            match lock(&self.entries).get(path) {
                Some(Some(c)) if c.len() as u64 > max_bytes => {
                    Err(CapError::Invalid("too large".into()))
                }
                Some(Some(c)) => Ok(c.clone()),
                Some(None) => Err(CapError::Invalid(format!("{path} is a directory"))),
                None => Err(CapError::NotFound),
            }
        })
    }

    fn write<'a>(&'a self, path: &'a str, content: Vec<u8>) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            let mut map = lock(&self.entries);
            if !Self::parent_exists(&map, path) {
                return Err(CapError::NotFound);
            }
            map.insert(path.to_owned(), Some(content));
            Ok(())
        })
    }

    fn create_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            let mut map = lock(&self.entries);
            if map.contains_key(path) {
                return Err(CapError::Invalid(format!("{path} exists")));
            }
            if !Self::parent_exists(&map, path) {
                return Err(CapError::NotFound);
            }
            map.insert(path.to_owned(), None);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(async move {
            let mut map = lock(&self.entries);
            let prefix = format!("{path}/");
            let has_children = map.keys().any(|k| k.starts_with(&prefix));
            if has_children && !recursive {
                return Err(CapError::Invalid(format!("{path} is not empty")));
            }
            map.retain(|k, _| !k.starts_with(&prefix));
            Ok(map.remove(path).is_some())
        })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            let mut map = lock(&self.entries);
            let v = map.remove(from).ok_or(CapError::NotFound)?;
            map.insert(to.to_owned(), v);
            Ok(())
        })
    }
}

/// `(plugin, user, project, action kind)` of a started action.
pub type StartedAction = (String, Option<String>, String, String);

/// A compose host that records what it was asked and runs nothing: every
/// action succeeds at once with one line of output.
#[derive(Default)]
pub struct MemoryCompose {
    /// Every started action.
    pub started: Mutex<Vec<StartedAction>>,
    actions: Mutex<Vec<ActionStatus>>,
}

fn kind_of(a: &ComposeAction) -> &'static str {
    match a {
        ComposeAction::Up(_) => "up",
        ComposeAction::Pull(_) => "pull",
        ComposeAction::Start(_) => "start",
        ComposeAction::Stop(_) => "stop",
        ComposeAction::Restart(_) => "restart",
        ComposeAction::Down(_) => "down",
    }
}

impl ComposeHost for MemoryCompose {
    fn start_action<'a>(
        &'a self,
        caller: &'a ComposeCaller,
        project: &'a str,
        action: ComposeAction,
    ) -> BoxFuture<'a, ComposeResult<String>> {
        Box::pin(async move {
            let kind = kind_of(&action);
            lock(&self.started).push((
                caller.plugin.clone(),
                caller.user.clone(),
                project.to_owned(),
                kind.to_owned(),
            ));
            let mut actions = lock(&self.actions);
            let id = format!("a{}", actions.len() + 1);
            actions.push(ActionStatus {
                id: id.clone(),
                project: project.to_owned(),
                kind: kind.to_owned(),
                command: format!("docker compose {kind}"),
                state: ActionState::Succeeded,
                exit_code: Some(0),
                started_at_ms: 0,
                finished_at_ms: Some(0),
                started_by: caller.user.clone(),
                lines: vec![format!("{kind} done")],
                lines_dropped: 0,
            });
            Ok(id)
        })
    }

    fn await_action<'a>(
        &'a self,
        id: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, ComposeResult<ActionStatus>> {
        Box::pin(async move {
            lock(&self.actions)
                .iter()
                .find(|a| a.id == id)
                .cloned()
                .ok_or(ComposeError::NotFound)
        })
    }

    fn last_action<'a>(
        &'a self,
        project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<Option<ActionStatus>>> {
        Box::pin(async move {
            Ok(lock(&self.actions)
                .iter()
                .rev()
                .find(|a| a.project == project)
                .cloned())
        })
    }

    fn config<'a>(
        &'a self,
        project: &'a str,
        _files: &'a [String],
        _env_file: Option<&'a str>,
    ) -> BoxFuture<'a, ComposeResult<String>> {
        Box::pin(async move { Ok(format!("{{\"name\":\"{project}\",\"services\":{{}}}}")) })
    }

    fn ps<'a>(&'a self, _project: &'a str) -> BoxFuture<'a, ComposeResult<Vec<ComposeContainer>>> {
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn logs<'a>(
        &'a self,
        _project: &'a str,
        _services: &'a [String],
        _tail: u32,
    ) -> BoxFuture<'a, ComposeResult<Vec<String>>> {
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn adopt<'a>(
        &'a self,
        _caller: &'a ComposeCaller,
        _project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<()>> {
        Box::pin(async move { Err(ComposeError::NotFound) })
    }
}

/// Log subscriptions as the runtime last handed them over, per plugin;
/// [`MemoryLogs::emit`] plays a followed container writing a line.
#[derive(Default)]
pub struct MemoryLogs {
    pub follows: Mutex<BTreeMap<String, crate::logs::Followed>>,
}

impl MemoryLogs {
    /// What `plugin` follows now.
    pub fn follows(&self, plugin: &str) -> Vec<Arc<LogFollow>> {
        lock(&self.follows)
            .get(plugin)
            .map(|(f, _)| f.clone())
            .unwrap_or_default()
    }

    /// Hands `line` to every subscription of `plugin` that covers its
    /// container and wants it, as a host implementation does; what became
    /// of it, per subscription.
    pub async fn emit(&self, plugin: &str, line: LogLine) -> Vec<(String, Delivered)> {
        let Some((follows, to)) = lock(&self.follows).get(plugin).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in follows {
            if f.selects(&line.container_name, &line.labels) && f.wants(&line.line, line.at_ms) {
                out.push((f.name.clone(), to.deliver(&f.name, line.clone()).await));
            }
        }
        out
    }
}

impl ContainerLogsHost for MemoryLogs {
    fn set_follows(&self, plugin: &str, follows: Vec<Arc<LogFollow>>, to: LogDelivery) {
        let mut all = lock(&self.follows);
        if follows.is_empty() {
            all.remove(plugin);
        } else {
            all.insert(plugin.to_owned(), (follows, to));
        }
    }
}

/// A stdout line of container `name` (id `id-{name}`) with `labels`, read
/// long after any follow, as a host implementation hands it over.
pub fn log_line(name: &str, labels: &[(&str, &str)], text: &str) -> LogLine {
    LogLine {
        container_id: format!("id-{name}"),
        container_name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        stream: LogStream::Stdout,
        line: text.into(),
        at_ms: u64::MAX / 2,
    }
}

/// All in-memory capabilities, with handles to inspect them.
#[derive(Default, Clone)]
pub struct TestHost {
    pub containers: Arc<MemoryContainers>,
    pub storage: Arc<MemoryStorage>,
    pub metrics: Arc<MemoryMetrics>,
    pub events: Arc<MemoryEvents>,
    pub http: Arc<RecordingHttp>,
    pub log: Arc<MemoryLog>,
    pub audit: Arc<MemoryAudit>,
    pub files: Arc<MemoryFiles>,
    pub compose: Arc<MemoryCompose>,
    pub logs: Arc<MemoryLogs>,
    pub smtp: Arc<MemorySmtp>,
}

impl TestHost {
    pub fn new() -> TestHost {
        TestHost::default()
    }

    /// The capabilities to hand to [`crate::PluginRuntime::new`].
    pub fn capabilities(&self) -> HostCapabilities {
        HostCapabilities {
            containers: self.containers.clone(),
            metrics: self.metrics.clone(),
            storage: self.storage.clone(),
            http: self.http.clone(),
            events: self.events.clone(),
            log: self.log.clone(),
            audit: self.audit.clone(),
            files: self.files.clone(),
            compose: self.compose.clone(),
            logs: self.logs.clone(),
            smtp: self.smtp.clone(),
        }
    }

    /// Audit entries so far.
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        lock(&self.audit.entries).clone()
    }

    /// Log lines of `plugin` so far.
    pub fn log_lines(&self, plugin: &str) -> Vec<String> {
        lock(&self.log.lines)
            .iter()
            .filter(|(p, _, _)| p == plugin)
            .map(|(_, _, m)| m.clone())
            .collect()
    }
}

/// A caller with role `user` and `containers:read`, for HTTP tests.
pub fn test_caller() -> AuthContext {
    AuthContext {
        user_id: "u-1".into(),
        username: "alice".into(),
        role: Role::User,
        permissions: vec!["containers:read".into()],
    }
}

/// A GET request for HTTP tests.
pub fn get(path: &str) -> HttpRequest {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}
