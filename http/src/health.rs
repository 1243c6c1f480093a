//! `/healthz` (the process is alive) and `/readyz` (PostgreSQL and NATS are reachable).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;

/// What readiness checks.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// The database.
    pub pool: PgPool,
    /// The NATS connection, when the role uses one.
    pub nats: Option<async_nats::Client>,
}

/// `GET /healthz` and `GET /readyz`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    let postgres = sqlx::query("SELECT 1")
        .execute(&readiness.pool)
        .await
        .is_ok();
    let nats = readiness
        .nats
        .as_ref()
        .is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"postgres": postgres, "nats": nats, "ready": postgres && nats})),
    )
}
