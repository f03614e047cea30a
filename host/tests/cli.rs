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
    // The plugin API a plugin's `api-version` may be at most.
    assert!(
        text(&o).contains(&format!(
            "(plugin API {})",
            wakedock_plugin_runtime::HOST_API_VERSION
        )),
        "{}",
        text(&o)
    );
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

/// What `serve` refuses before it touches the database, `config check`
/// refuses with the same message, naming the variable or key; and `serve`
/// refuses it before creating anything.
#[test]
fn config_check_refuses_exactly_what_serve_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let logs_nowhere = write(
        dir.path(),
        "log.yaml",
        "logging: { file: /nonexistent/dir/wd.log }\n",
    );
    let manifest = dir.path().join("plugin.toml");
    std::fs::write(
        &manifest,
        "name = \"x\"\nversion = \"0.1.0\"\napi-version = \"9.0.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("x.wasm"), b"\0asm").unwrap();
    let future_plugin = write(
        dir.path(),
        "future.yaml",
        &format!(
            "plugins:\n  - {{ manifest: {}, wasm: {}/x.wasm }}\n",
            manifest.display(),
            dir.path().display()
        ),
    );
    // (config file, env, what both must say)
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            None,
            vec![("WAKEDOCK_BRIDGE_TOKEN", "abc")],
            vec!["WAKEDOCK_BRIDGE_TOKEN", "at least 16"],
        ),
        (
            None,
            vec![("WAKEDOCK_ADMIN_PASSWORD", "short")],
            vec!["WAKEDOCK_ADMIN_PASSWORD", "at least 8"],
        ),
        (
            None,
            vec![("WAKEDOCK_INSTANCE", "not a name")],
            vec!["wakedock.instance", "WAKEDOCK_INSTANCE"],
        ),
        (
            None,
            vec![("WAKEDOCK_SECURITY__BRIDGE_TOKENS", "[short]")],
            vec![
                "security.bridge_tokens.0",
                "environment variable WAKEDOCK_SECURITY__BRIDGE_TOKENS",
            ],
        ),
        (None, vec![("RUST_LOG", "info,[")], vec!["RUST_LOG"]),
        (
            Some(&logs_nowhere),
            vec![],
            vec!["logging.file", "log.yaml", "does not exist"],
        ),
        (
            Some(&future_plugin),
            vec![],
            vec!["plugins.0.manifest", "future.yaml", "9.0.0"],
        ),
    ];
    for (i, (cfg, env, needles)) in cases.into_iter().enumerate() {
        let data = format!("./data-{i}");
        let mut env = env;
        env.push(("WAKEDOCK_DATA_PATH", &data));
        env.push(("WAKEDOCK_DOCKER__SOCKET_PATH", "/nonexistent/docker.sock"));
        env.push(("WAKEDOCK_WAKEDOCK__PORT", "0"));
        let args = |cmd: &[&'static str]| {
            let mut a: Vec<&str> = Vec::new();
            if let Some(c) = cfg {
                a.extend(["--config", c]);
            }
            a.extend(cmd);
            a
        };
        let check = wakedock(dir.path(), &args(&["config", "check"]), &env, None);
        let serve = wakedock(dir.path(), &args(&["serve"]), &env, None);
        for (what, o) in [("config check", &check), ("serve", &serve)] {
            let out = text(o);
            assert!(!o.status.success(), "{what} accepted case {i}: {out}");
            for n in &needles {
                assert!(out.contains(n), "{what}, case {i}: {n:?} not in {out:?}");
            }
            assert!(!out.contains("(from defaults)"), "{what}, case {i}: {out}");
        }
        assert_eq!(
            String::from_utf8_lossy(&check.stderr),
            String::from_utf8_lossy(&serve.stderr),
            "case {i}: the same refusal"
        );
        assert!(
            !dir.path().join(&data).exists(),
            "case {i}: serve created its data dir before refusing"
        );
    }
}

