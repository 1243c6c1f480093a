//! The YouTube downloader saga (DESIGN.md §6; issue 4): `queued` and `retried` download
//! events become yt-dlp runs, and their outcome becomes `Started`, one `ItemCompleted` per
//! file, then `Completed` or `Failed`.
//!
//! - **Work list.** The durable consumer `saga-downloader` hands queued and retried downloads
//!   to an in-process queue and acks them; at start the saga also queues every download the
//!   `download_ledger` holds active (queued or running), so a download whose event was acked
//!   before a crash, or which was running when the worker died, is not forgotten. A download
//!   is run only while its aggregate says `queued` or `running` (a running one is a restart:
//!   a new attempt), and only once at a time per process; one downloader process runs at a
//!   time ([`InstanceLock`] `saga-downloader`).
//! - **Bounded concurrency.** At most [`DownloaderConfig::concurrency`] yt-dlp processes
//!   (default 2).
//! - **Progress.** yt-dlp's progress lines are published on core NATS
//!   `<prefix>.progress.download.<id>`, at most one message per
//!   [`DownloaderConfig::progress_interval`] (1 s) per download; shape in docs/events.md.
//! - **Cancel.** While yt-dlp runs, the aggregate is polled every
//!   [`DownloaderConfig::cancel_poll`]; once it says `cancelled`, the process group is killed
//!   and the attempt's temp dir (the partial files) removed. Nothing else is recorded.
//! - **Crash safety.** yt-dlp writes into `<root>/.incomplete/<id>/` and moves finished
//!   files into place; a new attempt wipes that dir first, and the shared download archive
//!   makes files already in place be skipped, so a restart never leaves a partial file or a
//!   duplicate. On shutdown the running processes are killed and their downloads left
//!   `running`, to be restarted by the next start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use medianest_domain::download::{DownloadCommand, DownloadKind, DownloadStatus};
use medianest_integrations::ytdlp::{DownloadJob, Finished, RunEvent, YtDlp, YtDlpError};
use medianest_nats::{EventFeed, Subjects};
use medianest_store::downloads::Downloads;
use medianest_store::lock::InstanceLock;
use medianest_store::EventMetadata;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::consumer::consume;

/// The consumer name (and instance lock).
pub const NAME: &str = "saga-downloader";
const WORKER: &str = "downloader";

/// Tuning of the downloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloaderConfig {
    /// yt-dlp processes at once (at least 1; default 2).
    pub concurrency: usize,
    /// Least time between two progress messages of one download (default 1 s).
    pub progress_interval: Duration,
    /// How often a running download checks whether it was cancelled (default 500 ms).
    pub cancel_poll: Duration,
}

impl Default for DownloaderConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            progress_interval: Duration::from_secs(1),
            cancel_poll: Duration::from_millis(500),
        }
    }
}

/// What caused a run: the event (for causation), or the start-up scan.
#[derive(Debug, Clone)]
struct Cause {
    id: String,
    correlation: Option<String>,
}

/// The downloader saga.
#[derive(Clone)]
pub struct Downloader {
    downloads: Arc<Downloads>,
    ytdlp: YtDlp,
    feed: Arc<dyn EventFeed>,
    nats: async_nats::Client,
    subjects: Subjects,
    pool: PgPool,
    config: DownloaderConfig,
}

impl Downloader {
    /// A downloader running `ytdlp` for the downloads of `downloads`, fed by `feed`,
    /// publishing progress with `nats` under `subjects`.
    pub fn new(
        downloads: Arc<Downloads>,
        ytdlp: YtDlp,
        feed: Arc<dyn EventFeed>,
        nats: async_nats::Client,
        subjects: Subjects,
        pool: PgPool,
        config: DownloaderConfig,
    ) -> Self {
        Self {
            downloads,
            ytdlp,
            feed,
            nats,
            subjects,
            pool,
            config,
        }
    }

