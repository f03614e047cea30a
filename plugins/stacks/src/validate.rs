//! Checks of a stack's files before anything touches the disk or the
//! engine, with messages that name the field (`services.app.ports`) or the
//! line. These catch the common mistakes early and say where they are;
//! Compose's own `config` (run by the host on the candidate files) has the
//! final word, so nothing Compose accepts is refused here beyond what
//! WakeDock needs (a project name that is its folder's).

use serde::Serialize;
use serde_yaml::Value;

/// A problem in a stack's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// `name`, `compose`, `env`, or a path inside the compose file such as
    /// `compose: services.app.ports`.
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
}

const TOP_LEVEL: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "configs", "secrets", "include", "models",
];

/// Checks the compose file's text for the stack `name`.
pub fn compose(name: &str, text: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut err = |field: &str, msg: String| errs.push(FieldError::new(field, msg));
    if text.trim().is_empty() {
        err(
            "compose",
            "is empty: a stack needs a compose file with at least one service".into(),
        );
        return errs;
    }
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            err("compose", format!("is not valid YAML{at}: {msg}"));
            return errs;
        }
    };
    let Value::Mapping(top) = &doc else {
        err("compose", "must be a mapping with a `services:` key".into());
        return errs;
    };
    for (k, _) in top {
        let key = k.as_str().unwrap_or("");
        if !TOP_LEVEL.contains(&key) && !key.starts_with("x-") {
            err(
                &format!("compose: {key}"),
                format!("unknown top-level key `{key}` (extensions start with `x-`)"),
            );
        }
    }
    if let Some(n) = top.get("name").and_then(Value::as_str) {
        if n != name && !n.contains('$') {
            err(
                "compose: name",
                format!(
                    "the project is named `{n}` but its folder is `{name}`: WakeDock runs a stack under its folder's name; remove `name:` or make it `{name}`"
                ),
            );
        }
    }
    let has_include = top.contains_key("include");
    match top.get("services") {
        None if has_include => {}
        None | Some(Value::Null) => err(
            "compose: services",
            "is missing: list at least one service".into(),
        ),
        Some(Value::Mapping(services)) => {
            if services.is_empty() && !has_include {
                err(
                    "compose: services",
                    "is empty: list at least one service".into(),
                );
            }
            for (svc, def) in services {
                let svc = svc.as_str().unwrap_or("?");
                service(svc, def, &mut err);
            }
        }
        Some(_) => err(
            "compose: services",
            "must be a mapping of service names to services".into(),
        ),
    }
    if let Some(inc) = top.get("include") {
        let paths: Vec<&str> = match inc {
            Value::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str().or_else(|| i.get("path").and_then(Value::as_str)))
                .collect(),
            _ => Vec::new(),
        };
        for p in paths {
            if p.starts_with('/') || p.split('/').any(|s| s == "..") {
                err(
                    "compose: include",
                    format!("`{p}` is outside the stack's folder: include files from inside it"),
                );
            }
        }
    }
    errs
}

fn service(name: &str, def: &Value, err: &mut impl FnMut(&str, String)) {
    let at = |f: &str| format!("compose: services.{name}{f}");
    let valid_name = !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !valid_name {
        err(
            &at(""),
            format!("`{name}` is not a service name (letters, digits, `.`, `_`, `-`)"),
        );
    }
    let Value::Mapping(m) = def else {
        if !def.is_null() {
            err(&at(""), "must be a mapping".into());
        }
        err(&at(""), "needs an `image` or a `build`".into());
        return;
    };
    if !m.contains_key("image") && !m.contains_key("build") && !m.contains_key("extends") {
        err(&at(""), "needs an `image` or a `build`".into());
    }
    if let Some(img) = m.get("image") {
        match img.as_str() {
            Some(s) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => {}
            _ => err(
                &at(".image"),
                "must be an image reference such as `nginx:1.27`".into(),
            ),
        }
    }
    if let Some(p) = m.get("ports") {
        match p {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = item.as_str() {
                        if !port_spec(s) {
                            err(
                                &at(&format!(".ports[{i}]")),
                                format!("`{s}` is not a port mapping such as `127.0.0.1:8080:80`"),
                            );
                        }
                    }
                }
            }
            _ => err(&at(".ports"), "must be a list".into()),
        }
    }
    if let Some(d) = m.get("depends_on") {
        if !matches!(d, Value::Sequence(_) | Value::Mapping(_)) {
            err(
                &at(".depends_on"),
                "must be a list of services or a mapping".into(),
            );
        }
    }
    for list_key in ["volumes", "env_file", "networks"] {
        if let Some(v) = m.get(list_key) {
            let ok = match list_key {
                "env_file" => matches!(v, Value::Sequence(_) | Value::String(_)),
                "networks" => matches!(v, Value::Sequence(_) | Value::Mapping(_)),
                _ => matches!(v, Value::Sequence(_)),
            };
            if !ok {
                err(&at(&format!(".{list_key}")), "has the wrong shape".into());
            }
        }
    }
}

