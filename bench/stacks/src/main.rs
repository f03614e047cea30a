//! Compose stacks benchmarks (issue 11), each against a baseline measured in
//! the same run:
//!
//! 1. Deploy and update of one stack through WakeDock (the stacks plugin's
//!    API, `?wait`: the plugin, the host's `compose` capability, the real
//!    `docker compose` CLI) against `docker compose up -d` run directly on
//!    an identical stack in another folder. Target: ratio ≤ 1.10.
//!    "Update" is an `up` after one service's configuration changed (only
//!    that service is recreated).
//! 2. The stacks list page with 50 stacks: its render (the plugin's
//!    `render::list_page` from 50 stacks of two containers each, natively;
//!    target p50 < 10 ms), and the whole request (`GET /p/stacks/`:
//!    session, the plugin call with its one container listing, HTML
//!    allowlist, layout) with 50 stacks whose containers exist, beside the
//!    host's own containers page for the same containers as a baseline
//!    (both are dominated by the engine's container listing).
//!
//! Traffic goes to 127.0.0.1 only. Every container and network is labelled
//! `wakedock.test=true` and removed at the end.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wakedock_tests::*;

const API: &str = "/api/v1/plugins/stacks";
const ROUNDS: usize = 5;
const LIST_STACKS: usize = 50;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn compose_file(instance: &str, app_name: &str) -> String {
    let l = format!("      wakedock.test: \"true\"\n      {INSTANCE_LABEL}: \"{instance}\"\n");
    format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    environment:\n      APP_NAME: {app_name}\n    labels:\n{l}  worker:\n    image: {TEST_IMAGE}\n    labels:\n{l}networks:\n  default:\n    labels:\n      wakedock.test: \"true\"\n"
    )
}

fn compose_cli(dir: &Path, project: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = Command::new("docker")
        .arg("compose")
        .args(["--ansi", "never", "--progress", "plain", "-p", project])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running docker compose")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "docker compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

async fn wakedock_action(admin: &ApiClient, name: &str, verb: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let r = admin
        .post_empty(&format!("{API}/stacks/{name}/{verb}?wait=110000"))
        .await;
    let took = start.elapsed();
    let body: Value = r.json().await?;
    if body["state"] != "succeeded" {
        bail!("{verb} {name}: {body}");
    }
    Ok(took)
}

async fn save(admin: &ApiClient, name: &str, compose: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let r = admin
        .request(reqwest::Method::PUT, &format!("{API}/stacks/{name}"))
        .json(&json!({"compose": compose, "env": ""}))
        .send()
        .await?;
    let took = start.elapsed();
    if !r.status().is_success() {
        bail!("saving {name}: {}", r.text().await?);
    }
    Ok(took)
}

/// Deploy and update, WakeDock against Compose directly, alternating.
async fn deploy_and_update(host: &TestHost, admin: &ApiClient) -> anyhow::Result<()> {
    let ours = ComposeProject::new("wd-bench-ours");
    let direct = ComposeProject::new("wd-bench-direct");
    let r = admin
        .post(
            &format!("{API}/stacks"),
            json!({"name": ours.0, "compose": compose_file(host.instance(), "v0")}),
        )
        .await;
    if r.status() != reqwest::StatusCode::CREATED {
        bail!("creating the stack: {}", r.text().await?);
    }
    let direct_dir = host.data_path().join("direct").join(&direct.0);
    std::fs::create_dir_all(&direct_dir)?;
    let (mut d_ours, mut d_direct, mut u_ours, mut u_direct, mut saves) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        std::fs::write(
            direct_dir.join("compose.yaml"),
            compose_file(host.instance(), "v0"),
        )?;
        saves.push(save(admin, &ours.0, &compose_file(host.instance(), "v0")).await?);
        // Deploy from nothing.
        d_direct.push(compose_cli(
            &direct_dir,
            &direct.0,
            &["up", "-d", "--remove-orphans"],
        )?);
        d_ours.push(wakedock_action(admin, &ours.0, "deploy").await?);
        // One service changed: only it is recreated.
        let changed = compose_file(host.instance(), &format!("v{}", round + 1));
        std::fs::write(direct_dir.join("compose.yaml"), &changed)?;
        saves.push(save(admin, &ours.0, &changed).await?);
        u_ours.push(wakedock_action(admin, &ours.0, "deploy").await?);
        u_direct.push(compose_cli(
            &direct_dir,
            &direct.0,
            &["up", "-d", "--remove-orphans"],
        )?);
        compose_cli(&direct_dir, &direct.0, &["down"])?;
        wakedock_action(admin, &ours.0, "down").await?;
    }
    let (dw, dd, uw, ud) = (
        median(d_ours),
        median(d_direct),
        median(u_ours),
        median(u_direct),
    );
    println!(
        "deploy (2 services, from nothing), median of {ROUNDS}   WakeDock {}   docker compose up -d {}   ratio {:.2}x   target <= 1.10x",
        ms(dw),
        ms(dd),
        dw.as_secs_f64() / dd.as_secs_f64()
    );
    println!(
        "update (1 of 2 services changed), median of {ROUNDS}    WakeDock {}   docker compose up -d {}   ratio {:.2}x   target <= 1.10x",
        ms(uw),
        ms(ud),
        uw.as_secs_f64() / ud.as_secs_f64()
    );
    println!(
        "saving a compose file (checks + docker compose config), median   {}   (before a deploy; no engine work)",
        ms(median(saves))
    );
    Ok(())
}

