//! Service definitions: what a service is, where it comes from (config file,
//! API, Docker labels), precedence between those sources, and validation
//! with messages that name the service and the field.
//!
//! Nothing here calls the SDK: the glue turns containers into
//! [`LabeledContainer`]s and hands the config/API JSON in.

use crate::schedule::{parse_utc_offset, Window};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::order;

/// Idle timeout of a service that sets none.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Wake timeout of a service that sets none.
pub const DEFAULT_WAKE_TIMEOUT_MS: u64 = 60 * 1000;
/// A wake runs inside one plugin call, which the host caps at 120 s (the
/// manifest asks for that much); leave room for the start calls.
pub const MAX_WAKE_TIMEOUT_MS: u64 = 110 * 1000;

/// Label prefix of every WakeDock label.
pub const LABEL_PREFIX: &str = "wakedock.";

// ---------------------------------------------------------------------------
// Errors

/// A definition error: `service "blog": idle_timeout: "10x" is not a duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ValidationError {
    /// The service name as written (may itself be invalid).
    pub service: String,
    /// The field (`idle_timeout`, `depends_on`...) or label
    /// (`wakedock.idle-timeout`) at fault; empty if the whole entry is.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ValidationError {
    fn new(service: &str, field: &str, message: impl Into<String>) -> Self {
        ValidationError {
            service: service.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "service \"{}\": {}", self.service, self.message)
        } else {
            write!(
                f,
                "service \"{}\": {}: {}",
                self.service, self.field, self.message
            )
        }
    }
}

impl std::error::Error for ValidationError {}

// ---------------------------------------------------------------------------
// Scalars

/// Parses a duration like `500ms`, `30s`, `10m`, `1h30m`, `2d` into
/// milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad =
        || format!("\"{text}\" is not a duration (like \"500ms\", \"30s\", \"10m\" or \"1h30m\")");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60 * 1000,
            "h" => 60 * 60 * 1000,
            "d" => 24 * 60 * 60 * 1000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Formats milliseconds the way [`parse_duration_ms`] reads them.
pub fn format_duration_ms(ms: u64) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0] != b'-'
}

pub use crate::contract::Strategy;

/// How a service's members are put to sleep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SleepMode {
    /// `docker stop` (frees memory; slower wake).
    #[default]
    Stop,
    /// `docker pause` (keeps memory; fast wake).
    Pause,
}

impl fmt::Display for SleepMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SleepMode::Stop => "stop",
            SleepMode::Pause => "pause",
        })
    }
}

impl SleepMode {
    /// Parses `stop` / `pause`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "stop" => Ok(SleepMode::Stop),
            "pause" => Ok(SleepMode::Pause),
            other => Err(format!(
                "unknown sleep_mode \"{other}\" (use \"stop\" or \"pause\")"
            )),
        }
    }
}

/// An explicit readiness rule of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The container's Docker healthcheck passes.
    DockerHealth,
    /// A TCP connection to `port` succeeds.
    Tcp {
        /// Container port.
        port: u16,
    },
    /// An HTTP GET of `path` on `port` answers (any status below 500).
    Http {
        /// Container port.
        port: u16,
        /// Starts with `/`.
        path: String,
    },
}

impl Readiness {
    /// Parses `docker-health`, `tcp:8080`, `http:8080` or `http:8080/health`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("\"{s}\" is not a readiness rule (use \"docker-health\", \"tcp:PORT\" or \"http:PORT/PATH\")")
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("\"{s}\": \"{p}\" is not a port (1-65535)")),
            Ok(p) => Ok(p),
        };
        if s == "docker-health" {
            Ok(Readiness::DockerHealth)
        } else if let Some(p) = s.strip_prefix("tcp:") {
            Ok(Readiness::Tcp { port: port(p)? })
        } else if let Some(rest) = s.strip_prefix("http:") {
            let (p, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            Ok(Readiness::Http {
                port: port(p)?,
                path: path.to_owned(),
            })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::DockerHealth => f.write_str("docker-health"),
            Readiness::Tcp { port } => write!(f, "tcp:{port}"),
            Readiness::Http { port, path } => write!(f, "http:{port}{path}"),
        }
    }
}

