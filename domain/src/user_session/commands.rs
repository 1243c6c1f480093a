//! Commands of the `user_session` aggregate, and how often a session's expiry is written.

use crate::UserId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Device, RevokeReason};
use crate::user_account::SignInMethod;
use crate::Actor;

/// The shortest gap between two expiry extensions of one session.
pub const REFRESH_INTERVAL: Duration = Duration::hours(1);

/// What may be asked of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserSessionCommand {
    /// Start a session for `user_id` after a successful sign-in.
    Start {
        /// The account.
        user_id: UserId,
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

impl UserSessionCommand {
    /// A short name for logs and errors (`start`, `refresh`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Refresh { .. } => "refresh",
            Self::Revoke { .. } => "revoke",
            Self::Expire { .. } => "expire",
        }
    }
}
