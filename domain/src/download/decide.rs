//! What each download command decides: one function per command, and the dispatch.
//!
//! `queue` is the only function that sees a download that may not exist yet; every other
//! command takes the download as [`Existing`], which the dispatch makes (or refuses with
//! `NotFound`) before calling it.

use super::state::Queued;
use super::{
    Container, Download, DownloadCommand, DownloadError, DownloadEvent, DownloadKind,
    DownloadServices, DownloadStatus, Quality,
};
use crate::decision::{Decide, Existing};
use crate::Actor;

use DownloadEvent as E;
use DownloadStatus as S;

/// The decision on a download.
type Decision = Result<Vec<DownloadEvent>, DownloadError>;

/// The download a command acts on.
type Queue<'a> = Existing<'a, Queued>;

impl Queue<'_> {
    /// The refusal of this command in the download's current status.
    fn illegal(&self) -> DownloadError {
        DownloadError::IllegalTransition {
            command: self.command,
            status: self.status,
        }
    }
}

impl Decide for Download {
    fn decide(&self, command: DownloadCommand, services: &DownloadServices) -> Decision {
        use DownloadCommand as C;

        let name = command.name();
        let existing = || Existing::of(self.queued.as_ref(), name, DownloadError::NotFound);
        match command {
            C::Queue {
                requested_by,
                url,
                kind,
                quality,
                container,
            } => queue(self, requested_by, &url, kind, quality, container, services),
            C::Start => start(existing()?),
            C::RecordItemCompleted {
                video_id,
                title,
                path,
                bytes,
                index,
                total,
            } => record_item_completed(existing()?, video_id, title, path, bytes, index, total),
            C::Complete => complete(existing()?),
            C::Fail { error, retryable } => fail(existing()?, error, retryable),
            C::Cancel { by } => cancel(existing()?, by),
            C::Retry { by } => retry(existing()?, by),
            C::RecordLibraryScanRequested { section_id, path } => {
                record_library_scan(existing()?, E::LibraryScanRequested { section_id, path })
            }
            C::RecordLibraryScanFailed { error } => {
                record_library_scan(existing()?, E::LibraryScanFailed { error })
            }
        }
    }
}

/// `Queue`: a video or playlist whose URL is allowed, on a new id.
fn queue(
    download: &Download,
    requested_by: Actor,
    url: &str,
    kind: DownloadKind,
    quality: Quality,
    container: Container,
    services: &DownloadServices,
) -> Decision {
    if download.queued.is_some() {
        return Err(DownloadError::AlreadyQueued);
    }
    let url = services.check_url(url.trim())?;
    Ok(vec![E::Queued {
        requested_by: requested_by.id,
        url,
        kind,
        quality,
        container,
    }])
}

/// `Start`: a new attempt. A start while running is a restart after a crash.
fn start(download: Queue<'_>) -> Decision {
    match download.status {
        S::Queued | S::Running => Ok(vec![E::Started {
            attempt: download.attempt + 1,
        }]),
        _ => Err(download.illegal()),
    }
}

/// `RecordItemCompleted`: one file landed in a running attempt (once per video id).
fn record_item_completed(
    download: Queue<'_>,
    video_id: String,
    title: String,
    path: String,
    bytes: u64,
    index: u32,
    total: Option<u32>,
) -> Decision {
    if download.status != S::Running {
        return Err(download.illegal());
    }
    if download.items.contains(&video_id) {
        return Ok(vec![]);
    }
    Ok(vec![E::ItemCompleted {
        video_id,
        title,
        path,
        bytes,
        index,
        total,
    }])
}

/// `Complete`: yt-dlp finished; the event counts the attempt's items and bytes.
fn complete(download: Queue<'_>) -> Decision {
    match download.status {
        S::Running => Ok(vec![E::Completed {
            items: u32::try_from(download.items.len()).unwrap_or(u32::MAX),
            bytes: download.bytes,
        }]),
        S::Completed => Ok(vec![]),
        _ => Err(download.illegal()),
    }
}

/// `Fail`: yt-dlp failed in the current attempt.
fn fail(download: Queue<'_>, error: String, retryable: bool) -> Decision {
    match download.status {
        S::Queued | S::Running => Ok(vec![E::Failed {
            error,
            retryable,
            attempt: download.attempt,
        }]),
        S::Failed => Ok(vec![]),
        _ => Err(download.illegal()),
    }
}

/// `Cancel`: the requester or an admin stops a queued or running download.
fn cancel(download: Queue<'_>, by: Actor) -> Decision {
    by.require_admin_or(
        &download.requested_by,
        "only the requester or an admin may cancel a download",
    )?;
    match download.status {
        S::Queued | S::Running => Ok(vec![E::Cancelled { by: by.id }]),
        _ => Err(download.illegal()),
    }
}

/// `Retry`: the requester or an admin queues a failed or cancelled download again.
fn retry(download: Queue<'_>, by: Actor) -> Decision {
    by.require_admin_or(
        &download.requested_by,
        "only the requester or an admin may retry a download",
    )?;
    match download.status {
        S::Failed | S::Cancelled => Ok(vec![E::Retried { by: by.id }]),
        _ => Err(download.illegal()),
    }
}

/// `RecordLibraryScanRequested` and `RecordLibraryScanFailed`: the Plex scanner's outcome
/// (`outcome`, the event to write) for a completed download, recorded once.
fn record_library_scan(download: Queue<'_>, outcome: DownloadEvent) -> Decision {
    match download.status {
        S::Completed if download.scan_requested => Ok(vec![]),
        S::Completed => Ok(vec![outcome]),
        _ => Err(download.illegal()),
    }
}
