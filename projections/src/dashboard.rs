//! The `dashboard` read model (docs/design.md §5; issues 5 and 13): counts by status and day, time
//! to available, downloads, top requesters.
//!
//! The projection keeps one slim row per media request (`dashboard_requests`: requester,
//! media type, status, when submitted and when it became available) and per download
//! (`dashboard_downloads`: requester, status, when queued and finished, bytes and files of
//! the current attempt), and beside them, per requester, the figures the dashboard shows,
//! pre-aggregated: counts and totals by status and media type (`dashboard_totals`), per UTC
//! day (`dashboard_days`), a histogram of the time to available
//! (`dashboard_available_times`) and requests per requester (`dashboard_requesters`). Each
//! event that changes a slim row moves the figures in the same transaction (the update
//! answers the row's values before and after), so [`summary`] reads a few rows per user and
//! its cost does not grow with the history.
//!
//! Rows carry the aggregate version, as `requests` (an event only updates a row below its
//! sequence, and a skipped update moves no figure), and every time is the event's time,
//! never `now()`, so a replay builds identical rows. Statuses follow the `requests` and
//! `downloads` read models exactly.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use medianest_domain::download::{DownloadEvent, DownloadStatus};
use medianest_domain::media_request::{MediaRequestEvent, RequestStatus};
use medianest_domain::public::{download_event, media_request_event};
use medianest_nats::FeedEvent;
use sqlx::{FromRow, PgConnection, QueryBuilder};

use crate::answers::Changes;
use crate::runner::{decode_batch, public_event, status_after, BatchRows};
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "dashboard";

/// Days in the per-day series, today (UTC) included.
pub const SERIES_DAYS: i32 = 30;

/// Rows of the top-requesters list.
pub const TOP_REQUESTERS: i64 = 10;

/// The tables of the read model.
pub const TABLES: [&str; 6] = [
    "dashboard_requests",
    "dashboard_downloads",
    "dashboard_totals",
    "dashboard_days",
    "dashboard_available_times",
    "dashboard_requesters",
];

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
        &TABLES
    }

    /// Rows changed: cached dashboards are stale.
    fn committed(&self) {
        CHANGES.mark();
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        decode(event)?;
        self.apply_batch(tx, &[event]).await.map(|_| ())
    }

    /// Folds the batch in memory: the slim rows it touches read in one query each, changed
    /// per event, and written back in one upsert each; the figures they move summed and
    /// written once per table.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&FeedEvent],
    ) -> Result<usize, ProjectionError> {
        let (decoded, skipped) = decode_batch(NAME, events, decode)?;
        let ids = |download: bool| -> Vec<uuid::Uuid> {
            decoded
                .iter()
                .filter(|(_, d)| matches!(d, Decoded::Download(..)) == download)
                .map(|(_, d)| d.id())
                .collect()
        };
        let mut requests: BatchRows<RequestSlim> = BatchRows::read(
            tx,
            "SELECT * FROM dashboard_requests WHERE id = ANY($1)",
            &ids(false),
            |row: &RequestSlim| row.id,
        )
        .await?;
        let mut downloads: BatchRows<DownloadSlim> = BatchRows::read(
            tx,
            "SELECT * FROM dashboard_downloads WHERE id = ANY($1)",
            &ids(true),
            |row: &DownloadSlim| row.id,
        )
        .await?;
        let mut deltas = Deltas::default();
        for (event, d) in decoded {
            match d {
                Decoded::Request(id, e) => {
                    requests.fold(id, |rows| fold_request(rows, id, event, e, &mut deltas));
                }
                Decoded::Download(id, e) => {
                    downloads.fold(id, |rows| fold_download(rows, id, event, e, &mut deltas));
                }
            }
        }
        upsert_requests(tx, &requests.changed()).await?;
        upsert_downloads(tx, &downloads.changed()).await?;
        deltas.flush(tx).await?;
        Ok(skipped)
    }
}

