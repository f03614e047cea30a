//! The browser UI end to end: headless Chromium (Debian's `chromium`,
//! driven through `chromedriver` by fantoccini) against a real host and the
//! real Docker engine. Screenshots of every page land in
//! `$WD_ARTIFACTS_DIR/screenshots/` (default `target/test-artifacts`).
//!
//! Chromium runs headless, without sandbox (tests run as root), and may
//! only reach loopback: every other host name resolves to nothing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::*;

/// One browser at a time: two cores do not run several Chromiums well.
static BROWSER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn artifacts_dir() -> PathBuf {
    let base = std::env::var_os("WD_ARTIFACTS_DIR")
        .or_else(|| std::env::var_os("WD_ARTIFACTS"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
        });
    let dir = base.join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn chromium_binary() -> String {
    if let Ok(b) = std::env::var("WD_CHROMIUM") {
        return b;
    }
    // Debian's /usr/bin/chromium is a wrapper script; chromedriver wants
    // the browser itself.
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium is not installed: run scripts/install-deps.sh")
        .to_string()
}

/// How long [`Browser::goto`] keeps navigating again after dropped loads.
const NAVIGATION_LIMIT: Duration = Duration::from_secs(60);

/// Where a navigation ended.
enum PageOutcome {
    /// WakeDock's page (it has `main#main`).
    Loaded,
    /// Chromium dropped the load (its error page), or it never finished.
    Dropped(String),
    /// A finished document that is not a WakeDock page.
    Other(String),
}

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/install-deps.sh");
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--disable-features=Translate,OptimizationHints,MediaRouter".into(),
            // Loopback only: any other name resolves to nothing.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium_binary(), "args": args}),
        );
        // Confirmation dialogs are answered by the test, not dismissed.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    }
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not start a Chromium session: {last_err:?}");
    }

    /// Opens `url` and waits until the page is there (its `main#main`).
    ///
    /// Chromium drops a load when the machine's network changes (Docker
    /// adding or removing a veth for a container started elsewhere): the
    /// navigation fails (`net::ERR_NETWORK_CHANGED`) or ends on Chromium's
    /// error page. Such a dropped load is navigated again, as often as it
    /// takes within [`NAVIGATION_LIMIT`]; nothing waits a fixed time.
    async fn goto(&self, url: &str) {
        let deadline = tokio::time::Instant::now() + NAVIGATION_LIMIT;
        let mut dropped = Vec::new();
        loop {
            match self.client.goto(url).await {
                Ok(()) => match self.page_outcome(deadline).await {
                    PageOutcome::Loaded => return,
                    PageOutcome::Dropped(why) => dropped.push(why),
                    PageOutcome::Other(text) => {
                        panic!("{url} loaded without WakeDock's page: {text}")
                    }
                },
                Err(e) => dropped.push(e.to_string()),
            }
            if let Some(why) = dropped.last() {
                eprintln!("{url}: load dropped ({why}); navigating again");
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{url} did not load in {NAVIGATION_LIMIT:?}; {} dropped loads: {dropped:?}",
                    dropped.len()
                );
            }
        }
    }

    /// What the navigation that just returned led to: polls the document
    /// until it is WakeDock's page, Chromium's error page, or a complete
    /// document that is neither.
    async fn page_outcome(&self, deadline: tokio::time::Instant) -> PageOutcome {
        const PROBE: &str = "return [document.readyState, location.href, \
            !!document.querySelector('main#main'), \
            document.body ? document.body.innerText.slice(0, 300) : ''];";
        loop {
            // A script may fail while the document is being replaced.
            if let Ok(Value::Array(v)) = self.client.execute(PROBE, vec![]).await {
                let ready = v.first().and_then(Value::as_str) == Some("complete");
                let href = v.get(1).and_then(Value::as_str).unwrap_or_default();
                let text = v.get(3).and_then(Value::as_str).unwrap_or_default();
                if v.get(2) == Some(&Value::Bool(true)) {
                    return PageOutcome::Loaded;
                }
                if href.starts_with("chrome-error:") {
                    return PageOutcome::Dropped(format!("error page: {text}"));
                }
                if ready {
                    // A served document that is not ours is a failure; the
                    // blank page of an abandoned navigation is a drop.
                    return if href.starts_with("http") {
                        PageOutcome::Other(format!("{href}: {text}"))
                    } else {
                        PageOutcome::Dropped(format!("ended on {href}"))
                    };
                }
            }
            if tokio::time::Instant::now() > deadline {
                return PageOutcome::Dropped("still loading".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot of the current page as `<name>.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Waits until the JS expression `cond` is true.
    async fn wait_for(&self, what: &str, cond: &str, limit: Duration) {
        let script = format!("return !!({cond});");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(&script, vec![]).await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.client.current_url().await.ok();
                let text = self.js("return document.body.innerText").await;
                panic!("timed out after {limit:?} waiting for {what} on {url:?}; page: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Signs in through the form and waits for the page the post leads to
    /// (the login page itself has a `main#main`, so a caller waiting for
    /// one would go on before the sign-in was answered). A dropped load
    /// is signed in again: a login post changes nothing twice.
    async fn login(&self, host: &TestHost, user: &str, password: &str) {
        for _ in 0..5 {
            self.goto(&host.url("/login")).await;
            self.fill("#username", user).await;
            self.fill("#password", password).await;
            if self.submit("form[data-login] button").await {
                return;
            }
            eprintln!("the login's answer was dropped; signing in again");
        }
        panic!("five logins as {user} were all dropped");
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clicks `button` and waits for the document it leads to; whether
    /// that is WakeDock's page (false: Chromium dropped the load, see
    /// [`Browser::goto`]; the post may or may not have reached the host).
    async fn submit(&self, button: &str) -> bool {
        self.js("window.__submitting = true").await;
        self.click(button).await;
        let deadline = tokio::time::Instant::now() + NAVIGATION_LIMIT;
        // The old document is gone once its mark is (a script may fail
        // while it is being replaced).
        while !matches!(
            self.client
                .execute("return window.__submitting === true", vec![])
                .await,
            Ok(Value::Bool(false))
        ) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{button} led nowhere in {NAVIGATION_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        matches!(self.page_outcome(deadline).await, PageOutcome::Loaded)
    }

    /// Opens `page`, sets `fields` (CSS selector, value; a `select` by
    /// script) and submits with `button`, again if the answer's load was
    /// dropped and `done` (asked outside the browser) says the post did not
    /// reach the host. Whether the answer page (its message) was shown.
    async fn post_form(
        &self,
        page: &str,
        fields: &[(&str, &str)],
        button: &str,
        done: impl AsyncFn() -> bool,
    ) -> bool {
        for _ in 0..5 {
            self.goto(page).await;
            for (css, value) in fields {
                if css.contains("select") {
                    self.js(&format!(
                        "document.querySelector({}).value = {};",
                        json!(css),
                        json!(value)
                    ))
                    .await;
                } else {
                    self.fill(css, value).await;
                }
            }
            if self.submit(button).await {
                return true;
            }
            if done().await {
                eprintln!("{page}: the answer to {button} was dropped; the post was made");
                self.goto(page).await;
                return false;
            }
            eprintln!("{page}: the post of {button} was dropped; posting again");
        }
        panic!("{page}: {button} was dropped five times");
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_every_page_and_screenshots() {
    let _one = BROWSER_LOCK.lock().await;
    let host = TestHost::start(Backend::Sqlite).await;
    let c = TestContainer::run(&[("LOG_EVERY_MS", "200"), ("APP_NAME", "ui-pages")]).await;
    let b = Browser::start().await;

    // Not signed in: any page leads to the login form, and back afterwards.
    b.goto(&host.url(&format!("/containers?q={}", c.name)))
        .await;
    b.wait_for(
        "the login form",
        "document.querySelector('#username')",
        WAIT,
    )
    .await;
    b.shot("login").await;

    // A bad password is said so on the page, not as JSON.
    b.login(&host, "admin", "not-the-password").await;
    b.wait_for(
        "the error message",
        "document.querySelector('.flash.err')",
        WAIT,
    )
    .await;
    assert_eq!(b.text(".flash.err").await, "Wrong username or password.");
    b.shot("login-error").await;

    b.goto(&host.url(&format!("/login?next=/containers%3Fq%3D{}", c.name)))
        .await;
    b.fill("#username", "admin").await;
    b.fill("#password", ADMIN_PASSWORD).await;
    b.click("form[data-login] button").await;
    b.wait_for(
        "the container list",
        "document.querySelector('table#containers')",
        WAIT,
    )
    .await;
    let row = format!("tr[data-container='{}']", c.id);
    assert_eq!(
        b.text(&format!("{row} [data-field=state]")).await,
        "running"
    );
    assert_eq!(
        b.count(&format!("{row} button[formaction$='/stop']")).await,
        1
    );
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.goto(&host.url("/containers")).await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.shot("containers").await;

    // The container's page: logs arrive live, charts fill in.
    b.goto(&host.url(&format!("/containers/{}", c.name))).await;
    let lines = b.count("#log li").await;
    b.wait_for(
        "new log lines",
        &format!("document.querySelectorAll('#log li').length > {lines}"),
        WAIT,
    )
    .await;
    b.wait_for(
        "a CPU chart with samples",
        "document.querySelector('[data-chart=cpu_svg] polyline')",
        WAIT,
    )
    .await;
    // Search filters lines; pause holds new ones.
    b.fill("[data-log-search]", "no line contains this").await;
    b.wait_for(
        "every line filtered out",
        "document.querySelectorAll('#log li:not(.hidden)').length === 0",
        WAIT,
    )
    .await;
    b.fill("[data-log-search]", "").await;
    b.js("document.querySelector('[data-log-search]').dispatchEvent(new Event('input'))")
        .await;
    b.shot("container-detail").await;

    for (path, name, marker) in [
        ("/", "overview", ".tiles"),
        ("/plugins", "plugins", "input[name=manifest]"),
        ("/users", "users", "table#users"),
        ("/routes", "routes", "table#routes"),
        ("/audit", "audit", "table#audit"),
    ] {
        b.goto(&host.url(path)).await;
        b.wait_for(name, &format!("document.querySelector('{marker}')"), WAIT)
            .await;
        b.shot(name).await;
    }
    // The audit log has the failed and the successful login.
    let audit = b
        .js("return document.querySelector('#audit').innerText")
        .await;
    let audit = audit.as_str().unwrap();
    assert!(audit.contains("auth.login"), "{audit}");
    assert!(audit.contains("failure"), "{audit}");

    // A bad user form says what is wrong next to the field.
    b.goto(&host.url("/users")).await;
    b.fill("#nu-name", "bad name").await;
    b.fill("#nu-pw", "long-enough-password").await;
    b.click("form[action='/users'] button.primary").await;
    b.wait_for(
        "the field message",
        "document.querySelector('#nu-name-err')",
        WAIT,
    )
    .await;
    assert!(b.text("#nu-name-err").await.contains("is invalid"));
    b.shot("users-validation").await;

    // A phone-sized window.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&host.url("/containers")).await;
    b.wait_for(
        "the list",
        "document.querySelector('table#containers')",
        WAIT,
    )
    .await;
    b.shot("containers-phone").await;

    b.close().await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_shows_on_a_second_page_without_reload() {
    let _one = BROWSER_LOCK.lock().await;
    let host = TestHost::start(Backend::Sqlite).await;
    let c = TestContainer::run(&[("APP_NAME", "ui-live")]).await;
    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;

    // Page two: the container's own page, marked so a reload would show.
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.goto(&host.url(&format!("/containers/{}", c.name))).await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.js("window.__noReload = true").await;

    // Page one: the list; stop the container there, confirming.
    b.client.switch_to_window(first).await.unwrap();
    b.goto(&host.url(&format!("/containers?q={}", c.name)))
        .await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.click(&format!(
        "tr[data-container='{}'] button[formaction$='/stop']",
        c.id
    ))
    .await;
    b.client
        .accept_alert()
        .await
        .expect("a confirmation dialog");
    b.wait_for("the outcome", "document.querySelector('.flash.ok')", WAIT)
        .await;
    assert_eq!(b.text(".flash.ok").await, format!("Stopped {}.", c.name));
    b.shot("containers-after-stop").await;

    // Page two changed by itself.
    b.client.switch_to_window(second).await.unwrap();
    b.wait_for(
        "the state to turn exited on the second page",
        "document.querySelector('.head [data-field=state]').textContent === 'exited'",
        WAIT,
    )
    .await;
    assert_eq!(b.js("return window.__noReload === true").await, json!(true));
    // Only the actions that fit a stopped container are shown.
    assert_eq!(
        b.js("return getComputedStyle(document.querySelector('.head form[action$=\"/start\"] > button')).display")
            .await,
        json!("block")
    );
    assert_eq!(
        b.js("return getComputedStyle(document.querySelector('.head button[formaction$=\"/stop\"]')).display")
            .await,
        json!("none")
    );
    b.shot("container-stopped-live").await;

    let admin = host.admin().await;
    let d = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(d["state"], "exited");
    b.close().await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_actions_and_a_forged_post_is_refused() {
    let _one = BROWSER_LOCK.lock().await;
    let host = TestHost::start(Backend::Sqlite).await;
    let c = TestContainer::run(&[("APP_NAME", "ui-viewer")]).await;
    let admin = host.admin().await;
    let r = admin
        .post(
            "/api/v1/users",
            json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let b = Browser::start().await;
    b.login(&host, "vera", "viewer-password-1").await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    // No admin pages in the navigation.
    assert_eq!(b.count("nav a[href='/users']").await, 0);
    b.goto(&host.url(&format!("/containers?q={}", c.name)))
        .await;
    b.wait_for(
        "the list",
        "document.querySelector('table#containers')",
        WAIT,
    )
    .await;
    assert_eq!(b.count("table#containers tbody tr").await, 1);
    assert_eq!(b.count("form[action^='/containers/']").await, 0);
    assert_eq!(b.count("table#containers button").await, 0);
    b.shot("containers-viewer").await;
    b.goto(&host.url(&format!("/containers/{}", c.name))).await;
    assert_eq!(b.count(".head button").await, 0);

    // A forged form with a valid CSRF token: the server refuses, as a page.
    b.js(&format!(
        "const f = document.createElement('form'); f.method = 'post'; \
         f.action = '/containers/{}/stop'; \
         const csrf = document.cookie.split('; ').find(c => c.startsWith('wakedock_csrf=')).split('=')[1]; \
         for (const [k, v] of [['csrf', csrf], ['confirm', 'yes']]) {{ \
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.append(i); }} \
         document.body.append(f); f.submit();",
        c.name
    ))
    .await;
    b.wait_for("the refusal", "document.querySelector('.flash.err')", WAIT)
        .await;
    let msg = b.text(".flash.err").await;
    assert!(msg.contains("needs the user role"), "{msg}");
    b.shot("viewer-forged-post").await;
    // An admin page is refused as a page too.
    b.goto(&host.url("/users")).await;
    assert!(b.text(".flash.err").await.contains("admin role"));

    // Without the CSRF token the same post is refused before the role check.
    let jar_cookie = b
        .js("return document.cookie")
        .await
        .as_str()
        .unwrap()
        .to_string();
    let access = b
        .client
        .get_named_cookie("wakedock_access")
        .await
        .unwrap()
        .value()
        .to_string();
    let r = reqwest::Client::new()
        .post(host.url(&format!("/containers/{}/stop", c.name)))
        .header("cookie", format!("{jar_cookie}; wakedock_access={access}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("confirm=yes&csrf=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("CSRF"));

    let d = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(d["state"], "running", "the refused stop did nothing");
    let audit = admin
        .get_json("/api/v1/audit?actor=vera&action=container.stop")
        .await;
    assert_eq!(audit["items"][0]["result"], "denied");
    b.close().await;
    host.stop().await.unwrap();
}

fn example_plugin() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // WD_WASM_DIR: components built elsewhere (e.g. another checkout's
    // target directory shared with this one).
    let dir = std::env::var_os("WD_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("wasm32-wasip2/release"));
    let wasm = dir.join("wakedock_plugin_example.wasm");
    assert!(
        wasm.exists(),
        "{}: build the plugins first with scripts/build-plugins.sh",
        wasm.display()
    );
    (
        root.join("plugins/example/plugin.toml")
            .canonicalize()
            .unwrap(),
        wasm.canonicalize().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_is_uploaded_granted_disabled_and_removed_from_its_page() {
    let _one = BROWSER_LOCK.lock().await;
    let host = TestHost::start(Backend::Sqlite).await;
    let (manifest, wasm) = example_plugin();
    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    b.goto(&host.url("/plugins")).await;

    // Uploading without files says what is missing.
    b.js("document.querySelectorAll('form[action=\"/plugins/upload\"] input[type=file]').forEach(i => i.required = false)")
        .await;
    b.click("form[action='/plugins/upload'] button").await;
    b.wait_for("the message", "document.querySelector('.flash.err')", WAIT)
        .await;
    assert!(b.text(".flash.err").await.contains("Choose both files"));

    // Upload: the grant screen shows what it asks for; nothing installed yet.
    b.client
        .find(Locator::Css("#manifest"))
        .await
        .unwrap()
        .send_keys(manifest.to_str().unwrap())
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#wasm"))
        .await
        .unwrap()
        .send_keys(wasm.to_str().unwrap())
        .await
        .unwrap();
    b.click("form[action='/plugins/upload'] button").await;
    b.wait_for(
        "the grant screen",
        "document.querySelector('form[action=\"/plugins/install\"]')",
        WAIT,
    )
    .await;
    assert!(b.text("h1").await.starts_with("Install example"));
    b.shot("plugin-grant").await;
    let admin = host.admin().await;
    assert_eq!(admin.get_json("/api/v1/plugins").await, json!([]));

    // A custom grant that is not JSON comes back with the message.
    b.click("input[name=grant][value=custom]").await;
    b.fill("textarea[name=grant_json]", "{not json").await;
    b.click("button[name=decision]").await;
    b.wait_for("the message", "document.querySelector('.flash.err')", WAIT)
        .await;
    assert!(b.text(".flash.err").await.contains("not valid JSON"));

    // Grant everything it requests.
    b.click("input[name=grant][value=all]").await;
    b.click("button[name=decision]").await;
    b.wait_for("the outcome", "document.querySelector('.flash.ok')", WAIT)
        .await;
    assert!(b.text(".flash.ok").await.starts_with("Installed example"));
    assert_eq!(
        b.text("[data-plugin=example] .badge").await,
        "enabled",
        "listed as enabled"
    );
    b.shot("plugins-installed").await;

    b.click("form[action='/plugins/example/disable'] button")
        .await;
    // The previous page has a `.flash.ok` too: wait for the new state.
    b.wait_for(
        "the outcome",
        "(document.querySelector('[data-plugin=example] .badge') || {}).innerText === 'disabled'",
        WAIT,
    )
    .await;
    assert_eq!(
        admin.get_json("/api/v1/plugins/example").await["enabled"],
        false
    );

    b.click("form[action='/plugins/example/remove'] button")
        .await;
    b.client
        .accept_alert()
        .await
        .expect("a confirmation dialog");
    b.wait_for("the outcome", "document.querySelector('.flash.ok')", WAIT)
        .await;
    assert_eq!(b.text(".flash.ok").await, "Removed example.");
    assert_eq!(admin.get_json("/api/v1/plugins").await, json!([]));
    b.close().await;
    host.stop().await.unwrap();
}

/// A host served on `port` (0: any) until the returned sender fires.
async fn serve_on(
    config: &wakedock::config::Config,
    port: u16,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let state = wakedock::server::build_state(config.clone()).await.unwrap();
    wakedock::server::bootstrap_admin(&state.db, Some(ADMIN_PASSWORD.into()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(wakedock::server::run(listener, state, async move {
        let _ = rx.await;
    }));
    (port, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_reconnects_after_the_host_restarts() {
    let _one = BROWSER_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("wakedock.db").display());
    let config = test_config(&dir.path().join("data"), &db);
    let (port, stop, task) = serve_on(&config, 0).await;
    let base = format!("http://127.0.0.1:{port}");

    let b = Browser::start().await;
    b.goto(&format!("{base}/login")).await;
    b.fill("#username", "admin").await;
    b.fill("#password", ADMIN_PASSWORD).await;
    b.click("form[data-login] button").await;
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.js("window.__before = true").await;

    // The host goes away: the page says it is reconnecting.
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    b.wait_for(
        "the reconnecting state",
        "document.querySelector('#live.off')",
        WAIT,
    )
    .await;
    b.shot("reconnecting").await;

    // Back on the same address: the page reconnects and shows fresh state.
    let (_, stop, task) = serve_on(&config, port).await;
    b.wait_for(
        "the page to come back live",
        "!window.__before && document.querySelector('#live.on')",
        Duration::from_secs(30),
    )
    .await;
    b.close().await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_woken_from_its_page_shows_progress_and_turns_awake() {
    let _one = BROWSER_LOCK.lock().await;
    let app = TestContainer::from_spec(AppSpec {
        env: &[("APP_NAME", "ui-wake")],
        start: false,
        ..AppSpec::default()
    })
    .await;
    let members = json!([app.name]);
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
            }))
            .unwrap(),
        );
        c.services = vec![json!({"name": "uiwake", "members": members, "idle_timeout": "10m"})];
    })
    .await;
    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    b.goto(&host.url("/services")).await;
    let badge = "document.querySelector('[data-service=uiwake] [data-field=svc-state]')";
    b.wait_for("the service", badge, WAIT).await;
    assert_eq!(
        b.text("[data-service=uiwake] [data-field=svc-state]").await,
        "asleep"
    );
    b.wait_for(
        "the live stream",
        "document.querySelector('#live.on')",
        WAIT,
    )
    .await;
    b.shot("services-asleep").await;

    // Every state the badge shows is noted where a reload keeps it.
    b.js(&format!(
        "sessionStorage.setItem('seen', ''); \
         new MutationObserver(() => sessionStorage.setItem('seen', \
           sessionStorage.getItem('seen') + ' ' + {badge}.textContent)) \
           .observe({badge}, {{childList: true, characterData: true, subtree: true}});"
    ))
    .await;
    b.click("[data-service=uiwake] form[data-wake] button:not([formaction])")
        .await;
    b.wait_for(
        "the progress",
        "document.querySelector('[data-service=uiwake] [data-progress]').textContent.startsWith('Waking') \
         || document.querySelector('.flash.ok')",
        WAIT,
    )
    .await;
    b.shot("service-waking").await;
    b.wait_for(
        "the outcome",
        "document.querySelector('.flash.ok')",
        Duration::from_secs(40),
    )
    .await;
    let msg = b.text(".flash.ok").await;
    assert!(msg.starts_with("uiwake is awake"), "{msg}");
    assert_eq!(
        b.text("[data-service=uiwake] [data-field=svc-state]").await,
        "awake"
    );
    let seen = b.js("return sessionStorage.getItem('seen')").await;
    assert!(
        seen.as_str().unwrap().contains("waking"),
        "the badge showed waking live: {seen}"
    );
    // The wake is in the history, with its duration.
    let admin = host.admin().await;
    let api = admin.get_json("/api/v1/services/uiwake").await;
    let history = b
        .js("return document.querySelector('[data-service=uiwake] details table').textContent")
        .await;
    assert!(
        history.as_str().unwrap().contains("ok"),
        "page: {history}; API: {api}"
    );
    assert!(running_container(&app.name).await);
    b.shot("services-awake").await;

    // A bad definition comes back with the message next to its field.
    let form = "form[action='/services']";
    b.fill(&format!("{form} input[name=name]"), "uibad").await;
    b.fill(&format!("{form} input[name=members]"), &app.name)
        .await;
    b.fill(&format!("{form} input[name=idle_timeout]"), "soon")
        .await;
    b.click(&format!("{form} button.primary")).await;
    b.wait_for(
        "the field message",
        "document.querySelector('form[action=\"/services\"] input[name=idle_timeout][aria-invalid=true]')",
        WAIT,
    )
    .await;
    let msg = b
        .js("return document.querySelector('form[action=\"/services\"] input[name=idle_timeout]').nextElementSibling.textContent")
        .await;
    assert!(msg.as_str().unwrap().contains("soon"), "{msg}");
    b.shot("services-validation").await;
    b.close().await;
    host.stop().await.unwrap();
}

async fn running_container(name: &str) -> bool {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

// ---------------------------------------------------------------------------
// Plugin pages: the stacks plugin and the example plugin (issue 11)

/// The first-party plugin `plugin` (`plugins/{plugin}`, its component
/// built by `scripts/build-plugins.sh`) with `config`.
fn first_party(plugin: &str, config: Value) -> wakedock::config::PluginDecl {
    serde_json::from_value(json!({
        "manifest": format!("{}/../plugins/{plugin}/plugin.toml", env!("CARGO_MANIFEST_DIR")),
        "wasm": wasm_dir().join(format!("wakedock_plugin_{plugin}.wasm")),
        "config": config,
    }))
    .unwrap()
}

/// A host with the stacks and example plugins (pages under `/p/...`).
async fn host_with_pages() -> TestHost {
    TestHost::start_with(Backend::Sqlite, |c| {
        for plugin in ["stacks", "example"] {
            c.plugins.push(first_party(plugin, json!({})));
        }
    })
    .await
}

/// A stack whose `up` takes a few seconds (db healthy after 4 s, app
/// after db), so its output is watched while it runs.
fn slow_stack(instance: &str, app_name: &str) -> String {
    let l = format!("      wakedock.test: \"true\"\n      {INSTANCE_LABEL}: \"{instance}\"\n");
    format!(
        "services:\n  db:\n    image: {TEST_IMAGE}\n    environment:\n      HEALTHY_AFTER_MS: \"4000\"\n    healthcheck:\n      test: [\"CMD\", \"/testapp\", \"healthcheck\"]\n      interval: 1s\n      retries: 30\n    labels:\n{l}  app:\n    image: {TEST_IMAGE}\n    environment:\n      APP_NAME: {app_name}\n    depends_on:\n      db:\n        condition: service_healthy\n    labels:\n{l}networks:\n  default:\n    labels:\n      wakedock.test: \"true\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_is_edited_and_deployed_from_its_page_with_live_output_and_a_viewer_cannot_act() {
    let _one = BROWSER_LOCK.lock().await;
    let host = host_with_pages().await;
    let admin = host.admin().await;
    let project = ComposeProject::new("wd-uistack");
    let name = project.0.clone();
    let r = admin
        .post(
            "/api/v1/plugins/stacks/stacks",
            json!({"name": name, "compose": slow_stack(host.instance(), "before")}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    // The plugin's page is in the navigation, inside the layout.
    b.click("nav a[href='/p/stacks/']").await;
    b.wait_for(
        "the stacks list",
        "document.querySelector('table.list')",
        WAIT,
    )
    .await;
    assert!(b.text("main").await.contains(&name));
    b.shot("stacks-list").await;
    b.goto(&host.url(&format!("/p/stacks/stacks/{name}"))).await;
    assert!(b.text("main h1").await.contains("not deployed"));

    // Edit the compose file on the page and save: checked, then on disk.
    let edited = slow_stack(host.instance(), "edited");
    b.js(&format!(
        "document.querySelector('textarea[name=compose]').value = {};",
        serde_json::to_string(&edited).unwrap()
    ))
    .await;
    b.click("form[action$='/save'] button").await;
    b.wait_for("saved", "document.querySelector('.flash') && document.querySelector('.flash').innerText.includes('Saved')", WAIT).await;
    let on_disk = std::fs::read_to_string(
        host.data_path()
            .join("stacks")
            .join(&name)
            .join("compose.yaml"),
    )
    .unwrap();
    assert!(on_disk.contains("APP_NAME: edited"), "{on_disk}");
    // A mistake is shown at its field, and the file stays.
    b.js("document.querySelector('textarea[name=compose]').value = 'services:\\n  app:\\n    ports: [\"99999:1\"]\\n';").await;
    b.click("form[action$='/save'] button").await;
    b.wait_for(
        "the field error",
        "document.querySelector('.field-error')",
        WAIT,
    )
    .await;
    assert!(b.text(".field-error").await.contains("services.app"));
    b.shot("stack-field-error").await;
    assert_eq!(
        std::fs::read_to_string(
            host.data_path()
                .join("stacks")
                .join(&name)
                .join("compose.yaml")
        )
        .unwrap(),
        on_disk
    );

    // Deploy: the output arrives while it runs (the host script follows
    // the stream; `data-state` is set only from it).
    // Compose creating the stack's network (or another test's container)
    // may make Chromium drop the load that follows the post
    // (ERR_NETWORK_CHANGED): a post that reached the host runs anyway and
    // the stack's page is opened again (the stream replays); one that did
    // not is posted again.
    let stack_api = format!("/api/v1/plugins/stacks/stacks/{name}");
    b.post_form(
        &host.url(&format!("/p/stacks/stacks/{name}")),
        &[],
        "form[action$='/deploy'] button",
        async || !admin.get_json(&stack_api).await["last_action"].is_null(),
    )
    .await;
    b.wait_for(
        "the running action from the stream",
        "document.querySelector('[data-compose-output]') && document.querySelector('[data-compose-output]').dataset.state === 'running'",
        WAIT,
    )
    .await;
    b.wait_for(
        "the action's end from the stream",
        "document.querySelector('[data-compose-output]').dataset.state === 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    let out = b.text("[data-compose-output]").await;
    assert!(out.contains("Healthy") && out.contains("Started"), "{out}");
    assert!(b
        .text("[data-compose-status]")
        .await
        .contains("up: succeeded"));
    b.shot("stack-deployed").await;
    let s = admin
        .get_json(&format!("/api/v1/plugins/stacks/stacks/{name}"))
        .await;
    assert_eq!(s["stack"]["state"], "running");
    b.close().await;

    // A viewer: the page without a single action, and a forged post refused.
    admin
        .create_user("vic", "viewer-password-1", "viewer")
        .await;
    let b = Browser::start().await;
    b.login(&host, "vic", "viewer-password-1").await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    b.goto(&host.url(&format!("/p/stacks/stacks/{name}"))).await;
    assert!(b.text("main h1").await.contains("running"));
    assert_eq!(b.count("main form").await, 0, "a viewer sees a form");
    assert_eq!(b.count("main button").await, 0, "a viewer sees a button");
    assert_eq!(
        b.js("return document.querySelector('textarea[name=compose]').readOnly")
            .await,
        json!(true)
    );
    b.shot("stack-viewer").await;
    b.js(&format!(
        "const f = document.createElement('form'); f.method = 'post'; \
         f.action = '/p/stacks/stacks/{name}/stop'; \
         const i = document.createElement('input'); i.type = 'hidden'; i.name = 'confirm'; i.value = 'yes'; f.append(i); \
         document.body.append(f); f.submit();"
    ))
    .await;
    b.wait_for("the refusal", "document.querySelector('.flash.err')", WAIT)
        .await;
    assert!(b.text(".flash.err").await.contains("token"));
    // Through the API the viewer is refused by the plugin's role check.
    let viewer = host.login("vic", "viewer-password-1").await;
    assert_eq!(
        viewer
            .post_empty(&format!("/api/v1/plugins/stacks/stacks/{name}/stop"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let s = admin
        .get_json(&format!("/api/v1/plugins/stacks/stacks/{name}"))
        .await;
    assert_eq!(
        s["stack"]["state"], "running",
        "a refused stop did something"
    );
    b.close().await;
    let r = admin
        .post_empty(&format!(
            "/api/v1/plugins/stacks/stacks/{name}/down?wait=110000"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_plugins_page_renders_in_the_layout_and_cannot_act_as_the_user() {
    let _one = BROWSER_LOCK.lock().await;
    let host = host_with_pages().await;
    let admin = host.admin().await;
    let users_before = admin.get_json("/api/v1/users").await;
    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    b.click("nav a[href='/p/example/']").await;
    b.wait_for(
        "the example page",
        "document.querySelector('[data-plugin-page] h1, main h1')",
        WAIT,
    )
    .await;
    // Inside the layout: the host's navigation around the plugin's content.
    assert!(b.text("main").await.contains("Example plugin"));
    assert!(b.count("nav a[href='/p/stacks/']").await == 1);
    // Its script never ran (stripped), and it may not post anywhere but
    // to its own pages.
    assert_eq!(
        b.js("return window.examplePwned === undefined").await,
        json!(true)
    );
    assert_eq!(b.count("main script").await, 0);
    b.shot("example-page").await;
    // Its own form works.
    b.fill("input[name=note]", "hello from the page").await;
    b.click("form[action='/p/example/note'] button").await;
    b.wait_for(
        "the note",
        "document.body.innerText.includes('Note: hello from the page')",
        WAIT,
    )
    .await;
    // A post to the host's API is blocked by the page's policy: the page
    // stays, nothing is created.
    b.click("form[action='/api/v1/users'] button").await;
    b.wait_for(
        "the page still there",
        "location.pathname.startsWith('/p/example')",
        WAIT,
    )
    .await;
    // A post to another plugin's page carries the example's token: refused.
    let token = b
        .js("return document.querySelector('form[action=\"/p/stacks/stacks\"] input[name=wd_token]').value")
        .await;
    let access = b
        .client
        .get_named_cookie("wakedock_access")
        .await
        .unwrap()
        .value()
        .to_string();
    let r = reqwest::Client::new()
        .post(host.url("/p/stacks/stacks"))
        .header("cookie", format!("wakedock_access={access}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=mallory&compose=x&wd_token={}",
            token.as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The policy that keeps its forms and scripts in: the host's own files
    // only, forms only to its own pages.
    let page = reqwest::Client::new()
        .get(host.url("/p/example/"))
        .header("cookie", format!("wakedock_access={access}"))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!(
            "form-action {}/p/example/ {}/logout;",
            host.base, host.base
        )),
        "{csp}"
    );
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let users_after = admin.get_json("/api/v1/users").await;
    assert_eq!(users_before, users_after, "the page created a user");
    assert!(!host.data_path().join("stacks").join("mallory").exists());
    b.close().await;
    host.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Live plugin pages: the alerts plugin's pages (issue 12)

/// A host scoped to `instance` with the alerts plugin (channels to
/// loopback allowed) and the example plugin (a page that is not live).
async fn host_with_alerts(instance: &str) -> TestHost {
    TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.instance = Some(instance.to_owned());
        c.plugins
            .push(first_party("alerts", json!({"allow_hosts": ["127.0.0.1"]})));
        c.plugins.push(first_party("example", json!({})));
    })
    .await
}

/// Reads server-sent events from `r` until `until` holds of one, for at
/// most `limit`; returns every event read, in order.
async fn sse_until(
    r: &mut reqwest::Response,
    limit: Duration,
    until: impl Fn(&(String, String)) -> bool,
) -> Vec<(String, String)> {
    let mut buf = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit * patience();
    loop {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out after {limit:?}; events so far: {seen:?}"))
            .expect("the stream")
            .unwrap_or_else(|| panic!("the stream ended; events so far: {seen:?}"));
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for ev in drain_sse(&mut buf) {
            let done = until(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }
}

/// The stream of a live page carries the plugin's own events on the
/// page's topics, topic only, to a signed-in browser session: not another
/// plugin's or the host's events, nothing to a caller without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_pages_stream_carries_only_its_plugins_own_topics_to_a_session() {
    let host = host_with_alerts(&new_instance()).await;
    let url = host.url("/ui/events/plugin/alerts?path=%2Fhistory");
    let http = reqwest::Client::new();
    let viewer = host.user_with_role("viewer").await;
    let session = |path: &str| {
        http.get(host.url(path))
            .header("cookie", format!("wakedock_access={}", viewer.token))
    };

    // No session: refused, nothing streamed.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(&url)
        .header("cookie", "wakedock_access=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A bearer token is an API client, not a page.
    let r = http
        .get(&url)
        .bearer_auth(&viewer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A page whose entry names no topics has no stream; nor has a plugin
    // without pages.
    for path in [
        "/ui/events/plugin/example?path=%2F",
        "/ui/events/plugin/wake",
    ] {
        let r = session(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The layout marks a live page with its stream, and only a live one.
    let html = |path: &'static str| {
        let r = session(path).send();
        async move { r.await.unwrap().text().await.unwrap() }
    };
    let history = html("/p/alerts/history").await;
    assert!(
        history.contains(r#"data-live="/ui/events/plugin/alerts?path=%2Fhistory""#),
        "{history}"
    );
    assert!(!html("/p/example/").await.contains("data-live"));

    // A viewer's session on a viewer page: the stream.
    let mut r = session("/ui/events/plugin/alerts?path=%2Fhistory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    sse_until(&mut r, WAIT, |(name, _)| name == "hello").await;
    // Another plugin (even on an `alerts.` topic), the host, and the
    // plugin on a topic the page does not name: none of them. The bus
    // keeps order, so the first event through must be the last published.
    host.bus.publish("example", "alerts.fired", "{}");
    host.bus.publish("host", "alerts.fired", "{}");
    host.bus.publish("alerts", "alertsx.fired", "{}");
    host.bus.publish(
        "alerts",
        "alerts.fired",
        r#"{"detail":"payload-not-for-the-page"}"#,
    );
    let seen = sse_until(&mut r, WAIT, |(name, _)| name == "changed").await;
    let (_, data) = seen.last().unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data, json!({"topic": "alerts.fired"}), "{seen:?}");
}

/// The issue's browser test: a channel made and tested on the alerts
/// pages, a rule made there, then the alert fires on the open page without
/// a reload; and a live page never clobbers a form being typed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_made_on_the_pages_fires_live_on_the_open_page() {
    use wakedock_tests::receiver::Receiver;

    let _one = BROWSER_LOCK.lock().await;
    let rx = Receiver::start().await;
    let instance = new_instance();
    let mark = unique("ui-alert");
    // Created now, started (and exiting 1) once the page is open.
    let app = TestContainer::from_spec(AppSpec {
        env: &[("EXIT_AFTER_MS", "1000"), ("EXIT_CODE", "1")],
        labels: &[("wakedock.test.ui-alert", &mark)],
        instance: Some(&instance),
        start: false,
        ..AppSpec::default()
    })
    .await;
    let host = host_with_alerts(&instance).await;
    let b = Browser::start().await;
    b.login(&host, "admin", ADMIN_PASSWORD).await;
    b.wait_for("the overview", "document.querySelector('.tiles')", WAIT)
        .await;
    b.click("nav a[href='/p/alerts/']").await;
    b.wait_for(
        "the alerts page",
        "document.querySelector('[data-plugin-page=alerts] .firing-count')",
        WAIT,
    )
    .await;

    // A webhook channel to the receiver, through the form; then its test.
    let admin = host.admin().await;
    let has = async |list: &str, name: &str| {
        admin
            .get_json(&format!("/api/v1/plugins/alerts/{list}"))
            .await
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == name))
    };
    let flash = |text: &str| {
        format!(
            "document.querySelector('.flash.ok') && document.querySelector('.flash.ok').innerText.includes({})",
            json!(text)
        )
    };
    // Makes `name` with the form of the page `/p/alerts/{list}` (fields
    // by their selector inside the form); sees the answer when shown.
    let make = async |list: &str, name: &str, fields: &[(&str, &str)], said: &str| {
        let page = format!("/p/alerts/{list}");
        let form = format!("form[action='{page}']");
        let fields: Vec<(String, &str)> = fields
            .iter()
            .map(|(c, v)| (format!("{form} {c}"), *v))
            .collect();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(c, v)| (c.as_str(), *v)).collect();
        if b.post_form(
            &host.url(&page),
            &fields,
            &format!("{form} button.primary"),
            async || has(list, name).await,
        )
        .await
        {
            b.wait_for(&format!("{name} made"), &flash(said), WAIT)
                .await;
        }
    };
    let hook = rx.url("/from-browser");
    make(
        "channels",
        "browserhook",
        &[
            ("input[name=name]", "browserhook"),
            ("select[name=type]", "webhook"),
            ("input[name=url]", &hook),
        ],
        "Channel created.",
    )
    .await;
    let channels = host.url("/p/alerts/channels");
    let shown = b
        .post_form(
            &channels,
            &[],
            "form[action='/p/alerts/channels/browserhook/test'] button",
            async || !rx.delivered().is_empty(),
        )
        .await;
    let n = rx.first(WAIT, "the test notification").await;
    assert_eq!(n["status"], "test", "{n}");
    assert_eq!(rx.delivered()[0].path, "/from-browser");
    if shown {
        b.wait_for(
            "the test's result on the page",
            &flash("Test notification delivered to browserhook"),
            WAIT,
        )
        .await;
    } else {
        // Its answer page was dropped: the channel's health says it.
        b.wait_for(
            "the channel's health after the test",
            "Array.from(document.querySelectorAll('main tr')).some((r) => r.innerText.includes('browserhook') \
             && Array.from(r.querySelectorAll('.badge')).some((b) => b.textContent === 'ok'))",
            WAIT,
        )
        .await;
    }
    b.shot("alerts-channel-tested").await;

    // An exit rule for the labelled container, through the form.
    let selector = format!("wakedock.test.ui-alert={mark}");
    make(
        "rules",
        "browser-exit",
        &[
            ("input[name=name]", "browser-exit"),
            ("select[name=kind]", "exit"),
            ("select[name=severity]", "critical"),
            ("input[name=labels]", &selector),
            ("input[name=channels]", "browserhook"),
        ],
        "Rule created.",
    )
    .await;
    assert!(
        b.text("main").await.contains(&app.name),
        "the rule's preview lists the container"
    );

    // The alerts page, open and live; then the container exits 1.
    b.goto(&host.url("/p/alerts/")).await;
    b.wait_for(
        "the page's live stream",
        "document.querySelector('[data-plugin-page][data-live-state=on]')",
        WAIT,
    )
    .await;
    assert_eq!(b.text(".firing-count").await, "0");
    b.js("window.__noReload = true").await;
    docker()
        .await
        .start_container(
            &app.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    b.wait_for(
        "the firing alert on the open page",
        &format!(
            "document.querySelector('.firing-count').textContent === '1' && \
             Array.from(document.querySelectorAll('[data-plugin-page] tr.alert-row')).some((r) => \
               r.innerText.includes({name:?}) && r.innerText.includes('exited with code 1') && r.innerText.includes('firing'))",
            name = app.name
        ),
        Duration::from_secs(30) * patience(),
    )
    .await;
    assert_eq!(
        b.js("return window.__noReload === true").await,
        json!(true),
        "the page was reloaded"
    );
    let d = rx
        .wait_delivered(WAIT * patience(), "the firing notification", |d| {
            d.iter().any(|r| r.json()["status"] == "firing")
        })
        .await;
    let firing = d.iter().find(|r| r.json()["status"] == "firing").unwrap();
    assert_eq!(firing.json()["target"], app.name.as_str());
    b.shot("alerts-fired-live").await;

    // A form being typed in is not clobbered: the update waits while it
    // has focus, and what was typed is carried into the new content.
    b.goto(&host.url("/p/alerts/rules")).await;
    b.wait_for(
        "the page's live stream",
        "document.querySelector('[data-plugin-page][data-live-state=on]')",
        WAIT,
    )
    .await;
    b.js("window.__noReload = true").await;
    let field = "form[action='/p/alerts/rules'] input[name=name]";
    b.fill(field, "half-typed").await;
    b.js(&format!(
        "document.querySelector(\"{field}\").__old = true; \
         document.querySelector(\"{field}\").focus();"
    ))
    .await;
    // What the plugin publishes when an alert fires (the plugin's own
    // source on the host's bus), without a second container.
    host.bus.publish("alerts", "alerts.fired", "{}");
    b.wait_for(
        "the update held back",
        "document.querySelector('[data-plugin-page]').dataset.liveState === 'held'",
        WAIT,
    )
    .await;
    assert_eq!(
        b.js(&format!(
            "const f = document.querySelector(\"{field}\"); \
             return [f.value, f.__old === true, document.activeElement === f];"
        ))
        .await,
        json!(["half-typed", true, true])
    );
    b.shot("alerts-live-held").await;
    b.js("document.activeElement.blur()").await;
    b.wait_for(
        "the held update swapped in",
        &format!(
            "document.querySelector('[data-plugin-page]').dataset.liveState === 'on' && \
             document.querySelector(\"{field}\").__old !== true"
        ),
        WAIT,
    )
    .await;
    assert_eq!(
        b.js(&format!("return document.querySelector(\"{field}\").value"))
            .await,
        json!("half-typed"),
        "the typed value was lost"
    );
    assert_eq!(b.js("return window.__noReload === true").await, json!(true));
    b.close().await;
    host.stop().await.unwrap();
}
