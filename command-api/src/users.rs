//! Account and session management:
//!
//! - `DELETE /api/v1/me/sessions/{id}`: end one of the caller's own sessions (another user's
//!   session id is answered 404, as if it did not exist).
//! - `PUT /api/v1/admin/users/{id}/role` `{"role":"admin"|"user"}`,
//!   `PUT /api/v1/admin/users/{id}/quota`
//!   `{"movie":{"limit":N,"days":D}|null,"tv":{"limit":N,"days":D}|null}` (`null`: the
//!   configured default), `POST /api/v1/admin/users/{id}/disable` and `…/enable`: admins only
//!   (403 for others, before anything is looked up). Disabling revokes every session of the
//!   account; each command answers once the read models reflect it, so its effect on
//!   authentication is immediate.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::Router;
use medianest_domain::user_account::{
    Quota, Quotas, UserAccount, UserAccountCommand, UserAccountError,
};
use medianest_domain::user_session::{RevokeReason, UserSessionCommand, UserSessionError};
use medianest_domain::{Actor, Role, SessionId};
use medianest_http::auth::require_admin;
use medianest_http::{ApiError, Caller, ProblemType};
use medianest_store::{Committed, ExecuteError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::requests::{expected_version, http_metadata};
use crate::signin::wait_for_read_models;
use crate::CommandState;

/// Why a non-admin is refused here.
const ADMINS_ONLY: &str = "only admins may manage users";

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/me/sessions/{id}", delete(end_session))
        .route("/api/v1/admin/users/{id}/role", put(change_role))
        .route("/api/v1/admin/users/{id}/quota", put(change_quota))
        .route("/api/v1/admin/users/{id}/disable", post(disable))
        .route("/api/v1/admin/users/{id}/enable", post(enable))
}

/// Body of `PUT /api/v1/admin/users/{id}/role`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    /// `admin` or `user`.
    #[schema(value_type = String, example = "user")]
    role: Role,
}

/// One quota: at most `limit` requests in any `days` days.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaBody {
    /// 1 to 1000.
    limit: u32,
    /// 1 to 365.
    days: u32,
}

/// Body of `PUT /api/v1/admin/users/{id}/quota`: both members are required; `null` means the
/// configured default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotasBody {
    #[serde(deserialize_with = "required_nullable")]
    movie: Option<QuotaBody>,
    #[serde(deserialize_with = "required_nullable")]
    tv: Option<QuotaBody>,
}

/// A member that must be present but may be `null`.
fn required_nullable<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<QuotaBody>, D::Error> {
    Option::<QuotaBody>::deserialize(deserializer)
}

/// What an account command answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountAnswer {
    /// The account id.
    id: Uuid,
    /// The account's version after the command.
    version: i64,
    /// Global position of the last event written; pass it as `min_position`.
    position: i64,
    /// `admin` or `user`.
    role: String,
    /// Whether the account is disabled.
    disabled: bool,
}

fn parse_user_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("no such user"))
}

fn account_problem(error: ExecuteError<UserAccountError>) -> ApiError {
    match error {
        ExecuteError::Rejected(UserAccountError::NotFound) => ApiError::not_found("no such user"),
        ExecuteError::Rejected(UserAccountError::Forbidden(why)) => ApiError::forbidden(why),
        ExecuteError::Rejected(rejection @ UserAccountError::Invalid { field, .. }) => {
            ApiError::invalid(field, rejection.to_string())
        }
        ExecuteError::Rejected(rejection @ UserAccountError::AlreadyRegistered) => {
            ApiError::new(ProblemType::AlreadyExists, rejection.to_string())
        }
        ExecuteError::VersionMismatch { expected, actual } => ApiError::new(
            ProblemType::VersionMismatch,
            format!("If-Match named version {expected}, the account is at version {actual}"),
        )
        .with("current_version", actual),
        ExecuteError::Conflict => ApiError::new(
            ProblemType::ConcurrentModification,
            "the account changed while this command was decided; try again",
        ),
        ExecuteError::Store(cause) => ApiError::internal(&cause),
    }
}

/// Runs an admin command on account `raw_id`, waits for the read models and answers.
async fn run_admin(
    state: &CommandState,
    caller: &Actor,
    raw_id: &str,
    headers: &HeaderMap,
    command: UserAccountCommand,
) -> Result<(Uuid, Committed<UserAccount>), ApiError> {
    require_admin(caller, ADMINS_ONLY)?;
    let id = parse_user_id(raw_id)?;
    let expected = expected_version(headers)?;
    let metadata = http_metadata(&caller.id.to_string(), headers);
    let committed = state
        .accounts
        .execute(id.into(), command, expected, &metadata)
        .await
        .map_err(account_problem)?;
    Ok((id, committed))
}

