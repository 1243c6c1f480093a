//! Events of the `media_request` aggregate, version `1.0`.
//!
//! Stored as `{"<event_type>": {...}}` in the `payload` column; the event type is the
//! `snake_case` name (`submitted`, `forward_failed`). A changed shape gets a new version and an
//! upcaster; stored events are never edited.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::{Media, Seasons, Source};
use crate::ActorId;

/// Everything that can happen to a media request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaRequestEvent {
    /// A member asked for a movie or show.
    Submitted {
        /// The requester's user id.
        requested_by: ActorId,
        /// What was requested.
        media: Media,
        /// TV only: the requested seasons.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seasons: Option<Seasons>,
        /// Whether the 4K version is requested.
        is_4k: bool,
        /// A note from the requester.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// An admin approved, or the auto-approval policy did (`auto: true`).
    Approved {
        /// Who approved (the requester when `auto`).
        by: ActorId,
        /// Whether the approval came from the auto-approval policy.
        auto: bool,
    },
    /// An admin declined.
    Declined {
        /// The admin.
        by: ActorId,
        /// Why, shown to the requester.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The requester or an admin cancelled.
    Cancelled {
        /// Who cancelled.
        by: ActorId,
        /// Why, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Overseerr accepted the request (`POST /api/v1/request` answered 201, or an existing
    /// Overseerr request was found after a 409).
    Forwarded {
        /// Overseerr's `MediaRequest.id`.
        overseerr_request_id: u64,
    },
    /// Forwarding to Overseerr failed for good (retries exhausted, or a 4xx answer).
    ForwardFailed {
        /// How many calls were made.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// Whether retrying later may succeed (5xx, timeouts) or not (4xx).
        retryable: bool,
    },
    /// Overseerr reports the media as processing (approved there, handed to Sonarr/Radarr).
    Processing,
    /// Some seasons are available.
    PartiallyAvailable {
        /// Season numbers available so far.
        seasons: Vec<u32>,
    },
    /// The media is available in Plex.
    Available {
        /// Plex `ratingKey` of the item, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plex_rating_key: Option<String>,
        /// Who said so.
        source: Source,
    },
    /// Fulfilment failed (declined or failed in Overseerr).
    Failed {
        /// What went wrong.
        reason: String,
        /// Who said so.
        source: Source,
    },
    /// An admin retried a failed request: it is approved again and forwarded anew.
    Retried {
        /// The admin.
        by: ActorId,
    },
}

/// The version of every `media_request` event shape.
pub const EVENT_VERSION: &str = "1.0";

impl MediaRequestEvent {
    /// The wire name of the event type (`submitted`, `forward_failed`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Submitted { .. } => "submitted",
            Self::Approved { .. } => "approved",
            Self::Declined { .. } => "declined",
            Self::Cancelled { .. } => "cancelled",
            Self::Forwarded { .. } => "forwarded",
            Self::ForwardFailed { .. } => "forward_failed",
            Self::Processing => "processing",
            Self::PartiallyAvailable { .. } => "partially_available",
            Self::Available { .. } => "available",
            Self::Failed { .. } => "failed",
            Self::Retried { .. } => "retried",
        }
    }
}

impl DomainEvent for MediaRequestEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}
