//! The one mapping from command errors to HTTP problems.

use medianest_domain::media_request::MediaRequestError;
use medianest_http::{ApiError, ProblemType};
use medianest_store::media_requests::MediaRequestCommandError;
use medianest_store::ExecuteError;

pub(crate) fn problem(error: MediaRequestCommandError) -> ApiError {
    match error {
        MediaRequestCommandError::Duplicate { existing } => ApiError::new(ProblemType::DuplicateRequest, format!("an active request for this media already exists: {existing}"),
        )
        .with("existing_request_id", existing.to_string()),
        MediaRequestCommandError::QuotaExceeded {
            media_type,
            exceeded,
        } => ApiError::new(ProblemType::QuotaExceeded, format!(
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
        MediaRequestCommandError::AlreadyAvailable { rating_key, title } => ApiError::new(ProblemType::AlreadyAvailable, format!("Plex already has this media: {title} (ratingKey {rating_key})"),
        )
        .with("plex_rating_key", rating_key)
        .with("plex_title", title),
        MediaRequestCommandError::SeasonsAvailable {
            seasons,
            rating_key,
        } => ApiError::new(ProblemType::SeasonsAvailable, format!(
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
            ProblemType::VersionMismatch,
            format!("If-Match named version {expected}, the {noun} is at version {actual}"),
        )
        .with("current_version", actual),
        ExecuteError::Conflict => ApiError::new(
            ProblemType::ConcurrentModification,
            format!("the {noun} changed while this command was decided; try again"),
        ),
        ExecuteError::Store(cause) => ApiError::internal(&cause),
    }
}

fn rejected(rejection: MediaRequestError) -> ApiError {
    let detail = rejection.to_string();
    match rejection {
        MediaRequestError::NotFound => ApiError::not_found("no such media request"),
        MediaRequestError::AlreadySubmitted => ApiError::new(ProblemType::AlreadyExists, detail),
        MediaRequestError::IllegalTransition { status, .. } => {
            ApiError::new(ProblemType::IllegalTransition, detail)
                .with("request_status", status.as_str())
        }
        MediaRequestError::Forbidden(why) => ApiError::forbidden(why),
        MediaRequestError::Invalid { field, .. } => ApiError::invalid(field, detail),
    }
}
