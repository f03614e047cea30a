//! The wake-on-request wire types, defined once: what the wake plugin
//! answers the host, what the host publishes to Caddy bridges
//! (`/api/v1/wake/*`) and what `/api/v1/services` serves.
//!
//! The host uses these types natively (with the `schema` feature, which
//! derives their OpenAPI schemas); the plugin serializes them; the Go
//! bridge mirrors the bridge-facing ones (`caddy-bridge/state.go`), and a
//! golden-JSON test on each side keeps the three in step
//! (`caddy-bridge/testdata/contract/`, written by
//! `host/src/wake/golden.rs`, decoded by `caddy-bridge/contract_test.go`
//! with unknown fields refused).
//!
//! Serde only: nothing here calls the SDK.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::service::{SleepMode, Source, ValidationError};

#[cfg(feature = "schema")]
use utoipa::ToSchema;

/// The state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    /// Not serving; the next request wakes it.
    Asleep,
    /// A wake is running (only a wake operation publishes this).
    Waking,
    /// Every required member is running and ready.
    Awake,
    /// A sleep is running (only a sleep operation publishes this).
    GoingToSleep,
    /// The last wake or sleep failed, or a member is missing; `reason` says why.
    Failed,
}

impl StateName {
    /// Every state, in the order of the lifecycle.
    pub const ALL: [StateName; 5] = [
        StateName::Asleep,
        StateName::Waking,
        StateName::Awake,
        StateName::GoingToSleep,
        StateName::Failed,
    ];

    /// `asleep`, `waking`, `awake`, `going-to-sleep` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Asleep => "asleep",
            StateName::Waking => "waking",
            StateName::Awake => "awake",
            StateName::GoingToSleep => "going-to-sleep",
            StateName::Failed => "failed",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request for a sleeping service is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Hold the request until the service is ready (or the wake timeout).
    #[default]
    Blocking,
    /// Answer browsers with the waiting page, which reloads when the
    /// service is awake; hold other requests.
    Dynamic,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Blocking => "blocking",
            Strategy::Dynamic => "dynamic",
        })
    }
}

impl Strategy {
    /// Parses `blocking` / `dynamic`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "blocking" => Ok(Strategy::Blocking),
            "dynamic" => Ok(Strategy::Dynamic),
            other => Err(format!(
                "unknown strategy \"{other}\" (use \"blocking\" or \"dynamic\")"
            )),
        }
    }
}

/// What WakeDock knows of one member, in a [`ServiceState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MemberPhase {
    /// A wake will start it after the members it depends on.
    Waiting,
    /// Started by the wake; not ready yet.
    Starting,
    /// Passed its readiness rule.
    Ready,
    /// A one-shot member that ran to completion (exit 0).
    Done,
    /// Could not start, or failed its readiness rule.
    Failed,
    /// WakeDock put it to sleep (stopped or paused); a request wakes it.
    Asleep,
    /// Stopped outside WakeDock (a crash, `docker stop` by hand).
    Stopped,
}

impl MemberPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberPhase::Waiting => "waiting",
            MemberPhase::Starting => "starting",
            MemberPhase::Ready => "ready",
            MemberPhase::Done => "done",
            MemberPhase::Failed => "failed",
            MemberPhase::Asleep => "asleep",
            MemberPhase::Stopped => "stopped",
        }
    }
}

impl fmt::Display for MemberPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member and its phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberProgress {
    /// Container name.
    pub name: String,
    pub status: MemberPhase,
}

/// A service's state: published by the wake plugin (event `wake.state`),
/// kept by the host's hub, streamed to bridges (`/api/v1/wake/subscribe`)
/// and shown by every page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    pub service: String,
    pub state: StateName,
    pub strategy: Strategy,
    pub wake_timeout_ms: u64,
    /// Requests whose User-Agent contains one of these (case-insensitive)
    /// neither wake the service nor count as activity.
    pub ignore_user_agents: Vec<String>,
    /// Requests whose path starts with one of these, likewise.
    pub ignore_paths: Vec<String>,
    pub display_name: String,
    /// Why the service is `failed`, or why it went `asleep` on its own (a
    /// member stopped outside WakeDock).
    pub reason: Option<String>,
    /// The waiting page's theme (`auto`, `light`, `dark`, or a name).
    pub theme: Option<String>,
    /// Members with something to say: progress while `waking` (and at a
    /// failure), `asleep` for members WakeDock put to sleep, `stopped` for
    /// members that stopped outside WakeDock. Empty when `awake`.
    pub members: Vec<MemberProgress>,
    /// Grows with every change of this service's state; a consumer keeps
    /// the document with the highest `seq` (events may cross on the way).
    pub seq: u64,
}

