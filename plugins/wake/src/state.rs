//! The service state machine and the `ServiceState` document the host
//! publishes (event `wake.state`, the bridge's `/subscribe` stream).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::service::{Service, Strategy};

/// State of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Asleep,
    Waking,
    Awake,
    GoingToSleep,
    Failed { reason: String },
}

/// The state's name alone (the `state` field of [`ServiceState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    Asleep,
    Waking,
    Awake,
    GoingToSleep,
    Failed,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionError {
    pub from: StateName,
    pub to: StateName,
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no transition from {} to {}",
            self.from.as_str(),
            self.to.as_str()
        )
    }
}

impl std::error::Error for TransitionError {}

impl StateName {
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

impl State {
    /// The state's name.
    pub fn name(&self) -> StateName {
        match self {
            State::Asleep => StateName::Asleep,
            State::Waking => StateName::Waking,
            State::Awake => StateName::Awake,
            State::GoingToSleep => StateName::GoingToSleep,
            State::Failed { .. } => StateName::Failed,
        }
    }

    /// The failure reason, if failed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Failed { reason } => Some(reason),
            _ => None,
        }
    }

    /// Whether the machine allows going from `self` to `next`. Staying in
    /// the same state is not a transition (except a failure whose reason
    /// changed).
    ///
    /// - asleep → waking (a request), awake (found running), failed
    /// - waking → awake, failed (timeout, exit), going-to-sleep (wake
    ///   abandoned), asleep (stopped by hand mid-wake)
    /// - awake → going-to-sleep (expiry), waking (a member restarted or is
    ///   no longer ready), asleep (stopped by hand), failed
    /// - going-to-sleep → asleep, waking (a request arrived), awake (sleep
    ///   abandoned, e.g. a stop failed), failed
    /// - failed → waking (retry), asleep, awake (recovered), going-to-sleep
    pub fn can_transition_to(&self, next: &State) -> bool {
        use StateName::*;
        match (self.name(), next.name()) {
            (Failed, Failed) => self != next,
            (a, b) if a == b => false,
            (Asleep, GoingToSleep) => false,
            _ => true,
        }
    }

    /// `next` if the transition is allowed.
    pub fn transition(&self, next: State) -> Result<State, TransitionError> {
        if self.can_transition_to(&next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self.name(),
                to: next.name(),
            })
        }
    }
}

/// One member's progress during a wake, for the waiting page: `waiting`,
/// `starting`, `ready` (or `done` for a one-shot member), `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProgress {
    pub name: String,
    pub status: String,
}

/// What the host publishes per service:
/// `{"service","state","strategy","wake_timeout_ms","ignore_user_agents",
/// "ignore_paths","display_name","reason","theme","members"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub service: String,
    pub state: StateName,
    pub strategy: Strategy,
    pub wake_timeout_ms: u64,
    pub ignore_user_agents: Vec<String>,
    pub ignore_paths: Vec<String>,
    pub display_name: String,
    pub reason: Option<String>,
    /// The waiting page's theme (`auto`, `light`, `dark`).
    #[serde(default)]
    pub theme: Option<String>,
    /// Required members' progress; empty outside a wake.
    #[serde(default)]
    pub members: Vec<MemberProgress>,
}

impl ServiceState {
    /// The document for `service` in `state`.
    pub fn of(service: &Service, state: &State) -> Self {
        ServiceState {
            service: service.name.clone(),
            state: state.name(),
            strategy: service.strategy,
            wake_timeout_ms: service.wake_timeout_ms,
            ignore_user_agents: service.ignore_user_agents.clone(),
            ignore_paths: service.ignore_paths.clone(),
            display_name: service.display_name.clone(),
            reason: state.reason().map(str::to_owned),
            theme: service.theme.clone(),
            members: Vec::new(),
        }
    }
}

/// A member container as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Exited, with its exit code when known.
    Exited {
        code: Option<i32>,
    },
    Dead,
}

impl MemberStatus {
    fn active(self) -> bool {
        matches!(
            self,
            MemberStatus::Running { .. } | MemberStatus::Restarting
        )
    }
}

