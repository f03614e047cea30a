//! The browser pages under `/p/alerts` (plugin pages: HTML fragments the
//! host puts inside its layout, forms with the host's token): firing
//! alerts first, the history, rules with the containers they match,
//! channels with their test button, silences and maintenance windows.

use serde_json::{json, Map, Value};
use wakedock_plugin_sdk::{clock, ui, HttpRequest, HttpResponse};

use super::routes::{is_admin, NewSilence};
use super::{Alerts, Source};
use crate::facts::Status;
use crate::history::{AlertRecord, NoteResult};

fn e(s: &str) -> String {
    ui::escape(s)
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
fn when(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

fn status_badge(s: &Status) -> String {
    match s {
        Status::Running => "<span class=\"badge\">running</span>".into(),
        Status::Asleep => "<span class=\"badge\">sleeping</span>".into(),
        Status::StoppedBy(by) => format!("<span class=\"badge\">stopped by {}</span>", e(by)),
        Status::Down => "<span class=\"badge danger\">down</span>".into(),
        Status::Unknown => "<span class=\"badge muted\">stopped</span>".into(),
    }
}

fn nav(base: &str) -> String {
    format!(
        "<p class=\"actions\"><a href=\"{base}\">Alerts</a> <a href=\"{base}/history\">History</a> \
         <a href=\"{base}/rules\">Rules</a> <a href=\"{base}/channels\">Channels</a> \
         <a href=\"{base}/silences\">Silences and maintenance</a></p>"
    )
}

fn notes(r: &AlertRecord) -> String {
    let items: Vec<String> = r
        .notifications
        .iter()
        .map(|n| {
            let what = match &n.result {
                NoteResult::Pending => "pending".to_owned(),
                NoteResult::Delivered { attempts, .. } => {
                    format!("delivered ({attempts} attempt(s))")
                }
                NoteResult::Retrying { error, attempts } => {
                    format!("retrying after {attempts} attempt(s): {error}")
                }
                NoteResult::GaveUp { error, attempts } => {
                    format!("gave up after {attempts} attempt(s): {error}")
                }
                NoteResult::Suppressed { by } => format!("not sent ({by})"),
            };
            format!(
                "<li>{} {} {}: {}</li>",
                n.kind.as_str(),
                if n.channel.is_empty() {
                    String::new()
                } else {
                    format!("to {}", e(&n.channel))
                },
                when(n.at_ms),
                e(&what)
            )
        })
        .collect();
    if items.is_empty() {
        "<span class=\"muted\">none</span>".into()
    } else {
        format!("<ul>{}</ul>", items.join(""))
    }
}

fn alert_table(records: &[AlertRecord], empty: &str) -> String {
    if records.is_empty() {
        return format!("<p class=\"muted\">{}</p>", e(empty));
    }
    let rows: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "<tr class=\"alert-row\"><td><span class=\"badge{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if r.severity == crate::rule::Severity::Critical { " danger" } else { "" },
                r.severity.as_str(),
                e(&r.rule),
                e(&r.target),
                e(&r.detail),
                when(r.fired_at_ms),
                r.resolved_at_ms.map_or_else(|| "<strong>firing</strong>".to_owned(), |t| format!("{} ({})", when(t), e(r.resolution.as_deref().unwrap_or("")))),
                notes(r)
            )
        })
        .collect();
    format!(
        "<table class=\"list\"><thead><tr><th>Severity</th><th>Rule</th><th>Target</th><th>What happened</th><th>Fired</th><th>Resolved</th><th>Notifications</th></tr></thead><tbody>{}</tbody></table>",
        rows.join("")
    )
}

/// The host's form token, which it checked already.
const HOST_TOKEN_FIELD: &str = "wd_token";

/// Form fields as a map (the last value of a repeated field wins), without
/// the host's token.
fn fields(req: &HttpRequest) -> Map<String, Value> {
    ui::form(req)
        .into_iter()
        .filter(|(k, _)| k != HOST_TOKEN_FIELD)
        .map(|(k, v)| (k, Value::String(v.trim().to_owned())))
        .collect()
}

