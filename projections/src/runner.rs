//! The checkpointed projection runner.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use medianest_nats::feed::StartAt;
use medianest_nats::{EventFeed, FeedEvent};
use medianest_store::{checkpoint, Cursor};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database failed; the event is applied again later.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The store failed; the event is applied again later.
    #[error("store: {0}")]
    Store(#[from] medianest_store::StoreError),
    /// The event cannot be decoded: it is skipped (and logged), never retried forever.
    #[error("undecodable event {id}: {reason}")]
    Undecodable {
        /// The CloudEvent id.
        id: String,
        /// Why: the decoding error (or a sentence), kept as the source.
        #[source]
        reason: medianest_store::BoxError,
    },
    /// The feed failed.
    #[error("feed: {0}")]
    Feed(#[from] medianest_nats::FeedError),
}

impl ProjectionError {
    /// [`ProjectionError::Undecodable`] for `event`, `reason` being the decoding error (or a
    /// sentence).
    pub fn undecodable(event: &FeedEvent, reason: medianest_store::BoxError) -> Self {
        Self::Undecodable {
            id: event.event.id.clone(),
            reason,
        }
    }
}

/// A read model built from events.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name (`requests`); its consumer and checkpoint are
    /// `projection-<name>`.
    fn name(&self) -> &'static str;

    /// The aggregate types whose events change the read model.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// The tables the projection owns, in the `public` schema. A replay rebuilds them as
    /// shadow copies (`CREATE TABLE … (LIKE … INCLUDING ALL)`) in a schema of its own and
    /// swaps them in; the projection's SQL must therefore name its tables unqualified.
    fn tables(&self) -> &'static [&'static str];

    /// Whether the read model keeps private fields (e-mails, token hashes, IPs), so it must be
    /// fed from the PostgreSQL log (`LogFeed`) rather than the public events on JetStream.
    fn reads_private_fields(&self) -> bool {
        false
    }

    /// Called after the projection's own events committed to its tables (a batch of the
    /// runner, a replay's swap): for caches of the read model in this process. Nothing by
    /// default.
    fn committed(&self) {}

    /// Applies one event inside the runner's transaction.
    ///
    /// # Errors
    /// [`ProjectionError::Database`] to retry, [`ProjectionError::Undecodable`] to skip.
    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError>;

    /// Applies a batch of events (the projection's own types, in log order) inside the
    /// runner's transaction; answers how many were undecodable and passed over (logged).
    /// By default one [`Projection::apply`] after another; a projection overrides it to
    /// write set-based (one statement for the whole batch where it can).
    ///
    /// # Errors
    /// Any other [`ProjectionError`]: the batch is rolled back and applied again.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&FeedEvent],
    ) -> Result<usize, ProjectionError> {
        let mut skipped = 0;
        for event in events {
            match self.apply(tx, event).await {
                Ok(()) => {}
                Err(ProjectionError::Undecodable { id, reason }) => {
                    warn!(%id, %reason, projection = self.name(), "skipping undecodable event");
                    skipped += 1;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(skipped)
    }
}

/// The most events applied in one transaction.
pub const MAX_BATCH: usize = 500;

/// Runs a projection from a feed, in batches.
///
/// The runner takes the batches the feed hands over (a page of the log tail, up to
/// [`MAX_BATCH`] events; never waited for to fill, and nothing read ahead while a batch is
/// applied) and applies each in log order in one transaction together with the checkpoint; events at or below the checkpoint change nothing. A failure rolls
/// the whole batch back, and the same batch is applied again, so a crash or a redelivery at
/// any point neither skips nor repeats an event. Fed from the PostgreSQL log (`LogFeed`), the
/// projection consumes from its own checkpoint in order and nothing is acknowledged apart
/// (the checkpoint is the acknowledgement); fed from JetStream, each event is acknowledged
/// after its batch is committed, and `max_ack_pending = 1` keeps redeliveries in order (at
/// the cost of batches of one).
#[derive(Clone)]
pub struct ProjectionRunner {
    pool: PgPool,
    feed: Arc<dyn EventFeed>,
    projection: Arc<dyn Projection>,
    retry_delay: Duration,
    max_batch: usize,
}

impl ProjectionRunner {
    /// A runner of `projection` fed by `feed`, writing to `pool`.
    pub fn new(pool: PgPool, feed: Arc<dyn EventFeed>, projection: Arc<dyn Projection>) -> Self {
        Self {
            pool,
            feed,
            projection,
            retry_delay: Duration::from_millis(500),
            max_batch: MAX_BATCH,
        }
    }

    /// At most `n` events per transaction (default [`MAX_BATCH`]; 1 applies them one by one,
    /// the old path, kept for benchmarks).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// The consumer and checkpoint name: `projection-<name>`.
    pub fn checkpoint_name(&self) -> String {
        format!("projection-{}", self.projection.name())
    }

    /// Consumes the feed until `shutdown`; the batch in hand is finished first.
    ///
    /// Every event is read (not only the projection's aggregate types) so the checkpoint
    /// follows the whole log, which is what `min_position` waits on.
    ///
    /// # Errors
    /// [`ProjectionError::Feed`] when the subscription cannot be set up.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ProjectionError> {
        let name = self.checkpoint_name();
        let mut batches = loop {
            match self
                .feed
                .subscribe_batches(&name, &[], StartAt::Beginning)
                .await
            {
                Ok(stream) => break stream,
                Err(error) => {
                    warn!(%error, projection = %name, "cannot subscribe; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.retry_delay) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = batches.next() => next,
                () = shutdown.cancelled() => return Ok(()),
            };
            let Some(next) = next else {
                return Ok(());
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(error) => {
                    warn!(%error, projection = %name, "feed error");
                    continue;
                }
            };
            for chunk in batch.chunks(self.max_batch) {
                // Retry transient failures in place: moving on would apply events out of
                // order.
                while let Err(error) = self.apply_batch(&name, chunk).await {
                    warn!(%error, projection = %name, events = chunk.len(), "apply failed; retrying");
                    tokio::time::sleep(self.retry_delay).await;
                }
            }
            for event in batch {
                if event.acknowledged_by_checkpoint(&name) {
                    continue;
                }
                if let Err(error) = event.ack().await {
                    // Redelivery is harmless: the checkpoint already covers the event.
                    debug!(%error, projection = %name, "ack failed");
                }
            }
        }
    }

    /// Applies one event and moves the checkpoint, in one transaction; an event at or below
    /// the checkpoint changes nothing.
    ///
    /// # Errors
    /// What the projection or the database reports.
    pub async fn apply_once(&self, name: &str, event: &FeedEvent) -> Result<(), ProjectionError> {
        self.apply_batch(name, std::slice::from_ref(event))
            .await
            .map(|_| ())
    }

    /// Applies `events` (in log order) past the checkpoint and moves the checkpoint to the
    /// last of them, in one transaction; answers how many were past it. An undecodable event
    /// is logged and passed over (never retried forever); any other failure rolls the whole
    /// batch back.
    ///
    /// # Errors
    /// What the projection or the database reports.
    pub async fn apply_batch(
        &self,
        name: &str,
        events: &[FeedEvent],
    ) -> Result<usize, ProjectionError> {
        let types = self.projection.aggregate_types();
        if !events.iter().any(|e| types.contains(&e.aggregate_type())) {
            return self.pass_over(name, events).await;
        }
        let mut tx = self.pool.begin().await?;
        let checkpoint = checkpoint::load_for_update(&mut tx, name).await?;
        let fresh: Vec<&FeedEvent> = events.iter().filter(|e| e.cursor > checkpoint).collect();
        let last = fresh.last().map(|e| e.cursor);
        let applied = fresh.len();
        let own: Vec<&FeedEvent> = fresh
            .into_iter()
            .filter(|e| types.contains(&e.aggregate_type()))
            .collect();
        if !own.is_empty() {
            self.projection.apply_batch(&mut tx, &own).await?;
        }
        let Some(last) = last else {
            debug!(projection = %name, "already applied");
            return Ok(0);
        };
        checkpoint::save(&mut *tx, name, last).await?;
        tx.commit().await?;
        checkpoint::committed(&self.pool, name, last);
        if !own.is_empty() {
            self.projection.committed();
        }
        record(name, applied, last);
        Ok(applied)
    }

    /// A batch with none of the projection's events: the checkpoint moves past it in one
    /// statement, without the batch transaction and its row lock (nothing is applied, and a
    /// checkpoint only moves forward, so two instances doing this at once cannot undo each
    /// other). Under a load of one aggregate type, the projections of the others made a
    /// transaction of five statements per read. Answers the number of events when the
    /// checkpoint moved, else 0.
    async fn pass_over(&self, name: &str, events: &[FeedEvent]) -> Result<usize, ProjectionError> {
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(0);
        };
        if !checkpoint::save(&self.pool, name, last).await? {
            return Ok(0);
        }
        checkpoint::committed(&self.pool, name, last);
        record(name, events.len(), last);
        Ok(events.len())
    }
}

/// The rows of one table a batch folds: read in one query, changed in memory event by
/// event, and the changed ones handed back (in the order first changed) for one write.
pub(crate) struct BatchRows<R> {
    rows: std::collections::HashMap<uuid::Uuid, R>,
    changed: Vec<uuid::Uuid>,
    marked: std::collections::HashSet<uuid::Uuid>,
}

impl<R> BatchRows<R>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    /// The rows of `ids`, read with `select` (a query taking the ids as `$1`, e.g.
    /// `… WHERE id = ANY($1)`), keyed by `id_of`.
    ///
    /// The statement is planned at each run, with the ids and the table's size of the
    /// moment, not prepared once per connection: a read model starts empty, and a plan
    /// made then (a sequential scan: the cheapest of an empty table) was kept by the
    /// connection until PostgreSQL next analysed the table. Measured with `auto_explain`
    /// under 500 commands/s on a new database: every batch of `requests`, `request_search`
    /// and `dashboard_requests` scanned the whole table (docs/decisions.md).
    ///
    /// # Errors
    /// The database error.
    pub(crate) async fn read(
        tx: &mut PgConnection,
        select: &str,
        ids: &[uuid::Uuid],
        id_of: fn(&R) -> uuid::Uuid,
    ) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query_as::<_, R>(select)
            .persistent(false)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| (id_of(&row), row))
            .collect();
        Ok(Self {
            rows,
            changed: Vec::new(),
            marked: std::collections::HashSet::new(),
        })
    }
}

