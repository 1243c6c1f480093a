//! [`EventFeed`]: the one abstraction every reader of events uses — subscribe under a durable
//! name, receive positioned events in log order, ack each once handled.
//!
//! Implementations: [`JetStreamFeed`], a durable pull consumer on the events stream (what
//! projections and sagas use), and [`LogFeed`], a direct tail of the PostgreSQL global log
//! (replay and embedded mode). Delivery is at-least-once; consumers make it exactly-once in
//! effect with checkpoints or idempotent commands.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use medianest_store::{checkpoint, BoxError, Cursor, LogTail};
use serde_json::Value;
use sqlx::PgPool;

use crate::envelope::{cursor_from_headers, CloudEvent};
use crate::Subjects;

/// Why a feed failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// NATS or JetStream failed (the client's error is the source).
    #[error("nats: {0}")]
    Nats(#[source] BoxError),
    /// PostgreSQL failed (the store's error is the source).
    #[error("store: {0}")]
    Store(#[source] BoxError),
    /// A message is not a MediaNest CloudEvent: the decoding error, or a text saying what is
    /// missing.
    #[error("malformed event: {0}")]
    Malformed(#[source] BoxError),
}

impl FeedError {
    fn nats(error: impl Into<BoxError>) -> Self {
        Self::Nats(error.into())
    }

    fn store(error: impl Into<BoxError>) -> Self {
        Self::Store(error.into())
    }

    fn malformed(error: impl Into<BoxError>) -> Self {
        Self::Malformed(error.into())
    }
}

/// How a [`FeedEvent`] is acknowledged.
enum Acker {
    /// Nothing to acknowledge (an event read for a replay).
    None,
    JetStream(Box<jetstream::Message>),
    Log {
        pool: PgPool,
        name: String,
        cursor: Cursor,
    },
}

/// One event delivered by a feed, with what it takes to acknowledge it.
pub struct FeedEvent {
    /// Global-log cursor of the event.
    pub cursor: Cursor,
    /// The published envelope (public form in `data`).
    pub event: CloudEvent,
    /// The stored payload, sensitive fields included: only the log feed carries it (it never
    /// crosses NATS), for the projections whose read models keep private fields.
    pub stored_payload: Option<Value>,
    acker: Acker,
    /// The consumer's ack wait (JetStream): a held event is redelivered after this long.
    ack_wait: Duration,
}

impl std::fmt::Debug for FeedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedEvent")
            .field("cursor", &self.cursor)
            .field("id", &self.event.id)
            .finish()
    }
}

impl FeedEvent {
    /// The event as a feed would deliver it, read straight from the log (for replays):
    /// public envelope plus the stored payload; acknowledging it does nothing.
    ///
    /// # Errors
    /// [`FeedError::Malformed`] when the event has no public form.
    pub fn from_stored(event: &medianest_store::StoredEvent) -> Result<Self, FeedError> {
        Self::from_owned(event.clone())
    }

    /// [`FeedEvent::from_stored`], keeping the stored payload without copying it.
    ///
    /// # Errors
    /// [`FeedError::Malformed`] when the event has no public form.
    pub fn from_owned(event: medianest_store::StoredEvent) -> Result<Self, FeedError> {
        let envelope = CloudEvent::from_stored(&event).map_err(FeedError::malformed)?;
        Ok(Self {
            cursor: event.cursor(),
            event: envelope,
            stored_payload: Some(event.payload),
            acker: Acker::None,
            ack_wait: Duration::ZERO,
        })
    }

    /// The aggregate type, e.g. `media_request`.
    pub fn aggregate_type(&self) -> &str {
        self.event.kind().map(|(a, _)| a).unwrap_or_default()
    }

