//! Wake-on-request, host side (issue 4, issue 9).
//!
//! - [`WakeHub`] is the one source of truth for service states: the latest
//!   [`ServiceState`] of every service, fed only by the wake plugin's
//!   `wake.state` events (the newest `seq` wins) and seeded at start from
//!   the plugin (`POST /resume`) before the listener accepts. The
//!   overview, the services page and API, the waiting page and the bridges'
//!   subscription all read it.
//! - [`ops::Ops`] is the one owner of every operation: wakes and sleeps
//!   (manual, idle, scheduled, requested) run through its per-service gate.
//! - [`plugin`] calls the plugin's internal routes, with typed answers and
//!   errors.
//!
//! The wire types are the wake plugin crate's [`contract`]. See
//! `docs/design/wake-on-request.md`.

pub mod config;
pub mod ops;
pub mod plugin;

#[cfg(test)]
mod golden;

use std::collections::BTreeMap;
use std::sync::RwLock;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use wakedock_plugin_wake::contract;
pub use wakedock_plugin_wake::contract::{
    MemberPhase, MemberProgress, OpReason, ServiceState, StateName,
};

use crate::events::{BusEvent, EventBus};
use crate::state::AppState;
use contract::{topics, OpRequest, ServiceRemoved, Snapshot};

/// The plugin whose `wake.*` events are believed. Plugin names are unique,
/// and the first-party wake plugin is installed under this one.
pub const WAKE_PLUGIN: &str = "wake";

/// A change the hub fans out.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    State(ServiceState),
    /// The service no longer exists.
    Removed(String),
}

/// What the hub knows of one container that is a member of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub service: String,
    pub display_name: String,
    pub state: StateName,
    pub phase: MemberPhase,
}

impl Membership {
    /// Whether WakeDock has this (not running) member asleep: put to sleep,
    /// or about to be woken. A member that stopped outside WakeDock is not.
    pub fn sleeping(&self) -> bool {
        matches!(
            self.phase,
            MemberPhase::Asleep | MemberPhase::Waiting | MemberPhase::Starting
        )
    }
}

