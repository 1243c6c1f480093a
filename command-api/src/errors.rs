//! The one mapping from command errors to HTTP problems.

use axum::http::StatusCode;
use medianest_domain::media_request::MediaRequestError;
use medianest_http::ApiError;
use medianest_store::media_requests::MediaRequestCommandError;
use medianest_store::ExecuteError;

pub(crate) fn problem(error: MediaRequestCommandError) -> ApiError {
    match error {
        MediaRequestCommandError::Duplicate { existing } => ApiError::new(
            StatusCode::CONFLICT,
            "duplicate-request",
            "Duplicate request",
            format!("an active request for this media already exists: {existing}"),
        )
        .with("existing_request_id", existing.to_string()),
        MediaRequestCommandError::QuotaExceeded {
            media_type,
            exceeded,
        } => ApiError::new(
            StatusCode::FORBIDDEN,
            "quota-exceeded",
            "Request quota exceeded",
            format!(
                "you may request {} {media_type} titles per {} days and have requested {}; the next slot frees at {}",
                exceeded.quota.limit,
                exceeded.quota.days,
                exceeded.used,
                exceeded.next_slot_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        )
        .with("media_type", media_type.as_str())
        .with("limit", exceeded.quota.limit)
        .with("days", exceeded.quota.days)
        .with("used", exceeded.used)
        .with(
            "next_slot_at",
            exceeded.next_slot_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        MediaRequestCommandError::AlreadyAvailable { rating_key, title } => ApiError::new(
            StatusCode::CONFLICT,
            "already-available",
            "Already available in Plex",
            format!("Plex already has this media: {title} (ratingKey {rating_key})"),
        )
        .with("plex_rating_key", rating_key)
        .with("plex_title", title),
        MediaRequestCommandError::SeasonsAvailable {
            seasons,
            rating_key,
        } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "seasons-available",
            "Seasons already available in Plex",
            format!(
                "Plex already has seasons {} of this show: request only the missing seasons",
                seasons
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with("available_seasons", seasons)
        .with("plex_rating_key", rating_key),
        MediaRequestCommandError::Execute(error) => execute_problem(error),
    }
}

fn execute_problem(error: ExecuteError<MediaRequestError>) -> ApiError {
    executor_problem(error, "request", rejected)
}

/// The problem of an executor error on an aggregate called `noun` (`request`, `download`),
/// with `rejected` mapping the aggregate's own refusals.
pub(crate) fn executor_problem<E: std::error::Error>(
    error: ExecuteError<E>,
    noun: &str,
    rejected: impl FnOnce(E) -> ApiError,
) -> ApiError {
    match error {
        ExecuteError::Rejected(rejection) => rejected(rejection),
        ExecuteError::VersionMismatch { expected, actual } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version-mismatch",
            "Version mismatch",
            format!("If-Match named version {expected}, the {noun} is at version {actual}"),
        )
        .with("current_version", actual),
        ExecuteError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "concurrent-modification",
            "Concurrent modification",
            format!("the {noun} changed while this command was decided; try again"),
        ),
        ExecuteError::Store(cause) => ApiError::internal(&cause),
    }
}

fn rejected(rejection: MediaRequestError) -> ApiError {
    let detail = rejection.to_string();
    match rejection {
        MediaRequestError::NotFound => ApiError::not_found("no such media request"),
        MediaRequestError::AlreadySubmitted => ApiError::new(
            StatusCode::CONFLICT,
            "already-exists",
            "Already exists",
            detail,
        ),
        MediaRequestError::IllegalTransition { status, .. } => ApiError::new(
            StatusCode::CONFLICT,
            "illegal-transition",
            "Not possible in the current status",
            detail,
        )
        .with("request_status", status.as_str()),
        MediaRequestError::Forbidden(why) => ApiError::forbidden(why),
        MediaRequestError::Invalid { field, .. } => ApiError::invalid(field, detail),
    }
}
