//! The `smtp` plugin capability (API 0.1.4) through lettre: the runtime has
//! checked the grant, the allowlist, the rate and the mail's shape; this
//! builds the RFC 5322 message and runs one SMTP session per message over
//! tokio and rustls (STARTTLS, implicit TLS, or plain for a local relay).
//!
//! Errors carry the server's own words (a refused login says so) but never
//! the password: lettre does not echo credentials, and [`scrub`] removes
//! them anyway, in every form an AUTH exchange puts them on the wire, in
//! case a server quotes what it was sent.

use std::time::Duration;

use base64::Engine as _;
use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use wakedock_plugin_runtime::caps::{
    BoxFuture, CapError, CapResult, Mail, SmtpHost, SmtpSecurity, SmtpServer,
};

/// Sends plugin mail with lettre; no connection is kept between messages
/// (alerts send a few a minute at most, and each may name another server).
#[derive(Debug, Default)]
pub struct LettreSmtp;

impl SmtpHost for LettreSmtp {
    fn send<'a>(
        &'a self,
        _plugin: &'a str,
        mail: Mail,
        timeout: Duration,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(async move {
            let message = build(&mail).map_err(CapError::Invalid)?;
            let transport = transport(&mail.server, timeout)?;
            let secret = mail.server.password.clone();
            let username = mail.server.username.clone();
            match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_timeout() => Err(CapError::Timeout),
                Err(e) => {
                    let text = describe(&e, &mail.server);
                    Err(CapError::Unavailable(scrub(
                        &text,
                        username.as_deref(),
                        secret.as_deref(),
                    )))
                }
            }
        })
    }
}

/// The message as RFC 5322 text: parsed addresses, an encoded subject,
/// a UTF-8 plain-text body, a `Date` and a `Message-ID` (at this host's
/// name: receivers' spam filters expect one).
fn build(mail: &Mail) -> Result<Message, String> {
    let mailbox = |field: &str, v: &str| {
        v.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("{field} `{v}` is not an e-mail address: {e}"))
    };
    let mut b = Message::builder()
        .from(mailbox("from", &mail.from)?)
        .subject(mail.subject.clone())
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for (i, to) in mail.to.iter().enumerate() {
        b = b.to(mailbox(&format!("to[{i}]"), to)?);
    }
    b.body(mail.text.clone())
        .map_err(|e| format!("building the message: {e}"))
}

fn transport(
    server: &SmtpServer,
    timeout: Duration,
) -> CapResult<AsyncSmtpTransport<Tokio1Executor>> {
    let tls = match server.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::Starttls => Tls::Required(tls_parameters(server)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(server)?),
    };
    // `builder_dangerous` only means "no TLS preset": the TLS mode is set
    // right here, from the plugin's explicit choice.
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.as_str())
        .port(server.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&server.username, &server.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

/// The public roots, plus the plugin's PEM certificates if it gave any.
fn tls_parameters(server: &SmtpServer) -> CapResult<TlsParameters> {
    let mut b = TlsParameters::builder(server.host.clone());
    if let Some(pem) = server.ca_pem.as_deref().filter(|p| !p.trim().is_empty()) {
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| CapError::Invalid(format!("ca-pem: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| CapError::Invalid(format!("TLS settings: {e}")))
}

/// What went wrong, with the server named and its answer quoted.
fn describe(e: &lettre::transport::smtp::Error, server: &SmtpServer) -> String {
    let at = format!("{}:{}", server.host, server.port);
    if e.is_permanent() || e.is_transient() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let login = matches!(code.as_str(), "530" | "534" | "535" | "454");
        let what = if login && server.username.is_some() {
            "refused the login"
        } else {
            "refused the message"
        };
        format!("SMTP server {at} {what}: {e}")
    } else if e.is_tls() {
        format!("TLS with SMTP server {at} failed: {e}")
    } else {
        format!("cannot talk to SMTP server {at}: {e}")
    }
}

/// `text` without the password, the username and their base64 forms
/// (AUTH PLAIN sends `\0user\0password` in base64, AUTH LOGIN each apart).
fn scrub(text: &str, username: Option<&str>, password: Option<&str>) -> String {
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return text.to_owned();
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = username.unwrap_or("");
    let mut out = text.to_owned();
    for secret in [
        b64(&format!("\0{user}\0{password}")),
        b64(password),
        password.to_owned(),
    ] {
        out = out.replace(&secret, "(secret)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> Mail {
        Mail {
            server: SmtpServer {
                host: "127.0.0.1".into(),
                port: 1,
                security: SmtpSecurity::Starttls,
                username: Some("ops".into()),
                password: Some("pw-1".into()),
                ca_pem: None,
            },
            from: "WakeDock <wd@example.org>".into(),
            to: vec!["ops@example.org".into(), "Two <two@example.org>".into()],
            subject: "[FIRING] crash on api (critical) — ünïcode".into(),
            text: "container api exited with code 1".into(),
            timeout_ms: None,
        }
    }

    #[test]
    fn the_message_is_rfc_5322_with_every_recipient() {
        let text = String::from_utf8(build(&mail()).unwrap().formatted()).unwrap();
        for header in ["From: ", "To: ", "Subject: ", "Date: ", "Message-ID: "] {
            assert!(text.contains(header), "{header} missing in {text}");
        }
        assert!(text.contains("two@example.org"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        let mut bad = mail();
        bad.to = vec!["not an address".into()];
        assert!(build(&bad).unwrap_err().starts_with("to[0]"));
    }

    #[test]
    fn passwords_are_scrubbed_in_every_wire_form() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("\0ops\0pw-1");
        let text = format!("535 no: pw-1 {b64} cHctMQ==");
        let clean = scrub(&text, Some("ops"), Some("pw-1"));
        assert!(!clean.contains("pw-1") && !clean.contains(&b64) && !clean.contains("cHctMQ=="));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_names_it() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let e = LettreSmtp
            .send("alerts", mail(), Duration::from_secs(5))
            .await
            .unwrap_err();
        match e {
            CapError::Unavailable(m) => {
                assert!(m.contains("127.0.0.1:1"), "{m}");
                assert!(!m.contains("pw-1"), "{m}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
