//! Rate limits (governor): login attempts per client IP and per username,
//! a global per-IP budget for the API, and a budget per bridge token for
//! the wake API (Caddy bridges are not users: every visitor behind one
//! Caddy shares its address, so bridge traffic never spends the per-IP
//! budget).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::ApiError;

pub struct RateLimits {
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_user: DefaultKeyedRateLimiter<String>,
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

impl RateLimits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            login_ip: RateLimiter::keyed(Quota::per_minute(nz(c.login_per_ip_per_minute))),
            login_user: RateLimiter::keyed(Quota::per_minute(nz(c.login_per_user_per_minute))),
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

    /// One login attempt by `ip` for `username`; both budgets must allow it.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        if let Err(not_until) = self.login_ip.check_key(&ip) {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now())));
        }
        let key = username.to_lowercase();
        if let Err(not_until) = self.login_user.check_key(&key) {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
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

    /// Forgets keys whose budget is full again, so memory stays bounded.
    pub fn shrink(&self) {
        self.login_ip.retain_recent();
        self.login_user.retain_recent();
        self.api_ip.retain_recent();
        self.bridge.retain_recent();
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
        assert!(limits.check_login(b, "ALICE").is_ok());
        // Third try on alice from a third address: the username budget is spent.
        let err = limits
            .check_login("10.0.0.3".parse().unwrap(), "alice")
            .unwrap_err();
        match err {
            ApiError::RateLimited { retry_after } => assert!(retry_after > Duration::ZERO),
            other => panic!("{other:?}"),
        }
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
}
