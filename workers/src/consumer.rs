//! The saga skeleton (issue 12): every event-driven saga states which events it wants and
//! what it does with one ([`Saga`]); [`run`] owns the rest — subscribing as a durable
//! consumer (retrying), handing each wanted event to the saga, acknowledging it only when the
//! saga is done with it, and resubscribing when the subscription ends, until shutdown. Every
//! saga takes the circuit breaker of the service it calls as a constructor argument (a
//! required part, shared by everything in the process that calls that service).
//!
//! The guarantee it keeps: **an event is acknowledged only after its effect is recorded.**
//! A saga answers [`Step::Retry`] for a transient failure (the database, NATS, a store error
//! while loading or recording); the same event is then handed to it again after a backoff
//! (doubling from [`Backoff::min`] to [`Backoff::max`]), in order — nothing after it is
//! handled meanwhile — and it stays unacknowledged, so a crash meanwhile redelivers it. Each
//! step must therefore be idempotent (the forwarder's repeated Overseerr call resolves
//! Overseerr's 409 to the existing request). Permanent failures are the saga's to record as
//! events, after which it answers [`Step::Done`].
//!
//! Sagas work on several aggregates at once when the feed allows it (bounded by
//! [`EventFeed::max_in_flight`], `MEDIANEST_SAGA_CONCURRENCY`), each aggregate's events in
//! order (see [`run`]).
//!
//! While a saga holds an event — waiting on a circuit breaker, a slow call, or a backoff —
//! the skeleton sends in-progress acks ([`FeedEvent::in_progress`]) so the feed does not
//! redeliver it to another instance. [`Step::Stopped`] (shutdown while waiting) leaves the
//! event unacknowledged and ends consuming: it is delivered again after a restart.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use medianest_integrations::cause::{shared, BoxError, SharedError};
use medianest_nats::feed::FeedStream;
use medianest_nats::feed::StartAt;
use medianest_nats::{EventFeed, FeedEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What a saga made of one event.
#[derive(Debug, Clone)]
pub enum Step {
    /// Done with the event, whatever the outcome (recorded, or nothing to do): acknowledge.
    Done,
    /// A transient failure before the outcome was recorded (its cause, for the log): hand the
    /// same event over again after a backoff, unacknowledged meanwhile.
    Retry(SharedError),
    /// Shutdown came while the saga waited: leave the event unacknowledged and stop.
    Stopped,
}

impl Step {
    /// [`Step::Retry`] for `cause`: an error (with what was being done, see
    /// [`medianest_integrations::cause::Context`]) or a sentence.
    pub fn retry(cause: impl Into<BoxError>) -> Self {
        Self::Retry(shared(cause))
    }
}

/// A saga driven by events: which it wants, and what it does with one.
#[async_trait]
pub trait Saga: Send + Sync {
    /// The durable consumer's name (`saga-…`).
    fn name(&self) -> &'static str;

    /// The aggregate types whose events it subscribes to.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// Whether it acts on events of `event_type` (the others are acknowledged unhandled).
    fn wants(&self, event_type: &str) -> bool;

    /// Acts on `event`. Must be idempotent: after [`Step::Retry`], or a crash before the
    /// acknowledgement, the same event comes again.
    async fn handle(&self, event: &FeedEvent, shutdown: &CancellationToken) -> Step;
}

/// How long the skeleton waits before handing an event over again after [`Step::Retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (default 200 ms); it doubles after each retry.
    pub min: Duration,
    /// The longest wait (default 30 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// Runs `saga` on `feed` until `shutdown` (the events in hand are finished first), with
/// `backoff` between the tries of an event that failed transiently.
///
/// When the feed lets a subscriber hold several events ([`EventFeed::max_in_flight`]), that
/// many aggregates are worked on at once: each event goes to the lane of its aggregate (a
/// hash of the aggregate id), and a lane takes its events one at a time, so one aggregate's
/// events keep their order while a slow call for one request does not hold up the others.
pub async fn run<S: Saga + ?Sized>(
    saga: &S,
    feed: &dyn EventFeed,
    backoff: Backoff,
    shutdown: &CancellationToken,
) {
    let name = saga.name();
    let lanes = feed.max_in_flight().max(1);
    loop {
        let events = match feed
            .subscribe(name, saga.aggregate_types(), StartAt::Beginning)
            .await
        {
            Ok(events) => events,
            Err(error) => {
                warn!(%error, consumer = name, "cannot subscribe; retrying");
                if !pause(Duration::from_secs(1), None, shutdown).await {
                    return;
                }
                continue;
            }
        };
        let resubscribe = if lanes == 1 {
            in_order(saga, events, backoff, shutdown).await
        } else {
            in_lanes(saga, events, lanes, backoff, shutdown).await
        };
        if !resubscribe {
            return;
        }
    }
}

/// Handles the events one at a time, in the feed's order. Answers whether to subscribe again
/// (the subscription ended) rather than stop (shutdown).
async fn in_order<S: Saga + ?Sized>(
    saga: &S,
    mut events: FeedStream,
    backoff: Backoff,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = shutdown.cancelled() => return false,
        };
        match next {
            None => return true,
            Some(Err(error)) => warn!(%error, consumer = saga.name(), "feed error"),
            Some(Ok(event)) => {
                if saga.wants(event.event_type())
                    && !handle_until_done(saga, &event, backoff, shutdown).await
                {
                    return false;
                }
                acknowledge(saga, event).await;
            }
        }
    }
}

