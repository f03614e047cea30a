//! Sessions: when each awake service may go to sleep.
//!
//! A session holds an *absolute* expiry (Unix ms), so it survives a host
//! restart unchanged: no reset to a full duration, no loss. Activity reports
//! from the bridge extend it; open long-lived connections (WebSocket, SSE,
//! streaming) keep the service awake while the bridge keeps reporting them.
//!
//! The bridge reports a service in a batch only while it has requests or
//! open connections, so a hold whose reports stopped coming lapses after
//! [`HOLD_STALE_MS`] (a crashed bridge does not keep a service awake forever).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::{Service, SleepMode};

/// An open-connection hold lapses when no report arrived for this long.
pub const HOLD_STALE_MS: u64 = 2 * 60 * 1000;

/// The session of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Absolute Unix ms after which the service may sleep.
    pub expires_at_ms: u64,
    /// Open connections in the latest report.
    #[serde(default)]
    pub open_connections: u64,
    /// Unix ms of the latest report (or of the session's start).
    pub last_activity_ms: u64,
    /// Requests counted over the session's life.
    #[serde(default)]
    pub requests: u64,
    /// True if the session was created for containers found running.
    #[serde(default)]
    pub adopted: bool,
}

impl Session {
    /// A session starting `now`.
    pub fn start(now_ms: u64, idle_timeout_ms: u64) -> Self {
        Session {
            expires_at_ms: now_ms.saturating_add(idle_timeout_ms),
            open_connections: 0,
            last_activity_ms: now_ms,
            requests: 0,
            adopted: false,
        }
    }

    /// An activity report: extends the expiry to `now + idle_timeout` (never
    /// shortens it) and replaces the open-connection count (0 ends a hold).
    pub fn record_activity(
        &mut self,
        now_ms: u64,
        requests: u64,
        open_connections: u64,
        idle_timeout_ms: u64,
    ) {
        self.expires_at_ms = self
            .expires_at_ms
            .max(now_ms.saturating_add(idle_timeout_ms));
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
        self.requests = self.requests.saturating_add(requests);
        self.open_connections = open_connections;
    }

    /// Whether open connections currently keep the service awake.
    pub fn held(&self, now_ms: u64) -> bool {
        self.open_connections > 0 && now_ms < self.last_activity_ms.saturating_add(HOLD_STALE_MS)
    }

    /// Whether the session is over: past its expiry and not held.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms && !self.held(now_ms)
    }

    /// Milliseconds left (0 if expired or held past expiry).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms)
    }
}

/// Sessions of every service, as stored (one JSON document).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// By service name.
    pub sessions: BTreeMap<String, Session>,
}

impl Sessions {
    /// The session of `service`.
    pub fn get(&self, service: &str) -> Option<&Session> {
        self.sessions.get(service)
    }

    /// Records activity, starting a session if there is none.
    pub fn record_activity(
        &mut self,
        service: &str,
        now_ms: u64,
        requests: u64,
        open_connections: u64,
        idle_timeout_ms: u64,
    ) {
        self.sessions
            .entry(service.to_owned())
            .or_insert_with(|| Session::start(now_ms, idle_timeout_ms))
            .record_activity(now_ms, requests, open_connections, idle_timeout_ms);
    }

    /// A wake finished: the service gets a session starting now (kept if
    /// it already has a longer one).
    pub fn woke(&mut self, service: &str, now_ms: u64, idle_timeout_ms: u64) {
        self.record_activity(service, now_ms, 0, 0, idle_timeout_ms);
    }

    /// For a managed service whose containers were found running without a
    /// session (started by hand, or running when WakeDock started): a
    /// session starting now, so they do go to sleep. Returns true if one was
    /// created.
    pub fn adopt_running(&mut self, service: &str, now_ms: u64, idle_timeout_ms: u64) -> bool {
        if self.sessions.contains_key(service) {
            return false;
        }
        let mut s = Session::start(now_ms, idle_timeout_ms);
        s.adopted = true;
        self.sessions.insert(service.to_owned(), s);
        true
    }

    /// Ends a session (the service went to sleep).
    pub fn end(&mut self, service: &str) -> Option<Session> {
        self.sessions.remove(service)
    }

