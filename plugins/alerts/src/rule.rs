//! Alert rules: what they watch, what fires them, and how they notify.
//!
//! A rule is written as a [`RuleDef`] (config file or API, durations as
//! text such as `30s`); [`RuleDef::validate`] turns it into a [`Rule`] or
//! names every bad field (`rules[2].for: ...`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::selector::Selector;

/// How bad it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What fires a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Kind {
    /// A container exits unexpectedly: a non-zero code, or zero when it has
    /// a restart policy. A stop by WakeDock (wake plugin, a user) is not.
    Exit,
    /// The kernel's OOM killer ended the container.
    Oom,
    /// At least `count` unexpected exits within `window`.
    RestartLoop { count: u32, window: String },
    /// The container's Docker healthcheck reports unhealthy.
    Unhealthy,
    /// CPU above `percent` (of one core ×100 as Docker counts it).
    Cpu { percent: f64 },
    /// Memory above `percent` of its limit, or above `bytes`.
    Memory {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// At least `count` lines matching `pattern` (a regular expression,
    /// Rust `regex` syntax) within `window`. The host matches the lines
    /// (a log subscription per rule), so only matching ones reach the
    /// plugin.
    Log {
        pattern: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default = "five_minutes")]
        window: String,
    },
    /// A wake failed (any reason).
    WakeFailed,
    /// A wake ran past its wake timeout.
    WakeTimeout,
    /// A wake took longer than `threshold`.
    WakeSlow { threshold: String },
    /// The host lost the Docker engine.
    EngineUnreachable,
    /// The host lost its database.
    DatabaseUnavailable,
    /// A plugin was marked failed by the host.
    PluginFailed,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Exit => "exit",
            Kind::Oom => "oom",
            Kind::RestartLoop { .. } => "restart-loop",
            Kind::Unhealthy => "unhealthy",
            Kind::Cpu { .. } => "cpu",
            Kind::Memory { .. } => "memory",
            Kind::Log { .. } => "log",
            Kind::WakeFailed => "wake-failed",
            Kind::WakeTimeout => "wake-timeout",
            Kind::WakeSlow { .. } => "wake-slow",
            Kind::EngineUnreachable => "engine-unreachable",
            Kind::DatabaseUnavailable => "database-unavailable",
            Kind::PluginFailed => "plugin-failed",
        }
    }

    /// What the rule's targets are.
    pub fn scope(&self) -> TargetKind {
        match self {
            Kind::Exit
            | Kind::Oom
            | Kind::RestartLoop { .. }
            | Kind::Unhealthy
            | Kind::Cpu { .. }
            | Kind::Memory { .. }
            | Kind::Log { .. } => TargetKind::Container,
            Kind::WakeFailed | Kind::WakeTimeout | Kind::WakeSlow { .. } => TargetKind::Service,
            Kind::EngineUnreachable | Kind::DatabaseUnavailable | Kind::PluginFailed => {
                TargetKind::Host
            }
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Container,
    /// Wake services.
    Service,
    /// The host itself (targets `engine`, `database`, `plugin:<name>`).
    Host,
}

/// A rule as written. In JSON its kind's fields sit next to the common
/// ones (`{"name": "loop", "kind": "restart-loop", "count": 3, ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct RuleDef {
    pub name: String,
    pub kind: Kind,
    pub selector: Selector,
    pub severity: Severity,
    /// The condition must hold this long before the rule fires.
    pub for_: Option<String>,
    /// While firing, notify again this often.
    pub resend: Option<String>,
    /// At most one notification per target this often (a flapping
    /// container does not spam); the last state is sent when it ends.
    pub cooldown: Option<String>,
    /// Channel names; empty: every channel.
    pub channels: Vec<String>,
    pub enabled: bool,
}

/// The fields every rule has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    name: String,
    #[serde(default)]
    selector: Selector,
    #[serde(default)]
    severity: Severity,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooldown: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

