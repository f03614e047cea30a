//! Compose stacks end to end (issue 11): the real host with the stacks
//! plugin, the real Docker Compose v2 CLI (scripts/install-compose.sh) on
//! the real engine, a real local registry for updates.
//!
//! Every project a test makes has a unique name, labels its containers and
//! networks `wakedock.test=true` and is taken down (volumes too) when the
//! test ends, passed or not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::*;

const API: &str = "/api/v1/plugins/stacks";

/// A host with the stacks plugin; its stacks directory is
/// `<data>/stacks`.
async fn stacks_host() -> TestHost {
    TestHost::start_with(Backend::Sqlite, |c| {
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/stacks/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_stacks.wasm"),
            }))
            .unwrap(),
        );
    })
    .await
}

fn stacks_dir(host: &TestHost) -> PathBuf {
    host.data_path().join("stacks")
}

/// The test labels every service and the default network carry.
fn test_labels(instance: &str) -> String {
    format!("      wakedock.test: \"true\"\n      {INSTANCE_LABEL}: \"{instance}\"\n")
}

const NETWORKS: &str = "networks:\n  default:\n    labels:\n      wakedock.test: \"true\"\n";

/// App, database (with a healthcheck) and a one-shot migration: the
/// migration runs once the database is healthy, the app once the
/// migration finished successfully.
fn three_services(instance: &str) -> String {
    let l = test_labels(instance);
    format!(
        r#"services:
  db:
    image: {TEST_IMAGE}
    environment:
      APP_NAME: db
    healthcheck:
      test: ["CMD", "/testapp", "healthcheck"]
      interval: 1s
      retries: 30
    labels:
{l}  migrate:
    image: {TEST_IMAGE}
    environment:
      APP_NAME: migrate
      EXIT_AFTER_MS: "300"
    depends_on:
      db:
        condition: service_healthy
    labels:
{l}  app:
    image: {TEST_IMAGE}
    environment:
      APP_NAME: ${{APP_TITLE}}
    ports:
      - "127.0.0.1::8080"
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    labels:
{l}{NETWORKS}"#
    )
}

async fn docker_inspect(name: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
}

