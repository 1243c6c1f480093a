//! The global event log: every event of every aggregate, in commit-safe order.
//!
//! Identity values (`global_position`) are handed out at insert but become visible at commit,
//! so a reader asking for `global_position > n` could skip an event whose transaction commits
//! late. Readers therefore page in `(tx_id, global_position)` order and only read events of
//! transactions older than the oldest one still running
//! (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`): everything behind that fence is
//! committed or rolled back, so nothing can appear behind the cursor later (docs/design.md §2).
//! NOTIFY on `medianest_events` is only a wake-up; readers also poll. The readers of one
//! database in a process share one LISTEN connection ([`LogTail`]'s wake-ups).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgExecutor, PgPool};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::StoreError;

mod window;

/// The NOTIFY channel of the `events` trigger.
pub const NOTIFY_CHANNEL: &str = "medianest_events";

/// A reader's position in the global log: the last `(tx_id, global_position)` it has read.
/// `Cursor::default()` is the start of the log.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor {
    /// The `xid8` of the writing transaction, as a number.
    pub tx_id: i64,
    /// The `global_position` of the event.
    pub position: i64,
}

/// One row of the `events` table with its place in the global log.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize, Deserialize)]
pub struct StoredEvent {
    /// `global_position`: unique, increasing in insert order (not commit order).
    pub position: i64,
    /// The writing transaction's id.
    pub tx_id: i64,
    /// `media_request`, `download`, …
    pub aggregate_type: String,
    /// The aggregate's id (a UUID as text).
    pub aggregate_id: String,
    /// The aggregate's version after this event, from 1.
    pub sequence: i64,
    /// `snake_case` event type.
    pub event_type: String,
    /// Shape version, e.g. `1.0`.
    pub event_version: String,
    /// `{"<event_type>": {...}}` as stored.
    pub payload: Value,
    /// See [`crate::EventMetadata`].
    pub metadata: Value,
    /// Commit-time clock of the writer.
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The event's cursor in the global log.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tx_id: self.tx_id,
            position: self.position,
        }
    }

    /// The event's stable id, `<aggregate_type>:<aggregate_id>:<sequence>`: the CloudEvents
    /// `id`, the `Nats-Msg-Id` and the causation id of what it triggers.
    pub fn event_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }

    /// A metadata value (`correlation_id`, `actor`, …).
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

/// The columns of a [`StoredEvent`]. The alias `tx_id` (a `bigint`) shadows the column (an
/// `xid8`) in `ORDER BY`, where an output name wins: queries order by `events.tx_id,
/// events.global_position`, which the index `events_tx_position_idx` serves; ordered by the
/// alias, every read sorted the rest of the log (measured: 90 ms per page at 100,000 events).
const COLUMNS: &str = "global_position AS position, tx_id::text::bigint AS tx_id, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// Reads up to `limit` committed events after `after`, in log order, optionally of one
/// aggregate type.
///
/// # Errors
/// The database error.
pub async fn read_after<'e>(
    db: impl PgExecutor<'e>,
    after: Cursor,
    limit: i64,
    aggregate_type: Option<&str>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let types: Vec<String> = aggregate_type.into_iter().map(str::to_string).collect();
    read_after_types(db, after, limit, &types).await
}

/// Reads up to `limit` committed events after `after`, in log order, of the given aggregate
/// types (all types when `aggregate_types` is empty).
///
/// # Errors
/// The database error.
pub async fn read_after_types<'e>(
    db: impl PgExecutor<'e>,
    after: Cursor,
    limit: i64,
    aggregate_types: &[String],
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE (tx_id, global_position) > ($1::bigint::text::xid8, $2)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
            AND (cardinality($4::text[]) = 0 OR aggregate_type = ANY($4))
          ORDER BY events.tx_id, events.global_position
          LIMIT $3"
    );
    Ok(sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(after.tx_id)
        .bind(after.position)
        .bind(limit)
        .bind(aggregate_types)
        .fetch_all(db)
        .await?)
}

/// Committed events in the global-position range `from..=to` (`to` open when `None`), in log
/// order, optionally of one aggregate type, at most `limit` after `after` (page with the
/// cursor of the last one returned).
///
/// # Errors
/// The database error.
pub async fn read_range<'e>(
    db: impl PgExecutor<'e>,
    from: i64,
    to: Option<i64>,
    aggregate_type: Option<&str>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE global_position >= $1 AND ($2::bigint IS NULL OR global_position <= $2)
            AND ($3::text IS NULL OR aggregate_type = $3)
            AND (tx_id, global_position) > ($4::bigint::text::xid8, $5)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.tx_id, events.global_position
          LIMIT $6"
    );
    Ok(sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(from)
        .bind(to)
        .bind(aggregate_type)
        .bind(after.tx_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// The last `limit` committed events (in log order), optionally of one aggregate type.
///
/// # Errors
/// The database error.
pub async fn read_last<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
    aggregate_type: Option<&str>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT * FROM (
           SELECT {COLUMNS} FROM events
            WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
              AND ($2::text IS NULL OR aggregate_type = $2)
            ORDER BY events.tx_id DESC, events.global_position DESC
            LIMIT $1) last
          ORDER BY tx_id, position"
    );
    Ok(sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(limit)
        .bind(aggregate_type)
        .fetch_all(db)
        .await?)
}

