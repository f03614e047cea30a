//! What the engine says: Compose projects from their containers' labels
//! (one listing), the wake plugin's last state per service (kept from its
//! `wake.state` events), and each finished action (kept from the host's
//! `compose.finished` events: outcome and output, the last 20 per stack).

use std::collections::BTreeMap;

use wakedock_plugin_sdk::{containers, log, storage, ContainerState, Health};

use crate::model::{labels, Member};
use crate::render::Run;

const WAKE_STATES: &str = "wake-states";
const RUNS_KEPT: usize = 20;

fn state_word(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Removing => "removing",
        ContainerState::Exited => "exited",
        ContainerState::Dead => "dead",
    }
}

/// Every Compose container on the engine, one listing.
pub fn members() -> Result<Vec<Member>, String> {
    let list = containers::with_label(labels::PROJECT, None).map_err(|e| e.describe())?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
            Member {
                service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                id: c.id,
                name: c.name,
                image: c.image,
                state: state_word(c.state).to_owned(),
                health: match c.health {
                    Health::None => String::new(),
                    Health::Starting => "starting".into(),
                    Health::Healthy => "healthy".into(),
                    Health::Unhealthy => "unhealthy".into(),
                },
                labels,
                ..Member::default()
            }
        })
        .collect())
}

/// The wake plugin's last published state of every service.
pub fn wake_states() -> BTreeMap<String, String> {
    storage::get_json::<BTreeMap<String, String>>(WAKE_STATES)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A `wake.state` event: remembered, so a stack asleep shows as sleeping.
pub fn note_wake_state(payload: &str) {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(payload) else {
        return;
    };
    let (Some(service), Some(state)) = (
        doc.get("service").and_then(|v| v.as_str()),
        doc.get("state").and_then(|v| v.as_str()),
    ) else {
        return;
    };
    // Concurrent events: retry on a lost compare-and-swap.
    for _ in 0..5 {
        let old = storage::get(WAKE_STATES).ok().flatten();
        let mut map: BTreeMap<String, String> = old
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        if map.get(service).map(String::as_str) == Some(state) {
            return;
        }
        map.insert(service.to_owned(), state.to_owned());
        let new = serde_json::to_vec(&map).unwrap_or_default();
        match storage::compare_and_swap(WAKE_STATES, old.as_deref(), Some(&new)) {
            Ok(true) => return,
            Ok(false) => continue,
            Err(e) => {
                log::warn(&format!("keeping a wake state: {}", e.describe()));
                return;
            }
        }
    }
}

fn run_prefix(project: &str) -> String {
    format!("runs/{project}/")
}

/// A `compose.finished` event: kept as the stack's history.
pub fn keep_run(payload: &str) {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(payload) else {
        return;
    };
    let Some(project) = doc.get("project").and_then(|v| v.as_str()) else {
        return;
    };
    let run = Run {
        id: doc["id"].as_str().unwrap_or("").to_owned(),
        kind: doc["kind"].as_str().unwrap_or("").to_owned(),
        state: doc["state"].as_str().unwrap_or("").to_owned(),
        exit_code: doc["exit_code"].as_i64().map(|c| c as i32),
        started_at_ms: doc["started_at_ms"].as_u64().unwrap_or(0),
        finished_at_ms: doc["finished_at_ms"].as_u64(),
        started_by: doc["started_by"].as_str().map(str::to_owned),
        lines: doc["lines"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let key = format!(
        "{}{:013}-{}",
        run_prefix(project),
        run.finished_at_ms.unwrap_or(0),
        run.id
    );
    if let Err(e) = storage::set_json(&key, &run) {
        log::warn(&format!(
            "keeping the output of {project}'s {}: {}",
            run.kind,
            e.describe()
        ));
        return;
    }
    if let Ok(keys) = storage::list_keys(&run_prefix(project)) {
        let extra = keys.len().saturating_sub(RUNS_KEPT);
        for k in keys.iter().take(extra) {
            let _ = storage::delete(k);
        }
    }
}

/// The stack's kept runs, newest first (at most `n`).
pub fn runs(project: &str, n: usize) -> Vec<Run> {
    let keys = storage::list_keys(&run_prefix(project)).unwrap_or_default();
    keys.iter()
        .rev()
        .take(n)
        .filter_map(|k| storage::get_json::<Run>(k).ok().flatten())
        .collect()
}

/// Forgets a deleted stack's runs.
pub fn forget_runs(project: &str) {
    for k in storage::list_keys(&run_prefix(project)).unwrap_or_default() {
        let _ = storage::delete(&k);
    }
}
