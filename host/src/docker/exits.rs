//! Exit codes the engine announced: a `die` event carries the container's
//! exit code, so asking for it again (an inspect per stopped container,
//! which the wake plugin does for every sleeping member on every tick)
//! costs nothing while the event stream shows nothing changed since.
//!
//! Only events fill it, never inspects (an inspect's answer can be older
//! than an event already seen). It is emptied whenever the event stream
//! (re)opens or ends, since events may have been missed, and forgets a
//! container when it starts, is renamed or removed.

use std::collections::HashMap;
use std::sync::Mutex;

/// Above this many containers remembered, start afresh (a bound, not a
/// cache policy: asking the engine is always correct).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub struct ExitCodes {
    /// id -> (name, exit code)
    codes: Mutex<HashMap<String, (String, i64)>>,
}

impl ExitCodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.codes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns from one engine event about container `id`.
    pub fn observe(&self, id: &str, name: Option<&str>, action: &str, exit_code: Option<&str>) {
        let mut codes = self.lock();
        match action {
            "die" => {
                let (Some(name), Some(code)) = (name, exit_code.and_then(|c| c.parse().ok()))
                else {
                    codes.remove(id);
                    return;
                };
                if codes.len() >= MAX_REMEMBERED {
                    codes.clear();
                }
                codes.insert(id.to_owned(), (name.to_owned(), code));
            }
            "start" | "restart" | "unpause" | "destroy" | "rename" => {
                codes.remove(id);
            }
            _ => {}
        }
    }

    /// Forgets everything (the event stream opened or ended).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// The exit code of a container that died since the stream opened and
    /// has not started since, by full id or name.
    pub fn get(&self, id_or_name: &str) -> Option<i64> {
        let r = id_or_name.trim_start_matches('/');
        let codes = self.lock();
        if let Some((_, code)) = codes.get(r) {
            return Some(*code);
        }
        codes
            .values()
            .find(|(name, _)| name == r)
            .map(|(_, code)| *code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_die_is_remembered_until_the_container_starts_again() {
        let e = ExitCodes::default();
        assert_eq!(e.get("web"), None);
        e.observe("abc123", Some("web"), "die", Some("137"));
        assert_eq!(e.get("web"), Some(137));
        assert_eq!(e.get("/web"), Some(137));
        assert_eq!(e.get("abc123"), Some(137));
        // Our own healthcheck execs and the like change nothing.
        e.observe("abc123", Some("web"), "exec_die", Some("1"));
        assert_eq!(e.get("web"), Some(137));
        e.observe("abc123", Some("web"), "start", None);
        assert_eq!(e.get("web"), None);
        e.observe("abc123", Some("web"), "die", Some("0"));
        e.observe("abc123", Some("web"), "rename", None);
        assert_eq!(e.get("web"), None, "the name may now be another's");
        e.observe("abc123", Some("web"), "die", Some("0"));
        e.forget_all();
        assert_eq!(e.get("abc123"), None);
        // A die without a readable code teaches nothing.
        e.observe("abc123", Some("web"), "die", None);
        assert_eq!(e.get("web"), None);
    }
}
