//! The container capability: the only place in WakeDock that talks to the
//! Docker engine.
//!
//! The engine may be absent when WakeDock starts and may restart while it
//! runs. [`DockerEngine`] therefore holds an optional client, connects
//! lazily, and a supervisor task keeps the engine's event stream open,
//! reconnecting with backoff; `/health` asks the engine directly.

mod exits;
pub mod intents;
pub mod model;
mod policies;
pub mod requests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StartContainerOptions, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, RwLock};
use tokio_util::sync::CancellationToken;

pub use model::*;
pub use requests::{EngineOp, EngineRequests};

/// Longest stop timeout accepted (from the API's `?timeout=`, a plugin's
/// `timeout-secs` or `docker.stop_timeout`): one hour. Docker reads a
/// negative value as "wait forever", which a bigger number would become.
pub const MAX_STOP_TIMEOUT_SECS: u32 = 3600;

/// Time allowed on top of a stop timeout for the engine to kill the
/// container and answer.
const STOP_MARGIN: Duration = Duration::from_secs(30);

/// How a container operation failed, in terms the API can answer with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    /// The engine did not answer within the request's time limit. The
    /// connection is fine (a slow stop, a wedged container): the engine is
    /// not marked down for it.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Engine(String),
}

impl EngineError {
    fn from_bollard(e: BollardError, target: &str) -> Self {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => Self::NotFound(target.to_string()),
                409 => Self::Conflict(message),
                400 => Self::BadRequest(message),
                _ => Self::Engine(format!("{status_code}: {message}")),
            },
            BollardError::RequestTimeoutError => {
                Self::Timeout(format!("{target}: the engine did not answer in time"))
            }
            BollardError::JsonDataError { .. }
            | BollardError::JsonSerdeError { .. }
            | BollardError::StrParseError { .. }
            | BollardError::DockerStreamError { .. }
            | BollardError::DockerContainerWaitError { .. } => Self::Engine(e.to_string()),
            // Socket missing, connection refused or reset: the engine is not
            // there (or went away mid-request).
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Result of a start/stop/restart.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ActionOutcome {
    pub id: String,
    pub action: String,
    /// False when the container was already in the requested state.
    pub changed: bool,
}

impl ActionOutcome {
    fn unchanged(id: String, action: &str) -> Self {
        Self {
            id,
            action: action.to_string(),
            changed: false,
        }
    }
}

/// The Docker engine connection, shared by the whole host.
pub struct DockerEngine {
    socket: PathBuf,
    client: RwLock<Option<Docker>>,
    up: AtomicBool,
    events: broadcast::Sender<ContainerEvent>,
    stop_timeout: Duration,
    /// Time limit of one request (a stop gets its timeout plus a margin).
    request_timeout: Duration,
    requests: EngineRequests,
    /// Exit codes announced by `die` events (see [`exits`]).
    exits: exits::ExitCodes,
    /// Stops WakeDock asked for (see [`intents`]).
    pub stops: intents::StopIntents,
    /// Restart policies from the inspects the host made (see [`policies`]).
    pub policies: policies::RestartPolicies,
    /// Whether the engine is up, for those who wait for a change.
    up_watch: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for DockerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerEngine")
            .field("socket", &self.socket)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

/// Timeout on each engine request; a wedged engine must not wedge the API.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl DockerEngine {
    pub fn new(socket: PathBuf, stop_timeout: Duration) -> Arc<Self> {
        Self::with_request_timeout(socket, stop_timeout, REQUEST_TIMEOUT)
    }

