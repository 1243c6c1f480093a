//! The command service of downloads: the `download` aggregate's executor plus the two rules
//! that span downloads (docs/design.md §3, Download; issue 4):
//!
//! - **per-user limit** — at most `limit` downloads queued per user in any rolling hour
//!   (default 5; admins are exempt, like Overseerr's quotas). Over the limit a `Queue` is
//!   refused with the time the oldest counted download leaves the window
//!   ([`DownloadCommandError::LimitExceeded`], HTTP 429);
//! - **one active download per user and URL** — a URL already queued or running for that
//!   user is refused naming the existing download ([`DownloadCommandError::Duplicate`],
//!   HTTP 409). Another user may queue the same URL (the shared download archive makes it
//!   cost nothing).
//!
//! Both are kept with the `download_ledger` table, written under a per-user advisory lock
//! (held until the download's events are written) before the download's events. A row whose download was never written (a crash between
//! the two) stops counting after a short grace; a row left active by a crash after the
//! download ended is healed when it is next met (its download is loaded and, if it ended,
//! the row is released).

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use medianest_domain::download::{Download, DownloadCommand, DownloadError, DownloadServices};
use medianest_domain::{Actor, DownloadId};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::executor::{CommandExecutor, Committed, ExecuteError};
use crate::EventMetadata;

/// How long a ledger row without a written download is honoured (a queueing in flight).
const UNWRITTEN_GRACE: Duration = Duration::from_secs(30);

/// The window of the per-user limit.
pub const LIMIT_WINDOW: Duration = Duration::from_secs(3600);

/// The default per-user limit: downloads queued per rolling hour.
pub const DEFAULT_LIMIT_PER_HOUR: u32 = 5;

/// Why a download command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DownloadCommandError {
    /// The same URL is already queued or running for this user (409, naming it).
    #[error("this URL is already queued or running for you: {existing}")]
    Duplicate {
        /// The existing download's id.
        existing: DownloadId,
    },
    /// The user queued `limit` downloads in the last hour (429).
    #[error("you may queue {limit} downloads per hour; the next slot frees at {next_slot_at}")]
    LimitExceeded {
        /// Downloads per rolling hour.
        limit: u32,
        /// Downloads counted in the current window.
        used: u32,
        /// When the oldest counted download leaves the window.
        next_slot_at: DateTime<Utc>,
    },
    /// The aggregate or the store refused it.
    #[error(transparent)]
    Execute(#[from] ExecuteError<DownloadError>),
}

impl DownloadCommandError {
    /// Whether the same command may succeed later unchanged (see
    /// [`ExecuteError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Execute(error) if error.is_transient())
    }
}

impl From<sqlx::Error> for DownloadCommandError {
    fn from(error: sqlx::Error) -> Self {
        Self::Execute(error.into())
    }
}

/// Executes download commands, keeping the per-user limit and the one-active-URL rule.
#[derive(Debug)]
pub struct Downloads {
    executor: CommandExecutor<Download>,
    limit_per_hour: Option<NonZeroU32>,
    pool: PgPool,
}

impl Downloads {
    /// A service writing to `pool`; `services` carries the URL allow-list; `limit_per_hour`
    /// is the per-user limit (`None`: unlimited).
    pub fn new(
        pool: PgPool,
        services: DownloadServices,
        limit_per_hour: Option<NonZeroU32>,
    ) -> Self {
        Self {
            executor: CommandExecutor::new(pool.clone(), services),
            limit_per_hour,
            pool,
        }
    }

    /// `url` as it would be recorded (parsed), if it is an http(s) URL on the allow-list.
    ///
    /// # Errors
    /// [`DownloadError::Invalid`] naming `url`.
    pub fn check_url(&self, url: &str) -> Result<String, DownloadError> {
        self.executor.services().check_url(url.trim())
    }

    /// Checks, without recording anything, that `requested_by` may queue `url` now (the
    /// per-user limit and the one-active-URL rule), so expensive checks can be skipped for
    /// a command that would be refused. [`Downloads::execute`] checks again.
    ///
    /// # Errors
    /// As [`Downloads::execute`] for a `Queue`.
    pub async fn precheck(
        &self,
        id: DownloadId,
        requested_by: &Actor,
        url: &str,
    ) -> Result<(), DownloadCommandError> {
        let url = self.check_url(url).map_err(ExecuteError::Rejected)?;
        let limited = !requested_by.is_admin();
        let mut lock = UserLock::acquire(&self.pool, &requested_by.id.to_string()).await?;
        self.claim(&mut lock, id, &url, limited, false).await
    }

    /// The current state and version of download `id` (version 0: no such download).
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(
        &self,
        id: DownloadId,
    ) -> Result<(Download, i64), ExecuteError<DownloadError>> {
        self.executor.load(&id.to_string()).await
    }

