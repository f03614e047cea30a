//! The plugin's storage (shared by all its instances), one key per fact so
//! concurrent instances never overwrite each other's:
//! - `state/{service}`: the last published [`ServiceState`], written only
//!   by compare-and-swap (a write based on a stale read fails instead of
//!   overwriting a newer state);
//! - `op/{service}`: the operation (wake or sleep) the host is running;
//! - `session/{service}`: the [`Session`] (absolute expiry);
//! - `ready/{container}`: the member passed its readiness rule (cleared
//!   when it stops: a listing cannot show a TCP/HTTP probe);
//! - `exit/{container}`: its last exit code, from the engine's events;
//! - `history/{service}`: the last wakes, for the UI;
//! - `schedule-attempt/{service}`: the last scheduled wake asked for;
//! - `scan/dirty-at`: when a container event or a definition change last
//!   made instances' cached listings stale;
//! - `api/services`: definitions made through `/api/v1/services`.

use serde::{Deserialize, Serialize};
use wakedock_plugin_sdk::{clock, events, log, storage, Error};

use crate::contract::{topics, ServiceRemoved, ServiceState, WakeRecord};
use crate::records::{ApiDefs, StoredState, LEGACY_PREFIXES};
use crate::service::Service;
use crate::session::{Session, Sessions};
use crate::state::{document, same, Next};

pub const API_SERVICES_KEY: &str = "api/services";
const SESSION_PREFIX: &str = "session/";
pub const STATE_PREFIX: &str = "state/";
const OP_PREFIX: &str = "op/";
const READY_PREFIX: &str = "ready/";
const EXIT_PREFIX: &str = "exit/";
const HISTORY_PREFIX: &str = "history/";
const HISTORY_LEN: usize = 20;
const SCHEDULE_ATTEMPT_PREFIX: &str = "schedule-attempt/";
const DIRTY_KEY: &str = "scan/dirty-at";
/// A sleep mark older than this is left by a call that died.
const SLEEP_OP_STALE_MS: u64 = 10 * 60 * 1000;

pub fn warn_on<T>(what: &str, r: Result<T, Error>) {
    if let Err(e) = r {
        log::warn(&format!("{what}: {}", e.describe()));
    }
}

// ---- sessions ----------------------------------------------------------------

pub fn session_of(service: &str) -> Option<Session> {
    storage::get_json(&format!("{SESSION_PREFIX}{service}"))
        .ok()
        .flatten()
}

pub fn put_session(service: &str, s: &Session) {
    warn_on(
        "saving a session",
        storage::set_json(&format!("{SESSION_PREFIX}{service}"), s),
    );
}

pub fn end_session(service: &str) {
    warn_on(
        "ending a session",
        storage::delete(&format!("{SESSION_PREFIX}{service}")),
    );
}

pub fn all_sessions() -> Sessions {
    let mut sessions = Sessions::default();
    let keys = storage::list_keys(SESSION_PREFIX).unwrap_or_default();
    for key in keys {
        if let Ok(Some(s)) = storage::get_json::<Session>(&key) {
            sessions
                .sessions
                .insert(key[SESSION_PREFIX.len()..].to_owned(), s);
        }
    }
    sessions
}

// ---- definitions ---------------------------------------------------------

/// The services defined through the API, whichever version stored them
/// (see [`ApiDefs`]). A storage error is an error: a caller that went on
/// with an empty list would erase every definition at its next write.
pub fn api_defs() -> Result<ApiDefs, Error> {
    Ok(ApiDefs::decode(storage::get(API_SERVICES_KEY)?.as_deref()))
}

pub fn put_api_defs(defs: &ApiDefs) -> Result<(), Error> {
    storage::set_json(API_SERVICES_KEY, &defs.to_json())
}

/// Removes the records only earlier versions wrote (see
/// [`crate::records::LEGACY_PREFIXES`]).
pub fn drop_legacy_records() {
    for prefix in LEGACY_PREFIXES {
        for key in storage::list_keys(prefix).unwrap_or_default() {
            warn_on("removing an old record", storage::delete(&key));
        }
    }
}

// ---- members: readiness and exit codes -------------------------------------

pub fn mark_ready(container: &str, ready: bool) {
    let key = format!("{READY_PREFIX}{container}");
    if ready {
        warn_on("marking ready", storage::set_json(&key, &true));
    } else {
        let _ = storage::delete(&key);
    }
}