/// An event of either aggregate, decoded from its public form.
enum Decoded {
    Request(uuid::Uuid, MediaRequestEvent),
    Download(uuid::Uuid, DownloadEvent),
}

impl Decoded {
    fn id(&self) -> uuid::Uuid {
        match self {
            Decoded::Request(id, _) | Decoded::Download(id, _) => *id,
        }
    }
}

fn decode(event: &FeedEvent) -> Result<Option<Decoded>, ProjectionError> {
    Ok(match event.aggregate_type() {
        "media_request" => {
            let (id, e) = public_event(event, media_request_event)?;
            Some(Decoded::Request(id, e))
        }
        "download" => {
            let (id, e) = public_event(event, download_event)?;
            Some(Decoded::Download(id, e))
        }
        _ => None,
    })
}

/// A row of `dashboard_requests`.
#[derive(Debug, Clone, FromRow)]
struct RequestSlim {
    id: uuid::Uuid,
    version: i64,
    requested_by: String,
    media_type: String,
    status: String,
    submitted_at: DateTime<Utc>,
    available_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    last_position: i64,
}

/// A row of `dashboard_downloads`.
#[derive(Debug, Clone, FromRow)]
struct DownloadSlim {
    id: uuid::Uuid,
    version: i64,
    requested_by: String,
    status: String,
    queued_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    bytes: i64,
    items: i32,
    updated_at: DateTime<Utc>,
    last_position: i64,
}

/// Applies a media-request event to the rows and the figures; answers whether its row
/// changed. A `submitted` creates the row once; any other event changes a row below its
/// sequence (the second guard, beside the checkpoint).
fn fold_request(
    rows: &mut HashMap<uuid::Uuid, RequestSlim>,
    id: uuid::Uuid,
    event: &FeedEvent,
    decoded: MediaRequestEvent,
    deltas: &mut Deltas,
) -> bool {
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let MediaRequestEvent::Submitted {
        requested_by,
        media,
        ..
    } = decoded
    {
        if rows.contains_key(&id) {
            return false;
        }
        let user = &requested_by.to_string();
        deltas.total(user, "request_status", "pending", (1, 0, 0));
        deltas.total(
            user,
            "request_media_type",
            media.media_type.as_str(),
            (1, 0, 0),
        );
        deltas.day(user, time, Day::Requests);
        deltas.requester(user, time);
        rows.insert(
            id,
            RequestSlim {
                id,
                version: sequence,
                requested_by: user.to_string(),
                media_type: media.media_type.as_str().to_string(),
                status: RequestStatus::Pending.as_str().to_string(),
                submitted_at: time,
                available_at: None,
                updated_at: time,
                last_position: position,
            },
        );
        return true;
    }
    let Some(row) = rows.get_mut(&id).filter(|row| row.version < sequence) else {
        return false;
    };
    let (old_status, old_available_at) = (row.status.clone(), row.available_at);
    if let MediaRequestEvent::Available { .. } = decoded {
        row.available_at = row.available_at.or(Some(time));
    }
    let status = status_after(&row.status, &decoded);
    if let Some(status) = status {
        row.status = status.as_str().to_string();
    }
    row.version = sequence;
    row.updated_at = time;
    row.last_position = position;
    let user = row.requested_by.as_str();
    if old_status != row.status {
        deltas.total(user, "request_status", &old_status, (-1, 0, 0));
        deltas.total(user, "request_status", &row.status, (1, 0, 0));
    }
    if let (None, Some(available_at)) = (old_available_at, row.available_at) {
        deltas.day(user, available_at, Day::Available);
        let seconds = (available_at - row.submitted_at).num_milliseconds() as f64 / 1000.0;
        *deltas
            .times
            .entry((user.to_string(), time_bucket(seconds)))
            .or_default() += 1;
    }
    true
}

