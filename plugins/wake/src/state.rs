//! Service states: the documents the plugin publishes (event `wake.state`,
//! kept by the host's hub), and what an observation of the members says
//! about changes made outside WakeDock.
//!
//! Only operations (which the host runs one at a time per service) publish
//! `waking` and `going-to-sleep`. An observation never starts anything and
//! never says `waking`: it only notices that a service started by hand is
//! `awake`, that one whose member stopped outside WakeDock is `asleep`
//! (so the next request wakes it), or that a member is missing (`failed`).

use std::collections::BTreeMap;

pub use crate::contract::{MemberPhase, MemberProgress, MemberStatus, ServiceState, StateName};
use crate::service::Service;

/// A state to publish: its name, reason and members (see
/// [`ServiceState::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub state: StateName,
    pub reason: Option<String>,
    pub members: Vec<MemberProgress>,
}

impl Next {
    /// `state` with no reason and no members.
    pub fn plain(state: StateName) -> Self {
        Next {
            state,
            reason: None,
            members: Vec::new(),
        }
    }

    pub fn failed(reason: impl Into<String>, members: Vec<MemberProgress>) -> Self {
        Next {
            state: StateName::Failed,
            reason: Some(reason.into()),
            members,
        }
    }

    /// Asleep, with `members` put to sleep.
    pub fn asleep<'a>(members: impl IntoIterator<Item = &'a String>) -> Self {
        Next {
            state: StateName::Asleep,
            reason: None,
            members: phases(members, MemberPhase::Asleep),
        }
    }
}

/// `names`, each in `phase`.
pub fn phases<'a>(
    names: impl IntoIterator<Item = &'a String>,
    phase: MemberPhase,
) -> Vec<MemberProgress> {
    names
        .into_iter()
        .map(|n| MemberProgress {
            name: n.clone(),
            status: phase,
        })
        .collect()
}

/// The document of `service` in `next`, following a document whose
/// sequence number was `prev_seq`. The sequence grows with every change
/// and, taken from the clock when that is ahead, keeps growing even if the
/// plugin's storage was wiped.
pub fn document(service: &Service, next: Next, prev_seq: u64, now_ms: u64) -> ServiceState {
    ServiceState {
        service: service.name.clone(),
        state: next.state,
        strategy: service.strategy,
        wake_timeout_ms: service.wake_timeout_ms,
        ignore_user_agents: service.ignore_user_agents.clone(),
        ignore_paths: service.ignore_paths.clone(),
        display_name: service.display_name.clone(),
        reason: next.reason,
        theme: service.theme.clone(),
        members: next.members,
        seq: prev_seq.saturating_add(1).max(now_ms),
    }
}

/// Whether two documents say the same (their sequence numbers aside).
pub fn same(a: &ServiceState, b: &ServiceState) -> bool {
    ServiceState {
        seq: 0,
        ..a.clone()
    } == ServiceState {
        seq: 0,
        ..b.clone()
    }
}

fn status_of(members: &BTreeMap<String, MemberStatus>, m: &str) -> MemberStatus {
    members.get(m).copied().unwrap_or(MemberStatus::Missing)
}

/// Why the service cannot work as it stands: a required member is missing
/// or dead, or a one-shot member exited non-zero.
pub fn failure(service: &Service, members: &BTreeMap<String, MemberStatus>) -> Option<String> {
    for m in service.members.iter().filter(|m| service.is_required(m)) {
        match status_of(members, m) {
            MemberStatus::Missing => return Some(format!("member \"{m}\" not found")),
            MemberStatus::Dead => return Some(format!("member \"{m}\" is dead")),
            MemberStatus::Exited { exit_code: Some(c) } if c != 0 && service.is_one_shot(m) => {
                return Some(format!("one-shot member \"{m}\" exited with code {c}"))
            }
            _ => {}
        }
    }
    None
}

