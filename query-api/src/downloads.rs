//! `GET /api/v1/downloads` and `GET /api/v1/downloads/{id}` (issue 4), from the `downloads`
//! read model, with the current progress of a running download from core NATS (the latest
//! message of `medianest.progress.download.<id>`, kept by a [`ProgressBoard`]).
//!
//! Visibility: admins see every download; other users only their own (another user's is
//! answered 404, as if it did not exist).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use medianest_domain::download::DownloadStatus;
use medianest_domain::ActorId;
use medianest_http::{ApiError, Caller, Query};
use medianest_nats::ProgressBoard;
use medianest_projections::downloads::{self, DownloadFilter, DownloadRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::paging::{filter, own_unless_admin, read_page, Paging, ReadParams};
use crate::{wait_for_position, QueryState};

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/downloads", get(list))
        .route("/api/v1/downloads/{id}", get(detail))
}

/// The query parameters of `GET /api/v1/downloads`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    #[serde(default)]
    #[param(value_type = String)]
    status: Option<String>,
    /// Only this requester (admins).
    #[serde(default)]
    #[param(value_type = String)]
    requested_by: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[param(value_type = Uuid)]
    cursor: Option<Uuid>,
    /// 1 to 100, default 25.
    #[serde(default)]
    #[param(value_type = i64)]
    limit: Option<i64>,
    /// Wait until the read model has this position.
    #[serde(default)]
    #[param(value_type = i64)]
    min_position: Option<i64>,
}

/// The Plex library scan after a completed download.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LibraryScanView {
    /// `requested` or `failed`.
    status: String,
    /// The library section's key.
    section_id: Option<String>,
    /// The folder Plex was asked to scan.
    path: Option<String>,
    /// Why it could not be requested.
    error: Option<String>,
}

/// A download as the read model has it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DownloadView {
    id: Uuid,
    /// Aggregate version (also the `ETag` of the detail).
    version: i64,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    status: String,
    /// The URL as recorded.
    url: String,
    /// `video` or `playlist`.
    kind: String,
    /// `best`, `2160p` … `360p`.
    quality: String,
    /// `mp4`, `mkv` or `webm`.
    container: String,
    /// Requester's user id.
    requested_by: String,
    /// The current attempt (0 before the first start).
    attempt: i32,
    /// Files of the current attempt in the library: `[{video_id, title, path (relative to
    /// the downloads root), bytes, index, total}]` (the list view leaves them out).
    #[schema(value_type = Option<Vec<Object>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Value>,
    /// How many files of the current attempt are in the library.
    item_count: i32,
    /// Playlist length, when known.
    total_items: Option<i32>,
    /// Bytes of those files.
    bytes: i64,
    /// The last failure and whether a retry may help.
    error: Option<String>,
    retryable: Option<bool>,
    cancelled_by: Option<String>,
    library_scan: Option<LibraryScanView>,
    /// While running: the latest progress message (`video_id`, `index`, `total`,
    /// `downloaded_bytes`, `total_bytes`, `speed_bytes_per_sec`, `eta_secs`,
    /// `items_completed`, `at`); otherwise null (detail only).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<Value>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    /// Global position of the last event the row reflects.
    position: i64,
}

impl DownloadView {
    fn of(row: &DownloadRow, detail: bool) -> Self {
        Self {
            id: row.id,
            version: row.version,
            status: row.status.clone(),
            url: row.url.clone(),
            kind: row.kind.clone(),
            quality: row.quality.clone(),
            container: row.container.clone(),
            requested_by: row.requested_by.clone(),
            attempt: row.attempt,
            items: detail.then(|| row.items.clone()),
            item_count: row.item_count,
            total_items: row.total_items,
            bytes: row.bytes,
            error: row.error.clone(),
            retryable: row.retryable,
            cancelled_by: row.cancelled_by.clone(),
            library_scan: row
                .library_scan_status
                .as_ref()
                .map(|status| LibraryScanView {
                    status: status.clone(),
                    section_id: row.library_section_id.clone(),
                    path: row.library_scan_path.clone(),
                    error: row.library_scan_error.clone(),
                }),
            progress: None,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
            position: row.last_position,
        }
    }
}

/// A page of downloads, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DownloadPage {
    items: Vec<DownloadView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<Uuid>,
}

/// Lists downloads, newest first (non-admins: their own).
#[utoipa::path(
    get,
    path = "/api/v1/downloads",
    tag = "downloads",
    params(ListParams),
    responses(
        (status = 200, body = DownloadPage),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<DownloadPage>, ApiError> {
    let status = filter::<DownloadStatus>(params.status.as_deref())?;
    let requested_by = own_unless_admin(&caller, params.requested_by);
    let paging = Paging::new(params.cursor, params.limit, params.min_position);
    let pool = &state.pool;
    let page = read_page(
        &state,
        downloads::NAME,
        paging,
        &headers,
        |before, rows| {
            let filter = DownloadFilter {
                status,
                requested_by,
                before,
            };
            async move { downloads::list(pool, &filter, rows).await }
        },
        |row| row.id,
    )
    .await?;
    Ok(Json(DownloadPage {
        items: page
            .rows
            .iter()
            .map(|row| DownloadView::of(row, false))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One download with its files and, while running, its current progress.
#[utoipa::path(
    get,
    path = "/api/v1/downloads/{id}",
    tag = "downloads",
    params(
        ("id" = Uuid, Path, description = "download id"),
        ReadParams,
    ),
    responses(
        (status = 200, body = DownloadView),
        (status = 404, description = "unknown id, or another user's download (`not-found`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn detail(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Result<(HeaderMap, Json<DownloadView>), ApiError> {
    wait_for_position(&state, downloads::NAME, params.min_position, &headers).await?;
    let not_found = || ApiError::not_found("no such download");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let row = downloads::get(&state.pool, id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .filter(|row| {
            caller.is_admin()
                || row
                    .requested_by
                    .parse::<ActorId>()
                    .is_ok_and(|owner| owner == caller.id)
        })
        .ok_or_else(not_found)?;
    let mut view = DownloadView::of(&row, true);
    if row.status == DownloadStatus::Running.as_str() {
        view.progress = state
            .download_progress
            .as_deref()
            .and_then(|board: &ProgressBoard| board.get(&row.id.to_string()));
    }
    let mut out = HeaderMap::new();
    if let Ok(etag) = format!("\"{}\"", row.version).parse() {
        out.insert(axum::http::header::ETAG, etag);
    }
    Ok((out, Json(view)))
}
