//! # WakeDock plugin SDK
//!
//! Write a WakeDock plugin in Rust: a WebAssembly component that the WakeDock
//! host runs in a sandbox, giving it only the capabilities its manifest
//! requests *and* the administrator granted.
//!
//! The API is defined once, in WIT (`plugin-api/wit`, package
//! `wakedock:plugin`, version [`API_VERSION`]). This crate generates the
//! guest bindings from those files with `wit-bindgen` and wraps them in:
//!
//! - the [`Plugin`] trait: implement `init` and whichever of `on_event`,
//!   `on_tick` and `handle_http` you need (the others default to no-ops);
//! - the [`export_plugin!`] macro, which exports your type as the component's
//!   `handler` interface;
//! - typed helper modules for each capability: [`log`], [`clock`],
//!   [`storage`], [`containers`], [`events`], [`http`], [`metrics`],
//!   [`auth`], [`files`] and [`compose`] (0.1.3), [`container_logs`] and
//!   [`smtp`] (0.1.4);
//! - [`ui`]: pages of your own in the host's browser UI (0.1.3).
//!
//! ## A complete plugin
//!
//! The SDK is not published on crates.io: depend on it from a checkout of
//! WakeDock (a `path` dependency) or from WakeDock's git repository (a
//! `git` dependency), at the release your host runs. With the checkout
//! next to your plugin (`../wakedock`), `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello-plugin"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]   # a cdylib for wasm32-wasip2 is a component
//!
//! [dependencies]
//! # Or: wakedock-plugin-sdk = { git = "<WakeDock's git URL>", tag = "<your host's release>" }
//! wakedock-plugin-sdk = { path = "../wakedock/plugin-api" }
//! serde_json = "1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use wakedock_plugin_sdk::{export_plugin, log, storage, Config, HttpRequest, HttpResponse, Plugin};
//!
//! struct Hello {
//!     greeting: String,
//! }
//!
//! impl Plugin for Hello {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let greeting = config.get_str("greeting").unwrap_or("hello").to_owned();
//!         log::info(&format!("hello plugin ready, greeting = {greeting}"));
//!         Ok(Hello { greeting })
//!     }
//!
//!     fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
//!         match (req.method.as_str(), req.path.as_str()) {
//!             ("GET", "/hello") => {
//!                 // Instances are recycled: keep durable state in storage.
//!                 let n = storage::get_json::<u64>("hits").ok().flatten().unwrap_or(0) + 1;
//!                 if let Err(e) = storage::set_json("hits", &n) {
//!                     return HttpResponse::error(500, &e.describe());
//!                 }
//!                 HttpResponse::json(200, &serde_json::json!({ "message": self.greeting, "hits": n }))
//!             }
//!             _ => HttpResponse::not_found(),
//!         }
//!     }
//! }
//!
//! export_plugin!(Hello);
//! # fn main() {}
//! ```
//!
//! `plugin.toml` next to it:
//!
//! ```toml
//! name = "hello"
//! version = "0.1.0"
//! api-version = "0.1.4"
//! description = "Says hello and counts visits"
//! author = "You <you@example.org>"
//!
//! [capabilities]
//! storage = { quota-bytes = 65536 }
//!
//! [config]
//! greeting = "hello"
//! ```
//!
//! `api-version` is the [`API_VERSION`] of the SDK you build with, which
//! must be the newest plugin API your host supports or an older one:
//! `wakedock --version` prints it (`wakedock 0.1.0 (plugin API 0.1.4)`), so
//! take the SDK from the same WakeDock release as your host.
//!
//! Build it with `rustup target add wasm32-wasip2` once, then
//! `cargo build --release --target wasm32-wasip2`; the component is
//! `target/wasm32-wasip2/release/hello_plugin.wasm`.
//!
//! ## Installing it
//!
//! ```text
//! wakedock plugin install --manifest plugin.toml \
//!     --wasm target/wasm32-wasip2/release/hello_plugin.wasm --grant all
//! ```
//!
//! Without `--grant` the command prints what the plugin requests and
//! installs nothing. `--grant all` approves exactly that; `--grant FILE`
//! approves what the TOML file lists, in the shape of the manifest's
//! `[capabilities]` and `[limits]` tables:
//!
//! ```toml
//! # grant.toml: only what is listed is granted.
//! [capabilities]
//! storage = { quota-bytes = 16384 }   # smaller than requested: the smaller wins
//!
//! [limits]                            # optional: tighter than the manifest's
//! memory-bytes = 8388608
//! cpu-ms-per-call = 50
//! ```
//!
//! The plugin gets the intersection of request and grant: the lower of two
//! quotas, limits and rates, the `read` of `read`/`write`, container
//! selectors combined (a container must match both), hosts and topics the
//! grant covers. A grant may narrow, never widen: approving a capability
//! the manifest does not request is an error, which names the grant file.
//! A requested capability left out of the grant still links: its calls
//! answer [`Error::PermissionDenied`]. The same grant can be given as JSON
//! to `POST /api/v1/plugins` (`"grant": {"capabilities": {...}}`) or in the
//! config file's `plugins:` list. The host then serves
//! `GET /api/v1/plugins/hello/hello`.
//!
//! ## Pages in the browser UI
//!
//! A plugin can add pages to the host's UI (API 0.1.3). Declare its
//! navigation entries in the manifest:
//!
//! ```toml
//! [[pages]]
//! title = "Hello"      # the navigation label
//! path = "/"           # relative to the plugin's pages, /p/hello
//! role = "viewer"      # viewer (default), user or admin see the entry
//! live = []            # topics that make it live (see "Live pages")
//! ```
//!
//! A browser request to `/p/hello/...` reaches [`Plugin::handle_http`] like
//! an API request, with the same caller, and [`ui::page_base`] says it is a
//! page (`Some("/p/hello")`). Answer HTML with [`ui::page`] (a fragment: the
//! host puts it inside its layout, under its navigation), or redirect with
//! [`ui::redirect`] after a form (a message for the next page included).
//! The same route can serve JSON to the API and HTML to the browser.
//!
//! What a page can and cannot do, by design:
//! - **No script of its own.** The host reduces the HTML to an allowlist
//!   (headings, text, lists, tables, links, forms and their fields,
//!   `details`): `<script>`, `<style>`, `style=`, event handlers,
//!   `javascript:` links, frames, `<meta>`, `<base>` and password fields
//!   are removed; `id`s get the prefix `pl-`; its policy allows scripts and
//!   styles only from the host's own two files. The host's stylesheet's
//!   classes (`card`, `list`, `badge`, `actions`, `danger`, `primary`,
//!   `muted`, `flash ok`/`flash err`, ...) are there to use.
//! - **Forms post to its own pages only** (`/p/hello/...`, as
//!   `application/x-www-form-urlencoded`). The host adds a token to every
//!   form and refuses a post without it, so forms need nothing for CSRF;
//!   the token is valid for this plugin's pages and nothing else (not the
//!   host's forms, not another plugin's). `data-confirm="Sure?"` on a form
//!   or button asks before it posts.
//! - **No access to the session**: cookies and credentials never reach the
//!   plugin; its `Set-Cookie` and security headers are dropped; a redirect
//!   may lead only to its own pages.
//! - **Live output without a script**: an element
//!   `<pre data-compose-output="STACK">` is followed live by the host's
//!   script (a Compose stack's action output, see [`compose`]).
//! - **Live pages without a script**: an entry may name topics of the
//!   plugin's own events (see "Live pages" below); the host then updates
//!   an open page whenever the plugin publishes one.
//!
//! ### Live pages
//!
//! ```toml
//! [capabilities]
//! events = { publish = ["hello.*"] }
//!
//! [[pages]]
//! title = "Hello"
//! live = ["hello.*"]   # `a.b` or `a.*`; each among `events.publish`
//! ```
//!
//! While such a page (the entry's path or any page under it) is open, the
//! host's script listens to the plugin's own events on these topics (never
//! another plugin's or the host's: a `live` topic the manifest does not
//! ask to publish is refused at load, naming `pages[N].live[M]`). On each
//! one, it fetches the page again through [`Plugin::handle_http`], as a
//! reload would (same caller, same sanitising), and swaps the content in
//! place: scroll, open `details` and typed field values are kept, and
//! while focus is in one of the page's forms the swap waits until focus
//! leaves it. So:
//! - publish with [`events::publish_json`] **after** storing what the page
//!   shows (with `max-instances` above 1 the fetch may run at once);
//! - the event's payload never reaches the page (only its topic does): the
//!   page is rendered for the user, as always;
//! - bursts are coalesced (one fetch at a time, one more after it), so an
//!   event per change is fine; the page answers a GET like any other;
//! - only pages answering a GET with 2xx are live (a form's answer with
//!   errors is not fetched again); without JavaScript a page is static.
//!
//! ```no_run
//! use wakedock_plugin_sdk::{ui, HttpRequest, HttpResponse};
//!
//! fn handle(req: &HttpRequest) -> HttpResponse {
//!     match (req.method.as_str(), req.path.as_str(), ui::page_base(req)) {
//!         ("GET", "/", Some(_)) => ui::page(
//!             "Hello",
//!             &format!("<h1>Hello</h1><p>{}</p>", ui::escape("<visitors> & friends")),
//!         ),
//!         ("POST", "/greet", Some(base)) => ui::redirect(base, "/", true, "Greeted."),
//!         _ => HttpResponse::not_found(),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! `plugins/example` has a complete page.
//!
//! ## Rules of the sandbox
//!
//! - **Only requested interfaces link.** The host reads which WakeDock
//!   interfaces the component imports (an interface is imported only if the
//!   plugin calls one of its functions) and refuses a component that imports
//!   one its manifest does not request. `log`, `clock`, `auth` and `types`
//!   are always available.
//! - **Grants and scopes are checked on every call**: a capability the
//!   admin did not grant, a container outside the granted label selector, a
//!   write with read access, an outbound host (or SMTP server) not in the
//!   allowlist or a topic not in `events.publish` returns
//!   [`Error::PermissionDenied`] (a rate past `max-requests-per-minute` or
//!   `max-messages-per-minute` is [`Error::QuotaExceeded`]). The
//!   host logs and audits each distinct refusal once per interval (10
//!   minutes by default, `plugin_runtime.denial_interval`), counting the
//!   repeats, and shows the latest as the plugin's last error: a plugin
//!   that tries something it may not do on every tick is visible without
//!   flooding the audit log.
//! - **No ambient authority**: no files, environment, arguments, sockets or
//!   stdio (writes to stdout/stderr are discarded). Time comes from [`clock`].
//! - **Limits**: each call has a CPU budget and a wall-time limit, and the
//!   instance has a memory cap. A trap, panic or breach fails that call;
//!   repeated failures disable the plugin for a growing back-off.
//! - **Instances are recycled.** The host keeps a few instances per plugin,
//!   may run calls on different instances concurrently, and replaces an
//!   instance after a number of calls or after it failed. `init` runs on each
//!   new instance. Treat fields of your [`Plugin`] type as a cache; keep
//!   durable state in [`storage`].
//!
//! ## Versioning
//!
//! The WIT package version is the plugin API version. Put the version this
//! SDK was built from ([`API_VERSION`]) in the manifest's `api-version`. A
//! host accepts a plugin of the same major version whose minor version is
//! not newer than its own; in `0.x` the patch level plays the minor's role
//! (a `0.1.0` plugin runs on a `0.1.1` host, not the other way round).

