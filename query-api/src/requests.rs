//! `GET /api/v1/requests`, `GET /api/v1/requests/{id}`, `GET /api/v1/requests/{id}/history`.
//!
//! Visibility: admins see every request; other users only their own (another user's request
//! is answered 404, as if it did not exist).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use medianest_domain::media_request::{MediaType, RequestStatus};
use medianest_domain::Actor;
use medianest_http::{ApiError, Caller, Query};
use medianest_projections::requests::{self, RequestFilter, RequestRow};
use medianest_store::log;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{wait_for_position, QueryState};

/// Largest page size.
pub const MAX_LIMIT: i64 = 100;
/// Default page size.
pub const DEFAULT_LIMIT: i64 = 25;

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/requests", get(list))
        .route("/api/v1/requests/{id}", get(detail))
        .route("/api/v1/requests/{id}/history", get(history))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    cursor: Option<Uuid>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    min_position: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    #[serde(default)]
    min_position: Option<i64>,
}

fn view(row: &RequestRow) -> Value {
    json!({
        "id": row.id,
        "version": row.version,
        "status": row.status,
        "media": {
            "media_type": row.media_type,
            "tmdb_id": row.tmdb_id,
            "tvdb_id": row.tvdb_id,
            "title": row.title,
            "year": row.year,
        },
        "seasons": row.seasons,
        "is_4k": row.is_4k,
        "note": row.note,
        "requested_by": row.requested_by,
        "approved_by": row.approved_by,
        "overseerr_request_id": row.overseerr_request_id,
        "available_seasons": row.available_seasons,
        "status_reason": row.status_reason,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "position": row.last_position,
    })
}

fn visible(caller: &Actor, row: &RequestRow) -> bool {
    caller.is_admin() || row.requested_by == caller.id.as_str()
}

async fn list(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(str::parse::<RequestStatus>)
        .transpose()
        .map_err(ApiError::malformed)?;
    let media_type = params
        .media_type
        .as_deref()
        .map(str::parse::<MediaType>)
        .transpose()
        .map_err(ApiError::malformed)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::malformed("limit must be between 1 and 100"));
    }
    // Non-admins only ever list their own requests.
    let requested_by = if caller.is_admin() {
        params.requested_by
    } else {
        Some(caller.id.to_string())
    };
    wait_for_position(&state, requests::NAME, params.min_position, &headers).await?;
    let filter = RequestFilter {
        status,
        media_type,
        requested_by,
        before: params.cursor,
    };
    let mut rows = requests::list(&state.pool, &filter, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.id)
    } else {
        None
    };
    Ok(Json(json!({
        "items": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
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

async fn detail(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Result<(HeaderMap, Json<Value>), ApiError> {
    wait_for_position(&state, requests::NAME, params.min_position, &headers).await?;
    let row = visible_row(&state, &caller, &id).await?;
    let mut out = HeaderMap::new();
    if let Ok(etag) = format!("\"{}\"", row.version).parse() {
        out.insert(axum::http::header::ETAG, etag);
    }
    Ok((out, Json(view(&row))))
}

/// The aggregate's events from the store (the source of truth, so no waiting), with
/// metadata. Visibility follows the read model's requester.
async fn history(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<ReadParams>,
) -> Result<Json<Value>, ApiError> {
    wait_for_position(&state, requests::NAME, params.min_position, &headers).await?;
    let row = visible_row(&state, &caller, &id).await?;
    let events = log::aggregate_events(&state.pool, "media_request", &row.id.to_string())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            let data = medianest_domain::public::public_data(&event.aggregate_type, &event.payload)
                .unwrap_or(Value::Null);
            json!({
                "sequence": event.sequence,
                "position": event.position,
                "type": event.event_type,
                "event_version": event.event_version,
                "data": data,
                "metadata": event.metadata,
                "recorded_at": event.recorded_at,
            })
        })
        .collect();
    Ok(Json(json!({ "id": row.id, "events": events })))
}
