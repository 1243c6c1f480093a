//! The Plex sync worker (issue 11): keeps the Plex library read model (`plex_library`,
//! `plex_library_seasons`; [`medianest_store::plex_library`]) in step with the Plex Media
//! Server, and turns what it finds into `partially_available` / `available` for the media
//! requests Plex now covers.
//!
//! - **Sections.** Every movie and show section of the server, except "Other Videos"
//!   libraries (agent `tv.plex.agents.none`: personal media has no TMDB identity). A section
//!   named in [`PlexSyncConfig::sections_4k`] (by key or title) holds 4K copies.
//! - **Full pass** (at start when none has completed, every [`PlexSyncConfig::full_interval`],
//!   default daily, and when an admin asks with `POST /api/v1/admin/plex/sync`): pages
//!   through each section with `GET /library/sections/{key}/all?includeGuids=1&type=N` and
//!   `X-Plex-Container-Start/Size` — movies (`type=1`), or shows (`type=2`) then their
//!   seasons (`type=3`) — and writes each page in one statement stamped with the pass
//!   number. Memory is one page ([`PlexSyncConfig::page_size`], default 200), whatever the
//!   library's size.
//! - **Removals.** At the end of a section, what the pass did not see is checked with the
//!   server item by item (`GET /library/metadata/{ratingKey}`): gone → deleted, still there
//!   → kept. Paging by offset can skip an item when the section changes between two pages;
//!   the check keeps such an item from being taken for removed.
//! - **Resumable.** After each page, the next start is saved (`plex_sync_progress`); a pass
//!   cut short by a crash, a shutdown or an outage resumes there. The next start is counted
//!   here, not taken from the server, and a section pass ends at the server's `totalSize`
//!   (or a short page), so paging always ends. While a full pass keeps failing,
//!   recently-added passes still run between its retries.
//! - **Recently added** (every [`PlexSyncConfig::recent_interval`], default 5 minutes, and at
//!   once after Plex's `library.new` webhook): the same routes with `sort=addedAt:desc` and
//!   `addedAt>>=` the previous recently-added pass's start less
//!   [`PlexSyncConfig::recent_overlap`].
//! - **Guids.** Items are keyed by their `tmdb://` and `tvdb://` guids (Plex's new agents);
//!   items with neither are skipped and counted in
//!   `medianest_plex_items_skipped_total{reason="no_guid"}`.
//! - **4K.** A movie is 4K when one of its media's `videoResolution` is `4k` (and HD when
//!   another is not), or when it sits in a 4K section; a show only by its section (shows have
//!   no media of their own).
//! - **Requests.** For each page, the active requests for the media on it (the reservation
//!   table) are compared with what Plex has ([`coverage`]): every season asked for (or the
//!   movie) → `RecordAvailable {source: plex, plex_rating_key}`; some seasons →
//!   `RecordPartiallyAvailable {seasons}`. Both are idempotent, so a re-sync writes nothing
//!   new. A request the aggregate refuses to move (e.g. partially available while still
//!   pending) is left as it is.
//! - **Outages.** PMS calls go through Plex's circuit breaker and the retry policy; a failure
//!   ends the pass early (it resumes at the next tick) and is kept in
//!   `plex_sync_state.last_error`. One sync worker runs at a time ([`InstanceLock`]
//!   `plex-sync`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use medianest_domain::media_request::{
    coverage, Coverage, MediaRequestCommand, MediaRequestError, MediaType, RequestStatus, Source,
};
use medianest_integrations::plex::{
    ItemKind, LibraryItem, LibraryPage, LibrarySection, ListItems, PlexError, PmsClient,
};
use medianest_store::lock::InstanceLock;
use medianest_store::media_requests::{MediaRequestCommandError, MediaRequests};
use medianest_store::plex_library::{self, PlexItemRow, PlexSeasonRow, Progress};
use medianest_store::{EventMetadata, ExecuteError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::breaker::{CircuitBreaker, Guarded};
use crate::RetryPolicy;

const WORKER: &str = "plex-sync";

/// Rows confirmed with the server per round of the removal check.
const REMOVAL_BATCH: i64 = 200;

/// A section pass stops here whatever the server says (a guard against endless paging).
const MAX_ITEMS_PER_SECTION: u64 = 10_000_000;

/// Settings of the Plex sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexSyncConfig {
    /// Between recently-added passes (default 5 minutes).
    pub recent_interval: Duration,
    /// Between full passes (default 24 hours).
    pub full_interval: Duration,
    /// How often the worker looks whether a pass is due or was asked for (default 5 s).
    pub tick: Duration,
    /// Items per PMS page (`X-Plex-Container-Size`, default 200).
    pub page_size: u32,
    /// Keys or titles (case-insensitive) of the sections that hold 4K copies.
    pub sections_4k: Vec<String>,
    /// How far before the previous recently-added pass the next one looks back (default
    /// 10 minutes), for items whose `addedAt` lags the scan.
    pub recent_overlap: Duration,
}