/// Applies a download event to the rows and the figures, as [`fold_request`].
fn fold_download(
    rows: &mut HashMap<uuid::Uuid, DownloadSlim>,
    id: uuid::Uuid,
    event: &FeedEvent,
    decoded: DownloadEvent,
    deltas: &mut Deltas,
) -> bool {
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let DownloadEvent::Queued { requested_by, .. } = decoded {
        if rows.contains_key(&id) {
            return false;
        }
        let user = &requested_by.to_string();
        deltas.total(user, "download_status", "queued", (1, 0, 0));
        deltas.day(user, time, Day::Downloads);
        rows.insert(
            id,
            DownloadSlim {
                id,
                version: sequence,
                requested_by: user.to_string(),
                status: DownloadStatus::Queued.as_str().to_string(),
                queued_at: time,
                finished_at: None,
                bytes: 0,
                items: 0,
                updated_at: time,
                last_position: position,
            },
        );
        return true;
    }
    let Some(row) = rows.get_mut(&id).filter(|row| row.version < sequence) else {
        return false;
    };
    let (old_status, old_bytes, old_items) = (row.status.clone(), row.bytes, row.items);
    let finish = |row: &mut DownloadSlim, status: DownloadStatus| {
        row.status = status.as_str().to_string();
        row.finished_at = Some(time);
    };
    match decoded {
        DownloadEvent::Queued { .. } => {}
        DownloadEvent::Started { .. } => {
            // A new attempt: its items replace the last attempt's (as in `downloads`).
            row.status = DownloadStatus::Running.as_str().to_string();
            row.bytes = 0;
            row.items = 0;
            row.finished_at = None;
        }
        DownloadEvent::ItemCompleted { bytes, .. } => {
            row.items += 1;
            row.bytes = row
                .bytes
                .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        DownloadEvent::Completed { .. } => finish(row, DownloadStatus::Completed),
        DownloadEvent::Failed { .. } => finish(row, DownloadStatus::Failed),
        DownloadEvent::Cancelled { .. } => finish(row, DownloadStatus::Cancelled),
        DownloadEvent::Retried { .. } => {
            row.status = DownloadStatus::Queued.as_str().to_string();
        }
        // Only the version moves (the row stays in step with the aggregate).
        DownloadEvent::LibraryScanRequested { .. } | DownloadEvent::LibraryScanFailed { .. } => {}
    }
    row.version = sequence;
    row.updated_at = time;
    row.last_position = position;
    let user = row.requested_by.as_str();
    deltas.total(
        user,
        "download_status",
        &old_status,
        (-1, -old_bytes, -i64::from(old_items)),
    );
    deltas.total(
        user,
        "download_status",
        &row.status,
        (1, row.bytes, i64::from(row.items)),
    );
    if old_status != "completed" && row.status == "completed" {
        deltas.day(
            user,
            row.finished_at.unwrap_or(time),
            Day::DownloadsCompleted,
        );
    }
    true
}

/// Writes request rows (whole) in one statement.
async fn upsert_requests(tx: &mut PgConnection, rows: &[&RequestSlim]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    macro_rules! column {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO dashboard_requests (id, version, requested_by, media_type, status,
             submitted_at, available_at, updated_at, last_position)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[],
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::int8[])
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
             available_at = EXCLUDED.available_at, updated_at = EXCLUDED.updated_at,
             last_position = EXCLUDED.last_position",
    )
    .bind(column!(id))
    .bind(column!(version))
    .bind(column!(requested_by))
    .bind(column!(media_type))
    .bind(column!(status))
    .bind(column!(submitted_at))
    .bind(column!(available_at))
    .bind(column!(updated_at))
    .bind(column!(last_position))
    .execute(tx)
    .await?;
    Ok(())
}

