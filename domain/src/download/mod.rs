//! The `download` aggregate: a member's YouTube video or playlist, downloaded by yt-dlp into
//! the Plex library (docs/design.md §3, Download).
//!
//! Lifecycle: `Queued → Running → Completed | Failed | Cancelled`; a failed or cancelled
//! download can be retried (back to `Queued`). After `Completed` the Plex scanner records
//! `LibraryScanRequested` or `LibraryScanFailed`. Progress is not an event (it goes to core
//! NATS, throttled).
//!
//! Decided here: the shape of a valid submission (an http(s) URL whose host is on the
//! allow-list, a known quality and container), who may cancel and retry (the requester or an
//! admin), which transitions are legal, and that reports from the downloader saga
//! (`RecordItemCompleted`, `Complete`, `Fail`) are idempotent under redelivery. Checks that
//! need the network (where a URL redirects) and the per-user limit span more than one
//! aggregate and belong to the command service.

mod events;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use events::{DownloadEvent, EVENT_VERSION};

use crate::{Actor, ActorId};

/// Longest accepted URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The YouTube hosts allowed by default (`MEDIANEST_YOUTUBE_ALLOWED_HOSTS`).
pub const DEFAULT_ALLOWED_HOSTS: [&str; 5] = [
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtu.be",
];

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

/// Why a download command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// No such download: 404.
    #[error("download not found")]
    NotFound,
    /// `Queue` on an existing download: 409.
    #[error("download already queued")]
    AlreadyQueued,
    /// Not legal in the current status: 409.
    #[error("cannot {command} a download that is {status}")]
    IllegalTransition {
        /// The command.
        command: &'static str,
        /// The current status.
        status: DownloadStatus,
    },
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What the aggregate needs from outside: the URL host allow-list.
#[derive(Debug, Clone)]
pub struct DownloadServices {
    /// Lower-case hosts a URL may name (exactly; no subdomain wildcards).
    pub allowed_hosts: Vec<String>,
}

impl Default for DownloadServices {
    fn default() -> Self {
        Self {
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
        }
    }
}

