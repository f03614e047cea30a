//! `GET /ui/events`: the live stream every page listens to (server-sent
//! events). Container state changes and service states for everyone; with
//! `?container=ID`, that container's new log lines and resource samples
//! (with their charts drawn here) too. Pages reconnect by themselves.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::Event;
use axum::response::Response;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::AuthUser;
use crate::docker::ContainerEvent;
use crate::error::ApiResult;
use crate::state::AppState;

/// The engine actions the UI shows (others, such as exec or attach, are
/// noise on a state page).
pub fn shown_action(action: &str) -> bool {
    matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "stop"
            | "die"
            | "kill"
            | "pause"
            | "unpause"
            | "destroy"
            | "oom"
    ) || action.starts_with("health_status")
}

/// The state a container is in after `action`, where the action says.
pub fn state_after(action: &str) -> Option<&'static str> {
    Some(match action {
        "create" => "created",
        "start" | "restart" | "unpause" => "running",
        "pause" => "paused",
        "die" | "stop" => "exited",
        "destroy" => "removed",
        _ => return None,
    })
}

/// A container change as the page sees it.
#[derive(Debug, Serialize)]
pub struct ContainerChange<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub action: &'a str,
    pub state: Option<&'static str>,
    /// healthy, unhealthy or starting, on a health event.
    pub health: Option<&'a str>,
    pub at_ms: i64,
}

fn change_event(ev: &ContainerEvent) -> Event {
    let health = ev
        .action
        .strip_prefix("health_status:")
        .map(str::trim)
        .or_else(|| ev.action.strip_prefix("health_status"));
    let change = ContainerChange {
        id: &ev.id,
        name: ev.name.as_deref(),
        action: &ev.action,
        state: state_after(&ev.action),
        health,
        at_ms: ev.time_nano / 1_000_000,
    };
    Event::default()
        .event("container")
        .data(serde_json::to_string(&change).unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// Also stream this container's log lines and resource samples.
    pub container: Option<String>,
}

const SAMPLE_EVERY: Duration = Duration::from_secs(2);

pub async fn events(
    State(state): State<AppState>,
    _user: AuthUser,
    Query(q): Query<LiveQuery>,
) -> ApiResult<Response> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    let _ = tx.send(Event::default().event("hello").data("{}")).await;

    // Container changes, for every page.
    // Each collector ends when the page's stream does (on shutdown too).
    let tasks = &state.tasks;
    tasks.spawn(
        "ui container events",
        forward(state.docker.subscribe(), tx.clone(), |ev| {
            shown_action(&ev.action).then(|| change_event(&ev))
        }),
    );
    // Service states (wake-on-request).
    tasks.spawn(
        "ui service states",
        forward(state.wake.subscribe(), tx.clone(), |c| match c {
            crate::wake::Change::State(s) => Some(
                Event::default()
                    .event("service")
                    .data(serde_json::to_string(&s).unwrap_or_default()),
            ),
            crate::wake::Change::Removed(_) => None,
        }),
    );

    if let Some(id) = q.container {
        crate::api::containers::check_ref(&id)?;
        // Resolve the name to the full id once: samples are kept by id.
        let details = state.docker.inspect(&id).await?;
        tasks.spawn(
            "ui log follower",
            follow_logs(state.clone(), details.id.clone(), tx.clone()),
        );
        tasks.spawn(
            "ui stats sampler",
            sample_stats(state.clone(), details.id, tx.clone()),
        );
    }
    drop(tx);
    Ok(crate::http::sse::event_stream(
        ReceiverStream::new(rx),
        &state.shutdown,
    ))
}

/// Sends what `rx` broadcasts, as `to_event` renders it, until the page
/// goes away. A lagging page skips what it missed.
pub(super) async fn forward<T: Clone>(
    mut rx: broadcast::Receiver<T>,
    tx: mpsc::Sender<Event>,
    to_event: impl Fn(T) -> Option<Event>,
) {
    loop {
        let item = tokio::select! {
            _ = tx.closed() => return,
            item = rx.recv() => item,
        };
        match item {
            Ok(item) => {
                if let Some(ev) = to_event(item) {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// New log lines of `id`; when the container stops, waits for it to start
/// again and follows the new process.
async fn follow_logs(state: AppState, id: String, tx: mpsc::Sender<Event>) {
    let mut starts = state.docker.subscribe();
    loop {
        if let Ok(lines) = state.docker.logs(&id, Some(0), true, false).await {
            let mut lines = std::pin::pin!(lines);
            loop {
                let line = tokio::select! {
                    _ = tx.closed() => return,
                    l = lines.next() => l,
                };
                let Some(Ok(line)) = line else { break };
                let ev = Event::default()
                    .event("log")
                    .data(serde_json::to_string(&line).unwrap_or_default());
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        // Wait for the next start of this container (or the page to go).
        loop {
            let ev = tokio::select! {
                _ = tx.closed() => return,
                ev = starts.recv() => ev,
            };
            match ev {
                Ok(ev) if ev.id == id && ev.action == "start" => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// A resource sample of `id` every 2 s while it runs, with fresh charts.
async fn sample_stats(state: AppState, id: String, tx: mpsc::Sender<Event>) {
    loop {
        if let Ok(s) = state.docker.stats(&id).await {
            if s.memory_limit_bytes > 0 {
                state.ui.samples.push(&id, &s);
                let charts = super::charts::charts(&state.ui.samples.of(&id));
                let ev = Event::default()
                    .event("stats")
                    .data(serde_json::to_string(&charts).unwrap_or_default());
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_to_states() {
        assert_eq!(state_after("die"), Some("exited"));
        assert_eq!(state_after("start"), Some("running"));
        assert_eq!(state_after("exec_start: sh"), None);
        assert!(shown_action("health_status: healthy"));
        assert!(!shown_action("exec_create: /testapp healthcheck"));
    }
}
