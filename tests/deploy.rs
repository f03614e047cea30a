//! The deployment self-hosters run (issue 13): the shipped
//! `deploy/compose.yaml` with the real images (`scripts/build-images.sh
//! --dev`) on the real engine, Compose v2 when present (else the equivalent
//! docker commands, see `tests/src/deploy.rs`).
//!
//! Every check waits for a condition, never for a fixed time.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::deploy::{
    admin_password_from_log, docker, image_tag, socket_gid, LabelledApp, Runner, Stack,
};
use wakedock_tests::{eventually, INSTANCE_LABEL};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(base: &str, user: &str, password: &str) -> (Api, Value) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .cookie_store(true)
            .build()
            .unwrap();
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login as {user}");
        let body: Value = r.json().await.unwrap();
        let api = Api {
            http,
            base: base.to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        };
        (api, body)
    }

    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn api_base(stack: &Stack) -> String {
    format!("http://127.0.0.1:{}", stack.published("wakedock", 8000))
}

async fn health(base: &str) -> Value {
    reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get_text(c: &reqwest::Client, url: &str) -> Option<(StatusCode, String)> {
    let r = c.get(url).send().await.ok()?;
    let s = r.status();
    Some((s, r.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_compose_file_end_to_end() {
    let runner = Runner::detect();
    eprintln!("deploy: running the stack with {}", runner.describe());
    let started = Instant::now();
    let stack = Stack::up(runner);
    stack
        .wait_healthy("wakedock", Duration::from_secs(120))
        .await;
    eprintln!("deploy: up to healthy in {:?}", started.elapsed());

    // The first admin's password, printed once in the log.
    let log = stack.logs("wakedock");
    let password = admin_password_from_log(&log)
        .unwrap_or_else(|| panic!("no generated admin password in the log:\n{log}"));
    let base = api_base(&stack);
    let (admin, login) = Api::login(&base, "admin", &password).await;

    // Non-root, with the socket's group, and it reaches the engine.
    let inspect: Value =
        serde_json::from_str(&docker(&["inspect", &stack.container("wakedock")])).unwrap();
    assert_eq!(inspect[0]["Config"]["User"], "10001:10001");
    assert_eq!(
        inspect[0]["HostConfig"]["GroupAdd"],
        json!([socket_gid().to_string()])
    );
    let h = health(&base).await;
    assert_eq!(h["docker"]["status"], "up", "{h}");

    // WakeDock never stops or pauses its own container.
    for action in ["stop", "pause"] {
        let r = admin
            .req(
                reqwest::Method::POST,
                &format!(
                    "/api/v1/containers/{}/{action}",
                    stack.container("wakedock")
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT, "{action} of itself");
    }
    assert_eq!(stack.health("wakedock"), "healthy");

    let p = &stack.project;
    let (ui_host, hand_host, app_host) = (
        format!("ui-{p}.localhost"),
        format!("hand-{p}.localhost"),
        format!("app-{p}.localhost"),
    );
    let caddy = stack.via_caddy(&[&ui_host, &hand_host, &app_host], Duration::from_secs(30));

    // WakeDock's own UI, a generated plain-proxy site from its labels; a
    // hand-written site beside the generated ones.
    eventually(Duration::from_secs(30), "the UI through Caddy", || async {
        let (s, body) = get_text(&caddy, &format!("http://{ui_host}/health")).await?;
        (s == StatusCode::OK && body.contains("\"database\"")).then_some(())
    })
    .await;
    let (s, body) = get_text(&caddy, &format!("http://{hand_host}/"))
        .await
        .unwrap();
    assert_eq!((s, body.as_str()), (StatusCode::OK, "hand-written"));

    // A labelled container, labels only: reachable through Caddy by name.
    let created = Instant::now();
    let app = LabelledApp::run(
        &stack,
        &[
            ("wakedock.enable", "true"),
            ("wakedock.service", &format!("app-{p}")),
            ("wakedock.host", &app_host),
            ("wakedock.port", "8080"),
            ("wakedock.idle-timeout", "3s"),
        ],
    );
    let app_url = format!("http://{app_host}/");
    eventually(Duration::from_secs(30), "the app through Caddy", || async {
        let (s, body) = get_text(&caddy, &app_url).await?;
        (s == StatusCode::OK && body.starts_with("hello from")).then_some(())
    })
    .await;
    eprintln!(
        "deploy: labelled container created to answering through Caddy in {:?}",
        created.elapsed()
    );
    let routes = admin.get("/api/v1/routes").await;
    let route = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == app_host.as_str())
        .unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(route["service"], format!("app-{p}"));
    assert_eq!(route["upstreams"], json!([format!("{}:8080", app.name)]));

    // Idle: asleep (stopped) after its timeout, and its route stays.
    let svc_path = format!("/api/v1/services/app-{p}");
    eventually(Duration::from_secs(60), "the app asleep", || async {
        let s = admin.get(&svc_path).await;
        (s["state"]["state"] == "asleep" && app.state() == "exited").then_some(())
    })
    .await;
    let routes = admin.get("/api/v1/routes").await;
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host"] == app_host.as_str()),
        "a sleeping container lost its route: {routes}"
    );
    // One request wakes it.
    let (s, body) = get_text(&caddy, &app_url).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.starts_with("hello from"), "{body}");
    assert_eq!(app.state(), "running");

    // The same host twice: the first keeps the route, the second is
    // reported in /health, the API and the UI.
    let rival = LabelledApp::run(
        &stack,
        &[
            ("wakedock.enable", "true"),
            ("wakedock.service", &format!("rival-{p}")),
            ("wakedock.host", &app_host),
            ("wakedock.port", "8080"),
        ],
    );
    let h = eventually(
        Duration::from_secs(30),
        "the conflict in /health",
        || async {
            let h = health(&base).await;
            (h["routes"]["conflicts"] == 1).then_some(h)
        },
    )
    .await;
    assert!(
        h["routes"]["problems"].is_null(),
        "problems shown to anyone: {h}"
    );
    let h = admin.get("/health").await;
    let problem = h["routes"]["problems"][0].as_str().unwrap().to_owned();
    assert!(
        problem.contains(&app.name) && problem.contains(&rival.name),
        "{problem}"
    );
    let routes = admin.get("/api/v1/routes").await;
    assert_eq!(
        routes["conflicts"][0]["refused"],
        rival.name.as_str(),
        "{routes}"
    );
    let page = admin
        .req(reqwest::Method::GET, "/routes")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Conflicts") && page.contains(&rival.name),
        "{page}"
    );
    assert!(
        stack.logs("wakedock").contains(&format!(
            "is already the route of container \"{}\"",
            app.name
        )),
        "conflict not logged"
    );
    let (s, _) = get_text(&caddy, &app_url).await.unwrap();
    assert_eq!(s, StatusCode::OK, "the older route was replaced");
    drop(rival);
    eventually(Duration::from_secs(30), "the conflict resolved", || async {
        (health(&base).await["routes"]["conflicts"] == 0).then_some(())
    })
    .await;

    // Restart: users, services and sessions are kept (the volume).
    let r = admin
        .req(reqwest::Method::POST, "/api/v1/users")
        .json(&json!({"username": "carol", "password": "carol-password-123", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let kept = LabelledApp::run(&stack, &[]);
    let r = admin
        .req(reqwest::Method::POST, "/api/v1/services")
        .json(&json!({"name": format!("kept-{p}"), "members": [kept.name], "idle_timeout": "10m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = admin
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/services/kept-{p}/wake"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let kept_path = format!("/api/v1/services/kept-{p}");
    let expiry = admin.get(&kept_path).await["session"]["expires_at_ms"].clone();
    assert!(expiry.is_u64(), "no session: {expiry}");

    stack.restart("wakedock");
    stack
        .wait_healthy("wakedock", Duration::from_secs(120))
        .await;
    let base = api_base(&stack);
    let mut admin = admin;
    admin.base = base.clone();
    // The access token from before still works (the JWT secret is in the
    // volume); so does the refresh token.
    let me = admin.get("/api/v1/auth/me").await;
    assert_eq!(me["username"], "admin");
    let r = admin
        .http
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "refresh after restart");
    Api::login(&base, "carol", "carol-password-123").await;
    let s = admin.get(&kept_path).await;
    assert_eq!(s["session"]["expires_at_ms"], expiry, "{s}");
    assert!(
        admin_password_from_log(&stack.logs("wakedock")).is_some(),
        "the log lost the first start"
    );
    assert_eq!(
        stack
            .logs("wakedock")
            .matches("created the first admin user")
            .count(),
        1,
        "a second admin was created on restart"
    );

    // Removing the container removes its route.
    drop(app);
    eventually(Duration::from_secs(30), "the route gone", || async {
        let (s, body) = get_text(&caddy, &app_url).await?;
        (s == StatusCode::NOT_FOUND && body.contains("no site")).then_some(())
    })
    .await;
    let routes = admin.get("/api/v1/routes").await;
    assert!(
        !routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host"] == app_host.as_str()),
        "{routes}"
    );
    drop(kept);
}

/// The image as a non-root user *without* the socket's group: the engine
/// is unreachable, /health says so, and the log says which group to add.
#[tokio::test]
async fn without_the_socket_group_the_log_says_which_group_to_add() {
    let name = wakedock_tests::unique("wd-deploy-nogroup");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "wakedock.test=true",
        "-e",
        "WAKEDOCK_BRIDGE_TOKEN=0123456789abcdef0123",
        "-e",
        "WAKEDOCK_PLUGINS=[]",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-p",
        "127.0.0.1:0:8000",
        &format!("wakedock:{}", image_tag()),
    ]);
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &self.0])
                .output();
        }
    }
    let _rm = Rm(name.clone());
    let port = docker(&["port", &name, "8000/tcp"]);
    let port = port.trim().rsplit(':').next().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let h = eventually(Duration::from_secs(60), "the server answering", || async {
        let r = reqwest::get(format!("{base}/health")).await.ok()?;
        r.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(h["docker"]["status"], "down", "{h}");
    let out = Command::new("docker")
        .args(["logs", &name])
        .output()
        .unwrap();
    let logs = wakedock_tests::deploy::strip_ansi(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    let want = format!("group_add: [\"{}\"]", socket_gid());
    assert!(logs.contains(&want), "no group hint ({want}) in:\n{logs}");
}

/// `wakedock healthcheck` with no server: non-zero, and says why.
#[test]
fn healthcheck_fails_when_the_server_is_down() {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--label",
            "wakedock.test=true",
            &format!("wakedock:{}", image_tag()),
            "healthcheck",
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "healthcheck passed without a server");
    assert!(
        text.contains("no answer from http://127.0.0.1:8000/health"),
        "{text}"
    );
}

/// The next `routes` event on a bridge's stream whose table satisfies `want`.
async fn next_table(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if !block.contains("event: routes") {
                    continue;
                }
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let table: Value = serde_json::from_str(data).unwrap();
                    if want(&table) {
                        return table;
                    }
                }
            }
            let chunk = body.next().await.expect("stream open").unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a matching routes event within 10 s")
}

