//! The session expirer: every interval it asks the `sessions` read model for active sessions
//! whose expiry has passed and records `Expire` on each. The aggregate decides on its own
//! state, so a session refreshed after the read model was read is left alone
//! (`NotExpired`), and one already ended writes nothing. Authentication never waits for this
//! worker: an expired session is refused by its expiry time alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use medianest_domain::user_session::{UserSessionCommand, UserSessionError};
use medianest_projections::sessions;
use medianest_store::sessions::UserSessions;
use medianest_store::{EventMetadata, ExecuteError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const WORKER: &str = "session-expirer";

/// The session expirer.
#[derive(Debug, Clone)]
pub struct SessionExpirer {
    pool: PgPool,
    sessions: Arc<UserSessions>,
    interval: Duration,
    batch: i64,
}

impl SessionExpirer {
    /// Looks for due sessions every `interval` (default in configuration: 60 s).
    pub fn new(pool: PgPool, sessions: Arc<UserSessions>, interval: Duration) -> Self {
        Self {
            pool,
            sessions,
            interval,
            batch: 500,
        }
    }

    /// Runs passes until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.pass().await {
                warn!(%error, "session expirer pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass: expires every due session; answers how many `Expired` events were written.
    ///
    /// # Errors
    /// The database error of the work-list query; failures of single sessions are logged.
    pub async fn pass(&self) -> Result<usize, sqlx::Error> {
        let due = sessions::due_for_expiry(&self.pool, Utc::now(), self.batch).await?;
        let mut expired = 0;
        for id in due {
            let metadata = EventMetadata::for_actor(&format!("system:{WORKER}"));
            match self
                .sessions
                .execute(
                    id.into(),
                    UserSessionCommand::Expire { now: Utc::now() },
                    &metadata,
                )
                .await
            {
                Ok(committed) => expired += committed.events.len(),
                Err(ExecuteError::Rejected(UserSessionError::NotExpired(at))) => {
                    debug!(%id, %at, "refreshed since the read model was read");
                }
                Err(error) => warn!(%error, %id, "cannot expire session"),
            }
        }
        Ok(expired)
    }
}
