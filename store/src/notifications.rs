//! Notification settings and deliveries (issue 14; migration `…_notifications.sql`): the
//! household's channel settings, each member's preferences, and the delivery table the
//! notifier saga writes and its dispatcher drains.
//!
//! Invariants:
//! - a delivery is unique per `(event_id, recipient, channel)`: a redelivered event inserts
//!   nothing ([`insert_deliveries`]), so a delivery already `sent` is never sent again;
//! - a dispatcher claims due deliveries for a while (`claimed_until`, `FOR UPDATE SKIP
//!   LOCKED`), so two dispatchers never send the same one at once, and one that crashed
//!   mid-send leaves it to be claimed again when the claim runs out;
//! - secrets are read only by [`channel_with_secrets`]; the read answers use [`channels`],
//!   which selects their names, never their values.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// A channel's settings as an admin sees them (no secret values).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChannelRow {
    /// The channel (`email`, `discord`, …).
    pub channel: String,
    /// Whether it sends anything.
    pub enabled: bool,
    /// The types it carries for the household.
    pub types: Vec<String>,
    /// Readable settings.
    pub settings: Value,
    /// The names of the secrets that are set.
    pub secrets_set: Vec<String>,
    /// When and by whom it was last changed.
    pub updated_at: DateTime<Utc>,
    /// The admin's user id.
    pub updated_by: String,
}

/// The columns of [`ChannelRow`]: the secrets' names, never their values.
const CHANNEL_COLUMNS: &str = "channel, enabled, types, settings,
     ARRAY(SELECT jsonb_object_keys(secrets) ORDER BY 1) AS secrets_set, updated_at, updated_by";

/// Every configured channel, without secret values.
///
/// # Errors
/// The database error.
pub async fn channels(pool: &PgPool) -> Result<Vec<ChannelRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels ORDER BY channel"
    ))
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct WithSecrets {
    #[sqlx(flatten)]
    row: ChannelRow,
    secrets: Value,
}

/// One channel's row and its secrets (for sending and for merging an update), if configured.
///
/// # Errors
/// The database error.
pub async fn channel_with_secrets(
    pool: &PgPool,
    channel: &str,
) -> Result<Option<(ChannelRow, Value)>, sqlx::Error> {
    let found: Option<WithSecrets> = sqlx::query_as(&format!(
        "SELECT {CHANNEL_COLUMNS}, secrets FROM notification_channels WHERE channel = $1"
    ))
    .bind(channel)
    .fetch_optional(pool)
    .await?;
    Ok(found.map(|f| (f.row, f.secrets)))
}

/// Writes a channel's settings and secrets (the whole row).
///
/// # Errors
/// The database error.
pub async fn put_channel(
    pool: &PgPool,
    row: &ChannelRow,
    secrets: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_channels (channel, enabled, types, settings, secrets, updated_at, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (channel) DO UPDATE SET enabled = EXCLUDED.enabled, types = EXCLUDED.types,
             settings = EXCLUDED.settings, secrets = EXCLUDED.secrets,
             updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
    )
    .bind(&row.channel)
    .bind(row.enabled)
    .bind(&row.types)
    .bind(&row.settings)
    .bind(secrets)
    .bind(row.updated_at)
    .bind(&row.updated_by)
    .execute(pool)
    .await?;
    Ok(())
}

/// A member's stored preferences, if they chose any.
///
/// # Errors
/// The database error.
pub async fn preferences(pool: &PgPool, user_id: Uuid) -> Result<Option<Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT preferences FROM notification_preferences WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// Replaces a member's preferences.
///
/// # Errors
/// The database error.
pub async fn put_preferences(
    pool: &PgPool,
    user_id: Uuid,
    preferences: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, preferences, updated_at)
         VALUES ($1, $2, now())
         ON CONFLICT (user_id) DO UPDATE SET preferences = EXCLUDED.preferences,
             updated_at = EXCLUDED.updated_at",
    )
    .bind(user_id)
    .bind(preferences)
    .execute(pool)
    .await?;
    Ok(())
}

/// A possible recipient, from the `users` read model with their preferences.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    /// The user id.
    pub id: Uuid,
    /// The account's e-mail address, if known.
    pub email: Option<String>,
    /// Whether the account is an admin.
    pub admin: bool,
    /// Their stored preferences (`None`: the defaults).
    pub preferences: Option<Value>,
}

/// The enabled accounts among `ids` plus, with `admins`, every enabled admin; disabled
/// accounts are left out (they get nothing).
///
/// # Errors
/// The database error.
pub async fn recipients(
    pool: &PgPool,
    ids: &[Uuid],
    admins: bool,
) -> Result<Vec<Recipient>, sqlx::Error> {
    let rows: Vec<(Uuid, Option<String>, String, Option<Value>)> = sqlx::query_as(
        "SELECT u.id, u.email, u.role, p.preferences
           FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
          WHERE NOT u.disabled AND (u.id = ANY($1) OR ($2 AND u.role = 'admin'))
          ORDER BY u.id",
    )
    .bind(ids)
    .bind(admins)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email, role, preferences)| Recipient {
            id,
            email,
            admin: role == "admin",
            preferences,
        })
        .collect())
}