pub fn marked_ready(container: &str) -> bool {
    storage::get_json::<bool>(&format!("{READY_PREFIX}{container}"))
        .ok()
        .flatten()
        .unwrap_or(false)
}

pub fn set_exit_code(container: &str, code: Option<i32>) {
    let key = format!("{EXIT_PREFIX}{container}");
    match code {
        Some(c) => warn_on("saving an exit code", storage::set_json(&key, &c)),
        None => {
            let _ = storage::delete(&key);
        }
    }
}

pub fn exit_code(container: &str) -> Option<i32> {
    storage::get_json(&format!("{EXIT_PREFIX}{container}"))
        .ok()
        .flatten()
}

// ---- history and schedules -------------------------------------------------

pub fn history(service: &str) -> Vec<WakeRecord> {
    storage::get_json(&format!("{HISTORY_PREFIX}{service}"))
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn record_wake(service: &str, rec: WakeRecord) {
    let mut h = history(service);
    h.insert(0, rec);
    h.truncate(HISTORY_LEN);
    warn_on(
        "saving wake history",
        storage::set_json(&format!("{HISTORY_PREFIX}{service}"), &h),
    );
}

/// Whether a scheduled wake of `service` may be asked for now (at most
/// once per `every_ms`); records the attempt if so.
pub fn schedule_attempt_due(service: &str, now: u64, every_ms: u64) -> bool {
    let key = format!("{SCHEDULE_ATTEMPT_PREFIX}{service}");
    let last: u64 = storage::get_json(&key).ok().flatten().unwrap_or(0);
    if now.saturating_sub(last) < every_ms {
        return false;
    }
    warn_on("saving a schedule attempt", storage::set_json(&key, &now));
    true
}

// ---- cached listings -------------------------------------------------------

/// Containers or definitions changed: instances' cached listings taken
/// before now are stale.
pub fn mark_dirty() {
    warn_on(
        "marking listings stale",
        storage::set_json(DIRTY_KEY, &clock::now_ms()),
    );
}

pub fn dirty_at() -> u64 {
    storage::get_json(DIRTY_KEY).ok().flatten().unwrap_or(0)
}

// ---- operations ----------------------------------------------------------

/// An operation the host is running on a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Wake,
    Sleep,
}

#[derive(Debug, Serialize, Deserialize)]
struct OpMark {
    kind: OpKind,
    at_ms: u64,
}

/// Marks the operation on `service` until the returned guard drops.
pub fn begin_op(service: &str, kind: OpKind) -> OpGuard {
    let key = format!("{OP_PREFIX}{service}");
    warn_on(
        "marking an operation",
        storage::set_json(
            &key,
            &OpMark {
                kind,
                at_ms: clock::now_ms(),
            },
        ),
    );
    OpGuard { key }
}

/// Clears an operation's mark when the operation ends, however it ends.
pub struct OpGuard {
    key: String,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let _ = storage::delete(&self.key);
    }
}

/// Whether an operation runs on `s` (a mark left by a call that died
/// stops counting after the operation's longest possible run).
pub fn op_running(s: &Service, now: u64) -> bool {
    let Some(mark) = storage::get_json::<OpMark>(&format!("{OP_PREFIX}{}", s.name))
        .ok()
        .flatten()
    else {
        return false;
    };
    let longest = match mark.kind {
        OpKind::Wake => s.wake_timeout_ms + 10_000,
        OpKind::Sleep => SLEEP_OP_STALE_MS,
    };
    now < mark.at_ms.saturating_add(longest)
}

/// The host (re)started: no operation runs, whatever marks say.
pub fn clear_ops() {
    for key in storage::list_keys(OP_PREFIX).unwrap_or_default() {
        let _ = storage::delete(&key);
    }
}

// ---- states --------------------------------------------------------------

/// A service's stored state as read: the raw bytes (what a
/// compare-and-swap must expect) and what they say (a record from an
/// older plugin version is read as such, see [`StoredState`], and
/// rewritten by the next write).
#[derive(Debug, Clone)]
pub struct Stored {
    raw: Option<Vec<u8>>,
    state: StoredState,
}

impl Default for Stored {
    fn default() -> Self {
        Stored {
            raw: None,
            state: StoredState::Unreadable,
        }
    }
}

