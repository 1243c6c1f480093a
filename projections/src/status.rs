//! How far each projection is behind the log (`medianest projections status`, and the lag
//! and throughput gauges on `/metrics`).
//!
//! Lag is measured against the committed log (behind the transaction fence, as readers see
//! it): `lag_events` is the number of events after the projection's checkpoint, and
//! `lag_seconds` how long ago the oldest of them was recorded (0 when caught up).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use medianest_store::{checkpoint, log, Cursor, StoreError};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::Projection;

/// One projection's position and lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub projection: String,
    /// Its checkpoint (`projection-<name>`).
    pub checkpoint: Cursor,
    /// When the checkpoint last moved (`None` before the first event).
    pub checkpoint_updated_at: Option<DateTime<Utc>>,
    /// The highest global position in the log.
    pub head: i64,
    /// Committed events after the checkpoint.
    pub lag_events: i64,
    /// Seconds since the oldest event after the checkpoint was recorded (0 when caught up).
    pub lag_seconds: f64,
}

/// The status of each of `projections`.
///
/// # Errors
/// The database error.
pub async fn status(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
) -> Result<Vec<ProjectionStatus>, StoreError> {
    let head = log::head_position(pool).await?;
    let mut statuses = Vec::with_capacity(projections.len());
    for projection in projections {
        let name = format!("projection-{}", projection.name());
        let checkpoint = checkpoint::load(pool, &name).await?;
        let updated_at: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT updated_at FROM checkpoints WHERE name = $1")
                .bind(&name)
                .fetch_optional(pool)
                .await?;
        let (lag_events, lag_seconds) = log::backlog(pool, checkpoint).await?;
        let lag_seconds = lag_seconds.max(0.0);
        statuses.push(ProjectionStatus {
            projection: projection.name().to_string(),
            checkpoint,
            checkpoint_updated_at: updated_at,
            head,
            lag_events,
            lag_seconds,
        });
    }
    Ok(statuses)
}

/// Samples every projection's status on an interval and publishes, per projection:
/// `medianest_projection_lag_events`, `medianest_projection_lag_seconds` and
/// `medianest_projection_events_per_second` (events the checkpoint moved past since the
/// previous sample, per second). It reads checkpoints from PostgreSQL, so it reports the
/// projections of every process, wherever `/metrics` is served.
pub struct LagMonitor {
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    interval: Duration,
}

impl LagMonitor {
    /// A monitor of `projections`, sampling every `interval`.
    pub fn new(pool: PgPool, projections: Vec<Arc<dyn Projection>>, interval: Duration) -> Self {
        Self {
            pool,
            projections,
            interval,
        }
    }

    /// Samples until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut previous: HashMap<String, (Cursor, Instant)> = HashMap::new();
        loop {
            if let Err(error) = self.sample(&mut previous).await {
                debug!(%error, "projection status unavailable");
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn sample(
        &self,
        previous: &mut HashMap<String, (Cursor, Instant)>,
    ) -> Result<(), StoreError> {
        for status in status(&self.pool, &self.projections).await? {
            let label = status.projection.clone();
            metrics::gauge!("medianest_projection_lag_events", "projection" => label.clone())
                .set(status.lag_events as f64);
            metrics::gauge!("medianest_projection_lag_seconds", "projection" => label.clone())
                .set(status.lag_seconds);
            let now = Instant::now();
            if let Some((before, at)) = previous.get(&label) {
                let moved = if status.checkpoint > *before {
                    log::count_between(&self.pool, *before, status.checkpoint).await?
                } else {
                    0
                };
                let seconds = now.duration_since(*at).as_secs_f64().max(0.001);
                metrics::gauge!("medianest_projection_events_per_second", "projection" => label.clone())
                    .set(moved as f64 / seconds);
            }
            previous.insert(label, (status.checkpoint, now));
        }
        Ok(())
    }
}
