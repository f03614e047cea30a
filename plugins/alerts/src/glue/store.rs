//! The plugin's storage: JSON documents under these keys.
//!
//! - `facts/c/{container}`, `facts/s/{service}`, `facts/h/{target}`: what
//!   is known of containers, wake services and the host's parts;
//! - `state/{rule}/{target}`: one alert's [`AlertState`];
//! - `alert/{id}`: history records (ids sort by firing time);
//! - `outbox/{id}`: deliveries not yet done;
//! - `health/{channel}`: how each channel has been doing;
//! - `rule/{name}`, `channel/{name}`, `window/{name}`, `silence/{id}`:
//!   what admins made through the API (the config file's stay there).
//!
//! One instance runs at a time (`max-instances = 1`), so what an instance
//! caches stays true until it is recycled.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wakedock_plugin_sdk::{log, storage};

pub fn warn_on<T>(what: &str, r: wakedock_plugin_sdk::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn(&format!("{what}: {}", e.describe()));
            None
        }
    }
}

pub fn get<T: DeserializeOwned>(key: &str) -> Option<T> {
    warn_on(&format!("reading {key}"), storage::get_json(key)).flatten()
}

pub fn put<T: Serialize + ?Sized>(key: &str, value: &T) -> bool {
    warn_on(&format!("writing {key}"), storage::set_json(key, value)).is_some()
}

pub fn delete(key: &str) {
    warn_on(&format!("deleting {key}"), storage::delete(key));
}

pub fn keys(prefix: &str) -> Vec<String> {
    warn_on(&format!("listing {prefix}"), storage::list_keys(prefix)).unwrap_or_default()
}

/// Every document under `prefix`, with the rest of its key.
pub fn all<T: DeserializeOwned>(prefix: &str) -> Vec<(String, T)> {
    keys(prefix)
        .into_iter()
        .filter_map(|k| {
            let v = get(&k)?;
            Some((k[prefix.len()..].to_owned(), v))
        })
        .collect()
}

pub fn state_key(rule: &str, target: &str) -> String {
    format!("state/{rule}/{target}")
}

/// A new unique id (time-ordered).
pub fn next_id(now: u64) -> String {
    let n: u64 = get("seq").unwrap_or(0) + 1;
    put("seq", &n);
    format!("{now:013}-{n:06}")
}
