//! The consuming loop every saga shares: subscribe (retrying), hand each event to the saga,
//! ack it, and resubscribe when the subscription ends, until shutdown — or until the saga
//! gives an event back unfinished (shutdown while it waited), which then stays unacknowledged
//! and is delivered again after a restart.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use medianest_nats::feed::StartAt;
use medianest_nats::{EventFeed, FeedEvent};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Consumes `aggregate_types` events as the durable consumer `name` until `shutdown`,
/// calling `handle` for each and acking what it hands back (a crash before the ack
/// redelivers it, so `handle` must be idempotent). The event in hand is finished first.
/// When `handle` answers `None` (it stopped without finishing the event), the event is left
/// unacknowledged and consuming stops.
pub(crate) async fn consume<F, Fut>(
    feed: &dyn EventFeed,
    name: &str,
    aggregate_types: &[&str],
    shutdown: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(FeedEvent) -> Fut,
    Fut: Future<Output = Option<FeedEvent>>,
{
    loop {
        let mut events = match feed
            .subscribe(name, aggregate_types, StartAt::Beginning)
            .await
        {
            Ok(events) => events,
            Err(error) => {
                warn!(%error, consumer = name, "cannot subscribe; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = shutdown.cancelled() => return,
            };
            match next {
                None => break,
                Some(Err(error)) => warn!(%error, consumer = name, "feed error"),
                Some(Ok(event)) => {
                    let Some(event) = handle(event).await else {
                        return;
                    };
                    if let Err(error) = event.ack().await {
                        warn!(%error, consumer = name, "ack failed; the event will be redelivered");
                    }
                }
            }
        }
    }
}