    /// Like [`DockerEngine::new`] with another per-request time limit.
    pub fn with_request_timeout(
        socket: PathBuf,
        stop_timeout: Duration,
        request_timeout: Duration,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            socket,
            client: RwLock::new(None),
            up: AtomicBool::new(false),
            events,
            stop_timeout,
            request_timeout: request_timeout.max(Duration::from_secs(1)),
            requests: EngineRequests::default(),
            exits: exits::ExitCodes::default(),
            stops: intents::StopIntents::default(),
            policies: policies::RestartPolicies::default(),
            up_watch: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Engine requests sent so far, by operation.
    pub fn requests(&self) -> &EngineRequests {
        &self.requests
    }

    /// Changes of [`DockerEngine::is_up`].
    pub fn watch_up(&self) -> tokio::sync::watch::Receiver<bool> {
        self.up_watch.subscribe()
    }

    /// Notes that `by` is about to stop container `id` (full id, short id
    /// or name; see [`intents`]).
    pub fn expect_stop(&self, id: &str, by: &str) {
        self.stops.expect(id, by, crate::db::now_ms() as u64);
    }

    /// What the bare `die` event lacks: whether the OOM killer ended the
    /// container, and its restart policy's name.
    pub async fn exit_details(&self, id: &str) -> Result<(bool, String), EngineError> {
        let info = self.inspect_raw(id).await?;
        let oom = info
            .state
            .as_ref()
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        let policy = self
            .policies
            .get(info.id.as_deref().unwrap_or(id))
            .unwrap_or_default();
        Ok((oom, policy))
    }

    /// [`DockerEngine::stop`] on behalf of `by` (`user:alice`): the stop
    /// is noted as intended (see [`intents`]).
    pub async fn stop_by(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
        by: &str,
    ) -> Result<ActionOutcome, EngineError> {
        let id = self.note_intent(id_or_name, by).await?;
        self.stop(&id, timeout).await
    }

    /// [`DockerEngine::restart`] on behalf of `by`.
    pub async fn restart_by(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
        by: &str,
    ) -> Result<ActionOutcome, EngineError> {
        let id = self.note_intent(id_or_name, by).await?;
        self.restart(&id, timeout).await
    }

    /// Notes `by`'s stop of a running container; its full id.
    async fn note_intent(&self, id_or_name: &str, by: &str) -> Result<String, EngineError> {
        let before = self.inspect(id_or_name).await?;
        if before.running {
            self.expect_stop(&before.id, by);
        }
        Ok(before.id)
    }

    /// Whether the last contact with the engine succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Container events as they happen (only while the engine is up).
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.events.subscribe()
    }

    async fn connect(&self) -> Result<Docker, EngineError> {
        let path = self.socket.to_string_lossy().to_string();
        let docker = Docker::connect_with_unix(
            &path,
            self.request_timeout.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| EngineError::Unavailable(format!("{path}: {e}")))?;
        // Older engines (Debian's 20.10 speaks API 1.41) refuse newer API
        // paths, so agree on a version before the first real request.
        self.requests.count(EngineOp::Version);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::Unavailable(format!("{path}: {e}")))?;
        Ok(docker)
    }

