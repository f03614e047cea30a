//! Data benchmarks (issue 14), on each backend the test setup runs
//! (SQLite always; PostgreSQL and MariaDB when `WAKEDOCK_TEST_PG_URL` /
//! `WAKEDOCK_TEST_MYSQL_URL` name them):
//!
//! 1. Backup of a database with 100,000 audit entries: time and size.
//! 2. Restore of that file into an empty database: time.
//! 3. The longest request stall during a backup (target < 50 ms): a
//!    client writes (a user change: a write transaction and an audit
//!    entry) and reads (one audit page) back to back against a real host
//!    on loopback; the longest request while a backup runs is compared
//!    with the longest in an equally long window without one, right after
//!    (the baseline, measured in the same run); requests over 50 ms are
//!    counted in both.
//!
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};
use wakedock::backup::{self, Sources, Target};
use wakedock::db::audit::{self, NewAuditEntry};
use wakedock::db::Db;

const ENTRIES: usize = 100_000;
const PASSWORD: &str = "bench-admin-password";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A fresh database on `backend`; returns its URL and what drops it.
fn database(
    backend: &str,
    dir: &std::path::Path,
    tag: &str,
) -> anyhow::Result<(String, Option<(String, String)>)> {
    let name = format!(
        "wd_test_bench_{tag}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let server = |var: &str| -> anyhow::Result<(String, Option<(String, String)>)> {
        let admin = std::env::var(var).with_context(|| format!("{var} is not set"))?;
        let sql = format!("CREATE DATABASE {name}");
        if backend == "postgres" {
            diesel::PgConnection::establish(&admin)?.batch_execute(&sql)?;
        } else {
            diesel::MysqlConnection::establish(&admin)?.batch_execute(&sql)?;
        }
        let base = admin.rsplit_once('/').context("URL ends in /DB")?.0;
        Ok((format!("{base}/{name}"), Some((admin, name.clone()))))
    };
    match backend {
        "sqlite" => Ok((
            format!("sqlite://{}", dir.join(format!("{tag}.db")).display()),
            None,
        )),
        "postgres" => server("WAKEDOCK_TEST_PG_URL"),
        _ => server("WAKEDOCK_TEST_MYSQL_URL"),
    }
}