/// The latest state of every service, and a stream of changes.
#[derive(Debug)]
pub struct WakeHub {
    /// The per-service operation gate.
    pub ops: ops::Ops,
    states: RwLock<BTreeMap<String, ServiceState>>,
    changes: broadcast::Sender<Change>,
    /// Subscribed at construction, so events published before [`run`]
    /// starts are not lost.
    bus_rx: std::sync::Mutex<Option<broadcast::Receiver<BusEvent>>>,
    /// Whether [`WakeHub::seed`] succeeded ([`run`] retries until it has).
    seeded: std::sync::atomic::AtomicBool,
    /// Live `/api/v1/wake/subscribe` streams (see [`BridgeConnection`]).
    bridges: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one connected bridge while it lives; dropped when its subscribe
/// stream ends (the bridge went away, or the host shuts down).
#[derive(Debug)]
pub struct BridgeConnection(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BridgeConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl WakeHub {
    pub fn new(bus: &EventBus) -> Self {
        Self {
            ops: ops::Ops::default(),
            states: RwLock::new(BTreeMap::new()),
            changes: broadcast::channel(1024).0,
            bus_rx: std::sync::Mutex::new(Some(bus.subscribe())),
            seeded: std::sync::atomic::AtomicBool::new(false),
            bridges: Default::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ServiceState>> {
        self.states.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a bridge subscription; keep the guard in its stream.
    pub fn bridge_connected(&self) -> BridgeConnection {
        self.bridges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BridgeConnection(self.bridges.clone())
    }

    /// Bridges subscribed right now (the services page shows it).
    pub fn connected_bridges(&self) -> usize {
        self.bridges.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Vec<ServiceState> {
        self.read().values().cloned().collect()
    }

    pub fn get(&self, service: &str) -> Option<ServiceState> {
        self.read().get(service).cloned()
    }

    /// Whether the hub knows `service` (cheap: no clone).
    pub fn knows(&self, service: &str) -> bool {
        self.read().contains_key(service)
    }

    /// The service `container` (a container name) is listed in, if any
    /// document lists it.
    pub fn membership(&self, container: &str) -> Option<Membership> {
        self.read().values().find_map(|s| {
            s.member(container).map(|phase| Membership {
                service: s.service.clone(),
                display_name: s.display_name.clone(),
                state: s.state,
                phase,
            })
        })
    }

    /// Every listed member, by container name (for pages listing many
    /// containers).
    pub fn memberships(&self) -> std::collections::HashMap<String, Membership> {
        let mut out = std::collections::HashMap::new();
        for s in self.read().values() {
            for m in &s.members {
                out.entry(m.name.clone()).or_insert_with(|| Membership {
                    service: s.service.clone(),
                    display_name: s.display_name.clone(),
                    state: s.state,
                    phase: m.status,
                });
            }
        }
        out
    }

    /// Changes from now on. Subscribe before taking a snapshot so no change
    /// falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Keeps `doc` if it is newer (by `seq`) than the one held; true if it
    /// changed anything.
    pub fn put(&self, doc: ServiceState) -> bool {
        if doc.service.is_empty() {
            tracing::warn!("wake.state without a service name");
            return false;
        }
        {
            let mut map = self.states.write().unwrap_or_else(|p| p.into_inner());
            if map.get(&doc.service).is_some_and(|old| old.seq >= doc.seq) {
                return false;
            }
            map.insert(doc.service.clone(), doc.clone());
        }
        tracing::debug!(service = %doc.service, state = %doc.state, seq = doc.seq, "service state");
        let _ = self.changes.send(Change::State(doc));
        true
    }

    /// Forgets a service.
    pub fn remove(&self, service: &str) {
        let removed = self
            .states
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service)
            .is_some();
        if removed {
            tracing::info!(service, "service removed");
            let _ = self.changes.send(Change::Removed(service.to_owned()));
        }
    }

    /// Applies one bus event if it is a state change or removal from the
    /// wake plugin; a malformed one is logged and dropped. Returns an
    /// operation the plugin asks for, for [`run`] to start.
    pub fn apply(&self, ev: &BusEvent) -> Option<(&'static str, OpRequest)> {
        if ev.source != WAKE_PLUGIN {
            return None;
        }
        fn parse<T: serde::de::DeserializeOwned>(ev: &BusEvent) -> Option<T> {
            serde_json::from_str(&ev.payload)
                .map_err(|e| tracing::warn!(error = %e, topic = %ev.topic, "malformed wake event"))
                .ok()
        }
        match ev.topic.as_str() {
            topics::STATE => {
                self.put(parse::<ServiceState>(ev)?);
            }
            topics::REMOVED => self.remove(&parse::<ServiceRemoved>(ev)?.service),
            topics::SLEEP_DUE => return Some((topics::SLEEP_DUE, parse(ev)?)),
            topics::WAKE_DUE => return Some((topics::WAKE_DUE, parse(ev)?)),
            _ => {}
        }
        None
    }

    /// Seeds the hub with every service's state from the wake plugin
    /// (which first brings them in line with the containers). Without the
    /// plugin the hub starts empty, says why, and [`run`] tries again.
    pub async fn seed(&self, plugins: &crate::plugins::PluginManager) -> bool {
        self.seed_once(plugins, false).await
    }

    async fn seed_once(&self, plugins: &crate::plugins::PluginManager, retry: bool) -> bool {
        match plugin::call::<Snapshot>(plugins, "POST", "/resume", Vec::new()).await {
            Ok(snap) => {
                let n = snap.services.len();
                for doc in snap.services {
                    self.put(doc);
                }
                self.seeded
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(services = n, "service states loaded from the wake plugin");
                true
            }
            Err(e) if retry => {
                tracing::debug!(error = %crate::error::ApiError::from(e), "service states still not loaded");
                false
            }
            Err(e) => {
                tracing::warn!(
                    error = %crate::error::ApiError::from(e),
                    "could not load service states from the wake plugin; trying again every {} s",
                    SEED_RETRY.as_secs()
                );
                false
            }
        }
    }
}

/// How often a seed that failed at start is tried again.
const SEED_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Tries [`WakeHub::seed`] again until it succeeds (the plugin was not
/// ready at start), so known services never stay unknown.
async fn seed_until_done(state: AppState, shutdown: CancellationToken) {
    while !state.wake.seeded.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SEED_RETRY) => {}
        }
        state.wake.seed_once(&state.plugins, true).await;
    }
}

/// Follows the bus until `shutdown`: states into the hub, and the
/// operations the plugin's tick asks for (an idle sleep, a scheduled
/// wake) run through the gate as the system's actions.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let hub = state.wake.clone();
    if !hub.seeded.load(std::sync::atomic::Ordering::Relaxed) {
        state.tasks.spawn(
            "wake seed",
            seed_until_done(state.clone(), shutdown.clone()),
        );
    }
    let taken = hub.bus_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut rx = taken.unwrap_or_else(|| state.bus.subscribe());
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(ev) => match hub.apply(&ev) {
                Some((topics::SLEEP_DUE, req)) if req.reason == OpReason::Idle => {
                    let state = state.clone();
                    state.clone().tasks.spawn("idle sleep", async move {
                        let _ = state.wake.ops.sleep(&state, &req.service, req.reason).await;
                    });
                }
                Some((topics::WAKE_DUE, req)) if req.reason == OpReason::Schedule => {
                    let state = state.clone();
                    state.clone().tasks.spawn("scheduled wake", async move {
                        let _ = state.wake.ops.wake(&state, &req.service, req.reason).await;
                    });
                }
                Some((topic, req)) => {
                    tracing::warn!(topic, service = %req.service, reason = %req.reason, "ignored an operation request with an unexpected reason");
                }
                None => {}
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Lost states come back with the next change; lost
                // requests are asked again on the next tick.
                tracing::warn!(missed = n, "wake hub missed bus events");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(source: &str, topic: &str, payload: serde_json::Value) -> BusEvent {
        BusEvent {
            source: source.into(),
            topic: topic.into(),
            payload: payload.to_string(),
            at_ms: 0,
        }
    }

    pub(crate) fn doc(service: &str, s: &str, seq: u64) -> serde_json::Value {
        json!({
            "service": service, "state": s, "strategy": "blocking",
            "wake_timeout_ms": 60000, "ignore_user_agents": [], "ignore_paths": [],
            "display_name": service, "reason": null, "theme": null,
            "members": [{"name": format!("{service}-app"), "status": "asleep"}], "seq": seq
        })
    }

    fn state_of(rx: &mut broadcast::Receiver<Change>) -> Option<String> {
        match rx.try_recv().ok()? {
            Change::State(s) => Some(s.state.to_string()),
            Change::Removed(n) => Some(format!("removed {n}")),
        }
    }

    #[test]
    fn only_valid_state_events_of_the_wake_plugin_count() {
        let hub = WakeHub::new(&EventBus::default());
        let mut rx = hub.subscribe();
        hub.apply(&event("wake", topics::STATE, doc("blog", "asleep", 1)));
        hub.apply(&event("evil", topics::STATE, doc("blog", "awake", 2)));
        hub.apply(&event("wake", "wake.other", doc("blog", "awake", 3)));
        hub.apply(&event("wake", topics::STATE, doc("blog", "dancing", 4)));
        hub.apply(&event("wake", topics::STATE, json!({"nope": 1})));
        assert_eq!(hub.get("blog").unwrap().state, StateName::Asleep);
        assert_eq!(state_of(&mut rx).as_deref(), Some("asleep"));
        assert!(rx.try_recv().is_err(), "only one change was broadcast");
        // A repeat is not a change.
        hub.apply(&event("wake", topics::STATE, doc("blog", "asleep", 1)));
        assert!(rx.try_recv().is_err());
        hub.apply(&event("wake", topics::STATE, doc("blog", "waking", 5)));
        hub.apply(&event("wake", topics::STATE, doc("api", "awake", 1)));
        assert_eq!(state_of(&mut rx).as_deref(), Some("waking"));
        let names: Vec<String> = hub.snapshot().into_iter().map(|s| s.service).collect();
        assert_eq!(names, vec!["api", "blog"]);
    }

    #[test]
    fn an_older_document_never_replaces_a_newer_one() {
        // Two plugin instances publish; their events may cross on the way.
        let hub = WakeHub::new(&EventBus::default());
        hub.apply(&event("wake", topics::STATE, doc("blog", "asleep", 20)));
        hub.apply(&event("wake", topics::STATE, doc("blog", "awake", 10)));
        assert_eq!(hub.get("blog").unwrap().state, StateName::Asleep);
    }

    #[test]
    fn removals_and_memberships() {
        let hub = WakeHub::new(&EventBus::default());
        let mut rx = hub.subscribe();
        hub.apply(&event("wake", topics::STATE, doc("blog", "asleep", 1)));
        let m = hub.membership("blog-app").unwrap();
        assert_eq!((m.service.as_str(), m.phase), ("blog", MemberPhase::Asleep));
        assert!(m.sleeping());
        assert!(hub.membership("stranger").is_none());
        hub.apply(&event("wake", topics::REMOVED, json!({"service": "blog"})));
        assert!(!hub.knows("blog"));
        let _ = state_of(&mut rx);
        assert_eq!(state_of(&mut rx).as_deref(), Some("removed blog"));
    }

    #[test]
    fn operation_requests_are_handed_on() {
        let hub = WakeHub::new(&EventBus::default());
        let got = hub.apply(&event(
            "wake",
            topics::SLEEP_DUE,
            json!({"service": "blog", "reason": "idle"}),
        ));
        assert_eq!(
            got,
            Some((
                topics::SLEEP_DUE,
                OpRequest {
                    service: "blog".into(),
                    reason: OpReason::Idle
                }
            ))
        );
        assert_eq!(
            hub.apply(&event(
                "evil",
                topics::SLEEP_DUE,
                json!({"service": "blog", "reason": "idle"})
            )),
            None
        );
    }

    #[test]
    fn connected_bridges_count_live_guards() {
        let hub = WakeHub::new(&EventBus::default());
        assert_eq!(hub.connected_bridges(), 0);
        let a = hub.bridge_connected();
        let b = hub.bridge_connected();
        assert_eq!(hub.connected_bridges(), 2);
        drop(a);
        assert_eq!(hub.connected_bridges(), 1);
        drop(b);
        assert_eq!(hub.connected_bridges(), 0);
    }
}
