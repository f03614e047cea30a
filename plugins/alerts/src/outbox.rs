//! Reliable delivery: every notification is first written to the outbox
//! (the plugin's storage, so a restart loses nothing), then sent; failures
//! are retried with exponential backoff; a channel that keeps failing is
//! marked down (shown in the UI, logged once) until a delivery succeeds.

use serde::{Deserialize, Serialize};

use crate::channel::Message;

/// First retry after this; doubles per attempt up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 1_000;
pub const MAX_BACKOFF_MS: u64 = 300_000;
/// A delivery still failing after this long is given up (and recorded).
pub const GIVE_UP_AFTER_MS: u64 = 24 * 3_600_000;
/// Consecutive failures after which a channel counts as down.
pub const DOWN_AFTER_FAILURES: u32 = 3;

/// One notification to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub channel: String,
    pub message: Message,
    pub created_ms: u64,
    pub attempts: u32,
    /// Not before this.
    pub next_ms: u64,
    pub last_error: Option<String>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    At(u64),
    GiveUp,
}

pub fn backoff_ms(attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(20);
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

impl Delivery {
    pub fn new(id: String, channel: &str, message: Message, now: u64) -> Self {
        Delivery {
            id,
            channel: channel.to_owned(),
            message,
            created_ms: now,
            attempts: 0,
            next_ms: now,
            last_error: None,
        }
    }

    pub fn due(&self, now: u64) -> bool {
        self.next_ms <= now
    }

    /// Records a failed attempt at `now`.
    pub fn failed(&mut self, error: String, now: u64) -> Retry {
        self.attempts += 1;
        self.last_error = Some(error);
        if now.saturating_sub(self.created_ms) >= GIVE_UP_AFTER_MS {
            return Retry::GiveUp;
        }
        self.next_ms = now + backoff_ms(self.attempts);
        Retry::At(self.next_ms)
    }
}

/// How a channel has been doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHealth {
    pub consecutive_failures: u32,
    pub down_since: Option<u64>,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<u64>,
    pub delivered: u64,
    pub failed: u64,
}

/// A channel went down or came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    WentDown,
    CameBack,
}

impl ChannelHealth {
    pub fn delivered(&mut self, now: u64) -> Option<HealthChange> {
        self.delivered += 1;
        self.consecutive_failures = 0;
        self.last_ok_ms = Some(now);
        self.down_since.take().map(|_| HealthChange::CameBack)
    }

    pub fn failed(&mut self, error: &str, now: u64) -> Option<HealthChange> {
        self.failed += 1;
        self.consecutive_failures += 1;
        self.last_error = Some(error.to_owned());
        if self.down_since.is_none() && self.consecutive_failures >= DOWN_AFTER_FAILURES {
            self.down_since = Some(now);
            return Some(HealthChange::WentDown);
        }
        None
    }

    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Message;

    #[test]
    fn backoff_doubles_up_to_a_cap_and_gives_up_after_a_day() {
        assert_eq!(
            (1..=5).map(backoff_ms).collect::<Vec<_>>(),
            [1_000, 2_000, 4_000, 8_000, 16_000]
        );
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        let mut d = Delivery::new("d".into(), "ops", Message::test("ops", 0), 0);
        assert!(d.due(0));
        assert_eq!(d.failed("refused".into(), 10), Retry::At(1_010));
        assert!(!d.due(1_009));
        assert_eq!(d.failed("refused".into(), 1_010), Retry::At(3_010));
        assert_eq!(d.failed("refused".into(), GIVE_UP_AFTER_MS), Retry::GiveUp);
        assert_eq!(d.attempts, 3);
    }

    #[test]
    fn a_channel_is_down_after_repeated_failures_until_one_succeeds() {
        let mut h = ChannelHealth::default();
        assert_eq!(h.failed("x", 1), None);
        assert_eq!(h.failed("x", 2), None);
        assert_eq!(h.failed("x", 3), Some(HealthChange::WentDown));
        assert_eq!(h.failed("x", 4), None, "said once");
        assert!(h.is_down());
        assert_eq!(h.delivered(5), Some(HealthChange::CameBack));
        assert!(!h.is_down());
        assert_eq!(h.delivered(6), None);
    }
}
