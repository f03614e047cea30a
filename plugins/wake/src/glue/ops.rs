//! The two operations, wake and sleep. The host runs them (one at a time
//! per service, through its operation gate) by calling the internal
//! routes `POST /wake/{service}` and `POST /sleep/{service}`; nothing in
//! the plugin starts them on its own.
//!
//! Each works from one fresh listing: a member's state comes from it, not
//! from an inspect per member, and start/stop/pause go straight to the
//! engine.

use wakedock_plugin_sdk::{
    clock, containers, log, metrics, Container, ContainerState, Error, Health,
};

use super::scan::Scan;
use super::store::{
    begin_op, end_session, mark_ready, put_session, read_state, record_wake, session_of,
    set_exit_code, OpKind, StateWriter,
};
use crate::contract::{
    ErrorBody, ErrorCode, MemberPhase, MemberProgress, OpReason, Slept, StateName, WakeRecord,
    WakeResult, Woken,
};
use crate::service::{ReadyRule, Service, SleepMode};
use crate::session::{plan_sleep, Session};
use crate::state::{all_ready, Next};

/// An idle sleep that could not stop a member is tried again this much later.
const SLEEP_RETRY_MS: u64 = 60_000;

/// Why a wake did not finish.
enum WakeFailure {
    Timeout,
    Failed(String),
}

/// Required members' progress during a wake, published with the
/// `waking` state at every step so the waiting page can show it.
struct Progress<'a, 'w> {
    writer: &'w mut StateWriter<'a>,
    members: Vec<MemberProgress>,
}

impl<'a, 'w> Progress<'a, 'w> {
    fn new(service: &Service, writer: &'w mut StateWriter<'a>) -> Self {
        let members = service
            .start_waves()
            .into_iter()
            .flatten()
            .filter(|m| service.is_required(m))
            .map(|name| MemberProgress {
                name,
                status: MemberPhase::Waiting,
            })
            .collect();
        let mut p = Progress { writer, members };
        p.publish();
        p
    }

    fn publish(&mut self) {
        self.writer.put(Next {
            state: StateName::Waking,
            reason: None,
            members: self.members.clone(),
        });
    }

    fn set(&mut self, member: &str, status: MemberPhase) {
        let Some(m) = self.members.iter_mut().find(|m| m.name == member) else {
            return;
        };
        if m.status == status {
            return;
        }
        m.status = status;
        self.publish();
    }
}

/// The probe of a member whose rule is not Docker's healthcheck; `None`
/// for the default rule (the host's `await-ready`).
pub fn probe_of(rule: &ReadyRule) -> Option<containers::Probe> {
    match rule {
        ReadyRule::DockerHealth | ReadyRule::Tcp { port: None } => None,
        ReadyRule::Tcp { port: Some(p) } => Some(containers::Probe::Tcp(*p)),
        ReadyRule::Http { port, path } => Some(containers::Probe::Http(containers::HttpProbe {
            port: *port,
            path: path.clone(),
        })),
    }
}

/// Waits until `c` (a member of `s`) is ready by its rule, at most
/// `timeout_ms`.
fn await_member(s: &Service, c: &Container, timeout_ms: u32) -> Result<(), Error> {
    let rule = s.ready_rule(&c.name, c.health != Health::None);
    if let Some(probe) = probe_of(&rule) {
        return containers::await_probe(&c.name, &probe, timeout_ms);
    }
    match containers::await_ready(&c.name, timeout_ms)? {
        // Never ready merely because it runs.
        containers::Readiness::Running => Err(Error::Invalid(format!(
            "\"{}\" has no healthcheck and no port to probe: give it a `ready` rule",
            c.name
        ))),
        _ => Ok(()),
    }
}

