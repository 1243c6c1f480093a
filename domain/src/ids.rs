//! Typed ids: the UUIDs that name requests, downloads, user accounts and sessions.
//!
//! Each is a newtype over [`Uuid`], so a request id cannot be passed where a user id is
//! expected. They serialize as the bare UUID (`#[serde(transparent)]`): event JSON, HTTP JSON
//! and NATS payloads are the same as with a plain `Uuid`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defines a `Copy` UUID newtype with its conversions, parsing and display.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            /// A new id, as [`Self::new`].
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id! {
    /// The id of a media request (its aggregate id, as text, in the event log).
    RequestId
}

uuid_id! {
    /// The id of a download (its aggregate id, as text, in the event log).
    DownloadId
}

uuid_id! {
    /// The id of a user account.
    UserId
}

uuid_id! {
    /// The id of a sign-in session.
    SessionId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_bare_uuid() {
        let uuid = Uuid::from_u128(7);
        let id = UserId::from(uuid);
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::to_value(uuid).unwrap()
        );
        let back: UserId = serde_json::from_value(serde_json::to_value(uuid).unwrap()).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn parses_and_displays_as_the_uuid() {
        let uuid = Uuid::now_v7();
        let id: RequestId = uuid.to_string().parse().unwrap();
        assert_eq!(id.as_uuid(), uuid);
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(Uuid::from(id), uuid);
        assert!("not-a-uuid".parse::<SessionId>().is_err());
    }

    #[test]
    fn new_ids_are_version_7() {
        assert_eq!(DownloadId::new().as_uuid().get_version_num(), 7);
    }
}
