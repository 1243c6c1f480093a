//! The layers around every router: header size limits (431, outermost, so an oversized
//! header is neither logged nor echoed), request ids (`x-request-id`, generated when absent
//! and echoed back), one tracing span per request with the request id and matched path, a
//! body size limit, the check that the URL's text is storable ([`crate::text`]) before any
//! route runs, panics turned into 500 problems, and a 404 problem for paths no route has.

use axum::extract::MatchedPath;
use axum::http::{header, HeaderMap, HeaderName, Request, StatusCode};
use axum::middleware::Next;
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

/// Largest accepted header field, name and value, in bytes (8 KiB, the default of nginx's
/// `large_client_header_buffers` and Apache's `LimitRequestFieldSize`).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Largest accepted header section, every field's name and value together, in bytes
/// (32 KiB). hyper's own limit, far above (about 400 KiB), answers a bare 431 itself.
pub const MAX_HEADERS_BYTES: usize = 32 * 1024;

/// Wraps `router` in the standard layers.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        // A path no route has (an unknown command such as `…/{id}/pause`) is a 404 problem
        // like any other unknown thing, not an empty body.
        .fallback(no_such_route)
        // Inside the metrics layer, so refusals are counted by route like any answer.
        .route_layer(axum::middleware::from_fn(
            crate::text::refuse_unstorable_uri,
        ))
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
        .layer(axum::middleware::from_fn(refuse_oversized_headers))
}

/// 404 `not-found` for a path no route has.
async fn no_such_route() -> Response {
    ApiError::not_found("no such route").into_response()
}

/// Why `headers` are over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS_BYTES`], if they are.
fn oversized(headers: &HeaderMap) -> Option<String> {
    let mut total = 0;
    for (name, value) in headers {
        let size = name.as_str().len() + value.len();
        if size > MAX_HEADER_BYTES {
            return Some(format!(
                "the `{name}` header is {size} bytes; at most {MAX_HEADER_BYTES} bytes per \
                 header (name and value) are accepted"
            ));
        }
        total += size;
    }
    (total > MAX_HEADERS_BYTES).then(|| {
        format!(
            "the headers are {total} bytes together; at most {MAX_HEADERS_BYTES} bytes are \
             accepted"
        )
    })
}

/// Answers 431 `headers-too-large` for headers over the limits. Such headers would
/// otherwise be stored (`User-Agent` in session events, request and correlation ids in
/// event metadata) or echoed (`x-request-id`).
async fn refuse_oversized_headers(request: axum::extract::Request, next: Next) -> Response {
    match oversized(request.headers()) {
        None => next.run(request).await,
        Some(detail) => {
            tracing::info!(%detail, "request refused: headers too large");
            ApiError::headers_too_large(detail).into_response()
        }
    }
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

    /// One route through [`apply`]; answers `(status, problem slug or "")`.
    async fn answer(uri: &str, headers: &[(String, String)]) -> (StatusCode, String) {
        let router: Router = apply(Router::new().route("/items/{id}", get(|| async { "ok" })));
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let slug = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .map(|t| t.trim_start_matches("urn:medianest:problem:").to_string())
            .unwrap_or_default();
        (status, slug)
    }

    #[tokio::test]
    async fn a_nul_in_the_path_or_query_is_a_400_invalid_text_before_the_route_runs() {
        for uri in ["/items/%00", "/items/1?q=%00", "/items/1?q=%FF"] {
            assert_eq!(
                answer(uri, &[]).await,
                (StatusCode::BAD_REQUEST, "invalid-text".to_string()),
                "{uri}"
            );
        }
        assert_eq!(answer("/items/1?q=a%20b", &[]).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_header_over_8_kib_or_headers_over_32_kib_are_a_431_problem() {
        let user_agent = |bytes: usize| ("user-agent".to_string(), "u".repeat(bytes));
        let too_long = vec![user_agent(MAX_HEADER_BYTES)];
        let too_many = (0..5)
            .map(|n| (format!("x-h{n}"), "v".repeat(7 * 1024)))
            .collect();
        for headers in [too_long, too_many] {
            assert_eq!(
                answer("/items/1", &headers).await,
                (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers-too-large".to_string()
                )
            );
        }
        let fits = user_agent(MAX_HEADER_BYTES - "user-agent".len());
        assert_eq!(answer("/items/1", &[fits]).await.0, StatusCode::OK);
    }

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
