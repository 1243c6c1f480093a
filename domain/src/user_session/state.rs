//! The state of a session: its account, status and expiry, and their accessors, with the value
//! types of a session.

use crate::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UserSession;

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

/// State that exists once a session is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Started {
    pub(super) user_id: UserId,
    pub(super) status: SessionStatus,
    pub(super) expires_at: DateTime<Utc>,
}

impl UserSession {
    /// The session's account, `None` before it started.
    pub fn user_id(&self) -> Option<UserId> {
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
}
