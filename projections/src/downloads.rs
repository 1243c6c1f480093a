//! The `downloads` read model: one row per download (issue 4; docs/design.md §5), for the
//! download list and detail. Fed from the public events on JetStream: every field of a
//! download event is public.
//!
//! The row keeps the items of the current attempt (`items`, a JSON array of
//! `{video_id, title, path, bytes, index, total}`), their count and bytes, the last error,
//! and the library scan's outcome. Progress is not here: it is not an event (core NATS
//! `medianest.progress.download.<id>`). Rows carry the aggregate version, as `requests`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::download::{DownloadEvent, DownloadKind, DownloadStatus};
use medianest_domain::public::download_event;
use medianest_nats::FeedEvent;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{FromRow, PgConnection, PgExecutor, QueryBuilder};
use uuid::Uuid;

use crate::runner::{finish_row_update, public_event, row_update};
use crate::{Projection, ProjectionError};

/// The `downloads` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownloadsProjection;

/// The projection's name.
pub const NAME: &str = "downloads";

#[async_trait]
impl Projection for DownloadsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["download"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["downloads"]
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        let (id, decoded) = public_event(event, download_event)?;
        let (sequence, position, time) =
            (event.event.sequence, event.cursor.position, event.time());
        if let DownloadEvent::Queued {
            requested_by,
            url,
            kind,
            quality,
            container,
        } = decoded
        {
            sqlx::query(
                "INSERT INTO downloads (id, version, status, requested_by, url, kind, quality,
                    container, created_at, updated_at, last_position)
                 VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $8, $9)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(sequence)
            .bind(requested_by.to_string())
            .bind(url)
            .bind(kind_name(kind))
            .bind(quality.as_str())
            .bind(container.as_str())
            .bind(time)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        let mut update = row_update("downloads", sequence, time, position);
        let status = |update: &mut QueryBuilder<'_, sqlx::Postgres>, status: DownloadStatus| {
            update.push(", status = ").push_bind(status.as_str());
        };
        match decoded {
            DownloadEvent::Queued { .. } => {}
            DownloadEvent::Started { attempt } => {
                status(&mut update, DownloadStatus::Running);
                update
                    .push(", attempt = ")
                    .push_bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                    .push(", started_at = ")
                    .push_bind(time)
                    .push(
                        ", items = '[]', item_count = 0, bytes = 0, total_items = NULL,
                         error = NULL, retryable = NULL, finished_at = NULL",
                    );
            }
            DownloadEvent::ItemCompleted {
                video_id,
                title,
                path,
                bytes,
                index,
                total,
            } => {
                let item = json!([{
                    "video_id": video_id, "title": title, "path": path,
                    "bytes": bytes, "index": index, "total": total,
                }]);
                update
                    .push(", items = items || ")
                    .push_bind(item)
                    .push(", item_count = item_count + 1, bytes = bytes + ")
                    .push_bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                    .push(", total_items = ")
                    .push_bind(total.and_then(|t| i32::try_from(t).ok()));
            }
            DownloadEvent::Completed { .. } => {
                status(&mut update, DownloadStatus::Completed);
                update.push(", finished_at = ").push_bind(time);
            }
            DownloadEvent::Failed {
                error, retryable, ..
            } => {
                status(&mut update, DownloadStatus::Failed);
                update
                    .push(", error = ")
                    .push_bind(error)
                    .push(", retryable = ")
                    .push_bind(retryable)
                    .push(", finished_at = ")
                    .push_bind(time);
            }
            DownloadEvent::Cancelled { by } => {
                status(&mut update, DownloadStatus::Cancelled);
                update
                    .push(", cancelled_by = ")
                    .push_bind(by.to_string())
                    .push(", finished_at = ")
                    .push_bind(time);
            }
            DownloadEvent::Retried { .. } => {
                status(&mut update, DownloadStatus::Queued);
                update.push(", error = NULL, retryable = NULL, cancelled_by = NULL");
            }
            DownloadEvent::LibraryScanRequested { section_id, path } => {
                update
                    .push(", library_scan_status = 'requested', library_section_id = ")
                    .push_bind(section_id)
                    .push(", library_scan_path = ")
                    .push_bind(path);
            }
            DownloadEvent::LibraryScanFailed { error } => {
                update
                    .push(", library_scan_status = 'failed', library_scan_error = ")
                    .push_bind(error);
            }
        }
        finish_row_update(update, id, sequence, tx).await?;
        Ok(())
    }
}

fn kind_name(kind: DownloadKind) -> &'static str {
    match kind {
        DownloadKind::Video => "video",
        DownloadKind::Playlist => "playlist",
    }
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct DownloadRow {
    /// Download id.
    pub id: Uuid,
    /// Aggregate version the row reflects.
    pub version: i64,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Requester's user id.
    pub requested_by: String,
    /// The URL as recorded.
    pub url: String,
    /// `video` or `playlist`.
    pub kind: String,
    /// `best`, `1080p`, ….
    pub quality: String,
    /// `mp4`, `mkv` or `webm`.
    pub container: String,
    /// The current attempt (0 before the first start).
    pub attempt: i32,
    /// Items of the current attempt: `[{video_id, title, path, bytes, index, total}]`.
    pub items: Value,
    /// How many items of the current attempt are in the library.
    pub item_count: i32,
    /// Playlist length, when yt-dlp knew it.
    pub total_items: Option<i32>,
    /// Bytes of the current attempt's items.
    pub bytes: i64,
    /// The last failure.
    pub error: Option<String>,
    /// Whether a retry may help the last failure.
    pub retryable: Option<bool>,
    /// Who cancelled.
    pub cancelled_by: Option<String>,
    /// `requested` or `failed` once the Plex scanner ran.
    pub library_scan_status: Option<String>,
    /// The Plex library section scanned.
    pub library_section_id: Option<String>,
    /// The folder Plex was asked to scan.
    pub library_scan_path: Option<String>,
    /// Why the scan could not be requested.
    pub library_scan_error: Option<String>,
    /// When queued.
    pub created_at: DateTime<Utc>,
    /// When the current attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed, failed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of the last event applied.
    pub last_position: i64,
}

/// Filters of the download list; all optional.
#[derive(Debug, Clone, Default)]
pub struct DownloadFilter {
    /// Only this status.
    pub status: Option<DownloadStatus>,
    /// Only this requester.
    pub requested_by: Option<String>,
    /// Only downloads older than this id (the cursor: ids are UUIDv7, so time-ordered).
    pub before: Option<Uuid>,
}

/// Newest first, at most `limit` rows.
///
/// # Errors
/// The database error.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    filter: &DownloadFilter,
    limit: i64,
) -> Result<Vec<DownloadRow>, sqlx::Error> {
    let mut query = QueryBuilder::new("SELECT * FROM downloads WHERE true");
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
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

/// One download, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<DownloadRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM downloads WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}
