//! `GET /api/v1/search`: typo-tolerant, ranked search over media requests (title, year,
//! requester's username) from the `request_search` read model.
//!
//! Results come by word closeness first (each word of `q` graded against the request's
//! words: exact, prefix, one typo, two typos), then by relevance rank; the rules live with
//! the query, in [`medianest_projections::search::search`].
//!
//! Visibility: the same as the request list — admins search every request, other users
//! only their own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaType, RequestStatus};
use medianest_http::{ApiError, Caller, Query};
use medianest_projections::search::{self, SearchQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::paging::{filter, page_limit};
use crate::{wait_for_position, QueryState};

/// Longest `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new().route("/api/v1/search", get(search))
}

/// The query parameters of `GET /api/v1/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// Search text, 1 to 200 characters: words of the title or the requester's username
    /// (typos tolerated), 4-digit years; web-search syntax ("quoted phrase", or, -word) for
    /// the full-text part. Optional in the type only, so that its absence is a 400 of ours.
    #[serde(default)]
    #[param(value_type = String, required = true)]
    q: Option<String>,
    /// Only this status.
    #[serde(default)]
    #[param(value_type = String)]
    status: Option<String>,
    /// `movie` or `tv`.
    #[serde(default)]
    #[param(value_type = String)]
    media_type: Option<String>,
    /// 1 to 100, default 25.
    #[serde(default)]
    #[param(value_type = i64)]
    limit: Option<i64>,
    /// Wait until the read model has this position.
    #[serde(default)]
    #[param(value_type = i64)]
    min_position: Option<i64>,
}

/// One matching request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchHit {
    /// Request id.
    id: Uuid,
    /// Title.
    title: String,
    /// Release year.
    year: Option<i32>,
    /// `movie` or `tv`.
    media_type: String,
    /// `pending`, `approved`, `declined`, `cancelled`, `forwarded`, `processing`,
    /// `partially_available`, `available` or `failed`.
    status: String,
    /// Requester's user id.
    requested_by: String,
    /// Requester's current username (`null` when the account is unknown).
    requester: Option<String>,
    /// When the request was submitted.
    created_at: DateTime<Utc>,
    /// Global position of the last event of the request the result reflects.
    position: i64,
    /// Relevance, higher is better, rounded to 4 decimals. The integer part is the word
    /// closeness: for each word of `q`, its best grade among the title's words, the
    /// requester's name and the year (4 the same word, 3 a prefix, 2 one typo, 1 two typos,
    /// 0 none), summed. The fraction, below 1, is the relevance rank `r` as `r / (1 + r)`,
    /// where `r` adds 1 for an exact title, 0 to 2 for the title's trigram similarity, the
    /// full-text rank, 0 to 0.5 for the requester's similarity and 1 for a year named in
    /// `q`. Only meaningful within one answer.
    score: f64,
}

impl From<search::SearchHit> for SearchHit {
    fn from(hit: search::SearchHit) -> Self {
        let row = hit.row;
        Self {
            id: row.id,
            title: row.title,
            year: row.year,
            media_type: row.media_type,
            status: row.status,
            requested_by: row.requested_by,
            requester: row.requester,
            created_at: row.created_at,
            position: row.last_position,
            score: hit.score,
        }
    }
}

/// The answer of a search.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchResults {
    /// `q` as searched (surrounding whitespace removed).
    query: String,
    /// Best first; ties newest first.
    results: Vec<SearchHit>,
}

/// `q`, trimmed: present, not blank, at most [`MAX_QUERY_CHARS`] characters, no control
/// characters.
pub(crate) fn search_text(q: Option<&str>) -> Result<&str, ApiError> {
    let q = q.ok_or_else(|| ApiError::malformed("q is required"))?;
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::malformed(format!(
            "q must be at most {MAX_QUERY_CHARS} characters"
        )));
    }
    if q.chars().any(char::is_control) {
        return Err(ApiError::malformed("q must not contain control characters"));
    }
    let q = q.trim();
    if q.is_empty() {
        return Err(ApiError::malformed("q must not be empty"));
    }
    Ok(q)
}

/// Searches requests by title, year and requester, typo-tolerant, best first
/// (non-admins: their own).
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "search",
    params(SearchParams),
    responses(
        (status = 200, body = SearchResults),
        (status = 400, description = "`q` missing, empty, over 200 characters, with control characters or given twice (`malformed-request`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let text = search_text(params.q.as_deref())?.to_string();
    let status = filter::<RequestStatus>(params.status.as_deref())?;
    let media_type = filter::<MediaType>(params.media_type.as_deref())?;
    let limit = page_limit(params.limit)?;
    // Non-admins only ever find their own requests.
    let requested_by = (!caller.is_admin()).then(|| caller.id.to_string());
    wait_for_position(&state, search::NAME, params.min_position, &headers).await?;
    let query = SearchQuery {
        text,
        status,
        media_type,
        requested_by,
    };
    // A caller waiting for a position reads the read model itself; the others may share a
    // cached answer of the same read model.
    let internal = |e: &dyn std::fmt::Display| ApiError::internal(e);
    let hits = if params.min_position.is_some() {
        Arc::new(
            search::search(&state.pool, &query, limit)
                .await
                .map_err(|e| internal(&e))?,
        )
    } else {
        state
            .search_answers
            .search(&state.pool, &query, limit)
            .await
            .map_err(|e| internal(&e))?
    };
    Ok(Json(SearchResults {
        query: query.text,
        results: hits.iter().cloned().map(SearchHit::from).collect(),
    }))
}