#![warn(missing_docs)]

// Lets the generated code and the exported macro name this crate by its
// public path both from inside the SDK and from plugin crates.
extern crate self as wakedock_plugin_sdk;

/// Raw bindings generated from `plugin-api/wit` by `wit-bindgen`.
///
/// Prefer the typed helpers of this crate; these are here for anything they
/// do not cover.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "wakedock_plugin_sdk::bindings",
        runtime_path: "wakedock_plugin_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// The plugin API version this SDK implements; use it as `api-version` in
/// `plugin.toml`.
pub const API_VERSION: &str = "0.1.4";

pub use bindings::wakedock::plugin::types::{
    ContainerEvent, ContainerEventKind, ContainerState, Error, Event, Health, HttpRequest,
    HttpResponse, PluginEvent,
};

/// A container as the plugin sees it.
pub use bindings::wakedock::plugin::types::Container;

/// Result of every fallible host call.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// The plugin's configuration: the manifest's `[config]` table merged with
/// the administrator's overrides, as JSON.
#[derive(Debug, Clone)]
pub struct Config {
    raw: String,
    value: serde_json::Value,
}

impl Config {
    /// Parses the JSON the host passes to `init`.
    pub fn from_json(raw: String) -> core::result::Result<Self, String> {
        let value = if raw.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&raw).map_err(|e| format!("config is not valid JSON: {e}"))?
        };
        Ok(Config { raw, value })
    }

    /// The JSON text as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed JSON value.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// A top-level entry.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.value.get(key)
    }

    /// A top-level string entry.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(|v| v.as_str())
    }

    /// A top-level integer entry.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.value.get(key).and_then(|v| v.as_u64())
    }

    /// Deserializes the whole configuration into `T`; the error names the
    /// offending field.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> core::result::Result<T, String> {
        serde_json::from_value(self.value.clone()).map_err(|e| format!("invalid config: {e}"))
    }
}