fn list_of(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_str)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl Alerts {
    pub(super) fn page(&mut self, req: HttpRequest) -> HttpResponse {
        let base = ui::page_base(&req).unwrap_or("/p/alerts").to_owned();
        let path = req.path.clone();
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        if req.method == "POST" && !is_admin() {
            return ui::redirect(&base, "", false, "Changing alerts needs the admin role.");
        }
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", []) => self.overview_page(&base),
            ("GET", ["history"]) => {
                let before = req.query_param("before").map(str::to_owned);
                let (_, history, next) = self.alerts_page(before.as_deref(), 50);
                let more = next.map_or_else(String::new, |n| {
                    format!(
                        "<p><a href=\"{base}/history?before={}\">Older</a></p>",
                        e(&n)
                    )
                });
                ui::page(
                    "Alert history",
                    &format!(
                        "<h1>Alert history</h1>{}{}{more}",
                        nav(&base),
                        alert_table(&history, "No alerts yet.")
                    ),
                )
            }
            ("GET", ["rules"]) => self.rules_page(&base),
            ("POST", ["rules"]) => {
                let f = fields(&req);
                let mut rule = Map::new();
                for k in [
                    "name",
                    "kind",
                    "severity",
                    "for",
                    "resend",
                    "cooldown",
                    "window",
                    "threshold",
                ] {
                    if let Some(v) = f.get(k).filter(|v| v.as_str() != Some("")) {
                        rule.insert(k.into(), v.clone());
                    }
                }
                if let Some(c) = f
                    .get("count")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                {
                    rule.insert(
                        "count".into(),
                        c.parse::<u64>()
                            .map_or_else(|_| Value::from(c), Value::from),
                    );
                }
                if let Some(p) = f
                    .get("percent")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                {
                    rule.insert(
                        "percent".into(),
                        p.parse::<f64>()
                            .map_or_else(|_| Value::from(p), Value::from),
                    );
                }
                let mut selector = Map::new();
                for k in ["names", "labels"] {
                    let l = list_of(f.get(k));
                    if !l.is_empty() {
                        selector.insert(k.into(), l.into());
                    }
                }
                for k in ["stack", "service"] {
                    if let Some(v) = f.get(k).filter(|v| v.as_str() != Some("")) {
                        selector.insert(k.into(), v.clone());
                    }
                }
                if !selector.is_empty() {
                    rule.insert("selector".into(), selector.into());
                }
                rule.insert("channels".into(), list_of(f.get("channels")).into());
                match self.save_rule(&Value::Object(rule), None) {
                    Ok(()) => ui::redirect(&base, "/rules", true, "Rule created."),
                    Err(es) => ui::redirect(&base, "/rules", false, &crate::config::describe(&es)),
                }
            }
            ("POST", ["rules", name, "delete"]) => match self.delete_rule(name) {
                Ok(()) => ui::redirect(&base, "/rules", true, "Rule deleted."),
                Err((_, m)) => ui::redirect(&base, "/rules", false, &m),
            },
            ("GET", ["channels"]) => self.channels_page(&base),
            ("POST", ["channels"]) => {
                let f = fields(&req);
                let mut ch = Map::new();
                for (k, v) in &f {
                    if v.as_str() != Some("") && k != "body_template" {
                        ch.insert(k.clone(), v.clone());
                    }
                }
                if let Some(t) = f.get("body_template").filter(|v| v.as_str() != Some("")) {
                    ch.insert("body_template".into(), t.clone());
                }
                // A form sends text: an e-mail channel's recipients are a
                // comma-separated list, its port a number (a bad one stays
                // text and is named by the channel check).
                // The security select always sends a value: only e-mail has one.
                if ch.get("type").and_then(Value::as_str) != Some("email") {
                    ch.remove("security");
                }
                if ch.contains_key("to") {
                    ch.insert("to".into(), list_of(f.get("to")).into());
                }
                if let Some(port) = ch
                    .get("port")
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    ch.insert("port".into(), port.into());
                }
                match self.save_channel(&Value::Object(ch), None) {
                    Ok(_) => ui::redirect(&base, "/channels", true, "Channel created."),
                    Err(es) => {
                        ui::redirect(&base, "/channels", false, &crate::config::describe(&es))
                    }
                }
            }
            ("POST", ["channels", name, "test"]) => match self.test_channel(name) {
                None => ui::redirect(&base, "/channels", false, "No such channel."),
                Some(Ok(status)) => ui::redirect(
                    &base,
                    "/channels",
                    true,
                    &format!("Test notification delivered to {name} (answer {status})."),
                ),
                Some(Err(err)) => ui::redirect(
                    &base,
                    "/channels",
                    false,
                    &format!("Test notification to {name} failed: {err}"),
                ),
            },
            ("POST", ["channels", name, "delete"]) => match self.delete_channel(name) {
                Ok(()) => ui::redirect(&base, "/channels", true, "Channel deleted."),
                Err((_, m)) => ui::redirect(&base, "/channels", false, &m),
            },
            ("GET", ["silences"]) => self.silences_page(&base),
            ("POST", ["silences"]) => {
                let f = fields(&req);
                let s = NewSilence {
                    rules: list_of(f.get("rules"))
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    targets: list_of(f.get("targets"))
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    duration: f
                        .get("duration")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    comment: f
                        .get("comment")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                };
                match self.add_silence(s) {
                    Ok(_) => ui::redirect(&base, "/silences", true, "Silence added."),
                    Err(es) => {
                        ui::redirect(&base, "/silences", false, &crate::config::describe(&es))
                    }
                }
            }
            ("POST", ["silences", id, "delete"]) => {
                self.remove_silence(id);
                ui::redirect(&base, "/silences", true, "Silence removed.")
            }
            ("POST", ["maintenance"]) => {
                let f = fields(&req);
                let mut w = Map::new();
                for (k, v) in &f {
                    if v.as_str() == Some("") {
                        continue;
                    }
                    match k.as_str() {
                        "rules" | "targets" | "every" => {
                            w.insert(k.clone(), list_of(Some(v)).into());
                        }
                        _ => {
                            w.insert(k.clone(), v.clone());
                        }
                    }
                }
                match self.add_window(&Value::Object(w)) {
                    Ok(()) => ui::redirect(&base, "/silences", true, "Maintenance window added."),
                    Err(es) => {
                        ui::redirect(&base, "/silences", false, &crate::config::describe(&es))
                    }
                }
            }
            ("POST", ["maintenance", name, "delete"]) => match self.delete_window(name) {
                Ok(()) => ui::redirect(&base, "/silences", true, "Maintenance window removed."),
                Err((_, m)) => ui::redirect(&base, "/silences", false, &m),
            },
            _ => HttpResponse::not_found(),
        }
    }

    fn overview_page(&mut self, base: &str) -> HttpResponse {
        let summary = self.summary();
        let (firing, history, _) = self.alerts_page(None, 20);
        let down = summary["channels_down"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| {
                let names: Vec<String> = a.iter().filter_map(Value::as_str).map(e).collect();
                format!("<p class=\"flash err\">Channel(s) down: {}. Notifications wait in the outbox and are retried.</p>", names.join(", "))
            })
            .unwrap_or_default();
        ui::page(
            "Alerts",
            &format!(
                "<h1>Alerts</h1>{}{down}<h2 id=\"firing\">Firing now: <span class=\"firing-count\">{}</span></h2>{}<h2>Recent</h2>{}",
                nav(base),
                firing.len(),
                alert_table(&firing, "Nothing is firing."),
                alert_table(&history, "No alerts yet.")
            ),
        )
    }

    fn rules_page(&mut self, base: &str) -> HttpResponse {
        let views = self.rule_views();
        let admin = is_admin();
        let mut rows = Vec::new();
        for v in views {
            let def: crate::rule::RuleDef = match serde_json::from_value(v.def.clone()) {
                Ok(d) => d,
                Err(_) => continue,
            };
            let matched = self.preview(&def);
            let preview: Vec<String> = matched
                .iter()
                .take(20)
                .map(|m| format!("{} {}", e(&m.name), status_badge(&m.status)))
                .collect();
            let more = if matched.len() > 20 {
                format!(" and {} more", matched.len() - 20)
            } else {
                String::new()
            };
            let delete = if admin && v.source == Source::Api {
                format!(
                    "<form method=\"post\" action=\"{base}/rules/{}/delete\" data-confirm=\"Delete rule {}?\"><button class=\"danger\">Delete</button></form>",
                    e(&def.name),
                    e(&def.name)
                )
            } else {
                String::new()
            };
            rows.push(format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{more}</td><td>{delete}</td></tr>",
                e(&def.name),
                e(def.kind.name()),
                def.severity.as_str(),
                if v.source == Source::Config { "config file" } else { "API" },
                v.firing,
                e(&serde_json::to_string(&def.selector).unwrap_or_default()),
                if preview.is_empty() { "<span class=\"muted\">nothing</span>".into() } else { preview.join(", ") },
            ));
        }
        let form = if admin {
            format!(
                "<h2>New rule</h2><form method=\"post\" action=\"{base}/rules\" class=\"card\">\
                 <label>Name <input name=\"name\" required></label>\
                 <label>Kind <select name=\"kind\">{}</select></label>\
                 <label>Severity <select name=\"severity\"><option>warning</option><option>critical</option><option>info</option></select></label>\
                 <label>Container names (comma-separated, * wildcards) <input name=\"names\"></label>\
                 <label>Labels (key=value, comma-separated) <input name=\"labels\"></label>\
                 <label>Stack <input name=\"stack\"></label><label>Service <input name=\"service\"></label>\
                 <label>For <input name=\"for\" placeholder=\"0s\"></label>\
                 <label>Resend every <input name=\"resend\" placeholder=\"1h\"></label>\
                 <label>Cooldown <input name=\"cooldown\" placeholder=\"0s\"></label>\
                 <label>Restart loop: count <input name=\"count\"></label><label>within <input name=\"window\" placeholder=\"5m\"></label>\
                 <label>Wake slower than <input name=\"threshold\" placeholder=\"10s\"></label>\
                 <label>CPU/memory percent <input name=\"percent\"></label>\
                 <label>Channels (comma-separated; empty: all) <input name=\"channels\"></label>\
                 <button class=\"primary\">Create rule</button></form>",
                ["exit", "oom", "restart-loop", "unhealthy", "cpu", "memory", "wake-failed", "wake-timeout", "wake-slow", "engine-unreachable", "database-unavailable", "plugin-failed"]
                    .iter()
                    .map(|k| format!("<option>{k}</option>"))
                    .collect::<String>()
            )
        } else {
            String::new()
        };
        ui::page(
            "Alert rules",
            &format!(
                "<h1>Alert rules</h1>{}<table class=\"list\"><thead><tr><th>Name</th><th>Kind</th><th>Severity</th><th>From</th><th>Firing</th><th>Selector</th><th>Matches now</th><th></th></tr></thead><tbody>{}</tbody></table>{form}",
                nav(base),
                rows.join("")
            ),
        )
    }

    fn channels_page(&mut self, base: &str) -> HttpResponse {
        let admin = is_admin();
        let rows: Vec<String> = self
            .channel_infos()
            .into_iter()
            .map(|c| {
                let health = match (&c.health.down_since, &c.health.last_error) {
                    (Some(since), err) => format!(
                        "<span class=\"badge danger\">down since {}</span> {}",
                        when(*since),
                        e(err.as_deref().unwrap_or(""))
                    ),
                    (None, _) if c.health.last_ok_ms.is_some() => "<span class=\"badge\">ok</span>".into(),
                    _ => "<span class=\"muted\">not used yet</span>".into(),
                };
                let actions = if admin {
                    let mut a = format!(
                        "<form method=\"post\" action=\"{base}/channels/{n}/test\"><button>Send test notification</button></form>",
                        n = e(&c.view.name)
                    );
                    if c.source == Source::Api {
                        a.push_str(&format!(
                            "<form method=\"post\" action=\"{base}/channels/{n}/delete\" data-confirm=\"Delete channel {n}?\"><button class=\"danger\">Delete</button></form>",
                            n = e(&c.view.name)
                        ));
                    }
                    a
                } else {
                    String::new()
                };
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"actions\">{actions}</td></tr>",
                    e(&c.view.name),
                    e(&c.view.kind),
                    e(&c.view.host),
                    if c.source == Source::Config { "config file" } else { "API" },
                    e(&c.view.secrets_set.join(", ")),
                    health,
                    c.pending
                )
            })
            .collect();
        let form = if admin {
            format!(
                "<h2>New channel</h2><form method=\"post\" action=\"{base}/channels\" class=\"card\">\
                 <label>Name <input name=\"name\" required></label>\
                 <label>Type <select name=\"type\"><option>webhook</option><option>ntfy</option><option>gotify</option><option>discord</option><option>slack</option><option>telegram</option><option>email</option></select></label>\
                 <label>URL (webhook) <input name=\"url\" autocomplete=\"off\"></label>\
                 <label>Webhook URL (Discord, Slack) <input name=\"webhook_url\" autocomplete=\"off\"></label>\
                 <label>Base URL (ntfy, Gotify, Telegram) <input name=\"base_url\"></label>\
                 <label>Topic (ntfy) <input name=\"topic\"></label>\
                 <label>Token (ntfy, Gotify) <input name=\"token\" autocomplete=\"off\"></label>\
                 <label>Bot token (Telegram) <input name=\"bot_token\" autocomplete=\"off\"></label>\
                 <label>Chat id (Telegram) <input name=\"chat_id\"></label>\
                 <label>SMTP server (e-mail) <input name=\"server\"></label>\
                 <label>Port (e-mail; empty: 587, 465 or 25 by security) <input name=\"port\" inputmode=\"numeric\"></label>\
                 <label>Security (e-mail) <select name=\"security\"><option>starttls</option><option>tls</option><option>none</option></select></label>\
                 <label>Username (e-mail) <input name=\"username\" autocomplete=\"off\"></label>\
                 <label>Password (e-mail) <input name=\"password\" autocomplete=\"off\"></label>\
                 <label>From (e-mail) <input name=\"from\"></label>\
                 <label>To (e-mail, comma-separated) <input name=\"to\"></label>\
                 <label>Body template (webhook, JSON with {{{{placeholders}}}}) <textarea name=\"body_template\"></textarea></label>\
                 <button class=\"primary\">Create channel</button></form><p class=\"muted\">Secrets are kept and never shown again.</p>"
            )
        } else {
            String::new()
        };
        ui::page(
            "Alert channels",
            &format!(
                "<h1>Channels</h1>{}<table class=\"list\"><thead><tr><th>Name</th><th>Type</th><th>Host</th><th>From</th><th>Secrets set</th><th>Health</th><th>Waiting</th><th></th></tr></thead><tbody>{}</tbody></table>{form}",
                nav(base),
                rows.join("")
            ),
        )
    }

    fn silences_page(&mut self, base: &str) -> HttpResponse {
        let admin = is_admin();
        let now = clock::now_ms();
        let l = self.loaded();
        let silences: Vec<String> = l
            .silences
            .iter()
            .map(|s| {
                let del = if admin {
                    format!("<form method=\"post\" action=\"{base}/silences/{}/delete\"><button>End now</button></form>", e(&s.id))
                } else {
                    String::new()
                };
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{del}</td></tr>",
                    e(&s.rules.join(", ")),
                    e(&s.targets.join(", ")),
                    when(s.ends_ms),
                    e(&s.comment),
                    e(&s.created_by)
                )
            })
            .collect();
        let windows: Vec<String> = l
            .windows
            .iter()
            .map(|(w, src)| {
                let v: Value = json!(w.def);
                let del = if admin && *src == Source::Api {
                    format!("<form method=\"post\" action=\"{base}/maintenance/{}/delete\"><button>Remove</button></form>", e(w.name()))
                } else {
                    String::new()
                };
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{del}</td></tr>",
                    e(w.name()),
                    e(&v.to_string()),
                    if w.active(now) { "<span class=\"badge\">active</span>" } else { "" },
                    if *src == Source::Config { "config file" } else { "API" }
                )
            })
            .collect();
        let forms = if admin {
            format!(
                "<h2>New silence</h2><form method=\"post\" action=\"{base}/silences\" class=\"card\">\
                 <label>Rules (comma-separated; empty: all) <input name=\"rules\"></label>\
                 <label>Targets (comma-separated, * wildcards; empty: all) <input name=\"targets\"></label>\
                 <label>For <input name=\"duration\" value=\"1h\" required></label>\
                 <label>Comment <input name=\"comment\"></label><button class=\"primary\">Silence</button></form>\
                 <h2>New maintenance window</h2><form method=\"post\" action=\"{base}/maintenance\" class=\"card\">\
                 <label>Name <input name=\"name\" required></label>\
                 <label>Rules <input name=\"rules\"></label><label>Targets <input name=\"targets\"></label>\
                 <label>One-off start (RFC 3339) <input name=\"start\"></label><label>end <input name=\"end\"></label>\
                 <label>Or every (day, mon, tue, ...) <input name=\"every\"></label><label>at (HH:MM) <input name=\"at\"></label>\
                 <label>for <input name=\"duration\"></label><label>UTC offset <input name=\"utc_offset\" placeholder=\"+01:00\"></label>\
                 <button class=\"primary\">Add window</button></form>"
            )
        } else {
            String::new()
        };
        ui::page(
            "Silences and maintenance",
            &format!(
                "<h1>Silences and maintenance windows</h1>{}<p class=\"muted\">While one covers an alert, nothing is sent; the history still records it.</p>\
                 <h2>Silences</h2><table class=\"list\"><thead><tr><th>Rules</th><th>Targets</th><th>Until</th><th>Comment</th><th>By</th><th></th></tr></thead><tbody>{}</tbody></table>\
                 <h2>Maintenance windows</h2><table class=\"list\"><thead><tr><th>Name</th><th>Schedule</th><th>Now</th><th>From</th><th></th></tr></thead><tbody>{}</tbody></table>{forms}",
                nav(base),
                silences.join(""),
                windows.join("")
            ),
        )
    }
}
