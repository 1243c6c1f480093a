//! The `user_session` aggregate: one signed-in device of an account (docs/design.md §3).
//!
//! Lifecycle: `Active → Revoked | Expired`. A session is started by a sign-in with the
//! SHA-256 of its token (the token itself is shown to the caller once and never stored),
//! slides its expiry forward as it is used — at most one `Refreshed` per hour, decided here
//! from the expiry itself (`new expiry − current expiry ≥ 1 h`) — and ends by logout, revocation
//! (the user, an admin, or an account being disabled) or expiry (the session expirer worker).
//!
//! Time is passed in with the commands (`now`), so decisions are deterministic and testable.

mod commands;
mod decide;
mod errors;
mod events;
mod state;
#[cfg(test)]
mod tests;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::{UserSessionCommand, REFRESH_INTERVAL};
pub use errors::UserSessionError;
pub use events::{UserSessionEvent, EVENT_VERSION};
pub use state::{Device, RevokeReason, SessionStatus};

use crate::decision;
use state::Started;

/// What the aggregate needs from outside: nothing.
#[derive(Debug, Clone, Default)]
pub struct UserSessionServices;

/// The decided state of one session; `Default` is "not started". Its accessors are in
/// `state.rs`, its decisions in `decide.rs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSession {
    started: Option<Started>,
}

impl Aggregate for UserSession {
    const TYPE: &'static str = "user_session";
    type Command = UserSessionCommand;
    type Event = UserSessionEvent;
    type Error = UserSessionError;
    type Services = UserSessionServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        decision::handle(self, command, services, sink).await
    }

    fn apply(&mut self, event: Self::Event) {
        use UserSessionEvent as E;
        match event {
            E::Started {
                user_id,
                expires_at,
                ..
            } => {
                self.started = Some(Started {
                    user_id,
                    status: SessionStatus::Active,
                    expires_at,
                });
            }
            E::Refreshed { expires_at } => {
                if let Some(state) = self.started.as_mut() {
                    state.expires_at = expires_at;
                }
            }
            E::Revoked { .. } => {
                if let Some(state) = self.started.as_mut() {
                    state.status = SessionStatus::Revoked;
                }
            }
            E::Expired => {
                if let Some(state) = self.started.as_mut() {
                    state.status = SessionStatus::Expired;
                }
            }
        }
    }
}
