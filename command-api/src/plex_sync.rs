//! `POST /api/v1/admin/plex/sync`: an admin asks the Plex sync worker for a full pass over
//! the Plex library (issue 11). The request is recorded in `plex_sync_state`; the worker,
//! wherever it runs, starts the pass at its next tick (a pass under way finishes first).
//! Nothing is written to the event log: the Plex library is a read model of the outside world.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use medianest_http::auth::require_admin;
use medianest_http::{ApiError, Caller, ProblemType};
use medianest_store::plex_library;
use serde::Serialize;
use utoipa::ToSchema;

use crate::CommandState;

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new().route("/api/v1/admin/plex/sync", post(start_full_sync))
}

/// Answer of `POST /api/v1/admin/plex/sync`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncRequested {
    /// When the full pass was asked for (RFC 3339, UTC).
    requested_at: chrono::DateTime<chrono::Utc>,
    /// The number of the last full pass begun (0: none yet); the requested one gets a higher
    /// number.
    last_pass: i64,
    /// Whether a full pass is under way now (the requested one follows it).
    running: bool,
}

/// Ask for a full pass over the Plex library (admins).
#[utoipa::path(
    post,
    path = "/api/v1/admin/plex/sync",
    tag = "plex",
    responses(
        (status = 202, description = "the full pass is requested", body = SyncRequested),
        (status = 403, description = "not an admin (`forbidden`)"),
        (status = 503, description = "the Plex sync is off: no Plex Media Server configured, or MEDIANEST_PLEX_SYNC=false (`plex-disabled`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn start_full_sync(
    State(state): State<CommandState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    require_admin(&caller, "only admins may start a Plex sync")?;
    if !state.plex_sync {
        return Err(ApiError::new(ProblemType::PlexDisabled, "the Plex library is not synced: set MEDIANEST_PLEX_URL and MEDIANEST_PLEX_TOKEN, and leave MEDIANEST_PLEX_SYNC on"));
    }
    let requested_at = plex_library::request_full_pass(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let sync = plex_library::sync_state(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SyncRequested {
            requested_at,
            last_pass: sync.pass,
            running: sync.full_running,
        }),
    )
        .into_response())
}
