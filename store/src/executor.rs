//! Command execution over the postgres-es event store.
//!
//! `CqrsFramework::execute` answers `()`; MediaNest's callers need the aggregate version and
//! the global position of what was written (for `If-Match` and read-your-writes), so commands
//! run here: load the aggregate (postgres-es), check the expected version, let it decide,
//! append the events (one `INSERT … RETURNING` of our own, answering the position). An append
//! that loses the optimistic-concurrency race (the primary key `(aggregate_type,
//! aggregate_id, sequence)` refuses it) is decided again on fresh state a few times before it
//! is reported as [`ExecuteError::Conflict`].
//!
//! Only the plain event store is used: cqrs-es 0.5's snapshot and aggregate stores apply new
//! events twice before saving (docs/design.md §2).

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tracing::instrument;

use crate::EventMetadata;

/// How many times a command is decided again after losing a concurrency race.
const MAX_ATTEMPTS: usize = 5;

/// The outcome of a command that was accepted (possibly writing nothing, when it was already
/// reflected by the aggregate).
#[derive(Debug, Clone)]
pub struct Committed<A: Aggregate> {
    /// The aggregate version after the command (its last sequence; 0 for none).
    pub version: i64,
    /// The global position of the last event written, or of the aggregate's last event when
    /// the command wrote nothing.
    pub position: i64,
    /// The events written by this command.
    pub events: Vec<A::Event>,
    /// The aggregate's state after the command.
    pub aggregate: A,
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// `If-Match` named another version than the current one.
    #[error("expected version {expected}, found {actual}")]
    VersionMismatch {
        /// What the caller expected.
        expected: i64,
        /// The current version.
        actual: i64,
    },
    /// Concurrent writers kept winning; the caller may try again.
    #[error("concurrent modification, try again")]
    Conflict,
    /// The store failed (PostgreSQL, or an event or metadata that would not serialise); the
    /// cause is kept as the error's source.
    #[error("event store failure: {0}")]
    Store(#[source] crate::BoxError),
}

impl<E: std::error::Error> ExecuteError<E> {
    /// Whether the same command may succeed later unchanged: a store failure (the database
    /// is down, a connection broke) or a lost race; never a refusal or a version mismatch.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Conflict | Self::Store(_))
    }

    fn from_aggregate(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(e) => Self::Rejected(e),
            AggregateError::AggregateConflict => Self::Conflict,
            AggregateError::DatabaseConnectionError(cause)
            | AggregateError::DeserializationError(cause)
            | AggregateError::UnexpectedError(cause) => Self::Store(cause),
        }
    }
}

impl<E: std::error::Error> From<sqlx::Error> for ExecuteError<E> {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(Box::new(error))
    }
}

/// Runs commands of aggregate `A` against the event store.
pub struct CommandExecutor<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
    pool: PgPool,
}

impl<A: Aggregate> fmt::Debug for CommandExecutor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandExecutor")
            .field("aggregate", &A::TYPE)
            .finish()
    }
}

