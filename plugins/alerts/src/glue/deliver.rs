//! Sending the outbox through `http-outbound` (and `smtp` for e-mail
//! channels): due deliveries are tried in
//! order; a success removes the entry and records the delivery; a failure
//! schedules a retry with backoff (or gives up after a day); each channel's
//! health is kept and a channel that stays down is logged once.
//!
//! Errors are described without the request's URL: webhook URLs and
//! Telegram's bot token are secrets (and the host never puts an SMTP
//! password into an error).

use wakedock_plugin_sdk::{clock, events, http, log, metrics, smtp, Error};

use super::store::{self, put};
use super::Alerts;
use crate::channel::{Channel, Message, Outgoing, Rendered};
use crate::email::{Letter, Security};
use crate::history::{AlertRecord, NoteResult};
use crate::outbox::{ChannelHealth, Delivery, HealthChange, Retry};

/// At most this many deliveries per call, so a call stays short.
const PER_FLUSH: usize = 20;
/// A receiver gets this long to answer.
const SEND_TIMEOUT_MS: u32 = 5_000;
/// No new attempt starts after this much of a call (since it began) (its wall-time limit is
/// 30 s): receivers that hang cannot make the call overrun and fail.
const FLUSH_BUDGET_NS: u64 = 15_000_000_000;

/// What an SMTP server answers when it accepts a message.
const SMTP_ACCEPTED: u16 = 250;

/// Sends `m` on `c`; the receiver's status (250 for an SMTP server that
/// accepted the message), or why it failed.
pub fn send(c: &Channel, m: &Message) -> Result<u16, String> {
    match c.render(m) {
        Rendered::Http(out) => post(c, out),
        Rendered::Email(letter) => mail(letter).map(|()| SMTP_ACCEPTED),
    }
}

fn mail(l: Letter) -> Result<(), String> {
    let host = l.server.clone();
    let message = smtp::Mail {
        server: smtp::Server {
            host: l.server,
            port: l.port,
            security: match l.security {
                Security::Starttls => smtp::Security::Starttls,
                Security::Tls => smtp::Security::Tls,
                Security::None => smtp::Security::None,
            },
            username: l.username,
            password: l.password,
            ca_pem: l.ca_pem,
        },
        from: l.from,
        to: l.to,
        subject: l.subject,
        text: l.text,
        timeout_ms: Some(SEND_TIMEOUT_MS * 2),
    };
    smtp::send(&message).map_err(|e| match e {
        Error::PermissionDenied(_) => format!(
            "SMTP server {host} is not in the alerts plugin's smtp allowlist: declare the channel in the config file, add the host to the plugin's `allow_hosts`, or grant it"
        ),
        Error::QuotaExceeded => "the e-mail rate limit is reached; retrying later".into(),
        Error::Timeout => format!(
            "SMTP server {host} did not finish within {} ms",
            SEND_TIMEOUT_MS * 2
        ),
        other => other.describe(),
    })
}

fn post(c: &Channel, out: Outgoing) -> Result<u16, String> {
    let request = http::Request {
        method: "POST".into(),
        url: out.url.clone(),
        headers: out.headers,
        body: out.body,
        timeout_ms: Some(SEND_TIMEOUT_MS),
    };
    let host = c.host();
    let r = http::send(&request).map_err(|e| match e {
        Error::PermissionDenied(_) => format!(
            "host {host} is not in the alerts plugin's outbound allowlist: declare the channel in the config file, add the host to the plugin's `allow_hosts`, or grant it"
        ),
        Error::QuotaExceeded => "the outbound request rate limit is reached; retrying later".into(),
        Error::Timeout => format!("{host} did not answer within {SEND_TIMEOUT_MS} ms"),
        other => other.describe().replace(&out.url, &format!("<{host}>")),
    })?;
    c.accepted(r.status, &r.body)?;
    Ok(r.status)
}

impl Alerts {
    /// Tries every due delivery (at most [`PER_FLUSH`]).
    pub(super) fn flush(&mut self, now: u64) {
        let due: Vec<Delivery> = self
            .loaded()
            .outbox
            .values()
            .filter(|d| d.due(now))
            .take(PER_FLUSH)
            .cloned()
            .collect();
        for d in due {
            if clock::monotonic_ns().saturating_sub(self.call_started_ns) > FLUSH_BUDGET_NS {
                break;
            }
            self.attempt(d);
        }
    }

    fn attempt(&mut self, mut d: Delivery) {
        let channel = self.loaded().channel(&d.channel).cloned();
        let result = match &channel {
            None => Err(format!("no channel named {} (it was removed)", d.channel)),
            Some(c) => send(c, &d.message),
        };
        let now = clock::now_ms();
        let hkey = format!("health/{}", d.channel);
        let mut health: ChannelHealth = store::get(&hkey).unwrap_or_default();
        let outcome = match result {
            Ok(_) => {
                store::delete(&format!("outbox/{}", d.id));
                self.loaded().outbox.remove(&d.id);
                if health.delivered(now) == Some(HealthChange::CameBack) {
                    log::info(&format!("channel {} delivers again", d.channel));
                }
                let _ =
                    metrics::counter_add("notifications_total", &[&d.channel, "delivered"], 1.0);
                let secs = now.saturating_sub(d.created_ms) as f64 / 1000.0;
                let _ = metrics::histogram_observe("delivery_seconds", &[&d.channel], secs);
                NoteResult::Delivered {
                    delivered_at_ms: now,
                    attempts: d.attempts + 1,
                }
            }
            Err(error) => {
                if health.failed(&error, now) == Some(HealthChange::WentDown) {
                    log::warn(&format!(
                        "channel {} is down ({} failures in a row): {error}",
                        d.channel, health.consecutive_failures
                    ));
                }
                let retry = d.failed(error.clone(), now);
                let _ = metrics::counter_add("notifications_total", &[&d.channel, "failed"], 1.0);
                match retry {
                    Retry::At(_) => {
                        put(&format!("outbox/{}", d.id), &d);
                        self.loaded().outbox.insert(d.id.clone(), d.clone());
                        NoteResult::Retrying {
                            error,
                            attempts: d.attempts,
                        }
                    }
                    Retry::GiveUp => {
                        log::warn(&format!(
                            "channel {}: gave up a notification after {} attempts: {error}",
                            d.channel, d.attempts
                        ));
                        store::delete(&format!("outbox/{}", d.id));
                        self.loaded().outbox.remove(&d.id);
                        let _ = metrics::counter_add(
                            "notifications_total",
                            &[&d.channel, "gave-up"],
                            1.0,
                        );
                        NoteResult::GaveUp {
                            error,
                            attempts: d.attempts,
                        }
                    }
                }
            }
        };
        put(&hkey, &health);
        let rkey = format!("alert/{}", d.message.alert_id);
        if let Some(mut r) = store::get::<AlertRecord>(&rkey) {
            if let Some(n) = r.note_mut(&d.id) {
                if !matches!(outcome, NoteResult::Retrying { .. }) {
                    n.delivery = None;
                }
                let result = serde_json::to_value(&outcome).unwrap_or_default();
                n.result = outcome;
                put(&rkey, &r);
                // Stored first: the alerts pages are live on `alerts.*`
                // (their manifest entry), and re-read the record on this.
                let _ = events::publish_json(
                    "alerts.delivery",
                    &serde_json::json!({"alert_id": d.message.alert_id, "channel": d.channel, "outcome": result}),
                );
            }
        }
    }
}
