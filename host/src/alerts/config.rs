//! The alerts plugin's entry in the config file: the install's scope
//! (`wakedock.instance`) goes into its config, and when the admin grants it
//! `all`, its `http-outbound` allowlist is exactly the hosts of the
//! HTTP channels declared there and its `smtp` allowlist the servers of
//! the e-mail channels (each plus its `allow_hosts`), nothing more: the
//! manifest asks for `*`, the channel configuration decides.

use wakedock_plugin_alerts::config::AlertsConfig;
use wakedock_plugin_runtime::Grant;

use super::ALERTS_PLUGIN;
use crate::config::PluginDecl;
use crate::plugins::GrantSpec;
use crate::wake::config::{declared_manifest, with_config_for};

/// `declared` with the alerts plugin's config and grant filled in; other
/// plugins unchanged.
pub fn with_alerts_config(declared: &[PluginDecl], instance: Option<&str>) -> Vec<PluginDecl> {
    let mut extra = serde_json::Map::new();
    if let Some(instance) = instance {
        extra.insert("instance".into(), instance.into());
    }
    with_config_for(declared, ALERTS_PLUGIN, &extra)
        .into_iter()
        .map(|decl| {
            let (Some(manifest), GrantSpec::All(_)) =
                (declared_manifest(&decl, ALERTS_PLUGIN), &decl.grant)
            else {
                return decl;
            };
            let config = decl
                .config
                .as_ref()
                .and_then(|c| AlertsConfig::from_json(c).ok());
            let hosts = Allowlists {
                http: config
                    .as_ref()
                    .map(|c| c.outbound_hosts())
                    .unwrap_or_default(),
                smtp: config.as_ref().map(|c| c.smtp_hosts()).unwrap_or_default(),
            };
            PluginDecl {
                grant: GrantSpec::Explicit(Box::new(grant_for(&manifest, hosts, instance))),
                ..decl
            }
        })
        .collect()
}

/// A plugin's config as the API and UI show it: the alerts plugin's
/// channel secrets (tokens, webhook URLs, header values) replaced.
pub fn shown_config(plugin: &str, mut config: serde_json::Value) -> serde_json::Value {
    if plugin == ALERTS_PLUGIN {
        if let Some(list) = config.get_mut("channels").and_then(|c| c.as_array_mut()) {
            list.iter_mut()
                .for_each(wakedock_plugin_alerts::channel::redact_json);
        }
    }
    config
}

/// The hosts the alerts plugin may reach, per capability.
#[derive(Debug, Default)]
struct Allowlists {
    http: Vec<String>,
    smtp: Vec<String>,
}

/// Everything the manifest asks for, with `hosts` as the allowlists and,
/// for an install with a `wakedock.instance`, only that install's
/// containers (the plugin ignores the others anyway; narrowed here, their
/// events and stats never reach it and their stats are never sampled).
fn grant_for(
    manifest: &wakedock_plugin_runtime::Manifest,
    hosts: Allowlists,
    instance: Option<&str>,
) -> Grant {
    let mut g = Grant::approve_all(manifest);
    if let Some(h) = g.capabilities.http_outbound.as_mut() {
        h.hosts = hosts.http;
    }
    if let Some(s) = g.capabilities.smtp.as_mut() {
        s.hosts = hosts.smtp;
    }
    if let (Some(c), Some(instance)) = (g.capabilities.containers.as_mut(), instance) {
        c.selector = Some(format!("{}={instance}", crate::config::INSTANCE_LABEL));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_secrets_are_not_shown() {
        let shown = shown_config(
            ALERTS_PLUGIN,
            serde_json::json!({"channels": [
                {"name": "t", "type": "telegram", "bot_token": "SECRET", "chat_id": "1"},
                {"name": "w", "type": "webhook", "url": "http://h/SECRET", "headers": {"x": "SECRET"}},
                {"name": "m", "type": "email", "server": "s", "password": "SECRET", "from": "a@b", "to": ["c@d"]}
            ]}),
        );
        let text = shown.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("\"chat_id\":\"1\""), "{text}");
    }

    #[test]
    fn the_allowlist_is_the_channels_hosts() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plugins/alerts/plugin.toml"
        ))
        .unwrap();
        let m = wakedock_plugin_runtime::Manifest::from_toml(&text).unwrap();
        assert_eq!(
            m.capabilities.http_outbound.as_ref().unwrap().hosts,
            ["*"],
            "the manifest leaves the hosts to the admin"
        );
        assert_eq!(m.capabilities.smtp.as_ref().unwrap().hosts, ["*"]);
        let hosts = Allowlists {
            http: vec!["127.0.0.1".into(), "hooks.slack.com".into()],
            smtp: vec!["smtp.example.org".into()],
        };
        let g = grant_for(&m, hosts, None);
        assert_eq!(g.excess_over(&m), None);
        // An install's own containers only: narrower than the manifest.
        let scoped = grant_for(&m, Allowlists::default(), Some("prod-1"));
        assert_eq!(scoped.excess_over(&m), None);
        assert_eq!(
            scoped
                .capabilities
                .containers
                .as_ref()
                .unwrap()
                .selector
                .as_deref(),
            Some("wakedock.instance=prod-1")
        );
        // Its log subscriptions (log rules) cover the install's containers
        // only: the containers selector bounds every one of them.
        let p = wakedock_plugin_runtime::manifest::Permissions::intersect(
            &m.capabilities,
            &scoped.capabilities,
        );
        assert!(p.container_logs.is_some(), "log rules need container-logs");
        assert!(p
            .containers
            .unwrap()
            .selector
            .matches(&[("wakedock.instance".into(), "prod-1".into())]));
        let p = wakedock_plugin_runtime::manifest::Permissions::intersect(
            &m.capabilities,
            &g.capabilities,
        );
        assert_eq!(
            p.http_outbound.unwrap().hosts,
            ["127.0.0.1", "hooks.slack.com"]
        );
        assert_eq!(p.smtp.unwrap().hosts, ["smtp.example.org"]);
    }
}
