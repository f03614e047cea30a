//! Live plugin pages: `GET /ui/events/plugin/{plugin}?path=/x`, the
//! stream an open plugin page listens to.
//!
//! A plugin page has no script of its own ([`super::plugin_pages`]), so it
//! cannot refresh itself. A `[[pages]]` entry may instead name topics of
//! the plugin's own event-bus events (`live = ["alerts.*"]`, checked at
//! load to be ones it may publish); the layout then marks the page
//! `data-live` with this stream's address, and the host's script fetches
//! the page again on each `changed` event and swaps its content in place
//! (the same sanitised page a reload gives: the fetch goes through
//! [`super::plugin_pages::serve`] like any load).
//!
//! What the stream carries, to whom:
//! - only events the plugin itself published (the bus's source is the
//!   runtime's name for the caller of `publish`), on the entry's topics:
//!   never another plugin's or the host's;
//! - only the topic: a payload is not filtered by role, while the page the
//!   script then fetches is rendered by the plugin for this user;
//! - only to a browser session whose role the entry allows (a viewer on a
//!   viewer page), as long as the plugin is enabled.

use axum::extract::{Path, Query, Request, State};
use axum::response::sse::Event;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wakedock_plugin_runtime::manifest::{page_entry, topic_matches};
use wakedock_plugin_runtime::PageEntry;

use crate::db::users::Role;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

use super::plugin_pages::page_role;

/// The stream's address for the page at `path` of `plugin`.
pub fn stream_url(plugin: &str, path: &str) -> String {
    let path: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    format!("/ui/events/plugin/{plugin}?path={path}")
}

/// The entry of `plugin`'s page at `path` if that page is live for a user
/// with `role`; why not otherwise.
pub fn live_entry(
    state: &AppState,
    plugin: &str,
    path: &str,
    role: Role,
) -> Result<PageEntry, ApiError> {
    let pages = state
        .plugins
        .runtime()
        .pages()
        .into_iter()
        .find(|(name, _)| name == plugin)
        .map(|(_, pages)| pages)
        .ok_or_else(|| ApiError::NotFound(format!("no enabled plugin `{plugin}` has pages")))?;
    let entry = page_entry(&pages, path)
        .filter(|e| !e.live.is_empty())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "the page {path} of plugin `{plugin}` is not live (its [[pages]] entry names no `live` topics)"
            ))
        })?;
    if role < page_role(entry) {
        return Err(ApiError::Forbidden(format!(
            "the page {path} of plugin `{plugin}` is for the {} role",
            entry.role
        )));
    }
    Ok(entry.clone())
}

#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// The page, relative to `/p/{plugin}` (default `/`).
    pub path: Option<String>,
}

/// `GET /ui/events/plugin/{plugin}`.
pub async fn events(
    State(state): State<AppState>,
    Path(plugin): Path<String>,
    Query(q): Query<LiveQuery>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    // A page's session, like the page itself: never a bearer token.
    let (user, session) = crate::auth::identify(&parts, &state).await?;
    if !session {
        return Err(ApiError::BadRequest {
            code: "browser_only",
            message: "live plugin pages are for the browser's session".into(),
        });
    }
    let path = q.path.unwrap_or_else(|| "/".into());
    let entry = live_entry(&state, &plugin, &path, user.role)?;

    let (tx, rx) = mpsc::channel::<Event>(64);
    let _ = tx.send(Event::default().event("hello").data("{}")).await;
    state.tasks.spawn(
        "ui plugin page events",
        super::live::forward(state.bus.subscribe(), tx, move |ev| {
            (ev.source == plugin && entry.live.iter().any(|p| topic_matches(p, &ev.topic))).then(
                || {
                    Event::default()
                        .event("changed")
                        .data(serde_json::json!({ "topic": ev.topic }).to_string())
                },
            )
        }),
    );
    Ok(crate::http::sse::event_stream(
        ReceiverStream::new(rx),
        &state.shutdown,
    ))
}
