//! Listings of the engine's containers and the catalog built from them.
//!
//! A listing is the plugin's main cost when idle, so each instance keeps
//! its last one and reuses it until it is older than [`SCAN_EVERY_MS`] or
//! a container event or a definition change made it stale
//! (`scan/dirty-at`). Operations (wake, sleep) and the services list
//! always list afresh.

use std::collections::BTreeMap;

use wakedock_plugin_sdk::{clock, containers, Container, ContainerState, Health};

use super::store::{api_defs, dirty_at, exit_code, marked_ready};
use crate::contract::MemberStatus;
use crate::service::{defs_from_labels, Catalog, LabeledContainer, ReadyRule, Service, ServiceDef};

/// The longest a cached listing is used by the tick and activity reports.
pub const SCAN_EVERY_MS: u64 = 5_000;

/// One listing and the catalog it gave.
pub struct Scan {
    pub catalog: Catalog,
    pub containers: Vec<Container>,
    /// Clock when the listing was asked for.
    pub at_ms: u64,
}

fn labeled(c: &Container) -> LabeledContainer {
    LabeledContainer {
        name: c.name.clone(),
        labels: c.labels.iter().cloned().collect(),
    }
}

impl Scan {
    /// Lists every container and builds the catalog (selector services
    /// resolved).
    /// Label services and selectors see only this install's containers
    /// (`instance`, see [`crate::scope`]).
    pub fn take(config_defs: &[ServiceDef], instance: Option<&str>) -> Result<Scan, String> {
        let at_ms = clock::now_ms();
        let all = containers::list_all().map_err(|e| e.describe())?;
        let labeled: Vec<LabeledContainer> = all
            .iter()
            .map(labeled)
            .filter(|c| crate::scope::in_scope(instance, c))
            .collect();
        let api =
            api_defs().map_err(|e| format!("reading the API's services: {}", e.describe()))?;
        let mut cat = Catalog::build(config_defs, &api.defs, &defs_from_labels(&labeled));
        cat.errors.extend(api.errors);
        let selector_services: Vec<String> = cat
            .services
            .values()
            .filter(|s| s.selector.is_some())
            .map(|s| s.name.clone())
            .collect();
        for name in selector_services {
            let s = cat.services.remove(&name).expect("listed");
            let sel = s.selector.clone().expect("selector service");
            let names = labeled
                .iter()
                .filter(|c| c.labels.get(&sel.key) == Some(&sel.value))
                .map(|c| c.name.clone())
                .collect();
            match s.with_members(names) {
                Ok(s) => {
                    cat.services.insert(name, s);
                }
                Err(errs) => cat.errors.extend(errs),
            }
        }
        Ok(Scan {
            catalog: cat,
            containers: all,
            at_ms,
        })
    }

    /// Whether this listing may still be used.
    pub fn fresh(&self, now: u64) -> bool {
        now < self.at_ms.saturating_add(SCAN_EVERY_MS) && dirty_at() < self.at_ms
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn running(&self, name: &str) -> bool {
        self.container(name)
            .is_some_and(|c| c.state == ContainerState::Running)
    }

    /// The services `c` belongs to (by name or selector label).
    pub fn services_of(&self, name: &str, labels: &[(String, String)]) -> Vec<&Service> {
        let c = LabeledContainer {
            name: name.to_owned(),
            labels: labels.iter().cloned().collect(),
        };
        self.catalog.services_of(&c)
    }

    /// Each member of `s` as observed.
    pub fn members(&self, s: &Service) -> BTreeMap<String, MemberStatus> {
        s.members
            .iter()
            .map(|m| (m.clone(), member_status(s, self.container(m))))
            .collect()
    }
}

/// A member container as observed: Docker's state from the listing, the
/// readiness mark, the exit code seen in the engine's events (no further
/// engine call).
pub fn member_status(service: &Service, c: Option<&Container>) -> MemberStatus {
    let Some(c) = c else {
        return MemberStatus::Missing;
    };
    match c.state {
        ContainerState::Created => MemberStatus::Created,
        ContainerState::Paused => MemberStatus::Paused,
        ContainerState::Restarting => MemberStatus::Restarting,
        ContainerState::Removing => MemberStatus::Removing,
        ContainerState::Dead => MemberStatus::Dead,
        ContainerState::Exited => MemberStatus::Exited {
            exit_code: exit_code(&c.name),
        },
        ContainerState::Running => {
            let ready = match service.ready_rule(&c.name, c.health != Health::None) {
                ReadyRule::DockerHealth => c.health == Health::Healthy || marked_ready(&c.name),
                _ => marked_ready(&c.name),
            };
            MemberStatus::Running { ready }
        }
    }
}
