//! MediaNest's composition root: typed configuration, the wiring of every role into one
//! process, and the CLI. `main.rs` only parses arguments and calls in here.

pub mod app;
pub mod cli;
pub mod config;
pub mod exit;
pub mod shutdown;
pub mod users;

pub use app::{start, Running};
pub use config::{Role, Settings};