    /// A connected client, connecting now if there is none yet.
    async fn client(&self) -> Result<Docker, EngineError> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        let docker = self.connect().await.inspect_err(|_| self.mark(false))?;
        *self.client.write().await = Some(docker.clone());
        self.mark(true);
        Ok(docker)
    }

    fn mark(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        self.up_watch
            .send_if_modified(|v| std::mem::replace(v, up) != up);
        if was != up {
            if up {
                tracing::info!(socket = %self.socket.display(), "Docker engine is up");
            } else {
                tracing::warn!(socket = %self.socket.display(), "Docker engine is down");
            }
        }
    }

    /// Notes an error: connection-level failures mark the engine down and
    /// drop the client so the next call renegotiates. A request that ran
    /// out of time did reach the engine: it stays up.
    async fn observe<T>(&self, r: Result<T, BollardError>, target: &str) -> Result<T, EngineError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = EngineError::from_bollard(e, target);
                if matches!(e, EngineError::Unavailable(_)) {
                    self.mark(false);
                    *self.client.write().await = None;
                }
                Err(e)
            }
        }
    }

    /// Asks the engine whether it is alive, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), EngineError> {
        let fut = async {
            let c = self.client().await?;
            self.requests.count(EngineOp::Ping);
            let r = c.ping().await;
            self.observe(r, "engine").await.map(|_| ())
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => {
                if r.is_ok() {
                    self.mark(true);
                }
                r
            }
            Err(_) => {
                self.mark(false);
                Err(EngineError::Unavailable("ping timed out".into()))
            }
        }
    }

    /// All containers (running or not), optionally filtered by labels
    /// (`key` or `key=value`).
    pub async fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, EngineError> {
        let c = self.client().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if !labels.is_empty() {
            filters.insert("label".into(), labels.to_vec());
        }
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.requests.count(EngineOp::List);
        let r = c.list_containers(Some(opts)).await;
        let list = self.observe(r, "containers").await?;
        Ok(list.into_iter().map(summary_from).collect())
    }

    pub async fn inspect(&self, id_or_name: &str) -> Result<ContainerDetails, EngineError> {
        Ok(details_from(self.inspect_raw(id_or_name).await?))
    }

    /// One inspect request, counted; its restart policy is kept.
    async fn inspect_raw(
        &self,
        id_or_name: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, EngineError> {
        let c = self.client().await?;
        self.requests.count(EngineOp::Inspect);
        let r = c
            .inspect_container(id_or_name, None::<InspectContainerOptions>)
            .await;
        let info = self.observe(r, id_or_name).await?;
        self.learn_policy(&info);
        Ok(info)
    }

    /// Every inspect's restart policy is kept (see [`policies`]).
    fn learn_policy(&self, info: &bollard::models::ContainerInspectResponse) {
        let Some(id) = info.id.as_deref() else { return };
        let policy = info
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default();
        self.policies.learn(id, &policy);
    }

    /// The exit code of a container that is not running (`None` while it
    /// runs or is paused). Free when its `die` event was seen and nothing
    /// happened to it since; else one inspect.
    pub async fn exit_code(&self, id_or_name: &str) -> Result<Option<i64>, EngineError> {
        if let Some(code) = self.exits.get(id_or_name) {
            return Ok(Some(code));
        }
        let d = self.inspect(id_or_name).await?;
        Ok(match d.running || d.state == "paused" {
            true => None,
            false => d.exit_code,
        })
    }

    /// Starts a container with one engine request; false when it was
    /// already running (the engine answers 304).
    ///
    /// A connection that breaks mid-request (the engine under load resets
    /// one now and then) is retried once on a fresh connection: a start is
    /// idempotent (the engine answers 304 when it is already running), and
    /// a wake must not fail for every held request over one reset.
    pub async fn start_container(&self, id_or_name: &str) -> Result<bool, EngineError> {
        match self.start_once(id_or_name).await {
            Err(EngineError::Unavailable(first)) => {
                tracing::debug!(container = id_or_name, error = %first, "start: connection lost, retrying once");
                self.start_once(id_or_name).await
            }
            r => r,
        }
    }

    async fn start_once(&self, id_or_name: &str) -> Result<bool, EngineError> {
        let c = self.client().await?;
        self.requests.count(EngineOp::Start);
        let r = c
            .start_container(id_or_name, None::<StartContainerOptions>)
            .await;
        self.not_modified_is_ok(r, id_or_name).await
    }

    /// Stops a container with one engine request, letting the engine kill
    /// it after `timeout` (default: `docker.stop_timeout`, at most
    /// [`MAX_STOP_TIMEOUT_SECS`]). The request may take that long, so its
    /// own time limit is the stop timeout plus a margin.
    pub async fn stop_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<(), EngineError> {
        let (t, c) = self.client_for_stop(timeout).await?;
        let opts = StopContainerOptionsBuilder::default().t(t).build();
        self.requests.count(EngineOp::Stop);
        let r = c.stop_container(id_or_name, Some(opts)).await;
        self.not_modified_is_ok(r, id_or_name).await.map(|_| ())
    }

    /// Restarts a container with one engine request (see
    /// [`DockerEngine::stop_container`] for `timeout`).
    pub async fn restart_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<(), EngineError> {
        let (t, c) = self.client_for_stop(timeout).await?;
        let opts = RestartContainerOptionsBuilder::default().t(t).build();
        self.requests.count(EngineOp::Restart);
        let r = c.restart_container(id_or_name, Some(opts)).await;
        self.observe(r, id_or_name).await
    }

    /// The stop timeout in seconds (checked against the maximum) and a
    /// client whose request limit outlasts it.
    async fn client_for_stop(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(i32, Docker), EngineError> {
        let t = timeout.unwrap_or(self.stop_timeout);
        let secs = check_stop_timeout(t)?;
        let c = self.client().await?;
        let needed = Duration::from_secs(u64::from(secs)) + STOP_MARGIN;
        let c = if needed > self.request_timeout {
            c.with_timeout(needed)
        } else {
            c
        };
        Ok((secs as i32, c))
    }

    /// Freezes a running container's processes (one engine request).
    pub async fn pause_container(&self, id_or_name: &str) -> Result<(), EngineError> {
        let c = self.client().await?;
        self.requests.count(EngineOp::Pause);
        let r = c.pause_container(id_or_name).await;
        self.observe(r, id_or_name).await
    }

    /// Thaws a paused container (one engine request).
    pub async fn unpause_container(&self, id_or_name: &str) -> Result<(), EngineError> {
        let c = self.client().await?;
        self.requests.count(EngineOp::Unpause);
        let r = c.unpause_container(id_or_name).await;
        self.observe(r, id_or_name).await
    }

    /// Starts, for the API: resolves the container first so the outcome
    /// names its full id.
    pub async fn start(&self, id_or_name: &str) -> Result<ActionOutcome, EngineError> {
        let before = self.inspect(id_or_name).await?;
        if before.running {
            return Ok(ActionOutcome::unchanged(before.id, "start"));
        }
        let changed = self.start_container(&before.id).await?;
        Ok(ActionOutcome {
            id: before.id,
            action: "start".into(),
            changed,
        })
    }

    /// Stops, for the API, letting the engine kill the container after
    /// `timeout` (default: `docker.stop_timeout`).
    pub async fn stop(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<ActionOutcome, EngineError> {
        if let Some(t) = timeout {
            check_stop_timeout(t)?;
        }
        // Docker 20.10 answers a stop of a stopped container with success,
        // newer engines with 304: ask first so both report "no change".
        let before = self.inspect(id_or_name).await?;
        if !before.running {
            return Ok(ActionOutcome::unchanged(before.id, "stop"));
        }
        self.stop_container(&before.id, timeout).await?;
        Ok(ActionOutcome {
            id: before.id,
            action: "stop".into(),
            changed: true,
        })
    }

    pub async fn restart(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<ActionOutcome, EngineError> {
        if let Some(t) = timeout {
            check_stop_timeout(t)?;
        }
        let before = self.inspect(id_or_name).await?;
        self.restart_container(&before.id, timeout).await?;
        Ok(ActionOutcome {
            id: before.id,
            action: "restart".into(),
            changed: true,
        })
    }

    /// Freezes a running container's processes (cgroup freezer): memory
    /// stays, waking is near-instant.
    pub async fn pause(&self, id_or_name: &str) -> Result<ActionOutcome, EngineError> {
        self.set_paused(id_or_name, true).await
    }

    pub async fn unpause(&self, id_or_name: &str) -> Result<ActionOutcome, EngineError> {
        self.set_paused(id_or_name, false).await
    }

    async fn set_paused(
        &self,
        id_or_name: &str,
        paused: bool,
    ) -> Result<ActionOutcome, EngineError> {
        let action = if paused { "pause" } else { "unpause" };
        let before = self.inspect(id_or_name).await?;
        if (before.state == "paused") == paused {
            return Ok(ActionOutcome::unchanged(before.id, action));
        }
        if paused {
            self.pause_container(&before.id).await?;
        } else {
            self.unpause_container(&before.id).await?;
        }
        Ok(ActionOutcome {
            id: before.id,
            action: action.into(),
            changed: true,
        })
    }

    /// Removes a container; `force` kills a running one first.
    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<(), EngineError> {
        let c = self.client().await?;
        let opts = RemoveContainerOptionsBuilder::default()
            .force(force)
            .build();
        self.requests.count(EngineOp::Remove);
        let r = c.remove_container(id_or_name, Some(opts)).await;
        self.observe(r, id_or_name).await
    }

    /// Docker answers 304 when the container already is in the asked state;
    /// that is success without change, not an error.
    async fn not_modified_is_ok(
        &self,
        r: Result<(), BollardError>,
        target: &str,
    ) -> Result<bool, EngineError> {
        match r {
            Ok(()) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(false),
            Err(e) => self.observe(Err(e), target).await,
        }
    }

    /// Log lines: the last `tail` lines, then (with `follow`) new ones as
    /// they come until the container stops or the receiver goes away.
    pub async fn logs(
        &self,
        id_or_name: &str,
        tail: Option<u32>,
        follow: bool,
        timestamps: bool,
    ) -> Result<impl Stream<Item = Result<LogLine, EngineError>> + Send + 'static, EngineError>
    {
        let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .timestamps(timestamps)
            .tail(&tail)
            .build();
        self.log_stream(id_or_name, opts).await
    }

    /// Lines written since `since_secs` (Unix seconds: the engine counts
    /// in whole seconds, so a caller wanting a finer cut filters on the
    /// timestamp each line starts with), then new ones as they come, until
    /// the container stops or the receiver goes away.
    pub async fn follow_logs_since(
        &self,
        id_or_name: &str,
        since_secs: u64,
    ) -> Result<impl Stream<Item = Result<LogLine, EngineError>> + Send + 'static, EngineError>
    {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(i32::try_from(since_secs).unwrap_or(i32::MAX))
            .build();
        self.log_stream(id_or_name, opts).await
    }

    async fn log_stream(
        &self,
        id_or_name: &str,
        opts: bollard::query_parameters::LogsOptions,
    ) -> Result<impl Stream<Item = Result<LogLine, EngineError>> + Send + 'static, EngineError>
    {
        // Inspect first so an unknown container is a clean 404 before any
        // streaming response has started.
        self.inspect(id_or_name).await?;
        let c = self.client().await?;
        let target = id_or_name.to_string();
        self.requests.count(EngineOp::Logs);
        Ok(c.logs(id_or_name, Some(opts)).map(move |r| match r {
            Ok(out) => {
                let stream = match &out {
                    bollard::container::LogOutput::StdErr { .. } => "stderr",
                    _ => "stdout",
                };
                let text = String::from_utf8_lossy(out.as_ref());
                Ok(LogLine {
                    stream: stream.to_string(),
                    line: text.trim_end_matches(['\n', '\r']).to_string(),
                })
            }
            Err(e) => Err(EngineError::from_bollard(e, &target)),
        }))
    }

    /// One resource sample. The engine measures CPU over about a second, so
    /// this takes that long.
    pub async fn stats(&self, id_or_name: &str) -> Result<ContainerStats, EngineError> {
        Ok(self.stats_sample(id_or_name, false).await?.0)
    }

    /// One resource sample and the CPU counters it was computed from. With
    /// `one_shot` the engine answers at its next collection (up to a
    /// second; requests for many containers share it) without measuring CPU
    /// itself: the caller computes CPU from two samples' counters
    /// ([`CpuCounters::percent_since`]), and `cpu_percent` is 0.
    pub async fn stats_sample(
        &self,
        id_or_name: &str,
        one_shot: bool,
    ) -> Result<(ContainerStats, CpuCounters), EngineError> {
        let c = self.client().await?;
        let opts = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(one_shot)
            .build();
        self.requests.count(EngineOp::Stats);
        let mut s = c.stats(id_or_name, Some(opts));
        let first = s.next().await;
        let sample = match first {
            Some(r) => self.observe(r, id_or_name).await?,
            None => return Err(EngineError::Engine("the engine sent no stats".into())),
        };
        let counters = CpuCounters::of(&sample.cpu_stats.clone().unwrap_or_default());
        Ok((stats_from(id_or_name, sample), counters))
    }

    /// Runs the container's own healthcheck command once, now (an exec),
    /// and says whether it passed. Docker runs a healthcheck only once per
    /// `interval`, so waiting for its status adds up to an interval to
    /// every wake; running the same command on demand keeps the meaning of
    /// "healthy" without the wait.
    pub async fn run_healthcheck(
        &self,
        id: &str,
        test: &[String],
        timeout: Duration,
    ) -> Result<bool, EngineError> {
        let cmd: Vec<String> = match test.first().map(String::as_str) {
            Some("CMD") => test[1..].to_vec(),
            Some("CMD-SHELL") => vec![
                "/bin/sh".into(),
                "-c".into(),
                test.get(1).cloned().unwrap_or_default(),
            ],
            _ => Vec::new(),
        };
        if cmd.is_empty() {
            return Ok(false);
        }
        let c = self.client().await?;
        let config = bollard::models::ExecConfig {
            cmd: Some(cmd),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        self.requests.count(EngineOp::ExecCreate);
        let r = c.create_exec(id, config).await;
        let exec = self.observe(r, id).await?;
        let run = async {
            self.requests.count(EngineOp::ExecStart);
            if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                c.start_exec(&exec.id, None).await?
            {
                while output.next().await.is_some() {}
            }
            self.requests.count(EngineOp::ExecInspect);
            c.inspect_exec(&exec.id).await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(info)) => Ok(info.running != Some(true) && info.exit_code == Some(0)),
            // The container stopped under us, or the command cannot run:
            // not healthy (yet); engine-level failures still surface.
            Ok(Err(e)) => match EngineError::from_bollard(e, id) {
                EngineError::Unavailable(m) => Err(EngineError::Unavailable(m)),
                _ => Ok(false),
            },
            Err(_) => Ok(false),
        }
    }

    /// Keeps the event stream open for as long as `shutdown` is not
    /// cancelled, reconnecting with backoff (0.5 s doubling to 10 s) when the
    /// engine goes away.
    pub async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.pump_events() => r,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "Docker event stream ended");
            }
            self.mark(false);
            *self.client.write().await = None;
            // A stream that ran for a while means the engine was healthy:
            // start the backoff again from the bottom.
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(500);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn pump_events(&self) -> Result<(), EngineError> {
        let c = self.client().await?;
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.requests.count(EngineOp::Events);
        let mut stream = c.events(Some(opts));
        self.mark(true);
        // Whatever happened while no stream was open is unknown.
        self.exits.forget_all();
        self.policies.forget_all();
        let ended = self.pump(&mut stream).await;
        self.exits.forget_all();
        self.policies.forget_all();
        ended
    }

    async fn pump(
        &self,
        stream: &mut (impl Stream<Item = Result<bollard::models::EventMessage, BollardError>> + Unpin),
    ) -> Result<(), EngineError> {
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => return self.observe(Err(e), "events").await,
            };
            let Some(actor) = ev.actor else { continue };
            let attrs: BTreeMap<String, String> =
                actor.attributes.unwrap_or_default().into_iter().collect();
            let event = ContainerEvent {
                id: actor.id.unwrap_or_default(),
                name: attrs.get("name").cloned(),
                action: ev.action.unwrap_or_default(),
                time_nano: ev.time_nano.unwrap_or_default(),
                labels: attrs
                    .into_iter()
                    .filter(|(k, _)| k != "name" && k != "image")
                    .collect(),
            };
            self.policies.observe(&event.id, &event.action);
            self.exits.observe(
                &event.id,
                event.name.as_deref(),
                &event.action,
                event.labels.get("exitCode").map(String::as_str),
            );
            // No receivers is fine: nobody is listening yet.
            let _ = self.events.send(event);
        }
        Err(EngineError::Unavailable("event stream closed".into()))
    }
}