impl Serialize for Readiness {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Readiness {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Readiness::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The rule that decides whether a member is ready, after defaults.
/// Never "running is enough".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyRule {
    /// Docker healthcheck passes.
    DockerHealth,
    /// TCP connect; `None` = the container's first published port.
    Tcp {
        /// Port, or the first one the container exposes.
        port: Option<u16>,
    },
    /// HTTP GET.
    Http {
        /// Container port.
        port: u16,
        /// Path.
        path: String,
    },
}

/// A `key=value` label selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

impl Selector {
    /// Parses `key=value`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok(Selector {
                key: k.trim().to_owned(),
                value: v.trim().to_owned(),
            }),
            _ => Err(format!(
                "\"{s}\" is not a label selector (use \"key=value\")"
            )),
        }
    }
}

/// Where a definition came from; also the precedence order (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The config file's `services:` list.
    Config,
    /// `/api/v1/services`.
    Api,
    /// Docker labels.
    Labels,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Config => "config",
            Source::Api => "api",
            Source::Labels => "labels",
        })
    }
}

// ---------------------------------------------------------------------------
// Definitions as written

/// A service as written in the config file or sent to the API (snake_case
/// JSON). Labels are parsed into the same shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// Slug: `[a-z0-9][a-z0-9-]{0,62}`.
    #[cfg_attr(feature = "schema", schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(min_length = 1))]
    pub display_name: Option<String>,
    /// Container names. Exclusive with `selector`; one of the two is
    /// required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(min_items = 1))]
    pub members: Option<Vec<String>>,
    /// `key=value`: members are the containers carrying that label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(pattern = "^[^=]+=.*$"))]
    pub selector: Option<String>,
    /// Members started but not awaited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
    /// Members that run to completion; exit 0 counts as done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_shot: Vec<String>,
    /// member → members that must be started (and ready) first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Vec<String>>,
    /// member → `docker-health` | `tcp:PORT` | `http:PORT/PATH`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ready: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_timeout: Option<String>,
    /// `stop` (default) or `pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(pattern = "^(stop|pause)$"))]
    pub sleep_mode: Option<String>,
    /// `blocking` (default) or `dynamic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(pattern = "^(blocking|dynamic)$"))]
    pub strategy: Option<String>,
    /// The waiting page's theme: `auto` (default), `light`, `dark`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub theme: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_user_agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleepable: Option<bool>,
    /// Windows kept awake: `mon-fri 08:00-18:00` (see [`crate::schedule`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<String>,
    /// Local time of the schedule: `+01:00`; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
}

/// Parses a JSON list of service definitions (config `services:` or an API
/// body). A bad entry gives errors naming it and does not hide the others.
pub fn parse_def_list(value: &serde_json::Value) -> (Vec<ServiceDef>, Vec<ValidationError>) {
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    let items = match value {
        serde_json::Value::Null => return (defs, errors),
        serde_json::Value::Array(items) => items,
        _ => {
            errors.push(ValidationError::new("*", "services", "must be a list"));
            return (defs, errors);
        }
    };
    for (i, item) in items.iter().enumerate() {
        match parse_def(item) {
            Ok(def) => defs.push(def),
            Err(e) => errors.push(ValidationError {
                service: item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("#{i}")),
                ..e
            }),
        }
    }
    (defs, errors)
}

/// Parses one definition from JSON.
pub fn parse_def(value: &serde_json::Value) -> Result<ServiceDef, ValidationError> {
    let name = value
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_owned();
    ServiceDef::deserialize(value).map_err(|e| ValidationError::new(&name, "", e.to_string()))
}

// ---------------------------------------------------------------------------
// Validated services

