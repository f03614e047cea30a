//! The `wakedock` binary killed with SIGKILL in the middle of a write load,
//! on every backend: it starts again cleanly and nothing it acknowledged
//! is lost. Also `wakedock backup` / `wakedock restore` as commands.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

const PASSWORD: &str = "durability-admin-password";

/// A database on one backend, dropped with it.
struct Database {
    url: String,
    drop_sql: Option<(String, String, bool)>,
}

impl Database {
    fn new(backend: &str, dir: &Path) -> Self {
        let name = format!(
            "wd_test_kill_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let make = |var: &str, pg: bool| {
            let admin = std::env::var(var).unwrap_or_else(|_| {
                panic!("{var} is not set: run the tests through scripts/test.sh")
            });
            let sql = format!("CREATE DATABASE {name}");
            if pg {
                diesel::PgConnection::establish(&admin)
                    .unwrap()
                    .batch_execute(&sql)
                    .unwrap();
            } else {
                diesel::MysqlConnection::establish(&admin)
                    .unwrap()
                    .batch_execute(&sql)
                    .unwrap();
            }
            let base = admin.rsplit_once('/').unwrap().0.to_string();
            Database {
                url: format!("{base}/{name}"),
                drop_sql: Some((admin, name.clone(), pg)),
            }
        };
        match backend {
            "sqlite" => Database {
                url: format!("sqlite://{}", dir.join("wakedock.db").display()),
                drop_sql: None,
            },
            "postgres" => make("WAKEDOCK_TEST_PG_URL", true),
            "mysql" => make("WAKEDOCK_TEST_MYSQL_URL", false),
            other => panic!("unknown backend {other}"),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name, pg)) = self.drop_sql.take() {
            if pg {
                if let Ok(mut c) = diesel::PgConnection::establish(&admin) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            } else if let Ok(mut c) = diesel::MysqlConnection::establish(&admin) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
            }
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

fn config(dir: &Path, db_url: &str, port: u16) -> String {
    let path = dir.join("wd.yaml");
    // No Docker engine: the host must not touch the shared one.
    let body = json!({
        "wakedock": {"data_path": dir.join("data"), "port": port},
        "database": {"url": db_url},
        "docker": {"socket_path": dir.join("no-docker.sock")},
        "plugins": [],
        "security": {"rate_limit": {
            "api_per_ip_per_second": 100000, "api_burst": 100000,
            "login_per_ip_per_minute": 1000, "login_per_user_per_minute": 1000
        }}
    });
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

fn wakedock(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wakedock"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("WAKEDOCK_CONFIG_PATH")
        .env_remove("JWT_SECRET_KEY")
        .env_remove("RUST_LOG")
        .env("WAKEDOCK_ADMIN_PASSWORD", PASSWORD);
    cmd
}

/// A data directory, a database and a config file for one host.
struct Setup {
    dir: tempfile::TempDir,
    // Dropped after the host that uses it.
    _db: Database,
    cfg: String,
    base: String,
}

impl Setup {
    fn new(backend: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(backend, dir.path());
        let port = free_port();
        let cfg = config(dir.path(), &db.url, port);
        Setup {
            base: format!("http://127.0.0.1:{port}"),
            cfg,
            _db: db,
            dir,
        }
    }

    fn serve(&self) -> Child {
        serve(self.dir.path(), &self.cfg)
    }
}

fn serve(dir: &Path, cfg: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("host.log"))
        .unwrap();
    wakedock(dir, &["--config", cfg, "serve"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
        {
            if r.status() == 200 {
                let v: Value = r.json().await.unwrap();
                return v["access_token"].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "the host did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Audit entries for `target`, read through the API.
async fn audit_count(http: &reqwest::Client, base: &str, token: &str, target: &str) -> usize {
    let mut n = 0;
    for page in 1.. {
        let v: Value = http
            .get(format!(
                "{base}/api/v1/audit?action=user.update&per_page=500&page={page}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap();
        n += items.iter().filter(|e| e["target"] == target).count();
        if items.len() < 500 {
            return n;
        }
    }
    unreachable!()
}

/// SIGKILL during writes, on each backend: the next start is clean
/// (migrations, login), and every change the host acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_nothing_acknowledged_on_every_backend() {
    for backend in ["sqlite", "postgres", "mysql"] {
        let host = Setup::new(backend);
        let base = host.base.clone();
        let http = reqwest::Client::new();
        let mut child = host.serve();
        let token = login(&http, &base).await;
        let r = http
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(&token)
            .json(&json!({"username": "target", "password": "a-long-enough-password", "role": "user"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{backend}");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Four writers change the user's role over and over (a write
        // transaction and an audit entry each); the host is killed while
        // they are in flight.
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (http, base, token, id, acked) = (
                http.clone(),
                base.clone(),
                token.clone(),
                id.clone(),
                acked.clone(),
            );
            writers.push(tokio::spawn(async move {
                for i in 0..2000 {
                    let role = if (i + w) % 2 == 0 { "viewer" } else { "user" };
                    let r = http
                        .patch(format!("{base}/api/v1/users/{id}"))
                        .bearer_auth(&token)
                        .json(&json!({"role": role}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(r) => panic!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                        // The host is gone.
                        Err(_) => return,
                    }
                }
            }));
        }
        // Kill once a good number of writes went through.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 150 {
            assert!(Instant::now() < deadline, "{backend}: writes too slow");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let acked = acked.load(std::sync::atomic::Ordering::SeqCst);

        let mut child = host.serve();
        let token = login(&http, &base).await;
        // Audited under the username.
        let n = audit_count(&http, &base, &token, "target").await;
        assert!(
            n >= acked,
            "{backend}: {acked} updates acknowledged, {n} audited after the restart"
        );
        let r = http
            .get(format!("{base}/api/v1/users/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{backend}: the user is intact");
        let health: Value = http
            .get(format!("{base}/health"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["database"]["status"], "up", "{backend}");
        assert!(
            health["database_size_bytes"].as_i64().unwrap() > 0,
            "{backend}: {health}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("{backend}: {acked} acknowledged writes before SIGKILL, {n} found after");
    }
}

/// `wakedock backup` while the server runs, then `wakedock restore` of it
/// into an empty database of each other backend; a second restore into
/// the same place is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_commands_across_backends() {
    for (from, into) in [
        ("sqlite", "mysql"),
        ("mysql", "postgres"),
        ("postgres", "sqlite"),
    ] {
        let source = Setup::new(from);
        let (dir, cfg, base) = (source.dir.path(), &source.cfg, &source.base);
        let http = reqwest::Client::new();
        let mut child = source.serve();
        let token = login(&http, base).await;
        let file = dir.join("b.jsonl.gz");
        let o = wakedock(dir, &["--config", cfg, "backup", "--output"])
            .arg(&file)
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{from}: {out}");
        assert!(out.contains("users 1"), "{out}");
        // The server kept serving.
        let r = http
            .get(format!("{base}/api/v1/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        child.kill().unwrap();
        child.wait().unwrap();

        let target = Setup::new(into);
        let (dir2, cfg2, base2) = (target.dir.path(), &target.cfg, &target.base);
        let o = wakedock(dir2, &["--config", cfg2, "restore"])
            .arg(&file)
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{from} -> {into}: {out}");
        assert!(out.contains(&format!("from {from}")), "{out}");
        let o = wakedock(dir2, &["--config", cfg2, "restore"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("not empty") || err.contains("already exists"),
            "{err}"
        );
        // The restored host signs in with the old password and the old
        // JWT secret (a token issued before still works).
        let mut child = target.serve();
        login(&http, base2).await;
        let r = http
            .get(format!("{base2}/api/v1/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{from} -> {into}: the old token works");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
