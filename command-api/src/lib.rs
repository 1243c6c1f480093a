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

/// The OpenAPI description of the command routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(requests::submit, requests::on_request, webhooks::overseerr),
    components(schemas(medianest_http::openapi::Problem)),
    modifiers(&BearerAuth)
)]
pub struct CommandApiDoc;

/// Declares the `bearer` security scheme.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every command route, with state applied.
pub fn router(state: CommandState) -> Router {
    Router::new()
        .merge(requests::router())
        .merge(webhooks::router())
        .with_state(state)
}
