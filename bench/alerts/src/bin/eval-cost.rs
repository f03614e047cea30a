//! Alerts benchmark, evaluation cost (issue 12): the CPU the host and the
//! alerts plugin spend at steady state watching many containers with many
//! rules.
//!
//! `WD_BENCH_CONTAINERS` (default 500) running test containers of one
//! install; two hosts, one after the other, in this process (release
//! build), each with the alerts plugin:
//! - **baseline**: the plugin with no rules (it still follows every
//!   container's events and state);
//! - **rules**: 50 rules of every container kind (exit, OOM, restart loop,
//!   unhealthy, CPU and memory thresholds, which read every container's
//!   stats on each tick), with name, label and catch-all selectors, none
//!   firing.
//!
//! Each host is measured once the plugin knows every container and a
//! settling period has passed: this process's CPU time (user + system,
//! `/proc/self/stat`) over a 30 s window, as a percentage of one core. The
//! engine's own CPU (dockerd computing stats) is not the host's and is left
//! out. Bounded: container creation 10 at a time, each wait capped.
//! Traffic: 127.0.0.1 and the test containers only. Needs
//! `scripts/build-test-images.sh` and `scripts/build-plugins.sh` first.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use wakedock_tests::receiver::Receiver;
use wakedock_tests::{new_instance, wasm_dir, AppSpec, Backend, TestContainer, TestHost};

const RULES: usize = 50;
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(30);
const TARGET_PERCENT: f64 = 2.0;

/// This process's CPU time so far (user + system).
fn cpu_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // The kernel's USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// 50 rules over every container kind and selector shape; thresholds no
/// test container reaches, so nothing fires and nothing is sent.
fn rules(instance: &str) -> Vec<Value> {
    (0..RULES)
        .map(|i| {
            let selector = match i % 3 {
                0 => json!({}),
                1 => json!({"labels": [format!("wakedock.instance={instance}")]}),
                _ => json!({"names": ["wd-test-*"]}),
            };
            let mut r = match i % 6 {
                0 => json!({"kind": "exit"}),
                1 => json!({"kind": "oom"}),
                2 => json!({"kind": "restart-loop", "count": 5, "window": "10m"}),
                3 => json!({"kind": "unhealthy", "for": "30s"}),
                4 => json!({"kind": "cpu", "percent": 400, "for": "1m"}),
                _ => json!({"kind": "memory", "bytes": 1u64 << 40, "for": "1m"}),
            };
            r["name"] = json!(format!("rule-{i}"));
            r["selector"] = selector;
            r
        })
        .collect()
}

/// What one host did in the measuring window.
struct Window {
    /// CPU of this process, percent of one core.
    cpu_percent: f64,
    /// Stats requests the host sent the engine.
    stats_requests: u64,
    /// Plugin calls, and those that failed (a trap, a timeout).
    calls: u64,
    errors: u64,
}

