//! Why a media-request command is refused: one variant per HTTP status at the edge.

use super::RequestStatus;
use crate::actor::Forbidden;

/// Why a command was refused. Each variant maps to one HTTP status at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaRequestError {
    /// The request does not exist (no `Submitted` event): 404.
    #[error("media request not found")]
    NotFound,
    /// `Submit` on an id that already has a request: 409.
    #[error("media request already submitted")]
    AlreadySubmitted,
    /// The command is not legal in the current status: 409.
    #[error("cannot {command} a request that is {status}")]
    IllegalTransition {
        /// The command's name.
        command: &'static str,
        /// The current status.
        status: RequestStatus,
    },
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

impl MediaRequestError {
    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

impl From<Forbidden> for MediaRequestError {
    fn from(Forbidden(why): Forbidden) -> Self {
        Self::Forbidden(why)
    }
}