fn time_of(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

/// Containers of `project` on the engine (names).
fn containers_of(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Runs `verb` on the stack and waits for it to end; its status.
async fn act(admin: &ApiClient, name: &str, verb: &str) -> Value {
    let r = admin
        .post_empty(&format!("{API}/stacks/{name}/{verb}?wait=110000"))
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{verb}: {body}");
    assert_eq!(body["state"], "succeeded", "{verb}: {body}");
    body
}

async fn stack(admin: &ApiClient, name: &str) -> Value {
    admin.get_json(&format!("{API}/stacks/{name}")).await
}

fn service<'a>(stack: &'a Value, name: &str) -> &'a Value {
    stack["stack"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {stack}"))
}

#[tokio::test]
async fn a_three_service_stack_deploys_in_order_and_stops_starts_goes_down_and_is_deleted() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-stack");
    let name = p.0.clone();
    let compose = three_services(host.instance());
    let r = admin
        .post(
            &format!("{API}/stacks"),
            json!({"name": name, "compose": compose, "env": "APP_TITLE=shop\n"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // Files on disk are the truth: the folder holds exactly what was sent.
    let dir = stacks_dir(&host).join(&name);
    assert_eq!(
        std::fs::read_to_string(dir.join("compose.yaml")).unwrap(),
        compose
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".env")).unwrap(),
        "APP_TITLE=shop\n"
    );
    assert!(
        containers_of(&name).is_empty(),
        "creating touched the engine"
    );
    let s = stack(&admin, &name).await;
    assert_eq!(s["stack"]["state"], "not-deployed");
    assert_eq!(s["declared_services"], json!(["db", "migrate", "app"]));

    let done = act(&admin, &name, "deploy").await;
    assert_eq!(done["kind"], "up");
    assert!(
        done["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("Started")),
        "{done}"
    );
    // Compose's order: db healthy, then migrate ran to completion, then app.
    let db = docker_inspect(&format!("{name}-db-1")).await;
    let migrate = docker_inspect(&format!("{name}-migrate-1")).await;
    let app = docker_inspect(&format!("{name}-app-1")).await;
    assert!(time_of(&db["State"]["StartedAt"]) < time_of(&migrate["State"]["StartedAt"]));
    assert_eq!(migrate["State"]["ExitCode"], 0);
    assert!(time_of(&migrate["State"]["FinishedAt"]) <= time_of(&app["State"]["StartedAt"]));
    assert_eq!(
        app["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| *e == "APP_NAME=shop")
            .count(),
        1,
        ".env interpolated"
    );

    let s = stack(&admin, &name).await;
    assert_eq!(s["stack"]["state"], "running", "{s}");
    assert_eq!(service(&s, "migrate")["one_shot"], true);
    assert_eq!(service(&s, "migrate")["up"], true);
    let ports = service(&s, "app")["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        ports[0].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ports:?}"
    );
    assert_eq!(
        s["stack"]["working_dir"],
        dir.canonicalize().unwrap().display().to_string()
    );
    // The list shows it with its state.
    let list = admin.get_json(&format!("{API}/stacks")).await;
    let listed = list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()
        .clone();
    assert_eq!(listed["state"], "running");

    // A service stopped by hand: partial, naming it.
    let out = Command::new("docker")
        .args(["stop", &format!("{name}-app-1")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = stack(&admin, &name).await;
    assert_eq!(s["stack"]["state"], "partial");
    assert_eq!(s["stack"]["down"], json!(["app"]));

    act(&admin, &name, "stop").await;
    assert_eq!(stack(&admin, &name).await["stack"]["state"], "stopped");
    act(&admin, &name, "start").await;
    assert_eq!(stack(&admin, &name).await["stack"]["state"], "running");
    act(&admin, &name, "restart").await;
    act(&admin, &name, "down").await;
    assert!(containers_of(&name).is_empty());
    assert_eq!(stack(&admin, &name).await["stack"]["state"], "not-deployed");

    // Every action is audited with its outcome.
    let audit = admin
        .get_json("/api/v1/audit?action=compose.&per_page=500")
        .await;
    let mut kinds: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == name)
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "compose.down success",
            "compose.restart success",
            "compose.start success",
            "compose.stop success",
            "compose.up success"
        ],
        "{audit}"
    );
    // The kept history carries each action's output.
    let runs = eventually(Duration::from_secs(10), "five runs kept", || async {
        let s = stack(&admin, &name).await;
        (s["runs"].as_array().unwrap().len() == 5).then_some(s["runs"].clone())
    })
    .await;
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| !r["lines"].as_array().unwrap().is_empty()));

    // Delete: asks nothing more on the API; keeps volumes unless told.
    let r = admin.delete(&format!("{API}/stacks/{name}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["volumes_removed"], false);
    assert!(!dir.exists());
    assert_eq!(
        admin.get(&format!("{API}/stacks/{name}")).await.status(),
        StatusCode::NOT_FOUND
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_project_started_by_hand_outside_the_stacks_directory_is_listed_and_adopted() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-handmade");
    let name = p.0.clone();
    // A folder beside the stacks directory (same filesystem: adoption moves it).
    let outside = host.data_path().join("elsewhere").join(&name);
    std::fs::create_dir_all(&outside).unwrap();
    let l = test_labels(host.instance());
    std::fs::write(
        outside.join("compose.yaml"),
        format!("services:\n  web:\n    image: {TEST_IMAGE}\n    labels:\n{l}{NETWORKS}"),
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["compose", "-p", &name, "up", "-d"])
        .current_dir(&outside)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id_before = docker_inspect(&format!("{name}-web-1")).await["Id"].clone();
    // Another install's project on the same engine (its own instance label).
    let theirs = ComposeProject::new("wd-theirs");
    let theirs_dir = host.data_path().join("elsewhere").join(&theirs.0);
    std::fs::create_dir_all(&theirs_dir).unwrap();
    std::fs::write(
        theirs_dir.join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: {TEST_IMAGE}\n    labels:\n{}{NETWORKS}",
            test_labels("another-install")
        ),
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["compose", "-p", &theirs.0, "up", "-d"])
        .current_dir(&theirs_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = admin.get_json(&format!("{API}/stacks")).await;
    let project = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
        .clone();
    assert_eq!(project["managed"], false);
    assert_eq!(project["state"], "running");
    assert_eq!(project["working_dir"], outside.display().to_string());
    assert_eq!(
        project["config_files"],
        json!([outside.join("compose.yaml").display().to_string()])
    );
    // Its page shows it too, without actions on an unmanaged project.
    let s = stack(&admin, &name).await;
    assert_eq!(s["stack"]["managed"], false);
    assert_eq!(
        admin
            .post_empty(&format!("{API}/stacks/{name}/deploy"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Not another install's.
    assert!(!list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == theirs.0.as_str()));
    assert_eq!(
        admin
            .post_empty(&format!("{API}/projects/{}/adopt", theirs.0))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert!(theirs_dir.join("compose.yaml").is_file());
    // A viewer may not adopt.
    let viewer = host.user_with_role("viewer").await;
    assert_eq!(
        viewer
            .post_empty(&format!("{API}/projects/{name}/adopt"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = admin
        .post_empty(&format!("{API}/projects/{name}/adopt"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let dir = stacks_dir(&host).join(&name);
    assert!(dir.join("compose.yaml").is_file());
    assert!(!outside.exists());
    // The running container was left alone, and it is a stack like any other.
    assert_eq!(
        docker_inspect(&format!("{name}-web-1")).await["Id"],
        id_before
    );
    let list = admin.get_json(&format!("{API}/stacks")).await;
    assert!(list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == name && x["managed"] == true));
    assert!(!list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == name));
    act(&admin, &name, "deploy").await;
    let s = stack(&admin, &name).await;
    assert_eq!(s["stack"]["state"], "running");
    assert_eq!(s["stack"]["managed"], true);
    assert_eq!(s["compose_file"], "compose.yaml");
    act(&admin, &name, "down").await;
    assert!(containers_of(&name).is_empty());
    host.stop().await.unwrap();
}

#[tokio::test]
async fn bad_files_bad_names_and_escapes_get_field_messages_and_change_nothing() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-bad");
    let name = p.0.clone();
    let l = test_labels(host.instance());
    let good = format!("services:\n  web:\n    image: {TEST_IMAGE}\n    labels:\n{l}{NETWORKS}");
    let create = |body: Value| {
        let admin = admin.clone();
        async move {
            let r = admin.post(&format!("{API}/stacks"), body).await;
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let fields = |v: &Value| -> Vec<String> {
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };
    // Bad YAML: the line.
    let (s, v) =
        create(json!({"name": name, "compose": "services:\n  web:\n   image: x\n  - y\n"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["compose"]);
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("line"),
        "{v}"
    );
    // A field the plugin checks.
    let (s, v) = create(json!({"name": name, "compose": "services:\n  web:\n    image: x\n    ports: [\"99999:80\"]\n"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["compose: services.web.ports[0]"]);
    // Something only Compose knows: its own message decides.
    let (s, v) = create(json!({"name": name, "compose": format!("services:\n  web:\n    image: x\n    depends_on: [nothing]\n")})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("Compose:"), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("nothing"), "{v}");
    // A bad .env.
    let (s, v) = create(json!({"name": name, "compose": good, "env": "OK=1\nnot a pair\n"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["env"]);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2"),
        "{v}"
    );
    // Bad names, including path escapes.
    for bad in ["../escape", "a/b", "/etc", "Upper", ".hidden", ""] {
        let (s, v) = create(json!({"name": bad, "compose": good})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(fields(&v), ["name"], "{bad}");
    }
    for bad in ["..", "a%2Fb", "Upper", "%2E%2E"] {
        let r = admin
            .post_empty(&format!("{API}/stacks/{bad}/deploy"))
            .await;
        assert!(
            r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::NOT_FOUND,
            "{bad}: {}",
            r.status()
        );
    }
    // Nothing was made: no folder, no container.
    assert!(std::fs::read_dir(stacks_dir(&host))
        .unwrap()
        .next()
        .is_none());
    assert!(containers_of(&name).is_empty());

    // A folder that is a link out of the stacks directory, and a compose
    // file that is one: refused before Compose runs.
    let outside = host.data_path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("compose.yaml"), &good).unwrap();
    std::os::unix::fs::symlink(&outside, stacks_dir(&host).join(&name)).unwrap();
    let r = admin
        .post_empty(&format!("{API}/stacks/{name}/deploy"))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(
        status == StatusCode::BAD_REQUEST
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::NOT_FOUND,
        "{status}: {text}"
    );
    std::fs::remove_file(stacks_dir(&host).join(&name)).unwrap();
    std::fs::create_dir(stacks_dir(&host).join(&name)).unwrap();
    std::os::unix::fs::symlink(
        outside.join("compose.yaml"),
        stacks_dir(&host).join(&name).join("compose.yaml"),
    )
    .unwrap();
    let r = admin
        .post_empty(&format!("{API}/stacks/{name}/deploy"))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("outside the stack"), "{text}");
    assert!(
        containers_of(&name).is_empty(),
        "an escape reached the engine"
    );

    // Editing a good stack with a bad file keeps the old one.
    std::fs::remove_file(stacks_dir(&host).join(&name).join("compose.yaml")).unwrap();
    std::fs::remove_dir(stacks_dir(&host).join(&name)).unwrap();
    let (s, v) = create(json!({"name": name, "compose": good})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = admin
        .request(reqwest::Method::PUT, &format!("{API}/stacks/{name}"))
        .json(&json!({"compose": "services:\n  web:\n    image: x\n    depends_on: [nothing]\n", "env": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        std::fs::read_to_string(stacks_dir(&host).join(&name).join("compose.yaml")).unwrap(),
        good
    );
    let leftovers: Vec<_> = std::fs::read_dir(stacks_dir(&host).join(&name))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["compose.yaml"], "candidates are cleaned up");
    assert!(containers_of(&name).is_empty());
    host.stop().await.unwrap();
}

/// Creates the stack `name` with `compose` through the API.
async fn create_stack(admin: &ApiClient, name: &str, compose: &str) {
    let r = admin
        .post(
            &format!("{API}/stacks"),
            json!({"name": name, "compose": compose}),
        )
        .await;
    let status = r.status();
    assert_eq!(status, StatusCode::CREATED, "{}", r.text().await.unwrap());
}

/// Creates the stack `name`: a db healthy `healthy_after_ms` after it
/// starts and an app that waits for it, so an `up` runs that long.
async fn create_slow_stack(host: &TestHost, admin: &ApiClient, name: &str, healthy_after_ms: u32) {
    let l = test_labels(host.instance());
    let compose = format!(
        "services:\n  db:\n    image: {TEST_IMAGE}\n    environment:\n      HEALTHY_AFTER_MS: \"{healthy_after_ms}\"\n    healthcheck:\n      test: [\"CMD\", \"/testapp\", \"healthcheck\"]\n      interval: 1s\n      retries: 30\n    labels:\n{l}  app:\n    image: {TEST_IMAGE}\n    depends_on:\n      db:\n        condition: service_healthy\n    labels:\n{l}{NETWORKS}"
    );
    create_stack(admin, name, &compose).await;
}

#[tokio::test]
async fn a_second_action_while_one_runs_gets_409() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-busy");
    let name = p.0.clone();
    // `up` waits for db to be healthy (about 3 s): the first action runs
    // long enough for the second to meet it.
    create_slow_stack(&host, &admin, &name, 3000).await;
    let first = admin
        .post_empty(&format!("{API}/stacks/{name}/deploy"))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = admin.post_empty(&format!("{API}/stacks/{name}/stop")).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(second.json::<Value>().await.unwrap()["running"], id);
    // The first one finishes normally; the stack is free again.
    let done = admin
        .get_json(&format!("{API}/stacks/{name}/actions/{id}?wait=110000"))
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    act(&admin, &name, "down").await;
    host.stop().await.unwrap();
}

/// A registry (Debian's `docker-registry`) on a free loopback port, for
/// this test only; stopped on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("docker-registry is installed (scripts/install-deps.sh)");
        let child = Command::new(bin)
            .args(["serve", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/v2/");
        eventually(Duration::from_secs(20), "the registry answers", || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a one-layer variant of the test image (a label of its own makes
/// it a different image) tagged `tag`, labelled with its `project` (see
/// [`VariantImages`]).
fn build_variant(tag: &str, rev: &str, project: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nLABEL wakedock.test=true wakedock.test.rev={rev} wakedock.test.project={project}\n"),
    )
    .unwrap();
    docker(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
}

/// Removes every image [`build_variant`] made for a project (tagged or
/// not: an update leaves the old one untagged) on drop.
struct VariantImages(String);

impl Drop for VariantImages {
    fn drop(&mut self) {
        let filter = format!("label=wakedock.test.project={}", self.0);
        if let Ok(out) = Command::new("docker")
            .args(["images", "-q", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rmi", "-f", id]).output();
            }
        }
    }
}

#[tokio::test]
async fn an_update_pulls_and_recreates_only_the_service_whose_image_changed() {
    let registry = Registry::start().await;
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-update");
    let name = p.0.clone();
    let _images = VariantImages(name.clone());
    let image = format!("127.0.0.1:{}/{name}-app:1", registry.port);
    // Both images come from the loopback registry (an update pulls every
    // service's image; nothing may leave the machine).
    let db_image = format!("127.0.0.1:{}/{name}-db:1", registry.port);
    for (tag, rev) in [(&image, "1"), (&db_image, "db")] {
        build_variant(tag, rev, &name);
        docker(&["push", tag]);
        // Only the registry has it now: the deploy really pulls.
        docker(&["rmi", tag]);
    }
    let l = test_labels(host.instance());
    let compose = format!(
        "services:\n  app:\n    image: {image}\n    labels:\n{l}  db:\n    image: {db_image}\n    labels:\n{l}{NETWORKS}"
    );
    create_stack(&admin, &name, &compose).await;
    let done = act(&admin, &name, "deploy").await;
    assert!(done["lines"].to_string().contains("Pull"), "{done}");
    let app_1 = docker_inspect(&format!("{name}-app-1")).await["Id"].clone();
    let db_1 = docker_inspect(&format!("{name}-db-1")).await["Id"].clone();
    // An update with nothing new recreates nothing.
    act(&admin, &name, "update").await;
    assert_eq!(docker_inspect(&format!("{name}-app-1")).await["Id"], app_1);
    // A new app:1 in the registry.
    build_variant(&image, "2", &name);
    docker(&["push", &image]);
    docker(&["rmi", &image]);
    let done = act(&admin, &name, "update").await;
    assert!(done["lines"].to_string().contains("Pull"), "{done}");
    let app_2 = docker_inspect(&format!("{name}-app-1")).await;
    assert_ne!(app_2["Id"], app_1, "the app was not recreated: {done}");
    assert_eq!(app_2["Config"]["Labels"]["wakedock.test.rev"], "2");
    assert_eq!(
        docker_inspect(&format!("{name}-db-1")).await["Id"],
        db_1,
        "db was recreated"
    );
    act(&admin, &name, "down").await;
    host.stop().await.unwrap();
}

const BRIDGE_TOKEN: &str = "bridge-token-for-stacks-tests-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_that_sleeps_is_one_wake_service_and_one_request_wakes_it_in_composes_order() {
    use wakedock_tests::caddy::{Caddy, Site};
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.security.bridge_tokens = vec![BRIDGE_TOKEN.into()];
        for plugin in ["wake", "stacks"] {
            c.plugins.push(
                serde_json::from_value(json!({
                    "manifest": format!("{}/../plugins/{plugin}/plugin.toml", env!("CARGO_MANIFEST_DIR")),
                    "wasm": wasm_dir().join(format!("wakedock_plugin_{plugin}.wasm")),
                }))
                .unwrap(),
            );
        }
    })
    .await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-sleepy");
    let name = p.0.clone();
    let port = free_port();
    // The opt-in lives in the compose file: an `x-wakedock` block merged
    // into each service's labels.
    let compose = format!(
        r#"x-wakedock: &wakedock
  wakedock.enable: "true"
  wakedock.idle-timeout: 3s
  wakedock.test: "true"
  {INSTANCE_LABEL}: "{instance}"

services:
  db:
    image: {TEST_IMAGE}
    healthcheck:
      test: ["CMD", "/testapp", "healthcheck"]
      interval: 1s
      retries: 30
    labels: *wakedock
  migrate:
    image: {TEST_IMAGE}
    environment:
      EXIT_AFTER_MS: "200"
    depends_on:
      db:
        condition: service_healthy
    labels: *wakedock
  app:
    image: {TEST_IMAGE}
    ports:
      - "127.0.0.1:{port}:8080"
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    labels: *wakedock
{NETWORKS}"#,
        instance = host.instance(),
    );
    let r = admin
        .post(
            &format!("{API}/stacks"),
            json!({"name": name, "compose": compose}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    act(&admin, &name, "deploy").await;

    // The wake plugin sees one service named after the stack, its members
    // ordered by Compose's depends_on.
    let def = eventually(
        Duration::from_secs(30),
        "the stack's wake service",
        || async {
            let r = admin.get(&format!("/api/v1/services/{name}")).await;
            if r.status() != StatusCode::OK {
                return None;
            }
            Some(r.json::<Value>().await.unwrap())
        },
    )
    .await;
    let mut members: Vec<String> = def["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{def}"))
        .iter()
        .map(|m| {
            m.as_str()
                .or_else(|| m["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            format!("{name}-app-1"),
            format!("{name}-db-1"),
            format!("{name}-migrate-1")
        ],
        "{def}"
    );

    // Idle: the whole stack sleeps (its session ends, every member is
    // stopped), and the stacks page says so.
    eventually(Duration::from_secs(60), "the stack asleep", || async {
        let s = admin.get_json(&format!("/api/v1/services/{name}")).await;
        let mut stopped = true;
        for svc in ["app", "db"] {
            let st = docker_inspect(&format!("{name}-{svc}-1")).await;
            stopped &= st["State"]["Running"] == false;
        }
        (s["state"]["state"] == "asleep" && s["session"].is_null() && stopped).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the stack shown sleeping",
        || async { (stack(&admin, &name).await["stack"]["state"] == "sleeping").then_some(()) },
    )
    .await;

    // One request through Caddy wakes db, then the migration, then the app.
    let caddy = Caddy::start(
        &host.base,
        BRIDGE_TOKEN,
        vec![Site {
            service: name.clone(),
            upstream: format!("127.0.0.1:{port}"),
            extra: vec![],
        }],
    )
    .await;
    let woke_after = docker_inspect(&format!("{name}-db-1")).await["State"]["StartedAt"].clone();
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(&caddy.sites[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("hello from"));
    let db = docker_inspect(&format!("{name}-db-1")).await;
    let migrate = docker_inspect(&format!("{name}-migrate-1")).await;
    let app = docker_inspect(&format!("{name}-app-1")).await;
    assert_ne!(
        db["State"]["StartedAt"], woke_after,
        "db was not started again"
    );
    assert!(
        time_of(&db["State"]["StartedAt"]) < time_of(&migrate["State"]["StartedAt"]),
        "db before migrate"
    );
    assert!(
        time_of(&migrate["State"]["StartedAt"]) > time_of(&woke_after),
        "migrate ran again"
    );
    assert_eq!(migrate["State"]["ExitCode"], 0);
    assert!(
        time_of(&migrate["State"]["FinishedAt"]) <= time_of(&app["State"]["StartedAt"]),
        "migrate done before app"
    );
    drop(caddy);
    act(&admin, &name, "down").await;
    host.stop().await.unwrap();
}

/// Opens `/api/v1/compose/{name}/output`: once its headers are in, the
/// host has subscribed it (nothing said after that is missed).
async fn open_output(admin: &ApiClient, name: &str) -> reqwest::Response {
    let r = admin.get(&format!("/api/v1/compose/{name}/output")).await;
    assert_eq!(r.status(), StatusCode::OK);
    r
}

/// Reads an output stream until `until` holds for the events so far (or
/// 60 s pass); the events, as (name, JSON data).
async fn read_output(
    r: reqwest::Response,
    until: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !until(&events) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("output so far: {events:?}"))
            .expect("the stream stays open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for (ev, data) in drain_sse(&mut buf) {
            events.push((ev, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

#[tokio::test]
async fn live_output_reaches_a_client_while_the_action_runs_and_is_replayed_to_a_late_one() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-live");
    let name = p.0.clone();
    create_slow_stack(&host, &admin, &name, 2000).await;
    // Subscribed before the action: its start, lines while it runs (db
    // waiting to be healthy), then its end.
    let stream = open_output(&admin, &name).await;
    let watcher = tokio::spawn(read_output(stream, |evs| {
        evs.iter()
            .any(|(e, d)| e == "action" && d["state"] == "succeeded")
    }));
    let started = admin
        .post_empty(&format!("{API}/stacks/{name}/deploy"))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let id = started.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = watcher.await.unwrap();
    let first_line = live.iter().position(|(e, _)| e == "line").expect("lines");
    let end = live
        .iter()
        .position(|(e, d)| e == "action" && d["state"] == "succeeded")
        .unwrap();
    assert!(live[..first_line]
        .iter()
        .any(|(e, d)| e == "action" && d["state"] == "running" && d["id"] == id.as_str()));
    assert!(first_line < end);
    assert!(
        live.iter()
            .any(|(e, d)| e == "line" && d["line"].as_str().unwrap().contains("Healthy")),
        "{live:?}"
    );

    // A client that joins after the end gets the action and its lines.
    let late = read_output(open_output(&admin, &name).await, |evs| {
        evs.iter().filter(|(e, _)| e == "line").count() >= 3
    })
    .await;
    assert_eq!(late[0].0, "action");
    assert_eq!(late[0].1["id"], id.as_str());
    assert_eq!(late[0].1["state"], "succeeded");
    let live_lines: Vec<&Value> = live
        .iter()
        .filter(|(e, _)| e == "line")
        .map(|(_, d)| &d["line"])
        .collect();
    let late_lines: Vec<&Value> = late
        .iter()
        .filter(|(e, _)| e == "line")
        .map(|(_, d)| &d["line"])
        .collect();
    assert_eq!(late_lines[..3], live_lines[..3]);
    act(&admin, &name, "down").await;
    host.stop().await.unwrap();
}

/// The `stopped_by` of the next `host.container-exited` of container
/// `name` on the host's bus.
async fn next_exit_of(
    bus: &mut tokio::sync::broadcast::Receiver<wakedock::events::BusEvent>,
    name: &str,
) -> Value {
    let wait = async {
        loop {
            match bus.recv().await {
                Ok(ev) if ev.topic == "host.container-exited" => {
                    let doc: Value = serde_json::from_str(&ev.payload).unwrap();
                    if doc["name"] == name {
                        return doc["stopped_by"].clone();
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the bus closed: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30) * patience(), wait)
        .await
        .unwrap_or_else(|_| panic!("no exit of {name} published"))
}

// A stack stopped, restarted or taken down from WakeDock stops its
// containers on purpose (the alerts plugin must not take a stack with a
// restart policy for crashed): their exits carry who asked. A container
// killed outside WakeDock carries nobody.
#[tokio::test]
async fn stops_through_compose_are_noted_as_intended() {
    let host = stacks_host().await;
    let admin = host.admin().await;
    let p = ComposeProject::new("wd-intent");
    let name = p.0.clone();
    let l = test_labels(host.instance());
    let compose = format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    restart: unless-stopped\n    labels:\n{l}{NETWORKS}"
    );
    create_stack(&admin, &name, &compose).await;
    act(&admin, &name, "deploy").await;
    let container = format!("{name}-app-1");
    let mut bus = host.bus.subscribe();
    // Killed by hand: a crash as far as WakeDock knows.
    let out = Command::new("docker")
        .args(["kill", &container])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(next_exit_of(&mut bus, &container).await, Value::Null);
    act(&admin, &name, "start").await;
    act(&admin, &name, "stop").await;
    assert_eq!(next_exit_of(&mut bus, &container).await, "user:admin");
    act(&admin, &name, "start").await;
    act(&admin, &name, "restart").await;
    assert_eq!(next_exit_of(&mut bus, &container).await, "user:admin");
    act(&admin, &name, "down").await;
    assert_eq!(next_exit_of(&mut bus, &container).await, "user:admin");
    host.stop().await.unwrap();
}