/// A validated service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub display_name: String,
    /// Container names, as written (or resolved from the selector; empty for
    /// a selector service until [`Service::with_members`]).
    pub members: Vec<String>,
    pub selector: Option<Selector>,
    pub optional: BTreeSet<String>,
    pub one_shot: BTreeSet<String>,
    pub depends_on: BTreeMap<String, Vec<String>>,
    pub ready: BTreeMap<String, Readiness>,
    pub idle_timeout_ms: u64,
    pub wake_timeout_ms: u64,
    pub sleep_mode: SleepMode,
    pub strategy: Strategy,
    pub theme: Option<String>,
    pub ignore_user_agents: Vec<String>,
    pub ignore_paths: Vec<String>,
    pub sleepable: bool,
    /// Windows during which the service is kept awake.
    #[serde(serialize_with = "windows_as_text")]
    pub schedule: Vec<Window>,
    /// Minutes east of UTC of the schedule's times.
    pub utc_offset_min: i32,
    /// Which definition won.
    pub source: Source,
    /// Other sources that also define this name (lower precedence).
    pub shadowed: Vec<Source>,
}

impl ServiceDef {
    /// Validates the definition; every problem found is reported.
    pub fn validate(&self, source: Source) -> Result<Service, Vec<ValidationError>> {
        let n = self.name.as_str();
        let mut errs = Vec::new();
        let mut err = |field: &str, msg: String| errs.push(ValidationError::new(n, field, msg));

        if !is_slug(n) {
            err(
                "name",
                format!("\"{n}\" is not a slug (lowercase letters, digits and '-', at most 63)"),
            );
        }

        let selector = match (&self.members, &self.selector) {
            (Some(_), Some(_)) => {
                err("selector", "members and selector are exclusive".into());
                None
            }
            (None, Some(sel)) => match Selector::parse(sel) {
                Ok(s) => Some(s),
                Err(m) => {
                    err("selector", m);
                    None
                }
            },
            (Some(m), None) if m.is_empty() => {
                err(
                    "members",
                    "is empty: list the service's containers or give a selector".into(),
                );
                None
            }
            (None, None) => {
                err(
                    "members",
                    "is empty: list the service's containers or give a selector".into(),
                );
                None
            }
            (Some(_), None) => None,
        };
        let members = self.members.clone().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for m in &members {
            if m.trim().is_empty() {
                err("members", "contains an empty name".into());
            } else if !seen.insert(m.as_str()) {
                err("members", format!("\"{m}\" is listed twice"));
            }
        }

        let idle_timeout_ms = match &self.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT_MS,
            Some(t) => match parse_duration_ms(t) {
                Ok(0) => {
                    err("idle_timeout", "must be more than 0".into());
                    0
                }
                Ok(v) => v,
                Err(m) => {
                    err("idle_timeout", m);
                    0
                }
            },
        };
        let wake_timeout_ms = match &self.wake_timeout {
            None => DEFAULT_WAKE_TIMEOUT_MS,
            Some(t) => match parse_duration_ms(t) {
                Ok(0) => {
                    err("wake_timeout", "must be more than 0".into());
                    0
                }
                Ok(v) if v > MAX_WAKE_TIMEOUT_MS => {
                    err(
                        "wake_timeout",
                        format!("\"{t}\" is too long (at most 110s)"),
                    );
                    0
                }
                Ok(v) => v,
                Err(m) => {
                    err("wake_timeout", m);
                    0
                }
            },
        };
        let sleep_mode = match &self.sleep_mode {
            None => SleepMode::default(),
            Some(s) => SleepMode::parse(s).unwrap_or_else(|m| {
                err("sleep_mode", m);
                SleepMode::default()
            }),
        };
        let strategy = match &self.strategy {
            None => Strategy::default(),
            Some(s) => Strategy::parse(s).unwrap_or_else(|m| {
                err("strategy", m);
                Strategy::default()
            }),
        };
        if let Some(t) = &self.theme {
            if !is_slug(t) {
                err(
                    "theme",
                    format!("\"{t}\" is not a theme name (lowercase letters, digits and '-')"),
                );
            }
        }
        for ua in &self.ignore_user_agents {
            if ua.trim().is_empty() {
                err("ignore_user_agents", "contains an empty entry".into());
            }
        }
        for p in &self.ignore_paths {
            if !p.starts_with('/') {
                err("ignore_paths", format!("\"{p}\" does not start with '/'"));
            }
        }
        let mut ready = BTreeMap::new();
        for (m, r) in &self.ready {
            match Readiness::parse(r) {
                Ok(r) => {
                    ready.insert(m.clone(), r);
                }
                Err(msg) => err("ready", format!("member \"{m}\": {msg}")),
            }
        }
        let display_name = match &self.display_name {
            Some(d) if !d.trim().is_empty() => d.trim().to_owned(),
            Some(_) => {
                err("display_name", "is empty".into());
                n.to_owned()
            }
            None => n.to_owned(),
        };

