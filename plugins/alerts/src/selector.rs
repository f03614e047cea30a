//! Which containers a rule watches: by name (with `*` wildcards), label
//! terms, Compose stack or service, or wake service. Every given part must
//! match; an empty selector matches every container in the install's scope.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Compose's project label.
pub const STACK_LABEL: &str = "com.docker.compose.project";
/// Compose's service label.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// The wake plugin's service label.
pub const WAKE_SERVICE_LABEL: &str = "wakedock.service";
/// The label that puts a container in one install's scope (as for wake).
pub const INSTANCE_LABEL: &str = "wakedock.instance";

/// A container as rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Wake services the container is a member of.
    #[serde(default)]
    pub services: Vec<String>,
}

impl Target {
    pub fn new<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Target {
            name: name.to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            services: Vec::new(),
        }
    }
}

/// The selector as written in a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Container names; `*` matches any run of characters. Any one matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// `key=value` or `key` (any value) terms; all must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// A Compose project (stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// A wake service (its members) or a Compose service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Whether `text` matches `pattern`, where `*` matches any run.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Selector {
    /// Problems, as (field, message), relative to the selector.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            if n.trim().is_empty() {
                out.push((format!("names[{i}]"), "must not be empty".into()));
            }
        }
        for (i, t) in self.labels.iter().enumerate() {
            let key = t.split_once('=').map_or(t.as_str(), |(k, _)| k);
            if key.trim().is_empty() {
                out.push((
                    format!("labels[{i}]"),
                    format!("`{t}` is not `key=value` or `key`"),
                ));
            }
        }
        for (field, v) in [("stack", &self.stack), ("service", &self.service)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push((field.into(), "must not be empty".into()));
            }
        }
        out
    }

    pub fn matches(&self, t: &Target) -> bool {
        if !self.names.is_empty() && !self.names.iter().any(|p| glob(p, &t.name)) {
            return false;
        }
        for term in &self.labels {
            let ok = match term.split_once('=') {
                Some((k, v)) => t.labels.get(k).map(String::as_str) == Some(v),
                None => t.labels.contains_key(term.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if let Some(stack) = &self.stack {
            if t.labels.get(STACK_LABEL) != Some(stack) {
                return false;
            }
        }
        if let Some(service) = &self.service {
            let labelled = t.labels.get(COMPOSE_SERVICE_LABEL) == Some(service)
                || t.labels.get(WAKE_SERVICE_LABEL) == Some(service);
            if !labelled && !t.services.contains(service) {
                return false;
            }
        }
        true
    }
}

impl Selector {
    /// What the host can narrow a log subscription to: the label terms
    /// (the stack as Compose's project label) and the name globs. A
    /// `service` (a wake service or a Compose service, either) is left to
    /// the plugin, which checks every delivered line against the whole
    /// selector.
    pub fn host_terms(&self) -> (Vec<String>, Vec<String>) {
        let mut labels: Vec<String> = self.labels.iter().map(|t| t.trim().to_owned()).collect();
        if let Some(stack) = &self.stack {
            labels.push(format!("{STACK_LABEL}={stack}"));
        }
        (labels, self.names.clone())
    }
}

/// Whether `t` belongs to the install `instance` (`None`: no scope).
pub fn in_scope(instance: Option<&str>, t: &Target) -> bool {
    instance.is_none_or(|i| t.labels.get(INSTANCE_LABEL).map(String::as_str) == Some(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_anywhere() {
        assert!(glob("api-*", "api-1"));
        assert!(glob("*-db", "app-db"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("web", "web"));
        assert!(!glob("web", "web2"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn every_part_of_a_selector_must_match() {
        let mut t = Target::new(
            "shop-api-1",
            [
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "api"),
                ("tier", "back"),
            ],
        );
        t.services.push("storefront".into());
        let all = Selector::default();
        assert!(all.matches(&t));
        let s = Selector {
            names: vec!["shop-*".into()],
            labels: vec!["tier=back".into(), "tier".into()],
            stack: Some("shop".into()),
            service: Some("api".into()),
        };
        assert!(s.matches(&t));
        let wake = Selector {
            service: Some("storefront".into()),
            ..Selector::default()
        };
        assert!(wake.matches(&t));
        for bad in [
            Selector {
                names: vec!["blog-*".into()],
                ..s.clone()
            },
            Selector {
                labels: vec!["tier=front".into()],
                ..s.clone()
            },
            Selector {
                stack: Some("blog".into()),
                ..s.clone()
            },
            Selector {
                service: Some("db".into()),
                ..s.clone()
            },
        ] {
            assert!(!bad.matches(&t), "{bad:?}");
        }
    }

    #[test]
    fn the_host_narrows_by_labels_stack_and_names() {
        let s = Selector {
            names: vec!["shop-*".into()],
            labels: vec![" tier=back".into()],
            stack: Some("shop".into()),
            service: Some("api".into()),
        };
        assert_eq!(
            s.host_terms(),
            (
                vec![
                    "tier=back".to_owned(),
                    "com.docker.compose.project=shop".to_owned()
                ],
                vec!["shop-*".to_owned()]
            )
        );
        assert_eq!(Selector::default().host_terms(), (vec![], vec![]));
    }

    #[test]
    fn scope_is_the_instance_label() {
        let t = Target::new("a", [("wakedock.instance", "prod")]);
        assert!(in_scope(Some("prod"), &t));
        assert!(!in_scope(Some("staging"), &t));
        assert!(in_scope(None, &t));
    }
}
