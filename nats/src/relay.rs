//! The relay: copies the PostgreSQL global log into JetStream.
//!
//! It reads behind the transaction fence (see `medianest_store::log`), publishes each event
//! with `Nats-Msg-Id`, awaits every ack of a batch, and only then stores its cursor. Batches
//! are pipelined: while the acks of one are outstanding, the next is read and sent (at most
//! two batches in flight, in log order on one connection). A crash
//! between publish and cursor save therefore repeats events, never skips them, and JetStream
//! drops the repeats inside its duplicate window. One relay is active at a time (a PostgreSQL
//! advisory lock); others wait as standbys.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use medianest_store::lock::InstanceLock;
use medianest_store::{checkpoint, Cursor, LogTail, StoreError, StoredEvent};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::envelope::{headers, CloudEvent};
use crate::Subjects;

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The advisory lock could not be taken.
    #[error("lock: {0}")]
    Lock(#[from] sqlx::Error),
    /// The crash injected by [`RelayOptions::crash_after_publish`] (tests only).
    #[error("injected crash after publishing {0} events")]
    InjectedCrash(usize),
}

/// Tuning of the relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Events per batch (default 256).
    pub batch_size: i64,
    /// How often to poll without a NOTIFY (default 250 ms).
    pub poll_interval: Duration,
    /// How long to wait before retrying after a NATS or database failure (default 1 s).
    pub retry_delay: Duration,
    /// Fault injection for crash tests: stop with [`RelayError::InjectedCrash`] after
    /// publishing (and having acked) this many events, before saving the cursor.
    pub crash_after_publish: Option<usize>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(250),
            retry_delay: Duration::from_secs(1),
            crash_after_publish: None,
        }
    }
}

/// The relay of one stream.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    subjects: Subjects,
    stream: String,
    options: RelayOptions,
}

impl Relay {
    /// A relay from `pool`'s log into `stream` (which must exist and capture `subjects`).
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        stream: impl Into<String>,
        subjects: Subjects,
        options: RelayOptions,
    ) -> Self {
        Self {
            pool,
            js,
            subjects,
            stream: stream.into(),
            options,
        }
    }

    /// The checkpoint name of this relay.
    pub fn checkpoint_name(&self) -> String {
        format!("relay:{}", self.stream)
    }

    /// Runs until `shutdown` is cancelled: waits for the single-instance lock, then relays.
    /// A batch being published when shutdown comes is finished first.
    ///
    /// # Errors
    /// [`RelayError::Lock`] when PostgreSQL cannot be reached for the lock;
    /// [`RelayError::InjectedCrash`] in crash tests. NATS and database failures while relaying
    /// are retried, not returned.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let name = self.checkpoint_name();
        let lock = tokio::select! {
            lock = InstanceLock::acquire(&self.pool, &name, self.options.retry_delay) => lock?,
            () = shutdown.cancelled() => return Ok(()),
        };
        info!(relay = %name, "relay active");
        let mut published = 0usize;
        'restart: loop {
            let cursor = match checkpoint::load(&self.pool, &name).await {
                Ok(cursor) => cursor,
                Err(error) => {
                    warn!(%error, "relay cannot read its checkpoint; retrying");
                    self.pause(&shutdown).await;
                    if shutdown.is_cancelled() {
                        break;
                    }
                    continue;
                }
            };
            let mut tail = LogTail::new(self.pool.clone(), cursor)
                .batch_size(self.options.batch_size)
                .poll_interval(self.options.poll_interval);
            // The batch whose acks are awaited while the next one is read and sent.
            let mut in_flight: Option<(Cursor, Pending)> = None;
            loop {
                let batch = match &in_flight {
                    // Acks outstanding: read on without waiting, so they are collected as
                    // soon as the log has nothing more (or shutdown comes: they are collected
                    // before stopping).
                    Some(_) if shutdown.is_cancelled() => Ok(Vec::new()),
                    Some(_) => tail.poll().await,
                    None => tokio::select! {
                        batch = tail.next_batch() => batch,
                        () = shutdown.cancelled() => break 'restart,
                    },
                };
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        warn!(%error, "relay cannot read the log; retrying");
                        self.pause(&shutdown).await;
                        continue 'restart;
                    }
                };
                let sent = match batch.last().map(StoredEvent::cursor) {
                    Some(last) => match send(&self.js, &self.subjects, &batch).await {
                        Ok(pending) => Some((last, pending)),
                        Err(error) => {
                            warn!(%error, "relay cannot publish; retrying from its checkpoint");
                            self.pause(&shutdown).await;
                            continue 'restart;
                        }
                    },
                    None => None,
                };
                if let Some((last, pending)) = in_flight.take() {
                    match self.settle(&name, last, pending, &mut published).await {
                        Ok(()) => {}
                        Err(Settle::Crash) => {
                            drop(lock);
                            return Err(RelayError::InjectedCrash(published));
                        }
                        Err(Settle::Retry) => {
                            self.pause(&shutdown).await;
                            continue 'restart;
                        }
                    }
                }
                in_flight = sent;
            }
        }
        lock.release().await?;
        Ok(())
    }

    async fn pause(&self, shutdown: &CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(self.options.retry_delay) => {}
            () = shutdown.cancelled() => {}
        }
    }

    /// Waits for the acks of a sent batch, then stores the relay's cursor at its last event.
    async fn settle(
        &self,
        name: &str,
        last: Cursor,
        pending: Pending,
        published: &mut usize,
    ) -> Result<(), Settle> {
        let count = pending.len();
        if let Err(error) = pending.acked().await {
            warn!(%error, "relay cannot publish; retrying from its checkpoint");
            return Err(Settle::Retry);
        }
        *published += count;
        metrics::counter!("medianest_relay_events_published_total").increment(count as u64);
        if let Some(limit) = self.options.crash_after_publish {
            if *published >= limit {
                return Err(Settle::Crash);
            }
        }
        if let Err(error) = checkpoint::save(&self.pool, name, last).await {
            warn!(%error, "relay cannot save its cursor; retrying from its checkpoint");
            return Err(Settle::Retry);
        }
        metrics_cursor(name, last);
        Ok(())
    }
}

