//! The `dashboard` read model (DESIGN.md §5; issue 5): counts by status and day, time to
//! available, downloads, top requesters.
//!
//! The projection keeps one slim row per media request (`dashboard_requests`: requester,
//! media type, status, when submitted and when it became available) and per download
//! (`dashboard_downloads`: requester, status, when queued and finished, bytes and files of
//! the current attempt); the statistics are computed from them with SQL when asked
//! ([`summary`]), so they are never stale aggregates and a replay has little to rebuild.
//!
//! Fed from the public events on JetStream. Rows carry the aggregate version, as `requests`
//! (an event only updates a row below its sequence), and every time is the event's time,
//! never `now()`, so a replay builds identical rows. Statuses follow the `requests` and
//! `downloads` read models exactly.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use medianest_domain::download::{DownloadEvent, DownloadStatus};
use medianest_domain::media_request::{MediaRequestEvent, RequestStatus};
use medianest_domain::public::{download_event, media_request_event};
use medianest_nats::FeedEvent;
use sqlx::{FromRow, PgConnection, QueryBuilder};

use crate::runner::{finish_row_update, public_event, row_update};
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "dashboard";

/// Days in the per-day series, today (UTC) included.
pub const SERIES_DAYS: i32 = 30;

/// Rows of the top-requesters list.
pub const TOP_REQUESTERS: i64 = 10;

/// The `dashboard` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardProjection;

#[async_trait]
impl Projection for DashboardProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request", "download"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["dashboard_requests", "dashboard_downloads"]
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        match event.aggregate_type() {
            "media_request" => apply_request(tx, event).await,
            "download" => apply_download(tx, event).await,
            _ => Ok(()),
        }
    }
}

async fn apply_request(tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
    let (id, decoded) = public_event(event, media_request_event)?;
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let MediaRequestEvent::Submitted {
        requested_by,
        media,
        ..
    } = &decoded
    {
        sqlx::query(
            "INSERT INTO dashboard_requests (id, version, requested_by, media_type, status,
                submitted_at, updated_at, last_position)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(sequence)
        .bind(requested_by.as_str())
        .bind(media.media_type.as_str())
        .bind(time)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    let mut update = row_update("dashboard_requests", sequence, time, position);
    let status = |update: &mut QueryBuilder<'_, sqlx::Postgres>, status: RequestStatus| {
        update.push(", status = ").push_bind(status.as_str());
    };
    match decoded {
        MediaRequestEvent::Submitted { .. } => {}
        MediaRequestEvent::Approved { .. } | MediaRequestEvent::Retried { .. } => {
            status(&mut update, RequestStatus::Approved);
        }
        MediaRequestEvent::Declined { .. } => status(&mut update, RequestStatus::Declined),
        MediaRequestEvent::Cancelled { .. } => status(&mut update, RequestStatus::Cancelled),
        MediaRequestEvent::Forwarded { .. } => {
            // As in `requests`: a late `forwarded` never moves a request back.
            update
                .push(", status = CASE WHEN status = 'approved' THEN 'forwarded' ELSE status END");
        }
        MediaRequestEvent::ForwardFailed { .. } | MediaRequestEvent::Failed { .. } => {
            status(&mut update, RequestStatus::Failed);
        }
        MediaRequestEvent::Processing => status(&mut update, RequestStatus::Processing),
        MediaRequestEvent::PartiallyAvailable { .. } => {
            status(&mut update, RequestStatus::PartiallyAvailable);
        }
        MediaRequestEvent::Available { .. } => {
            status(&mut update, RequestStatus::Available);
            update
                .push(", available_at = COALESCE(available_at, ")
                .push_bind(time)
                .push(")");
        }
    }
    finish_row_update(update, id, sequence, tx).await?;
    Ok(())
}

