//! Replays: rebuilding a projection's read model from the PostgreSQL log into shadow tables
//! and swapping them in atomically (docs/design.md §5; `medianest replay`).
//!
//! A rebuild of projection `p`:
//! 1. takes the advisory lock `replay:<p>` (one replay of a projection at a time;
//!    [`ReplayError::Busy`] otherwise);
//! 2. creates the schema `replay_<p>` with an empty copy of each of `p`'s tables
//!    (`CREATE TABLE replay_<p>.t (LIKE public.t INCLUDING ALL)`), and drops the copies'
//!    secondary indexes (the primary keys and unique constraints the upserts need stay);
//! 3. applies every event of `p`'s aggregate types, in log order, in batches of one
//!    transaction each (the projection's own set-based `apply_batch`), with
//!    `SET LOCAL search_path = replay_<p>, public` so the projection's unqualified SQL writes
//!    the shadow tables; the next batch is read and decoded on another connection meanwhile,
//!    and the batches do not wait for the WAL flush (`synchronous_commit = off`: a crash
//!    loses only shadow tables, which are thrown away). Then the secondary indexes are built,
//!    one sort each. Meanwhile the query API keeps reading, and the live projection keeps
//!    writing, the old tables;
//! 4. swaps (unless it is a dry run), in one transaction: locks the live checkpoint row
//!    (`projection-<p>`; the live runner waits on it), applies what was committed since,
//!    moves the old tables out and the shadow ones into `public`, gives the new tables the
//!    old index names, and sets the checkpoint to the later of the shadow's cursor and the
//!    live one. Every event of `p`'s types behind that checkpoint is in the new tables, and
//!    the live runner skips what the checkpoint covers: no gap, no double count.
//!
//! A dry run never rebuilds past the live checkpoint; holding that checkpoint row, it catches
//! up to it and compares the rebuilt tables with the live ones row by row (`EXCEPT ALL` both
//! ways), so both reflect the same events even while commands arrive; then it drops them.
//!
//! [`bootstrap`] runs a replay for a projection that has never run while the log already has
//! events (a read model added by an upgrade), so it does not start from what JetStream still
//! retains. A crash at any step leaves the live tables as they were: the shadow
//! schema is dropped by the next replay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use medianest_nats::FeedEvent;
use medianest_store::lock::InstanceLock;
use medianest_store::{checkpoint, log, Cursor};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tracing::warn;

use crate::{Projection, ProjectionError};

/// How often the swap tries to lock the tables.
const SWAP_TRIES: u32 = 10;

/// Why a replay failed. Nothing of the live read model has changed in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Another replay of the same projection holds its lock.
    #[error("another replay of {0} is running")]
    Busy(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] medianest_store::StoreError),
    /// The projection could not apply an event for a reason other than an undecodable event.
    #[error("applying {event}: {error}")]
    Apply {
        /// The event's id.
        event: String,
        /// What failed.
        error: ProjectionError,
    },
    /// The live checkpoint is ahead of what the rebuild could read (should not happen: it
    /// would be a gap, so the swap is refused).
    #[error("the live checkpoint {live:?} is past the rebuilt cursor {rebuilt:?}")]
    Behind {
        /// The live checkpoint.
        live: Cursor,
        /// The rebuild's cursor.
        rebuilt: Cursor,
    },
}

/// How a replay runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Events per read and per transaction (default 5000).
    pub batch_size: i64,
    /// Rebuild and compare, but do not swap.
    pub dry_run: bool,
    /// The longest wait for the tables' locks during the swap, per try (default 1 s; ten
    /// tries, with a growing pause between them). Queries that arrive while the swap waits
    /// queue behind it, so this bounds how long readers and the live projection are held up.
    pub lock_timeout: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            dry_run: false,
            lock_timeout: Duration::from_secs(1),
        }
    }
}

/// Progress of a rebuild, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Events read so far.
    pub read: u64,
    /// Events of the projection's aggregate types in the log when the rebuild started.
    pub total: u64,
}

