//! Prometheus metrics: HTTP traffic by route and status, containers by
//! state, and the process itself. Exposed at `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

pub struct Metrics {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    containers: IntGaugeVec,
    /// Wake-on-request: see [`WakeMetrics`].
    pub wake: WakeMetrics,
    /// Database size, retention, backups: see [`DataMetrics`].
    pub data: DataMetrics,
}

/// What the data layer reports: the database's size, what retention
/// deleted, the last backup.
#[derive(Clone)]
pub struct DataMetrics {
    pub database_size: prometheus::IntGauge,
    pub audit_pruned: prometheus::IntCounter,
    pub backup_last_success: prometheus::IntGauge,
    pub backup_last_size: prometheus::IntGauge,
    pub backups_failed: prometheus::IntCounter,
}

impl std::fmt::Debug for DataMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataMetrics").finish_non_exhaustive()
    }
}

impl DataMetrics {
    fn new(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            database_size: prometheus::IntGauge::new(
                "database_size_bytes",
                "Size of the database on disk",
            )?,
            audit_pruned: prometheus::IntCounter::new(
                "audit_entries_pruned_total",
                "Audit entries deleted by retention",
            )?,
            backup_last_success: prometheus::IntGauge::new(
                "backup_last_success_timestamp_seconds",
                "When the last successful backup was taken (Unix seconds)",
            )?,
            backup_last_size: prometheus::IntGauge::new(
                "backup_last_size_bytes",
                "Size of the last successful backup",
            )?,
            backups_failed: prometheus::IntCounter::new(
                "backups_failed_total",
                "Backups that failed",
            )?,
        };
        registry.register(Box::new(m.database_size.clone()))?;
        registry.register(Box::new(m.audit_pruned.clone()))?;
        registry.register(Box::new(m.backup_last_success.clone()))?;
        registry.register(Box::new(m.backup_last_size.clone()))?;
        registry.register(Box::new(m.backups_failed.clone()))?;
        Ok(m)
    }

    /// Reads the database's size into the gauge (a failure leaves it).
    pub async fn refresh_size(&self, db: &crate::db::Db) -> Option<i64> {
        match db.size_bytes().await {
            Ok(n) => {
                self.database_size.set(n);
                Some(n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the database size");
                None
            }
        }
    }
}

/// Wake-on-request metrics kept by the host (the wake plugin adds
/// `wakedock_plugin_wake_sessions_active` and `..._sleeps_total`).
#[derive(Clone)]
pub struct WakeMetrics {
    /// Wakes by service and result (`ok`, `timeout`, `failed`, `error`).
    pub wakes: IntCounterVec,
    /// Time from the first request that asked to the service being ready.
    pub duration: HistogramVec,
    /// Requests waiting for a wake right now, by service.
    pub held: IntGaugeVec,
}

impl WakeMetrics {
    fn new(registry: &Registry) -> anyhow::Result<Self> {
        let wakes = IntCounterVec::new(
            Opts::new("wakes_total", "Wakes by service and result"),
            &["service", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wake_duration_seconds",
                "Time from the wake request to the service being ready",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            &["service"],
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "wake_requests_held",
                "Wake requests waiting for their service to be ready",
            ),
            &["service"],
        )?;
        registry.register(Box::new(wakes.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(held.clone()))?;
        Ok(Self {
            wakes,
            duration,
            held,
        })
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("wakedock".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to response head, by method, route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route", "status"],
        )?;
        let containers = IntGaugeVec::new(
            Opts::new("containers", "Containers on the engine by state"),
            &["state"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(containers.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let wake = WakeMetrics::new(&registry)?;
        let data = DataMetrics::new(&registry)?;
        Ok(Self {
            data,
            registry,
            http_requests,
            http_duration,
            containers,
            wake,
        })
    }

    /// Sets the container gauges from a fresh list.
    pub fn set_containers(&self, states: &[String]) {
        self.containers.reset();
        for s in [
            "running",
            "exited",
            "paused",
            "created",
            "restarting",
            "dead",
        ] {
            self.containers.with_label_values(&[s]).set(0);
        }
        for s in states {
            self.containers.with_label_values(&[s.as_str()]).inc();
        }
    }

    pub fn render(&self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}

/// Middleware that counts and times every request by its route template
/// (never the raw path, which would explode label cardinality).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let m = &state.metrics;
    let status = response.status();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    m.http_requests.with_label_values(&labels).inc();
    m.http_duration
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}
