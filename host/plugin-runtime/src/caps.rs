//! The capabilities the host lends to plugins, each behind a narrow trait.
//!
//! The WakeDock binary implements these against Docker, its database, its
//! Prometheus registry and its event bus; [`crate::testing`] has in-memory
//! versions. The runtime does every permission and quota check *before*
//! calling a trait method (one chokepoint), so implementations only do the
//! work. Methods are async (boxed futures, so the traits stay object-safe);
//! they run on the tokio runtime while the calling plugin is suspended.
//!
//! Data types are the ones generated from the WIT package, re-exported here,
//! so there is no second copy of the API to keep in sync.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::logs::{Delivered, LogDelivery, LogFollow, LogLine, LogStream};

pub use crate::bindings::wakedock::plugin::auth::Role;
pub use crate::bindings::wakedock::plugin::compose::{
    Action as ComposeAction, ActionState, ActionStatus, ComposeError,
    Container as ComposeContainer, DownOptions, PullPolicy, UpOptions,
};
pub use crate::bindings::wakedock::plugin::container_logs::FollowRequest;
pub use crate::bindings::wakedock::plugin::containers::{HttpProbe, LabelFilter, Probe, Readiness};
pub use crate::bindings::wakedock::plugin::files::Entry as FileEntry;
pub use crate::bindings::wakedock::plugin::http_outbound::{
    Request as OutboundRequest, Response as OutboundResponse,
};
pub use crate::bindings::wakedock::plugin::log::Level as LogLevel;
pub use crate::bindings::wakedock::plugin::metrics::{ContainerStats, MetricDesc, MetricKind};
pub use crate::bindings::wakedock::plugin::smtp::{
    Mail, Security as SmtpSecurity, Server as SmtpServer,
};
pub use crate::bindings::wakedock::plugin::types::{
    Container, ContainerEvent, ContainerEventKind, ContainerState, Error as CapError, Event,
    Health, HttpRequest, HttpResponse, PluginEvent,
};

/// A boxed `Send` future, the return type of every capability method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result of a capability call; the error is the WIT `error` variant the
/// plugin receives.
pub type CapResult<T> = Result<T, CapError>;

/// Longest `timeout-secs` a plugin may give `containers.stop` (one hour);
/// a larger one is refused as `invalid`.
pub const MAX_STOP_TIMEOUT_SECS: u32 = 3600;

/// Docker containers. Label filtering by the plugin's selector is done by
/// the runtime (it adds the selector's terms to `filters` and re-checks the
/// results), so `list` only has to honour `filters`. `id` is whatever the
/// plugin passed (an id, an id prefix or a name) when the grant's selector
/// matches every container, else the id the runtime resolved.
pub trait ContainerHost: Send + Sync {
    /// Containers carrying every label in `filters` (`value: None` = any
    /// value); stopped ones only if `include_stopped`.
    fn list<'a>(
        &'a self,
        filters: &'a [LabelFilter],
        include_stopped: bool,
    ) -> BoxFuture<'a, CapResult<Vec<Container>>>;
    /// One container by id or name; `CapError::NotFound` if absent.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Container>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>>;
    fn stop<'a>(&'a self, id: &'a str, timeout_secs: Option<u32>) -> BoxFuture<'a, CapResult<()>>;
    fn restart<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>>;
    /// Plugin `plugin` is about to stop or restart container `id` (a full
    /// id): the host can tell the `die` that follows from a crash.
    fn expect_stop(&self, id: &str, plugin: &str) {
        let _ = (id, plugin);
    }
    /// Resolves when the container is running and ready (healthy, or a port
    /// answers), driven by Docker events; `CapError::Timeout` after
    /// `timeout`. The runtime also bounds it by the call's wall-time limit.
    fn await_ready<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<Readiness>>;
    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>>;
    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<()>>;
    /// Resolves when the container runs and `probe` passes;
    /// `CapError::Unavailable` if it exits meanwhile, `CapError::Timeout`
    /// after `timeout`.
    fn await_probe<'a>(
        &'a self,
        id: &'a str,
        probe: &'a Probe,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>>;
    /// Exit code of a container that is not running; `None` while it runs.
    fn exit_code<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<Option<i32>>>;
    /// Resolves with the exit code once the container is not running;
    /// `CapError::Timeout` after `timeout`.
    fn await_exit<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, CapResult<i32>>;
}