/// Writes download rows (whole) in one statement.
async fn upsert_downloads(
    tx: &mut PgConnection,
    rows: &[&DownloadSlim],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    macro_rules! column {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO dashboard_downloads (id, version, requested_by, status, queued_at,
             finished_at, bytes, items, updated_at, last_position)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[],
             $5::timestamptz[], $6::timestamptz[], $7::int8[], $8::int4[], $9::timestamptz[],
             $10::int8[])
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
             finished_at = EXCLUDED.finished_at, bytes = EXCLUDED.bytes, items = EXCLUDED.items,
             updated_at = EXCLUDED.updated_at, last_position = EXCLUDED.last_position",
    )
    .bind(column!(id))
    .bind(column!(version))
    .bind(column!(requested_by))
    .bind(column!(status))
    .bind(column!(queued_at))
    .bind(column!(finished_at))
    .bind(column!(bytes))
    .bind(column!(items))
    .bind(column!(updated_at))
    .bind(column!(last_position))
    .execute(tx)
    .await?;
    Ok(())
}

/// The columns of `dashboard_days`, in the order of [`Deltas::days`].
#[derive(Clone, Copy)]
enum Day {
    Requests = 0,
    Available = 1,
    Downloads = 2,
    DownloadsCompleted = 3,
}

/// What a batch of events changes in the pre-aggregated figures, summed per row.
#[derive(Default)]
struct Deltas {
    /// `(requester, kind, key)` → `(count, bytes, items)`.
    totals: HashMap<(String, &'static str, String), (i64, i64, i64)>,
    /// `(requester, day)` → added to requests, available, downloads, downloads completed.
    days: HashMap<(String, NaiveDate), [i64; 4]>,
    /// `(requester, bucket)` → added.
    times: HashMap<(String, i32), i64>,
    /// requester → (requests added, earliest submission).
    requesters: HashMap<String, (i64, DateTime<Utc>)>,
}

impl Deltas {
    fn total(&mut self, user: &str, kind: &'static str, key: &str, delta: (i64, i64, i64)) {
        let entry = self
            .totals
            .entry((user.to_string(), kind, key.to_string()))
            .or_default();
        entry.0 += delta.0;
        entry.1 += delta.1;
        entry.2 += delta.2;
    }

    fn day(&mut self, user: &str, at: DateTime<Utc>, column: Day) {
        self.days
            .entry((user.to_string(), at.date_naive()))
            .or_default()[column as usize] += 1;
    }

    fn requester(&mut self, user: &str, at: DateTime<Utc>) {
        let entry = self.requesters.entry(user.to_string()).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
    }

    /// Writes the sums: one upsert per table (every key once, so no row is hit twice).
    async fn flush(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.totals.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO dashboard_totals (requested_by, kind, key, count, bytes, items) ",
            );
            insert.push_values(
                self.totals,
                |mut row, ((user, kind, key), (count, bytes, items))| {
                    row.push_bind(user)
                        .push_bind(kind)
                        .push_bind(key)
                        .push_bind(count)
                        .push_bind(bytes)
                        .push_bind(items);
                },
            );
            insert.push(
                " ON CONFLICT (requested_by, kind, key) DO UPDATE SET
                     count = dashboard_totals.count + EXCLUDED.count,
                     bytes = dashboard_totals.bytes + EXCLUDED.bytes,
                     items = dashboard_totals.items + EXCLUDED.items",
            );
            insert.build().execute(&mut *tx).await?;
        }
        if !self.days.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO dashboard_days (requested_by, day, requests, available, downloads,
                     downloads_completed) ",
            );
            insert.push_values(self.days, |mut row, ((user, day), added)| {
                row.push_bind(user).push_bind(day);
                for n in added {
                    row.push_bind(n);
                }
            });
            insert.push(
                " ON CONFLICT (requested_by, day) DO UPDATE SET
                     requests = dashboard_days.requests + EXCLUDED.requests,
                     available = dashboard_days.available + EXCLUDED.available,
                     downloads = dashboard_days.downloads + EXCLUDED.downloads,
                     downloads_completed =
                         dashboard_days.downloads_completed + EXCLUDED.downloads_completed",
            );
            insert.build().execute(&mut *tx).await?;
        }
        if !self.times.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO dashboard_available_times (requested_by, bucket, count) ",
            );
            insert.push_values(self.times, |mut row, ((user, bucket), n)| {
                row.push_bind(user).push_bind(bucket).push_bind(n);
            });
            insert.push(
                " ON CONFLICT (requested_by, bucket) DO UPDATE SET
                     count = dashboard_available_times.count + EXCLUDED.count",
            );
            insert.build().execute(&mut *tx).await?;
        }
        if !self.requesters.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO dashboard_requesters (requested_by, requests, first_at) ",
            );
            insert.push_values(self.requesters, |mut row, (user, (n, first))| {
                row.push_bind(user).push_bind(n).push_bind(first);
            });
            insert.push(
                " ON CONFLICT (requested_by) DO UPDATE SET
                     requests = dashboard_requesters.requests + EXCLUDED.requests,
                     first_at = LEAST(dashboard_requesters.first_at, EXCLUDED.first_at)",
            );
            insert.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// The histogram bucket of a time to available of `seconds`: `floor(4 · log2(seconds + 1))`,
