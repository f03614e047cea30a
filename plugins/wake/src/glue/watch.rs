//! What the plugin does on its own: the tick (sessions, adoption,
//! schedules, observed states), the engine's container events, and the
//! host's start (`POST /resume`).
//!
//! None of it starts or stops a container. The tick only *asks* the host
//! to run an operation (events `wake.sleep-due`, `wake.wake-due`); states
//! it observes are written by compare-and-swap against the state read
//! before its listing, so a listing that an operation made stale can never
//! overwrite what the operation published.

use std::collections::BTreeMap;

use wakedock_plugin_sdk::{
    clock, containers, events, log, metrics, ContainerEvent, ContainerEventKind, ContainerState,
    Health,
};

use super::ops::probe_of;
use super::scan::Scan;
use super::store::{
    all_sessions, all_states, clear_ops, drop_legacy_records, end_session, mark_dirty, mark_ready,
    marked_ready, op_running, put_session, read_state, remove_state, schedule_attempt_due,
    session_of, set_exit_code, swap_state, warn_on, Stored,
};
use super::Wake;
use crate::contract::{topics, OpReason, OpRequest, ServiceState, Snapshot};
use crate::service::{ReadyRule, Service, LABEL_PREFIX};
use crate::session::Session;
use crate::state::member_stopped;

/// Bound of the tick's readiness check of a member started by hand.
const QUICK_CHECK_MS: u32 = 300;
/// A scheduled wake that did not take is asked for again after this.
const SCHEDULE_RETRY_MS: u64 = 60_000;

fn ask(topic: &str, service: &str, reason: OpReason) {
    warn_on(
        "asking the host for an operation",
        events::publish_json(
            topic,
            &OpRequest {
                service: service.to_owned(),
                reason,
            },
        ),
    );
}

impl Wake {
    pub(super) fn on_tick_impl(&mut self) {
        let now = clock::now_ms();
        // States first, then the listing: what is observed is then never
        // older than the state it is compared with.
        let rescan = self.scan.as_ref().is_none_or(|s| !s.fresh(now));
        let stored = if rescan { Some(all_states()) } else { None };
        let scan = match self.scan_cached(rescan) {
            Ok(s) => s,
            Err(e) => return log::warn(&format!("listing containers: {e}")),
        };
        let cat = &scan.catalog;
        let sessions = all_sessions();
        if let Some(stored) = &stored {
            // Services that no longer exist.
            for name in sessions.sessions.keys() {
                if !cat.services.contains_key(name) {
                    end_session(name);
                }
            }
            for (name, st) in stored {
                if !cat.services.contains_key(name) {
                    remove_state(name, st);
                }
            }
        }
        let mut active = 0u32;
        for s in cat.services.values() {
            let any_running = s.members.iter().any(|m| scan.running(m));
            if any_running && sessions.get(&s.name).is_none() {
                // Started by hand, or running when WakeDock started: it
                // gets a session from now, so it does go to sleep.
                let mut session = Session::start(now, s.idle_timeout_ms);
                session.adopted = true;
                put_session(&s.name, &session);
                log::info(&format!(
                    "service \"{}\" found running: session started",
                    s.name
                ));
                active += 1;
            } else if sessions.get(&s.name).is_some() {
                active += 1;
            }
        }
        let _ = metrics::gauge_set("sessions_active", &[], f64::from(active));

        for s in cat.services.values() {
            let busy = op_running(s, now);
            if crate::schedule::active(&s.schedule, now, s.utc_offset_min) {
                if s.members.iter().any(|m| scan.running(m)) {
                    let mut session = session_of(&s.name)
                        .unwrap_or_else(|| Session::start(now, s.idle_timeout_ms));
                    session.record_activity(now, 0, session.open_connections, s.idle_timeout_ms);
                    put_session(&s.name, &session);
                } else if !busy && schedule_attempt_due(&s.name, now, SCHEDULE_RETRY_MS) {
                    log::info(&format!(
                        "service \"{}\" is inside its schedule: asking for a wake",
                        s.name
                    ));
                    ask(topics::WAKE_DUE, &s.name, OpReason::Schedule);
                }
                continue;
            }
            if busy || !sessions.get(&s.name).is_some_and(|x| x.expired(now)) || !s.sleepable {
                continue;
            }
            // Re-read: activity may have arrived since the sessions were read.
            if session_of(&s.name).is_some_and(|x| !x.expired(clock::now_ms())) {
                continue;
            }
            if s.members.iter().any(|m| scan.running(m)) {
                ask(topics::SLEEP_DUE, &s.name, OpReason::Idle);
            } else {
                end_session(&s.name);
            }
        }

        let Some(mut stored) = stored else {
            return;
        };
        for s in cat.services.values() {
            if op_running(s, now) {
                continue;
            }
            quick_ready_checks(s, scan);
            let members = scan.members(s);
            let expected = stored.entry(s.name.clone()).or_default();
            if let Some(next) = expected.observe(s, &members) {
                swap_state(s, expected, next);
            }
        }
    }