/// Derives a service's state from its members.
///
/// Optional members are ignored. For required members:
/// - a missing or dead member, or a one-shot member that exited non-zero →
///   failed (a member that exited non-zero while waking, too);
/// - none active (running/restarting; paused counts as asleep) → asleep;
/// - every long-running member running and ready, no one-shot still
///   running → awake;
/// - otherwise in between: going-to-sleep if that is where it was, else
///   waking.
pub fn derive_state(
    service: &Service,
    members: &BTreeMap<String, MemberStatus>,
    previous: Option<&State>,
) -> State {
    let required: Vec<&String> = service
        .members
        .iter()
        .filter(|m| service.is_required(m))
        .collect();
    let status = |m: &str| members.get(m).copied().unwrap_or(MemberStatus::Missing);
    let was = previous.map(State::name);

    for m in &required {
        let fail = |reason: String| State::Failed { reason };
        match status(m) {
            MemberStatus::Missing => return fail(format!("member \"{m}\" not found")),
            MemberStatus::Dead => return fail(format!("member \"{m}\" is dead")),
            MemberStatus::Exited { code: Some(c) } if c != 0 && service.is_one_shot(m) => {
                return fail(format!("one-shot member \"{m}\" exited with code {c}"))
            }
            MemberStatus::Exited { code: Some(c) } if c != 0 && was == Some(StateName::Waking) => {
                return fail(format!("member \"{m}\" exited with code {c} while waking"))
            }
            _ => {}
        }
    }

    if !required.iter().any(|m| status(m).active()) {
        // Only one-shot members, all done: nothing to keep running.
        let all_one_shot_done = !required.is_empty()
            && required.iter().all(|m| {
                service.is_one_shot(m) && status(m) == MemberStatus::Exited { code: Some(0) }
            });
        return if all_one_shot_done {
            State::Awake
        } else {
            State::Asleep
        };
    }

    let awake = required.iter().all(|m| {
        if service.is_one_shot(m) {
            !status(m).active()
        } else {
            status(m) == MemberStatus::Running { ready: true }
        }
    });
    if awake {
        State::Awake
    } else if was == Some(StateName::GoingToSleep) {
        State::GoingToSleep
    } else {
        State::Waking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{parse_def, Source};
    use serde_json::json;
    use MemberStatus::*;

    fn stack() -> Service {
        parse_def(&json!({
            "name": "blog", "display_name": "Blog",
            "members": ["app", "db", "migrate", "cache"],
            "one_shot": ["migrate"], "optional": ["cache"],
            "depends_on": {"app": ["db", "migrate"], "migrate": ["db"]},
            "strategy": "dynamic", "wake_timeout": "30s",
            "ignore_user_agents": ["UptimeRobot"], "ignore_paths": ["/healthz"]
        }))
        .unwrap()
        .validate(Source::Config)
        .unwrap()
    }

    fn failed(r: &str) -> State {
        State::Failed { reason: r.into() }
    }

    #[test]
    fn derivation_table() {
        let s = stack();
        const R: MemberStatus = Running { ready: true };
        const NR: MemberStatus = Running { ready: false };
        const OK: MemberStatus = Exited { code: Some(0) };
        type Case = (&'static str, [MemberStatus; 4], Option<State>, State);
        // members: app, db, migrate, cache(optional)
        let cases: Vec<Case> = vec![
            (
                "all stopped",
                [OK, Exited { code: Some(0) }, Created, Created],
                None,
                State::Asleep,
            ),
            (
                "never started",
                [Created, Created, Created, Created],
                None,
                State::Asleep,
            ),
            ("paused", [Paused, Paused, OK, Paused], None, State::Asleep),
            (
                "all ready, migration done",
                [R, R, OK, R],
                None,
                State::Awake,
            ),
            (
                "optional member down is fine",
                [R, R, OK, Exited { code: Some(1) }],
                None,
                State::Awake,
            ),
            (
                "migration never ran, app started by hand",
                [R, R, Created, Created],
                None,
                State::Awake,
            ),
            ("running but not ready", [NR, R, OK, R], None, State::Waking),
            (
                "db up, migration running",
                [Created, R, R, Created],
                None,
                State::Waking,
            ),
            (
                "migration running with app ready",
                [R, R, R, R],
                None,
                State::Waking,
            ),
            ("restarting", [Restarting, R, OK, R], None, State::Waking),
            (
                "partially stopped while going to sleep",
                [Exited { code: Some(0) }, R, OK, R],
                Some(State::GoingToSleep),
                State::GoingToSleep,
            ),
            (
                "partially started",
                [Exited { code: Some(0) }, R, OK, R],
                Some(State::Asleep),
                State::Waking,
            ),
            (
                "migration failed",
                [Created, R, Exited { code: Some(2) }, R],
                None,
                failed("one-shot member \"migrate\" exited with code 2"),
            ),
            (
                "migration failed, asleep",
                [Created, Created, Exited { code: Some(2) }, Created],
                None,
                failed("one-shot member \"migrate\" exited with code 2"),
            ),
            (
                "app crashed while waking",
                [Exited { code: Some(137) }, R, OK, R],
                Some(State::Waking),
                failed("member \"app\" exited with code 137 while waking"),
            ),
            (
                "app stopped by hand (137) while awake",
                [Exited { code: Some(137) }, R, OK, R],
                Some(State::Awake),
                State::Waking,
            ),
            (
                "missing",
                [Missing, R, OK, R],
                None,
                failed("member \"app\" not found"),
            ),
            (
                "dead",
                [R, Dead, OK, R],
                None,
                failed("member \"db\" is dead"),
            ),
        ];
        for (label, st, prev, want) in cases {
            let members: BTreeMap<String, MemberStatus> = ["app", "db", "migrate", "cache"]
                .iter()
                .zip(st)
                .map(|(n, s)| ((*n).to_owned(), s))
                .collect();
            assert_eq!(derive_state(&s, &members, prev.as_ref()), want, "{label}");
        }
    }

    #[test]
    fn one_shot_only_service() {
        let s = parse_def(&json!({"name": "job", "members": ["j"], "one_shot": ["j"]}))
            .unwrap()
            .validate(Source::Config)
            .unwrap();
        let m = |st| BTreeMap::from([("j".to_owned(), st)]);
        assert_eq!(derive_state(&s, &m(Created), None), State::Asleep);
        assert_eq!(
            derive_state(&s, &m(Running { ready: false }), None),
            State::Waking
        );
        assert_eq!(
            derive_state(&s, &m(Exited { code: Some(0) }), None),
            State::Awake
        );
    }

    #[test]
    fn transitions() {
        use State::*;
        let all = [Asleep, Waking, Awake, GoingToSleep, failed("x")];
        // rows: from; columns: to (asleep, waking, awake, going-to-sleep, failed)
        let allowed = [
            [false, true, true, false, true],
            [true, false, true, true, true],
            [true, true, false, true, true],
            [true, true, true, false, true],
            [true, true, true, true, false],
        ];
        for (i, from) in all.iter().enumerate() {
            for (j, to) in all.iter().enumerate() {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed[i][j],
                    "{from:?} -> {to:?}"
                );
            }
        }
        assert!(failed("x").can_transition_to(&failed("y")));
        let e = Awake.transition(Awake).unwrap_err();
        assert_eq!(e.to_string(), "no transition from awake to awake");
        assert_eq!(Asleep.transition(Waking), Ok(Waking));
    }

    #[test]
    fn service_state_json() {
        let s = stack();
        let doc = serde_json::to_value(ServiceState::of(&s, &State::GoingToSleep)).unwrap();
        assert_eq!(
            doc,
            json!({
                "service": "blog", "state": "going-to-sleep", "strategy": "dynamic",
                "wake_timeout_ms": 30000, "ignore_user_agents": ["UptimeRobot"],
                "ignore_paths": ["/healthz"], "display_name": "Blog", "reason": null,
                "theme": null, "members": []
            })
        );
        let doc = ServiceState::of(&s, &failed("boom"));
        assert_eq!(serde_json::to_value(&doc).unwrap()["state"], "failed");
        assert_eq!(doc.reason.as_deref(), Some("boom"));
        let back: ServiceState =
            serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
    }
}