/// Host-collected metrics and the plugin's own Prometheus metrics. The
/// runtime validates metric names, kinds and label counts against the
/// plugin's registrations before calling `record`.
pub trait MetricsHost: Send + Sync {
    fn container_stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CapResult<ContainerStats>>;
    /// Stats of `containers` (those the plugin may see, as the runtime
    /// just listed them: running ones need a sample, the others' state is
    /// known), running or not; one that vanished meanwhile is left out.
    fn all_container_stats<'a>(
        &'a self,
        containers: &'a [Container],
    ) -> BoxFuture<'a, CapResult<Vec<ContainerStats>>>;
    /// A new metric of `plugin`, to export as
    /// `wakedock_plugin_{plugin}_{desc.name}` (plugin names use `-`; map to
    /// `_`).
    fn register(&self, plugin: &str, desc: &MetricDesc) -> CapResult<()>;
    /// Applies one update: add for counters, set for gauges, observe for
    /// histograms.
    fn record(
        &self,
        plugin: &str,
        name: &str,
        kind: MetricKind,
        label_values: &[String],
        value: f64,
    ) -> CapResult<()>;
}

/// Per-plugin key-value storage.
pub trait StorageHost: Send + Sync {
    fn get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, CapResult<Option<Vec<u8>>>>;
    /// Must fail with `CapError::QuotaExceeded`, atomically, if the plugin's
    /// total (sum of key + value lengths, with this write applied) would
    /// exceed `quota_bytes`.
    fn set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
        quota_bytes: u64,
    ) -> BoxFuture<'a, CapResult<()>>;
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, CapResult<bool>>;
    /// Keys starting with `prefix`, sorted.
    fn list_keys<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, CapResult<Vec<String>>>;
    /// Atomically: if the value under `key` is `expected` (`None` = absent),
    /// store `new` (`None` = delete) and answer true; else change nothing
    /// and answer false. The compare and the write must be one atomic step
    /// against concurrent calls (other instances of the plugin). A write
    /// that would take the plugin past `quota_bytes` fails with
    /// `CapError::QuotaExceeded` and changes nothing. (API 0.1.2.)
    fn compare_and_swap<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        quota_bytes: u64,
    ) -> BoxFuture<'a, CapResult<bool>>;
}

/// The stacks directory (API 0.1.3). The runtime has checked every path:
/// relative, `/`-separated, no `..`, `.` or empty segments, no backslash or
/// NUL (`""` is the directory itself). An implementation must still refuse
/// to follow a symbolic link out of the directory (`PermissionDenied`).
pub trait FilesHost: Send + Sync {
    fn list<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<Vec<FileEntry>>>;
    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<FileEntry>>;
    /// `CapError::Invalid` for a file larger than `max_bytes`.
    fn read<'a>(&'a self, path: &'a str, max_bytes: u64) -> BoxFuture<'a, CapResult<Vec<u8>>>;
    /// Atomic replace (write a temporary file, then rename it).
    fn write<'a>(&'a self, path: &'a str, content: Vec<u8>) -> BoxFuture<'a, CapResult<()>>;
    fn create_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<()>>;
    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, CapResult<bool>>;
    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, CapResult<()>>;
}

/// Result of a compose call.
pub type ComposeResult<T> = Result<T, ComposeError>;

/// Who asks for a compose action: the plugin, and the user of the HTTP call
/// it serves (if any), for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeCaller {
    pub plugin: String,
    pub user: Option<String>,
}

/// Docker Compose projects in the stacks directory (API 0.1.3). The runtime
/// has checked permissions and the syntax of project names, service names
/// and file paths; the implementation confines every project to its folder
/// in the stacks directory, runs one action per project at a time and
/// bounds each in time.
pub trait ComposeHost: Send + Sync {
    /// Starts an action in the background; its id, or `Conflict`.
    fn start_action<'a>(
        &'a self,
        caller: &'a ComposeCaller,
        project: &'a str,
        action: ComposeAction,
    ) -> BoxFuture<'a, ComposeResult<String>>;
    /// The action's status once it ends, or after `timeout` (still running).
    fn await_action<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, ComposeResult<ActionStatus>>;
    fn last_action<'a>(
        &'a self,
        project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<Option<ActionStatus>>>;
    /// `docker compose config` as JSON (files and env file replace the
    /// defaults when given).
    fn config<'a>(
        &'a self,
        project: &'a str,
        files: &'a [String],
        env_file: Option<&'a str>,
    ) -> BoxFuture<'a, ComposeResult<String>>;
    fn ps<'a>(&'a self, project: &'a str) -> BoxFuture<'a, ComposeResult<Vec<ComposeContainer>>>;
    fn logs<'a>(
        &'a self,
        project: &'a str,
        services: &'a [String],
        tail: u32,
    ) -> BoxFuture<'a, ComposeResult<Vec<String>>>;
    /// Moves a project's folder (from its containers' labels) into the
    /// stacks directory.
    fn adopt<'a>(
        &'a self,
        caller: &'a ComposeCaller,
        project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<()>>;
}

