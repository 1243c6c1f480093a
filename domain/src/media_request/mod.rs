//! The `media_request` aggregate: a member's request for a movie or show, from submission to
//! availability in Plex (docs/design.md §3).
//!
//! Lifecycle: `Pending → Approved → Forwarded → Processing → (PartiallyAvailable) → Available`;
//! `Declined` and `Cancelled` are terminal; `Failed` is terminal until an admin retries.
//!
//! Invariants decided here: who may approve, decline, cancel and retry; which transitions are
//! legal; the shape of a valid submission; auto-approval. The rule "one active request per
//! `(media_type, tmdb_id, is_4k)`" spans aggregates and is enforced by the command service
//! with a reservation table (see `docs/decisions.md`).
//!
//! Commands that report what already happened (`Record*` from sagas and webhooks) are
//! idempotent: repeating one that is already reflected writes nothing, so redelivered webhooks
//! and saga steps apply no effect twice.

mod commands;
mod coverage;
mod events;
mod state;
#[cfg(test)]
mod tests;

use std::str::FromStr;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::MediaRequestCommand;
pub use coverage::{coverage, Coverage};
pub use events::{MediaRequestEvent, EVENT_VERSION};
pub use state::{AllSeasons, Media, MediaType, RequestStatus, Seasons, Source, TmdbId};