fn drop_database(d: Option<(String, String)>, backend: &str) {
    if let Some((admin, name)) = d {
        let _ = if backend == "postgres" {
            diesel::PgConnection::establish(&admin)
                .map(|mut c| {
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                })
                .map(drop)
        } else {
            diesel::MysqlConnection::establish(&admin)
                .map(|mut c| c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")))
                .map(drop)
        };
    }
}

async fn fill(db: &Db) -> anyhow::Result<()> {
    for chunk in 0..(ENTRIES / 5000) {
        db.run(move |c| {
            c.write_transaction(|c| {
                for i in 0..5000 {
                    let mut e = NewAuditEntry::new("container.start", "success");
                    e.actor = Some("admin".into());
                    e.target = Some(format!("container-{}", (chunk * 5000 + i) % 300));
                    e.client_ip = Some("127.0.0.1".into());
                    e.detail = Some("started by the bench".into());
                    audit::insert(c, &e)?;
                }
                Ok(())
            })
        })
        .await?;
    }
    Ok(())
}

/// The stall target of the issue.
const STALL_TARGET: Duration = Duration::from_millis(50);

/// What a load saw: the longest request, how many ran, how many took
/// longer than [`STALL_TARGET`].
struct Seen {
    longest: Duration,
    n: usize,
    over_target: usize,
}

/// Back-to-back requests until `stop`.
async fn load(
    http: reqwest::Client,
    base: String,
    token: String,
    user: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Seen {
    let mut longest = Duration::ZERO;
    let mut n = 0;
    let mut over_target = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100_000 {
        let t = Instant::now();
        let r = if n % 2 == 0 {
            let role = if n % 4 == 0 { "user" } else { "viewer" };
            http.patch(format!("{base}/api/v1/users/{user}"))
                .bearer_auth(&token)
                .json(&json!({ "role": role }))
                .send()
                .await
        } else {
            http.get(format!("{base}/api/v1/audit?per_page=1"))
                .bearer_auth(&token)
                .send()
                .await
        };
        let ok = r.map(|r| r.status().is_success()).unwrap_or(false);
        assert!(ok, "a request failed during the load");
        let took = t.elapsed();
        longest = longest.max(took);
        over_target += usize::from(took > STALL_TARGET);
        n += 1;
    }
    Seen {
        longest,
        n,
        over_target,
    }
}

async fn bench(backend: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, drop_src) = database(backend, dir.path(), "src")?;
    let mut config = wakedock::config::Config::default();
    config.wakedock.data_path = dir.path().join("data");
    config.database.url = Some(url.clone());
    config.docker.socket_path = dir.path().join("no-docker.sock");
    config.security.jwt_secret = Some("bench-secret-bench-secret-bench-secret-0".into());
    config.security.rate_limit.api_per_ip_per_second = 1_000_000;
    config.security.rate_limit.api_burst = 1_000_000;
    config.security.rate_limit.login_per_ip_per_minute = 1_000;
    let state = wakedock::server::build_state(config).await?;
    wakedock::server::bootstrap_admin(&state.db, Some(PASSWORD.into())).await?;
    let db = state.db.clone();
    let t = Instant::now();
    fill(&db).await?;
    println!(
        "  {backend}: wrote {ENTRIES} audit entries in {}",
        ms(t.elapsed())
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wakedock::server::run(listener, state, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("token")?.to_string();
    let created: Value = http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(
            &json!({"username": "loaded", "password": "a-long-enough-password", "role": "viewer"}),
        )
        .send()
        .await?
        .json()
        .await?;
    let user = created["id"].as_str().context("user id")?.to_string();

    let sources = Sources {
        data_path: dir.path().join("data"),
        jwt_secret_in_config: true,
    };
    // Quiet backup: time and size.
    let out = dir.path().join("quiet.jsonl.gz");
    let s = backup::create(&db, &sources, &out).await?;
    let quiet = Duration::from_millis(s.duration_ms);
    println!(
        "  {backend}: backup of {} audit entries: {} , {:.1} MiB ({:.0} bytes/entry)",
        s.rows["audit_log"],
        ms(quiet),
        s.size_bytes as f64 / 1048576.0,
        s.size_bytes as f64 / s.rows["audit_log"] as f64
    );

    let start_load = || {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = tokio::spawn(load(
            http.clone(),
            base.clone(),
            token.clone(),
            user.clone(),
            stop.clone(),
        ));
        (stop, run)
    };
    // The load while a backup runs.
    let (stop, run) = start_load();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = dir.path().join("loaded.jsonl.gz");
    let t = Instant::now();
    let s = backup::create(&db, &sources, &out).await?;
    let during = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let loaded = run.await?;

    // Baseline: the load alone, for as long as that backup took (the
    // longest request of a window grows with the window).
    let (stop, run) = start_load();
    tokio::time::sleep(during + Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let alone = run.await?;
    println!(
        "  {backend}: longest request during a backup {} ({} requests, {} over {}; backup {}) vs {} without one ({} requests, {} over): {:.2}x  [target < {}]",
        ms(loaded.longest),
        loaded.n,
        loaded.over_target,
        ms(STALL_TARGET),
        ms(during),
        ms(alone.longest),
        alone.n,
        alone.over_target,
        loaded.longest.as_secs_f64() / alone.longest.as_secs_f64().max(1e-6),
        ms(STALL_TARGET),
    );
    let _ = tx.send(());
    let _ = server.await;

    // Restore into an empty database of the same backend.
    let (into, drop_dst) = database(backend, dir.path(), "dst")?;
    let t = Instant::now();
    let r = backup::restore(
        &out,
        &Target {
            database_url: into,
            data_path: dir.path().join("restored"),
        },
    )
    .await?;
    let restore = t.elapsed();
    println!(
        "  {backend}: restore of {} rows: {} (backup took {}: {:.2}x)",
        r.rows.values().sum::<u64>(),
        ms(restore),
        ms(Duration::from_millis(s.duration_ms)),
        restore.as_secs_f64() / (s.duration_ms as f64 / 1000.0).max(1e-6)
    );
    drop_database(drop_dst, backend);
    drop(db);
    drop_database(drop_src, backend);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut backends = vec!["sqlite"];
    if std::env::var("WAKEDOCK_TEST_PG_URL").is_ok() {
        backends.push("postgres");
    }
    if std::env::var("WAKEDOCK_TEST_MYSQL_URL").is_ok() {
        backends.push("mysql");
    }
    for b in backends {
        bench(b).await.with_context(|| format!("on {b}"))?;
    }
    Ok(())
}