/// The stop timeout in whole seconds, refused above the maximum.
pub fn check_stop_timeout(t: Duration) -> Result<u32, EngineError> {
    match u32::try_from(t.as_secs()) {
        Ok(secs) if secs <= MAX_STOP_TIMEOUT_SECS => Ok(secs),
        _ => Err(EngineError::BadRequest(format!(
            "a stop timeout of {} s is above the maximum of {MAX_STOP_TIMEOUT_SECS} s",
            t.as_secs()
        ))),
    }
}

fn health_from_status(status: &str) -> &'static str {
    if status.contains("(healthy)") {
        "healthy"
    } else if status.contains("(unhealthy)") {
        "unhealthy"
    } else if status.contains("(health: starting)") {
        "starting"
    } else {
        "none"
    }
}

fn ports_from(ports: Option<Vec<bollard::models::Port>>) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| PortMapping {
            private_port: p.private_port,
            public_port: p.public_port,
            ip: p.ip,
            protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
        })
        .collect();
    out.sort_by_key(|p| (p.private_port, p.public_port, p.ip.clone()));
    out.dedup();
    out
}

fn summary_from(c: bollard::models::ContainerSummary) -> ContainerSummary {
    let status = c.status.unwrap_or_default();
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        health: health_from_status(&status).to_string(),
        status,
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        ports: ports_from(c.ports),
        created: c.created.unwrap_or_default(),
    }
}

