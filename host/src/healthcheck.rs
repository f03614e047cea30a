//! `wakedock healthcheck`: asks the local server's `/health` and turns the
//! answer into an exit status, for Docker's `HEALTHCHECK` (a minimal image
//! has no curl or wget).
//!
//! The server is found from the same configuration `serve` reads: its
//! `wakedock.host`/`wakedock.port`, with a wildcard listen address (`0.0.0.0`,
//! `::`) asked on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;

/// Where the local server answers, from its listen address.
pub fn local_url(config: &Config) -> String {
    let ip = match config.wakedock.host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, config.wakedock.port))
}

/// Asks `{base}/health` within `timeout`. `Ok` with a one-line summary when
/// the server answers 200; an error naming what is down otherwise.
pub async fn check(base: &str, timeout: Duration) -> anyhow::Result<String> {
    let url = format!("{}/health", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let summary = summarize(&body);
    if !status.is_success() {
        bail!("{url} answered {status}: {summary}");
    }
    Ok(format!("healthy: {summary}"))
}

/// `database up (sqlite), docker down: <why>` from a `/health` body.
fn summarize(body: &serde_json::Value) -> String {
    let part = |name: &str| {
        let c = &body[name];
        let status = c["status"].as_str().unwrap_or("unknown");
        match c["error"].as_str() {
            Some(e) => format!("{name} {status}: {e}"),
            None => format!("{name} {status}"),
        }
    };
    let mut db = part("database");
    if let Some(b) = body["database_backend"].as_str() {
        db.push_str(&format!(" ({b})"));
    }
    format!("{db}, {}", part("docker"))
}

/// The subcommand: exit status 0 when healthy.
pub async fn run(config: &Config, url: Option<String>, timeout: Duration) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| local_url(config));
    let line = check(&base, timeout).await?;
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        let mut c = Config::default();
        c.wakedock.port = 8123;
        c.wakedock.host = "0.0.0.0".parse().unwrap();
        assert_eq!(local_url(&c), "http://127.0.0.1:8123");
        c.wakedock.host = "::".parse().unwrap();
        assert_eq!(local_url(&c), "http://[::1]:8123");
        c.wakedock.host = "10.1.2.3".parse().unwrap();
        assert_eq!(local_url(&c), "http://10.1.2.3:8123");
    }

    #[test]
    fn summary_names_what_is_down() {
        let body = serde_json::json!({
            "status": "degraded",
            "database": {"status": "up"},
            "database_backend": "sqlite",
            "docker": {"status": "down", "error": "permission denied"},
        });
        assert_eq!(
            summarize(&body),
            "database up (sqlite), docker down: permission denied"
        );
    }

    #[tokio::test]
    async fn fails_when_nothing_listens() {
        // Bind then drop: the port is closed for the check.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = check(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no answer"), "{err:#}");
    }
}
