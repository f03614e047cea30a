//! First-party `stacks` plugin (issue 11): Docker Compose stacks kept in the
//! host's stacks directory, the layout Dockge uses (one folder per stack
//! with `compose.yaml` and an optional `.env`), run with the real
//! `docker compose` through the host's `compose` capability. Files on disk
//! are the source of truth: an edit made with any editor is what the next
//! page shows and the next deploy uses.
//!
//! Policy modules, unit-tested natively (they never call the SDK):
//! - [`model`]: stacks from folders, Compose's container labels and the
//!   wake plugin's states (running, partial, stopped, sleeping);
//! - [`validate`]: field-level checks of compose files and `.env` before
//!   Compose's own `config` has the final word;
//! - [`render`]: the pages, as HTML fragments for the host's layout.
//!
//! The glue (`glue`, wasm only) holds the routes: JSON under
//! `/api/v1/plugins/stacks/...` and pages under `/p/stacks/...` (the same
//! routes; see `docs/stacks-api.md`).

pub mod model;
pub mod render;
pub mod validate;

#[cfg(target_arch = "wasm32")]
mod glue;
