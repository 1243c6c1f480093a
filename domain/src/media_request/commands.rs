//! Commands of the `media_request` aggregate, and the limits on their content.

use serde::{Deserialize, Serialize};

use super::state::{Media, Seasons, Source};
use crate::Actor;

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Longest accepted note or reason, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// What callers may ask of a media request. Commands are cloneable because a command that
/// loses an optimistic-concurrency race is decided again on fresh state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaRequestCommand {
    /// Ask for a movie or show. Movies take no seasons; TV needs seasons.
    Submit {
        /// The requester.
        requested_by: Actor,
        /// What is requested.
        media: Media,
        /// TV only.
        seasons: Option<Seasons>,
        /// Whether the 4K version is requested.
        is_4k: bool,
        /// At most 1,000 characters.
        note: Option<String>,
    },
    /// Approve a pending request (admins only).
    Approve {
        /// The admin.
        by: Actor,
    },
    /// Decline a pending request (admins only).
    Decline {
        /// The admin.
        by: Actor,
        /// At most 1,000 characters.
        reason: Option<String>,
    },
    /// Cancel a request before it is available (the requester or an admin).
    Cancel {
        /// The requester or an admin.
        by: Actor,
        /// At most 1,000 characters.
        reason: Option<String>,
    },
    /// The forwarder saga got an Overseerr request id.
    RecordForwarded {
        /// Overseerr's `MediaRequest.id`.
        overseerr_request_id: u64,
    },
    /// The forwarder saga gave up.
    RecordForwardFailed {
        /// Calls made.
        attempt: u32,
        /// The last error.
        error: String,
        /// Whether a later retry may succeed.
        retryable: bool,
    },
    /// Overseerr processes the media.
    RecordProcessing,
    /// Some seasons are available.
    RecordPartiallyAvailable {
        /// Available season numbers.
        seasons: Vec<u32>,
    },
    /// The media is available.
    RecordAvailable {
        /// Plex `ratingKey`, when known.
        plex_rating_key: Option<String>,
        /// Who said so.
        source: Source,
    },
    /// Fulfilment failed.
    RecordFailed {
        /// What went wrong.
        reason: String,
        /// Who said so.
        source: Source,
    },
    /// Retry a failed request (admins only).
    Retry {
        /// The admin.
        by: Actor,
    },
}

impl MediaRequestCommand {
    /// A short name for logs and errors (`approve`, `record_forwarded`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submit { .. } => "submit",
            Self::Approve { .. } => "approve",
            Self::Decline { .. } => "decline",
            Self::Cancel { .. } => "cancel",
            Self::RecordForwarded { .. } => "record_forwarded",
            Self::RecordForwardFailed { .. } => "record_forward_failed",
            Self::RecordProcessing => "record_processing",
            Self::RecordPartiallyAvailable { .. } => "record_partially_available",
            Self::RecordAvailable { .. } => "record_available",
            Self::RecordFailed { .. } => "record_failed",
            Self::Retry { .. } => "retry",
        }
    }
}
