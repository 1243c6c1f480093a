//! The Overseerr forwarder saga: `approved` and `retried` media-request events become
//! `POST /api/v1/request` calls (overseerr-api.yml, `POST /request`), and their outcome
//! becomes `RecordForwarded` or `RecordForwardFailed`; a `cancelled` request that was
//! forwarded is withdrawn from Overseerr (`DELETE /request/{requestId}`).
//!
//! Exactly-once in effect: before calling, the saga loads the request and acts only while
//! it is `approved` (a redelivered event finds it forwarded and does nothing); a crash after
//! Overseerr created the request but before `forwarded` was written is resolved on
//! redelivery by Overseerr's 409 "already exists", which the saga turns into the existing
//! Overseerr request's id. Transient failures (5xx, timeouts, connection errors) are retried
//! with exponential backoff and jitter; 4xx answers are not.
//!
//! A TV request's seasons that Plex already has (the Plex library read model) are left out
//! of the call: nothing is forwarded for a season Plex has.
//!
//! Calls go through Overseerr's circuit breaker ([`crate::breaker`]): while it is open the
//! forwarder waits for the trial time instead of calling, and failures that keep it open use
//! up no attempt, so an Overseerr outage delays forwarding instead of failing requests. A
//! shutdown during that wait leaves the event unacknowledged, to be delivered again.
//!
//! It runs on the saga skeleton ([`crate::consumer`]): when the request cannot be loaded or
//! the outcome cannot be recorded (the database is away), the event is not acknowledged but
//! handled again after a backoff — the repeated call meets Overseerr's 409 and adopts the
//! request Overseerr created — so no effect is dropped.

use medianest_integrations::cause::Context;
use std::sync::Arc;

use async_trait::async_trait;
use medianest_domain::media_request::{self, MediaRequestCommand, RequestStatus, Source};
use medianest_domain::RequestId;
use medianest_integrations::overseerr::{
    CreateRequest, MediaType, OverseerrClient, OverseerrError, Seasons,
};
use medianest_nats::{EventFeed, FeedEvent};
use medianest_store::media_requests::MediaRequests;
use medianest_store::EventMetadata;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::breaker::{CircuitBreaker, Guarded};
use crate::consumer::{self, Backoff, Saga, Step};
use crate::RetryPolicy;

/// The consumer name.
pub const NAME: &str = "saga-overseerr-forwarder";
const WORKER: &str = "overseerr-forwarder";

/// The forwarder saga.
#[derive(Clone)]
pub struct OverseerrForwarder {
    requests: Arc<MediaRequests>,
    client: OverseerrClient,
    feed: Arc<dyn EventFeed>,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl OverseerrForwarder {
    /// A forwarder using `client`, fed by `feed`.
    pub fn new(
        requests: Arc<MediaRequests>,
        client: OverseerrClient,
        feed: Arc<dyn EventFeed>,
        retry: RetryPolicy,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            requests,
            client,
            feed,
            retry,
            breaker,
        }
    }

