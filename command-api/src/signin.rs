//! Signing in and out (docs/design.md §3 UserSession/UserAccount, §6 Plex PIN login):
//!
//! - `POST /api/v1/auth/login` `{"username","password"}`: a local account (argon2id).
//! - `POST /api/v1/auth/plex/pins`: creates a PIN at plex.tv; answers its `id`, `code` and
//!   the app.plex.tv URL where the user authorises it.
//! - `POST /api/v1/auth/plex/pins/{id}/session`: exchanges an authorised PIN for a session.
//!   The Plex account must reach the configured Plex Media Server (it appears, with that
//!   server's `machineIdentifier`, among the account's plex.tv resources — owned or shared);
//!   the owner, or the very first account, becomes an admin, others users.
//! - `POST /api/v1/auth/logout`: ends the caller's session.
//!
//! A sign-in answers `200 {"token","session_id","expires_at","user":{"id","username","role"}}`
//! and sets the session cookie, and only once the `users` and `sessions` read models hold
//! the new session, so the next request with the token succeeds. Failed sign-ins count
//! against the account and, with a separate higher limit, the caller's address
//! ([`SignInLimiter`]); past either limit an attempt is answered 429 before any password is
//! checked. A sign-in that succeeds clears its account's failures, never the address's.
//! A PIN exchange counts against the address alone until plex.tv names the account.
//!
//! The handlers are the HTTP side only: the PIN's plex.tv steps and the rule of who may sign
//! in are [`crate::plex_signin::PlexSignIn`]'s, and what a Plex sign-in records is
//! `UserAccounts::sign_in_with_plex`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use medianest_domain::user_account::SignInMethod;
use medianest_domain::user_session::{Device, RevokeReason, UserSessionCommand};
use medianest_domain::{ActorId, Role};
use medianest_http::auth::{cleared_session_cookie, rate_limited, session_cookie};
use medianest_http::ratelimit::SignInKey;
use medianest_http::{ApiError, Authenticated, Json, ProblemType};
use medianest_integrations::plex::PlexError;
use medianest_store::accounts::{Identity, PlexSignInError};
use medianest_store::checkpoint::{self, WaitOutcome};
use medianest_store::credentials::verify_password;
use medianest_store::sessions::NewSession;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::plex_signin::PlexSignIn;
use crate::requests::http_metadata;
use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/plex/pins", post(create_pin))
        .route("/api/v1/auth/plex/pins/{id}/session", post(exchange_pin))
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    /// The local username.
    username: String,
    /// The password.
    password: String,
}

/// The account of a new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionUser {
    id: Uuid,
    username: String,
    /// `admin` or `user`.
    role: String,
}

/// A new session. The token is shown here once; send it as `Authorization: Bearer <token>`
/// (browsers also get it as the `medianest_session` cookie).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionAnswer {
    token: String,
    session_id: Uuid,
    expires_at: DateTime<Utc>,
    user: SessionUser,
}

/// A PIN to authorise at app.plex.tv.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PinAnswer {
    /// The PIN id, for `POST /api/v1/auth/plex/pins/{id}/session`.
    id: u64,
    /// The code the user confirms.
    code: String,
    /// Open this in a browser to authorise the PIN.
    auth_url: String,
    /// When plex.tv forgets the PIN.
    expires_at: Option<DateTime<Utc>>,
}

/// The caller's address: the peer, or with `trust_proxy` the last `X-Forwarded-For` entry
/// (the one the reverse proxy in front of MediaNest added).
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_proxy: bool,
) -> Option<String> {
    let forwarded = trust_proxy
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    forwarded.or_else(|| peer.map(|addr| addr.ip().to_string()))
}

/// The peer address of the connection, when the server records it
/// (`into_make_service_with_connect_info`); never a rejection.
pub(crate) struct ClientAddr(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// The device a client describes with Plex's client headers.
fn device(headers: &HeaderMap) -> Device {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Device {
        client_id: header("x-plex-client-identifier"),
        product: header("x-plex-product"),
        name: header("x-plex-device-name"),
        platform: header("x-plex-platform"),
    }
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ProblemType::InvalidCredentials,
        "unknown username or wrong password",
    )
}

fn account_disabled() -> ApiError {
    ApiError::new(
        ProblemType::AccountDisabled,
        "an admin disabled this account",
    )
}

fn store_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&error)
}

