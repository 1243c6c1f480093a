//! The YouTube downloader saga (docs/design.md §6; issue 4): `queued` and `retried` download
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
//!   [`DownloaderConfig::cancel_poll`]; once it no longer runs this attempt (`cancelled`, or
//!   retried into a new one), the process group is killed and the attempt's temp dir (the
//!   partial files) removed. Every report is written with `If-Match` on the version the saga
//!   last wrote, so a stale run can never report into a newer attempt.
//! - **Playlist cap at run time.** A playlist run downloads at most
//!   [`DownloaderConfig::max_items`] files (`--max-downloads`), however the playlist grew.
//! - **Crash safety.** yt-dlp writes into `<root>/.incomplete/<id>/` and moves finished
//!   files into place; a new attempt wipes that dir first, and the shared download archive
//!   makes files already in place be skipped, so a restart never leaves a partial file or a
//!   duplicate. On shutdown the running processes are killed and their downloads left
//!   `running`, to be restarted by the next start.
//! - **Circuit breaker.** yt-dlp runs go through the yt-dlp breaker ([`crate::breaker`]):
//!   a run whose failure is transient (network errors, 5xx, 429, timeouts — what
//!   `YtDlpError::is_retryable` says) counts towards opening it, a permanent one (a missing
//!   video, a 4xx) does not. While it is open, downloads wait `queued` for the trial time
//!   instead of starting (each failed run is still recorded as before); half-open, one
//!   download runs as the trial and its outcome decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use medianest_domain::download::{Download, DownloadCommand, DownloadKind, DownloadStatus};
use medianest_integrations::ytdlp::{
    DownloadJob, Finished, RunEvent, YtDlp, YtDlpError, INCOMPLETE_DIR,
};
use medianest_nats::{EventFeed, FeedEvent, Subjects};
use medianest_store::downloads::{DownloadCommandError, Downloads};
use medianest_store::lock::InstanceLock;
use medianest_store::{Committed, EventMetadata, ExecuteError};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::breaker::CircuitBreaker;
use crate::consumer::{self, Backoff, Saga, Step};
use crate::RetryPolicy;

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
    /// The most files one run of a playlist downloads (yt-dlp `--max-downloads`), whatever
    /// the playlist grew to since it was queued (default 200, the playlist cap).
    pub max_items: u32,
    /// Retries of the saga's writes through store failures (default 5 attempts, 200 ms
    /// doubling to 5 s).
    pub store_retry: RetryPolicy,
}

impl Default for DownloaderConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            progress_interval: Duration::from_secs(1),
            cancel_poll: Duration::from_millis(500),
            max_items: 200,
            store_retry: RetryPolicy {
                attempts: 5,
                min_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
            },
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
    progress: ProgressOut,
    pool: PgPool,
    config: DownloaderConfig,
    breaker: Arc<CircuitBreaker>,
}

/// Where progress messages go: core NATS, under `<prefix>.progress.download.<id>`.
#[derive(Debug, Clone)]
pub struct ProgressOut {
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// The subject scheme.
    pub subjects: Subjects,
}

