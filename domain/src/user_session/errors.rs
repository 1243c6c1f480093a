//! Why a session command is refused: one variant per HTTP status at the edge.

use chrono::{DateTime, Utc};

use crate::actor::Forbidden;

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserSessionError {
    /// No such session: 404.
    #[error("session not found")]
    NotFound,
    /// `Start` on an existing session: 409.
    #[error("session already started")]
    AlreadyStarted,
    /// The session has ended: 401 at the edge (its token no longer works).
    #[error("the session is {0}")]
    Ended(&'static str),
    /// `Expire` before the expiry: nothing to do yet.
    #[error("the session expires at {0}")]
    NotExpired(DateTime<Utc>),
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl UserSessionError {
    pub(super) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

impl From<Forbidden> for UserSessionError {
    fn from(Forbidden(why): Forbidden) -> Self {
        Self::Forbidden(why)
    }
}
