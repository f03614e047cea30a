//! Plugin runtime benchmark: `cargo run --release -p wakedock-bench-plugins`
//! (after `scripts/build-plugins.sh`).
//!
//! Measures, with the real runtime and in-memory capabilities:
//! 1. compile time of the example plugin and cached-load time;
//! 2. event dispatch into a live plugin that makes one host call (p50/p99),
//!    against a direct Rust call of the same host work;
//! 3. fresh-instance dispatch (instantiate + init + call, p50/p99), against
//!    instantiating an empty component in an empty store;
//! 4. RSS growth per loaded plugin with 100 plugins loaded.
//!
//! Every loop has a fixed count, so the run is bounded (a few seconds).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wakedock_plugin_runtime::caps::{
    ContainerEvent, ContainerEventKind, Event, Health, MetricKind, MetricsHost,
};
use wakedock_plugin_runtime::testing::TestHost;
use wakedock_plugin_runtime::{CacheOutcome, Grant, Manifest, PluginRuntime, RuntimeConfig};

const DISPATCH_ITERS: usize = 20_000;
const FRESH_ITERS: usize = 2_000;
const LOADED_PLUGINS: usize = 100;

fn wasm_path(name: &str) -> PathBuf {
    let suffix = Path::new("wasm32-wasip2").join("release");
    let dir = if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(d).join(&suffix)
    } else {
        std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.ancestors()
                    .skip(1)
                    .map(|d| d.join(&suffix))
                    .find(|d| d.is_dir())
            })
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target")
                    .join(&suffix)
            })
    };
    dir.join(format!("{name}.wasm"))
}

fn read_wasm(name: &str) -> Result<Vec<u8>> {
    let p = wasm_path(name);
    std::fs::read(&p).with_context(|| {
        format!(
            "reading {} (run scripts/build-plugins.sh first)",
            p.display()
        )
    })
}

fn example_manifest() -> Result<Manifest> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example/plugin.toml");
    Ok(Manifest::from_toml(&std::fs::read_to_string(&path)?)?)
}

fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb * 1024);
        }
    }
    bail!("no VmRSS in /proc/self/status")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(what: &str, value: String, target: &str, comparison: String) {
    println!("{what:<44} {value:>22}   target {target:<16} {comparison}");
}

fn container_event() -> Event {
    Event::Container(ContainerEvent {
        kind: ContainerEventKind::Started,
        container_id: "c1".into(),
        container_name: "web".into(),
        labels: vec![("wakedock.enable".into(), "true".into())],
        health: Health::Healthy,
        exit_code: None,
        at_ms: 0,
    })
}

