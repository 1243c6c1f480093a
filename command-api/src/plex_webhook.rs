//! `POST /api/v1/webhooks/plex/{secret}`: Plex Media Server's webhooks (docs/design.md §6; Plex's
//! support article "Webhooks").
//!
//! PMS posts `multipart/form-data` with the event as JSON in the `payload` part (some PMS
//! versions give the part `Content-Type: application/json`, others none) and, for some
//! events, a `thumb` JPEG part, which is ignored. PMS cannot send headers of our choosing,
//! so the secret is the last path segment (`MEDIANEST_PLEX_WEBHOOK_SECRET`, compared in
//! constant time). A `payload` whose strings or keys hold a NUL is refused 400
//! `invalid-text`, as every JSON body is (`medianest_http::text`).
//!
//! Mapping: every `library.new` asks the Plex sync worker for a recently-added pass at once
//! (`plex_sync_state.recent_requested_at`), which brings the item into the Plex library read
//! model and updates the requests it covers — for shows, season by season. A `movie` whose
//! `Metadata.Guid` holds a `tmdb://<id>` also marks the active media requests for that title
//! available right away (`source: plex`, with the item's `ratingKey`): the HD request, and
//! the 4K request too when the item's `Media` says `videoResolution: "4k"`. A `show`,
//! `season` or `episode` is left to the sync, because the webhook does not say which
//! seasons Plex now has. Every other event (`media.play`, `library.on.deck`, …) is answered
//! 204 with nothing written.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use medianest_domain::media_request::{MediaRequestCommand, MediaType, Source};
use medianest_http::auth::constant_time_eq;
use medianest_http::{ApiError, ProblemType};
use medianest_store::plex_library;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::requests::{http_metadata, CommandAnswer};
use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new().route(
        "/api/v1/webhooks/plex/{secret}",
        // PMS adds the poster as a `thumb` part to some events: tens to hundreds of KiB.
        post(plex).layer(axum::extract::DefaultBodyLimit::max(
            medianest_http::layers::MAX_ROUTE_BODY_BYTES,
        )),
    )
}

/// The parts of a PMS webhook payload MediaNest reads.
#[derive(Debug, Deserialize)]
struct PlexWebhook {
    event: String,
    #[serde(default, rename = "Metadata")]
    metadata: Option<PlexMetadata>,
}

#[derive(Debug, Deserialize)]
struct PlexMetadata {
    #[serde(default, rename = "type")]
    item_type: Option<String>,
    #[serde(default, rename = "ratingKey")]
    rating_key: Option<Value>,
    #[serde(default, rename = "Guid")]
    guids: Vec<PlexGuid>,
    #[serde(default, rename = "Media")]
    media: Vec<PlexMedia>,
}

#[derive(Debug, Deserialize)]
struct PlexGuid {
    id: String,
}

#[derive(Debug, Deserialize)]
struct PlexMedia {
    #[serde(default, rename = "videoResolution")]
    video_resolution: Option<Value>,
}

/// Plex Media Server's webhook (multipart, JSON in the `payload` part).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/plex/{secret}",
    tag = "webhooks",
    params(("secret" = String, Path, description = "the configured MEDIANEST_PLEX_WEBHOOK_SECRET")),
    request_body(content = String, content_type = "multipart/form-data", description = "a `payload` part holding PMS's webhook JSON"),
    responses(
        (status = 202, description = "requests marked available: {\"updated\": [answers]}"),
        (status = 204, description = "ignored"),
        (status = 400, description = "no or malformed `payload` part (`malformed-request`), or text in it holding a NUL (`invalid-text`)"),
        (status = 401, description = "the path's secret is not the webhook secret (`webhook-unauthenticated`)"),
        (status = 403, description = "the webhook is disabled: no secret configured (`forbidden`)"),
        (status = 415, description = "the body is not `multipart/form-data` (`unsupported-media-type`)"),
    )
)]
pub(crate) async fn plex(
    State(state): State<CommandState>,
    Path(secret): Path<String>,
    request: Request,
) -> Response {
    match handle(&state, &secret, request).await {
        Ok(updated) if updated.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Ok(updated) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "updated": updated })),
        )
            .into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn handle(
    state: &CommandState,
    secret: &str,
    request: Request,
) -> Result<Vec<Value>, ApiError> {
    let Some(expected) = state.plex_webhook_secret.as_deref() else {
        return Err(ApiError::forbidden(
            "the Plex webhook is disabled: MEDIANEST_PLEX_WEBHOOK_SECRET is not set",
        ));
    };
    if !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
        return Err(ApiError::new(
            ProblemType::WebhookUnauthenticated,
            "the URL's secret does not match the configured Plex webhook secret",
        ));
    }
    let headers = request.headers().clone();
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !multipart {
        return Err(ApiError::new(
            ProblemType::UnsupportedMediaType,
            "Plex webhooks are multipart/form-data with the JSON in a `payload` part",
        ));
    }
    let payload = payload_part(request).await?;
    let not_a_webhook = |e: serde_json::Error| {
        ApiError::malformed(format!("the payload part is not a Plex webhook JSON: {e}"))
    };
    let payload: Value = serde_json::from_slice(&payload).map_err(not_a_webhook)?;
    // A title or ratingKey with a NUL could not be stored in the events it leads to.
    medianest_http::text::check_json(&payload)?;
    let webhook: PlexWebhook = serde_json::from_value(payload).map_err(not_a_webhook)?;
    if webhook.event == "library.new" {
        if let Err(error) = plex_library::request_recent_pass(&state.pool).await {
            tracing::warn!(%error, "cannot ask the Plex sync for a recently-added pass");
        }
    }
    let Some((media_type, tmdb_id, rating_key, is_4k)) = library_new(&webhook) else {
        tracing::debug!(event = %webhook.event, "Plex webhook ignored");
        return Ok(Vec::new());
    };
    let active = state
        .requests
        .active_for_media(media_type, tmdb_id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let metadata = http_metadata("system:plex-webhook", &headers);
    let mut updated = Vec::new();
    for (id, request_is_4k) in active {
        if request_is_4k && !is_4k {
            continue;
        }
        let command = MediaRequestCommand::RecordAvailable {
            plex_rating_key: rating_key.clone(),
            source: Source::Plex,
        };
        match state
            .requests
            .execute(id.into(), command, None, &metadata)
            .await
        {
            Ok(committed) => updated.push(CommandAnswer::of(id, &committed)),
            // E.g. a request still pending approval: Plex's news does not approve it.
            Err(error) => tracing::info!(%id, %error, "Plex library.new not applied to request"),
        }
    }
    Ok(updated)
}

