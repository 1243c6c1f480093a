//! Rate limits (DESIGN.md §7: 429 with `Retry-After`).
//!
//! - [`ApiRateLimiter`]: API calls per user (default 100 per minute), a GCRA limiter from the
//!   `governor` crate keyed by user id; checked on every authenticated call.
//! - [`SignInLimiter`]: failed sign-ins per client IP and per account (default 5 per 15
//!   minutes). Only failures count, so a household behind one address can sign in freely
//!   while guessing is stopped; the check comes *before* the password is verified, so a
//!   blocked guesser learns nothing. `governor` cannot count only failures without also
//!   charging successes, so this is a small sliding-window log.
//!
//! Both are in-process: with several command-API replicas each keeps its own counts.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// API calls per user per minute.
pub struct ApiRateLimiter {
    limiter: DefaultKeyedRateLimiter<Uuid>,
}

impl std::fmt::Debug for ApiRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiRateLimiter")
    }
}

impl ApiRateLimiter {
    /// Allows `per_minute` calls per user per minute (bursts up to `per_minute`).
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// Charges one call to `user`.
    ///
    /// # Errors
    /// The seconds to wait (at least 1) when `user` is over the limit.
    pub fn check(&self, user: Uuid) -> Result<(), u64> {
        self.limiter.check_key(&user).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })?;
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        Ok(())
    }
}

/// Failed sign-ins per key in a sliding window.
#[derive(Debug)]
pub struct SignInLimiter {
    attempts: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys of the sign-in limiter.
#[derive(Debug, Clone, Copy)]
pub enum SignInKey<'a> {
    /// A client address.
    Ip(&'a str),
    /// An account name (local username, or `plex:<id>`), compared case-insensitively.
    Account(&'a str),
}

impl SignInKey<'_> {
    fn key(&self) -> String {
        match self {
            Self::Ip(ip) => format!("ip:{ip}"),
            Self::Account(name) => format!("account:{}", name.trim().to_lowercase()),
        }
    }
}

impl SignInLimiter {
    /// Allows `attempts` failures per key in any `window`.
    pub fn new(attempts: usize, window: Duration) -> Self {
        Self {
            attempts: attempts.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether another attempt is allowed for every key.
    ///
    /// # Errors
    /// The seconds until the oldest failure leaves the window (at least 1) when a key is
    /// blocked.
    pub fn check(&self, keys: &[SignInKey<'_>]) -> Result<(), u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None::<Duration>;
        for key in keys {
            let Some(times) = failures.get_mut(&key.key()) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.len() >= self.attempts {
                let index = times.len() - self.attempts;
                let frees = self.window.saturating_sub(now.duration_since(times[index]));
                wait = Some(wait.map_or(frees, |w| w.max(frees)));
            }
        }
        match wait {
            Some(wait) => Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            None => Ok(()),
        }
    }

    /// Records a failed attempt against every key.
    pub fn record_failure(&self, keys: &[SignInKey<'_>]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            let window = self.window;
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for key in keys {
            let times = failures.entry(key.key()).or_default();
            times.push_back(now);
            while times.len() > self.attempts {
                times.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_failure_in_the_window_is_refused_for_ip_and_account_alike() {
        let limiter = SignInLimiter::new(5, Duration::from_secs(900));
        let keys = [SignInKey::Ip("10.0.0.1"), SignInKey::Account("Alice")];
        for _ in 0..5 {
            assert_eq!(limiter.check(&keys), Ok(()));
            limiter.record_failure(&keys);
        }
        let wait = limiter.check(&keys).expect_err("blocked");
        assert!((899..=900).contains(&wait), "{wait}");
        // The account is blocked from another address, the address for another account.
        assert!(limiter.check(&[SignInKey::Account("alice")]).is_err());
        assert!(limiter
            .check(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("bob")])
            .is_err());
        assert_eq!(
            limiter.check(&[SignInKey::Ip("10.0.0.2"), SignInKey::Account("bob")]),
            Ok(())
        );
    }

    #[test]
    fn failures_leave_the_window() {
        let limiter = SignInLimiter::new(2, Duration::from_millis(30));
        let keys = [SignInKey::Ip("10.0.0.1")];
        limiter.record_failure(&keys);
        limiter.record_failure(&keys);
        assert!(limiter.check(&keys).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(limiter.check(&keys), Ok(()));
    }

    #[test]
    fn api_calls_over_the_limit_get_a_wait() {
        let limiter = ApiRateLimiter::per_minute(NonZeroU32::new(3).expect("3 > 0"));
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for _ in 0..3 {
            assert_eq!(limiter.check(alice), Ok(()));
        }
        let wait = limiter.check(alice).expect_err("over the limit");
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limiter.check(bob), Ok(()), "limits are per user");
    }
}
