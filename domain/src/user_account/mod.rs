//! The `user_account` aggregate: the person behind sessions (docs/design.md §3).
//!
//! An account is registered once — from a Plex sign-in (`plex_id`) or locally with an
//! argon2id password hash for bootstrap and offline installs — and then changes role, quota
//! and enabled state at an admin's hand. Decided here: who may change what (admins only, and
//! never their own role, nor disable themselves, so an admin cannot lock the household out by
//! accident), the shape of a valid username, e-mail and quota, and that a command which
//! changes nothing writes nothing.
//!
//! Uniqueness across accounts (one account per Plex id, one per local username) spans
//! aggregates and is kept by the store's account service with an identity table.

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

pub use commands::{UserAccountCommand, MAX_EMAIL_BYTES, MAX_USERNAME_CHARS};
pub use errors::UserAccountError;
pub use events::{UserAccountEvent, EVENT_VERSION};
pub use state::{Quota, Quotas, SignInMethod, MAX_QUOTA_DAYS, MAX_QUOTA_LIMIT};

use crate::decision;
use crate::ActorId;
use state::Registered;

/// What the aggregate needs from outside: nothing.
#[derive(Debug, Clone, Default)]
pub struct UserAccountServices;

/// The decided state of one account; `Default` is "not registered". Its accessors are in
/// `state.rs`, its decisions in `decide.rs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAccount {
    registered: Option<Registered>,
}

impl Aggregate for UserAccount {
    const TYPE: &'static str = "user_account";
    type Command = UserAccountCommand;
    type Event = UserAccountEvent;
    type Error = UserAccountError;
    type Services = UserAccountServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        decision::handle(self, command, services, sink).await
    }

    fn apply(&mut self, event: Self::Event) {
        use UserAccountEvent as E;
        if let E::Registered {
            user_id,
            plex_id,
            username,
            email,
            avatar,
            role,
            password_hash,
        } = event
        {
            self.registered = Some(Registered {
                id: ActorId::user(user_id),
                plex_id,
                username,
                email,
                avatar,
                role,
                password_hash,
                quotas: Quotas::default(),
                disabled: false,
            });
            return;
        }
        let Some(state) = self.registered.as_mut() else {
            return;
        };
        match event {
            E::Registered { .. } => {}
            E::ProfileUpdated {
                username,
                email,
                avatar,
            } => {
                if let Some(username) = username {
                    state.username = username;
                }
                if email.is_some() {
                    state.email = email;
                }
                if avatar.is_some() {
                    state.avatar = avatar;
                }
            }
            E::RoleChanged { role, .. } => state.role = role,
            E::QuotaChanged { movie, tv, .. } => state.quotas = Quotas { movie, tv },
            E::Disabled { .. } => state.disabled = true,
            E::Enabled { .. } => state.disabled = false,
        }
    }
}
