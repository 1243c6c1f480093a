//! Pool set-up and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// Errors of the store that are not a domain decision.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("undecodable stored data: {0}")]
    Decode(#[source] crate::BoxError),
}

/// A connection that sat in the pool longer than this is checked with a round trip before it
/// is handed out; one used more recently is handed out as it is.
///
/// sqlx checks every connection it hands out by default (`test_before_acquire`): one extra
/// round trip per statement, a third of the command path's round trips under load, where a
/// connection is back in use within milliseconds. A connection that went stale since (the
/// server restarted, the network cut it) fails its next statement instead; sqlx closes it
/// when it comes back (its check on release fails), and the caller answers 503 as for any
/// outage. A connection idle for longer, after which an outage is likelier, is still checked.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_millis(250);

/// Connects a pool to `url` (a `postgres://` URL), at most `max_connections` connections,
/// waiting at most 10 s for one; connections idle longer than [`CHECK_AFTER_IDLE`] are
/// checked before use.
///
/// # Errors
/// [`StoreError::Database`] when the URL is malformed or the server unreachable within 10 s.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.application_name("medianest"))
        .await?;
    Ok(pool)
}

/// Applies the SQL migrations of `migrations/` that the database has not seen yet.
///
/// # Errors
/// [`StoreError::Migrate`] when a migration fails or a seen one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}
