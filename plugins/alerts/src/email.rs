//! The e-mail channel: an SMTP server (STARTTLS, implicit TLS, or plain
//! for a relay on the same host), an optional login, a sender and
//! recipients. Pure: its settings, their checks and the letter a
//! notification becomes; the glue hands the letter to the host's `smtp`
//! capability, which builds the RFC 5322 message and speaks SMTP.
//!
//! The password is a secret like the other channels' tokens: kept, never
//! shown back (see [`crate::channel::Channel::view`]), never formatted
//! into an error.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::alert::NoteKind;
use crate::channel::Message;
use crate::rule::FieldError;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// A plain connection upgraded with STARTTLS (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host, without a login.
    None,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }

    /// The usual port of each mode.
    fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// An e-mail channel's settings (`"type": "email"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// The SMTP server's host name or address.
    pub server: String,
    /// None: the usual port of `security`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `Name <address>` or an address.
    pub from: String,
    pub to: Vec<String>,
    /// PEM certificates to trust besides the public roots (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// What a notification becomes on an e-mail channel: the server to send
/// through and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub server: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

/// `Name <a@b>` or `a@b`: one line, one `@` with text on both sides.
fn check_address(field: &str, v: &str) -> Result<(), FieldError> {
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(l), Some(r)) if l < r => &v[l + 1..r],
        _ => v.trim(),
    };
    let ok = !v.contains(['\r', '\n'])
        && addr
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
        && !addr.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "`{v}` is not an e-mail address (`name@example.org` or `Name <name@example.org>`)"
            ),
        ))
    }
}

