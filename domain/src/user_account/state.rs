//! The state of an account: its profile, role, quotas and enabled state, and their accessors,
//! with the value types they are made of.

use serde::{Deserialize, Serialize};

use super::{UserAccount, UserAccountError};
use crate::media_request::MediaType;
use crate::{ActorId, Role};

/// Largest quota `limit` (requests per window).
pub const MAX_QUOTA_LIMIT: u32 = 1000;
/// Largest quota window, in days.
pub const MAX_QUOTA_DAYS: u32 = 365;

/// A request quota: at most `limit` requests in any window of `days` days (Overseerr's
/// `movieQuotaLimit`/`movieQuotaDays` semantics: a rolling window counted back from now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests allowed per window, 1 to [`MAX_QUOTA_LIMIT`].
    pub limit: u32,
    /// Window length in days, 1 to [`MAX_QUOTA_DAYS`].
    pub days: u32,
}

impl Quota {
    /// Validates `limit` and `days`.
    ///
    /// # Errors
    /// [`UserAccountError::Invalid`] naming `limit` or `days` when out of range.
    pub fn new(limit: u32, days: u32) -> Result<Self, UserAccountError> {
        if !(1..=MAX_QUOTA_LIMIT).contains(&limit) {
            return Err(UserAccountError::invalid(
                "limit",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=MAX_QUOTA_DAYS).contains(&days) {
            return Err(UserAccountError::invalid(
                "days",
                "must be between 1 and 365",
            ));
        }
        Ok(Self { limit, days })
    }
}

/// An account's own quotas; `None` means "the configured default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Movie requests.
    pub movie: Option<Quota>,
    /// TV requests.
    pub tv: Option<Quota>,
}

impl Quotas {
    /// The quota for `media_type`.
    pub fn of(&self, media_type: MediaType) -> Option<Quota> {
        match media_type {
            MediaType::Movie => self.movie,
            MediaType::Tv => self.tv,
        }
    }
}

/// How a person signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    /// Plex PIN flow (plex.tv).
    Plex,
    /// Username and password (local account).
    Local,
}

impl SignInMethod {
    /// The wire name: `plex` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plex => "plex",
            Self::Local => "local",
        }
    }
}

/// State that exists once an account is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Registered {
    pub(super) id: ActorId,
    pub(super) plex_id: Option<u64>,
    pub(super) username: String,
    pub(super) email: Option<String>,
    pub(super) avatar: Option<String>,
    pub(super) role: Role,
    pub(super) password_hash: Option<String>,
    pub(super) quotas: Quotas,
    pub(super) disabled: bool,
}

impl UserAccount {
    /// Whether the account exists.
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// The role, `None` before registration.
    pub fn role(&self) -> Option<Role> {
        self.registered.as_ref().map(|r| r.role)
    }

    /// The username, `None` before registration.
    pub fn username(&self) -> Option<&str> {
        self.registered.as_ref().map(|r| r.username.as_str())
    }

    /// The e-mail address, when known.
    pub fn email(&self) -> Option<&str> {
        self.registered.as_ref().and_then(|r| r.email.as_deref())
    }

    /// The avatar URL, when known.
    pub fn avatar(&self) -> Option<&str> {
        self.registered.as_ref().and_then(|r| r.avatar.as_deref())
    }

    /// The plex.tv account id of a Plex account.
    pub fn plex_id(&self) -> Option<u64> {
        self.registered.as_ref().and_then(|r| r.plex_id)
    }

    /// The argon2id hash of a local account.
    pub fn password_hash(&self) -> Option<&str> {
        self.registered
            .as_ref()
            .and_then(|r| r.password_hash.as_deref())
    }

    /// The account's own quotas (`None` fields mean the default).
    pub fn quotas(&self) -> Quotas {
        self.registered
            .as_ref()
            .map(|r| r.quotas)
            .unwrap_or_default()
    }

    /// Whether an admin disabled the account.
    pub fn is_disabled(&self) -> bool {
        self.registered.as_ref().is_some_and(|r| r.disabled)
    }

    /// The account's id, `None` before registration.
    pub fn id(&self) -> Option<&ActorId> {
        self.registered.as_ref().map(|r| &r.id)
    }
}
