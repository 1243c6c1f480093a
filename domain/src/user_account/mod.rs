//! The `user_account` aggregate: the person behind sessions (docs/design.md §3).
//!
//! An account is registered once — from a Plex sign-in (`plex_id`) or locally with an
//! argon2id password hash for bootstrap and offline installs — and then changes role, quota
//! and enabled state at an admin's hand. Decided here: who may change what (admins only, and
//! never their own role, nor disable themselves, so an admin cannot lock the household out by
//! accident), the shape of a valid username, e-mail and quota, and that a command which
//! changes nothing writes nothing.
//!
//! Uniqueness across accounts (one account per Plex id, one per local username) spans
//! aggregates and is kept by the store's account service with an identity table.

mod events;
#[cfg(test)]
mod tests;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use events::{UserAccountEvent, EVENT_VERSION};

use crate::media_request::MediaType;
use crate::{Actor, ActorId, Role};

/// Longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest accepted e-mail address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
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

/// What users may ask of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAccountCommand {
    /// Create the account. Exactly one of `plex_id` (a Plex account) and `password_hash`
    /// (a local account, argon2id PHC string) is given.
    Register {
        /// The account's id (the aggregate id, as in cqrs-es's own examples).
        user_id: Uuid,
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

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserAccountError {
    /// No such account: 404.
    #[error("user account not found")]
    NotFound,
    /// `Register` on an existing account: 409.
    #[error("user account already registered")]
    AlreadyRegistered,
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, as named on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl UserAccountError {
    fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

/// The decided state of one account; `Default` is "not registered".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAccount {
    registered: Option<Registered>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Registered {
    id: ActorId,
    plex_id: Option<u64>,
    username: String,
    email: Option<String>,
    avatar: Option<String>,
    role: Role,
    password_hash: Option<String>,
    quotas: Quotas,
    disabled: bool,
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

    fn decide(
        &self,
        command: UserAccountCommand,
    ) -> Result<Vec<UserAccountEvent>, UserAccountError> {
        use UserAccountCommand as C;
        use UserAccountEvent as E;

        if let C::Register {
            user_id,
            plex_id,
            username,
            email,
            avatar,
            role,
            password_hash,
        } = command
        {
            if self.registered.is_some() {
                return Err(UserAccountError::AlreadyRegistered);
            }
            let local = match (plex_id, &password_hash) {
                (Some(_), None) => false,
                (None, Some(hash)) if hash.starts_with("$argon2id$") => true,
                (None, Some(_)) => {
                    return Err(UserAccountError::invalid(
                        "password_hash",
                        "must be an argon2id PHC string",
                    ))
                }
                _ => {
                    return Err(UserAccountError::invalid(
                        "plex_id",
                        "an account is either a Plex account or a local one with a password",
                    ))
                }
            };
            return Ok(vec![E::Registered {
                user_id,
                plex_id,
                username: valid_username(username, local)?,
                email: valid_email(email)?,
                avatar: valid_avatar(avatar)?,
                role,
                password_hash,
            }]);
        }

        let current = self.registered.as_ref().ok_or(UserAccountError::NotFound)?;
        let not_self = |by: &Actor, why: &'static str| {
            if by.id == current.id {
                Err(UserAccountError::Forbidden(why))
            } else {
                Ok(())
            }
        };
        let events = match command {
            C::Register { .. } => unreachable!("handled above"),
            C::UpdateProfile {
                username,
                email,
                avatar,
            } => {
                let local = current.password_hash.is_some();
                let username = username
                    .map(|u| valid_username(u, local))
                    .transpose()?
                    .filter(|u| *u != current.username);
                let email = valid_email(email)?.filter(|e| current.email.as_ref() != Some(e));
                let avatar = valid_avatar(avatar)?.filter(|a| current.avatar.as_ref() != Some(a));
                if username.is_none() && email.is_none() && avatar.is_none() {
                    vec![]
                } else {
                    vec![E::ProfileUpdated {
                        username,
                        email,
                        avatar,
                    }]
                }
            }
            C::ChangeRole { role, by } => {
                require_admin(&by, "only admins may change roles")?;
                not_self(&by, "admins cannot change their own role")?;
                if role == current.role {
                    vec![]
                } else {
                    vec![E::RoleChanged { role, by: by.id }]
                }
            }
            C::ChangeQuota { quotas, by } => {
                require_admin(&by, "only admins may change quotas")?;
                for quota in [quotas.movie, quotas.tv].into_iter().flatten() {
                    Quota::new(quota.limit, quota.days)?;
                }
                if quotas == current.quotas {
                    vec![]
                } else {
                    vec![E::QuotaChanged {
                        movie: quotas.movie,
                        tv: quotas.tv,
                        by: by.id,
                    }]
                }
            }
            C::Disable { by } => {
                require_admin(&by, "only admins may disable accounts")?;
                not_self(&by, "admins cannot disable their own account")?;
                if current.disabled {
                    vec![]
                } else {
                    vec![E::Disabled { by: by.id }]
                }
            }
            C::Enable { by } => {
                require_admin(&by, "only admins may enable accounts")?;
                if current.disabled {
                    vec![E::Enabled { by: by.id }]
                } else {
                    vec![]
                }
            }
        };
        Ok(events)
    }
}

fn require_admin(actor: &Actor, why: &'static str) -> Result<(), UserAccountError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(UserAccountError::Forbidden(why))
    }
}

fn valid_username(username: String, local: bool) -> Result<String, UserAccountError> {
    let username = username.trim().to_string();
    if username.is_empty() {
        return Err(UserAccountError::invalid("username", "must not be empty"));
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(UserAccountError::invalid(
            "username",
            "must be at most 64 characters",
        ));
    }
    if username.chars().any(char::is_control) {
        return Err(UserAccountError::invalid(
            "username",
            "must not contain control characters",
        ));
    }
    if local
        && !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(UserAccountError::invalid(
            "username",
            "local usernames use only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(username)
}

fn valid_email(email: Option<String>) -> Result<Option<String>, UserAccountError> {
    let email = email
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &email {
        let shaped = e.len() <= MAX_EMAIL_BYTES
            && e.split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if !shaped {
            return Err(UserAccountError::invalid(
                "email",
                "must be an e-mail address of at most 254 bytes",
            ));
        }
    }
    Ok(email)
}

fn valid_avatar(avatar: Option<String>) -> Result<Option<String>, UserAccountError> {
    let avatar = avatar
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    if avatar
        .as_ref()
        .is_some_and(|a| a.len() > 2048 || !a.starts_with("https://") && !a.starts_with("http://"))
    {
        return Err(UserAccountError::invalid(
            "avatar",
            "must be an http(s) URL of at most 2048 bytes",
        ));
    }
    Ok(avatar)
}

/// What the aggregate needs from outside: nothing.
#[derive(Debug, Clone, Default)]
pub struct UserAccountServices;

impl Aggregate for UserAccount {
    const TYPE: &'static str = "user_account";
    type Command = UserAccountCommand;
    type Event = UserAccountEvent;
    type Error = UserAccountError;
    type Services = UserAccountServices;

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
        use UserAccountEvent as E;
        if let E::Registered {
            user_id,
            plex_id,
            username,
            email,
            avatar,
            role,
            password_hash,
        } = event
        {
            self.registered = Some(Registered {
                id: ActorId::user(user_id),
                plex_id,
                username,
                email,
                avatar,
                role,
                password_hash,
                quotas: Quotas::default(),
                disabled: false,
            });
            return;
        }
        let Some(state) = self.registered.as_mut() else {
            return;
        };
        match event {
            E::Registered { .. } => {}
            E::ProfileUpdated {
                username,
                email,
                avatar,
            } => {
                if let Some(username) = username {
                    state.username = username;
                }
                if email.is_some() {
                    state.email = email;
                }
                if avatar.is_some() {
                    state.avatar = avatar;
                }
            }
            E::RoleChanged { role, .. } => state.role = role,
            E::QuotaChanged { movie, tv, .. } => state.quotas = Quotas { movie, tv },
            E::Disabled { .. } => state.disabled = true,
            E::Enabled { .. } => state.disabled = false,
        }
    }
}
