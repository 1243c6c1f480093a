//! Command execution over the event store.
//!
//! `CqrsFramework::execute` answers `()`; MediaNest's callers need the aggregate version and
//! the global position of what was written (for `If-Match` and read-your-writes), so commands
//! run here: load the aggregate, check the expected version, let it decide, append the events
//! (one `INSERT … RETURNING`, answering the position). An append that loses the
//! optimistic-concurrency race (the primary key `(aggregate_type, aggregate_id, sequence)`
//! refuses it) is decided again on fresh state a few times before it is reported as
//! [`ExecuteError::Conflict`].
//!
//! The `events` table has postgres-es's shape and encoding (docs/design.md §2: `payload` is
//! the event's serde JSON, `metadata` a JSON object of strings); the executor reads and writes
//! it with its own statements on one connection per command ([`CommandExecutor::execute_on`]),
//! so a command service can run its other statements (reservations, ledgers) on the same
//! connection: sqlx checks a connection with a round trip each time it goes back to the pool,
//! and postgres-es's repository takes the pool for each statement (docs/decisions.md,
//! "One transaction per command"). A creation is decided on the default state without
//! reading the log first: the append's primary key tells whether the aggregate existed.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use sqlx::{PgConnection, PgPool};
use tracing::instrument;

use crate::EventMetadata;

/// How many times a command is decided again after losing a concurrency race.
pub const MAX_ATTEMPTS: usize = 5;

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
}

impl<E: std::error::Error> From<sqlx::Error> for ExecuteError<E> {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(Box::new(error))
    }
}

