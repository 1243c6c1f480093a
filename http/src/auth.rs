//! The authentication seam: every route asks an [`Authenticator`] who the bearer token
//! belongs to. Until user sessions exist the only implementation is
//! [`StaticTokenAuthenticator`] (`MEDIANEST_ADMIN_TOKEN` → the bootstrap admin); sessions
//! replace it by implementing the same trait.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use medianest_domain::Actor;
use uuid::Uuid;

use crate::ApiError;

/// The id of the bootstrap admin identity (a fixed UUIDv7-shaped id).
pub const BOOTSTRAP_ADMIN_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);

/// Resolves bearer tokens to actors.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The actor of `token`, or `None` when the token is unknown, expired or revoked.
    async fn authenticate(&self, token: &str) -> Option<Actor>;
}

/// One configured token that maps to the bootstrap admin.
pub struct StaticTokenAuthenticator {
    token: String,
}

impl std::fmt::Debug for StaticTokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticTokenAuthenticator { token: <redacted> }")
    }
}

impl StaticTokenAuthenticator {
    /// Accepts exactly `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

/// Compares secrets without leaking the position of the first difference through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl Authenticator for StaticTokenAuthenticator {
    async fn authenticate(&self, token: &str) -> Option<Actor> {
        constant_time_eq(token.as_bytes(), self.token.as_bytes())
            .then(|| Actor::admin(BOOTSTRAP_ADMIN_ID))
    }
}

/// Router states that can authenticate.
pub trait HasAuthenticator {
    /// The authenticator.
    fn authenticator(&self) -> &Arc<dyn Authenticator>;
}

/// The authenticated caller of a request (extractor): 401 problem without a valid
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl<S> FromRequestParts<S> for Caller
where
    S: HasAuthenticator + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthenticated)?;
        state
            .authenticator()
            .authenticate(token)
            .await
            .map(Caller)
            .ok_or_else(ApiError::unauthenticated)
    }
}
