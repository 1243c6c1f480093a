//! MediaNest's domain: aggregates, commands, events, value types and invariants.
//!
//! This crate is pure: it knows nothing of PostgreSQL, NATS or HTTP. Every state change of the
//! system is decided here, by an aggregate handling a command (see `docs/design.md` §3),
//! and recorded as events that the store crate appends to the log.
//!
//! Every aggregate module has the same files: `mod.rs` (the aggregate type, its services, the
//! `Aggregate` impl and the re-exports), `commands.rs`, `state.rs` (the state and its
//! accessors), `events.rs`, `errors.rs`, `decide.rs` (one function per command) and `tests.rs`.

pub mod actor;
mod decision;
pub mod download;
pub mod ids;
pub mod media_request;
pub mod notification;
pub mod public;
pub mod quota;
pub mod user_account;
pub mod user_session;

pub use actor::{Actor, ActorId, InvalidActorId, Role};
pub use ids::{DownloadId, RequestId, SessionId, UserId};
