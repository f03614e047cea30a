//! Deployment benchmarks (issue 13), on the shipped `deploy/compose.yaml`
//! with the images of `scripts/build-images.sh` (tag `WD_IMAGE_TAG`,
//! default `latest`: the release images), run by Compose v2 when present
//! (`WD_COMPOSE` or the `docker compose` plugin), else the equivalent docker
//! commands (tests/src/deploy.rs). Each figure prints its baseline from
//! the same run:
//!
//! - image sizes (baseline: the test app image, a static 0.7 MB binary);
//! - up to healthy with the image's own HEALTHCHECK timing, and to the
//!   first `/health` 200 (baseline: `docker run` of the test app until it
//!   answers, the floor of starting any container);
//! - idle RSS of the WakeDock and Caddy processes with 20 labelled
//!   containers routed (baseline: the same stack with none);
//! - a labelled container's creation until Caddy answers for its host
//!   name (baseline: the same container answering on its own address).
//!
//! Traffic goes to 127.0.0.1 and to the containers started here only;
//! every loop is bounded in count and time.

use std::process::Command;
use std::time::{Duration, Instant};

use wakedock_tests::deploy::{docker, image_tag, LabelledApp, Runner, Stack};
use wakedock_tests::rss_kib;

const ROUTE_ROUNDS: usize = 10;
const IDLE_CONTAINERS: usize = 20;
const ROUND_LIMIT: Duration = Duration::from_secs(15);

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn image_size(image: &str) -> u64 {
    docker(&["image", "inspect", "-f", "{{.Size}}", image])
        .trim()
        .parse()
        .unwrap_or(0)
}

fn pid_of(container: &str) -> u32 {
    docker(&["inspect", "-f", "{{.State.Pid}}", container])
        .trim()
        .parse()
        .unwrap_or(0)
}

fn ip_of(container: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ])
    .trim()
    .to_owned()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

async fn answers(c: &reqwest::Client, url: &str) -> bool {
    matches!(c.get(url).send().await, Ok(r) if r.status().is_success())
}

