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

/// How many alerts fire now (the alerts plugin's `GET /summary`, asked as
/// `username`, a viewer's right), or `None` when the plugin does not run
/// or does not answer within a second.
pub async fn firing_count(plugins: &crate::plugins::PluginManager, username: &str) -> Option<u64> {
    use wakedock_plugin_runtime::caps::{AuthContext, HttpRequest, Role};
    let request = HttpRequest {
        method: "GET".into(),
        path: "/summary".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    };
    let caller = AuthContext {
        user_id: String::new(),
        username: username.to_owned(),
        role: Role::Viewer,
        permissions: vec![],
    };
    let call = plugins
        .runtime()
        .handle_http(ALERTS_PLUGIN, request, caller);
    let r = tokio::time::timeout(std::time::Duration::from_secs(1), call)
        .await
        .ok()?
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v.get("firing")?.as_u64()
}