async fn answer(
    state: &CommandState,
    id: Uuid,
    committed: &Committed<UserAccount>,
    position: i64,
) -> Response {
    if let Err(problem) = wait_for_read_models(state, position).await {
        return problem.into_response();
    }
    let body = AccountAnswer {
        id,
        version: committed.version,
        position,
        role: committed
            .aggregate
            .role()
            .unwrap_or(Role::User)
            .as_str()
            .to_string(),
        disabled: committed.aggregate.is_disabled(),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Make a user an admin or a user.
#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{id}/role",
    tag = "users",
    params(
        ("id" = Uuid, Path, description = "user id"),
        ("If-Match" = Option<String>, Header, description = "expected account version, e.g. \"2\""),
    ),
    request_body = RoleBody,
    responses(
        (status = 200, description = "done", body = AccountAnswer),
        (status = 403, description = "not an admin, or your own account (`forbidden`)"),
        (status = 404, description = "unknown user (`not-found`)"),
        (status = 409, description = "lost a race five times (`concurrent-modification`)"),
        (status = 503, description = "the change is recorded but the read models lag behind it (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn change_role(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let RoleBody { role } = medianest_http::object_body(&body)?;
    let command = UserAccountCommand::ChangeRole {
        role,
        by: caller.clone(),
    };
    let (id, committed) = run_admin(&state, &caller, &raw_id, &headers, command).await?;
    Ok(answer(&state, id, &committed, committed.position).await)
}

/// Set a user's quotas (`null` = the default).
#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{id}/quota",
    tag = "users",
    params(
        ("id" = Uuid, Path, description = "user id"),
        ("If-Match" = Option<String>, Header, description = "expected account version, e.g. \"2\""),
    ),
    request_body = QuotasBody,
    responses(
        (status = 200, description = "done", body = AccountAnswer),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "unknown user (`not-found`)"),
        (status = 409, description = "lost a race five times (`concurrent-modification`)"),
        (status = 422, description = "limit or days out of range (`validation-failed`)"),
        (status = 503, description = "the change is recorded but the read models lag behind it (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn change_quota(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller, ADMINS_ONLY)?;
    let QuotasBody { movie, tv } = medianest_http::object_body(&body)?;
    let quota = |q: Option<QuotaBody>| {
        q.map(|q| Quota {
            limit: q.limit,
            days: q.days,
        })
    };
    let command = UserAccountCommand::ChangeQuota {
        quotas: Quotas {
            movie: quota(movie),
            tv: quota(tv),
        },
        by: caller.clone(),
    };
    let (id, committed) = run_admin(&state, &caller, &raw_id, &headers, command).await?;
    Ok(answer(&state, id, &committed, committed.position).await)
}

/// Disable a user: their sessions stop working at once.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/disable",
    tag = "users",
    params(
        ("id" = Uuid, Path, description = "user id"),
        ("If-Match" = Option<String>, Header, description = "expected account version, e.g. \"2\""),
    ),
    responses(
        (status = 200, description = "done", body = AccountAnswer),
        (status = 403, description = "not an admin, or your own account (`forbidden`)"),
        (status = 404, description = "unknown user (`not-found`)"),
        (status = 409, description = "lost a race five times (`concurrent-modification`)"),
        (status = 503, description = "the change is recorded but the read models lag behind it (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn disable(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    switch(&state, &caller, &raw_id, &headers, &body, true).await
}

/// Disables (revoking every active session) or enables account `raw_id`.
async fn switch(
    state: &CommandState,
    caller: &Actor,
    raw_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    disable: bool,
) -> Result<Response, ApiError> {
    require_admin(caller, ADMINS_ONLY)?;
    medianest_http::optional_body::<EmptyBody>(body)?;
    let by = caller.clone();
    let command = if disable {
        UserAccountCommand::Disable { by }
    } else {
        UserAccountCommand::Enable { by }
    };
    let (id, committed) = run_admin(state, caller, raw_id, headers, command).await?;
    let mut position = committed.position;
    if disable {
        let metadata = http_metadata(&caller.id.to_string(), headers);
        let sessions = medianest_projections::sessions::of_user(&state.pool, id, false)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        for session in sessions {
            let revoke = UserSessionCommand::Revoke {
                by: caller.clone(),
                reason: RevokeReason::AccountDisabled,
            };
            match state
                .sessions
                .execute(session.id.into(), revoke, &metadata)
                .await
            {
                Ok(revoked) => position = position.max(revoked.position),
                Err(ExecuteError::Rejected(UserSessionError::NotFound)) => {}
                Err(other) => return Err(ApiError::internal(&other)),
            }
        }
    }
    Ok(answer(state, id, &committed, position).await)
}

/// Enable a disabled user.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/enable",
    tag = "users",
    params(
        ("id" = Uuid, Path, description = "user id"),
        ("If-Match" = Option<String>, Header, description = "expected account version, e.g. \"2\""),
    ),
    responses(
        (status = 200, description = "done", body = AccountAnswer),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 404, description = "unknown user (`not-found`)"),
        (status = 409, description = "lost a race five times (`concurrent-modification`)"),
        (status = 503, description = "the change is recorded but the read models lag behind it (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enable(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    switch(&state, &caller, &raw_id, &headers, &body, false).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// End one of your own sessions.
#[utoipa::path(
    delete,
    path = "/api/v1/me/sessions/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "session id")),
    responses(
        (status = 204, description = "ended"),
        (status = 404, description = "not one of your sessions (`not-found`)"),
        (status = 503, description = "the change is recorded but the read models lag behind it (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn end_session(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("no such session");
    let id: SessionId = raw_id.parse().map_err(|_| not_found())?;
    let (session, _) = state
        .sessions
        .load(id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if session.user_id().is_none() || session.user_id() != caller.id.user_id() {
        return Err(not_found());
    }
    let metadata = http_metadata(&caller.id.to_string(), &headers);
    let revoke = UserSessionCommand::Revoke {
        by: caller.clone(),
        reason: RevokeReason::Revoked,
    };
    let committed = state
        .sessions
        .execute(id, revoke, &metadata)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    wait_for_read_models(&state, committed.position).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
