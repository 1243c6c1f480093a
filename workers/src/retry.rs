//! Retries of transient failures: exponential backoff with jitter (the `backon` crate).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How often and how patiently to retry a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time, with jitter.
    pub min_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 1 s doubling to at most 60 s: about four minutes of patience.
    fn default() -> Self {
        Self {
            attempts: 8,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails with an error `retryable` says is permanent, or
    /// the attempts run out. Answers the outcome and the number of attempts made.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut call: F,
        retryable: impl Fn(&E) -> bool,
    ) -> (Result<T, E>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let result = (|| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            call()
        })
        .retry(backoff)
        .when(|e| retryable(e))
        .await;
        (result, attempts.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let mut failures = 2;
        let (result, attempts) = quick(5)
            .run(
                || {
                    let fail = failures > 0;
                    failures -= 1;
                    async move {
                        if fail {
                            Err("503")
                        } else {
                            Ok("created")
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Ok("created"));
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let (result, attempts) = quick(5)
            .run(|| async { Err::<(), _>("400") }, |_| false)
            .await;
        assert_eq!(result, Err("400"));
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn retries_stop_when_attempts_run_out() {
        let (result, attempts) = quick(3)
            .run(|| async { Err::<(), _>("503") }, |_| true)
            .await;
        assert_eq!(result, Err("503"));
        assert_eq!(attempts, 3);
    }
}
