//! The alerts plugin end to end (issue 12): the real engine, the real host
//! with the alerts plugin (and the wake plugin where a test needs it), and
//! loopback receivers standing in for the notification services.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wakedock_tests::receiver::{Received, Receiver};
use wakedock_tests::*;

const SECRET: &str = "sekret-token-123";

fn alerts_plugin(config: Value) -> wakedock::config::PluginDecl {
    serde_json::from_value(json!({
        "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/alerts/plugin.toml"),
        "wasm": wasm_dir().join("wakedock_plugin_alerts.wasm"),
        "config": config,
    }))
    .unwrap()
}

fn wake_plugin() -> wakedock::config::PluginDecl {
    serde_json::from_value(json!({
        "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml"),
        "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
    }))
    .unwrap()
}

/// A webhook channel `hook` to `rx`.
fn hook(rx: &Receiver) -> Value {
    json!({"name": "hook", "type": "webhook", "url": rx.url("/hook"), "headers": {"x-token": SECRET}})
}

/// A receiver, a fresh install scope and a host whose alerts plugin has
/// `rules` and the webhook channel `hook` to the receiver.
async fn setup(rules: Value) -> (Receiver, String, TestHost) {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let host = host_with(
        &instance,
        json!({"rules": rules, "channels": [hook(&rx)]}),
        false,
    )
    .await;
    (rx, instance, host)
}

/// Polls the plugin's `/summary` until `f` holds of it.
async fn summary_until(api: &ApiClient, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(30), what, || {
        let api = api.clone();
        let f = &f;
        async move {
            let s = api.get_json("/api/v1/plugins/alerts/summary").await;
            f(&s).then_some(s)
        }
    })
    .await
}

async fn host_with(instance: &str, config: Value, wake: bool) -> TestHost {
    TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.instance = Some(instance.to_owned());
        if wake {
            c.plugins.push(wake_plugin());
        }
        c.plugins.push(alerts_plugin(config));
    })
    .await
}

/// A test app in `instance` that exits with `code` after `after_ms`.
async fn exiting(
    instance: &str,
    code: &str,
    after_ms: &str,
    healthcheck: bool,
    policy: Option<&str>,
) -> TestContainer {
    TestContainer::from_spec(AppSpec {
        env: &[("EXIT_AFTER_MS", after_ms), ("EXIT_CODE", code)],
        instance: Some(instance),
        healthcheck: healthcheck.then_some(Duration::from_millis(200)),
        start: true,
        restart_policy: policy,
        ..AppSpec::default()
    })
    .await
}

