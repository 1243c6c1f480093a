//! Why a download command is refused: one variant per HTTP status at the edge.

use super::DownloadStatus;
use crate::actor::Forbidden;

/// Why a download command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// No such download: 404.
    #[error("download not found")]
    NotFound,
    /// `Queue` on an existing download: 409.
    #[error("download already queued")]
    AlreadyQueued,
    /// Not legal in the current status: 409.
    #[error("cannot {command} a download that is {status}")]
    IllegalTransition {
        /// The command.
        command: &'static str,
        /// The current status.
        status: DownloadStatus,
    },
    /// The actor may not do this: 403.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The command's content breaks a rule: 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<Forbidden> for DownloadError {
    fn from(Forbidden(why): Forbidden) -> Self {
        Self::Forbidden(why)
    }
}