impl Default for PlexSyncConfig {
    fn default() -> Self {
        Self {
            recent_interval: Duration::from_secs(300),
            full_interval: Duration::from_secs(24 * 3600),
            tick: Duration::from_secs(5),
            page_size: 200,
            sections_4k: Vec::new(),
            recent_overlap: Duration::from_secs(600),
        }
    }
}

/// Why a pass stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The Plex Media Server failed (after retries).
    #[error("Plex Media Server: {0}")]
    Plex(#[from] PlexError),
    /// Recording a request's availability failed.
    #[error("recording availability: {0}")]
    Record(#[from] MediaRequestCommandError),
    /// Shutdown came first.
    #[error("stopped")]
    Stopped,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// The full pass number (for a recently-added pass, the one its writes are stamped with).
    pub pass: i64,
    /// Whether it was a full pass.
    pub full: bool,
    /// Movies and shows written.
    pub items: u64,
    /// Seasons written.
    pub seasons: u64,
    /// Items skipped for want of a `tmdb://` or `tvdb://` guid.
    pub skipped: u64,
    /// PMS pages read.
    pub pages: u64,
    /// Movies and shows removed (full passes).
    pub removed: u64,
    /// Requests whose status changed.
    pub requests_updated: u64,
}

/// The Plex sync worker.
#[derive(Clone)]
pub struct PlexSync {
    pool: PgPool,
    pms: PmsClient,
    requests: Arc<MediaRequests>,
    breaker: Arc<CircuitBreaker>,
    retry: RetryPolicy,
    config: PlexSyncConfig,
}

/// The kinds a section is paged by, in order (shows before their seasons).
fn kinds_of(section: &LibrarySection) -> &'static [ItemKind] {
    match section.section_type.as_str() {
        "movie" => &[ItemKind::Movie],
        "show" => &[ItemKind::Show, ItemKind::Season],
        _ => &[],
    }
}

fn kind_code(kind: ItemKind) -> i16 {
    i16::from(kind.number())
}

impl PlexSync {
    /// A worker reading `pms` through `breaker` (Plex's, shared with the scanner), retrying
    /// transient failures with `retry`.
    pub fn new(
        pool: PgPool,
        pms: PmsClient,
        requests: Arc<MediaRequests>,
        breaker: Arc<CircuitBreaker>,
        retry: RetryPolicy,
        config: PlexSyncConfig,
    ) -> Self {
        Self {
            pool,
            pms,
            requests,
            breaker,
            retry,
            config,
        }
    }

