//! `container-logs` (API 0.1.4) through the runtime with a real guest, the
//! alerts plugin (its `log` rules follow logs): its subscription reaches
//! the host within the grant's selector, the lines the host hands over
//! reach its `on-event` within the grant's lines per second (drops are
//! counted to it), a grant without the capability refuses and audits, and
//! an unload ends what it followed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wakedock_plugin_runtime::caps::Delivered;
use wakedock_plugin_runtime::manifest::ContainerLogsCap;
use wakedock_plugin_runtime::testing::{get, log_line, test_caller, TestHost};
use wakedock_plugin_runtime::{Grant, PluginRuntime};

fn alerts_config() -> serde_json::Value {
    serde_json::json!({
        "instance": "t",
        "rules": [{"name": "boom", "kind": "log", "pattern": "^boom", "count": 3, "window": "1m"}],
    })
}

/// The alerts plugin, scoped to install `t`, at most 2 lines a second;
/// `logs: false` leaves `container-logs` out of the grant.
async fn load_alerts(host: &TestHost, logs: bool) -> PluginRuntime {
    host.containers
        .add("c1", "api", true, &[("wakedock.instance", "t")]);
    let rt = runtime(host);
    let m = manifest("plugins/alerts/plugin.toml");
    let mut g = Grant::approve_all(&m);
    if let Some(c) = g.capabilities.containers.as_mut() {
        c.selector = Some("wakedock.instance=t".into());
    }
    g.capabilities.container_logs = logs.then_some(ContainerLogsCap {
        max_lines_per_second: Some(2),
        ..ContainerLogsCap::default()
    });
    rt.load(m, &wasm("wakedock_plugin_alerts"), g, alerts_config())
        .await
        .expect("the alerts plugin loads");
    rt
}

fn line(text: &str, labels: &[(&str, &str)]) -> wakedock_plugin_runtime::caps::LogLine {
    log_line("api", labels, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rule_follows_within_the_grant_and_its_lines_arrive_bounded() {
    let host = TestHost::new();
    let rt = load_alerts(&host, true).await;
    // Its first call makes the rule's subscription.
    rt.tick("alerts").await.unwrap();
    let follows = host.logs.follows("alerts");
    assert_eq!(follows.len(), 1, "one subscription per log rule");
    let f = &follows[0];
    assert_eq!(f.name, "boom");
    assert_eq!(f.pattern.as_ref().unwrap().as_str(), "^boom");
    let mine = [("wakedock.instance", "t")];
    assert!(f.selects("api", &line("", &mine).labels));
    assert!(
        !f.selects("api", &line("", &[("wakedock.instance", "other")]).labels),
        "the grant's selector bounds it"
    );
    // Lines its pattern does not match never reach the plugin.
    assert!(host
        .logs
        .emit("alerts", line("all is well", &mine))
        .await
        .is_empty());
    // Two a second: the third line of the same second is dropped.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.extend(host.logs.emit("alerts", line("boom", &mine)).await);
    }
    let kinds: Vec<&Delivered> = outcomes.iter().map(|(_, d)| d).collect();
    assert_eq!(
        kinds,
        [
            &Delivered::Delivered,
            &Delivered::Delivered,
            &Delivered::Dropped
        ],
        "{outcomes:?}"
    );
    // Once the second is over, the next line goes, and says one was lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = host.logs.emit("alerts", line("boom", &mine)).await;
        if out[0].1 == Delivered::Delivered {
            break;
        }
        assert!(Instant::now() < deadline, "never delivered again: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        host.log_lines("alerts")
            .iter()
            .any(|l| l.contains("log lines were dropped")),
        "{:?}",
        host.log_lines("alerts")
    );
    // Three delivered matches within the window: the rule fired.
    let r = rt
        .handle_http("alerts", get("/summary"), test_caller())
        .await
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(summary["firing"], 1, "{summary}");
    // Unloaded: the host follows nothing for it any more.
    rt.unload("alerts").unwrap();
    assert!(host.logs.follows("alerts").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_capability_following_is_refused_and_audited() {
    let host = TestHost::new();
    let rt = load_alerts(&host, false).await;
    rt.tick("alerts").await.unwrap();
    assert!(host.logs.follows("alerts").is_empty());
    let audit = host.audit_entries();
    assert!(
        audit.iter().any(|e| e.capability == "container-logs"),
        "{audit:?}"
    );
    assert!(
        host.log_lines("alerts")
            .iter()
            .any(|l| l.contains("log rules cannot follow container logs")),
        "the plugin says why its log rules are blind: {:?}",
        host.log_lines("alerts")
    );
}
