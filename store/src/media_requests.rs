//! The command service of media requests: the aggregate's executor plus the one rule that
//! spans aggregates, "one active request per `(media_type, tmdb_id, is_4k)`".
//!
//! The rule is kept with the `media_request_reservations` table: a submission (or a retry)
//! first reserves its media for its request id, then writes its events; a request that
//! reaches a terminal status releases its reservation. A reservation left behind by a crash
//! (its request never written, or already terminal) is taken over by the next submission,
//! so the table heals itself.

use std::time::Duration;

use medianest_domain::media_request::{
    MediaRequest, MediaRequestCommand, MediaRequestError, MediaRequestServices, MediaType,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::executor::{CommandExecutor, Committed, ExecuteError};
use crate::EventMetadata;

/// How long a reservation without a written request is honoured (a submission in flight).
const UNWRITTEN_GRACE: Duration = Duration::from_secs(30);

/// Why a media-request command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MediaRequestCommandError {
    /// Another active request exists for the same media (409, naming it).
    #[error("an active request for this media already exists: {existing}")]
    Duplicate {
        /// The existing request's id.
        existing: Uuid,
    },
    /// The aggregate or the store refused it.
    #[error(transparent)]
    Execute(#[from] ExecuteError<MediaRequestError>),
}

impl From<sqlx::Error> for MediaRequestCommandError {
    fn from(error: sqlx::Error) -> Self {
        Self::Execute(error.into())
    }
}

/// The media key of the uniqueness rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MediaKey {
    media_type: MediaType,
    tmdb_id: i64,
    is_4k: bool,
}

impl MediaKey {
    fn new(media: &medianest_domain::media_request::Media, is_4k: bool) -> Self {
        Self {
            media_type: media.media_type,
            tmdb_id: i64::from(media.tmdb_id.get()),
            is_4k,
        }
    }

    /// The key of a submitted request.
    fn of(request: &MediaRequest) -> Option<Self> {
        request
            .media()
            .map(|media| Self::new(media, request.is_4k()))
    }
}

/// Executes media-request commands, keeping the one-active-request rule.
#[derive(Debug)]
pub struct MediaRequests {
    executor: CommandExecutor<MediaRequest>,
    pool: PgPool,
}

impl MediaRequests {
    /// A service writing to `pool` with the given auto-approval policy.
    pub fn new(pool: PgPool, services: MediaRequestServices) -> Self {
        Self {
            executor: CommandExecutor::new(pool.clone(), services),
            pool,
        }
    }

    /// The current state and version of request `id`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(
        &self,
        id: Uuid,
    ) -> Result<(MediaRequest, i64), ExecuteError<MediaRequestError>> {
        self.executor.load(&id.to_string()).await
    }

    /// Executes `command` on request `id` (`Submit` creates it).
    ///
    /// # Errors
    /// [`MediaRequestCommandError::Duplicate`] when a `Submit` or `Retry` meets another active
    /// request for the same media; otherwise the executor's errors.
    pub async fn execute(
        &self,
        id: Uuid,
        command: MediaRequestCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<MediaRequest>, MediaRequestCommandError> {
        let reserve = match &command {
            MediaRequestCommand::Submit { media, is_4k, .. } => Some(MediaKey::new(media, *is_4k)),
            MediaRequestCommand::Retry { .. } => {
                let (current, _) = self.load(id).await?;
                MediaKey::of(&current)
            }
            _ => None,
        };
        if let Some(key) = reserve {
            self.reserve(key, id).await?;
        }
        let result = self
            .executor
            .execute(&id.to_string(), command, expected_version, metadata)
            .await;
        match &result {
            Ok(committed) => {
                let ended = committed
                    .aggregate
                    .status()
                    .is_some_and(|status| !status.is_active());
                if let (true, Some(key)) = (ended, MediaKey::of(&committed.aggregate)) {
                    self.release(key, id).await?;
                }
            }
            Err(_) => {
                if let Some(key) = reserve {
                    // Undo this attempt's reservation unless the request really holds it.
                    let (current, _) = self.load(id).await?;
                    if !current.status().is_some_and(|status| status.is_active()) {
                        self.release(key, id).await?;
                    }
                }
            }
        }
        Ok(result?)
    }

    /// Reserves `key` for `id`, taking over reservations left behind by crashes.
    async fn reserve(&self, key: MediaKey, id: Uuid) -> Result<(), MediaRequestCommandError> {
        for _ in 0..3 {
            let holder: Option<(Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                "WITH inserted AS (
                    INSERT INTO media_request_reservations (media_type, tmdb_id, is_4k, request_id)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT DO NOTHING
                    RETURNING request_id, reserved_at)
                 SELECT request_id, reserved_at FROM inserted
                 UNION ALL
                 SELECT request_id, reserved_at FROM media_request_reservations
                  WHERE media_type = $1 AND tmdb_id = $2 AND is_4k = $3
                    AND NOT EXISTS (SELECT 1 FROM inserted)",
            )
            .bind(key.media_type.as_str())
            .bind(key.tmdb_id)
            .bind(key.is_4k)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            let Some((holder, reserved_at)) = holder else {
                continue; // released between the two statements: try again
            };
            if holder == id {
                return Ok(());
            }
            let (existing, version) = self.load(holder).await?;
            let abandoned = match existing.status() {
                None => {
                    version == 0
                        && chrono::Utc::now() - reserved_at
                            > chrono::Duration::from_std(UNWRITTEN_GRACE)
                                .unwrap_or(chrono::Duration::MAX)
                }
                Some(status) => !status.is_active(),
            };
            if !abandoned {
                return Err(MediaRequestCommandError::Duplicate { existing: holder });
            }
            sqlx::query(
                "UPDATE media_request_reservations SET request_id = $5, reserved_at = now()
                  WHERE media_type = $1 AND tmdb_id = $2 AND is_4k = $3 AND request_id = $4",
            )
            .bind(key.media_type.as_str())
            .bind(key.tmdb_id)
            .bind(key.is_4k)
            .bind(holder)
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Err(ExecuteError::Conflict.into())
    }

    async fn release(&self, key: MediaKey, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM media_request_reservations
              WHERE media_type = $1 AND tmdb_id = $2 AND is_4k = $3 AND request_id = $4",
        )
        .bind(key.media_type.as_str())
        .bind(key.tmdb_id)
        .bind(key.is_4k)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl MediaRequests {
    /// The requests holding a reservation for `(media_type, tmdb_id)`, HD and 4K: the
    /// active requests for that media, read from the authoritative reservation table (not a
    /// read model), so a webhook arriving right after a submission still finds its request.
    ///
    /// # Errors
    /// The database error.
    pub async fn active_for_media(
        &self,
        media_type: MediaType,
        tmdb_id: i64,
    ) -> Result<Vec<(Uuid, bool)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT request_id, is_4k FROM media_request_reservations
              WHERE media_type = $1 AND tmdb_id = $2 ORDER BY is_4k",
        )
        .bind(media_type.as_str())
        .bind(tmdb_id)
        .fetch_all(&self.pool)
        .await
    }
}