fn details_from(i: bollard::models::ContainerInspectResponse) -> ContainerDetails {
    let state = i.state.unwrap_or_default();
    let config = i.config.unwrap_or_default();
    let mut ports = Vec::new();
    let network = i.network_settings.unwrap_or_default();
    let ip_address = network
        .networks
        .as_ref()
        .and_then(|n| {
            let mut names: Vec<&String> = n.keys().collect();
            names.sort();
            names
                .into_iter()
                .filter_map(|k| n[k].ip_address.clone())
                .find(|ip| !ip.is_empty())
        })
        .or(network.ip_address.clone().filter(|ip| !ip.is_empty()));
    if let Some(map) = network.ports {
        for (key, bindings) in map {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(private_port) = port.parse::<u16>() else {
                continue;
            };
            match bindings {
                Some(bs) if !bs.is_empty() => {
                    for b in bs {
                        ports.push(PortMapping {
                            private_port,
                            public_port: b.host_port.and_then(|p| p.parse().ok()),
                            ip: b.host_ip,
                            protocol: proto.to_string(),
                        })
                    }
                }
                _ => ports.push(PortMapping {
                    private_port,
                    public_port: None,
                    ip: None,
                    protocol: proto.to_string(),
                }),
            }
        }
    }
    ports.sort_by_key(|p| (p.private_port, p.public_port, p.ip.clone()));
    let healthcheck_test = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.clone())
        .filter(|t| !t.is_empty() && t.first().map(String::as_str) != Some("NONE"));
    let has_healthcheck = healthcheck_test.is_some();
    ContainerDetails {
        id: i.id.unwrap_or_default(),
        name: i
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.clone().unwrap_or_default(),
        image_id: i.image.unwrap_or_default(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into()),
        running: state.running.unwrap_or(false),
        exit_code: state.exit_code,
        started_at: state.started_at,
        finished_at: state.finished_at,
        restart_count: i.restart_count.unwrap_or(0),
        created: i.created,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        ports,
        mounts: i
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| MountInfo {
                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
                source: m.source,
                destination: m.destination.unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
            })
            .collect(),
        env_count: config.env.map(|e| e.len()).unwrap_or(0),
        command: config
            .entrypoint
            .unwrap_or_default()
            .into_iter()
            .chain(config.cmd.unwrap_or_default())
            .collect(),
        has_healthcheck,
        healthcheck_test,
        ip_address,
    }
}