    /// The event type, e.g. `submitted`.
    pub fn event_type(&self) -> &str {
        self.event.kind().map(|(_, e)| e).unwrap_or_default()
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> &str {
        &self.event.subject
    }

    /// The public data.
    pub fn data(&self) -> &Value {
        &self.event.data
    }

    /// When it was recorded.
    pub fn time(&self) -> DateTime<Utc> {
        self.event.time
    }

    /// How often a subscriber that holds the event longer (a saga waiting on a breaker or a
    /// slow call) must say it is still working on it ([`FeedEvent::in_progress`]), or
    /// `None` when the feed never redelivers a held event (the log feed).
    pub fn progress_interval(&self) -> Option<Duration> {
        match &self.acker {
            Acker::JetStream(_) => Some(self.ack_wait / 3),
            Acker::None | Acker::Log { .. } => None,
        }
    }

    /// Tells the feed the event is still being worked on, so it is not redelivered while
    /// held (JetStream's `+WPI` in-progress ack, which restarts the ack wait); nothing for
    /// the other feeds.
    ///
    /// # Errors
    /// [`FeedError`] when the message could not be sent.
    pub async fn in_progress(&self) -> Result<(), FeedError> {
        match &self.acker {
            Acker::JetStream(message) => message
                .ack_with(jetstream::AckKind::Progress)
                .await
                .map_err(FeedError::nats),
            Acker::None | Acker::Log { .. } => Ok(()),
        }
    }

    /// Whether the checkpoint `name` is this event's acknowledgement: an event of the log
    /// feed subscribed to as `name` (whose position the subscriber saves itself, in its own
    /// transaction), or one read straight from the log. Acknowledging it apart would only
    /// write the same checkpoint again.
    pub fn acknowledged_by_checkpoint(&self, name: &str) -> bool {
        match &self.acker {
            Acker::None => true,
            Acker::Log { name: own, .. } => own == name,
            Acker::JetStream(_) => false,
        }
    }

    /// Acknowledges the event: it will not be delivered to this subscriber again (beyond
    /// at-least-once redelivery after a crash).
    ///
    /// # Errors
    /// [`FeedError`] when the ack could not be sent.
    pub async fn ack(self) -> Result<(), FeedError> {
        match self.acker {
            Acker::None => Ok(()),
            Acker::JetStream(message) => message.ack().await.map_err(FeedError::nats),
            Acker::Log { pool, name, cursor } => checkpoint::save(&pool, &name, cursor)
                .await
                .map(|_| ())
                .map_err(FeedError::store),
        }
    }
}

/// A stream of events from a feed.
pub type FeedStream = Pin<Box<dyn Stream<Item = Result<FeedEvent, FeedError>> + Send>>;

/// A stream of batches of events from a feed, each in log order and never empty.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<Vec<FeedEvent>, FeedError>> + Send>>;

/// Where a subscription starts when its durable name is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The first event still available.
    #[default]
    Beginning,
    /// Only events after subscribing.
    New,
}

/// A source of positioned events.
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// Subscribes durably as `name` to the events of `aggregate_types` (all when empty).
    ///
    /// # Errors
    /// [`FeedError`] when the subscription cannot be set up.
    async fn subscribe(
        &self,
        name: &str,
        aggregate_types: &[&str],
        start: StartAt,
    ) -> Result<FeedStream, FeedError>;

    /// How many events a subscriber may hold unacknowledged at once and acknowledge in any
    /// order (1: one at a time, in log order — what projections and log tails need).
    fn max_in_flight(&self) -> usize {
        1
    }

    /// Subscribes as [`EventFeed::subscribe`] does, in batches: each item is what the feed
    /// had at hand (by default one event at a time). A batch is never waited for to fill.
    ///
    /// # Errors
    /// [`FeedError`] when the subscription cannot be set up.
    async fn subscribe_batches(
        &self,
        name: &str,
        aggregate_types: &[&str],
        start: StartAt,
    ) -> Result<BatchStream, FeedError> {
        let events = self.subscribe(name, aggregate_types, start).await?;
        Ok(Box::pin(events.map(|event| event.map(|e| vec![e]))))
    }
}

/// Events a saga lane may hold unacknowledged, the one it works on included
/// ([`JetStreamFeed::with_max_in_flight`]).
pub const HELD_PER_LANE: usize = 8;

/// Durable pull consumers on the events stream.
#[derive(Debug, Clone)]
pub struct JetStreamFeed {
    js: jetstream::Context,
    stream: String,
    subjects: Subjects,
    ack_wait: Duration,
    max_in_flight: usize,
}

impl JetStreamFeed {
    /// A feed on `stream` (which captures `subjects`).
    pub fn new(js: jetstream::Context, stream: impl Into<String>, subjects: Subjects) -> Self {
        Self {
            js,
            stream: stream.into(),
            subjects,
            ack_wait: Duration::from_secs(30),
            max_in_flight: 1,
        }
    }

    /// Lets a subscriber work on `n` events at once, in any order across aggregates
    /// (default 1). Only for subscribers that do not need the log's order across aggregates
    /// (sagas, which keep each aggregate's order themselves, in `n` lanes): a projection
    /// needs 1, so that a crashed subscriber's event is redelivered before any later one.
    /// With `n` above 1 the subscriber may hold [`HELD_PER_LANE`] times `n` events
    /// unacknowledged (JetStream's `max_ack_pending`): events queue behind the one a lane is
    /// working on, so a lane busy with a slow call does not leave the others without events
    /// (with `n` alone, the few events of the busy lanes took most of the allowance). An
    /// existing durable consumer with another setting is updated when subscribed to.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// JetStream's `max_ack_pending` for this feed's subscribers: 1, or
    /// [`HELD_PER_LANE`] events per lane.
    fn max_ack_pending(&self) -> usize {
        if self.max_in_flight == 1 {
            1
        } else {
            self.max_in_flight.saturating_mul(HELD_PER_LANE)
        }
    }

    /// How long an unacknowledged event waits before redelivery (default 30 s): after a
    /// crash, the event that was in hand comes back after this long.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }
}

