//! The `wakedock` binary itself: configuration checks, offline user
//! management, migrations, first-start admin, and SIGTERM handling.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn wakedock(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wakedock"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("WAKEDOCK_CONFIG_PATH")
        .env_remove("JWT_SECRET_KEY")
        .env_remove("WAKEDOCK_ADMIN_PASSWORD")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let o = wakedock(dir.path(), &["--version"], &[], None);
    assert!(o.status.success());
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    let o = wakedock(dir.path(), &["--help"], &[], None);
    for sub in ["serve", "migrate", "config", "user"] {
        assert!(text(&o).contains(sub), "{sub} missing from --help");
    }
}

#[test]
fn config_check_prints_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "wd.yaml",
        "wakedock: { port: 9123 }\nsecurity: { jwt_secret: \"a-very-secret-value-that-is-long-enough\" }\n",
    );
    let o = wakedock(
        dir.path(),
        &["--config", &cfg, "config", "check"],
        &[(
            "WAKEDOCK_DATABASE__URL",
            "postgres://wd:hunter2@127.0.0.1/wd",
        )],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("configuration is valid"));
    assert!(out.contains("9123"));
    assert!(!out.contains("a-very-secret-value"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");

    // TOML is read too; the config path may come from the environment.
    let toml = write(dir.path(), "wd.toml", "[wakedock]\nport = 9124\n");
    let o = wakedock(
        dir.path(),
        &["config", "check"],
        &[("WAKEDOCK_CONFIG_PATH", toml.as_str())],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("9124"));
}

#[test]
fn bad_configuration_is_refused_with_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    // (config file, extra env, what the message must name)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            write(dir.path(), "a.yaml", "wakedock: { prot: 1 }\n"),
            vec![],
            vec!["wakedock.prot", "a.yaml"],
        ),
        (
            write(dir.path(), "b.yaml", "wakedock: { port: 70000 }\n"),
            vec![],
            vec!["wakedock.port", "b.yaml"],
        ),
        (
            write(
                dir.path(),
                "s.yaml",
                "services:\n  - { name: blog, members: [blog] }\n  - { name: shop, members: [shop], idle_timeout: soon }\n",
            ),
            vec![],
            vec!["services.1", "s.yaml", "service \"shop\"", "idle_timeout"],
        ),
        (
            write(dir.path(), "c.yaml", "logging: { level: info }\n"),
            vec![("WAKEDOCK_LOGGING__LEVEL", "chatty")],
            vec!["logging.level", "WAKEDOCK_LOGGING__LEVEL"],
        ),
        (
            write(
                dir.path(),
                "d.yaml",
                "security:\n  access_token_ttl: 2d\n  refresh_token_ttl: 30d\n",
            ),
            vec![],
            vec!["security.access_token_ttl", "d.yaml"],
        ),
        (
            write(dir.path(), "e.yaml", "wakedock: [not, a, map]\n"),
            vec![],
            vec!["wakedock", "e.yaml"],
        ),
    ];
    for (cfg, env, needles) in cases {
        let o = wakedock(
            dir.path(),
            &["--config", &cfg, "config", "check"],
            &env,
            None,
        );
        let out = text(&o);
        assert!(!o.status.success(), "{cfg} accepted: {out}");
        for n in needles {
            assert!(out.contains(n), "{n:?} not in {out:?}");
        }
    }
    let o = wakedock(
        dir.path(),
        &["--config", "/nonexistent.yaml", "config", "check"],
        &[],
        None,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("not found"));
}

#[test]
fn offline_user_management() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WAKEDOCK_DATA_PATH", "./data")];
    let o = wakedock(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "ops",
            "--role",
            "user",
            "--password-stdin",
        ],
        &env,
        Some("ops-password-1\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("created user ops (user)"));
    // Duplicate, short password, bad role: refused.
    let o = wakedock(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "ops",
            "--role",
            "user",
            "--password-stdin",
        ],
        &env,
        Some("ops-password-1\n"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"));
    let o = wakedock(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "x",
            "--role",
            "user",
            "--password-stdin",
        ],
        &env,
        Some("short\n"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("at least 8"));
    let o = wakedock(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "x",
            "--role",
            "root",
            "--password-stdin",
        ],
        &env,
        Some("long-enough-pw\n"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown role"));

    let o = wakedock(
        dir.path(),
        &["user", "passwd", "--username", "ops", "--password-stdin"],
        &env,
        Some("new-ops-password\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = wakedock(
        dir.path(),
        &["user", "passwd", "--username", "ghost", "--password-stdin"],
        &env,
        Some("new-ops-password\n"),
    );
    assert!(!o.status.success());
    let o = wakedock(dir.path(), &["user", "list"], &env, None);
    let out = text(&o);
    assert!(o.status.success());
    assert!(out.contains("ops") && out.contains("user"), "{out}");
    assert!(dir.path().join("data/wakedock.db").exists());

    let o = wakedock(dir.path(), &["migrate"], &env, None);
    assert!(o.status.success());
    assert!(text(&o).contains("up to date"), "{}", text(&o));
}

/// The data directory and the database files are the owner's alone: they
/// hold password hashes and the audit log (issue 10).
#[test]
fn data_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env = [("WAKEDOCK_DATA_PATH", "data")];
    let o = wakedock(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "ops",
            "--role",
            "user",
            "--password-stdin",
        ],
        &env,
        Some("ops-password-123\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data"), 0o700);
    assert_eq!(mode("data/wakedock.db"), 0o600);
    for f in ["data/wakedock.db-wal", "data/wakedock.db-shm"] {
        if dir.path().join(f).exists() {
            assert_eq!(mode(f), 0o600, "{f}");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_generates_admin_password_once_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let start = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_wakedock"))
            .current_dir(dir)
            .arg("serve")
            .env_remove("WAKEDOCK_ADMIN_PASSWORD")
            .env_remove("JWT_SECRET_KEY")
            .env_remove("WAKEDOCK_CONFIG_PATH")
            .env("WAKEDOCK_WAKEDOCK__PORT", &port_s)
            .env("WAKEDOCK_DATA_PATH", "./data")
            // No engine here: serve must start anyway and report it.
            .env("WAKEDOCK_DOCKER__SOCKET_PATH", "/nonexistent/docker.sock")
            .env("WAKEDOCK_LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let run_once = |dir: &Path| -> (String, Option<String>) {
        let child = start(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = loop {
            if let Some(r) = get(port, "/health") {
                break Some(r);
            }
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
        (text(&out), health)
    };
    let (log1, health) = run_once(dir.path());
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains(r#""docker":{"status":"down""#), "{health}");
    assert!(
        log1.contains("created the first admin user with a generated password"),
        "{log1}"
    );
    assert!(log1.contains("stopped"), "{log1}");
    let secret = dir.path().join("data/jwt_secret");
    assert!(secret.exists());
    // Second start: the admin exists, nothing is printed again; same secret.
    let before = std::fs::read_to_string(&secret).unwrap();
    let (log2, _) = run_once(dir.path());
    assert!(!log2.contains("generated password"), "{log2}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), before);
}