impl Stored {
    fn from_raw(raw: Option<Vec<u8>>) -> Self {
        let state = raw
            .as_deref()
            .map_or(StoredState::Unreadable, StoredState::decode);
        Stored { raw, state }
    }

    /// The stored document of `s` (an older version's record as the
    /// document it stands for).
    pub fn doc(&self, s: &Service) -> Option<ServiceState> {
        self.state.document(s)
    }

    /// What to publish after observing `s`'s members (see
    /// [`StoredState::observe`]).
    pub fn observe(
        &self,
        s: &Service,
        members: &std::collections::BTreeMap<String, crate::contract::MemberStatus>,
    ) -> Option<Next> {
        self.state.observe(s, members)
    }

    /// The document as this version stored it.
    pub fn current(self) -> Option<ServiceState> {
        match self.state {
            StoredState::Current(doc) => Some(doc),
            _ => None,
        }
    }

    fn seq(&self) -> u64 {
        match &self.state {
            StoredState::Current(d) => d.seq,
            _ => 0,
        }
    }
}

pub fn read_state(service: &str) -> Stored {
    Stored::from_raw(
        storage::get(&format!("{STATE_PREFIX}{service}"))
            .ok()
            .flatten(),
    )
}

/// Every stored state, by service name.
pub fn all_states() -> std::collections::BTreeMap<String, Stored> {
    storage::list_keys(STATE_PREFIX)
        .unwrap_or_default()
        .into_iter()
        .map(|key| {
            let raw = storage::get(&key).ok().flatten();
            (key[STATE_PREFIX.len()..].to_owned(), Stored::from_raw(raw))
        })
        .collect()
}

/// Outcome of a state write.
#[derive(Debug, PartialEq, Eq)]
pub enum Swap {
    /// Stored and published.
    Published,
    /// The stored document already says this.
    Unchanged,
    /// Another writer changed the state since `expected` was read.
    Lost,
}

/// Stores `next` for `s` if the stored state is still `expected`, and
/// publishes it. `expected` becomes what is stored now.
pub fn swap_state(s: &Service, expected: &mut Stored, next: Next) -> Swap {
    let doc = document(s, next, expected.seq(), clock::now_ms());
    if let StoredState::Current(stored) = &expected.state {
        if same(stored, &doc) {
            return Swap::Unchanged;
        }
    }
    let bytes = match serde_json::to_vec(&doc) {
        Ok(b) => b,
        Err(e) => {
            log::warn(&format!("encoding a state: {e}"));
            return Swap::Lost;
        }
    };
    let key = format!("{STATE_PREFIX}{}", s.name);
    match storage::compare_and_swap(&key, expected.raw.as_deref(), Some(&bytes)) {
        Ok(true) => {
            warn_on(
                "publishing wake.state",
                events::publish_json(topics::STATE, &doc),
            );
            *expected = Stored {
                raw: Some(bytes),
                state: StoredState::Current(doc),
            };
            Swap::Published
        }
        Ok(false) => Swap::Lost,
        Err(e) => {
            log::warn(&format!("saving a state: {}", e.describe()));
            Swap::Lost
        }
    }
}

/// How an operation writes its service's states: the operation owns the
/// service (the host runs one at a time), so a write lost to a stale
/// observation is retried on the fresh value rather than dropped.
pub struct StateWriter<'a> {
    service: &'a Service,
    stored: Stored,
}

impl<'a> StateWriter<'a> {
    pub fn new(service: &'a Service, stored: Stored) -> Self {
        StateWriter { service, stored }
    }

    pub fn put(&mut self, next: Next) {
        for _ in 0..5 {
            match swap_state(self.service, &mut self.stored, next.clone()) {
                Swap::Published | Swap::Unchanged => return,
                Swap::Lost => self.stored = read_state(&self.service.name),
            }
        }
        log::warn(&format!(
            "service \"{}\": could not save its state (storage busy)",
            self.service.name
        ));
    }
}

/// Forgets a service that no longer exists, and tells the host.
pub fn remove_state(service: &str, expected: &Stored) {
    let key = format!("{STATE_PREFIX}{service}");
    if let Ok(true) = storage::compare_and_swap(&key, expected.raw.as_deref(), None) {
        warn_on(
            "publishing wake.removed",
            events::publish_json(
                topics::REMOVED,
                &ServiceRemoved {
                    service: service.to_owned(),
                },
            ),
        );
    }
}