#[async_trait]
impl EventFeed for JetStreamFeed {
    async fn subscribe(
        &self,
        name: &str,
        aggregate_types: &[&str],
        start: StartAt,
    ) -> Result<FeedStream, FeedError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(FeedError::nats)?;
        let filter_subjects = aggregate_types
            .iter()
            .map(|t| self.subjects.aggregate_events(t))
            .collect();
        let config = consumer::pull::Config {
            durable_name: Some(name.to_string()),
            filter_subjects,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            deliver_policy: match start {
                StartAt::Beginning => consumer::DeliverPolicy::All,
                StartAt::New => consumer::DeliverPolicy::New,
            },
            // One event in flight unless asked otherwise: a crashed subscriber's
            // unacknowledged event is redelivered before any later one, so consumers see the
            // log in order (a projection would otherwise skip it as "below its checkpoint").
            max_ack_pending: i64::try_from(self.max_ack_pending()).unwrap_or(1),
            ..Default::default()
        };
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(name, config.clone())
            .await
            .map_err(FeedError::nats)?;
        if consumer.cached_info().config.max_ack_pending != config.max_ack_pending {
            // A consumer made by an earlier version (or setting): create-or-update it.
            consumer = stream
                .create_consumer(config)
                .await
                .map_err(FeedError::nats)?;
        }
        let messages = consumer.messages().await.map_err(FeedError::nats)?;
        let ack_wait = self.ack_wait;
        Ok(Box::pin(messages.map(move |message| {
            let message = message.map_err(FeedError::nats)?;
            let event: CloudEvent =
                serde_json::from_slice(&message.payload).map_err(FeedError::malformed)?;
            let cursor = cursor_from_headers(message.headers.as_ref())
                .ok_or_else(|| FeedError::malformed(format!("{} has no cursor", event.id)))?;
            Ok(FeedEvent {
                cursor,
                event,
                stored_payload: None,
                acker: Acker::JetStream(Box::new(message)),
                ack_wait,
            })
        })))
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// A direct tail of the PostgreSQL global log; the durable name is a checkpoint.
#[derive(Debug, Clone)]
pub struct LogFeed {
    pool: PgPool,
    poll_interval: Duration,
}

impl LogFeed {
    /// A feed on `pool`'s log.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl LogFeed {
    /// The tail of the log after `name`'s checkpoint (after the head for a new `name` with
    /// [`StartAt::New`]).
    async fn tail(&self, name: &str, start: StartAt) -> Result<LogTail, FeedError> {
        let mut cursor = checkpoint::load(&self.pool, name)
            .await
            .map_err(FeedError::store)?;
        if cursor == Cursor::default() && start == StartAt::New {
            let head = medianest_store::log::head_position(&self.pool)
                .await
                .map_err(FeedError::store)?;
            if let Some(at) = medianest_store::log::cursor_of(&self.pool, head)
                .await
                .map_err(FeedError::store)?
            {
                cursor = at;
            }
        }
        Ok(LogTail::new(self.pool.clone(), cursor).poll_interval(self.poll_interval))
    }
}

#[async_trait]
impl EventFeed for LogFeed {
    async fn subscribe(
        &self,
        name: &str,
        aggregate_types: &[&str],
        start: StartAt,
    ) -> Result<FeedStream, FeedError> {
        let batches = self.subscribe_batches(name, aggregate_types, start).await?;
        Ok(Box::pin(batches.flat_map(|batch| {
            let events: Vec<Result<FeedEvent, FeedError>> = match batch {
                Ok(events) => events.into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            futures::stream::iter(events)
        })))
    }

    /// One batch per page of the log tail (up to 500 events), read only when the last one
    /// has been taken: nothing is fetched ahead while the subscriber works.
    async fn subscribe_batches(
        &self,
        name: &str,
        aggregate_types: &[&str],
        start: StartAt,
    ) -> Result<BatchStream, FeedError> {
        let tail = self.tail(name, start).await?;
        let types: Vec<String> = aggregate_types.iter().map(|t| t.to_string()).collect();
        let (pool, name) = (self.pool.clone(), name.to_string());
        let stream = futures::stream::unfold(tail, move |mut tail| {
            let (pool, name, types) = (pool.clone(), name.clone(), types.clone());
            async move {
                loop {
                    let batch = match tail.next_batch().await {
                        Ok(batch) => batch,
                        Err(e) => return Some((Err(FeedError::store(e)), tail)),
                    };
                    let events: Vec<FeedEvent> = batch
                        .into_iter()
                        .filter(|e| types.is_empty() || types.contains(&e.aggregate_type))
                        .filter_map(|e| match to_feed_event(e, &pool, &name) {
                            Ok(event) => Some(event),
                            Err(error) => {
                                tracing::warn!(%error, "an event without a public form; passed over");
                                None
                            }
                        })
                        .collect();
                    if !events.is_empty() {
                        return Some((Ok(events), tail));
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

fn to_feed_event(
    event: medianest_store::StoredEvent,
    pool: &PgPool,
    name: &str,
) -> Result<FeedEvent, FeedError> {
    let cursor = event.cursor();
    Ok(FeedEvent {
        acker: Acker::Log {
            pool: pool.clone(),
            name: name.to_string(),
            cursor,
        },
        ..FeedEvent::from_owned(event)?
    })
}
