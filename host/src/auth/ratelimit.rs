//! Rate limits (governor): login attempts per client IP and per username
//! from one address (with a growing wait after repeated failures), a
//! global per-IP budget for the API, and a budget per bridge token for the
//! wake API (Caddy bridges are not users: every visitor behind one Caddy
//! shares its address, so bridge traffic never spends the per-IP budget).
//!
//! The username budget is per address on purpose: keyed by the username
//! alone, anyone could spend the admin's budget from anywhere and lock the
//! admin out. Brute force from one address is still stopped by the
//! per-address limit and the backoff.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::ApiError;

/// Failures in a row (for one username from one address) that cost nothing
/// extra; each further one doubles the wait, from 1 s up to [`MAX_BACKOFF`].
const FREE_FAILURES: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A failure streak older than this is forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    not_before: Instant,
}

pub struct RateLimits {
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_user: DefaultKeyedRateLimiter<(String, IpAddr)>,
    login_failures: Mutex<HashMap<(String, IpAddr), Failures>>,
    api_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by the token's index in the configured bridge tokens.
    bridge: DefaultKeyedRateLimiter<usize>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    // Config validation guarantees n >= 1.
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn user_key(username: &str, ip: IpAddr) -> (String, IpAddr) {
    (username.to_lowercase(), ip)
}

impl RateLimits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            login_ip: RateLimiter::keyed(Quota::per_minute(nz(c.login_per_ip_per_minute))),
            login_user: RateLimiter::keyed(Quota::per_minute(nz(c.login_per_user_per_minute))),
            login_failures: Mutex::new(HashMap::new()),
            api_ip: RateLimiter::keyed(
                Quota::per_second(nz(c.api_per_ip_per_second)).allow_burst(nz(c.api_burst)),
            ),
            bridge: RateLimiter::keyed(
                Quota::per_second(nz(c.bridge_per_token_per_second))
                    .allow_burst(nz(c.bridge_burst)),
            ),
            clock: DefaultClock::default(),
        }
    }

    fn refuse(&self, wait: Duration) -> ApiError {
        ApiError::RateLimited { retry_after: wait }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), Failures>> {
        self.login_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// One login attempt by `ip` for `username`: the address's budget, the
    /// username's budget at this address, and the wait after repeated
    /// failures must all allow it.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        if let Err(not_until) = self.login_ip.check_key(&ip) {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now())));
        }
        let key = user_key(username, ip);
        if let Some(f) = self.failures().get(&key) {
            let now = Instant::now();
            if f.not_before > now {
                return Err(self.refuse(f.not_before - now));
            }
        }
        if let Err(not_until) = self.login_user.check_key(&key) {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// A wrong password for `username` from `ip`: after a few in a row,
    /// each one doubles the wait before the next attempt.
    pub fn login_failed(&self, ip: IpAddr, username: &str) {
        let now = Instant::now();
        let mut map = self.failures();
        let f = map.entry(user_key(username, ip)).or_insert(Failures {
            count: 0,
            last: now,
            not_before: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count > FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES - 1).min(16);
            let wait = Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF);
            f.not_before = now + wait;
        }
    }

    /// A successful login ends the failure streak of that username there.
    pub fn login_succeeded(&self, ip: IpAddr, username: &str) {
        self.failures().remove(&user_key(username, ip));
    }

    pub fn check_api(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.api_ip
            .check_key(&ip)
            .map_err(|not_until| self.refuse(not_until.wait_time_from(self.clock.now())))
    }

    /// One wake-API request from the bridge holding token number `token`.
    pub fn check_bridge(&self, token: usize) -> Result<(), ApiError> {
        self.bridge
            .check_key(&token)
            .map_err(|not_until| self.refuse(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets keys whose budget is full again, and old failure streaks,
    /// so memory stays bounded.
    pub fn shrink(&self) {
        self.login_ip.retain_recent();
        self.login_user.retain_recent();
        self.api_ip.retain_recent();
        self.bridge.retain_recent();
        self.failures()
            .retain(|_, f| f.last.elapsed() < FAILURE_MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_limits_per_ip_and_per_user() {
        let limits = RateLimits::new(&RateLimitConfig {
            login_per_ip_per_minute: 3,
            login_per_user_per_minute: 2,
            api_per_ip_per_second: 1,
            api_burst: 2,
            bridge_per_token_per_second: 1,
            bridge_burst: 3,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.check_login(a, "alice").is_ok());
        assert!(limits.check_login(a, "ALICE").is_ok());
        // Third try on alice from the same address: that budget is spent...
        let err = limits.check_login(a, "alice").unwrap_err();
        match err {
            ApiError::RateLimited { retry_after } => assert!(retry_after > Duration::ZERO),
            other => panic!("{other:?}"),
        }
        // ...but not alice's budget everywhere else.
        assert!(limits.check_login(b, "alice").is_ok());
        // The address's own budget (3) is spent by any usernames.
        assert!(limits.check_login(b, "bob").is_ok());
        assert!(limits.check_login(b, "carol").is_ok());
        assert!(limits.check_login(b, "dave").is_err());
        assert!(limits.check_api(a).is_ok());
        assert!(limits.check_api(a).is_ok());
        assert!(limits.check_api(a).is_err());
        assert!(limits.check_api(b).is_ok());
        // Each bridge token has its own budget, apart from the IPs'.
        for _ in 0..3 {
            assert!(limits.check_bridge(0).is_ok());
        }
        assert!(limits.check_bridge(0).is_err());
        assert!(limits.check_bridge(1).is_ok());
        assert!(limits.check_api(b).is_ok());
    }

    /// A stranger's wrong passwords for `admin` cannot lock the admin out:
    /// they back off only the stranger's address.
    #[test]
    fn failures_back_off_one_address_only() {
        let limits = RateLimits::new(&RateLimitConfig {
            login_per_ip_per_minute: 1000,
            login_per_user_per_minute: 1000,
            api_per_ip_per_second: 1,
            api_burst: 1,
            bridge_per_token_per_second: 1,
            bridge_burst: 1,
        });
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let owner: IpAddr = "198.51.100.4".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert!(limits.check_login(stranger, "admin").is_ok());
            limits.login_failed(stranger, "admin");
        }
        assert!(limits.check_login(stranger, "admin").is_ok());
        limits.login_failed(stranger, "admin");
        let wait = |r: Result<(), ApiError>| match r {
            Err(ApiError::RateLimited { retry_after }) => retry_after,
            other => panic!("{other:?}"),
        };
        let first = wait(limits.check_login(stranger, "admin"));
        assert!(first > Duration::ZERO && first <= Duration::from_secs(1));
        assert!(limits.check_login(owner, "admin").is_ok());
        // Each further failure doubles the wait, up to the cap.
        for _ in 0..20 {
            limits.login_failed(stranger, "admin");
        }
        let capped = wait(limits.check_login(stranger, "admin"));
        assert!(capped > Duration::from_secs(200) && capped <= MAX_BACKOFF);
        // A success ends the streak.
        limits.login_succeeded(stranger, "admin");
        assert!(limits.check_login(stranger, "admin").is_ok());
    }
}