/// The bytes of the `payload` part.
async fn payload_part(request: Request) -> Result<Vec<u8>, ApiError> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::malformed(format!(
            "the multipart body is malformed: {}",
            e.body_text()
        ))
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::malformed(e.body_text()))?;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() == Some("payload") {
            return Ok(field.bytes().await.map_err(malformed)?.to_vec());
        }
    }
    Err(ApiError::malformed(
        "the multipart body has no `payload` part",
    ))
}

/// `(media type, tmdb id, ratingKey, 4K?)` of a `library.new` for a movie with a `tmdb://`
/// guid.
fn library_new(webhook: &PlexWebhook) -> Option<(MediaType, i64, Option<String>, bool)> {
    if webhook.event != "library.new" {
        return None;
    }
    let metadata = webhook.metadata.as_ref()?;
    // Shows are left to the sync, which knows their seasons.
    let media_type = match metadata.item_type.as_deref()? {
        "movie" => MediaType::Movie,
        _ => return None,
    };
    let tmdb_id = metadata.guids.iter().find_map(|g| {
        g.id.strip_prefix("tmdb://")
            .and_then(|id| id.trim().parse::<i64>().ok())
            .filter(|id| *id > 0)
    })?;
    let rating_key = match &metadata.rating_key {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let is_4k = metadata.media.iter().any(
        |m| matches!(&m.video_resolution, Some(Value::String(r)) if r.eq_ignore_ascii_case("4k")),
    );
    Some((media_type, tmdb_id, rating_key, is_4k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(value: Value) -> PlexWebhook {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_new_movie_with_a_tmdb_guid_is_recognised() {
        let hook = webhook(json!({"event": "library.new", "Metadata": {"type": "movie",
            "ratingKey": "5012", "Guid": [{"id": "imdb://tt0133093"}, {"id": "tmdb://603"}]}}));
        assert_eq!(
            library_new(&hook),
            Some((MediaType::Movie, 603, Some("5012".to_string()), false))
        );
    }

    #[test]
    fn a_new_4k_movie_is_recognised_with_a_numeric_rating_key() {
        let hook = webhook(json!({"event": "library.new", "Metadata": {"type": "movie",
            "ratingKey": 77, "Guid": [{"id": "tmdb://603"}], "Media": [{"videoResolution": "4k"}]}}));
        assert_eq!(
            library_new(&hook),
            Some((MediaType::Movie, 603, Some("77".to_string()), true))
        );
    }

    #[test]
    fn a_new_show_is_left_to_the_sync() {
        let hook = webhook(json!({"event": "library.new", "Metadata": {"type": "show",
            "ratingKey": 77, "Guid": [{"id": "tmdb://1399"}]}}));
        assert_eq!(library_new(&hook), None);
    }

    #[test]
    fn other_events_episodes_and_items_without_tmdb_guid_are_ignored() {
        for value in [
            json!({"event": "media.play", "Metadata": {"type": "movie", "Guid": [{"id": "tmdb://603"}]}}),
            json!({"event": "library.new", "Metadata": {"type": "episode", "Guid": [{"id": "tmdb://63056"}]}}),
            json!({"event": "library.new", "Metadata": {"type": "movie", "Guid": [{"id": "imdb://tt0133093"}]}}),
            json!({"event": "library.new", "Metadata": {"type": "movie", "Guid": [{"id": "tmdb://abc"}]}}),
            json!({"event": "library.new"}),
        ] {
            assert_eq!(library_new(&webhook(value.clone())), None, "{value}");
        }
    }
}
