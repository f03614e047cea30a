//! Requests that neither wake a service nor keep it awake: user agents
//! (case-insensitive substrings, e.g. uptime checkers) and path prefixes.
//! Same semantics as the Caddy bridge (`caddy-bridge/state.go`): plain
//! prefix on the path (no query), empty entries ignored.

use crate::service::Service;

/// Compiled ignore lists of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    user_agents: Vec<String>,
    paths: Vec<String>,
}

impl IgnoreRules {
    /// From raw lists; empty entries are dropped, user agents lowercased.
    pub fn new<S: AsRef<str>>(user_agents: &[S], paths: &[S]) -> Self {
        IgnoreRules {
            user_agents: user_agents
                .iter()
                .map(|s| s.as_ref().trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            paths: paths
                .iter()
                .map(|s| s.as_ref().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The rules of `service`.
    pub fn of(service: &Service) -> Self {
        IgnoreRules::new(&service.ignore_user_agents, &service.ignore_paths)
    }

    /// Whether the user agent contains one of the patterns (ASCII
    /// case-insensitive). A missing or empty user agent is not ignored.
    pub fn user_agent_ignored(&self, user_agent: Option<&str>) -> bool {
        let Some(ua) = user_agent.filter(|u| !u.is_empty()) else {
            return false;
        };
        let ua = ua.to_ascii_lowercase();
        self.user_agents.iter().any(|p| ua.contains(p.as_str()))
    }

    /// Whether the path (query string, if any, removed) starts with one of
    /// the prefixes.
    pub fn path_ignored(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.paths.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// Whether the request is ignored by either list.
    pub fn ignores(&self, path: &str, user_agent: Option<&str>) -> bool {
        self.path_ignored(path) || self.user_agent_ignored(user_agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let rules = IgnoreRules::new(
            &["UptimeRobot", "pingdom", ""],
            &["/healthz", "/metrics", ""],
        );
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("/", Some("Mozilla/5.0"), false),
            ("/", None, false),
            ("/", Some(""), false),
            ("/", Some("Mozilla/5.0+(compatible; UptimeRobot/2.0)"), true),
            ("/", Some("UPTIMEROBOT"), true),
            ("/", Some("Pingdom.com_bot_version_1.4"), true),
            ("/healthz", Some("curl/8"), true),
            ("/healthz/deep", None, true),
            ("/healthz?full=1", None, true),
            ("/metrics", None, true),
            ("/api/healthz", None, false),
            ("/HEALTHZ", None, false),
            ("/?p=/healthz", None, false),
        ];
        for (path, ua, want) in cases {
            assert_eq!(rules.ignores(path, *ua), *want, "{path} {ua:?}");
        }
    }

    #[test]
    fn empty_rules_ignore_nothing() {
        let rules = IgnoreRules::default();
        assert!(!rules.ignores("/", Some("UptimeRobot")));
        let rules = IgnoreRules::new::<&str>(&[""], &[""]);
        assert!(!rules.ignores("/anything", Some("anything")));
    }
}
