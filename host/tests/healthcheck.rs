//! `wakedock healthcheck` against a real `wakedock serve` (the binary, as
//! the container image runs it): exit 0 while the server is healthy, non-zero
//! when the engine it needs is unreachable and when the server is down.
//!
//! Being an integration test of the `wakedock` package, this also makes
//! `cargo test --workspace` build `target/debug/wakedock`, the binary
//! `scripts/build-images.sh --dev` puts into the test images.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wakedock");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, socket: &str) -> std::path::PathBuf {
    let path = dir.join("wakedock.yaml");
    std::fs::write(
        &path,
        format!(
            "wakedock:\n  data_path: {}\n  host: 0.0.0.0\n  port: {port}\n\
             docker:\n  socket_path: {socket}\n\
             security:\n  jwt_secret: healthcheck-test-secret-0123456789abcdef\n\
             plugins: []\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, port: u16) -> Server {
    let child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("WAKEDOCK_ADMIN_PASSWORD", "healthcheck-test-password")
        .env_remove("WAKEDOCK_BRIDGE_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wakedock serve");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn healthcheck(config: &Path) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["healthcheck", "--timeout", "5s"])
        .output()
        .expect("run wakedock healthcheck")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn healthy_server_passes_and_a_stopped_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "/var/run/docker.sock");
    let server = serve(&config, port);
    let up = healthcheck(&config);
    assert!(up.status.success(), "healthcheck failed: {}", text(&up));
    assert!(text(&up).contains("healthy"), "{}", text(&up));

    drop(server);
    let down = healthcheck(&config);
    assert!(!down.status.success(), "passed with the server down");
    assert!(text(&down).contains("no answer"), "{}", text(&down));
}

#[test]
fn unreachable_engine_fails_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let missing = dir.path().join("no-such-docker.sock");
    let config = write_config(dir.path(), port, &missing.display().to_string());
    let _server = serve(&config, port);
    let out = healthcheck(&config);
    assert!(!out.status.success(), "passed without an engine");
    assert!(text(&out).contains("docker down"), "{}", text(&out));
}
