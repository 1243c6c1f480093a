//! Notification settings and deliveries over HTTP (issue 14):
//!
//! - `GET /api/v1/admin/notifications/channels`, `GET`/`PUT …/channels/{channel}` and
//!   `POST …/channels/{channel}/test` (admins): the household's channels — enabled or not,
//!   the types each carries for the household, readable settings, and write-only secrets
//!   whose names alone are ever answered;
//! - `GET /api/v1/admin/notifications/deliveries?status=&channel=&cursor=&limit=` and
//!   `POST …/deliveries/{id}/retry` (admins): what the dispatcher did, newest first;
//! - `GET`/`PUT /api/v1/me/notifications`: a member's own channels, addresses and types.
//!
//! These are settings, not events: they live in their own tables (no aggregate, nothing
//! replayed), so their reads are served here beside their writes. Every change is checked
//! completely before anything is saved ([`ChannelConfig::parse`]: settings, secrets,
//! addresses, the destination address rule) and a refusal is a 4xx problem with a stable
//! type that changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use medianest_domain::notification::NotificationType;
use medianest_domain::Actor;
use medianest_http::auth::require_admin;
use medianest_http::json::Query;
use medianest_http::{ApiError, Caller, Json, ProblemType};
use medianest_integrations::notify::{
    secret_names, Channel, ChannelConfig, ConfigError, ConfigProblem, Message, Outcome, Secrets,
    Sender, To,
};
use medianest_store::notifications::{self as store, ChannelRow, DeliveryRow};
use medianest_workers::notifier::{default_choices, ChannelChoice};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::CommandState;

/// What the notification routes need: the sender (for tests, with the destination rule)
/// and the retry window a retried delivery gets.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// The channels' sender.
    pub sender: Sender,
    /// How long a retried delivery's transient failures are retried.
    pub retry_for: Duration,
    /// `MEDIANEST_PUBLIC_URL`, for the test message's link.
    pub public_url: Option<String>,
}

/// Why a non-admin is refused here.
const ADMINS_ONLY: &str = "only admins may manage notifications";

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/admin/notifications/channels", get(list_channels))
        .route(
            "/api/v1/admin/notifications/channels/{channel}",
            get(read_channel).put(put_channel),
        )
        .route(
            "/api/v1/admin/notifications/channels/{channel}/test",
            post(test_channel),
        )
        .route(
            "/api/v1/admin/notifications/deliveries",
            get(list_deliveries),
        )
        .route(
            "/api/v1/admin/notifications/deliveries/{id}/retry",
            post(retry_delivery),
        )
        .route(
            "/api/v1/me/notifications",
            get(read_preferences).put(put_preferences),
        )
}

fn settings(state: &CommandState) -> Result<&NotificationSettings, ApiError> {
    state.notifications.as_ref().ok_or_else(|| {
        ApiError::new(
            ProblemType::NotificationsDisabled,
            "this instance runs without notifications (MEDIANEST_NOTIFICATIONS=false)",
        )
    })
}

fn channel_of(raw: &str) -> Result<Channel, ApiError> {
    Channel::parse(raw).ok_or_else(|| {
        ApiError::new(
            ProblemType::UnknownChannel,
            format!(
                "channels are {}",
                Channel::ALL.map(Channel::as_str).join(", ")
            ),
        )
    })
}

fn config_problem(error: ConfigError) -> ApiError {
    let problem = match error.problem {
        ConfigProblem::InvalidChannelSettings => ProblemType::InvalidChannelSettings,
        ConfigProblem::InvalidEmail => ProblemType::InvalidEmail,
        ConfigProblem::InsecureDestination => ProblemType::InsecureDestination,
        ConfigProblem::PrivateDestination => ProblemType::PrivateDestination,
        ConfigProblem::MissingSecret => ProblemType::MissingSecret,
        ConfigProblem::SecretInSettings => ProblemType::SecretInSettings,
        ConfigProblem::FieldTooLong => ProblemType::FieldTooLong,
        ConfigProblem::InvalidAddress => ProblemType::InvalidAddress,
        ConfigProblem::NotAPersonalChannel => ProblemType::NotAPersonalChannel,
    };
    ApiError::new(problem, error.detail).with("field", error.field)
}

