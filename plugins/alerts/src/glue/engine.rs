//! Events and ticks in; rule evaluation, history and the outbox out.
//!
//! Conditions that only events change (exits, OOM kills, health) are
//! evaluated when their event arrives, so a notification leaves within
//! the same call. The tick re-evaluates only what time changes: pending
//! alerts (`for`), firing ones (resend), resolved ones in their cooldown,
//! restart-loop windows and stats thresholds.

use serde::Deserialize;
use wakedock_plugin_sdk::{
    clock, container_logs, containers, events, log, metrics, ContainerEvent, ContainerEventKind,
    PluginEvent,
};

use super::store::{self, put, state_key};
use super::{Alerts, Loaded};
use crate::alert::{step, Change, NoteKind, Phase};
use crate::channel::Message;
use crate::contract::{topics, ContainerExited, HostHealth};
use crate::facts::{
    container_verdict, host_verdict, service_verdict, ContainerFacts, Health, ServiceFacts, Verdict,
};
use crate::history::{record_id, AlertRecord, NoteRecord, NoteResult};
use crate::outbox::Delivery;
use crate::rule::{Kind, Rule, TargetKind};
use crate::selector::{in_scope, Target};
use crate::suppress::suppressed_by;

/// The parts of the wake plugin's `wake.state` the rules read.
#[derive(Deserialize)]
struct WakeState {
    service: String,
    state: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
struct WakeRemoved {
    service: String,
}

pub(super) fn health_of(h: wakedock_plugin_sdk::Health) -> Health {
    match h {
        wakedock_plugin_sdk::Health::None => Health::None,
        wakedock_plugin_sdk::Health::Starting => Health::Starting,
        wakedock_plugin_sdk::Health::Healthy => Health::Healthy,
        wakedock_plugin_sdk::Health::Unhealthy => Health::Unhealthy,
    }
}

/// How often resolved records past the retention are removed.
const PRUNE_EVERY_MS: u64 = 60_000;

impl Alerts {
    pub(super) fn target_of<'a>(
        &self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Option<Target> {
        let t = Target {
            name: name.trim_start_matches('/').to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            services: Vec::new(),
        };
        in_scope(self.config.instance.as_deref(), &t).then_some(t)
    }

    pub(super) fn on_container_event(&mut self, ev: ContainerEvent) {
        let Some(target) =
            self.target_of(&ev.container_name, ev.labels.iter().map(|(k, v)| (k, v)))
        else {
            return;
        };
        let name = target.name.clone();
        match ev.kind {
            ContainerEventKind::Started => {
                // Docker resets health to `starting` on a start; ask what
                // it is now (a container without a healthcheck has none).
                let health = containers::inspect(&ev.container_id)
                    .map(|c| health_of(c.health))
                    .unwrap_or(Health::None);
                let f = self.facts_mut(target, &ev.container_id);
                f.on_started(health, ev.at_ms);
            }
            ContainerEventKind::HealthChanged => {
                let f = self.facts_mut(target, &ev.container_id);
                f.running = true;
                f.health = health_of(ev.health);
            }
            // `host.container-exited` says the same with what matters
            // (OOM, restart policy, whether WakeDock stopped it).
            ContainerEventKind::Stopped | ContainerEventKind::Died => return,
        }
        self.save_facts(&name);
        self.evaluate_container(&name, clock::now_ms(), false);
    }

    pub(super) fn facts_mut(&mut self, target: Target, id: &str) -> &mut ContainerFacts {
        let l = self.loaded();
        let f = l
            .containers
            .entry(target.name.clone())
            .or_insert_with(|| ContainerFacts::new(target.clone()));
        f.target.labels = target.labels;
        if !id.is_empty() {
            f.id = id.to_owned();
        }
        f
    }

    pub(super) fn save_facts(&mut self, name: &str) {
        if let Some(f) = self.loaded().containers.get(name) {
            put(&format!("facts/c/{name}"), f);
        }
    }