    /// Runs until `shutdown` (then kills running yt-dlp processes and returns once they are
    /// gone). Waits for the instance lock first.
    pub async fn run(&self, shutdown: CancellationToken) {
        let lock = tokio::select! {
            lock = InstanceLock::acquire(&self.pool, NAME, Duration::from_secs(2)) => lock,
            () = shutdown.cancelled() => return,
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(error) => {
                warn!(%error, "downloader cannot take its instance lock");
                return;
            }
        };
        let (queue, work) = mpsc::unbounded_channel::<(Uuid, Cause)>();
        match self.active_downloads().await {
            Ok(ids) => {
                for id in ids {
                    let cause = Cause {
                        id: format!("recovery:{id}"),
                        correlation: None,
                    };
                    let _ = queue.send((id, cause));
                }
            }
            Err(error) => warn!(%error, "cannot list active downloads"),
        }
        let dispatcher = self.clone().dispatch(work, shutdown.clone());
        let feed = async move {
            consume(
                self.feed.as_ref(),
                NAME,
                &["download"],
                &shutdown,
                |event| {
                    if matches!(event.event_type(), "queued" | "retried") {
                        if let Ok(id) = event.aggregate_id().parse::<Uuid>() {
                            let cause = Cause {
                                id: event.event.id.clone(),
                                correlation: event.event.correlationid.clone(),
                            };
                            let _ = queue.send((id, cause));
                        }
                    }
                    std::future::ready(event)
                },
            )
            .await;
            drop(queue);
        };
        // One future: if this task is aborted, the running downloads are dropped with it
        // (and their yt-dlp process groups killed).
        tokio::join!(dispatcher, feed);
        drop(lock);
    }