    /// Consumes media-request events until `shutdown` on the saga skeleton
    /// ([`crate::consumer`]); the event in hand is finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        consumer::run(self, self.feed.as_ref(), Backoff::default(), &shutdown).await;
    }

    /// Forwards the request of `event` if it is still waiting to be forwarded: one step of
    /// the saga ([`Step::Retry`] when the request could not be loaded or the outcome not
    /// recorded; [`Step::Stopped`] when `shutdown` came while Overseerr's breaker held the
    /// call back).
    #[instrument(skip_all, fields(aggregate_id = %event.aggregate_id(), event = %event.event.id))]
    pub async fn forward(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step {
        let Ok(id) = event.aggregate_id().parse::<RequestId>() else {
            warn!("event with a malformed aggregate id");
            return Step::Done;
        };
        let metadata = EventMetadata::caused_by(
            WORKER,
            &event.event.id,
            event.event.correlationid.as_deref(),
        );
        self.forward_request(id, &metadata, shutdown).await
    }

    /// Forwards request `id` if it is still waiting to be forwarded, recording the outcome
    /// with `metadata`: the step of [`forward`](Self::forward), also taken by the reconciler
    /// for a request left `approved` too long.
    pub async fn forward_request(
        &self,
        id: RequestId,
        metadata: &EventMetadata,
        shutdown: &CancellationToken,
    ) -> Step {
        let current = match self.requests.load(id).await {
            Ok((current, _)) => current,
            Err(error) => return Step::retry(Context::new("cannot load the request", error)),
        };
        if current.status() != Some(RequestStatus::Approved) {
            info!(status = ?current.status(), "not waiting to be forwarded; nothing to do");
            return Step::Done;
        }
        let Some(mut body) = create_request(&current) else {
            return Step::Done;
        };
        if let Some(rating_key) = self.leave_out_what_plex_has(&mut body).await {
            info!("Plex has every season asked for: available, nothing to forward");
            let command = MediaRequestCommand::RecordAvailable {
                plex_rating_key: Some(rating_key),
                source: Source::Plex,
            };
            return self.record(id, command, metadata).await;
        }
        let (outcome, attempts) = self
            .retry
            .run(
                || {
                    self.breaker.call(
                        shutdown,
                        || self.client.create_request(&body),
                        OverseerrError::is_retryable,
                    )
                },
                |error| error.is_transient(OverseerrError::is_retryable),
            )
            .await;
        let outcome = match outcome {
            Ok(created) => Ok(created),
            Err(Guarded::Stopped) => return Step::Stopped,
            Err(Guarded::Failed(OverseerrError::AlreadyExists { message })) => {
                info!(%message, "Overseerr already has this request; finding it");
                match self
                    .breaker
                    .call(
                        shutdown,
                        || {
                            self.client
                                .find_request(body.media_type, body.media_id, body.is_4k)
                        },
                        OverseerrError::is_retryable,
                    )
                    .await
                {
                    Ok(Some(existing)) => Ok(existing),
                    Ok(None) => Err(OverseerrError::AlreadyExists { message }),
                    Err(Guarded::Stopped) => return Step::Stopped,
                    Err(Guarded::Failed(error)) => Err(error),
                }
            }
            Err(Guarded::Failed(error)) => Err(error),
        };
        let label = if outcome.is_ok() {
            "forwarded"
        } else {
            "failed"
        };
        metrics::counter!("medianest_overseerr_forwards_total", "outcome" => label).increment(1);
        let command = match outcome {
            Ok(created) => MediaRequestCommand::RecordForwarded {
                overseerr_request_id: created.id,
            },
            Err(error) => {
                warn!(%error, attempts, "forwarding failed");
                MediaRequestCommand::RecordForwardFailed {
                    attempt: attempts,
                    retryable: error.is_retryable(),
                    error: error.to_string(),
                }
            }
        };
        self.record(id, command, metadata).await
    }

    /// Deletes the Overseerr request of a cancelled request, if it was forwarded
    /// (overseerr-api.yml, `DELETE /request/{requestId}`): cancelling in MediaNest withdraws
    /// the request from Overseerr too. Overseerr answering 404 (already gone) is done;
    /// transient failures are retried with backoff and the breaker, then the step is handed
    /// over again.
    #[instrument(skip_all, fields(aggregate_id = %event.aggregate_id(), event = %event.event.id))]
    pub async fn withdraw(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step {
        let Ok(id) = event.aggregate_id().parse::<RequestId>() else {
            return Step::Done;
        };
        let current = match self.requests.load(id).await {
            Ok((current, _)) => current,
            Err(error) => return Step::retry(Context::new("cannot load the request", error)),
        };
        let Some(overseerr_id) = current.overseerr_request_id() else {
            return Step::Done;
        };
        if current.status() != Some(RequestStatus::Cancelled) {
            return Step::Done;
        }
        let (outcome, _) = self
            .retry
            .run(
                || {
                    self.breaker.call(
                        shutdown,
                        || self.client.delete_request(overseerr_id),
                        OverseerrError::is_retryable,
                    )
                },
                |error| error.is_transient(OverseerrError::is_retryable),
            )
            .await;
        match outcome {
            Ok(deleted) => {
                info!(overseerr_id, deleted, "cancelled: withdrawn from Overseerr");
                metrics::counter!("medianest_overseerr_withdrawals_total").increment(1);
                Step::Done
            }
            Err(Guarded::Stopped) => Step::Stopped,
            Err(Guarded::Failed(error)) if error.is_retryable() => Step::retry(Context::new(
                "cannot withdraw the request from Overseerr",
                error,
            )),
            Err(Guarded::Failed(error)) => {
                warn!(%error, overseerr_id, "Overseerr refused to withdraw the request");
                Step::Done
            }
        }
    }

    /// Records an outcome: done, unless the store failed (then the step is tried again; the
    /// repeated Overseerr call finds the request Overseerr already has).
    async fn record(
        &self,
        id: RequestId,
        command: MediaRequestCommand,
        metadata: &EventMetadata,
    ) -> Step {
        match self.requests.execute(id, command, None, metadata).await {
            Ok(_) => Step::Done,
            Err(error) if error.is_transient() => {
                Step::retry(Context::new("cannot record the outcome", error))
            }
            Err(error) => {
                // E.g. cancelled while the call was in flight: the aggregate decides.
                warn!(%error, "outcome not recorded");
                Step::Done
            }
        }
    }
}

#[async_trait]
impl Saga for OverseerrForwarder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request"]
    }

    fn wants(&self, event_type: &str) -> bool {
        matches!(event_type, "approved" | "retried" | "cancelled")
    }

    async fn handle(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step {
        if event.event_type() == "cancelled" {
            self.withdraw(event, shutdown).await
        } else {
            self.forward(event, shutdown).await
        }
    }
}

