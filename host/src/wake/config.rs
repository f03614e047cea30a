//! Hands the config file's `services:` list, WakeDock's own container and
//! the install's scope (`wakedock.instance`) to the wake plugin as its
//! configuration.

use crate::config::PluginDecl;
use crate::plugins::PluginPackage;

use super::WAKE_PLUGIN;

/// `declared` with the wake plugin's config extended by
/// `{"services": services, "self_container": own, "instance": instance}`
/// (the last two only when known). Other plugins, and
/// entries whose manifest cannot be read (the plugin manager reports
/// those), are returned unchanged.
pub fn with_wake_config(
    declared: &[PluginDecl],
    services: &[serde_json::Value],
    own_container: Option<&str>,
    instance: Option<&str>,
) -> Vec<PluginDecl> {
    declared
        .iter()
        .map(|decl| {
            let is_wake = PluginPackage::from_files(&decl.manifest, &decl.wasm)
                .ok()
                .and_then(|p| p.manifest().ok())
                .is_some_and(|m| m.name == WAKE_PLUGIN);
            if !is_wake {
                return decl.clone();
            }
            let mut config = match &decl.config {
                Some(serde_json::Value::Object(m)) => m.clone(),
                _ => serde_json::Map::new(),
            };
            config.insert(
                "services".into(),
                serde_json::Value::from(services.to_vec()),
            );
            if let Some(own) = own_container {
                config.insert("self_container".into(), own.into());
            }
            if let Some(instance) = instance {
                config.insert("instance".into(), instance.into());
            }
            PluginDecl {
                config: Some(serde_json::Value::Object(config)),
                ..decl.clone()
            }
        })
        .collect()
}