    /// Runs passes as they fall due until `shutdown` (a page in hand is finished first).
    /// Only one sync worker runs at a time; another one waits as a standby.
    pub async fn run(&self, shutdown: CancellationToken) {
        let _lock = loop {
            match InstanceLock::try_acquire(&self.pool, WORKER).await {
                Ok(Some(lock)) => break lock,
                Ok(None) => debug!("another Plex sync runs; standing by"),
                Err(error) => warn!(%error, "cannot take the Plex sync lock"),
            }
            if !pause(self.config.tick, &shutdown).await {
                return;
            }
        };
        loop {
            // After a failure, wait a recently-added interval rather than a tick, so a server
            // that refuses the token is not asked again every few seconds.
            let wait = match self.tick(&shutdown).await {
                Ok(Some(report)) => {
                    info!(?report, "Plex sync pass done");
                    self.config.tick
                }
                Ok(None) => self.config.tick,
                Err(SyncError::Stopped) => return,
                Err(error) => {
                    warn!(%error, "Plex sync pass stopped short; it resumes later");
                    self.config.recent_interval.max(self.config.tick)
                }
            };
            if !pause(wait, &shutdown).await {
                return;
            }
        }
    }

    /// Runs the pass that is due, if any: a full pass under way (resumed), never run, asked
    /// for or due; else a recently-added pass asked for or due.
    ///
    /// # Errors
    /// [`SyncError`] when the pass stopped short (its progress is kept).
    pub async fn tick(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<PassReport>, SyncError> {
        let state = plex_library::sync_state(&self.pool).await?;
        let now = Utc::now();
        let elapsed = |since: Option<DateTime<Utc>>, interval: Duration| {
            since.is_none_or(|at| (now - at).to_std().unwrap_or_default() >= interval)
        };
        let asked =
            |asked: Option<DateTime<Utc>>, since: Option<DateTime<Utc>>| match (asked, since) {
                (Some(asked), Some(since)) => asked >= since,
                (Some(_), None) => true,
                (None, _) => false,
            };
        let full_due = state.full_running
            || state.full_finished_at.is_none()
            || asked(state.full_requested_at, state.full_started_at)
            || elapsed(state.full_finished_at, self.config.full_interval);
        // A full pass covers what a recently-added pass would see: the interval counts from
        // whichever began last.
        let last_look = state.recent_started_at.max(state.full_started_at);
        let recent_due = asked(state.recent_requested_at, last_look)
            || elapsed(last_look, self.config.recent_interval);
        // A full pass that keeps failing (a section the server refuses, say) must not hold up
        // the recently-added passes: after a failure, a due recently-added pass goes first.
        let full_failing = state.full_running && state.last_error.is_some();
        if full_due && !(full_failing && recent_due) {
            return self.full_pass(shutdown).await.map(Some);
        }
        if recent_due {
            let since = state
                .recent_started_at
                .or(state.full_started_at)
                .unwrap_or(now)
                - chrono::Duration::from_std(self.config.recent_overlap).unwrap_or_default();
            return self
                .recent_pass(since, state.pass, shutdown)
                .await
                .map(Some);
        }
        Ok(None)
    }

    /// One full pass (or the rest of the one under way).
    ///
    /// # Errors
    /// [`SyncError`] when it stopped short; the next call resumes it.
    #[instrument(skip_all)]
    pub async fn full_pass(&self, shutdown: &CancellationToken) -> Result<PassReport, SyncError> {
        let pass = plex_library::begin_full_pass(&self.pool).await?;
        let result = self.full_pass_sections(pass, shutdown).await;
        let error = result.as_ref().err().map(ToString::to_string);
        plex_library::end_full_pass(&self.pool, pass, error.as_deref()).await?;
        if let Ok(report) = &result {
            metrics::gauge!("medianest_plex_library_items")
                .set(plex_library::count(&self.pool).await? as f64);
            metrics::counter!("medianest_plex_sync_passes_total", "kind" => "full").increment(1);
            debug!(?report, "full pass done");
        }
        result
    }

    async fn full_pass_sections(
        &self,
        pass: i64,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        let mut report = PassReport {
            pass,
            full: true,
            ..PassReport::default()
        };
        let sections = self.sections(shutdown).await?;
        for section in &sections {
            for &kind in kinds_of(section) {
                self.full_pass_kind(pass, section, kind, &mut report, shutdown)
                    .await?;
            }
            report.removed += self.remove_unseen(section, pass, shutdown).await?;
        }
        let keys: Vec<String> = sections.iter().map(|s| s.key.clone()).collect();
        report.removed += plex_library::remove_sections_except(&self.pool, &keys).await?;
        Ok(report)
    }

    /// Pages through one kind of one section from its saved progress.
    async fn full_pass_kind(
        &self,
        pass: i64,
        section: &LibrarySection,
        kind: ItemKind,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<(), SyncError> {
        let code = kind_code(kind);
        let mut progress = plex_library::progress(&self.pool, pass, &section.key, code).await?;
        while !progress.done {
            let start = u64::try_from(progress.next_start).unwrap_or(0);
            let page = self.page(section, kind, start, None, shutdown).await?;
            self.write_page(section, &page, pass, report).await?;
            let (next, done) = self.next_page(start, &page);
            progress = Progress {
                next_start: i64::try_from(next).unwrap_or(i64::MAX),
                done,
            };
            plex_library::save_progress(&self.pool, pass, &section.key, code, &progress).await?;
        }
        Ok(())
    }

    /// Where the page after `page` (asked from `start`) starts, and whether there is none.
    /// The offset is counted here, not taken from the server, so a server that misreports
    /// its offset cannot keep a pass going; a server that ignores paging (more items than
    /// asked for) has sent everything.
    fn next_page(&self, start: u64, page: &LibraryPage) -> (u64, bool) {
        let size = u64::from(self.config.page_size.max(1));
        let next = start.saturating_add(size);
        let returned = page.items.len() as u64;
        let done = returned > size
            || match page.total_size {
                Some(total) => next >= total,
                None => returned < size,
            }
            || next >= MAX_ITEMS_PER_SECTION;
        (next, done)
    }

    /// Confirms with the server each item and season of `section` that full pass `pass` did
    /// not see: deletes what the server no longer has, keeps (and stamps) the rest. Paging
    /// by offset can skip an item when the section changes between two pages; such an item
    /// is kept. Answers how many rows were removed.
    async fn remove_unseen(
        &self,
        section: &LibrarySection,
        pass: i64,
        shutdown: &CancellationToken,
    ) -> Result<u64, SyncError> {
        let mut removed = 0;
        loop {
            let candidates =
                plex_library::unseen(&self.pool, &section.key, pass, REMOVAL_BATCH).await?;
            if candidates.is_empty() {
                return Ok(removed);
            }
            let (mut gone, mut present) = (Vec::new(), Vec::new());
            for rating_key in candidates {
                if self
                    .guarded(shutdown, || self.pms.has_item(&rating_key))
                    .await?
                {
                    present.push(rating_key);
                } else {
                    gone.push(rating_key);
                }
            }
            plex_library::mark_seen(&self.pool, &present, pass).await?;
            let count = plex_library::remove(&self.pool, &gone).await?;
            if count > 0 {
                info!(section = %section.key, removed = count, kept = present.len(), "removed from Plex");
            }
            removed += count;
        }
    }

    /// One recently-added pass: items added since `since`, stamped with `pass`.
    ///
    /// # Errors
    /// [`SyncError`] when it stopped short; the next pass looks back as far again.
    #[instrument(skip_all, fields(since = %since))]
    pub async fn recent_pass(
        &self,
        since: DateTime<Utc>,
        pass: i64,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        let started = Utc::now();
        let result = self.recent_pass_sections(since, pass, shutdown).await;
        let error = result.as_ref().err().map(ToString::to_string);
        plex_library::record_recent_pass(&self.pool, started, error.as_deref()).await?;
        if result.is_ok() {
            metrics::counter!("medianest_plex_sync_passes_total", "kind" => "recent").increment(1);
        }
        result
    }

    async fn recent_pass_sections(
        &self,
        since: DateTime<Utc>,
        pass: i64,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        let mut report = PassReport {
            pass,
            ..PassReport::default()
        };
        for section in self.sections(shutdown).await? {
            for &kind in kinds_of(&section) {
                let mut start = 0;
                loop {
                    let page = self
                        .page(&section, kind, start, Some(since.timestamp()), shutdown)
                        .await?;
                    self.write_page(&section, &page, pass, &mut report).await?;
                    let (next, done) = self.next_page(start, &page);
                    if done {
                        break;
                    }
                    start = next;
                }
            }
        }
        Ok(report)
    }

    /// The movie and show sections to sync.
    async fn sections(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Vec<LibrarySection>, SyncError> {
        let sections = self
            .guarded(shutdown, || self.pms.library_sections())
            .await?;
        Ok(sections
            .into_iter()
            .filter(|s| !kinds_of(s).is_empty())
            .filter(|s| s.agent.as_deref() != Some("tv.plex.agents.none"))
            .collect())
    }

    async fn page(
        &self,
        section: &LibrarySection,
        kind: ItemKind,
        start: u64,
        added_since: Option<i64>,
        shutdown: &CancellationToken,
    ) -> Result<LibraryPage, SyncError> {
        let query = ListItems {
            kind,
            start,
            size: self.config.page_size,
            added_since,
        };
        self.guarded(shutdown, || self.pms.section_items(&section.key, &query))
            .await
    }

    /// A PMS call through Plex's breaker, with retries of transient failures.
    async fn guarded<T, F, Fut>(
        &self,
        shutdown: &CancellationToken,
        call: F,
    ) -> Result<T, SyncError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PlexError>>,
    {
        let (result, _) = self
            .retry
            .run(
                || self.breaker.call(shutdown, &call, PlexError::is_retryable),
                |error| error.is_transient(PlexError::is_retryable),
            )
            .await;
        result.map_err(|error| match error {
            Guarded::Failed(error) => SyncError::Plex(error),
            Guarded::Stopped => SyncError::Stopped,
        })
    }

    fn is_4k_section(&self, section: &LibrarySection) -> bool {
        self.config
            .sections_4k
            .iter()
            .any(|s| s.trim() == section.key || s.trim().eq_ignore_ascii_case(section.title.trim()))
    }

    /// Writes one page and brings the requests for its media up to date.
    async fn write_page(
        &self,
        section: &LibrarySection,
        page: &LibraryPage,
        pass: i64,
        report: &mut PassReport,
    ) -> Result<(), SyncError> {
        report.pages += 1;
        let section_is_4k = self.is_4k_section(section);
        let mut items = Vec::new();
        let mut seasons = Vec::new();
        for item in &page.items {
            match item.item_type.as_str() {
                "season" => seasons.extend(season_row(item)),
                "movie" | "show" => match item_row(&section.key, section_is_4k, item) {
                    Some(row) => items.push(row),
                    None => {
                        report.skipped += 1;
                        metrics::counter!("medianest_plex_items_skipped_total", "reason" => "no_guid").increment(1);
                        debug!(rating_key = %item.rating_key, title = %item.title, "no tmdb:// or tvdb:// guid: skipped");
                    }
                },
                _ => {}
            }
        }
        // One row per ratingKey: a statement cannot write the same row twice.
        items.sort_by(|a, b| a.rating_key.cmp(&b.rating_key));
        items.dedup_by(|a, b| a.rating_key == b.rating_key);
        seasons.sort_by(|a, b| a.rating_key.cmp(&b.rating_key));
        seasons.dedup_by(|a, b| a.rating_key == b.rating_key);
        plex_library::upsert_items(&self.pool, &items, pass).await?;
        let shows = plex_library::upsert_seasons(&self.pool, &seasons, pass).await?;
        report.items += items.len() as u64;
        report.seasons += seasons.len() as u64;
        let mut media: Vec<(MediaType, i64)> = items
            .iter()
            .filter_map(|row| Some((row.media_type, row.tmdb_id?)))
            .collect();
        media.extend(plex_library::media_of(&self.pool, &shows).await?);
        report.requests_updated += self.update_requests(&media).await?;
        Ok(())
    }

    /// Records what Plex has for the active requests of `media`; answers how many changed.
    async fn update_requests(&self, media: &[(MediaType, i64)]) -> Result<u64, SyncError> {
        let unique: HashSet<(MediaType, i64)> = media.iter().copied().collect();
        let keys: Vec<(MediaType, i64)> = unique.into_iter().collect();
        let active = self.requests.active_for_many(&keys).await?;
        if active.is_empty() {
            return Ok(0);
        }
        let in_plex = plex_library::find_many(&self.pool, &keys).await?;
        let correlation = format!("plex-sync:{}", Uuid::now_v7());
        let mut changed = 0;
        for (id, media_type, tmdb_id, is_4k) in active {
            let Some(presence) = in_plex
                .get(&(media_type, tmdb_id))
                .and_then(|plex| plex.for_4k(is_4k))
            else {
                continue;
            };
            let (request, _) = self
                .requests
                .load(id.into())
                .await
                .map_err(MediaRequestCommandError::from)?;
            // A reservation whose request was never written (a submission in flight, or cut
            // off by a crash) or has ended is not a request to update.
            match request.status() {
                Some(RequestStatus::Available) | None => continue,
                Some(status) if !status.is_active() => continue,
                Some(_) => {}
            }
            let command = match coverage(media_type, request.seasons(), Some(&presence.seasons)) {
                Coverage::None => continue,
                Coverage::Partial(seasons) => {
                    MediaRequestCommand::RecordPartiallyAvailable { seasons }
                }
                Coverage::Full => MediaRequestCommand::RecordAvailable {
                    plex_rating_key: Some(presence.rating_key.clone()),
                    source: Source::Plex,
                },
            };
            let metadata = EventMetadata::for_pass(WORKER, &correlation);
            match self
                .requests
                .execute(id.into(), command, None, &metadata)
                .await
            {
                Ok(committed) if !committed.events.is_empty() => {
                    info!(request = %id, status = ?committed.aggregate.status(), "availability from Plex recorded");
                    changed += 1;
                }
                Ok(_) => {}
                Err(MediaRequestCommandError::Execute(ExecuteError::Rejected(
                    rejection @ (MediaRequestError::IllegalTransition { .. }
                    | MediaRequestError::Invalid { .. }
                    | MediaRequestError::NotFound),
                ))) => debug!(request = %id, %rejection, "Plex's news not applied to the request"),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(changed)
    }
}

/// Sleeps `duration`; `false` when `shutdown` came first.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = shutdown.cancelled() => false,
    }
}

/// The read-model row of a movie or show, `None` without a usable `tmdb://`/`tvdb://` guid.
fn item_row(section_key: &str, section_is_4k: bool, item: &LibraryItem) -> Option<PlexItemRow> {
    let positive = |id: Option<u64>| {
        id.and_then(|id| i64::try_from(id).ok())
            .filter(|id| *id > 0)
    };
    let tmdb_id = positive(item.tmdb_id());
    let tvdb_id = positive(item.tvdb_id());
    if tmdb_id.is_none() && tvdb_id.is_none() {
        return None;
    }
    let (media_type, has_hd, has_4k) = if item.item_type == "show" {
        (MediaType::Tv, !section_is_4k, section_is_4k)
    } else {
        let other_than_4k = item.video_resolutions.is_empty()
            || item
                .video_resolutions
                .iter()
                .any(|r| !r.eq_ignore_ascii_case("4k"));
        (
            MediaType::Movie,
            !section_is_4k && other_than_4k,
            section_is_4k || item.is_4k(),
        )
    };
    Some(PlexItemRow {
        rating_key: item.rating_key.clone(),
        section_key: section_key.to_string(),
        media_type,
        tmdb_id,
        tvdb_id,
        title: item.title.clone(),
        year: item.year.map(i32::from),
        has_hd,
        has_4k,
        added_at: item
            .added_at
            .and_then(|secs| DateTime::from_timestamp(secs, 0)),
    })
}

/// The read-model row of a season (`index` and `parentRatingKey` required).
fn season_row(item: &LibraryItem) -> Option<PlexSeasonRow> {
    Some(PlexSeasonRow {
        rating_key: item.rating_key.clone(),
        show_rating_key: item.parent_rating_key.clone()?,
        season_number: i32::try_from(item.index?).ok()?,
        episodes: item
            .leaf_count
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(0),
    })
}