/// `[host_ip:][host_port:]container_port[/proto]`, ranges allowed, and
/// `${VAR}` left for Compose.
fn port_spec(s: &str) -> bool {
    if s.contains('$') {
        return true;
    }
    let (body, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return false;
    }
    let parts: Vec<&str> = body.rsplitn(3, ':').collect();
    let port = |p: &str| {
        p.split('-')
            .all(|n| n.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)))
    };
    match parts.as_slice() {
        [c] => port(c),
        [c, h] => port(c) && (h.is_empty() || port(h)),
        [c, h, ip] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            port(c) && (h.is_empty() || port(h)) && ip.parse::<std::net::IpAddr>().is_ok()
        }
        _ => false,
    }
}

/// Checks a `.env` file: `KEY=VALUE` lines (optionally `export KEY=...`),
/// comments and blank lines.
pub fn env(text: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut open_quote: Option<(usize, char)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if let Some((start, q)) = open_quote {
            if raw.contains(q) {
                open_quote = None;
            }
            let _ = start;
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            errs.push(FieldError::new(
                "env",
                format!("line {n}: `{}` is not KEY=VALUE", shorten(raw)),
            ));
            continue;
        };
        let key = key.trim_end();
        let key_ok = !key.is_empty()
            && !key.as_bytes()[0].is_ascii_digit()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !key_ok {
            errs.push(FieldError::new(
                "env",
                format!(
                    "line {n}: `{}` is not a variable name (letters, digits, `_`)",
                    shorten(key)
                ),
            ));
        }
        let v = value.trim_start();
        for q in ['"', '\''] {
            if v.starts_with(q) && !v[1..].contains(q) {
                open_quote = Some((n, q));
            }
        }
    }
    if let Some((n, q)) = open_quote {
        errs.push(FieldError::new(
            "env",
            format!("line {n}: the value's {q} quote is never closed"),
        ));
    }
    errs
}

fn shorten(s: &str) -> String {
    let s: String = s.chars().take(60).collect();
    s
}

/// Compose's messages as field errors: `services.app.ports ...` names a
/// field; anything else is about the compose file as a whole.
pub fn from_compose(messages: &[String]) -> Vec<FieldError> {
    messages
        .iter()
        .map(|m| {
            let m = m.trim_start_matches("validating ").to_owned();
            let field = m
                .split(|c: char| c.is_whitespace() || c == ':')
                .find(|w| {
                    w.starts_with("services.")
                        || w.starts_with("networks.")
                        || w.starts_with("volumes.")
                })
                .map(|w| format!("compose: {}", w.trim_end_matches(',')))
                .unwrap_or_else(|| {
                    if m.contains(".env") || m.contains("env file") {
                        "env".to_owned()
                    } else {
                        "compose".to_owned()
                    }
                });
            FieldError::new(field, format!("Compose: {m}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_good_file_passes() {
        let ok = "services:\n  app:\n    image: app:1\n    ports: [\"127.0.0.1:8080:80\", \"9000/udp\"]\n    depends_on: { db: { condition: service_healthy } }\n  db:\n    image: postgres:16\nx-wakedock: &w {}\n";
        assert_eq!(compose("shop", ok), vec![]);
    }

    #[test]
    fn mistakes_name_their_field() {
        let bad = "services:\n  app:\n    ports: [\"80:80:80:80\"]\n  db:\n    image: \"\"\nvolums: {}\nname: other\n";
        let errs = compose("shop", bad);
        let f = fields(&errs);
        assert!(f.contains(&"compose: services.app"), "{errs:?}");
        assert!(f.contains(&"compose: services.app.ports[0]"), "{errs:?}");
        assert!(f.contains(&"compose: services.db.image"), "{errs:?}");
        assert!(f.contains(&"compose: volums"), "{errs:?}");
        assert!(f.contains(&"compose: name"), "{errs:?}");
        let yaml = compose("shop", "services:\n  app:\n   image: x\n  - y\n");
        assert!(yaml[0].message.contains("line"), "{yaml:?}");
        assert_eq!(fields(&compose("shop", "")), vec!["compose"]);
        let inc = compose("shop", "include:\n  - ../other/compose.yaml\n");
        assert_eq!(fields(&inc), vec!["compose: include"]);
    }

    #[test]
    fn env_lines() {
        assert_eq!(
            env("# c\nA=1\nexport B = two\nC=\"multi\nline\"\n\n"),
            vec![]
        );
        let errs = env("A=1\nnot a pair\n1X=2\nD='open\n");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].message.starts_with("line 2"));
        assert!(errs[1].message.starts_with("line 3"));
        assert!(errs[2].message.contains("never closed"));
    }

    #[test]
    fn composes_messages_become_fields() {
        let e = from_compose(&[
            "validating /s/compose.yaml: services.app.ports.0 must be a string".into(),
        ]);
        assert_eq!(e[0].field, "compose: services.app.ports.0");
    }
}