impl Email {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }

    /// The server's host as the `smtp` allowlist must hold it.
    pub fn host(&self) -> String {
        self.server
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    /// Checks every field; the error names the first bad one.
    pub fn check(&self) -> Result<(), FieldError> {
        let host = self.host();
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        {
            return Err(FieldError::new(
                "server",
                "must be the SMTP server's host name or IP address (no scheme, no port)",
            ));
        }
        if self.port == Some(0) {
            return Err(FieldError::new("port", "must be 1 to 65535"));
        }
        check_address("from", &self.from)?;
        if self.to.is_empty() {
            return Err(FieldError::new("to", "needs at least one recipient"));
        }
        if self.to.len() > 50 {
            return Err(FieldError::new("to", "at most 50 recipients"));
        }
        for (i, to) in self.to.iter().enumerate() {
            check_address(&format!("to[{i}]"), to)?;
        }
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        match (given(&self.username), given(&self.password)) {
            (true, false) => return Err(FieldError::new("password", "is needed with a username")),
            (false, true) => return Err(FieldError::new("username", "is needed with a password")),
            (true, true) if self.security == Security::None => {
                return Err(FieldError::new(
                    "security",
                    "a login needs `starttls` or `tls`: with `none` the password would cross the network in clear",
                ))
            }
            _ => {}
        }
        if let Some(pem) = &self.ca_pem {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(FieldError::new(
                    "ca_pem",
                    "must hold PEM certificates (-----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        Ok(())
    }

    /// The letter that delivers `m`: the subject says what and how bad
    /// (`[FIRING] crash on api (critical)`), the text what fired, on which
    /// container, when, and on a resolve when it recovered.
    pub fn render(&self, m: &Message) -> Letter {
        let mut text = format!("{}\n\n{}\n\n", m.title(), m.detail);
        if m.kind != NoteKind::Test {
            text.push_str(&format!(
                "Rule:      {}\nSeverity:  {}\nContainer: {}\nFired at:  {}\n",
                m.rule,
                m.severity.as_str(),
                m.target,
                utc(m.fired_at_ms)
            ));
            if let Some(at) = m.resolved_at_ms {
                text.push_str(&format!(
                    "Resolved:  {} (recovered after {})\n",
                    utc(at),
                    humantime::format_duration(Duration::from_secs(
                        at.saturating_sub(m.fired_at_ms) / 1000
                    ))
                ));
            }
            text.push_str(&format!("Alert id:  {}\n", m.alert_id));
        }
        text.push_str("\n-- \nSent by the WakeDock alerts plugin.\n");
        Letter {
            server: self.host(),
            port: self.port(),
            security: self.security,
            username: self.username.clone().filter(|u| !u.is_empty()),
            password: self.password.clone().filter(|p| !p.is_empty()),
            ca_pem: self.ca_pem.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            subject: m.title(),
            text,
        }
    }
}

/// Unix milliseconds as `2026-12-01T20:05:00Z`.
fn utc(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Channel, Kind};
    use serde_json::json;

    fn email(v: serde_json::Value) -> Result<Channel, FieldError> {
        let mut doc = json!({"name": "mail", "type": "email", "server": "smtp.example.org",
            "from": "WakeDock <wd@example.org>", "to": ["ops@example.org"]});
        for (k, x) in v.as_object().unwrap() {
            doc[k] = x.clone();
        }
        Channel::from_json(&doc)
    }

    fn settings(c: &Channel) -> &Email {
        match &c.kind {
            Kind::Email(e) => e,
            other => panic!("not an e-mail channel: {other:?}"),
        }
    }

    fn message(kind: NoteKind) -> Message {
        Message {
            fired_at_ms: 1_764_619_500_000,
            ..crate::channel::tests::msg(kind)
        }
    }

    #[test]
    fn a_firing_mail_says_what_fired_where_and_when() {
        let c = email(json!({"username": "ops", "password": "pw"})).unwrap();
        let l = settings(&c).render(&message(NoteKind::Firing));
        assert_eq!(l.subject, "[FIRING] crash on api (critical)");
        assert!(
            l.text.contains("container api exited with code 1"),
            "{}",
            l.text
        );
        assert!(l.text.contains("Container: api"), "{}", l.text);
        assert!(
            l.text.contains("Fired at:  2025-12-01T20:05:00Z"),
            "{}",
            l.text
        );
        assert!(!l.text.contains("Resolved"), "{}", l.text);
        assert_eq!(
            (l.server.as_str(), l.port, l.security),
            ("smtp.example.org", 587, Security::Starttls)
        );
        assert_eq!(l.password.as_deref(), Some("pw"));
        assert!(!l.text.contains("pw\n") && !l.subject.contains("pw"));
    }

    #[test]
    fn a_recovery_mail_says_when_it_recovered() {
        let c = email(json!({"security": "tls"})).unwrap();
        let mut m = message(NoteKind::Resolved);
        m.detail = "container api is running again".into();
        m.resolved_at_ms = Some(m.fired_at_ms + 90_000);
        let l = settings(&c).render(&m);
        assert_eq!(l.subject, "[RESOLVED] crash on api (critical)");
        assert!(l.text.contains("running again"), "{}", l.text);
        assert!(
            l.text
                .contains("Resolved:  2025-12-01T20:06:30Z (recovered after 1m 30s)"),
            "{}",
            l.text
        );
        assert_eq!((l.port, l.username), (465, None));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |v: serde_json::Value| email(v).unwrap_err().field;
        assert_eq!(field(json!({"server": "smtp://x"})), "server");
        assert_eq!(field(json!({"server": ""})), "server");
        assert_eq!(field(json!({"port": 0})), "port");
        assert_eq!(field(json!({"from": "nobody"})), "from");
        assert_eq!(field(json!({"to": []})), "to");
        assert_eq!(field(json!({"to": ["a@b", "c"]})), "to[1]");
        assert_eq!(field(json!({"to": ["a@b\r\nBcc: x@y"]})), "to[0]");
        assert_eq!(field(json!({"username": "u"})), "password");
        assert_eq!(field(json!({"password": "p"})), "username");
        assert_eq!(
            field(json!({"security": "none", "username": "u", "password": "p"})),
            "security"
        );
        assert_eq!(field(json!({"ca_pem": "not pem"})), "ca_pem");
        assert_eq!(field(json!({"smtp_host": "x"})), "smtp_host");
        assert!(email(json!({"security": "none", "port": 2525})).is_ok());
    }
}
