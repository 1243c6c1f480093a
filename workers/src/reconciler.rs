//! The Overseerr reconciler: webhooks get lost, so requests that Overseerr owns (forwarded,
//! processing, partially available) are polled with `GET /api/v1/request/{requestId}`
//! (overseerr-api.yml) until they settle, and what Overseerr says is recorded.
//!
//! Mapping: request status declined (3) or failed (4) → `RecordFailed`; media status
//! available (5) → `RecordAvailable`; processing (3), partially available (4) or an approved
//! request → `RecordProcessing`. A request Overseerr no longer has (404) → `RecordFailed`.
//! Commands that are already reflected write nothing, so polling is idempotent.
//!
//! With [`OverseerrReconciler::with_redrive`], a pass also forwards the requests left
//! `approved` (not forwarded) for longer than a set time, with the forwarder's own step: a
//! forward is never left undone for good, whatever happened to its event.
//!
//! Polls go through Overseerr's circuit breaker (shared with the forwarder): while it is
//! open a pass ends early without calling (the next pass tries again), and 5xx, timeouts and
//! connection errors count towards opening it (a 404 does not: Overseerr answered).

use std::sync::Arc;
use std::time::Duration;

use medianest_domain::media_request::{MediaRequestCommand, RequestStatus, Source};
use medianest_domain::RequestId;
use medianest_integrations::overseerr::{
    media_status, request_status, OverseerrClient, OverseerrError, OverseerrRequest,
};
use medianest_projections::requests;
use medianest_store::media_requests::MediaRequests;
use medianest_store::EventMetadata;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::breaker::CircuitBreaker;
use crate::consumer::Step;
use crate::forwarder::OverseerrForwarder;

const WORKER: &str = "overseerr-reconciler";

/// Statuses in which Overseerr owns a request.
const OWNED_BY_OVERSEERR: [RequestStatus; 3] = [
    RequestStatus::Forwarded,
    RequestStatus::Processing,
    RequestStatus::PartiallyAvailable,
];

/// The reconciler.
#[derive(Clone)]
pub struct OverseerrReconciler {
    pool: PgPool,
    requests: Arc<MediaRequests>,
    client: OverseerrClient,
    interval: Duration,
    batch: i64,
    breaker: Arc<CircuitBreaker>,
    redrive: Option<(OverseerrForwarder, Duration)>,
}

impl OverseerrReconciler {
    /// Polls every `interval` (default in configuration: 60 s).
    pub fn new(
        pool: PgPool,
        requests: Arc<MediaRequests>,
        client: OverseerrClient,
        interval: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            pool,
            requests,
            client,
            interval,
            batch: 200,
            breaker,
            redrive: None,
        }
    }

    /// Also forwards, with `forwarder`'s step, requests left `approved` (not forwarded) for
    /// longer than `after` — a forward whose event was lost, or that a saga gave up on.
    #[must_use]
    pub fn with_redrive(mut self, forwarder: OverseerrForwarder, after: Duration) -> Self {
        self.redrive = Some((forwarder, after));
        self
    }

    /// Polls until `shutdown`; a pass in progress is finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.pass().await {
                warn!(%error, "reconciliation pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over the requests Overseerr owns; answers how many changed.
    ///
    /// # Errors
    /// The database error of listing the requests (per-request failures are logged).
    #[instrument(skip_all)]
    pub async fn pass(&self) -> Result<usize, sqlx::Error> {
        let rows = requests::with_statuses(&self.pool, &OWNED_BY_OVERSEERR, self.batch).await?;
        let correlation = format!("reconcile:{}", Uuid::now_v7());
        let mut changed = 0;
        for row in rows {
            let Some(overseerr_id) = row
                .overseerr_request_id
                .and_then(|id| u64::try_from(id).ok())
            else {
                continue;
            };
            let Ok(permit) = self.breaker.try_acquire() else {
                debug!("Overseerr's circuit breaker is open: the rest waits for the next pass");
                break;
            };
            let polled = self.client.get_request(overseerr_id).await;
            permit.record(&polled, OverseerrError::is_retryable);
            let command = match polled {
                Ok(request) => command_for(&request),
                Err(OverseerrError::Status { status: 404, .. }) => {
                    Some(MediaRequestCommand::RecordFailed {
                        reason: format!("Overseerr request {overseerr_id} no longer exists"),
                        source: Source::Overseerr,
                    })
                }
                Err(error) => {
                    debug!(%error, overseerr_id, "cannot poll Overseerr");
                    continue;
                }
            };
            let Some(command) = command else { continue };
            let metadata = EventMetadata::for_pass(WORKER, &correlation);
            match self
                .requests
                .execute(row.id.into(), command, None, &metadata)
                .await
            {
                Ok(committed) if !committed.events.is_empty() => changed += 1,
                Ok(_) => {}
                Err(error) => warn!(%error, request = %row.id, "cannot record Overseerr's status"),
            }
        }
        Ok(changed + self.redrive_stuck(&correlation).await?)
    }

    /// Forwards the requests left `approved` too long; answers how many were re-driven.
    async fn redrive_stuck(&self, correlation: &str) -> Result<usize, sqlx::Error> {
        let Some((forwarder, after)) = &self.redrive else {
            return Ok(0);
        };
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(*after).unwrap_or_default();
        let stuck: Vec<RequestId> =
            requests::with_statuses(&self.pool, &[RequestStatus::Approved], self.batch)
                .await?
                .into_iter()
                .filter(|row| row.updated_at < cutoff)
                .map(|row| RequestId::from(row.id))
                .collect();
        let metadata = EventMetadata::for_pass(WORKER, correlation);
        for id in &stuck {
            info!(request = %id, "approved but not forwarded for too long: forwarding it");
            let step = forwarder
                .forward_request(*id, &metadata, &CancellationToken::new())
                .await;
            if !matches!(step, Step::Done) {
                debug!(request = %id, ?step, "re-drive not finished; the next pass tries again");
            }
        }
        Ok(stuck.len())
    }
}

/// What Overseerr's view of a request means for ours.
fn command_for(request: &OverseerrRequest) -> Option<MediaRequestCommand> {
    if matches!(
        request.status,
        request_status::DECLINED | request_status::FAILED
    ) {
        let verb = if request.status == request_status::DECLINED {
            "declined"
        } else {
            "failed"
        };
        return Some(MediaRequestCommand::RecordFailed {
            reason: format!("{verb} in Overseerr"),
            source: Source::Overseerr,
        });
    }
    match request.media_status() {
        Some(media_status::AVAILABLE) => Some(MediaRequestCommand::RecordAvailable {
            plex_rating_key: None,
            source: Source::Overseerr,
        }),
        Some(media_status::PROCESSING | media_status::PARTIALLY_AVAILABLE) => {
            Some(MediaRequestCommand::RecordProcessing)
        }
        _ if request.status == request_status::APPROVED => {
            Some(MediaRequestCommand::RecordProcessing)
        }
        _ => None,
    }
}
