//! Plugins in the host: installing, upgrading, enabling, configuring and
//! removing them at runtime, and wiring the runtime to the host's
//! capabilities and event sources.
//!
//! The database is the source of truth for what is installed (name, files,
//! grant, config, enabled). Every change goes through [`PluginManager`],
//! which validates and loads first and records second, so a rejected plugin
//! leaves nothing behind. Changes made by another process (the `wakedock
//! plugin` CLI) are picked up by [`PluginManager::reconcile`], which the
//! host runs every two seconds.

pub mod caps;
pub mod logs;
pub mod smtp;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wakedock_plugin_runtime::caps::{ContainerEvent, ContainerEventKind, Event, PluginEvent};
use wakedock_plugin_runtime::{
    Grant, HostCapabilities, Manifest, PluginRuntime, PluginStatus, RuntimeConfig, RuntimeError,
};

use crate::db::plugins::{self as rows, PluginRow};
use crate::db::{now_ms, Db, DbError};
use crate::docker::DockerEngine;
use crate::error::ApiError;
use crate::events::EventBus;

/// How a plugin came to be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Api,
    Cli,
    Config,
    Builtin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Cli => "cli",
            Source::Config => "config",
            Source::Builtin => "builtin",
        }
    }
}

/// What the admin grants: everything the plugin requests, or an explicit
/// subset (same shape as the manifest's `[capabilities]` and `[limits]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum GrantSpec {
    /// The string `"all"`.
    All(AllMarker),
    Explicit(Box<Grant>),
}

impl utoipa::PartialSchema for GrantSpec {
    /// `"all"`, or a grant object in the manifest's shape (kebab-case keys,
    /// nothing unknown), as [`Grant`] reads it.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let int = |max: u64| serde_json::json!({"type": "integer", "minimum": 0, "maximum": max});
        let (u32max, u64max) = (u64::from(u32::MAX), u64::MAX);
        let topics = serde_json::json!({"type": "array", "items": {"type": "string"}});
        let closed = |props: serde_json::Value, required: &[&str]| {
            serde_json::json!({
                "type": "object", "additionalProperties": false,
                "properties": props, "required": required
            })
        };
        let capabilities = closed(
            serde_json::json!({
                "containers": closed(serde_json::json!({
                    "access": {"type": "string", "enum": ["read", "write"]},
                    "selector": {"type": "string", "description": "Comma-separated `key=value` or `key` terms"}
                }), &["access"]),
                "storage": closed(serde_json::json!({"quota-bytes": int(u64max)}), &["quota-bytes"]),
                "http-outbound": closed(serde_json::json!({
                    "hosts": {"type": "array", "items": {"type": "string"}},
                    "max-requests-per-minute": int(u32max)
                }), &["hosts"]),
                "events": closed(serde_json::json!({"publish": topics, "subscribe": topics}), &[]),
                "metrics": closed(serde_json::json!({}), &[]),
            }),
            &[],
        );
        let limits = closed(
            serde_json::json!({
                "memory-bytes": int(u64max),
                "cpu-ms-per-call": int(u64max),
                "wall-ms-per-call": int(u64max),
                "max-instances": int(u32max),
                "max-tables": int(u32max),
                "max-table-elements": int(u32max),
            }),
            &[],
        );
        let schema = serde_json::json!({
            "oneOf": [
                {"type": "string", "enum": ["all"], "description": "Everything the manifest requests"},
                {
                    "type": "object", "additionalProperties": false,
                    "description": "An explicit grant, no wider than the manifest's request",
                    "properties": {"capabilities": capabilities, "limits": limits}
                }
            ]
        });
        serde_json::from_value(schema).expect("the grant schema is a valid schema")
    }
}

impl utoipa::ToSchema for GrantSpec {}

#[derive(Debug, Clone, PartialEq)]
pub struct AllMarker;

impl Serialize for AllMarker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("all")
    }
}

impl<'de> Deserialize<'de> for AllMarker {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "all" {
            Ok(AllMarker)
        } else {
            Err(serde::de::Error::custom(format!(
                "expected \"all\" or a grant object, found {s:?}"
            )))
        }
    }
}

impl GrantSpec {
    pub fn resolve(&self, manifest: &Manifest) -> Result<Grant, String> {
        let grant = match self {
            GrantSpec::All(_) => Grant::approve_all(manifest),
            GrantSpec::Explicit(g) => (**g).clone(),
        };
        check_grant_within_request(manifest, &grant)?;
        Ok(grant)
    }
}

