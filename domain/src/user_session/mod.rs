//! The `user_session` aggregate: one signed-in device of an account (docs/design.md §3).
//!
//! Lifecycle: `Active → Revoked | Expired`. A session is started by a sign-in with the
//! SHA-256 of its token (the token itself is shown to the caller once and never stored),
//! slides its expiry forward as it is used — at most one `Refreshed` per hour, decided here
//! from the expiry itself (`new expiry − current expiry ≥ 1 h`) — and ends by logout, revocation
//! (the user, an admin, or an account being disabled) or expiry (the session expirer worker).
//!
//! Time is passed in with the commands (`now`), so decisions are deterministic and testable.

mod events;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use events::{UserSessionEvent, EVENT_VERSION};

use crate::user_account::SignInMethod;
use crate::{Actor, ActorId};

/// The shortest gap between two expiry extensions of one session.
pub const REFRESH_INTERVAL: Duration = Duration::hours(1);

/// The device a session was started from, as the client described itself (Plex client
/// headers `X-Plex-Client-Identifier`, `X-Plex-Product`, `X-Plex-Device-Name`,
/// `X-Plex-Platform`). Each field is at most 200 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The client's stable identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client product (`Plex Web`, `MediaNest CLI`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The device's name (`Living room TV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The platform (`Chrome`, `iOS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The user logged out with this session.
    Logout,
    /// The user (or an admin) ended it from the sessions list.
    Revoked,
    /// An admin disabled the account.
    AccountDisabled,
}

impl RevokeReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
            Self::AccountDisabled => "account_disabled",
        }
    }
}

/// The status of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Usable until `expires_at`.
    Active,
    /// Ended by logout, the user, or an admin.
    Revoked,
    /// Ended by expiry.
    Expired,
}

impl SessionStatus {
    /// The wire name: `active`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// What may be asked of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserSessionCommand {
    /// Start a session for `user_id` after a successful sign-in.
    Start {
        /// The account.
        user_id: Uuid,
        /// How the user signed in.
        method: SignInMethod,
        /// The client's description of itself.
        device: Device,
        /// The client's address (sensitive).
        ip: Option<String>,
        /// The client's `User-Agent` (sensitive; at most 512 characters are kept).
        user_agent: Option<String>,
        /// The current time.
        now: DateTime<Utc>,
        /// When the session ends unless used (must be after `now`).
        expires_at: DateTime<Utc>,
        /// Lower-case hex SHA-256 of the token (64 characters).
        token_sha256: String,
    },
    /// The session was used: move its expiry to `expires_at` (written at most hourly).
    Refresh {
        /// The current time.
        now: DateTime<Utc>,
        /// The new expiry.
        expires_at: DateTime<Utc>,
    },
    /// End the session (its user, or an admin).
    Revoke {
        /// Who ends it.
        by: Actor,
        /// Why.
        reason: RevokeReason,
    },
    /// End the session because its expiry has passed (the session expirer).
    Expire {
        /// The current time.
        now: DateTime<Utc>,
    },
}

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserSessionError {
    /// No such session: 404.
    #[error("session not found")]
    NotFound,
    /// `Start` on an existing session: 409.
    #[error("session already started")]
    AlreadyStarted,
    /// The session has ended: 401 at the edge (its token no longer works).
    #[error("the session is {0}")]
    Ended(&'static str),
    /// `Expire` before the expiry: nothing to do yet.
    #[error("the session expires at {0}")]
    NotExpired(DateTime<Utc>),
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The decided state of one session; `Default` is "not started".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSession {
    started: Option<Started>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Started {
    user_id: Uuid,
    status: SessionStatus,
    expires_at: DateTime<Utc>,
}

impl UserSession {
    /// The session's account, `None` before it started.
    pub fn user_id(&self) -> Option<Uuid> {
        self.started.as_ref().map(|s| s.user_id)
    }

    /// The status, `None` before it started.
    pub fn status(&self) -> Option<SessionStatus> {
        self.started.as_ref().map(|s| s.status)
    }

    /// The current expiry, `None` before it started.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.started.as_ref().map(|s| s.expires_at)
    }

    fn decide(
        &self,
        command: UserSessionCommand,
    ) -> Result<Vec<UserSessionEvent>, UserSessionError> {
        use UserSessionCommand as C;
        use UserSessionEvent as E;

        if let C::Start {
            user_id,
            method,
            device,
            ip,
            user_agent,
            now,
            expires_at,
            token_sha256,
        } = command
        {
            if self.started.is_some() {
                return Err(UserSessionError::AlreadyStarted);
            }
            if expires_at <= now {
                return Err(invalid("expires_at", "must be in the future"));
            }
            let is_hex = token_sha256.len() == 64
                && token_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !is_hex {
                return Err(invalid(
                    "token_sha256",
                    "must be 64 lower-case hex characters",
                ));
            }
            return Ok(vec![E::Started {
                user_id,
                method,
                device: clean_device(device),
                ip: clip(ip, 64),
                user_agent: clip(user_agent, 512),
                expires_at,
                token_sha256,
            }]);
        }

        let current = self.started.as_ref().ok_or(UserSessionError::NotFound)?;
        let ended = || UserSessionError::Ended(current.status.as_str());
        let events = match command {
            C::Start { .. } => unreachable!("handled above"),
            C::Refresh { now, expires_at } => {
                if current.status != SessionStatus::Active {
                    return Err(ended());
                }
                if current.expires_at <= now {
                    // Expired by time, though the expirer has not recorded it yet.
                    return Err(UserSessionError::Ended(SessionStatus::Expired.as_str()));
                }
                if expires_at - current.expires_at >= REFRESH_INTERVAL {
                    vec![E::Refreshed { expires_at }]
                } else {
                    vec![]
                }
            }
            C::Revoke { by, reason } => {
                if !by.is_admin() && by.id != ActorId::user(current.user_id) {
                    return Err(UserSessionError::Forbidden(
                        "only the session's user or an admin may end it",
                    ));
                }
                match current.status {
                    SessionStatus::Active => vec![E::Revoked { by: by.id, reason }],
                    // Ending an ended session is already reflected.
                    SessionStatus::Revoked | SessionStatus::Expired => vec![],
                }
            }
            C::Expire { now } => match current.status {
                SessionStatus::Active if current.expires_at <= now => vec![E::Expired],
                SessionStatus::Active => {
                    return Err(UserSessionError::NotExpired(current.expires_at))
                }
                SessionStatus::Revoked | SessionStatus::Expired => vec![],
            },
        };
        Ok(events)
    }
}

fn invalid(field: &'static str, reason: &'static str) -> UserSessionError {
    UserSessionError::Invalid { field, reason }
}

/// Trims `text`, drops it when empty, and keeps at most `max` characters.
fn clip(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| t.trim().chars().take(max).collect::<String>())
        .filter(|t| !t.is_empty())
}

fn clean_device(device: Device) -> Device {
    Device {
        client_id: clip(device.client_id, 200),
        product: clip(device.product, 200),
        name: clip(device.name, 200),
        platform: clip(device.platform, 200),
    }
}

/// What the aggregate needs from outside: nothing.
#[derive(Debug, Clone, Default)]
pub struct UserSessionServices;

impl Aggregate for UserSession {
    const TYPE: &'static str = "user_session";
    type Command = UserSessionCommand;
    type Event = UserSessionEvent;
    type Error = UserSessionError;
    type Services = UserSessionServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
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
