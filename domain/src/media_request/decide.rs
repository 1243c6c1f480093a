//! What each media-request command decides: one function per command, and the dispatch.
//!
//! `submit` is the only function that sees a request that may not exist yet; every other
//! command takes the request as [`Existing`], which the dispatch makes (or refuses with
//! `NotFound`) before calling it.

use super::state::Submitted;
use super::{
    Media, MediaRequest, MediaRequestCommand, MediaRequestError, MediaRequestEvent,
    MediaRequestServices, MediaType, RequestStatus, Seasons, Source, MAX_NOTE_CHARS,
    MAX_TITLE_CHARS,
};
use crate::decision::{Decide, Existing};
use crate::Actor;

use MediaRequestEvent as E;
use RequestStatus as S;

/// The decision on a submitted request.
type Decision = Result<Vec<MediaRequestEvent>, MediaRequestError>;

/// The request a command acts on.
type Request<'a> = Existing<'a, Submitted>;

impl Request<'_> {
    /// The refusal of this command in the request's current status.
    fn illegal(&self) -> MediaRequestError {
        MediaRequestError::IllegalTransition {
            command: self.command,
            status: self.status,
        }
    }
}

impl Decide for MediaRequest {
    fn decide(&self, command: MediaRequestCommand, services: &MediaRequestServices) -> Decision {
        use MediaRequestCommand as C;

        let name = command.name();
        let existing = || Existing::of(self.submitted.as_ref(), name, MediaRequestError::NotFound);
        match command {
            C::Submit {
                requested_by,
                media,
                seasons,
                is_4k,
                note,
            } => submit(self, requested_by, media, seasons, is_4k, note, services),
            C::Approve { by } => approve(existing()?, by),
            C::Decline { by, reason } => decline(existing()?, by, reason),
            C::Cancel { by, reason } => cancel(existing()?, by, reason),
            C::RecordForwarded {
                overseerr_request_id,
            } => record_forwarded(existing()?, overseerr_request_id),
            C::RecordForwardFailed {
                attempt,
                error,
                retryable,
            } => record_forward_failed(existing()?, attempt, error, retryable),
            C::RecordProcessing => record_processing(existing()?),
            C::RecordPartiallyAvailable { seasons } => {
                record_partially_available(existing()?, seasons)
            }
            C::RecordAvailable {
                plex_rating_key,
                source,
            } => record_available(existing()?, plex_rating_key, source),
            C::RecordFailed { reason, source } => record_failed(existing()?, reason, source),
            C::Retry { by } => retry(existing()?, by),
        }
    }
}

/// `Submit`: a valid submission on a new id, approved at once when the policy says so.
fn submit(
    request: &MediaRequest,
    requested_by: Actor,
    media: Media,
    seasons: Option<Seasons>,
    is_4k: bool,
    note: Option<String>,
    services: &MediaRequestServices,
) -> Decision {
    if request.submitted.is_some() {
        return Err(MediaRequestError::AlreadySubmitted);
    }
    let (media, seasons, note) = validate_submission(media, seasons, note)?;
    let mut events = vec![E::Submitted {
        requested_by: requested_by.id.clone(),
        media,
        seasons,
        is_4k,
        note,
    }];
    if services.auto_approve.approves(&requested_by) {
        events.push(E::Approved {
            by: requested_by.id,
            auto: true,
        });
    }
    Ok(events)
}

/// `Approve`: an admin approves a pending request.
fn approve(request: Request<'_>, by: Actor) -> Decision {
    by.require_admin("only admins may approve requests")?;
    if request.status != S::Pending {
        return Err(request.illegal());
    }
    Ok(vec![E::Approved {
        by: by.id,
        auto: false,
    }])
}

/// `Decline`: an admin declines a pending request.
fn decline(request: Request<'_>, by: Actor, reason: Option<String>) -> Decision {
    by.require_admin("only admins may decline requests")?;
    if request.status != S::Pending {
        return Err(request.illegal());
    }
    Ok(vec![E::Declined {
        by: by.id,
        reason: optional_text("reason", reason)?,
    }])
}

/// `Cancel`: the requester or an admin cancels a request that is not yet available.
fn cancel(request: Request<'_>, by: Actor, reason: Option<String>) -> Decision {
    by.require_admin_or(
        &request.requested_by,
        "only the requester or an admin may cancel a request",
    )?;
    if !(request.status == S::Pending || request.status.is_fulfilling()) {
        return Err(request.illegal());
    }
    Ok(vec![E::Cancelled {
        by: by.id,
        reason: optional_text("reason", reason)?,
    }])
}

/// `RecordForwarded`: the forwarder saga got Overseerr's request id.
fn record_forwarded(request: Request<'_>, overseerr_request_id: u64) -> Decision {
    match request.overseerr_request_id {
        Some(known) if known == overseerr_request_id => Ok(vec![]),
        Some(_) => Err(request.illegal()),
        // A webhook may have moved the request on before the forwarder recorded the id
        // (Overseerr notifies while answering the POST): record it all the same. A request
        // cancelled while the call was in flight keeps the id too, so the Overseerr request
        // can still be found.
        None if request.status.is_fulfilling()
            || matches!(request.status, S::Available | S::Cancelled) =>
        {
            Ok(vec![E::Forwarded {
                overseerr_request_id,
            }])
        }
        None => Err(request.illegal()),
    }
}

