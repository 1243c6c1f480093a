//! The command service of user sessions: mints tokens, starts sessions with their expiry, and
//! runs the other session commands with the configured time to live.

use std::time::Duration;

use chrono::{DateTime, Utc};
use medianest_domain::user_account::SignInMethod;
use medianest_domain::user_session::{Device, UserSession, UserSessionCommand, UserSessionError};
use medianest_domain::{SessionId, UserId};
use sqlx::PgPool;

use crate::credentials::new_token;
use crate::executor::{CommandExecutor, Committed, ExecuteError};
use crate::EventMetadata;

/// The default session lifetime without use: 30 days (as Overseerr's session cookie).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a sign-in knows about the new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The account.
    pub user_id: UserId,
    /// How the user signed in.
    pub method: SignInMethod,
    /// The client's description of itself.
    pub device: Device,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// A started session: the token is in the clear here and nowhere else.
pub struct StartedSession {
    /// The session id.
    pub session_id: SessionId,
    /// The bearer token, shown to the caller once.
    pub token: String,
    /// When the session ends unless used.
    pub expires_at: DateTime<Utc>,
    /// The global position of the `started` event.
    pub position: i64,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("position", &self.position)
            .finish()
    }
}

/// Executes session commands.
#[derive(Debug)]
pub struct UserSessions {
    executor: CommandExecutor<UserSession>,
    ttl: Duration,
}

impl UserSessions {
    /// A service writing to `pool`; sessions live `ttl` past their last use.
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self {
            executor: CommandExecutor::new(pool, Default::default()),
            ttl,
        }
    }

    /// The session lifetime without use.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn expiry_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(30))
    }

    /// Mints a token and starts a session with it.
    ///
    /// # Errors
    /// The executor's errors.
    pub async fn start(
        &self,
        new: NewSession,
        metadata: &EventMetadata,
    ) -> Result<StartedSession, ExecuteError<UserSessionError>> {
        let session_id = SessionId::new();
        let minted = new_token();
        let now = Utc::now();
        let expires_at = self.expiry_from(now);
        let command = UserSessionCommand::Start {
            user_id: new.user_id,
            method: new.method,
            device: new.device,
            ip: new.ip,
            user_agent: new.user_agent,
            now,
            expires_at,
            token_sha256: minted.sha256,
        };
        let committed = self.execute(session_id, command, metadata).await?;
        Ok(StartedSession {
            session_id,
            token: minted.token,
            expires_at,
            position: committed.position,
        })
    }

    /// Slides the expiry of session `id` to now + ttl (written at most hourly).
    ///
    /// # Errors
    /// The executor's errors; `Rejected(Ended)` for an ended session.
    pub async fn refresh(
        &self,
        id: SessionId,
        metadata: &EventMetadata,
    ) -> Result<Committed<UserSession>, ExecuteError<UserSessionError>> {
        let now = Utc::now();
        let command = UserSessionCommand::Refresh {
            now,
            expires_at: self.expiry_from(now),
        };
        self.execute(id, command, metadata).await
    }

    /// Executes `command` on session `id`.
    ///
    /// # Errors
    /// The executor's errors.
    pub async fn execute(
        &self,
        id: SessionId,
        command: UserSessionCommand,
        metadata: &EventMetadata,
    ) -> Result<Committed<UserSession>, ExecuteError<UserSessionError>> {
        self.executor
            .execute(&id.to_string(), command, None, metadata)
            .await
    }

    /// The current state and version of session `id`.
    ///
    /// # Errors
    /// [`ExecuteError::Store`].
    pub async fn load(
        &self,
        id: SessionId,
    ) -> Result<(UserSession, i64), ExecuteError<UserSessionError>> {
        self.executor.load(&id.to_string()).await
    }
}
