//! Notification channels: webhook (JSON, optional body template), ntfy,
//! Gotify, Discord, Slack and Telegram, each one HTTP POST to a base URL
//! the admin configures (so a self-hosted ntfy or Gotify, or a test's
//! loopback receiver, works like the public services); and e-mail over
//! SMTP ([`crate::email`]).
//!
//! Secrets (tokens, webhook URLs, header values, SMTP passwords) are kept but never shown
//! back: [`Channel::view`] names which are set, never their values, and
//! nothing here formats a secret into an error or log message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert::NoteKind;
use crate::email::{Email, Letter};
use crate::rule::{check_name, FieldError, Severity};

/// A channel's kind and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Kind {
    /// POST of a JSON document to `url` (secret: it often carries a token).
    Webhook {
        url: String,
        /// A JSON document with `{{placeholders}}` (see [`PLACEHOLDERS`]);
        /// none: the default document.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_template: Option<String>,
        /// Extra headers (values are secrets).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    Ntfy {
        #[serde(default = "ntfy_base")]
        base_url: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Gotify {
        base_url: String,
        /// The application token.
        token: String,
    },
    Discord {
        webhook_url: String,
    },
    Slack {
        webhook_url: String,
    },
    Telegram {
        #[serde(default = "telegram_base")]
        base_url: String,
        bot_token: String,
        chat_id: String,
    },
    /// E-mail through an SMTP server (the `smtp` capability, not HTTP).
    Email(Email),
}

fn ntfy_base() -> String {
    "https://ntfy.sh".into()
}

fn telegram_base() -> String {
    "https://api.telegram.org".into()
}

/// The placeholders of a webhook's `body_template`; each is replaced by
/// its value escaped for a JSON string.
pub const PLACEHOLDERS: [&str; 9] = [
    "status",
    "rule",
    "severity",
    "target",
    "title",
    "detail",
    "alert_id",
    "fired_at",
    "resolved_at",
];

/// A channel as written (`{"name": "ops", "type": "slack", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
}

impl TryFrom<serde_json::Value> for Channel {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        Channel::from_json(&v).map_err(|e| e.to_string())
    }
}

impl From<Channel> for serde_json::Value {
    fn from(c: Channel) -> Self {
        let mut v = serde_json::to_value(&c.kind).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("name".into(), c.name.into());
        }
        v
    }
}

/// What the API and the UI show of a channel: never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The host notifications go to.
    pub host: String,
    /// Settings that are not secret (base URL, topic, chat id).
    pub settings: BTreeMap<String, String>,
    /// Secret fields that are set (values never shown).
    pub secrets_set: Vec<String>,
}

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub kind: NoteKind,
    pub rule: String,
    pub severity: Severity,
    pub target: String,
    pub detail: String,
    pub alert_id: String,
    pub fired_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
}

impl Message {
    pub fn test(channel: &str, now: u64) -> Self {
        Message {
            kind: NoteKind::Test,
            rule: "test".into(),
            severity: Severity::Info,
            target: channel.into(),
            detail: format!("A test notification from WakeDock to channel {channel}."),
            alert_id: "test".into(),
            fired_at_ms: now,
            resolved_at_ms: None,
        }
    }

    pub fn title(&self) -> String {
        match self.kind {
            NoteKind::Test => "[TEST] WakeDock test notification".into(),
            k => format!(
                "[{}] {} on {} ({})",
                match k {
                    NoteKind::Resolved => "RESOLVED",
                    NoteKind::Resend => "STILL FIRING",
                    _ => "FIRING",
                },
                self.rule,
                self.target,
                self.severity.as_str()
            ),
        }
    }

    /// Title and detail, for channels that take one text.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.title(), self.detail)
    }

    fn status(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// An HTTP request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What delivers a notification: an HTTP request, or a letter for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    Http(Outgoing),
    Email(Letter),
}

/// `scheme://host[:port]/...` → host (lowercase), if the URL is http(s).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

fn trim_base(base: &str) -> &str {
    base.trim_end_matches('/')
}

