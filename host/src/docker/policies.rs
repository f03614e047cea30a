//! Restart policies the host has seen: a bare `die` event does not say
//! whether Docker will restart the container, and the alerts plugin needs
//! to know (a container that restarts by policy is flapping, not down).
//!
//! Every inspect the host makes anyway fills it (a wake's readiness wait
//! inspects each member once), so a wake costs no extra engine request for
//! this; only containers started outside a wake are inspected for it (see
//! `alerts::events`). A policy changes only by `docker update`, so an
//! `update` or `destroy` event forgets the container, and a reopened event
//! stream forgets everything (events may have been missed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Above this many containers remembered, start afresh (a bound, not a
/// cache policy: asking the engine is always correct).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub struct RestartPolicies {
    /// Full container id -> restart policy name (`""` is Docker's `no`).
    known: Mutex<HashMap<String, String>>,
    learnt: Notify,
}

impl RestartPolicies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes what an inspect answered for container `id` (its full id).
    pub fn learn(&self, id: &str, policy: &str) {
        {
            let mut known = self.lock();
            if known.len() >= MAX_REMEMBERED && !known.contains_key(id) {
                known.clear();
            }
            known.insert(id.to_owned(), policy.to_owned());
        }
        self.learnt.notify_waiters();
    }

    pub fn get(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    /// Learns from one engine event about container `id`.
    pub fn observe(&self, id: &str, action: &str) {
        if matches!(action, "update" | "destroy") {
            self.lock().remove(id);
        }
    }

    /// Forgets everything (the event stream opened or ended).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// The policy of `id` once an inspect made within `limit` learns it,
    /// or `None` at the limit.
    pub async fn learnt_within(&self, id: &str, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let learnt = self.learnt.notified();
            tokio::pin!(learnt);
            // Registered before looking, so a `learn` in between wakes us.
            learnt.as_mut().enable();
            if let Some(policy) = self.get(id) {
                return Some(policy);
            }
            if tokio::time::timeout_at(deadline, learnt).await.is_err() {
                return self.get(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_or_removal_forgets_the_policy_and_other_events_keep_it() {
        let p = RestartPolicies::default();
        p.learn("a", "always");
        p.learn("b", "");
        for action in ["start", "die", "stop", "restart", "rename"] {
            p.observe("a", action);
        }
        assert_eq!(p.get("a").as_deref(), Some("always"));
        p.observe("a", "update");
        assert_eq!(p.get("a"), None);
        p.observe("b", "destroy");
        assert_eq!(p.get("b"), None);
        p.learn("c", "on-failure");
        p.forget_all();
        assert_eq!(p.get("c"), None);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_policy_an_inspect_learns_later() {
        let p = std::sync::Arc::new(RestartPolicies::default());
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.learnt_within("a", Duration::from_secs(30)).await })
        };
        // Other containers' policies do not end the wait.
        tokio::task::yield_now().await;
        p.learn("b", "no");
        tokio::task::yield_now().await;
        p.learn("a", "unless-stopped");
        let got = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the waiter wakes when the policy is learnt")
            .unwrap();
        assert_eq!(got.as_deref(), Some("unless-stopped"));
    }

    #[tokio::test]
    async fn a_policy_nobody_learns_ends_the_wait_at_its_limit() {
        let p = RestartPolicies::default();
        p.learn("b", "always");
        assert_eq!(p.learnt_within("a", Duration::from_millis(50)).await, None);
    }
}