/// Whether the service serves: every required long-running member runs
/// and is ready, no required one-shot member is still running, and (for a
/// service of one-shot members only) they all finished with exit 0.
pub fn all_ready(service: &Service, members: &BTreeMap<String, MemberStatus>) -> bool {
    let required: Vec<&String> = service
        .members
        .iter()
        .filter(|m| service.is_required(m))
        .collect();
    if required.is_empty() {
        return false;
    }
    let long_running = required.iter().any(|m| !service.is_one_shot(m));
    required.iter().all(|m| {
        let st = status_of(members, m);
        if service.is_one_shot(m) {
            if long_running {
                !st.active()
            } else {
                st == MemberStatus::Exited { exit_code: Some(0) }
            }
        } else {
            st == MemberStatus::Running { ready: true }
        }
    })
}

/// Required long-running members that are not running.
pub fn down(service: &Service, members: &BTreeMap<String, MemberStatus>) -> Vec<String> {
    service
        .members
        .iter()
        .filter(|m| service.is_required(m) && !service.is_one_shot(m))
        .filter(|m| !matches!(status_of(members, m), MemberStatus::Running { .. }))
        .cloned()
        .collect()
}

fn stopped_outside(names: &[String], exit_code: Option<i32>) -> Next {
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let who = if names.len() == 1 {
        "member"
    } else {
        "members"
    };
    let code = exit_code
        .map(|c| format!(" (exit code {c})"))
        .unwrap_or_default();
    Next {
        state: StateName::Asleep,
        reason: Some(format!("{who} {list} stopped outside WakeDock{code}")),
        members: phases(names, MemberPhase::Stopped),
    }
}

/// The state to publish after observing the members while no operation
/// runs on the service; `None` keeps `prev`.
///
/// - a missing or dead member, or a failed one-shot member → `failed`;
/// - `awake` stays awake while its required members run; one that stopped
///   (outside WakeDock: operations are not observed) makes it `asleep`,
///   naming it, so the next request wakes it;
/// - `asleep` and `failed` stay until every required member is ready
///   (started by hand), then `awake`;
/// - no document yet, or a `waking`/`going-to-sleep` left by an operation
///   that is no longer running (the host restarted): `awake` if ready,
///   else `asleep` with the inactive members.
pub fn reconcile(
    service: &Service,
    prev: Option<&ServiceState>,
    members: &BTreeMap<String, MemberStatus>,
) -> Option<Next> {
    if let Some(reason) = failure(service, members) {
        let unchanged = prev.is_some_and(|p| {
            p.state == StateName::Failed && p.reason.as_deref() == Some(reason.as_str())
        });
        return (!unchanged).then(|| Next::failed(reason, Vec::new()));
    }
    let ready = all_ready(service, members);
    match prev.map(|p| p.state) {
        Some(StateName::Awake) => {
            let down = down(service, members);
            (!down.is_empty()).then(|| stopped_outside(&down, None))
        }
        Some(StateName::Asleep | StateName::Failed) => ready.then(|| Next::plain(StateName::Awake)),
        None | Some(StateName::Waking | StateName::GoingToSleep) => Some(if ready {
            Next::plain(StateName::Awake)
        } else {
            Next::asleep(
                service
                    .members
                    .iter()
                    .filter(|m| !status_of(members, m).active()),
            )
        }),
    }
}

/// The same state republished when the definition's parts of the document
/// (strategy, wake timeout, ignore lists, display name, theme) changed
/// since it was stored; `None` if they did not.
pub fn refreshed(service: &Service, prev: &ServiceState) -> Option<Next> {
    let next = Next {
        state: prev.state,
        reason: prev.reason.clone(),
        members: prev.members.clone(),
    };
    (!same(&document(service, next.clone(), prev.seq, 0), prev)).then_some(next)
}

/// What to publish after observing the members: [`reconcile`], else
/// [`refreshed`].
pub fn observed(
    service: &Service,
    prev: Option<&ServiceState>,
    members: &BTreeMap<String, MemberStatus>,
) -> Option<Next> {
    reconcile(service, prev, members).or_else(|| prev.and_then(|p| refreshed(service, p)))
}

