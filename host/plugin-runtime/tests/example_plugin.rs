//! The example plugin through the real runtime with in-memory capabilities.

mod common;

use common::*;
use wakedock_plugin_runtime::caps::{
    ContainerEvent, ContainerEventKind, Event, Health, MetricKind,
};
use wakedock_plugin_runtime::testing::{get, test_caller};
use wakedock_plugin_runtime::{Grant, PluginHealth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_counter_persists_in_storage_across_calls_and_upgrades() {
    let host = host_with_containers();
    let rt = runtime(&host);
    load_example(&rt).await;

    for expected in 1..=3u64 {
        let resp = rt
            .handle_http("example", get("/hello"), test_caller())
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{}", body(&resp));
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["hits"], expected);
        assert_eq!(v["message"], "hello from WakeDock");
    }

    // Upgrade in place with another config: new instances, same storage.
    let m = example_manifest();
    let g = Grant::approve_all(&m);
    rt.upgrade(
        m,
        &wasm("wakedock_plugin_example"),
        g,
        serde_json::json!({"greeting": "bonjour"}),
    )
    .await
    .unwrap();
    let resp = rt
        .handle_http("example", get("/hello"), test_caller())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["hits"], 4);
    assert_eq!(v["message"], "bonjour");

    // The caller the host authenticated is visible through `auth`.
    let who = rt
        .handle_http("example", get("/whoami"), test_caller())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&who.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"user": "alice", "role": "user", "can_write_containers": false})
    );

    let missing = rt
        .handle_http("example", get("/nope"), test_caller())
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_route_sees_only_the_selector() {
    let host = host_with_containers();
    let rt = runtime(&host);
    load_example(&rt).await;
    let resp = rt
        .handle_http("example", get("/containers"), test_caller())
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", body(&resp));
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let mut seen: Vec<(String, String)> = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("db".to_owned(), "exited".to_owned()),
            ("web".to_owned(), "running".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_sets_gauge_and_publishes_and_events_are_counted() {
    let host = host_with_containers();
    let rt = runtime(&host);
    load_example(&rt).await;

    rt.tick("example").await.unwrap();
    let gauge = host
        .metrics
        .values
        .lock()
        .unwrap()
        .get(&(
            "example".to_owned(),
            "running_containers".to_owned(),
            vec![],
        ))
        .copied();
    assert_eq!(gauge, Some(1.0), "one visible running container (web)");
    let published = host.events.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1, "example.tick");
    assert!(published[0].2.contains("\"running\":1"));

    let registered = host.metrics.registered.lock().unwrap().clone();
    assert!(registered.iter().any(|(p, d)| p == "example"
        && d.name == "container_events_total"
        && d.kind == MetricKind::Counter));

    let event = |labels: Vec<(String, String)>| {
        Event::Container(ContainerEvent {
            kind: ContainerEventKind::Died,
            container_id: "c1".into(),
            container_name: "web".into(),
            labels,
            health: Health::None,
            exit_code: Some(137),
            at_ms: 0,
        })
    };
    // Matching the selector: delivered.
    let delivered = rt
        .dispatch_event(event(vec![("wakedock.enable".into(), "true".into())]))
        .await;
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].1.is_ok());
    // Outside the selector: not delivered at all.
    let skipped = rt
        .dispatch_event(event(vec![("other".into(), "x".into())]))
        .await;
    assert!(skipped.is_empty());
    let died = host
        .metrics
        .values
        .lock()
        .unwrap()
        .get(&(
            "example".to_owned(),
            "container_events_total".to_owned(),
            vec!["died".to_owned()],
        ))
        .copied();
    assert_eq!(died, Some(1.0));

    let st = rt.plugin_status("example").unwrap();
    assert_eq!(st.health, PluginHealth::Enabled);
    assert_eq!(st.errors, 0);
    assert!(st.calls >= 2);
    assert!(st.memory_high_water_bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_plugin_refuses_calls_until_enabled() {
    let host = host_with_containers();
    let rt = runtime(&host);
    load_example(&rt).await;
    rt.disable("example").unwrap();
    let err = rt
        .handle_http("example", get("/hello"), test_caller())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disabled"), "{err}");
    assert_eq!(
        rt.plugin_status("example").unwrap().health,
        PluginHealth::Disabled
    );
    rt.enable("example").unwrap();
    assert_eq!(
        rt.handle_http("example", get("/hello"), test_caller())
            .await
            .unwrap()
            .status,
        200
    );
    rt.unload("example").unwrap();
    assert!(rt.status().is_empty());
}