impl<R> BatchRows<R> {
    /// Applies `fold` (answering whether it changed row `id`) to the rows.
    pub(crate) fn fold(
        &mut self,
        id: uuid::Uuid,
        fold: impl FnOnce(&mut std::collections::HashMap<uuid::Uuid, R>) -> bool,
    ) {
        if fold(&mut self.rows) && self.marked.insert(id) {
            self.changed.push(id);
        }
    }

    /// The changed rows, in the order first changed.
    pub(crate) fn changed(&self) -> Vec<&R> {
        self.changed
            .iter()
            .filter_map(|id| self.rows.get(id))
            .collect()
    }
}

/// Decoded events with their feed events, in order.
pub(crate) type DecodedBatch<'a, T> = Vec<(&'a FeedEvent, T)>;

/// Decodes the events of a batch with `decode` (`None`: not the projection's), passing over
/// the undecodable ones (logged); answers the decoded events with their feed events, in
/// order, and how many were passed over.
///
/// # Errors
/// Any error of `decode` but [`ProjectionError::Undecodable`].
pub(crate) fn decode_batch<'a, T>(
    projection: &str,
    events: &[&'a FeedEvent],
    decode: impl Fn(&FeedEvent) -> Result<Option<T>, ProjectionError>,
) -> Result<(DecodedBatch<'a, T>, usize), ProjectionError> {
    let mut skipped = 0;
    let mut decoded = Vec::with_capacity(events.len());
    for event in events {
        match decode(event) {
            Ok(Some(d)) => decoded.push((*event, d)),
            Ok(None) => {}
            Err(ProjectionError::Undecodable { id, reason }) => {
                warn!(%id, %reason, projection, "skipping undecodable event");
                skipped += 1;
            }
            Err(error) => return Err(error),
        }
    }
    Ok((decoded, skipped))
}

