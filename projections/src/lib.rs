//! Read models and the projection runner (DESIGN.md §5).
//!
//! Each projection owns its tables and a checkpoint; the runner applies one event per
//! transaction, updating the read model and the checkpoint together and ignoring events at
//! or below the checkpoint, so at-least-once delivery has an exactly-once effect.
//!
//! `requests` and `downloads` are fed from JetStream (public event forms); `users` and `sessions` keep
//! private fields (e-mails, token hashes, IPs) and are fed from the PostgreSQL log.

pub mod downloads;
pub mod requests;
pub mod runner;
pub mod sessions;
pub mod users;

pub use runner::{Projection, ProjectionError, ProjectionRunner};