    pub(super) fn on_plugin_event(&mut self, ev: PluginEvent) {
        if let Some(line) = container_logs::line(&ev) {
            return self.on_log_line(line);
        }
        let now = clock::now_ms();
        match (ev.source.as_str(), ev.topic.as_str()) {
            ("host", topics::CONTAINER_EXITED) => {
                let Ok(x) = serde_json::from_str::<ContainerExited>(&ev.payload) else {
                    return log::warn("an unreadable host.container-exited event");
                };
                let Some(target) = self.target_of(&x.name, x.labels.iter()) else {
                    return;
                };
                let name = target.name.clone();
                self.facts_mut(target, &x.id).on_exited(&x);
                // Notifications first (they leave in this call), then the
                // facts are kept.
                self.evaluate_container(&name, now, false);
                self.save_facts(&name);
            }
            ("host", topics::HEALTH) => {
                let Ok(h) = serde_json::from_str::<HostHealth>(&ev.payload) else {
                    return log::warn("an unreadable host.health event");
                };
                let target = h.target();
                put(&format!("facts/h/{target}"), &h);
                self.loaded().host.insert(target.clone(), h);
                self.evaluate_host(&target, now);
            }
            ("wake", "wake.state") => {
                let Ok(s) = serde_json::from_str::<WakeState>(&ev.payload) else {
                    return;
                };
                let l = self.loaded();
                let f = l
                    .services
                    .entry(s.service.clone())
                    .or_insert_with(|| ServiceFacts {
                        name: s.service.clone(),
                        ..ServiceFacts::default()
                    });
                if f.on_state(&s.state, s.reason, s.seq, ev.at_ms) {
                    let f = f.clone();
                    put(&format!("facts/s/{}", s.service), &f);
                    self.evaluate_service(&s.service, now);
                }
            }
            ("wake", "wake.removed") => {
                if let Ok(r) = serde_json::from_str::<WakeRemoved>(&ev.payload) {
                    self.loaded().services.remove(&r.service);
                    store::delete(&format!("facts/s/{}", r.service));
                }
            }
            _ => {}
        }
    }