        let mut schedule = Vec::new();
        for (i, w) in self.schedule.iter().enumerate() {
            match Window::parse(w) {
                Ok(w) => schedule.push(w),
                Err(m) => err(&format!("schedule[{i}]"), m),
            }
        }
        let utc_offset_min = match &self.utc_offset {
            None => 0,
            Some(o) => parse_utc_offset(o).unwrap_or_else(|m| {
                err("utc_offset", m);
                0
            }),
        };
        let service = Service {
            name: n.to_owned(),
            display_name,
            members,
            selector,
            optional: self.optional.iter().cloned().collect(),
            one_shot: self.one_shot.iter().cloned().collect(),
            depends_on: self.depends_on.clone(),
            ready,
            idle_timeout_ms,
            wake_timeout_ms,
            sleep_mode,
            strategy,
            theme: self.theme.clone(),
            ignore_user_agents: self.ignore_user_agents.clone(),
            ignore_paths: self.ignore_paths.clone(),
            sleepable: self.sleepable.unwrap_or(true),
            schedule,
            utc_offset_min,
            source,
            shadowed: Vec::new(),
        };
        // Member references can only be checked once members are known.
        if self.members.is_some() {
            errs.extend(service.check_members());
        }
        if errs.is_empty() {
            Ok(service)
        } else {
            Err(errs)
        }
    }
}

impl Service {
    /// Checks every reference to members: `optional`, `one_shot`, `ready`
    /// and `depends_on` name members; no cycles; no required member depends
    /// on an optional one; at least one member is required.
    pub fn check_members(&self) -> Vec<ValidationError> {
        let n = self.name.as_str();
        let mut errs = Vec::new();
        let known: BTreeSet<&str> = self.members.iter().map(String::as_str).collect();
        let unknown = |field: &str, m: &str| {
            ValidationError::new(n, field, format!("unknown member \"{m}\""))
        };
        for m in &self.optional {
            if !known.contains(m.as_str()) {
                errs.push(unknown("optional", m));
            }
        }
        for m in &self.one_shot {
            if !known.contains(m.as_str()) {
                errs.push(unknown("one_shot", m));
            }
        }
        for m in self.ready.keys() {
            if !known.contains(m.as_str()) {
                errs.push(unknown("ready", m));
            }
        }
        let mut refs_ok = true;
        for (m, deps) in &self.depends_on {
            if !known.contains(m.as_str()) {
                errs.push(unknown("depends_on", m));
                refs_ok = false;
            }
            for d in deps {
                if !known.contains(d.as_str()) {
                    errs.push(ValidationError::new(
                        n,
                        "depends_on",
                        format!("\"{m}\" depends on unknown member \"{d}\""),
                    ));
                    refs_ok = false;
                }
            }
        }
        if refs_ok {
            if let Err(c) = order::start_waves(&self.members, &self.depends_on) {
                errs.push(ValidationError::new(n, "depends_on", c.to_string()));
            }
        }
        for (m, deps) in &self.depends_on {
            if self.optional.contains(m) {
                continue;
            }
            for d in deps {
                if self.optional.contains(d) {
                    errs.push(ValidationError::new(
                        n,
                        "optional",
                        format!("\"{d}\" is optional but required member \"{m}\" depends on it"),
                    ));
                }
            }
        }
        if !self.members.is_empty() && self.members.iter().all(|m| self.optional.contains(m)) {
            errs.push(ValidationError::new(
                n,
                "optional",
                "every member is optional: at least one must be required",
            ));
        }
        errs
    }

