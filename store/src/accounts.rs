//! The command service of user accounts: the aggregate's executor plus the rules that span
//! accounts — one account per Plex id and per local username, and "the server owner, or the
//! very first account, is an admin".
//!
//! Identities are kept in `user_identities` (`plex` → plex.tv id, `local` → lower-cased
//! username). Registration takes a transaction-scoped advisory lock (registrations are rare),
//! looks the identity up, reserves it for the new id and decides the role, then writes the
//! `registered` event. A reservation whose account was never written (a crash in between)
//! is taken over once [`UNWRITTEN_GRACE`] has passed, so the table heals itself.

use std::time::Duration;

use medianest_domain::user_account::{UserAccount, UserAccountCommand, UserAccountError};
use medianest_domain::{Role, UserId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::executor::{CommandExecutor, Committed, ExecuteError};
use crate::EventMetadata;

/// How long a reservation without a written account is honoured (a registration in flight).
pub const UNWRITTEN_GRACE: Duration = Duration::from_secs(30);

/// The advisory lock key that serialises registrations.
const REGISTRATION_LOCK: i64 = 0x6d65_6469_616e_0003;

/// An identity an account is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A plex.tv account id.
    Plex(u64),
    /// A local username (compared case-insensitively).
    Local(String),
}

impl Identity {
    fn kind(&self) -> &'static str {
        match self {
            Self::Plex(_) => "plex",
            Self::Local(_) => "local",
        }
    }

    fn key(&self) -> String {
        match self {
            Self::Plex(id) => id.to_string(),
            Self::Local(name) => name.trim().to_lowercase(),
        }
    }
}

/// How the role of a new account is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRule {
    /// Exactly this role (`medianest users create [--admin]`).
    Fixed(Role),
    /// Admin for the Plex server's owner (`true`) or for the first account ever; user
    /// otherwise (Plex sign-in).
    OwnerOrFirst(bool),
}

/// Why an account command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AccountCommandError {
    /// The identity already belongs to another account (409).
    #[error("an account with this identity already exists: {existing}")]
    Taken {
        /// The existing account.
        existing: UserId,
    },
    /// The aggregate or the store refused it.
    #[error(transparent)]
    Execute(#[from] ExecuteError<UserAccountError>),
}

impl From<sqlx::Error> for AccountCommandError {
    fn from(error: sqlx::Error) -> Self {
        Self::Execute(error.into())
    }
}

/// A registration request: the `Register` command without id and role, which the service
/// decides.
#[derive(Debug, Clone)]
pub struct Registration {
    /// plex.tv account id (Plex accounts).
    pub plex_id: Option<u64>,
    /// Username.
    pub username: String,
    /// E-mail.
    pub email: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// argon2id PHC string (local accounts).
    pub password_hash: Option<String>,
}

/// Executes account commands, keeping identities unique.
#[derive(Debug)]
pub struct UserAccounts {
    executor: CommandExecutor<UserAccount>,
    pool: PgPool,
}

impl UserAccounts {
    /// A service writing to `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            executor: CommandExecutor::new(pool.clone(), Default::default()),
            pool,
        }
    }

    /// The current state and version of account `id`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(
        &self,
        id: UserId,
    ) -> Result<(UserAccount, i64), ExecuteError<UserAccountError>> {
        self.executor.load(&id.to_string()).await
    }

    /// Executes `command` on account `id` (not `Register`: use [`Self::register`]).
    ///
    /// # Errors
    /// The executor's errors; `Rejected(NotFound)` for an unknown id.
    pub async fn execute(
        &self,
        id: UserId,
        command: UserAccountCommand,
        expected_version: Option<i64>,
        metadata: &EventMetadata,
    ) -> Result<Committed<UserAccount>, ExecuteError<UserAccountError>> {
        self.executor
            .execute(&id.to_string(), command, expected_version, metadata)
            .await
    }

    /// The account registered under `identity`, if any (reservations still in flight are
    /// not accounts).
    ///
    /// # Errors
    /// The database error.
    pub async fn find(&self, identity: &Identity) -> Result<Option<UserId>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT i.user_id FROM user_identities i
              WHERE i.kind = $1 AND i.key = $2
                AND EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'user_account'
                             AND e.aggregate_id = i.user_id::text)",
        )
        .bind(identity.kind())
        .bind(identity.key())
        .fetch_optional(&self.pool)
        .await
        .map(|found: Option<Uuid>| found.map(UserId::from))
    }

    /// Registers a new account under `identity` with the role `rule` decides.
    ///
    /// # Errors
    /// [`AccountCommandError::Taken`] naming the existing account when the identity is
    /// taken; otherwise the aggregate's and the store's errors (the reservation is undone).
    pub async fn register(
        &self,
        identity: &Identity,
        registration: Registration,
        rule: RoleRule,
        metadata: &EventMetadata,
    ) -> Result<(UserId, Committed<UserAccount>), AccountCommandError> {
        let id = UserId::new();
        let role = self.reserve(identity, id, rule).await?;
        let command = UserAccountCommand::Register {
            user_id: id,
            plex_id: registration.plex_id,
            username: registration.username,
            email: registration.email,
            avatar: registration.avatar,
            role,
            password_hash: registration.password_hash,
        };
        match self.execute(id, command, Some(0), metadata).await {
            Ok(committed) => Ok((id, committed)),
            Err(error) => {
                sqlx::query(
                    "DELETE FROM user_identities WHERE kind = $1 AND key = $2 AND user_id = $3",
                )
                .bind(identity.kind())
                .bind(identity.key())
                .bind(id.as_uuid())
                .execute(&self.pool)
                .await?;
                Err(error.into())
            }
        }
    }

    /// Reserves `identity` for `id` and decides the role, under the registration lock.
    async fn reserve(
        &self,
        identity: &Identity,
        id: UserId,
        rule: RoleRule,
    ) -> Result<Role, AccountCommandError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REGISTRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let holder: Option<(Uuid, bool, bool)> = sqlx::query_as(
            "SELECT i.user_id,
                    EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'user_account'
                             AND e.aggregate_id = i.user_id::text),
                    i.reserved_at < now() - make_interval(secs => $3)
               FROM user_identities i WHERE i.kind = $1 AND i.key = $2",
        )
        .bind(identity.kind())
        .bind(identity.key())
        .bind(UNWRITTEN_GRACE.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        match holder {
            Some((existing, true, _)) | Some((existing, false, false)) => {
                return Err(AccountCommandError::Taken {
                    existing: existing.into(),
                });
            }
            Some((_, false, true)) | None => {}
        }
        sqlx::query(
            "INSERT INTO user_identities (kind, key, user_id) VALUES ($1, $2, $3)
             ON CONFLICT (kind, key) DO UPDATE SET user_id = $3, reserved_at = now()",
        )
        .bind(identity.kind())
        .bind(identity.key())
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
        let role = match rule {
            RoleRule::Fixed(role) => role,
            RoleRule::OwnerOrFirst(true) => Role::Admin,
            RoleRule::OwnerOrFirst(false) => {
                let first: bool = sqlx::query_scalar(
                    "SELECT NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'user_account')",
                )
                .fetch_one(&mut *tx)
                .await?;
                if first {
                    Role::Admin
                } else {
                    Role::User
                }
            }
        };
        tx.commit().await?;
        Ok(role)
    }
}

