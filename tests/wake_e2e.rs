//! Wake-on-request end to end (issue 4): the real host with the wake
//! plugin, a real Caddy built with our module, and test app containers on
//! the real engine. Each test is one of the issue's numbered cases.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wakedock_tests::caddy::{Caddy, Site};
use wakedock_tests::wake::{client, published, sleeping_app};
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

/// A running test app publishing 8080 on a fixed loopback port.
async fn running_app() -> TestContainer {
    TestContainer::from_spec(AppSpec {
        host_port: Some(free_port()),
        start: true,
        ..AppSpec::default()
    })
    .await
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

/// `wakedock_wakes_total` of `service` with `result`, from `/metrics`.
async fn wakes(host: &TestHost, service: &str, result: &str) -> u64 {
    let text = host.metrics().await;
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
    published(&host, TOKEN, "dyn").await;
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
    published(&host, TOKEN, "idle").await;
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
        let text = host.metrics().await;
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
        // The bridge reports the request a moment later, and the report
        // extends the session: wait for it, so nothing moves the expiry
        // across the restart but the restart itself.
        let before = eventually(Duration::from_secs(10), "the activity report", || async {
            let s = service(&admin, "keep").await;
            (s["session"]["requests"].as_u64() >= Some(1))
                .then(|| s["session"]["expires_at_ms"].as_u64().expect("a session"))
        })
        .await;

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
    let app = running_app().await;
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
/// The services defined through the API as the wake plugin stores them.
async fn stored_api_services(host: &TestHost) -> Value {
    let db = wakedock::db::Db::connect(&host.config.database_url(), Some(1))
        .await
        .unwrap();
    let raw = db
        .run(|c| wakedock::db::plugin_kv::get(c, "wake", "api/services"))
        .await
        .unwrap()
        .expect("api/services stored");
    serde_json::from_slice(&raw).unwrap()
}

/// An upgrade (or a downgrade) loses no service defined through the API:
/// an entry this version of the wake plugin cannot read is reported, not
/// taken for "no services", and kept as stored by later changes until the
/// user redefines or deletes it (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_service_this_version_cannot_read_is_reported_and_kept() {
    let host = host_with(Backend::Sqlite, vec![]).await;
    let admin = host.admin().await;
    let readable = json!({"name": "readable", "members": [unique("wd-test-absent")]});
    let r = admin.post("/api/v1/services", readable.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Next to it, an entry as another version would store it.
    let other =
        json!({"name": "from-elsewhere", "members": [unique("wd-test-absent")], "colour": "blue"});
    let stored = serde_json::to_vec(&json!([readable, other])).unwrap();
    let db = wakedock::db::Db::connect(&host.config.database_url(), Some(1))
        .await
        .unwrap();
    db.run(move |c| {
        wakedock::db::plugin_kv::set(c, "wake", "api/services", &stored, 1 << 22).map(drop)
    })
    .await
    .unwrap();
    drop(db);
    let host = host.restart().await;
    let admin = host.admin().await;

    let list = admin.get_json("/api/v1/services").await;
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["readable"], "{list}");
    let errors = list["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{list}");
    assert_eq!(errors[0]["service"], "from-elsewhere");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("kept as stored") && message.contains("colour"),
        "{message}"
    );

    // Another change stores it again as it was.
    let r = admin
        .post(
            "/api/v1/services",
            json!({"name": "second", "members": [unique("wd-test-absent")]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let kept = stored_api_services(&host).await;
    assert!(kept.as_array().unwrap().contains(&other), "{kept}");
    assert_eq!(kept.as_array().unwrap().len(), 3, "{kept}");

    // Deleted by the user: gone.
    let r = admin.delete("/api/v1/services/from-elsewhere").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let kept = stored_api_services(&host).await;
    assert!(!kept.as_array().unwrap().contains(&other), "{kept}");
    assert!(admin.get_json("/api/v1/services").await["errors"]
        .as_array()
        .unwrap()
        .is_empty());
    host.stop().await.unwrap();
}

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

// ---- Issue 9: state that never lies -----------------------------------------

/// Every `state`/`snapshot` document of the subscription, recorded in the
/// background for as long as the recorder lives.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(host: &TestHost) -> Recorder {
        let r = client()
            .get(host.url("/api/v1/wake/subscribe"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = seen.clone();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            let mut body = r.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                for (name, data) in drain_sse(&mut buf) {
                    if let Ok(v) = serde_json::from_str::<Value>(&data) {
                        out.lock().unwrap().push((name, v));
                    }
                }
            }
        });
        Recorder { seen, task }
    }

    /// The states of `service` in the order they arrived (snapshots too).
    fn states(&self, service: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        let mut out = Vec::new();
        for (name, v) in seen.iter() {
            let docs: Vec<&Value> = match name.as_str() {
                "snapshot" => v["services"].as_array().unwrap().iter().collect(),
                _ => vec![v],
            };
            for d in docs.into_iter().filter(|d| d["service"] == service) {
                out.push(d["state"].as_str().unwrap().to_owned());
            }
        }
        out
    }

    fn first_snapshot(&self) -> Option<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .find(|(n, _)| n == "snapshot")
            .map(|(_, v)| v.clone())
    }

    async fn wait_for(&self, service: &str, state: &str, limit: Duration) {
        eventually(
            limit,
            &format!("{service} {state} on the stream"),
            || async {
                self.states(service)
                    .iter()
                    .any(|s| s == state)
                    .then_some(())
            },
        )
        .await;
    }
}