/// How far a reader at `after` is behind the log: the number of committed events after it,
/// and the age in seconds (by the database's clock) of the oldest of them (0 when it is at
/// the head).
///
/// # Errors
/// The database error.
pub async fn backlog<'e>(db: impl PgExecutor<'e>, after: Cursor) -> Result<(i64, f64), StoreError> {
    Ok(sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(recorded_at))::float8, 0)
           FROM events
          WHERE (tx_id, global_position) > ($1::bigint::text::xid8, $2)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .bind(after.tx_id)
    .bind(after.position)
    .fetch_one(db)
    .await?)
}

/// The number of events in the log between two cursors (`after` excluded, `upto` included).
///
/// # Errors
/// The database error.
pub async fn count_between<'e>(
    db: impl PgExecutor<'e>,
    after: Cursor,
    upto: Cursor,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE (tx_id, global_position) > ($1::bigint::text::xid8, $2)
            AND (tx_id, global_position) <= ($3::bigint::text::xid8, $4)",
    )
    .bind(after.tx_id)
    .bind(after.position)
    .bind(upto.tx_id)
    .bind(upto.position)
    .fetch_one(db)
    .await?)
}

/// The events of one aggregate, in sequence order (its history).
///
/// # Errors
/// The database error.
pub async fn aggregate_events<'e>(
    db: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    );
    Ok(sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(db)
        .await?)
}

/// The cursor of the event at `position`, if there is one.
///
/// # Errors
/// The database error.
pub async fn cursor_of<'e>(
    db: impl PgExecutor<'e>,
    position: i64,
) -> Result<Option<Cursor>, StoreError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events WHERE global_position = $1",
    )
    .bind(position)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(tx_id, position)| Cursor { tx_id, position }))
}

/// The highest `global_position` written so far (0 for an empty log).
///
/// # Errors
/// The database error.
pub async fn head_position<'e>(db: impl PgExecutor<'e>) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
            .fetch_one(db)
            .await?,
    )
}

/// A follower of the global log: returns batches after its cursor, waiting for NOTIFY or the
/// poll interval when there is nothing new.
///
/// A tail at the head of the log reads at most once per [`LogTail::pace`] (default
/// [`PACE`]): under a steady stream of commits each read takes what arrived meanwhile,
/// instead of one event per commit. Behind the head (its last batch was full) it reads on
/// at once, and after a quiet spell its first read is not delayed.
///
/// The tails of one database in a process (but those of one aggregate type) share the
/// recent end of the log: what one of them read, the others take from memory
/// (`log/window.rs`).
pub struct LogTail {
    pool: PgPool,
    wakeups: Option<Wakeups>,
    cursor: Cursor,
    batch_size: i64,
    poll_interval: Duration,
    aggregate_type: Option<String>,
    pace: Duration,
    /// When the last read began, and whether it reached the head (a batch not full).
    last_read: Option<(Instant, bool)>,
    /// The recent end of the log this process's tails share (taken at the first read).
    window: Option<Arc<window::Window>>,
}

/// The least time between two reads of a tail at the head of the log.
///
/// Every commit wakes every tail (six projections, the relay, the sagas' feeds, the live
/// stream). Read at once, each commit costs each of them a read and a write transaction of
/// one event; at 300 commands/s that was most of PostgreSQL's work (docs/benchmarks.md). At
/// 10 ms, a tail reads at most 100 times a second whatever the commit rate, and an event
/// waits at most 10 ms more before its read models and subscribers see it.
pub const PACE: Duration = Duration::from_millis(10);

impl LogTail {
    /// A tail that starts after `cursor`.
    pub fn new(pool: PgPool, cursor: Cursor) -> Self {
        Self {
            pool,
            wakeups: None,
            cursor,
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            aggregate_type: None,
            pace: PACE,
            last_read: None,
            window: None,
        }
    }

    /// The least time between two reads at the head of the log (default [`PACE`]; zero reads
    /// at every wake-up).
    pub fn pace(mut self, pace: Duration) -> Self {
        self.pace = pace;
        self
    }

    /// At most this many events per batch (default 500).
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long to wait without a notification before reading again (default 500 ms).
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Only events of this aggregate type.
    pub fn aggregate_type(mut self, aggregate_type: Option<String>) -> Self {
        self.aggregate_type = aggregate_type;
        self
    }

