//! Harness for WakeDock's end-to-end tests.
//!
//! - [`TestHost`] runs a real host (the same `server::run` as `wakedock
//!   serve`) on 127.0.0.1 port 0 with its own data dir and database:
//!   SQLite in a temp dir, or a fresh database on the PostgreSQL or
//!   MariaDB server the test setup started (`WAKEDOCK_TEST_PG_URL`,
//!   `WAKEDOCK_TEST_MYSQL_URL`).
//! - [`TestContainer`] runs the locally built test app image
//!   (`scripts/build-test-images.sh`) with the `wakedock.test=true` label
//!   and a unique name, and removes it on drop.
//!
//! Nothing here touches containers, images or databases it did not create.
//! Every test host has its own install scope (a unique `wakedock.instance`),
//! so hosts of tests running side by side on one engine never adopt, time
//! or stop each other's containers; a container defined by labels for a
//! host carries that host's instance ([`AppSpec::instance`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use wakedock::config::Config;

pub mod caddy;
pub mod deploy;
pub mod log_capture;
pub mod receiver;
pub mod smtp_sink;
pub mod wake;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const TEST_LABEL: &str = "wakedock.test";
pub const TEST_IMAGE: &str = "wakedock-testapp:latest";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub use wakedock::config::INSTANCE_LABEL;

/// The database backends every DB-facing test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// MariaDB (the server `scripts/lib.sh` starts), through `mysql://`.
    Mysql,
}

pub const BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

impl Backend {
    /// What `/health` calls it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

/// A short unique suffix for names of test objects.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A database for one host; a PostgreSQL or MariaDB one is dropped with
/// it.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pg: Option<(String, String)>,
    mysql: Option<(String, String)>,
}

