//! The Plex scanner saga (docs/design.md §6; issue 4): after a download's `completed`, Plex is
//! asked to scan the folder its files landed in — `GET /library/sections/{key}/refresh
//! ?path=<folder>` on the configured library section, found by type (`movie`, which is
//! what Plex's "Other Videos" libraries are) and title (`MEDIANEST_PLEX_LIBRARY`, default
//! `YouTube`), never by a hard-coded key — and the outcome is recorded as
//! `LibraryScanRequested {section_id, path}` or, once retries are exhausted or the failure
//! is permanent, `LibraryScanFailed {error}`.
//!
//! The folder is given as Plex sees it: `MEDIANEST_PLEX_DOWNLOADS_DIR` (default: the
//! downloads root) joined with the items' folder; a download whose items landed in several
//! folders has the whole root scanned. A completed download with no new files (everything
//! was in the archive) needs no scan and records nothing. Exactly once in effect: the
//! aggregate is loaded first and a recorded outcome ends the matter.
//!
//! Calls go through Plex's circuit breaker ([`crate::breaker`]): while it is open the
//! scanner waits for the trial time instead of calling (failures that keep it open use up no
//! attempt), and a shutdown during that wait leaves the event to be delivered again.

use medianest_integrations::cause::Context;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use medianest_domain::download::{DownloadCommand, DownloadStatus};
use medianest_domain::DownloadId;
use medianest_integrations::plex::{PlexError, PmsClient};
use medianest_nats::{EventFeed, FeedEvent};
use medianest_store::downloads::Downloads;
use medianest_store::EventMetadata;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::breaker::{CircuitBreaker, Guarded};
use crate::consumer::{self, Backoff, Saga, Step};
use crate::RetryPolicy;

/// The consumer name.
pub const NAME: &str = "saga-plex-scanner";
const WORKER: &str = "plex-scanner";

/// The Plex library type of "Other Videos" (and movie) libraries.
pub const SECTION_TYPE: &str = "movie";

/// Where downloads go in Plex.
#[derive(Debug, Clone)]
pub struct ScanTarget {
    /// The library section's title (matched case-insensitively).
    pub section_title: String,
    /// The downloads root as Plex sees it (a path on the Plex server).
    pub plex_root: PathBuf,
}

/// The Plex scanner saga.
#[derive(Clone)]
pub struct PlexScanner {
    downloads: Arc<Downloads>,
    pms: PmsClient,
    feed: Arc<dyn EventFeed>,
    target: ScanTarget,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl PlexScanner {
    /// A scanner calling `pms` for the completed downloads of `feed`.
    pub fn new(
        downloads: Arc<Downloads>,
        pms: PmsClient,
        feed: Arc<dyn EventFeed>,
        target: ScanTarget,
        retry: RetryPolicy,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            downloads,
            pms,
            feed,
            target,
            retry,
            breaker,
        }
    }

    /// Consumes download events until `shutdown` on the saga skeleton ([`crate::consumer`]).
    pub async fn run(&self, shutdown: CancellationToken) {
        consumer::run(self, self.feed.as_ref(), Backoff::default(), &shutdown).await;
    }

    /// Asks Plex to scan the folder of the download of `event`, unless already recorded: one
    /// step of the saga ([`Step::Retry`] when the download could not be loaded or the
    /// outcome not recorded; [`Step::Stopped`] when `shutdown` came while Plex's breaker held
    /// the call back).
    #[instrument(skip_all, fields(aggregate_id = %event.aggregate_id(), event = %event.event.id))]
    pub async fn scan(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step {
        let Ok(id) = event.aggregate_id().parse::<DownloadId>() else {
            warn!("event with a malformed aggregate id");
            return Step::Done;
        };
        let download = match self.downloads.load(id).await {
            Ok((download, _)) => download,
            Err(error) => return Step::retry(Context::new("cannot load the download", error)),
        };
        if download.status() != Some(DownloadStatus::Completed) || download.library_scan_recorded()
        {
            return Step::Done;
        }
        let path = match download.folders().as_slice() {
            [] => {
                info!("no new files: nothing to scan");
                return Step::Done;
            }
            [folder] => self.target.plex_root.join(folder),
            _ => self.target.plex_root.clone(),
        };
        let path = path.to_string_lossy().into_owned();
        let (outcome, attempts) = self
            .retry
            .run(
                || {
                    self.breaker.call(
                        shutdown,
                        || self.request_scan(&path),
                        PlexError::is_retryable,
                    )
                },
                |error| error.is_transient(PlexError::is_retryable),
            )
            .await;
        let outcome = match outcome {
            Ok(section_id) => Ok(section_id),
            Err(Guarded::Stopped) => return Step::Stopped,
            Err(Guarded::Failed(error)) => Err(error),
        };
        let label = if outcome.is_ok() {
            "requested"
        } else {
            "failed"
        };
        metrics::counter!("medianest_plex_scans_total", "outcome" => label).increment(1);
        let command = match outcome {
            Ok(section_id) => DownloadCommand::RecordLibraryScanRequested { section_id, path },
            Err(error) => {
                warn!(%error, attempts, "Plex scan not requested");
                DownloadCommand::RecordLibraryScanFailed {
                    error: error.to_string(),
                }
            }
        };
        let metadata = EventMetadata::caused_by(
            WORKER,
            &event.event.id,
            event.event.correlationid.as_deref(),
        );
        match self.downloads.execute(id, command, None, &metadata).await {
            Ok(_) => Step::Done,
            // A repeated scan request is harmless: Plex scans the folder again.
            Err(error) if error.is_transient() => {
                Step::retry(Context::new("cannot record the scan outcome", error))
            }
            Err(error) => {
                warn!(%error, "scan outcome not recorded");
                Step::Done
            }
        }
    }

    /// Finds the section and asks it to scan `path`; answers the section's key.
    async fn request_scan(&self, path: &str) -> Result<String, PlexError> {
        let section = self
            .pms
            .find_section(SECTION_TYPE, &self.target.section_title)
            .await?
            .ok_or_else(|| {
                PlexError::Config(format!(
                    "Plex has no {SECTION_TYPE} library titled \"{}\" (MEDIANEST_PLEX_LIBRARY)",
                    self.target.section_title
                ))
            })?;
        self.pms.refresh_section(&section.key, Some(path)).await?;
        Ok(section.key)
    }
}

#[async_trait]
impl Saga for PlexScanner {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["download"]
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == "completed"
    }

    async fn handle(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step {
        self.scan(event, shutdown).await
    }
}
