//! Wake-on-request, host side (issue 4).
//!
//! The wake plugin holds the policy and publishes every service state change
//! on the event bus as `wake.state`; [`WakeHub`] keeps the latest state per
//! service and fans changes out to the Caddy bridges subscribed to
//! `/api/v1/wake/subscribe`. [`waker::Waker`] makes wakes single-flight and
//! [`plugin`] calls the plugin's internal routes. See
//! `docs/design/wake-on-request.md`.

pub mod config;
pub mod plugin;
pub mod waker;

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::events::{BusEvent, EventBus};

/// The plugin whose `wake.state` events are believed. Plugin names are
/// unique, and the first-party wake plugin is installed under this one.
pub const WAKE_PLUGIN: &str = "wake";
pub const STATE_TOPIC: &str = "wake.state";

/// A service's state as the bridge and the UI see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    pub service: String,
    /// `asleep`, `waking`, `awake`, `going-to-sleep` or `failed`.
    pub state: String,
    /// `blocking` or `dynamic`.
    pub strategy: String,
    pub wake_timeout_ms: u64,
    #[serde(default)]
    pub ignore_user_agents: Vec<String>,
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Why the service is `failed`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The waiting page's theme: `auto` (default), `light` or `dark`.
    #[serde(default)]
    pub theme: Option<String>,
    /// Members' progress during a wake (`waiting`, `starting`, `ready`,
    /// `done`, `failed`); empty otherwise.
    #[serde(default)]
    pub members: Vec<MemberProgress>,
}

/// One member of a waking service, for the waiting page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberProgress {
    pub name: String,
    pub status: String,
}

const STATES: &[&str] = &["asleep", "waking", "awake", "going-to-sleep", "failed"];
const STRATEGIES: &[&str] = &["blocking", "dynamic"];

impl ServiceState {
    fn check(&self) -> Result<(), String> {
        if self.service.is_empty() {
            return Err("empty service name".into());
        }
        if !STATES.contains(&self.state.as_str()) {
            return Err(format!("unknown state {:?}", self.state));
        }
        if !STRATEGIES.contains(&self.strategy.as_str()) {
            return Err(format!("unknown strategy {:?}", self.strategy));
        }
        Ok(())
    }
}

/// The latest state of every service, and a stream of changes.
#[derive(Debug)]
pub struct WakeHub {
    /// Single-flight wakes.
    pub waker: waker::Waker,
    states: RwLock<BTreeMap<String, ServiceState>>,
    changes: broadcast::Sender<ServiceState>,
    /// Subscribed at construction, so events published before [`WakeHub::run`]
    /// starts are not lost.
    bus_rx: std::sync::Mutex<Option<broadcast::Receiver<BusEvent>>>,
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
            waker: waker::Waker::default(),
            states: RwLock::new(BTreeMap::new()),
            changes: broadcast::channel(1024).0,
            bus_rx: std::sync::Mutex::new(Some(bus.subscribe())),
            bridges: Default::default(),
        }
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
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, service: &str) -> Option<ServiceState> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
    }

    /// Changes from now on. Subscribe before taking a snapshot so no change
    /// falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<ServiceState> {
        self.changes.subscribe()
    }

    /// Applies one bus event if it is a state change from the wake plugin;
    /// a malformed one is logged and dropped.
    pub fn apply(&self, ev: &BusEvent) {
        if ev.source != WAKE_PLUGIN || ev.topic != STATE_TOPIC {
            return;
        }
        let state: ServiceState = match serde_json::from_str(&ev.payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "malformed wake.state event");
                return;
            }
        };
        if let Err(e) = state.check() {
            tracing::warn!(error = %e, service = %state.service, "invalid wake.state event");
            return;
        }
        let changed = {
            let mut map = self.states.write().unwrap_or_else(|p| p.into_inner());
            map.insert(state.service.clone(), state.clone()).as_ref() != Some(&state)
        };
        if changed {
            tracing::debug!(service = %state.service, state = %state.state, "service state");
            let _ = self.changes.send(state);
        }
    }

    /// Follows the bus until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, bus: EventBus, shutdown: CancellationToken) {
        let taken = self.bus_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut rx = taken.unwrap_or_else(|| bus.subscribe());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => self.apply(&ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "wake hub missed bus events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, topic: &str, payload: serde_json::Value) -> BusEvent {
        BusEvent {
            source: source.into(),
            topic: topic.into(),
            payload: payload.to_string(),
            at_ms: 0,
        }
    }

    fn state(service: &str, s: &str) -> serde_json::Value {
        serde_json::json!({
            "service": service, "state": s, "strategy": "blocking",
            "wake_timeout_ms": 60000, "ignore_user_agents": [], "ignore_paths": [],
            "display_name": null, "reason": null
        })
    }

    #[test]
    fn only_valid_state_events_of_the_wake_plugin_count() {
        let hub = WakeHub::new(&EventBus::default());
        let mut rx = hub.subscribe();
        hub.apply(&event("wake", STATE_TOPIC, state("blog", "asleep")));
        hub.apply(&event("evil", STATE_TOPIC, state("blog", "awake")));
        hub.apply(&event("wake", "wake.other", state("blog", "awake")));
        hub.apply(&event("wake", STATE_TOPIC, state("blog", "dancing")));
        hub.apply(&event("wake", STATE_TOPIC, serde_json::json!({"nope": 1})));
        assert_eq!(hub.get("blog").unwrap().state, "asleep");
        assert_eq!(rx.try_recv().unwrap().state, "asleep");
        assert!(rx.try_recv().is_err(), "only one change was broadcast");
        // A repeat of the same state is not a change.
        hub.apply(&event("wake", STATE_TOPIC, state("blog", "asleep")));
        assert!(rx.try_recv().is_err());
        hub.apply(&event("wake", STATE_TOPIC, state("blog", "waking")));
        hub.apply(&event("wake", STATE_TOPIC, state("api", "awake")));
        assert_eq!(rx.try_recv().unwrap().state, "waking");
        let names: Vec<String> = hub.snapshot().into_iter().map(|s| s.service).collect();
        assert_eq!(names, vec!["api", "blog"]);
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
