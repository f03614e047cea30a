//! What the plugin knows of each container, wake service and part of the
//! host, and whether a rule's condition holds for it.
//!
//! The one rule that matters most: a container WakeDock stopped on purpose
//! (the wake plugin putting it to sleep, a user's stop through the API or
//! UI) is asleep or stopped, never down: no container rule holds for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::{ContainerExited, HostHealth};
use crate::rule::{Kind, Rule};
use crate::selector::Target;

/// A container's healthcheck status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// How a container last stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub oom: bool,
    pub restart_policy: String,
    pub stopped_by: Option<String>,
    pub at_ms: u64,
}

impl Exit {
    /// Not asked for: WakeDock did not stop it, and it failed (non-zero,
    /// OOM) or it was meant to keep running (a restart policy).
    pub fn unexpected(&self) -> bool {
        if self.stopped_by.is_some() {
            return false;
        }
        let restarts = !matches!(self.restart_policy.as_str(), "" | "no");
        self.oom || self.code.is_some_and(|c| c != 0) || (self.code == Some(0) && restarts)
    }

    pub fn describe(&self) -> String {
        let code = self
            .code
            .map_or_else(|| "an unknown code".to_owned(), |c| c.to_string());
        if self.oom {
            format!("was OOM-killed (exit code {code})")
        } else if self.code == Some(0) {
            format!(
                "exited with code 0 although its restart policy is `{}`",
                self.restart_policy
            )
        } else {
            format!("exited with code {code}")
        }
    }
}

/// What one container is doing, as the UI says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "by")]
pub enum Status {
    Running,
    /// WakeDock's wake plugin put it to sleep.
    Asleep,
    /// Stopped through WakeDock by someone (a user, another plugin).
    StoppedBy(String),
    /// Stopped on its own.
    Down,
    Unknown,
}

/// Everything known of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerFacts {
    /// The engine's id (stats are by id).
    #[serde(default)]
    pub id: String,
    pub target: Target,
    pub running: bool,
    pub health: Health,
    pub last_exit: Option<Exit>,
    /// Times of unexpected exits, within the longest restart-loop window.
    pub exits: Vec<u64>,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// When it last started (engine time), to order a late exit event.
    #[serde(default)]
    pub started_ms: u64,
    /// Lines matching each `log` rule's pattern, by rule name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_matches: BTreeMap<String, LogMatches>,
}

/// The recent lines of one container that one `log` rule's pattern
/// matched: only as many as the rule counts, within its window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMatches {
    /// Engine times, oldest first.
    pub at_ms: Vec<u64>,
    /// The newest line (what the notification quotes).
    pub last_line: String,
}

/// Longest line quoted in a notification.
const QUOTE_BYTES: usize = 200;

fn quote(line: &str) -> String {
    if line.len() <= QUOTE_BYTES {
        return line.to_owned();
    }
    let mut cut = QUOTE_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &line[..cut])
}

/// Exits older than this are forgotten (the longest restart-loop window
/// anyone needs).
pub const EXIT_MEMORY_MS: u64 = 24 * 3_600_000;

impl ContainerFacts {
    pub fn new(target: Target) -> Self {
        ContainerFacts {
            target,
            ..ContainerFacts::default()
        }
    }

    pub fn on_exited(&mut self, ev: &ContainerExited) {
        let exit = Exit {
            code: ev.exit_code,
            oom: ev.oom_killed,
            restart_policy: ev.restart_policy.clone(),
            stopped_by: ev.stopped_by.clone(),
            at_ms: ev.at_ms,
        };
        // The exit of a run that already ended: a start came after it
        // (the host's exit event takes longer than the engine's start).
        if ev.at_ms >= self.started_ms {
            self.running = false;
        }
        self.id.clone_from(&ev.id);
        if exit.stopped_by.is_none() {
            self.exits.push(ev.at_ms);
        }
        self.exits
            .retain(|t| ev.at_ms.saturating_sub(*t) <= EXIT_MEMORY_MS);
        self.last_exit = Some(exit);
    }

    pub fn on_started(&mut self, health: Health, at_ms: u64) {
        self.running = true;
        self.health = health;
        self.started_ms = self.started_ms.max(at_ms);
    }

    /// Running and, when it has a healthcheck, healthy.
    pub fn recovered(&self) -> bool {
        self.running && matches!(self.health, Health::None | Health::Healthy)
    }

