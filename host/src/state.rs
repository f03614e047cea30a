//! `AppState`: the one value every handler receives.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::jwt::TokenKeys;
use crate::auth::ratelimit::RateLimits;
use crate::config::Config;
use crate::db::audit::{self, NewAuditEntry};
use crate::db::Db;
use crate::docker::DockerEngine;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::plugins::PluginManager;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub docker: Arc<DockerEngine>,
    pub keys: Arc<TokenKeys>,
    pub limits: Arc<RateLimits>,
    pub metrics: Arc<Metrics>,
    pub bus: EventBus,
    pub plugins: Arc<PluginManager>,
    pub wake: Arc<crate::wake::WakeHub>,
    /// Caddy sites from container labels.
    pub routes: Arc<crate::routes::RouteHub>,
    /// WakeDock's own container (id), when it runs in one: never stopped,
    /// paused or removed through the API.
    pub own_container: Option<String>,
    /// Compose stacks: actions and their live output (issue 11).
    pub compose: Arc<crate::stacks::Compose>,
    /// The browser UI's memory: recent events, resource samples.
    pub ui: Arc<crate::ui::UiState>,
    /// Tokens accepted from Caddy bridges: `security.bridge_tokens` plus
    /// `WAKEDOCK_BRIDGE_TOKEN`.
    pub bridge_tokens: Arc<Vec<String>>,
    /// Backups: the directory, the schedule, the last outcome.
    pub backups: Arc<crate::backup::schedule::Backups>,
    /// Cancelled when the server shuts down; long-lived responses (log
    /// follow) end on it so a graceful shutdown does not wait forever.
    pub shutdown: CancellationToken,
    /// Background loops and jobs, which shutdown waits for.
    pub tasks: crate::tasks::Tasks,
}

impl AppState {
    /// Records an audit entry. A failure to record is logged, never turned
    /// into a failure of the action itself (which has already happened).
    pub async fn audit(&self, entry: NewAuditEntry) {
        let e = entry.clone();
        if let Err(err) = self.db.run(move |c| audit::insert(c, &e)).await {
            tracing::error!(error = %err, action = %entry.action, "could not write audit entry");
        }
    }

    /// Records an audit entry without waiting for it (shutdown does).
    pub fn audit_later(&self, entry: NewAuditEntry) {
        let state = self.clone();
        self.tasks
            .spawn("audit write", async move { state.audit(entry).await });
    }
}
