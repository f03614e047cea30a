//! Server-sent event responses: every stream the host serves ends when the
//! host shuts down (so a graceful shutdown never waits on a follower) and
//! carries a `: keepalive` comment every 15 s (so proxies keep it open).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

pub fn event_stream(
    events: impl Stream<Item = Event> + Send + 'static,
    shutdown: &CancellationToken,
) -> Response {
    let stream = events
        .map(Ok::<_, Infallible>)
        .take_until(shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keepalive"),
        )
        .into_response()
}