const COMMON_FIELDS: [&str; 8] = [
    "name", "selector", "severity", "for", "resend", "cooldown", "channels", "enabled",
];

impl RuleDef {
    /// Reads a rule document; the error names the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, FieldError> {
        let obj = v
            .as_object()
            .ok_or_else(|| FieldError::new("", "a rule is an object"))?;
        let (mut common, mut kind) = (serde_json::Map::new(), serde_json::Map::new());
        for (k, val) in obj {
            if COMMON_FIELDS.contains(&k.as_str()) {
                common.insert(k.clone(), val.clone());
            } else {
                kind.insert(k.clone(), val.clone());
            }
        }
        let c: Common = serde_json::from_value(common.into()).map_err(|e| serde_error(&e))?;
        let kind_v = serde_json::Value::Object(kind);
        let kind: Kind = serde_json::from_value(kind_v.clone()).map_err(|e| serde_error(&e))?;
        // serde lets fields through next to a kind that has none: a
        // field the parsed kind does not give back was not one of its own.
        let known = serde_json::to_value(&kind).unwrap_or_default();
        if let Some(extra) = kind_v
            .as_object()
            .and_then(|o| o.keys().find(|k| known.get(k.as_str()).is_none()))
        {
            return Err(FieldError::new(
                extra.clone(),
                format!("unknown field `{extra}` for a `{}` rule", kind.name()),
            ));
        }
        Ok(RuleDef {
            name: c.name,
            kind,
            selector: c.selector,
            severity: c.severity,
            for_: c.for_,
            resend: c.resend,
            cooldown: c.cooldown,
            channels: c.channels,
            enabled: c.enabled,
        })
    }
}

impl TryFrom<serde_json::Value> for RuleDef {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        RuleDef::from_json(&v).map_err(|e| e.to_string())
    }
}

impl From<RuleDef> for serde_json::Value {
    fn from(r: RuleDef) -> Self {
        let common = Common {
            name: r.name,
            selector: r.selector,
            severity: r.severity,
            for_: r.for_,
            resend: r.resend,
            cooldown: r.cooldown,
            channels: r.channels,
            enabled: r.enabled,
        };
        let mut v = serde_json::to_value(common).unwrap_or_default();
        if let (Some(o), Ok(serde_json::Value::Object(k))) =
            (v.as_object_mut(), serde_json::to_value(&r.kind))
        {
            o.extend(k);
        }
        v
    }
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn five_minutes() -> String {
    "5m".into()
}

/// Longest `pattern` of a `log` rule (the host's limit for a log
/// subscription's pattern).
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Checks a `log` rule's pattern as the host will: `regex` syntax, at most
/// [`MAX_PATTERN_BYTES`], a compiled program of at most 1 MiB.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty (a rule on every line has no use)".into());
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("is longer than {MAX_PATTERN_BYTES} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| format!("`{pattern}` is not a regular expression: {e}"))
}

/// A bad field of a rule or channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error under `prefix` (`rules[2]`).
    pub fn under(self, prefix: &str) -> Self {
        FieldError {
            field: if self.field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", self.field)
            },
            message: self.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Milliseconds of a duration such as `30s`, `5m`, `1h 30m`, `500ms`.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("`{text}` is not a duration ({e}; e.g. `30s`, `5m`, `1h`)"))
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub def: RuleDef,
    pub for_ms: u64,
    pub resend_ms: Option<u64>,
    pub cooldown_ms: u64,
    /// `restart-loop` and `log`: the window; `wake-slow`: the threshold.
    pub window_ms: u64,
}

/// A rate's `count` (at least `min`) and `window` (longer than 0): the
/// window in ms (0 when it is bad, with its error in `errs`).
fn check_rate(count: u32, min: u32, window: &str, errs: &mut Vec<FieldError>) -> u64 {
    if count < min {
        errs.push(FieldError::new("count", format!("must be at least {min}")));
    }
    match parse_ms(window) {
        Ok(0) => {
            errs.push(FieldError::new("window", "must be longer than 0"));
            0
        }
        Ok(ms) => ms,
        Err(m) => {
            errs.push(FieldError::new("window", m));
            0
        }
    }
}