/// A grant may only approve what the plugin requested, or less: an
/// unrequested capability or anything wider than the request is refused
/// with what to change, rather than silently narrowed, so what is stored
/// and shown as granted is what the plugin gets.
pub fn check_grant_within_request(manifest: &Manifest, grant: &Grant) -> Result<(), String> {
    match grant.excess_over(manifest) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// A plugin as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub description: String,
    pub author: Option<String>,
    pub enabled: bool,
    pub source: Source,
    pub sha256: String,
    /// What `plugin.toml` asks for.
    #[schema(value_type = Object)]
    pub requested: serde_json::Value,
    /// What the admin granted; the plugin gets the intersection.
    #[schema(value_type = Object)]
    pub granted: serde_json::Value,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// The runtime's view: state (enabled, disabled, failed with reason
    /// and retry time), calls, errors, time, memory high-water mark, last
    /// error. Absent when the plugin could not be loaded.
    #[schema(value_type = Option<Object>)]
    pub status: Option<PluginStatus>,
    /// Why the plugin is installed but not loaded (e.g. its file changed).
    pub load_error: Option<String>,
    pub installed_at: i64,
    pub updated_at: i64,
}

/// Plugin errors, in API terms.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Rejected(String),
    #[error("no plugin named {0:?} is installed")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Io(String),
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Rejected(m) => ApiError::bad_request("plugin_rejected", m),
            PluginError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PluginError::Db(e) => e.into(),
            PluginError::Io(m) => ApiError::internal(anyhow::anyhow!(m)),
        }
    }
}

fn rejected(e: RuntimeError) -> PluginError {
    PluginError::Rejected(e.to_string())
}

/// A plugin to install: its manifest text and component bytes.
#[derive(Debug, Clone)]
pub struct PluginPackage {
    pub manifest_toml: String,
    pub wasm: Vec<u8>,
}

impl PluginPackage {
    /// Reads `plugin.toml` and the `.wasm` from disk.
    pub fn from_files(manifest: &Path, wasm: &Path) -> Result<Self, PluginError> {
        let manifest_toml = std::fs::read_to_string(manifest)
            .map_err(|e| PluginError::Rejected(format!("reading {}: {e}", manifest.display())))?;
        let wasm = std::fs::read(wasm)
            .map_err(|e| PluginError::Rejected(format!("reading {}: {e}", wasm.display())))?;
        Ok(Self {
            manifest_toml,
            wasm,
        })
    }

    pub fn manifest(&self) -> Result<Manifest, PluginError> {
        Manifest::from_toml(&self.manifest_toml)
            .map_err(|e| PluginError::Rejected(format!("plugin.toml: {e}")))
    }
}

/// Where a plugin's component is kept: `<data>/plugins/<name>/<sha>.wasm`.
pub fn wasm_path(plugins_dir: &Path, name: &str, sha: &str) -> PathBuf {
    plugins_dir.join(name).join(format!("{sha}.wasm"))
}

/// Writes the component into the data dir (atomically) and returns the row
/// to store. Shared by the host and the CLI.
pub fn store_files(
    plugins_dir: &Path,
    manifest: &Manifest,
    package: &PluginPackage,
    grant: &Grant,
    config: &serde_json::Value,
    enabled: bool,
    source: Source,
) -> Result<PluginRow, PluginError> {
    let sha = wakedock_plugin_runtime::sha256_hex(&package.wasm);
    let path = wasm_path(plugins_dir, &manifest.name, &sha);
    let io = |e: std::io::Error| PluginError::Io(format!("writing {}: {e}", path.display()));
    std::fs::create_dir_all(path.parent().unwrap_or(plugins_dir)).map_err(io)?;
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, &package.wasm).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    let now = now_ms();
    Ok(PluginRow {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        api_version: manifest.api_version.clone(),
        manifest: package.manifest_toml.clone(),
        grant_toml: toml::to_string(grant)
            .map_err(|e| PluginError::Rejected(format!("grant: {e}")))?,
        config_json: config.to_string(),
        wasm_sha256: sha,
        wasm_path: path.display().to_string(),
        enabled,
        source: source.as_str().to_string(),
        installed_at: now,
        updated_at: now,
    })
}

