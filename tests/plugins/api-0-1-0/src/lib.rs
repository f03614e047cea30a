//! Fixture: a plugin compiled against plugin API 0.1.0. Its imports are
//! `wakedock:plugin/...@0.1.0`; a 0.1.1 host must link and run it.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::wakedock::plugin::handler::Guest;
use wakedock::plugin::containers::list;
use wakedock::plugin::types::{Event, HttpRequest, HttpResponse};

struct Old;

impl Guest for Old {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_event(_event: Event) {}

    fn on_tick() {}

    /// `GET /count`: how many containers it sees, through a 0.1.0 import.
    fn handle_http(_request: HttpRequest) -> HttpResponse {
        let (status, body) = match list(&[], true) {
            Ok(v) => (200, v.len().to_string()),
            Err(_) => (503, String::new()),
        };
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

export!(Old);
