//! Glue between the policy modules and the host (wasm only):
//! - [`store`]: the plugin's storage layout;
//! - [`engine`]: events and ticks in, rule evaluation, history, outbox;
//! - [`follows`]: the host's log subscriptions of the `log` rules, and
//!   their lines;
//! - [`deliver`]: sending the outbox through `http-outbound`;
//! - [`routes`]: the JSON API (`/api/v1/plugins/alerts/...`);
//! - [`pages`]: the browser pages (`/p/alerts/...`).

mod deliver;
mod engine;
mod follows;
mod pages;
mod routes;
mod store;

use std::collections::BTreeMap;

use wakedock_plugin_sdk::{
    containers, export_plugin, log, metrics, ui, Config, Event, HttpRequest, HttpResponse, Plugin,
};

use crate::alert::AlertState;
use crate::channel::Channel;
use crate::config::{describe, AlertsConfig};
use crate::contract::HostHealth;
use crate::facts::{ContainerFacts, ServiceFacts};
use crate::rule::Rule;
use crate::suppress::{Silence, Window};

/// Where a rule or channel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// What one instance keeps in memory (see [`store`]: it is the only
/// writer while it lives).
#[derive(Default)]
struct Loaded {
    containers: BTreeMap<String, ContainerFacts>,
    services: BTreeMap<String, ServiceFacts>,
    host: BTreeMap<String, HostHealth>,
    states: BTreeMap<(String, String), AlertState>,
    rules: Vec<(Rule, Source)>,
    channels: Vec<(Channel, Source)>,
    windows: Vec<(Window, Source)>,
    silences: Vec<Silence>,
    outbox: BTreeMap<String, crate::outbox::Delivery>,
}

struct Alerts {
    config: AlertsConfig,
    loaded: Option<Loaded>,
    /// Rules whose `firing` gauge was set (so a removed rule goes to 0).
    gauged: BTreeMap<(String, String), ()>,
    /// When resolved records past the retention were last removed.
    last_prune: u64,
    /// When the current call into the plugin began (monotonic).
    call_started_ns: u64,
}

fn register_metrics() {
    store::warn_on(
        "registering firing",
        metrics::register_gauge(
            "firing",
            "Alerts firing now, by rule and severity",
            &["rule", "severity"],
        ),
    );
    store::warn_on(
        "registering notifications_total",
        metrics::register_counter(
            "notifications_total",
            "Notifications by channel and result (delivered, failed, gave-up, suppressed)",
            &["channel", "result"],
        ),
    );
    store::warn_on(
        "registering delivery_seconds",
        metrics::register_histogram(
            "delivery_seconds",
            "Time from an alert's event to its notification's delivery",
            &["channel"],
            &[0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0],
        ),
    );
}

impl Plugin for Alerts {
    fn init(config: Config) -> Result<Self, String> {
        let config = AlertsConfig::from_json(config.value()).map_err(|e| describe(&e))?;
        register_metrics();
        Ok(Alerts {
            config,
            loaded: None,
            gauged: BTreeMap::new(),
            last_prune: 0,
            call_started_ns: 0,
        })
    }

    fn on_event(&mut self, event: Event) {
        self.call_started_ns = wakedock_plugin_sdk::clock::monotonic_ns();
        match event {
            Event::Container(ev) => self.on_container_event(ev),
            Event::Plugin(ev) => self.on_plugin_event(ev),
        }
    }

    fn on_tick(&mut self) {
        self.call_started_ns = wakedock_plugin_sdk::clock::monotonic_ns();
        self.tick();
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        self.call_started_ns = wakedock_plugin_sdk::clock::monotonic_ns();
        if ui::page_base(&req).is_some() {
            self.page(req)
        } else {
            self.route(req)
        }
    }
}

impl Alerts {
    /// Everything from storage, once per instance.
    fn loaded(&mut self) -> &mut Loaded {
        if self.loaded.is_none() {
            let mut l = Loaded::default();
            for (name, f) in store::all::<ContainerFacts>("facts/c/") {
                l.containers.insert(name, f);
            }
            self.seed_containers(&mut l);
            for (name, f) in store::all::<ServiceFacts>("facts/s/") {
                l.services.insert(name, f);
            }
            for (name, h) in store::all::<HostHealth>("facts/h/") {
                l.host.insert(name, h);
            }
            for (key, s) in store::all::<AlertState>("state/") {
                if let Some((rule, target)) = key.split_once('/') {
                    l.states.insert((rule.to_owned(), target.to_owned()), s);
                }
            }
            l.rules = self
                .config
                .rules
                .iter()
                .map(|r| (r.clone(), Source::Config))
                .collect();
            for (name, v) in store::all::<serde_json::Value>("rule/") {
                match crate::rule::parse_rule(&v) {
                    Ok(r) => l.rules.push((r, Source::Api)),
                    Err(e) => {
                        log::warn(&format!("stored rule {name} is invalid: {}", describe(&e)))
                    }
                }
            }
            l.channels = self
                .config
                .channels
                .iter()
                .map(|c| (c.clone(), Source::Config))
                .collect();
            for (_, c) in store::all::<Channel>("channel/") {
                l.channels.push((c, Source::Api));
            }
            l.windows = self
                .config
                .windows
                .iter()
                .map(|w| (w.clone(), Source::Config))
                .collect();
            for (_, d) in store::all::<crate::suppress::WindowDef>("window/") {
                if let Ok(w) = d.validate() {
                    l.windows.push((w, Source::Api));
                }
            }
            l.silences = store::all::<Silence>("silence/")
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            l.outbox = store::all::<crate::outbox::Delivery>("outbox/")
                .into_iter()
                .collect();
            self.loaded = Some(l);
            // Once per instance: after a restart (of the instance or the
            // host) the subscriptions are as the rules say.
            self.sync_follows();
        }
        self.loaded.as_mut().expect("just loaded")
    }
}

impl Alerts {
    /// What the engine says now of every container in scope: containers
    /// that ran before this instance (or the host) started are known
    /// without waiting for their next event. Exits are not invented: a
    /// stopped container with no stored exit stays without one.
    fn seed_containers(&self, l: &mut Loaded) {
        let Some(list) = store::warn_on("listing containers", containers::list_all()) else {
            return;
        };
        for c in list {
            let target = crate::selector::Target {
                name: c.name.trim_start_matches('/').to_owned(),
                labels: c.labels.iter().cloned().collect(),
                services: Vec::new(),
            };
            if !crate::selector::in_scope(self.config.instance.as_deref(), &target) {
                continue;
            }
            let f = l
                .containers
                .entry(target.name.clone())
                .or_insert_with(|| ContainerFacts::new(target.clone()));
            f.id.clone_from(&c.id);
            f.target.labels = target.labels;
            let running = c.state == wakedock_plugin_sdk::ContainerState::Running;
            if running && !f.running {
                f.on_started(engine::health_of(c.health), c.started_at_ms.unwrap_or(0));
            } else if running {
                f.health = engine::health_of(c.health);
            } else {
                // Stopped while nobody watched: not running, no exit made up.
                f.running = false;
            }
        }
    }
}

export_plugin!(Alerts);
