//! Commands of the `user_account` aggregate, and the limits on their content.

use crate::UserId;
use serde::{Deserialize, Serialize};

use super::Quotas;
use crate::{Actor, Role};

/// Longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest accepted e-mail address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// What users may ask of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAccountCommand {
    /// Create the account. Exactly one of `plex_id` (a Plex account) and `password_hash`
    /// (a local account, argon2id PHC string) is given.
    Register {
        /// The account's id (the aggregate id, as in cqrs-es's own examples).
        user_id: UserId,
        /// plex.tv account id.
        plex_id: Option<u64>,
        /// 1 to 64 characters; local usernames are `[A-Za-z0-9._-]`.
        username: String,
        /// At most 254 bytes, with an `@`.
        email: Option<String>,
        /// Avatar URL (Plex `thumb`).
        avatar: Option<String>,
        /// The initial role.
        role: Role,
        /// argon2id PHC string of a local account.
        password_hash: Option<String>,
    },
    /// Bring the profile in line with Plex (on each Plex sign-in); `None` keeps a field.
    UpdateProfile {
        /// New username.
        username: Option<String>,
        /// New e-mail.
        email: Option<String>,
        /// New avatar URL.
        avatar: Option<String>,
    },
    /// Make the account an admin or a user (admins only, not their own).
    ChangeRole {
        /// The new role.
        role: Role,
        /// The admin.
        by: Actor,
    },
    /// Set the account's quotas (admins only).
    ChangeQuota {
        /// The new quotas (`None` = the default).
        quotas: Quotas,
        /// The admin.
        by: Actor,
    },
    /// Stop the account from signing in or using sessions (admins only, not their own).
    Disable {
        /// The admin.
        by: Actor,
    },
    /// Let a disabled account sign in again (admins only).
    Enable {
        /// The admin.
        by: Actor,
    },
}

impl UserAccountCommand {
    /// A short name for logs and errors (`register`, `change_role`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::UpdateProfile { .. } => "update_profile",
            Self::ChangeRole { .. } => "change_role",
            Self::ChangeQuota { .. } => "change_quota",
            Self::Disable { .. } => "disable",
            Self::Enable { .. } => "enable",
        }
    }
}
