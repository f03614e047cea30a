//! The plugin's configuration: its entry's `config` in the config file's
//! `plugins:` list (rules, channels, maintenance windows, history
//! retention), plus the install's scope filled in by the host. The host
//! checks it with [`AlertsConfig::from_json`] before it starts, so a bad
//! rule stops the start with its field named (`rules[2].for: ...`).

use serde::Deserialize;

use crate::channel::{parse_channels, Channel};
use crate::rule::{parse_ms, parse_rules, FieldError, Rule};
use crate::suppress::{Window, WindowDef};

/// Resolved alerts are kept this long by default.
pub const DEFAULT_RETENTION_MS: u64 = 30 * 24 * 3_600_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    channels: Vec<serde_json::Value>,
    #[serde(default)]
    maintenance: Vec<serde_json::Value>,
    #[serde(default)]
    retention: Option<String>,
    #[serde(default)]
    instance: Option<String>,
    /// Extra hosts the admin allows for channels made through the API
    /// (HTTP hosts and SMTP servers alike).
    #[serde(default)]
    allow_hosts: Vec<String>,
}

/// The checked configuration.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub rules: Vec<Rule>,
    pub channels: Vec<Channel>,
    pub windows: Vec<Window>,
    pub retention_ms: u64,
    pub instance: Option<String>,
    pub allow_hosts: Vec<String>,
}

impl AlertsConfig {
    pub fn from_json(v: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let raw: Raw = if v.is_null() {
            Raw::default()
        } else {
            serde_json::from_value(v.clone()).map_err(|e| vec![crate::rule::serde_error(&e)])?
        };
        let (rules, mut errs) = parse_rules(&raw.rules, "rules");
        let (channels, ch_errs) = parse_channels(&raw.channels, "channels");
        errs.extend(ch_errs);
        for (i, r) in rules.iter().enumerate() {
            for (j, c) in r.def.channels.iter().enumerate() {
                if !channels.iter().any(|x| &x.name == c) {
                    errs.push(FieldError::new(
                        format!("rules[{i}].channels[{j}]"),
                        format!("no channel named `{c}` in `channels`"),
                    ));
                }
            }
        }
        let mut windows = Vec::new();
        for (i, w) in raw.maintenance.iter().enumerate() {
            let at = format!("maintenance[{i}]");
            match serde_json::from_value::<WindowDef>(w.clone()) {
                Ok(def) => match def.validate() {
                    Ok(w) => windows.push(w),
                    Err(es) => errs.extend(es.into_iter().map(|e| e.under(&at))),
                },
                Err(e) => errs.push(crate::rule::serde_error(&e).under(&at)),
            }
        }
        let retention_ms = match raw.retention.as_deref().map(parse_ms) {
            None => DEFAULT_RETENTION_MS,
            Some(Ok(ms)) => ms,
            Some(Err(m)) => {
                errs.push(FieldError::new("retention", m));
                0
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(AlertsConfig {
            rules,
            channels,
            windows,
            retention_ms,
            instance: raw.instance,
            allow_hosts: raw.allow_hosts,
        })
    }

    /// The hosts the plugin must be able to reach over HTTP: its HTTP
    /// channels' and the admin's extra ones, sorted, without repeats.
    pub fn outbound_hosts(&self) -> Vec<String> {
        self.hosts(Channel::http_host)
    }

    /// The SMTP servers the plugin must be able to reach: its e-mail
    /// channels' and the admin's extra hosts, sorted, without repeats.
    pub fn smtp_hosts(&self) -> Vec<String> {
        self.hosts(Channel::smtp_host)
    }

    fn hosts(&self, of: fn(&Channel) -> Option<String>) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .channels
            .iter()
            .filter_map(of)
            .chain(self.allow_hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// Joins field errors into one message.
pub fn describe(errs: &[FieldError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_config_with_rules_channels_and_windows() {
        let c = AlertsConfig::from_json(&json!({
            "rules": [{"name": "crash", "kind": "exit", "channels": ["ops"]}],
            "channels": [
                {"name": "ops", "type": "slack", "webhook_url": "https://hooks.slack.com/services/x"},
                {"name": "phone", "type": "ntfy", "topic": "t"},
                {"name": "mail", "type": "email", "server": "SMTP.example.org", "from": "wd@example.org", "to": ["ops@example.org"]}
            ],
            "maintenance": [{"name": "nightly", "every": ["day"], "at": "03:00", "duration": "1h"}],
            "retention": "7d",
            "allow_hosts": ["Gotify.Example.org"]
        }))
        .unwrap();
        assert_eq!(c.retention_ms, 7 * 24 * 3_600_000);
        assert_eq!(
            c.outbound_hosts(),
            ["gotify.example.org", "hooks.slack.com", "ntfy.sh"]
        );
        assert_eq!(c.smtp_hosts(), ["gotify.example.org", "smtp.example.org"]);
        assert!(AlertsConfig::from_json(&serde_json::Value::Null).is_ok());
    }

    #[test]
    fn a_bad_config_names_every_field() {
        let e = AlertsConfig::from_json(&json!({
            "rules": [{"name": "crash", "kind": "exit", "channels": ["nope"], "resend": "often"}],
            "channels": [{"name": "x", "type": "slack"}, {"name": "m", "type": "email", "server": "s", "from": "a@b", "to": ["nobody"]}],
            "maintenance": [{"name": "m", "every": ["day"], "at": "3am", "duration": "1h"}],
            "retention": "forever"
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rules[0].resend",
                "channels[0].webhook_url",
                "channels[1].to[0]",
                "maintenance[0].at",
                "retention"
            ],
            "{}",
            describe(&e)
        );
        let e = AlertsConfig::from_json(&json!({"rulez": []})).unwrap_err();
        assert_eq!(e[0].field, "rulez");
    }
}
