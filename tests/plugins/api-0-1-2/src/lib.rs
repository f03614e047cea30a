//! Fixture: a plugin compiled against plugin API 0.1.2. Its imports are
//! `wakedock:plugin/...@0.1.2`, including `storage.compare-and-swap`
//! (added in 0.1.2); a 0.1.3 host must link and run it.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::wakedock::plugin::handler::Guest;
use wakedock::plugin::containers::list;
use wakedock::plugin::storage;
use wakedock::plugin::types::{Event, HttpRequest, HttpResponse};

struct Old;

impl Guest for Old {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_event(_event: Event) {}

    fn on_tick() {}

    /// `GET /count`: `<containers seen>/<hits>`, the hit counter kept with
    /// the 0.1.2 `storage.compare-and-swap`.
    fn handle_http(_request: HttpRequest) -> HttpResponse {
        let (status, body) = match list(&[], true) {
            Ok(v) => {
                let old = storage::get("hits").ok().flatten();
                let hits = old
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1;
                let swapped = storage::compare_and_swap(
                    "hits",
                    old.as_deref(),
                    Some(hits.to_string().as_bytes()),
                );
                match swapped {
                    Ok(true) => (200, format!("{}/{hits}", v.len())),
                    _ => (409, String::new()),
                }
            }
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