/// Why a Plex sign-in could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum PlexSignInError {
    /// The PIN was already exchanged for a session (a PIN signs in once).
    #[error("the Plex PIN was already exchanged for a session")]
    PinAlreadyUsed,
    /// The account, its registration or the store refused it.
    #[error(transparent)]
    Account(#[from] AccountCommandError),
}

impl From<sqlx::Error> for PlexSignInError {
    fn from(error: sqlx::Error) -> Self {
        Self::Account(error.into())
    }
}

/// A plex.tv account that may sign in (it reaches the configured Plex Media Server), as
/// plex.tv describes it (`GET /api/v2/user`).
#[derive(Debug, Clone)]
pub struct PlexAccount {
    /// plex.tv's account id.
    pub plex_id: u64,
    /// plex.tv's username.
    pub username: String,
    /// plex.tv's e-mail address.
    pub email: Option<String>,
    /// plex.tv's avatar URL (`thumb`).
    pub avatar: Option<String>,
    /// Whether the account owns the Plex Media Server (it becomes an admin).
    pub owner: bool,
}

impl UserAccounts {
    /// Records a Plex sign-in through PIN `pin_id`: the PIN is marked used (a second
    /// exchange of the same PIN is refused), the account is registered on its first
    /// sign-in (an admin when it owns the server or is the very first account, a user
    /// otherwise) and its profile follows plex.tv's on every later one — values the
    /// account's rules refuse (an odd avatar URL) keep the old ones. Answers the account's
    /// id and state.
    ///
    /// # Errors
    /// [`PlexSignInError::PinAlreadyUsed`]; otherwise the account's and the store's errors.
    pub async fn sign_in_with_plex(
        &self,
        pin_id: u64,
        plex: PlexAccount,
        metadata: &EventMetadata,
    ) -> Result<(UserId, UserAccount), PlexSignInError> {
        let first_use: Option<i64> = sqlx::query_scalar(
            "INSERT INTO plex_pins_used (pin_id) VALUES ($1) ON CONFLICT DO NOTHING
             RETURNING pin_id",
        )
        .bind(i64::try_from(pin_id).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        if first_use.is_none() {
            return Err(PlexSignInError::PinAlreadyUsed);
        }
        let identity = Identity::Plex(plex.plex_id);
        let id = match self.find(&identity).await? {
            Some(id) => id,
            None => {
                let registration = Registration {
                    plex_id: Some(plex.plex_id),
                    username: plex.username.clone(),
                    email: plex.email.clone(),
                    avatar: plex.avatar.clone(),
                    password_hash: None,
                };
                let rule = RoleRule::OwnerOrFirst(plex.owner);
                match self.register(&identity, registration, rule, metadata).await {
                    Ok((id, _)) => id,
                    Err(AccountCommandError::Taken { existing }) => existing,
                    Err(other) => return Err(other.into()),
                }
            }
        };
        let profile = UserAccountCommand::UpdateProfile {
            username: Some(plex.username),
            email: plex.email,
            avatar: plex.avatar,
        };
        let account = match self.execute(id, profile, None, metadata).await {
            Ok(committed) => committed.aggregate,
            Err(ExecuteError::Rejected(UserAccountError::Invalid { .. })) => {
                self.load(id).await.map_err(AccountCommandError::from)?.0
            }
            Err(other) => return Err(AccountCommandError::from(other).into()),
        };
        Ok((id, account))
    }
}

/// This installation's stable id (created on first use): MediaNest's
/// `X-Plex-Client-Identifier` at plex.tv, the same across restarts and processes.
///
/// # Errors
/// The database error.
pub async fn installation_id(pool: &PgPool) -> Result<Uuid, sqlx::Error> {
    sqlx::query(
        "INSERT INTO installation (singleton, client_identifier) VALUES (true, $1)
         ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .execute(pool)
    .await?;
    sqlx::query_scalar("SELECT client_identifier FROM installation")
        .fetch_one(pool)
        .await
}
