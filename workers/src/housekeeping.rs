//! Housekeeping (issue 12): the idempotency-key sweeper. `Idempotency-Key` records are kept
//! for [`IdempotencySweeper`]'s time to live (24 hours by default,
//! `MEDIANEST_IDEMPOTENCY_TTL_HOURS`), then deleted, so the table does not grow without
//! bound; a client repeating a request within that time still gets the first answer.

use std::time::Duration;

use medianest_store::idempotency;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Deletes expired idempotency keys every `interval`.
#[derive(Debug, Clone)]
pub struct IdempotencySweeper {
    pool: PgPool,
    ttl: Duration,
    interval: Duration,
}

impl IdempotencySweeper {
    /// Forgets keys older than `ttl`, looking every `interval` (default in configuration:
    /// one hour).
    pub fn new(pool: PgPool, ttl: Duration, interval: Duration) -> Self {
        Self {
            pool,
            ttl,
            interval,
        }
    }

    /// Sweeps until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            match idempotency::expire(&self.pool, self.ttl).await {
                Ok(0) => {}
                Ok(gone) => debug!(gone, "expired idempotency keys deleted"),
                Err(error) => warn!(%error, "cannot sweep idempotency keys"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
