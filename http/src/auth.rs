//! The authentication seam: every route asks an [`Authenticator`] who a bearer token belongs
//! to. The token comes from `Authorization: Bearer <token>` or, for browsers, the
//! [`SESSION_COOKIE`] cookie (`HttpOnly; Secure; SameSite=Lax`).
//!
//! Implementations: [`crate::sessions::SessionAuthenticator`] (user sessions, with the
//! bootstrap token as a fallback while no admin account exists) and
//! [`StaticTokenAuthenticator`] (one token → the bootstrap admin).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use medianest_domain::Actor;
use uuid::Uuid;

use crate::{ApiError, ProblemType};

/// The id of the bootstrap admin identity (a fixed UUIDv7-shaped id).
pub const BOOTSTRAP_ADMIN_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);

/// The name of the session cookie set on sign-in.
pub const SESSION_COOKIE: &str = "medianest_session";

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The caller as commands see them.
    pub actor: Actor,
    /// The session the token belongs to (`None` for the bootstrap token).
    pub session_id: Option<Uuid>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone)]
pub enum AuthRejection {
    /// Unknown, malformed, expired or revoked token, or a disabled account: 401.
    Invalid,
    /// The caller made too many API calls: 429 with `Retry-After` (seconds).
    RateLimited {
        /// Seconds until the next call is allowed.
        retry_after: u64,
    },
    /// The session store could not be asked: 503. The database's error is kept (shared, as
    /// rejections are `Clone`).
    Unavailable(std::sync::Arc<sqlx::Error>),
}

impl From<AuthRejection> for ApiError {
    fn from(rejection: AuthRejection) -> Self {
        match rejection {
            AuthRejection::Invalid => ApiError::unauthenticated(),
            AuthRejection::RateLimited { retry_after } => {
                rate_limited("too many API calls; slow down", retry_after)
            }
            AuthRejection::Unavailable(cause) => {
                ApiError::unavailable(format!("cannot check the session: {cause}"), 1)
            }
        }
    }
}

/// Admins only: `Ok` for an admin caller, 403 `forbidden` with `why` (e.g. "only admins may
/// manage users") for anyone else. The routes' own check, before any work; the aggregates
/// decide the same rule for their commands (`medianest_domain::Actor`).
///
/// # Errors
/// 403 `forbidden` when `caller` is not an admin.
pub fn require_admin(caller: &Actor, why: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(why.to_string()))
    }
}

/// A 429 problem (`urn:medianest:problem:rate-limited`) with `Retry-After`.
pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> ApiError {
    ApiError::new(ProblemType::RateLimited, detail)
        .retry_after(retry_after.max(1))
        .with("retry_after", retry_after.max(1))
}

/// Resolves bearer tokens to principals.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The principal of `token`.
    ///
    /// # Errors
    /// [`AuthRejection`] saying why the call may not proceed.
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthRejection>;
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
    /// Accepts exactly `token` (an empty token accepts nothing).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }

    /// Whether `candidate` is the configured token.
    pub fn matches(&self, candidate: &str) -> bool {
        !self.token.is_empty() && constant_time_eq(candidate.as_bytes(), self.token.as_bytes())
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
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthRejection> {
        if self.matches(token) {
            Ok(Principal {
                actor: Actor::admin(BOOTSTRAP_ADMIN_ID),
                session_id: None,
            })
        } else {
            Err(AuthRejection::Invalid)
        }
    }
}

/// Router states that can authenticate.
pub trait HasAuthenticator {
    /// The authenticator.
    fn authenticator(&self) -> &Arc<dyn Authenticator>;
}

/// The token of a request: `Authorization: Bearer <token>` first, then the session cookie.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(token) = bearer {
        return Some(token.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The `Set-Cookie` value that hands a browser its session for `max_age_secs` seconds.
pub fn session_cookie(token: &str, max_age_secs: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_session_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "medianest_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    )
}

/// The authenticated caller of a request (extractor): 401 problem without a valid token,
/// 429 when the caller is over the API rate limit.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

/// The authenticated caller with its session (extractor), for routes about the session
/// itself (logout, "this device" in the session list).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    S: HasAuthenticator + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = request_token(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let principal = state.authenticator().authenticate(&token).await?;
        Ok(Self(principal))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: HasAuthenticator + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        Ok(Self(principal.actor))
    }
}