/// A container's CPU counters at one instant, as the engine's stats give
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuCounters {
    /// CPU time the container used, in nanoseconds.
    pub container_ns: u64,
    /// CPU time the whole system used, in nanoseconds (0 if unknown).
    pub system_ns: u64,
    pub online_cpus: f64,
}

impl CpuCounters {
    fn of(c: &bollard::models::ContainerCpuStats) -> Self {
        let usage = c.cpu_usage.as_ref();
        CpuCounters {
            container_ns: usage.and_then(|u| u.total_usage).unwrap_or(0),
            system_ns: c.system_cpu_usage.unwrap_or(0),
            online_cpus: c.online_cpus.map(f64::from).unwrap_or_else(|| {
                usage
                    .and_then(|u| u.percpu_usage.as_ref())
                    .map(|p| p.len().max(1) as f64)
                    .unwrap_or(1.0)
            }),
        }
    }

    /// Percent of one CPU (200 = two full cores) the container used
    /// between `earlier` and `self`, computed as `docker stats` does; 0
    /// when there is no earlier sample (a one-shot sample's empty
    /// `precpu_stats`) or the counters did not move (or went back: a
    /// restart).
    pub fn percent_since(&self, earlier: &CpuCounters) -> f64 {
        if earlier.system_ns == 0 {
            return 0.0;
        }
        let cpu_delta = self.container_ns.saturating_sub(earlier.container_ns) as f64;
        let system_delta = self.system_ns.saturating_sub(earlier.system_ns) as f64;
        if system_delta > 0.0 && cpu_delta > 0.0 {
            let percent = cpu_delta / system_delta * self.online_cpus * 100.0;
            (percent * 100.0).round() / 100.0
        } else {
            0.0
        }
    }
}

