//! Fixture: a plugin compiled against plugin API 0.1.3. Its imports are
//! `wakedock:plugin/...@0.1.3`, including `files.list` (added in 0.1.3),
//! and its `on-event` export takes the 0.1.3 `event` variant; a 0.1.4 host
//! must link it, run it and deliver events to it.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use std::sync::atomic::{AtomicU32, Ordering};

use exports::wakedock::plugin::handler::Guest;
use wakedock::plugin::containers::list;
use wakedock::plugin::files;
use wakedock::plugin::types::{Event, HttpRequest, HttpResponse};

struct Old;

/// Events received by this instance.
static EVENTS: AtomicU32 = AtomicU32::new(0);

impl Guest for Old {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_event(_event: Event) {
        EVENTS.fetch_add(1, Ordering::Relaxed);
    }

    fn on_tick() {}

    /// `GET /count`: `<containers seen>/<entries of the stacks directory>/<events received>`.
    fn handle_http(_request: HttpRequest) -> HttpResponse {
        let (status, body) = match (list(&[], true), files::list("")) {
            (Ok(c), Ok(f)) => (
                200,
                format!("{}/{}/{}", c.len(), f.len(), EVENTS.load(Ordering::Relaxed)),
            ),
            _ => (503, String::new()),
        };
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

export!(Old);
