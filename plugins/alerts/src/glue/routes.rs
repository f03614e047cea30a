//! The JSON API under `/api/v1/plugins/alerts` (documented in
//! `docs/alerts.md`). Reading needs any role; changing rules, channels,
//! silences and maintenance windows needs `admin`. Channel secrets are
//! never in an answer.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wakedock_plugin_sdk::{auth, clock, containers, HttpRequest, HttpResponse};

use super::deliver::send;
use super::store::{self, put};
use super::{Alerts, Source};
use crate::alert::Phase;
use crate::channel::{Channel, ChannelView, Message};
use crate::facts::Status;
use crate::history::{page, AlertRecord};
use crate::outbox::ChannelHealth;
use crate::rule::{parse_ms, parse_rule, FieldError, RuleDef, TargetKind};
use crate::selector::{in_scope, Target};
use crate::suppress::{Silence, WindowDef};

pub fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"status": status, "code": code, "detail": detail}),
    )
}

fn invalid(code: &str, errs: &[FieldError]) -> HttpResponse {
    HttpResponse::json(
        422,
        &json!({
            "status": 422, "code": code,
            "detail": crate::config::describe(errs),
            "errors": errs,
        }),
    )
}

fn no_content() -> HttpResponse {
    HttpResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    }
}

pub fn is_admin() -> bool {
    auth::caller().is_some_and(|c| c.role == auth::Role::Admin)
}

/// A rule as the API shows it.
#[derive(Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub def: Value,
    pub source: Source,
    /// Alerts of this rule firing now.
    pub firing: usize,
}

/// A channel as the API shows it: no secret values.
#[derive(Serialize)]
pub struct ChannelInfo {
    #[serde(flatten)]
    pub view: ChannelView,
    pub source: Source,
    pub health: ChannelHealth,
    /// Deliveries waiting in the outbox.
    pub pending: usize,
}

/// A matched container and what it is doing.
#[derive(Serialize)]
pub struct Matched {
    pub name: String,
    pub status: Status,
}

/// `POST /silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    /// How long from now, e.g. `2h`.
    pub duration: String,
    #[serde(default)]
    pub comment: String,
}

