//! Glue between the policy modules and the host (wasm only):
//! - [`disk`]: the stacks directory (folders, files, candidate checks);
//! - [`engine`]: Compose's containers, wake states and kept runs;
//! - [`routes`]: the HTTP routes, JSON and pages.

mod disk;
mod engine;
mod routes;

use wakedock_plugin_sdk::{export_plugin, Config, Event, HttpRequest, HttpResponse, Plugin};

struct Stacks;

impl Plugin for Stacks {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Stacks)
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Plugin(ev) = event {
            match ev.topic.as_str() {
                "compose.finished" => engine::keep_run(&ev.payload),
                "wake.state" => engine::note_wake_state(&ev.payload),
                _ => {}
            }
        }
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        routes::route(&req)
    }
}

export_plugin!(Stacks);
