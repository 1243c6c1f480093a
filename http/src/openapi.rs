//! Shared pieces of the OpenAPI document served at `/api/openapi.json`: the problem schema
//! and the route that serves the merged document.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem (`application/problem+json`); extension members vary by `type`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:medianest:problem:<slug>`, stable.
    #[schema(example = "urn:medianest:problem:duplicate-request")]
    pub r#type: String,
    /// Summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
}

/// `GET /api/openapi.json`.
pub fn router(document: utoipa::openapi::OpenApi) -> Router {
    Router::new().route(
        "/api/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document) }
        }),
    )
}
