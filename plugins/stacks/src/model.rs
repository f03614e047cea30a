//! What a stack is, from what is on disk and on the engine: folders in the
//! stacks directory, Compose's labels on containers (every project on the
//! engine, including ones WakeDock did not create), and the wake plugin's
//! last word on services that sleep.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Compose's own labels.
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const ENV_FILE: &str = "com.docker.compose.project.environment_file";
    pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
}

/// Compose's rule for project names, which are also the stacks' folder
/// names: `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && (name.as_bytes()[0].is_ascii_lowercase() || name.as_bytes()[0].is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else if name.contains('/') || name.contains("..") || name.starts_with('.') {
        Err(format!(
            "\"{name}\" is not a stack name: a stack is one folder of the stacks directory, so no \"/\", \".\" or \"..\""
        ))
    } else {
        Err(format!(
            "\"{name}\" is not a stack name: lowercase letters, digits, \"-\" and \"_\", starting with a letter or digit, at most 63 characters (Compose's rule for project names)"
        ))
    }
}

/// A container as far as stacks care.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image: String,
    /// Docker's state: running, exited, ...
    pub state: String,
    pub health: String,
    /// Published ports (`127.0.0.1:8080->80/tcp`), from `docker compose ps`
    /// (only on a stack's own page).
    pub ports: Vec<String>,
    /// Exit code of a container that is not running, when known.
    pub exit_code: Option<i32>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// How a stack is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackState {
    /// Every service runs (one-shot jobs that finished count).
    Running,
    /// Some services run, some do not.
    Partial,
    /// Containers exist, none runs.
    Stopped,
    /// Put to sleep by WakeDock (wake-on-request); a request wakes it.
    Sleeping,
    /// No containers (never deployed, or taken down).
    NotDeployed,
}

impl StackState {
    pub fn word(self) -> &'static str {
        match self {
            StackState::Running => "running",
            StackState::Partial => "partial",
            StackState::Stopped => "stopped",
            StackState::Sleeping => "sleeping",
            StackState::NotDeployed => "not deployed",
        }
    }
}

/// One service of a stack and its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub containers: Vec<Member>,
    /// Its containers run (or, for a one-shot job, finished).
    pub up: bool,
    /// A job others wait for to complete (`service_completed_successfully`).
    pub one_shot: bool,
}

/// A stack: a folder in the stacks directory, a project on the engine, or
/// both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub name: String,
    /// Has a folder in the stacks directory (managed by WakeDock).
    pub managed: bool,
    /// The compose file in the folder, if any.
    pub compose_file: Option<String>,
    pub state: StackState,
    /// Services that are down while others run (state `partial`).
    pub down: Vec<String>,
    pub services: Vec<ServiceView>,
    /// From the containers' labels: where Compose ran it from.
    pub working_dir: Option<String>,
    pub config_files: Vec<String>,
    pub env_file: Option<String>,
    pub images: Vec<String>,
    /// Services that opt into wake-on-request (`wakedock.enable=true`).
    pub sleeps: bool,
}

/// Services that others wait for to complete, from Compose's
/// `com.docker.compose.depends_on` (`svc:condition:restart,...`).
pub fn one_shot_services(members: &[Member]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in members {
        if let Some(deps) = m.labels.get(labels::DEPENDS_ON) {
            for dep in deps.split(',').filter(|d| !d.is_empty()) {
                let mut parts = dep.split(':');
                if let (Some(svc), Some("service_completed_successfully")) =
                    (parts.next(), parts.next())
                {
                    out.insert(svc.to_owned());
                }
            }
        }
    }
    out
}