    /// A container started, stopped or died.
    pub(super) fn on_container_event(&mut self, ev: ContainerEvent) {
        let scan = match self.scan_cached(false) {
            Ok(s) => s,
            Err(e) => return log::warn(&format!("listing containers: {e}")),
        };
        let services: Vec<Service> = scan
            .services_of(&ev.container_name, &ev.labels)
            .into_iter()
            .cloned()
            .collect();
        let labelled = ev.labels.iter().any(|(k, _)| k.starts_with(LABEL_PREFIX));
        if services.is_empty() && !labelled {
            return; // another container on a shared engine
        }
        mark_dirty();
        let name = &ev.container_name;
        match ev.kind {
            ContainerEventKind::Started => set_exit_code(name, None),
            ContainerEventKind::Stopped | ContainerEventKind::Died => {
                mark_ready(name, false);
                if ev.exit_code.is_some() {
                    set_exit_code(name, ev.exit_code);
                }
                let now = clock::now_ms();
                for s in services.iter().filter(|s| !op_running(s, now)) {
                    let mut expected = read_state(&s.name);
                    let Some(next) =
                        member_stopped(s, expected.doc(s).as_ref(), name, ev.exit_code)
                    else {
                        continue;
                    };
                    // An event can arrive late: only a member that is
                    // still down sends the service to sleep.
                    if containers::inspect(name).is_ok_and(|c| c.state == ContainerState::Running) {
                        continue;
                    }
                    log::info(&format!(
                        "service \"{}\": {}",
                        s.name,
                        next.reason.as_deref().unwrap_or_default()
                    ));
                    swap_state(s, &mut expected, next);
                }
            }
            ContainerEventKind::HealthChanged => {}
        }
    }

    /// A definition was made, changed or removed: its state (or its
    /// removal) is published at once, so the host knows it before the
    /// next tick.
    pub(super) fn publish_definition(&mut self, name: &str) {
        let scan = match self.scan_cached(true) {
            Ok(s) => s,
            Err(e) => return log::warn(&format!("listing containers: {e}")),
        };
        let mut expected = read_state(name);
        match scan.catalog.services.get(name) {
            None => remove_state(name, &expected),
            Some(s) if op_running(s, clock::now_ms()) => {}
            Some(s) => {
                if let Some(next) = expected.observe(s, &scan.members(s)) {
                    swap_state(s, &mut expected, next);
                }
            }
        }
    }

    /// `POST /resume`: the host (re)started. No operation runs, whatever
    /// marks a stopped host left; every service's state is brought in line
    /// with its containers; the answer is every state, to seed the host.
    pub(super) fn resume(&mut self) -> Snapshot {
        clear_ops();
        drop_legacy_records();
        let mut stored = all_states();
        let mut services: Vec<ServiceState> = Vec::new();
        match self.scan_cached(true) {
            Ok(scan) => {
                for s in scan.catalog.services.values() {
                    quick_ready_checks(s, scan);
                    let expected = stored.entry(s.name.clone()).or_default();
                    if let Some(next) = expected.observe(s, &scan.members(s)) {
                        swap_state(s, expected, next);
                    }
                }
                let gone: BTreeMap<String, Stored> = stored
                    .iter()
                    .filter(|(n, _)| !scan.catalog.services.contains_key(*n))
                    .map(|(n, st)| (n.clone(), st.clone()))
                    .collect();
                for (name, st) in &gone {
                    remove_state(name, st);
                    stored.remove(name);
                }
            }
            Err(e) => log::warn(&format!(
                "listing containers at start: {e}; serving the states as stored"
            )),
        }
        services.extend(stored.into_values().filter_map(Stored::current));
        Snapshot { services }
    }
}

/// Members of `s` that run without having passed their readiness rule
/// here (started by hand): one quick check each.
fn quick_ready_checks(s: &Service, scan: &Scan) {
    for c in scan.containers.iter().filter(|c| {
        s.members.contains(&c.name) && c.state == ContainerState::Running && !marked_ready(&c.name)
    }) {
        let rule = s.ready_rule(&c.name, c.health != Health::None);
        let ready = match (&rule, probe_of(&rule)) {
            (ReadyRule::DockerHealth, _) => c.health == Health::Healthy,
            (_, Some(p)) => containers::await_probe(&c.name, &p, QUICK_CHECK_MS).is_ok(),
            (_, None) => matches!(
                containers::await_ready(&c.name, QUICK_CHECK_MS),
                Ok(containers::Readiness::PortOpen | containers::Readiness::Healthy)
            ),
        };
        if ready {
            mark_ready(&c.name, true);
        }
    }
}
