//! Checkpoints: the stored cursors of global-log readers (the relay, projections).
//!
//! A projection saves its checkpoint in the same transaction as its read-model rows, so an
//! event is applied exactly once however often it is delivered.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use sqlx::PgExecutor;
use tokio::sync::watch;

use crate::{Cursor, StoreError};

/// The stored cursor of `name`, or the start of the log.
///
/// # Errors
/// The database error.
pub async fn load<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<Cursor, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id, position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(db)
            .await?;
    Ok(row
        .map(|(tx_id, position)| Cursor { tx_id, position })
        .unwrap_or_default())
}

/// The stored cursor of `name`, locking its row until the transaction ends (so two
/// instances of a projection cannot apply the same event concurrently).
///
/// # Errors
/// The database error.
pub async fn load_for_update(
    tx: &mut sqlx::PgConnection,
    name: &str,
) -> Result<Cursor, StoreError> {
    // One statement once the row exists (every batch but a reader's first).
    const LOCK: &str = "SELECT tx_id, position FROM checkpoints WHERE name = $1 FOR UPDATE";
    let locked: Option<(i64, i64)> = sqlx::query_as(LOCK)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let (tx_id, position) = match locked {
        Some(row) => row,
        None => {
            sqlx::query("INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query_as(LOCK).bind(name).fetch_one(&mut *tx).await?
        }
    };
    Ok(Cursor { tx_id, position })
}

/// Stores `cursor` as the checkpoint of `name`, unless the checkpoint is already past it:
/// a checkpoint never moves back (a late ack of an event a replay's swap already covers must
/// not undo the swap's checkpoint). Answers whether it moved.
///
/// # Errors
/// The database error.
pub async fn save<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
    cursor: Cursor,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (name) DO UPDATE
           SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, updated_at = now()
         WHERE (checkpoints.tx_id, checkpoints.position) < (EXCLUDED.tx_id, EXCLUDED.position)",
    )
    .bind(name)
    .bind(cursor.tx_id)
    .bind(cursor.position)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// How a wait for a position ended ([`wait_until_reached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Every reader has passed the event at the position.
    Reached,
    /// The time ran out first.
    TimedOut,
    /// No committed event has the position, so no wait can reach it. Positions are only
    /// handed out once their event is committed (command answers, reads, the stream), so
    /// this is a position from elsewhere (another installation, a restored backup) or made
    /// up: beyond the head, or a gap a rolled-back insert left.
    NoSuchEvent {
        /// The highest position written so far (0 for an empty log).
        head: i64,
    },
}

/// The checkpoints that readers of this process committed, by database and name, and a
/// counter raised at each: waits for a position watch them instead of polling the table.
struct Committed {
    cursors: Mutex<HashMap<(String, String), Cursor>>,
    raised: watch::Sender<u64>,
}

static COMMITTED: LazyLock<Committed> = LazyLock::new(|| Committed {
    cursors: Mutex::new(HashMap::new()),
    raised: watch::channel(0).0,
});

impl Committed {
    fn cursors(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cursor>> {
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tells this process's waits ([`wait_until_reached`]) that the checkpoint of `name` in
/// `pool`'s database is `cursor`, committed. Call it after the commit that saved it (a
/// projection's batch, a replay's swap); the cursor kept only moves forward, as [`save`]'s.
pub fn committed(pool: &sqlx::PgPool, name: &str, cursor: Cursor) {
    let key = (crate::log::database_key(pool), name.to_string());
    let moved = {
        let mut cursors = COMMITTED.cursors();
        let kept = cursors.entry(key).or_default();
        let moved = cursor > *kept;
        *kept = (*kept).max(cursor);
        moved
    };
    if moved {
        COMMITTED.raised.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The cursor of the event at `position` and which of `names` have passed it, in one query;
/// `None` when no committed event has the position.
async fn look(
    pool: &sqlx::PgPool,
    names: &[&str],
    position: i64,
) -> Result<Option<(Cursor, Vec<String>)>, StoreError> {
    let looked: Option<(i64, i64, Vec<String>)> = sqlx::query_as(
        "SELECT e.tx_id::text::bigint, e.global_position,
                array(SELECT c.name FROM checkpoints c
                       WHERE c.name = ANY($1)
                         AND (c.tx_id, c.position) >= (e.tx_id::text::bigint, e.global_position))
           FROM events e
          WHERE e.global_position = $2",
    )
    .bind(names)
    .bind(position)
    .fetch_optional(pool)
    .await?;
    Ok(looked.map(|(tx_id, position, reached)| (Cursor { tx_id, position }, reached)))
}

/// How often a wait asks the table when no checkpoint of this process moves (a reader in
/// another process, such as a replay run by the CLI, or a second instance).
const TABLE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits for at most `timeout` until every reader in `names` has passed the event at
/// `position`. A position of 0 or less (the start of the log) is reached at once.
/// `position` must be one the log handed out (its event committed): when the first look
/// finds a reader behind and no committed event at `position`, the answer is
/// [`WaitOutcome::NoSuchEvent`] at once rather than after `timeout`.
///
/// The first look asks the table, in one query, for the event's cursor and the readers
/// already past it; then the wait follows the checkpoints this process's readers commit
/// ([`committed`]), asking the table again every 50 ms for the readers it has not seen
/// pass. Under load a read-your-writes wait costs one query, not one per reader every few
/// milliseconds.
///
/// # Errors
/// The database error.
pub async fn wait_until_reached(
    pool: &sqlx::PgPool,
    names: &[&str],
    position: i64,
    timeout: std::time::Duration,
) -> Result<WaitOutcome, StoreError> {
    if position <= 0 {
        return Ok(WaitOutcome::Reached);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    // Subscribed before the first look, so no commit after it goes unseen.
    let mut raised = COMMITTED.raised.subscribe();
    let Some((target, reached)) = look(pool, names, position).await? else {
        let head = crate::log::head_position(pool).await?;
        return Ok(WaitOutcome::NoSuchEvent { head });
    };
    let mut pending: Vec<&str> = names.to_vec();
    pending.retain(|name| !reached.iter().any(|r| r == name));
    if pending.is_empty() {
        return Ok(WaitOutcome::Reached);
    }
    let database = crate::log::database_key(pool);
    let mut next_poll = tokio::time::Instant::now() + TABLE_POLL;
    loop {
        raised.borrow_and_update();
        {
            let cursors = COMMITTED.cursors();
            pending.retain(|name| {
                cursors
                    .get(&(database.clone(), (*name).to_string()))
                    .is_none_or(|cursor| *cursor < target)
            });
        }
        if pending.is_empty() {
            return Ok(WaitOutcome::Reached);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(WaitOutcome::TimedOut);
        }
        if now >= next_poll {
            let reached = look(pool, &pending, position)
                .await?
                .map(|(_, reached)| reached)
                .unwrap_or_default();
            pending.retain(|name| !reached.iter().any(|r| r == name));
            if pending.is_empty() {
                return Ok(WaitOutcome::Reached);
            }
            next_poll = tokio::time::Instant::now() + TABLE_POLL;
        }
        // A closed sender cannot happen (it is static); a timeout means: poll the table.
        let _ = tokio::time::timeout_at(next_poll.min(deadline), raised.changed()).await;
    }
}
