//! Hands the config file's `services:` list, WakeDock's own container and
//! the install's scope (`wakedock.instance`) to the wake plugin as its
//! configuration (and the scope to the stacks plugin).

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
    let mut extra = serde_json::Map::new();
    extra.insert(
        "services".into(),
        serde_json::Value::from(services.to_vec()),
    );
    if let Some(own) = own_container {
        extra.insert("self_container".into(), own.into());
    }
    if let Some(instance) = instance {
        extra.insert("instance".into(), instance.into());
    }
    with_config_for(declared, WAKE_PLUGIN, &extra)
}

/// The manifest of `decl` if it declares the plugin named `plugin`.
pub fn declared_manifest(
    decl: &PluginDecl,
    plugin: &str,
) -> Option<wakedock_plugin_runtime::Manifest> {
    PluginPackage::from_files(&decl.manifest, &decl.wasm)
        .ok()
        .and_then(|p| p.manifest().ok())
        .filter(|m| m.name == plugin)
}

/// `declared` with the config object of the plugin named `plugin` (by its
/// manifest) extended by `extra`; other entries unchanged.
pub fn with_config_for(
    declared: &[PluginDecl],
    plugin: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Vec<PluginDecl> {
    declared
        .iter()
        .map(|decl| {
            if declared_manifest(decl, plugin).is_none() {
                return decl.clone();
            }
            let mut config = match &decl.config {
                Some(serde_json::Value::Object(m)) => m.clone(),
                _ => serde_json::Map::new(),
            };
            config.extend(extra.clone());
            PluginDecl {
                config: Some(serde_json::Value::Object(config)),
                ..decl.clone()
            }
        })
        .collect()
}
