//! The query side over HTTP (docs/design.md §5, §7): request lists and details from the `requests`
//! read model, request histories from the event store, downloads (with live progress) from
//! the `downloads` read model, and the caller's account and sessions
//! and the admin user list from the `users` and `sessions` read models; the catalogue
//! (search, discover lists, movie and show details through Overseerr, with MediaNest's own
//! availability from the Plex library and `requests` read models).
//!
//! Every read-model endpoint honours `min_position` (query parameter or `X-Min-Position`):
//! it waits, at most [`QueryState::min_position_wait`], until the projection has passed that
//! global position, then answers 503 with `Retry-After` rather than stale data. A position no
//! event has (beyond the head of the log) cannot be reached by waiting: it is answered 400 at
//! once ([`wait_for_position`]).

pub mod catalog;
pub mod dashboard;
pub mod downloads;
pub mod paging;
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
use medianest_http::openapi::SharedAnswers;
use medianest_http::{ApiError, Authenticator, ProblemType};
use medianest_store::checkpoint::{self, WaitOutcome};
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
    /// Search answers, cached until the search read model changes.
    pub search_answers: Arc<medianest_projections::search::SearchAnswers>,
    /// Dashboards, cached until the dashboard read model changes
    /// ([`dashboard::dashboard_answers`]).
    pub dashboard_answers: Arc<dashboard::DashboardAnswers>,
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
), modifiers(&SharedAnswers))]
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

/// The `X-Min-Position` header.
pub const MIN_POSITION_HEADER: &str = "x-min-position";

/// Waits until projection `projection` has passed `min_position` (from the query or the
/// header; the larger wins). 0 (the start of the log) needs no wait.
///
/// # Errors
/// 400 `malformed-request` for a negative value or an unreadable header (the query
/// extractor already refuses what is not an `i64`); 400 `unknown-min-position` at once when
/// no event has that position (beyond the head of the log): waiting cannot reach it, and a
/// client that retried would wait the whole bound every time; 503 with `Retry-After: 1` when
/// the wait times out.
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
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::malformed("X-Min-Position must be a non-negative integer")
                })?,
        ),
    };
    if query.is_some_and(|p| p < 0) {
        return Err(ApiError::malformed(
            "min_position must be a non-negative integer",
        ));
    }
    let Some(position) = query.max(header).filter(|p| *p > 0) else {
        return Ok(());
    };
    let checkpoint = format!("projection-{projection}");
    let outcome = checkpoint::wait_until_reached(
        &state.pool,
        &[&checkpoint],
        position,
        state.min_position_wait,
    )
    .await
    .map_err(|e| ApiError::internal(&e))?;
    match outcome {
        WaitOutcome::Reached => Ok(()),
        WaitOutcome::TimedOut => Err(ApiError::unavailable(
            format!("the {projection} read model has not reached position {position} yet"),
            1,
        )),
        WaitOutcome::NoSuchEvent { head } => Err(unknown_min_position(position, head)),
    }
}

/// 400 `unknown-min-position`: no event of the log has `position` (the log's head is at
/// `head`), so no wait can reach it.
fn unknown_min_position(position: i64, head: i64) -> ApiError {
    let detail = if position > head {
        format!(
            "min_position {position} is beyond the head of the event log ({head}); \
             pass a position this server answered, or none"
        )
    } else {
        format!("no event has position {position}; pass a position this server answered, or none")
    };
    ApiError::new(ProblemType::UnknownMinPosition, detail)
        .with("min_position", position)
        .with("head", head)
}
