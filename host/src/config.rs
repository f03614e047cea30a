//! Configuration: one typed tree, loaded with figment from defaults, a YAML or
//! TOML file and environment variables, then validated as a whole.
//!
//! Precedence (last wins): built-in defaults < config file < `WAKEDOCK_*`
//! variables (`__` separates nesting levels, e.g. `WAKEDOCK_WAKEDOCK__PORT`)
//! < the documented short names (`WAKEDOCK_DATA_PATH`, `WAKEDOCK_LOG_LEVEL`,
//! `WAKEDOCK_INSTANCE`, `JWT_SECRET_KEY`). `WAKEDOCK_BRIDGE_TOKEN` adds a
//! bridge token; `WAKEDOCK_ADMIN_PASSWORD` and `RUST_LOG` are checked here
//! too, so `config check` refuses exactly what `serve` would.
//!
//! Every error names the key and where its value came from, because a
//! self-hoster debugging a compose file needs to know which of three places
//! to edit.
//!
//! Validation covers everything `serve` checks before it touches the
//! database or the Docker engine: `config check` and `serve` share it, so a
//! configuration that passes the check does not fail at start for a reason
//! the check could have seen.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default location of the config file when neither `--config` nor
/// `WAKEDOCK_CONFIG_PATH` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/wakedock.yaml";

/// `WAKEDOCK_*` variables that are read directly rather than as config keys;
/// they must not be reported as unknown keys.
const NON_KEY_ENV_VARS: &[&str] = &[
    "config_path",
    "data_path",
    "log_level",
    "instance",
    "admin_password",
    "bridge_token",
    // Read by the binary before anything else (`malloc_tuning`).
    "malloc_tuning",
    "test_pg_url",
    "test_mysql_url",
];

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub wakedock: ServerConfig,
    pub database: DatabaseConfig,
    pub logging: LoggingConfig,
    pub docker: DockerConfig,
    pub security: SecurityConfig,
    /// Plugins installed from files at start (source `config`). Removing
    /// one from this list uninstalls it.
    pub plugins: Vec<PluginDecl>,
    pub plugin_runtime: PluginRuntimeConfig,
    /// Wake-on-request services (issue 4), handed to the `wake` plugin as
    /// its `services` config. Checked here so a bad entry stops the start
    /// with the service and field named.
    pub services: Vec<serde_json::Value>,
    /// Compose stacks (issue 11): where they live and how Compose runs.
    pub stacks: StacksConfig,
    /// `WAKEDOCK_ADMIN_PASSWORD`: the first admin's password, used on the
    /// first start only (checked on every start, so a bad one is said at
    /// once). Not a config key: never written back or printed.
    #[serde(skip)]
    pub admin_password: Option<String>,
    /// Scheduled backups (`wakedock backup` and the API take them on demand).
    pub backup: BackupConfig,
    /// How long the audit log is kept.
    pub retention: RetentionConfig,
}

/// Backups on a schedule, kept in a directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Take one this often; unset: no scheduled backups.
    pub interval: Option<HumanDuration>,
    /// Where backups go; unset: `<data_path>/backups`.
    pub directory: Option<PathBuf>,
    /// How many to keep (the oldest beyond are deleted).
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            interval: None,
            directory: None,
            keep: 7,
        }
    }
}

impl BackupConfig {
    /// The backup directory in effect.
    pub fn directory(&self, data_path: &Path) -> PathBuf {
        self.directory
            .clone()
            .unwrap_or_else(|| data_path.join("backups"))
    }
}

/// Retention of the audit log, pruned in the background in small batches.
/// `0` keeps forever.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Entries older than this are deleted.
    pub audit_max_age: HumanDuration,
    /// At most this many entries are kept (the oldest go first).
    pub audit_max_entries: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            audit_max_age: HumanDuration(Duration::from_secs(180 * 24 * 3600)),
            audit_max_entries: 1_000_000,
        }
    }
}

/// How the host treats misbehaving plugins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRuntimeConfig {
    /// Consecutive failed calls (trap, timeout, limit) that put a plugin in
    /// the `failed` state.
    pub failure_threshold: u32,
    /// First wait before a failed plugin is retried; doubles up to
    /// `failure_backoff_max`.
    pub failure_backoff: HumanDuration,
    pub failure_backoff_max: HumanDuration,
    /// A plugin's identical permission refusals (same capability, function,
    /// target and reason) give one log line and one audit row per this
    /// interval, which counts the ones left out; each still shows as the
    /// plugin's last error.
    pub denial_interval: HumanDuration,
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            failure_backoff: HumanDuration(Duration::from_secs(30)),
            failure_backoff_max: HumanDuration(Duration::from_secs(30 * 60)),
            denial_interval: HumanDuration(Duration::from_secs(10 * 60)),
        }
    }
}

