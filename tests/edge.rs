//! The bridge's own edge (issue 9): bridge traffic has its own rate limit,
//! unknown service names cost nothing, a wake costs few engine requests,
//! stop timeouts are bounded and a slow stop does not mark the engine down.
//! Real host, real Caddy with our module, real engine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock::config::RateLimitConfig;
use wakedock_tests::caddy::{Caddy, Site};
use wakedock_tests::wake::{client, published, sleeping_app};
use wakedock_tests::*;

const TOKEN: &str = "bridge-token-for-edge-tests-0123";
const OTHER_TOKEN: &str = "another-bridge-token-for-edge-9";

/// A host with the wake plugin (`manifest` if given, else the real one),
/// the bridge tokens, `services`, and the **default** rate limits.
async fn host_with(services: Vec<Value>, manifest: Option<&std::path::Path>) -> TestHost {
    let manifest = manifest.map(|p| p.to_path_buf()).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml").into()
    });
    TestHost::start_with(Backend::Sqlite, |c| {
        c.security.rate_limit = RateLimitConfig::default();
        c.security.bridge_tokens = vec![TOKEN.into(), OTHER_TOKEN.into()];
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": manifest,
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
            }))
            .unwrap(),
        );
        c.services = services;
    })
    .await
}

/// Every series on `/metrics` (name and labels, without the value).
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        // Containers by state count the whole shared engine, which other
        // tests churn (a `removing` series may come and go meanwhile).
        .filter(|l| !l.starts_with("wakedock_containers{"))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

