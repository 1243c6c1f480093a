//! The `sessions` read model: one row per session. Authentication reads it: a bearer token
//! is valid when the row with its SHA-256 is active, unexpired, and its account (in the
//! `users` read model) is not disabled.
//!
//! Built from the PostgreSQL log ([`medianest_nats::LogFeed`]): rows keep token hashes, IPs
//! and user agents, which never leave PostgreSQL.
//!
//! Authentications are cached for a second ([`SessionLookups`]), and the cache is dropped
//! whenever this process's `sessions` or `users` projection commits, or a command that waited
//! for them (a logout, a revocation, a disabled account) answers: see
//! [`read_models_changed`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::user_session::UserSessionEvent;
use medianest_domain::Role;
use medianest_nats::FeedEvent;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::answers::{Answers, Changes};
use crate::users::stored_event;
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "sessions";

/// The `sessions` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionsProjection;

#[async_trait]
impl Projection for SessionsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["user_session"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sessions"]
    }

    /// A session may have ended: cached authentications are stale.
    fn committed(&self) {
        read_models_changed();
    }

    fn reads_private_fields(&self) -> bool {
        true
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        let (id, decoded) = stored_event::<UserSessionEvent>(event)?;
        let (sequence, position, time) =
            (event.event.sequence, event.cursor.position, event.time());
        let query = match decoded {
            UserSessionEvent::Started {
                user_id,
                method,
                device,
                ip,
                user_agent,
                expires_at,
                token_sha256,
            } => {
                sqlx::query(
                    "INSERT INTO sessions (id, version, user_id, status, method, device, ip,
                        user_agent, token_sha256, created_at, expires_at, refreshed_at, last_position)
                     VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9, $10, $9, $11)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(sequence)
                .bind(user_id.as_uuid())
                .bind(method.as_str())
                .bind(serde_json::to_value(device).unwrap_or(Value::Null))
                .bind(ip)
                .bind(user_agent)
                .bind(token_sha256)
                .bind(time)
                .bind(expires_at)
                .bind(position)
            }
            UserSessionEvent::Refreshed { expires_at } => sqlx::query(
                "UPDATE sessions SET version = $2, last_position = $3, expires_at = $4,
                        refreshed_at = $5
                  WHERE id = $1 AND version < $2",
            )
            .bind(id)
            .bind(sequence)
            .bind(position)
            .bind(expires_at)
            .bind(time),
            UserSessionEvent::Revoked { reason, .. } => sqlx::query(
                "UPDATE sessions SET version = $2, last_position = $3, status = 'revoked',
                        ended_at = $4, end_reason = $5
                  WHERE id = $1 AND version < $2",
            )
            .bind(id)
            .bind(sequence)
            .bind(position)
            .bind(time)
            .bind(reason.as_str()),
            UserSessionEvent::Expired => sqlx::query(
                "UPDATE sessions SET version = $2, last_position = $3, status = 'expired',
                        ended_at = $4, end_reason = 'expired'
                  WHERE id = $1 AND version < $2",
            )
            .bind(id)
            .bind(sequence)
            .bind(position)
            .bind(time),
        };
        query.execute(&mut *tx).await?;
        Ok(())
    }
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct SessionRow {
    /// Session id.
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    /// `plex` or `local`.
    pub method: String,
    /// `{"client_id","product","name","platform"}` (each optional).
    pub device: Value,
    /// The client's address at sign-in.
    pub ip: Option<String>,
    /// The client's `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// When started.
    pub created_at: DateTime<Utc>,
    /// When it ends unless used.
    pub expires_at: DateTime<Utc>,
    /// Last expiry extension (the start when never extended).
    pub refreshed_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// `logout`, `revoked`, `account_disabled` or `expired`.
    pub end_reason: Option<String>,
}

const COLUMNS: &str = "id, user_id, status, method, device, ip, user_agent, created_at, \
                       expires_at, refreshed_at, ended_at, end_reason";

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPrincipal {
    /// The session.
    pub session_id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// The account's role.
    pub role: Role,
    /// When the session ends unless used.
    pub expires_at: DateTime<Utc>,
    /// The last expiry extension.
    pub refreshed_at: DateTime<Utc>,
}