impl Channel {
    /// Reads a channel document; the error names the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, FieldError> {
        let mut obj = v
            .as_object()
            .cloned()
            .ok_or_else(|| FieldError::new("", "a channel is an object"))?;
        let name = match obj.remove("name") {
            Some(serde_json::Value::String(n)) => n,
            _ => return Err(FieldError::new("name", "missing (a string)")),
        };
        let kind_v = serde_json::Value::Object(obj);
        let kind: Kind = serde_json::from_value(kind_v.clone()).map_err(|e| {
            let mut fe = crate::rule::serde_error(&e);
            if fe.field == "kind" {
                fe.field = "type".into();
            }
            if e.to_string().contains("missing field `type`")
                || e.to_string().contains("unknown variant")
            {
                fe.field = "type".into();
            }
            fe
        })?;
        let c = Channel { name, kind };
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), FieldError> {
        check_name(&self.name).map_err(|m| FieldError::new("name", m))?;
        let url_field = |field: &str, url: &str| -> Result<(), FieldError> {
            url_host(url).map(|_| ()).ok_or_else(|| {
                FieldError::new(
                    field,
                    "must be an http:// or https:// URL with a host and no credentials",
                )
            })
        };
        let nonempty = |field: &str, v: &str| {
            if v.trim().is_empty() {
                Err(FieldError::new(field, "must not be empty"))
            } else {
                Ok(())
            }
        };
        match &self.kind {
            Kind::Webhook {
                url, body_template, ..
            } => {
                url_field("url", url)?;
                if let Some(t) = body_template {
                    let sample = Message::test("sample", 0);
                    let body = fill(t, &sample);
                    serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
                        FieldError::new(
                            "body_template",
                            format!("is not a JSON document once filled in: {e}"),
                        )
                    })?;
                }
            }
            Kind::Ntfy {
                base_url, topic, ..
            } => {
                url_field("base_url", base_url)?;
                nonempty("topic", topic)?;
            }
            Kind::Gotify { base_url, token } => {
                url_field("base_url", base_url)?;
                nonempty("token", token)?;
            }
            Kind::Discord { webhook_url } | Kind::Slack { webhook_url } => {
                url_field("webhook_url", webhook_url)?;
            }
            Kind::Telegram {
                base_url,
                bot_token,
                chat_id,
            } => {
                url_field("base_url", base_url)?;
                nonempty("bot_token", bot_token)?;
                nonempty("chat_id", chat_id)?;
            }
            Kind::Email(e) => e.check()?,
        }
        Ok(())
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Webhook { .. } => "webhook",
            Kind::Ntfy { .. } => "ntfy",
            Kind::Gotify { .. } => "gotify",
            Kind::Discord { .. } => "discord",
            Kind::Slack { .. } => "slack",
            Kind::Telegram { .. } => "telegram",
            Kind::Email(_) => "email",
        }
    }

    /// The URL everything is sent to (may hold a secret: never shown);
    /// none for e-mail.
    fn target_url(&self) -> Option<&str> {
        Some(match &self.kind {
            Kind::Webhook { url, .. } => url,
            Kind::Ntfy { base_url, .. }
            | Kind::Gotify { base_url, .. }
            | Kind::Telegram { base_url, .. } => base_url,
            Kind::Discord { webhook_url } | Kind::Slack { webhook_url } => webhook_url,
            Kind::Email(_) => return None,
        })
    }

    /// The host notifications go to (an SMTP server for e-mail).
    pub fn host(&self) -> String {
        match &self.kind {
            Kind::Email(e) => e.host(),
            _ => self.target_url().and_then(url_host).unwrap_or_default(),
        }
    }

    /// The host the `http-outbound` allowlist must hold, if it sends HTTP.
    pub fn http_host(&self) -> Option<String> {
        self.target_url().and_then(url_host)
    }

    /// The server the `smtp` allowlist must hold, if it sends e-mail.
    pub fn smtp_host(&self) -> Option<String> {
        match &self.kind {
            Kind::Email(e) => Some(e.host()),
            _ => None,
        }
    }

    pub fn view(&self) -> ChannelView {
        let mut settings = BTreeMap::new();
        let mut secrets = Vec::new();
        match &self.kind {
            Kind::Webhook {
                body_template,
                headers,
                ..
            } => {
                secrets.push("url".to_owned());
                if let Some(t) = body_template {
                    settings.insert("body_template".into(), t.clone());
                }
                secrets.extend(headers.keys().map(|h| format!("headers.{h}")));
            }
            Kind::Ntfy {
                base_url,
                topic,
                token,
            } => {
                settings.insert("base_url".into(), base_url.clone());
                settings.insert("topic".into(), topic.clone());
                if token.is_some() {
                    secrets.push("token".into());
                }
            }
            Kind::Gotify { base_url, .. } => {
                settings.insert("base_url".into(), base_url.clone());
                secrets.push("token".into());
            }
            Kind::Discord { .. } | Kind::Slack { .. } => secrets.push("webhook_url".into()),
            Kind::Telegram {
                base_url, chat_id, ..
            } => {
                settings.insert("base_url".into(), base_url.clone());
                settings.insert("chat_id".into(), chat_id.clone());
                secrets.push("bot_token".into());
            }
            Kind::Email(e) => {
                settings.insert("server".into(), e.host());
                settings.insert("port".into(), e.port().to_string());
                settings.insert("security".into(), e.security.as_str().into());
                settings.insert("from".into(), e.from.clone());
                settings.insert("to".into(), e.to.join(", "));
                if let Some(u) = e.username.as_deref().filter(|u| !u.is_empty()) {
                    settings.insert("username".into(), u.to_owned());
                }
                if e.ca_pem.is_some() {
                    settings.insert("ca_pem".into(), "(set)".into());
                }
                if e.password.as_deref().is_some_and(|p| !p.is_empty()) {
                    secrets.push("password".into());
                }
            }
        }
        ChannelView {
            name: self.name.clone(),
            kind: self.type_name().into(),
            host: self.host(),
            settings,
            secrets_set: secrets,
        }
    }

    /// An update from the API may leave secrets empty (or out): they keep
    /// the values of `old`, so a form never has to show them.
    pub fn keep_secrets_of(&mut self, old: &Channel) {
        let keep = |new: &mut String, old: &str| {
            if new.is_empty() {
                *new = old.to_owned();
            }
        };
        match (&mut self.kind, &old.kind) {
            (
                Kind::Webhook { url, headers, .. },
                Kind::Webhook {
                    url: ou,
                    headers: oh,
                    ..
                },
            ) => {
                keep(url, ou);
                for (k, v) in headers.iter_mut() {
                    if let Some(o) = oh.get(k) {
                        keep(v, o);
                    }
                }
            }
            (Kind::Ntfy { token, .. }, Kind::Ntfy { token: ot, .. })
                if token.as_deref().is_none_or(str::is_empty) =>
            {
                token.clone_from(ot);
            }
            (Kind::Gotify { token, .. }, Kind::Gotify { token: ot, .. }) => keep(token, ot),
            (Kind::Discord { webhook_url }, Kind::Discord { webhook_url: o })
            | (Kind::Slack { webhook_url }, Kind::Slack { webhook_url: o }) => keep(webhook_url, o),
            (Kind::Telegram { bot_token, .. }, Kind::Telegram { bot_token: o, .. }) => {
                keep(bot_token, o)
            }
            (Kind::Email(e), Kind::Email(o)) if e.password.as_deref().is_none_or(str::is_empty) => {
                e.password.clone_from(&o.password);
            }
            _ => {}
        }
    }

    /// What delivers `m` on this channel.
    pub fn render(&self, m: &Message) -> Rendered {
        match self.render_http(m) {
            Ok(post) => Rendered::Http(post),
            Err(email) => Rendered::Email(email.render(m)),
        }
    }

    /// The request that delivers `m` on an HTTP channel, or the settings
    /// of an e-mail channel (rendered by [`Email::render`]).
    fn render_http(&self, m: &Message) -> Result<Outgoing, &Email> {
        let json = |v: serde_json::Value| v.to_string().into_bytes();
        let ct = || ("content-type".to_owned(), "application/json".to_owned());
        let priority = match (m.kind, m.severity) {
            (NoteKind::Resolved | NoteKind::Test, _) | (_, Severity::Info) => 3,
            (_, Severity::Warning) => 4,
            (_, Severity::Critical) => 5,
        };
        Ok(match &self.kind {
            Kind::Webhook {
                url,
                body_template,
                headers,
            } => {
                let body = match body_template {
                    Some(t) => fill(t, m).into_bytes(),
                    None => json(serde_json::json!({
                        "status": m.status(),
                        "rule": m.rule,
                        "severity": m.severity.as_str(),
                        "target": m.target,
                        "title": m.title(),
                        "detail": m.detail,
                        "alert_id": m.alert_id,
                        "fired_at_ms": m.fired_at_ms,
                        "resolved_at_ms": m.resolved_at_ms,
                    })),
                };
                let mut h = vec![ct()];
                h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                Outgoing {
                    url: url.clone(),
                    headers: h,
                    body,
                }
            }
            // ntfy's JSON publishing: POST to the root URL, topic in the body.
            Kind::Ntfy {
                base_url,
                topic,
                token,
            } => {
                let mut h = vec![ct()];
                if let Some(t) = token.as_deref().filter(|t| !t.is_empty()) {
                    h.push(("authorization".into(), format!("Bearer {t}")));
                }
                let tags = match m.kind {
                    NoteKind::Resolved => vec!["white_check_mark"],
                    NoteKind::Test => vec!["test_tube"],
                    _ => vec!["rotating_light"],
                };
                Outgoing {
                    url: format!("{}/", trim_base(base_url)),
                    headers: h,
                    body: json(serde_json::json!({
                        "topic": topic,
                        "title": m.title(),
                        "message": m.detail,
                        "priority": priority,
                        "tags": tags,
                    })),
                }
            }
            Kind::Gotify { base_url, token } => Outgoing {
                url: format!("{}/message", trim_base(base_url)),
                headers: vec![ct(), ("x-gotify-key".into(), token.clone())],
                body: json(serde_json::json!({
                    "title": m.title(),
                    "message": m.detail,
                    "priority": priority * 2,
                })),
            },
            Kind::Discord { webhook_url } => {
                let color = match m.kind {
                    NoteKind::Resolved => 0x2e_cc_71,
                    NoteKind::Test => 0x34_98_db,
                    _ if m.severity == Severity::Critical => 0xe7_4c_3c,
                    _ => 0xf3_9c_12,
                };
                Outgoing {
                    url: webhook_url.clone(),
                    headers: vec![ct()],
                    body: json(serde_json::json!({
                        "content": m.title(),
                        "embeds": [{"title": m.title(), "description": m.detail, "color": color}],
                        "allowed_mentions": {"parse": []},
                    })),
                }
            }
            Kind::Slack { webhook_url } => Outgoing {
                url: webhook_url.clone(),
                headers: vec![ct()],
                body: json(serde_json::json!({
                    "text": m.text(),
                    "blocks": [
                        {"type": "header", "text": {"type": "plain_text", "text": m.title()}},
                        {"type": "section", "text": {"type": "plain_text", "text": m.detail}},
                    ],
                })),
            },
            Kind::Telegram {
                base_url,
                bot_token,
                chat_id,
            } => Outgoing {
                url: format!("{}/bot{bot_token}/sendMessage", trim_base(base_url)),
                headers: vec![ct()],
                body: json(serde_json::json!({
                    "chat_id": chat_id,
                    "text": m.text(),
                    "disable_web_page_preview": true,
                })),
            },
            Kind::Email(e) => return Err(e),
        })
    }

    /// Whether the receiver's answer means delivered. Telegram answers
    /// `{"ok": false}` with a 200 for some refusals.
    pub fn accepted(&self, status: u16, body: &[u8]) -> Result<(), String> {
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("the receiver answered {status}: {}", text.trim()));
        }
        if let Kind::Telegram { .. } = self.kind {
            let ok = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool));
            if ok == Some(false) {
                return Err("Telegram answered ok: false".into());
            }
        }
        Ok(())
    }
}