async fn apply_download(tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
    let (id, decoded) = public_event(event, download_event)?;
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let DownloadEvent::Queued { requested_by, .. } = &decoded {
        sqlx::query(
            "INSERT INTO dashboard_downloads (id, version, requested_by, status, queued_at,
                updated_at, last_position)
             VALUES ($1, $2, $3, 'queued', $4, $4, $5)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(sequence)
        .bind(requested_by.as_str())
        .bind(time)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    let mut update = row_update("dashboard_downloads", sequence, time, position);
    let status = |update: &mut QueryBuilder<'_, sqlx::Postgres>, status: DownloadStatus| {
        update.push(", status = ").push_bind(status.as_str());
    };
    match decoded {
        DownloadEvent::Queued { .. } => {}
        DownloadEvent::Started { .. } => {
            // A new attempt: its items replace the last attempt's (as in `downloads`).
            status(&mut update, DownloadStatus::Running);
            update.push(", bytes = 0, items = 0, finished_at = NULL");
        }
        DownloadEvent::ItemCompleted { bytes, .. } => {
            update
                .push(", items = items + 1, bytes = bytes + ")
                .push_bind(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        DownloadEvent::Completed { .. } => {
            status(&mut update, DownloadStatus::Completed);
            update.push(", finished_at = ").push_bind(time);
        }
        DownloadEvent::Failed { .. } => {
            status(&mut update, DownloadStatus::Failed);
            update.push(", finished_at = ").push_bind(time);
        }
        DownloadEvent::Cancelled { .. } => {
            status(&mut update, DownloadStatus::Cancelled);
            update.push(", finished_at = ").push_bind(time);
        }
        DownloadEvent::Retried { .. } => status(&mut update, DownloadStatus::Queued),
        // Only the version moves (the row stays in step with the aggregate).
        DownloadEvent::LibraryScanRequested { .. } | DownloadEvent::LibraryScanFailed { .. } => {}
    }
    finish_row_update(update, id, sequence, tx).await?;
    Ok(())
}

/// Time from submitted to available, over the requests that became available.
#[derive(Debug, Clone, Copy, PartialEq, Default, FromRow)]
pub struct TimeToAvailable {
    /// The median, in seconds (`None` without samples).
    pub median_seconds: Option<f64>,
    /// The 90th percentile, in seconds (`None` without samples).
    pub p90_seconds: Option<f64>,
    /// How many requests it is computed over.
    pub samples: i64,
}

/// One UTC day of the per-day series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct DayCount {
    /// The UTC day.
    pub day: NaiveDate,
    /// Requests submitted that day.
    pub requests: i64,
    /// Requests that became available that day.
    pub available: i64,
    /// Downloads queued that day.
    pub downloads: i64,
    /// Downloads completed that day.
    pub downloads_completed: i64,
}

/// One row of the top-requesters list.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Requester {
    /// The user id.
    pub user_id: String,
    /// The username, when the `users` read model knows it.
    pub username: Option<String>,
    /// Requests submitted, all time.
    pub requests: i64,
}

/// Download totals of one status.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DownloadStatusCount {
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Downloads.
    pub count: i64,
    /// Bytes of their current attempts' files.
    pub bytes: i64,
    /// Files of their current attempts.
    pub items: i64,
}

/// Everything the dashboard shows that comes from this read model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Requests by wire status (only statuses with requests).
    pub requests_by_status: Vec<(String, i64)>,
    /// Requests by media type (`movie`, `tv`).
    pub requests_by_media_type: Vec<(String, i64)>,
    /// Time from submitted to available.
    pub time_to_available: TimeToAvailable,
    /// The last [`SERIES_DAYS`] UTC days, oldest first, today last, zero-filled.
    pub per_day: Vec<DayCount>,
    /// Downloads by status (only statuses with downloads).
    pub downloads_by_status: Vec<DownloadStatusCount>,
    /// The [`TOP_REQUESTERS`] users with the most requests (only when asked).
    pub top_requesters: Option<Vec<Requester>>,
    /// When the summary was computed (the database's clock).
    pub generated_at: Option<DateTime<Utc>>,
}

