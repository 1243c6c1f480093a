//! Events of the `download` aggregate, version `1.0` (docs/design.md §3). Every field is public.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Container, DownloadKind, Quality};
use crate::ActorId;

/// Everything that can happen to a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DownloadEvent {
    /// A member queued a video or playlist.
    Queued {
        /// The requester's user id.
        requested_by: ActorId,
        /// The URL.
        url: String,
        /// Video or playlist.
        kind: DownloadKind,
        /// Height cap.
        quality: Quality,
        /// File container.
        container: Container,
    },
    /// The downloader started yt-dlp (attempt 1, 2, … across retries and restarts).
    Started {
        /// The attempt.
        attempt: u32,
    },
    /// One file is in the library.
    ItemCompleted {
        /// yt-dlp's video id.
        video_id: String,
        /// The video's title.
        title: String,
        /// Path relative to the downloads root.
        path: String,
        /// File size in bytes.
        bytes: u64,
        /// 1-based playlist position.
        index: u32,
        /// Playlist length, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u32>,
    },
    /// yt-dlp finished; every item is in the library.
    Completed {
        /// Files of this attempt.
        items: u32,
        /// Bytes of this attempt.
        bytes: u64,
    },
    /// yt-dlp failed.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
        /// The attempt that failed.
        attempt: u32,
    },
    /// The requester or an admin cancelled.
    Cancelled {
        /// Who.
        by: ActorId,
    },
    /// Queued again after a failure or cancel.
    Retried {
        /// Who.
        by: ActorId,
    },
    /// Plex was asked to scan the download's folder.
    LibraryScanRequested {
        /// The library section's key.
        section_id: String,
        /// The folder.
        path: String,
    },
    /// Plex could not be asked to scan.
    LibraryScanFailed {
        /// What went wrong.
        error: String,
    },
}

/// The version of every `download` event shape.
pub const EVENT_VERSION: &str = "1.0";

impl DownloadEvent {
    /// The wire name of the event type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Started { .. } => "started",
            Self::ItemCompleted { .. } => "item_completed",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::Retried { .. } => "retried",
            Self::LibraryScanRequested { .. } => "library_scan_requested",
            Self::LibraryScanFailed { .. } => "library_scan_failed",
        }
    }
}

impl DomainEvent for DownloadEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}