/// A plugin declared in the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginDecl {
    /// Its `plugin.toml`.
    pub manifest: PathBuf,
    /// Its component (`.wasm`).
    pub wasm: PathBuf,
    /// `all` (what the manifest requests) or an explicit grant.
    #[serde(default = "grant_all")]
    pub grant: crate::plugins::GrantSpec,
    /// Overrides of the manifest's `[config]`.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn grant_all() -> crate::plugins::GrantSpec {
    crate::plugins::GrantSpec::All(crate::plugins::AllMarker)
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Directory for the SQLite database, the generated JWT secret and
    /// plugin artifacts.
    pub data_path: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: HumanDuration,
    /// A connection whose request headers take longer than this is closed
    /// (also the idle time allowed between requests on a kept-alive one).
    pub header_read_timeout: HumanDuration,
    /// A request body that sends nothing for this long fails.
    pub body_read_timeout: HumanDuration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// This install's scope on a shared Docker engine. Set, the wake plugin
    /// defines services from labels, and resolves label selectors, only
    /// over containers labelled `wakedock.instance=<this value>`, so two
    /// installs on one engine never adopt, time or stop each other's
    /// containers. Unset: every container (one install per engine).
    pub instance: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_path: PathBuf::from("./data"),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            shutdown_timeout: HumanDuration(Duration::from_secs(10)),
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            body_read_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: 1024,
            instance: None,
        }
    }
}

/// The Docker label that scopes a container to one install
/// (`wakedock.instance`).
pub const INSTANCE_LABEL: &str = "wakedock.instance";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH`, `postgres://...` or `mysql://...`. Unset means SQLite at
    /// `<data_path>/wakedock.db`.
    pub url: Option<String>,
    /// Connections in the pool.
    pub pool_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A level (`info`) or a tracing filter directive (`info,wakedock=debug`).
    pub level: String,
    /// Also append logs to this file.
    pub file: Option<PathBuf>,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            file: None,
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    pub socket_path: PathBuf,
    /// Seconds a stop waits before the engine kills the container.
    pub stop_timeout: HumanDuration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket_path: PathBuf::from("/var/run/docker.sock"),
            stop_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// `stacks:`: the folder plugins with the `files` and `compose`
/// capabilities work in, and the Compose v2 binary the host runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StacksConfig {
    /// One folder per stack; none: `<data_path>/stacks`.
    pub dir: Option<PathBuf>,
    /// The `docker-compose` v2 CLI plugin binary; none: the standard
    /// CLI-plugin folders, then `docker-compose` on `PATH` (version 2 only).
    pub compose_binary: Option<PathBuf>,
    /// Longest a Compose action (up, pull, ...) may run before it is stopped.
    pub action_timeout: HumanDuration,
}

impl Default for StacksConfig {
    fn default() -> Self {
        Self {
            dir: None,
            compose_binary: None,
            action_timeout: HumanDuration(Duration::from_secs(15 * 60)),
        }
    }
}

