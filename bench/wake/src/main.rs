//! Wake-on-request benchmarks (issue 4), through a real Caddy built with
//! our module and a release `wakedock serve` in its own process:
//!
//! - **cold wake**: first byte through Caddy + WakeDock for a sleeping
//!   service, against the floor measured in the same run on the same
//!   container: Docker API start until the app answers; for an app
//!   without and one with a Docker healthcheck (interval 1 s); for the
//!   latter also the floor of the check itself, one exec of its command in
//!   the running app (a wake that keeps the meaning of "healthy" runs it
//!   at least once after the app listens);
//! - **awake path**: throughput and p50/p99 latency through Caddy +
//!   `wakedock` against plain `reverse_proxy` to the same upstream,
//!   alternating rounds, bounded in time and count;
//! - **herd**: 1,000 concurrent requests to a sleeping service: starts,
//!   errors, the host's RSS while it holds them;
//! - **memory after the storm**: the host's RSS once the storm has settled
//!   (the plugin runtime's idle-instance TTL has passed and the wake
//!   plugin is back to one live instance), against the same host's RSS
//!   right after start, measured in the same run (issue 9: under 40 MiB).
//!
//! Traffic goes to 127.0.0.1 and to the test container only. Needs
//! `scripts/build-test-images.sh`, `scripts/build-plugins.sh`,
//! `scripts/build-caddy.sh` and `cargo build --release -p wakedock` first
//! (`bench/run.sh` does all of that).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use wakedock_tests::caddy::{Caddy, Site};
use wakedock_tests::{
    docker, free_port, new_instance, rss_kib, starts_since, target_dir, unix_secs, wasm_dir,
    AppSpec, TestContainer,
};

const TOKEN: &str = "bench-bridge-token-0123456789";
const PASSWORD: &str = "bench-admin-password";
const SERVICE: &str = "bench";
/// The same app with a Docker healthcheck.
const HC_SERVICE: &str = "bench-hc";
const COLD_ROUNDS: usize = 15;
/// Rounds per side, interleaved A B B A A B... so a drift in the machine's
/// load hits both sides alike.
const AWAKE_ROUNDS: usize = 6;
const AWAKE_ROUND: Duration = Duration::from_secs(2);
const AWAKE_MAX_REQUESTS: usize = 200_000;
const AWAKE_CONNECTIONS: usize = 32;
const HERD: usize = 1000;
/// Issue 9's target for the host's RSS after the storm.
const SETTLED_RSS_TARGET_MIB: f64 = 40.0;
/// How long the storm may take to settle: the plugin runtime's idle
/// instance TTL (30 s, `RuntimeConfig::idle_instance_ttl`) plus a margin
/// for a busy machine. A bound on the wait, not a duration waited.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// A release `wakedock serve` with the wake plugin and one service.
struct Host {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Host {
    /// With the default rate limits (bridge traffic has its own budget),
    /// and its own install scope (`instance`): the benchmark's host never
    /// adopts containers of tests or other hosts on the same engine.
    async fn start(member: &str, hc_member: &str, instance: &str) -> Result<Host> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = json!({
            "wakedock": {"data_path": dir.path().join("data"), "port": port, "instance": instance},
            "logging": {"level": "warn"},
            "security": {
                "bridge_tokens": [TOKEN],
            },
            "plugins": [{
                "manifest": root.join("plugins/wake/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
            }],
            "services": [
                {"name": SERVICE, "members": [member], "idle_timeout": "30m"},
                {"name": HC_SERVICE, "members": [hc_member], "idle_timeout": "30m"},
            ],
        });
        let file = dir.path().join("wakedock.yaml");
        std::fs::write(&file, serde_json::to_string_pretty(&config)?)?;
        Host::spawn(dir).await
    }

