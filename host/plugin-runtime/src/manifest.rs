//! `plugin.toml`: what a plugin is and what it asks for; the admin's
//! [`Grant`]; and the [`Permissions`] a plugin effectively gets (the
//! intersection of both, never more than either).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ManifestError;

/// The plugin API version this host implements (the WIT package version).
pub const HOST_API_VERSION: &str = "0.1.4";

/// A validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Lowercase slug (`[a-z][a-z0-9-]{0,62}`); also the URL segment under
    /// `/api/v1/plugins/` and the Prometheus metric prefix.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The plugin API version it was built against (semver, no prerelease).
    pub api_version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub author: Option<String>,
    /// How often `on-tick` runs, e.g. `"10s"`, `"500ms"`, `"5m"`. No ticks
    /// if absent.
    #[serde(default)]
    pub tick_interval: Option<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub limits: Limits,
    /// Entries of the host's navigation that lead to the plugin's pages
    /// (`[[pages]]`, API 0.1.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<PageEntry>,
    /// Default configuration passed (as JSON) to `init`.
    #[serde(default)]
    pub config: toml::Table,
}

/// `[[pages]]`: one entry of the host's navigation, leading to
/// `/p/{plugin}{path}`, shown to users with at least `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PageEntry {
    /// The navigation label (1–40 characters).
    pub title: String,
    /// Starts with `/`; relative to the plugin's pages (`/p/{plugin}`).
    #[serde(default = "root_path")]
    pub path: String,
    /// `viewer` (default), `user` or `admin`.
    #[serde(default = "viewer")]
    pub role: String,
    /// Event-bus topics (`a.b` or `a.*`) of the plugin's own that make the
    /// page live: while it is open, the host's script fetches it again
    /// when the plugin publishes one. Each must be one the manifest asks
    /// to publish (`capabilities.events.publish`). Empty: a static page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<String>,
}

impl PageEntry {
    /// Whether the page at `path` (relative to `/p/{plugin}`) is this
    /// entry's page or one under it (`/rules` covers `/rules/x`; `/`
    /// covers every page).
    pub fn covers(&self, path: &str) -> bool {
        let base = self.path.trim_end_matches('/');
        match path.strip_prefix(base) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// The entry a page at `path` belongs to: the one with the longest path
/// covering it.
pub fn page_entry<'a>(pages: &'a [PageEntry], path: &str) -> Option<&'a PageEntry> {
    pages
        .iter()
        .filter(|p| p.covers(path))
        .max_by_key(|p| p.path.trim_end_matches('/').len())
}

fn root_path() -> String {
    "/".into()
}

fn viewer() -> String {
    "viewer".into()
}

/// Requested (manifest) or approved (grant) capabilities. `None` means not
/// requested / not granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Capabilities {
    #[serde(default)]
    pub containers: Option<ContainersCap>,
    #[serde(default)]
    pub storage: Option<StorageCap>,
    #[serde(default)]
    pub http_outbound: Option<HttpOutboundCap>,
    #[serde(default)]
    pub events: Option<EventsCap>,
    #[serde(default)]
    pub metrics: Option<MetricsCap>,
    /// The stacks directory (API 0.1.3).
    #[serde(default)]
    pub files: Option<AccessCap>,
    /// Docker Compose projects in the stacks directory (API 0.1.3).
    #[serde(default)]
    pub compose: Option<AccessCap>,
    /// Outbound e-mail over SMTP (API 0.1.4).
    #[serde(default)]
    pub smtp: Option<SmtpCap>,
    /// Following containers' logs (API 0.1.4).
    #[serde(default)]
    pub container_logs: Option<ContainerLogsCap>,
}

/// `container-logs = { max-lines-per-second = 50, max-subscriptions = 16,
/// max-line-bytes = 2048 }`: what reaches the plugin of the logs of the
/// containers its `containers` selector lets it see. Unset bounds take the
/// host's defaults; none can exceed the host's ceilings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerLogsCap {
    /// Lines delivered per second, all subscriptions together; more are
    /// dropped and counted.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_lines_per_second: Option<u32>,
    /// Subscriptions the plugin may hold at once.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_subscriptions: Option<u32>,
    /// Longer lines are cut (and flagged `truncated`).
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_line_bytes: Option<u32>,
}

/// Host default and ceiling of `container-logs.max-lines-per-second`.
pub const LOG_LINES_PER_SECOND: (u32, u32) = (20, 1000);
/// Host default and ceiling of `container-logs.max-subscriptions`.
pub const LOG_SUBSCRIPTIONS: (u32, u32) = (16, 256);
/// Host default and ceiling of `container-logs.max-line-bytes`.
pub const LOG_LINE_BYTES: (u32, u32) = (2048, 16 * 1024);

impl ContainerLogsCap {
    /// The bounds as the host applies them: the default where unset,
    /// never above the ceiling.
    fn bounds(&self) -> [(&'static str, Option<u32>, (u32, u32)); 3] {
        [
            (
                "max-lines-per-second",
                self.max_lines_per_second,
                LOG_LINES_PER_SECOND,
            ),
            (
                "max-subscriptions",
                self.max_subscriptions,
                LOG_SUBSCRIPTIONS,
            ),
            ("max-line-bytes", self.max_line_bytes, LOG_LINE_BYTES),
        ]
    }

    fn effective(&self) -> [u32; 3] {
        self.bounds()
            .map(|(_, v, (default, max))| v.unwrap_or(default).min(max))
    }
}

/// `files = { access = "read" }`, `compose = { access = "write" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessCap {
    pub access: Access,
}

/// `containers = { access = "read", selector = "wakedock.enable=true" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainersCap {
    pub access: Access,
    /// Comma-separated label terms, each `key=value` or `key` (label
    /// present). A container is visible only if it matches every term.
    /// Absent: all containers.
    #[serde(default)]
    pub selector: Option<String>,
}