impl Alerts {
    pub(super) fn route(&mut self, req: HttpRequest) -> HttpResponse {
        let path = req.path.clone();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let write = !matches!(req.method.as_str(), "GET" | "HEAD");
        if write && !is_admin() {
            return problem(403, "forbidden", "changing alerts needs the admin role");
        }
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["summary"]) => HttpResponse::json(200, &self.summary()),
            ("GET", ["alerts"]) => {
                let limit = req
                    .query_param("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(50usize)
                    .clamp(1, 500);
                let (firing, history, next) = self.alerts_page(req.query_param("before"), limit);
                HttpResponse::json(
                    200,
                    &json!({"firing": firing, "history": history, "next": next}),
                )
            }
            ("GET", ["alerts", id]) => match store::get::<AlertRecord>(&format!("alert/{id}")) {
                Some(r) => HttpResponse::json(200, &r),
                None => problem(404, "not_found", "no such alert"),
            },
            ("GET", ["rules"]) => HttpResponse::json(200, &self.rule_views()),
            ("POST", ["rules"]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match self.save_rule(&v, None) {
                    Ok(()) => HttpResponse::json(201, &v),
                    Err(es) => invalid("invalid_rule", &es),
                },
            },
            ("POST", ["rules", "preview"]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match parse_rule(&v) {
                    Ok(r) => HttpResponse::json(200, &self.preview(&r.def)),
                    Err(es) => invalid("invalid_rule", &es),
                },
            },
            ("PUT", ["rules", name]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match self.save_rule(&v, Some(name)) {
                    Ok(()) => HttpResponse::json(200, &v),
                    Err(es) => invalid("invalid_rule", &es),
                },
            },
            ("DELETE", ["rules", name]) => match self.delete_rule(name) {
                Ok(()) => no_content(),
                Err((status, m)) => problem(status, "cannot_delete", &m),
            },
            ("GET", ["rules", name, "preview"]) => {
                match self.loaded().rules.iter().find(|(r, _)| r.name() == *name) {
                    Some((r, _)) => {
                        let def = r.def.clone();
                        HttpResponse::json(200, &self.preview(&def))
                    }
                    None => problem(404, "not_found", "no such rule"),
                }
            }
            ("GET", ["channels"]) => HttpResponse::json(200, &self.channel_infos()),
            ("POST", ["channels"]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match self.save_channel(&v, None) {
                    Ok(view) => HttpResponse::json(201, &view),
                    Err(es) => invalid("invalid_channel", &es),
                },
            },
            ("PUT", ["channels", name]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match self.save_channel(&v, Some(name)) {
                    Ok(view) => HttpResponse::json(200, &view),
                    Err(es) => invalid("invalid_channel", &es),
                },
            },
            ("DELETE", ["channels", name]) => match self.delete_channel(name) {
                Ok(()) => no_content(),
                Err((status, m)) => problem(status, "cannot_delete", &m),
            },
            ("POST", ["channels", name, "test"]) => match self.test_channel(name) {
                None => problem(404, "not_found", "no such channel"),
                Some(Ok(status)) => HttpResponse::json(200, &json!({"ok": true, "status": status})),
                Some(Err(e)) => HttpResponse::json(200, &json!({"ok": false, "error": e})),
            },
            ("GET", ["silences"]) => HttpResponse::json(200, &self.loaded().silences),
            ("POST", ["silences"]) => match req.json::<NewSilence>() {
                Err(e) => problem(422, "invalid_silence", &e),
                Ok(s) => match self.add_silence(s) {
                    Ok(s) => HttpResponse::json(201, &s),
                    Err(es) => invalid("invalid_silence", &es),
                },
            },
            ("DELETE", ["silences", id]) => {
                if self.remove_silence(id) {
                    no_content()
                } else {
                    problem(404, "not_found", "no such silence")
                }
            }
            ("GET", ["maintenance"]) => {
                let l = self.loaded();
                let list: Vec<Value> = l
                    .windows
                    .iter()
                    .map(|(w, src)| {
                        json!({"window": w.def, "source": src, "active": w.active(clock::now_ms())})
                    })
                    .collect();
                HttpResponse::json(200, &list)
            }
            ("POST", ["maintenance"]) => match req.json::<Value>() {
                Err(e) => problem(400, "bad_request", &e),
                Ok(v) => match self.add_window(&v) {
                    Ok(()) => HttpResponse::json(201, &v),
                    Err(es) => invalid("invalid_window", &es),
                },
            },
            ("DELETE", ["maintenance", name]) => match self.delete_window(name) {
                Ok(()) => no_content(),
                Err((status, m)) => problem(status, "cannot_delete", &m),
            },
            ("GET", ["containers"]) => {
                let l = self.loaded();
                let list: Vec<Matched> = l
                    .containers
                    .values()
                    .map(|f| Matched {
                        name: f.target.name.clone(),
                        status: f.status(),
                    })
                    .collect();
                HttpResponse::json(200, &list)
            }
            _ => problem(404, "not_found", "no such route"),
        }
    }

    pub(super) fn summary(&mut self) -> Value {
        let l = self.loaded();
        let mut by_severity = serde_json::Map::new();
        let mut firing = 0;
        for ((rule, _), st) in &l.states {
            if matches!(st.phase, Phase::Firing { .. }) {
                firing += 1;
                let sev = l
                    .rules
                    .iter()
                    .find(|(r, _)| r.name() == rule)
                    .map_or("warning", |(r, _)| r.severity().as_str());
                let n = by_severity.get(sev).and_then(Value::as_u64).unwrap_or(0) + 1;
                by_severity.insert(sev.into(), n.into());
            }
        }
        let down: Vec<String> = l
            .channels
            .iter()
            .filter(|(c, _)| {
                store::get::<ChannelHealth>(&format!("health/{}", c.name))
                    .is_some_and(|h| h.is_down())
            })
            .map(|(c, _)| c.name.clone())
            .collect();
        json!({"firing": firing, "by_severity": by_severity, "channels_down": down, "pending_deliveries": l.outbox.len()})
    }

    /// Firing alerts (all of them) and one page of the history.
    pub(super) fn alerts_page(
        &mut self,
        before: Option<&str>,
        limit: usize,
    ) -> (Vec<AlertRecord>, Vec<AlertRecord>, Option<String>) {
        let l = self.loaded();
        let mut firing: Vec<AlertRecord> = l
            .states
            .values()
            .filter(|s| matches!(s.phase, Phase::Firing { .. }))
            .filter_map(|s| s.record.as_ref())
            .filter_map(|id| store::get::<AlertRecord>(&format!("alert/{id}")))
            .collect();
        firing.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.fired_at_ms.cmp(&a.fired_at_ms))
        });
        let ids: Vec<String> = store::keys("alert/")
            .into_iter()
            .map(|k| k["alert/".len()..].to_owned())
            .collect();
        let (ids, next) = page(&ids, before, limit);
        let history = ids
            .iter()
            .filter_map(|id| store::get::<AlertRecord>(&format!("alert/{id}")))
            .collect();
        (firing, history, next)
    }

    pub(super) fn rule_views(&mut self) -> Vec<RuleView> {
        let l = self.loaded();
        l.rules
            .iter()
            .map(|(r, src)| RuleView {
                def: r.def.clone().into(),
                source: *src,
                firing: l
                    .states
                    .iter()
                    .filter(|((rule, _), s)| {
                        rule == r.name() && matches!(s.phase, Phase::Firing { .. })
                    })
                    .count(),
            })
            .collect()
    }

    /// The containers (or services, or host parts) a rule watches now.
    pub(super) fn preview(&mut self, def: &RuleDef) -> Vec<Matched> {
        let instance = self.config.instance.clone();
        match def.kind.scope() {
            TargetKind::Container => {
                let listed = containers::list_all().unwrap_or_default();
                let l = self.loaded();
                listed
                    .into_iter()
                    .map(|c| {
                        let t = Target {
                            name: c.name.trim_start_matches('/').to_owned(),
                            labels: c.labels.iter().cloned().collect(),
                            services: Vec::new(),
                        };
                        let status = match l.containers.get(&t.name) {
                            Some(f) if c.state != wakedock_plugin_sdk::ContainerState::Running => {
                                f.status()
                            }
                            _ if c.state == wakedock_plugin_sdk::ContainerState::Running => {
                                Status::Running
                            }
                            _ => Status::Unknown,
                        };
                        (t, status)
                    })
                    .filter(|(t, _)| in_scope(instance.as_deref(), t) && def.selector.matches(t))
                    .map(|(t, status)| Matched {
                        name: t.name,
                        status,
                    })
                    .collect()
            }
            TargetKind::Service => {
                let l = self.loaded();
                l.services
                    .keys()
                    .filter(|s| def.selector.matches(&Target::new(s, [])))
                    .map(|s| Matched {
                        name: s.clone(),
                        status: Status::Unknown,
                    })
                    .collect()
            }
            TargetKind::Host => vec![Matched {
                name: "host".into(),
                status: Status::Running,
            }],
        }
    }

    /// Creates (`name` none) or replaces an API rule.
    pub(super) fn save_rule(
        &mut self,
        v: &Value,
        name: Option<&str>,
    ) -> Result<(), Vec<FieldError>> {
        let rule = parse_rule(v)?;
        if let Some(n) = name {
            if rule.name() != n {
                return Err(vec![FieldError::new("name", "a rule cannot be renamed")]);
            }
        }
        let l = self.loaded();
        match l.rules.iter().find(|(r, _)| r.name() == rule.name()) {
            Some((_, Source::Config)) => {
                return Err(vec![FieldError::new(
                    "name",
                    "a rule of the config file has this name: change it there",
                )])
            }
            Some(_) if name.is_none() => {
                return Err(vec![FieldError::new(
                    "name",
                    "a rule has this name already",
                )])
            }
            None if name.is_some() => return Err(vec![FieldError::new("name", "no such rule")]),
            _ => {}
        }
        for (i, c) in rule.def.channels.iter().enumerate() {
            if l.channel(c).is_none() {
                return Err(vec![FieldError::new(
                    format!("channels[{i}]"),
                    format!("no channel named `{c}`"),
                )]);
            }
        }
        put(
            &format!("rule/{}", rule.name()),
            &Value::from(rule.def.clone()),
        );
        l.rules.retain(|(r, _)| r.name() != rule.name());
        l.rules.push((rule, Source::Api));
        self.sync_follows();
        Ok(())
    }

    pub(super) fn delete_rule(&mut self, name: &str) -> Result<(), (u16, String)> {
        let l = self.loaded();
        match l.rules.iter().find(|(r, _)| r.name() == name) {
            None => return Err((404, "no such rule".into())),
            Some((_, Source::Config)) => {
                return Err((
                    409,
                    "the rule comes from the config file: remove it there".into(),
                ))
            }
            Some(_) => {}
        }
        l.rules.retain(|(r, _)| r.name() != name);
        store::delete(&format!("rule/{name}"));
        let gone: Vec<(String, String)> = l
            .states
            .keys()
            .filter(|(r, _)| r == name)
            .cloned()
            .collect();
        for k in gone {
            l.states.remove(&k);
            store::delete(&super::store::state_key(&k.0, &k.1));
        }
        self.update_gauges();
        self.sync_follows();
        Ok(())
    }

    pub(super) fn channel_infos(&mut self) -> Vec<ChannelInfo> {
        let l = self.loaded();
        l.channels
            .iter()
            .map(|(c, src)| ChannelInfo {
                view: c.view(),
                source: *src,
                health: store::get(&format!("health/{}", c.name)).unwrap_or_default(),
                pending: l.outbox.values().filter(|d| d.channel == c.name).count(),
            })
            .collect()
    }

    /// Creates or replaces an API channel; secrets left empty keep their
    /// values. The answer is the channel's view.
    pub(super) fn save_channel(
        &mut self,
        v: &Value,
        name: Option<&str>,
    ) -> Result<ChannelView, Vec<FieldError>> {
        let mut c = Channel::from_json(v).map_err(|e| vec![e]);
        let l = self.loaded();
        if let (Err(_), Some(n)) = (&c, name) {
            // An edit may leave secret fields empty: fill them, then check.
            if let Some(old) = l.channel(n).cloned() {
                let mut merged = v.clone();
                let old_v: Value = old.clone().into();
                if let (Some(m), Some(o)) = (merged.as_object_mut(), old_v.as_object()) {
                    for (k, ov) in o {
                        let empty = m.get(k).is_none_or(|x| x.as_str() == Some(""));
                        if empty {
                            m.insert(k.clone(), ov.clone());
                        }
                    }
                }
                c = Channel::from_json(&merged).map_err(|e| vec![e]);
            }
        }
        let mut c = c?;
        if let Some(n) = name {
            if c.name != n {
                return Err(vec![FieldError::new("name", "a channel cannot be renamed")]);
            }
        }
        match l.channels.iter().find(|(x, _)| x.name == c.name) {
            Some((_, Source::Config)) => {
                return Err(vec![FieldError::new(
                    "name",
                    "a channel of the config file has this name: change it there",
                )])
            }
            Some((old, _)) if name.is_some() => c.keep_secrets_of(&old.clone()),
            Some(_) => {
                return Err(vec![FieldError::new(
                    "name",
                    "a channel has this name already",
                )])
            }
            None if name.is_some() => return Err(vec![FieldError::new("name", "no such channel")]),
            None => {}
        }
        put(&format!("channel/{}", c.name), &c);
        l.channels.retain(|(x, _)| x.name != c.name);
        let view = c.view();
        l.channels.push((c, Source::Api));
        Ok(view)
    }

    pub(super) fn delete_channel(&mut self, name: &str) -> Result<(), (u16, String)> {
        let l = self.loaded();
        match l.channels.iter().find(|(c, _)| c.name == name) {
            None => return Err((404, "no such channel".into())),
            Some((_, Source::Config)) => {
                return Err((
                    409,
                    "the channel comes from the config file: remove it there".into(),
                ))
            }
            Some(_) => {}
        }
        if let Some((r, _)) = l
            .rules
            .iter()
            .find(|(r, _)| r.def.channels.iter().any(|c| c == name))
        {
            return Err((409, format!("rule {} sends to this channel", r.name())));
        }
        l.channels.retain(|(c, _)| c.name != name);
        store::delete(&format!("channel/{name}"));
        store::delete(&format!("health/{name}"));
        Ok(())
    }

    /// Sends a test notification now; `None` if there is no such channel.
    pub(super) fn test_channel(&mut self, name: &str) -> Option<Result<u16, String>> {
        let c = self.loaded().channel(name)?.clone();
        let r = send(&c, &Message::test(name, clock::now_ms()));
        let now = clock::now_ms();
        let key = format!("health/{name}");
        let mut h: ChannelHealth = store::get(&key).unwrap_or_default();
        match &r {
            Ok(_) => {
                h.delivered(now);
            }
            Err(e) => {
                h.failed(e, now);
            }
        }
        put(&key, &h);
        Some(r)
    }

    pub(super) fn add_silence(&mut self, s: NewSilence) -> Result<Silence, Vec<FieldError>> {
        let ms = parse_ms(&s.duration).map_err(|m| vec![FieldError::new("duration", m)])?;
        if ms == 0 {
            return Err(vec![FieldError::new("duration", "must be longer than 0")]);
        }
        let now = clock::now_ms();
        let silence = Silence {
            id: store::next_id(now),
            rules: s.rules,
            targets: s.targets,
            starts_ms: now,
            ends_ms: now + ms,
            comment: s.comment,
            created_by: auth::caller().map(|c| c.username).unwrap_or_default(),
        };
        put(&format!("silence/{}", silence.id), &silence);
        self.loaded().silences.push(silence.clone());
        Ok(silence)
    }

    pub(super) fn remove_silence(&mut self, id: &str) -> bool {
        let l = self.loaded();
        let before = l.silences.len();
        l.silences.retain(|s| s.id != id);
        store::delete(&format!("silence/{id}"));
        l.silences.len() != before
    }

    pub(super) fn add_window(&mut self, v: &Value) -> Result<(), Vec<FieldError>> {
        let def: WindowDef =
            serde_json::from_value(v.clone()).map_err(|e| vec![crate::rule::serde_error(&e)])?;
        let w = def.validate()?;
        let l = self.loaded();
        if l.windows.iter().any(|(x, _)| x.name() == w.name()) {
            return Err(vec![FieldError::new(
                "name",
                "a maintenance window has this name already",
            )]);
        }
        put(&format!("window/{}", w.name()), &w.def);
        l.windows.push((w, Source::Api));
        Ok(())
    }

    pub(super) fn delete_window(&mut self, name: &str) -> Result<(), (u16, String)> {
        let l = self.loaded();
        match l.windows.iter().find(|(w, _)| w.name() == name) {
            None => Err((404, "no such maintenance window".into())),
            Some((_, Source::Config)) => Err((
                409,
                "the window comes from the config file: remove it there".into(),
            )),
            Some(_) => {
                l.windows.retain(|(w, _)| w.name() != name);
                store::delete(&format!("window/{name}"));
                Ok(())
            }
        }
    }
}