    /// Executes `command` on download `id` (`Queue` creates it).
    ///
    /// A `Queue` or a `Retry` holds the user's lock from the ledger check until its events
    /// are written, and the release of an ended download takes the same lock and re-reads
    /// the download, so a cancel, a retry and a queue of the same URL cannot interleave into
    /// two active downloads or an active download the ledger calls ended.
    ///
    /// # Errors
    /// [`DownloadCommandError::Duplicate`] when a `Queue` or `Retry` meets an active download
    /// of the same URL for the same user; [`DownloadCommandError::LimitExceeded`] when a
    /// non-admin's `Queue` exceeds the per-user limit; otherwise the executor's errors.
    pub async fn execute(
        &self,
        id: DownloadId,
        command: DownloadCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<Download>, DownloadCommandError> {
        let mut lock = None;
        match &command {
            DownloadCommand::Queue {
                requested_by, url, ..
            } => {
                // The ledger keys the URL as it will be recorded (parsed); an invalid URL is
                // refused here, before the ledger is touched.
                let url = self.check_url(url).map_err(ExecuteError::Rejected)?;
                let limited = !requested_by.is_admin();
                let mut held = UserLock::acquire(&self.pool, &requested_by.id.to_string()).await?;
                self.claim(&mut held, id, &url, limited, true).await?;
                lock = Some(held);
            }
            DownloadCommand::Retry { .. } => {
                let (current, _) = self.load(id).await?;
                let ended = current.status().is_some_and(|s| !is_active(s));
                if let (true, Some(owner), Some(url)) =
                    (ended, current.requested_by(), current.url())
                {
                    // A retry is not a new download: it does not count against the limit.
                    let mut held = UserLock::acquire(&self.pool, &owner.to_string()).await?;
                    self.claim(&mut held, id, url, false, true).await?;
                    lock = Some(held);
                }
            }
            _ => {}
        }
        let result = self
            .executor
            .execute(&id.to_string(), command, expected_version, metadata)
            .await;
        // The events are written (or refused): ledger upkeep failures are logged, not
        // answered, and heal when the row is next met.
        let upkeep = match (&result, lock) {
            (Ok(committed), held) => {
                if committed.aggregate.status().is_some_and(|s| !is_active(s)) {
                    self.release(id, held).await
                } else {
                    Ok(())
                }
            }
            (Err(_), Some(held)) => self.undo_claim(id, held).await,
            (Err(_), None) => Ok(()),
        };
        if let Err(error) = upkeep {
            tracing::warn!(%id, %error, "download ledger not updated; it heals when next met");
        }
        Ok(result?)
    }

    /// Checks the one-active-URL rule (and, when `limited`, the per-user limit) for the
    /// user of `lock` and, when `record`, records `id` as active in the ledger.
    async fn claim(
        &self,
        lock: &mut UserLock,
        id: DownloadId,
        url: &str,
        limited: bool,
        record: bool,
    ) -> Result<(), DownloadCommandError> {
        let user = lock.user.clone();
        let holders: Vec<Uuid> = sqlx::query_scalar(
            "SELECT download_id FROM download_ledger
              WHERE user_id = $1 AND url = $2 AND active AND download_id <> $3",
        )
        .bind(&user)
        .bind(url)
        .bind(id.as_uuid())
        .fetch_all(&mut *lock.conn)
        .await?;
        for holder in holders.into_iter().map(DownloadId::from) {
            if self.still_active(holder).await? {
                return Err(DownloadCommandError::Duplicate { existing: holder });
            }
            sqlx::query("UPDATE download_ledger SET active = false WHERE download_id = $1")
                .bind(holder.as_uuid())
                .execute(&mut *lock.conn)
                .await?;
        }
        if let (true, Some(limit)) = (limited, self.limit_per_hour) {
            let counted: Vec<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT l.queued_at FROM download_ledger l
                  WHERE l.user_id = $1 AND l.queued_at > now() - make_interval(secs => $2)
                    AND (l.queued_at > now() - make_interval(secs => $3)
                         OR EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'download'
                                     AND e.aggregate_id = l.download_id::text))
                  ORDER BY l.queued_at",
            )
            .bind(&user)
            .bind(LIMIT_WINDOW.as_secs_f64())
            .bind(UNWRITTEN_GRACE.as_secs_f64())
            .fetch_all(&mut *lock.conn)
            .await?;
            if let Some(next_slot_at) = next_slot(limit, &counted) {
                return Err(DownloadCommandError::LimitExceeded {
                    limit: limit.get(),
                    used: u32::try_from(counted.len()).unwrap_or(u32::MAX),
                    next_slot_at,
                });
            }
        }
        if record {
            sqlx::query(
                "INSERT INTO download_ledger (download_id, user_id, url) VALUES ($1, $2, $3)
                 ON CONFLICT (download_id) DO UPDATE SET active = true",
            )
            .bind(id.as_uuid())
            .bind(&user)
            .bind(url)
            .execute(&mut *lock.conn)
            .await?;
        }
        Ok(())
    }

    /// Whether the ledger's `holder` still holds its URL: its download is queued or running,
    /// or it was never written and is still within the grace of a queueing in flight.
    async fn still_active(&self, holder: DownloadId) -> Result<bool, DownloadCommandError> {
        let (download, version) = self.load(holder).await?;
        Ok(match download.status() {
            Some(status) => is_active(status),
            None => {
                let queued_at: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT queued_at FROM download_ledger WHERE download_id = $1",
                )
                .bind(holder.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
                version == 0
                    && queued_at.is_some_and(|at| {
                        Utc::now() - at
                            <= chrono::Duration::from_std(UNWRITTEN_GRACE)
                                .unwrap_or(chrono::Duration::MAX)
                    })
            }
        })
    }

    /// After a refused `Queue` or `Retry`: a never-written download's row is removed (it
    /// neither counts nor holds its URL); an existing one goes back to what its status says.
    async fn undo_claim(&self, id: DownloadId, lock: UserLock) -> Result<(), DownloadCommandError> {
        let (current, _) = self.load(id).await?;
        if current.status().is_none() {
            sqlx::query("DELETE FROM download_ledger WHERE download_id = $1")
                .bind(id.as_uuid())
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        self.release(id, Some(lock)).await
    }

    /// Marks `id` ended in the ledger, under its user's lock (`held`, or taken here), if the
    /// download — read again under the lock — has ended.
    async fn release(
        &self,
        id: DownloadId,
        held: Option<UserLock>,
    ) -> Result<(), DownloadCommandError> {
        let mut lock = match held {
            Some(lock) => lock,
            None => {
                let user: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM download_ledger WHERE download_id = $1",
                )
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
                let Some(user) = user else {
                    return Ok(());
                };
                UserLock::acquire(&self.pool, &user).await?
            }
        };
        let (current, _) = self.load(id).await?;
        if current.status().is_some_and(|s| !is_active(s)) {
            sqlx::query(
                "UPDATE download_ledger SET active = false WHERE download_id = $1 AND active",
            )
            .bind(id.as_uuid())
            .execute(&mut *lock.conn)
            .await?;
        }
        Ok(())
    }
}

