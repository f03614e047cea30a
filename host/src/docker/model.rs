//! The container shapes WakeDock exposes, independent of bollard's generated
//! models (which change with every Docker API version).

use std::collections::BTreeMap;

use serde::Serialize;

/// A container in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContainerSummary {
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, exited, removing or dead.
    pub state: String,
    /// Docker's human status, e.g. "Up 3 minutes (healthy)".
    pub status: String,
    /// healthy, unhealthy, starting, or none when there is no healthcheck.
    pub health: String,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PortMapping {
    pub private_port: u16,
    pub public_port: Option<u16>,
    pub ip: Option<String>,
    /// tcp, udp or sctp.
    pub protocol: String,
}

/// One container in detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub state: String,
    pub health: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: i64,
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub mounts: Vec<MountInfo>,
    pub env_count: usize,
    pub command: Vec<String>,
    /// Whether the image or config defines a healthcheck.
    pub has_healthcheck: bool,
    /// The healthcheck's test (`["CMD", ...]` or `["CMD-SHELL", "..."]`).
    pub healthcheck_test: Option<Vec<String>>,
    /// The container's address on its first network, if it has one.
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MountInfo {
    /// bind, volume, tmpfs...
    pub kind: String,
    pub source: Option<String>,
    pub destination: String,
    pub read_only: bool,
}

/// A one-shot resource sample.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContainerStats {
    pub id: String,
    /// Percent of one CPU (200 = two full cores), like `docker stats`.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub memory_percent: f64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub pids: Option<u64>,
}

/// One log line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    /// stdout or stderr.
    pub stream: String,
    pub line: String,
}

/// What changed on a container, from the engine's event stream.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContainerEvent {
    pub id: String,
    pub name: Option<String>,
    /// Docker's action: start, die, stop, health_status: healthy, ...
    pub action: String,
    /// Unix nanoseconds.
    pub time_nano: i64,
    pub labels: BTreeMap<String, String>,
}

impl ContainerEvent {
    /// The container's own labels: the event's attributes without the
    /// `exitCode` Docker adds to a `die`.
    pub fn container_labels(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.labels
            .iter()
            .filter(|(k, _)| k.as_str() != "exitCode")
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    /// The exit code of a `die`.
    pub fn exit_code(&self) -> Option<i32> {
        self.labels.get("exitCode").and_then(|c| c.parse().ok())
    }

    /// Unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        (self.time_nano / 1_000_000) as u64
    }
}