/// The status a media request has after `event`, when the event changes it, from `current`:
/// the transitions every request read model shares (a late `forwarded` never moves a
/// request back).
pub(crate) fn status_after(
    current: &str,
    event: &medianest_domain::media_request::MediaRequestEvent,
) -> Option<medianest_domain::media_request::RequestStatus> {
    use medianest_domain::media_request::{MediaRequestEvent as E, RequestStatus as S};
    match event {
        E::Submitted { .. } => None,
        E::Approved { .. } | E::Retried { .. } => Some(S::Approved),
        E::Declined { .. } => Some(S::Declined),
        E::Cancelled { .. } => Some(S::Cancelled),
        E::Forwarded { .. } => (current == S::Approved.as_str()).then_some(S::Forwarded),
        E::ForwardFailed { .. } | E::Failed { .. } => Some(S::Failed),
        E::Processing => Some(S::Processing),
        E::PartiallyAvailable { .. } => Some(S::PartiallyAvailable),
        E::Available { .. } => Some(S::Available),
    }
}

/// Decodes a JetStream-fed event from its public form with `decode` (e.g.
/// `medianest_domain::public::download_event`), and its aggregate id as a UUID.
///
/// # Errors
/// [`ProjectionError::Undecodable`] when the id or the data does not decode.
pub(crate) fn public_event<E>(
    event: &FeedEvent,
    decode: fn(&str, &serde_json::Value) -> Result<E, serde_json::Error>,
) -> Result<(uuid::Uuid, E), ProjectionError> {
    let undecodable = |reason| ProjectionError::undecodable(event, reason);
    let id = event
        .aggregate_id()
        .parse()
        .map_err(|e: uuid::Error| undecodable(e.into()))?;
    let decoded = decode(event.event_type(), event.data()).map_err(|e| undecodable(e.into()))?;
    Ok((id, decoded))
}