/// Runs commands of aggregate `A` against the event store.
pub struct CommandExecutor<A: Aggregate> {
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
        Self { services, pool }
    }

    /// The services the aggregate decides with.
    pub fn services(&self) -> &A::Services {
        &self.services
    }

    /// The current state and version of aggregate `id` (`A::default()` and 0 when it has no
    /// events).
    ///
    /// # Errors
    /// [`ExecuteError::Store`] when the store fails or a stored event does not deserialise.
    pub async fn load(&self, id: &str) -> Result<(A, i64), ExecuteError<A::Error>> {
        let mut conn = self.pool.acquire().await?;
        Self::load_on(&mut conn, id).await
    }

    /// [`Self::load`] on `conn`: the events of `id` in sequence order, applied to
    /// `A::default()`; the version is the last sequence.
    ///
    /// # Errors
    /// [`ExecuteError::Store`] when the store fails or a stored event does not deserialise.
    pub async fn load_on(
        conn: &mut PgConnection,
        id: &str,
    ) -> Result<(A, i64), ExecuteError<A::Error>> {
        let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, payload FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut aggregate = A::default();
        let mut version = 0;
        for (sequence, payload) in rows {
            let event: A::Event =
                serde_json::from_value(payload).map_err(|e| ExecuteError::Store(Box::new(e)))?;
            aggregate.apply(event);
            version = sequence;
        }
        Ok((aggregate, version))
    }

    /// Decides `command` on aggregate `id` and commits the events with `metadata`, on a
    /// connection of the pool (see [`Self::execute_on`]).
    ///
    /// # Errors
    /// As [`Self::execute_on`].
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        let mut conn = self.pool.acquire().await?;
        self.execute_on(&mut conn, id, command, expected_version, metadata)
            .await
    }

    /// Decides `command` on aggregate `id` and commits the events with `metadata`, every
    /// statement on `conn` (outside a transaction: the append is one atomic statement), up to
    /// [`MAX_ATTEMPTS`] times while other writers win the race ([`Self::attempt_on`]).
    ///
    /// # Errors
    /// As [`Self::attempt_on`], and [`ExecuteError::Conflict`] after repeated lost races.
    #[instrument(skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %id))]
    pub async fn execute_on(
        &self,
        conn: &mut PgConnection,
        id: &str,
        command: A::Command,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        for attempt in 1..=MAX_ATTEMPTS {
            // A creation's first attempt need not read the log.
            let fresh = attempt == 1 && expected_version == Some(0);
            let decided = self
                .attempt_on(conn, id, command.clone(), expected_version, metadata, fresh)
                .await?;
            if let Some(committed) = decided {
                return Ok(committed);
            }
            tracing::debug!(attempt, "lost a concurrency race; deciding again");
        }
        Err(ExecuteError::Conflict)
    }

    /// Decides `command` on a new aggregate (`A::default()`, version 0) without reading or
    /// writing anything: the state after and the events, or `None` when the command is
    /// refused or writes nothing (a caller then decides on the stored state, as
    /// [`Self::attempt_on`] does).
    pub async fn decide_fresh(&self, command: A::Command) -> Option<(A, Vec<A::Event>)> {
        let mut aggregate = A::default();
        let events = self.decide(&mut aggregate, command).await.ok()?;
        (!events.is_empty()).then_some((aggregate, events))
    }

    /// The events `aggregate` decides for `command` (applied to it as they are written), or
    /// its refusal.
    async fn decide(
        &self,
        aggregate: &mut A,
        command: A::Command,
    ) -> Result<Vec<A::Event>, A::Error> {
        let sink = EventSink::<A>::default();
        aggregate.handle(command, &self.services, &sink).await?;
        Ok(sink.collect().await)
    }

    /// One attempt at deciding `command` on aggregate `id` and appending its events with
    /// `metadata` on `conn`: `None` when another writer took the next sequence first. The
    /// append's statement then failed: in a transaction, the caller rolls it back before the
    /// next attempt.
    ///
    /// `expected_version` (from `If-Match`) must equal the current version when given.
    /// `fresh` decides on `A::default()` (version 0) without reading the log, for a caller
    /// that creates the aggregate under a new id: if it existed after all, the append fails
    /// (`None`) and the next attempt, not fresh, reads it and decides on what it is. A fresh
    /// decision that refuses, mismatches the expected version or writes nothing is decided
    /// again at once on the stored state, so the answer is always the stored state's.
    ///
    /// # Errors
    /// [`ExecuteError::Rejected`] with the aggregate's reason, [`ExecuteError::VersionMismatch`],
    /// [`ExecuteError::Store`].
    pub async fn attempt_on(
        &self,
        conn: &mut PgConnection,
        id: &str,
        command: A::Command,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
        fresh: bool,
    ) -> Result<Option<Committed<A>>, ExecuteError<A::Error>> {
        // A fresh guess is trusted only when its events are appended: a refusal, a version
        // mismatch or a decision to write nothing is decided again on the stored state.
        let mut fresh = fresh;
        loop {
            let (mut aggregate, version) = if fresh {
                (A::default(), 0)
            } else {
                Self::load_on(conn, id).await?
            };
            if let Some(expected) = expected_version {
                if expected != version {
                    if fresh {
                        fresh = false;
                        continue;
                    }
                    return Err(ExecuteError::VersionMismatch {
                        expected,
                        actual: version,
                    });
                }
            }
            let events = match self.decide(&mut aggregate, command.clone()).await {
                Ok(events) => events,
                Err(_) if fresh => {
                    fresh = false;
                    continue;
                }
                Err(refusal) => return Err(ExecuteError::Rejected(refusal)),
            };
            if events.is_empty() {
                if fresh {
                    fresh = false;
                    continue;
                }
                let position = position_of::<A>(conn, id, version).await?;
                return Ok(Some(Committed {
                    version,
                    position,
                    events,
                    aggregate,
                }));
            }
            let appended = append::<A>(conn, id, version, &events, metadata).await?;
            return Ok(appended.map(|position| Committed {
                version: version + seq(events.len()),
                position,
                events,
                aggregate,
            }));
        }
    }
}

