//! Log subscriptions (API 0.1.4): what a plugin follows, checked and kept
//! per plugin, and the way back: a line the host read is checked again
//! against the subscription, cut to the grant's line length, held to its
//! lines per second (drops counted, never silent) and delivered to
//! `on-event` as a `container.log` event from `host`.
//!
//! The permission checks of `follow` itself are in the chokepoint
//! (`host.rs`); the host's [`ContainerLogsHost`](crate::caps::ContainerLogsHost)
//! only reads logs and hands lines to [`LogDelivery::deliver`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::host::PluginShared;
use crate::manifest::Selector;

/// Topic of a delivered line.
pub const LOG_TOPIC: &str = "container.log";
/// Longest pattern a subscription may give.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Compiled size a pattern may reach (the `regex` crate's own limit is
/// 10 MiB; a subscription is matched against every line).
pub(crate) const MAX_PATTERN_PROGRAM_BYTES: usize = 1 << 20;

/// One checked subscription of one plugin.
#[derive(Debug, Clone)]
pub struct LogFollow {
    pub name: String,
    /// The request's label terms and the grant's selector, together.
    pub selector: Selector,
    /// Name globs (`*` any run); empty: any name.
    pub names: Vec<String>,
    pub pattern: Option<regex::Regex>,
    /// Unix ms of the follow: earlier lines are history, never delivered.
    pub since_ms: u64,
}

impl LogFollow {
    /// Whether the subscription covers the container `name` (no leading
    /// `/`) with `labels`.
    pub fn selects(&self, name: &str, labels: &[(String, String)]) -> bool {
        self.selector.matches(labels)
            && (self.names.is_empty() || self.names.iter().any(|g| glob(g, name)))
    }

    /// Whether a line read at `at_ms` is one to deliver.
    pub fn wants(&self, line: &str, at_ms: u64) -> bool {
        at_ms >= self.since_ms && self.pattern.as_ref().is_none_or(|p| p.is_match(line))
    }

