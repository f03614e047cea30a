//! One alert's life, per rule and target, as Alertmanager and Uptime Kuma
//! users expect: the condition must hold for the rule's `for` before it
//! fires (pending until then); people are told when it fires and when it
//! resolves, and again every `resend` while it keeps firing; never more
//! than once per `cooldown` (a flapping container sends its last state
//! when the cooldown ends); a silenced or maintained alert is recorded but
//! not sent.

use serde::{Deserialize, Serialize};

use crate::rule::Rule;

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    /// The condition holds, not yet for the rule's `for`.
    Pending {
        since: u64,
    },
    Firing {
        since: u64,
    },
    /// Kept until the last notification (or the cooldown) is done.
    Resolved {
        at: u64,
    },
}

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteKind {
    Firing,
    /// Still firing (the resend interval passed).
    Resend,
    Resolved,
    /// A channel's "send test notification".
    Test,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Firing => "firing",
            NoteKind::Resend => "resend",
            NoteKind::Resolved => "resolved",
            NoteKind::Test => "test",
        }
    }
}

/// The state of one rule on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub phase: Phase,
    /// The history record of the current (or last) firing.
    pub record: Option<String>,
    /// The last notification sent for this rule and target (across
    /// firings, for the cooldown).
    pub last_sent: Option<(NoteKind, u64)>,
    /// The notification a silence or maintenance window is holding back,
    /// so it is recorded as suppressed once, not at every evaluation.
    #[serde(default)]
    pub held: Option<NoteKind>,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Started firing: open a history record.
    Fired,
    /// Stopped firing: close the record.
    Resolved,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `None`: nothing to keep (inactive).
    pub state: Option<AlertState>,
    pub change: Option<Change>,
    /// A notification to send now.
    pub notify: Option<NoteKind>,
    /// A notification that was due but suppressed (silence, maintenance).
    pub suppressed: Option<NoteKind>,
}

