//! The one owner of every operation on a service: wakes and sleeps,
//! whoever asks (a bridge's request, a user, the plugin's tick for an idle
//! sleep or a schedule), run through one gate per service.
//!
//! - Wakes are single-flight: however many requests ask for a sleeping
//!   service at once, the plugin gets one wake call; every request awaits
//!   its outcome on a `watch` channel (no thread per waiter). The call runs
//!   in its own task, so a waiter that leaves (its client disconnected)
//!   stops waiting without cancelling the wake for the others.
//! - A sleep never runs beside a wake of the same service: operations hold
//!   the service's lock while they run, so a wake asked for during a sleep
//!   starts right after it.
//! - An idle sleep that arrives while a wake is wanted (running or waiting
//!   for the lock) is dropped; so is one the plugin finds no longer idle.
//! - Unknown services are refused before anything else (no metric series,
//!   no plugin call): the hub knows every service.
//!
//! Operations the system starts (request, idle, schedule) are logged with
//! the service and the reason, and audited with the actor [`SYSTEM_ACTOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::contract::{ErrorCode, OpReason, Slept, Woken};
use super::plugin::{self, PluginError};
use crate::db::audit::NewAuditEntry;
use crate::error::ApiError;
use crate::state::AppState;

/// The audit log's actor for operations no user asked for. (Usernames
/// cannot contain `:`.)
pub const SYSTEM_ACTOR: &str = "system:wake";

/// Why an operation did not succeed; cloneable, so every waiter of one
/// operation gets the same.
#[derive(Debug, Clone, PartialEq)]
pub enum OpError {
    /// The hub knows no such service.
    UnknownService(String),
    Plugin(PluginError),
    /// The operation's task ended without an outcome (it panicked).
    Interrupted,
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::UnknownService(name) => ApiError::Service {
                status: axum::http::StatusCode::NOT_FOUND,
                code: ErrorCode::UnknownService,
                message: format!("no service named \"{name}\""),
                errors: Vec::new(),
            },
            OpError::Plugin(p) => p.into(),
            OpError::Interrupted => ApiError::PluginFailed("the operation was interrupted".into()),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", ApiError::from(self.clone()))
    }
}

type Outcome<T> = Option<Result<T, OpError>>;
type Slot<T> = watch::Receiver<Outcome<T>>;

/// One service's gate.
#[derive(Debug, Default)]
struct Gate {
    /// Held by the operation that runs.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The wake wanted (running or waiting for the lock).
    wake: Option<Slot<Woken>>,
    /// The sleep wanted; `Ok(None)` when it was dropped.
    sleep: Option<Slot<Option<Slept>>>,
}

#[derive(Debug, Default)]
pub struct Ops {
    /// One gate per known service (bounded: unknown names never get one).
    gates: Gates,
}

/// Decrements the held-requests gauge when a waiter leaves, however it
/// leaves.
struct Held<'a> {
    state: &'a AppState,
    service: &'a str,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.state
            .metrics
            .wake
            .held
            .with_label_values(&[self.service])
            .dec();
    }
}

async fn outcome<T: Clone>(mut rx: Slot<T>) -> Result<T, OpError> {
    loop {
        if let Some(o) = rx.borrow_and_update().clone() {
            return o;
        }
        if rx.changed().await.is_err() {
            return Err(OpError::Interrupted);
        }
    }
}

/// Audits and logs an operation the system started.
async fn record_system_op<T>(
    state: &AppState,
    action: &str,
    service: &str,
    reason: OpReason,
    r: &Result<T, OpError>,
) {
    if reason == OpReason::Manual {
        return; // the user's handler audits it, as the user
    }
    let mut entry = NewAuditEntry::new(action, "success");
    entry.actor = Some(SYSTEM_ACTOR.into());
    entry.target = Some(service.to_owned());
    let what = if action == "service.wake" {
        "wake"
    } else {
        "sleep"
    };
    match r {
        Ok(_) => {
            tracing::info!(service, reason = %reason, "automatic {what} of the service done");
            entry.detail = Some(format!("reason: {reason}"));
        }
        Err(e) => {
            tracing::warn!(service, reason = %reason, error = %e, "automatic {what} of the service failed");
            entry.result = "failure".into();
            entry.detail = Some(format!("reason: {reason}; {e}"));
        }
    }
    state.audit(entry).await;
}

type Gates = Arc<Mutex<HashMap<String, Gate>>>;

/// Runs `f` on `service`'s gate (made if need be).
fn with_gate<R>(gates: &Gates, service: &str, f: impl FnOnce(&mut Gate) -> R) -> R {
    let mut gates = gates.lock().unwrap_or_else(|p| p.into_inner());
    f(gates.entry(service.to_owned()).or_default())
}

