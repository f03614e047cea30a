//! Logging setup: tracing to stderr, optionally also to a file, as text or
//! JSON, filtered by `logging.level` (or `RUST_LOG` when set).

use std::sync::Mutex;

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

pub fn init(cfg: &LoggingConfig) -> anyhow::Result<()> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let file = match &cfg.file {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("opening log file {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (cfg.format, file) {
        (LogFormat::Text, None) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Text, Some(f)) => builder.with_writer(std::io::stderr.and(f)).try_init(),
        (LogFormat::Json, None) => builder.json().with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, Some(f)) => builder
            .json()
            .with_writer(std::io::stderr.and(f))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber: not an error.
    let _ = result;
    Ok(())
}