/// The principal of the session whose token hashes to `token_sha256`, when that session is
/// active and unexpired and its account exists and is not disabled.
///
/// # Errors
/// The database error.
pub async fn authenticate<'e>(
    db: impl PgExecutor<'e>,
    token_sha256: &str,
) -> Result<Option<SessionPrincipal>, sqlx::Error> {
    #[derive(FromRow)]
    struct Found {
        id: Uuid,
        user_id: Uuid,
        role: String,
        expires_at: DateTime<Utc>,
        refreshed_at: DateTime<Utc>,
    }
    let found: Option<Found> = sqlx::query_as(
        "SELECT s.id, s.user_id, u.role, s.expires_at, s.refreshed_at
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_sha256 = $1 AND s.status = 'active' AND s.expires_at > now()
            AND NOT u.disabled",
    )
    .bind(token_sha256)
    .fetch_optional(db)
    .await?;
    Ok(found.map(|f| SessionPrincipal {
        session_id: f.id,
        user_id: f.user_id,
        role: if f.role == "admin" {
            Role::Admin
        } else {
            Role::User
        },
        expires_at: f.expires_at,
        refreshed_at: f.refreshed_at,
    }))
}

/// Changes of the `sessions` and `users` read models in this process.
static CHANGES: Changes = Changes::new();

/// Marks every cached authentication of this process stale: called after the `sessions` or
/// `users` projection commits and after a command that waited for them, before it answers.
/// Process-wide, so a second app in the same process (tests) only costs lookups.
pub fn read_models_changed() {
    CHANGES.mark();
}

/// How long a cached authentication is used before it is looked up again; it is used at most
/// twice as long ([`crate::answers`]): 1 s is the bound on how late a change made elsewhere
/// (another instance's logout, a replay run by the CLI) is seen by this process.
pub const LOOKUP_TTL: Duration = Duration::from_millis(500);

/// [`authenticate`] with a cache of valid tokens (by SHA-256, at most 10,000, each looked up
/// again after [`LOOKUP_TTL`]; [`crate::answers`]): under load most requests of a signed-in client
/// skip the database. An entry is used only while no change of the read models was seen
/// since its lookup began ([`read_models_changed`]) and while its session is unexpired;
/// unknown or invalid tokens are never cached.
#[derive(Debug)]
pub struct SessionLookups {
    answers: Answers<String, SessionPrincipal>,
}

impl Default for SessionLookups {
    fn default() -> Self {
        Self {
            answers: Answers::new(&CHANGES, 10_000, LOOKUP_TTL),
        }
    }
}

impl SessionLookups {
    /// The principal of `token_sha256`, from the cache or the read models.
    ///
    /// # Errors
    /// The database error (shared with the callers that waited for the same lookup).
    pub async fn authenticate(
        &self,
        pool: &PgPool,
        token_sha256: &str,
    ) -> Result<Option<SessionPrincipal>, Arc<sqlx::Error>> {
        let found = self
            .answers
            .get_or_read(token_sha256.to_string(), || {
                authenticate(pool, token_sha256)
            })
            .await?;
        match found {
            Some(principal) if principal.expires_at <= Utc::now() => {
                // Expired since it was cached: what the read model says now.
                authenticate(pool, token_sha256).await.map_err(Arc::new)
            }
            found => Ok(found),
        }
    }
}

/// One session, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The sessions of `user_id`, newest first; only active ones unless `all`.
///
/// # Errors
/// The database error.
pub async fn of_user<'e>(
    db: impl PgExecutor<'e>,
    user_id: Uuid,
    all: bool,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sessions
          WHERE user_id = $1 AND ($2 OR (status = 'active' AND expires_at > now()))
          ORDER BY created_at DESC"
    ))
    .bind(user_id)
    .bind(all)
    .fetch_all(db)
    .await
}

/// Active sessions whose expiry has passed, oldest expiry first (the expirer's work list).
///
/// # Errors
/// The database error.
pub async fn due_for_expiry<'e>(
    db: impl PgExecutor<'e>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM sessions WHERE status = 'active' AND expires_at <= $1
          ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}