/// Handles the events in `lanes` lanes by aggregate. Answers as [`in_order`].
async fn in_lanes<S: Saga + ?Sized>(
    saga: &S,
    mut events: FeedStream,
    lanes: usize,
    backoff: Backoff,
    shutdown: &CancellationToken,
) -> bool {
    let stop = shutdown.child_token();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|_| mpsc::channel::<FeedEvent>(LANE_BUFFER))
        .unzip();
    let workers = receivers.into_iter().map(|mut lane| {
        let stop = stop.clone();
        async move {
            while let Some(event) = lane.recv().await {
                if stop.is_cancelled() {
                    return; // left unacknowledged: delivered again after a restart
                }
                if saga.wants(event.event_type())
                    && !handle_until_done(saga, &event, backoff, &stop).await
                {
                    stop.cancel();
                    return;
                }
                acknowledge(saga, event).await;
            }
        }
    });
    let dispatch = async {
        let resubscribe = loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = stop.cancelled() => break false,
            };
            match next {
                None => break true,
                Some(Err(error)) => warn!(%error, consumer = saga.name(), "feed error"),
                Some(Ok(event)) => {
                    let lane = &senders[lane_of(event.aggregate_id(), lanes)];
                    let sent = tokio::select! {
                        sent = lane.send(event) => sent.is_ok(),
                        () = stop.cancelled() => false,
                    };
                    if !sent {
                        break false;
                    }
                }
            }
        };
        drop(senders); // the lanes finish what they hold, then end
        resubscribe
    };
    let (resubscribe, _) =
        futures::future::join(dispatch, futures::future::join_all(workers)).await;
    resubscribe && !shutdown.is_cancelled()
}

/// Events a lane holds before the feed waits for it.
const LANE_BUFFER: usize = 16;

/// The lane of an aggregate: a stable hash (FNV-1a) of its id.
fn lane_of(aggregate_id: &str, lanes: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in aggregate_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % u64::try_from(lanes.max(1)).unwrap_or(1)).unwrap_or(0)
}

async fn acknowledge<S: Saga + ?Sized>(saga: &S, event: FeedEvent) {
    if let Err(error) = event.ack().await {
        warn!(%error, consumer = saga.name(), "ack failed; the event will be redelivered");
    }
}

/// Hands `event` to `saga` until it is done with it; `false` when shutdown came first (the
/// event must stay unacknowledged).
async fn handle_until_done<S: Saga + ?Sized>(
    saga: &S,
    event: &FeedEvent,
    backoff: Backoff,
    shutdown: &CancellationToken,
) -> bool {
    let mut delay = backoff.min;
    loop {
        match keeping_alive(event, saga.handle(event, shutdown)).await {
            Step::Done => return true,
            Step::Stopped => {
                debug!(
                    consumer = saga.name(),
                    "stopped; the event will be redelivered"
                );
                return false;
            }
            Step::Retry(reason) => {
                warn!(consumer = saga.name(), event = %event.event.id, %reason, ?delay, "transient failure: the event is handled again later");
                metrics::counter!("medianest_saga_retries_total", "saga" => saga.name())
                    .increment(1);
                if !pause(delay, Some(event), shutdown).await {
                    return false;
                }
                delay = (delay * 2).min(backoff.max);
            }
        }
    }
}

/// Drives `work` to its end, sending in-progress acks for `event` meanwhile.
async fn keeping_alive<T>(event: &FeedEvent, work: impl Future<Output = T>) -> T {
    let Some(every) = event.progress_interval().filter(|d| !d.is_zero()) else {
        return work.await;
    };
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(error) = event.in_progress().await {
                    debug!(%error, "in-progress ack failed");
                }
            }
        }
    }
}

/// Sleeps `duration` (keeping `event` alive); `false` when `shutdown` came first.
async fn pause(
    duration: Duration,
    event: Option<&FeedEvent>,
    shutdown: &CancellationToken,
) -> bool {
    let sleep = tokio::time::sleep(duration);
    let sleep = async {
        match event {
            Some(event) => keeping_alive(event, sleep).await,
            None => sleep.await,
        }
    };
    tokio::select! {
        () = sleep => true,
        () = shutdown.cancelled() => false,
    }
}
