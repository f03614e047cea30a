//! Golden JSON of the host ⇄ bridge contract: the documents the host sends
//! the Caddy bridge (and the activity report it receives), as checked-in
//! files under `caddy-bridge/testdata/contract/`. This test checks the
//! Rust serialization against them; `caddy-bridge/contract_test.go`
//! decodes the same files refusing unknown fields, so neither side can
//! change the wire format without the other noticing.
//!
//! After a deliberate change: `WAKEDOCK_UPDATE_GOLDEN=1 cargo test -p
//! wakedock --lib golden`, then update `state.go` until the Go test passes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use serde::Serialize;

use super::contract::*;
use crate::error::ApiError;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../caddy-bridge/testdata/contract")
}

fn check(name: &str, value: &impl Serialize) {
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    let path = dir().join(name);
    if std::env::var_os("WAKEDOCK_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (WAKEDOCK_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        text, golden,
        "{name} changed: if on purpose, WAKEDOCK_UPDATE_GOLDEN=1 and update caddy-bridge/state.go"
    );
}

fn asleep() -> ServiceState {
    ServiceState {
        service: "blog".into(),
        state: StateName::Asleep,
        strategy: Strategy::Dynamic,
        wake_timeout_ms: 30_000,
        ignore_user_agents: vec!["UptimeRobot".into()],
        ignore_paths: vec!["/healthz".into()],
        display_name: "My Blog".into(),
        reason: None,
        theme: Some("dark".into()),
        members: vec![
            MemberProgress {
                name: "blog-app".into(),
                status: MemberPhase::Asleep,
            },
            MemberProgress {
                name: "blog-db".into(),
                status: MemberPhase::Asleep,
            },
        ],
        seq: 1_764_000_000_001,
    }
}

fn failed() -> ServiceState {
    ServiceState {
        service: "api".into(),
        state: StateName::Failed,
        strategy: Strategy::Blocking,
        wake_timeout_ms: 60_000,
        ignore_user_agents: vec![],
        ignore_paths: vec![],
        display_name: "api".into(),
        reason: Some("\"api-app\": unavailable: the container exited with code 1".into()),
        theme: None,
        members: vec![
            MemberProgress {
                name: "api-db".into(),
                status: MemberPhase::Ready,
            },
            MemberProgress {
                name: "api-app".into(),
                status: MemberPhase::Failed,
            },
        ],
        seq: 1_764_000_000_002,
    }
}

#[tokio::test]
async fn the_bridge_contract_matches_its_golden_files() {
    let snapshot = Snapshot {
        services: vec![asleep(), failed()],
    };
    check("snapshot.json", &snapshot);
    let mut waking = asleep();
    waking.state = StateName::Waking;
    waking.members = vec![
        MemberProgress {
            name: "blog-db".into(),
            status: MemberPhase::Ready,
        },
        MemberProgress {
            name: "blog-migrate".into(),
            status: MemberPhase::Done,
        },
        MemberProgress {
            name: "blog-app".into(),
            status: MemberPhase::Starting,
        },
        MemberProgress {
            name: "blog-worker".into(),
            status: MemberPhase::Waiting,
        },
    ];
    waking.seq += 10;
    check("state-waking.json", &waking);
    let mut stopped = asleep();
    stopped.state = StateName::Asleep;
    stopped.reason = Some("member \"blog-app\" stopped outside WakeDock (exit code 137)".into());
    stopped.members = vec![MemberProgress {
        name: "blog-app".into(),
        status: MemberPhase::Stopped,
    }];
    check("state-stopped-outside.json", &stopped);
    let mut awake = asleep();
    awake.state = StateName::Awake;
    awake.members.clear();
    awake.theme = None;
    check("state-awake.json", &awake);
    check(
        "woken.json",
        &Woken {
            service: "blog".into(),
            state: StateName::Awake,
            waited_ms: 412,
        },
    );
    check(
        "activity.json",
        &ActivityReport {
            services: BTreeMap::from([
                (
                    "blog".to_owned(),
                    ActivityCounts {
                        requests: 12,
                        open_connections: 1,
                    },
                ),
                (
                    "api".to_owned(),
                    ActivityCounts {
                        requests: 0,
                        open_connections: 0,
                    },
                ),
            ]),
        },
    );
    // The host's problem+json, as the bridge reads wake errors.
    let problem = ApiError::Service {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: ErrorCode::WakeTimeout,
        message: "service \"blog\" was not ready within its wake timeout of 30000 ms".into(),
        errors: vec![],
    }
    .into_response();
    let body = problem.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    check("problem-wake-timeout.json", &v);

    // And every file reads back as the type it was written from.
    for name in [
        "state-waking.json",
        "state-stopped-outside.json",
        "state-awake.json",
    ] {
        let text = std::fs::read_to_string(dir().join(name)).unwrap();
        serde_json::from_str::<ServiceState>(&text).unwrap();
    }
    let text = std::fs::read_to_string(dir().join("snapshot.json")).unwrap();
    assert_eq!(serde_json::from_str::<Snapshot>(&text).unwrap(), snapshot);
}
