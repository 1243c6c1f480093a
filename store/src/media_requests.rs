//! The command service of media requests: the aggregate's executor plus the one rule that
//! spans aggregates, "one active request per `(media_type, tmdb_id, is_4k)`".
//!
//! Every command runs in one transaction on one connection: the rules' rows (reservation,
//! quota ledger) and the request's events commit together or not at all, with one commit
//! (one WAL flush) per command (docs/decisions.md, "One transaction per command").
//!
//! The rule is kept with the `media_request_reservations` table: a submission (or a retry)
//! reserves its media for its request id in the transaction that writes its events; a
//! request that reaches a terminal status releases its reservation in the same way. A
//! concurrent submission of the same media waits for the first one's transaction at the
//! reservation's unique key, then finds it taken. A reservation whose request is terminal or
//! was never written (left by versions that committed the reservation first) is taken over
//! by the next submission, so the table heals itself.
//!
//! A submission of what Plex already has is refused, and nothing it reserved or recorded
//! stays (its transaction is rolled back): the movie in the same 4K-ness, or every named
//! season of a show ([`MediaRequestCommandError::AlreadyAvailable`]);
//! a TV submission naming some seasons Plex has is refused with those seasons
//! ([`MediaRequestCommandError::SeasonsAvailable`]). The rule reads the Plex library read
//! model ([`crate::plex_library`]).
//!
//! Request quotas (docs/design.md §3) are kept with the `request_quota_ledger`: every submission
//! records a row, under a per-user advisory lock held until the transaction ends, after the
//! user's counted rows in the window were checked against the quota
//! ([`medianest_domain::quota::check`]); declined and cancelled requests stop counting.
//! Admins are exempt.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use medianest_domain::media_request::{
    coverage, Coverage, Media, MediaRequest, MediaRequestCommand, MediaRequestError,
    MediaRequestServices, MediaType, RequestStatus, Seasons,
};
use medianest_domain::quota::{self, QuotaExceeded};
use medianest_domain::user_account::{Quota, Quotas, UserAccount};
use medianest_domain::{Actor, RequestId};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::executor::{Appending, CommandExecutor, Committed, ExecuteError, MAX_ATTEMPTS};
use crate::plex_library;
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
        existing: RequestId,
    },
    /// The requester's quota for this media type is used up (403, with the numbers).
    #[error("{media_type} {exceeded}")]
    QuotaExceeded {
        /// The media type whose quota applies.
        media_type: MediaType,
        /// The quota, the count and the next free slot.
        exceeded: QuotaExceeded,
    },
    /// Plex already has what a `Submit` asks for: the movie (in the same 4K-ness), or every
    /// season a TV submission names (409, naming the Plex item).
    #[error("Plex already has this media: {title} (ratingKey {rating_key})")]
    AlreadyAvailable {
        /// The Plex item's `ratingKey`.
        rating_key: String,
        /// The Plex item's title.
        title: String,
    },
    /// A TV `Submit` names seasons Plex already has, or asks for `"all"` of a show Plex has
    /// seasons of (422, listing them, so the client asks only for the missing ones).
    #[error("Plex already has seasons {seasons:?} of this show")]
    SeasonsAvailable {
        /// The seasons Plex has of those requested, sorted.
        seasons: Vec<u32>,
        /// The Plex item's `ratingKey`.
        rating_key: String,
    },
    /// The aggregate or the store refused it.
    #[error(transparent)]
    Execute(#[from] ExecuteError<MediaRequestError>),
}

impl MediaRequestCommandError {
    /// Whether the same command may succeed later unchanged (see
    /// [`ExecuteError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Execute(error) if error.is_transient())
    }
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
    default_quotas: Quotas,
    pool: PgPool,
}

impl MediaRequests {
    /// A service writing to `pool` with the given auto-approval policy.
    pub fn new(pool: PgPool, services: MediaRequestServices) -> Self {
        Self {
            executor: CommandExecutor::new(pool.clone(), services),
            default_quotas: Quotas::default(),
            pool,
        }
    }