/// Container access level; `write` implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    Write,
}

/// `storage = { quota-bytes = 1048576 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageCap {
    #[serde(deserialize_with = "whole::de")]
    pub quota_bytes: u64,
}

/// `http-outbound = { hosts = ["hooks.slack.com"], max-requests-per-minute = 60 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpOutboundCap {
    /// Exact host names, or `*.example.com` for any subdomain.
    pub hosts: Vec<String>,
    #[serde(default = "default_rpm", deserialize_with = "whole::de")]
    pub max_requests_per_minute: u32,
}

fn default_rpm() -> u32 {
    60
}

/// `smtp = { hosts = ["smtp.example.com"], max-messages-per-minute = 10 }`
/// (API 0.1.4): the SMTP servers a plugin may send mail through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpCap {
    /// Server host names, `*.example.com`, or `*` (whichever the admin's
    /// grant lists), as for `http-outbound`.
    pub hosts: Vec<String>,
    #[serde(default = "default_mpm", deserialize_with = "whole::de")]
    pub max_messages_per_minute: u32,
}

fn default_mpm() -> u32 {
    10
}

/// Whole numbers as JSON Schema's `integer` reads them: `67` and `67.0`
/// alike (a grant arrives as JSON through the API), never `67.5`, never
/// out of range.
mod whole {
    use serde::de::{Deserializer, Error, Visitor};

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative whole number")
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
            // 2^64 itself is the first float past u64::MAX.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("{v} is not a non-negative whole number")))
            }
        }
    }

    pub fn de<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        let v = d.deserialize_any(Whole)?;
        T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large")))
    }

    pub fn de_opt<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
        struct Opt<T>(std::marker::PhantomData<T>);
        impl<'de, T: TryFrom<u64>> Visitor<'de> for Opt<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative whole number or nothing")
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                de(d).map(Some)
            }
        }
        d.deserialize_option(Opt(std::marker::PhantomData))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn whole_floats_are_whole_numbers() {
            let g: crate::Grant = serde_json::from_str(
                r#"{"capabilities": {"storage": {"quota-bytes": 67.0}}, "limits": {"max-instances": 2.0, "memory-bytes": null}}"#,
            )
            .unwrap();
            assert_eq!(g.capabilities.storage.unwrap().quota_bytes, 67);
            assert_eq!(g.limits.max_instances, Some(2));
            for bad in ["67.5", "-1", "1e30", "\"7\""] {
                let text =
                    format!(r#"{{"capabilities": {{"storage": {{"quota-bytes": {bad}}}}}}}"#);
                assert!(
                    serde_json::from_str::<crate::Grant>(&text).is_err(),
                    "{bad}"
                );
            }
            let text = r#"{"limits": {"max-instances": 4294967296}}"#;
            assert!(serde_json::from_str::<crate::Grant>(text).is_err());
        }
    }
}

/// `events = { publish = ["wake.*"], subscribe = ["stacks.*"] }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventsCap {
    /// Topics the plugin may publish (`a.b` exact or `a.*` prefix).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Event-bus topics delivered to `on-event` (container events are
    /// delivered by the `containers` capability).
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// `metrics = {}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsCap {}

/// `[limits]`; unset values take the host defaults ([`crate::RuntimeConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Linear memory per instance.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub memory_bytes: Option<u64>,
    /// CPU time per call, enforced by epoch deadlines (even in a tight loop).
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub cpu_ms_per_call: Option<u64>,
    /// Wall time per call, host calls included.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub wall_ms_per_call: Option<u64>,
    /// Live instances (concurrent calls) per plugin.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_instances: Option<u32>,
    /// Wasm tables per instance.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_tables: Option<u32>,
    /// Elements per wasm table.
    #[serde(default, deserialize_with = "whole::de_opt")]
    pub max_table_elements: Option<u32>,
}

/// What the administrator approved for a plugin: same shape as the
/// manifest's request. Anything absent here is not granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grant {
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Optional tighter limits than the manifest asks for.
    #[serde(default)]
    pub limits: Limits,
}

impl Grant {
    /// A grant approving exactly what `manifest` requests (an admin's
    /// "approve all").
    pub fn approve_all(manifest: &Manifest) -> Grant {
        Grant {
            capabilities: manifest.capabilities.clone(),
            limits: Limits::default(),
        }
    }

