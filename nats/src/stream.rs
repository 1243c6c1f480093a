//! Connecting to NATS and creating the `MEDIANEST_EVENTS` stream.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::Subjects;

/// Stream settings (`MEDIANEST_STREAM`, …). Postgres stays the source of truth, so the stream
/// may age out old events.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Stream name, `MEDIANEST_EVENTS` by default.
    pub name: String,
    /// Subject scheme.
    pub subjects: Subjects,
    /// JetStream de-duplication window for `Nats-Msg-Id` (default 10 minutes).
    pub duplicate_window: Duration,
    /// How long events are kept (default 30 days; zero keeps them forever).
    pub max_age: Duration,
}

impl StreamSettings {
    /// Defaults for stream `name` and `subjects`.
    pub fn new(name: impl Into<String>, subjects: Subjects) -> Self {
        Self {
            name: name.into(),
            subjects,
            duplicate_window: Duration::from_secs(600),
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Connects to NATS at `url` (`nats://host:port`, credentials in the URL if any).
///
/// # Errors
/// The connection error.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name("medianest")
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// Creates the events stream if it does not exist (file storage) and returns it.
///
/// # Errors
/// The JetStream error (e.g. JetStream disabled, or a stream with overlapping subjects).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, async_nats::Error> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: settings.name.clone(),
            subjects: vec![settings.subjects.all_events()],
            storage: stream::StorageType::File,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            ..Default::default()
        })
        .await?;
    Ok(stream)
}