impl Ops {
    fn with_gate<R>(&self, service: &str, f: impl FnOnce(&mut Gate) -> R) -> R {
        with_gate(&self.gates, service, f)
    }

    /// Wakes `service` (or joins the wake wanted) and waits until it is
    /// ready.
    pub async fn wake(
        &self,
        state: &AppState,
        service: &str,
        reason: OpReason,
    ) -> Result<Woken, OpError> {
        if !state.wake.knows(service) {
            return Err(OpError::UnknownService(service.to_owned()));
        }
        state.metrics.wake.held.with_label_values(&[service]).inc();
        let _held = Held { state, service };
        let rx = self.with_gate(service, |g| {
            if let Some(rx) = &g.wake {
                return rx.clone();
            }
            let (tx, rx) = watch::channel(None);
            g.wake = Some(rx.clone());
            let lock = g.lock.clone();
            let gates = self.gates.clone();
            let state = state.clone();
            let service = service.to_owned();
            // Its own task, so a waiter that leaves cancels only its wait;
            // tracked, so shutdown lets it finish.
            state.clone().tasks.spawn("wake", async move {
                let _running = lock.lock().await;
                let started = Instant::now();
                let r = plugin::call::<Woken>(
                    &state.plugins,
                    "POST",
                    &format!("/wake/{service}"),
                    Vec::new(),
                )
                .await
                .map_err(OpError::Plugin);
                let result = match &r {
                    Ok(_) => "ok",
                    Err(OpError::Plugin(p)) if p.code() == Some(ErrorCode::WakeTimeout) => {
                        "timeout"
                    }
                    Err(OpError::Plugin(PluginError::Answer(_))) => "failed",
                    Err(_) => "error",
                };
                let m = &state.metrics.wake;
                m.wakes.with_label_values(&[&service, result]).inc();
                if result == "ok" {
                    m.duration
                        .with_label_values(&[&service])
                        .observe(started.elapsed().as_secs_f64());
                }
                let _ = tx.send(Some(r.clone()));
                // The next request after this one starts a new wake (or
                // finds the service awake at once).
                with_gate(&gates, &service, |g| g.wake = None);
                drop(_running);
                record_system_op(&state, "service.wake", &service, reason, &r).await;
            });
            rx
        });
        outcome(rx).await
    }

    /// Puts `service` to sleep, after any wake running. An idle sleep is
    /// dropped (`Ok(None)`) when a wake is wanted or the plugin finds the
    /// service in use again.
    pub async fn sleep(
        &self,
        state: &AppState,
        service: &str,
        reason: OpReason,
    ) -> Result<Option<Slept>, OpError> {
        if !state.wake.knows(service) {
            return Err(OpError::UnknownService(service.to_owned()));
        }
        let idle = reason == OpReason::Idle;
        let rx = self.with_gate(service, |g| {
            if idle && g.wake.is_some() {
                return None;
            }
            if let Some(rx) = &g.sleep {
                return Some(rx.clone());
            }
            let (tx, rx) = watch::channel(None);
            g.sleep = Some(rx.clone());
            let lock = g.lock.clone();
            let gates = self.gates.clone();
            let state = state.clone();
            let service = service.to_owned();
            state.clone().tasks.spawn("sleep", async move {
                let _running = lock.lock().await;
                let r = if idle && with_gate(&gates, &service, |g| g.wake.is_some()) {
                    Ok(None)
                } else {
                    match plugin::call::<Slept>(
                        &state.plugins,
                        "POST",
                        &format!("/sleep/{service}?reason={reason}"),
                        Vec::new(),
                    )
                    .await
                    {
                        Ok(s) => Ok(Some(s)),
                        Err(e) if idle && e.code() == Some(ErrorCode::NotIdle) => Ok(None),
                        Err(e) => Err(OpError::Plugin(e)),
                    }
                };
                let _ = tx.send(Some(r.clone()));
                with_gate(&gates, &service, |g| g.sleep = None);
                drop(_running);
                match &r {
                    Ok(None) => {
                        tracing::debug!(service, "idle sleep dropped: the service is wanted")
                    }
                    _ => record_system_op(&state, "service.sleep", &service, reason, &r).await,
                }
            });
            Some(rx)
        });
        match rx {
            None => {
                tracing::debug!(service, "idle sleep dropped: a wake is wanted");
                Ok(None)
            }
            Some(rx) => outcome(rx).await,
        }
    }
}
