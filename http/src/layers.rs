//! The layers around every router: request ids (`x-request-id`, generated when absent and
//! echoed back), one tracing span per request with the request id and matched path, a body
//! size limit, and panics turned into 500 problems.

use axum::extract::MatchedPath;
use axum::http::{header, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::ApiError;

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Largest accepted request body, in bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest body any route may accept, in bytes (8 MiB): routes that take more than
/// [`MAX_BODY_BYTES`] (the Plex webhook, whose `thumb` part is a poster JPEG) raise their
/// own limit with `DefaultBodyLimit` up to this.
pub const MAX_ROUTE_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Wraps `router` in the standard layers.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(CatchPanicLayer::custom(problem_for_panic))
        .layer(RequestBodyLimitLayer::new(MAX_ROUTE_BODY_BYTES))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem_for_plain_413))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let path = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("");
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %request.method(), path, request_id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A panic in a handler answers a 500 `internal` problem, like every other failure (the
/// default of `CatchPanicLayer` is a plain-text body).
fn problem_for_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let cause = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(&format_args!("handler panicked: {cause}")).into_response()
}

/// Body limits answer 413 in plain text (tower-http's layer, axum's `Bytes` extractor):
/// give them the problem+json body every other error has.
async fn problem_for_plain_413(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        return ApiError::too_large().into_response();
    }
    response
}

/// The request id of a request (set by [`apply`]).
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_internal_problem() {
        let router = apply(Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        ));
        let response = router
            .oneshot(
                Request::get("/boom")
                    .body(Body::empty())
                    .expect("a request"),
            )
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(problem["type"], "urn:medianest:problem:internal");
        assert!(
            !problem.to_string().contains("boom"),
            "the cause is not sent"
        );
    }
}