/// The host's audit entries for `action`, newest first.
async fn audit(api: &ApiClient, action: &str) -> Vec<Value> {
    api.get_json(&format!("/api/v1/audit?action={action}"))
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn exit_code(name: &str) -> Option<i64> {
    docker()
        .await
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()?
        .state?
        .exit_code
}

/// An idle app (running, adopted) that goes to sleep by itself, with what
/// the subscription said from before the sleep until well after it.
async fn idle_sleep(stop_signal: Option<&str>) -> (Vec<String>, usize, Option<i64>, Vec<Value>) {
    let app = TestContainer::from_spec(AppSpec {
        host_port: Some(free_port()),
        start: true,
        stop_signal,
        ..AppSpec::default()
    })
    .await;
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
        c.docker.stop_timeout = wakedock::config::HumanDuration(Duration::from_secs(3));
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
            }))
            .unwrap(),
        );
        c.services = vec![json!({"name": "nap", "members": [app.name], "idle_timeout": "2s"})];
    })
    .await;
    let rec = Recorder::start(&host).await;
    rec.wait_for("nap", "awake", Duration::from_secs(15)).await;
    rec.wait_for("nap", "going-to-sleep", Duration::from_secs(20))
        .await;
    let since = unix_secs() - 1.0;
    rec.wait_for("nap", "asleep", Duration::from_secs(30)).await;
    // The bug showed within a tick or two of the sleep: watch five ticks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let states = rec.states("nap");
    let from = states.iter().position(|s| s == "going-to-sleep").unwrap();
    let starts = starts_since(&app.name, since);
    let code = exit_code(&app.name).await;
    let admin = host.admin().await;
    let sleeps = audit(&admin, "service.sleep").await;
    drop(rec);
    host.stop().await.unwrap();
    (states[from..].to_vec(), starts, code, sleeps)
}

// A sleep of an app that ignores SIGTERM (Docker kills it after the stop
// timeout: exit 137) ends `asleep`, once: no `waking`, no `failed`, no
// start, though several ticks ran while the stop took its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sleep_of_an_app_ignoring_sigterm_ends_asleep_once() {
    let (states, starts, code, sleeps) = idle_sleep(Some("SIGUSR1")).await;
    assert_eq!(code, Some(137), "the app was killed after the stop timeout");
    assert_eq!(
        states,
        ["going-to-sleep", "asleep"],
        "nothing after the sleep"
    );
    assert_eq!(starts, 0, "nothing started it again");
    // The system's action, in the audit log, once.
    assert_eq!(sleeps.len(), 1, "{sleeps:?}");
    assert_eq!(sleeps[0]["actor"], "system:wake");
    assert_eq!(sleeps[0]["target"], "nap");
    assert_eq!(sleeps[0]["result"], "success");
    assert_eq!(sleeps[0]["detail"], "reason: idle");
}

// A clean sleep (the app exits on SIGTERM) does not flicker either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_idle_sleep_goes_to_sleep_then_asleep_and_nothing_else() {
    let (states, starts, code, _) = idle_sleep(None).await;
    assert_eq!(code, Some(0));
    assert_eq!(states, ["going-to-sleep", "asleep"]);
    assert_eq!(starts, 0);
}

