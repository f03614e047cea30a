//! WakeDock: a self-hosted Docker manager that puts idle containers to sleep
//! and wakes them when a request arrives.
//!
//! # Layout
//! - [`config`]: the typed configuration (figment: defaults < file < env).
//! - [`db`]: SQLite, PostgreSQL or MySQL/MariaDB through diesel, on the blocking pool;
//!   migrations embedded from `migrations/`.
//! - [`docker`]: the container capability, the only code that talks to the
//!   Docker engine; survives the engine going away.
//! - [`auth`]: passwords, JWT access tokens, rotating refresh tokens, CSRF,
//!   rate limits, and the [`auth::AuthUser`] extractor that enforces roles.
//! - [`api`]: the HTTP handlers of `/api/v1`, `/health` and `/metrics`,
//!   annotated for the OpenAPI document.
//! - [`plugins`]: installs and runs WebAssembly plugins (the runtime is
//!   the `wakedock-plugin-runtime` crate) and implements their
//!   capabilities on top of the ones above; [`events`] is the event bus.
//! - [`wake`]: wake-on-request, host side (service states for the Caddy
//!   bridge; in progress).
//! - [`routes`]: Caddy sites from `wakedock.host` labels, streamed to the
//!   bridge.
//! - [`stacks`]: Compose stacks, host side: the `files` and `compose`
//!   capabilities, confined to the stacks directory.
//! - [`ui`]: the browser UI (askama pages, live updates, embedded assets).
//! - [`http`]: [`http::app`] assembles router and middleware from an
//!   [`AppState`], with no socket, so tests can drive it directly.
//! - [`server`]: [`server::run`] serves an app on a listener until a
//!   shutdown future resolves (tests bind port 0).
//! - [`backup`]: backup and restore in one backend-neutral file, and the
//!   backup schedule; [`retention`] prunes the audit log.
//! - [`cli`]: the `wakedock` command line; [`banner`] its start banner;
//!   [`healthcheck`] is its `healthcheck` subcommand (the container image's
//!   HEALTHCHECK); [`malloc_tuning`] re-runs the binary with the glibc
//!   malloc setting that keeps its memory bounded.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod backup;
pub mod banner;
pub mod cli;
pub mod config;
pub mod container_env;
pub mod db;
pub mod docker;
pub mod error;
pub mod events;
pub mod healthcheck;
pub mod http;
pub mod malloc_tuning;
pub mod metrics;
pub mod plugins;
pub mod private_files;
pub mod retention;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod stacks;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod ui;
pub mod wake;

pub use error::{ApiError, ApiResult};
pub use state::AppState;