/// Requests the host answered on the bridge's wake routes that a request
/// for a service could cause (all but the periodic activity report and
/// the long-lived state subscription). Each one may reach the wake plugin.
fn bridge_wake_requests(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("wakedock_http_requests_total{"))
        .filter(|l| l.contains("route=\"/api/v1/wake/"))
        .filter(|l| !l.contains("/activity\"") && !l.contains("/subscribe\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// `wakedock_docker_requests_total` by operation.
fn engine_requests(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("wakedock_docker_requests_total{op=\""))
        .filter_map(|l| {
            let (op, rest) = l.split_once("\"}")?;
            Some((op.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

/// The wake plugin's runtime status (`calls`, `container_calls`...).
async fn wake_plugin(admin: &ApiClient) -> Value {
    admin.get_json("/api/v1/plugins/wake").await["status"].clone()
}

// A herd of 1,000 cold requests through one Caddy, with the default rate
// limits: half browsers (each gets the waiting page, fetched from the host
// by the bridge) and half API clients (held until the service is up). All
// get 200, the app starts once, and the users' per-IP budget (every
// visitor behind Caddy comes from 127.0.0.1) is untouched by the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_cold_requests_through_caddy_passes_the_default_rate_limits() {
    const HERD: usize = 1000;
    let (app, port) = sleeping_app(&[("BOOT_DELAY_MS", "300")], None).await;
    let host = host_with(
        vec![json!({
            "name": "herd", "members": [app.name], "strategy": "dynamic",
            "idle_timeout": "10m",
        })],
        None,
    )
    .await;
    let caddy = Caddy::start(
        &host.base,
        TOKEN,
        vec![Site {
            service: "herd".into(),
            upstream: format!("127.0.0.1:{port}"),
            extra: vec![],
        }],
    )
    .await;
    published(&host, TOKEN, "herd").await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(HERD)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let since = unix_secs();
    let reqs = (0..HERD).map(|i| {
        let http = http.clone();
        let url = caddy.sites[0].clone();
        tokio::spawn(async move {
            let mut rb = http.get(&url);
            if i % 2 == 0 {
                rb = rb.header("accept", "text/html");
            }
            match rb.send().await {
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    (i, status, body)
                }
                Err(e) => (i, StatusCode::IM_A_TEAPOT, e.to_string()),
            }
        })
    });
    let mut bad = Vec::new();
    for r in futures::future::join_all(reqs).await {
        let (i, status, body) = r.unwrap();
        let ok = status == StatusCode::OK
            && if i % 2 == 0 {
                body.contains("<html") || body.contains("<!doctype html")
            } else {
                body.starts_with("hello from")
            };
        if !ok {
            bad.push(format!(
                "{i}: {status} {}",
                body.chars().take(400).collect::<String>()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {HERD} failed, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(starts_since(&app.name, since), 1, "exactly one start");
    // The users' budget (burst 200) is whole: the bridge did not spend it.
    let admin = host.admin().await;
    for i in 0..150 {
        let r = admin.get("/api/v1/auth/me").await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "user request {i} after the herd"
        );
    }
    drop(caddy);
    host.stop().await.unwrap();
}

// Bridge calls spend their token's budget, never the per-IP one; a bridge
// route without a valid token spends the per-IP budget (so guessing tokens
// is limited like any other abuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_calls_spend_their_own_token_budget_not_the_users() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into(), OTHER_TOKEN.into()];
        c.security.rate_limit = RateLimitConfig {
            api_per_ip_per_second: 1,
            api_burst: 5,
            bridge_per_token_per_second: 1,
            bridge_burst: 20,
            ..RateLimitConfig::default()
        };
    })
    .await;
    let http = client();
    let bridge = |token: &'static str| {
        http.get(host.url("/api/v1/wake/nosuch/page"))
            .bearer_auth(token)
            .send()
    };
    // 20 bridge calls: the service is unknown (404), none is refused.
    for i in 0..20 {
        let r = bridge(TOKEN).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "bridge call {i}");
    }
    let mut refused = false;
    for _ in 0..10 {
        if bridge(TOKEN).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
    }
    assert!(refused, "the token's burst of 20 was not enforced");
    // The other token has its own budget.
    assert_eq!(bridge(OTHER_TOKEN).await.unwrap().status(), 404);
    // The per-IP budget (burst 5) is whole: 5 user requests pass.
    let user = |path: &str| http.get(host.url(path)).send();
    for i in 0..5 {
        let r = user("/api/v1/auth/me").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "user request {i}");
    }
    // Now spent; a wrong bridge token spends (and meets) the same budget.
    let mut limited = false;
    for _ in 0..10 {
        let r = http
            .get(host.url("/api/v1/wake/nosuch/page"))
            .bearer_auth("not-a-bridge-token-at-all")
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                limited = true;
                break;
            }
            s => assert_eq!(s, StatusCode::UNAUTHORIZED),
        }
    }
    assert!(limited, "bad bridge tokens escaped the per-IP budget");
    host.stop().await.unwrap();
}

