//! `/`: counts by state, services with their wake state, recent container
//! events, and the host's own health (Docker, database).

use std::time::Duration;

use askama::Template;
use axum::extract::State;

use crate::state::AppState;
use crate::wake::ServiceState;

use super::containers::{class_of, CLASSES};
use super::page::{self, Ctx, UiResult, UiUser};
use super::RecentEvent;

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub ctx: Ctx,
    /// (class, count) for running, sleeping, stopped, unhealthy.
    pub counts: Vec<(&'static str, usize)>,
    /// id → class, for the page's script to recount live.
    pub states_json: String,
    /// name → id (service documents name their members).
    pub names_json: String,
    pub services: Vec<ServiceState>,
    pub events: Vec<RecentEvent>,
    pub docker_up: bool,
    pub docker_error: Option<String>,
    pub db_up: bool,
    pub db_backend: &'static str,
    /// Alerts firing now, when the alerts plugin runs.
    pub alerts_firing: Option<u64>,
}

pub async fn show(State(state): State<AppState>, u: UiUser) -> UiResult {
    let timeout = Duration::from_secs(2);
    let (list, db, alerts_firing) = tokio::join!(
        tokio::time::timeout(timeout, state.docker.list(&[])),
        tokio::time::timeout(timeout, state.db.ping()),
        crate::alerts::firing_count(&state.plugins, &u.user.username),
    );
    let (list, docker_error) = match list {
        Ok(Ok(l)) => (l, None),
        Ok(Err(e)) => (vec![], Some(e.to_string())),
        Err(_) => (
            vec![],
            Some("the Docker engine did not answer in time".into()),
        ),
    };
    let mut counts: Vec<(&'static str, usize)> = CLASSES.iter().map(|c| (*c, 0)).collect();
    let mut states = serde_json::Map::new();
    let mut names = serde_json::Map::new();
    let members = state.wake.memberships();
    for c in &list {
        let class = class_of(&c.state, &c.health, members.get(&c.name));
        if let Some(n) = counts.iter_mut().find(|(k, _)| *k == class) {
            n.1 += 1;
        }
        states.insert(c.id.clone(), serde_json::Value::from(class));
        names.insert(c.name.clone(), serde_json::Value::from(c.id.clone()));
    }
    let p = OverviewPage {
        ctx: u.ctx("overview"),
        counts,
        states_json: serde_json::Value::Object(states).to_string(),
        names_json: serde_json::Value::Object(names).to_string(),
        services: state.wake.snapshot(),
        events: state.ui.recent_events(),
        docker_up: docker_error.is_none(),
        docker_error,
        db_up: matches!(db, Ok(Ok(()))),
        db_backend: state.db.backend(),
        alerts_firing,
    };
    Ok(page::page(&u, p))
}