    pub fn status(&self) -> Status {
        match (&self.running, &self.last_exit) {
            (true, _) => Status::Running,
            (false, Some(e)) => match e.stopped_by.as_deref() {
                Some("plugin:wake") => Status::Asleep,
                Some(by) => Status::StoppedBy(by.to_owned()),
                None => Status::Down,
            },
            (false, None) => Status::Unknown,
        }
    }

    /// A line `rule` (a `log` rule) matched, read at `at_ms`. Keeps the
    /// rule's `count` newest within its window, so memory stays bounded
    /// however chatty the container is.
    pub fn on_log_match(&mut self, rule: &Rule, line: &str, at_ms: u64) {
        let Kind::Log { count, .. } = &rule.def.kind else {
            return;
        };
        let m = self.log_matches.entry(rule.name().to_owned()).or_default();
        m.at_ms.push(at_ms);
        m.at_ms.sort_unstable();
        m.at_ms
            .retain(|t| at_ms.saturating_sub(*t) < rule.window_ms);
        let excess = m.at_ms.len().saturating_sub(*count as usize);
        m.at_ms.drain(..excess);
        m.last_line = quote(line);
    }

    /// Lines `rule` matched within its window before `now`.
    fn log_matches_within(&self, rule: &Rule, now: u64) -> (usize, Option<&str>) {
        match self.log_matches.get(rule.name()) {
            None => (0, None),
            Some(m) => (
                m.at_ms
                    .iter()
                    .filter(|t| now.saturating_sub(**t) < rule.window_ms)
                    .count(),
                Some(m.last_line.as_str()),
            ),
        }
    }

    fn exits_within(&self, window_ms: u64, now: u64) -> usize {
        self.exits
            .iter()
            .filter(|t| now.saturating_sub(**t) < window_ms)
            .count()
    }
}

/// Whether a rule's condition holds, and what to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub holds: bool,
    /// Why it holds (firing) or how it ended (resolved).
    pub detail: String,
}

fn verdict(holds: bool, detail: impl Into<String>) -> Verdict {
    Verdict {
        holds,
        detail: detail.into(),
    }
}

fn recovery(f: &ContainerFacts) -> String {
    match f.status() {
        Status::Running if f.health == Health::Healthy => "running and healthy again".into(),
        Status::Running => "running again".into(),
        Status::Asleep => "asleep (put to sleep by WakeDock)".into(),
        Status::StoppedBy(by) => format!("stopped on purpose by {by}"),
        Status::Down | Status::Unknown => "no longer matches the rule".into(),
    }
}

/// A container rule's condition over `f` at `now`; `None` for rules that
/// are not about containers.
pub fn container_verdict(rule: &Rule, f: &ContainerFacts, now: u64) -> Option<Verdict> {
    let name = &f.target.name;
    let v = match &rule.def.kind {
        Kind::Exit => match &f.last_exit {
            Some(e) if e.unexpected() && !f.recovered() => {
                verdict(true, format!("container {name} {}", e.describe()))
            }
            _ => verdict(false, format!("container {name} is {}", recovery(f))),
        },
        Kind::Oom => match &f.last_exit {
            Some(e) if e.oom && e.stopped_by.is_none() && !f.recovered() => {
                verdict(true, format!("container {name} {}", e.describe()))
            }
            _ => verdict(false, format!("container {name} is {}", recovery(f))),
        },
        Kind::RestartLoop { count, window } => {
            let n = f.exits_within(rule.window_ms, now);
            if n >= *count as usize {
                verdict(
                    true,
                    format!("container {name} exited {n} times within {window}"),
                )
            } else {
                verdict(
                    false,
                    format!("container {name} exited fewer than {count} times within {window}"),
                )
            }
        }
        Kind::Unhealthy => {
            if f.running && f.health == Health::Unhealthy {
                verdict(true, format!("container {name} is unhealthy"))
            } else {
                verdict(false, format!("container {name} is {}", recovery(f)))
            }
        }
        Kind::Cpu { percent } => match f.cpu_percent {
            Some(cpu) if f.running && cpu > *percent => verdict(
                true,
                format!("container {name} uses {cpu:.1}% CPU (threshold {percent}%)"),
            ),
            _ => verdict(false, format!("container {name} is below {percent}% CPU")),
        },
        Kind::Memory { percent, bytes } => {
            let used = f.memory_bytes.unwrap_or(0);
            let limit = f.memory_limit_bytes.unwrap_or(0);
            let over = match (percent, bytes) {
                (Some(p), _) if limit > 0 => (used as f64) * 100.0 / (limit as f64) > *p,
                (_, Some(b)) => used > *b,
                _ => false,
            };
            if f.running && over {
                verdict(
                    true,
                    format!("container {name} uses {used} bytes of memory (limit {limit})"),
                )
            } else {
                verdict(
                    false,
                    format!("container {name} is below its memory threshold"),
                )
            }
        }
        Kind::Log {
            pattern,
            count,
            window,
        } => {
            let (n, last) = f.log_matches_within(rule, now);
            if n >= *count as usize {
                let times = if n == 1 {
                    "a line".to_owned()
                } else {
                    format!("{n} lines")
                };
                verdict(
                    true,
                    format!(
                        "container {name} logged {times} matching `{pattern}` within {window} (last: {})",
                        last.unwrap_or_default()
                    ),
                )
            } else {
                verdict(
                    false,
                    format!(
                        "container {name} logged fewer than {count} lines matching `{pattern}` within {window}"
                    ),
                )
            }
        }
        _ => return None,
    };
    Some(v)
}