fn types_of(field: &str, raw: &[String]) -> Result<BTreeSet<NotificationType>, ApiError> {
    raw.iter()
        .map(|t| {
            NotificationType::parse(t).ok_or_else(|| {
                ApiError::new(
                    ProblemType::UnknownNotificationType,
                    format!(
                        "{t:?} is not a notification type; types are {}",
                        NotificationType::ALL
                            .map(NotificationType::as_str)
                            .join(", ")
                    ),
                )
                .with("field", field)
            })
        })
        .collect()
}

fn db(error: sqlx::Error) -> ApiError {
    ApiError::internal(&error)
}

/// A channel as an admin reads it: never a secret's value.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChannelView {
    /// `email`, `webhook`, `discord`, `slack`, `telegram`, `ntfy`, `gotify` or `pushover`.
    channel: String,
    /// Whether an admin has saved settings for it.
    configured: bool,
    /// Whether it sends anything.
    enabled: bool,
    /// The notification types it carries for the household.
    types: Vec<String>,
    /// The readable settings (see docs/operations.md, "Notifications").
    #[schema(value_type = Object)]
    settings: Value,
    /// The names of the write-only secrets that are set.
    secrets_set: Vec<String>,
    /// The names of the secrets the channel takes.
    secrets: Vec<String>,
    /// Whether members may choose it for themselves (with their own address).
    personal: bool,
    /// When it was last changed.
    updated_at: Option<DateTime<Utc>>,
    /// The admin who changed it.
    updated_by: Option<String>,
}

impl ChannelView {
    fn of(channel: Channel, row: Option<ChannelRow>) -> Self {
        let secrets = secret_names(channel)
            .iter()
            .map(|s| s.to_string())
            .collect();
        match row {
            Some(row) => Self {
                channel: channel.as_str().to_string(),
                configured: true,
                enabled: row.enabled,
                types: row.types,
                settings: row.settings,
                secrets_set: row.secrets_set,
                secrets,
                personal: channel.personal(),
                updated_at: Some(row.updated_at),
                updated_by: Some(row.updated_by),
            },
            None => Self {
                channel: channel.as_str().to_string(),
                configured: false,
                enabled: false,
                types: vec![],
                settings: json!({}),
                secrets_set: vec![],
                secrets,
                personal: channel.personal(),
                updated_at: None,
                updated_by: None,
            },
        }
    }
}

/// The list of channels.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChannelList {
    /// Every channel, configured or not.
    items: Vec<ChannelView>,
}

/// Every notification channel (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/notifications/channels",
    tag = "notifications",
    responses(
        (status = 200, description = "every channel", body = ChannelList),
        (status = 403, description = "not an admin (`forbidden`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_channels(
    State(state): State<CommandState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let mut rows: HashMap<String, ChannelRow> = store::channels(&state.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| (row.channel.clone(), row))
        .collect();
    let items = Channel::ALL
        .into_iter()
        .map(|c| ChannelView::of(c, rows.remove(c.as_str())))
        .collect();
    Ok(axum::Json(ChannelList { items }).into_response())
}

/// One notification channel (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/notifications/channels/{channel}",
    tag = "notifications",
    params(("channel" = String, Path, description = "the channel, e.g. `discord`")),
    responses(
        (status = 200, description = "the channel", body = ChannelView),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "no such channel (`unknown-channel`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn read_channel(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let channel = channel_of(&raw)?;
    let row = store::channel_with_secrets(&state.pool, channel.as_str())
        .await
        .map_err(db)?
        .map(|(row, _)| row);
    Ok(axum::Json(ChannelView::of(channel, row)).into_response())
}

/// Body of `PUT /api/v1/admin/notifications/channels/{channel}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelBody {
    /// Whether it sends anything.
    enabled: bool,
    /// The types it carries for the household (needs a household destination).
    #[serde(default)]
    types: Vec<String>,
    /// The readable settings of the channel (the whole set; see docs/operations.md).
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Value,
    /// Secrets to set (a string) or remove (`null`); the others are kept.
    #[serde(default)]
    #[schema(value_type = Object)]
    secrets: Value,
}

