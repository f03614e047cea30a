//! The host events the alerts plugin (and any plugin subscribed to
//! `host.*`) reads; see `wakedock_plugin_alerts::contract`.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wakedock_plugin_alerts::contract::{topics, Component, ContainerExited, HostHealth};
use wakedock_plugin_runtime::PluginHealth;

use crate::docker::ContainerEvent;
use crate::state::AppState;

/// How often plugin states are looked at (the reconcile loop's pace).
const PLUGIN_CHECK: Duration = Duration::from_secs(2);

fn publish<T: serde::Serialize>(state: &AppState, topic: &str, doc: &T) {
    match serde_json::to_string(doc) {
        Ok(json) => state.bus.publish("host", topic, &json),
        Err(e) => tracing::error!(error = %e, topic, "serializing a host event"),
    }
}

fn now() -> u64 {
    crate::db::now_ms() as u64
}

/// How long a started container's restart policy is awaited from an
/// inspect the host makes anyway (a wake's readiness wait inspects each
/// member, however loaded the machine) before the engine is asked for it.
/// A `die` before then with the policy still unknown asks at once.
const POLICY_FROM_OTHERS: Duration = Duration::from_secs(30);

/// Publishes host events until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut events = state.docker.subscribe();
    let mut up = state.docker.watch_up();
    let mut seen_up = false;
    let mut oom: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut db_up = true;
    let mut every = tokio::time::interval(PLUGIN_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(ev) => on_container_event(&state, &shutdown, &mut oom, ev).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "host events missed container events");
                }
                Err(_) => events = state.docker.subscribe(),
            },
            changed = up.changed() => {
                if changed.is_err() {
                    return;
                }
                let is_up = *up.borrow_and_update();
                // Down before the first contact is a start, not an outage.
                if is_up || seen_up {
                    seen_up = true;
                    publish(&state, topics::HEALTH, &HostHealth {
                        component: Component::Engine,
                        name: None,
                        up: is_up,
                        detail: (!is_up).then(|| "the Docker engine does not answer".to_owned()),
                        at_ms: now(),
                    });
                }
            }
            _ = every.tick() => {
                check_plugins(&state, &mut failed);
                check_database(&state, &mut db_up).await;
            }
        }
    }
}

async fn on_container_event(
    state: &AppState,
    shutdown: &CancellationToken,
    oom: &mut HashSet<String>,
    ev: ContainerEvent,
) {
    // Another install's container (see `wakedock.instance`): none of this
    // host's plugins may see it, so it costs no engine request either.
    if let Some(instance) = state.config.wakedock.instance.as_deref() {
        if ev
            .labels
            .get(crate::config::INSTANCE_LABEL)
            .map(String::as_str)
            != Some(instance)
        {
            return;
        }
    }
    let at_ms = ev.at_ms();
    match ev.action.as_str() {
        "oom" => {
            oom.insert(ev.id);
        }
        "start" => {
            state
                .docker
                .stops
                .started(&ev.id, ev.name.as_deref(), at_ms);
            if state.docker.policies.get(&ev.id).is_none() {
                // Off the event's path, so the next `die` finds it known:
                // from the wake's own inspect if this start is a wake's,
                // else one inspect (which records it).
                let (docker, id, shutdown) = (state.docker.clone(), ev.id, shutdown.clone());
                tokio::spawn(async move {
                    let learnt = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        p = docker.policies.learnt_within(&id, POLICY_FROM_OTHERS) => p,
                    };
                    if learnt.is_none() {
                        let _ = docker.exit_details(&id).await;
                    }
                });
            }
        }
        "die" => {
            let stopped_by = state.docker.stops.take(&ev.id, ev.name.as_deref());
            let known = state.docker.policies.get(&ev.id);
            let (oom_killed, restart_policy) = match known {
                Some(policy) => (false, policy),
                // WakeDock stopped it: no policy restarts it (Docker does
                // not restart a container that was stopped on purpose).
                None if stopped_by.is_some() => (false, String::new()),
                // Removed already (`--rm`): what the event says is all.
                None => state.docker.exit_details(&ev.id).await.unwrap_or_default(),
            };
            let doc = ContainerExited {
                oom_killed: oom_killed || oom.remove(&ev.id),
                exit_code: ev.exit_code(),
                name: ev.name.clone().unwrap_or_default(),
                labels: ev.container_labels().collect(),
                id: ev.id,
                restart_policy,
                stopped_by,
                at_ms,
            };
            publish(state, topics::CONTAINER_EXITED, &doc);
        }
        "destroy" => {
            oom.remove(&ev.id);
        }
        _ => {}
    }
}

/// The database stopped answering (within a second), or answers again.
async fn check_database(state: &AppState, was_up: &mut bool) {
    let r = tokio::time::timeout(Duration::from_secs(1), state.db.ping()).await;
    let detail = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the database did not answer within 1 s".to_owned()),
    };
    let up = detail.is_none();
    if up != *was_up {
        *was_up = up;
        publish(
            state,
            topics::HEALTH,
            &HostHealth {
                component: Component::Database,
                name: None,
                up,
                detail,
                at_ms: now(),
            },
        );
    }
}

/// A plugin that turned failed, or recovered.
fn check_plugins(state: &AppState, failed: &mut HashSet<String>) {
    let statuses = state.plugins.runtime().status();
    for s in &statuses {
        let name = s.id.0.clone();
        let is_failed = matches!(s.health, PluginHealth::Failed { .. });
        if is_failed && failed.insert(name.clone()) {
            let reason = match &s.health {
                PluginHealth::Failed { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            publish(
                state,
                topics::HEALTH,
                &HostHealth {
                    component: Component::Plugin,
                    name: Some(name),
                    up: false,
                    detail: Some(reason),
                    at_ms: now(),
                },
            );
        } else if !is_failed && failed.remove(&name) {
            publish(
                state,
                topics::HEALTH,
                &HostHealth {
                    component: Component::Plugin,
                    name: Some(name),
                    up: true,
                    detail: None,
                    at_ms: now(),
                },
            );
        }
    }
    failed.retain(|n| statuses.iter().any(|s| &s.id.0 == n));
}