/// What the wake plugin last said of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFacts {
    pub name: String,
    pub state: String,
    pub reason: Option<String>,
    pub seq: u64,
    /// When the current wake began.
    pub waking_since: Option<u64>,
    /// How long the last completed wake took.
    pub last_wake_ms: Option<u64>,
}

impl ServiceFacts {
    /// A `wake.state` document arrived at `at_ms`. Older documents
    /// (lower `seq`) are ignored; true if it was taken.
    pub fn on_state(&mut self, state: &str, reason: Option<String>, seq: u64, at_ms: u64) -> bool {
        if seq < self.seq {
            return false;
        }
        match (self.state.as_str(), state) {
            (prev, "waking") if prev != "waking" => self.waking_since = Some(at_ms),
            ("waking", "awake") => {
                if let Some(since) = self.waking_since.take() {
                    self.last_wake_ms = Some(at_ms.saturating_sub(since));
                }
            }
            (_, "waking") => {}
            _ => self.waking_since = None,
        }
        self.state = state.to_owned();
        self.reason = reason;
        self.seq = seq;
        true
    }
}

/// Whether a wake's failure reason says it ran out of time (the wake
/// plugin's words: "was not ready within its wake timeout").
pub fn timed_out(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("wake timeout") || r.contains("timed out")
}

/// A wake rule's condition over `f`; `None` for other rules.
pub fn service_verdict(rule: &Rule, f: &ServiceFacts) -> Option<Verdict> {
    let name = &f.name;
    let reason = f.reason.as_deref().unwrap_or("no reason given");
    let v = match &rule.def.kind {
        Kind::WakeFailed => {
            if f.state == "failed" {
                verdict(true, format!("service {name} failed: {reason}"))
            } else {
                verdict(false, format!("service {name} is {}", f.state))
            }
        }
        Kind::WakeTimeout => {
            if f.state == "failed" && timed_out(reason) {
                verdict(true, format!("service {name} timed out waking: {reason}"))
            } else {
                verdict(false, format!("service {name} is {}", f.state))
            }
        }
        Kind::WakeSlow { threshold } => match f.last_wake_ms {
            Some(ms) if ms > rule.window_ms => verdict(
                true,
                format!("service {name} took {ms} ms to wake (threshold {threshold})"),
            ),
            Some(ms) => verdict(false, format!("service {name} woke in {ms} ms")),
            None => verdict(false, format!("service {name} has not woken yet")),
        },
        _ => return None,
    };
    Some(v)
}

/// The host's parts, by target (`engine`, `database`, `plugin:<name>`).
pub type HostFacts = BTreeMap<String, HostHealth>;