/// Starts a session for `user_id`, waits for the read models, and answers it with a cookie.
async fn open_session(
    state: &CommandState,
    headers: &HeaderMap,
    ip: Option<String>,
    user: SessionUser,
    method: SignInMethod,
) -> Result<Response, ApiError> {
    let metadata = http_metadata(&ActorId::user(user.id).to_string(), headers);
    let started = state
        .sessions
        .start(
            NewSession {
                user_id: user.id.into(),
                method,
                device: device(headers),
                ip,
                user_agent: user_agent(headers),
            },
            &metadata,
        )
        .await
        .map_err(store_error)?;
    wait_for_read_models(state, started.position).await?;
    let max_age = i64::try_from(state.sessions.ttl().as_secs()).unwrap_or(i64::MAX);
    let cookie = session_cookie(&started.token, max_age);
    let answer = SessionAnswer {
        token: started.token,
        session_id: started.session_id.into(),
        expires_at: started.expires_at,
        user,
    };
    Ok((
        StatusCode::OK,
        [
            (header::SET_COOKIE, cookie),
            (
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        ],
        axum::Json(answer),
    )
        .into_response())
}

/// Waits until the `users` and `sessions` read models have passed `position`.
pub(crate) async fn wait_for_read_models(
    state: &CommandState,
    position: i64,
) -> Result<(), ApiError> {
    let outcome = checkpoint::wait_until_reached(
        &state.pool,
        &["projection-users", "projection-sessions"],
        position,
        state.read_model_wait,
    )
    .await
    .map_err(store_error)?;
    match outcome {
        WaitOutcome::Reached => {
            // The projections of this process dropped the cached lookups when they
            // committed; one of another process did not.
            medianest_projections::sessions::read_models_changed();
            Ok(())
        }
        WaitOutcome::TimedOut => Err(ApiError::unavailable(
            "the change is recorded but the session read models lag behind; try again",
            1,
        )),
        // `position` is what this command just committed: the log must have it.
        WaitOutcome::NoSuchEvent { head } => Err(store_error(format!(
            "the event at position {position} just written is not in the log (head {head})"
        ))),
    }
}

/// Sign in with a local account.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "signed in", body = SessionAnswer),
        (status = 401, description = "unknown username or wrong password (`invalid-credentials`)"),
        (status = 403, description = "the account is disabled (`account-disabled`)"),
        (status = 429, description = "too many failed sign-ins from this address or for this account (`rate-limited`)"),
        (status = 503, description = "the session is recorded but the read models lag behind it (`unavailable`)"),
    )
)]
pub(crate) async fn login(
    State(state): State<CommandState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let ip = client_ip(&headers, peer, state.trust_proxy);
    let ip_key = ip.clone().unwrap_or_default();
    let keys = [SignInKey::Ip(&ip_key), SignInKey::Account(&body.username)];
    state
        .signin_limiter
        .check(&keys)
        .map_err(|wait| rate_limited("too many failed sign-ins; try again later", wait))?;
    let found = state
        .accounts
        .find(&Identity::Local(body.username.clone()))
        .await
        .map_err(store_error)?;
    let account = match found {
        Some(id) => Some((id, state.accounts.load(id).await.map_err(store_error)?.0)),
        None => None,
    };
    let hash = account
        .as_ref()
        .and_then(|(_, a)| a.password_hash().map(str::to_string));
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
        .await
        .map_err(store_error)?;
    let Some((id, account)) = account.filter(|_| verified) else {
        state.signin_limiter.record_failure(&keys);
        return Err(invalid_credentials());
    };
    if account.is_disabled() {
        return Err(account_disabled());
    }
    state.signin_limiter.record_success(&keys);
    let user = SessionUser {
        id: id.into(),
        username: account.username().unwrap_or_default().to_string(),
        role: account.role().unwrap_or(Role::User).as_str().to_string(),
    };
    open_session(&state, &headers, ip, user, SignInMethod::Local).await
}

/// End the caller's session (and clear the cookie).
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "signed out"),
        (status = 503, description = "the session is ended but the read models lag behind (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn logout(
    State(state): State<CommandState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session_id) = principal.session_id {
        let metadata = http_metadata(&principal.actor.id.to_string(), &headers);
        let committed = state
            .sessions
            .execute(
                session_id.into(),
                UserSessionCommand::Revoke {
                    by: principal.actor.clone(),
                    reason: RevokeReason::Logout,
                },
                &metadata,
            )
            .await
            .map_err(store_error)?;
        wait_for_read_models(&state, committed.position).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cleared_session_cookie())],
    )
        .into_response())
}

fn plex_sign_in(state: &CommandState) -> Result<&Arc<PlexSignIn>, ApiError> {
    state.plex.as_ref().ok_or_else(|| {
        ApiError::new(
            ProblemType::PlexSignInUnavailable,
            "set MEDIANEST_PLEX_URL and MEDIANEST_PLEX_TOKEN to enable Plex sign-in",
        )
    })
}

/// The problem for a failed plex.tv or Plex Media Server call.
fn plex_problem(error: PlexError) -> ApiError {
    match error {
        PlexError::NotFound => ApiError::new(
            ProblemType::PinNotFound,
            "plex.tv does not know this PIN (it may have expired); create a new one",
        ),
        PlexError::Unauthorized => ApiError::new(
            ProblemType::PlexTokenRejected,
            "plex.tv did not accept the token of this PIN; create a new one",
        ),
        other if other.is_retryable() => ApiError::new(
            ProblemType::PlexUnavailable,
            format!("plex.tv or the Plex Media Server did not answer: {other}"),
        )
        .retry_after(5),
        other => plex_error(other.to_string()),
    }
}