    /// Applies `defaults` to accounts without a quota of their own (none: unlimited).
    pub fn with_default_quotas(mut self, defaults: Quotas) -> Self {
        self.default_quotas = defaults;
        self
    }

    /// The current state and version of request `id`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(
        &self,
        id: RequestId,
    ) -> Result<(MediaRequest, i64), ExecuteError<MediaRequestError>> {
        self.executor.load(&id.to_string()).await
    }

    /// Executes `command` on request `id` (`Submit` creates it).
    ///
    /// # Errors
    /// [`MediaRequestCommandError::Duplicate`] when a `Submit` or `Retry` meets another active
    /// request for the same media; [`MediaRequestCommandError::QuotaExceeded`] when a
    /// non-admin's `Submit` exceeds their quota; otherwise the executor's errors.
    pub async fn execute(
        &self,
        id: RequestId,
        command: MediaRequestCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<MediaRequest>, MediaRequestCommandError> {
        // One connection and one transaction for every statement of the command
        // (docs/decisions.md, "One transaction per command").
        let conn = &mut *self.pool.acquire().await?;
        // The quota a submission counts against, read once for every attempt.
        let limit = match &command {
            MediaRequestCommand::Submit {
                requested_by,
                media,
                ..
            } => {
                self.quota_limit(conn, requested_by, media.media_type)
                    .await?
            }
            _ => None,
        };
        if limit.is_none() && expected_version.is_none_or(|v| v == 0) {
            if let Some(committed) = self.submit_at_once(conn, id, &command, metadata).await? {
                return Ok(committed);
            }
        }
        for attempt in 1..=MAX_ATTEMPTS {
            // A submission creates its request under a new id: its first attempt is decided
            // without reading the log (an id in use fails the append, and the next attempt
            // reads).
            let fresh = attempt == 1
                && (expected_version == Some(0)
                    || matches!(command, MediaRequestCommand::Submit { .. }));
            let round = Round { fresh, limit };
            let mut tx = conn.begin().await?;
            match self
                .attempt(
                    &mut tx,
                    id,
                    command.clone(),
                    expected_version,
                    metadata,
                    round,
                )
                .await
            {
                Ok(Some(committed)) => {
                    tx.commit().await?;
                    return Ok(committed);
                }
                Ok(None) => {
                    tx.rollback().await?;
                    tracing::debug!(attempt, "lost a concurrency race; deciding again");
                }
                Err(error) => {
                    tx.rollback().await?;
                    return Err(error);
                }
            }
        }
        Err(ExecuteError::Conflict.into())
    }

    /// A submission in one statement, when nothing stands in its way: decided on the new
    /// request without reading the log, then [`SUBMIT_AT_ONCE`] takes the reservation when
    /// Plex has nothing of the media and the key is free, writes the ledger row and appends
    /// the events, each only if the reservation was taken. For requesters no quota applies
    /// to (the caller checks). `None` when the statement wrote nothing (Plex has something
    /// of the media, the key is held, the id is in use) or `command` is not a submission:
    /// the caller then runs the command in a transaction, which judges and answers those
    /// cases. A submit is then one round trip and one commit (docs/decisions.md, "One
    /// transaction per command").
    async fn submit_at_once(
        &self,
        conn: &mut PgConnection,
        id: RequestId,
        command: &MediaRequestCommand,
        metadata: &EventMetadata,
    ) -> Result<Option<Committed<MediaRequest>>, MediaRequestCommandError> {
        let MediaRequestCommand::Submit {
            requested_by,
            media,
            is_4k,
            ..
        } = command
        else {
            return Ok(None);
        };
        let Some((aggregate, events)) = self.executor.decide_fresh(command.clone()).await else {
            return Ok(None);
        };
        let key = MediaKey::new(media, *is_4k);
        let appending = Appending::new::<MediaRequest>(&id.to_string(), 0, &events, metadata)?;
        let query = sqlx::query_scalar::<_, Option<i64>>(&SUBMIT_AT_ONCE)
            .bind(key.media_type.as_str())
            .bind(key.tmdb_id)
            .bind(key.is_4k)
            .bind(id.as_uuid())
            .bind(requested_by.id.to_string());
        let position = appending.run(conn, query).await?;
        Ok(position.map(|position| Committed {
            version: i64::try_from(events.len()).unwrap_or(i64::MAX),
            position,
            events,
            aggregate,
        }))
    }

    /// One attempt at `command` in the transaction on `conn`: the rules that span aggregates
    /// (not what Plex has, one active request per media, the quota), the aggregate's decision
    /// and append, and the upkeep of an ended request. `None` when another writer took the
    /// request's next sequence first; an error or `None` leaves the transaction to be rolled
    /// back, undoing the reservation and the ledger row with it.
    async fn attempt(
        &self,
        conn: &mut PgConnection,
        id: RequestId,
        command: MediaRequestCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
        Round { fresh, limit }: Round,
    ) -> Result<Option<Committed<MediaRequest>>, MediaRequestCommandError> {
        match &command {
            MediaRequestCommand::Submit {
                requested_by,
                media,
                seasons,
                is_4k,
                ..
            } => {
                let key = MediaKey::new(media, *is_4k);
                // Without a quota to check, the ledger row is written by the same statement.
                let user = requested_by.id.to_string();
                let ledger = limit.is_none().then_some(user.as_str());
                let claim = claim(conn, key, id, ledger).await?;
                refuse_what_plex_has(&claim.in_plex, media, seasons.as_ref(), *is_4k)?;
                self.reserve(conn, key, id, Some(claim.holder)).await?;
                if let Some(limit) = limit {
                    count_against_quota(conn, &user, media.media_type, limit, id).await?;
                }
            }
            MediaRequestCommand::Retry { .. } => {
                let (current, _) = self.load_on(conn, id).await?;
                if let Some(key) = MediaKey::of(&current) {
                    self.reserve(conn, key, id, None).await?;
                }
            }
            _ => {}
        }
        let Some(committed) = self
            .executor
            .attempt_on(
                conn,
                &id.to_string(),
                command,
                expected_version,
                metadata,
                fresh,
            )
            .await?
        else {
            return Ok(None);
        };
        let status = committed.aggregate.status();
        let ended = status.is_some_and(|status| !status.is_active());
        if let (true, Some(key)) = (ended, MediaKey::of(&committed.aggregate)) {
            release(conn, key, id).await?;
        }
        if matches!(
            status,
            Some(RequestStatus::Declined | RequestStatus::Cancelled)
        ) {
            sqlx::query("UPDATE request_quota_ledger SET released = true WHERE request_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *conn)
                .await?;
        }
        Ok(Some(committed))
    }

    async fn load_on(
        &self,
        conn: &mut PgConnection,
        id: RequestId,
    ) -> Result<(MediaRequest, i64), ExecuteError<MediaRequestError>> {
        CommandExecutor::<MediaRequest>::load_on(conn, &id.to_string()).await
    }

    /// The quota that applies to `actor`'s submissions of `media_type`: `None` for admins
    /// and for users without a limit (their own, else the default).
    async fn quota_limit(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        media_type: MediaType,
    ) -> Result<Option<Quota>, MediaRequestCommandError> {
        if actor.is_admin() {
            return Ok(None);
        }
        let own = match actor.id.user_id() {
            Some(user_id) => CommandExecutor::<UserAccount>::load_on(conn, &user_id.to_string())
                .await
                .map(|(a, _)| a.quotas()),
            None => Ok(Quotas::default()),
        }
        .map_err(|e| ExecuteError::<MediaRequestError>::Store(Box::new(e)))?;
        Ok(own.of(media_type).or(self.default_quotas.of(media_type)))
    }

    /// Reserves `key` for `id`, taking over reservations left behind by crashes.
    ///
    /// `claimed` is the holder a [`claim`] already answered for the first try.
    async fn reserve(
        &self,
        conn: &mut PgConnection,
        key: MediaKey,
        id: RequestId,
        mut claimed: Option<Option<Holder>>,
    ) -> Result<(), MediaRequestCommandError> {
        for _ in 0..3 {
            let holder = match claimed.take() {
                Some(holder) => holder,
                None => {
                    sqlx::query_as(&format!(
                        "WITH {RESERVE_CTES} SELECT request_id, reserved_at FROM holder"
                    ))
                    .bind(key.media_type.as_str())
                    .bind(key.tmdb_id)
                    .bind(key.is_4k)
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await?
                }
            };
            let Some((holder, reserved_at)) = holder else {
                continue; // released between the two statements: try again
            };
            let holder = RequestId::from(holder);
            if holder == id {
                return Ok(());
            }
            let (existing, version) = self.load_on(conn, holder).await?;
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
            .bind(holder.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
        Err(ExecuteError::Conflict.into())
    }
}

/// A reservation's holder: the request id and when it reserved.
type Holder = (Uuid, DateTime<Utc>);

/// The reservation of `$1` media type, `$2` TMDB id, `$3` 4K-ness for `$4` request id: CTE
/// `inserted` takes it when it is free, CTE `holder` answers who holds it (the request
/// itself, or the one that did). A key reserved by a transaction in flight waits for it.
const RESERVE_CTES: &str = "
    inserted AS (
        INSERT INTO media_request_reservations (media_type, tmdb_id, is_4k, request_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT DO NOTHING
        RETURNING request_id, reserved_at),
    holder AS (
        SELECT request_id, reserved_at FROM inserted
        UNION ALL
        SELECT request_id, reserved_at FROM media_request_reservations
         WHERE media_type = $1 AND tmdb_id = $2 AND is_4k = $3
           AND NOT EXISTS (SELECT 1 FROM inserted))";

/// What [`MediaRequests::execute`] hands each attempt besides the command.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Decide on the new request without reading the log (a creation's first attempt).
    fresh: bool,
    /// The quota a submission counts against (`None`: none applies, or not a submission).
    limit: Option<Quota>,
}

/// The statement of [`MediaRequests::submit_at_once`]: `$1` media type, `$2` TMDB id, `$3`
/// 4K-ness, `$4` request id, `$5` requester (the ledger's user id), then the events
/// ([`Appending::cte`] from `$6`). Every write depends on the reservation being taken here,
/// so the statement writes all or nothing; it answers the last event's global position, or
/// `NULL` when it wrote nothing.
static SUBMIT_AT_ONCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH keys AS (SELECT $1::text AS media_type, $2::bigint AS tmdb_id),
              presence AS ({}),
              inserted AS (
                  INSERT INTO media_request_reservations (media_type, tmdb_id, is_4k, request_id)
                  SELECT $1::text, $2::bigint, $3::boolean, $4::uuid
                   WHERE NOT EXISTS (SELECT FROM presence)
                  ON CONFLICT DO NOTHING
                  RETURNING request_id),
              ledger AS ({}),
              {}
         SELECT max(global_position) FROM appended",
        plex_library::PRESENCE_SQL,
        ledger_insert("SELECT request_id, $5::text, $1::text FROM inserted"),
        Appending::cte(6, "EXISTS (SELECT FROM inserted)")
    )
});

