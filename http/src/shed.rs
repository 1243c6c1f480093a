//! Load shedding: at most so many API requests are worked on at once; one more is answered
//! at once with 503 `overloaded` and `Retry-After: 1` instead of waiting.
//!
//! Why: past its capacity (the database pool's connections, two cores) a server that takes
//! every request queues them, and every queued request waits — for a pool connection, up to
//! the pool's 10 s acquire timeout — so the answers that do come are late and the caller's
//! retries add to the queue. Refusing the excess at the door keeps the latency of what is
//! admitted close to the unloaded one and tells clients when to come back (RFC 9110 §15.6.4).
//! Exempt: the live stream (`GET /api/v1/stream`, connections that stay open by design) and
//! the webhooks (`/api/v1/webhooks/…`: Overseerr and Plex do not send a refused one again);
//! the health and metrics routes are outside this layer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;

use crate::ApiError;

/// Paths (prefixes) that are never shed.
const EXEMPT: [&str; 2] = ["/api/v1/stream", "/api/v1/webhooks/"];

/// Seconds a shed request is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u64 = 1;

/// Wraps `router` so that at most `max_in_flight` of its requests run at once (see the
/// module documentation); the others answer 503 `overloaded` and are counted in
/// `medianest_http_shed_total`.
pub fn limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    max_in_flight: usize,
) -> Router<S> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    router.layer(axum::middleware::from_fn_with_state(permits, shed))
}

/// Whether requests to `path` are never shed (the live stream, the webhooks).
pub fn exempt(path: &str) -> bool {
    EXEMPT.iter().any(|exempt| path.starts_with(exempt))
}

async fn shed(State(permits): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    // Held until the handler has answered (a streamed body is not waited for).
    let Ok(_permit) = permits.try_acquire() else {
        metrics::counter!("medianest_http_shed_total").increment(1);
        return ApiError::overloaded(RETRY_AFTER_SECS).into_response();
    };
    next.run(request).await
}
