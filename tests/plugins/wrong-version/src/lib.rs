//! Fixture: built against plugin API 0.2.0 while its manifest claims 0.1.0.
//! The host must refuse it by reading the component's real imports.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::wakedock::plugin::handler::Guest;
use wakedock::plugin::log::{log, Level};
use wakedock::plugin::types::{HttpRequest, HttpResponse};

struct Liar;

impl Guest for Liar {
    fn init(_config: String) -> Result<(), String> {
        log(Level::Info, "pretending to be an API 0.1 plugin");
        Ok(())
    }

    fn on_tick() {}

    fn handle_http(_request: HttpRequest) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

export!(Liar);