impl DownloadServices {
    /// Checks that `url` is an http(s) URL without credentials whose host is allowed, and
    /// answers it as parsed (WHATWG form), which is what gets recorded and run: text that
    /// parsers read differently (backslashes, whitespace, control characters) is refused.
    ///
    /// # Errors
    /// [`DownloadError::Invalid`] naming `url`.
    pub fn check_url(&self, url: &str) -> Result<String, DownloadError> {
        let invalid = |reason: &str| DownloadError::Invalid {
            field: "url",
            reason: reason.to_string(),
        };
        if url.len() > MAX_URL_BYTES {
            return Err(invalid("must be at most 2048 bytes"));
        }
        if url
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "must not contain backslashes, spaces or control characters",
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("must be an http(s) URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("must not carry credentials"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("has no host"))?
            .to_ascii_lowercase();
        if !self.allowed_hosts.contains(&host) {
            return Err(invalid("the host is not on the allow-list"));
        }
        Ok(parsed.to_string())
    }
}

/// The decided state of one download; `Default` is "not queued".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Download {
    queued: Option<Queued>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Queued {
    requested_by: ActorId,
    url: String,
    kind: DownloadKind,
    quality: Quality,
    container: Container,
    status: DownloadStatus,
    attempt: u32,
    items: Vec<String>,
    paths: Vec<String>,
    bytes: u64,
    scan_requested: bool,
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

    fn decide(
        &self,
        command: DownloadCommand,
        services: &DownloadServices,
    ) -> Result<Vec<DownloadEvent>, DownloadError> {
        use DownloadCommand as C;
        use DownloadEvent as E;
        use DownloadStatus as S;

        let name = command.name();
        if let C::Queue {
            requested_by,
            url,
            kind,
            quality,
            container,
        } = command
        {
            if self.queued.is_some() {
                return Err(DownloadError::AlreadyQueued);
            }
            let url = services.check_url(url.trim())?;
            return Ok(vec![E::Queued {
                requested_by: requested_by.id,
                url,
                kind,
                quality,
                container,
            }]);
        }
        let current = self.queued.as_ref().ok_or(DownloadError::NotFound)?;
        let status = current.status;
        let illegal = || DownloadError::IllegalTransition {
            command: name,
            status,
        };
        let may_manage = |by: &Actor, why: &'static str| {
            if by.is_admin() || by.id == current.requested_by {
                Ok(())
            } else {
                Err(DownloadError::Forbidden(why))
            }
        };
        let events = match command {
            C::Queue { .. } => unreachable!("handled above"),
            // A start while running is a restart after a crash: a new attempt.
            C::Start => match status {
                S::Queued | S::Running => vec![E::Started {
                    attempt: current.attempt + 1,
                }],
                _ => return Err(illegal()),
            },
            C::RecordItemCompleted {
                video_id,
                title,
                path,
                bytes,
                index,
                total,
            } => {
                if status != S::Running {
                    return Err(illegal());
                }
                if current.items.contains(&video_id) {
                    vec![]
                } else {
                    vec![E::ItemCompleted {
                        video_id,
                        title,
                        path,
                        bytes,
                        index,
                        total,
                    }]
                }
            }
            C::Complete => match status {
                S::Running => vec![E::Completed {
                    items: u32::try_from(current.items.len()).unwrap_or(u32::MAX),
                    bytes: current.bytes,
                }],
                S::Completed => vec![],
                _ => return Err(illegal()),
            },
            C::Fail { error, retryable } => match status {
                S::Queued | S::Running => vec![E::Failed {
                    error,
                    retryable,
                    attempt: current.attempt,
                }],
                S::Failed => vec![],
                _ => return Err(illegal()),
            },
            C::Cancel { by } => {
                may_manage(&by, "only the requester or an admin may cancel a download")?;
                match status {
                    S::Queued | S::Running => vec![E::Cancelled { by: by.id }],
                    _ => return Err(illegal()),
                }
            }
            C::Retry { by } => {
                may_manage(&by, "only the requester or an admin may retry a download")?;
                match status {
                    S::Failed | S::Cancelled => vec![E::Retried { by: by.id }],
                    _ => return Err(illegal()),
                }
            }
            C::RecordLibraryScanRequested { section_id, path } => match status {
                S::Completed if current.scan_requested => vec![],
                S::Completed => vec![E::LibraryScanRequested { section_id, path }],
                _ => return Err(illegal()),
            },
            C::RecordLibraryScanFailed { error } => match status {
                S::Completed if current.scan_requested => vec![],
                S::Completed => vec![E::LibraryScanFailed { error }],
                _ => return Err(illegal()),
            },
        };
        Ok(events)
    }
}

impl Aggregate for Download {
    const TYPE: &'static str = "download";
    type Command = DownloadCommand;
    type Event = DownloadEvent;
    type Error = DownloadError;
    type Services = DownloadServices;

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
        use DownloadEvent as E;
        use DownloadStatus as S;
        if let E::Queued {
            requested_by,
            url,
            kind,
            quality,
            container,
        } = event
        {
            self.queued = Some(Queued {
                requested_by,
                url,
                kind,
                quality,
                container,
                status: S::Queued,
                attempt: 0,
                items: Vec::new(),
                paths: Vec::new(),
                bytes: 0,
                scan_requested: false,
            });
            return;
        }
        let Some(state) = self.queued.as_mut() else {
            return;
        };
        match event {
            E::Queued { .. } => {}
            E::Started { attempt } => {
                state.status = S::Running;
                state.attempt = attempt;
                state.items.clear();
                state.paths.clear();
                state.bytes = 0;
            }
            E::ItemCompleted {
                video_id,
                path,
                bytes,
                ..
            } => {
                state.items.push(video_id);
                state.paths.push(path);
                state.bytes = state.bytes.saturating_add(bytes);
            }
            E::Completed { .. } => state.status = S::Completed,
            E::Failed { .. } => state.status = S::Failed,
            E::Cancelled { .. } => state.status = S::Cancelled,
            E::Retried { .. } => state.status = S::Queued,
            E::LibraryScanRequested { .. } | E::LibraryScanFailed { .. } => {
                state.scan_requested = true;
            }
        }
    }
}