    /// A selector service with its members resolved (the containers carrying
    /// the selector's label), re-validated.
    pub fn with_members(&self, mut members: Vec<String>) -> Result<Service, Vec<ValidationError>> {
        members.sort();
        members.dedup();
        let mut s = self.clone();
        s.members = members;
        if s.members.is_empty() {
            return Err(vec![ValidationError::new(
                &s.name,
                "selector",
                "no container carries the selector's label",
            )]);
        }
        let errs = s.check_members();
        if errs.is_empty() {
            Ok(s)
        } else {
            Err(errs)
        }
    }

    /// The definition as `/api/v1/services` shows it.
    pub fn definition(&self) -> crate::contract::ServiceDefinition {
        crate::contract::ServiceDefinition {
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            members: self.members.clone(),
            selector: self
                .selector
                .as_ref()
                .map(|s| format!("{}={}", s.key, s.value)),
            optional: self.optional.iter().cloned().collect(),
            one_shot: self.one_shot.iter().cloned().collect(),
            depends_on: self.depends_on.clone(),
            ready: self
                .ready
                .iter()
                .map(|(m, r)| (m.clone(), r.to_string()))
                .collect(),
            idle_timeout_ms: self.idle_timeout_ms,
            wake_timeout_ms: self.wake_timeout_ms,
            sleep_mode: self.sleep_mode,
            strategy: self.strategy,
            theme: self.theme.clone(),
            ignore_user_agents: self.ignore_user_agents.clone(),
            ignore_paths: self.ignore_paths.clone(),
            sleepable: self.sleepable,
            schedule: self.schedule.iter().map(ToString::to_string).collect(),
            utc_offset_min: self.utc_offset_min,
            source: self.source,
            shadowed: self.shadowed.clone(),
        }
    }

    /// Whether `member` is awaited on wake (not optional).
    pub fn is_required(&self, member: &str) -> bool {
        !self.optional.contains(member)
    }

    /// Whether `member` runs to completion (exit 0 = done).
    pub fn is_one_shot(&self, member: &str) -> bool {
        self.one_shot.contains(member)
    }

    /// The readiness rule of `member`: the explicit one, else docker-health
    /// if the container has a healthcheck, else TCP on its first port.
    pub fn ready_rule(&self, member: &str, has_healthcheck: bool) -> ReadyRule {
        match self.ready.get(member) {
            Some(Readiness::DockerHealth) => ReadyRule::DockerHealth,
            Some(Readiness::Tcp { port }) => ReadyRule::Tcp { port: Some(*port) },
            Some(Readiness::Http { port, path }) => ReadyRule::Http {
                port: *port,
                path: path.clone(),
            },
            None if has_healthcheck => ReadyRule::DockerHealth,
            None => ReadyRule::Tcp { port: None },
        }
    }

    /// Start waves (see [`order::start_waves`]).
    pub fn start_waves(&self) -> Vec<Vec<String>> {
        // Validated services have no cycle.
        order::start_waves(&self.members, &self.depends_on).unwrap_or_default()
    }

    /// Stop waves (reverse of the start waves).
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        let mut w = self.start_waves();
        w.reverse();
        w
    }
}

fn windows_as_text<S: serde::Serializer>(w: &[Window], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(w.iter().map(ToString::to_string))
}

// ---------------------------------------------------------------------------
// Labels