/// Starts (or thaws) the members in `depends_on` order, from the states
/// in `scan`, and waits for each required one to be ready.
fn start_members(
    s: &Service,
    scan: &Scan,
    deadline: u64,
    progress: &mut Progress<'_, '_>,
) -> Result<(), WakeFailure> {
    for wave in s.start_waves() {
        let mut started: Vec<&Container> = Vec::new();
        for m in &wave {
            let Some(c) = scan.container(m) else {
                if s.is_required(m) {
                    progress.set(m, MemberPhase::Failed);
                    return Err(WakeFailure::Failed(format!("member \"{m}\" not found")));
                }
                log::warn(&format!("optional member \"{m}\" not found"));
                continue;
            };
            let r = match c.state {
                ContainerState::Running => Ok(()),
                ContainerState::Paused => containers::unpause(m),
                _ => {
                    mark_ready(m, false);
                    set_exit_code(m, None);
                    containers::start(m)
                }
            };
            match r {
                Ok(()) => {
                    progress.set(m, MemberPhase::Starting);
                    started.push(c)
                }
                Err(e) if s.is_required(m) => {
                    progress.set(m, MemberPhase::Failed);
                    return Err(WakeFailure::Failed(format!(
                        "starting \"{m}\": {}",
                        e.describe()
                    )));
                }
                Err(e) => log::warn(&format!("starting optional \"{m}\": {}", e.describe())),
            }
        }
        for c in started.into_iter().filter(|c| s.is_required(&c.name)) {
            let m = &c.name;
            let left = deadline.saturating_sub(clock::now_ms());
            if left == 0 {
                return Err(WakeFailure::Timeout);
            }
            let left = u32::try_from(left).unwrap_or(u32::MAX);
            let waited = if s.is_one_shot(m) {
                // Done when it has run to completion with exit 0.
                match containers::await_exit(m, left) {
                    Ok(code) => {
                        set_exit_code(m, Some(code));
                        if code == 0 {
                            Ok(())
                        } else {
                            Err(Error::Unavailable(format!(
                                "one-shot \"{m}\" exited with code {code}"
                            )))
                        }
                    }
                    Err(e) => Err(e),
                }
            } else {
                await_member(s, c, left)
            };
            match waited {
                Ok(()) => {
                    mark_ready(m, true);
                    let phase = if s.is_one_shot(m) {
                        MemberPhase::Done
                    } else {
                        MemberPhase::Ready
                    };
                    progress.set(m, phase);
                }
                Err(Error::Timeout) => return Err(WakeFailure::Timeout),
                Err(e) => {
                    progress.set(m, MemberPhase::Failed);
                    return Err(WakeFailure::Failed(format!("\"{m}\": {}", e.describe())));
                }
            }
        }
    }
    Ok(())
}

/// Wakes `s`: starts its members in order and answers once every required
/// one is ready (200 [`Woken`]), or 504 `wake_timeout` / 502 `wake_failed`,
/// publishing `failed` with the reason and the members' progress.
pub fn wake(s: &Service, scan: &Scan) -> Result<Woken, ErrorBody> {
    let started = clock::now_ms();
    let stored = read_state(&s.name);
    let members = scan.members(s);
    let was_awake = stored.doc(s).is_some_and(|d| d.state == StateName::Awake);
    if was_awake && all_ready(s, &members) {
        // A bridge whose cache lagged behind: nothing to do.
        return Ok(Woken {
            service: s.name.clone(),
            state: StateName::Awake,
            waited_ms: 0,
        });
    }
    let _op = begin_op(&s.name, OpKind::Wake);
    let mut writer = StateWriter::new(s, stored);
    let result = {
        let mut progress = Progress::new(s, &mut writer);
        let r = start_members(
            s,
            scan,
            started.saturating_add(s.wake_timeout_ms),
            &mut progress,
        );
        (r, progress.members)
    };
    let now = clock::now_ms();
    let duration_ms = now.saturating_sub(started);
    let record = |result: WakeResult, reason: Option<String>| WakeRecord {
        at_ms: started,
        duration_ms,
        result,
        reason,
    };
    match result {
        (Ok(()), _) => {
            let mut session = session_of(&s.name).unwrap_or_else(|| Session::start(now, 0));
            session.record_activity(now, 0, session.open_connections, s.idle_timeout_ms);
            put_session(&s.name, &session);
            writer.put(Next::plain(StateName::Awake));
            record_wake(&s.name, record(WakeResult::Ok, None));
            Ok(Woken {
                service: s.name.clone(),
                state: StateName::Awake,
                waited_ms: duration_ms,
            })
        }
        (Err(WakeFailure::Timeout), members) => {
            let detail = format!(
                "service \"{}\" was not ready within its wake timeout of {} ms",
                s.name, s.wake_timeout_ms
            );
            writer.put(Next::failed(detail.clone(), members));
            record_wake(&s.name, record(WakeResult::Timeout, Some(detail.clone())));
            Err(ErrorBody::new(ErrorCode::WakeTimeout, detail))
        }
        (Err(WakeFailure::Failed(reason)), members) => {
            writer.put(Next::failed(reason.clone(), members));
            record_wake(&s.name, record(WakeResult::Failed, Some(reason.clone())));
            Err(ErrorBody::new(ErrorCode::WakeFailed, reason))
        }
    }
}

