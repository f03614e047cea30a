//! Stops WakeDock itself asked for (a user through the API or UI, a plugin
//! such as wake putting a container to sleep), so the container's `die`
//! can be told apart from a crash.
//!
//! An intent is noted just before the engine is asked, keyed by the
//! container's full id; the `die` that follows takes it. A container that
//! starts again drops an intent older than its start (a stop that turned
//! out to be a no-op leaves nothing behind for a later crash to hide in).

use std::collections::HashMap;
use std::sync::Mutex;

/// Notes kept at most this long without a matching `die`.
const MAX_AGE_MS: u64 = 10 * 60_000;

#[derive(Debug, Default)]
pub struct StopIntents {
    by_id: Mutex<HashMap<String, (String, u64)>>,
}

impl StopIntents {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, u64)>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `by` (`user:alice`, `plugin:wake`) is about to stop container `id`.
    pub fn expect(&self, id: &str, by: &str, now_ms: u64) {
        let mut m = self.lock();
        m.retain(|_, (_, at)| now_ms.saturating_sub(*at) < MAX_AGE_MS);
        m.insert(id.to_owned(), (by.to_owned(), now_ms));
    }

    /// The container `id` died: who asked for it, if anyone did.
    pub fn take(&self, id: &str) -> Option<String> {
        self.lock().remove(id).map(|(by, _)| by)
    }

    /// The container `id` started at `start_ms`: intents from before it
    /// are void.
    pub fn started(&self, id: &str, start_ms: u64) {
        let mut m = self.lock();
        if m.get(id).is_some_and(|(_, at)| *at <= start_ms) {
            m.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_die_takes_the_intent_once() {
        let s = StopIntents::default();
        s.expect("abc", "user:alice", 100);
        assert_eq!(s.take("abc").as_deref(), Some("user:alice"));
        assert_eq!(s.take("abc"), None, "the next crash is a crash");
    }

    #[test]
    fn a_start_voids_an_older_intent_but_not_a_newer_one() {
        let s = StopIntents::default();
        s.expect("abc", "plugin:wake", 100);
        s.started("abc", 150);
        assert_eq!(s.take("abc"), None);
        s.expect("abc", "plugin:wake", 200);
        s.started("abc", 150);
        assert_eq!(s.take("abc").as_deref(), Some("plugin:wake"));
    }

    #[test]
    fn old_intents_are_forgotten() {
        let s = StopIntents::default();
        s.expect("old", "user:bob", 0);
        s.expect("new", "user:bob", MAX_AGE_MS + 1);
        assert_eq!(s.take("old"), None);
        assert!(s.take("new").is_some());
    }
}