/// A container as far as label parsing cares. Stopped containers count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabeledContainer {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl LabeledContainer {
    /// Convenience constructor.
    pub fn new<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabeledContainer {
            name: name.to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// Labels that apply to the whole service (must agree across containers).
const SERVICE_LABELS: &[&str] = &[
    "display-name",
    "idle-timeout",
    "wake-timeout",
    "strategy",
    "sleep-mode",
    "theme",
    "ignore-user-agents",
    "ignore-paths",
    "sleepable",
    "schedule",
    "utc-offset",
];
/// Labels that apply to the container they are on.
const MEMBER_LABELS: &[&str] = &["depends-on", "optional", "one-shot", "ready"];
/// Labels that select the container.
const CONTROL_LABELS: &[&str] = &["enable", "service"];

/// Definitions read from labels: one per `wakedock.service` name (or
/// container name), plus the errors of services whose labels are bad (those
/// services are left out of `defs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelDefs {
    pub defs: Vec<ServiceDef>,
    pub errors: BTreeMap<String, Vec<ValidationError>>,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Compose's labels on the containers of a project.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// Groups containers with `wakedock.enable=true` into service definitions.
/// Containers with the same `wakedock.service` form one service; without it
/// the containers of one Compose project (`com.docker.compose.project`)
/// do, else the container's own name is the service name.
///
/// Members of a Compose project take their start order from Compose's own
/// `depends_on` (the `com.docker.compose.depends_on` label Compose puts on
/// every container), and a dependency with the condition
/// `service_completed_successfully` is a one-shot job; an explicit
/// `wakedock.depends-on` / `wakedock.one-shot` on a container wins.
pub fn defs_from_labels(containers: &[LabeledContainer]) -> LabelDefs {
    let mut out = LabelDefs::default();
    let mut sorted: Vec<&LabeledContainer> = containers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut groups: BTreeMap<String, Vec<&LabeledContainer>> = BTreeMap::new();
    for c in sorted {
        // A Compose stack is one service unless its labels say otherwise.
        let service = c
            .labels
            .get("wakedock.service")
            .or_else(|| c.labels.get(COMPOSE_PROJECT))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| c.name.clone());
        match c.labels.get("wakedock.enable") {
            None => continue,
            Some(v) => match parse_bool(v) {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    out.errors
                        .entry(service.clone())
                        .or_default()
                        .push(ValidationError::new(
                            &service,
                            "wakedock.enable",
                            format!("container \"{}\": \"{v}\" is not true or false", c.name),
                        ));
                    continue;
                }
            },
        }
        groups.entry(service).or_default().push(c);
    }
    for (service, members) in groups {
        match def_from_group(&service, &members) {
            Ok(def) => {
                if !out.errors.contains_key(&service) {
                    out.defs.push(def);
                }
            }
            Err(errs) => out.errors.entry(service).or_default().extend(errs),
        }
    }
    // A service with an invalid `wakedock.enable` on one container is
    // incomplete: leave it out entirely.
    let bad: BTreeSet<String> = out.errors.keys().cloned().collect();
    out.defs.retain(|d| !bad.contains(&d.name));
    out
}

