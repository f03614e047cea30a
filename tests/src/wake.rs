//! Helpers of the wake-on-request end-to-end tests (`wake_e2e`, `edge`).

use std::time::Duration;

use futures::StreamExt;

use crate::{eventually, free_port, AppSpec, TestContainer, TestHost};

/// An HTTP client for loopback tests: no proxy, a minute at most.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A stopped test app publishing 8080 on a fixed loopback port.
pub async fn sleeping_app(
    env: &[(&str, &str)],
    healthcheck: Option<Duration>,
) -> (TestContainer, u16) {
    let port = free_port();
    let app = TestContainer::from_spec(AppSpec {
        env,
        healthcheck,
        host_port: Some(port),
        ..AppSpec::default()
    })
    .await;
    (app, port)
}

/// Waits until the host's subscription snapshot (read with the bridge
/// `token`) names `service`, then gives the bridges' subscriptions a
/// moment to carry it: before that a bridge knows neither the strategy nor
/// the ignore lists.
pub async fn published(host: &TestHost, token: &str, service: &str) {
    eventually(Duration::from_secs(10), "first state", || async {
        let r = client()
            .get(host.url("/api/v1/wake/subscribe"))
            .bearer_auth(token)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        let mut body = String::new();
        let mut stream = r.bytes_stream();
        while let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            body.push_str(&String::from_utf8_lossy(&chunk));
            if body.contains("\n\n") {
                break;
            }
        }
        body.contains(&format!("\"service\":\"{service}\""))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}
