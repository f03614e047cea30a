//! Plugins through the real host: installed at runtime by API, CLI and
//! config file; doing real work through granted capabilities against the
//! real Docker engine and database; stopped cold by their limits.
//!
//! The components are built by `scripts/build-plugins.sh` (the test setup
//! runs it).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::*;

/// (manifest text, component bytes) of a built plugin or fixture.
fn package(manifest: &str, wasm_name: &str) -> (String, Vec<u8>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wasm_dir().join(wasm_name);
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first with scripts/build-plugins.sh",
            wasm.display()
        )
    });
    (std::fs::read_to_string(root.join(manifest)).unwrap(), bytes)
}

fn example() -> (String, Vec<u8>) {
    package(
        "plugins/example/plugin.toml",
        "wakedock_plugin_example.wasm",
    )
}

fn hostile() -> (String, Vec<u8>) {
    package(
        "tests/plugins/hostile/plugin.toml",
        "wakedock_fixture_hostile.wasm",
    )
}

fn install_body((manifest, wasm): &(String, Vec<u8>), grant: Option<Value>) -> Value {
    let mut body = json!({
        "manifest": manifest,
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
    });
    if let Some(g) = grant {
        body["grant"] = g;
    }
    body
}

async fn hello(client: &ApiClient) -> Value {
    client.get_json("/api/v1/plugins/example/hello").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_use_and_manage_a_plugin_by_api_on_both_backends() {
    for backend in BACKENDS {
        let host = TestHost::start(backend).await;
        let admin = host.admin().await;
        let pkg = example();

        // The grant screen: what the package is and asks for.
        let r = admin
            .post("/api/v1/plugins?dry_run=true", install_body(&pkg, None))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}");
        let preview: Value = r.json().await.unwrap();
        assert_eq!(preview["name"], "example");
        assert_eq!(preview["requested"]["containers"]["access"], "read");
        assert_eq!(
            preview["requested"]["containers"]["selector"],
            "wakedock.enable=true"
        );
        assert!(admin.get("/api/v1/plugins/example").await.status() == StatusCode::NOT_FOUND);

        // No grant, or a grant wider than the request: refused, nothing installed.
        let r = admin
            .post("/api/v1/plugins", install_body(&pkg, None))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem_code(r).await, "grant_required");
        let wide = json!({"capabilities": {"http-outbound": {"hosts": ["example.com"], "max-requests-per-minute": 5}}});
        let r = admin
            .post("/api/v1/plugins", install_body(&pkg, Some(wide)))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("does not request"),
            "{body}"
        );
        assert!(admin
            .get_json("/api/v1/plugins")
            .await
            .as_array()
            .unwrap()
            .is_empty());

        // Install with everything it asks for.
        let r = admin
            .post("/api/v1/plugins", install_body(&pkg, Some(json!("all"))))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["enabled"], true);
        assert_eq!(info["source"], "api");
        assert_eq!(info["status"]["health"]["state"], "enabled");
        assert_eq!(info["granted"]["storage"]["quota-bytes"], 65536);

        // Its route works for any signed-in user, and storage persists.
        assert_eq!(hello(&admin).await["hits"], 1);
        let viewer = host.user_with_role("viewer").await;
        let h = hello(&viewer).await;
        assert_eq!(h["hits"], 2);
        assert_eq!(h["message"], "hello from WakeDock");
        let anon = reqwest::get(host.url("/api/v1/plugins/example/hello"))
            .await
            .unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

        // Reconfigure at runtime: init sees the new config.
        let r = admin
            .patch(
                "/api/v1/plugins/example",
                json!({"config": {"greeting": "hi there"}}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = hello(&admin).await;
        assert_eq!(h["message"], "hi there");
        assert_eq!(h["hits"], 3);

        // Disable and enable at runtime.
        let r = admin
            .patch("/api/v1/plugins/example", json!({"enabled": false}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = admin.get("/api/v1/plugins/example/hello").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem_code(r).await, "plugin_unavailable");
        admin
            .patch("/api/v1/plugins/example", json!({"enabled": true}))
            .await;
        assert_eq!(hello(&admin).await["hits"], 4);

        // A restart keeps plugin, grant, config and state.
        let host = host.restart().await;
        let admin = host.admin().await;
        let h = hello(&admin).await;
        assert_eq!(
            (h["hits"].as_u64(), h["message"].as_str()),
            (Some(5), Some("hi there"))
        );

        // Its own metrics are exported under its name; its status counts calls.
        let metrics = reqwest::get(host.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("wakedock_plugin_example_hello_requests_total"),
            "plugin metric missing"
        );
        let info = admin.get_json("/api/v1/plugins/example").await;
        assert!(info["status"]["calls"].as_u64().unwrap() >= 1);
        assert!(info["status"]["memory_high_water_bytes"].as_u64().unwrap() > 0);

        // Uninstall: route gone, storage gone (a reinstall starts from zero).
        assert_eq!(
            admin.delete("/api/v1/plugins/example").await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            admin.get("/api/v1/plugins/example/hello").await.status(),
            StatusCode::NOT_FOUND
        );
        admin
            .post("/api/v1/plugins", install_body(&pkg, Some(json!("all"))))
            .await;
        assert_eq!(hello(&admin).await["hits"], 1);

        let audit = admin
            .get_json("/api/v1/audit?action=plugin.&per_page=100")
            .await;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for a in ["plugin.install", "plugin.update", "plugin.remove"] {
            assert!(actions.contains(&a), "{a} not audited: {actions:?}");
        }
        host.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_only_the_containers_its_grant_selects() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    admin
        .post(
            "/api/v1/plugins",
            install_body(&example(), Some(json!("all"))),
        )
        .await;
    let visible = TestContainer::run_labelled(&[], &[("wakedock.enable", "true")]).await;
    let hidden = TestContainer::run(&[]).await;
    let list = admin.get_json("/api/v1/plugins/example/containers").await;
    let names: Vec<&str> = list["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&visible.name.as_str()), "{names:?}");
    assert!(!names.contains(&hidden.name.as_str()), "{names:?}");
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_stopped_and_the_host_keeps_serving() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.plugin_runtime.failure_threshold = 3;
        c.plugin_runtime.failure_backoff = wakedock::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let admin = host.admin().await;
    // Created before the plugins load: its create/start events, delivered
    // to them asynchronously, would otherwise land between the failing
    // calls below and (being successful calls) reset the failure count.
    let victim = TestContainer::run_labelled(&[], &[("wakedock.enable", "true")]).await;
    let r = admin
        .post(
            "/api/v1/plugins",
            install_body(&example(), Some(json!("all"))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Hostile asks for write access and outbound HTTP; it gets neither.
    let grant = json!({"capabilities": {
        "containers": {"access": "read", "selector": "wakedock.enable=true"},
        "storage": {"quota-bytes": 16384},
        "events": {"publish": ["hostile.*"]}
    }});
    let r = admin
        .post("/api/v1/plugins", install_body(&hostile(), Some(grant)))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let ok = || async { admin.get("/api/v1/plugins/hostile/ok").await.status() == StatusCode::OK };
    assert!(ok().await);

    // An infinite loop is killed at its CPU deadline.
    let r = admin.get("/api/v1/plugins/hostile/loop").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "plugin_error");
    assert!(p["detail"].as_str().unwrap().contains("CPU"), "{p}");
    // A memory bomb hits its cap; a trap is contained.
    for path in ["oom", "trap"] {
        let r = admin.get(&format!("/api/v1/plugins/hostile/{path}")).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "/{path}");
    }
    // Three failures in a row: the plugin is failed, with a reason and a
    // retry time, and refuses calls until then.
    let info = admin.get_json("/api/v1/plugins/hostile").await;
    assert_eq!(info["status"]["health"]["state"], "failed", "{info}");
    assert!(info["status"]["health"]["reason"].is_string());
    assert!(info["status"]["last_error"].is_string());
    assert!(info["status"]["errors"].as_u64().unwrap() >= 3);
    let r = admin.get("/api/v1/plugins/hostile/ok").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(r).await, "plugin_unavailable");
    // Meanwhile the host and the other plugin serve as before.
    assert_eq!(
        reqwest::get(host.url("/health")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(hello(&admin).await["hits"], 1);
    // After the back-off it is retried by itself.
    eventually(Duration::from_secs(10), "failed plugin retried", || async {
        ok().await.then_some(())
    })
    .await;
    // A panic and runaway recursion are contained too.
    for path in ["panic", "recurse"] {
        let r = admin.get(&format!("/api/v1/plugins/hostile/{path}")).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "/{path}");
    }
    assert!(ok().await);

    // Write access was not granted: stopping a container is refused, the
    // container keeps running, and the refusal is audited.
    let r = admin
        .get(&format!("/api/v1/plugins/hostile/stop?id={}", victim.name))
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("permission"), "{body}");
    let d = admin
        .get_json(&format!("/api/v1/containers/{}", victim.name))
        .await;
    assert_eq!(d["state"], "running");
    // Outbound HTTP was requested but not granted.
    let r = admin
        .get("/api/v1/plugins/hostile/outbound?url=http://127.0.0.1:9/")
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("permission"), "{body}");
    // Storage past the quota fails cleanly.
    let r = admin.get("/api/v1/plugins/hostile/flood").await;
    assert_eq!(r.status().as_u16(), 507);
    let audit = eventually(
        Duration::from_secs(5),
        "plugin refusals audited",
        || async {
            let a = admin
                .get_json("/api/v1/audit?actor=plugin:hostile&per_page=50")
                .await;
            (a["total"].as_i64().unwrap() >= 2).then_some(a)
        },
    )
    .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["result"] == "denied")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"plugin.containers.stop"), "{actions:?}");
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("plugin.http-outbound")),
        "{actions:?}"
    );
    host.stop().await.unwrap();
}

