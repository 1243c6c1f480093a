//! Checkpoints: the stored cursors of global-log readers (the relay, projections).
//!
//! A projection saves its checkpoint in the same transaction as its read-model rows, so an
//! event is applied exactly once however often it is delivered.

use sqlx::PgExecutor;

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
    sqlx::query("INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let (tx_id, position): (i64, i64) =
        sqlx::query_as("SELECT tx_id, position FROM checkpoints WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    Ok(Cursor { tx_id, position })
}

/// Stores `cursor` as the checkpoint of `name`, unless the checkpoint is already past it:
/// a checkpoint never moves back (a late ack of an event a replay's swap already covers must
/// not undo the swap's checkpoint).
///
/// # Errors
/// The database error.
pub async fn save<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
    cursor: Cursor,
) -> Result<(), StoreError> {
    sqlx::query(
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
    Ok(())
}

/// Whether the reader `name` has passed the event at `position` (false for an unknown
/// position, which may still be in flight).
///
/// # Errors
/// The database error.
pub async fn has_reached<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
    position: i64,
) -> Result<bool, StoreError> {
    let reached: Option<bool> = sqlx::query_scalar(
        "SELECT (c.tx_id, c.position) >= (e.tx_id::text::bigint, e.global_position)
           FROM events e JOIN checkpoints c ON c.name = $1
          WHERE e.global_position = $2",
    )
    .bind(name)
    .bind(position)
    .fetch_optional(db)
    .await?;
    Ok(reached.unwrap_or(false))
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

/// Waits, polling every 10 ms for at most `timeout`, until every reader in `names` has passed
/// the event at `position`. A position of 0 or less (the start of the log) is reached at
/// once. `position` must be one the log handed out (its event committed): when the first
/// look finds a reader behind and no committed event at `position`, the answer is
/// [`WaitOutcome::NoSuchEvent`] at once rather than after `timeout`.
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
    let mut pending: Vec<&str> = names.to_vec();
    let mut event_known = false;
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for name in pending {
            if !has_reached(pool, name, position).await? {
                still.push(name);
            }
        }
        if still.is_empty() {
            return Ok(WaitOutcome::Reached);
        }
        // Asked once, and only when a reader is behind: the common read-your-write wait
        // costs no extra query.
        if !event_known {
            if crate::log::cursor_of(pool, position).await?.is_none() {
                let head = crate::log::head_position(pool).await?;
                return Ok(WaitOutcome::NoSuchEvent { head });
            }
            event_known = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(WaitOutcome::TimedOut);
        }
        pending = still;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