    /// The cursor after the last batch returned.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Reads the next batch without waiting; empty when the reader is at the head.
    ///
    /// # Errors
    /// The database error.
    pub async fn poll(&mut self) -> Result<Vec<StoredEvent>, StoreError> {
        // What was notified before this read is covered by it.
        if let Some(wakeups) = self.wakeups.as_mut() {
            wakeups.seen.borrow_and_update();
        }
        let started = Instant::now();
        let (batch, at_head) = match self.aggregate_type.as_deref() {
            // Every type: the events this process's tails share (`window`).
            None => {
                let window = self
                    .window
                    .get_or_insert_with(|| window::Window::of(&self.pool));
                let limit = usize::try_from(self.batch_size).unwrap_or(usize::MAX);
                let read = window.read(&self.pool, self.cursor, limit).await?;
                (read.events, read.at_head)
            }
            Some(aggregate_type) => {
                let batch = read_after(
                    &self.pool,
                    self.cursor,
                    self.batch_size,
                    Some(aggregate_type),
                )
                .await?;
                let at_head = i64::try_from(batch.len()).unwrap_or(i64::MAX) < self.batch_size;
                (batch, at_head)
            }
        };
        if let Some(last) = batch.last() {
            self.cursor = last.cursor();
        }
        self.last_read = Some((started, at_head));
        Ok(batch)
    }

    /// The next non-empty batch, waiting as long as it takes.
    ///
    /// # Errors
    /// The database error.
    pub async fn next_batch(&mut self) -> Result<Vec<StoredEvent>, StoreError> {
        loop {
            if let Some((read, true)) = self.last_read {
                tokio::time::sleep_until((read + self.pace).into()).await;
            }
            let batch = self.poll().await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            self.wait().await;
        }
    }

    /// Waits for a notification after the last read, or the poll interval, whichever comes
    /// first.
    async fn wait(&mut self) {
        let wakeups = self.wakeups.get_or_insert_with(|| Wakeups::of(&self.pool));
        match tokio::time::timeout(self.poll_interval, wakeups.seen.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            // The listening task ended (its pool was closed): poll this once, and take a
            // live listener at the next wait.
            Ok(Err(_)) => {
                self.wakeups = None;
                tokio::time::sleep(self.poll_interval).await;
            }
        }
    }
}

/// A reader's share of its database's LISTEN connection: a counter of wake-ups, raised after
/// each batch of notifications, that the reader compares with the last one it saw.
///
/// Every committed event notifies; PostgreSQL wakes each listening connection for each
/// notification, and each reader then reads the log. With one LISTEN connection per reader
/// (six projections, the relay and the live stream in `serve`), the listeners took about 8 %
/// of the machine's CPU under 700 commands/s (measured with `perf`, docs/benchmarks.md); one
/// per database and process wakes PostgreSQL once per commit, and each reader reads once per
/// wake-up however many events it brought.
struct Wakeups {
    seen: watch::Receiver<u64>,
    _listener: Arc<Listener>,
}

/// The task that holds a database's LISTEN connection; it stops when its last reader goes.
struct Listener {
    task: AbortHandle,
    counter: watch::Receiver<u64>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What names `pool`'s database among those this process uses: host, port, database, user.
pub(crate) fn database_key(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "{}:{}/{}@{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default(),
        options.get_username()
    )
}

/// The listening task of each database (by host, port, database and user), while a reader
/// of it exists.
static LISTENERS: PerDatabase<Listener> = LazyLock::new(Default::default);

/// What this process keeps one of per database (by [`database_key`]) while something holds
/// it: the LISTEN task, the window of the log's recent end.
type PerDatabase<T> = LazyLock<Mutex<HashMap<String, Weak<T>>>>;

/// `registry`'s entry for `pool`'s database when one is held and `live`, else a new one
/// from `make`, kept in its place (entries no one holds any more are dropped).
fn per_database<T>(
    registry: &PerDatabase<T>,
    pool: &PgPool,
    live: impl Fn(&T) -> bool,
    make: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    let key = database_key(pool);
    let mut entries = registry.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(held) = entries
        .get(&key)
        .and_then(Weak::upgrade)
        .filter(|held| live(held))
    {
        return held;
    }
    let made = make();
    entries.retain(|_, entry| entry.strong_count() > 0);
    entries.insert(key, Arc::downgrade(&made));
    made
}

impl Wakeups {
    /// The wake-ups of `pool`'s database, starting its listening task if none runs. A
    /// finished one (its pool closed) is replaced; its readers move on at their next wait.
    fn of(pool: &PgPool) -> Self {
        let listener = per_database(
            &LISTENERS,
            pool,
            |listener| !listener.task.is_finished(),
            || {
                let (raise, counter) = watch::channel(0);
                let task = tokio::spawn(listen(pool.clone(), raise)).abort_handle();
                Arc::new(Listener { task, counter })
            },
        );
        Self {
            seen: listener.counter.clone(),
            _listener: listener,
        }
    }
}

/// LISTENs on [`NOTIFY_CHANNEL`] and raises the counter once per batch of notifications
/// received (and after each reconnection, as notifications may have been missed), until the
/// pool closes or the task is aborted.
async fn listen(pool: PgPool, raise: watch::Sender<u64>) {
    while !pool.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::debug!(%error, "no LISTEN connection; the log's readers poll");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::debug!(%error, "LISTEN failed; the log's readers poll");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        raise.send_modify(|n| *n = n.wrapping_add(1));
        while let Ok(Some(_)) = listener.try_recv().await {
            while listener.next_buffered().is_some() {}
            raise.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