// A plugin granted less than it uses on every tick: one audit row per
// distinct refusal per interval (plugin_runtime.denial_interval, 10 min by
// default), and the refusal is the plugin's last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_every_tick_is_audited_once_and_shown_as_last_error() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    // The hostile fixture's tick reads and writes storage; tick it every
    // 100 ms and grant it no storage.
    let (manifest, wasm) = hostile();
    let manifest = manifest.replace("description =", "tick-interval = \"100ms\"\ndescription =");
    let grant = json!({"capabilities": {
        "containers": {"access": "read", "selector": "wakedock.enable=true"}
    }});
    let r = admin
        .post(
            "/api/v1/plugins",
            install_body(&(manifest, wasm), Some(grant)),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // Twenty ticks: forty refusals.
    let status = eventually(Duration::from_secs(30), "20 ticks", || async {
        let info = admin.get_json("/api/v1/plugins/hostile").await;
        (info["status"]["calls"].as_u64().unwrap_or(0) >= 20).then_some(info["status"].clone())
    })
    .await;
    let last = status["last_error"].as_str().unwrap_or_default();
    assert!(
        last.contains("permission denied: storage.") && last.contains("not granted"),
        "{status}"
    );
    assert_eq!(status["health"]["state"], "enabled", "{status}");
    let rows = |a: Value| -> Vec<String> {
        a["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["result"].as_str().unwrap()
                )
            })
            .collect()
    };
    let audit = eventually(Duration::from_secs(5), "the refusals audited", || async {
        let a = admin
            .get_json("/api/v1/audit?actor=plugin:hostile&per_page=100")
            .await;
        (a["total"].as_i64().unwrap() >= 2).then_some(a)
    })
    .await;
    let mut got = rows(audit);
    got.sort();
    assert_eq!(
        got,
        vec!["plugin.storage.get denied", "plugin.storage.set denied"]
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_and_malformed_packages_are_refused() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let wrong = package(
        "tests/plugins/wrong-version/plugin.toml",
        "wakedock_fixture_wrong_version.wasm",
    );
    let r = admin
        .post("/api/v1/plugins", install_body(&wrong, Some(json!("all"))))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "plugin_rejected");
    assert!(p["detail"].as_str().unwrap().contains("API"), "{p}");

    let (manifest, _) = example();
    let garbage = (manifest.clone(), b"\0asm not really".to_vec());
    let r = admin
        .post(
            "/api/v1/plugins",
            install_body(&garbage, Some(json!("all"))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not a valid WebAssembly component"));

    let bad_manifest = (
        manifest.replace("name = \"example\"", "name = \"Bad Name\""),
        example().1,
    );
    let r = admin
        .post(
            "/api/v1/plugins",
            install_body(&bad_manifest, Some(json!("all"))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("name"));
    assert!(admin
        .get_json("/api/v1/plugins")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_component_file_is_refused_at_restart() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let info: Value = admin
        .post(
            "/api/v1/plugins",
            install_body(&example(), Some(json!("all"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let sha = info["sha256"].as_str().unwrap();
    let file = host.data_path().join(format!("plugins/example/{sha}.wasm"));
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert!(
        info["load_error"].as_str().unwrap().contains("SHA-256"),
        "{info}"
    );
    assert!(info["status"].is_null());
    assert_eq!(
        admin.get("/api/v1/plugins/example/hello").await.status(),
        StatusCode::NOT_FOUND
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_installs_into_a_running_host() {
    use wakedock::cli::{Cli, Command, PluginCommand};
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let config = host.write_config_file();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cli = |command| Cli {
        config: Some(config.clone()),
        command: Some(Command::Plugin(command)),
    };
    // Without a grant nothing is installed.
    let r = wakedock::cli::main(cli(PluginCommand::Install {
        manifest: root.join("plugins/example/plugin.toml"),
        wasm: wasm_dir().join("wakedock_plugin_example.wasm"),
        grant: None,
        config: None,
        disabled: false,
    }))
    .await;
    assert!(r.unwrap_err().to_string().contains("--grant"));
    wakedock::cli::main(cli(PluginCommand::Install {
        manifest: root.join("plugins/example/plugin.toml"),
        wasm: wasm_dir().join("wakedock_plugin_example.wasm"),
        grant: Some("all".into()),
        config: Some(r#"{"greeting": "from the cli"}"#.into()),
        disabled: false,
    }))
    .await
    .unwrap();
    let h = eventually(
        Duration::from_secs(10),
        "CLI-installed plugin serving",
        || async {
            let r = admin.get("/api/v1/plugins/example/hello").await;
            if r.status() == StatusCode::OK {
                r.json::<Value>().await.ok()
            } else {
                None
            }
        },
    )
    .await;
    assert_eq!(h["message"], "from the cli");
    assert_eq!(
        admin.get_json("/api/v1/plugins/example").await["source"],
        "cli"
    );

    wakedock::cli::main(cli(PluginCommand::Disable {
        name: "example".into(),
    }))
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "CLI disable applied", || async {
        (admin.get("/api/v1/plugins/example/hello").await.status()
            == StatusCode::SERVICE_UNAVAILABLE)
            .then_some(())
    })
    .await;
    wakedock::cli::main(cli(PluginCommand::Remove {
        name: "example".into(),
    }))
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "CLI removal applied", || async {
        (admin.get("/api/v1/plugins/example/hello").await.status() == StatusCode::NOT_FOUND)
            .then_some(())
    })
    .await;
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_declared_in_the_config_file_are_installed_at_start() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.plugins = vec![wakedock::config::PluginDecl {
            manifest: root.join("plugins/example/plugin.toml"),
            wasm: wasm_dir().join("wakedock_plugin_example.wasm"),
            grant: wakedock::plugins::GrantSpec::All(wakedock::plugins::AllMarker),
            config: Some(json!({"greeting": "declared"})),
            enabled: true,
        }];
    })
    .await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["source"], "config");
    assert_eq!(hello(&admin).await["message"], "declared");

    // Restarting with the same declaration changes nothing (state kept).
    let host = host.restart().await;
    let admin = host.admin().await;
    assert_eq!(hello(&admin).await["hits"], 2);
    // Taken out of the config file: uninstalled at the next start.
    let mut host = host;
    host.config.plugins.clear();
    let host = host.restart().await;
    let admin = host.admin().await;
    assert_eq!(
        admin.get("/api/v1/plugins/example").await.status(),
        StatusCode::NOT_FOUND
    );
    host.stop().await.unwrap();
}

/// Upgrading WakeDock upgrades the plugins its config file declares (how
/// the first-party plugins are bundled): a copy of the same plugin
/// installed through the API is replaced when it is older, audited, its
/// storage kept; a newer one is kept (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_plugin_replaces_an_older_api_installed_copy_not_a_newer_one() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let declared = || wakedock::config::PluginDecl {
        manifest: root.join("plugins/example/plugin.toml"),
        wasm: wasm_dir().join("wakedock_plugin_example.wasm"),
        grant: wakedock::plugins::GrantSpec::All(wakedock::plugins::AllMarker),
        config: None,
        enabled: true,
    };
    // The example plugin installed through the API as version `v`.
    async fn install_as(admin: &ApiClient, v: &str) {
        let (manifest, wasm) = example();
        let at_v = manifest.replacen("version = \"0.1.0\"", &format!("version = \"{v}\""), 1);
        assert_ne!(at_v, manifest, "the example's version line moved");
        let r = admin
            .post(
                "/api/v1/plugins",
                install_body(&(at_v, wasm), Some(json!("all"))),
            )
            .await;
        let status = r.status();
        assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
    }
    async fn upgrades(admin: &ApiClient) -> Value {
        admin.get_json("/api/v1/audit?action=plugin.upgrade").await
    }
    let mut host = TestHost::start(Backend::Sqlite).await;
    install_as(&host.admin().await, "9.0.0").await;
    assert_eq!(hello(&host.admin().await).await["hits"], 1);

    // Newer than the declared 0.1.0: kept, and it keeps its storage.
    host.config.plugins = vec![declared()];
    let mut host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["source"], "api", "{info}");
    assert_eq!(info["version"], "9.0.0", "{info}");
    assert_eq!(upgrades(&admin).await["total"], 0);
    assert_eq!(hello(&admin).await["hits"], 2);

    // Older (0.0.1) than the declared one: replaced at the next start.
    install_as(&admin, "0.0.1").await;
    host.config.plugins = vec![declared()];
    let host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["source"], "config", "{info}");
    assert_eq!(info["version"], "0.1.0", "{info}");
    let audit = upgrades(&admin).await;
    assert_eq!(audit["total"], 1, "{audit}");
    let entry = &audit["items"][0];
    assert_eq!(entry["actor"], "config", "{entry}");
    assert_eq!(entry["target"], "example", "{entry}");
    assert_eq!(entry["result"], "success", "{entry}");
    assert!(
        entry["detail"].as_str().unwrap().starts_with(
            "example 0.0.1 (plugin API 0.1.4), installed through the api, \
             replaced by example 0.1.0 (plugin API 0.1.4) declared in the config file"
        ),
        "{entry}"
    );
    // Its storage survived the restarts and the replacement.
    assert_eq!(hello(&admin).await["hits"], 3);
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_ready_runs_the_healthcheck_instead_of_waiting_for_docker() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let grant = json!({"capabilities": {
        "containers": {"access": "read", "selector": "wakedock.enable=true"}
    }});
    let r = admin
        .post("/api/v1/plugins", install_body(&hostile(), Some(grant)))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Docker would first run this healthcheck a minute after start; the
    // app is healthy 300 ms after it listens.
    let c = TestContainer::run_with_healthcheck(
        &[("HEALTHY_AFTER_MS", "300")],
        &[("wakedock.enable", "true")],
        Duration::from_secs(60),
    )
    .await;
    let r = admin
        .get(&format!("/api/v1/plugins/hostile/await?id={}", c.name))
        .await;
    let body = r.text().await.unwrap();
    assert_eq!(body, "ok: Readiness::Healthy");
    // Docker itself has not run the check yet: the wake did not wait for it.
    let d = admin
        .get_json(&format!("/api/v1/containers/{}", c.name))
        .await;
    assert_eq!(d["health"], "starting", "{d}");
    assert!(d["healthcheck_test"].is_array());

    // Without a healthcheck, a published port that answers is ready.
    let plain =
        TestContainer::run_labelled(&[("BOOT_DELAY_MS", "200")], &[("wakedock.enable", "true")])
            .await;
    let r = admin
        .get(&format!("/api/v1/plugins/hostile/await?id={}", plain.name))
        .await;
    assert_eq!(r.text().await.unwrap(), "ok: Readiness::PortOpen");
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_from_the_engine_reach_plugins() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let r = admin
        .post(
            "/api/v1/plugins",
            install_body(&example(), Some(json!("all"))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The example plugin counts the container events it receives (only
    // those of containers its selector matches).
    let c = TestContainer::run_labelled(&[], &[("wakedock.enable", "true")]).await;
    let stop = admin
        .post_empty(&format!("/api/v1/containers/{}/stop?timeout=1", c.name))
        .await;
    assert_eq!(stop.status(), StatusCode::OK);
    let url = host.url("/metrics");
    for kind in ["started", "stopped"] {
        let series = format!(r#"wakedock_plugin_example_container_events_total{{kind="{kind}"}}"#);
        eventually(
            Duration::from_secs(10),
            "container event counted",
            || async {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                text.lines()
                    .find(|l| l.starts_with(&series))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .filter(|v| *v >= 1.0)
            },
        )
        .await;
    }
    host.stop().await.unwrap();
}

/// A dry run shows nothing for a package that could not be installed
/// (random bytes as the component), and a grant wider than the request is
/// refused with what to change (issue 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_components_and_wider_grants_are_refused() {
    let host = TestHost::start(Backend::Sqlite).await;
    let admin = host.admin().await;
    let (manifest, _) = example();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for dry_run in ["?dry_run=true", ""] {
        let r = admin
            .post(
                &format!("/api/v1/plugins{dry_run}"),
                install_body(&(manifest.clone(), garbage.clone()), Some(json!("all"))),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{dry_run}");
        assert_eq!(problem_code(r).await, "plugin_rejected");
    }
    // The example asks `read` on `wakedock.enable=true`: `write` on every
    // container is wider, so is dropping the selector.
    for (grant, says) in [
        (
            json!({"capabilities": {"containers": {"access": "read"}}}),
            "selects more containers",
        ),
        (
            json!({"capabilities": {"containers": {"access": "write", "selector": "wakedock.enable=true"}}}),
            "access `write`",
        ),
        (
            json!({"capabilities": {"storage": {"quota-bytes": 1_000_000}}}),
            "quota-bytes",
        ),
    ] {
        let r = admin
            .post(
                "/api/v1/plugins",
                install_body(&example(), Some(grant.clone())),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{grant}");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    }
    assert!(admin
        .get_json("/api/v1/plugins")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    // A narrower one is what is stored and shown.
    let narrow = json!({"capabilities": {
        "containers": {"access": "read", "selector": "wakedock.enable=true,team=a"},
        "storage": {"quota-bytes": 1024}, "events": {"publish": ["example.*"]}, "metrics": {}
    }});
    let r = admin
        .post("/api/v1/plugins", install_body(&example(), Some(narrow)))
        .await;
    let status = r.status();
    assert_eq!(status, StatusCode::CREATED, "{}", r.text().await.unwrap());
    let info: Value = r.json().await.unwrap();
    assert_eq!(
        info["granted"]["containers"]["selector"],
        "wakedock.enable=true,team=a"
    );
    host.stop().await.unwrap();
}

/// A grant changed in the config file takes effect at the next start,
/// narrowed and widened again, each audited (issue 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_changed_in_the_config_file_applies_at_restart() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let decl = |grant: Value| wakedock::config::PluginDecl {
        manifest: root.join("plugins/example/plugin.toml"),
        wasm: wasm_dir().join("wakedock_plugin_example.wasm"),
        grant: serde_json::from_value(grant).unwrap(),
        config: None,
        enabled: true,
    };
    let mut host = TestHost::start_with(Backend::Sqlite, |c| {
        c.plugins = vec![decl(json!("all"))];
    })
    .await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["granted"]["storage"]["quota-bytes"], 65536);

    let narrow = json!({"capabilities": {
        "containers": {"access": "read", "selector": "wakedock.enable=true,team=a"},
        "storage": {"quota-bytes": 1024},
        "events": {"publish": ["example.*"]},
        "metrics": {}
    }});
    host.config.plugins = vec![decl(narrow)];
    let mut host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["granted"]["storage"]["quota-bytes"], 1024, "{info}");
    assert_eq!(
        info["granted"]["containers"]["selector"],
        "wakedock.enable=true,team=a"
    );
    assert_eq!(info["status"]["health"]["state"], "enabled");

    host.config.plugins = vec![decl(json!("all"))];
    let mut host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert_eq!(info["granted"]["storage"]["quota-bytes"], 65536, "{info}");
    let audit = admin.get_json("/api/v1/audit?action=plugin.grant").await;
    assert_eq!(audit["total"], 2, "{audit}");
    assert_eq!(audit["items"][0]["actor"], "config");

    // Narrowed below what it needs to start (no metrics): it does not go
    // on running with the wider grant; it is stopped and says why.
    host.config.plugins = vec![decl(
        json!({"capabilities": {"storage": {"quota-bytes": 1024}}}),
    )];
    let host = host.restart().await;
    let admin = host.admin().await;
    let info = admin.get_json("/api/v1/plugins/example").await;
    assert!(info["status"].is_null(), "{info}");
    assert!(
        info["load_error"].as_str().unwrap().contains("grant"),
        "{info}"
    );
    assert_eq!(
        admin.get("/api/v1/plugins/example/hello").await.status(),
        StatusCode::NOT_FOUND
    );
    let audit = admin.get_json("/api/v1/audit?action=plugin.grant").await;
    assert_eq!(audit["items"][0]["result"], "failure", "{audit}");
    host.stop().await.unwrap();
}
