//! Saga / process-manager workers (docs/design.md §6): each turns events into calls to an external
//! service and the outcome back into commands, with the triggering event as causation.
//!
//! - [`forwarder::OverseerrForwarder`]: `approved`/`retried` → `POST /api/v1/request`.
//! - [`reconciler::OverseerrReconciler`]: polls forwarded requests until they settle, for
//!   webhooks that never arrive.
//! - [`session_expirer::SessionExpirer`]: records `expired` for sessions past their expiry.
//! - [`housekeeping::IdempotencySweeper`]: forgets idempotency keys past their time to live.
//! - [`downloader::Downloader`]: `queued`/`retried` downloads → yt-dlp runs, progress on
//!   core NATS, items and outcome recorded.
//! - [`scanner::PlexScanner`]: `completed` downloads → a Plex library section scan.
//! - [`notifier::Notifier`], [`notifier::Dispatcher`], [`notifier::HealthWatcher`]: events and
//!   breaker transitions → notification deliveries → e-mail, webhooks and push services.
//! - [`plex_sync::PlexSync`]: the Plex library read model from the PMS library routes, and
//!   `partially_available` / `available` for the requests Plex covers.
//!
//! The event-driven sagas run on one skeleton, [`consumer`]: a saga says which events it
//! wants and what it does with one ([`consumer::Saga`]); the skeleton consumes, acknowledges
//! only what is done, hands an event that failed transiently over again after a backoff, and
//! keeps a held event alive with in-progress acks.
//!
//! Each external service has a [`breaker::CircuitBreaker`] shared by the sagas that call it;
//! while it is open they wait instead of calling, and its state goes to `service_health`.

pub mod breaker;
pub mod consumer;
pub mod downloader;
pub mod forwarder;
pub mod housekeeping;
pub mod notifier;
pub mod plex_sync;
pub mod reconciler;
pub mod retry;
pub mod scanner;
pub mod session_expirer;

pub use breaker::{BreakerConfig, CircuitBreaker, Service};
pub use consumer::{Backoff, Saga, Step};
pub use downloader::{Downloader, DownloaderConfig, ProgressOut};
pub use forwarder::OverseerrForwarder;
pub use housekeeping::IdempotencySweeper;
pub use notifier::{Dispatcher, HealthWatcher, Notifier, NotifierConfig};
pub use plex_sync::{PlexSync, PlexSyncConfig};
pub use reconciler::OverseerrReconciler;
pub use retry::RetryPolicy;
pub use scanner::{PlexScanner, ScanTarget};
pub use session_expirer::SessionExpirer;
