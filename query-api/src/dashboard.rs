//! `GET /api/v1/dashboard` (issue 5): requests by status and media type, the per-day series of
//! the last 30 UTC days, time from submitted to available, download totals, top requesters,
//! and the health of Overseerr, Plex and yt-dlp as the sagas' circuit breakers report it.
//!
//! Visibility: an admin sees everyone's figures and the top requesters (`scope: "all"`); a
//! user sees the slice of their own requests and downloads (`scope: "own"`, no top
//! requesters). An admin may ask for their own slice with `?scope=own`; a user asking for
//! `scope=all` is answered 403. Everyone sees the services' states (as Overseerr shows its
//! status to everyone); only admins see the last error, which may name internal addresses.
//!
//! The figures come from the `dashboard` read model (and `min_position` waits for it); the
//! services from the `service_health` table the workers write (process state, not events).
//! Everything is read in one `REPEATABLE READ` transaction, so the figures agree.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use medianest_domain::download::DownloadStatus;
use medianest_domain::media_request::{MediaType, RequestStatus};
use medianest_http::{ApiError, Caller, Query};
use medianest_projections::answers::Answers;
use medianest_projections::dashboard::{self, Summary};
use medianest_store::checkpoint;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::{IntoParams, ToSchema};

use crate::{wait_for_position, QueryState};

/// The external services whose health the dashboard shows, in this order.
pub const SERVICES: [&str; 3] = ["overseerr", "plex", "ytdlp"];

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new().route("/api/v1/dashboard", get(show))
}

/// The query parameters of `GET /api/v1/dashboard`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DashboardParams {
    /// `all` (admins only; their default) or `own` (users' default).
    #[serde(default)]
    #[param(value_type = String)]
    scope: Option<String>,
    /// Wait until the dashboard read model has this position.
    #[serde(default)]
    #[param(value_type = i64)]
    min_position: Option<i64>,
}

/// Request counts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequestStats {
    /// Every request in scope.
    total: i64,
    /// Requests per wire status; every status is present (0 when none).
    by_status: BTreeMap<String, i64>,
    /// Requests per media type (`movie`, `tv`); both present.
    by_media_type: BTreeMap<String, i64>,
}

/// Time from a request's submission to its availability, over the requests in scope that
/// became available (all time).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TimeToAvailableView {
    /// Median, in seconds; `null` without samples.
    median_seconds: Option<f64>,
    /// 90th percentile, in seconds; `null` without samples.
    p90_seconds: Option<f64>,
    /// How many available requests the figures are computed over.
    samples: i64,
}

/// Download totals.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DownloadStats {
    /// Every download in scope.
    total: i64,
    /// Downloads per status (`queued`, `running`, `completed`, `failed`, `cancelled`); every
    /// status is present.
    by_status: BTreeMap<String, i64>,
    /// Bytes of the files the downloads' current attempts put in the library.
    bytes: i64,
    /// Files the downloads' current attempts put in the library.
    items: i64,
}

/// One UTC day of the series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DayView {
    /// The UTC day, `YYYY-MM-DD`.
    date: NaiveDate,
    /// Requests submitted that day.
    requests: i64,
    /// Requests that became available that day.
    available: i64,
    /// Downloads queued that day.
    downloads: i64,
    /// Downloads completed that day.
    downloads_completed: i64,
}

/// A user among the top requesters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RequesterView {
    /// The user id.
    user_id: String,
    /// The username (`null` while the users read model has not caught up).
    username: Option<String>,
    /// Requests submitted, all time.
    requests: i64,
}

/// The health of an external service, as the workers' circuit breaker for it reports it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceView {
    /// `overseerr`, `plex` or `ytdlp`.
    service: String,
    /// `closed` (calls go through), `open` (the service is failing: calls are held back
    /// until the cool-down ends), `half_open` (one trial call decides) or `unknown` (no
    /// worker has reported on it: not configured, or the workers have not started).
    state: String,
    /// When the breaker entered this state (or its worker started).
    since: Option<DateTime<Utc>>,
    /// Transient failures (5xx, timeouts, connection errors) in a row.
    consecutive_failures: i32,
    /// The last transient failure's message (admins only; `null` for users).
    last_error: Option<String>,
    /// When the last transient failure happened.
    last_failure_at: Option<DateTime<Utc>>,
    /// When the service last answered a call.
    last_success_at: Option<DateTime<Utc>>,
    /// When the breaker last opened.
    opened_at: Option<DateTime<Utc>>,
    /// When the row was last written.
    updated_at: Option<DateTime<Utc>>,
}