impl<A> CommandExecutor<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    /// An executor writing to the `events` table of `pool`.
    pub fn new(pool: PgPool, services: A::Services) -> Self {
        let repo = PostgresEventRepository::new(pool.clone());
        Self {
            store: PersistedEventStore::new_event_store(repo),
            services,
            pool,
        }
    }

    /// The services the aggregate decides with.
    pub fn services(&self) -> &A::Services {
        &self.services
    }

    /// The current state and version of aggregate `id` (`A::default()` and 0 when it has no
    /// events).
    ///
    /// # Errors
    /// [`ExecuteError::Store`] when the store fails.
    pub async fn load(&self, id: &str) -> Result<(A, i64), ExecuteError<A::Error>> {
        let context = self
            .store
            .load_aggregate(id)
            .await
            .map_err(ExecuteError::from_aggregate)?;
        Ok((context.aggregate, seq(context.current_sequence)))
    }

    /// Decides `command` on aggregate `id` and commits the events with `metadata`.
    ///
    /// `expected_version` (from `If-Match`) must equal the current version when given.
    ///
    /// # Errors
    /// [`ExecuteError::Rejected`] with the aggregate's reason, [`ExecuteError::VersionMismatch`],
    /// [`ExecuteError::Conflict`] after repeated lost races, [`ExecuteError::Store`].
    #[instrument(skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %id))]
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut context = self
                .store
                .load_aggregate(id)
                .await
                .map_err(ExecuteError::from_aggregate)?;
            let version = seq(context.current_sequence);
            if let Some(expected) = expected_version {
                if expected != version {
                    return Err(ExecuteError::VersionMismatch {
                        expected,
                        actual: version,
                    });
                }
            }
            let sink = EventSink::<A>::default();
            context
                .aggregate
                .handle(command.clone(), &self.services, &sink)
                .await
                .map_err(ExecuteError::Rejected)?;
            let events = sink.collect().await;
            let aggregate = context.aggregate.clone();
            if events.is_empty() {
                let position = self.position_of(id, version).await?;
                return Ok(Committed {
                    version,
                    position,
                    events,
                    aggregate,
                });
            }
            match self.append(id, version, &events, metadata).await? {
                Some(position) => {
                    return Ok(Committed {
                        version: version + seq(events.len()),
                        position,
                        events,
                        aggregate,
                    });
                }
                None => {
                    tracing::debug!(attempt, "lost a concurrency race; deciding again");
                }
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// Appends `events` after `version` in one statement, atomic without a transaction
    /// around it (one round trip instead of postgres-es's begin, insert per event, commit,
    /// and then a lookup of the position), in the columns and encoding postgres-es reads
    /// back (`payload`: the event's serde JSON; `metadata`: a JSON object of strings).
    /// Answers the global position of the last event, or `None` when another writer took
    /// one of the sequences first (the primary key refuses it: `23505`).
    async fn append(
        &self,
        id: &str,
        version: i64,
        events: &[A::Event],
        metadata: &EventMetadata,
    ) -> Result<Option<i64>, ExecuteError<A::Error>> {
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for (sequence, event) in (version + 1..).zip(events) {
            sequences.push(sequence);
            types.push(event.event_type());
            versions.push(event.event_version());
            payloads
                .push(serde_json::to_value(event).map_err(|e| ExecuteError::Store(Box::new(e)))?);
        }
        let metadata = serde_json::to_value(metadata.to_map())
            .map_err(|e| ExecuteError::Store(Box::new(e)))?;
        let appended = sqlx::query_scalar::<_, Option<i64>>(
            "WITH appended AS (
               INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata)
               SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $7
                 FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[])
                      AS e(sequence, event_type, event_version, payload)
               RETURNING global_position)
             SELECT max(global_position) FROM appended",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_one(&self.pool)
        .await;
        match appended {
            Ok(position) => Ok(Some(position.unwrap_or(0))),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn position_of(&self, id: &str, version: i64) -> Result<i64, ExecuteError<A::Error>> {
        if version == 0 {
            return Ok(0);
        }
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(position.unwrap_or(0))
    }
}

fn seq(sequence: usize) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    type Execute = ExecuteError<std::fmt::Error>;

    #[test]
    fn a_database_failure_keeps_the_database_error_as_its_source() {
        let error = Execute::from(sqlx::Error::PoolTimedOut);
        assert!(error.is_transient());
        let source = error.source().expect("the cause is kept");
        assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
        assert_eq!(
            error.to_string(),
            format!("event store failure: {}", sqlx::Error::PoolTimedOut)
        );
    }

    #[test]
    fn a_technical_aggregate_error_keeps_its_cause_and_a_refusal_stays_a_refusal() {
        let io = std::io::Error::other("disk on fire");
        let error = Execute::from_aggregate(AggregateError::UnexpectedError(Box::new(io)));
        let source = error.source().expect("the cause is kept");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
        assert!(matches!(
            Execute::from_aggregate(AggregateError::UserError(std::fmt::Error)),
            ExecuteError::Rejected(_)
        ));
        assert!(matches!(
            Execute::from_aggregate(AggregateError::AggregateConflict),
            ExecuteError::Conflict
        ));
    }
}
