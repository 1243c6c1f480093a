//! `GET /api/v1/me`, `GET /api/v1/me/sessions` and `GET /api/v1/admin/users`, from the `users`
//! and `sessions` read models.
//!
//! `me` shows the caller's effective quotas (their own, or the configured default) with how
//! much of each is used and, when none is left, when the next slot frees. The admin list is
//! for admins only (403 for others) and pages by `cursor` (the last id of the previous page).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use medianest_domain::media_request::MediaType;
use medianest_domain::user_account::Quota;
use medianest_http::auth::require_admin;
use medianest_http::{ApiError, Authenticated, Caller, Query};
use medianest_projections::sessions::{self, SessionRow};
use medianest_projections::users::{self, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::paging::{read_page, Paging, ReadParams};
use crate::{wait_for_position, QueryState};

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/sessions", get(my_sessions))
        .route("/api/v1/admin/users", get(list_users))
}

/// The query parameters of `GET /api/v1/me/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SessionParams {
    /// Include ended sessions.
    #[serde(default)]
    #[param(value_type = bool)]
    all: Option<bool>,
    /// Wait until this position is read.
    #[serde(default)]
    #[param(value_type = i64)]
    min_position: Option<i64>,
}

/// The query parameters of `GET /api/v1/admin/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// The last id of the previous page.
    #[serde(default)]
    #[param(value_type = Uuid)]
    cursor: Option<Uuid>,
    /// 1 to 100, default 25.
    #[serde(default)]
    #[param(value_type = i64)]
    limit: Option<i64>,
    /// Wait until this position is read.
    #[serde(default)]
    #[param(value_type = i64)]
    min_position: Option<i64>,
}

/// A quota with its use.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotaView {
    /// Requests allowed per window.
    limit: u32,
    /// Window length in days.
    days: u32,
    /// `user` (set by an admin) or `default` (the configured default).
    source: &'static str,
    /// Requests counted in the current window (`me` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<u32>,
    /// When the next slot frees, when none is left (`me` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_slot_at: Option<DateTime<Utc>>,
}

/// Movie and TV quotas; `null` means unlimited.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotasView {
    movie: Option<QuotaView>,
    tv: Option<QuotaView>,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    id: Uuid,
    username: String,
    /// Shown to the account itself and to admins only.
    email: Option<String>,
    avatar: Option<String>,
    /// `admin` or `user`.
    role: String,
    /// `plex` or `local`.
    method: String,
    plex_id: Option<i64>,
    disabled: bool,
    quotas: QuotasView,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Aggregate version.
    version: i64,
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    users: Vec<UserView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<Uuid>,
}

/// A session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    id: Uuid,
    /// Whether this is the session of the request.
    current: bool,
    /// `active`, `revoked` or `expired`.
    status: String,
    /// `plex` or `local`.
    method: String,
    #[schema(value_type = Object)]
    device: Value,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Last expiry extension.
    refreshed_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    /// `logout`, `revoked`, `account_disabled` or `expired`.
    end_reason: Option<String>,
}

/// The caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList {
    sessions: Vec<SessionView>,
}

impl From<(&SessionRow, Option<Uuid>)> for SessionView {
    fn from((row, current): (&SessionRow, Option<Uuid>)) -> Self {
        Self {
            id: row.id,
            current: Some(row.id) == current,
            status: row.status.clone(),
            method: row.method.clone(),
            device: row.device.clone(),
            ip: row.ip.clone(),
            user_agent: row.user_agent.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            refreshed_at: row.refreshed_at,
            ended_at: row.ended_at,
            end_reason: row.end_reason.clone(),
        }
    }
}

fn own_quota(value: &Option<Value>) -> Option<Quota> {
    value
        .as_ref()
        .and_then(|v| serde_json::from_value::<Quota>(v.clone()).ok())
}