    /// The downloads the ledger holds active, oldest first.
    async fn active_downloads(&self) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT download_id FROM download_ledger WHERE active ORDER BY queued_at",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Runs queued downloads, at most `concurrency` at once, each once at a time.
    async fn dispatch(
        self,
        mut work: mpsc::UnboundedReceiver<(Uuid, Cause)>,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let mut running = tokio::task::JoinSet::new();
        loop {
            let next = tokio::select! {
                next = work.recv() => next,
                () = shutdown.cancelled() => None,
            };
            let Some((id, cause)) = next else {
                break;
            };
            if !in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id)
            {
                continue; // already waiting or running
            }
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit,
                () = shutdown.cancelled() => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let this = self.clone();
            let in_flight = in_flight.clone();
            let shutdown = shutdown.clone();
            running.spawn(async move {
                this.download(id, cause, shutdown).await;
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }

    /// One attempt of download `id`, if it is still queued (or running: a restart).
    #[instrument(skip(self, cause, shutdown), fields(cause = %cause.id))]
    async fn download(&self, id: Uuid, cause: Cause, shutdown: CancellationToken) {
        let metadata = EventMetadata::caused_by(WORKER, &cause.id, cause.correlation.as_deref());
        let current = match self.downloads.load(id).await {
            Ok((current, _)) => current,
            Err(error) => {
                warn!(%error, "cannot load the download");
                return;
            }
        };
        if !matches!(
            current.status(),
            Some(DownloadStatus::Queued | DownloadStatus::Running)
        ) {
            info!(status = ?current.status(), "not waiting to run; nothing to do");
            return;
        }
        let (Some(url), Some(kind), Some((quality, container))) =
            (current.url(), current.kind(), current.format())
        else {
            return;
        };
        let started = match self
            .downloads
            .execute(id, DownloadCommand::Start, None, &metadata)
            .await
        {
            Ok(started) => started,
            Err(error) => {
                warn!(%error, "cannot record the start");
                return;
            }
        };
        let attempt = started.aggregate.attempt();
        metrics::counter!("medianest_downloads_started_total").increment(1);
        let job = DownloadJob {
            id: id.to_string(),
            url: url.to_string(),
            playlist: kind == DownloadKind::Playlist,
            max_height: quality.max_height(),
            container: container.as_str().to_string(),
        };
        let outcome = match self.ytdlp.spawn(&job) {
            Ok(running) => self.follow(id, running, &metadata, &shutdown).await,
            Err(error) => Some(Err(error)),
        };
        let command = match outcome {
            // Cancelled or shut down: the process is gone; nothing more to record.
            None => return,
            Some(Ok(Finished::Success | Finished::StoppedEarly)) => DownloadCommand::Complete,
            Some(Err(error)) => {
                warn!(%error, attempt, "download failed");
                DownloadCommand::Fail {
                    retryable: error.is_retryable(),
                    error: failure_text(&error),
                }
            }
        };
        let label = if matches!(command, DownloadCommand::Complete) {
            "completed"
        } else {
            "failed"
        };
        metrics::counter!("medianest_downloads_finished_total", "outcome" => label).increment(1);
        if let Err(error) = self.downloads.execute(id, command, None, &metadata).await {
            // E.g. cancelled just as yt-dlp finished: the aggregate decides.
            warn!(%error, "outcome not recorded");
        }
    }

    /// Follows a running yt-dlp: progress out, items recorded, cancel and shutdown obeyed.
    /// `None` when the process was stopped (cancel or shutdown).
    async fn follow(
        &self,
        id: Uuid,
        mut running: medianest_integrations::ytdlp::RunningDownload,
        metadata: &EventMetadata,
        shutdown: &CancellationToken,
    ) -> Option<Result<Finished, YtDlpError>> {
        let subject = self.subjects.progress("download", &id.to_string());
        let mut last_published: Option<Instant> = None;
        let mut items_completed = 0u32;
        let mut current_item: (Option<u32>, Option<u32>) = (None, None);
        let mut poll = tokio::time::interval(self.config.cancel_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = running.next_event() => event,
                _ = poll.tick() => {
                    if self.is_cancelled(id).await {
                        info!("cancelled: stopping yt-dlp");
                        stop(running).await;
                        return None;
                    }
                    continue;
                }
                () = shutdown.cancelled() => {
                    info!("shutting down: stopping yt-dlp; the download restarts with the next start");
                    stop(running).await;
                    return None;
                }
            };
            match event {
                None => break,
                Some(RunEvent::Progress(progress)) => {
                    let due = last_published
                        .is_none_or(|at| at.elapsed() >= self.config.progress_interval);
                    if due {
                        last_published = Some(Instant::now());
                        let message = json!({
                            "download_id": id,
                            "video_id": progress.video_id,
                            "index": current_item.0,
                            "total": current_item.1,
                            "downloaded_bytes": progress.downloaded_bytes,
                            "total_bytes": progress.total_bytes,
                            "speed_bytes_per_sec": progress.speed_bytes_per_sec,
                            "eta_secs": progress.eta_secs,
                            "items_completed": items_completed,
                            "at": chrono::Utc::now(),
                        });
                        if let Err(error) = self
                            .nats
                            .publish(subject.clone(), message.to_string().into())
                            .await
                        {
                            warn!(%error, "cannot publish progress");
                        }
                    }
                }
                Some(RunEvent::ItemDone(item)) => {
                    items_completed += 1;
                    current_item = (Some(item.index + 1), item.total);
                    let command = DownloadCommand::RecordItemCompleted {
                        video_id: item.video_id,
                        title: item.title,
                        path: item.relative_path,
                        bytes: item.bytes,
                        index: item.index,
                        total: item.total,
                    };
                    if let Err(error) = self.downloads.execute(id, command, None, metadata).await {
                        warn!(%error, "item not recorded");
                    }
                }
            }
        }
        Some(running.wait().await)
    }

    async fn is_cancelled(&self, id: Uuid) -> bool {
        match self.downloads.load(id).await {
            Ok((download, _)) => download.status() == Some(DownloadStatus::Cancelled),
            Err(error) => {
                warn!(%error, "cannot check for a cancel");
                false
            }
        }
    }
}

/// Kills a running yt-dlp and removes its partial files.
async fn stop(running: medianest_integrations::ytdlp::RunningDownload) {
    if let Err(error) = running.cancel().await {
        warn!(%error, "stopping yt-dlp failed");
    }
}

/// The text of `Failed.error`: yt-dlp's message, or what went wrong around it.
fn failure_text(error: &YtDlpError) -> String {
    match error {
        YtDlpError::Failed { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
