//! MediaNest's event store wiring on PostgreSQL (docs/design.md §2).
//!
//! Owns: the connection pool and migrations; the command executor on postgres-es's `events` table (optimistic
//! concurrency, retries, `If-Match` versions, event metadata, positions of what was written);
//! the global log reader behind the transaction fence; checkpoints of log readers;
//! idempotency keys of HTTP commands; the download ledger (per-user limit, one active
//! download per user and URL); the reservation table that keeps one active media
//! request per media; the request-quota ledger; account identities, session tokens and
//! password hashes; the Plex library read model and its sync state; a single-instance lock for workers that must not run twice.

pub mod accounts;
pub mod checkpoint;
pub mod credentials;
pub mod downloads;
pub mod executor;
pub mod idempotency;
pub mod lock;
pub mod log;
pub mod media_requests;
pub mod metadata;
pub mod notifications;
pub mod plex_library;
pub mod pool;
pub mod sessions;

/// A cause of any error type, boxed where several meet (kept as an error's `source()`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use executor::{CommandExecutor, Committed, ExecuteError};
pub use log::{Cursor, LogTail, StoredEvent};
pub use metadata::EventMetadata;
pub use pool::{connect, migrate, StoreError};
