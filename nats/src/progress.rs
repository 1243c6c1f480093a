//! Progress messages on core NATS (docs/design.md §3, §4): not events, not persisted.
//!
//! The downloader saga publishes at most one message per second per download on
//! `<prefix>.progress.download.<id>`; [`ProgressBoard`] follows those subjects and keeps the
//! latest message of each aggregate, which is what `GET /api/v1/downloads/{id}` shows as
//! current progress. Messages are JSON objects; their shape is the publisher's (for
//! downloads: `docs/events.md`, "Progress"). Every recorded message is also broadcast to
//! [`ProgressBoard::subscribe`]rs (the live stream, `GET /api/v1/stream`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Subjects;

/// How long a progress message is shown without a newer one (a stalled or finished
/// download stops publishing).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// How many progress messages a [`ProgressBoard::subscribe`]r may fall behind before it
/// misses some (progress is ephemeral: a newer message follows within a second).
pub const UPDATES_CAPACITY: usize = 256;

/// One progress message as recorded: the aggregate it is about and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// The aggregate id (the subject's last token).
    pub aggregate_id: String,
    /// The JSON object published.
    pub message: Value,
}

/// The latest progress message of each aggregate of one type.
#[derive(Debug)]
pub struct ProgressBoard {
    latest: Mutex<HashMap<String, (Value, Instant)>>,
    updates: broadcast::Sender<ProgressUpdate>,
}

impl Default for ProgressBoard {
    fn default() -> Self {
        Self {
            latest: Mutex::default(),
            updates: broadcast::channel(UPDATES_CAPACITY).0,
        }
    }
}

impl ProgressBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message recorded from now on, in arrival order. A receiver more than
    /// [`UPDATES_CAPACITY`] messages behind gets `RecvError::Lagged` and continues with newer
    /// ones.
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressUpdate> {
        self.updates.subscribe()
    }

    /// The latest message of `aggregate_id`, unless older than [`STALE_AFTER`].
    pub fn get(&self, aggregate_id: &str) -> Option<Value> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .get(aggregate_id)
            .filter(|(_, at)| at.elapsed() < STALE_AFTER)
            .map(|(message, _)| message.clone())
    }

    /// Records `message` as the latest of `aggregate_id` (and drops stale entries), and
    /// broadcasts it to the subscribers.
    pub fn record(&self, aggregate_id: &str, message: Value) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            latest.retain(|_, (_, at)| at.elapsed() < STALE_AFTER);
            latest.insert(aggregate_id.to_string(), (message.clone(), Instant::now()));
        }
        // No subscriber is not an error: the board is still kept.
        let _ = self.updates.send(ProgressUpdate {
            aggregate_id: aggregate_id.to_string(),
            message,
        });
    }

    /// Follows `<prefix>.progress.<aggregate_type>.*` until `shutdown`, recording every JSON
    /// object message under the subject's last token. Resubscribes after a lost
    /// subscription.
    pub async fn follow(
        &self,
        client: async_nats::Client,
        subjects: Subjects,
        aggregate_type: &str,
        shutdown: CancellationToken,
    ) {
        let subject = subjects.progress(aggregate_type, "*");
        loop {
            let mut subscription = match client.subscribe(subject.clone()).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    warn!(%error, %subject, "cannot subscribe to progress; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            loop {
                let message = tokio::select! {
                    message = subscription.next() => message,
                    () = shutdown.cancelled() => return,
                };
                let Some(message) = message else {
                    break; // the subscription ended: subscribe again
                };
                let id = message.subject.rsplit('.').next().unwrap_or_default();
                match serde_json::from_slice::<Value>(&message.payload) {
                    Ok(value @ Value::Object(_)) => self.record(id, value),
                    _ => {
                        debug!(subject = %message.subject, "progress message is not a JSON object")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_latest_message_wins() {
        let board = ProgressBoard::new();
        assert_eq!(board.get("a"), None);
        board.record("a", json!({"downloaded_bytes": 1}));
        board.record("a", json!({"downloaded_bytes": 2}));
        board.record("b", json!({"downloaded_bytes": 9}));
        assert_eq!(board.get("a"), Some(json!({"downloaded_bytes": 2})));
        assert_eq!(board.get("b"), Some(json!({"downloaded_bytes": 9})));
    }

    #[test]
    fn subscribers_receive_every_recorded_message() {
        let board = ProgressBoard::new();
        board.record("before", json!({"downloaded_bytes": 0}));
        let mut updates = board.subscribe();
        board.record("a", json!({"downloaded_bytes": 1}));
        board.record("b", json!({"downloaded_bytes": 2}));
        let first = updates.try_recv().unwrap();
        assert_eq!(first.aggregate_id, "a");
        assert_eq!(first.message, json!({"downloaded_bytes": 1}));
        assert_eq!(updates.try_recv().unwrap().aggregate_id, "b");
        assert!(updates.try_recv().is_err());
    }
}