/// Starts `UPDATE <table> SET version = <sequence>, updated_at = <time>, last_position =
/// <position>` for a read model whose rows carry their aggregate version; the caller pushes
/// `, column = value` pairs, then [`finish_row_update`].
pub(crate) fn row_update(
    table: &str,
    sequence: i64,
    time: chrono::DateTime<chrono::Utc>,
    position: i64,
) -> sqlx::QueryBuilder<'static, sqlx::Postgres> {
    let mut update = sqlx::QueryBuilder::new(format!("UPDATE {table} SET version = "));
    update
        .push_bind(sequence)
        .push(", updated_at = ")
        .push_bind(time)
        .push(", last_position = ")
        .push_bind(position);
    update
}

/// The metrics of a committed batch of `name`: `passed` events, checkpoint at `last`.
fn record(name: &str, passed: usize, last: Cursor) {
    metrics::counter!("medianest_projection_events_applied_total", "projection" => name.to_string())
        .increment(passed as u64);
    metrics::counter!("medianest_projection_batches_total", "projection" => name.to_string())
        .increment(1);
    metrics::gauge!("medianest_projection_position", "projection" => name.to_string())
        .set(last.position as f64);
}

/// Ends a [`row_update`] with `WHERE id = <id> AND version < <sequence>` and runs it: a row
/// already at or past the event's sequence is left alone (the second guard, beside the
/// checkpoint, against applying an event twice).
///
/// # Errors
/// The database error.
pub(crate) async fn finish_row_update(
    mut update: sqlx::QueryBuilder<'static, sqlx::Postgres>,
    id: uuid::Uuid,
    sequence: i64,
    tx: &mut PgConnection,
) -> Result<(), sqlx::Error> {
    update
        .push(" WHERE id = ")
        .push_bind(id)
        .push(" AND version < ")
        .push_bind(sequence);
    update.build().execute(tx).await?;
    Ok(())
}
