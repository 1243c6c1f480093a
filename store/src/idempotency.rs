//! `Idempotency-Key` records of mutating HTTP requests (docs/design.md §7).
//!
//! A key is scoped to its caller. The first request with a key reserves it; its final answer
//! is stored and replayed to later requests with the same key and body; a later request with
//! the same key and another body is refused. A reservation whose request crashed before it
//! answered is taken over after [`STALE_AFTER_SECS`]. Server errors are not stored, so the
//! client may retry them. Keys are forgotten after a time ([`expire`], 24 hours by default,
//! swept by a worker).

use serde_json::Value;
use sqlx::PgPool;

use crate::StoreError;

/// Seconds after which an unanswered reservation is considered abandoned.
pub const STALE_AFTER_SECS: i64 = 60;

/// What to do with a request that carries an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// First use of the key: run the request, then [`complete`] or [`abandon`].
    New,
    /// Already answered: replay this status and body.
    Replay {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Value,
    },
    /// Another request with this key is running.
    InProgress,
    /// The key was used with another request body.
    Mismatch,
}

/// Reserves `key` for `scope` (the caller) and a request whose body hashes to `request_hash`.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn begin(
    pool: &PgPool,
    scope: &str,
    key: &str,
    request_hash: &str,
) -> Result<Reservation, StoreError> {
    let taken: Option<bool> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (scope, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, created_at = now()
          WHERE idempotency_keys.completed_at IS NULL
            AND idempotency_keys.created_at < now() - make_interval(secs => $4)
         RETURNING true",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(STALE_AFTER_SECS as f64)
    .fetch_optional(pool)
    .await?;
    if taken.is_some() {
        return Ok(Reservation::New);
    }
    let (hash, status, body): (String, Option<i32>, Option<Value>) = sqlx::query_as(
        "SELECT request_hash, status_code, response FROM idempotency_keys
          WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(pool)
    .await?;
    if hash != request_hash {
        return Ok(Reservation::Mismatch);
    }
    Ok(match (status, body) {
        (Some(status), Some(body)) => Reservation::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        },
        _ => Reservation::InProgress,
    })
}

/// Stores the final answer of the request that reserved `key`.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn complete(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: u16,
    body: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, response = $4, completed_at = now()
          WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(i32::from(status))
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets the reservation of `key` (the request failed in a way worth retrying).
///
/// # Errors
/// [`StoreError::Database`].
pub async fn abandon(pool: &PgPool, scope: &str, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND completed_at IS NULL",
    )
    .bind(scope)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets every key recorded more than `ttl` ago (answered or not): after that the same key
/// starts a new request. Answers how many went.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn expire(pool: &PgPool, ttl: std::time::Duration) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
