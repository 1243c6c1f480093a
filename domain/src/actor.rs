//! Who issues a command: a signed-in user (admin or not) or a MediaNest worker.
//!
//! Authorisation rules that belong to the domain ("only the requester or an admin may
//! cancel") are decided by aggregates from the [`Actor`] carried in a command. The two checks
//! they share — "admins only" and "the owner or an admin" — live here once, and answer a
//! [`Forbidden`] that each aggregate's error turns into its own `Forbidden` variant.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identity written into events (`requested_by`, `by`) and into the `actor` metadata key.
///
/// Either a user id (a UUID, as text) or `system:<worker>` for sagas and webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActorId(String);

impl ActorId {
    /// The actor id of a user account.
    pub fn user(id: Uuid) -> Self {
        Self(id.to_string())
    }

    /// The actor id of a MediaNest worker, e.g. `system:overseerr-forwarder`.
    pub fn system(worker: &str) -> Self {
        Self(format!("system:{worker}"))
    }

    /// The id as written on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's role: admins approve, decline, retry and manage users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May do everything.
    Admin,
    /// May request media and manage their own requests.
    User,
}

impl Role {
    /// The wire name: `admin` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

/// The caller of a command: its id and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Who it is.
    pub id: ActorId,
    /// What it may do.
    pub role: Role,
}

impl Actor {
    /// An admin user.
    pub fn admin(id: Uuid) -> Self {
        Self {
            id: ActorId::user(id),
            role: Role::Admin,
        }
    }

    /// A non-admin user.
    pub fn user(id: Uuid) -> Self {
        Self {
            id: ActorId::user(id),
            role: Role::User,
        }
    }

    /// Whether the actor has the admin role.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admits admins only.
    ///
    /// # Errors
    /// [`Forbidden`] with `why` when the actor is not an admin.
    pub(crate) fn require_admin(&self, why: &'static str) -> Result<(), Forbidden> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Forbidden(why))
        }
    }

    /// Admits `owner` (the requester, the session's user) and admins.
    ///
    /// # Errors
    /// [`Forbidden`] with `why` when the actor is neither.
    pub(crate) fn require_admin_or(
        &self,
        owner: &ActorId,
        why: &'static str,
    ) -> Result<(), Forbidden> {
        if self.is_admin() || self.id == *owner {
            Ok(())
        } else {
            Err(Forbidden(why))
        }
    }
}

/// A command refused for want of a right, with the reason shown to the caller ("only admins
/// may approve requests"). Every aggregate error has a `Forbidden` variant made from it (403 at
/// the edge), so `?` on the checks above answers the aggregate's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forbidden(pub(crate) &'static str);
