//! The `requests` read model: one row per media request, for lists, filters and details.
//!
//! Rows carry the aggregate `version`; an event only updates a row whose version is below
//! the event's sequence, a second guard (beside the checkpoint) against applying an event
//! twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaRequestEvent, MediaType, RequestStatus};
use medianest_domain::public::media_request_event;
use medianest_nats::FeedEvent;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, QueryBuilder};
use uuid::Uuid;

use crate::runner::{finish_row_update, public_event, row_update};
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
        let (id, decoded) = public_event(event, media_request_event)?;
        let (sequence, position, time) =
            (event.event.sequence, event.cursor.position, event.time());
        if let MediaRequestEvent::Submitted {
            requested_by,
            media,
            seasons,
            is_4k,
            note,
        } = decoded
        {
            sqlx::query(
                "INSERT INTO requests (id, version, status, media_type, tmdb_id, tvdb_id, title,
                    year, seasons, is_4k, note, requested_by, created_at, updated_at, last_position)
                 VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(sequence)
            .bind(media.media_type.as_str())
            .bind(i64::from(media.tmdb_id.get()))
            .bind(media.tvdb_id.map(i64::from))
            .bind(&media.title)
            .bind(media.year.map(i32::from))
            .bind(seasons.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)))
            .bind(is_4k)
            .bind(note)
            .bind(requested_by.as_str())
            .bind(time)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        let mut update = row_update("requests", sequence, time, position);
        let status = |update: &mut QueryBuilder<'_, sqlx::Postgres>, status: RequestStatus| {
            update.push(", status = ").push_bind(status.as_str());
        };
        match decoded {
            MediaRequestEvent::Submitted { .. } => {}
            MediaRequestEvent::Approved { by, .. } => {
                status(&mut update, RequestStatus::Approved);
                update.push(", approved_by = ").push_bind(by.to_string());
            }
            MediaRequestEvent::Declined { reason, .. } => {
                status(&mut update, RequestStatus::Declined);
                update.push(", status_reason = ").push_bind(reason);
            }
            MediaRequestEvent::Cancelled { reason, .. } => {
                status(&mut update, RequestStatus::Cancelled);
                update.push(", status_reason = ").push_bind(reason);
            }
            MediaRequestEvent::Forwarded {
                overseerr_request_id,
            } => {
                update
                    .push(", overseerr_request_id = ")
                    .push_bind(i64::try_from(overseerr_request_id).unwrap_or(i64::MAX))
                    .push(
                        ", status = CASE WHEN status = 'approved' THEN 'forwarded' ELSE status END",
                    );
            }
            MediaRequestEvent::ForwardFailed { error, .. } => {
                status(&mut update, RequestStatus::Failed);
                update.push(", status_reason = ").push_bind(error);
            }
            MediaRequestEvent::Processing => status(&mut update, RequestStatus::Processing),
            MediaRequestEvent::PartiallyAvailable { seasons } => {
                status(&mut update, RequestStatus::PartiallyAvailable);
                update
                    .push(", available_seasons = ")
                    .push_bind(serde_json::to_value(seasons).unwrap_or(Value::Null));
            }
            MediaRequestEvent::Available { .. } => status(&mut update, RequestStatus::Available),
            MediaRequestEvent::Failed { reason, .. } => {
                status(&mut update, RequestStatus::Failed);
                update.push(", status_reason = ").push_bind(reason);
            }
            MediaRequestEvent::Retried { .. } => {
                status(&mut update, RequestStatus::Approved);
                update.push(", overseerr_request_id = NULL, status_reason = NULL");
            }
        }
        finish_row_update(update, id, sequence, tx).await?;
        Ok(())
    }
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
