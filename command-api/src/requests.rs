//! Media-request commands: `POST /api/v1/requests` and
//! `POST /api/v1/requests/{id}/approve|decline|cancel|retry`, one route and one OpenAPI
//! operation per command (each with its own body and answers); the four share one body of
//! code ([`act`]).
//!
//! Bodies are strict JSON (unknown fields → 400); `If-Match: "<version>"` makes a command
//! conditional (412 on mismatch); `Idempotency-Key` makes it safely repeatable.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use medianest_domain::media_request::MediaRequest;
use medianest_domain::media_request::{Media, MediaRequestCommand, MediaType, Seasons, TmdbId};
use medianest_domain::Actor;
use medianest_http::{layers, optional_body, ApiError, Caller};
use medianest_store::{Committed, EventMetadata};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::call::{command_route, CommandCall, CommandHeaders};
use crate::errors::problem;
use crate::idempotency::{idempotent, Answer};
use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/requests", post(submit))
        .route("/api/v1/requests/{id}/approve", post(approve))
        .route("/api/v1/requests/{id}/decline", post(decline))
        .route("/api/v1/requests/{id}/cancel", post(cancel))
        .route("/api/v1/requests/{id}/retry", post(retry))
}

/// Body of `POST /api/v1/requests` (docs/design.md §9). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    /// `movie` or `tv`.
    #[schema(value_type = String, example = "movie")]
    media_type: MediaType,
    /// TMDB id, positive.
    #[schema(example = 603)]
    tmdb_id: u32,
    /// TheTVDB id (tv).
    #[serde(default)]
    tvdb_id: Option<u32>,
    /// 1 to 300 characters.
    #[schema(example = "The Matrix")]
    title: String,
    /// Release year.
    #[serde(default)]
    year: Option<u16>,
    /// tv only: season numbers or `"all"`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!([1, 2]))]
    seasons: Option<Seasons>,
    /// The 4K version.
    #[serde(default)]
    is_4k: bool,
    /// At most 1,000 characters.
    #[serde(default)]
    note: Option<String>,
}

/// What every accepted command answers (also `ETag: "<version>"`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommandAnswer {
    /// The request id.
    id: Uuid,
    /// The aggregate version after the command.
    version: i64,
    /// The global position of the last event written; pass it as `min_position` to read
    /// your write.
    position: i64,
    /// The request's status after the command.
    status: Option<String>,
}

impl CommandAnswer {
    /// The JSON answer for a committed command on request `id`.
    pub(crate) fn of(id: Uuid, committed: &Committed<MediaRequest>) -> serde_json::Value {
        let answer = Self {
            id,
            version: committed.version,
            position: committed.position,
            status: committed.aggregate.status().map(|s| s.as_str().to_string()),
        };
        serde_json::to_value(answer).unwrap_or_default()
    }
}

/// Optional body of decline and cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// At most 1,000 characters.
    #[serde(default)]
    reason: Option<String>,
}

/// Optional (empty) body of approve and retry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// Metadata of a command that came over HTTP.
pub(crate) fn http_metadata(actor: &str, headers: &HeaderMap) -> EventMetadata {
    let request_id = layers::request_id(headers);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    EventMetadata {
        correlation_id: header("x-correlation-id")
            .or_else(|| request_id.clone())
            .unwrap_or_else(|| Uuid::now_v7().to_string()),
        causation_id: request_id.clone(),
        actor: actor.to_string(),
        request_id,
        traceparent: header("traceparent"),
    }
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) → `Some(3)`.
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::malformed("If-Match must be a request version, e.g. \"3\""))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such media request"))
}

async fn run(
    state: &CommandState,
    id: Uuid,
    command: MediaRequestCommand,
    headers: &HeaderMap,
    caller: &Actor,
    created: bool,
) -> Answer {
    let expected = expected_version(headers)?;
    let metadata = http_metadata(&caller.id.to_string(), headers);
    let committed = state
        .requests
        .execute(id.into(), command, expected, &metadata)
        .await
        .map_err(problem)?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, CommandAnswer::of(id, &committed)))
}

