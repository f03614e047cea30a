//! Alert records: what fired, on what, when it resolved, and every
//! notification with its delivery result. Paged newest first; resolved
//! records older than the retention are removed.

use serde::{Deserialize, Serialize};

use crate::alert::NoteKind;
use crate::rule::Severity;

/// How a notification fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum NoteResult {
    /// In the outbox.
    Pending,
    Delivered {
        delivered_at_ms: u64,
        attempts: u32,
    },
    /// Still being retried.
    Retrying {
        error: String,
        attempts: u32,
    },
    GaveUp {
        error: String,
        attempts: u32,
    },
    /// Not sent: a silence or maintenance window covered it.
    Suppressed {
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRecord {
    pub kind: NoteKind,
    /// Empty for a suppressed notification.
    pub channel: String,
    pub at_ms: u64,
    /// The outbox entry, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    #[serde(flatten)]
    pub result: NoteResult,
}

/// One firing of one rule on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: String,
    pub rule: String,
    pub kind: String,
    pub target: String,
    pub severity: Severity,
    pub fired_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
    /// Why it fired.
    pub detail: String,
    /// How it ended.
    pub resolution: Option<String>,
    pub notifications: Vec<NoteRecord>,
}

/// FNV-1a, for short stable ids.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Ids sort by firing time (zero-padded milliseconds), then rule and
/// target (hashed: ids are storage keys and URL segments).
pub fn record_id(fired_at_ms: u64, rule: &str, target: &str) -> String {
    format!(
        "{fired_at_ms:013}-{:08x}",
        fnv(&format!("{rule}\u{0}{target}"))
    )
}

impl AlertRecord {
    pub fn firing(&self) -> bool {
        self.resolved_at_ms.is_none()
    }

    /// Resolved longer ago than `retention_ms`.
    pub fn expired(&self, now: u64, retention_ms: u64) -> bool {
        self.resolved_at_ms
            .is_some_and(|t| now.saturating_sub(t) > retention_ms)
    }

    pub fn note_mut(&mut self, delivery: &str) -> Option<&mut NoteRecord> {
        self.notifications
            .iter_mut()
            .find(|n| n.delivery.as_deref() == Some(delivery))
    }
}

/// One page of ids, newest first: at most `limit` ids older than
/// `before` (all when `None`), and the cursor of the next page.
pub fn page(
    ids_oldest_first: &[String],
    before: Option<&str>,
    limit: usize,
) -> (Vec<String>, Option<String>) {
    let newer_ok = |id: &String| before.is_none_or(|b| id.as_str() < b);
    let mut out: Vec<String> = ids_oldest_first
        .iter()
        .rev()
        .filter(|id| newer_ok(id))
        .take(limit + 1)
        .cloned()
        .collect();
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().cloned()
    } else {
        None
    };
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_pages_walk_back() {
        let ids: Vec<String> = (1..=5).map(|t| record_id(t * 1000, "r", "x")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        let (p1, next) = page(&ids, None, 2);
        assert_eq!(p1, [ids[4].clone(), ids[3].clone()]);
        let (p2, next) = page(&ids, next.as_deref(), 2);
        assert_eq!(p2, [ids[2].clone(), ids[1].clone()]);
        let (p3, next) = page(&ids, next.as_deref(), 2);
        assert_eq!((p3, next), (vec![ids[0].clone()], None));
        assert_ne!(record_id(1, "a", "b"), record_id(1, "a", "c"));
    }

    #[test]
    fn only_resolved_records_expire() {
        let mut r = AlertRecord {
            id: "x".into(),
            rule: "r".into(),
            kind: "exit".into(),
            target: "t".into(),
            severity: Severity::Warning,
            fired_at_ms: 0,
            resolved_at_ms: None,
            detail: String::new(),
            resolution: None,
            notifications: vec![],
        };
        assert!(!r.expired(u64::MAX, 10));
        r.resolved_at_ms = Some(100);
        assert!(!r.expired(110, 10));
        assert!(r.expired(111, 10));
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let r = AlertRecord {
            id: record_id(5, "r", "t"),
            rule: "r".into(),
            kind: "exit".into(),
            target: "t".into(),
            severity: Severity::Critical,
            fired_at_ms: 5,
            resolved_at_ms: None,
            detail: "d".into(),
            resolution: None,
            notifications: vec![
                NoteRecord {
                    kind: NoteKind::Firing,
                    channel: "c".into(),
                    at_ms: 5,
                    delivery: Some("x".into()),
                    result: NoteResult::Pending,
                },
                NoteRecord {
                    kind: NoteKind::Firing,
                    channel: "c".into(),
                    at_ms: 5,
                    delivery: None,
                    result: NoteResult::Delivered {
                        delivered_at_ms: 6,
                        attempts: 1,
                    },
                },
            ],
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: AlertRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