/// A WakeDock plugin.
///
/// One value of this type lives in each plugin instance, created by
/// [`Plugin::init`]. Methods take `&mut self`: calls into one instance never
/// overlap.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its configuration. An `Err` fails the load
    /// (or the instance) with that message.
    fn init(config: Config) -> core::result::Result<Self, String>;

    /// A container or event-bus event.
    fn on_event(&mut self, event: Event) {
        let _ = event;
    }

    /// Called every `tick-interval` (manifest).
    fn on_tick(&mut self) {}

    /// A request routed to `/api/v1/plugins/{name}{path}`; the caller is
    /// already authenticated ([`auth::caller`]). Defaults to 404.
    fn handle_http(&mut self, request: HttpRequest) -> HttpResponse {
        let _ = request;
        HttpResponse::not_found()
    }
}

/// Exports a [`Plugin`] implementation as the component's `handler`.
///
/// Use it once, at the crate root of a `cdylib`:
///
/// ```ignore
/// wakedock_plugin_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __WakedockPluginExport;

            impl $crate::bindings::exports::wakedock::plugin::handler::Guest for __WakedockPluginExport {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    let config = $crate::Config::from_json(config)?;
                    let plugin = <$ty as $crate::Plugin>::init(config)?;
                    INSTANCE.with(|cell| *cell.borrow_mut() = ::core::option::Option::Some(plugin));
                    ::core::result::Result::Ok(())
                }

                fn on_event(event: $crate::Event) {
                    $crate::__with_instance(&INSTANCE, |p: &mut $ty| $crate::Plugin::on_event(p, event));
                }

                fn on_tick() {
                    $crate::__with_instance(&INSTANCE, |p: &mut $ty| $crate::Plugin::on_tick(p));
                }

                fn handle_http(request: $crate::HttpRequest) -> $crate::HttpResponse {
                    $crate::__with_instance(&INSTANCE, |p: &mut $ty| $crate::Plugin::handle_http(p, request))
                        .unwrap_or_else(|| $crate::HttpResponse::error(503, "plugin not initialised"))
                }
            }

            $crate::bindings::__export_plugin_world!(__WakedockPluginExport with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub fn __with_instance<T: 'static, R>(
    key: &'static std::thread::LocalKey<core::cell::RefCell<Option<T>>>,
    f: impl FnOnce(&mut T) -> R,
) -> Option<R> {
    key.with(|cell| {
        let mut guard = cell.borrow_mut();
        match guard.as_mut() {
            Some(plugin) => Some(f(plugin)),
            None => {
                log::error("called before a successful init");
                None
            }
        }
    })
}

