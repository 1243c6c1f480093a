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
mod decide;
mod errors;
mod events;
mod state;
#[cfg(test)]
mod tests;

use std::str::FromStr;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::{MediaRequestCommand, MAX_NOTE_CHARS, MAX_TITLE_CHARS};
pub use coverage::{coverage, Coverage};
pub use errors::MediaRequestError;
pub use events::{MediaRequestEvent, EVENT_VERSION};
pub use state::{AllSeasons, Media, MediaType, RequestStatus, Seasons, Source, TmdbId};

use crate::decision;
use crate::Actor;
use state::Submitted;

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

/// The decided state of one media request; `Default` is "not yet submitted". Its accessors
/// are in `state.rs`, its decisions in `decide.rs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaRequest {
    submitted: Option<Submitted>,
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
        decision::handle(self, command, services, sink).await
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