/// Outbound HTTP. Called only for URLs whose host is in the plugin's
/// allowlist and within its rate limit. `url.host` has been checked; an
/// implementation must send to exactly `url` and must not follow redirects
/// to other hosts.
pub trait HttpOutbound: Send + Sync {
    fn send<'a>(
        &'a self,
        plugin: &'a str,
        url: &'a url::Url,
        request: OutboundRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<OutboundResponse>>;
}

/// Followers of containers' logs (API 0.1.4). The runtime has checked
/// every subscription (its name, its label terms together with the grant's
/// selector, its pattern, the plugin's bounds) and keeps the table; an
/// implementation reads the logs of the running containers some
/// subscription [selects](crate::LogFollow::selects), and of those that
/// start later, from the time of the follow (or of the start) on, never
/// their history; hands every line a subscription
/// [wants](crate::LogFollow::wants) to [`LogDelivery::deliver`]; and stops
/// following containers no subscription covers any more. It must bound
/// what it follows and what it buffers.
pub trait ContainerLogsHost: Send + Sync {
    /// Replaces everything `plugin` follows (empty: nothing, the plugin
    /// was unloaded). Returns at once; following starts in the background.
    fn set_follows(&self, plugin: &str, follows: Vec<Arc<LogFollow>>, to: LogDelivery);
}

/// Outbound e-mail (API 0.1.4). Called only for a server whose host is
/// in the plugin's `smtp` allowlist, within its rate limit, with a mail
/// the runtime has checked (recipients present and bounded, subject one
/// line, body bounded, credentials only over TLS). The implementation
/// connects to exactly `mail.server`, builds the RFC 5322 message, and
/// answers `Unavailable` with the server's message (never the password)
/// when the server refuses the login, the sender or a recipient, or
/// cannot be reached.
pub trait SmtpHost: Send + Sync {
    fn send<'a>(
        &'a self,
        plugin: &'a str,
        mail: Mail,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>>;
}

/// The host's event bus.
pub trait EventSink: Send + Sync {
    /// `payload` has been checked to be JSON.
    fn publish(&self, plugin: &str, topic: &str, payload: &str) -> CapResult<()>;
}

/// Plugin log lines (already truncated to 4 KiB).
pub trait LogSink: Send + Sync {
    fn log(&self, plugin: &str, level: LogLevel, message: &str);
}

/// Where permission refusals are recorded (deduplicated by the runtime:
/// see [`AuditEntry::repeated`]).
pub trait AuditSink: Send + Sync {
    fn record(&self, entry: AuditEntry);
}

/// One refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub plugin: String,
    /// WIT interface, e.g. `containers`.
    pub capability: &'static str,
    /// Function, e.g. `stop`.
    pub action: &'static str,
    /// Container id, host, topic...
    pub target: String,
    pub reason: String,
    pub at: SystemTime,
    /// Identical refusals (same plugin, capability, function, target and
    /// reason) left out since this one was last recorded: each is recorded
    /// at most once per [`RuntimeConfig::denial_report_interval`](crate::RuntimeConfig).
    pub repeated: u64,
}

/// The authenticated caller of a plugin HTTP route, resolved by the host
/// before `handle_http`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthContext {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    /// Permissions the caller holds, e.g. `containers:write`.
    pub permissions: Vec<String>,
}

/// All capabilities, handed to [`crate::PluginRuntime::new`].
#[derive(Clone)]
pub struct HostCapabilities {
    pub containers: Arc<dyn ContainerHost>,
    pub metrics: Arc<dyn MetricsHost>,
    pub storage: Arc<dyn StorageHost>,
    pub http: Arc<dyn HttpOutbound>,
    pub events: Arc<dyn EventSink>,
    pub log: Arc<dyn LogSink>,
    pub audit: Arc<dyn AuditSink>,
    /// API 0.1.3.
    pub files: Arc<dyn FilesHost>,
    /// API 0.1.3.
    pub compose: Arc<dyn ComposeHost>,
    /// API 0.1.4.
    pub logs: Arc<dyn ContainerLogsHost>,
    pub smtp: Arc<dyn SmtpHost>,
}

/// A [`LogSink`] writing to `tracing` with the plugin name as a field.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLog;

impl LogSink for TracingLog {
    fn log(&self, plugin: &str, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// An [`AuditSink`] writing refusals to `tracing` at warn level.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, e: AuditEntry) {
        tracing::warn!(
            plugin = %e.plugin,
            capability = e.capability,
            action = e.action,
            target = %e.target,
            repeated = e.repeated,
            "plugin permission denied: {}",
            e.reason
        );
    }
}
