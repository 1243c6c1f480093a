//! Read models and the projection runner (DESIGN.md §5).
//!
//! Each projection owns its tables and a checkpoint; the runner applies one event per
//! transaction, updating the read model and the checkpoint together and ignoring events at
//! or below the checkpoint, so at-least-once delivery has an exactly-once effect.

pub mod requests;
pub mod runner;

pub use runner::{Projection, ProjectionError, ProjectionRunner};
