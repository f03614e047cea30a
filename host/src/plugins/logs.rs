//! The `container-logs` capability (plugin API 0.1.4) on the engine: one
//! follower task per followed container, reading only its new lines
//! (`docker logs --follow --since`, cut to the nanosecond on each line's
//! timestamp) and handing each line a subscription wants to the runtime,
//! which checks it again, bounds it and delivers it.
//!
//! Which containers are followed is derived, never kept apart: a change of
//! any plugin's subscriptions, the engine coming back, or a missed event
//! re-lists the running containers and starts (or stops) followers to
//! match; a container that starts later is followed from its `start`
//! event. Every follower is a tracked task (shutdown ends and waits for
//! it), at most [`MAX_FOLLOWED`] run at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use wakedock_plugin_runtime::caps::{
    ContainerLogsHost, Delivered, LogDelivery, LogFollow, LogLine, LogStream,
};

use crate::docker::DockerEngine;
use crate::tasks::Tasks;

/// Containers followed at once, host-wide; past it a container is not
/// followed and a warning says so.
pub const MAX_FOLLOWED: usize = 512;

/// Follows containers' logs for the plugins' subscriptions. Cheap to clone.
#[derive(Clone)]
pub struct DockerLogFollowers {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Arc<DockerEngine>,
    tasks: Tasks,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each plugin's subscriptions and the way back into it.
    plugins: BTreeMap<String, wakedock_plugin_runtime::logs::Followed>,
    /// Followed containers, by id.
    followers: HashMap<String, Follower>,
    next_generation: u64,
}

struct Follower {
    generation: u64,
    stop: CancellationToken,
    /// Timestamp (Unix ns) of the last line read: a follower that replaces
    /// this one (the container started again) starts after it.
    last_ns: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Splits `2026-12-01T20:08:31.123456789Z text` (a line of `docker logs
/// --timestamps`) into Unix ns and text.
fn split_timestamp(line: &str) -> Option<(u64, &str)> {
    let (ts, text) = line.split_once(' ').unwrap_or((line, ""));
    let t = humantime::parse_rfc3339_weak(ts).ok()?;
    let ns = t.duration_since(UNIX_EPOCH).ok()?.as_nanos() as u64;
    Some((ns, text))
}

impl DockerLogFollowers {
    pub fn new(docker: Arc<DockerEngine>, tasks: Tasks) -> Self {
        DockerLogFollowers {
            inner: Arc::new(Inner {
                docker,
                tasks,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Containers followed now.
    pub fn followed(&self) -> usize {
        lock(&self.inner.state).followers.len()
    }

    /// Follows containers that start later (from their `start` event) and
    /// re-lists after the engine comes back or events were missed, until
    /// `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let docker = self.inner.docker.clone();
        let mut events = docker.subscribe();
        let mut up = docker.watch_up();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ev) if ev.action == "start" => {
                        let labels: Vec<(String, String)> = ev.container_labels().collect();
                        let name = ev.name.clone().unwrap_or_default();
                        let from_ns = (ev.time_nano.max(0) as u64).min(now_ns());
                        self.inner.follow(&ev.id, &name, labels, from_ns, true);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "log followers missed container events; re-listing");
                        self.inner.resync(StartAt::Now);
                    }
                    Err(_) => events = docker.subscribe(),
                },
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *up.borrow_and_update() {
                        self.inner.resync(StartAt::Now);
                    }
                }
            }
        }
    }
}

impl ContainerLogsHost for DockerLogFollowers {
    fn set_follows(&self, plugin: &str, follows: Vec<Arc<LogFollow>>, to: LogDelivery) {
        {
            let mut st = lock(&self.inner.state);
            if follows.is_empty() {
                st.plugins.remove(plugin);
            } else {
                st.plugins.insert(plugin.to_owned(), (follows, to));
            }
        }
        self.inner.resync(StartAt::Follows);
    }
}

/// Where a re-listing starts the followers it adds.
#[derive(Clone, Copy)]
enum StartAt {
    /// From the oldest covering subscription's follow: a line written once
    /// `follow` has returned is never missed, however late the listing.
    Follows,
    /// From now (the engine came back, events were missed: what came
    /// before may have been read already).
    Now,
}

impl Inner {
    /// Whether some subscription covers the container.
    fn covers(&self, name: &str, labels: &[(String, String)]) -> bool {
        lock(&self.state)
            .plugins
            .values()
            .any(|(follows, _)| follows.iter().any(|f| f.selects(name, labels)))
    }

    /// Unix ns of the oldest follow covering the container, if any.
    fn covered_since_ns(&self, name: &str, labels: &[(String, String)]) -> Option<u64> {
        lock(&self.state)
            .plugins
            .values()
            .flat_map(|(follows, _)| follows.iter())
            .filter(|f| f.selects(name, labels))
            .map(|f| f.since_ms.saturating_mul(1_000_000))
            .min()
    }

    /// The subscriptions that want `line` of the container, with the way
    /// into their plugin.
    fn wanting(
        &self,
        name: &str,
        labels: &[(String, String)],
        line: &str,
        at_ms: u64,
    ) -> Vec<(String, LogDelivery)> {
        let st = lock(&self.state);
        st.plugins
            .values()
            .flat_map(|(follows, to)| {
                follows
                    .iter()
                    .filter(|f| f.selects(name, labels) && f.wants(line, at_ms))
                    .map(|f| (f.name.clone(), to.clone()))
            })
            .collect()
    }