/// The host side of label routes, in process (no images): the table and
/// its problems on `/api/v1/routes`, the bridge's stream following
/// creation and removal, and the stream's bridge-token check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_api_and_stream_follow_the_labels() {
    use wakedock_tests::{Backend, TestContainer, TestHost};

    const TOKEN: &str = "routes-bridge-token-0123456789";
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![TOKEN.into()];
        c.plugins.clear();
    })
    .await;
    let http = reqwest::Client::new();
    let url = host.url("/api/v1/routes/subscribe");
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let has = |table: &Value, host: &str| {
        table["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host"] == host)
    };
    next_table(&mut body, &mut buf, |t| t["loaded"] == true).await;

    let name = wakedock_tests::unique("rt");
    let app_host = format!("{name}.localhost");
    let app = TestContainer::run_labelled(
        &[],
        &[
            (INSTANCE_LABEL, host.instance()),
            ("wakedock.host", app_host.as_str()),
            ("wakedock.port", "8080"),
        ],
    )
    .await;
    let h = app_host.clone();
    let t = next_table(&mut body, &mut buf, move |t| has(t, &h)).await;
    let route = t["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == app_host.as_str())
        .unwrap()
        .clone();
    assert_eq!(route["service"], "", "{route}");
    assert_eq!(route["upstreams"], json!([format!("{}:8080", app.name)]));

    // A bad label: no route, a message worded like the service labels'.
    let bad_host = format!("bad-{name}.localhost");
    let bad = TestContainer::run_labelled(
        &[],
        &[
            (INSTANCE_LABEL, host.instance()),
            ("wakedock.host", bad_host.as_str()),
        ],
    )
    .await;
    let admin = host.admin().await;
    let want = format!(
        "service \"{0}\": wakedock.port: container \"{0}\": wakedock.port is required with wakedock.host",
        bad.name
    );
    let routes = eventually(Duration::from_secs(10), "the label error", || async {
        let r = admin.get_json("/api/v1/routes").await;
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().starts_with(&want))
            .then_some(r)
    })
    .await;
    assert!(!has(&routes, &bad_host), "{routes}");

    drop(app);
    let h = app_host.clone();
    next_table(&mut body, &mut buf, move |t| !has(t, &h)).await;
    drop(bad);
    host.stop().await.unwrap();
}