impl ServiceState {
    /// The phase of member `name`, if the document lists it.
    pub fn member(&self, name: &str) -> Option<MemberPhase> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.status)
    }
}

/// The first event of `/api/v1/wake/subscribe` (and the answer of the wake
/// plugin's `POST /resume`): every service's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub services: Vec<ServiceState>,
}

/// Event `wake.removed`: the service no longer exists (its definition was
/// deleted or became invalid, or its labelled containers are gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceRemoved {
    pub service: String,
}

/// Why a wake or a sleep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OpReason {
    /// A request arrived through a bridge.
    Request,
    /// A schedule window began.
    Schedule,
    /// The idle timeout passed.
    Idle,
    /// A user asked (API or page).
    Manual,
}

impl OpReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OpReason::Request => "request",
            OpReason::Schedule => "schedule",
            OpReason::Idle => "idle",
            OpReason::Manual => "manual",
        }
    }

    /// Parses the query value of `POST /sleep/{service}?reason=`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    const ALL: [OpReason; 4] = [
        OpReason::Request,
        OpReason::Schedule,
        OpReason::Idle,
        OpReason::Manual,
    ];
}

impl fmt::Display for OpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events `wake.sleep-due` and `wake.wake-due`: the plugin's tick found a
/// service due (idle timeout passed, schedule window began) and asks the
/// host, which owns every operation, to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OpRequest {
    pub service: String,
    pub reason: OpReason,
}

/// Topics of the events above.
pub mod topics {
    pub const STATE: &str = "wake.state";
    pub const REMOVED: &str = "wake.removed";
    pub const SLEEP_DUE: &str = "wake.sleep-due";
    pub const WAKE_DUE: &str = "wake.wake-due";
}

/// The answer to a wake: the service is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Woken {
    pub service: String,
    /// Always `awake`.
    pub state: StateName,
    /// How long the wake operation that did the work took (0 if the
    /// service was already awake).
    pub waited_ms: u64,
}

/// The answer to a sleep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Slept {
    pub service: String,
    /// Always `asleep`.
    pub state: StateName,
}

/// Activity counts of one service in a bridge's batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivityCounts {
    /// Requests since the previous report.
    #[serde(default)]
    pub requests: u64,
    /// Long-lived connections open now (WebSocket, SSE, streaming).
    #[serde(default)]
    pub open_connections: u64,
}

/// A bridge's activity batch (`POST /api/v1/wake/activity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivityReport {
    pub services: BTreeMap<String, ActivityCounts>,
}

/// The stable error codes of the wake plugin's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 504: the service was not ready within its wake timeout.
    WakeTimeout,
    /// 404.
    UnknownService,
    /// 502: a member could not start or failed its readiness rule.
    WakeFailed,
    /// 422, with per-field `errors`.
    InvalidService,
    /// 409.
    ServiceExists,
    /// 409: the config file defines it (and wins).
    DefinedInConfig,
    /// 409: `sleepable: false`.
    NotSleepable,
    /// 409: an idle sleep found the service in use again.
    NotIdle,
    /// 502: a member could not be stopped or paused.
    SleepFailed,
    /// 503.
    DockerUnavailable,
    /// 503.
    StorageUnavailable,
    /// 400.
    InvalidBody,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::WakeTimeout => "wake_timeout",
            ErrorCode::UnknownService => "unknown_service",
            ErrorCode::WakeFailed => "wake_failed",
            ErrorCode::InvalidService => "invalid_service",
            ErrorCode::ServiceExists => "service_exists",
            ErrorCode::DefinedInConfig => "defined_in_config",
            ErrorCode::NotSleepable => "not_sleepable",
            ErrorCode::NotIdle => "not_idle",
            ErrorCode::SleepFailed => "sleep_failed",
            ErrorCode::DockerUnavailable => "docker_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InvalidBody => "invalid_body",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidBody => 400,
            ErrorCode::UnknownService => 404,
            ErrorCode::ServiceExists
            | ErrorCode::DefinedInConfig
            | ErrorCode::NotSleepable
            | ErrorCode::NotIdle => 409,
            ErrorCode::InvalidService => 422,
            ErrorCode::WakeFailed | ErrorCode::SleepFailed => 502,
            ErrorCode::DockerUnavailable | ErrorCode::StorageUnavailable => 503,
            ErrorCode::WakeTimeout => 504,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wake plugin's error answer (problem+json shaped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub status: u16,
    pub code: ErrorCode,
    pub detail: String,
    /// Per-field problems of an invalid service definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ValidationError>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ErrorBody {
            status: code.status(),
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
}

// ---- /api/v1/services --------------------------------------------------