/// What a submission reads and takes in its first statement.
struct Claim {
    /// What Plex has of the media.
    in_plex: plex_library::InPlex,
    /// Who holds the media's reservation (`None`: released between the statement's reads).
    holder: Option<Holder>,
}

/// A submission's reads and writes before its events, in one round trip: what Plex has of
/// the media ([`plex_library::PRESENCE_SQL`]), the media's reservation for `id`
/// ([`RESERVE_CTES`]) and, for a requester no quota applies to (`ledger`: their user id),
/// the quota ledger's row. Writing before the checks is safe: a refused submission's
/// transaction is rolled back.
async fn claim(
    conn: &mut PgConnection,
    key: MediaKey,
    id: RequestId,
    ledger: Option<&str>,
) -> Result<Claim, sqlx::Error> {
    type ClaimRow = (
        Option<Uuid>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<bool>,
        Option<bool>,
        Option<Vec<i32>>,
    );
    let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
        "WITH keys AS (SELECT $1::text AS media_type, $2::bigint AS tmdb_id),
              presence AS ({}),
              {RESERVE_CTES},
              ledger AS ({})
         SELECT h.request_id, h.reserved_at, p.media_type, p.tmdb_id, p.rating_key, p.title,
                p.has_hd, p.has_4k, p.seasons
           FROM (SELECT) AS one
           LEFT JOIN holder AS h ON true
           LEFT JOIN presence AS p ON true",
        plex_library::PRESENCE_SQL,
        ledger_insert("SELECT $4::uuid, $5::text, $1::text WHERE $5::text IS NOT NULL")
    ))
    .bind(key.media_type.as_str())
    .bind(key.tmdb_id)
    .bind(key.is_4k)
    .bind(id.as_uuid())
    .bind(ledger)
    .fetch_all(&mut *conn)
    .await?;
    let holder = rows.first().and_then(|row| row.0.zip(row.1));
    let presence = rows
        .into_iter()
        .filter_map(|row| Some((row.2?, row.3?, row.4?, row.5?, row.6?, row.7?, row.8?)));
    Ok(Claim {
        in_plex: plex_library::in_plex(presence.collect())
            .remove(&(key.media_type, key.tmdb_id))
            .unwrap_or_default(),
        holder,
    })
}

