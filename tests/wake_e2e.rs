//! Wake-on-request end to end (issue 4): the real host with the wake
//! plugin, a real Caddy built with our module, and test app containers on
//! the real engine. Each test is one of the issue's numbered cases.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wakedock_tests::caddy::{Caddy, Site};
use wakedock_tests::*;

const TOKEN: &str = "bridge-token-for-e2e-tests-0123";

/// A host with the wake plugin, the bridge token and `services`.
async fn host_with(backend: Backend, services: Vec<Value>) -> TestHost {
    host_in(&new_instance(), backend, services).await
}

/// Like [`host_with`], in the install scope `instance`.
async fn host_in(instance: &str, backend: Backend, services: Vec<Value>) -> TestHost {
    TestHost::start_with(backend, |c| {
        c.wakedock.instance = Some(instance.to_owned());
        c.security.bridge_tokens = vec![TOKEN.into()];
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
            }))
            .unwrap(),
        );
        c.services = services;
    })
    .await
}

fn site(service: &str, port: u16) -> Site {
    Site {
        service: service.into(),
        upstream: format!("127.0.0.1:{port}"),
        extra: vec!["activity_interval 500ms".into()],
    }
}

/// A stopped test app publishing 8080 on a fixed loopback port.
async fn sleeping_app(env: &[(&str, &str)], healthcheck: Option<Duration>) -> (TestContainer, u16) {
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

/// One sleeping test app, a host whose service `name` has it as its only
/// member (plus `extra` fields), and Caddy in front of it.
struct Setup {
    app: TestContainer,
    host: TestHost,
    caddy: Caddy,
}

async fn setup(backend: Backend, name: &str, env: &[(&str, &str)], extra: Value) -> Setup {
    let (app, port) = sleeping_app(env, None).await;
    let mut def = json!({"name": name, "members": [app.name]});
    def.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let host = host_with(backend, vec![def]).await;
    let caddy = Caddy::start(&host.base, TOKEN, vec![site(name, port)]).await;
    Setup { app, host, caddy }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn running(name: &str) -> bool {
    let d = docker().await;
    d.inspect_container(
        name,
        None::<bollard::query_parameters::InspectContainerOptions>,
    )
    .await
    .map(|i| i.state.and_then(|s| s.running).unwrap_or(false))
    .unwrap_or(false)
}

/// The service as `/api/v1/services/{name}` shows it.
async fn service(api: &ApiClient, name: &str) -> Value {
    let r = api.get(&format!("/api/v1/services/{name}")).await;
    assert_eq!(r.status(), StatusCode::OK, "GET service {name}");
    r.json().await.unwrap()
}

async fn state_of(api: &ApiClient, name: &str) -> String {
    service(api, name).await["state"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_state(api: &ApiClient, name: &str, want: &str, limit: Duration) {
    eventually(limit, &format!("{name} {want}"), || async {
        (state_of(api, name).await == want).then_some(())
    })
    .await;
}

/// Waits until the wake plugin has published `name`'s first state (on its
/// first tick) and gives the bridge's subscription a moment to carry it:
/// before that the bridge knows neither the strategy nor the ignore lists.
async fn published(host: &TestHost, name: &str) {
    eventually(Duration::from_secs(10), "first state", || async {
        let r = client()
            .get(host.url("/api/v1/wake/subscribe"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        let mut body = String::new();
        let mut stream = r.bytes_stream();
        use futures::StreamExt;
        while let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            body.push_str(&String::from_utf8_lossy(&chunk));
            if body.contains("\n\n") {
                break;
            }
        }
        body.contains(&format!("\"service\":\"{name}\""))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// `wakedock_wakes_total` of `service` with `result`, from `/metrics`.
async fn wakes(host: &TestHost, service: &str, result: &str) -> u64 {
    let text = client()
        .get(host.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("wakedock_wakes_total{{result=\"{result}\",service=\"{service}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

// 1. A cold request through Caddy returns the app's 200; 200 concurrent
//    cold requests cause exactly one start, all 200 OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_requests_wake_once_and_all_succeed() {
    for backend in BACKENDS {
        let Setup { app, host, caddy } = setup(
            backend,
            "cold",
            &[("BOOT_DELAY_MS", "300")],
            json!({"idle_timeout": "10m"}),
        )
        .await;
        let http = client();

        let t = Instant::now();
        let r = http.get(&caddy.sites[0]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.text().await.unwrap().starts_with("hello from"));
        assert!(t.elapsed() >= Duration::from_millis(300), "waited for boot");

        // Back to sleep, then a herd.
        let admin = host.admin().await;
        let r = admin.post("/api/v1/services/cold/sleep", json!({})).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!running(&app.name).await);
        tokio::time::sleep(Duration::from_millis(300)).await; // bridge sees asleep
        let since = unix_secs();
        let reqs = (0..200).map(|_| {
            let http = http.clone();
            let url = caddy.sites[0].clone();
            tokio::spawn(async move {
                let r = http.get(&url).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            })
        });
        let results = futures::future::join_all(reqs).await;
        for r in results {
            let (status, body) = r.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.starts_with("hello from"), "{body}");
        }
        let starts = starts_since(&app.name, since);
        assert_eq!(starts, 1, "exactly one start");
        // Manual wake and sleep are audited.
        let audit: Value = admin
            .get("/api/v1/audit?action=service.sleep")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(audit["items"][0]["target"], "cold", "{audit}");
        drop(caddy);
        host.stop().await.unwrap();
    }
}

// 2. An app that turns healthy 2 s after boot: no request reaches it
//    before it is healthy (and none gets a 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_reaches_an_app_before_it_is_healthy() {
    let (app, port) = sleeping_app(
        &[("HEALTHY_AFTER_MS", "2000")],
        Some(Duration::from_secs(30)),
    )
    .await;
    let host = host_with(
        Backend::Sqlite,
        vec![json!({"name": "slowhealth", "members": [app.name]})],
    )
    .await;
    let caddy = Caddy::start(&host.base, TOKEN, vec![site("slowhealth", port)]).await;
    let http = client();
    let t = Instant::now();
    let reqs = (0..20).map(|i| {
        let http = http.clone();
        let url = caddy.sites[0].clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let r = http.get(&url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        })
    });
    for r in futures::future::join_all(reqs).await {
        let (status, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains("before healthy"), "reached early: {body}");
    }
    let waited = t.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    // Readiness by exec'ing the healthcheck, not Docker's 30 s interval.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

// 3. Dynamic: a browser gets the waiting page, then the app; a
//    non-browser request is held and gets the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_strategy_shows_browsers_the_waiting_page() {
    let Setup { host, caddy, app } = setup(
        Backend::Sqlite,
        "dyn",
        &[("BOOT_DELAY_MS", "1500")],
        json!({"strategy": "dynamic", "display_name": "Dynamic Blog"}),
    )
    .await;
    published(&host, "dyn").await;
    let http = client();
    let page = http
        .get(&caddy.sites[0])
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Dynamic Blog"), "{html}");
    assert!(html.contains("/.wakedock/dyn/events"), "{html}");
    // The page's progress stream, through Caddy, says waking then awake.
    let events = http
        .get(format!("{}/.wakedock/dyn/events", caddy.sites[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    // A non-browser request is held until the app answers.
    let held = http.get(&caddy.sites[0]).send().await.unwrap();
    let status = held.status();
    let body = held.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("hello from"), "{body}");
    let mut stream = events.bytes_stream();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        while !seen.contains("\"state\":\"awake\"") {
            let chunk = stream.next().await.expect("stream open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("awake on the progress stream");
    // Progress of each member came before.
    let ready = format!("{{\"name\":\"{}\",\"status\":\"ready\"}}", app.name);
    assert!(seen.contains(&ready), "{seen}");
    // Now the browser gets the app itself.
    let r = http
        .get(&caddy.sites[0])
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().starts_with("hello from"));
}

/// Opens a WebSocket to `base` + `/ws` by hand (the handshake only) and
/// returns the open connection.
async fn open_websocket(base: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("handshake answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

// 4. Idle timeout puts the service to sleep; traffic extends it; an open
//    WebSocket keeps it awake past the timeout; an ignored user agent does
//    not wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_services_sleep_and_traffic_keeps_them_awake() {
    let Setup { app, host, caddy } = setup(
        Backend::Sqlite,
        "idle",
        &[],
        json!({"idle_timeout": "3s", "ignore_user_agents": ["probe-bot"]}),
    )
    .await;
    published(&host, "idle").await;
    let http = client();
    let admin = host.admin().await;

    // An ignored user agent does not wake it.
    let r = http
        .get(&caddy.sites[0])
        .header("User-Agent", "probe-bot/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running(&app.name).await, "ignored agent woke the service");

    // Traffic every 500 ms for 5 s (past the 3 s timeout) keeps it awake.
    assert_eq!(
        http.get(&caddy.sites[0]).send().await.unwrap().status(),
        200
    );
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            http.get(&caddy.sites[0]).send().await.unwrap().status(),
            200
        );
    }
    assert!(running(&app.name).await, "slept despite traffic");
    // Quiet: asleep after the timeout (3 s + reporting + tick).
    let t = Instant::now();
    wait_state(&admin, "idle", "asleep", Duration::from_secs(10)).await;
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!running(&app.name).await);
    let s = service(&admin, "idle").await;
    assert!(s["session"].is_null(), "{s}");

    // An open WebSocket keeps it awake past the timeout.
    let ws = open_websocket(&caddy.sites[0]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(running(&app.name).await, "slept with a WebSocket open");
    drop(ws);
    wait_state(&admin, "idle", "asleep", Duration::from_secs(10)).await;
}

// 5. Wake timeout gives 504; a client that leaves stops waiting (the wake
//    itself goes on for the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_timeout_gives_504_and_leaving_clients_stop_waiting() {
    let Setup {
        host,
        caddy,
        app: _app,
    } = setup(
        Backend::Sqlite,
        "slow",
        &[("BOOT_DELAY_MS", "60000")],
        json!({"wake_timeout": "2s"}),
    )
    .await;
    let http = client();
    let t = Instant::now();
    let r = http.get(&caddy.sites[0]).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(!body.is_empty(), "a clear body");
    assert_eq!(wakes(&host, "slow", "timeout").await, 1);

    // A waiter that leaves: the host's held-requests gauge drops at once.
    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = short
        .post(host.url("/api/v1/wake/slow"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(err.is_err(), "the client gave up");
    eventually(Duration::from_secs(2), "no held request", || async {
        let text = client()
            .get(host.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .any(|l| l == "wakedock_wake_requests_held{service=\"slow\"} 0")
            .then_some(())
    })
    .await;
}

// 6. A group with depends_on starts in order; a one-shot member that
//    exits 0 is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_start_in_order_and_one_shot_members_finish() {
    let (db, _) = sleeping_app(&[("BOOT_DELAY_MS", "500")], None).await;
    let (migrate, _) = sleeping_app(&[("EXIT_AFTER_MS", "300"), ("EXIT_CODE", "0")], None).await;
    // The app's readiness is an explicit HTTP rule on its health path.
    let (app, port) = sleeping_app(&[("HEALTHY_AFTER_MS", "700")], None).await;
    let host = host_with(
        Backend::Sqlite,
        vec![json!({
            "name": "group",
            "members": [app.name, db.name, migrate.name],
            "one_shot": [migrate.name],
            "ready": {app.name.clone(): "http:8080/health"},
            "depends_on": {app.name.clone(): [db.name, migrate.name], migrate.name.clone(): [db.name]},
        })],
    )
    .await;
    let caddy = Caddy::start(&host.base, TOKEN, vec![site("group", port)]).await;
    let r = client().get(&caddy.sites[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("before healthy"),
        "the HTTP rule let it through early: {body}"
    );
    let d = docker().await;
    let times = |name: String| {
        let d = d.clone();
        async move {
            let s = d
                .inspect_container(
                    &name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .unwrap()
                .state
                .unwrap();
            (
                humantime::parse_rfc3339_weak(&s.started_at.unwrap()).unwrap(),
                s.finished_at
                    .and_then(|f| humantime::parse_rfc3339_weak(&f).ok()),
                s.exit_code,
            )
        }
    };
    let (db_start, _, _) = times(db.name.clone()).await;
    let (mig_start, mig_end, mig_code) = times(migrate.name.clone()).await;
    let (app_start, _, _) = times(app.name.clone()).await;
    assert_eq!(mig_code, Some(0));
    // db ready (500 ms boot) before migrate starts; migrate done before app.
    assert!(
        mig_start >= db_start + Duration::from_millis(450),
        "migrate too early"
    );
    assert!(
        app_start >= mig_end.expect("migrate finished"),
        "app before migrate ended"
    );
    let admin = host.admin().await;
    wait_state(&admin, "group", "awake", Duration::from_secs(5)).await;
}

// 7. Restarting the host mid-session leaves sessions and expiries as they
//    were; restarting Caddy, the hot path recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_host_restart_and_caddy_recovers() {
    for backend in BACKENDS {
        let Setup {
            app,
            mut host,
            mut caddy,
        } = setup(backend, "keep", &[], json!({"idle_timeout": "10m"})).await;
        let http = client();
        assert_eq!(
            http.get(&caddy.sites[0]).send().await.unwrap().status(),
            200
        );
        let admin = host.admin().await;
        let before = service(&admin, "keep").await["session"]["expires_at_ms"]
            .as_u64()
            .expect("a session");

        host = host.restart().await;
        let admin = host.admin().await;
        let s = service(&admin, "keep").await;
        assert_eq!(s["session"]["expires_at_ms"].as_u64(), Some(before), "{s}");
        assert!(running(&app.name).await, "the restart put it to sleep");
        assert_eq!(s["state"]["state"], "awake", "{s}");

        // Caddy (pointed at the host's new port) restarts; once its
        // subscription is back, requests need no wake call.
        caddy.set_host(&host.base);
        caddy.restart().await;
        assert_eq!(
            http.get(&caddy.sites[0]).send().await.unwrap().status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wakes_before = wakes(&host, "keep", "ok").await;
        for _ in 0..50 {
            assert_eq!(
                http.get(&caddy.sites[0]).send().await.unwrap().status(),
                200
            );
        }
        assert_eq!(
            wakes(&host, "keep", "ok").await,
            wakes_before,
            "hot path called the host"
        );
        drop(caddy);
        host.stop().await.unwrap();
    }
}

// 8. Host unreachable: fail-closed answers 503 with Retry-After;
//    fail-open passes the request through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_down_fails_closed_or_open_as_configured() {
    let app = TestContainer::from_spec(AppSpec {
        host_port: Some(free_port()),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let port = {
        let d = docker().await;
        let i = d
            .inspect_container(
                &app.name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap();
        i.host_config.unwrap().port_bindings.unwrap()["8080/tcp"]
            .as_ref()
            .unwrap()[0]
            .host_port
            .clone()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    // Nothing listens here: the host is down.
    let dead_host = format!("http://127.0.0.1:{}", free_port());
    let mut open = site("svc-open", port);
    open.extra.push("fail_mode open".into());
    let closed = site("svc-closed", port);
    let caddy = Caddy::start(&dead_host, TOKEN, vec![closed, open]).await;
    let http = client();
    let r = http.get(&caddy.sites[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    let r = http.get(&caddy.sites[1]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("hello from"));
}

// Services defined by the API and by labels, next to the config file's:
// precedence, validation naming the field, roles, audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_from_the_api_and_labels_with_precedence_and_validation() {
    let instance = new_instance();
    let labelled = TestContainer::from_spec(AppSpec {
        labels: &[
            ("wakedock.enable", "true"),
            ("wakedock.service", "by-labels"),
            ("wakedock.idle-timeout", "7m"),
        ],
        instance: Some(&instance),
        ..AppSpec::default()
    })
    .await;
    let (app, _) = sleeping_app(&[], None).await;
    let host = host_in(
        &instance,
        Backend::Sqlite,
        vec![json!({"name": "in-config", "members": [app.name]})],
    )
    .await;
    let admin = host.admin().await;

    // A bad definition: 422 naming the service and each bad field.
    let r = admin
        .post(
            "/api/v1/services",
            json!({"name": "by-api", "members": [app.name], "idle_timeout": "soon", "strategy": "lazy"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_service", "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"idle_timeout") && fields.contains(&"strategy"),
        "{body}"
    );

    // A good one is stored; the config file's name is refused.
    let r = admin
        .post(
            "/api/v1/services",
            json!({"name": "by-api", "members": [app.name], "idle_timeout": "5m"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = admin
        .post(
            "/api/v1/services",
            json!({"name": "in-config", "members": [app.name]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // All three sources listed with their source; labels parsed.
    let list = admin.get_json("/api/v1/services").await;
    let source = |name: &str| {
        list["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"]["name"] == name)
            .map(|s| {
                (
                    s["service"]["source"].as_str().unwrap().to_owned(),
                    s["service"]["idle_timeout_ms"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(source("in-config").unwrap().0, "config", "{list}");
    assert_eq!(source("by-api"), Some(("api".into(), 300_000)), "{list}");
    assert_eq!(
        source("by-labels"),
        Some(("labels".into(), 420_000)),
        "{list}"
    );
    let _ = labelled;

    // A viewer reads but may not wake; the refusal is audited.
    let viewer = host.user_with_role("viewer").await;
    assert_eq!(
        viewer.get("/api/v1/services").await.status(),
        StatusCode::OK
    );
    let r = viewer.post_empty("/api/v1/services/by-api/wake").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A user wakes it (answers when ready).
    let user = host.user_with_role("user").await;
    let r = user.post_empty("/api/v1/services/by-api/wake").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(running(&app.name).await);
    let audit = admin.get_json("/api/v1/audit?action=service.wake").await;
    let results: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert!(
        results.contains(&"denied") && results.contains(&"success"),
        "{audit}"
    );

    // Unknown service: 404 with its code; delete of an API service.
    let r = user.post_empty("/api/v1/services/nope/wake").await;
    assert_eq!(problem_code(r).await, "unknown_service");
    let r = admin.delete("/api/v1/services/by-api").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = admin.delete("/api/v1/services/in-config").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // The plugin's internal routes are not reachable by a user.
    let r = admin
        .post_empty("/api/v1/plugins/wake/wake/in-config")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

// A schedule window wakes the service without any request and keeps it
// awake past its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_window_wakes_and_keeps_a_service_awake() {
    let (app, _) = sleeping_app(&[], None).await;
    let host = host_with(
        Backend::Sqlite,
        vec![
            json!({"name": "office", "members": [app.name], "idle_timeout": "2s",
                    "schedule": ["daily 00:00-24:00"]}),
        ],
    )
    .await;
    let admin = host.admin().await;
    wait_state(&admin, "office", "awake", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(running(&app.name).await, "slept inside its schedule");
    assert_eq!(state_of(&admin, "office").await, "awake");
}

// Containers started by hand get a session at once (so they do go to
// sleep); sleep mode `pause` freezes them, and a request thaws them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_containers_are_adopted_and_paused_when_idle() {
    let port = free_port();
    let app = TestContainer::from_spec(AppSpec {
        host_port: Some(port),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let host = host_with(
        Backend::Sqlite,
        vec![
            json!({"name": "frozen", "members": [app.name], "idle_timeout": "2s",
                    "sleep_mode": "pause"}),
        ],
    )
    .await;
    let caddy = Caddy::start(&host.base, TOKEN, vec![site("frozen", port)]).await;
    let admin = host.admin().await;
    let s = service(&admin, "frozen").await;
    assert!(
        s["session"]["adopted"].as_bool().unwrap_or(false) || s["session"].is_null(),
        "{s}"
    );
    wait_state(&admin, "frozen", "asleep", Duration::from_secs(10)).await;
    let d = docker().await;
    let status = d
        .inspect_container(
            &app.name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap()
        .state
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.to_string(), "paused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client().get(&caddy.sites[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(running(&app.name).await, "thawed");
}

// Two installs on one engine (issue 9), each in its own scope
// (`wakedock.instance`), each with a running container labelled as its
// service `web`: each host's `web` is its own container only, with its own
// idle timeout, and one host's idle sleep leaves the other's container
// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installs_on_one_engine_keep_to_their_own_containers() {
    let (a, b) = (new_instance(), new_instance());
    let labels = |idle: &'static str| {
        [
            ("wakedock.enable", "true"),
            ("wakedock.service", "web"),
            ("wakedock.idle-timeout", idle),
        ]
    };
    let (labels_a, labels_b) = (labels("2s"), labels("1h"));
    let app_a = TestContainer::from_spec(AppSpec {
        labels: &labels_a,
        instance: Some(&a),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let app_b = TestContainer::from_spec(AppSpec {
        labels: &labels_b,
        instance: Some(&b),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let host_a = host_in(&a, Backend::Sqlite, vec![]).await;
    let host_b = host_in(&b, Backend::Sqlite, vec![]).await;
    let (api_a, api_b) = (host_a.admin().await, host_b.admin().await);

    // Each defines `web` from its own container, and adopts only that one.
    for (api, own, idle_ms) in [(&api_a, &app_a, 2_000), (&api_b, &app_b, 3_600_000)] {
        let web = eventually(Duration::from_secs(15), "the label service", || async {
            let r = api.get("/api/v1/services/web").await;
            if r.status() != StatusCode::OK {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            (!v["session"].is_null()).then_some(v)
        })
        .await;
        let members: Vec<&str> = web["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(members, vec![own.name.as_str()], "{web}");
        assert_eq!(web["service"]["idle_timeout_ms"], idle_ms, "{web}");
        assert_eq!(web["session"]["adopted"], true, "{web}");
    }

    // A's idle timeout stops A's container and only that one.
    wait_state(&api_a, "web", "asleep", Duration::from_secs(30)).await;
    assert!(
        !running(&app_a.name).await,
        "host A slept its own container"
    );
    assert!(
        running(&app_b.name).await,
        "host A left host B's container running"
    );
    assert_eq!(state_of(&api_b, "web").await, "awake");
    // Host B did not adopt (and wake) A's sleeping container either.
    let web_b = service(&api_b, "web").await;
    assert_eq!(web_b["members"].as_array().unwrap().len(), 1, "{web_b}");
    assert!(
        !running(&app_a.name).await,
        "host B left A's container asleep"
    );
    host_a.stop().await.unwrap();
    host_b.stop().await.unwrap();
}

// "Is my Caddy connected?" (issue 9): the services page counts the bridges
// subscribed to the host: 1 while a real Caddy with the module runs, 0 once
// it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_page_shows_connected_bridges() {
    let (app, port) = sleeping_app(&[], None).await;
    let host = host_with(
        Backend::Sqlite,
        vec![json!({"name": "bridged", "members": [app.name]})],
    )
    .await;
    let admin = host.admin().await;
    let bridges = || async {
        let html = admin.get("/services").await.text().await.unwrap();
        let marker = "data-field=\"bridges\">";
        let start = html.find(marker).expect("the bridges line") + marker.len();
        let end = start + html[start..].find("</p>").unwrap();
        html[start..end].to_owned()
    };
    assert!(bridges().await.starts_with("No Caddy bridge is connected"));
    let caddy = Caddy::start(&host.base, TOKEN, vec![site("bridged", port)]).await;
    eventually(Duration::from_secs(15), "1 bridge connected", || async {
        (bridges().await == "1 Caddy bridge connected.").then_some(())
    })
    .await;
    drop(caddy);
    eventually(Duration::from_secs(30), "no bridge connected", || async {
        bridges().await.starts_with("No Caddy bridge").then_some(())
    })
    .await;
    host.stop().await.unwrap();
}

// The README's "Put a service behind Caddy" Caddyfile is one Caddy with
// our module accepts.
#[test]
fn the_readme_caddyfile_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```caddyfile\n")
        .expect("a Caddyfile in the README")
        + 13;
    let end = start + readme[start..].find("```").unwrap();
    // The block is indented under its list item.
    let caddyfile: String = readme[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("   ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, &caddyfile).unwrap();
    let out = std::process::Command::new(wakedock_tests::caddy::caddy_bin())
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("WAKEDOCK_BRIDGE_TOKEN", TOKEN)
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run caddy (scripts/build-caddy.sh)");
    assert!(
        out.status.success(),
        "{caddyfile}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