/// a quarter octave (the migration's backfill uses the same formula).
pub fn time_bucket(seconds: f64) -> i32 {
    (4.0 * (seconds.max(0.0) + 1.0).log2()).floor() as i32
}

/// The duration a bucket stands for: its geometric middle, in seconds.
pub fn bucket_seconds(bucket: i32) -> f64 {
    (2f64.powf((f64::from(bucket) + 0.5) / 4.0) - 1.0).max(0.0)
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

/// Changes of the dashboard's rows (and of the `users` read model, whose names it shows) in
/// this process.
static CHANGES: Changes = Changes::new();

/// The counter of the dashboard's changes, for caches of what [`summary`] reads
/// ([`crate::answers`]).
pub fn changes() -> &'static Changes {
    &CHANGES
}

/// Reads the dashboard from the pre-aggregated rows: everyone's (`requested_by` `None`, the
/// sum over the household's users) or one user's slice, with the top requesters when
/// `with_top_requesters`. A handful of small queries whatever the history's length; the
/// times to available are within a quarter octave ([`time_bucket`]).
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
    let totals: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT kind, key, sum(count)::bigint, sum(bytes)::bigint, sum(items)::bigint
           FROM dashboard_totals
          WHERE ($1::text IS NULL OR requested_by = $1)
          GROUP BY kind, key HAVING sum(count) > 0
          ORDER BY kind, key",
    )
    .bind(requested_by)
    .fetch_all(&mut *db)
    .await?;
    let of_kind = |wanted: &'static str| {
        totals
            .iter()
            .filter(move |(kind, ..)| kind == wanted)
            .map(|(_, key, count, bytes, items)| (key.clone(), *count, *bytes, *items))
    };
    let requests_by_status = of_kind("request_status")
        .map(|(key, count, ..)| (key, count))
        .collect();
    let requests_by_media_type = of_kind("request_media_type")
        .map(|(key, count, ..)| (key, count))
        .collect();
    let downloads_by_status = of_kind("download_status")
        .map(|(status, count, bytes, items)| DownloadStatusCount {
            status,
            count,
            bytes,
            items,
        })
        .collect();
    let buckets: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT bucket, sum(count)::bigint FROM dashboard_available_times
          WHERE ($1::text IS NULL OR requested_by = $1)
          GROUP BY bucket HAVING sum(count) > 0 ORDER BY bucket",
    )
    .bind(requested_by)
    .fetch_all(&mut *db)
    .await?;
    let per_day: Vec<DayCount> = sqlx::query_as(
        "WITH bounds AS (
             SELECT (now() AT TIME ZONE 'UTC')::date - ($2::int - 1) AS first_day,
                    (now() AT TIME ZONE 'UTC')::date AS last_day
         ), days AS (
             SELECT d::date AS day
             FROM bounds,
                  generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') AS d
         ), counted AS (
             SELECT day, sum(requests) AS requests, sum(available) AS available,
                    sum(downloads) AS downloads, sum(downloads_completed) AS downloads_completed
             FROM dashboard_days, bounds
             WHERE day >= bounds.first_day AND ($1::text IS NULL OR requested_by = $1)
             GROUP BY day
         )
         SELECT days.day,
                COALESCE(counted.requests, 0)::bigint AS requests,
                COALESCE(counted.available, 0)::bigint AS available,
                COALESCE(counted.downloads, 0)::bigint AS downloads,
                COALESCE(counted.downloads_completed, 0)::bigint AS downloads_completed
         FROM days LEFT JOIN counted USING (day)
         ORDER BY days.day",
    )
    .bind(requested_by)
    .bind(SERIES_DAYS)
    .fetch_all(&mut *db)
    .await?;
    let top_requesters = if with_top_requesters {
        // Usernames from the `users` read model (another projection: it may lag, so LEFT).
        Some(
            sqlx::query_as(
                "SELECT r.requested_by AS user_id, u.username, r.requests
                 FROM dashboard_requesters r
                 LEFT JOIN users u ON u.id::text = r.requested_by
                 WHERE ($1::text IS NULL OR r.requested_by = $1) AND r.requests > 0
                 ORDER BY r.requests DESC, r.first_at, r.requested_by
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
        time_to_available: time_to_available(&buckets),
        per_day,
        downloads_by_status,
        top_requesters,
        generated_at: Some(generated_at),
    })
}