fn def_from_group(
    service: &str,
    containers: &[&LabeledContainer],
) -> Result<ServiceDef, Vec<ValidationError>> {
    let mut errs = Vec::new();
    let mut def = ServiceDef {
        name: service.to_owned(),
        members: Some(Vec::new()),
        ..ServiceDef::default()
    };
    // service-wide label → (value, container that set it)
    let mut wide: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for c in containers {
        let cname = c.name.as_str();
        def.members
            .get_or_insert_with(Vec::new)
            .push(c.name.clone());
        for (key, value) in &c.labels {
            let Some(short) = key.strip_prefix(LABEL_PREFIX) else {
                continue;
            };
            let e = |msg: String| {
                ValidationError::new(service, key, format!("container \"{cname}\": {msg}"))
            };
            if CONTROL_LABELS.contains(&short) {
                continue;
            }
            if SERVICE_LABELS.contains(&short) {
                match wide.get(short) {
                    Some((prev, other)) if *prev != value.as_str() => errs.push(e(format!(
                        "\"{value}\" disagrees with \"{prev}\" on container \"{other}\""
                    ))),
                    Some(_) => {}
                    None => {
                        wide.insert(short, (value.as_str(), cname));
                    }
                }
                continue;
            }
            if MEMBER_LABELS.contains(&short) {
                match short {
                    "depends-on" => {
                        let deps = split_list(value);
                        if !deps.is_empty() {
                            def.depends_on.insert(c.name.clone(), deps);
                        }
                    }
                    "optional" | "one-shot" => match parse_bool(value) {
                        Some(true) if short == "optional" => def.optional.push(c.name.clone()),
                        Some(true) => def.one_shot.push(c.name.clone()),
                        Some(false) => {}
                        None => errs.push(e(format!("\"{value}\" is not true or false"))),
                    },
                    _ => match Readiness::parse(value) {
                        Ok(_) => {
                            def.ready.insert(c.name.clone(), value.trim().to_owned());
                        }
                        Err(m) => errs.push(e(m)),
                    },
                }
                continue;
            }
            let dashed = short.replace('_', "-");
            if dashed != short
                && (SERVICE_LABELS.contains(&dashed.as_str())
                    || MEMBER_LABELS.contains(&dashed.as_str())
                    || CONTROL_LABELS.contains(&dashed.as_str()))
            {
                errs.push(e(format!(
                    "unknown label; did you mean {LABEL_PREFIX}{dashed}?"
                )));
            }
            // Other `wakedock.*` labels belong to other features.
        }
    }
    compose_order(containers, &mut def);
    for (short, (value, cname)) in wide {
        let key = format!("{LABEL_PREFIX}{short}");
        let e = |msg: String| {
            ValidationError::new(service, &key, format!("container \"{cname}\": {msg}"))
        };
        let value = value.trim();
        match short {
            "display-name" => def.display_name = Some(value.to_owned()),
            "idle-timeout" => match parse_duration_ms(value) {
                Ok(_) => def.idle_timeout = Some(value.to_owned()),
                Err(m) => errs.push(e(m)),
            },
            "wake-timeout" => match parse_duration_ms(value) {
                Ok(_) => def.wake_timeout = Some(value.to_owned()),
                Err(m) => errs.push(e(m)),
            },
            "strategy" => match Strategy::parse(value) {
                Ok(_) => def.strategy = Some(value.to_owned()),
                Err(m) => errs.push(e(m)),
            },
            "sleep-mode" => match SleepMode::parse(value) {
                Ok(_) => def.sleep_mode = Some(value.to_owned()),
                Err(m) => errs.push(e(m)),
            },
            "theme" => def.theme = Some(value.to_owned()),
            "ignore-user-agents" => def.ignore_user_agents = split_list(value),
            "ignore-paths" => def.ignore_paths = split_list(value),
            "sleepable" => match parse_bool(value) {
                Some(b) => def.sleepable = Some(b),
                None => errs.push(e(format!("\"{value}\" is not true or false"))),
            },
            "schedule" => {
                let windows = split_list(value);
                match windows.iter().find_map(|w| Window::parse(w).err()) {
                    None => def.schedule = windows,
                    Some(m) => errs.push(e(m)),
                }
            }
            "utc-offset" => match parse_utc_offset(value) {
                Ok(_) => def.utc_offset = Some(value.to_owned()),
                Err(m) => errs.push(e(m)),
            },
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(def)
    } else {
        Err(errs)
    }
}

/// Start order and one-shot jobs from Compose's `depends_on` labels, for
/// members that do not set their own.
fn compose_order(containers: &[&LabeledContainer], def: &mut ServiceDef) {
    let members_of = |project: &str, service: &str| -> Vec<String> {
        containers
            .iter()
            .filter(|c| {
                c.labels.get(COMPOSE_PROJECT).map(String::as_str) == Some(project)
                    && c.labels.get(COMPOSE_SERVICE).map(String::as_str) == Some(service)
            })
            .map(|c| c.name.clone())
            .collect()
    };
    let explicit_one_shot: BTreeSet<String> = containers
        .iter()
        .filter(|c| c.labels.contains_key("wakedock.one-shot"))
        .map(|c| c.name.clone())
        .collect();
    for c in containers {
        let (Some(project), Some(deps)) = (
            c.labels.get(COMPOSE_PROJECT),
            c.labels.get(COMPOSE_DEPENDS_ON),
        ) else {
            continue;
        };
        let mut order = Vec::new();
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            let mut parts = dep.split(':');
            let (Some(service), condition) = (parts.next(), parts.next()) else {
                continue;
            };
            let names = members_of(project, service);
            if condition == Some("service_completed_successfully") {
                for n in &names {
                    if !explicit_one_shot.contains(n) && !def.one_shot.contains(n) {
                        def.one_shot.push(n.clone());
                    }
                }
            }
            order.extend(names);
        }
        if !order.is_empty() && !c.labels.contains_key("wakedock.depends-on") {
            def.depends_on.insert(c.name.clone(), order);
        }
    }
}

