//! Container stats for plugins' `metrics.all-stats`: a sample cache that
//! answers at once from what it holds and refreshes in the background.
//!
//! A plugin with CPU or memory rules asks for the stats of every container
//! on each tick (every second). Asking the engine each time would cost one
//! stats request per container per second, and each request waits for the
//! engine's next stats collection (about a second). So:
//! - a running container is sampled at most once per [`MAX_AGE`];
//! - a container never sampled is sampled during the call, with the
//!   engine's own CPU measurement (about two collections), many at once
//!   ([`CONCURRENCY`]: requests issued together share one collection, so a
//!   first round over 500 containers takes seconds, not the minute it
//!   took 8 at a time);
//! - a stale sample is answered as it is (its `at-ms` says when it was
//!   taken) and refreshed in the background with a one-shot request, its
//!   CPU figure computed here from the counters of the two samples (the
//!   average over the interval between them), so a tick never waits for
//!   the engine in steady state and the plugin's single instance stays
//!   free for events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use wakedock_plugin_runtime::caps::{ContainerState, ContainerStats};

use crate::docker::{ContainerStats as DockerStats, CpuCounters, DockerEngine, EngineError};

/// How long a sample is fresh (thresholds hold for a duration; the
/// engine's own `stats` refreshes about once a second).
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Stats requests in flight at once, per call and per background refresh.
pub const CONCURRENCY: usize = 64;
/// A container not sampled for this long is forgotten (removed ones).
const FORGET_AFTER: Duration = Duration::from_secs(60);

struct Sample {
    at: Instant,
    counters: CpuCounters,
    stats: ContainerStats,
}

#[derive(Default)]
struct Cache {
    samples: HashMap<String, Sample>,
    /// Containers a background refresh is sampling now.
    refreshing: HashSet<String>,
}

impl Cache {
    /// Keeps a sample taken now.
    fn store(&mut self, id: String, counters: CpuCounters, stats: ContainerStats) {
        let at = Instant::now();
        self.samples.insert(
            id,
            Sample {
                at,
                counters,
                stats,
            },
        );
    }
}

/// The sample cache of one host (shared by every plugin: the engine's
/// figures do not depend on who asks).
#[derive(Clone)]
pub struct StatsSampler {
    docker: Arc<DockerEngine>,
    cache: Arc<Mutex<Cache>>,
}

impl StatsSampler {
    pub fn new(docker: Arc<DockerEngine>) -> Self {
        Self {
            docker,
            cache: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples of the running containers `ids`: cached ones at once (stale
    /// ones are refreshed in the background), never-sampled ones measured
    /// now. A container the engine fails to sample (removed meanwhile) is
    /// left out.
    pub async fn running(&self, ids: Vec<String>) -> Vec<ContainerStats> {
        let mut out = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        let mut stale = Vec::new();
        {
            let mut cache = self.lock();
            cache.samples.retain(|_, s| s.at.elapsed() < FORGET_AFTER);
            for id in ids {
                match cache.samples.get(&id) {
                    Some(s) => {
                        out.push(s.stats.clone());
                        if s.at.elapsed() >= MAX_AGE && !cache.refreshing.contains(&id) {
                            stale.push(id);
                        }
                    }
                    None => unknown.push(id),
                }
            }
            cache.refreshing.extend(stale.iter().cloned());
        }
        if !stale.is_empty() {
            let this = self.clone();
            // Short-lived (each request is bounded by the engine client's
            // timeout); nothing waits for it, and a refresh lost at shutdown
            // loses nothing.
            tokio::spawn(async move { this.refresh(stale).await });
        }
        let measured = self.sample_all(unknown, false).await;
        let mut cache = self.lock();
        for (id, sample) in measured {
            if let Ok((s, counters)) = sample {
                let stats = sampled_stats(id.clone(), ContainerState::Running, &s, s.cpu_percent);
                out.push(stats.clone());
                cache.store(id, counters, stats);
            }
        }
        out
    }

    /// One-shot samples of `ids`, CPU from the counters of each one's
    /// previous sample.
    async fn refresh(&self, ids: Vec<String>) {
        let results = self.sample_all(ids, true).await;
        let mut cache = self.lock();
        for (id, sample) in results {
            cache.refreshing.remove(&id);
            let Ok((s, counters)) = sample else {
                // Gone or failing: answered from the old sample until it
                // is forgotten; the next stale call tries again.
                continue;
            };
            let cpu = cache
                .samples
                .get(&id)
                .map_or(0.0, |prev| counters.percent_since(&prev.counters));
            let stats = sampled_stats(id.clone(), ContainerState::Running, &s, cpu);
            cache.store(id, counters, stats);
        }
    }

    /// Engine samples of `ids`, [`CONCURRENCY`] requests at a time.
    async fn sample_all(
        &self,
        ids: Vec<String>,
        one_shot: bool,
    ) -> Vec<(String, Result<(DockerStats, CpuCounters), EngineError>)> {
        futures::stream::iter(ids)
            .map(|id| async move {
                let sample = self.docker.stats_sample(&id, one_shot).await;
                (id, sample)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }
}

/// What `stats` says of a container that is not running: its state, no
/// usage.
pub fn idle_stats(id: String, state: ContainerState) -> ContainerStats {
    ContainerStats {
        container_id: id,
        state,
        cpu_percent: 0.0,
        memory_bytes: 0,
        memory_limit_bytes: 0,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        last_activity_ms: None,
        at_ms: crate::db::now_ms() as u64,
    }
}

/// An engine stats sample as plugins get it, with its CPU figure.
pub fn sampled_stats(
    id: String,
    state: ContainerState,
    s: &DockerStats,
    cpu_percent: f64,
) -> ContainerStats {
    ContainerStats {
        container_id: id,
        state,
        cpu_percent,
        memory_bytes: s.memory_bytes,
        memory_limit_bytes: s.memory_limit_bytes,
        net_rx_bytes: s.network_rx_bytes,
        net_tx_bytes: s.network_tx_bytes,
        last_activity_ms: None,
        at_ms: crate::db::now_ms() as u64,
    }
}