/// One table compared after a dry run (or after a swap, against the retired table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableComparison {
    /// The table.
    pub table: String,
    /// Rows in the live table.
    pub live_rows: i64,
    /// Rows in the rebuilt table.
    pub rebuilt_rows: i64,
    /// Live rows with no identical rebuilt row.
    pub only_live: i64,
    /// Rebuilt rows with no identical live row.
    pub only_rebuilt: i64,
}

impl TableComparison {
    /// Whether both tables hold the same rows.
    pub fn identical(&self) -> bool {
        self.only_live == 0 && self.only_rebuilt == 0
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The projection.
    pub projection: String,
    /// Events read from the log and handed to the projection.
    pub events: u64,
    /// Events skipped as undecodable (logged).
    pub skipped: u64,
    /// The rebuild's cursor at the end.
    pub cursor: Cursor,
    /// Whether the rebuilt tables replaced the live ones.
    pub swapped: bool,
    /// The checkpoint the live projection continues from (after a swap).
    pub checkpoint: Option<Cursor>,
    /// Row-by-row comparison of rebuilt and live tables (dry runs), or of new and retired
    /// tables (swaps: what the replay changed).
    pub tables: Vec<TableComparison>,
    /// Wall-clock time, in seconds.
    pub seconds: f64,
}

impl ReplayReport {
    /// Whether every compared table was identical.
    pub fn identical(&self) -> bool {
        self.tables.iter().all(TableComparison::identical)
    }
}

/// A replay of one projection.
pub struct Replay {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    options: ReplayOptions,
}

impl Replay {
    /// A replay of `projection` on `pool`'s log and read models.
    pub fn new(pool: PgPool, projection: Arc<dyn Projection>, options: ReplayOptions) -> Self {
        Self {
            pool,
            projection,
            options,
        }
    }

    fn shadow_schema(&self) -> String {
        format!("replay_{}", self.projection.name())
    }

    fn retired_schema(&self) -> String {
        format!("replay_{}_retired", self.projection.name())
    }