/// The median and 90th percentile of a time-to-available histogram (`(bucket, count)` in
/// bucket order): the middle of the bucket holding the sample of that rank, so within a
/// quarter octave of the exact figure.
fn time_to_available(buckets: &[(i32, i64)]) -> TimeToAvailable {
    let samples: i64 = buckets.iter().map(|(_, n)| n).sum();
    let quantile = |q: f64| {
        if samples == 0 {
            return None;
        }
        // The rank percentile_cont would interpolate at, rounded to a sample.
        let rank = (q * (samples - 1) as f64).round() as i64;
        let mut seen = 0;
        buckets.iter().find_map(|(bucket, n)| {
            seen += n;
            (rank < seen).then(|| bucket_seconds(*bucket))
        })
    };
    TimeToAvailable {
        median_seconds: quantile(0.5),
        p90_seconds: quantile(0.9),
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_stands_for_durations_within_a_quarter_octave() {
        for seconds in [0.0, 1.0, 59.0, 3_600.0, 86_400.0, 30.0 * 86_400.0] {
            let middle = bucket_seconds(time_bucket(seconds));
            let (low, high) = ((seconds + 1.0) / 1.19 - 1.0, (seconds + 1.0) * 1.19 - 1.0);
            assert!(
                (low..=high).contains(&middle),
                "{seconds} s → bucket {} → {middle} s",
                time_bucket(seconds)
            );
        }
        assert_eq!(
            time_bucket(-5.0),
            0,
            "a clock running backwards counts as no time"
        );
    }

    #[test]
    fn percentiles_are_read_from_the_histogram_by_rank() {
        assert_eq!(time_to_available(&[]), TimeToAvailable::default());
        let one = time_to_available(&[(time_bucket(3_600.0), 1)]);
        assert_eq!((one.samples, one.median_seconds), (1, one.p90_seconds));
        // Nine quick ones and one slow one: the median is quick, the p90 rank (8.1 → 8) too;
        // with two slow ones the p90 is slow.
        let (quick, slow) = (time_bucket(60.0), time_bucket(86_400.0));
        let nine = time_to_available(&[(quick, 9), (slow, 1)]);
        assert_eq!(nine.median_seconds, Some(bucket_seconds(quick)));
        assert_eq!(nine.p90_seconds, Some(bucket_seconds(quick)));
        let eight = time_to_available(&[(quick, 8), (slow, 2)]);
        assert_eq!(eight.p90_seconds, Some(bucket_seconds(slow)));
        assert_eq!(eight.samples, 10);
    }
}