#[test]
fn a_bad_grant_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/example/plugin.toml");
    let manifest = manifest.to_str().unwrap();
    // The grant is read before the component is compiled: any bytes do.
    let wasm = write(dir.path(), "x.wasm", "\0asm");
    let env = [("WAKEDOCK_DATA_PATH", "./data")];
    let unreadable = "/nonexistent/grant.toml".to_owned();
    let mut cases = vec![(unreadable, "reading grant file")];
    for (name, body, says) in [
        ("syntax.toml", "[capabilities\n", "grant file"),
        ("unknown.toml", "[capabilities]\nfiles = {}\n", "files"),
        (
            "wider.toml",
            "[capabilities]\nhttp-outbound = { hosts = [\"example.org\"] }\n",
            "does not request",
        ),
    ] {
        cases.push((write(dir.path(), name, body), says));
    }
    for (grant, says) in cases {
        let o = wakedock(
            dir.path(),
            &[
                "plugin",
                "install",
                "--manifest",
                manifest,
                "--wasm",
                &wasm,
                "--grant",
                &grant,
            ],
            &env,
            None,
        );
        let out = text(&o);
        assert!(!o.status.success(), "{grant}: {out}");
        assert!(
            out.contains(&format!("grant file {grant}")),
            "{grant}: {out}"
        );
        assert!(out.contains(says), "{grant}: {out}");
    }
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
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn post_json(port: u16, path: &str, body: &str) -> Option<String> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn http(port: u16, request: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
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
            .env("WAKEDOCK_LOGGING__FILE", "./wakedock.log")
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let run_once = |dir: &Path, login_with: Option<&str>| -> (String, Option<String>) {
        let child = start(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = loop {
            if let Some(r) = get(port, "/health") {
                break Some(r);
            }
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(pw) = login_with {
            let login = post_json(
                port,
                "/api/v1/auth/login",
                &format!(r#"{{"username":"admin","password":"{pw}"}}"#),
            )
            .unwrap();
            assert!(login.starts_with("HTTP/1.1 200"), "{login}");
        }
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
        (text(&out), health)
    };
    let (log1, health) = run_once(dir.path(), None);
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains(r#""docker":{"status":"down""#), "{health}");
    assert!(
        log1.contains("created the first admin user with a generated password"),
        "{log1}"
    );
    assert!(log1.contains("stopped"), "{log1}");
    // The banner: where, who, and (this once) the password.
    assert!(
        log1.contains(&format!("WakeDock is running at http://127.0.0.1:{port}/")),
        "{log1}"
    );
    assert!(log1.contains("Sign in as:  admin"), "{log1}");
    assert!(log1.contains("Password:    "), "{log1}");
    // Neither the piped output nor the log file has colour codes.
    assert!(
        !log1.contains('\x1b'),
        "ANSI codes in piped output: {log1:?}"
    );
    let file = std::fs::read_to_string(dir.path().join("wakedock.log")).unwrap();
    assert!(file.contains("WakeDock is listening"), "{file}");
    assert!(
        !file.contains('\x1b'),
        "ANSI codes in the log file: {file:?}"
    );
    // The password is shown in the banner only, never logged.
    let pw = log1
        .lines()
        .find_map(|l| l.strip_prefix("  Password:    "))
        .unwrap()
        .to_owned();
    assert!(!file.contains(&pw), "the password is in the log file");
    let secret = dir.path().join("data/jwt_secret");
    assert!(secret.exists());
    // Second start: the admin exists, nothing is printed again; same secret.
    let before = std::fs::read_to_string(&secret).unwrap();
    // Second start: the banner's password signs in.
    let (log2, _) = run_once(dir.path(), Some(&pw));
    assert!(!log2.contains("generated password"), "{log2}");
    assert!(log2.contains("Admin user:  admin"), "{log2}");
    assert!(!log2.contains("Password:"), "{log2}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), before);
}

/// `<target>/wasm32-wasip2/release`, where `scripts/build-plugins.sh` put
/// the components this test run may use.
fn built_wasm_dir() -> std::path::PathBuf {
    let suffix = Path::new("wasm32-wasip2").join("release");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = std::path::PathBuf::from(dir);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        return if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        }
        .join(suffix);
    }
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_wakedock"));
    exe.ancestors()
        .skip(1)
        .map(|d| d.join(&suffix))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no {} near {}: run scripts/build-plugins.sh",
                suffix.display(),
                exe.display()
            )
        })
}

/// Reads a child's pipe in the background into a shared string.
fn collect(pipe: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    out
}

