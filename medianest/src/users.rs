//! `medianest users create`: local accounts for bootstrap and offline installs.
//!
//! The password is read from standard input (`--password-stdin`, first line), never from the
//! command line, hashed with argon2id and stored only as its hash in the `registered` event.

use medianest_domain::user_account::UserAccountError;
use medianest_domain::{Role, UserId};
use medianest_store::accounts::{
    AccountCommandError, Identity, Registration, RoleRule, UserAccounts,
};
use medianest_store::credentials::{hash_password, PasswordError};
use medianest_store::{EventMetadata, ExecuteError};
use sqlx::PgPool;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The username, e-mail or password breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The username is taken.
    #[error("the username is taken (by account {0})")]
    Taken(UserId),
    /// The database (or the hashing task) failed; the cause is the source.
    #[error("{0}")]
    Store(#[source] medianest_store::BoxError),
}

impl CreateUserError {
    /// The exit code: usage (2) for invalid input, "no" (3) for a taken username, failure
    /// (1) for anything else.
    pub fn exit_code(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Self::Invalid(_) => Exit::Usage,
            Self::Taken(_) => Exit::No,
            Self::Store(_) => Exit::Failure,
        }
    }
}

/// A created account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedUser {
    /// The account id.
    pub id: UserId,
    /// The username.
    pub username: String,
    /// `admin` or `user`.
    pub role: &'static str,
    /// Global position of the `registered` event.
    pub position: i64,
}

/// Creates a local account.
///
/// # Errors
/// [`CreateUserError`] saying what went wrong.
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    email: Option<String>,
    admin: bool,
    password: String,
) -> Result<CreatedUser, CreateUserError> {
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| CreateUserError::Store(Box::new(e)))?
        .map_err(|e| match e {
            PasswordError::Length => CreateUserError::Invalid(format!("password: {e}")),
            PasswordError::Hash(_) => CreateUserError::Store(Box::new(e)),
        })?;
    let role = if admin { Role::Admin } else { Role::User };
    let accounts = UserAccounts::new(pool.clone());
    let registration = Registration {
        plex_id: None,
        username: username.to_string(),
        email,
        avatar: None,
        password_hash: Some(hash),
    };
    let metadata = EventMetadata::for_actor("system:cli");
    let (id, committed) = accounts
        .register(
            &Identity::Local(username.to_string()),
            registration,
            RoleRule::Fixed(role),
            &metadata,
        )
        .await
        .map_err(|e| match e {
            AccountCommandError::Taken { existing } => CreateUserError::Taken(existing),
            AccountCommandError::Execute(ExecuteError::Rejected(
                rejection @ UserAccountError::Invalid { .. },
            )) => CreateUserError::Invalid(rejection.to_string()),
            other => CreateUserError::Store(Box::new(other)),
        })?;
    Ok(CreatedUser {
        id,
        username: committed
            .aggregate
            .username()
            .unwrap_or(username)
            .to_string(),
        role: if admin { "admin" } else { "user" },
        position: committed.position,
    })
}
