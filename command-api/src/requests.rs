//! Media-request commands: `POST /api/v1/requests` and
//! `POST /api/v1/requests/{id}/approve|decline|cancel|retry`.
//!
//! Bodies are strict JSON (unknown fields → 400); `If-Match: "<version>"` makes a command
//! conditional (412 on mismatch); `Idempotency-Key` makes it safely repeatable.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use medianest_domain::media_request::{Media, MediaRequestCommand, MediaType, Seasons, TmdbId};
use medianest_domain::Actor;
use medianest_http::{layers, optional_body, ApiError, Caller};
use medianest_store::EventMetadata;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::errors::problem;
use crate::idempotency::{idempotent, Answer};
use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/requests", post(submit))
        .route("/api/v1/requests/{id}/{action}", post(on_request))
}

/// Body of `POST /api/v1/requests` (DESIGN.md §9).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    media_type: MediaType,
    tmdb_id: u32,
    #[serde(default)]
    tvdb_id: Option<u32>,
    title: String,
    #[serde(default)]
    year: Option<u16>,
    #[serde(default)]
    seasons: Option<Seasons>,
    #[serde(default)]
    is_4k: bool,
    #[serde(default)]
    note: Option<String>,
}

/// Optional body of decline and cancel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
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
fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
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
    let metadata = http_metadata(caller.id.as_str(), headers);
    let committed = state
        .requests
        .execute(id, command, expected, &metadata)
        .await
        .map_err(problem)?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        json!({
            "id": id,
            "version": committed.version,
            "position": committed.position,
            "status": committed.aggregate.status().map(|s| s.as_str()),
        }),
    ))
}

async fn submit(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scope = format!("{}:submit", caller.id);
    let fingerprint: [&[u8]; 2] = [b"POST /api/v1/requests", &body];
    idempotent(&state.pool, &scope, &headers, &fingerprint, async {
        if !is_json(&headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ));
        }
        let body: SubmitBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::malformed(e.to_string()))?;
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

fn is_json(headers: &HeaderMap) -> bool {
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
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// `POST /api/v1/requests/{id}/{action}`.
async fn on_request(
    State(state): State<CommandState>,
    Caller(caller): Caller,
    Path((raw_id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(action) = serde_json::from_value::<Action>(serde_json::Value::String(action)) else {
        return ApiError::not_found("no such command").into_response();
    };
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
        run(&state, id, command, &headers, &caller, false).await
    })
    .await
}