/// Why [`Relay::settle`] did not store the cursor.
enum Settle {
    /// NATS or PostgreSQL failed: start again from the stored cursor.
    Retry,
    /// The injected crash of [`RelayOptions::crash_after_publish`].
    Crash,
}

/// What [`publish`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// Events the stream stored.
    pub stored: u64,
    /// Events the stream already had within its duplicate window (same `Nats-Msg-Id`): not
    /// stored again, though core-NATS subscribers of the subject still received them.
    pub duplicates: u64,
    /// Events without a public form (a newer version's): not published.
    pub skipped: u64,
}

impl Published {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: Published) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.skipped += other.skipped;
    }
}

/// Publishes stored events to JetStream exactly as the relay does (same subjects, CloudEvent
/// envelopes, headers and `Nats-Msg-Id`), and waits for every ack. Used by the relay and by
/// `medianest replay --to-nats`.
///
/// # Errors
/// The NATS error of a publish or an ack.
pub async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    batch: &[StoredEvent],
) -> Result<Published, async_nats::Error> {
    send(js, subjects, batch).await?.acked().await
}

/// A sent batch whose acks are outstanding.
struct Pending {
    acks: Vec<jetstream::context::PublishAckFuture>,
    skipped: u64,
}

impl Pending {
    /// Events of the batch (sent or skipped).
    fn len(&self) -> usize {
        self.acks.len() + self.skipped as usize
    }

    /// Waits for every ack.
    async fn acked(self) -> Result<Published, async_nats::Error> {
        let mut outcome = Published {
            skipped: self.skipped,
            ..Published::default()
        };
        for ack in self.acks {
            if ack.await?.duplicate {
                outcome.duplicates += 1;
            } else {
                outcome.stored += 1;
            }
        }
        Ok(outcome)
    }
}

/// Sends a batch (in log order, over the one connection, so JetStream stores it in that
/// order) without waiting for the acks.
async fn send(
    js: &jetstream::Context,
    subjects: &Subjects,
    batch: &[StoredEvent],
) -> Result<Pending, async_nats::Error> {
    let mut pending = Pending {
        acks: Vec::with_capacity(batch.len()),
        skipped: 0,
    };
    for event in batch {
        let envelope = match CloudEvent::from_stored(event) {
            Ok(envelope) => envelope,
            Err(error) => {
                // A newer version's event: not ours to publish; keep going.
                warn!(%error, event = %event.event_id(), "event has no public form; skipped");
                pending.skipped += 1;
                continue;
            }
        };
        let body = Bytes::from(serde_json::to_vec(&envelope)?);
        let subject = subjects.event(
            &event.aggregate_type,
            &event.aggregate_id,
            &event.event_type,
        );
        pending.acks.push(
            js.publish_with_headers(subject, headers(event), body)
                .await?,
        );
    }
    Ok(pending)
}

/// `medianest_relay_position{relay}`: the global position the relay has published up to.
fn metrics_cursor(name: &str, cursor: Cursor) {
    metrics::gauge!("medianest_relay_position", "relay" => name.to_string())
        .set(cursor.position as f64);
}
