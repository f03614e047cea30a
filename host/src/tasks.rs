//! The host's background tasks, tracked: long-running loops (the Docker
//! event supervisor, the plugin manager, the UI's event recorder, the wake
//! hub, housekeeping) and short jobs that outlive their request (audit
//! writes, event deliveries).
//!
//! A loop that panics (or ends although the host is not shutting down) is
//! logged and started again after a back-off, instead of being silently
//! gone. Once the server has finished its requests, shutdown cancels the
//! loops' token and waits for every tracked task within what is left of the
//! grace period.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wakedock_plugin_runtime::panic_message;

/// First wait before a failed loop is restarted; doubles up to
/// [`RESTART_BACKOFF_MAX`].
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A loop that ran this long before failing starts its back-off afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Spawns and tracks the host's background tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks {
    /// Tasks whose loops end when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// Runs the loop `make(shutdown)` until shutdown. If it panics, or
    /// returns before shutdown, it is logged and made again with
    /// `make` after a back-off (100 ms doubling to 30 s).
    pub fn supervise<F, Fut>(&self, name: &'static str, mut make: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let mut backoff = RESTART_BACKOFF;
            loop {
                let started = Instant::now();
                // Loops end by themselves on the token, so shutdown lets
                // them finish what they are doing.
                let outcome = AssertUnwindSafe(make(shutdown.clone()))
                    .catch_unwind()
                    .await;
                if shutdown.is_cancelled() {
                    return;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = RESTART_BACKOFF;
                }
                match outcome {
                    Err(panic) => tracing::error!(
                        task = name,
                        panic = panic_message(panic.as_ref()),
                        retry_in = ?backoff,
                        "a background task panicked; restarting it"
                    ),
                    Ok(()) => tracing::warn!(
                        task = name,
                        retry_in = ?backoff,
                        "a background task ended unexpectedly; restarting it"
                    ),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
        });
    }

    /// Runs a one-off job (an audit write, an event delivery) that shutdown
    /// waits for. A panic in it is logged.
    pub fn spawn<Fut>(&self, name: &'static str, job: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(job).catch_unwind().await {
                tracing::error!(
                    task = name,
                    panic = panic_message(panic.as_ref()),
                    "a background job panicked"
                );
            }
        });
    }

    /// The token the loops end on (cancelled by [`Tasks::shut_down`]).
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Tracked tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels the loops' token and waits for every tracked task, for at
    /// most `grace`; returns whether all finished. Tasks spawned meanwhile
    /// are waited for too.
    pub async fn shut_down(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_until_shutdown() {
        let tasks = Tasks::new(CancellationToken::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        tasks.supervise("flaky", move |shutdown| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("run {n} fails");
                }
                shutdown.cancelled().await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the loop was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(tasks.shut_down(Duration::from_secs(5)).await);
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after shutdown");
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test]
    async fn a_loop_that_ends_early_is_restarted_but_not_after_shutdown() {
        let tasks = Tasks::new(CancellationToken::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        tasks.supervise("short", move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the loop was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(tasks.shut_down(Duration::from_secs(5)).await);
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after);
    }

    #[tokio::test]
    async fn shutdown_waits_for_tracked_jobs_within_the_grace_period() {
        let tasks = Tasks::new(CancellationToken::new());
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let done = done.clone();
            tasks.spawn("slow write", async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        // A loop that needs a moment to wind down after the token fires.
        let wound_down = Arc::new(AtomicUsize::new(0));
        let w = wound_down.clone();
        tasks.supervise("winds down", move |shutdown| {
            let w = w.clone();
            async move {
                shutdown.cancelled().await;
                w.fetch_add(1, Ordering::SeqCst);
            }
        });
        tasks.spawn("panics", async { panic!("a failing job") });
        assert!(tasks.shut_down(Duration::from_secs(5)).await);
        assert_eq!(
            done.load(Ordering::SeqCst),
            3,
            "returned before the jobs ended"
        );
        assert_eq!(wound_down.load(Ordering::SeqCst), 1, "the loop was cut off");
        assert_eq!(tasks.running(), 0);

        // A job longer than the grace period: shutdown gives up on time.
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("stuck", std::future::pending());
        let t = Instant::now();
        assert!(!tasks.shut_down(Duration::from_millis(100)).await);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