/// The list page's render from 50 stacks of two containers each.
fn render_bench() -> (Duration, Duration, usize) {
    use std::collections::BTreeMap;
    use wakedock_plugin_stacks::model::{self, labels, Member};
    use wakedock_plugin_stacks::render::{self, Can};
    let stacks: Vec<_> = (0..LIST_STACKS)
        .map(|i| {
            let name = format!("stack-{i:02}");
            let members: Vec<Member> = ["app", "worker"]
                .iter()
                .map(|svc| Member {
                    id: format!("{i:060}{svc:>4}"),
                    name: format!("{name}-{svc}-1"),
                    service: (*svc).to_owned(),
                    image: format!("registry.example/team/{svc}:1.{i}"),
                    state: if i % 3 == 0 { "exited" } else { "running" }.to_owned(),
                    labels: BTreeMap::from([
                        (labels::PROJECT.to_owned(), name.clone()),
                        (labels::SERVICE.to_owned(), (*svc).to_owned()),
                        (
                            labels::WORKING_DIR.to_owned(),
                            format!("/srv/stacks/{name}"),
                        ),
                    ]),
                    ..Member::default()
                })
                .collect();
            model::stack(&name, Some("compose.yaml".into()), true, members, false)
        })
        .collect();
    let can = Can {
        operate: true,
        admin: true,
    };
    let mut times = Vec::new();
    let mut size = 0;
    for i in 0..550 {
        let start = Instant::now();
        let html = render::list_page("/p/stacks", &stacks, &[], &[], can);
        let t = start.elapsed();
        size = html.len();
        if i >= 50 {
            times.push(t);
        }
    }
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100], size)
}

/// 50 stack folders whose containers exist (created, not started).
async fn list_page(host: &TestHost) -> anyhow::Result<()> {
    let mut projects = Vec::new();
    let root = host.data_path().join("stacks");
    for i in 0..LIST_STACKS {
        let p = ComposeProject::new(&format!("wd-bench-list{i:02}"));
        let dir = root.join(&p.0);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("compose.yaml"),
            compose_file(host.instance(), "list"),
        )?;
        for svc in ["app", "worker"] {
            let out = Command::new("docker")
                .args(["create", "--name", &format!("{}-{svc}-1", p.0)])
                .args(["--label", "wakedock.test=true"])
                .args(["--label", &format!("com.docker.compose.project={}", p.0)])
                .args(["--label", &format!("com.docker.compose.service={svc}")])
                .args([
                    "--label",
                    &format!("com.docker.compose.project.working_dir={}", dir.display()),
                ])
                .arg(TEST_IMAGE)
                .output()?;
            if !out.status.success() {
                bail!("docker create: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        projects.push(p);
    }
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .no_proxy()
        .build()?;
    let r = http
        .post(host.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login: {}", r.status());
    }
    let timed = |url: String| {
        let http = http.clone();
        async move {
            let start = Instant::now();
            let r = http.get(&url).send().await?;
            let status = r.status();
            let body = r.text().await?;
            if !status.is_success() {
                bail!("GET {url}: {status}");
            }
            anyhow::Ok((start.elapsed(), body))
        }
    };
    let (_, first) = timed(host.url("/p/stacks/")).await?;
    let shown = projects.iter().filter(|p| first.contains(&p.0)).count();
    if shown != LIST_STACKS {
        bail!("the list shows {shown} of {LIST_STACKS} stacks");
    }
    let (mut page, mut api, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..220 {
        let p = timed(host.url("/p/stacks/")).await?.0;
        let a = timed(host.url(&format!("{API}/stacks"))).await?.0;
        let b = timed(host.url("/containers?q=wd-bench-list")).await?.0;
        if i >= 20 {
            page.push(p);
            api.push(a);
            baseline.push(b);
        }
    }
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() as f64 * 0.99) as usize - 1]
    };
    println!(
        "GET /p/stacks/ with {LIST_STACKS} stacks, whole request (p50 / p99)   {} / {}   (JSON list {} p50; baseline: the host's containers page for their {} containers {} p50)",
        ms(median(page.clone())),
        ms(p99(page)),
        ms(median(api)),
        LIST_STACKS * 2,
        ms(median(baseline)),
    );
    drop(projects);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let version = Command::new("docker")
        .args(["compose", "version", "--short"])
        .output()?;
    println!(
        "WakeDock stacks benchmark, {} CPUs, Docker Compose {}",
        std::thread::available_parallelism()?.get(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let (p50, p99, size) = render_bench();
    println!(
        "stacks list page, render of {LIST_STACKS} stacks (p50 / p99)   {:.3} ms / {:.3} ms   target p50 < 10 ms   ({} KiB of HTML)",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        size / 1024
    );
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.plugins.push(
            serde_json::from_value(json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/stacks/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_stacks.wasm"),
            }))
            .expect("plugin declaration"),
        );
    })
    .await;
    let admin = host.admin().await;
    deploy_and_update(&host, &admin).await?;
    list_page(&host).await?;
    host.stop().await?;
    Ok(())
}
