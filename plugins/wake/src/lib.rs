//! First-party `wake` plugin: the wake-on-request policy (issue 4).
//!
//! The policy lives in plain modules that never call the SDK, so they are
//! unit-tested natively:
//! - [`service`]: service definitions from config, API and labels,
//!   precedence and validation;
//! - [`order`]: start/stop waves from `depends_on`;
//! - [`session`]: sessions with absolute expiry, open-connection holds,
//!   adoption of running containers, sleep plans;
//! - [`state`]: the service state machine and the published `ServiceState`;
//! - [`ignore`]: user-agent and path ignore lists;
//! - [`schedule`]: windows during which a service is kept awake;
//! - [`route`]: Caddy routes from `wakedock.host`/`wakedock.port` labels
//!   (read by the host, which streams them to the Caddy bridge).
//!
//! The glue (`glue`, wasm only) wires them to the host.

pub mod ignore;
pub mod order;
pub mod route;
pub mod schedule;
pub mod service;
pub mod session;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod glue;