impl Downloader {
    /// A downloader running `ytdlp` for the downloads of `downloads`, fed by `feed`,
    /// publishing progress to `progress`, calling yt-dlp through `breaker`.
    pub fn new(
        downloads: Arc<Downloads>,
        ytdlp: YtDlp,
        feed: Arc<dyn EventFeed>,
        progress: ProgressOut,
        pool: PgPool,
        config: DownloaderConfig,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            downloads,
            ytdlp,
            feed,
            progress,
            pool,
            config,
            breaker,
        }
    }

    /// Runs until `shutdown` (then kills running yt-dlp processes and returns once they are
    /// gone). Waits for the instance lock first (retrying through database outages).
    pub async fn run(&self, shutdown: CancellationToken) {
        let lock = loop {
            let lock = tokio::select! {
                lock = InstanceLock::acquire(&self.pool, NAME, Duration::from_secs(2)) => lock,
                () = shutdown.cancelled() => return,
            };
            match lock {
                Ok(lock) => break lock,
                Err(error) => {
                    warn!(%error, "downloader cannot take its instance lock; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        };
        let (queue, work) = mpsc::unbounded_channel::<(Uuid, Cause)>();
        match self.active_downloads().await {
            Ok(ids) => {
                self.reap_orphans(&ids);
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
        let dispatcher = self.clone().dispatch(work, queue.clone(), shutdown.clone());
        let feed = async move {
            let intake = Intake { queue };
            consumer::run(&intake, self.feed.as_ref(), Backoff::default(), &shutdown).await;
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

    /// Kills the yt-dlp left behind by a crashed worker for a download that is no longer
    /// active (cancelled meanwhile), and removes its partial files. Active downloads are
    /// handled when they restart.
    fn reap_orphans(&self, active: &[Uuid]) {
        let Ok(entries) = std::fs::read_dir(self.ytdlp.downloads_root().join(INCOMPLETE_DIR))
        else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".pid") else {
                continue;
            };
            if id.parse::<Uuid>().is_ok_and(|id| !active.contains(&id)) {
                self.ytdlp.reap(id);
            }
        }
    }

    /// Runs queued downloads, at most `concurrency` at once, each once at a time; a download
    /// queued again while it runs (a cancel and a retry in quick succession) runs again once
    /// the current run has ended.
    async fn dispatch(
        self,
        mut work: mpsc::UnboundedReceiver<(Uuid, Cause)>,
        requeue: mpsc::UnboundedSender<(Uuid, Cause)>,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        // Waiting or running downloads, with a cause when they must run once more.
        let in_flight: Arc<Mutex<HashMap<Uuid, Option<Cause>>>> = Arc::default();
        let mut running = tokio::task::JoinSet::new();
        loop {
            let next = tokio::select! {
                next = work.recv() => next,
                () = shutdown.cancelled() => None,
            };
            let Some((id, cause)) = next else {
                break;
            };
            {
                let mut in_flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(again) = in_flight.get_mut(&id) {
                    *again = Some(cause);
                    continue;
                }
                in_flight.insert(id, None);
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
            let requeue = requeue.clone();
            running.spawn(async move {
                this.download(id, cause, shutdown).await;
                let again = in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id)
                    .flatten();
                drop(permit);
                if let Some(cause) = again {
                    let _ = requeue.send((id, cause));
                }
            });
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }

    /// One attempt of download `id`, if it is still queued (or running: a restart).
    ///
    /// Every report of the attempt is written with the version the saga last wrote as
    /// `If-Match`, so a cancel or retry in between makes it stop instead of reporting into a
    /// newer attempt.
    #[instrument(skip(self, cause, shutdown), fields(cause = %cause.id))]
    async fn download(&self, id: Uuid, cause: Cause, shutdown: CancellationToken) {
        let metadata = EventMetadata::caused_by(WORKER, &cause.id, cause.correlation.as_deref());
        let current = match self.downloads.load(id.into()).await {
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
        // While the breaker is open the download stays queued; on shutdown the next start
        // picks it up again (it is in the ledger).
        let Some(permit) = self.breaker.acquire(&shutdown).await else {
            return;
        };
        let Some(started) = self
            .report(id, DownloadCommand::Start, None, &metadata)
            .await
        else {
            return;
        };
        let attempt = Attempt {
            id,
            number: started.aggregate.attempt(),
            version: started.version,
        };
        metrics::counter!("medianest_downloads_started_total").increment(1);
        let job = DownloadJob {
            id: id.to_string(),
            url: url.to_string(),
            playlist: kind == DownloadKind::Playlist,
            max_height: quality.max_height(),
            container: container.as_str().to_string(),
            max_downloads: (kind == DownloadKind::Playlist).then_some(self.config.max_items),
        };
        let (outcome, attempt) = match self.ytdlp.spawn(&job) {
            Ok(running) => self.follow(attempt, running, &metadata, &shutdown).await,
            Err(error) => (Some(Err(error)), attempt),
        };
        match &outcome {
            // Stopped: no verdict on the service (the permit is dropped).
            None => drop(permit),
            Some(Ok(_)) => {
                permit.succeeded();
            }
            Some(Err(error)) if error.is_retryable() => {
                permit.failed(&failure_text(error));
            }
            // A permanent failure (a missing video, a 4xx): the sites answered.
            Some(Err(_)) => {
                permit.answered();
            }
        }
        let command = match outcome {
            // Stopped (cancel, retry, shutdown): the process is gone; nothing to record.
            None => return,
            Some(Ok(Finished::Success | Finished::StoppedEarly)) => DownloadCommand::Complete,
            Some(Err(error)) => {
                warn!(%error, attempt = attempt.number, "download failed");
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
        self.report(id, command, Some(attempt.version), &metadata)
            .await;
    }

    /// Writes a report of the saga, retrying store failures with backoff (a lost report
    /// would leave the download hanging). `None` when it was refused (logged): a stale
    /// `If-Match`, or a status that no longer allows it.
    async fn report(
        &self,
        id: Uuid,
        command: DownloadCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Option<Committed<Download>> {
        let name = command.name();
        let (outcome, _) = self
            .config
            .store_retry
            .run(
                || {
                    self.downloads
                        .execute(id.into(), command.clone(), expected_version, metadata)
                },
                |error| {
                    matches!(
                        error,
                        DownloadCommandError::Execute(
                            ExecuteError::Store(_) | ExecuteError::Conflict
                        )
                    )
                },
            )
            .await;
        match outcome {
            Ok(committed) => Some(committed),
            Err(error) => {
                warn!(%error, command = name, "not recorded");
                None
            }
        }
    }

    /// Follows a running yt-dlp: progress out, items recorded, cancel and shutdown obeyed.
    /// Answers the outcome (`None` when the process was stopped) and the attempt as last
    /// written.
    async fn follow(
        &self,
        mut attempt: Attempt,
        mut running: medianest_integrations::ytdlp::RunningDownload,
        metadata: &EventMetadata,
        shutdown: &CancellationToken,
    ) -> (Option<Result<Finished, YtDlpError>>, Attempt) {
        let id = attempt.id;
        let subject = self.progress.subjects.progress("download", &id.to_string());
        let mut last_published: Option<Instant> = None;
        let mut items_completed = 0u32;
        let mut current_item: (Option<u32>, Option<u32>) = (None, None);
        // Watches the aggregate in its own task, so `next_event` is never dropped mid-line.
        let superseded = CancellationToken::new();
        let _watcher = AbortOnDrop(tokio::spawn(
            self.clone().watch(attempt, superseded.clone()),
        ));
        loop {
            let event = tokio::select! {
                event = running.next_event() => event,
                () = superseded.cancelled() => {
                    info!("cancelled or retried: stopping yt-dlp");
                    stop(running).await;
                    return (None, attempt);
                }
                () = shutdown.cancelled() => {
                    info!("shutting down: stopping yt-dlp; the download restarts with the next start");
                    stop(running).await;
                    return (None, attempt);
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
                            .progress
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
                    match self
                        .report(id, command, Some(attempt.version), metadata)
                        .await
                    {
                        Some(committed) => attempt.version = committed.version,
                        None => {
                            // Cancelled or retried meanwhile: this attempt is over.
                            stop(running).await;
                            return (None, attempt);
                        }
                    }
                }
            }
        }
        (Some(running.wait().await), attempt)
    }

    /// Cancels `superseded` once the aggregate no longer runs `attempt` (cancelled, or
    /// retried into a new attempt), checking every `cancel_poll`.
    async fn watch(self, attempt: Attempt, superseded: CancellationToken) {
        loop {
            tokio::time::sleep(self.config.cancel_poll).await;
            match self.downloads.load(attempt.id.into()).await {
                Ok((download, _)) => {
                    if download.status() != Some(DownloadStatus::Running)
                        || download.attempt() != attempt.number
                    {
                        superseded.cancel();
                        return;
                    }
                }
                Err(error) => warn!(%error, "cannot check for a cancel"),
            }
        }
    }
}

/// The attempt a run reports into: its number and the version the saga last wrote.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    id: Uuid,
    number: u32,
    version: i64,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

/// The downloader's saga on the skeleton: `queued` and `retried` downloads go to the
/// in-process work list (which the ledger backs up across restarts), so the step is done once
/// the download is queued there.
struct Intake {
    queue: mpsc::UnboundedSender<(Uuid, Cause)>,
}

#[async_trait]
impl Saga for Intake {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["download"]
    }

    fn wants(&self, event_type: &str) -> bool {
        matches!(event_type, "queued" | "retried")
    }

    async fn handle(&self, event: &FeedEvent, _shutdown: &CancellationToken) -> Step {
        if let Ok(id) = event.aggregate_id().parse::<Uuid>() {
            let cause = Cause {
                id: event.event.id.clone(),
                correlation: event.event.correlationid.clone(),
            };
            let _ = self.queue.send((id, cause));
        }
        Step::Done
    }
}