/// `RecordForwardFailed`: the forwarder saga gave up on an approved request.
fn record_forward_failed(
    request: Request<'_>,
    attempt: u32,
    error: String,
    retryable: bool,
) -> Decision {
    match request.status {
        S::Failed => Ok(vec![]),
        S::Approved => Ok(vec![E::ForwardFailed {
            attempt,
            error,
            retryable,
        }]),
        _ => Err(request.illegal()),
    }
}

/// `RecordProcessing`: Overseerr processes the media.
fn record_processing(request: Request<'_>) -> Decision {
    match request.status {
        S::Approved | S::Forwarded => Ok(vec![E::Processing]),
        S::Processing | S::PartiallyAvailable | S::Available => Ok(vec![]),
        _ => Err(request.illegal()),
    }
}

/// `RecordPartiallyAvailable`: some seasons are available (a new set of them, or nothing).
fn record_partially_available(request: Request<'_>, mut seasons: Vec<u32>) -> Decision {
    if seasons.is_empty() {
        return Err(MediaRequestError::invalid(
            "seasons",
            "must name at least one available season",
        ));
    }
    seasons.sort_unstable();
    seasons.dedup();
    match request.status {
        S::PartiallyAvailable if request.available_seasons == seasons => Ok(vec![]),
        S::Available => Ok(vec![]),
        s if s.is_fulfilling() => Ok(vec![E::PartiallyAvailable { seasons }]),
        _ => Err(request.illegal()),
    }
}

/// `RecordAvailable`: the media is available, whatever the request's progress.
fn record_available(
    request: Request<'_>,
    plex_rating_key: Option<String>,
    source: Source,
) -> Decision {
    match request.status {
        S::Available => Ok(vec![]),
        s if matches!(s, S::Pending | S::Failed) || s.is_fulfilling() => Ok(vec![E::Available {
            plex_rating_key,
            source,
        }]),
        _ => Err(request.illegal()),
    }
}

/// `RecordFailed`: fulfilment failed.
fn record_failed(request: Request<'_>, reason: String, source: Source) -> Decision {
    match request.status {
        S::Failed => Ok(vec![]),
        s if s.is_fulfilling() => Ok(vec![E::Failed { reason, source }]),
        _ => Err(request.illegal()),
    }
}

/// `Retry`: an admin sends a failed request to Overseerr again.
fn retry(request: Request<'_>, by: Actor) -> Decision {
    by.require_admin("only admins may retry requests")?;
    if request.status != S::Failed {
        return Err(request.illegal());
    }
    Ok(vec![E::Retried { by: by.id }])
}

/// A trimmed note or reason of at most [`MAX_NOTE_CHARS`] characters; empty is none.
fn optional_text(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<String>, MediaRequestError> {
    let text = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(MediaRequestError::invalid(
            field,
            "must be at most 1000 characters",
        ));
    }
    Ok(text)
}

/// A submission as recorded: the media, the seasons and the note, normalised.
type ValidSubmission = (Media, Option<Seasons>, Option<String>);

/// Checks and normalises a submission (trimmed title, sorted seasons, trimmed note).
fn validate_submission(
    mut media: Media,
    seasons: Option<Seasons>,
    note: Option<String>,
) -> Result<ValidSubmission, MediaRequestError> {
    media.title = media.title.trim().to_string();
    if media.title.is_empty() {
        return Err(MediaRequestError::invalid("title", "must not be empty"));
    }
    if media.title.chars().count() > MAX_TITLE_CHARS {
        return Err(MediaRequestError::invalid(
            "title",
            "must be at most 300 characters",
        ));
    }
    if media.year.is_some_and(|y| !(1870..=2200).contains(&y)) {
        return Err(MediaRequestError::invalid(
            "year",
            "must be between 1870 and 2200",
        ));
    }
    if media.tvdb_id == Some(0) {
        return Err(MediaRequestError::invalid(
            "tvdb_id",
            "must be a positive integer",
        ));
    }
    let seasons = match (media.media_type, seasons) {
        (MediaType::Movie, None) => None,
        (MediaType::Movie, Some(_)) => {
            return Err(MediaRequestError::invalid(
                "seasons",
                "movies take no seasons",
            ))
        }
        (MediaType::Tv, None) => {
            return Err(MediaRequestError::invalid(
                "seasons",
                "tv requests need seasons: a list of season numbers or \"all\"",
            ))
        }
        (MediaType::Tv, Some(Seasons::List(mut list))) => {
            if list.is_empty() {
                return Err(MediaRequestError::invalid(
                    "seasons",
                    "must name at least one season",
                ));
            }
            if list.iter().any(|&s| s > 1000) {
                return Err(MediaRequestError::invalid(
                    "seasons",
                    "season numbers are at most 1000",
                ));
            }
            list.sort_unstable();
            list.dedup();
            Some(Seasons::List(list))
        }
        (MediaType::Tv, Some(all @ Seasons::All(_))) => Some(all),
    };
    Ok((media, seasons, optional_text("note", note)?))
}
