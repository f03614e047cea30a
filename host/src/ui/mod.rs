//! The browser UI: pages rendered by the host with askama (templates in
//! `templates/`), plain HTML forms with a CSRF field, one small script
//! (`host/assets/app.js`) for live updates over server-sent events, and
//! assets embedded in the binary. Pages reuse the API's handlers for every
//! action, so roles, validation and audit are the same by construction.
//!
//! - [`page`]: the signed-in user, forms, flash messages, errors as pages.
//! - [`session`]: `/login`, `/logout`.
//! - [`overview`], [`containers`], [`services`], [`routes`], [`plugins`], [`users`],
//!   [`audit`]: pages.
//! - [`plugin_pages`]: `/p/{plugin}/...`, plugins' pages in the layout.
//! - [`live`]: `/ui/events`, the live stream every page listens to.
//! - [`plugin_live`]: `/ui/events/plugin/{plugin}`, what makes a plugin's
//!   page live (its own events, then the page fetched again).
//! - [`charts`]: resource samples and their inline SVG charts.
//! - [`assets`]: `/assets/*`, content-hashed and cached for a year.

pub mod assets;
pub mod audit;
pub mod backups;
pub mod charts;
pub mod containers;
pub mod live;
pub mod overview;
pub mod page;
pub mod plugin_live;
pub mod plugin_pages;
pub mod plugins;
pub mod routes;
pub mod services;
pub mod session;
pub mod users;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::docker::DockerEngine;
use crate::plugins::PluginPackage;
use crate::state::AppState;

pub use page::{Ctx, UiError, UiForm, UiUser};

/// Every page and form of the UI (outside `/api`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::show))
        .route("/login", get(session::show).post(session::submit))
        .route("/logout", post(session::logout))
        .route("/containers", get(containers::list))
        .route("/containers/{id}", get(containers::detail))
        .route("/containers/{id}/{action}", post(containers::act))
        .route("/services", get(services::list).post(services::create))
        .route("/services/{name}/{action}", post(services::act))
        .route("/routes", get(routes::list))
        .route("/plugins", get(plugins::list))
        .route(
            "/plugins/upload",
            post(plugins::upload).layer(axum::extract::DefaultBodyLimit::max(
                crate::http::limits::UPLOAD_LIMIT,
            )),
        )
        .route("/plugins/install", post(plugins::install))
        .route("/plugins/{name}/{action}", post(plugins::act))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}/{action}", post(users::act))
        .route("/audit", get(audit::list))
        .route("/backups", get(backups::list).post(backups::take))
        .route(
            "/p/{plugin}",
            get(plugin_pages::serve).post(plugin_pages::serve),
        )
        // A plugin's root page is `/p/{plugin}/` (the navigation's link);
        // the catch-all below needs at least one character.
        .route(
            "/p/{plugin}/",
            get(plugin_pages::serve).post(plugin_pages::serve),
        )
        .route(
            "/p/{plugin}/{*rest}",
            get(plugin_pages::serve).post(plugin_pages::serve),
        )
        .route("/ui/events", get(live::events))
        .route("/ui/events/plugin/{plugin}", get(plugin_live::events))
        .route("/assets/{file}", get(assets::serve))
}

/// The API's per-address budget applies to pages and forms too (assets
/// aside, which browsers cache): a refusal is a page with `Retry-After`.
pub async fn rate_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !req.uri().path().starts_with("/assets/") {
        let ip = req
            .extensions()
            .get::<crate::http::client_ip::ClientIp>()
            .copied()
            .unwrap_or_default();
        if let Err(e) = state.limits.check_api(ip.0) {
            let retry = e.retry_after();
            let mut res = UiError::from(e).into_response();
            if let Some(secs) = retry {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            return res;
        }
    }
    next.run(req).await
}

