//! `application/problem+json` errors (RFC 9457) with stable `type` URIs.
//!
//! The `type` of each problem is `urn:medianest:problem:<slug>`; slugs never change meaning
//! (clients match on them). Internal causes are logged where the error is made, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Members defined by RFC 9457 itself.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An HTTP error answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable slug of `type`.
    pub slug: &'static str,
    /// Short, human summary of the problem type.
    pub title: &'static str,
    /// What happened this time.
    pub detail: String,
    /// Extension members (e.g. `existing_request_id`).
    pub extensions: Map<String, Value>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with the given status, slug, title and detail.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after: None,
        }
    }

    /// Adds an extension member. The RFC 9457 members (`type`, `title`, `status`, `detail`,
    /// `instance`) cannot be overridden this way.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(
            !RESERVED.contains(&key),
            "`{key}` is a standard problem member, not an extension"
        );
        if !RESERVED.contains(&key) {
            self.extensions.insert(key.to_string(), value.into());
        }
        self
    }

    /// 415 `unsupported-media-type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        )
    }

    /// 413 `body-too-large`.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            "the request body is larger than the 64 KiB this API accepts",
        )
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `malformed-request`: the request could not be read.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 400 `invalid-text` naming the field: text PostgreSQL cannot store, a NUL character
    /// (U+0000) or bytes that are not UTF-8 (see [`crate::text`]).
    pub fn invalid_text(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-text",
            "Text MediaNest cannot store",
            detail,
        )
        .with("field", field)
    }

    /// 431 `headers-too-large`: a header field, or all of them, over the limits of
    /// [`crate::layers`].
    pub fn headers_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            detail,
        )
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "a valid bearer token is required",
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 422 `validation-failed` naming the field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "Invalid request",
            detail,
        )
        .with("field", field)
    }

    /// 503 `unavailable` with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            detail,
        )
        .retry_after(retry_after)
    }

    /// 503 `overloaded` with `Retry-After`: more requests are being worked on than the
    /// server takes at once ([`crate::shed`]).
    pub fn overloaded(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests at once",
            "the server is working on as many requests as it takes at once; try again shortly",
        )
        .retry_after(retry_after)
    }

    /// 500 `internal`: logs `cause`, sends nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "something went wrong on our side",
        )
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> String {
        format!("urn:medianest:problem:{}", self.slug)
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), self.type_uri().into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        for (key, value) in &self.extensions {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