/// Configure a notification channel (admins).
#[utoipa::path(
    put,
    path = "/api/v1/admin/notifications/channels/{channel}",
    tag = "notifications",
    params(("channel" = String, Path, description = "the channel, e.g. `discord`")),
    request_body = ChannelBody,
    responses(
        (status = 200, description = "saved", body = ChannelView),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "no such channel (`unknown-channel`)"),
        (status = 422, description = "refused, nothing saved: `invalid-channel-settings`, `invalid-email`, `insecure-destination`, `private-destination`, `missing-secret`, `secret-in-settings`, `field-too-long`, `invalid-address`, `unknown-notification-type`, `no-household-destination`"),
        (status = 503, description = "notifications are off (`notifications-disabled`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_channel(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    Json(body): Json<ChannelBody>,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let channel = channel_of(&raw)?;
    let notify = settings(&state)?;
    let types = types_of("types", &body.types)?;
    if !(body.settings.is_object() || body.settings.is_null()) {
        return Err(
            ApiError::new(ProblemType::InvalidChannelSettings, "must be an object")
                .with("field", "settings"),
        );
    }
    let existing: Secrets = store::channel_with_secrets(&state.pool, channel.as_str())
        .await
        .map_err(db)?
        .and_then(|(_, secrets)| serde_json::from_value(secrets).ok())
        .unwrap_or_default();
    let changes = if body.secrets.is_null() {
        json!({})
    } else {
        body.secrets
    };
    let secrets = existing.merged(&changes).map_err(config_problem)?;
    let config = ChannelConfig::parse(
        channel,
        &body.settings,
        secrets.clone(),
        notify.sender.policy(),
    )
    .await
    .map_err(config_problem)?;
    if !types.is_empty() && !config.has_household_destination() {
        return Err(ApiError::new(ProblemType::NoHouseholdDestination, format!("{channel} has no household destination for household types (see docs/operations.md)"),
        )
        .with("field", "types"));
    }
    // The settings as parsed: defaults filled in, nothing unknown kept.
    let settings = match &config {
        ChannelConfig::Email(s, _) => serde_json::to_value(s),
        ChannelConfig::Webhook(s, _) => serde_json::to_value(s),
        ChannelConfig::Telegram(s, _) => serde_json::to_value(s),
        ChannelConfig::Ntfy(s, _) => serde_json::to_value(s),
        ChannelConfig::Gotify(s, _) => serde_json::to_value(s),
        ChannelConfig::Pushover(s, _) => serde_json::to_value(s),
        ChannelConfig::Discord(_) | ChannelConfig::Slack(_) => Ok(json!({})),
    }
    .unwrap_or_default();
    let row = ChannelRow {
        channel: channel.as_str().to_string(),
        enabled: body.enabled,
        types: types.iter().map(|t| t.as_str().to_string()).collect(),
        settings,
        secrets_set: secrets.names(),
        updated_at: Utc::now(),
        updated_by: caller.id.to_string(),
    };
    store::put_channel(
        &state.pool,
        &row,
        &serde_json::to_value(&secrets).unwrap_or_default(),
    )
    .await
    .map_err(db)?;
    tracing::info!(%channel, enabled = row.enabled, by = %caller.id, "notification channel saved");
    Ok(axum::Json(ChannelView::of(channel, Some(row))).into_response())
}

/// Answer of a test send.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestAnswer {
    /// Always true (a failure is a 502 problem).
    sent: bool,
    /// Where it went: `household`, or the caller's own address on the channel.
    to: String,
}

