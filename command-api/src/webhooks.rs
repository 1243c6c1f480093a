//! `POST /api/v1/webhooks/overseerr`: Overseerr's webhook notification agent.
//!
//! Authenticated by the `Authorization` header, which must equal
//! `MEDIANEST_OVERSEERR_WEBHOOK_SECRET`. Overseerr's default JSON template renders every
//! value as a string (`"tmdbId": "603"`, `"request_id": "12"`), and users may edit the
//! template, so the payload is read leniently: unknown keys are ignored, numbers may be
//! strings or numbers. Mapping (docs/design.md §6): `MEDIA_APPROVED`, `MEDIA_AUTO_APPROVED` →
//! processing; `MEDIA_AVAILABLE` → available; `MEDIA_DECLINED`, `MEDIA_FAILED` → failed;
//! `TEST_NOTIFICATION` and everything else → 204, nothing written.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use medianest_domain::media_request::{MediaRequestCommand, MediaType, Source};
use medianest_http::auth::constant_time_eq;
use medianest_http::{ApiError, ProblemType};
use medianest_projections::requests;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::errors::problem;
use crate::requests::{http_metadata, CommandAnswer};
use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new().route("/api/v1/webhooks/overseerr", post(overseerr))
}

/// The parts of Overseerr's webhook payload MediaNest reads.
#[derive(Debug, Deserialize)]
struct OverseerrWebhook {
    notification_type: String,
    #[serde(default)]
    media: Option<WebhookMedia>,
    #[serde(default)]
    request: Option<WebhookRequest>,
}

#[derive(Debug, Deserialize)]
struct WebhookMedia {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default, rename = "tmdbId")]
    tmdb_id: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WebhookRequest {
    #[serde(default)]
    request_id: Option<Value>,
}

/// A number sent as a number or as a (possibly empty) string.
fn lenient_number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Overseerr's webhook notification agent (default JSON template).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/overseerr",
    tag = "webhooks",
    params(("Authorization" = String, Header, description = "the configured webhook secret")),
    request_body(content = Object, description = "Overseerr's webhook JSON"),
    responses(
        (status = 202, description = "applied to a request"),
        (status = 204, description = "ignored"),
        (status = 401, description = "the `Authorization` header is not the webhook secret (`webhook-unauthenticated`)"),
        (status = 403, description = "the webhook is disabled: no secret configured (`forbidden`)"),
        (status = 409, description = "the notification does not fit the request's status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
    )
)]
pub(crate) async fn overseerr(
    State(state): State<CommandState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(Some(answer)) => (StatusCode::ACCEPTED, axum::Json(answer)).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn handle(
    state: &CommandState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Value>, ApiError> {
    let Some(secret) = state.overseerr_webhook_secret.as_deref() else {
        return Err(ApiError::forbidden(
            "the Overseerr webhook is disabled: MEDIANEST_OVERSEERR_WEBHOOK_SECRET is not set",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(secret.as_bytes(), given) {
        return Err(ApiError::new(
            ProblemType::WebhookUnauthenticated,
            "the Authorization header does not match the configured webhook secret",
        ));
    }
    let payload: OverseerrWebhook = medianest_http::object_body(body)?;
    let command = match payload.notification_type.as_str() {
        "MEDIA_APPROVED" | "MEDIA_AUTO_APPROVED" => MediaRequestCommand::RecordProcessing,
        "MEDIA_AVAILABLE" => MediaRequestCommand::RecordAvailable {
            plex_rating_key: None,
            source: Source::Overseerr,
        },
        "MEDIA_DECLINED" => MediaRequestCommand::RecordFailed {
            reason: "declined in Overseerr".to_string(),
            source: Source::Overseerr,
        },
        "MEDIA_FAILED" => MediaRequestCommand::RecordFailed {
            reason: "failed in Overseerr".to_string(),
            source: Source::Overseerr,
        },
        other => {
            tracing::debug!(notification_type = other, "Overseerr notification ignored");
            return Ok(None);
        }
    };
    let Some(id) = find_request(state, &payload).await? else {
        tracing::info!(
            notification_type = %payload.notification_type,
            "Overseerr notification for media not requested through MediaNest"
        );
        return Ok(None);
    };
    let metadata = http_metadata("system:overseerr-webhook", headers);
    let committed = state
        .requests
        .execute(id.into(), command, None, &metadata)
        .await
        .map_err(problem)?;
    Ok(Some(CommandAnswer::of(id, &committed)))
}

/// Our request for the notification: by Overseerr request id (read model), else the one
/// active request for the media (reservation table).
async fn find_request(
    state: &CommandState,
    payload: &OverseerrWebhook,
) -> Result<Option<Uuid>, ApiError> {
    let overseerr_id = payload
        .request
        .as_ref()
        .and_then(|r| lenient_number(r.request_id.as_ref()));
    if let Some(overseerr_id) = overseerr_id {
        if let Some(row) = requests::find_by_overseerr_id(&state.pool, overseerr_id)
            .await
            .map_err(|e| ApiError::internal(&e))?
        {
            return Ok(Some(row.id));
        }
    }
    let Some(media) = &payload.media else {
        return Ok(None);
    };
    let (Some(media_type), Some(tmdb_id)) = (
        media
            .media_type
            .as_deref()
            .and_then(|t| t.parse::<MediaType>().ok()),
        lenient_number(media.tmdb_id.as_ref()),
    ) else {
        return Ok(None);
    };
    let active = state
        .requests
        .active_for_media(media_type, tmdb_id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    // Ambiguous (an HD and a 4K request): only the Overseerr request id can tell them apart.
    Ok(match active.as_slice() {
        [(id, _)] => Some(*id),
        _ => None,
    })
}
