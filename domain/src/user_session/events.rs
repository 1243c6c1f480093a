//! Events of the `user_session` aggregate, version `1.0`.
//!
//! `token_sha256`, `ip` and `user_agent` are sensitive: they stay in PostgreSQL, and the
//! public form (`crate::public`) leaves them out.

use crate::UserId;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Device, RevokeReason};
use crate::user_account::SignInMethod;
use crate::ActorId;

/// Everything that can happen to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UserSessionEvent {
    /// A sign-in started the session.
    Started {
        /// The account.
        user_id: UserId,
        /// How the user signed in.
        method: SignInMethod,
        /// The client's description of itself.
        device: Device,
        /// The client's address (sensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        /// The client's `User-Agent` (sensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        /// When the session ends unless used.
        expires_at: DateTime<Utc>,
        /// Lower-case hex SHA-256 of the token (sensitive).
        token_sha256: String,
    },
    /// The session was used; its expiry moved forward (at most hourly).
    Refreshed {
        /// The new expiry.
        expires_at: DateTime<Utc>,
    },
    /// The session was ended by its user or an admin.
    Revoked {
        /// Who ended it.
        by: ActorId,
        /// Why.
        reason: RevokeReason,
    },
    /// The session's expiry passed.
    Expired,
}

/// The version of every `user_session` event shape.
pub const EVENT_VERSION: &str = "1.0";

impl UserSessionEvent {
    /// The wire name of the event type (`started`, `refreshed`, `revoked`, `expired`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Refreshed { .. } => "refreshed",
            Self::Revoked { .. } => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl DomainEvent for UserSessionEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}