fn count_sleep(service: &str, reason: OpReason) {
    let _ = metrics::counter_add("sleeps_total", &[service, reason.as_str()], 1.0);
}

/// Puts `s` to sleep: stops (or pauses) its members, dependents first,
/// from the states in `scan`; ends its session; publishes `asleep` with
/// the members it put to sleep. An idle sleep first checks the service is
/// still idle (activity may have come since the tick asked).
pub fn sleep(
    s: &Service,
    scan: &Scan,
    reason: OpReason,
    self_container: Option<&str>,
) -> Result<Slept, ErrorBody> {
    let now = clock::now_ms();
    if reason == OpReason::Idle && session_of(&s.name).is_some_and(|x| !x.expired(now)) {
        return Err(ErrorBody::new(
            ErrorCode::NotIdle,
            format!("service \"{}\" is in use again", s.name),
        ));
    }
    let Some(plan) = plan_sleep(s, self_container) else {
        return Err(ErrorBody::new(
            ErrorCode::NotSleepable,
            format!("service \"{}\" may not be put to sleep", s.name),
        ));
    };
    let _op = begin_op(&s.name, OpKind::Sleep);
    let mut writer = StateWriter::new(s, read_state(&s.name));
    writer.put(Next::plain(StateName::GoingToSleep));
    let mut failures = Vec::new();
    for m in plan.waves.iter().flatten() {
        let Some(c) = scan.container(m) else {
            continue;
        };
        if c.state != ContainerState::Running {
            continue;
        }
        mark_ready(m, false);
        let r = match plan.mode {
            SleepMode::Pause => containers::pause(m),
            SleepMode::Stop => containers::stop(m, None),
        };
        match r {
            Ok(()) | Err(Error::NotFound) => {}
            Err(e) => failures.push(format!("\"{m}\": {}", e.describe())),
        }
    }
    if !failures.is_empty() {
        let detail = format!("could not put to sleep: {}", failures.join("; "));
        writer.put(Next::failed(detail.clone(), Vec::new()));
        if reason == OpReason::Idle {
            // Try again later, not on every tick.
            let mut session = session_of(&s.name).unwrap_or_else(|| Session::start(now, 0));
            session.expires_at_ms = now.saturating_add(SLEEP_RETRY_MS);
            put_session(&s.name, &session);
        }
        return Err(ErrorBody::new(ErrorCode::SleepFailed, detail));
    }
    end_session(&s.name);
    count_sleep(&s.name, reason);
    writer.put(Next::asleep(plan.waves.iter().flatten()));
    log::info(&format!("service \"{}\" put to sleep ({reason})", s.name));
    Ok(Slept {
        service: s.name.clone(),
        state: StateName::Asleep,
    })
}
