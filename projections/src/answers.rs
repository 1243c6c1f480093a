//! Answers read from a read model, cached in this process until the read model changes.
//!
//! Each cached read model has a [`Changes`] counter that its projection raises after every
//! commit ([`crate::Projection::committed`]; a replay's swap too). An answer is kept with the
//! counter's value from before it was read, and served only while the counter still has that
//! value: a read that began before a commit is never served after it. A time to live bounds
//! how late a change made by another process (a second instance, a replay run by the CLI)
//! is seen. Callers that must see a given position (`min_position`) read the read model
//! instead.
//!
//! What uses it: session lookups ([`crate::sessions::SessionLookups`]), searches
//! ([`crate::search::SearchAnswers`]) and the dashboard (the query API), the reads that
//! every request makes or that read a whole read model (docs/decisions.md, "Answers cached
//! until the read model changes").

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many times a read model changed in this process.
#[derive(Debug, Default)]
pub struct Changes(AtomicU64);

impl Changes {
    /// A counter at 0.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The read model changed: every answer read before is stale.
    pub fn mark(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The counter now; take it before reading the read model.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Answers by key, each valid while its read model's [`Changes`] stays where it was when the
/// answer was read, for at most the time to live.
///
/// Concurrent callers missing the same key share one read (the first caller's): a burst of
/// the same costly read after a change runs it once, not once per caller.
pub struct Answers<K, V> {
    changes: &'static Changes,
    cache: moka::future::Cache<K, (u64, V)>,
}

impl<K, V> std::fmt::Debug for Answers<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

/// Why a shared read gave no answer to cache.
enum Unread<E> {
    /// The read model has no answer (not cached).
    Missing,
    /// The read failed (the error every caller sharing the read gets).
    Failed(Arc<E>),
}

impl<K, V> Answers<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` answers of the read model counted by `changes`, each for at most
    /// `ttl`.
    pub fn new(changes: &'static Changes, capacity: u64, ttl: Duration) -> Self {
        Self {
            changes,
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The answer of `key` if one is cached and still valid, else what `read()` answers
    /// (cached when it is `Some`; `None` answers are not kept). The answer is always of a
    /// read that began after this call did, or after the read model's last change before it.
    ///
    /// # Errors
    /// `read`'s error (shared with the callers that waited for the same read); nothing is
    /// cached then.
    pub async fn get_or_read<E, F, Fut>(&self, key: K, read: F) -> Result<Option<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>, E>>,
    {
        let changes = self.changes.now();
        if let Some((at, value)) = self.cache.get(&key).await {
            if at == changes {
                return Ok(Some(value));
            }
            self.cache.invalidate(&key).await;
        }
        let shared = self
            .cache
            .try_get_with(key, async {
                let at = self.changes.now();
                match read().await {
                    Ok(Some(value)) => Ok((at, value)),
                    Ok(None) => Err(Unread::Missing),
                    Err(error) => Err(Unread::Failed(Arc::new(error))),
                }
            })
            .await;
        match shared {
            // A read shared with a caller that began before the last change: read anew.
            Ok((at, _)) if at < changes => read().await.map_err(Arc::new),
            Ok((_, value)) => Ok(Some(value)),
            Err(unread) => match &*unread {
                Unread::Missing => Ok(None),
                Unread::Failed(error) => Err(error.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CHANGES: Changes = Changes::new();

    async fn read(value: Option<u32>) -> Result<Option<u32>, std::convert::Infallible> {
        Ok(value)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_missing_the_same_key_at_once_share_one_read() {
        static SHARED: Changes = Changes::new();
        let answers = Arc::new(Answers::new(&SHARED, 10, Duration::from_secs(60)));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let (answers, reads) = (answers.clone(), reads.clone());
                tokio::spawn(async move {
                    answers
                        .get_or_read("k", || async {
                            reads.fetch_add(1, Ordering::SeqCst);
                            // Long enough for every caller to arrive while it runs.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Ok::<_, std::convert::Infallible>(Some(7))
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.expect("caller"), Ok(Some(7)));
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "one read for sixteen callers"
        );
    }

    #[tokio::test]
    async fn an_answer_is_served_until_its_read_model_changes_and_none_is_never_kept() {
        let answers = Answers::new(&CHANGES, 10, Duration::from_secs(60));
        assert_eq!(
            answers.get_or_read("k", || read(Some(1))).await,
            Ok(Some(1))
        );
        assert_eq!(
            answers.get_or_read("k", || read(Some(2))).await,
            Ok(Some(1)),
            "cached"
        );
        CHANGES.mark();
        assert_eq!(
            answers.get_or_read("k", || read(Some(3))).await,
            Ok(Some(3)),
            "read again after a change"
        );
        assert_eq!(answers.get_or_read("gone", || read(None)).await, Ok(None));
        assert_eq!(
            answers.get_or_read("gone", || read(Some(4))).await,
            Ok(Some(4)),
            "a missing answer is not cached"
        );
    }

    #[tokio::test]
    async fn a_read_that_began_before_a_change_is_not_served_after_it() {
        static RACED: Changes = Changes::new();
        let answers = Answers::new(&RACED, 10, Duration::from_secs(60));
        // The read model changes while the read is under way: its answer may predate the
        // change, so it is kept under the old count and never served.
        let racing = || async {
            RACED.mark();
            Ok::<_, std::convert::Infallible>(Some(1))
        };
        assert_eq!(answers.get_or_read("k", racing).await, Ok(Some(1)));
        assert_eq!(
            answers.get_or_read("k", || read(Some(2))).await,
            Ok(Some(2))
        );
    }

    #[tokio::test]
    async fn an_answer_expires_after_its_time_to_live() {
        static QUIET: Changes = Changes::new();
        let answers = Answers::new(&QUIET, 10, Duration::from_millis(50));
        assert_eq!(
            answers.get_or_read("k", || read(Some(1))).await,
            Ok(Some(1))
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            answers.get_or_read("k", || read(Some(2))).await,
            Ok(Some(2))
        );
    }
}
