//! Glue between the policy modules and the host (wasm only):
//! - [`disk`]: the stacks directory (folders, files, candidate checks);
//! - [`engine`]: Compose's containers, wake states and kept runs;
//! - [`routes`]: the HTTP routes, JSON and pages.

mod disk;
mod engine;
mod routes;

use wakedock_plugin_sdk::{export_plugin, Config, Event, HttpRequest, HttpResponse, Plugin};

struct Stacks {
    /// The install's scope (`wakedock.instance`, given by the host): only
    /// projects whose containers carry it are offered for adoption.
    instance: Option<String>,
}

impl Plugin for Stacks {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Stacks {
            instance: config.get_str("instance").map(str::to_owned),
        })
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
        routes::route(&req, self.instance.as_deref())
    }
}

export_plugin!(Stacks);