/// A delivery to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The event's id.
    pub event_id: String,
    /// The event's global position.
    pub event_position: i64,
    /// The notification type.
    pub notification_type: String,
    /// A user id, or `household`.
    pub recipient: String,
    /// The channel.
    pub channel: String,
    /// The personal address (`None` for the household).
    pub address: Option<String>,
    /// The rendered message.
    pub message: Value,
    /// When transient failures stop being retried.
    pub give_up_at: DateTime<Utc>,
}

/// Records deliveries, each at most once per `(event, recipient, channel)`; answers how many
/// were new.
///
/// # Errors
/// The database error (nothing is recorded then).
pub async fn insert_deliveries(pool: &PgPool, new: &[NewDelivery]) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    for d in new {
        inserted += sqlx::query(
            "INSERT INTO notification_deliveries
                 (id, event_id, event_position, type, recipient, channel, address, message,
                  status, next_attempt_at, give_up_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', now(), $9, now(), now())
             ON CONFLICT (event_id, recipient, channel) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(&d.event_id)
        .bind(d.event_position)
        .bind(&d.notification_type)
        .bind(&d.recipient)
        .bind(&d.channel)
        .bind(&d.address)
        .bind(&d.message)
        .bind(d.give_up_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    /// Its id (UUIDv7).
    pub id: Uuid,
    /// The event it came from.
    pub event_id: String,
    /// The notification type.
    #[sqlx(rename = "type")]
    pub notification_type: String,
    /// A user id, or `household`.
    pub recipient: String,
    /// The channel.
    pub channel: String,
    /// The personal address, if any.
    pub address: Option<String>,
    /// The rendered message.
    pub message: Value,
    /// `pending`, `retrying`, `sent` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending, retrying).
    pub next_attempt_at: DateTime<Utc>,
    /// When retrying stops.
    pub give_up_at: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "id, event_id, type, recipient, channel, address, message, status,
     attempts, next_attempt_at, give_up_at, last_error, created_at, updated_at, sent_at";

/// Claims up to `limit` due deliveries of `channel` for `hold_secs` seconds, oldest first.
///
/// # Errors
/// The database error.
pub async fn claim_due(
    pool: &PgPool,
    channel: &str,
    limit: i64,
    hold_secs: f64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE notification_deliveries SET claimed_until = now() + make_interval(secs => $3)
          WHERE id IN (SELECT id FROM notification_deliveries
                        WHERE channel = $1 AND status IN ('pending', 'retrying')
                          AND next_attempt_at <= now()
                          AND (claimed_until IS NULL OR claimed_until < now())
                        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind(channel)
    .bind(limit)
    .bind(hold_secs)
    .fetch_all(pool)
    .await
}

/// The channels that have deliveries due now.
///
/// # Errors
/// The database error.
pub async fn channels_due(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT channel FROM notification_deliveries
          WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
            AND (claimed_until IS NULL OR claimed_until < now())",
    )
    .fetch_all(pool)
    .await
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Sent.
    Sent,
    /// Failed transiently: try again at `next_at` (or `dead` when that is past `give_up_at`).
    Retry {
        /// The error.
        error: String,
        /// When to try again.
        next_at: DateTime<Utc>,
    },
    /// Failed for good.
    Dead {
        /// The error.
        error: String,
    },
}

/// Records an attempt on delivery `id`; answers the status it now has.
///
/// # Errors
/// The database error.
pub async fn record_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: &Attempt,
) -> Result<String, sqlx::Error> {
    let (status, error, next_at) = match attempt {
        Attempt::Sent => ("sent", None, None),
        Attempt::Retry { error, next_at } => ("retrying", Some(error.as_str()), Some(*next_at)),
        Attempt::Dead { error } => ("dead", Some(error.as_str()), None),
    };
    sqlx::query_scalar(
        "UPDATE notification_deliveries
            SET status = CASE WHEN $2 = 'retrying' AND $4 > give_up_at THEN 'dead' ELSE $2 END,
                attempts = attempts + 1,
                last_error = COALESCE($3, last_error),
                next_attempt_at = COALESCE($4, next_attempt_at),
                sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                claimed_until = NULL, updated_at = now()
          WHERE id = $1
          RETURNING status",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(next_at)
    .fetch_one(pool)
    .await
}

/// Deliveries, newest first, optionally of one status and channel, before cursor `before`.
///
/// # Errors
/// The database error.
pub async fn list(
    pool: &PgPool,
    status: Option<&str>,
    channel: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
            AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4"
    ))
    .bind(status)
    .bind(channel)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Makes a `dead` or `retrying` delivery due now, with a new retry window ending at
/// `give_up_at`; answers it, or `None` when there is no such delivery. A `sent` or `pending`
/// one is answered unchanged.
///
/// # Errors
/// The database error.
pub async fn retry_now(
    pool: &PgPool,
    id: Uuid,
    give_up_at: DateTime<Utc>,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let updated: Option<DeliveryRow> = sqlx::query_as(&format!(
        "UPDATE notification_deliveries
            SET status = 'pending', next_attempt_at = now(), give_up_at = $2,
                claimed_until = NULL, updated_at = now()
          WHERE id = $1 AND status IN ('dead', 'retrying')
          RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind(id)
    .bind(give_up_at)
    .fetch_optional(pool)
    .await?;
    if updated.is_some() {
        return Ok(updated);
    }
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// How many deliveries are `dead`.
///
/// # Errors
/// The database error.
pub async fn count_dead(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM notification_deliveries WHERE status = 'dead'")
        .fetch_one(pool)
        .await
}
