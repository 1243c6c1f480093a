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

mod commands;
mod decide;
mod errors;
mod events;
mod state;
#[cfg(test)]
mod tests;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::{DownloadCommand, MAX_URL_BYTES};
pub use errors::DownloadError;
pub use events::{DownloadEvent, EVENT_VERSION};
pub use state::{Container, DownloadKind, DownloadStatus, Quality};

use crate::decision;
use state::Queued;

/// The YouTube hosts allowed by default (`MEDIANEST_YOUTUBE_ALLOWED_HOSTS`).
pub const DEFAULT_ALLOWED_HOSTS: [&str; 5] = [
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtu.be",
];

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

/// The decided state of one download; `Default` is "not queued". Its accessors are in
/// `state.rs`, its decisions in `decide.rs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Download {
    queued: Option<Queued>,
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
        decision::handle(self, command, services, sink).await
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