/// Send a test message through a channel (admins): to its household destination, or else
/// to the caller's own address on it (e-mail: the account's).
#[utoipa::path(
    post,
    path = "/api/v1/admin/notifications/channels/{channel}/test",
    tag = "notifications",
    params(("channel" = String, Path, description = "the channel, e.g. `discord`")),
    responses(
        (status = 200, description = "the service accepted the message", body = TestAnswer),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "no such channel (`unknown-channel`)"),
        (status = 409, description = "the channel is not configured (`channel-not-configured`)"),
        (status = 422, description = "nowhere to send a test (`no-test-destination`), or the saved settings are refused (see PUT)"),
        (status = 502, description = "the service refused or failed (`notification-failed`, with its error)"),
        (status = 503, description = "notifications are off (`notifications-disabled`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn test_channel(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let channel = channel_of(&raw)?;
    let notify = settings(&state)?;
    let Some((row, secrets)) = store::channel_with_secrets(&state.pool, channel.as_str())
        .await
        .map_err(db)?
    else {
        return Err(ApiError::new(
            ProblemType::ChannelNotConfigured,
            format!("save the settings of {channel} first"),
        ));
    };
    let secrets: Secrets = serde_json::from_value(secrets).unwrap_or_default();
    let config = ChannelConfig::parse(channel, &row.settings, secrets, notify.sender.policy())
        .await
        .map_err(config_problem)?;
    let own: Option<String> = match caller.id.user_id() {
        Some(id) => own_address(&state, id.into(), channel).await?,
        None => None,
    };
    let to = if config.has_household_destination() {
        To::Household
    } else if let Some(address) = own.as_deref() {
        To::Member(address)
    } else {
        return Err(ApiError::new(
            ProblemType::NoTestDestination,
            format!("{channel} has no household destination and you have no address on it"),
        ));
    };
    let message = Message {
        notification_type: "test".to_string(),
        title: "MediaNest test notification".to_string(),
        body: format!("If you can read this, MediaNest can reach you on {channel}."),
        url: notify.public_url.clone(),
        image_url: None,
        time: Utc::now().to_rfc3339(),
        data: json!({ "test": true }),
    };
    match notify
        .sender
        .send(&config, to, &message, &Uuid::now_v7().to_string())
        .await
    {
        Outcome::Sent => Ok(axum::Json(TestAnswer {
            sent: true,
            to: match to {
                To::Household => "household".to_string(),
                To::Member(address) => address.to_string(),
            },
        })
        .into_response()),
        Outcome::Transient { error, .. } | Outcome::Permanent { error } => {
            Err(ApiError::new(ProblemType::NotificationFailed, error))
        }
    }
}

/// The caller's own address on `channel`: from their preferences, or the account's e-mail.
async fn own_address(
    state: &CommandState,
    id: Uuid,
    channel: Channel,
) -> Result<Option<String>, ApiError> {
    let (choices, email) = choices_of(state, id).await?;
    Ok(choices
        .get(&channel)
        .and_then(|c| c.address.clone())
        .or_else(|| (channel == Channel::Email).then_some(email).flatten()))
}

/// Query of the deliveries list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    cursor: Option<Uuid>,
    #[serde(default)]
    limit: Option<i64>,
}

