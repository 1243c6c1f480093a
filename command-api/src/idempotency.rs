//! `Idempotency-Key` on mutating requests: same key and body → the same answer; same key,
//! other body → 422; same key while the first is still running → 409.

use std::future::Future;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use medianest_http::{ApiError, ProblemType};
use medianest_store::idempotency::{self, Reservation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The header.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A command answer: status and JSON body, or a problem.
pub(crate) type Answer = Result<(StatusCode, Value), ApiError>;

/// Runs `handler` once per `(scope, Idempotency-Key)`; without the header it just runs.
pub(crate) async fn idempotent<F>(
    pool: &PgPool,
    scope: &str,
    headers: &HeaderMap,
    fingerprint: &[&[u8]],
    handler: F,
) -> Response
where
    F: Future<Output = Answer>,
{
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        return respond(handler.await);
    };
    let key = match key.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => key.to_string(),
        _ => {
            return ApiError::malformed("Idempotency-Key must be 1 to 255 visible characters")
                .into_response()
        }
    };
    let mut hasher = Sha256::new();
    for part in fingerprint {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let hash = hex::encode(hasher.finalize());
    match idempotency::begin(pool, scope, &key, &hash).await {
        Err(error) => ApiError::internal(&error).into_response(),
        Ok(Reservation::Mismatch) => ApiError::new(
            ProblemType::IdempotencyKeyReused,
            "this Idempotency-Key was used with another request",
        )
        .into_response(),
        Ok(Reservation::InProgress) => ApiError::new(
            ProblemType::IdempotencyKeyInProgress,
            "a request with this Idempotency-Key is still being processed",
        )
        .into_response(),
        Ok(Reservation::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            replay(status, body)
        }
        Ok(Reservation::New) => {
            let answer = handler.await;
            let (status, body) = match &answer {
                Ok((status, body)) => (*status, body.clone()),
                Err(problem) => (problem.status(), problem.body()),
            };
            // Server errors and rate limits are passing states: the key stays usable.
            let stored = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                idempotency::abandon(pool, scope, &key).await
            } else {
                idempotency::complete(pool, scope, &key, status.as_u16(), &body).await
            };
            if let Err(error) = stored {
                tracing::warn!(%error, "cannot store the idempotent answer");
            }
            respond(answer)
        }
    }
}

fn respond(answer: Answer) -> Response {
    match answer {
        Ok((status, body)) => replay(status, body),
        Err(problem) => problem.into_response(),
    }
}

fn replay(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(&body)).into_response();
    if status.is_client_error() || status.is_server_error() {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
    }
    if let Some(version) = body.get("version").and_then(Value::as_i64) {
        if let Ok(etag) = axum::http::HeaderValue::from_str(&format!("\"{version}\"")) {
            response
                .headers_mut()
                .insert(axum::http::header::ETAG, etag);
        }
    }
    response
}