impl Error {
    /// A one-line description, for logs and HTTP error bodies.
    pub fn describe(&self) -> String {
        match self {
            Error::PermissionDenied(what) => format!("permission denied: {what}"),
            Error::NotFound => "not found".to_owned(),
            Error::QuotaExceeded => "quota exceeded".to_owned(),
            Error::Timeout => "timed out".to_owned(),
            Error::Unavailable(why) => format!("unavailable: {why}"),
            Error::Invalid(why) => format!("invalid: {why}"),
        }
    }
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name` (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> core::result::Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON body: {e}"))
    }
}

impl HttpResponse {
    /// A JSON response.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(body) => HttpResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            },
            Err(e) => HttpResponse::error(500, &format!("serializing response: {e}")),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// An error as RFC 7807 `application/problem+json`.
    pub fn error(status: u16, detail: &str) -> Self {
        let body = serde_json::json!({ "status": status, "detail": detail });
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        HttpResponse::error(404, "no such route")
    }
}

/// Logging into the host's log, tagged with the plugin's name.
pub mod log {
    use crate::bindings::wakedock::plugin::log as raw;
    pub use raw::Level;

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        raw::log(level, message);
    }
    /// Logs at trace level.
    pub fn trace(message: &str) {
        raw::log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        raw::log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        raw::log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        raw::log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        raw::log(Level::Error, message);
    }
}

/// Time, the only clock a plugin has.
pub mod clock {
    use crate::bindings::wakedock::plugin::clock as raw;

    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        raw::now_ms()
    }

    /// Monotonic nanoseconds from an arbitrary origin.
    pub fn monotonic_ns() -> u64 {
        raw::monotonic_ns()
    }
}

/// The per-plugin key-value store (capability `storage`).
pub mod storage {
    use crate::bindings::wakedock::plugin::storage as raw;
    use crate::{Error, Result};

    /// The value stored under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        raw::get(key)
    }

    /// Stores `value` under `key`; [`Error::QuotaExceeded`] past the quota.
    pub fn set(key: &str, value: &[u8]) -> Result<()> {
        raw::set(key, value)
    }

    /// Removes `key`; true if it existed.
    pub fn delete(key: &str) -> Result<bool> {
        raw::delete(key)
    }

    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(prefix: &str) -> Result<Vec<String>> {
        raw::list_keys(prefix)
    }

    /// Atomically replaces the value under `key` with `new` (`None`
    /// deletes it) if it is exactly `expected` (`None`: the key is absent).
    /// True if it did; false (and nothing changed) if another writer got
    /// there first. API 0.1.2.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        raw::compare_and_swap(key, expected, new)
    }

    /// The value under `key` parsed as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>> {
        match raw::get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Invalid(format!("stored value of {key} is not valid JSON: {e}"))
            }),
        }
    }

    /// Stores `value` as JSON under `key`.
    pub fn set_json<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))?;
        raw::set(key, &bytes)
    }
}

/// Docker containers (capability `containers`).
pub mod containers {
    use crate::bindings::wakedock::plugin::containers as raw;
    use crate::{Container, Result};
    pub use raw::{HttpProbe, LabelFilter, Probe, Readiness};

    /// Containers matching all `filters` (and the grant's selector).
    pub fn list(filters: &[LabelFilter], include_stopped: bool) -> Result<Vec<Container>> {
        raw::list(filters, include_stopped)
    }

    /// Every container visible to the plugin, running or not.
    pub fn list_all() -> Result<Vec<Container>> {
        raw::list(&[], true)
    }

    /// Containers carrying label `key` (with `value`, if given).
    pub fn with_label(key: &str, value: Option<&str>) -> Result<Vec<Container>> {
        let filter = LabelFilter {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        };
        raw::list(&[filter], true)
    }

    /// One container by id or name.
    pub fn inspect(id: &str) -> Result<Container> {
        raw::inspect(id)
    }

    /// Starts a container (needs `access = "write"`).
    pub fn start(id: &str) -> Result<()> {
        raw::start(id)
    }

    /// Stops a container (needs `access = "write"`).
    pub fn stop(id: &str, timeout_secs: Option<u32>) -> Result<()> {
        raw::stop(id, timeout_secs)
    }

    /// Restarts a container (needs `access = "write"`).
    pub fn restart(id: &str) -> Result<()> {
        raw::restart(id)
    }

    /// Waits, host-side, until the container is running and ready.
    pub fn await_ready(id: &str, timeout_ms: u32) -> Result<Readiness> {
        raw::await_ready(id, timeout_ms)
    }

    /// Freezes a running container (needs `access = "write"`). API 0.1.1.
    pub fn pause(id: &str) -> Result<()> {
        raw::pause(id)
    }

    /// Thaws a paused container (needs `access = "write"`). API 0.1.1.
    pub fn unpause(id: &str) -> Result<()> {
        raw::unpause(id)
    }

    /// Waits, host-side, until the container runs and `probe` passes.
    /// API 0.1.1.
    pub fn await_probe(id: &str, probe: &Probe, timeout_ms: u32) -> Result<()> {
        raw::await_probe(id, probe, timeout_ms)
    }

    /// Exit code of a container that is not running. API 0.1.1.
    pub fn exit_code(id: &str) -> Result<Option<i32>> {
        raw::exit_code(id)
    }

    /// Waits, host-side, until the container stops; its exit code. API 0.1.1.
    pub fn await_exit(id: &str, timeout_ms: u32) -> Result<i32> {
        raw::await_exit(id, timeout_ms)
    }

    impl Container {
        /// The value of label `key`, if set.
        pub fn label(&self, key: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
    }
}

/// The host's event bus (capability `events`).
pub mod events {
    use crate::bindings::wakedock::plugin::events as raw;
    use crate::{Error, Result};

    /// Publishes a JSON document on `topic`.
    pub fn publish(topic: &str, payload_json: &str) -> Result<()> {
        raw::publish(topic, payload_json)
    }

    /// Serializes `payload` and publishes it on `topic`.
    pub fn publish_json<T: serde::Serialize + ?Sized>(topic: &str, payload: &T) -> Result<()> {
        let json = serde_json::to_string(payload).map_err(|e| Error::Invalid(e.to_string()))?;
        raw::publish(topic, &json)
    }
}

/// Outbound HTTP (capability `http-outbound`).
pub mod http {
    use crate::bindings::wakedock::plugin::http_outbound as raw;
    use crate::{Error, Result};
    pub use raw::{Request, Response};

    /// Sends `request`; its host must be in the grant's allowlist.
    pub fn send(request: &Request) -> Result<Response> {
        raw::send(request)
    }

    /// A GET request.
    pub fn get(url: &str) -> Result<Response> {
        send(&Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        })
    }

    /// A POST with a JSON body.
    pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Invalid(e.to_string()))?;
        send(&Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            timeout_ms: None,
        })
    }
}

/// Host-collected container metrics and the plugin's own Prometheus metrics
/// (capability `metrics`).
pub mod metrics {
    use crate::bindings::wakedock::plugin::metrics as raw;
    use crate::Result;
    pub use raw::{ContainerStats, MetricDesc, MetricKind};

    /// Latest stats of one container.
    pub fn container_stats(id: &str) -> Result<ContainerStats> {
        raw::stats(id)
    }

    /// Latest stats of every visible container.
    pub fn all_container_stats() -> Result<Vec<ContainerStats>> {
        raw::all_stats()
    }

    fn register(
        name: &str,
        help: &str,
        kind: MetricKind,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<()> {
        raw::register(&MetricDesc {
            name: name.into(),
            help: help.into(),
            kind,
            label_names: labels.iter().map(|l| (*l).to_owned()).collect(),
            buckets: buckets.to_vec(),
        })
    }

    /// Registers a counter (idempotent).
    pub fn register_counter(name: &str, help: &str, labels: &[&str]) -> Result<()> {
        register(name, help, MetricKind::Counter, labels, &[])
    }

    /// Registers a gauge (idempotent).
    pub fn register_gauge(name: &str, help: &str, labels: &[&str]) -> Result<()> {
        register(name, help, MetricKind::Gauge, labels, &[])
    }

    /// Registers a histogram (idempotent); empty `buckets` uses the defaults.
    pub fn register_histogram(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<()> {
        register(name, help, MetricKind::Histogram, labels, buckets)
    }

    fn owned(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// Adds `value` to a counter.
    pub fn counter_add(name: &str, label_values: &[&str], value: f64) -> Result<()> {
        raw::counter_add(name, &owned(label_values), value)
    }

    /// Sets a gauge.
    pub fn gauge_set(name: &str, label_values: &[&str], value: f64) -> Result<()> {
        raw::gauge_set(name, &owned(label_values), value)
    }

    /// Records an observation in a histogram.
    pub fn histogram_observe(name: &str, label_values: &[&str], value: f64) -> Result<()> {
        raw::histogram_observe(name, &owned(label_values), value)
    }
}

/// The caller of the current `handle-http` call.
pub mod auth {
    use crate::bindings::wakedock::plugin::auth as raw;
    pub use raw::{Caller, Role};

    /// The authenticated caller, or `None` outside `handle_http`.
    pub fn caller() -> Option<Caller> {
        raw::current_caller()
    }

    /// Whether the caller holds `permission` (e.g. `containers:write`).
    pub fn has_permission(permission: &str) -> bool {
        raw::has_permission(permission)
    }
}

/// Following containers' logs without polling (capability
/// `container-logs`, API 0.1.4; it also needs `containers`, whose selector
/// bounds what a subscription covers).
///
/// A subscription is named and declarative: [`follow`](container_logs::follow)
/// sets what it covers (label terms, name globs, a regex the host matches,
/// so other lines never reach the plugin), and the host keeps it for the
/// plugin, whichever instance made it, until
/// [`unfollow`](container_logs::unfollow) or the plugin's unload. New lines
/// only (no history) of every matching container, including those that
/// start later, arrive in [`Plugin::on_event`] as a `plugin` event from
/// `host` on [`TOPIC`](container_logs::TOPIC); [`line`](container_logs::line)
/// reads it. Lines past the grant's `max-lines-per-second` are dropped and
/// counted in the next line's [`dropped`](container_logs::LogLine::dropped);
/// lines past `max-line-bytes` are cut and flagged.
///
/// ```no_run
/// use wakedock_plugin_sdk::{container_logs, Event};
///
/// // Once per instance is fine: the same request again changes nothing.
/// let errors = container_logs::FollowRequest {
///     labels: vec!["com.docker.compose.project=shop".into()],
///     names: vec![],
///     pattern: Some("(?i)error|panic".into()),
/// };
/// container_logs::follow("shop-errors", &errors).expect("follow");
///
/// // In on_event:
/// # let event: Event = unimplemented!();
/// if let Event::Plugin(ev) = &event {
///     if let Some(l) = container_logs::line(ev) {
///         let _ = (l.container_name, l.line);
///     }
/// }
/// ```
pub mod container_logs {
    use crate::bindings::wakedock::plugin::container_logs as raw;
    use crate::{PluginEvent, Result};
    pub use raw::FollowRequest;