/// Rule and channel names: what URLs and storage keys can carry.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a name (1 to 64 letters, digits, `-`, `_` or `.`)"
        ))
    }
}

impl RuleDef {
    pub fn validate(&self) -> Result<Rule, Vec<FieldError>> {
        let mut errs = Vec::new();
        if let Err(m) = check_name(&self.name) {
            errs.push(FieldError::new("name", m));
        }
        let mut dur = |field: &str, v: &Option<String>| -> Option<u64> {
            match v.as_deref().map(parse_ms) {
                None => None,
                Some(Ok(ms)) => Some(ms),
                Some(Err(m)) => {
                    errs.push(FieldError::new(field, m));
                    None
                }
            }
        };
        let for_ms = dur("for", &self.for_).unwrap_or(0);
        let resend_ms = dur("resend", &self.resend);
        let cooldown_ms = dur("cooldown", &self.cooldown).unwrap_or(0);
        if resend_ms == Some(0) {
            errs.push(FieldError::new("resend", "must be longer than 0"));
        }
        let mut window_ms = 0;
        match &self.kind {
            Kind::RestartLoop { count, window } => {
                window_ms = check_rate(*count, 2, window, &mut errs);
            }
            Kind::Log {
                pattern,
                count,
                window,
            } => {
                if let Err(m) = check_pattern(pattern) {
                    errs.push(FieldError::new("pattern", m));
                }
                window_ms = check_rate(*count, 1, window, &mut errs);
            }
            Kind::WakeSlow { threshold } => match parse_ms(threshold) {
                Ok(ms) => window_ms = ms,
                Err(m) => errs.push(FieldError::new("threshold", m)),
            },
            Kind::Cpu { percent } if !(*percent > 0.0 && percent.is_finite()) => {
                errs.push(FieldError::new("percent", "must be a number above 0"));
            }
            Kind::Memory { percent, bytes } => match (percent, bytes) {
                (None, None) | (Some(_), Some(_)) => errs.push(FieldError::new(
                    "percent",
                    "give exactly one of `percent` (of the memory limit) and `bytes`",
                )),
                (Some(p), None) if !(*p > 0.0 && *p <= 100.0) => {
                    errs.push(FieldError::new(
                        "percent",
                        "must be above 0 and at most 100",
                    ));
                }
                _ => {}
            },
            _ => {}
        }
        for (field, m) in self.selector.problems() {
            errs.push(FieldError::new(format!("selector.{field}"), m));
        }
        if self.kind.scope() == TargetKind::Host && self.selector != Selector::default() {
            errs.push(FieldError::new(
                "selector",
                format!(
                    "a `{}` rule watches the host: it takes no selector",
                    self.kind.name()
                ),
            ));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if let Err(m) = check_name(c) {
                errs.push(FieldError::new(format!("channels[{i}]"), m));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Rule {
            def: self.clone(),
            for_ms,
            resend_ms,
            cooldown_ms,
            window_ms,
        })
    }
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn severity(&self) -> Severity {
        self.def.severity
    }
}

/// Parses a list of rule documents (JSON values), naming bad entries by
/// their index under `at` (`rules`).
pub fn parse_rules(values: &[serde_json::Value], at: &str) -> (Vec<Rule>, Vec<FieldError>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut errs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let prefix = format!("{at}[{i}]");
        match parse_rule(v) {
            Ok(r) if rules.iter().any(|x| x.name() == r.name()) => errs.push(FieldError::new(
                format!("{prefix}.name"),
                format!("another rule is named `{}`", r.name()),
            )),
            Ok(r) => rules.push(r),
            Err(es) => errs.extend(es.into_iter().map(|e| e.under(&prefix))),
        }
    }
    (rules, errs)
}