use crate::{Actor, ActorId};

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Longest accepted note or reason, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Which submissions are approved on submit (`MEDIANEST_AUTO_APPROVE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoApprovePolicy {
    /// Requests by admins (the default).
    #[default]
    Admins,
    /// Every request.
    All,
    /// None: every request waits for an admin.
    None,
}

impl AutoApprovePolicy {
    /// Whether a submission by `actor` is approved on submit.
    pub fn approves(self, actor: &Actor) -> bool {
        match self {
            Self::Admins => actor.is_admin(),
            Self::All => true,
            Self::None => false,
        }
    }
}

impl FromStr for AutoApprovePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admins" => Ok(Self::Admins),
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            other => Err(format!("`{other}` is not one of admins, all, none")),
        }
    }
}

/// What the aggregate needs from outside: the auto-approval policy.
#[derive(Debug, Clone, Default)]
pub struct MediaRequestServices {
    /// Which submissions are approved on submit.
    pub auto_approve: AutoApprovePolicy,
}

/// Why a command was refused. Each variant maps to one HTTP status at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaRequestError {
    /// The request does not exist (no `Submitted` event): 404.
    #[error("media request not found")]
    NotFound,
    /// `Submit` on an id that already has a request: 409.
    #[error("media request already submitted")]
    AlreadySubmitted,
    /// The command is not legal in the current status: 409.
    #[error("cannot {command} a request that is {status}")]
    IllegalTransition {
        /// The command's name.
        command: &'static str,
        /// The current status.
        status: RequestStatus,
    },
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, as named on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl MediaRequestError {
    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

/// The decided state of one media request; `Default` is "not yet submitted".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaRequest {
    submitted: Option<Submitted>,
}

/// State that exists once a request is submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Submitted {
    requested_by: ActorId,
    media: Media,
    seasons: Option<Seasons>,
    is_4k: bool,
    status: RequestStatus,
    overseerr_request_id: Option<u64>,
    available_seasons: Vec<u32>,
}

impl MediaRequest {
    /// The current status, `None` before submission.
    pub fn status(&self) -> Option<RequestStatus> {
        self.submitted.as_ref().map(|s| s.status)
    }

    /// What was requested, `None` before submission.
    pub fn media(&self) -> Option<&Media> {
        self.submitted.as_ref().map(|s| &s.media)
    }

    /// The requested seasons (TV), `None` for movies and before submission.
    pub fn seasons(&self) -> Option<&Seasons> {
        self.submitted.as_ref().and_then(|s| s.seasons.as_ref())
    }

    /// Whether the 4K version is requested.
    pub fn is_4k(&self) -> bool {
        self.submitted.as_ref().is_some_and(|s| s.is_4k)
    }

    /// Who requested it.
    pub fn requested_by(&self) -> Option<&ActorId> {
        self.submitted.as_ref().map(|s| &s.requested_by)
    }

    /// Overseerr's request id, once forwarded.
    pub fn overseerr_request_id(&self) -> Option<u64> {
        self.submitted.as_ref().and_then(|s| s.overseerr_request_id)
    }

    fn existing(&self) -> Result<&Submitted, MediaRequestError> {
        self.submitted.as_ref().ok_or(MediaRequestError::NotFound)
    }

    fn decide(
        &self,
        command: MediaRequestCommand,
        services: &MediaRequestServices,
    ) -> Result<Vec<MediaRequestEvent>, MediaRequestError> {
        use MediaRequestCommand as C;
        use MediaRequestEvent as E;
        use RequestStatus as S;

        let name = command.name();
        if let C::Submit {
            requested_by,
            media,
            seasons,
            is_4k,
            note,
        } = command
        {
            if self.submitted.is_some() {
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
            return Ok(events);
        }

        let current = self.existing()?;
        let status = current.status;
        let illegal = || MediaRequestError::IllegalTransition {
            command: name,
            status,
        };
        let events = match command {
            C::Submit { .. } => unreachable!("handled above"),
            C::Approve { by } => {
                require_admin(&by, "only admins may approve requests")?;
                if status != S::Pending {
                    return Err(illegal());
                }
                vec![E::Approved {
                    by: by.id,
                    auto: false,
                }]
            }
            C::Decline { by, reason } => {
                require_admin(&by, "only admins may decline requests")?;
                if status != S::Pending {
                    return Err(illegal());
                }
                vec![E::Declined {
                    by: by.id,
                    reason: optional_text("reason", reason)?,
                }]
            }
            C::Cancel { by, reason } => {
                if !by.is_admin() && by.id != current.requested_by {
                    return Err(MediaRequestError::Forbidden(
                        "only the requester or an admin may cancel a request",
                    ));
                }
                if !(status == S::Pending || status.is_fulfilling()) {
                    return Err(illegal());
                }
                vec![E::Cancelled {
                    by: by.id,
                    reason: optional_text("reason", reason)?,
                }]
            }
            C::RecordForwarded {
                overseerr_request_id,
            } => match current.overseerr_request_id {
                Some(known) if known == overseerr_request_id => vec![],
                Some(_) => return Err(illegal()),
                // A webhook may have moved the request on before the forwarder recorded the
                // id (Overseerr notifies while answering the POST): record it all the same.
                // A request cancelled while the call was in flight keeps the id too, so the
                // Overseerr request can still be found.
                None if status.is_fulfilling() || matches!(status, S::Available | S::Cancelled) => {
                    vec![E::Forwarded {
                        overseerr_request_id,
                    }]
                }
                None => return Err(illegal()),
            },
            C::RecordForwardFailed {
                attempt,
                error,
                retryable,
            } => {
                match status {
                    S::Failed => return Ok(vec![]),
                    S::Approved => {}
                    _ => return Err(illegal()),
                }
                vec![E::ForwardFailed {
                    attempt,
                    error,
                    retryable,
                }]
            }
            C::RecordProcessing => match status {
                S::Approved | S::Forwarded => vec![E::Processing],
                S::Processing | S::PartiallyAvailable | S::Available => vec![],
                _ => return Err(illegal()),
            },
            C::RecordPartiallyAvailable { mut seasons } => {
                if seasons.is_empty() {
                    return Err(MediaRequestError::invalid(
                        "seasons",
                        "must name at least one available season",
                    ));
                }
                seasons.sort_unstable();
                seasons.dedup();
                match status {
                    S::PartiallyAvailable if current.available_seasons == seasons => vec![],
                    S::Available => vec![],
                    s if s.is_fulfilling() => vec![E::PartiallyAvailable { seasons }],
                    _ => return Err(illegal()),
                }
            }
            C::RecordAvailable {
                plex_rating_key,
                source,
            } => match status {
                S::Available => vec![],
                S::Pending | S::Failed => vec![E::Available {
                    plex_rating_key,
                    source,
                }],
                s if s.is_fulfilling() => vec![E::Available {
                    plex_rating_key,
                    source,
                }],
                _ => return Err(illegal()),
            },
            C::RecordFailed { reason, source } => match status {
                S::Failed => vec![],
                s if s.is_fulfilling() => vec![E::Failed { reason, source }],
                _ => return Err(illegal()),
            },
            C::Retry { by } => {
                require_admin(&by, "only admins may retry requests")?;
                if status != S::Failed {
                    return Err(illegal());
                }
                vec![E::Retried { by: by.id }]
            }
        };
        Ok(events)
    }
}

fn require_admin(actor: &Actor, why: &'static str) -> Result<(), MediaRequestError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(MediaRequestError::Forbidden(why))
    }
}

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

type ValidSubmission = (Media, Option<Seasons>, Option<String>);

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

impl Aggregate for MediaRequest {
    const TYPE: &'static str = "media_request";
    type Command = MediaRequestCommand;
    type Event = MediaRequestEvent;
    type Error = MediaRequestError;
    type Services = MediaRequestServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use MediaRequestEvent as E;
        use RequestStatus as S;

        if let E::Submitted {
            requested_by,
            media,
            seasons,
            is_4k,
            ..
        } = event
        {
            self.submitted = Some(Submitted {
                requested_by,
                media,
                seasons,
                is_4k,
                status: S::Pending,
                overseerr_request_id: None,
                available_seasons: Vec::new(),
            });
            return;
        }
        let Some(state) = self.submitted.as_mut() else {
            // Events without a prior `Submitted` cannot be written by `handle`.
            return;
        };
        match event {
            E::Submitted { .. } => {}
            E::Approved { .. } => state.status = S::Approved,
            E::Retried { .. } => {
                // A retry forwards anew: the old Overseerr request is history.
                state.overseerr_request_id = None;
                state.status = S::Approved;
            }
            E::Declined { .. } => state.status = S::Declined,
            E::Cancelled { .. } => state.status = S::Cancelled,
            E::Forwarded {
                overseerr_request_id,
            } => {
                state.overseerr_request_id = Some(overseerr_request_id);
                if state.status == S::Approved {
                    state.status = S::Forwarded;
                }
            }
            E::ForwardFailed { .. } | E::Failed { .. } => state.status = S::Failed,
            E::Processing => state.status = S::Processing,
            E::PartiallyAvailable { seasons } => {
                state.available_seasons = seasons;
                state.status = S::PartiallyAvailable;
            }
            E::Available { .. } => state.status = S::Available,
        }
    }
}