fn named(mut m: Manifest, name: &str) -> Manifest {
    m.name = name.to_owned();
    m.tick_interval = None;
    m
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let wasm = read_wasm("wakedock_plugin_example")?;
    let manifest = example_manifest()?;
    let grant = Grant::approve_all(&manifest);
    let cache = tempfile::tempdir()?;
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..RuntimeConfig::default()
    };
    println!(
        "WakeDock plugin runtime benchmark — example plugin ({} KiB component), {} CPUs",
        wasm.len() / 1024,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();

    // 1. Compile vs cached load.
    let host = TestHost::new();
    let rt = PluginRuntime::new(config.clone(), host.capabilities())?;
    let first = rt
        .load(
            named(manifest.clone(), "compile"),
            &wasm,
            grant.clone(),
            serde_json::Value::Null,
        )
        .await?;
    assert_eq!(first.cache, CacheOutcome::Compiled);
    let mut cached = Vec::new();
    for i in 0..20 {
        let report = rt
            .load(
                named(manifest.clone(), &format!("cached-{i}")),
                &wasm,
                grant.clone(),
                serde_json::Value::Null,
            )
            .await?;
        assert_eq!(report.cache, CacheOutcome::Hit);
        cached.push(report.compile_time);
        rt.unload(&format!("cached-{i}"))?;
    }
    cached.sort();
    let cached_p50 = percentile(&cached, 0.5);
    row(
        "compile (Cranelift, cold cache)",
        format!("{:.1} ms", ms(first.compile_time)),
        "-",
        // No target: compiling happens once per component version (then the
        // cache serves it); the baseline is the cached load below.
        "once per component version, then cached".to_string(),
    );
    row(
        "cached load (artifact from disk), p50 of 20",
        format!("{:.2} ms", ms(cached_p50)),
        "< 5 ms",
        format!(
            "baseline compile: {:.0}x faster",
            first.compile_time.as_secs_f64() / cached_p50.as_secs_f64()
        ),
    );
    row(
        "load total: init of first instance",
        format!("{:.2} ms", ms(first.init_time)),
        "-",
        String::new(),
    );

    // 2. Warm dispatch: on-event → one `metrics.counter-add` host call.
    host.containers
        .add("c1", "web", true, &[("wakedock.enable", "true")]);
    rt.load(
        named(manifest.clone(), "warm"),
        &wasm,
        grant.clone(),
        serde_json::Value::Null,
    )
    .await?;
    let event = container_event();
    for _ in 0..1_000 {
        rt.send_event("warm", event.clone()).await?;
    }
    let mut samples = Vec::with_capacity(DISPATCH_ITERS);
    for _ in 0..DISPATCH_ITERS {
        let ev = event.clone();
        let t = Instant::now();
        rt.send_event("warm", ev).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    // Baseline: the same host work called directly from Rust.
    let metrics = host.metrics.clone();
    let labels = vec!["started".to_owned()];
    let mut direct = Vec::with_capacity(DISPATCH_ITERS);
    for _ in 0..DISPATCH_ITERS {
        let ev = std::hint::black_box(event.clone());
        let t = Instant::now();
        metrics.record(
            "warm",
            "container_events_total",
            MetricKind::Counter,
            &labels,
            1.0,
        )?;
        std::hint::black_box(ev);
        direct.push(t.elapsed());
    }
    direct.sort();
    let (p50, p99, d50) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&direct, 0.5),
    );
    row(
        "warm dispatch, 1 host call (p50 / p99)",
        format!("{:.2} / {:.2} µs", us(p50), us(p99)),
        "p50 < 5 µs",
        format!(
            "baseline direct Rust call {:.3} µs: {:.0}x",
            us(d50),
            us(p50) / us(d50).max(0.001)
        ),
    );

    // 3. Fresh instance per call: instantiate + init + on-event.
    let fresh_rt = PluginRuntime::new(
        RuntimeConfig {
            recycle_after_calls: 1,
            ..config.clone()
        },
        host.capabilities(),
    )?;
    fresh_rt
        .load(
            named(manifest.clone(), "fresh"),
            &wasm,
            grant.clone(),
            serde_json::Value::Null,
        )
        .await?;
    for _ in 0..100 {
        fresh_rt.send_event("fresh", event.clone()).await?;
    }
    let mut fresh = Vec::with_capacity(FRESH_ITERS);
    for _ in 0..FRESH_ITERS {
        let ev = event.clone();
        let t = Instant::now();
        fresh_rt.send_event("fresh", ev).await?;
        fresh.push(t.elapsed());
    }
    fresh.sort();
    // Baseline: an empty component instantiated in an empty store.
    let engine = fresh_rt.engine().clone();
    let empty = wasmtime::component::Component::new(
        &engine,
        [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00],
    )?;
    let linker: wasmtime::component::Linker<()> = wasmtime::component::Linker::new(&engine);
    let pre = linker.instantiate_pre(&empty)?;
    let mut base = Vec::with_capacity(FRESH_ITERS);
    for _ in 0..FRESH_ITERS {
        let t = Instant::now();
        let mut store = wasmtime::Store::new(&engine, ());
        let inst = pre.instantiate_async(&mut store).await?;
        std::hint::black_box(&inst);
        drop(store);
        base.push(t.elapsed());
    }
    base.sort();
    let (f50, f99, b50) = (
        percentile(&fresh, 0.5),
        percentile(&fresh, 0.99),
        percentile(&base, 0.5),
    );
    row(
        "fresh instance: instantiate+init+call (p50 / p99)",
        format!("{:.1} / {:.1} µs", us(f50), us(f99)),
        "< 50 µs",
        format!(
            "baseline empty instantiate {:.2} µs: {:.0}x",
            us(b50),
            us(f50) / us(b50).max(0.001)
        ),
    );

    // 4. RSS per loaded plugin (each with its compiled code and one warm
    // instance).
    drop(fresh_rt);
    let rss_rt = PluginRuntime::new(config.clone(), host.capabilities())?;
    rss_rt
        .load(
            named(manifest.clone(), "rss-warmup"),
            &wasm,
            grant.clone(),
            serde_json::Value::Null,
        )
        .await?;
    let before = rss_bytes()?;
    let t = Instant::now();
    for i in 0..LOADED_PLUGINS {
        rss_rt
            .load(
                named(manifest.clone(), &format!("rss-{i}")),
                &wasm,
                grant.clone(),
                serde_json::Value::Null,
            )
            .await?;
    }
    let load_all = t.elapsed();
    // Touch every plugin once so each has run a real call.
    for i in 0..LOADED_PLUGINS {
        rss_rt
            .send_event(&format!("rss-{i}"), event.clone())
            .await?;
    }
    let after = rss_bytes()?;
    let growth = after.saturating_sub(before);
    let per = growth / LOADED_PLUGINS as u64;
    row(
        &format!("RSS growth, {LOADED_PLUGINS} plugins loaded"),
        format!("{:.1} MiB", growth as f64 / (1 << 20) as f64),
        "< 100 MB",
        format!(
            "baseline process RSS {:.1} MiB; {:.2}x of target",
            before as f64 / (1 << 20) as f64,
            growth as f64 / 100e6
        ),
    );
    row(
        "RSS growth per plugin",
        format!("{:.0} KiB", per as f64 / 1024.0),
        "< 1 MB",
        format!(
            "({LOADED_PLUGINS} cached loads took {:.0} ms)",
            ms(load_all)
        ),
    );
    // Split: drop every idle instance (disable+enable) to see how much of
    // that is compiled code and runtime state vs. live instances.
    for i in 0..LOADED_PLUGINS {
        rss_rt.disable(&format!("rss-{i}"))?;
        rss_rt.enable(&format!("rss-{i}"))?;
    }
    let code_only = rss_bytes()?.saturating_sub(before);
    row(
        "  of which code + runtime state (no instances)",
        format!("{:.1} MiB", code_only as f64 / (1 << 20) as f64),
        "-",
        format!(
            "live instances: {:.0} KiB each",
            (growth.saturating_sub(code_only)) as f64 / 1024.0 / LOADED_PLUGINS as f64
        ),
    );
    Ok(())
}