/// Removes component files of `name` other than `keep_sha`.
fn prune_files(plugins_dir: &Path, name: &str, keep_sha: Option<&str>) {
    let dir = plugins_dir.join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        if keep_sha.is_none_or(|k| file != format!("{k}.wasm")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if keep_sha.is_none() {
        let _ = std::fs::remove_dir(&dir);
    }
}

/// How the release in `manifest` compares with the installed `row`: by
/// the plugin's version, then by the plugin API version it was built
/// against (a first-party plugin rebuilt for a newer host API is newer
/// even when its own version stayed). `None` if either does not parse.
fn compare_release(manifest: &Manifest, row: &PluginRow) -> Option<std::cmp::Ordering> {
    let v = |s: &str| semver::Version::parse(s).ok();
    let declared = (v(&manifest.version)?, v(&manifest.api_version)?);
    let installed = (v(&row.version)?, v(&row.api_version)?);
    Some(declared.cmp(&installed))
}

/// `wake 0.1.0 (plugin API 0.1.1)`.
fn release(name: &str, version: &str, api_version: &str) -> String {
    format!("{name} {version} (plugin API {api_version})")
}

fn release_of(row: &PluginRow) -> String {
    release(&row.name, &row.version, &row.api_version)
}

fn release_of_manifest(m: &Manifest) -> String {
    release(&m.name, &m.version, &m.api_version)
}

/// What was last applied to the runtime for a plugin.
#[derive(Debug, Clone, PartialEq)]
struct Applied {
    sha: String,
    grant_toml: String,
    config_json: String,
    enabled: bool,
}

impl Applied {
    fn of(row: &PluginRow) -> Self {
        Self {
            sha: row.wasm_sha256.clone(),
            grant_toml: row.grant_toml.clone(),
            config_json: row.config_json.clone(),
            enabled: row.enabled,
        }
    }
}

/// The host's plugin manager.
pub struct PluginManager {
    runtime: PluginRuntime,
    db: Db,
    dir: PathBuf,
    applied: Mutex<HashMap<String, Applied>>,
    load_errors: Mutex<HashMap<String, String>>,
    fingerprint: Mutex<Option<(i64, i64)>>,
    /// Serialises installs, removals and reconciliation.
    ops: tokio::sync::Mutex<()>,
    /// Followers of containers' logs for the plugins' subscriptions.
    log_followers: logs::DockerLogFollowers,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PluginManager {
    /// Builds the runtime with the host's capabilities (`containers`: the
    /// engine and WakeDock's own container, if it runs in one).
    // One argument per host capability the runtime is wired to.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        containers: caps::DockerContainers,
        bus: EventBus,
        registry: prometheus::Registry,
        data_path: &Path,
        limits: &crate::config::PluginRuntimeConfig,
        tasks: crate::tasks::Tasks,
        stacks: (
            Arc<crate::stacks::files::DirFiles>,
            Arc<crate::stacks::Compose>,
        ),
    ) -> anyhow::Result<Self> {
        let dir = data_path.join("plugins");
        std::fs::create_dir_all(&dir)?;
        let docker = containers.docker.clone();
        let log_followers = logs::DockerLogFollowers::new(docker.clone(), tasks.clone());
        let caps = HostCapabilities {
            containers: Arc::new(containers),
            metrics: Arc::new(caps::PromMetrics::new(docker, registry)),
            storage: Arc::new(caps::DbStorage { db: db.clone() }),
            http: Arc::new(caps::ReqwestOutbound::new()?),
            events: Arc::new(caps::BusEvents { bus }),
            log: Arc::new(wakedock_plugin_runtime::caps::TracingLog),
            audit: Arc::new(caps::DbAudit {
                db: db.clone(),
                tasks,
            }),
            files: stacks.0,
            compose: Arc::new(crate::stacks::ComposeCap(stacks.1)),
            logs: Arc::new(log_followers.clone()),
            smtp: Arc::new(smtp::LettreSmtp),
        };
        let config = RuntimeConfig {
            cache_dir: Some(data_path.join("plugin-cache")),
            failure_threshold: limits.failure_threshold,
            backoff_base: limits.failure_backoff.get(),
            backoff_max: limits.failure_backoff_max.get(),
            denial_report_interval: limits.denial_interval.get(),
            ..RuntimeConfig::default()
        };
        let runtime = PluginRuntime::new(config, caps)?;
        Ok(Self {
            runtime,
            db,
            dir,
            applied: Mutex::new(HashMap::new()),
            load_errors: Mutex::new(HashMap::new()),
            fingerprint: Mutex::new(None),
            ops: tokio::sync::Mutex::new(()),
            log_followers,
        })
    }

    /// The followers of containers' logs (their loop runs beside
    /// [`PluginManager::run`]).
    pub fn log_followers(&self) -> &logs::DockerLogFollowers {
        &self.log_followers
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    pub fn plugins_dir(&self) -> &Path {
        &self.dir
    }

    /// Loads (or upgrades to) `row` in the runtime. The component file must
    /// still have the SHA-256 recorded at install.
    async fn apply(&self, row: &PluginRow) -> Result<(), PluginError> {
        let manifest = Manifest::from_toml(&row.manifest)
            .map_err(|e| PluginError::Rejected(format!("stored plugin.toml: {e}")))?;
        let grant = Grant::from_toml(&row.grant_toml)
            .map_err(|e| PluginError::Rejected(format!("stored grant: {e}")))?;
        let config: serde_json::Value = serde_json::from_str(&row.config_json)
            .map_err(|e| PluginError::Rejected(format!("stored config: {e}")))?;
        let wasm =
            wakedock_plugin_runtime::read_verified(Path::new(&row.wasm_path), &row.wasm_sha256)
                .map_err(|e| {
                    PluginError::Rejected(format!(
                    "refusing to load: the component file does not match what was installed ({e})"
                ))
                })?;
        let loaded = self.runtime.plugin_status(&row.name).is_ok();
        if loaded {
            self.runtime
                .upgrade(manifest, &wasm, grant, config)
                .await
                .map_err(rejected)?;
        } else {
            self.runtime
                .load(manifest, &wasm, grant, config)
                .await
                .map_err(rejected)?;
        }
        if row.enabled {
            self.runtime.enable(&row.name).map_err(rejected)?;
        } else {
            self.runtime.disable(&row.name).map_err(rejected)?;
        }
        lock(&self.applied).insert(row.name.clone(), Applied::of(row));
        lock(&self.load_errors).remove(&row.name);
        Ok(())
    }

    /// Validates and installs (or upgrades) a plugin. Nothing is recorded
    /// unless it loads and initialises.
    pub async fn install(
        &self,
        package: PluginPackage,
        grant: &GrantSpec,
        config: Option<serde_json::Value>,
        enabled: bool,
        source: Source,
    ) -> Result<PluginInfo, PluginError> {
        let _guard = self.ops.lock().await;
        let manifest = package.manifest()?;
        let grant = grant.resolve(&manifest).map_err(PluginError::Rejected)?;
        let config = config.unwrap_or(serde_json::Value::Null);
        if !(config.is_null() || config.is_object()) {
            return Err(PluginError::Rejected("config must be a JSON object".into()));
        }
        let row = store_files(
            &self.dir, &manifest, &package, &grant, &config, enabled, source,
        )?;
        if let Err(e) = self.apply(&row).await {
            // Keep the old version's file if one is installed.
            let old = lock(&self.applied).get(&row.name).map(|a| a.sha.clone());
            if old.as_deref() != Some(row.wasm_sha256.as_str()) {
                let _ = std::fs::remove_file(&row.wasm_path);
                if old.is_none() {
                    prune_files(&self.dir, &row.name, None);
                }
            }
            return Err(e);
        }
        let name = row.name.clone();
        let keep = row.wasm_sha256.clone();
        self.db.run(move |c| rows::upsert(c, &row)).await?;
        prune_files(&self.dir, &name, Some(&keep));
        self.note_fingerprint().await;
        self.info(&name).await
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginInfo, PluginError> {
        let _guard = self.ops.lock().await;
        let n = name.to_string();
        if !self
            .db
            .run(move |c| rows::set_enabled(c, &n, enabled))
            .await?
        {
            return Err(PluginError::NotFound(name.into()));
        }
        if self.runtime.plugin_status(name).is_ok() {
            let r = if enabled {
                self.runtime.enable(name)
            } else {
                self.runtime.disable(name)
            };
            r.map_err(rejected)?;
            if let Some(a) = lock(&self.applied).get_mut(name) {
                a.enabled = enabled;
            }
        } else if enabled {
            // Not loaded (it failed before): enabling is a fresh attempt.
            let n = name.to_string();
            if let Some(row) = self.db.run(move |c| rows::get(c, &n)).await? {
                self.apply_or_record(&row).await;
            }
        }
        self.note_fingerprint().await;
        self.info(name).await
    }

    /// Replaces the plugin's config (and/or grant) and re-initialises it.
    pub async fn reconfigure(
        &self,
        name: &str,
        config: Option<serde_json::Value>,
        grant: Option<&GrantSpec>,
    ) -> Result<PluginInfo, PluginError> {
        let _guard = self.ops.lock().await;
        let n = name.to_string();
        let mut row = self
            .db
            .run(move |c| rows::get(c, &n))
            .await?
            .ok_or_else(|| PluginError::NotFound(name.into()))?;
        if let Some(config) = config {
            if !(config.is_null() || config.is_object()) {
                return Err(PluginError::Rejected("config must be a JSON object".into()));
            }
            row.config_json = config.to_string();
        }
        if let Some(spec) = grant {
            let manifest = Manifest::from_toml(&row.manifest)
                .map_err(|e| PluginError::Rejected(e.to_string()))?;
            let grant = spec.resolve(&manifest).map_err(PluginError::Rejected)?;
            row.grant_toml =
                toml::to_string(&grant).map_err(|e| PluginError::Rejected(e.to_string()))?;
        }
        self.apply(&row).await?;
        let r = row.clone();
        self.db.run(move |c| rows::upsert(c, &r)).await?;
        self.note_fingerprint().await;
        self.info(name).await
    }

    /// Unloads the plugin and deletes its files, row and storage.
    pub async fn remove(&self, name: &str) -> Result<(), PluginError> {
        let _guard = self.ops.lock().await;
        let n = name.to_string();
        if !self.db.run(move |c| rows::delete(c, &n)).await? {
            return Err(PluginError::NotFound(name.into()));
        }
        let _ = self.runtime.unload(name);
        lock(&self.applied).remove(name);
        lock(&self.load_errors).remove(name);
        prune_files(&self.dir, name, None);
        self.note_fingerprint().await;
        Ok(())
    }

    async fn apply_or_record(&self, row: &PluginRow) {
        if let Err(e) = self.apply(row).await {
            tracing::error!(plugin = %row.name, error = %e, "plugin not loaded");
            // Whatever ran before (an older version) keeps no authority
            // over a file that no longer matches.
            let _ = self.runtime.unload(&row.name);
            lock(&self.applied).insert(row.name.clone(), Applied::of(row));
            lock(&self.load_errors).insert(row.name.clone(), e.to_string());
        }
    }

    async fn note_fingerprint(&self) {
        if let Ok(fp) = self.db.run(rows::fingerprint).await {
            *lock(&self.fingerprint) = Some(fp);
        }
    }

    /// Brings the runtime in line with the database: loads new plugins,
    /// applies changed files, grants, configs and enabled flags, unloads
    /// removed ones. Cheap when nothing changed.
    pub async fn reconcile(&self) -> Result<(), PluginError> {
        let fp = self.db.run(rows::fingerprint).await?;
        if *lock(&self.fingerprint) == Some(fp) {
            return Ok(());
        }
        let _guard = self.ops.lock().await;
        let all = self.db.run(rows::list).await?;
        for row in &all {
            let current = lock(&self.applied).get(&row.name).cloned();
            if current.as_ref() == Some(&Applied::of(row)) {
                continue;
            }
            match current {
                // Only the enabled flag changed: no reload needed.
                Some(a)
                    if a.sha == row.wasm_sha256
                        && a.grant_toml == row.grant_toml
                        && a.config_json == row.config_json
                        && self.runtime.plugin_status(&row.name).is_ok() =>
                {
                    let r = if row.enabled {
                        self.runtime.enable(&row.name)
                    } else {
                        self.runtime.disable(&row.name)
                    };
                    if let Err(e) = r {
                        tracing::error!(plugin = %row.name, error = %e, "changing plugin state");
                    }
                    lock(&self.applied).insert(row.name.clone(), Applied::of(row));
                }
                _ => self.apply_or_record(row).await,
            }
        }
        let names: Vec<String> = lock(&self.applied).keys().cloned().collect();
        for name in names {
            if !all.iter().any(|r| r.name == name) {
                let _ = self.runtime.unload(&name);
                lock(&self.applied).remove(&name);
                lock(&self.load_errors).remove(&name);
                prune_files(&self.dir, &name, None);
                tracing::info!(plugin = %name, "plugin removed");
            }
        }
        *lock(&self.fingerprint) = Some(fp);
        Ok(())
    }

    /// Installs, upgrades or removes the plugins the config file declares
    /// (`source = config`), then loads everything else from the database.
    pub async fn start(&self, declared: &[crate::config::PluginDecl]) -> anyhow::Result<()> {
        self.reconcile().await?;
        let existing = self.db.run(rows::list).await?;
        let mut declared_names = Vec::new();
        let mut unreadable = 0;
        for decl in declared {
            let package = match PluginPackage::from_files(&decl.manifest, &decl.wasm) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(manifest = %decl.manifest.display(), error = %e, "declared plugin not installed");
                    unreadable += 1;
                    continue;
                }
            };
            let manifest = match package.manifest() {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(manifest = %decl.manifest.display(), error = %e, "declared plugin not installed");
                    unreadable += 1;
                    continue;
                }
            };
            let name = manifest.name.clone();
            declared_names.push(name.clone());
            let sha = wakedock_plugin_runtime::sha256_hex(&package.wasm);
            let config = decl.config.clone().unwrap_or(serde_json::Value::Null);
            // The grant as the declaration resolves it now (an invalid one
            // is reported by the install below).
            let wanted = decl.grant.resolve(&manifest).ok();
            let row = existing
                .iter()
                .find(|r| r.name == name && r.source == Source::Config.as_str());
            // A copy of the same plugin installed through the API or the
            // CLI (a user of an earlier release installed the first-party
            // wake plugin that way): the declared one replaces it unless
            // the installed copy is newer. Its storage is kept either way.
            let replaced = existing
                .iter()
                .find(|r| r.name == name && r.source != Source::Config.as_str());
            if let Some(installed) = replaced {
                if compare_release(&manifest, installed) == Some(std::cmp::Ordering::Less) {
                    tracing::warn!(
                        plugin = %name,
                        installed = %release_of(installed),
                        declared = %release_of_manifest(&manifest),
                        source = %installed.source,
                        "keeping the installed copy: it is newer than the one declared in the config file"
                    );
                    continue;
                }
            }
            let stored = row.and_then(|r| Grant::from_toml(&r.grant_toml).ok());
            let grant_changed = row.is_some() && stored != wanted;
            let unchanged = row.is_some_and(|r| {
                r.wasm_sha256 == sha
                    && r.enabled == decl.enabled
                    && serde_json::from_str::<serde_json::Value>(&r.config_json)
                        .ok()
                        .as_ref()
                        == Some(&config)
            }) && !grant_changed
                && lock(&self.load_errors).get(&name).is_none();
            if unchanged {
                continue;
            }
            match self
                .install(
                    package,
                    &decl.grant,
                    Some(config),
                    decl.enabled,
                    Source::Config,
                )
                .await
            {
                Ok(p) => {
                    tracing::info!(plugin = %p.name, version = %p.version, "declared plugin installed");
                    if let Some(installed) = replaced {
                        self.audit_replacement(installed, &manifest, None).await;
                    }
                    if grant_changed {
                        self.audit_grant_change(&p.name, stored.as_ref(), wanted.as_ref(), None)
                            .await;
                    }
                }
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "declared plugin not installed");
                    if let Some(installed) = replaced {
                        self.audit_replacement(installed, &manifest, Some(&e)).await;
                    }
                    if grant_changed {
                        // The config file no longer grants what the running
                        // version has: it must not keep running with it.
                        let _ = self.runtime.unload(&name);
                        lock(&self.load_errors).insert(
                            name.clone(),
                            format!("the grant in the config file changed and the plugin could not start with it: {e}"),
                        );
                        self.audit_grant_change(&name, stored.as_ref(), wanted.as_ref(), Some(&e))
                            .await;
                    }
                }
            }
        }
        // Plugins once declared in the config file and no longer there go
        // away; but not while an entry cannot be read (it may be one of
        // them, and removal deletes its storage).
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "not removing undeclared plugins while declared ones cannot be read"
            );
            return Ok(());
        }
        for row in existing {
            if row.source == Source::Config.as_str() && !declared_names.contains(&row.name) {
                tracing::info!(plugin = %row.name, "removing plugin no longer declared in the config file");
                let _ = self.remove(&row.name).await;
            }
        }
        Ok(())
    }

    /// Records that the copy declared in the config file replaced (or
    /// failed to replace: the installed copy then keeps running) one
    /// installed through the API or the CLI.
    async fn audit_replacement(
        &self,
        installed: &PluginRow,
        declared: &Manifest,
        failed: Option<&PluginError>,
    ) {
        let (old, new) = (release_of(installed), release_of_manifest(declared));
        let detail = match failed {
            None => format!(
                "{old}, installed through the {}, replaced by {new} declared in the config file (its storage kept)",
                installed.source
            ),
            Some(e) => format!(
                "{new} declared in the config file could not replace {old}, installed through the {} (kept running): {e}",
                installed.source
            ),
        };
        tracing::info!(plugin = %installed.name, %detail, "plugin upgraded from the config file");
        let mut e = crate::db::audit::NewAuditEntry::new(
            "plugin.upgrade",
            if failed.is_some() {
                "failure"
            } else {
                "success"
            },
        );
        e.actor = Some("config".into());
        e.target = Some(installed.name.clone());
        e.detail = Some(detail);
        if let Err(err) = self.db.run(move |c| crate::db::audit::insert(c, &e)).await {
            tracing::error!(error = %err, plugin = %installed.name, "could not audit the plugin upgrade");
        }
    }

    /// Records that the config file changed a plugin's grant (narrowed or
    /// widened), applied at this start.
    async fn audit_grant_change(
        &self,
        name: &str,
        old: Option<&Grant>,
        new: Option<&Grant>,
        failed: Option<&PluginError>,
    ) {
        let show = |g: Option<&Grant>| {
            g.map(|g| serde_json::to_string(&g.capabilities).unwrap_or_default())
                .unwrap_or_else(|| "none".into())
        };
        tracing::info!(plugin = %name, old = %show(old), new = %show(new), "plugin grant changed in the config file");
        let result = if failed.is_some() {
            "failure"
        } else {
            "success"
        };
        let mut e = crate::db::audit::NewAuditEntry::new("plugin.grant", result);
        e.actor = Some("config".into());
        e.target = Some(name.to_string());
        e.detail = Some(match failed {
            None => format!(
                "grant changed in the config file, applied at start: {} -> {}",
                show(old),
                show(new)
            ),
            Some(err) => format!(
                "grant changed in the config file ({} -> {}); the plugin is stopped: {err}",
                show(old),
                show(new)
            ),
        });
        if let Err(err) = self.db.run(move |c| crate::db::audit::insert(c, &e)).await {
            tracing::error!(error = %err, plugin = %name, "could not audit the grant change");
        }
    }

    pub async fn info(&self, name: &str) -> Result<PluginInfo, PluginError> {
        let n = name.to_string();
        let row = self
            .db
            .run(move |c| rows::get(c, &n))
            .await?
            .ok_or_else(|| PluginError::NotFound(name.into()))?;
        Ok(self.info_of(row))
    }

    pub async fn list(&self) -> Result<Vec<PluginInfo>, PluginError> {
        let all = self.db.run(rows::list).await?;
        Ok(all.into_iter().map(|r| self.info_of(r)).collect())
    }

    fn info_of(&self, row: PluginRow) -> PluginInfo {
        let manifest = Manifest::from_toml(&row.manifest).ok();
        let grant = Grant::from_toml(&row.grant_toml).ok();
        PluginInfo {
            description: manifest
                .as_ref()
                .map(|m| m.description.clone())
                .unwrap_or_default(),
            author: manifest.as_ref().and_then(|m| m.author.clone()),
            requested: manifest
                .as_ref()
                .map(|m| serde_json::to_value(&m.capabilities).unwrap_or_default())
                .unwrap_or_default(),
            granted: grant
                .map(|g| serde_json::to_value(&g.capabilities).unwrap_or_default())
                .unwrap_or_default(),
            config: crate::alerts::config::shown_config(
                &row.name,
                serde_json::from_str(&row.config_json).unwrap_or_default(),
            ),
            status: self.runtime.plugin_status(&row.name).ok(),
            load_error: lock(&self.load_errors).get(&row.name).cloned(),
            source: match row.source.as_str() {
                "cli" => Source::Cli,
                "config" => Source::Config,
                "builtin" => Source::Builtin,
                _ => Source::Api,
            },
            name: row.name,
            version: row.version,
            api_version: row.api_version,
            enabled: row.enabled,
            sha256: row.wasm_sha256,
            installed_at: row.installed_at,
            updated_at: row.updated_at,
        }
    }

    /// Feeds container events and other plugins' events to plugins, and
    /// reconciles with the database every two seconds, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        docker: Arc<DockerEngine>,
        bus: EventBus,
        tasks: crate::tasks::Tasks,
        shutdown: CancellationToken,
    ) {
        let mut container_events = docker.subscribe();
        let mut bus_events = bus.subscribe();
        let mut every = tokio::time::interval(Duration::from_secs(2));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {
                    if let Err(e) = self.reconcile().await {
                        tracing::warn!(error = %e, "plugin reconcile");
                    }
                }
                ev = container_events.recv() => match ev {
                    Ok(ev) => {
                        if let Some(event) = container_event(&ev) {
                            let me = self.clone();
                            tasks.spawn("plugin event delivery", async move {
                                me.runtime.dispatch_event(event).await;
                            });
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "plugins missed container events");
                    }
                    Err(_) => container_events = docker.subscribe(),
                },
                ev = bus_events.recv() => match ev {
                    Ok(ev) => {
                        let me = self.clone();
                        tasks.spawn("plugin event delivery", async move {
                            me.deliver_bus_event(ev).await
                        });
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "plugins missed bus events");
                    }
                    Err(_) => bus_events = bus.subscribe(),
                },
            }
        }
    }

    /// A plugin's event goes to the plugins whose grant subscribes to its
    /// topic, never back to its publisher (which could otherwise loop); the
    /// runtime applies both rules.
    async fn deliver_bus_event(&self, ev: crate::events::BusEvent) {
        let event = Event::Plugin(PluginEvent {
            source: ev.source,
            topic: ev.topic,
            payload: ev.payload,
            at_ms: ev.at_ms,
        });
        self.runtime.dispatch_event(event).await;
    }
}