/// The host's engine stats requests so far (its Prometheus counter).
async fn stats_requests(host: &TestHost) -> u64 {
    host.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("wakedock_docker_requests_total{op=\"stats\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The alerts plugin's calls and failed calls so far.
async fn plugin_calls(api: &wakedock_tests::ApiClient) -> (u64, u64) {
    let info = api.get_json("/api/v1/plugins/alerts").await;
    let n = |k: &str| info["status"][k].as_u64().unwrap_or(0);
    (n("calls"), n("errors"))
}

/// Starts a host with the alerts plugin configured with `rules`, waits
/// until the plugin knows all `n` containers and the settling time has
/// passed, and measures the window.
async fn measure(instance: &str, rx: &Receiver, rules: Vec<Value>, n: usize) -> Result<Window> {
    let decl: wakedock::config::PluginDecl = serde_json::from_value(json!({
        "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/alerts/plugin.toml"),
        "wasm": wasm_dir().join("wakedock_plugin_alerts.wasm"),
        "config": {
            "rules": rules,
            "channels": [{"name": "hook", "type": "webhook", "url": rx.url("/hook")}],
        },
    }))?;
    let inst = instance.to_owned();
    let host = TestHost::start_with(Backend::Sqlite, move |c| {
        c.wakedock.instance = Some(inst);
        c.logging.level = "warn".into();
        c.plugins.push(decl);
    })
    .await;
    let api = host.admin().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = api.get_json("/api/v1/plugins/alerts/containers").await;
        let running = list.as_array().map_or(0, |a| {
            a.iter()
                .filter(|c| c["status"]["status"] == "running")
                .count()
        });
        if running >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("the plugin knows {running} of {n} running containers after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let (stats0, (calls0, errors0)) = (stats_requests(&host).await, plugin_calls(&api).await);
    let (cpu0, t0) = (cpu_time()?, Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (cpu1, t1) = (cpu_time()?, Instant::now());
    let (stats1, (calls1, errors1)) = (stats_requests(&host).await, plugin_calls(&api).await);
    host.stop().await?;
    if !rx.delivered().is_empty() {
        bail!("a rule fired: the thresholds must be out of reach");
    }
    Ok(Window {
        cpu_percent: (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64() * 100.0,
        stats_requests: stats1 - stats0,
        calls: calls1 - calls0,
        errors: errors1 - errors0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let n: usize = std::env::var("WD_BENCH_CONTAINERS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("WD_BENCH_CONTAINERS")?
        .unwrap_or(500);
    let instance = new_instance();
    let started = Instant::now();
    let containers: Vec<TestContainer> = futures::stream::iter(0..n)
        .map(|_| {
            let instance = instance.clone();
            async move {
                TestContainer::from_spec(AppSpec {
                    instance: Some(&instance),
                    start: true,
                    ..AppSpec::default()
                })
                .await
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    eprintln!(
        "{} containers running in {:.1} s",
        containers.len(),
        started.elapsed().as_secs_f64()
    );
    let rx = Receiver::start().await;
    let base = measure(&instance, &rx, Vec::new(), n).await?;
    let with = measure(&instance, &rx, rules(&instance), n).await?;
    // The figure counts only if the rules did their work: every plugin
    // call succeeded (a stats round that outlasts a call's time limit
    // fails it) and every running container was sampled during the window
    // (the host refreshes a sample every 5 s: about 6 per container).
    for (what, w) in [("baseline", &base), ("rules", &with)] {
        if w.errors > 0 {
            bail!(
                "{what}: {} of {} plugin calls failed in the window",
                w.errors,
                w.calls
            );
        }
    }
    if with.stats_requests < n as u64 {
        bail!(
            "rules: {} stats requests for {n} containers in {WINDOW:?}: not every container was sampled",
            with.stats_requests
        );
    }
    println!("alerts: evaluation cost at steady state, {n} running containers, CPU of host + plugin ({WINDOW:?} window)");
    println!(
        "  baseline: the plugin with no rules              {:.2} % of one core   ({} plugin calls, none failed)",
        base.cpu_percent, base.calls
    );
    println!(
        "  {RULES} rules (every container kind, stats read each tick)   {:.2} % of one core   target < {TARGET_PERCENT} %   {:.2}x the baseline",
        with.cpu_percent,
        if base.cpu_percent > 0.0 { with.cpu_percent / base.cpu_percent } else { f64::NAN }
    );
    println!(
        "    {} plugin calls, none failed; {} engine stats requests ({:.1} per container)",
        with.calls,
        with.stats_requests,
        with.stats_requests as f64 / n as f64
    );
    // Removed concurrently (each `docker rm -f` is one process).
    let mut removals = tokio::task::JoinSet::new();
    for c in containers {
        removals.spawn_blocking(move || drop(c));
        while removals.len() >= 10 {
            removals.join_next().await;
        }
    }
    while removals.join_next().await.is_some() {}
    Ok(())
}
