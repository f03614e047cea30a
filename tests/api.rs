//! The HTTP API end to end: a real host against the real Docker engine and
//! both databases.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wakedock::auth::jwt::{Claims, TokenKeys};
use wakedock::db::users::Role;
use wakedock_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_database_and_docker_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let r = reqwest::get(host.url("/health")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}");
        let h: Value = r.json().await.unwrap();
        assert_eq!(h["status"], "ok");
        assert_eq!(h["database"]["status"], "up");
        assert_eq!(h["docker"]["status"], "up");
        assert_eq!(h["database_backend"], backend.name());
        // The size is for admins only.
        assert!(h.get("database_size_bytes").is_none(), "{h}");
        let admin = host.admin().await;
        let h: Value = admin.get("/health").await.json().await.unwrap();
        assert!(
            h["database_size_bytes"].as_i64().unwrap() > 0,
            "{backend:?}: {h}"
        );
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_down_is_reported_and_the_api_keeps_serving() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.docker.socket_path = "/nonexistent/wakedock-test/docker.sock".into();
    })
    .await;
    let r = reqwest::get(host.url("/health")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["database"]["status"], "up");
    assert_eq!(h["docker"]["status"], "down");
    // Why it is down names the socket: admins only.
    assert!(h["docker"].get("error").is_none(), "{h}");
    assert!(!h.to_string().contains("nonexistent"), "{h}");
    let admin = host.admin().await;
    let h = admin.get("/health").await;
    assert_eq!(h.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h: Value = h.json().await.unwrap();
    assert!(h["docker"]["error"].as_str().is_some(), "{h}");
    let viewer = host.user_with_role("viewer").await;
    let h: Value = viewer.get("/health").await.json().await.unwrap();
    assert!(h["docker"].get("error").is_none(), "{h}");
    let r = admin.get("/api/v1/containers").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(problem_code(r).await, "docker_unavailable");
    // Everything that does not need Docker still works.
    assert_eq!(admin.get("/api/v1/auth/me").await.status(), StatusCode::OK);
    host.stop().await.unwrap();
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

/// Runs a container action that must succeed; returns its outcome.
async fn act(admin: &ApiClient, name: &str, action: &str) -> Value {
    let r = admin
        .post_empty(&format!("/api/v1/containers/{name}/{action}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{action} {name}");
    r.json().await.unwrap()
}

async fn state_of(admin: &ApiClient, name: &str) -> String {
    admin.get_json(&format!("/api/v1/containers/{name}")).await["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_through_the_api() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let c = TestContainer::run(&[("LOG_EVERY_MS", "100"), ("APP_NAME", "lifecycle")]).await;

    // List, filtered by our test label and by search.
    let list = admin
        .get_json("/api/v1/containers?label=wakedock.test=true")
        .await;
    let entry = find(&list, &c.name).expect("test container listed");
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["image"], TEST_IMAGE);
    assert_eq!(entry["labels"]["wakedock.test"], "true");
    assert_eq!(entry["health"], "none");
    assert_eq!(entry["ports"][0]["private_port"], 8080);
    assert_eq!(entry["ports"][0]["ip"], "127.0.0.1");
    assert!(entry["created"].as_i64().unwrap() > 0);
    let searched = admin
        .get_json(&format!("/api/v1/containers?q={}", c.name.to_uppercase()))
        .await;
    assert_eq!(searched.as_array().unwrap().len(), 1);

    // Inspect by name and by id.
    let d = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(d["id"], c.id.as_str());
    assert_eq!(d["running"], true);
    let by_id = admin
        .get_json(&format!("/api/v1/containers/{}", &c.id[..12]))
        .await;
    assert_eq!(by_id["name"], c.name.as_str());

    // Stop, start again, restart.
    let r = admin
        .post_empty(&format!("/api/v1/containers/{}/stop?timeout=5", c.name))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let o: Value = r.json().await.unwrap();
    assert_eq!(
        (o["action"].as_str(), o["changed"].as_bool()),
        (Some("stop"), Some(true))
    );
    assert_eq!(o["id"], c.id.as_str());
    assert_eq!(state_of(&admin, &c.name).await, "exited");
    // Stopping a stopped container is not an error, just no change.
    assert_eq!(act(&admin, &c.name, "stop").await["changed"], false);

    let r = admin
        .post_empty(&format!("/api/v1/containers/{}/start", c.name))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(state_of(&admin, &c.name).await, "running");
    let before = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await["started_at"]
        .clone();
    let r = admin
        .post_empty(&format!("/api/v1/containers/{}/restart?timeout=5", c.name))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let after = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(after["state"], "running");
    assert_ne!(
        after["started_at"], before,
        "restart starts the process again"
    );

    // Pause freezes it, unpause thaws it; both are idempotent.
    assert_eq!(act(&admin, &c.name, "pause").await["changed"], true);
    assert_eq!(state_of(&admin, &c.name).await, "paused");
    assert_eq!(act(&admin, &c.name, "pause").await["changed"], false);
    act(&admin, &c.name, "unpause").await;
    assert_eq!(state_of(&admin, &c.name).await, "running");

    // Logs: the tail as JSON.
    let lines = wakedock_tests::eventually(Duration::from_secs(10), "log lines", || async {
        let v = admin
            .get_json(&format!("/api/v1/containers/{}/logs?tail=50", c.name))
            .await;
        let lines = v.as_array().unwrap().clone();
        lines
            .iter()
            .any(|l| l["line"].as_str().unwrap().starts_with("log line"))
            .then_some(lines)
    })
    .await;
    assert!(lines.len() <= 50);
    assert!(lines.iter().all(|l| l["stream"] == "stdout"));
    assert!(lines.iter().any(
        |l| l["line"].as_str().unwrap().contains("listening on :8080")
            || l["line"].as_str().unwrap().starts_with("log line")
    ));

    // Logs: follow streams new lines as server-sent events.
    let r = admin
        .request(
            Method::GET,
            &format!("/api/v1/containers/{}/logs?tail=0&follow=true", c.name),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.matches("event: stdout").count() >= 2 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "followed log events: {seen}");
    assert!(seen.contains("data: log line"), "{seen}");
    drop(body);

    // Stats: a real sample from the engine.
    let s = admin
        .get_json(&format!("/api/v1/containers/{}/stats", c.name))
        .await;
    assert_eq!(s["id"], c.id.as_str());
    assert!(s["memory_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(s["cpu_percent"].as_f64().unwrap() >= 0.0);
    assert!(s["memory_limit_bytes"].as_u64().unwrap() > 0);

    // Remove: refused while running without force, then forced.
    let r = admin
        .delete(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(problem_code(r).await, "conflict");
    let r = admin
        .delete(&format!("/api/v1/containers/{}?force=true", c.name))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = admin.get(&format!("/api/v1/containers/{}", c.name)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Every action is in the audit log, with actor and target.
    let audit = admin
        .get_json("/api/v1/audit?actor=admin&action=container.&per_page=100")
        .await;
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == c.name.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("container.stop", "success"),
        ("container.start", "success"),
        ("container.restart", "success"),
        ("container.pause", "success"),
        ("container.unpause", "success"),
        ("container.remove", "failure"),
        ("container.remove", "success"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {actions:?}"
        );
    }
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_container_refs() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let r = admin.get("/api/v1/containers/wd-test-does-not-exist").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem_code(r).await, "not_found");
    let r = admin
        .post_empty("/api/v1/containers/wd-test-does-not-exist/start")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = admin.get("/api/v1/containers/bad%20name").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(r).await, "invalid_container_ref");
    let r = admin.post_empty("/api/v1/containers/web/explode").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(r).await, "invalid_path");
    let r = admin.get("/api/v1/containers/web/logs?tail=lots").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(r).await, "invalid_query");
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let c = TestContainer::run(&[]).await;
        let viewer = host.user_with_role("viewer").await;
        let user = host.user_with_role("user").await;

        // A viewer reads but cannot operate.
        assert_eq!(
            viewer.get("/api/v1/containers").await.status(),
            StatusCode::OK
        );
        let r = viewer
            .post_empty(&format!("/api/v1/containers/{}/stop", c.name))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{backend:?}");
        assert_eq!(problem_code(r).await, "forbidden");
        let admin = host.admin().await;
        assert_eq!(state_of(&admin, &c.name).await, "running");

        // A user operates but cannot remove or manage users.
        let r = user
            .post_empty(&format!("/api/v1/containers/{}/restart?timeout=2", c.name))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = user
            .delete(&format!("/api/v1/containers/{}?force=true", c.name))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            user.get("/api/v1/users").await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            user.get("/api/v1/audit").await.status(),
            StatusCode::FORBIDDEN
        );

        // The refusal is audited.
        let audit = admin.get_json("/api/v1/audit?action=container.stop").await;
        assert!(audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["result"] == "denied" && e["target"] == c.name.as_str()));
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_bad_tokens_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let http = reqwest::Client::new();
        let login = |u: &str, p: &str| {
            http.post(host.url("/api/v1/auth/login"))
                .json(&json!({"username": u, "password": p}))
                .send()
        };
        let r = login("admin", "wrong-password").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}");
        assert_eq!(problem_code(r).await, "unauthorized");
        let r = login("nobody", "wrong-password").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // No token, garbage, another key's token, a tampered one, an expired one.
        let me = host.url("/api/v1/auth/me");
        assert_eq!(
            http.get(&me).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let admin = host.admin().await;
        let mut parts: Vec<String> = admin.token.split('.').map(str::to_string).collect();
        let payload = parts[1].clone();
        // Flip one character of the payload: the signature no longer matches.
        let flipped: String = payload
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                if i == 5 {
                    if ch == 'A' {
                        'B'
                    } else {
                        'A'
                    }
                } else {
                    ch
                }
            })
            .collect();
        parts[1] = flipped;
        let tampered = parts.join(".");
        let keys = TokenKeys::new(JWT_SECRET.as_bytes(), Duration::from_secs(60));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let me_json: Value = admin.get_json("/api/v1/auth/me").await;
        let expired = keys
            .sign(&Claims {
                sub: me_json["id"].as_str().unwrap().into(),
                name: "admin".into(),
                role: Role::Admin,
                iat: now - 7200,
                exp: now - 3600,
                jti: "x".into(),
                typ: "access".into(),
                ver: 0,
            })
            .unwrap();
        let foreign = TokenKeys::new(
            b"some-other-secret-some-other-secret",
            Duration::from_secs(60),
        )
        .issue(me_json["id"].as_str().unwrap(), "admin", Role::Admin, 0)
        .unwrap();
        for (what, token) in [
            ("garbage", "not.a.token".to_string()),
            ("tampered", tampered),
            ("expired", expired),
            ("foreign key", foreign),
        ] {
            let r = http.get(&me).bearer_auth(&token).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{what} token accepted"
            );
            let body: Value = r.json().await.unwrap();
            if what == "expired" {
                assert_eq!(body["detail"], "token expired");
            }
        }
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_and_reuse_detection_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        let http = reqwest::Client::new();
        let refresh = |t: &str| {
            http.post(host.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": t}))
                .send()
        };
        let r = refresh(&admin.refresh_token).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}");
        let second: Value = r.json().await.unwrap();
        let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(second_refresh, admin.refresh_token);
        let new_access = second["access_token"].as_str().unwrap();
        let r = http
            .get(host.url("/api/v1/auth/me"))
            .bearer_auth(new_access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // The old refresh token is refused...
        let r = refresh(&admin.refresh_token).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // ...and its reuse revoked the whole family, including the new one.
        let r = refresh(&second_refresh).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let audit = admin.get_json("/api/v1/audit?action=auth.refresh").await;
        assert!(audit["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("reuse"));

        // Logout revokes the refresh token.
        let fresh = host.admin().await;
        let r = http
            .post(host.url("/api/v1/auth/logout"))
            .json(&json!({"refresh_token": fresh.refresh_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = refresh(&fresh.refresh_token).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limit_answers_429_with_retry_after() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.rate_limit.login_per_ip_per_minute = 3;
    })
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let r = http
            .post(host.url("/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            assert_eq!(problem_code(r).await, "rate_limited");
        }
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    let secs = retry_after.expect("Retry-After header");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Even the right password is refused while limited.
    let r = http
        .post(host.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rate_limit_per_ip() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.rate_limit.api_per_ip_per_second = 1;
        c.security.rate_limit.api_burst = 5;
    })
    .await;
    let http = reqwest::Client::new();
    let mut limited = 0;
    for _ in 0..12 {
        let r = http.get(host.url("/api/v1/auth/me")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 5, "only {limited} of 12 requests were limited");
    // /health is outside the API budget.
    assert_eq!(
        http.get(host.url("/health")).send().await.unwrap().status(),
        StatusCode::OK
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_csrf_for_changes() {
    let host = TestHost::start(Backend::Sqlite).await;
    let c = TestContainer::run(&[]).await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = http
        .post(host.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let access = cookies
        .iter()
        .find(|c| c.starts_with("wakedock_access="))
        .unwrap();
    assert!(
        access.contains("HttpOnly") && access.contains("SameSite=Strict"),
        "{access}"
    );
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("wakedock_csrf="))
        .unwrap();
    assert!(!csrf_cookie.contains("HttpOnly"));
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();

    // Reads work with the cookie alone.
    let r = http.get(host.url("/api/v1/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A change without the CSRF header is refused, with a wrong one too.
    let stop = host.url(&format!("/api/v1/containers/{}/stop?timeout=1", c.name));
    let r = http.post(&stop).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&stop)
        .header("x-csrf-token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&stop)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Refresh from the cookie: only with the CSRF header (a cross-site
    // page could otherwise make the browser trade the cookie).
    let r = http
        .post(host.url("/api/v1/auth/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(host.url("/api/v1/auth/refresh"))
        .header("x-csrf-token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(host.url("/api/v1/auth/refresh"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Then logout clears the cookies.
    let r = http
        .post(host.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http.get(host.url("/api/v1/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_management_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        let r = admin
            .post(
                "/api/v1/users",
                json!({"username": "dora", "password": "dora-password-1", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{backend:?}");
        let dora: Value = r.json().await.unwrap();
        assert_eq!(dora["role"], "viewer");
        assert!(dora.get("password_hash").is_none());
        let id = dora["id"].as_str().unwrap().to_string();

        // Bad input is refused with a clear code; nothing is created.
        for (body, code) in [
            (
                json!({"username": "dora", "password": "another-password", "role": "viewer"}),
                StatusCode::CONFLICT,
            ),
            (
                json!({"username": "x y", "password": "another-password", "role": "viewer"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"username": "eve", "password": "short", "role": "viewer"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"username": "eve", "password": "long-enough-pw", "role": "root"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"username": "eve", "password": "long-enough-pw", "role": "viewer", "admin": true}),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let r = admin.post("/api/v1/users", body.clone()).await;
            assert_eq!(r.status(), code, "{body}");
        }
        assert_eq!(
            admin
                .get_json("/api/v1/users")
                .await
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // Promote, then the new role applies to an existing session at once.
        let viewer = host.login("dora", "dora-password-1").await;
        assert_eq!(
            viewer.get("/api/v1/users").await.status(),
            StatusCode::FORBIDDEN
        );
        let r = admin
            .patch(&format!("/api/v1/users/{id}"), json!({"role": "admin"}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(viewer.get("/api/v1/users").await.status(), StatusCode::OK);

        // Deactivation locks out at once and revokes refresh tokens.
        let r = admin
            .patch(&format!("/api/v1/users/{id}"), json!({"active": false}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            viewer.get("/api/v1/auth/me").await.status(),
            StatusCode::UNAUTHORIZED
        );
        let r = reqwest::Client::new()
            .post(host.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": viewer.refresh_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // The last active admin can be neither demoted nor deleted.
        let me: Value = admin.get_json("/api/v1/auth/me").await;
        let my_id = me["id"].as_str().unwrap();
        let r = admin
            .patch(&format!("/api/v1/users/{my_id}"), json!({"role": "user"}))
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = admin.delete(&format!("/api/v1/users/{my_id}")).await;
        assert_eq!(r.status(), StatusCode::CONFLICT);

        // Delete; unknown and malformed ids.
        assert_eq!(
            admin.delete(&format!("/api/v1/users/{id}")).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            admin.get(&format!("/api/v1/users/{id}")).await.status(),
            StatusCode::NOT_FOUND
        );
        let r = admin.get("/api/v1/users/not-a-uuid").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // Every change is audited, with pagination.
        let page = admin
            .get_json("/api/v1/audit?action=user.&per_page=2&page=1")
            .await;
        assert_eq!(page["per_page"], 2);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert!(page["total"].as_i64().unwrap() >= 5, "{page}");
        let r = admin.get("/api/v1/audit?per_page=0").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let logins = admin.get_json("/api/v1/audit?action=auth.login").await;
        assert!(logins["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["client_ip"] == "127.0.0.1"));
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_4xx() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.max_body_bytes = 4096;
    })
    .await;
    let admin = host.admin().await;
    let post_raw = |body: &'static str, ct: &'static str| {
        admin
            .request(Method::POST, "/api/v1/users")
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = post_raw("{not json", "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(r).await, "malformed_json");
    let r = post_raw(
        r#"{"username": 5, "password": "x", "role": "user"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(r).await, "invalid_body");
    let r = post_raw(r#"{"username": "a"}"#, "text/plain")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = "x".repeat(10_000);
    let r = admin
        .post(
            "/api/v1/users",
            json!({"username": "big", "password": big, "role": "user"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(r).await, "payload_too_large");
    let r = admin.get("/api/v1/nothing-here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem_code(r).await, "not_found");
    let r = admin
        .request(Method::PUT, "/api/v1/users")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let doc = admin.get_json("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/health", "get"),
        ("/metrics", "get"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/logout-all", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/containers", "get"),
        ("/api/v1/containers/{id}", "get"),
        ("/api/v1/containers/{id}", "delete"),
        ("/api/v1/containers/{id}/{action}", "post"),
        ("/api/v1/containers/{id}/logs", "get"),
        ("/api/v1/containers/{id}/stats", "get"),
        ("/api/v1/users", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users/{id}", "patch"),
        ("/api/v1/users/{id}", "delete"),
        ("/api/v1/audit", "get"),
        ("/api/v1/backups", "get"),
        ("/api/v1/backups", "post"),
        ("/api/v1/backups/{name}", "get"),
        ("/api/v1/wake/subscribe", "get"),
        ("/api/v1/wake/{service}/page", "get"),
        ("/api/v1/wake/{service}/events", "get"),
        ("/api/v1/wake/{service}", "post"),
        ("/api/v1/wake/activity", "post"),
        ("/api/v1/routes", "get"),
        ("/api/v1/routes/subscribe", "get"),
        ("/api/v1/compose/{project}/output", "get"),
        ("/api/v1/services", "get"),
        ("/api/v1/services", "post"),
        ("/api/v1/services/{name}", "get"),
        ("/api/v1/services/{name}", "put"),
        ("/api/v1/services/{name}", "delete"),
        ("/api/v1/services/{name}/wake", "post"),
        ("/api/v1/services/{name}/sleep", "post"),
        ("/api/v1/plugins", "get"),
        ("/api/v1/plugins", "post"),
        ("/api/v1/plugins/{name}", "get"),
        ("/api/v1/plugins/{name}", "patch"),
        ("/api/v1/plugins/{name}", "delete"),
        ("/api/v1/plugins/{name}/{path}", "get"),
        ("/api/v1/plugins/{name}/{path}", "post"),
        ("/api/v1/plugins/{name}/{path}", "put"),
        ("/api/v1/plugins/{name}/{path}", "patch"),
        ("/api/v1/plugins/{name}/{path}", "delete"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Every documented operation is served: no 404 "no such route", no 405.
    let mut count = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{action}", "start")
                .replace("{name}", "no-such-plugin")
                .replace(
                    "/backups/no-such-plugin",
                    "/backups/wakedock-backup-1T.jsonl.gz",
                )
                .replace("{service}", "no-such-service")
                .replace("{project}", "no-such-project")
                .replace("{path}", "some/path");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = admin
                .request(m, &concrete)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body.contains("no such route")),
                "{method} {path} is documented but not routed"
            );
            count += 1;
        }
    }
    assert_eq!(count, expected.len(), "documented operations");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["bridge"].is_object());
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_security_headers() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.cors_origins = vec!["https://ui.example.test".into()];
    })
    .await;
    let _c = TestContainer::run(&[]).await;
    let admin = host.admin().await;
    admin.get_json("/api/v1/containers").await;
    let r = reqwest::get(host.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"wakedock_http_requests_total{method="GET",route="/api/v1/containers",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("wakedock_http_request_duration_seconds_bucket"));
    let running: f64 = text
        .lines()
        .find(|l| l.starts_with(r#"wakedock_containers{state="running"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("running container gauge");
    assert!(running >= 1.0);
    assert!(text.contains("wakedock_process_resident_memory_bytes"));

    // gzip when asked; never on an event stream (it must flush per event).
    let r = admin
        .request(Method::GET, "/api/v1/containers")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = admin
        .request(
            Method::GET,
            &format!("/api/v1/containers/{}/logs?follow=true", _c.name),
        )
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("content-encoding").is_none(),
        "{:?}",
        r.headers()
    );
    drop(r);

    // Strict headers everywhere, HSTS only behind TLS.
    let r = admin.get("/api/v1/auth/me").await;
    let h = r.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.get("strict-transport-security").is_none());
    let r = admin
        .request(Method::GET, "/api/v1/auth/me")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("strict-transport-security"));

    // CORS: the configured origin is allowed, another is not.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(Method::OPTIONS, host.url("/api/v1/containers"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let r = preflight("https://ui.example.test").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ui.example.test"
    );
    let r = preflight("https://evil.example.test").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_log_streams() {
    let host = TestHost::start(Backend::Sqlite).await;
    let c = TestContainer::run(&[("LOG_EVERY_MS", "200")]).await;
    let admin = host.admin().await;
    let r = admin
        .request(
            Method::GET,
            &format!("/api/v1/containers/{}/logs?follow=true&tail=1", c.name),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = r.bytes_stream();
    assert!(stream.next().await.is_some());
    // A follow stream is open; shutdown must still finish promptly.
    let started = std::time::Instant::now();
    host.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

// --- Issue 10: what a hostile tester found -------------------------------

/// 20 writers change users at once (400 requests): no 5xx ("database is
/// locked" on SQLite before writes took the lock up front), and every
/// attempt is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_no_5xx_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let u = admin
                .create_user(&format!("writer-{i}"), "a-long-enough-password", "viewer")
                .await;
            ids.push(u["id"].as_str().unwrap().to_string());
        }
        let writers = ids.iter().enumerate().map(|(w, id)| {
            let admin = admin.clone();
            let target = ids[(w + 1) % ids.len()].clone();
            let own = id.clone();
            async move {
                let mut statuses = Vec::new();
                for n in 0..20 {
                    // Alternate between two users so writers collide.
                    let id = if n % 2 == 0 { &own } else { &target };
                    let role = if n % 4 < 2 { "user" } else { "viewer" };
                    let r = admin
                        .patch(&format!("/api/v1/users/{id}"), json!({"role": role}))
                        .await;
                    statuses.push(r.status().as_u16());
                }
                statuses
            }
        });
        let all: Vec<u16> = futures::future::join_all(writers)
            .await
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(all.len(), 400);
        let failed: Vec<&u16> = all.iter().filter(|s| **s >= 500).collect();
        assert!(
            failed.is_empty(),
            "{backend:?}: {} × 5xx: {failed:?}",
            failed.len()
        );
        assert!(all.iter().all(|s| *s == 200), "{backend:?}: {all:?}");
        let audit = admin
            .get_json("/api/v1/audit?action=user.update&per_page=1")
            .await;
        assert_eq!(audit["total"], 400, "{backend:?}: every attempt audited");
        host.stop().await.unwrap();
    }
}

/// A client that does not follow redirects, with a signed-in session.
async fn cookie_client(host: &TestHost) -> reqwest::Client {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(host.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    http
}

/// `next` after login only ever leads to a path on this site: a tab,
/// newline or backslash trick goes to `/`, and nothing is a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_only_redirects_to_local_paths() {
    let host = TestHost::start(Backend::Sqlite).await;
    let http = cookie_client(&host).await;
    let evil = [
        "%2F%09%2Fevil.example",
        "%2F%0A%2Fevil.example",
        "%2F%0D%0A%2Fevil.example",
        "%2F%5Cevil.example",
        "%5C%5Cevil.example",
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%09%2F%2Fevil.example",
    ];
    for next in evil {
        let r = http
            .get(host.url(&format!("/login?next={next}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "GET next={next}");
        assert_eq!(r.headers()["location"], "/", "GET next={next}");
    }
    let r = http
        .get(host.url("/login?next=%2Fcontainers%3Fq%3Da"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/containers?q=a");
    // The form, with the login form's CSRF cookie and field.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for next in evil {
        let r = plain
            .post(host.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", "wakedock_csrf=form-token")
            .body(format!(
                "username=admin&password={ADMIN_PASSWORD}&csrf=form-token&next={next}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "POST next={next}");
        assert_eq!(r.headers()["location"], "/", "POST next={next}");
    }
    host.stop().await.unwrap();
}

/// Sends raw bytes and returns what the server answered (until it closes or
/// `limit` passes).
async fn raw_exchange(host: &TestHost, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = host.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An upload without a session, or from a non-admin, is answered before a
/// byte of its (declared 60 MiB) body is sent; UI routes are rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_before_their_body_and_pages_are_rate_limited() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.rate_limit.api_per_ip_per_second = 1;
        c.security.rate_limit.api_burst = 40;
    })
    .await;
    let head = |cookie: &str| {
        format!(
            "POST /plugins/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
             Content-Length: 62914560\r\n{cookie}\r\n--b\r\n"
        )
    };
    let answer = raw_exchange(&host, head("").as_bytes(), Duration::from_secs(20)).await;
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "no answer before the body: {answer:?}"
    );
    let viewer = host.user_with_role("viewer").await;
    let cookie = format!("Cookie: wakedock_access={}\r\n", viewer.token);
    let answer = raw_exchange(&host, head(&cookie).as_bytes(), Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    // An admin's upload whose first field is not the CSRF token stops there.
    let admin = host.admin().await;
    let cookie = format!(
        "Cookie: wakedock_access={}; wakedock_csrf=tok\r\n",
        admin.token
    );
    let mut req = head(&cookie).into_bytes();
    req.extend_from_slice(b"Content-Disposition: form-data; name=\"wasm\"\r\n\r\nxxxx");
    let answer = raw_exchange(&host, &req, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");

    // Pages spend the same per-address budget as the API.
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..60 {
        let r = http.get(host.url("/login")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a page request was rate limited");
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    host.stop().await.unwrap();
}

/// Partial headers are cut off after the header timeout, a body that
/// stalls after the body timeout, an oversized declared body gets 413 at
/// once, and connections beyond the limit wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_requests_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.wakedock.header_read_timeout = wakedock::config::HumanDuration(Duration::from_secs(1));
        c.wakedock.body_read_timeout = wakedock::config::HumanDuration(Duration::from_secs(1));
        c.wakedock.max_connections = 3;
    })
    .await;
    let addr = host.base.trim_start_matches("http://").to_string();
    // Partial headers: the server closes the connection.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("closed by the header timeout, not held")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text:?}");

    // A declared length over the limit: 413 without waiting for it.
    let answer = raw_exchange(
        &host,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{\"a\":1}",
        Duration::from_secs(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // A body that stops coming: an answer after the body timeout.
    let answer = raw_exchange(
        &host,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        Duration::from_secs(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");

    // Three connections that send nothing fill the slots; a fourth request
    // is served once the header timeout has closed them.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let r = tokio::time::timeout(Duration::from_secs(20), reqwest::get(host.url("/health")))
        .await
        .expect("served after the idle connections were closed")
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(idle);
    host.stop().await.unwrap();
}

/// The last page number there is gives an empty page, never a 500 or page 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pages_past_the_end_are_empty_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        for q in [
            "page=9223372036854775807",
            "page=9223372036854775807&per_page=500",
            "page=9223372036854775807&per_page=1",
            "page=184467440737095517",
        ] {
            let r = admin.get(&format!("/api/v1/audit?{q}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{backend:?} {q}");
            let page: Value = r.json().await.unwrap();
            assert_eq!(page["items"], json!([]), "{backend:?} {q}");
        }
        let r = admin.get("/api/v1/audit?page=9223372036854775808").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = admin.get("/api/v1/audit?page=0").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        host.stop().await.unwrap();
    }
}

/// A reset by an admin and "sign out everywhere" end earlier access
/// tokens at once, not at their expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_and_sign_out_everywhere_end_access_tokens_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        let erin = admin.create_user("erin", "erin-password-1", "user").await;
        let id = erin["id"].as_str().unwrap();
        let laptop = host.login("erin", "erin-password-1").await;
        let phone = host.login("erin", "erin-password-1").await;
        assert_eq!(laptop.get("/api/v1/auth/me").await.status(), StatusCode::OK);

        // An admin resets the password: both sessions end now.
        let r = admin
            .patch(
                &format!("/api/v1/users/{id}"),
                json!({"password": "erin-password-2"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}");
        for client in [&laptop, &phone] {
            let r = client.get("/api/v1/auth/me").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}");
        }

        // Sign out everywhere from one session: the others end too, and
        // their refresh tokens are revoked.
        let a = host.login("erin", "erin-password-2").await;
        let b = host.login("erin", "erin-password-2").await;
        let r = a.post_empty("/api/v1/auth/logout-all").await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{backend:?}");
        for client in [&a, &b] {
            let r = client.get("/api/v1/auth/me").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}");
            let r = reqwest::Client::new()
                .post(host.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": client.refresh_token}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}");
        }
        // Signing in again works, and the admin was never affected.
        let c = host.login("erin", "erin-password-2").await;
        assert_eq!(c.get("/api/v1/auth/me").await.status(), StatusCode::OK);
        assert_eq!(admin.get("/api/v1/auth/me").await.status(), StatusCode::OK);
        let audit = admin.get_json("/api/v1/audit?action=auth.logout_all").await;
        assert_eq!(audit["total"], 1);
        host.stop().await.unwrap();
    }
}

/// Wrong passwords for `admin` from elsewhere do not lock the admin out;
/// the address that sends them is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_lock_the_admin_out() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.rate_limit.login_per_user_per_minute = 5;
        c.security.rate_limit.login_per_ip_per_minute = 1000;
    })
    .await;
    let http = reqwest::Client::new();
    // The test client is on loopback, a trusted proxy: X-Forwarded-For
    // says which address a request comes from.
    let login = |from: &'static str, password: &'static str| {
        http.post(host.url("/api/v1/auth/login"))
            .header("x-forwarded-for", from)
            .json(&json!({"username": "admin", "password": password}))
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            login("203.0.113.66", "wrong-password")
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(
        statuses.contains(&429),
        "the stranger is stopped: {statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 401).count() <= 5,
        "{statuses:?}"
    );
    let r = login("198.51.100.7", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the admin is not locked out");
    host.stop().await.unwrap();
}

/// `/metrics` with `security.metrics_token`: only with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.metrics_token = Some("metrics-token-for-tests".into());
    })
    .await;
    let http = reqwest::Client::new();
    let r = http.get(host.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_code(r).await, "unauthorized");
    let r = http
        .get(host.url("/metrics"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(host.url("/metrics"))
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("wakedock_http_requests_total"));
    host.stop().await.unwrap();
}