/// Whether a request that matched no route should get an HTML page (a
/// browser asking for a page outside the API) rather than problem+json.
pub fn wants_html(req: &axum::extract::Request) -> bool {
    !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// The page for an address that does not exist.
pub fn not_found_page() -> axum::response::Response {
    use axum::response::IntoResponse;
    UiError::new(
        http::StatusCode::NOT_FOUND,
        "There is no page at this address.",
    )
    .into_response()
}

/// One thing that happened to a container, for the overview.
#[derive(Debug, Clone)]
pub struct RecentEvent {
    pub at_ms: i64,
    pub id: String,
    pub name: String,
    pub action: String,
}

/// A plugin package between upload and the admin's grant.
struct PendingPackage {
    package: PluginPackage,
    by: String,
    at: Instant,
}

const RECENT_EVENTS: usize = 30;
const PENDING_TTL_SECS: u64 = 15 * 60;

/// What the UI keeps in memory: recent container events, resource
/// samples per container, uploaded plugin packages awaiting a grant.
#[derive(Default)]
pub struct UiState {
    recent: Mutex<VecDeque<RecentEvent>>,
    pub samples: charts::Samples,
    pending: Mutex<HashMap<String, PendingPackage>>,
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState").finish_non_exhaustive()
    }
}

impl UiState {
    pub fn recent_events(&self) -> Vec<RecentEvent> {
        self.recent
            .lock()
            .expect("recent events lock")
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    fn record(&self, e: RecentEvent) {
        let mut r = self.recent.lock().expect("recent events lock");
        if r.len() == RECENT_EVENTS {
            r.pop_front();
        }
        r.push_back(e);
    }

    /// Keeps a package until the admin decides; returns its ticket.
    fn hold(&self, package: PluginPackage, by: &str) -> String {
        let mut p = self.pending.lock().expect("pending lock");
        p.retain(|_, v| v.at.elapsed().as_secs() < PENDING_TTL_SECS);
        // A few at a time is plenty; the oldest goes first.
        while p.len() >= 8 {
            let oldest = p
                .iter()
                .min_by_key(|(_, v)| v.at)
                .map(|(k, _)| k.clone())
                .expect("non-empty");
            p.remove(&oldest);
        }
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        p.insert(
            ticket.clone(),
            PendingPackage {
                package,
                by: by.to_string(),
                at: Instant::now(),
            },
        );
        ticket
    }

    /// The package held under `ticket` for `by`, if it has not expired.
    fn take(&self, ticket: &str, by: &str) -> Option<PluginPackage> {
        let mut p = self.pending.lock().expect("pending lock");
        match p.get(ticket) {
            Some(v) if v.by == by && v.at.elapsed().as_secs() < PENDING_TTL_SECS => {
                p.remove(ticket).map(|v| v.package)
            }
            _ => None,
        }
    }

    /// Records container events for the overview until shutdown.
    pub async fn run(
        self: std::sync::Arc<Self>,
        docker: std::sync::Arc<DockerEngine>,
        shutdown: CancellationToken,
    ) {
        let mut rx = docker.subscribe();
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => {
                    if live::shown_action(&ev.action) {
                        self.record(RecentEvent {
                            at_ms: ev.time_nano / 1_000_000,
                            name: ev.name.clone().unwrap_or_else(|| short_id(&ev.id)),
                            id: ev.id,
                            action: ev.action,
                        });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    rx = docker.subscribe();
                }
            }
        }
    }
}

pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// "3 min ago"-style age of a Unix-millisecond time.
pub fn ago(at_ms: i64) -> String {
    let secs = ((crate::db::now_ms() - at_ms) / 1000).max(0);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A Unix-millisecond time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn timestamp(at_ms: i64) -> String {
    let t = cookie::time::OffsetDateTime::from_unix_timestamp(at_ms / 1000)
        .unwrap_or(cookie::time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Bytes as KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / K / K)
    } else {
        format!("{:.2} GiB", f / K / K / K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_700_000_000_000), "2023-11-14 22:13:20");
        assert!(ago(crate::db::now_ms() - 120_000).ends_with("min ago"));
    }
}
