//! Events of the `user_account` aggregate, version `1.0`.
//!
//! Stored as `{"<event_type>": {...}}`. `email` and `password_hash` are sensitive: they stay
//! in PostgreSQL, and the public form (`crate::public`) leaves them out.

use crate::UserId;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Quota;
use crate::{ActorId, Role};

/// Everything that can happen to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UserAccountEvent {
    /// The account was created (first Plex sign-in, or `medianest users create`).
    Registered {
        /// The account's id (equal to the aggregate id).
        user_id: UserId,
        /// plex.tv account id of a Plex account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plex_id: Option<u64>,
        /// Display and (local accounts) sign-in name.
        username: String,
        /// E-mail address (sensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        /// Avatar URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<String>,
        /// The initial role.
        role: Role,
        /// argon2id PHC string of a local account (sensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<String>,
    },
    /// Profile fields changed at Plex; only the changed fields are present.
    ProfileUpdated {
        /// New username.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// New e-mail address (sensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        /// New avatar URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<String>,
    },
    /// An admin changed the role.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The admin.
        by: ActorId,
    },
    /// An admin changed the quotas (`null` = the configured default).
    QuotaChanged {
        /// Movie quota.
        movie: Option<Quota>,
        /// TV quota.
        tv: Option<Quota>,
        /// The admin.
        by: ActorId,
    },
    /// An admin disabled the account; its sessions stop working at once.
    Disabled {
        /// The admin.
        by: ActorId,
    },
    /// An admin enabled the account again.
    Enabled {
        /// The admin.
        by: ActorId,
    },
}

/// The version of every `user_account` event shape.
pub const EVENT_VERSION: &str = "1.0";

impl UserAccountEvent {
    /// The wire name of the event type (`registered`, `role_changed`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::ProfileUpdated { .. } => "profile_updated",
            Self::RoleChanged { .. } => "role_changed",
            Self::QuotaChanged { .. } => "quota_changed",
            Self::Disabled { .. } => "disabled",
            Self::Enabled { .. } => "enabled",
        }
    }
}

impl DomainEvent for UserAccountEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}
