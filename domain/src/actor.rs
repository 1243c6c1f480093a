//! Who issues a command: a signed-in user (admin or not) or a MediaNest worker.
//!
//! Authorisation rules that belong to the domain ("only the requester or an admin may
//! cancel") are decided by aggregates from the [`Actor`] carried in a command. The two checks
//! they share — "admins only" and "the owner or an admin" — live here once, and answer a
//! [`Forbidden`] that each aggregate's error turns into its own `Forbidden` variant.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::UserId;

/// The prefix of a system actor's wire form, `system:<worker>`.
const SYSTEM_PREFIX: &str = "system:";

/// The identity written into events (`requested_by`, `by`) and into the `actor` metadata key.
///
/// On the wire (event JSON, HTTP, NATS) it is one string, as it always was: a user's id as
/// UUID text, or `system:<worker>` for sagas and webhooks. Deserializing is strict: any other
/// string is refused.
///
/// The worker name of [`ActorId::System`] is a `Cow<'static, str>` rather than a
/// `&'static str`: code names its workers with literals (borrowed, no allocation), but an id
/// read back from stored events owns its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActorId {
    /// A signed-in user (admin or not).
    User(UserId),
    /// A MediaNest worker, e.g. `overseerr-forwarder` (without the `system:` prefix).
    System(Cow<'static, str>),
}

impl ActorId {
    /// The actor id of a user account.
    pub fn user(id: impl Into<UserId>) -> Self {
        Self::User(id.into())
    }

    /// The actor id of a MediaNest worker, e.g. `system("overseerr-forwarder")`, written
    /// `system:overseerr-forwarder`.
    pub fn system(worker: impl Into<Cow<'static, str>>) -> Self {
        Self::System(worker.into())
    }

    /// The user's id, or `None` for a worker.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::User(id) => Some(*id),
            Self::System(_) => None,
        }
    }
}

impl fmt::Display for ActorId {
    /// The wire form: the user's UUID text, or `system:<worker>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => fmt::Display::fmt(id, f),
            Self::System(worker) => write!(f, "{SYSTEM_PREFIX}{worker}"),
        }
    }
}

/// Why a string is not an [`ActorId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an actor id (a UUID or `system:<worker>`): {0:?}")]
pub struct InvalidActorId(String);

impl std::str::FromStr for ActorId {
    type Err = InvalidActorId;

    /// Parses the wire form: a UUID, or `system:` followed by a non-empty worker name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(SYSTEM_PREFIX) {
            Some(worker) if !worker.is_empty() => Ok(Self::system(worker.to_string())),
            Some(_) => Err(InvalidActorId(s.to_string())),
            None => Uuid::parse_str(s)
                .map(|uuid| Self::User(uuid.into()))
                .map_err(|_| InvalidActorId(s.to_string())),
        }
    }
}

impl Serialize for ActorId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
    pub fn admin(id: impl Into<UserId>) -> Self {
        Self {
            id: ActorId::user(id),
            role: Role::Admin,
        }
    }

    /// A non-admin user.
    pub fn user(id: impl Into<UserId>) -> Self {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_user_is_written_as_its_uuid_text() {
        let uuid = Uuid::from_u128(42);
        let id = ActorId::user(uuid);
        assert_eq!(serde_json::to_value(&id).unwrap(), json!(uuid.to_string()));
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(id.user_id(), Some(UserId::from(uuid)));
        let back: ActorId = serde_json::from_value(json!(uuid.to_string())).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn a_worker_is_written_with_the_system_prefix() {
        let id = ActorId::system("overseerr-forwarder");
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            json!("system:overseerr-forwarder")
        );
        assert_eq!(id.user_id(), None);
        let back: ActorId = serde_json::from_value(json!("system:overseerr-forwarder")).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["u2", "", "system:", "0193-user", "System:x"] {
            assert!(
                serde_json::from_value::<ActorId>(json!(bad)).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(serde_json::from_value::<ActorId>(json!(3)).is_err());
    }
}