/// Polls `url` every 5 ms from `start` until it answers 200 (bounded).
async fn until_answers(c: &reqwest::Client, url: &str, start: Instant) -> Duration {
    while start.elapsed() < ROUND_LIMIT {
        if answers(c, url).await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{url} did not answer within {ROUND_LIMIT:?}");
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

#[tokio::main]
async fn main() {
    std::env::set_var(
        "WD_IMAGE_TAG",
        std::env::var("WD_IMAGE_TAG").unwrap_or("latest".into()),
    );
    let tag = image_tag();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let runner = Runner::detect();
    println!(
        "WakeDock deployment benchmark, images :{tag}, {cpus} CPUs, {}",
        runner.describe()
    );

    // Image sizes.
    let base = image_size(wakedock_tests::TEST_IMAGE);
    for image in [format!("wakedock:{tag}"), format!("wakedock-caddy:{tag}")] {
        let size = image_size(&image);
        println!(
            "image size {image:<28} {:>9}   (baseline {}: {}, {:.0}x)",
            mb(size),
            wakedock_tests::TEST_IMAGE,
            mb(base),
            size as f64 / base.max(1) as f64
        );
    }

    // Baseline: starting any container until it answers.
    let floor = {
        let name = wakedock_tests::unique("wd-bench-floor");
        let start = Instant::now();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "-l",
            "wakedock.test=true",
            wakedock_tests::TEST_IMAGE,
        ]);
        let ip = ip_of(&name);
        let d = until_answers(
            &client(Duration::from_secs(2)),
            &format!("http://{ip}:8080/"),
            start,
        )
        .await;
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        d
    };

    // Up to healthy, with the image's HEALTHCHECK timing.
    let start = Instant::now();
    let stack = Stack::up_with(runner.clone(), false);
    let up_cmd = start.elapsed();
    let base_url = format!("http://127.0.0.1:{}", stack.published("wakedock", 8000));
    let first_ok = until_answers(
        &client(Duration::from_secs(2)),
        &format!("{base_url}/health"),
        start,
    )
    .await;
    stack
        .wait_healthy("wakedock", Duration::from_secs(120))
        .await;
    let healthy = start.elapsed();
    println!("compose up -d (command returns)          {:>9}", ms(up_cmd));
    println!(
        "up -d to first /health 200               {:>9}   (baseline docker run of the test app until it answers: {}, {:.1}x)",
        ms(first_ok),
        ms(floor),
        first_ok.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "up -d to Docker's `healthy`              {:>9}   (HEALTHCHECK --interval=10s: the first check runs one interval after start)",
        ms(healthy)
    );

    // Labelled container created → its route answers through Caddy.
    let mut routed = Vec::new();
    let mut direct = Vec::new();
    for i in 0..ROUTE_ROUNDS {
        let host = format!("r{i}-{}.localhost", stack.project);
        let c = stack.via_caddy(&[&host], Duration::from_secs(2));
        let start = Instant::now();
        let app = LabelledApp::run(
            &stack,
            &[("wakedock.host", host.as_str()), ("wakedock.port", "8080")],
        );
        let own_url = format!("http://{}:8080/", ip_of(&app.name));
        let route_url = format!("http://{host}/");
        let direct_client = client(Duration::from_secs(2));
        let (own, via) = tokio::join!(
            until_answers(&direct_client, &own_url, start),
            until_answers(&c, &route_url, start),
        );
        direct.push(own);
        routed.push(via);
    }
    let (r50, rmax) = median_max(routed);
    let (d50, dmax) = median_max(direct);
    println!(
        "created to route answering (p50 / max)   {:>9} / {}   target < 1 s   (baseline the app on its own address: {} / {}; {:.2}x at p50)",
        ms(r50),
        ms(rmax),
        ms(d50),
        ms(dmax),
        r50.as_secs_f64() / d50.as_secs_f64()
    );

    // The route alone: a container created but not started has its route
    // as soon as the table reaches the bridge (Caddy's 404 becomes a 502
    // from the proxy, the upstream being down).
    let mut known = Vec::new();
    for i in 0..ROUTE_ROUNDS {
        let host = format!("k{i}-{}.localhost", stack.project);
        let c = stack.via_caddy(&[&host], Duration::from_secs(2));
        let url = format!("http://{host}/");
        let start = Instant::now();
        let app = LabelledApp::create(
            &stack,
            &[("wakedock.host", host.as_str()), ("wakedock.port", "8080")],
        );
        loop {
            assert!(start.elapsed() < ROUND_LIMIT, "no route for {host}");
            match c.get(&url).send().await {
                Ok(r) if r.status() != reqwest::StatusCode::NOT_FOUND => break,
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        known.push(start.elapsed());
        drop(app);
    }
    let (k50, kmax) = median_max(known);
    println!(
        "created (not started) to route in Caddy  {:>9} / {}   (p50 / max; includes the `docker create` command)",
        ms(k50),
        ms(kmax)
    );

    // Idle RSS: no routes, then 20 labelled containers routed.
    let settle = || tokio::time::sleep(Duration::from_secs(3));
    settle().await;
    let (wd, cd) = (
        pid_of(&stack.container("wakedock")),
        pid_of(&stack.container("caddy")),
    );
    let (wd0, cd0) = (rss_kib(wd), rss_kib(cd));
    let apps: Vec<LabelledApp> = (0..IDLE_CONTAINERS)
        .map(|i| {
            let host = format!("idle{i}-{}.localhost", stack.project);
            LabelledApp::run(
                &stack,
                &[("wakedock.host", host.as_str()), ("wakedock.port", "8080")],
            )
        })
        .collect();
    let api = client(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: serde_json::Value = api
            .get(format!("{base_url}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["routes"]["routes"].as_u64() >= Some(IDLE_CONTAINERS as u64)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    let (wd1, cd1) = (rss_kib(wd), rss_kib(cd));
    println!(
        "idle RSS, WakeDock container             {:>6.1} MiB with {IDLE_CONTAINERS} routes   (baseline no routes: {:.1} MiB, {:.2}x)",
        wd1 as f64 / 1024.0,
        wd0 as f64 / 1024.0,
        wd1 as f64 / wd0.max(1) as f64
    );
    println!(
        "idle RSS, Caddy container                {:>6.1} MiB with {IDLE_CONTAINERS} routes   (baseline no routes: {:.1} MiB, {:.2}x)",
        cd1 as f64 / 1024.0,
        cd0 as f64 / 1024.0,
        cd1 as f64 / cd0.max(1) as f64
    );
    drop(apps);
    drop(stack);
}
