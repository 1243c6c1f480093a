//! The `requests` read model: one row per media request, for lists, filters and details.
//!
//! Rows carry the aggregate `version`; an event only updates a row whose version is below
//! the event's sequence, a second guard (beside the checkpoint) against applying an event
//! twice. A batch is folded in memory per row and written in one set-based upsert (the
//! live runner's batches and a replay's alike), so a batch of 500 events costs two
//! statements.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaRequestEvent, MediaType, RequestStatus};
use medianest_domain::public::media_request_event;
use medianest_nats::FeedEvent;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, QueryBuilder};
use uuid::Uuid;

use crate::runner::{decode_batch, public_event, BatchRows};
use crate::{Projection, ProjectionError};

/// The `requests` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestsProjection;

/// The projection's name.
pub const NAME: &str = "requests";

#[async_trait]
impl Projection for RequestsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["requests"]
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        public_event(event, media_request_event)?;
        self.apply_batch(tx, &[event]).await.map(|_| ())
    }

    /// Folds the batch in memory, row by row (the rows it touches read in one query), and
    /// writes the changed rows in one set-based upsert: two statements per batch.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&FeedEvent],
    ) -> Result<usize, ProjectionError> {
        let (decoded, skipped) = decode_batch(NAME, events, |e| {
            public_event(e, media_request_event).map(Some)
        })?;
        let decoded: Vec<(Uuid, &FeedEvent, MediaRequestEvent)> =
            decoded.into_iter().map(|(e, (id, d))| (id, e, d)).collect();
        let ids: Vec<Uuid> = decoded.iter().map(|(id, ..)| *id).collect();
        let mut rows: BatchRows<RequestRow> = BatchRows::read(
            tx,
            "SELECT * FROM requests WHERE id = ANY($1)",
            &ids,
            |row: &RequestRow| row.id,
        )
        .await?;
        for (id, event, e) in decoded {
            rows.fold(id, |rows| fold(rows, id, event, e));
        }
        let changed = rows.changed();
        if !changed.is_empty() {
            upsert(tx, &changed).await?;
        }
        Ok(skipped)
    }
}

/// Applies one event to the rows: a `submitted` creates its row (once); any other event
/// updates its row when the row is below the event's sequence (the second guard, beside
/// the checkpoint, against applying an event twice). Answers whether the row changed.
fn fold(
    rows: &mut HashMap<Uuid, RequestRow>,
    id: Uuid,
    event: &FeedEvent,
    decoded: MediaRequestEvent,
) -> bool {
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let MediaRequestEvent::Submitted {
        requested_by,
        media,
        seasons,
        is_4k,
        note,
    } = decoded
    {
        if rows.contains_key(&id) {
            return false;
        }
        rows.insert(
            id,
            RequestRow {
                id,
                version: sequence,
                status: RequestStatus::Pending.as_str().to_string(),
                media_type: media.media_type.as_str().to_string(),
                tmdb_id: i64::from(media.tmdb_id.get()),
                tvdb_id: media.tvdb_id.map(i64::from),
                title: media.title,
                year: media.year.map(i32::from),
                seasons: seasons.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
                is_4k,
                note,
                requested_by: requested_by.to_string(),
                approved_by: None,
                overseerr_request_id: None,
                available_seasons: None,
                status_reason: None,
                created_at: time,
                updated_at: time,
                last_position: position,
            },
        );
        return true;
    }
    let Some(row) = rows.get_mut(&id).filter(|row| row.version < sequence) else {
        return false;
    };
    let status = |row: &mut RequestRow, status: RequestStatus| {
        row.status = status.as_str().to_string();
    };
    match decoded {
        MediaRequestEvent::Submitted { .. } => {}
        MediaRequestEvent::Approved { by, .. } => {
            status(row, RequestStatus::Approved);
            row.approved_by = Some(by.to_string());
        }
        MediaRequestEvent::Declined { reason, .. } => {
            status(row, RequestStatus::Declined);
            row.status_reason = reason;
        }
        MediaRequestEvent::Cancelled { reason, .. } => {
            status(row, RequestStatus::Cancelled);
            row.status_reason = reason;
        }
        MediaRequestEvent::Forwarded {
            overseerr_request_id,
        } => {
            row.overseerr_request_id =
                Some(i64::try_from(overseerr_request_id).unwrap_or(i64::MAX));
            // A late `forwarded` never moves a request back.
            if row.status == RequestStatus::Approved.as_str() {
                status(row, RequestStatus::Forwarded);
            }
        }
        MediaRequestEvent::ForwardFailed { error, .. } => {
            status(row, RequestStatus::Failed);
            row.status_reason = Some(error);
        }
        MediaRequestEvent::Processing => status(row, RequestStatus::Processing),
        MediaRequestEvent::PartiallyAvailable { seasons } => {
            status(row, RequestStatus::PartiallyAvailable);
            row.available_seasons = Some(serde_json::to_value(seasons).unwrap_or(Value::Null));
        }
        MediaRequestEvent::Available { .. } => status(row, RequestStatus::Available),
        MediaRequestEvent::Failed { reason, .. } => {
            status(row, RequestStatus::Failed);
            row.status_reason = Some(reason);
        }
        MediaRequestEvent::Retried { .. } => {
            status(row, RequestStatus::Approved);
            row.overseerr_request_id = None;
            row.status_reason = None;
        }
    }
    row.version = sequence;
    row.updated_at = time;
    row.last_position = position;
    true
}

