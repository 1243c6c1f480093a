//! The session authenticator: bearer tokens (or the session cookie) are looked up by their
//! SHA-256 in the `sessions` read model, joined with the `users` read model for the role and
//! the disabled flag, so a logout, a revocation or a disabled account takes effect as soon as
//! the command that caused it answers (those commands wait for the read models, and then drop
//! the cached lookups: [`SessionLookups`]). A change made through another process (a second
//! instance, a replay by the CLI) is seen within a second.
//!
//! On use, a session's expiry slides forward: when its last extension is an hour old or more,
//! a `Refresh` command runs in the background (the aggregate writes at most one `Refreshed`
//! per hour). Every authenticated call is charged to the caller's API rate limit.
//!
//! The bootstrap token (`MEDIANEST_ADMIN_TOKEN`) is honoured only while no enabled admin
//! account exists: it lets an operator in before the first admin signs in, and stops working
//! as soon as one has.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use medianest_domain::user_session::REFRESH_INTERVAL;
use medianest_domain::{Actor, ActorId};
use medianest_projections::sessions::SessionLookups;
use medianest_store::credentials::{token_sha256, TOKEN_PREFIX};
use medianest_store::sessions::UserSessions;
use medianest_store::EventMetadata;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{
    AuthRejection, Authenticator, Principal, StaticTokenAuthenticator, BOOTSTRAP_ADMIN_ID,
};
use crate::ratelimit::ApiRateLimiter;

/// Resolves session tokens (and, while no admin exists, the bootstrap token).
pub struct SessionAuthenticator {
    pool: PgPool,
    sessions: Arc<UserSessions>,
    limiter: Option<Arc<ApiRateLimiter>>,
    bootstrap: Option<StaticTokenAuthenticator>,
    refreshing: Arc<Mutex<HashSet<Uuid>>>,
    lookups: SessionLookups,
}

impl std::fmt::Debug for SessionAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAuthenticator")
            .field("rate_limited", &self.limiter.is_some())
            .field("bootstrap", &self.bootstrap.is_some())
            .finish()
    }
}

impl SessionAuthenticator {
    /// An authenticator reading `pool`'s read models and refreshing through `sessions`.
    pub fn new(pool: PgPool, sessions: Arc<UserSessions>) -> Self {
        Self {
            pool,
            sessions,
            limiter: None,
            bootstrap: None,
            refreshing: Arc::default(),
            lookups: SessionLookups::default(),
        }
    }

    /// Charges every authenticated call to `limiter`.
    pub fn with_rate_limit(mut self, limiter: Arc<ApiRateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Honours `token` as the bootstrap admin while no enabled admin account exists.
    pub fn with_bootstrap_token(mut self, token: Option<String>) -> Self {
        self.bootstrap = token
            .filter(|t| !t.is_empty())
            .map(StaticTokenAuthenticator::new);
        self
    }

    fn charge(&self, user: Uuid) -> Result<(), AuthRejection> {
        match &self.limiter {
            Some(limiter) => limiter
                .check(user)
                .map_err(|retry_after| AuthRejection::RateLimited { retry_after }),
            None => Ok(()),
        }
    }

    fn refresh_in_background(&self, session_id: Uuid, user_id: Uuid) {
        {
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
            if !refreshing.insert(session_id) {
                return;
            }
        }
        let (sessions, refreshing) = (self.sessions.clone(), self.refreshing.clone());
        tokio::spawn(async move {
            let metadata = EventMetadata::for_actor(&ActorId::user(user_id).to_string());
            if let Err(error) = sessions.refresh(session_id.into(), &metadata).await {
                tracing::debug!(%error, %session_id, "session refresh not written");
            }
            refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&session_id);
        });
    }

    async fn bootstrap(&self, token: &str) -> Result<Principal, AuthRejection> {
        let Some(bootstrap) = self.bootstrap.as_ref().filter(|b| b.matches(token)) else {
            return Err(AuthRejection::Invalid);
        };
        let admin_exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| AuthRejection::Unavailable(e.into()))?;
        if admin_exists {
            tracing::warn!("the bootstrap admin token was presented, but an admin account exists");
            return Err(AuthRejection::Invalid);
        }
        self.charge(BOOTSTRAP_ADMIN_ID)?;
        bootstrap.authenticate(token).await
    }
}

#[async_trait]
impl Authenticator for SessionAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthRejection> {
        if !token.starts_with(TOKEN_PREFIX) {
            return self.bootstrap(token).await;
        }
        let found = self
            .lookups
            .authenticate(&self.pool, &token_sha256(token))
            .await
            .map_err(AuthRejection::Unavailable)?
            .ok_or(AuthRejection::Invalid)?;
        self.charge(found.user_id)?;
        if Utc::now() - found.refreshed_at >= REFRESH_INTERVAL {
            self.refresh_in_background(found.session_id, found.user_id);
        }
        Ok(Principal {
            actor: Actor {
                id: ActorId::user(found.user_id),
                role: found.role,
            },
            session_id: Some(found.session_id),
        })
    }
}