/// `template` with its placeholders filled in for `m`.
pub fn fill(template: &str, m: &Message) -> String {
    let mut out = template.to_owned();
    for p in PLACEHOLDERS {
        let value = match p {
            "status" => m.status().to_owned(),
            "rule" => m.rule.clone(),
            "severity" => m.severity.as_str().to_owned(),
            "target" => m.target.clone(),
            "title" => m.title(),
            "detail" => m.detail.clone(),
            "alert_id" => m.alert_id.clone(),
            "fired_at" => m.fired_at_ms.to_string(),
            _ => m.resolved_at_ms.map(|t| t.to_string()).unwrap_or_default(),
        };
        out = out.replace(&format!("{{{{{p}}}}}"), &json_escape(&value));
    }
    out
}

/// The fields that hold secrets, in any channel kind.
pub const SECRET_FIELDS: [&str; 6] = [
    "url",
    "webhook_url",
    "token",
    "bot_token",
    "headers",
    "password",
];

/// A channel document (as written in the config file) with its secrets
/// replaced by `(secret)`, for showing it.
pub fn redact_json(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        for k in SECRET_FIELDS {
            if let Some(x) = o.get_mut(k) {
                *x = serde_json::Value::String("(secret)".into());
            }
        }
    }
}

/// Parses a list of channel documents, naming bad entries under `at`.
pub fn parse_channels(values: &[serde_json::Value], at: &str) -> (Vec<Channel>, Vec<FieldError>) {
    let mut out: Vec<Channel> = Vec::new();
    let mut errs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let prefix = format!("{at}[{i}]");
        match Channel::from_json(v) {
            Ok(c) if out.iter().any(|x| x.name == c.name) => errs.push(FieldError::new(
                format!("{prefix}.name"),
                format!("another channel is named `{}`", c.name),
            )),
            Ok(c) => out.push(c),
            Err(e) => errs.push(e.under(&prefix)),
        }
    }
    (out, errs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A critical `crash` notification about container `api`.
    pub(crate) fn msg(kind: NoteKind) -> Message {
        Message {
            kind,
            rule: "crash".into(),
            severity: Severity::Critical,
            target: "api".into(),
            detail: "container api exited with code 1".into(),
            alert_id: "a1".into(),
            fired_at_ms: 1000,
            resolved_at_ms: None,
        }
    }

    impl Channel {
        fn post(&self, m: &Message) -> Outgoing {
            self.render_http(m).expect("an HTTP channel")
        }
    }

    fn ch(v: Value) -> Channel {
        Channel::from_json(&v).unwrap()
    }

    fn body(o: &Outgoing) -> Value {
        serde_json::from_slice(&o.body).unwrap()
    }

    #[test]
    fn each_kind_renders_what_its_service_accepts() {
        let m = msg(NoteKind::Firing);
        let o = ch(json!({"name": "n", "type": "ntfy", "base_url": "http://127.0.0.1:9/", "topic": "ops", "token": "tk_1"})).post(&m);
        assert_eq!(o.url, "http://127.0.0.1:9/");
        assert!(o
            .headers
            .contains(&("authorization".into(), "Bearer tk_1".into())));
        let b = body(&o);
        assert_eq!(
            (b["topic"].as_str(), b["priority"].as_u64()),
            (Some("ops"), Some(5))
        );
        assert_eq!(b["message"], "container api exited with code 1");

        let o = ch(
            json!({"name": "g", "type": "gotify", "base_url": "http://127.0.0.1:9", "token": "T"}),
        )
        .post(&m);
        assert_eq!(o.url, "http://127.0.0.1:9/message");
        assert!(o.headers.contains(&("x-gotify-key".into(), "T".into())));
        assert_eq!(body(&o)["title"], "[FIRING] crash on api (critical)");

        let o = ch(json!({"name": "d", "type": "discord", "webhook_url": "http://127.0.0.1:9/api/webhooks/1/x"})).post(&m);
        assert_eq!(body(&o)["embeds"][0]["description"], m.detail);

        let o = ch(
            json!({"name": "s", "type": "slack", "webhook_url": "http://127.0.0.1:9/services/x"}),
        )
        .post(&m);
        assert!(body(&o)["text"]
            .as_str()
            .unwrap()
            .contains("exited with code 1"));

        let o = ch(json!({"name": "t", "type": "telegram", "base_url": "http://127.0.0.1:9", "bot_token": "123:abc", "chat_id": "-100"})).post(&m);
        assert_eq!(o.url, "http://127.0.0.1:9/bot123:abc/sendMessage");
        assert_eq!(body(&o)["chat_id"], "-100");

        let o =
            ch(json!({"name": "w", "type": "webhook", "url": "http://127.0.0.1:9/hook"})).post(&m);
        let b = body(&o);
        assert_eq!(
            (b["status"].as_str(), b["target"].as_str()),
            (Some("firing"), Some("api"))
        );
    }

    #[test]
    fn webhook_templates_are_filled_with_escaped_values_and_checked() {
        let c = ch(json!({"name": "w", "type": "webhook", "url": "http://h/x",
            "body_template": "{\"text\": \"{{title}}: {{detail}}\", \"s\": \"{{status}}\"}"}));
        let mut m = msg(NoteKind::Resolved);
        m.detail = "quote \" and\nnewline".into();
        let b = body(&c.post(&m));
        assert_eq!(b["s"], "resolved");
        assert!(b["text"]
            .as_str()
            .unwrap()
            .ends_with("quote \" and\nnewline"));
        let e = Channel::from_json(&json!({"name": "w", "type": "webhook", "url": "http://h/x", "body_template": "{{{title}}"})).unwrap_err();
        assert_eq!(e.field, "body_template");
    }

    #[test]
    fn views_never_show_secrets_and_updates_keep_them() {
        let c = ch(
            json!({"name": "t", "type": "telegram", "base_url": "http://127.0.0.1:9", "bot_token": "123:SECRET", "chat_id": "7"}),
        );
        let v = serde_json::to_string(&c.view()).unwrap();
        assert!(!v.contains("SECRET"), "{v}");
        assert!(v.contains("bot_token"));
        let d = ch(
            json!({"name": "d", "type": "discord", "webhook_url": "https://discord.com/api/webhooks/1/SECRET"}),
        );
        let v = serde_json::to_string(&d.view()).unwrap();
        assert!(!v.contains("SECRET") && v.contains("discord.com"), "{v}");
        let mut edited = ch(
            json!({"name": "t", "type": "telegram", "base_url": "http://127.0.0.1:9", "bot_token": "x", "chat_id": "8"}),
        );
        if let Kind::Telegram { bot_token, .. } = &mut edited.kind {
            bot_token.clear();
        }
        edited.keep_secrets_of(&c);
        assert_eq!(
            edited.post(&msg(NoteKind::Test)).url,
            "http://127.0.0.1:9/bot123:SECRET/sendMessage"
        );
    }

    #[test]
    fn an_email_channel_keeps_its_password_and_never_shows_it() {
        let c = ch(
            json!({"name": "m", "type": "email", "server": "smtp.example.org",
            "username": "ops", "password": "SECRET-pw", "from": "wd@example.org", "to": ["a@example.org", "b@example.org"]}),
        );
        assert_eq!(
            (c.host(), c.http_host(), c.smtp_host()),
            (
                "smtp.example.org".into(),
                None,
                Some("smtp.example.org".into())
            )
        );
        let v = c.view();
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(v.secrets_set, ["password"]);
        assert_eq!(v.settings["to"], "a@example.org, b@example.org");
        assert_eq!(v.settings["port"], "587");
        let mut doc: Value = c.clone().into();
        redact_json(&mut doc);
        assert!(!doc.to_string().contains("SECRET"), "{doc}");
        // An edit that leaves the password out keeps it.
        let mut edited = ch(
            json!({"name": "m", "type": "email", "server": "smtp.example.org",
            "username": "ops", "password": "x", "from": "wd@example.org", "to": ["c@example.org"]}),
        );
        if let Kind::Email(e) = &mut edited.kind {
            e.password = None;
        }
        edited.keep_secrets_of(&c);
        match edited.render(&msg(NoteKind::Test)) {
            Rendered::Email(l) => {
                assert_eq!(l.password.as_deref(), Some("SECRET-pw"));
                assert_eq!(l.to, ["c@example.org"]);
                assert_eq!(l.subject, "[TEST] WakeDock test notification");
            }
            other => panic!("an e-mail channel rendered {other:?}"),
        }
    }

    #[test]
    fn bad_channels_name_their_fields() {
        let (ok, errs) = parse_channels(
            &[
                json!({"name": "a", "type": "slack", "webhook_url": "ftp://x"}),
                json!({"name": "b", "type": "pager"}),
                json!({"name": "c", "type": "gotify", "base_url": "http://x"}),
                json!({"type": "slack", "webhook_url": "http://x"}),
                json!({"name": "e", "type": "slack", "webhook_url": "http://user:pw@x/"}),
                json!({"name": "f", "type": "ntfy", "topic": "t"}),
            ],
            "channels",
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "channels[0].webhook_url",
                "channels[1].type",
                "channels[2].token",
                "channels[3].name",
                "channels[4].webhook_url"
            ],
            "{errs:?}"
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].host(), "ntfy.sh");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://Hooks.Slack.com/services/a").as_deref(),
            Some("hooks.slack.com")
        );
        assert_eq!(url_host("http://[::1]:9/").as_deref(), Some("::1"));
        assert_eq!(url_host("ftp://x/"), None);
        assert_eq!(url_host("http://u:p@x/"), None);
    }
}