/// 502 `plex-error`: plex.tv or the Plex server answered something we cannot use.
fn plex_error(detail: String) -> ApiError {
    ApiError::new(ProblemType::PlexError, detail)
}

/// Create a Plex PIN.
#[utoipa::path(
    post,
    path = "/api/v1/auth/plex/pins",
    tag = "auth",
    responses(
        (status = 201, description = "created", body = PinAnswer),
        (status = 502, description = "plex.tv answered something unexpected (`plex-error`)"),
        (status = 503, description = "Plex sign-in is not configured (`plex-sign-in-unavailable`), or plex.tv did not answer (`plex-unavailable`)"),
    )
)]
pub(crate) async fn create_pin(State(state): State<CommandState>) -> Result<Response, ApiError> {
    let (pin, auth_url) =
        plex_sign_in(&state)?
            .create_pin()
            .await
            .map_err(|error| match error {
                // Creating a PIN needs no token and names no PIN: plex.tv refusing it, or not
                // finding it, is an answer we cannot use, not the caller's mistake.
                PlexError::NotFound | PlexError::Unauthorized => {
                    plex_error(format!("plex.tv refused to create a PIN: {error}"))
                }
                other => plex_problem(other),
            })?;
    let answer = PinAnswer {
        auth_url,
        id: pin.id,
        code: pin.code,
        expires_at: pin.expires_at,
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// Exchange an authorised Plex PIN for a session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/plex/pins/{id}/session",
    tag = "auth",
    params(("id" = u64, Path, description = "PIN id")),
    responses(
        (status = 200, description = "signed in", body = SessionAnswer),
        (status = 401, description = "plex.tv refused the PIN's token (`plex-token-rejected`)"),
        (status = 403, description = "the Plex account has no access to the Plex server (`no-server-access`), or the account is disabled (`account-disabled`)"),
        (status = 404, description = "unknown or expired PIN (`pin-not-found`)"),
        (status = 409, description = "the PIN is not authorised yet (`pin-not-authorized`), or already used (`pin-already-used`)"),
        (status = 429, description = "too many failed sign-ins from this address or for this account (`rate-limited`)"),
        (status = 502, description = "plex.tv or the Plex server answered something unexpected (`plex-error`)"),
        (status = 503, description = "Plex sign-in is not configured (`plex-sign-in-unavailable`), plex.tv or the Plex server did not answer (`plex-unavailable`), or the read models lag behind the new session (`unavailable`)"),
    )
)]
pub(crate) async fn exchange_pin(
    State(state): State<CommandState>,
    ClientAddr(peer): ClientAddr,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let plex = plex_sign_in(&state)?.clone();
    let ip = client_ip(&headers, peer, state.trust_proxy);
    let ip_key = ip.clone().unwrap_or_default();
    let ip_keys = [SignInKey::Ip(&ip_key)];
    state
        .signin_limiter
        .check(&ip_keys)
        .map_err(|wait| rate_limited("too many failed sign-ins; try again later", wait))?;
    let Some(pin_id) = raw_id.parse::<u64>().ok().filter(|id| *id > 0) else {
        state.signin_limiter.record_failure(&ip_keys);
        return Err(plex_problem(PlexError::NotFound));
    };
    let authorised = plex.authorised_by(pin_id).await.map_err(|error| {
        if matches!(error, PlexError::NotFound) {
            state.signin_limiter.record_failure(&ip_keys);
        }
        plex_problem(error)
    })?;
    let Some(authorised) = authorised else {
        return Err(ApiError::new(
            ProblemType::PinNotAuthorized,
            "the PIN has not been authorised at app.plex.tv yet; try again after signing in there",
        )
        .retry_after(2));
    };
    let account_key = format!("plex:{}", authorised.user.id);
    let keys = [SignInKey::Ip(&ip_key), SignInKey::Account(&account_key)];
    state
        .signin_limiter
        .check(&keys)
        .map_err(|wait| rate_limited("too many failed sign-ins; try again later", wait))?;
    let Some(plex_account) = plex.account(authorised).await.map_err(plex_problem)? else {
        state.signin_limiter.record_failure(&keys);
        return Err(ApiError::new(
            ProblemType::NoServerAccess,
            "this Plex account neither owns nor shares the Plex Media Server MediaNest serves",
        ));
    };
    let metadata = http_metadata("system:plex-sign-in", &headers);
    let (id, account) = state
        .accounts
        .sign_in_with_plex(pin_id, plex_account, &metadata)
        .await
        .map_err(|error| match error {
            PlexSignInError::PinAlreadyUsed => ApiError::new(
                ProblemType::PinAlreadyUsed,
                "this PIN has already been exchanged for a session; create a new one",
            ),
            other => store_error(other),
        })?;
    if account.is_disabled() {
        return Err(account_disabled());
    }
    state.signin_limiter.record_success(&keys);
    let user = SessionUser {
        id: id.into(),
        username: account.username().unwrap_or_default().to_string(),
        role: account.role().unwrap_or(Role::User).as_str().to_string(),
    };
    open_session(&state, &headers, ip, user, SignInMethod::Plex).await
}
