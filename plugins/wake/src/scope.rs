//! An install's scope on a shared Docker engine (`wakedock.instance`).
//!
//! Several WakeDock installs (staging and production, or parallel test
//! hosts) may share one engine. An install with an instance name defines
//! services from labels, and resolves label selectors, only over containers
//! labelled `wakedock.instance=<its name>`, so it never adopts, times or
//! stops another install's containers. Services that name their members
//! (config file, API) are the admin's explicit choice and are not
//! filtered. Without an instance name every container is in scope.

use crate::service::LabeledContainer;

/// The label that puts a container in one install's scope.
pub const INSTANCE_LABEL: &str = "wakedock.instance";

/// Whether `container` is in the scope of `instance` (`None`: no scope).
pub fn in_scope(instance: Option<&str>, container: &LabeledContainer) -> bool {
    match instance {
        None => true,
        Some(name) => container.labels.get(INSTANCE_LABEL).map(String::as_str) == Some(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containers_labelled_with_the_instance_are_in_its_scope() {
        let mine = LabeledContainer::new("a", [("wakedock.instance", "prod")]);
        let theirs = LabeledContainer::new("b", [("wakedock.instance", "staging")]);
        let unscoped = LabeledContainer::new("c", [("wakedock.enable", "true")]);
        assert!(in_scope(Some("prod"), &mine));
        assert!(!in_scope(Some("prod"), &theirs));
        assert!(!in_scope(Some("prod"), &unscoped));
        // No instance name: everything, as before scopes existed.
        for c in [&mine, &theirs, &unscoped] {
            assert!(in_scope(None, c));
        }
    }

    #[test]
    fn label_services_of_another_install_are_not_defined() {
        use crate::service::defs_from_labels;
        let containers = [
            LabeledContainer::new(
                "web-prod",
                [
                    ("wakedock.enable", "true"),
                    ("wakedock.service", "web"),
                    ("wakedock.instance", "prod"),
                ],
            ),
            LabeledContainer::new(
                "web-staging",
                [
                    ("wakedock.enable", "true"),
                    ("wakedock.service", "web"),
                    ("wakedock.instance", "staging"),
                ],
            ),
        ];
        let scoped: Vec<LabeledContainer> = containers
            .iter()
            .filter(|c| in_scope(Some("prod"), c))
            .cloned()
            .collect();
        let defs = defs_from_labels(&scoped).defs;
        assert_eq!(defs.len(), 1);
        assert_eq!(
            defs[0].members.as_deref(),
            Some(&["web-prod".to_string()][..])
        );
    }
}
