//! Single-flight wakes: however many requests ask for a sleeping service at
//! once, the wake plugin gets one wake call per service; every request
//! awaits its result on a `watch` channel (no thread per waiter). The call
//! runs in its own task, so a waiter that leaves (its client disconnected)
//! stops waiting without cancelling the wake for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::error::ApiError;
use crate::metrics::WakeMetrics;
use crate::plugins::PluginManager;

/// The outcome every waiter of one wake sees: the plugin's JSON answer, or
/// the error as (status, body) to rebuild an `ApiError` per waiter.
#[derive(Debug, Clone)]
enum Outcome {
    Ready(serde_json::Value),
    Error { status: u16, body: Vec<u8> },
    Unavailable(String),
}

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub struct Waker {
    /// Shared with the wake tasks, which remove their entry when done.
    in_flight: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Decrements the held-requests gauge when a waiter leaves, however it
/// leaves.
struct Held<'a> {
    metrics: &'a WakeMetrics,
    service: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.metrics.held.with_label_values(&[&self.service]).dec();
    }
}

impl Waker {
    /// Wakes `service` (or joins the wake in flight) and waits for it to
    /// be ready. The answer is the plugin's `{"service","state","waited_ms"}`.
    pub async fn wake(
        &self,
        plugins: &Arc<PluginManager>,
        metrics: &WakeMetrics,
        service: &str,
    ) -> Result<serde_json::Value, ApiError> {
        metrics.held.with_label_values(&[service]).inc();
        let _held = Held {
            metrics,
            service: service.to_owned(),
        };
        let mut rx = self.join_or_start(plugins, metrics, service);
        let outcome = loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                break o;
            }
            if rx.changed().await.is_err() {
                // The wake task ended without an outcome (it panicked).
                break Outcome::Unavailable("the wake was interrupted".into());
            }
        };
        match outcome {
            Outcome::Ready(v) => Ok(v),
            Outcome::Error { status, body } => Err(super::plugin::error_of(status, &body)),
            Outcome::Unavailable(m) => Err(ApiError::PluginUnavailable(m)),
        }
    }

    fn join_or_start(
        &self,
        plugins: &Arc<PluginManager>,
        metrics: &WakeMetrics,
        service: &str,
    ) -> Slot {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(service) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        map.insert(service.to_owned(), rx.clone());
        drop(map);
        let plugins = plugins.clone();
        let metrics = metrics.clone();
        let service = service.to_owned();
        let path = format!("/wake/{service}");
        let in_flight = self.in_flight.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let outcome = match super::plugin::call(&plugins, "POST", &path, Vec::new()).await {
                Ok(a) => match a.json() {
                    Ok(v) => Outcome::Ready(v),
                    Err(e) => Outcome::Unavailable(e.to_string()),
                },
                Err(ApiError::Service {
                    status,
                    code,
                    message,
                    errors,
                }) => Outcome::Error {
                    status: status.as_u16(),
                    body: serde_json::json!({"code": code, "detail": message, "errors": errors})
                        .to_string()
                        .into_bytes(),
                },
                Err(e) => Outcome::Unavailable(e.to_string()),
            };
            let result = match &outcome {
                Outcome::Ready(_) => "ok",
                Outcome::Error { status: 504, .. } => "timeout",
                Outcome::Error { .. } => "failed",
                Outcome::Unavailable(_) => "error",
            };
            metrics.wakes.with_label_values(&[&service, result]).inc();
            if result == "ok" {
                metrics
                    .duration
                    .with_label_values(&[&service])
                    .observe(started.elapsed().as_secs_f64());
            }
            let _ = tx.send(Some(outcome));
            // The next request after this one starts a new wake (or finds
            // the service awake at once).
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&service);
        });
        rx
    }
}
