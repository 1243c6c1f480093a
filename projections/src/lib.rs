//! Read models and the projection runner (docs/design.md §5).
//!
//! Each projection owns its tables and a checkpoint; the runner applies a batch of events
//! (up to [`runner::MAX_BATCH`]) per transaction, updating the read model and the checkpoint
//! together and ignoring events at or below the checkpoint, so a crash or a redelivery at
//! any point has an exactly-once effect.
//!
//! Every projection is fed from the PostgreSQL log (`LogFeed`), in order from its own
//! checkpoint; `requests`, `request_search`, `dashboard` and `downloads` read the events'
//! public forms, while `users` and `sessions` keep private fields (e-mails, token hashes,
//! IPs). A rebuild goes through [`replay`].

pub mod answers;
pub mod dashboard;
pub mod downloads;
pub mod replay;
pub mod requests;
pub mod runner;
pub mod search;
pub mod sessions;
pub mod status;
pub mod users;

use std::sync::Arc;

pub use runner::{Projection, ProjectionError, ProjectionRunner};

/// Every projection of MediaNest, in the order they are listed (`projections status`) and
/// replayed (`replay --all`).
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(requests::RequestsProjection),
        Arc::new(search::SearchProjection),
        Arc::new(downloads::DownloadsProjection),
        Arc::new(users::UsersProjection),
        Arc::new(sessions::SessionsProjection),
        Arc::new(dashboard::DashboardProjection),
    ]
}

/// The projection called `name` (`requests`, `request_search`, `downloads`, `users`,
/// `sessions`, `dashboard`).
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