impl OverseerrForwarder {
    /// Leaves the seasons Plex already has out of a TV request's list (nothing is forwarded
    /// for a season Plex has). When nothing is left, answers the ratingKey of the Plex item
    /// that has it all. When the Plex library cannot be read, the list is forwarded whole
    /// (Overseerr skips what it knows is available).
    async fn leave_out_what_plex_has(&self, body: &mut CreateRequest) -> Option<String> {
        let Some(Seasons::List(list)) = body.seasons.as_mut() else {
            return None;
        };
        let tmdb_id = i64::try_from(body.media_id).unwrap_or(i64::MAX);
        let in_plex = match self
            .requests
            .in_plex(media_request::MediaType::Tv, tmdb_id)
            .await
        {
            Ok(in_plex) => in_plex,
            Err(error) => {
                warn!(%error, "cannot read the Plex library; forwarding every season");
                return None;
            }
        };
        let presence = in_plex.for_4k(body.is_4k)?;
        list.retain(|season| !presence.seasons.contains(season));
        list.is_empty().then(|| presence.rating_key.clone())
    }
}

/// The Overseerr body for a request (overseerr-api.yml, `POST /request`).
fn create_request(request: &media_request::MediaRequest) -> Option<CreateRequest> {
    let media = request.media()?;
    Some(CreateRequest {
        media_type: match media.media_type {
            media_request::MediaType::Movie => MediaType::Movie,
            media_request::MediaType::Tv => MediaType::Tv,
        },
        media_id: u64::from(media.tmdb_id.get()),
        tvdb_id: media.tvdb_id.map(u64::from),
        seasons: request.seasons().map(|seasons| match seasons {
            media_request::Seasons::All(_) => Seasons::All,
            media_request::Seasons::List(list) => Seasons::List(list.clone()),
        }),
        is_4k: request.is_4k(),
    })
}
