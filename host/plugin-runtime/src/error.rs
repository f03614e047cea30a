//! Error types. Every message says which plugin/field/interface is at fault
//! so it can be shown to an administrator as is.

use std::time::SystemTime;

/// A problem with `plugin.toml` or a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML at all.
    #[error("manifest is not valid TOML: {0}")]
    Syntax(String),
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("manifest field `{field}`: {message}")]
    Field { field: String, message: String },
}

/// Errors of the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error("plugin is built for plugin API {plugin}, but this host provides API {host} (same major version required, and for 0.x the same minor; host minor must be >= plugin minor)")]
    IncompatibleApi { plugin: String, host: String },

    #[error("plugin `{plugin}`: the component imports `{import}`, which is a different plugin API version than this host provides ({host}); rebuild the plugin against wakedock-plugin-sdk {host}")]
    ImportVersionMismatch {
        plugin: String,
        import: String,
        host: String,
    },

    #[error("plugin `{plugin}`: the component imports `{import}`, but {reason}")]
    ImportNotGranted {
        plugin: String,
        import: String,
        reason: String,
    },

    #[error("plugin `{plugin}`: the component does not export `{export}` (was it built with wakedock-plugin-sdk's export_plugin!?)")]
    MissingExport { plugin: String, export: String },

    #[error("plugin `{plugin}`: not a valid WebAssembly component: {message}")]
    MalformedWasm { plugin: String, message: String },

    #[error("plugin `{plugin}`: init failed: {message}")]
    InitFailed { plugin: String, message: String },

    #[error("plugin `{plugin}`: invalid config: {message}")]
    InvalidConfig { plugin: String, message: String },

    #[error("plugin `{0}` is already loaded (use upgrade to replace it)")]
    AlreadyLoaded(String),

    #[error("plugin `{0}` is not loaded")]
    NotLoaded(String),

    #[error("plugin `{0}` is disabled")]
    Disabled(String),

    #[error("plugin `{plugin}` is failing ({reason}); retrying after {retry_at:?}")]
    Failed {
        plugin: String,
        reason: String,
        retry_at: SystemTime,
    },

    #[error("plugin `{plugin}`: {kind}")]
    Call { plugin: String, kind: CallError },

    #[error("plugin `{plugin}`: {message}")]
    Instantiate { plugin: String, message: String },

    #[error("compile cache: {0}")]
    Cache(String),

    #[error("wasmtime engine: {0}")]
    Engine(String),
}

/// Why one call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("exceeded its CPU budget of {limit_ms} ms per call")]
    CpuLimit { limit_ms: u64 },
    #[error("exceeded its wall-time limit of {limit_ms} ms per call")]
    WallTimeout { limit_ms: u64 },
    #[error("exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: u64 },
    #[error("exceeded its table limit")]
    TableLimit,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("all {0} instances busy for too long")]
    Busy(u32),
}
