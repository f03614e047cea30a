//! `/backups` (admin): the backups in the backup directory with their time
//! and size, the schedule, a download link for each, and "take one now".

use askama::Template;
use axum::extract::State;
use serde::Deserialize;

use crate::api::backups as api;
use crate::state::AppState;

use super::page::{self, Ctx, UiForm, UiResult, UiUser};

pub struct BackupView {
    pub name: String,
    pub at: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "backups.html")]
pub struct BackupsPage {
    pub ctx: Ctx,
    pub items: Vec<BackupView>,
    pub directory: String,
    /// "every 1day, keeping 7", or that there is no schedule.
    pub schedule: String,
    /// The last backup's outcome, when it failed.
    pub last_error: Option<String>,
}

pub async fn list(State(state): State<AppState>, u: UiUser) -> UiResult {
    let r = api::list(State(state), u.user.clone())
        .await
        .map_err(|e| u.fail("backups", e))?
        .0;
    let schedule = match r.interval_seconds {
        Some(s) => format!(
            "A backup is taken every {}; the newest {} are kept.",
            humantime::format_duration(std::time::Duration::from_secs(s)),
            r.keep
        ),
        None => format!(
            "No scheduled backups (set backup.interval in the config file); the newest {} are kept.",
            r.keep
        ),
    };
    let last_error = r.last.filter(|l| l.result != "success").and_then(|l| {
        l.error
            .map(|e| format!("The last backup failed at {}: {e}", super::timestamp(l.at)))
    });
    Ok(page::page(
        &u,
        BackupsPage {
            ctx: u.ctx("backups"),
            items: r
                .items
                .into_iter()
                .map(|b| BackupView {
                    at: super::timestamp(b.created_at),
                    size: super::bytes(b.size_bytes),
                    name: b.name,
                })
                .collect(),
            directory: r.directory,
            schedule,
            last_error,
        },
    ))
}

/// The form has no fields beyond its CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct TakeForm {}

/// `POST /backups`: take one now.
pub async fn take(State(state): State<AppState>, f: UiForm<TakeForm>) -> UiResult {
    match api::create(State(state), f.user.user.clone()).await {
        Ok((_, s)) => Ok(page::redirect_with(
            "/backups",
            true,
            format!(
                "Backup {} written ({}).",
                s.0.path,
                super::bytes(s.0.size_bytes)
            ),
        )),
        Err(e) => Ok(page::redirect_with("/backups", false, page::describe(&e))),
    }
}
