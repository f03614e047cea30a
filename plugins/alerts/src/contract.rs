//! The host events the alerts plugin reads, defined once: the host
//! serializes them, the plugin parses them (serde only, no SDK).
//!
//! Both come on the host's event bus with source `host`:
//! - [`topics::CONTAINER_EXITED`]: a container died, with what the
//!   engine's bare `die` event lacks: whether the OOM killer ended it,
//!   its restart policy, and whether WakeDock itself stopped it (a user
//!   through the API or UI, or a plugin such as wake putting it to sleep);
//! - [`topics::HEALTH`]: a part of the host went down or came back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod topics {
    /// [`super::ContainerExited`].
    pub const CONTAINER_EXITED: &str = "host.container-exited";
    /// [`super::HostHealth`].
    pub const HEALTH: &str = "host.health";
}

/// A container stopped running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerExited {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub exit_code: Option<i32>,
    /// The kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// Docker's restart policy name (`no`, `always`, `on-failure`,
    /// `unless-stopped`); empty when unknown.
    pub restart_policy: String,
    /// Who in WakeDock asked for this stop (`user:alice`, `plugin:wake`),
    /// if WakeDock did.
    pub stopped_by: Option<String>,
    /// Unix time (ms) of the engine's event.
    pub at_ms: u64,
}

/// Which part of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Engine,
    Database,
    Plugin,
}

/// A part of the host changed between up and down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHealth {
    pub component: Component,
    /// The plugin's name, for [`Component::Plugin`].
    #[serde(default)]
    pub name: Option<String>,
    pub up: bool,
    /// Why it is down.
    #[serde(default)]
    pub detail: Option<String>,
    pub at_ms: u64,
}

impl HostHealth {
    /// The alert target: `engine`, `database` or `plugin:<name>`.
    pub fn target(&self) -> String {
        match self.component {
            Component::Engine => "engine".into(),
            Component::Database => "database".into(),
            Component::Plugin => format!("plugin:{}", self.name.as_deref().unwrap_or("?")),
        }
    }
}
