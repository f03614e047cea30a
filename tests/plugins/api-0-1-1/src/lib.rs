//! Fixture: a plugin compiled against plugin API 0.1.1. Its imports are
//! `wakedock:plugin/...@0.1.1`, including functions added in 0.1.1
//! (`containers.exit-code`) and the 0.1.1 `storage` interface; a 0.1.2 host
//! must link and run it.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::wakedock::plugin::handler::Guest;
use wakedock::plugin::containers::{exit_code, list};
use wakedock::plugin::storage;
use wakedock::plugin::types::{Event, HttpRequest, HttpResponse};

struct Old;

impl Guest for Old {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_event(_event: Event) {}

    fn on_tick() {}

    /// `GET /count`: `<containers seen>/<exit codes known>/<stored hits>`,
    /// through 0.1.1 imports of `containers` and `storage`.
    fn handle_http(_request: HttpRequest) -> HttpResponse {
        let (status, body) = match list(&[], true) {
            Ok(v) => {
                let codes = v
                    .iter()
                    .filter(|c| matches!(exit_code(&c.id), Ok(Some(_))))
                    .count();
                let hits = storage::get("hits")
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1;
                let _ = storage::set("hits", hits.to_string().as_bytes());
                (200, format!("{}/{codes}/{hits}", v.len()))
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