/// The effective quota of `row` for `media_type`, with its use when `usage` is asked.
async fn quota_view(
    state: &QueryState,
    row: &UserRow,
    media_type: MediaType,
    usage: bool,
) -> Result<Option<QuotaView>, ApiError> {
    if row.role == "admin" {
        return Ok(None); // admins are exempt
    }
    let own = own_quota(match media_type {
        MediaType::Movie => &row.movie_quota,
        MediaType::Tv => &row.tv_quota,
    });
    let (quota, source) = match (own, state.default_quotas.of(media_type)) {
        (Some(quota), _) => (quota, "user"),
        (None, Some(quota)) => (quota, "default"),
        (None, None) => return Ok(None),
    };
    let (used, next_slot_at) = if usage {
        let (used, next) = medianest_store::media_requests::quota_usage(
            &state.pool,
            &row.id.to_string(),
            media_type,
            quota,
        )
        .await
        .map_err(|e| ApiError::internal(&e))?;
        (Some(used), next)
    } else {
        (None, None)
    };
    Ok(Some(QuotaView {
        limit: quota.limit,
        days: quota.days,
        source,
        used,
        next_slot_at,
    }))
}

async fn user_view(state: &QueryState, row: UserRow, usage: bool) -> Result<UserView, ApiError> {
    let quotas = QuotasView {
        movie: quota_view(state, &row, MediaType::Movie, usage).await?,
        tv: quota_view(state, &row, MediaType::Tv, usage).await?,
    };
    Ok(UserView {
        id: row.id,
        username: row.username,
        email: row.email,
        avatar: row.avatar,
        role: row.role,
        method: row.method,
        plex_id: row.plex_id,
        disabled: row.disabled,
        quotas,
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    })
}

fn caller_uuid(caller: &medianest_domain::Actor) -> Result<Uuid, ApiError> {
    caller.id.user_id().map(Uuid::from).ok_or_else(|| {
        ApiError::not_found("no account: the bootstrap token has no profile; sign in instead")
    })
}

/// The caller's account, with quotas and their use.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "users",
    params(ReadParams),
    responses(
        (status = 200, description = "the account", body = UserView),
        (status = 404, description = "signed in with the bootstrap token, which has no account (`not-found`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn me(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Result<Json<UserView>, ApiError> {
    wait_for_position(&state, users::NAME, params.min_position, &headers).await?;
    let id = caller_uuid(&caller)?;
    let row = users::get(&state.pool, id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(user_view(&state, row, true).await?))
}

/// The caller's sessions (active ones; `all=true` includes ended ones), newest first.
#[utoipa::path(
    get,
    path = "/api/v1/me/sessions",
    tag = "users",
    params(SessionParams),
    responses(
        (status = 200, description = "the sessions", body = SessionList),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn my_sessions(
    State(state): State<QueryState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<SessionParams>,
    headers: HeaderMap,
) -> Result<Json<SessionList>, ApiError> {
    wait_for_position(&state, sessions::NAME, params.min_position, &headers).await?;
    let id = caller_uuid(&principal.actor)?;
    let rows = sessions::of_user(&state.pool, id, params.all.unwrap_or(false))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(SessionList {
        sessions: rows
            .iter()
            .map(|row| SessionView::from((row, principal.session_id)))
            .collect(),
    }))
}

/// Every account (admins only), in registration order.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "a page of accounts", body = UserPage),
        (status = 403, description = "not an admin (`forbidden`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_users(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Result<Json<UserPage>, ApiError> {
    require_admin(&caller, "only admins may list users")?;
    let paging = Paging::new(params.cursor, params.limit, params.min_position);
    let pool = &state.pool;
    let page = read_page(
        &state,
        users::NAME,
        paging,
        &headers,
        |after, rows| users::list(pool, after, rows),
        |row| row.id,
    )
    .await?;
    let mut users = Vec::with_capacity(page.rows.len());
    for row in page.rows {
        users.push(user_view(&state, row, false).await?);
    }
    Ok(Json(UserPage {
        users,
        next_cursor: page.next_cursor,
    }))
}
