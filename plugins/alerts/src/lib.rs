//! First-party `alerts` plugin (issue 12): notices what goes wrong within
//! a second, tells people once, and never calls a sleeping service down.
//!
//! The policy lives in plain modules that never call the SDK, so they are
//! unit-tested natively:
//! - [`selector`]: which containers a rule watches;
//! - [`rule`]: rule definitions and their validation (a bad rule names
//!   its field);
//! - [`facts`]: what is known of each container and wake service, and
//!   whether a rule's condition holds for it (a container WakeDock
//!   stopped is asleep, not down);
//! - [`alert`]: the per rule and target state machine (`for`, firing,
//!   resolved, resend, cooldown);
//! - [`suppress`]: silences and maintenance windows;
//! - [`channel`]: notification channels, their payloads and secrets;
//! - [`email`]: the e-mail channel's settings and letters (sent through
//!   the host's `smtp` capability);
//! - [`outbox`]: deliveries, retries with backoff, channel health;
//! - [`history`]: alert records, paging and retention;
//! - [`config`]: the plugin's configuration (the config file's rules and
//!   channels), also checked by the host before it starts.
//!
//! [`contract`] holds the host events the plugin reads. The glue (`glue`,
//! wasm only) wires it all to the host.

pub mod alert;
pub mod channel;
pub mod config;
pub mod contract;
pub mod email;
pub mod facts;
pub mod history;
pub mod outbox;
pub mod rule;
pub mod selector;
pub mod suppress;

#[cfg(target_arch = "wasm32")]
mod glue;