/// The submit rule "not what Plex already has" (issue 11), judged on what the Plex library
/// read model has of the media: a refused submission writes nothing.
fn refuse_what_plex_has(
    in_plex: &plex_library::InPlex,
    media: &Media,
    seasons: Option<&Seasons>,
    is_4k: bool,
) -> Result<(), MediaRequestCommandError> {
    let Some(presence) = in_plex.for_4k(is_4k) else {
        return Ok(());
    };
    match coverage(media.media_type, seasons, Some(&presence.seasons)) {
        Coverage::None => Ok(()),
        Coverage::Full => Err(MediaRequestCommandError::AlreadyAvailable {
            rating_key: presence.rating_key.clone(),
            title: presence.title.clone(),
        }),
        Coverage::Partial(seasons) => Err(MediaRequestCommandError::SeasonsAvailable {
            seasons,
            rating_key: presence.rating_key.clone(),
        }),
    }
}

/// Checks `user`'s submissions of `media_type` against `limit` and records submission `id`
/// in the ledger, under a per-user lock so concurrent submissions cannot both take the
/// last slot.
async fn count_against_quota(
    conn: &mut PgConnection,
    user: &str,
    media_type: MediaType,
    limit: Quota,
    id: RequestId,
) -> Result<(), MediaRequestCommandError> {
    // The lock is the transaction's: it is held until the request's events commit.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    let now = Utc::now();
    let counted = counted_submissions(
        &mut *conn,
        user,
        media_type,
        quota::window_start(limit, now),
    )
    .await?;
    quota::check(limit, &counted, now).map_err(|exceeded| {
        MediaRequestCommandError::QuotaExceeded {
            media_type,
            exceeded,
        }
    })?;
    sqlx::query(&ledger_insert("VALUES ($1, $2, $3)"))
        .bind(id.as_uuid())
        .bind(user)
        .bind(media_type.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The statement that records a submission in the quota ledger, its row from `source` (a
/// `VALUES` or `SELECT` of request id, user id and media type); a row already there stays.
fn ledger_insert(source: &str) -> String {
    format!(
        "INSERT INTO request_quota_ledger (request_id, user_id, media_type) {source}
         ON CONFLICT (request_id) DO NOTHING"
    )
}

/// Releases `key` if `id` holds it.
async fn release(conn: &mut PgConnection, key: MediaKey, id: RequestId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM media_request_reservations
          WHERE media_type = $1 AND tmdb_id = $2 AND is_4k = $3 AND request_id = $4",
    )
    .bind(key.media_type.as_str())
    .bind(key.tmdb_id)
    .bind(key.is_4k)
    .bind(id.as_uuid())
    .execute(&mut *conn)
    .await?;
    Ok(())
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

impl MediaRequests {
    /// The requests holding a reservation for any of `keys` (media type, TMDB id), HD and
    /// 4K, as `(request id, media type, TMDB id, is_4k)`: one query for a page of the Plex
    /// sync.
    ///
    /// # Errors
    /// The database error.
    pub async fn active_for_many(
        &self,
        keys: &[(MediaType, i64)],
    ) -> Result<Vec<(Uuid, MediaType, i64, bool)>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (types, ids) = plex_library::key_columns(keys);
        let rows: Vec<(Uuid, String, i64, bool)> = sqlx::query_as(
            "SELECT r.request_id, r.media_type, r.tmdb_id, r.is_4k
               FROM media_request_reservations r
               JOIN unnest($1::text[], $2::bigint[]) AS k(media_type, tmdb_id)
                 ON r.media_type = k.media_type AND r.tmdb_id = k.tmdb_id
              ORDER BY r.tmdb_id, r.is_4k",
        )
        .bind(types)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, media_type, tmdb_id, is_4k)| {
                Some((id, media_type.parse().ok()?, tmdb_id, is_4k))
            })
            .collect())
    }

    /// What Plex has of `(media_type, tmdb_id)` (the Plex library read model).
    ///
    /// # Errors
    /// The database error.
    pub async fn in_plex(
        &self,
        media_type: MediaType,
        tmdb_id: i64,
    ) -> Result<plex_library::InPlex, sqlx::Error> {
        plex_library::find(&self.pool, media_type, tmdb_id).await
    }
}