    /// Lists the running containers (in a tracked job) and follows exactly
    /// those some subscription covers.
    fn resync(self: &Arc<Self>, from: StartAt) {
        let me = self.clone();
        self.tasks.spawn("log followers sync", async move {
            let nobody = lock(&me.state).plugins.is_empty();
            let running = if nobody {
                Vec::new()
            } else {
                match me.docker.list(&[]).await {
                    Ok(list) => list.into_iter().filter(|c| c.state == "running").collect(),
                    Err(e) => {
                        // The engine's return re-lists (see `run`).
                        tracing::debug!(error = %e, "log followers: listing containers");
                        return;
                    }
                }
            };
            let now = now_ns();
            let mut covered = HashSet::new();
            for c in running {
                let labels: Vec<(String, String)> = c.labels.into_iter().collect();
                let Some(since) = me.covered_since_ns(&c.name, &labels) else {
                    continue;
                };
                covered.insert(c.id.clone());
                let from_ns = match from {
                    StartAt::Follows => since.min(now),
                    StartAt::Now => now,
                };
                me.follow(&c.id, &c.name, labels, from_ns, false);
            }
            lock(&me.state).followers.retain(|id, f| {
                let keep = covered.contains(id);
                if !keep {
                    f.stop.cancel();
                }
                keep
            });
        });
    }

    /// Starts a follower of container `id` for its lines from `from_ns`
    /// on, unless one runs (with `replace`, a new run of the container:
    /// the old follower stops and the new one starts after its last line).
    fn follow(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        labels: Vec<(String, String)>,
        from_ns: u64,
        replace: bool,
    ) {
        if !self.covers(name, &labels) {
            return;
        }
        let (generation, stop, last_ns, from_ns) = {
            let mut st = lock(&self.state);
            let mut from_ns = from_ns;
            if let Some(old) = st.followers.get(id) {
                if !replace {
                    return;
                }
                old.stop.cancel();
                from_ns = from_ns.max(old.last_ns.load(Ordering::Relaxed) + 1);
            } else if st.followers.len() >= MAX_FOLLOWED {
                tracing::warn!(
                    container = name,
                    max = MAX_FOLLOWED,
                    "not following this container's logs: the host follows the most it will"
                );
                return;
            }
            st.next_generation += 1;
            let f = Follower {
                generation: st.next_generation,
                stop: self.tasks.token().child_token(),
                last_ns: Arc::new(AtomicU64::new(0)),
            };
            let out = (f.generation, f.stop.clone(), f.last_ns.clone(), from_ns);
            st.followers.insert(id.to_owned(), f);
            out
        };
        let me = self.clone();
        let (id, name) = (id.to_owned(), name.to_owned());
        self.tasks.spawn("container log follower", async move {
            me.read(&id, &name, &labels, from_ns, &stop, &last_ns).await;
            let mut st = lock(&me.state);
            if st
                .followers
                .get(&id)
                .is_some_and(|f| f.generation == generation)
            {
                st.followers.remove(&id);
            }
        });
    }

    /// Reads the container's lines from `from_ns` on until it stops, the
    /// engine goes away or `stop`, delivering each one a subscription wants.
    async fn read(
        &self,
        id: &str,
        name: &str,
        labels: &[(String, String)],
        from_ns: u64,
        stop: &CancellationToken,
        last_ns: &AtomicU64,
    ) {
        let stream = match self
            .docker
            .follow_logs_since(id, from_ns / 1_000_000_000)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = name, error = %e, "not following its logs");
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = stream.next() => next,
            };
            let Some(Ok(frame)) = next else { return };
            let kind = if frame.stream == "stderr" {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            for raw in frame.line.split('\n') {
                let Some((ns, text)) = split_timestamp(raw.trim_end_matches('\r')) else {
                    continue;
                };
                // The engine starts at a whole second: what came before
                // the follow (or before the previous follower's last line)
                // is history.
                if ns < from_ns {
                    continue;
                }
                last_ns.store(ns, Ordering::Relaxed);
                let at_ms = ns / 1_000_000;
                for (subscription, to) in self.wanting(name, labels, text, at_ms) {
                    let line = LogLine {
                        container_id: id.to_owned(),
                        container_name: name.to_owned(),
                        labels: labels.to_vec(),
                        stream: kind,
                        line: text.to_owned(),
                        at_ms,
                    };
                    if let Delivered::Failed(e) = to.deliver(&subscription, line).await {
                        tracing::debug!(container = name, subscription, error = %e, "log line not delivered");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamped_line_splits_into_nanoseconds_and_text() {
        let (ns, text) = split_timestamp("2026-12-01T20:08:31.123456789Z GET /boom 404").unwrap();
        assert_eq!(text, "GET /boom 404");
        assert_eq!(ns % 1_000_000_000, 123_456_789);
        assert_eq!(ns / 1_000_000_000, 1_796_155_711);
        assert_eq!(
            split_timestamp("2026-12-01T20:08:31Z").map(|(_, t)| t),
            Some("")
        );
        assert_eq!(split_timestamp("no timestamp"), None);
    }
}
