//! Single-instance locks: PostgreSQL session advisory locks held on a dedicated connection.
//!
//! The relay and each projection must run once at a time (docs/design.md §4); a second instance
//! waits as a standby. The lock is released when the connection closes, so a crashed holder
//! frees it without help.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// A held advisory lock; dropping it closes the connection and so releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    conn: PoolConnection<Postgres>,
    key: i64,
}

/// The advisory-lock key of a name (stable across processes and versions).
fn key_of(name: &str) -> i64 {
    // FNV-1a, 64 bit: stable, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl InstanceLock {
    /// Tries once to take the lock `name`.
    ///
    /// # Errors
    /// The database error when no connection could be had.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let key = key_of(name);
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| Self { conn, key }))
    }

    /// Waits until the lock `name` is free, trying every `retry`.
    ///
    /// # Errors
    /// The database error when no connection could be had.
    pub async fn acquire(pool: &PgPool, name: &str, retry: Duration) -> Result<Self, sqlx::Error> {
        loop {
            if let Some(lock) = Self::try_acquire(pool, name).await? {
                return Ok(lock);
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Releases the lock explicitly (dropping also releases it, by closing the connection).
    ///
    /// # Errors
    /// The database error of the unlock call.
    pub async fn release(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // A pooled connection would keep the session (and the lock) alive: close it instead.
        self.conn.close_on_drop();
    }
}
