//! Logging setup: tracing to stderr, optionally also to a file, as text or
//! JSON, filtered by `logging.level` (or `RUST_LOG` when set).
//!
//! Colour (ANSI codes) only where a person reads it: on stderr when it is a
//! terminal and `NO_COLOR` is not set; never in the log file, a pipe or a
//! journal.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Whether text written to stderr may carry colour codes.
pub fn stderr_wants_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
}

pub fn init(cfg: &LoggingConfig) -> anyhow::Result<()> {
    // The configuration has checked RUST_LOG already.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let mut layers = vec![layer(cfg.format, std::io::stderr, stderr_wants_colour())];
    if let Some(path) = &cfg.file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening log file {}: {e}", path.display()))?;
        layers.push(layer(cfg.format, Mutex::new(file), false));
    }
    // A second init (tests) keeps the first subscriber: not an error.
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
    Ok(())
}
