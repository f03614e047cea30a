//! # WakeDock plugin runtime
//!
//! Runs WakeDock plugins — WebAssembly components built against the WIT
//! package in `plugin-api/wit` — in wasmtime, with:
//!
//! - **capabilities behind narrow traits** ([`caps`]): the host implements
//!   [`ContainerHost`], [`MetricsHost`], [`StorageHost`], [`HttpOutbound`],
//!   [`SmtpHost`], [`EventSink`], [`LogSink`], [`AuditSink`] and [`ContainerLogsHost`]
//!   ([`logs`]: log subscriptions and their delivery); [`testing`] has
//!   in-memory versions;
//! - **manifest + grant** ([`manifest`]): a plugin gets the intersection of
//!   what its `plugin.toml` requests and what the admin granted, checked
//!   twice: a component importing an interface its manifest does not
//!   request is refused at load, and only requested interfaces are linked;
//!   every host function then checks the effective permission and scope
//!   (selector, access level, host allowlist, topics, quotas), returning
//!   `permission-denied` and auditing refusals, so an admin may grant part
//!   of a request;
//! - **limits**: memory per instance, CPU per call (epoch deadlines), wall
//!   time per call (tokio timeout, host calls included), instances per
//!   plugin, tables; failures disable a plugin with exponential back-off
//!   and automatic retry;
//! - **no ambient authority**: WASI is linked with a deny-all context;
//! - **an on-disk compile cache** keyed by the component's SHA-256 and the
//!   engine configuration.
//!
//! See [`PluginRuntime`] for the instance model and threading.
//!
//! ```ignore
//! let runtime = PluginRuntime::new(RuntimeConfig::default(), capabilities)?;
//! let manifest = Manifest::from_toml(&std::fs::read_to_string("plugin.toml")?)?;
//! let grant = Grant::approve_all(&manifest);
//! runtime.load(manifest, &wasm_bytes, grant, serde_json::Value::Null).await?;
//! let resp = runtime.handle_http("example", request, auth).await?;
//! ```

pub mod cache;
pub mod caps;
pub mod error;
mod host;
pub use host::{check_project_name, check_stacks_path};
pub mod logs;
pub mod manifest;
mod runtime;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Host bindings generated from `plugin-api/wit` (the same files the guest
/// SDK uses; never copied).
#[allow(missing_docs, clippy::all)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../plugin-api/wit",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use cache::CacheOutcome;
pub use caps::{
    AuditEntry, AuditSink, AuthContext, BoxFuture, CapError, CapResult, ContainerHost,
    ContainerLogsHost, Delivered, EventSink, HostCapabilities, HttpOutbound, LogDelivery,
    LogFollow, LogLine, LogSink, LogStream, MetricsHost, SmtpHost, StorageHost,
};
pub use error::{CallError, ManifestError, RuntimeError};
pub use manifest::{Grant, Manifest, PageEntry, Permissions, HOST_API_VERSION};
pub use runtime::{
    panic_message, EffectiveLimits, LoadReport, PluginHealth, PluginId, PluginRuntime,
    PluginStatus, RuntimeConfig,
};

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes` (the host verifies plugin files with it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a file and checks its SHA-256 against `expected_hex`
/// (case-insensitive). Returns the bytes if it matches.
pub fn read_verified(path: &std::path::Path, expected_hex: &str) -> Result<Vec<u8>, VerifyError> {
    let bytes = std::fs::read(path).map_err(|e| VerifyError::Io(path.display().to_string(), e))?;
    let actual = sha256_hex(&bytes);
    if actual.eq_ignore_ascii_case(expected_hex.trim()) {
        Ok(bytes)
    } else {
        Err(VerifyError::Mismatch {
            path: path.display().to_string(),
            expected: expected_hex.to_owned(),
            actual,
        })
    }
}

/// Failure of [`read_verified`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{path}: SHA-256 is {actual}, expected {expected}")]
    Mismatch {
        path: String,
        expected: String,
        actual: String,
    },
}
