//! The host's log subscriptions, one per enabled `log` rule (named after
//! it), kept in step with the rules: at an instance's first call and after
//! every rule change. The host keeps subscriptions per plugin, so a new
//! instance finds them in place and re-asking for the same ones changes
//! nothing; what no rule wants any more (a rule removed while the plugin
//! was not running) is ended.
//!
//! The lines they deliver count towards their rule on their container.

use std::collections::BTreeMap;

use wakedock_plugin_sdk::container_logs::{self, FollowRequest, LogLine};
use wakedock_plugin_sdk::{clock, containers, log, Error};

use super::Alerts;
use crate::rule::{Kind, TargetKind};

impl Alerts {
    /// Follows exactly what the enabled `log` rules watch.
    pub(super) fn sync_follows(&mut self) {
        let wanted: BTreeMap<String, FollowRequest> = self
            .rules_of(TargetKind::Container)
            .into_iter()
            .filter_map(|r| {
                let Kind::Log { pattern, .. } = &r.def.kind else {
                    return None;
                };
                let (labels, names) = r.def.selector.host_terms();
                let request = FollowRequest {
                    labels,
                    names,
                    pattern: Some(pattern.clone()),
                };
                Some((r.name().to_owned(), request))
            })
            .collect();
        let current = match container_logs::following() {
            Ok(names) => names,
            // Not granted and nothing to follow: nothing to say.
            Err(Error::PermissionDenied(_)) if wanted.is_empty() => return,
            Err(e) => {
                return log::warn(&format!(
                    "log rules cannot follow container logs: {}",
                    e.describe()
                ))
            }
        };
        for name in current.iter().filter(|n| !wanted.contains_key(*n)) {
            if let Err(e) = container_logs::unfollow(name) {
                log::warn(&format!("ending log subscription {name}: {}", e.describe()));
            }
        }
        for (name, request) in &wanted {
            if let Err(e) = container_logs::follow(name, request) {
                log::warn(&format!(
                    "log rule {name}: the host does not follow its logs: {}",
                    e.describe()
                ));
            }
        }
    }

    /// A line the host matched for the `log` rule of the same name.
    pub(super) fn on_log_line(&mut self, l: LogLine) {
        let now = clock::now_ms();
        let Some(rule) = self
            .rules_of(TargetKind::Container)
            .into_iter()
            .find(|r| r.name() == l.subscription && matches!(r.def.kind, Kind::Log { .. }))
        else {
            return;
        };
        if l.dropped > 0 {
            log::warn(&format!(
                "{} log lines were dropped by the host's rate limit before this one",
                l.dropped
            ));
        }
        let known = self
            .loaded()
            .containers
            .get(&l.container_name)
            .map(|f| f.target.clone());
        let target = match known {
            Some(t) => t,
            // Not seen yet (it started a moment ago): its labels decide.
            None => {
                let Ok(c) = containers::inspect(&l.container_id) else {
                    return;
                };
                let Some(t) = self.target_of(&c.name, c.labels.iter().map(|(k, v)| (k, v))) else {
                    return;
                };
                t
            }
        };
        // The host narrowed by labels and names; a service is checked here.
        if !rule.def.selector.matches(&target) {
            return;
        }
        let name = target.name.clone();
        self.facts_mut(target, &l.container_id)
            .on_log_match(&rule, &l.line, l.at_ms);
        self.evaluate_container(&name, now, false);
        self.save_facts(&name);
    }
}
