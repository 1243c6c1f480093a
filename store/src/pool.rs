//! Pool set-up and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

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

/// Connects a pool to `url` (a `postgres://` URL).
///
/// # Errors
/// [`StoreError::Database`] when the URL is malformed or the server unreachable within 10 s.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
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