    /// Topic of a delivered line's event (its source is `host`).
    pub const TOPIC: &str = "container.log";

    /// Creates subscription `name` or replaces what it covers.
    pub fn follow(name: &str, request: &FollowRequest) -> Result<()> {
        raw::follow(name, request)
    }

    /// Ends subscription `name`; true if it existed.
    pub fn unfollow(name: &str) -> Result<bool> {
        raw::unfollow(name)
    }

    /// The plugin's subscriptions, by name.
    pub fn following() -> Result<Vec<String>> {
        raw::following()
    }

    /// A delivered line: the payload of a [`TOPIC`] event.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct LogLine {
        /// The subscription it was delivered for.
        pub subscription: String,
        /// The engine's id of the container.
        pub container_id: String,
        /// Without the leading `/`.
        pub container_name: String,
        /// `stdout` or `stderr`.
        pub stream: String,
        /// Without its line ending; cut at the grant's `max-line-bytes`.
        pub line: String,
        /// Whether `line` was cut.
        pub truncated: bool,
        /// Unix ms the engine read it.
        pub at_ms: u64,
        /// Lines lost to the grant's `max-lines-per-second` since the
        /// previous line delivered to this plugin.
        pub dropped: u64,
    }

    /// The line `event` carries, if it is a log line from the host.
    pub fn line(event: &PluginEvent) -> Option<LogLine> {
        if event.source != "host" || event.topic != TOPIC {
            return None;
        }
        serde_json::from_str(&event.payload).ok()
    }
}