// 10,000 requests for random service names through a wildcard site
// (`service {labels.2}`): all 404 from the bridge's snapshot, no new series
// on `/metrics`, no call into the wake plugin beyond its own ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_names_through_caddy_cost_nothing() {
    const REQUESTS: usize = 10_000;
    const CONCURRENCY: usize = 50;
    let (app, port) = sleeping_app(&[], None).await;
    let host = host_with(
        vec![json!({"name": "known", "members": [app.name], "idle_timeout": "10m"})],
        None,
    )
    .await;
    let caddy = Caddy::start_any_host(
        &host.base,
        TOKEN,
        vec![Site {
            service: "{labels.2}".into(),
            upstream: format!("127.0.0.1:{port}"),
            extra: vec![],
        }],
    )
    .await;
    published(&host, TOKEN, "known").await;
    let http = client();
    // The site works for the service the host has.
    let r = http
        .get(&caddy.sites[0])
        .header("host", "known.svc.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("hello from"));
    // Its activity report (every 2 s) lands before the baseline.
    eventually(Duration::from_secs(10), "the activity report", || async {
        host.metrics()
            .await
            .contains("route=\"/api/v1/wake/activity\"")
            .then_some(())
    })
    .await;

    // One scrape first, so the scrape's own series exist.
    host.metrics().await;
    let text = host.metrics().await;
    let before = series(&text);
    let wake_requests_before = bridge_wake_requests(&text);
    let t = Instant::now();
    let statuses = futures::stream::iter(0..REQUESTS)
        .map(|_| {
            let http = http.clone();
            let url = caddy.sites[0].clone();
            async move {
                let name = unique("x");
                let r = http
                    .get(&url)
                    .header("host", format!("{name}.svc.test"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                (status, body)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let elapsed = t.elapsed();
    for (status, body) in &statuses {
        assert_eq!(*status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("unknown service"), "{body}");
    }
    let text = host.metrics().await;
    let after = series(&text);
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(new.is_empty(), "new series on /metrics: {new:?}");
    // The bridge answered every one from its snapshot: not one request
    // reached the host's wake routes, so none reached the wake plugin.
    // (The plugin's own call count also moves with its ticks and with the
    // events of other tests' containers on the shared engine.)
    assert_eq!(
        bridge_wake_requests(&text),
        wake_requests_before,
        "unknown names reached the host in {elapsed:?}"
    );
    drop(caddy);
    host.stop().await.unwrap();
}

/// The wake plugin's manifest with ticks far apart, so nothing but the
/// measured operation talks to the engine meanwhile.
fn quiet_wake_manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let real = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml");
    let text = std::fs::read_to_string(real).unwrap();
    assert!(
        text.contains("tick-interval = \"1s\""),
        "the manifest changed"
    );
    let path = dir.join("plugin.toml");
    std::fs::write(
        &path,
        text.replace("tick-interval = \"1s\"", "tick-interval = \"1h\""),
    )
    .unwrap();
    path
}

/// Engine requests by operation and the plugin's `containers` calls by
/// function, over `op`.
async fn costs<F, Fut>(
    host: &TestHost,
    admin: &ApiClient,
    op: F,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let plugin_calls = |v: Value| -> BTreeMap<String, u64> {
        serde_json::from_value(v["container_calls"].clone()).unwrap_or_default()
    };
    let engine_before = engine_requests(&host.metrics().await);
    let plugin_before = plugin_calls(wake_plugin(admin).await);
    op().await;
    let engine_after = engine_requests(&host.metrics().await);
    let plugin_after = plugin_calls(wake_plugin(admin).await);
    let engine = engine_after
        .keys()
        .map(|k| (k.clone(), delta(&engine_after, &engine_before, k)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let plugin = plugin_after
        .keys()
        .map(|k| (k.clone(), delta(&plugin_after, &plugin_before, k)))
        .filter(|(_, n)| *n > 0)
        .collect();
    (engine, plugin)
}

// A wake costs each member one start and one inspect on the host's side
// (the readiness wait inspects once, then probes the address it learned);
// a sleep one stop. What the wake plugin itself asks (its own
// `containers.inspect`) is counted apart, from its runtime status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_costs_one_start_and_one_inspect_per_member() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = quiet_wake_manifest(dir.path());
    let one = sleeping_app(&[], None).await.0;
    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(sleeping_app(&[], None).await.0);
    }
    let names: Vec<&str> = three.iter().map(|c| c.name.as_str()).collect();
    let host = host_with(
        vec![
            json!({"name": "one", "members": [one.name], "idle_timeout": "10m"}),
            json!({"name": "three", "members": names, "idle_timeout": "10m"}),
        ],
        Some(&manifest),
    )
    .await;
    let admin = host.admin().await;
    let http = client();
    let wake = |service: &'static str| {
        let http = http.clone();
        let url = host.url(&format!("/api/v1/wake/{service}"));
        async move {
            let r = http.post(url).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    };
    let sleep = |service: &'static str| {
        let admin = admin.clone();
        async move {
            let r = admin
                .post(&format!("/api/v1/services/{service}/sleep"), json!({}))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    };
    for (service, members) in [("one", 1u64), ("three", 3)] {
        // From never started, then from asleep (stopped by the host).
        let (first, first_plugin) = costs(&host, &admin, || wake(service)).await;
        let (stop, stop_plugin) = costs(&host, &admin, || sleep(service)).await;
        // Let the members' `die` events reach the host.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (again, again_plugin) = costs(&host, &admin, || wake(service)).await;
        println!("{service}: wake {first:?} (plugin {first_plugin:?}); sleep {stop:?} (plugin {stop_plugin:?}); wake again {again:?} (plugin {again_plugin:?})");
        for (what, engine, plugin) in [
            ("first wake", &first, &first_plugin),
            ("wake after sleep", &again, &again_plugin),
        ] {
            let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
            assert_eq!(
                get(engine, "start"),
                members,
                "{service} {what}: starts {engine:?}"
            );
            // The plugin's own inspects are its choice; the host adds one
            // per member (the readiness wait), and exit codes the engine
            // announced cost nothing.
            let host_inspects = get(engine, "inspect") - get(plugin, "inspect");
            assert!(
                host_inspects <= members,
                "{service} {what}: {host_inspects} host-side inspects for {members} members: {engine:?}, plugin {plugin:?}"
            );
            for op in ["stop", "restart", "pause", "unpause", "exec_create"] {
                assert_eq!(get(engine, op), 0, "{service} {what}: {engine:?}");
            }
        }
        let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        assert_eq!(get(&stop, "stop"), members, "{service} sleep: {stop:?}");
        let host_inspects = get(&stop, "inspect") - get(&stop_plugin, "inspect");
        assert_eq!(
            host_inspects, 0,
            "{service} sleep: {stop:?}, plugin {stop_plugin:?}"
        );
    }
    host.stop().await.unwrap();
}

// With a Docker healthcheck (interval 30 s, so Docker's own check never
// decides), the wake runs the check by exec as soon as the port opens:
// one run when the app is healthy at once, reported apart from the start
// and the single inspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthcheck_runs_once_the_port_opens() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = quiet_wake_manifest(dir.path());
    let app = TestContainer::from_spec(AppSpec {
        env: &[("BOOT_DELAY_MS", "400")],
        healthcheck: Some(Duration::from_secs(30)),
        host_port: Some(free_port()),
        ..AppSpec::default()
    })
    .await;
    let host = host_with(
        vec![json!({"name": "hc", "members": [app.name], "idle_timeout": "10m"})],
        Some(&manifest),
    )
    .await;
    let admin = host.admin().await;
    let http = client();
    let (engine, plugin) = costs(&host, &admin, || async {
        let r = http
            .post(host.url("/api/v1/wake/hc"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    })
    .await;
    println!("healthcheck wake: {engine:?} (plugin {plugin:?})");
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    assert_eq!(get(&engine, "start"), 1);
    assert!(
        get(&engine, "inspect") - get(&plugin, "inspect") <= 1,
        "{engine:?}"
    );
    // Booting takes 400 ms: the check runs once more at the 250 ms floor
    // while the port is still closed, then as soon as it opens.
    let runs = get(&engine, "exec_create");
    assert!(
        (1..=4).contains(&runs),
        "{runs} healthcheck runs: {engine:?}"
    );
    assert_eq!(get(&engine, "exec_start"), runs);
    host.stop().await.unwrap();
}

// `?timeout=` is bounded: above 3600 s, or on an action that stops
// nothing, a clear 400 before anything reaches the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stop_timeouts_are_bounded() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    for (action, t) in [
        ("stop", "3601"),
        ("stop", "4294967295"),
        ("restart", "2147483648"),
        ("start", "5"),
    ] {
        let r = admin
            .post_empty(&format!(
                "/api/v1/containers/no-such-container/{action}?timeout={t}"
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{action} {t}");
        assert_eq!(problem_code(r).await, "invalid_timeout");
    }
    // In range, the engine is asked (and knows no such container).
    let r = admin
        .post_empty("/api/v1/containers/no-such-container-9f2/stop?timeout=3600")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    host.stop().await.unwrap();
}

// A stop that takes longer than the engine client's request limit (here
// shortened to 2 s; bollard's is 60 s) gets a per-call limit of its stop
// timeout plus a margin: it succeeds, and the engine is never marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_longer_than_the_request_limit_succeeds_and_the_engine_stays_up() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
    let d = docker().await;
    let name = unique("wd-test-slowstop");
    // The app handles SIGTERM; as PID 1 it ignores SIGUSR1 (no handler), so
    // the engine waits out the stop timeout and kills it.
    d.create_container(
        Some(CreateContainerOptionsBuilder::default().name(&name).build()),
        ContainerCreateBody {
            image: Some(TEST_IMAGE.into()),
            labels: Some([(TEST_LABEL.to_string(), "true".to_string())].into()),
            stop_signal: Some("SIGUSR1".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _cleanup = RemoveOnDrop(name.clone());
    d.start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();

    let engine = wakedock::docker::DockerEngine::with_request_timeout(
        "/var/run/docker.sock".into(),
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    engine.ping(Duration::from_secs(5)).await.unwrap();
    assert!(engine.is_up());
    let t = Instant::now();
    engine
        .stop_container(&name, Some(Duration::from_secs(4)))
        .await
        .expect("a 4 s stop with a 2 s request limit");
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "the stop did not wait: {:?}",
        t.elapsed()
    );
    assert!(engine.is_up(), "a slow stop marked the engine down");
    let i = engine.inspect(&name).await.unwrap();
    assert!(!i.running);
    assert_eq!(i.exit_code, Some(137), "killed after the timeout");
    // Out of range is refused before the engine is asked.
    let e = engine
        .stop_container(&name, Some(Duration::from_secs(3601)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, wakedock::docker::EngineError::BadRequest(_)),
        "{e:?}"
    );
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

// Several installs share one engine: a container of another install (no
// `wakedock.instance` label of this host's) that dies costs this host no
// engine request and reaches none of its plugins, while its own container's
// `die` is published (and, its restart policy never seen, costs one inspect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_installs_dying_container_costs_this_host_nothing() {
    let instance = new_instance();
    let theirs = TestContainer::from_spec(AppSpec {
        start: true,
        ..AppSpec::default()
    })
    .await;
    let ours = TestContainer::from_spec(AppSpec {
        start: true,
        instance: Some(&instance),
        ..AppSpec::default()
    })
    .await;
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.instance = Some(instance.clone());
    })
    .await;
    let mut bus = host.bus.subscribe();
    let before = engine_requests(&host.metrics().await);
    let docker = docker().await;
    for c in [&theirs, &ours] {
        docker
            .kill_container(
                &c.name,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
    }
    // One task handles the engine's events in order: once ours is
    // published, theirs (killed first) has been handled.
    let published = tokio::time::timeout(Duration::from_secs(20) * patience(), async {
        let mut exited = Vec::new();
        loop {
            match bus.recv().await {
                Ok(ev) if ev.topic == "host.container-exited" => {
                    let doc: Value = serde_json::from_str(&ev.payload).unwrap();
                    let id = doc["id"].as_str().unwrap_or_default().to_owned();
                    exited.push(id.clone());
                    if id == ours.id {
                        return exited;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the bus closed: {e}"),
            }
        }
    })
    .await
    .expect("our container's exit is published");
    assert_eq!(published, vec![ours.id.clone()], "theirs is not published");
    let after = engine_requests(&host.metrics().await);
    assert_eq!(
        delta(&after, &before, "inspect"),
        1,
        "one inspect (ours): {before:?} -> {after:?}"
    );
    host.stop().await.unwrap();
}