/// A service's definition after defaults and precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceDefinition {
    pub name: String,
    pub display_name: String,
    /// Container names (for a selector service, the containers carrying
    /// its label now).
    pub members: Vec<String>,
    /// `key=value`: members are the containers carrying that label.
    pub selector: Option<String>,
    pub optional: Vec<String>,
    pub one_shot: Vec<String>,
    pub depends_on: BTreeMap<String, Vec<String>>,
    /// member → `docker-health` | `tcp:PORT` | `http:PORT/PATH`.
    pub ready: BTreeMap<String, String>,
    pub idle_timeout_ms: u64,
    pub wake_timeout_ms: u64,
    pub sleep_mode: SleepMode,
    pub strategy: Strategy,
    pub theme: Option<String>,
    pub ignore_user_agents: Vec<String>,
    pub ignore_paths: Vec<String>,
    pub sleepable: bool,
    /// Windows kept awake, e.g. `mon-fri 08:00-18:00`.
    pub schedule: Vec<String>,
    /// Minutes east of UTC of the schedule's times.
    pub utc_offset_min: i32,
    /// Which definition won.
    pub source: Source,
    /// Other sources that also define this name (lower precedence).
    pub shadowed: Vec<Source>,
}

/// A member container as observed in Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(tag = "state", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MemberStatus {
    /// No such container.
    Missing,
    Created,
    /// Running; `ready` per the member's readiness rule (never merely
    /// because it runs).
    Running {
        ready: bool,
    },
    Paused,
    Restarting,
    Removing,
    /// Exited, with its exit code when WakeDock saw it exit.
    Exited {
        exit_code: Option<i32>,
    },
    Dead,
}

impl MemberStatus {
    /// Running or restarting.
    pub fn active(self) -> bool {
        matches!(
            self,
            MemberStatus::Running { .. } | MemberStatus::Restarting
        )
    }
}

/// One member of a service in `/api/v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberView {
    pub name: String,
    /// What Docker says.
    pub status: MemberStatus,
    /// What WakeDock says (from the service's state), if anything.
    pub phase: Option<MemberPhase>,
}

/// A service's session: when it may go to sleep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionView {
    /// Absolute Unix ms after which the service may sleep.
    pub expires_at_ms: u64,
    pub remaining_ms: u64,
    pub last_activity_ms: u64,
    pub open_connections: u64,
    pub requests: u64,
    /// Created for containers found running (not by a wake).
    pub adopted: bool,
}

/// How a wake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum WakeResult {
    Ok,
    Timeout,
    Failed,
}

/// One wake, for the service's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WakeRecord {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub result: WakeResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One service in `/api/v1/services`: definition, state (the host's hub,
/// the same document every page and bridge sees), members, session and
/// recent wakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceView {
    pub service: ServiceDefinition,
    pub state: ServiceState,
    pub members: Vec<MemberView>,
    pub session: Option<SessionView>,
    pub history: Vec<WakeRecord>,
}

/// `GET /api/v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceList {
    pub services: Vec<ServiceView>,
    /// Definitions that could not be used, naming the service and field.
    pub errors: Vec<ValidationError>,
    pub now_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_codes_round_trip() {
        for s in StateName::ALL {
            let v = serde_json::to_value(s).unwrap();
            assert_eq!(v, json!(s.as_str()));
            assert_eq!(serde_json::from_value::<StateName>(v).unwrap(), s);
        }
        for c in [
            ErrorCode::WakeTimeout,
            ErrorCode::UnknownService,
            ErrorCode::NotIdle,
            ErrorCode::InvalidBody,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        assert_eq!(ErrorCode::WakeTimeout.status(), 504);
        assert_eq!(OpReason::parse("idle"), Some(OpReason::Idle));
        assert_eq!(OpReason::parse("nap"), None);
    }

    #[test]
    fn member_status_is_json_not_debug_text() {
        let v = serde_json::to_value(MemberView {
            name: "app".into(),
            status: MemberStatus::Running { ready: true },
            phase: None,
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"name": "app", "status": {"state": "running", "ready": true}, "phase": null})
        );
        let v = serde_json::to_value(MemberStatus::Exited {
            exit_code: Some(137),
        })
        .unwrap();
        assert_eq!(v, json!({"state": "exited", "exit_code": 137}));
    }

    #[test]
    fn error_bodies_are_typed() {
        let e: ErrorBody = serde_json::from_value(
            json!({"status": 504, "code": "wake_timeout", "detail": "too slow"}),
        )
        .unwrap();
        assert_eq!(e.code, ErrorCode::WakeTimeout);
        assert!(serde_json::from_value::<ErrorBody>(
            json!({"status": 418, "code": "teapot", "detail": "x"})
        )
        .is_err());
    }
}