/// Docker's event to the plugin API's, for the kinds plugins receive.
fn container_event(ev: &crate::docker::ContainerEvent) -> Option<Event> {
    let (kind, health) = match ev.action.as_str() {
        "start" => (ContainerEventKind::Started, None),
        "stop" => (ContainerEventKind::Stopped, None),
        "die" => (ContainerEventKind::Died, None),
        a => {
            let h = a.strip_prefix("health_status: ")?;
            (ContainerEventKind::HealthChanged, Some(caps::health_of(h)))
        }
    };
    Some(Event::Container(ContainerEvent {
        kind,
        container_id: ev.id.clone(),
        container_name: ev.name.clone().unwrap_or_default(),
        labels: ev.container_labels().collect(),
        health: health.unwrap_or(wakedock_plugin_runtime::caps::Health::None),
        exit_code: ev.exit_code(),
        at_ms: ev.at_ms(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(version: &str, api_version: &str) -> PluginRow {
        PluginRow {
            name: "wake".into(),
            version: version.into(),
            api_version: api_version.into(),
            manifest: String::new(),
            grant_toml: String::new(),
            config_json: "null".into(),
            wasm_sha256: String::new(),
            wasm_path: String::new(),
            enabled: true,
            source: "api".into(),
            installed_at: 0,
            updated_at: 0,
        }
    }

    /// The first-party wake plugin as this build bundles it.
    fn bundled() -> Manifest {
        Manifest::from_toml(include_str!("../../../plugins/wake/plugin.toml")).unwrap()
    }

    #[test]
    fn a_release_is_ordered_by_version_then_plugin_api() {
        use std::cmp::Ordering::*;
        let m = bundled();
        let v: semver::Version = m.version.parse().unwrap();
        let api: semver::Version = m.api_version.parse().unwrap();
        let older_api = semver::Version::new(api.major, api.minor, api.patch - 1);
        // v0.1.0's wake plugin: the same version, built for API 0.1.1.
        let cmp = |version: &semver::Version, api: &semver::Version| {
            compare_release(&m, &installed(&version.to_string(), &api.to_string()))
        };
        assert_eq!(cmp(&v, &older_api), Some(Greater));
        assert_eq!(cmp(&v, &api), Some(Equal));
        let newer = semver::Version::new(v.major, v.minor, v.patch + 1);
        assert_eq!(cmp(&newer, &older_api), Some(Less), "a newer version wins");
        assert_eq!(compare_release(&m, &installed("not-semver", "0.1.0")), None);
    }
}
