//! What the host does for the alerts plugin (issue 12):
//! - [`config`]: hands it the install's scope and derives its outbound
//!   allowlist from the channels of the config file;
//! - [`events`]: publishes `host.container-exited` (a container's death
//!   with what the engine's bare `die` lacks: OOM kill, restart policy,
//!   whether WakeDock asked for it) and `host.health` (the engine or a
//!   plugin went down or came back).

pub mod config;
pub mod events;

/// The alerts plugin's name.
pub const ALERTS_PLUGIN: &str = "alerts";

pub use events::run;