    /// Parses a grant from TOML with the same field-naming errors as a
    /// manifest.
    pub fn from_toml(text: &str) -> Result<Grant, ManifestError> {
        let de =
            toml::Deserializer::parse(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        let grant: Grant = serde_path_to_error::deserialize(de).map_err(path_error)?;
        grant.capabilities.validate("capabilities")?;
        Ok(grant)
    }
}

impl Grant {
    /// Why this grant approves more than `manifest` requests, if it does.
    /// A grant may narrow a request (lower access, extra selector terms, a
    /// smaller quota or rate, fewer hosts or topics, lower limits) but never
    /// widen it: what is stored and shown as granted is then exactly what
    /// the plugin can use, never more.
    pub fn excess_over(&self, manifest: &Manifest) -> Option<String> {
        let name = &manifest.name;
        let (r, g) = (&manifest.capabilities, &self.capabilities);
        let unrequested = |cap: &str| {
            format!("grant approves capability `{cap}`, which plugin `{name}` does not request")
        };
        if let Some(gc) = &g.containers {
            let Some(rc) = &r.containers else {
                return Some(unrequested("containers"));
            };
            if gc.access > rc.access {
                return Some(format!(
                    "grant gives `containers` access `{}`, wider than the `{}` plugin `{name}` requests: grant `{}` or narrower",
                    access_name(gc.access),
                    access_name(rc.access),
                    access_name(rc.access)
                ));
            }
            let terms = |c: &ContainersCap| {
                Selector::parse(c.selector.as_deref().unwrap_or(""))
                    .unwrap_or_default()
                    .terms
            };
            if !terms(rc).is_subset(&terms(gc)) {
                let want = rc.selector.as_deref().unwrap_or("");
                return Some(format!(
                    "grant's `containers` selector `{}` selects more containers than the `{want}` plugin `{name}` requests: \
                     a grant may only add terms to it (for example `{want},team=a`)",
                    gc.selector.as_deref().unwrap_or("(none: every container)")
                ));
            }
        }
        if let Some(gs) = &g.storage {
            let Some(rs) = &r.storage else {
                return Some(unrequested("storage"));
            };
            if gs.quota_bytes > rs.quota_bytes {
                return Some(format!(
                    "grant gives `storage` quota-bytes {}, more than the {} plugin `{name}` requests",
                    gs.quota_bytes, rs.quota_bytes
                ));
            }
        }
        if let Some(gh) = &g.http_outbound {
            let Some(rh) = &r.http_outbound else {
                return Some(unrequested("http-outbound"));
            };
            if let Some(why) = hosts_excess(
                "http-outbound",
                name,
                (&gh.hosts[..], &rh.hosts[..]),
                (
                    "max-requests-per-minute",
                    gh.max_requests_per_minute,
                    rh.max_requests_per_minute,
                ),
            ) {
                return Some(why);
            }
        }
        if let Some(gs) = &g.smtp {
            let Some(rs) = &r.smtp else {
                return Some(unrequested("smtp"));
            };
            if let Some(why) = hosts_excess(
                "smtp",
                name,
                (&gs.hosts[..], &rs.hosts[..]),
                (
                    "max-messages-per-minute",
                    gs.max_messages_per_minute,
                    rs.max_messages_per_minute,
                ),
            ) {
                return Some(why);
            }
        }
        if let Some(ge) = &g.events {
            let Some(re) = &r.events else {
                return Some(unrequested("events"));
            };
            for (kind, granted, requested) in [
                ("publish", &ge.publish, &re.publish),
                ("subscribe", &ge.subscribe, &re.subscribe),
            ] {
                if let Some(t) = granted
                    .iter()
                    .find(|t| !pattern_covered(t, requested, topic_matches))
                {
                    return Some(format!(
                        "grant allows `events` {kind} `{t}`, which plugin `{name}` does not request (it requests {requested:?})"
                    ));
                }
            }
        }
        if g.metrics.is_some() && r.metrics.is_none() {
            return Some(unrequested("metrics"));
        }
        for (cap, granted, requested) in [
            ("files", &g.files, &r.files),
            ("compose", &g.compose, &r.compose),
        ] {
            let Some(ga) = granted else { continue };
            let Some(ra) = requested else {
                return Some(unrequested(cap));
            };
            if ga.access > ra.access {
                return Some(format!(
                    "grant gives `{cap}` access `{}`, wider than the `{}` plugin `{name}` requests",
                    access_name(ga.access),
                    access_name(ra.access)
                ));
            }
        }
        if let Some(gl) = &g.container_logs {
            let Some(rl) = &r.container_logs else {
                return Some(unrequested("container-logs"));
            };
            for ((bound, granted, _), asked) in gl.bounds().into_iter().zip(rl.effective()) {
                if let Some(granted) = granted.filter(|g| *g > asked) {
                    return Some(format!(
                        "grant gives `container-logs` {bound} {granted}, more than the {asked} plugin `{name}` requests"
                    ));
                }
            }
        }
        let (rl, gl) = (&manifest.limits, &self.limits);
        for (limit, asked, granted) in [
            ("memory-bytes", rl.memory_bytes, gl.memory_bytes),
            ("cpu-ms-per-call", rl.cpu_ms_per_call, gl.cpu_ms_per_call),
            ("wall-ms-per-call", rl.wall_ms_per_call, gl.wall_ms_per_call),
            (
                "max-instances",
                rl.max_instances.map(u64::from),
                gl.max_instances.map(u64::from),
            ),
            (
                "max-tables",
                rl.max_tables.map(u64::from),
                gl.max_tables.map(u64::from),
            ),
            (
                "max-table-elements",
                rl.max_table_elements.map(u64::from),
                gl.max_table_elements.map(u64::from),
            ),
        ] {
            if let (Some(a), Some(g)) = (asked, granted) {
                if g > a {
                    return Some(format!(
                        "grant raises limit `{limit}` to {g}, above the {a} plugin `{name}` asks for: a grant may only lower limits"
                    ));
                }
            }
        }
        None
    }
}

/// Why a grant of a host-allowlist capability (`http-outbound`, `smtp`)
/// exceeds its request: a host the request does not cover, or a higher
/// rate. `hosts` and `rate` are (granted, requested).
fn hosts_excess(
    cap: &str,
    plugin: &str,
    hosts: (&[String], &[String]),
    rate: (&str, u32, u32),
) -> Option<String> {
    let (granted, requested) = hosts;
    if let Some(h) = granted
        .iter()
        .find(|h| !pattern_covered(h, requested, host_matches))
    {
        return Some(format!(
            "grant allows `{cap}` host `{h}`, which plugin `{plugin}` does not request (it requests {requested:?})"
        ));
    }
    let (field, g, r) = rate;
    (g > r).then(|| {
        format!("grant gives `{cap}` {field} {g}, more than the {r} plugin `{plugin}` requests")
    })
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
    }
}

fn path_error(e: serde_path_to_error::Error<toml::de::Error>) -> ManifestError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.message().to_owned();
    // serde reports a missing field at its parent: name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    let field = match (path.as_str(), missing) {
        (".", Some(name)) => name,
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => "(top level)".to_owned(),
        (_, None) => path,
    };
    ManifestError::Field { field, message }
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        message: message.into(),
    }
}