    /// Stops the host and starts it again on the same data: the way a
    /// host runs after its first start, with its plugins' compiled code
    /// loaded from the compile cache (as `bench/idle-rss.sh` measures it).
    async fn restart(mut self) -> Result<Host> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir()?);
        Host::spawn(dir).await
    }

    async fn spawn(dir: tempfile::TempDir) -> Result<Host> {
        let file = dir.path().join("wakedock.yaml");
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        let port = config["wakedock"]["port"].as_u64().context("port")?;
        let bin = target_dir().join("release/wakedock");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .env("WAKEDOCK_ADMIN_PASSWORD", PASSWORD)
            // As the image and scripts/run.sh run it (why: deploy/Dockerfile);
            // a value in the bench's own environment is passed on instead.
            .env(
                "MALLOC_MMAP_THRESHOLD_",
                std::env::var("MALLOC_MMAP_THRESHOLD_").unwrap_or_else(|_| "131072".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} (cargo build --release -p wakedock)",
                    bin.display()
                )
            })?;
        let host = Host {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/health", host.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(host);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the host did not become healthy within 10 s")
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The wake plugin's live instances, from the plugins API.
    async fn wake_instances(&self, token: &str) -> Result<u64> {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/plugins/wake", self.base))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        v["status"]["live_instances"]
            .as_u64()
            .context("status.live_instances of the wake plugin")
    }

    async fn token(&self) -> Result<String> {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        Ok(v["access_token"].as_str().context("token")?.to_owned())
    }

    /// Puts the service to sleep and waits until the bridge can have seen
    /// it (the state is pushed over its subscription at once).
    async fn sleep(&self, token: &str, service: &str) -> Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/services/{service}/sleep", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("sleep: {} {}", r.status(), r.text().await?);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// GETs `url` until it answers 200; the time that took.
async fn until_ok(http: &reqwest::Client, url: &str, limit: Duration) -> Result<Duration> {
    let t = Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                let _ = r.bytes().await;
                return Ok(t.elapsed());
            }
        }
        if t.elapsed() > limit {
            bail!("{url} did not answer within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// One sleeping service behind one site, and the app's own address.
struct Cold<'a> {
    what: &'a str,
    service: &'a str,
    site: &'a str,
    app: &'a TestContainer,
    direct: &'a str,
    target_ms: f64,
    /// The app's Docker healthcheck command: its own exec round trip is
    /// measured too, as a second floor (a wake that keeps the meaning of
    /// "healthy" runs it at least once after the app listens).
    healthcheck: Option<&'a [&'a str]>,
}