    /// Every enabled rule of `scope`.
    pub(super) fn rules_of(&mut self, scope: TargetKind) -> Vec<Rule> {
        self.loaded()
            .rules
            .iter()
            .filter(|(r, _)| r.def.enabled && r.def.kind.scope() == scope)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Container rules on `name`; with `timed_only`, only those whose
    /// verdict time alone can change.
    pub(super) fn evaluate_container(&mut self, name: &str, now: u64, timed_only: bool) {
        let rules = self.rules_of(TargetKind::Container);
        let Some(f) = self.loaded().containers.get(name).cloned() else {
            return;
        };
        for rule in rules.iter().filter(|r| r.def.selector.matches(&f.target)) {
            let timed = matches!(
                rule.def.kind,
                Kind::RestartLoop { .. }
                    | Kind::Cpu { .. }
                    | Kind::Memory { .. }
                    | Kind::Log { .. }
            );
            let known = self
                .loaded()
                .states
                .contains_key(&(rule.name().to_owned(), name.to_owned()));
            if timed_only && !timed && !known {
                continue;
            }
            if let Some(v) = container_verdict(rule, &f, now) {
                self.apply(rule, name, v, now);
            }
        }
        self.flush(now);
    }

    fn evaluate_service(&mut self, name: &str, now: u64) {
        let rules = self.rules_of(TargetKind::Service);
        let Some(f) = self.loaded().services.get(name).cloned() else {
            return;
        };
        let as_target = Target::new(name, []);
        for rule in rules.iter().filter(|r| r.def.selector.matches(&as_target)) {
            if let Some(v) = service_verdict(rule, &f) {
                self.apply(rule, name, v, now);
            }
        }
        self.flush(now);
    }

    fn evaluate_host(&mut self, target: &str, now: u64) {
        let rules = self.rules_of(TargetKind::Host);
        let Some(h) = self.loaded().host.get(target).cloned() else {
            return;
        };
        for rule in &rules {
            if let Some(v) = host_verdict(rule, target, &h) {
                self.apply(rule, target, v, now);
            }
        }
        self.flush(now);
    }

    /// One evaluation of `rule` on `target`: the state machine's step,
    /// its history and notifications.
    fn apply(&mut self, rule: &Rule, target: &str, v: Verdict, now: u64) {
        let key = (rule.name().to_owned(), target.to_owned());
        let l = self.loaded();
        let prev = l.states.get(&key).cloned();
        let silences = l.silences.clone();
        let windows: Vec<_> = l.windows.iter().map(|(w, _)| w.clone()).collect();
        let held_by = suppressed_by(&silences, &windows, rule.name(), target, now);
        let s = step(prev.as_ref(), v.holds, now, rule, held_by.is_some());
        if s.state == prev && s.change.is_none() && s.notify.is_none() && s.suppressed.is_none() {
            return;
        }
        let mut state = s.state.clone();
        let mut record: Option<AlertRecord> = None;
        match s.change {
            Some(Change::Fired) => {
                let id = record_id(now, rule.name(), target);
                log::info(&format!(
                    "alert {} firing on {target} ({}): {}",
                    rule.name(),
                    rule.severity().as_str(),
                    v.detail
                ));
                record = Some(AlertRecord {
                    id: id.clone(),
                    rule: rule.name().to_owned(),
                    kind: rule.def.kind.name().to_owned(),
                    target: target.to_owned(),
                    severity: rule.severity(),
                    fired_at_ms: now,
                    resolved_at_ms: None,
                    detail: v.detail.clone(),
                    resolution: None,
                    notifications: Vec::new(),
                });
                if let Some(st) = state.as_mut() {
                    st.record = Some(id);
                }
                let _ = events::publish_json(
                    "alerts.fired",
                    &serde_json::json!({"rule": rule.name(), "target": target, "severity": rule.severity().as_str(), "detail": v.detail}),
                );
            }
            Some(Change::Resolved) => {
                log::info(&format!(
                    "alert {} resolved on {target}: {}",
                    rule.name(),
                    v.detail
                ));
                let id = state
                    .as_ref()
                    .or(prev.as_ref())
                    .and_then(|s| s.record.clone());
                if let Some(mut r) =
                    id.and_then(|id| store::get::<AlertRecord>(&format!("alert/{id}")))
                {
                    r.resolved_at_ms = Some(now);
                    r.resolution = Some(v.detail.clone());
                    record = Some(r);
                }
                let _ = events::publish_json(
                    "alerts.resolved",
                    &serde_json::json!({"rule": rule.name(), "target": target, "detail": v.detail}),
                );
            }
            None => {}
        }
        if s.notify.is_some() || s.suppressed.is_some() {
            let id = state
                .as_ref()
                .or(prev.as_ref())
                .and_then(|s| s.record.clone());
            if record.is_none() {
                record = id.and_then(|id| store::get::<AlertRecord>(&format!("alert/{id}")));
            }
        }
        if let Some(r) = record.as_mut() {
            if let (Some(kind), Some(by)) = (s.suppressed, held_by.as_ref()) {
                log::info(&format!(
                    "alert {} on {target}: {} not sent ({by})",
                    rule.name(),
                    kind.as_str()
                ));
                r.notifications.push(NoteRecord {
                    kind,
                    channel: String::new(),
                    at_ms: now,
                    delivery: None,
                    result: NoteResult::Suppressed { by: by.clone() },
                });
                let _ = metrics::counter_add("notifications_total", &["", "suppressed"], 1.0);
            }
            if let Some(kind) = s.notify {
                let detail = if kind == NoteKind::Resolved {
                    v.detail.clone()
                } else {
                    r.detail.clone()
                };
                let message = Message {
                    kind,
                    rule: rule.name().to_owned(),
                    severity: rule.severity(),
                    target: target.to_owned(),
                    detail,
                    alert_id: r.id.clone(),
                    fired_at_ms: r.fired_at_ms,
                    resolved_at_ms: r.resolved_at_ms,
                };
                self.enqueue(rule, r, message, now);
            }
            put(&format!("alert/{}", r.id), r);
        }
        let skey = state_key(rule.name(), target);
        let l = self.loaded();
        match state.take() {
            Some(st) => {
                put(&skey, &st);
                l.states.insert(key, st);
            }
            None => {
                if l.states.remove(&key).is_some() {
                    store::delete(&skey);
                }
            }
        }
        self.update_gauges();
    }

    /// Outbox entries for `message` on the rule's channels (all of them
    /// when the rule names none).
    fn enqueue(&mut self, rule: &Rule, record: &mut AlertRecord, message: Message, now: u64) {
        let names: Vec<String> = {
            let l = self.loaded();
            if rule.def.channels.is_empty() {
                l.channels.iter().map(|(c, _)| c.name.clone()).collect()
            } else {
                rule.def.channels.clone()
            }
        };
        if names.is_empty() {
            log::warn(&format!("alert {}: no channel to notify", rule.name()));
        }
        for channel in names {
            let id = format!("{}-{}-{channel}", record.id, message.kind.as_str());
            let id = if self.loaded().outbox.contains_key(&id) {
                store::next_id(now)
            } else {
                id
            };
            let d = Delivery::new(id.clone(), &channel, message.clone(), now);
            put(&format!("outbox/{id}"), &d);
            self.loaded().outbox.insert(id.clone(), d);
            record.notifications.push(NoteRecord {
                kind: message.kind,
                channel,
                at_ms: now,
                delivery: Some(id),
                result: NoteResult::Pending,
            });
        }
    }

    pub(super) fn update_gauges(&mut self) {
        let mut counts: std::collections::BTreeMap<(String, String), u32> = Default::default();
        let l = self.loaded();
        for (r, _) in &l.rules {
            counts.insert((r.name().to_owned(), r.severity().as_str().to_owned()), 0);
        }
        let sev: std::collections::BTreeMap<String, String> = l
            .rules
            .iter()
            .map(|(r, _)| (r.name().to_owned(), r.severity().as_str().to_owned()))
            .collect();
        for ((rule, _), st) in &l.states {
            if let (Phase::Firing { .. }, Some(s)) = (st.phase, sev.get(rule)) {
                *counts.entry((rule.clone(), s.clone())).or_default() += 1;
            }
        }
        for k in self.gauged.keys() {
            counts.entry(k.clone()).or_default();
        }
        for ((rule, s), n) in &counts {
            let _ = metrics::gauge_set("firing", &[rule, s], f64::from(*n));
            self.gauged.insert((rule.clone(), s.clone()), ());
        }
    }

    pub(super) fn tick(&mut self) {
        let now = clock::now_ms();
        let stats_rules = self
            .rules_of(TargetKind::Container)
            .iter()
            .any(|r| matches!(r.def.kind, Kind::Cpu { .. } | Kind::Memory { .. }));
        if stats_rules {
            if let Some(stats) = store::warn_on("reading stats", metrics::all_container_stats()) {
                let l = self.loaded();
                for s in stats {
                    if let Some(f) = l
                        .containers
                        .values_mut()
                        .find(|f| !f.id.is_empty() && s.container_id.starts_with(&f.id))
                    {
                        f.cpu_percent = Some(s.cpu_percent);
                        f.memory_bytes = Some(s.memory_bytes);
                        f.memory_limit_bytes = Some(s.memory_limit_bytes);
                    }
                }
            }
        }
        let l = self.loaded();
        let containers: Vec<String> = l.containers.keys().cloned().collect();
        let services: Vec<String> = l
            .states
            .keys()
            .map(|(_, t)| t.clone())
            .filter(|t| l.services.contains_key(t))
            .collect();
        let hosts: Vec<String> = l.host.keys().cloned().collect();
        for name in containers {
            self.evaluate_container(&name, now, true);
        }
        for name in services {
            self.evaluate_service(&name, now);
        }
        for t in hosts {
            self.evaluate_host(&t, now);
        }
        // Silences that ended are forgotten.
        let l = self.loaded();
        let ended: Vec<String> = l
            .silences
            .iter()
            .filter(|s| s.ends_ms <= now)
            .map(|s| s.id.clone())
            .collect();
        if !ended.is_empty() {
            l.silences.retain(|s| s.ends_ms > now);
            for id in ended {
                store::delete(&format!("silence/{id}"));
            }
        }
        self.flush(now);
        self.prune(now);
    }

    /// Removes resolved records past the retention.
    fn prune(&mut self, now: u64) {
        if now.saturating_sub(self.last_prune) < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune = now;
        let keep_ms = self.config.retention_ms;
        let cutoff = format!("alert/{:013}", now.saturating_sub(keep_ms));
        for key in store::keys("alert/")
            .into_iter()
            .take_while(|k| *k < cutoff)
        {
            if store::get::<AlertRecord>(&key).is_some_and(|r| r.expired(now, keep_ms)) {
                store::delete(&key);
            }
        }
    }
}

impl Loaded {
    /// The channel named `name`.
    pub(super) fn channel(&self, name: &str) -> Option<&crate::channel::Channel> {
        self.channels
            .iter()
            .find(|(c, _)| c.name == name)
            .map(|(c, _)| c)
    }
}