/// Writes `rows` (whole) in one statement.
async fn upsert(tx: &mut PgConnection, rows: &[&RequestRow]) -> Result<(), sqlx::Error> {
    macro_rules! column {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO requests (id, version, status, media_type, tmdb_id, tvdb_id, title, year,
             seasons, is_4k, note, requested_by, approved_by, overseerr_request_id,
             available_seasons, status_reason, created_at, updated_at, last_position)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::int8[],
             $6::int8[], $7::text[], $8::int4[], $9::jsonb[], $10::bool[], $11::text[],
             $12::text[], $13::text[], $14::int8[], $15::jsonb[], $16::text[],
             $17::timestamptz[], $18::timestamptz[], $19::int8[])
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
             approved_by = EXCLUDED.approved_by,
             overseerr_request_id = EXCLUDED.overseerr_request_id,
             available_seasons = EXCLUDED.available_seasons,
             status_reason = EXCLUDED.status_reason, updated_at = EXCLUDED.updated_at,
             last_position = EXCLUDED.last_position",
    )
    .bind(column!(id))
    .bind(column!(version))
    .bind(column!(status))
    .bind(column!(media_type))
    .bind(column!(tmdb_id))
    .bind(column!(tvdb_id))
    .bind(column!(title))
    .bind(column!(year))
    .bind(column!(seasons))
    .bind(column!(is_4k))
    .bind(column!(note))
    .bind(column!(requested_by))
    .bind(column!(approved_by))
    .bind(column!(overseerr_request_id))
    .bind(column!(available_seasons))
    .bind(column!(status_reason))
    .bind(column!(created_at))
    .bind(column!(updated_at))
    .bind(column!(last_position))
    .execute(tx)
    .await?;
    Ok(())
}

/// One row of the read model, as the query API shows it.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct RequestRow {
    /// Request id.
    pub id: Uuid,
    /// Aggregate version the row reflects.
    pub version: i64,
    /// Wire status (`pending`, …).
    pub status: String,
    /// `movie` or `tv`.
    pub media_type: String,
    /// TMDB id.
    pub tmdb_id: i64,
    /// TheTVDB id.
    pub tvdb_id: Option<i64>,
    /// Title.
    pub title: String,
    /// Year.
    pub year: Option<i32>,
    /// `[1,2]`, `"all"` or null.
    pub seasons: Option<Value>,
    /// 4K?
    pub is_4k: bool,
    /// Requester's note.
    pub note: Option<String>,
    /// Requester's user id.
    pub requested_by: String,
    /// Who approved (the requester when auto-approved).
    pub approved_by: Option<String>,
    /// Overseerr's request id, once forwarded.
    pub overseerr_request_id: Option<i64>,
    /// Seasons available so far (tv).
    pub available_seasons: Option<Value>,
    /// Decline, cancel or failure reason.
    pub status_reason: Option<String>,
    /// When submitted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of the last event applied.
    pub last_position: i64,
}

/// Filters of the request list; all optional.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this media type.
    pub media_type: Option<MediaType>,
    /// Only this requester.
    pub requested_by: Option<String>,
    /// Only requests older than this id (the cursor: ids are UUIDv7, so time-ordered).
    pub before: Option<Uuid>,
}

/// Newest first, at most `limit` rows.
///
/// # Errors
/// The database error.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    filter: &RequestFilter,
    limit: i64,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    let mut query = QueryBuilder::new("SELECT * FROM requests WHERE true");
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(media_type) = filter.media_type {
        query
            .push(" AND media_type = ")
            .push_bind(media_type.as_str());
    }
    if let Some(requested_by) = &filter.requested_by {
        query
            .push(" AND requested_by = ")
            .push_bind(requested_by.clone());
    }
    if let Some(before) = filter.before {
        query.push(" AND id < ").push_bind(before);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    query.build_query_as().fetch_all(db).await
}

/// One request, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The request forwarded to Overseerr as `overseerr_request_id`, if any.
///
/// # Errors
/// The database error.
pub async fn find_by_overseerr_id<'e>(
    db: impl PgExecutor<'e>,
    overseerr_request_id: i64,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM requests WHERE overseerr_request_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(overseerr_request_id)
    .fetch_optional(db)
    .await
}

/// Requests with the given statuses, oldest update first (the reconciler's work list).
///
/// # Errors
/// The database error.
pub async fn with_statuses<'e>(
    db: impl PgExecutor<'e>,
    statuses: &[RequestStatus],
    limit: i64,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    sqlx::query_as("SELECT * FROM requests WHERE status = ANY($1) ORDER BY updated_at LIMIT $2")
        .bind(statuses)
        .bind(limit)
        .fetch_all(db)
        .await
}