/// One run of `cmd` by exec in a running container, as the host's wake
/// runs a healthcheck: create, start attached until it ends, inspect.
async fn exec_round_trip(d: &bollard::Docker, container: &str, cmd: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let exec = d
        .create_exec(
            container,
            bollard::models::ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        d.start_exec(&exec.id, None).await?
    {
        use futures::StreamExt;
        while output.next().await.is_some() {}
    }
    let info = d.inspect_exec(&exec.id).await?;
    if info.exit_code != Some(0) {
        bail!("the healthcheck {cmd:?} failed in a running, answering app: {info:?}");
    }
    Ok(t.elapsed())
}

async fn cold_wake(host: &Host, case: Cold<'_>) -> Result<()> {
    let Cold {
        what,
        service,
        site,
        app,
        direct,
        target_ms,
        healthcheck,
    } = case;
    let token = host.token().await?;
    let d = docker().await;
    let http = fresh_client();
    let (mut floors, mut colds, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    let mut execs = Vec::new();
    for _ in 0..COLD_ROUNDS {
        host.sleep(&token, service).await?;
        let t = Instant::now();
        d.start_container(
            &app.name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await?;
        until_ok(&http, direct, Duration::from_secs(30)).await?;
        let floor = t.elapsed();
        if let Some(cmd) = healthcheck {
            execs.push(exec_round_trip(&d, &app.name, cmd).await?.as_secs_f64() * 1e3);
        }
        host.sleep(&token, service).await?;
        let cold = until_ok(&http, site, Duration::from_secs(30)).await?;
        floors.push(floor.as_secs_f64() * 1e3);
        colds.push(cold.as_secs_f64() * 1e3);
        overheads.push((cold.as_secs_f64() - floor.as_secs_f64()) * 1e3);
    }
    let (f, c, o) = (sorted(floors), sorted(colds), sorted(overheads));
    println!(
        "cold wake, {what}, first byte through Caddy (p50 / p90 of {COLD_ROUNDS})   {:7.1} / {:7.1} ms",
        percentile(&c, 0.5),
        percentile(&c, 0.9)
    );
    println!(
        "  baseline: Docker API start until the app answers       {:7.1} / {:7.1} ms",
        percentile(&f, 0.5),
        percentile(&f, 0.9)
    );
    println!(
        "  overhead over the floor, paired (p50 / p90)            {:7.1} / {:7.1} ms   target p50 < {target_ms} ms   ratio {:.2}x",
        percentile(&o, 0.5),
        percentile(&o, 0.9),
        percentile(&c, 0.5) / percentile(&f, 0.5)
    );
    if healthcheck.is_some() {
        let e = sorted(execs);
        println!(
            "  floor of the check itself: one exec of the healthcheck in the answering app   {:7.1} / {:7.1} ms   overhead beyond it p50 {:.1} ms",
            percentile(&e, 0.5),
            percentile(&e, 0.9),
            percentile(&o, 0.5) - percentile(&e, 0.5)
        );
    }
    Ok(())
}

struct Load {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

/// `AWAKE_CONNECTIONS` keep-alive workers GET `url` for `AWAKE_ROUND` (at
/// most `AWAKE_MAX_REQUESTS` in all).
async fn load(url: &str) -> Load {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(AWAKE_CONNECTIONS)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let start = Instant::now();
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(AWAKE_MAX_REQUESTS));
    let workers = (0..AWAKE_CONNECTIONS).map(|_| {
        let http = http.clone();
        let url = url.to_owned();
        let budget = budget.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while start.elapsed() < AWAKE_ROUND
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    )
                    .is_ok()
            {
                let t = Instant::now();
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        })
    });
    let mut out = Load {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_ms: Vec::new(),
    };
    for w in futures::future::join_all(workers).await {
        let (lat, errors) = w.expect("worker");
        out.requests += lat.len();
        out.errors += errors;
        out.latencies_ms.extend(lat);
    }
    out.elapsed = start.elapsed();
    out
}

async fn awake_path(caddy: &Caddy) -> Result<()> {
    // Wake it first; then only the hot path is measured.
    until_ok(&fresh_client(), &caddy.sites[0], Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut with, mut plain) = (Vec::new(), Vec::new());
    for i in 0..AWAKE_ROUNDS {
        if i % 2 == 0 {
            plain.push(load(&caddy.sites[1]).await);
            with.push(load(&caddy.sites[0]).await);
        } else {
            with.push(load(&caddy.sites[0]).await);
            plain.push(load(&caddy.sites[1]).await);
        }
    }
    let summary = |runs: &[Load]| {
        let reqs: usize = runs.iter().map(|r| r.requests).sum();
        let errs: usize = runs.iter().map(|r| r.errors).sum();
        let secs: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let lat = sorted(runs.iter().flat_map(|r| r.latencies_ms.clone()).collect());
        (
            reqs as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            errs,
        )
    };
    let (w_rps, w_p50, w_p99, w_err) = summary(&with);
    let (p_rps, p_p50, p_p99, p_err) = summary(&plain);
    println!(
        "awake path, Caddy + wakedock ({AWAKE_CONNECTIONS} conns, {AWAKE_ROUNDS}x{}s)     {w_rps:8.0} req/s   p50 {w_p50:.3} ms   p99 {w_p99:.3} ms   errors {w_err}",
        AWAKE_ROUND.as_secs()
    );
    println!(
        "  baseline: plain Caddy reverse_proxy, same upstream   {p_rps:8.0} req/s   p50 {p_p50:.3} ms   p99 {p_p99:.3} ms   errors {p_err}"
    );
    println!(
        "  ratio: throughput {:.3}x (target >= 0.95)   p50 {:.3}x (target <= 1.05)   p99 {:.3}x",
        w_rps / p_rps,
        w_p50 / p_p50,
        w_p99 / p_p99
    );
    Ok(())
}

async fn herd(host: &Host, caddy: &Caddy, app: &TestContainer) -> Result<()> {
    let token = host.token().await?;
    host.sleep(&token, SERVICE).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = host.rss_kib();
    let since = unix_secs();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(HERD)
        .timeout(Duration::from_secs(60))
        .build()?;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(idle_rss));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = host.child.id();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let t = Instant::now();
    let reqs = (0..HERD).map(|_| {
        let http = http.clone();
        let url = caddy.sites[0].clone();
        tokio::spawn(async move {
            match http.get(&url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(reqs)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .collect();
    let elapsed = t.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let starts = starts_since(&app.name, since);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "herd: {HERD} concurrent requests to a sleeping service   {ok} x 200, {} errors, {starts} start(s), all answered in {:.0} ms   target: 1 start, 0 errors",
        HERD - ok,
        elapsed.as_secs_f64() * 1e3
    );
    println!(
        "  host RSS while holding them (peak)                     {:7.1} MiB   baseline idle {:.1} MiB: {:.2}x",
        peak as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        peak as f64 / idle_rss.max(1) as f64
    );
    Ok(())
}

/// The host's RSS once the wake storm has settled: waits (bounded by
/// `SETTLE_LIMIT`) until the wake plugin is back to one live instance,
/// which the runtime reaches once its idle-instance TTL has passed, then
/// until RSS stops falling (two samples a second apart within 1%).
async fn settled_memory(host: &Host, started_rss: u64, first_start_rss: u64) -> Result<()> {
    let token = host.token().await?;
    let t = Instant::now();
    let peak_instances = host.wake_instances(&token).await?;
    loop {
        let live = host.wake_instances(&token).await?;
        if live <= 1 {
            break;
        }
        if t.elapsed() > SETTLE_LIMIT {
            bail!("the wake plugin still had {live} live instances after {SETTLE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut rss = host.rss_kib();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = host.rss_kib();
        let steady = now.abs_diff(rss) * 100 <= rss;
        rss = now;
        if steady || t.elapsed() > SETTLE_LIMIT {
            break;
        }
    }
    let mib = rss as f64 / 1024.0;
    println!(
        "host RSS after the storm settled (wake plugin {peak_instances} -> 1 live instance, {:.0} s)   {mib:7.1} MiB   target < {SETTLED_RSS_TARGET_MIB} MiB",
        t.elapsed().as_secs_f64()
    );
    println!(
        "  baseline: the same host right after start (1 instance)   {:7.1} MiB: {:.2}x",
        started_rss as f64 / 1024.0,
        rss as f64 / started_rss.max(1) as f64
    );
    println!(
        "  (its first start, which compiled the plugin: {:.1} MiB)",
        first_start_rss as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let port = free_port();
    let instance = new_instance();
    let app = TestContainer::from_spec(AppSpec {
        host_port: Some(port),
        instance: Some(&instance),
        ..AppSpec::default()
    })
    .await;
    let hc_port = free_port();
    let hc_app = TestContainer::from_spec(AppSpec {
        host_port: Some(hc_port),
        healthcheck: Some(Duration::from_secs(1)),
        instance: Some(&instance),
        ..AppSpec::default()
    })
    .await;
    // The first start compiles the wake plugin (Cranelift); the measured
    // host is the second start, which loads it from the compile cache.
    let first = Host::start(&app.name, &hc_app.name, &instance).await?;
    let first_start_rss = first.rss_kib();
    let host = first.restart().await?;
    let site = |service: &str, port: u16| Site {
        service: service.into(),
        upstream: format!("127.0.0.1:{port}"),
        extra: vec![],
    };
    let caddy = Caddy::start(
        &host.base,
        TOKEN,
        vec![
            site(SERVICE, port),
            site("", port),
            site(HC_SERVICE, hc_port),
        ],
    )
    .await;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("WakeDock wake-on-request benchmark — release host, Caddy with the wakedock module, {cpus} CPUs");
    tokio::time::sleep(Duration::from_secs(2)).await; // first tick publishes states
    let started_rss = host.rss_kib();
    let direct = format!("http://127.0.0.1:{port}/");
    cold_wake(
        &host,
        Cold {
            what: "no healthcheck",
            service: SERVICE,
            site: &caddy.sites[0],
            app: &app,
            direct: &direct,
            target_ms: 10.0,
            healthcheck: None,
        },
    )
    .await?;
    let hc_direct = format!("http://127.0.0.1:{hc_port}/");
    cold_wake(
        &host,
        Cold {
            what: "Docker healthcheck every 1 s",
            service: HC_SERVICE,
            site: &caddy.sites[2],
            app: &hc_app,
            direct: &hc_direct,
            target_ms: 20.0,
            healthcheck: Some(&["/testapp", "healthcheck"]),
        },
    )
    .await?;
    awake_path(&caddy).await?;
    herd(&host, &caddy, &app).await?;
    settled_memory(&host, started_rss, first_start_rss).await?;
    Ok(())
}