/// A user's ledger lock: a session advisory lock on a connection of its own, which is closed
/// (so the lock released) when this is dropped — also when a request is abandoned midway.
struct UserLock {
    conn: PoolConnection<Postgres>,
    user: String,
}

impl UserLock {
    async fn acquire(pool: &PgPool, user: &str) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        conn.close_on_drop();
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 11))")
            .bind(user)
            .execute(&mut *conn)
            .await?;
        Ok(Self {
            conn,
            user: user.to_string(),
        })
    }
}

/// Queued or running.
fn is_active(status: medianest_domain::download::DownloadStatus) -> bool {
    use medianest_domain::download::DownloadStatus as S;
    matches!(status, S::Queued | S::Running)
}

/// When a new download may be queued, given the sorted times counted in the window: `None`
/// while fewer than `limit` are counted, else when enough of them have left the window.
fn next_slot(limit: NonZeroU32, counted: &[DateTime<Utc>]) -> Option<DateTime<Utc>> {
    let limit = usize::try_from(limit.get()).unwrap_or(usize::MAX);
    let over = counted.len().checked_sub(limit)?;
    let window = chrono::Duration::from_std(LIMIT_WINDOW).unwrap_or(chrono::Duration::MAX);
    counted.get(over).map(|oldest| *oldest + window)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, minute, 0).unwrap()
    }

    #[test]
    fn below_the_limit_there_is_a_free_slot() {
        let limit = NonZeroU32::new(3).unwrap();
        assert_eq!(next_slot(limit, &[]), None);
        assert_eq!(next_slot(limit, &[at(1), at(2)]), None);
    }

    #[test]
    fn at_the_limit_the_oldest_leaving_the_window_frees_the_slot() {
        let limit = NonZeroU32::new(3).unwrap();
        let counted = [at(1), at(2), at(3)];
        assert_eq!(
            next_slot(limit, &counted),
            Some(at(1) + chrono::Duration::hours(1))
        );
    }

    #[test]
    fn over_the_limit_enough_must_leave() {
        // Limit lowered after five were queued: three must leave before one fits.
        let limit = NonZeroU32::new(3).unwrap();
        let counted = [at(1), at(2), at(3), at(4), at(5)];
        assert_eq!(
            next_slot(limit, &counted),
            Some(at(3) + chrono::Duration::hours(1))
        );
    }
}
