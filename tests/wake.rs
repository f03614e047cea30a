//! Wake-on-request, host side (issue 4, in progress): the bridge's state
//! subscription and its authentication.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::*;

const TOKEN: &str = "bridge-token-for-tests-0123";

/// Reads server-sent events until `n` complete events have arrived.
async fn read_events(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    n: usize,
) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.len() < n {
            let chunk = body.next().await.expect("stream open").unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            for (name, data) in drain_sse(&mut buf) {
                events.push((name, serde_json::from_str(&data).unwrap()));
            }
        }
    })
    .await
    .expect("events within 10 s");
    events
}

/// Each document a newer one than the last (the hub keeps the highest).
static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn doc(service: &str, s: &str, reason: Option<&str>, members: Value) -> Value {
    json!({
        "service": service, "state": s, "strategy": "dynamic",
        "wake_timeout_ms": 30000, "ignore_user_agents": ["UptimeRobot"],
        "ignore_paths": ["/healthz"], "display_name": "Blog", "reason": reason,
        "theme": null, "members": members,
        "seq": SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    })
}

fn state(service: &str, s: &str) -> String {
    doc(service, s, None, json!([])).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_subscription_needs_a_bridge_token() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
    })
    .await;
    let http = reqwest::Client::new();
    let url = host.url("/api/v1/wake/subscribe");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_code(r).await, "unauthorized");
    // A user's session is not a bridge token.
    let admin = host.admin().await;
    assert_eq!(
        admin.get("/api/v1/wake/subscribe").await.status(),
        StatusCode::UNAUTHORIZED
    );
    host.stop().await.unwrap();

    // No token configured at all: refused with a message saying so.
    let host = TestHost::start(Backend::Sqlite).await;
    let r = http
        .get(host.url("/api/v1/wake/subscribe"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("bridge_tokens"),
        "{p}"
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_gets_a_snapshot_then_each_change_from_the_wake_plugin() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
    })
    .await;
    // A state known before the bridge connects is in its snapshot.
    host.bus
        .publish("wake", "wake.state", &state("blog", "asleep"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::Client::new()
        .get(host.url("/api/v1/wake/subscribe"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = r.bytes_stream();
    let first = read_events(&mut body, 1).await;
    assert_eq!(first[0].0, "snapshot");
    assert_eq!(first[0].1["services"][0]["service"], "blog");
    assert_eq!(first[0].1["services"][0]["state"], "asleep");
    assert_eq!(first[0].1["services"][0]["ignore_paths"][0], "/healthz");

    // Changes follow as they happen; other plugins cannot forge them.
    host.bus
        .publish("not-wake", "wake.state", &state("blog", "awake"));
    let waking = state("blog", "waking");
    host.bus.publish("wake", "wake.state", &waking);
    host.bus
        .publish("wake", "wake.state", &state("blog", "awake"));
    let next = read_events(&mut body, 2).await;
    assert_eq!(
        next[0],
        ("state".to_string(), serde_json::from_str(&waking).unwrap())
    );
    assert_eq!(next[1].1["state"], "awake");
    drop(body);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_page_and_its_progress_stream() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(host.url(path)).bearer_auth(TOKEN).send();

    // Unknown service: 404, for the page and its stream.
    let r = get("/api/v1/wake/blog/page").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get("/api/v1/wake/blog/events").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // The page needs the bridge token too.
    let r = http
        .get(host.url("/api/v1/wake/blog/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    host.bus
        .publish("wake", "wake.state", &state("blog", "waking"));
    let page = eventually(Duration::from_secs(5), "page served", || async {
        let r = get("/api/v1/wake/blog/page").await.ok()?;
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.headers()["cache-control"], "no-store");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Starting Blog"), "{html}");
    assert!(html.contains("Waking up"));
    assert!(html.contains(r#""/.wakedock/blog/events""#), "{html}");

    // The stream starts with the current state and carries only this
    // service's changes.
    let r = get("/api/v1/wake/blog/events").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let first = read_events(&mut body, 1).await;
    assert_eq!(first[0].1["state"], "waking");
    host.bus
        .publish("wake", "wake.state", &state("other", "awake"));
    host.bus
        .publish("wake", "wake.state", &state("blog", "awake"));
    let next = read_events(&mut body, 1).await;
    assert_eq!(
        (next[0].1["service"].as_str(), next[0].1["state"].as_str()),
        (Some("blog"), Some("awake"))
    );
    drop(body);
    host.stop().await.unwrap();
}

// A failed wake's waiting page says so: the reason, the failed member's
// last log lines (read from Docker), a retry, and no "starting… reloads
// when ready"; its progress stream carries the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wake_shows_its_reason_logs_and_a_retry() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
    })
    .await;
    // A member that printed something and died.
    let app = TestContainer::run(&[
        ("APP_NAME", "crashy"),
        ("EXIT_AFTER_MS", "100"),
        ("EXIT_CODE", "3"),
    ])
    .await;
    let d = docker().await;
    eventually(Duration::from_secs(10), "the member exited", || async {
        let i = d
            .inspect_container(
                &app.name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()?;
        (!i.state?.running?).then_some(())
    })
    .await;
    let reason = format!(
        "\"{}\": unavailable: the container exited with code 3",
        app.name
    );
    host.bus.publish(
        "wake",
        "wake.state",
        &doc(
            "blog",
            "failed",
            Some(&reason),
            json!([{"name": app.name, "status": "failed"}]),
        )
        .to_string(),
    );
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(host.url(path)).bearer_auth(TOKEN).send();
    let html = eventually(Duration::from_secs(5), "the failure page", || async {
        let t = get("/api/v1/wake/blog/page")
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("Could not start").then_some(t)
    })
    .await;
    assert!(
        html.contains("<title>Could not start Blog</title>"),
        "{html}"
    );
    assert!(
        html.contains(&reason.replace('"', "&#34;"))
            || html.contains(&reason.replace('"', "&quot;")),
        "{html}"
    );
    assert!(
        html.contains("exiting with 3"),
        "the member's log lines: {html}"
    );
    assert!(html.contains(r#"id="retry" href="""#), "{html}");
    assert!(
        html.contains(r#"<small id="footer">Retry starts the service again."#),
        "{html}"
    );
    assert!(
        !html.contains(r#"http-equiv="refresh""#),
        "a failure must not retry by itself: {html}"
    );

    let r = get("/api/v1/wake/blog/events").await.unwrap();
    let mut body = r.bytes_stream();
    let evs = read_events(&mut body, 2).await;
    assert_eq!(evs[0].1["state"], "failed");
    assert_eq!(evs[1].0, "logs");
    assert_eq!(evs[1].1["member"], app.name.as_str());
    assert!(
        evs[1].1["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("exiting with 3")),
        "{:?}",
        evs[1]
    );
    // A retry (the bridge starts a wake) turns the page back to waking.
    host.bus
        .publish("wake", "wake.state", &state("blog", "waking"));
    let evs = read_events(&mut body, 1).await;
    assert_eq!(evs[0].1["state"], "waking");
    drop(body);
    let html = get("/api/v1/wake/blog/page")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Starting Blog"), "{html}");
    host.stop().await.unwrap();
}

// The host's wake endpoint answers 404 for a name the hub does not know,
// before any plugin call or metric series: a stranger cannot grow
// /metrics or use up the wake plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_cost_no_plugin_call_and_no_metric_series() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
    })
    .await;
    // No wake plugin is installed: a plugin call would answer 503.
    let http = reqwest::Client::new();
    host.bus
        .publish("wake", "wake.state", &state("known", "asleep"));
    eventually(Duration::from_secs(5), "known service", || async {
        let r = http
            .post(host.url("/api/v1/wake/known"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let metrics_before = host.metrics().await;
    for i in 0..200 {
        let r = http
            .post(host.url(&format!("/api/v1/wake/stranger-{i}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(problem_code(r).await, "unknown_service");
    }
    let r = http
        .post(host.url("/api/v1/wake/activity"))
        .bearer_auth(TOKEN)
        .json(&json!({"services": {"stranger-1": {"requests": 3}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "unknown names are left out, not sent on"
    );
    let metrics = host.metrics().await;
    assert!(!metrics.contains("stranger"), "a series per unknown name");
    let series = |t: &str| t.lines().filter(|l| l.starts_with("wakedock_wake")).count();
    assert_eq!(series(&metrics), series(&metrics_before), "{metrics}");
    host.stop().await.unwrap();
}