// ---------------------------------------------------------------------------
// Precedence

/// Every service, after precedence (config > api > labels).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Catalog {
    /// Services by name. A name whose winning definition is invalid is
    /// absent (no silent fallback to a lower-precedence definition).
    pub services: BTreeMap<String, Service>,
    /// Every problem found, in every source (including shadowed ones).
    pub errors: Vec<ValidationError>,
}

/// One definition of a name: its source and the validation result.
type Candidate = (Source, Result<Service, Vec<ValidationError>>);

impl Catalog {
    /// Builds the catalog from the three sources.
    pub fn build(config: &[ServiceDef], api: &[ServiceDef], labels: &LabelDefs) -> Catalog {
        let mut cat = Catalog::default();
        // name → (source, result) in precedence order
        let mut by_name: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for (source, defs) in [
            (Source::Config, config),
            (Source::Api, api),
            (Source::Labels, &labels.defs[..]),
        ] {
            let mut seen = BTreeSet::new();
            for def in defs {
                if !seen.insert(def.name.as_str()) {
                    cat.errors.push(ValidationError::new(
                        &def.name,
                        "name",
                        format!("defined twice in {source}; the first definition is used"),
                    ));
                    continue;
                }
                by_name
                    .entry(def.name.clone())
                    .or_default()
                    .push((source, def.validate(source)));
            }
        }
        for (name, errs) in &labels.errors {
            by_name
                .entry(name.clone())
                .or_default()
                .push((Source::Labels, Err(errs.clone())));
        }
        for (name, mut defs) in by_name {
            defs.sort_by_key(|(s, _)| *s);
            let shadowed: Vec<Source> = defs.iter().skip(1).map(|(s, _)| *s).collect();
            let mut iter = defs.into_iter();
            let (_, winner) = iter.next().expect("at least one definition");
            match winner {
                Ok(mut s) => {
                    s.shadowed = shadowed;
                    cat.services.insert(name, s);
                }
                Err(errs) => cat.errors.extend(errs),
            }
            for (_, loser) in iter {
                if let Err(errs) = loser {
                    cat.errors.extend(errs);
                }
            }
        }
        cat
    }

    /// The services a container belongs to (by member name or selector).
    pub fn services_of(&self, container: &LabeledContainer) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| {
                s.members.contains(&container.name)
                    || s.selector
                        .as_ref()
                        .is_some_and(|sel| container.labels.get(&sel.key) == Some(&sel.value))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Plugin configuration

/// The plugin's configuration (`init`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeConfig {
    /// The config file's `services:` list (parsed with [`parse_def_list`]
    /// so a bad entry names itself).
    #[serde(default)]
    pub services: serde_json::Value,
    /// WakeDock's own container: never put to sleep.
    #[serde(default)]
    pub self_container: Option<String>,
    /// The install's `wakedock.instance` (see [`crate::scope`]).
    #[serde(default)]
    pub instance: Option<String>,
}

impl WakeConfig {
    /// Parses the plugin configuration JSON.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        WakeConfig::deserialize(value).map_err(|e| format!("invalid wake plugin config: {e}"))
    }
}

#[cfg(test)]
mod tests;
