//! Alerts benchmark (issue 12): how long after a container dies does its
//! notification reach the receiver?
//!
//! One host (in this process, release build) with the alerts plugin and an
//! `exit` rule; one test container, killed (`docker kill`, exit 137) and
//! started again, round after round. Per round:
//! - **floor**: from the kill request to the `die` event reaching a bare
//!   Docker event subscriber of our own (what any event-driven tool waits
//!   for at least);
//! - **alert**: from the kill request to the notification at a loopback
//!   webhook receiver;
//! - **event → notification**: their difference.
//!
//! Each round waits for the recovery notification before the next kill.
//! Bounded: 30 rounds, 20 s per step. Traffic: 127.0.0.1 and the test
//! container only. Needs `scripts/build-test-images.sh` and
//! `scripts/build-plugins.sh` first (`bench/run.sh` does both).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::json;
use wakedock_tests::receiver::Receiver;
use wakedock_tests::{docker, new_instance, wasm_dir, AppSpec, Backend, TestContainer, TestHost};

const ROUNDS: usize = 30;
const STEP: Duration = Duration::from_secs(20);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_for(rx: &Receiver, status: &str, n: usize) -> Result<Instant> {
    let deadline = Instant::now() + STEP;
    loop {
        let d: Vec<_> = rx
            .delivered()
            .into_iter()
            .filter(|r| r.json()["status"] == status)
            .collect();
        if d.len() >= n {
            return Ok(d[n - 1].at);
        }
        if Instant::now() > deadline {
            bail!("no {status} notification #{n} within {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let rx = Receiver::start().await;
    let instance = new_instance();
    let decl: wakedock::config::PluginDecl = serde_json::from_value(json!({
        "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/alerts/plugin.toml"),
        "wasm": wasm_dir().join("wakedock_plugin_alerts.wasm"),
        "config": {
            "rules": [{"name": "down", "kind": "exit"}],
            "channels": [{"name": "hook", "type": "webhook", "url": rx.url("/hook")}],
        },
    }))?;
    let inst = instance.clone();
    let host = TestHost::start_with(Backend::Sqlite, move |c| {
        c.wakedock.instance = Some(inst);
        c.logging.level = "warn".into();
        c.plugins.push(decl);
    })
    .await;
    let app = TestContainer::from_spec(AppSpec {
        instance: Some(&instance),
        start: true,
        ..AppSpec::default()
    })
    .await;
    let docker = docker().await;
    // Our own subscriber: the floor.
    let (tx, mut dies) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let name = app.name.clone();
    let events = docker.clone();
    tokio::spawn(async move {
        let mut filters = std::collections::HashMap::new();
        filters.insert("container".to_string(), vec![name]);
        filters.insert("event".to_string(), vec!["die".to_string()]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut s = events.events(Some(opts));
        while let Some(Ok(_)) = s.next().await {
            let _ = tx.send(Instant::now());
        }
    });
    // The plugin has seen the container start before the first kill.
    let api = host.admin().await;
    wakedock_tests::eventually(STEP, "the plugin to see the container", || {
        let api = api.clone();
        let name = app.name.clone();
        async move {
            let list = api.get_json("/api/v1/plugins/alerts/containers").await;
            list.as_array()?
                .iter()
                .any(|c| c["name"] == name.as_str() && c["status"]["status"] == "running")
                .then_some(())
        }
    })
    .await;
    let (mut floor, mut alert, mut delta) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let t0 = Instant::now();
        docker
            .kill_container(
                &app.name,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await?;
        let died = tokio::time::timeout(STEP, dies.recv())
            .await?
            .expect("event stream");
        let notified = wait_for(&rx, "firing", round).await?;
        floor.push(died - t0);
        alert.push(notified - t0);
        delta.push(notified.saturating_duration_since(died));
        docker
            .start_container(
                &app.name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await?;
        wait_for(&rx, "resolved", round).await?;
    }
    for v in [&mut floor, &mut alert, &mut delta] {
        v.sort();
    }
    println!("alerts: container killed -> notification at a loopback receiver, {ROUNDS} rounds");
    println!(
        "  floor (kill -> die event at a bare subscriber): p50 {:.1} ms  p90 {:.1} ms",
        ms(pct(&floor, 0.5)),
        ms(pct(&floor, 0.9))
    );
    println!(
        "  alert (kill -> notification received):         p50 {:.1} ms  p90 {:.1} ms",
        ms(pct(&alert, 0.5)),
        ms(pct(&alert, 0.9))
    );
    println!(
        "  event -> notification:                          p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms",
        ms(pct(&delta, 0.5)),
        ms(pct(&delta, 0.9)),
        ms(*delta.last().unwrap())
    );
    println!(
        "  ratio alert/floor at p50: {:.2}x; a 60 s-interval monitor's median is 30,000 ms",
        ms(pct(&alert, 0.5)) / ms(pct(&floor, 0.5))
    );
    drop(app);
    host.stop().await?;
    Ok(())
}