impl Manifest {
    /// Parses and validates `plugin.toml`. Every error names the offending
    /// field.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        let de =
            toml::Deserializer::parse(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(path_error)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every field's syntax and range (not API compatibility, see
    /// [`check_api_version`]).
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_slug(&self.name).map_err(|m| field_err("name", m))?;
        semver::Version::parse(&self.version).map_err(|e| {
            field_err(
                "version",
                format!("`{}` is not a semantic version: {e}", self.version),
            )
        })?;
        parse_api_version(&self.api_version)?;
        if let Some(t) = &self.tick_interval {
            let d = parse_duration(t).map_err(|m| field_err("tick-interval", m))?;
            if d < Duration::from_millis(100) {
                return Err(field_err("tick-interval", "must be at least 100ms"));
            }
        }
        self.capabilities.validate("capabilities")?;
        self.limits.validate("limits")?;
        for (i, p) in self.pages.iter().enumerate() {
            let at = |f: &str| format!("pages[{i}].{f}");
            let title = p.title.trim();
            if title.is_empty() || title.chars().count() > 40 {
                return Err(field_err(at("title"), "must be 1 to 40 characters"));
            }
            if !p.path.starts_with('/')
                || p.path.starts_with("//")
                || p.path.contains(['\\', '?', '#'])
                || p.path.chars().any(char::is_control)
            {
                return Err(field_err(
                    at("path"),
                    format!(
                        "`{}` must be a path starting with `/` (no query, no `//`)",
                        p.path
                    ),
                ));
            }
            if !matches!(p.role.as_str(), "viewer" | "user" | "admin") {
                return Err(field_err(
                    at("role"),
                    format!("`{}` is not a role (viewer, user or admin)", p.role),
                ));
            }
            let publish = self
                .capabilities
                .events
                .as_ref()
                .map_or(&[][..], |e| e.publish.as_slice());
            for (j, t) in p.live.iter().enumerate() {
                let field = || at(&format!("live[{j}]"));
                validate_topic_pattern(t).map_err(|m| field_err(field(), m))?;
                // Only its own topics: a page is live on what this plugin
                // publishes, never on another's or the host's events.
                if !pattern_covered(t, publish, topic_matches) {
                    return Err(field_err(
                        field(),
                        format!(
                            "`{t}` is not among the topics this plugin may publish \
                             (capabilities.events.publish: {publish:?})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The tick interval, if the plugin wants ticks.
    pub fn tick_interval(&self) -> Option<Duration> {
        self.tick_interval
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
    }

    /// `[config]` as a JSON object.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config)
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
    }
}

fn parse_api_version(v: &str) -> Result<semver::Version, ManifestError> {
    let parsed = semver::Version::parse(v).map_err(|e| {
        field_err(
            "api-version",
            format!("`{v}` is not a semantic version: {e}"),
        )
    })?;
    if !parsed.pre.is_empty() {
        return Err(field_err(
            "api-version",
            "prerelease API versions are not supported",
        ));
    }
    Ok(parsed)
}

/// Whether a plugin built against `plugin_api` can run on this host.
///
/// Same major; for `0.x`, same minor too; and the host's minor must be at
/// least the plugin's (a plugin may use functions added in its minor).
pub fn check_api_version(plugin_api: &str) -> Result<(), crate::RuntimeError> {
    let plugin = parse_api_version(plugin_api)?;
    let host = semver::Version::parse(HOST_API_VERSION).expect("HOST_API_VERSION is valid semver");
    let compatible = if host.major == 0 {
        // In 0.x the patch level plays the minor's role: 0.1.1 and 0.1.2
        // add functions to 0.1.0, so a 0.1.0 or 0.1.1 plugin runs on a 0.1.2
        // host and not the other way round.
        plugin.major == 0 && plugin.minor == host.minor && plugin.patch <= host.patch
    } else {
        plugin.major == host.major && plugin.minor <= host.minor
    };
    if compatible {
        Ok(())
    } else {
        Err(crate::RuntimeError::IncompatibleApi {
            plugin: plugin_api.to_owned(),
            host: HOST_API_VERSION.to_owned(),
        })
    }
}

fn validate_slug(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a lowercase slug (letters, digits and '-', starting with a letter, at most 63 characters)"
        ))
    }
}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"10s\" or \"500ms\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ))
        }
    };
    Ok(d)
}

