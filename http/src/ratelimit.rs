//! Rate limits (docs/design.md §7: 429 with `Retry-After`).
//!
//! - [`ApiRateLimiter`]: API calls per user (default 100 per minute), a GCRA limiter from the
//!   `governor` crate keyed by user id; checked on every authenticated call.
//! - [`SignInLimiter`]: failed sign-ins per account (default 5 per 15 minutes) and, separately
//!   and higher, per client address (default 30 in the same window, over all accounts). The
//!   two limits are apart because a household behind one router, or everyone behind the
//!   reverse proxy, shares one address: one member's typos lock *their* account, not the
//!   others'. Only failures count; the check comes *before* the password is verified, so a
//!   blocked guesser learns nothing and a locked account's right password is refused too,
//!   until its failures leave the window. A successful sign-in clears its account's failures
//!   (as Overseerr and most apps do) but never the address's, so signing in to one's own
//!   account cannot launder guesses at others. `governor` cannot count only failures without
//!   also charging successes, so this is a small sliding-window log.
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

/// The limits of a [`SignInLimiter`] (in production `MEDIANEST_SIGNIN_ATTEMPTS`, 5;
/// `MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS`, 30; `MEDIANEST_SIGNIN_WINDOW_SECS`, 900).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    /// Failures of one account in any `window` before it is locked (at least 1).
    pub per_account: usize,
    /// Failures from one client address in any `window`, whatever the accounts, before the
    /// address is refused (at least 1).
    pub per_address: usize,
    /// The sliding window.
    pub window: Duration,
}

/// Failed sign-ins per account and per client address in a sliding window.
#[derive(Debug)]
pub struct SignInLimiter {
    limits: SignInLimits,
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
    /// A limiter with `limits` (each limit raised to at least 1).
    pub fn new(limits: SignInLimits) -> Self {
        Self {
            limits: SignInLimits {
                per_account: limits.per_account.max(1),
                per_address: limits.per_address.max(1),
                window: limits.window,
            },
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The failures `key` may have in the window.
    fn limit(&self, key: &SignInKey<'_>) -> usize {
        match key {
            SignInKey::Ip(_) => self.limits.per_address,
            SignInKey::Account(_) => self.limits.per_account,
        }
    }

    /// Whether another attempt is allowed for every key.
    ///
    /// # Errors
    /// The seconds until enough failures leave the window for every key to be allowed again
    /// (at least 1) when a key has used up its limit.
    pub fn check(&self, keys: &[SignInKey<'_>]) -> Result<(), u64> {
        let now = Instant::now();
        let window = self.limits.window;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None::<Duration>;
        for key in keys {
            let Some(times) = failures.get_mut(&key.key()) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                times.pop_front();
            }
            let limit = self.limit(key);
            if times.len() >= limit {
                let index = times.len() - limit;
                let frees = window.saturating_sub(now.duration_since(times[index]));
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
        let window = self.limits.window;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for key in keys {
            let limit = self.limit(key);
            let times = failures.entry(key.key()).or_default();
            times.push_back(now);
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    /// Records a successful sign-in: the failures of the [`SignInKey::Account`] keys are
    /// forgotten; [`SignInKey::Ip`] keys keep theirs, so a guesser who owns one account cannot
    /// clear their address by signing in to it between guesses.
    pub fn record_success(&self, keys: &[SignInKey<'_>]) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if matches!(key, SignInKey::Account(_)) {
                failures.remove(&key.key());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5 failures per account and 8 per address in 15 minutes.
    fn limiter() -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            per_account: 5,
            per_address: 8,
            window: Duration::from_secs(900),
        })
    }

    /// Records `n` failures of `account` from `ip`, each allowed beforehand.
    fn fail(limiter: &SignInLimiter, ip: &str, account: &str, n: usize) {
        let keys = [SignInKey::Ip(ip), SignInKey::Account(account)];
        for attempt in 1..=n {
            assert_eq!(limiter.check(&keys), Ok(()), "{account} attempt {attempt}");
            limiter.record_failure(&keys);
        }
    }

    #[test]
    fn the_sixth_failure_of_an_account_is_refused_from_any_address() {
        let limiter = limiter();
        fail(&limiter, "10.0.0.1", "Alice", 5);
        let wait = limiter
            .check(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("alice")])
            .expect_err("alice is locked");
        assert!((899..=900).contains(&wait), "{wait}");
        assert!(
            limiter
                .check(&[SignInKey::Ip("10.0.0.2"), SignInKey::Account(" ALICE ")])
                .is_err(),
            "the account is locked from another address, whatever the case"
        );
    }

    #[test]
    fn a_locked_account_does_not_lock_other_accounts_at_its_address() {
        let limiter = limiter();
        fail(&limiter, "10.0.0.1", "alice", 5);
        assert_eq!(
            limiter.check(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("bob")]),
            Ok(()),
            "bob signs in from the household's address"
        );
    }

    #[test]
    fn failures_over_several_accounts_refuse_the_address_at_its_own_limit() {
        let limiter = limiter();
        fail(&limiter, "10.0.0.1", "alice", 4);
        fail(&limiter, "10.0.0.1", "bob", 4);
        let wait = limiter
            .check(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("carol")])
            .expect_err("the address is refused");
        assert!((899..=900).contains(&wait), "{wait}");
        assert_eq!(
            limiter.check(&[SignInKey::Ip("10.0.0.2"), SignInKey::Account("carol")]),
            Ok(()),
            "another address is not affected"
        );
        assert_eq!(
            limiter.check(&[SignInKey::Ip("10.0.0.2"), SignInKey::Account("alice")]),
            Ok(()),
            "alice's 4 failures are under the account limit"
        );
    }

    #[test]
    fn a_success_clears_the_accounts_failures_but_not_the_addresses() {
        let limiter = limiter();
        fail(&limiter, "10.0.0.1", "alice", 4);
        limiter.record_success(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("Alice")]);
        // Alice has 5 failures to spend again; the address has 4 of its 8 left.
        fail(&limiter, "10.0.0.2", "alice", 5);
        assert!(limiter.check(&[SignInKey::Account("alice")]).is_err());
        fail(&limiter, "10.0.0.1", "bob", 4);
        assert!(
            limiter
                .check(&[SignInKey::Ip("10.0.0.1"), SignInKey::Account("carol")])
                .is_err(),
            "the address still counts the failures before the success"
        );
    }

    #[test]
    fn failures_leave_the_window() {
        let limiter = SignInLimiter::new(SignInLimits {
            per_account: 2,
            per_address: 3,
            window: Duration::from_millis(30),
        });
        let keys = [SignInKey::Ip("10.0.0.1"), SignInKey::Account("alice")];
        limiter.record_failure(&keys);
        limiter.record_failure(&keys);
        assert!(limiter.check(&keys).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(limiter.check(&keys), Ok(()));
    }

    #[test]
    fn limits_of_zero_are_raised_to_one() {
        let limiter = SignInLimiter::new(SignInLimits {
            per_account: 0,
            per_address: 0,
            window: Duration::from_secs(60),
        });
        let keys = [SignInKey::Ip("10.0.0.1"), SignInKey::Account("alice")];
        assert_eq!(limiter.check(&keys), Ok(()));
        limiter.record_failure(&keys);
        assert!(limiter.check(&keys).is_err());
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