/// One evaluation of `rule` on a target whose condition `holds` at `now`;
/// `suppressed` when a silence or maintenance window covers it.
pub fn step(
    prev: Option<&AlertState>,
    holds: bool,
    now: u64,
    rule: &Rule,
    suppressed: bool,
) -> Step {
    let last_sent = prev.and_then(|p| p.last_sent);
    let was_held = prev.and_then(|p| p.held);
    let record = prev.and_then(|p| p.record.clone());
    let (phase, change) = match (prev.map(|p| p.phase), holds) {
        (None | Some(Phase::Resolved { .. }), true) if rule.for_ms == 0 => {
            (Some(Phase::Firing { since: now }), Some(Change::Fired))
        }
        (None | Some(Phase::Resolved { .. }), true) => (Some(Phase::Pending { since: now }), None),
        (Some(Phase::Pending { since }), true) if now.saturating_sub(since) >= rule.for_ms => {
            (Some(Phase::Firing { since: now }), Some(Change::Fired))
        }
        (Some(p @ Phase::Pending { .. }), true) => (Some(p), None),
        (Some(Phase::Pending { .. }), false) | (None, false) => (None, None),
        (Some(p @ Phase::Firing { .. }), true) => (Some(p), None),
        (Some(Phase::Firing { .. }), false) => {
            (Some(Phase::Resolved { at: now }), Some(Change::Resolved))
        }
        (Some(p @ Phase::Resolved { .. }), false) => (Some(p), None),
    };
    let Some(phase) = phase else {
        return Step {
            state: None,
            change,
            notify: None,
            suppressed: None,
        };
    };
    // What people should be told now, if anything.
    let due = match (phase, last_sent) {
        (Phase::Firing { .. }, None | Some((NoteKind::Resolved | NoteKind::Test, _))) => {
            Some(NoteKind::Firing)
        }
        (Phase::Firing { .. }, Some((NoteKind::Firing | NoteKind::Resend, at))) => rule
            .resend_ms
            .filter(|r| now.saturating_sub(at) >= *r)
            .map(|_| NoteKind::Resend),
        (Phase::Resolved { .. }, Some((NoteKind::Firing | NoteKind::Resend, _))) => {
            Some(NoteKind::Resolved)
        }
        _ => None,
    };
    let cooling = last_sent.is_some_and(|(_, at)| now.saturating_sub(at) < rule.cooldown_ms);
    let (mut notify, mut held) = (None, None);
    match due {
        Some(k) if suppressed => held = Some(k).filter(|k| was_held != Some(*k)),
        Some(k) if !cooling => notify = Some(k),
        _ => {}
    }
    // A resolved alert stays only while a notification is still owed or
    // the cooldown still runs (so a quick refire is recognised).
    let owed = due.is_some()
        && (cooling || suppressed)
        && !matches!(due, Some(NoteKind::Resolved) if suppressed);
    let new_last = notify.map(|k| (k, now)).or(last_sent);
    let keep = match phase {
        Phase::Resolved { .. } => {
            owed || new_last.is_some_and(|(_, at)| now.saturating_sub(at) < rule.cooldown_ms)
        }
        _ => true,
    };
    Step {
        state: keep.then_some(AlertState {
            phase,
            record,
            last_sent: new_last,
            held: due.filter(|_| suppressed),
        }),
        change,
        notify,
        suppressed: held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_rule;
    use serde_json::json;

    fn rule(extra: serde_json::Value) -> Rule {
        let mut v = json!({"name": "r", "kind": "exit"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        parse_rule(&v).unwrap()
    }

    /// Runs a sequence of (time, holds) and returns the notifications.
    fn run(rule: &Rule, seq: &[(u64, bool)]) -> Vec<(u64, NoteKind)> {
        let mut state: Option<AlertState> = None;
        let mut out = Vec::new();
        for &(t, holds) in seq {
            let s = step(state.as_ref(), holds, t, rule, false);
            if let Some(k) = s.notify {
                out.push((t, k));
            }
            state = s.state;
        }
        out
    }

    #[test]
    fn fires_once_and_resolves_once() {
        let r = rule(json!({}));
        let out = run(
            &r,
            &[(0, true), (1, true), (2, true), (3, false), (4, false)],
        );
        assert_eq!(out, [(0, NoteKind::Firing), (3, NoteKind::Resolved)]);
    }

    #[test]
    fn for_holds_it_pending_and_a_short_blip_never_fires() {
        let r = rule(json!({"for": "10ms"}));
        assert!(run(&r, &[(0, true), (5, true), (6, false), (7, false)]).is_empty());
        let out = run(
            &r,
            &[(0, true), (5, true), (10, true), (11, true), (20, false)],
        );
        assert_eq!(out, [(10, NoteKind::Firing), (20, NoteKind::Resolved)]);
    }

    #[test]
    fn resend_while_it_keeps_firing() {
        let r = rule(json!({"resend": "10ms"}));
        let seq: Vec<(u64, bool)> = (0..=25).map(|t| (t, true)).collect();
        let out = run(&r, &seq);
        assert_eq!(
            out,
            [
                (0, NoteKind::Firing),
                (10, NoteKind::Resend),
                (20, NoteKind::Resend)
            ]
        );
    }

    #[test]
    fn cooldown_keeps_a_flapping_target_quiet_and_sends_its_last_state() {
        let r = rule(json!({"cooldown": "100ms"}));
        // Fires, flaps four times within the cooldown, ends resolved.
        let seq = [
            (0, true),
            (10, false),
            (20, true),
            (30, false),
            (40, true),
            (50, false),
            (60, false),
            (100, false),
            (150, false),
        ];
        let out = run(&r, &seq);
        assert_eq!(out, [(0, NoteKind::Firing), (100, NoteKind::Resolved)]);
        // Ends firing: nothing more to say once the cooldown is over.
        let seq = [(0, true), (10, false), (20, true), (100, true), (200, true)];
        assert_eq!(run(&r, &seq), [(0, NoteKind::Firing)]);
    }

    #[test]
    fn a_suppressed_alert_changes_state_but_sends_nothing() {
        let r = rule(json!({}));
        let s = step(None, true, 0, &r, true);
        assert_eq!(s.change, Some(Change::Fired));
        assert_eq!((s.notify, s.suppressed), (None, Some(NoteKind::Firing)));
        // Resolved while still suppressed: nothing was sent, nothing owed.
        let s = step(s.state.as_ref(), false, 5, &r, true);
        assert_eq!(s.change, Some(Change::Resolved));
        assert_eq!(s.notify, None);
        assert!(s.state.is_none());
        // Held back once: later evaluations under the same silence record
        // nothing more.
        let first = step(None, true, 0, &r, true);
        let again = step(first.state.as_ref(), true, 1_000, &r, true);
        assert_eq!((again.notify, again.suppressed), (None, None));
        // Suppression ends while it still fires: it is sent then.
        let s = step(None, true, 0, &r, true);
        let s = step(s.state.as_ref(), true, 5, &r, false);
        assert_eq!(s.notify, Some(NoteKind::Firing));
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;

    #[test]
    fn a_state_reads_back_as_written() {
        for phase in [
            Phase::Pending { since: 1 },
            Phase::Firing { since: 2 },
            Phase::Resolved { at: 3 },
        ] {
            let s = AlertState {
                phase,
                record: Some("r".into()),
                last_sent: Some((NoteKind::Resend, 4)),
                held: None,
            };
            let back: AlertState =
                serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            assert_eq!(back, s);
        }
    }
}