/// The times of `user`'s submissions of `media_type` after `since` that count against a quota:
/// not declined or cancelled, and either written or still within the grace of a submission
/// in flight.
async fn counted_submissions<'e>(
    db: impl sqlx::PgExecutor<'e>,
    user: &str,
    media_type: MediaType,
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT l.submitted_at FROM request_quota_ledger l
          WHERE l.user_id = $1 AND l.media_type = $2 AND NOT l.released
            AND l.submitted_at > $3
            AND (l.submitted_at > now() - make_interval(secs => $4)
                 OR EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'media_request'
                             AND e.aggregate_id = l.request_id::text))",
    )
    .bind(user)
    .bind(media_type.as_str())
    .bind(since)
    .bind(UNWRITTEN_GRACE.as_secs_f64())
    .fetch_all(db)
    .await
}

/// How much of `quota` `user` has used for `media_type` now, and when the next slot frees
/// when none is left.
///
/// # Errors
/// The database error.
pub async fn quota_usage(
    pool: &PgPool,
    user: &str,
    media_type: MediaType,
    quota: medianest_domain::user_account::Quota,
) -> Result<(u32, Option<DateTime<Utc>>), sqlx::Error> {
    let now = Utc::now();
    let counted =
        counted_submissions(pool, user, media_type, quota::window_start(quota, now)).await?;
    Ok(match quota::check(quota, &counted, now) {
        Ok(used) => (used, None),
        Err(exceeded) => (exceeded.used, Some(exceeded.next_slot_at)),
    })
}