/// Appends `events` of aggregate `id` after `version` in one statement, atomic without a
/// transaction around it (one round trip instead of postgres-es's begin, insert per event,
/// commit, and then a lookup of the position), in the columns and encoding postgres-es reads
/// back (`payload`: the event's serde JSON; `metadata`: a JSON object of strings). Answers the
/// global position of the last event, or `None` when another writer took one of the
/// sequences first (the primary key refuses it: `23505`).
async fn append<A: Aggregate>(
    conn: &mut PgConnection,
    id: &str,
    version: i64,
    events: &[A::Event],
    metadata: &EventMetadata,
) -> Result<Option<i64>, ExecuteError<A::Error>> {
    let sql = format!(
        "WITH {} SELECT max(global_position) FROM appended",
        Appending::cte(1, "true")
    );
    let query = sqlx::query_scalar(&sql);
    Ok(Appending::new::<A>(id, version, events, metadata)?
        .run(conn, query)
        .await?)
}

/// A command's events encoded for the `events` table, to be inserted by a statement's
/// `appended` CTE ([`Appending::cte`]): the aggregate type and id, and per event its sequence,
/// type, version and payload, with the command's metadata.
pub(crate) struct Appending {
    aggregate_type: &'static str,
    id: String,
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<serde_json::Value>,
    metadata: serde_json::Value,
}

impl Appending {
    /// `events` of aggregate `id`, numbered after `version`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`] when an event or the metadata cannot be encoded.
    pub(crate) fn new<A: Aggregate>(
        id: &str,
        version: i64,
        events: &[A::Event],
        metadata: &EventMetadata,
    ) -> Result<Self, ExecuteError<A::Error>> {
        let encode = |e: serde_json::Error| ExecuteError::Store(Box::new(e));
        let mut appending = Self {
            aggregate_type: A::TYPE,
            id: id.to_string(),
            sequences: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: serde_json::to_value(metadata.to_map()).map_err(encode)?,
        };
        for (sequence, event) in (version + 1..).zip(events) {
            appending.sequences.push(sequence);
            appending.types.push(event.event_type());
            appending.versions.push(event.event_version());
            appending
                .payloads
                .push(serde_json::to_value(event).map_err(encode)?);
        }
        Ok(appending)
    }

    /// The CTE `appended` (`RETURNING global_position`), its 7 parameters numbered from
    /// `$first`, inserting the events only where the SQL condition `guard` holds.
    pub(crate) fn cte(first: usize, guard: &str) -> String {
        let p = |i: usize| format!("${}", first + i);
        format!(
            "appended AS (
               INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata)
               SELECT {}, {}, e.sequence, e.event_type, e.event_version, e.payload, {}
                 FROM unnest({}::bigint[], {}::text[], {}::text[], {}::jsonb[])
                      AS e(sequence, event_type, event_version, payload)
                WHERE {guard}
               RETURNING global_position)",
            p(0),
            p(1),
            p(6),
            p(2),
            p(3),
            p(4),
            p(5)
        )
    }

    /// Runs `query`, a statement with [`Appending::cte`] answering
    /// `max(global_position) FROM appended`, after binding the CTE's 7 parameters behind
    /// those `query` has. Answers the last event's global position, or `None` when nothing
    /// was appended: the CTE's guard did not hold, or another writer took one of the
    /// sequences first (the primary key refuses it: `23505`, and the statement writes
    /// nothing).
    ///
    /// # Errors
    /// Any other database error.
    pub(crate) async fn run<'q>(
        self,
        conn: &mut PgConnection,
        query: sqlx::query::QueryScalar<
            'q,
            sqlx::Postgres,
            Option<i64>,
            sqlx::postgres::PgArguments,
        >,
    ) -> Result<Option<i64>, sqlx::Error> {
        let appended = query
            .bind(self.aggregate_type)
            .bind(self.id)
            .bind(self.sequences)
            .bind(self.types)
            .bind(self.versions)
            .bind(self.payloads)
            .bind(self.metadata)
            .fetch_one(conn)
            .await;
        match appended {
            Ok(position) => Ok(position),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The global position of event `version` of aggregate `id` (0 for version 0).
async fn position_of<A: Aggregate>(
    conn: &mut PgConnection,
    id: &str,
    version: i64,
) -> Result<i64, ExecuteError<A::Error>> {
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
    .fetch_optional(&mut *conn)
    .await?;
    Ok(position.unwrap_or(0))
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
}