/// A member stopped or died (a container event) while no operation runs
/// on the service: an `awake` service whose required long-running member
/// it is goes `asleep` at once, naming it, so bridges hold requests and
/// wake it instead of proxying to a dead upstream. `None` otherwise.
pub fn member_stopped(
    service: &Service,
    prev: Option<&ServiceState>,
    member: &str,
    exit_code: Option<i32>,
) -> Option<Next> {
    let counts = service.members.iter().any(|m| m == member)
        && service.is_required(member)
        && !service.is_one_shot(member);
    let awake = prev.is_some_and(|p| p.state == StateName::Awake);
    (counts && awake).then(|| stopped_outside(&[member.to_owned()], exit_code))
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

    const R: MemberStatus = Running { ready: true };
    const NR: MemberStatus = Running { ready: false };
    const OK: MemberStatus = Exited { exit_code: Some(0) };
    const KILLED: MemberStatus = Exited {
        exit_code: Some(137),
    };

    fn members(st: [MemberStatus; 4]) -> BTreeMap<String, MemberStatus> {
        ["app", "db", "migrate", "cache"]
            .iter()
            .zip(st)
            .map(|(n, s)| ((*n).to_owned(), s))
            .collect()
    }

    fn doc(state: StateName) -> ServiceState {
        document(&stack(), Next::plain(state), 0, 1)
    }

    fn name(n: Option<Next>) -> Option<StateName> {
        n.map(|n| n.state)
    }

    #[test]
    fn observations_never_say_waking() {
        use StateName::*;
        let s = stack();
        type Case = (
            &'static str,
            [MemberStatus; 4],
            Option<StateName>,
            Option<StateName>,
        );
        // members: app, db, migrate (one-shot), cache (optional)
        let cases: Vec<Case> = vec![
            (
                "new, all stopped",
                [OK, OK, Created, Created],
                None,
                Some(Asleep),
            ),
            (
                "new, paused",
                [Paused, Paused, OK, Paused],
                None,
                Some(Asleep),
            ),
            ("new, all ready", [R, R, OK, R], None, Some(Awake)),
            ("new, booting", [NR, R, OK, R], None, Some(Asleep)),
            (
                "awake, optional down",
                [R, R, OK, KILLED],
                Some(Awake),
                None,
            ),
            (
                "awake, not ready for a moment",
                [NR, R, OK, R],
                Some(Awake),
                None,
            ),
            (
                "awake, app stopped by hand",
                [KILLED, R, OK, R],
                Some(Awake),
                Some(Asleep),
            ),
            (
                "asleep after a sleep: exit 137",
                [KILLED, OK, OK, OK],
                Some(Asleep),
                None,
            ),
            (
                "asleep, app booting by hand",
                [NR, R, OK, R],
                Some(Asleep),
                None,
            ),
            (
                "asleep, started by hand and ready",
                [R, R, OK, R],
                Some(Asleep),
                Some(Awake),
            ),
            (
                "failed wake stays failed",
                [OK, OK, OK, OK],
                Some(Failed),
                None,
            ),
            (
                "failed, recovered by hand",
                [R, R, OK, R],
                Some(Failed),
                Some(Awake),
            ),
            (
                "stale waking (host restarted)",
                [KILLED, R, OK, R],
                Some(Waking),
                Some(Asleep),
            ),
            (
                "stale going-to-sleep",
                [OK, OK, OK, OK],
                Some(GoingToSleep),
                Some(Asleep),
            ),
            (
                "migration failed",
                [Created, R, Exited { exit_code: Some(2) }, R],
                Some(Asleep),
                Some(Failed),
            ),
            ("missing", [Missing, R, OK, R], Some(Awake), Some(Failed)),
            ("dead", [R, Dead, OK, R], Some(Awake), Some(Failed)),
        ];
        for (label, st, prev, want) in cases {
            let prev = prev.map(doc);
            let got = reconcile(&s, prev.as_ref(), &members(st));
            assert_eq!(name(got.clone()), want, "{label}: {got:?}");
            assert_ne!(name(got), Some(Waking), "{label}");
        }
    }

    #[test]
    fn what_an_observation_says() {
        let s = stack();
        // A new service's stopped members are asleep (a request wakes them).
        let n = reconcile(&s, None, &members([OK, R, OK, OK])).unwrap();
        let names: Vec<&str> = n.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["app", "migrate", "cache"]);
        assert!(n.members.iter().all(|m| m.status == MemberPhase::Asleep));
        // A member stopped outside WakeDock is named, and stopped (not asleep).
        let n = reconcile(
            &s,
            Some(&doc(StateName::Awake)),
            &members([KILLED, R, OK, R]),
        )
        .unwrap();
        assert_eq!(
            n.reason.as_deref(),
            Some("member \"app\" stopped outside WakeDock")
        );
        assert_eq!(n.members, phases(&["app".to_owned()], MemberPhase::Stopped));
        // An unchanged failure is not published again; a new one is.
        let failed = document(&s, Next::failed("member \"app\" not found", vec![]), 0, 1);
        assert_eq!(
            reconcile(&s, Some(&failed), &members([Missing, R, OK, R])),
            None
        );
        assert_eq!(
            reconcile(&s, Some(&failed), &members([R, Missing, OK, R])).map(|n| n.reason),
            Some(Some("member \"db\" not found".into()))
        );
    }

    #[test]
    fn a_member_stopping_while_awake_sends_the_service_to_sleep() {
        let s = stack();
        let awake = doc(StateName::Awake);
        let n = member_stopped(&s, Some(&awake), "app", Some(137)).unwrap();
        assert_eq!(n.state, StateName::Asleep);
        assert_eq!(
            n.reason.as_deref(),
            Some("member \"app\" stopped outside WakeDock (exit code 137)")
        );
        // Not while asleep (WakeDock's own stop, seen late), not for
        // optional or one-shot members, not for strangers.
        assert_eq!(
            member_stopped(&s, Some(&doc(StateName::Asleep)), "app", None),
            None
        );
        assert_eq!(member_stopped(&s, Some(&awake), "cache", None), None);
        assert_eq!(member_stopped(&s, Some(&awake), "migrate", Some(0)), None);
        assert_eq!(member_stopped(&s, Some(&awake), "other", None), None);
    }

    #[test]
    fn a_changed_definition_is_republished_in_the_same_state() {
        let s = stack();
        let awake = doc(StateName::Awake);
        let ready = members([R, R, OK, R]);
        assert_eq!(observed(&s, Some(&awake), &ready), None);
        let mut changed = s.clone();
        changed.strategy = crate::service::Strategy::Blocking;
        changed.ignore_paths.push("/metrics".into());
        let n = observed(&changed, Some(&awake), &ready).unwrap();
        assert_eq!(n, Next::plain(StateName::Awake));
    }

    #[test]
    fn one_shot_only_service() {
        let s = parse_def(&json!({"name": "job", "members": ["j"], "one_shot": ["j"]}))
            .unwrap()
            .validate(Source::Config)
            .unwrap();
        let m = |st| BTreeMap::from([("j".to_owned(), st)]);
        assert!(!all_ready(&s, &m(Created)));
        assert!(!all_ready(&s, &m(NR)));
        assert!(all_ready(&s, &m(OK)));
        assert_eq!(name(reconcile(&s, None, &m(OK))), Some(StateName::Awake));
    }

    #[test]
    fn documents_carry_the_definition_and_a_growing_seq() {
        let s = stack();
        let d = document(&s, Next::plain(StateName::GoingToSleep), 0, 1_000);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({
                "service": "blog", "state": "going-to-sleep", "strategy": "dynamic",
                "wake_timeout_ms": 30000, "ignore_user_agents": ["UptimeRobot"],
                "ignore_paths": ["/healthz"], "display_name": "Blog", "reason": null,
                "theme": null, "members": [], "seq": 1000
            })
        );
        // Later changes in the same millisecond still grow; a wiped store
        // (prev 0) starts from the clock, above anything before.
        let d2 = document(&s, Next::plain(StateName::Asleep), d.seq, 1_000);
        assert_eq!(d2.seq, 1_001);
        assert!(same(
            &d2,
            &ServiceState {
                seq: 7,
                ..d2.clone()
            }
        ));
        assert!(!same(&d, &d2));
        let back: ServiceState =
            serde_json::from_value(serde_json::to_value(&d2).unwrap()).unwrap();
        assert_eq!(back, d2);
    }
}