/// `scripts/run.sh` runs the binary and the plugins of `$CARGO_TARGET_DIR`.
///
/// Building into a second target directory would compile the whole
/// workspace again, so the test lays one out from what is built already: a
/// `release/wakedock` that records that it ran and then runs this test's
/// binary, and a copy of the wake plugin. It runs the script with
/// `--no-install --no-build` (no packages, no engine: the host comes up
/// without Docker) and checks the config check resolves the plugin there,
/// and that `serve` comes up from there with the wake plugin loaded, its
/// banner's password signing in, and no colour codes in its output.
#[test]
fn run_sh_runs_the_binary_and_plugins_of_cargo_target_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let target = tmp.path().join("other-target");
    let marker = tmp.path().join("binary-ran");
    std::fs::create_dir_all(target.join("release")).unwrap();
    let bin = target.join("release/wakedock");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$0\" >> '{}'\nexec '{}' \"$@\"\n",
            marker.display(),
            env!("CARGO_BIN_EXE_wakedock")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wasm_dir = target.join("wasm32-wasip2/release");
    std::fs::create_dir_all(&wasm_dir).unwrap();
    // Every plugin the default config declares, from the other target dir.
    for plugin in ["wake", "stacks", "alerts"] {
        let file = format!("wakedock_plugin_{plugin}.wasm");
        std::fs::copy(built_wasm_dir().join(&file), wasm_dir.join(&file))
            .unwrap_or_else(|e| panic!("{file} is built (scripts/build-plugins.sh): {e}"));
    }
    let wasm = wasm_dir.join("wakedock_plugin_wake.wasm");

    let port = free_port();
    let script = |args: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/run.sh"))
            .args(["--no-install", "--no-build"])
            .args(args)
            .current_dir(tmp.path())
            .env("CARGO_TARGET_DIR", &target)
            .env("WD_STATE_DIR", tmp.path().join("state"))
            .env("WAKEDOCK_DATA_PATH", tmp.path().join("data"))
            .env("WAKEDOCK_WAKEDOCK__PORT", port.to_string())
            .env("WAKEDOCK_DOCKER__SOCKET_PATH", "/nonexistent/docker.sock")
            .env("WAKEDOCK_LOG_LEVEL", "info")
            .env_remove("WAKEDOCK_CONFIG_PATH")
            .env_remove("WAKEDOCK_ADMIN_PASSWORD")
            .env_remove("JWT_SECRET_KEY")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };

    let o = script(&["--", "config", "check"]).output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&wasm.display().to_string()),
        "plugin path: {out}"
    );
    assert!(std::fs::read_to_string(&marker)
        .unwrap()
        .contains(&bin.display().to_string()));
    assert!(!out.contains('\x1b'), "colour codes: {out:?}");

    let mut child = script(&[]).spawn().unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let password = loop {
        let pw = stdout
            .lock()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("  Password:    ").map(str::to_owned));
        if let Some(pw) = pw {
            break pw;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no banner: {}{}",
            stdout.lock().unwrap(),
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let login = post_json(
        port,
        "/api/v1/auth/login",
        &format!(r#"{{"username":"admin","password":"{password}"}}"#),
    )
    .unwrap();
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let body: serde_json::Value =
        serde_json::from_str(login.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap();
    let plugins = http(
        port,
        &format!(
            "GET /api/v1/plugins/wake HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .unwrap();
    assert!(plugins.starts_with("HTTP/1.1 200"), "{plugins}");
    assert!(plugins.contains(r#""name":"wake""#), "{plugins}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let all = format!("{}{}", stdout.lock().unwrap(), stderr.lock().unwrap());
    assert!(
        all.contains(&format!("WakeDock is running at http://127.0.0.1:{port}/")),
        "{all}"
    );
    assert!(!all.contains('\x1b'), "colour codes: {all:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().lines().count(),
        2,
        "both runs used {}",
        bin.display()
    );
}

/// A host started without `MALLOC_MMAP_THRESHOLD_` runs with it anyway (it
/// re-executes itself, same PID); an explicit value is kept, and
/// `WAKEDOCK_MALLOC_TUNING=off` runs with glibc's defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn serve_runs_with_the_malloc_threshold_however_it_is_started() {
    let run = |env: &[(&str, &str)]| -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wakedock"))
            .current_dir(dir.path())
            .arg("serve")
            .env_remove("MALLOC_MMAP_THRESHOLD_")
            .env_remove("WAKEDOCK_MALLOC_TUNING")
            .env_remove("WAKEDOCK_CONFIG_PATH")
            .env("WAKEDOCK_WAKEDOCK__PORT", port.to_string())
            .env("WAKEDOCK_DATA_PATH", "./data")
            .env("WAKEDOCK_ADMIN_PASSWORD", "malloc-test-password")
            .env("WAKEDOCK_DOCKER__SOCKET_PATH", "/nonexistent/docker.sock")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "/health").is_none() {
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The process we started, still under its PID, serving.
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap();
        environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("MALLOC_MMAP_THRESHOLD_="))
            .map(str::to_owned)
    };
    assert_eq!(run(&[]).as_deref(), Some("131072"));
    assert_eq!(
        run(&[("MALLOC_MMAP_THRESHOLD_", "65536")]).as_deref(),
        Some("65536")
    );
    assert_eq!(run(&[("WAKEDOCK_MALLOC_TUNING", "off")]), None);
}