/// Runs one statement with the `mariadb` client against the server of
/// `url` (`mysql://user:password@host:port/db`).
fn mariadb(url: &str, sql: &str) -> anyhow::Result<()> {
    let u = url::Url::parse(url).context("WAKEDOCK_TEST_MYSQL_URL is not a URL")?;
    let out = Command::new("mariadb")
        .args([
            "--protocol=tcp",
            "-h",
            u.host_str().unwrap_or("127.0.0.1"),
            "-P",
            &u.port().unwrap_or(3306).to_string(),
            "-u",
            u.username(),
            &format!("-p{}", u.password().unwrap_or("")),
            "-e",
            sql,
        ])
        .output()
        .context("running mariadb (is MariaDB's client installed?)")?;
    if !out.status.success() {
        bail!("mariadb {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn psql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (is PostgreSQL's client installed?)")?;
    if !out.status.success() {
        bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl TestDatabase {
    pub fn new(backend: Backend, dir: &std::path::Path) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Ok(Self {
                url: format!("sqlite://{}", dir.join("wakedock.db").display()),
                pg: None,
                mysql: None,
            }),
            Backend::Mysql => {
                let admin = std::env::var("WAKEDOCK_TEST_MYSQL_URL").context(
                    "WAKEDOCK_TEST_MYSQL_URL is not set: run the suite through scripts/test.sh, \
                     which starts MariaDB",
                )?;
                // The test user may create databases named wd_test*.
                let name = unique("wd_test_e2e").replace('-', "_");
                mariadb(&admin, &format!("CREATE DATABASE {name}"))?;
                let (base, _) = admin
                    .rsplit_once('/')
                    .context("WAKEDOCK_TEST_MYSQL_URL must end in /DATABASE")?;
                Ok(Self {
                    url: format!("{base}/{name}"),
                    pg: None,
                    mysql: Some((admin, name)),
                })
            }
            Backend::Postgres => {
                let admin = std::env::var("WAKEDOCK_TEST_PG_URL").context(
                    "WAKEDOCK_TEST_PG_URL is not set: run the suite through scripts/test.sh, \
                     which starts PostgreSQL",
                )?;
                let name = unique("wd_e2e").replace('-', "_");
                psql(&admin, &format!("CREATE DATABASE {name}"))?;
                let (base, _) = admin
                    .rsplit_once('/')
                    .context("WAKEDOCK_TEST_PG_URL must end in /DATABASE")?;
                Ok(Self {
                    url: format!("{base}/{name}"),
                    pg: Some((admin, name)),
                    mysql: None,
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            let _ = psql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
        if let Some((admin, name)) = self.mysql.take() {
            let _ = mariadb(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
        }
    }
}

/// A fresh install scope (`wakedock.instance`) for one test host. Choose it
/// before the host starts when its containers are created first.
pub fn new_instance() -> String {
    unique("wd-host")
}

/// The configuration tests start from: loopback, port 0, its own install
/// scope, generous rate limits (tests that exercise limits lower them).
pub fn test_config(data: &std::path::Path, db_url: &str) -> Config {
    let mut c = Config::default();
    c.wakedock.instance = Some(new_instance());
    c.wakedock.data_path = data.to_path_buf();
    c.wakedock.port = 0;
    c.wakedock.shutdown_timeout = wakedock::config::HumanDuration(Duration::from_secs(5));
    c.database.url = Some(db_url.to_string());
    c.security.jwt_secret = Some(JWT_SECRET.into());
    c.security.rate_limit.api_per_ip_per_second = 10_000;
    c.security.rate_limit.api_burst = 10_000;
    c.security.rate_limit.login_per_ip_per_minute = 1_000;
    c.security.rate_limit.login_per_user_per_minute = 1_000;
    c
}

type Launched = (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    wakedock::events::EventBus,
    tokio_util::sync::CancellationToken,
    std::sync::Arc<wakedock::plugins::PluginManager>,
);

/// Builds the host from `config` and serves it on 127.0.0.1, port 0.
async fn launch(config: &Config) -> Launched {
    let state = wakedock::server::build_state(config.clone())
        .await
        .expect("build host state");
    wakedock::server::bootstrap_admin(&state.db, Some(ADMIN_PASSWORD.into()))
        .await
        .expect("bootstrap admin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let bus = state.bus.clone();
    let token = state.shutdown.clone();
    let plugins = state.plugins.clone();
    let task = tokio::spawn(wakedock::server::run(listener, state, async move {
        let _ = rx.await;
    }));
    (base, tx, task, bus, token, plugins)
}

/// A running host.
pub struct TestHost {
    pub base: String,
    /// The host's event bus, for tests that stand in for a plugin.
    pub bus: wakedock::events::EventBus,
    pub config: Config,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The host's own shutdown token (what its background tasks watch).
    token: tokio_util::sync::CancellationToken,
    /// Its plugins, whose ticks a kill must end too.
    plugins: std::sync::Arc<wakedock::plugins::PluginManager>,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl TestHost {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a host after `tweak` has adjusted the test configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDatabase::new(backend, dir.path()).expect("test database");
        Self::start_on(backend, db, dir, tweak).await
    }

    /// Starts a host on an existing database and data directory (e.g. one
    /// a restore filled); both are removed with the host.
    pub async fn start_on(
        backend: Backend,
        db: TestDatabase,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(&dir.path().join("data"), &db.url);
        tweak(&mut config);
        let (base, shutdown, task, bus, token, plugins) = launch(&config).await;
        Self {
            base,
            bus,
            config,
            backend,
            shutdown: Some(shutdown),
            task: Some(task),
            token,
            plugins,
            _db: db,
            _dir: dir,
        }
    }

    /// Stops the host gracefully and starts it again on the same data
    /// directory and database (a new port).
    pub async fn restart(mut self) -> Self {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("host stops within 15 s")
                .expect("host task")
                .expect("host stopped cleanly");
        }
        let (base, shutdown, task, bus, token, plugins) = launch(&self.config).await;
        self.base = base;
        self.bus = bus;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        self.token = token;
        self.plugins = plugins;
        self
    }

    /// Kills the host as far as a process can be killed in-process (no
    /// graceful phase: its server task is aborted and its background
    /// tasks cancelled at once), then starts it again on the same data
    /// directory and database.
    pub async fn kill_and_restart(mut self) -> Self {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        // A killed process's plugins tick no more; in-process, a ticker
        // lives as long as something still holds the old runtime, and two
        // hosts' plugins would then work the same database.
        self.plugins.runtime().stop_ticks().await;
        self.shutdown = None;
        let (base, shutdown, task, bus, token, plugins) = launch(&self.config).await;
        self.base = base;
        self.bus = bus;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        self.token = token;
        self.plugins = plugins;
        self
    }

    /// The host's install scope: label a container
    /// `wakedock.instance=<this>` ([`INSTANCE_LABEL`]) to have the host's
    /// wake plugin consider it.
    pub fn instance(&self) -> &str {
        self.config
            .wakedock
            .instance
            .as_deref()
            .expect("test hosts have an instance")
    }

    /// The host's data directory.
    pub fn data_path(&self) -> PathBuf {
        self.config.wakedock.data_path.clone()
    }

    /// Writes the host's configuration as a YAML file (for CLI commands
    /// that must act on the same database and data directory).
    pub fn write_config_file(&self) -> PathBuf {
        let path = self._dir.path().join("wakedock.yaml");
        let mut c = self.config.clone();
        c.plugins.clear();
        // JSON is YAML.
        std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
        path
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The host's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }

    /// Logs in and returns a client that sends the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> ApiClient {
        let http = reqwest::Client::new();
        let r = http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), StatusCode::OK, "login as {username}");
        let body: Value = r.json().await.unwrap();
        ApiClient {
            http,
            base: self.base.clone(),
            token: body["access_token"].as_str().unwrap().to_string(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn admin(&self) -> ApiClient {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a user with `role` (as admin) and logs in as them.
    pub async fn user_with_role(&self, role: &str) -> ApiClient {
        let admin = self.admin().await;
        let name = unique(role);
        let pw = "a-long-enough-password";
        let r = admin
            .post(
                "/api/v1/users",
                json!({"username": name, "password": pw, "role": role}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "create {role}");
        self.login(&name, pw).await
    }

    /// Graceful shutdown; returns what `server::run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .context("host did not stop within 15 s")??,
            None => Ok(()),
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An authenticated API client.
#[derive(Clone)]
pub struct ApiClient {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub refresh_token: String,
}

impl ApiClient {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.request(Method::POST, path).send().await.unwrap()
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.request(Method::PATCH, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a user (as an admin client) and returns it.
    pub async fn create_user(&self, username: &str, password: &str, role: &str) -> Value {
        let r = self
            .post(
                "/api/v1/users",
                json!({"username": username, "password": password, "role": role}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "create {username}");
        r.json().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }
}

/// Reads a problem+json error and returns its `code`.
pub async fn problem_code(r: reqwest::Response) -> String {
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    assert_eq!(ct, "application/problem+json", "body: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["code"].as_str().unwrap().to_string()
}

/// The Docker engine the test setup started (or `socket`).
pub fn docker_at(socket: Option<&std::path::Path>) -> bollard::Docker {
    let path = socket
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    bollard::Docker::connect_with_unix(&path, 60, bollard::API_DEFAULT_VERSION)
        .expect("connect to Docker")
}

pub async fn docker() -> bollard::Docker {
    docker_at(None)
        .negotiate_version()
        .await
        .expect("Docker engine answers (the test setup starts it)")
}

/// A container from the test image, removed (with its anonymous volumes)
/// when dropped.
#[derive(Debug)]
pub struct TestContainer {
    pub name: String,
    pub id: String,
    socket: Option<PathBuf>,
}

impl TestContainer {
    /// Creates and starts a test app container with these env vars,
    /// publishing its port 8080 on 127.0.0.1.
    pub async fn run(env: &[(&str, &str)]) -> Self {
        Self::create(env, &[], true, None).await
    }

    /// Like [`TestContainer::run`], with extra labels.
    pub async fn run_labelled(env: &[(&str, &str)], labels: &[(&str, &str)]) -> Self {
        Self::create(env, labels, true, None).await
    }

    /// A running test app whose Docker healthcheck is
    /// `/testapp healthcheck`, run by Docker every `interval`.
    pub async fn run_with_healthcheck(
        env: &[(&str, &str)],
        labels: &[(&str, &str)],
        interval: Duration,
    ) -> Self {
        Self::from_spec(AppSpec {
            env,
            labels,
            healthcheck: Some(interval),
            start: true,
            ..AppSpec::default()
        })
        .await
    }

    pub async fn create(
        env: &[(&str, &str)],
        extra_labels: &[(&str, &str)],
        start: bool,
        socket: Option<PathBuf>,
    ) -> Self {
        Self::create_full(env, extra_labels, None, start, socket).await
    }

    /// A test app from `spec` (see [`AppSpec`]).
    pub async fn from_spec(spec: AppSpec<'_>) -> Self {
        let hc = spec
            .healthcheck
            .map(|interval| bollard::models::HealthConfig {
                test: Some(vec!["CMD".into(), "/testapp".into(), "healthcheck".into()]),
                interval: Some(interval.as_nanos() as i64),
                timeout: Some(Duration::from_secs(2).as_nanos() as i64),
                retries: Some(3),
                ..Default::default()
            });
        let mut labels = spec.labels.to_vec();
        if let Some(instance) = spec.instance {
            labels.push((INSTANCE_LABEL, instance));
        }
        Self::create_inner(
            spec.env,
            &labels,
            hc,
            spec.start,
            None,
            spec.host_port,
            spec.name,
            spec.stop_signal,
            spec.restart_policy,
            spec.memory_limit,
            spec.cpus,
        )
        .await
    }

    async fn create_full(
        env: &[(&str, &str)],
        extra_labels: &[(&str, &str)],
        healthcheck: Option<bollard::models::HealthConfig>,
        start: bool,
        socket: Option<PathBuf>,
    ) -> Self {
        Self::create_inner(
            env,
            extra_labels,
            healthcheck,
            start,
            socket,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_inner(
        env: &[(&str, &str)],
        extra_labels: &[(&str, &str)],
        healthcheck: Option<bollard::models::HealthConfig>,
        start: bool,
        socket: Option<PathBuf>,
        host_port: Option<u16>,
        name: Option<String>,
        stop_signal: Option<&str>,
        restart_policy: Option<&str>,
        memory_limit: Option<i64>,
        cpus: Option<f64>,
    ) -> Self {
        use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
        use bollard::query_parameters::CreateContainerOptionsBuilder;
        use std::collections::HashMap;

        let docker = match &socket {
            Some(s) => docker_at(Some(s)).negotiate_version().await.unwrap(),
            None => docker().await,
        };
        let name = name.unwrap_or_else(|| unique("wd-test"));
        let mut labels = HashMap::new();
        labels.insert(TEST_LABEL.to_string(), "true".to_string());
        for (k, v) in extra_labels {
            labels.insert(k.to_string(), v.to_string());
        }
        let mut ports = HashMap::new();
        ports.insert(
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(host_port.map(|p| p.to_string()).unwrap_or_default()),
            }]),
        );
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.into()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            healthcheck,
            stop_signal: stop_signal.map(str::to_owned),
            host_config: Some(HostConfig {
                port_bindings: Some(ports),
                restart_policy: restart_policy.map(|p| bollard::models::RestartPolicy {
                    name: Some(p.parse().expect("a Docker restart policy name")),
                    maximum_retry_count: None,
                }),
                // No swap beyond the limit: past it the OOM killer acts.
                memory: memory_limit,
                memory_swap: memory_limit,
                nano_cpus: cpus.map(|c| (c * 1e9) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = docker
            .create_container(Some(opts), body)
            .await
            .unwrap_or_else(|e| {
                panic!("create test container from {TEST_IMAGE} (run scripts/build-test-images.sh): {e}")
            });
        if start {
            docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .unwrap();
        }
        Self {
            name,
            id: created.id,
            socket,
        }
    }
}

/// What [`TestContainer::from_spec`] creates: the test app with these env
/// vars and labels, optionally a Docker healthcheck (`/testapp healthcheck`
/// every interval), optionally a fixed published port on 127.0.0.1 (a
/// stopped and restarted container keeps it, as a proxy's upstream must).
#[derive(Debug, Default)]
pub struct AppSpec<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub labels: &'a [(&'a str, &'a str)],
    pub healthcheck: Option<Duration>,
    pub start: bool,
    pub host_port: Option<u16>,
    /// Default: a unique `wd-test-...` name.
    pub name: Option<String>,
    /// The signal `docker stop` sends (default SIGTERM, which the app
    /// handles). A signal the app has no handler for (e.g. `SIGUSR1`) is
    /// ignored by it as PID 1, so `docker stop` waits out its timeout and
    /// kills it (exit code 137): an app that ignores SIGTERM, without a new
    /// image.
    pub stop_signal: Option<&'a str>,
    /// The host it is meant for ([`TestHost::instance`] or
    /// [`new_instance`]): adds the `wakedock.instance` label.
    pub instance: Option<&'a str>,
    /// Docker's restart policy (`always`, `on-failure`, `unless-stopped`).
    pub restart_policy: Option<&'a str>,
    /// The container's memory limit in bytes (swap limited to the same).
    pub memory_limit: Option<i64>,
    /// The container's CPU limit in cores (`docker run --cpus`).
    pub cpus: Option<f64>,
}

/// `docker start` events (from the engine's event log) of `name` since `since` (Unix seconds, to the
/// millisecond: the start of an earlier wake may fall in the same second).
pub fn starts_since(name: &str, since: f64) -> usize {
    let now = unix_secs() as u64 + 1;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &now.to_string(),
            "--filter",
            &format!("container={name}"),
            "--filter",
            "event=start",
            "--format",
            "{{.ID}}",
        ])
        .output()
        .expect("docker events");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// How many times its nominal limit a wait may take: `WD_TEST_PATIENCE`,
/// default 4 (a 15 s wait timed out in a full CI run on two busy cores).
pub fn patience() -> u32 {
    std::env::var("WD_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(4)
}

pub fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// VmRSS of process `pid` in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where `scripts/build-plugins.sh` puts the plugin components.
pub fn wasm_dir() -> PathBuf {
    target_dir().join("wasm32-wasip2/release")
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let mut cmd = Command::new("docker");
        if let Some(s) = &self.socket {
            cmd.arg("-H").arg(format!("unix://{}", s.display()));
        }
        let _ = cmd.args(["rm", "-f", "-v", &self.name]).output();
    }
}

/// Takes every complete server-sent event off the front of `buf`, as
/// (event name, data); events without a name (comments) are left out.
pub fn drain_sse(buf: &mut String) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut name, mut data) = (String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if !name.is_empty() {
            out.push((name, data));
        }
    }
    out
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
///
/// `limit` is what the condition takes on an idle machine; the wait allows
/// [`patience`] times that, since the suite shares two cores with builds
/// and other tests' containers (a wait ends as soon as the condition
/// holds, so patience costs nothing when things go well).
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = limit * patience();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes a Compose project's containers, networks and volumes away on drop
/// (by its project label: only what this test made).
pub struct ComposeProject(pub String);

impl ComposeProject {
    /// A unique project name starting with `prefix`.
    pub fn new(prefix: &str) -> ComposeProject {
        // Compose project names: lowercase, digits, `-`, `_`.
        ComposeProject(unique(prefix).to_ascii_lowercase().replace('.', "-"))
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.0);
        for (kind, list) in [
            ("container", vec!["ps", "-aq", "--filter", &filter]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
            ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ] {
            let Ok(out) = Command::new("docker").args(&list).output() else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let rm: Vec<&str> = match kind {
                    "container" => vec!["rm", "-f", "-v", id],
                    "volume" => vec!["volume", "rm", "-f", id],
                    _ => vec!["network", "rm", id],
                };
                let _ = Command::new("docker").args(&rm).output();
            }
        }
    }
}