/// One delivery as an admin reads it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// The delivery's id (the webhook's `webhook-id` is `msg_<id>`).
    id: Uuid,
    /// The event it came from (`service_down:<service>:<time>` for service health).
    event_id: String,
    /// The notification type.
    #[serde(rename = "type")]
    notification_type: String,
    /// A user id, or `household`.
    recipient: String,
    /// The channel.
    channel: String,
    /// `pending`, `retrying`, `sent` or `dead`.
    status: String,
    /// Attempts made.
    attempts: i32,
    /// The message's one line.
    title: String,
    /// The last failure, if any.
    last_error: Option<String>,
    /// When the next attempt is due (pending, retrying).
    next_attempt_at: Option<DateTime<Utc>>,
    /// When retrying stops.
    give_up_at: DateTime<Utc>,
    /// When it was recorded.
    created_at: DateTime<Utc>,
    /// When it was sent.
    sent_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        let open = row.status == "pending" || row.status == "retrying";
        Self {
            id: row.id,
            event_id: row.event_id,
            notification_type: row.notification_type,
            recipient: row.recipient,
            channel: row.channel,
            title: row.message["title"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            next_attempt_at: open.then_some(row.next_attempt_at),
            give_up_at: row.give_up_at,
            created_at: row.created_at,
            sent_at: row.sent_at,
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    /// Newest first.
    items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<Uuid>,
}

const STATUSES: [&str; 4] = ["pending", "retrying", "sent", "dead"];

/// The notification deliveries, newest first (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/notifications/deliveries",
    tag = "notifications",
    params(
        ("status" = Option<String>, Query, description = "`pending`, `retrying`, `sent` or `dead`"),
        ("channel" = Option<String>, Query, description = "a channel, e.g. `webhook`"),
        ("cursor" = Option<Uuid>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200 (default 50)"),
    ),
    responses(
        (status = 200, description = "a page", body = DeliveryPage),
        (status = 400, description = "an unknown or malformed parameter (`malformed-request`)"),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 422, description = "an unknown status or channel, or a limit out of range (`validation-failed`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_deliveries(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Query(params): Query<DeliveryParams>,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    if let Some(status) = &params.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid(
                "status",
                format!("status is one of {}", STATUSES.join(", ")),
            ));
        }
    }
    if let Some(channel) = &params.channel {
        if Channel::parse(channel).is_none() {
            return Err(ApiError::invalid("channel", "no such channel"));
        }
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit is 1 to 200"));
    }
    let mut rows = store::list(
        &state.pool,
        params.status.as_deref(),
        params.channel.as_deref(),
        params.cursor,
        limit + 1,
    )
    .await
    .map_err(db)?;
    let next_cursor = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(axum::Json(DeliveryPage {
        items: rows.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    })
    .into_response())
}

/// Send a `dead` (or `retrying`) delivery again now, with the channel's current settings
/// (admins).
#[utoipa::path(
    post,
    path = "/api/v1/admin/notifications/deliveries/{id}/retry",
    tag = "notifications",
    params(("id" = Uuid, Path, description = "delivery id")),
    responses(
        (status = 202, description = "due now; the dispatcher sends it within a second or so", body = DeliveryView),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "no such delivery (`not-found`)"),
        (status = 409, description = "already sent, or already due (`delivery-not-retryable`)"),
        (status = 503, description = "notifications are off (`notifications-disabled`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry_delivery(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let notify = settings(&state)?;
    let id = Uuid::parse_str(&raw).map_err(|_| ApiError::not_found("no such delivery"))?;
    let give_up_at = Utc::now() + chrono::Duration::from_std(notify.retry_for).unwrap_or_default();
    let row = store::retry_now(&state.pool, id, give_up_at)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    if row.status != "pending" || row.next_attempt_at > Utc::now() {
        return Err(ApiError::new(
            ProblemType::DeliveryNotRetryable,
            format!("the delivery is {}", row.status),
        ));
    }
    tracing::info!(%id, by = %caller.id, "delivery retried");
    Ok((StatusCode::ACCEPTED, axum::Json(DeliveryView::from(row))).into_response())
}

/// A member's notification preferences.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preferences {
    /// Per personal channel (`email`, `discord`, `telegram`, `ntfy`, `pushover`): the
    /// address there (e-mail: the account's when absent; Discord: the user id to mention;
    /// Telegram: the chat id; ntfy: the topic; Pushover: the user key) and the types wanted.
    #[schema(value_type = Object)]
    channels: Value,
}

/// A member's preferences as read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PreferencesView {
    /// As in the `PUT` body; the defaults when `customised` is false.
    #[schema(value_type = Object)]
    channels: Value,
    /// Whether the member has chosen (else the defaults apply).
    customised: bool,
    /// The personal channels the household has enabled (the others send nothing).
    enabled_channels: Vec<String>,
}

