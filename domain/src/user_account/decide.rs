//! What each account command decides: one function per command, and the dispatch.
//!
//! `register` is the only function that sees an account that may not exist yet; every other
//! command takes the account as [`Existing`], which the dispatch makes (or refuses with
//! `NotFound`) before calling it.

use crate::UserId;

use super::state::Registered;
use super::{
    Quota, Quotas, UserAccount, UserAccountCommand, UserAccountError, UserAccountEvent,
    UserAccountServices, MAX_EMAIL_BYTES, MAX_USERNAME_CHARS,
};
use crate::actor::Forbidden;
use crate::decision::{Decide, Existing};
use crate::{Actor, Role};

use UserAccountEvent as E;

/// The decision on an account.
type Decision = Result<Vec<UserAccountEvent>, UserAccountError>;

/// The account a command acts on.
type Account<'a> = Existing<'a, Registered>;

impl Account<'_> {
    /// Refuses (with `why`) an admin acting on their own account.
    fn not_self(&self, by: &Actor, why: &'static str) -> Result<(), Forbidden> {
        if by.id == self.id {
            Err(Forbidden(why))
        } else {
            Ok(())
        }
    }
}

impl Decide for UserAccount {
    fn decide(&self, command: UserAccountCommand, _services: &UserAccountServices) -> Decision {
        use UserAccountCommand as C;

        let name = command.name();
        let existing = || Existing::of(self.registered.as_ref(), name, UserAccountError::NotFound);
        match command {
            C::Register {
                user_id,
                plex_id,
                username,
                email,
                avatar,
                role,
                password_hash,
            } => register(
                self,
                user_id,
                plex_id,
                username,
                email,
                avatar,
                role,
                password_hash,
            ),
            C::UpdateProfile {
                username,
                email,
                avatar,
            } => update_profile(existing()?, username, email, avatar),
            C::ChangeRole { role, by } => change_role(existing()?, role, by),
            C::ChangeQuota { quotas, by } => change_quota(existing()?, quotas, by),
            C::Disable { by } => disable(existing()?, by),
            C::Enable { by } => enable(existing()?, by),
        }
    }
}

/// `Register`: a Plex account or a local one with an argon2id hash, on a new id.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field of `Register`, as the dispatch destructures it"
)]
fn register(
    account: &UserAccount,
    user_id: UserId,
    plex_id: Option<u64>,
    username: String,
    email: Option<String>,
    avatar: Option<String>,
    role: Role,
    password_hash: Option<String>,
) -> Decision {
    if account.registered.is_some() {
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
    Ok(vec![E::Registered {
        user_id,
        plex_id,
        username: valid_username(username, local)?,
        email: valid_email(email)?,
        avatar: valid_avatar(avatar)?,
        role,
        password_hash,
    }])
}

/// `UpdateProfile`: the fields that are given and differ; nothing when none does.
fn update_profile(
    account: Account<'_>,
    username: Option<String>,
    email: Option<String>,
    avatar: Option<String>,
) -> Decision {
    let local = account.password_hash.is_some();
    let username = username
        .map(|u| valid_username(u, local))
        .transpose()?
        .filter(|u| *u != account.username);
    let email = valid_email(email)?.filter(|e| account.email.as_ref() != Some(e));
    let avatar = valid_avatar(avatar)?.filter(|a| account.avatar.as_ref() != Some(a));
    if username.is_none() && email.is_none() && avatar.is_none() {
        return Ok(vec![]);
    }
    Ok(vec![E::ProfileUpdated {
        username,
        email,
        avatar,
    }])
}

/// `ChangeRole`: an admin changes another account's role.
fn change_role(account: Account<'_>, role: Role, by: Actor) -> Decision {
    by.require_admin("only admins may change roles")?;
    account.not_self(&by, "admins cannot change their own role")?;
    if role == account.role {
        return Ok(vec![]);
    }
    Ok(vec![E::RoleChanged { role, by: by.id }])
}

/// `ChangeQuota`: an admin sets valid quotas.
fn change_quota(account: Account<'_>, quotas: Quotas, by: Actor) -> Decision {
    by.require_admin("only admins may change quotas")?;
    for quota in [quotas.movie, quotas.tv].into_iter().flatten() {
        Quota::new(quota.limit, quota.days)?;
    }
    if quotas == account.quotas {
        return Ok(vec![]);
    }
    Ok(vec![E::QuotaChanged {
        movie: quotas.movie,
        tv: quotas.tv,
        by: by.id,
    }])
}

/// `Disable`: an admin disables another account.
fn disable(account: Account<'_>, by: Actor) -> Decision {
    by.require_admin("only admins may disable accounts")?;
    account.not_self(&by, "admins cannot disable their own account")?;
    if account.disabled {
        return Ok(vec![]);
    }
    Ok(vec![E::Disabled { by: by.id }])
}

/// `Enable`: an admin lets a disabled account sign in again.
fn enable(account: Account<'_>, by: Actor) -> Decision {
    by.require_admin("only admins may enable accounts")?;
    if !account.disabled {
        return Ok(vec![]);
    }
    Ok(vec![E::Enabled { by: by.id }])
}

/// A trimmed username of 1 to [`MAX_USERNAME_CHARS`] characters; a local one is
/// `[A-Za-z0-9._-]`.
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

/// A trimmed e-mail address of at most [`MAX_EMAIL_BYTES`] bytes, with an `@`; empty is none.
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

/// A trimmed http(s) URL of at most 2048 bytes; empty is none.
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