// After a host restart (same data dir and database), the first snapshot a
// bridge gets, and the overview, show every service's real state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_serves_every_service_state_at_once() {
    for backend in BACKENDS {
        let up = running_app().await;
        let (down, _) = sleeping_app(&[], None).await;
        let mut host = host_with(
            backend,
            vec![
                json!({"name": "up", "members": [up.name]}),
                json!({"name": "down", "members": [down.name]}),
                json!({"name": "broken", "members": [unique("wd-test-missing")]}),
            ],
        )
        .await;
        let want = [("up", "awake"), ("down", "asleep"), ("broken", "failed")];
        let rec = Recorder::start(&host).await;
        for (s, st) in want {
            rec.wait_for(s, st, Duration::from_secs(15)).await;
        }
        drop(rec);

        host = host.restart().await;
        let rec = Recorder::start(&host).await;
        let snap = eventually(Duration::from_secs(5), "a snapshot", || async {
            rec.first_snapshot()
        })
        .await;
        for (s, st) in want {
            let doc = snap["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["service"] == s)
                .unwrap_or_else(|| {
                    panic!("{backend:?}: {s} missing from the first snapshot: {snap}")
                });
            assert_eq!(doc["state"], st, "{backend:?}: {snap}");
        }
        let html = host.admin().await.get("/").await.text().await.unwrap();
        for (s, st) in want {
            assert!(
                html.contains(&format!("data-service=\"{s}\"")),
                "{backend:?}: the overview lists {s}"
            );
            assert!(html.contains(&format!("svc-{st}")), "{backend:?}: {st}");
        }
        drop(rec);
        host.stop().await.unwrap();
    }
}