/// The caller's preferences and account e-mail.
async fn choices_of(
    state: &CommandState,
    id: Uuid,
) -> Result<(HashMap<Channel, ChannelChoice>, Option<String>), ApiError> {
    let people = store::recipients(&state.pool, &[id], false)
        .await
        .map_err(db)?;
    let person = people.into_iter().next();
    let email = person.as_ref().and_then(|p| p.email.clone());
    let admin = person.as_ref().is_some_and(|p| p.admin);
    let stored = person.and_then(|p| p.preferences);
    let choices = stored
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_else(|| default_choices(admin, email.is_some()));
    Ok((choices, email))
}

async fn preferences_view(state: &CommandState, id: Uuid) -> Result<PreferencesView, ApiError> {
    let customised = store::preferences(&state.pool, id)
        .await
        .map_err(db)?
        .is_some();
    let (choices, _) = choices_of(state, id).await?;
    let enabled_channels = store::channels(&state.pool)
        .await
        .map_err(db)?
        .into_iter()
        .filter(|c| c.enabled && Channel::parse(&c.channel).is_some_and(Channel::personal))
        .map(|c| c.channel)
        .collect();
    let channels: std::collections::BTreeMap<Channel, ChannelChoice> =
        choices.into_iter().collect();
    Ok(PreferencesView {
        channels: serde_json::to_value(channels).unwrap_or_default(),
        customised,
        enabled_channels,
    })
}

fn caller_uuid(caller: &Actor) -> Result<Uuid, ApiError> {
    caller
        .id
        .user_id()
        .map(Uuid::from)
        .ok_or_else(|| ApiError::forbidden("only members have notification preferences"))
}

/// The caller's notification preferences.
#[utoipa::path(
    get,
    path = "/api/v1/me/notifications",
    tag = "notifications",
    responses(
        (status = 200, description = "the preferences", body = PreferencesView),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn read_preferences(
    State(state): State<CommandState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let id = caller_uuid(&caller)?;
    Ok(axum::Json(preferences_view(&state, id).await?).into_response())
}

/// Replace the caller's notification preferences.
#[utoipa::path(
    put,
    path = "/api/v1/me/notifications",
    tag = "notifications",
    request_body = Preferences,
    responses(
        (status = 200, description = "saved", body = PreferencesView),
        (status = 400, description = "not a JSON object of this shape (`malformed-request`)"),
        (status = 422, description = "refused, nothing saved: `unknown-channel`, `not-a-personal-channel`, `invalid-email`, `invalid-address`, `field-too-long`, `unknown-notification-type`, `validation-failed` (an address missing)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_preferences(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Json(body): Json<Preferences>,
) -> Result<Response, ApiError> {
    let id = caller_uuid(&caller)?;
    let Some(object) = body.channels.as_object() else {
        return Err(ApiError::invalid("channels", "must be an object"));
    };
    let mut choices: std::collections::BTreeMap<Channel, ChannelChoice> = Default::default();
    for (name, raw) in object {
        let field = format!("channels.{name}");
        let channel = Channel::parse(name).ok_or_else(|| {
            ApiError::new(
                ProblemType::UnknownChannelChoice,
                format!("{name:?} is not a channel"),
            )
            .with("field", field.clone())
        })?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawChoice {
            #[serde(default)]
            address: Option<String>,
            #[serde(default)]
            types: Vec<String>,
        }
        let choice: RawChoice = serde_json::from_value(raw.clone())
            .map_err(|e| ApiError::invalid(&field, e.to_string()))?;
        let types = types_of(&format!("{field}.types"), &choice.types)?;
        match &choice.address {
            Some(address) => channel.check_address(address).map_err(config_problem)?,
            None if channel == Channel::Email => {}
            None if channel.personal() => {
                return Err(ApiError::invalid(
                    &format!("{field}.address"),
                    format!("{channel} needs your address on it"),
                ))
            }
            None => channel.check_address("").map_err(config_problem)?,
        }
        choices.insert(
            channel,
            ChannelChoice {
                address: choice.address,
                types,
            },
        );
    }
    store::put_preferences(
        &state.pool,
        id,
        &serde_json::to_value(&choices).unwrap_or_default(),
    )
    .await
    .map_err(db)?;
    Ok(axum::Json(preferences_view(&state, id).await?).into_response())
}
