//! The state of a download: what was queued, its status and progress, and its accessors, with
//! the value types they are made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Download;
use crate::ActorId;

/// A single video or a playlist (a channel counts as a playlist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadKind {
    /// One video.
    Video,
    /// Every video of a playlist or feed.
    Playlist,
}

/// The best video height to fetch (`best`, or a cap such as `1080p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quality {
    /// The best available.
    #[serde(rename = "best")]
    Best,
    /// At most 2160 lines.
    #[serde(rename = "2160p")]
    P2160,
    /// At most 1440 lines.
    #[serde(rename = "1440p")]
    P1440,
    /// At most 1080 lines.
    #[serde(rename = "1080p")]
    P1080,
    /// At most 720 lines.
    #[serde(rename = "720p")]
    P720,
    /// At most 480 lines.
    #[serde(rename = "480p")]
    P480,
    /// At most 360 lines.
    #[serde(rename = "360p")]
    P360,
}

impl Quality {
    /// Every quality, best first.
    pub const ALL: [Quality; 7] = [
        Self::Best,
        Self::P2160,
        Self::P1440,
        Self::P1080,
        Self::P720,
        Self::P480,
        Self::P360,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::P2160 => "2160p",
            Self::P1440 => "1440p",
            Self::P1080 => "1080p",
            Self::P720 => "720p",
            Self::P480 => "480p",
            Self::P360 => "360p",
        }
    }

    /// The height cap in lines, `None` for `best`.
    pub fn max_height(self) -> Option<u32> {
        match self {
            Self::Best => None,
            Self::P2160 => Some(2160),
            Self::P1440 => Some(1440),
            Self::P1080 => Some(1080),
            Self::P720 => Some(720),
            Self::P480 => Some(480),
            Self::P360 => Some(360),
        }
    }
}

impl FromStr for Quality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not one of best, 2160p, 1440p, 1080p, 720p, 480p, 360p")
            })
    }
}

/// The file container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// MPEG-4.
    Mp4,
    /// Matroska.
    Mkv,
    /// WebM.
    Webm,
}

impl Container {
    /// The wire name and file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mkv => "mkv",
            Self::Webm => "webm",
        }
    }
}

impl FromStr for Container {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Mp4, Self::Mkv, Self::Webm]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of mp4, mkv, webm"))
    }
}

/// The status of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadStatus {
    /// Waiting for a downloader slot.
    Queued,
    /// yt-dlp runs.
    Running,
    /// Every item is in the library.
    Completed,
    /// yt-dlp failed (`retryable` says whether a retry may help).
    Failed,
    /// The requester or an admin cancelled.
    Cancelled,
}

impl DownloadStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for DownloadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DownloadStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Queued,
            Self::Running,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown download status `{s}`"))
    }
}

/// State that exists once a download is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Queued {
    pub(super) requested_by: ActorId,
    pub(super) url: String,
    pub(super) kind: DownloadKind,
    pub(super) quality: Quality,
    pub(super) container: Container,
    pub(super) status: DownloadStatus,
    pub(super) attempt: u32,
    pub(super) items: Vec<String>,
    pub(super) paths: Vec<String>,
    pub(super) bytes: u64,
    pub(super) scan_requested: bool,
}

impl Download {
    /// The status, `None` before `Queued`.
    pub fn status(&self) -> Option<DownloadStatus> {
        self.queued.as_ref().map(|q| q.status)
    }

    /// The URL.
    pub fn url(&self) -> Option<&str> {
        self.queued.as_ref().map(|q| q.url.as_str())
    }

    /// The requester.
    pub fn requested_by(&self) -> Option<&ActorId> {
        self.queued.as_ref().map(|q| &q.requested_by)
    }

    /// Video or playlist.
    pub fn kind(&self) -> Option<DownloadKind> {
        self.queued.as_ref().map(|q| q.kind)
    }

    /// Quality and container.
    pub fn format(&self) -> Option<(Quality, Container)> {
        self.queued.as_ref().map(|q| (q.quality, q.container))
    }

    /// The current attempt (0 before the first start).
    pub fn attempt(&self) -> u32 {
        self.queued.as_ref().map_or(0, |q| q.attempt)
    }

    /// Video ids completed in the current attempt, in order.
    pub fn items(&self) -> &[String] {
        self.queued.as_ref().map_or(&[], |q| q.items.as_slice())
    }

    /// The library folders (first path component, relative to the downloads root) of the
    /// items completed in the current attempt, in order of first appearance.
    pub fn folders(&self) -> Vec<&str> {
        let mut folders: Vec<&str> = Vec::new();
        for path in self.queued.iter().flat_map(|q| q.paths.iter()) {
            let folder = path.split('/').next().unwrap_or(path);
            if !folder.is_empty() && !folders.contains(&folder) {
                folders.push(folder);
            }
        }
        folders
    }

    /// Whether the Plex scanner recorded its outcome (`LibraryScanRequested` or
    /// `LibraryScanFailed`) for the completed download.
    pub fn library_scan_recorded(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| q.scan_requested)
    }

    /// Bytes completed in the current attempt.
    pub fn bytes(&self) -> u64 {
        self.queued.as_ref().map_or(0, |q| q.bytes)
    }
}