/// One rule document.
pub fn parse_rule(v: &serde_json::Value) -> Result<Rule, Vec<FieldError>> {
    RuleDef::from_json(v).map_err(|e| vec![e])?.validate()
}

/// A serde error as a field error: serde's messages name the unknown or
/// missing field, and the kind when it is unknown.
pub fn serde_error(e: &serde_json::Error) -> FieldError {
    let msg = e.to_string();
    let field = if msg.contains("unknown variant") || msg.contains("missing field `kind`") {
        "kind".to_owned()
    } else if let Some(f) = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
    {
        f.to_owned()
    } else {
        String::new()
    };
    FieldError::new(field, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_good_rule_parses_with_its_durations() {
        let r = parse_rule(&json!({
            "name": "crash", "kind": "restart-loop", "count": 3, "window": "5m",
            "selector": {"names": ["api-*"]}, "severity": "critical",
            "for": "10s", "resend": "1h", "cooldown": "1m", "channels": ["ops"]
        }))
        .unwrap();
        assert_eq!(r.for_ms, 10_000);
        assert_eq!(r.resend_ms, Some(3_600_000));
        assert_eq!(r.cooldown_ms, 60_000);
        assert_eq!(r.window_ms, 300_000);
        assert_eq!(r.severity(), Severity::Critical);
        assert_eq!(r.def.kind.name(), "restart-loop");
    }

    #[test]
    fn bad_rules_name_their_fields() {
        let (rules, errs) = parse_rules(
            &[
                json!({"name": "ok", "kind": "exit"}),
                json!({"name": "b", "kind": "exit", "for": "5 parsecs"}),
                json!({"name": "c", "kind": "explode"}),
                json!({"name": "d", "kind": "exit", "colour": "red"}),
                json!({"name": "e", "kind": "restart-loop", "count": 1, "window": "0s"}),
                json!({"name": "ok", "kind": "oom"}),
                json!({"name": "g", "kind": "engine-unreachable", "selector": {"names": ["x"]}}),
                json!({"name": "h", "kind": "memory"}),
                json!({"name": "bad name!", "kind": "exit"}),
                json!({"name": "j", "kind": "log", "pattern": "(unclosed"}),
                json!({"name": "k", "kind": "log", "pattern": "x", "count": 0, "window": "soon"}),
                json!({"name": "l", "kind": "log"}),
            ],
            "rules",
        );
        assert_eq!(rules.len(), 1);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rules[1].for",
                "rules[2].kind",
                "rules[3].colour",
                "rules[4].count",
                "rules[4].window",
                "rules[5].name",
                "rules[6].selector",
                "rules[7].percent",
                "rules[8].name",
                "rules[9].pattern",
                "rules[10].count",
                "rules[10].window",
                "rules[11].pattern",
            ],
            "{errs:?}"
        );
        assert!(errs[1].message.contains("explode"), "{}", errs[1]);
        assert!(
            errs[9].message.contains("not a regular expression"),
            "{}",
            errs[9]
        );
    }

    #[test]
    fn a_log_rule_has_a_pattern_and_a_rate() {
        let r = parse_rule(&json!({"name": "boom", "kind": "log", "pattern": "GET /boom", "count": 3, "window": "2m"}))
            .unwrap();
        assert_eq!(r.window_ms, 120_000);
        assert_eq!(r.def.kind.scope(), TargetKind::Container);
        // One match within five minutes unless told otherwise.
        let d = parse_rule(&json!({"name": "p", "kind": "log", "pattern": "panic"})).unwrap();
        assert_eq!(
            d.def.kind,
            Kind::Log {
                pattern: "panic".into(),
                count: 1,
                window: "5m".into()
            }
        );
        assert_eq!(d.window_ms, 300_000);
        let huge = "x".repeat(MAX_PATTERN_BYTES + 1);
        let e = parse_rule(&json!({"name": "h", "kind": "log", "pattern": huge})).unwrap_err();
        assert_eq!(e[0].field, "pattern");
    }
}
