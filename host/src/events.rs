//! The host's event bus: container changes, plugin events, and (later)
//! service state changes, fanned out to plugins and to live UI pages.

use serde::Serialize;
use tokio::sync::broadcast;

/// One event on the bus.
#[derive(Debug, Clone, Serialize)]
pub struct BusEvent {
    /// `host`, or the publishing plugin's name.
    pub source: String,
    /// Dotted, e.g. `container.start`, `wake.started`.
    pub topic: String,
    /// A JSON document.
    pub payload: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// Cheap to clone; slow receivers lose the oldest events rather than
/// holding publishers back.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<BusEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    pub fn publish(&self, source: &str, topic: &str, payload: &str) {
        // No receivers is fine: nobody is listening yet.
        let _ = self.tx.send(BusEvent {
            source: source.to_string(),
            topic: topic.to_string(),
            payload: payload.to_string(),
            at_ms: crate::db::now_ms() as u64,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