    /// Drops sessions of services that no longer exist.
    pub fn retain_known<'a>(&mut self, known: impl Fn(&str) -> bool + 'a) {
        self.sessions.retain(|name, _| known(name));
    }

    /// Services whose session expired and that may sleep (`sleepable`),
    /// sorted. Services without a session are not listed (see
    /// [`Sessions::adopt_running`]).
    pub fn due<'a>(
        &self,
        now_ms: u64,
        services: impl IntoIterator<Item = &'a Service>,
    ) -> Vec<String> {
        let mut due: Vec<String> = services
            .into_iter()
            .filter(|s| s.sleepable)
            .filter(|s| {
                self.sessions
                    .get(&s.name)
                    .is_some_and(|x| x.expired(now_ms))
            })
            .map(|s| s.name.clone())
            .collect();
        due.sort();
        due
    }

    /// JSON for storage.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("sessions serialize")
    }

    /// From storage.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("stored sessions are invalid: {e}"))
    }
}

/// What to do to put a service to sleep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SleepPlan {
    pub service: String,
    pub mode: SleepMode,
    /// Members to stop/pause, dependents first; one inner list can run
    /// together.
    pub waves: Vec<Vec<String>>,
    /// Members left running because they are WakeDock's own container.
    pub spared: Vec<String>,
}

