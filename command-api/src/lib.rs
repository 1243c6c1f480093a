//! The command side over HTTP (DESIGN.md §7): media-request commands and the Overseerr
//! webhook. Answers carry the aggregate `version` (also as `ETag`) and the global `position`
//! of what was written, so callers can read their writes with `min_position`.

mod errors;
mod idempotency;
pub mod requests;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use medianest_http::auth::HasAuthenticator;
use medianest_http::Authenticator;
use medianest_store::media_requests::MediaRequests;
use sqlx::PgPool;

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
}

impl HasAuthenticator for CommandState {
    fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }
}

/// Every command route, with state applied.
pub fn router(state: CommandState) -> Router {
    Router::new()
        .merge(requests::router())
        .merge(webhooks::router())
        .with_state(state)
}