/// A host rule's condition for `target`; `None` for other rules or
/// targets.
pub fn host_verdict(rule: &Rule, target: &str, h: &HostHealth) -> Option<Verdict> {
    let wanted = match &rule.def.kind {
        Kind::EngineUnreachable => target == "engine",
        Kind::DatabaseUnavailable => target == "database",
        Kind::PluginFailed => target.starts_with("plugin:") && target != "plugin:alerts",
        _ => false,
    };
    if !wanted {
        return None;
    }
    let what = match target {
        "engine" => "the Docker engine".to_owned(),
        "database" => "the database".to_owned(),
        p => format!("plugin {}", p.trim_start_matches("plugin:")),
    };
    Some(if h.up {
        verdict(false, format!("{what} is available again"))
    } else {
        let why = h.detail.as_deref().unwrap_or("no reason given");
        verdict(true, format!("{what} is unavailable: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_rule;
    use serde_json::json;

    fn exited(code: i32, oom: bool, policy: &str, by: Option<&str>, at: u64) -> ContainerExited {
        ContainerExited {
            id: "id".into(),
            name: "api".into(),
            labels: BTreeMap::new(),
            exit_code: Some(code),
            oom_killed: oom,
            restart_policy: policy.into(),
            stopped_by: by.map(str::to_owned),
            at_ms: at,
        }
    }

    fn rule(v: serde_json::Value) -> Rule {
        parse_rule(&v).unwrap()
    }

    fn facts() -> ContainerFacts {
        let mut f = ContainerFacts::new(Target::new("api", []));
        f.on_started(Health::None, 0);
        f
    }

    #[test]
    fn an_exit_is_unexpected_unless_clean_without_restart_policy_or_asked_for() {
        let exit = rule(json!({"name": "x", "kind": "exit"}));
        for (code, policy, by, fires) in [
            (1, "no", None, true),
            (0, "no", None, false),
            (0, "", None, false),
            (0, "always", None, true),
            (0, "on-failure", None, true),
            (137, "no", Some("plugin:wake"), false),
            (1, "always", Some("user:alice"), false),
        ] {
            let mut f = facts();
            f.on_exited(&exited(code, false, policy, by, 1000));
            let v = container_verdict(&exit, &f, 1000).unwrap();
            assert_eq!(v.holds, fires, "{code} {policy} {by:?}: {}", v.detail);
        }
        let mut f = facts();
        f.on_exited(&exited(3, false, "no", None, 1000));
        let v = container_verdict(&exit, &f, 1000).unwrap();
        assert_eq!(v.detail, "container api exited with code 3");
    }

    #[test]
    fn a_container_put_to_sleep_is_asleep_not_down() {
        let mut f = facts();
        f.on_exited(&exited(0, false, "unless-stopped", Some("plugin:wake"), 5));
        assert_eq!(f.status(), Status::Asleep);
        for kind in ["exit", "oom", "unhealthy"] {
            let r = rule(json!({"name": "x", "kind": kind}));
            assert!(!container_verdict(&r, &f, 5).unwrap().holds, "{kind}");
        }
        let r = rule(json!({"name": "x", "kind": "restart-loop", "count": 2, "window": "1m"}));
        f.on_started(Health::None, 6);
        f.on_exited(&exited(0, false, "no", Some("plugin:wake"), 6));
        assert!(!container_verdict(&r, &f, 6).unwrap().holds);
        f.on_started(Health::None, 7);
        f.on_exited(&exited(0, false, "no", Some("user:bob"), 7));
        assert_eq!(f.status(), Status::StoppedBy("user:bob".into()));
    }

    #[test]
    fn an_exit_resolves_when_running_and_healthy_again() {
        let exit = rule(json!({"name": "x", "kind": "exit"}));
        let mut f = facts();
        f.on_exited(&exited(1, false, "always", None, 10));
        assert!(container_verdict(&exit, &f, 10).unwrap().holds);
        f.on_started(Health::Starting, 11);
        assert!(container_verdict(&exit, &f, 11).unwrap().holds);
        f.health = Health::Healthy;
        let v = container_verdict(&exit, &f, 12).unwrap();
        assert!(!v.holds);
        assert_eq!(v.detail, "container api is running and healthy again");
    }

    #[test]
    fn oom_and_unhealthy_and_restart_loops() {
        let oom = rule(json!({"name": "o", "kind": "oom"}));
        let mut f = facts();
        f.on_exited(&exited(137, true, "no", None, 10));
        let v = container_verdict(&oom, &f, 10).unwrap();
        assert!(v.holds);
        assert!(v.detail.contains("OOM-killed"), "{}", v.detail);

        let sick = rule(json!({"name": "u", "kind": "unhealthy"}));
        let mut f = facts();
        f.health = Health::Unhealthy;
        assert!(container_verdict(&sick, &f, 0).unwrap().holds);

        let lp = rule(json!({"name": "l", "kind": "restart-loop", "count": 3, "window": "1m"}));
        let mut f = facts();
        for t in [1_000, 2_000] {
            f.on_exited(&exited(1, false, "always", None, t));
            f.on_started(Health::None, t + 100);
        }
        assert!(!container_verdict(&lp, &f, 2_000).unwrap().holds);
        f.on_exited(&exited(1, false, "always", None, 3_000));
        let v = container_verdict(&lp, &f, 3_000).unwrap();
        assert!(v.holds);
        assert_eq!(v.detail, "container api exited 3 times within 1m");
        // The window slides: a minute later it no longer holds.
        assert!(!container_verdict(&lp, &f, 62_000).unwrap().holds);
    }

    #[test]
    fn an_exit_reported_after_the_next_start_leaves_it_running() {
        let exit = rule(json!({"name": "x", "kind": "exit"}));
        let mut f = facts();
        f.on_started(Health::None, 2_000);
        f.on_exited(&exited(1, false, "always", None, 1_900));
        assert!(f.running);
        assert_eq!(f.exits, [1_900], "it still counts for restart loops");
        assert!(!container_verdict(&exit, &f, 2_000).unwrap().holds);
    }

    #[test]
    fn a_log_rule_holds_at_its_count_within_its_window_and_forgets_older_lines() {
        let r = rule(
            json!({"name": "boom", "kind": "log", "pattern": "GET /boom", "count": 3, "window": "1m"}),
        );
        let mut f = facts();
        assert!(!container_verdict(&r, &f, 0).unwrap().holds);
        f.on_log_match(&r, "GET /boom 404", 1_000);
        f.on_log_match(&r, "GET /boom 404", 2_000);
        assert!(
            !container_verdict(&r, &f, 2_000).unwrap().holds,
            "two of three"
        );
        f.on_log_match(&r, "GET /boom?x 404", 3_000);
        let v = container_verdict(&r, &f, 3_000).unwrap();
        assert!(v.holds);
        assert_eq!(
            v.detail,
            "container api logged 3 lines matching `GET /boom` within 1m (last: GET /boom?x 404)"
        );
        // A minute after the first, two remain: it resolves.
        let v = container_verdict(&r, &f, 61_000).unwrap();
        assert!(!v.holds, "{}", v.detail);
        // Only the rule's count is kept, however many lines match.
        for t in 0..1000 {
            f.on_log_match(&r, "GET /boom 404", 100_000 + t);
        }
        assert_eq!(f.log_matches["boom"].at_ms.len(), 3);
        // Lines older than the window are gone once a new one comes.
        f.on_log_match(&r, &"x".repeat(500), 500_000);
        assert_eq!(f.log_matches["boom"].at_ms, [500_000]);
        assert!(f.log_matches["boom"].last_line.len() < 300, "quoted short");
        // Another kind of rule leaves the counts alone.
        let exit = rule(json!({"name": "x", "kind": "exit"}));
        f.on_log_match(&exit, "GET /boom", 500_001);
        assert!(!f.log_matches.contains_key("x"));
    }

    #[test]
    fn thresholds_on_stats() {
        let cpu = rule(json!({"name": "c", "kind": "cpu", "percent": 80.0}));
        let mem = rule(json!({"name": "m", "kind": "memory", "percent": 90.0}));
        let mut f = facts();
        f.cpu_percent = Some(95.0);
        f.memory_bytes = Some(50);
        f.memory_limit_bytes = Some(100);
        assert!(container_verdict(&cpu, &f, 0).unwrap().holds);
        assert!(!container_verdict(&mem, &f, 0).unwrap().holds);
        f.memory_bytes = Some(95);
        assert!(container_verdict(&mem, &f, 0).unwrap().holds);
    }

    #[test]
    fn wake_rules_follow_the_wake_plugins_states() {
        let failed = rule(json!({"name": "f", "kind": "wake-failed"}));
        let timeout = rule(json!({"name": "t", "kind": "wake-timeout"}));
        let slow = rule(json!({"name": "s", "kind": "wake-slow", "threshold": "2s"}));
        let mut s = ServiceFacts {
            name: "shop".into(),
            ..ServiceFacts::default()
        };
        assert!(s.on_state("waking", None, 1, 1_000));
        assert!(s.on_state("awake", None, 2, 4_500));
        assert_eq!(s.last_wake_ms, Some(3_500));
        assert!(service_verdict(&slow, &s).unwrap().holds);
        assert!(!s.on_state("failed", None, 1, 5_000), "an older document");
        s.on_state("waking", None, 3, 6_000);
        s.on_state(
            "failed",
            Some("service \"shop\" was not ready within its wake timeout of 1000 ms".into()),
            4,
            7_000,
        );
        assert!(service_verdict(&failed, &s).unwrap().holds);
        assert!(service_verdict(&timeout, &s).unwrap().holds);
        s.on_state("failed", Some("member db could not start".into()), 5, 8_000);
        assert!(!service_verdict(&timeout, &s).unwrap().holds);
    }
}