impl Capabilities {
    fn validate(&self, at: &str) -> Result<(), ManifestError> {
        if let Some(c) = &self.containers {
            if let Some(sel) = &c.selector {
                Selector::parse(sel)
                    .map_err(|m| field_err(format!("{at}.containers.selector"), m))?;
            }
        }
        if let Some(h) = &self.http_outbound {
            for (i, host) in h.hosts.iter().enumerate() {
                validate_host_pattern(host)
                    .map_err(|m| field_err(format!("{at}.http-outbound.hosts[{i}]"), m))?;
            }
        }
        if let Some(l) = &self.container_logs {
            for (bound, v, (_, max)) in l.bounds() {
                match v {
                    Some(0) => {
                        return Err(field_err(
                            format!("{at}.container-logs.{bound}"),
                            "must be greater than 0",
                        ))
                    }
                    Some(v) if v > max => {
                        return Err(field_err(
                            format!("{at}.container-logs.{bound}"),
                            format!("{v} is above the host's maximum of {max}"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        if let Some(h) = &self.smtp {
            for (i, host) in h.hosts.iter().enumerate() {
                validate_host_pattern(host)
                    .map_err(|m| field_err(format!("{at}.smtp.hosts[{i}]"), m))?;
            }
        }
        if let Some(e) = &self.events {
            for (i, t) in e.publish.iter().enumerate() {
                validate_topic_pattern(t)
                    .map_err(|m| field_err(format!("{at}.events.publish[{i}]"), m))?;
            }
            for (i, t) in e.subscribe.iter().enumerate() {
                validate_topic_pattern(t)
                    .map_err(|m| field_err(format!("{at}.events.subscribe[{i}]"), m))?;
            }
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self, at: &str) -> Result<(), ManifestError> {
        let nonzero = |v: Option<u64>, name: &str| match v {
            Some(0) => Err(field_err(format!("{at}.{name}"), "must be greater than 0")),
            _ => Ok(()),
        };
        nonzero(self.memory_bytes, "memory-bytes")?;
        nonzero(self.cpu_ms_per_call, "cpu-ms-per-call")?;
        nonzero(self.wall_ms_per_call, "wall-ms-per-call")?;
        nonzero(self.max_instances.map(u64::from), "max-instances")?;
        Ok(())
    }
}

fn validate_host_pattern(host: &str) -> Result<(), String> {
    // `*` in a manifest: whichever hosts the admin's grant lists (a plugin
    // whose destinations are the admin's own configuration, like alerts).
    if host == "*" {
        return Ok(());
    }
    let body = host.strip_prefix("*.").unwrap_or(host);
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !body.starts_with('.')
        && !body.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a lowercase host name or `*.domain` pattern"
        ))
    }
}

fn validate_topic_pattern(topic: &str) -> Result<(), String> {
    let body = topic.strip_suffix(".*").unwrap_or(topic);
    let ok = topic == "*"
        || (!body.is_empty()
            && body.split('.').all(|seg| {
                !seg.is_empty()
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            }));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{topic}` is not a topic (`a.b`) or pattern (`a.*`)"
        ))
    }
}

/// Whether `topic` matches `pattern` (`a.*` matches `a.b` and `a.b.c`;
/// `*` matches everything).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => {
            topic.len() > prefix.len() + 1
                && topic.starts_with(prefix)
                && topic.as_bytes()[prefix.len()] == b'.'
        }
        None => pattern == topic,
    }
}

/// Whether `host` (lowercase) matches `pattern` (`*.x.com` matches
/// `a.x.com` and `a.b.x.com`, not `x.com`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

/// A parsed label selector: every term must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// (key, Some(value)) requires `key=value`; (key, None) requires `key`.
    pub terms: BTreeSet<(String, Option<String>)>,
}

impl Selector {
    /// Parses `a=b,c`.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = BTreeSet::new();
        for raw in text.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let (k, v) = match term.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
                None => (term, None),
            };
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(format!(
                    "`{term}` is not a label term (`key=value` or `key`)"
                ));
            }
            terms.insert((k.to_owned(), v));
        }
        Ok(Selector { terms })
    }

    /// Whether `labels` satisfy every term.
    /// Whether every container matches (no terms): membership needs no
    /// look at the container's labels.
    pub fn matches_everything(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        self.terms.iter().all(|(k, v)| {
            labels
                .iter()
                .any(|(lk, lv)| lk == k && v.as_ref().is_none_or(|v| v == lv))
        })
    }

    /// Conjunction of two selectors (a container must match both).
    pub fn and(&self, other: &Selector) -> Selector {
        Selector {
            terms: self.terms.union(&other.terms).cloned().collect(),
        }
    }
}

/// What a plugin may do: the manifest's request ∩ the admin's grant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    pub containers: Option<ContainerPermission>,
    pub storage_quota_bytes: Option<u64>,
    pub http_outbound: Option<HttpPermission>,
    pub events_publish: Option<Vec<String>>,
    pub events_subscribe: Vec<String>,
    pub metrics: bool,
    /// API 0.1.3.
    pub files: Option<Access>,
    /// API 0.1.3.
    pub compose: Option<Access>,
    /// API 0.1.4.
    pub smtp: Option<SmtpPermission>,
    pub container_logs: Option<LogsPermission>,
}

/// Effective `container-logs` bounds (the lower of request and grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsPermission {
    pub max_lines_per_second: u32,
    pub max_subscriptions: u32,
    pub max_line_bytes: u32,
}

/// Effective container permission.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPermission {
    pub access: Access,
    pub selector: Selector,
}

/// Effective outbound HTTP permission.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPermission {
    pub hosts: Vec<String>,
    pub max_requests_per_minute: u32,
}

/// Effective SMTP permission (API 0.1.4).
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpPermission {
    pub hosts: Vec<String>,
    pub max_messages_per_minute: u32,
}

/// What both a request and a grant allow: requested hosts the grant
/// covers, and granted ones a requested pattern (`*`) covers; sorted.
fn common_hosts(requested: &[String], granted: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = requested
        .iter()
        .filter(|h| pattern_covered(h, granted, host_matches))
        .chain(
            granted
                .iter()
                .filter(|h| pattern_covered(h, requested, host_matches)),
        )
        .cloned()
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn pattern_covered(pattern: &str, by: &[String], matches: fn(&str, &str) -> bool) -> bool {
    by.iter()
        .any(|g| g == pattern || g == "*" || (!pattern.contains('*') && matches(g, pattern)))
}

impl Permissions {
    /// Intersects a request with a grant. A pattern survives only if the
    /// grant has the same pattern or one covering it; a plain name survives
    /// if a grant pattern matches it.
    pub fn intersect(requested: &Capabilities, granted: &Capabilities) -> Permissions {
        let containers = match (&requested.containers, &granted.containers) {
            (Some(r), Some(g)) => {
                let sel = |c: &ContainersCap| {
                    c.selector
                        .as_deref()
                        .map(Selector::parse)
                        .transpose()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                };
                Some(ContainerPermission {
                    access: r.access.min(g.access),
                    selector: sel(r).and(&sel(g)),
                })
            }
            _ => None,
        };
        let storage_quota_bytes = match (&requested.storage, &granted.storage) {
            (Some(r), Some(g)) => Some(r.quota_bytes.min(g.quota_bytes)),
            _ => None,
        };
        let http_outbound = match (&requested.http_outbound, &granted.http_outbound) {
            (Some(r), Some(g)) => Some(HttpPermission {
                hosts: common_hosts(&r.hosts, &g.hosts),
                max_requests_per_minute: r.max_requests_per_minute.min(g.max_requests_per_minute),
            }),
            _ => None,
        };
        let smtp = match (&requested.smtp, &granted.smtp) {
            (Some(r), Some(g)) => Some(SmtpPermission {
                hosts: common_hosts(&r.hosts, &g.hosts),
                max_messages_per_minute: r.max_messages_per_minute.min(g.max_messages_per_minute),
            }),
            _ => None,
        };
        let (events_publish, events_subscribe) = match (&requested.events, &granted.events) {
            (Some(r), Some(g)) => (
                Some(
                    r.publish
                        .iter()
                        .filter(|t| pattern_covered(t, &g.publish, topic_matches))
                        .cloned()
                        .collect(),
                ),
                r.subscribe
                    .iter()
                    .filter(|t| pattern_covered(t, &g.subscribe, topic_matches))
                    .cloned()
                    .collect(),
            ),
            _ => (None, Vec::new()),
        };
        Permissions {
            containers,
            storage_quota_bytes,
            http_outbound,
            events_publish,
            events_subscribe,
            metrics: requested.metrics.is_some() && granted.metrics.is_some(),
            files: access_of(&requested.files, &granted.files),
            compose: access_of(&requested.compose, &granted.compose),
            container_logs: match (&requested.container_logs, &granted.container_logs) {
                (Some(r), Some(g)) => {
                    // A bound the grant leaves unset is the request's.
                    let [lps, subs, bytes] = r.effective();
                    let narrow =
                        |asked: u32, granted: Option<u32>| granted.map_or(asked, |g| g.min(asked));
                    Some(LogsPermission {
                        max_lines_per_second: narrow(lps, g.max_lines_per_second),
                        max_subscriptions: narrow(subs, g.max_subscriptions),
                        max_line_bytes: narrow(bytes, g.max_line_bytes),
                    })
                }
                _ => None,
            },
            smtp,
        }
    }

    /// Whether the WIT interface named `iface` (e.g. `containers`) may be
    /// linked for this plugin. `types`, `log`, `clock` and `auth` always may.
    pub fn allows_interface(&self, iface: &str) -> bool {
        match iface {
            "types" | "log" | "clock" | "auth" => true,
            "containers" => self.containers.is_some(),
            "metrics" => self.metrics,
            "storage" => self.storage_quota_bytes.is_some(),
            "http-outbound" => self.http_outbound.is_some(),
            "events" => self.events_publish.is_some(),
            "files" => self.files.is_some(),
            "compose" => self.compose.is_some(),
            "container-logs" => self.container_logs.is_some(),
            "smtp" => self.smtp.is_some(),
            _ => false,
        }
    }
}

/// The lower of a requested and a granted access level; none if either is
/// absent.
fn access_of(requested: &Option<AccessCap>, granted: &Option<AccessCap>) -> Option<Access> {
    match (requested, granted) {
        (Some(r), Some(g)) => Some(r.access.min(g.access)),
        _ => None,
    }
}

/// Effective limits: the smallest of manifest, grant and host maximum.
pub(crate) fn min_opt(values: &[Option<u64>], host_default: u64, host_max: u64) -> u64 {
    let asked = values
        .iter()
        .flatten()
        .copied()
        .min()
        .unwrap_or(host_default);
    asked.min(host_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "wake"
version = "1.2.3"
api-version = "0.1.0"
description = "d"
author = "a"
tick-interval = "10s"
[capabilities]
containers = { access = "write", selector = "wakedock.enable=true" }
storage = { quota-bytes = 1048576 }
http-outbound = { hosts = ["hooks.slack.com", "*.example.com"], max-requests-per-minute = 60 }
events = { publish = ["wake.*"] }
metrics = {}
[limits]
memory-bytes = 1000000
[config]
x = 1
"#;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::from_toml(GOOD).unwrap();
        assert_eq!(m.name, "wake");
        assert_eq!(m.tick_interval(), Some(Duration::from_secs(10)));
        assert_eq!(
            m.capabilities.containers.as_ref().unwrap().access,
            Access::Write
        );
        assert_eq!(m.config_json(), serde_json::json!({"x": 1}));
    }

    fn field_of(text: &str) -> String {
        match Manifest::from_toml(text) {
            Err(ManifestError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(&GOOD.replace("name = \"wake\"", "name = \"Wake!\"")),
            "name"
        );
        assert_eq!(
            field_of(&GOOD.replace("version = \"1.2.3\"", "version = \"one\"")),
            "version"
        );
        assert_eq!(
            field_of(&GOOD.replace("access = \"write\"", "access = \"root\"")),
            "capabilities.containers.access"
        );
        assert_eq!(
            field_of(&GOOD.replace("quota-bytes = 1048576", "quota-bytes = \"big\"")),
            "capabilities.storage.quota-bytes"
        );
        assert_eq!(
            field_of(&GOOD.replace("metrics = {}", "metrics = {}\nshell = {}")),
            "capabilities.shell"
        );
        assert_eq!(
            field_of(&GOOD.replace("tick-interval = \"10s\"", "tick-interval = \"10 parsecs\"")),
            "tick-interval"
        );
        assert_eq!(
            field_of(&GOOD.replace("\"hooks.slack.com\"", "\"Hooks.Slack.com/x\"")),
            "capabilities.http-outbound.hosts[0]"
        );
        assert_eq!(
            field_of(&GOOD.replace("memory-bytes = 1000000", "memory-bytes = 0")),
            "limits.memory-bytes"
        );
        assert_eq!(
            field_of(&GOOD.replace("api-version = \"0.1.0\"", "api-version = \"0.1.0-beta\"")),
            "api-version"
        );
        assert_eq!(field_of("name = \"x\"\nversion = \"1.0.0\""), "api-version");
    }

    #[test]
    fn api_versions() {
        assert!(check_api_version("0.1.0").is_ok());
        assert!(check_api_version("0.1.1").is_ok());
        assert!(check_api_version("0.1.2").is_ok());
        assert!(check_api_version("0.1.3").is_ok());
        assert!(check_api_version("0.1.4").is_ok());
        assert!(check_api_version("0.1.5").is_err(), "newer than the host");
        assert!(check_api_version("0.2.0").is_err());
        assert!(check_api_version("9.0.0").is_err());
        assert!(check_api_version("1.0.0").is_err());
    }

    #[test]
    fn intersection_never_exceeds_either_side() {
        let m = Manifest::from_toml(GOOD).unwrap();
        let grant = Grant::from_toml(
            r#"
[capabilities]
containers = { access = "read", selector = "team=a" }
storage = { quota-bytes = 10 }
http-outbound = { hosts = ["hooks.slack.com", "*.other.org"], max-requests-per-minute = 600 }
"#,
        )
        .unwrap();
        let p = Permissions::intersect(&m.capabilities, &grant.capabilities);
        let c = p.containers.clone().unwrap();
        assert_eq!(c.access, Access::Read);
        assert!(c.selector.matches(&[
            ("team".into(), "a".into()),
            ("wakedock.enable".into(), "true".into())
        ]));
        assert!(!c
            .selector
            .matches(&[("wakedock.enable".into(), "true".into())]));
        assert_eq!(p.storage_quota_bytes, Some(10));
        let h = p.http_outbound.clone().unwrap();
        assert_eq!(h.hosts, vec!["hooks.slack.com".to_owned()]);
        assert_eq!(h.max_requests_per_minute, 60);
        assert_eq!(p.events_publish, None);
        assert!(!p.metrics);
        assert!(!p.allows_interface("events"));
        assert!(p.allows_interface("log"));
    }

    #[test]
    fn grants_may_narrow_a_request_but_never_widen_it() {
        let m = Manifest::from_toml(GOOD).unwrap();
        let grant = |caps: &str| {
            Grant::from_toml(&format!("[capabilities]\n{caps}"))
                .unwrap()
                .excess_over(&m)
        };
        assert_eq!(Grant::approve_all(&m).excess_over(&m), None);
        for narrower in [
            r#"containers = { access = "read", selector = "wakedock.enable=true,team=a" }"#,
            r#"storage = { quota-bytes = 10 }"#,
            r#"http-outbound = { hosts = ["hooks.slack.com", "a.example.com"], max-requests-per-minute = 6 }"#,
            r#"events = { publish = ["wake.started"] }"#,
        ] {
            assert_eq!(grant(narrower), None, "{narrower}");
        }
        for (wider, says) in [
            (
                r#"containers = { access = "write" }"#,
                "selects more containers",
            ),
            (
                r#"containers = { access = "write", selector = "team=a" }"#,
                "selects more",
            ),
            (
                r#"storage = { quota-bytes = 2000000 }"#,
                "quota-bytes 2000000",
            ),
            (
                r#"http-outbound = { hosts = ["evil.example"] }"#,
                "`evil.example`",
            ),
            (
                r#"http-outbound = { hosts = ["*.example.com"], max-requests-per-minute = 600 }"#,
                "600",
            ),
            (r#"events = { publish = ["*"] }"#, "publish `*`"),
            (
                r#"events = { subscribe = ["stacks.*"] }"#,
                "subscribe `stacks.*`",
            ),
        ] {
            let why = grant(wider).unwrap_or_else(|| panic!("{wider} accepted"));
            assert!(why.contains(says), "{wider}: {why}");
        }
        let ro =
            Manifest::from_toml(&GOOD.replace("access = \"write\"", "access = \"read\"")).unwrap();
        let w = Grant::from_toml("[capabilities]\ncontainers = { access = \"write\", selector = \"wakedock.enable=true\" }").unwrap();
        assert!(w.excess_over(&ro).unwrap().contains("access `write`"));
        let big = Grant::from_toml("[limits]\nmemory-bytes = 2000000").unwrap();
        assert!(big.excess_over(&m).unwrap().contains("memory-bytes"));
    }

    #[test]
    fn container_logs_bounds_are_checked_narrowed_and_never_widened() {
        let m = Manifest::from_toml(&GOOD.replace(
            "metrics = {}",
            "metrics = {}\ncontainer-logs = { max-lines-per-second = 50, max-line-bytes = 4096 }",
        ))
        .unwrap();
        let grant = |caps: &str| Grant::from_toml(&format!("[capabilities]\n{caps}")).unwrap();
        // Unset in the grant: the request's; unset in both: the host's default.
        let p = Permissions::intersect(&m.capabilities, &Grant::approve_all(&m).capabilities);
        assert_eq!(
            p.container_logs,
            Some(LogsPermission {
                max_lines_per_second: 50,
                max_subscriptions: LOG_SUBSCRIPTIONS.0,
                max_line_bytes: 4096,
            })
        );
        let narrow = grant("container-logs = { max-lines-per-second = 5 }");
        assert_eq!(narrow.excess_over(&m), None);
        let p = Permissions::intersect(&m.capabilities, &narrow.capabilities);
        assert_eq!(p.container_logs.unwrap().max_lines_per_second, 5);
        assert!(p.allows_interface("container-logs"));
        let wide = grant("container-logs = { max-subscriptions = 100 }");
        let why = wide.excess_over(&m).unwrap();
        assert!(why.contains("max-subscriptions 100"), "{why}");
        let unrequested = grant("container-logs = {}");
        assert!(unrequested
            .excess_over(&Manifest::from_toml(GOOD).unwrap())
            .unwrap()
            .contains("`container-logs`"));
        // Not granted: not linked-in permission.
        let p = Permissions::intersect(&m.capabilities, &Grant::default().capabilities);
        assert!(!p.allows_interface("container-logs"));
        for (bad, field) in [
            ("max-lines-per-second = 0", "max-lines-per-second"),
            ("max-line-bytes = 1000000", "max-line-bytes"),
        ] {
            assert_eq!(
                field_of(&GOOD.replace(
                    "metrics = {}",
                    &format!("metrics = {{}}\ncontainer-logs = {{ {bad} }}")
                )),
                format!("capabilities.container-logs.{field}")
            );
        }
    }

    #[test]
    fn matching_rules() {
        assert!(topic_matches("wake.*", "wake.started"));
        assert!(!topic_matches("wake.*", "wake"));
        assert!(!topic_matches("wake.*", "wakeful.x"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(host_matches("hooks.slack.com", "hooks.slack.com"));
        assert!(host_matches("*", "anything.example"));
    }

    #[test]
    fn a_page_is_live_only_on_topics_the_plugin_may_publish() {
        let with = |live: &str| {
            Manifest::from_toml(&format!(
                "{GOOD}\n[[pages]]\ntitle = \"Wake\"\nlive = {live}\n"
            ))
        };
        let m = with(r#"["wake.*"]"#).unwrap();
        assert_eq!(m.pages[0].live, ["wake.*"]);
        assert!(with(r#"["wake.started"]"#).is_ok());
        let err = |live: &str| match with(live) {
            Err(ManifestError::Field { field, message }) => (field, message),
            other => panic!("{live} accepted: {other:?}"),
        };
        // Another plugin's topics, the host's, and every topic are refused.
        for foreign in [r#"["stacks.*"]"#, r#"["host.health"]"#, r#"["*"]"#] {
            let (field, message) = err(foreign);
            assert_eq!(field, "pages[0].live[0]", "{foreign}");
            assert!(message.contains("may publish"), "{message}");
        }
        assert_eq!(err(r#"["wake.*", "Wake!"]"#).0, "pages[0].live[1]");
        // No events capability: nothing to be live on.
        let quiet = GOOD.replace("events = { publish = [\"wake.*\"] }\n", "");
        assert!(Manifest::from_toml(&format!(
            "{quiet}\n[[pages]]\ntitle = \"W\"\nlive = [\"wake.*\"]\n"
        ))
        .is_err());
    }

    #[test]
    fn a_page_belongs_to_the_entry_with_the_longest_covering_path() {
        let entry = |path: &str| PageEntry {
            title: path.into(),
            path: path.into(),
            role: "viewer".into(),
            live: Vec::new(),
        };
        let pages = [entry("/"), entry("/rules"), entry("/rules/admin/")];
        let of = |p: &str| page_entry(&pages, p).map(|e| e.path.as_str());
        assert_eq!(of("/"), Some("/"));
        assert_eq!(of("/history"), Some("/"));
        assert_eq!(of("/rules"), Some("/rules"));
        assert_eq!(of("/rules/x"), Some("/rules"));
        assert_eq!(of("/rulesx"), Some("/"));
        assert_eq!(of("/rules/admin"), Some("/rules/admin/"));
        assert_eq!(page_entry(&pages[1..], "/history"), None);
    }

    #[test]
    fn a_star_request_gets_exactly_the_hosts_the_admin_grants() {
        let m = Manifest::from_toml(&GOOD.replace(
            r#"hosts = ["hooks.slack.com", "*.example.com"]"#,
            r#"hosts = ["*"]"#,
        ))
        .unwrap();
        let grant = Grant::from_toml(
            "[capabilities]\nhttp-outbound = { hosts = [\"127.0.0.1\", \"hooks.slack.com\"] }",
        )
        .unwrap();
        assert_eq!(grant.excess_over(&m), None);
        let p = Permissions::intersect(&m.capabilities, &grant.capabilities);
        assert_eq!(
            p.http_outbound.unwrap().hosts,
            ["127.0.0.1".to_owned(), "hooks.slack.com".to_owned()]
        );
        // A grant without hosts gives none.
        let none = Grant::from_toml("[capabilities]\nhttp-outbound = { hosts = [] }").unwrap();
        let p = Permissions::intersect(&m.capabilities, &none.capabilities);
        assert!(p.http_outbound.unwrap().hosts.is_empty());
    }
    #[test]
    fn an_smtp_grant_narrows_the_request_like_http_outbound() {
        let m = Manifest::from_toml(&GOOD.replace(
            "[capabilities]",
            "[capabilities]\nsmtp = { hosts = [\"*\"], max-messages-per-minute = 30 }",
        ))
        .unwrap();
        let grant = Grant::from_toml(
            "[capabilities]\nsmtp = { hosts = [\"smtp.example.org\"], max-messages-per-minute = 5 }",
        )
        .unwrap();
        assert_eq!(grant.excess_over(&m), None);
        let p = Permissions::intersect(&m.capabilities, &grant.capabilities).smtp;
        assert_eq!(
            p,
            Some(SmtpPermission {
                hosts: vec!["smtp.example.org".into()],
                max_messages_per_minute: 5
            })
        );
        assert!(
            Permissions::intersect(&m.capabilities, &Capabilities::default())
                .smtp
                .is_none()
        );
        let wider = Grant::from_toml(
            "[capabilities]\nsmtp = { hosts = [\"*\"], max-messages-per-minute = 31 }",
        )
        .unwrap();
        assert!(wider
            .excess_over(&m)
            .unwrap()
            .contains("max-messages-per-minute 31"));
        let e = Grant::from_toml("[capabilities]\nsmtp = { hosts = [\"Bad Host\"] }").unwrap_err();
        assert!(e.to_string().contains("capabilities.smtp.hosts[0]"), "{e}");
    }
}
