//! Stops WakeDock itself asked for (a user through the API or UI, a plugin
//! such as wake putting a container to sleep), so the container's `die`
//! can be told apart from a crash.
//!
//! An intent is noted just before the engine is asked, keyed by what the
//! caller named the container with (a full or short id, or its name: the
//! plugin path does not inspect before a stop, to keep a sleep at one
//! engine request); the `die` that follows, which carries the full id and
//! the name, takes it. A container that
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

    /// `by` (`user:alice`, `plugin:wake`) is about to stop the container
    /// named `id` (full id, short id or name).
    pub fn expect(&self, id: &str, by: &str, now_ms: u64) {
        let mut m = self.lock();
        m.retain(|_, (_, at)| now_ms.saturating_sub(*at) < MAX_AGE_MS);
        m.insert(id.to_owned(), (by.to_owned(), now_ms));
    }

    /// The container with full id `id` and `name` died: who asked for it,
    /// if anyone did.
    pub fn take(&self, id: &str, name: Option<&str>) -> Option<String> {
        let mut m = self.lock();
        let key = m.keys().find(|k| names(k, id, name)).cloned()?;
        m.remove(&key).map(|(by, _)| by)
    }

    /// The container (`id`, `name`) started at `start_ms`: intents from
    /// before it are void.
    pub fn started(&self, id: &str, name: Option<&str>, start_ms: u64) {
        self.lock()
            .retain(|k, (_, at)| !(names(k, id, name) && *at <= start_ms));
    }
}

/// Whether `key` (as a caller named a container) names the container with
/// full id `id` and `name`: the id itself, an id prefix of at least 12
/// hex digits (Docker's short id), or the name (with or without `/`).
fn names(key: &str, id: &str, name: Option<&str>) -> bool {
    key == id
        || (key.len() >= 12 && id.starts_with(key))
        || name.is_some_and(|n| n.trim_start_matches('/') == key.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_die_takes_the_intent_once() {
        let s = StopIntents::default();
        s.expect("abc", "user:alice", 100);
        assert_eq!(s.take("abc", None).as_deref(), Some("user:alice"));
        assert_eq!(s.take("abc", None), None, "the next crash is a crash");
    }

    #[test]
    fn a_start_voids_an_older_intent_but_not_a_newer_one() {
        let s = StopIntents::default();
        s.expect("abc", "plugin:wake", 100);
        s.started("abc", None, 150);
        assert_eq!(s.take("abc", None), None);
        s.expect("abc", "plugin:wake", 200);
        s.started("abc", None, 150);
        assert_eq!(s.take("abc", None).as_deref(), Some("plugin:wake"));
    }

    #[test]
    fn an_intent_noted_by_name_or_short_id_is_taken_by_the_die() {
        let id = "0123456789abcdef0123456789abcdef";
        let s = StopIntents::default();
        s.expect("web-app", "plugin:wake", 100);
        assert_eq!(s.take(id, Some("other")), None);
        assert_eq!(s.take(id, Some("web-app")).as_deref(), Some("plugin:wake"));
        s.expect("0123456789ab", "user:alice", 100);
        assert_eq!(s.take(id, Some("web-app")).as_deref(), Some("user:alice"));
        // Too short to be an id: a name only.
        s.expect("0123", "user:alice", 100);
        assert_eq!(s.take(id, None), None);
    }

    #[test]
    fn old_intents_are_forgotten() {
        let s = StopIntents::default();
        s.expect("old", "user:bob", 0);
        s.expect("new", "user:bob", MAX_AGE_MS + 1);
        assert_eq!(s.take("old", None), None);
        assert!(s.take("new", None).is_some());
    }
}