/// The stacks directory (capability `files`, API 0.1.3): paths relative to
/// it, `/`-separated, never out of it.
pub mod files {
    use crate::bindings::wakedock::plugin::files as raw;
    use crate::Result;
    pub use raw::Entry;

    /// Entries of directory `path` (`""`: the stacks directory), by name.
    pub fn list(path: &str) -> Result<Vec<Entry>> {
        raw::list(path)
    }

    /// One entry.
    pub fn stat(path: &str) -> Result<Entry> {
        raw::stat(path)
    }

    /// A whole file (at most 4 MiB).
    pub fn read(path: &str) -> Result<Vec<u8>> {
        raw::read(path)
    }

    /// A whole file as UTF-8 text (invalid bytes replaced); `None` if absent.
    pub fn read_text(path: &str) -> Result<Option<String>> {
        match raw::read(path) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(crate::Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or atomically replaces a file (needs `access = "write"`).
    pub fn write(path: &str, content: &[u8]) -> Result<()> {
        raw::write(path, content)
    }

    /// Creates a directory (needs `access = "write"`).
    pub fn create_dir(path: &str) -> Result<()> {
        raw::create_dir(path)
    }

    /// Removes a file or directory (`recursive` for a non-empty one).
    pub fn remove(path: &str, recursive: bool) -> Result<bool> {
        raw::remove(path, recursive)
    }

    /// Renames within the stacks directory.
    pub fn rename(from: &str, to: &str) -> Result<()> {
        raw::rename(from, to)
    }
}

/// Docker Compose projects in the stacks directory (capability `compose`,
/// API 0.1.3). The host runs the real `docker compose`.
pub mod compose {
    use crate::bindings::wakedock::plugin::compose as raw;
    pub use raw::{
        Action, ActionState, ActionStatus, ComposeError, Container, DownOptions, PullPolicy,
        UpOptions,
    };

    /// Result of a compose call.
    pub type Result<T> = core::result::Result<T, ComposeError>;

    /// Starts an action in the background; its id (`conflict` while one runs).
    pub fn start(project: &str, action: &Action) -> Result<String> {
        raw::start_action(project, action)
    }

    /// Waits (host-side) for an action to end, at most `timeout_ms`.
    pub fn wait(id: &str, timeout_ms: u32) -> Result<ActionStatus> {
        raw::await_action(id, timeout_ms)
    }

    /// The project's running action, else its last one.
    pub fn last(project: &str) -> Result<Option<ActionStatus>> {
        raw::last_action(project)
    }

    /// `docker compose config` as JSON; `files` and `env_file` (names in the
    /// project's folder) replace the defaults when given.
    pub fn config(project: &str, files: &[String], env_file: Option<&str>) -> Result<String> {
        raw::config(project, files, env_file)
    }

    /// `docker compose ps --all`.
    pub fn ps(project: &str) -> Result<Vec<Container>> {
        raw::ps(project)
    }

    /// The last `tail` log lines of `services` (all when empty).
    pub fn logs(project: &str, services: &[String], tail: u32) -> Result<Vec<String>> {
        raw::logs(project, services, tail)
    }

    /// Moves a project run from a folder outside the stacks directory into it.
    pub fn adopt(project: &str) -> Result<()> {
        raw::adopt(project)
    }

    impl ComposeError {
        /// A one-line description.
        pub fn describe(&self) -> String {
            match self {
                ComposeError::PermissionDenied(w) => format!("permission denied: {w}"),
                ComposeError::NotFound => "not found".into(),
                ComposeError::Invalid(w) => w.clone(),
                ComposeError::InvalidProject(lines) => lines.join("; "),
                ComposeError::Conflict(id) => {
                    format!("another action ({id}) is running on this stack")
                }
                ComposeError::Timeout => "timed out".into(),
                ComposeError::Unavailable(w) => format!("unavailable: {w}"),
            }
        }
    }
}

/// Pages in the host's browser UI (API 0.1.3); see the crate's
/// documentation, "Pages in the browser UI".
pub mod ui {
    use crate::{HttpRequest, HttpResponse};

    /// `Some(base)` (`/p/{plugin}`) when the request is for one of the
    /// plugin's pages, `None` for an API call.
    pub fn page_base(req: &HttpRequest) -> Option<&str> {
        req.header("x-wakedock-page")
    }

    /// An HTML fragment shown inside the host's layout, titled `title`.
    pub fn page(title: &str, html: &str) -> HttpResponse {
        page_with_status(200, title, html)
    }

    /// Like [`page`] with another status (422 for a form with errors).
    pub fn page_with_status(status: u16, title: &str, html: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![
                ("content-type".into(), "text/html; charset=utf-8".into()),
                ("x-wakedock-title".into(), title.replace(['\r', '\n'], " ")),
            ],
            body: html.as_bytes().to_vec(),
        }
    }

    /// After a form: to `path` (relative to `base`), with a message shown
    /// once on the next page (`ok` false: as an error).
    pub fn redirect(base: &str, path: &str, ok: bool, message: &str) -> HttpResponse {
        let flash = format!(
            "{} {}",
            if ok { "ok" } else { "error" },
            message.replace(['\r', '\n'], " ")
        );
        HttpResponse {
            status: 303,
            headers: vec![
                ("location".into(), format!("{base}{path}")),
                ("x-wakedock-flash".into(), flash),
            ],
            body: Vec::new(),
        }
    }

    /// Text made safe for HTML content and attribute values.
    pub fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    /// The fields of a posted form (`application/x-www-form-urlencoded`).
    pub fn form(req: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(&req.body).into_owned().collect()
    }
}

/// Outbound e-mail (capability `smtp`, API 0.1.4): the host builds the
/// message and speaks SMTP (STARTTLS, implicit TLS, or plain to a local
/// relay) to a server in the grant's `hosts`, within its
/// `max-messages-per-minute`.
///
/// ```no_run
/// use wakedock_plugin_sdk::smtp::{self, Mail, Security, Server};
///
/// let r = smtp::send(&Mail {
///     server: Server {
///         host: "smtp.example.org".into(),
///         port: 587,
///         security: Security::Starttls,
///         username: Some("alerts@example.org".into()),
///         password: Some("app-password".into()),
///         ca_pem: None,
///     },
///     from: "WakeDock <alerts@example.org>".into(),
///     to: vec!["ops@example.org".into()],
///     subject: "Disk almost full".into(),
///     text: "92 % used on /data".into(),
///     timeout_ms: None,
/// });
/// // A refused login or an unreachable server: `Error::Unavailable` with
/// // the server's answer (never the password).
/// # let _ = r;
/// ```
pub mod smtp {
    use crate::bindings::wakedock::plugin::smtp as raw;
    use crate::Result;
    pub use raw::{Mail, Security, Server};

    /// Sends `mail`; `Ok` once the server accepted it for delivery.
    pub fn send(mail: &Mail) -> Result<()> {
        raw::send(mail)
    }
}
