//! First-party `wake` plugin: the wake-on-request policy (issue 4).
//!
//! The policy lives in plain modules that never call the SDK, so they are
//! unit-tested natively:
//! - [`service`]: service definitions from config, API and labels,
//!   precedence and validation;
//! - [`order`]: start/stop waves from `depends_on`;
//! - [`session`]: sessions with absolute expiry, open-connection holds,
//!   adoption of running containers, sleep plans;
//! - [`state`]: the published service states, and what an observation of
//!   the members says about changes made outside WakeDock;
//! - [`ignore`]: user-agent and path ignore lists;
//! - [`schedule`]: windows during which a service is kept awake;
//! - [`scope`]: which containers an install with a `wakedock.instance`
//!   name considers.
//! - [`records`]: reading what this and earlier versions stored (old
//!   state records, definitions this version cannot read kept as stored);
//! - [`route`]: Caddy routes from `wakedock.host`/`wakedock.port` labels
//!   (read by the host, which streams them to the Caddy bridge).
//!
//! [`contract`] holds the wire types shared with the host and the Caddy
//! bridge. The glue (`glue`, wasm only) wires it all to the host.

pub mod contract;
pub mod ignore;
pub mod order;
pub mod records;
pub mod route;
pub mod schedule;
pub mod scope;
pub mod service;
pub mod session;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod glue;
