//! Glue between the policy modules and the host (wasm only):
//! - [`store`]: the plugin's storage, states written by compare-and-swap;
//! - [`scan`]: container listings and the catalog, cached per instance;
//! - [`ops`]: the wake and sleep operations the host runs;
//! - [`watch`]: the tick, container events, the host's start;
//! - [`routes`]: the internal HTTP routes.
//!
//! Internal routes are for the host only: it calls them with the
//! `wakedock:host` permission, which it never gives a user.

mod ops;
mod routes;
mod scan;
mod store;
mod watch;

use wakedock_plugin_sdk::{
    auth, export_plugin, log, metrics, Config, Event, HttpRequest, HttpResponse, Plugin,
};

use crate::service::{parse_def_list, ServiceDef, WakeConfig};
use scan::Scan;
use store::warn_on;

const HOST_PERMISSION: &str = "wakedock:host";

struct Wake {
    config_defs: Vec<ServiceDef>,
    self_container: Option<String>,
    /// The install's `wakedock.instance` (see [`crate::scope`]).
    instance: Option<String>,
    /// This instance's last listing (see [`scan`]).
    scan: Option<Scan>,
}

impl Wake {
    /// The last listing if `fresh` is false and it may still be used, else
    /// a new one.
    fn scan_cached(&mut self, fresh: bool) -> Result<&Scan, String> {
        let now = wakedock_plugin_sdk::clock::now_ms();
        let reuse = !fresh && self.scan.as_ref().is_some_and(|s| s.fresh(now));
        if !reuse {
            self.scan = Some(Scan::take(&self.config_defs, self.instance.as_deref())?);
        }
        Ok(self.scan.as_ref().expect("just set"))
    }
}

fn register_metrics() {
    warn_on(
        "registering sessions_active",
        metrics::register_gauge("sessions_active", "Services with an open wake session", &[]),
    );
    warn_on(
        "registering sleeps_total",
        metrics::register_counter(
            "sleeps_total",
            "Services put to sleep, by reason (idle, manual, schedule)",
            &["service", "reason"],
        ),
    );
}

impl Plugin for Wake {
    fn init(config: Config) -> Result<Self, String> {
        let cfg = WakeConfig::from_json(config.value())?;
        let (config_defs, config_errors) = parse_def_list(&cfg.services);
        // The host checks the config file's services before it starts;
        // refuse rather than run with part of them.
        if !config_errors.is_empty() {
            let list: Vec<String> = config_errors.iter().map(ToString::to_string).collect();
            return Err(list.join("; "));
        }
        register_metrics();
        Ok(Wake {
            config_defs,
            self_container: cfg.self_container,
            instance: cfg.instance,
            scan: None,
        })
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Container(ev) = event {
            self.on_container_event(ev);
        }
    }

    fn on_tick(&mut self) {
        self.on_tick_impl();
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        if !auth::has_permission(HOST_PERMISSION) {
            log::debug("refused a caller without the host permission");
            return routes::problem(
                403,
                "forbidden",
                "these routes are the host's: use /api/v1/services",
            );
        }
        self.route(req)
    }
}

export_plugin!(Wake);
