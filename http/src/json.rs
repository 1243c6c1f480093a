//! A JSON body extractor whose rejections are problem+json: a body that is not JSON, not an
//! object of the expected shape (unknown fields, wrong types) → 400 `malformed-request`; a
//! string or key holding a NUL character → 400 `invalid-text` ([`crate::text`]); no JSON
//! content type → 415; too large → 413. Every JSON body goes through [`Json`],
//! [`object_body`] or [`optional_body`], so all of them are checked the same way.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// `axum::Json` with problem+json rejections, for a body that must be a JSON object of
/// shape `T` holding only storable text (see [`object_body`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => object_into(value).map(Self),
            Err(rejection) => Err(rejection_to_problem(&rejection)),
        }
    }
}

fn rejection_to_problem(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large()
        }
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            ApiError::malformed(rejection.body_text())
        }
        _ => ApiError::malformed(rejection.body_text()),
    }
}

/// `axum::extract::Query` with a 400 problem+json rejection (unknown parameters, bad values).
///
/// Parameters that hold a NUL or are not UTF-8 never get here: the layer
/// [`crate::text::refuse_unstorable_uri`] refuses them on every route first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::malformed(rejection.body_text()))
    }
}

/// Decodes an optional JSON body: empty → `T::default()`, otherwise strict JSON (see
/// [`object_body`]).
///
/// # Errors
/// [`ApiError::malformed`] when the body is not a valid `T`, [`ApiError::invalid_text`] when
/// a string or key in it holds a NUL.
pub fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    object_body(body)
}

/// Decodes a body that must be a JSON object of shape `T`. serde's derived structs also
/// accept an array of their fields in order (`["alice","secret"]`); bodies are objects only.
///
/// Every string value and object key is checked first ([`crate::text::check_json`]), so a
/// `T` never holds text PostgreSQL cannot store.
///
/// # Errors
/// [`ApiError::malformed`] when the body is not JSON (or not UTF-8), not an object, or not a
/// valid `T`; [`ApiError::invalid_text`] when a string or key in it holds a NUL.
pub fn object_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::malformed(e.to_string()))?;
    object_into(value)
}

fn object_into<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::malformed("the body must be a JSON object"));
    }
    crate::text::check_json(&value)?;
    serde_json::from_value(value).map_err(|e| ApiError::malformed(e.to_string()))
}
