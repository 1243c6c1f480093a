//! The command side over HTTP (docs/design.md §7): media-request commands, sign-in and sign-out
//! (local and Plex PIN), account and session management, YouTube download commands, and the
//! Overseerr and Plex webhooks, an admin's request for a full Plex library sync, and the
//! notification settings, preferences and deliveries. Answers carry the aggregate `version` (also as `ETag`) and the global `position`
//! of what was written, so callers can read their writes with `min_position`.

mod call;
pub mod downloads;
mod errors;
mod idempotency;
pub mod notifications;
pub mod plex_signin;
pub mod plex_sync;
pub mod plex_webhook;
pub mod requests;
pub mod signin;
pub mod url_check;
pub mod users;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use medianest_http::auth::HasAuthenticator;
use medianest_http::openapi::SharedAnswers;
use medianest_http::ratelimit::SignInLimiter;
use medianest_http::Authenticator;
use medianest_store::accounts::UserAccounts;
use medianest_store::media_requests::MediaRequests;
use medianest_store::sessions::UserSessions;
use sqlx::PgPool;

pub use plex_signin::PlexSignIn;

/// Shared state of the command routes.
#[derive(Clone)]
pub struct CommandState {
    /// The database.
    pub pool: PgPool,
    /// Media-request commands.
    pub requests: Arc<MediaRequests>,
    /// Who callers are.
    pub authenticator: Arc<dyn Authenticator>,
    /// The expected `Authorization` value of Overseerr's webhook; `None` refuses it.
    pub overseerr_webhook_secret: Option<Arc<str>>,
    /// Account commands.
    pub accounts: Arc<UserAccounts>,
    /// Session commands.
    pub sessions: Arc<UserSessions>,
    /// Plex sign-in; `None` answers it 503 (not configured).
    pub plex: Option<Arc<PlexSignIn>>,
    /// Whether a Plex sync worker runs (a Plex server is configured and
    /// `MEDIANEST_PLEX_SYNC` is on); otherwise `POST /api/v1/admin/plex/sync` answers 503.
    pub plex_sync: bool,
    /// Failed sign-ins per address and account.
    pub signin_limiter: Arc<SignInLimiter>,
    /// The longest wait of a sign-in or account command for the read models.
    pub read_model_wait: Duration,
    /// Whether `X-Forwarded-For` names the client (behind a reverse proxy).
    pub trust_proxy: bool,
    /// Download commands; `None` (no downloads root configured) answers them 503.
    pub downloads: Option<downloads::DownloadIntake>,
    /// The secret path segment of the Plex webhook; `None` refuses it.
    pub plex_webhook_secret: Option<Arc<str>>,
    /// Notification settings and deliveries; `None` (notifications off) answers the writes
    /// and tests 503.
    pub notifications: Option<notifications::NotificationSettings>,
}

impl HasAuthenticator for CommandState {
    fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }
}

/// The OpenAPI description of the command routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        requests::submit,
        requests::approve,
        requests::decline,
        requests::cancel,
        requests::retry,
        webhooks::overseerr,
        plex_webhook::plex,
        plex_sync::start_full_sync,
        downloads::queue,
        downloads::cancel,
        downloads::retry,
        signin::login,
        signin::logout,
        signin::create_pin,
        signin::exchange_pin,
        users::end_session,
        users::change_role,
        users::change_quota,
        users::disable,
        users::enable,
        notifications::list_channels,
        notifications::read_channel,
        notifications::put_channel,
        notifications::test_channel,
        notifications::list_deliveries,
        notifications::retry_delivery,
        notifications::read_preferences,
        notifications::put_preferences
    ),
    components(schemas(medianest_http::openapi::Problem)),
    modifiers(&SharedAnswers)
)]
pub struct CommandApiDoc;

/// Every command route, with state applied.
pub fn router(state: CommandState) -> Router {
    Router::new()
        .merge(requests::router())
        .merge(signin::router())
        .merge(users::router())
        .merge(webhooks::router())
        .merge(plex_webhook::router())
        .merge(plex_sync::router())
        .merge(downloads::router())
        .merge(notifications::router())
        .with_state(state)
}