    fn types(&self) -> Vec<String> {
        self.projection
            .aggregate_types()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    /// Rebuilds the read model; swaps it in unless [`ReplayOptions::dry_run`]. `progress` is
    /// called after every batch.
    ///
    /// # Errors
    /// [`ReplayError`]; the live read model is unchanged by a failed replay.
    pub async fn run(
        &self,
        progress: &(dyn Fn(ReplayProgress) + Send + Sync),
    ) -> Result<ReplayReport, ReplayError> {
        let started = Instant::now();
        let name = self.projection.name();
        let Some(lock) = InstanceLock::try_acquire(&self.pool, &format!("replay:{name}")).await?
        else {
            return Err(ReplayError::Busy(name.to_string()));
        };
        let result = self.rebuild_and_finish(progress, started).await;
        if let Err(error) = self.drop_schemas().await {
            // The outcome stands; the next replay drops what is left.
            warn!(%error, projection = name, "cannot drop the replay's schemas");
        }
        // Unlocked explicitly: closing the connection would free it only once the server
        // notices, and a replay right after would find the projection busy.
        if let Err(error) = lock.release().await {
            warn!(%error, projection = name, "cannot release the replay lock; it goes with its connection");
        }
        result
    }

    async fn rebuild_and_finish(
        &self,
        progress: &(dyn Fn(ReplayProgress) + Send + Sync),
        started: Instant,
    ) -> Result<ReplayReport, ReplayError> {
        self.drop_schemas().await?;
        let deferred = self.create_shadow().await?;
        let total: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
                .bind(self.types())
                .fetch_one(&self.pool)
                .await?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut state = Rebuilt::default();
        // The log is read (and decoded) one batch ahead, on another connection, while the
        // previous batch is applied.
        let (sender, mut batches) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(read_ahead(
            self.pool.clone(),
            Reader {
                types: self.types(),
                batch_size: self.options.batch_size,
            },
            // A dry run compares with the live tables at the live checkpoint, so the rebuild
            // never passes it (it only moves forward, and is caught up to under its lock).
            self.options
                .dry_run
                .then(|| format!("projection-{}", self.projection.name())),
            sender,
        ));
        let applied = async {
            while let Some(batch) = batches.recv().await {
                let mut tx = self.pool.begin().await?;
                // The shadow tables are thrown away if the replay does not finish, so their
                // batches need not wait for the WAL flush (the swap does).
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                self.apply_read(&mut tx, &mut state, batch?).await?;
                tx.commit().await?;
                progress(ReplayProgress {
                    read: state.events,
                    total: total.max(state.events),
                });
            }
            Ok::<(), ReplayError>(())
        }
        .await;
        reader.abort();
        applied?;
        self.build_indexes(&deferred).await?;
        let name = self.projection.name();
        if self.options.dry_run {
            let tables = self.compare_at_checkpoint(&mut state).await?;
            return Ok(ReplayReport {
                projection: name.to_string(),
                events: state.events,
                skipped: state.skipped,
                cursor: state.cursor,
                swapped: false,
                checkpoint: None,
                tables,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let mut tries = 0;
        let checkpoint = loop {
            tries += 1;
            match self.swap(&mut state).await {
                Ok(checkpoint) => break checkpoint,
                // 55P03 lock_not_available (lock_timeout): a query held a table. Queries queue
                // behind the swap's lock request, so it gives up quickly and tries again.
                Err(ReplayError::Database(sqlx::Error::Database(e)))
                    if e.code().as_deref() == Some("55P03") && tries < SWAP_TRIES =>
                {
                    warn!(
                        projection = name,
                        "swap could not lock the tables; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200) * tries).await;
                }
                Err(error) => return Err(error),
            }
        };
        progress(ReplayProgress {
            read: state.events,
            total: total.max(state.events),
        });
        // What the replay changed. The swap is committed: a failure here only loses the report.
        let tables = match self.pool.acquire().await {
            Ok(mut conn) => self
                .compare(&mut conn, &self.retired_schema(), "public")
                .await
                .unwrap_or_else(|error| {
                    warn!(%error, projection = name, "cannot compare the swapped tables");
                    Vec::new()
                }),
            Err(error) => {
                warn!(%error, projection = name, "cannot compare the swapped tables");
                Vec::new()
            }
        };
        Ok(ReplayReport {
            projection: name.to_string(),
            events: state.events,
            skipped: state.skipped,
            cursor: state.cursor,
            swapped: true,
            checkpoint: Some(checkpoint),
            tables,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Reads the next batch after the rebuild's cursor (not past `upto`) and applies it to
    /// the shadow tables in `tx`; answers how many events were read.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        state: &mut Rebuilt,
        upto: Option<Cursor>,
    ) -> Result<usize, ReplayError> {
        let reader = Reader {
            types: self.types(),
            batch_size: self.options.batch_size,
        };
        match reader.read(&mut *tx, state.cursor, upto).await? {
            Some(batch) => {
                let read = batch.stored;
                self.apply_read(tx, state, batch).await?;
                Ok(read)
            }
            None => Ok(0),
        }
    }

    /// Applies a batch read from the log to the shadow tables in `tx`, and moves the
    /// rebuild's cursor past it.
    async fn apply_read(
        &self,
        tx: &mut PgConnection,
        state: &mut Rebuilt,
        batch: ReadBatch,
    ) -> Result<(), ReplayError> {
        sqlx::query(&format!(
            "SELECT set_config('search_path', '{}, public', true)",
            self.shadow_schema()
        ))
        .execute(&mut *tx)
        .await?;
        let refs: Vec<&FeedEvent> = batch.events.iter().collect();
        match self.projection.apply_batch(&mut *tx, &refs).await {
            Ok(skipped) => state.skipped += skipped as u64,
            Err(error) => {
                return Err(ReplayError::Apply {
                    event: batch.last_id,
                    error,
                })
            }
        }
        sqlx::query("SELECT set_config('search_path', 'public', true)")
            .execute(&mut *tx)
            .await?;
        state.events += batch.stored as u64;
        state.skipped += batch.skipped;
        state.cursor = batch.last;
        Ok(())
    }

    /// The atomic swap; answers the checkpoint the live projection continues from. On
    /// failure nothing was committed, and `state` is back where it was.
    async fn swap(&self, state: &mut Rebuilt) -> Result<Cursor, ReplayError> {
        let before = *state;
        let result = self.try_swap(state).await;
        if result.is_err() {
            *state = before;
        }
        result
    }

    async fn try_swap(&self, state: &mut Rebuilt) -> Result<Cursor, ReplayError> {
        let name = format!("projection-{}", self.projection.name());
        let (shadow, retired) = (self.shadow_schema(), self.retired_schema());
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            self.options.lock_timeout.as_millis()
        ))
        .execute(&mut *tx)
        .await?;
        // The live runner applies each event holding this row: from here on it waits.
        let live = checkpoint::load_for_update(&mut tx, &name).await?;
        while self.apply_batch(&mut tx, state, None).await? > 0 {}
        if state.cursor < live
            && self
                .reaches_types_after(&mut tx, state.cursor, live)
                .await?
        {
            return Err(ReplayError::Behind {
                live,
                rebuilt: state.cursor,
            });
        }
        sqlx::query(&format!("CREATE SCHEMA {retired}"))
            .execute(&mut *tx)
            .await?;
        for table in self.projection.tables() {
            sqlx::query(&format!("ALTER TABLE public.{table} SET SCHEMA {retired}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("ALTER TABLE {shadow}.{table} SET SCHEMA public"))
                .execute(&mut *tx)
                .await?;
            rename_indexes(&mut tx, table, &retired).await?;
        }
        let continue_from = state.cursor.max(live);
        checkpoint::save(&mut *tx, &name, continue_from).await?;
        tx.commit().await?;
        checkpoint::committed(&self.pool, &name, continue_from);
        self.projection.committed();
        Ok(continue_from)
    }

    /// Whether an event of the projection's types lies in `(after, upto]`.
    async fn reaches_types_after(
        &self,
        tx: &mut PgConnection,
        after: Cursor,
        upto: Cursor,
    ) -> Result<bool, ReplayError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
              WHERE (tx_id, global_position) > ($1::bigint::text::xid8, $2)
                AND (tx_id, global_position) <= ($3::bigint::text::xid8, $4)
                AND aggregate_type = ANY($5))",
        )
        .bind(after.tx_id)
        .bind(after.position)
        .bind(upto.tx_id)
        .bind(upto.position)
        .bind(self.types())
        .fetch_one(&mut *tx)
        .await?)
    }

    /// Creates the shadow tables, like the live ones but without their secondary indexes
    /// (kept: primary keys, unique and exclusion constraints, which the projection's upserts
    /// need); answers the definitions of the indexes left out, built after the load by
    /// [`Replay::build_indexes`] (one sort each instead of an update per row).
    async fn create_shadow(&self) -> Result<Vec<String>, ReplayError> {
        let shadow = self.shadow_schema();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("CREATE SCHEMA {shadow}"))
            .execute(&mut *tx)
            .await?;
        let mut deferred = Vec::new();
        for table in self.projection.tables() {
            sqlx::query(&format!(
                "CREATE TABLE {shadow}.{table} (LIKE public.{table} INCLUDING ALL)"
            ))
            .execute(&mut *tx)
            .await?;
            // The swapped-in table must belong to whoever owns the live one (the role `serve`
            // and the migrations run as), whoever runs the replay.
            let owner: String = sqlx::query_scalar(
                "SELECT tableowner::text FROM pg_tables
                  WHERE schemaname = 'public' AND tablename = $1",
            )
            .bind(table)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "ALTER TABLE {shadow}.{table} OWNER TO \"{}\"",
                owner.replace('"', "\"\"")
            ))
            .execute(&mut *tx)
            .await?;
            let secondary: Vec<(String, String)> = sqlx::query_as(
                "SELECT c.relname::text, pg_get_indexdef(c.oid)
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_class t ON t.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = t.relnamespace
                  WHERE n.nspname = $1 AND t.relname = $2
                    AND NOT i.indisunique AND NOT i.indisprimary
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)",
            )
            .bind(&shadow)
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            for (index, definition) in secondary {
                sqlx::query(&format!(
                    "DROP INDEX {shadow}.\"{}\"",
                    index.replace('"', "\"\"")
                ))
                .execute(&mut *tx)
                .await?;
                deferred.push(definition);
            }
        }
        tx.commit().await?;
        Ok(deferred)
    }