/// The dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DashboardView {
    /// `all` (everyone's figures, for admins) or `own` (the caller's requests and downloads).
    scope: String,
    /// When the figures were computed.
    generated_at: DateTime<Utc>,
    /// Global position of the last event the figures reflect (pass as `min_position`).
    position: i64,
    requests: RequestStats,
    time_to_available: TimeToAvailableView,
    downloads: DownloadStats,
    /// The last 30 UTC days, oldest first, today last; days without activity are zeros.
    per_day: Vec<DayView>,
    /// The 10 users with the most requests, most first (admins, `scope=all` only; absent
    /// otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    top_requesters: Option<Vec<RequesterView>>,
    /// Overseerr, Plex and yt-dlp, in that order.
    services: Vec<ServiceView>,
    /// Notification deliveries that failed for good and wait for an admin (admins,
    /// `scope=all` only; absent otherwise). See `GET /api/v1/admin/notifications/deliveries?status=dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_notifications: Option<i64>,
}

#[derive(Debug, FromRow)]
struct HealthRow {
    service: String,
    state: String,
    consecutive_failures: i32,
    last_error: Option<String>,
    last_failure_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    opened_at: Option<DateTime<Utc>>,
    state_since: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The dashboard: everyone's figures for admins, the caller's own slice for users.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard",
    tag = "dashboard",
    params(DashboardParams),
    responses(
        (status = 200, body = DashboardView),
        (status = 400, description = "a bad `scope` (`malformed-request`)"),
        (status = 403, description = "`scope=all` asked by a user (`forbidden`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<DashboardParams>,
) -> Result<Json<DashboardView>, ApiError> {
    let all = match params.scope.as_deref() {
        None => caller.is_admin(),
        Some("all") if caller.is_admin() => true,
        Some("all") => {
            return Err(ApiError::forbidden(
                "only admins see everyone's figures; use scope=own",
            ))
        }
        Some("own") => false,
        Some(other) => {
            return Err(ApiError::malformed(format!(
                "scope must be all or own, not `{other}`"
            )))
        }
    };
    wait_for_position(&state, dashboard::NAME, params.min_position, &headers).await?;
    // Everyone's figures, or the caller's slice.
    let slice = (!all).then(|| caller.id.to_string());
    let read = || async { read_summary(&state, slice.as_deref()).await.map(Some) };
    let (summary, position) = if params.min_position.is_some() {
        read().await?
    } else {
        state
            .dashboard_answers
            .get_or_read(slice.clone(), read)
            .await
            .map_err(|e| (*e).clone())?
    }
    .ok_or_else(|| ApiError::internal(&"the dashboard read nothing"))?;
    let internal = |e: &dyn std::fmt::Display| ApiError::internal(e);
    // Not from the read model, so never cached: the services' health and the dead
    // notifications are as they are now.
    let mut conn = state.pool.acquire().await.map_err(|e| internal(&e))?;
    let health: Vec<HealthRow> = sqlx::query_as("SELECT * FROM service_health")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| internal(&e))?;
    let dead_notifications = if all {
        Some(
            sqlx::query_scalar(
                "SELECT count(*) FROM notification_deliveries WHERE status = 'dead'",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| internal(&e))?,
        )
    } else {
        None
    };
    let mut answer = view(summary, all, position, &health, caller.is_admin());
    answer.dead_notifications = dead_notifications;
    Ok(Json(answer))
}

/// What the dashboard read model says, cached until it (or the `users` read model, whose
/// names it shows) changes, for at most [`DASHBOARD_TTL`] ([`medianest_projections::answers`]):
/// by slice (`None` everyone's, else a user id), the summary and the projection's position.
pub type DashboardAnswers = Answers<Option<String>, (Summary, i64)>;

/// How long a cached summary is served before it is read again; it is served at most twice as
/// long (the bound for changes made by another process, such as a replay run by the CLI).
pub const DASHBOARD_TTL: Duration = Duration::from_secs(5);

/// An empty cache of dashboard summaries.
pub fn dashboard_answers() -> DashboardAnswers {
    Answers::new(dashboard::changes(), 1_000, DASHBOARD_TTL)
}

/// The read model's summary (everyone's with the top requesters, or `requested_by`'s slice)
/// and the projection's position, of one snapshot.
async fn read_summary(
    state: &QueryState,
    requested_by: Option<&str>,
) -> Result<(Summary, i64), ApiError> {
    let internal = |e: &dyn std::fmt::Display| ApiError::internal(e);
    let mut tx = state.pool.begin().await.map_err(|e| internal(&e))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| internal(&e))?;
    // Taken before the snapshot (LOCK takes none): a replay swapping the tables in meanwhile
    // is waited for, so the snapshot sees the new tables with their whole content.
    sqlx::query(&format!(
        "LOCK TABLE {} IN ACCESS SHARE MODE",
        dashboard::TABLES.join(", ")
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| internal(&e))?;
    let summary = dashboard::summary(&mut tx, requested_by, requested_by.is_none())
        .await
        .map_err(|e| internal(&e))?;
    let position = checkpoint::load(&mut *tx, &format!("projection-{}", dashboard::NAME))
        .await
        .map_err(|e| internal(&e))?
        .position;
    tx.commit().await.map_err(|e| internal(&e))?;
    Ok((summary, position))
}

fn view(
    summary: Summary,
    all: bool,
    position: i64,
    health: &[HealthRow],
    admin: bool,
) -> DashboardView {
    let mut by_status: BTreeMap<String, i64> = RequestStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    by_status.extend(summary.requests_by_status.iter().cloned());
    let mut by_media_type: BTreeMap<String, i64> = [MediaType::Movie, MediaType::Tv]
        .iter()
        .map(|t| (t.as_str().to_string(), 0))
        .collect();
    by_media_type.extend(summary.requests_by_media_type.iter().cloned());
    let mut downloads_by_status: BTreeMap<String, i64> = [
        DownloadStatus::Queued,
        DownloadStatus::Running,
        DownloadStatus::Completed,
        DownloadStatus::Failed,
        DownloadStatus::Cancelled,
    ]
    .iter()
    .map(|s| (s.as_str().to_string(), 0))
    .collect();
    downloads_by_status.extend(
        summary
            .downloads_by_status
            .iter()
            .map(|d| (d.status.clone(), d.count)),
    );
    let services = SERVICES
        .iter()
        .map(
            |service| match health.iter().find(|h| h.service == *service) {
                Some(row) => ServiceView {
                    service: row.service.clone(),
                    state: row.state.clone(),
                    since: Some(row.state_since),
                    consecutive_failures: row.consecutive_failures,
                    last_error: row.last_error.clone().filter(|_| admin),
                    last_failure_at: row.last_failure_at,
                    last_success_at: row.last_success_at,
                    opened_at: row.opened_at,
                    updated_at: Some(row.updated_at),
                },
                None => ServiceView {
                    service: (*service).to_string(),
                    state: "unknown".to_string(),
                    since: None,
                    consecutive_failures: 0,
                    last_error: None,
                    last_failure_at: None,
                    last_success_at: None,
                    opened_at: None,
                    updated_at: None,
                },
            },
        )
        .collect();
    DashboardView {
        scope: if all { "all" } else { "own" }.to_string(),
        generated_at: summary.generated_at.unwrap_or_else(Utc::now),
        position,
        requests: RequestStats {
            total: summary.requests_by_status.iter().map(|(_, n)| n).sum(),
            by_status,
            by_media_type,
        },
        time_to_available: TimeToAvailableView {
            median_seconds: summary.time_to_available.median_seconds,
            p90_seconds: summary.time_to_available.p90_seconds,
            samples: summary.time_to_available.samples,
        },
        downloads: DownloadStats {
            total: summary.downloads_by_status.iter().map(|d| d.count).sum(),
            by_status: downloads_by_status,
            bytes: summary.downloads_by_status.iter().map(|d| d.bytes).sum(),
            items: summary.downloads_by_status.iter().map(|d| d.items).sum(),
        },
        per_day: summary
            .per_day
            .iter()
            .map(|d| DayView {
                date: d.day,
                requests: d.requests,
                available: d.available,
                downloads: d.downloads,
                downloads_completed: d.downloads_completed,
            })
            .collect(),
        top_requesters: summary.top_requesters.map(|rows| {
            rows.into_iter()
                .map(|r| RequesterView {
                    user_id: r.user_id,
                    username: r.username,
                    requests: r.requests,
                })
                .collect()
        }),
        services,
        dead_notifications: None,
    }
}
