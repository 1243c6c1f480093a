//! Why an account command is refused: one variant per HTTP status at the edge.

use crate::actor::Forbidden;

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
    pub(super) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

impl From<Forbidden> for UserAccountError {
    fn from(Forbidden(why): Forbidden) -> Self {
        Self::Forbidden(why)
    }
}
