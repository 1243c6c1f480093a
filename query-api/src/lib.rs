//! The query side over HTTP (DESIGN.md §5, §7): request lists and details from the `requests`
//! read model, request histories from the event store, downloads (with live progress) from
//! the `downloads` read model, and the caller's account and sessions
//! and the admin user list from the `users` and `sessions` read models; the catalogue
//! (search, discover lists, movie and show details through Overseerr, with MediaNest's own
//! availability from the Plex library and `requests` read models).
//!
//! Every read-model endpoint honours `min_position` (query parameter or `X-Min-Position`):
//! it waits, at most [`QueryState::min_position_wait`], until the projection has passed that
//! global position, then answers 503 with `Retry-After` rather than stale data.

pub mod catalog;
pub mod dashboard;
pub mod downloads;
pub mod requests;
pub mod search;
pub mod stream;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::Router;
use medianest_domain::user_account::Quotas;
use medianest_http::auth::HasAuthenticator;
use medianest_http::{ApiError, Authenticator};
use medianest_store::checkpoint;
use sqlx::PgPool;

/// Shared state of the query routes.
#[derive(Clone)]
pub struct QueryState {
    /// The database (read models and the event store).
    pub pool: PgPool,
    /// Who callers are.
    pub authenticator: Arc<dyn Authenticator>,
    /// The longest wait for `min_position`.
    pub min_position_wait: Duration,
    /// Quotas of accounts without their own (shown by `GET /api/v1/me`).
    pub default_quotas: Quotas,
    /// The latest progress of running downloads; `None` shows none.
    pub download_progress: Option<Arc<medianest_nats::ProgressBoard>>,
    /// The live stream's log tail (`GET /api/v1/stream`); `None` answers that route 503.
    pub stream: Option<Arc<stream::StreamHub>>,
    /// The catalogue's access to Overseerr (`/api/v1/catalog/*`); `None` (no Overseerr
    /// configured) answers those routes 503.
    pub catalog: Option<Arc<catalog::Catalog>>,
}

impl HasAuthenticator for QueryState {
    fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }
}

/// The OpenAPI description of the query routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    requests::list,
    requests::detail,
    requests::history,
    downloads::list,
    downloads::detail,
    users::me,
    users::my_sessions,
    users::list_users,
    dashboard::show,
    search::search,
    stream::stream,
    catalog::search,
    catalog::discover,
    catalog::movie,
    catalog::tv,
    catalog::season
))]
pub struct QueryApiDoc;

/// Every query route, with state applied.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .merge(requests::router())
        .merge(downloads::router())
        .merge(users::router())
        .merge(search::router())
        .merge(dashboard::router())
        .merge(stream::router())
        .merge(catalog::router())
        .with_state(state)
}

/// The page size of a list: `limit` from 1 to [`requests::MAX_LIMIT`] (100), default
/// [`requests::DEFAULT_LIMIT`] (25).
///
/// # Errors
/// 400 outside that range.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(requests::DEFAULT_LIMIT);
    if (1..=requests::MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::malformed("limit must be between 1 and 100"))
    }
}

/// Cuts `rows`, fetched with `limit + 1`, to one page, and answers the next page's cursor
/// (the id of the page's last row) when there is more.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> uuid::Uuid,
) -> (Vec<T>, Option<uuid::Uuid>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(&id);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// The `X-Min-Position` header.
pub const MIN_POSITION_HEADER: &str = "x-min-position";

/// Waits until projection `projection` has passed `min_position` (from the query or the
/// header; the larger wins).
///
/// # Errors
/// 400 for an unreadable header, 503 with `Retry-After: 1` when the wait times out.
pub async fn wait_for_position(
    state: &QueryState,
    projection: &str,
    query: Option<i64>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let header = match headers.get(MIN_POSITION_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::malformed("X-Min-Position must be an integer"))?,
        ),
    };
    let Some(position) = query.max(header).filter(|p| *p > 0) else {
        return Ok(());
    };
    let checkpoint = format!("projection-{projection}");
    let reached = checkpoint::wait_until_reached(
        &state.pool,
        &[&checkpoint],
        position,
        state.min_position_wait,
    )
    .await
    .map_err(|e| ApiError::internal(&e))?;
    if reached {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            format!("the {projection} read model has not reached position {position} yet"),
            1,
        ))
    }
}
