//! Routes from container labels (issue 13): every container labelled
//! `wakedock.host` (+ `wakedock.port`), running or stopped, becomes a site
//! the Caddy bridge serves, with no Caddyfile to edit.
//!
//! [`RouteHub::run`] keeps the table in step with the engine: a full listing
//! at start, again on every container `create`/`destroy`/`rename` event
//! that carries the label (bursts are coalesced into one listing), when the
//! engine comes back after an outage, and every 30 s as a safety net. The
//! labels are read by the wake plugin crate's pure [`route`] module (the
//! same validation style as the service labels). Bridges subscribe to the
//! resolved table (`GET /api/v1/routes/subscribe`, [`crate::api::routes`])
//! and route by Host header from their copy, so a proxied request never
//! calls the host.
//!
//! The table only depends on labels and names, not on whether a container
//! runs: a sleeping service keeps its route and its next request wakes it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use wakedock_plugin_wake::route::{self, RouteContainer, RouteSet, HOST_LABEL};
use wakedock_plugin_wake::service::LabeledContainer;

use crate::docker::DockerEngine;

/// A full listing this often, whatever the events said.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How often a failed listing is retried, and the engine's state looked at.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Actions that can change the table (labels never change on a container;
/// start/stop do not matter: routes outlive sleep).
const TABLE_ACTIONS: &[&str] = &["create", "destroy", "rename"];

/// The table at one point in time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteTable {
    /// Bumped on every change.
    pub generation: u64,
    /// Whether the engine has been listed at least once.
    pub loaded: bool,
    /// Why the last listing failed, if it did (the table keeps its last
    /// good contents meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_error: Option<String>,
    #[serde(flatten)]
    pub set: RouteSet,
}

impl RouteTable {
    /// Conflicts and label errors as sentences (log, UI, `/health`).
    pub fn problems(&self) -> Vec<String> {
        self.set
            .conflicts
            .iter()
            .map(|c| c.message.clone())
            .chain(self.set.errors.iter().map(|e| e.to_string()))
            .collect()
    }
}

/// The latest route table, and a way to wait for the next one.
#[derive(Debug)]
pub struct RouteHub {
    tx: watch::Sender<Arc<RouteTable>>,
    /// Which containers the table considers (the install's scope).
    labels: Vec<String>,
}

impl RouteHub {
    /// `scope`: extra label filters (`key=value`) a container must carry to
    /// get a route; empty for every container on the engine.
    pub fn new(scope: Vec<String>) -> Arc<Self> {
        let mut labels = vec![HOST_LABEL.to_owned()];
        labels.extend(scope);
        Arc::new(Self {
            tx: watch::channel(Arc::new(RouteTable::default())).0,
            labels,
        })
    }

    pub fn current(&self) -> Arc<RouteTable> {
        self.tx.borrow().clone()
    }

    /// Sees the current table at once, then each change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RouteTable>> {
        self.tx.subscribe()
    }

    /// Lists the labelled containers and publishes the table if it changed.
    pub async fn refresh(&self, docker: &DockerEngine) {
        let listed = docker.list(&self.labels).await;
        let prev = self.current();
        let next = match listed {
            Ok(list) => {
                let containers: Vec<RouteContainer> = list
                    .into_iter()
                    .map(|c| RouteContainer {
                        container: LabeledContainer {
                            name: c.name,
                            labels: c.labels,
                        },
                        created: c.created,
                    })
                    .collect();
                RouteTable {
                    generation: prev.generation,
                    loaded: true,
                    engine_error: None,
                    set: route::routes_from_labels(&containers),
                }
            }
            Err(e) => RouteTable {
                engine_error: Some(e.to_string()),
                ..(*prev).clone()
            },
        };
        if next.loaded == prev.loaded
            && next.engine_error == prev.engine_error
            && next.set == prev.set
        {
            return;
        }
        log_changes(&prev, &next);
        let next = RouteTable {
            generation: prev.generation + 1,
            ..next
        };
        self.tx.send_replace(Arc::new(next));
    }

    /// Keeps the table in step with the engine until `shutdown`.
    pub async fn run(self: Arc<Self>, docker: Arc<DockerEngine>, shutdown: CancellationToken) {
        let mut events = docker.subscribe();
        self.refresh(&docker).await;
        let mut was_up = docker.is_up();
        let mut since_full = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(RETRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ev) => relevant(&ev.action, &ev.labels),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let up = docker.is_up();
                    let came_back = up && !was_up;
                    was_up = up;
                    came_back
                        || self.current().engine_error.is_some()
                        || since_full.elapsed() >= RESYNC_EVERY
                }
            };
            if !due {
                continue;
            }
            // Coalesce a burst (a `compose up` of many containers): drain
            // what is already queued, then list once.
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
            self.refresh(&docker).await;
            since_full = tokio::time::Instant::now();
        }
    }
}

fn relevant(action: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.contains_key(HOST_LABEL) && TABLE_ACTIONS.contains(&action)
}

/// Logs what changed: routes added and removed at info, each new conflict
/// or label error once at warn (not again on every listing).
fn log_changes(prev: &RouteTable, next: &RouteTable) {
    let hosts = |t: &RouteTable| -> BTreeSet<String> {
        t.set.routes.iter().map(|r| r.host.clone()).collect()
    };
    let (before, after) = (hosts(prev), hosts(next));
    for added in after.difference(&before) {
        if let Some(r) = next.set.routes.iter().find(|r| &r.host == added) {
            tracing::info!(host = %r.host, service = ?r.service, upstreams = ?r.upstreams, "route added");
        }
    }
    for removed in before.difference(&after) {
        tracing::info!(host = %removed, "route removed");
    }
    let old: BTreeSet<String> = prev.problems().into_iter().collect();
    for p in next.problems() {
        if !old.contains(&p) {
            tracing::warn!(problem = %p, "route labels");
        }
    }
    if next.engine_error.is_some() && prev.engine_error.is_none() {
        tracing::warn!(error = ?next.engine_error, "routes: listing containers failed; keeping the last table");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_table_changing_events_of_labelled_containers_count() {
        let mut labels = std::collections::BTreeMap::new();
        assert!(!relevant("create", &labels));
        labels.insert(HOST_LABEL.to_string(), "a.example.com".to_string());
        for a in ["create", "destroy", "rename"] {
            assert!(relevant(a, &labels), "{a}");
        }
        for a in ["start", "die", "stop", "health_status: healthy"] {
            assert!(!relevant(a, &labels), "{a}");
        }
    }

    #[test]
    fn problems_list_conflicts_then_label_errors() {
        let set = route::routes_from_labels(&[
            RouteContainer {
                container: LabeledContainer::new(
                    "a",
                    [("wakedock.host", "x.example.com"), ("wakedock.port", "80")],
                ),
                created: 1,
            },
            RouteContainer {
                container: LabeledContainer::new(
                    "b",
                    [("wakedock.host", "x.example.com"), ("wakedock.port", "80")],
                ),
                created: 2,
            },
            RouteContainer {
                container: LabeledContainer::new("c", [("wakedock.host", "c.example.com")]),
                created: 3,
            },
        ]);
        let t = RouteTable {
            set,
            ..RouteTable::default()
        };
        let p = t.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("x.example.com"), "{p:?}");
        assert!(p[1].contains("wakedock.port is required"), "{p:?}");
    }
}