fn stats_from(id: &str, s: bollard::models::ContainerStatsResponse) -> ContainerStats {
    let cpu = CpuCounters::of(&s.cpu_stats.unwrap_or_default());
    let pre = CpuCounters::of(&s.precpu_stats.unwrap_or_default());
    let cpu_percent = cpu.percent_since(&pre);
    let mem = s.memory_stats.unwrap_or_default();
    // Like `docker stats`: page cache the kernel can drop is not "used".
    let cache = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("total_inactive_file")
                .or_else(|| m.get("inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    let used = mem.usage.unwrap_or(0).saturating_sub(cache);
    let limit = mem.limit.unwrap_or(0);
    let (rx, tx) = s
        .networks
        .unwrap_or_default()
        .values()
        .fold((0u64, 0u64), |(rx, tx), n| {
            (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
        });
    ContainerStats {
        id: s.id.unwrap_or_else(|| id.to_string()),
        cpu_percent,
        memory_bytes: used,
        memory_limit_bytes: limit,
        memory_percent: if limit > 0 {
            ((used as f64 / limit as f64) * 10000.0).round() / 100.0
        } else {
            0.0
        },
        network_rx_bytes: rx,
        network_tx_bytes: tx,
        pids: s.pids_stats.and_then(|p| p.current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_share_of_the_system_between_two_samples() {
        let at = |container_ns, system_ns| CpuCounters {
            container_ns,
            system_ns,
            online_cpus: 2.0,
        };
        // 0.5 s of CPU while the 2-core system ran 2 s: a quarter of the
        // system, half of one core.
        assert_eq!(
            at(1_500_000_000, 12_000_000_000).percent_since(&at(1_000_000_000, 10_000_000_000)),
            50.0
        );
        // A one-shot sample has empty `precpu_stats`: no figure, not the
        // average since boot.
        assert_eq!(
            at(1_500_000_000, 12_000_000_000).percent_since(&at(0, 0)),
            0.0
        );
        // A restart resets the container's counter.
        assert_eq!(
            at(10, 12_000_000_000).percent_since(&at(1_000_000_000, 10_000_000_000)),
            0.0
        );
    }

    #[test]
    fn health_is_read_from_status() {
        assert_eq!(health_from_status("Up 3 minutes (healthy)"), "healthy");
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            "starting"
        );
        assert_eq!(health_from_status("Up 2 hours (unhealthy)"), "unhealthy");
        assert_eq!(health_from_status("Exited (0) 2 minutes ago"), "none");
    }

    #[test]
    fn server_errors_map_to_api_meaning() {
        let e = |code| {
            EngineError::from_bollard(
                BollardError::DockerResponseServerError {
                    status_code: code,
                    message: "m".into(),
                },
                "web",
            )
        };
        assert!(matches!(e(404), EngineError::NotFound(t) if t == "web"));
        assert!(matches!(e(409), EngineError::Conflict(_)));
        assert!(matches!(e(500), EngineError::Engine(_)));
        let missing =
            EngineError::from_bollard(BollardError::SocketNotFoundError("/nope".into()), "web");
        assert!(matches!(missing, EngineError::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_request_that_runs_out_of_time_does_not_mark_the_engine_down() {
        let engine = DockerEngine::new("/nonexistent/docker.sock".into(), Duration::from_secs(1));
        engine.mark(true);
        let r = engine
            .observe::<()>(Err(BollardError::RequestTimeoutError), "web")
            .await;
        assert!(matches!(r, Err(EngineError::Timeout(_))), "{r:?}");
        assert!(engine.is_up(), "a slow answer is not a dead engine");
        let r = engine
            .observe::<()>(Err(BollardError::SocketNotFoundError("/x".into())), "web")
            .await;
        assert!(matches!(r, Err(EngineError::Unavailable(_))));
        assert!(!engine.is_up(), "a connection failure is");
    }

    #[test]
    fn stop_timeouts_are_bounded() {
        assert_eq!(check_stop_timeout(Duration::from_secs(3600)).unwrap(), 3600);
        assert_eq!(check_stop_timeout(Duration::ZERO).unwrap(), 0);
        assert!(check_stop_timeout(Duration::from_secs(3601)).is_err());
        // Would wrap to a negative i32, which Docker reads as "forever".
        assert!(check_stop_timeout(Duration::from_secs(u64::from(u32::MAX))).is_err());
        assert!(check_stop_timeout(Duration::from_secs(u64::MAX)).is_err());
        assert_eq!(
            MAX_STOP_TIMEOUT_SECS,
            wakedock_plugin_runtime::caps::MAX_STOP_TIMEOUT_SECS,
            "the API and plugins share one maximum"
        );
    }

    #[tokio::test]
    async fn absent_engine_is_unavailable_not_a_panic() {
        let engine = DockerEngine::new("/nonexistent/docker.sock".into(), Duration::from_secs(1));
        assert!(matches!(
            engine.list(&[]).await,
            Err(EngineError::Unavailable(_))
        ));
        assert!(engine.ping(Duration::from_millis(200)).await.is_err());
        assert!(!engine.is_up());
    }

    /// An engine on a socket that answers `/version`, drops the connection
    /// of the first start request and answers 204 to the next one.
    #[tokio::test]
    async fn a_start_whose_connection_breaks_is_retried_once() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let starts = Arc::new(AtomicUsize::new(0));
        let seen = starts.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let starts = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let head = String::from_utf8_lossy(&buf[..n]).to_string();
                        let reply = if head.contains("/version") {
                            let body = r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#;
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        } else if head.contains("/start") {
                            if starts.fetch_add(1, Ordering::SeqCst) == 0 {
                                return; // the connection breaks mid-request
                            }
                            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                        } else {
                            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string()
                        };
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let engine = DockerEngine::new(sock, Duration::from_secs(1));
        let started = engine.start_container("web").await;
        assert!(matches!(started, Ok(true)), "{started:?}");
        assert_eq!(starts.load(Ordering::SeqCst), 2, "one retry, no more");
    }
}