impl Config {
    /// The stacks directory: `stacks.dir`, else `<data_path>/stacks`.
    pub fn stacks_dir(&self) -> PathBuf {
        self.stacks
            .dir
            .clone()
            .unwrap_or_else(|| self.wakedock.data_path.join("stacks"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// HMAC secret for JWTs. Unset: generated once and kept in the data dir.
    pub jwt_secret: Option<String>,
    /// Origins allowed to call the API from a browser (`https://host:port`).
    pub cors_origins: Vec<String>,
    pub access_token_ttl: HumanDuration,
    pub refresh_token_ttl: HumanDuration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub rate_limit: RateLimitConfig,
    /// Tokens the Caddy bridge may use on the wake API (also accepted:
    /// `WAKEDOCK_BRIDGE_TOKEN`). At least 16 characters each.
    pub bridge_tokens: Vec<String>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`
    /// (16+ characters): the metrics name services and containers.
    pub metrics_token: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            cors_origins: Vec::new(),
            access_token_ttl: HumanDuration(Duration::from_secs(15 * 60)),
            refresh_token_ttl: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            max_body_bytes: 1024 * 1024,
            bridge_tokens: Vec::new(),
            metrics_token: None,
            trusted_proxies: vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()],
            rate_limit: RateLimitConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Login attempts per minute from one client IP.
    pub login_per_ip_per_minute: u32,
    /// Login attempts per minute against one username from one client IP
    /// (per address, so nobody elsewhere can lock the user out); repeated
    /// failures also back off, from 1 s doubling to 5 min.
    pub login_per_user_per_minute: u32,
    /// Sustained API requests per second from one client IP.
    pub api_per_ip_per_second: u32,
    /// Burst on top of the sustained API rate.
    pub api_burst: u32,
    /// Sustained rate of the wake API (`/api/v1/wake/*`) per bridge token.
    /// Bridge traffic never spends the per-IP budget above: every visitor
    /// behind one Caddy comes from the same address.
    pub bridge_per_token_per_second: u32,
    /// Burst on top of it: a herd of browsers on a sleeping dynamic
    /// service fetches one waiting page each.
    pub bridge_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_ip_per_minute: 20,
            login_per_user_per_minute: 10,
            api_per_ip_per_second: 50,
            api_burst: 200,
            bridge_per_token_per_second: 1000,
            bridge_burst: 5000,
        }
    }
}

/// A duration written the human way in config (`15m`, `7d`, `500ms`), or
/// as a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"15m\" or \"7d\", or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| HumanDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let v = v.trim();
                if let Ok(secs) = v.parse::<u64>() {
                    return Ok(HumanDuration(Duration::from_secs(secs)));
                }
                humantime::parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A configuration problem, with the key and the source of the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid value for `{key}` (from {source_name}): {reason}")]
    Value {
        key: String,
        source_name: String,
        reason: String,
    },
    /// A variable read directly (not a config key), e.g.
    /// `WAKEDOCK_ADMIN_PASSWORD`.
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
}

/// Where the configuration is read from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file, if one is used.
    pub path: Option<PathBuf>,
}

impl ConfigSource {
    /// `--config PATH`, else `WAKEDOCK_CONFIG_PATH`, else the default path.
    /// An explicitly named file must exist; the default one may be absent.
    pub fn resolve(cli: Option<&Path>) -> Result<Self, ConfigError> {
        let explicit = cli
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("WAKEDOCK_CONFIG_PATH").map(PathBuf::from));
        match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::File {
                        path,
                        reason: "not found (named by --config or WAKEDOCK_CONFIG_PATH)".into(),
                    });
                }
                Ok(Self { path: Some(path) })
            }
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                Ok(Self {
                    path: default.is_file().then_some(default),
                })
            }
        }
    }
}

impl Config {
    /// Loads and validates the configuration from `source` and the process
    /// environment.
    pub fn load(source: &ConfigSource) -> Result<Self, ConfigError> {
        Self::load_with_env(source, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not
    /// mutate the process environment.
    pub fn load_with_env(
        source: &ConfigSource,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let figment = Self::figment(source, &env)?;
        let mut config: Config = figment.extract().map_err(|e| figment_error(&e))?;
        config.expand_plugin_paths(&figment, &lookup)?;
        if let Some(token) = lookup("WAKEDOCK_BRIDGE_TOKEN") {
            check_bridge_token(&token).map_err(|reason| ConfigError::Value {
                key: "security.bridge_tokens".into(),
                source_name: "environment variable WAKEDOCK_BRIDGE_TOKEN".into(),
                reason,
            })?;
            if !config.security.bridge_tokens.contains(&token) {
                config.security.bridge_tokens.push(token);
            }
        }
        // Compose passes a variable left empty in `.env` as empty: unset.
        if let Some(pw) = lookup("WAKEDOCK_ADMIN_PASSWORD").filter(|p| !p.is_empty()) {
            crate::auth::password::validate(&pw).map_err(|reason| ConfigError::Env {
                var: "WAKEDOCK_ADMIN_PASSWORD",
                reason,
            })?;
            config.admin_password = Some(pw);
        }
        if let Some(filter) = lookup("RUST_LOG") {
            // It overrides `logging.level`; a filter tracing cannot read
            // would otherwise be dropped without a word.
            tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| ConfigError::Env {
                var: "RUST_LOG",
                reason: format!("{filter:?} is not a tracing filter: {e}"),
            })?;
        }
        config.validate(&figment)?;
        Ok(config)
    }

    /// Expands `${VAR}` and `${VAR:-default}` in the plugins' `manifest` and
    /// `wasm` paths (so the default config can follow `CARGO_TARGET_DIR`),
    /// against the environment given to [`Config::load_with_env`].
    fn expand_plugin_paths(
        &mut self,
        figment: &Figment,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (i, p) in self.plugins.iter_mut().enumerate() {
            for (what, path) in [("manifest", &mut p.manifest), ("wasm", &mut p.wasm)] {
                let key = format!("plugins.{i}.{what}");
                let text = path.to_str().ok_or_else(|| ConfigError::Value {
                    key: key.clone(),
                    source_name: source_of(figment, &key),
                    reason: "is not valid UTF-8".into(),
                })?;
                let expanded = shellexpand::env_with_context(text, |var| {
                    lookup(var)
                        .map(Some)
                        .ok_or_else(|| format!("environment variable {var} is not set"))
                })
                .map_err(|e| ConfigError::Value {
                    key: key.clone(),
                    source_name: source_of(figment, &key),
                    reason: format!("{text}: {}", e.cause),
                })?;
                *path = PathBuf::from(expanded.as_ref());
            }
        }
        Ok(())
    }

    fn figment(source: &ConfigSource, env: &[(String, String)]) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &source.path {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            figment = match ext.as_deref() {
                Some("yaml" | "yml") => figment.merge(Yaml::file_exact(path)),
                Some("toml") => figment.merge(Toml::file_exact(path)),
                _ => {
                    return Err(ConfigError::File {
                        path: path.clone(),
                        reason: "unsupported extension: use .yaml, .yml or .toml".into(),
                    })
                }
            };
        }
        // The environment is passed in (not read by figment's Env provider)
        // so tests stay hermetic and each value is tagged with its variable.
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("WAKEDOCK_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            if NON_KEY_ENV_VARS.contains(&key.as_str()) {
                continue;
            }
            figment = figment.merge(env_value(var, &key.replace("__", "."), value));
        }
        for (var, key) in [
            ("WAKEDOCK_DATA_PATH", "wakedock.data_path"),
            ("WAKEDOCK_LOG_LEVEL", "logging.level"),
            ("WAKEDOCK_INSTANCE", "wakedock.instance"),
            ("JWT_SECRET_KEY", "security.jwt_secret"),
        ] {
            if let Some(value) = lookup(var) {
                figment = figment.merge(env_value(var, key, &value));
            }
        }
        Ok(figment)
    }

    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: String| ConfigError::Value {
            key: key.to_string(),
            source_name: source_of(figment, key),
            reason,
        };
        let data = &self.wakedock.data_path;
        if data.as_os_str().is_empty() {
            return Err(fail("wakedock.data_path", "must not be empty".into()));
        }
        if data.exists() && !data.is_dir() {
            return Err(fail(
                "wakedock.data_path",
                format!("{} exists and is not a directory", data.display()),
            ));
        }
        if let Some(instance) = &self.wakedock.instance {
            validate_instance(instance).map_err(|e| fail("wakedock.instance", e))?;
        }
        let stacks = self.stacks_dir();
        if stacks.exists() && !stacks.is_dir() {
            return Err(fail(
                "stacks.dir",
                format!("{} exists and is not a directory", stacks.display()),
            ));
        }
        let t = self.stacks.action_timeout.get();
        if t < Duration::from_secs(10) || t > Duration::from_secs(24 * 3600) {
            return Err(fail(
                "stacks.action_timeout",
                format!("{} is outside 10s..24h", self.stacks.action_timeout),
            ));
        }
        if let Some(url) = &self.database.url {
            crate::db::DatabaseUrl::parse(url).map_err(|e| fail("database.url", e.to_string()))?;
        }
        for (key, d) in [
            (
                "wakedock.header_read_timeout",
                self.wakedock.header_read_timeout,
            ),
            (
                "wakedock.body_read_timeout",
                self.wakedock.body_read_timeout,
            ),
        ] {
            if d.get() < Duration::from_millis(100) || d.get() > Duration::from_secs(3600) {
                return Err(fail(key, format!("{d} is outside 100ms..1h")));
            }
        }
        if self.wakedock.max_connections == 0 {
            return Err(fail(
                "wakedock.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.database.pool_size == Some(0) {
            return Err(fail("database.pool_size", "must be at least 1".into()));
        }
        validate_log_filter(&self.logging.level).map_err(|e| fail("logging.level", e))?;
        if let Some(file) = &self.logging.file {
            validate_log_file(file).map_err(|e| fail("logging.file", e))?;
        }
        if self.plugin_runtime.failure_threshold == 0 {
            return Err(fail(
                "plugin_runtime.failure_threshold",
                "must be at least 1".into(),
            ));
        }
        if self.plugin_runtime.failure_backoff > self.plugin_runtime.failure_backoff_max {
            return Err(fail(
                "plugin_runtime.failure_backoff",
                "must not exceed failure_backoff_max".into(),
            ));
        }
        if self.plugin_runtime.denial_interval.get() < Duration::from_secs(1) {
            return Err(fail(
                "plugin_runtime.denial_interval",
                "must be at least 1s".into(),
            ));
        }
        for (i, p) in self.plugins.iter().enumerate() {
            for (what, path) in [("manifest", &p.manifest), ("wasm", &p.wasm)] {
                if !path.is_file() {
                    return Err(fail(
                        &format!("plugins.{i}.{what}"),
                        format!(
                            "{} does not exist (build plugins with scripts/build-plugins.sh)",
                            path.display()
                        ),
                    ));
                }
            }
            if let Some(c) = &p.config {
                if !c.is_object() {
                    return Err(fail(&format!("plugins.{i}.config"), "must be a map".into()));
                }
            }
            check_declared_plugin(p)
                .map_err(|(field, e)| fail(&format!("plugins.{i}.{field}"), e))?;
        }
        for (i, def) in self.services.iter().enumerate() {
            let checked = wakedock_plugin_wake::service::parse_def(def)
                .map_err(|e| vec![e])
                .and_then(|d| d.validate(wakedock_plugin_wake::service::Source::Config));
            if let Err(errors) = checked {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                // figment tracks where the list came from, not each item.
                return Err(ConfigError::Value {
                    key: format!("services.{i}"),
                    source_name: source_of(figment, "services"),
                    reason: list.join("; "),
                });
            }
        }
        if let Some(every) = self.backup.interval {
            if every.get() < Duration::from_secs(60) {
                return Err(fail(
                    "backup.interval",
                    format!("{every} is shorter than a minute"),
                ));
            }
        }
        if self.backup.keep == 0 {
            return Err(fail("backup.keep", "must be at least 1".into()));
        }
        let age = self.retention.audit_max_age.get();
        if !age.is_zero() && age < Duration::from_secs(3600) {
            return Err(fail(
                "retention.audit_max_age",
                format!(
                    "{} is shorter than an hour (0 keeps forever)",
                    self.retention.audit_max_age
                ),
            ));
        }
        if self.docker.socket_path.as_os_str().is_empty() {
            return Err(fail("docker.socket_path", "must not be empty".into()));
        }
        if crate::docker::check_stop_timeout(self.docker.stop_timeout.get()).is_err() {
            return Err(fail(
                "docker.stop_timeout",
                format!("{} is above the maximum of 1h", self.docker.stop_timeout),
            ));
        }
        match &self.security.jwt_secret {
            Some(secret) if secret.len() < 32 => {
                return Err(fail(
                    "security.jwt_secret",
                    "must be at least 32 characters (or leave it unset to have one generated)"
                        .into(),
                ));
            }
            Some(_) => {}
            // The one kept in the data dir is used: it must be usable.
            None => crate::secrets::read_jwt_secret(data)
                .map(|_| ())
                .map_err(|e| fail("security.jwt_secret", format!("unset, and {e:#}")))?,
        }
        let access = self.security.access_token_ttl.get();
        let refresh = self.security.refresh_token_ttl.get();
        if access < Duration::from_secs(30) || access > Duration::from_secs(24 * 3600) {
            return Err(fail(
                "security.access_token_ttl",
                format!("{} is outside 30s..24h", self.security.access_token_ttl),
            ));
        }
        if refresh <= access {
            return Err(fail(
                "security.refresh_token_ttl",
                format!(
                    "{} must be longer than access_token_ttl ({})",
                    self.security.refresh_token_ttl, self.security.access_token_ttl
                ),
            ));
        }
        if self.security.max_body_bytes < 1024 {
            return Err(fail(
                "security.max_body_bytes",
                "must be at least 1024".into(),
            ));
        }
        for origin in &self.security.cors_origins {
            validate_origin(origin).map_err(|e| fail("security.cors_origins", e))?;
        }
        if self
            .security
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(fail(
                "security.metrics_token",
                "must be at least 16 characters".into(),
            ));
        }
        for (i, t) in self.security.bridge_tokens.iter().enumerate() {
            check_bridge_token(t).map_err(|e| fail(&format!("security.bridge_tokens.{i}"), e))?;
        }
        let rl = &self.security.rate_limit;
        for (key, value) in [
            (
                "security.rate_limit.login_per_ip_per_minute",
                rl.login_per_ip_per_minute,
            ),
            (
                "security.rate_limit.login_per_user_per_minute",
                rl.login_per_user_per_minute,
            ),
            (
                "security.rate_limit.api_per_ip_per_second",
                rl.api_per_ip_per_second,
            ),
            ("security.rate_limit.api_burst", rl.api_burst),
            (
                "security.rate_limit.bridge_per_token_per_second",
                rl.bridge_per_token_per_second,
            ),
            ("security.rate_limit.bridge_burst", rl.bridge_burst),
        ] {
            if value == 0 {
                return Err(fail(key, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// The database URL in effect (SQLite in the data dir when unset).
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.wakedock.data_path.join("wakedock.db").display()
            )
        })
    }

    /// The effective configuration with secrets replaced, for printing.
    pub fn masked(&self) -> Config {
        let mut c = self.clone();
        c.database.url = Some(mask_url_password(&self.database_url()));
        if c.security.jwt_secret.is_some() {
            c.security.jwt_secret = Some("********".into());
        }
        for t in &mut c.security.bridge_tokens {
            *t = "********".into();
        }
        if c.security.metrics_token.is_some() {
            c.security.metrics_token = Some("********".into());
        }
        // Notification channels (the alerts plugin's) carry tokens and
        // webhook URLs; masking another plugin's look-alike costs nothing.
        for p in &mut c.plugins {
            if let Some(list) = p
                .config
                .as_mut()
                .and_then(|v| v.get_mut("channels"))
                .and_then(|v| v.as_array_mut())
            {
                list.iter_mut()
                    .for_each(wakedock_plugin_alerts::channel::redact_json);
            }
        }
        c
    }
}

/// One environment variable as a figment provider at `key`. The value is
/// parsed the way figment parses env values (numbers, booleans, arrays), and
/// the metadata names the variable so errors point at it.
struct EnvVar {
    var: String,
    key: String,
    value: String,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let value: figment::value::Value = self.value.parse().unwrap_or_else(|e| match e {});
        match figment::util::nest(&self.key, value) {
            figment::value::Value::Dict(_, dict) => Ok(figment::Profile::Default.collect(dict)),
            _ => Err(figment::Error::from(format!(
                "environment variable {} does not name a config key",
                self.var
            ))),
        }
    }
}

fn env_value(var: &str, key: &str, value: &str) -> EnvVar {
    EnvVar {
        var: var.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// Where the value at `key` came from. figment keeps metadata per value
/// down to lists, not per list item (`plugins.0.wasm`), so the nearest
/// parent that has it answers.
fn source_of(figment: &Figment, key: &str) -> String {
    let mut key = key;
    loop {
        if let Some(md) = figment.find_metadata(key) {
            return match &md.source {
                Some(src) => format!("{} {}", md.name, src),
                None => md.name.to_string(),
            };
        }
        match key.rsplit_once('.') {
            Some((parent, _)) => key = parent,
            None => return "defaults".into(),
        }
    }
}

/// Bridge tokens are bearer secrets: short ones are guessable.
fn check_bridge_token(token: &str) -> Result<(), String> {
    if token.len() < 16 {
        return Err(format!(
            "a bridge token must be at least 16 characters (this one has {})",
            token.len()
        ));
    }
    Ok(())
}

/// An instance name is a Docker label value users type on every container:
/// keep it to a short, plain name.
fn validate_instance(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1 to 63 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
        ))
    }
}

/// The log file is opened (created, appended to) at start: its directory
/// must exist and the path must not be a directory.
fn validate_log_file(file: &Path) -> Result<(), String> {
    if file.is_dir() {
        return Err(format!("{} is a directory", file.display()));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "the directory of {} does not exist",
            file.display()
        ));
    }
    Ok(())
}

/// What installing a declared plugin checks before it needs the runtime:
/// the manifest reads, its API version is one this host runs, the grant
/// stays within what it requests. Errors name the field (`manifest`,
/// `grant`).
fn check_declared_plugin(p: &PluginDecl) -> Result<(), (&'static str, String)> {
    let text = std::fs::read_to_string(&p.manifest)
        .map_err(|e| ("manifest", format!("reading {}: {e}", p.manifest.display())))?;
    let manifest = wakedock_plugin_runtime::Manifest::from_toml(&text)
        .map_err(|e| ("manifest", format!("{}: {e}", p.manifest.display())))?;
    wakedock_plugin_runtime::manifest::check_api_version(&manifest.api_version)
        .map_err(|e| ("manifest", format!("{}: {e}", p.manifest.display())))?;
    p.grant.resolve(&manifest).map_err(|e| ("grant", e))?;
    // The alerts plugin's rules and channels: a bad one stops the start
    // with its field named (`plugins.N.config.rules[2].for: ...`).
    if manifest.name == crate::alerts::ALERTS_PLUGIN {
        let config = p.config.clone().unwrap_or(serde_json::Value::Null);
        wakedock_plugin_alerts::config::AlertsConfig::from_json(&config).map_err(|errs| {
            let list: Vec<String> = errs.iter().map(|e| format!("config.{e}")).collect();
            ("config", list.join("; "))
        })?;
    }
    Ok(())
}

fn figment_error(e: &figment::Error) -> ConfigError {
    // figment's message already names the key and the source, e.g.
    // `unknown field `prot`, expected ... for key "default.wakedock.prot" in config.yaml YAML file`.
    let messages: Vec<String> = e.clone().into_iter().map(|e| e.to_string()).collect();
    ConfigError::Invalid(messages.join("; ").replace("key \"default.", "key \""))
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A level, or a comma-separated tracing filter whose every directive ends
/// in a level (`info,wakedock=debug,hyper=warn`). A bare word that is not a
/// level is refused: tracing would read it as a target and log everything.
fn validate_log_filter(filter: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{filter:?} is not a level ({}) or a filter like \"info,wakedock=debug\"",
            LEVELS.join(", ")
        )
    };
    if filter.trim().is_empty() {
        return Err(bad());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad());
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| format!("{}: {e}", bad()))?;
    Ok(())
}

fn validate_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "{origin:?} must be an origin (scheme://host[:port]) with no path"
        ));
    }
    http::HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a valid origin"))?;
    Ok(())
}

fn mask_url_password(url: &str) -> String {
    // scheme://user:password@host -> scheme://user:****@host
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:****@{host}");
            }
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(ext: &str, body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(&format!(".{ext}"))
            .tempfile()
            .unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f
    }

    fn load(path: Option<&Path>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let source = ConfigSource {
            path: path.map(Path::to_path_buf),
        };
        Config::load_with_env(
            &source,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_without_file() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.wakedock.port, 8000);
        assert_eq!(c.security.access_token_ttl.get(), Duration::from_secs(900));
        assert_eq!(c.database_url(), "sqlite://./data/wakedock.db");
    }

    #[test]
    fn yaml_and_toml_are_both_read() {
        let y = file(
            "yaml",
            "wakedock: { port: 9001 }\nsecurity: { access_token_ttl: 5m, refresh_token_ttl: 7d }\n",
        );
        let c = load(Some(y.path()), &[]).unwrap();
        assert_eq!(c.wakedock.port, 9001);
        assert_eq!(c.security.access_token_ttl.get(), Duration::from_secs(300));
        let t = file(
            "toml",
            "[wakedock]\nport = 9002\n[logging]\nlevel = \"debug\"\n",
        );
        let c = load(Some(t.path()), &[]).unwrap();
        assert_eq!(c.wakedock.port, 9002);
        assert_eq!(c.logging.level, "debug");
    }

    #[test]
    fn env_overrides_file_and_documented_names_apply() {
        let y = file("yaml", "wakedock: { port: 9001 }\n");
        let c = load(
            Some(y.path()),
            &[
                ("WAKEDOCK_WAKEDOCK__PORT", "9100"),
                ("WAKEDOCK_DATA_PATH", "/tmp/wd"),
                ("WAKEDOCK_LOG_LEVEL", "warn"),
                ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
                ("WAKEDOCK_CONFIG_PATH", "ignored-here"),
            ],
        )
        .unwrap();
        assert_eq!(c.wakedock.port, 9100);
        assert_eq!(c.wakedock.data_path, PathBuf::from("/tmp/wd"));
        assert_eq!(c.logging.level, "warn");
        assert_eq!(
            c.security.jwt_secret.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        let y = file("yaml", "wakedock: { prot: 9001 }\n");
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        assert!(err.contains("wakedock.prot"), "{err}");
        assert!(err.contains(&y.path().display().to_string()), "{err}");
    }

    #[test]
    fn wrong_type_in_env_names_the_variable() {
        let err = load(None, &[("WAKEDOCK_WAKEDOCK__PORT", "eighty")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("wakedock.port"), "{err}");
        assert!(err.contains("WAKEDOCK_WAKEDOCK__PORT"), "{err}");
    }

    #[test]
    fn unknown_env_key_is_rejected() {
        let err = load(None, &[("WAKEDOCK_WAKEDOCK__PROT", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        assert!(err.contains("WAKEDOCK_WAKEDOCK__PROT"), "{err}");
    }

    #[test]
    fn impossible_values_are_rejected_with_source() {
        let y = file(
            "yaml",
            "security: { access_token_ttl: 2h, refresh_token_ttl: 1h }\n",
        );
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("security.refresh_token_ttl"), "{err}");
        assert!(err.contains(&y.path().display().to_string()), "{err}");

        let err = load(None, &[("JWT_SECRET_KEY", "short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("security.jwt_secret"), "{err}");
        assert!(err.contains("JWT_SECRET_KEY"), "{err}");

        let err = load(None, &[("WAKEDOCK_DATABASE__URL", "oracle://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(load(None, &[("WAKEDOCK_DATABASE__URL", "mysql://u:p@h/d")]).is_ok());

        for (var, value, key) in [
            ("WAKEDOCK_BACKUP__INTERVAL", "30s", "backup.interval"),
            ("WAKEDOCK_BACKUP__KEEP", "0", "backup.keep"),
            (
                "WAKEDOCK_RETENTION__AUDIT_MAX_AGE",
                "10m",
                "retention.audit_max_age",
            ),
        ] {
            let err = load(None, &[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(var), "{err}");
        }
        let ok = load(
            None,
            &[
                ("WAKEDOCK_BACKUP__INTERVAL", "1d"),
                ("WAKEDOCK_RETENTION__AUDIT_MAX_AGE", "0"),
            ],
        )
        .unwrap();
        assert_eq!(ok.backup.interval.unwrap().get().as_secs(), 86_400);
        assert!(ok.retention.audit_max_age.get().is_zero());

        assert!(load(None, &[("WAKEDOCK_LOG_LEVEL", "info,wakedock=debug")]).is_ok());
        let err = load(None, &[("WAKEDOCK_LOG_LEVEL", "loud")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("logging.level"), "{err}");

        let y = file("yaml", "security: { access_token_ttl: soon }\n");
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("access_token_ttl"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");

        let y = file(
            "yaml",
            "security: { cors_origins: [\"example.com/path\"] }\n",
        );
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("security.cors_origins"), "{err}");
    }

    #[test]
    fn unsupported_extension_and_missing_file() {
        let f = file("ini", "x=1");
        let err = load(Some(f.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("unsupported extension"), "{err}");
        let err = ConfigSource::resolve(Some(Path::new("/nonexistent/wd.yaml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not found"), "{err}");
    }

    #[test]
    fn values_read_outside_the_config_tree_are_checked_and_named() {
        let err = load(None, &[("WAKEDOCK_BRIDGE_TOKEN", "abc")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WAKEDOCK_BRIDGE_TOKEN"), "{err}");
        assert!(err.contains("at least 16"), "{err}");
        let c = load(None, &[("WAKEDOCK_BRIDGE_TOKEN", "0123456789abcdef")]).unwrap();
        assert_eq!(c.security.bridge_tokens, vec!["0123456789abcdef"]);

        let err = load(None, &[("WAKEDOCK_ADMIN_PASSWORD", "short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WAKEDOCK_ADMIN_PASSWORD"), "{err}");
        let c = load(None, &[("WAKEDOCK_ADMIN_PASSWORD", "long-enough-pw")]).unwrap();
        assert_eq!(c.admin_password.as_deref(), Some("long-enough-pw"));

        let err = load(None, &[("RUST_LOG", "info,[")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RUST_LOG"), "{err}");
    }

    #[test]
    fn list_items_name_their_source_not_defaults() {
        let err = load(None, &[("WAKEDOCK_SECURITY__BRIDGE_TOKENS", "[short]")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("security.bridge_tokens.0"), "{err}");
        assert!(
            err.contains("environment variable WAKEDOCK_SECURITY__BRIDGE_TOKENS"),
            "{err}"
        );
        assert!(!err.contains("defaults"), "{err}");
        let y = file(
            "yaml",
            "plugins:\n  - { manifest: /nonexistent/plugin.toml, wasm: /nonexistent/p.wasm }\n",
        );
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("plugins.0.manifest"), "{err}");
        assert!(err.contains(&y.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_bad_alert_rule_in_the_config_file_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let wasm = dir.path().join("alerts.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let y = file(
            "yaml",
            &format!(
                "plugins:\n  - manifest: {}/plugins/alerts/plugin.toml\n    wasm: {}\n    config:\n      rules:\n        - {{name: ok, kind: exit}}\n        - {{name: slow, kind: restart-loop, count: 3, window: soonish}}\n",
                root.display(),
                wasm.display()
            ),
        );
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("plugins.0.config"), "{err}");
        assert!(err.contains("rules[1].window"), "{err}");
        assert!(err.contains("soonish"), "{err}");
    }

    #[test]
    fn plugin_paths_expand_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::write(dir.path().join("x.wasm"), b"\0asm").unwrap();
        let y = file(
            "yaml",
            &format!(
                "plugins:\n  - manifest: {}/plugins/wake/plugin.toml\n    wasm: \"${{WD_TEST_DIR:-/nonexistent}}/x.wasm\"\n",
                root.display()
            ),
        );
        let dir_s = dir.path().display().to_string();
        let c = load(Some(y.path()), &[("WD_TEST_DIR", dir_s.as_str())]).unwrap();
        assert_eq!(c.plugins[0].wasm, dir.path().join("x.wasm"));
        // The default applies when the variable is unset.
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/x.wasm does not exist"), "{err}");
        // A variable without a default must be set.
        let y = file(
            "yaml",
            "plugins:\n  - { manifest: \"${WD_NOT_SET}/plugin.toml\", wasm: x.wasm }\n",
        );
        let err = load(Some(y.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("plugins.0.manifest"), "{err}");
        assert!(err.contains("WD_NOT_SET is not set"), "{err}");
    }

    #[test]
    fn instance_is_a_plain_name_from_file_or_environment() {
        let c = load(None, &[("WAKEDOCK_INSTANCE", "prod-1")]).unwrap();
        assert_eq!(c.wakedock.instance.as_deref(), Some("prod-1"));
        let y = file("yaml", "wakedock: { instance: staging }\n");
        assert_eq!(
            load(Some(y.path()), &[])
                .unwrap()
                .wakedock
                .instance
                .as_deref(),
            Some("staging")
        );
        for bad in ["", "two words", "-lead", &"x".repeat(64)] {
            let err = load(None, &[("WAKEDOCK_INSTANCE", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("wakedock.instance"), "{bad:?}: {err}");
            assert!(err.contains("WAKEDOCK_INSTANCE"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn masked_hides_secrets() {
        let c = load(
            None,
            &[
                ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
                (
                    "WAKEDOCK_DATABASE__URL",
                    "postgres://wd:hunter2@localhost/wd",
                ),
            ],
        )
        .unwrap();
        let mut c = c;
        c.plugins.push(
            serde_json::from_value(serde_json::json!({
                "manifest": "plugins/alerts/plugin.toml", "wasm": "x.wasm",
                "config": {"channels": [{"name": "t", "type": "telegram", "bot_token": "123:hunter2", "chat_id": "1"}]}
            }))
            .unwrap(),
        );
        let shown = serde_json::to_string(&c.masked()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("postgres://wd:****@localhost/wd"), "{shown}");
    }
}
