//! Answers read from a read model, cached in this process until the read model changes.
//!
//! Each cached read model has a [`Changes`] counter that its projection raises after every
//! commit ([`crate::Projection::committed`]; a replay's swap too). An answer is kept with the
//! counter's value from before it was read, and served only while the counter still has that
//! value: a read that began before a commit is never served after it. A time to live bounds
//! how late a change made by another process (a second instance, a replay run by the CLI)
//! is seen: the first caller after it reads the answer again, and the callers that come
//! while it reads are served the answer it replaces, so a costly read never makes a crowd
//! wait twice; no answer is served later than twice the time to live after its read began.
//! Callers that must see a given position (`min_position`) read the read model instead.
//!
//! What uses it: session lookups ([`crate::sessions::SessionLookups`]), searches
//! ([`crate::search::SearchAnswers`]) and the dashboard (the query API), the reads that
//! every request makes or that read a whole read model (docs/decisions.md, "Answers cached
//! until the read model changes").

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    ttl: Duration,
    cache: moka::future::Cache<K, Answer<V>>,
    /// The keys whose answer one caller is reading again after its time to live.
    refreshing: Mutex<HashSet<K>>,
}

/// A cached answer: the [`Changes`] count before its read, and when the read began.
#[derive(Clone)]
struct Answer<V> {
    at: u64,
    read_at: Instant,
    value: V,
}

/// A caller's claim to read a key's answer again; released when dropped (the read ended or
/// the caller went away).
struct Refresh<'a, K: Hash + Eq> {
    refreshing: &'a Mutex<HashSet<K>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Refresh<'_, K> {
    fn drop(&mut self) {
        lock(self.refreshing).remove(&self.key);
    }
}

/// The set, even if a thread panicked while holding it (a set of keys stays consistent).
fn lock<K>(refreshing: &Mutex<HashSet<K>>) -> std::sync::MutexGuard<'_, HashSet<K>> {
    refreshing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// At most `capacity` answers of the read model counted by `changes`, each read again
    /// after `ttl` (and served at most `2 × ttl` after its read began).
    pub fn new(changes: &'static Changes, capacity: u64, ttl: Duration) -> Self {
        Self {
            changes,
            ttl,
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.saturating_mul(2))
                .build(),
            refreshing: Mutex::new(HashSet::new()),
        }
    }

    /// Claims the reading of `key` again, unless another caller has.
    fn claim(&self, key: &K) -> Option<Refresh<'_, K>> {
        lock(&self.refreshing).insert(key.clone()).then(|| Refresh {
            refreshing: &self.refreshing,
            key: key.clone(),
        })
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
        if let Some(answer) = self.cache.get(&key).await {
            if answer.at == changes {
                if answer.read_at.elapsed() < self.ttl {
                    return Ok(Some(answer.value));
                }
                // Past its time to live: this caller reads it again, unless another one is;
                // the callers meanwhile are served this answer.
                let Some(_refresh) = self.claim(&key) else {
                    return Ok(Some(answer.value));
                };
                let read_at = Instant::now();
                return match read().await {
                    Ok(Some(value)) => {
                        let answer = Answer {
                            at: changes,
                            read_at,
                            value: value.clone(),
                        };
                        self.cache.insert(key, answer).await;
                        Ok(Some(value))
                    }
                    Ok(None) => {
                        self.cache.invalidate(&key).await;
                        Ok(None)
                    }
                    Err(error) => Err(Arc::new(error)),
                };
            }
            self.cache.invalidate(&key).await;
        }
        let shared = self
            .cache
            .try_get_with(key, async {
                let (at, read_at) = (self.changes.now(), Instant::now());
                match read().await {
                    Ok(Some(value)) => Ok(Answer { at, read_at, value }),
                    Ok(None) => Err(Unread::Missing),
                    Err(error) => Err(Unread::Failed(Arc::new(error))),
                }
            })
            .await;
        match shared {
            // A read shared with a caller that began before the last change: read anew.
            Ok(answer) if answer.at < changes => read().await.map_err(Arc::new),
            Ok(answer) => Ok(Some(answer.value)),
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
    async fn an_answer_is_read_again_after_its_time_to_live() {
        static QUIET: Changes = Changes::new();
        let answers = Answers::new(&QUIET, 10, Duration::from_millis(50));
        assert_eq!(
            answers.get_or_read("k", || read(Some(1))).await,
            Ok(Some(1))
        );
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert_eq!(
            answers.get_or_read("k", || read(Some(2))).await,
            Ok(Some(2)),
            "the first caller after the time to live reads again"
        );
        assert_eq!(
            answers.get_or_read("k", || read(Some(3))).await,
            Ok(Some(2)),
            "and its answer is kept"
        );
        // Unused for twice the time to live: gone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            answers.get_or_read("k", || read(Some(4))).await,
            Ok(Some(4))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_during_a_read_after_the_time_to_live_are_served_the_old_answer() {
        static STILL: Changes = Changes::new();
        let answers = Arc::new(Answers::new(&STILL, 10, Duration::from_millis(50)));
        assert_eq!(
            answers.get_or_read("k", || read(Some(1))).await,
            Ok(Some(1))
        );
        tokio::time::sleep(Duration::from_millis(70)).await;
        let (started, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let refresher = {
            let (answers, started, release) = (answers.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                answers
                    .get_or_read("k", || {
                        let (started, release) = (started.clone(), release.clone());
                        async move {
                            started.notify_one();
                            release.notified().await;
                            Ok::<_, std::convert::Infallible>(Some(2))
                        }
                    })
                    .await
            })
        };
        started.notified().await;
        assert_eq!(
            answers.get_or_read("k", || read(Some(3))).await,
            Ok(Some(1)),
            "served the answer being replaced, without a read of its own"
        );
        release.notify_one();
        assert_eq!(refresher.await.expect("refresher"), Ok(Some(2)));
        assert_eq!(
            answers.get_or_read("k", || read(Some(4))).await,
            Ok(Some(2))
        );
        // A change still drops the answer at once.
        STILL.mark();
        assert_eq!(
            answers.get_or_read("k", || read(Some(5))).await,
            Ok(Some(5))
        );
    }
}
