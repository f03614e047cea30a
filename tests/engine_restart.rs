//! The host keeps serving while the Docker engine goes away and comes back.
//!
//! The test runs its own engine (a second `dockerd` on a private socket,
//! data root and exec root, no bridge, no iptables) in a network namespace
//! of its own, so neither starting nor stopping it touches anything else on
//! the machine. (A `dockerd --bridge=none` in the host's namespace deletes
//! the host's `docker0` on start: the namespace is what prevents that.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wakedock_tests::*;

struct PrivateEngine {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateEngine {
    fn socket(dir: &Path) -> PathBuf {
        dir.join("docker.sock")
    }

    fn start(dir: &Path) -> Self {
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--net", "--", "dockerd"])
            .arg(format!("--host=unix://{}", Self::socket(dir).display()))
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a private dockerd (the test setup installs docker.io)");
        Self {
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..200 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(Self::socket(&self.dir));
    }
}

async fn docker_status(host: &TestHost) -> (StatusCode, String) {
    let r = reqwest::get(host.url("/health")).await.unwrap();
    let status = r.status();
    let h: Value = r.json().await.unwrap();
    (status, h["docker"]["status"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_survives_engine_stop_and_restart() {
    let dir = tempfile::Builder::new()
        .prefix("wd-engine-")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = PrivateEngine::socket(dir.path());
    let sock = socket.clone();
    let host = TestHost::start_with(Backend::Sqlite, move |c| {
        c.docker.socket_path = sock;
    })
    .await;
    let admin = host.admin().await;

    // No engine yet: degraded, and the API says so without failing.
    assert_eq!(
        docker_status(&host).await,
        (StatusCode::SERVICE_UNAVAILABLE, "down".to_string())
    );
    assert_eq!(
        admin.get("/api/v1/containers").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The engine comes up: the host notices without a restart.
    let mut engine = PrivateEngine::start(dir.path());
    eventually(Duration::from_secs(60), "engine up in /health", || async {
        (docker_status(&host).await.1 == "up").then_some(())
    })
    .await;
    assert_eq!(
        admin.get("/api/v1/containers").await.status(),
        StatusCode::OK
    );

    // The engine goes away mid-run: reported down, the host keeps serving.
    engine.stop();
    eventually(
        Duration::from_secs(30),
        "engine down in /health",
        || async {
            (docker_status(&host).await == (StatusCode::SERVICE_UNAVAILABLE, "down".into()))
                .then_some(())
        },
    )
    .await;
    let r = admin.get("/api/v1/containers").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(r).await, "docker_unavailable");
    assert_eq!(admin.get("/api/v1/auth/me").await.status(), StatusCode::OK);

    // And back again.
    let _engine = PrivateEngine::start(dir.path());
    eventually(Duration::from_secs(60), "engine up again", || async {
        (docker_status(&host).await == (StatusCode::OK, "up".into())).then_some(())
    })
    .await;
    assert_eq!(
        admin.get("/api/v1/containers").await.status(),
        StatusCode::OK
    );
    host.stop().await.unwrap();
}