/// Builds a stack from its folder (if managed) and its containers;
/// `sleeping` says whether the wake plugin last published its service
/// `asleep`.
pub fn stack(
    name: &str,
    compose_file: Option<String>,
    managed: bool,
    members: Vec<Member>,
    sleeping: bool,
) -> Stack {
    let one_shot = one_shot_services(&members);
    let mut by_service: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for m in members
        .iter()
        .filter(|m| m.labels.get(labels::ONEOFF).map(String::as_str) != Some("True"))
    {
        by_service
            .entry(m.service.clone())
            .or_default()
            .push(m.clone());
    }
    let services: Vec<ServiceView> = by_service
        .into_iter()
        .map(|(svc, containers)| {
            let is_job = one_shot.contains(&svc);
            let up = !containers.is_empty()
                && containers.iter().all(|c| {
                    c.state == "running" || (is_job && c.state == "exited" && exited_ok(c))
                });
            ServiceView {
                name: svc,
                containers,
                up,
                one_shot: is_job,
            }
        })
        .collect();
    let running = services
        .iter()
        .filter(|s| !s.one_shot && s.containers.iter().any(|c| c.state == "running"))
        .count();
    let long_lived = services.iter().filter(|s| !s.one_shot).count();
    let state = if services.is_empty() {
        StackState::NotDeployed
    } else if running == 0 && sleeping {
        StackState::Sleeping
    } else if running == 0 {
        StackState::Stopped
    } else if services.iter().all(|s| s.up) || running == long_lived {
        StackState::Running
    } else {
        StackState::Partial
    };
    let down = if state == StackState::Partial {
        services
            .iter()
            .filter(|s| !s.up)
            .map(|s| s.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    let first = |key: &str| members.iter().find_map(|m| m.labels.get(key).cloned());
    let mut images: Vec<String> = members.iter().map(|m| m.image.clone()).collect();
    images.sort();
    images.dedup();
    Stack {
        name: name.to_owned(),
        managed,
        compose_file,
        state,
        down,
        working_dir: first(labels::WORKING_DIR),
        config_files: first(labels::CONFIG_FILES)
            .map(|f| {
                f.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        env_file: first(labels::ENV_FILE).filter(|e| !e.is_empty()),
        images,
        sleeps: members
            .iter()
            .any(|m| m.labels.get("wakedock.enable").map(String::as_str) == Some("true")),
        services,
    }
}

fn exited_ok(c: &Member) -> bool {
    // Docker's list gives no exit code (then a finished job's "exited" is
    // taken as done: Compose starts its dependents only once it exited 0);
    // `docker compose ps` does.
    c.state == "exited" && c.exit_code.is_none_or(|code| code == 0)
}

/// Whether a project's containers are in the install's scope: with an
/// instance name (`wakedock.instance`), only projects whose containers
/// carry it; without one, every project (a single install).
pub fn in_scope(instance: Option<&str>, members: &[Member]) -> bool {
    match instance {
        None => true,
        Some(i) => members
            .iter()
            .any(|m| m.labels.get("wakedock.instance").map(String::as_str) == Some(i)),
    }
}

/// Groups containers by Compose project.
pub fn by_project(members: Vec<Member>) -> BTreeMap<String, Vec<Member>> {
    let mut out: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for m in members {
        if let Some(p) = m.labels.get(labels::PROJECT).cloned() {
            out.entry(p).or_default().push(m);
        }
    }
    out
}

/// The wake service a stack's sleeping members belong to: their
/// `wakedock.service` label, else the project's name (see the wake
/// plugin's `compose` module).
pub fn wake_service(name: &str, members: &[Member]) -> String {
    members
        .iter()
        .find_map(|m| m.labels.get("wakedock.service").cloned())
        .unwrap_or_else(|| name.to_owned())
}

/// The services a compose file declares (for a stack not deployed yet).
pub fn declared_services(compose_text: &str) -> Vec<String> {
    serde_yaml::from_str::<serde_yaml::Value>(compose_text)
        .ok()
        .and_then(|v| {
            v.get("services")?.as_mapping().map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(service: &str, state: &str, extra: &[(&str, &str)]) -> Member {
        let mut labels: BTreeMap<String, String> = [
            (labels::PROJECT, "shop"),
            (labels::SERVICE, service),
            (labels::WORKING_DIR, "/srv/stacks/shop"),
            (labels::CONFIG_FILES, "/srv/stacks/shop/compose.yaml"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            labels.insert((*k).to_owned(), (*v).to_owned());
        }
        Member {
            id: format!("id-{service}"),
            name: format!("shop-{service}-1"),
            service: service.into(),
            image: format!("{service}:1"),
            state: state.into(),
            health: String::new(),
            labels,
            ..Member::default()
        }
    }

    #[test]
    fn a_finished_migration_does_not_make_a_stack_partial() {
        let deps = "db:service_started:false,migrate:service_completed_successfully:false";
        let s = stack(
            "shop",
            Some("compose.yaml".into()),
            true,
            vec![
                member("app", "running", &[(labels::DEPENDS_ON, deps)]),
                member("db", "running", &[]),
                member(
                    "migrate",
                    "exited",
                    &[(labels::DEPENDS_ON, "db:service_started:false")],
                ),
            ],
            false,
        );
        assert_eq!(s.state, StackState::Running);
        assert!(s
            .services
            .iter()
            .any(|x| x.name == "migrate" && x.one_shot && x.up));
        assert_eq!(s.working_dir.as_deref(), Some("/srv/stacks/shop"));
        assert_eq!(s.config_files, vec!["/srv/stacks/shop/compose.yaml"]);
    }

    #[test]
    fn states_from_the_containers() {
        let partial = stack(
            "shop",
            None,
            true,
            vec![member("app", "running", &[]), member("db", "exited", &[])],
            false,
        );
        assert_eq!(partial.state, StackState::Partial);
        assert_eq!(partial.down, vec!["db"]);
        let stopped = vec![member("app", "exited", &[]), member("db", "exited", &[])];
        assert_eq!(
            stack("shop", None, true, stopped.clone(), false).state,
            StackState::Stopped
        );
        assert_eq!(
            stack("shop", None, true, stopped, true).state,
            StackState::Sleeping
        );
        assert_eq!(
            stack("shop", None, true, vec![], false).state,
            StackState::NotDeployed
        );
    }

    #[test]
    fn an_install_with_an_instance_sees_only_its_projects() {
        let mine = vec![member("app", "running", &[("wakedock.instance", "prod")])];
        let theirs = vec![member(
            "app",
            "running",
            &[("wakedock.instance", "staging")],
        )];
        let unscoped = vec![member("app", "running", &[])];
        assert!(in_scope(Some("prod"), &mine));
        assert!(!in_scope(Some("prod"), &theirs));
        assert!(!in_scope(Some("prod"), &unscoped));
        assert!(in_scope(None, &theirs) && in_scope(None, &unscoped));
    }

    #[test]
    fn declared_services_of_a_compose_file() {
        let text = "services:\n  app: {image: a}\n  db: {image: b}\n";
        assert_eq!(declared_services(text), vec!["app", "db"]);
        assert!(declared_services("not: [valid").is_empty());
    }

    #[test]
    fn names_follow_composes_rule() {
        assert!(check_name("web-1_a").is_ok());
        for bad in ["", "Web", "../etc", "a/b", ".hidden", "-x", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("a/b").unwrap_err().contains("no \"/\""));
    }
}