    /// Builds the secondary indexes [`Replay::create_shadow`] left out (their definitions
    /// name the shadow schema), after the load and before the swap.
    async fn build_indexes(&self, definitions: &[String]) -> Result<(), ReplayError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        for definition in definitions {
            sqlx::query(definition).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn drop_schemas(&self) -> Result<(), ReplayError> {
        for schema in [self.shadow_schema(), self.retired_schema()] {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Catches the shadow tables up to the live checkpoint while holding it (the live
    /// projection waits), so both sides reflect the same events, and compares them; the
    /// catch-up is rolled back.
    async fn compare_at_checkpoint(
        &self,
        state: &mut Rebuilt,
    ) -> Result<Vec<TableComparison>, ReplayError> {
        let name = format!("projection-{}", self.projection.name());
        let mut tx = self.pool.begin().await?;
        let live = checkpoint::load_for_update(&mut tx, &name).await?;
        while self.apply_batch(&mut tx, state, Some(live)).await? > 0 {}
        let tables = self
            .compare(&mut tx, "public", &self.shadow_schema())
            .await?;
        tx.rollback().await?;
        Ok(tables)
    }

    /// Compares each table of `left` (reported as live) with the same table in `right`
    /// (reported as rebuilt), row by row.
    async fn compare(
        &self,
        db: &mut PgConnection,
        left: &str,
        right: &str,
    ) -> Result<Vec<TableComparison>, ReplayError> {
        let mut tables = Vec::new();
        for table in self.projection.tables() {
            let (live_rows, rebuilt_rows, only_live, only_rebuilt): (i64, i64, i64, i64) =
                sqlx::query_as(&format!(
                    "SELECT (SELECT count(*) FROM {left}.{table}),
                            (SELECT count(*) FROM {right}.{table}),
                            (SELECT count(*) FROM (TABLE {left}.{table}
                                EXCEPT ALL TABLE {right}.{table}) a),
                            (SELECT count(*) FROM (TABLE {right}.{table}
                                EXCEPT ALL TABLE {left}.{table}) b)"
                ))
                .fetch_one(&mut *db)
                .await?;
            tables.push(TableComparison {
                table: table.to_string(),
                live_rows,
                rebuilt_rows,
                only_live,
                only_rebuilt,
            });
        }
        Ok(tables)
    }
}

/// Builds `projection`'s read model from the log when it has never run (no checkpoint) but
/// the log already holds events of its aggregate types: a read model added by an upgrade
/// would otherwise start from what JetStream still retains (30 days). Answers the replay's
/// report, or `None` when there was nothing to do.
///
/// # Errors
/// [`ReplayError`]; [`ReplayError::Busy`] when another process is doing it.
pub async fn bootstrap(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
) -> Result<Option<ReplayReport>, ReplayError> {
    let name = format!("projection-{}", projection.name());
    let started: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM checkpoints WHERE name = $1)")
            .bind(&name)
            .fetch_one(pool)
            .await?;
    if started {
        return Ok(None);
    }
    let types: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let history: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = ANY($1))")
            .bind(types)
            .fetch_one(pool)
            .await?;
    if !history {
        return Ok(None);
    }
    Replay::new(pool.clone(), projection, ReplayOptions::default())
        .run(&|_| {})
        .await
        .map(Some)
}

/// Batches read ahead of the one being applied.
const READ_AHEAD: usize = 2;

/// A batch of the log, decoded, for the shadow tables.
struct ReadBatch {
    /// The events with a public form, in log order.
    events: Vec<FeedEvent>,
    /// Events read from the log.
    stored: usize,
    /// Events without a public form (passed over, logged).
    skipped: u64,
    /// The cursor of the last event read.
    last: Cursor,
    /// The id of the last event read (for errors).
    last_id: String,
}

/// Reads the projection's events from the log in batches.
struct Reader {
    types: Vec<String>,
    batch_size: i64,
}

impl Reader {
    /// The next batch after `after`, not past `upto`; `None` at the end.
    async fn read(
        &self,
        db: &mut PgConnection,
        after: Cursor,
        upto: Option<Cursor>,
    ) -> Result<Option<ReadBatch>, ReplayError> {
        let mut stored =
            log::read_after_types(&mut *db, after, self.batch_size, &self.types).await?;
        if let Some(upto) = upto {
            stored.retain(|event| event.cursor() <= upto);
        }
        let Some(last) = stored.last() else {
            return Ok(None);
        };
        let mut batch = ReadBatch {
            events: Vec::with_capacity(stored.len()),
            stored: stored.len(),
            skipped: 0,
            last: last.cursor(),
            last_id: last.event_id(),
        };
        for event in stored {
            let position = event.position;
            match FeedEvent::from_owned(event) {
                Ok(event) => batch.events.push(event),
                Err(error) => {
                    warn!(%error, position, "no public form; skipped");
                    batch.skipped += 1;
                }
            }
        }
        Ok(Some(batch))
    }
}

/// Reads batches after the start of the log into `sender` until the end (not past the live
/// checkpoint `upto_checkpoint` when given, read again for each batch), or until the
/// receiver is gone. A failure is sent on and ends the reading.
async fn read_ahead(
    pool: PgPool,
    reader: Reader,
    upto_checkpoint: Option<String>,
    sender: tokio::sync::mpsc::Sender<Result<ReadBatch, ReplayError>>,
) {
    let mut after = Cursor::default();
    loop {
        let read = async {
            let mut conn = pool.acquire().await?;
            let upto = match &upto_checkpoint {
                Some(name) => Some(checkpoint::load(&mut *conn, name).await?),
                None => None,
            };
            reader.read(&mut conn, after, upto).await
        }
        .await;
        let batch = match read {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        after = batch.last;
        if sender.send(Ok(batch)).await.is_err() {
            return;
        }
    }
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, Default)]
struct Rebuilt {
    cursor: Cursor,
    events: u64,
    skipped: u64,
}

/// Gives the indexes of `public.<table>` (just swapped in) the names of the matching indexes
/// of `<retired>.<table>` (the migrations' names), matched by definition.
async fn rename_indexes(
    tx: &mut PgConnection,
    table: &str,
    retired: &str,
) -> Result<(), sqlx::Error> {
    // The definition after " USING ", e.g. `btree (status, id DESC)`, plus any predicate.
    let renames: Vec<(String, String)> = sqlx::query_as(
        "WITH defs AS (
           SELECT n.nspname AS schema, c.relname AS name, i.indisunique AS is_unique,
                  split_part(pg_get_indexdef(c.oid), ' USING ', 2) AS def
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE t.relname = $1 AND n.nspname IN ('public', $2))
         SELECT new.name, old.name FROM defs new JOIN defs old
           ON old.def = new.def AND old.is_unique = new.is_unique
          WHERE new.schema = 'public' AND old.schema = $2 AND new.name <> old.name",
    )
    .bind(table)
    .bind(retired)
    .fetch_all(&mut *tx)
    .await?;
    for (new, old) in renames {
        sqlx::query(&format!("ALTER INDEX public.\"{new}\" RENAME TO \"{old}\""))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
