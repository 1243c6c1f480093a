//! Commands of the `download` aggregate, and the limits on their content.

use serde::{Deserialize, Serialize};

use super::{Container, DownloadKind, Quality};
use crate::Actor;

/// Longest accepted URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// What may be asked of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadCommand {
    /// Queue a video or playlist.
    Queue {
        /// The requester.
        requested_by: Actor,
        /// An http(s) URL on the allow-list, at most 2048 bytes.
        url: String,
        /// Video or playlist.
        kind: DownloadKind,
        /// Height cap.
        quality: Quality,
        /// File container.
        container: Container,
    },
    /// The downloader saga starts (or, after a crash, restarts) yt-dlp.
    Start,
    /// One file landed in the library.
    RecordItemCompleted {
        /// yt-dlp's video id.
        video_id: String,
        /// The video's title.
        title: String,
        /// Path of the file, relative to the downloads root.
        path: String,
        /// File size in bytes.
        bytes: u64,
        /// 1-based position in the playlist (1 for a video).
        index: u32,
        /// Items in the playlist, when known.
        total: Option<u32>,
    },
    /// yt-dlp finished.
    Complete,
    /// yt-dlp failed.
    Fail {
        /// What went wrong (yt-dlp's error line).
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// Stop the download (the requester or an admin).
    Cancel {
        /// Who.
        by: Actor,
    },
    /// Queue a failed or cancelled download again (the requester or an admin).
    Retry {
        /// Who.
        by: Actor,
    },
    /// The Plex scanner asked Plex to scan the download's folder.
    RecordLibraryScanRequested {
        /// The library section's key.
        section_id: String,
        /// The folder scanned.
        path: String,
    },
    /// The Plex scanner gave up.
    RecordLibraryScanFailed {
        /// What went wrong.
        error: String,
    },
}

impl DownloadCommand {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queue { .. } => "queue",
            Self::Start => "start",
            Self::RecordItemCompleted { .. } => "record_item_completed",
            Self::Complete => "complete",
            Self::Fail { .. } => "fail",
            Self::Cancel { .. } => "cancel",
            Self::Retry { .. } => "retry",
            Self::RecordLibraryScanRequested { .. } => "record_library_scan_requested",
            Self::RecordLibraryScanFailed { .. } => "record_library_scan_failed",
        }
    }
}