/// Starts a test container again, outside WakeDock (as `docker start`).
async fn start_again(app: &TestContainer) {
    docker()
        .await
        .start_container(
            &app.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
}

fn statuses(d: &[Received]) -> Vec<String> {
    d.iter()
        .map(|r| r.json()["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A page of the plugin, as a signed-in browser gets it.
async fn page(api: &ApiClient, path: &str) -> String {
    let r = api
        .http
        .get(format!("{}{path}", api.base))
        .header("cookie", format!("wakedock_access={}", api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.text().await.unwrap()
}

/// The newest alert of the history, once there is one.
async fn newest_record(api: &ApiClient, what: &str) -> Value {
    eventually(Duration::from_secs(20), what, || {
        let api = api.clone();
        async move {
            let h = history(&api).await;
            h["history"].as_array().and_then(|a| a.first().cloned())
        }
    })
    .await
}

async fn history(api: &ApiClient) -> Value {
    api.get_json("/api/v1/plugins/alerts/alerts").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_notifies_once_with_its_code_and_recovery_once() {
    let (rx, instance, host) =
        setup(json!([{"name": "crash", "kind": "exit", "severity": "critical"}])).await;
    let app = exiting(&instance, "1", "1500", true, None).await;
    let n = rx
        .first(Duration::from_secs(20), "the firing notification")
        .await;
    assert_eq!(n["status"], "firing");
    assert_eq!(n["rule"], "crash");
    assert_eq!(n["target"], app.name.as_str());
    assert_eq!(n["severity"], "critical");
    assert!(
        n["detail"].as_str().unwrap().contains("exited with code 1"),
        "{n}"
    );
    assert_eq!(
        rx.delivered()[0].header("x-token"),
        Some(SECRET),
        "the channel's header is sent"
    );
    let metrics = host.metrics().await;
    assert!(
        metrics.contains("wakedock_plugin_alerts_firing{rule=\"crash\",severity=\"critical\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("alerts"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The overview and the plugin's page show it.
    let api = host.admin().await;
    let overview = page(&api, "/").await;
    assert!(overview.contains("1 firing"), "{overview}");
    let rules = page(&api, "/p/alerts/rules").await;
    assert!(
        rules.contains(&app.name),
        "the rule's preview lists the container: {rules}"
    );
    let alerts = page(&api, "/p/alerts").await;
    assert!(alerts.contains("exited with code 1"), "{alerts}");
    // Started again (outside WakeDock) and healthy: one recovery.
    start_again(&app).await;
    let d = rx
        .wait_delivered(Duration::from_secs(20), "the recovery", |d| {
            statuses(d).contains(&"resolved".to_owned())
        })
        .await;
    let first_two: Vec<String> = statuses(&d).into_iter().take(2).collect();
    assert_eq!(
        first_two,
        ["firing", "resolved"],
        "one firing, then one recovery"
    );
    let resolved = d[1].json();
    assert!(
        resolved["detail"]
            .as_str()
            .unwrap()
            .contains("healthy again"),
        "{resolved}"
    );
    // The history has it, with the delivery results; the API shows no secret.
    let h = history(&api).await;
    let rec = &h["history"][0];
    assert_eq!(rec["rule"], "crash");
    assert!(rec["resolved_at_ms"].is_u64(), "{rec}");
    let notes = rec["notifications"].as_array().unwrap();
    assert!(notes.iter().all(|n| n["result"] == "delivered"), "{rec}");
    let channels = api
        .get("/api/v1/plugins/alerts/channels")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !channels.contains(SECRET) && !channels.contains("/hook"),
        "{channels}"
    );
    assert!(channels.contains("headers.x-token"), "{channels}");
    let plugins = api.get("/api/v1/plugins").await.text().await.unwrap();
    assert!(
        !plugins.contains(SECRET),
        "the plugin's config is shown without secrets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loop_fires() {
    let (rx, instance, _host) =
        setup(json!([{"name": "loop", "kind": "restart-loop", "count": 3, "window": "1m"}])).await;
    let app = exiting(&instance, "1", "300", false, Some("always")).await;
    let n = rx
        .first(Duration::from_secs(30), "the restart-loop alert")
        .await;
    assert_eq!(
        (n["rule"].as_str(), n["status"].as_str()),
        (Some("loop"), Some("firing"))
    );
    assert!(
        n["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("container {} exited 3 times", app.name)),
        "{n}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_container_fires() {
    let (rx, instance, _host) = setup(json!([{"name": "sick", "kind": "unhealthy"}])).await;
    let app = TestContainer::from_spec(AppSpec {
        env: &[("HEALTHY_AFTER_MS", "3600000")],
        instance: Some(&instance),
        healthcheck: Some(Duration::from_millis(200)),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let n = rx
        .first(Duration::from_secs(30), "the unhealthy alert")
        .await;
    assert_eq!(n["rule"], "sick");
    assert_eq!(n["detail"], format!("container {} is unhealthy", app.name));
}

/// The headline promise: a service put to sleep by the wake plugin, and a
/// container a user stops through WakeDock, are not down. The same stop
/// done outside WakeDock does fire (the test can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_put_to_sleep_or_stopped_by_a_user_fires_nothing() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    // Exit code 0 with a restart policy counts as unexpected: only knowing
    // who stopped it keeps the rule quiet.
    let napper = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        start: true,
        restart_policy: Some("unless-stopped"),
        ..AppSpec::default()
    })
    .await;
    let other = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        start: true,
        restart_policy: Some("unless-stopped"),
        ..AppSpec::default()
    })
    .await;
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.instance = Some(instance.clone());
        c.plugins.push(wake_plugin());
        c.plugins.push(alerts_plugin(json!({
            "rules": [{"name": "down", "kind": "exit"}],
            "channels": [hook(&rx)],
        })));
        c.services = vec![json!({"name": "nap", "members": [napper.name], "idle_timeout": "1s"})];
    })
    .await;
    let api = host.admin().await;
    let status_of = |name: String| {
        let api = api.clone();
        async move {
            let list = api.get_json("/api/v1/plugins/alerts/containers").await;
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name.as_str())
                .map(|c| c["status"].clone())
        }
    };
    // The wake plugin puts it to sleep (idle): the alerts plugin says so.
    let asleep = eventually(Duration::from_secs(30), "the napper asleep", || {
        let f = status_of(napper.name.clone());
        async move { f.await.filter(|s| s["status"] == "asleep") }
    })
    .await;
    assert_eq!(asleep["status"], "asleep");
    // A user stops the other one through the API.
    let r = api
        .post_empty(&format!("/api/v1/containers/{}/stop", other.name))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let stopped = eventually(Duration::from_secs(20), "the user's stop seen", || {
        let f = status_of(other.name.clone());
        async move { f.await.filter(|s| s["status"] == "stopped-by") }
    })
    .await;
    assert_eq!(stopped["by"], "user:admin");
    assert!(
        rx.requests().is_empty(),
        "nothing was sent: {:?}",
        statuses(&rx.requests())
    );
    assert!(history(&api).await["history"]
        .as_array()
        .unwrap()
        .is_empty());
    // The control: started again and stopped outside WakeDock, it fires.
    let docker = docker().await;
    docker
        .start_container(
            &other.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the restart seen", || {
        let f = status_of(other.name.clone());
        async move { f.await.filter(|s| s["status"] == "running") }
    })
    .await;
    docker
        .stop_container(
            &other.name,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .unwrap();
    let d = rx
        .wait_delivered(Duration::from_secs(20), "the stop outside WakeDock", |d| {
            !d.is_empty()
        })
        .await;
    assert_eq!(d[0].json()["target"], other.name.as_str());
    assert!(d[0].json()["detail"]
        .as_str()
        .unwrap()
        .contains("restart policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_sends_nothing_and_keeps_the_history() {
    let (rx, instance, host) = setup(json!([{"name": "crash", "kind": "exit"}])).await;
    let api = host.admin().await;
    let r = api
        .post(
            "/api/v1/plugins/alerts/silences",
            json!({"rules": ["crash"], "duration": "1h", "comment": "deploying"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let _app = exiting(&instance, "3", "500", false, None).await;
    let rec = newest_record(&api, "the silenced alert in the history").await;
    assert!(rec["detail"].as_str().unwrap().contains("code 3"), "{rec}");
    let notes = rec["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{rec}");
    assert_eq!(notes[0]["result"], "suppressed");
    assert!(
        notes[0]["by"].as_str().unwrap().starts_with("silence "),
        "{rec}"
    );
    // The notification would have left in the same call: nothing did.
    let summary = api.get_json("/api/v1/plugins/alerts/summary").await;
    assert_eq!(summary["pending_deliveries"], 0);
    assert_eq!(summary["firing"], 1);
    assert!(rx.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_is_sent_again_every_resend_interval() {
    let (rx, instance, _host) =
        setup(json!([{"name": "crash", "kind": "exit", "resend": "1s"}])).await;
    let _app = exiting(&instance, "1", "500", false, None).await;
    let d = rx
        .wait_delivered(Duration::from_secs(30), "two resends", |d| d.len() >= 3)
        .await;
    assert_eq!(statuses(&d[..3]), ["firing", "resend", "resend"]);
    for w in d[..3].windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(900), "resent after {gap:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_notification_once_it_is_back() {
    let (rx, instance, host) = setup(json!([{"name": "crash", "kind": "exit"}])).await;
    rx.set_status(503);
    let api = host.admin().await;
    let _app = exiting(&instance, "1", "500", false, None).await;
    // Three failures in a row: the channel is reported down.
    let summary = summary_until(&api, "the channel reported down", |s| {
        s["channels_down"] == json!(["hook"])
    })
    .await;
    assert_eq!(summary["pending_deliveries"], 1);
    let page = page(&api, "/p/alerts/").await;
    assert!(page.contains("Channel(s) down: hook"), "{page}");
    rx.set_status(200);
    let d = rx
        .wait_delivered(
            Duration::from_secs(30),
            "the delivery after the receiver is back",
            |d| !d.is_empty(),
        )
        .await;
    assert_eq!(statuses(&d), ["firing"]);
    summary_until(&api, "the channel back up", |s| {
        s["channels_down"] == json!([]) && s["pending_deliveries"] == 0
    })
    .await;
    assert_eq!(rx.delivered().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_pending_when_the_host_is_killed_is_sent_after_restart_once() {
    let (rx, instance, host) = setup(json!([{"name": "crash", "kind": "exit"}])).await;
    rx.set_status(503);
    let _app = exiting(&instance, "1", "500", false, None).await;
    let api = host.admin().await;
    summary_until(&api, "a pending delivery", |s| s["pending_deliveries"] == 1).await;
    let failed_before = rx.requests().len();
    assert!(failed_before >= 1);
    let host = host.kill_and_restart().await;
    rx.set_status(200);
    let d = rx
        .wait_delivered(
            Duration::from_secs(30),
            "the delivery after the restart",
            |d| !d.is_empty(),
        )
        .await;
    assert_eq!(statuses(&d), ["firing"]);
    let api = host.admin().await;
    summary_until(&api, "the outbox empty", |s| s["pending_deliveries"] == 0).await;
    // One more evaluation round after the outbox emptied: still once.
    let h = history(&api).await;
    assert_eq!(h["history"][0]["notifications"][0]["result"], "delivered");
    let sent: Vec<Value> = rx.delivered().iter().map(Received::json).collect();
    assert_eq!(sent.len(), 1, "sent once: {sent:#?}");
}

/// Every HTTP channel kind: the "send test notification" action reaches
/// the receiver with what the real service accepts; secrets never come
/// back; a channel whose host is not allowed says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_kind_sends_a_test_notification() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let host = host_with(
        &instance,
        json!({
            "channels": [
                {"name": "web", "type": "webhook", "url": rx.url("/web"),
                 "body_template": "{\"text\": \"{{title}}\", \"who\": \"{{target}}\"}"},
                {"name": "nt", "type": "ntfy", "base_url": rx.url(""), "topic": "ops", "token": SECRET},
                {"name": "go", "type": "gotify", "base_url": rx.url("/gotify"), "token": SECRET},
                {"name": "dc", "type": "discord", "webhook_url": rx.url(&format!("/api/webhooks/1/{SECRET}"))},
                {"name": "sl", "type": "slack", "webhook_url": rx.url(&format!("/services/{SECRET}"))},
                {"name": "tg", "type": "telegram", "base_url": rx.url(""), "bot_token": SECRET, "chat_id": "42"},
            ],
        }),
        false,
    )
    .await;
    let api = host.admin().await;
    for name in ["web", "nt", "go", "dc", "sl", "tg"] {
        let r = api
            .post_empty(&format!("/api/v1/plugins/alerts/channels/{name}/test"))
            .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["ok"], true, "{name}: {body}");
    }
    let got = rx.delivered();
    let by_path = |p: &str| {
        got.iter().find(|r| r.path == p).unwrap_or_else(|| {
            panic!(
                "nothing at {p}: {:?}",
                got.iter().map(|r| &r.path).collect::<Vec<_>>()
            )
        })
    };
    let web = by_path("/web").json();
    assert_eq!(web["text"], "[TEST] WakeDock test notification");
    assert_eq!(web["who"], "web");
    let nt = by_path("/");
    assert_eq!(nt.json()["topic"], "ops");
    assert_eq!(
        nt.header("authorization"),
        Some(&*format!("Bearer {SECRET}"))
    );
    let go = by_path("/gotify/message");
    assert_eq!(go.header("x-gotify-key"), Some(SECRET));
    assert!(go.json()["message"].is_string());
    assert!(
        by_path(&format!("/api/webhooks/1/{SECRET}")).json()["embeds"][0]["description"]
            .is_string()
    );
    assert!(by_path(&format!("/services/{SECRET}")).json()["text"].is_string());
    let tg = by_path(&format!("/bot{SECRET}/sendMessage")).json();
    assert_eq!(tg["chat_id"], "42");
    let listed = api
        .get("/api/v1/plugins/alerts/channels")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(SECRET), "{listed}");
    let page = page(&api, "/p/alerts/channels").await;
    assert!(!page.contains(SECRET), "the page shows no secret");
    assert!(page.contains("Send test notification"));
    // A channel made through the API to a host the allowlist lacks.
    let r = api
        .post(
            "/api/v1/plugins/alerts/channels",
            json!({"name": "far", "type": "slack", "webhook_url": "http://hooks.example.invalid/x"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = api
        .post_empty("/api/v1/plugins/alerts/channels/far/test")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in the alerts plugin's outbound allowlist"),
        "{body}"
    );
    // A bad rule through the API names its field.
    let r = api
        .post(
            "/api/v1/plugins/alerts/rules",
            json!({"name": "bad", "kind": "restart-loop", "count": 3, "window": "soon"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "window", "{body}");
}

/// A wake that times out fires the wake rule (from the wake plugin's
/// `wake.state`), naming the service and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_that_times_out_fires_the_wake_rule() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let slow = TestContainer::from_spec(AppSpec {
        env: &[("BOOT_DELAY_MS", "60000")],
        instance: Some(&instance),
        start: false,
        ..AppSpec::default()
    })
    .await;
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.instance = Some(instance.clone());
        c.plugins.push(wake_plugin());
        c.plugins.push(alerts_plugin(json!({
            "rules": [{"name": "wto", "kind": "wake-timeout", "severity": "critical", "selector": {"names": ["slow"]}}],
            "channels": [hook(&rx)],
        })));
        c.services = vec![json!({"name": "slow", "members": [slow.name], "wake_timeout": "2s"})];
    })
    .await;
    let api = host.admin().await;
    let r = api.post_empty("/api/v1/services/slow/wake").await;
    assert_eq!(r.status(), 504, "the wake times out");
    let n = rx
        .first(Duration::from_secs(20), "the wake-timeout alert")
        .await;
    assert_eq!(
        (n["rule"].as_str(), n["target"].as_str()),
        (Some("wto"), Some("slow"))
    );
    assert!(
        n["detail"].as_str().unwrap().contains("wake timeout"),
        "{n}"
    );
}

/// A stats threshold held for the rule's `for` fires (the host's container
/// stats, read on the plugin's tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_threshold_held_for_its_duration_fires() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let app = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let _host = host_with(
        &instance,
        json!({
            // Any running process uses more than one byte.
            "rules": [{"name": "mem", "kind": "memory", "bytes": 1, "for": "2s", "selector": {"names": [app.name]}}],
            "channels": [hook(&rx)],
        }),
        false,
    )
    .await;
    // Running before the host started: the plugin finds it at its start.
    let n = rx.first(Duration::from_secs(40), "the memory alert").await;
    assert_eq!(n["rule"], "mem");
    assert!(
        n["detail"].as_str().unwrap().contains("bytes of memory"),
        "{n}"
    );
}

/// A CPU threshold held for its duration fires. The figure comes from the
/// host's stats sampler: a first sample measured by the engine, then
/// one-shot samples whose CPU the host computes from two samples' counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_threshold_held_for_its_duration_fires() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let app = TestContainer::from_spec(AppSpec {
        env: &[("BUSY_THREADS", "1")],
        instance: Some(&instance),
        // A fifth of a core: enough to measure, little for a busy machine.
        cpus: Some(0.2),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let _host = host_with(
        &instance,
        json!({
            // `for` longer than the sampler's 5 s refresh: the threshold must
            // hold across refreshed samples, not only the first one.
            "rules": [{"name": "cpu", "kind": "cpu", "percent": 5, "for": "8s", "selector": {"names": [app.name]}}],
            "channels": [hook(&rx)],
        }),
        false,
    )
    .await;
    let n = rx.first(Duration::from_secs(60), "the CPU alert").await;
    assert_eq!(n["rule"], "cpu");
    assert!(n["detail"].as_str().unwrap().contains("CPU"), "{n}");
}

/// A container that allocates past its memory limit is OOM-killed: the
/// `oom` rule fires once, and the `exit` rule's notification says so too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_fires_the_oom_rule() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let _host = host_with(
        &instance,
        json!({
            "rules": [{"name": "oom", "kind": "oom", "severity": "critical"}],
            "channels": [hook(&rx)],
        }),
        false,
    )
    .await;
    let app = TestContainer::from_spec(AppSpec {
        env: &[("ALLOCATE_MB", "256")],
        instance: Some(&instance),
        memory_limit: Some(32 * 1024 * 1024),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let n = rx.first(Duration::from_secs(30), "the OOM alert").await;
    assert_eq!(n["rule"], "oom", "{n}");
    assert_eq!(n["target"], app.name, "{n}");
    let inspect = docker()
        .await
        .inspect_container(
            &app.name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_eq!(
        inspect.state.and_then(|s| s.oom_killed),
        Some(true),
        "the engine says OOM"
    );
}

/// A maintenance window from the config file covering now: nothing sent,
/// the history keeps the alert with the window named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_sends_nothing_and_keeps_the_history() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let now = std::time::SystemTime::now();
    let start = humantime::format_rfc3339_seconds(now - Duration::from_secs(60)).to_string();
    let end = humantime::format_rfc3339_seconds(now + Duration::from_secs(3600)).to_string();
    let host = host_with(
        &instance,
        json!({
            "rules": [{"name": "crash", "kind": "exit"}],
            "channels": [hook(&rx)],
            "maintenance": [{"name": "upgrade", "start": start, "end": end}],
        }),
        false,
    )
    .await;
    let api = host.admin().await;
    let _app = exiting(&instance, "2", "500", false, None).await;
    let rec = newest_record(&api, "the alert in the history").await;
    assert_eq!(rec["notifications"][0]["result"], "suppressed", "{rec}");
    assert_eq!(rec["notifications"][0]["by"], "maintenance window upgrade");
    let summary = api.get_json("/api/v1/plugins/alerts/summary").await;
    assert_eq!(summary["pending_deliveries"], 0);
    assert!(rx.requests().is_empty());
    let page = page(&api, "/p/alerts/silences").await;
    assert!(
        page.contains("upgrade") && page.contains("active"),
        "{page}"
    );
}

/// A flapping container (restart policy, exits every few hundred ms): with
/// a cooldown, people hear of it once while the history records every
/// firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_keeps_a_flapping_container_to_one_notification() {
    let (rx, instance, host) =
        setup(json!([{"name": "flap", "kind": "exit", "cooldown": "1h"}])).await;
    let api = host.admin().await;
    let _app = exiting(&instance, "1", "300", false, Some("always")).await;
    eventually(
        Duration::from_secs(40),
        "three firings in the history",
        || {
            let api = api.clone();
            async move {
                let h = history(&api).await;
                (h["history"].as_array()?.len() >= 3).then_some(())
            }
        },
    )
    .await;
    let d = rx.delivered();
    assert_eq!(statuses(&d), ["firing"], "one notification while it flaps");
}

/// The pages' forms (as a browser posts them, with the host's form token):
/// a channel is made and tested, a rule is made, and the rule's alert then
/// shows on the alerts page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_make_a_channel_test_it_and_make_a_rule() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let host = host_with(&instance, json!({"allow_hosts": ["127.0.0.1"]}), false).await;
    let api = host.admin().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let (api, http) = (api.clone(), no_redirects.clone());
        async move {
            let html = page(
                &api,
                path.rsplit_once("/test")
                    .map_or(path, |_| "/p/alerts/channels"),
            )
            .await;
            let token = html
                .split("name=\"wd_token\" value=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("the host puts its token in the page's forms")
                .to_owned();
            let mut form = fields;
            form.push(("wd_token", token));
            let r = http
                .post(format!("{}{path}", api.base))
                .header("cookie", format!("wakedock_access={}", api.token))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "POST {path}");
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    post(
        "/p/alerts/channels",
        vec![
            ("name", "pagehook".into()),
            ("type", "webhook".into()),
            ("url", rx.url("/from-page")),
            // The form's e-mail security select sends a value for every type.
            ("security", "starttls".into()),
        ],
    )
    .await;
    let channels = api.get_json("/api/v1/plugins/alerts/channels").await;
    assert_eq!(channels[0]["name"], "pagehook", "{channels}");
    post("/p/alerts/channels/pagehook/test", vec![]).await;
    let n = rx
        .first(Duration::from_secs(10), "the page's test notification")
        .await;
    assert_eq!(n["status"], "test");
    // The channel's health on its page says the test went through.
    let shown = page(&api, "/p/alerts/channels").await;
    assert!(shown.contains("<span class=\"badge\">ok</span>"), "{shown}");
    post(
        "/p/alerts/rules",
        vec![
            ("name", "paged".into()),
            ("kind", "exit".into()),
            ("severity", "critical".into()),
            ("channels", "pagehook".into()),
        ],
    )
    .await;
    let _app = exiting(&instance, "4", "500", false, None).await;
    rx.wait_delivered(Duration::from_secs(20), "the page-made rule's alert", |d| {
        d.len() >= 2
    })
    .await;
    let alerts = page(&api, "/p/alerts").await;
    assert!(alerts.contains("exited with code 4"), "{alerts}");
    assert!(
        alerts.contains("Firing now: <span class=\"firing-count\">1</span>"),
        "{alerts}"
    );
    // An e-mail channel from the same form: recipients comma-separated, the
    // port a number, the password kept and not shown.
    let location = post(
        "/p/alerts/channels",
        vec![
            ("name", "pagemail".into()),
            ("type", "email".into()),
            ("server", "127.0.0.1".into()),
            ("port", "2525".into()),
            ("security", "starttls".into()),
            ("username", "ops".into()),
            ("password", SECRET.into()),
            ("from", "WakeDock <wd@example.org>".into()),
            ("to", "a@example.org, b@example.org".into()),
        ],
    )
    .await;
    let channels = api.get_json("/api/v1/plugins/alerts/channels").await;
    let mail = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pagemail")
        .unwrap_or_else(|| panic!("not created ({location}): {channels}"));
    assert_eq!(mail["settings"]["to"], "a@example.org, b@example.org");
    assert_eq!(mail["settings"]["port"], "2525");
    assert_eq!(mail["secrets_set"], json!(["password"]));
    assert!(!channels.to_string().contains(SECRET), "{channels}");
}

/// `wakedock_docker_requests_total{op="stats"}` of the host.
async fn stats_requests(host: &TestHost) -> u64 {
    host.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("wakedock_docker_requests_total{op=\"stats\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A stats rule makes the plugin ask for every container's stats on each
/// 1 s tick; the host samples only the install's running containers, each
/// at most once per 5 s (before: one inspect and one stats per container
/// on the whole engine per tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_rules_sample_each_container_once_per_interval() {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let _apps = futures::future::join_all((0..3).map(|_| {
        TestContainer::from_spec(AppSpec {
            instance: Some(&instance),
            start: true,
            ..AppSpec::default()
        })
    }))
    .await;
    let host = host_with(
        &instance,
        json!({
            "rules": [{"name": "mem", "kind": "memory", "bytes": 1u64 << 40, "for": "1m"}],
            "channels": [hook(&rx)],
        }),
        false,
    )
    .await;
    // Sampling has begun.
    eventually(Duration::from_secs(20), "a first stats request", || async {
        (stats_requests(&host).await > 0).then_some(())
    })
    .await;
    let (before, t0) = (stats_requests(&host).await, Instant::now());
    // A measuring window (ticks run every second meanwhile), not a wait
    // for a state.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (after, took) = (stats_requests(&host).await, t0.elapsed());
    // The plugin sees this install's 3 containers only (its grant is
    // narrowed to `wakedock.instance`), each sampled at most once per 5 s.
    let most = 3 * (took.as_secs() / 5 + 2);
    assert!(
        after - before <= most,
        "{} stats requests in {took:?} for 3 containers (at most {most})",
        after - before
    );
}

/// `log` rules on a real container's lines (its request log): the host
/// follows the container from its start (it starts after the rules) and
/// hands over only lines a rule's pattern matches. A config-file rule
/// fires once its count is reached within its window; one created through
/// the API follows at once; one whose pattern nothing matches sends nothing
/// although lines flow (a host delivering every line would fire it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rules_fire_once_at_their_count_and_other_lines_send_nothing() {
    let (rx, instance, host) = setup(json!([
        {"name": "boom", "kind": "log", "pattern": "^GET /boom", "count": 3, "window": "1m", "severity": "critical"},
        {"name": "panics", "kind": "log", "pattern": "panic"},
    ]))
    .await;
    let api = host.admin().await;
    // The plugin's first call makes its subscriptions.
    summary_until(&api, "the plugin loaded", |_| true).await;
    let r = api
        .post(
            "/api/v1/plugins/alerts/rules",
            json!({"name": "fine", "kind": "log", "pattern": "^GET /fine", "count": 2, "window": "1m"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let port = free_port();
    let app = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        host_port: Some(port),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    eventually(Duration::from_secs(20), "the app answers", || get("/")).await;
    // Lines the rules' patterns do not match (`GET / 200`, `booting`, ...)
    // came first; then two `GET /fine`: the API rule's count.
    for _ in 0..2 {
        assert_eq!(get("/fine").await, Some(404));
    }
    let fine = rx
        .first(Duration::from_secs(20), "the API rule's notification")
        .await;
    assert_eq!(fine["status"], "firing");
    assert_eq!(fine["rule"], "fine");
    assert_eq!(fine["target"], app.name.as_str());
    // Two of boom's three: not yet. The third fires it, once.
    for _ in 0..3 {
        assert_eq!(get("/boom").await, Some(404));
    }
    let d = rx
        .wait_delivered(Duration::from_secs(20), "the boom notification", |d| {
            d.iter().any(|r| r.json()["rule"] == "boom")
        })
        .await;
    let boom = d
        .iter()
        .map(|r| r.json())
        .find(|n| n["rule"] == "boom")
        .unwrap();
    assert_eq!(boom["status"], "firing");
    assert_eq!(boom["severity"], "critical");
    assert_eq!(boom["target"], app.name.as_str());
    let detail = boom["detail"].as_str().unwrap();
    assert!(
        detail.contains("logged 3 lines matching `^GET /boom` within 1m")
            && detail.contains("(last: GET /boom 404)"),
        "{detail}"
    );
    // Every line of the container was read before boom's last one: the
    // `panics` rule, and nothing else, stayed quiet; each rule told once.
    let rules: Vec<Value> = rx
        .requests()
        .iter()
        .map(|r| r.json()["rule"].clone())
        .collect();
    assert_eq!(
        rules,
        [json!("fine"), json!("boom")],
        "{:?}",
        statuses(&rx.requests())
    );
    let h = history(&api).await;
    let recorded: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(!recorded.contains(&"panics"), "{recorded:?}");
}

/// The host's log subscriptions live as long as the plugin is loaded; after
/// a host restart the plugin makes them again at its first call, so a log
/// rule keeps working: a match fires, resolves once its one-second window
/// has passed, and after the restart a new match fires again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rules_follow_again_after_a_host_restart() {
    let (rx, instance, host) = setup(json!([
        {"name": "boom", "kind": "log", "pattern": "^GET /boom", "window": "1s"},
    ]))
    .await;
    summary_until(&host.admin().await, "the plugin loaded", |_| true).await;
    let port = free_port();
    let _app = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        host_port: Some(port),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let boom = || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/boom"))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    eventually(Duration::from_secs(20), "the app answers", boom).await;
    rx.wait_delivered(Duration::from_secs(20), "fired and resolved", |d| {
        statuses(d) == ["firing", "resolved"]
    })
    .await;
    let host = host.restart().await;
    summary_until(&host.admin().await, "the plugin loaded again", |_| true).await;
    assert_eq!(boom().await, Some(404));
    let d = rx
        .wait_delivered(Duration::from_secs(20), "fired again", |d| d.len() >= 3)
        .await;
    assert_eq!(statuses(&d[..3]), ["firing", "resolved", "firing"]);
}

/// An e-mail channel `name` to the sink, logging in with `password`.
fn email_channel(
    sink: &wakedock_tests::smtp_sink::SmtpSink,
    name: &str,
    security: &str,
    password: &str,
) -> Value {
    let port = if security == "tls" {
        sink.tls_port
    } else {
        sink.starttls_port
    };
    json!({"name": name, "type": "email", "server": "127.0.0.1", "port": port,
        "security": security, "username": wakedock_tests::smtp_sink::SMTP_USER,
        "password": password, "from": "WakeDock <wakedock@sink.test>",
        "to": ["ops@sink.test", "Oncall <oncall@sink.test>"], "ca_pem": sink.ca_pem})
}

/// Everything the API shows of the alerts plugin, as one text.
async fn everything_shown(api: &ApiClient) -> String {
    let mut text = String::new();
    for path in [
        "/api/v1/plugins/alerts/channels",
        "/api/v1/plugins/alerts/alerts",
        "/api/v1/plugins/alerts/summary",
        "/api/v1/plugins",
    ] {
        text.push_str(&api.get(path).await.text().await.unwrap());
    }
    text.push_str(&page(api, "/p/alerts/channels").await);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_test_notification_arrives_over_starttls_and_tls_with_a_login() {
    let sink = wakedock_tests::smtp_sink::SmtpSink::start().await;
    let instance = new_instance();
    let host = host_with(
        &instance,
        json!({"channels": [
            email_channel(&sink, "mail", "starttls", &sink.password),
            email_channel(&sink, "mail-tls", "tls", &sink.password),
        ]}),
        false,
    )
    .await;
    let api = host.admin().await;
    for name in ["mail", "mail-tls"] {
        let body: Value = api
            .post_empty(&format!("/api/v1/plugins/alerts/channels/{name}/test"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["ok"], true, "{name}: {body}");
        assert_eq!(body["status"], 250, "{name}: {body}");
    }
    let got = sink.messages();
    assert_eq!(got.len(), 2, "{got:?}");
    for (m, mode) in got.iter().zip(["starttls", "tls"]) {
        assert_eq!(m.meta["mode"], mode);
        assert_eq!(m.meta["tls"], true, "{mode}: the session ran over TLS");
        assert_eq!(m.meta["login"], wakedock_tests::smtp_sink::SMTP_USER);
        assert_eq!(
            m.meta["rcpt_tos"],
            json!(["ops@sink.test", "oncall@sink.test"])
        );
        assert_eq!(
            m.header("subject").as_deref(),
            Some("[TEST] WakeDock test notification")
        );
        assert!(m.header("from").unwrap().contains("wakedock@sink.test"));
        assert!(m.header("date").is_some() && m.header("message-id").is_some());
        assert!(
            m.body().contains("A test notification from WakeDock"),
            "{}",
            m.raw
        );
    }
    let shown = everything_shown(&api).await;
    assert!(
        !shown.contains(&sink.password),
        "the password is never shown"
    );
    assert!(
        shown.contains("\"password\""),
        "the channel says a password is set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_sends_one_email_with_its_code_and_one_recovery_email() {
    let sink = wakedock_tests::smtp_sink::SmtpSink::start().await;
    let instance = new_instance();
    let _host = host_with(
        &instance,
        json!({
            "rules": [{"name": "crash", "kind": "exit", "severity": "critical"}],
            "channels": [email_channel(&sink, "mail", "starttls", &sink.password)],
        }),
        false,
    )
    .await;
    let app = exiting(&instance, "1", "1500", true, None).await;
    let got = sink
        .wait(Duration::from_secs(30), "the firing e-mail", |m| {
            !m.is_empty()
        })
        .await;
    let firing = &got[0];
    assert_eq!(
        firing.header("subject"),
        Some(format!("[FIRING] crash on {} (critical)", app.name))
    );
    let body = firing.body();
    assert!(body.contains("exited with code 1"), "{body}");
    assert!(body.contains(&format!("Container: {}", app.name)), "{body}");
    assert!(body.contains("Fired at:"), "{body}");
    start_again(&app).await;
    let got = sink
        .wait(Duration::from_secs(30), "the recovery e-mail", |m| {
            m.len() >= 2
        })
        .await;
    let subjects: Vec<Option<String>> = got.iter().map(|m| m.header("subject")).collect();
    assert_eq!(
        subjects,
        [
            Some(format!("[FIRING] crash on {} (critical)", app.name)),
            Some(format!("[RESOLVED] crash on {} (critical)", app.name)),
        ],
        "one firing e-mail, then one recovery"
    );
    let body = got[1].body();
    assert!(body.contains("healthy again"), "{body}");
    assert!(body.contains("Resolved:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_smtp_password_fails_clearly_and_is_shown_or_logged_nowhere() {
    wakedock_tests::log_capture::capture_log();
    let sink = wakedock_tests::smtp_sink::SmtpSink::start().await;
    let wrong = unique("wrong-pw");
    let instance = new_instance();
    let host = host_with(
        &instance,
        json!({
            "rules": [{"name": "crash", "kind": "exit"}],
            "channels": [email_channel(&sink, "mail", "starttls", &wrong)],
        }),
        false,
    )
    .await;
    let api = host.admin().await;
    let body: Value = api
        .post_empty("/api/v1/plugins/alerts/channels/mail/test")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], false, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("SMTP server 127.0.0.1") && error.contains("refused the login"),
        "{error}"
    );
    assert!(
        error.contains("535"),
        "the server's answer is quoted: {error}"
    );
    assert!(!error.contains(&wrong), "{error}");
    assert!(sink.refused_logins() >= 1, "the sink refused the login");
    assert!(sink.messages().is_empty());
    // The channel's health shows the failure, without the password.
    let shown = everything_shown(&api).await;
    assert!(shown.contains("refused the login"), "the failure is shown");
    assert!(!shown.contains(&wrong), "the password is never shown");
    // A real alert: its deliveries fail and are retried until the channel
    // is marked down, which the plugin logs with the server's answer.
    let _app = exiting(&instance, "1", "300", false, None).await;
    let down = "channel mail is down";
    eventually(
        Duration::from_secs(40),
        "the channel logged as down",
        || {
            let log = wakedock_tests::log_capture::captured_log();
            async move {
                log.lines()
                    .any(|l| l.contains(down) && l.contains("refused the login"))
                    .then_some(())
            }
        },
    )
    .await;
    let h = history(&api).await;
    let note = &h["history"][0]["notifications"][0];
    assert!(note.to_string().contains("refused the login"), "{note}");
    assert!(!h.to_string().contains(&wrong));
    assert!(sink.messages().is_empty());
    let log = wakedock_tests::log_capture::captured_log();
    assert!(!log.contains(&wrong), "the password is never logged");
}