/// Computes the dashboard from the read model: everyone's (`requested_by` `None`) or one
/// user's slice, with the top requesters when `with_top_requesters`.
///
/// Run it in one transaction (ideally `REPEATABLE READ`) so every figure is of one moment.
///
/// # Errors
/// The database error.
pub async fn summary(
    db: &mut PgConnection,
    requested_by: Option<&str>,
    with_top_requesters: bool,
) -> Result<Summary, sqlx::Error> {
    let requests_by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM dashboard_requests
         WHERE ($1::text IS NULL OR requested_by = $1)
         GROUP BY status ORDER BY status",
    )
    .bind(requested_by)
    .fetch_all(&mut *db)
    .await?;
    let requests_by_media_type: Vec<(String, i64)> = sqlx::query_as(
        "SELECT media_type, count(*) FROM dashboard_requests
         WHERE ($1::text IS NULL OR requested_by = $1)
         GROUP BY media_type ORDER BY media_type",
    )
    .bind(requested_by)
    .fetch_all(&mut *db)
    .await?;
    let time_to_available: TimeToAvailable = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds,
                count(*) AS samples
         FROM (SELECT extract(epoch FROM available_at - submitted_at)::float8 AS seconds
               FROM dashboard_requests
               WHERE available_at IS NOT NULL AND ($1::text IS NULL OR requested_by = $1)) t",
    )
    .bind(requested_by)
    .fetch_one(&mut *db)
    .await?;
    let per_day: Vec<DayCount> = sqlx::query_as(
        "WITH bounds AS (
             SELECT (now() AT TIME ZONE 'UTC')::date - ($2::int - 1) AS first_day,
                    (now() AT TIME ZONE 'UTC')::date AS last_day
         ), since AS (
             SELECT first_day::timestamp AT TIME ZONE 'UTC' AS at FROM bounds
         ), days AS (
             SELECT d::date AS day
             FROM bounds,
                  generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') AS d
         ), submitted AS (
             SELECT (submitted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
             FROM dashboard_requests, since
             WHERE submitted_at >= since.at AND ($1::text IS NULL OR requested_by = $1)
             GROUP BY 1
         ), available AS (
             SELECT (available_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
             FROM dashboard_requests, since
             WHERE available_at >= since.at AND ($1::text IS NULL OR requested_by = $1)
             GROUP BY 1
         ), queued AS (
             SELECT (queued_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
             FROM dashboard_downloads, since
             WHERE queued_at >= since.at AND ($1::text IS NULL OR requested_by = $1)
             GROUP BY 1
         ), completed AS (
             SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
             FROM dashboard_downloads, since
             WHERE status = 'completed' AND finished_at >= since.at
               AND ($1::text IS NULL OR requested_by = $1)
             GROUP BY 1
         )
         SELECT days.day,
                COALESCE(submitted.n, 0) AS requests,
                COALESCE(available.n, 0) AS available,
                COALESCE(queued.n, 0) AS downloads,
                COALESCE(completed.n, 0) AS downloads_completed
         FROM days
         LEFT JOIN submitted USING (day)
         LEFT JOIN available USING (day)
         LEFT JOIN queued USING (day)
         LEFT JOIN completed USING (day)
         ORDER BY days.day",
    )
    .bind(requested_by)
    .bind(SERIES_DAYS)
    .fetch_all(&mut *db)
    .await?;
    let downloads_by_status: Vec<DownloadStatusCount> = sqlx::query_as(
        "SELECT status, count(*) AS count, COALESCE(sum(bytes), 0)::bigint AS bytes,
                COALESCE(sum(items), 0)::bigint AS items
         FROM dashboard_downloads
         WHERE ($1::text IS NULL OR requested_by = $1)
         GROUP BY status ORDER BY status",
    )
    .bind(requested_by)
    .fetch_all(&mut *db)
    .await?;
    let top_requesters = if with_top_requesters {
        // Usernames from the `users` read model (another projection: it may lag, so LEFT).
        Some(
            sqlx::query_as(
                "SELECT r.requested_by AS user_id, u.username, count(*) AS requests
                 FROM dashboard_requests r
                 LEFT JOIN users u ON u.id::text = r.requested_by
                 WHERE ($1::text IS NULL OR r.requested_by = $1)
                 GROUP BY r.requested_by, u.username
                 ORDER BY requests DESC, min(r.submitted_at), r.requested_by
                 LIMIT $2",
            )
            .bind(requested_by)
            .bind(TOP_REQUESTERS)
            .fetch_all(&mut *db)
            .await?,
        )
    } else {
        None
    };
    let generated_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *db)
        .await?;
    Ok(Summary {
        requests_by_status,
        requests_by_media_type,
        time_to_available,
        per_day,
        downloads_by_status,
        top_requesters,
        generated_at: Some(generated_at),
    })
}