    /// The same subscription as `other`, apart from when it was made (a
    /// repeated `follow` changes nothing).
    pub fn same_as(&self, other: &LogFollow) -> bool {
        self.name == other.name
            && self.selector == other.selector
            && self.names == other.names
            && self.pattern.as_ref().map(regex::Regex::as_str)
                == other.pattern.as_ref().map(regex::Regex::as_str)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for mid in parts {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// What one plugin follows and the way back into it, as a host
/// implementation keeps it.
pub type Followed = (Vec<Arc<LogFollow>>, LogDelivery);

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// A line the host read from a followed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub container_id: String,
    /// Without the leading `/`.
    pub container_name: String,
    pub labels: Vec<(String, String)>,
    pub stream: LogStream,
    /// Without its line ending.
    pub line: String,
    /// Unix ms the engine read it.
    pub at_ms: u64,
}

/// What became of a line handed to [`LogDelivery::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The plugin's `on-event` ran with it.
    Delivered,
    /// Over the plugin's lines per second: counted, reported with the
    /// next line delivered.
    Dropped,
    /// The subscription does not cover it (ended, changed, another
    /// container, a line its pattern does not match, or history).
    NotCovered,
    /// The plugin (this load of it) is gone: stop following for it.
    Gone,
    /// `on-event` failed (the runtime's failure policy applies).
    Failed(String),
}

/// Lines delivered within the current second, and those dropped since the
/// last delivered one.
#[derive(Debug)]
pub(crate) struct RateWindow {
    started: Instant,
    sent: u32,
    dropped: u64,
}

impl RateWindow {
    pub(crate) fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            sent: 0,
            dropped: 0,
        }
    }

    /// `Some(dropped before it)` when a line may go now, `None` when it is
    /// over `per_second` (it is then counted as dropped).
    pub(crate) fn admit(&mut self, now: Instant, per_second: u32) -> Option<u64> {
        if now.duration_since(self.started) >= Duration::from_secs(1) {
            self.started = now;
            self.sent = 0;
        }
        if self.sent >= per_second {
            self.dropped += 1;
            return None;
        }
        self.sent += 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

/// Cuts `line` to at most `max` bytes on a character boundary; whether it
/// was cut.
pub(crate) fn truncate(line: &mut String, max: usize) -> bool {
    if line.len() <= max {
        return false;
    }
    let mut cut = max;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    line.truncate(cut);
    true
}

/// The `container.log` payload.
pub(crate) fn payload(subscription: &str, l: &LogLine, truncated: bool, dropped: u64) -> String {
    serde_json::json!({
        "subscription": subscription,
        "container-id": l.container_id,
        "container-name": l.container_name,
        "stream": l.stream.as_str(),
        "line": l.line,
        "truncated": truncated,
        "at-ms": l.at_ms,
        "dropped": dropped,
    })
    .to_string()
}

/// What one load of a plugin follows, and its delivery state.
pub(crate) struct PluginLogs {
    pub follows: Mutex<BTreeMap<String, Arc<LogFollow>>>,
    pub rate: Mutex<RateWindow>,
    /// The runtime, to call `on-event` (set once the plugin is prepared).
    pub runtime: OnceLock<Weak<crate::runtime::Inner>>,
}

impl PluginLogs {
    pub fn new() -> Self {
        PluginLogs {
            follows: Mutex::new(BTreeMap::new()),
            rate: Mutex::new(RateWindow::new(Instant::now())),
            runtime: OnceLock::new(),
        }
    }

    pub fn all(&self) -> Vec<Arc<LogFollow>> {
        lock(&self.follows).values().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The way back into one load of a plugin, handed to the host with its
/// subscriptions. Holds no strong reference: an unloaded or replaced
/// plugin answers [`Delivered::Gone`].
#[derive(Clone)]
pub struct LogDelivery {
    pub(crate) shared: Weak<PluginShared>,
}

impl std::fmt::Debug for LogDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDelivery").finish_non_exhaustive()
    }
}

impl LogDelivery {
    /// A delivery that reaches nothing (tests of host implementations).
    pub fn nowhere() -> Self {
        LogDelivery {
            shared: Weak::new(),
        }
    }

    /// Delivers `line` for `subscription`, after checking it again (the
    /// subscription covers its container and wants it), cutting it to the
    /// grant's line length and holding the grant's lines per second.
    pub async fn deliver(&self, subscription: &str, mut line: LogLine) -> Delivered {
        let Some(shared) = self.shared.upgrade() else {
            return Delivered::Gone;
        };
        let Some(perm) = shared.perms.container_logs else {
            return Delivered::Gone;
        };
        let covered = lock(&shared.logs.follows)
            .get(subscription)
            .is_some_and(|f| {
                f.selects(&line.container_name, &line.labels) && f.wants(&line.line, line.at_ms)
            });
        if !covered {
            return Delivered::NotCovered;
        }
        let Some(inner) = shared.logs.runtime.get().and_then(Weak::upgrade) else {
            return Delivered::Gone;
        };
        let admitted = lock(&shared.logs.rate).admit(Instant::now(), perm.max_lines_per_second);
        let Some(dropped) = admitted else {
            return Delivered::Dropped;
        };
        if dropped > 0 {
            tracing::warn!(
                plugin = %shared.name,
                dropped,
                limit = perm.max_lines_per_second,
                "log lines over the plugin's lines per second were dropped"
            );
        }
        let truncated = truncate(&mut line.line, perm.max_line_bytes as usize);
        let event = crate::caps::Event::Plugin(crate::caps::PluginEvent {
            source: "host".into(),
            topic: LOG_TOPIC.into(),
            payload: payload(subscription, &line, truncated, dropped),
            at_ms: line.at_ms,
        });
        let rt = crate::PluginRuntime { inner };
        match rt.deliver_to(&shared, event).await {
            Ok(true) => Delivered::Delivered,
            Ok(false) => Delivered::Gone,
            Err(e) => Delivered::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wakedock::plugin::container_logs::Host as _;
    use crate::caps::{CapError, FollowRequest};
    use crate::host::{deny_all_wasi, Limiter, PluginState};
    use crate::manifest::{Access, ContainerPermission, LogsPermission, Permissions};
    use crate::testing::{log_line as line, TestHost};

    fn perms(logs: bool, containers: Option<&str>) -> Permissions {
        Permissions {
            containers: containers.map(|sel| ContainerPermission {
                access: Access::Read,
                selector: Selector::parse(sel).unwrap(),
            }),
            container_logs: logs.then_some(LogsPermission {
                max_lines_per_second: 5,
                max_subscriptions: 2,
                max_line_bytes: 8,
            }),
            ..Permissions::default()
        }
    }

    /// An instance's host side, without wasm: the chokepoint's functions
    /// called as the guest would call them.
    fn instance(p: Permissions, host: &TestHost) -> PluginState {
        let shared = Arc::new(PluginShared::new(
            "p".into(),
            p,
            host.capabilities(),
            Duration::from_secs(5),
            Duration::from_secs(600),
        ));
        PluginState {
            shared,
            wasi: deny_all_wasi(),
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter {
                memory_limit: 1 << 20,
                table_elements_limit: 1000,
                max_tables: 1,
                memory_peak: 0,
                memory_hit: false,
                table_hit: false,
            },
            caller: None,
            ticks: 0,
            tick_budget: 1,
            cpu_exceeded: false,
        }
    }

    fn request(labels: &[&str], pattern: Option<&str>) -> FollowRequest {
        FollowRequest {
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            names: Vec::new(),
            pattern: pattern.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn following_is_denied_without_the_capability_or_without_containers() {
        let host = TestHost::new();
        let mut s = instance(perms(false, Some("")), &host);
        let r = s.follow("errors".into(), request(&[], None)).await;
        assert!(matches!(r, Err(CapError::PermissionDenied(_))), "{r:?}");
        assert!(matches!(
            s.following().await,
            Err(CapError::PermissionDenied(_))
        ));
        let audit = host.audit_entries();
        assert_eq!(audit[0].capability, "container-logs");
        assert_eq!(audit[0].action, "follow");

        let mut s = instance(perms(true, None), &host);
        let r = s.follow("errors".into(), request(&[], None)).await;
        match r {
            Err(CapError::PermissionDenied(why)) => {
                assert!(why.contains("containers capability"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(host.logs.follows("p").is_empty(), "nothing was followed");
    }

    #[tokio::test]
    async fn a_subscription_stays_within_the_grants_selector() {
        let host = TestHost::new();
        let mut s = instance(perms(true, Some("wakedock.instance=a")), &host);
        s.follow("errors".into(), request(&["team=x"], Some("ERROR")))
            .await
            .unwrap();
        let f = &host.logs.follows("p")[0];
        let both = [("wakedock.instance", "a"), ("team", "x")];
        assert!(f.selects("api", &line("api", &both, "").labels));
        assert!(
            !f.selects("api", &line("api", &[("team", "x")], "").labels),
            "another install's container"
        );
        // The runtime checks again what a host implementation hands it.
        let to = LogDelivery {
            shared: Arc::downgrade(&s.shared),
        };
        for (subscription, l, why) in [
            (
                "errors",
                line("api", &[("team", "x")], "ERROR"),
                "outside the grant's selector",
            ),
            (
                "errors",
                line("api", &both, "all is well"),
                "a line its pattern does not match",
            ),
            ("other", line("api", &both, "ERROR"), "no such subscription"),
        ] {
            assert_eq!(
                to.deliver(subscription, l).await,
                Delivered::NotCovered,
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn subscriptions_are_bounded_checked_and_replaced_by_name() {
        let host = TestHost::new();
        let mut s = instance(perms(true, Some("")), &host);
        s.follow("a".into(), request(&[], Some("x"))).await.unwrap();
        let since = host.logs.follows("p")[0].since_ms;
        std::thread::sleep(Duration::from_millis(2));
        // The same request again changes nothing (not even its start).
        s.follow("a".into(), request(&[], Some("x"))).await.unwrap();
        assert_eq!(host.logs.follows("p")[0].since_ms, since);
        // Another request under the same name replaces it.
        s.follow("a".into(), request(&[], Some("y"))).await.unwrap();
        let follows = host.logs.follows("p");
        assert_eq!(follows.len(), 1);
        assert_eq!(follows[0].pattern.as_ref().unwrap().as_str(), "y");
        s.follow("b".into(), request(&[], None)).await.unwrap();
        assert_eq!(
            s.follow("c".into(), request(&[], None)).await,
            Err(CapError::QuotaExceeded),
            "max-subscriptions is 2"
        );
        for (name, req, says) in [
            ("bad name!", request(&[], None), "subscription name"),
            ("a", request(&[], Some("(unclosed")), "pattern"),
            (
                "a",
                request(&[], Some(&"x".repeat(MAX_PATTERN_BYTES + 1))),
                "longer than",
            ),
            ("a", request(&["=v"], None), "labels"),
            ("a", request(&["a=1,b=2"], None), "one term per entry"),
        ] {
            match s.follow(name.into(), req).await {
                Err(CapError::Invalid(why)) => assert!(why.contains(says), "{why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // A pattern whose program is too large for the host.
        let huge = request(&[], Some(r"\w{1000}\w{1000}\w{1000}"));
        assert!(matches!(
            s.follow("a".into(), huge).await,
            Err(CapError::Invalid(_))
        ));
        assert_eq!(s.following().await.unwrap(), ["a", "b"]);
        assert_eq!(s.unfollow("a".into()).await, Ok(true));
        assert_eq!(s.unfollow("a".into()).await, Ok(false));
        assert_eq!(s.following().await.unwrap(), ["b"]);
        assert_eq!(host.logs.follows("p").len(), 1, "the host follows the rest");
        s.unfollow("b".into()).await.unwrap();
        assert!(host.logs.follows("p").is_empty());
    }

    #[test]
    fn lines_over_the_rate_are_dropped_and_counted_with_the_next_one() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        assert_eq!(w.admit(t0, 2), Some(0));
        assert_eq!(w.admit(t0, 2), Some(0));
        assert_eq!(w.admit(t0, 2), None);
        assert_eq!(w.admit(t0 + Duration::from_millis(999), 2), None);
        // The next second: the first line carries the two lost ones.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(w.admit(t1, 2), Some(2));
        assert_eq!(w.admit(t1, 2), Some(0));
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut s = "ééé".to_owned();
        assert!(truncate(&mut s, 3));
        assert_eq!(s, "é");
        let mut short = "ok".to_owned();
        assert!(!truncate(&mut short, 3));
        assert_eq!(short, "ok");
    }

    #[test]
    fn a_subscription_covers_its_containers_and_lines_since_it_was_made() {
        let f = LogFollow {
            name: "s".into(),
            selector: Selector::parse("team=a").unwrap(),
            names: vec!["api-*".into(), "db".into()],
            pattern: Some(regex::Regex::new("ERROR").unwrap()),
            since_ms: 1_000,
        };
        let team = [("team".to_owned(), "a".to_owned())];
        assert!(f.selects("api-1", &team));
        assert!(f.selects("db", &team));
        assert!(!f.selects("dbx", &team));
        assert!(!f.selects("api-1", &[]), "outside the selector");
        assert!(f.wants("an ERROR here", 1_000));
        assert!(!f.wants("an ERROR before the follow", 999));
        assert!(!f.wants("all is well", 2_000));
        for (g, t, m) in [
            ("*", "x", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXc", false),
            ("ab", "abc", false),
            ("*c", "abc", true),
        ] {
            assert_eq!(glob(g, t), m, "{g} {t}");
        }
    }

    #[test]
    fn the_payload_says_what_the_plugin_needs() {
        let l = LogLine {
            container_id: "abc".into(),
            container_name: "api".into(),
            labels: vec![],
            stream: LogStream::Stderr,
            line: "boom".into(),
            at_ms: 7,
        };
        let v: serde_json::Value = serde_json::from_str(&payload("s", &l, true, 3)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"subscription": "s", "container-id": "abc", "container-name": "api",
                "stream": "stderr", "line": "boom", "truncated": true, "at-ms": 7, "dropped": 3})
        );
    }
}
