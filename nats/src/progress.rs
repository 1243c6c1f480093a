//! Progress messages on core NATS (DESIGN.md §3, §4): not events, not persisted.
//!
//! The downloader saga publishes at most one message per second per download on
//! `<prefix>.progress.download.<id>`; [`ProgressBoard`] follows those subjects and keeps the
//! latest message of each aggregate, which is what `GET /api/v1/downloads/{id}` shows as
//! current progress. Messages are JSON objects; their shape is the publisher's (for
//! downloads: `docs/events.md`, "Progress").

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Subjects;

/// How long a progress message is shown without a newer one (a stalled or finished
/// download stops publishing).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// The latest progress message of each aggregate of one type.
#[derive(Debug, Default)]
pub struct ProgressBoard {
    latest: Mutex<HashMap<String, (Value, Instant)>>,
}

impl ProgressBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest message of `aggregate_id`, unless older than [`STALE_AFTER`].
    pub fn get(&self, aggregate_id: &str) -> Option<Value> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .get(aggregate_id)
            .filter(|(_, at)| at.elapsed() < STALE_AFTER)
            .map(|(message, _)| message.clone())
    }

    /// Records `message` as the latest of `aggregate_id` (and drops stale entries).
    pub fn record(&self, aggregate_id: &str, message: Value) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.retain(|_, (_, at)| at.elapsed() < STALE_AFTER);
        latest.insert(aggregate_id.to_string(), (message, Instant::now()));
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
}
