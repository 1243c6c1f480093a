//! `GET /api/v1/requests`, `GET /api/v1/requests/{id}`, `GET /api/v1/requests/{id}/history`.
//!
//! Visibility: admins see every request; other users only their own (another user's request
//! is answered 404, as if it did not exist).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaType, RequestStatus};
use medianest_domain::{Actor, ActorId};
use medianest_http::{ApiError, Caller, Query};
use medianest_projections::requests::{self, RequestFilter, RequestRow};
use medianest_store::log;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::paging::{filter, own_unless_admin, read_page, Paging, ReadParams};
use crate::{wait_for_position, QueryState};

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/requests", get(list))
        .route("/api/v1/requests/{id}", get(detail))
        .route("/api/v1/requests/{id}/history", get(history))
}

/// The query parameters of `GET /api/v1/requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only this status.
    #[serde(default)]
    #[param(value_type = String)]
    status: Option<String>,
    /// `movie` or `tv`.
    #[serde(default)]
    #[param(value_type = String)]
    media_type: Option<String>,
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

/// What is requested.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MediaView {
    /// `movie` or `tv`.
    media_type: String,
    /// TMDB id.
    tmdb_id: i64,
    /// TheTVDB id.
    tvdb_id: Option<i64>,
    /// Title.
    title: String,
    /// Release year.
    year: Option<i32>,
}

/// A media request as the read model has it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestView {
    id: Uuid,
    /// Aggregate version (also the `ETag` of the detail).
    version: i64,
    /// `pending`, `approved`, `declined`, `cancelled`, `forwarded`, `processing`,
    /// `partially_available`, `available` or `failed`.
    status: String,
    media: MediaView,
    /// tv: `[1,2]` or `"all"`.
    #[schema(value_type = Option<Object>)]
    seasons: Option<Value>,
    is_4k: bool,
    note: Option<String>,
    /// Requester's user id.
    requested_by: String,
    approved_by: Option<String>,
    /// Overseerr's request id, once forwarded.
    overseerr_request_id: Option<i64>,
    #[schema(value_type = Option<Vec<u32>>)]
    available_seasons: Option<Value>,
    /// Decline, cancel or failure reason.
    status_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Global position of the last event the row reflects.
    position: i64,
}

impl From<&RequestRow> for RequestView {
    fn from(row: &RequestRow) -> Self {
        Self {
            id: row.id,
            version: row.version,
            status: row.status.clone(),
            media: MediaView {
                media_type: row.media_type.clone(),
                tmdb_id: row.tmdb_id,
                tvdb_id: row.tvdb_id,
                title: row.title.clone(),
                year: row.year,
            },
            seasons: row.seasons.clone(),
            is_4k: row.is_4k,
            note: row.note.clone(),
            requested_by: row.requested_by.clone(),
            approved_by: row.approved_by.clone(),
            overseerr_request_id: row.overseerr_request_id,
            available_seasons: row.available_seasons.clone(),
            status_reason: row.status_reason.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            position: row.last_position,
        }
    }
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestPage {
    items: Vec<RequestView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<Uuid>,
}

/// One stored event of a request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryEvent {
    /// Aggregate version after the event.
    sequence: i64,
    /// Global position.
    position: i64,
    /// Event type, e.g. `submitted`.
    r#type: String,
    /// Shape version, e.g. `1.0`.
    event_version: String,
    /// The event's fields (docs/events.md).
    #[schema(value_type = Object)]
    data: Value,
    /// `correlation_id`, `causation_id`, `actor`, `request_id`, `traceparent`.
    #[schema(value_type = Object)]
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

/// A request's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct History {
    id: Uuid,
    events: Vec<HistoryEvent>,
}

fn visible(caller: &Actor, row: &RequestRow) -> bool {
    caller.is_admin()
        || row
            .requested_by
            .parse::<ActorId>()
            .is_ok_and(|owner| owner == caller.id)
}

/// Lists requests, newest first (non-admins: their own).
#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    params(ListParams),
    responses(
        (status = 200, body = RequestPage),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<RequestPage>, ApiError> {
    let status = filter::<RequestStatus>(params.status.as_deref())?;
    let media_type = filter::<MediaType>(params.media_type.as_deref())?;
    let requested_by = own_unless_admin(&caller, params.requested_by);
    let paging = Paging::new(params.cursor, params.limit, params.min_position);
    let pool = &state.pool;
    let page = read_page(
        &state,
        requests::NAME,
        paging,
        &headers,
        |before, rows| {
            let filter = RequestFilter {
                status,
                media_type,
                requested_by,
                before,
            };
            async move { requests::list(pool, &filter, rows).await }
        },
        |row| row.id,
    )
    .await?;
    Ok(Json(RequestPage {
        items: page.rows.iter().map(RequestView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn visible_row(
    state: &QueryState,
    caller: &Actor,
    raw_id: &str,
) -> Result<RequestRow, ApiError> {
    let not_found = || ApiError::not_found("no such media request");
    let id: Uuid = raw_id.parse().map_err(|_| not_found())?;
    let row = requests::get(&state.pool, id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(not_found)?;
    if visible(caller, &row) {
        Ok(row)
    } else {
        Err(not_found())
    }
}

/// One request.
#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    params(
        ("id" = Uuid, Path, description = "request id"),
        ReadParams,
    ),
    responses(
        (status = 200, body = RequestView),
        (status = 404, description = "unknown id, or another user's request (`not-found`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn detail(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Result<(HeaderMap, Json<RequestView>), ApiError> {
    wait_for_position(&state, requests::NAME, params.min_position, &headers).await?;
    let row = visible_row(&state, &caller, &id).await?;
    let mut out = HeaderMap::new();
    if let Ok(etag) = format!("\"{}\"", row.version).parse() {
        out.insert(axum::http::header::ETAG, etag);
    }
    Ok((out, Json(RequestView::from(&row))))
}

/// The aggregate's events from the store (the source of truth, so no waiting), with
/// metadata. Visibility follows the read model's requester.
/// A request's events from the event store, with metadata.
#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}/history",
    tag = "requests",
    params(
        ("id" = Uuid, Path, description = "request id"),
        ReadParams,
    ),
    responses(
        (status = 200, body = History),
        (status = 404, description = "unknown id, or another user's request (`not-found`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn history(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Result<Json<History>, ApiError> {
    wait_for_position(&state, requests::NAME, params.min_position, &headers).await?;
    let row = visible_row(&state, &caller, &id).await?;
    let events = log::aggregate_events(&state.pool, "media_request", &row.id.to_string())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let events = events
        .into_iter()
        .map(|event| HistoryEvent {
            data: medianest_domain::public::public_data(&event.aggregate_type, &event.payload)
                .unwrap_or(Value::Null),
            sequence: event.sequence,
            position: event.position,
            r#type: event.event_type,
            event_version: event.event_version,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
        })
        .collect();
    Ok(Json(History { id: row.id, events }))
}
