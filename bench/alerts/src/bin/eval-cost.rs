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

/// Starts a host with the alerts plugin configured with `rules`, waits
/// until the plugin knows all `n` containers and the settling time has
/// passed, and gives the CPU percentage of one core over the window.
async fn measure(instance: &str, rx: &Receiver, rules: Vec<Value>, n: usize) -> Result<f64> {
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
    let (cpu0, t0) = (cpu_time()?, Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (cpu1, t1) = (cpu_time()?, Instant::now());
    host.stop().await?;
    if !rx.delivered().is_empty() {
        bail!("a rule fired: the thresholds must be out of reach");
    }
    Ok((cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64() * 100.0)
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
    println!("alerts: evaluation cost at steady state, {n} running containers, CPU of host + plugin ({WINDOW:?} window)");
    println!("  baseline: the plugin with no rules              {base:.2} % of one core");
    println!(
        "  {RULES} rules (every container kind, stats read each tick)   {with:.2} % of one core   target < {TARGET_PERCENT} %   {:.2}x the baseline",
        if base > 0.0 { with / base } else { f64::NAN }
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