/// Submit a media request.
#[utoipa::path(
    post,
    path = "/api/v1/requests",
    tag = "requests",
    request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the call repeatable")),
    responses(
        (status = 202, description = "accepted", body = CommandAnswer),
        (status = 403, description = "the request quota of the media type is used up (`quota-exceeded`)"),
        (status = 409, description = "duplicate request (`duplicate-request`), or Plex already has the movie or every named season (`already-available`)"),
        (status = 422, description = "a rule is broken (`validation-failed`, `field`), or the show request names seasons Plex already has (`seasons-available`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn submit(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scope = format!("{}:submit", caller.id);
    let fingerprint: [&[u8]; 2] = [b"POST /api/v1/requests", &body];
    idempotent(&state.pool, &scope, &headers, &fingerprint, async {
        if !is_json(&headers) {
            return Err(ApiError::unsupported_media_type());
        }
        let body: SubmitBody = medianest_http::object_body(&body)?;
        let tmdb_id = TmdbId::new(body.tmdb_id)
            .map_err(|_| ApiError::invalid("tmdb_id", "tmdb_id must be a positive integer"))?;
        let command = MediaRequestCommand::Submit {
            requested_by: caller.clone(),
            media: Media {
                media_type: body.media_type,
                tmdb_id,
                tvdb_id: body.tvdb_id,
                title: body.title,
                year: body.year,
            },
            seasons: body.seasons,
            is_4k: body.is_4k,
            note: body.note,
        };
        run(&state, Uuid::now_v7(), command, &headers, &caller, true).await
    })
    .await
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// The commands on an existing request: the last path segment.
#[derive(Debug, Clone, Copy)]
enum Action {
    Approve,
    Decline,
    Cancel,
    Retry,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        }
    }

    /// The domain command, from the (optional, strict) body.
    fn command(self, by: &Actor, body: &[u8]) -> Result<MediaRequestCommand, ApiError> {
        let by = by.clone();
        Ok(match self {
            Self::Approve => {
                optional_body::<EmptyBody>(body)?;
                MediaRequestCommand::Approve { by }
            }
            Self::Retry => {
                optional_body::<EmptyBody>(body)?;
                MediaRequestCommand::Retry { by }
            }
            Self::Decline => {
                let ReasonBody { reason } = optional_body(body)?;
                MediaRequestCommand::Decline { by, reason }
            }
            Self::Cancel => {
                let ReasonBody { reason } = optional_body(body)?;
                MediaRequestCommand::Cancel { by, reason }
            }
        })
    }
}

command_route! {
    /// Approve a pending (or failed-to-forward) request: admins only; no body.
    approve => Action::Approve,
    path = "/api/v1/requests/{id}/approve",
    tag = "requests",
    id = "request id",
    answers = [
        (status = 200, description = "approved", body = CommandAnswer),
        (status = 403, description = "only admins may approve (`forbidden`)"),
        (status = 404, description = "unknown id (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
    ],
}

command_route! {
    /// Decline a request, with an optional `{"reason"}`: admins only.
    decline => Action::Decline,
    path = "/api/v1/requests/{id}/decline",
    tag = "requests",
    id = "request id",
    body = ReasonBody,
    answers = [
        (status = 200, description = "declined", body = CommandAnswer),
        (status = 403, description = "only admins may decline (`forbidden`)"),
        (status = 404, description = "unknown id (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
        (status = 422, description = "the reason is over 1,000 characters (`validation-failed`)"),
    ],
}

command_route! {
    /// Cancel a request, with an optional `{"reason"}`: its requester or an admin.
    cancel => Action::Cancel,
    path = "/api/v1/requests/{id}/cancel",
    tag = "requests",
    id = "request id",
    body = ReasonBody,
    answers = [
        (status = 200, description = "cancelled", body = CommandAnswer),
        (status = 404, description = "unknown id, or another user's request (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
        (status = 422, description = "the reason is over 1,000 characters (`validation-failed`)"),
    ],
}

command_route! {
    /// Retry a request whose forwarding to Overseerr failed: admins only; no body.
    retry => Action::Retry,
    path = "/api/v1/requests/{id}/retry",
    tag = "requests",
    id = "request id",
    answers = [
        (status = 200, description = "forwarding again", body = CommandAnswer),
        (status = 403, description = "only admins may retry (`forbidden`)"),
        (status = 404, description = "unknown id (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
    ],
}

/// What the four command routes share: the idempotency scope and fingerprint (the caller,
/// the command and the body), the strict body, who may act, and the command itself.
async fn act(state: &CommandState, call: CommandCall, action: Action) -> Response {
    let CommandCall {
        caller,
        id: raw_id,
        headers,
        body,
    } = call;
    let scope = format!("{}:{}", caller.id, action.name());
    let path = format!(
        "{} /api/v1/requests/{raw_id}/{}",
        Method::POST,
        action.name()
    );
    let fingerprint: [&[u8]; 2] = [path.as_bytes(), &body];
    idempotent(&state.pool, &scope, &headers, &fingerprint, async {
        let id = parse_id(&raw_id)?;
        let command = action.command(&caller, &body)?;
        visible_to(state, id, action, &caller).await?;
        run(state, id, command, &headers, &caller, false).await
    })
    .await
}

/// Users may act only on their own requests, and only cancel them: another user's request
/// is answered 404 (as the query side does, so ids cannot be probed), an admin-only action
/// 403 before anything is looked up.
async fn visible_to(
    state: &CommandState,
    id: Uuid,
    action: Action,
    caller: &Actor,
) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    if !matches!(action, Action::Cancel) {
        return Err(ApiError::forbidden(format!(
            "only admins may {} requests",
            action.name()
        )));
    }
    let (request, _) = state
        .requests
        .load(id.into())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    match request.requested_by() {
        Some(by) if *by == caller.id => Ok(()),
        _ => Err(ApiError::not_found("no such media request")),
    }
}
