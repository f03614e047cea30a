//! UI benchmarks (issue 5), each against its target:
//!
//! 1. Page weight: HTML + CSS + JS transferred for the overview page,
//!    uncompressed (target < 100 KB), read from a real host.
//! 2. Server render time of the containers page with 100 containers
//!    (target p50 < 5 ms): the askama render of 100 synthetic rows, and the
//!    whole request against a real host with 100 real labelled containers
//!    (which adds the engine's list call, shown next to it as a baseline).
//!
//! Traffic goes to 127.0.0.1 only; the containers are created (not
//! started) from the test image, labelled `wakedock.test=true`, and
//! removed at the end.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use askama::Template;
use wakedock::docker::{ContainerSummary, PortMapping};
use wakedock::ui::containers::{ListPage, Row};
use wakedock::ui::Ctx;

const N: usize = 100;
const IMAGE: &str = "wakedock-testapp:latest";
const PASSWORD: &str = "bench-admin-password";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn synthetic(i: usize) -> ContainerSummary {
    let mut labels = BTreeMap::new();
    labels.insert("com.example.app".to_string(), format!("app-{i}"));
    if i.is_multiple_of(3) {
        labels.insert("wakedock.service".to_string(), format!("svc-{i}"));
    }
    ContainerSummary {
        id: format!("{i:064x}"),
        name: format!("container-{i:03}"),
        image: format!("registry.example/team/image-{i}:1.{i}"),
        state: if i.is_multiple_of(2) {
            "running"
        } else {
            "exited"
        }
        .into(),
        status: "Up 3 hours".into(),
        health: if i.is_multiple_of(5) {
            "healthy"
        } else {
            "none"
        }
        .into(),
        labels,
        ports: vec![PortMapping {
            private_port: 8080,
            public_port: Some(30000 + i as u16),
            ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        }],
        created: 1_700_000_000,
    }
}

fn render_bench() -> (Duration, Duration, usize) {
    let list: Vec<ContainerSummary> = (0..N).map(synthetic).collect();
    let ctx = Ctx {
        username: "admin".into(),
        role: "admin",
        can_operate: true,
        is_admin: true,
        csrf: "x".repeat(32),
        ..Ctx::anonymous("containers")
    };
    let mut times = Vec::with_capacity(500);
    let mut size = 0;
    for i in 0..550 {
        let start = Instant::now();
        let page = ListPage {
            ctx: ctx.clone(),
            rows: list.iter().map(|c| Row::new(c, None)).collect(),
            total: list.len(),
            q: String::new(),
            class: String::new(),
            back: "/containers".into(),
        };
        let html = page.render().expect("render");
        let t = start.elapsed();
        size = html.len();
        if i >= 50 {
            times.push(t);
        }
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), size)
}

struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for chunk in self.0.chunks(50) {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(chunk)
                .output();
        }
    }
}

fn create_containers(prefix: &str) -> anyhow::Result<Containers> {
    let mut made = Containers(Vec::new());
    for i in 0..N {
        let name = format!("{prefix}-{i:03}");
        let out = Command::new("docker")
            .args(["create", "--label", "wakedock.test=true", "--name", &name])
            .args(["--label", "wakedock.bench=ui", IMAGE])
            .output()
            .context("running docker")?;
        if !out.status.success() {
            bail!(
                "docker create {name}: {} (run scripts/build-test-images.sh)",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        made.0.push(name);
    }
    Ok(made)
}

async fn timed_get(http: &reqwest::Client, url: &str) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let r = http.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    let body = r.bytes().await?;
    Ok((start.elapsed(), body.len()))
}

/// `href="..."` and `src="..."` values under /assets/ in a page.
fn asset_urls(html: &str, attr: &str, ext: &str) -> Vec<String> {
    html.split(&format!("{attr}=\""))
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|u| u.starts_with("/assets/") && u.ends_with(ext))
        .map(str::to_string)
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    println!(
        "WakeDock UI benchmark, {} CPUs",
        std::thread::available_parallelism()?.get()
    );

    let (p50, p99, size) = render_bench();
    println!(
        "containers page, askama render of {N} rows (p50 / p99)   {} / {}   target p50 < 5 ms   ({} KiB of HTML)",
        ms(p50),
        ms(p99),
        size / 1024
    );

    // A real host on 127.0.0.1, SQLite in a temp dir.
    let dir = tempfile::tempdir()?;
    let mut config = wakedock::config::Config::default();
    config.wakedock.data_path = dir.path().join("data");
    config.wakedock.port = 0;
    config.security.rate_limit.api_per_ip_per_second = 100_000;
    config.security.rate_limit.api_burst = 100_000;
    let state = wakedock::server::build_state(config).await?;
    wakedock::server::bootstrap_admin(&state.db, Some(PASSWORD.into())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wakedock::server::run(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json_login())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login: {}", r.status());
    }

    // Page weight of the overview.
    let html = http.get(format!("{base}/")).send().await?.text().await?;
    let mut css = 0;
    for u in asset_urls(&html, "href", ".css") {
        css += timed_get(&http, &format!("{base}{u}")).await?.1;
    }
    let mut js = 0;
    for u in asset_urls(&html, "src", ".js") {
        js += timed_get(&http, &format!("{base}{u}")).await?.1;
    }
    let total = html.len() + css + js;
    println!(
        "overview page weight (HTML + CSS + JS, uncompressed)    {:.1} KB   target < 100 KB   (HTML {:.1} KB, CSS {:.1} KB, JS {:.1} KB)",
        total as f64 / 1000.0,
        html.len() as f64 / 1000.0,
        css as f64 / 1000.0,
        js as f64 / 1000.0
    );

    // The whole request with 100 real containers.
    let prefix = format!("wd-bench-ui-{}", std::process::id());
    let made = create_containers(&prefix)?;
    let url = format!("{base}/containers?q={prefix}");
    let api_url = format!("{base}/api/v1/containers?q={prefix}");
    let (mut page_t, mut api_t) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for i in 0..110 {
        let (t, len) = timed_get(&http, &url).await?;
        let (ta, _) = timed_get(&http, &api_url).await?;
        if i >= 10 {
            page_t.push(t);
            api_t.push(ta);
        }
        rows = len;
    }
    page_t.sort();
    api_t.sort();
    println!(
        "GET /containers, {N} real containers (p50 / p99)       {} / {}   ({} KiB; baseline GET /api/v1/containers, same list as JSON: {} / {})",
        ms(percentile(&page_t, 0.5)),
        ms(percentile(&page_t, 0.99)),
        rows / 1024,
        ms(percentile(&api_t, 0.5)),
        ms(percentile(&api_t, 0.99)),
    );
    drop(made);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}

fn serde_json_login() -> std::collections::HashMap<&'static str, &'static str> {
    [("username", "admin"), ("password", PASSWORD)]
        .into_iter()
        .collect()
}
