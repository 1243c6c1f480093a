//! The `users` read model: one row per account, for `GET /api/v1/me`, the admin user list and
//! authentication (role and disabled state).
//!
//! Built from the PostgreSQL log ([`medianest_nats::LogFeed`]), not from NATS: rows keep
//! e-mail addresses, which the public form of events leaves out. Rows carry the aggregate
//! `version`; an event only changes a row whose version is below its sequence.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::user_account::{SignInMethod, UserAccountEvent};
use medianest_nats::FeedEvent;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::runner::{finish_row_update, row_update};
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "users";

/// The `users` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsersProjection;

/// Decodes the stored payload of a log-fed event, and its aggregate id as a UUID.
///
/// # Errors
/// [`ProjectionError::Undecodable`] when the feed carries no stored payload (a NATS feed) or
/// the payload or id does not decode.
pub fn stored_event<E: DeserializeOwned>(event: &FeedEvent) -> Result<(Uuid, E), ProjectionError> {
    let undecodable = |reason| ProjectionError::undecodable(event, reason);
    let id = event
        .aggregate_id()
        .parse()
        .map_err(|e: uuid::Error| undecodable(e.into()))?;
    let payload = event.stored_payload.clone().ok_or_else(|| {
        undecodable("no stored payload: this projection needs the log feed".into())
    })?;
    let decoded = serde_json::from_value(payload).map_err(|e| undecodable(e.into()))?;
    Ok((id, decoded))
}

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["user_account"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    /// A role, a disabled flag or a name may have changed: cached authentications and
    /// dashboards are stale.
    fn committed(&self) {
        crate::sessions::read_models_changed();
        crate::dashboard::changes().mark();
    }

    fn reads_private_fields(&self) -> bool {
        true
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        let (id, decoded) = stored_event::<UserAccountEvent>(event)?;
        let (sequence, position, time) =
            (event.event.sequence, event.cursor.position, event.time());
        if let UserAccountEvent::Registered {
            plex_id,
            username,
            email,
            avatar,
            role,
            password_hash,
            ..
        } = decoded
        {
            let method = if password_hash.is_some() {
                SignInMethod::Local
            } else {
                SignInMethod::Plex
            };
            sqlx::query(
                "INSERT INTO users (id, version, plex_id, username, email, avatar, role, method,
                    created_at, updated_at, last_position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(sequence)
            .bind(plex_id.map(|p| i64::try_from(p).unwrap_or(i64::MAX)))
            .bind(username)
            .bind(email)
            .bind(avatar)
            .bind(role.as_str())
            .bind(method.as_str())
            .bind(time)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        let mut update = row_update("users", sequence, time, position);
        match decoded {
            UserAccountEvent::Registered { .. } => {}
            UserAccountEvent::ProfileUpdated {
                username,
                email,
                avatar,
            } => {
                for (column, value) in
                    [("username", username), ("email", email), ("avatar", avatar)]
                {
                    if let Some(value) = value {
                        update.push(format!(", {column} = ")).push_bind(value);
                    }
                }
            }
            UserAccountEvent::RoleChanged { role, .. } => {
                update.push(", role = ").push_bind(role.as_str());
            }
            UserAccountEvent::QuotaChanged { movie, tv, .. } => {
                let json = |q| {
                    serde_json::to_value(q)
                        .ok()
                        .filter(|v: &Value| !v.is_null())
                };
                update
                    .push(", movie_quota = ")
                    .push_bind(json(movie))
                    .push(", tv_quota = ")
                    .push_bind(json(tv));
            }
            UserAccountEvent::Disabled { .. } => {
                update.push(", disabled = true");
            }
            UserAccountEvent::Enabled { .. } => {
                update.push(", disabled = false");
            }
        }
        finish_row_update(update, id, sequence, tx).await?;
        Ok(())
    }
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct UserRow {
    /// Account id.
    pub id: Uuid,
    /// Aggregate version the row reflects.
    pub version: i64,
    /// plex.tv account id (Plex accounts).
    pub plex_id: Option<i64>,
    /// Username.
    pub username: String,
    /// E-mail (private: shown to the user and to admins only).
    pub email: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// `admin` or `user`.
    pub role: String,
    /// `plex` or `local`.
    pub method: String,
    /// Disabled by an admin.
    pub disabled: bool,
    /// `{"limit","days"}` or null (the default).
    pub movie_quota: Option<Value>,
    /// `{"limit","days"}` or null (the default).
    pub tv_quota: Option<Value>,
    /// When registered.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of the last event applied.
    pub last_position: i64,
}

/// One account, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Accounts in registration order (ids are UUIDv7), after `after`, at most `limit`.
///
/// # Errors
/// The database error.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await
}