// The overview, the services page and API, the waiting page and the
// subscription say the same of a service: one source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_shows_the_same_state() {
    let Setup {
        app: _app,
        host,
        caddy,
    } = setup(
        Backend::Sqlite,
        "crashy",
        &[
            ("EXIT_AFTER_MS", "300"),
            ("EXIT_CODE", "1"),
            ("BOOT_DELAY_MS", "1000"),
        ],
        json!({"strategy": "dynamic", "wake_timeout": "20s"}),
    )
    .await;
    published(&host, TOKEN, "crashy").await;
    // A request wakes it; the member dies while waking: failed.
    let r = client().get(&caddy.sites[0]).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_GATEWAY,
        "{}",
        r.text().await.unwrap()
    );
    let admin = host.admin().await;
    wait_state(&admin, "crashy", "failed", Duration::from_secs(10)).await;
    // Give ticks a chance to disagree, as they used to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rec = Recorder::start(&host).await;
    let snap = eventually(Duration::from_secs(5), "snapshot", || async {
        rec.first_snapshot()
    })
    .await;
    let hub = snap["services"][0].clone();
    assert_eq!(hub["state"], "failed", "{snap}");
    let api = service(&admin, "crashy").await;
    assert_eq!(api["state"], hub, "the API serves the hub's document");
    let overview = admin.get("/").await.text().await.unwrap();
    assert!(overview.contains("svc-failed"), "overview");
    let services = admin.get("/services").await.text().await.unwrap();
    assert!(
        services.contains(r#"data-service="crashy" data-state="failed""#),
        "services page"
    );
    let page = client()
        .get(host.url("/api/v1/wake/crashy/page"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<main id="main" class="failed""#),
        "waiting page"
    );
    // Member status is JSON, never Rust Debug text.
    assert_eq!(api["members"][0]["status"]["state"], "exited", "{api}");
}

// A `docker stop` by hand behind an awake service: the next request
// through a real Caddy is held, the service woken again, and answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_stopped_by_hand_is_woken_by_the_next_request() {
    let Setup { app, host, caddy } = setup(
        Backend::Sqlite,
        "byhand",
        &[],
        json!({"idle_timeout": "10m"}),
    )
    .await;
    let http = client();
    assert_eq!(
        http.get(&caddy.sites[0]).send().await.unwrap().status(),
        200
    );
    let admin = host.admin().await;
    wait_state(&admin, "byhand", "awake", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the bridge sees awake
    let d = docker().await;
    for round in 0..3 {
        // Taken before the stop: any start after it is the wake. (It was
        // taken after the stop, less 0.5 s, which on a quick machine
        // reached back to the previous wake's start and counted two.)
        let since = unix_secs();
        d.stop_container(
            &app.name,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .unwrap();
        // Straight after the stop: the bridge may not have heard yet.
        let r = http.get(&caddy.sites[0]).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "round {round}: {body}");
        assert!(body.starts_with("hello from"), "{body}");
        assert_eq!(
            starts_since(&app.name, since),
            1,
            "round {round}: woken once"
        );
        wait_state(&admin, "byhand", "awake", Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The host logged it as the member stopping outside WakeDock, and the
    // wakes as the system's, for a request.
    let wakes = audit(&admin, "service.wake").await;
    assert!(
        wakes
            .iter()
            .any(|e| e["actor"] == "system:wake" && e["detail"] == "reason: request"),
        "{wakes:?}"
    );
}

// A member put to sleep by WakeDock shows as sleeping on the containers
// list and page (with its service), and counts as sleeping; a member that
// crashed shows and counts as stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_members_show_as_sleeping_and_crashed_ones_as_stopped() {
    let napper = running_app().await;
    let crasher = running_app().await;
    let host = host_with(
        Backend::Sqlite,
        vec![
            json!({"name": "napper", "display_name": "Napper", "members": [napper.name]}),
            json!({"name": "crasher", "members": [crasher.name]}),
        ],
    )
    .await;
    let admin = host.admin().await;
    wait_state(&admin, "napper", "awake", Duration::from_secs(15)).await;
    wait_state(&admin, "crasher", "awake", Duration::from_secs(15)).await;
    let r = admin.post_empty("/api/v1/services/napper/sleep").await;
    assert_eq!(r.status(), StatusCode::OK);
    docker()
        .await
        .kill_container(
            &crasher.name,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the crash noticed", || async {
        let s = service(&admin, "crasher").await;
        (s["state"]["state"] == "asleep").then_some(s)
    })
    .await;
    let s = service(&admin, "crasher").await;
    assert_eq!(
        s["state"]["reason"],
        format!(
            "member \"{}\" stopped outside WakeDock (exit code 137)",
            crasher.name
        )
    );

    let list = admin.get("/containers").await.text().await.unwrap();
    let row = |id: &str| {
        let start = list.find(&format!("data-container=\"{id}\"")).expect("row");
        list[start..start + list[start..].find("</tr>").unwrap()].to_string()
    };
    let nap = row(&napper.id);
    assert!(nap.contains(r#"data-class="sleeping""#), "{nap}");
    assert!(
        nap.contains(r#"sleeping (service <a href="/services#service-napper">Napper</a>)"#),
        "{nap}"
    );
    assert!(!nap.contains("Exited ("), "{nap}");
    let crash = row(&crasher.id);
    assert!(crash.contains(r#"data-class="stopped""#), "{crash}");

    let page = admin
        .get(&format!("/containers/{}", napper.name))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"sleeping (service <a href="/services#service-napper">Napper</a>)"#));
    let page = admin
        .get(&format!("/containers/{}", crasher.name))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-class="stopped""#));
    assert!(page.contains("stopped outside WakeDock"));

    // The overview counts each by its class (others' containers share the
    // engine: look at ours).
    let overview = admin.get("/").await.text().await.unwrap();
    let start = overview.find("data-states=\"").unwrap() + "data-states=\"".len();
    let states: Value = serde_json::from_str(
        &overview[start..start + overview[start..].find('"').unwrap()].replace("&#34;", "\""),
    )
    .unwrap();
    assert_eq!(states[&napper.id], "sleeping");
    assert_eq!(states[&crasher.id], "stopped");
}

// A wake plugin that traps answers 502 (it failed), not 503 (it is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_wake_plugin_gives_502() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("plugin.toml");
    let hostile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plugins/hostile/plugin.toml"
    ))
    .unwrap();
    std::fs::write(
        &manifest,
        hostile.replace("name = \"hostile\"", "name = \"wake\""),
    )
    .unwrap();
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": manifest,
                "wasm": wasm_dir().join("wakedock_fixture_hostile.wasm"),
            }))
            .unwrap(),
        );
    })
    .await;
    // The hub knows the service (as if the plugin had published it).
    host.bus.publish(
        "wake",
        "wake.state",
        &json!({
            "service": "svc", "state": "asleep", "strategy": "blocking", "wake_timeout_ms": 1000,
            "ignore_user_agents": [], "ignore_paths": [], "display_name": "svc", "reason": null,
            "theme": null, "members": [], "seq": 1
        })
        .to_string(),
    );
    let r = eventually(Duration::from_secs(5), "the wake call", || async {
        let r = client()
            .post(host.url("/api/v1/wake/svc"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        (r.status() != StatusCode::NOT_FOUND).then_some(r)
    })
    .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem_code(r).await, "plugin_error");
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