/// The sleep plan of `service`: its stop waves, without WakeDock's own
/// container (`self_container`), which is never put to sleep. `None` if the
/// service must not sleep at all (`sleepable = false`) or nothing is left.
pub fn plan_sleep(service: &Service, self_container: Option<&str>) -> Option<SleepPlan> {
    if !service.sleepable {
        return None;
    }
    let mut spared = Vec::new();
    let waves: Vec<Vec<String>> = service
        .stop_waves()
        .into_iter()
        .map(|wave| {
            wave.into_iter()
                .filter(|m| {
                    let own = Some(m.as_str()) == self_container;
                    if own {
                        spared.push(m.clone());
                    }
                    !own
                })
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if waves.is_empty() {
        return None;
    }
    Some(SleepPlan {
        service: service.name.clone(),
        mode: service.sleep_mode,
        waves,
        spared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{parse_def, Source};
    use serde_json::json;

    const MIN: u64 = 60_000;
    const T0: u64 = 1_700_000_000_000;

    fn service(v: serde_json::Value) -> Service {
        parse_def(&v).unwrap().validate(Source::Config).unwrap()
    }

    #[test]
    fn activity_extends_and_never_shortens() {
        let mut s = Session::start(T0, 10 * MIN);
        assert_eq!(s.expires_at_ms, T0 + 10 * MIN);
        // (now offset, requests, open, idle, expected expiry offset, expired at expiry?)
        let steps: &[(u64, u64, u64, u64, u64)] = &[
            (MIN, 3, 0, 10 * MIN, 11 * MIN),
            (2 * MIN, 1, 0, 10 * MIN, 12 * MIN),
            // a shorter idle timeout does not pull the expiry in
            (3 * MIN, 1, 0, MIN, 12 * MIN),
            (20 * MIN, 1, 0, MIN, 21 * MIN),
        ];
        for (now, req, open, idle, want) in steps {
            s.record_activity(T0 + now, *req, *open, *idle);
            assert_eq!(s.expires_at_ms, T0 + want, "at +{now}");
        }
        assert_eq!(s.requests, 6);
        assert_eq!(s.last_activity_ms, T0 + 20 * MIN);
    }

    #[test]
    fn expiry_table() {
        let s = Session::start(T0, 10 * MIN);
        for (now, want) in [
            (0, false),
            (10 * MIN - 1, false),
            (10 * MIN, true),
            (100 * MIN, true),
        ] {
            assert_eq!(s.expired(T0 + now), want, "+{now}");
        }
        // clock before the session (host clock moved back): not expired
        assert!(!s.expired(T0 - MIN));
        assert_eq!(s.remaining_ms(T0 + 4 * MIN), 6 * MIN);
        assert_eq!(s.remaining_ms(T0 + 11 * MIN), 0);
    }

    #[test]
    fn open_connections_hold_until_reported_closed_or_stale() {
        let mut s = Session::start(T0, MIN);
        s.record_activity(T0, 1, 2, MIN);
        assert!(s.held(T0 + 90_000));
        assert!(!s.expired(T0 + 90_000), "held past expiry");
        // The bridge re-reports open connections every interval.
        s.record_activity(T0 + 100_000, 0, 1, MIN);
        assert!(!s.expired(T0 + 200_000));
        // A report with 0 open connections ends the hold; expiry runs from it.
        s.record_activity(T0 + 200_000, 0, 0, MIN);
        assert!(!s.held(T0 + 200_001));
        assert!(!s.expired(T0 + 200_000 + MIN - 1));
        assert!(s.expired(T0 + 200_000 + MIN));

        // Reports stop (bridge gone): the hold lapses after HOLD_STALE_MS.
        let mut s = Session::start(T0, MIN);
        s.record_activity(T0, 0, 5, MIN);
        assert!(!s.expired(T0 + HOLD_STALE_MS - 1));
        assert!(s.expired(T0 + HOLD_STALE_MS));
    }

    #[test]
    fn adoption_and_due() {
        let blog = service(json!({"name": "blog", "members": ["app"], "idle_timeout": "5m"}));
        let pinned = service(json!({"name": "pinned", "members": ["p"], "sleepable": false}));
        let quiet = service(json!({"name": "quiet", "members": ["q"]}));
        let mut ss = Sessions::default();
        assert!(ss.adopt_running("blog", T0, blog.idle_timeout_ms));
        assert!(
            !ss.adopt_running("blog", T0 + MIN, blog.idle_timeout_ms),
            "existing session kept"
        );
        assert!(ss.get("blog").unwrap().adopted);
        assert!(ss.adopt_running("pinned", T0, pinned.idle_timeout_ms));
        let all = [&blog, &pinned, &quiet];
        assert!(ss.due(T0 + 4 * MIN, all).is_empty());
        assert_eq!(ss.due(T0 + 5 * MIN, all), vec!["blog".to_owned()]);
        // pinned never expires, even long past its expiry
        assert_eq!(ss.due(T0 + 1000 * MIN, all), vec!["blog".to_owned()]);
        ss.end("blog");
        assert!(ss.due(T0 + 1000 * MIN, all).is_empty());
        ss.woke("quiet", T0, quiet.idle_timeout_ms);
        assert_eq!(ss.get("quiet").unwrap().expires_at_ms, T0 + 10 * MIN);
        ss.retain_known(|n| n != "pinned");
        assert!(ss.get("pinned").is_none());
    }

    #[test]
    fn survives_restart_unchanged() {
        let mut ss = Sessions::default();
        ss.record_activity("blog", T0, 4, 1, 10 * MIN);
        ss.adopt_running("wiki", T0 + MIN, 30 * MIN);
        let text = ss.to_json();
        let back = Sessions::from_json(&text).unwrap();
        assert_eq!(back, ss);
        // absolute expiry: a restart 8 minutes later does not reset it
        assert_eq!(back.get("blog").unwrap().expires_at_ms, T0 + 10 * MIN);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["sessions"]["blog"]["expires_at_ms"], T0 + 10 * MIN);
        assert_eq!(v["sessions"]["blog"]["open_connections"], 1);
        // older documents without the optional fields still load
        let old =
            format!(r#"{{"sessions":{{"x":{{"expires_at_ms":{T0},"last_activity_ms":{T0}}}}}}}"#);
        assert_eq!(
            Sessions::from_json(&old)
                .unwrap()
                .get("x")
                .unwrap()
                .open_connections,
            0
        );
        assert!(Sessions::from_json("nope").is_err());
    }

    #[test]
    fn sleep_plan_reverses_order_and_spares_self() {
        let s = service(json!({
            "name": "stack", "members": ["app", "db", "migrate", "wakedock"],
            "one_shot": ["migrate"], "sleep_mode": "pause",
            "depends_on": {"app": ["db", "migrate"], "migrate": ["db"]}
        }));
        let plan = plan_sleep(&s, Some("wakedock")).unwrap();
        assert_eq!(plan.mode, SleepMode::Pause);
        assert_eq!(plan.waves, vec![vec!["app"], vec!["migrate"], vec!["db"]]);
        assert_eq!(plan.spared, vec!["wakedock"]);
        let plan = plan_sleep(&s, None).unwrap();
        assert_eq!(plan.waves[2], vec!["db", "wakedock"]);
        let own = service(json!({"name": "own", "members": ["wakedock"]}));
        assert_eq!(plan_sleep(&own, Some("wakedock")), None);
        let pinned = service(json!({"name": "p", "members": ["p"], "sleepable": false}));
        assert_eq!(plan_sleep(&pinned, None), None);
    }
}
